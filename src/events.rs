// SPDX-License-Identifier: GPL-2.0-only
//! The side effects both implementations report, in program order.
//!
//! One enum serves both sides: the C stubs and arena callbacks produce it for
//! pgtable.c, and the Rust environment produces it for rust-pgtable. The
//! executor compares the two lists after every operation.

use core::fmt;

/// How a descriptor was written (the memory-ordering contract matters on real hardware).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StoreKind {
    /// `WRITE_ONCE`: a single-copy-atomic, unordered store.
    WriteOnce,
    /// `smp_store_release`: a store-release (`STLR`).
    Release,
    /// A successful `cmpxchg` (it expected the event's `old`).
    Cmpxchg,
}

/// A single-copy-atomic descriptor access (the kernel's accessor), the
/// points at which another agent's write can be observed. The numbers are
/// the C side's `enum kpd_access_kind`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Access {
    /// `READ_ONCE`.
    ReadOnce = 0,
    /// `WRITE_ONCE`.
    WriteOnce = 1,
    /// `smp_store_release`.
    Release = 2,
    /// `cmpxchg` (whether it succeeds or not).
    Cmpxchg = 3,
}

impl Access {
    /// Decodes the C side's `enum kpd_access_kind`.
    pub fn from_c(v: u32) -> Access {
        match v {
            0 => Access::ReadOnce,
            1 => Access::WriteOnce,
            2 => Access::Release,
            _ => Access::Cmpxchg,
        }
    }
}

/// `DSB` option: shareability domain and access types.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Barrier {
    Sy,
    St,
    Ld,
    Ish,
    IshSt,
    IshLd,
    Nsh,
    NshSt,
    NshLd,
    Osh,
    OshSt,
    OshLd,
}

impl Barrier {
    /// Decodes the C side's `enum kpd_barrier`.
    pub fn from_c(v: u32) -> Option<Barrier> {
        use Barrier::*;
        [
            Sy, St, Ld, Ish, IshSt, IshLd, Nsh, NshSt, NshLd, Osh, OshSt, OshLd,
        ]
        .get(v as usize)
        .copied()
    }
}

/// EL2 stage-1 TLBI by VA.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TlbiHypOp {
    /// TLBI VAE2IS: all levels.
    Vae2is,
    /// TLBI VALE2IS: last level only.
    Vale2is,
}

/// Where a page allocation was served from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AllocSource {
    /// `zalloc_page(mc)` with a memcache.
    Memcache,
    /// `zalloc_page(NULL)` served from the global pool (hyp stage-1).
    Pool,
    /// `zalloc_page(NULL)` where NULL means "no cache": always fails.
    NoCache,
    /// A pKVM guest's `vm->pool`: a table page the guest's table freed
    /// earlier, taken before the memcache (nvhe/mem_protect.c
    /// `guest_s2_zalloc_page`).
    VmPool,
    /// Kernel context, empty memcache: `kvm_mmu_memory_cache_alloc` falls
    /// back to a `GFP_ATOMIC` allocation (after its WARN, see
    /// [`CallerWarn::EmptyMemcache`]).
    Atomic,
}

/// A WARN in the caller's code around pgtable.c (not in pgtable.c itself).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CallerWarn {
    /// virt/kvm/kvm_main.c `kvm_mmu_memory_cache_alloc`: `WARN_ON(!mc->nobjs)`
    /// (an empty cache), after which it allocates anyway.
    EmptyMemcache,
}

/// A `BUG_ON` in the caller's code: the kernel stops there.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CallerBug {
    /// `kvm_mmu_memory_cache_alloc`: `BUG_ON(!p)` after the `GFP_ATOMIC`
    /// fallback failed too.
    MemcacheAllocFailed,
}

/// A `kvm_pgtable_mm_ops` hook a caller may leave NULL.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Hook {
    PageCount,
    DcacheCleanInvalPoc,
    IcacheInvalPou,
    FreeUnlinkedTable,
}

impl Hook {
    /// The member's name in `struct kvm_pgtable_mm_ops`.
    pub fn name(self) -> &'static str {
        match self {
            Hook::PageCount => "page_count",
            Hook::DcacheCleanInvalPoc => "dcache_clean_inval_poc",
            Hook::IcacheInvalPou => "icache_inval_pou",
            Hook::FreeUnlinkedTable => "free_unlinked_table",
        }
    }
}

/// Source location of a WARN. C reports file:line of pgtable.c, Rust reports
/// its own file:line, so locations can never match.
///
/// This is the ONE normalised field of the comparison (named in the brief):
/// two locations always compare equal. Everything else about a WARN (that it
/// fired, in which order, once or not) is compared.
#[derive(Clone, Copy, Debug)]
pub struct WarnLoc {
    pub file: &'static str,
    pub line: u32,
}

impl PartialEq for WarnLoc {
    fn eq(&self, _other: &WarnLoc) -> bool {
        true
    }
}
impl Eq for WarnLoc {}

impl fmt::Display for WarnLoc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file, self.line)
    }
}

/// The mm_ops operation (or the descriptor store) a [`Misuse`] was found in.
///
/// A one-byte name rather than the string itself: a misuse is an event, and
/// the largest event sets the size of every event of every trace (32 bytes
/// with this, 40 with a string slice), which each pass over a trace reads.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub enum MmOp {
    GetPage,
    PutPage,
    PageCount,
    PhysToVirt,
    FreePagesExact,
    /// A descriptor store (not an mm_ops call).
    Store,
}

impl MmOp {
    /// The kernel's name of the operation.
    pub fn name(self) -> &'static str {
        match self {
            MmOp::GetPage => "get_page",
            MmOp::PutPage => "put_page",
            MmOp::PageCount => "page_count",
            MmOp::PhysToVirt => "phys_to_virt",
            MmOp::FreePagesExact => "free_pages_exact",
            MmOp::Store => "store",
        }
    }
}

/// Reports show the kernel's name, quoted.
impl fmt::Debug for MmOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.name())
    }
}

/// A breach of the mm_ops contract, reported instead of crashing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Misuse {
    /// An address outside the arena was passed to a page operation.
    ForeignAddress { op: MmOp, pa: u64 },
    /// get_page/put_page/page_count on a page that is not allocated.
    FreePage { op: MmOp, pa: u64 },
    /// free_pages_exact of a range that is not exactly one live exact allocation.
    BadFreeExact { pa: u64, size: u64 },
    /// free_pages_exact of a page whose refcount is not 1 (entries still counted).
    FreeWithReferences { pa: u64, count: u32 },
    /// A descriptor store outside table memory.
    StoreOutsideTables { pa: u64 },
    /// A page of an unlinked table waiting for its RCU grace period was
    /// used (a store into it, or a page operation on it) before the RCU
    /// callback freed it: nothing but a walker that was already inside it
    /// may touch it (kernel-context `free_unlinked_table`, mmu.c).
    UnlinkedTableUsed { op: MmOp, pa: u64 },
}

/// One observable side effect.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// A descriptor store at `pa`: `old` was replaced by `val`.
    Store {
        pa: u64,
        old: u64,
        val: u64,
        kind: StoreKind,
    },
    /// `TLBI VAE2IS/VALE2IS` with its register operand and TTL level hint.
    TlbiHyp {
        op: TlbiHypOp,
        operand: u64,
        level: i32,
    },
    /// The DSB ISH (plus errata handling) completing hyp TLB maintenance.
    TlbiSyncS1IshHyp,
    /// `__kvm_tlb_flush_vmid`: whole VMID.
    TlbFlushVmid,
    /// `__kvm_tlb_flush_vmid_ipa[_nsh]`: one IPA with a level hint.
    TlbFlushVmidIpa {
        ipa: u64,
        level: i32,
        nsh: bool,
    },
    /// `__kvm_tlb_flush_vmid_range`: `pages` pages from `start`.
    TlbFlushVmidRange {
        start: u64,
        pages: u64,
    },
    Dsb(Barrier),
    Isb,
    /// `dcache_clean_inval_poc` of `size` bytes at `pa`.
    DcacheCleanInvalPoc {
        pa: u64,
        size: u64,
    },
    /// `icache_inval_pou` of `size` bytes at `pa`.
    IcacheInvalPou {
        pa: u64,
        size: u64,
    },
    /// `zalloc_page`; `pa` is None when it failed.
    ZallocPage {
        source: AllocSource,
        pa: Option<u64>,
    },
    /// `zalloc_pages_exact`; `pa` is None when it failed.
    ZallocPagesExact {
        size: u64,
        pa: Option<u64>,
    },
    FreePagesExact {
        pa: u64,
        size: u64,
    },
    /// `free_unlinked_table` mm op (the side then frees the table itself).
    FreeUnlinkedTable {
        pa: u64,
        level: i8,
    },
    /// `get_page` on the page holding `pa`; `count` is the new refcount.
    GetPage {
        page: u64,
        count: u32,
    },
    /// `put_page`; `count` is the new refcount (0 frees the page).
    PutPage {
        page: u64,
        count: u32,
    },
    /// The harness's force_pte_cb was asked and answered.
    ForcePteCb {
        addr: u64,
        end: u64,
        prot: u64,
        answer: bool,
    },
    /// rcu_read_lock / rcu_read_unlock (kernel context).
    Rcu {
        lock: bool,
    },
    /// A WARN_ON / WARN_ON_ONCE fired. Location is normalised, see [`WarnLoc`].
    Warn {
        once: bool,
        loc: WarnLoc,
    },
    /// The arena detected a contract breach.
    Misuse(Misuse),
    /// A WARN in the caller's code (e.g. an empty kernel memcache).
    CallerWarn(CallerWarn),
    /// A `BUG_ON` in the caller's code: the machine stops here.
    CallerBug(CallerBug),
    /// A call through an mm_ops hook the caller leaves NULL: at EL2 a
    /// hypervisor panic, in the kernel an oops. The machine stops here.
    AbsentHook(Hook),
    /// The RCU callback of a deferred `free_unlinked_table` runs (a grace
    /// period has ended); the table's teardown follows.
    RcuCallback {
        pa: u64,
        level: i8,
    },
    /// Another agent (another CPU's walker, or the hardware) wrote `new`
    /// over `old` at `pa`, just before the op's descriptor access number
    /// `at`, of kind `access` (a scheduled race, `crate::race`). What else
    /// that agent did (its reference on the table page, a table it
    /// allocated or unlinked) is implied by the two values.
    Interference {
        at: u32,
        access: Access,
        pa: u64,
        old: u64,
        new: u64,
    },
    /// The other walker whose break-before-make left `pa` locked publishes
    /// `new` over `old` (the lock, unless someone overwrote it) at the end
    /// of the op.
    Published {
        pa: u64,
        old: u64,
        new: u64,
    },
    /// The op's single-copy-atomic descriptor accesses: how many, and a
    /// digest of their sequence (kind and address of each, in order).
    /// Both sides must make the same ones: a race's access index means the
    /// same point of both.
    Accesses {
        count: u64,
        digest: u64,
    },
}

/// The ordered events of one side for one operation.
pub type Trace = Vec<Event>;

impl Event {
    /// Whether the event changes table memory: a descriptor store, a
    /// `put_page` or an unlinked table freed.
    #[inline(always)]
    pub fn changes_memory(&self) -> bool {
        matches!(
            self,
            Event::Store { .. } | Event::PutPage { .. } | Event::FreeUnlinkedTable { .. }
        )
    }

    /// Whether the event is a finding by itself or may stop the machine: a
    /// misuse of the environment, a WARN, a caller's BUG or a NULL hook
    /// (whether one stops it depends on the caller:
    /// [`crate::caller::CallerProfile::is_fatal`]).
    #[inline(always)]
    pub fn is_alarm(&self) -> bool {
        matches!(
            self,
            Event::Misuse(_) | Event::Warn { .. } | Event::CallerBug(_) | Event::AbsentHook(_)
        )
    }
}

/// What the harness looks for in a step's trace before it compares and
/// checks it ([`crate::caller::CallerProfile::cut_at_fatal`]), noted while
/// the events are recorded: a trace with no alarm need not be read for it,
/// and one with an alarm is read from its first alarm on.
///
/// ```
/// use kvm_pgtable_diff::events::{Alarm, CallerBug, Event, Marks};
/// let put = Event::PutPage { page: 0x4000_0000, count: 1 };
/// let m = Marks::of(&[Event::Isb, put]);
/// assert_eq!(m, Marks { changes_memory: true, alarm: None });
/// let bug = Event::CallerBug(CallerBug::MemcacheAllocFailed);
/// let m = Marks::of(&[Event::Isb, bug, put]);
/// let alarm = Alarm { at: 1, after_change: false };
/// assert_eq!(m, Marks { changes_memory: true, alarm: Some(alarm) });
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Marks {
    /// Some event changes table memory ([`Event::changes_memory`]).
    pub changes_memory: bool,
    /// The first alarm ([`Event::is_alarm`]), if any.
    pub alarm: Option<Alarm>,
}

/// Where a trace's first alarm is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Alarm {
    /// Its index in the trace.
    pub at: usize,
    /// Some event before it changes table memory.
    pub after_change: bool,
}

impl Marks {
    /// Takes note of `e`, event `i` of the trace.
    #[inline(always)]
    pub fn note(&mut self, i: usize, e: &Event) {
        self.changes_memory |= e.changes_memory();
        if e.is_alarm() {
            self.note_alarm(i);
        }
    }

    #[cold]
    fn note_alarm(&mut self, at: usize) {
        // The alarm itself changes no memory: what changed did before it.
        self.alarm.get_or_insert(Alarm {
            at,
            after_change: self.changes_memory,
        });
    }

    /// The marks of `trace`'s events.
    pub fn of(trace: &[Event]) -> Marks {
        let mut m = Marks::default();
        trace.iter().enumerate().for_each(|(i, e)| m.note(i, e));
        m
    }

    /// The marks of two traces one after the other, this one of `len`
    /// events.
    pub fn join(self, len: usize, other: Marks) -> Marks {
        Marks {
            changes_memory: self.changes_memory | other.changes_memory,
            alarm: self.alarm.or(other.alarm.map(|a| Alarm {
                at: a.at + len,
                after_change: self.changes_memory | a.after_change,
            })),
        }
    }
}

/// A trace and the [`Marks`] of its events, kept as they are pushed: the C
/// side's recording, whose traces are the first of a pair and then need no
/// pass of their own before the oracles.
#[derive(Debug)]
pub struct MarkedTrace {
    pub events: Trace,
    pub marks: Marks,
}

impl MarkedTrace {
    /// An empty recording, on a spare trace's capacity.
    pub fn new() -> MarkedTrace {
        MarkedTrace {
            events: fresh_trace(),
            marks: Marks::default(),
        }
    }

    /// The events and their marks, leaving an empty recording on a spare
    /// trace's capacity.
    pub fn take(&mut self) -> (Trace, Marks) {
        (
            std::mem::replace(&mut self.events, fresh_trace()),
            std::mem::take(&mut self.marks),
        )
    }

    /// Moves the events to the end of `into`, keeping the recording's
    /// capacity, and returns their marks.
    pub fn append_to(&mut self, into: &mut Trace) -> Marks {
        into.append(&mut self.events);
        std::mem::take(&mut self.marks)
    }
}

impl Default for MarkedTrace {
    fn default() -> MarkedTrace {
        MarkedTrace::new()
    }
}

/// The recording goes back to the pool of spare traces: it holds the
/// capacity the largest step grew ([`fresh_trace`]).
impl Drop for MarkedTrace {
    fn drop(&mut self) {
        recycle(std::mem::take(&mut self.events));
    }
}

impl Record for MarkedTrace {
    #[inline(always)]
    fn push(&mut self, e: Event) {
        self.marks.note(self.events.len(), &e);
        self.events.push(e);
    }
}

/// Whether two traces hold the same events in the same order: `a == b`,
/// written out for the kinds nearly every trace is made of.
///
/// Every op of every input compares its two traces whole, and a trace can
/// hold hundreds of thousands of events. The derived comparison dispatches
/// on each event's kind and then tests field after field; in the fuzz
/// builds, where every branch of the harness also counts coverage, it was
/// not inlined and came to about 9% of a steady-state stage2 profile. A
/// store, a `get_page` or a `put_page` is compared here with one test of
/// both kinds and one of all its fields at once.
pub fn same_trace(a: &[Event], b: &[Event]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| same_event(x, y))
}

/// Whether two events are the same ([`same_trace`] of one event).
#[inline(always)]
pub fn same_event(x: &Event, y: &Event) -> bool {
    match (x, y) {
        (
            &Event::Store { pa, old, val, kind },
            &Event::Store {
                pa: pa2,
                old: old2,
                val: val2,
                kind: kind2,
            },
        ) => (pa ^ pa2) | (old ^ old2) | (val ^ val2) == 0 && kind == kind2,
        (
            &Event::GetPage { page, count },
            &Event::GetPage {
                page: page2,
                count: count2,
            },
        )
        | (
            &Event::PutPage { page, count },
            &Event::PutPage {
                page: page2,
                count: count2,
            },
        ) => (page ^ page2) | u64::from(count ^ count2) == 0,
        _ => x == y,
    }
}

thread_local! {
    static SPARE: std::cell::RefCell<Vec<Trace>> = const { std::cell::RefCell::new(Vec::new()) };
    static SPARE_VISITS: std::cell::RefCell<Vec<Vec<Visit>>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

/// Spare traces kept for reuse: more than the traces one op has in flight.
const SPARES: usize = 8;

/// Spare visit logs kept for reuse: a walk op has one per side in flight.
const SPARE_VISIT_LOGS: usize = 2;

type Spares<T> = std::thread::LocalKey<std::cell::RefCell<Vec<Vec<T>>>>;

/// The spare of `pool` with the largest capacity, taken out of it.
fn take_largest<T: 'static>(pool: &'static Spares<T>) -> Option<Vec<T>> {
    pool.with(|s| {
        let mut s = s.borrow_mut();
        let i = (0..s.len()).max_by_key(|&i| s[i].capacity())?;
        Some(s.swap_remove(i))
    })
}

/// Gives `v` back to `pool`, which keeps at most `max` spares: when full,
/// the smallest of them all is dropped, so that a large vector is never the
/// one given back to the allocator. A vector that never allocated is not
/// kept.
fn give_back<T: 'static>(pool: &'static Spares<T>, mut v: Vec<T>, max: usize) {
    if v.capacity() == 0 {
        return;
    }
    v.clear();
    pool.with(|s| {
        let mut s = s.borrow_mut();
        if s.len() < max {
            s.push(v);
        } else if let Some(i) = (0..s.len()).min_by_key(|&i| s[i].capacity()) {
            if s[i].capacity() < v.capacity() {
                s[i] = v;
            }
        }
    });
}

/// An empty trace, reusing the capacity of a recycled one: every op of
/// every fuzz input makes two, and regrowing them from empty was a
/// measurable share of the diff's cost.
///
/// The largest spare: an op that records hundreds of thousands of events
/// (a PTRS_PER_PTE+1 split) then finds the capacity the last such op grew.
/// Regrowing it cost more than copying: fresh memory from the allocator is
/// fresh pages from the kernel, and page faults were about 14% of a
/// steady-state stage2 profile.
pub fn fresh_trace() -> Trace {
    take_largest(&SPARE).unwrap_or_else(|| Vec::with_capacity(64))
}

/// How many recycled traces wait for reuse on this thread.
pub fn spare_traces() -> usize {
    SPARE.with(|s| s.borrow().len())
}

/// Hands a trace back for reuse once it has been compared.
///
/// With [`SPARES`] waiting already, the smallest of them all is dropped, so
/// that a large trace is never the one given back to the allocator. A trace
/// that never allocated is not kept.
pub fn recycle(t: Trace) {
    give_back(&SPARE, t, SPARES);
}

/// An empty visit log for a walk op's visitor, reusing the capacity of a
/// recycled one. A walk over a large range visits every entry of it, and
/// the log regrown from empty on every run (each growth a fresh allocation
/// and a copy, fresh pages from the kernel above glibc's and ASan's
/// thresholds) was a third of the walk target's corpus replay with ASan.
pub fn fresh_visits() -> Vec<Visit> {
    take_largest(&SPARE_VISITS).unwrap_or_default()
}

/// Hands a walk op's visit log back for reuse once it has been compared.
pub fn recycle_visits(v: Vec<Visit>) {
    give_back(&SPARE_VISITS, v, SPARE_VISIT_LOGS);
}

/// Appends `from` to `into` and hands whichever vector is left over back
/// for reuse (dropping it would drain the spares, and every op would then
/// regrow its traces from empty).
pub fn append(into: &mut Trace, mut from: Trace) {
    if into.is_empty() && into.capacity() < from.capacity() {
        std::mem::swap(into, &mut from);
    } else {
        into.extend_from_slice(&from);
    }
    if from.capacity() > 0 {
        recycle(from);
    }
}

/// Where a side's environment puts each event it records: a [`Trace`], or
/// a [`Recorder`], which can compare them with another side's as they come.
pub trait Record {
    fn push(&mut self, e: Event);
}

impl Record for Trace {
    #[inline(always)]
    fn push(&mut self, e: Event) {
        Vec::push(self, e);
    }
}

/// A side's recording of its steps, which can also compare a step's events
/// with the first side's trace of the same step as they are recorded
/// ([`Recorder::compare_with`]): the second side of a pair.
///
/// Both sides nearly always record the same events, and a step's trace can
/// hold hundreds of thousands of them. Compared as they come, the events
/// that agree are never written, and the first side's trace is read once,
/// in order, instead of storing a second trace and reading both later. The
/// first event that differs ends the comparison: the agreeing prefix is
/// copied from the first side's trace and the rest is recorded, so a step
/// that differs still has its whole trace for the report.
///
/// ```
/// use kvm_pgtable_diff::events::{Event, Record, Recorder};
///
/// let first = vec![Event::Isb, Event::TlbFlushVmid];
/// let mut r = Recorder::new();
/// r.compare_with(first.clone());
/// r.push(Event::Isb);
/// r.push(Event::TlbFlushVmid);
/// assert_eq!(r.end_compare(), (first.clone(), None));
///
/// r.compare_with(first.clone());
/// r.push(Event::Isb);
/// r.push(Event::Isb);
/// assert_eq!(r.end_compare(), (first, Some(vec![Event::Isb, Event::Isb])));
/// ```
#[derive(Debug)]
pub struct Recorder {
    /// The events recorded: all of them, or during a comparison those from
    /// the first that differs (with the agreeing prefix before it).
    trace: Trace,
    /// During a comparison, the first side's trace of the step.
    first: Trace,
    /// A comparison is under way: [`Recorder::take`] leaves the step's
    /// events for [`Recorder::end_compare`].
    comparing: bool,
    /// Every event so far agreed with `first` (and none is in `trace`).
    agreeing: bool,
    /// How many events agreed.
    agreed: usize,
}

impl Record for Recorder {
    #[inline(always)]
    fn push(&mut self, e: Event) {
        if self.agreeing {
            if let Some(x) = self.first.get(self.agreed) {
                if same_event(x, &e) {
                    self.agreed += 1;
                    return;
                }
            }
            self.differ();
        }
        self.trace.push(e);
    }
}

impl Drop for Recorder {
    /// The recording goes back to the pool of spare traces: it holds the
    /// capacity the largest step grew ([`fresh_trace`]).
    fn drop(&mut self) {
        recycle(std::mem::take(&mut self.trace));
    }
}

impl Default for Recorder {
    fn default() -> Recorder {
        Recorder::new()
    }
}

impl Recorder {
    /// An empty recording, on a spare trace's capacity.
    pub fn new() -> Recorder {
        Recorder {
            trace: fresh_trace(),
            first: Trace::new(),
            comparing: false,
            agreeing: false,
            agreed: 0,
        }
    }

    /// The events recorded since the last take, or none during a
    /// comparison (they wait for [`Recorder::end_compare`]).
    pub fn take(&mut self) -> Trace {
        match self.comparing {
            true => Trace::new(),
            false => std::mem::replace(&mut self.trace, fresh_trace()),
        }
    }

    /// Moves the events recorded since the last take to the end of `into`,
    /// keeping the recording's capacity (none during a comparison).
    pub fn append_to(&mut self, into: &mut Trace) {
        if !self.comparing {
            into.append(&mut self.trace);
        }
    }

    /// Compares the events of the next step with `first`, the first side's
    /// trace of the same step, until [`Recorder::end_compare`].
    pub fn compare_with(&mut self, first: Trace) {
        debug_assert!(self.trace.is_empty() && !self.comparing);
        self.first = first;
        self.comparing = true;
        self.agreeing = true;
        self.agreed = 0;
    }

    /// Ends the comparison: gives the first side's trace back, with this
    /// side's trace of the step when the two differ (None when it was the
    /// first side's exactly).
    pub fn end_compare(&mut self) -> (Trace, Option<Trace>) {
        let same = self.agreeing && self.agreed == self.first.len();
        if self.agreeing && !same {
            // A strict prefix of the first side's trace.
            self.differ();
        }
        self.comparing = false;
        self.agreeing = false;
        let own = (!same).then(|| std::mem::replace(&mut self.trace, fresh_trace()));
        (std::mem::take(&mut self.first), own)
    }

    /// The first event that differs: the recording from here on holds the
    /// agreeing prefix, then every event.
    #[cold]
    fn differ(&mut self) {
        self.agreeing = false;
        self.trace.extend_from_slice(&self.first[..self.agreed]);
    }
}

/// One visitor callback of a walk, as either side reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Visit {
    /// The visit kind: `KVM_PGTABLE_WALK_LEAF`, `_TABLE_PRE` or `_TABLE_POST`.
    pub kind: u32,
    /// PA of the descriptor visited.
    pub ptep: u64,
    /// The descriptor's value when visited.
    pub old: u64,
    pub start: u64,
    pub addr: u64,
    pub end: u64,
    pub level: i8,
    /// The walk's flags as the visitor sees them.
    pub flags: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The widest events (a store: three words and its kind; a race's
    /// interference; a misuse: an address and a one-byte operation) fit in
    /// four words with the kind's tag: an event that does not makes every
    /// event of every trace larger.
    #[test]
    fn an_event_is_four_words() {
        assert_eq!(std::mem::size_of::<Event>(), 32);
        assert_eq!(std::mem::size_of::<Misuse>(), 24);
    }

    #[test]
    fn a_misuse_shows_the_kernel_name_of_its_operation() {
        let m = Misuse::FreePage {
            op: MmOp::PutPage,
            pa: 0x4000,
        };
        assert_eq!(format!("{m:x?}"), "FreePage { op: \"put_page\", pa: 4000 }");
    }

    /// What a comparison leaves, case by case (expected by hand): nothing
    /// when the second side's events are the first side's exactly, else
    /// the second side's whole trace, whether it differs inside, stops
    /// early or goes on longer.
    #[test]
    fn a_comparison_keeps_the_whole_second_trace_only_when_it_differs() {
        let (a, b, c) = (
            Event::Isb,
            Event::TlbFlushVmid,
            Event::Store {
                pa: 0x1000,
                old: 0,
                val: 3,
                kind: StoreKind::Release,
            },
        );
        let first = vec![a, b, c, a];
        let cases: [(&[Event], Option<Vec<Event>>); 6] = [
            (&[a, b, c, a], None),
            (&[a, b, b, a], Some(vec![a, b, b, a])),
            (&[a, b], Some(vec![a, b])),
            (&[a, b, c, a, c], Some(vec![a, b, c, a, c])),
            (&[], Some(vec![])),
            (&[c], Some(vec![c])),
        ];
        let mut r = Recorder::new();
        for (second, expected) in cases {
            r.compare_with(first.clone());
            for &e in second {
                r.push(e);
            }
            let (back, own) = r.end_compare();
            assert_eq!(back, first, "the first trace comes back whole");
            assert_eq!(own, expected, "second side {second:?}");
        }
        // The same store with another value is another event.
        r.compare_with(vec![c]);
        let Event::Store { pa, old, kind, .. } = c else {
            unreachable!()
        };
        r.push(Event::Store {
            pa,
            old,
            val: 7,
            kind,
        });
        assert!(r.end_compare().1.is_some());
    }

    /// During a comparison the step's events stay in the recorder: a side
    /// that takes its trace piece by piece (an op, then its RCU callbacks)
    /// gets empty pieces, and the comparison sees every event in order.
    /// Outside one, take and append hand the events out as a trace does.
    #[test]
    fn a_comparison_keeps_the_events_of_the_whole_step() {
        let mut r = Recorder::new();
        r.compare_with(vec![Event::Isb, Event::TlbFlushVmid]);
        r.push(Event::Isb);
        assert!(r.take().is_empty());
        let mut piece = Trace::new();
        r.append_to(&mut piece);
        assert!(piece.is_empty());
        r.push(Event::TlbFlushVmid);
        assert_eq!(r.end_compare().1, None);
        r.push(Event::Isb);
        assert_eq!(r.take(), vec![Event::Isb]);
        r.push(Event::TlbFlushVmid);
        r.append_to(&mut piece);
        assert_eq!(piece, vec![Event::TlbFlushVmid]);
        assert!(r.take().is_empty());
    }

    /// The pool hands out its largest spare and, when full, drops the
    /// smallest trace (the one given back or one waiting), so that a large
    /// op finds the capacity an earlier large op grew.
    #[test]
    fn the_largest_spare_goes_out_first_and_the_smallest_is_dropped() {
        // The pool is per thread: empty it first.
        while spare_traces() > 0 {
            drop(fresh_trace());
        }
        for cap in [10, 1000, 100] {
            recycle(Vec::with_capacity(cap));
        }
        let first = fresh_trace();
        assert!(first.capacity() >= 1000, "{}", first.capacity());
        let second = fresh_trace();
        assert!(
            (100..1000).contains(&second.capacity()),
            "{}",
            second.capacity()
        );
        recycle(first);
        recycle(second);
        // Full: SPARES traces with the two above among them.
        while spare_traces() < SPARES {
            recycle(Vec::with_capacity(20));
        }
        // A small one given back is dropped, a large one replaces the smallest.
        recycle(Vec::with_capacity(1));
        assert_eq!(spare_traces(), SPARES);
        recycle(Vec::with_capacity(5000));
        assert_eq!(spare_traces(), SPARES);
        let mut caps: Vec<usize> = (0..SPARES).map(|_| fresh_trace().capacity()).collect();
        caps.sort_unstable();
        assert!(
            caps[SPARES - 1] >= 5000 && caps[SPARES - 2] >= 1000,
            "{caps:?}"
        );
        assert!(
            caps.iter().all(|&c| c >= 20),
            "the smallest stayed: {caps:?}"
        );
    }

    /// A walk's visit log comes back empty, with the capacity the largest
    /// walk grew; the pool keeps one per side and no more.
    #[test]
    fn a_visit_log_comes_back_empty_with_its_capacity() {
        while SPARE_VISITS.with(|s| s.borrow().len()) > 0 {
            drop(fresh_visits());
        }
        let mut big = Vec::with_capacity(4096);
        big.push(Visit {
            kind: 1,
            ptep: 0x1000,
            old: 0,
            start: 0,
            addr: 0,
            end: 0x1000,
            level: 3,
            flags: 1,
        });
        recycle_visits(big);
        for cap in [8, 16] {
            recycle_visits(Vec::with_capacity(cap));
        }
        assert_eq!(SPARE_VISITS.with(|s| s.borrow().len()), SPARE_VISIT_LOGS);
        let v = fresh_visits();
        assert!(v.is_empty() && v.capacity() >= 4096, "{}", v.capacity());
        // The 8 was dropped when the 16 came: what is left is the 16.
        assert!(fresh_visits().capacity() >= 16);
        assert_eq!(fresh_visits().capacity(), 0);
    }

    /// Joined marks place the first alarm in the joined trace and see
    /// whether memory changed before it, whichever piece holds them
    /// (expected by hand for each pair of pieces).
    #[test]
    fn joined_marks_find_the_first_alarm_of_the_whole_trace() {
        let bug = Event::CallerBug(CallerBug::MemcacheAllocFailed);
        let put = Event::PutPage {
            page: 0x4000,
            count: 0,
        };
        let alarm = |at, after_change| Some(Alarm { at, after_change });
        // (first piece, second piece, changes memory, first alarm)
        type Case<'a> = (&'a [Event], &'a [Event], bool, Option<Alarm>);
        let cases: [Case<'_>; 6] = [
            (&[Event::Isb, Event::Isb], &[put], true, None),
            (
                &[Event::Isb, Event::Isb],
                &[Event::Isb, bug],
                false,
                alarm(3, false),
            ),
            (&[put, Event::Isb], &[bug, put], true, alarm(2, true)),
            (&[Event::Isb], &[put, bug], true, alarm(2, true)),
            (&[Event::Isb, bug], &[put, bug], true, alarm(1, false)),
            (&[], &[Event::Isb, bug], false, alarm(1, false)),
        ];
        for (a, b, changes_memory, alarm) in cases {
            let want = Marks {
                changes_memory,
                alarm,
            };
            assert_eq!(
                Marks::of(a).join(a.len(), Marks::of(b)),
                want,
                "{a:?} {b:?}"
            );
            assert_eq!(Marks::of(&[a, b].concat()), want, "{a:?} {b:?}");
        }
    }
}
