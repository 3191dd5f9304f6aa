// SPDX-License-Identifier: GPL-2.0-only
//! Descriptor memory access. This is the only module that dereferences the
//! raw pointers produced by [`MmOps::phys_to_virt`]; everything else goes
//! through these helpers, which also report each store to [`Hw::pte_store`].
//!
//! Each helper is one of the kernel's accessors, and the kernel's choice of
//! accessor is kept: its single-copy-atomic accesses (`READ_ONCE`,
//! `WRITE_ONCE`, `smp_store_release`, `cmpxchg`) are announced to
//! [`Hw::pte_access`] first, its plain `*ptep` loads ([`read_plain`]) are
//! not, so an environment sees exactly the accesses the kernel makes.

use core::sync::atomic::{AtomicU64, Ordering};

use crate::env::{Access, Hw, MmOps, StoreKind};
use crate::types::{Granule, PhysAddr};

/// One descriptor: the physical address the environment is told about,
/// and the pointer it is accessed through.
///
/// Only [`Table::slot`] makes one, so the pointer always lies inside a
/// table page that [`MmOps::phys_to_virt`] resolved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Slot {
    pub(crate) pa: PhysAddr,
    p: *mut u64,
}

/// A table page, resolved to a pointer once, as the kernel follows a table
/// descriptor once (`kvm_pte_follow`) and then indexes the page.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Table {
    pa: PhysAddr,
    p: *mut u64,
    ptrs: u64,
}

impl Table {
    /// Resolve the table page of `granule` at `pa`, checking the alignment
    /// the contract promises (a misaligned pointer would make the accesses
    /// below undefined).
    #[doc(alias = "kvm_pte_follow")]
    #[inline(always)]
    pub(crate) fn follow<E: MmOps + ?Sized>(env: &mut E, granule: Granule, pa: PhysAddr) -> Table {
        let p = env.phys_to_virt(pa);
        assert!(
            !p.is_null() && p.is_aligned(),
            "phys_to_virt returned a null or misaligned table pointer"
        );
        Table {
            pa,
            p,
            ptrs: granule.ptrs_per_pte(),
        }
    }

    /// Descriptors in the page (`PTRS_PER_PTE`).
    #[inline(always)]
    pub(crate) fn len(self) -> u64 {
        self.ptrs
    }

    /// The descriptor at index `idx` of the page.
    #[inline(always)]
    pub(crate) fn slot(self, idx: u64) -> Slot {
        // The bound keeps every `Slot` inside the page the contract makes
        // valid; the walker never asks for more, so this never fires.
        assert!(idx < self.ptrs, "descriptor index outside its table page");
        Slot {
            pa: self.pa.wrapping_add(idx * 8),
            p: self.p.wrapping_add(idx as usize),
        }
    }
}

/// Single-copy-atomic read of a descriptor (`READ_ONCE`).
#[doc(alias = "READ_ONCE")]
#[inline(always)]
pub(crate) fn read_once<E: Hw + ?Sized>(env: &mut E, slot: Slot) -> u64 {
    env.pte_access(slot.pa, Access::ReadOnce);
    read_plain(slot)
}

/// The kernel's plain `*ptep` load: no synchronisation point, so not
/// announced to [`Hw::pte_access`].
#[inline(always)]
pub(crate) fn read_plain(slot: Slot) -> u64 {
    // SAFETY: the `MmOps` safety contract makes the whole table page behind
    // `Table::follow`'s pointer live, aligned and unaliased by any Rust
    // reference; `Table::follow` checked alignment and non-nullness, and
    // `Table::slot` kept the index inside the page.
    unsafe { core::ptr::read_volatile(slot.p) }
}

/// Plain single-copy-atomic store (`WRITE_ONCE`).
#[doc(alias = "WRITE_ONCE")]
#[inline(always)]
pub(crate) fn write_once<E: Hw + ?Sized>(env: &mut E, slot: Slot, new: u64) {
    env.pte_access(slot.pa, Access::WriteOnce);
    // SAFETY: as in `read_plain`; the pointer is valid for reads and writes.
    let prev = unsafe { core::ptr::read_volatile(slot.p) };
    // SAFETY: as above.
    unsafe { core::ptr::write_volatile(slot.p, new) };
    env.pte_store(slot.pa, prev, new, StoreKind::WriteOnce);
}

/// Store with release semantics (`smp_store_release`), so that a table's
/// contents are visible before the descriptor pointing at it.
#[doc(alias = "smp_store_release")]
#[inline(always)]
pub(crate) fn store_release<E: Hw + ?Sized>(env: &mut E, slot: Slot, new: u64) {
    env.pte_access(slot.pa, Access::Release);
    // SAFETY: `slot.p` is non-null, 8-byte aligned and valid for atomic
    // access for the duration of this call per the `MmOps` contract (see
    // `read_plain`), and nothing else accesses it non-atomically meanwhile.
    let a = unsafe { AtomicU64::from_ptr(slot.p) };
    // The value replaced is only reported, so a relaxed load before the
    // release store keeps the store itself exactly the kernel's.
    let prev = a.load(Ordering::Relaxed);
    a.store(new, Ordering::Release);
    env.pte_store(slot.pa, prev, new, StoreKind::Release);
}

/// Compare-and-exchange with full ordering (`cmpxchg`). Returns the value
/// found in memory; the store is reported only if it took place.
#[inline(always)]
pub(crate) fn cmpxchg<E: Hw + ?Sized>(env: &mut E, slot: Slot, old: u64, new: u64) -> u64 {
    env.pte_access(slot.pa, Access::Cmpxchg);
    // SAFETY: same reasoning as `store_release`.
    let a = unsafe { AtomicU64::from_ptr(slot.p) };
    let found = match a.compare_exchange(old, new, Ordering::SeqCst, Ordering::SeqCst) {
        Ok(v) | Err(v) => v,
    };
    if found == old {
        env.pte_store(slot.pa, old, new, StoreKind::Cmpxchg { old });
    }
    found
}
