// SPDX-License-Identifier: GPL-2.0-only
//! Human-readable, line-based text format (the source of truth for
//! committed scenarios).
//!
//! ```text
//! # comments start with '#', blank lines are ignored
//! kvm-pgtable-diff-stream v1
//! config stage=stage2 context=nvhe granule=4k ia_bits=40 start_level=auto flags=idmap features=fwb,tlb_range parange=5 vmid16=yes arena_pages=512 fail_after=none
//! force_pte host memory:0x0+0x40000000 mmio:0x40000000+0x10000000
//! s2_map addr=0x200000 size=0x200000 phys=0x200000 prot=RWX mc=8 flags=0
//! s2_set_owner addr=0x400000 size=0x1000 mc=4 owner=1
//! walk addr=0x0 size=0x400000 flags=LEAF|TABLE_POST script=fail_at:3:-EAGAIN
//! ```
//!
//! Structure: the header line, one `config` line, an optional `force_pte`
//! line (`none`, `host [memory:START+SIZE|mmio:START+SIZE]...` or
//! `arbitrary pattern=N`; default none), then one op per line. In the
//! `config` line only `stage` is required; missing keys take the values of
//! [`Config::new`]. Op lines need every key (any order).
//!
//! Values: integers are hex (`0x..`, `_` separators allowed) or decimal
//! (signed where the field is: `level`, errno); booleans `yes`/`no`;
//! memcache `none` or a page count; prot `none` or `|`-joined `R`/`W`/`X`
//! letters (one token, e.g. `RWX`), `DEVICE`, `NC`, `SW0`..`SW3` and
//! raw numbers for other bits; walk flags `0` or `|`-joined
//! `LEAF|TABLE_PRE|TABLE_POST|SHARED|HANDLE_FAULT|SKIP_BBM_TLBI|SKIP_CMO`
//! (and raw numbers); script `ok` or `fail_at:N:ERRNO` where ERRNO is a
//! signed number or `-EAGAIN`/`-EINVAL`/`-ENOMEM`/`-E2BIG`.
//!
//! Any op of a stage-2 stream may end with `race=AT:[upK:]WHAT`: another
//! agent writes a descriptor just before the op's descriptor access
//! number AT (see [`super::race`]). WHAT is `af` (the hardware sets the
//! access flag), `leaf(PROT)` or `table` (another walker's completed
//! mapping), or `locked>leaf(PROT)` / `locked>table` (another walker in the
//! middle of break-before-make, which publishes at the end of the op);
//! `upK` writes the table entry K levels above the accessed descriptor.
//! E.g. `s2_relax_perms addr=0x1000 prot=RW race=2:locked>leaf(R)`.
//!
//! The printer is canonical: `print(&parse(&print(s))?) == print(s)` and
//! `parse(&print(s)) == Ok(s)` for every valid stream. The parser rejects
//! streams that are not valid ([`OpStream::validate`]), so every parsed
//! scenario can be encoded exactly as fuzzer input.

use std::fmt::{self, Write as _};

use super::codec::{hex, parse_bool, parse_num, yes_no};
use super::model::*;

/// Header line (with the text format version).
pub const TEXT_HEADER: &str = "kvm-pgtable-diff-stream v1";
const HEADER_WORD: &str = "kvm-pgtable-diff-stream";

/// Whether a file holds a readable stream rather than raw fuzzer bytes: it
/// starts with the header, or with a `#` comment and is text throughout
/// (UTF-8 without control characters other than tab, CR and LF). Raw inputs
/// may begin with `#` too (0x23 is a valid header byte), but the fuzzer's
/// inputs are mostly zero bytes and never pass for text; a file that does
/// is parsed, so a broken scenario gets the parser's error.
pub fn is_text(bytes: &[u8]) -> bool {
    if bytes.starts_with(TEXT_HEADER.as_bytes()) {
        return true;
    }
    bytes.starts_with(b"#")
        && std::str::from_utf8(bytes).is_ok_and(|t| {
            !t.chars()
                .any(|c| c.is_control() && !matches!(c, '\t' | '\r' | '\n'))
        })
}

/// A text-format error: 1-based line number and what was expected.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseError {
    pub line: usize,
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

impl std::error::Error for ParseError {}

// ---------------------------------------------------------------- printing

impl fmt::Display for Config {
    /// The `config` line followed by the `force_pte` line (no trailing
    /// newline).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = self;
        let stage = match c.stage {
            Stage::Hyp => "hyp",
            Stage::Stage2 => "stage2",
        };
        let context = match c.context {
            Context::Nvhe => "nvhe",
            Context::Kernel => "kernel",
        };
        let start_level = match c.start_level {
            None => "auto".to_string(),
            Some(l) => l.to_string(),
        };
        let mut flags = Vec::new();
        if c.s2_flags.idmap {
            flags.push("idmap");
        }
        if c.s2_flags.nofwb {
            flags.push("nofwb");
        }
        if c.s2_flags.as_s1 {
            flags.push("as_s1");
        }
        let fb = c.features.to_bits();
        let features: Vec<&str> = Features::NAMES
            .iter()
            .enumerate()
            .filter(|(i, _)| fb & (1 << i) != 0)
            .map(|(_, n)| *n)
            .collect();
        let list = |v: &[&str]| {
            if v.is_empty() {
                "none".to_string()
            } else {
                v.join(",")
            }
        };
        write!(
            f,
            "config kernel={} stage={stage} context={context} granule={} ia_bits={} start_level={start_level} \
             flags={} features={} parange={} vmid16={} arena_pages={} fail_after={}",
            c.kernel.name(),
            c.granule.name(),
            c.ia_bits,
            list(&flags),
            list(&features),
            c.mmfr0_parange,
            yes_no(c.vmid16),
            c.arena_pages,
            match c.alloc_fail_after {
                None => "none".to_string(),
                Some(n) => n.to_string(),
            },
        )?;
        if let Teardown::RangeChunks { blocks_log2 } = c.teardown {
            write!(f, " teardown=chunks:{}", 1u32 << blocks_log2)?;
        }
        f.write_str("\nforce_pte ")?;
        match &c.force_pte {
            ForcePtePolicy::None => f.write_str("none"),
            ForcePtePolicy::Host { regions } => {
                f.write_str("host")?;
                for g in regions {
                    let kind = match g.kind {
                        RegionKind::Memory => "memory",
                        RegionKind::Mmio => "mmio",
                    };
                    write!(f, " {kind}:{}+{}", hex(g.start), hex(g.size))?;
                }
                Ok(())
            }
            ForcePtePolicy::Arbitrary { pattern } => {
                write!(f, "arbitrary pattern={}", hex(*pattern))
            }
        }
    }
}

impl fmt::Display for OpStream {
    /// Canonical text (same as [`print()`]).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{TEXT_HEADER}")?;
        writeln!(f, "{}", self.config)?;
        for (i, _) in self.ops.iter().enumerate() {
            writeln!(f, "{}", self.op_text(i))?;
        }
        Ok(())
    }
}

/// Canonical text of a stream.
pub fn print(s: &OpStream) -> String {
    s.to_string()
}

/// Each op's canonical line with its index (for divergence reports).
pub fn op_lines(s: &OpStream) -> Vec<(usize, String)> {
    (0..s.ops.len()).map(|i| (i, s.op_text(i))).collect()
}

impl OpStream {
    /// The canonical line of op `i`, with its race.
    pub fn op_text(&self, i: usize) -> String {
        let mut line = self.ops[i].text(&self.config);
        if let Some(race) = self.race(i) {
            line.push_str(" race=");
            line.push_str(&race.text(&self.config));
        }
        line
    }

    /// Same as [`op_lines`].
    pub fn op_lines(&self) -> Vec<(usize, String)> {
        op_lines(self)
    }

    /// Report form: the header and config lines, then every op as
    /// `   N: <line>`, with op `mark` (e.g. the first divergence) prefixed
    /// by `>>` instead of spaces. Meant for humans, not for parsing.
    pub fn annotated(&self, mark: Option<usize>) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "{TEXT_HEADER}");
        let _ = writeln!(out, "{}", self.config);
        for (i, line) in self.op_lines() {
            let m = if Some(i) == mark { ">>" } else { "  " };
            let _ = writeln!(out, "{m} {i:3}: {line}");
        }
        out
    }
}

// ----------------------------------------------------------------- parsing

type PResult<T> = Result<T, String>;

struct Fields<'a> {
    what: &'a str,
    kvs: Vec<(&'a str, &'a str)>,
}

impl<'a> Fields<'a> {
    fn new(what: &'a str, toks: &[&'a str], allowed: &[&str]) -> PResult<Self> {
        let mut kvs: Vec<(&str, &str)> = Vec::new();
        for t in toks {
            let (k, v) = t
                .split_once('=')
                .ok_or_else(|| format!("{what}: expected key=value, got `{t}`"))?;
            if !allowed.contains(&k) {
                return Err(format!(
                    "{what}: unknown key `{k}` (expected one of: {})",
                    allowed.join(", ")
                ));
            }
            if kvs.iter().any(|(k2, _)| *k2 == k) {
                return Err(format!("{what}: duplicate key `{k}`"));
            }
            kvs.push((k, v));
        }
        Ok(Fields { what, kvs })
    }

    fn opt(&self, key: &str) -> Option<&'a str> {
        self.kvs.iter().find(|(k, _)| *k == key).map(|(_, v)| *v)
    }

    fn req(&self, key: &str) -> PResult<&'a str> {
        self.opt(key)
            .ok_or_else(|| format!("{}: missing key `{key}`", self.what))
    }

    fn get<T>(&self, key: &str, f: impl Fn(&str) -> PResult<T>) -> PResult<T> {
        let v = self.req(key)?;
        f(v).map_err(|e| format!("{} {key}: {e}", self.what))
    }

    fn u64(&self, key: &str) -> PResult<u64> {
        self.get(key, |v| parse_num(v, key))
    }
}

/// An op line: the op and its race.
fn parse_op_line(name: &str, toks: &[&str], cfg: &Config) -> PResult<(Op, Option<Race>)> {
    let mut race = None;
    let mut rest = Vec::with_capacity(toks.len());
    for t in toks {
        match t.strip_prefix("race=") {
            Some(_) if race.is_some() => return Err(format!("{name}: duplicate key `race`")),
            Some(v) => race = Some(Race::parse(v, cfg).map_err(|e| format!("{name} race: {e}"))?),
            None => rest.push(*t),
        }
    }
    Ok((parse_op(name, &rest, cfg)?, race))
}

fn parse_op(name: &str, toks: &[&str], cfg: &Config) -> PResult<Op> {
    let kind = OpKind::from_name(name, cfg.kernel).ok_or_else(|| {
        let mut names: Vec<&str> = OpKind::ALL
            .iter()
            .filter(|k| k.valid_on(cfg.kernel))
            .map(|k| k.name())
            .collect();
        names.dedup();
        match OpKind::ALL.iter().find(|k| k.name() == name) {
            Some(_) => format!(
                "op `{name}` does not exist in kernel {}'s API (expected one of: {})",
                cfg.kernel.name(),
                names.join(", ")
            ),
            None => format!(
                "unknown op `{name}` (expected one of: {})",
                names.join(", ")
            ),
        }
    })?;
    let f = Fields::new(name, toks, kind.keys())?;
    let op = Op::from_text(kind, &|key| f.req(key), cfg)?;
    op.validate_fields()
        .map_err(|(key, why)| format!("{name} {key}: {why}"))?;
    Ok(op)
}

const CONFIG_KEYS: [&str; 13] = [
    "kernel",
    "stage",
    "context",
    "granule",
    "ia_bits",
    "start_level",
    "flags",
    "features",
    "parange",
    "vmid16",
    "arena_pages",
    "fail_after",
    "teardown",
];

fn parse_config(toks: &[&str]) -> PResult<Config> {
    let f = Fields::new("config", toks, &CONFIG_KEYS)?;
    let stage = f.get("stage", |v| match v {
        "hyp" => Ok(Stage::Hyp),
        "stage2" => Ok(Stage::Stage2),
        _ => Err(format!("expected hyp or stage2, got `{v}`")),
    })?;
    let mut c = Config::new(stage);
    // Scenarios written before there were two lines mean 6.12.
    if f.opt("kernel").is_some() {
        c.kernel = f.get("kernel", |v| {
            KernelLine::from_name(v).ok_or_else(|| {
                let names: Vec<&str> = KernelLine::ALL.iter().map(|l| l.name()).collect();
                format!("expected one of {}, got `{v}`", names.join(", "))
            })
        })?;
    }
    if f.opt("context").is_some() {
        c.context = f.get("context", |v| match v {
            "nvhe" => Ok(Context::Nvhe),
            "kernel" => Ok(Context::Kernel),
            _ => Err(format!("expected nvhe or kernel, got `{v}`")),
        })?;
    }
    if f.opt("granule").is_some() {
        c.granule = f.get("granule", |v| {
            Granule::ALL
                .iter()
                .copied()
                .find(|g| g.name() == v)
                .ok_or_else(|| format!("expected 4k, 16k or 64k, got `{v}`"))
        })?;
    }
    if f.opt("ia_bits").is_some() {
        c.ia_bits = f.get("ia_bits", |v| parse_num(v, "ia_bits"))?;
    }
    if f.opt("start_level").is_some() {
        c.start_level = f.get("start_level", |v| {
            if v == "auto" {
                Ok(None)
            } else {
                parse_num(v, "start_level").map(Some)
            }
        })?;
    }
    if f.opt("flags").is_some() {
        c.s2_flags = f.get("flags", |v| {
            let mut fl = S2Flags::default();
            if v != "none" {
                for t in v.split(',') {
                    match t {
                        "idmap" => fl.idmap = true,
                        "nofwb" => fl.nofwb = true,
                        "as_s1" => fl.as_s1 = true,
                        _ => {
                            return Err(format!(
                                "expected none or a comma list of idmap, nofwb (6.12), as_s1 (7.x), got `{t}`"
                            ));
                        }
                    }
                }
            }
            Ok(fl)
        })?;
    }
    if f.opt("features").is_some() {
        c.features = f.get("features", |v| {
            let mut bits = 0u8;
            if v != "none" {
                for t in v.split(',') {
                    let i = Features::NAMES
                        .iter()
                        .position(|n| *n == t)
                        .ok_or_else(|| {
                            format!(
                                "expected none or a comma list of {}, got `{t}`",
                                Features::NAMES.join(", ")
                            )
                        })?;
                    bits |= 1 << i;
                }
            }
            Ok(Features::from_bits(bits))
        })?;
    }
    if f.opt("parange").is_some() {
        c.mmfr0_parange = f.get("parange", |v| parse_num(v, "parange"))?;
    }
    if f.opt("vmid16").is_some() {
        c.vmid16 = f.get("vmid16", parse_bool)?;
    }
    if f.opt("arena_pages").is_some() {
        c.arena_pages = f.get("arena_pages", |v| parse_num(v, "arena_pages"))?;
    }
    if f.opt("teardown").is_some() {
        c.teardown = f.get("teardown", |v| {
            if v == "destroy" {
                return Ok(Teardown::Destroy);
            }
            let n: u32 = v
                .strip_prefix("chunks:")
                .ok_or_else(|| format!("expected destroy or chunks:N, got `{v}`"))
                .and_then(|n| parse_num(n, "chunks"))?;
            if !n.is_power_of_two() {
                return Err(format!(
                    "chunks:{n}: the block count must be a power of two"
                ));
            }
            Ok(Teardown::RangeChunks {
                blocks_log2: n.trailing_zeros() as u8,
            })
        })?;
    }
    if f.opt("fail_after").is_some() {
        c.alloc_fail_after = f.get("fail_after", |v| {
            if v == "none" {
                Ok(None)
            } else {
                parse_num(v, "fail_after").map(Some)
            }
        })?;
    }
    Ok(c)
}

fn parse_force_pte(toks: &[&str]) -> PResult<ForcePtePolicy> {
    let expected =
        "expected `none`, `host [memory:START+SIZE|mmio:START+SIZE]...` or `arbitrary pattern=N`";
    match toks.first().copied() {
        Some("none") if toks.len() == 1 => Ok(ForcePtePolicy::None),
        Some("host") => {
            let mut regions = Vec::new();
            for t in &toks[1..] {
                let bad = || {
                    format!(
                        "force_pte host: expected memory:START+SIZE or mmio:START+SIZE, got `{t}`"
                    )
                };
                let (kind, range) = t.split_once(':').ok_or_else(bad)?;
                let kind = match kind {
                    "memory" => RegionKind::Memory,
                    "mmio" => RegionKind::Mmio,
                    _ => return Err(bad()),
                };
                let (start, size) = range.split_once('+').ok_or_else(bad)?;
                regions.push(Region {
                    start: parse_num(start, "region start")?,
                    size: parse_num(size, "region size")?,
                    kind,
                });
            }
            Ok(ForcePtePolicy::Host { regions })
        }
        Some("arbitrary") => {
            let f = Fields::new("force_pte arbitrary", &toks[1..], &["pattern"])?;
            Ok(ForcePtePolicy::Arbitrary {
                pattern: f.u64("pattern")?,
            })
        }
        _ => Err(format!("force_pte: {expected}")),
    }
}

/// Parses the text format. Errors carry the 1-based line number.
pub fn parse(text: &str) -> Result<OpStream, ParseError> {
    let err = |line: usize, message: String| ParseError { line, message };
    let mut header_seen = false;
    let mut config: Option<(Config, usize)> = None;
    let mut force_pte: Option<(ForcePtePolicy, usize)> = None;
    let mut ops: Vec<(Op, usize)> = Vec::new();
    let mut races = std::collections::BTreeMap::new();
    let mut last_line = 0;
    for (i, raw) in text.lines().enumerate() {
        let ln = i + 1;
        last_line = ln;
        let line = raw.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let toks: Vec<&str> = line.split_whitespace().collect();
        let (word, rest) = (toks[0], &toks[1..]);
        if !header_seen {
            if word != HEADER_WORD {
                return Err(err(
                    ln,
                    format!("expected header `{TEXT_HEADER}`, got `{line}`"),
                ));
            }
            match rest {
                ["v1"] => {}
                [v] => {
                    return Err(err(
                        ln,
                        format!("unsupported text format version `{v}` (expected v1)"),
                    ));
                }
                _ => {
                    return Err(err(
                        ln,
                        format!("expected header `{TEXT_HEADER}`, got `{line}`"),
                    ));
                }
            }
            header_seen = true;
            continue;
        }
        match word {
            "config" => {
                if config.is_some() {
                    return Err(err(ln, "duplicate `config` line".into()));
                }
                config = Some((parse_config(rest).map_err(|m| err(ln, m))?, ln));
            }
            _ if config.is_none() => {
                return Err(err(
                    ln,
                    format!("expected a `config` line after the header, got `{word}`"),
                ));
            }
            "force_pte" => {
                if force_pte.is_some() {
                    return Err(err(ln, "duplicate `force_pte` line".into()));
                }
                if !ops.is_empty() {
                    return Err(err(ln, "`force_pte` must come before the first op".into()));
                }
                force_pte = Some((parse_force_pte(rest).map_err(|m| err(ln, m))?, ln));
            }
            _ => {
                let cfg = &config.as_ref().expect("checked above").0;
                let (op, race) = parse_op_line(word, rest, cfg).map_err(|m| err(ln, m))?;
                if let Some(race) = race {
                    if cfg.stage != Stage::Stage2 {
                        return Err(err(
                            ln,
                            "race: interference is modelled on stage-2 tables only".into(),
                        ));
                    }
                    races.insert(ops.len(), race);
                }
                ops.push((op, ln));
            }
        }
    }
    if !header_seen {
        return Err(err(
            last_line.max(1),
            format!("missing header `{TEXT_HEADER}`"),
        ));
    }
    let Some((mut config, cfg_line)) = config else {
        return Err(err(last_line.max(1), "missing `config` line".into()));
    };
    if let Some((fp, ln)) = force_pte {
        config.force_pte = fp;
        if let Err(m) = config.validate() {
            return Err(err(if m.contains("region") { ln } else { cfg_line }, m));
        }
    }
    config.validate().map_err(|m| err(cfg_line, m))?;
    if ops.len() > MAX_OPS {
        return Err(err(
            ops[MAX_OPS].1,
            format!("too many ops: at most {MAX_OPS} allowed"),
        ));
    }
    for (op, ln) in &ops {
        if !op.valid_for(config.stage) {
            let stage = match config.stage {
                Stage::Hyp => "hyp",
                Stage::Stage2 => "stage2",
            };
            return Err(err(
                *ln,
                format!("op `{}` is not valid for stage={stage}", op.name()),
            ));
        }
    }
    Ok(OpStream {
        config,
        ops: ops.into_iter().map(|(o, _)| o).collect(),
        races,
    })
}

impl std::str::FromStr for OpStream {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, ParseError> {
        parse(s)
    }
}
