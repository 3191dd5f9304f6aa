//! Small helpers shared by all subcommands: errors with exit codes, paths, processes.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::time::Duration;

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
        .map_err(|e| setup_err(format!("cannot run `{}`: {e}", cmd_line(cmd))))
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

/// True when running as root (uid 0).
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(1).map(|u| u == "0"))
        })
        .unwrap_or(false)
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
    let n = header.len();
    let mut w: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate().take(n) {
            w[i] = w[i].max(c.chars().count());
        }
    }
    let mut out = String::new();
    let line = |cells: Vec<&str>, out: &mut String| {
        let mut l = String::from("  ");
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                l.push_str(c);
            } else {
                let _ = write!(l, "{c:<width$}  ", width = w[i]);
            }
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    line(header.to_vec(), &mut out);
    line(
        w.iter()
            .map(|&x| "-".repeat(x))
            .collect::<Vec<_>>()
            .iter()
            .map(|s| s.as_str())
            .collect(),
        &mut out,
    );
    for r in rows {
        line(r.iter().map(|s| s.as_str()).collect(), &mut out);
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
}
