// SPDX-License-Identifier: GPL-2.0-only
//! The contract oracle: rules from the kernel's own documented contracts,
//! checked on one side (the reference side of a pair, or the only side of a
//! C-only run). Both sides may agree and still break them.
//!
//! - `kvm_pgtable_mm_ops` (kvm_pgtable.h): page operations on live pages,
//!   counts that do not underflow, `free_pages_exact` of exactly what
//!   `zalloc_pages_exact` gave (the sides record each breach as an
//!   [`Event::Misuse`]; the first in a step's trace is found by the scan
//!   that cuts the step at its fatal event, [`crate::caller::Cut::misuse`]);
//! - destroy releases everything the table held ([`leftovers`]);
//! - pKVM's host stage-2 keeps ownership only in invalid descriptors, so an
//!   annotation outside an op's range must survive it ([`Owners`]; the
//!   invariant that motivates `force_pte_cb`).

use std::collections::BTreeMap;

use crate::arena::Arena;
use crate::events::{Event, Trace};
use crate::hash::FoldMap;
use crate::opstream::Op;
use crate::results::What;
use crate::side::Side;
use crate::tree::{Format, TablePos, TreeIndex};

/// Index of a side's current tree.
pub fn tree_of(side: &dyn Side, fmt: Format) -> TreeIndex {
    match side.root() {
        Some(root) => TreeIndex::build(side.arena(), fmt, root.pgd, root.pages, root.start_level),
        None => TreeIndex::default(),
    }
}

/// The owner-annotation invariant of the pKVM host stage-2, followed op by op.
///
/// Only an op's descriptor stores can add or remove annotations, so the
/// annotation set is updated from them ([`Owners::note`], [`Owners::check`])
/// instead of reading the whole tree after every op:
/// - a leaf stored into a table page of the tree changes that slot alone;
/// - a table descriptor stored or overwritten at a slot of the tree replaces
///   the subtree below that slot: its old pages and annotations are dropped
///   and the slot's subtree is read again from memory (splits, collapses, a
///   map that needs a new table, an unmap that frees one);
/// - stores into pages outside the tree change nothing the tree holds: a page
///   joins it only through a table descriptor, which the previous rule reads.
///
/// Anything else the shortcut cannot follow reads the whole tree again:
/// another agent's write (a race), a page of the tree freed while still
/// linked, a subtree that reaches a page twice, any event not known to leave
/// table memory alone.
pub struct Owners {
    fmt: Format,
    page_size: u64,
    /// The table pages of the tree as last followed.
    index: TreeIndex,
    /// The annotation words of each page of `index` that holds one (0 where
    /// a slot holds none), by page PA: an update is a word written, and the
    /// annotations below a replaced slot are those of the pages it drops. A
    /// page of `index` missing here holds none, so a fresh subtree's pages
    /// with no annotation cost a scan, not a copy.
    ann: FoldMap<u64, Box<[u64]>>,
    /// Slots of the tree (their PA) stored to since the last check that
    /// held an annotation then or were stored one, once per such store: the
    /// only slots whose annotation word can change. Each is read from memory
    /// at the next check, in program order (a slot met again finds its word
    /// already up to date).
    slots: Vec<u64>,
    /// Slots of the tree whose table descriptor was stored or overwritten
    /// since the last check: (level, IA, PA of the slot).
    relinked: Vec<(i8, u64, u64)>,
    /// Pages freed since the last check.
    freed: Vec<u64>,
    /// Something since the last check the shortcut cannot follow: the next
    /// check reads the whole tree again.
    reread: bool,
    /// Checks every update from stores against a full read (tests).
    cross_check: bool,
    /// [`Owners::replace_subtrees`]' lists, kept across checks.
    sub: Subtrees,
}

/// The lists of [`Owners::replace_subtrees`]: the new subtrees' pages, their
/// PAs, and the old and new subtrees' annotations.
#[derive(Default)]
struct Subtrees {
    fresh: Vec<(u64, TablePos)>,
    pages: Vec<u64>,
    old: Vec<(u64, i8, u64)>,
    now: Vec<(u64, i8, u64)>,
}

impl Subtrees {
    fn clear(&mut self) {
        self.fresh.clear();
        self.pages.clear();
        self.old.clear();
        self.now.clear();
    }
}

/// An owner invariant's lists (`slots`, `relinked`, `freed`, `sub`), kept
/// across runs: every host_stage2 input makes one, and under ASan lists
/// grown afresh in every run were fresh pages every time (freed memory waits
/// in the quarantine), about 8% of the host_stage2 corpus replay.
type Lists = (Vec<u64>, Vec<(i8, u64, u64)>, Vec<u64>, Subtrees);

thread_local! {
    static LISTS: std::cell::RefCell<Option<Lists>> = const { std::cell::RefCell::new(None) };
}

impl Drop for Owners {
    fn drop(&mut self) {
        let mut lists = (
            std::mem::take(&mut self.slots),
            std::mem::take(&mut self.relinked),
            std::mem::take(&mut self.freed),
            std::mem::take(&mut self.sub),
        );
        lists.0.clear();
        lists.1.clear();
        lists.2.clear();
        lists.3.clear();
        LISTS.with(|l| *l.borrow_mut() = Some(lists));
    }
}

/// The page of the last slot looked up (runs of slots share one): its PA,
/// and when the tree holds it, its place and annotation words (`W`).
type Looked<W> = Option<(u64, Option<(TablePos, Option<W>)>)>;

/// An annotation lost by an op, as [`What::OwnerLost`] reports it.
fn lost(ia: u64, level: i8, pte: u64, range: Option<(u64, u64)>) -> What {
    What::OwnerLost {
        ia,
        level,
        pte,
        range,
    }
}

impl Owners {
    /// Starts from the annotations of `side`'s tree now.
    pub fn new(side: &dyn Side, fmt: Format) -> Owners {
        let index = tree_of(side, fmt);
        let ann = annotation_words(side.arena(), &index);
        let (slots, relinked, freed, sub) =
            LISTS.with(|l| l.borrow_mut().take()).unwrap_or_default();
        Owners {
            fmt,
            page_size: side.arena().geometry().page_size,
            index,
            ann,
            slots,
            relinked,
            freed,
            reread: false,
            cross_check: false,
            sub,
        }
    }

    /// After every check, also reads the whole tree and panics unless the
    /// finding, the annotation set and the index are what that read gives
    /// (for tests: the shortcut must be exact).
    pub fn cross_checked(mut self) -> Owners {
        self.cross_check = true;
        self
    }

    /// Every annotation of the tree as followed, as (IA, level, pte), sorted.
    fn annotations(&self) -> Vec<(u64, i8, u64)> {
        let mut out = Vec::new();
        for (pa, &pos) in &self.index.tables {
            if let Some(words) = self.ann.get(pa) {
                annotations_of(words, pos, self.fmt, &mut out);
            }
        }
        out.sort_unstable();
        out
    }

    /// Takes note of a step's trace (every step's, before the
    /// [`Owners::check`] that follows it): which slots of the tree as it
    /// stood before the step its stores may have changed an annotation of,
    /// where it stored or overwrote a table descriptor, and which pages it
    /// freed.
    ///
    /// A store can change a slot's annotation word only if the slot held an
    /// annotation before or the store writes one: a slot that held none and
    /// got none holds none at the end, whatever came in between (a
    /// break-before-make lock, a valid leaf). The other stores are passed
    /// over here, and the check reads the kept slots' last values from
    /// memory instead of netting the stores.
    pub fn note(&mut self, trace: &Trace) {
        if self.reread {
            return;
        }
        let Owners {
            fmt,
            page_size,
            index,
            ann,
            slots,
            relinked,
            freed,
            reread,
            ..
        } = self;
        // Stores come in runs over one table page: look its place and its
        // annotation words up once.
        let mut last: Looked<&[u64]> = None;
        for e in trace {
            match *e {
                Event::Store { pa, old, val, .. } => {
                    let page = pa & !(*page_size - 1);
                    let here = match last {
                        Some((p, here)) if p == page => here,
                        _ => {
                            let here = index
                                .tables
                                .get(&page)
                                .map(|&pos| (pos, ann.get(&page).map(|w| &**w)));
                            last = Some((page, here));
                            here
                        }
                    };
                    let Some((TablePos { level, base }, words)) = here else {
                        continue;
                    };
                    let slot = ((pa - page) / 8) as usize;
                    if is_annotation(val) || words.is_some_and(|w| w[slot] != 0) {
                        slots.push(pa);
                    }
                    if fmt.is_table(old, level) || fmt.is_table(val, level) {
                        let ia =
                            base.wrapping_add((slot as u64).wrapping_mul(fmt.entry_size(level)));
                        relinked.push((level, ia, pa));
                    }
                }
                Event::PutPage { page, count: 0 } => freed.push(page),
                Event::FreeUnlinkedTable { pa, .. } => freed.push(pa & !(*page_size - 1)),
                Event::PutPage { .. }
                | Event::ZallocPage { .. }
                | Event::RcuCallback { .. }
                | Event::TlbiHyp { .. }
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
                    *reread = true;
                    return;
                }
            }
        }
    }

    /// After `op` ran on `side` (and [`Owners::note`] saw its trace): every
    /// annotation outside the op's range must still be there. When several
    /// are gone, the first by (IA, level) is the one reported.
    pub fn check(&mut self, side: &dyn Side, op: &Op) -> Option<What> {
        if !self.cross_check {
            return self.follow(side, op);
        }
        let before = self.annotations();
        let found = self.follow(side, op);
        // What a full read finds: the first annotation from before the op
        // that is gone and was outside its range.
        let full = tree_of(side, self.fmt);
        let now = full.annotations(side.arena(), self.fmt);
        let expected = before.iter().find_map(|&(ia, level, pte)| {
            let inside = op.range().is_some_and(|(start, s)| {
                ia < start.saturating_add(s)
                    && ia.saturating_add(self.fmt.entry_size(level)) > start
            });
            (!inside && now.binary_search(&(ia, level, pte)).is_err())
                .then(|| lost(ia, level, pte, op.range()))
        });
        assert_eq!(found, expected, "owner invariant followed through {op:?}");
        if found.is_none() {
            assert_eq!(
                self.index.tables, full.tables,
                "tree index followed through {op:?}"
            );
            assert_eq!(
                self.annotations(),
                now,
                "annotations followed through {op:?}"
            );
        }
        found
    }

    /// [`Owners::check`] itself.
    fn follow(&mut self, side: &dyn Side, op: &Op) -> Option<What> {
        let range = op.range();
        let fmt = self.fmt;
        let inside = |ia: u64, level: i8| {
            let size = fmt.entry_size(level);
            range.is_some_and(|(start, s)| {
                let end = start.saturating_add(s);
                ia < end && ia.saturating_add(size) > start
            })
        };
        let mut relinked = std::mem::take(&mut self.relinked);
        let mut freed = std::mem::take(&mut self.freed);
        let mut first_lost: Option<(u64, i8, u64)> = None;
        let mut lose = |ia: u64, level: i8, pte: u64| {
            if first_lost.is_none_or(|(i, l, _)| (ia, level) < (i, l)) {
                first_lost = Some((ia, level, pte));
            }
        };
        if !self.reread && !relinked.is_empty() {
            self.reread = !self.replace_subtrees(side, &mut relinked, &freed, |ia, level, pte| {
                if !inside(ia, level) {
                    lose(ia, level, pte);
                }
            });
        } else if !freed.is_empty() {
            // A page of the tree freed with no table descriptor changed: only
            // a broken tree (or a misuse the diff reports) does that.
            self.reread |= freed.iter().any(|p| self.index.tables.contains_key(p));
        }
        relinked.clear();
        freed.clear();
        (self.relinked, self.freed) = (relinked, freed);
        if std::mem::take(&mut self.reread) {
            self.slots.clear();
            let before = self.annotations();
            self.index = tree_of(side, self.fmt);
            self.ann = annotation_words(side.arena(), &self.index);
            let now = self.annotations();
            for &(ia, level, pte) in &before {
                if !inside(ia, level) && now.binary_search(&(ia, level, pte)).is_err() {
                    return Some(lost(ia, level, pte, range));
                }
            }
            return None;
        }
        // Each kept slot's word against its value now. A slot of a replaced
        // subtree is no longer in the index, or is in it with the words just
        // read, which are up to date.
        let arena = side.arena();
        let words_per_page = (self.page_size / 8) as usize;
        let (index, ann) = (&self.index, &mut self.ann);
        let slots = std::mem::take(&mut self.slots);
        // Slots come in runs over one page: its place and words looked up once.
        let mut page: Looked<&mut Box<[u64]>> = None;
        for &pa in &slots {
            let base = pa & !(self.page_size - 1);
            if page.as_ref().is_none_or(|&(p, _)| p != base) {
                let here = index
                    .tables
                    .get(&base)
                    .map(|&pos| (pos, ann.get_mut(&base)));
                page = Some((base, here));
            }
            let Some((_, Some((pos, words)))) = page.as_mut() else {
                continue;
            };
            // A page no longer live holds no annotation, as a full read
            // finds (`page_annotation_words`). The index holds none: a page
            // freed in the step is dropped with its subtree or makes the
            // check read the whole tree.
            let now = arena.read(pa).filter(|&d| is_annotation(d)).unwrap_or(0);
            let slot = ((pa - base) / 8) as usize;
            let before = words.as_ref().map_or(0, |w| w[slot]);
            if before == now {
                continue;
            }
            if before != 0 {
                let ia = pos
                    .base
                    .wrapping_add((slot as u64).wrapping_mul(fmt.entry_size(pos.level)));
                if !inside(ia, pos.level) {
                    lose(ia, pos.level, before);
                }
            }
            match words {
                Some(words) => words[slot] = now,
                None => {
                    let mut fresh = vec![0; words_per_page].into_boxed_slice();
                    fresh[slot] = now;
                    ann.insert(base, fresh);
                    // Later slots of this page find the words just made.
                    page = None;
                }
            }
        }
        let mut slots = slots;
        slots.clear();
        self.slots = slots;
        first_lost.map(|(ia, level, pte)| lost(ia, level, pte, range))
    }

    /// Replaces the subtrees below the slots whose table descriptor an op
    /// stored or overwrote: drops their old pages from the index and their
    /// annotations from the set (passing each old annotation the new subtree
    /// lacks to `lose`), and reads them again from memory (the kept slots
    /// inside them then find their words up to date, or their page gone from
    /// the index). False, with nothing changed, when only a full read is
    /// exact.
    fn replace_subtrees(
        &mut self,
        side: &dyn Side,
        relinked: &mut Vec<(i8, u64, u64)>,
        freed: &[u64],
        lose: impl FnMut(u64, i8, u64),
    ) -> bool {
        let mut sub = std::mem::take(&mut self.sub);
        let done = self.replace_subtrees_with(&mut sub, side, relinked, freed, lose);
        sub.clear();
        self.sub = sub;
        done
    }

    /// [`Owners::replace_subtrees`] with its lists given (empty).
    fn replace_subtrees_with(
        &mut self,
        sub: &mut Subtrees,
        side: &dyn Side,
        relinked: &mut Vec<(i8, u64, u64)>,
        freed: &[u64],
        mut lose: impl FnMut(u64, i8, u64),
    ) -> bool {
        let fmt = self.fmt;
        // The outermost slots only: a slot inside another's subtree is read
        // with it. Coarser levels first, so an outer slot is kept first.
        relinked.sort_unstable();
        relinked.dedup_by_key(|&mut (level, ia, _)| (level, ia));
        // The kept slots by IA, to level and slot PA: disjoint ranges, so
        // the one that may contain an address starts last at or before it.
        let mut tops: BTreeMap<u64, (i8, u64)> = BTreeMap::new();
        let below = |tops: &BTreeMap<u64, (i8, u64)>, ia: u64, level: i8| {
            tops.range(..=ia)
                .next_back()
                .is_some_and(|(&start, &(l, _))| level > l && ia - start < fmt.entry_size(l))
        };
        for &(level, ia, pa) in relinked.iter() {
            if !below(&tops, ia, level) {
                tops.insert(ia, (level, pa));
            }
        }
        let stays =
            |tops: &BTreeMap<u64, (i8, u64)>, pos: &TablePos| !below(tops, pos.base, pos.level);
        // A freed page still linked outside every replaced subtree.
        if freed.iter().any(|p| {
            self.index
                .tables
                .get(p)
                .is_some_and(|pos| stays(&tops, pos))
        }) {
            return false;
        }
        let arena = side.arena();
        let Subtrees {
            fresh,
            pages,
            old,
            now,
        } = sub;
        for (&ia, &(level, pa)) in &tops {
            let Some(pte) = arena.read(pa) else {
                return false;
            };
            if !TreeIndex::subtree(arena, fmt, pte, level, ia, fresh) {
                return false;
            }
        }
        // A page reached twice, or also linked where nothing changed.
        pages.extend(fresh.iter().map(|&(pa, _)| pa));
        pages.sort_unstable();
        if pages.windows(2).any(|w| w[0] == w[1])
            || pages.iter().any(|p| {
                self.index
                    .tables
                    .get(p)
                    .is_some_and(|pos| stays(&tops, pos))
            })
        {
            return false;
        }
        // The old subtrees' annotations, from the words of the pages they drop.
        let ann = &mut self.ann;
        self.index.tables.retain(|pa, pos| {
            let keep = stays(&tops, pos);
            if !keep {
                if let Some(words) = ann.remove(pa) {
                    annotations_of(&words, *pos, fmt, old);
                }
            }
            keep
        });
        for &(pa, pos) in fresh.iter() {
            self.index.tables.insert(pa, pos);
            if let Some(words) = page_annotation_words(arena, pa) {
                annotations_of(&words, pos, fmt, now);
                self.ann.insert(pa, words);
            }
        }
        now.sort_unstable();
        for &(ia, l, pte) in old.iter() {
            if now.binary_search(&(ia, l, pte)).is_err() {
                lose(ia, l, pte);
            }
        }
        true
    }
}

/// An owner annotation: a non-zero invalid descriptor.
fn is_annotation(d: u64) -> bool {
    d != 0 && d & 1 == 0
}

/// The annotation words of table page `pa` (0 where a slot holds none), or
/// `None` when it holds none at all or cannot be read (as
/// [`crate::tree::annotations_in`] skips such a page).
fn page_annotation_words(arena: &Arena, pa: u64) -> Option<Box<[u64]>> {
    arena.read(pa)?;
    let words = arena.page_words(pa);
    // A plain scan first: it is the whole cost of the pages with none.
    if !words.iter().any(|&d| is_annotation(d)) {
        return None;
    }
    Some(
        words
            .iter()
            .map(|&d| if is_annotation(d) { d } else { 0 })
            .collect(),
    )
}

/// [`page_annotation_words`] of every page of `index` that holds one.
fn annotation_words(arena: &Arena, index: &TreeIndex) -> FoldMap<u64, Box<[u64]>> {
    index
        .tables
        .keys()
        .filter_map(|&pa| Some((pa, page_annotation_words(arena, pa)?)))
        .collect()
}

/// Appends the annotations held in `words` (a page at `pos`) to `out`, as
/// (IA, level, pte).
fn annotations_of(words: &[u64], pos: TablePos, fmt: Format, out: &mut Vec<(u64, i8, u64)>) {
    for (i, &d) in words.iter().enumerate() {
        if d != 0 {
            let ia = pos
                .base
                .wrapping_add((i as u64).wrapping_mul(fmt.entry_size(pos.level)));
            out.push((ia, pos.level, d));
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rust_side::RustSide;

    /// A 4K pKVM host stage-2: memory identity-mapped with 2M blocks, one
    /// page donated (its block split into a table: a full read), then two
    /// more pages of that table donated (stores only: an update from them).
    fn donated() -> (crate::opstream::OpStream, RustSide, Owners) {
        let (s, mut side, mut owners) = fresh();
        apply_each(&mut side, &mut owners, &s.ops[..3]);
        (s, side, owners)
    }

    /// Applies `ops` in turn; each loses nothing outside its own range.
    fn apply_each(side: &mut RustSide, owners: &mut Owners, ops: &[crate::opstream::Op]) {
        for op in ops {
            let o = side.apply_raced(op, None);
            owners.note(&o.trace);
            assert_eq!(owners.check(side, op), None, "{op:?}");
        }
    }

    /// `stream` on an initialised Rust side, nothing applied, its owners
    /// followed and cross-checked against a full read after every check.
    fn followed(stream: &str) -> (crate::opstream::OpStream, RustSide, Owners) {
        let s = crate::opstream::parse(stream).unwrap();
        let fmt = crate::executor::format_of(&s);
        let mut side = RustSide::for_stream(&s.config);
        side.init();
        let owners = Owners::new(&side, fmt).cross_checked();
        (s, side, owners)
    }

    /// What `owners` finds when the op judged is elsewhere (a look-up at
    /// 0x40100000, inside no annotation of these streams).
    fn check_elsewhere(owners: &mut Owners, side: &RustSide) -> Option<What> {
        owners.check(side, &crate::opstream::Op::GetLeaf { addr: 0x4010_0000 })
    }

    /// Owner 1 at the level-3 slot `ia`, lost by an op elsewhere.
    fn lost_elsewhere(ia: u64) -> Option<What> {
        Some(What::OwnerLost {
            ia,
            level: 3,
            pte: OWNER_1,
            range: Some((0x4010_0000, 1)),
        })
    }

    /// The stream of [`donated`], its side initialised, nothing applied.
    fn fresh() -> (crate::opstream::OpStream, RustSide, Owners) {
        followed(
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
        assert_eq!(
            check_elsewhere(&mut owners, &side),
            lost_elsewhere(0x4000_2000)
        );
    }

    #[test]
    fn an_annotation_stored_into_a_page_that_held_none_is_followed() {
        // A level-3 table with one page mapped and no annotation (read with
        // its new subtree: no words kept), then an owner stored into it, then
        // that owner overwritten by a map.
        let (s, mut side, mut owners) = followed(
            "kvm-pgtable-diff-stream v1
config stage=stage2 context=nvhe granule=4k ia_bits=40 flags=idmap parange=2 arena_pages=64
s2_map addr=0x40200000 size=0x1000 phys=0x40200000 prot=RWX mc=4 flags=0
s2_set_owner addr=0x40201000 size=0x1000 mc=4 owner=1
s2_map addr=0x40201000 size=0x1000 phys=0x40201000 prot=RWX mc=4 flags=0
",
        );
        apply_each(&mut side, &mut owners, &s.ops[..2]);
        assert!(!owners.reread);
        assert_eq!(owners.annotations(), [(0x4020_1000, 3, OWNER_1)]);
        let o = side.apply_raced(&s.ops[2], None);
        owners.note(&o.trace);
        assert_eq!(
            check_elsewhere(&mut owners, &side),
            lost_elsewhere(0x4020_1000)
        );
    }

    #[test]
    fn an_annotation_overwritten_inside_the_range_is_not_lost() {
        let (s, mut side, mut owners) = donated();
        let o = side.apply_raced(&s.ops[3], None);
        owners.note(&o.trace);
        assert_eq!(owners.check(&side, &s.ops[3]), None);
        // 0x40001000 and 0x40003000 are still annotated.
        let ias: Vec<u64> = owners.annotations().iter().map(|&(ia, ..)| ia).collect();
        assert_eq!(ias, [0x4000_1000, 0x4000_3000]);
    }

    #[test]
    fn an_annotation_cleared_in_one_store_leaves_the_set() {
        let (_, mut side, mut owners) = donated();
        // The unmap walker clears an invalid counted entry with a single
        // store of 0 (no break-before-make lock in between): a slot whose
        // only store writes no annotation, kept for what it held.
        let unmap = crate::opstream::Op::S2Unmap {
            addr: 0x4000_2000,
            size: 0x1000,
        };
        let o = side.apply_raced(&unmap, None);
        owners.note(&o.trace);
        let [pa] = owners.slots[..] else {
            panic!("one slot kept, not {:?}", owners.slots);
        };
        assert_eq!(side.arena().read(pa), Some(0));
        assert_eq!(owners.check(&side, &unmap), None);
        let ias: Vec<u64> = owners.annotations().iter().map(|&(ia, ..)| ia).collect();
        assert_eq!(ias, [0x4000_1000, 0x4000_3000]);
    }

    #[test]
    fn an_unmap_that_frees_the_table_drops_its_subtree() {
        let (s, mut side, mut owners) = donated();
        // Unmapping the whole first 2M frees the table of annotations: its
        // level-2 slot at 0x40000000 is overwritten.
        let o = side.apply_raced(&s.ops[4], None);
        owners.note(&o.trace);
        assert!(!owners.reread, "a subtree replaced, not a full read");
        let slots: Vec<(i8, u64)> = owners.relinked.iter().map(|&(l, ia, _)| (l, ia)).collect();
        assert_eq!(slots, [(2, 0x4000_0000)]);
        assert_eq!(
            check_elsewhere(&mut owners, &side),
            lost_elsewhere(0x4000_1000)
        );
    }

    #[test]
    fn another_agents_write_reads_the_whole_tree() {
        let (s, mut side, mut owners) = donated();
        // The unmap frees the table of annotations, but the trace shows only
        // another agent's write: no store tells where, so the tree is read.
        let _ = side.apply_raced(&s.ops[4], None);
        let write = Event::Interference {
            at: 0,
            access: crate::events::Access::ReadOnce,
            pa: 0,
            old: 0,
            new: 0,
        };
        owners.note(&vec![write]);
        assert_eq!(
            check_elsewhere(&mut owners, &side),
            lost_elsewhere(0x4000_1000)
        );
    }

    /// An owner invariant dropped between a note and its check (a run cut
    /// short) gives its lists back empty: the next run's (on the same
    /// thread, which reuses them) keeps no slot or subtree of the last one,
    /// and follows its own stream from its stores alone.
    #[test]
    fn the_next_owners_start_with_nothing_of_the_last_run() {
        let (s, mut side, mut owners) = donated();
        let o = side.apply_raced(&s.ops[4], None);
        owners.note(&o.trace);
        assert!(!owners.relinked.is_empty() && !owners.slots.is_empty());
        drop(owners);
        let (s, mut side, mut owners) = fresh();
        assert!(owners.slots.is_empty() && owners.relinked.is_empty() && owners.freed.is_empty());
        apply_each(&mut side, &mut owners, &s.ops[..3]);
        assert!(!owners.reread);
        let ias: Vec<u64> = owners.annotations().iter().map(|&(ia, ..)| ia).collect();
        assert_eq!(ias, [0x4000_1000, 0x4000_2000, 0x4000_3000]);
    }

    #[test]
    fn a_split_reads_the_new_table_alone() {
        let (s, mut fresh, mut owners) = fresh();
        let o = fresh.apply_raced(&s.ops[0], None);
        owners.note(&o.trace);
        assert_eq!(owners.check(&fresh, &s.ops[0]), None);
        // The first donation splits the 2M block at 0x40000000 into a
        // table: one table descriptor stored at level 2.
        let o = fresh.apply_raced(&s.ops[1], None);
        owners.note(&o.trace);
        assert!(!owners.reread);
        let slots: Vec<(i8, u64)> = owners.relinked.iter().map(|&(l, ia, _)| (l, ia)).collect();
        assert_eq!(slots, [(2, 0x4000_0000)]);
        assert_eq!(owners.check(&fresh, &s.ops[1]), None);
        assert_eq!(owners.annotations(), [(0x4000_1000, 3, OWNER_1)]);
        // The new level-3 table covers 0x40000000..0x40200000.
        let level3: Vec<u64> = owners
            .index
            .tables
            .values()
            .filter(|p| p.level == 3)
            .map(|p| p.base)
            .collect();
        assert_eq!(level3, [0x4000_0000]);
    }
}
