// SPDX-License-Identifier: GPL-2.0-only
//! Divergence reports: what differs, where, and the descriptors involved,
//! decoded, so that a human understands a finding in a minute.

use std::fmt::{self, Write as _};

use crate::events::Event;
use crate::oracle::arch::Breach;
pub use crate::results::{Divergence, Step, What};
use crate::results::{Outcome, Value};
use crate::tree::describe;

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Step::Init => write!(f, "init"),
            Step::Op(n) => write!(f, "op #{n}"),
            Step::End => write!(f, "end of stream"),
            Step::Destroy => write!(f, "destroy"),
        }
    }
}

impl Divergence {
    /// One line: where and what.
    pub fn headline(&self) -> String {
        let arch;
        let what = match &self.what {
            What::Arch(b) => {
                arch = format!("{}: {}", self.oracle_name(), b.rule.name());
                arch.as_str()
            }
            What::Value { .. } => "return values differ",
            What::MemcacheLeft { .. } => "memcache pages left differ",
            What::Trace { .. } => "event traces differ",
            What::LivePages { .. } => "live pages or refcounts differ",
            What::Memory { .. } => "descriptor memory differs",
            What::NotEmpty { .. } => "pages left allocated after destroy",
            What::OwnerLost { .. } => "owner annotation destroyed outside the op's range",
            What::Misuse { .. } => "mm_ops contract breach",
        };
        let op = match self.step {
            Step::Op(n) => self
                .stream
                .ops
                .get(n)
                .map(|o| format!(" ({})", o.name()))
                .unwrap_or_default(),
            _ => String::new(),
        };
        format!("{what} at {}{op}", self.step)
    }

    /// Whether one side ran alone (`Pairing::COnly`).
    pub fn one_side(&self) -> bool {
        self.sides[1].is_empty()
    }

    /// The oracle that spoke, in words.
    fn oracle_name(&self) -> &'static str {
        match self.what.oracle() {
            crate::oracle::Oracle::Arch if self.one_side() => {
                "architecture rule broken (C side alone)"
            }
            o => o.name(),
        }
    }

    fn place(&self, pa: u64) -> String {
        let page = self.format.granule.page_size();
        match self.tree.locate(pa, page, self.format) {
            Some((level, ia)) => {
                let size = self.format.entry_size(level);
                format!("level {level}, IA {ia:#x}..{:#x}", ia.wrapping_add(size))
            }
            None => "not in the live tree (unlinked or freed table)".into(),
        }
    }

    fn level_of(&self, pa: u64) -> Option<i8> {
        self.tree
            .locate(pa, self.format.granule.page_size(), self.format)
            .map(|(l, _)| l)
    }

    fn decode_event(&self, e: &Event) -> Option<String> {
        match *e {
            Event::Store { pa, old, val, .. } => Some(format!(
                "    {pa:#x} [{}]\n      before: {}\n      after:  {}",
                self.place(pa),
                describe(self.format, old, self.level_of(pa)),
                describe(self.format, val, self.level_of(pa))
            )),
            _ => None,
        }
    }
}

fn short(e: &Event) -> String {
    match e {
        Event::Store { pa, old, val, kind } => {
            format!("store {pa:#x}: {old:#x} -> {val:#x} ({kind:?})")
        }
        other => format!("{other:x?}"),
    }
}

fn side_by_side(out: &mut String, d: &Divergence, c: &[Event], r: &[Event]) {
    let [na, nb] = &d.sides;
    let first = c
        .iter()
        .zip(r)
        .position(|(a, b)| a != b)
        .unwrap_or(c.len().min(r.len()));
    let _ = writeln!(
        out,
        "first difference at event {first} ({na} has {}, {nb} has {} events)",
        c.len(),
        r.len()
    );
    let from = first.saturating_sub(2);
    let to = (first + 12).max(from).min(c.len().max(r.len()));
    let _ = writeln!(out, "  {:<4} {:<62} | {nb}", "#", na);
    for i in from..to {
        let a = c.get(i).map(short).unwrap_or_else(|| "—".into());
        let b = r.get(i).map(short).unwrap_or_else(|| "—".into());
        let mark = if c.get(i) != r.get(i) { "≠" } else { " " };
        let _ = writeln!(out, "{mark} {i:<4} {a:<62} | {b}");
    }
    // The descriptors involved: the first store that differs between the
    // two sides' store sequences (the event lists may differ earlier, e.g.
    // by a missing CMO, while the descriptor tells what went wrong).
    let stores = |t: &[Event]| -> Vec<Event> {
        t.iter()
            .filter(|e| matches!(e, Event::Store { .. }))
            .copied()
            .collect()
    };
    let (cs, rs) = (stores(c), stores(r));
    match cs.iter().zip(&rs).position(|(a, b)| a != b) {
        Some(i) => {
            let _ = writeln!(
                out,
                "first differing descriptor store (store #{i} of each side):"
            );
            for (side, e) in [(na, &cs[i]), (nb, &rs[i])] {
                if let Some(line) = d.decode_event(e) {
                    let _ = writeln!(out, "  {side}: {}\n{line}", short(e));
                }
            }
        }
        None if cs.len() != rs.len() => {
            let _ = writeln!(
                out,
                "descriptor stores agree for {} stores; {na} made {}, {nb} {}",
                cs.len().min(rs.len()),
                cs.len(),
                rs.len()
            );
        }
        None => {
            let _ = writeln!(
                out,
                "all {} descriptor stores agree; the difference is in the other events",
                cs.len()
            );
        }
    }
}

impl fmt::Display for Divergence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = String::new();
        let [na, nb] = &self.sides;
        let w = na.len().max(nb.len()) + 1;
        let (la, lb) = (format!("{na}:"), format!("{nb}:"));
        let _ = writeln!(out, "=== kvm-pgtable-diff: {} ===", self.headline());
        if self.one_side() {
            let _ = writeln!(out, "side: {na} alone (no second implementation)");
        } else {
            let _ = writeln!(out, "sides: {na} against {nb}");
        }
        let _ = writeln!(out, "oracle: {}", self.oracle_name());
        let line = self.stream.config.kernel.name();
        for set in crate::c_side::sets()
            .iter()
            .filter(|s| s.line == line && self.sides.iter().any(|n| n.ends_with(s.name)))
        {
            let _ = writeln!(
                out,
                "kernel line {}: {} (pgtable.c sha256 {})",
                set.name,
                set.source,
                &set.pgtable_c_sha256[..16]
            );
        }
        let mark = match self.step {
            Step::Op(n) => Some(n),
            _ => None,
        };
        let _ = writeln!(out, "\n--- stream (>> marks the first differing op) ---");
        out.push_str(&self.stream.annotated(mark));
        if matches!(self.what, What::Arch(_)) {
            let _ = writeln!(out, "--- rule broken at {} ---", self.step);
        } else {
            let _ = writeln!(out, "--- difference at {} ---", self.step);
        }
        match &self.what {
            What::Value { a: c, b: rust } => {
                let _ = writeln!(out, "  {la:w$} {c}\n  {lb:w$} {rust}");
                if let (
                    Value::Leaf {
                        pte: a, level: la, ..
                    },
                    Value::Leaf {
                        pte: b, level: lb, ..
                    },
                ) = (c, rust)
                {
                    let _ = writeln!(out, "  {na} pte: {}", describe(self.format, *a, Some(*la)));
                    let _ = writeln!(out, "  {nb} pte: {}", describe(self.format, *b, Some(*lb)));
                }
                if let (Value::Walk { visits: a, .. }, Value::Walk { visits: b, .. }) = (c, rust) {
                    let i = a
                        .iter()
                        .zip(b)
                        .position(|(x, y)| x != y)
                        .unwrap_or(a.len().min(b.len()));
                    let _ = writeln!(
                        out,
                        "  first differing visit #{i}:\n    {la:w$} {:x?}\n    {lb:w$} {:x?}",
                        a.get(i),
                        b.get(i)
                    );
                }
            }
            What::MemcacheLeft { a, b } => {
                let _ = writeln!(out, "  memcache pages left: {na} {a:?}, {nb} {b:?}");
            }
            What::Trace { a, b } => side_by_side(&mut out, self, a, b),
            What::LivePages { a, b } => {
                let _ = writeln!(
                    out,
                    "  live (pa, refcount):\n    {la:w$} {a:x?}\n    {lb:w$} {b:x?}"
                );
            }
            What::Memory { pa, a, b } => {
                let level = self.level_of(*pa);
                let _ = writeln!(out, "  descriptor {pa:#x} [{}]", self.place(*pa));
                let _ = writeln!(
                    out,
                    "  {la:w$} {a:#018x}  {}",
                    describe(self.format, *a, level)
                );
                let _ = writeln!(
                    out,
                    "  {lb:w$} {b:#018x}  {}",
                    describe(self.format, *b, level)
                );
            }
            What::NotEmpty { a, .. } if self.one_side() => {
                let _ = writeln!(out, "  still allocated (pa, refcount): {a:x?}");
            }
            What::NotEmpty { a, b } => {
                let _ = writeln!(
                    out,
                    "  still allocated (pa, refcount): {na} {a:x?}, {nb} {b:x?}"
                );
            }
            What::OwnerLost {
                ia,
                level,
                pte,
                range,
            } => {
                let _ = writeln!(
                    out,
                    "  annotation at IA {ia:#x} (level {level}): {} was destroyed; the op covered {range:x?}",
                    describe(self.format, *pte, Some(*level))
                );
            }
            What::Misuse { event } => {
                let _ = writeln!(out, "  {event:x?}");
            }
            What::Arch(b) => self.arch_breach(&mut out, b),
        }
        f.write_str(&out)
    }
}

impl Divergence {
    /// An architecture rule finding: the rule and where it comes from, the
    /// descriptor, and the trace of the step around the event.
    fn arch_breach(&self, out: &mut String, b: &Breach) {
        let _ = writeln!(out, "  rule: {} ({})", b.rule.name(), b.rule.id());
        let _ = writeln!(out, "  what: {}", b.detail);
        if let Some(slot) = b.slot {
            let size = self.format.entry_size(slot.level);
            let _ = writeln!(
                out,
                "  descriptor {:#x} [level {}, IA {:#x}..{:#x}]",
                slot.pa,
                slot.level,
                slot.ia,
                slot.ia.wrapping_add(size)
            );
        }
        let level = b.slot.map(|s| s.level);
        for (name, v) in [("before", b.old), ("after", b.new)] {
            if let Some(v) = v {
                let _ = writeln!(
                    out,
                    "    {name}:{} {v:#018x}  {}",
                    " ".repeat(6 - name.len()),
                    describe(self.format, v, level)
                );
            }
        }
        let marks = [(b.event, ">>"), (b.cause, " *")];
        let side = &self.sides[0];
        let _ = writeln!(
            out,
            "  trace of {} on {side} ({} events; >> the event that breaks the rule{}):",
            self.step,
            b.trace.len(),
            if b.cause.is_some() {
                ", * the store that left the stale entry"
            } else {
                ""
            }
        );
        let focus: Vec<usize> = [b.cause, b.event].into_iter().flatten().collect();
        let shown =
            |i: usize| b.trace.len() <= 40 || focus.iter().any(|&f| i + 6 >= f && i <= f + 6);
        let mut gap = false;
        for (i, e) in b.trace.iter().enumerate() {
            if !shown(i) {
                if !gap {
                    let _ = writeln!(out, "       ...");
                }
                gap = true;
                continue;
            }
            gap = false;
            let mark = marks
                .iter()
                .find(|(at, _)| *at == Some(i))
                .map_or("  ", |(_, m)| m);
            let _ = writeln!(out, "    {mark} #{i:<4} {}", short(e));
        }
        if b.event.is_none() {
            let _ = writeln!(out, "    >> (the op returned)");
        }
        let _ = writeln!(out, "  reference: {}", b.rule.reference());
    }
}

/// The kernel's name of a (positive) errno value.
pub fn errno_name(e: i64) -> Option<&'static str> {
    Some(match e {
        1 => "EPERM",
        7 => "E2BIG",
        11 => "EAGAIN",
        12 => "ENOMEM",
        14 => "EFAULT",
        16 => "EBUSY",
        17 => "EEXIST",
        22 => "EINVAL",
        34 => "ERANGE",
        524 => "ENOTSUPP",
        _ => return None,
    })
}

fn ret(v: i64) -> String {
    match errno_name(-v) {
        Some(n) if v < 0 => format!("{v} (-{n})"),
        _ => v.to_string(),
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Unit => f.write_str("(no result)"),
            Value::Int(v) => f.write_str(&ret(*v)),
            Value::U64(v) => write!(f, "{v:#x}"),
            Value::Bool(b) => write!(f, "{b}"),
            Value::Leaf { ret: r, pte, level } => {
                write!(f, "ret {}, pte {pte:#x}, level {level}", ret((*r).into()))
            }
            Value::Table(Ok(pa)) => write!(f, "table at {pa:#x}"),
            Value::Table(Err(e)) => f.write_str(&ret((*e).into())),
            Value::Walk { ret: r, visits } => {
                write!(f, "ret {}, {} visits", ret((*r).into()), visits.len())
            }
            Value::Stage2Init { vtcr, ret: r } => {
                write!(f, "vtcr {vtcr:#x}, ret {}", ret((*r).into()))
            }
            Value::Skipped(why) => write!(f, "not run: {why}"),
        }
    }
}

/// A small helper for callers that want the outcome pair in a report.
pub fn outcome_line(o: &Outcome) -> String {
    format!(
        "{} (memcache left {:?}, {} events)",
        o.value,
        o.memcache_left,
        o.trace.len()
    )
}
