// SPDX-License-Identifier: GPL-2.0-only
//! A `no_std`, allocation-free port of the arm64 KVM page-table code
//! (hypervisor stage-1 and guest stage-2 tables) of Linux 6.12 and 7.3: one
//! crate models both kernel lines exactly, switched by [`Config::line`].
//!
//! The port aims at *observable* equivalence with the kernel: the same
//! descriptor values written with the same kind of store in the same order,
//! the same TLB, barrier and cache maintenance sequence, the same page
//! allocations and refcount updates, and the same return values. Every such
//! effect goes through the environment traits [`MmOps`] and [`Hw`], so a
//! harness can record them and compare against the C code.
//!
//! Structure mirrors the kernel's `pgtable.c`, so the two read side by side:
//! one generic walker ([`walk`]); one core ([`Pgtable`]: environment,
//! configuration, root and input range) that [`HypPgtable`] and
//! [`Stage2Pgtable`] both dereference to, as both are a `struct kvm_pgtable`
//! in the kernel; and each operation is a small named visitor (`hyp_map_walker`,
//! `stage2_unmap_walker`, `stage2_flush_walker`, ...) with its private data,
//! walked by a method carrying the kernel function's name as a doc alias
//! (`kvm_pgtable_stage2_map` finds [`Stage2Pgtable::map`]). Functions keep the
//! kernel's names where Rust allows it.
//!
//! No unsafe code outside the memory module, which alone dereferences the
//! pointers [`MmOps::phys_to_virt`] hands out.
//!
//! Build-time kernel options become run-time [`Config`] fields: the
//! [`Granule`], the execution [`Context`] (nVHE hypervisor or host kernel),
//! CPU [`Features`] and the [`KernelLine`].
//!
//! # Two kernel lines
//!
//! [`KernelLine::V6_12`] (the default) is Linux 6.12; [`KernelLine::V7_3`]
//! is the API shape mainline has had since 7.1, pinned at 7.3.4. The caller
//! passes the kernel's raw `enum kvm_pgtable_prot`, walk-flag and
//! stage-2-flag bits of the configured line ([`Prot`], [`WalkFlags`],
//! [`Stage2Flags`] keep every bit); [`ProtBits`] and [`Stage2FlagBits`] say
//! where each line puts them. What differs in 7.3:
//!
//! - [`Stage2Pgtable::annotate`] with an [`InvalidPteType`] in descriptor
//!   bits \[63:60\] replaces [`Stage2Pgtable::set_owner`]; the
//!   break-before-make marker becomes type [`InvalidPteType::LOCKED`];
//! - execute is split into privileged and unprivileged (PX, UX): stage 2
//!   writes the two-bit XN field of FEAT_XNX ([`Features::xnx`]), hyp
//!   stage 1 writes PXN/UXN under hVHE and drops UX otherwise;
//! - walk-flag bit 4 means `IGNORE_EAGAIN` ([`WalkFlags::IGNORE_EAGAIN`]):
//!   a visitor's `EAGAIN` ends every walk that does not set it;
//! - the stage-2 flag `NOFWB` is gone (FWB is the CPU's alone), `IDMAP` is
//!   bit 0 and `AS_S1` (bit 1) gives every leaf the "as stage 1" MemAttr;
//! - block mappings check the alignment of every output address;
//! - [`Stage2Pgtable::destroy_range`] and [`Stage2Pgtable::destroy_pgd`]
//!   split teardown, freeing only tables left empty;
//!   [`Stage2Pgtable::mkyoung_with_flags`] and
//!   [`Stage2Pgtable::relax_perms_with_flags`] take the caller's walk flags;
//! - [`get_vtcr`] masks each field to its width.
//!
//! Operations that exist in one line only panic on a table configured for
//! the other.
//!
//! # Example
//!
//! ```
//! use core::panic::Location;
//! use rust_pgtable::*;
//!
//! /// A tiny environment: 64 zeroed 4K pages starting at PA 0x4000_0000,
//! /// a bump allocator and an event counter.
//! struct Env { mem: Vec<u64>, next: usize, refs: Vec<i32>, stores: usize }
//! const BASE: u64 = 0x4000_0000;
//! const PAGE: u64 = 4096;
//!
//! unsafe impl MmOps for Env {
//!     type Memcache = ();
//!     fn zalloc_page(&mut self, _mc: Option<&mut ()>) -> Option<PhysAddr> {
//!         let i = self.next;
//!         self.next += 1;
//!         self.refs[i] = 1;
//!         Some(BASE + i as u64 * PAGE)
//!     }
//!     fn memcache_nobjs(&self, _mc: &()) -> usize { 0 }
//!     fn zalloc_pages_exact(&mut self, _size: u64) -> Option<PhysAddr> { None }
//!     fn free_pages_exact(&mut self, _pa: PhysAddr, _size: u64) {}
//!     fn free_unlinked_table(&mut self, _pa: PhysAddr, _level: Level) {}
//!     fn get_page(&mut self, pa: PhysAddr) { self.refs[((pa - BASE) / PAGE) as usize] += 1 }
//!     fn put_page(&mut self, pa: PhysAddr) { self.refs[((pa - BASE) / PAGE) as usize] -= 1 }
//!     fn page_count(&mut self, pa: PhysAddr) -> i32 { self.refs[((pa - BASE) / PAGE) as usize] }
//!     fn phys_to_virt(&mut self, pa: PhysAddr) -> *mut u64 {
//!         let idx = ((pa - BASE) / 8) as usize;
//!         self.mem.as_mut_ptr().wrapping_add(idx)
//!     }
//!     fn dcache_clean_inval_poc(&mut self, _pa: PhysAddr, _size: u64) {}
//!     fn icache_inval_pou(&mut self, _pa: PhysAddr, _size: u64) {}
//! }
//!
//! impl Hw for Env {
//!     fn pte_store(&mut self, _pa: PhysAddr, _prev: u64, _new: u64, _kind: StoreKind) { self.stores += 1 }
//!     fn tlbi_hyp(&mut self, _op: TlbiOp, _operand: u64, _level: i32) {}
//!     fn tlbi_sync_s1ish_hyp(&mut self) {}
//!     fn tlb_flush_vmid(&mut self) {}
//!     fn tlb_flush_vmid_ipa(&mut self, _ipa: u64, _level: i32) {}
//!     fn tlb_flush_vmid_ipa_nsh(&mut self, _ipa: u64, _level: i32) {}
//!     fn tlb_flush_vmid_range(&mut self, _start: u64, _pages: u64) {}
//!     fn dsb(&mut self, _kind: Barrier) {}
//!     fn isb(&mut self) {}
//!     fn warn(&mut self, _once: bool, loc: &'static Location<'static>) { panic!("WARN at {loc}") }
//!     fn rcu_read_lock(&mut self) {}
//!     fn rcu_read_unlock(&mut self) {}
//!     fn rcu_read_lock_held(&mut self) -> bool { false }
//! }
//!
//! let env = Env { mem: vec![0; 64 * 512], next: 0, refs: vec![0; 64], stores: 0 };
//! let cfg = Config::new(Granule::Size4K, Context::NvheHyp, Features::default());
//! let mut pgt = HypPgtable::new(env, cfg);
//! pgt.init(48).unwrap();
//!
//! // A 2MiB-aligned 2MiB range becomes one level-2 block: three stores,
//! // two new tables (levels 1 and 2) below the level-0 root.
//! pgt.map(0x20_0000, 0x20_0000, 0x8000_0000, Prot::PAGE_HYP).unwrap();
//! let (pte, level) = pgt.get_leaf(0x20_1000).unwrap();
//! assert_eq!(level, Level(2));
//! assert_eq!(pte.to_phys(&cfg), 0x8000_0000);
//! assert_eq!(hyp_pte_prot(&cfg, pte), Prot::RW);
//! assert_eq!(pgt.env().stores, 3);
//!
//! // Unmapping frees the now-empty tables again.
//! assert_eq!(pgt.unmap(0x20_0000, 0x20_0000), 0x20_0000);
//! assert_eq!(pgt.env().refs[1..3], [0, 0]);
//! ```
#![no_std]
#![deny(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn, clippy::undocumented_unsafe_blocks)]

mod env;
mod hyp;
mod mem;
mod pgtable;
mod pkvm;
mod stage2;
mod types;
mod vtcr;
pub mod walk;

pub use env::{
    Access, Barrier, Env, Hw, MAX_TLBI_RANGE_PAGES, MmOps, StoreKind, TLBI_TTL_UNKNOWN, TlbiOp,
};
pub use hyp::{HypPgtable, hyp_pte_prot, hyp_set_prot_attr};
pub use pgtable::Pgtable;
pub use pkvm::{
    ForcePteCb, MemRegion, NO_FORCE_PTE, NoForcePte, pkvm_host_force_pte, pkvm_host_force_pte_for,
    range_is_memory,
};
pub use stage2::{
    Stage2Pgtable, kvm_pgtable_stage2_pte_prot, kvm_tlb_flush_vmid_range, stage2_free_unlinked,
    stage2_pte_prot, stage2_set_prot_attr,
};
pub use types::{
    Config, Context, Error, Features, Granule, InvalidPteType, KernelLine, Level, MAX_OWNER_ID,
    PARANGE_48, PARANGE_52, PHYS_INVALID, PhysAddr, Prot, ProtBits, Pte, Stage2FlagBits,
    Stage2Flags, WalkFlags, pte_bits,
};
pub use vtcr::{
    get_vmid_bits, get_vtcr, lvls_to_sl0, mmu_cache_min_pages, pgd_pages, stage2_pgd_size,
    stage2_pgtable_levels, vtcr_el2_flags, vtcr_ipa, vtcr_levels, vtcr_start_level,
};
pub use walk::{Geometry, Visit, VisitCtx, kvm_pgtable_get_leaf, kvm_pgtable_walk};

/// VTCR_EL2 field constants.
pub mod vtcr_bits {
    pub use crate::vtcr::{
        VTCR_EL2_DS, VTCR_EL2_HA, VTCR_EL2_IRGN0_WBWA, VTCR_EL2_ORGN0_WBWA, VTCR_EL2_PS_MASK,
        VTCR_EL2_PS_SHIFT, VTCR_EL2_RES1, VTCR_EL2_SH0_INNER, VTCR_EL2_SL0_MASK,
        VTCR_EL2_SL0_SHIFT, VTCR_EL2_T0SZ_MASK, VTCR_EL2_TG0_SHIFT, VTCR_EL2_VS_16BIT,
    };
}
