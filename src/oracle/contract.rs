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

use std::collections::BTreeMap;

use crate::events::{Event, Trace};
use crate::opstream::Op;
use crate::results::What;
use crate::side::Side;
use crate::tree::{Format, TablePos, TreeIndex};

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
///
/// After an op that may have changed the tree's shape (a table descriptor
/// stored or overwritten, a page allocated or freed, another agent's write,
/// anything else not known to leave table memory alone) the tree is read
/// again. After any other op only its descriptor stores can have added or
/// removed annotations, at slots whose place in the unchanged tree is known:
/// the annotation set is updated from those stores alone ([`Owners::note`]).
pub struct Owners {
    fmt: Format,
    page_size: u64,
    /// Every annotation after the last step: (IA, level) to descriptor.
    seen: BTreeMap<(u64, i8), u64>,
    /// The table pages of the tree as last read.
    index: TreeIndex,
    /// Stores into the tree since the last check, as (IA, level, old, new).
    stores: Vec<(u64, i8, u64, u64)>,
    /// Something since the last check may have changed the tree's shape:
    /// the next check reads the tree again.
    reread: bool,
    /// Each touched slot's first old value and last new one (a buffer).
    net: Vec<(u64, i8, u64, u64)>,
    /// Checks every update from stores against a full read (tests).
    cross_check: bool,
}

impl Owners {
    /// Starts from the annotations of `side`'s tree now.
    pub fn new(side: &dyn Side, fmt: Format) -> Owners {
        let index = tree_of(side, fmt);
        Owners {
            fmt,
            page_size: side.arena().geometry().page_size,
            seen: by_slot(index.annotations(side.arena(), fmt)),
            index,
            stores: Vec::new(),
            reread: false,
            net: Vec::new(),
            cross_check: false,
        }
    }

    /// After each update from stores, also reads the tree and panics if the
    /// two annotation sets differ (for tests: the shortcut must be exact).
    pub fn cross_checked(mut self) -> Owners {
        self.cross_check = true;
        self
    }

    /// Takes note of a step's trace (every step's, before the
    /// [`Owners::check`] that follows it): whether its stores are all it did
    /// to table memory, and where they went.
    pub fn note(&mut self, trace: &Trace) {
        if self.reread {
            return;
        }
        // Stores come in runs over one table page: look its place up once.
        let mut last: Option<(u64, Option<TablePos>)> = None;
        for e in trace {
            match *e {
                Event::Store { pa, old, val, .. } => {
                    let page = pa & !(self.page_size - 1);
                    let pos = match last {
                        Some((p, pos)) if p == page => pos,
                        _ => {
                            let pos = self.index.tables.get(&page).copied();
                            last = Some((page, pos));
                            pos
                        }
                    };
                    // A store outside the tree changes no annotation; its
                    // page joins the tree only through a table descriptor
                    // stored in it, which makes the step read the tree.
                    let Some(TablePos { level, base }) = pos else {
                        continue;
                    };
                    let ia = base
                        .wrapping_add(((pa - page) / 8).wrapping_mul(self.fmt.entry_size(level)));
                    if self.fmt.is_table(old, level) || self.fmt.is_table(val, level) {
                        self.reread = true;
                        return;
                    }
                    self.stores.push((ia, level, old, val));
                }
                Event::PutPage { count, .. } if count > 0 => {}
                Event::TlbiHyp { .. }
                | Event::TlbiSyncS1IshHyp
                | Event::TlbFlushVmid
                | Event::TlbFlushVmidIpa { .. }
                | Event::TlbFlushVmidRange { .. }
                | Event::Dsb(_)
                | Event::Isb
                | Event::DcacheCleanInvalPoc { .. }
                | Event::IcacheInvalPou { .. }
                | Event::GetPage { .. }
                | Event::ForcePteCb { .. }
                | Event::Rcu { .. }
                | Event::Warn { .. }
                | Event::CallerWarn(_)
                | Event::Accesses { .. } => {}
                _ => {
                    self.reread = true;
                    return;
                }
            }
        }
    }

    /// After `op` ran on `side` (and [`Owners::note`] saw its trace): every
    /// annotation outside the op's range must still be there.
    pub fn check(&mut self, side: &dyn Side, op: &Op) -> Option<What> {
        let range = op.range();
        let inside = |ia: u64, level: i8| {
            let size = self.fmt.entry_size(level);
            range.is_some_and(|(start, s)| {
                let end = start.saturating_add(s);
                ia < end && ia.saturating_add(size) > start
            })
        };
        if std::mem::take(&mut self.reread) {
            self.stores.clear();
            self.index = tree_of(side, self.fmt);
            let now = self.index.annotations(side.arena(), self.fmt);
            for (&(ia, level), &pte) in &self.seen {
                if !inside(ia, level) && now.binary_search(&(ia, level, pte)).is_err() {
                    return Some(What::OwnerLost {
                        ia,
                        level,
                        pte,
                        range,
                    });
                }
            }
            self.seen = by_slot(now);
            return None;
        }
        // Each slot's first old value and last new one, in slot order (the
        // sort is stable: a slot's stores stay in program order).
        self.stores.sort_by_key(|&(ia, level, ..)| (ia, level));
        let mut net = std::mem::take(&mut self.net);
        net.clear();
        for &(ia, level, old, new) in &self.stores {
            match net.last_mut() {
                Some(last) if (last.0, last.1) == (ia, level) => last.3 = new,
                _ => net.push((ia, level, old, new)),
            }
        }
        self.stores.clear();
        let annotation = |d: u64| d != 0 && d & 1 == 0;
        for &(ia, level, first, last) in &net {
            if annotation(first) && last != first && !inside(ia, level) {
                return Some(What::OwnerLost {
                    ia,
                    level,
                    pte: first,
                    range,
                });
            }
        }
        for &(ia, level, first, last) in &net {
            if first == last {
                continue;
            }
            if annotation(first) {
                self.seen.remove(&(ia, level));
            }
            if annotation(last) {
                self.seen.insert((ia, level), last);
            }
        }
        self.net = net;
        if self.cross_check {
            let full = tree_of(side, self.fmt).annotations(side.arena(), self.fmt);
            let seen: Vec<_> = self.seen.iter().map(|(&(ia, l), &p)| (ia, l, p)).collect();
            assert_eq!(seen, full, "annotations updated from the stores of {op:?}");
        }
        None
    }
}

fn by_slot(annotations: Vec<(u64, i8, u64)>) -> BTreeMap<(u64, i8), u64> {
    annotations
        .into_iter()
        .map(|(ia, level, pte)| ((ia, level), pte))
        .collect()
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rust_side::RustSide;

    /// A 4K pKVM host stage-2: memory identity-mapped with 2M blocks, one
    /// page donated (its block split into a table: a full read), then two
    /// more pages of that table donated (stores only: an update from them).
    fn donated() -> (crate::opstream::OpStream, RustSide, Owners) {
        let s = crate::opstream::parse(
            "kvm-pgtable-diff-stream v1
config stage=stage2 context=nvhe granule=4k ia_bits=40 flags=idmap parange=2 arena_pages=64
force_pte host memory:0x40000000+0x10000000
s2_map addr=0x40000000 size=0x400000 phys=0x40000000 prot=RWX mc=4 flags=0
s2_set_owner addr=0x40001000 size=0x1000 mc=4 owner=1
s2_set_owner addr=0x40002000 size=0x2000 mc=4 owner=1
s2_map addr=0x40002000 size=0x1000 phys=0x40002000 prot=RWX mc=4 flags=0
s2_unmap addr=0x40000000 size=0x200000
",
        )
        .unwrap();
        let fmt = crate::executor::format_of(&s);
        let mut side = RustSide::for_stream(&s.config);
        side.init();
        let mut owners = Owners::new(&side, fmt).cross_checked();
        for op in &s.ops[..3] {
            let o = side.apply_raced(op, None);
            owners.note(&o.trace);
            assert_eq!(owners.check(&side, op), None, "{op:?}");
        }
        (s, side, owners)
    }

    /// Owner 1 in an invalid descriptor: the owner field is bits [9:2].
    const OWNER_1: u64 = 1 << 2;

    #[test]
    fn an_annotation_overwritten_outside_the_range_is_found_from_the_stores() {
        let (s, mut side, mut owners) = donated();
        // The host maps 0x40002000 back: a store into the existing table.
        let o = side.apply_raced(&s.ops[3], None);
        owners.note(&o.trace);
        assert!(!owners.reread, "only stores into the tree");
        // Judged against an op elsewhere, the annotation at 0x40002000 is lost.
        let elsewhere = crate::opstream::Op::GetLeaf { addr: 0x4010_0000 };
        let lost = owners.check(&side, &elsewhere);
        assert_eq!(
            lost,
            Some(What::OwnerLost {
                ia: 0x4000_2000,
                level: 3,
                pte: OWNER_1,
                range: Some((0x4010_0000, 1)),
            })
        );
    }

    #[test]
    fn an_annotation_overwritten_inside_the_range_is_not_lost() {
        let (s, mut side, mut owners) = donated();
        let o = side.apply_raced(&s.ops[3], None);
        owners.note(&o.trace);
        assert_eq!(owners.check(&side, &s.ops[3]), None);
        // 0x40001000 and 0x40003000 are still annotated.
        let ias: Vec<u64> = owners.seen.keys().map(|&(ia, _)| ia).collect();
        assert_eq!(ias, [0x4000_1000, 0x4000_3000]);
    }

    #[test]
    fn an_unmap_that_frees_the_table_reads_the_tree_again() {
        let (s, mut side, mut owners) = donated();
        // Unmapping the whole first 2M frees the table of annotations.
        let o = side.apply_raced(&s.ops[4], None);
        owners.note(&o.trace);
        assert!(owners.reread);
        let elsewhere = crate::opstream::Op::GetLeaf { addr: 0x4010_0000 };
        assert_eq!(
            owners.check(&side, &elsewhere),
            Some(What::OwnerLost {
                ia: 0x4000_1000,
                level: 3,
                pte: OWNER_1,
                range: Some((0x4010_0000, 1)),
            })
        );
    }
}
