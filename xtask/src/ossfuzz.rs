// SPDX-License-Identifier: GPL-2.0-only
//! `cargo xtask oss-fuzz`: run `oss-fuzz/build.sh` here, without Docker, under an emulated
//! OSS-Fuzz environment, then check what it put in `$OUT` the way OSS-Fuzz would use it.
//!
//! The emulation (see [`env_for`]) sets what base-builder-rust's `compile` sets: `SRC`, `OUT`,
//! `WORK`, `CC`/`CXX` (clang-22 here), `CFLAGS`/`CXXFLAGS` with the sanitizer and
//! `-fsanitize=fuzzer-no-link`, `RUSTFLAGS` (`--cfg fuzzing -Cdebug-assertions -Coverflow_checks`
//! plus the sanitizer or `-Cinstrument-coverage`), `SANITIZER`, `FUZZING_ENGINE`,
//! `LIB_FUZZING_ENGINE`, and `CUSTOM_LIBFUZZER_PATH` (the prebuilt libFuzzer, here clang-22's).
//! The repository is linked at `$SRC/kvm-pgtable-diff`. With `--sanitizer coverage` a `cargo`
//! wrapper on `PATH` does what base-builder-rust's does: `cargo fuzz build` becomes a debug
//! `cargo build --bins` whose binaries are copied to `.../x86_64-unknown-linux-gnu/release`.
//!
//! Checks, per target: the executable exists; `<t>_seed_corpus.zip` is a valid zip whose
//! entries are named by the sha1 of their content and hold exactly the distinct files of
//! `fuzz/corpus/<t>/`; `<t>.dict` parses as a libFuzzer dictionary (and libFuzzer loads every
//! entry); `<t>.options` is a `[libfuzzer]` section of `key = value` lines; the target runs
//! `--runs` inputs (the unzipped seeds first, then mutations) with those options and the
//! dictionary, without a finding. Coverage builds instead replay the seeds with
//! `LLVM_PROFILE_FILE` set and must produce a profile that `llvm-profdata-22` merges and in
//! which `llvm-cov-22` finds pgtable.c.
//!
//! Everything lives under `target/oss-fuzz/` (wiped per sanitizer at the start, kept for
//! inspection); the cargo target directory there is reused between runs.

use std::collections::BTreeSet;
use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::Instant;

use crate::fuzz::{TARGETS, fuzz_dir};
use crate::libfuzzer::Progress;
use crate::util::{
    Ctx, EXIT_FINDING, EXIT_OK, Res, capture, cmd_line, files, fmt_count, fmt_dur, mkdir, names,
    on_lines, rel, reset_dir, root, setup_err, sha1_hex, table, value_name,
};
use crate::{say, setup};

/// Directory name of the repository under `$SRC` (as in oss-fuzz/Dockerfile).
const PROJECT: &str = "kvm-pgtable-diff";
/// Flags OSS-Fuzz's `compile` puts in CFLAGS for every build.
const BASE_CFLAGS: &str = "-O1 -fno-omit-frame-pointer -gline-tables-only";
/// The libFuzzer archive that stands in for OSS-Fuzz's `$LIB_FUZZING_ENGINE_DEPRECATED`.
const LIBFUZZER_A: &str = "/usr/lib/llvm-22/lib/clang/22/lib/linux/libclang_rt.fuzzer-x86_64.a";

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum OssSanitizer {
    /// ASan build, as OSS-Fuzz fuzzes it (project.yaml's `sanitizers`).
    Address,
    /// Source-coverage build (what OSS-Fuzz's coverage reports and ClusterFuzzLite's
    /// `mode: coverage` use).
    Coverage,
}

#[derive(clap::Args, Debug)]
pub struct Args {
    /// SANITIZER to emulate.
    #[arg(long, value_enum, default_value_t = OssSanitizer::Address)]
    pub sanitizer: OssSanitizer,
    /// Inputs each target runs in the check (libFuzzer -runs; the seeds come first).
    #[arg(long, value_name = "N", default_value_t = 1000)]
    pub runs: u64,
}

struct Dirs {
    src: PathBuf,
    out: PathBuf,
    work: PathBuf,
    cargo_target: PathBuf,
    bin: PathBuf,
    log: PathBuf,
}

fn dirs(san: OssSanitizer) -> Dirs {
    let base = root().join("target").join("oss-fuzz");
    let s = value_name(san);
    Dirs {
        src: base.join("src"),
        out: base.join(format!("out-{s}")),
        work: base.join(format!("work-{s}")),
        cargo_target: base.join(format!("cargo-{s}")),
        bin: base.join("bin"),
        log: base.join(format!("build-{s}.log")),
    }
}

/// The environment OSS-Fuzz's `compile` gives build.sh (base-builder-rust conventions).
fn env_for(san: OssSanitizer, d: &Dirs) -> Vec<(String, String)> {
    let mut cflags = BASE_CFLAGS.to_string();
    let mut rustflags = String::from(
        "--cfg fuzzing -Cdebuginfo=1 -Cforce-frame-pointers -Cdebug-assertions -Coverflow_checks",
    );
    match san {
        OssSanitizer::Address => {
            cflags.push_str(
                " -fsanitize=address -fsanitize-address-use-after-scope -fsanitize=fuzzer-no-link",
            );
            rustflags.push_str(" -Zsanitizer=address");
        }
        OssSanitizer::Coverage => {
            cflags.push_str(
                " -fprofile-instr-generate -fcoverage-mapping -pthread -Wl,--no-as-needed \
                 -Wl,-ldl -Wl,-lm -Wno-unused-command-line-argument -fsanitize=fuzzer-no-link",
            );
            // OSS-Fuzz also adds `-C link-arg=-lc++` (its libFuzzer is built against libc++);
            // clang-22's libFuzzer here uses libstdc++, which libfuzzer-sys links by default.
            rustflags.push_str(" -Cinstrument-coverage");
        }
    }
    let path = format!(
        "{}:{}",
        d.bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let s = |k: &str, v: &str| (k.to_string(), v.to_string());
    vec![
        s("SRC", &d.src.display().to_string()),
        s("OUT", &d.out.display().to_string()),
        s("WORK", &d.work.display().to_string()),
        s("CC", "clang-22"),
        s("CXX", "clang++-22"),
        s("CFLAGS", &cflags),
        s("CXXFLAGS", &cflags),
        s("RUSTFLAGS", &rustflags),
        s("SANITIZER", &value_name(san)),
        s("FUZZING_ENGINE", "libfuzzer"),
        s("FUZZING_LANGUAGE", "rust"),
        s("ARCHITECTURE", "x86_64"),
        s("LIB_FUZZING_ENGINE", "-fsanitize=fuzzer"),
        s("CUSTOM_LIBFUZZER_PATH", LIBFUZZER_A),
        s("CUSTOM_LIBFUZZER_STD_CXX", "stdc++"),
        // base-builder-rust's default toolchain is nightly; here it is `cargo +nightly`.
        s("RUSTUP_TOOLCHAIN", "nightly"),
        s("CARGO_TARGET_DIR", &d.cargo_target.display().to_string()),
        s("PATH", &path),
    ]
}

/// A `cargo` that behaves like base-builder-rust's wrapper in coverage builds.
const CARGO_WRAPPER: &str = r#"#!/bin/bash -eu
# Written by `cargo xtask oss-fuzz`: emulates base-builder-rust's cargo wrapper.
# With SANITIZER=coverage, `cargo fuzz build ...` becomes a debug `cargo build --bins` in fuzz/
# (RUSTFLAGS carry -Cinstrument-coverage), copied to where `cargo fuzz build -O` puts binaries.
self_dir=$(cd "$(dirname "$0")" && pwd)
PATH=$(echo "$PATH" | tr ':' '\n' | grep -vxF "$self_dir" | paste -sd:)
export PATH
if [ "${SANITIZER:-}" = "coverage" ] && [ "${1:-}" = "fuzz" ]; then
    (
        cd fuzz || true
        export RUSTFLAGS="$RUSTFLAGS --remap-path-prefix fuzz_targets=$(pwd)/fuzz_targets"
        cargo build --bins
        cd "$(cargo metadata --format-version 1 --no-deps | jq -r '.target_directory')"
        mkdir -p x86_64-unknown-linux-gnu/release
        cp -r debug/* x86_64-unknown-linux-gnu/release/
    )
    exit 0
fi
exec cargo "$@"
"#;

fn prepare(san: OssSanitizer, d: &Dirs) -> Res {
    reset_dir(&d.out)?;
    reset_dir(&d.work)?;
    mkdir(&d.src)?;
    mkdir(&d.bin)?;
    let link = d.src.join(PROJECT);
    let _ = fs::remove_file(&link);
    std::os::unix::fs::symlink(root(), &link)
        .ctx(format_args!("cannot link {}", link.display()))?;
    let wrapper = d.bin.join("cargo");
    let _ = fs::remove_file(&wrapper);
    if san == OssSanitizer::Coverage {
        fs::write(&wrapper, CARGO_WRAPPER)
            .and_then(|_| fs::set_permissions(&wrapper, fs::Permissions::from_mode(0o755)))
            .ctx(format_args!("cannot write {}", wrapper.display()))?;
    }
    // What build.sh runs besides cargo (the zip is checked here with the zip crate).
    for tool in ["zip", "sha1sum", "jq"] {
        if !capture(Command::new("sh").args(["-c", &format!("command -v {tool}")])).0 {
            let fix = "run: apt-get install -y zip jq coreutils";
            return Err(setup_err(format!("`{tool}` is missing; {fix}")));
        }
    }
    if !Path::new(LIBFUZZER_A).is_file() {
        let fix = "run: cargo xtask setup (installs libclang-rt-22-dev)";
        return Err(setup_err(format!("{LIBFUZZER_A} is missing; {fix}")));
    }
    Ok(())
}

/// Runs build.sh, logging everything and echoing its own `[build.sh]` lines and cargo's verdict.
fn run_build(san: OssSanitizer, d: &Dirs) -> Res {
    let script = d.src.join(PROJECT).join("oss-fuzz").join("build.sh");
    let mut cmd = Command::new("bash");
    cmd.arg("-eu")
        .arg(&script)
        .current_dir(d.src.join(PROJECT))
        .envs(env_for(san, d))
        .env_remove("KPD_C_COVERAGE")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let (s, shown, log_rel) = (value_name(san), cmd_line(&cmd), rel(&d.log));
    say!("oss-fuzz", "SANITIZER={s} build: {shown} (log {log_rel})");
    let t = Instant::now();
    let mut child = cmd.spawn().ctx("cannot run bash")?;
    let log = fs::File::create(&d.log).ctx(format_args!("cannot create {}", d.log.display()))?;
    let log = Mutex::new(log);
    let shown = ["[build.sh]", "Finished", "error", "warning: C side"];
    for r in on_lines(&mut child, move |line| {
        let _ = writeln!(log.lock().unwrap(), "{line}");
        if shown.iter().any(|p| line.trim_start().starts_with(p)) {
            println!("  {line}");
        }
    }) {
        let _ = r.join();
    }
    let st = child.wait().ctx("build.sh")?;
    if !st.success() {
        let text = fs::read_to_string(&d.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        eprintln!("--- last lines of {log_rel} ---");
        for l in &lines[lines.len().saturating_sub(40)..] {
            eprintln!("{l}");
        }
        let msg = format!("oss-fuzz/build.sh failed ({st}); full log: {log_rel}");
        return Err(setup_err(msg));
    }
    say!("oss-fuzz", "build.sh done in {}", fmt_dur(t.elapsed()));
    Ok(())
}

/// Parses a libFuzzer dictionary: `[name=]"value"` lines with `\\`, `\"` and `\xHH` escapes;
/// `#` comments and blank lines. Returns the number of entries.
pub fn parse_dict(text: &str) -> Result<usize, String> {
    let mut n = 0;
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let err = |m: &str| format!("line {}: {m}: `{raw}`", i + 1);
        let q = line.find('"').ok_or_else(|| err("no opening quote"))?;
        let name = line[..q].trim_end();
        if !name.is_empty() {
            let name = name
                .strip_suffix('=')
                .ok_or_else(|| err("expected name=\"...\""))?;
            if name.is_empty()
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            {
                return Err(err("bad entry name"));
            }
        }
        let body = &line[q + 1..];
        let body = body
            .strip_suffix('"')
            .ok_or_else(|| err("no closing quote at the end of the line"))?;
        let b = body.as_bytes();
        let mut j = 0;
        let mut len = 0;
        while j < b.len() {
            match b[j] {
                b'\\' => match b.get(j + 1) {
                    Some(b'\\') | Some(b'"') => j += 2,
                    Some(b'x') => {
                        let hex = body.get(j + 2..j + 4).unwrap_or("");
                        if hex.len() != 2 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
                            return Err(err("bad \\x escape"));
                        }
                        j += 4;
                    }
                    _ => return Err(err("bad escape")),
                },
                b'"' => return Err(err("unescaped quote")),
                c if !(0x20..0x7f).contains(&c) => return Err(err("non-printable byte")),
                _ => j += 1,
            }
            len += 1;
        }
        if len == 0 {
            return Err(err("empty entry"));
        }
        n += 1;
    }
    if n == 0 {
        return Err("no entries".into());
    }
    Ok(n)
}

/// Parses an OSS-Fuzz `.options` file; returns the `[libfuzzer]` flags as `-key=value`.
pub fn parse_options(text: &str) -> Result<Vec<String>, String> {
    let mut section: Option<String> = None;
    let mut flags = vec![];
    let mut saw_libfuzzer = false;
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        let err = |m: &str| format!("line {}: {m}: `{raw}`", i + 1);
        if let Some(s) = line.strip_prefix('[') {
            let s = s
                .strip_suffix(']')
                .ok_or_else(|| err("bad section header"))?;
            if !["libfuzzer", "asan", "msan", "ubsan", "afl", "honggfuzz"].contains(&s) {
                return Err(err("unknown section"));
            }
            saw_libfuzzer |= s == "libfuzzer";
            section = Some(s.to_string());
            continue;
        }
        let (k, v) = line
            .split_once('=')
            .ok_or_else(|| err("expected key = value"))?;
        let (k, v) = (k.trim(), v.trim());
        if k.is_empty() || v.is_empty() || !k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            return Err(err("expected key = value"));
        }
        match section.as_deref() {
            None => return Err(err("key outside a section")),
            Some("libfuzzer") => flags.push(format!("-{k}={v}")),
            Some(_) => {}
        }
    }
    if !saw_libfuzzer {
        return Err("no [libfuzzer] section".into());
    }
    Ok(flags)
}

/// Checks the seed zip of `t` (entries named by the sha1 of their content, exactly the
/// distinct files of fuzz/corpus/<t>); unzips it into `dir`; returns the number of seeds.
fn check_zip(t: &str, d: &Dirs, dir: &Path) -> Result<usize, String> {
    let name = format!("{t}_seed_corpus.zip");
    let mut want = BTreeSet::new();
    for f in files(&fuzz_dir().join("corpus").join(t), false, None) {
        want.insert(sha1_hex(
            &fs::read(&f).map_err(|e| format!("{}: {e}", rel(&f)))?,
        ));
    }
    fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    let Ok(file) = fs::File::open(d.out.join(&name)) else {
        return match want.len() {
            0 => Ok(0),
            n => Err(format!("{name} missing but fuzz/corpus/{t} has {n} files")),
        };
    };
    let corrupt = |e: zip::result::ZipError| format!("{name} is corrupt: {e}");
    let mut zip = zip::ZipArchive::new(file).map_err(corrupt)?;
    let mut got = BTreeSet::new();
    for i in 0..zip.len() {
        let mut entry = zip.by_index(i).map_err(corrupt)?;
        let entry_name = entry.name().to_string();
        if entry_name.len() != 40
            || !entry_name
                .bytes()
                .all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'))
        {
            return Err(format!("zip entry `{entry_name}` is not named by a sha1"));
        }
        // Reading to the end also checks the entry's CRC-32.
        let mut data = vec![];
        entry
            .read_to_end(&mut data)
            .map_err(|e| format!("{name}: {entry_name}: {e}"))?;
        let sum = sha1_hex(&data);
        if sum != entry_name {
            return Err(format!(
                "zip entry {entry_name} holds content with sha1 {sum}"
            ));
        }
        fs::write(dir.join(&entry_name), &data).map_err(|e| e.to_string())?;
        got.insert(sum);
    }
    if got != want {
        let (g, w) = (got.len(), want.len());
        return Err(format!(
            "zip holds {g} seeds, fuzz/corpus/{t} has {w} distinct files"
        ));
    }
    Ok(got.len())
}

/// Runs the ASan target over its seeds, then mutations, for `runs` inputs.
fn run_address(
    t: &str,
    d: &Dirs,
    seeds: &Path,
    flags: &[String],
    runs: u64,
) -> Result<String, String> {
    let arts = d.work.join("artifacts").join(t);
    fs::create_dir_all(&arts).map_err(|e| e.to_string())?;
    let mut cmd = Command::new(d.out.join(t));
    cmd.args(flags)
        .arg(format!("-runs={runs}"))
        // A fixed seed makes the mutations after the seeds the same on every
        // run, so a CI result can be reproduced (and cannot flake).
        .arg("-seed=1")
        .arg(format!(
            "-dict={}",
            d.out.join(format!("{t}.dict")).display()
        ))
        .arg(format!("-artifact_prefix={}/", arts.display()))
        .arg("-print_final_stats=1")
        .arg(seeds);
    let t0 = Instant::now();
    let (ok, so, se) = capture(&mut cmd);
    let took = fmt_dur(t0.elapsed());
    let all = format!("{so}{se}");
    let logp = d.work.join(format!("{t}.run.log"));
    let _ = fs::write(&logp, format!("$ {}\n{all}", cmd_line(&cmd)));
    let log = rel(&logp);
    if !ok || all.contains("==ERROR:") || all.contains("panicked") {
        let mut lines = all.lines();
        let first = lines.find(|l| l.contains("ERROR") || l.contains("panicked"));
        return Err(format!("{} (log {log})", first.unwrap_or("nonzero exit")));
    }
    let mut prog = Progress::default();
    all.lines().for_each(|l| prog.feed(l));
    let dict = all.lines().find_map(|l| {
        let n = l.strip_prefix("Dictionary: ")?.split_whitespace().next()?;
        Some(format!(", dict {} loaded", n.parse::<usize>().ok()?))
    });
    let execs = prog.final_execs.unwrap_or(0);
    if execs < runs {
        return Err(format!("ran {execs} inputs, expected {runs} (log {log})"));
    }
    let (n, cov, dict) = (fmt_count(execs), prog.cov, dict.unwrap_or_default());
    Ok(format!("{n} runs in {took}, cov {cov}{dict}"))
}

/// Replays the seeds through the coverage build and checks the profile it writes.
fn run_coverage(t: &str, d: &Dirs, seeds: &Path) -> Result<String, String> {
    let prof = d.work.join("profiles");
    fs::create_dir_all(&prof).map_err(|e| e.to_string())?;
    let raw = prof.join(format!("{t}.profraw"));
    let data = prof.join(format!("{t}.profdata"));
    let mut cmd = Command::new(d.out.join(t));
    cmd.env("LLVM_PROFILE_FILE", &raw).arg("-runs=0").arg(seeds);
    let (ok, so, se) = capture(&mut cmd);
    if !ok {
        let all = format!("{so}{se}");
        let first = all
            .lines()
            .find(|l| l.contains("ERROR"))
            .unwrap_or("nonzero exit");
        return Err(first.to_string());
    }
    if fs::metadata(&raw).map(|m| m.len()).unwrap_or(0) == 0 {
        return Err(format!("no profile written to {}", rel(&raw)));
    }
    let (ok, _, se) = capture(
        Command::new("llvm-profdata-22")
            .args(["merge", "-sparse"])
            .arg(&raw)
            .arg("-o")
            .arg(&data),
    );
    if !ok {
        return Err(format!("llvm-profdata-22 merge: {}", se.trim()));
    }
    let (ok, so, se) = capture(
        Command::new("llvm-cov-22")
            .arg("report")
            .arg(d.out.join(t))
            .arg(format!("-instr-profile={}", data.display())),
    );
    if !ok {
        return Err(format!("llvm-cov-22 report: {}", se.trim()));
    }
    let line = so
        .lines()
        .find(|l| l.contains("hyp/pgtable.c"))
        .ok_or("llvm-cov-22 report has no pgtable.c (C side not instrumented)")?;
    // Columns: file, regions, missed, cover%, functions, missed, executed%, lines, missed, cover%.
    let cols: Vec<&str> = line.split_whitespace().collect();
    let lines_pct = cols.get(9).copied().unwrap_or("?");
    Ok(format!("profile ok, pgtable.c lines {lines_pct}"))
}

/// Checks one target in $OUT; returns its summary row (target, status, seeds, dict, options,
/// run or problem) and whether every check passed.
fn check_target(t: &str, d: &Dirs, args: &Args) -> (Vec<String>, bool) {
    let (mut seeds, mut dict, mut options) = ("-".to_string(), "-".to_string(), "-".to_string());
    let res = (|| -> Result<String, String> {
        let bin = d.out.join(t);
        let meta = fs::metadata(&bin).map_err(|_| format!("$OUT/{t} missing"))?;
        if meta.permissions().mode() & 0o111 == 0 {
            return Err(format!("$OUT/{t} is not executable"));
        }
        let dir = d.work.join("check").join(t);
        let n = check_zip(t, d, &dir)?;
        seeds = if n == 0 { "none".into() } else { n.to_string() };
        let read = |ext: &str| {
            fs::read_to_string(d.out.join(format!("{t}.{ext}")))
                .map_err(|_| format!("$OUT/{t}.{ext} missing"))
        };
        let n = parse_dict(&read("dict")?).map_err(|e| format!("{t}.dict {e}"))?;
        dict = format!("{n} entries");
        let flags = parse_options(&read("options")?).map_err(|e| format!("{t}.options {e}"))?;
        options = flags.join(" ");
        match args.sanitizer {
            OssSanitizer::Address => run_address(t, d, &dir, &flags, args.runs),
            OssSanitizer::Coverage => run_coverage(t, d, &dir),
        }
    })();
    match &res {
        Ok(run) => say!("oss-fuzz", "{t}: ok ({run})"),
        Err(p) => say!("oss-fuzz", "{t}: FAILED: {p}"),
    }
    let status = if res.is_ok() { "ok" } else { "FAILED" };
    let row = vec![t.into(), status.into(), seeds, dict, options];
    (
        row.into_iter()
            .chain([res.clone().unwrap_or_else(|e| e)])
            .collect(),
        res.is_ok(),
    )
}

pub fn run(args: Args) -> Res<u8> {
    setup::setup(setup::Opts { fuzz: true })?;
    let d = dirs(args.sanitizer);
    prepare(args.sanitizer, &d)?;
    run_build(args.sanitizer, &d)?;
    let n = TARGETS.len();
    say!("oss-fuzz", "checking $OUT ({}): {n} targets", rel(&d.out));
    let (rows, ok): (Vec<_>, Vec<_>) = TARGETS.iter().map(|t| check_target(t, &d, &args)).unzip();
    let ours = |f: &String| {
        TARGETS.iter().any(|t| {
            [
                t.to_string(),
                format!("{t}.dict"),
                format!("{t}.options"),
                format!("{t}_seed_corpus.zip"),
            ]
            .contains(f)
        })
    };
    let extra: Vec<String> = names(&d.out).into_iter().filter(|f| !ours(f)).collect();
    let failed = ok.iter().filter(|ok| !**ok).count();
    println!();
    say!(
        "oss-fuzz",
        "summary (SANITIZER={})",
        value_name(args.sanitizer)
    );
    let header = ["target", "status", "seeds", "dict", "options", "run"];
    print!("{}", table(&header, &rows));
    if !extra.is_empty() {
        say!("oss-fuzz", "other files in $OUT: {}", extra.join(", "));
    }
    if failed > 0 || n == 0 {
        println!("oss-fuzz: {failed} of {n} targets failed");
        return Ok(EXIT_FINDING);
    }
    println!("oss-fuzz: {n} targets ok");
    Ok(EXIT_OK)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dict_parser() {
        assert_eq!(
            parse_dict("# c\n\nkw=\"\\xFF\\x00\"\n\"ab\\\\\\\"\"\n"),
            Ok(2)
        );
        assert!(parse_dict("kw=\"\\xG0\"").is_err());
        assert!(parse_dict("kw=\"abc").is_err());
        assert!(parse_dict("kw=\"\"").is_err());
        assert!(parse_dict("k w=\"a\"").is_err());
        assert!(parse_dict("# only comments\n").is_err());
    }

    #[test]
    fn options_parser() {
        assert_eq!(
            parse_options("# c\n[libfuzzer]\nmax_len = 4096\ntimeout=25\n[asan]\nx = 1\n"),
            Ok(vec!["-max_len=4096".to_string(), "-timeout=25".to_string()])
        );
        assert!(parse_options("max_len = 1\n").is_err());
        assert!(parse_options("[asan]\nx = 1\n").is_err());
        assert!(parse_options("[libfuzzer]\nmax_len\n").is_err());
        assert!(parse_options("[libfuzzer\n").is_err());
    }

    #[test]
    fn committed_dict_and_options_parse() {
        let dir = root().join("oss-fuzz");
        let dict = fs::read_to_string(dir.join("kvm-pgtable-diff.dict")).unwrap();
        // 18 op tags, 2 mode bytes, 10 u64 literals, 4 u32 literals.
        assert_eq!(parse_dict(&dict), Ok(34));
        let opts = fs::read_to_string(dir.join("kvm-pgtable-diff.options")).unwrap();
        assert_eq!(
            parse_options(&opts),
            Ok(vec![
                "-max_len=4096".to_string(),
                "-len_control=0".to_string(),
                "-timeout=25".to_string()
            ])
        );
    }
}
