// SPDX-License-Identifier: GPL-2.0-only
//! The C side's environment: the functions pgtable.c calls back into
//! (mm_ops hooks, force_pte_cb, walk visitors) and the recorder behind our
//! stubs. glue.c installs them in every table it creates.
//!
//! C has no context argument for most of these, so the environment of the
//! side being called is installed in a thread-local for the duration of the
//! call ([`with_current`]). Tests in parallel threads each get their own.
//!
//! Callbacks reach the environment through a shared reference only; what
//! they change is behind `RefCell`s whose borrows end before any call back
//! into C (free_unlinked_table re-enters pgtable.c, which calls back
//! again). A violation of that would panic, never alias.

use core::ffi::{CStr, c_char, c_int, c_void};
use std::cell::{Cell, RefCell};
use std::ptr;

use super::{CpuFeatures, ffi};
use crate::arena::{Arena, Memcache};
use crate::caller::UnlinkedFree;
use crate::events::{
    Access, Barrier, Event, Hook, MarkedTrace, Marks, Record, StoreKind, TlbiHypOp, Trace, Visit,
    WarnLoc,
};
use crate::force_pte::ForcePte;
use crate::race::{Injector, Tally, World};
use crate::tree::Format;

pub(super) struct CEnv {
    arena: RefCell<Arena>,
    /// The events recorded since the last take, with their marks.
    trace: RefCell<MarkedTrace>,
    force_pte: RefCell<ForcePte>,
    /// The build and table being run (for free_unlinked_table's re-entry).
    api: &'static ffi::kpd_api,
    state: Cell<*mut ffi::kpd_state>,
    /// What the caller's free_unlinked_table does, and how to read the
    /// tables it is given (to find the pages a deferred free holds).
    unlinked: Cell<(UnlinkedFree, Option<Format>)>,
    /// Unlinked tables waiting for their RCU grace period: (pa, level,
    /// the pages of the subtree).
    rcu: RefCell<Vec<(u64, i8, Vec<u64>)>>,
    /// The op's scheduled race and access log.
    race: RefCell<Injector>,
    /// Host address of the arena's first page: the C side's access digest
    /// hashes offsets from it (the Rust side's, from the first PA).
    arena_base: u64,
}

impl CEnv {
    pub(super) fn new(arena: Arena, force_pte: ForcePte, api: &'static ffi::kpd_api) -> CEnv {
        let arena_base = arena.phys_to_virt(arena.geometry().base_pa).addr() as u64;
        CEnv {
            arena_base,
            race: RefCell::new(Injector::default()),
            arena: RefCell::new(arena),
            trace: RefCell::new(MarkedTrace::new()),
            force_pte: RefCell::new(force_pte),
            api,
            state: Cell::new(ptr::null_mut()),
            unlinked: Cell::new((UnlinkedFree::Immediate, None)),
            rcu: RefCell::new(Vec::new()),
        }
    }

    /// Sets what free_unlinked_table does (immediate free by default);
    /// `fmt` reads the tables a deferred free holds back.
    pub(super) fn set_unlinked(&self, how: UnlinkedFree, fmt: Format) {
        self.unlinked.set((how, Some(fmt)));
    }

    /// The deferred frees whose grace period ends now, their pages no
    /// longer protected from use (the RCU callback is about to free them).
    pub(super) fn end_grace_period(&self) -> Vec<(u64, i8)> {
        let pending = std::mem::take(&mut *self.rcu.borrow_mut());
        let mut arena = self.arena.borrow_mut();
        pending
            .into_iter()
            .map(|(pa, level, pages)| {
                arena.end_grace_period(&pages);
                (pa, level)
            })
            .collect()
    }

    /// Races are applied for streams configured by `cfg`.
    pub(super) fn set_injector(&self, injector: Injector) {
        *self.race.borrow_mut() = injector;
    }

    /// Starts counting the accesses of an op (None: the teardown), with
    /// `race` scheduled.
    pub(super) fn begin_op(
        &self,
        op: Option<&crate::opstream::Op>,
        race: Option<&crate::opstream::Race>,
        root: Option<crate::side::Root>,
    ) {
        let stop = self.race.borrow_mut().begin_op(op, race, root);
        // SAFETY: this thread's runtime; no C call is running.
        unsafe {
            let rt = ffi::kpd_runtime_get();
            (*rt).acc_count = 0;
            (*rt).acc_digest = Tally::START.digest;
            (*rt).acc_stop = stop;
        }
    }

    /// The op's walk is over: no more races; the other walker publishes.
    pub(super) fn end_walk(&self) {
        let count = self.tally().count;
        let next = self.race.borrow_mut().end_walk(
            count,
            World {
                arena: &mut self.arena.borrow_mut(),
                trace: &mut *self.trace.borrow_mut(),
                rcu: &mut self.rcu.borrow_mut(),
            },
        );
        // SAFETY: as in `begin_op`.
        unsafe { (*ffi::kpd_runtime_get()).acc_stop = next };
    }

    /// The accesses counted since `begin_op`.
    pub(super) fn tally(&self) -> Tally {
        // SAFETY: as in `begin_op`.
        unsafe {
            let rt = ffi::kpd_runtime_get();
            Tally {
                count: (*rt).acc_count,
                digest: (*rt).acc_digest,
            }
        }
    }

    /// Logs every access from now on (`on`), or stops.
    pub(super) fn keep_accesses(&self, on: bool) {
        self.race.borrow_mut().keep_log(on);
    }

    pub(super) fn take_accesses(&self) -> Option<Vec<(u64, Access)>> {
        self.race.borrow_mut().take_log()
    }

    pub(super) fn set_state(&self, state: *mut ffi::kpd_state) {
        self.state.set(state);
    }

    /// The arena, between calls.
    pub(super) fn arena_ref(&self) -> &Arena {
        // SAFETY: the arena is only borrowed mutably inside callbacks, which
        // run during a C call; a C call needs `&mut CSide`, which cannot
        // coexist with the `&CSide` this `&CEnv` was reached through.
        unsafe {
            self.arena
                .try_borrow_unguarded()
                .expect("no C call is running")
        }
    }

    pub(super) fn force_pte_installed(&self) -> bool {
        self.force_pte.borrow().installed()
    }

    /// The events recorded since the last take, and their marks.
    pub(super) fn take_trace(&self) -> (Trace, Marks) {
        self.trace.borrow_mut().take()
    }

    /// Moves the events recorded so far to the end of `into`'s trace,
    /// keeping the recording's capacity.
    pub(super) fn append_trace(&self, into: &mut crate::results::Outcome) {
        let len = into.trace.len();
        let marks = self.trace.borrow_mut().append_to(&mut into.trace);
        into.marks = into.marks.map(|m| m.join(len, marks));
    }

    pub(super) fn record(&self, e: Event) {
        self.trace.borrow_mut().push(e);
    }
}

thread_local! {
    static CURRENT: Cell<*const CEnv> = const { Cell::new(ptr::null()) };
}

/// Runs `f` with `env` as the environment of C callbacks and `features` as
/// the C runtime's CPU features.
pub(super) fn with_current<T>(env: &CEnv, features: CpuFeatures, f: impl FnOnce() -> T) -> T {
    // SAFETY: kpd_runtime_get only returns this thread's runtime struct;
    // no Rust reference to it exists, and C is not running.
    unsafe {
        let rt = ffi::kpd_runtime_get();
        (*rt).stage2_fwb = features.stage2_fwb;
        (*rt).tlb_range = features.tlb_range;
        (*rt).lpa2 = features.lpa2;
        (*rt).bti_kernel = features.bti_kernel;
        (*rt).hvhe = features.hvhe;
        (*rt).ampere_ac03 = features.ampere_ac03;
        (*rt).xnx = features.xnx;
        (*rt).rcu_depth = 0;
        (*rt).arena_base = env.arena_base;
    }
    let prev = CURRENT.with(|c| c.replace(env));
    struct Restore(*const CEnv);
    impl Drop for Restore {
        fn drop(&mut self) {
            CURRENT.with(|c| c.set(self.0));
        }
    }
    let _restore = Restore(prev);
    let ret = f();
    env.drain();
    ret
}

/// The current side's environment.
fn env<'a>() -> &'a CEnv {
    let p = CURRENT.with(|c| c.get());
    assert!(!p.is_null(), "C side called back outside a harness call");
    // SAFETY: set by with_current from a live `&CEnv` for the duration of
    // the C call that is calling back; only shared references are made.
    unsafe { &*p }
}

// ---- recorder (declared in c-shim/include/kpd/runtime.h) ----

impl CEnv {
    /// Moves the events C buffered since the last drain into the trace, in
    /// order. Called before any callback that reads or changes the arena
    /// or the trace, and when the entry point returns, so each store is
    /// checked against the arena as it was when C made it.
    pub(super) fn drain(&self) {
        // SAFETY: this thread's buffer; C is blocked (in a callback) or has
        // returned, and no Rust reference to the buffer exists elsewhere.
        let buf = unsafe { &mut *ffi::kpd_evbuf_get() };
        let n = buf.len as usize;
        if n == 0 {
            return;
        }
        buf.len = 0;
        let mut arena = self.arena.borrow_mut();
        let mut trace = self.trace.borrow_mut();
        for e in &buf.ev[..n] {
            decode_event(e, &mut arena, &mut trace);
        }
    }
}

/// Called by C when its event buffer is full.
#[unsafe(no_mangle)]
extern "C" fn kpd_ev_flush() {
    env().drain();
}

/// A buffered WARN into the trace. Out of line, as the rare kinds'
/// decoding should be: its string's frame is made on ASan's fake stack in
/// the ASan builds, at each call of the function that holds it (every
/// drain, were it inlined there). It pushes the event itself: an event
/// returned from here would be built apart and copied into the trace on
/// every kind's path (`__asan_memcpy` in the ASan builds).
#[cold]
#[inline(never)]
fn decode_warn(e: &ffi::kpd_ev, trace: &mut MarkedTrace) {
    // SAFETY: C put a __FILE__ here: a static NUL-terminated string.
    let file = unsafe { CStr::from_ptr(e.a as usize as *const c_char) };
    trace.push(Event::Warn {
        once: e.arg != 0,
        loc: WarnLoc {
            file: file.to_str().unwrap_or("?"),
            line: e.b as u32,
        },
    });
}

#[cold]
#[inline(never)]
fn unknown_event(kind: ffi::kpd_ev_kind) -> ! {
    panic!("c-shim event kind {kind} unknown to the harness")
}

/// One buffered C event into the trace (the layout is runtime.h's).
fn decode_event(e: &ffi::kpd_ev, arena: &mut Arena, trace: &mut MarkedTrace) {
    let va = |a: u64| a as usize as *const u64;
    let event = match e.kind {
        ffi::kpd_ev_kind_KPD_EV_STORE => {
            let pa = arena.virt_to_phys(va(e.a));
            if let Some(m) = arena.check_store(pa) {
                trace.push(Event::Misuse(m));
            }
            let kind = match e.arg as ffi::kpd_store_kind {
                ffi::kpd_store_kind_KPD_STORE_RELEASE => StoreKind::Release,
                ffi::kpd_store_kind_KPD_STORE_CMPXCHG => StoreKind::Cmpxchg,
                _ => StoreKind::WriteOnce,
            };
            Event::Store {
                pa,
                old: e.c,
                val: e.b,
                kind,
            }
        }
        ffi::kpd_ev_kind_KPD_EV_DSB => Event::Dsb(
            Barrier::from_c(e.arg as ffi::kpd_barrier).expect("c-shim barrier kinds match Barrier"),
        ),
        ffi::kpd_ev_kind_KPD_EV_ISB => Event::Isb,
        ffi::kpd_ev_kind_KPD_EV_TLBI_HYP => Event::TlbiHyp {
            op: if e.arg as ffi::kpd_tlbi_hyp_op == ffi::kpd_tlbi_hyp_op_KPD_TLBI_vale2is {
                TlbiHypOp::Vale2is
            } else {
                TlbiHypOp::Vae2is
            },
            operand: e.a,
            level: e.b as i64 as c_int,
        },
        ffi::kpd_ev_kind_KPD_EV_TLBI_SYNC_S1ISH_HYP => Event::TlbiSyncS1IshHyp,
        ffi::kpd_ev_kind_KPD_EV_TLB_FLUSH_VMID => Event::TlbFlushVmid,
        ffi::kpd_ev_kind_KPD_EV_TLB_FLUSH_VMID_IPA => Event::TlbFlushVmidIpa {
            ipa: e.a,
            level: e.b as i64 as c_int,
            nsh: e.arg != 0,
        },
        ffi::kpd_ev_kind_KPD_EV_TLB_FLUSH_VMID_RANGE => Event::TlbFlushVmidRange {
            start: e.a,
            pages: e.b,
        },
        ffi::kpd_ev_kind_KPD_EV_WARN => return decode_warn(e, trace),
        ffi::kpd_ev_kind_KPD_EV_RCU => Event::Rcu { lock: e.arg != 0 },
        ffi::kpd_ev_kind_KPD_EV_GET_PAGE => {
            arena.get_page(arena.virt_to_phys(va(e.a)), trace);
            return;
        }
        ffi::kpd_ev_kind_KPD_EV_DCACHE_CLEAN_INVAL_POC => Event::DcacheCleanInvalPoc {
            pa: arena.virt_to_phys(va(e.a)),
            size: e.b,
        },
        ffi::kpd_ev_kind_KPD_EV_ICACHE_INVAL_POU => Event::IcacheInvalPou {
            pa: arena.virt_to_phys(va(e.a)),
            size: e.b,
        },
        k => unknown_event(k),
    };
    trace.push(event);
}

/// Access number `index` (the runtime's `acc_stop`) is about to happen:
/// the injector acts, and says when to call again.
#[unsafe(no_mangle)]
extern "C" fn kpd_ev_access(ptep: *const c_void, kind: ffi::kpd_access_kind, index: u64) {
    let env = env();
    env.drain();
    let mut arena = env.arena.borrow_mut();
    let pa = arena.virt_to_phys(ptep.cast());
    let next = env.race.borrow_mut().on_access(
        index,
        pa,
        Access::from_c(kind),
        World {
            arena: &mut arena,
            trace: &mut *env.trace.borrow_mut(),
            rcu: &mut env.rcu.borrow_mut(),
        },
    );
    // SAFETY: this thread's runtime; C is blocked in this callback and
    // reads acc_stop again only after it returns.
    unsafe { (*ffi::kpd_runtime_get()).acc_stop = next };
}

// ---- kvm_pgtable_mm_ops hooks ----

fn pa_of(addr: *const c_void) -> u64 {
    env().arena.borrow().virt_to_phys(addr.cast())
}

/// Runs an arena operation that records into the trace.
fn with_arena<T>(f: impl FnOnce(&mut Arena, &mut MarkedTrace) -> T) -> T {
    let env = env();
    env.drain();
    f(&mut env.arena.borrow_mut(), &mut env.trace.borrow_mut())
}

fn va_of(pa: Option<u64>) -> *mut c_void {
    pa.map_or(ptr::null_mut(), |pa| {
        env().arena.borrow().phys_to_virt(pa).cast()
    })
}

#[unsafe(no_mangle)]
extern "C" fn kpd_mm_zalloc_page(arg: *mut c_void) -> *mut c_void {
    let pa = if arg.is_null() {
        with_arena(|a, t| a.zalloc_page(None, t))
    } else {
        let mc = arg.cast::<ffi::kvm_mmu_memory_cache>();
        // SAFETY: every memcache glue.c passes is a live kvm_mmu_memory_cache
        // in the table state of the side being called; C is blocked in this
        // callback, so nothing else accesses it.
        let nobjs = unsafe { (*mc).nobjs };
        let mut m = Memcache {
            nobjs: nobjs.max(0) as u32,
        };
        let pa = with_arena(|a, t| a.zalloc_page(Some(&mut m), t));
        // SAFETY: as above.
        unsafe { (*mc).nobjs = m.nobjs as i32 };
        pa
    };
    va_of(pa)
}

#[unsafe(no_mangle)]
extern "C" fn kpd_mm_zalloc_pages_exact(size: usize) -> *mut c_void {
    let pa = with_arena(|a, t| a.zalloc_pages_exact(size as u64, t));
    va_of(pa)
}

#[unsafe(no_mangle)]
extern "C" fn kpd_mm_free_pages_exact(addr: *mut c_void, size: usize) {
    let pa = pa_of(addr);
    with_arena(|a, t| a.free_pages_exact(pa, size as u64, t));
}

/// The caller's free_unlinked_table: the pKVM host hands the detached
/// table straight back to `kvm_pgtable_stage2_free_unlinked`; the kernel
/// does so from an RCU callback (`call_rcu`, mmu.c), so the table is kept,
/// its pages protected from use, until the side ends the grace period.
#[unsafe(no_mangle)]
extern "C" fn kpd_mm_free_unlinked_table(addr: *mut c_void, level: i8) {
    let pa = pa_of(addr);
    let env = env();
    env.drain();
    env.record(Event::FreeUnlinkedTable { pa, level });
    match env.unlinked.get() {
        (UnlinkedFree::Rcu, Some(fmt)) => {
            let mut arena = env.arena.borrow_mut();
            let pages = crate::caller::unlinked_pages(&arena, fmt, pa, level);
            arena.defer_free(&pages);
            env.rcu.borrow_mut().push((pa, level, pages));
        }
        _ => {
            // SAFETY: re-enters the same build with the same table state;
            // no borrow of the environment is live across the call.
            unsafe { (env.api.stage2_free_unlinked.unwrap())(env.state.get(), addr, level) }
        }
    }
}

/// What a caller without free_unlinked_table (a pKVM guest) would call:
/// NULL, a hypervisor panic. Only reported; the machine has stopped.
#[unsafe(no_mangle)]
extern "C" fn kpd_mm_null_free_unlinked_table(_addr: *mut c_void, _level: i8) {
    let env = env();
    env.drain();
    env.record(Event::AbsentHook(Hook::FreeUnlinkedTable));
}

#[unsafe(no_mangle)]
extern "C" fn kpd_mm_put_page(addr: *mut c_void) {
    let pa = pa_of(addr);
    with_arena(|a, t| a.put_page(pa, t));
}

#[unsafe(no_mangle)]
extern "C" fn kpd_mm_page_count(addr: *mut c_void) -> c_int {
    let pa = pa_of(addr);
    with_arena(|a, t| a.page_count(pa, t))
}

#[unsafe(no_mangle)]
extern "C" fn kpd_mm_phys_to_virt(pa: u64) -> *mut c_void {
    env().arena.borrow().phys_to_virt(pa).cast()
}

#[unsafe(no_mangle)]
extern "C" fn kpd_mm_virt_to_phys(addr: *mut c_void) -> u64 {
    pa_of(addr)
}

// ---- force_pte_cb ----

#[unsafe(no_mangle)]
extern "C" fn kpd_force_pte(addr: u64, end: u64, prot: u64) -> bool {
    let env = env();
    env.drain();
    let mut trace = env.trace.borrow_mut();
    env.force_pte
        .borrow_mut()
        .decide(addr, end, prot, &mut *trace)
}

// ---- walker with a Rust visitor ----

/// What `kvm_pgtable_walk`'s visitor argument points at.
pub(super) struct VisitorCtx<'a> {
    pub(super) visitor: &'a mut dyn FnMut(&Visit) -> i32,
}

#[unsafe(no_mangle)]
extern "C" fn kpd_visit(arg: *mut c_void, v: *const ffi::kpd_visit) -> c_int {
    // The visitor may record (a walk op's visit log) or look at the arena.
    env().drain();
    // SAFETY: glue.c passes the visit it built on its stack, valid for the
    // duration of this callback.
    let v = unsafe { &*v };
    // SAFETY: arg is the VisitorCtx CSide::walk put on its stack, live for
    // the walk and reached only through this pointer while C runs.
    let vc = unsafe { &mut *arg.cast::<VisitorCtx>() };
    let visit = Visit {
        kind: v.kind,
        ptep: pa_of(v.ptep),
        old: v.old,
        start: v.start,
        addr: v.addr,
        end: v.end,
        level: v.level,
        flags: v.flags,
    };
    (vc.visitor)(&visit)
}
