// SPDX-License-Identifier: GPL-2.0-only
//! The contract oracle: rules from the kernel's own documented contracts,
//! checked on one side (the reference side of a pair, or the only side of a
//! C-only run). Both sides may agree and still break them.
//!
//! - `kvm_pgtable_mm_ops` (kvm_pgtable.h): page operations on live pages,
//!   counts that do not underflow, `free_pages_exact` of exactly what
//!   `zalloc_pages_exact` gave ([`misuse`]);
//! - destroy releases everything the table held ([`leftovers`]);
//! - pKVM's host stage-2 keeps ownership only in invalid descriptors, so an
//!   annotation outside an op's range must survive it ([`Owners`]; the
//!   invariant that motivates `force_pte_cb`).

use crate::events::{Event, Trace};
use crate::opstream::Op;
use crate::results::What;
use crate::side::Side;
use crate::tree::{Format, TreeIndex};

/// The first mm_ops contract breach in a step's trace.
pub fn misuse(trace: &Trace) -> Option<What> {
    trace.iter().find_map(|e| match e {
        Event::Misuse(m) => Some(What::Misuse { event: *m }),
        _ => None,
    })
}

/// Whether a step can have removed an annotation: only a store or a freed
/// page or table can.
pub fn may_change_memory(trace: &Trace) -> bool {
    trace.iter().any(|e| {
        matches!(
            e,
            Event::Store { .. } | Event::PutPage { .. } | Event::FreeUnlinkedTable { .. }
        )
    })
}

/// Index of a side's current tree.
pub fn tree_of(side: &dyn Side, fmt: Format) -> TreeIndex {
    match side.root() {
        Some(root) => TreeIndex::build(side.arena(), fmt, root.pgd, root.pages, root.start_level),
        None => TreeIndex::default(),
    }
}

/// The owner-annotation invariant of the pKVM host stage-2, followed op by op.
pub struct Owners {
    fmt: Format,
    /// Every annotation (IA, level, descriptor) after the last step.
    seen: Vec<(u64, i8, u64)>,
}

impl Owners {
    /// Starts from the annotations of `side`'s tree now.
    pub fn new(side: &dyn Side, fmt: Format) -> Owners {
        Owners {
            fmt,
            seen: tree_of(side, fmt).annotations(side.arena(), fmt),
        }
    }

    /// After `op` ran on `side`: every annotation outside the op's range
    /// must still be there.
    pub fn check(&mut self, side: &dyn Side, op: &Op) -> Option<What> {
        let now = tree_of(side, self.fmt).annotations(side.arena(), self.fmt);
        let range = op.range();
        for &(ia, level, pte) in &self.seen {
            let size = self.fmt.entry_size(level);
            let inside = range.is_some_and(|(start, s)| {
                let end = start.saturating_add(s);
                ia < end && ia.saturating_add(size) > start
            });
            if !inside && now.binary_search(&(ia, level, pte)).is_err() {
                return Some(What::OwnerLost {
                    ia,
                    level,
                    pte,
                    range,
                });
            }
        }
        self.seen = now;
        None
    }
}

/// Pages still allocated after both sides' destroy (`a` and `b`).
pub fn leftovers(a: &dyn Side, b: &dyn Side) -> Option<What> {
    if a.arena().is_empty() && b.arena().is_empty() {
        return None;
    }
    Some(What::NotEmpty {
        a: a.arena().live().collect(),
        b: b.arena().live().collect(),
    })
}
