// SPDX-License-Identifier: GPL-2.0-only
//! VTCR_EL2 values, worked out field by field from the architecture.

mod common;
use common::*;
use rust_pgtable::*;

// SH0 inner (3 << 12) | ORGN0 WBWA (1 << 10) | IRGN0 WBWA (1 << 8) | RES1.
const COMMON: u64 = 0x3000 | 0x400 | 0x100 | (1 << 31);
const HA: u64 = 1 << 21;
const VS16: u64 = 1 << 19;

#[test]
fn vtcr_4k_40bit() {
    let c = cfg(Granule::Size4K, Context::Kernel);
    // PARange 2 (40 bits), VMIDBits = 2 (16 bits).
    let v = get_vtcr(&c, 2, 2 << 4, 40);
    // T0SZ 24; levels (40 - 8) / 9 = 3 -> SL0 = 2 - 1 = 1; TG0 4K = 0.
    let want = COMMON | (2 << 16) | 24 | (1 << 6) | HA | VS16;
    assert_eq!(v, want);
    assert_eq!(v, 0x802a_3558);
    assert_eq!(vtcr_ipa(v), 40);
    assert_eq!(vtcr_start_level(Granule::Size4K, v), Level(1));
    assert_eq!(vtcr_levels(Granule::Size4K, v), 3);
    assert_eq!(mmu_cache_min_pages(Granule::Size4K, v), 2);
    // Level 0 would index bits 47:39: two concatenated level-1 tables.
    assert_eq!(stage2_pgd_size(Granule::Size4K, v), 2 * 4096);
}

#[test]
fn vtcr_4k_32bit_min_two_levels() {
    let c = cfg(Granule::Size4K, Context::Kernel);
    // 8-bit VMIDs (VMIDBits = 0), PARange 0.
    let v = get_vtcr(&c, 0, 0, 32);
    // levels (32 - 8) / 9 = 2 -> SL0 = 0 -> start level 2.
    assert_eq!(v, COMMON | 32 | HA);
    assert_eq!(vtcr_start_level(Granule::Size4K, v), Level(2));
    // Four concatenated level-2 tables cover 4GiB.
    assert_eq!(stage2_pgd_size(Granule::Size4K, v), 4 * 4096);
    // Very small IPA spaces are still given two levels.
    let v = get_vtcr(&c, 0, 0, 24);
    assert_eq!(v & (3 << 6), 0);
}

#[test]
fn vtcr_4k_parange_clamped_and_reserved_vmidbits() {
    let c = cfg(Granule::Size4K, Context::Kernel);
    // PARange 6 (52 bits) is clamped to 5 without LPA2; VMIDBits 3 is
    // reserved and means 8 bits.
    let v = get_vtcr(&c, 6, 3 << 4, 48);
    // levels (48 - 8) / 9 = 4 -> SL0 = 2.
    assert_eq!(v, COMMON | (5 << 16) | 16 | (2 << 6) | HA);
    assert_eq!(vtcr_start_level(Granule::Size4K, v), Level(0));
    assert_eq!(stage2_pgd_size(Granule::Size4K, v), 4096);
}

#[test]
fn vtcr_4k_lpa2() {
    let c = cfg_with(Granule::Size4K, Context::Kernel, |f| f.lpa2 = true);
    let v = get_vtcr(&c, 6, 2 << 4, 52);
    // levels (52 - 8) / 9 = 4 -> SL0 = 2; DS set; PARange 6 allowed.
    assert_eq!(
        v,
        COMMON | (6 << 16) | 12 | (2 << 6) | HA | VS16 | (1 << 32)
    );
    // Level 0 indexes bits 51:39 of which 47:39 fit a page: 16 pages.
    assert_eq!(stage2_pgd_size(Granule::Size4K, v), 16 * 4096);
}

#[test]
fn vtcr_16k_ampere() {
    let c = cfg_with(Granule::Size16K, Context::Kernel, |f| {
        f.ampere_ac03_workaround = true
    });
    let v = get_vtcr(&c, 5, 0, 48);
    // TG0 16K = 2; levels (48 - 8) / 11 = 3 -> SL0 = 3 - 1 = 2; no HA.
    assert_eq!(v, COMMON | (2 << 14) | (5 << 16) | 16 | (2 << 6));
    assert_eq!(v, 0x8005_b590);
    assert_eq!(vtcr_start_level(Granule::Size16K, v), Level(1));
    // Level 0 would index bit 47 only: two level-1 tables.
    assert_eq!(stage2_pgd_size(Granule::Size16K, v), 2 * 16384);
}

#[test]
fn vtcr_64k_52bit() {
    let c = cfg(Granule::Size64K, Context::Kernel);
    let v = get_vtcr(&c, 6, 0, 52);
    // TG0 64K = 1; PARange 6 kept (52-bit PA with 64K pages); T0SZ 12;
    // levels (52 - 8) / 13 = 3 -> SL0 = 2.
    assert_eq!(v, COMMON | (1 << 14) | (6 << 16) | 12 | (2 << 6) | HA);
    assert_eq!(v, 0x8026_758c);
    assert_eq!(vtcr_start_level(Granule::Size64K, v), Level(1));
    // A level-1 table covers 42 + 13 = 55 bits: one page.
    assert_eq!(stage2_pgd_size(Granule::Size64K, v), 65536);

    let v = get_vtcr(&c, 6, 0, 40);
    // levels (40 - 8) / 13 = 2 -> SL0 = 1 -> start level 2, whose single
    // table already spans 29 + 13 = 42 bits.
    assert_eq!(v & (3 << 6), 1 << 6);
    assert_eq!(stage2_pgd_size(Granule::Size64K, v), 65536);
}

#[test]
fn stage2_levels_helper() {
    assert_eq!(stage2_pgtable_levels(Granule::Size4K, 40), 3);
    assert_eq!(stage2_pgtable_levels(Granule::Size4K, 44), 4);
    assert_eq!(stage2_pgtable_levels(Granule::Size16K, 47), 3);
    assert_eq!(stage2_pgtable_levels(Granule::Size64K, 48), 3);
    assert_eq!(lvls_to_sl0(Granule::Size4K, 4), 2 << 6);
    assert_eq!(get_vmid_bits(2 << 4), 16);
    assert_eq!(get_vmid_bits(1 << 4), 8);
}
