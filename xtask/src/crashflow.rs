// SPDX-License-Identifier: GPL-2.0-only
//! The crash workflow after `cargo xtask fuzz`:
//!
//! - `cargo xtask cmin`: minimise each target's working corpus (`fuzz/corpus-work/<t>/`) with
//!   libFuzzer `-merge=1` into an empty directory, which keeps one input per coverage feature;
//!   repeated until a round no longer shrinks it. The committed seeds (`fuzz/corpus/<t>/`) are
//!   not touched: they are generated from the readable scenarios (`cargo xtask corpus`).
//! - `cargo xtask tmin <crash>`: libFuzzer `-minimize_crash=1` on the built target; the result
//!   goes next to the input as `<name>.min`, and is checked to still diverge the same way.
//! - `cargo xtask regress <crash> [name]`: decode a (minimised) raw input to the readable text
//!   format with `kvm-pgtable-diff decode` and write `tests/regressions/<name>.txt` with a
//!   header comment; `tests/regressions.rs` replays every such file and expects no finding
//!   once the bug is fixed.

use std::fs;
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::fuzz::{Sanitizer, TARGETS, build, fuzz_dir, select_targets};
use crate::util::{
    Ctx, EXIT_FINDING, EXIT_OK, Res, capture, cmd_line, files, finding, fmt_dur, mkdir, rel, root,
    setup_err, sha1_hex, table,
};
use crate::{say, setup};

/// Most merge rounds `cmin` makes (it stops earlier once a round does not shrink the corpus).
const MAX_ROUNDS: usize = 5;

#[derive(clap::Args, Debug)]
pub struct CminArgs {
    /// Minimise only this target's corpus (repeatable). Default: every target.
    #[arg(long = "target", value_name = "NAME")]
    pub targets: Vec<String>,
    /// Sanitizer of the build used for merging (the same build `cargo xtask fuzz` uses).
    #[arg(long, value_enum, default_value_t = Sanitizer::Address)]
    pub sanitizer: Sanitizer,
}

#[derive(clap::Args, Debug)]
pub struct TminArgs {
    /// The crashing input (raw fuzzer bytes), e.g. fuzz/artifacts/stage2/crash-<sha1>.
    pub crash: PathBuf,
    /// Fuzz target (default: guessed from a .../artifacts/<target>/ path).
    #[arg(long)]
    pub target: Option<String>,
    /// Mutations per minimisation step (libFuzzer -runs).
    #[arg(long, value_name = "N", default_value_t = 10_000)]
    pub runs: u64,
    /// Overall time limit in seconds; the smallest input found by then is kept.
    #[arg(long, value_name = "SECONDS", default_value_t = 120)]
    pub time: u64,
    /// Sanitizer of the build to use.
    #[arg(long, value_enum, default_value_t = Sanitizer::Address)]
    pub sanitizer: Sanitizer,
}

#[derive(clap::Args, Debug)]
pub struct RegressArgs {
    /// The (minimised) crashing input, raw fuzzer bytes.
    pub crash: PathBuf,
    /// File name under tests/regressions/ (without .txt; letters, digits, '-', '_').
    /// Default: the target and the first 8 hex digits of the input's sha1.
    pub name: Option<String>,
    /// Fuzz target (default: guessed from a .../artifacts/<target>/ path).
    #[arg(long)]
    pub target: Option<String>,
    /// Overwrite an existing tests/regressions/<name>.txt.
    #[arg(long)]
    pub force: bool,
}

/// The target of a crash file: `--target`, else the directory after `artifacts`, `corpus` or
/// `corpus-work` in its path.
pub fn guess_target(path: &Path, given: Option<&str>) -> Res<String> {
    if let Some(t) = given {
        return select_targets(&[t.to_string()]).map(|mut v| v.remove(0));
    }
    let comps: Vec<String> = path
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    comps
        .windows(2)
        .find_map(|w| {
            let dir = matches!(w[0].as_str(), "artifacts" | "corpus" | "corpus-work");
            (dir && TARGETS.contains(&w[1].as_str())).then(|| w[1].clone())
        })
        .ok_or_else(|| {
            let (p, all) = (path.display(), TARGETS.join("|"));
            setup_err(format!(
                "cannot tell the fuzz target of {p}; pass --target <{all}>"
            ))
        })
}

fn dir_size(dir: &Path) -> (usize, u64) {
    let files = files(dir, false, None);
    let size = |p: &PathBuf| fs::metadata(p).map_or(0, |m| m.len());
    (files.len(), files.iter().map(size).sum())
}

/// `MERGE-OUTER: N new files with F new features added; E new coverage edges`.
fn parse_merge(out: &str) -> Option<(u64, u64, u64)> {
    let mut lines = out.lines().rev();
    let l = lines.find(|l| l.contains("MERGE-OUTER:") && l.contains("new files with"))?;
    let rest = l.split("MERGE-OUTER:").nth(1)?;
    let nums: Vec<u64> = rest
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|s| s.parse().ok())
        .collect();
    match nums[..] {
        [files, features, edges, ..] => Some((files, features, edges)),
        _ => None,
    }
}

/// Merges `from` into the empty directory `to`; returns (files, features, edges).
fn merge(bin: &Path, to: &Path, from: &Path, log: &Path) -> Res<(u64, u64, u64)> {
    let _ = fs::remove_dir_all(to);
    mkdir(to)?;
    let mut cmd = Command::new(bin);
    cmd.args(["-merge=1", "-timeout=25", "-rss_limit_mb=4096"]);
    cmd.arg(to).arg(from).stdin(Stdio::null());
    let (ok, so, se) = capture(&mut cmd);
    let all = format!("$ {}\n{so}{se}", cmd_line(&cmd));
    let _ = fs::write(log, &all);
    match parse_merge(&all) {
        Some(r) if ok => Ok(r),
        _ => Err(setup_err(format!(
            "libFuzzer merge failed; see {}",
            rel(log)
        ))),
    }
}

pub fn cmin(args: CminArgs) -> Res<u8> {
    let targets = select_targets(&args.targets)?;
    setup::setup(setup::Opts { fuzz: true })?;
    let bin_dir = build(args.sanitizer)?;
    let logs = fuzz_dir().join("target").join("logs");
    mkdir(&logs)?;
    let mut rows = vec![];
    for t in &targets {
        let work = fuzz_dir().join("corpus-work").join(t);
        let (n0, b0) = dir_size(&work);
        if n0 == 0 {
            say!("cmin", "{t}: {} is empty, nothing to minimise", rel(&work));
            let empty = ["0", "0", "-", "-", "-", "-", "empty"].map(String::from);
            rows.push([vec![t.clone()], empty.to_vec()].concat());
            continue;
        }
        let started = Instant::now();
        let bin = bin_dir.join(t);
        let log = logs.join(format!("{t}.cmin.log"));
        let mut cur = work.clone();
        let mut cur_n = n0;
        let mut first: Option<(u64, u64)> = None;
        let mut last = (0, 0);
        let mut rounds = 0;
        let mut kept: Option<PathBuf> = None;
        for r in 1..=MAX_ROUNDS {
            let next = work.with_file_name(format!(".{t}.cmin-{r}"));
            let (files, ft, edges) = merge(&bin, &next, &cur, &log)?;
            rounds = r;
            let done = format!("{files} files, {ft} features, {edges} edges");
            say!("cmin", "{t}: round {r}: {cur_n} -> {done}");
            first.get_or_insert((ft, edges));
            last = (ft, edges);
            if let Some(k) = kept.take() {
                let _ = fs::remove_dir_all(k);
            }
            let shrank = (files as usize) < cur_n;
            cur_n = files as usize;
            cur = next.clone();
            kept = Some(next);
            if !shrank {
                break;
            }
        }
        let (ft0, _) = first.unwrap_or_default();
        let (ft1, w) = (last.0, rel(&work));
        if ft1 < ft0 {
            let lost = format!("minimising lost coverage ({ft0} -> {ft1} features)");
            return Err(finding(format!("{t}: {lost}; {w} left untouched")));
        }
        // Replace the working corpus with the last round's result.
        let old = work.with_file_name(format!(".{t}.cmin-old"));
        let _ = fs::remove_dir_all(&old);
        fs::rename(&work, &old)
            .and_then(|_| fs::rename(&cur, &work))
            .ctx(format_args!("cannot replace {w}"))?;
        let _ = fs::remove_dir_all(&old);
        let (n1, b1) = dir_size(&work);
        rows.push(vec![
            t.clone(),
            n0.to_string(),
            b0.to_string(),
            n1.to_string(),
            b1.to_string(),
            format!("{ft0} -> {ft1}"),
            rounds.to_string(),
            fmt_dur(started.elapsed()),
        ]);
    }
    println!();
    let logs = "merge log fuzz/target/logs/<target>.cmin.log";
    say!("cmin", "summary (fuzz/corpus-work/<target>/, {logs})");
    let header = [
        "target",
        "files before",
        "bytes before",
        "files after",
        "bytes after",
    ];
    let header = [&header[..], &["features", "rounds", "time"]].concat();
    print!("{}", table(&header, &rows));
    let sum = |col: usize| -> usize { rows.iter().map(|r| r[col].parse().unwrap_or(0)).sum() };
    let (before, after) = (sum(1), sum(3));
    println!("cmin: {} targets, {before} -> {after} files", rows.len());
    Ok(EXIT_OK)
}

/// `cargo run --release -q -p kvm-pgtable-diff -- <sub> <file> --target <target>`.
fn cli(sub: &str, file: &Path, target: &str) -> Command {
    let mut cmd = Command::new("cargo");
    cmd.args([
        "run",
        "--release",
        "-q",
        "-p",
        "kvm-pgtable-diff",
        "--",
        sub,
    ])
    .arg(file)
    .args(["--target", target])
    .current_dir(root());
    cmd
}

/// The headline of a finding, from `kvm-pgtable-diff run <file> --target t`; None if no finding.
fn headline(file: &Path, target: &str) -> Res<Option<String>> {
    let mut cmd = cli("run", file, target);
    let out = cmd
        .output()
        .ctx(format_args!("cannot run `{}`", cmd_line(&cmd)))?;
    let so = String::from_utf8_lossy(&out.stdout);
    match out.status.code() {
        Some(0) => Ok(None),
        Some(1) => {
            let prefix = format!("{}: ", file.display());
            Ok(Some(
                so.lines()
                    .find_map(|l| l.strip_prefix(&prefix).map(String::from))
                    .unwrap_or_else(|| "finding".into()),
            ))
        }
        _ => Err(failed(&cmd, &out.stderr)),
    }
}

/// "`cmd` failed: <its stderr>".
fn failed(cmd: &Command, stderr: &[u8]) -> crate::util::Fail {
    let err = String::from_utf8_lossy(stderr);
    setup_err(format!("`{}` failed: {}", cmd_line(cmd), err.trim()))
}

fn check_input(p: &Path) -> Res<u64> {
    let example = "give the path of a crash file (e.g. fuzz/artifacts/<target>/crash-...)";
    let m = fs::metadata(p)
        .map_err(|e| setup_err(format!("cannot read {}: {e}; {example}", p.display())))?;
    if !m.is_file() {
        return Err(setup_err(format!("{} is not a file", p.display())));
    }
    Ok(m.len())
}

/// Runs `cmd` (started in its own process group) capturing its output; after `limit`, ends
/// the group (libFuzzer's minimisation steps are child processes) and returns what it printed.
fn run_with_deadline(cmd: &mut Command, limit: Duration) -> Res<(String, String)> {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .ctx(format_args!("cannot run `{}`", cmd_line(cmd)))?;
    let pid = child.id();
    let mut so = child.stdout.take().unwrap();
    let mut se = child.stderr.take().unwrap();
    let r1 = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = so.read_to_string(&mut s);
        s
    });
    let r2 = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = se.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + limit;
    loop {
        if child.try_wait().ok().flatten().is_some() {
            break;
        }
        if Instant::now() >= deadline {
            let keep = "keeping the smallest input so far";
            say!("tmin", "time limit reached; stopping ({keep})");
            let _ = Command::new("kill")
                .args(["-TERM", "--", &format!("-{pid}")])
                .status();
            let _ = child.wait();
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    Ok((r1.join().unwrap_or_default(), r2.join().unwrap_or_default()))
}

/// A headline without the op index, which minimisation is expected to change.
fn headline_kind(h: &str) -> String {
    h.split_whitespace()
        .filter(|w| !(w.starts_with('#') && w[1..].chars().all(|c| c.is_ascii_digit())))
        .collect::<Vec<_>>()
        .join(" ")
}

pub fn tmin(args: TminArgs) -> Res<u8> {
    let size0 = check_input(&args.crash)?;
    let t = guess_target(&args.crash, args.target.as_deref())?;
    setup::setup(setup::Opts { fuzz: true })?;
    let bin = build(args.sanitizer)?.join(&t);
    let before = headline(&args.crash, &t)?;
    let Some(before) = before else {
        let c = args.crash.display();
        let msg = format!("{c} does not diverge (target {t}) with the current build");
        return Err(setup_err(format!("{msg}; nothing to minimise")));
    };
    say!(
        "tmin",
        "{t}: {} ({size0} bytes): {before}",
        args.crash.display()
    );
    let out = {
        let mut s = args.crash.as_os_str().to_owned();
        s.push(".min");
        PathBuf::from(s)
    };
    let log = fuzz_dir()
        .join("target")
        .join("logs")
        .join(format!("{t}.tmin.log"));
    mkdir(log.parent().unwrap())?;
    let mut cmd = Command::new(&bin);
    cmd.arg("-minimize_crash=1")
        .arg(format!("-runs={}", args.runs))
        .arg(format!("-max_total_time={}", args.time))
        .process_group(0)
        .arg("-timeout=25")
        .arg(format!("-exact_artifact_path={}", out.display()))
        .arg(&args.crash)
        .stdin(Stdio::null());
    say!("tmin", "{} (log {})", cmd_line(&cmd), rel(&log));
    let t0 = Instant::now();
    let (so, se) = run_with_deadline(&mut cmd, Duration::from_secs(args.time.max(1)))?;
    let _ = fs::write(&log, format!("$ {}\n{so}{se}", cmd_line(&cmd)));
    let Ok(size1) = fs::metadata(&out).map(|m| m.len()) else {
        let (c, l) = (args.crash.display(), rel(&log));
        let msg = format!("libFuzzer wrote no minimised input (does {c} crash the fuzz binary?)");
        return Err(setup_err(format!("{msg}; see {l}")));
    };
    let after = headline(&out, &t)?;
    let (out_rel, found) = (rel(&out), after.clone().unwrap_or_else(|| "none".into()));
    let rows = [
        vec![rel(&args.crash), size0.to_string(), before.clone()],
        vec![out_rel.clone(), size1.to_string(), found],
    ];
    println!();
    say!("tmin", "summary");
    print!("{}", table(&["file", "bytes", "finding"], &rows));
    say!("tmin", "took {}", fmt_dur(t0.elapsed()));
    let Some(a) = after else {
        let msg = format!("{out_rel} no longer diverges; keep the original input");
        return Err(finding(msg));
    };
    if headline_kind(&a) != headline_kind(&before) {
        crate::warn!("tmin", "the minimised input diverges differently: {a}");
    }
    println!("tmin: {size0} -> {size1} bytes, {out_rel}");
    Ok(EXIT_OK)
}

/// A valid regression name: non-empty, letters, digits, '-' and '_'.
pub fn valid_name(n: &str) -> bool {
    let ok = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
    !n.is_empty() && n.len() <= 80 && n.chars().all(ok)
}

/// The header comment of a regression file (every line starts with `#`).
pub fn regression_header(
    headline: &str,
    target: &str,
    source: &str,
    sha1: &str,
    bytes: u64,
) -> String {
    format!(
        "# Regression: {headline}.\n\
         # Found by fuzz target `{target}`; input {source} ({bytes} bytes, sha1 {sha1}),\n\
         # decoded by `cargo xtask regress`. Before committing, say here which side was wrong\n\
         # and how it was fixed. Replay: cargo run --release -- show <this file> --trace\n"
    )
}

pub fn regress(args: RegressArgs) -> Res<u8> {
    let bytes = check_input(&args.crash)?;
    let t = guess_target(&args.crash, args.target.as_deref())?;
    let data = fs::read(&args.crash).ctx(format_args!("cannot read {}", args.crash.display()))?;
    let sha1 = sha1_hex(&data);
    let name = args
        .name
        .clone()
        .unwrap_or_else(|| format!("{t}-{}", &sha1[..8]));
    if !valid_name(&name) {
        let msg = format!("bad name `{name}`: use letters, digits, '-' and '_' (no .txt)");
        return Err(setup_err(msg));
    }
    let dir = root().join("tests").join("regressions");
    let path = dir.join(format!("{name}.txt"));
    if path.exists() && !args.force {
        let p = rel(&path);
        return Err(setup_err(format!(
            "{p} exists; pick another name or pass --force"
        )));
    }
    let mut cmd = cli("decode", &args.crash, &t);
    say!("regress", "{}", cmd_line(&cmd));
    let out = cmd
        .output()
        .ctx(format_args!("cannot run `{}`", cmd_line(&cmd)))?;
    if !out.status.success() {
        return Err(failed(&cmd, &out.stderr));
    }
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let head = headline(&args.crash, &t)?;
    let source = match args.crash.canonicalize() {
        Ok(p) => rel(&p),
        Err(_) => args.crash.display().to_string(),
    };
    let header = regression_header(
        head.as_deref()
            .unwrap_or("input that diverged when it was found"),
        &t,
        &source,
        &sha1,
        bytes,
    );
    mkdir(&dir)?;
    fs::write(&path, format!("{header}{text}"))
        .ctx(format_args!("cannot write {}", path.display()))?;
    // The written text must replay exactly like the raw input.
    let replay = headline(&path, &t)?;
    let (path_rel, none) = (rel(&path), || "none".to_string());
    let rows = [
        vec![source.clone(), t.clone(), head.clone().unwrap_or_else(none)],
        vec![
            path_rel.clone(),
            t.clone(),
            replay.clone().unwrap_or_else(none),
        ],
    ];
    println!();
    say!("regress", "summary");
    print!("{}", table(&["file", "target", "finding now"], &rows));
    if replay != head {
        let lost = "decode/print round trip lost something";
        return Err(finding(format!(
            "{path_rel} does not replay like {source} ({lost})"
        )));
    }
    let now = if head.is_some() {
        "diverges now"
    } else {
        "no finding now"
    };
    let expect = "tests/regressions.rs expects no finding once fixed";
    println!("regress: wrote {path_rel} ({now}; {expect})");
    Ok(if head.is_some() {
        EXIT_FINDING
    } else {
        EXIT_OK
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_line() {
        let out = "INFO: ...\nMERGE-OUTER: 3 files, 0 in the initial corpus, 0 processed earlier\n\
                   MERGE-OUTER: 12 new files with 345 new features added; 67 new coverage edges\n";
        assert_eq!(parse_merge(out), Some((12, 345, 67)));
        assert_eq!(
            parse_merge("MERGE-OUTER: 3 files, 0 in the initial corpus"),
            None
        );
    }

    #[test]
    fn target_from_path() {
        let p = Path::new("fuzz/artifacts/stage2/crash-0123");
        assert_eq!(guess_target(p, None).unwrap(), "stage2");
        let p = Path::new("/x/fuzz/corpus-work/host_stage2/abc");
        assert_eq!(guess_target(p, None).unwrap(), "host_stage2");
        assert!(guess_target(Path::new("/tmp/crash-1"), None).is_err());
        assert_eq!(
            guess_target(Path::new("/tmp/crash-1"), Some("hyp")).unwrap(),
            "hyp"
        );
        assert!(guess_target(Path::new("/tmp/crash-1"), Some("nope")).is_err());
    }

    #[test]
    fn headline_without_op_index() {
        assert_eq!(
            headline_kind("event traces differ at op #8 (s2_unmap)"),
            "event traces differ at op (s2_unmap)"
        );
        assert_eq!(
            headline_kind("event traces differ at op #1 (s2_unmap)"),
            headline_kind("event traces differ at op #8 (s2_unmap)")
        );
        assert_ne!(
            headline_kind("return values differ at op #1 (s2_map)"),
            headline_kind("event traces differ at op #1 (s2_map)")
        );
    }

    #[test]
    fn names_and_header() {
        assert!(valid_name("stage2-1a2b3c4d"));
        assert!(!valid_name("a/b"));
        assert!(!valid_name("x.txt"));
        assert!(!valid_name(""));
        let h = regression_header(
            "event traces differ at op 2 (s2_map)",
            "stage2",
            "f",
            "ab",
            9,
        );
        assert!(h.lines().all(|l| l.starts_with('#')));
        assert!(h.starts_with("# Regression: event traces differ at op 2 (s2_map).\n"));
    }
}
