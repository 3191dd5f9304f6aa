// SPDX-License-Identifier: GPL-2.0-only
//! `cargo xtask bench --growth SECONDS`: how fast fuzzing from nothing reaches pgtable.c.
//!
//! Every fuzz target runs from an empty corpus for SECONDS (no sanitizer, the flags of
//! `cargo xtask fuzz`, `-seed=1`). libFuzzer writes each unit that adds coverage into the
//! corpus directory when it finds it, so a unit's modification time is the moment it was
//! found; `-reduce_inputs=0` keeps libFuzzer from replacing a unit by a smaller one later,
//! which would move its time. Then the units found by each of a few time points (1, 2, 5, 10,
//! 20, 30, 60 s ...) are replayed through the coverage-instrumented CLI (the build of
//! `cargo xtask coverage`), bucket by bucket with the profile merged cumulatively, and
//! `llvm-cov` counts the lines of pgtable.c they reach: per target and in union over the
//! targets, per kernel line.
//!
//! With `--baseline DIR` (another checkout of this repository, e.g. an older commit, with its
//! fuzz targets and its coverage CLI built) the baseline's targets fuzz at the same time as
//! this tree's, one of each per target side by side so both see the same machine load, and
//! both curves go on one plot. The plot counts Linux 6.12's pgtable.c, the line every version
//! of this tool knows; the table also has every other kernel line a build carries.
//!
//! Output: `target/bench/growth/growth.svg` (log time axis), `growth.csv`, and a table.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use crate::coverage;
use crate::fuzz::{self as fz, Sanitizer};
use crate::util::{
    Ctx, Res, capture, fmt_dur, host_triple, mkdir, rel, reset_dir, root, run_ok, setup_err, table,
};
use crate::{say, warn};

const TAG: &str = "growth";

/// Time points (seconds) at which coverage is counted; the run's length is always the last.
const POINTS: [u64; 16] = [
    1, 2, 5, 10, 20, 30, 60, 90, 120, 180, 300, 600, 900, 1800, 3600, 7200,
];

/// Where pgtable.c sits in a kernel tree.
const PGTABLE_C: &str = "arch/arm64/kvm/hyp/pgtable.c";

/// The kernel line the plot counts: the one every version of the tool builds.
const PLOT_LINE: &str = "6.12";

/// One build of the tool whose fuzzing is measured.
struct Contender {
    label: String,
    /// Directory of the fuzz target binaries (no sanitizer).
    fuzz_bins: PathBuf,
    /// The coverage-instrumented `kvm-pgtable-diff` CLI of the same tree.
    cov_cli: PathBuf,
}

/// What one target of one contender found: each unit with the seconds after the start at
/// which it was written.
struct Found {
    contender: usize,
    target: String,
    units: Vec<(f64, PathBuf)>,
    /// libFuzzer stopped before the time was up (a finding, or a crash of the harness).
    stopped: Option<String>,
}

/// The time points of a run of `secs` seconds.
fn points(secs: u64) -> Vec<u64> {
    let mut p: Vec<u64> = POINTS.iter().copied().filter(|&p| p < secs).collect();
    p.push(secs);
    p
}

/// Index of the first point at or after `t` (units written just after the end go last).
fn bucket(points: &[u64], t: f64) -> usize {
    points
        .iter()
        .position(|&p| t <= p as f64)
        .unwrap_or(points.len() - 1)
}

/// The instrumented CLI and fuzz binaries of the baseline checkout `dir`, or what to run there.
fn baseline(dir: &Path) -> Res<Contender> {
    let dir = dir
        .canonicalize()
        .map_err(|e| setup_err(format!("--baseline {}: {e}", dir.display())))?;
    let triple = host_triple(false)?;
    let fuzz_bins = dir.join("fuzz/target").join(&triple).join("release");
    let cov_cli = dir
        .join("target/coverage")
        .join(&triple)
        .join("release/kvm-pgtable-diff");
    let d = dir.display();
    for t in fz::TARGETS {
        if !fuzz_bins.join(t).is_file() {
            return Err(setup_err(format!(
                "--baseline {d}: fuzz target {t} is not built there; run in {d}: \
                 cargo +nightly fuzz build -O --no-trace-compares --sanitizer none"
            )));
        }
    }
    if !cov_cli.is_file() {
        return Err(setup_err(format!(
            "--baseline {d}: no coverage CLI ({}); run in {d}: cargo xtask coverage --no-html",
            cov_cli.display()
        )));
    }
    Ok(Contender {
        label: format!("baseline {}", commit_of(&dir)),
        fuzz_bins,
        cov_cli,
    })
}

/// The checkout's commit (`git rev-parse --short HEAD`), or its directory's name.
fn commit_of(dir: &Path) -> String {
    let (ok, out, _) =
        capture(
            Command::new("git")
                .arg("-C")
                .arg(dir)
                .args(["rev-parse", "--short", "HEAD"]),
        );
    // A tree with uncommitted changes is not its HEAD: say so on the plot.
    let (_, status, _) = capture(Command::new("git").arg("-C").arg(dir).args([
        "status",
        "--porcelain",
        "--untracked-files=no",
    ]));
    let dirty = if status.trim().is_empty() {
        ""
    } else {
        "+dirty"
    };
    match out.trim() {
        c if ok && !c.is_empty() => format!("{c}{dirty}"),
        _ => dir
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned(),
    }
}

/// Starts one target of one contender, from an empty corpus in `work`.
fn start(c: &Contender, target: &str, secs: u64, work: &Path) -> Res<(Child, SystemTime)> {
    reset_dir(work)?;
    let corpus = work.join("corpus");
    let arts = work.join("artifacts");
    mkdir(&corpus)?;
    mkdir(&arts)?;
    let log = fs::File::create(work.join("log")).ctx("cannot create the growth log")?;
    let mut cmd = Command::new(c.fuzz_bins.join(target));
    cmd.arg(format!("-max_total_time={secs}"))
        .args(["-seed=1", "-reduce_inputs=0", "-print_final_stats=1"])
        // As `cargo xtask fuzz` runs the targets.
        .args(crate::fuzz::production_flags()?)
        .arg(format!("-artifact_prefix={}/", arts.display()))
        .arg(&corpus)
        .env_remove("KPD_LINE")
        .current_dir(root())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log);
    let t0 = SystemTime::now();
    let child = cmd.spawn().ctx(format_args!(
        "cannot run {}",
        c.fuzz_bins.join(target).display()
    ))?;
    Ok((child, t0))
}

/// The units of `corpus` with the seconds after `t0` at which each was written.
fn units(corpus: &Path, t0: SystemTime) -> Vec<(f64, PathBuf)> {
    let mut v: Vec<(f64, PathBuf)> = fs::read_dir(corpus)
        .into_iter()
        .flatten()
        .filter_map(|e| {
            let e = e.ok()?;
            let m = e.metadata().ok()?.modified().ok()?;
            let t = m.duration_since(t0).unwrap_or(Duration::ZERO);
            Some((t.as_secs_f64(), e.path()))
        })
        .collect();
    v.sort_by(|a, b| a.0.total_cmp(&b.0));
    v
}

/// Fuzzes every (contender, target) pair, `jobs` processes at a time, the contenders of a
/// target next to each other.
fn fuzz_all(cs: &[Contender], targets: &[String], secs: u64, jobs: usize) -> Res<Vec<Found>> {
    let base = growth_dir();
    let mut queue: Vec<(usize, String)> = vec![];
    for t in targets {
        for i in 0..cs.len() {
            queue.push((i, t.clone()));
        }
    }
    let total = queue.len();
    queue.reverse();
    let mut running: Vec<(usize, String, Child, SystemTime, PathBuf)> = vec![];
    let mut found = vec![];
    let t = Instant::now();
    while !queue.is_empty() || !running.is_empty() {
        while running.len() < jobs {
            let Some((i, target)) = queue.pop() else {
                break;
            };
            let work = base.join(format!("c{i}")).join(&target);
            say!(
                TAG,
                "{target} ({}): {secs} s from an empty corpus ...",
                cs[i].label
            );
            let (child, t0) = start(&cs[i], &target, secs, &work)?;
            running.push((i, target, child, t0, work));
        }
        std::thread::sleep(Duration::from_millis(200));
        let mut k = 0;
        while k < running.len() {
            let done = running[k].2.try_wait().ctx("waiting for a fuzz target")?;
            let Some(st) = done else {
                k += 1;
                continue;
            };
            let (i, target, _, t0, work) = running.swap_remove(k);
            let us = units(&work.join("corpus"), t0);
            let stopped = (!st.success()).then(|| {
                let log = rel(&work.join("log"));
                format!("libFuzzer exited with {st} (log: {log})")
            });
            if let Some(s) = &stopped {
                warn!(TAG, "{target} ({}): {s}", cs[i].label);
            }
            found.push(Found {
                contender: i,
                target,
                units: us,
                stopped,
            });
            say!(
                TAG,
                "{}/{total} fuzz runs done ({})",
                found.len(),
                fmt_dur(t.elapsed())
            );
        }
    }
    Ok(found)
}

fn growth_dir() -> PathBuf {
    fz::fuzz_dir()
        .parent()
        .unwrap()
        .join("target")
        .join("bench")
        .join("growth")
}

/// The pgtable.c of each kernel line that `cli` was built with, as llvm-cov names it: build.rs
/// copies a line's files to `OUT_DIR/ksrc/<line, '.' as '_'>/`; a build from before the
/// second kernel line has one copy, `OUT_DIR/ksrc/arch/...`, which is 6.12.
fn pgtable_cs(llvm_cov: &str, cli: &Path, profdata: &Path) -> Res<Vec<(String, String)>> {
    let mut found: BTreeMap<String, String> = BTreeMap::new();
    for f in coverage::mapped_files(llvm_cov, cli, profdata)? {
        let Some(pre) = f.strip_suffix(PGTABLE_C) else {
            continue;
        };
        let line = match pre.strip_suffix('/').and_then(|p| p.rsplit_once("/ksrc")) {
            Some((_, "")) => PLOT_LINE.to_string(),
            Some((_, ident)) => ident.trim_start_matches('/').replace('_', "."),
            None => continue,
        };
        found.insert(line, f);
    }
    if found.is_empty() {
        return Err(setup_err(format!(
            "{} has no coverage mapping of pgtable.c; was it built by `cargo xtask coverage`?",
            cli.display()
        )));
    }
    Ok(found.into_iter().collect())
}

/// Replays `files` through `cli` (`run --target T`), writing raw profiles matching `profile`.
/// Exit 1 (a finding) still counts its coverage; inputs the CLI refuses (exit 2) are skipped
/// file by file.
fn replay(cli: &Path, target: &str, files: &[PathBuf], profile: &Path) -> Res<usize> {
    let run = |fs: &[PathBuf]| -> Res<i32> {
        let st = Command::new(cli)
            .args(["run", "--target", target])
            .args(fs)
            .env("LLVM_PROFILE_FILE", profile)
            .current_dir(root())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .ctx(format_args!("cannot run {}", cli.display()))?;
        Ok(st.code().unwrap_or(-1))
    };
    let mut refused = 0;
    for chunk in files.chunks(256) {
        if run(chunk)? == 2 {
            for f in chunk {
                if run(std::slice::from_ref(f))? == 2 {
                    refused += 1;
                }
            }
        }
    }
    Ok(refused)
}

/// Lines of `src` run under `profdata` (the union over the line's builds).
fn lines_run(llvm_cov: &str, cli: &Path, profdata: &Path, src: &str) -> Res<(u64, u64)> {
    let (ok, out, err) = capture(
        Command::new(llvm_cov)
            .args(["export", "-format=lcov"])
            .arg(cli)
            .arg(format!("-instr-profile={}", profdata.display()))
            .arg(src),
    );
    if !ok {
        let first = err.lines().next().unwrap_or("");
        return Err(setup_err(format!("llvm-cov export failed: {first}")));
    }
    Ok(coverage::lcov_line_totals(&out))
}

/// One contender's curves: per target (and "union"), per kernel line, lines run at each point.
type Curves = BTreeMap<(String, String), Vec<u64>>;

/// One target's units replayed bucket by bucket: the cumulative profdata at each point (None
/// until a unit was found).
fn replay_target(
    c: &Contender,
    f: &Found,
    pts: &[u64],
    dir: &Path,
    profdata_tool: &str,
) -> Res<Vec<Option<PathBuf>>> {
    say!(
        TAG,
        "{} ({}): replaying {} units through the coverage CLI ...",
        f.target,
        c.label,
        f.units.len()
    );
    let mut prev: Option<PathBuf> = None;
    let mut cum = vec![];
    for (i, _) in pts.iter().enumerate() {
        let new: Vec<PathBuf> = f
            .units
            .iter()
            .filter(|(t, _)| bucket(pts, *t) == i)
            .map(|(_, p)| p.clone())
            .collect();
        if new.is_empty() {
            cum.push(prev.clone());
            continue;
        }
        let raw = dir.join(format!("{}-{i}", f.target));
        reset_dir(&raw)?;
        let refused = replay(&c.cov_cli, &f.target, &new, &raw.join("kpd-%4m.profraw"))?;
        if refused > 0 {
            warn!(TAG, "{}: {refused} units refused by the CLI", f.target);
        }
        let out = dir.join(format!("{}-{i}.profdata", f.target));
        let mut cmd = Command::new(profdata_tool);
        cmd.args(["merge", "-sparse", "-o"]).arg(&out);
        if let Some(p) = &prev {
            cmd.arg(p);
        }
        cmd.args(crate::util::files(&raw, false, Some("profraw")));
        run_ok(&mut cmd)?;
        prev = Some(out.clone());
        cum.push(Some(out));
    }
    Ok(cum)
}

/// Replays each target's units (`jobs` targets at a time) and counts pgtable.c lines at every
/// point.
fn measure(
    c: &Contender,
    idx: usize,
    found: &[Found],
    pts: &[u64],
    tools: (&str, &str),
    jobs: usize,
) -> Res<(Curves, BTreeMap<String, u64>)> {
    let (profdata_tool, llvm_cov) = tools;
    let dir = growth_dir().join(format!("c{idx}")).join("prof");
    reset_dir(&dir)?;
    let mine: Vec<&Found> = found.iter().filter(|f| f.contender == idx).collect();
    let mut per_target: BTreeMap<String, Vec<Option<PathBuf>>> = BTreeMap::new();
    for group in mine.chunks(jobs.max(1)) {
        let done: Vec<Res<Vec<Option<PathBuf>>>> = std::thread::scope(|s| {
            let hs: Vec<_> = group
                .iter()
                .map(|f| s.spawn(|| replay_target(c, f, pts, &dir, profdata_tool)))
                .collect();
            hs.into_iter()
                .map(|h| h.join().expect("a replay thread panicked"))
                .collect()
        });
        for (f, cum) in group.iter().zip(done) {
            per_target.insert(f.target.clone(), cum?);
        }
    }
    // The union at each point.
    let mut union = vec![];
    for i in 0..pts.len() {
        let parts: Vec<&PathBuf> = per_target.values().filter_map(|v| v[i].as_ref()).collect();
        if parts.is_empty() {
            union.push(None);
            continue;
        }
        let out = dir.join(format!("union-{i}.profdata"));
        run_ok(
            Command::new(profdata_tool)
                .args(["merge", "-sparse", "-o"])
                .arg(&out)
                .args(parts),
        )?;
        union.push(Some(out));
    }
    let Some(last) = union.iter().rev().flatten().next() else {
        return Err(setup_err(format!(
            "{}: no target found a single unit; see the logs in {}",
            c.label,
            rel(&growth_dir())
        )));
    };
    let srcs = pgtable_cs(llvm_cov, &c.cov_cli, last)?;
    let mut curves = Curves::new();
    let mut instrumented = BTreeMap::new();
    per_target.insert("union".into(), union);
    for (target, cum) in &per_target {
        for (line, src) in &srcs {
            let mut ys = vec![];
            for p in cum {
                ys.push(match p {
                    Some(p) => {
                        let (n, run) = lines_run(llvm_cov, &c.cov_cli, p, src)?;
                        instrumented.insert(line.clone(), n);
                        run
                    }
                    None => 0,
                });
            }
            curves.insert((target.clone(), line.clone()), ys);
        }
    }
    Ok((curves, instrumented))
}

/// Draws every target's curve (and the union, thick) of kernel line `line` for each
/// contender: this tree solid, the baseline dashed; time on a log axis.
fn svg(labels: &[String], curves: &[Curves], pts: &[u64], line: &str, max_y: u64) -> String {
    let (w, h, l, r, t, b) = (760.0, 440.0, 60.0, 190.0, 40.0, 50.0);
    let (pw, ph) = (w - l - r, h - t - b);
    let x_max = (*pts.last().unwrap() as f64).max(2.0);
    let x = |s: f64| l + pw * (s.max(1.0).ln() / x_max.ln());
    let y_max = (max_y.max(1) as f64 / 100.0).ceil() * 100.0;
    let y = |v: f64| t + ph * (1.0 - v / y_max);
    let colours = [
        ("hyp", "#1f77b4"),
        ("stage2", "#d62728"),
        ("host_stage2", "#2ca02c"),
        ("walk", "#9467bd"),
        ("unlinked", "#ff7f0e"),
        ("union", "#000000"),
    ];
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="{w}" height="{h}" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{l}" y="22" font-size="14">pgtable.c ({line}) lines reached, fuzzing from an empty corpus</text>"#
    );
    // Axes, grid and ticks.
    for k in 0..=5 {
        let v = y_max * k as f64 / 5.0;
        let yy = y(v);
        let _ = writeln!(
            s,
            r##"<line x1="{l}" x2="{}" y1="{yy:.1}" y2="{yy:.1}" stroke="#ddd"/><text x="{}" y="{:.1}" text-anchor="end">{v:.0}</text>"##,
            l + pw,
            l - 6.0,
            yy + 4.0
        );
    }
    for &p in pts {
        let xx = x(p as f64);
        let _ = writeln!(
            s,
            r##"<line x1="{xx:.1}" x2="{xx:.1}" y1="{t}" y2="{}" stroke="#eee"/><text x="{xx:.1}" y="{}" text-anchor="middle">{p}</text>"##,
            t + ph,
            t + ph + 16.0
        );
    }
    let _ = writeln!(
        s,
        r#"<text x="{}" y="{}" text-anchor="middle">seconds (log scale)</text>"#,
        l + pw / 2.0,
        h - 10.0
    );
    let _ = writeln!(
        s,
        r##"<rect x="{l}" y="{t}" width="{pw}" height="{ph}" fill="none" stroke="#444"/>"##
    );
    for (ci, cv) in curves.iter().enumerate() {
        let dash = if ci == 0 {
            ""
        } else {
            r#" stroke-dasharray="6 4""#
        };
        for (name, colour) in colours {
            let Some(ys) = cv.get(&(name.to_string(), line.to_string())) else {
                continue;
            };
            let width = if name == "union" { 2.5 } else { 1.5 };
            let d: Vec<String> = pts
                .iter()
                .zip(ys)
                .map(|(&p, &v)| format!("{:.1},{:.1}", x(p as f64), y(v as f64)))
                .collect();
            let _ = writeln!(
                s,
                r#"<polyline fill="none" stroke="{colour}" stroke-width="{width}"{dash} points="{}"/>"#,
                d.join(" ")
            );
        }
    }
    // Legend: targets by colour, contenders by dash.
    let lx = l + pw + 16.0;
    for (k, (name, colour)) in colours.iter().enumerate() {
        let yy = t + 10.0 + 18.0 * k as f64;
        let _ = writeln!(
            s,
            r#"<line x1="{lx}" x2="{}" y1="{yy}" y2="{yy}" stroke="{colour}" stroke-width="2.5"/><text x="{}" y="{}">{name}</text>"#,
            lx + 24.0,
            lx + 30.0,
            yy + 4.0
        );
    }
    for (ci, label) in labels.iter().enumerate() {
        let yy = t + 10.0 + 18.0 * (colours.len() + 1 + ci) as f64;
        let dash = if ci == 0 {
            ""
        } else {
            r#" stroke-dasharray="6 4""#
        };
        let _ = writeln!(
            s,
            r##"<line x1="{lx}" x2="{}" y1="{yy}" y2="{yy}" stroke="#444" stroke-width="2"{dash}/><text x="{}" y="{}">{}</text>"##,
            lx + 24.0,
            lx + 30.0,
            yy + 4.0,
            xml(label)
        );
    }
    s.push_str("</svg>\n");
    s
}

fn xml(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The growth run: fuzz, replay, count, plot. Returns the rendered table.
pub fn run(secs: u64, targets: &[String], baseline_dir: Option<&Path>, jobs: usize) -> Res {
    let t0 = Instant::now();
    let profdata_tool = coverage::tool("llvm-profdata")?;
    let llvm_cov = coverage::tool("llvm-cov")?;
    // The baseline is checked first: a wrong --baseline should not cost two builds.
    let base = baseline_dir.map(baseline).transpose()?;
    let mut cs = vec![Contender {
        label: format!("this tree {}", commit_of(&root())),
        fuzz_bins: fz::build(Sanitizer::None)?,
        cov_cli: coverage::build()?,
    }];
    cs.extend(base);
    let pts = points(secs);
    let found = fuzz_all(&cs, targets, secs, jobs)?;
    let mut all = vec![];
    for (i, c) in cs.iter().enumerate() {
        all.push(measure(
            c,
            i,
            &found,
            &pts,
            (&profdata_tool, &llvm_cov),
            jobs,
        )?);
    }
    let curves: Vec<Curves> = all.iter().map(|(c, _)| c.clone()).collect();
    let labels: Vec<String> = cs.iter().map(|c| c.label.clone()).collect();

    // CSV: contender, target, kernel line, then lines run at each point.
    let mut csv = String::from("contender,target,line");
    for p in &pts {
        let _ = write!(csv, ",{p}s");
    }
    csv.push('\n');
    let mut rows = vec![];
    for (label, (cv, instr)) in labels.iter().zip(&all) {
        for ((target, line), ys) in cv {
            let _ = write!(csv, "{label},{target},{line}");
            for v in ys {
                let _ = write!(csv, ",{v}");
            }
            csv.push('\n');
            let at = |s: u64| {
                pts.iter()
                    .position(|&p| p == s)
                    .map_or("-".into(), |i| ys[i].to_string())
            };
            let n = instr.get(line).copied().unwrap_or(0);
            let last = *ys.last().unwrap();
            rows.push(vec![
                label.clone(),
                target.clone(),
                line.clone(),
                at(10),
                at(60),
                format!("{last}/{n}"),
            ]);
        }
    }
    let dir = growth_dir();
    mkdir(&dir)?;
    let csv_path = dir.join("growth.csv");
    fs::write(&csv_path, csv).ctx("cannot write growth.csv")?;
    let max_y = all
        .iter()
        .filter_map(|(_, i)| i.get(PLOT_LINE))
        .copied()
        .max()
        .unwrap_or(1000);
    let svg_path = dir.join("growth.svg");
    fs::write(&svg_path, svg(&labels, &curves, &pts, PLOT_LINE, max_y))
        .ctx("cannot write growth.svg")?;
    println!();
    say!(
        TAG,
        "pgtable.c lines reached from an empty corpus (union of a line's six builds)"
    );
    let end = format!("at {secs}s / instrumented");
    print!(
        "{}",
        table(
            &["build", "target", "kernel line", "at 10s", "at 60s", &end],
            &rows
        )
    );
    for f in found.iter().filter(|f| f.stopped.is_some()) {
        let label = &labels[f.contender];
        warn!(
            TAG,
            "{} ({label}) stopped early: {}",
            f.target,
            f.stopped.as_deref().unwrap_or("")
        );
    }
    say!(
        TAG,
        "plot: {}, data: {} ({})",
        rel(&svg_path),
        rel(&csv_path),
        fmt_dur(t0.elapsed())
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn points_end_with_the_run() {
        assert_eq!(points(60), vec![1, 2, 5, 10, 20, 30, 60]);
        assert_eq!(points(45), vec![1, 2, 5, 10, 20, 30, 45]);
        assert_eq!(points(1), vec![1]);
    }

    #[test]
    fn units_go_to_the_first_point_not_before_them() {
        let p = points(30);
        assert_eq!(bucket(&p, 0.0), 0);
        assert_eq!(bucket(&p, 1.0), 0);
        assert_eq!(bucket(&p, 1.01), 1);
        // Points 1, 2, 5, 10, 20, 30.
        assert_eq!(bucket(&p, 20.0), 4);
        assert_eq!(bucket(&p, 20.5), 5);
        // Written after -max_total_time ran out: the last point.
        assert_eq!(bucket(&p, 31.5), 5);
    }

    #[test]
    fn plot_has_a_curve_per_target_and_contender() {
        let pts = points(10);
        let mut a = Curves::new();
        let mut b = Curves::new();
        for t in ["stage2", "union"] {
            a.insert((t.into(), "6.12".into()), vec![1, 2, 3, 4]);
            b.insert((t.into(), "6.12".into()), vec![1, 1, 2, 2]);
        }
        let s = svg(
            &["new".into(), "old <x>".into()],
            &[a, b],
            &pts,
            "6.12",
            900,
        );
        assert_eq!(s.matches("<polyline").count(), 4);
        assert_eq!(s.matches(r#"stroke-dasharray="6 4" points"#).count(), 2);
        assert!(s.contains("old &lt;x&gt;"));
        // The y axis tops out at the next hundred above the largest count.
        assert!(s.contains(">900</text>"));
    }
}
