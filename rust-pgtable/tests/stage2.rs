// SPDX-License-Identifier: GPL-2.0-only
//! Stage-2: descriptors, break-before-make sequences, ownership
//! annotations, refcounts, split, permission updates, unmap and teardown.
//!
//! Unless stated otherwise: 4K pages, 40-bit IPA (start level 1, two
//! concatenated root pages = arena pages 0 and 1), so the first table
//! allocated is arena page 2.

mod common;
use common::*;
use rust_pgtable::*;

const A: u64 = ARENA_BASE;
const P: u64 = 0x1000;
const M2: u64 = 0x20_0000;
const G1: u64 = 0x4000_0000;

// Stage-2 leaf attribute pieces.
const AF: u64 = 1 << 10;
const SH: u64 = 3 << 8;
const S2R: u64 = 1 << 6;
const S2W: u64 = 1 << 7;
const XN: u64 = 1 << 54;
const NORMAL: u64 = 0xf << 2;
const FWB_NORMAL: u64 = 0x6 << 2;
const DEVICE: u64 = 0x1 << 2;
const NC: u64 = 0x5 << 2;
const LOCKED: u64 = 1 << 10;

fn c(ctx: Context) -> Config {
    cfg(Granule::Size4K, ctx)
}

fn hyp4k() -> Config {
    c(Context::NvheHyp)
}

fn l(i: u64) -> u64 {
    A + i * P
}

#[test]
fn stage2_attr_encodings() {
    let cf = hyp4k();
    let none = Stage2Flags::empty();
    assert_eq!(
        stage2_set_prot_attr(&cf, none, Prot::RWX),
        Ok(NORMAL | S2R | S2W | SH | AF)
    );
    assert_eq!(NORMAL | S2R | S2W | SH | AF | 3, 0x7ff);
    assert_eq!(
        stage2_set_prot_attr(&cf, none, Prot::R),
        Ok(XN | NORMAL | S2R | SH | AF)
    );
    assert_eq!(
        stage2_set_prot_attr(&cf, none, Prot::RW | Prot::DEVICE),
        Ok(XN | DEVICE | S2R | S2W | SH | AF)
    );
    assert_eq!(
        stage2_set_prot_attr(&cf, none, Prot::RW | Prot::NORMAL_NC),
        Ok(XN | NC | S2R | S2W | SH | AF)
    );
    // No permissions at all is still a valid (inaccessible) mapping.
    assert_eq!(
        stage2_set_prot_attr(&cf, none, Prot::empty()),
        Ok(XN | NORMAL | SH | AF)
    );
    assert_eq!(
        stage2_set_prot_attr(&cf, none, Prot::RW | Prot::SW2),
        Ok(XN | NORMAL | S2R | S2W | SH | AF | (1 << 57))
    );
    for bad in [
        Prot::R | Prot::DEVICE | Prot::NORMAL_NC,
        Prot::RWX | Prot::DEVICE,
        Prot::RWX | Prot::NORMAL_NC,
    ] {
        assert_eq!(stage2_set_prot_attr(&cf, none, bad), Err(Error::Inval));
    }

    // FWB changes the MemAttr encodings, unless the table opts out.
    let fwb = cfg_with(Granule::Size4K, Context::Kernel, |f| f.stage2_fwb = true);
    assert_eq!(
        stage2_set_prot_attr(&fwb, none, Prot::RWX),
        Ok(FWB_NORMAL | S2R | S2W | SH | AF)
    );
    assert_eq!(
        stage2_set_prot_attr(&fwb, none, Prot::R | Prot::DEVICE),
        Ok(XN | DEVICE | S2R | SH | AF)
    );
    assert_eq!(
        stage2_set_prot_attr(&fwb, none, Prot::R | Prot::NORMAL_NC),
        Ok(XN | NC | S2R | SH | AF)
    );
    assert_eq!(
        stage2_set_prot_attr(&fwb, Stage2Flags::NOFWB, Prot::RWX),
        Ok(NORMAL | S2R | S2W | SH | AF)
    );

    // LPA2: no SH field.
    let lpa2 = cfg_with(Granule::Size4K, Context::Kernel, |f| f.lpa2 = true);
    assert_eq!(
        stage2_set_prot_attr(&lpa2, none, Prot::RWX),
        Ok(NORMAL | S2R | S2W | AF)
    );
}

#[test]
fn stage2_pte_prot_decoding() {
    assert_eq!(stage2_pte_prot(Pte(0x7ff)), Prot::RWX);
    assert_eq!(stage2_pte_prot(Pte(XN | S2R | 3)), Prot::R);
    assert_eq!(
        stage2_pte_prot(Pte(XN | S2W | 1 | (1 << 55))),
        Prot::W | Prot::SW0
    );
    assert_eq!(stage2_pte_prot(Pte(0x4 | (1 << 56))), Prot::SW1);
}

#[test]
fn init_allocates_concatenated_root() {
    let cf = hyp4k();
    let vtcr = vtcr_for(&cf, 40);
    let mut pgt = Stage2Pgtable::new(Mock::new(cf, 4), cf);
    pgt.init(vtcr, Stage2Flags::empty(), NO_FORCE_PTE).unwrap();
    assert_eq!(
        pgt.env().events,
        [
            Ev::AllocExact { pa: A, size: 2 * P },
            Ev::Dsb(Barrier::IshSt)
        ]
    );
    let g = pgt.geometry();
    assert_eq!((g.ia_bits, g.start_level, g.pgd), (40, Level(1), Some(A)));

    // An address in the second root page.
    let mut mc = Mc { nobjs: 4 };
    pgt.env_mut().take_events();
    pgt.map(
        1 << 39,
        P,
        0x9000_0000,
        Prot::RW,
        Some(&mut mc),
        WalkFlags::empty(),
    )
    .unwrap();
    assert_eq!(pgt.env().events[1], wo(A + P, LOCKED));

    let mut pgt = Stage2Pgtable::new(Mock::new(cf, 1), cf);
    assert_eq!(
        pgt.init(vtcr, Stage2Flags::empty(), NO_FORCE_PTE),
        Err(Error::NoMem)
    );
    assert_eq!(pgt.pgd(), None);
}

#[test]
fn map_page_sequence() {
    let mut pgt = s2(hyp4k(), 8, 40, Stage2Flags::empty());
    let mut mc = Mc { nobjs: 10 };
    pgt.map(
        P,
        P,
        0x9000_1000,
        Prot::RWX,
        Some(&mut mc),
        WalkFlags::empty(),
    )
    .unwrap();
    let (l2, l3) = (l(2), l(3));
    let page = 0x9000_1000 | 0x7ff;
    assert_eq!(
        pgt.env_mut().take_events(),
        [
            // Level 1, index 0: a new level-2 table, installed with BBM.
            Ev::Alloc {
                pa: l2,
                from_mc: true
            },
            wo(A, LOCKED),
            Ev::Get(A),
            rel(A, l2 | 3),
            Ev::Alloc {
                pa: l3,
                from_mc: true
            },
            wo(l2, LOCKED),
            Ev::Get(l2),
            rel(l2, l3 | 3),
            // The page: lock, clean D-cache and I-cache, publish.
            wo(l3 + 8, LOCKED),
            Ev::Dcache {
                pa: 0x9000_1000,
                size: P
            },
            Ev::Icache {
                pa: 0x9000_1000,
                size: P
            },
            Ev::Get(l3 + 8),
            rel(l3 + 8, page),
            Ev::Dsb(Barrier::IshSt),
        ]
    );
    assert_eq!(mc.nobjs, 8);
    assert_eq!(pgt.get_leaf(P), Ok((Pte(page), Level(3))));
    assert_eq!(pgt.env().refcount(l3), 2);
    assert_eq!(pgt.env().refcount(l2), 2);
}

/// The kernel follows a table descriptor once (`kvm_pte_follow`) and
/// indexes the page it got; so does the walker: one `phys_to_virt` per
/// table page entered, however many of its descriptors are visited.
#[test]
fn a_walk_resolves_each_table_page_once() {
    let mut pgt = s2(hyp4k(), 8, 40, Stage2Flags::empty());
    let mut mc = Mc { nobjs: 10 };
    pgt.map(
        P,
        P,
        0x9000_1000,
        Prot::RW,
        Some(&mut mc),
        WalkFlags::empty(),
    )
    .unwrap();
    pgt.env_mut().follows.clear();

    // One page: root page 0 (level 1), the level-2 table, the level-3 table.
    assert_eq!(pgt.get_leaf(P).map(|(_, lvl)| lvl), Ok(Level(3)));
    assert_eq!(pgt.env_mut().follows, [A, l(2), l(3)]);
    pgt.env_mut().follows.clear();

    // All 512 entries of the level-3 table and the 511 other level-2
    // entries of the first GiB: still the same three pages.
    let mut leaves = 0;
    pgt.walk(0, G1, WalkFlags::LEAF, |_: &mut VisitCtx<'_, Mock>, _| {
        leaves += 1;
        Ok(())
    })
    .unwrap();
    assert_eq!(leaves, 512 + 511);
    assert_eq!(pgt.env_mut().follows, [A, l(2), l(3)]);
    pgt.env_mut().follows.clear();

    // Across both concatenated root pages (512 GiB each): each resolved
    // once, the second entered at its first entry.
    pgt.walk(
        0,
        1 << 40,
        WalkFlags::LEAF,
        |_: &mut VisitCtx<'_, Mock>, _| Ok(()),
    )
    .unwrap();
    assert_eq!(pgt.env_mut().follows, [A, l(2), l(3), l(1)]);
}

#[test]
fn map_without_memcache_or_pages() {
    let mut pgt = s2(hyp4k(), 3, 40, Stage2Flags::empty());
    assert_eq!(
        pgt.map(P, P, 0x9000_1000, Prot::RW, None, WalkFlags::empty()),
        Err(Error::NoMem)
    );
    assert_eq!(pgt.env_mut().take_events(), [Ev::Dsb(Barrier::IshSt)]);
    // An empty memcache: the allocation itself fails.
    let mut mc = Mc { nobjs: 0 };
    assert_eq!(
        pgt.map(
            P,
            P,
            0x9000_1000,
            Prot::RW,
            Some(&mut mc),
            WalkFlags::empty()
        ),
        Err(Error::NoMem)
    );
}

#[test]
fn cmo_skips() {
    // Device memory is neither cacheable nor executable: no CMOs.
    let mut pgt = s2(hyp4k(), 8, 40, Stage2Flags::empty());
    let mut mc = Mc { nobjs: 10 };
    pgt.map(
        P,
        P,
        0x9000_1000,
        Prot::RW | Prot::DEVICE,
        Some(&mut mc),
        WalkFlags::empty(),
    )
    .unwrap();
    let ev = pgt.env_mut().take_events();
    assert!(
        !ev.iter()
            .any(|e| matches!(e, Ev::Dcache { .. } | Ev::Icache { .. }))
    );
    // SKIP_CMO on a cacheable executable page.
    pgt.map(
        2 * P,
        P,
        0x9000_2000,
        Prot::RWX,
        Some(&mut mc),
        WalkFlags::SKIP_CMO,
    )
    .unwrap();
    let ev = pgt.env_mut().take_events();
    assert!(
        !ev.iter()
            .any(|e| matches!(e, Ev::Dcache { .. } | Ev::Icache { .. }))
    );
    // Missing CMO callbacks (pKVM host mm_ops).
    pgt.env_mut().has_dcache = false;
    pgt.env_mut().has_icache = false;
    pgt.map(
        3 * P,
        P,
        0x9000_3000,
        Prot::RWX,
        Some(&mut mc),
        WalkFlags::empty(),
    )
    .unwrap();
    let ev = pgt.env_mut().take_events();
    assert!(
        !ev.iter()
            .any(|e| matches!(e, Ev::Dcache { .. } | Ev::Icache { .. }))
    );
    // FWB: cacheable means MemAttr 0b0110; D-cache clean still happens on
    // map (the table is cacheable), I-cache only for executable pages.
    let fwb = cfg_with(Granule::Size4K, Context::NvheHyp, |f| f.stage2_fwb = true);
    let mut pgt = s2(fwb, 8, 40, Stage2Flags::empty());
    pgt.map(
        P,
        P,
        0x9000_1000,
        Prot::RW,
        Some(&mut mc),
        WalkFlags::empty(),
    )
    .unwrap();
    let ev = pgt.env_mut().take_events();
    assert!(ev.contains(&Ev::Dcache {
        pa: 0x9000_1000,
        size: P
    }));
    assert!(ev.contains(&rel(
        l(3) + 8,
        0x9000_1000 | XN | FWB_NORMAL | S2R | S2W | SH | AF | 3
    )));
}

#[test]
fn map_into_block_breaks_it() {
    let mut pgt = s2(hyp4k(), 8, 40, Stage2Flags::empty());
    let mut mc = Mc { nobjs: 10 };
    pgt.map(
        M2,
        M2,
        0x8000_0000,
        Prot::RW,
        Some(&mut mc),
        WalkFlags::empty(),
    )
    .unwrap();
    let l2 = l(2);
    let block = 0x8000_0000 | XN | 0x7fd;
    assert_eq!(pgt.get_leaf(M2 + P), Ok((Pte(block), Level(2))));
    assert_eq!(
        pgt.env_mut().take_events()[4..],
        [
            wo(l2 + 8, LOCKED),
            Ev::Dcache {
                pa: 0x8000_0000,
                size: M2
            },
            Ev::Get(l2 + 8),
            rel(l2 + 8, block),
            Ev::Dsb(Barrier::IshSt),
        ]
    );

    pgt.map(
        M2 + P,
        P,
        0x7000_0000,
        Prot::RW,
        Some(&mut mc),
        WalkFlags::empty(),
    )
    .unwrap();
    let l3 = l(3);
    assert_eq!(
        pgt.env_mut().take_events(),
        [
            Ev::Alloc {
                pa: l3,
                from_mc: true
            },
            wo(l2 + 8, LOCKED),
            // The context address is the walk position, not block aligned.
            Ev::FlushIpa {
                ipa: M2 + P,
                level: 2
            },
            Ev::Put(l2 + 8),
            Ev::Get(l2 + 8),
            rel(l2 + 8, l3 | 3),
            wo(l3 + 8, LOCKED),
            Ev::Dcache {
                pa: 0x7000_0000,
                size: P
            },
            Ev::Get(l3 + 8),
            rel(l3 + 8, 0x7000_0000 | XN | 0x7ff),
            Ev::Dsb(Barrier::IshSt),
        ]
    );
    // The rest of the block is gone (to be faulted back lazily).
    assert_eq!(pgt.get_leaf(M2), Ok((Pte(0), Level(3))));
    assert_eq!(pgt.env().refcount(l2), 2);
    assert_eq!(pgt.env().refcount(l3), 2);
}

#[test]
fn block_over_table_frees_the_subtree() {
    for tlb_range in [false, true] {
        let cf = cfg_with(Granule::Size4K, Context::NvheHyp, |f| {
            f.tlb_range = tlb_range
        });
        let mut pgt = s2(cf, 8, 40, Stage2Flags::empty());
        let mut mc = Mc { nobjs: 10 };
        pgt.map(
            M2 + P,
            2 * P,
            0x7000_0000,
            Prot::RW,
            Some(&mut mc),
            WalkFlags::empty(),
        )
        .unwrap();
        pgt.env_mut().take_events();
        let (l2, l3) = (l(2), l(3));

        pgt.map(
            M2,
            M2,
            0x8000_0000,
            Prot::RWX,
            Some(&mut mc),
            WalkFlags::empty(),
        )
        .unwrap();
        let flush = if tlb_range {
            Ev::FlushRange {
                start: M2,
                pages: 512,
            }
        } else {
            Ev::FlushVmid
        };
        let mut want = vec![
            wo(l2 + 8, LOCKED),
            flush,
            Ev::Put(l2 + 8),
            Ev::Dcache {
                pa: 0x8000_0000,
                size: M2,
            },
            Ev::Icache {
                pa: 0x8000_0000,
                size: M2,
            },
            Ev::Get(l2 + 8),
            rel(l2 + 8, 0x8000_0000 | 0x7fd),
            Ev::FreeUnlinked { pa: l3, level: 2 },
            Ev::Put(l3 + 8),
            Ev::Put(l3 + 16),
            Ev::PageCount(l3),
            Ev::Put(l3),
            Ev::Dsb(Barrier::IshSt),
        ];
        assert_eq!(pgt.env_mut().take_events(), want);
        assert_eq!(pgt.env().refcount(l3), 0);
        want.clear();
    }
}

#[test]
fn same_mapping_or_permission_change_is_eagain() {
    let mut pgt = s2(hyp4k(), 8, 40, Stage2Flags::empty());
    let mut mc = Mc { nobjs: 10 };
    pgt.map(
        P,
        P,
        0x9000_1000,
        Prot::RW,
        Some(&mut mc),
        WalkFlags::empty(),
    )
    .unwrap();
    pgt.env_mut().take_events();
    // Ignored by ordinary walkers...
    pgt.map(
        P,
        P,
        0x9000_1000,
        Prot::R,
        Some(&mut mc),
        WalkFlags::empty(),
    )
    .unwrap();
    assert_eq!(pgt.env_mut().take_events(), [Ev::Dsb(Barrier::IshSt)]);
    // ...but reported to fault handlers.
    assert_eq!(
        pgt.map(
            P,
            P,
            0x9000_1000,
            Prot::RWX,
            Some(&mut mc),
            WalkFlags::HANDLE_FAULT
        ),
        Err(Error::Again)
    );
    // Software bits only: stored in place without BBM.
    pgt.env_mut().take_events();
    pgt.map(
        P,
        P,
        0x9000_1000,
        Prot::RW | Prot::SW0,
        Some(&mut mc),
        WalkFlags::empty(),
    )
    .unwrap();
    assert_eq!(
        pgt.env_mut().take_events(),
        [
            wo(l(3) + 8, 0x9000_1000 | XN | 0x7ff | (1 << 55)),
            Ev::Dsb(Barrier::IshSt)
        ]
    );
}

#[test]
fn idmap_requires_identity() {
    let mut pgt = s2(hyp4k(), 8, 40, Stage2Flags::IDMAP);
    let mut mc = Mc { nobjs: 10 };
    assert_eq!(
        pgt.map(P, P, 2 * P, Prot::RW, Some(&mut mc), WalkFlags::empty()),
        Err(Error::Inval)
    );
    assert_eq!(pgt.env_mut().take_events(), [Ev::Warn { once: false }]);
    pgt.map(P, P, P, Prot::RW, Some(&mut mc), WalkFlags::empty())
        .unwrap();
    // Bad prot: no walk, no barrier.
    pgt.env_mut().take_events();
    assert_eq!(
        pgt.map(
            P,
            P,
            P,
            Prot::RWX | Prot::DEVICE,
            Some(&mut mc),
            WalkFlags::empty()
        ),
        Err(Error::Inval)
    );
    assert!(pgt.env().events.is_empty());
}

#[test]
fn user_table_post_flag_makes_map_fail_after_installing() {
    let mut pgt = s2(hyp4k(), 8, 40, Stage2Flags::empty());
    let mut mc = Mc { nobjs: 10 };
    assert_eq!(
        pgt.map(
            P,
            P,
            0x9000_1000,
            Prot::RW,
            Some(&mut mc),
            WalkFlags::TABLE_POST
        ),
        Err(Error::Inval)
    );
    assert!(pgt.get_leaf(P).unwrap().0.is_valid());
}

#[test]
fn owner_annotations_are_counted() {
    let mut pgt = s2(hyp4k(), 8, 40, Stage2Flags::empty());
    let mut mc = Mc { nobjs: 10 };
    // Even a whole aligned 2MiB range is annotated page by page.
    pgt.set_owner(M2, M2, Some(&mut mc), 1).unwrap();
    let (l2, l3) = (l(2), l(3));
    let ev = pgt.env_mut().take_events();
    assert_eq!(ev.len(), 8 + 512 * 3);
    assert_eq!(ev[8..11], [wo(l3, LOCKED), Ev::Get(l3), rel(l3, 0x4)]);
    assert_eq!(pgt.get_leaf(M2 + 5 * P), Ok((Pte(0x4), Level(3))));
    assert_eq!(pgt.get_leaf(M2).unwrap().0.owner_id(), 1);
    assert_eq!(pgt.env().refcount(l3), 1 + 512);
    assert_eq!(pgt.env().refcount(l2), 2);

    // Back to owner 0 for one page: BBM, drop the reference.
    pgt.set_owner(M2 + P, P, Some(&mut mc), 0).unwrap();
    assert_eq!(
        pgt.env_mut().take_events(),
        [wo(l3 + 8, LOCKED), Ev::Put(l3 + 8), rel(l3 + 8, 0)]
    );
    assert_eq!(pgt.env().refcount(l3), 512);
    // Owner 0 over an empty entry: a plain store of 0.
    pgt.set_owner(M2 + P, P, Some(&mut mc), 0).unwrap();
    assert_eq!(pgt.env_mut().take_events(), [wo(l3 + 8, 0)]);
    assert_eq!(pgt.set_owner(M2, P, Some(&mut mc), 2), Err(Error::Inval));
    assert!(pgt.env().events.is_empty());

    // Unmap removes annotations too.
    pgt.unmap(M2, P).unwrap();
    assert_eq!(
        pgt.env_mut().take_events(),
        [wo(l3, 0), Ev::Put(l3), Ev::PageCount(l3), Ev::PageCount(l2)]
    );
    assert_eq!(pgt.env().refcount(l3), 511);
}

#[test]
fn owner_annotation_replaces_mapping() {
    let mut pgt = s2(hyp4k(), 8, 40, Stage2Flags::empty());
    let mut mc = Mc { nobjs: 10 };
    pgt.map(
        P,
        P,
        0x9000_1000,
        Prot::RW,
        Some(&mut mc),
        WalkFlags::empty(),
    )
    .unwrap();
    pgt.env_mut().take_events();
    pgt.set_owner(P, P, Some(&mut mc), 1).unwrap();
    let l3 = l(3);
    assert_eq!(
        pgt.env_mut().take_events(),
        [
            wo(l3 + 8, LOCKED),
            Ev::FlushIpa { ipa: P, level: 3 },
            Ev::Put(l3 + 8),
            Ev::Get(l3 + 8),
            rel(l3 + 8, 0x4),
        ]
    );
}

#[test]
fn unmap_sequences() {
    // Without FWB: per-leaf TLBI and D-cache clean, tables freed.
    let mut pgt = s2(hyp4k(), 8, 40, Stage2Flags::empty());
    let mut mc = Mc { nobjs: 10 };
    pgt.map(
        P,
        P,
        0x9000_1000,
        Prot::RW,
        Some(&mut mc),
        WalkFlags::empty(),
    )
    .unwrap();
    pgt.env_mut().take_events();
    let (l2, l3) = (l(2), l(3));
    pgt.unmap(P, P).unwrap();
    assert_eq!(
        pgt.env_mut().take_events(),
        [
            wo(l3 + 8, 0),
            Ev::FlushIpa { ipa: P, level: 3 },
            Ev::Put(l3 + 8),
            Ev::Dcache {
                pa: 0x9000_1000,
                size: P
            },
            Ev::PageCount(l3),
            wo(l2, 0),
            Ev::FlushIpa {
                ipa: P,
                level: TLBI_TTL_UNKNOWN
            },
            Ev::Put(l2),
            Ev::Put(l3),
            Ev::PageCount(l2),
            wo(A, 0),
            Ev::FlushIpa {
                ipa: P,
                level: TLBI_TTL_UNKNOWN
            },
            Ev::Put(A),
            Ev::Put(l2),
        ]
    );
    assert_eq!(pgt.env().live_pages(), 2);

    // FWB + range TLBI: leaf invalidation deferred to one range flush.
    let cf = cfg_with(Granule::Size4K, Context::NvheHyp, |f| {
        f.stage2_fwb = true;
        f.tlb_range = true;
    });
    let mut pgt = s2(cf, 8, 40, Stage2Flags::empty());
    pgt.map(
        P,
        2 * P,
        0x9000_1000,
        Prot::RW,
        Some(&mut mc),
        WalkFlags::empty(),
    )
    .unwrap();
    pgt.env_mut().take_events();
    pgt.unmap(P, P + 1).unwrap();
    assert_eq!(
        pgt.env_mut().take_events(),
        [
            wo(l3 + 8, 0),
            Ev::Put(l3 + 8),
            wo(l3 + 16, 0),
            Ev::Put(l3 + 16),
            Ev::PageCount(l3),
            wo(l2, 0),
            Ev::FlushIpa {
                ipa: P,
                level: TLBI_TTL_UNKNOWN
            },
            Ev::Put(l2),
            Ev::Put(l3),
            Ev::PageCount(l2),
            wo(A, 0),
            Ev::FlushIpa {
                ipa: P,
                level: TLBI_TTL_UNKNOWN
            },
            Ev::Put(A),
            Ev::Put(l2),
            // Raw size in pages: (4K + 1) >> 12.
            Ev::FlushRange { start: P, pages: 1 },
        ]
    );

    // FWB with NOFWB table flag behaves like no FWB.
    let mut pgt = s2(cf, 8, 40, Stage2Flags::NOFWB);
    pgt.map(
        P,
        P,
        0x9000_1000,
        Prot::RW,
        Some(&mut mc),
        WalkFlags::empty(),
    )
    .unwrap();
    pgt.env_mut().take_events();
    pgt.unmap(P, P).unwrap();
    let ev = pgt.env_mut().take_events();
    assert_eq!(ev[1], Ev::FlushIpa { ipa: P, level: 3 });
    assert_eq!(
        ev[3],
        Ev::Dcache {
            pa: 0x9000_1000,
            size: P
        }
    );
}

#[test]
fn unmap_removes_whole_blocks() {
    let mut pgt = s2(hyp4k(), 8, 40, Stage2Flags::empty());
    let mut mc = Mc { nobjs: 10 };
    pgt.map(
        M2,
        M2,
        0x8000_0000,
        Prot::RW | Prot::DEVICE,
        Some(&mut mc),
        WalkFlags::empty(),
    )
    .unwrap();
    pgt.env_mut().take_events();
    pgt.unmap(M2 + P, P).unwrap();
    let l2 = l(2);
    assert_eq!(
        pgt.env_mut().take_events(),
        [
            wo(l2 + 8, 0),
            Ev::FlushIpa {
                ipa: M2 + P,
                level: 2
            },
            Ev::Put(l2 + 8),
            Ev::PageCount(l2),
            wo(A, 0),
            Ev::FlushIpa {
                ipa: M2 + P,
                level: TLBI_TTL_UNKNOWN
            },
            Ev::Put(A),
            Ev::Put(l2),
        ]
    );
}

#[test]
fn tlb_flush_range_chunks() {
    let cf = cfg_with(Granule::Size4K, Context::Kernel, |f| f.tlb_range = true);
    let mut m = Mock::new(cf, 1);
    let pages = MAX_TLBI_RANGE_PAGES + 3;
    kvm_tlb_flush_vmid_range(&mut m, &cf, 0x1000, pages << 12);
    assert_eq!(
        m.take_events(),
        [
            Ev::FlushRange {
                start: 0x1000,
                pages: MAX_TLBI_RANGE_PAGES
            },
            Ev::FlushRange {
                start: 0x1000 + (MAX_TLBI_RANGE_PAGES << 12),
                pages: 3
            },
        ]
    );
    kvm_tlb_flush_vmid_range(&mut m, &cf, 0x1000, 0xfff);
    assert!(m.events.is_empty());
    let cf = c(Context::Kernel);
    kvm_tlb_flush_vmid_range(&mut m, &cf, 0x1000, 1 << 40);
    assert_eq!(m.take_events(), [Ev::FlushVmid]);
}

fn split_setup(level1: bool, pages: usize) -> (Stage2Pgtable<Mock>, u64) {
    let mut pgt = s2(hyp4k(), pages, 40, Stage2Flags::empty());
    let mut mc = Mc { nobjs: 10 };
    let (ipa, size) = if level1 { (G1, G1) } else { (M2, M2) };
    pgt.map(
        ipa,
        size,
        0x80_0000_0000 + ipa,
        Prot::RW | Prot::SW1,
        Some(&mut mc),
        WalkFlags::empty(),
    )
    .unwrap();
    pgt.env_mut().take_events();
    (pgt, ipa)
}

#[test]
fn split_level2_block_into_pages() {
    let (mut pgt, ipa) = split_setup(false, 8);
    let mut mc = Mc { nobjs: 1 };
    pgt.split(ipa, M2, &mut mc).unwrap();
    assert_eq!(mc.nobjs, 0);
    let (l2, l3) = (l(2), l(3));
    let ev = pgt.env_mut().take_events();
    assert_eq!(ev.len(), 1 + 512 * 3 + 6);
    assert_eq!(
        ev[0],
        Ev::Alloc {
            pa: l3,
            from_mc: true
        }
    );
    // The unlinked table is filled without TLBIs or CMOs.
    let attrs = XN | 0x7ff | (1 << 56);
    for i in 0..512u64 {
        let base = 1 + 3 * i as usize;
        assert_eq!(
            ev[base..base + 3],
            [
                wo(l3 + 8 * i, LOCKED),
                Ev::Get(l3 + 8 * i),
                rel(l3 + 8 * i, (0x80_0000_0000 + M2 + i * P) | attrs)
            ]
        );
    }
    assert_eq!(
        ev[1 + 512 * 3..],
        [
            wo(l2 + 8, LOCKED),
            Ev::FlushIpa { ipa: M2, level: 2 },
            Ev::Put(l2 + 8),
            Ev::Get(l2 + 8),
            rel(l2 + 8, l3 | 3),
            Ev::Dsb(Barrier::IshSt),
        ]
    );
    assert_eq!(pgt.env().refcount(l3), 513);
    // Splitting again finds only pages: nothing to do.
    pgt.split(ipa, M2, &mut mc).unwrap();
    assert_eq!(pgt.env_mut().take_events(), [Ev::Dsb(Barrier::IshSt)]);
}

#[test]
fn split_level1_block_depends_on_memcache_size() {
    // PTRS_PER_PTE + 1 pages: straight down to pages.
    let (mut pgt, ipa) = split_setup(true, 520);
    let mut mc = Mc { nobjs: 513 };
    pgt.split(ipa, G1, &mut mc).unwrap();
    assert_eq!(mc.nobjs, 0);
    assert_eq!(pgt.get_leaf(G1 + M2 + P).unwrap().1, Level(3));
    assert_eq!(
        pgt.get_leaf(G1 + 3 * M2 + 5 * P)
            .unwrap()
            .0
            .to_phys(pgt.cfg()),
        0x80_0000_0000 + G1 + 3 * M2 + 5 * P
    );

    // PTRS_PER_PTE pages: the level-1 block becomes one table of 2MiB
    // blocks (one page). The walk then descends into that new table and
    // splits its blocks one page each, until the memcache runs dry on the
    // last one.
    let (mut pgt, ipa) = split_setup(true, 520);
    let mut mc = Mc { nobjs: 512 };
    assert_eq!(pgt.split(ipa, G1, &mut mc), Err(Error::NoMem));
    assert_eq!(mc.nobjs, 0);
    assert_eq!(pgt.env().refcount(l(2)), 513);
    let (pte, level) = pgt.get_leaf(G1 + 7 * M2 + P).unwrap();
    assert_eq!(level, Level(3));
    assert_eq!(
        pte.0,
        (0x80_0000_0000 + G1 + 7 * M2 + P) | XN | 0x7ff | (1 << 56)
    );
    let (pte, level) = pgt.get_leaf(G1 + 511 * M2).unwrap();
    assert_eq!(level, Level(2));
    assert_eq!(
        pte.0,
        (0x80_0000_0000 + G1 + 511 * M2) | XN | 0x7fd | (1 << 56)
    );
    assert_eq!(*pgt.env().events.last().unwrap(), Ev::Dsb(Barrier::IshSt));

    // One page short of the full tree: same as above.
    let (mut pgt, ipa) = split_setup(true, 8);
    let mut mc = Mc { nobjs: 1 };
    assert_eq!(pgt.split(ipa, G1, &mut mc), Err(Error::NoMem));
    assert_eq!(pgt.get_leaf(G1).unwrap().1, Level(2));

    // Nothing in the memcache.
    let (mut pgt, ipa) = split_setup(true, 8);
    let mut mc = Mc { nobjs: 0 };
    assert_eq!(pgt.split(ipa, G1, &mut mc), Err(Error::NoMem));
    assert_eq!(pgt.env_mut().take_events(), [Ev::Dsb(Barrier::IshSt)]);
}

#[test]
fn split_turns_device_blocks_into_normal_pages() {
    let mut pgt = s2(hyp4k(), 8, 40, Stage2Flags::empty());
    let mut mc = Mc { nobjs: 10 };
    pgt.map(
        M2,
        M2,
        0x8000_0000,
        Prot::RW | Prot::DEVICE,
        Some(&mut mc),
        WalkFlags::empty(),
    )
    .unwrap();
    pgt.split(M2, M2, &mut mc).unwrap();
    // Only permissions and software bits survive a split.
    let (pte, _) = pgt.get_leaf(M2).unwrap();
    assert_eq!(pte.0 & (0xf << 2), NORMAL);
}

#[test]
fn create_and_free_unlinked() {
    let mut pgt = s2(hyp4k(), 8, 40, Stage2Flags::empty());
    assert_eq!(
        pgt.create_unlinked(0x1000, Level(2), Prot::RW, None, false),
        Err(Error::Inval)
    );
    assert!(pgt.env().events.is_empty());

    // Level 1 without force_pte: 512 level-2 blocks in one table.
    let t = pgt
        .create_unlinked(G1, Level(1), Prot::RWX, None, false)
        .unwrap();
    assert_eq!(t, l(2));
    let ev = pgt.env_mut().take_events();
    assert_eq!(
        ev[0],
        Ev::Alloc {
            pa: t,
            from_mc: false
        }
    );
    assert_eq!(ev.len(), 1 + 3 * 512);
    assert_eq!(ev[3], rel(t, G1 | 0x7fd));
    assert_eq!(pgt.env().refcount(t), 513);
    pgt.free_unlinked(t, Level(1));
    let ev = pgt.env_mut().take_events();
    assert_eq!(ev.len(), 512 + 2);
    assert_eq!(ev[512..], [Ev::PageCount(t), Ev::Put(t)]);
    assert_eq!(pgt.env().refcount(t), 0);

    // force_pte needs tables, hence a memcache.
    assert_eq!(
        pgt.create_unlinked(G1, Level(1), Prot::RWX, None, true),
        Err(Error::NoMem)
    );
    let t = l(3);
    let ev = pgt.env_mut().take_events();
    assert_eq!(
        ev,
        [
            Ev::Alloc {
                pa: t,
                from_mc: false
            },
            Ev::PageCount(t),
            Ev::Put(t)
        ]
    );

    // Level 3 has nothing below it.
    assert_eq!(
        pgt.create_unlinked(0x1000, Level(3), Prot::R, None, false),
        Err(Error::Inval)
    );
    let t = l(4);
    assert_eq!(
        pgt.env_mut().take_events(),
        [
            Ev::Alloc {
                pa: t,
                from_mc: false
            },
            Ev::Warn { once: true },
            Ev::Warn { once: true },
            Ev::Warn { once: false },
            Ev::PageCount(t),
            Ev::Put(t),
        ]
    );
}

#[test]
fn wrprotect_and_flush() {
    let mut pgt = s2(hyp4k(), 8, 40, Stage2Flags::empty());
    let mut mc = Mc { nobjs: 10 };
    pgt.map(
        P,
        P,
        0x9000_1000,
        Prot::RW,
        Some(&mut mc),
        WalkFlags::empty(),
    )
    .unwrap();
    pgt.map(
        3 * P,
        P,
        0x9000_3000,
        Prot::RW | Prot::DEVICE,
        Some(&mut mc),
        WalkFlags::empty(),
    )
    .unwrap();
    pgt.env_mut().take_events();
    let l3 = l(3);
    // Holes are skipped (EAGAIN is ignored outside fault handling).
    pgt.wrprotect(0, 4 * P).unwrap();
    assert_eq!(
        pgt.env_mut().take_events(),
        [
            wo(l3 + 8, 0x9000_1000 | XN | 0x77f),
            wo(l3 + 24, 0x9000_3000 | XN | 0x747),
        ]
    );
    pgt.wrprotect(0, 4 * P).unwrap();
    assert!(pgt.env().events.is_empty());

    pgt.flush(0, 4 * P).unwrap();
    assert_eq!(
        pgt.env_mut().take_events(),
        [Ev::Dcache {
            pa: 0x9000_1000,
            size: P
        }]
    );

    let fwb = cfg_with(Granule::Size4K, Context::NvheHyp, |f| f.stage2_fwb = true);
    let mut pgt = s2(fwb, 8, 40, Stage2Flags::empty());
    pgt.map(
        P,
        P,
        0x9000_1000,
        Prot::RW,
        Some(&mut mc),
        WalkFlags::empty(),
    )
    .unwrap();
    pgt.env_mut().take_events();
    pgt.flush(0, 4 * P).unwrap();
    assert!(pgt.env().events.is_empty());
}

#[test]
fn young_and_relax_in_kernel_context() {
    let mut pgt = s2(c(Context::Kernel), 8, 40, Stage2Flags::empty());
    let mut mc = Mc { nobjs: 10 };
    pgt.map(
        P,
        P,
        0x9000_1000,
        Prot::R,
        Some(&mut mc),
        WalkFlags::empty(),
    )
    .unwrap();
    pgt.env_mut().take_events();
    let ptep = l(3) + 8;
    let young = 0x9000_1000 | XN | NORMAL | S2R | SH | AF | 3;
    let old = young & !AF;

    // Fresh mappings have AF set: young, and left alone without mkold.
    assert!(pgt.test_clear_young(0, 4 * P, false));
    assert!(pgt.env().events.is_empty());
    assert!(pgt.test_clear_young(0, 4 * P, true));
    assert_eq!(pgt.env_mut().take_events(), [wo(ptep, old)]);
    assert!(!pgt.test_clear_young(0, 4 * P, true));

    // mkyoung: shared walk under RCU, cmpxchg store, returns old value.
    assert_eq!(pgt.mkyoung(P + 0x123), Pte(old));
    assert_eq!(
        pgt.env_mut().take_events(),
        [
            Ev::RcuLock,
            cx(ptep, old, young),
            Ev::RcuUnlock,
            Ev::Dsb(Barrier::IshSt)
        ]
    );
    // On a hole: EAGAIN aborts the fault walk, 0 returned, no barrier.
    assert_eq!(pgt.mkyoung(5 * P), Pte(0));
    assert_eq!(pgt.env_mut().take_events(), [Ev::RcuLock, Ev::RcuUnlock]);

    // relax_perms: adding X cleans the I-cache first; local TLBI after.
    pgt.relax_perms(P, Prot::RWX).unwrap();
    let relaxed = (young & !XN) | S2W;
    assert_eq!(
        pgt.env_mut().take_events(),
        [
            Ev::RcuLock,
            Ev::Icache {
                pa: 0x9000_1000,
                size: P
            },
            cx(ptep, young, relaxed),
            Ev::RcuUnlock,
            Ev::FlushIpaNsh { ipa: P, level: 3 },
        ]
    );
    assert_eq!(pgt.relax_perms(5 * P, Prot::R), Err(Error::Again));
    assert_eq!(
        pgt.env_mut().take_events(),
        [
            Ev::RcuLock,
            Ev::RcuUnlock,
            Ev::FlushIpaNsh {
                ipa: 5 * P,
                level: TLBI_TTL_UNKNOWN
            }
        ]
    );
    assert_eq!(pgt.relax_perms(P, Prot::R | Prot::SW0), Err(Error::Inval));
    assert!(pgt.env().events.is_empty());
}

#[test]
fn shared_operations_in_the_hypervisor() {
    let mut pgt = s2(hyp4k(), 8, 40, Stage2Flags::empty());
    let mut mc = Mc { nobjs: 10 };
    pgt.map(
        P,
        P,
        0x9000_1000,
        Prot::R,
        Some(&mut mc),
        WalkFlags::empty(),
    )
    .unwrap();
    pgt.env_mut().take_events();
    assert_eq!(pgt.mkyoung(P), Pte(0));
    assert_eq!(pgt.relax_perms(P, Prot::RW), Err(Error::Perm));
    assert_eq!(
        pgt.map(
            P,
            P,
            0x9000_1000,
            Prot::RW,
            Some(&mut mc),
            WalkFlags::SHARED
        ),
        Err(Error::Perm)
    );
    // Only the map's trailing barrier.
    assert_eq!(pgt.env_mut().take_events(), [Ev::Dsb(Barrier::IshSt)]);
}

#[test]
fn shared_map_in_kernel_uses_cmpxchg() {
    let mut pgt = s2(c(Context::Kernel), 8, 40, Stage2Flags::empty());
    let mut mc = Mc { nobjs: 10 };
    pgt.map(
        P,
        P,
        0x9000_1000,
        Prot::RW,
        Some(&mut mc),
        WalkFlags::SHARED,
    )
    .unwrap();
    let ev = pgt.env_mut().take_events();
    assert_eq!(ev[0], Ev::RcuLock);
    assert_eq!(ev[2], cx(A, 0, LOCKED));
    assert!(ev.contains(&cx(l(3) + 8, 0, LOCKED)));
    assert_eq!(ev[ev.len() - 2..], [Ev::RcuUnlock, Ev::Dsb(Barrier::IshSt)]);

    // Software-bit-only changes are not done in place by shared walkers.
    pgt.map(
        P,
        P,
        0x9000_1000,
        Prot::RW | Prot::SW3,
        Some(&mut mc),
        WalkFlags::SHARED,
    )
    .unwrap();
    let ev = pgt.env_mut().take_events();
    let old = 0x9000_1000 | XN | 0x7ff;
    assert_eq!(ev[1], cx(l(3) + 8, old, LOCKED));
    assert_eq!(ev[2], Ev::FlushIpa { ipa: P, level: 3 });
}

#[test]
fn unprotected_shared_walk_warns_once_per_visit() {
    let mut pgt = s2(c(Context::Kernel), 8, 40, Stage2Flags::empty());
    pgt.env_mut().rcu_never_held = true;
    let mut visits = 0;
    // Three empty level-1 entries... no: 3 pages of one empty level-1 entry.
    pgt.walk(0, 3 * G1, WalkFlags::LEAF | WalkFlags::SHARED, |_ctx, v| {
        assert_eq!(v, Visit::Leaf);
        visits += 1;
        Ok(())
    })
    .unwrap();
    assert_eq!(visits, 3);
    assert_eq!(
        pgt.env().events,
        [
            Ev::RcuLock,
            Ev::Warn { once: true },
            Ev::Warn { once: true },
            Ev::Warn { once: true },
            Ev::RcuUnlock
        ]
    );
}

#[test]
fn walker_visit_order_and_continuation() {
    let mut pgt = s2(hyp4k(), 8, 40, Stage2Flags::empty());
    let mut mc = Mc { nobjs: 10 };
    pgt.map(
        P,
        3 * P,
        0x9000_1000,
        Prot::RW,
        Some(&mut mc),
        WalkFlags::empty(),
    )
    .unwrap();
    pgt.env_mut().take_events();

    let mut seen = Vec::new();
    pgt.walk(
        P,
        2 * P,
        WalkFlags::LEAF | WalkFlags::TABLE_PRE | WalkFlags::TABLE_POST,
        |ctx, v| {
            seen.push((ctx.level.0, v, ctx.addr, ctx.ptep));
            Ok(())
        },
    )
    .unwrap();
    let (l2, l3) = (l(2), l(3));
    assert_eq!(
        seen,
        [
            (1, Visit::TablePre, P, A),
            (2, Visit::TablePre, P, l2),
            (3, Visit::Leaf, P, l3 + 8),
            (3, Visit::Leaf, 2 * P, l3 + 16),
            (2, Visit::TablePost, P, l2),
            (1, Visit::TablePost, P, A),
        ]
    );

    // EAGAIN: ignored unless handling a fault.
    let mut n = 0;
    pgt.walk(0, 4 * P, WalkFlags::LEAF, |_, _| {
        n += 1;
        Err(Error::Again)
    })
    .unwrap();
    assert_eq!(n, 4);
    let mut n = 0;
    let r = pgt.walk(
        0,
        4 * P,
        WalkFlags::LEAF | WalkFlags::HANDLE_FAULT,
        |_, _| {
            n += 1;
            Err(Error::Again)
        },
    );
    assert_eq!((r, n), (Err(Error::Again), 1));
    // Other errors always stop the walk and are returned as is.
    let mut n = 0;
    let r = pgt.walk(0, 4 * P, WalkFlags::LEAF, |_, _| {
        n += 1;
        Err(Error::Other(16))
    });
    assert_eq!((r, n), (Err(Error::Other(16)), 1));

    // Range checks.
    assert_eq!(
        pgt.walk(1 << 40, P, WalkFlags::LEAF, |_, _| Ok(())),
        Err(Error::Range)
    );
    assert_eq!(pgt.get_leaf((1 << 40) - P).unwrap().1, Level(1));
}

#[test]
fn visitor_can_store_through_ctx() {
    let mut pgt = s2(hyp4k(), 8, 40, Stage2Flags::empty());
    let mut mc = Mc { nobjs: 10 };
    pgt.map(
        P,
        P,
        0x9000_1000,
        Prot::RW,
        Some(&mut mc),
        WalkFlags::empty(),
    )
    .unwrap();
    pgt.env_mut().take_events();
    pgt.walk(P, P, WalkFlags::LEAF, |ctx, _| {
        let new = Pte(ctx.old.0 | (1 << 58));
        ctx.store_release(new);
        assert!(!ctx.cmpxchg(Pte(0)));
        Ok(())
    })
    .unwrap();
    let old = 0x9000_1000 | XN | 0x7ff;
    assert_eq!(pgt.env().events, [rel(l(3) + 8, old | (1 << 58))]);
}

#[test]
fn destroy_frees_everything() {
    let mut pgt = s2(hyp4k(), 16, 40, Stage2Flags::empty());
    let mut mc = Mc { nobjs: 10 };
    pgt.map(
        P,
        3 * P,
        0x9000_1000,
        Prot::RW,
        Some(&mut mc),
        WalkFlags::empty(),
    )
    .unwrap();
    pgt.map(G1, G1, G1, Prot::RW, Some(&mut mc), WalkFlags::empty())
        .unwrap();
    pgt.set_owner(1 << 39, 2 * P, Some(&mut mc), 1).unwrap();
    pgt.env_mut().take_events();
    pgt.destroy();
    assert_eq!(pgt.env().live_pages(), 0);
    assert_eq!(pgt.env().warns(), 0);
    assert_eq!(
        *pgt.env().events.last().unwrap(),
        Ev::FreeExact { pa: A, size: 2 * P }
    );
    assert_eq!(pgt.get_leaf(0), Err(Error::Inval));
}

#[test]
fn test_clear_young_warns_on_walk_error() {
    let cf = hyp4k();
    let mut pgt: Stage2Pgtable<Mock> = Stage2Pgtable::new(Mock::new(cf, 1), cf);
    assert!(!pgt.test_clear_young(0, P, true));
    assert_eq!(pgt.env().events, [Ev::Warn { once: false }]);
}

#[test]
fn other_granules() {
    // 16K, 40-bit IPA: levels (40 - 8) / 11 = 2, so the root is at level 2
    // and, spanning 36 bits per page, needs 16 concatenated pages.
    let cf = cfg(Granule::Size16K, Context::NvheHyp);
    let mut pgt = s2(cf, 24, 40, Stage2Flags::empty());
    assert_eq!(pgt.geometry().start_level, Level(2));
    assert_eq!(pgt.env().next, 16);
    let mut mc = Mc { nobjs: 10 };
    // 32MiB level-2 block in the second root page.
    pgt.map(
        (1 << 36) + (1 << 25),
        1 << 25,
        1 << 31,
        Prot::RW,
        Some(&mut mc),
        WalkFlags::empty(),
    )
    .unwrap();
    let root1 = ARENA_BASE + 0x4000;
    assert_eq!(
        pgt.env_mut().take_events(),
        [
            wo(root1 + 8, LOCKED),
            Ev::Dcache {
                pa: 1 << 31,
                size: 1 << 25
            },
            Ev::Get(root1 + 8),
            rel(root1 + 8, (1 << 31) | XN | 0x7fd),
            Ev::Dsb(Barrier::IshSt),
        ]
    );
    pgt.map(
        0x4000,
        0x4000,
        0x9000_4000,
        Prot::RW,
        Some(&mut mc),
        WalkFlags::empty(),
    )
    .unwrap();
    assert_eq!(
        pgt.get_leaf(0x4000),
        Ok((Pte(0x9000_4000 | XN | 0x7ff), Level(3)))
    );

    // 64K with a 52-bit PA: PA[51:48] in bits 15:12; 512MiB blocks.
    let cf = cfg(Granule::Size64K, Context::NvheHyp);
    let mut pgt = s2(cf, 8, 48, Stage2Flags::empty());
    assert_eq!(pgt.geometry().start_level, Level(1));
    pgt.map(
        1 << 29,
        1 << 29,
        0x000f_0000_2000_0000,
        Prot::RW,
        Some(&mut mc),
        WalkFlags::empty(),
    )
    .unwrap();
    let (pte, level) = pgt.get_leaf(1 << 29).unwrap();
    assert_eq!(level, Level(2));
    assert_eq!(pte.0, 0x2000_0000 | (0xf << 12) | XN | 0x7fd);
    // Split a 64K level-2 block: one table of 8192 pages.
    let mut pgt = s2(cf, 8, 48, Stage2Flags::empty());
    pgt.map(
        1 << 29,
        1 << 29,
        1 << 29,
        Prot::RW,
        Some(&mut mc),
        WalkFlags::empty(),
    )
    .unwrap();
    let mut mc = Mc { nobjs: 1 };
    pgt.split(1 << 29, 1 << 29, &mut mc).unwrap();
    assert_eq!(pgt.env().refcount(ARENA_BASE + 2 * 0x1_0000), 8193);
}

#[test]
fn lpa2_stage2_descriptors() {
    let cf = cfg_with(Granule::Size4K, Context::NvheHyp, |f| f.lpa2 = true);
    let mut pgt = s2(cf, 8, 40, Stage2Flags::empty());
    let mut mc = Mc { nobjs: 10 };
    let pa = (3 << 50) | 0x9000_1000;
    pgt.map(P, P, pa, Prot::RWX, Some(&mut mc), WalkFlags::empty())
        .unwrap();
    // No SH field; PA[51:50] in bits 9:8.
    assert_eq!(
        pgt.get_leaf(P),
        Ok((
            Pte(0x9000_1000 | (3 << 8) | NORMAL | S2R | S2W | AF | 3),
            Level(3)
        ))
    );
}
