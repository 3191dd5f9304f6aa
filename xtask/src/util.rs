//! Small helpers shared by all subcommands: errors with exit codes, paths, files, hashes,
//! processes, tables.

use std::fmt::{Display, Write as _};
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use sha1::Sha1;
use sha2::{Digest, Sha256};

/// Exit code: success / no finding.
pub const EXIT_OK: u8 = 0;
/// Exit code: a finding or a test failure.
pub const EXIT_FINDING: u8 = 1;
/// Exit code: usage or setup error.
pub const EXIT_SETUP: u8 = 2;

/// A failure that ends the command: one short line saying what to do, plus an exit code.
#[derive(Debug)]
pub struct Fail {
    pub code: u8,
    pub msg: String,
}

pub type Res<T = ()> = Result<T, Fail>;

/// A usage or setup error (exit code 2).
pub fn setup_err(msg: impl Into<String>) -> Fail {
    Fail {
        code: EXIT_SETUP,
        msg: msg.into(),
    }
}

/// A finding or test failure (exit code 1).
pub fn finding(msg: impl Into<String>) -> Fail {
    Fail {
        code: EXIT_FINDING,
        msg: msg.into(),
    }
}

/// Turns any error into a setup error `<what>: <error>`.
pub trait Ctx<T> {
    fn ctx(self, what: impl Display) -> Res<T>;
}

impl<T, E: Display> Ctx<T> for Result<T, E> {
    fn ctx(self, what: impl Display) -> Res<T> {
        self.map_err(|e| setup_err(format!("{what}: {e}")))
    }
}

/// Prints a progress line: `[tag] message`.
#[macro_export]
macro_rules! say {
    ($tag:expr, $($arg:tt)*) => {{
        println!("[{}] {}", $tag, format!($($arg)*));
    }};
}

/// Prints a warning line to stderr: `[tag] warning: message`.
#[macro_export]
macro_rules! warn {
    ($tag:expr, $($arg:tt)*) => {{
        eprintln!("[{}] warning: {}", $tag, format!($($arg)*));
    }};
}

/// The workspace root (parent of the xtask crate).
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives inside the workspace")
        .to_path_buf()
}

/// `mkdir -p`, as a setup error naming the directory.
pub fn mkdir(p: &Path) -> Res {
    std::fs::create_dir_all(p).ctx(format_args!("cannot create {}", p.display()))
}

/// `rm -rf p && mkdir -p p`.
pub fn reset_dir(p: &Path) -> Res {
    if p.exists() {
        std::fs::remove_dir_all(p).ctx(format_args!("cannot remove {}", p.display()))?;
    }
    mkdir(p)
}

/// Files (not directories) under `dir`, sorted by name, directory by directory: only its own
/// when `!deep`; with `ext`, only names ending in `.ext`. Dot files are left out.
pub fn files(dir: &Path, deep: bool, ext: Option<&str>) -> Vec<PathBuf> {
    walkdir::WalkDir::new(dir)
        .min_depth(1)
        .max_depth(if deep { usize::MAX } else { 1 })
        .sort_by_file_name()
        .into_iter()
        .flatten()
        .map(|e| e.into_path())
        .filter(|p| p.is_file())
        .filter(|p| {
            !p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with('.'))
        })
        .filter(|p| ext.is_none_or(|x| p.extension().is_some_and(|e| e == x)))
        .collect()
}

/// File names in `dir` (sorted; empty when it does not exist).
pub fn names(dir: &Path) -> std::collections::BTreeSet<String> {
    files(dir, false, None)
        .iter()
        .filter_map(|p| Some(p.file_name()?.to_str()?.to_string()))
        .collect()
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// SHA-1 as 40 lower-case hex digits: the name libFuzzer (and OSS-Fuzz's seed zips) give an
/// input.
pub fn sha1_hex(data: &[u8]) -> String {
    hex(&Sha1::digest(data))
}

/// SHA-256 of a file's content, as 64 lower-case hex digits.
pub fn sha256_file(p: &Path) -> std::io::Result<String> {
    let mut h = Sha256::new();
    std::io::copy(&mut std::fs::File::open(p)?, &mut h)?;
    Ok(hex(&h.finalize()))
}

/// Renders a command line for messages, e.g. `cargo +nightly fuzz build -O`.
pub fn cmd_line(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        let a = a.to_string_lossy();
        if a.is_empty() || a.contains(|c: char| c.is_whitespace() || c == '\'' || c == '"') {
            let _ = write!(s, " '{}'", a.replace('\'', "'\\''"));
        } else {
            let _ = write!(s, " {a}");
        }
    }
    s
}

/// Runs `cmd` with inherited stdio; returns its exit status. A spawn failure is a setup error.
pub fn run(cmd: &mut Command) -> Res<ExitStatus> {
    cmd.status()
        .ctx(format_args!("cannot run `{}`", cmd_line(cmd)))
}

/// Runs `cmd` with inherited stdio and fails with a setup error unless it succeeds.
pub fn run_ok(cmd: &mut Command) -> Res {
    let st = run(cmd)?;
    if st.success() {
        Ok(())
    } else {
        Err(setup_err(format!("`{}` failed ({st})", cmd_line(cmd))))
    }
}

/// Runs `cmd` quietly and returns (success, stdout, stderr); a spawn failure counts as failure.
pub fn capture(cmd: &mut Command) -> (bool, String, String) {
    match cmd.output() {
        Ok(o) => (
            o.status.success(),
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        ),
        Err(e) => (false, String::new(), e.to_string()),
    }
}

/// Calls `each` with every line the child writes to its piped stdout and stderr (one thread
/// per stream); join the handles before reading what `each` collected.
pub fn on_lines(
    child: &mut Child,
    each: impl Fn(String) + Send + Sync + 'static,
) -> Vec<JoinHandle<()>> {
    let each = Arc::new(each);
    let streams: [Option<Box<dyn Read + Send>>; 2] = [
        child.stdout.take().map(|s| Box::new(s) as _),
        child.stderr.take().map(|s| Box::new(s) as _),
    ];
    streams
        .into_iter()
        .flatten()
        .map(|s| {
            let each = each.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(s).split(b'\n').map_while(Result::ok) {
                    each(
                        String::from_utf8_lossy(&line)
                            .trim_end_matches('\r')
                            .to_string(),
                    );
                }
            })
        })
        .collect()
}

/// The host triple (`rustc [+nightly] -vV`), which is where `--target <host>` builds land.
pub fn host_triple(nightly: bool) -> Res<String> {
    let tc: &[&str] = if nightly { &["+nightly"] } else { &[] };
    let (ok, out, _) = capture(Command::new("rustc").args(tc).arg("-vV"));
    out.lines()
        .find_map(|l| l.strip_prefix("host: ").map(|s| s.trim().to_string()))
        .filter(|_| ok)
        .ok_or_else(|| match nightly {
            true => setup_err("cannot run `rustc +nightly -vV`; run: cargo xtask setup --fuzz"),
            false => setup_err("cannot run `rustc -vV`; install Rust with rustup"),
        })
}

/// The command-line spelling of a clap value, e.g. `address` for `--sanitizer address`.
pub fn value_name(v: impl clap::ValueEnum) -> String {
    v.to_possible_value()
        .map_or_else(String::new, |p| p.get_name().to_string())
}

/// True when running as root (uid 0): /proc/self belongs to the process's effective user.
pub fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// Formats a duration compactly: `850ms`, `12.3s`, `4m05s`.
pub fn fmt_dur(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s < 1.0 {
        format!("{}ms", d.as_millis())
    } else if s < 60.0 {
        format!("{s:.1}s")
    } else {
        let t = d.as_secs();
        format!("{}m{:02}s", t / 60, t % 60)
    }
}

/// Formats a count compactly: `950`, `12.3k`, `4.56M`.
pub fn fmt_count(n: u64) -> String {
    match n {
        0..=9_999 => n.to_string(),
        10_000..=999_999 => format!("{:.1}k", n as f64 / 1e3),
        1_000_000..=999_999_999 => format!("{:.2}M", n as f64 / 1e6),
        _ => format!("{:.2}G", n as f64 / 1e9),
    }
}

/// Path relative to the workspace root when possible (for messages).
pub fn rel(p: &Path) -> String {
    p.strip_prefix(root()).unwrap_or(p).display().to_string()
}

/// Renders rows as a left-aligned text table with a header and two-space gaps.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut w: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate().take(w.len()) {
            w[i] = w[i].max(c.chars().count());
        }
    }
    let rule: Vec<String> = w.iter().map(|&x| "-".repeat(x)).collect();
    let head: Vec<String> = header.iter().map(|h| h.to_string()).collect();
    let mut out = String::new();
    for cells in [&head, &rule].into_iter().chain(rows) {
        let mut l = String::from(" ");
        for (i, c) in cells.iter().enumerate() {
            let width = if i + 1 == cells.len() { 0 } else { w[i] };
            let _ = write!(l, " {c:<width$} ");
        }
        out.push_str(l.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_durations() {
        assert_eq!(fmt_count(950), "950");
        assert_eq!(fmt_count(12_345), "12.3k");
        assert_eq!(fmt_count(4_560_000), "4.56M");
        assert_eq!(fmt_dur(Duration::from_millis(850)), "850ms");
        assert_eq!(fmt_dur(Duration::from_secs(245)), "4m05s");
    }

    #[test]
    fn table_aligns() {
        let t = table(&["a", "bb"], &[vec!["xyz".into(), "1".into()]]);
        assert_eq!(t, "  a    bb\n  ---  --\n  xyz  1\n");
    }

    #[test]
    fn hashes_match_the_standard_test_vectors() {
        // FIPS 180-2 appendix A / B.
        assert_eq!(sha1_hex(b""), "da39a3ee5e6b4b0d3255bfef95601890afd80709");
        assert_eq!(sha1_hex(b"abc"), "a9993e364706816aba3e25717850c26c9cd0d89d");
        assert_eq!(
            sha1_hex(&vec![b'a'; 1_000_000]),
            "34aa973cd4c4daa4f61eeb2bdbad27316534016f"
        );
        let p = std::env::temp_dir().join(format!("xtask-sha256-{}", std::process::id()));
        std::fs::write(&p, b"abc").unwrap();
        let h = sha256_file(&p);
        let _ = std::fs::remove_file(&p);
        assert_eq!(
            h.unwrap(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn file_walks_are_sorted_and_filtered() {
        let d = std::env::temp_dir().join(format!("xtask-files-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        for f in ["b.txt", "a/z.txt", "a/y.bin", ".hidden.txt", "c/d/e.txt"] {
            std::fs::create_dir_all(d.join(f).parent().unwrap()).unwrap();
            std::fs::write(d.join(f), f).unwrap();
        }
        let rel = |v: Vec<PathBuf>| -> Vec<String> {
            v.iter()
                .map(|p| p.strip_prefix(&d).unwrap().display().to_string())
                .collect()
        };
        let deep = rel(files(&d, true, Some("txt")));
        let flat = rel(files(&d, false, None));
        let _ = std::fs::remove_dir_all(&d);
        assert_eq!(deep, ["a/z.txt", "b.txt", "c/d/e.txt"]);
        assert_eq!(flat, ["b.txt"]);
    }
}
