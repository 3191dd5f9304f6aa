// SPDX-License-Identifier: GPL-2.0-only
//! The force-PTE hook of stage-2 tables, and the policy the pKVM host
//! installs through it (`host_stage2_force_pte_cb()` in the kernel's
//! `mem_protect.c`, which lives outside the page-table code proper).

use crate::types::{KernelLine, Prot};

/// Decides whether a stage-2 map must use page mappings only. Consulted
/// once per [`crate::Stage2Pgtable::map`] call with `(addr, addr + size, prot)`,
/// before anything else happens. It receives the environment so that a
/// recording harness can log the call in order with everything else.
#[doc(alias = "kvm_pgtable_force_pte_cb_t")]
pub trait ForcePteCb<E> {
    /// `true` to forbid block mappings for this map request.
    fn force_pte(&mut self, env: &mut E, addr: u64, end: u64, prot: Prot) -> bool;
}

impl<E, F> ForcePteCb<E> for F
where
    F: FnMut(&mut E, u64, u64, Prot) -> bool,
{
    fn force_pte(&mut self, env: &mut E, addr: u64, end: u64, prot: Prot) -> bool {
        self(env, addr, end, prot)
    }
}

/// Placeholder callback type for tables without a force-PTE callback.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoForcePte;

impl<E> ForcePteCb<E> for NoForcePte {
    fn force_pte(&mut self, _env: &mut E, _addr: u64, _end: u64, _prot: Prot) -> bool {
        false
    }
}

/// "No force-PTE callback", with the callback type pinned down.
pub const NO_FORCE_PTE: Option<NoForcePte> = None;

/// The pKVM host policy: blocks are only safe for the default mappings
/// (RWX for memory, RW for MMIO), because a map into an existing block
/// throws the rest of the block away and only default mappings can be
/// rebuilt on the next fault. Anything else is mapped page by page.
/// `prot` is in the Linux 6.12 encoding; see [`pkvm_host_force_pte_for`].
#[doc(alias = "host_stage2_force_pte_cb")]
pub fn pkvm_host_force_pte(range_is_memory: bool, prot: Prot) -> bool {
    pkvm_host_force_pte_for(KernelLine::V6_12, range_is_memory, prot)
}

/// [`pkvm_host_force_pte`] for `prot` in the encoding of `line` (the
/// policy is the same in both lines; the default permissions' bits are
/// not).
#[doc(alias = "host_stage2_force_pte_cb")]
pub fn pkvm_host_force_pte_for(line: KernelLine, range_is_memory: bool, prot: Prot) -> bool {
    let bits = line.prot_bits();
    if range_is_memory {
        prot != bits.pkvm_host_mem_prot()
    } else {
        prot != bits.pkvm_host_mmio_prot()
    }
}

/// A memory region `[base, base + size)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemRegion {
    /// First byte.
    pub base: u64,
    /// Length in bytes.
    pub size: u64,
}

/// Whether `[start, end)` lies inside a single region of `regions`: the
/// region holding `start` must also hold `end - 1`. This is how the pKVM
/// host decides between its memory and MMIO policies.
pub fn range_is_memory(regions: &[MemRegion], start: u64, end: u64) -> bool {
    let Some(r) = regions
        .iter()
        .find(|r| start >= r.base && start < r.base.wrapping_add(r.size))
    else {
        return false;
    };
    let last = end.wrapping_sub(1);
    last >= r.base && last < r.base.wrapping_add(r.size)
}
