// SPDX-License-Identifier: GPL-2.0-only
//! A safe API over the kernel's pgtable.c, compiled for every (execution
//! context, granule) pair, and the [`Side`] that runs op streams on it.
//!
//! Every call runs with this side's [`Arena`] as the memory behind
//! `kvm_pgtable_mm_ops`, its CPU features in the C runtime, and returns its
//! result together with the [`Trace`] of side effects it caused.
//!
//! # Memory discipline
//!
//! C keeps pointers into this side's state between calls (`mmu->pgt`,
//! `pgt->mm_ops`, `pgt->pgd`) and calls back into Rust while it runs. So the
//! state lives behind a raw pointer made once ([`CSide::new`]) and is only
//! ever reached through shared references: what C writes sits in
//! `UnsafeCell`s, what the callbacks change sits in `Cell`/`RefCell`s. No
//! `&mut` to that state exists while C runs, and none aliases the pointers
//! C holds.
//!
//! # Example
//! ```
//! use kvm_pgtable_diff::arena::{Arena, Geometry, PageSource};
//! use kvm_pgtable_diff::c_side::{Build, CSide, CpuFeatures, Granule};
//! use kvm_pgtable_diff::force_pte::ForcePte;
//! use kvm_pgtable_diff::opstream::KernelLine;
//!
//! let arena = Arena::new(Geometry::new(4096, 64), PageSource::Pool, None);
//! let build = Build::of(KernelLine::V6_12, true, Granule::K4);
//! let mut c = CSide::new(build, CpuFeatures::default(), arena, ForcePte::None);
//! assert_eq!(c.hyp_init(48).ret, 0);
//! let map = c.hyp_map(0x1000, 0x1000, 0x8000_1000, 0b110 /* RW */);
//! assert_eq!(map.ret, 0);
//! c.hyp_destroy();
//! assert!(c.arena().is_empty());
//! ```

mod callbacks;
pub(crate) mod ffi;

/// The `KPD_HOOK_*` bits of [`CSide::with_hooks`]: which optional mm_ops
/// hooks the table's caller installs.
pub mod hooks {
    use super::ffi;
    pub const DCACHE_CLEAN_INVAL_POC: u32 = ffi::KPD_HOOK_DCACHE_CLEAN_INVAL_POC;
    pub const ICACHE_INVAL_POU: u32 = ffi::KPD_HOOK_ICACHE_INVAL_POU;
    pub const PAGE_COUNT: u32 = ffi::KPD_HOOK_PAGE_COUNT;
    pub const FREE_UNLINKED_TABLE: u32 = ffi::KPD_HOOK_FREE_UNLINKED_TABLE;
    pub const ALL: u32 = ffi::KPD_HOOKS_ALL;
}

use core::ffi::c_void;
use std::ptr;

use crate::arena::{Arena, Memcache};
use crate::caller::CallerProfile;
use crate::events::{Marks, Trace, Visit};
use crate::force_pte::ForcePte;
use crate::opstream::{Config, Context, KernelLine, OpHandler, Prot, Stage, Teardown, VisitScript};
use crate::results::{Outcome, Value};
use crate::side::{self, Root, Side};
use callbacks::{CEnv, VisitorCtx};

/// The translation granule of a C build (the op-stream model's type).
pub use crate::opstream::Granule;

/// A kernel tree compiled into this binary (six builds).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SetInfo {
    /// "6.12", "7.3", or "<line>-base" for the baseline of a C-against-C run.
    pub name: &'static str,
    /// The kernel.lock line it stands for.
    pub line: &'static str,
    /// Its API generation (`KPD_GEN`: 612 or 701).
    pub generation: u32,
    /// Where it came from: the pinned Debian package or a `LINUX_SRC` tree.
    pub source: &'static str,
    pub pinned: bool,
    pub pgtable_c_sha256: &'static str,
}

/// The kernel trees compiled into this binary.
pub fn sets() -> &'static [SetInfo] {
    ffi::SETS
}

/// The tree compiled for `set` (a line name, or "<line>-base").
pub fn set(name: &str) -> Option<&'static SetInfo> {
    ffi::SETS.iter().find(|s| s.name == name)
}

/// The C-against-C baseline compiled in, if this binary was built for one
/// (`KPD_AGAINST`): the tree under test is the set of the same line.
pub fn against() -> Option<&'static SetInfo> {
    ffi::SETS.iter().find(|s| s.name.ends_with("-base"))
}

/// Which compiled copy of pgtable.c to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Build {
    /// The set (kernel tree) the build belongs to.
    pub set: &'static str,
    /// nVHE hypervisor context (`__KVM_NVHE_HYPERVISOR__`) or the kernel context.
    pub nvhe: bool,
    pub granule: Granule,
}

impl Build {
    /// The build of kernel line `line`.
    pub fn of(line: KernelLine, nvhe: bool, granule: Granule) -> Build {
        Build {
            set: line.name(),
            nvhe,
            granule,
        }
    }

    /// The build a stream's configuration runs on.
    pub fn for_config(cfg: &Config) -> Build {
        Build::of(cfg.kernel, cfg.context == Context::Nvhe, cfg.granule)
    }
}

/// CPU features the C code queries, set for every call.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CpuFeatures {
    pub stage2_fwb: bool,
    pub tlb_range: bool,
    pub lpa2: bool,
    pub bti_kernel: bool,
    pub hvhe: bool,
    pub ampere_ac03: bool,
    /// FEAT_XNX (7.x only).
    pub xnx: bool,
}

impl CpuFeatures {
    /// The features a stream's configuration advertises.
    pub fn for_config(cfg: &Config) -> CpuFeatures {
        let f = cfg.features;
        CpuFeatures {
            stage2_fwb: f.fwb,
            tlb_range: f.tlb_range,
            lpa2: f.lpa2,
            bti_kernel: f.bti,
            hvhe: f.hvhe,
            ampere_ac03: f.ampere_ac03,
            xnx: f.xnx,
        }
    }
}

/// A call's result and the side effects it caused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Call<T> {
    pub ret: T,
    pub trace: Trace,
    /// The marks of `trace`'s events.
    pub marks: Marks,
}

impl<T> Call<T> {
    /// The outcome of the call, its value made from the return value.
    fn outcome(self, value: impl FnOnce(T) -> Value) -> Outcome {
        Outcome::marked(value(self.ret), (self.trace, self.marks))
    }

    /// The trace and its marks, to append to an outcome.
    fn events(self) -> (Trace, Option<Marks>) {
        (self.trace, Some(self.marks))
    }

    /// The return value alone, the trace handed back for reuse (the pure
    /// functions record nothing worth keeping).
    fn value(self) -> T {
        crate::events::recycle(self.trace);
        self.ret
    }
}

/// The build's entry points, and those of its teardown copy (see `teardown` in [`CSide`]).
fn api_for(build: Build) -> (&'static ffi::kpd_api, &'static ffi::kpd_api) {
    ffi::builds()
        .into_iter()
        .find(|(set, nvhe, shift, _, _)| {
            *set == build.set && *nvhe == build.nvhe && *shift == build.granule.page_shift()
        })
        .map(|(_, _, _, api, teardown)| (api, teardown))
        .unwrap_or_else(|| panic!("no C build of set {} is linked in", build.set))
}

/// What a memcache argument becomes at the ABI: negative is NULL.
fn mc_arg(mc: Option<Memcache>) -> i64 {
    mc.map_or(-1, |m| i64::from(m.nobjs))
}

/// One instance of the kernel's page-table code with its own arena.
///
/// The table's C structures live in a state glue.c allocates and only C
/// dereferences; Rust holds the opaque pointer. The callbacks reach this
/// side's [`CEnv`] through shared references only (see `callbacks`).
pub struct CSide {
    api: &'static ffi::kpd_api,
    /// The destroy entry points come from a second copy of the same build: the same
    /// pgtable.c, glue.c and struct layouts, compiled without libFuzzer's compare hooks
    /// in fuzz builds that keep them elsewhere (`KPD_C_TRACE_CMP=1`; `teardown_copies` in
    /// build.rs), `api` itself otherwise. The copy has no state of its own: it works on
    /// this side's table state like `api`.
    teardown: &'static ffi::kpd_api,
    state: *mut ffi::kpd_state,
    env: CEnv,
    features: CpuFeatures,
    /// The stream configuration this side runs ([`Side`] use only).
    cfg: Option<Config>,
    /// Tables made by create_unlinked and not freed yet: (pa, level).
    unlinked: Vec<(u64, i8)>,
    /// Pages of the stage-2 root, from `kvm_pgtable_stage2_pgd_size()` at init.
    pgd_pages: u32,
}

impl Drop for CSide {
    fn drop(&mut self) {
        // SAFETY: `state` came from this build's state_new and is freed once;
        // no C call is running (we hold `&mut self`).
        unsafe { (self.api.state_free.unwrap())(self.state) }
    }
}

impl CSide {
    /// A C side over `arena` with every mm_ops hook installed. The table is
    /// created by `hyp_init` or `stage2_init`.
    pub fn new(build: Build, features: CpuFeatures, arena: Arena, force_pte: ForcePte) -> CSide {
        CSide::with_hooks(build, features, arena, force_pte, hooks::ALL)
    }

    /// A C side whose table gets only the optional mm_ops hooks in `hooks`
    /// (`KPD_HOOK_*`), as a real caller installs them.
    pub fn with_hooks(
        build: Build,
        features: CpuFeatures,
        arena: Arena,
        force_pte: ForcePte,
        hooks: u32,
    ) -> CSide {
        let (api, teardown) = api_for(build);
        // SAFETY: state_new allocates a zeroed table state (it aborts rather
        // than return NULL).
        let state = unsafe { (api.state_new.unwrap())(hooks) };
        let env = CEnv::new(arena, force_pte, api);
        env.set_state(state);
        CSide {
            api,
            teardown,
            state,
            env,
            features,
            cfg: None,
            unlinked: Vec::new(),
            pgd_pages: 1,
        }
    }

    /// The generation of the API this build implements (`KPD_GEN`).
    pub fn generation(&self) -> u32 {
        self.api.generation as u32
    }

    /// The kernel's own values of the constants the harness models.
    pub fn kernel_consts(&self) -> ffi::kpd_kernel_consts {
        // SAFETY: every build points `consts` at a static table.
        unsafe { *self.api.consts }
    }

    pub fn build(&self) -> Build {
        let granule = match self.api.page_shift {
            12 => Granule::K4,
            14 => Granule::K16,
            _ => Granule::K64,
        };
        // SAFETY: `name` is a static C string "<set>_<ctx>_<granule>".
        let name = unsafe { std::ffi::CStr::from_ptr(self.api.name) }
            .to_str()
            .unwrap_or("?");
        let set = ffi::SETS
            .iter()
            .map(|s| s.name)
            .find(|s| name.starts_with(&format!("{s}_")))
            .unwrap_or("?");
        Build {
            set,
            nvhe: self.api.nvhe,
            granule,
        }
    }

    pub fn arena(&self) -> &Arena {
        self.env.arena_ref()
    }

    fn info(&self) -> ffi::kpd_info {
        let mut info = ffi::kpd_info::default();
        // SAFETY: reads the live state; no C call is running.
        unsafe { (self.api.info.unwrap())(self.state, &mut info) };
        info
    }

    /// The root table's PA (None before init / after destroy).
    pub fn pgd(&self) -> Option<u64> {
        let pgd = self.info().pgd;
        (!pgd.is_null()).then(|| self.arena().virt_to_phys(pgd.cast()))
    }

    /// `ia_bits` and `start_level` of the table.
    pub fn geometry(&self) -> (u32, i8) {
        let i = self.info();
        (i.ia_bits, i.start_level)
    }

    /// The stage-2 VTCR the table was created with.
    pub fn vtcr(&self) -> u64 {
        self.info().vtcr
    }

    /// Pages left in the op memcache after the last call that used one.
    pub fn memcache_left(&self) -> u32 {
        self.info().mc_nobjs.max(0) as u32
    }

    /// Pages left in `mmu->split_page_cache`.
    pub fn split_cache_left(&self) -> u32 {
        self.info().split_nobjs.max(0) as u32
    }

    /// Runs `f` with this side's environment current and collects the
    /// trace. `f` gets the build's entry points and the table state.
    fn call<T>(
        &mut self,
        f: impl FnOnce(&'static ffi::kpd_api, *mut ffi::kpd_state) -> T,
    ) -> Call<T> {
        let (api, state) = (self.api, self.state);
        let ret = callbacks::with_current(&self.env, self.features, || f(api, state));
        let (trace, marks) = self.env.take_trace();
        Call { ret, trace, marks }
    }

    // Every call below passes this side's live table state to the entry
    // point of this side's build; glue.c checks nothing else is needed.

    // ---- hyp stage-1 ----

    pub fn hyp_init(&mut self, va_bits: u32) -> Call<i32> {
        // SAFETY: see above.
        self.call(|a, s| unsafe { (a.hyp_init.unwrap())(s, va_bits) })
    }

    pub fn hyp_map(&mut self, addr: u64, size: u64, phys: u64, prot: u64) -> Call<i32> {
        // SAFETY: see above.
        self.call(|a, s| unsafe { (a.hyp_map.unwrap())(s, addr, size, phys, prot) })
    }

    pub fn hyp_unmap(&mut self, addr: u64, size: u64) -> Call<u64> {
        // SAFETY: see above.
        self.call(|a, s| unsafe { (a.hyp_unmap.unwrap())(s, addr, size) })
    }

    /// Destroys the table (nothing when there is none).
    pub fn hyp_destroy(&mut self) -> Call<()> {
        let f = self.teardown.hyp_destroy.unwrap();
        // SAFETY: see above (the teardown copy takes the same state); glue.c
        // skips a table without a root.
        self.call(|_, s| unsafe { f(s) })
    }

    pub fn hyp_pte_prot(&mut self, pte: u64) -> u64 {
        // SAFETY: a pure function of its argument (it reads CPU features).
        self.call(|a, _| unsafe { (a.hyp_pte_prot.unwrap())(pte) })
            .value()
    }

    // ---- stage-2 ----

    pub fn get_vtcr(&mut self, mmfr0: u64, mmfr1: u64, phys_shift: u32) -> u64 {
        // SAFETY: pure.
        self.call(|a, _| unsafe { (a.get_vtcr.unwrap())(mmfr0, mmfr1, phys_shift) })
            .value()
    }

    pub fn stage2_pgd_size(&mut self, vtcr: u64) -> u64 {
        // SAFETY: pure.
        self.call(|a, _| unsafe { (a.stage2_pgd_size.unwrap())(vtcr) })
            .value()
    }

    /// `__kvm_pgtable_stage2_init` with `mmu->vtcr = vtcr`; the force_pte_cb
    /// is installed when this side's policy is not `ForcePte::None`.
    pub fn stage2_init(&mut self, vtcr: u64, flags: u32) -> Call<i32> {
        let cb = self.env.force_pte_installed();
        // SAFETY: see above.
        self.call(|a, s| unsafe { (a.stage2_init.unwrap())(s, vtcr, flags, cb) })
    }

    /// Destroys the table (nothing when there is none).
    pub fn stage2_destroy(&mut self) -> Call<()> {
        let f = self.teardown.stage2_destroy.unwrap();
        // SAFETY: see above (the teardown copy takes the same state); glue.c
        // skips a table without a root.
        self.call(|_, s| unsafe { f(s) })
    }

    /// 7.x: `kvm_pgtable_stage2_destroy_range`.
    pub fn stage2_destroy_range(&mut self, addr: u64, size: u64) -> Call<()> {
        let f = self
            .teardown
            .stage2_destroy_range
            .expect("destroy_range is a 7.x entry point");
        // SAFETY: see above (the teardown copy takes the same state).
        self.call(|_, s| unsafe { f(s, addr, size) })
    }

    /// 7.x: `kvm_pgtable_stage2_destroy_pgd` (nothing when there is no root).
    pub fn stage2_destroy_pgd(&mut self) -> Call<()> {
        let f = self
            .teardown
            .stage2_destroy_pgd
            .expect("destroy_pgd is a 7.x entry point");
        // SAFETY: see above (the teardown copy takes the same state).
        self.call(|_, s| unsafe { f(s) })
    }

    pub fn stage2_map(
        &mut self,
        addr: u64,
        size: u64,
        phys: u64,
        prot: u64,
        mc: Option<Memcache>,
        flags: u32,
    ) -> Call<i32> {
        let mc = mc_arg(mc);
        // SAFETY: see above.
        self.call(|a, s| unsafe { (a.stage2_map.unwrap())(s, addr, size, phys, prot, mc, flags) })
    }

    /// 6.12: `kvm_pgtable_stage2_set_owner`.
    pub fn stage2_set_owner(
        &mut self,
        addr: u64,
        size: u64,
        mc: Option<Memcache>,
        owner: u8,
    ) -> Call<i32> {
        let f = self
            .api
            .stage2_set_owner
            .expect("set_owner is a 6.12 entry point");
        let mc = mc_arg(mc);
        // SAFETY: see above.
        self.call(|_, s| unsafe { f(s, addr, size, mc, owner) })
    }

    /// 7.x: `kvm_pgtable_stage2_annotate`.
    pub fn stage2_annotate(
        &mut self,
        addr: u64,
        size: u64,
        mc: Option<Memcache>,
        kind: u32,
        annotation: u64,
    ) -> Call<i32> {
        let f = self
            .api
            .stage2_annotate
            .expect("annotate is a 7.x entry point");
        let mc = mc_arg(mc);
        // SAFETY: see above.
        self.call(|_, s| unsafe { f(s, addr, size, mc, kind, annotation) })
    }

    pub fn stage2_unmap(&mut self, addr: u64, size: u64) -> Call<i32> {
        // SAFETY: see above.
        self.call(|a, s| unsafe { (a.stage2_unmap.unwrap())(s, addr, size) })
    }

    pub fn stage2_wrprotect(&mut self, addr: u64, size: u64) -> Call<i32> {
        // SAFETY: see above.
        self.call(|a, s| unsafe { (a.stage2_wrprotect.unwrap())(s, addr, size) })
    }

    /// `kvm_pgtable_stage2_mkyoung`: 6.12 returns the old descriptor and
    /// ignores `flags` (it walks with HANDLE_FAULT | SHARED); 7.x walks with
    /// `flags` and returns nothing (0 here).
    pub fn stage2_mkyoung(&mut self, addr: u64, flags: u32) -> Call<u64> {
        // SAFETY: see above.
        self.call(|a, s| unsafe { (a.stage2_mkyoung.unwrap())(s, addr, flags) })
    }

    pub fn stage2_test_clear_young(&mut self, addr: u64, size: u64, mkold: bool) -> Call<bool> {
        // SAFETY: see above.
        self.call(|a, s| unsafe { (a.stage2_test_clear_young.unwrap())(s, addr, size, mkold) })
    }

    /// `kvm_pgtable_stage2_relax_perms`; `flags` is 7.x's walk flags
    /// (6.12 ignores it).
    pub fn stage2_relax_perms(&mut self, addr: u64, prot: u64, flags: u32) -> Call<i32> {
        // SAFETY: see above.
        self.call(|a, s| unsafe { (a.stage2_relax_perms.unwrap())(s, addr, prot, flags) })
    }

    pub fn stage2_flush(&mut self, addr: u64, size: u64) -> Call<i32> {
        // SAFETY: see above.
        self.call(|a, s| unsafe { (a.stage2_flush.unwrap())(s, addr, size) })
    }

    pub fn tlb_flush_vmid_range(&mut self, addr: u64, size: u64) -> Call<()> {
        // SAFETY: see above.
        self.call(|a, s| unsafe { (a.tlb_flush_vmid_range.unwrap())(s, addr, size) })
    }

    /// `kvm_pgtable_stage2_split` with `mmu->split_page_cache.nobjs = nobjs`.
    pub fn stage2_split(&mut self, addr: u64, size: u64, nobjs: u32) -> Call<i32> {
        // SAFETY: see above.
        self.call(|a, s| unsafe { (a.stage2_split.unwrap())(s, addr, size, nobjs) })
    }

    /// Returns the new table's PA, or the negative errno.
    pub fn stage2_create_unlinked(
        &mut self,
        phys: u64,
        level: i8,
        prot: u64,
        mc: Option<Memcache>,
        force_pte: bool,
    ) -> Call<Result<u64, i32>> {
        let mc = mc_arg(mc);
        // SAFETY: see above.
        let c = self.call(|a, s| unsafe {
            (a.stage2_create_unlinked.unwrap())(s, phys, level, prot, mc, force_pte)
        });
        let v = c.ret as isize;
        let ret = if (-4095..0).contains(&v) {
            Err(v as i32)
        } else {
            Ok(self.arena().virt_to_phys(c.ret.cast()))
        };
        Call {
            ret,
            trace: c.trace,
            marks: c.marks,
        }
    }

    /// `kvm_pgtable_stage2_free_unlinked` of a table made by create_unlinked.
    pub fn stage2_free_unlinked(&mut self, table: u64, level: i8) -> Call<()> {
        let p: *mut c_void = self.arena().phys_to_virt(table).cast();
        // SAFETY: see above; the table came from create_unlinked on this side.
        self.call(|a, s| unsafe { (a.stage2_free_unlinked.unwrap())(s, p, level) })
    }

    pub fn stage2_pte_prot(&mut self, pte: u64) -> u64 {
        // SAFETY: pure.
        self.call(|a, _| unsafe { (a.stage2_pte_prot.unwrap())(pte) })
            .value()
    }

    // ---- walker ----

    /// `kvm_pgtable_walk` with `visitor` as the callback. The visitor's
    /// return value is the callback's (0 or a negative errno).
    pub fn walk(
        &mut self,
        addr: u64,
        size: u64,
        flags: u32,
        visitor: &mut dyn FnMut(&Visit) -> i32,
    ) -> Call<i32> {
        let mut vc = VisitorCtx { visitor };
        let arg: *mut c_void = ptr::addr_of_mut!(vc).cast();
        // SAFETY: see above; `vc` outlives the walk and is reached only
        // through `arg` while C runs.
        self.call(|a, s| unsafe { (a.walk.unwrap())(s, addr, size, flags, arg) })
    }

    /// `kvm_pgtable_get_leaf`: (ret, pte, level).
    pub fn get_leaf(&mut self, addr: u64) -> Call<(i32, u64, i8)> {
        self.call(|a, s| {
            let (mut pte, mut level) = (0u64, 0i8);
            // SAFETY: see above; out-pointers are valid locals.
            let r = unsafe { (a.get_leaf.unwrap())(s, addr, &mut pte, &mut level) };
            (r, pte, level)
        })
    }

    // ---- as a Side ----

    /// The C side of a stream: the build its configuration selects (its
    /// kernel line's set), the stream's features, arena and force_pte
    /// policy.
    pub fn for_stream(cfg: &Config) -> CSide {
        CSide::for_stream_in(cfg, cfg.kernel.name())
    }

    /// Like [`CSide::for_stream`], from the kernel tree compiled as `set`
    /// (the baseline of a C-against-C run is "<line>-base").
    pub fn for_stream_in(cfg: &Config, set: &'static str) -> CSide {
        let build = Build {
            set,
            ..Build::for_config(cfg)
        };
        let profile = CallerProfile::of(cfg);
        let mut c = CSide::with_hooks(
            build,
            CpuFeatures::for_config(cfg),
            side::arena_for(cfg),
            side::force_pte_for(cfg),
            profile.c_hooks(),
        );
        c.env.set_unlinked(profile.unlinked, side::format_of(cfg));
        c.env.set_injector(crate::race::Injector::new(cfg));
        c.cfg = Some(cfg.clone());
        c
    }

    /// Ends the RCU grace period: the callbacks of the deferred
    /// free_unlinked_table calls run (`kvm_pgtable_stage2_free_unlinked`,
    /// as mmu.c's `stage2_free_unlinked_table_rcu_cb`).
    fn grace_period(&mut self, into: &mut Outcome) {
        for (pa, level) in self.env.end_grace_period() {
            // Recorded like the call's events: its marks are noted too.
            self.env
                .record(crate::events::Event::RcuCallback { pa, level });
            into.append(CSide::stage2_free_unlinked(self, pa, level).events());
        }
    }

    /// Ends a step's outcome `o` with the op's accesses, recorded like any
    /// event.
    fn record_accesses(&mut self, o: &mut Outcome) {
        self.env.record(self.env.tally().event());
        self.env.append_trace(o);
    }

    fn stream_cfg(&self) -> &Config {
        self.cfg
            .as_ref()
            .expect("CSide used as a Side must come from CSide::for_stream")
    }

    fn int(c: Call<i32>) -> Outcome {
        c.outcome(|r| Value::Int(r.into()))
    }

    fn with_mc(&self, c: Call<i32>, mc: Option<u32>) -> Outcome {
        let mut o = Self::int(c);
        o.memcache_left = mc.map(|_| self.memcache_left());
        o
    }
}

impl Side for CSide {
    fn label(&self) -> String {
        format!("C {}", self.build().set)
    }

    fn apply_raced(
        &mut self,
        op: &crate::opstream::Op,
        race: Option<&crate::opstream::Race>,
    ) -> Outcome {
        self.env.begin_op(Some(op), race, self.root());
        let mut o = op.dispatch(self);
        self.env.end_walk();
        // Moved, not taken: taking would drain the pool of spare traces.
        self.env.append_trace(&mut o);
        self.grace_period(&mut o);
        self.record_accesses(&mut o);
        o
    }

    fn keep_accesses(&mut self, on: bool) {
        self.env.keep_accesses(on);
    }

    fn take_accesses(&mut self) -> Option<Vec<(u64, crate::events::Access)>> {
        self.env.take_accesses()
    }

    fn init(&mut self) -> Outcome {
        let cfg = self.stream_cfg().clone();
        let ia_bits = u32::from(cfg.ia_bits);
        match cfg.stage {
            Stage::Hyp => Self::int(self.hyp_init(ia_bits)),
            Stage::Stage2 => {
                let (mmfr0, mmfr1) = side::id_registers(&cfg);
                let vtcr = side::with_start_level(&cfg, self.get_vtcr(mmfr0, mmfr1, ia_bits));
                let pgd_bytes = self.stage2_pgd_size(vtcr);
                self.pgd_pages = (pgd_bytes / cfg.granule.page_size()) as u32;
                let c = self.stage2_init(vtcr, side::stage2_flags(&cfg));
                c.outcome(|ret| Value::Stage2Init { vtcr, ret })
            }
        }
    }

    fn destroy(&mut self) -> Outcome {
        self.env.begin_op(None, None, None);
        let mut o = Outcome::marked(Value::Unit, Default::default());
        self.grace_period(&mut o);
        for (pa, level) in std::mem::take(&mut self.unlinked) {
            o.append(self.stage2_free_unlinked(pa, level).events());
        }
        let cfg = self.stream_cfg().clone();
        match cfg.stage {
            Stage::Hyp => o.append(self.hyp_destroy().events()),
            Stage::Stage2 if self.pgd().is_some() && cfg.teardown != Teardown::Destroy => {
                for (addr, size) in side::teardown_chunks(&cfg, self.geometry().0) {
                    o.append(self.stage2_destroy_range(addr, size).events());
                }
                o.append(self.stage2_destroy_pgd().events());
            }
            Stage::Stage2 => o.append(self.stage2_destroy().events()),
        }
        self.record_accesses(&mut o);
        o
    }

    fn arena(&self) -> &Arena {
        CSide::arena(self)
    }

    fn root(&self) -> Option<Root> {
        let pgd = self.pgd()?;
        let (_, start_level) = self.geometry();
        Some(Root {
            pgd,
            pages: self.pgd_pages,
            start_level,
        })
    }
}

impl OpHandler for CSide {
    fn hyp_map(&mut self, addr: u64, size: u64, phys: u64, prot: Prot) -> Outcome {
        Self::int(CSide::hyp_map(self, addr, size, phys, prot))
    }

    fn hyp_unmap(&mut self, addr: u64, size: u64) -> Outcome {
        let c = CSide::hyp_unmap(self, addr, size);
        c.outcome(Value::U64)
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
        let c = CSide::stage2_map(
            self,
            addr,
            size,
            phys,
            prot,
            side::memcache(mc),
            flags.into(),
        );
        self.with_mc(c, mc)
    }

    fn stage2_set_owner(&mut self, addr: u64, size: u64, mc: Option<u32>, owner_id: u8) -> Outcome {
        let c = CSide::stage2_set_owner(self, addr, size, side::memcache(mc), owner_id);
        self.with_mc(c, mc)
    }

    fn stage2_unmap(&mut self, addr: u64, size: u64) -> Outcome {
        Self::int(CSide::stage2_unmap(self, addr, size))
    }

    fn stage2_wrprotect(&mut self, addr: u64, size: u64) -> Outcome {
        Self::int(CSide::stage2_wrprotect(self, addr, size))
    }

    fn stage2_mkyoung(&mut self, addr: u64) -> Outcome {
        let c = CSide::stage2_mkyoung(self, addr, 0);
        c.outcome(Value::U64)
    }

    fn stage2_test_clear_young(&mut self, addr: u64, size: u64, mkold: bool) -> Outcome {
        let c = CSide::stage2_test_clear_young(self, addr, size, mkold);
        c.outcome(Value::Bool)
    }

    fn stage2_relax_perms(&mut self, addr: u64, prot: Prot) -> Outcome {
        Self::int(CSide::stage2_relax_perms(self, addr, prot, 0))
    }

    fn stage2_flush(&mut self, addr: u64, size: u64) -> Outcome {
        Self::int(CSide::stage2_flush(self, addr, size))
    }

    fn tlb_flush_vmid_range(&mut self, addr: u64, size: u64) -> Outcome {
        let c = CSide::tlb_flush_vmid_range(self, addr, size);
        c.outcome(|()| Value::Unit)
    }

    fn stage2_split(&mut self, addr: u64, size: u64, nobjs: u32) -> Outcome {
        let mut o = Self::int(CSide::stage2_split(self, addr, size, nobjs));
        o.memcache_left = Some(self.split_cache_left());
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
        let c =
            CSide::stage2_create_unlinked(self, phys, level, prot, side::memcache(mc), force_pte);
        if let Ok(pa) = c.ret {
            self.unlinked.push((pa, level));
        }
        let mut o = c.outcome(Value::Table);
        o.memcache_left = mc.map(|_| self.memcache_left());
        o
    }

    fn stage2_free_unlinked(&mut self, index: u8) -> Outcome {
        match side::take_unlinked(&mut self.unlinked, index) {
            Some((pa, level)) => {
                CSide::stage2_free_unlinked(self, pa, level).outcome(|()| Value::Unit)
            }
            None => Outcome::marked(Value::Unit, Default::default()),
        }
    }

    fn walk(&mut self, addr: u64, size: u64, flags: u8, script: VisitScript) -> Outcome {
        let mut visits = crate::events::fresh_visits();
        let c = CSide::walk(self, addr, size, u32::from(flags), &mut |v| {
            let r = side::script_result(script, visits.len());
            visits.push(*v);
            r
        });
        c.outcome(|ret| Value::Walk { ret, visits })
    }

    fn get_leaf(&mut self, addr: u64) -> Outcome {
        CSide::get_leaf(self, addr).outcome(|(ret, pte, level)| {
            // The kernel leaves the outputs untouched on error.
            let (pte, level) = if ret == 0 { (pte, level) } else { (0, 0) };
            Value::Leaf { ret, pte, level }
        })
    }

    fn stage2_annotate(
        &mut self,
        addr: u64,
        size: u64,
        mc: Option<u32>,
        kind: u8,
        annotation: u64,
    ) -> Outcome {
        let c = CSide::stage2_annotate(
            self,
            addr,
            size,
            side::memcache(mc),
            kind.into(),
            annotation,
        );
        self.with_mc(c, mc)
    }

    fn stage2_mkyoung_flags(&mut self, addr: u64, flags: u8) -> Outcome {
        let c = CSide::stage2_mkyoung(self, addr, flags.into());
        c.outcome(|_| Value::Unit)
    }

    fn stage2_relax_perms_flags(&mut self, addr: u64, prot: Prot, flags: u8) -> Outcome {
        Self::int(CSide::stage2_relax_perms(self, addr, prot, flags.into()))
    }

    fn pte_prot(&mut self, pte: u64) -> Outcome {
        let v = match self.stream_cfg().stage {
            Stage::Hyp => self.hyp_pte_prot(pte),
            Stage::Stage2 => CSide::stage2_pte_prot(self, pte),
        };
        Outcome::marked(Value::U64(v), Default::default())
    }

    fn get_vtcr(&mut self, mmfr0: u64, mmfr1: u64, phys_shift: u32) -> Outcome {
        let v = CSide::get_vtcr(self, mmfr0, mmfr1, phys_shift);
        Outcome::marked(Value::U64(v), Default::default())
    }

    fn pgd_size(&mut self, vtcr: u64) -> Outcome {
        let v = self.stage2_pgd_size(vtcr);
        Outcome::marked(Value::U64(v), Default::default())
    }
}

#[cfg(test)]
mod tests;
