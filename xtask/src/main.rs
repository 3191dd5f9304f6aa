//! Developer tooling for kvm-pgtable-diff. Run `cargo xtask --help`.
//!
//! Exit codes of every command: 0 success / no finding, 1 finding or test failure,
//! 2 usage or setup error.

mod bench;
mod coverage;
mod corpus;
mod fuzz;
mod kernel;
mod libfuzzer;
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
    /// Regenerate fuzz/corpus/<target>/ from the readable scenarios (--check: verify only).
    Corpus(corpus::Args),
    /// Line/function coverage of pgtable.c and rust-pgtable reached by the committed inputs.
    #[command(
        after_help = "Builds the CLI with coverage instrumentation (C: KPD_C_COVERAGE=1, Rust: \
-C instrument-coverage) in target/coverage/, replays fuzz/corpus/<target>/*, fuzz/scenarios/**/*.txt, \
tests/regressions/*.txt and tests/known/*.txt, merges with llvm-profdata-22 and reports with \
llvm-cov-22. Output: target/coverage/html/index.html, target/coverage/uncovered.txt (pgtable.c \
lines not reached, by function). See docs/COVERAGE.md.\n\
Last line: `coverage: pgtable.c lines L% functions F%, rust-pgtable lines R%`.\n\
Exit codes: 0 ok, 1 a replayed input diverges, 2 usage or setup error."
    )]
    Coverage(coverage::Args),
    /// (not implemented yet) Mutation testing: planted bugs the fuzzer must find.
    Mutants,
    /// Throughput benchmarks: C / Rust / diff time per input, fuzz exec/s with and without ASan.
    #[command(
        after_help = "Times the C side alone, the Rust side alone and the full diff on \
bench/inputs/*.txt (driver: benches/kpd-bench.rs, release), then runs every fuzz target for \
--time seconds on one core built with --sanitizer none and address.\n\
Last line: `bench: c=Ans rust=Bns diff=Dns overhead=D/(A+B) rust/c=B/A stage2_asan=E exec/s`.\n\
Goals: overhead <= 1.25, rust/c <= 1.0, stage2 ASan >= 20k exec/s.\n\
Exit codes: 0 ok, 1 a finding (a diverging input), 2 usage or setup error."
    )]
    Bench(bench::Args),
    /// (not implemented yet) Build the targets the way OSS-Fuzz / ClusterFuzzLite does.
    OssFuzz,
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
        Cmd::Corpus(args) => corpus::run(args),
        Cmd::Coverage(args) => coverage::run(args),
        Cmd::Mutants => not_yet("mutants"),
        Cmd::Bench(args) => bench::run(args),
        Cmd::OssFuzz => not_yet("oss-fuzz"),
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
