// SPDX-License-Identifier: GPL-2.0-only
//! A safe API over the kernel's pgtable.c, compiled for every (execution
//! context, granule) pair.
//!
//! Every call runs with this side's [`Arena`] as the memory behind
//! `kvm_pgtable_mm_ops`, its CPU features in the C runtime, and returns its
//! result together with the [`Trace`] of side effects it caused.
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
use std::ptr;

use crate::arena::{Arena, Memcache};
use crate::events::{Trace, Visit};
use crate::force_pte::ForcePte;
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

/// A call's result and the side effects it caused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome<T> {
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

struct Inner {
    ops: &'static ffi::kpd_ops,
    features: CpuFeatures,
    env: CEnv,
    pgt: ffi::kvm_pgtable,
    mmu: ffi::kvm_s2_mmu,
    mm_ops: ffi::kvm_pgtable_mm_ops,
    mc: ffi::kvm_mmu_memory_cache,
}

/// One instance of the kernel's page-table code with its own arena.
pub struct CSide {
    // Boxed: C holds pointers into it (mmu.pgt, the mm_ops table, memcaches).
    inner: Box<Inner>,
}

impl CSide {
    /// A C side over `arena`. The table is created by `hyp_init` or `stage2_init`.
    pub fn new(build: Build, features: CpuFeatures, arena: Arena, force_pte: ForcePte) -> CSide {
        let ops = ops_for(build);
        let mut inner = Box::new(Inner {
            ops,
            features,
            env: CEnv::new(arena, force_pte, ops),
            pgt: ffi::kvm_pgtable::default(),
            mmu: ffi::kvm_s2_mmu::default(),
            mm_ops: callbacks::mm_ops(),
            mc: ffi::kvm_mmu_memory_cache::default(),
        });
        inner.env.mm_ops = ptr::addr_of_mut!(inner.mm_ops);
        inner.mmu.pgt = ptr::addr_of_mut!(inner.pgt);
        CSide { inner }
    }

    /// Without cache-maintenance mm ops, like pKVM's host stage-2.
    pub fn without_cmo_ops(mut self) -> CSide {
        self.inner.mm_ops.dcache_clean_inval_poc = None;
        self.inner.mm_ops.icache_inval_pou = None;
        self
    }

    pub fn build(&self) -> Build {
        let ops = self.inner.ops;
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
        &self.inner.env.arena
    }

    /// The root table's PA (None before init / after destroy).
    pub fn pgd(&self) -> Option<u64> {
        let pgd = self.inner.pgt.pgd;
        (!pgd.is_null()).then(|| self.inner.env.arena.virt_to_phys(pgd))
    }

    /// `ia_bits` and `start_level` of the table.
    pub fn geometry(&self) -> (u32, i8) {
        (self.inner.pgt.ia_bits, self.inner.pgt.start_level)
    }

    /// The stage-2 VTCR the table was created with.
    pub fn vtcr(&self) -> u64 {
        self.inner.mmu.vtcr
    }

    /// Runs `f` with this side's environment current and collects the trace.
    fn call<T>(&mut self, f: impl FnOnce(&mut Inner) -> T) -> Outcome<T> {
        let inner: &mut Inner = &mut self.inner;
        let env: *mut CEnv = &mut inner.env;
        let ret = callbacks::with_current(env, inner.features, || f(inner));
        Outcome {
            ret,
            trace: std::mem::replace(&mut inner.env.trace, crate::events::fresh_trace()),
        }
    }

    /// Points the scratch memcache at `mc` (None: NULL) and returns the argument for C.
    fn memcache_arg(inner: &mut Inner, mc: Option<Memcache>) -> *mut c_void {
        match mc {
            None => ptr::null_mut(),
            Some(m) => {
                inner.mc.nobjs = m.nobjs as i32;
                ptr::addr_of_mut!(inner.mc).cast()
            }
        }
    }

    /// Pages left in the scratch memcache after the last call that used one.
    pub fn memcache_left(&self) -> u32 {
        self.inner.mc.nobjs.max(0) as u32
    }

    /// Pages left in `mmu->split_page_cache`.
    pub fn split_cache_left(&self) -> u32 {
        self.inner.mmu.split_page_cache.nobjs.max(0) as u32
    }

    // ---- hyp stage-1 ----

    pub fn hyp_init(&mut self, va_bits: u32) -> Outcome<i32> {
        self.call(|i| {
            // SAFETY: pgt and mm_ops live in the boxed Inner for as long as the table.
            unsafe { (i.ops.hyp_init.unwrap())(&mut i.pgt, va_bits, &mut i.mm_ops) }
        })
    }

    pub fn hyp_map(&mut self, addr: u64, size: u64, phys: u64, prot: u64) -> Outcome<i32> {
        self.call(|i| {
            // SAFETY: the table was initialised by this side (C checks pgd itself).
            unsafe { (i.ops.hyp_map.unwrap())(&mut i.pgt, addr, size, phys, prot as _) }
        })
    }

    pub fn hyp_unmap(&mut self, addr: u64, size: u64) -> Outcome<u64> {
        // SAFETY: as for hyp_map.
        self.call(|i| unsafe { (i.ops.hyp_unmap.unwrap())(&mut i.pgt, addr, size) })
    }

    pub fn hyp_destroy(&mut self) -> Outcome<()> {
        self.call(|i| {
            if !i.pgt.pgd.is_null() {
                // SAFETY: destroys the table this side created; pgd is reset to NULL.
                unsafe { (i.ops.hyp_destroy.unwrap())(&mut i.pgt) }
            }
        })
    }

    pub fn hyp_pte_prot(&mut self, pte: u64) -> u64 {
        // SAFETY: a pure function of its argument (it reads CPU features).
        self.call(|i| unsafe { (i.ops.hyp_pte_prot.unwrap())(pte) })
            .ret
    }

    // ---- stage-2 ----

    pub fn get_vtcr(&mut self, mmfr0: u64, mmfr1: u64, phys_shift: u32) -> u64 {
        // SAFETY: pure.
        self.call(|i| unsafe { (i.ops.get_vtcr.unwrap())(mmfr0, mmfr1, phys_shift) })
            .ret
    }

    pub fn stage2_pgd_size(&mut self, vtcr: u64) -> u64 {
        // SAFETY: pure.
        self.call(|i| unsafe { (i.ops.stage2_pgd_size.unwrap())(vtcr) })
            .ret as u64
    }

    /// `__kvm_pgtable_stage2_init` with `mmu->vtcr = vtcr`; the force_pte_cb
    /// is installed when this side's policy is not `ForcePte::None`.
    pub fn stage2_init(&mut self, vtcr: u64, flags: u32) -> Outcome<i32> {
        self.call(|i| {
            i.mmu.vtcr = vtcr;
            let cb = if i.env.force_pte.installed() {
                Some(callbacks::force_pte_cb as _)
            } else {
                None
            };
            // SAFETY: pgt, mmu and mm_ops live in the boxed Inner.
            unsafe {
                (i.ops.stage2_init.unwrap())(&mut i.pgt, &mut i.mmu, &mut i.mm_ops, flags as _, cb)
            }
        })
    }

    pub fn stage2_destroy(&mut self) -> Outcome<()> {
        self.call(|i| {
            if !i.pgt.pgd.is_null() {
                // SAFETY: destroys the table this side created.
                unsafe { (i.ops.stage2_destroy.unwrap())(&mut i.pgt) }
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
    ) -> Outcome<i32> {
        self.call(|i| {
            let mc = Self::memcache_arg(i, mc);
            // SAFETY: mc is NULL or points at the boxed scratch memcache.
            unsafe {
                (i.ops.stage2_map.unwrap())(&mut i.pgt, addr, size, phys, prot as _, mc, flags as _)
            }
        })
    }

    pub fn stage2_set_owner(
        &mut self,
        addr: u64,
        size: u64,
        mc: Option<Memcache>,
        owner: u8,
    ) -> Outcome<i32> {
        self.call(|i| {
            let mc = Self::memcache_arg(i, mc);
            // SAFETY: as for stage2_map.
            unsafe { (i.ops.stage2_set_owner.unwrap())(&mut i.pgt, addr, size, mc, owner) }
        })
    }

    pub fn stage2_unmap(&mut self, addr: u64, size: u64) -> Outcome<i32> {
        // SAFETY: operates on this side's table.
        self.call(|i| unsafe { (i.ops.stage2_unmap.unwrap())(&mut i.pgt, addr, size) })
    }

    pub fn stage2_wrprotect(&mut self, addr: u64, size: u64) -> Outcome<i32> {
        // SAFETY: operates on this side's table.
        self.call(|i| unsafe { (i.ops.stage2_wrprotect.unwrap())(&mut i.pgt, addr, size) })
    }

    pub fn stage2_mkyoung(&mut self, addr: u64) -> Outcome<u64> {
        // SAFETY: operates on this side's table.
        self.call(|i| unsafe { (i.ops.stage2_mkyoung.unwrap())(&mut i.pgt, addr) })
    }

    pub fn stage2_test_clear_young(&mut self, addr: u64, size: u64, mkold: bool) -> Outcome<bool> {
        // SAFETY: operates on this side's table.
        self.call(|i| unsafe {
            (i.ops.stage2_test_clear_young.unwrap())(&mut i.pgt, addr, size, mkold)
        })
    }

    pub fn stage2_relax_perms(&mut self, addr: u64, prot: u64) -> Outcome<i32> {
        // SAFETY: operates on this side's table.
        self.call(|i| unsafe { (i.ops.stage2_relax_perms.unwrap())(&mut i.pgt, addr, prot as _) })
    }

    pub fn stage2_flush(&mut self, addr: u64, size: u64) -> Outcome<i32> {
        // SAFETY: operates on this side's table.
        self.call(|i| unsafe { (i.ops.stage2_flush.unwrap())(&mut i.pgt, addr, size) })
    }

    /// `kvm_pgtable_stage2_split` with `mmu->split_page_cache.nobjs = nobjs`.
    pub fn stage2_split(&mut self, addr: u64, size: u64, nobjs: u32) -> Outcome<i32> {
        self.call(|i| {
            i.mmu.split_page_cache.nobjs = nobjs as i32;
            // SAFETY: the split cache is embedded in the mmu, as KVM's container_of expects.
            unsafe {
                (i.ops.stage2_split.unwrap())(&mut i.pgt, addr, size, &mut i.mmu.split_page_cache)
            }
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
    ) -> Outcome<Result<u64, i32>> {
        self.call(|i| {
            let mc = Self::memcache_arg(i, mc);
            // SAFETY: as for stage2_map.
            let p = unsafe {
                (i.ops.stage2_create_unlinked.unwrap())(
                    &mut i.pgt, phys, level, prot as _, mc, force_pte,
                )
            };
            let v = p as isize;
            if (-4095..0).contains(&v) {
                Err(v as i32)
            } else {
                Ok(i.env.arena.virt_to_phys(p))
            }
        })
    }

    /// `kvm_pgtable_stage2_free_unlinked` of a table made by create_unlinked.
    pub fn stage2_free_unlinked(&mut self, table: u64, level: i8) -> Outcome<()> {
        self.call(|i| {
            let p = i.env.arena.phys_to_virt(table);
            // SAFETY: table came from stage2_create_unlinked on this side.
            unsafe { (i.ops.stage2_free_unlinked.unwrap())(&mut i.mm_ops, p.cast(), level) }
        })
    }

    pub fn stage2_pte_prot(&mut self, pte: u64) -> u64 {
        // SAFETY: pure.
        self.call(|i| unsafe { (i.ops.stage2_pte_prot.unwrap())(pte) })
            .ret
    }

    pub fn tlb_flush_vmid_range(&mut self, addr: u64, size: u64) -> Outcome<()> {
        // SAFETY: only records TLB maintenance.
        self.call(|i| unsafe { (i.ops.tlb_flush_vmid_range.unwrap())(&mut i.mmu, addr, size as _) })
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
    ) -> Outcome<i32> {
        self.call(|i| callbacks::walk(i.ops, &mut i.pgt, &i.env.arena, addr, size, flags, visitor))
    }

    /// `kvm_pgtable_get_leaf`: (ret, pte, level).
    pub fn get_leaf(&mut self, addr: u64) -> Outcome<(i32, u64, i8)> {
        self.call(|i| {
            let (mut pte, mut level) = (0u64, 0i8);
            // SAFETY: out-pointers are valid locals.
            let r = unsafe { (i.ops.get_leaf.unwrap())(&mut i.pgt, addr, &mut pte, &mut level) };
            (r, pte, level)
        })
    }
}

#[cfg(test)]
mod tests;
