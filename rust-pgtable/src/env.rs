// SPDX-License-Identifier: GPL-2.0-only
//! The environment the page-table code runs in: memory management callbacks
//! ([`MmOps`]) and hardware side effects ([`Hw`]).
//!
//! Every effect the kernel code has on the world (allocating, refcounting,
//! descriptor stores, barriers, TLB and cache maintenance, warnings, RCU)
//! is routed through these two traits so a harness can record them.
//!
//! [`Hw`] documents, for every TLB and cache helper, the exact sequence the
//! kernel's helper performs, so that an implementation for real hardware can
//! be written from these docs alone.

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
/// [`MmOps::phys_to_virt`] must return, for the physical address of a
/// table page the implementation handed out (by [`MmOps::zalloc_page`], or
/// as one of the pages of a [`MmOps::zalloc_pages_exact`] allocation) and
/// has not freed since, an 8-byte aligned pointer to the start of that
/// page, valid for volatile and atomic 8-byte reads and writes of each of
/// the page's descriptors (the page is contiguous behind the pointer, as on
/// the kernel's linear map). The crate dereferences those pointers, and
/// keeps each for as long as a walk is inside its page, across later calls
/// into the environment (allocations, refcounts, frees, other
/// `phys_to_virt` calls): while the page-table code runs, the
/// implementation must neither hold nor create a Rust reference to that
/// memory (a `&mut` to a whole `Vec` backing it, as its indexing makes,
/// would invalidate the pointers; `Vec::as_mut_ptr` does not), and must not
/// free the memory of a page the walk may still be in.
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

    /// Pointer through which the table page at `pa` is accessed: called
    /// once per table page a walk enters (the kernel's `kvm_pte_follow`),
    /// whose descriptors are then reached by indexing it. Not an observable
    /// event: only the crate's memory module calls it.
    fn phys_to_virt(&mut self, pa: PhysAddr) -> *mut u64;

    /// Clean and invalidate the data cache to the PoC for `[pa, pa+size)`,
    /// and wait for completion: the page-table code installs the entry
    /// that lets the guest reach this memory right after the call.
    ///
    /// The kernel's callers (both mm_ops hooks named
    /// `clean_dcache_guest_page`): nothing at all when the CPU has
    /// `ARM64_HAS_STAGE2_FWB` (the guest's accesses are forced cacheable);
    /// otherwise `dcache_clean_inval_poc(va, va + size)`: `DC CIVAC` on
    /// every `CTR_EL0.DminLine`-sized line from `va` rounded down to a line
    /// to `va + size`, then **`DSB SY`** (`dcache_by_line_op civac, sy`;
    /// 7.3 with `ARM64_WORKAROUND_4311569` runs the `DC CIVAC` loop twice
    /// before the DSB). The kernel context runs it on the linear-map alias
    /// (mmu.c, kvm_mmu.h `__clean_dcache_guest_page`); a pKVM guest at EL2
    /// maps the page through the hypervisor's fixmap first, one 4K page (or,
    /// 7.3, one PMD-sized fixblock) at a time (nvhe/mem_protect.c
    /// `clean_dcache_guest_page`). Arm ARM: "Data cache maintenance
    /// instructions" (DC CIVAC to the Point of Coherency), completion by DSB.
    ///
    /// Called only when [`MmOps::has_dcache_clean_inval_poc`] holds.
    fn dcache_clean_inval_poc(&mut self, pa: PhysAddr, size: u64);

    /// Invalidate the instruction cache to the PoU for `[pa, pa+size)`,
    /// and wait for completion: the page-table code grants execute
    /// permission right after the call.
    ///
    /// The kernel's callers (both named `invalidate_icache_guest_page`):
    /// 7.3's pKVM guest returns at once with `ARM64_HAS_CACHE_DIC`, else
    /// maps the page through the fixmap as for the data cache; then
    /// `__invalidate_icache_guest_page` (kvm_mmu.h): if the I-cache is
    /// aliasing (VIPT) or `size` exceeds `MAX_DVM_OPS << IminLine` bytes,
    /// `icache_inval_all_pou()`:
    /// `IC IALLUIS; DSB ISH` (nothing with DIC; **no ISB**); otherwise
    /// `icache_inval_pou(va, va + size)`: with `ARM64_HAS_CACHE_DIC` only
    /// an `ISB`, else `IC IVAU` on every `CTR_EL0.IminLine`-sized line,
    /// `DSB ISH`, `ISB` (`invalidate_icache_by_line`, nvhe/cache.S). Arm ARM:
    /// "Instruction cache maintenance instructions" (IC IVAU / IALLUIS to
    /// the Point of Unification), "Ordering and completion of data and
    /// instruction cache instructions".
    ///
    /// Called only when [`MmOps::has_icache_inval_pou`] holds.
    fn icache_inval_pou(&mut self, pa: PhysAddr, size: u64);

    /// Whether `page_count` exists (the kernel tests the pointer for NULL).
    /// Without it `kvm_pgtable_hyp_unmap` returns 0 at once: the kernel's
    /// own hyp stage-1 (`kvm_hyp_mm_ops`, mmu.c) has none.
    fn has_page_count(&self) -> bool {
        true
    }

    /// Whether `dcache_clean_inval_poc` exists: pKVM's host stage-2 has
    /// none (nvhe/mem_protect.c), so no data cache maintenance is done on
    /// its mappings.
    fn has_dcache_clean_inval_poc(&self) -> bool {
        true
    }

    /// Whether `icache_inval_pou` exists: pKVM's host stage-2 has none.
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

/// A single-copy-atomic access to a descriptor, as the kernel spells it:
/// the accesses at which the page-table code can observe another agent's
/// write (see [`Hw::pte_access`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Access {
    /// `READ_ONCE`: the walker's snapshot of a descriptor when it reaches
    /// it, and its reload after a leaf or pre-order visit.
    ReadOnce,
    /// `WRITE_ONCE`: an exclusive walker's store.
    WriteOnce,
    /// `smp_store_release`: publishing a new descriptor.
    Release,
    /// `cmpxchg`: a shared walker's store, which fails if the descriptor
    /// no longer holds the value the walker last read.
    Cmpxchg,
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
///
/// # Implementing `Hw` on real hardware
///
/// The page-table code relies on each TLB and cache helper doing *all* of
/// what the kernel's helper of the same name does, barriers included:
/// between writing an invalid entry and calling a stage-2 TLB helper it
/// issues no barrier of its own, and after the helper returns it publishes
/// the new entry at once. An implementation that issues only the bare TLBI
/// breaks break-before-make. Each method below states the kernel's exact
/// sequence (Linux 6.12 and 7.3 `arch/arm64/kvm/hyp/nvhe/tlb.c`,
/// `hyp/vhe/tlb.c`, `include/asm/tlbflush.h`, `hyp/nvhe/cache.S`,
/// `include/asm/assembler.h`, `include/asm/kvm_mmu.h`) and the
/// architectural rule it implements. Arm ARM references are to the Arm
/// Architecture Reference Manual for A-profile (DDI 0487), by rule and
/// section name: the numbers move between issues.
///
/// Rules the sequences implement (Arm ARM, "The AArch64 Virtual Memory
/// System Architecture", "TLB maintenance"):
///
/// - **Break-before-make** ("Using break-before-make when updating
///   translation table entries"): to replace a valid entry by a different
///   valid one, write an invalid entry, make the write visible to table
///   walkers (a DSB), invalidate every TLB entry the old one could have
///   produced (TLBI), wait for the invalidation to complete (a DSB of the
///   same shareability), and only then write the new entry. The leading and
///   trailing DSBs of the stage-2 helpers are those two steps.
/// - **Completion** ("Ordering and completion of TLB maintenance
///   instructions"): a TLBI is complete only once a later DSB (inner
///   shareable for a broadcast `...IS` TLBI, non-shareable for a local one)
///   has completed; an ISB then makes this PE's later instruction fetches
///   and translations use the new state ("Context synchronization event").
/// - **Combined stage 1+2 entries** ("Invalidation of TLB entries from
///   stage 2 translations"): an invalidation by IPA does not remove entries
///   that cache a whole VA-to-PA walk. The stage-1 entries of the VMID must
///   be invalidated too, and only *after* the stage-2 invalidation has
///   completed, or another PE could refill a combined entry from the stale
///   stage-2 entry in between.
/// - **Non-leaf invalidation**: `TLBI IPAS2E1IS` and `TLBI VAE2IS` (not their
///   last-level `...LE...` forms) also remove cached intermediate (walk
///   cache) entries, which is what makes freeing a table page after
///   invalidating the entry that pointed to it safe.
/// - **FEAT_TTL** ("TLB maintenance instructions", the TTL field): a level
///   hint in operand bits \[47:44\] (`TG << 2 | level`, TG 1/2/3 for
///   4K/16K/64K) lets the PE invalidate only entries of that level; a wrong
///   hint may leave entries behind, so a hint is given only for a known
///   level 0 to 3 and only when the PE implements FEAT_TTL.
/// - **FEAT_TLBIRANGE** ("TLB range maintenance instructions"): `TLBI
///   RIPAS2E1IS` covers `(NUM + 1) << (5 * SCALE + 1)` pages from BADDR in
///   one instruction.
/// - **Cache maintenance** ("Data cache maintenance instructions",
///   "Instruction cache maintenance instructions", "Ordering and completion
///   of data and instruction cache instructions"): DC and IC operations
///   complete only at a following DSB; an instruction fetch after IC
///   invalidation needs an ISB (or an exception return) to observe it.
///
/// Errata that change the sequences (all CPU capabilities of the kernel):
/// `ARM64_WORKAROUND_REPEAT_TLBI` (6.12) / `ARM64_WORKAROUND_REPEAT_TLBI_SYNC`
/// (7.3) repeat a dummy `TLBI VALE2IS, XZR; DSB ISH` after every TLBI
/// completion DSB marked "\[REP\]" below; `ARM64_WORKAROUND_SPECULATIVE_AT`
/// (errata 1165522, 1319367, 1530923) disables stage-1 walks (TCR_EL1.EPD0/1,
/// SCTLR_EL1.M) around the VTTBR switch and moves the ISB into it;
/// `ARM64_WORKAROUND_4311569` (7.3 only) runs the data cache loop twice.
/// None of them changes *which* helper pgtable.c calls, so the harness
/// records each helper as one event.
///
/// # The helpers
///
/// Every TLB helper below is one call of the page-table code and stands for
/// the whole sequence the kernel's helper of that name performs; see the
/// rules and errata above. "nVHE" is the helper as the hypervisor runs it (pKVM at EL2, or the kernel's
/// `kvm_call_hyp` hypercall on non-VHE systems, `hyp/nvhe/tlb.c`); "VHE" is
/// the kernel's own copy on VHE systems (`hyp/vhe/tlb.c`), after which
/// `kvm_call_hyp` adds an `ISB` (on nVHE the exception return from the
/// hypercall is that context synchronisation). The two kernel lines have
/// the same sequences.
///
/// The stage-2 helpers switch to the table's VMID around the invalidation
/// (`enter_vmid_context` / `exit_vmid_context`). nVHE: `DSB ISH` (`DSB
/// NSH` for the `_nsh` helper) first, always; then, unless already running
/// on that stage-2 (pKVM's host stage-2 from host context, or the running
/// guest's), load VTCR_EL2/VTTBR_EL2 of the table (or of the host's
/// stage-2 from guest context) followed by one `ISB`; afterwards restore
/// VTTBR_EL2 and `ISB`. VHE: interrupts off, load the table's
/// VTCR_EL2/VTTBR_EL2, clear `HCR_EL2.TGE` so that EL1 TLBIs target the
/// guest, `ISB`; afterwards restore `HCR_EL2`, `ISB`, and reload the
/// running vCPU's stage-2 if it was another (7.3 writes HCR_EL2 through
/// `write_sysreg_hcr`, which under Ampere erratum AC04_CPU_23 is `DSB NSH;
/// MSR; ISB`).
pub trait Hw {
    /// Called right after the descriptor at `pa`, which held `prev`, has
    /// been written with `new`. Failed compare-and-exchanges store nothing and are not
    /// reported.
    ///
    /// On hardware the store itself is the event: a single-copy-atomic
    /// 64-bit write of the kind given ([`StoreKind::WriteOnce`]: `STR`;
    /// [`StoreKind::Release`]: `STLR`, ordered after every earlier access,
    /// including the completed TLB maintenance before it;
    /// [`StoreKind::Cmpxchg`]: a fully ordered compare-and-swap, `CASAL` or
    /// an `LDAXR`/`STLXR` loop with a trailing `DMB ISH`). The page-table
    /// code issues every other barrier itself.
    fn pte_store(&mut self, pa: PhysAddr, prev: u64, new: u64, kind: StoreKind);

    /// Called right before each single-copy-atomic access to the
    /// descriptor at `pa` (`READ_ONCE`, `WRITE_ONCE`, `smp_store_release`,
    /// `cmpxchg`), in program order.
    ///
    /// These are the points at which the page-table code can observe a
    /// write by another agent: another CPU walking the same table (a
    /// `SHARED` walk in the kernel, under RCU and the read side of
    /// `mmu_lock`), or the hardware setting the access flag of a leaf
    /// (`VTCR_EL2.HA`). An environment that models such agents (a model
    /// checker, a race injector) may write the descriptor here through its
    /// own mapping of the table; the access then reads, overwrites or
    /// compares against what it wrote. The kernel's plain `*ptep` loads
    /// (the check that an entry is still locked before it is published)
    /// are not such points and are not reported.
    ///
    /// On hardware the other agents need no help: the default does nothing.
    #[inline]
    fn pte_access(&mut self, pa: PhysAddr, access: Access) {
        let _ = (pa, access);
    }

    /// Issue a stage-1 EL2 TLBI. `operand` is the Xt operand of
    /// `TLBI VAE2IS`/`VALE2IS` before any TTL hint, with ASID 0:
    /// `(va >> 12) & GENMASK(43, 0)`; `level` is the level of the entry
    /// (the TTL hint to apply when FEAT_TTL is present and `level` is 0 to
    /// 3) or [`TLBI_TTL_UNKNOWN`]. The same on both kernel lines: Linux 6.12
    /// passes `__TLBI_VADDR(va, 0)` to `__tlbi_level()`, 7.3 passes `va`
    /// and `__tlbi_level()` computes `__TLBI_VADDR(va, 0)` itself; the
    /// levels passed are never negative, so 7.3's `u32` level parameter
    /// does not change which hints apply.
    ///
    /// On hardware this is the one instruction, nothing else: `TLBI VAE2IS,
    /// Xt` or `TLBI VALE2IS, Xt` with Xt = `operand`, and, when the PE
    /// implements FEAT_TTL (`ARM64_HAS_ARMv8_4_TTL`) and `level` is 0..=3,
    /// bits \[47:44\] replaced by `TG << 2 | level` (TG 1/2/3 for
    /// 4K/16K/64K). The page-table code issues the `DSB ISHST` before it
    /// (after clearing the entry), [`Hw::tlbi_sync_s1ish_hyp`] and the `ISB`
    /// after it. Arm ARM: "TLBI VAE2IS, TLBI VALE2IS" (EL2 translation
    /// regime, Inner Shareable; the `L` form leaves walk-cache entries).
    #[doc(alias = "__tlbi_level")]
    fn tlbi_hyp(&mut self, op: TlbiOp, operand: u64, level: i32);

    /// Wait for completion of EL2 stage-1 TLB maintenance.
    ///
    /// Kernel sequence (`__tlbi_sync_s1ish_hyp`, tlbflush.h, both lines):
    /// `DSB ISH`, then \[REP\] `TLBI VALE2IS, XZR; DSB ISH`. No ISB: the
    /// page-table code issues it next. Unlike the host's
    /// `__tlbi_sync_s1ish(mm)` in 7.3 it has no SME DVMSync step. Arm ARM:
    /// "Ordering and completion of TLB maintenance instructions".
    #[doc(alias = "__tlbi_sync_s1ish_hyp")]
    fn tlbi_sync_s1ish_hyp(&mut self);

    /// Invalidate all stage-1 and stage-2 TLB entries of the VMID.
    ///
    /// nVHE: enter the VMID (`DSB ISH` first); `TLBI VMALLS12E1IS`; `DSB
    /// ISH` \[REP\]; `ISB`; leave the VMID. VHE: `DSB ISHST`; enter the
    /// VMID; the same; leave; `ISB` (kvm_call_hyp). The leading DSB makes
    /// the invalid entries written before the call visible to table walkers
    /// (break-before-make), the trailing `DSB ISH` completes the
    /// invalidation before the page-table code writes a new entry or frees
    /// a table. Arm ARM: "TLBI VMALLS12E1IS" (stage 1 and stage 2 of the
    /// current VMID, EL1&0 regime, Inner Shareable).
    #[doc(alias = "__kvm_tlb_flush_vmid")]
    fn tlb_flush_vmid(&mut self);

    /// Invalidate the stage-2 TLB entries for `ipa` (inner shareable), and
    /// every stage-1 entry of the VMID.
    ///
    /// nVHE: enter the VMID (`DSB ISH` first); `TLBI IPAS2E1IS, Xt` with
    /// Xt = `ipa >> 12` plus the FEAT_TTL hint of `level` (as
    /// [`Hw::tlbi_hyp`]; [`TLBI_TTL_UNKNOWN`] or -1 gives none); `DSB ISH`;
    /// `TLBI VMALLE1IS`; `DSB ISH` \[REP\]; `ISB`; leave the VMID. VHE:
    /// `DSB ISHST`; enter; the same; leave; `ISB`. The `DSB ISH` between the
    /// two TLBIs is the combined-entry rule of the module documentation.
    /// Arm ARM: "TLBI IPAS2E1IS" (by IPA, all levels, stage 2 only),
    /// "TLBI VMALLE1IS".
    #[doc(alias = "__kvm_tlb_flush_vmid_ipa")]
    fn tlb_flush_vmid_ipa(&mut self, ipa: u64, level: i32);

    /// Invalidate the stage-2 TLB entries for `ipa` on this PE only, and
    /// its stage-1 entries of the VMID (relax_perms: a stale, more
    /// restrictive entry elsewhere only costs another permission fault).
    ///
    /// nVHE: enter the VMID with `DSB NSH`; `TLBI IPAS2E1, Xt` (as above);
    /// `DSB NSH`; `TLBI VMALLE1`; `DSB NSH`; `ISB`; leave (no \[REP\]).
    /// VHE: `DSB NSHST`; enter; the same; leave; `ISB`. Arm ARM: "TLBI
    /// IPAS2E1", "TLBI VMALLE1" (non-shareable: this PE).
    #[doc(alias = "__kvm_tlb_flush_vmid_ipa_nsh")]
    fn tlb_flush_vmid_ipa_nsh(&mut self, ipa: u64, level: i32);

    /// Invalidate `pages` pages of stage-2 TLB entries starting at `start`,
    /// and every stage-1 entry of the VMID. The page-table code only calls
    /// it with FEAT_TLBIRANGE (else it calls [`Hw::tlb_flush_vmid`]) and
    /// at most [`MAX_TLBI_RANGE_PAGES`] pages at a time.
    ///
    /// nVHE: `start` rounded down to the page size; enter the VMID (`DSB
    /// ISH` first); then, while pages remain, from SCALE 3 down to 0: if
    /// only one page is left (or, with LPA2, `start` is not 64K-aligned)
    /// `TLBI IPAS2E1IS, start >> 12` for that page, else `TLBI RIPAS2E1IS`
    /// with BADDR = `start >> PAGE_SHIFT` (`>> 16` with LPA2), TTL 0, TG
    /// the granule and the largest NUM with `(NUM + 1) << (5 * SCALE + 1)`
    /// pages that fit; then `DSB ISH`; `TLBI VMALLE1IS`; `DSB ISH` \[REP\];
    /// `ISB`; leave. VHE: `DSB ISHST`; enter; the same; leave; `ISB`. Arm
    /// ARM: "TLBI RIPAS2E1IS" (FEAT_TLBIRANGE), and as
    /// [`Hw::tlb_flush_vmid_ipa`].
    #[doc(alias = "__kvm_tlb_flush_vmid_range")]
    fn tlb_flush_vmid_range(&mut self, start: u64, pages: u64);

    /// Data synchronisation barrier: `DSB <kind>`, nothing else.
    fn dsb(&mut self, kind: Barrier);

    /// Instruction synchronisation barrier: `ISB`, nothing else.
    fn isb(&mut self);

    /// A `WARN_ON` (`once == false`) or `WARN_ON_ONCE` (`once == true`)
    /// fired at `loc`. Reported on every firing.
    ///
    /// What it means depends on where the code runs: in the nVHE hypervisor
    /// every WARN is a `BRK` that ends in `hyp_panic` and a host `panic()`
    /// (handle_exit.c: hypervisor bugs, warnings included, are fatal), so
    /// an implementation for EL2 must not return from it; in the kernel it
    /// is logged and the code carries on with the condition's value.
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
