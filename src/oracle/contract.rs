// SPDX-License-Identifier: GPL-2.0-only
//! The contract oracle: rules from the kernel's own documented contracts,
//! checked on one side (the reference side of a pair, or the only side of a
//! C-only run). Both sides may agree and still break them.
//!
//! - `kvm_pgtable_mm_ops` (kvm_pgtable.h): page operations on live pages,
//!   counts that do not underflow, `free_pages_exact` of exactly what
//!   `zalloc_pages_exact` gave (the sides record each breach as an
//!   [`Event::Misuse`](crate::events::Event::Misuse); the first in a step's trace is found by the scan
//!   that cuts the step at its fatal event, [`crate::caller::Cut::misuse`]);
//! - destroy releases everything the table held ([`leftovers`]);
//! - pKVM's host stage-2 keeps ownership only in invalid descriptors, so an
//!   annotation outside an op's range must survive it (the invariant that
//!   motivates `force_pte_cb`). It is followed on the architecture oracle's
//!   shadow ([`crate::oracle::arch::Checker::owner_lost`]), which already
//!   places every store in the tree; [`OwnersRead`] reads it the slow way
//!   for tests.

use crate::opstream::Op;
use crate::results::What;
use crate::side::Side;
use crate::tree::{Format, TreeIndex};

/// Index of a side's current tree.
pub fn tree_of(side: &dyn Side, fmt: Format) -> TreeIndex {
    match side.root() {
        Some(root) => TreeIndex::build(side.arena(), fmt, root.pgd, root.pages, root.start_level),
        None => TreeIndex::default(),
    }
}

/// The owner-annotation rule read the slow way, for tests: the annotations
/// of the whole tree read from memory after every op that changed it, and
/// what the rule must find lost between two reads (the architecture
/// oracle's checker follows it incrementally: [`Checker::owner_lost`]; the
/// executor compares the two under `RunOptions::owner_cross_check`).
///
/// [`Checker::owner_lost`]: crate::oracle::arch::Checker::owner_lost
pub struct OwnersRead {
    fmt: Format,
    /// Every annotation of the tree at the last read, as (IA, level, pte),
    /// sorted.
    before: Vec<(u64, i8, u64)>,
}

impl OwnersRead {
    /// Reads the annotations of `side`'s tree now.
    pub fn new(side: &dyn Side, fmt: Format) -> OwnersRead {
        let before = tree_of(side, fmt).annotations(side.arena(), fmt);
        OwnersRead { fmt, before }
    }

    /// After `op` changed `side`'s memory: the first annotation (by IA,
    /// level) of the last read that is gone and was outside the op's range.
    pub fn lost(&mut self, side: &dyn Side, op: &Op) -> Option<What> {
        let now = tree_of(side, self.fmt).annotations(side.arena(), self.fmt);
        let range = op.range();
        let lost = self.before.iter().find_map(|&(ia, level, pte)| {
            let inside = range.is_some_and(|(start, s)| {
                ia < start.saturating_add(s)
                    && ia.saturating_add(self.fmt.entry_size(level)) > start
            });
            (!inside && now.binary_search(&(ia, level, pte)).is_err()).then_some(What::OwnerLost {
                ia,
                level,
                pte,
                range,
            })
        });
        self.before = now;
        lost
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
