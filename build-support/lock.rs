// SPDX-License-Identifier: GPL-2.0-only
//! `kernel.lock`: the kernel lines the project pins. Shared, std only, by build.rs and xtask
//! (`#[path = ...] mod lock;`).
//!
//! One section per kernel line, in file order:
//!
//! ```text
//! # comment
//! [line 6.12]
//! package linux-source-6.12
//! version 6.12.117-1~deb12u1
//! suite bookworm-security
//! sha256 <64 hex digits> arch/arm64/kvm/hyp/pgtable.c
//! ```
//!
//! `package`, `version` and `suite` (the Debian suite that carries that version) once each,
//! then one `sha256` line per file the C side reads. A line's files live in
//! `.cache/linux-source-<name>/` ([`Line::cache_dir`]).
// build.rs uses only the parser; xtask uses the rest.
#![allow(dead_code)]

use std::path::PathBuf;

/// The line build.rs compiles (the C side drives the 6.12 kvm_pgtable API).
pub const BUILT_LINE: &str = "6.12";

/// A parsed `kernel.lock`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Lock {
    /// Comment lines before the first section, kept by [`Lock::render`].
    pub header: Vec<String>,
    pub lines: Vec<Line>,
}

/// One `[line NAME]` section.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Line {
    pub name: String,
    /// Comment lines inside the section (rendered right after its `[line NAME]`).
    pub comments: Vec<String>,
    pub package: String,
    pub version: String,
    pub suite: String,
    /// (sha256 as lower-case hex, path inside the kernel tree), in file order.
    pub files: Vec<(String, String)>,
}

impl Line {
    /// Where `cargo xtask kernel` puts this line's files, relative to the repository root.
    pub fn cache_dir(&self) -> PathBuf {
        PathBuf::from(format!(".cache/linux-source-{}", self.name))
    }

    /// The pinned sha256 of `path`.
    pub fn sha256(&self, path: &str) -> Option<&str> {
        self.files
            .iter()
            .find(|(_, p)| p == path)
            .map(|(h, _)| h.as_str())
    }
}

fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '+' | '~' | ':'))
}

impl Lock {
    /// Parses the text of a `kernel.lock`; errors are `kernel.lock:N: what is wrong`.
    pub fn parse(text: &str) -> Result<Lock, String> {
        let mut lock = Lock::default();
        // The line number of each section's header, for "missing key" errors.
        let mut starts = vec![];
        for (i, raw) in text.lines().enumerate() {
            let n = i + 1;
            let err = |m: String| Err(format!("kernel.lock:{n}: {m}"));
            let t = raw.trim();
            if t.is_empty() {
                continue;
            }
            if t.starts_with('#') {
                match lock.lines.last_mut() {
                    Some(l) => l.comments.push(t.to_string()),
                    None => lock.header.push(t.to_string()),
                }
                continue;
            }
            if let Some(h) = t.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
                let mut w = h.split_whitespace();
                let name = match (w.next(), w.next(), w.next()) {
                    (Some("line"), Some(name), None) if is_name(name) => name,
                    _ => return err(format!("expected `[line NAME]`, not `{t}`")),
                };
                if lock.lines.iter().any(|l| l.name == name) {
                    return err(format!("[line {name}] appears twice"));
                }
                lock.lines.push(Line {
                    name: name.to_string(),
                    ..Line::default()
                });
                starts.push(n);
                continue;
            }
            let w: Vec<&str> = t.split_whitespace().collect();
            let Some(line) = lock.lines.last_mut() else {
                return err(format!("`{}` before the first [line NAME]", w[0]));
            };
            match w[..] {
                [k @ ("package" | "version" | "suite"), v] if is_name(v) => {
                    let slot = match k {
                        "package" => &mut line.package,
                        "version" => &mut line.version,
                        _ => &mut line.suite,
                    };
                    if !slot.is_empty() {
                        return err(format!("`{k}` given twice in [line {}]", line.name));
                    }
                    *slot = v.to_string();
                }
                ["sha256", h, p] if h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()) => {
                    if line.sha256(p).is_some() {
                        return err(format!("{p} listed twice in [line {}]", line.name));
                    }
                    line.files.push((h.to_ascii_lowercase(), p.to_string()));
                }
                _ => {
                    return err(format!(
                        "cannot parse `{t}` (expected `package|version|suite VALUE` or \
                         `sha256 <64 hex digits> <path>`)"
                    ));
                }
            }
        }
        if lock.lines.is_empty() {
            return Err("kernel.lock: no [line NAME] section".into());
        }
        for (l, n) in lock.lines.iter().zip(starts) {
            for (key, v) in [
                ("package", &l.package),
                ("version", &l.version),
                ("suite", &l.suite),
            ] {
                if v.is_empty() {
                    return Err(format!("kernel.lock:{n}: [line {}] has no `{key}`", l.name));
                }
            }
            if l.files.is_empty() {
                return Err(format!(
                    "kernel.lock:{n}: [line {}] has no `sha256`",
                    l.name
                ));
            }
        }
        Ok(lock)
    }

    /// Reads and parses `path`.
    pub fn read(path: &std::path::Path) -> Result<Lock, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        Lock::parse(&text)
    }

    pub fn line(&self, name: &str) -> Option<&Line> {
        self.lines.iter().find(|l| l.name == name)
    }

    /// The text of the lock: header comments, then the sections separated by blank lines.
    pub fn render(&self) -> String {
        let mut s: String = self.header.iter().map(|c| format!("{c}\n")).collect();
        for l in &self.lines {
            s += &format!("\n[line {}]\n", l.name);
            l.comments.iter().for_each(|c| s += &format!("{c}\n"));
            s += &format!(
                "package {}\nversion {}\nsuite {}\n",
                l.package, l.version, l.suite
            );
            l.files
                .iter()
                .for_each(|(h, p)| s += &format!("sha256 {h} {p}\n"));
        }
        s.trim_start_matches('\n').to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const H1: &str = "1111111111111111111111111111111111111111111111111111111111111111";
    const H2: &str = "abcdefABCDEF0123456789abcdef0123456789abcdef0123456789abcdef0123";

    fn two_lines() -> String {
        format!(
            "# top\n[line 6.12]\npackage linux-source-6.12\nversion 6.12.117-1~deb12u1\n\
             suite bookworm-security\nsha256 {H1} arch/a.c\nsha256 {H2} arch/b.h\n\n\
             [line 7.3]\n# why\npackage linux-source-7.3\nversion 7.3.4-1~bpo13+1\n\
             suite trixie-backports\nsha256 {H1} arch/a.c\n"
        )
    }

    #[test]
    fn parses_lines_in_file_order() {
        let l = Lock::parse(&two_lines()).unwrap();
        assert_eq!(l.header, ["# top"]);
        let names: Vec<&str> = l.lines.iter().map(|l| l.name.as_str()).collect();
        assert_eq!(names, ["6.12", "7.3"]);
        let a = &l.lines[0];
        assert_eq!(
            (a.package.as_str(), a.version.as_str(), a.suite.as_str()),
            (
                "linux-source-6.12",
                "6.12.117-1~deb12u1",
                "bookworm-security"
            )
        );
        // Hashes are stored lower-case.
        assert_eq!(a.sha256("arch/b.h"), Some(H2.to_ascii_lowercase().as_str()));
        let b = l.line("7.3").unwrap();
        assert_eq!(b.version, "7.3.4-1~bpo13+1");
        assert_eq!(b.comments, ["# why"]);
        assert_eq!(b.cache_dir(), PathBuf::from(".cache/linux-source-7.3"));
        assert_eq!(a.cache_dir(), PathBuf::from(".cache/linux-source-6.12"));
        assert!(l.line("6.1").is_none());
    }

    #[test]
    fn render_parses_back_to_the_same_lock() {
        let l = Lock::parse(&two_lines()).unwrap();
        let text = l.render();
        assert!(text.starts_with("# top\n\n[line 6.12]\npackage linux-source-6.12\n"));
        assert!(text.contains("\n\n[line 7.3]\n# why\npackage linux-source-7.3\n"));
        assert_eq!(Lock::parse(&text).unwrap(), l);
    }

    #[test]
    fn malformed_text_is_rejected_with_its_line_number() {
        let base = two_lines();
        let cases: [(String, &str); 9] = [
            (
                "package x\n".into(),
                "kernel.lock:1: `package` before the first",
            ),
            (
                base.replace("[line 7.3]", "[line]"),
                "kernel.lock:9: expected `[line NAME]`",
            ),
            (base.replace("[line 7.3]", "[kernel 7.3]"), "kernel.lock:9:"),
            (
                base.replace("[line 7.3]", "[line 6.12]"),
                "kernel.lock:9: [line 6.12] appears twice",
            ),
            (base.replace(H2, "zz"), "kernel.lock:7: cannot parse"),
            (
                base.replace("suite trixie-backports", "suite a b"),
                "kernel.lock:13: cannot parse",
            ),
            (
                format!("{base}version 2\n"),
                "kernel.lock:15: `version` given twice",
            ),
            (
                base.replace("suite bookworm-security\n", ""),
                "kernel.lock:2: [line 6.12] has no `suite`",
            ),
            (
                format!("{base}sha256 {H2} arch/a.c\n"),
                "kernel.lock:15: arch/a.c listed twice",
            ),
        ];
        for (text, want) in cases {
            let e = Lock::parse(&text).unwrap_err();
            assert!(e.starts_with(want), "{e:?} should start with {want:?}");
        }
        let no_hash = "[line 1]\npackage p\nversion 1\nsuite s\n";
        assert_eq!(
            Lock::parse(no_hash).unwrap_err(),
            "kernel.lock:1: [line 1] has no `sha256`"
        );
        assert!(Lock::parse("# only a comment\n").is_err());
    }
}
