//! Developer tooling for kvm-pgtable-diff. Run `cargo xtask --help`.
//!
//! Exit codes of every command: 0 success / no finding, 1 finding or test failure,
//! 2 usage or setup error.

mod fuzz;
mod kernel;
mod libfuzzer;
mod ossfuzz;
mod setup;
mod test;
mod util;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use util::{EXIT_OK, EXIT_SETUP, Res};

#[derive(Parser)]
#[command(
    name = "cargo xtask",
    bin_name = "cargo xtask",
    about = "Developer tooling for kvm-pgtable-diff (Linux arm64 KVM pgtable.c vs rust-pgtable)",
    after_help = "Exit codes: 0 success / no finding, 1 finding or test failure, 2 usage or setup error.\n\
                  Environment: LINUX_SRC=<kernel tree> builds the C side from that tree instead of \
                  the cached Debian source pinned in kernel.lock."
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Install what is missing: apt packages (clang/LLVM 22), the pinned kernel source.
    Setup {
        /// Also the fuzzing tools: nightly toolchain check and cargo-fuzz.
        #[arg(long)]
        fuzz: bool,
    },
    /// Fetch the kernel source pinned in kernel.lock into .cache/ and verify its sha256.
    Kernel {
        /// Rewrite kernel.lock from the cache (or from apt's candidate when the pin is gone).
        #[arg(long)]
        update_lock: bool,
    },
    /// Run the test suite (setup, then cargo test --workspace, ...) with a summary table.
    Test,
    /// Build all fuzz targets and run each for a while; report coverage and findings.
    #[command(
        after_help = "Runs setup (apt packages, kernel source, nightly, cargo-fuzz), then \
`cargo +nightly fuzz build -O --sanitizer S` once, then each target for --time seconds on \
fuzz/corpus-work/<target> (seeded from fuzz/corpus/<target>).\n\
Findings: reproducers in fuzz/artifacts/<target>/, full logs in fuzz/target/logs/<target>.log.\n\
Environment: LINUX_SRC=<kernel tree> fuzzes that tree's pgtable.c (e.g. your patch) \
instead of the Debian source pinned in kernel.lock; all other variables pass through.\n\
Exit codes: 0 no finding, 1 finding, 2 usage or setup error."
    )]
    Fuzz(fuzz::Args),
    /// (not implemented yet) Manage the committed seed corpus.
    Corpus,
    /// (not implemented yet) Source coverage of pgtable.c and rust-pgtable by the corpus.
    Coverage,
    /// (not implemented yet) Mutation testing: planted bugs the fuzzer must find.
    Mutants,
    /// (not implemented yet) Throughput benchmarks (exec/s, diff cost, Rust vs C time).
    Bench,
    /// Run oss-fuzz/build.sh under an emulated OSS-Fuzz environment and check $OUT.
    #[command(
        after_help = "Emulates OSS-Fuzz's base-builder-rust `compile` (SRC, OUT, WORK, CC=clang-22, \
CFLAGS, RUSTFLAGS, SANITIZER, FUZZING_ENGINE, LIB_FUZZING_ENGINE) without Docker, runs \
oss-fuzz/build.sh, then checks every target in $OUT: executable, seed zip (sha1-named \
entries = fuzz/corpus/<target>), .dict, .options, and --runs inputs without a finding \
(coverage builds: a profile that llvm-cov-22 reads). Files: target/oss-fuzz/.\n\
Last line: `oss-fuzz: N targets ok`. Exit codes: 0 ok, 1 a check failed, 2 setup or build error."
    )]
    OssFuzz(ossfuzz::Args),
    /// (not implemented yet) Minimise a corpus.
    Cmin,
    /// (not implemented yet) Minimise a crashing input.
    Tmin,
    /// (not implemented yet) Replay saved findings and the corpus as regression tests.
    Regress,
}

fn not_yet(name: &str) -> Res<u8> {
    eprintln!("cargo xtask {name}: not implemented yet");
    Ok(EXIT_SETUP)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let r: Res<u8> = match cli.cmd {
        Cmd::Setup { fuzz } => setup::setup(setup::Opts { fuzz }).map(|_| EXIT_OK),
        Cmd::Kernel { update_lock } => {
            kernel::ensure(kernel::Opts { update_lock }).map(|_| EXIT_OK)
        }
        Cmd::Test => Ok(test::run_all()),
        Cmd::Fuzz(args) => fuzz::run(args),
        Cmd::Corpus => not_yet("corpus"),
        Cmd::Coverage => not_yet("coverage"),
        Cmd::Mutants => not_yet("mutants"),
        Cmd::Bench => not_yet("bench"),
        Cmd::OssFuzz(args) => ossfuzz::run(args),
        Cmd::Cmin => not_yet("cmin"),
        Cmd::Tmin => not_yet("tmin"),
        Cmd::Regress => not_yet("regress"),
    };
    match r {
        Ok(code) => ExitCode::from(code),
        Err(f) => {
            eprintln!("error: {}", f.msg);
            ExitCode::from(f.code)
        }
    }
}
