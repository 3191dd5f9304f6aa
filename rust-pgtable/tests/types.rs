// SPDX-License-Identifier: GPL-2.0-only
//! Granule geometry, errno mapping and descriptor address encodings.

mod common;
use common::*;
use rust_pgtable::*;

#[test]
fn granule_geometry() {
    let g = Granule::Size4K;
    assert_eq!(
        (g.page_shift(), g.page_size(), g.ptrs_per_pte()),
        (12, 4096, 512)
    );
    assert_eq!(
        [-1, 0, 1, 2, 3].map(|l| g.granule_shift(Level(l))),
        [48, 39, 30, 21, 12]
    );
    assert_eq!(g.levels(48), 4);
    assert_eq!(g.levels(52), 5);
    assert_eq!(g.levels(39), 3);
    assert_eq!(g.min_block_level(), Level(1));

    let g = Granule::Size16K;
    assert_eq!(
        (g.page_shift(), g.page_size(), g.ptrs_per_pte()),
        (14, 16384, 2048)
    );
    assert_eq!(
        [0, 1, 2, 3].map(|l| g.granule_shift(Level(l))),
        [47, 36, 25, 14]
    );
    assert_eq!(g.levels(48), 4);
    assert_eq!(g.levels(47), 3);
    assert_eq!(g.min_block_level(), Level(2));

    let g = Granule::Size64K;
    assert_eq!(
        (g.page_shift(), g.page_size(), g.ptrs_per_pte()),
        (16, 65536, 8192)
    );
    assert_eq!([1, 2, 3].map(|l| g.granule_shift(Level(l))), [42, 29, 16]);
    assert_eq!(g.levels(48), 3);
    assert_eq!(g.levels(52), 3);
    assert_eq!(g.levels(42), 2);
    assert_eq!(g.min_block_level(), Level(2));
}

#[test]
fn block_sizes() {
    let g = Granule::Size4K;
    assert!(g.is_block_size_supported(1 << 30));
    assert!(g.is_block_size_supported(1 << 21));
    assert!(g.is_block_size_supported(1 << 12));
    assert!(!g.is_block_size_supported(1 << 13));
    assert!(!g.is_block_size_supported(3 << 12));
    assert!(!g.is_block_size_supported(0));
    let g = Granule::Size64K;
    assert!(g.is_block_size_supported(1 << 29));
    assert!(!g.is_block_size_supported(1 << 42));
}

#[test]
fn errno_round_trip() {
    let all = [
        (Error::Perm, -1),
        (Error::TooBig, -7),
        (Error::Again, -11),
        (Error::NoMem, -12),
        (Error::Inval, -22),
        (Error::Range, -34),
    ];
    for (e, n) in all {
        assert_eq!(e.to_errno(), n);
        assert_eq!(Error::from_errno(n), Some(e));
    }
    assert_eq!(Error::from_errno(0), None);
    assert_eq!(Error::from_errno(-5), Some(Error::Other(5)));
    assert_eq!(Error::Other(5).to_errno(), -5);
    assert_eq!(Error::result_to_errno(Ok(())), 0);
}

#[test]
fn prot_and_flag_values() {
    assert_eq!(Prot::X.bits(), 1);
    assert_eq!(Prot::W.bits(), 2);
    assert_eq!(Prot::R.bits(), 4);
    assert_eq!(Prot::DEVICE.bits(), 8);
    assert_eq!(Prot::NORMAL_NC.bits(), 16);
    assert_eq!(Prot::SW0.bits(), 1 << 55);
    assert_eq!(Prot::SW3.bits(), 1 << 58);
    assert_eq!(Prot::RWX.bits(), 7);
    assert_eq!(Prot::PKVM_HOST_MEM_PROT, Prot::RWX);
    assert_eq!(Prot::PKVM_HOST_MMIO_PROT, Prot::RW);
    assert_eq!(WalkFlags::SKIP_CMO.bits(), 1 << 6);
    assert_eq!(WalkFlags::SHARED.bits(), 1 << 3);
    assert_eq!(Stage2Flags::IDMAP.bits(), 2);
    assert_eq!(MAX_TLBI_RANGE_PAGES, 2097152);
    assert_eq!(TLBI_TTL_UNKNOWN, i32::MAX);
}

#[test]
fn output_address_encodings() {
    // 4K without LPA2: bits 47:12 only.
    let c = cfg(Granule::Size4K, Context::Kernel);
    assert_eq!(
        Pte::from_phys(0x0000_8765_4321_2000, &c).0,
        0x0000_8765_4321_2000
    );
    assert_eq!(
        Pte(0xffff_ffff_ffff_ffff).to_phys(&c),
        0x0000_ffff_ffff_f000
    );

    // 64K without LPA2: PA[51:48] live in descriptor bits 15:12.
    let c = cfg(Granule::Size64K, Context::Kernel);
    let pa = 0x000a_1234_5678_0000;
    let pte = Pte::from_phys(pa, &c);
    assert_eq!(pte.0, 0x0000_1234_5678_0000 | (0xa << 12));
    assert_eq!(pte.to_phys(&c), pa);

    // LPA2 (4K): PA[49:12] in place, PA[51:50] in descriptor bits 9:8.
    let c = cfg_with(Granule::Size4K, Context::Kernel, |f| f.lpa2 = true);
    let pa = 0x000e_0000_1234_5000; // bits 51,50,49 set
    let pte = Pte::from_phys(pa, &c);
    assert_eq!(pte.0, 0x0002_0000_1234_5000 | (3 << 8));
    assert_eq!(pte.to_phys(&c), pa);

    // LPA2 (16K).
    let c = cfg_with(Granule::Size16K, Context::Kernel, |f| f.lpa2 = true);
    let pa = 0x0004_0000_0000_4000;
    assert_eq!(Pte::from_phys(pa, &c).0, 1 << 8 | 0x4000);
    assert_eq!(Pte::from_phys(pa, &c).to_phys(&c), pa);
}

#[test]
fn pte_predicates() {
    assert!(Pte(3).is_table(Level(2)));
    assert!(!Pte(3).is_table(Level(3)));
    assert!(!Pte(1).is_table(Level(1)));
    assert!(!Pte(2).is_table(Level(1)));
    assert_eq!(Pte::new_invalid_owner(1).0, 0x4);
    assert_eq!(Pte(0x4).owner_id(), 1);
    assert!(Pte(0x4).is_counted());
    assert!(!Pte(0).is_counted());
    assert!(Pte(1 << 10).is_locked());
    assert!(!Pte(1 << 10 | 1).is_locked());
}

#[test]
fn parange() {
    let c = cfg(Granule::Size4K, Context::Kernel);
    assert_eq!(c.get_parange(6), 5);
    assert_eq!(c.get_parange(2), 2);
    assert_eq!(c.parange_to_phys_shift(3), 42);
    assert_eq!(c.parange_to_phys_shift(9), 48);
    assert!(c.phys_is_valid((1 << 48) - 1));
    assert!(!c.phys_is_valid(1 << 48));
    let c = cfg(Granule::Size64K, Context::Kernel);
    assert_eq!(c.get_parange(6), 6);
    assert_eq!(c.parange_to_phys_shift(9), 52);
    assert!(c.phys_is_valid(1 << 50));
    let c = cfg_with(Granule::Size16K, Context::Kernel, |f| f.lpa2 = true);
    assert_eq!(c.get_parange(0xf), 6);
    assert!(c.phys_is_valid(1 << 51));
}
