// SPDX-License-Identifier: GPL-2.0-only
//! The kernel's pgtable.c driven alone. Expected descriptors and VTCRs are
//! worked out by hand from the Arm ARM (VMSAv8-64 block/page descriptor
//! formats, VTCR_EL2), not captured from runs.

use super::*;
use crate::arena::{Geometry, PageSource};
use crate::events::{AllocSource, Barrier, Event, Marks, StoreKind};
use crate::opstream::KernelLine;

const R: u64 = 1 << 2;
const W: u64 = 1 << 1;
const X: u64 = 1 << 0;
const DEVICE: u64 = 1 << 3;
const BASE: u64 = Geometry::DEFAULT_BASE_PA;
const K4: u64 = 4096;

const WALK_LEAF: u32 = 1 << 0;
const WALK_TABLE_PRE: u32 = 1 << 1;
const WALK_TABLE_POST: u32 = 1 << 2;
const WALK_SHARED: u32 = 1 << 3;

/// ID_AA64MMFR0_EL1 with PARange = `pa` (bits [3:0]).
fn mmfr0(pa: u64) -> u64 {
    pa
}
/// ID_AA64MMFR1_EL1 with VMIDBits = 16 (bits [7:4] = 0b0010).
const MMFR1_VMID16: u64 = 0x20;

fn side(
    nvhe: bool,
    granule: Granule,
    features: CpuFeatures,
    null_mc: PageSource,
    fp: ForcePte,
) -> CSide {
    let arena = Arena::new(Geometry::new(granule.page_size(), 256), null_mc, None);
    CSide::new(
        Build::of(KernelLine::V6_12, nvhe, granule),
        features,
        arena,
        fp,
    )
}

/// A 4K stage-2 with a 40-bit IPA space: three levels from level 1, with two
/// concatenated level-1 tables as the PGD.
fn stage2_40bit(features: CpuFeatures, fp: ForcePte) -> CSide {
    let mut c = side(true, Granule::K4, features, PageSource::Budget, fp);
    let vtcr = c.get_vtcr(mmfr0(2), MMFR1_VMID16, 40);
    assert_eq!(c.stage2_init(vtcr, 0).ret, 0);
    assert_eq!(c.geometry(), (40, 1));
    c
}

fn mc(n: u32) -> Option<Memcache> {
    Some(Memcache { nobjs: n })
}

/// Every table page's refcount is 1 plus its non-zero (counted) entries;
/// PGD pages are not refcounted that way for stage-2 (1 + entries too, per page).
fn assert_refcounts_match_entries(c: &CSide) {
    let a = c.arena();
    for (pa, count) in a.live() {
        let used = a.page_words(pa).iter().filter(|&&d| d != 0).count() as u32;
        assert_eq!(count, 1 + used, "page {pa:#x}");
    }
}

#[test]
fn vtcr_values_from_the_architecture() {
    let mut c = side(
        true,
        Granule::K4,
        CpuFeatures::default(),
        PageSource::Budget,
        ForcePte::None,
    );
    // Common bits: SH0=inner (3<<12), ORGN0=IRGN0=WBWA (1<<10, 1<<8), RES1 bit 31 = 0x8000_3500.
    // 40-bit IPA, 4K: 3 levels (IPA-4 = 36 bits / 9 per level) -> SL0 = 1 (0x40);
    // T0SZ = 24 (0x18); PS = 2 (0x2_0000); HA (0x20_0000); 16-bit VMID (VS, 0x8_0000).
    assert_eq!(c.get_vtcr(mmfr0(2), MMFR1_VMID16, 40), 0x802a_3558);
    // 48-bit, 8-bit VMID: 4 levels -> SL0 = 2 (0x80); T0SZ = 16; PS = 5.
    assert_eq!(c.get_vtcr(mmfr0(5), 0, 48), 0x8025_3590);
    // PARange 6 (52 bits) is capped to 5 without LPA2 on 4K.
    assert_eq!(c.get_vtcr(mmfr0(6), 0, 48), 0x8025_3590);
    // Ampere AC03 workaround: no HA.
    let mut ac03 = side(
        true,
        Granule::K4,
        CpuFeatures {
            ampere_ac03: true,
            ..Default::default()
        },
        PageSource::Budget,
        ForcePte::None,
    );
    assert_eq!(ac03.get_vtcr(mmfr0(5), 0, 48), 0x8005_3590);
    // LPA2: DS (bit 32) and PARange 6 allowed.
    let mut lpa2 = side(
        true,
        Granule::K4,
        CpuFeatures {
            lpa2: true,
            ..Default::default()
        },
        PageSource::Budget,
        ForcePte::None,
    );
    assert_eq!(lpa2.get_vtcr(mmfr0(6), 0, 48), 0x1_8026_3590);
    // 64K, 52-bit PA configured: TG0 = 1 (0x4000); 48-4 = 44 bits / 13 = 3 levels
    // -> SL0 = 3 - 1 = 2 (0x80); T0SZ = 12; PS = 6.
    let mut k64 = side(
        true,
        Granule::K64,
        CpuFeatures::default(),
        PageSource::Budget,
        ForcePte::None,
    );
    assert_eq!(k64.get_vtcr(mmfr0(6), MMFR1_VMID16, 52), 0x802e_758c);
}

#[test]
fn pgd_size_follows_concatenation() {
    let mut c = side(
        true,
        Granule::K4,
        CpuFeatures::default(),
        PageSource::Budget,
        ForcePte::None,
    );
    // 40-bit IPA from level 1: each level-1 table covers 2^39, so 2 pages.
    assert_eq!(c.stage2_pgd_size(0x802a_3558), 2 * K4);
    // 48-bit from level 0: one page.
    assert_eq!(c.stage2_pgd_size(0x8025_3590), K4);
}

/// Expected trace of mapping a 2 MiB RWX block at IPA 2 MiB into an empty
/// 40-bit table: a level-1 table from the memcache, then the block.
fn block_map_trace(block: u64) -> Vec<Event> {
    let l1e = BASE; // pgd[0]
    let l2 = BASE + 2 * K4; // first page after the 2-page PGD
    let l2e = l2 + 8; // index 1 of the level-2 table
    vec![
        Event::ZallocPage {
            source: AllocSource::Memcache,
            pa: Some(l2),
        },
        // break-before-make on an invalid entry: lock it, no TLBI, nothing to put
        Event::Store {
            pa: l1e,
            old: 0,
            val: 1 << 10,
            kind: StoreKind::WriteOnce,
        },
        Event::GetPage {
            page: BASE,
            count: 2,
        },
        Event::Store {
            pa: l1e,
            old: 1 << 10,
            val: l2 | 0b11,
            kind: StoreKind::Release,
        },
        Event::Store {
            pa: l2e,
            old: 0,
            val: 1 << 10,
            kind: StoreKind::WriteOnce,
        },
        Event::DcacheCleanInvalPoc {
            pa: 0x8000_0000,
            size: 0x20_0000,
        },
        Event::IcacheInvalPou {
            pa: 0x8000_0000,
            size: 0x20_0000,
        },
        Event::GetPage { page: l2, count: 2 },
        Event::Store {
            pa: l2e,
            old: 1 << 10,
            val: block,
            kind: StoreKind::Release,
        },
        Event::Dsb(Barrier::IshSt),
    ]
}

#[test]
fn stage2_2m_block_rwx_without_fwb() {
    let mut c = stage2_40bit(CpuFeatures::default(), ForcePte::None);
    let out = c.stage2_map(0x20_0000, 0x20_0000, 0x8000_0000, R | W | X, mc(4), 0);
    assert_eq!(out.ret, 0);
    // Block: OA 0x8000_0000 | AF (1<<10) | SH=inner (3<<8) | S2AP=RW (0b11<<6)
    // | MemAttr=0b1111 normal WB (0xf<<2) | block (0b01). XN clear for X.
    let block = 0x8000_0000 | 0x400 | 0x300 | 0xc0 | 0x3c | 0b01;
    assert_eq!(out.trace, block_map_trace(block));
    assert_eq!(c.get_leaf(0x2f_f000).ret, (0, block, 2));
    assert_eq!(c.memcache_left(), 3);
    assert_refcounts_match_entries(&c);
}

#[test]
fn stage2_2m_block_rwx_with_fwb() {
    let mut c = stage2_40bit(
        CpuFeatures {
            stage2_fwb: true,
            ..Default::default()
        },
        ForcePte::None,
    );
    let out = c.stage2_map(0x20_0000, 0x20_0000, 0x8000_0000, R | W | X, mc(4), 0);
    assert_eq!(out.ret, 0);
    // FWB: MemAttr = 0b0110 (normal, forced write-back) = 0x6<<2.
    let block = 0x8000_0000 | 0x400 | 0x300 | 0xc0 | 0x18 | 0b01;
    assert_eq!(out.trace, block_map_trace(block));
}

#[test]
fn stage2_device_mapping_attributes() {
    let mut c = stage2_40bit(CpuFeatures::default(), ForcePte::None);
    assert_eq!(
        c.stage2_map(0x1000, K4, 0x9000_0000, R | W | DEVICE, mc(4), 0)
            .ret,
        0
    );
    // Page: XN (1<<54) | AF | SH inner | S2AP RW | MemAttr 0b0001 device-nGnRE | page (0b11).
    let page = (1 << 54) | 0x9000_0000 | 0x400 | 0x300 | 0xc0 | (0x1 << 2) | 0b11;
    assert_eq!(c.get_leaf(0x1000).ret, (0, page, 3));
    // Executable device memory is refused.
    assert_eq!(
        c.stage2_map(0x2000, K4, 0x9000_0000, R | X | DEVICE, mc(4), 0)
            .ret,
        -22
    );
}

#[test]
fn force_pte_cb_true_gives_pages_only() {
    let mut c = stage2_40bit(
        CpuFeatures::default(),
        ForcePte::Arbitrary {
            pattern: !0,
            calls: 0,
        },
    );
    let out = c.stage2_map(0x20_0000, 0x20_0000, 0x8000_0000, R | W | X, mc(4), 0);
    assert_eq!(out.ret, 0);
    assert_eq!(
        out.trace[0],
        Event::ForcePteCb {
            addr: 0x20_0000,
            end: 0x40_0000,
            prot: R | W | X,
            answer: true
        }
    );
    // Level-1 table, level-2 table, level-3 table: two pages taken.
    assert_eq!(c.memcache_left(), 2);
    for i in 0..512u64 {
        let (r, pte, level) = c.get_leaf(0x20_0000 + i * K4).ret;
        assert_eq!((r, level), (0, 3));
        assert_eq!(pte & 0b11, 0b11, "page descriptor");
        assert_eq!(pte & 0x0000_ffff_ffff_f000, 0x8000_0000 + i * K4);
    }
    assert_refcounts_match_entries(&c);
}

/// C buffers its events (runtime.h) and the harness drains the buffer when
/// it is full, at callbacks and at the end of the call: a map of 512 pages
/// (about 2500 events, several buffers' worth) still arrives complete and in
/// program order, the buffered get_page interleaved with the stores.
#[test]
fn events_beyond_one_buffer_arrive_in_program_order() {
    let mut c = stage2_40bit(
        CpuFeatures::default(),
        ForcePte::Arbitrary {
            pattern: !0,
            calls: 0,
        },
    );
    let out = c.stage2_map(0x20_0000, 0x20_0000, 0x8000_0000, R | W, mc(4), 0);
    assert_eq!(out.ret, 0);
    assert!(out.trace.len() > 2 * ffi::KPD_EV_CAP as usize);
    // The level-3 table is the third page taken: PGD (2 pages), level 2, level 3.
    let l3 = BASE + 3 * K4;
    let mut next_slot = 0u64;
    let mut next_count = 2u32;
    for e in &out.trace {
        match *e {
            // Each slot: locked (WRITE_ONCE), then the page descriptor
            // (release), slots in ascending order.
            Event::Store {
                pa,
                val,
                kind: StoreKind::Release,
                ..
            } if (l3..l3 + K4).contains(&pa) => {
                assert_eq!(pa, l3 + 8 * next_slot, "page descriptors in slot order");
                assert_eq!(val & 0x0000_ffff_ffff_f000, 0x8000_0000 + next_slot * K4);
                assert_eq!(val & 0b11, 0b11);
                next_slot += 1;
            }
            // One reference per new entry, taken before the entry is published.
            Event::GetPage { page, count } if page == l3 => {
                assert_eq!(count, next_count);
                assert_eq!(u64::from(count), next_slot + 2);
                next_count += 1;
            }
            _ => {}
        }
    }
    assert_eq!((next_slot, next_count), (512, 514));
    assert_refcounts_match_entries(&c);
}

#[test]
fn set_owner_annotates_invalid_entries_and_counts_them() {
    let mut c = stage2_40bit(CpuFeatures::default(), ForcePte::None);
    assert_eq!(c.stage2_set_owner(0x3000, 2 * K4, mc(4), 1).ret, 0);
    // Owner id in bits [9:2] of an invalid descriptor: 1 << 2.
    assert_eq!(c.get_leaf(0x3000).ret, (0, 0x4, 3));
    assert_eq!(c.get_leaf(0x4000).ret, (0, 0x4, 3));
    assert_eq!(c.get_leaf(0x5000).ret, (0, 0, 3));
    // The level-3 table holds two counted entries: refcount 3.
    let l3 = BASE + 3 * K4;
    assert_eq!(c.arena().refcount(c.arena().page_index(l3).unwrap()), 3);
    assert_refcounts_match_entries(&c);
    // Owner ids above KVM_MAX_OWNER_ID (1) are rejected.
    assert_eq!(c.stage2_set_owner(0x3000, K4, mc(4), 2).ret, -22);
}

#[test]
fn unmap_frees_intermediate_tables() {
    let mut c = stage2_40bit(CpuFeatures::default(), ForcePte::None);
    assert_eq!(
        c.stage2_map(0x1000, 3 * K4, 0x8000_1000, R | W, mc(4), 0)
            .ret,
        0
    );
    assert_eq!(c.arena().live_pages(), 4); // 2 PGD pages + L2 + L3
    assert_refcounts_match_entries(&c);
    assert_eq!(c.stage2_unmap(0x1000, K4).ret, 0);
    assert_refcounts_match_entries(&c);
    assert_eq!(c.stage2_unmap(0, 0x20_0000).ret, 0);
    // Only the PGD is left, and it has no entries.
    assert_eq!(c.arena().live_pages(), 2);
    assert_refcounts_match_entries(&c);
    c.stage2_destroy();
    assert!(c.arena().is_empty());
}

#[test]
fn hyp_map_attributes() {
    let mut c = side(
        true,
        Granule::K4,
        CpuFeatures::default(),
        PageSource::Pool,
        ForcePte::None,
    );
    assert_eq!(c.hyp_init(48).ret, 0);
    assert_eq!(c.geometry(), (48, 0));
    assert_eq!(c.hyp_map(0x1000, K4, 0x8000_1000, R | W).ret, 0);
    // Page: XN (bit 54) | AF | SH inner (3<<8) | AP=0b01 EL2 RW (1<<6) | AttrIndx 0 | 0b11.
    let rw = (1 << 54) | 0x8000_1000 | 0x400 | 0x300 | 0x40 | 0b11;
    assert_eq!(c.get_leaf(0x1000).ret, (0, rw, 3));
    assert_eq!(c.hyp_map(0x2000, K4, 0x8000_2000, R | X).ret, 0);
    // Executable read-only: AP=0b11 (RO), no XN.
    assert_eq!(
        c.get_leaf(0x2000).ret,
        (0, 0x8000_2000 | 0x400 | 0x300 | 0xc0 | 0b11, 3)
    );
    assert_eq!(c.hyp_map(0x3000, K4, 0x9000_0000, R | W | DEVICE).ret, 0);
    // Device: AttrIndx = MT_DEVICE_nGnRE (4) in bits [4:2].
    assert_eq!(
        c.get_leaf(0x3000).ret,
        (
            0,
            (1 << 54) | 0x9000_0000 | 0x400 | 0x300 | 0x40 | (4 << 2) | 0b11,
            3
        )
    );
    // W+X is refused, as is no-R.
    assert_eq!(c.hyp_map(0x4000, K4, 0x8000_4000, R | W | X).ret, -22);
    assert_eq!(c.hyp_map(0x4000, K4, 0x8000_4000, W).ret, -22);
    assert_eq!(c.hyp_unmap(0x1000, 3 * K4).ret, 3 * K4);
    c.hyp_destroy();
    assert!(c.arena().is_empty());
}

#[test]
fn hyp_map_hvhe_and_bti() {
    let f = CpuFeatures {
        hvhe: true,
        bti_kernel: true,
        ..Default::default()
    };
    let mut c = side(true, Granule::K4, f, PageSource::Pool, ForcePte::None);
    assert_eq!(c.hyp_init(48).ret, 0);
    assert_eq!(c.hyp_map(0x1000, K4, 0x8000_1000, R | W).ret, 0);
    // HVHE uses the EL1&0-style AP: RW = 0b00.
    assert_eq!(
        c.get_leaf(0x1000).ret.1,
        (1 << 54) | 0x8000_1000 | 0x400 | 0x300 | 0b11
    );
    assert_eq!(c.hyp_map(0x2000, K4, 0x8000_2000, R | X).ret, 0);
    // RO = 0b10; BTI guarded page (GP, bit 50) for executable mappings.
    assert_eq!(
        c.get_leaf(0x2000).ret.1,
        (1 << 50) | 0x8000_2000 | 0x400 | 0x300 | 0x80 | 0b11
    );
}

#[test]
fn shared_walk_refused_in_hyp_context_allowed_in_kernel() {
    for (nvhe, want) in [(true, -1), (false, 0)] {
        let mut c = side(
            nvhe,
            Granule::K4,
            CpuFeatures::default(),
            PageSource::Budget,
            ForcePte::None,
        );
        let vtcr = c.get_vtcr(mmfr0(2), 0, 40);
        assert_eq!(c.stage2_init(vtcr, 0).ret, 0);
        let mut visits = 0;
        let out = c.walk(0, 0x1000, WALK_LEAF | WALK_SHARED, &mut |_| {
            visits += 1;
            0
        });
        assert_eq!(out.ret, want, "nvhe={nvhe}");
        if nvhe {
            assert_eq!(visits, 0);
            assert!(out.trace.is_empty());
        } else {
            // The level-1 entry is invalid: one leaf visit, inside an RCU section.
            assert_eq!(visits, 1);
            assert_eq!(
                out.trace,
                vec![Event::Rcu { lock: true }, Event::Rcu { lock: false }]
            );
        }
    }
}

#[test]
fn walker_visit_order() {
    let mut c = stage2_40bit(CpuFeatures::default(), ForcePte::None);
    assert_eq!(c.stage2_map(0x1000, K4, 0x8000_1000, R, mc(4), 0).ret, 0);
    let mut seen = Vec::new();
    let out = c.walk(
        0x1000,
        K4,
        WALK_LEAF | WALK_TABLE_PRE | WALK_TABLE_POST,
        &mut |v| {
            seen.push((v.kind, v.level));
            0
        },
    );
    assert_eq!(out.ret, 0);
    let (pre, leaf, post) = (WALK_TABLE_PRE, WALK_LEAF, WALK_TABLE_POST);
    assert_eq!(
        seen,
        vec![(pre, 1), (pre, 2), (leaf, 3), (post, 2), (post, 1)]
    );
}

#[test]
fn warn_is_recorded_and_execution_goes_on() {
    let mut c = side(
        true,
        Granule::K4,
        CpuFeatures::default(),
        PageSource::Pool,
        ForcePte::None,
    );
    assert_eq!(c.hyp_init(48).ret, 0);
    assert_eq!(c.hyp_map(0x1000, K4, 0x8000_1000, R | W).ret, 0);
    // Remapping a live page with other permissions warns (changed attributes,
    // then "cannot descend below the last level") and fails.
    let out = c.hyp_map(0x1000, K4, 0x8000_1000, R);
    assert_eq!(out.ret, -22);
    let warns = out
        .trace
        .iter()
        .filter(|e| matches!(e, Event::Warn { .. }))
        .count();
    assert_eq!(warns, 2);
    // The call's marks say so: an alarm at the first WARN, and no store
    // (nothing changed).
    let first_warn = out
        .trace
        .iter()
        .position(|e| matches!(e, Event::Warn { .. }));
    assert!(first_warn.is_some());
    assert_eq!(
        out.marks,
        Marks {
            changes_memory: false,
            alarm: first_warn.map(|at| crate::events::Alarm {
                at,
                after_change: false
            }),
        }
    );
    // The side keeps working: a new page's map stores its descriptor and
    // warns of nothing.
    let ok = c.hyp_map(0x2000, K4, 0x8000_2000, R);
    assert_eq!(ok.ret, 0);
    assert_eq!(
        ok.marks,
        Marks {
            changes_memory: true,
            alarm: None,
        }
    );
}

/// The marks the C side notes while it records each step are those of the
/// step's whole trace, read afterwards, on every stream the repository
/// holds: the seed scenarios of every target, the known divergences (which
/// warn), the regressions and the bench inputs. A step whose marks missed
/// an alarm would skip the search for its fatal event and misuse.
#[test]
fn the_marks_noted_while_recording_are_those_of_the_whole_trace() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut dirs = vec![
        root.join("tests/known"),
        root.join("tests/regressions"),
        root.join("bench/inputs"),
    ];
    for t in std::fs::read_dir(root.join("fuzz/scenarios")).unwrap() {
        dirs.push(t.unwrap().path());
    }
    let (mut steps, mut alarms, mut changes) = (0, 0, 0);
    for dir in dirs {
        for f in std::fs::read_dir(&dir).unwrap() {
            let path = f.unwrap().path();
            if path.extension().is_none_or(|e| e != "txt") {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            let stream =
                crate::opstream::parse(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let mut c = CSide::for_stream(&stream.config);
            let mut check = |o: Outcome, what: String| {
                let want = Marks::of(&o.trace);
                assert_eq!(o.marks, Some(want), "{}: {what}", path.display());
                steps += 1;
                alarms += usize::from(want.alarm.is_some());
                changes += usize::from(want.changes_memory);
            };
            Side::init(&mut c);
            if c.root().is_none() {
                continue;
            }
            for (i, op) in stream.ops.iter().enumerate() {
                let race = stream.race(i);
                if crate::executor::precondition(op, race, &stream.config).is_ok() {
                    check(c.apply_raced(op, race), format!("op {i} {op:?}"));
                }
            }
            check(Side::destroy(&mut c), "destroy".into());
        }
    }
    // The streams hold steps of every kind the marks tell apart.
    assert!(steps > 1000 && alarms > 0 && changes > 0 && changes < steps);
    println!("{steps} steps, {alarms} with an alarm, {changes} changing memory");
}

#[test]
fn enomem_paths() {
    // NULL memcache for a stage-2 map that needs a table.
    let mut c = stage2_40bit(CpuFeatures::default(), ForcePte::None);
    assert_eq!(c.stage2_map(0x1000, K4, 0x8000_1000, R, None, 0).ret, -12);
    // Empty memcache.
    assert_eq!(c.stage2_map(0x1000, K4, 0x8000_1000, R, mc(0), 0).ret, -12);
    // Exhausted arena: the hyp PGD takes the only page allowed.
    let arena = Arena::new(Geometry::new(K4, 16), PageSource::Pool, Some(1));
    let mut h = CSide::new(
        Build::of(KernelLine::V6_12, true, Granule::K4),
        CpuFeatures::default(),
        arena,
        ForcePte::None,
    );
    assert_eq!(h.hyp_init(48).ret, 0);
    assert_eq!(h.hyp_map(0x1000, K4, 0x8000_1000, R).ret, -12);
    h.hyp_destroy();
    assert!(h.arena().is_empty());
}

#[test]
fn every_build_runs_and_destroys_cleanly() {
    for line in KernelLine::ALL {
        let rw = line.prot().rw();
        for nvhe in [true, false] {
            for granule in [Granule::K4, Granule::K16, Granule::K64] {
                let mut c = side_of(line, nvhe, granule);
                assert_eq!(c.build(), Build::of(line, nvhe, granule));
                let vtcr = c.get_vtcr(mmfr0(2), 0, 40);
                assert_eq!(c.stage2_init(vtcr, 0).ret, 0);
                let page = granule.page_size();
                assert_eq!(c.stage2_map(page, page, 0x8000_0000, rw, mc(8), 0).ret, 0);
                let (r, pte, level) = c.get_leaf(page).ret;
                assert_eq!((r, level), (0, 3));
                assert_eq!(pte & !(page - 1) & 0x0000_ffff_ffff_ffff, 0x8000_0000);
                c.stage2_destroy();
                assert!(c.arena().is_empty(), "{line:?} {nvhe} {granule:?}");
            }
        }
    }
}

/// The constants the op model spells out for each line (prot layout, walk
/// flags, stage-2 flags) are the kernel header's own values.
#[test]
fn model_constants_match_each_lines_header() {
    use crate::opstream::{S2Flags, walk_flags};
    for line in KernelLine::ALL {
        let c = side_of(line, true, Granule::K4);
        let k = c.kernel_consts();
        let l = line.prot();
        assert_eq!(
            (
                k.prot_x,
                k.prot_w,
                k.prot_r,
                k.prot_device,
                k.prot_normal_nc
            ),
            (l.x(), l.w, l.r, l.device, l.normal_nc),
            "{line:?}"
        );
        if line.is_v7() {
            assert_eq!((k.prot_px, k.prot_ux), (l.px, l.ux));
        }
        assert_eq!(
            [
                k.walk_leaf,
                k.walk_table_pre,
                k.walk_table_post,
                k.walk_shared,
                k.walk_bit4,
                k.walk_skip_bbm_tlbi,
                k.walk_skip_cmo
            ],
            walk_flags::NAMES.map(|(b, _)| u32::from(b))
        );
        let only = |f: S2Flags| f.bits(line);
        let idmap = only(S2Flags {
            idmap: true,
            ..S2Flags::default()
        });
        assert_eq!(idmap, k.s2_idmap);
        if line.is_v7() {
            let as_s1 = S2Flags {
                as_s1: true,
                ..S2Flags::default()
            };
            assert_eq!(only(as_s1), k.s2_as_s1);
        } else {
            let nofwb = S2Flags {
                nofwb: true,
                ..S2Flags::default()
            };
            assert_eq!(only(nofwb), k.s2_nofwb);
        }
        assert_eq!(c.generation(), if line.is_v7() { 701 } else { 612 });
    }
}

fn side_of(line: KernelLine, nvhe: bool, granule: Granule) -> CSide {
    let arena = Arena::new(
        Geometry::new(granule.page_size(), 256),
        PageSource::Budget,
        None,
    );
    CSide::new(
        Build::of(line, nvhe, granule),
        CpuFeatures::default(),
        arena,
        ForcePte::None,
    )
}

/// 7.3 on the C side, with expectations from the architecture and the 7.x
/// kvm_pgtable.h contract.
mod v7_3 {
    use super::*;

    // 7.x prot layout: PX bit 0, UX bit 1, W bit 2, R bit 3, DEVICE bit 4.
    const PX: u64 = 1 << 0;
    const UX: u64 = 1 << 1;
    const W7: u64 = 1 << 2;
    const R7: u64 = 1 << 3;

    fn stage2(features: CpuFeatures, flags: u32) -> CSide {
        let arena = Arena::new(Geometry::new(K4, 256), PageSource::Budget, None);
        let mut c = CSide::new(
            Build::of(KernelLine::V7_3, true, Granule::K4),
            features,
            arena,
            ForcePte::None,
        );
        let vtcr = c.get_vtcr(mmfr0(2), MMFR1_VMID16, 40);
        assert_eq!(c.stage2_init(vtcr, flags).ret, 0);
        c
    }

    fn leaf(c: &mut CSide, ipa: u64) -> (u64, i8) {
        let (ret, pte, level) = c.get_leaf(ipa).ret;
        assert_eq!(ret, 0);
        (pte, level)
    }

    #[test]
    fn stage2_xn_is_two_bits_with_xnx() {
        let xnx = CpuFeatures {
            xnx: true,
            ..CpuFeatures::default()
        };
        // XN[54:53] per FEAT_XNX: 0b00 both may execute, 0b01 EL0 only
        // (UX), 0b10 neither, 0b11 EL1 only (PX).
        for (prot, xn) in [(PX | UX, 0b00u64), (UX, 0b01), (0, 0b10), (PX, 0b11)] {
            let mut c = stage2(xnx, 0);
            assert_eq!(c.stage2_map(0, K4, 0x8000_0000, R7 | prot, mc(4), 0).ret, 0);
            let (pte, level) = leaf(&mut c, 0);
            assert_eq!(level, 3);
            assert_eq!((pte >> 53) & 3, xn, "prot {prot:#x}");
            assert_eq!(c.stage2_pte_prot(pte) & (PX | UX), prot);
            c.stage2_destroy();
        }
        // Without FEAT_XNX, PX and UX must agree.
        let mut c = stage2(CpuFeatures::default(), 0);
        assert_eq!(c.stage2_map(0, K4, 0x8000_0000, R7 | PX, mc(4), 0).ret, -22);
        assert_eq!(
            c.stage2_map(0, K4, 0x8000_0000, R7 | PX | UX, mc(4), 0).ret,
            0
        );
        c.stage2_destroy();
    }

    #[test]
    fn annotate_stores_the_type_in_bits_63_60_and_counts_it() {
        let mut c = stage2(CpuFeatures::default(), 0);
        // Host donation (type 2) to the hypervisor (owner 1 in bits [3:1]).
        let annot = 1 << 1;
        assert_eq!(c.stage2_annotate(0x1000, K4, mc(4), 2, annot).ret, 0);
        let (pte, level) = leaf(&mut c, 0x1000);
        assert_eq!((pte, level), (2 << 60 | annot, 3));
        // The invalid annotated entry keeps its table page alive.
        assert_refcounts_match_entries(&c);
        // Type 0, LOCKED (1), bit 0 or bits [63:60] in the annotation: -EINVAL.
        assert_eq!(c.stage2_annotate(0x2000, K4, mc(4), 0, 0).ret, -22);
        assert_eq!(c.stage2_annotate(0x2000, K4, mc(4), 1, 0).ret, -22);
        assert_eq!(c.stage2_annotate(0x2000, K4, mc(4), 3, 1).ret, -22);
        assert_eq!(c.stage2_annotate(0x2000, K4, mc(4), 3, 1 << 60).ret, -22);
        c.stage2_destroy();
        assert!(c.arena().is_empty());
    }

    #[test]
    fn break_before_make_locks_with_type_1() {
        let mut c = stage2(CpuFeatures::default(), 0);
        assert_eq!(c.stage2_map(0, K4, 0x8000_0000, R7, mc(4), 0).ret, 0);
        let t = c.stage2_map(0, K4, 0x8000_0000, R7 | W7, mc(4), 0).trace;
        // Only permissions differ: the map path leaves it (-EAGAIN swallowed).
        assert!(!t.iter().any(|e| matches!(e, Event::Store { .. })), "{t:?}");
        let t = c.stage2_map(0, K4, 0x8000_1000, R7, mc(4), 0).trace;
        let locked = t.iter().find_map(|e| match e {
            Event::Store {
                val,
                kind: StoreKind::WriteOnce,
                ..
            } => Some(*val),
            _ => None,
        });
        assert_eq!(locked, Some(1 << 60));
        c.stage2_destroy();
    }

    #[test]
    fn vtcr_fields_are_masked() {
        let mut c = side_of(KernelLine::V7_3, true, Granule::K4);
        // 40-bit IPA as in 6.12 (see vtcr_values_from_the_architecture).
        assert_eq!(c.get_vtcr(mmfr0(2), MMFR1_VMID16, 40), 0x802a_3558);
        // A phys_shift above 64: 64 - 65 is masked into T0SZ[5:0] (0x3f),
        // where 6.12 lets it spill into the fields above.
        let v = c.get_vtcr(mmfr0(2), 0, 65);
        assert_eq!(v & 0x3f, 0x3f);
        let mut old = side_of(KernelLine::V6_12, true, Granule::K4);
        assert_ne!(old.get_vtcr(mmfr0(2), 0, 65) & !0x3f, v & !0x3f);
    }

    #[test]
    fn hyp_tlbi_operand_is_the_architectural_one() {
        let arena = Arena::new(Geometry::new(K4, 64), PageSource::Pool, None);
        let mut c = CSide::new(
            Build::of(KernelLine::V7_3, true, Granule::K4),
            CpuFeatures::default(),
            arena,
            ForcePte::None,
        );
        assert_eq!(c.hyp_init(48).ret, 0);
        assert_eq!(c.hyp_map(0x20_3000, K4, 0x8000_0000, R7).ret, 0);
        let t = c.hyp_unmap(0x20_3000, K4).trace;
        // TLBI VALE2IS Xt: VA[55:12] in bits [43:0] (0x203), level hint 3.
        assert!(
            t.contains(&Event::TlbiHyp {
                op: crate::events::TlbiHypOp::Vale2is,
                operand: 0x203,
                level: 3
            }),
            "{t:?}"
        );
        c.hyp_destroy();
    }

    #[test]
    fn hvhe_hyp_mappings_set_pxn_and_uxn() {
        let arena = Arena::new(Geometry::new(K4, 64), PageSource::Pool, None);
        let hvhe = CpuFeatures {
            hvhe: true,
            ..CpuFeatures::default()
        };
        let mut c = CSide::new(
            Build::of(KernelLine::V7_3, true, Granule::K4),
            hvhe,
            arena,
            ForcePte::None,
        );
        assert_eq!(c.hyp_init(48).ret, 0);
        // R|PX under hVHE: UXN (54) set, PXN (53) clear.
        assert_eq!(c.hyp_map(0x1000, K4, 0x8000_0000, R7 | PX).ret, 0);
        let (pte, _) = leaf(&mut c, 0x1000);
        assert_eq!((pte >> 53) & 3, 0b10);
        assert_eq!(c.hyp_pte_prot(pte) & (PX | UX), PX);
        c.hyp_destroy();
    }
}
