// SPDX-License-Identifier: GPL-2.0-only
//! The owner-annotation rule of pKVM's host stage-2, followed on the
//! architecture oracle's shadow: an annotation (a non-zero invalid
//! descriptor: pKVM keeps page ownership only there) outside an op's range
//! must survive the op. It is a rule of the kernel's contract
//! ([`Oracle::Contract`](crate::oracle::Oracle::Contract) reports it, and
//! `KPD_NO_ARCH` does not silence it); it lives here because the checker's
//! pass over each trace already places every store, table link and unlink
//! in the live tree, so following the annotations costs a few compares
//! where they change, instead of a second pass and a second copy of the
//! tree.
//!
//! What it keeps between two checks (one per op that changed memory):
//! - every annotation that *left* the live tree: the old word of a store
//!   into a linked slot, and every annotation in a subtree that was cut off
//!   (`detach`) or freed while linked;
//! - every annotation that *joined* it: the new word of such a store, and
//!   every annotation in a subtree that was linked (`position`);
//!
//! each with the sequence number of its event. The op's own stores note only
//! the annotations outside its range (the check exempts the rest, and they
//! are most of a donation's stores); another agent's writes (races) note all,
//! since the op they are judged with is not known yet. An annotation that
//! left is lost when it was there before (no earlier join of the same
//! annotation since the last check) and the live tree does not hold it at the
//! end: the slot at its input address and level, looked up from the root in
//! the shadow, holds another word or cannot be reached.

use super::{Checker, Pos, Slot};
use crate::opstream::Op;
use crate::results::What;

/// An annotation: where (IA, level), its descriptor, and the sequence number
/// of the event that made it leave or join the live tree.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Ann {
    ia: u64,
    level: i8,
    pte: u64,
    seq: u64,
}

/// An owner annotation: a non-zero invalid descriptor (pKVM's owner id, or
/// any other invalid encoding pgtable.c counts, LOCKED included).
pub fn is_annotation(d: u64) -> bool {
    d != 0 && d & 1 == 0
}

impl Checker {
    /// Also follows pKVM's owner annotations, for [`Checker::owner_lost`]
    /// (the host stage-2; `RunOptions::owner_invariant`).
    pub fn follow_owners(&mut self) {
        self.owners = true;
    }

    /// Whether an entry at (`ia`, `level`) overlaps the range of the op
    /// being checked (which may remove annotations there).
    #[inline]
    fn owner_exempt(&self, ia: u64, level: i8, range: Option<(u64, u64)>) -> bool {
        let size = self.size(level);
        range.is_some_and(|(start, s)| {
            ia < start.saturating_add(s) && ia.saturating_add(size) > start
        })
    }

    #[inline]
    pub(super) fn owner_note(&mut self, ia: u64, level: i8, pte: u64, joined: bool, own: bool) {
        if own && self.owner_exempt(ia, level, self.owner_range) {
            return;
        }
        let a = Ann {
            ia,
            level,
            pte,
            seq: self.seq,
        };
        match joined {
            true => self.owner_added.push(a),
            false => self.owner_gone.push(a),
        }
    }

    /// A linked slot's word changes from `old` to `new` (`own`: by the op's
    /// own store, not another agent's write).
    #[inline]
    pub(super) fn owner_store(&mut self, slot: Slot, old: u64, new: u64, own: bool) {
        if is_annotation(old) {
            self.owner_note(slot.ia, slot.level, old, false, own);
        }
        if is_annotation(new) {
            self.owner_note(slot.ia, slot.level, new, true, own);
        }
    }

    /// Every annotation of live page `p` at `pos` joins the live tree
    /// (`joined`) or leaves it.
    pub(super) fn owner_page(&mut self, p: usize, pos: Pos, joined: bool, own: bool) {
        let size = self.size(pos.level);
        for w in 0..self.wpp {
            let d = self.mem[p * self.wpp + w];
            if is_annotation(d) {
                let ia = pos.base.wrapping_add((w as u64).wrapping_mul(size));
                self.owner_note(ia, pos.level, d, joined, own);
            }
        }
    }

    /// Linked page `p` is freed: every annotation of the subtree it roots
    /// leaves the live tree, and nothing reaches its pages any more (only a
    /// broken op frees a linked table; the architecture oracle reports that
    /// too, unless silenced). Noted whatever the op's range: a free need not
    /// come with a store, so the check may judge another op's range.
    pub(super) fn owner_freed(&mut self, p: usize) {
        self.stamp = self.stamp.wrapping_add(1);
        let mut stack = std::mem::take(&mut self.to_detach);
        stack.clear();
        stack.push(p);
        while let Some(pg) = stack.pop() {
            if self.pages[pg].stamp == self.stamp || !self.pages[pg].live {
                continue;
            }
            self.pages[pg].stamp = self.stamp;
            let Some(pos) = self.pages[pg].pos.as_mut().filter(|q| q.linked) else {
                continue;
            };
            pos.linked = false;
            let pos = *pos;
            self.owner_page(pg, pos, false, false);
            for w in 0..self.wpp {
                let d = self.mem[pg * self.wpp + w];
                if super::valid(d) && self.is_table(d, pos.level) {
                    if let Some(c) = self.live_page(self.oa(d)) {
                        stack.push(c);
                    }
                }
            }
        }
        self.to_detach = stack;
    }

    /// The word of the live tree's slot at (`ia`, `level`), read from the
    /// root down in the shadow; None when no table of the live tree holds
    /// that slot.
    fn owner_now(&self, ia: u64, level: i8) -> Option<u64> {
        let mut l = self.root.start_level;
        let top = self.size(l);
        if top == 0 || level < l {
            return None;
        }
        let first = ia / top;
        let page = first / self.wpp as u64;
        if page >= u64::from(self.root.pages) {
            return None;
        }
        let mut p = self.live_page(self.root.pgd + (page << self.shift))?;
        let mut w = (first % self.wpp as u64) as usize;
        loop {
            let d = self.mem[p * self.wpp + w];
            if l == level {
                return Some(d);
            }
            if !self.is_table(d, l) {
                return None;
            }
            p = self.live_page(self.oa(d))?;
            l += 1;
            w = ((ia / self.size(l)) % self.wpp as u64) as usize;
        }
    }

    /// After `op`, which changed memory: the first annotation (by IA, level,
    /// then descriptor, as the full read orders them) outside `op`'s range that was in the live tree at the last
    /// check and is not now, as [`What::OwnerLost`] reports it. Starts the
    /// next interval.
    pub fn owner_lost(&mut self, op: &Op) -> Option<What> {
        let range = op.range();
        let mut gone = std::mem::take(&mut self.owner_gone);
        let mut added = std::mem::take(&mut self.owner_added);
        // Joins outside the op's range are rare (only another agent's, or
        // a broken op's): sorted, each left annotation finds its earlier
        // joins by one search.
        added.sort_unstable();
        let mut first: Option<Ann> = None;
        for &g in &gone {
            if first.is_some_and(|f| (f.ia, f.level, f.pte) <= (g.ia, g.level, g.pte))
                || self.owner_exempt(g.ia, g.level, range)
            {
                continue;
            }
            // Joined since the last check before it left: it was not there
            // then.
            let key = (g.ia, g.level, g.pte);
            let at = added.partition_point(|a| (a.ia, a.level, a.pte) < key);
            if added
                .get(at)
                .is_some_and(|a| (a.ia, a.level, a.pte) == key && a.seq < g.seq)
            {
                continue;
            }
            if self.owner_now(g.ia, g.level) != Some(g.pte) {
                first = Some(g);
            }
        }
        gone.clear();
        added.clear();
        (self.owner_gone, self.owner_added) = (gone, added);
        first.map(|g| What::OwnerLost {
            ia: g.ia,
            level: g.level,
            pte: g.pte,
            range,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{Access, Event};
    use crate::opstream::OpStream;
    use crate::oracle::arch::{ArchStep, Breach, Rule};
    use crate::oracle::contract::{OwnersRead, tree_of};
    use crate::results::{Outcome, Value};
    use crate::rust_side::RustSide;
    use crate::side::Side;
    use crate::tree::Format;

    /// A 4K pKVM host stage-2: memory identity-mapped with 2M blocks; one
    /// page donated (its block split into a level-3 table), then two more.
    const DONATED: &str = "kvm-pgtable-diff-stream v1
config stage=stage2 context=nvhe granule=4k ia_bits=40 flags=idmap parange=2 arena_pages=64
force_pte host memory:0x40000000+0x10000000
s2_map addr=0x40000000 size=0x400000 phys=0x40000000 prot=RWX mc=4 flags=0
s2_set_owner addr=0x40001000 size=0x1000 mc=4 owner=1
s2_set_owner addr=0x40002000 size=0x2000 mc=4 owner=1
s2_map addr=0x40002000 size=0x1000 phys=0x40002000 prot=RWX mc=4 flags=0
s2_unmap addr=0x40000000 size=0x200000
s2_set_owner addr=0x40005000 size=0x1000 mc=4 owner=1
s2_map addr=0x40005000 size=0x1000 phys=0x40005000 prot=RWX mc=4 flags=0
s2_unmap addr=0x40001000 size=0x1000
";

    /// Owner 1 in an invalid descriptor: the owner field is bits [9:2].
    const OWNER_1: u64 = 1 << 2;

    /// A look-up at 0x40100000: an op whose range holds no annotation of
    /// these streams, to judge another op's trace by (what a broken op that
    /// did the same outside its range would leave).
    const ELSEWHERE: Op = Op::GetLeaf { addr: 0x4010_0000 };

    /// A side, the checker following its owners, and a full read of them.
    struct Fx {
        s: OpStream,
        side: RustSide,
        checker: Checker,
        read: OwnersRead,
    }

    impl Fx {
        fn new(stream: &str) -> Fx {
            let s = crate::opstream::parse(stream).unwrap();
            let mut side = RustSide::for_stream(&s.config);
            side.init();
            let mut checker = Checker::new(&s, &side).unwrap();
            checker.follow_owners();
            let read = OwnersRead::new(&side, Self::fmt(&s));
            Fx {
                s,
                side,
                checker,
                read,
            }
        }

        fn fmt(s: &OpStream) -> Format {
            crate::executor::format_of(s)
        }

        /// Runs op `i` on the side and gives its trace to `judge`.
        fn run(
            &mut self,
            i: usize,
            judge: impl FnOnce(&mut Fx, Vec<Event>) -> Option<What>,
        ) -> Option<What> {
            let op = self.s.ops[i].clone();
            let o = self.side.apply_raced(&op, None);
            judge(self, o.trace)
        }

        /// A side and its checker after the donations (ops 0..3).
        fn donated() -> Fx {
            let mut f = Fx::new(DONATED);
            f.apply_first(3);
            f
        }

        /// The checker's pass over `trace`, judged as `op`'s.
        fn pass(&mut self, op: &Op, trace: Vec<Event>) -> Option<Breach> {
            let o = Outcome::new(Value::Unit, trace);
            self.checker.check_in(
                self.side.arena(),
                ArchStep::Op(op),
                &o,
                false,
                true,
                &mut Vec::new(),
            )
        }

        /// [`Fx::pass`], which breaks no architecture rule (unless silenced).
        fn check(&mut self, op: &Op, trace: Vec<Event>) {
            assert_eq!(self.pass(op, trace), None);
        }

        /// Runs op `i` and judges its trace as an op elsewhere's.
        fn run_elsewhere(&mut self, i: usize) -> Option<What> {
            self.run(i, |f, t| f.judge(&ELSEWHERE, t))
        }

        /// The checker's verdict on `trace` judged as `op`'s, which the full
        /// read must share.
        fn judge(&mut self, op: &Op, trace: Vec<Event>) -> Option<What> {
            self.check(op, trace);
            let lost = self.checker.owner_lost(op);
            assert_eq!(
                lost,
                self.read.lost(&self.side, op),
                "the full read differs"
            );
            lost
        }

        /// Runs op `i` and judges it as itself.
        fn apply(&mut self, i: usize) -> Option<What> {
            let op = self.s.ops[i].clone();
            self.run(i, |f, t| f.judge(&op, t))
        }

        /// Runs ops `0..n`, each losing nothing.
        fn apply_first(&mut self, n: usize) {
            for i in 0..n {
                assert_eq!(self.apply(i), None, "op {i}");
            }
        }

        /// A page the checker holds no table in, from the top of the arena
        /// (`n`-th such page).
        fn nth_free_page(&self, n: usize) -> u64 {
            let free = (0..self.checker.npages)
                .rev()
                .filter(|&k| !self.checker.pages[k].live);
            self.checker.page_pa(free.clone().nth(n).unwrap())
        }

        fn free_page(&self) -> u64 {
            self.nth_free_page(0)
        }

        /// PA of the slot at (`ia`, `level`) of the tree now.
        fn slot_pa(&self, ia: u64, level: i8) -> u64 {
            let fmt = Self::fmt(&self.s);
            let size = fmt.entry_size(level);
            tree_of(&self.side, fmt)
                .tables
                .iter()
                .find(|(_, p)| p.level == level && (p.base..p.base + 512 * size).contains(&ia))
                .map(|(&pa, p)| pa + (ia - p.base) / size * 8)
                .unwrap()
        }
    }

    fn store(pa: u64, old: u64, val: u64) -> Event {
        Event::Store {
            pa,
            old,
            val,
            kind: crate::events::StoreKind::WriteOnce,
        }
    }

    fn alloc(pa: u64) -> Event {
        Event::ZallocPage {
            source: crate::events::AllocSource::Memcache,
            pa: Some(pa),
        }
    }

    fn lost_elsewhere(ia: u64) -> Option<What> {
        Some(What::OwnerLost {
            ia,
            level: 3,
            pte: OWNER_1,
            range: ELSEWHERE.range(),
        })
    }

    #[test]
    fn an_annotation_overwritten_outside_the_range_is_lost() {
        let mut f = Fx::donated();
        // The host maps 0x40002000 back: one store over its annotation,
        // judged as an op elsewhere's.
        let lost = f.run_elsewhere(3);
        assert_eq!(lost, lost_elsewhere(0x4000_2000));
    }

    #[test]
    fn an_annotation_overwritten_inside_the_range_is_not_lost() {
        let mut f = Fx::donated();
        // The map over 0x40002000 is its own op: its store over the
        // annotation is not even noted.
        let op = f.s.ops[3].clone();
        let trace = f.side.apply_raced(&op, None).trace;
        f.check(&op, trace);
        assert!(f.checker.owner_gone.is_empty());
        assert_eq!(f.checker.owner_lost(&op), None);
        // 0x40001000 and 0x40003000 are still annotated.
        let fmt = Fx::fmt(&f.s);
        let ias: Vec<u64> = tree_of(&f.side, fmt)
            .annotations(f.side.arena(), fmt)
            .iter()
            .map(|&(ia, ..)| ia)
            .collect();
        assert_eq!(ias, [0x4000_1000, 0x4000_3000]);
    }

    #[test]
    fn an_unmap_that_frees_the_table_loses_its_subtree() {
        let mut f = Fx::donated();
        // Unmapping the whole first 2M overwrites the level-2 table
        // descriptor above the annotations and frees their table: the
        // first of them by IA is reported.
        let lost = f.run_elsewhere(4);
        assert_eq!(lost, lost_elsewhere(0x4000_1000));
    }

    #[test]
    fn an_annotation_put_back_where_it_was_is_not_lost() {
        let mut f = Fx::donated();
        // The host maps 0x40002000 back and the page is donated again: one
        // step, judged elsewhere, that leaves the annotation as it was.
        let map = f.side.apply_raced(&f.s.ops[3].clone(), None).trace;
        let again = f.side.apply_raced(&f.s.ops[2].clone(), None).trace;
        assert_eq!(f.judge(&ELSEWHERE, [map, again].concat()), None);
        // The check starts the next interval with no note.
        assert!(f.checker.owner_gone.is_empty() && f.checker.owner_added.is_empty());
    }

    #[test]
    fn a_subtree_linked_and_cut_off_in_one_step_was_never_there() {
        let mut f = Fx::donated();
        f.checker.silence();
        // A new table page annotated at slot 1 replaces the 2M block at
        // 0x40200000, and the block comes back: a broken op (the architecture
        // oracle's findings silenced) that links a subtree and cuts it off
        // again, its annotation at 0x40201000 joined and left.
        let page = f.free_page();
        let slot = f.slot_pa(0x4020_0000, 2);
        let block = f.side.arena().read(slot).unwrap();
        let trace = vec![
            alloc(page),
            store(page + 8, 0, OWNER_1),
            store(slot, block, page | 3),
            store(slot, page | 3, block),
        ];
        assert_eq!(f.judge(&ELSEWHERE, trace), None);
    }

    #[test]
    fn another_agents_write_over_a_leaf_is_followed() {
        let mut f = Fx::donated();
        // Another agent clears the annotation at 0x40001000 (the unmap of
        // that page is what memory shows; the trace shows only the write).
        let slot = f.slot_pa(0x4000_1000, 3);
        let write = Event::Interference {
            at: 0,
            access: Access::ReadOnce,
            pa: slot,
            old: OWNER_1,
            new: 0,
        };
        let lost = f.run(7, |f, _| f.judge(&ELSEWHERE, vec![write]));
        assert_eq!(lost, lost_elsewhere(0x4000_1000));
    }

    #[test]
    fn an_annotation_made_and_removed_in_one_step_was_never_there() {
        let mut f = Fx::new(DONATED);
        f.apply_first(4);
        // 0x40005000 is donated and mapped back within one step judged
        // elsewhere: it joined and left, so nothing that was there is lost.
        let donate = f.side.apply_raced(&f.s.ops[5].clone(), None).trace;
        let map = f.side.apply_raced(&f.s.ops[6].clone(), None).trace;
        assert_eq!(f.judge(&ELSEWHERE, [donate, map].concat()), None);
    }

    #[test]
    fn a_table_descriptor_overwritten_loses_the_subtree_below() {
        let mut f = Fx::donated();
        f.checker.silence();
        // The op's one store clears the level-2 table descriptor above the
        // annotations, with nothing stored below it (the unmap is what
        // memory shows; its TLB maintenance is not in the trace, hence the
        // silenced architecture rules).
        let slot = f.slot_pa(0x4000_0000, 2);
        let table = f.side.arena().read(slot).unwrap();
        let store = Event::Store {
            pa: slot,
            old: table,
            val: 0,
            kind: crate::events::StoreKind::WriteOnce,
        };
        let lost = f.run(4, |f, _| f.judge(&ELSEWHERE, vec![store]));
        assert_eq!(lost, lost_elsewhere(0x4000_1000));
    }

    #[test]
    fn another_agents_write_is_followed() {
        let mut f = Fx::donated();
        // Another agent clears the level-2 table descriptor above the
        // annotations (the unmap is what memory shows; the trace shows only
        // that agent's write).
        let slot = f.slot_pa(0x4000_0000, 2);
        let table = f.side.arena().read(slot).unwrap();
        let write = Event::Interference {
            at: 0,
            access: Access::ReadOnce,
            pa: slot,
            old: table,
            new: 0,
        };
        let lost = f.run(4, |f, _| f.judge(&ELSEWHERE, vec![write]));
        assert_eq!(lost, lost_elsewhere(0x4000_1000));
    }

    #[test]
    fn another_agents_write_is_judged_by_the_op_that_checks() {
        let mut f = Fx::donated();
        // Another agent clears the annotation at 0x40001000 in a step whose
        // own op (the unmap of that page, which memory shows) stored nothing
        // and whose range covers it: no check follows a step that changed
        // no memory, so the write is judged with the next op's range,
        // elsewhere, and the annotation is lost there.
        let slot = f.slot_pa(0x4000_1000, 3);
        let write = Event::Interference {
            at: 0,
            access: Access::ReadOnce,
            pa: slot,
            old: OWNER_1,
            new: 0,
        };
        let unmap = f.s.ops[7].clone();
        let _ = f.side.apply_raced(&unmap, None);
        f.check(&unmap, vec![write]);
        let lost = f.checker.owner_lost(&ELSEWHERE);
        assert_eq!(lost, f.read.lost(&f.side, &ELSEWHERE));
        assert_eq!(lost, lost_elsewhere(0x4000_1000));
    }

    #[test]
    fn a_table_freed_while_linked_loses_its_annotations() {
        let mut f = Fx::donated();
        f.checker.silence();
        // The level-3 table of the annotations is freed with its table
        // descriptor still in place (the architecture oracle's own finding,
        // silenced here): nothing reaches them any more.
        let table = f.slot_pa(0x4000_0000, 3);
        let put = Event::PutPage {
            page: table,
            count: 0,
        };
        f.check(&ELSEWHERE, vec![put]);
        assert_eq!(
            f.checker.owner_lost(&ELSEWHERE),
            lost_elsewhere(0x4000_1000)
        );
    }

    /// Following the owners leaves the architecture oracle's own verdict on
    /// a table freed while linked as it is.
    #[test]
    fn a_table_freed_while_linked_is_still_the_architecture_oracles_finding() {
        let mut f = Fx::donated();
        let table = f.slot_pa(0x4000_0000, 3) & !0xfff;
        let put = Event::PutPage {
            page: table,
            count: 0,
        };
        let breach = f.pass(&ELSEWHERE, vec![put]);
        assert_eq!(breach.map(|b| b.rule), Some(Rule::FreedTableReachable));
    }

    /// The pages below a table freed while linked are reached by nothing:
    /// what is stored into them afterwards is not the live tree's.
    #[test]
    fn the_pages_below_a_freed_table_are_not_followed() {
        let mut f = Fx::donated();
        f.checker.silence();
        // The level-2 table above the annotations is freed with its table
        // descriptor in place: the annotations below are lost.
        let level2 = f.slot_pa(0x4000_0000, 2) & !0xfff;
        let leaf = f.slot_pa(0x4000_4000, 3);
        let mapped = f.side.arena().read(leaf).unwrap();
        f.check(
            &ELSEWHERE,
            vec![Event::PutPage {
                page: level2,
                count: 0,
            }],
        );
        assert_eq!(
            f.checker.owner_lost(&ELSEWHERE),
            lost_elsewhere(0x4000_1000)
        );
        // An annotation stored into the orphaned level-3 table, then cleared,
        // one step each: neither is the live tree's.
        f.check(&ELSEWHERE, vec![store(leaf, mapped, OWNER_1)]);
        assert_eq!(f.checker.owner_lost(&ELSEWHERE), None);
        f.check(&ELSEWHERE, vec![store(leaf, OWNER_1, 0)]);
        assert_eq!(f.checker.owner_lost(&ELSEWHERE), None);
    }

    /// A table page whose only non-zero entry is a LOCKED marker (which
    /// pgtable.c does not count, so the page has no counted entry) still
    /// has its annotation noted when it is linked and when it is cut off.
    #[test]
    fn a_page_holding_only_a_locked_marker_is_followed() {
        let mut f = Fx::new(DONATED);
        f.apply_first(1);
        f.checker.silence();
        const LOCKED: u64 = 1 << 10;
        let (page, other, third) = (f.free_page(), f.nth_free_page(1), f.nth_free_page(2));
        let slot = f.slot_pa(0x4020_0000, 2);
        let block = f.side.arena().read(slot).unwrap();
        let table = page | 3;
        let mut judge = |trace: Vec<Event>| {
            f.check(&ELSEWHERE, trace);
            f.checker.owner_lost(&ELSEWHERE)
        };
        // A new table with a LOCKED slot 1 replaces the 2M block at
        // 0x40200000: its marker joins the live tree.
        let link = vec![
            alloc(page),
            store(page + 8, 0, LOCKED),
            store(slot, block, table),
        ];
        assert_eq!(judge(link), None);
        // The block comes back: the marker, there since the last check,
        // leaves.
        assert_eq!(
            judge(vec![store(slot, table, block)]),
            Some(What::OwnerLost {
                ia: 0x4020_1000,
                level: 3,
                pte: LOCKED,
                range: ELSEWHERE.range(),
            })
        );
        // Another such table linked and cut off again in one step: its
        // marker joined before it left, so it was never there.
        let table = other | 3;
        let both = vec![
            alloc(other),
            store(other + 8, 0, LOCKED),
            store(slot, block, table),
            store(slot, table, block),
        ];
        assert_eq!(judge(both), None);
        // An empty table linked first, its marker stored into it while it
        // is linked (the shadow counts the marker store by store, not from
        // a page it recounts), then cut off in a later step: lost.
        let table = third | 3;
        assert_eq!(judge(vec![alloc(third), store(slot, block, table)]), None);
        assert_eq!(judge(vec![store(third + 8, 0, LOCKED)]), None);
        assert_eq!(
            judge(vec![store(slot, table, block)]),
            Some(What::OwnerLost {
                ia: 0x4020_1000,
                level: 3,
                pte: LOCKED,
                range: ELSEWHERE.range(),
            })
        );
    }

    /// A checker dropped with notes pending (a run cut short) hands its
    /// lists back empty: the next one on this thread starts with none.
    #[test]
    fn the_next_checker_starts_with_no_notes() {
        let mut f = Fx::donated();
        let op = f.s.ops[4].clone();
        let trace = f.side.apply_raced(&op, None).trace;
        f.check(&ELSEWHERE, trace);
        assert!(!f.checker.owner_gone.is_empty());
        drop(f);
        let f = Fx::new(DONATED);
        assert!(f.checker.owner_gone.is_empty() && f.checker.owner_added.is_empty());
    }
}
