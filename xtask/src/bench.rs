// SPDX-License-Identifier: GPL-2.0-only
//! `cargo xtask bench`: throughput numbers.
//!
//! 1. The driver `benches/kpd-bench.rs` (release build, via `cargo bench`) times, on the fixed
//!    scenarios in `bench/inputs/*.txt`, the C side alone (`executor::run_one_side(C)`), the
//!    Rust side alone (`run_one_side(Rust)`) and the full differential run (`executor::run`).
//! 2. Every fuzz target runs for `--time` seconds on one core (`-max_total_time`, one job),
//!    built without a sanitizer and with ASan (`cargo +nightly fuzz build -O -a --sanitizer
//!    none|address`), on a fresh work dir plus the committed corpus (read only). The run has
//!    two phases, reported apart: the corpus replay (libFuzzer runs every corpus unit once, up
//!    to its `INITED` line) and steady-state fuzzing (from `INITED` to the end), which is what
//!    a long campaign spends its time on; short runs otherwise mostly measure the replay.
//! 3. Before each target's run, the cost of each of its committed corpus inputs under that
//!    build, as a histogram (buckets of microseconds per input): the fuzz binary runs the files
//!    one by one (`-runs=R FILE...`, libFuzzer's `Executed FILE in N ms`), the cheap ones
//!    again R times so a millisecond clock resolves them.
//!
//! 4. `--growth SECONDS [--baseline DIR]`, instead of the above: coverage growth from an empty
//!    corpus, pgtable.c lines reached over time per target and in union, plotted
//!    (`crate::growth`).
//! 5. `--cores`, instead of the above: steady-state exec/s of each target alone and as N
//!    processes at once, summed: the speed-up from 1 to N cores.
//!
//! Goals (brief, section 4): diff / (C + Rust) <= 1.25, Rust / C <= 1.0,
//! stage2 with ASan >= 20k exec/s (>= 60k without a sanitizer).

use std::collections::BTreeMap;
use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use crate::fuzz::{self as fz, Sanitizer};
use crate::libfuzzer::Progress;
use crate::util::{
    Ctx, EXIT_FINDING, EXIT_OK, Res, cmd_line, finding, fmt_count, fmt_dur, mkdir, rel, root,
    setup_err, table, value_name,
};
use crate::{say, setup, warn};

const TAG: &str = "bench";

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Seconds each fuzz target runs per sanitizer.
    #[arg(long, value_name = "SECONDS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..))]
    pub time: u64,
    /// Quick run: fuzz targets 5 s each (unless --time is given), ASan only for stage2,
    /// shorter driver rounds.
    #[arg(long)]
    pub quick: bool,
    /// Only the driver (C / Rust / diff time per input); no fuzz builds or runs.
    #[arg(long)]
    pub no_fuzz: bool,
    /// Fuzz only this target (repeatable). Default: all.
    #[arg(long = "target", value_name = "NAME")]
    pub targets: Vec<String>,
    /// Instead of the above: the coverage-growth run. Every target fuzzes SECONDS from an
    /// empty corpus; the units found by 1, 2, 5, 10, 20, 30, 60 s ... are replayed through the
    /// coverage CLI and the pgtable.c lines they reach counted, per target and in union.
    /// Writes target/bench/growth/growth.svg and growth.csv.
    #[arg(long, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(1..))]
    pub growth: Option<u64>,
    /// With --growth: also fuzz this other checkout of the repository (e.g. an older commit)
    /// at the same time, and draw its curves dashed on the same plot. Build there first:
    /// `cargo +nightly fuzz build -O --no-trace-compares --sanitizer none` and
    /// `cargo xtask coverage --no-html`.
    #[arg(long, value_name = "DIR", requires = "growth")]
    pub baseline: Option<PathBuf>,
    /// Instead of the above: the 1 -> N cores speed-up. Each target fuzzes --time seconds
    /// once alone, then as N processes at once (N: --jobs, default every core); reports
    /// steady-state exec/s summed over the N against the one.
    #[arg(long, conflicts_with = "growth")]
    pub cores: bool,
    /// N for --cores and the number of processes --growth runs at once. Default: every core.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub jobs: Option<u32>,
}

/// Means over the inputs, ns per run.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
struct DriverTotals {
    c: f64,
    rust: f64,
    diff: f64,
}

/// Parses the driver's `total c_ns=A rust_ns=B diff_ns=D` line.
fn parse_total(line: &str) -> Option<DriverTotals> {
    let rest = line.strip_prefix("total ")?;
    let mut t = DriverTotals::default();
    for kv in rest.split_whitespace() {
        let (k, v) = kv.split_once('=')?;
        let v: f64 = v.parse().ok()?;
        match k {
            "c_ns" => t.c = v,
            "rust_ns" => t.rust = v,
            "diff_ns" => t.diff = v,
            _ => {}
        }
    }
    (t.c > 0.0 && t.rust > 0.0 && t.diff > 0.0).then_some(t)
}

/// Runs the benchmark driver; streams its table and returns the totals.
fn driver(quick: bool) -> Res<DriverTotals> {
    let mut cmd = Command::new("cargo");
    cmd.args([
        "bench",
        "-q",
        "-p",
        "kvm-pgtable-diff",
        "--bench",
        "kpd-bench",
        "--",
    ]);
    if quick {
        cmd.args(["--rounds", "3", "--round-ms", "30"]);
    }
    cmd.arg(root().join("bench").join("inputs"))
        .current_dir(root())
        .stdout(Stdio::piped());
    let shown = cmd_line(&cmd);
    say!(
        TAG,
        "timing C alone, Rust alone and the diff on bench/inputs/: {shown} ..."
    );
    let mut child = cmd.spawn().ctx("cannot run cargo")?;
    let mut total = None;
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let Ok(line) = line else { break };
        if let Some(t) = parse_total(&line) {
            total = Some(t);
        } else if !line.starts_with("result ") {
            println!("  {line}");
        }
    }
    let st = child.wait().ctx("cargo bench")?;
    match (st.code(), total) {
        (Some(0), Some(t)) => Ok(t),
        (Some(1), _) => Err(finding(
            "a benchmark input diverges (see above); it is a finding, not a benchmark",
        )),
        _ => Err(setup_err(format!(
            "the benchmark driver failed ({st}); run `{shown}` to see why"
        ))),
    }
}

struct FuzzRun {
    target: String,
    sanitizer: Sanitizer,
    prog: Progress,
    secs: f64,
    /// Seconds from the start to libFuzzer's `INITED` line and the executions until then
    /// (the corpus replay); None when it never came (a finding in the corpus).
    replay: Option<(f64, u64)>,
    /// Microseconds per committed corpus input (the histogram).
    costs: Vec<f64>,
}

impl FuzzRun {
    /// The steady-state phase: executions and seconds after the replay.
    fn steady(&self) -> Option<(u64, f64)> {
        let (t, n) = self.replay?;
        let secs = self.secs - t;
        (secs > 0.0).then(|| (self.prog.total_execs().saturating_sub(n), secs))
    }

    /// Steady-state exec/s (the whole run's average when there was no steady phase).
    fn steady_exec_s(&self) -> u64 {
        self.steady()
            .map_or(self.prog.avg_exec_s(), |(n, s)| (n as f64 / s) as u64)
    }
}

/// `#N\tINITED cov: ...`: the executions of the corpus replay.
fn inited_execs(line: &str) -> Option<u64> {
    let rest = line.trim().strip_prefix('#')?;
    let (n, rest) = rest.split_once(char::is_whitespace)?;
    rest.trim_start()
        .starts_with("INITED")
        .then(|| n.parse().ok())
        .flatten()
}

/// `Executed PATH in N ms` (libFuzzer, running files one by one): PATH and N.
fn executed_ms(line: &str) -> Option<(&str, u64)> {
    let rest = line.trim().strip_prefix("Executed ")?;
    let (path, ms) = rest.rsplit_once(" in ")?;
    Some((path, ms.strip_suffix(" ms")?.parse().ok()?))
}

/// Upper bounds (microseconds, exclusive) of the cost buckets; the last bucket is open.
const BUCKETS_US: [f64; 7] = [100.0, 300.0, 1e3, 3e3, 1e4, 3e4, 1e5];
const BUCKET_NAMES: [&str; 8] = [
    "<100us", "<300us", "<1ms", "<3ms", "<10ms", "<30ms", "<100ms", ">=100ms",
];

/// How many of `costs` (microseconds) fall in each bucket of [`BUCKETS_US`].
fn histogram(costs: &[f64]) -> [usize; 8] {
    let mut h = [0; 8];
    for &c in costs {
        h[BUCKETS_US.iter().position(|&b| c < b).unwrap_or(7)] += 1;
    }
    h
}

/// Runs `bin` on every file of `corpus` (`-runs=R FILE...`); returns each file's ms for R
/// runs. A finding in a file ends libFuzzer early: the files after it are missing.
fn executed(bin: &Path, files: &[PathBuf], runs: u64) -> Res<BTreeMap<String, u64>> {
    let mut cmd = Command::new(bin);
    cmd.arg(format!("-runs={runs}"))
        .args(files)
        .current_dir(root())
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    let out = cmd
        .output()
        .ctx(format_args!("cannot run `{}`", cmd_line(&cmd)))?;
    Ok(String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter_map(executed_ms)
        .map(|(p, ms)| (p.to_string(), ms))
        .collect())
}

/// Microseconds per input of each file of `corpus` under `bin`. One run each first; the
/// inputs under 10 ms then run R more times each (R for about 3 s in all, 5..=100), so
/// libFuzzer's millisecond clock resolves them to 10-200 us.
fn input_costs(bin: &Path, corpus: &Path) -> Res<Vec<f64>> {
    let mut files: Vec<PathBuf> = match fs::read_dir(corpus) {
        Ok(d) => d.filter_map(|e| e.ok().map(|e| e.path())).collect(),
        Err(_) => return Ok(vec![]),
    };
    files.sort();
    if files.is_empty() {
        return Ok(vec![]);
    }
    let once = executed(bin, &files, 1)?;
    let key = |f: &PathBuf| f.display().to_string();
    let cheap: Vec<PathBuf> = files
        .iter()
        .filter(|f| once.get(&key(f)).is_some_and(|&ms| ms < 10))
        .cloned()
        .collect();
    let est: f64 = cheap.iter().map(|f| (once[&key(f)] as f64).max(0.5)).sum();
    let runs = ((3000.0 / est.max(1.0)) as u64).clamp(5, 100);
    let again = if cheap.is_empty() {
        BTreeMap::new()
    } else {
        executed(bin, &cheap, runs)?
    };
    Ok(files
        .iter()
        .filter_map(|f| match again.get(&key(f)) {
            Some(&ms) => Some(ms as f64 * 1e3 / runs as f64),
            None => once.get(&key(f)).map(|&ms| ms as f64 * 1e3),
        })
        .collect())
}

/// Runs one built fuzz target for `time` seconds on a fresh work dir (+ the committed corpus),
/// after timing each committed input alone (the histogram).
fn fuzz_one(bin_dir: &Path, target: &str, san: Sanitizer, time: u64) -> Res<FuzzRun> {
    let bin = bin_dir.join(target);
    if !bin.is_file() {
        return Err(setup_err(format!("{} was not built", rel(&bin))));
    }
    let seeds = fz::fuzz_dir().join("corpus").join(target);
    let costs = input_costs(&bin, &seeds)?;
    say!(TAG, "{target} ({}): {time} s ...", value_name(san));
    let mut run = fuzz_run(&bin, target, san, time, &value_name(san), None)?;
    run.costs = costs;
    Ok(run)
}

/// One libFuzzer process of `bin` for `time` seconds on the fresh work dir `<target>-<name>`
/// plus the committed corpus; `seed` fixes libFuzzer's `-seed`.
fn fuzz_run(
    bin: &Path,
    target: &str,
    san: Sanitizer,
    time: u64,
    name: &str,
    seed: Option<u32>,
) -> Res<FuzzRun> {
    let base = fz::fuzz_dir().join("target").join("bench");
    let san_name = name;
    let work = base.join("corpus").join(format!("{target}-{san_name}"));
    let arts = base.join("artifacts").join(target);
    let _ = fs::remove_dir_all(&work);
    mkdir(&work)?;
    mkdir(&arts)?;
    let seeds = fz::fuzz_dir().join("corpus").join(target);
    let mut cmd = Command::new(bin);
    if let Some(k) = seed {
        cmd.arg(format!("-seed={k}"));
    }
    cmd.arg(format!("-max_total_time={time}"))
        .arg("-print_final_stats=1")
        // Measured as fuzzing runs: OSS-Fuzz's and `cargo xtask fuzz`'s flags.
        .args(fz::production_flags()?)
        .arg(format!("-artifact_prefix={}/", arts.display()))
        .arg(&work);
    if seeds.is_dir() {
        cmd.arg(&seeds);
    }
    cmd.current_dir(root()).stdin(Stdio::null());
    let t = Instant::now();
    let mut child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .ctx(format_args!("cannot run `{}`", cmd_line(&cmd)))?;
    let mut prog = Progress::default();
    let mut replay = None;
    let mut log = String::new();
    for line in BufReader::new(child.stderr.take().unwrap()).lines() {
        let Ok(line) = line else { break };
        if replay.is_none() {
            replay = inited_execs(&line).map(|n| (t.elapsed().as_secs_f64(), n));
        }
        prog.feed(&line);
        log.push_str(&line);
        log.push('\n');
    }
    let _ = child.wait();
    let log_path = base.join(format!("{target}-{san_name}.log"));
    let _ = fs::write(&log_path, &log);
    if let Some(e) = &prog.error {
        let (log, fix) = (
            rel(&log_path),
            format!("cargo xtask fuzz --target {target}"),
        );
        warn!(
            TAG,
            "{target} ({san_name}) stopped on a finding: {e} (log: {log}); run `{fix}` to investigate"
        );
    }
    Ok(FuzzRun {
        target: target.into(),
        sanitizer: san,
        prog,
        secs: t.elapsed().as_secs_f64(),
        replay,
        costs: vec![],
    })
}

/// `--cores`: per target, steady-state exec/s of one process alone, then of `jobs` processes
/// at once (own work dirs, seeds 1..=N), summed; the ratio is the speed-up from 1 to N cores.
fn cores(targets: &[String], time: u64, jobs: u32) -> Res<u8> {
    let bin_dir = fz::build(Sanitizer::None)?;
    let mut rows = vec![];
    let mut findings = 0;
    for t in targets {
        let bin = bin_dir.join(t);
        let mut rates = vec![];
        for n in [1, jobs] {
            say!(TAG, "{t}: {n} process(es) at once, {time} s ...");
            let runs: Vec<Res<FuzzRun>> = std::thread::scope(|s| {
                let hs: Vec<_> = (0..n)
                    .map(|k| {
                        let bin = &bin;
                        s.spawn(move || {
                            let name = format!("cores{n}-{k}");
                            fuzz_run(bin, t, Sanitizer::None, time, &name, Some(k + 1))
                        })
                    })
                    .collect();
                hs.into_iter()
                    .map(|h| h.join().expect("a bench thread panicked"))
                    .collect()
            });
            let mut sum = 0;
            let mut first = 0;
            for (k, r) in runs.into_iter().enumerate() {
                let r = r?;
                findings += r.prog.error.is_some() as usize;
                let e = r.steady_exec_s();
                sum += e;
                if k == 0 {
                    first = e;
                }
            }
            rates.push((sum, first));
        }
        let speedup = rates[1].0 as f64 / rates[0].0.max(1) as f64;
        let efficiency = rates[1].1 as f64 / rates[0].1.max(1) as f64;
        rows.push(vec![
            t.clone(),
            fmt_count(rates[0].0),
            fmt_count(rates[1].0),
            format!("{speedup:.2}x"),
            fmt_count(rates[1].1),
            format!("{efficiency:.2}"),
        ]);
    }
    println!();
    let many = format!("{jobs} cores, exec/s summed");
    let seed1 = format!("seed 1 among {jobs}, exec/s");
    print!(
        "{}",
        table(
            &[
                "target",
                "1 core (seed 1), exec/s",
                &many,
                "speed-up",
                &seed1,
                "seed 1 among N / alone",
            ],
            &rows
        )
    );
    say!(
        TAG,
        "steady state (after each process's corpus replay), no sanitizer, {time} s per run; \
         seeds differ in what they mutate, so the sum can exceed N x the single run: the last \
         column (the same seed alone and among N) is the per-core cost of running N at once"
    );
    Ok(if findings == 0 { EXIT_OK } else { EXIT_FINDING })
}

pub fn run(args: Args) -> Res<u8> {
    let t0 = Instant::now();
    setup::apt_packages()?;
    setup::kernel_source()?;
    let targets = fz::select_targets(&args.targets)?;
    let time = if args.quick && args.time == 30 {
        5
    } else {
        args.time
    };

    let jobs = args.jobs.unwrap_or_else(fz::default_jobs);
    if let Some(secs) = args.growth {
        setup::fuzz_tools()?;
        crate::growth::run(secs, &targets, args.baseline.as_deref(), jobs as usize)?;
        say!(TAG, "done in {}", fmt_dur(t0.elapsed()));
        return Ok(EXIT_OK);
    }
    if args.cores {
        setup::fuzz_tools()?;
        return cores(&targets, time, jobs);
    }

    let d = driver(args.quick)?;

    let mut runs: Vec<FuzzRun> = vec![];
    if !args.no_fuzz {
        setup::fuzz_tools()?;
        // No sanitizer first, then ASan: the ASan build stays in fuzz/target, which is what
        // `cargo xtask fuzz` uses by default.
        for san in [Sanitizer::None, Sanitizer::Address] {
            let which: Vec<&String> = if san == Sanitizer::Address && args.quick {
                targets.iter().filter(|t| *t == "stage2").collect()
            } else {
                targets.iter().collect()
            };
            if which.is_empty() {
                continue;
            }
            let bin_dir = fz::build(san)?;
            for t in which {
                runs.push(fuzz_one(&bin_dir, t, san, time)?);
            }
        }
    }

    // Summary.
    let overhead = d.diff / (d.c + d.rust);
    let ratio = d.rust / d.c;
    let goal = |ok: bool| if ok { "ok" } else { "MISSED" };
    let row = |cells: [&str; 4]| cells.map(String::from).to_vec();
    let (c, rust, diff) = (
        format!("{:.0} ns", d.c),
        format!("{:.0} ns", d.rust),
        format!("{:.0} ns", d.diff),
    );
    let (o, r) = (format!("{overhead:.2}"), format!("{ratio:.2}"));
    let mut rows = vec![
        row(["C alone, per input", &c, "", ""]),
        row(["Rust alone, per input", &rust, "", ""]),
        row(["diff, per input", &diff, "", ""]),
        row(["diff / (C + Rust)", &o, "<= 1.25", goal(overhead <= 1.25)]),
        row(["Rust / C", &r, "<= 1.0", goal(ratio <= 1.0)]),
    ];
    let mut findings = 0;
    for r in &runs {
        let san = match r.sanitizer {
            Sanitizer::Address => "ASan",
            Sanitizer::None => "no sanitizer",
        };
        let e = r.steady_exec_s();
        let (want, ok) = match (r.target.as_str(), r.sanitizer) {
            ("stage2", Sanitizer::Address) => ("≥ 20k", Some(e >= 20_000)),
            ("stage2", Sanitizer::None) => ("≥ 60k", Some(e >= 60_000)),
            _ => ("", None),
        };
        if r.prog.error.is_some() {
            findings += 1;
        }
        rows.push(vec![
            format!("fuzz {} ({san}), steady state", r.target),
            format!(
                "{} exec/s{}",
                fmt_count(e),
                if r.prog.error.is_some() {
                    ", stopped on a finding"
                } else {
                    ""
                }
            ),
            want.into(),
            ok.map_or("", goal).into(),
        ]);
    }
    println!();
    print!("{}", table(&["measure", "value", "goal", ""], &rows));
    if !runs.is_empty() {
        println!();
        say!(
            TAG,
            "fuzzing in two phases: the corpus replay (to libFuzzer's INITED), then steady state"
        );
        print!("{}", phase_table(&runs));
        println!();
        say!(
            TAG,
            "cost of each committed corpus input (fuzz/corpus/<target>/), inputs per bucket"
        );
        print!("{}", cost_table(&runs));
    }
    say!(TAG, "done in {}", fmt_dur(t0.elapsed()));
    let asan = runs
        .iter()
        .find(|r| r.target == "stage2" && r.sanitizer == Sanitizer::Address)
        .map_or("n/a".to_string(), |r| r.steady_exec_s().to_string());
    println!(
        "bench: c={:.0}ns rust={:.0}ns diff={:.0}ns overhead={overhead:.2} rust/c={ratio:.2} stage2_asan={asan} exec/s",
        d.c, d.rust, d.diff
    );
    Ok(if findings == 0 { EXIT_OK } else { EXIT_FINDING })
}

fn san_name(s: Sanitizer) -> &'static str {
    match s {
        Sanitizer::Address => "ASan",
        Sanitizer::None => "none",
    }
}

/// Per run: the replay (units, time, exec/s), steady state (executions, time, exec/s) and
/// the whole run's average.
fn phase_table(runs: &[FuzzRun]) -> String {
    let rate = |n: u64, s: f64| fmt_count((n as f64 / s.max(1e-3)) as u64);
    let rows: Vec<Vec<String>> = runs
        .iter()
        .map(|r| {
            let (replay, steady) = match (r.replay, r.steady()) {
                (Some((t, n)), Some((sn, ss))) => (
                    [fmt_count(n), format!("{t:.1}s"), rate(n, t)],
                    [fmt_count(sn), format!("{ss:.1}s"), rate(sn, ss)],
                ),
                (Some((t, n)), None) => (
                    [fmt_count(n), format!("{t:.1}s"), rate(n, t)],
                    ["-".into(), "-".into(), "-".into()],
                ),
                (None, _) => (
                    ["-".into(), "-".into(), "-".into()],
                    ["-".into(), "-".into(), "-".into()],
                ),
            };
            let mut row = vec![r.target.clone(), san_name(r.sanitizer).into()];
            row.extend(replay);
            row.extend(steady);
            row.push(fmt_count(r.prog.avg_exec_s()));
            row
        })
        .collect();
    table(
        &[
            "target",
            "sanitizer",
            "replay units",
            "replay time",
            "replay exec/s",
            "steady execs",
            "steady time",
            "steady exec/s",
            "whole run exec/s",
        ],
        &rows,
    )
}

/// Per run: how many corpus inputs cost how much, with the median and the costliest.
fn cost_table(runs: &[FuzzRun]) -> String {
    let fmt_us = |us: f64| {
        if us >= 1e3 {
            format!("{:.1}ms", us / 1e3)
        } else {
            format!("{us:.0}us")
        }
    };
    let rows: Vec<Vec<String>> = runs
        .iter()
        .map(|r| {
            let mut sorted = r.costs.clone();
            sorted.sort_by(f64::total_cmp);
            let mut row = vec![
                r.target.clone(),
                san_name(r.sanitizer).into(),
                sorted.len().to_string(),
            ];
            row.extend(histogram(&sorted).iter().map(|n| match n {
                0 => ".".to_string(),
                n => n.to_string(),
            }));
            let pick =
                |f: fn(&[f64]) -> Option<&f64>| f(&sorted).map_or("-".into(), |&v| fmt_us(v));
            row.push(pick(|s| s.get(s.len() / 2)));
            row.push(pick(|s| s.last()));
            row
        })
        .collect();
    let mut header = vec!["target", "sanitizer", "inputs"];
    header.extend(BUCKET_NAMES);
    header.extend(["median", "max"]);
    table(&header, &rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libfuzzer_lines() {
        assert_eq!(
            inited_execs("#66\tINITED cov: 4137 ft: 8817 corp: 65/18Kb exec/s: 0 rss: 45Mb"),
            Some(66)
        );
        assert_eq!(inited_execs("#128\tpulse  cov: 4137 ft: 8817"), None);
        assert_eq!(inited_execs("INFO: seed corpus: files: 65"), None);
        assert_eq!(
            executed_ms("Executed /w/fuzz/corpus/hyp/0a in 12 ms"),
            Some(("/w/fuzz/corpus/hyp/0a", 12))
        );
        assert_eq!(executed_ms("Running: /w/fuzz/corpus/hyp/0a"), None);
    }

    #[test]
    fn cost_buckets() {
        // Bounds are exclusive: 100 us is in the second bucket, 100 ms in the open last one.
        let h = histogram(&[0.0, 99.9, 100.0, 999.0, 1e3, 29_999.0, 1e5, 5e6]);
        assert_eq!(h, [2, 1, 1, 1, 0, 1, 0, 2]);
        assert_eq!(BUCKET_NAMES.len(), BUCKETS_US.len() + 1);
    }

    #[test]
    fn steady_state_is_what_follows_the_replay() {
        let mut r = FuzzRun {
            target: "stage2".into(),
            sanitizer: Sanitizer::None,
            prog: Progress::default(),
            secs: 10.0,
            replay: Some((2.0, 100)),
            costs: vec![],
        };
        r.prog.final_execs = Some(900);
        // 800 executions in the 8 s after INITED.
        assert_eq!(r.steady(), Some((800, 8.0)));
        assert_eq!(r.steady_exec_s(), 100);
        r.replay = None;
        r.prog.final_exec_s = Some(90);
        assert_eq!((r.steady(), r.steady_exec_s()), (None, 90));
    }

    #[test]
    fn driver_total_line() {
        assert_eq!(
            parse_total("total c_ns=61735 rust_ns=63267 diff_ns=295340"),
            Some(DriverTotals {
                c: 61735.0,
                rust: 63267.0,
                diff: 295340.0
            })
        );
        assert_eq!(parse_total("total c_ns=0 rust_ns=1 diff_ns=2"), None);
        assert_eq!(parse_total("result x ops=3"), None);
    }
}
