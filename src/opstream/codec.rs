// SPDX-License-Identifier: GPL-2.0-only
//! Field codecs: how one op field is written as a binary literal, spelled
//! in the text format, parsed back, and which values are valid.
//!
//! Every field of the op table ([`super::ops`]) names one codec. The
//! binary form written here must be exactly what the field's generator
//! reads in its literal mode (`0xFF` + little-endian value, see
//! [`super::generators`]), so that `decode(encode(s)) == s`.

use super::generators::{LIT, LIT_NONE};
use super::model::{
    Config, KernelLine, MEMCACHE_MAX, Memcache, Prot, ProtLayout, VisitScript, errno, prot,
    walk_flags,
};

/// Binary output of the encoder.
pub struct Writer(pub(crate) Vec<u8>);

impl Writer {
    pub fn byte(&mut self, b: u8) {
        self.0.push(b);
    }
    pub fn lit8(&mut self, v: u8) {
        self.0.extend_from_slice(&[LIT, v]);
    }
    pub fn lit32(&mut self, v: u32) {
        self.0.push(LIT);
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    pub fn lit64(&mut self, v: u64) {
        self.0.push(LIT);
        self.0.extend_from_slice(&v.to_le_bytes());
    }
}

/// How a field of type `T` is encoded, printed, parsed and validated.
pub trait FieldCodec<T> {
    /// Writes `v` the way the field's generator reads a literal.
    fn encode(v: T, w: &mut Writer);
    /// The text form of `v` in a stream configured by `cfg`.
    fn print(v: T, cfg: &Config) -> String;
    /// Parses the text form (the message says what was expected).
    fn parse(s: &str, cfg: &Config) -> Result<T, String>;
    /// Whether the decoder can produce `v` (the text parser rejects the rest).
    fn validate(_v: T) -> Result<(), String> {
        Ok(())
    }
}

/// A `u64` written as a 64-bit literal, printed in hex.
pub enum Hex {}
/// A `u32` written as a 32-bit literal, printed in decimal.
pub enum Dec32 {}
/// A `u8` written as an 8-bit literal, printed in decimal.
pub enum Dec8 {}
/// A page-table level (`i8`), an 8-bit literal.
pub enum Level {}
/// `enum kvm_pgtable_prot` bits, a 64-bit literal, printed as names.
pub enum ProtBits {}
/// `enum kvm_pgtable_walk_flags` bits (a `u8`), printed as names.
pub enum WalkFlagBits {}
/// A memcache argument: NULL or a cache holding some pages.
pub enum Mc {}
/// A page count for a memcache (split's `nobjs`), a 32-bit literal.
pub enum McPages {}
/// A boolean stored as one raw byte (`b & 1`).
pub enum YesNo {}
/// An index stored as one raw byte.
pub enum Index {}
/// A walk visitor script.
pub enum Script {}

impl FieldCodec<u64> for Hex {
    fn encode(v: u64, w: &mut Writer) {
        w.lit64(v);
    }
    fn print(v: u64, _: &Config) -> String {
        hex(v)
    }
    fn parse(s: &str, _: &Config) -> Result<u64, String> {
        parse_int(s).and_then(|v| {
            u64::try_from(v).map_err(|_| format!("expected a non-negative integer, got `{s}`"))
        })
    }
}

impl FieldCodec<u32> for Dec32 {
    fn encode(v: u32, w: &mut Writer) {
        w.lit32(v);
    }
    fn print(v: u32, _: &Config) -> String {
        v.to_string()
    }
    fn parse(s: &str, _: &Config) -> Result<u32, String> {
        parse_num(s, "")
    }
}

impl FieldCodec<u8> for Dec8 {
    fn encode(v: u8, w: &mut Writer) {
        w.lit8(v);
    }
    fn print(v: u8, _: &Config) -> String {
        v.to_string()
    }
    fn parse(s: &str, _: &Config) -> Result<u8, String> {
        parse_num(s, "")
    }
}

impl FieldCodec<i8> for Level {
    fn encode(v: i8, w: &mut Writer) {
        w.lit8(v as u8);
    }
    fn print(v: i8, _: &Config) -> String {
        v.to_string()
    }
    fn parse(s: &str, _: &Config) -> Result<i8, String> {
        parse_num(s, "")
    }
}

impl FieldCodec<Prot> for ProtBits {
    fn encode(v: Prot, w: &mut Writer) {
        w.lit64(v);
    }
    fn print(v: Prot, cfg: &Config) -> String {
        prot_to_string(v, cfg.kernel.prot())
    }
    fn parse(s: &str, cfg: &Config) -> Result<Prot, String> {
        parse_prot(s, cfg.kernel.prot())
    }
}

impl FieldCodec<u8> for WalkFlagBits {
    fn encode(v: u8, w: &mut Writer) {
        w.lit8(v);
    }
    fn print(v: u8, cfg: &Config) -> String {
        walk_flags_to_string(v, cfg.kernel)
    }
    fn parse(s: &str, cfg: &Config) -> Result<u8, String> {
        parse_walk_flags(s, cfg.kernel)
    }
}

impl FieldCodec<Memcache> for Mc {
    fn encode(v: Memcache, w: &mut Writer) {
        match v {
            None => w.byte(LIT_NONE),
            Some(n) => w.lit32(n),
        }
    }
    fn print(v: Memcache, _: &Config) -> String {
        match v {
            None => "none".into(),
            Some(n) => n.to_string(),
        }
    }
    fn parse(s: &str, _: &Config) -> Result<Memcache, String> {
        if s == "none" {
            Ok(None)
        } else {
            parse_num(s, "").map(Some)
        }
    }
    fn validate(v: Memcache) -> Result<(), String> {
        v.map_or(Ok(()), <McPages as FieldCodec<u32>>::validate)
    }
}

impl FieldCodec<u32> for McPages {
    fn encode(v: u32, w: &mut Writer) {
        w.lit32(v);
    }
    fn print(v: u32, _: &Config) -> String {
        v.to_string()
    }
    fn parse(s: &str, _: &Config) -> Result<u32, String> {
        parse_num(s, "")
    }
    fn validate(v: u32) -> Result<(), String> {
        if v > MEMCACHE_MAX {
            return Err(format!(
                "memcache size above {MEMCACHE_MAX} (the kernel's nobjs is an int)"
            ));
        }
        Ok(())
    }
}

impl FieldCodec<bool> for YesNo {
    fn encode(v: bool, w: &mut Writer) {
        w.byte(v as u8);
    }
    fn print(v: bool, _: &Config) -> String {
        yes_no(v).into()
    }
    fn parse(s: &str, _: &Config) -> Result<bool, String> {
        parse_bool(s)
    }
}

impl FieldCodec<u8> for Index {
    fn encode(v: u8, w: &mut Writer) {
        w.byte(v);
    }
    fn print(v: u8, _: &Config) -> String {
        v.to_string()
    }
    fn parse(s: &str, _: &Config) -> Result<u8, String> {
        parse_num(s, "")
    }
}

impl FieldCodec<VisitScript> for Script {
    fn encode(v: VisitScript, w: &mut Writer) {
        w.byte(LIT);
        match v {
            VisitScript::Ok => w.byte(0),
            VisitScript::FailAt { n, errno } => {
                w.byte(1);
                w.byte(n);
                w.byte(errno as u8);
            }
        }
    }
    fn print(v: VisitScript, _: &Config) -> String {
        match v {
            VisitScript::Ok => "ok".into(),
            VisitScript::FailAt { n, errno: e } => match errno::name(e) {
                Some(name) => format!("fail_at:{n}:-{name}"),
                None => format!("fail_at:{n}:{e}"),
            },
        }
    }
    fn parse(s: &str, _: &Config) -> Result<VisitScript, String> {
        parse_script(s)
    }
    fn validate(v: VisitScript) -> Result<(), String> {
        match v {
            VisitScript::FailAt { errno, .. } if errno >= 0 => {
                Err("a walk visitor fails with a negative errno (e.g. -EAGAIN or -11)".into())
            }
            _ => Ok(()),
        }
    }
}

// ------------------------------------------------------------ text helpers

pub(crate) fn hex(v: u64) -> String {
    format!("{v:#x}")
}

pub(crate) fn yes_no(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}

/// Text form of a prot bit set in a line's layout (`none`, `RWX`,
/// `RW|DEVICE|SW1`, and on 7.x `R|PX` or `R|UX` when only one execute bit
/// is set).
pub fn prot_to_string(p: Prot, l: ProtLayout) -> String {
    if p == 0 {
        return "none".into();
    }
    let mut parts: Vec<String> = Vec::new();
    let x = p & l.x() == l.x();
    let letters: String = [(l.r, 'R', true), (l.w, 'W', true), (l.x(), 'X', x)]
        .iter()
        .filter(|(b, _, on)| *on && p & b != 0)
        .map(|(_, c, _)| *c)
        .collect();
    if !letters.is_empty() {
        parts.push(letters);
    }
    let named = [
        (l.device, "DEVICE"),
        (l.normal_nc, "NC"),
        (if x { 0 } else { l.px }, "PX"),
        (if x { 0 } else { l.ux }, "UX"),
        (prot::SW0, "SW0"),
        (prot::SW1, "SW1"),
        (prot::SW2, "SW2"),
        (prot::SW3, "SW3"),
    ];
    for (b, n) in named {
        if b != 0 && p & b != 0 {
            parts.push(n.into());
        }
    }
    let rest = p & !l.known();
    if rest != 0 {
        parts.push(hex(rest));
    }
    parts.join("|")
}

fn walk_flag_names(line: KernelLine) -> [(u8, &'static str); 7] {
    let mut names = walk_flags::NAMES;
    names[4].1 = line.walk_bit4();
    names
}

/// Text form of walk flags (`0`, `LEAF|TABLE_POST`, ...); bit 4 is
/// HANDLE_FAULT on 6.12 and IGNORE_EAGAIN on 7.x.
pub fn walk_flags_to_string(f: u8, line: KernelLine) -> String {
    if f == 0 {
        return "0".into();
    }
    let mut parts: Vec<String> = walk_flag_names(line)
        .iter()
        .filter(|(b, _)| f & b != 0)
        .map(|(_, n)| n.to_string())
        .collect();
    let rest = f & !walk_flags::ALL;
    if rest != 0 {
        parts.push(format!("{rest:#x}"));
    }
    parts.join("|")
}

pub(crate) fn parse_int(s: &str) -> Result<i128, String> {
    let (neg, body) = match s.strip_prefix('-') {
        Some(b) => (true, b),
        None => (false, s),
    };
    let cleaned: String = body.chars().filter(|&c| c != '_').collect();
    let v = if let Some(h) = cleaned
        .strip_prefix("0x")
        .or_else(|| cleaned.strip_prefix("0X"))
    {
        u128::from_str_radix(h, 16)
    } else {
        cleaned.parse::<u128>()
    };
    let v = match v {
        Ok(v) if !body.is_empty() && v <= u64::MAX as u128 => v as i128,
        _ => {
            return Err(format!(
                "expected an integer (hex 0x.. or decimal), got `{s}`"
            ));
        }
    };
    Ok(if neg { -v } else { v })
}

/// Parses an integer of type `T`; `what` prefixes the range error (the
/// op-field parser adds the field name itself).
pub(crate) fn parse_num<T: TryFrom<i128>>(s: &str, what: &str) -> Result<T, String> {
    let v = parse_int(s)?;
    T::try_from(v).map_err(|_| {
        if what.is_empty() {
            format!("value `{s}` out of range")
        } else {
            format!("{what} value `{s}` out of range")
        }
    })
}

pub(crate) fn parse_bool(s: &str) -> Result<bool, String> {
    match s {
        "yes" | "true" | "1" => Ok(true),
        "no" | "false" | "0" => Ok(false),
        _ => Err(format!("expected yes or no, got `{s}`")),
    }
}

/// Parses a prot bit set in a line's layout (see [`prot_to_string`]).
pub fn parse_prot(s: &str, l: ProtLayout) -> Result<Prot, String> {
    if s == "none" || s == "0" {
        return Ok(0);
    }
    let mut p = 0;
    for tok in s.split('|') {
        p |= match tok {
            "DEVICE" => l.device,
            "NC" | "NORMAL_NC" => l.normal_nc,
            "PX" if l.ux != 0 => l.px,
            "UX" if l.ux != 0 => l.ux,
            "SW0" => prot::SW0,
            "SW1" => prot::SW1,
            "SW2" => prot::SW2,
            "SW3" => prot::SW3,
            t if !t.is_empty() && t.chars().all(|c| "RWX".contains(c)) => t
                .chars()
                .map(|c| match c {
                    'R' => l.r,
                    'W' => l.w,
                    _ => l.x(),
                })
                .fold(0, |a, b| a | b),
            t if t.starts_with(|c: char| c.is_ascii_digit()) => parse_num::<u64>(t, "prot")?,
            t => {
                let px = if l.ux != 0 { ", PX, UX" } else { "" };
                return Err(format!(
                    "expected prot: none, or R/W/X letters, DEVICE, NC{px}, SW0..SW3 or a number joined by '|', got `{t}`"
                ));
            }
        };
    }
    Ok(p)
}

/// Parses walk flags (see [`walk_flags_to_string`]).
pub fn parse_walk_flags(s: &str, line: KernelLine) -> Result<u8, String> {
    let names = walk_flag_names(line);
    let mut f = 0u8;
    for tok in s.split('|') {
        if let Some((b, _)) = names.iter().find(|(_, n)| *n == tok) {
            f |= b;
        } else if tok.starts_with(|c: char| c.is_ascii_digit()) {
            f |= parse_num::<u8>(tok, "flags")?;
        } else {
            let list: Vec<&str> = names.iter().map(|(_, n)| *n).collect();
            return Err(format!(
                "expected walk flags: 0 or {} joined by '|', got `{tok}`",
                list.join(", ")
            ));
        }
    }
    Ok(f)
}

fn parse_script(s: &str) -> Result<VisitScript, String> {
    if s == "ok" {
        return Ok(VisitScript::Ok);
    }
    let bad =
        || format!("expected script `ok` or `fail_at:N:ERRNO` (e.g. fail_at:3:-EAGAIN), got `{s}`");
    let rest = s.strip_prefix("fail_at:").ok_or_else(bad)?;
    let (n, e) = rest.split_once(':').ok_or_else(bad)?;
    let n = parse_num::<u8>(n, "fail_at count")?;
    let errno = match e.strip_prefix('-').and_then(|name| {
        errno::ALL
            .iter()
            .copied()
            .find(|&v| errno::name(v) == Some(name))
    }) {
        Some(v) => v,
        None => parse_num::<i8>(e, "errno")?,
    };
    Ok(VisitScript::FailAt { n, errno })
}
