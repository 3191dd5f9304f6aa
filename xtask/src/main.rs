//! Developer tooling for kvm-pgtable-diff. Run `cargo xtask --help`.
//!
//! Exit codes of every command: 0 success / no finding, 1 finding or test failure,
//! 2 usage or setup error.

mod bench;
mod corpus;
mod coverage;
mod crashflow;
mod fuzz;
mod growth;
mod kernel;
mod libfuzzer;
#[path = "../../build-support/lock.rs"]
mod lock;
mod mutants;
mod ossfuzz;
#[path = "../../build-support/probe.rs"]
mod probe;
mod setup;
mod test;
mod util;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use util::{EXIT_OK, Res};

#[derive(Parser)]
#[command(
    name = "cargo xtask",
    bin_name = "cargo xtask",
    about = "Developer tooling for kvm-pgtable-diff (Linux arm64 KVM pgtable.c vs rust-pgtable)",
    after_help = "Exit codes: 0 success / no finding, 1 finding or test failure, 2 usage or setup error.\n\
                  Environment: LINUX_SRC=<kernel tree> builds the C side of its API generation's \
                  line from that tree instead of the cached Debian source pinned in kernel.lock."
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Install what is missing: apt packages (clang/LLVM 22), the kernel lines pinned in kernel.lock.
    Setup {
        /// Also the fuzzing tools: nightly toolchain check and cargo-fuzz.
        #[arg(long)]
        fuzz: bool,
    },
    /// Fetch every kernel line pinned in kernel.lock (6.12, 7.3) into .cache/ and verify its sha256.
    #[command(
        after_help = "Each [line NAME] of kernel.lock pins a Debian linux-source package version, \
its suite and the sha256 of the files the C side reads; they are extracted from the .deb \
(kept in .cache/deb/) into .cache/linux-source-NAME/. A line whose cache matches is skipped. \
A suite the system's apt sources lack (trixie-backports on bookworm) is fetched through a \
private apt state in .cache/apt/<suite>/ made from the system's Debian mirror.\n\
Exit codes: 0 every selected line ok, 2 a line failed (the message says what to do)."
    )]
    Kernel {
        /// Rewrite kernel.lock from the cache (or from apt's candidate when the pin is gone).
        #[arg(long)]
        update_lock: bool,
        /// Only this line (e.g. 7.3). Default: every line of kernel.lock.
        #[arg(long, value_name = "NAME")]
        line: Option<String>,
    },
    /// Run the test suite (setup, then cargo test --workspace, ...) with a summary table.
    Test,
    /// Build all fuzz targets and run each for a while; report coverage and findings.
    #[command(
        after_help = "Runs setup (apt packages, kernel source, nightly, cargo-fuzz), then \
`cargo +nightly fuzz build -O -a --no-trace-compares --sanitizer S` once (-a: debug assertions \
and overflow checks, as oss-fuzz/build.sh builds), then each target for --time seconds on \
fuzz/corpus-work/<target> (seeded from fuzz/corpus/<target>).\n\
Cores: every core by default (--jobs N to choose): one process per target, several targets at \
once (with 2 cores and 5 targets: 2 at a time, so the run takes 3 x --time); cores beyond one \
per target become libFuzzer fork-mode workers (-fork=K) of the targets. The summary has a row \
per target (exec/s, coverage, corpus, workers, findings) and a total row (executions and \
findings summed, exec/s over the fuzzing phase's wall time).\n\
Kernel lines: every line of kernel.lock (6.12, 7.3) by default; --line 7.3 fuzzes one \
(KPD_LINE=7.3 in the fuzzers' environment).\n\
Findings: reproducers in fuzz/artifacts/<target>/, full logs in fuzz/target/logs/<target>.log; \
the summary names each finding's kernel line and the trees compared.\n\
Environment: LINUX_SRC=<kernel tree> fuzzes that tree's pgtable.c (e.g. your patch) in place \
of the pinned source of its API generation's line (checked before anything is built; a tree \
of no supported generation is a usage error). With --against, LINUX_SRC's pgtable.c is fuzzed \
against the pinned source of its line (or against a second tree): C against C, no Rust \
model; those builds use fuzz/target/against/. All other variables pass through.\n\
Exit codes: 0 no finding, 1 finding, 2 usage or setup error (the last line says what to do)."
    )]
    Fuzz(fuzz::Args),
    /// Regenerate fuzz/corpus/<target>/ from the readable scenarios (--check: verify only).
    Corpus(corpus::Args),
    /// Line/function coverage of each kernel line's pgtable.c and of rust-pgtable reached by the committed inputs.
    #[command(
        after_help = "Builds the CLI with coverage instrumentation (C: KPD_C_COVERAGE=1, Rust: \
-C instrument-coverage) in target/coverage/, replays fuzz/corpus/<target>/*, fuzz/scenarios/**/*.txt, \
tests/regressions/*.txt and tests/known/*.txt, merges with llvm-profdata-22 and reports with \
llvm-cov-22. Every kernel line's pgtable.c (6.12, 7.3) is reported separately. Output: \
target/coverage/html/index.html, target/coverage/uncovered.txt (pgtable.c lines not reached, per \
kernel line, by function). See docs/COVERAGE.md.\n\
Last line: `coverage: pgtable.c 6.12 lines L% functions F%, 7.3 lines L% functions F%, \
rust-pgtable lines R%`.\n\
Exit codes: 0 ok, 1 a replayed input diverges, 2 usage or setup error."
    )]
    Coverage(coverage::Args),
    /// Mutation testing: plant known bugs (mutants/*.spec) one at a time; the fuzzer must find each.
    Mutants(mutants::Args),
    /// Throughput benchmarks: C / Rust / diff time per input, fuzz exec/s with and without ASan.
    #[command(
        after_help = "Times the C side alone, the Rust side alone and the full diff on \
bench/inputs/*.txt (driver: benches/kpd-bench.rs, release), then runs every fuzz target for \
--time seconds on one core built with --sanitizer none and address. Each fuzz run is reported \
in two phases: the corpus replay (libFuzzer running every corpus unit once, up to its INITED \
line) and steady-state fuzzing after it. Before each run, every committed input of the target \
(fuzz/corpus/<target>/) is timed alone under that build: a histogram of microseconds per input \
(buckets <100us .. >=100ms, inputs per bucket, median and max).\n\
--growth SECONDS (instead): every target fuzzes from an empty corpus; pgtable.c lines reached \
at 1, 2, 5, 10 .. SECONDS s, per target and in union, per kernel line, plotted to \
target/bench/growth/growth.svg (--baseline DIR adds another checkout's curves, dashed).\n\
--cores (instead): each target's steady-state exec/s alone and as N processes at once.\n\
Last line: `bench: c=Ans rust=Bns diff=Dns overhead=D/(A+B) rust/c=B/A stage2_asan=E exec/s` \
(E: steady state).\n\
Goals: overhead <= 1.25, rust/c <= 1.0, stage2 ASan >= 20k exec/s.\n\
Exit codes: 0 ok, 1 a finding (a diverging input), 2 usage or setup error."
    )]
    Bench(bench::Args),
    /// The OSS-Fuzz / ClusterFuzzLite integration, emulated without Docker and checked.
    #[command(
        after_help = "Static checks (presubmit.py and check_base_os.py rules on the generated \
projects/ copy, both Dockerfiles, API errors under base-clang's CFLAGS, .dockerignore, the \
workflows), then $SRC laid out as in the image (the .dockerignore'd repository, \
$SRC/linux-<line> from oss-fuzz/fetch-kernel.sh) and, per --sanitizer, build.sh under \
OSS-Fuzz's `compile` environment (base-clang CFLAGS, its RUSTFLAGS, base-builder-rust's \
nightly), check_build's rules and --runs inputs on every target (coverage: a profile of \
both kernel lines). Files: target/oss-fuzz/.\n\
Last line: `oss-fuzz: N checks ok`. Exit codes: 0 ok, 1 a check failed, 2 setup or build error."
    )]
    OssFuzz(ossfuzz::Args),
    /// Write projects/kvm-pgtable-diff/ for google/oss-fuzz (Apache-2.0 headers, one-line build.sh).
    #[command(
        after_help = "Writes Dockerfile, build.sh and project.yaml from oss-fuzz/ into DIR \
(e.g. ~/oss-fuzz/projects/kvm-pgtable-diff), checked against OSS-Fuzz's presubmit rules. \
Refuses while main_repo or primary_contact in oss-fuzz/project.yaml is a placeholder.\n\
Exit codes: 0 written, 2 placeholders left or a presubmit rule broken."
    )]
    OssFuzzProject(ossfuzz::ProjectArgs),
    /// Minimise every target's working corpus (fuzz/corpus-work/<target>) with libFuzzer -merge=1.
    #[command(
        after_help = "Builds the fuzz targets (as `cargo xtask fuzz`), then per target merges \
fuzz/corpus-work/<target> into an empty directory (one input per coverage feature), repeated \
until a round does not shrink it, and replaces the working corpus with the result. The committed \
seeds in fuzz/corpus/ are not touched (`cargo xtask corpus` makes them).\n\
Exit codes: 0 ok, 1 coverage would be lost (corpus left untouched), 2 usage or setup error."
    )]
    Cmin(crashflow::CminArgs),
    /// Minimise a crashing input with libFuzzer -minimize_crash=1 (writes <crash>.min).
    #[command(
        after_help = "The target is guessed from a .../artifacts/<target>/ path unless --target \
is given. The minimised input must still diverge; the summary shows both headlines.\n\
Next: `cargo xtask regress <crash>.min [name]`.\n\
Exit codes: 0 minimised, 1 the minimised input no longer diverges, 2 usage or setup error."
    )]
    Tmin(crashflow::TminArgs),
    /// Turn a (minimised) crash into tests/regressions/<name>.txt (readable text + header).
    #[command(
        after_help = "Decodes the raw input with `kvm-pgtable-diff decode --target <target>`, \
writes tests/regressions/<name>.txt with a header comment (headline, target, input sha1), and \
checks the text replays like the raw input. Edit the header to say what was wrong and how it \
was fixed; tests/regressions.rs replays the file and expects no finding once the bug is fixed.\n\
Exit codes: 0 written (no finding now), 1 written (it still diverges: fix the bug), \
2 usage or setup error."
    )]
    Regress(crashflow::RegressArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let r: Res<u8> = match cli.cmd {
        Cmd::Setup { fuzz } => setup::setup(setup::Opts { fuzz }).map(|_| EXIT_OK),
        Cmd::Kernel { update_lock, line } => {
            kernel::ensure(kernel::Opts { update_lock, line }).map(|_| EXIT_OK)
        }
        Cmd::Test => Ok(test::run_all()),
        Cmd::Fuzz(args) => fuzz::run(args),
        Cmd::Corpus(args) => corpus::run(args),
        Cmd::Coverage(args) => coverage::run(args),
        Cmd::Mutants(args) => mutants::run(args),
        Cmd::Bench(args) => bench::run(args),
        Cmd::OssFuzz(args) => ossfuzz::run(args),
        Cmd::OssFuzzProject(args) => ossfuzz::project(args),
        Cmd::Cmin(args) => crashflow::cmin(args),
        Cmd::Tmin(args) => crashflow::tmin(args),
        Cmd::Regress(args) => crashflow::regress(args),
    };
    match r {
        Ok(code) => ExitCode::from(code),
        Err(f) => {
            eprintln!("error: {}", f.msg);
            ExitCode::from(f.code)
        }
    }
}
