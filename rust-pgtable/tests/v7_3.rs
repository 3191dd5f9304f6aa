// SPDX-License-Identifier: GPL-2.0-only
//! Linux 7.3 behaviour, one test per difference from 6.12. Expectations come
//! from the architecture (descriptor layouts, the stage-2 XN[1:0] encodings
//! of FEAT_XNX, stage-1 PXN/UXN, FWB MemAttr values, VTCR_EL2 fields, the
//! TLBI operand) and from the 7.3 kernel's documented contracts
//! (`enum kvm_pgtable_prot`, `enum kvm_invalid_pte_type`, walk and stage-2
//! flags), worked out by hand.
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

// Stage-2 leaf attribute pieces (Arm ARM stage-2 block/page descriptor).
const AF: u64 = 1 << 10;
const SH: u64 = 3 << 8;
const S2R: u64 = 1 << 6;
const S2W: u64 = 1 << 7;
const NORMAL: u64 = 0xf << 2;
const FWB_NORMAL: u64 = 0x6 << 2;
const DEVICE: u64 = 0x1 << 2;
/// FWB MemAttr 0b0111: the stage-1 attributes stand.
const FWB_AS_S1: u64 = 0x7 << 2;
/// XN[1:0] = 0b01: EL0 may execute, EL1 may not.
const XN_UX_ONLY: u64 = 0b01 << 53;
/// XN[1:0] = 0b10: nobody executes (the same bit 54 as 6.12's XN).
const XN_NONE: u64 = 0b10 << 53;
/// XN[1:0] = 0b11: EL1 may execute, EL0 may not.
const XN_PX_ONLY: u64 = 0b11 << 53;

/// The raw `enum kvm_pgtable_prot` bits of Linux 7.3, as the kernel header
/// numbers them: PX 0, UX 1, W 2, R 3, DEVICE 4, NORMAL_NC 5.
const PX: Prot = Prot::from_bits_retain(1 << 0);
const UX: Prot = Prot::from_bits_retain(1 << 1);
const W: Prot = Prot::from_bits_retain(1 << 2);
const R: Prot = Prot::from_bits_retain(1 << 3);
const DEV: Prot = Prot::from_bits_retain(1 << 4);
const NC: Prot = Prot::from_bits_retain(1 << 5);

/// 7.3 stage-2 flags: IDMAP bit 0, AS_S1 bit 1.
const S2_IDMAP: Stage2Flags = Stage2Flags::from_bits_retain(1 << 0);
const S2_AS_S1: Stage2Flags = Stage2Flags::from_bits_retain(1 << 1);

/// The 7.3 break-before-make marker: type LOCKED (1) in bits [63:60].
const LOCKED: u64 = 1 << 60;

fn c73(ctx: Context, f: impl FnOnce(&mut Features)) -> Config {
    cfg_with(Granule::Size4K, ctx, f).with_line(KernelLine::V7_3)
}

fn hyp73() -> Config {
    c73(Context::NvheHyp, |_| {})
}

fn l(i: u64) -> u64 {
    A + i * P
}

fn table(pa: u64) -> u64 {
    pa | 3
}

#[test]
fn encodings_per_line() {
    let v7 = KernelLine::V7_3.prot_bits();
    assert_eq!(
        (v7.px, v7.ux, v7.w, v7.r, v7.device, v7.normal_nc),
        (PX, UX, W, R, DEV, NC)
    );
    assert_eq!(v7.x().bits(), 0b11);
    assert_eq!(v7.rwx().bits(), 0b1111);
    assert_eq!(v7.pkvm_host_mem_prot().bits(), 0b1111);
    assert_eq!(v7.pkvm_host_mmio_prot().bits(), 0b1100);
    assert_eq!(v7.page_hyp_exec().bits(), 0b1011);
    assert_eq!(v7.page_hyp_device().bits(), 0b1_1100);
    let v6 = KernelLine::V6_12.prot_bits();
    assert_eq!((v6.x(), v6.rwx()), (Prot::X, Prot::RWX));
    assert_eq!(v6.page_hyp_device(), Prot::PAGE_HYP_DEVICE);

    let f7 = KernelLine::V7_3.stage2_flag_bits();
    assert_eq!((f7.idmap, f7.as_s1), (S2_IDMAP, S2_AS_S1));
    assert!(f7.nofwb.is_empty());
    let f6 = KernelLine::V6_12.stage2_flag_bits();
    assert_eq!(
        (f6.idmap, f6.nofwb),
        (Stage2Flags::IDMAP, Stage2Flags::NOFWB)
    );
    assert!(f6.as_s1.is_empty());

    // Bit 4 of the walk flags: HANDLE_FAULT in 6.12, IGNORE_EAGAIN in 7.3.
    assert_eq!(WalkFlags::IGNORE_EAGAIN.bits(), 1 << 4);

    // The default line is 6.12, and the XN field / permission masks follow
    // the line.
    assert_eq!(KernelLine::default(), KernelLine::V6_12);
    assert_eq!(
        cfg(Granule::Size4K, Context::Kernel).line,
        KernelLine::V6_12
    );
    assert_eq!(KernelLine::V6_12.s2_xn(), 1 << 54);
    assert_eq!(KernelLine::V7_3.s2_xn(), 3 << 53);
    assert_eq!(KernelLine::V7_3.s2_perms(), S2R | S2W | (3 << 53));

    // The pKVM host policy compares with the line's default permissions.
    assert!(!pkvm_host_force_pte_for(
        KernelLine::V7_3,
        true,
        R | W | PX | UX
    ));
    assert!(pkvm_host_force_pte_for(KernelLine::V7_3, true, Prot::RWX));
    assert!(!pkvm_host_force_pte_for(KernelLine::V7_3, false, R | W));
    assert!(!pkvm_host_force_pte(true, Prot::RWX));
}

#[test]
fn invalid_pte_types() {
    assert_eq!(InvalidPteType::LOCKED.to_pte_bits(), LOCKED);
    assert_eq!(InvalidPteType::HOST_DONATION.to_pte_bits(), 2 << 60);
    assert_eq!(InvalidPteType::GUEST_POISONED.to_pte_bits(), 3 << 60);
    // Only four bits fit: 17 becomes 1 (LOCKED), 16 becomes 0.
    assert_eq!(InvalidPteType(17).to_pte_bits(), LOCKED);
    assert_eq!(InvalidPteType(16).to_pte_bits(), 0);
    assert_eq!(Pte((3 << 60) | 0x84).invalid_pte_type(), InvalidPteType(3));

    // The locked marker of each line, and only invalid entries are locked.
    assert_eq!(Pte::locked(KernelLine::V7_3), Pte(LOCKED));
    assert_eq!(Pte::locked(KernelLine::V6_12), Pte(1 << 10));
    assert!(Pte(LOCKED).is_locked_in(KernelLine::V7_3));
    assert!(!Pte(LOCKED | 1).is_locked_in(KernelLine::V7_3));
    assert!(!Pte(1 << 10).is_locked_in(KernelLine::V7_3));
    assert!(!Pte(LOCKED).is_locked_in(KernelLine::V6_12));
    assert!(Pte(1 << 10).is_locked_in(KernelLine::V6_12));
    assert_eq!(pte_bits::INVALID_PTE_ANNOT_MASK, !(1 | (0xf << 60)));
}

#[test]
fn stage2_xn_field() {
    let none = Stage2Flags::empty();
    let base = NORMAL | SH | AF;
    let xnx = c73(Context::NvheHyp, |f| f.xnx = true);
    for (prot, xn) in [
        (R | PX | UX, 0),
        (R | UX, XN_UX_ONLY),
        (R, XN_NONE),
        (R | PX, XN_PX_ONLY),
    ] {
        assert_eq!(stage2_set_prot_attr(&xnx, none, prot), Ok(base | S2R | xn));
    }
    assert_eq!(
        stage2_set_prot_attr(&xnx, none, R | W | PX | UX),
        Ok(base | S2R | S2W)
    );

    // Without FEAT_XNX only "both" or "neither" can be expressed.
    let plain = c73(Context::NvheHyp, |_| {});
    assert_eq!(
        stage2_set_prot_attr(&plain, none, R | PX),
        Err(Error::Inval)
    );
    assert_eq!(
        stage2_set_prot_attr(&plain, none, R | UX),
        Err(Error::Inval)
    );
    assert_eq!(
        stage2_set_prot_attr(&plain, none, R | PX | UX),
        Ok(base | S2R)
    );
    assert_eq!(
        stage2_set_prot_attr(&plain, none, R),
        Ok(base | S2R | XN_NONE)
    );

    // Either execute bit forbids device and non-cacheable memory; bit 4 is
    // DEVICE in 7.3 (it was NORMAL_NC in 6.12).
    for bad in [R | DEV | UX, R | NC | PX, R | DEV | NC] {
        assert_eq!(stage2_set_prot_attr(&xnx, none, bad), Err(Error::Inval));
    }
    assert_eq!(
        stage2_set_prot_attr(&xnx, none, R | DEV),
        Ok(DEVICE | SH | AF | S2R | XN_NONE)
    );
    // Unknown bits (6 here) are ignored, software bits copied.
    let sw1 = Prot::from_bits_retain(1 << 56);
    assert_eq!(
        stage2_set_prot_attr(&xnx, none, R | Prot::from_bits_retain(1 << 6) | sw1),
        Ok(base | S2R | XN_NONE | (1 << 56))
    );
}

#[test]
fn stage2_pte_prot_reads_both_xn_bits() {
    let cf = hyp73();
    let leaf = |xn: u64| Pte(0x4000_0000 | xn | S2R | S2W | AF | 3);
    assert_eq!(kvm_pgtable_stage2_pte_prot(&cf, leaf(0)), R | W | PX | UX);
    assert_eq!(
        kvm_pgtable_stage2_pte_prot(&cf, leaf(XN_UX_ONLY)),
        R | W | UX
    );
    assert_eq!(kvm_pgtable_stage2_pte_prot(&cf, leaf(XN_NONE)), R | W);
    assert_eq!(
        kvm_pgtable_stage2_pte_prot(&cf, leaf(XN_PX_ONLY)),
        R | W | PX
    );
    // Invalid entries only report their software bits.
    let sw0 = Prot::from_bits_retain(1 << 55);
    assert_eq!(kvm_pgtable_stage2_pte_prot(&cf, Pte((1 << 55) | S2R)), sw0);
    // 6.12 reads bit 54 alone, in its own encoding.
    let v6 = cfg(Granule::Size4K, Context::NvheHyp);
    assert_eq!(
        kvm_pgtable_stage2_pte_prot(&v6, leaf(XN_UX_ONLY)),
        Prot::RWX
    );
    assert_eq!(kvm_pgtable_stage2_pte_prot(&v6, leaf(XN_PX_ONLY)), Prot::RW);
}

#[test]
fn as_s1_and_fwb_memattr() {
    let none = Stage2Flags::empty();
    // AS_S1 without FWB: Normal write-back for every memory type, which
    // leaves stage 1 in charge.
    let plain = hyp73();
    for (prot, xn) in [(R | PX | UX, 0), (R | DEV, XN_NONE), (R | NC, XN_NONE)] {
        assert_eq!(
            stage2_set_prot_attr(&plain, S2_AS_S1, prot),
            Ok(NORMAL | S2R | SH | AF | xn)
        );
    }
    // With FWB: MemAttr 0b0111, "use the stage-1 attributes".
    let fwb = c73(Context::NvheHyp, |f| f.stage2_fwb = true);
    assert_eq!(
        stage2_set_prot_attr(&fwb, S2_AS_S1, R | DEV),
        Ok(FWB_AS_S1 | S2R | SH | AF | XN_NONE)
    );
    assert_eq!(
        stage2_set_prot_attr(&fwb, none, R | PX | UX),
        Ok(FWB_NORMAL | S2R | SH | AF)
    );
    // FWB is the CPU's alone: bit 0 (NOFWB in 6.12, IDMAP in 7.3) and any
    // unknown bit leave it on.
    let other = S2_IDMAP | Stage2Flags::from_bits_retain(1 << 7);
    assert_eq!(
        stage2_set_prot_attr(&fwb, other, R),
        Ok(FWB_NORMAL | S2R | SH | AF | XN_NONE)
    );
}

#[test]
fn as_s1_leaves_are_cacheable_for_unmap_and_flush() {
    // Without FWB every AS_S1 leaf has the Normal MemAttr, so unmap and
    // flush clean even a "device" mapping to the PoC.
    let mut pgt = s2(hyp73(), 8, 40, S2_AS_S1);
    let mut mc = Mc { nobjs: 10 };
    pgt.map(
        P,
        P,
        0x9000_1000,
        R | W | DEV,
        Some(&mut mc),
        WalkFlags::empty(),
    )
    .unwrap();
    pgt.env_mut().take_events();
    pgt.flush(0, M2).unwrap();
    assert_eq!(
        pgt.env_mut().take_events(),
        [Ev::Dcache {
            pa: 0x9000_1000,
            size: P
        }]
    );

    // With FWB and range TLBIs, flush does nothing and unmap defers the
    // leaf TLBI, whatever the table's flags say.
    let cf = c73(Context::NvheHyp, |f| {
        f.stage2_fwb = true;
        f.tlb_range = true;
    });
    let mut pgt = s2(cf, 8, 40, S2_AS_S1 | Stage2Flags::from_bits_retain(1 << 0));
    pgt.map(P, P, P, R | W, Some(&mut mc), WalkFlags::empty())
        .unwrap();
    pgt.env_mut().take_events();
    assert_eq!(pgt.flush(0, M2), Ok(()));
    assert!(pgt.env().events.is_empty());
    pgt.unmap(P, P).unwrap();
    let ev = pgt.env_mut().take_events();
    assert_eq!(ev[..2], [wo(l(3) + 8, 0), Ev::Put(l(3) + 8)]);
    assert_eq!(*ev.last().unwrap(), Ev::FlushRange { start: P, pages: 1 });
}

#[test]
fn idmap_is_bit_0() {
    let mut mc = Mc { nobjs: 10 };
    let mut pgt = s2(hyp73(), 8, 40, S2_IDMAP);
    assert_eq!(
        pgt.map(P, P, 2 * P, R, Some(&mut mc), WalkFlags::empty()),
        Err(Error::Inval)
    );
    assert_eq!(pgt.env().warns(), 1);
    // Bit 1 (6.12's IDMAP) is AS_S1 in 7.3: no identity constraint.
    let mut pgt = s2(hyp73(), 8, 40, S2_AS_S1);
    assert_eq!(
        pgt.map(P, P, 2 * P, R, Some(&mut mc), WalkFlags::empty()),
        Ok(())
    );
    assert_eq!(pgt.env().warns(), 0);
}

#[test]
fn eagain_ends_walks_unless_ignored() {
    let mut mc = Mc { nobjs: 10 };
    let rw = R | W;
    let mut pgt = s2(hyp73(), 8, 40, Stage2Flags::empty());
    pgt.map(P, P, 0x9000_1000, rw, Some(&mut mc), WalkFlags::empty())
        .unwrap();
    // Re-mapping the first page identically is EAGAIN, and in 7.3 that
    // ends the walk: the second page stays unmapped.
    assert_eq!(
        pgt.map(P, 2 * P, 0x9000_1000, rw, Some(&mut mc), WalkFlags::empty()),
        Err(Error::Again)
    );
    assert!(!pgt.get_leaf(2 * P).unwrap().0.is_valid());
    // IGNORE_EAGAIN carries on.
    assert_eq!(
        pgt.map(
            P,
            2 * P,
            0x9000_1000,
            rw,
            Some(&mut mc),
            WalkFlags::IGNORE_EAGAIN
        ),
        Ok(())
    );
    assert!(pgt.get_leaf(2 * P).unwrap().0.is_valid());

    // 6.12 carries on without being asked (bit 4 clear = not a fault).
    let v6 = cfg(Granule::Size4K, Context::NvheHyp);
    let mut pgt = s2(v6, 8, 40, Stage2Flags::empty());
    pgt.map(
        P,
        P,
        0x9000_1000,
        Prot::RW,
        Some(&mut mc),
        WalkFlags::empty(),
    )
    .unwrap();
    assert_eq!(
        pgt.map(
            P,
            2 * P,
            0x9000_1000,
            Prot::RW,
            Some(&mut mc),
            WalkFlags::empty()
        ),
        Ok(())
    );
    assert!(pgt.get_leaf(2 * P).unwrap().0.is_valid());

    // wrprotect walks with IGNORE_EAGAIN: a hole before a leaf does not
    // stop it.
    let mut pgt = s2(hyp73(), 8, 40, Stage2Flags::empty());
    pgt.map(2 * P, P, 0x9000_2000, rw, Some(&mut mc), WalkFlags::empty())
        .unwrap();
    pgt.env_mut().take_events();
    assert_eq!(pgt.wrprotect(P, 2 * P), Ok(()));
    let old = 0x9000_2000 | NORMAL | S2R | S2W | SH | AF | XN_NONE | 3;
    assert_eq!(pgt.env_mut().take_events(), [wo(l(3) + 16, old & !S2W)]);
}

#[test]
fn annotate_installs_typed_invalid_entries() {
    let mut pgt = s2(hyp73(), 8, 40, Stage2Flags::empty());
    let mut mc = Mc { nobjs: 10 };
    let ty = InvalidPteType::HOST_DONATION;
    let annot = (2 << 60) | (0x42 << 1);
    pgt.annotate(P, P, Some(&mut mc), ty, 0x42 << 1).unwrap();
    let (l2, l3) = (l(2), l(3));
    // Page granular: tables down to level 3, each linked by
    // break-before-make with the 7.3 locked marker.
    assert_eq!(
        pgt.env_mut().take_events(),
        [
            Ev::Alloc {
                pa: l2,
                from_mc: true
            },
            wo(A, LOCKED),
            Ev::Get(A),
            rel(A, table(l2)),
            Ev::Alloc {
                pa: l3,
                from_mc: true
            },
            wo(l2, LOCKED),
            Ev::Get(l2),
            rel(l2, table(l3)),
            wo(l3 + 8, LOCKED),
            Ev::Get(l3 + 8),
            rel(l3 + 8, annot),
        ]
    );
    assert_eq!(pgt.get_leaf(P), Ok((Pte(annot), Level(3))));
    assert_eq!(pgt.env().refcount(l3), 2);

    // The same annotation again: a plain store, no refcount change.
    pgt.annotate(P, P, Some(&mut mc), ty, 0x42 << 1).unwrap();
    assert_eq!(pgt.env_mut().take_events(), [wo(l3 + 8, annot)]);

    // Even a whole aligned 2MiB range is annotated page by page.
    pgt.annotate(M2, M2, Some(&mut mc), InvalidPteType::GUEST_POISONED, 0)
        .unwrap();
    assert_eq!(pgt.get_leaf(M2 + M2 - P), Ok((Pte(3 << 60), Level(3))));

    // Bad annotations and types are refused before any walk.
    for (t, a) in [
        (ty, 1),
        (ty, 1 << 60),
        (ty, 1 << 63),
        (InvalidPteType(0), 0),
        (InvalidPteType::LOCKED, 0),
    ] {
        assert_eq!(pgt.annotate(P, P, Some(&mut mc), t, a), Err(Error::Inval));
    }
    pgt.env_mut().take_events();

    // Unmap drops annotations like mappings.
    pgt.unmap(P, P).unwrap();
    let ev = pgt.env_mut().take_events();
    assert_eq!(ev[..2], [wo(l3 + 8, 0), Ev::Put(l3 + 8)]);
}

#[test]
fn annotate_over_a_mapping_breaks_it() {
    let mut pgt = s2(hyp73(), 8, 40, Stage2Flags::empty());
    let mut mc = Mc { nobjs: 10 };
    pgt.map(P, P, 0x9000_1000, R, Some(&mut mc), WalkFlags::empty())
        .unwrap();
    pgt.env_mut().take_events();
    pgt.annotate(P, P, Some(&mut mc), InvalidPteType::HOST_DONATION, 0)
        .unwrap();
    let l3 = l(3);
    assert_eq!(
        pgt.env_mut().take_events(),
        [
            wo(l3 + 8, LOCKED),
            Ev::FlushIpa { ipa: P, level: 3 },
            Ev::Put(l3 + 8),
            Ev::Get(l3 + 8),
            rel(l3 + 8, 2 << 60),
        ]
    );
}

#[test]
fn type_17_is_stored_as_locked() {
    // Type 17 is not LOCKED, so it passes the check, but only its low four
    // bits are stored: the entry then reads as mid break-before-make, and
    // a map over it backs off with EAGAIN and a warning.
    let mut pgt = s2(hyp73(), 8, 40, Stage2Flags::empty());
    let mut mc = Mc { nobjs: 10 };
    pgt.annotate(P, P, Some(&mut mc), InvalidPteType(17), 0x10)
        .unwrap();
    assert_eq!(pgt.get_leaf(P).unwrap().0, Pte(LOCKED | 0x10));
    pgt.env_mut().take_events();
    assert_eq!(
        pgt.map(P, P, 0x9000_1000, R, Some(&mut mc), WalkFlags::empty()),
        Err(Error::Again)
    );
    assert_eq!(
        pgt.env_mut().take_events(),
        [Ev::Warn { once: false }, Ev::Dsb(Barrier::IshSt)]
    );

    // 6.12's marker (bit 10) means nothing in 7.3: an ordinary counted
    // invalid entry, broken and replaced.
    let mut pgt = s2(hyp73(), 8, 40, Stage2Flags::empty());
    pgt.annotate(P, P, Some(&mut mc), InvalidPteType::HOST_DONATION, 1 << 10)
        .unwrap();
    pgt.env_mut().take_events();
    pgt.map(P, P, 0x9000_1000, R, Some(&mut mc), WalkFlags::empty())
        .unwrap();
    assert_eq!(pgt.env().warns(), 0);
}

#[test]
fn break_before_make_uses_the_typed_marker() {
    let mut pgt = s2(hyp73(), 8, 40, Stage2Flags::empty());
    let mut mc = Mc { nobjs: 10 };
    pgt.map(P, P, 0x9000_1000, R | W, Some(&mut mc), WalkFlags::empty())
        .unwrap();
    pgt.env_mut().take_events();
    pgt.map(P, P, 0x9000_2000, R | W, Some(&mut mc), WalkFlags::empty())
        .unwrap();
    let new = 0x9000_2000 | NORMAL | S2R | S2W | SH | AF | XN_NONE | 3;
    let l3 = l(3);
    assert_eq!(
        pgt.env_mut().take_events(),
        [
            wo(l3 + 8, LOCKED),
            Ev::FlushIpa { ipa: P, level: 3 },
            Ev::Put(l3 + 8),
            Ev::Dcache {
                pa: 0x9000_2000,
                size: P
            },
            Ev::Get(l3 + 8),
            rel(l3 + 8, new),
            Ev::Dsb(Barrier::IshSt),
        ]
    );
}

#[test]
fn executable_means_px_or_ux() {
    // A leaf only EL0 may execute still needs the I-cache invalidated.
    let cf = c73(Context::NvheHyp, |f| f.xnx = true);
    let mut pgt = s2(cf, 8, 40, Stage2Flags::empty());
    let mut mc = Mc { nobjs: 10 };
    pgt.map(P, P, 0x9000_1000, R | UX, Some(&mut mc), WalkFlags::empty())
        .unwrap();
    let ev = pgt.env_mut().take_events();
    assert!(ev.contains(&Ev::Icache {
        pa: 0x9000_1000,
        size: P
    }));
    // Neither: no I-cache maintenance.
    pgt.map(2 * P, P, 0x9000_2000, R, Some(&mut mc), WalkFlags::empty())
        .unwrap();
    let ev = pgt.env_mut().take_events();
    assert!(!ev.iter().any(|e| matches!(e, Ev::Icache { .. })));
}

#[test]
fn relax_perms_sets_the_xn_field() {
    let cf = c73(Context::NvheHyp, |f| f.xnx = true);
    let mut pgt = s2(cf, 8, 40, Stage2Flags::empty());
    let mut mc = Mc { nobjs: 10 };
    pgt.map(P, P, 0x9000_1000, R, Some(&mut mc), WalkFlags::empty())
        .unwrap();
    pgt.env_mut().take_events();
    let base = 0x9000_1000 | NORMAL | S2R | SH | AF | 3;
    let l3 = l(3);

    // Granting UX: XN[1:0] becomes 0b01, and the newly executable page's
    // I-cache lines go first.
    pgt.relax_perms_with_flags(P, UX, WalkFlags::empty())
        .unwrap();
    assert_eq!(
        pgt.env_mut().take_events(),
        [
            Ev::Icache {
                pa: 0x9000_1000,
                size: P
            },
            wo(l3 + 8, base | XN_UX_ONLY),
            Ev::FlushIpaNsh { ipa: P, level: 3 },
        ]
    );
    // Granting PX alone sets XN to exactly "EL1 only": it is not added to
    // what the entry already allows.
    pgt.relax_perms_with_flags(P, PX, WalkFlags::empty())
        .unwrap();
    assert_eq!(
        pgt.env_mut().take_events(),
        [
            wo(l3 + 8, base | XN_PX_ONLY),
            Ev::FlushIpaNsh { ipa: P, level: 3 },
        ]
    );
    // Both: XN cleared. W without X leaves XN alone.
    pgt.relax_perms_with_flags(P, PX | UX, WalkFlags::empty())
        .unwrap();
    pgt.relax_perms_with_flags(P, W, WalkFlags::empty())
        .unwrap();
    assert_eq!(pgt.get_leaf(P).unwrap().0, Pte(base | S2W));
    // Software bits are refused.
    let sw = Prot::from_bits_retain(1 << 57);
    pgt.env_mut().take_events();
    assert_eq!(
        pgt.relax_perms_with_flags(P, R | sw, WalkFlags::empty()),
        Err(Error::Inval)
    );
    assert!(pgt.env().events.is_empty());

    // Without FEAT_XNX one of PX/UX alone is EINVAL, before any walk.
    let mut pgt = s2(hyp73(), 8, 40, Stage2Flags::empty());
    pgt.map(P, P, 0x9000_1000, R, Some(&mut mc), WalkFlags::empty())
        .unwrap();
    pgt.env_mut().take_events();
    assert_eq!(
        pgt.relax_perms_with_flags(P, UX, WalkFlags::empty()),
        Err(Error::Inval)
    );
    assert!(pgt.env().events.is_empty());

    // The caller's flags decide: a hole is EAGAIN (TLBI with the level
    // unknown) unless EAGAIN is ignored; a shared walk in the hypervisor
    // is EPERM, with no TLBI at all.
    assert_eq!(
        pgt.relax_perms_with_flags(3 * P, R, WalkFlags::empty()),
        Err(Error::Again)
    );
    assert_eq!(
        pgt.env_mut().take_events(),
        [Ev::FlushIpaNsh {
            ipa: 3 * P,
            level: TLBI_TTL_UNKNOWN
        }]
    );
    assert_eq!(
        pgt.relax_perms_with_flags(3 * P, R, WalkFlags::IGNORE_EAGAIN),
        Ok(())
    );
    // The walk state's level starts at 0, and no leaf set it.
    assert_eq!(
        pgt.env_mut().take_events(),
        [Ev::FlushIpaNsh {
            ipa: 3 * P,
            level: 0
        }]
    );
    assert_eq!(
        pgt.relax_perms_with_flags(P, R, WalkFlags::SHARED),
        Err(Error::Perm)
    );
    assert!(pgt.env().events.is_empty());
}

#[test]
fn mkyoung_takes_walk_flags_and_returns_nothing() {
    let mut pgt = s2(hyp73(), 8, 40, Stage2Flags::empty());
    let mut mc = Mc { nobjs: 10 };
    pgt.map(P, P, 0x9000_1000, R, Some(&mut mc), WalkFlags::empty())
        .unwrap();
    assert!(pgt.test_clear_young(P, P, true));
    pgt.env_mut().take_events();
    let leaf = 0x9000_1000 | NORMAL | S2R | SH | AF | XN_NONE | 3;

    // An exclusive walk: plain store, then dsb.
    pgt.mkyoung_with_flags(P, WalkFlags::empty());
    assert_eq!(
        pgt.env_mut().take_events(),
        [wo(l(3) + 8, leaf), Ev::Dsb(Barrier::IshSt)]
    );
    // A failed walk has no dsb: a shared walk in the hypervisor, or a hole.
    pgt.mkyoung_with_flags(P, WalkFlags::SHARED);
    pgt.mkyoung_with_flags(2 * P, WalkFlags::empty());
    assert!(pgt.env().events.is_empty());
    // Ignoring EAGAIN, the hole is a successful walk.
    pgt.mkyoung_with_flags(2 * P, WalkFlags::IGNORE_EAGAIN);
    assert_eq!(pgt.env_mut().take_events(), [Ev::Dsb(Barrier::IshSt)]);

    // In the host kernel a shared walk takes RCU and exchanges.
    let mut pgt = s2(c73(Context::Kernel, |_| {}), 8, 40, Stage2Flags::empty());
    pgt.map(P, P, 0x9000_1000, R, Some(&mut mc), WalkFlags::empty())
        .unwrap();
    pgt.test_clear_young(P, P, true);
    pgt.env_mut().take_events();
    pgt.mkyoung_with_flags(P, WalkFlags::SHARED);
    assert_eq!(
        pgt.env_mut().take_events(),
        [
            Ev::RcuLock,
            cx(l(3) + 8, leaf & !AF, leaf),
            Ev::RcuUnlock,
            Ev::Dsb(Barrier::IshSt),
        ]
    );
}

#[test]
fn destroy_range_frees_only_emptied_tables() {
    let mut pgt = s2(hyp73(), 8, 40, Stage2Flags::empty());
    let mut mc = Mc { nobjs: 10 };
    // Two pages in two level-3 tables (pages 3 and 4) under one level-2
    // table (page 2).
    pgt.map(P, P, 0x9000_1000, R, Some(&mut mc), WalkFlags::empty())
        .unwrap();
    pgt.map(M2 + P, P, 0x9020_1000, R, Some(&mut mc), WalkFlags::empty())
        .unwrap();
    pgt.env_mut().take_events();
    let (l2, l3a, l3b) = (l(2), l(3), l(4));

    pgt.destroy_range(0, M2);
    // The first level-3 table empties and goes, its entry cleared; the
    // level-2 table still holds the second one, so it stays.
    assert_eq!(
        pgt.env_mut().take_events(),
        [
            Ev::Put(l3a + 8),
            Ev::PageCount(l3a),
            Ev::Put(l2),
            Ev::Put(l3a),
            wo(l2, 0),
            Ev::PageCount(l2),
        ]
    );
    assert_eq!(pgt.env().refcount(l2), 2);
    assert_eq!(pgt.env().refcount(l3b), 2);
    assert_eq!(pgt.get_leaf(M2 + P).unwrap().1, Level(3));

    // The rest of the range, then the root.
    pgt.destroy_range(M2, G1 - M2);
    pgt.destroy_pgd();
    let ev = pgt.env_mut().take_events();
    assert_eq!(*ev.last().unwrap(), Ev::FreeExact { pa: A, size: 2 * P });
    assert_eq!(pgt.env().live_pages(), 0);
    assert_eq!(pgt.env().warns(), 0);
    assert_eq!(pgt.get_leaf(0), Err(Error::Inval));
}

#[test]
fn destroy_is_destroy_range_then_destroy_pgd() {
    let mut pgt = s2(hyp73(), 16, 40, Stage2Flags::empty());
    let mut mc = Mc { nobjs: 10 };
    pgt.map(
        P,
        3 * P,
        0x9000_1000,
        R | W,
        Some(&mut mc),
        WalkFlags::empty(),
    )
    .unwrap();
    pgt.map(G1, G1, G1, R | W, Some(&mut mc), WalkFlags::empty())
        .unwrap();
    pgt.annotate(
        1 << 39,
        2 * P,
        Some(&mut mc),
        InvalidPteType::HOST_DONATION,
        0,
    )
    .unwrap();
    pgt.env_mut().take_events();
    pgt.destroy();
    let ev = pgt.env_mut().take_events();
    assert_eq!(pgt.env().live_pages(), 0);
    assert_eq!(pgt.env().warns(), 0);
    // The three leaves of the first level-3 table (page 3), then its table
    // entry in the level-2 table (page 2), cleared after the references go.
    let l3 = l(3);
    assert_eq!(
        ev[..7],
        [
            Ev::Put(l3 + 8),
            Ev::Put(l3 + 16),
            Ev::Put(l3 + 24),
            Ev::PageCount(l3),
            Ev::Put(l(2)),
            Ev::Put(l3),
            wo(l(2), 0),
        ]
    );
    assert_eq!(*ev.last().unwrap(), Ev::FreeExact { pa: A, size: 2 * P });
}

#[test]
fn free_unlinked_checks_and_clears_table_entries() {
    // A level-1 block rebuilt down to pages: one level-2 table and 512
    // level-3 tables.
    let mut pgt = s2(hyp73(), 2 + 513 + 1, 40, Stage2Flags::empty());
    let mut mc = Mc { nobjs: 513 };
    let top = pgt
        .create_unlinked(G1, Level(1), R, Some(&mut mc), true)
        .unwrap();
    assert_eq!(top, l(2));
    let child0 = l(3);
    assert_eq!(pgt.env().read(top), table(child0));
    pgt.env_mut().take_events();

    pgt.free_unlinked(top, Level(1));
    let ev = pgt.env_mut().take_events();
    assert_eq!(ev.len(), 512 * (512 + 4) + 2);
    assert_eq!(ev[0], Ev::Put(child0));
    assert_eq!(
        ev[512..516],
        [
            Ev::PageCount(child0),
            Ev::Put(top),
            Ev::Put(child0),
            wo(top, 0),
        ]
    );
    assert_eq!(ev[ev.len() - 2..], [Ev::PageCount(top), Ev::Put(top)]);
    assert_eq!(pgt.env().live_pages(), 2);
}

#[test]
fn block_mappings_check_every_phys_alignment() {
    // A 2MiB range at a page-aligned PA of 2^48 + 4K. 6.12 skips the
    // alignment check for a PA beyond the 48-bit limit and installs a
    // level-2 block; 7.3 checks it, so the range is mapped with pages.
    let phys = (1 << 48) + P;
    let attr = 0x740 | (1 << 54);
    let v6 = cfg(Granule::Size4K, Context::NvheHyp);
    let mut pgt = hyp(v6, 8, 48);
    pgt.map(M2, M2, phys, Prot::PAGE_HYP).unwrap();
    // Bits 47:12 of the PA: the block descriptor carries 0x1000.
    assert_eq!(pgt.get_leaf(M2), Ok((Pte(P | attr | 1), Level(2))));

    let mut pgt = hyp(hyp73(), 8, 48);
    pgt.map(M2, M2, phys, R | W).unwrap();
    assert_eq!(pgt.get_leaf(M2), Ok((Pte(P | attr | 3), Level(3))));
    assert_eq!(pgt.get_leaf(2 * M2 - P).unwrap().0, Pte(M2 | attr | 3));

    // Stage 2: 6.12 treats a PA beyond the limit as an ownership walk for
    // owner 0 (an empty entry); 7.3 maps it, truncated to bits 47:12.
    let mut mc = Mc { nobjs: 10 };
    let mut pgt = s2(
        cfg(Granule::Size4K, Context::NvheHyp),
        8,
        40,
        Stage2Flags::empty(),
    );
    pgt.map(P, P, 1 << 48, Prot::R, Some(&mut mc), WalkFlags::empty())
        .unwrap();
    assert_eq!(pgt.get_leaf(P).unwrap().0, Pte(0));
    let mut pgt = s2(hyp73(), 8, 40, Stage2Flags::empty());
    pgt.map(P, P, 1 << 48, R, Some(&mut mc), WalkFlags::empty())
        .unwrap();
    let leaf = NORMAL | S2R | SH | AF | XN_NONE | 3;
    assert_eq!(pgt.get_leaf(P).unwrap().0, Pte(leaf));
}

#[test]
fn hyp_execute_permissions() {
    // Stage-1 EL2 leaf: AttrIndx 0 (normal), AP[2:1] at bits 7:6, SH inner
    // (3 << 8), AF (bit 10); XN / UXN bit 54, PXN bit 53, GP bit 50.
    const SH_AF: u64 = 0x300 | 0x400;
    let nvhe = hyp73();
    // AP without hVHE: RO = 0b11, RW = 0b01.
    let (ro, rw) = (3 << 6, 1 << 6);
    assert_eq!(hyp_set_prot_attr(&nvhe, R | PX), Ok(ro | SH_AF));
    // UX means nothing to the single-privilege EL2 regime: dropped, even
    // together with W.
    assert_eq!(hyp_set_prot_attr(&nvhe, R | UX), Ok(ro | SH_AF | (1 << 54)));
    assert_eq!(
        hyp_set_prot_attr(&nvhe, R | W | UX),
        Ok(rw | SH_AF | (1 << 54))
    );
    assert_eq!(hyp_set_prot_attr(&nvhe, R | W | PX), Err(Error::Inval));
    assert_eq!(hyp_set_prot_attr(&nvhe, R | DEV | PX), Err(Error::Inval));
    assert_eq!(
        hyp_set_prot_attr(&nvhe, R | DEV | UX),
        Ok((4 << 2) | ro | SH_AF | (1 << 54))
    );
    assert_eq!(hyp_set_prot_attr(&nvhe, W), Err(Error::Inval));
    let bti = c73(Context::NvheHyp, |f| f.bti_kernel = true);
    assert_eq!(
        hyp_set_prot_attr(&bti, R | PX | UX),
        Ok(ro | SH_AF | (1 << 50))
    );

    // hVHE: the EL2&0 regime has PXN and UXN; AP RO = 0b10, RW = 0b00.
    let hvhe = c73(Context::NvheHyp, |f| f.hvhe = true);
    let ro = 2 << 6;
    assert_eq!(hyp_set_prot_attr(&hvhe, R | PX), Ok(ro | SH_AF | (1 << 54)));
    assert_eq!(hyp_set_prot_attr(&hvhe, R | UX), Ok(ro | SH_AF | (1 << 53)));
    assert_eq!(hyp_set_prot_attr(&hvhe, R | PX | UX), Ok(ro | SH_AF));
    assert_eq!(hyp_set_prot_attr(&hvhe, R | W), Ok(SH_AF | (3 << 53)));
    assert_eq!(hyp_set_prot_attr(&hvhe, R | W | UX), Err(Error::Inval));

    // Decoding: without hVHE only PX comes back; with it, both.
    let v = |bits: u64| Pte(bits | SH_AF | 3);
    assert_eq!(hyp_pte_prot(&nvhe, v(3 << 6)), R | PX);
    assert_eq!(hyp_pte_prot(&nvhe, v((1 << 6) | (1 << 54))), R | W);
    assert_eq!(hyp_pte_prot(&hvhe, v((2 << 6) | (1 << 53))), R | UX);
    assert_eq!(hyp_pte_prot(&hvhe, v(1 << 54)), R | W | PX);
    assert_eq!(hyp_pte_prot(&hvhe, v(0)), R | W | PX | UX);
    let sw3 = Prot::from_bits_retain(1 << 58);
    assert_eq!(hyp_pte_prot(&hvhe, Pte(1 << 58)), sw3);
}

#[test]
fn hyp_tlbi_operand_is_the_same() {
    // TLBI VALE2IS takes VA[55:12] in Xt[43:0]: for VA 0x1234_5000 that is
    // 0x12345, on both lines.
    for cf in [cfg(Granule::Size4K, Context::NvheHyp), hyp73()] {
        let mut pgt = hyp(cf, 8, 48);
        let rw = cf.line.prot_bits().rw();
        pgt.map(0x1234_5000, P, 0x8000_0000, rw).unwrap();
        pgt.env_mut().take_events();
        assert_eq!(pgt.unmap(0x1234_5000, P), P);
        let ev = pgt.env_mut().take_events();
        assert_eq!(
            ev[2],
            Ev::Tlbi {
                op: TlbiOp::Vale2is,
                operand: 0x12345,
                level: 3
            }
        );
    }
}

#[test]
fn vtcr_fields_are_masked() {
    // 4K: SH0 inner (3 << 12), ORGN0/IRGN0 WBWA (1 << 10, 1 << 8), RES1
    // bit 31, TG0 0; PS 0b101 (48 bits) at 18:16; HA bit 21; VS bit 19.
    let v6 = cfg(Granule::Size4K, Context::Kernel);
    let v7 = v6.with_line(KernelLine::V7_3);
    let fixed = 0x8000_3500 | (5 << 16) | (1 << 21) | (1 << 19);
    let (mmfr0, mmfr1) = (5, 2 << 4);
    // In range the lines agree: 40 bits is T0SZ 24, SL0 1 (start level 1).
    for cf in [v6, v7] {
        assert_eq!(get_vtcr(&cf, mmfr0, mmfr1, 40), fixed | 24 | (1 << 6));
    }
    for ipa in 32..=52 {
        assert_eq!(
            get_vtcr(&v6, mmfr0, mmfr1, ipa),
            get_vtcr(&v7, mmfr0, mmfr1, ipa)
        );
    }
    // phys_shift 0: T0SZ would be 64, which needs seven bits. 6.12 lets it
    // spill into SL0; its level count is (0 - 8) as a u32 / 9 = 477218587,
    // 27 as an s8, so SL0 = 2 - (4 - 27) = 25 spills as well (25 << 6 =
    // 0x640). 7.3 keeps 64 & 0x3f = 0 and 25 & 3 = 1.
    assert_eq!(get_vtcr(&v6, mmfr0, mmfr1, 0), fixed | 0x40 | 0x640);
    assert_eq!(get_vtcr(&v7, mmfr0, mmfr1, 0), fixed | (1 << 6));
    // phys_shift 65: T0SZ is -1, all ones in 6.12; 7.3 keeps 0x3f, and SL0
    // = 2 - (4 - 6) = 4 masks to 0.
    assert_eq!(get_vtcr(&v6, mmfr0, mmfr1, 65), u64::MAX);
    assert_eq!(get_vtcr(&v7, mmfr0, mmfr1, 65), fixed | 0x3f);
}

#[test]
#[should_panic(expected = "set_owner is a Linux V6_12 operation")]
fn set_owner_is_6_12_only() {
    let mut pgt = s2(hyp73(), 8, 40, Stage2Flags::empty());
    let _ = pgt.set_owner(P, P, None, 1);
}

#[test]
#[should_panic(expected = "annotate is a Linux V7_3 operation")]
fn annotate_is_7_3_only() {
    let mut pgt = s2(
        cfg(Granule::Size4K, Context::NvheHyp),
        8,
        40,
        Stage2Flags::empty(),
    );
    let _ = pgt.annotate(P, P, None, InvalidPteType::HOST_DONATION, 0);
}

#[test]
#[should_panic(expected = "mkyoung(addr) is a Linux V6_12 operation")]
fn old_mkyoung_is_6_12_only() {
    let mut pgt = s2(hyp73(), 8, 40, Stage2Flags::empty());
    let _ = pgt.mkyoung(P);
}
