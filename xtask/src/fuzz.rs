//! `cargo xtask fuzz`: build every fuzz target once, run each for `--time` seconds,
//! report progress, a per-target table, and any finding with its reproducer.
//!
//! Layout (all under `fuzz/`):
//! - `fuzz_targets/<name>.rs`  the targets (thin wrappers around `kvm_pgtable_diff::fuzz::run`);
//! - `corpus/<name>/`           committed seeds (read-only input to the run);
//! - `corpus-work/<name>/`      working corpus, where libFuzzer writes new units (git-ignored);
//! - `artifacts/<name>/`        crash-/leak-/timeout-/oom- reproducers (git-ignored);
//! - `target/logs/<name>.log`   full libFuzzer output of the last run.

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
use crate::setup;
use crate::util::{
    Ctx, EXIT_FINDING, EXIT_OK, Res, cmd_line, fmt_count, fmt_dur, host_triple, mkdir, names,
    on_lines, rel, root, setup_err, table, value_name,
};
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
    /// Number of targets fuzzed at the same time (one core each).
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    pub jobs: u32,
    /// Sanitizer for the fuzz build (Rust and C).
    #[arg(long, value_enum, default_value_t = Sanitizer::Address)]
    pub sanitizer: Sanitizer,
    /// Extra libFuzzer flags, e.g. `-- -max_len=4096 -dict=d.txt`.
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

/// Flags of every fuzz build (`cargo xtask fuzz`, `mutants`, `bench`, oss-fuzz/build.sh).
///
/// `--no-trace-compares` drops libFuzzer's compare hooks from the *Rust*
/// code only: the C code keeps them (from `-fsanitize=fuzzer-no-link`), and
/// rust-pgtable's compares mirror pgtable.c's, so the guidance is kept while
/// the hooks no longer dominate the Rust side's teardown walk. Measured on
/// the stage2 target with ASan from an empty corpus, 10 s, seed 7: 876 ->
/// 2250 exec/s, and more coverage in the same time (cov 1838 -> 2457).
pub const BUILD_FLAGS: [&str; 2] = ["-O", "--no-trace-compares"];

/// Builds all targets with `cargo +nightly fuzz build BUILD_FLAGS --sanitizer S`; returns the bin dir.
pub fn build(sanitizer: Sanitizer) -> Res<PathBuf> {
    let mut cmd = Command::new("cargo");
    cmd.args(["+nightly", "fuzz", "build"])
        .args(BUILD_FLAGS)
        .args(["--sanitizer", &value_name(sanitizer)])
        .current_dir(root());
    say!("fuzz", "building all targets: {} ...", cmd_line(&cmd));
    let t = Instant::now();
    let st = crate::util::run(&mut cmd)?;
    if !st.success() {
        return Err(setup_err("fuzz build failed (see cargo's output above)"));
    }
    say!("fuzz", "built in {}", fmt_dur(t.elapsed()));
    Ok(fuzz_dir()
        .join("target")
        .join(host_triple(true)?)
        .join("release"))
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
    child: Child,
    shared: Arc<Mutex<Shared>>,
    readers: Vec<JoinHandle<()>>,
    start: Instant,
    before: BTreeSet<String>,
    sigint_sent: Option<Instant>,
}

struct Outcome {
    name: String,
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

fn start(name: &str, bin_dir: &Path, args: &Args) -> Res<Running> {
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
    cmd.arg(format!("-max_total_time={}", args.time))
        .arg(format!("-artifact_prefix={}/", arts.display()))
        .arg("-print_final_stats=1")
        // libFuzzer's default (1200 s) is longer than a run; OSS-Fuzz uses 25 s.
        .arg("-timeout=25")
        // See oss-fuzz/kvm-pgtable-diff.options: full-length inputs from the start.
        .arg("-len_control=0")
        .arg("-max_len=4096")
        .args(&args.libfuzzer_args)
        .arg(&work);
    let nseeds = names(&seeds).len();
    if nseeds > 0 {
        cmd.arg(&seeds);
    }
    let _ = writeln!(logf, "$ {}", cmd_line(&cmd));
    let before = names(&arts);
    let (time, units, w, l) = (
        time_str(args.time),
        names(&work).len(),
        rel(&work),
        rel(&log),
    );
    say!(
        "fuzz",
        "{name}: {time}, corpus {w} ({units} units) + {nseeds} seeds, log {l}"
    );
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

/// Runs the targets with at most `jobs` at a time; returns outcomes in start order.
fn run_targets(targets: &[String], bin_dir: &Path, args: &Args) -> Res<Vec<Outcome>> {
    let mut queue: VecDeque<&String> = targets.iter().collect();
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
        while !stop && running.len() < args.jobs as usize {
            let Some(t) = queue.pop_front() else { break };
            running.push(start(t, bin_dir, args)?);
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
                    let what = if o.finding.is_some() {
                        "FINDING"
                    } else {
                        "done"
                    };
                    let (t, n) = (fmt_dur(o.elapsed), fmt_count(o.prog.total_execs()));
                    let (cov, corp) = (o.prog.cov, o.prog.corp);
                    let tag = format!("fuzz {}", o.name);
                    say!(tag, "{what} after {t}: {n} execs, cov {cov}, corp {corp}");
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
    for t in queue {
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

fn print_summary(outcomes: &[Outcome], bin_dir: &Path) {
    for o in outcomes.iter().filter(|o| o.finding.is_some()) {
        println!();
        println!(
            "==== FINDING in {}: {} ====",
            o.name,
            o.finding.as_deref().unwrap_or("")
        );
        let (lines, more) = report_lines(&o.tail);
        for l in lines {
            println!("{l}");
        }
        if more > 0 {
            println!("... {more} more lines in {}", rel(&o.log));
        }
        println!("----");
        for a in &o.artifacts {
            println!("reproducer: {}", rel(a));
            println!("reproduce:  {} {}", rel(&bin_dir.join(&o.name)), rel(a));
        }
        if o.artifacts.is_empty() {
            println!("reproducer: none saved (libFuzzer exit: {:?})", o.status);
        }
        println!("full log:   {}", rel(&o.log));
    }
    let rows: Vec<Vec<String>> = outcomes
        .iter()
        .map(|o| {
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
                fmt_count(match o.prog.avg_exec_s() {
                    0 => (o.prog.total_execs() as f64 / o.elapsed.as_secs_f64().max(1e-3)) as u64,
                    v => v,
                }),
                o.prog.cov.to_string(),
                o.prog.ft.to_string(),
                o.prog.corp.to_string(),
                o.artifacts
                    .len()
                    .max(o.finding.is_some() as usize)
                    .to_string(),
            ]
        })
        .collect();
    println!();
    say!("fuzz", "summary");
    let header = [
        "target", "result", "time", "execs", "exec/s", "cov", "ft", "corpus",
    ];
    print!("{}", table(&[&header[..], &["findings"]].concat(), &rows));
}

pub fn run(args: Args) -> Res<u8> {
    let targets = select_targets(&args.targets)?;
    setup::setup(setup::Opts { fuzz: true })?;
    if let Some(src) = std::env::var_os("LINUX_SRC") {
        say!(
            "fuzz",
            "C side from LINUX_SRC={}",
            Path::new(&src).display()
        );
    }
    let bin_dir = build(args.sanitizer)?;
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
    say!(
        "fuzz",
        "fuzzing {all} ({time} each), {} at a time, sanitizer {san}",
        args.jobs
    );
    let mut outcomes = run_targets(&targets, &bin_dir, &args)?;
    outcomes.sort_by_key(|o| targets.iter().position(|t| *t == o.name));
    print_summary(&outcomes, &bin_dir);
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
}
