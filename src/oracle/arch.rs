// SPDX-License-Identifier: GPL-2.0-only
//! The architecture oracle: the Arm architecture (VMSAv8-64) and the TLB
//! contracts `kvm_pgtable.h` documents, checked on one side's event trace
//! and memory after every step. Both sides share every kernel behaviour by
//! design, so only a third party can see a bug they share.
//!
//! What it keeps (one [`Checker`] per run, fed the reference side's outcome
//! of every step):
//!
//! - a **shadow** of every table page, replayed from the trace (allocations
//!   zero a page, stores write it, frees drop it): the memory as it was at
//!   each event, which the arena (the memory after the whole op) cannot
//!   give;
//! - the **position** (level, input address, linked into the live tree or
//!   not) of every table page, kept up to date as table descriptors are
//!   stored and removed;
//! - a **TLB model**: what a TLB may hold that the tables no longer say.
//!   Any valid descriptor the hardware walker can reach may be cached (a
//!   leaf in a TLB, a table descriptor in a walk cache), so when a store
//!   removes or changes one, the old entry is *stale* until a TLBI that
//!   covers it completes. Live entries agree with memory and need no
//!   tracking; invalid descriptors are never cached (Arm ARM, "Translation
//!   table entries that generate a Translation fault are not cached").
//!
//! The rules ([`Rule`]) and what each cites are listed there; the design
//! and the exemptions are in docs/KNOWN-DIVERGENCES.md ("The architecture
//! oracle").
//!
//! Barriers and TLBIs are modelled per event with the semantics the real
//! instruction or kernel helper has (docs/CALLERS.md §7.2, the helpers in
//! `arch/arm64/kvm/hyp/{nvhe,vhe}/tlb.c`):
//!
//! | event | modelled as |
//! |---|---|
//! | `Dsb(SY/ST/ISH/ISHST/OSH/OSHST)` | orders earlier descriptor stores before later TLBIs (the walkers of other PEs observe them) |
//! | `Dsb(SY/ISH/OSH)` | completes earlier TLBIs (the ST/LD-limited forms are not relied on for completion; the kernel always completes with `DSB ISH`) |
//! | `Dsb(NSH*)`, `Dsb(*LD)`, `Isb` | nothing a multi-PE TLB model uses |
//! | `TlbiHyp{VAE2IS}` | invalidates entries translating the VA, every level (walk caches included); a level hint limits it to leaves of that level |
//! | `TlbiHyp{VALE2IS}` | the same, last-level (leaf) entries only |
//! | `TlbiSyncS1IshHyp` | `DSB ISH` |
//! | `TlbFlushVmidIpa{nsh: false}` | `DSB ISH` (nVHE; `DSB ISHST` on VHE); `TLBI IPAS2E1IS` with the level hint; `DSB ISH`; `TLBI VMALLE1IS`; `DSB ISH`; `ISB` |
//! | `TlbFlushVmidIpa{nsh: true}` | `DSB NSH`; `TLBI IPAS2E1`; `DSB NSH`; ...: local to one PE, removes nothing from the other PEs' TLBs |
//! | `TlbFlushVmidRange` | `DSB ISH`; range (or per-page) `IPAS2E1IS` over `[start & ~(PAGE_SIZE-1), +pages*PAGE_SIZE)`, no hint; `DSB ISH`; ... |
//! | `TlbFlushVmid` | `DSB ISH`; `TLBI VMALLS12E1IS`; `DSB ISH`; `ISB` |
//! | CMO events | nothing: the mm_ops hooks may be no-ops (FWB, DIC), so their internal `DSB` is not a guarantee pgtable.c can rely on |
//!
//! A level hint (TTL, FEAT_TTL) is assumed honoured: a TLBI hinted with
//! level L may leave every entry that is not a leaf of level L in place
//! (Arm ARM, TLBI instructions, TTL field: "the level of the translation
//! table walk that holds the leaf entry"; kernel: a wrong level "may not
//! invalidate", tlbflush.h). A hint of -1 or `TLBI_TTL_UNKNOWN` is no hint.
//!
//! Cost: every event is one match arm; a store is a shadow write plus, for
//! a linked slot, a few compares. Subtrees are walked only when a table is
//! linked or cut off (work proportional to what the op itself did), and the
//! refcount rule looks only at pages the op touched.

use std::cell::RefCell;
use std::collections::HashMap;
use std::hash::BuildHasherDefault;

use crate::hash::FoldHasher;

use crate::arena::Arena;
use crate::events::{Barrier, Event, TlbiHypOp};
use crate::known::{self, Known};
use crate::opstream::{Config, Granule, Op, OpStream, Stage, walk_flags};
use crate::results::{Outcome, Value};
use crate::side::{Root, Side};
use crate::tree::Format;

mod owners;
use owners::{Ann, is_annotation};

/// One rule of the architecture oracle.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Rule {
    /// A valid descriptor became a different valid one (other output
    /// address, block/table size or memory attributes) without a break, or
    /// was made again before the TLBI of its break completed.
    BreakBeforeMake,
    /// When the op returned, a TLB could still hold a translation the op's
    /// contract says it removes.
    StaleTlb,
    /// A table page was freed while a hardware walk could still reach it:
    /// still linked in the live tree, or its table descriptor not yet
    /// invalidated from the walk caches.
    FreedTableReachable,
    /// A descriptor the architecture does not allow (or that pgtable.c must
    /// never leave behind).
    WellFormed,
    /// A table page's refcount is not 1 plus its counted entries.
    Refcount,
    /// An ownership annotation was stored as a valid descriptor.
    AnnotationValid,
}

impl Rule {
    pub const ALL: [Rule; 6] = [
        Rule::BreakBeforeMake,
        Rule::StaleTlb,
        Rule::FreedTableReachable,
        Rule::WellFormed,
        Rule::Refcount,
        Rule::AnnotationValid,
    ];

    /// Short id (used in mutants/README.md and tests).
    pub fn id(self) -> &'static str {
        match self {
            Rule::BreakBeforeMake => "bbm",
            Rule::StaleTlb => "tlb",
            Rule::FreedTableReachable => "freed-table",
            Rule::WellFormed => "well-formed",
            Rule::Refcount => "refcount",
            Rule::AnnotationValid => "annotation",
        }
    }

    /// What reports call it.
    pub fn name(self) -> &'static str {
        match self {
            Rule::BreakBeforeMake => "break-before-make",
            Rule::StaleTlb => "stale TLB entry after the op",
            Rule::FreedTableReachable => "freed table still reachable by a walk",
            Rule::WellFormed => "table well-formedness",
            Rule::Refcount => "table refcount",
            Rule::AnnotationValid => "annotation in a valid entry",
        }
    }

    /// Where the rule comes from.
    pub fn reference(self) -> &'static str {
        match self {
            Rule::BreakBeforeMake => {
                "Arm ARM (DDI 0487), VMSAv8-64, \"Using break-before-make when updating \
                 translation table entries\": a change of output address, block size or \
                 memory attributes of a valid entry needs: store an invalid entry; DSB; TLBI \
                 of every address the old entry translated; DSB; only then the new entry. \
                 Permissions, the access flag and software bits may change in place."
            }
            Rule::StaleTlb => {
                "Arm ARM, \"TLB maintenance requirements\" (any valid entry a walker can \
                 reach may be cached until a TLBI that covers it completes; the invalidating \
                 store must be observed by the walkers first). kvm_pgtable.h: map, \
                 set_owner/annotate and split replace entries with break-before-make, \
                 unmap and hyp_unmap \"TLB invalidation is performed for each page-table \
                 entry cleared\"; wrprotect and test_clear_young leave it to the caller \
                 (\"it is the caller's responsibility to invalidate the TLB\"); destroy, \
                 destroy_range and free_unlinked assume the table is \"unreachable by any \
                 hardware walkers\"; SKIP_BBM_TLBI updates \"without performing TLB \
                 invalidation\"."
            }
            Rule::FreedTableReachable => {
                "Arm ARM, \"Translation table walks\" and walk caches: a table descriptor \
                 may be cached until a TLBI of all levels (not last-level-only, not hinted \
                 with a leaf level) for an address it covers completes, and a walk through it \
                 reads the table page. kvm_pgtable_mm_ops::put_page: a page whose count \
                 reaches 0 is freed and may be reused at once."
            }
            Rule::WellFormed => {
                "Arm ARM, VMSAv8-64 translation table descriptor formats: block descriptors \
                 only at the levels the granule allows (4K: 1, 2, and 0 with LPA2; 16K: 2, \
                 and 1 with LPA2; 64K: 2, and 1 with 52-bit PAs), the 0b01 encoding is \
                 reserved at level 3, a block's output address is aligned to its size, \
                 bits [49:48] are RES0 without LPA2, bits [63:59] of a stage-2 table \
                 descriptor are RES0; a table descriptor points to an allocated table page \
                 linked once. pgtable.c: an entry LOCKED for break-before-make is always \
                 made again before the walk returns (stage2_try_break_pte / \
                 stage2_make_pte)."
            }
            Rule::Refcount => {
                "kvm_pgtable.h, struct kvm_pgtable_mm_ops: zalloc gives a page with \
                 refcount 1, get_page/put_page move it; pgtable.c counts every entry \
                 that holds something (stage-2: any non-zero descriptor, owner \
                 annotations included, stage2_pte_is_counted; hyp: valid descriptors), so \
                 a table page's count is 1 plus its counted entries whenever no op runs."
            }
            Rule::AnnotationValid => {
                "kvm_pgtable.h: kvm_pgtable_stage2_set_owner (6.12) and \
                 kvm_pgtable_stage2_annotate (7.x) \"unmap and annotate\": ownership lives \
                 in invalid descriptors (valid bit clear), which the hardware ignores; a \
                 valid bit makes the annotation a translation."
            }
        }
    }
}

/// A descriptor slot: its PA and where it sits in the tree.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Slot {
    pub pa: u64,
    pub level: i8,
    /// First input address the entry translates.
    pub ia: u64,
}

/// A broken rule: what, where, and the trace that shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Breach {
    pub rule: Rule,
    /// What happened, in words.
    pub detail: String,
    pub slot: Option<Slot>,
    /// The descriptor before and after the event (or the stale one).
    pub old: Option<u64>,
    pub new: Option<u64>,
    /// Index in `trace` of the event that breaks the rule (None when the
    /// op's end does).
    pub event: Option<usize>,
    /// Index in `trace` of the store that left the stale entry involved.
    pub cause: Option<usize>,
    /// The reference side's trace of the step.
    pub trace: Vec<Event>,
}

/// The step a trace belongs to.
#[derive(Clone, Copy, Debug)]
pub enum ArchStep<'a> {
    /// An op of the stream.
    Op(&'a Op),
    /// The teardown (unlinked tables, then destroy).
    Destroy,
}

#[derive(Clone, Copy, Debug)]
struct Pos {
    level: i8,
    /// Input address of entry 0.
    base: u64,
    /// Reachable from the root now.
    linked: bool,
}

#[derive(Clone, Copy, Default)]
struct Page {
    /// Allocated (its shadow in `Checker::mem` is meaningful).
    live: bool,
    pos: Option<Pos>,
    /// Entries counted by pgtable.c's definition (at most a page's 8192
    /// words; the counts are 32 bits so that a record stays 40 bytes, which
    /// x86 indexes in one instruction).
    counted: i32,
    /// LOCKED markers (stage-2): with `counted`, every non-zero word of a
    /// stage-2 page, so a page with neither is all zeros. Signed, as
    /// `counted` is: both follow each store's recorded old word, and a
    /// shadow out of step with memory (which `shadow_matches` reports) must
    /// not stop the run.
    locked: i32,
    /// References a known kernel divergence leaked on this page (its count
    /// is this much above 1 + counted).
    leaked: i32,
    touched: bool,
    stamp: u32,
    /// Stores into this page, which no tree reaches, have written its
    /// words but not yet updated `counted` and the LOCKED set
    /// ([`Checker::defer`], [`Checker::recount`]).
    lazy: bool,
}

// One instruction indexes the page records (see `Page::counted`).
const _: () = assert!(std::mem::size_of::<Page>() == 40);

/// Why a stale entry is stale.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Staleness {
    /// The translation was removed or replaced.
    Removed,
    /// Still mapped, with fewer permissions (a set of `PERM_*` bits).
    PermReduced(u8),
}

const PERM_R: u8 = 1;
const PERM_W: u8 = 2;
const PERM_X: u8 = 4;
const PERM_AF: u8 = 8;
const PERM_OTHER: u8 = 16;

#[derive(Clone, Copy, Debug)]
struct Stale {
    /// The slot that held it.
    pa: u64,
    level: i8,
    ia: u64,
    /// The descriptor the TLB may still hold.
    pte: u64,
    why: Staleness,
    /// Sequence number of the store that made it stale.
    created: u64,
    /// Sequence number of the first TLBI that covered it after the store
    /// was ordered.
    invalidated: Option<u64>,
    /// Trace index of that store.
    origin: usize,
    /// A covering TLBI came before any DSB ordered the store.
    early_tlbi: bool,
    /// A local (non-shareable) TLBI covered it.
    local_tlbi: bool,
}

impl Stale {
    fn slot(&self) -> Slot {
        Slot {
            pa: self.pa,
            level: self.level,
            ia: self.ia,
        }
    }
}

/// What can invalidate.
#[derive(Clone, Copy, Debug)]
enum Inval {
    /// By address, all levels (walk caches included) unless `last_level`;
    /// `hint`: the TTL level (leaves of that level only).
    Addr {
        addr: u64,
        hint: Option<i8>,
        last_level: bool,
    },
    /// Every entry overlapping `[start, end)`, all levels.
    Range { start: u64, end: u64 },
    /// Everything.
    All,
}

/// The newest stale entry of each (level, aligned input address); older entries of the same
/// key follow through `Checker::chain`. One hash entry per key and no vector per key: the
/// index is rebuilt after every compaction and per step, and a vector per key made those
/// rebuilds (allocation, rehashing) the costliest part of stage-2 runs.
type Index = HashMap<(i8, u64), u32, BuildHasherDefault<FoldHasher>>;

/// The end of an index chain.
const NO_ENTRY: u32 = u32::MAX;

/// The index, its chains, the TLBI hit list and the per-step lists, kept across runs (every
/// fuzz input makes a checker) so their capacity is allocated once per thread; they come back
/// empty. Under ASan a vector grown afresh in every run was fresh pages every time (freed
/// memory waits in the quarantine), and their page faults were a few percent of the stage2
/// and host_stage2 replays.
#[derive(Default)]
struct Scratch {
    index: Index,
    chain: Vec<u32>,
    hit: Vec<u32>,
    stale: Vec<Stale>,
    stale_tables: Vec<u32>,
    pending: Vec<u32>,
    touched: Vec<u32>,
    lazy: Vec<u32>,
    locked: Vec<u64>,
    to_position: Vec<(usize, i8, u64)>,
    to_detach: Vec<usize>,
    owner_gone: Vec<Ann>,
    owner_added: Vec<Ann>,
}

thread_local! {
    /// The shadow memory and the page records, reused across runs (every
    /// fuzz input makes a checker). Only the words of live pages are ever
    /// read, and a page is zeroed (or copied) when it becomes live, so a
    /// reused shadow needs no clearing; page records come back to their
    /// default when the checker is dropped.
    static POOL: RefCell<(Vec<u64>, Vec<Page>)> = const { RefCell::new((Vec::new(), Vec::new())) };
    static SCRATCH: RefCell<Option<Scratch>> = const { RefCell::new(None) };
}

/// A shadow of at least `words` words and `pages` default page records.
fn take_pooled(words: usize, pages: usize) -> (Vec<u64>, Vec<Page>) {
    let (mut mem, mut recs) = POOL.with(|b| std::mem::take(&mut *b.borrow_mut()));
    if mem.len() < words {
        mem.resize(words, 0);
    }
    if recs.len() < pages {
        recs.resize(pages, Page::default());
    }
    (mem, recs)
}

/// Per-step context.
struct Cx<'a> {
    op: Option<&'a Op>,
    /// The hardware walker can reach the live tree (false at destroy:
    /// "assumed unreachable").
    reachable: bool,
    /// The caller asked for no TLB maintenance (SKIP_BBM_TLBI).
    skip_tlbi: bool,
    /// set_owner / annotate: only invalid descriptors may be written.
    annotates: bool,
    /// Permission reductions the op's contract leaves to the caller.
    perm_exempt: u8,
    allow_known: bool,
}

/// The architecture oracle's state for one run of one side.
pub struct Checker {
    /// The stream's configuration (known divergences are recognised by it).
    cfg: Config,
    /// The hardware set an access flag during the step being checked.
    hardware_set_af: bool,
    fmt: Format,
    stage: Stage,
    granule: Granule,
    parange: u8,
    base: u64,
    shift: u32,
    /// Bytes per entry at levels -1..=3 (0 when it does not fit in 64 bits).
    sizes: [u64; 5],
    /// One record per arena page (a pooled vector: only the first
    /// `npages` belong to this run).
    pages: Vec<Page>,
    npages: usize,
    /// One past the highest page index used (records to reset).
    high_water: usize,
    /// The shadow: `npages` pages of `wpp` words.
    mem: Vec<u64>,
    /// Words per page.
    wpp: usize,
    stale: Vec<Stale>,
    /// Stale entries by (level, aligned input address), for the TLBIs by
    /// address; holds the first `indexed` entries (built on demand).
    index: Index,
    /// Per indexed stale entry, the next older entry of its key (or `NO_ENTRY`).
    chain: Vec<u32>,
    indexed: usize,
    /// The entries a TLBI may cover (scratch of `invalidate`).
    hit: Vec<u32>,
    /// Stale entries that are table descriptors.
    stale_tables: Vec<u32>,
    /// Stale entries covered by a TLBI that no DSB has completed yet.
    pending: Vec<u32>,
    gone: usize,
    seq: u64,
    /// Entries made stale before this sequence number are ordered.
    ordered: u64,
    /// TLBIs issued before this sequence number are complete.
    completed: u64,
    /// Slots holding a LOCKED descriptor now (a set: an op may lock many).
    locked: Locked,
    /// `pte & lock_mask == lock_bits` for exactly the LOCKED markers
    /// ([`Checker::is_locked`]).
    lock_mask: u64,
    lock_bits: u64,
    /// `pte & count_mask != 0` for the entries pgtable.c counts, LOCKED
    /// aside ([`Checker::counted`]).
    count_mask: u64,
    touched: Vec<u32>,
    stamp: u32,
    /// The known kernel divergences recognised in the current step.
    explained: Vec<&'static Known>,
    /// Report nothing, only recognise known divergences (`KPD_NO_ARCH`).
    silent: bool,
    /// Checks every indexed look-up against a scan of the whole list (tests).
    cross_check: bool,
    /// Bits every valid descriptor must leave clear: [49:48] without LPA2.
    res0_mask: u64,
    /// Pages made lazy in this step (some may have caught up already).
    lazy: Vec<u32>,
    /// The pages still to visit, with their level and base address
    /// (scratch of `position`).
    to_position: Vec<(usize, i8, u64)>,
    /// The pages still to visit (scratch of `detach`).
    to_detach: Vec<usize>,
    /// The table's root (the owner rule looks annotations up from it).
    root: Root,
    /// Follow pKVM's owner annotations ([`Checker::follow_owners`]).
    owners: bool,
    /// `owners`, in a step of an op (not the teardown).
    owner_step: bool,
    /// The range of the step's op, which the owner rule exempts.
    owner_range: Option<(u64, u64)>,
    /// That range as [start, end) (end saturated; both 0 without a range),
    /// for the test each of the op's own stores makes.
    owner_lo: u64,
    owner_hi: u64,
    /// Annotations that left the live tree since the last owner check
    /// (from the op's own stores, only those outside its range).
    owner_gone: Vec<Ann>,
    /// Annotations that joined the live tree since then, likewise.
    owner_added: Vec<Ann>,
}

impl Drop for Checker {
    fn drop(&mut self) {
        // A run cut short leaves pages touched, and a touched page need not
        // be below the high-water mark (a reference counts on any arena
        // page): their flags go back with the records.
        for &p in &self.touched {
            self.pages[p as usize].touched = false;
        }
        let mut scratch = Scratch {
            index: std::mem::take(&mut self.index),
            chain: std::mem::take(&mut self.chain),
            hit: std::mem::take(&mut self.hit),
            stale: std::mem::take(&mut self.stale),
            stale_tables: std::mem::take(&mut self.stale_tables),
            pending: std::mem::take(&mut self.pending),
            touched: std::mem::take(&mut self.touched),
            lazy: std::mem::take(&mut self.lazy),
            locked: std::mem::take(&mut self.locked.0),
            to_position: std::mem::take(&mut self.to_position),
            to_detach: std::mem::take(&mut self.to_detach),
            owner_gone: std::mem::take(&mut self.owner_gone),
            owner_added: std::mem::take(&mut self.owner_added),
        };
        scratch.index.clear();
        for v in [
            &mut scratch.chain,
            &mut scratch.hit,
            &mut scratch.stale_tables,
            &mut scratch.pending,
            &mut scratch.touched,
            &mut scratch.lazy,
        ] {
            v.clear();
        }
        scratch.stale.clear();
        scratch.locked.clear();
        scratch.to_position.clear();
        scratch.to_detach.clear();
        scratch.owner_gone.clear();
        scratch.owner_added.clear();
        SCRATCH.with(|s| *s.borrow_mut() = Some(scratch));
        let mem = std::mem::take(&mut self.mem);
        let mut recs = std::mem::take(&mut self.pages);
        recs[..self.high_water].fill(Page::default());
        POOL.with(|b| {
            let mut b = b.borrow_mut();
            if b.0.len() <= mem.len() {
                *b = (mem, recs);
            }
        });
    }
}

/// Whether `e` is the hardware setting an access flag during the op (a
/// scheduled [`Interference::Af`](crate::opstream::Interference::Af) race).
fn hardware_sets_af(e: &Event) -> bool {
    matches!(*e, Event::Interference { old, new, .. }
        if old ^ new == rust_pgtable::pte_bits::S2_AF)
}

fn valid(pte: u64) -> bool {
    pte & 1 != 0
}

impl Checker {
    /// Starts following `side`, whose table `stream` created: None when
    /// there is no table (init failed).
    pub fn new(stream: &OpStream, side: &dyn Side) -> Option<Checker> {
        Checker::with_root(stream, side.arena(), side.root()?)
    }

    /// Starts following the table at `root` in `arena`.
    pub fn with_root(stream: &OpStream, arena: &Arena, root: Root) -> Option<Checker> {
        let cfg = &stream.config;
        let fmt = crate::executor::format_of(stream);
        let geo = arena.geometry();
        let mut sizes = [0u64; 5];
        for (i, s) in sizes.iter_mut().enumerate() {
            *s = cfg.granule.level_size(i as i8 - 1).unwrap_or(0);
        }
        let (mem, pages) = take_pooled(
            geo.pages as usize * (geo.page_size / 8) as usize,
            geo.pages as usize,
        );
        let Scratch {
            index,
            chain,
            hit,
            stale,
            stale_tables,
            pending,
            touched,
            lazy,
            locked,
            to_position,
            to_detach,
            owner_gone,
            owner_added,
        } = SCRATCH.with(|s| s.borrow_mut().take()).unwrap_or_default();
        // pgtable.c's LOCKED marker is an invalid entry (bit 0 clear) with,
        // in 6.12, bit 10 set, in 7.x invalid type 1 in bits [63:60]. Hyp
        // tables have none: `pte & 1 == 2` is never true.
        let (lock_mask, lock_bits) = match (cfg.stage, fmt.v7) {
            (Stage::Hyp, _) => (1, 2),
            (Stage::Stage2, true) => ((0xf << 60) | 1, 1 << 60),
            (Stage::Stage2, false) => ((1 << 10) | 1, 1 << 10),
        };
        let mut c = Checker {
            cfg: cfg.clone(),
            fmt,
            stage: cfg.stage,
            granule: cfg.granule,
            parange: cfg.mmfr0_parange,
            base: geo.base_pa,
            shift: geo.page_size.trailing_zeros(),
            sizes,
            pages,
            npages: geo.pages as usize,
            high_water: 0,
            mem,
            wpp: (geo.page_size / 8) as usize,
            stale,
            index,
            chain,
            indexed: 0,
            hit,
            stale_tables,
            pending,
            gone: 0,
            seq: 1,
            ordered: 0,
            completed: 0,
            locked: Locked(locked),
            lock_mask,
            lock_bits,
            count_mask: match cfg.stage {
                Stage::Hyp => 1,
                Stage::Stage2 => !0,
            },
            touched,
            stamp: 0,
            explained: Vec::new(),
            silent: false,
            hardware_set_af: false,
            cross_check: false,
            res0_mask: if fmt.lpa2 { 0 } else { 3 << 48 },
            lazy,
            to_position,
            to_detach,
            root,
            owners: false,
            owner_step: false,
            owner_range: None,
            owner_lo: 0,
            owner_hi: 0,
            owner_gone,
            owner_added,
        };
        for (pa, _) in arena.live() {
            let p = c.page(pa)?;
            c.high_water = c.high_water.max(p + 1);
            let words = arena.page_words(pa);
            c.pages[p].live = true;
            // A fresh table is all zeros (a quick test: roots can be many pages).
            if words.iter().all(|&d| d == 0) {
                c.mem[p * c.wpp..(p + 1) * c.wpp].fill(0);
                continue;
            }
            c.mem[p * c.wpp..(p + 1) * c.wpp].copy_from_slice(words);
            for (w, &d) in words.iter().enumerate() {
                c.pages[p].counted += i32::from(c.counted(d));
                if c.is_locked(d) {
                    c.pages[p].locked += 1;
                    // Not expected after init; the op-end rule reports it.
                    c.locked.insert(pa + 8 * w as u64);
                }
            }
        }
        let span = c.size(root.start_level).wrapping_mul(geo.page_size / 8);
        for i in 0..u64::from(root.pages) {
            let pa = root.pgd + i * geo.page_size;
            let cx = Cx {
                op: None,
                reachable: true,
                skip_tlbi: false,
                annotates: false,
                perm_exempt: 0,
                allow_known: true,
            };
            // A fresh root holds nothing to check; a breach here would be a
            // harness problem, reported on the first op instead.
            let _ = c.position(
                &cx,
                None,
                None,
                pa,
                root.start_level,
                span.wrapping_mul(i),
                true,
            );
        }
        Some(c)
    }

    fn size(&self, level: i8) -> u64 {
        self.sizes
            .get((level + 1) as usize)
            .copied()
            .unwrap_or_default()
    }

    /// Arena page index of `pa`.
    fn page(&self, pa: u64) -> Option<usize> {
        let i = pa.wrapping_sub(self.base) >> self.shift;
        (i < self.npages as u64).then_some(i as usize)
    }

    /// Index of the live (shadowed) page holding `pa`.
    fn live_page(&self, pa: u64) -> Option<usize> {
        self.page(pa).filter(|&p| self.pages[p].live)
    }

    fn page_pa(&self, p: usize) -> u64 {
        self.base + ((p as u64) << self.shift)
    }

    fn is_table(&self, pte: u64, level: i8) -> bool {
        level < 3 && pte & 3 == 3
    }

    fn oa(&self, pte: u64) -> u64 {
        self.fmt.output_address(pte)
    }

    /// pgtable.c's LOCKED marker of an entry in break-before-make: 6.12
    /// bit 10 of an invalid entry, 7.x invalid type 1 in bits [63:60].
    #[inline]
    fn is_locked(&self, pte: u64) -> bool {
        pte & self.lock_mask == self.lock_bits
    }

    /// Whether pgtable.c counts `pte` in its table page's refcount: hyp
    /// counts valid entries; stage-2 every non-zero one
    /// (`stage2_pte_is_counted`) except LOCKED, whose reference the break
    /// has already dropped.
    #[inline]
    fn counted(&self, pte: u64) -> bool {
        // `count_mask` is bit 0 for hyp (valid) and every bit for stage-2
        // (non-zero); hyp has no LOCKED marker.
        pte & self.count_mask != 0 && !self.is_locked(pte)
    }

    /// Bits of a valid leaf that may change without break-before-make:
    /// permissions, the access flag, DBM and the software bits (Arm ARM,
    /// "Using break-before-make": changes to permission and access-flag
    /// attributes are the ones that do not need it).
    fn in_place_bits(&self) -> u64 {
        let sw = 0xf << 55;
        let dbm = 1 << 51;
        let af = 1 << 10;
        let ap = 3 << 6;
        match self.stage {
            // S2AP, XN (7.x: XN[54:53] with FEAT_XNX).
            Stage::Stage2 if self.fmt.v7 => sw | dbm | af | ap | (3 << 53),
            Stage::Stage2 => sw | dbm | af | ap | (1 << 54),
            // AP, PXN (53), UXN/XN (54), GP (50, BTI guarded page).
            Stage::Hyp => sw | dbm | af | ap | (3 << 53) | (1 << 50),
        }
    }

    /// Whether replacing valid `old` by valid `new` at `level` needs
    /// break-before-make: a table for a block or the other way round (size),
    /// another next-level table, or a leaf change outside the in-place bits
    /// (output address, memory type, shareability, ...).
    fn needs_bbm(&self, old: u64, new: u64, level: i8) -> bool {
        let (ot, nt) = (self.is_table(old, level), self.is_table(new, level));
        if ot != nt {
            return true;
        }
        if ot {
            return self.oa(old) != self.oa(new);
        }
        (old ^ new) & !self.in_place_bits() != 0
    }

    /// The permissions `new` takes away from `old` (both valid leaves).
    fn perm_reduced(&self, old: u64, new: u64) -> u8 {
        let lost = |bit: u32| old >> bit & 1 == 1 && new >> bit & 1 == 0;
        let gained = |bit: u32| old >> bit & 1 == 0 && new >> bit & 1 == 1;
        let mut r = 0;
        if lost(10) {
            r |= PERM_AF;
        }
        match self.stage {
            Stage::Stage2 => {
                if lost(6) {
                    r |= PERM_R;
                }
                if lost(7) {
                    r |= PERM_W;
                }
                if self.fmt.v7 {
                    // XN[54:53]: 00 EL1+EL0, 01 EL0 only, 10 none, 11 EL1 only.
                    let exec = |pte: u64| [3u8, 2, 0, 1][(pte >> 53 & 3) as usize];
                    if exec(old) & !exec(new) != 0 {
                        r |= PERM_X;
                    }
                } else if gained(54) {
                    r |= PERM_X;
                }
            }
            Stage::Hyp => {
                // AP[2] set: read-only; AP[1] cleared: EL0 access lost.
                if gained(7) || lost(6) {
                    r |= PERM_W;
                }
                if gained(53) || gained(54) {
                    r |= PERM_X;
                }
                if gained(50) {
                    r |= PERM_OTHER;
                }
            }
        }
        r
    }

    /// Block levels the architecture allows for this granule.
    fn block_allowed(&self, level: i8) -> bool {
        match self.granule {
            Granule::K4 => level == 1 || level == 2 || (level == 0 && self.fmt.lpa2),
            Granule::K16 => level == 2 || (level == 1 && self.fmt.lpa2),
            // 4 TiB blocks need 52-bit output addresses (FEAT_LPA).
            Granule::K64 => level == 2 || (level == 1 && self.parange >= 6),
        }
    }

    fn touch(&mut self, p: usize) {
        if !self.pages[p].touched {
            self.pages[p].touched = true;
            self.touched.push(p as u32);
        }
    }

    /// Checks one step of the side this checker follows. `outcome` is its
    /// outcome of `step`; known kernel divergences recognised are added to
    /// `known` (with `allow_known`; otherwise they are breaches like any
    /// other).
    ///
    /// `ended`: the machine stopped inside the op (an EL2 WARN, a BUG; the
    /// trace ends at that event). Every event up to it is judged, since the
    /// hardware saw those stores; the end-of-op rules (TLB, refcounts,
    /// formats) are not, since they would judge a state nothing ever sees.
    pub fn check(
        &mut self,
        side: &dyn Side,
        step: ArchStep<'_>,
        outcome: &Outcome,
        ended: bool,
        allow_known: bool,
        known: &mut Vec<&'static str>,
    ) -> Option<Breach> {
        self.check_in(side.arena(), step, outcome, ended, allow_known, known)
    }

    /// [`Checker::check`] with the side's memory given directly.
    pub fn check_in(
        &mut self,
        arena: &Arena,
        step: ArchStep<'_>,
        outcome: &Outcome,
        ended: bool,
        allow_known: bool,
        known: &mut Vec<&'static str>,
    ) -> Option<Breach> {
        let op = match step {
            ArchStep::Op(op) => Some(op),
            ArchStep::Destroy => None,
        };
        let flags = match op {
            Some(
                Op::S2Map { flags, .. }
                | Op::S2MkyoungFlags { flags, .. }
                | Op::S2RelaxPermsFlags { flags, .. },
            ) => *flags,
            _ => 0,
        };
        let cx = Cx {
            op,
            reachable: op.is_some(),
            skip_tlbi: flags & walk_flags::SKIP_BBM_TLBI != 0,
            annotates: matches!(op, Some(Op::S2SetOwner { .. } | Op::S2Annotate { .. })),
            perm_exempt: match op {
                Some(Op::S2Wrprotect { .. }) => PERM_W,
                Some(Op::S2TestClearYoung { .. }) => PERM_AF,
                _ => 0,
            },
            allow_known,
        };
        self.explained.clear();
        self.hardware_set_af = false;
        self.owner_step = self.owners && op.is_some();
        self.owner_range = op.and_then(Op::range);
        (self.owner_lo, self.owner_hi) = match self.owner_range {
            Some((start, size)) => (start, start.saturating_add(size)),
            None => (0, 0),
        };
        let observed = self.observe(&cx, &outcome.trace);
        self.recount_lazy();
        // Only the end-of-op rules use the exemption, so the pass over the
        // trace finds it (a trace can be far larger than the caches).
        let cx = Cx {
            perm_exempt: if self.hardware_set_af {
                // The walker overwrote an access flag the hardware set in
                // between (docs/CALLERS.md §8 R1, R5e): the kernel accepts the
                // lost update, which only makes the page look old (no
                // translation goes wrong), and never invalidates for it.
                cx.perm_exempt | PERM_AF
            } else {
                cx.perm_exempt
            },
            ..cx
        };
        let r = observed.and_then(|()| match ended {
            true => Ok(()),
            false => self.finish(&cx, arena, &outcome.value),
        });
        for k in self.explained.drain(..) {
            if !known.contains(&k.id) {
                known.push(k.id);
            }
        }
        self.reset_step();
        r.err().map(|mut b| {
            b.trace = outcome.trace.clone();
            *b
        })
    }

    fn reset_step(&mut self) {
        self.stale.clear();
        if self.indexed > 0 {
            self.index.clear();
            self.chain.clear();
            self.indexed = 0;
        }
        self.stale_tables.clear();
        self.pending.clear();
        self.gone = 0;
        for &p in &self.touched {
            self.pages[p as usize].touched = false;
        }
        self.touched.clear();
    }

    /// Reports `b` unless a known kernel divergence explains it: one
    /// recognised in `b` itself, or earlier in this step whose consequences
    /// include `b`'s rule.
    fn emit(&mut self, cx: &Cx<'_>, b: Breach) -> Result<(), Box<Breach>> {
        if cx.allow_known {
            if let Some(k) = known::recognise(&b, cx.op, &self.cfg) {
                if !self.explained.iter().any(|e| e.id == k.id) {
                    self.explained.push(k);
                }
                return Ok(());
            }
        }
        if self.silent || self.explained.iter().any(|k| k.explains.contains(&b.rule)) {
            return Ok(());
        }
        Err(Box::new(b))
    }

    /// Keeps following the side and recognising known divergences, but
    /// reports no finding: what the other oracles find alone, with the
    /// consequences of known divergences still explained.
    pub fn silence(&mut self) {
        self.silent = true;
    }

    /// Checks every break-before-make look-up through the stale-entry
    /// index against a scan of every entry, and panics if the two differ
    /// (for tests: the index must find exactly what the scan finds).
    pub fn cross_check(&mut self) {
        self.cross_check = true;
    }

    fn breach(rule: Rule, detail: String, slot: Option<Slot>) -> Breach {
        Breach {
            rule,
            detail,
            slot,
            old: None,
            new: None,
            event: None,
            cause: None,
            trace: Vec::new(),
        }
    }

    fn observe(&mut self, cx: &Cx<'_>, trace: &[Event]) -> Result<(), Box<Breach>> {
        for (i, e) in trace.iter().enumerate() {
            self.seq += 1;
            match *e {
                // A store outside live table memory is an mm_ops contract
                // breach (`Misuse::StoreOutsideTables`), reported by the
                // contract oracle.
                Event::Store { pa, old, val, .. } => {
                    if let Some(p) = self.live_page(pa) {
                        match self.pages[p].pos {
                            None => self.defer(p, pa, val),
                            Some(pos) => self.on_store(cx, i, p, pos, pa, old, val)?,
                        }
                    }
                }
                Event::ZallocPage { pa: Some(pa), .. } => self.on_alloc(pa, 1),
                Event::ZallocPagesExact { pa: Some(pa), size } => {
                    let n = size.div_ceil(1 << self.shift);
                    self.on_alloc(pa, n);
                }
                // A reference taken or dropped: the page's count is checked
                // at the op's end. The arena records these only for its live
                // pages, and the end-of-op rule skips pages that are not live
                // then, so no look-up of liveness is needed here.
                Event::GetPage { page, .. } | Event::PutPage { page, count: 1.. } => {
                    if let Some(p) = self.page(page) {
                        self.touch(p);
                    }
                }
                Event::PutPage { page, count: 0 } => {
                    if let Some(p) = self.live_page(page) {
                        self.touch(p);
                        self.on_free(cx, i, p)?;
                    }
                }
                Event::FreePagesExact { pa, size } => {
                    let n = size.div_ceil(1 << self.shift);
                    for k in 0..n {
                        if let Some(p) = self.live_page(pa.wrapping_add(k << self.shift)) {
                            self.on_free(cx, i, p)?;
                        }
                    }
                }
                Event::Interference { pa, old, new, .. } | Event::Published { pa, old, new } => {
                    self.hardware_set_af |= hardware_sets_af(e);
                    match self.live_page(pa) {
                        Some(p) if self.pages[p].pos.is_none() => self.defer(p, pa, new),
                        _ => self.on_foreign_store(pa, old, new),
                    }
                }
                Event::Dsb(b) => self.dsb(b),
                Event::TlbiSyncS1IshHyp => self.dsb(Barrier::Ish),
                Event::TlbiHyp { op, operand, level } => {
                    // Xt of TLBI VA(L)E2IS: VA[55:12] in bits [43:0].
                    let va = (operand & ((1 << 44) - 1)) << 12;
                    self.invalidate(Inval::Addr {
                        addr: va,
                        hint: hint(level),
                        last_level: op == TlbiHypOp::Vale2is,
                    });
                }
                Event::TlbFlushVmidIpa { ipa, level, nsh } => {
                    let inv = Inval::Addr {
                        addr: ipa & !0xfff,
                        hint: hint(level),
                        last_level: false,
                    };
                    if nsh {
                        // DSB NSH; TLBI IPAS2E1; DSB NSH: this PE only
                        // (docs/CALLERS.md §7.2), the other PEs keep their entries.
                        self.mark_local(inv);
                    } else {
                        self.helper(inv);
                    }
                }
                Event::TlbFlushVmidRange { start, pages } => {
                    let start = start & !((1u64 << self.shift) - 1);
                    let end = start.saturating_add(pages.saturating_mul(1 << self.shift));
                    self.helper(Inval::Range { start, end });
                }
                Event::TlbFlushVmid => self.helper(Inval::All),
                _ => {}
            }
        }
        Ok(())
    }

    fn on_alloc(&mut self, pa: u64, n: u64) {
        for k in 0..n {
            if let Some(p) = self.page(pa.wrapping_add(k << self.shift)) {
                self.high_water = self.high_water.max(p + 1);
                self.mem[p * self.wpp..(p + 1) * self.wpp].fill(0);
                let page = &mut self.pages[p];
                page.live = true;
                page.pos = None;
                page.counted = 0;
                page.locked = 0;
                page.leaked = 0;
                // Whatever was stored before is gone.
                page.lazy = false;
                self.touch(p);
            }
        }
    }

    fn on_free(&mut self, cx: &Cx<'_>, i: usize, p: usize) -> Result<(), Box<Breach>> {
        let pa = self.page_pa(p);
        if cx.reachable {
            if let Some(pos) = self.pages[p].pos.filter(|q| q.linked) {
                let mut b = Self::breach(
                    Rule::FreedTableReachable,
                    format!(
                        "table page {pa:#x} (level {}, IA {:#x}) was freed while a table \
                         descriptor of the live tree still points to it",
                        pos.level, pos.base
                    ),
                    None,
                );
                b.event = Some(i);
                self.emit(cx, b)?;
            }
            // With SKIP_BBM_TLBI the caller vouches that no walker sees what
            // the op changes, walk caches included.
            let cached = self
                .stale_tables
                .iter()
                .copied()
                .filter(|_| !cx.skip_tlbi)
                .find(|&k| {
                    let e = &self.stale[k as usize];
                    !self.is_gone(e) && self.oa(e.pte) == pa
                });
            if let Some(k) = cached {
                let e = self.stale[k as usize];
                let mut b = Self::breach(
                    Rule::FreedTableReachable,
                    format!(
                        "table page {pa:#x} was freed while a walk cache may still hold the \
                         table descriptor that pointed to it ({}): it was removed by event \
                         #{} and {}",
                        self.describe(e.pte, Some(e.level)),
                        e.origin,
                        self.why_not_gone(&e)
                    ),
                    Some(e.slot()),
                );
                b.old = Some(e.pte);
                b.event = Some(i);
                b.cause = Some(e.origin);
                self.emit(cx, b)?;
            }
        }
        // After the rules above, which read the page's position: the owner
        // rule unlinks the subtree it roots.
        if self.owner_step && self.pages[p].pos.is_some_and(|q| q.linked) {
            self.owner_freed(p);
        }
        let page = &mut self.pages[p];
        page.live = false;
        page.pos = None;
        page.counted = 0;
        page.locked = 0;
        page.leaked = 0;
        page.lazy = false;
        let base = pa;
        let end = pa + (1 << self.shift);
        self.locked.remove_range(base, end);
        Ok(())
    }

    /// A store of `new` at `pa` into live page `p`, which no tree reaches
    /// (an unlinked table being built, a page not linked yet): no rule
    /// applies until the page gets a position, so only the word is written.
    /// Its counted entries and LOCKED slots are found again in one pass over
    /// the page when it gets a position or the step ends
    /// ([`Checker::recount`]). Splits and unlinked tables fill whole pages
    /// this way, and keeping those up to date store by store cost as much
    /// as the rest of the oracle.
    #[inline(always)]
    fn defer(&mut self, p: usize, pa: u64, new: u64) {
        let w = ((pa >> 3) as usize) & (self.wpp - 1);
        self.mem[p * self.wpp + w] = new;
        let page = &mut self.pages[p];
        if !page.lazy {
            page.lazy = true;
            self.lazy.push(p as u32);
            if !page.touched {
                page.touched = true;
                self.touched.push(p as u32);
            }
        }
    }

    /// Recounts every page still lazy (at the end of a step).
    fn recount_lazy(&mut self) {
        let mut lazy = std::mem::take(&mut self.lazy);
        for &p in &lazy {
            if self.pages[p as usize].lazy {
                self.recount(p as usize);
            }
        }
        lazy.clear();
        self.lazy = lazy;
    }

    /// Lazy page `p`: counts its entries and finds its LOCKED slots again
    /// from its words, and ends its laziness.
    fn recount(&mut self, p: usize) {
        let pa = self.page_pa(p);
        let (mask, lock_mask, lock_bits) = (self.count_mask, self.lock_mask, self.lock_bits);
        let shadow = &self.mem[p * self.wpp..(p + 1) * self.wpp];
        // Two sums of one type, which the compiler vectorises: every LOCKED
        // marker is non-zero under `mask` (hyp has none), and counted
        // entries are the non-zero ones that are not LOCKED.
        let (mut nonzero, mut locked) = (0u64, 0u64);
        for &d in shadow.iter() {
            nonzero += u64::from(d & mask != 0);
            locked += u64::from(d & lock_mask == lock_bits);
        }
        self.pages[p].counted = (nonzero - locked) as i32;
        self.pages[p].locked = locked as i32;
        self.pages[p].lazy = false;
        self.locked.remove_range(pa, pa + (1 << self.shift));
        if locked != 0 {
            for w in 0..self.wpp {
                if self.mem[p * self.wpp + w] & lock_mask == lock_bits {
                    self.locked.insert(pa + 8 * w as u64);
                }
            }
        }
    }

    /// Follows a store of `new` over `old` at `pa` in the shadow: the word,
    /// the page's counted entries and the LOCKED set, whoever stored it.
    /// Returns the page index and word, or None outside live table memory.
    #[inline(always)]
    fn shadow_store(&mut self, pa: u64, old: u64, new: u64) -> Option<(usize, usize)> {
        let p = self.live_page(pa)?;
        Some((p, self.shadow_store_in(p, pa, old, new)))
    }

    /// [`Checker::shadow_store`] into live page `p`; returns the word.
    #[inline(always)]
    fn shadow_store_in(&mut self, p: usize, pa: u64, old: u64, new: u64) -> usize {
        let w = ((pa >> 3) as usize) & (self.wpp - 1);
        self.mem[p * self.wpp + w] = new;
        let delta = i32::from(self.counted(new)) - i32::from(self.counted(old));
        let (was_locked, is_locked) = (self.is_locked(old), self.is_locked(new));
        let page = &mut self.pages[p];
        page.counted += delta;
        page.locked += i32::from(is_locked) - i32::from(was_locked);
        if !page.touched {
            page.touched = true;
            self.touched.push(p as u32);
        }
        if was_locked {
            self.locked.remove(pa);
        }
        if is_locked {
            self.locked.insert(pa);
        }
        w
    }

    /// Another agent's write (a scheduled race, `crate::race`): the
    /// hardware's access flag, or another CPU's walker, which does its own
    /// break-before-make and TLB maintenance and takes and drops its own
    /// references. The shadow follows it; none of this op's rules apply to
    /// it. A table it replaces leaves the live tree (its free comes after
    /// an RCU grace period); a table it installs is a page it allocated.
    fn on_foreign_store(&mut self, pa: u64, old: u64, new: u64) {
        let Some((p, w)) = self.shadow_store(pa, old, new) else {
            return;
        };
        let Some(pos) = self.pages[p].pos else {
            return;
        };
        let level = pos.level;
        if self.owner_step && pos.linked && old != new {
            let ia = pos
                .base
                .wrapping_add((w as u64).wrapping_mul(self.size(level)));
            self.owner_store(Slot { pa, level, ia }, old, new, false);
        }
        let old_table = valid(old) && self.is_table(old, level);
        let new_table = valid(new) && self.is_table(new, level);
        if old_table && !(new_table && self.oa(old) == self.oa(new)) {
            self.detach(self.oa(old), false, 0, false);
        }
        if new_table && self.live_page(self.oa(new)).is_none() {
            self.on_alloc(self.oa(new), 1);
            if let Some(c) = self.live_page(self.oa(new)) {
                let size = self.size(level);
                self.pages[c].pos = Some(Pos {
                    level: level + 1,
                    base: pos.base.wrapping_add((w as u64).wrapping_mul(size)),
                    linked: pos.linked,
                });
            }
        }
    }

    /// The rules of a store into live page `p` at `pos` in a tree (live or
    /// unlinked); stores into a page no tree reaches are deferred.
    #[allow(clippy::too_many_arguments)]
    fn on_store(
        &mut self,
        cx: &Cx<'_>,
        i: usize,
        p: usize,
        pos: Pos,
        pa: u64,
        old: u64,
        val: u64,
    ) -> Result<(), Box<Breach>> {
        let w = self.shadow_store_in(p, pa, old, val);
        let level = pos.level;
        let size = self.size(level);
        let slot = Slot {
            pa,
            level,
            ia: pos.base.wrapping_add((w as u64).wrapping_mul(size)),
        };
        // The owner rule notes the op's own stores only outside its range,
        // which a walk of that range does not leave: one test here instead
        // of one per annotation in `owner_note` (most stores of a donation
        // break or make through a LOCKED marker, an annotation to the rule).
        if self.owner_step
            && pos.linked
            && old != val
            && (is_annotation(old) || is_annotation(val))
            && !(slot.ia < self.owner_hi && slot.ia.saturating_add(size) > self.owner_lo)
        {
            self.owner_store(slot, old, val, true);
        }
        // Every rule below is about a valid descriptor, stored or replaced:
        // a break of an invalid entry, a make of an annotation, and the
        // LOCKED marker's own stores (half of a donation's) have none.
        let (old_valid, new_valid) = (valid(old), valid(val));
        if !old_valid && !new_valid {
            return Ok(());
        }
        let old_table = old_valid && self.is_table(old, level);
        let new_table = new_valid && self.is_table(val, level);
        if new_valid {
            if cx.annotates && !new_table {
                self.report_valid_annotation(cx, i, slot, old, val)?;
            }
            self.check_form(cx, Some(i), slot, val)?;
        }
        let live = pos.linked && cx.reachable;
        let same_table = old_table && new_table && self.oa(old) == self.oa(val);
        if old_table && !same_table {
            self.detach(self.oa(old), live, i, true);
        }
        let replaced = live && old_valid && new_valid && self.needs_bbm(old, val, level);
        if replaced {
            self.report_replaced(cx, i, slot, old, val)?;
        }
        if live && new_valid && !cx.skip_tlbi {
            self.check_make(cx, i, slot, val)?;
        }
        if new_table && !same_table {
            self.position(
                cx,
                Some(i),
                Some(slot),
                self.oa(val),
                level + 1,
                slot.ia,
                pos.linked,
            )?;
        }
        if live && old_valid {
            if !new_valid || replaced {
                self.add_stale(slot, old, Staleness::Removed, i);
            } else if !old_table {
                let r = self.perm_reduced(old, val);
                if r != 0 {
                    self.add_stale(slot, old, Staleness::PermReduced(r), i);
                }
            }
        }
        Ok(())
    }

    /// set_owner or annotate wrote a valid descriptor (out of line: the
    /// store path keeps only its test).
    #[cold]
    #[inline(never)]
    fn report_valid_annotation(
        &mut self,
        cx: &Cx<'_>,
        i: usize,
        slot: Slot,
        old: u64,
        val: u64,
    ) -> Result<(), Box<Breach>> {
        let mut b = Self::breach(
            Rule::AnnotationValid,
            "an ownership annotation was written with the valid bit set: the hardware \
             now translates the annotated range through it"
                .into(),
            Some(slot),
        );
        (b.old, b.new, b.event) = (Some(old), Some(val), Some(i));
        self.emit(cx, b)
    }

    /// A valid descriptor replaced by one that needs break-before-make, in
    /// one store.
    #[cold]
    #[inline(never)]
    fn report_replaced(
        &mut self,
        cx: &Cx<'_>,
        i: usize,
        slot: Slot,
        old: u64,
        val: u64,
    ) -> Result<(), Box<Breach>> {
        let level = slot.level;
        let mut b = Self::breach(
            Rule::BreakBeforeMake,
            format!(
                "a valid {} was replaced by a {} in one store, without first being made \
                 invalid and its TLB entries invalidated",
                self.kind(old, level),
                self.kind(val, level)
            ),
            Some(slot),
        );
        (b.old, b.new, b.event) = (Some(old), Some(val), Some(i));
        self.emit(cx, b)
    }

    fn kind(&self, pte: u64, level: i8) -> &'static str {
        if !valid(pte) {
            "invalid descriptor"
        } else if self.is_table(pte, level) {
            "table descriptor"
        } else if level == 3 {
            "page descriptor"
        } else {
            "block descriptor"
        }
    }

    fn describe(&self, pte: u64, level: Option<i8>) -> String {
        crate::tree::describe(self.fmt, pte, level)
    }

    /// The descriptor formats of the architecture.
    #[inline(always)]
    fn check_form(
        &mut self,
        cx: &Cx<'_>,
        i: Option<usize>,
        slot: Slot,
        val: u64,
    ) -> Result<(), Box<Breach>> {
        if !valid(val) || self.well_formed(slot.level, val) {
            return Ok(());
        }
        self.report_form(cx, i, slot, val)
    }

    /// Whether valid `val` is well formed at `level`: a quick test of
    /// exactly the conditions [`Checker::report_form`] explains.
    #[inline(always)]
    fn well_formed(&self, level: i8, val: u64) -> bool {
        if val & self.res0_mask != 0 {
            return false;
        }
        if level == 3 {
            return val & 3 == 3;
        }
        if val & 2 == 0 {
            let size = self.size(level);
            return self.block_allowed(level) && (size == 0 || self.oa(val) & (size - 1) == 0);
        }
        !(self.stage == Stage::Stage2 && val >> 59 != 0)
    }

    /// Reports what makes valid `val` ill formed at `slot`.
    #[inline(never)]
    fn report_form(
        &mut self,
        cx: &Cx<'_>,
        i: Option<usize>,
        slot: Slot,
        val: u64,
    ) -> Result<(), Box<Breach>> {
        match self.form_problem(slot.level, val) {
            None => Ok(()),
            Some(p) => {
                let mut b = Self::breach(Rule::WellFormed, p, Some(slot));
                (b.new, b.event) = (Some(val), i);
                self.emit(cx, b)
            }
        }
    }

    /// What makes valid `val` ill formed at `level`, if anything.
    fn form_problem(&self, level: i8, val: u64) -> Option<String> {
        if level == 3 && val & 3 == 1 {
            Some("the 0b01 (block) encoding is reserved at level 3".to_string())
        } else if level < 3 && val & 2 == 0 && !self.block_allowed(level) {
            Some(format!(
                "a block descriptor at level {level}, where the {} granule{} has no blocks",
                self.granule.name(),
                if self.fmt.lpa2 { " with LPA2" } else { "" }
            ))
        } else if level < 3
            && val & 2 == 0
            && self.size(level) != 0
            && self.oa(val) % self.size(level) != 0
        {
            Some(format!(
                "block output address {:#x} is not aligned to the block size {:#x}",
                self.oa(val),
                self.size(level)
            ))
        } else if !self.fmt.lpa2 && val & (3 << 48) != 0 {
            Some("RES0 bits [49:48] are set (no LPA2)".to_string())
        } else if self.stage == Stage::Stage2 && self.is_table(val, level) && val >> 59 != 0 {
            Some("RES0 bits [63:59] of a stage-2 table descriptor are set".to_string())
        } else {
            None
        }
    }

    /// Gives table page `pa` (and every table below it) its position, as
    /// the entry at `slot` now points to it at `level`; checks the
    /// descriptors found (they were written before the page had a
    /// position) and, when the subtree becomes reachable, that none of its
    /// translations meets a stale one.
    #[allow(clippy::too_many_arguments)]
    fn position(
        &mut self,
        cx: &Cx<'_>,
        i: Option<usize>,
        slot: Option<Slot>,
        pa: u64,
        level: i8,
        base: u64,
        linked: bool,
    ) -> Result<(), Box<Breach>> {
        let Some(c) = self.live_page(pa) else {
            let mut b = Self::breach(
                Rule::WellFormed,
                format!(
                    "a table descriptor points to {pa:#x}, which is not an allocated table page"
                ),
                slot,
            );
            b.event = i;
            b.new = slot.and_then(|s| self.read(s.pa));
            return self.emit(cx, b);
        };
        if pa & ((1 << self.shift) - 1) != 0 || level > 3 {
            return Ok(());
        }
        if linked && self.pages[c].pos.is_some_and(|q| q.linked) {
            let mut b = Self::breach(
                Rule::WellFormed,
                format!("table page {pa:#x} is linked twice into the live tree"),
                slot,
            );
            b.event = i;
            b.new = slot.and_then(|s| self.read(s.pa));
            self.emit(cx, b)?;
        }
        self.stamp = self.stamp.wrapping_add(1);
        // Kept in the checker: a run positions a table page at every link.
        let mut stack = std::mem::take(&mut self.to_position);
        stack.clear();
        stack.push((c, level, base));
        let r = self.position_pages(cx, i, linked, &mut stack);
        self.to_position = stack;
        r
    }

    /// `position`'s walk down the pages of `stack` and all they reach.
    fn position_pages(
        &mut self,
        cx: &Cx<'_>,
        i: Option<usize>,
        linked: bool,
        stack: &mut Vec<(usize, i8, u64)>,
    ) -> Result<(), Box<Breach>> {
        let check_stale = linked && cx.reachable && !cx.skip_tlbi && self.live_stale();
        while let Some((pg, lvl, b0)) = stack.pop() {
            if self.pages[pg].stamp == self.stamp || lvl > 3 {
                continue;
            }
            self.pages[pg].stamp = self.stamp;
            if self.pages[pg].lazy {
                self.recount(pg);
            }
            let pos = Pos {
                level: lvl,
                base: b0,
                linked,
            };
            self.pages[pg].pos = Some(pos);
            // The owner rule: the page's annotations join the live tree (linked
            // by the op's own store, `on_store`), noted in the pass below.
            let joins = self.owner_step && linked;
            if !self.pages[pg].live {
                continue;
            }
            // Only valid descriptors matter below, and every valid one is
            // counted: a page with no counted entry has none to visit. It may
            // still hold LOCKED markers, which are annotations to the rule
            // (and which the LOCKED set forgets once the op-end rule saw them,
            // so their number on the page says whether to look). A fresh table
            // has neither.
            if self.pages[pg].counted == 0 {
                if joins && !self.all_zero(pg) {
                    self.owner_page(pg, pos, true, true);
                }
                continue;
            }
            let page_pa = self.page_pa(pg);
            let size = self.size(lvl);
            if !joins && !check_stale {
                // Only the form rule and the tables below: a scan for the
                // next word that needs either (a split's or an unlinked
                // table's thousands of well-formed leaves need neither).
                let (start, end) = (pg * self.wpp, (pg + 1) * self.wpp);
                let mut at = start;
                while let Some(k) = self.next_to_visit(at, end, lvl) {
                    let w = at + k - start;
                    let d = self.mem[at + k];
                    at += k + 1;
                    let ia = b0.wrapping_add((w as u64).wrapping_mul(size));
                    if !self.well_formed(lvl, d) {
                        let s = Slot {
                            pa: page_pa + 8 * w as u64,
                            level: lvl,
                            ia,
                        };
                        self.report_form(cx, i, s, d)?;
                    }
                    if self.is_table(d, lvl) {
                        if let Some(cc) = self.live_page(self.oa(d)) {
                            stack.push((cc, lvl + 1, ia));
                        }
                    }
                }
                continue;
            }
            let mut r = Ok(());
            for w in 0..self.wpp {
                let d = self.mem[pg * self.wpp + w];
                if !valid(d) {
                    if joins && d != 0 {
                        let ia = b0.wrapping_add((w as u64).wrapping_mul(size));
                        self.owner_note(ia, lvl, d, true, true);
                    }
                    continue;
                }
                let s = Slot {
                    pa: page_pa + 8 * w as u64,
                    level: lvl,
                    ia: b0.wrapping_add((w as u64).wrapping_mul(size)),
                };
                r = self.check_form(cx, i, s, d);
                if r.is_ok() && check_stale {
                    r = self.check_make(cx, i.unwrap_or(0), s, d);
                }
                if r.is_err() {
                    break;
                }
                if self.is_table(d, lvl) {
                    if let Some(cc) = self.live_page(self.oa(d)) {
                        stack.push((cc, lvl + 1, s.ia));
                    }
                }
            }
            r?;
        }
        Ok(())
    }

    /// Whether live page `p`'s words are all zero, as its counts show: on
    /// stage-2 every non-zero word is counted or LOCKED. A hyp page counts
    /// only valid entries, so its counts cannot tell (the owner rule, which
    /// asks, is pKVM's host stage-2's, but `follow_owners` is not refused to
    /// a hyp table).
    fn all_zero(&self, p: usize) -> bool {
        let page = &self.pages[p];
        self.stage == Stage::Stage2 && page.counted == 0 && page.locked == 0
    }

    /// The offset from `at` of the first word of `mem[at..end]` (in a
    /// page at `level`) that is a table descriptor or an ill-formed valid
    /// one.
    fn next_to_visit(&self, at: usize, end: usize, level: i8) -> Option<usize> {
        let mut words = self.mem[at..end].iter();
        match level {
            // The last level (a split's pages): the same test with the level
            // known, a few instructions a word.
            3 => words.position(|&d| valid(d) && !self.well_formed(3, d)),
            _ => words.position(|&d| {
                valid(d) && (self.is_table(d, level) || !self.well_formed(level, d))
            }),
        }
    }

    fn read(&self, pa: u64) -> Option<u64> {
        let p = self.live_page(pa)?;
        let w = ((pa >> 3) as usize) & (self.wpp - 1);
        Some(self.mem[p * self.wpp + w])
    }

    /// The subtree below table page `pa` is cut off the tree: it is no
    /// longer linked and, if it was reachable (`live`), every valid entry in
    /// it may still be cached. `own`: by the op's own store (the owner rule
    /// notes only the annotations outside its range), not another agent's.
    fn detach(&mut self, pa: u64, live: bool, origin: usize, own: bool) {
        let Some(c) = self.live_page(pa) else {
            return;
        };
        if !live && !self.pages[c].pos.is_some_and(|q| q.linked) {
            return;
        }
        self.stamp = self.stamp.wrapping_add(1);
        let mut stack = std::mem::take(&mut self.to_detach);
        stack.clear();
        stack.push(c);
        while let Some(pg) = stack.pop() {
            if self.pages[pg].stamp == self.stamp {
                continue;
            }
            self.pages[pg].stamp = self.stamp;
            let Some(pos) = self.pages[pg].pos.as_mut() else {
                continue;
            };
            // The owner rule: the page's annotations leave the live tree,
            // noted in the pass below.
            let leaves = self.owner_step && pos.linked;
            pos.linked = false;
            let pos = *pos;
            if !self.pages[pg].live {
                continue;
            }
            // Only valid descriptors matter below, and every valid one is
            // counted: a page with no counted entry has none to visit (but
            // see LOCKED markers in `position_pages`).
            if self.pages[pg].counted == 0 {
                if leaves && !self.all_zero(pg) {
                    self.owner_page(pg, pos, false, own);
                }
                continue;
            }
            let size = self.size(pos.level);
            for w in 0..self.wpp {
                let d = self.mem[pg * self.wpp + w];
                if !valid(d) {
                    if leaves && d != 0 {
                        let ia = pos.base.wrapping_add((w as u64).wrapping_mul(size));
                        self.owner_note(ia, pos.level, d, false, own);
                    }
                    continue;
                }
                let slot = Slot {
                    pa: self.page_pa(pg) + 8 * w as u64,
                    level: pos.level,
                    ia: pos.base.wrapping_add((w as u64).wrapping_mul(size)),
                };
                if live {
                    self.add_stale(slot, d, Staleness::Removed, origin);
                }
                if self.is_table(d, pos.level) {
                    if let Some(cc) = self.live_page(self.oa(d)) {
                        stack.push(cc);
                    }
                }
            }
        }
        self.to_detach = stack;
    }

    fn add_stale(&mut self, slot: Slot, pte: u64, why: Staleness, origin: usize) {
        let Slot { pa, level, ia } = slot;
        let k = self.stale.len() as u32;
        self.stale.push(Stale {
            pa,
            level,
            ia,
            pte,
            why,
            created: self.seq,
            invalidated: None,
            origin,
            early_tlbi: false,
            local_tlbi: false,
        });
        if self.is_table(pte, level) {
            self.stale_tables.push(k);
        }
    }

    /// Brings the by-address index up to date (entries are only ever
    /// appended between compactions).
    fn update_index(&mut self) {
        for k in self.indexed..self.stale.len() {
            let e = self.stale[k];
            let key = (e.level, e.ia & !(self.size(e.level).wrapping_sub(1)));
            let older = self.index.insert(key, k as u32).unwrap_or(NO_ENTRY);
            self.chain.push(older);
        }
        self.indexed = self.stale.len();
    }

    fn is_gone(&self, e: &Stale) -> bool {
        e.invalidated.is_some_and(|t| t < self.completed)
    }

    fn live_stale(&self) -> bool {
        self.stale.len() > self.gone
    }

    fn why_not_gone(&self, e: &Stale) -> String {
        match e.invalidated {
            Some(_) => "the TLBI that covers it has not been completed by a DSB".into(),
            None if e.local_tlbi => {
                "only a local (non-shareable, nsh) TLBI covered it: the TLBs of the other PEs \
                 may still hold it"
                    .into()
            }
            None if e.created >= self.ordered => {
                "no DSB has made that store visible to the table walkers, so no TLBI can \
                 have removed it"
                    .into()
            }
            None if e.early_tlbi => {
                "the TLBI that covers it came before any DSB had made the store visible to \
                 the table walkers (a walker may have cached the old entry again), and none \
                 followed"
                    .into()
            }
            None => "no TLBI covering it (address, level hint and shareability) followed".into(),
        }
    }

    fn covers(&self, inv: Inval, e: &Stale) -> bool {
        let size = self.size(e.level);
        let end = e.ia.saturating_add(size);
        let leaf = !self.is_table(e.pte, e.level);
        match inv {
            Inval::All => true,
            Inval::Range { start, end: r_end } => e.ia < r_end && start < end,
            Inval::Addr {
                addr,
                hint,
                last_level,
            } => {
                (e.ia..end).contains(&addr)
                    && (!last_level || leaf)
                    && hint.is_none_or(|l| leaf && l == e.level)
            }
        }
    }

    /// A TLBI: every stale entry it covers whose removal the walkers have
    /// observed is invalidated (complete at the next completing DSB).
    fn invalidate(&mut self, inv: Inval) {
        let mut hit = std::mem::take(&mut self.hit);
        hit.clear();
        match inv {
            // Few entries: a scan is cheaper than the index.
            Inval::Addr { .. } if self.stale.len() <= 32 => hit.extend(0..self.stale.len() as u32),
            Inval::Addr { addr, .. } => {
                self.update_index();
                for level in -1..=3i8 {
                    let size = self.size(level);
                    if size == 0 {
                        continue;
                    }
                    if let Some(&newest) = self.index.get(&(level, addr & !(size - 1))) {
                        let from = hit.len();
                        let mut k = newest;
                        while k != NO_ENTRY {
                            hit.push(k);
                            k = self.chain[k as usize];
                        }
                        // Oldest first, the order the entries were made stale in.
                        hit[from..].reverse();
                    }
                }
            }
            _ => hit.extend(0..self.stale.len() as u32),
        }
        for &k in &hit {
            let e = self.stale[k as usize];
            if e.invalidated.is_some() || !self.covers(inv, &e) {
                continue;
            }
            if e.created < self.ordered {
                self.stale[k as usize].invalidated = Some(self.seq);
                self.pending.push(k);
            } else {
                self.stale[k as usize].early_tlbi = true;
            }
        }
        self.hit = hit;
    }

    /// Notes a local TLBI on the entries it would cover (for the report).
    fn mark_local(&mut self, inv: Inval) {
        for k in 0..self.stale.len() {
            if self.covers(inv, &self.stale[k]) {
                self.stale[k].local_tlbi = true;
            }
        }
    }

    fn dsb(&mut self, b: Barrier) {
        use Barrier::*;
        if matches!(b, Sy | St | Ish | IshSt | Osh | OshSt) {
            self.ordered = self.seq;
        }
        if matches!(b, Sy | Ish | Osh) {
            self.completed = self.seq;
            self.gone += self.pending.len();
            self.pending.clear();
            self.compact();
        }
    }

    /// A stage-2 TLB helper: leading DSB, the TLBI, completing DSB.
    fn helper(&mut self, inv: Inval) {
        self.dsb(Barrier::Ish);
        self.seq += 1;
        self.invalidate(inv);
        self.seq += 1;
        self.dsb(Barrier::Ish);
    }

    /// Drops invalidated entries once they are most of the list.
    fn compact(&mut self) {
        // All gone, the common case after a break's TLBI and DSB: the list
        // starts again empty, so the next TLBI looks through nothing.
        if self.gone == self.stale.len() {
            self.stale.clear();
            self.stale_tables.clear();
            self.gone = 0;
            if self.indexed > 0 {
                self.index.clear();
                self.chain.clear();
                self.indexed = 0;
            }
            return;
        }
        if self.gone * 2 < self.stale.len() || self.stale.len() < 16 {
            return;
        }
        let completed = self.completed;
        self.stale
            .retain(|e| e.invalidated.is_none_or(|t| t >= completed));
        self.gone = 0;
        self.index.clear();
        self.chain.clear();
        self.indexed = 0;
        self.stale_tables.clear();
        for k in 0..self.stale.len() {
            let e = self.stale[k];
            if self.is_table(e.pte, e.level) {
                self.stale_tables.push(k as u32);
            }
        }
    }

    /// A valid descriptor `val` is written at reachable `slot`: no stale
    /// translation of an overlapping input range may differ from it
    /// (break-before-make's "TLBI completed before the new value").
    #[inline(always)]
    fn check_make(
        &mut self,
        cx: &Cx<'_>,
        i: usize,
        slot: Slot,
        val: u64,
    ) -> Result<(), Box<Breach>> {
        match self.live_stale() {
            true => self.check_make_over_stale(cx, i, slot, val),
            false => Ok(()),
        }
    }

    /// [`Checker::check_make`] with stale entries to look through. Apart,
    /// because its frame holds values whose address is taken: in the ASan
    /// builds such a frame is made on ASan's fake stack at each call, and
    /// most stores leave no stale entry to look through.
    #[inline(never)]
    fn check_make_over_stale(
        &mut self,
        cx: &Cx<'_>,
        i: usize,
        slot: Slot,
        val: u64,
    ) -> Result<(), Box<Breach>> {
        let size = self.size(slot.level);
        let end = slot.ia.saturating_add(size);
        let leaf = !self.is_table(val, slot.level);
        // The oldest conflicting entry. A scan of the whole list per store
        // made a map of N pages over N stale ones (a wrprotect the caller
        // flushes later) cost N^2: 95 s for one 1 GiB input. The index finds
        // the entries that can overlap: one key per level at or above the
        // slot's (the aligned entry that contains it), and, for a leaf, the
        // keys of the finer levels inside it, unless those outnumber the list.
        let finer_keys: u64 = if leaf {
            (slot.level + 1..=3)
                .map(|l| match self.size(l) {
                    0 => 0,
                    s => size / s,
                })
                .fold(0, u64::saturating_add)
        } else {
            0
        };
        let scan = self.stale.len() <= 32 || finer_keys > self.stale.len() as u64;
        if !scan {
            self.update_index();
        }
        let conflicts = |e: &Stale| {
            if self.is_gone(e) || e.why != Staleness::Removed {
                return false;
            }
            let e_end = e.ia.saturating_add(self.size(e.level));
            if !(e.ia < end && slot.ia < e_end) {
                return false;
            }
            if e.level == slot.level {
                self.needs_bbm(e.pte, val, slot.level)
            } else {
                leaf && !self.is_table(e.pte, e.level)
            }
        };
        let conflict = if scan {
            self.stale.iter().position(conflicts)
        } else {
            let mut first: Option<usize> = None;
            let mut visit = |key: (i8, u64)| {
                let mut k = self.index.get(&key).copied().unwrap_or(NO_ENTRY);
                while k != NO_ENTRY {
                    let ku = k as usize;
                    if first.is_none_or(|f| ku < f) && conflicts(&self.stale[ku]) {
                        first = Some(ku);
                    }
                    k = self.chain[ku];
                }
            };
            for level in -1..=3i8 {
                let l_size = self.size(level);
                if l_size == 0 {
                    continue;
                }
                if level <= slot.level {
                    visit((level, slot.ia & !(l_size - 1)));
                } else if leaf {
                    let mut ia = slot.ia;
                    while ia < end {
                        visit((level, ia));
                        ia = ia.saturating_add(l_size);
                    }
                }
            }
            if self.cross_check {
                let scanned = self.stale.iter().position(conflicts);
                assert_eq!(
                    first, scanned,
                    "indexed break-before-make look-up at {slot:?}"
                );
            }
            first
        };
        let conflict = conflict.map(|k| &self.stale[k]);
        let Some(&e) = conflict else {
            return Ok(());
        };
        let mut b = Self::breach(
            Rule::BreakBeforeMake,
            format!(
                "a {} was written while a TLB may still hold the {} it replaces (level {}, \
                 IA {:#x}, made stale by event #{}): {}",
                self.kind(val, slot.level),
                self.kind(e.pte, e.level),
                e.level,
                e.ia,
                e.origin,
                self.why_not_gone(&e)
            ),
            Some(slot),
        );
        (b.old, b.new, b.event, b.cause) = (Some(e.pte), Some(val), Some(i), Some(e.origin));
        self.emit(cx, b)
    }

    /// The rules checked when an op returns.
    fn finish(&mut self, cx: &Cx<'_>, arena: &Arena, value: &Value) -> Result<(), Box<Breach>> {
        if !cx.reachable {
            return Ok(());
        }
        // The TLB model: what the op's contract says it invalidates is gone.
        let left: Vec<Stale> = self
            .stale
            .iter()
            .filter(|e| !self.is_gone(e))
            .copied()
            .collect();
        for e in left {
            let exempt = cx.skip_tlbi
                || match e.why {
                    Staleness::Removed => false,
                    Staleness::PermReduced(r) => r & !cx.perm_exempt == 0,
                };
            if exempt {
                continue;
            }
            let what = match e.why {
                Staleness::Removed => "a translation it removed or replaced".to_string(),
                Staleness::PermReduced(r) => format!(
                    "the earlier, more permissive translation ({} taken away)",
                    perm_names(r)
                ),
            };
            let mut b = Self::breach(
                Rule::StaleTlb,
                format!(
                    "the op returned while a TLB may still hold {what} (level {}, IA {:#x}): \
                     {}",
                    e.level,
                    e.ia,
                    self.why_not_gone(&e)
                ),
                Some(e.slot()),
            );
            (b.old, b.new, b.cause) = (Some(e.pte), self.read(e.pa), Some(e.origin));
            self.emit(cx, b)?;
        }
        if let Some(pa) = self.locked.first() {
            let slot = self.page(pa).and_then(|p| {
                let pos = self.pages[p].pos?;
                let w = ((pa >> 3) as usize) & (self.wpp - 1);
                Some(Slot {
                    pa,
                    level: pos.level,
                    ia: pos
                        .base
                        .wrapping_add((w as u64).wrapping_mul(self.size(pos.level))),
                })
            });
            let mut b = Self::breach(
                Rule::WellFormed,
                format!(
                    "the op returned with the entry at {pa:#x} still LOCKED: a break was never \
                     followed by its make"
                ),
                slot,
            );
            b.new = self.read(pa);
            self.emit(cx, b)?;
            self.locked.clear();
        }
        // Refcounts of the pages this op touched.
        let touched = std::mem::take(&mut self.touched);
        let mut r = Ok(());
        for &p in &touched {
            let p = p as usize;
            if !self.pages[p].live {
                continue;
            }
            let actual = i64::from(arena.refcount(p as u32));
            let expected = 1 + i64::from(self.pages[p].counted) + i64::from(self.pages[p].leaked);
            if actual != expected {
                let pa = self.page_pa(p);
                let pos = self.pages[p]
                    .pos
                    .map(|q| {
                        format!(
                            "level {}, IA {:#x}{}",
                            q.level,
                            q.base,
                            if q.linked { "" } else { ", not linked" }
                        )
                    })
                    .unwrap_or_else(|| "no position".into());
                let b = Self::breach(
                    Rule::Refcount,
                    format!(
                        "table page {pa:#x} ({pos}) has refcount {actual}, but 1 + its {} \
                         counted entries{} is {expected}",
                        self.pages[p].counted,
                        if self.pages[p].leaked != 0 {
                            format!(" + {} known leaked", self.pages[p].leaked)
                        } else {
                            String::new()
                        }
                    ),
                    None,
                );
                r = self.emit(cx, b);
                if r.is_err() {
                    break;
                }
                // Explained by a known divergence: that is the page's count now.
                self.pages[p].leaked += (actual - expected) as i32;
            }
        }
        self.touched = touched;
        r?;
        if let (Some(Op::S2CreateUnlinked { level, .. }), Value::Table(Ok(pa))) = (cx.op, value) {
            // The tree create_unlinked returns: entries of level + 1, for
            // the range [0, granule(level)) its walk used; no walker can
            // reach it until a caller links it.
            self.position(cx, None, None, *pa, level + 1, 0, false)?;
        }
        Ok(())
    }

    /// Whether the shadow equals the side's memory: every live page and its
    /// words (a check that the trace reports every write).
    pub fn shadow_matches(&self, arena: &Arena) -> Result<(), String> {
        let live: Vec<u64> = arena.live().map(|(pa, _)| pa).collect();
        let shadowed: Vec<u64> = (0..self.npages)
            .filter(|&p| self.pages[p].live)
            .map(|p| self.page_pa(p))
            .collect();
        if live != shadowed {
            return Err(format!("live pages {live:x?}, shadow {shadowed:x?}"));
        }
        for &pa in &live {
            let p = self.page(pa).expect("live pages are arena pages");
            let s = &self.mem[p * self.wpp..(p + 1) * self.wpp];
            if s != arena.page_words(pa) {
                let w = s
                    .iter()
                    .zip(arena.page_words(pa))
                    .position(|(a, b)| a != b)
                    .unwrap_or(0);
                return Err(format!(
                    "word {:#x}: shadow {:#x}, memory {:#x}",
                    pa + 8 * w as u64,
                    s[w],
                    arena.page_words(pa)[w]
                ));
            }
            // Each page's counts, kept store by store, against its words.
            let page = &self.pages[p];
            let counted = s.iter().filter(|&&d| self.counted(d)).count() as i32;
            let locked = s.iter().filter(|&&d| self.is_locked(d)).count() as i32;
            if !page.lazy && (page.counted, page.locked) != (counted, locked) {
                return Err(format!(
                    "page {pa:#x}: {} counted entries and {} LOCKED kept, its words hold \
                     {counted} and {locked}",
                    page.counted, page.locked
                ));
            }
        }
        Ok(())
    }
}

/// The TTL hint of a recorded level: 0..=3 is a hint, anything else (-1,
/// `TLBI_TTL_UNKNOWN`) none (6.12 tlbflush.h tests `level >= 0 && level <=
/// 3`; 7.x takes the level as u32 and tests `level <= 3`).
fn hint(level: i32) -> Option<i8> {
    (0..=3).contains(&level).then_some(level as i8)
}

fn perm_names(r: u8) -> String {
    let mut v = Vec::new();
    for (bit, name) in [
        (PERM_R, "read"),
        (PERM_W, "write"),
        (PERM_X, "execute"),
        (PERM_AF, "access flag"),
        (PERM_OTHER, "guarded-page"),
    ] {
        if r & bit != 0 {
            v.push(name);
        }
    }
    v.join(", ")
}

/// The slots holding a LOCKED descriptor, in address order: a sorted
/// vector, since a walker holds one or two at a time and locks in address
/// order (a tree set cost 5% of a host donation's diff for that).
#[derive(Default)]
struct Locked(Vec<u64>);

impl Locked {
    #[inline]
    fn insert(&mut self, pa: u64) {
        // Walkers lock in address order: usually past the last one.
        if self.0.last().is_none_or(|&l| l < pa) {
            self.0.push(pa);
        } else if let Err(i) = self.0.binary_search(&pa) {
            self.0.insert(i, pa);
        }
    }

    #[inline]
    fn remove(&mut self, pa: u64) {
        // A make usually follows its own break at once: the last one.
        if self.0.last() == Some(&pa) {
            self.0.pop();
        } else if let Ok(i) = self.0.binary_search(&pa) {
            self.0.remove(i);
        }
    }

    /// Forgets the slots in `[start, end)` (a page that left the tree).
    fn remove_range(&mut self, start: u64, end: u64) {
        let a = self.0.partition_point(|&x| x < start);
        let b = self.0.partition_point(|&x| x < end);
        self.0.drain(a..b);
    }

    fn first(&self) -> Option<u64> {
        self.0.first().copied()
    }

    fn clear(&mut self) {
        self.0.clear();
    }
}

#[cfg(test)]
mod tests {
    //! Each rule on hand-written traces: the events a correct (or a broken)
    //! implementation would record, with the expected finding worked out
    //! by hand from the Arm architecture.

    use super::*;
    use crate::arena::{Geometry, Memcache, PageSource};
    use crate::events::{StoreKind, Trace};
    use crate::opstream::{Config, Granule, KernelLine, OpStream, Stage};

    const P0: u64 = 0x4000_0000;
    const PAGE: u64 = 0x1000;
    /// A hyp page descriptor's attributes: AF, SH=IS, AP=RO, valid page.
    const HYP_PAGE: u64 = 0x7c3;
    /// A stage-2 leaf: AF, SH=IS, S2AP=RW, MemAttr normal; | 1 for a block, | 3 for a page.
    const S2_ATTR: u64 = 0x7fc;

    #[test]
    fn locked_slots_stay_a_set_in_address_order() {
        let mut l = Locked::default();
        for pa in [0x3010, 0x1008, 0x2000, 0x1008, 0x3ff8] {
            l.insert(pa);
        }
        assert_eq!(l.0, [0x1008, 0x2000, 0x3010, 0x3ff8]);
        l.remove(0x2000);
        l.remove(0x2008);
        assert_eq!(l.first(), Some(0x1008));
        // The page at 0x3000 leaves the tree.
        l.remove_range(0x3000, 0x4000);
        assert_eq!(l.0, [0x1008]);
        l.clear();
        assert_eq!(l.first(), None);
    }

    /// The index's buckets are chosen by a hash's low bits: 1024 consecutive 4K pages of one
    /// level must not share them (a hash whose low bits depend on the level alone, which an
    /// unmixed multiply gives aligned addresses, puts every key in one probe run).
    #[test]
    fn index_hash_spreads_aligned_pages() {
        use std::hash::{BuildHasher, BuildHasherDefault};
        let b = BuildHasherDefault::<FoldHasher>::default();
        let low: std::collections::HashSet<u64> = (0..1024u64)
            .map(|i| b.hash_one((3i8, P0 + i * PAGE)) & 1023)
            .collect();
        // 1024 keys into 1024 buckets: a uniform hash fills about 1 - 1/e of them.
        assert!(low.len() > 512, "{} distinct buckets of 1024", low.len());
    }

    /// The LOCKED marker of each line, by hand from pgtable.c's definitions:
    /// An arena of 64 granule pages and a checker of `config` following a
    /// fresh one-page root (hyp's at level 0, stage-2's at level 1).
    fn one_page_root(config: Config) -> (Arena, Checker) {
        let start_level = if config.stage == Stage::Hyp { 0 } else { 1 };
        let page = config.granule.page_size();
        let stream = OpStream {
            config,
            ops: vec![],
            races: Default::default(),
        };
        let mut arena = Arena::new(Geometry::new(page, 64), PageSource::Pool, None);
        let pgd = arena.zalloc_page(None, &mut Trace::new()).unwrap();
        let root = Root {
            pgd,
            pages: 1,
            start_level,
        };
        let checker = Checker::with_root(&stream, &arena, root).unwrap();
        (arena, checker)
    }

    /// 6.12 `KVM_INVALID_PTE_LOCKED` is bit 10 of an invalid entry; 7.x marks
    /// an invalid entry of type 1 in bits [63:60]. A valid entry with those
    /// bits, another invalid type, or any hyp entry is not LOCKED.
    #[test]
    fn locked_markers_follow_each_line() {
        let checker = |stage: Stage, kernel: KernelLine| {
            let mut config = Config::new(stage);
            config.kernel = kernel;
            one_page_root(config).1
        };
        let v6 = checker(Stage::Stage2, KernelLine::V6_12);
        assert!(v6.is_locked(1 << 10));
        assert!(v6.is_locked((1 << 10) | (0xab << 12)));
        assert!(!v6.is_locked((1 << 10) | 1));
        assert!(!v6.is_locked(1 << 60));
        assert!(!v6.is_locked(0));
        let v7 = checker(Stage::Stage2, KernelLine::V7_3);
        assert!(v7.is_locked(1 << 60));
        assert!(v7.is_locked((1 << 60) | (0x5 << 2)));
        assert!(!v7.is_locked((1 << 60) | 1));
        assert!(!v7.is_locked(2 << 60));
        assert!(!v7.is_locked(3 << 60));
        assert!(!v7.is_locked(1 << 10));
        let hyp = checker(Stage::Hyp, KernelLine::V6_12);
        assert!(!hyp.is_locked(1 << 10));
        assert!(!hyp.is_locked(1 << 60));
        assert!(!hyp.is_locked(0));
    }

    /// The quick form test (`well_formed`, run on every store) passes
    /// exactly the descriptors the explanation (`form_problem`) finds
    /// nothing wrong with, on every granule, with and without LPA2, at
    /// every level; and a few cases worked out by hand from the Arm ARM's
    /// descriptor formats.
    #[test]
    fn the_quick_form_test_agrees_with_its_explanation() {
        let checker = |stage: Stage, granule: Granule, lpa2: bool| {
            let mut config = Config::new(stage);
            config.granule = granule;
            config.features.lpa2 = lpa2;
            config.mmfr0_parange = 6;
            one_page_root(config).1
        };
        let mut seen = [0usize; 2];
        for stage in [Stage::Hyp, Stage::Stage2] {
            for granule in [Granule::K4, Granule::K16, Granule::K64] {
                for lpa2 in [false, true] {
                    if lpa2 && granule == Granule::K64 {
                        continue;
                    }
                    let c = checker(stage, granule, lpa2);
                    for level in -1..=3i8 {
                        for low in [1u64, 3] {
                            for oa_bit in [12u32, 14, 16, 21, 25, 29, 30, 36, 39, 42, 47] {
                                for high in [0u64, 1 << 48, 1 << 49, 1 << 59, 1 << 63, 1 << 54] {
                                    let val = low | (1 << oa_bit) | high | (1 << 10);
                                    let ok = c.well_formed(level, val);
                                    assert_eq!(
                                        ok,
                                        c.form_problem(level, val).is_none(),
                                        "{stage:?} {granule:?} lpa2={lpa2} level {level} {val:#x}"
                                    );
                                    seen[usize::from(ok)] += 1;
                                }
                            }
                        }
                    }
                }
            }
        }
        assert!(seen[0] > 0 && seen[1] > 0, "both verdicts: {seen:?}");
        // By hand, 4K stage-2 without LPA2: a level-2 block maps 2 MiB and
        // needs a 2 MiB-aligned output address; level 3 has no 0b01 form;
        // bits [49:48] are RES0; a level-0 block needs LPA2.
        let c = checker(Stage::Stage2, Granule::K4, false);
        assert!(c.well_formed(2, 0x4020_0000 | 0x401));
        assert!(!c.well_formed(2, 0x4020_1000 | 0x401));
        assert!(c.well_formed(3, 0x4020_1000 | 0x403));
        assert!(!c.well_formed(3, 0x4020_1000 | 0x401));
        assert!(!c.well_formed(3, (1 << 48) | 0x4020_1000 | 0x403));
        assert!(!c.well_formed(0, 0x80_0000_0000 | 0x401));
        assert!(!c.well_formed(1, (1 << 60) | 0x5000 | 3));
        assert!(c.well_formed(1, 0x5000 | 3));
        // With LPA2, bits [49:48] hold output address bits and level 0 has
        // 512 GiB blocks.
        let c = checker(Stage::Stage2, Granule::K4, true);
        assert!(c.well_formed(3, (1 << 48) | 0x4020_1000 | 0x403));
        assert!(c.well_formed(0, 0x80_0000_0000 | 0x401));
        // 16K without LPA2: blocks only at level 2 (32 MiB).
        let c = checker(Stage::Stage2, Granule::K16, false);
        assert!(c.well_formed(2, 0x200_0000 | 0x401));
        assert!(!c.well_formed(2, 0x100_0000 | 0x401));
        assert!(!c.well_formed(1, 0x10_0000_0000 | 0x401));
    }

    struct Fx {
        arena: Arena,
        checker: Checker,
        trace: Trace,
        known: Vec<&'static str>,
    }

    impl Fx {
        /// A hyp table: 4K, 48-bit VA, root (level 0) at P0.
        fn hyp() -> Fx {
            let (arena, mut checker) = one_page_root(Config::new(Stage::Hyp));
            checker.cross_check();
            Fx {
                arena,
                checker,
                trace: Trace::new(),
                known: vec![],
            }
        }

        /// A stage-2 table: 4K, 40-bit IPA, two concatenated level-1 root
        /// pages at P0 and P0 + 0x1000.
        fn s2() -> Fx {
            let stream = OpStream {
                config: Config::new(Stage::Stage2),
                ops: vec![],
                races: Default::default(),
            };
            let mut arena = Arena::new(Geometry::new(PAGE, 64), PageSource::Budget, None);
            let pgd = arena
                .zalloc_pages_exact(2 * PAGE, &mut Trace::new())
                .unwrap();
            let root = Root {
                pgd,
                pages: 2,
                start_level: 1,
            };
            let mut checker = Checker::with_root(&stream, &arena, root).unwrap();
            checker.cross_check();
            Fx {
                arena,
                checker,
                trace: Trace::new(),
                known: vec![],
            }
        }

        fn alloc(&mut self) -> u64 {
            let mut mc = Memcache { nobjs: 1 };
            self.arena
                .zalloc_page(Some(&mut mc), &mut self.trace)
                .unwrap()
        }

        fn store(&mut self, pa: u64, val: u64) -> usize {
            let old = self.arena.read(pa).unwrap();
            // SAFETY: `pa` is a slot of a live arena page (read above).
            unsafe { *self.arena.phys_to_virt(pa) = val };
            self.ev(Event::Store {
                pa,
                old,
                val,
                kind: StoreKind::WriteOnce,
            })
        }

        fn ev(&mut self, e: Event) -> usize {
            self.trace.push(e);
            self.trace.len() - 1
        }

        fn get(&mut self, pa: u64) {
            self.arena.get_page(pa, &mut self.trace);
        }

        fn put(&mut self, pa: u64) {
            self.arena.put_page(pa, &mut self.trace);
        }

        /// Ends the step as `op` (strict: no known divergence recognised).
        fn op(&mut self, op: Op) -> Option<Breach> {
            self.step(ArchStep::Op(&op), false)
        }

        fn step(&mut self, step: ArchStep<'_>, allow_known: bool) -> Option<Breach> {
            self.step_ending(step, false, allow_known)
        }

        /// Ends the step; `ended`: the machine stopped at its last event.
        fn step_ending(
            &mut self,
            step: ArchStep<'_>,
            ended: bool,
            allow_known: bool,
        ) -> Option<Breach> {
            let o = Outcome::new(Value::Int(0), std::mem::take(&mut self.trace));
            let r =
                self.checker
                    .check_in(&self.arena, step, &o, ended, allow_known, &mut self.known);
            if r.is_none() && !ended {
                assert_eq!(self.checker.shadow_matches(&self.arena), Ok(()));
            }
            r
        }

        /// Links a hyp path for VA 0 down to level 3: P1 (level 1), P2
        /// (level 2), P3 (level 3), each with its parent's reference.
        fn hyp_path(&mut self) -> [u64; 3] {
            let mut out = [0; 3];
            self.hyp_tables(&mut out);
            out
        }

        /// Links tables for VA 0 from level 1 down, one per element of `out`.
        fn hyp_tables(&mut self, out: &mut [u64]) {
            let mut parent = P0;
            for t in out {
                let child = self.alloc();
                self.get(parent);
                self.store(parent, child | 3);
                *t = child;
                parent = child;
            }
        }
    }

    fn hyp_map(addr: u64) -> Op {
        Op::HypMap {
            addr,
            size: PAGE,
            phys: 0x8000_0000,
            prot: 4,
        }
    }

    fn hyp_unmap(addr: u64) -> Op {
        Op::HypUnmap { addr, size: PAGE }
    }

    fn s2_map() -> Op {
        Op::S2Map {
            addr: 0,
            size: PAGE,
            phys: 0x8000_0000,
            prot: 6,
            mc: Some(4),
            flags: 0,
        }
    }

    /// Maps page VA 0x1000 (entry 1 of P3) and ends the op as hyp_map.
    fn mapped_hyp_page() -> (Fx, [u64; 3]) {
        let mut f = Fx::hyp();
        let t = f.hyp_path();
        f.get(t[2]);
        f.store(t[2] + 8, 0x8000_1000 | HYP_PAGE);
        f.ev(Event::Dsb(Barrier::IshSt));
        f.ev(Event::Isb);
        assert_eq!(f.op(hyp_map(0x1000)), None);
        (f, t)
    }

    fn vale2is(va: u64, level: i32) -> Event {
        Event::TlbiHyp {
            op: TlbiHypOp::Vale2is,
            operand: va >> 12,
            level,
        }
    }

    /// A step the machine does not survive (an EL2 WARN ends it) is judged
    /// event by event up to its end: its stores reached memory. Only the
    /// end-of-op rules are left out.
    #[test]
    fn a_step_that_ends_the_machine_is_judged_up_to_its_end() {
        // Valid page -> a valid page at another output address, no break:
        // break-before-make, whether or not the op ever returns.
        let (mut f, t) = mapped_hyp_page();
        f.store(t[2] + 8, 0x8000_3000 | HYP_PAGE);
        let b = f.step_ending(ArchStep::Op(&hyp_map(0x1000)), true, false);
        assert_eq!(b.map(|b| b.rule), Some(Rule::BreakBeforeMake));

        // A page unmapped with no TLBI leaves a stale translation, but that
        // is an end-of-op rule: the machine never got there.
        let (mut f, t) = mapped_hyp_page();
        f.store(t[2] + 8, 0);
        assert_eq!(
            f.step_ending(ArchStep::Op(&hyp_unmap(0x1000)), true, false),
            None
        );
        // The same step, returning, is a stale TLB entry.
        let (mut f, t) = mapped_hyp_page();
        f.store(t[2] + 8, 0);
        let b = f.op(hyp_unmap(0x1000));
        assert_eq!(b.map(|b| b.rule), Some(Rule::StaleTlb));
    }

    #[test]
    fn hyp_unmap_with_the_kernel_sequence_is_clean() {
        let (mut f, t) = mapped_hyp_page();
        // WRITE_ONCE(0); dsb(ishst); tlbi vale2is, level 3; dsb ish; isb; put_page.
        f.store(t[2] + 8, 0);
        f.ev(Event::Dsb(Barrier::IshSt));
        f.ev(vale2is(0x1000, 3));
        f.ev(Event::TlbiSyncS1IshHyp);
        f.ev(Event::Isb);
        f.put(t[2]);
        // The now empty level-3 table goes too: clear its table entry,
        // invalidate all levels at VA 0, then free it.
        f.store(t[1], 0);
        f.ev(Event::Dsb(Barrier::IshSt));
        f.ev(Event::TlbiHyp {
            op: TlbiHypOp::Vae2is,
            operand: 0,
            level: i32::MAX,
        });
        f.ev(Event::TlbiSyncS1IshHyp);
        f.ev(Event::Isb);
        f.put(t[1]);
        f.put(t[2]);
        assert_eq!(f.op(hyp_unmap(0x1000)), None);
    }

    #[test]
    fn a_tlbi_before_the_dsb_does_not_count() {
        let (mut f, t) = mapped_hyp_page();
        let store = f.store(t[2] + 8, 0);
        f.ev(vale2is(0x1000, 3));
        f.ev(Event::TlbiSyncS1IshHyp);
        f.put(t[2]);
        let b = f.op(hyp_unmap(0x1000)).unwrap();
        assert_eq!(b.rule, Rule::StaleTlb);
        assert_eq!((b.event, b.cause), (None, Some(store)));
        assert_eq!(b.old, Some(0x8000_1000 | HYP_PAGE));
        assert_eq!(b.new, Some(0));
        assert_eq!(
            b.slot,
            Some(Slot {
                pa: t[2] + 8,
                level: 3,
                ia: 0x1000
            })
        );
        assert!(b.detail.contains("came before any DSB"), "{}", b.detail);
    }

    #[test]
    fn a_wrong_level_hint_or_address_or_no_completion_leaves_the_entry() {
        for (tlbi, sync) in [
            (vale2is(0x1000, 2), true),
            (vale2is(0x2000, 3), true),
            (vale2is(0x1000, 3), false),
        ] {
            let (mut f, t) = mapped_hyp_page();
            f.store(t[2] + 8, 0);
            f.ev(Event::Dsb(Barrier::IshSt));
            f.ev(tlbi);
            if sync {
                f.ev(Event::TlbiSyncS1IshHyp);
            } else {
                // ISHST orders stores; it is not relied on to complete a TLBI.
                f.ev(Event::Dsb(Barrier::IshSt));
            }
            f.put(t[2]);
            let b = f.op(hyp_unmap(0x1000)).unwrap();
            assert_eq!(b.rule, Rule::StaleTlb, "{tlbi:?}");
        }
    }

    #[test]
    fn a_table_freed_after_a_last_level_tlbi_is_still_in_the_walk_cache() {
        let (mut f, t) = mapped_hyp_page();
        f.store(t[2] + 8, 0);
        f.ev(Event::Dsb(Barrier::IshSt));
        f.ev(vale2is(0x1000, 3));
        f.ev(Event::TlbiSyncS1IshHyp);
        f.put(t[2]);
        let clear = f.store(t[1], 0);
        f.ev(Event::Dsb(Barrier::IshSt));
        // VALE2IS leaves the walk caches alone.
        f.ev(vale2is(0, i32::MAX));
        f.ev(Event::TlbiSyncS1IshHyp);
        f.put(t[1]);
        f.put(t[2]);
        let free = f.trace.len() - 1;
        let b = f.op(hyp_unmap(0x1000)).unwrap();
        assert_eq!(b.rule, Rule::FreedTableReachable);
        assert_eq!((b.event, b.cause), (Some(free), Some(clear)));
        assert_eq!(b.old, Some(t[2] | 3));
    }

    #[test]
    fn a_table_freed_while_linked() {
        let (mut f, t) = mapped_hyp_page();
        f.put(t[2]);
        f.put(t[2]);
        let b = f.op(hyp_unmap(0x1000)).unwrap();
        assert_eq!(b.rule, Rule::FreedTableReachable);
        assert_eq!(b.event, Some(1));
        assert!(b.detail.contains("still points"), "{}", b.detail);
    }

    /// A 2 MiB hyp block at VA 0: entry 0 of the level-2 table `t[1]`.
    fn hyp_block(f: &mut Fx) -> [u64; 2] {
        let mut t = [0; 2];
        f.hyp_tables(&mut t);
        f.get(t[1]);
        f.store(t[1], 0x8020_0000 | 0x7c1);
        assert_eq!(f.op(hyp_map(0)), None);
        t
    }

    #[test]
    fn a_block_replaced_by_a_table_in_one_store_is_kd1() {
        let mut f = Fx::hyp();
        let block = 0x8020_0000 | 0x7c1;
        let t = hyp_block(&mut f);
        let p = f.alloc();
        f.get(t[1]);
        let store = f.store(t[1], p | 3);
        f.ev(Event::Dsb(Barrier::IshSt));
        f.ev(Event::Isb);
        let b = f.op(hyp_map(0x1000)).unwrap();
        assert_eq!(b.rule, Rule::BreakBeforeMake);
        assert_eq!((b.event, b.cause), (Some(store), None));
        assert_eq!((b.old, b.new), (Some(block), Some(p | 3)));
        assert_eq!(
            known::recognise(&b, Some(&hyp_map(0x1000)), &Config::new(Stage::Hyp))
                .unwrap()
                .id,
            "KD-1"
        );
    }

    #[test]
    fn kd1_recognised_explains_its_consequences() {
        let mut f = Fx::hyp();
        let t = hyp_block(&mut f);
        let p = f.alloc();
        // The block's reference is kept and a second one taken: the level-2
        // page ends with 1 + 2 for one counted entry.
        f.get(t[1]);
        f.store(t[1], p | 3);
        let op = hyp_map(0x1000);
        assert_eq!(f.step(ArchStep::Op(&op), true), None);
        assert_eq!(f.known, vec!["KD-1"]);
        // Later ops on that page see its leaked reference as its baseline.
        f.get(p);
        f.store(p + 8, 0x8000_1000 | HYP_PAGE);
        assert_eq!(f.op(hyp_map(0x1000)), None);
    }

    #[test]
    fn descriptor_formats() {
        let cases: [(u64, &str); 4] = [
            // Level 0 of 4K has no blocks without LPA2.
            (0x80_0000_0000 | 0x7c1, "no blocks"),
            (0x4000_1000 | 0x7c1, "not aligned"),
            (0x4000_0000 | 0x7c1 | 1 << 48, "[49:48]"),
            (0x4000_0000 | 0x7c1, ""),
        ];
        for (val, want) in cases {
            let mut f = Fx::hyp();
            let slot = if want == "no blocks" { P0 } else { P0 + 8 };
            if slot != P0 {
                let p1 = f.alloc();
                f.get(P0);
                f.store(P0, p1 | 3);
                f.get(p1);
                // Entry 0 of level 1: a 1 GiB block.
                f.store(p1, val);
            } else {
                f.get(P0);
                f.store(P0, val);
            }
            let r = f.op(hyp_map(0));
            match want {
                "" => assert_eq!(r, None),
                w => {
                    let b = r.unwrap();
                    assert_eq!(b.rule, Rule::WellFormed);
                    assert!(b.detail.contains(w), "{}", b.detail);
                }
            }
        }
        // 0b01 at level 3.
        let mut f = Fx::hyp();
        let t = f.hyp_path();
        f.get(t[2]);
        f.store(t[2], 0x8000_0000 | 0x7c1);
        let b = f.op(hyp_map(0)).unwrap();
        assert_eq!(b.rule, Rule::WellFormed);
        assert!(b.detail.contains("reserved at level 3"), "{}", b.detail);
    }

    /// Tables filled before they are linked (as a split builds its new
    /// subtree): their stores wait until the link gives them a position,
    /// then every level below it is checked, here a misaligned level-2
    /// block two levels under the linking store.
    #[test]
    fn a_subtree_filled_before_it_is_linked_is_checked_when_linked() {
        for bad in [false, true] {
            let mut f = Fx::hyp();
            let (p1, p2) = (f.alloc(), f.alloc());
            // 2 MiB block at IA 0: output address 0x4000_0000, or 4 KiB off.
            let block = 0x4000_0000 | if bad { 0x1000 } else { 0 } | 0x7c1;
            f.get(p2);
            f.store(p2, block);
            f.get(p1);
            f.store(p1, p2 | 3);
            f.get(P0);
            f.store(P0, p1 | 3);
            match f.op(hyp_map(0)) {
                None => assert!(!bad, "the misaligned block was not found"),
                Some(b) => {
                    assert!(bad, "{}", b.detail);
                    assert_eq!(b.rule, Rule::WellFormed);
                    assert!(b.detail.contains("not aligned"), "{}", b.detail);
                    assert_eq!(b.slot.map(|s| (s.pa, s.level)), Some((p2, 2)));
                }
            }
        }
    }

    /// The same three levels down: each table found below the linked one
    /// is followed, and the last level's entries are checked too.
    #[test]
    fn a_last_level_entry_filled_before_it_is_linked_is_checked_when_linked() {
        for bad in [false, true] {
            let mut f = Fx::hyp();
            let (p1, p2, p3) = (f.alloc(), f.alloc(), f.alloc());
            // A page at IA 0x1000, or the same with the 0b01 encoding,
            // reserved at level 3.
            let page = (0x8000_1000 | HYP_PAGE) & if bad { !2 } else { !0 };
            f.get(p3);
            f.store(p3 + 8, page);
            f.get(p2);
            f.store(p2, p3 | 3);
            f.get(p1);
            f.store(p1, p2 | 3);
            f.get(P0);
            f.store(P0, p1 | 3);
            match f.op(hyp_map(0x1000)) {
                None => assert!(!bad, "the reserved encoding was not found"),
                Some(b) => {
                    assert!(bad, "{}", b.detail);
                    assert_eq!(b.rule, Rule::WellFormed);
                    assert!(b.detail.contains("reserved at level 3"), "{}", b.detail);
                    assert_eq!(
                        b.slot.map(|s| (s.pa, s.level, s.ia)),
                        Some((p3 + 8, 3, 0x1000))
                    );
                }
            }
        }
    }

    /// The owner rule on a hyp table, which nothing refuses it: a hyp page
    /// counts only its valid entries, so one with none may still hold a
    /// non-zero invalid word, an annotation to the rule, which leaves with
    /// the page when its table is cut off (fails when such a page is taken
    /// for all zeros).
    #[test]
    fn a_hyp_page_with_no_valid_entry_is_still_read_for_annotations() {
        let mut f = Fx::hyp();
        f.checker.follow_owners();
        f.checker.silence();
        let t = f.hyp_path();
        assert_eq!(f.op(hyp_map(0)), None);
        assert_eq!(f.checker.owner_lost(&hyp_map(0)), None);
        // The op at VA 0 leaves a non-zero invalid word there.
        f.store(t[2], 0x4);
        assert_eq!(f.op(hyp_map(0)), None);
        assert_eq!(f.checker.owner_lost(&hyp_map(0)), None);
        // An op elsewhere cuts off the level-2 table above it.
        let elsewhere = hyp_map(0x4000_0000);
        f.store(t[0], 0);
        f.put(t[0]);
        assert_eq!(f.op(elsewhere.clone()), None);
        assert_eq!(
            f.checker.owner_lost(&elsewhere),
            Some(crate::results::What::OwnerLost {
                ia: 0,
                level: 3,
                pte: 0x4,
                range: elsewhere.range(),
            })
        );
    }

    #[test]
    fn an_entry_stored_without_its_reference() {
        let mut f = Fx::hyp();
        let t = f.hyp_path();
        f.store(t[2] + 8, 0x8000_1000 | HYP_PAGE);
        let b = f.op(hyp_map(0x1000)).unwrap();
        assert_eq!(b.rule, Rule::Refcount);
        assert!(
            b.detail
                .contains("page 0x40003000 (level 3, IA 0x0) has refcount 1, but 1 + its 1 counted entries is 2"),
            "{}",
            b.detail
        );
    }

    /// Stage-2: a level-2 block at IPA 0x4000_0000 (level-1 entry 1 of the
    /// root page P0 -> table P2; P2 entry 0 the block).
    fn s2_block() -> (Fx, u64) {
        let mut f = Fx::s2();
        let l2 = f.alloc();
        f.get(P0);
        f.store(P0 + 8, l2 | 3);
        f.get(l2);
        f.store(l2, 0x8000_0000 | S2_ATTR | 1);
        f.ev(Event::Dsb(Barrier::IshSt));
        assert_eq!(f.op(s2_map()), None);
        (f, l2)
    }

    /// Replaces the block by a table of pages, with `tlbi` as the break's
    /// invalidation; returns the index of the make store.
    fn split_block(f: &mut Fx, l2: u64, tlbi: Option<Event>) -> (usize, usize) {
        let l3 = f.alloc();
        let brk = f.store(l2, 1 << 10);
        if let Some(t) = tlbi {
            f.ev(t);
        }
        f.put(l2);
        f.get(l2);
        let make = f.store(l2, l3 | 3);
        (brk, make)
    }

    /// Maps all 512 pages of the level-3 table of `hyp_path` (PA 0x8000_0000 + i pages),
    /// then, in a new step, removes them all with no TLBI: 512 stale entries.
    /// Returns the tables and the index of each removal's store.
    fn many_stale_hyp_pages() -> (Fx, [u64; 3], Vec<usize>) {
        let mut f = Fx::hyp();
        let t = f.hyp_path();
        for i in 0..512 {
            f.get(t[2]);
            f.store(t[2] + 8 * i, (0x8000_0000 + i * PAGE) | HYP_PAGE);
        }
        f.ev(Event::Dsb(Barrier::IshSt));
        f.ev(Event::Isb);
        assert_eq!(f.op(hyp_map(0)), None);
        let removed = (0..512).map(|i| f.store(t[2] + 8 * i, 0)).collect();
        (f, t, removed)
    }

    /// More stale entries than a scan is cheap for: the conflict is found
    /// through the index, and it is the one of the slot written (not the
    /// oldest entry of the list).
    #[test]
    fn a_page_made_over_many_stale_ones_conflicts_with_its_own_slot() {
        let (mut f, t, removed) = many_stale_hyp_pages();
        // Entry 300 gets another output address: its old page may still be cached.
        let make = f.store(t[2] + 8 * 300, 0x9000_0000 | HYP_PAGE);
        let b = f.step_ending(ArchStep::Op(&hyp_map(300 * PAGE)), true, false);
        let b = b.expect("break-before-make");
        assert_eq!(b.rule, Rule::BreakBeforeMake);
        assert_eq!((b.event, b.cause), (Some(make), Some(removed[300])));
        assert_eq!(b.old, Some((0x8000_0000 + 300 * PAGE) | HYP_PAGE));
    }

    /// A level-2 block written over the 512 stale pages of the table it
    /// replaces: the index visits the block's 512 level-3 keys (one more entry,
    /// the table descriptor, is stale, so the list outnumbers them) and finds
    /// the oldest overlapping page, entry 0.
    #[test]
    fn a_block_made_over_many_stale_pages_conflicts_with_the_oldest() {
        let (mut f, t, removed) = many_stale_hyp_pages();
        let brk = f.store(t[1], 0);
        f.put(t[1]);
        f.get(t[1]);
        let make = f.store(t[1], 0x8000_0000 | 0x7c1);
        let b = f.step_ending(ArchStep::Op(&hyp_map(0)), true, false);
        let b = b.expect("break-before-make");
        assert_eq!(b.rule, Rule::BreakBeforeMake);
        assert_eq!((b.event, b.cause), (Some(make), Some(removed[0])));
        assert!(brk > removed[511]);
    }

    #[test]
    fn stage2_break_before_make_with_the_helper_is_clean() {
        let (mut f, l2) = s2_block();
        split_block(
            &mut f,
            l2,
            Some(Event::TlbFlushVmidIpa {
                ipa: 0x4000_0000,
                level: 2,
                nsh: false,
            }),
        );
        assert_eq!(f.op(s2_map()), None);
    }

    #[test]
    fn stage2_make_before_the_old_entry_is_gone() {
        for tlbi in [
            None,
            // Level hint off by one.
            Some(Event::TlbFlushVmidIpa {
                ipa: 0x4000_0000,
                level: 3,
                nsh: false,
            }),
            // Local invalidation only.
            Some(Event::TlbFlushVmidIpa {
                ipa: 0x4000_0000,
                level: 2,
                nsh: true,
            }),
            // Another address.
            Some(Event::TlbFlushVmidIpa {
                ipa: 0x4020_0000,
                level: 2,
                nsh: false,
            }),
        ] {
            let (mut f, l2) = s2_block();
            let (brk, make) = split_block(&mut f, l2, tlbi);
            let b = f.op(s2_map()).unwrap();
            assert_eq!(b.rule, Rule::BreakBeforeMake, "{tlbi:?}");
            assert_eq!((b.event, b.cause), (Some(make), Some(brk)));
            assert_eq!(b.old, Some(0x8000_0000 | S2_ATTR | 1));
        }
        // A range or whole-VMID invalidation covers it.
        for tlbi in [
            Event::TlbFlushVmidRange {
                start: 0x401f_f000,
                pages: 2,
            },
            Event::TlbFlushVmid,
        ] {
            let (mut f, l2) = s2_block();
            split_block(&mut f, l2, Some(tlbi));
            assert_eq!(f.op(s2_map()), None, "{tlbi:?}");
        }
    }

    #[test]
    fn deferred_unmap_needs_its_range_to_cover_every_page() {
        for (pages, clean) in [(2, true), (1, false)] {
            let mut f = Fx::s2();
            let l2 = f.alloc();
            let l3 = f.alloc();
            f.get(P0);
            f.store(P0, l2 | 3);
            f.get(l2);
            f.store(l2, l3 | 3);
            for i in 0..2 {
                f.get(l3);
                f.store(l3 + 8 * i, (0x8000_0000 + PAGE * i) | S2_ATTR | 3);
            }
            assert_eq!(f.op(s2_map()), None);
            for i in 0..2 {
                f.store(l3 + 8 * i, 0);
                f.put(l3);
            }
            f.ev(Event::TlbFlushVmidRange { start: 0, pages });
            let b = f.op(Op::S2Unmap {
                addr: 0,
                size: 2 * PAGE,
            });
            assert_eq!(b.is_none(), clean, "{b:?}");
            if let Some(b) = b {
                assert_eq!(b.rule, Rule::StaleTlb);
                assert_eq!(b.slot.unwrap().ia, PAGE);
            }
        }
    }

    #[test]
    fn write_protection_is_left_to_the_caller_only_by_wrprotect() {
        let write_protect = |f: &mut Fx, l2: u64| {
            f.store(l2, 0x8000_0000 | (S2_ATTR & !(1 << 7)) | 1);
        };
        let (mut f, l2) = s2_block();
        write_protect(&mut f, l2);
        let wrprotect = Op::S2Wrprotect {
            addr: 0x4000_0000,
            size: PAGE,
        };
        assert_eq!(f.op(wrprotect), None);
        let (mut f, l2) = s2_block();
        write_protect(&mut f, l2);
        let b = f.op(s2_map()).unwrap();
        assert_eq!(b.rule, Rule::StaleTlb);
        assert!(b.detail.contains("write taken away"), "{}", b.detail);
    }

    #[test]
    fn an_owner_annotation_with_the_valid_bit() {
        let (mut f, l2) = s2_block();
        let (_, make) = split_block(&mut f, l2, Some(Event::TlbFlushVmid));
        assert_eq!(f.op(s2_map()), None);
        let l3 = f.arena.read(l2).unwrap() & !0xfff;
        f.get(l3);
        // Owner id 1 in bits [9:2], with the valid bit set.
        // Owner id 1 with the valid bit: also the reserved 0b01 at level 3, but the
        // annotation is what went wrong.
        let bad = f.store(l3, 1 << 2 | 1);
        let b = f
            .op(Op::S2SetOwner {
                addr: 0x4000_0000,
                size: PAGE,
                mc: Some(1),
                owner_id: 1,
            })
            .unwrap();
        assert!(make < 16);
        assert_eq!(b.rule, Rule::AnnotationValid);
        assert_eq!(b.event, Some(bad));
    }

    #[test]
    fn an_entry_left_locked() {
        let (mut f, l2) = s2_block();
        f.store(l2, 1 << 10);
        f.put(l2);
        f.ev(Event::TlbFlushVmid);
        let b = f.op(s2_map()).unwrap();
        assert_eq!(b.rule, Rule::WellFormed);
        assert!(b.detail.contains("still LOCKED"), "{}", b.detail);
    }

    /// A checker dropped with an entry still LOCKED gives its lists back
    /// empty: the next run's checker (on the same thread, which reuses
    /// them) starts with no LOCKED slot, stale entry, pending TLBI or
    /// touched page of the run before.
    #[test]
    fn the_next_checker_starts_with_nothing_of_the_last_run() {
        let (mut f, l2) = s2_block();
        f.store(l2, 1 << 10);
        f.put(l2);
        f.ev(Event::TlbFlushVmid);
        assert_eq!(f.op(s2_map()).map(|b| b.rule), Some(Rule::WellFormed));
        assert_eq!(f.checker.locked.first(), Some(l2), "the slot stays LOCKED");
        drop(f);
        let f = Fx::s2();
        let c = &f.checker;
        assert_eq!(c.locked.first(), None);
        assert!(c.stale.is_empty() && c.index.is_empty() && c.chain.is_empty());
        assert!(c.hit.is_empty() && c.stale_tables.is_empty() && c.pending.is_empty());
        assert!(c.touched.is_empty() && c.lazy.is_empty());
    }

    #[test]
    fn destroy_needs_no_invalidation() {
        let (mut f, l2) = s2_block();
        f.put(l2);
        f.put(P0);
        f.put(l2);
        f.arena.free_pages_exact(P0, 2 * PAGE, &mut f.trace);
        assert_eq!(f.step(ArchStep::Destroy, false), None);
    }
}
