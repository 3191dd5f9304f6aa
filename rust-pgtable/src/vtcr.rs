// SPDX-License-Identifier: GPL-2.0-only
//! VTCR_EL2 computation and decoding.

use crate::types::{Config, Granule, KernelLine, Level};
use crate::walk::pgd_page_idx;

/// T0SZ field mask.
pub const VTCR_EL2_T0SZ_MASK: u64 = 0x3f;
/// SL0 field shift.
pub const VTCR_EL2_SL0_SHIFT: u32 = 6;
/// SL0 field mask.
pub const VTCR_EL2_SL0_MASK: u64 = 3 << VTCR_EL2_SL0_SHIFT;
/// Inner walks write-back write-allocate.
pub const VTCR_EL2_IRGN0_WBWA: u64 = 1 << 8;
/// Outer walks write-back write-allocate.
pub const VTCR_EL2_ORGN0_WBWA: u64 = 1 << 10;
/// Walks inner shareable.
pub const VTCR_EL2_SH0_INNER: u64 = 3 << 12;
/// TG0 field shift.
pub const VTCR_EL2_TG0_SHIFT: u32 = 14;
/// PS field shift.
pub const VTCR_EL2_PS_SHIFT: u32 = 16;
/// PS field mask (bits \[18:16\]).
pub const VTCR_EL2_PS_MASK: u64 = 7 << VTCR_EL2_PS_SHIFT;
/// 16-bit VMIDs.
pub const VTCR_EL2_VS_16BIT: u64 = 1 << 19;
/// Hardware access flag management.
pub const VTCR_EL2_HA: u64 = 1 << 21;
/// Reserved, must be one.
pub const VTCR_EL2_RES1: u64 = 1 << 31;
/// 52-bit descriptors (LPA2).
pub const VTCR_EL2_DS: u64 = 1 << 32;

/// Bits every VTCR value produced here carries.
#[doc(alias = "VTCR_EL2_FLAGS")]
pub const fn vtcr_el2_flags(granule: Granule) -> u64 {
    VTCR_EL2_SH0_INNER
        | VTCR_EL2_ORGN0_WBWA
        | VTCR_EL2_IRGN0_WBWA
        | VTCR_EL2_RES1
        | granule.vtcr_tg0()
}

/// Number of stage-2 levels for an IPA width, counting on up to 16
/// concatenated pages at the entry level (which buys 4 extra bits).
/// Unsigned 32-bit arithmetic, like the kernel macro on a `u32`.
pub const fn stage2_pgtable_levels(granule: Granule, ipa: u32) -> u32 {
    granule.levels(ipa.wrapping_sub(4))
}

/// SL0 encoding for a table with `lvls` levels.
#[doc(alias = "VTCR_EL2_LVLS_TO_SL0")]
pub const fn lvls_to_sl0(granule: Granule, lvls: i8) -> u64 {
    let base = granule.vtcr_sl0_base();
    base.wrapping_sub((4 - lvls as i64) as u64) << VTCR_EL2_SL0_SHIFT
}

/// VMID width advertised by ID_AA64MMFR1_EL1.VMIDBits (16 only for the
/// value 2; anything else, reserved values included, means 8).
pub const fn get_vmid_bits(mmfr1: u64) -> u32 {
    if (mmfr1 >> 4) & 0xf == 2 { 16 } else { 8 }
}

/// Compute VTCR_EL2 for a guest with a `phys_shift`-bit IPA space.
///
/// Linux 6.12 ORs the shifted PS, T0SZ and SL0 values in unmasked, so an
/// out-of-range `phys_shift` spills into neighbouring fields exactly as the
/// kernel's `unsigned long` arithmetic does; Linux 7.3 builds each field
/// with `FIELD_PREP`, which masks it to its width.
#[doc(alias = "kvm_get_vtcr")]
pub fn get_vtcr(cfg: &Config, mmfr0: u64, mmfr1: u64, phys_shift: u32) -> u64 {
    let granule = cfg.granule;
    let masked = cfg.line == KernelLine::V7_3;
    let field = |v: u64, mask: u64| if masked { v & mask } else { v };
    let mut vtcr = vtcr_el2_flags(granule);

    vtcr |= field(
        cfg.get_parange(mmfr0) << VTCR_EL2_PS_SHIFT,
        VTCR_EL2_PS_MASK,
    );
    vtcr |= field(64u64.wrapping_sub(phys_shift as u64), VTCR_EL2_T0SZ_MASK);

    // At least two levels, so host PMD-sized mappings need no splitting.
    let mut lvls = stage2_pgtable_levels(granule, phys_shift) as i8;
    if lvls < 2 {
        lvls = 2;
    }
    // Concatenation at the entry level means the LPA2 level -1 (and SL2)
    // is never needed.
    vtcr |= field(lvls_to_sl0(granule, lvls), VTCR_EL2_SL0_MASK);

    // Hardware AF management is always enabled, except on the Ampere parts
    // whose unadvertised HAFDBS support is broken.
    if !cfg.features.ampere_ac03_workaround {
        vtcr |= VTCR_EL2_HA;
    }

    if cfg.features.lpa2 {
        vtcr |= VTCR_EL2_DS;
    }

    // VS is one bit: 16-bit VMIDs or not.
    if get_vmid_bits(mmfr1) == 16 {
        vtcr |= VTCR_EL2_VS_16BIT;
    }
    vtcr
}

/// Input address width encoded by a VTCR value.
#[doc(alias = "VTCR_EL2_IPA")]
pub const fn vtcr_ipa(vtcr: u64) -> u32 {
    (64 - (vtcr & VTCR_EL2_T0SZ_MASK)) as u32
}

/// Start level encoded by a VTCR value.
pub const fn vtcr_start_level(granule: Granule, vtcr: u64) -> Level {
    let sl0 = (vtcr & VTCR_EL2_SL0_MASK) >> VTCR_EL2_SL0_SHIFT;
    Level(granule.vtcr_sl0_base().wrapping_sub(sl0) as i8)
}

/// Number of levels of the stage-2 table a VTCR value describes.
#[doc(alias = "VTCR_EL2_LVLS")]
pub const fn vtcr_levels(granule: Granule, vtcr: u64) -> i32 {
    4 - vtcr_start_level(granule, vtcr).0 as i32
}

/// Pages a memcache must hold to install one stage-2 translation (the
/// entry level is allocated up front).
#[doc(alias = "kvm_mmu_cache_min_pages")]
pub const fn mmu_cache_min_pages(granule: Granule, vtcr: u64) -> i32 {
    vtcr_levels(granule, vtcr) - 1
}

/// Number of concatenated pages at the top of a table with the given
/// input width and start level.
#[doc(alias = "kvm_pgd_pages")]
pub fn pgd_pages(granule: Granule, ia_bits: u32, start_level: Level) -> u32 {
    pgd_page_idx(granule, ia_bits, start_level, u64::MAX).wrapping_add(1)
}

/// Size in bytes of the top-level table(s) of a stage-2 table configured
/// with `vtcr`.
#[doc(alias = "kvm_pgtable_stage2_pgd_size")]
pub fn stage2_pgd_size(granule: Granule, vtcr: u64) -> u64 {
    let pages = pgd_pages(granule, vtcr_ipa(vtcr), vtcr_start_level(granule, vtcr));
    pages as u64 * granule.page_size()
}
