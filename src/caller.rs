// SPDX-License-Identifier: GPL-2.0-only
//! Caller profiles: the environment each real caller of pgtable.c gives it.
//!
//! pgtable.c never runs alone: a caller hands it a `kvm_pgtable_mm_ops`
//! (some hooks left NULL, which pgtable.c tests), a memory source behind
//! `zalloc_page(mc)`, a way to free unlinked tables, and an execution
//! context that decides what a WARN does. Both sides run a stream under the
//! same [`CallerProfile`], chosen by the stream's configuration
//! ([`Config::caller`], derived from the stage, the context and the IDMAP
//! flag, so existing streams keep their meaning).
//!
//! | line | caller | optional hooks | `zalloc_page(mc)` | unlinked tables | WARN |
//! |---|---|---|---|---|---|
//! | 6.12, 7.3 | pKVM host stage-2 (EL2) | page_count, free_unlinked_table; **no CMO hooks**, no free_pages_exact | `mc` *is* `host_s2_pool`: NULL only when the pool is dry | freed at once (`host_s2_free_unlinked_table`) | hypervisor panic |
//! | 6.12, 7.3 | pKVM guest stage-2 (EL2) | page_count, dcache, icache, free_pages_exact; **no free_unlinked_table** | `vm->pool` first, then the vCPU memcache, NULL when both are empty | the hook is NULL: calling it is a hypervisor panic | hypervisor panic |
//! | 6.12, 7.3 | KVM guest stage-2 (kernel) | all | the memcache; an empty one WARNs and allocates `GFP_ATOMIC` (BUG if that fails): never NULL | after an RCU grace period (`call_rcu`), here at the end of the op | continues |
//! | 6.12, 7.3 | hyp stage-1 at EL2 | page_count | `hpool`, NULL when dry | none (never replaces a table) | hypervisor panic |
//! | 6.12, 7.3 | hyp stage-1 (kernel) | **no page_count**: `kvm_pgtable_hyp_unmap` returns 0 untouched | `get_zeroed_page`, NULL on failure | none | continues |
//!
//! Sources (Linux 6.12 / 7.3): pKVM host `prepare_s2_pool`
//! (nvhe/mem_protect.c), guest `kvm_guest_prepare_stage2` (same file),
//! kernel `kvm_s2_mm_ops` and `stage2_free_unlinked_table` (mmu.c),
//! `kvm_mmu_memory_cache_alloc` (virt/kvm/kvm_main.c), hyp EL2
//! `pkvm_pgtable_mm_ops` (nvhe/setup.c), hyp kernel `kvm_hyp_mm_ops`
//! (mmu.c); EL2 WARNs are BRKs that `nvhe_hyp_panic_handler`
//! (handle_exit.c) turns into `panic()`: "all hyp bugs, including
//! warnings, are treated as fatal".
//!
//! The two lines differ in how these callers *use* pgtable.c (flags,
//! force_pte_cb, annotate; in 6.12 the pKVM guest's EL2 table is created
//! and destroyed but never mapped into, its guest runs on the kernel's
//! table), not in the environment above; what the ops may pass is decided
//! by the op preconditions (`skip if` in `opstream::ops`) and the
//! generators.
//!
//! Harness choices, each the same on both sides:
//! - The pKVM host never destroys its table and has no `free_pages_exact`;
//!   the harness's end-of-stream teardown supplies one, because destroying
//!   is how it checks every reference was dropped.
//! - The EL2 boot phase of the hyp stage-1 (`hyp_early_alloc_mm_ops`: no
//!   page_count, no-op get/put) is not modelled; hyp-at-EL2 streams are
//!   the table after `__pkvm_init_finalise`.
//! - The kernel's RCU grace period ends at the end of the op that unlinked
//!   the table: the earliest moment a real kernel guarantees for a shared
//!   walker (its own `rcu_read_unlock`), and what lets a use of the
//!   unlinked table within the op be seen.

use std::fmt;

use crate::events::{Alarm, CallerBug, Event, Hook, Marks, Misuse, Trace, same_event, same_trace};
use crate::opstream::{Caller, Config, KernelLine};
use crate::results::{Outcome, Step, Value};

/// The optional `kvm_pgtable_mm_ops` hooks a caller installs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hooks {
    pub page_count: bool,
    pub dcache_clean_inval_poc: bool,
    pub icache_inval_pou: bool,
    pub free_unlinked_table: bool,
}

impl Hooks {
    pub const ALL: Hooks = Hooks {
        page_count: true,
        dcache_clean_inval_poc: true,
        icache_inval_pou: true,
        free_unlinked_table: true,
    };

    /// Whether `hook` is installed.
    pub fn has(self, hook: Hook) -> bool {
        match hook {
            Hook::PageCount => self.page_count,
            Hook::DcacheCleanInvalPoc => self.dcache_clean_inval_poc,
            Hook::IcacheInvalPou => self.icache_inval_pou,
            Hook::FreeUnlinkedTable => self.free_unlinked_table,
        }
    }
}

/// How the caller's `free_unlinked_table` frees a table a map replaced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnlinkedFree {
    /// At once, inside the walk (pKVM host: `host_s2_free_unlinked_table`).
    Immediate,
    /// After an RCU grace period (kernel: `call_rcu`); here at the end of
    /// the op, and no walk may use the table's pages before.
    Rcu,
    /// The hook is NULL (pKVM guest, both hyp tables): a call panics.
    Absent,
}

/// Everything a caller decides about pgtable.c's environment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CallerProfile {
    pub caller: Caller,
    pub line: KernelLine,
    pub hooks: Hooks,
    pub pages: crate::arena::PageSource,
    pub unlinked: UnlinkedFree,
    /// A WARN is a hypervisor panic (EL2) rather than a logged warning.
    pub warn_fatal: bool,
}

impl CallerProfile {
    /// The profile of the caller `cfg` stands for.
    pub fn of(cfg: &Config) -> CallerProfile {
        CallerProfile::new(cfg.caller(), cfg.kernel)
    }

    /// The profile of `caller` on kernel `line` (the table in the module
    /// documentation).
    pub fn new(caller: Caller, line: KernelLine) -> CallerProfile {
        use crate::arena::PageSource;
        let (hooks, pages, unlinked) = match caller {
            Caller::PkvmHost => (
                Hooks {
                    dcache_clean_inval_poc: false,
                    icache_inval_pou: false,
                    ..Hooks::ALL
                },
                PageSource::Pool,
                UnlinkedFree::Immediate,
            ),
            Caller::PkvmGuest => (
                Hooks {
                    free_unlinked_table: false,
                    ..Hooks::ALL
                },
                PageSource::GuestPool,
                UnlinkedFree::Absent,
            ),
            Caller::KvmGuest => (Hooks::ALL, PageSource::KernelMemcache, UnlinkedFree::Rcu),
            Caller::HypEl2 => (
                Hooks {
                    page_count: true,
                    dcache_clean_inval_poc: false,
                    icache_inval_pou: false,
                    free_unlinked_table: false,
                },
                PageSource::Pool,
                UnlinkedFree::Absent,
            ),
            Caller::HypKernel => (
                Hooks {
                    page_count: false,
                    dcache_clean_inval_poc: false,
                    icache_inval_pou: false,
                    free_unlinked_table: false,
                },
                PageSource::Pool,
                UnlinkedFree::Absent,
            ),
        };
        CallerProfile {
            caller,
            line,
            hooks,
            pages,
            unlinked,
            warn_fatal: caller.at_el2(),
        }
    }

    /// The `KPD_HOOK_*` bits of the C side's `state_new`.
    pub fn c_hooks(&self) -> u32 {
        use crate::c_side::hooks as h;
        let mut bits = 0;
        let hk = self.hooks;
        for (on, bit) in [
            (hk.dcache_clean_inval_poc, h::DCACHE_CLEAN_INVAL_POC),
            (hk.icache_inval_pou, h::ICACHE_INVAL_POU),
            (hk.page_count, h::PAGE_COUNT),
            (hk.free_unlinked_table, h::FREE_UNLINKED_TABLE),
        ] {
            if on {
                bits |= bit;
            }
        }
        bits
    }

    /// Whether `e` ends the machine under this profile.
    pub fn is_fatal(&self, e: &Event) -> bool {
        match e {
            Event::Warn { .. } => self.warn_fatal,
            Event::CallerBug(_) | Event::AbsentHook(_) => true,
            _ => false,
        }
    }

    /// Index of the first event of `trace` that ends the machine.
    pub fn fatal_at(&self, trace: &Trace) -> Option<usize> {
        trace.iter().position(|e| self.is_fatal(e))
    }

    /// Cuts the two sides' outcomes of one step to what a real machine
    /// shows when either side stopped it: each trace up to and including
    /// its first fatal event, and no return value or memcache count (the
    /// call never returned). A fatal event on one side only then shows as
    /// a trace difference.
    ///
    /// The two sides almost always record the same trace: one pass compares
    /// the two and finds the first side's fatal event, which is then both
    /// sides', and [`Cut::same_trace`] tells the comparison that only the
    /// returns are left to compare. The same pass finds what the step's
    /// other checks look for in the first side's cut trace ([`Cut::misuse`],
    /// [`Cut::changes_memory`]): a step's trace can hold hundreds of
    /// thousands of events, more than the caches hold, and each pass over it
    /// reads it from memory again.
    ///
    /// `b_is_a`: the second side compared its events with `a`'s as it
    /// recorded them and they were the same ([`crate::events::Recorder`]);
    /// `b` then holds no trace and only `a`'s is read, if at all: when
    /// `a`'s side noted its [`Outcome::marks`] as it recorded it, not with
    /// no alarm, and from the first alarm on with one.
    pub fn cut_at_fatal(&self, a: &mut Outcome, b: Option<&mut Outcome>, b_is_a: bool) -> Cut {
        // A first trace whose side noted its marks as it recorded it holds
        // no fatal event or misuse before its first alarm: unless the two
        // traces are still to be compared, it is read from there on, and
        // with no alarm not at all.
        let (same_trace, scan) = match a.marks.filter(|_| b_is_a || b.is_none()) {
            Some(Marks {
                changes_memory,
                alarm: None,
            }) => {
                return Cut {
                    fatal: None,
                    same_trace: b_is_a,
                    misuse: None,
                    changes_memory,
                };
            }
            Some(Marks {
                alarm: Some(Alarm { at, after_change }),
                ..
            }) => (
                b_is_a,
                self.scan_from(&a.trace, at, Scan::clean(after_change)),
            ),
            None if b_is_a => (true, self.scan_from(&a.trace, 0, Scan::clean(false))),
            None => self.scan(&a.trace, b.as_ref().map(|b| &b.trace[..])),
        };
        let fa = scan.fatal;
        let fb = match &b {
            Some(_) if same_trace => fa,
            Some(b) => self.fatal_at(&b.trace),
            None => None,
        };
        if fa.is_some() || fb.is_some() {
            for (o, at) in [(Some(&mut *a), fa), (b, fb)] {
                let Some(o) = o else { continue };
                if let Some(i) = at {
                    o.trace.truncate(i + 1);
                }
                o.value = Value::Unit;
                o.memcache_left = None;
            }
        }
        Cut {
            fatal: fa.map(|i| a.trace[i]),
            same_trace,
            misuse: scan.misuse,
            changes_memory: scan.changes_memory,
        }
    }

    /// One pass over `a` up to its first fatal event, comparing it with `b`
    /// on the way (traces far larger than the caches are read once, not
    /// twice): whether `a` and `b` are the same whole trace, and what the
    /// pass found in `a`.
    fn scan(&self, a: &[Event], b: Option<&[Event]>) -> (bool, Scan) {
        let mut scan = Scan::clean(false);
        let mut from = 0;
        if let Some(b) = b.filter(|b| b.len() == a.len()) {
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                if !same_event(x, y) {
                    from = i;
                    break;
                }
                if self.note(&mut scan, i, x) {
                    let rest = i + 1;
                    return (same_trace(&a[rest..], &b[rest..]), scan);
                }
                from = i + 1;
            }
            if from == a.len() {
                return (true, scan);
            }
        }
        (false, self.scan_from(a, from, scan))
    }

    /// The pass of [`CallerProfile::scan`] over `a` from event `from` on,
    /// `scan` holding what the events before it showed (no fatal event).
    fn scan_from(&self, a: &[Event], from: usize, mut scan: Scan) -> Scan {
        for (i, e) in a.iter().enumerate().skip(from) {
            if self.note(&mut scan, i, e) {
                break;
            }
        }
        scan
    }

    /// Takes note of event `i` of a trace in `scan`; true when it is fatal.
    #[inline(always)]
    fn note(&self, scan: &mut Scan, i: usize, e: &Event) -> bool {
        match *e {
            _ if e.changes_memory() => scan.changes_memory = true,
            Event::Misuse(m) => {
                scan.misuse.get_or_insert(m);
            }
            Event::Warn { .. } | Event::CallerBug(_) | Event::AbsentHook(_) if self.is_fatal(e) => {
                scan.fatal = Some(i);
                return true;
            }
            _ => {}
        }
        false
    }

    /// The stop at `step` by `event`, for the summary.
    pub fn panic(&self, step: Step, event: Event) -> Panic {
        Panic {
            step,
            event,
            at_el2: self.caller.at_el2(),
        }
    }
}

/// What [`CallerProfile::cut_at_fatal`] did to one step's outcomes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cut {
    /// The first side's fatal event, if the machine stopped.
    pub fatal: Option<Event>,
    /// Both sides recorded the same whole trace (so the same cut one).
    pub same_trace: bool,
    /// The first mm_ops contract breach in the first side's cut trace.
    pub misuse: Option<Misuse>,
    /// The first side's cut trace holds an event that can change table
    /// memory or an owner annotation: a store, a `put_page`, a freed
    /// unlinked table.
    pub changes_memory: bool,
}

/// What [`CallerProfile::scan`] found.
struct Scan {
    fatal: Option<usize>,
    misuse: Option<Misuse>,
    changes_memory: bool,
}

impl Scan {
    /// What events with no alarm show: memory changed or not.
    fn clean(changes_memory: bool) -> Scan {
        Scan {
            fatal: None,
            misuse: None,
            changes_memory,
        }
    }
}

/// A stream that stopped where the real machine would: the first fatal
/// event both sides agree on. Not a finding.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Panic {
    pub step: Step,
    /// The first side's fatal event (its WARN location is the C side's in
    /// a C-against-Rust run).
    pub event: Event,
    /// Whether the machine is the hypervisor (EL2) or the kernel.
    pub at_el2: bool,
}

impl fmt::Display for Panic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let who = if self.at_el2 {
            "hypervisor panic"
        } else {
            "kernel oops"
        };
        match self.event {
            Event::Warn { loc, once } => {
                let w = if once { "WARN_ON_ONCE" } else { "WARN" };
                // The C side's __FILE__ is the build's copy of the tree.
                let file = loc.file.rfind("arch/").map_or(loc.file, |i| &loc.file[i..]);
                write!(f, "{who}: {w} at {file}:{}", loc.line)?;
            }
            Event::AbsentHook(h) => {
                write!(f, "{who}: call through the NULL mm_ops->{}", h.name())?;
            }
            Event::CallerBug(CallerBug::MemcacheAllocFailed) => write!(
                f,
                "kernel BUG: kvm_mmu_memory_cache_alloc found the memcache empty and could not allocate"
            )?,
            ref e => write!(f, "{who}: {e:?}")?,
        }
        match self.step {
            Step::Init => write!(f, " (init)"),
            Step::Op(i) => write!(f, " (op #{i})"),
            Step::End => write!(f, " (end of stream)"),
            Step::Destroy => write!(f, " (teardown)"),
        }
    }
}

/// The pages of the unlinked table at `pa` and of every table below it, as
/// the RCU callback will free them. `level` is that of the entry that
/// pointed to it (what `free_unlinked_table` is given): the table's own
/// entries are one level down.
pub fn unlinked_pages(
    arena: &crate::arena::Arena,
    fmt: crate::tree::Format,
    pa: u64,
    level: i8,
) -> Vec<u64> {
    let idx = crate::tree::TreeIndex::build(arena, fmt, pa, 1, level.saturating_add(1));
    let mut pages: Vec<u64> = idx.tables.keys().copied().collect();
    if !pages.contains(&pa) {
        pages.push(pa);
    }
    pages.sort_unstable();
    pages
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arena::PageSource;
    use crate::events::{MmOp, StoreKind};
    use crate::opstream::{Context, Stage};

    /// A WARN, and a descriptor store, for traces written by hand.
    const WARN: Event = Event::Warn {
        once: false,
        loc: crate::events::WarnLoc { file: "x", line: 1 },
    };
    const STORE: Event = Event::Store {
        pa: 0x1000,
        old: 0,
        val: 3,
        kind: StoreKind::WriteOnce,
    };

    #[test]
    fn each_configuration_stands_for_its_caller() {
        let mut c = Config::new(Stage::Hyp);
        c.context = Context::Nvhe;
        assert_eq!(c.caller(), Caller::HypEl2);
        c.context = Context::Kernel;
        assert_eq!(c.caller(), Caller::HypKernel);
        let mut c = Config::new(Stage::Stage2);
        c.context = Context::Kernel;
        assert_eq!(c.caller(), Caller::KvmGuest);
        c.s2_flags.idmap = true;
        assert_eq!(c.caller(), Caller::KvmGuest, "no kernel caller is IDMAP");
        c.context = Context::Nvhe;
        assert_eq!(c.caller(), Caller::PkvmHost);
        c.s2_flags.idmap = false;
        assert_eq!(c.caller(), Caller::PkvmGuest);
    }

    #[test]
    fn profiles_follow_the_callers_mm_ops() {
        for line in KernelLine::ALL {
            let host = CallerProfile::new(Caller::PkvmHost, line);
            // mem_protect.c prepare_s2_pool: no CMO hooks, immediate frees.
            assert!(!host.hooks.dcache_clean_inval_poc && !host.hooks.icache_inval_pou);
            assert!(host.hooks.page_count && host.hooks.free_unlinked_table);
            assert_eq!(host.unlinked, UnlinkedFree::Immediate);
            assert_eq!(host.pages, PageSource::Pool);
            assert!(host.warn_fatal);
            let guest = CallerProfile::new(Caller::PkvmGuest, line);
            assert!(!guest.hooks.free_unlinked_table);
            assert!(guest.hooks.dcache_clean_inval_poc && guest.hooks.icache_inval_pou);
            assert_eq!(guest.pages, PageSource::GuestPool);
            assert!(guest.warn_fatal);
            let kvm = CallerProfile::new(Caller::KvmGuest, line);
            assert_eq!(kvm.hooks, Hooks::ALL);
            assert_eq!(kvm.unlinked, UnlinkedFree::Rcu);
            assert_eq!(kvm.pages, PageSource::KernelMemcache);
            assert!(!kvm.warn_fatal);
            let hyp = CallerProfile::new(Caller::HypEl2, line);
            assert!(hyp.hooks.page_count && hyp.warn_fatal);
            let khyp = CallerProfile::new(Caller::HypKernel, line);
            // mmu.c kvm_hyp_mm_ops has no page_count.
            assert!(!khyp.hooks.page_count && !khyp.warn_fatal);
        }
    }

    #[test]
    fn inputs_the_caller_never_passes_are_not_run() {
        use crate::opstream::Op;
        let map = |mc, phys| Op::S2Map {
            addr: 0x4000_0000,
            size: 0x1000,
            phys,
            prot: 0b111,
            mc,
            flags: 0,
        };
        let cfg = |ctx, idmap| {
            let mut c = Config::new(Stage::Stage2);
            c.context = ctx;
            c.s2_flags.idmap = idmap;
            c
        };
        let (kvm, host, guest) = (
            cfg(Context::Kernel, false),
            cfg(Context::Nvhe, true),
            cfg(Context::Nvhe, false),
        );
        // NULL memcache: the kernel's and the host's maps never pass one.
        assert!(map(None, 0x4000_0000).precondition(&kvm).is_err());
        assert!(map(None, 0x4000_0000).precondition(&host).is_err());
        assert!(map(None, 0x4000_0000).precondition(&guest).is_ok());
        assert!(map(Some(0), 0x4000_0000).precondition(&kvm).is_ok());
        // The host maps one to one.
        assert!(map(Some(4), 0x8000_0000).precondition(&host).is_err());
        assert!(map(Some(4), 0x8000_0000).precondition(&guest).is_ok());
        let split = Op::S2Split {
            addr: 0,
            size: 0x20_0000,
            nobjs: 1,
        };
        assert!(split.precondition(&host).is_err());
        assert!(split.precondition(&kvm).is_ok());
        let unlinked = |mc| Op::S2CreateUnlinked {
            level: 2,
            phys: 0,
            prot: 0b110,
            mc,
            force_pte: false,
        };
        for c in [&kvm, &guest] {
            assert!(unlinked(None).precondition(c).is_err());
            assert!(unlinked(Some(1)).precondition(c).is_ok());
        }
        // Annotation types: every enum kvm_invalid_pte_type value fits in
        // bits [63:60]; 0x91 would store LOCKED (0x1) past annotate's check.
        let annotate = |kind| Op::S2Annotate {
            addr: 0,
            size: 0x1000,
            mc: Some(1),
            kind,
            annotation: 0,
        };
        let mut host73 = host.clone();
        host73.kernel = KernelLine::V7_3;
        assert!(annotate(0x91).precondition(&host73).is_err());
        assert!(annotate(16).precondition(&host73).is_err());
        for kind in [0, 1, 2, 3, 15] {
            assert!(annotate(kind).precondition(&host73).is_ok(), "{kind}");
        }
    }

    #[test]
    fn only_el2_warns_are_fatal() {
        let loc = crate::events::WarnLoc { file: "x", line: 1 };
        let warn = Event::Warn { once: false, loc };
        let el2 = CallerProfile::new(Caller::PkvmGuest, KernelLine::V6_12);
        let kernel = CallerProfile::new(Caller::KvmGuest, KernelLine::V6_12);
        let trace = vec![Event::Isb, warn, Event::Isb];
        assert_eq!(el2.fatal_at(&trace), Some(1));
        assert_eq!(kernel.fatal_at(&trace), None);
        let bug = vec![Event::CallerBug(CallerBug::MemcacheAllocFailed)];
        assert_eq!(kernel.fatal_at(&bug), Some(0));
        let null = vec![Event::AbsentHook(Hook::FreeUnlinkedTable)];
        assert_eq!(el2.fatal_at(&null), Some(0));
    }

    #[test]
    fn a_fatal_event_cuts_the_step_and_one_sided_it_is_a_divergence() {
        use crate::oracle::diff;
        use crate::results::What;
        let loc = crate::events::WarnLoc { file: "x", line: 1 };
        let warn = Event::Warn { once: false, loc };
        let el2 = CallerProfile::new(Caller::HypEl2, KernelLine::V6_12);
        let outcome = |trace: Vec<Event>, v: i64| Outcome::new(Value::Int(v), trace);
        // Both WARN, then disagree on what follows and on the result:
        // nothing after the WARN counts.
        let (mut a, mut b) = (
            outcome(vec![Event::Isb, warn, Event::Isb], 0),
            outcome(
                vec![Event::Isb, warn, Event::Dsb(crate::events::Barrier::Sy)],
                -22,
            ),
        );
        let cut = el2.cut_at_fatal(&mut a, Some(&mut b), false);
        assert_eq!(
            cut,
            Cut {
                fatal: Some(warn),
                same_trace: false,
                misuse: None,
                changes_memory: false,
            }
        );
        assert_eq!(a.trace, vec![Event::Isb, warn]);
        assert_eq!(diff::compare(&a, &b), None);
        // A WARN on one side only is still a finding (the traces differ).
        let (mut a, mut b) = (
            outcome(vec![Event::Isb, warn, Event::Isb], 0),
            outcome(vec![Event::Isb, Event::Isb], 0),
        );
        assert_eq!(
            el2.cut_at_fatal(&mut a, Some(&mut b), false).fatal,
            Some(warn)
        );
        assert!(matches!(diff::compare(&a, &b), Some(What::Trace { .. })));
        let (mut a, mut b) = (
            outcome(vec![Event::Isb, Event::Isb], 0),
            outcome(vec![Event::Isb, warn], 0),
        );
        assert_eq!(el2.cut_at_fatal(&mut a, Some(&mut b), false).fatal, None);
        assert!(matches!(diff::compare(&a, &b), Some(What::Trace { .. })));
        // In the kernel a WARN is not fatal: everything is compared.
        let kernel = CallerProfile::new(Caller::KvmGuest, KernelLine::V6_12);
        let (mut a, mut b) = (outcome(vec![warn], 0), outcome(vec![warn], -22));
        assert_eq!(kernel.cut_at_fatal(&mut a, Some(&mut b), false).fatal, None);
        assert!(matches!(diff::compare(&a, &b), Some(What::Value { .. })));
    }

    #[test]
    fn the_cut_reports_the_first_misuse_and_any_memory_change_before_the_stop() {
        let (warn, store) = (WARN, STORE);
        let first = Misuse::StoreOutsideTables { pa: 0x10 };
        let second = Misuse::BadFreeExact { pa: 0x20, size: 1 };
        let put = Event::PutPage {
            page: 0x2000,
            count: 0,
        };
        let outcome = |trace: Vec<Event>| Outcome::new(Value::Int(0), trace);
        let el2 = CallerProfile::new(Caller::HypEl2, KernelLine::V6_12);
        let kernel = CallerProfile::new(Caller::KvmGuest, KernelLine::V6_12);
        // Misuses on both sides of a WARN: the first one counts, whether or
        // not the WARN stops the machine.
        let trace = vec![
            Event::Isb,
            Event::Misuse(first),
            warn,
            Event::Misuse(second),
        ];
        for profile in [&el2, &kernel] {
            let cut = profile.cut_at_fatal(&mut outcome(trace.clone()), None, false);
            assert_eq!(cut.misuse, Some(first));
            assert!(!cut.changes_memory);
        }
        // A misuse after the stop is not seen: the machine never ran it.
        let late = vec![Event::Isb, warn, Event::Misuse(second)];
        assert_eq!(
            el2.cut_at_fatal(&mut outcome(late.clone()), None, false)
                .misuse,
            None
        );
        assert_eq!(
            kernel.cut_at_fatal(&mut outcome(late), None, false).misuse,
            Some(second)
        );
        // A store, a put_page or a freed unlinked table after the stop does
        // not change what the machine holds; before it, each one does.
        for change in [
            store,
            put,
            Event::FreeUnlinkedTable {
                pa: 0x3000,
                level: 2,
            },
        ] {
            let after = vec![Event::Isb, warn, change];
            assert!(
                !el2.cut_at_fatal(&mut outcome(after.clone()), None, false)
                    .changes_memory
            );
            assert!(
                kernel
                    .cut_at_fatal(&mut outcome(after), None, false)
                    .changes_memory
            );
            let before = vec![change, warn];
            assert!(
                el2.cut_at_fatal(&mut outcome(before), None, false)
                    .changes_memory
            );
        }
        // With a second trace that differs before them, they are found all the
        // same (the comparison and the scan share one pass).
        let (mut a, mut b) = (
            outcome(vec![Event::Isb, Event::Misuse(first), store, warn]),
            outcome(vec![
                Event::Dsb(crate::events::Barrier::Sy),
                Event::Misuse(first),
                store,
                warn,
            ]),
        );
        let cut = el2.cut_at_fatal(&mut a, Some(&mut b), false);
        assert!(!cut.same_trace);
        assert_eq!(
            (cut.fatal, cut.misuse, cut.changes_memory),
            (Some(warn), Some(first), true)
        );
        // A get_page changes a count, never memory or an annotation.
        let get = vec![Event::GetPage {
            page: 0x2000,
            count: 2,
        }];
        assert!(
            !kernel
                .cut_at_fatal(&mut outcome(get), None, false)
                .changes_memory
        );
    }

    /// A first trace whose side noted its marks is cut as if it were read:
    /// with no alarm the marks stand for the pass (and say whether memory
    /// changed); with one, the trace is read from its first alarm on.
    /// Expected by hand for each case, and equal to the cut of the same
    /// trace unmarked.
    #[test]
    fn marks_noted_while_recording_stand_for_the_pass_over_the_trace() {
        let (warn, store) = (WARN, STORE);
        let misuse = Misuse::FreePage {
            op: MmOp::PutPage,
            pa: 0x10,
        };
        let get = Event::GetPage {
            page: 0x2000,
            count: 2,
        };
        let el2 = CallerProfile::new(Caller::HypEl2, KernelLine::V6_12);
        let kernel = CallerProfile::new(Caller::KvmGuest, KernelLine::V6_12);
        // (profile, trace, fatal, misuse, changes memory)
        let cases = [
            (&el2, vec![Event::Isb, get], None, None, false),
            (&el2, vec![get, store, Event::Isb], None, None, true),
            (&kernel, vec![Event::Isb, warn, store], None, None, true),
            (&el2, vec![Event::Isb, warn, store], Some(warn), None, false),
            (
                &kernel,
                vec![store, Event::Misuse(misuse)],
                None,
                Some(misuse),
                true,
            ),
            (
                &kernel,
                vec![Event::CallerBug(CallerBug::MemcacheAllocFailed), store],
                Some(Event::CallerBug(CallerBug::MemcacheAllocFailed)),
                None,
                false,
            ),
            // Read from the first alarm on: a misuse, then the stop, with
            // a store before, between and after them.
            (
                &el2,
                vec![store, get, Event::Misuse(misuse), store, warn, store],
                Some(warn),
                Some(misuse),
                true,
            ),
            (
                &el2,
                vec![get, Event::Misuse(misuse), store, warn, store],
                Some(warn),
                Some(misuse),
                true,
            ),
            (
                &el2,
                vec![get, Event::Isb, warn, Event::Misuse(misuse), store],
                Some(warn),
                None,
                false,
            ),
        ];
        // The first side alone, or with a second side whose events were
        // the first's exactly (it then holds no trace).
        for (profile, trace, fatal, misuse, changes_memory) in cases {
            for b_is_a in [false, true] {
                let run = |marks| {
                    let mut a = Outcome::new(Value::Int(0), trace.clone());
                    a.marks = marks;
                    let mut b = Outcome::new(Value::Int(1), Vec::new());
                    let cut = profile.cut_at_fatal(&mut a, b_is_a.then_some(&mut b), b_is_a);
                    (cut, a, b)
                };
                let (cut, a, b) = run(Some(crate::events::Marks::of(&trace)));
                let want = Cut {
                    fatal,
                    same_trace: b_is_a,
                    misuse,
                    changes_memory,
                };
                assert_eq!(cut, want, "{trace:?}");
                assert_eq!((cut, a, b), run(None), "cut alike: {trace:?}");
            }
        }
    }

    #[test]
    fn equal_traces_are_cut_alike_and_leave_the_returns_to_compare() {
        use crate::oracle::diff;
        use crate::results::What;
        let loc = crate::events::WarnLoc { file: "x", line: 1 };
        let warn = Event::Warn { once: false, loc };
        let outcome = |trace: Vec<Event>, v: i64| Outcome::new(Value::Int(v), trace);
        // At EL2 the WARN stops the machine: both cut after it, results dropped.
        let el2 = CallerProfile::new(Caller::HypEl2, KernelLine::V6_12);
        let trace = vec![Event::Isb, warn, Event::Isb];
        let (mut a, mut b) = (outcome(trace.clone(), 0), outcome(trace, -22));
        let cut = el2.cut_at_fatal(&mut a, Some(&mut b), false);
        assert_eq!(
            cut,
            Cut {
                fatal: Some(warn),
                same_trace: true,
                misuse: None,
                changes_memory: false,
            }
        );
        assert_eq!((a.trace.len(), b.trace.len()), (2, 2));
        assert_eq!((&a.value, &b.value), (&Value::Unit, &Value::Unit));
        assert_eq!(diff::compare_returns(&a, &b), None);
        // In the kernel it does not: nothing is cut and the results differ.
        let kernel = CallerProfile::new(Caller::KvmGuest, KernelLine::V6_12);
        let (mut a, mut b) = (outcome(vec![warn], 0), outcome(vec![warn], -22));
        let cut = kernel.cut_at_fatal(&mut a, Some(&mut b), false);
        assert_eq!(
            cut,
            Cut {
                fatal: None,
                same_trace: true,
                misuse: None,
                changes_memory: false,
            }
        );
        assert!(matches!(
            diff::compare_returns(&a, &b),
            Some(What::Value { .. })
        ));
    }
}
