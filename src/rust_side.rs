// SPDX-License-Identifier: GPL-2.0-only
//! The Rust side: rust-pgtable as a [`Side`], with its `MmOps` and `Hw`
//! over an [`Arena`], recording into the same [`Event`] vocabulary as the
//! C stubs.

use core::panic::Location;

use rust_pgtable as rp;

use crate::arena::{Arena, Memcache};
use crate::caller::{CallerProfile, Hooks, UnlinkedFree};
use crate::events::{
    Access, Barrier, Event, Hook, Misuse, MmOp, Record, Recorder, StoreKind, TlbiHypOp, Trace,
    Visit, WarnLoc,
};
use crate::force_pte::ForcePte;
use crate::opstream::{Config, Context, KernelLine, OpHandler, Prot, Stage, Teardown, VisitScript};
use crate::race::{self, Injector, NEVER, Tally, World};
use crate::results::{Outcome, Value};
use crate::side::{self, Root, Side};
use crate::tree::Format;

/// Arena + trace, as seen by rust-pgtable.
pub struct RustEnv {
    pub arena: Arena,
    pub trace: Recorder,
    cfg: rp::Config,
    rcu_depth: i32,
    /// The optional mm_ops hooks the caller installs.
    hooks: Hooks,
    /// What the caller's free_unlinked_table does, and how to read the
    /// tables it is given.
    unlinked: UnlinkedFree,
    fmt: Option<Format>,
    /// Unlinked tables waiting for their RCU grace period: (pa, level, the
    /// pages of the subtree).
    rcu: Vec<(u64, i8, Vec<u64>)>,
    /// Backing for a table pointer that is not in the arena: rust-pgtable's
    /// accesses stay memory-safe and the breach is reported. Only ever
    /// touched through `Vec::as_mut_ptr`, which makes no reference to the
    /// buffer, so a pointer handed out earlier (a walk keeps one per table
    /// it is in) stays valid when the buffer is zeroed for the next one.
    /// Allocated at the first such pointer and never again: only a misuse
    /// needs it, and a page allocated and zeroed for every run (ASan gives
    /// fresh pages for each) was about 5% of the hyp corpus replay with ASan.
    scratch: Vec<u64>,
    /// The op's descriptor accesses so far, and the one at which the
    /// injector acts next (as the C side's runtime keeps them).
    acc: Tally,
    acc_stop: u64,
    /// The arena's first PA: the access digest hashes offsets from it.
    base_pa: u64,
    /// The op's scheduled race and access log.
    race: Injector,
}

impl RustEnv {
    /// An environment with every hook, freeing unlinked tables at once.
    pub fn new(arena: Arena, cfg: rp::Config) -> RustEnv {
        // rust-pgtable indexes a table page through one pointer: the
        // arena's pages and the scratch page must be the granule's pages.
        assert_eq!(
            arena.geometry().page_size,
            cfg.granule.page_size(),
            "the arena's page size is not the granule's"
        );
        RustEnv {
            acc: Tally::START,
            acc_stop: NEVER,
            base_pa: arena.geometry().base_pa,
            race: Injector::default(),
            arena,
            trace: Recorder::new(),
            cfg,
            rcu_depth: 0,
            hooks: Hooks::ALL,
            unlinked: UnlinkedFree::Immediate,
            fmt: None,
            rcu: Vec::new(),
            scratch: Vec::new(),
        }
    }

    /// The environment `profile`'s caller gives pgtable.c: its hooks and
    /// its way of freeing unlinked tables (`fmt` reads them).
    pub fn for_caller(mut self, profile: &CallerProfile, fmt: Format) -> RustEnv {
        self.hooks = profile.hooks;
        self.unlinked = profile.unlinked;
        self.fmt = Some(fmt);
        self
    }

    pub fn take_trace(&mut self) -> Trace {
        self.trace.take()
    }

    /// Races are applied for streams configured by `cfg`.
    pub fn with_injector(mut self, cfg: &Config) -> RustEnv {
        self.race = Injector::new(cfg);
        self
    }

    /// Starts counting the accesses of an op (None: the teardown), with
    /// `race` scheduled.
    fn begin_op(
        &mut self,
        op: Option<&crate::opstream::Op>,
        race: Option<&crate::opstream::Race>,
        root: Option<Root>,
    ) {
        self.acc = Tally::START;
        self.acc_stop = self.race.begin_op(op, race, root);
    }

    /// The op's walk is over: no more races; the other walker publishes.
    fn end_walk(&mut self) {
        self.acc_stop = self.race.end_walk(
            self.acc.count,
            World {
                arena: &mut self.arena,
                trace: &mut self.trace,
                rcu: &mut self.rcu,
            },
        );
    }

    /// Reports a call through a hook the caller leaves NULL; whether it was
    /// installed.
    fn hook(&mut self, hook: Hook) -> bool {
        let has = self.hooks.has(hook);
        if !has {
            self.trace.push(Event::AbsentHook(hook));
        }
        has
    }

    /// Ends the RCU grace period: the deferred frees whose RCU callback now
    /// runs, their pages no longer protected from use.
    fn end_grace_period(&mut self) -> Vec<(u64, i8)> {
        std::mem::take(&mut self.rcu)
            .into_iter()
            .map(|(pa, level, pages)| {
                self.arena.end_grace_period(&pages);
                (pa, level)
            })
            .collect()
    }
}

// SAFETY: phys_to_virt returns either a pointer to a page of the arena's
// backing store (for the PA of an arena page) or to `scratch`, one page
// long (any other PA; `new` checks the arena's pages are the granule's);
// both are valid for a whole page, 8-byte aligned and live as long as the
// environment, and neither buffer is ever reborrowed as a slice while the
// page-table code runs (arena `Mem`, `scratch`), so earlier pointers stay
// valid.
unsafe impl rp::MmOps for RustEnv {
    type Memcache = Memcache;

    fn zalloc_page(&mut self, mc: Option<&mut Memcache>) -> Option<u64> {
        self.arena.zalloc_page(mc, &mut self.trace)
    }

    fn memcache_nobjs(&self, mc: &Memcache) -> usize {
        mc.nobjs as usize
    }

    fn zalloc_pages_exact(&mut self, size: u64) -> Option<u64> {
        self.arena.zalloc_pages_exact(size, &mut self.trace)
    }

    fn free_pages_exact(&mut self, pa: u64, size: u64) {
        self.arena.free_pages_exact(pa, size, &mut self.trace);
    }

    fn free_unlinked_table(&mut self, pa: u64, level: rp::Level) {
        if !self.hook(Hook::FreeUnlinkedTable) {
            return;
        }
        self.trace.push(Event::FreeUnlinkedTable {
            pa,
            level: level.get(),
        });
        match (self.unlinked, self.fmt) {
            // The kernel: call_rcu; the side ends the grace period.
            (UnlinkedFree::Rcu, Some(fmt)) => {
                let pages = crate::caller::unlinked_pages(&self.arena, fmt, pa, level.get());
                self.arena.defer_free(&pages);
                self.rcu.push((pa, level.get(), pages));
            }
            // The pKVM host: straight back to the page-table code.
            _ => {
                let cfg = self.cfg;
                rp::stage2_free_unlinked(self, &cfg, pa, level);
            }
        }
    }

    fn get_page(&mut self, pa: u64) {
        self.arena.get_page(pa, &mut self.trace);
    }

    fn put_page(&mut self, pa: u64) {
        self.arena.put_page(pa, &mut self.trace);
    }

    fn page_count(&mut self, pa: u64) -> i32 {
        if !self.hook(Hook::PageCount) {
            return 0;
        }
        self.arena.page_count(pa, &mut self.trace)
    }

    fn phys_to_virt(&mut self, pa: u64) -> *mut u64 {
        if let Some(p) = self.arena.table_ptr(pa) {
            return p;
        }
        self.trace.push(Event::Misuse(Misuse::ForeignAddress {
            op: MmOp::PhysToVirt,
            pa,
        }));
        if self.scratch.is_empty() {
            // Once per environment: no pointer into the buffer exists yet.
            self.scratch = vec![0; (self.arena.geometry().page_size / 8) as usize];
        }
        let p = self.scratch.as_mut_ptr();
        // SAFETY: `p` is valid for the buffer's `len()` words; zeroing
        // through it makes no reference to the buffer (see `scratch`).
        unsafe { p.write_bytes(0, self.scratch.len()) };
        p
    }

    fn dcache_clean_inval_poc(&mut self, pa: u64, size: u64) {
        if self.hook(Hook::DcacheCleanInvalPoc) {
            self.trace.push(Event::DcacheCleanInvalPoc { pa, size });
        }
    }

    fn icache_inval_pou(&mut self, pa: u64, size: u64) {
        if self.hook(Hook::IcacheInvalPou) {
            self.trace.push(Event::IcacheInvalPou { pa, size });
        }
    }

    fn has_page_count(&self) -> bool {
        self.hooks.page_count
    }

    fn has_dcache_clean_inval_poc(&self) -> bool {
        self.hooks.dcache_clean_inval_poc
    }

    fn has_icache_inval_pou(&self) -> bool {
        self.hooks.icache_inval_pou
    }
}

impl RustEnv {
    /// Access number `n` is the one the race waits for. Out of line: the
    /// `World` it hands over is a stack value whose address is taken, and in
    /// the ASan builds every function holding one gets a frame on ASan's fake
    /// stack at each call (`__asan_stack_malloc`), here every descriptor
    /// access of every walker it is inlined into.
    #[cold]
    #[inline(never)]
    fn reach_access(&mut self, n: u64, pa: u64, access: Access) {
        self.acc_stop = self.race.on_access(
            n,
            pa,
            access,
            World {
                arena: &mut self.arena,
                trace: &mut self.trace,
                rcu: &mut self.rcu,
            },
        );
    }
}

impl rp::Hw for RustEnv {
    #[inline]
    fn pte_access(&mut self, pa: u64, access: rp::Access) {
        let access = match access {
            rp::Access::ReadOnce => Access::ReadOnce,
            rp::Access::WriteOnce => Access::WriteOnce,
            rp::Access::Release => Access::Release,
            rp::Access::Cmpxchg => Access::Cmpxchg,
        };
        let n = self.acc.count;
        self.acc.count += 1;
        self.acc.digest = race::mix(self.acc.digest, pa.wrapping_sub(self.base_pa), access);
        if n == self.acc_stop {
            self.reach_access(n, pa, access);
        }
    }

    #[inline(always)]
    fn pte_store(&mut self, pa: u64, prev: u64, new: u64, kind: rp::StoreKind) {
        if let Some(m) = self.arena.check_store(pa) {
            self.trace.push(Event::Misuse(m));
        }
        let kind = match kind {
            rp::StoreKind::WriteOnce => StoreKind::WriteOnce,
            rp::StoreKind::Release => StoreKind::Release,
            rp::StoreKind::Cmpxchg { .. } => StoreKind::Cmpxchg,
        };
        self.trace.push(Event::Store {
            pa,
            old: prev,
            val: new,
            kind,
        });
    }

    fn tlbi_hyp(&mut self, op: rp::TlbiOp, operand: u64, level: i32) {
        let op = match op {
            rp::TlbiOp::Vae2is => TlbiHypOp::Vae2is,
            rp::TlbiOp::Vale2is => TlbiHypOp::Vale2is,
        };
        self.trace.push(Event::TlbiHyp { op, operand, level });
    }

    fn tlbi_sync_s1ish_hyp(&mut self) {
        self.trace.push(Event::TlbiSyncS1IshHyp);
    }

    fn tlb_flush_vmid(&mut self) {
        self.trace.push(Event::TlbFlushVmid);
    }

    fn tlb_flush_vmid_ipa(&mut self, ipa: u64, level: i32) {
        self.trace.push(Event::TlbFlushVmidIpa {
            ipa,
            level,
            nsh: false,
        });
    }

    fn tlb_flush_vmid_ipa_nsh(&mut self, ipa: u64, level: i32) {
        self.trace.push(Event::TlbFlushVmidIpa {
            ipa,
            level,
            nsh: true,
        });
    }

    fn tlb_flush_vmid_range(&mut self, start: u64, pages: u64) {
        self.trace.push(Event::TlbFlushVmidRange { start, pages });
    }

    fn dsb(&mut self, kind: rp::Barrier) {
        use rp::Barrier as B;
        let b = match kind {
            B::Sy => Barrier::Sy,
            B::St => Barrier::St,
            B::Ld => Barrier::Ld,
            B::Ish => Barrier::Ish,
            B::IshSt => Barrier::IshSt,
            B::IshLd => Barrier::IshLd,
            B::Nsh => Barrier::Nsh,
            B::NshSt => Barrier::NshSt,
            B::NshLd => Barrier::NshLd,
            B::Osh => Barrier::Osh,
            B::OshSt => Barrier::OshSt,
            B::OshLd => Barrier::OshLd,
        };
        self.trace.push(Event::Dsb(b));
    }

    fn isb(&mut self) {
        self.trace.push(Event::Isb);
    }

    fn warn(&mut self, once: bool, loc: &'static Location<'static>) {
        self.trace.push(Event::Warn {
            once,
            loc: WarnLoc {
                file: loc.file(),
                line: loc.line(),
            },
        });
    }

    fn rcu_read_lock(&mut self) {
        self.rcu_depth += 1;
        self.trace.push(Event::Rcu { lock: true });
    }

    fn rcu_read_unlock(&mut self) {
        self.rcu_depth -= 1;
        self.trace.push(Event::Rcu { lock: false });
    }

    fn rcu_read_lock_held(&mut self) -> bool {
        self.rcu_depth > 0
    }
}

/// The harness's force_pte policy as a rust-pgtable callback; it records
/// into the environment's trace exactly as the C callback does.
pub struct ForcePteAdapter(pub ForcePte);

impl rp::ForcePteCb<RustEnv> for ForcePteAdapter {
    fn force_pte(&mut self, env: &mut RustEnv, addr: u64, end: u64, prot: rp::Prot) -> bool {
        self.0.decide(addr, end, prot.bits(), &mut env.trace)
    }
}

/// rust-pgtable's kernel line for the model's.
pub fn rp_line(line: KernelLine) -> rp::KernelLine {
    match line {
        KernelLine::V6_12 => rp::KernelLine::V6_12,
        KernelLine::V7_3 => rp::KernelLine::V7_3,
    }
}

/// rust-pgtable's configuration for a stream.
pub fn rp_config(cfg: &Config) -> rp::Config {
    let f = cfg.features;
    rp::Config::new(
        side::rp_granule(cfg.granule),
        match cfg.context {
            Context::Nvhe => rp::Context::NvheHyp,
            Context::Kernel => rp::Context::Kernel,
        },
        rp::Features {
            lpa2: f.lpa2,
            stage2_fwb: f.fwb,
            tlb_range: f.tlb_range,
            bti_kernel: f.bti,
            hvhe: f.hvhe,
            ampere_ac03_workaround: f.ampere_ac03,
            xnx: f.xnx,
        },
    )
    .with_line(rp_line(cfg.kernel))
}

enum Table {
    Hyp(rp::HypPgtable<RustEnv>),
    Stage2(rp::Stage2Pgtable<RustEnv, ForcePteAdapter>),
}

/// rust-pgtable running one stream.
pub struct RustSide {
    cfg: Config,
    table: Table,
    /// Tables made by create_unlinked and not freed yet: (pa, level).
    unlinked: Vec<(u64, i8)>,
}

fn errno(r: Result<(), rp::Error>) -> i64 {
    match r {
        Ok(()) => 0,
        Err(e) => i64::from(e.to_errno()),
    }
}

fn int(v: i64, trace: Trace) -> Outcome {
    Outcome::new(Value::Int(v), trace)
}

impl RustSide {
    /// rust-pgtable set up for `cfg`, over a fresh arena.
    pub fn for_stream(cfg: &Config) -> RustSide {
        let rcfg = rp_config(cfg);
        let env = RustEnv::new(side::arena_for(cfg), rcfg)
            .for_caller(&CallerProfile::of(cfg), side::format_of(cfg))
            .with_injector(cfg);
        let table = match cfg.stage {
            Stage::Hyp => Table::Hyp(rp::HypPgtable::new(env, rcfg)),
            Stage::Stage2 => Table::Stage2(rp::Stage2Pgtable::new(env, rcfg)),
        };
        RustSide {
            cfg: cfg.clone(),
            table,
            unlinked: Vec::new(),
        }
    }

    fn env(&mut self) -> &mut RustEnv {
        match &mut self.table {
            Table::Hyp(t) => t.env_mut(),
            Table::Stage2(t) => t.env_mut(),
        }
    }

    fn env_ref(&self) -> &RustEnv {
        match &self.table {
            Table::Hyp(t) => t.env(),
            Table::Stage2(t) => t.env(),
        }
    }

    fn trace(&mut self) -> Trace {
        self.env().take_trace()
    }

    /// Ends a step's trace, `trace`, with its accesses (recorded like any
    /// event: a comparison under way sees it too).
    fn record_accesses(&mut self, trace: &mut Trace) {
        let acc = self.env().acc.event();
        self.env().trace.push(acc);
        self.env().trace.append_to(trace);
    }

    /// Ends the RCU grace period: the callbacks of the deferred
    /// free_unlinked_table calls run (as mmu.c's
    /// `stage2_free_unlinked_table_rcu_cb`). Returns their trace.
    fn grace_period(&mut self) -> Trace {
        let done = self.env().end_grace_period();
        if done.is_empty() {
            return Trace::new();
        }
        let mut trace = self.trace();
        for (pa, level) in done {
            self.env().trace.push(Event::RcuCallback { pa, level });
            self.s2().free_unlinked(pa, rp::Level(level));
            self.env().trace.append_to(&mut trace);
        }
        trace
    }

    fn s2(&mut self) -> &mut rp::Stage2Pgtable<RustEnv, ForcePteAdapter> {
        match &mut self.table {
            Table::Stage2(t) => t,
            Table::Hyp(_) => {
                unreachable!("stage-2 op on a hyp table (precondition checks the stage)")
            }
        }
    }

    fn hyp(&mut self) -> &mut rp::HypPgtable<RustEnv> {
        match &mut self.table {
            Table::Hyp(t) => t,
            Table::Stage2(_) => {
                unreachable!("hyp op on a stage-2 table (precondition checks the stage)")
            }
        }
    }

    /// Runs a stage-2 op with the op's memcache and reports what is left.
    fn with_mc(
        &mut self,
        mc: Option<u32>,
        f: impl FnOnce(&mut rp::Stage2Pgtable<RustEnv, ForcePteAdapter>, Option<&mut Memcache>) -> Value,
    ) -> Outcome {
        let mut m = side::memcache(mc);
        let value = f(self.s2(), m.as_mut());
        let mut o = Outcome::new(value, self.trace());
        o.memcache_left = m.map(|m| m.nobjs);
        o
    }
}

impl Side for RustSide {
    fn label(&self) -> String {
        "Rust".into()
    }

    fn apply_raced(
        &mut self,
        op: &crate::opstream::Op,
        race: Option<&crate::opstream::Race>,
    ) -> Outcome {
        let root = self.root();
        self.env().begin_op(Some(op), race, root);
        let mut o = op.dispatch(self);
        self.env().end_walk();
        // Moved, not taken: taking would drain the pool of spare traces.
        self.env().trace.append_to(&mut o.trace);
        crate::events::append(&mut o.trace, self.grace_period());
        self.record_accesses(&mut o.trace);
        o
    }

    fn keep_accesses(&mut self, on: bool) {
        self.env().race.keep_log(on);
    }

    fn take_accesses(&mut self) -> Option<Vec<(u64, Access)>> {
        self.env().race.take_log()
    }

    fn init(&mut self) -> Outcome {
        let cfg = self.cfg.clone();
        let ia_bits = u32::from(cfg.ia_bits);
        match &mut self.table {
            Table::Hyp(t) => {
                let v = errno(t.init(ia_bits));
                int(v, t.env_mut().take_trace())
            }
            Table::Stage2(t) => {
                let (mmfr0, mmfr1) = side::id_registers(&cfg);
                let vtcr =
                    side::with_start_level(&cfg, rp::get_vtcr(t.cfg(), mmfr0, mmfr1, ia_bits));
                let fp = side::force_pte_for(&cfg);
                let cb = fp.installed().then_some(ForcePteAdapter(fp));
                let flags = rp::Stage2Flags::from_bits_retain(side::stage2_flags(&cfg));
                let ret = errno(t.init(vtcr, flags, cb)) as i32;
                Outcome::new(Value::Stage2Init { vtcr, ret }, t.env_mut().take_trace())
            }
        }
    }

    fn destroy(&mut self) -> Outcome {
        self.env().begin_op(None, None, None);
        let mut trace = self.grace_period();
        for (pa, level) in std::mem::take(&mut self.unlinked) {
            self.s2().free_unlinked(pa, rp::Level(level));
        }
        let cfg = self.cfg.clone();
        match &mut self.table {
            Table::Hyp(t) if t.pgd().is_some() => t.destroy(),
            Table::Stage2(t) if t.pgd().is_some() && cfg.teardown != Teardown::Destroy => {
                for (addr, size) in side::teardown_chunks(&cfg, t.geometry().ia_bits) {
                    t.destroy_range(addr, size);
                }
                t.destroy_pgd();
            }
            Table::Stage2(t) if t.pgd().is_some() => t.destroy(),
            _ => {}
        }
        crate::events::append(&mut trace, self.trace());
        self.record_accesses(&mut trace);
        Outcome::new(Value::Unit, trace)
    }

    fn arena(&self) -> &Arena {
        &self.env_ref().arena
    }

    fn compare_next(&mut self, first: Trace) -> Result<(), Trace> {
        self.env().trace.compare_with(first);
        Ok(())
    }

    fn compared(&mut self) -> (Trace, Option<Trace>) {
        self.env().trace.end_compare()
    }

    fn root(&self) -> Option<Root> {
        let (geom, pages) = match &self.table {
            Table::Hyp(t) => (t.geometry(), 1),
            Table::Stage2(t) => {
                let g = t.geometry();
                (g, g.pgd_pages(t.cfg()))
            }
        };
        Some(Root {
            pgd: geom.pgd?,
            pages,
            start_level: geom.start_level.get(),
        })
    }
}

impl OpHandler for RustSide {
    fn hyp_map(&mut self, addr: u64, size: u64, phys: u64, prot: Prot) -> Outcome {
        let v = errno(
            self.hyp()
                .map(addr, size, phys, rp::Prot::from_bits_retain(prot)),
        );
        int(v, self.trace())
    }

    fn hyp_unmap(&mut self, addr: u64, size: u64) -> Outcome {
        let v = self.hyp().unmap(addr, size);
        Outcome::new(Value::U64(v), self.trace())
    }

    fn stage2_map(
        &mut self,
        addr: u64,
        size: u64,
        phys: u64,
        prot: Prot,
        mc: Option<u32>,
        flags: u8,
    ) -> Outcome {
        self.with_mc(mc, |t, m| {
            Value::Int(errno(t.map(
                addr,
                size,
                phys,
                rp::Prot::from_bits_retain(prot),
                m,
                rp::WalkFlags::from_bits_retain(flags.into()),
            )))
        })
    }

    fn stage2_set_owner(&mut self, addr: u64, size: u64, mc: Option<u32>, owner_id: u8) -> Outcome {
        self.with_mc(mc, |t, m| {
            Value::Int(errno(t.set_owner(addr, size, m, owner_id)))
        })
    }

    fn stage2_unmap(&mut self, addr: u64, size: u64) -> Outcome {
        let v = errno(self.s2().unmap(addr, size));
        int(v, self.trace())
    }

    fn stage2_wrprotect(&mut self, addr: u64, size: u64) -> Outcome {
        let v = errno(self.s2().wrprotect(addr, size));
        int(v, self.trace())
    }

    fn stage2_mkyoung(&mut self, addr: u64) -> Outcome {
        let v = self.s2().mkyoung(addr).0;
        Outcome::new(Value::U64(v), self.trace())
    }

    fn stage2_test_clear_young(&mut self, addr: u64, size: u64, mkold: bool) -> Outcome {
        let v = self.s2().test_clear_young(addr, size, mkold);
        Outcome::new(Value::Bool(v), self.trace())
    }

    fn stage2_relax_perms(&mut self, addr: u64, prot: Prot) -> Outcome {
        let v = errno(
            self.s2()
                .relax_perms(addr, rp::Prot::from_bits_retain(prot)),
        );
        int(v, self.trace())
    }

    fn stage2_flush(&mut self, addr: u64, size: u64) -> Outcome {
        let v = errno(self.s2().flush(addr, size));
        int(v, self.trace())
    }

    fn tlb_flush_vmid_range(&mut self, addr: u64, size: u64) -> Outcome {
        self.s2().tlb_flush_vmid_range(addr, size);
        Outcome::new(Value::Unit, self.trace())
    }

    fn stage2_split(&mut self, addr: u64, size: u64, nobjs: u32) -> Outcome {
        let mut m = Memcache { nobjs };
        let v = errno(self.s2().split(addr, size, &mut m));
        let mut o = int(v, self.trace());
        o.memcache_left = Some(m.nobjs);
        o
    }

    fn stage2_create_unlinked(
        &mut self,
        level: i8,
        phys: u64,
        prot: Prot,
        mc: Option<u32>,
        force_pte: bool,
    ) -> Outcome {
        let prot = rp::Prot::from_bits_retain(prot);
        let o = self.with_mc(mc, |t, m| {
            let r = t.create_unlinked(phys, rp::Level(level), prot, m, force_pte);
            Value::Table(r.map_err(|e| e.to_errno()))
        });
        if let Value::Table(Ok(pa)) = o.value {
            self.unlinked.push((pa, level));
        }
        o
    }

    fn stage2_free_unlinked(&mut self, index: u8) -> Outcome {
        if let Some((pa, level)) = side::take_unlinked(&mut self.unlinked, index) {
            self.s2().free_unlinked(pa, rp::Level(level));
        }
        Outcome::new(Value::Unit, self.trace())
    }

    fn walk(&mut self, addr: u64, size: u64, flags: u8, script: VisitScript) -> Outcome {
        let mut visits = crate::events::fresh_visits();
        let mut visitor = |ctx: &mut rp::VisitCtx<'_, RustEnv>, visit: rp::walk::Visit| {
            let r = side::script_result(script, visits.len());
            visits.push(Visit {
                kind: visit.as_flag().bits(),
                ptep: ctx.ptep,
                old: ctx.old.0,
                start: ctx.start,
                addr: ctx.addr,
                end: ctx.end,
                level: ctx.level.get(),
                flags: ctx.flags.bits(),
            });
            match rp::Error::from_errno(r) {
                None => Ok(()),
                Some(e) => Err(e),
            }
        };
        let wf = rp::WalkFlags::from_bits_retain(flags.into());
        let ret = match &mut self.table {
            Table::Hyp(t) => t.walk(addr, size, wf, &mut visitor),
            Table::Stage2(t) => t.walk(addr, size, wf, &mut visitor),
        };
        let value = Value::Walk {
            ret: errno(ret) as i32,
            visits,
        };
        Outcome::new(value, self.trace())
    }

    fn get_leaf(&mut self, addr: u64) -> Outcome {
        let r = match &mut self.table {
            Table::Hyp(t) => t.get_leaf(addr),
            Table::Stage2(t) => t.get_leaf(addr),
        };
        let value = match r {
            Ok((pte, level)) => Value::Leaf {
                ret: 0,
                pte: pte.0,
                level: level.get(),
            },
            Err(e) => Value::Leaf {
                ret: e.to_errno(),
                pte: 0,
                level: 0,
            },
        };
        Outcome::new(value, self.trace())
    }

    fn stage2_annotate(
        &mut self,
        addr: u64,
        size: u64,
        mc: Option<u32>,
        kind: u8,
        annotation: u64,
    ) -> Outcome {
        let ty = rp::InvalidPteType(kind.into());
        self.with_mc(mc, |t, m| {
            Value::Int(errno(t.annotate(addr, size, m, ty, annotation)))
        })
    }

    fn stage2_mkyoung_flags(&mut self, addr: u64, flags: u8) -> Outcome {
        self.s2()
            .mkyoung_with_flags(addr, rp::WalkFlags::from_bits_retain(flags.into()));
        Outcome::new(Value::Unit, self.trace())
    }

    fn stage2_relax_perms_flags(&mut self, addr: u64, prot: Prot, flags: u8) -> Outcome {
        let v = errno(self.s2().relax_perms_with_flags(
            addr,
            rp::Prot::from_bits_retain(prot),
            rp::WalkFlags::from_bits_retain(flags.into()),
        ));
        int(v, self.trace())
    }

    fn pte_prot(&mut self, pte: u64) -> Outcome {
        let v = match &self.table {
            Table::Hyp(t) => rp::hyp_pte_prot(t.cfg(), rp::Pte(pte)).bits(),
            Table::Stage2(t) => rp::kvm_pgtable_stage2_pte_prot(t.cfg(), rp::Pte(pte)).bits(),
        };
        Outcome::new(Value::U64(v), self.trace())
    }

    fn get_vtcr(&mut self, mmfr0: u64, mmfr1: u64, phys_shift: u32) -> Outcome {
        let v = rp::get_vtcr(&rp_config(&self.cfg), mmfr0, mmfr1, phys_shift);
        Outcome::new(Value::U64(v), self.trace())
    }

    fn pgd_size(&mut self, vtcr: u64) -> Outcome {
        let v = rp::stage2_pgd_size(side::rp_granule(self.cfg.granule), vtcr);
        Outcome::new(Value::U64(v), self.trace())
    }
}
