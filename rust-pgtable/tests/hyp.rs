// SPDX-License-Identifier: GPL-2.0-only
//! Hypervisor stage-1: descriptors, table building, unmap TLB sequences,
//! refcounts and teardown. Arena page 0 is always the root.

mod common;
use common::*;
use rust_pgtable::*;

const A: u64 = ARENA_BASE;
const P: u64 = 0x1000;
// Stage-1 leaf attribute pieces (4K, no LPA2).
const XN: u64 = 1 << 54;
const GP: u64 = 1 << 50;
const AF: u64 = 1 << 10;
const SH_IS: u64 = 3 << 8;
const AP_RW: u64 = 1 << 6;
const AP_RO: u64 = 3 << 6;

fn c4k() -> Config {
    cfg(Granule::Size4K, Context::NvheHyp)
}

#[test]
fn stage1_attr_encodings() {
    let c = c4k();
    assert_eq!(
        hyp_set_prot_attr(&c, Prot::PAGE_HYP),
        Ok(XN | AF | SH_IS | AP_RW)
    );
    assert_eq!(
        hyp_set_prot_attr(&c, Prot::PAGE_HYP_RO),
        Ok(XN | AF | SH_IS | AP_RO)
    );
    // Executable text: no XN, and no GP without BTI.
    assert_eq!(
        hyp_set_prot_attr(&c, Prot::PAGE_HYP_EXEC),
        Ok(AF | SH_IS | AP_RO)
    );
    // Device: AttrIndx 4 in bits 4:2.
    assert_eq!(
        hyp_set_prot_attr(&c, Prot::PAGE_HYP_DEVICE),
        Ok(XN | AF | SH_IS | AP_RW | (4 << 2))
    );
    // Non-cacheable is not a stage-1 hyp notion: normal attributes.
    assert_eq!(
        hyp_set_prot_attr(&c, Prot::PAGE_HYP | Prot::NORMAL_NC),
        Ok(XN | AF | SH_IS | AP_RW)
    );
    // Software bits pass through.
    assert_eq!(
        hyp_set_prot_attr(&c, Prot::PAGE_HYP | Prot::SW1),
        Ok(XN | AF | SH_IS | AP_RW | (1 << 56))
    );
    // Rejected: no read, W+X, executable device.
    assert_eq!(hyp_set_prot_attr(&c, Prot::W), Err(Error::Inval));
    assert_eq!(hyp_set_prot_attr(&c, Prot::RWX), Err(Error::Inval));
    assert_eq!(
        hyp_set_prot_attr(&c, Prot::R | Prot::X | Prot::DEVICE),
        Err(Error::Inval)
    );

    let bti = cfg_with(Granule::Size4K, Context::NvheHyp, |f| f.bti_kernel = true);
    assert_eq!(
        hyp_set_prot_attr(&bti, Prot::PAGE_HYP_EXEC),
        Ok(GP | AF | SH_IS | AP_RO)
    );
    assert_eq!(
        hyp_set_prot_attr(&bti, Prot::PAGE_HYP),
        Ok(XN | AF | SH_IS | AP_RW)
    );

    // hVHE: AP RW = 0, RO = 2.
    let hvhe = cfg_with(Granule::Size4K, Context::NvheHyp, |f| f.hvhe = true);
    assert_eq!(
        hyp_set_prot_attr(&hvhe, Prot::PAGE_HYP),
        Ok(XN | AF | SH_IS)
    );
    assert_eq!(
        hyp_set_prot_attr(&hvhe, Prot::PAGE_HYP_RO),
        Ok(XN | AF | SH_IS | (2 << 6))
    );

    // LPA2: bits 9:8 are address bits, so no shareability field.
    let lpa2 = cfg_with(Granule::Size4K, Context::NvheHyp, |f| f.lpa2 = true);
    assert_eq!(
        hyp_set_prot_attr(&lpa2, Prot::PAGE_HYP),
        Ok(XN | AF | AP_RW)
    );
}

#[test]
fn hyp_pte_prot_decoding() {
    let c = c4k();
    assert_eq!(hyp_pte_prot(&c, Pte(XN | AF | SH_IS | AP_RW | 3)), Prot::RW);
    assert_eq!(
        hyp_pte_prot(&c, Pte(AF | SH_IS | AP_RO | 3)),
        Prot::R | Prot::X
    );
    assert_eq!(
        hyp_pte_prot(&c, Pte(XN | AP_RO | 1 | (1 << 55))),
        Prot::R | Prot::SW0
    );
    // Invalid: only software bits.
    assert_eq!(hyp_pte_prot(&c, Pte(AP_RO | (1 << 58))), Prot::SW3);
    // With hVHE, AP=1 and AP=3 are neither RO nor RW encodings.
    let hvhe = cfg_with(Granule::Size4K, Context::NvheHyp, |f| f.hvhe = true);
    assert_eq!(hyp_pte_prot(&hvhe, Pte(XN | AP_RO | 3)), Prot::empty());
    assert_eq!(hyp_pte_prot(&hvhe, Pte(XN | 3)), Prot::RW);
    assert_eq!(hyp_pte_prot(&hvhe, Pte(XN | (2 << 6) | 3)), Prot::R);
}

#[test]
fn init_levels_and_errors() {
    let mut pgt = HypPgtable::new(Mock::new(c4k(), 4), c4k());
    assert_eq!(pgt.init(60), Err(Error::Inval));
    assert!(pgt.env().events.is_empty());
    pgt.init(52).unwrap();
    assert_eq!(pgt.geometry().start_level, Level(-1));
    assert_eq!(
        pgt.env().events,
        [Ev::Alloc {
            pa: A,
            from_mc: false
        }]
    );

    let mut pgt = HypPgtable::new(Mock::new(c4k(), 1), c4k());
    pgt.init(39).unwrap();
    assert_eq!(pgt.geometry().start_level, Level(1));
    let c = cfg(Granule::Size64K, Context::NvheHyp);
    let mut pgt = HypPgtable::new(Mock::new(c, 1), c);
    pgt.init(48).unwrap();
    assert_eq!(pgt.geometry().start_level, Level(1));

    let mut pgt = HypPgtable::new(Mock::new(c4k(), 0), c4k());
    assert_eq!(pgt.init(48), Err(Error::NoMem));
    // Walking a table without a root fails without side effects.
    assert_eq!(pgt.map(0, P, 0, Prot::PAGE_HYP), Err(Error::Range));
    assert_eq!(pgt.get_leaf(0), Err(Error::Range));
}

#[test]
fn map_block_builds_tables_with_release_stores() {
    let mut pgt = hyp(c4k(), 8, 48);
    pgt.map(0x20_0000, 0x20_0000, 0x8000_0000, Prot::PAGE_HYP)
        .unwrap();
    let (l1, l2) = (A + P, A + 2 * P);
    let block = 0x8000_0000 | XN | AF | SH_IS | AP_RW | 1;
    assert_eq!(
        pgt.env_mut().take_events(),
        [
            Ev::Alloc {
                pa: l1,
                from_mc: false
            },
            Ev::Get(A),
            rel(A, l1 | 3),
            Ev::Alloc {
                pa: l2,
                from_mc: false
            },
            Ev::Get(l1),
            rel(l1, l2 | 3),
            // Level 2, index 1.
            Ev::Get(l2 + 8),
            rel(l2 + 8, block),
            Ev::Dsb(Barrier::IshSt),
            Ev::Isb,
        ]
    );
    // Each table: one reference for itself plus one per valid entry.
    let e = pgt.env();
    assert_eq!((e.refcount(A), e.refcount(l1), e.refcount(l2)), (2, 2, 2));
    assert_eq!(pgt.get_leaf(0x3f_f000), Ok((Pte(block), Level(2))));

    // Mapping the same thing again stores nothing.
    pgt.map(0x20_0000, 0x20_0000, 0x8000_0000, Prot::PAGE_HYP)
        .unwrap();
    assert_eq!(
        pgt.env_mut().take_events(),
        [Ev::Dsb(Barrier::IshSt), Ev::Isb]
    );
}

#[test]
fn map_gigabyte_block_and_pages() {
    let mut pgt = hyp(c4k(), 8, 48);
    // 1GiB-aligned 1GiB range: a level-1 block.
    pgt.map(1 << 30, 1 << 30, 0x40_0000_0000, Prot::PAGE_HYP_RO)
        .unwrap();
    assert_eq!(
        pgt.get_leaf(1 << 30),
        Ok((Pte(0x40_0000_0000 | XN | AF | SH_IS | AP_RO | 1), Level(1)))
    );
    // Physically misaligned: falls back to 2MiB blocks, then pages.
    pgt.env_mut().take_events();
    pgt.map(0x8000_0000, 0x20_2000, 0x20_0000 + P, Prot::PAGE_HYP)
        .unwrap();
    let (pte, level) = pgt.get_leaf(0x8000_0000).unwrap();
    assert_eq!(level, Level(3));
    assert_eq!(pte.to_phys(pgt.cfg()), 0x20_1000);
    assert_eq!(pte.0 & 3, 3);
    let (pte, level) = pgt.get_leaf(0x8020_1000).unwrap();
    assert_eq!((pte.to_phys(pgt.cfg()), level), (0x40_2000, Level(3)));
    // 0x202 pages in one level-3 table + 2 in the next one.
    let l3a = A + 3 * P;
    assert_eq!(pgt.env().refcount(l3a), 1 + 512);
    assert_eq!(pgt.env().refcount(A + 4 * P), 1 + 2);
}

#[test]
fn map_exec_page_with_bti() {
    let c = cfg_with(Granule::Size4K, Context::NvheHyp, |f| f.bti_kernel = true);
    let mut pgt = hyp(c, 8, 48);
    pgt.map(P, P, 0x9000_1000, Prot::PAGE_HYP_EXEC).unwrap();
    let want = 0x9000_1000 | GP | AF | SH_IS | AP_RO | 3;
    assert_eq!(want, 0x0004_0000_9000_17c3);
    assert_eq!(pgt.get_leaf(P), Ok((Pte(want), Level(3))));
    assert_eq!(hyp_pte_prot(&c, Pte(want)), Prot::R | Prot::X);
}

#[test]
fn map_lpa2_page_address_bits() {
    let c = cfg_with(Granule::Size4K, Context::NvheHyp, |f| f.lpa2 = true);
    let mut pgt = hyp(c, 8, 48);
    let pa = (1 << 50) | 0x5000;
    pgt.map(P, P, pa, Prot::PAGE_HYP).unwrap();
    // PA bit 50 is descriptor bit 8; no SH field.
    assert_eq!(
        pgt.get_leaf(P),
        Ok((Pte(0x5000 | (1 << 8) | XN | AF | AP_RW | 3), Level(3)))
    );
}

#[test]
fn changing_a_live_mapping_warns() {
    let mut pgt = hyp(c4k(), 8, 48);
    pgt.map(P, P, 0x9000_0000, Prot::PAGE_HYP).unwrap();
    pgt.env_mut().take_events();
    // Only software bits differ: stored in place, no new reference.
    pgt.map(P, P, 0x9000_0000, Prot::PAGE_HYP | Prot::SW0)
        .unwrap();
    let l3 = A + 3 * P;
    let sw = 0x9000_0000 | XN | AF | SH_IS | AP_RW | 3 | (1 << 55);
    assert_eq!(
        pgt.env_mut().take_events(),
        [rel(l3 + 8, sw), Ev::Dsb(Barrier::IshSt), Ev::Isb]
    );
    // A different output address: WARN_ON, then WARN_ON at the last level.
    assert_eq!(
        pgt.map(P, P, 0x9100_0000, Prot::PAGE_HYP),
        Err(Error::Inval)
    );
    assert_eq!(
        pgt.env_mut().take_events(),
        [
            Ev::Warn { once: false },
            Ev::Warn { once: false },
            Ev::Dsb(Barrier::IshSt),
            Ev::Isb
        ]
    );
    // A bad prot fails before walking: no barriers either.
    assert_eq!(pgt.map(P, P, 0, Prot::RWX), Err(Error::Inval));
    assert!(pgt.env().events.is_empty());
}

#[test]
fn unmap_page_frees_tables_post_order() {
    let mut pgt = hyp(c4k(), 8, 48);
    pgt.map(P, P, 0x9000_1000, Prot::PAGE_HYP).unwrap();
    pgt.env_mut().take_events();
    let (l1, l2, l3) = (A + P, A + 2 * P, A + 3 * P);
    assert_eq!(pgt.unmap(P, P), P);
    let table_post = |ptep: u64, child: u64| {
        [
            Ev::PageCount(child),
            wo(ptep, 0),
            Ev::Dsb(Barrier::IshSt),
            Ev::Tlbi {
                op: TlbiOp::Vae2is,
                operand: 1,
                level: TLBI_TTL_UNKNOWN,
            },
            Ev::TlbiSync,
            Ev::Isb,
            Ev::Put(ptep),
            Ev::Put(child),
        ]
    };
    let mut want = vec![
        wo(l3 + 8, 0),
        Ev::Dsb(Barrier::IshSt),
        Ev::Tlbi {
            op: TlbiOp::Vale2is,
            operand: 1,
            level: 3,
        },
        Ev::TlbiSync,
        Ev::Isb,
        Ev::Put(l3 + 8),
    ];
    want.extend(table_post(l2, l3));
    want.extend(table_post(l1, l2));
    want.extend(table_post(A, l1));
    assert_eq!(pgt.env_mut().take_events(), want);
    assert_eq!(pgt.env().live_pages(), 1);
    assert_eq!(pgt.env().refcount(A), 1);
}

#[test]
fn unmap_keeps_tables_in_use_and_stops_at_holes() {
    let mut pgt = hyp(c4k(), 8, 48);
    pgt.map(P, 2 * P, 0x9000_1000, Prot::PAGE_HYP).unwrap();
    pgt.env_mut().take_events();
    let l3 = A + 3 * P;
    assert_eq!(pgt.unmap(P, P), P);
    let ev = pgt.env_mut().take_events();
    // The level-3 table still holds a page: only queried, not removed.
    assert_eq!(ev[6], Ev::PageCount(l3));
    assert_eq!(ev.len(), 7 + 2);
    assert_eq!(pgt.env().refcount(l3), 2);

    // A hole first: nothing unmapped, walk aborted.
    assert_eq!(pgt.unmap(0, 3 * P), 0);
    assert!(pgt.get_leaf(2 * P).unwrap().0.is_valid());

    // Partial block: refused.
    pgt.map(0x20_0000, 0x20_0000, 0x8000_0000, Prot::PAGE_HYP)
        .unwrap();
    pgt.env_mut().take_events();
    assert_eq!(pgt.unmap(0x20_0000, P), 0);
    assert!(pgt.env().events.is_empty());
    // Whole block: level-2 TLBI, operand VA >> 12.
    assert_eq!(pgt.unmap(0x20_0000, 0x20_0000), 0x20_0000);
    assert_eq!(
        pgt.env().events[2],
        Ev::Tlbi {
            op: TlbiOp::Vale2is,
            operand: 0x200,
            level: 2
        }
    );
}

#[test]
fn unmap_without_page_count_is_a_no_op() {
    let mut pgt = hyp(c4k(), 8, 48);
    pgt.map(P, P, 0x9000_1000, Prot::PAGE_HYP).unwrap();
    pgt.env_mut().take_events();
    pgt.env_mut().has_page_count = false;
    assert_eq!(pgt.unmap(P, P), 0);
    assert!(pgt.env().events.is_empty());
}

#[test]
fn destroy_releases_everything() {
    let mut pgt = hyp(c4k(), 16, 48);
    pgt.map(P, 3 * P, 0x9000_1000, Prot::PAGE_HYP).unwrap();
    pgt.map(0x4000_0000, 0x4000_0000, 0x4000_0000, Prot::PAGE_HYP_RO)
        .unwrap();
    pgt.env_mut().take_events();
    pgt.destroy();
    assert_eq!(pgt.env().live_pages(), 0);
    assert_eq!(pgt.env().warns(), 0);
    assert_eq!(*pgt.env().events.last().unwrap(), Ev::Put(A));
    assert_eq!(pgt.pgd(), None);
    // Walking a destroyed table: EINVAL.
    assert_eq!(pgt.get_leaf(0), Err(Error::Inval));
}

#[test]
fn shared_walks_are_refused_in_the_hypervisor() {
    let mut pgt = hyp(c4k(), 8, 48);
    let mut called = false;
    let r = pgt.walk(0, P, WalkFlags::LEAF | WalkFlags::SHARED, |_ctx, _v| {
        called = true;
        Ok(())
    });
    assert_eq!(r, Err(Error::Perm));
    assert!(!called);
    assert!(pgt.env().events.is_empty());
}

#[test]
fn hyp_16k_and_64k_blocks() {
    let c = cfg(Granule::Size16K, Context::NvheHyp);
    let mut pgt = hyp(c, 8, 48);
    // 16K: level-2 blocks are 32MiB.
    pgt.map(1 << 25, 1 << 25, 1 << 30, Prot::PAGE_HYP).unwrap();
    let (pte, level) = pgt.get_leaf(1 << 25).unwrap();
    assert_eq!(
        (pte.0, level),
        ((1 << 30) | XN | AF | SH_IS | AP_RW | 1, Level(2))
    );
    // Root at level 0, then level 1 and level 2 tables.
    assert_eq!(pgt.env().next, 3);

    let c = cfg(Granule::Size64K, Context::NvheHyp);
    let mut pgt = hyp(c, 8, 48);
    // 64K: level-2 blocks are 512MiB, pages 64KiB; root at level 1.
    pgt.map(1 << 29, 1 << 29, 1 << 29, Prot::PAGE_HYP).unwrap();
    assert_eq!(pgt.get_leaf(1 << 29).unwrap().1, Level(2));
    pgt.map(0x1_0000, 0x1_0000, 0x000f_0000_0003_0000, Prot::PAGE_HYP)
        .unwrap();
    let (pte, level) = pgt.get_leaf(0x1_0000).unwrap();
    // PA[51:48] = 0xf lands in descriptor bits 15:12.
    assert_eq!(level, Level(3));
    assert_eq!(pte.0, 0x3_0000 | (0xf << 12) | XN | AF | SH_IS | AP_RW | 3);
    assert_eq!(pte.to_phys(&c), 0x000f_0000_0003_0000);
}
