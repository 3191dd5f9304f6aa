// SPDX-License-Identifier: GPL-2.0-only
//! `cargo xtask bench`: throughput numbers.
//!
//! 1. The driver `benches/kpd-bench.rs` (release build, via `cargo bench`) times, on the fixed
//!    scenarios in `bench/inputs/*.txt`, the C side alone (`executor::run_one_side(C)`), the
//!    Rust side alone (`run_one_side(Rust)`) and the full differential run (`executor::run`).
//! 2. Every fuzz target runs for `--time` seconds on one core (`-max_total_time`, one job),
//!    built without a sanitizer and with ASan (`cargo +nightly fuzz build -O -a --sanitizer
//!    none|address`), on a fresh work dir plus the committed corpus (read only); libFuzzer's
//!    final `stat::number_of_executed_units` / `stat::average_exec_per_sec` are the result.
//!
//! Goals (brief, section 4): diff / (C + Rust) <= 1.25, Rust / C <= 1.0,
//! stage2 with ASan >= 20k exec/s (>= 60k without a sanitizer).

use std::fs;
use std::io::{BufRead, BufReader};
use std::path::Path;
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
}

/// Runs one built fuzz target for `time` seconds on a fresh work dir (+ the committed corpus).
fn fuzz_one(bin_dir: &Path, target: &str, san: Sanitizer, time: u64) -> Res<FuzzRun> {
    let bin = bin_dir.join(target);
    if !bin.is_file() {
        return Err(setup_err(format!("{} was not built", rel(&bin))));
    }
    let base = fz::fuzz_dir().join("target").join("bench");
    let san_name = value_name(san);
    let work = base.join("corpus").join(format!("{target}-{san_name}"));
    let arts = base.join("artifacts").join(target);
    let _ = fs::remove_dir_all(&work);
    mkdir(&work)?;
    mkdir(&arts)?;
    let seeds = fz::fuzz_dir().join("corpus").join(target);
    let mut cmd = Command::new(&bin);
    cmd.arg(format!("-max_total_time={time}"))
        .arg("-print_final_stats=1")
        .arg(format!("-artifact_prefix={}/", arts.display()))
        .arg(&work);
    if seeds.is_dir() {
        cmd.arg(&seeds);
    }
    cmd.current_dir(root()).stdin(Stdio::null());
    say!(TAG, "{target} ({san_name}): {time} s ...");
    let t = Instant::now();
    let out = cmd
        .output()
        .ctx(format_args!("cannot run `{}`", cmd_line(&cmd)))?;
    let log = String::from_utf8_lossy(&out.stderr);
    let mut prog = Progress::default();
    log.lines().for_each(|l| prog.feed(l));
    let log_path = base.join(format!("{target}-{san_name}.log"));
    let _ = fs::write(&log_path, &out.stderr);
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
    })
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
        let e = r.prog.avg_exec_s();
        let (want, ok) = match (r.target.as_str(), r.sanitizer) {
            ("stage2", Sanitizer::Address) => ("≥ 20k", Some(e >= 20_000)),
            ("stage2", Sanitizer::None) => ("≥ 60k", Some(e >= 60_000)),
            _ => ("", None),
        };
        if r.prog.error.is_some() {
            findings += 1;
        }
        rows.push(vec![
            format!("fuzz {} ({san})", r.target),
            format!(
                "{} exec/s ({} runs in {:.0} s){}",
                fmt_count(e),
                fmt_count(r.prog.total_execs()),
                r.secs,
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
    say!(TAG, "done in {}", fmt_dur(t0.elapsed()));
    let asan = runs
        .iter()
        .find(|r| r.target == "stage2" && r.sanitizer == Sanitizer::Address)
        .map_or("n/a".to_string(), |r| r.prog.avg_exec_s().to_string());
    println!(
        "bench: c={:.0}ns rust={:.0}ns diff={:.0}ns overhead={overhead:.2} rust/c={ratio:.2} stage2_asan={asan} exec/s",
        d.c, d.rust, d.diff
    );
    Ok(if findings == 0 { EXIT_OK } else { EXIT_FINDING })
}

#[cfg(test)]
mod tests {
    use super::*;

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
