// SPDX-License-Identifier: GPL-2.0-only
//! `cargo xtask mutants`: plant known bugs, one at a time, and check the fuzzer finds each.
//!
//! Specs live in `mutants/` (see mutants/README.md):
//! - `c.spec`: rules over identifiers/operators, applied to a COPY of the kernel files of the
//!   rule's kernel line (`line = 6.12|7.3`; `fuzz/target/mutants/ksrc-<line>/`), which is then
//!   built with `LINUX_SRC=<copy>`: the copy replaces that line, the other stays pinned;
//! - `rust.spec`: the same kind of rules over rust-pgtable's source, applied to a COPY of the
//!   workspace (`fuzz/target/mutants/rsrc/`), which is then built in place of the workspace;
//! - `common.spec`: common-mode bugs, one C rule and one Rust rule planting the same bug on
//!   both sides (see "Common-mode mutants" below).
//!
//! Per mutant: build the fuzz targets (and, when there are text scenarios, the CLI), replay
//! the committed corpus and scenarios, then fuzz every target (expected target first) until
//! the first finding or the budget is spent. C and Rust mutants use separate target
//! directories so that switching kinds does not rebuild everything.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::fuzz::TARGETS;
use crate::libfuzzer::is_finding_artifact;
use crate::util::{
    EXIT_FINDING, EXIT_OK, EXIT_SETUP, Res, cmd_line, files, host_triple, rel, root, setup_err,
    table, value_name,
};
use crate::{kernel, say, setup, warn};

const TAG: &str = "mutants";
/// Default file of a C rule, inside the kernel tree.
const PGTABLE_C: &str = "arch/arm64/kvm/hyp/pgtable.c";
/// The kernel line a C rule edits when it names none: the one every rule edited before there
/// were two lines.
const DEFAULT_LINE: &str = crate::lock::BUILT_LINE;

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

#[derive(clap::Args, Debug)]
#[command(
    after_help = "Each mutant is built (`cargo +nightly fuzz build -O`), the committed corpus \
(fuzz/corpus/<target>/) and text scenarios (tests/regressions/*.txt, fuzz/scenarios/**/*.txt) are \
replayed against it, then every target is fuzzed (expected target first) until the first finding \
or the budget is spent. The last line is `mutants: detected D/N, median Ms, max Xs`.\n\
Work files: fuzz/target/mutants/ (mutated kernel copy, mutated workspace copy, builds, logs).\n\
Environment: LINUX_SRC=<kernel tree> mutates a copy of that tree instead of the locked cache, \
for the C rules of its API generation's line.\n\
Exit codes: 0 every mutant detected, 1 some survived, 2 usage/setup error (including a rule \
that no longer matches the kernel or rust-pgtable source, or a mutant that does not build)."
)]
pub struct Args {
    /// Run only this mutant (repeatable). Default: all.
    #[arg(long = "only", value_name = "NAME")]
    pub only: Vec<String>,
    /// List the mutants (name, side, expected target, description) and exit.
    #[arg(long)]
    pub list: bool,
    /// Fuzzing budget per mutant in seconds (wall clock, shared by all targets).
    #[arg(long, value_name = "SECONDS", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..))]
    pub budget: u64,
    /// Targets fuzzed at the same time.
    #[arg(long, value_name = "N", default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..))]
    pub jobs: u32,
    /// Sanitizer of the mutant builds (`none` is fastest; the planted bugs are logic bugs).
    #[arg(long, value_enum, default_value_t = crate::fuzz::Sanitizer::None)]
    pub sanitizer: crate::fuzz::Sanitizer,
    /// Print what each selected mutant changes in the source (to the terminal) and exit.
    #[arg(long)]
    pub diff: bool,
    /// Skip the corpus and scenario replay and fuzz from an empty corpus: measures what the
    /// generators find on their own (implies --no-baseline).
    #[arg(long)]
    pub fuzz_only: bool,
    /// Skip the unmutated baseline build that checks the corpus and scenarios pass first.
    #[arg(long)]
    pub no_baseline: bool,
    /// Run only the mutants of this kind (repeatable): c, rust, common.
    #[arg(long, value_enum)]
    pub kind: Vec<KindName>,
    /// Leave the architecture oracle out (`KPD_NO_ARCH=1` for every fuzzer and CLI run): what
    /// the differential and contract oracles find alone.
    #[arg(long)]
    pub no_arch: bool,
}

// ---------------------------------------------------------------------------------------------
// Specs

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    DeleteStatement,
    Replace(String),
}

/// A rule that plants one bug. C rules edit a kernel file; Rust rules (a `file` ending in
/// `.rs`) edit a rust-pgtable source file, with a Rust-aware lexer and function locator.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CRule {
    pub file: String,
    pub function: String,
    pub find: String,
    pub count: usize,
    pub nth: usize,
    pub action: Action,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Kind {
    C(CRule),
    /// A rule over a rust-pgtable file (`file` is relative to the workspace root).
    Rust(CRule),
    /// The same bug planted on both sides (`mutants/common.spec`): a C rule and a Rust rule,
    /// and the id of the architecture rule it breaks.
    Common {
        c: CRule,
        rust: CRule,
        rule: String,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mutant {
    pub name: String,
    pub desc: String,
    pub expect: String,
    pub kind: Kind,
    /// The kernel line whose pinned tree a C rule edits (`line = 6.12|7.3`, default
    /// [`DEFAULT_LINE`]); `None` for a Rust rule (rust-pgtable models every line).
    pub line: Option<String>,
}

impl Mutant {
    fn side(&self) -> &'static str {
        match self.kind {
            Kind::C(_) => "C",
            Kind::Rust(_) => "Rust",
            Kind::Common { .. } => "C+Rust",
        }
    }

    /// The rule it applies to the kernel tree, if any.
    fn c_rule(&self) -> Option<&CRule> {
        match &self.kind {
            Kind::C(r) | Kind::Common { c: r, .. } => Some(r),
            Kind::Rust(_) => None,
        }
    }

    /// The rule it applies to rust-pgtable, if any.
    fn rust_rule(&self) -> Option<&CRule> {
        match &self.kind {
            Kind::Rust(r) | Kind::Common { rust: r, .. } => Some(r),
            Kind::C(_) => None,
        }
    }

    fn kind_name(&self) -> KindName {
        match self.kind {
            Kind::C(_) => KindName::C,
            Kind::Rust(_) => KindName::Rust,
            Kind::Common { .. } => KindName::Common,
        }
    }
}

/// The kinds of mutant, for `--kind`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum KindName {
    C,
    Rust,
    Common,
}

/// A `[name]` section: its name and `key = value` pairs.
type Section = (String, Vec<(String, String)>);

/// Parses `[name]` sections of `key = value` lines (`#` comments, blank lines ignored).
fn sections(text: &str, origin: &str) -> Result<Vec<Section>, String> {
    let mut out: Vec<Section> = vec![];
    for (i, line) in text.lines().enumerate() {
        let t = line.trim();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        if let Some(name) = t.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
            out.push((name.trim().to_string(), vec![]));
            continue;
        }
        let Some((k, v)) = t.split_once('=') else {
            return Err(format!("{origin}:{}: expected `key = value`", i + 1));
        };
        let Some(sec) = out.last_mut() else {
            return Err(format!(
                "{origin}:{}: `{}` before the first [name]",
                i + 1,
                k.trim()
            ));
        };
        sec.1.push((k.trim().to_string(), v.trim().to_string()));
    }
    Ok(out)
}

/// Parses a spec file; `c` selects the C rule keys, else the Rust ones.
pub fn parse_spec(text: &str, origin: &str, c: bool) -> Result<Vec<Mutant>, String> {
    let mut out = vec![];
    for (name, kv) in sections(text, origin)? {
        let err = |m: String| format!("{origin}: [{name}]: {m}");
        let allowed: &[&str] = if c {
            &[
                "desc", "expect", "file", "function", "find", "count", "nth", "action", "with",
                "line",
            ]
        } else {
            &[
                "desc", "expect", "file", "function", "find", "count", "nth", "action", "with",
            ]
        };
        let mut seen = BTreeSet::new();
        for (k, _) in &kv {
            if !allowed.contains(&k.as_str()) {
                return Err(err(format!(
                    "unknown key `{k}` (allowed: {})",
                    allowed.join(", ")
                )));
            }
            if !seen.insert(k.clone()) {
                return Err(err(format!("`{k}` given twice")));
            }
        }
        let get = |k: &str| kv.iter().find(|(x, _)| x == k).map(|(_, v)| v.clone());
        let need = |k: &str| get(k).ok_or_else(|| err(format!("missing `{k}`")));
        let num = |k: &str, d: usize| -> Result<usize, String> {
            match get(k) {
                None => Ok(d),
                Some(v) => v
                    .parse::<usize>()
                    .ok()
                    .filter(|&n| n >= 1)
                    .ok_or_else(|| err(format!("`{k}` must be a number >= 1, not `{v}`"))),
            }
        };
        if name.is_empty()
            || !name
                .chars()
                .all(|ch| ch.is_ascii_alphanumeric() || ch == '-' || ch == '_')
        {
            return Err(err("names use only letters, digits, `-` and `_`".into()));
        }
        let expect = need("expect")?;
        if !TARGETS.contains(&expect.as_str()) {
            return Err(err(format!(
                "expect = `{expect}` is not a target ({})",
                TARGETS.join(", ")
            )));
        }
        let kind = {
            let count = num("count", 1)?;
            let nth = num("nth", 1)?;
            if nth > count {
                return Err(err(format!("nth = {nth} is more than count = {count}")));
            }
            let action = match need("action")?.as_str() {
                "delete-statement" => {
                    if get("with").is_some() {
                        return Err(err("`with` only goes with action = replace".into()));
                    }
                    Action::DeleteStatement
                }
                "replace" => Action::Replace(need("with")?),
                a => {
                    return Err(err(format!(
                        "action `{a}`: use delete-statement or replace"
                    )));
                }
            };
            let find = need("find")?;
            if tokens(&find).is_empty() {
                return Err(err("`find` is empty".into()));
            }
            let file = if c {
                get("file").unwrap_or_else(|| PGTABLE_C.to_string())
            } else {
                let f = need("file")?;
                if !f.starts_with("rust-pgtable/") || !f.ends_with(".rs") {
                    return Err(err(format!(
                        "file = `{f}`: a Rust rule edits a rust-pgtable/**/*.rs file"
                    )));
                }
                f
            };
            let rule = CRule {
                file,
                function: need("function")?,
                find,
                count,
                nth,
                action,
            };
            if c { Kind::C(rule) } else { Kind::Rust(rule) }
        };
        let line = c.then(|| get("line").unwrap_or_else(|| DEFAULT_LINE.to_string()));
        out.push(Mutant {
            desc: need("desc")?,
            expect,
            kind,
            line,
            name,
        });
    }
    Ok(out)
}

fn mutants_dir() -> PathBuf {
    root().join("mutants")
}

/// All mutants: C first, then Rust, then common-mode, in file order. Names must be unique.
pub fn load_all() -> Res<Vec<Mutant>> {
    let mut all = vec![];
    for (file, c) in [("c.spec", true), ("rust.spec", false)] {
        let p = mutants_dir().join(file);
        let text = fs::read_to_string(&p)
            .map_err(|e| setup_err(format!("cannot read {}: {e}", rel(&p))))?;
        all.extend(parse_spec(&text, &format!("mutants/{file}"), c).map_err(setup_err)?);
    }
    all.extend(common::load()?);
    let mut names = BTreeSet::new();
    let lines: Vec<String> = kernel::read_lock()?
        .lines
        .iter()
        .map(|l| l.name.clone())
        .collect();
    for m in &all {
        if !names.insert(m.name.clone()) {
            return Err(setup_err(format!(
                "mutant `{}` is defined twice in mutants/",
                m.name
            )));
        }
        if let Some(l) = m.line.as_ref().filter(|l| !lines.contains(l)) {
            return Err(setup_err(format!(
                "mutants/c.spec: [{}]: line = {l} is not a line of kernel.lock ({})",
                m.name,
                lines.join(", ")
            )));
        }
    }
    Ok(all)
}

/// Applies every Rust rule to the workspace's rust-pgtable in memory; fails loudly on the
/// first that does not fit.
pub fn check_rust(all: &[Mutant]) -> Res {
    for m in all {
        let Some(rule) = m.rust_rule() else { continue };
        let src = fs::read_to_string(root().join(&rule.file)).map_err(|e| {
            setup_err(format!(
                "mutant {}: cannot read {}: {e}; fix `file` in mutants/rust.spec",
                m.name, rule.file
            ))
        })?;
        apply_rule(&src, rule).map_err(|e| {
            setup_err(format!(
                "mutant {}: {e}. rust-pgtable changed: update mutants/rust.spec",
                m.name
            ))
        })?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// C rule engine

/// `src` with comments and the contents of string/char literals replaced by spaces (newlines
/// kept), so offsets are unchanged and nothing inside them can match.
pub fn blank_comments(src: &str) -> String {
    let b = src.as_bytes();
    let mut out = b.to_vec();
    let mut i = 0;
    let blank = |out: &mut Vec<u8>, from: usize, to: usize| {
        for x in &mut out[from..to] {
            if *x != b'\n' {
                *x = b' ';
            }
        }
    };
    while i < b.len() {
        match b[i] {
            b'/' if b.get(i + 1) == Some(&b'/') => {
                let end = src[i..].find('\n').map_or(b.len(), |n| i + n);
                blank(&mut out, i, end);
                i = end;
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                let end = src[i + 2..].find("*/").map_or(b.len(), |n| i + 2 + n + 2);
                blank(&mut out, i, end);
                i = end;
            }
            q @ (b'"' | b'\'') => {
                let mut j = i + 1;
                while j < b.len() && b[j] != q && b[j] != b'\n' {
                    j += if b[j] == b'\\' { 2 } else { 1 };
                }
                let j = j.min(b.len());
                blank(&mut out, i + 1, j);
                i = j + 1;
            }
            _ => i += 1,
        }
    }
    // Only ASCII bytes were replaced by ASCII spaces, so this stays valid UTF-8.
    String::from_utf8(out).expect("blanking keeps UTF-8")
}

fn is_ident(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

/// Token spans: identifiers/numbers, and every other non-space character on its own.
pub fn tokens(code: &str) -> Vec<(usize, usize)> {
    let b = code.as_bytes();
    let mut out = vec![];
    let mut i = 0;
    while i < b.len() {
        if b[i].is_ascii_whitespace() {
            i += 1;
        } else if is_ident(b[i]) {
            let s = i;
            while i < b.len() && is_ident(b[i]) {
                i += 1;
            }
            out.push((s, i));
        } else {
            let s = i;
            i += code[i..].chars().next().map_or(1, char::len_utf8);
            out.push((s, i));
        }
    }
    out
}

/// The body `{ ... }` (byte range including the braces) of the one definition of `name` in
/// `code` (comments blanked): a line starting at column 0 containing `name(` whose next `{`
/// comes before any `;`.
pub fn find_function(code: &str, name: &str) -> Result<(usize, usize), String> {
    let b = code.as_bytes();
    let mut found = vec![];
    let mut off = 0;
    for line in code.split_inclusive('\n') {
        let here = off;
        off += line.len();
        let first = line.as_bytes().first().copied().unwrap_or(b' ');
        if first.is_ascii_whitespace() || first == b'#' || first == b'{' || first == b'}' {
            continue;
        }
        let mut from = 0;
        while let Some(p) = line[from..].find(name) {
            let s = from + p;
            from = s + name.len();
            let before_ok = s == 0 || !is_ident(line.as_bytes()[s - 1]);
            let after = line[from..].trim_start();
            if !before_ok || !after.starts_with('(') {
                continue;
            }
            // Definition or prototype?
            let rest = &code[here + s..];
            let brace = rest.find('{');
            let semi = rest.find(';');
            if let Some(br) = brace.filter(|&br| semi.is_none_or(|sc| br < sc)) {
                found.push(here + s + br);
            }
            break;
        }
    }
    match found.len() {
        0 => Err(format!(
            "function `{name}` not found (no definition starting at column 0)"
        )),
        1 => {
            let start = found[0];
            let mut depth = 0usize;
            for (i, &c) in b.iter().enumerate().skip(start) {
                match c {
                    b'{' => depth += 1,
                    b'}' => {
                        depth -= 1;
                        if depth == 0 {
                            return Ok((start, i + 1));
                        }
                    }
                    _ => {}
                }
            }
            Err(format!("function `{name}`: unbalanced braces"))
        }
        n => Err(format!("function `{name}` is defined {n} times")),
    }
}

/// Applies a rule to `src`; the result always differs from `src`.
pub fn apply_rule(src: &str, rule: &CRule) -> Result<String, String> {
    let rust = rule.file.ends_with(".rs");
    let (code, (bs, be)) = if rust {
        let code = blank_comments_rust(src);
        let body = find_rust_fn(&code, &rule.function)?;
        (code, body)
    } else {
        let code = blank_comments(src);
        let body = find_function(&code, &rule.function)?;
        (code, body)
    };
    let toks: Vec<(usize, usize)> = tokens(&code[bs..be])
        .into_iter()
        .map(|(s, e)| (s + bs, e + bs))
        .collect();
    let pat: Vec<&str> = tokens(&rule.find)
        .into_iter()
        .map(|(s, e)| &rule.find[s..e])
        .collect();
    let text = |t: (usize, usize)| &code[t.0..t.1];
    let matches: Vec<usize> = (0..toks.len().saturating_sub(pat.len() - 1))
        .filter(|&i| (0..pat.len()).all(|k| text(toks[i + k]) == pat[k]))
        .collect();
    if matches.len() != rule.count {
        return Err(format!(
            "`{}` matches {} time(s) in {}() of {}, the rule expects {}",
            rule.find,
            matches.len(),
            rule.function,
            rule.file,
            rule.count
        ));
    }
    let i = matches[rule.nth - 1];
    let (from, to, with) = match &rule.action {
        Action::Replace(w) => (toks[i].0, toks[i + pat.len() - 1].1, w.as_str()),
        Action::DeleteStatement => {
            let start = toks[..i]
                .iter()
                .rev()
                .find(|&&t| matches!(text(t), ";" | "{" | "}"))
                .map_or(bs + 1, |t| t.1);
            let mut depth = 0i32;
            let mut end = None;
            for &t in &toks[i..] {
                match text(t) {
                    "(" | "[" => depth += 1,
                    ")" | "]" => depth -= 1,
                    // The match may sit inside the statement's parentheses (depth < 0).
                    ";" if depth <= 0 => {
                        end = Some(t.1);
                        break;
                    }
                    "{" | "}" if depth <= 0 => break,
                    _ => {}
                }
            }
            let end = end.ok_or_else(|| {
                format!(
                    "`{}` in {}(): no `;` ends the statement",
                    rule.find, rule.function
                )
            })?;
            (start, end, " ;")
        }
    };
    Ok(format!("{}{}{}", &src[..from], with, &src[to..]))
}

/// The lines that differ between `a` and `b` (one changed region), as `-`/`+` lines.
pub fn changed_lines(a: &str, b: &str) -> String {
    let (la, lb): (Vec<&str>, Vec<&str>) = (a.lines().collect(), b.lines().collect());
    let p = la.iter().zip(&lb).take_while(|(x, y)| x == y).count();
    let q = la[p..]
        .iter()
        .rev()
        .zip(lb[p..].iter().rev())
        .take_while(|(x, y)| x == y)
        .count();
    let mut out = String::new();
    for l in &la[p..la.len() - q] {
        out.push_str(&format!("-{l}\n"));
    }
    for l in &lb[p..lb.len() - q] {
        out.push_str(&format!("+{l}\n"));
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Rust rule engine (the token matching and actions are the C ones)

/// `src` with Rust comments (block comments nest) and the contents of string, raw-string,
/// byte-string and char literals replaced by spaces (newlines kept), so offsets are unchanged
/// and nothing inside them can match. Lifetimes and loop labels (`'a`) are code.
pub fn blank_comments_rust(src: &str) -> String {
    let b = src.as_bytes();
    let mut out = b.to_vec();
    let blank = |out: &mut Vec<u8>, from: usize, to: usize| {
        for x in &mut out[from..to.min(b.len())] {
            if *x != b'\n' {
                *x = b' ';
            }
        }
    };
    let at = |i: usize| b.get(i).copied().unwrap_or(0);
    let mut i = 0;
    while i < b.len() {
        let starts_word = i == 0 || !is_ident(b[i - 1]);
        match b[i] {
            b'/' if at(i + 1) == b'/' => {
                let end = src[i..].find('\n').map_or(b.len(), |n| i + n);
                blank(&mut out, i, end);
                i = end;
            }
            b'/' if at(i + 1) == b'*' => {
                let (mut j, mut depth) = (i + 2, 1);
                while j < b.len() && depth > 0 {
                    if b[j] == b'/' && at(j + 1) == b'*' {
                        depth += 1;
                        j += 2;
                    } else if b[j] == b'*' && at(j + 1) == b'/' {
                        depth -= 1;
                        j += 2;
                    } else {
                        j += 1;
                    }
                }
                blank(&mut out, i, j);
                i = j;
            }
            // r"..", r#".."#, br".." (but not the raw identifier r#name).
            b'r' | b'b' if starts_word && raw_string_hashes(b, i).is_some() => {
                let (open, hashes) = raw_string_hashes(b, i).unwrap_or_default();
                let close: Vec<u8> = std::iter::once(b'"')
                    .chain(std::iter::repeat_n(b'#', hashes))
                    .collect();
                let body = open + 1;
                let end = b[body..]
                    .windows(close.len())
                    .position(|w| w == close.as_slice())
                    .map_or(b.len(), |p| body + p);
                blank(&mut out, body, end);
                i = end + close.len();
            }
            b'"' => {
                let mut j = i + 1;
                while j < b.len() && b[j] != b'"' {
                    j += if b[j] == b'\\' { 2 } else { 1 };
                }
                blank(&mut out, i + 1, j);
                i = j + 1;
            }
            b'\'' => {
                // A char literal is '\..' or exactly one character between quotes;
                // anything else is a lifetime or a label.
                let len = src[i + 1..].chars().next().map_or(1, char::len_utf8);
                if at(i + 1) == b'\\' {
                    let mut j = i + 3;
                    while j < b.len() && b[j] != b'\'' && b[j] != b'\n' {
                        j += 1;
                    }
                    blank(&mut out, i + 1, j);
                    i = j + 1;
                } else if at(i + 1 + len) == b'\'' && at(i + 1) != b'\n' {
                    blank(&mut out, i + 1, i + 1 + len);
                    i += 2 + len;
                } else {
                    i += 1;
                }
            }
            _ => i += 1,
        }
    }
    // Blanked ranges start and end next to ASCII delimiters, so whole characters became
    // ASCII spaces: still valid UTF-8.
    String::from_utf8(out).expect("blanking keeps UTF-8")
}

/// If a raw string literal starts at `i` (`r`, `br`, then `#`s and `"`), the offset of its
/// opening `"` and its number of `#`s.
fn raw_string_hashes(b: &[u8], i: usize) -> Option<(usize, usize)> {
    let mut j = i;
    if b.get(j) == Some(&b'b') {
        j += 1;
    }
    if b.get(j) != Some(&b'r') {
        return None;
    }
    j += 1;
    let h = b[j..].iter().take_while(|&&c| c == b'#').count();
    (b.get(j + h) == Some(&b'"')).then_some((j + h, h))
}

/// The body `{ ... }` (byte range including the braces) of the one Rust function `NAME` in
/// `code` (comments blanked), at any indentation: `fn NAME` followed by its signature and a
/// `{` before any `;` (trait method declarations without a body are skipped). `Type::NAME`
/// restricts the search to `impl` blocks whose header names `Type`.
pub fn find_rust_fn(code: &str, spec: &str) -> Result<(usize, usize), String> {
    let (ty, name) = match spec.rsplit_once("::") {
        Some((t, n)) => (Some(t.trim()), n.trim()),
        None => (None, spec.trim()),
    };
    let toks = tokens(code);
    let text = |k: usize| &code[toks[k].0..toks[k].1];
    // Token index of the `}` matching the `{` at token `open`.
    let close_of = |open: usize| -> Option<usize> {
        let mut depth = 0usize;
        for k in open..toks.len() {
            match text(k) {
                "{" => depth += 1,
                "}" => {
                    depth -= 1;
                    if depth == 0 {
                        return Some(k);
                    }
                }
                _ => {}
            }
        }
        None
    };
    let mut scopes: Vec<(usize, usize)> = vec![];
    if let Some(ty) = ty {
        for k in 0..toks.len() {
            let item_start = k == 0 || matches!(text(k - 1), "}" | ";" | "]" | "unsafe");
            if text(k) != "impl" || !item_start {
                continue;
            }
            let Some(open) = (k + 1..toks.len()).find(|&j| matches!(text(j), "{" | ";")) else {
                continue;
            };
            if text(open) == "{" && (k + 1..open).any(|j| text(j) == ty) {
                let close =
                    close_of(open).ok_or_else(|| format!("impl {ty}: unbalanced braces"))?;
                scopes.push((open, close));
            }
        }
        if scopes.is_empty() {
            return Err(format!("no `impl` block of `{ty}` found"));
        }
    }
    let mut found = vec![];
    for k in 0..toks.len().saturating_sub(1) {
        if text(k) != "fn" || text(k + 1) != name {
            continue;
        }
        if ty.is_some() && !scopes.iter().any(|&(o, c)| o < k && k < c) {
            continue;
        }
        let Some(open) = (k + 2..toks.len()).find(|&j| matches!(text(j), "{" | ";")) else {
            continue;
        };
        if text(open) == ";" {
            continue;
        }
        let close = close_of(open).ok_or_else(|| format!("fn {spec}: unbalanced braces"))?;
        found.push((toks[open].0, toks[close].1));
    }
    match found.len() {
        1 => Ok(found[0]),
        0 => Err(format!(
            "function `{spec}` not found (no `fn {name}` with a body)"
        )),
        n => Err(format!(
            "function `{spec}` is defined {n} times; qualify it as `Type::{name}`"
        )),
    }
}

/// The kernel tree the C mutants of `line` are applied to: LINUX_SRC when its API generation
/// is that line's, else the line's pinned cache (`.cache/linux-source-<line>/`).
fn source_tree(line: &str) -> Res<PathBuf> {
    if let Some(s) = std::env::var_os("LINUX_SRC").filter(|s| !s.is_empty()) {
        let tree = PathBuf::from(s);
        let what = format!("LINUX_SRC={}", tree.display());
        let g =
            crate::fuzz::check_user_tree(&tree, &what, "unset it to mutate the pinned sources")?;
        if g.line == line {
            return Ok(tree);
        }
    }
    pinned_tree(line)
}

/// The pinned cache of `line` (`.cache/linux-source-<line>/`).
fn pinned_tree(line: &str) -> Res<PathBuf> {
    if line == DEFAULT_LINE {
        return kernel::built_tree();
    }
    let lock = kernel::read_lock()?;
    let l = lock
        .line(line)
        .ok_or_else(|| setup_err(format!("kernel.lock has no [line {line}]")))?;
    Ok(root().join(l.cache_dir()))
}

/// The C mutants' kernel lines, each once, in the order of `all`.
fn c_lines(all: &[&Mutant]) -> Vec<String> {
    let mut out: Vec<String> = vec![];
    for l in all.iter().filter_map(|m| m.line.clone()) {
        if !out.contains(&l) {
            out.push(l);
        }
    }
    out
}

/// Applies every C rule to its line's source (`tree_of(line)`) in memory; fails loudly on the
/// first that does not fit. Lines whose source is not present are skipped when
/// `only_present`. Returns the trees checked.
fn check_c(
    all: &[Mutant],
    only_present: bool,
    tree_of: &dyn Fn(&str) -> Res<PathBuf>,
) -> Res<Vec<String>> {
    let mut checked = vec![];
    for m in all {
        let (Some(rule), Some(line)) = (m.c_rule(), &m.line) else {
            continue;
        };
        let tree = tree_of(line)?;
        let p = tree.join(&rule.file);
        if only_present && !p.is_file() {
            continue;
        }
        let src = fs::read_to_string(&p).map_err(|e| {
            setup_err(format!(
                "mutant {}: cannot read {}: {e}; run `cargo xtask kernel` or fix LINUX_SRC",
                m.name,
                p.display()
            ))
        })?;
        apply_rule(&src, rule).map_err(|e| {
            setup_err(format!(
                "mutant {} (line {line}): {e}. The kernel source changed: update mutants/c.spec",
                m.name
            ))
        })?;
        let shown = tree.display().to_string();
        if !checked.contains(&shown) {
            checked.push(shown);
        }
    }
    Ok(checked)
}

/// Writes the kernel files (mutated by `rule`, if any) into `dst`, touching only what changed.
fn write_tree(src_tree: &Path, dst: &Path, rule: Option<&CRule>) -> Res {
    for f in kernel::FILES {
        let from = src_tree.join(f);
        let mut data = fs::read_to_string(&from)
            .map_err(|e| setup_err(format!("cannot read {}: {e}", from.display())))?;
        if let Some(r) = rule.filter(|r| r.file == f) {
            data = apply_rule(&data, r).map_err(setup_err)?;
        }
        let to = dst.join(f);
        if fs::read_to_string(&to).ok().as_deref() == Some(data.as_str()) {
            continue;
        }
        fs::create_dir_all(to.parent().unwrap())
            .and_then(|_| fs::write(&to, &data))
            .map_err(|e| setup_err(format!("cannot write {}: {e}", to.display())))?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Builds

fn work_dir() -> PathBuf {
    root().join("fuzz").join("target").join("mutants")
}

/// The copy of the workspace that Rust mutants are built from.
fn rust_tree_dir() -> PathBuf {
    work_dir().join("rsrc")
}

/// The workspace's source files, relative to the root: tracked ones and new ones git does not
/// ignore, as they are in the working tree now.
fn workspace_files() -> Res<Vec<String>> {
    let out = Command::new("git")
        .args([
            "ls-files",
            "-z",
            "--cached",
            "--others",
            "--exclude-standard",
        ])
        .current_dir(root())
        .output()
        .map_err(|e| setup_err(format!("cannot run `git ls-files`: {e}")))?;
    if !out.status.success() {
        return Err(setup_err(format!(
            "`git ls-files` failed: {}; Rust mutants need the workspace to be a git checkout",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    let mut files: Vec<String> = out
        .stdout
        .split(|&c| c == 0)
        .filter(|f| !f.is_empty())
        .map(|f| String::from_utf8_lossy(f).into_owned())
        .collect();
    files.sort();
    files.dedup();
    Ok(files)
}

/// Writes a copy of the workspace into `dst`, with `rule` (if any) applied to its
/// rust-pgtable file. The workspace itself is never modified. Only files whose content
/// changed are rewritten and files gone from the workspace are deleted, so a build with a
/// persistent target directory recompiles only the mutated crate and what depends on it.
/// The kernel source cache (`.cache`, git-ignored) is linked, not copied.
fn write_rust_tree(dst: &Path, rule: Option<&CRule>) -> Res {
    let mut keep = BTreeSet::new();
    let mut mutated = false;
    for f in workspace_files()? {
        let from = root().join(&f);
        // Deleted in the working tree but still in the index, or not a regular file.
        if !from.is_file() {
            continue;
        }
        let mut data =
            fs::read(&from).map_err(|e| setup_err(format!("cannot read {}: {e}", rel(&from))))?;
        if let Some(r) = rule.filter(|r| r.file == f) {
            let text =
                String::from_utf8(data).map_err(|_| setup_err(format!("{f} is not UTF-8 text")))?;
            data = apply_rule(&text, r).map_err(setup_err)?.into_bytes();
            mutated = true;
        }
        let to = dst.join(&f);
        keep.insert(to.clone());
        if fs::read(&to).ok().as_deref() == Some(&data[..]) {
            continue;
        }
        fs::create_dir_all(to.parent().unwrap())
            .and_then(|_| fs::write(&to, &data))
            .map_err(|e| setup_err(format!("cannot write {}: {e}", to.display())))?;
    }
    if let Some(r) = rule.filter(|_| !mutated) {
        return Err(setup_err(format!(
            "{} is not a file of the workspace (git ls-files); fix `file` in mutants/rust.spec",
            r.file
        )));
    }
    let cache = dst.join(".cache");
    remove_stale(dst, &keep, &cache)?;
    let real_cache = root().join(".cache");
    if real_cache.exists() && fs::symlink_metadata(&cache).is_err() {
        std::os::unix::fs::symlink(&real_cache, &cache)
            .map_err(|e| setup_err(format!("cannot link {}: {e}", cache.display())))?;
    }
    Ok(())
}

/// Deletes the files under `dir` that are not in `keep` (leaving the `skip` link alone).
fn remove_stale(dir: &Path, keep: &BTreeSet<PathBuf>, skip: &Path) -> Res {
    let Ok(rd) = fs::read_dir(dir) else {
        return Ok(());
    };
    for e in rd.flatten() {
        let p = e.path();
        if p == skip {
            continue;
        }
        let Ok(ft) = e.file_type() else { continue };
        if ft.is_dir() {
            remove_stale(&p, keep, skip)?;
        } else if !keep.contains(&p) {
            fs::remove_file(&p)
                .map_err(|e| setup_err(format!("cannot remove {}: {e}", p.display())))?;
        }
    }
    Ok(())
}

/// How a build differs from a normal one.
#[derive(Clone, Debug)]
enum Variant {
    /// Build the C side from this (possibly mutated) copy of the kernel files.
    CTree(PathBuf),
    /// Build from this copy of the workspace (with a mutated rust-pgtable) instead of the
    /// workspace itself.
    RustTree(PathBuf),
    /// Both: the workspace copy, with the C side from the kernel copy (common-mode mutants).
    Both { ktree: PathBuf, rtree: PathBuf },
}

impl Variant {
    fn kind(&self) -> &'static str {
        match self {
            Variant::CTree(_) => "c",
            Variant::RustTree(_) => "rust",
            Variant::Both { .. } => "common",
        }
    }

    fn apply(&self, cmd: &mut Command) {
        match self {
            Variant::CTree(t) => {
                cmd.env("LINUX_SRC", t);
            }
            Variant::RustTree(t) => {
                cmd.current_dir(t);
            }
            Variant::Both { ktree, rtree } => {
                cmd.env("LINUX_SRC", ktree).current_dir(rtree);
            }
        }
    }
}

/// The fuzz binaries of one variant, and its CLI, built on first use (only needed when the
/// corpus does not already catch the mutant).
struct Bins {
    fuzz: PathBuf,
    variant: Variant,
    label: String,
    triple: String,
    cli: Option<PathBuf>,
    /// Time spent building the CLI (not counted as time to detection).
    cli_build: Duration,
}

impl Bins {
    fn cli(&mut self) -> Res<PathBuf> {
        if let Some(c) = &self.cli {
            return Ok(c.clone());
        }
        let t = Instant::now();
        let cdir = work_dir().join(format!("cli-{}", self.variant.kind()));
        let mut cmd = Command::new("cargo");
        cmd.args([
            "build",
            "--release",
            "-p",
            "kvm-pgtable-diff",
            "--bin",
            "kvm-pgtable-diff",
            "--target",
            &self.triple,
        ])
        .arg("--target-dir")
        .arg(&cdir);
        self.variant.apply(&mut cmd);
        say!(
            TAG,
            "{}: building the CLI for the text scenarios ...",
            self.label
        );
        run_build(
            cmd,
            &work_dir()
                .join("logs")
                .join(format!("{}-cli-build.log", self.label)),
            &format!("{}: CLI build", self.label),
        )?;
        let c = cdir
            .join(&self.triple)
            .join("release")
            .join("kvm-pgtable-diff");
        self.cli = Some(c.clone());
        self.cli_build = t.elapsed();
        Ok(c)
    }
}

/// Runs a build with output to `log`; on failure shows the log's error lines.
fn run_build(mut cmd: Command, log: &Path, what: &str) -> Res {
    let f = fs::File::create(log)
        .map_err(|e| setup_err(format!("cannot create {}: {e}", log.display())))?;
    let f2 = f
        .try_clone()
        .map_err(|e| setup_err(format!("{}: {e}", log.display())))?;
    use std::io::Write as _;
    let _ = writeln!(&f, "$ {}", cmd_line(&cmd));
    // Rust mutants build in their copy of the workspace (see Variant::apply).
    if cmd.get_current_dir().is_none() {
        cmd.current_dir(root());
    }
    let st = cmd
        .stdin(Stdio::null())
        .stdout(f)
        .stderr(f2)
        .status()
        .map_err(|e| setup_err(format!("cannot run `{}`: {e}", cmd_line(&cmd))))?;
    if st.success() {
        return Ok(());
    }
    let text = fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("error") || l.trim_start().starts_with("-->"))
        .take(12)
        .collect();
    for l in lines {
        eprintln!("  {l}");
    }
    Err(setup_err(format!("{what} failed; full log: {}", rel(log))))
}

fn build(v: &Variant, label: &str, sanitizer: &str, triple: &str) -> Res<Bins> {
    let tdir = work_dir().join(format!("target-{}", v.kind()));
    let logs = work_dir().join("logs");
    fs::create_dir_all(&logs).map_err(|e| setup_err(format!("{}: {e}", logs.display())))?;
    let mut cmd = Command::new("cargo");
    cmd.args(["+nightly", "fuzz", "build"])
        .args(crate::fuzz::BUILD_FLAGS)
        .args(["--sanitizer", sanitizer])
        .arg("--target-dir")
        .arg(&tdir);
    v.apply(&mut cmd);
    run_build(
        cmd,
        &logs.join(format!("{label}-build.log")),
        &format!("{label}: fuzz build"),
    )?;
    Ok(Bins {
        fuzz: tdir.join(triple).join("release"),
        variant: v.clone(),
        label: label.to_string(),
        triple: triple.to_string(),
        cli: None,
        cli_build: Duration::ZERO,
    })
}

// ---------------------------------------------------------------------------------------------
// Replay and fuzzing

/// Text scenarios to replay: tests/regressions/*.txt and fuzz/scenarios/**/*.txt.
fn scenarios() -> Vec<PathBuf> {
    let r = root();
    let mut out = files(&r.join("tests/regressions"), false, Some("txt"));
    out.extend(files(&r.join("fuzz/scenarios"), true, Some("txt")));
    out
}

/// The target a scenario belongs to, from a path component naming one.
fn scenario_target(p: &Path) -> Option<&'static str> {
    p.components().rev().skip(1).find_map(|c| {
        let c = c.as_os_str().to_str()?;
        TARGETS.iter().copied().find(|t| *t == c)
    })
}

fn corpus_dir(t: &str) -> PathBuf {
    root().join("fuzz").join("corpus").join(t)
}

fn count_files(d: &Path) -> usize {
    files(d, false, None).len()
}

/// How a mutant was caught.
#[derive(Clone, Debug)]
struct Caught {
    by: String,
    after: Duration,
    why: String,
}

/// First line of the divergence report (the panic message) in a log, else the first error.
fn headline(log: &Path) -> String {
    let text = fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    if let Some(p) = lines.iter().position(|l| l.contains("panicked at "))
        && let Some(l) = lines[p + 1..]
            .iter()
            .map(|l| l.trim().trim_matches(|c| c == '=' || c == ' '))
            .find(|l| !l.is_empty())
    {
        return l.to_string();
    }
    lines
        .iter()
        .find(|l| l.contains("ERROR:") || l.starts_with("finding") || l.contains("divergence"))
        .map_or_else(|| "finding".to_string(), |l| l.trim().to_string())
}

struct Job {
    target: String,
    child: Child,
    log: PathBuf,
    arts: PathBuf,
}

fn spawn_fuzzer(
    bin: &Path,
    target: &str,
    label: &str,
    extra: &[String],
    runs0: bool,
    with_seeds: bool,
) -> Res<Job> {
    let base = work_dir().join("run").join(label).join(target);
    let work = base.join("corpus");
    let arts = base.join("artifacts");
    for d in [&work, &arts] {
        fs::create_dir_all(d).map_err(|e| setup_err(format!("{}: {e}", d.display())))?;
    }
    let log = work_dir().join("logs").join(format!(
        "{label}-{target}{}.log",
        if runs0 { "-replay" } else { "" }
    ));
    let f = fs::File::create(&log).map_err(|e| setup_err(format!("{}: {e}", log.display())))?;
    let f2 = f
        .try_clone()
        .map_err(|e| setup_err(format!("{}: {e}", log.display())))?;
    let mut cmd = Command::new(bin.join(target));
    cmd.envs(common::child_env());
    cmd.arg(format!("-artifact_prefix={}/", arts.display()))
        .arg("-timeout=25")
        .args(extra)
        .arg(&work);
    if runs0 {
        cmd.arg("-runs=0");
    }
    let seeds = corpus_dir(target);
    if with_seeds && count_files(&seeds) > 0 {
        cmd.arg(&seeds);
    }
    let child = cmd
        .stdin(Stdio::null())
        .stdout(f)
        .stderr(f2)
        .spawn()
        .map_err(|e| setup_err(format!("cannot run {}: {e}", bin.join(target).display())))?;
    Ok(Job {
        target: target.to_string(),
        child,
        log,
        arts,
    })
}

fn new_artifacts(d: &Path) -> bool {
    fs::read_dir(d)
        .map(|rd| {
            rd.flatten()
                .any(|e| e.file_name().to_str().is_some_and(is_finding_artifact))
        })
        .unwrap_or(false)
}

/// A `timeout-` or `oom-` artifact in `d` when it holds no `crash-` or
/// `leak-` one.
fn resource_artifact(d: &Path) -> Option<PathBuf> {
    let mut resource = None;
    for e in fs::read_dir(d).ok()?.flatten() {
        let name = e.file_name();
        let name = name.to_str().unwrap_or("");
        if name.starts_with("crash-") || name.starts_with("leak-") {
            return None;
        }
        if name.starts_with("timeout-") || name.starts_with("oom-") {
            resource = Some(e.path());
        }
    }
    resource
}

fn kill(mut j: Job) {
    let _ = j.child.kill();
    let _ = j.child.wait();
}

/// Runs the jobs produced by `next` with at most `jobs` at once until one finds something,
/// all are done, or `deadline` passes. Returns the first finding as (target, log).
fn run_jobs(
    mut next: impl FnMut() -> Option<Res<Job>>,
    jobs: usize,
    deadline: Option<Instant>,
) -> Res<Option<(String, String)>> {
    let mut running: Vec<Job> = vec![];
    let mut more = true;
    loop {
        while more && running.len() < jobs {
            match next() {
                Some(j) => running.push(j?),
                None => more = false,
            }
        }
        if running.is_empty() {
            return Ok(None);
        }
        std::thread::sleep(Duration::from_millis(100));
        let stop = INTERRUPTED.load(Ordering::SeqCst)
            || deadline.is_some_and(|d| Instant::now() > d + Duration::from_secs(5));
        let mut i = 0;
        while i < running.len() {
            let st = running[i].child.try_wait();
            match st {
                Ok(Some(st)) => {
                    let j = running.remove(i);
                    // A timeout or out-of-memory is libFuzzer's verdict on an
                    // input's cost, not the planted bug's divergence (the
                    // unmutated build times out on it too): the target goes on
                    // to count as not detecting.
                    if let Some(a) = resource_artifact(&j.arts) {
                        warn!(
                            TAG,
                            "{}: {} (a slow or large input, not a finding; not counted as \
                             detection): {}",
                            j.target,
                            headline(&j.log),
                            rel(&a)
                        );
                        continue;
                    }
                    if !st.success() || new_artifacts(&j.arts) {
                        let why = headline(&j.log);
                        for r in running.drain(..) {
                            kill(r);
                        }
                        return Ok(Some((j.target, why)));
                    }
                }
                Ok(None) => i += 1,
                Err(_) => {
                    kill(running.remove(i));
                }
            }
        }
        if stop {
            for r in running.drain(..) {
                kill(r);
            }
            return Ok(None);
        }
    }
}

struct Outcome {
    name: String,
    side: &'static str,
    caught: Option<Caught>,
    /// A build or setup failure of this mutant (not a detection).
    error: Option<String>,
}

fn replay_scenarios(cli: &Path, files: &[PathBuf], label: &str) -> Res<Option<(String, String)>> {
    for f in files {
        let mut cmd = Command::new(cli);
        cmd.envs(common::child_env());
        cmd.arg("run").arg(f);
        if let Some(t) = scenario_target(f) {
            cmd.args(["--target", t]);
        }
        let out = cmd
            .current_dir(root())
            .stdin(Stdio::null())
            .output()
            .map_err(|e| setup_err(format!("cannot run {}: {e}", cli.display())))?;
        match out.status.code() {
            Some(0) => {}
            Some(1) => {
                let log = work_dir()
                    .join("logs")
                    .join(format!("{label}-scenario.log"));
                let _ = fs::write(&log, [&out.stdout[..], &out.stderr[..]].concat());
                let why = String::from_utf8_lossy(&out.stdout)
                    .lines()
                    .chain(String::from_utf8_lossy(&out.stderr).lines())
                    .map(|l| l.trim().trim_matches(|c| c == '=' || c == ' ').to_string())
                    .find(|l| !l.is_empty() && !l.starts_with("running") && !l.contains(".txt"))
                    .unwrap_or_else(|| "finding".into());
                return Ok(Some((format!("scenario {}", rel(f)), why)));
            }
            _ => {
                warn!(
                    TAG,
                    "{label}: `{} run {}` failed: {}",
                    rel(cli),
                    rel(f),
                    String::from_utf8_lossy(&out.stderr)
                        .lines()
                        .next()
                        .unwrap_or("")
                );
            }
        }
    }
    Ok(None)
}

/// Replays the corpus (all targets) and the scenarios; the first finding, if any.
fn replay(bins: &mut Bins, files: &[PathBuf], label: &str, jobs: usize) -> Res<Option<Caught>> {
    let t0 = Instant::now();
    let targets: Vec<&str> = TARGETS
        .iter()
        .copied()
        .filter(|t| count_files(&corpus_dir(t)) > 0)
        .collect();
    let mut it = targets.iter();
    let found = run_jobs(
        || {
            it.next()
                .map(|t| spawn_fuzzer(&bins.fuzz, t, label, &[], true, true))
        },
        jobs,
        None,
    )?;
    if let Some((t, why)) = found {
        return Ok(Some(Caught {
            by: format!("corpus {t}"),
            after: t0.elapsed(),
            why,
        }));
    }
    if !files.is_empty() && !INTERRUPTED.load(Ordering::SeqCst) {
        let cli = bins.cli()?;
        if let Some((by, why)) = replay_scenarios(&cli, files, label)? {
            return Ok(Some(Caught {
                by,
                after: t0.elapsed().saturating_sub(bins.cli_build),
                why,
            }));
        }
    }
    Ok(None)
}

fn test_mutant(
    m: &Mutant,
    bins: &mut Bins,
    files: &[PathBuf],
    args: &Args,
    label: &str,
) -> Res<Option<Caught>> {
    let t0 = Instant::now();
    let _ = fs::remove_dir_all(work_dir().join("run").join(label));
    if !args.fuzz_only
        && let Some(c) = replay(bins, files, label, args.jobs as usize)?
    {
        return Ok(Some(c));
    }
    if INTERRUPTED.load(Ordering::SeqCst) {
        return Ok(None);
    }
    // A C mutant is planted in one kernel line's tree: inputs decoded on the other line run
    // the unmutated code and cannot find it, so the fuzzers spend the budget on its line
    // alone (`KPD_LINE`, as `cargo xtask fuzz --line` does). The replay above is left as it
    // is: the corpus and scenarios carry their own lines.
    if let Kind::C(_) = m.kind {
        common::set_line(Some(m.line.as_deref().unwrap_or(DEFAULT_LINE)));
    }
    // Expected target first, then the rest; each gets an equal share of the budget.
    let mut order: Vec<&str> = vec![m.expect.as_str()];
    order.extend(TARGETS.iter().copied().filter(|t| *t != m.expect));
    let jobs = (args.jobs as usize).min(order.len());
    let waves = order.len().div_ceil(jobs) as u64;
    let slice = (args.budget / waves).max(1);
    let deadline = Instant::now() + Duration::from_secs(args.budget);
    say!(
        TAG,
        "{label}: {}fuzzing {} ({slice} s each, {jobs} at a time)",
        if args.fuzz_only {
            "empty corpus; "
        } else {
            "corpus/scenarios pass; "
        },
        order.join(", ")
    );
    let mut it = order.into_iter();
    let mut extra = crate::fuzz::production_flags()?;
    extra.push(format!("-max_total_time={slice}"));
    let found = run_jobs(
        || {
            if Instant::now() >= deadline {
                return None;
            }
            it.next()
                .map(|t| spawn_fuzzer(&bins.fuzz, t, label, &extra, false, !args.fuzz_only))
        },
        jobs,
        Some(deadline),
    )?;
    Ok(found.map(|(t, why)| Caught {
        by: t,
        after: t0.elapsed().saturating_sub(bins.cli_build),
        why,
    }))
}

fn fmt_secs(d: Duration) -> String {
    format!("{:.1}s", d.as_secs_f64())
}

/// `mutants: detected D/N, median Ms, max Xs` (times over the detected mutants).
pub fn summary_line(times: &[Duration], n: usize) -> String {
    let mut t: Vec<f64> = times.iter().map(|d| d.as_secs_f64()).collect();
    t.sort_by(|a, b| a.total_cmp(b));
    let median = match t.len() {
        0 => 0.0,
        k if k % 2 == 1 => t[k / 2],
        k => (t[k / 2 - 1] + t[k / 2]) / 2.0,
    };
    let max = t.last().copied().unwrap_or(0.0);
    format!(
        "mutants: detected {}/{n}, median {median:.1}s, max {max:.1}s",
        t.len()
    )
}

fn print_list(all: &[Mutant]) {
    let rows: Vec<Vec<String>> = all
        .iter()
        .map(|m| {
            vec![
                m.name.clone(),
                m.side().into(),
                m.line.clone().unwrap_or_else(|| "-".into()),
                m.expect.clone(),
                m.desc.clone(),
            ]
        })
        .collect();
    print!(
        "{}",
        table(&["mutant", "side", "line", "expect", "plants"], &rows)
    );
    let count = |k: KindName| all.iter().filter(|m| m.kind_name() == k).count();
    println!(
        "{} mutants: {} C, {} Rust, {} common-mode (C+Rust)",
        all.len(),
        count(KindName::C),
        count(KindName::Rust),
        count(KindName::Common)
    );
}

fn print_results(outcomes: &[Outcome], total: usize) -> String {
    let rows: Vec<Vec<String>> = outcomes
        .iter()
        .map(|o| {
            let (det, by, t, why) = match (&o.caught, &o.error) {
                (_, Some(e)) => ("ERROR".into(), "-".into(), "-".into(), e.clone()),
                (Some(c), _) => (
                    "yes".to_string(),
                    c.by.clone(),
                    fmt_secs(c.after),
                    c.why.clone(),
                ),
                (None, _) => ("no".into(), "-".into(), "-".into(), String::new()),
            };
            let why: String = if why.chars().count() > 70 {
                why.chars().take(67).collect::<String>() + "..."
            } else {
                why
            };
            vec![o.name.clone(), o.side.into(), det, by, t, why]
        })
        .collect();
    println!();
    say!(TAG, "summary");
    print!(
        "{}",
        table(
            &["mutant", "side", "detected", "by", "time", "finding"],
            &rows
        )
    );
    let times: Vec<Duration> = outcomes
        .iter()
        .filter_map(|o| o.caught.as_ref().map(|c| c.after))
        .collect();
    summary_line(&times, total)
}

pub fn run(args: Args) -> Res<u8> {
    let all = load_all()?;
    check_rust(&all)?;
    for o in &args.only {
        if !all.iter().any(|m| &m.name == o) {
            return Err(setup_err(format!(
                "unknown mutant `{o}`; see `cargo xtask mutants --list`"
            )));
        }
    }
    let selected: Vec<&Mutant> = all
        .iter()
        .filter(|m| args.only.is_empty() || args.only.contains(&m.name))
        .filter(|m| args.kind.is_empty() || args.kind.contains(&m.kind_name()))
        .collect();
    common::set_no_arch(args.no_arch);
    if args.list {
        print_list(&all);
        say!(TAG, "every Rust rule applies to rust-pgtable/");
        for t in check_c(&all, true, &source_tree)? {
            say!(TAG, "every C rule of {t} applies");
        }
        return Ok(EXIT_OK);
    }
    if args.diff {
        if selected.iter().any(|m| m.c_rule().is_some()) {
            check_c(&all, false, &source_tree)?;
        }
        for m in &selected {
            let line = m.line.as_deref().unwrap_or(DEFAULT_LINE);
            let rules = [
                m.c_rule().map(|r| (source_tree(line), r)),
                m.rust_rule().map(|r| (Ok(root()), r)),
            ];
            for (dir, rule) in rules.into_iter().flatten() {
                let src = fs::read_to_string(dir?.join(&rule.file))
                    .map_err(|e| setup_err(format!("cannot read {}: {e}", rule.file)))?;
                let out = apply_rule(&src, rule).map_err(setup_err)?;
                let on = m
                    .line
                    .as_deref()
                    .map_or_else(String::new, |l| format!(", line {l}"));
                println!("== {} ({}{on}, {}())", m.name, rule.file, rule.function);
                print!("{}", changed_lines(&src, &out));
            }
        }
        return Ok(EXIT_OK);
    }
    setup::setup(setup::Opts { fuzz: true })?;
    // The C side builds every pinned line; setup skips the cache when LINUX_SRC is set.
    kernel::ensure(kernel::Opts::default())?;
    let trees = check_c(&all, false, &source_tree)?;
    let triple = host_triple(true)?;
    let sanitizer = &value_name(args.sanitizer);
    ctrlc::set_handler(|| {
        INTERRUPTED.store(true, Ordering::SeqCst);
        eprintln!("[mutants] interrupted; stopping after the current step");
    })
    .map_err(|e| setup_err(format!("cannot install the Ctrl-C handler: {e}")))?;

    let files = scenarios();
    // One mutable copy per kernel line: `LINUX_SRC=<copy>` replaces that line in the build.
    let ksrc = |line: &str| work_dir().join(format!("ksrc-{line}"));
    let rsrc = rust_tree_dir();
    let ncorpus: usize = TARGETS.iter().map(|t| count_files(&corpus_dir(t))).sum();
    say!(
        TAG,
        "{} mutant(s); corpus {ncorpus} inputs, {} text scenarios; budget {} s, {} job(s), sanitizer {sanitizer}; C sources {}",
        selected.len(),
        files.len(),
        args.budget,
        args.jobs,
        trees.join(", ")
    );

    let flags = crate::fuzz::production_flags()?;
    if !flags.is_empty() {
        say!(
            TAG,
            "fuzz phase uses the OSS-Fuzz flags: {}",
            flags.join(" ")
        );
    }

    if !args.no_baseline && !args.fuzz_only {
        say!(TAG, "baseline: building the unmutated code ...");
        let t = Instant::now();
        let base = c_lines(&selected)
            .into_iter()
            .next()
            .unwrap_or_else(|| DEFAULT_LINE.to_string());
        write_tree(&source_tree(&base)?, &ksrc(&base), None)?;
        let mut bins = build(&Variant::CTree(ksrc(&base)), "baseline", sanitizer, &triple)?;
        say!(TAG, "baseline: built in {}", fmt_secs(t.elapsed()));
        if let Some(c) = replay(&mut bins, &files, "baseline", args.jobs as usize)? {
            return Err(setup_err(format!(
                "the unmutated build already fails on the {} ({}); mutants cannot be judged. \
                 Fix or move that input (or pass --no-baseline)",
                c.by, c.why
            )));
        }
        say!(TAG, "baseline: corpus and scenarios pass");
    }

    let mut outcomes: Vec<Outcome> = vec![];
    let n = selected.len();
    for (i, m) in selected.iter().enumerate() {
        if INTERRUPTED.load(Ordering::SeqCst) {
            break;
        }
        let label = m.name.as_str();
        let on = m
            .line
            .as_deref()
            .map_or_else(String::new, |l| format!(", line {l}"));
        say!(
            TAG,
            "[{}/{n}] {label} ({}{on}): {}",
            i + 1,
            m.side(),
            m.desc
        );
        let variant = match &m.kind {
            Kind::C(rule) => {
                let line = m.line.as_deref().unwrap_or(DEFAULT_LINE);
                write_tree(&source_tree(line)?, &ksrc(line), Some(rule))?;
                Variant::CTree(ksrc(line))
            }
            Kind::Rust(rule) => {
                write_rust_tree(&rsrc, Some(rule))?;
                Variant::RustTree(rsrc.clone())
            }
            Kind::Common { c, rust, .. } => {
                let line = m.line.as_deref().unwrap_or(DEFAULT_LINE);
                write_tree(&source_tree(line)?, &ksrc(line), Some(c))?;
                write_rust_tree(&rsrc, Some(rust))?;
                Variant::Both {
                    ktree: ksrc(line),
                    rtree: rsrc.clone(),
                }
            }
        };
        // A common-mode mutant plants its C half in the 6.12 tree only.
        let files = common::scenarios_for(m, &files);
        common::set_line(matches!(m.kind, Kind::Common { .. }).then_some(common::LINE));
        let t = Instant::now();
        let r = build(&variant, label, sanitizer, &triple).and_then(|mut bins| {
            say!(TAG, "{label}: built in {}", fmt_secs(t.elapsed()));
            test_mutant(m, &mut bins, &files, &args, label)
        });
        let o = match r {
            Ok(caught) => Outcome {
                name: m.name.clone(),
                side: m.side(),
                caught,
                error: None,
            },
            Err(e) => {
                warn!(TAG, "{label}: {}", e.msg);
                Outcome {
                    name: m.name.clone(),
                    side: m.side(),
                    caught: None,
                    error: Some(e.msg),
                }
            }
        };
        match (&o.caught, &o.error) {
            (Some(c), _) => say!(
                TAG,
                "{label}: DETECTED by {} after {}: {}",
                c.by,
                fmt_secs(c.after),
                c.why
            ),
            (None, None) if !INTERRUPTED.load(Ordering::SeqCst) => {
                say!(TAG, "{label}: survived {} s of fuzzing", args.budget)
            }
            _ => {}
        }
        let _ = fs::remove_dir_all(work_dir().join("run").join(label));
        if INTERRUPTED.load(Ordering::SeqCst) && o.caught.is_none() && o.error.is_none() {
            // Cut short: neither detected nor survived.
            break;
        }
        outcomes.push(o);
    }
    // Leave the C build pointing at the unmutated source, and the Rust copy unmutated.
    for line in c_lines(&selected) {
        if let Ok(tree) = source_tree(&line) {
            let _ = write_tree(&tree, &ksrc(&line), None);
        }
    }
    if rsrc.is_dir() {
        let _ = write_rust_tree(&rsrc, None);
    }

    common::set_line(None);
    let line = print_results(&outcomes, n);
    let errors = outcomes.iter().filter(|o| o.error.is_some()).count();
    let interrupted = INTERRUPTED.load(Ordering::SeqCst);
    if interrupted {
        warn!(TAG, "interrupted after {} of {n} mutants", outcomes.len());
    }
    if errors > 0 {
        warn!(
            TAG,
            "{errors} mutant(s) could not be tested (build failed); logs in {}",
            rel(&work_dir().join("logs"))
        );
    }
    println!("{line}");
    let all_detected = outcomes.len() == n && outcomes.iter().all(|o| o.caught.is_some());
    Ok(if errors > 0 || interrupted {
        EXIT_SETUP
    } else if all_detected {
        EXIT_OK
    } else {
        EXIT_FINDING
    })
}

// ---------------------------------------------------------------------------------------------
// Common-mode mutants (`mutants/common.spec`): the same bug in pgtable.c and rust-pgtable, so
// the two sides agree and only the architecture oracle can tell.

mod common {
    use std::path::{Path, PathBuf};
    use std::sync::Mutex;

    use super::{Kind, Mutant, mutants_dir, parse_spec, sections};
    use crate::util::{Res, rel, setup_err};

    /// The kernel line a common-mode mutant's C half is planted in (the pinned tree the
    /// mutants copy), and the line its fuzzers are restricted to (`KPD_LINE`): inputs of
    /// another line would run an unmutated C side against the mutated port and diverge.
    pub const LINE: &str = "6.12";

    /// Keys of a section that are not a rule's.
    const SHARED: &[&str] = &["desc", "expect"];

    static LINE_ONLY: Mutex<Option<String>> = Mutex::new(None);
    static NO_ARCH: Mutex<bool> = Mutex::new(false);

    /// Parses `common.spec`: every section splits into a C rule (`c.` keys) and a Rust rule
    /// (`rust.` keys), each checked exactly like a c.spec or rust.spec rule.
    pub fn parse(text: &str, origin: &str) -> Result<Vec<Mutant>, String> {
        let mut out = vec![];
        for (name, kv) in sections(text, origin)? {
            let err = |m: String| format!("{origin}: [{name}]: {m}");
            let half = |prefix: &str, c: bool| -> Result<Mutant, String> {
                let mut spec = format!("[{name}]\n");
                for (k, v) in &kv {
                    if SHARED.contains(&k.as_str()) {
                        spec.push_str(&format!("{k} = {v}\n"));
                    } else if let Some(k) = k.strip_prefix(prefix) {
                        spec.push_str(&format!("{k} = {v}\n"));
                    }
                }
                let mut ms = parse_spec(&spec, origin, c)?;
                ms.pop().ok_or_else(|| err("empty section".into()))
            };
            let (c, rust) = (half("c.", true)?, half("rust.", false)?);
            for (k, _) in &kv {
                let known = SHARED.contains(&k.as_str())
                    || k == "rule"
                    || k.starts_with("c.")
                    || k.starts_with("rust.");
                if !known {
                    return Err(err(format!(
                        "unknown key `{k}` (allowed: desc, expect, rule, c.<c.spec key>, \
                         rust.<rust.spec key>)"
                    )));
                }
            }
            let rule = kv
                .iter()
                .find(|(k, _)| k == "rule")
                .map(|(_, v)| v.clone())
                .ok_or_else(|| err("missing `rule` (the architecture rule it breaks)".into()))?;
            let (Kind::C(c_rule), Kind::Rust(rust_rule)) = (c.kind, rust.kind) else {
                return Err(err("internal: halves of the wrong kind".into()));
            };
            out.push(Mutant {
                name,
                desc: c.desc,
                expect: c.expect,
                kind: Kind::Common {
                    c: c_rule,
                    rust: rust_rule,
                    rule,
                },
                line: Some(LINE.to_string()),
            });
        }
        Ok(out)
    }

    /// The common-mode mutants of `mutants/common.spec` (none when the file is absent).
    pub fn load() -> Res<Vec<Mutant>> {
        let p = mutants_dir().join("common.spec");
        if !p.is_file() {
            return Ok(vec![]);
        }
        let text = std::fs::read_to_string(&p)
            .map_err(|e| setup_err(format!("cannot read {}: {e}", rel(&p))))?;
        parse(&text, "mutants/common.spec").map_err(setup_err)
    }

    /// Restricts the fuzzers and CLI runs that follow to `line` (None: no restriction).
    pub fn set_line(line: Option<&str>) {
        *LINE_ONLY.lock().unwrap_or_else(|e| e.into_inner()) = line.map(str::to_string);
    }

    pub fn set_no_arch(on: bool) {
        *NO_ARCH.lock().unwrap_or_else(|e| e.into_inner()) = on;
    }

    /// Environment for a fuzzer or CLI run of the current mutant.
    pub fn child_env() -> Vec<(&'static str, String)> {
        let mut env = vec![];
        if let Some(l) = LINE_ONLY.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
            env.push(("KPD_LINE", l.clone()));
        }
        if *NO_ARCH.lock().unwrap_or_else(|e| e.into_inner()) {
            env.push(("KPD_NO_ARCH", "1".to_string()));
        }
        env
    }

    /// The text scenarios a mutant is replayed on: for a common-mode mutant, those of its
    /// line only (a scenario names its line in `config kernel=...`; none means 6.12).
    pub fn scenarios_for(m: &Mutant, files: &[PathBuf]) -> Vec<PathBuf> {
        if !matches!(m.kind, Kind::Common { .. }) {
            return files.to_vec();
        }
        files
            .iter()
            .filter(|f| line_of(f) == LINE)
            .cloned()
            .collect()
    }

    fn line_of(f: &Path) -> String {
        let text = std::fs::read_to_string(f).unwrap_or_default();
        text.lines()
            .find(|l| l.starts_with("config "))
            .and_then(|l| {
                l.split_whitespace()
                    .find_map(|kv| kv.strip_prefix("kernel="))
                    .map(str::to_string)
            })
            .unwrap_or_else(|| LINE.to_string())
    }

    #[cfg(test)]
    mod tests {
        use super::*;
        use crate::mutants::{Action, CRule};

        #[test]
        fn a_section_is_one_rule_per_side() {
            let text = "[cm-x]\ndesc = d\nexpect = hyp\nrule = bbm\nc.function = f\n\
                        c.find = a -> b\nc.action = replace\nc.with = c\n\
                        rust.file = rust-pgtable/src/hyp.rs\nrust.function = T::g\n\
                        rust.find = x . y\nrust.count = 2\nrust.nth = 2\n\
                        rust.action = delete-statement\n";
            let ms = parse(text, "t").unwrap();
            assert_eq!(ms.len(), 1);
            assert_eq!(
                (ms[0].name.as_str(), ms[0].expect.as_str()),
                ("cm-x", "hyp")
            );
            let Kind::Common { c, rust, rule } = &ms[0].kind else {
                panic!("{:?}", ms[0].kind)
            };
            assert_eq!(rule, "bbm");
            assert_eq!(
                *c,
                CRule {
                    file: super::super::PGTABLE_C.into(),
                    function: "f".into(),
                    find: "a -> b".into(),
                    count: 1,
                    nth: 1,
                    action: Action::Replace("c".into()),
                }
            );
            assert_eq!(
                *rust,
                CRule {
                    file: "rust-pgtable/src/hyp.rs".into(),
                    function: "T::g".into(),
                    find: "x . y".into(),
                    count: 2,
                    nth: 2,
                    action: Action::DeleteStatement,
                }
            );
            for bad in [
                text.replace("rule = bbm\n", ""),
                text.replace("rust.file", "rustfile"),
                text.replace("rust.file = rust-pgtable/src/hyp.rs\n", ""),
                text.replace("c.with = c\n", ""),
            ] {
                assert!(parse(&bad, "t").is_err(), "{bad}");
            }
        }

        #[test]
        fn scenario_lines() {
            let dir = std::env::temp_dir().join(format!("kpd-common-{}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            let (a, b) = (dir.join("a.txt"), dir.join("b.txt"));
            std::fs::write(&a, "# x\nconfig kernel=7.3 stage=hyp\n").unwrap();
            std::fs::write(&b, "# y\nconfig stage=hyp\n").unwrap();
            assert_eq!(line_of(&a), "7.3");
            assert_eq!(line_of(&b), "6.12");
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A timeout or oom alone is not a detection; next to a crash it is the crash that counts.
    #[test]
    fn only_a_crash_or_leak_is_a_finding_of_the_planted_bug() {
        let d = std::env::temp_dir().join(format!("kpd-arts-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        assert_eq!(resource_artifact(&d), None);
        fs::write(d.join("timeout-abc"), b"x").unwrap();
        assert_eq!(resource_artifact(&d), Some(d.join("timeout-abc")));
        fs::remove_file(d.join("timeout-abc")).unwrap();
        fs::write(d.join("oom-abc"), b"x").unwrap();
        assert_eq!(resource_artifact(&d), Some(d.join("oom-abc")));
        fs::write(d.join("crash-def"), b"x").unwrap();
        assert_eq!(resource_artifact(&d), None);
        fs::remove_dir_all(&d).unwrap();
    }

    // A made-up C file (not kernel code) exercising the locator and both actions.
    const SRC: &str = "static int helper(int a);\n\
/* helper(x) in a comment */\n\
static int helper(int a)\n\
{\n\
\tint b = a >> 2; // a >> 2 again\n\
\tif (a)\n\
\t\tfoo(a, \"a >> 2\");\n\
\tbar(a,\n\
\t    b);\n\
\treturn b + a >> 2;\n\
}\n\
\n\
int not_helper(int a)\n\
{\n\
\treturn helper(a);\n\
}\n";

    fn rule(function: &str, find: &str, count: usize, nth: usize, action: Action) -> CRule {
        CRule {
            file: PGTABLE_C.into(),
            function: function.into(),
            find: find.into(),
            count,
            nth,
            action,
        }
    }

    #[test]
    fn blanking_keeps_offsets() {
        let b = blank_comments(SRC);
        assert_eq!(b.len(), SRC.len());
        assert!(!b.contains("comment") && !b.contains("again"));
        assert!(b.contains("foo(a, \"      \")"));
    }

    #[test]
    fn locates_definition_not_prototype_or_caller() {
        let code = blank_comments(SRC);
        let (s, e) = find_function(&code, "helper").unwrap();
        assert!(code[s..e].starts_with("{\n\tint b"));
        assert!(code[s..e].ends_with("a >> 2;\n}"));
        let (s, _) = find_function(&code, "not_helper").unwrap();
        assert!(code[s..].starts_with("{\n\treturn helper"));
        assert!(find_function(&code, "missing").is_err());
        let twice = format!("{SRC}int helper(int a)\n{{\n}}\n");
        let e = find_function(&blank_comments(&twice), "helper").unwrap_err();
        assert!(e.contains("2 times"), "{e}");
    }

    #[test]
    fn replace_counts_matches_in_code_only() {
        // `a >> 2` occurs twice in code (plus once in a comment and once in a string).
        let r = rule("helper", "a>>2", 2, 2, Action::Replace("a >> 3".into()));
        let out = apply_rule(SRC, &r).unwrap();
        assert!(out.contains("return b + a >> 3;"));
        assert!(out.contains("int b = a >> 2; // a >> 2 again"));
        let wrong = rule("helper", "a >> 2", 1, 1, Action::Replace("x".into()));
        let e = apply_rule(SRC, &wrong).unwrap_err();
        assert!(e.contains("matches 2 time(s)"), "{e}");
        let none = rule("helper", "zzz", 1, 1, Action::Replace("x".into()));
        assert!(apply_rule(SRC, &none).unwrap_err().contains("matches 0"));
    }

    #[test]
    fn delete_statement_spans_lines_and_keeps_syntax() {
        let r = rule("helper", "bar", 1, 1, Action::DeleteStatement);
        let out = apply_rule(SRC, &r).unwrap();
        assert!(!out.contains("bar"));
        assert!(out.contains("\"a >> 2\"); ;\n\treturn b"), "{out}");
        // A statement guarded by an if loses the guard too (the if has no else).
        let r = rule("helper", "foo", 1, 1, Action::DeleteStatement);
        let out = apply_rule(SRC, &r).unwrap();
        assert!(out.contains("int b = a >> 2; ;\n\tbar(a,"), "{out}");
        // A match inside a call's arguments deletes the whole call.
        let r = rule("helper", "b ) ;", 1, 1, Action::DeleteStatement);
        let out = apply_rule(SRC, &r).unwrap();
        assert!(out.contains("\"a >> 2\"); ;\n\treturn b"), "{out}");
    }

    #[test]
    fn spec_parsing_and_errors() {
        let text = "# c\n[m-one]\ndesc = d\nexpect = stage2\nfunction = f\nfind = a -> b\n\
                    action = replace\nwith = c\n\n[m-two]\ndesc = e\nexpect = hyp\nfunction = g\n\
                    find = x\ncount = 2\nnth = 2\naction = delete-statement\nfile = h.h\n";
        let ms = parse_spec(text, "t", true).unwrap();
        assert_eq!(ms.len(), 2);
        // A C rule edits line 6.12 unless it names another.
        assert_eq!(ms[0].line.as_deref(), Some("6.12"));
        let on73 = text.replace("[m-two]\n", "[m-two]\nline = 7.3\n");
        let ms73 = parse_spec(&on73, "t", true).unwrap();
        assert_eq!(ms73[1].line.as_deref(), Some("7.3"));
        assert_eq!(
            ms[0].kind,
            Kind::C(rule("f", "a -> b", 1, 1, Action::Replace("c".into())))
        );
        let Kind::C(r) = &ms[1].kind else { panic!() };
        assert_eq!((r.count, r.nth, r.file.as_str()), (2, 2, "h.h"));
        for bad in [
            "[x]\ndesc = d\nexpect = nope\nfunction = f\nfind = a\naction = replace\nwith = b\n",
            "[x]\ndesc = d\nexpect = hyp\nfunction = f\nfind = a\naction = replace\n",
            "[x]\ndesc = d\nexpect = hyp\nfunction = f\nfind = a\naction = zap\n",
            "[x]\ndesc = d\nexpect = hyp\nfunction = f\nfind = a\nnth = 2\naction = delete-statement\n",
            "[x]\ndesc = d\nexpect = hyp\nfunction = f\nfind = a\naction = delete-statement\ncolor = red\n",
            "desc = d\n",
        ] {
            assert!(parse_spec(bad, "t", true).is_err(), "{bad}");
        }
        let rust = "[r]\ndesc = d\nexpect = walk\nfile = rust-pgtable/src/a.rs\nfunction = T::f\n\
                    find = x\naction = delete-statement\n";
        let rs = parse_spec(rust, "t", false).unwrap();
        assert_eq!(rs[0].line, None);
        let e = parse_spec(&format!("{rust}line = 7.3\n"), "t", false).unwrap_err();
        assert!(e.contains("unknown key `line`"), "{e}");
        let mut want = rule("T::f", "x", 1, 1, Action::DeleteStatement);
        want.file = "rust-pgtable/src/a.rs".into();
        assert_eq!(rs[0].kind, Kind::Rust(want));
        // A Rust rule names its file, and only a rust-pgtable source file.
        for bad in [
            "[r]\ndesc = d\nexpect = walk\nfunction = f\nfind = x\naction = delete-statement\n",
            "[r]\ndesc = d\nexpect = walk\nfile = src/lib.rs\nfunction = f\nfind = x\n\
             action = delete-statement\n",
        ] {
            assert!(parse_spec(bad, "t", false).is_err(), "{bad}");
        }
    }

    // A made-up Rust file (not rust-pgtable code) exercising the Rust lexer and locator.
    const RS: &str = r##"/// fn helper() in a doc comment { }
struct S<'a> { r: &'a u64 }

impl<'a> S<'a> {
    fn helper(&self) -> u64 {
        let q = '{'; /* nested /* { */ } */
        let t = "fn helper() { \" }";
        let raw = r#"} " {"#;
        'outer: loop { break 'outer; }
        *self.r >> 2
    }
}

trait Tr {
    fn helper(&self) -> u64;
}

impl Tr for u64 {
    fn helper(&self) -> u64 {
        let b = b'}';
        bar(*self, b as u64 >> 2);
        *self >> 2
    }
}
"##;

    #[test]
    fn rust_blanking_keeps_code_and_lifetimes() {
        let b = blank_comments_rust(RS);
        assert_eq!(b.len(), RS.len());
        for gone in ["doc comment", "nested", "fn helper() {", "} \" {"] {
            assert!(!b.contains(gone), "{gone} survived:\n{b}");
        }
        for kept in [
            "S<'a>",
            "&'a u64",
            "'outer: loop",
            "break 'outer;",
            "let q = ' ';",
        ] {
            assert!(b.contains(kept), "{kept} was blanked:\n{b}");
        }
        assert!(b.contains("let raw = r#\"     \"#;"), "{b}");
        assert!(b.contains("let b = b' ';"), "{b}");
    }

    #[test]
    fn rust_locates_fn_by_impl() {
        let code = blank_comments_rust(RS);
        // Two bodies (the trait declaration has none): plain `helper` is ambiguous.
        let e = find_rust_fn(&code, "helper").unwrap_err();
        assert!(e.contains("2 times") && e.contains("Type::helper"), "{e}");
        let (s, e) = find_rust_fn(&code, "S::helper").unwrap();
        assert!(code[s..e].starts_with("{\n        let q") && code[s..e].ends_with(">> 2\n    }"));
        let (s, _) = find_rust_fn(&code, "Tr::helper").unwrap();
        assert!(code[s..].starts_with("{\n        let b"));
        assert!(find_rust_fn(&code, "Nope::helper").is_err());
        assert!(find_rust_fn(&code, "missing").is_err());
    }

    #[test]
    fn rust_rules_apply_to_rust_files() {
        let r = |function: &str, find: &str, action| CRule {
            file: "rust-pgtable/src/x.rs".into(),
            ..rule(function, find, 1, 1, action)
        };
        let out = apply_rule(RS, &r("S::helper", "> > 2", Action::Replace(">> 3".into()))).unwrap();
        assert_eq!(
            changed_lines(RS, &out),
            "-        *self.r >> 2\n+        *self.r >> 3\n"
        );
        let out = apply_rule(RS, &r("Tr::helper", "bar", Action::DeleteStatement)).unwrap();
        assert!(out.contains("let b = b'}'; ;\n        *self >> 2"), "{out}");
        // Inside strings, comments and char literals nothing matches.
        let e = apply_rule(RS, &r("S::helper", "fn", Action::DeleteStatement)).unwrap_err();
        assert!(e.contains("matches 0"), "{e}");
    }

    #[test]
    fn changed_region() {
        assert_eq!(changed_lines("a\nb\nc\n", "a\nx\ny\nc\n"), "-b\n+x\n+y\n");
        assert_eq!(changed_lines("a\nb\n", "a\nb\n"), "");
    }

    #[test]
    fn summary_median_and_max() {
        let d = |s: f64| Duration::from_secs_f64(s);
        assert_eq!(
            summary_line(&[d(3.0), d(1.0), d(10.0)], 4),
            "mutants: detected 3/4, median 3.0s, max 10.0s"
        );
        assert_eq!(
            summary_line(&[d(1.0), d(2.0)], 2),
            "mutants: detected 2/2, median 1.5s, max 2.0s"
        );
        assert_eq!(
            summary_line(&[], 5),
            "mutants: detected 0/5, median 0.0s, max 0.0s"
        );
    }

    #[test]
    fn committed_specs_are_consistent() {
        let all = load_all().unwrap();
        let c = all.iter().filter(|m| matches!(m.kind, Kind::C(_))).count();
        let rust = all
            .iter()
            .filter(|m| matches!(m.kind, Kind::Rust(_)))
            .count();
        let common = all.len() - c - rust;
        assert!(
            c >= 14 && rust >= 10 && common >= 10,
            "{c} C, {rust} Rust, {common} common"
        );
        check_rust(&all).unwrap();
        // With a line's locked kernel source present, every C rule of that line must still
        // apply exactly (the cache, not LINUX_SRC: a patched tree is checked when mutants run
        // on it).
        let checked = check_c(&all, true, &pinned_tree).unwrap();
        for line in c_lines(&all.iter().collect::<Vec<_>>()) {
            let tree = pinned_tree(&line).unwrap();
            if !tree.join(PGTABLE_C).is_file() {
                eprintln!("kernel source of line {line} not present; its C rules not checked");
            } else {
                assert!(checked.contains(&tree.display().to_string()), "{line}");
            }
        }
        let on = |l: &str| all.iter().filter(|m| m.line.as_deref() == Some(l)).count();
        assert!(on("7.3") >= 10, "{} C mutants on 7.3", on("7.3"));
    }

    #[test]
    fn scenario_targets_from_paths() {
        assert_eq!(
            scenario_target(Path::new("fuzz/scenarios/host_stage2/a.txt")),
            Some("host_stage2")
        );
        assert_eq!(scenario_target(Path::new("tests/regressions/a.txt")), None);
    }
}
