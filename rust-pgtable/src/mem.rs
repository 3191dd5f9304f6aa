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
use crate::types::PhysAddr;

/// Resolve `pa` to a pointer, checking the alignment the contract promises
/// (a misaligned pointer would make the accesses below undefined).
#[inline(always)]
fn ptr<E: MmOps + ?Sized>(env: &mut E, pa: PhysAddr) -> *mut u64 {
    let p = env.phys_to_virt(pa);
    assert!(
        !p.is_null() && p.is_aligned(),
        "phys_to_virt returned a null or misaligned descriptor pointer"
    );
    p
}

/// Single-copy-atomic read of a descriptor (`READ_ONCE`).
#[doc(alias = "READ_ONCE")]
#[inline(always)]
pub(crate) fn read_once<E: MmOps + Hw + ?Sized>(env: &mut E, pa: PhysAddr) -> u64 {
    env.pte_access(pa, Access::ReadOnce);
    read_plain(env, pa)
}

/// The kernel's plain `*ptep` load: no synchronisation point, so not
/// announced to [`Hw::pte_access`].
#[inline(always)]
pub(crate) fn read_plain<E: MmOps + ?Sized>(env: &mut E, pa: PhysAddr) -> u64 {
    let p = ptr(env, pa);
    // SAFETY: the `MmOps` safety contract guarantees `p` points at a live,
    // aligned descriptor that no Rust reference aliases; `ptr` checked
    // alignment and non-nullness.
    unsafe { core::ptr::read_volatile(p) }
}

/// Plain single-copy-atomic store (`WRITE_ONCE`).
#[doc(alias = "WRITE_ONCE")]
#[inline(always)]
pub(crate) fn write_once<E: MmOps + Hw + ?Sized>(env: &mut E, pa: PhysAddr, new: u64) {
    env.pte_access(pa, Access::WriteOnce);
    let p = ptr(env, pa);
    // SAFETY: as in `read_once`; the pointer is valid for reads and writes.
    let prev = unsafe { core::ptr::read_volatile(p) };
    // SAFETY: as above.
    unsafe { core::ptr::write_volatile(p, new) };
    env.pte_store(pa, prev, new, StoreKind::WriteOnce);
}

/// Store with release semantics (`smp_store_release`), so that a table's
/// contents are visible before the descriptor pointing at it.
#[doc(alias = "smp_store_release")]
#[inline(always)]
pub(crate) fn store_release<E: MmOps + Hw + ?Sized>(env: &mut E, pa: PhysAddr, new: u64) {
    env.pte_access(pa, Access::Release);
    let p = ptr(env, pa);
    // SAFETY: `p` is non-null, 8-byte aligned and valid for atomic access
    // for the duration of this call per the `MmOps` contract, and nothing
    // else accesses it non-atomically meanwhile.
    let a = unsafe { AtomicU64::from_ptr(p) };
    // The value replaced is only reported, so a relaxed load before the
    // release store keeps the store itself exactly the kernel's.
    let prev = a.load(Ordering::Relaxed);
    a.store(new, Ordering::Release);
    env.pte_store(pa, prev, new, StoreKind::Release);
}

/// Compare-and-exchange with full ordering (`cmpxchg`). Returns the value
/// found in memory; the store is reported only if it took place.
#[inline(always)]
pub(crate) fn cmpxchg<E: MmOps + Hw + ?Sized>(
    env: &mut E,
    pa: PhysAddr,
    old: u64,
    new: u64,
) -> u64 {
    env.pte_access(pa, Access::Cmpxchg);
    let p = ptr(env, pa);
    // SAFETY: same reasoning as `store_release`.
    let a = unsafe { AtomicU64::from_ptr(p) };
    let found = match a.compare_exchange(old, new, Ordering::SeqCst, Ordering::SeqCst) {
        Ok(v) | Err(v) => v,
    };
    if found == old {
        env.pte_store(pa, old, new, StoreKind::Cmpxchg { old });
    }
    found
}
