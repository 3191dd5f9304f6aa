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
//! use kvm_pgtable_diff::arena::{Arena, Geometry, NullMemcache};
//! use kvm_pgtable_diff::c_side::{Build, CSide, CpuFeatures, Granule};
//! use kvm_pgtable_diff::force_pte::ForcePte;
//!
//! let arena = Arena::new(Geometry::new(4096, 64), NullMemcache::Pool, None);
//! let build = Build { nvhe: true, granule: Granule::K4 };
//! let mut c = CSide::new(build, CpuFeatures::default(), arena, ForcePte::None);
//! assert_eq!(c.hyp_init(48).ret, 0);
//! let map = c.hyp_map(0x1000, 0x1000, 0x8000_1000, 0b110 /* RW */);
//! assert_eq!(map.ret, 0);
//! c.hyp_destroy();
//! assert!(c.arena().is_empty());
//! ```

mod callbacks;
pub(crate) mod ffi;

use core::ffi::c_void;
use std::cell::{Cell, UnsafeCell};
use std::ptr::{self, NonNull};

use crate::arena::{Arena, Memcache};
use crate::events::{Trace, Visit};
use crate::force_pte::ForcePte;
use crate::opstream::{Config, Context, OpHandler, Prot, Stage, VisitScript};
use crate::results::{Outcome, Value};
use crate::side::{self, Root, Side};
use callbacks::CEnv;

/// The translation granule of a C build (the op-stream model's type).
pub use crate::opstream::Granule;

/// Which compiled copy of pgtable.c to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Build {
    /// nVHE hypervisor context (`__KVM_NVHE_HYPERVISOR__`) or the kernel context.
    pub nvhe: bool,
    pub granule: Granule,
}

impl Build {
    /// The build a stream's configuration runs on.
    pub fn for_config(cfg: &Config) -> Build {
        Build {
            nvhe: cfg.context == Context::Nvhe,
            granule: cfg.granule,
        }
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
        }
    }
}

/// A call's result and the side effects it caused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Call<T> {
    pub ret: T,
    pub trace: Trace,
}

/// The name of the C build's source, for reports.
pub fn kernel_source() -> &'static str {
    env!("KPD_KERNEL_SOURCE")
}

/// sha256 of the compiled pgtable.c.
pub fn pgtable_c_sha256() -> &'static str {
    env!("KPD_PGTABLE_C_SHA256")
}

fn ops_for(build: Build) -> &'static ffi::kpd_ops {
    ffi::builds()
        .into_iter()
        .find(|(nvhe, shift, _)| *nvhe == build.nvhe && *shift == build.granule.page_shift())
        .map(|(_, _, ops)| ops)
        .expect("every (context, granule) pair is built")
}

/// The structures C reads and writes, passed to it by pointer.
#[derive(Default)]
struct Ffi {
    pgt: ffi::kvm_pgtable,
    mmu: ffi::kvm_s2_mmu,
    mm_ops: ffi::kvm_pgtable_mm_ops,
    /// The memcache of the op being run (a NULL memcache is not this).
    mc: ffi::kvm_mmu_memory_cache,
}

struct Inner {
    ops: &'static ffi::kpd_ops,
    features: Cell<CpuFeatures>,
    env: CEnv,
    ffi: UnsafeCell<Ffi>,
}

/// One instance of the kernel's page-table code with its own arena.
pub struct CSide {
    /// Made by `Box::into_raw` in [`CSide::new`], freed in `Drop`; only ever
    /// dereferenced to a shared `&Inner` (see the module documentation).
    inner: NonNull<Inner>,
    /// The stream configuration this side runs ([`Side`] use only).
    cfg: Option<Config>,
    /// Tables made by create_unlinked and not freed yet: (pa, level).
    unlinked: Vec<(u64, i8)>,
    /// Pages of the stage-2 root, from `kvm_pgtable_stage2_pgd_size()` at init.
    pgd_pages: u32,
}

impl Drop for CSide {
    fn drop(&mut self) {
        // SAFETY: `inner` came from `Box::into_raw` and is freed only here;
        // no C call is running (we hold `&mut self`).
        drop(unsafe { Box::from_raw(self.inner.as_ptr()) });
    }
}

impl CSide {
    /// A C side over `arena`. The table is created by `hyp_init` or `stage2_init`.
    pub fn new(build: Build, features: CpuFeatures, arena: Arena, force_pte: ForcePte) -> CSide {
        let ops = ops_for(build);
        let inner = Box::new(Inner {
            ops,
            features: Cell::new(features),
            env: CEnv::new(arena, force_pte, ops),
            ffi: UnsafeCell::new(Ffi {
                mm_ops: callbacks::mm_ops(),
                ..Ffi::default()
            }),
        });
        let inner = NonNull::from(Box::leak(inner));
        let side = CSide {
            inner,
            cfg: None,
            unlinked: Vec::new(),
            pgd_pages: 1,
        };
        let f = side.ffi();
        // SAFETY: `f` points at the boxed, live `Ffi`; no C call is running,
        // so nothing else accesses it. The pointers stored stay valid for
        // the side's lifetime because `Inner` never moves.
        unsafe {
            (*f).mmu.pgt = ptr::addr_of_mut!((*f).pgt);
            side.inner().env.mm_ops.set(ptr::addr_of_mut!((*f).mm_ops));
        }
        side
    }

    /// Without cache-maintenance mm ops, like pKVM's host stage-2.
    pub fn without_cmo_ops(self) -> CSide {
        let f = self.ffi();
        // SAFETY: as in `new`: no C call is running.
        unsafe {
            (*f).mm_ops.dcache_clean_inval_poc = None;
            (*f).mm_ops.icache_inval_pou = None;
        }
        self
    }

    fn inner(&self) -> &Inner {
        // SAFETY: `inner` is live until `Drop`, and only shared references
        // to it are ever made.
        unsafe { self.inner.as_ref() }
    }

    fn ffi(&self) -> *mut Ffi {
        self.inner().ffi.get()
    }

    /// Reads a field of the C structures between calls.
    fn peek<T>(&self, f: impl FnOnce(&Ffi) -> T) -> T {
        // SAFETY: no C call is running while `&self` is borrowed (every call
        // needs `&mut self`), so nothing writes the structures meanwhile.
        f(unsafe { &*self.ffi() })
    }

    pub fn build(&self) -> Build {
        let ops = self.inner().ops;
        let granule = match ops.page_shift {
            12 => Granule::K4,
            14 => Granule::K16,
            _ => Granule::K64,
        };
        Build {
            nvhe: ops.nvhe,
            granule,
        }
    }

    pub fn arena(&self) -> &Arena {
        self.inner().env.arena_ref()
    }

    /// The root table's PA (None before init / after destroy).
    pub fn pgd(&self) -> Option<u64> {
        let pgd = self.peek(|f| f.pgt.pgd);
        (!pgd.is_null()).then(|| self.arena().virt_to_phys(pgd))
    }

    /// `ia_bits` and `start_level` of the table.
    pub fn geometry(&self) -> (u32, i8) {
        self.peek(|f| (f.pgt.ia_bits, f.pgt.start_level))
    }

    /// The stage-2 VTCR the table was created with.
    pub fn vtcr(&self) -> u64 {
        self.peek(|f| f.mmu.vtcr)
    }

    /// Runs `f` with this side's environment current and collects the
    /// trace. `f` gets the C structures by raw pointer.
    fn call<T>(&mut self, f: impl FnOnce(&'static ffi::kpd_ops, *mut Ffi) -> T) -> Call<T> {
        let inner = self.inner();
        let ret = callbacks::with_current(&inner.env, inner.features.get(), || {
            f(inner.ops, inner.ffi.get())
        });
        Call {
            ret,
            trace: inner.env.take_trace(),
        }
    }

    /// Points the op memcache at `mc` (None: NULL) and returns the argument for C.
    ///
    /// # Safety
    /// `f` must point at this side's live `Ffi` and no C call may be running.
    unsafe fn memcache_arg(f: *mut Ffi, mc: Option<Memcache>) -> *mut c_void {
        match mc {
            None => ptr::null_mut(),
            Some(m) => {
                // SAFETY: per the function's contract.
                unsafe {
                    (*f).mc.nobjs = m.nobjs as i32;
                    ptr::addr_of_mut!((*f).mc).cast()
                }
            }
        }
    }

    /// Pages left in the op memcache after the last call that used one.
    pub fn memcache_left(&self) -> u32 {
        self.peek(|f| f.mc.nobjs.max(0) as u32)
    }

    /// Pages left in `mmu->split_page_cache`.
    pub fn split_cache_left(&self) -> u32 {
        self.peek(|f| f.mmu.split_page_cache.nobjs.max(0) as u32)
    }

    // ---- hyp stage-1 ----

    pub fn hyp_init(&mut self, va_bits: u32) -> Call<i32> {
        // SAFETY: pgt and mm_ops live in the boxed Inner for as long as the
        // table; the same holds for every call below.
        self.call(|o, f| unsafe {
            (o.hyp_init.unwrap())(
                ptr::addr_of_mut!((*f).pgt),
                va_bits,
                ptr::addr_of_mut!((*f).mm_ops),
            )
        })
    }

    pub fn hyp_map(&mut self, addr: u64, size: u64, phys: u64, prot: u64) -> Call<i32> {
        // SAFETY: the table was initialised by this side (C checks pgd itself).
        self.call(|o, f| unsafe {
            (o.hyp_map.unwrap())(ptr::addr_of_mut!((*f).pgt), addr, size, phys, prot as _)
        })
    }

    pub fn hyp_unmap(&mut self, addr: u64, size: u64) -> Call<u64> {
        // SAFETY: as for hyp_map.
        self.call(|o, f| unsafe { (o.hyp_unmap.unwrap())(ptr::addr_of_mut!((*f).pgt), addr, size) })
    }

    pub fn hyp_destroy(&mut self) -> Call<()> {
        self.call(|o, f| {
            // SAFETY: destroys the table this side created; pgd is reset to NULL.
            unsafe {
                if !(*f).pgt.pgd.is_null() {
                    (o.hyp_destroy.unwrap())(ptr::addr_of_mut!((*f).pgt))
                }
            }
        })
    }

    pub fn hyp_pte_prot(&mut self, pte: u64) -> u64 {
        // SAFETY: a pure function of its argument (it reads CPU features).
        self.call(|o, _| unsafe { (o.hyp_pte_prot.unwrap())(pte) })
            .ret
    }

    // ---- stage-2 ----

    pub fn get_vtcr(&mut self, mmfr0: u64, mmfr1: u64, phys_shift: u32) -> u64 {
        // SAFETY: pure.
        self.call(|o, _| unsafe { (o.get_vtcr.unwrap())(mmfr0, mmfr1, phys_shift) })
            .ret
    }

    pub fn stage2_pgd_size(&mut self, vtcr: u64) -> u64 {
        // SAFETY: pure.
        self.call(|o, _| unsafe { (o.stage2_pgd_size.unwrap())(vtcr) })
            .ret as u64
    }

    /// `__kvm_pgtable_stage2_init` with `mmu->vtcr = vtcr`; the force_pte_cb
    /// is installed when this side's policy is not `ForcePte::None`.
    pub fn stage2_init(&mut self, vtcr: u64, flags: u32) -> Call<i32> {
        let cb = if self.inner().env.force_pte_installed() {
            Some(callbacks::force_pte_cb as _)
        } else {
            None
        };
        // SAFETY: pgt, mmu and mm_ops live in the boxed Inner.
        self.call(|o, f| unsafe {
            (*f).mmu.vtcr = vtcr;
            (o.stage2_init.unwrap())(
                ptr::addr_of_mut!((*f).pgt),
                ptr::addr_of_mut!((*f).mmu),
                ptr::addr_of_mut!((*f).mm_ops),
                flags as _,
                cb,
            )
        })
    }

    pub fn stage2_destroy(&mut self) -> Call<()> {
        self.call(|o, f| {
            // SAFETY: destroys the table this side created.
            unsafe {
                if !(*f).pgt.pgd.is_null() {
                    (o.stage2_destroy.unwrap())(ptr::addr_of_mut!((*f).pgt))
                }
            }
        })
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
        // SAFETY: mc is NULL or points at the boxed op memcache.
        self.call(|o, f| unsafe {
            let mc = Self::memcache_arg(f, mc);
            (o.stage2_map.unwrap())(
                ptr::addr_of_mut!((*f).pgt),
                addr,
                size,
                phys,
                prot as _,
                mc,
                flags as _,
            )
        })
    }

    pub fn stage2_set_owner(
        &mut self,
        addr: u64,
        size: u64,
        mc: Option<Memcache>,
        owner: u8,
    ) -> Call<i32> {
        // SAFETY: as for stage2_map.
        self.call(|o, f| unsafe {
            let mc = Self::memcache_arg(f, mc);
            (o.stage2_set_owner.unwrap())(ptr::addr_of_mut!((*f).pgt), addr, size, mc, owner)
        })
    }

    pub fn stage2_unmap(&mut self, addr: u64, size: u64) -> Call<i32> {
        // SAFETY: operates on this side's table.
        self.call(|o, f| unsafe {
            (o.stage2_unmap.unwrap())(ptr::addr_of_mut!((*f).pgt), addr, size)
        })
    }

    pub fn stage2_wrprotect(&mut self, addr: u64, size: u64) -> Call<i32> {
        // SAFETY: operates on this side's table.
        self.call(|o, f| unsafe {
            (o.stage2_wrprotect.unwrap())(ptr::addr_of_mut!((*f).pgt), addr, size)
        })
    }

    pub fn stage2_mkyoung(&mut self, addr: u64) -> Call<u64> {
        // SAFETY: operates on this side's table.
        self.call(|o, f| unsafe { (o.stage2_mkyoung.unwrap())(ptr::addr_of_mut!((*f).pgt), addr) })
    }

    pub fn stage2_test_clear_young(&mut self, addr: u64, size: u64, mkold: bool) -> Call<bool> {
        // SAFETY: operates on this side's table.
        self.call(|o, f| unsafe {
            (o.stage2_test_clear_young.unwrap())(ptr::addr_of_mut!((*f).pgt), addr, size, mkold)
        })
    }

    pub fn stage2_relax_perms(&mut self, addr: u64, prot: u64) -> Call<i32> {
        // SAFETY: operates on this side's table.
        self.call(|o, f| unsafe {
            (o.stage2_relax_perms.unwrap())(ptr::addr_of_mut!((*f).pgt), addr, prot as _)
        })
    }

    pub fn stage2_flush(&mut self, addr: u64, size: u64) -> Call<i32> {
        // SAFETY: operates on this side's table.
        self.call(|o, f| unsafe {
            (o.stage2_flush.unwrap())(ptr::addr_of_mut!((*f).pgt), addr, size)
        })
    }

    /// `kvm_pgtable_stage2_split` with `mmu->split_page_cache.nobjs = nobjs`.
    pub fn stage2_split(&mut self, addr: u64, size: u64, nobjs: u32) -> Call<i32> {
        // SAFETY: the split cache is embedded in the mmu, as KVM's container_of expects.
        self.call(|o, f| unsafe {
            (*f).mmu.split_page_cache.nobjs = nobjs as i32;
            (o.stage2_split.unwrap())(
                ptr::addr_of_mut!((*f).pgt),
                addr,
                size,
                ptr::addr_of_mut!((*f).mmu.split_page_cache),
            )
        })
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
        // SAFETY: as for stage2_map.
        let c = self.call(|o, f| unsafe {
            let mc = Self::memcache_arg(f, mc);
            (o.stage2_create_unlinked.unwrap())(
                ptr::addr_of_mut!((*f).pgt),
                phys,
                level,
                prot as _,
                mc,
                force_pte,
            )
        });
        let v = c.ret as isize;
        let ret = if (-4095..0).contains(&v) {
            Err(v as i32)
        } else {
            Ok(self.arena().virt_to_phys(c.ret))
        };
        Call {
            ret,
            trace: c.trace,
        }
    }

    /// `kvm_pgtable_stage2_free_unlinked` of a table made by create_unlinked.
    pub fn stage2_free_unlinked(&mut self, table: u64, level: i8) -> Call<()> {
        let p = self.arena().phys_to_virt(table);
        // SAFETY: table came from stage2_create_unlinked on this side.
        self.call(|o, f| unsafe {
            (o.stage2_free_unlinked.unwrap())(ptr::addr_of_mut!((*f).mm_ops), p.cast(), level)
        })
    }

    pub fn stage2_pte_prot(&mut self, pte: u64) -> u64 {
        // SAFETY: pure.
        self.call(|o, _| unsafe { (o.stage2_pte_prot.unwrap())(pte) })
            .ret
    }

    pub fn tlb_flush_vmid_range(&mut self, addr: u64, size: u64) -> Call<()> {
        // SAFETY: only records TLB maintenance.
        self.call(|o, f| unsafe {
            (o.tlb_flush_vmid_range.unwrap())(ptr::addr_of_mut!((*f).mmu), addr, size as _)
        })
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
        // SAFETY: pgt lives in the boxed Inner.
        self.call(|o, f| unsafe {
            callbacks::walk(o, ptr::addr_of_mut!((*f).pgt), addr, size, flags, visitor)
        })
    }

    /// `kvm_pgtable_get_leaf`: (ret, pte, level).
    pub fn get_leaf(&mut self, addr: u64) -> Call<(i32, u64, i8)> {
        self.call(|o, f| {
            let (mut pte, mut level) = (0u64, 0i8);
            // SAFETY: out-pointers are valid locals.
            let r = unsafe {
                (o.get_leaf.unwrap())(ptr::addr_of_mut!((*f).pgt), addr, &mut pte, &mut level)
            };
            (r, pte, level)
        })
    }

    // ---- as a Side ----

    /// The C side of a stream: the build its configuration selects, the
    /// stream's features, arena and force_pte policy.
    pub fn for_stream(cfg: &Config) -> CSide {
        let arena = side::arena_for(cfg);
        let mut c = CSide::new(
            Build::for_config(cfg),
            CpuFeatures::for_config(cfg),
            arena,
            side::force_pte_for(cfg),
        );
        c.cfg = Some(cfg.clone());
        c
    }

    fn stream_cfg(&self) -> &Config {
        self.cfg
            .as_ref()
            .expect("CSide used as a Side must come from CSide::for_stream")
    }

    fn int(c: Call<i32>) -> Outcome {
        Outcome::new(Value::Int(c.ret.into()), c.trace)
    }

    fn with_mc(&self, c: Call<i32>, mc: Option<u32>) -> Outcome {
        let mut o = Self::int(c);
        o.memcache_left = mc.map(|_| self.memcache_left());
        o
    }
}

impl Side for CSide {
    fn label(&self) -> String {
        "C".into()
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
                Outcome::new(Value::Stage2Init { vtcr, ret: c.ret }, c.trace)
            }
        }
    }

    fn destroy(&mut self) -> Outcome {
        let mut trace = Trace::new();
        for (pa, level) in std::mem::take(&mut self.unlinked) {
            trace.extend(self.stage2_free_unlinked(pa, level).trace);
        }
        let c = match self.stream_cfg().stage {
            Stage::Hyp => self.hyp_destroy(),
            Stage::Stage2 => self.stage2_destroy(),
        };
        trace.extend(c.trace);
        Outcome::new(Value::Unit, trace)
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
        Outcome::new(Value::U64(c.ret), c.trace)
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
        let c = CSide::stage2_mkyoung(self, addr);
        Outcome::new(Value::U64(c.ret), c.trace)
    }

    fn stage2_test_clear_young(&mut self, addr: u64, size: u64, mkold: bool) -> Outcome {
        let c = CSide::stage2_test_clear_young(self, addr, size, mkold);
        Outcome::new(Value::Bool(c.ret), c.trace)
    }

    fn stage2_relax_perms(&mut self, addr: u64, prot: Prot) -> Outcome {
        Self::int(CSide::stage2_relax_perms(self, addr, prot))
    }

    fn stage2_flush(&mut self, addr: u64, size: u64) -> Outcome {
        Self::int(CSide::stage2_flush(self, addr, size))
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
        let mut o = Outcome::new(Value::Table(c.ret), c.trace);
        o.memcache_left = mc.map(|_| self.memcache_left());
        o
    }

    fn stage2_free_unlinked(&mut self, index: u8) -> Outcome {
        let trace = match side::take_unlinked(&mut self.unlinked, index) {
            Some((pa, level)) => CSide::stage2_free_unlinked(self, pa, level).trace,
            None => Trace::new(),
        };
        Outcome::new(Value::Unit, trace)
    }

    fn walk(&mut self, addr: u64, size: u64, flags: u8, script: VisitScript) -> Outcome {
        let mut visits = Vec::new();
        let c = CSide::walk(self, addr, size, u32::from(flags), &mut |v| {
            let r = side::script_result(script, visits.len());
            visits.push(*v);
            r
        });
        Outcome::new(Value::Walk { ret: c.ret, visits }, c.trace)
    }

    fn get_leaf(&mut self, addr: u64) -> Outcome {
        let c = CSide::get_leaf(self, addr);
        let (ret, pte, level) = c.ret;
        // The kernel leaves the outputs untouched on error.
        let (pte, level) = if ret == 0 { (pte, level) } else { (0, 0) };
        Outcome::new(Value::Leaf { ret, pte, level }, c.trace)
    }

    fn pte_prot(&mut self, pte: u64) -> Outcome {
        let v = match self.stream_cfg().stage {
            Stage::Hyp => self.hyp_pte_prot(pte),
            Stage::Stage2 => CSide::stage2_pte_prot(self, pte),
        };
        Outcome::new(Value::U64(v), Trace::new())
    }

    fn get_vtcr(&mut self, mmfr0: u64, mmfr1: u64, phys_shift: u32) -> Outcome {
        let v = CSide::get_vtcr(self, mmfr0, mmfr1, phys_shift);
        Outcome::new(Value::U64(v), Trace::new())
    }

    fn pgd_size(&mut self, vtcr: u64) -> Outcome {
        let v = self.stage2_pgd_size(vtcr);
        Outcome::new(Value::U64(v), Trace::new())
    }
}

#[cfg(test)]
mod tests;
