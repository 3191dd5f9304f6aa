// SPDX-License-Identifier: GPL-2.0-only
//! The environment the page-table code runs in: memory management callbacks
//! ([`MmOps`]) and hardware side effects ([`Hw`]).
//!
//! Every effect the kernel code has on the world (allocating, refcounting,
//! descriptor stores, barriers, TLB and cache maintenance, warnings, RCU)
//! is routed through these two traits so a harness can record them.

use core::panic::Location;

use crate::types::{Level, PhysAddr};

/// Level value meaning "the level of the entry being invalidated is not
/// known" in TLB maintenance requests.
pub const TLBI_TTL_UNKNOWN: i32 = i32::MAX;

/// Largest number of pages one range TLBI can cover: scale 3, num 31,
/// i.e. `(31 + 1) << (5 * 3 + 1)`.
pub const MAX_TLBI_RANGE_PAGES: u64 = (31 + 1) << (5 * 3 + 1);

/// Memory management callbacks, the equivalent of the kernel's
/// `kvm_pgtable_mm_ops`, expressed with physical addresses.
///
/// # Safety
///
/// [`MmOps::phys_to_virt`] must return a pointer that is valid for
/// volatile and atomic 8-byte reads and writes, 8-byte aligned, for every
/// physical address of a table page the implementation handed out through
/// [`MmOps::zalloc_page`] / [`MmOps::zalloc_pages_exact`] (and that has not
/// been freed since), and no Rust reference to that memory may be live while
/// the page-table code runs. The crate dereferences those pointers.
#[doc(alias = "kvm_pgtable_mm_ops")]
pub unsafe trait MmOps {
    /// The memory cache type passed down by stage-2 map/split operations.
    type Memcache;

    /// Allocate one zeroed page with a refcount of 1. `None` stands for
    /// the kernel's NULL memcache argument.
    fn zalloc_page(&mut self, mc: Option<&mut Self::Memcache>) -> Option<PhysAddr>;

    /// Number of objects left in `mc` (the kernel reads `mc->nobjs`).
    #[doc(alias = "nobjs")]
    fn memcache_nobjs(&self, mc: &Self::Memcache) -> usize;

    /// Allocate `size` bytes (rounded up to pages) of zeroed, physically
    /// contiguous memory.
    fn zalloc_pages_exact(&mut self, size: u64) -> Option<PhysAddr>;

    /// Free memory obtained from [`MmOps::zalloc_pages_exact`].
    fn free_pages_exact(&mut self, pa: PhysAddr, size: u64);

    /// Free a table that has been unlinked from the tree. In KVM this ends
    /// up in [`crate::stage2_free_unlinked`]; implementations may call it
    /// with `self`.
    fn free_unlinked_table(&mut self, pa: PhysAddr, level: Level);

    /// Increment the refcount of the page containing `pa`.
    fn get_page(&mut self, pa: PhysAddr);

    /// Decrement the refcount of the page containing `pa`, freeing it when
    /// the count drops to zero.
    fn put_page(&mut self, pa: PhysAddr);

    /// Refcount of the page containing `pa`.
    fn page_count(&mut self, pa: PhysAddr) -> i32;

    /// Pointer through which the descriptor at `pa` is accessed. Not an
    /// observable event: only the crate's memory module calls it.
    fn phys_to_virt(&mut self, pa: PhysAddr) -> *mut u64;

    /// Clean and invalidate the data cache to the PoC for `[pa, pa+size)`.
    fn dcache_clean_inval_poc(&mut self, pa: PhysAddr, size: u64);

    /// Invalidate the instruction cache to the PoU for `[pa, pa+size)`.
    fn icache_inval_pou(&mut self, pa: PhysAddr, size: u64);

    /// Whether `page_count` exists (the kernel tests the pointer for NULL).
    fn has_page_count(&self) -> bool {
        true
    }

    /// Whether `dcache_clean_inval_poc` exists.
    fn has_dcache_clean_inval_poc(&self) -> bool {
        true
    }

    /// Whether `icache_inval_pou` exists.
    fn has_icache_inval_pou(&self) -> bool {
        true
    }
}

/// How a descriptor was written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StoreKind {
    /// A plain single-copy-atomic store (`WRITE_ONCE`).
    WriteOnce,
    /// A store-release (`smp_store_release`).
    Release,
    /// A successful compare-and-exchange that replaced `old`.
    Cmpxchg {
        /// The value the exchange expected (and found).
        old: u64,
    },
}

/// Stage-1 EL2 TLB invalidation operations.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TlbiOp {
    /// `TLBI VAE2IS`: all levels.
    Vae2is,
    /// `TLBI VALE2IS`: last level only.
    Vale2is,
}

/// Barrier domain/type of a `DSB`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[allow(missing_docs)]
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

/// Hardware side effects and kernel services.
pub trait Hw {
    /// Called right after the descriptor at `pa`, which held `prev`, has
    /// been written with `new`. Failed compare-and-exchanges store nothing and are not
    /// reported.
    fn pte_store(&mut self, pa: PhysAddr, prev: u64, new: u64, kind: StoreKind);

    /// Issue a stage-1 EL2 TLBI. `operand` is the Xt operand of
    /// `TLBI VAE2IS`/`VALE2IS` before any TTL hint, with ASID 0:
    /// `(va >> 12) & GENMASK(43, 0)`; `level` is the level of the entry
    /// (the TTL hint to apply when FEAT_TTL is present and `level` is 0 to
    /// 3) or [`TLBI_TTL_UNKNOWN`]. The same on both kernel lines: Linux 6.12
    /// passes `__TLBI_VADDR(va, 0)` to `__tlbi_level()`, 7.3 passes `va`
    /// and `__tlbi_level()` computes `__TLBI_VADDR(va, 0)` itself; the
    /// levels passed are never negative, so 7.3's `u32` level parameter
    /// does not change which hints apply.
    #[doc(alias = "__tlbi_level")]
    fn tlbi_hyp(&mut self, op: TlbiOp, operand: u64, level: i32);

    /// Wait for completion of EL2 stage-1 TLB maintenance.
    #[doc(alias = "__tlbi_sync_s1ish_hyp")]
    fn tlbi_sync_s1ish_hyp(&mut self);

    /// Invalidate all stage-2 TLB entries of the VMID.
    #[doc(alias = "__kvm_tlb_flush_vmid")]
    fn tlb_flush_vmid(&mut self);

    /// Invalidate the stage-2 TLB entries for `ipa` (inner shareable).
    #[doc(alias = "__kvm_tlb_flush_vmid_ipa")]
    fn tlb_flush_vmid_ipa(&mut self, ipa: u64, level: i32);

    /// Invalidate the stage-2 TLB entries for `ipa` (local CPU only).
    #[doc(alias = "__kvm_tlb_flush_vmid_ipa_nsh")]
    fn tlb_flush_vmid_ipa_nsh(&mut self, ipa: u64, level: i32);

    /// Invalidate `pages` pages of stage-2 TLB entries starting at `start`
    /// (range TLBI).
    #[doc(alias = "__kvm_tlb_flush_vmid_range")]
    fn tlb_flush_vmid_range(&mut self, start: u64, pages: u64);

    /// Data synchronisation barrier.
    fn dsb(&mut self, kind: Barrier);

    /// Instruction synchronisation barrier.
    fn isb(&mut self);

    /// A `WARN_ON` (`once == false`) or `WARN_ON_ONCE` (`once == true`)
    /// fired at `loc`. Reported on every firing.
    #[doc(alias = "WARN_ON")]
    fn warn(&mut self, once: bool, loc: &'static Location<'static>);

    /// Enter an RCU read-side critical section.
    fn rcu_read_lock(&mut self);

    /// Leave an RCU read-side critical section.
    fn rcu_read_unlock(&mut self);

    /// Whether an RCU read-side critical section is active.
    fn rcu_read_lock_held(&mut self) -> bool;
}

/// Everything the page-table code needs: memory management and hardware.
pub trait Env: MmOps + Hw {}

impl<T: MmOps + Hw + ?Sized> Env for T {}

/// Report a `WARN_ON` if `cond` holds, and return `cond`.
#[track_caller]
#[inline]
#[doc(alias = "WARN_ON")]
pub(crate) fn warn_on<E: Hw + ?Sized>(env: &mut E, cond: bool) -> bool {
    if cond {
        env.warn(false, Location::caller());
    }
    cond
}

/// Report a `WARN_ON_ONCE` if `cond` holds, and return `cond`. There is no
/// "already warned" state: every firing is reported.
#[track_caller]
#[inline]
#[doc(alias = "WARN_ON_ONCE")]
pub(crate) fn warn_on_once<E: Hw + ?Sized>(env: &mut E, cond: bool) -> bool {
    if cond {
        env.warn(true, Location::caller());
    }
    cond
}
