//! `cargo xtask fuzz`: build every fuzz target once, run each for `--time` seconds,
//! report progress, a per-target table, and any finding with its reproducer.
//!
//! Layout (all under `fuzz/`):
//! - `fuzz_targets/<name>.rs`  the targets (thin wrappers around `kvm_pgtable_diff::fuzz::run`);
//! - `corpus/<name>/`           committed seeds (read-only input to the run);
//! - `corpus-work/<name>/`      working corpus, where libFuzzer writes new units (git-ignored);
//! - `artifacts/<name>/`        crash-/leak-/timeout-/oom- reproducers (git-ignored);
//! - `target/logs/<name>.log`   full libFuzzer output of the last run;
//! - `target/logs/build.log`    the last fuzz build's output (`build-against.log` for
//!   `--against` builds, which use `target/against/`).
//!
//! Kernel lines: `--line` restricts the fuzzers to one pinned line (`KPD_LINE` in their
//! environment, read by the root crate's `fuzz::line_filter`). `LINUX_SRC` and an
//! `--against` tree are judged with `build-support/probe.rs` before anything is built, so a
//! wrong tree ends the command with build.rs' own paragraph, not under cargo's output.

use std::collections::{BTreeSet, VecDeque};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::libfuzzer::{INTERRUPTED_EXIT, Progress, is_finding_artifact};
use crate::util::{
    Ctx, EXIT_FINDING, EXIT_OK, Res, cmd_line, fmt_count, fmt_dur, host_triple, mkdir, names,
    on_lines, rel, root, setup_err, table, value_name,
};
use crate::{kernel, probe, setup};
use crate::{say, warn};

/// The fuzz targets, one per fuzz/fuzz_targets/<name>.rs (a test checks the two agree), in the
/// order every command runs them. The root crate's `fuzz::TARGETS` names the same targets.
pub const TARGETS: &[&str] = &["hyp", "stage2", "host_stage2", "walk", "unlinked"];
/// Lines of each target's output kept for the finding report.
const TAIL_LINES: usize = 600;
/// Lines of a finding report printed (the full log has the rest).
const REPORT_LINES: usize = 150;

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Sanitizer {
    /// AddressSanitizer on the Rust and C code (catches memory errors; ~2-3x slower).
    Address,
    /// No sanitizer (fastest).
    None,
}

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Seconds to fuzz each target (0 = until a finding or Ctrl-C).
    #[arg(long, value_name = "SECONDS", default_value_t = 60)]
    pub time: u64,
    /// Fuzz only this target (repeatable). Default: every target in fuzz/fuzz_targets/.
    #[arg(long = "target", value_name = "NAME")]
    pub targets: Vec<String>,
    /// Fuzzing processes at the same time. Default: every core
    /// (`std::thread::available_parallelism`). Up to one per target, several targets at once;
    /// beyond that, libFuzzer's fork mode (`-fork=K`) inside each target.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub jobs: Option<u32>,
    /// Sanitizer for the fuzz build (Rust and C).
    #[arg(long, value_enum, default_value_t = Sanitizer::Address)]
    pub sanitizer: Sanitizer,
    /// Fuzz only this kernel line of kernel.lock (6.12, 7.3; repeatable). Default: every line
    /// (or KPD_LINE from the environment).
    #[arg(long = "line", value_name = "LINE")]
    pub lines: Vec<String>,
    /// What did my patch change? Fuzz LINUX_SRC's pgtable.c against the pinned source of its
    /// line (`--against`, `--against pinned`) or against a second tree (`--against TREE`):
    /// C against C, no Rust model involved. Needs LINUX_SRC.
    #[arg(long, value_name = "pinned|TREE", num_args = 0..=1, default_missing_value = "pinned")]
    pub against: Option<String>,
    /// Extra libFuzzer flags after those of oss-fuzz/kvm-pgtable-diff.options and its
    /// dictionary (a later flag wins), e.g. `-- -use_value_profile=1`.
    #[arg(last = true, value_name = "LIBFUZZER_FLAGS")]
    pub libfuzzer_args: Vec<String>,
}

pub fn fuzz_dir() -> PathBuf {
    root().join("fuzz")
}

/// Validates `--target` names (none: every target), dropping repeats.
pub fn select_targets(wanted: &[String]) -> Res<Vec<String>> {
    if wanted.is_empty() {
        return Ok(TARGETS.iter().map(|t| t.to_string()).collect());
    }
    let mut out: Vec<String> = vec![];
    for w in wanted {
        if !TARGETS.contains(&w.as_str()) {
            let all = TARGETS.join(", ");
            return Err(setup_err(format!(
                "unknown target `{w}`; valid targets: {all}"
            )));
        }
        if !out.contains(w) {
            out.push(w.clone());
        }
    }
    Ok(out)
}

/// The kernel files the C side reads, relative to a tree (build.rs' `KERNEL_FILES`).
const KERNEL_FILES: [&str; 3] = kernel::FILES;

/// Checks a kernel tree the user named (`what` is how they named it, e.g. `LINUX_SRC=/x`) the
/// way build.rs will, before anything is built: a directory, the three kernel files, and a
/// pgtable.c of an API generation the C side drives. `undo` says how to do without it. The
/// error is the paragraph build.rs would print (a usage error, exit 2).
pub fn check_user_tree(tree: &Path, what: &str, undo: &str) -> Res<&'static probe::Generation> {
    if !tree.is_dir() {
        return Err(setup_err(format!(
            "{what} is not a directory. Point it at a Linux kernel tree (the directory \
             containing arch/arm64), or {undo}."
        )));
    }
    if let Some(f) = KERNEL_FILES.iter().find(|f| !tree.join(f).is_file()) {
        return Err(setup_err(format!(
            "{what} has no {f}. Point it at the top of a Linux kernel tree, or {undo}."
        )));
    }
    let p = tree.join(KERNEL_FILES[0]);
    let src = fs::read(&p).ctx(format_args!("cannot read {}", p.display()))?;
    probe::detect(&String::from_utf8_lossy(&src), what).map_err(setup_err)
}

/// What one `cargo xtask fuzz` run fuzzes: which kernel lines, from which trees, against what.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mode {
    /// The lines fuzzed, in kernel.lock order.
    pub lines: Vec<String>,
    /// Every line of kernel.lock.
    pub all_lines: Vec<String>,
    /// `LINUX_SRC` and the line its API generation replaces.
    pub src: Option<(PathBuf, String)>,
    /// The baseline of a C-against-C run: `pinned` or a tree (`KPD_AGAINST` for build.rs).
    pub against: Option<String>,
}

impl Mode {
    /// Decides the mode from the flags, `LINUX_SRC` and `KPD_LINE` (the environment's, used
    /// when `--line` is not given), checking every tree before anything is built.
    pub fn new(
        args_lines: &[String],
        against: Option<&str>,
        linux_src: Option<&Path>,
        env_line: Option<&str>,
        all_lines: &[String],
    ) -> Res<Mode> {
        let wanted: Vec<String> = match (args_lines.is_empty(), env_line) {
            (false, _) => args_lines.to_vec(),
            (true, Some(l)) if !l.is_empty() => vec![l.to_string()],
            _ => vec![],
        };
        for l in &wanted {
            if !all_lines.contains(l) {
                let from = if args_lines.is_empty() {
                    format!("KPD_LINE={l} (environment)")
                } else {
                    format!("--line {l}")
                };
                return Err(setup_err(format!(
                    "{from}: not a kernel line of kernel.lock; lines: {}",
                    all_lines.join(", ")
                )));
            }
        }
        let mut lines: Vec<String> = all_lines
            .iter()
            .filter(|l| wanted.is_empty() || wanted.contains(l))
            .cloned()
            .collect();
        let src = match linux_src {
            None => None,
            Some(t) => {
                let what = format!("LINUX_SRC={}", t.display());
                let g = check_user_tree(t, &what, "unset it to use the pinned Debian sources")?;
                Some((t.to_path_buf(), g.line.to_string()))
            }
        };
        if let Some(a) = against {
            let Some((_, line)) = &src else {
                return Err(setup_err(
                    "--against compares the tree under test with a baseline: set \
                     LINUX_SRC=<tree under test>, e.g. `LINUX_SRC=~/linux cargo xtask fuzz --against`",
                ));
            };
            if a != "pinned" {
                let what = format!("--against {a}");
                let g = check_user_tree(Path::new(a), &what, "use `--against pinned`")?;
                if g.line != *line {
                    return Err(setup_err(format!(
                        "{what} implements the {} API, LINUX_SRC the API of line {line}: a \
                         C-against-C run compares two trees of the same API generation. Give a \
                         tree of line {line}'s generation, or `--against pinned`.",
                        g.name
                    )));
                }
            }
            if !wanted.is_empty() && lines != [line.clone()] {
                return Err(setup_err(format!(
                    "--against fuzzes line {line} only (the line of LINUX_SRC's tree); drop --line \
                     (or KPD_LINE) or give --line {line}"
                )));
            }
            lines = vec![line.clone()];
        }
        Ok(Mode {
            lines,
            all_lines: all_lines.to_vec(),
            src,
            against: against.map(String::from),
        })
    }

    /// `KPD_LINE` for the fuzzers: the one line of a restricted run (an `--against` binary
    /// forces its line by itself).
    pub fn kpd_line(&self) -> Option<&str> {
        match self.lines.as_slice() {
            [one] if self.against.is_none() && self.all_lines.len() > 1 => Some(one),
            _ => None,
        }
    }

    /// Where the fuzz build goes: C-against-C builds have their own target directory, so a
    /// normal build is not thrown away by one (build.rs compiles an extra baseline set).
    pub fn target_dir(&self) -> PathBuf {
        match self.against {
            Some(_) => fuzz_dir().join("target").join("against"),
            None => fuzz_dir().join("target"),
        }
    }

    /// Build log name.
    fn build_log(&self) -> PathBuf {
        let name = match self.against {
            Some(_) => "build-against.log",
            None => "build.log",
        };
        fuzz_dir().join("target").join("logs").join(name)
    }

    /// The environment the fuzz build needs beyond the caller's (`LINUX_SRC` is inherited).
    fn build_env(&self) -> Vec<(&'static str, String)> {
        let mut env = vec![];
        if let Some(a) = &self.against {
            env.push(("KPD_AGAINST", a.clone()));
        }
        env
    }

    /// One line saying what is compared, for the run's header.
    pub fn describe(&self) -> String {
        let lines = self.lines.join(" and ");
        match (&self.src, &self.against) {
            (Some((t, line)), Some(a)) => {
                let base = if a == "pinned" {
                    format!("the pinned {line} source (kernel.lock)")
                } else {
                    a.clone()
                };
                format!(
                    "line {line}: C from LINUX_SRC={} against C from {base} (no Rust model)",
                    t.display()
                )
            }
            (Some((t, line)), None) => format!(
                "line(s) {lines}: C against rust-pgtable; line {line}'s C side from LINUX_SRC={}",
                t.display()
            ),
            (None, _) => format!("line(s) {lines}: C (pinned sources) against rust-pgtable"),
        }
    }

    /// The environment prefix that reproduces a finding with the fuzz binary (`KPD_LINE=..`).
    fn replay_env(&self) -> String {
        self.kpd_line()
            .map_or_else(String::new, |l| format!("KPD_LINE={l} "))
    }
}

/// Flags of every fuzz build (`cargo xtask fuzz`, `mutants`, `bench`, oss-fuzz/build.sh).
///
/// `--no-trace-compares` drops libFuzzer's compare hooks from the *Rust*
/// code only: the C code keeps them (from `-fsanitize=fuzzer-no-link`), and
/// rust-pgtable's compares mirror pgtable.c's, so the guidance is kept while
/// the hooks no longer dominate the Rust side's teardown walk. Measured on
/// the stage2 target with ASan from an empty corpus, 10 s, seed 7: 876 ->
/// 2250 exec/s, and more coverage in the same time (cov 1838 -> 2457).
///
/// `-a` (debug assertions and overflow checks) belongs to the oracle: the Rust side's and the
/// harness's `debug_assert!`s and arithmetic overflow are checks too. oss-fuzz/build.sh builds
/// with the same flags (`cargo xtask oss-fuzz` checks that it does), so a local run fuzzes
/// exactly the code OSS-Fuzz fuzzes.
pub const BUILD_FLAGS: [&str; 3] = ["-O", "-a", "--no-trace-compares"];

/// Builds all targets with `cargo +nightly fuzz build BUILD_FLAGS --sanitizer S` in the
/// default target directory; returns the bin dir.
pub fn build(sanitizer: Sanitizer) -> Res<PathBuf> {
    build_in(
        sanitizer,
        &fuzz_dir().join("target"),
        &[],
        &fuzz_dir().join("target").join("logs").join("build.log"),
    )
}

/// Builds all targets into `target_dir` with `env` added; returns the bin dir. The output is
/// shown as it comes and kept in `log`; when the build fails, the last lines printed are a
/// pointer to `log` and build.rs' own `error:` paragraph (a tree it cannot compile), so
/// neither cargo-fuzz's lines nor a backtrace (`RUST_BACKTRACE=1`) bury them.
pub fn build_in(
    sanitizer: Sanitizer,
    target_dir: &Path,
    env: &[(&str, String)],
    log: &Path,
) -> Res<PathBuf> {
    let mut cmd = Command::new("cargo");
    cmd.args(["+nightly", "fuzz", "build"])
        .args(BUILD_FLAGS)
        .args(["--sanitizer", &value_name(sanitizer)]);
    let default_dir = fuzz_dir().join("target");
    if target_dir != default_dir {
        cmd.arg("--target-dir").arg(target_dir);
    }
    let shown_env: String = env.iter().map(|(k, v)| format!("{k}={v} ")).collect();
    cmd.envs(env.iter().map(|(k, v)| (k, v)))
        .current_dir(root());
    say!(
        "fuzz",
        "building all targets: {shown_env}{} ...",
        cmd_line(&cmd)
    );
    let t = Instant::now();
    mkdir(log.parent().unwrap())?;
    let logf = fs::File::create(log).ctx(format_args!("cannot create {}", log.display()))?;
    let logf = Mutex::new(logf);
    let _ = writeln!(logf.lock().unwrap(), "$ {shown_env}{}", cmd_line(&cmd));
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .ctx(format_args!("cannot run `{}`", cmd_line(&cmd)))?;
    // A failed build script's stdout (its `cargo:` directives and the cc crate's variable
    // dump, hundreds of lines) stays in the log only; its stderr is what it has to say.
    let in_stdout = AtomicBool::new(false);
    let readers = on_lines(&mut child, move |line| {
        match line.trim() {
            "--- stdout" => in_stdout.store(true, Ordering::SeqCst),
            "--- stderr" => in_stdout.store(false, Ordering::SeqCst),
            _ => {}
        }
        if !in_stdout.load(Ordering::SeqCst) {
            eprintln!("{line}");
        }
        let _ = writeln!(logf.lock().unwrap(), "{line}");
    });
    let st = child
        .wait()
        .ctx(format_args!("cannot wait for `{}`", cmd_line(&cmd)))?;
    for r in readers {
        let _ = r.join();
    }
    if !st.success() {
        let text = fs::read_to_string(log).unwrap_or_default();
        say!("fuzz", "the fuzz build failed; full log: {}", rel(log));
        return Err(setup_err(build_script_error(&text).unwrap_or_else(|| {
            format!(
                "fuzz build failed ({st}); the compiler's errors are in {}",
                rel(log)
            )
        })));
    }
    say!("fuzz", "built in {}", fmt_dur(t.elapsed()));
    Ok(target_dir.join(host_triple(true)?).join("release"))
}

/// build.rs' own `error: ...` paragraph in a failed cargo build's output (cargo shows the
/// build script's stderr indented under `--- stderr`), without the `error: ` prefix.
fn build_script_error(log: &str) -> Option<String> {
    let lines: Vec<&str> = log.lines().collect();
    let stderr = lines.iter().rposition(|l| l.trim() == "--- stderr")?;
    let first =
        (stderr + 1..lines.len()).find(|&i| lines[i].trim_start().starts_with("error: "))?;
    let indent = lines[first].len() - lines[first].trim_start().len();
    let mut out = vec![lines[first].trim_start()["error: ".len()..].to_string()];
    for l in &lines[first + 1..] {
        let body = l
            .get(indent..)
            .filter(|_| l.get(..indent).is_some_and(|p| p.trim().is_empty()));
        match body {
            Some(b) if !b.trim().is_empty() => out.push(b.to_string()),
            _ => break,
        }
    }
    Some(out.join("\n"))
}

#[derive(Default)]
struct Shared {
    prog: Progress,
    tail: VecDeque<String>,
    /// When the last `#N ...` status line arrived (libFuzzer prints them ever more rarely).
    last_status: Option<Instant>,
}

struct Running {
    name: String,
    workers: u32,
    child: Child,
    shared: Arc<Mutex<Shared>>,
    readers: Vec<JoinHandle<()>>,
    start: Instant,
    before: BTreeSet<String>,
    sigint_sent: Option<Instant>,
}

struct Outcome {
    name: String,
    /// libFuzzer workers of the run (1, or K of `-fork=K`).
    workers: u32,
    prog: Progress,
    elapsed: Duration,
    status: Option<ExitStatus>,
    /// Why this run is a finding, if it is one.
    finding: Option<String>,
    artifacts: Vec<PathBuf>,
    tail: Vec<String>,
    log: PathBuf,
    interrupted: bool,
}

fn artifact_dir(t: &str) -> PathBuf {
    fuzz_dir().join("artifacts").join(t)
}

fn log_path(t: &str) -> PathBuf {
    fuzz_dir()
        .join("target")
        .join("logs")
        .join(format!("{t}.log"))
}

/// How `cores` fuzzing processes are spread over `n` targets: the number of targets run at the
/// same time, and the libFuzzer workers of each (`-fork=K` when K > 1), in target order.
///
/// Whole targets first: each target is its own process with its own corpus, artifacts, log and
/// finding report, so a finding in one does not stop or muddle the others, and the status
/// lines and summary stay per target. Only the cores left over once every target has one go to
/// fork mode, whose workers share the target's corpus (what fork mode is for) but whose parent
/// prints no final stats and reports a finding through its children's log.
pub fn plan(cores: u32, n: usize) -> (usize, Vec<u32>) {
    let cores = cores.max(1) as usize;
    if n == 0 {
        return (0, vec![]);
    }
    if cores <= n {
        return (cores, vec![1; n]);
    }
    let (each, extra) = ((cores / n) as u32, cores % n);
    (n, (0..n).map(|i| each + (i < extra) as u32).collect())
}

/// The default of `--jobs`: every core this process may use.
pub fn default_jobs() -> u32 {
    std::thread::available_parallelism().map_or(1, |n| n.get() as u32)
}

/// The two phases of a run: every target's committed seeds replayed first (`-runs=0`, a few
/// seconds), so a change the scenarios already show is reported at once whatever the target
/// order; then fuzzing, of the targets whose seeds pass.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Seeds,
    Fuzz,
}

/// libFuzzer flags of production fuzzing, as OSS-Fuzz passes them: the `[libfuzzer]`
/// section of oss-fuzz/kvm-pgtable-diff.options and the dictionary. `cargo xtask fuzz`,
/// `mutants` and `bench --growth` all fuzz with them, so what they measure is what a
/// campaign does.
pub fn production_flags() -> Res<Vec<String>> {
    let dir = root().join("oss-fuzz");
    let opts = dir.join("kvm-pgtable-diff.options");
    let text = fs::read_to_string(&opts).ctx(format_args!("cannot read {}", rel(&opts)))?;
    let mut flags = crate::ossfuzz::parse_options(&text)
        .map_err(|e| setup_err(format!("{}: {e}", rel(&opts))))?;
    let dict = dir.join("kvm-pgtable-diff.dict");
    if !dict.is_file() {
        return Err(setup_err(format!("{} is missing", rel(&dict))));
    }
    flags.push(format!("-dict={}", dict.display()));
    Ok(flags)
}

fn start(
    name: &str,
    bin_dir: &Path,
    args: &Args,
    mode: &Mode,
    phase: Phase,
    workers: u32,
) -> Res<Running> {
    let bin = bin_dir.join(name);
    if !bin.is_file() {
        let b = rel(&bin);
        return Err(setup_err(format!(
            "{b} was not built; check fuzz/Cargo.toml's [[bin]] list"
        )));
    }
    let work = fuzz_dir().join("corpus-work").join(name);
    let seeds = fuzz_dir().join("corpus").join(name);
    let arts = artifact_dir(name);
    let log = log_path(name);
    for d in [&work, &arts, log.parent().unwrap()] {
        mkdir(d)?;
    }
    let mut logf = fs::File::create(&log).ctx(format_args!("cannot create {}", log.display()))?;
    let mut cmd = Command::new(&bin);
    match mode.kpd_line() {
        Some(l) => cmd.env("KPD_LINE", l),
        None => cmd.env_remove("KPD_LINE"),
    };
    cmd.arg(format!("-artifact_prefix={}/", arts.display()))
        .arg("-print_final_stats=1")
        // What OSS-Fuzz runs with (timeout, length, scheduling, dictionary).
        .args(production_flags()?)
        .args(&args.libfuzzer_args);
    let nseeds = names(&seeds).len();
    match phase {
        Phase::Seeds => {
            cmd.arg("-runs=0").arg(&seeds);
        }
        Phase::Fuzz => {
            if workers > 1 {
                // Fork mode writes new units to the first corpus directory, as a single
                // process does.
                cmd.arg(format!("-fork={workers}"));
            }
            cmd.arg(format!("-max_total_time={}", args.time)).arg(&work);
            if nseeds > 0 {
                cmd.arg(&seeds);
            }
        }
    }
    let _ = writeln!(logf, "$ {}{}", mode.replay_env(), cmd_line(&cmd));
    let before = names(&arts);
    let (time, units, w, l) = (
        time_str(args.time),
        names(&work).len(),
        rel(&work),
        rel(&log),
    );
    if phase == Phase::Fuzz {
        let fork = if workers > 1 {
            format!(", {workers} workers (-fork={workers})")
        } else {
            String::new()
        };
        say!(
            "fuzz",
            "{name}: {time}{fork}, corpus {w} ({units} units) + {nseeds} seeds, log {l}"
        );
    }
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .ctx(format_args!("cannot run {}", bin.display()))?;
    let shared = Arc::new(Mutex::new(Shared::default()));
    let (sh, logf) = (shared.clone(), Mutex::new(logf));
    let readers = on_lines(&mut child, move |line| {
        let _ = writeln!(logf.lock().unwrap(), "{line}");
        let mut s = sh.lock().unwrap();
        s.prog.feed(&line);
        if line.starts_with('#') {
            s.last_status = Some(Instant::now());
        }
        if s.tail.len() == TAIL_LINES {
            s.tail.pop_front();
        }
        s.tail.push_back(line);
    });
    Ok(Running {
        name: name.to_string(),
        workers,
        child,
        shared,
        readers,
        start: Instant::now(),
        before,
        sigint_sent: None,
    })
}

fn time_str(secs: u64) -> String {
    if secs == 0 {
        "until Ctrl-C".into()
    } else {
        format!("{secs} s")
    }
}

fn status_line(r: &Running, time: u64) {
    let (p, last) = {
        let s = r.shared.lock().unwrap();
        (s.prog.clone(), s.last_status)
    };
    let el = r.start.elapsed().as_secs();
    let of = if time > 0 {
        format!("/{time}s")
    } else {
        String::new()
    };
    // Between libFuzzer's power-of-two pulses, extrapolate the exec count.
    let age = last.map_or(0.0, |t| t.elapsed().as_secs_f64());
    let execs = if age > 1.0 && p.exec_s > 0 {
        format!("~{}", fmt_count(p.execs + (p.exec_s as f64 * age) as u64))
    } else {
        fmt_count(p.execs)
    };
    let (cov, ft, corp, rate) = (p.cov, p.ft, p.corp, fmt_count(p.exec_s));
    let tag = format!("fuzz {}", r.name);
    say!(
        tag,
        "{el}s{of}  #{execs}  cov {cov}  ft {ft}  corp {corp}  {rate} exec/s"
    );
}

fn finish(mut r: Running, status: Option<ExitStatus>) -> Outcome {
    for h in r.readers.drain(..) {
        let _ = h.join();
    }
    let elapsed = r.start.elapsed();
    let sh = r.shared.lock().unwrap();
    let prog = sh.prog.clone();
    let tail: Vec<String> = sh.tail.iter().cloned().collect();
    drop(sh);
    let arts_dir = artifact_dir(&r.name);
    let artifacts: Vec<PathBuf> = names(&arts_dir)
        .difference(&r.before)
        .filter(|n| is_finding_artifact(n))
        .map(|n| arts_dir.join(n))
        .collect();
    let interrupted = INTERRUPTED.load(Ordering::SeqCst);
    // A Rust panic is the divergence report: name the finding by its location.
    let reason =
        panic_title(&tail).or_else(|| prog.error.as_deref().map(|e| strip_pid(e).to_string()));
    let finding = if let Some(a) = artifacts.first() {
        let kind = a.file_name().unwrap().to_string_lossy();
        let kind = kind.split('-').next().unwrap_or("crash").to_string();
        Some(reason.unwrap_or(kind))
    } else {
        match status {
            Some(s) if s.success() => None,
            Some(s)
                if interrupted && (s.code() == Some(INTERRUPTED_EXIT) || s.code().is_none()) =>
            {
                None
            }
            Some(s) => Some(reason.unwrap_or_else(|| format!("libFuzzer exited with {s}"))),
            None => Some("libFuzzer did not exit".into()),
        }
    };
    Outcome {
        name: r.name.clone(),
        workers: r.workers,
        prog,
        elapsed,
        status,
        finding,
        artifacts,
        tail,
        log: log_path(&r.name),
        interrupted,
    }
}

/// Runs the targets as `plan` spreads `cores` over them; returns outcomes in end order.
fn run_targets(
    targets: &[String],
    bin_dir: &Path,
    args: &Args,
    mode: &Mode,
    phase: Phase,
    cores: u32,
) -> Res<Vec<Outcome>> {
    let (at_once, workers) = plan(cores, targets.len());
    let mut queue: VecDeque<(&String, u32)> = targets.iter().zip(workers).collect();
    let mut running: Vec<Running> = vec![];
    let mut done: Vec<Outcome> = vec![];
    let interval = Duration::from_secs(if (1..=300).contains(&args.time) {
        5
    } else {
        30
    });
    let mut last_status = Instant::now();
    loop {
        let stop = INTERRUPTED.load(Ordering::SeqCst);
        while !stop && running.len() < at_once {
            let Some((t, w)) = queue.pop_front() else {
                break;
            };
            let w = if phase == Phase::Fuzz { w } else { 1 };
            running.push(start(t, bin_dir, args, mode, phase, w)?);
        }
        if running.is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
        let mut i = 0;
        while i < running.len() {
            match running[i].child.try_wait() {
                Ok(Some(st)) => {
                    let o = finish(running.remove(i), Some(st));
                    let tag = format!("fuzz {}", o.name);
                    let t = fmt_dur(o.elapsed);
                    match (phase, &o.finding) {
                        (Phase::Seeds, Some(f)) => {
                            say!(tag, "FINDING in the committed seeds after {t}: {f}")
                        }
                        (Phase::Seeds, None) => {}
                        (Phase::Fuzz, f) => {
                            let what = if f.is_some() { "FINDING" } else { "done" };
                            let n = fmt_count(o.prog.total_execs());
                            let (cov, corp) = (o.prog.cov, o.prog.corp);
                            say!(tag, "{what} after {t}: {n} execs, cov {cov}, corp {corp}");
                        }
                    }
                    done.push(o);
                }
                Ok(None) => {
                    let r = &mut running[i];
                    if stop {
                        // The terminal's Ctrl-C reaches libFuzzer too; forward it if not.
                        match r.sigint_sent {
                            None => r.sigint_sent = Some(Instant::now()),
                            Some(t) if t.elapsed() > Duration::from_secs(10) => {
                                let _ = r.child.kill();
                            }
                            Some(t) if t.elapsed() > Duration::from_secs(1) => {
                                let pid = r.child.id().to_string();
                                let _ = Command::new("kill").args(["-INT", &pid]).status();
                            }
                            _ => {}
                        }
                    }
                    i += 1;
                }
                Err(e) => {
                    warn!("fuzz", "{}: {e}", running[i].name);
                    let mut r = running.remove(i);
                    let _ = r.child.kill();
                    let st = r.child.wait().ok();
                    done.push(finish(r, st));
                }
            }
        }
        if last_status.elapsed() >= interval {
            last_status = Instant::now();
            for r in &running {
                status_line(r, args.time);
            }
        }
    }
    for (t, _) in queue {
        warn!("fuzz", "{t}: not run (interrupted)");
    }
    Ok(done)
}

/// The finding report from a target's output tail.
///
/// With a Rust panic (the divergence report), that is the panic message (without the
/// backtrace that follows it) plus libFuzzer's / the sanitizer's one-line summaries; otherwise
/// (e.g. an ASan report from the C side) everything from the first `ERROR:` line on.
/// Capped at [`REPORT_LINES`]; returns the lines and how many were left out.
fn report_lines(tail: &[String]) -> (Vec<&str>, usize) {
    let is_err = |l: &str| crate::libfuzzer::is_error_line(l.trim());
    let mut out: Vec<&str> = vec![];
    if let Some(p) = tail.iter().position(|l| l.contains("panicked at")) {
        for l in &tail[p..] {
            let t = l.trim();
            if t == "stack backtrace:"
                || t.starts_with("note: run with `RUST_BACKTRACE")
                || is_err(t)
            {
                break;
            }
            out.push(l);
        }
        for l in &tail[p..] {
            let t = l.trim();
            if (is_err(t) || t.starts_with("SUMMARY:")) && !out.contains(&l.as_str()) {
                out.push(l);
            }
        }
    } else {
        let start = tail.iter().position(|l| is_err(l));
        let start = start.unwrap_or(tail.len().saturating_sub(60));
        out.extend(tail[start..].iter().map(|s| s.as_str()));
    }
    let more = out.len().saturating_sub(REPORT_LINES);
    out.truncate(REPORT_LINES);
    (out, more)
}

/// Title of a Rust panic in the output: the first line of its message (the divergence
/// report's headline), else `panicked at <location>`.
fn panic_title(tail: &[String]) -> Option<String> {
    let p = tail.iter().position(|l| l.contains("panicked at "))?;
    let loc = tail[p]
        .split_once("panicked at ")
        .map_or("", |(_, l)| l.trim_end_matches(':'));
    let first = tail[p + 1..]
        .iter()
        .map(|l| l.trim())
        .find(|l| !l.trim_matches('=').trim().is_empty())
        .filter(|l| !l.starts_with("stack backtrace") && !crate::libfuzzer::is_error_line(l))
        .map(|l| l.trim_matches(|c| c == '=' || c == ' '));
    Some(first.map_or_else(|| format!("panicked at {loc}"), String::from))
}

/// `==123== ERROR: libFuzzer: deadly signal` -> `ERROR: libFuzzer: deadly signal`.
fn strip_pid(line: &str) -> &str {
    let t = line.trim();
    let rest = t
        .strip_prefix("==")
        .and_then(|r| Some(&r[r.find("==")? + 2..]));
    rest.map_or(t, str::trim)
}

/// Which kernel line a finding is on and which trees were compared, from its report's
/// `sides: ...` and `kernel line <set>: <source> (pgtable.c sha256 ...)` lines.
#[derive(Debug, Default, PartialEq, Eq)]
struct Where {
    /// The kernel line (`7.3`), if the report or the run names it.
    line: Option<String>,
    /// `C 7.3 against Rust`, `C 7.3 against C 7.3-base`.
    sides: Option<String>,
    /// `7.3: LINUX_SRC=/x (pgtable.c sha256 ...)`, one per C tree of the report.
    trees: Vec<String>,
}

fn finding_where(tail: &[String], forced: Option<&str>) -> Where {
    let mut w = Where::default();
    let start = tail
        .iter()
        .position(|l| l.contains("panicked at"))
        .unwrap_or(0);
    for l in &tail[start..] {
        let t = l.trim();
        if let Some(s) = t.strip_prefix("sides: ") {
            w.sides.get_or_insert_with(|| s.to_string());
        } else if let Some(s) = t.strip_prefix("kernel line ") {
            if let Some((set, _)) = s.split_once(": ") {
                w.line
                    .get_or_insert_with(|| set.trim_end_matches("-base").to_string());
            }
            if !w.trees.iter().any(|x| x == s) {
                w.trees.push(s.to_string());
            }
        } else if let Some(cfg) = t.strip_prefix("config ") {
            let k = cfg
                .split_whitespace()
                .find_map(|f| f.strip_prefix("kernel="));
            if let Some(k) = k.filter(|_| w.line.is_none()) {
                w.line = Some(k.to_string());
            }
        }
        if t.starts_with("--- difference") {
            break;
        }
    }
    if w.line.is_none() {
        w.line = forced.map(String::from);
    }
    w
}

/// A run's exec/s: libFuzzer's final average, else executions over the run's time.
fn exec_rate(o: &Outcome) -> u64 {
    match o.prog.avg_exec_s() {
        0 => (o.prog.total_execs() as f64 / o.elapsed.as_secs_f64().max(1e-3)) as u64,
        v => v,
    }
}

/// The summary's last row: executions, corpus units and findings summed over the targets;
/// `time` is the fuzzing phase's wall time and exec/s the summed executions over it (what the
/// machine did per second, whether the targets ran together or in turns).
fn total_row(outcomes: &[Outcome], wall: Duration) -> Vec<String> {
    let findings: usize = outcomes
        .iter()
        .map(|o| o.artifacts.len().max(o.finding.is_some() as usize))
        .sum();
    let execs: u64 = outcomes.iter().map(|o| o.prog.total_execs()).sum();
    let result = if outcomes.iter().any(|o| o.finding.is_some()) {
        "FINDING"
    } else {
        "ok"
    };
    vec![
        "total".into(),
        result.into(),
        fmt_dur(wall),
        fmt_count(execs),
        fmt_count((execs as f64 / wall.as_secs_f64().max(1e-3)) as u64),
        "-".into(),
        "-".into(),
        outcomes
            .iter()
            .map(|o| o.prog.corp)
            .sum::<u64>()
            .to_string(),
        "-".into(),
        findings.to_string(),
        "-".into(),
    ]
}

fn print_summary(outcomes: &[Outcome], bin_dir: &Path, mode: &Mode, wall: Duration) {
    let forced = match mode.lines.as_slice() {
        [one] => Some(one.as_str()),
        _ => None,
    };
    let wheres: Vec<Where> = outcomes
        .iter()
        .map(|o| match o.finding {
            Some(_) => finding_where(&o.tail, forced),
            None => Where::default(),
        })
        .collect();
    for (o, w) in outcomes.iter().zip(&wheres) {
        let Some(finding) = &o.finding else { continue };
        let on = w
            .line
            .as_deref()
            .map_or_else(String::new, |l| format!(" (line {l})"));
        println!();
        println!("==== FINDING in {}{on}: {finding} ====", o.name);
        let (lines, more) = report_lines(&o.tail);
        for l in lines {
            println!("{l}");
        }
        if more > 0 {
            println!("... {more} more lines in {}", rel(&o.log));
        }
        println!("----");
        match (&w.line, &w.sides) {
            (Some(l), Some(s)) => println!("line:       {l} ({s})"),
            (Some(l), None) => println!("line:       {l}"),
            (None, _) => println!("line:       unknown (the report does not name it)"),
        }
        for t in &w.trees {
            println!("  {t}");
        }
        for a in &o.artifacts {
            println!("reproducer: {}", rel(a));
            println!(
                "reproduce:  {}{} {}",
                mode.replay_env(),
                rel(&bin_dir.join(&o.name)),
                rel(a)
            );
        }
        if o.artifacts.is_empty() {
            println!("reproducer: none saved (libFuzzer exit: {:?})", o.status);
        }
        println!("full log:   {}", rel(&o.log));
    }
    let rows: Vec<Vec<String>> = outcomes
        .iter()
        .zip(&wheres)
        .map(|(o, w)| {
            let result = if o.finding.is_some() {
                "FINDING"
            } else if o.interrupted {
                "interrupted"
            } else {
                "ok"
            };
            vec![
                o.name.clone(),
                result.into(),
                fmt_dur(o.elapsed),
                fmt_count(o.prog.total_execs()),
                fmt_count(exec_rate(o)),
                o.prog.cov.to_string(),
                o.prog.ft.to_string(),
                o.prog.corp.to_string(),
                o.workers.to_string(),
                o.artifacts
                    .len()
                    .max(o.finding.is_some() as usize)
                    .to_string(),
                w.line.clone().unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    let mut rows = rows;
    if outcomes.len() > 1 {
        rows.push(total_row(outcomes, wall));
    }
    println!();
    say!("fuzz", "summary ({})", mode.describe());
    let header = [
        "target", "result", "time", "execs", "exec/s", "cov", "ft", "corpus", "workers",
    ];
    print!(
        "{}",
        table(&[&header[..], &["findings", "line"]].concat(), &rows)
    );
}

pub fn run(args: Args) -> Res<u8> {
    let targets = select_targets(&args.targets)?;
    // Every tree is judged before anything is installed or built: a wrong LINUX_SRC ends
    // the command with one paragraph, printed last.
    let lock = kernel::read_lock()?;
    let all_lines: Vec<String> = lock.lines.iter().map(|l| l.name.clone()).collect();
    let linux_src = std::env::var_os("LINUX_SRC")
        .filter(|s| !s.is_empty())
        .map(PathBuf::from);
    let env_line = std::env::var("KPD_LINE").ok();
    let mode = Mode::new(
        &args.lines,
        args.against.as_deref(),
        linux_src.as_deref(),
        env_line.as_deref(),
        &all_lines,
    )?;
    setup::setup(setup::Opts { fuzz: true })?;
    if mode.src.is_some() {
        // setup skips the cache when LINUX_SRC is set, but the lines LINUX_SRC does not
        // replace, and a pinned baseline, are built from it.
        kernel::ensure(kernel::Opts::default())?;
    }
    say!("fuzz", "{}", mode.describe());
    if args.lines.is_empty() && mode.kpd_line().is_some() {
        say!("fuzz", "KPD_LINE from the environment restricts the run");
    }
    let bin_dir = build_in(
        args.sanitizer,
        &mode.target_dir(),
        &mode.build_env(),
        &mode.build_log(),
    )?;
    for t in &targets {
        if !bin_dir.join(t).is_file() {
            let b = rel(&bin_dir.join(t));
            return Err(setup_err(format!(
                "{b} was not built; add a [[bin]] for it to fuzz/Cargo.toml"
            )));
        }
    }
    ctrlc::set_handler(|| {
        if INTERRUPTED.swap(true, Ordering::SeqCst) {
            eprintln!("[fuzz] interrupted again; waiting for libFuzzer to exit");
        } else {
            eprintln!("[fuzz] interrupted; stopping the fuzzers");
        }
    })
    .map_err(|e| setup_err(format!("cannot install the Ctrl-C handler: {e}")))?;
    let (all, time, san) = (
        targets.join(", "),
        time_str(args.time),
        value_name(args.sanitizer),
    );
    let cores = args.jobs.unwrap_or_else(default_jobs);
    let from = if args.jobs.is_some() {
        "--jobs"
    } else {
        "every core"
    };
    let (at_once, _) = plan(cores, targets.len());
    say!(
        "fuzz",
        "fuzzing {all} ({time} each), {cores} process(es) ({from}): {at_once} target(s) at a \
         time, sanitizer {san}, line(s) {}",
        mode.lines.join(", ")
    );
    let t0 = Instant::now();
    // A target without committed seeds has nothing to replay (libFuzzer would refuse the
    // missing directory).
    let seeded_targets: Vec<String> = targets
        .iter()
        .filter(|t| !names(&fuzz_dir().join("corpus").join(t)).is_empty())
        .cloned()
        .collect();
    let seeded = run_targets(&seeded_targets, &bin_dir, &args, &mode, Phase::Seeds, cores)?;
    let (mut outcomes, _): (Vec<Outcome>, Vec<Outcome>) =
        seeded.into_iter().partition(|o| o.finding.is_some());
    let clean: Vec<String> = targets
        .iter()
        .filter(|t| !outcomes.iter().any(|o| &o.name == *t))
        .cloned()
        .collect();
    say!(
        "fuzz",
        "seeds replayed in {}: {} of {} target(s) pass",
        fmt_dur(t0.elapsed()),
        clean.len(),
        targets.len()
    );
    let t1 = Instant::now();
    outcomes.extend(run_targets(
        &clean,
        &bin_dir,
        &args,
        &mode,
        Phase::Fuzz,
        cores,
    )?);
    let wall = t1.elapsed();
    outcomes.sort_by_key(|o| targets.iter().position(|t| *t == o.name));
    print_summary(&outcomes, &bin_dir, &mode, wall);
    let n = outcomes.iter().filter(|o| o.finding.is_some()).count();
    if n > 0 {
        println!("[fuzz] {n} target(s) with findings; reproducers under fuzz/artifacts/");
        Ok(EXIT_FINDING)
    } else {
        say!("fuzz", "no findings");
        Ok(EXIT_OK)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_are_the_files_of_fuzz_targets() {
        let files = names(&fuzz_dir().join("fuzz_targets"));
        let mut want: Vec<String> = TARGETS.iter().map(|t| format!("{t}.rs")).collect();
        want.sort();
        assert_eq!(files.into_iter().collect::<Vec<_>>(), want);
    }

    #[test]
    fn cores_go_to_whole_targets_first() {
        // Fewer cores than targets: that many targets at once, one process each.
        assert_eq!(plan(1, 5), (1, vec![1; 5]));
        assert_eq!(plan(2, 5), (2, vec![1; 5]));
        assert_eq!(plan(5, 5), (5, vec![1; 5]));
        // More: every target at once, the rest as fork-mode workers, first targets first.
        assert_eq!(plan(8, 5), (5, vec![2, 2, 2, 1, 1]));
        assert_eq!(plan(16, 2), (2, vec![8, 8]));
        assert_eq!(plan(0, 1), (1, vec![1]));
        assert_eq!(plan(4, 0), (0, vec![]));
    }

    #[test]
    fn target_validation() {
        assert_eq!(select_targets(&[]).unwrap(), TARGETS);
        assert_eq!(
            select_targets(&["walk".into(), "walk".into()]).unwrap(),
            ["walk"]
        );
        let e = select_targets(&["nope".into()]).unwrap_err();
        assert_eq!(e.code, 2);
        assert!(e.msg.contains("stage2"));
    }

    #[test]
    fn report_starts_at_panic() {
        let tail: Vec<String> = [
            "INFO: x",
            "thread '<unnamed>' panicked at src/fuzz.rs:1:1:",
            "divergence",
            "==1== ERROR: libFuzzer: deadly signal",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let (l, more) = report_lines(&tail);
        assert_eq!(l, &tail[1..]);
        assert_eq!(more, 0);
        assert_eq!(strip_pid(&tail[3]), "ERROR: libFuzzer: deadly signal");
        assert_eq!(panic_title(&tail).as_deref(), Some("divergence"));
        let t: Vec<String> = vec![
            "thread 'x' panicked at a.rs:1:2:".into(),
            "".into(),
            "=== ops differ ===".into(),
        ];
        assert_eq!(panic_title(&t).as_deref(), Some("ops differ"));
        let t: Vec<String> = vec![
            "thread 'x' panicked at a.rs:1:2:".into(),
            "==1== ERROR: libFuzzer: deadly signal".into(),
        ];
        assert_eq!(panic_title(&t).as_deref(), Some("panicked at a.rs:1:2"));
    }

    fn lines() -> Vec<String> {
        vec!["6.12".into(), "7.3".into()]
    }

    /// A made-up tree (not kernel code) whose pgtable.c defines the functions of generation
    /// `g`, in `dir`.
    fn fake_tree(dir: &Path, g: &probe::Generation) {
        let _ = fs::remove_dir_all(dir);
        let body: String = g
            .functions()
            .map(|f| format!("int {f}(void *p)\n{{\n}}\n\n"))
            .collect();
        for f in KERNEL_FILES {
            let p = dir.join(f);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(&p, if f.ends_with(".c") { body.as_str() } else { "" }).unwrap();
        }
    }

    #[test]
    fn lines_default_to_all_and_select_one() {
        let m = Mode::new(&[], None, None, None, &lines()).unwrap();
        assert_eq!(m.lines, lines());
        assert_eq!(m.kpd_line(), None);
        assert_eq!(m.target_dir(), fuzz_dir().join("target"));
        let m = Mode::new(&["7.3".into()], None, None, None, &lines()).unwrap();
        assert_eq!(
            (m.lines.as_slice(), m.kpd_line()),
            (&["7.3".to_string()][..], Some("7.3"))
        );
        // Both named is every line: no restriction; order follows kernel.lock.
        let both = ["7.3".to_string(), "6.12".to_string()];
        let m = Mode::new(&both, None, None, None, &lines()).unwrap();
        assert_eq!((m.lines.clone(), m.kpd_line()), (lines(), None));
        // The environment's KPD_LINE is the default; --line wins over it.
        let m = Mode::new(&[], None, None, Some("6.12"), &lines()).unwrap();
        assert_eq!(m.kpd_line(), Some("6.12"));
        let m = Mode::new(&["7.3".into()], None, None, Some("6.12"), &lines()).unwrap();
        assert_eq!(m.kpd_line(), Some("7.3"));
        let e = Mode::new(&["6.1".into()], None, None, None, &lines()).unwrap_err();
        assert_eq!(e.code, 2);
        assert!(
            e.msg.starts_with("--line 6.1: not a kernel line"),
            "{}",
            e.msg
        );
        let e = Mode::new(&[], None, None, Some("5.10"), &lines()).unwrap_err();
        assert!(
            e.msg.starts_with("KPD_LINE=5.10 (environment)"),
            "{}",
            e.msg
        );
    }

    #[test]
    fn against_needs_linux_src_and_forces_its_line() {
        let e = Mode::new(&[], Some("pinned"), None, None, &lines()).unwrap_err();
        assert_eq!(e.code, 2);
        assert!(
            e.msg.contains("set LINUX_SRC=<tree under test>"),
            "{}",
            e.msg
        );
        let d = std::env::temp_dir().join(format!("xtask-against-{}", std::process::id()));
        let (t73, t612) = (d.join("t73"), d.join("t612"));
        fake_tree(&t73, &probe::GENERATIONS[1]);
        fake_tree(&t612, &probe::GENERATIONS[0]);
        let m = Mode::new(&[], Some("pinned"), Some(&t73), None, &lines()).unwrap();
        assert_eq!(m.lines, ["7.3"]);
        assert_eq!(m.src, Some((t73.clone(), "7.3".to_string())));
        // The binary forces the line itself; builds go to their own directory.
        assert_eq!(m.kpd_line(), None);
        assert_eq!(m.build_env(), [("KPD_AGAINST", "pinned".to_string())]);
        assert_eq!(m.target_dir(), fuzz_dir().join("target").join("against"));
        let t73s = t73.display().to_string();
        let m = Mode::new(&[], Some(&t73s), Some(&t73), None, &lines()).unwrap();
        assert_eq!(m.against.as_deref(), Some(t73s.as_str()));
        // A baseline of the other generation, or --line naming the other line, is refused.
        let t612s = t612.display().to_string();
        let e = Mode::new(&[], Some(&t612s), Some(&t73), None, &lines()).unwrap_err();
        assert!(e.msg.contains("same API generation"), "{}", e.msg);
        let e = Mode::new(&["6.12".into()], Some("pinned"), Some(&t73), None, &lines());
        assert!(e.unwrap_err().msg.contains("fuzzes line 7.3 only"));
        // Without --against, LINUX_SRC replaces its line and both lines are fuzzed.
        let m = Mode::new(&[], None, Some(&t612), None, &lines()).unwrap();
        assert_eq!(
            (m.lines, m.src.map(|s| s.1)),
            (lines(), Some("6.12".to_string()))
        );
        let _ = fs::remove_dir_all(&d);
    }

    #[test]
    fn wrong_trees_give_the_paragraph() {
        let d = std::env::temp_dir().join(format!("xtask-trees-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        let e = Mode::new(&[], None, Some(&d), None, &lines()).unwrap_err();
        assert_eq!(e.code, 2);
        assert!(
            e.msg.ends_with(
                "is not a directory. Point it at a Linux kernel tree \
                                 (the directory containing arch/arm64), or unset it to use the \
                                 pinned Debian sources."
            ),
            "{}",
            e.msg
        );
        fs::create_dir_all(&d).unwrap();
        let e = Mode::new(&[], None, Some(&d), None, &lines()).unwrap_err();
        assert!(
            e.msg.contains("has no arch/arm64/kvm/hyp/pgtable.c."),
            "{}",
            e.msg
        );
        // A tree of neither generation (6.12's functions without split, as in 6.1).
        let g = &probe::GENERATIONS[0];
        fake_tree(&d, g);
        let p = d.join(KERNEL_FILES[0]);
        let text = fs::read_to_string(&p).unwrap();
        fs::write(&p, text.replace("kvm_pgtable_stage2_split", "other_fn")).unwrap();
        let e = Mode::new(&[], None, Some(&d), None, &lines()).unwrap_err();
        assert!(
            e.msg.contains("is not a supported kernel tree")
                && e.msg.contains("does not define kvm_pgtable_stage2_split"),
            "{}",
            e.msg
        );
        let _ = fs::remove_dir_all(&d);
    }

    #[test]
    fn build_script_paragraph_from_cargo_output() {
        let log = [
            "   Compiling kvm-pgtable-diff v0.1.0 (/r)",
            "error: failed to run custom build command for `kvm-pgtable-diff v0.1.0 (/r)`",
            "",
            "Caused by:",
            "  process didn't exit successfully: `/r/build-script-build` (exit status: 1)",
            "  --- stdout",
            "  cargo:rerun-if-changed=c-shim",
            "  --- stderr",
            "",
            "  error: LINUX_SRC=/t (line 7.3) does not compile as the API.",
            "  First errors:",
            "    pgtable.c:1:2: error: conflicting types",
            "",
            "warning: build failed, waiting for other jobs to finish...",
            "Error: failed to build fuzz script",
            "Stack backtrace:",
            "   0: error: not this one",
        ]
        .join("\n");
        let log = log.as_str();
        assert_eq!(
            build_script_error(log).as_deref(),
            Some(
                "LINUX_SRC=/t (line 7.3) does not compile as the API.\nFirst errors:\n  \
                 pgtable.c:1:2: error: conflicting types"
            )
        );
        assert_eq!(build_script_error("error[E0308]: mismatched types\n"), None);
    }

    #[test]
    fn finding_names_its_line_and_trees() {
        let tail: Vec<String> = [
            "INFO: x",
            "thread '<unnamed>' panicked at src/fuzz.rs:1:1:",
            "=== kvm-pgtable-diff: event traces differ at op #1 (s2_annotate) ===",
            "sides: C 7.3 against C 7.3-base",
            "kernel line 7.3: LINUX_SRC=/t (pgtable.c sha256 0123)",
            "kernel line 7.3-base: linux-source-7.3 7.3.4 (kernel.lock) (pgtable.c sha256 4567)",
            "config kernel=7.3 stage=stage2",
            "--- difference at op #1 ---",
            "kernel line 9: not part of the header",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let w = finding_where(&tail, None);
        assert_eq!(w.line.as_deref(), Some("7.3"));
        assert_eq!(w.sides.as_deref(), Some("C 7.3 against C 7.3-base"));
        assert_eq!(w.trees.len(), 2);
        assert!(w.trees[1].starts_with("7.3-base: linux-source-7.3"));
        // An ASan report names no line: the run's only line, else none.
        let asan: Vec<String> = vec!["==1== ERROR: AddressSanitizer: heap-buffer-overflow".into()];
        assert_eq!(
            finding_where(&asan, Some("6.12")).line.as_deref(),
            Some("6.12")
        );
        assert_eq!(finding_where(&asan, None), Where::default());
    }
}
