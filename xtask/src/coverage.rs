// SPDX-License-Identifier: GPL-2.0-only
//! `cargo xtask coverage`: source coverage of the kernel's pgtable.c (C) and of rust-pgtable
//! reached by the committed inputs.
//!
//! 1. Build the CLI with coverage instrumentation in `target/coverage/`: the C side with
//!    `KPD_C_COVERAGE=1` (build.rs adds `-fprofile-instr-generate -fcoverage-mapping`), the
//!    Rust code with `RUSTFLAGS=-C instrument-coverage`. `--target <host>` keeps the flags
//!    off build scripts and proc macros.
//! 2. Replay every committed input with `kvm-pgtable-diff run` and `LLVM_PROFILE_FILE` set:
//!    `fuzz/corpus/<target>/*` (raw, decoded with the target's profile), `fuzz/scenarios/**/*.txt`,
//!    `tests/regressions/*.txt`, `tests/known/*.txt`.
//! 3. Merge with `llvm-profdata-22`, report with `llvm-cov-22`: `report` restricted to each
//!    kernel line's pgtable.c and to rust-pgtable/src for the numbers, `show -format=html` into
//!    `target/coverage/html/`, and an lcov export for the list of pgtable.c lines not reached
//!    (`target/coverage/uncovered.txt`, per kernel line, by function name and line number).
//!
//! Every kernel line of kernel.lock (6.12, 7.3) is its own pgtable.c: build.rs copies each
//! line's files to `OUT_DIR/ksrc/<line>/`, so llvm-cov sees one source file per line and the
//! lines are reported separately. Each line's pgtable.c is compiled six times (2 contexts x 3
//! granules) through generated unit files that `#include` it; llvm-cov keys coverage by source
//! file, so a line's counts are the union over its six builds and a function counts as covered
//! when any build ran it (docs/COVERAGE.md).

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use crate::fuzz::TARGETS;
use crate::util::{
    Ctx, EXIT_FINDING, EXIT_OK, Res, capture, cmd_line, files, fmt_dur, host_triple, rel,
    reset_dir, root, run_ok, setup_err, table,
};
use crate::{kernel, say, setup, warn};

const TAG: &str = "coverage";
/// Inputs per `kvm-pgtable-diff run` invocation.
const CHUNK: usize = 256;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Skip the HTML report (target/coverage/html/).
    #[arg(long)]
    pub no_html: bool,
    /// Also replay these files or directories (text scenarios or raw inputs; raw inputs under
    /// .../corpus/<target>/ or .../artifacts/<target>/ are decoded with that target's profile).
    #[arg(value_name = "EXTRA_INPUTS")]
    pub extra: Vec<PathBuf>,
}

fn cov_dir() -> PathBuf {
    root().join("target").join("coverage")
}

pub(crate) fn tool(name: &str) -> Res<String> {
    for cand in [format!("{name}-22"), name.to_string()] {
        if capture(Command::new(&cand).arg("--version")).0 {
            return Ok(cand);
        }
    }
    let fix = "run: cargo xtask setup (installs llvm-22)";
    Err(setup_err(format!("{name}-22 not found; {fix}")))
}

/// Builds the instrumented CLI; returns its path.
pub(crate) fn build() -> Res<PathBuf> {
    let triple = host_triple(false)?;
    let mut flags = std::env::var("RUSTFLAGS").unwrap_or_default();
    if !flags.contains("instrument-coverage") {
        flags = format!("{flags} -C instrument-coverage").trim().to_string();
    }
    let mut cmd = Command::new("cargo");
    cmd.args([
        "build",
        "--release",
        "-p",
        "kvm-pgtable-diff",
        "--bin",
        "kvm-pgtable-diff",
    ])
    .args(["--target", &triple, "--target-dir"])
    .arg(cov_dir())
    .env("KPD_C_COVERAGE", "1")
    .env("RUSTFLAGS", &flags)
    // Anything instrumented that runs during the build writes here, not into the tree.
    .env("LLVM_PROFILE_FILE", cov_dir().join("build-%p.profraw"))
    .current_dir(root());
    let shown = cmd_line(&cmd);
    say!(
        TAG,
        "building the instrumented CLI: KPD_C_COVERAGE=1 RUSTFLAGS='{flags}' {shown} ..."
    );
    let t = Instant::now();
    if !crate::util::run(&mut cmd)?.success() {
        return Err(setup_err(
            "coverage build failed (see cargo's output above)",
        ));
    }
    say!(TAG, "built in {}", fmt_dur(t.elapsed()));
    Ok(cov_dir()
        .join(triple)
        .join("release")
        .join("kvm-pgtable-diff"))
}

/// One replay group: files run with the same `--target`.
struct Group {
    label: String,
    target: Option<String>,
    files: Vec<PathBuf>,
}

fn groups(extra: &[PathBuf]) -> Vec<Group> {
    let r = root();
    let mut gs: Vec<Group> = TARGETS
        .iter()
        .map(|t| Group {
            label: format!("fuzz/corpus/{t}"),
            target: Some(t.to_string()),
            files: files(&r.join("fuzz/corpus").join(t), false, None),
        })
        .collect();
    // Scenarios: fuzz/scenarios/<target>/... runs with that target's options.
    let scen = r.join("fuzz/scenarios");
    let mut by_target: BTreeMap<Option<String>, Vec<PathBuf>> = BTreeMap::new();
    for f in files(&scen, true, Some("txt")) {
        let first = f
            .strip_prefix(&scen)
            .ok()
            .and_then(|p| p.components().next())
            .map(|c| c.as_os_str().to_string_lossy().into_owned());
        let t = first.filter(|c| TARGETS.contains(&c.as_str()));
        by_target.entry(t).or_default().push(f);
    }
    for (t, files) in by_target {
        gs.push(Group {
            label: match &t {
                Some(t) => format!("fuzz/scenarios/{t}"),
                None => "fuzz/scenarios".into(),
            },
            target: t,
            files,
        });
    }
    for d in ["tests/regressions", "tests/known"] {
        gs.push(Group {
            label: d.into(),
            target: None,
            files: files(&r.join(d), false, Some("txt")),
        });
    }
    if !extra.is_empty() {
        let files = extra.iter().flat_map(|p| match p.is_dir() {
            true => files(p, true, None),
            false => vec![p.clone()],
        });
        gs.push(Group {
            label: "extra inputs".into(),
            target: None,
            files: files.collect(),
        });
    }
    gs
}

#[derive(Default)]
struct Replay {
    agree: usize,
    findings: Vec<String>,
    invalid: Vec<String>,
}

/// Runs `bin run [--target T] files...`; on a usage/input error (exit 2), runs the chunk file by
/// file so one bad input does not hide the coverage of the others.
fn replay(bin: &Path, profile: &Path, g: &Group, rep: &mut Replay) -> Res {
    let run = |files: &[PathBuf]| -> Res<(i32, String, String)> {
        let mut cmd = Command::new(bin);
        cmd.arg("run");
        if let Some(t) = &g.target {
            cmd.args(["--target", t]);
        }
        cmd.args(files)
            .env("LLVM_PROFILE_FILE", profile)
            .current_dir(root());
        let o = cmd
            .output()
            .ctx(format_args!("cannot run {}", bin.display()))?;
        Ok((
            o.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        ))
    };
    let note = |code: i32, out: &str, err: &str, files: &[PathBuf], rep: &mut Replay| {
        let found: Vec<String> = out
            .lines()
            .filter(|l| !l.ends_with(" findings") && l.contains(": "))
            .map(String::from)
            .collect();
        match code {
            0 | 1 => {
                rep.agree += files.len() - found.len();
                rep.findings.extend(found);
            }
            _ => rep.invalid.push(
                err.lines()
                    .next()
                    .unwrap_or("unknown error")
                    .trim_start_matches("error: ")
                    .to_string(),
            ),
        }
    };
    for chunk in g.files.chunks(CHUNK) {
        let (code, out, err) = run(chunk)?;
        if code == 2 {
            for f in chunk {
                let (code, out, err) = run(std::slice::from_ref(f))?;
                note(code, &out, &err, std::slice::from_ref(f), rep);
            }
        } else {
            note(code, &out, &err, chunk, rep);
        }
    }
    Ok(())
}

/// Totals of an `llvm-cov report` table: (functions, missed functions, lines, missed lines).
fn parse_report_total(text: &str) -> Option<(u64, u64, u64, u64)> {
    let line = text.lines().find(|l| l.starts_with("TOTAL"))?;
    let t: Vec<&str> = line.split_whitespace().skip(1).collect();
    // Regions Missed Cover Functions Missed Executed Lines Missed Cover [Branches ...]
    let n = |i: usize| t.get(i).and_then(|s| s.parse::<u64>().ok());
    Some((n(3)?, n(4)?, n(6)?, n(7)?))
}

fn pct(total: u64, missed: u64) -> f64 {
    if total == 0 {
        0.0
    } else {
        100.0 * (total - missed) as f64 / total as f64
    }
}

/// Function name of an lcov `FN:` record: drops the `unit.c:` prefix of static functions and
/// build.rs's per-build `kpd_<build>__` rename.
fn plain_name(n: &str) -> String {
    let n = n.rsplit(':').next().unwrap_or(n);
    match n.strip_prefix("kpd_").and_then(|r| r.split_once("__")) {
        Some((_, rest)) => rest.to_string(),
        None => n.to_string(),
    }
}

/// Per-line and per-function coverage of one file from an lcov export, union over the builds.
#[derive(Default)]
struct Lcov {
    /// line -> total count over builds.
    lines: BTreeMap<u32, u64>,
    /// start line -> (name, total count over builds).
    funcs: BTreeMap<u32, (String, u64)>,
}

fn parse_lcov(text: &str) -> Lcov {
    let mut l = Lcov::default();
    let mut name_line: BTreeMap<String, u32> = BTreeMap::new();
    for line in text.lines() {
        if let Some(r) = line.strip_prefix("FN:") {
            if let Some((ln, name)) = r.split_once(',')
                && let Ok(ln) = ln.parse::<u32>()
            {
                name_line.insert(name.to_string(), ln);
                l.funcs.entry(ln).or_insert((plain_name(name), 0));
            }
        } else if let Some(r) = line.strip_prefix("FNDA:") {
            if let Some((c, name)) = r.split_once(',') {
                let c = c.parse::<u64>().unwrap_or(0);
                if let Some(f) = name_line.get(name).and_then(|ln| l.funcs.get_mut(ln)) {
                    f.1 += c;
                }
            }
        } else if let Some((ln, c)) = da(line) {
            *l.lines.entry(ln).or_insert(0) += c;
        }
    }
    l
}

/// An lcov `DA:<line>,<count>` record.
fn da(line: &str) -> Option<(u32, u64)> {
    let (ln, c) = line.strip_prefix("DA:")?.split_once(',')?;
    Some((ln.parse().ok()?, c.split(',').next()?.parse().ok()?))
}

/// (instrumented lines, lines run) over every `SF:` record of an lcov export, each
/// (file, line) counted once with its counts summed over the records (builds) that have it.
pub(crate) fn lcov_line_totals(text: &str) -> (u64, u64) {
    let mut lines: BTreeMap<(String, u32), u64> = BTreeMap::new();
    let mut file = String::new();
    for line in text.lines() {
        if let Some(f) = line.strip_prefix("SF:") {
            file = f.to_string();
        } else if let Some((ln, c)) = da(line) {
            *lines.entry((file.clone(), ln)).or_insert(0) += c;
        }
    }
    (
        lines.len() as u64,
        lines.values().filter(|&&c| c > 0).count() as u64,
    )
}

/// Compresses sorted line numbers into `a-b` ranges.
fn ranges(v: &[u32]) -> String {
    let mut out: Vec<String> = vec![];
    let mut i = 0;
    while i < v.len() {
        let mut j = i;
        while j + 1 < v.len() && v[j + 1] == v[j] + 1 {
            j += 1;
        }
        out.push(if i == j {
            v[i].to_string()
        } else {
            format!("{}-{}", v[i], v[j])
        });
        i = j + 1;
    }
    out.join(",")
}

/// Unreached lines grouped by the function they are in: (name, start, never run, lines).
fn uncovered(l: &Lcov) -> Vec<(String, u32, bool, Vec<u32>)> {
    let mut by_fn: BTreeMap<u32, Vec<u32>> = BTreeMap::new();
    for (&ln, &c) in &l.lines {
        if c == 0 {
            let start = l.funcs.range(..=ln).next_back().map_or(0, |(s, _)| *s);
            by_fn.entry(start).or_default().push(ln);
        }
    }
    let mut out: Vec<_> = by_fn
        .into_iter()
        .map(|(s, lines)| {
            let (name, count) = l
                .funcs
                .get(&s)
                .cloned()
                .unwrap_or(("(file scope)".into(), 1));
            (name, s, count == 0, lines)
        })
        .collect();
    for (&s, (name, c)) in &l.funcs {
        if *c == 0 && !out.iter().any(|o| o.1 == s) {
            out.push((name.clone(), s, true, vec![]));
        }
    }
    out.sort_by_key(|o| o.1);
    out
}

/// Every source file with a coverage mapping in `bin` (`llvm-cov export -summary-only`).
pub(crate) fn mapped_files(llvm_cov: &str, bin: &Path, profdata: &Path) -> Res<Vec<String>> {
    let (ok, out, err) = capture(
        Command::new(llvm_cov)
            .args(["export", "-summary-only", "-format=text"])
            .arg(bin)
            .arg(format!("-instr-profile={}", profdata.display())),
    );
    if !ok {
        let first = err.lines().next().unwrap_or("");
        return Err(setup_err(format!("llvm-cov export failed: {first}")));
    }
    Ok(out
        .split("\"filename\":\"")
        .skip(1)
        .filter_map(|s| s.split('"').next().map(String::from))
        .collect())
}

/// The ksrc copies of pgtable.c that the instrumented binary was built from, one per kernel
/// line: build.rs copies each set's files to `OUT_DIR/ksrc/<set ident>/` (the set's name with
/// `.` as `_`). Returns (line, path) in kernel.lock order.
fn pgtable_c_paths(
    llvm_cov: &str,
    bin: &Path,
    profdata: &Path,
    lines: &[String],
) -> Res<Vec<(String, String)>> {
    let files = mapped_files(llvm_cov, bin, profdata)?;
    let mut found = vec![];
    for line in lines {
        let want = format!("/ksrc/{}/{PGTABLE_C}", line.replace(['.', '-'], "_"));
        match files.iter().find(|f| f.ends_with(&want)) {
            Some(f) => found.push((line.clone(), f.to_string())),
            None => {
                return Err(setup_err(format!(
                    "pgtable.c of line {line} has no coverage mapping in the build; is \
                     KPD_C_COVERAGE honoured by build.rs?"
                )));
            }
        }
    }
    Ok(found)
}

/// Where pgtable.c sits in a kernel tree.
const PGTABLE_C: &str = "arch/arm64/kvm/hyp/pgtable.c";

/// Coverage of one line's pgtable.c.
struct LineCov {
    line: String,
    /// Instrumented lines and lines run (the union over the line's six builds).
    lines: (u64, u64),
    /// Functions and functions missed (`llvm-cov report`).
    funcs: (u64, u64),
    /// `llvm-cov report`'s own line figure (best build per function): total, missed.
    report_lines: (u64, u64),
    unreached: Vec<(String, u32, bool, Vec<u32>)>,
    missed: usize,
    instrumented: usize,
}

pub fn run(args: Args) -> Res<u8> {
    let t0 = Instant::now();
    setup::apt_packages()?;
    setup::kernel_source()?;
    let profdata_tool = tool("llvm-profdata")?;
    let llvm_cov = tool("llvm-cov")?;
    let bin = build()?;

    let gs = groups(&args.extra);
    let total: usize = gs.iter().map(|g| g.files.len()).sum();
    if total == 0 {
        return Err(setup_err(
            "no inputs to replay: fuzz/corpus/<target>/, fuzz/scenarios/ and tests/regressions/ are empty",
        ));
    }
    let raw_dir = cov_dir().join("profraw");
    reset_dir(&raw_dir)?;
    // %8m: a pool of 8 files merged online, however many processes run.
    let profile = raw_dir.join("kpd-%8m.profraw");
    let mut rows = vec![];
    let mut all = Replay::default();
    for g in &gs {
        if g.files.is_empty() {
            rows.push(vec![g.label.clone(), "0".into(), "-".into(), "-".into()]);
            continue;
        }
        say!(
            TAG,
            "replaying {} inputs from {} ...",
            g.files.len(),
            g.label
        );
        let mut rep = Replay::default();
        replay(&bin, &profile, g, &mut rep)?;
        rows.push(vec![
            g.label.clone(),
            g.files.len().to_string(),
            rep.findings.len().to_string(),
            rep.invalid.len().to_string(),
        ]);
        all.agree += rep.agree;
        all.findings.extend(rep.findings);
        all.invalid.extend(rep.invalid);
    }
    let raws = files(&raw_dir, false, Some("profraw"));
    if raws.is_empty() {
        return Err(setup_err(
            "the replay wrote no .profraw files; was the CLI built with -C instrument-coverage?",
        ));
    }
    let profdata = cov_dir().join("merged.profdata");
    say!(TAG, "merging {} profiles ...", raws.len());
    run_ok(
        Command::new(&profdata_tool)
            .args(["merge", "-sparse", "-o"])
            .arg(&profdata)
            .args(&raws),
    )?;

    let lines: Vec<String> = kernel::read_lock()?
        .lines
        .iter()
        .map(|l| l.name.clone())
        .collect();
    let pgtable_cs = pgtable_c_paths(&llvm_cov, &bin, &profdata, &lines)?;
    let rust_src = root().join("rust-pgtable").join("src");
    // `llvm-cov <args> <bin> -instr-profile=<profdata> <src>`.
    let cov = |args: &[&str], src: &str| {
        capture(
            Command::new(&llvm_cov)
                .args(args)
                .arg(&bin)
                .arg(format!("-instr-profile={}", profdata.display()))
                .arg(src),
        )
    };
    let report = |src: &str| -> Res<(String, (u64, u64, u64, u64))> {
        let (ok, out, err) = cov(&["report"], src);
        let tot = parse_report_total(&out).filter(|_| ok).ok_or_else(|| {
            let first = err.lines().next().unwrap_or("no TOTAL line");
            setup_err(format!("llvm-cov report failed for {src}: {first}"))
        })?;
        Ok((out, tot))
    };
    let (rust_out, (rf, rfm, _, _)) = report(&rust_src.display().to_string())?;

    // Line coverage from the per-line view (lcov DA records): the union over a line's six
    // builds. `llvm-cov report`'s Lines column is not: per function it takes the best single
    // instantiation (see docs/COVERAGE.md), so it is shown only for reference.
    let lcov_of = |src: &str| -> Res<String> {
        let (ok, out, err) = cov(&["export", "-format=lcov"], src);
        if !ok {
            let first = err.lines().next().unwrap_or("");
            return Err(setup_err(format!(
                "llvm-cov export -format=lcov failed: {first}"
            )));
        }
        Ok(out)
    };
    let mut per_line: Vec<LineCov> = vec![];
    for (line, path) in &pgtable_cs {
        let (_, (cf, cfm, cl, clm)) = report(path)?;
        let lcov = lcov_of(path)?;
        let lc = parse_lcov(&lcov);
        per_line.push(LineCov {
            line: line.clone(),
            lines: lcov_line_totals(&lcov),
            funcs: (cf, cfm),
            report_lines: (cl, clm),
            unreached: uncovered(&lc),
            missed: lc.lines.values().filter(|&&c| c == 0).count(),
            instrumented: lc.lines.len(),
        });
    }
    let (r_lines, r_run) = lcov_line_totals(&lcov_of(&rust_src.display().to_string())?);
    let never = |n: bool| if n { " NEVER RUN" } else { "" };
    let mut text = String::from(
        "# pgtable.c lines not reached by the committed inputs, per kernel line, by function\n\
         # (start line) -- generated by `cargo xtask coverage`\n",
    );
    for c in &per_line {
        text += &format!(
            "\n[line {}] {} of {} instrumented lines not reached\n",
            c.line, c.missed, c.instrumented
        );
        for (name, start, n, ls) in &c.unreached {
            text += &format!("{name} (line {start}){}: {}\n", never(*n), ranges(ls));
        }
    }
    let unc_path = cov_dir().join("uncovered.txt");
    fs::write(&unc_path, &text).ctx(format_args!("cannot write {}", unc_path.display()))?;

    if !args.no_html {
        let html = cov_dir().join("html");
        let _ = fs::remove_dir_all(&html);
        say!(TAG, "writing the HTML report ...");
        run_ok(
            Command::new(&llvm_cov)
                .args([
                    "show",
                    "-format=html",
                    "-show-line-counts-or-regions",
                    "-show-instantiations=false",
                ])
                .arg(format!("-output-dir={}", html.display()))
                .arg(&bin)
                .arg(format!("-instr-profile={}", profdata.display()))
                .args(pgtable_cs.iter().map(|(_, p)| p))
                .arg(&rust_src),
        )?;
    }

    // Output: per-file Rust numbers, unreached C functions, the replay table, the summary.
    println!("\nrust-pgtable/src:");
    for l in rust_out
        .lines()
        .filter(|l| l.ends_with('-') || l.contains('%'))
    {
        if !l.starts_with("---") {
            println!("  {l}");
        }
    }
    let unc_rel = rel(&unc_path);
    for c in &per_line {
        let l = &c.line;
        println!("\npgtable.c of line {l}: lines not reached, by function (full list: {unc_rel}):");
        if c.unreached.is_empty() {
            println!("  none");
        }
        for (name, start, n, ls) in &c.unreached {
            let (k, r) = (ls.len(), ranges(ls));
            println!("  {name} (line {start}){}: {k} line(s) {r}", never(*n));
        }
    }
    println!("\nreplayed inputs:");
    rows.push(vec![
        "total".into(),
        total.to_string(),
        all.findings.len().to_string(),
        all.invalid.len().to_string(),
    ]);
    print!(
        "{}",
        table(&["inputs", "files", "findings", "invalid"], &rows)
    );
    for f in all.findings.iter().take(20) {
        warn!(TAG, "finding: {f}");
    }
    for f in all.invalid.iter().take(20) {
        warn!(TAG, "input not replayed: {f}");
    }
    let r_pct = pct(r_lines, r_lines - r_run);
    let mut rows = vec![];
    for c in &per_line {
        let ((n, run), (f, fm), (cl, clm)) = (c.lines, c.funcs, c.report_lines);
        rows.push(vec![
            format!("pgtable.c {} (union of 6 builds)", c.line),
            format!("{run}/{n}"),
            format!("{:.2}%", pct(n, n - run)),
            format!("{}/{f}", f - fm),
            format!("{:.2}%", pct(f, fm)),
        ]);
        rows.push(vec![
            "  (llvm-cov report: best build per function)".into(),
            format!("{}/{cl}", cl - clm),
            format!("{:.2}%", pct(cl, clm)),
            "".into(),
            "".into(),
        ]);
    }
    rows.push(vec![
        "rust-pgtable/src".into(),
        format!("{r_run}/{r_lines}"),
        format!("{r_pct:.2}%"),
        format!("{}/{}", rf - rfm, rf),
        format!("{:.2}%", pct(rf, rfm)),
    ]);
    println!();
    let header = ["source", "lines", "lines %", "functions", "functions %"];
    print!("{}", table(&header, &rows));
    if !args.no_html {
        say!(
            TAG,
            "HTML report: {}",
            rel(&cov_dir().join("html").join("index.html"))
        );
    }
    say!(TAG, "done in {}", fmt_dur(t0.elapsed()));
    println!("{}", summary_line(&per_line, r_pct));
    Ok(if all.findings.is_empty() {
        EXIT_OK
    } else {
        EXIT_FINDING
    })
}

/// `coverage: pgtable.c 6.12 lines L% functions F%, 7.3 lines L% functions F%, rust-pgtable
/// lines R%`: every kernel line's pgtable.c, then rust-pgtable.
fn summary_line(per_line: &[LineCov], r_pct: f64) -> String {
    let c: Vec<String> = per_line
        .iter()
        .map(|c| {
            let ((n, run), (f, fm)) = (c.lines, c.funcs);
            format!(
                "{} lines {:.2}% functions {:.2}%",
                c.line,
                pct(n, n - run),
                pct(f, fm)
            )
        })
        .collect();
    format!(
        "coverage: pgtable.c {}, rust-pgtable lines {r_pct:.2}%",
        c.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_total_parsing() {
        let t = "Filename  Regions  Missed Regions  Cover  Functions  Missed Functions  Executed  Lines  Missed Lines  Cover  Branches  Missed Branches  Cover\n\
                 ----\n\
                 TOTAL  1087  262  75.90%  74  1  98.65%  974  132  86.45%  445  159  64.27%\n";
        assert_eq!(parse_report_total(t), Some((74, 1, 974, 132)));
        assert_eq!(parse_report_total("no table"), None);
    }

    #[test]
    fn names_and_ranges() {
        assert_eq!(
            plain_name("kpd_nvhe_4k__kvm_pgtable_walk"),
            "kvm_pgtable_walk"
        );
        assert_eq!(
            plain_name("kernel_16k.c:stage2_map_walker"),
            "stage2_map_walker"
        );
        assert_eq!(plain_name("helper"), "helper");
        assert_eq!(ranges(&[3, 4, 5, 9, 11, 12]), "3-5,9,11-12");
        assert_eq!(ranges(&[]), "");
    }

    #[test]
    fn lcov_union_over_builds() {
        // Two builds of the same file: function f (line 10) runs only in build b,
        // g (line 20) in neither; line 11 runs in a only, 12 in b only, 21 never.
        let t = "SF:/x/pgtable.c\nFN:10,a.c:f\nFN:10,b.c:f\nFN:20,kpd_a__g\nFN:20,kpd_b__g\n\
                 FNDA:0,a.c:f\nFNDA:3,b.c:f\nFNDA:0,kpd_a__g\nFNDA:0,kpd_b__g\n\
                 DA:11,2\nDA:12,0\nDA:21,0\nend_of_record\nSF:/x/pgtable.c\nDA:11,0\nDA:12,5\nDA:21,0\n";
        let l = parse_lcov(t);
        assert_eq!(l.lines.get(&11), Some(&2));
        assert_eq!(l.lines.get(&12), Some(&5));
        assert_eq!(l.funcs.get(&10), Some(&("f".to_string(), 3)));
        let u = uncovered(&l);
        assert_eq!(lcov_line_totals(t), (3, 2));
        assert_eq!(u, vec![("g".to_string(), 20, true, vec![21])]);
    }

    #[test]
    fn summary_names_every_line() {
        let lc = |line: &str, lines, funcs| LineCov {
            line: line.into(),
            lines,
            funcs,
            report_lines: (0, 0),
            unreached: vec![],
            missed: 0,
            instrumented: 0,
        };
        let per_line = [
            lc("6.12", (200, 190), (74, 0)),
            lc("7.3", (400, 380), (80, 1)),
        ];
        assert_eq!(
            summary_line(&per_line, 91.25),
            "coverage: pgtable.c 6.12 lines 95.00% functions 100.00%, \
             7.3 lines 95.00% functions 98.75%, rust-pgtable lines 91.25%"
        );
    }
}
