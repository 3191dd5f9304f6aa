// SPDX-License-Identifier: GPL-2.0-only
//! Tests for the op-stream module. Expected values are worked out by hand
//! from the format description, never captured from a run.

use super::*;

/// xorshift64* PRNG (no dependencies).
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn bytes(&mut self, max_len: usize) -> Vec<u8> {
        let len = (self.next() % (max_len as u64 + 1)) as usize;
        (0..len).map(|_| self.next() as u8).collect()
    }
}

fn random_inputs(seed: u64, n: usize, max_len: usize) -> Vec<Vec<u8>> {
    let mut rng = Rng::new(seed);
    (0..n).map(|_| rng.bytes(max_len)).collect()
}

/// A hand-written stage-2 stream using every stage-2 op and odd values.
fn sample_stage2() -> OpStream {
    let mut config = Config::new(Stage::Stage2);
    config.context = Context::Kernel;
    config.granule = Granule::K16;
    config.ia_bits = 47;
    // 16K's first level: 0 (it has no level -1).
    config.start_level = Some(0);
    config.s2_flags = S2Flags {
        idmap: true,
        nofwb: true,
        as_s1: false,
    };
    config.features = Features {
        lpa2: true,
        fwb: false,
        tlb_range: true,
        bti: false,
        hvhe: true,
        ampere_ac03: true,
        xnx: false,
    };
    config.mmfr0_parange = 6;
    config.vmid16 = true;
    config.arena_pages = 256;
    config.alloc_fail_after = Some(u32::MAX);
    config.force_pte = ForcePtePolicy::Host {
        regions: vec![
            Region {
                start: 0,
                size: 0x4000_0000,
                kind: RegionKind::Memory,
            },
            Region {
                start: 0x4000_0000,
                size: 0x1000_0000,
                kind: RegionKind::Mmio,
            },
            Region {
                start: u64::MAX,
                size: u64::MAX,
                kind: RegionKind::Memory,
            },
        ],
    };
    let ops = vec![
        Op::S2Map {
            addr: 0x20_0000,
            size: 0x20_0000,
            phys: 0x20_0000,
            prot: prot::RWX,
            mc: Some(8),
            flags: 0,
        },
        Op::S2Map {
            addr: u64::MAX,
            size: u64::MAX,
            phys: 1,
            prot: prot::RW | prot::DEVICE | prot::SW3 | (1 << 40),
            mc: None,
            flags: 0xff,
        },
        Op::S2SetOwner {
            addr: 0x40_0000,
            size: 0x1000,
            mc: Some(4),
            owner_id: 255,
        },
        Op::S2Unmap { addr: 0, size: 0 },
        Op::S2Wrprotect { addr: 1, size: 2 },
        Op::S2Mkyoung { addr: 0x1234 },
        Op::S2TestClearYoung {
            addr: 0x1000,
            size: 0x3000,
            mkold: true,
        },
        Op::S2TestClearYoung {
            addr: 0x1000,
            size: 0x3000,
            mkold: false,
        },
        Op::S2RelaxPerms {
            addr: 0x5000,
            prot: 0,
        },
        Op::S2Flush {
            addr: 0x6000,
            size: 1 << 47,
        },
        Op::S2Split {
            addr: 0,
            size: 1 << 30,
            nobjs: MEMCACHE_MAX,
        },
        Op::S2CreateUnlinked {
            phys: 0x8000_0000,
            level: -128,
            prot: prot::R | prot::NORMAL_NC,
            mc: Some(0),
            force_pte: true,
        },
        Op::S2CreateUnlinked {
            phys: 0,
            level: 2,
            prot: prot::X,
            mc: None,
            force_pte: false,
        },
        Op::S2FreeUnlinked { index: 200 },
        Op::Walk {
            addr: 0,
            size: 0x40_0000,
            flags: walk_flags::LEAF | walk_flags::TABLE_POST,
            script: VisitScript::FailAt {
                n: 3,
                errno: errno::EAGAIN,
            },
        },
        Op::Walk {
            addr: 0,
            size: 0,
            flags: 0x80,
            script: VisitScript::FailAt { n: 255, errno: -5 },
        },
        Op::Walk {
            addr: 7,
            size: 9,
            flags: 0,
            script: VisitScript::Ok,
        },
        Op::GetLeaf { addr: u64::MAX },
        Op::PteProt {
            pte: 0x0060_0000_4000_0743,
        },
        Op::GetVtcr {
            mmfr0: 5,
            mmfr1: 0x20,
            phys_shift: 40,
        },
        Op::PgdSize { vtcr: 0x8000_3558 },
    ];
    OpStream::new(config, ops)
}

/// A hand-written hyp stream using every hyp-valid op.
fn sample_hyp() -> OpStream {
    let mut config = Config::new(Stage::Hyp);
    config.granule = Granule::K64;
    config.ia_bits = 25;
    config.force_pte = ForcePtePolicy::Arbitrary {
        pattern: 0xdead_beef_0000_0001,
    };
    config.arena_pages = 64;
    config.alloc_fail_after = Some(0);
    let ops = vec![
        Op::HypMap {
            addr: 0x1_0000,
            size: 0x1_0000,
            phys: 0x2_0000,
            prot: prot::RX,
        },
        Op::HypUnmap {
            addr: 0x1_0000,
            size: 0x1_0000,
        },
        Op::Walk {
            addr: 0,
            size: 1 << 25,
            flags: walk_flags::ALL,
            script: VisitScript::FailAt {
                n: 0,
                errno: errno::E2BIG,
            },
        },
        Op::GetLeaf { addr: 0x1_0000 },
        Op::PteProt { pte: 0 },
        Op::GetVtcr {
            mmfr0: u64::MAX,
            mmfr1: 0,
            phys_shift: 0,
        },
        Op::PgdSize { vtcr: 0 },
    ];
    OpStream::new(config, ops)
}

const ALLOWED_HOST: [OpKind; 5] = [
    OpKind::S2Map,
    OpKind::S2SetOwner,
    OpKind::S2Annotate,
    OpKind::S2Unmap,
    OpKind::GetLeaf,
];

// ------------------------------------------------------------ totality

#[test]
fn decode_is_total_and_valid() {
    let mut inputs = random_inputs(1, 3000, 400);
    for len in 0..80 {
        inputs.push(vec![0; len]);
        inputs.push(vec![0xff; len]);
        inputs.push(vec![0xfe; len]);
        inputs.push((0..len).map(|i| i as u8).collect());
    }
    for bytes in &inputs {
        for p in Profile::ALL {
            let s = decode(bytes, p);
            assert!(s.ops.len() <= MAX_OPS);
            if let Err(e) = s.validate() {
                panic!("decoded stream invalid ({e}) for {p:?} {bytes:?}");
            }
            // Printing must not panic either, and must parse back.
            let t = print(&s);
            assert_eq!(parse(&t).as_ref(), Ok(&s), "{t}");
        }
    }
}

#[test]
fn empty_input_decodes_by_hand() {
    // All bytes read as 0: stage hyp, nvhe, 4K, no features/flags,
    // ia_bits mode 0 -> IA_MENU_HYP[0] = 39, start_level None, parange 0,
    // vmid16 no, arena mode 0 -> 64, fail_after None, force_pte none.
    let mut want = Config::new(Stage::Hyp);
    want.ia_bits = 39;
    want.mmfr0_parange = 0;
    want.arena_pages = 64;
    assert_eq!(
        decode(&[], Profile::Any),
        OpStream::new(want.clone(), vec![])
    );
    let mut s2 = want;
    s2.stage = Stage::Stage2;
    s2.ia_bits = 40; // IA_MENU_S2[0]
    assert_eq!(decode(&[], Profile::Stage2).config, s2);
}

#[test]
fn many_ops_capped() {
    // Config then 200 `get_leaf` ops (tag 14, addr mode 0, page 0).
    let mut bytes = encode(&OpStream::new(Config::new(Stage::Hyp), vec![]));
    for _ in 0..200 {
        bytes.extend_from_slice(&[14, 0, 0]);
    }
    let s = decode(&bytes, Profile::Any);
    assert_eq!(s.ops, vec![Op::GetLeaf { addr: 0 }; MAX_OPS]);
    // A truncated op still decodes (missing bytes are zero): tag 2 under
    // hyp is hyp_map with every field from mode 0 / zero payload.
    let mut bytes = encode(&OpStream::new(Config::new(Stage::Hyp), vec![]));
    bytes.push(2);
    let s = decode(&bytes, Profile::Any);
    // addr mode 0 -> 0, size mode 0 -> 0 pages, phys mode 0 -> identity,
    // prot mode 0 -> MENU[0] = R.
    assert_eq!(
        s.ops,
        vec![Op::HypMap {
            addr: 0,
            size: 0,
            phys: 0,
            prot: prot::R
        }]
    );
}

// ----------------------------------------------------------- exactness

#[test]
fn encode_exact_bytes() {
    let s = OpStream::new(Config::new(Stage::Hyp), vec![Op::GetLeaf { addr: 0x1000 }]);
    let want: Vec<u8> = vec![
        1,    // version
        0,    // hyp
        0,    // nvhe
        0,    // 4k
        0,    // features
        0,    // s2 flags
        0xff, // ia_bits literal
        23,   // 48 - 25
        0,    // start_level auto
        2,    // parange
        0,    // vmid16
        0xff, 0xc0, 0x01, // arena literal: 512 - 64 = 448 = 0x1c0
        0,    // fail_after none
        0,    // force_pte none
        14,   // get_leaf
        0xff, 0x00, 0x10, 0, 0, 0, 0, 0, 0, // addr literal 0x1000
    ];
    assert_eq!(encode(&s), want);
    assert_eq!(decode(&want, Profile::Any), s);
}

#[test]
fn hand_samples_round_trip_binary() {
    for s in [sample_stage2(), sample_hyp()] {
        s.validate().unwrap();
        assert_eq!(decode(&encode(&s), Profile::Any), s);
    }
    let s2 = sample_stage2();
    assert_eq!(decode(&encode(&s2), Profile::Stage2), s2);
    let h = sample_hyp();
    assert_eq!(decode(&encode(&h), Profile::Hyp), h);
}

#[test]
fn random_round_trip_binary() {
    for (i, bytes) in random_inputs(2, 3000, 600).iter().enumerate() {
        for p in Profile::ALL {
            let s = decode(bytes, p);
            let enc = encode(&s);
            assert_eq!(decode(&enc, Profile::Any), s, "input #{i} profile {p:?}");
            // Encoding is canonical: re-encoding gives the same bytes.
            assert_eq!(encode(&decode(&enc, Profile::Any)), enc);
        }
    }
}

#[test]
fn encoded_streams_survive_their_own_profile() {
    // Literal modes and canonical tags mean the same in every profile, so
    // a stream that already satisfies a profile decodes unchanged under it.
    for bytes in random_inputs(3, 500, 400) {
        for p in [
            Profile::Hyp,
            Profile::Stage2,
            Profile::Walk,
            Profile::Unlinked,
            Profile::HostStage2,
        ] {
            let s = decode(&bytes, p);
            assert_eq!(decode(&encode(&s), p), s, "{p:?}");
        }
    }
}

// -------------------------------------------------------------- profiles

#[test]
fn profiles_constrain_random_input() {
    let mut walk_flags_seen = [false; 128];
    let mut host_setowner = false;
    let mut unlinked_kinds = std::collections::HashSet::new();
    for bytes in random_inputs(4, 3000, 500) {
        assert_eq!(decode(&bytes, Profile::Hyp).config.stage, Stage::Hyp);
        assert_eq!(decode(&bytes, Profile::Stage2).config.stage, Stage::Stage2);

        let h = decode(&bytes, Profile::HostStage2);
        assert_eq!(h.config.stage, Stage::Stage2);
        assert_eq!(h.config.context, Context::Nvhe);
        assert!(h.config.s2_flags.idmap);
        match &h.config.force_pte {
            ForcePtePolicy::Host { regions } => assert!(!regions.is_empty()),
            other => panic!("host profile produced {other:?}"),
        }
        for op in &h.ops {
            assert!(ALLOWED_HOST.contains(&op.kind()), "{op:?}");
            if let Op::S2Map { addr, phys, .. } = op {
                assert_eq!(addr, phys);
            }
            if let Op::S2SetOwner { .. } | Op::S2Annotate { .. } = op {
                host_setowner = true;
            }
        }

        let w = decode(&bytes, Profile::Walk);
        for op in &w.ops {
            match op {
                Op::Walk { flags, .. } => walk_flags_seen[(*flags & 0x7f) as usize] = true,
                Op::HypMap { .. }
                | Op::S2Map { .. }
                | Op::HypUnmap { .. }
                | Op::S2Unmap { .. }
                | Op::GetLeaf { .. } => {}
                other => panic!("walk profile produced {other:?}"),
            }
        }

        let u = decode(&bytes, Profile::Unlinked);
        assert_eq!(u.config.stage, Stage::Stage2);
        for op in &u.ops {
            let k = op.kind();
            assert!(
                matches!(
                    k,
                    OpKind::S2Split
                        | OpKind::S2CreateUnlinked
                        | OpKind::S2FreeUnlinked
                        | OpKind::S2Map
                        | OpKind::S2Unmap
                        | OpKind::GetLeaf
                        | OpKind::Walk
                ),
                "{op:?}"
            );
            unlinked_kinds.insert(k);
        }
    }
    assert!(
        walk_flags_seen.iter().all(|&b| b),
        "not all 128 walk flag combinations seen"
    );
    assert!(host_setowner);
    for k in [
        OpKind::S2Split,
        OpKind::S2CreateUnlinked,
        OpKind::S2FreeUnlinked,
        OpKind::S2Map,
    ] {
        assert!(unlinked_kinds.contains(&k), "{k:?} never produced");
    }
}

#[test]
fn host_profile_prots() {
    // Host-appropriate prots dominate: RWX inside memory regions, RW
    // inside MMIO regions.
    let (mut rwx_mem, mut rw_mmio) = (0, 0);
    for bytes in random_inputs(5, 2000, 400) {
        let s = decode(&bytes, Profile::HostStage2);
        let ForcePtePolicy::Host { regions } = &s.config.force_pte else {
            unreachable!()
        };
        for op in &s.ops {
            if let Op::S2Map {
                addr, size, prot, ..
            } = *op
            {
                match regions
                    .iter()
                    .find(|g| g.contains_range(addr, size))
                    .map(|g| g.kind)
                {
                    Some(RegionKind::Memory) if prot == prot::RWX => rwx_mem += 1,
                    Some(RegionKind::Mmio) if prot == prot::RW => rw_mmio += 1,
                    _ => {}
                }
            }
        }
    }
    assert!(rwx_mem > 50 && rw_mmio > 5, "{rwx_mem} {rw_mmio}");
}

#[test]
fn profile_names() {
    for p in Profile::ALL {
        assert_eq!(Profile::from_name(p.name()), Some(p));
    }
    assert_eq!(Profile::from_name("host_stage2"), Some(Profile::HostStage2));
    assert_eq!(Profile::from_name("nope"), None);
}

#[test]
fn kind_for_tag_rules() {
    for line in KernelLine::ALL {
        for p in Profile::ALL {
            for stage in [Stage::Hyp, Stage::Stage2] {
                let mut cfg = Config::new(stage);
                cfg.kernel = line;
                for tag in 0..=255u8 {
                    let k = kind_for_tag(tag, stage, line, p);
                    assert!(k.valid_in(&cfg), "{tag} {stage:?} {line:?} {p:?} -> {k:?}");
                    assert_eq!(k, kind_for_tag(tag & 63, stage, line, p));
                }
            }
        }
        // Canonical tags are the identity under Any for valid kinds.
        for &k in OpKind::ALL {
            for stage in [Stage::Hyp, Stage::Stage2] {
                if k.valid_for(stage) && k.valid_on(line) {
                    assert_eq!(kind_for_tag(k.tag(), stage, line, Profile::Any), k);
                }
            }
        }
    }
    let any = |tag, stage, line| kind_for_tag(tag, stage, line, Profile::Any);
    use KernelLine::{V6_12, V7_3};
    // Stage swaps: tag 0 (hyp_map) under stage-2 is s2_map and tag 2 under
    // hyp is hyp_map; slot 61 is unassigned -> get_leaf; slot 60 is the
    // stage-2-only tlb_flush_vmid_range, under hyp fallback[60 % 8] = map.
    assert_eq!(any(0, Stage::Stage2, V6_12), OpKind::S2Map);
    assert_eq!(any(2, Stage::Hyp, V6_12), OpKind::HypMap);
    assert_eq!(any(4, Stage::Hyp, V6_12), OpKind::HypUnmap);
    assert_eq!(any(61, Stage::Hyp, V6_12), OpKind::GetLeaf);
    assert_eq!(any(61 + 64, Stage::Stage2, V6_12), OpKind::GetLeaf);
    assert_eq!(any(60 + 64, Stage::Stage2, V7_3), OpKind::TlbFlushVmidRange);
    assert_eq!(any(60, Stage::Hyp, V6_12), OpKind::HypMap);
    // set_owner (tag 3) under hyp: fallback[3 % 8] = get_leaf.
    assert_eq!(any(3, Stage::Hyp, V6_12), OpKind::GetLeaf);
    // A replaced op's tag means its successor on 7.3 and back on 6.12.
    assert_eq!(any(3, Stage::Stage2, V7_3), OpKind::S2Annotate);
    assert_eq!(any(56, Stage::Stage2, V6_12), OpKind::S2SetOwner);
    assert_eq!(any(6, Stage::Stage2, V7_3), OpKind::S2MkyoungFlags);
    assert_eq!(any(58, Stage::Stage2, V6_12), OpKind::S2RelaxPerms);
}

// ------------------------------------------------------------------ bias

/// Config bytes for stage-2, 4K, ia_bits 40, everything else zero.
fn s2_4k_40() -> Vec<u8> {
    // version, stage2, nvhe, 4k, features, flags, ia lit 40-32, start
    // level, parange, vmid16, arena menu[0], fail_after, force_pte.
    vec![1, 1, 0, 0, 0, 0, 0xff, 8, 0, 0, 0, 0, 0, 0]
}

#[test]
fn bias_modes_by_hand() {
    // Levels for 4K/40 bits: sizes <= 2^40 are levels 3, 2, 1, 0 (in that
    // order); level -1 (2^48) is excluded.
    let cases: Vec<(Vec<u8>, Op)> = vec![
        // get_leaf, addr mode 3 (boundary): level_from(1) = 2 (2M), k = 3.
        (vec![14, 3, 1, 3], Op::GetLeaf { addr: 0x60_0000 }),
        // Mode 0x13 % 16 = 3 as well.
        (vec![14, 0x13, 1, 3], Op::GetLeaf { addr: 0x60_0000 }),
        // mode 0: 5 pages.
        (vec![14, 0, 5], Op::GetLeaf { addr: 0x5000 }),
        // mode 6 (straddle): level_from(2) = 1 (1G), k = 1, delta(0xff) =
        // -1 % 5 = -1 page.
        (
            vec![14, 6, 2, 1, 0xff],
            Op::GetLeaf {
                addr: 0x4000_0000 - 0x1000,
            },
        ),
        // mode 8 (ia limit), sub 0: 1 << 40.
        (vec![14, 8, 0], Op::GetLeaf { addr: 1 << 40 }),
        // mode 8 sub 3: limit - 1.
        (
            vec![14, 8, 3],
            Op::GetLeaf {
                addr: (1 << 40) - 1,
            },
        ),
        // mode 9 (unaligned): 2 pages + offset (b = 0: 1 + 0).
        (vec![14, 9, 2, 0], Op::GetLeaf { addr: 0x2001 }),
        // mode 11 sub 1 with k = 0: u64::MAX.
        (vec![14, 11, 1], Op::GetLeaf { addr: u64::MAX }),
        // mode 12 (history) with no history yet: 0, then +1 page (sub 2).
        (vec![14, 12, 0, 2], Op::GetLeaf { addr: 0x1000 }),
        // s2_unmap: addr mode 0 (0 pages), size mode 4 sub 1 = 1 byte.
        (vec![4, 0, 0, 4, 1], Op::S2Unmap { addr: 0, size: 1 }),
        // s2_unmap: addr lit 0x1000, size mode 13 sub 0 k 0: -addr, so
        // addr + size wraps to exactly 0.
        (
            vec![4, 0xff, 0, 0x10, 0, 0, 0, 0, 0, 0, 13, 0],
            Op::S2Unmap {
                addr: 0x1000,
                size: 0u64.wrapping_sub(0x1000),
            },
        ),
        // s2_unmap: addr page 1, size mode 6 (blocks): level_from(1) = 2,
        // k = 1 + 1 % 4 = 2 -> 4M.
        (
            vec![4, 0, 1, 6, 1, 1],
            Op::S2Unmap {
                addr: 0x1000,
                size: 0x40_0000,
            },
        ),
        // s2_map: addr 2M boundary (mode 3, level 2, k 1), size 2M (mode 6,
        // level_from(1), k=1+0), phys identity (mode 0), prot mode 3 = RWX,
        // mc mode 2 = PTRS_PER_PTE, flags mode 0.
        (
            vec![2, 3, 1, 1, 6, 1, 0, 0, 3, 2, 0],
            Op::S2Map {
                addr: 0x20_0000,
                size: 0x20_0000,
                phys: 0x20_0000,
                prot: prot::RWX,
                mc: Some(512),
                flags: 0,
            },
        ),
        // s2_map with prot mode 4 = DEVICE|RW, mc mode 3 = 513, flags mode
        // 4 = SHARED.
        (
            vec![2, 0, 0, 0, 0, 0, 4, 3, 4],
            Op::S2Map {
                addr: 0,
                size: 0,
                phys: 0,
                prot: prot::DEVICE | prot::RW,
                mc: Some(513),
                flags: walk_flags::SHARED,
            },
        ),
        // set_owner with literal-none memcache and owner mode 7 -> 2 + 0.
        (
            vec![3, 0, 0, 0, 0, 0xfe, 7, 0],
            Op::S2SetOwner {
                addr: 0,
                size: 0,
                mc: None,
                owner_id: 2,
            },
        ),
        // walk: flags mode byte 0x85 -> 0x05, script mode 2 -> fail_at with
        // b = 0x13: n = 3, errno ALL[1] = EINVAL.
        (
            vec![13, 0, 0, 0, 0, 0x85, 2, 0x13],
            Op::Walk {
                addr: 0,
                size: 0,
                flags: 0x05,
                script: VisitScript::FailAt {
                    n: 3,
                    errno: errno::EINVAL,
                },
            },
        ),
        // create_unlinked: level mode 2 -> 1, phys mode 0 with k=2 -> 2 * 1G,
        // prot mode 0 = R, mc mode 0 with b=9 -> 0, force_pte byte 1.
        (
            vec![11, 2, 0, 2, 0, 0, 9, 1],
            Op::S2CreateUnlinked {
                phys: 0x8000_0000,
                level: 1,
                prot: prot::R,
                mc: Some(0),
                force_pte: true,
            },
        ),
        // create_unlinked: level mode 15 with b=1 -> out-of-range 4; phys
        // then uses page units: mode 0, k=3 -> 0x3000.
        (
            vec![11, 15, 1, 0, 3, 0, 0, 0, 0],
            Op::S2CreateUnlinked {
                phys: 0x3000,
                level: 4,
                prot: prot::R,
                mc: Some(0),
                force_pte: false,
            },
        ),
        // level mode 7 -> 7 - 6 = 1; phys mode 0, k = 0.
        (
            vec![11, 7, 0, 0, 0, 0, 0, 0],
            Op::S2CreateUnlinked {
                phys: 0,
                level: 1,
                prot: prot::R,
                mc: Some(0),
                force_pte: false,
            },
        ),
    ];
    for (ops, want) in cases {
        let mut bytes = s2_4k_40();
        bytes.extend_from_slice(&ops);
        let s = decode(&bytes, Profile::Any);
        assert_eq!(s.config.ia_bits, 40);
        assert_eq!(s.ops, vec![want], "ops bytes {ops:?}");
    }
}

#[test]
fn history_modes_by_hand() {
    let mut bytes = s2_4k_40();
    bytes.extend_from_slice(&[
        // get_leaf addr literal 0x5000 (history: [0x5000])
        14, 0xff, 0, 0x50, 0, 0, 0, 0, 0, 0,
        // s2_unmap: addr mode 12 (history) b=0 -> 0x5000, sub 3 -> -1 page
        // = 0x4000; size mode 14 with b = 0 (even) and no sizes yet, so
        // it reaches history addr[0] = 0x5000: 0x5000 - 0x4000 = 0x1000.
        4, 12, 0, 3, 14, 0,
        // s2_flush: addr mode 15 b=1 -> addrs[1 % 2] = 0x4000, sub 0;
        // size mode 15 b=0 -> sizes[0] = 0x1000.
        9, 15, 1, 0, 15, 0,
    ]);
    assert_eq!(
        decode(&bytes, Profile::Any).ops,
        vec![
            Op::GetLeaf { addr: 0x5000 },
            Op::S2Unmap {
                addr: 0x4000,
                size: 0x1000
            },
            Op::S2Flush {
                addr: 0x4000,
                size: 0x1000
            },
        ]
    );
}

#[test]
fn host_profile_by_hand() {
    // Host profile on the same config bytes: force_pte choice byte (0) is
    // ignored, region count 0 -> 2 regions, each: kind byte, start mode,
    // size mode.
    let mut bytes = s2_4k_40();
    bytes.pop(); // drop the force_pte choice byte
    bytes.extend_from_slice(&[
        0, // force_pte choice (ignored: host)
        0, // region count 0 -> 2
        0, // memory
        0, // start mode 0: prev_end = 0
        0, 1, 0, // size mode 0: level_from(1) = 2 (2M), k = 1 + 0 -> 2M
        1, // mmio
        0, // start: prev_end = 2M
        2, 0, 3, // size mode 2: level_from(0) = 3, 1 + 3 % 64 = 4 pages
        // s2_map: addr mode 9 -> host region mode: region 1 % 2 = mmio,
        // b = 0 -> region start 2M; size mode 11 -> region-relative b=0:
        // to the end of the containing region = 4 pages; phys literal
        // (ignored: identity); prot mode 0 -> host-appropriate RW (MMIO);
        // mc mode 2 -> 512; flags mode 0.
        2, 9, 1, 0, 11, 0, 0xff, 1, 2, 3, 4, 5, 6, 7, 8, 0, 2, 0,
    ]);
    let s = decode(&bytes, Profile::HostStage2);
    assert_eq!(s.config.context, Context::Nvhe);
    assert!(s.config.s2_flags.idmap);
    assert_eq!(
        s.config.force_pte,
        ForcePtePolicy::Host {
            regions: vec![
                Region {
                    start: 0,
                    size: 0x20_0000,
                    kind: RegionKind::Memory
                },
                Region {
                    start: 0x20_0000,
                    size: 0x4000,
                    kind: RegionKind::Mmio
                },
            ]
        }
    );
    assert_eq!(
        s.ops,
        vec![Op::S2Map {
            addr: 0x20_0000,
            size: 0x4000,
            phys: 0x20_0000,
            prot: prot::RW,
            mc: Some(512),
            flags: 0
        }]
    );
}

#[test]
fn host_ranges_stay_in_one_span_by_hand() {
    // Memory [0, 4M), MMIO region [4M, 4M + 16K), the rest of the 40-bit IA
    // space a gap. Every op: s2_map with addr mode 9 (host region mode),
    // a size mode, phys literal (ignored: identity), a prot mode, mc mode 2
    // (512), flags mode 0.
    let mut bytes = s2_4k_40();
    bytes.pop();
    bytes.extend_from_slice(&[
        0, 0, // force_pte (ignored), region count 0 -> 2
        0, 0, 0, 1, 1, // memory at 0, size mode 0: level 2 (2M) x (1 + 1) = 4M
        1, 0, 2, 0, 3, // mmio at prev_end, 4 pages
    ]);
    let lit = [0xff, 1, 2, 3, 4, 5, 6, 7, 8];
    let op = |region: u8, b: u8, size: &[u8], prot: u8| {
        let mut v = vec![2, 9, region, b];
        v.extend_from_slice(size);
        v.extend_from_slice(&lit);
        v.extend_from_slice(&[prot, 2, 0]);
        v
    };
    // Levels of 4K at 40 bits: level_from(b) picks [3, 2, 1, 0][b % 4].
    // 0x4000 in memory (b % 4 = 1, k = b >> 2 = 4), size mode 6 (k blocks):
    // one level-0 block (512G), cut at the end of memory: 4M - 16K.
    bytes.extend(op(0, 17, &[6, 3, 0], 0));
    // Size mode byte 0xF6 (6 + high nibble 15): not cut.
    bytes.extend(op(0, 17, &[0xf6, 3, 0], 0));
    // The MMIO region's start, in the gap above memory: two level-0
    // blocks (1T) cut at the IA limit; prot: MMIO, RW.
    bytes.extend(op(1, 0, &[6, 3, 1], 0));
    // All of memory (two 2M blocks: 1024 pages, more than PTRS_PER_PTE)
    // with prot mode 12 (device|R from the menu): given memory's RWX.
    bytes.extend(op(0, 0, &[6, 1, 1], 12));
    // The same with prot mode 0xFC (both nibbles 12 or more: 1 in 16):
    // the menu's device|R.
    bytes.extend(op(0, 0, &[6, 1, 1], 0xfc));
    // Four pages (not big) with prot mode 12: the menu's device|R.
    bytes.extend(op(0, 0, &[0, 4], 12));
    let s = decode(&bytes, Profile::HostStage2);
    let got: Vec<(u64, u64, u64)> = s
        .ops
        .iter()
        .map(|op| match *op {
            Op::S2Map {
                addr, size, prot, ..
            } => (addr, size, prot),
            _ => panic!("{op:?} in {:#?}", s.ops),
        })
        .collect();
    let (m4, lim) = (0x40_0000u64, 1u64 << 40);
    assert_eq!(
        got,
        [
            (0x4000, m4 - 0x4000, prot::RWX),
            // Across memory and the gap: prot mode 0 (even) gives RWX.
            (0x4000, 1 << 39, prot::RWX),
            (m4, lim - m4, prot::RW),
            (0, m4, prot::RWX),
            (0, m4, prot::DEVICE | prot::R),
            (0, 4 * 0x1000, prot::DEVICE | prot::R),
        ]
    );
}

#[test]
fn host_ranges_are_shaped_like_pkvm_ones() {
    // pKVM's host ranges lie in one memory region or in one gap between
    // them, and only a few pages get a prot that forces pages. Random host
    // inputs may leave that shape only through the 1-in-16 escapes of the
    // size and prot generators; before those were biased, about 15% of maps
    // straddled memory and MMIO, and 16% made more than 4096 forced pages.
    let (mut maps, mut straddle, mut big_forced) = (0u32, 0u32, 0u32);
    for bytes in random_inputs(5, 3000, 400) {
        let s = decode(&bytes, Profile::HostStage2);
        let ForcePtePolicy::Host { regions } = &s.config.force_pte else {
            unreachable!()
        };
        let (page, lim) = (s.config.granule.page_size(), s.config.ia_limit());
        let l = s.config.kernel.prot();
        for op in &s.ops {
            let Op::S2Map {
                addr, size, prot, ..
            } = *op
            else {
                continue;
            };
            maps += 1;
            if size == 0 || addr >= lim {
                continue;
            }
            let memory: Vec<&Region> = regions
                .iter()
                .filter(|g| g.kind == RegionKind::Memory)
                .collect();
            let in_memory = memory.iter().any(|g| g.contains_range(addr, size));
            let touches = memory.iter().any(|g| g.overlaps(addr, size));
            if touches && !in_memory {
                straddle += 1;
            }
            // What the host's force_pte_cb answers (src/force_pte.rs).
            let forced = if in_memory {
                prot != l.rwx()
            } else {
                prot != l.rw()
            };
            let pages = (addr as u128 + size as u128).min(lim as u128) - addr as u128;
            if forced && pages / page as u128 > 4096 {
                big_forced += 1;
            }
        }
    }
    assert!(maps > 10_000, "{maps}");
    assert!(straddle * 100 < maps * 3, "{straddle} of {maps} straddle");
    assert!(
        big_forced * 100 < maps * 3,
        "{big_forced} of {maps} force > 4096 pages"
    );
}

#[test]
fn guest_maps_are_one_block_by_hand() {
    // s2_4k_40 is a pKVM guest (nVHE, no IDMAP). Each op: s2_map at page 1
    // (addr mode 0), a size, phys identity (mode 0), prot mode 3 (RWX), mc
    // mode 2, flags mode 0.
    let map = |size: &[u8]| {
        let mut v = vec![2, 0, 1];
        v.extend_from_slice(size);
        v.extend_from_slice(&[0, 3, 2, 0]);
        v
    };
    let decode_sizes = |cfg: Vec<u8>, ops: &[&[u8]]| -> Vec<u64> {
        let mut bytes = cfg;
        for o in ops {
            bytes.extend(map(o));
        }
        decode(&bytes, Profile::Stage2)
            .ops
            .iter()
            .map(|op| match *op {
                Op::S2Map { size, .. } => size,
                _ => panic!("{op:?}"),
            })
            .collect()
    };
    let ops: [&[u8]; 6] = [
        // Mode 6, level_from(2) = 1: one 1G block.
        &[6, 2, 0],
        // Two 1G blocks (k = 1 + 1).
        &[6, 2, 1],
        // The same with high nibble 15 (the escape): never cut.
        &[0xf6, 2, 1],
        // Mode 6, level_from(1) = 2, k = 1: exactly one 2M block.
        &[6, 1, 0],
        // Mode 12 sub 2: u64::MAX, past the IA limit: never cut.
        &[12, 2],
        // 255 pages.
        &[0, 255],
    ];
    let (m2, g1) = (0x20_0000, 0x4000_0000);
    // pKVM's guest: a 4K page or one level-2 block, so 2M at most.
    assert_eq!(
        decode_sizes(s2_4k_40(), &ops),
        [m2, m2, 2 * g1, m2, u64::MAX, 255 * 0x1000]
    );
    // The kernel's KVM (context byte 1): up to 4K's PUD block, 1G.
    let mut kvm = s2_4k_40();
    kvm[2] = 1;
    assert_eq!(
        decode_sizes(kvm, &ops),
        [g1, g1, 2 * g1, m2, u64::MAX, 255 * 0x1000]
    );
    // A hyp map (the stage byte 0) is not: the hypervisor maps whole
    // sections and the linear map in one call.
    let mut hyp = s2_4k_40();
    hyp[1] = 0;
    hyp.extend_from_slice(&[0, 0, 1, 6, 2, 0, 0, 3]);
    let s = decode(&hyp, Profile::Any);
    assert!(
        matches!(
            s.ops[..],
            [Op::HypMap {
                size: 0x4000_0000,
                ..
            }]
        ),
        "{:?}",
        s.ops
    );
}

#[test]
fn permission_faults_hit_mapped_addresses_by_hand() {
    // 7.3 KVM guest (context byte 1). s2_map at page 5 (addr mode 0, 5),
    // size mode 0 (1 page), phys mode 0, prot mode 1 (R|W), mc mode 2,
    // flags mode 0; then three s2_relax_perms (tag 58) with prot R|W|X
    // (fault_prot mode 12: W and X) and flags mode 0, their fault_addr modes being:
    let mut bytes = s2_4k_40();
    bytes[0] = 0x10;
    bytes[2] = 1;
    bytes.extend_from_slice(&[2, 0, 5, 0, 1, 0, 1, 2, 0]);
    for addr in [
        // 4 (mode 0, (4 >> 2) % 4 = 1 page on): the latest address decoded
        // (the map's), one page on.
        &[4u8, 0][..],
        // 8: the latest map's (not the first relax's), two pages on.
        &[8, 0],
        // 3: any address, here addr mode 0, page 9.
        &[3, 0, 9],
    ] {
        bytes.push(58);
        bytes.extend_from_slice(addr);
        bytes.extend_from_slice(&[12, 0]);
    }
    let s = decode(&bytes, Profile::Stage2);
    let addrs: Vec<u64> = s
        .ops
        .iter()
        .map(|op| match *op {
            Op::S2Map { addr, .. } | Op::S2RelaxPermsFlags { addr, .. } => addr,
            _ => panic!("{op:?}"),
        })
        .collect();
    assert_eq!(addrs, [0x5000, 0x6000, 0x7000, 0x9000]);
}

/// The bytes of dictionary entry `name` (`oss-fuzz/kvm-pgtable-diff.dict`,
/// written as `\\xNN` escapes).
fn dict_phrase(name: &str) -> Vec<u8> {
    let dict = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/oss-fuzz/kvm-pgtable-diff.dict"
    ))
    .unwrap();
    let line = dict
        .lines()
        .find(|l| l.starts_with(&format!("{name}=")))
        .unwrap_or_else(|| panic!("{name} not in the dictionary"));
    let hex = line.split('"').nth(1).unwrap();
    hex.split("\\x")
        .skip(1)
        .map(|h| u8::from_str_radix(h, 16).unwrap())
        .collect()
}

/// The dictionary's `fault_relax_*` phrases decode to what their comment
/// says: a relax_perms of the address just mapped.
#[test]
fn dictionary_fault_phrases_relax_the_latest_map() {
    // KVM guest, 4K, 40 bits; 7.3 with FEAT_XNX or 6.12. An s2_map of page
    // 5 (addr mode 0), one page, phys mode 0, R|W (prot mode 1), mc mode 2,
    // flags mode 0 (7.x and 6.12 alike); then the phrase.
    let relax = |line: u8, name: &str| -> (u64, u64) {
        let mut bytes = s2_4k_40();
        bytes[0] = line;
        bytes[2] = 1;
        bytes[4] = 64;
        bytes.extend_from_slice(&[2, 0, 5, 0, 1, 0, 1, 2, 0]);
        bytes.extend(dict_phrase(name));
        let s = decode(&bytes, Profile::Stage2);
        match s.ops[..] {
            [
                Op::S2Map { addr: 0x5000, .. },
                Op::S2RelaxPermsFlags { addr, prot, .. },
            ]
            | [
                Op::S2Map { addr: 0x5000, .. },
                Op::S2RelaxPerms { addr, prot },
            ] => (addr, prot),
            _ => panic!("{name}: {:?}", s.ops),
        }
    };
    // 7.x: PX 1, UX 2, W 4, R 8. 6.12: X 1, W 2, R 4.
    assert_eq!(relax(0x10, "fault_relax_rwx"), (0x5000, 15));
    assert_eq!(relax(0x10, "fault_relax_r_ux"), (0x5000, 8 | 2));
    assert_eq!(relax(0x10, "fault_relax_r_px"), (0x5000, 8 | 1));
    assert_eq!(relax(0x00, "fault_relax_rwx_6_12"), (0x5000, 7));
}

/// The dictionary's `split_l1_block_*` phrases map a 1 GiB block and split
/// it with PTRS_PER_PTE or PTRS_PER_PTE + 1 pages, as their comment says.
#[test]
fn dictionary_split_phrases_split_a_level_1_block() {
    const G: u64 = 1 << 30;
    for (name, pages) in [("split_l1_block_ptrs", 512), ("split_l1_block_ptrs_1", 513)] {
        let mut bytes = s2_4k_40();
        bytes.extend(dict_phrase(name));
        let s = decode(&bytes, Profile::Stage2);
        match s.ops[..] {
            [
                Op::S2Map {
                    addr: G,
                    size: G,
                    phys: G,
                    mc: Some(4),
                    ..
                },
                Op::S2Split {
                    addr: G,
                    size: G,
                    nobjs,
                },
            ] => assert_eq!(nobjs, pages, "{name}"),
            _ => panic!("{name}: {:?}", s.ops),
        }
    }
}

/// The prots of 7.3 `s2_relax_perms` ops decoded with FEAT_XNX on or off:
/// s2_4k_40 with kernel nibble 1 and the features byte's bit 6; each op is
/// tag 58 at page 1 (fault_addr mode 3: any address, addr mode 0), then
/// `prot` (the bytes the prot field reads), then walk flags mode 0.
fn relax_prots<'a>(xnx: bool, prots: impl Iterator<Item = &'a [u8]>) -> Vec<u64> {
    let mut bytes = s2_4k_40();
    bytes[0] = 0x10;
    bytes[4] = if xnx { 64 } else { 0 };
    for prot in prots {
        bytes.extend_from_slice(&[58, 3, 0, 1]);
        bytes.extend_from_slice(prot);
        bytes.push(0);
    }
    let s = decode(&bytes, Profile::Stage2);
    assert_eq!(s.config.features.xnx, xnx);
    s.ops
        .iter()
        .map(|op| match *op {
            Op::S2RelaxPermsFlags { prot, .. } => prot,
            _ => panic!("{op:?}"),
        })
        .collect()
}

#[test]
fn one_execute_bit_prots_follow_feat_xnx_by_hand() {
    // fault_prot mode 3 (any prot, as prot()), then the prot byte under test.
    let prots = |xnx: bool, bytes: &[u8]| -> Vec<u64> {
        let fields: Vec<[u8; 2]> = bytes.iter().map(|&b| [3, b]).collect();
        relax_prots(xnx, fields.iter().map(|f| &f[..]))
    };
    // 7.x bits: PX 1, UX 2, W 4, R 8. Menu entry 3 is R|W|X (15), 1 is R|W.
    let bytes = [0x83, 0x93, 0xa3, 0xb3, 0x03, 0x81];
    // FEAT_XNX: nibbles 8/10 drop UX, 9/11 drop PX; R|W has no X to split.
    assert_eq!(prots(true, &bytes), [13, 14, 13, 14, 15, 12]);
    // Without it only 10 and 11 split X (the kernel's -EINVAL path).
    assert_eq!(prots(false, &bytes), [15, 15, 13, 14, 15, 12]);
}

/// A permission fault's prot is what KVM's abort handler builds: R, W and X
/// as the mode byte says, one execute bit only under FEAT_XNX.
#[test]
fn fault_prots_are_kvms_by_hand() {
    let prots = |xnx: bool, modes: &[u8]| relax_prots(xnx, modes.chunks(1));
    // 7.x bits: PX 1, UX 2, W 4, R 8. Modes: 0 R, 4 R|W, 8 R|X, 0x0C R|W|X,
    // 0x28 R|PX, 0x38 R|UX, 0x24 R|W (no X to split).
    let modes = [0x00, 0x04, 0x08, 0x0C, 0x28, 0x38, 0x24];
    assert_eq!(prots(true, &modes), [8, 12, 11, 15, 9, 10, 12]);
    // Without FEAT_XNX, KVM never asks for one execute bit.
    assert_eq!(prots(false, &modes), [8, 12, 11, 15, 11, 11, 12]);
}

#[test]
fn bias_statistics() {
    let (mut block_aligned, mut unaligned, mut zero_size, mut wraps, mut ia_edge) = (0, 0, 0, 0, 0);
    let (mut mc_ptrs, mut mc_ptrs1, mut mc_none, mut levels) = (0, 0, 0, [0usize; 5]);
    for bytes in random_inputs(6, 3000, 500) {
        let s = decode(&bytes, Profile::Stage2);
        let g = s.config.granule;
        let block = g.level_size(2).unwrap();
        let page = g.page_size();
        for op in &s.ops {
            if let Some((addr, size)) = op.range() {
                if addr != 0 && addr % block == 0 {
                    block_aligned += 1;
                }
                if addr % page != 0 {
                    unaligned += 1;
                }
                if size == 0 {
                    zero_size += 1;
                }
                if addr.checked_add(size).is_none() {
                    wraps += 1;
                }
                if addr == s.config.ia_limit() {
                    ia_edge += 1;
                }
            }
            let mc = match op {
                Op::S2Map { mc, .. } | Op::S2SetOwner { mc, .. } => Some(*mc),
                Op::S2CreateUnlinked { mc, level, .. } => {
                    if (-1..=3).contains(level) {
                        levels[(*level + 1) as usize] += 1;
                    }
                    Some(*mc)
                }
                _ => None,
            };
            match mc {
                Some(None) => mc_none += 1,
                Some(Some(n)) if n as u64 == g.ptrs_per_pte() => mc_ptrs += 1,
                Some(Some(n)) if n as u64 == g.ptrs_per_pte() + 1 => mc_ptrs1 += 1,
                _ => {}
            }
        }
    }
    for (name, n) in [
        ("block aligned", block_aligned),
        ("unaligned", unaligned),
        ("zero size", zero_size),
        ("wrapping", wraps),
        ("ia edge", ia_edge),
        ("mc ptrs", mc_ptrs),
        ("mc ptrs+1", mc_ptrs1),
        ("mc none", mc_none),
    ] {
        assert!(n >= 20, "{name}: only {n}");
    }
    assert!(levels.iter().all(|&n| n > 0), "{levels:?}");
}

#[test]
fn lpa2_never_with_64k() {
    for bytes in random_inputs(7, 2000, 20) {
        let c = decode(&bytes, Profile::Any).config;
        assert!(!(c.features.lpa2 && c.granule == Granule::K64));
    }
    // Hand check: granule byte 2 (64K), features byte 0x01 (lpa2).
    let s = decode(&[1, 0, 0, 2, 0x01], Profile::Any);
    assert_eq!(s.config.granule, Granule::K64);
    assert!(!s.config.features.lpa2);
    let s = decode(&[1, 0, 0, 1, 0x3f], Profile::Any);
    assert_eq!(
        s.config.features,
        Features {
            lpa2: true,
            fwb: true,
            tlb_range: true,
            bti: true,
            hvhe: true,
            ampere_ac03: true,
            xnx: false,
        }
    );
}

// ------------------------------------------------------------------ text

const SAMPLE_TEXT: &str = "\
# kvm-pgtable-diff stream
kvm-pgtable-diff-stream v1

config stage=stage2 context=nvhe granule=4k ia_bits=40 start_level=auto flags=idmap features=fwb,tlb_range parange=5 vmid16=yes arena_pages=512 fail_after=none
force_pte host memory:0x0+0x40000000 mmio:0x40000000+0x10000000   # memory map
s2_map addr=0x200000 size=0x200000 phys=0x200000 prot=RWX mc=8 flags=0
s2_set_owner addr=0x400000 size=0x1000 mc=4 owner=1
walk addr=0x0 size=0x400000 flags=LEAF|TABLE_POST script=fail_at:3:-11
";

#[test]
fn parse_sample_by_hand() {
    let s = parse(SAMPLE_TEXT).unwrap();
    let mut c = Config::new(Stage::Stage2);
    c.s2_flags.idmap = true;
    c.features.fwb = true;
    c.features.tlb_range = true;
    c.mmfr0_parange = 5;
    c.vmid16 = true;
    c.force_pte = ForcePtePolicy::Host {
        regions: vec![
            Region {
                start: 0,
                size: 0x4000_0000,
                kind: RegionKind::Memory,
            },
            Region {
                start: 0x4000_0000,
                size: 0x1000_0000,
                kind: RegionKind::Mmio,
            },
        ],
    };
    let ops = vec![
        Op::S2Map {
            addr: 0x20_0000,
            size: 0x20_0000,
            phys: 0x20_0000,
            prot: 7,
            mc: Some(8),
            flags: 0,
        },
        Op::S2SetOwner {
            addr: 0x40_0000,
            size: 0x1000,
            mc: Some(4),
            owner_id: 1,
        },
        Op::Walk {
            addr: 0,
            size: 0x40_0000,
            flags: 5,
            script: VisitScript::FailAt { n: 3, errno: -11 },
        },
    ];
    assert_eq!(s, OpStream::new(c, ops));
}

#[test]
fn print_by_hand() {
    let want = "\
kvm-pgtable-diff-stream v1
config kernel=6.12 stage=stage2 context=nvhe granule=4k ia_bits=40 start_level=auto flags=idmap features=fwb,tlb_range parange=5 vmid16=yes arena_pages=512 fail_after=none
force_pte host memory:0x0+0x40000000 mmio:0x40000000+0x10000000
s2_map addr=0x200000 size=0x200000 phys=0x200000 prot=RWX mc=8 flags=0
s2_set_owner addr=0x400000 size=0x1000 mc=4 owner=1
walk addr=0x0 size=0x400000 flags=LEAF|TABLE_POST script=fail_at:3:-EAGAIN
";
    assert_eq!(print(&parse(SAMPLE_TEXT).unwrap()), want);
    let lines = op_lines(&parse(SAMPLE_TEXT).unwrap());
    assert_eq!(
        lines[2],
        (
            2,
            "walk addr=0x0 size=0x400000 flags=LEAF|TABLE_POST script=fail_at:3:-EAGAIN"
                .to_string()
        )
    );
    assert_eq!(lines.len(), 3);
}

#[test]
fn print_odd_values_by_hand() {
    let s = sample_stage2();
    let t = print(&s);
    let lines: Vec<&str> = t.lines().collect();
    assert_eq!(
        lines[1],
        "config kernel=6.12 stage=stage2 context=kernel granule=16k ia_bits=47 start_level=0 flags=idmap,nofwb \
         features=lpa2,tlb_range,hvhe,ampere_ac03 parange=6 vmid16=yes arena_pages=256 fail_after=4294967295"
    );
    assert_eq!(
        lines[2],
        "force_pte host memory:0x0+0x40000000 mmio:0x40000000+0x10000000 memory:0xffffffffffffffff+0xffffffffffffffff"
    );
    assert_eq!(
        lines[4],
        "s2_map addr=0xffffffffffffffff size=0xffffffffffffffff phys=0x1 prot=RW|DEVICE|SW3|0x10000000000 mc=none \
         flags=LEAF|TABLE_PRE|TABLE_POST|SHARED|HANDLE_FAULT|SKIP_BBM_TLBI|SKIP_CMO|0x80"
    );
    assert_eq!(lines[11], "s2_relax_perms addr=0x5000 prot=none");
    assert_eq!(
        lines[14],
        "s2_create_unlinked level=-128 phys=0x80000000 prot=R|NC mc=0 force_pte=yes"
    );
    assert_eq!(
        lines[18],
        "walk addr=0x0 size=0x0 flags=0x80 script=fail_at:255:-5"
    );
    assert_eq!(lines[19], "walk addr=0x7 size=0x9 flags=0 script=ok");
    let h = print(&sample_hyp());
    assert!(
        h.contains("\nforce_pte arbitrary pattern=0xdeadbeef00000001\n"),
        "{h}"
    );
    assert!(
        h.contains("\nhyp_map addr=0x10000 size=0x10000 phys=0x20000 prot=RX\n"),
        "{h}"
    );
}

#[test]
fn text_round_trips() {
    let mut streams = vec![sample_stage2(), sample_hyp(), parse(SAMPLE_TEXT).unwrap()];
    for bytes in random_inputs(8, 1000, 500) {
        for p in Profile::ALL {
            streams.push(decode(&bytes, p));
        }
    }
    for s in streams {
        let t = print(&s);
        let back = parse(&t).unwrap_or_else(|e| panic!("{e}\n{t}"));
        assert_eq!(back, s);
        assert_eq!(print(&back), t);
        assert_eq!(t.parse::<OpStream>().unwrap(), s);
    }
}

#[test]
fn text_leniency() {
    // Keys in any order, decimal numbers, '_' separators, defaults for
    // missing config keys, alternative spellings.
    let t = "kvm-pgtable-diff-stream v1\n\
             config stage=hyp\n\
             hyp_map prot=W|R|0x10 phys=4096 size=0x1_000 addr=0\n\
             walk addr=0 size=0 flags=1|SHARED script=fail_at:0:-ENOMEM\n";
    let s = parse(t).unwrap();
    assert_eq!(s.config, Config::new(Stage::Hyp));
    assert_eq!(
        s.ops,
        vec![
            Op::HypMap {
                addr: 0,
                size: 0x1000,
                phys: 0x1000,
                prot: prot::RW | prot::NORMAL_NC
            },
            Op::Walk {
                addr: 0,
                size: 0,
                flags: 1 | 8,
                script: VisitScript::FailAt { n: 0, errno: -12 }
            },
        ]
    );
}

fn parse_err(t: &str) -> ParseError {
    parse(t).expect_err("expected a parse error")
}

#[test]
fn parse_errors_are_clear() {
    let h = "kvm-pgtable-diff-stream v1\n";
    let c = "config stage=stage2\n";

    let e = parse_err("config stage=hyp\n");
    assert_eq!(e.line, 1);
    assert!(e.message.contains("expected header"), "{e}");

    let e = parse_err("# c\n\nkvm-pgtable-diff-stream v2\n");
    assert_eq!(
        (
            e.line,
            e.message.contains("unsupported text format version `v2`")
        ),
        (3, true),
        "{e}"
    );

    let e = parse_err("");
    assert!(e.message.contains("missing header"), "{e}");

    let e = parse_err(h);
    assert!(e.message.contains("missing `config`"), "{e}");

    let e = parse_err(&format!("{h}s2_unmap addr=0 size=0\n"));
    assert_eq!(e.line, 2);
    assert!(e.message.contains("expected a `config` line"), "{e}");

    let e = parse_err(&format!("{h}{c}s2_frobnicate addr=0\n"));
    assert_eq!(e.line, 3);
    assert!(e.message.contains("unknown op `s2_frobnicate`"), "{e}");

    let e = parse_err(&format!("{h}{c}s2_unmap addr=0\n"));
    assert!(e.message.contains("missing key `size`"), "{e}");

    let e = parse_err(&format!("{h}{c}s2_unmap addr=0 size=0 bogus=1\n"));
    assert!(e.message.contains("unknown key `bogus`"), "{e}");

    let e = parse_err(&format!("{h}{c}s2_unmap addr=0 addr=1 size=0\n"));
    assert!(e.message.contains("duplicate key `addr`"), "{e}");

    let e = parse_err(&format!("{h}{c}\n\ns2_unmap addr=0xZZ size=0\n"));
    assert_eq!(e.line, 5);
    assert!(
        e.message.contains("s2_unmap addr: expected an integer"),
        "{e}"
    );

    let e = parse_err(&format!("{h}{c}s2_unmap addr=0x10000000000000000 size=0\n"));
    assert!(e.message.contains("expected an integer"), "{e}");

    let e = parse_err(&format!(
        "{h}{c}s2_set_owner addr=0 size=0 mc=none owner=256\n"
    ));
    assert!(
        e.message
            .contains("s2_set_owner owner: value `256` out of range"),
        "{e}"
    );

    let e = parse_err(&format!("{h}{c}s2_relax_perms addr=0 prot=RWQ\n"));
    assert!(e.message.contains("expected prot"), "{e}");

    let e = parse_err(&format!(
        "{h}{c}walk addr=0 size=0 flags=LEAF|BOGUS script=ok\n"
    ));
    assert!(e.message.contains("expected walk flags"), "{e}");

    let e = parse_err(&format!("{h}{c}walk addr=0 size=0 flags=0 script=fail\n"));
    assert!(e.message.contains("expected script"), "{e}");

    let e = parse_err(&format!("{h}{c}hyp_map addr=0 size=0 phys=0 prot=R\n"));
    assert_eq!(e.line, 3);
    assert!(
        e.message
            .contains("`hyp_map` is not valid for stage=stage2"),
        "{e}"
    );

    let e = parse_err(&format!(
        "{h}config stage=stage2 granule=64k features=lpa2\n"
    ));
    assert_eq!(e.line, 2);
    assert!(e.message.contains("lpa2"), "{e}");

    let e = parse_err(&format!("{h}config stage=stage2 ia_bits=31\n"));
    assert!(e.message.contains("ia_bits 31 out of range"), "{e}");

    let e = parse_err(&format!("{h}config stage=hyp granule=8k\n"));
    assert!(e.message.contains("expected 4k, 16k or 64k"), "{e}");

    let e = parse_err(&format!("{h}config granule=4k\n"));
    assert!(e.message.contains("missing key `stage`"), "{e}");

    let e = parse_err(&format!("{h}{c}{c}"));
    assert_eq!(e.line, 3);
    assert!(e.message.contains("duplicate `config`"), "{e}");

    let e = parse_err(&format!("{h}{c}get_leaf addr=0\nforce_pte none\n"));
    assert_eq!(e.line, 4);
    assert!(e.message.contains("before the first op"), "{e}");

    let e = parse_err(&format!("{h}{c}force_pte host memory:0x0-0x10\n"));
    assert!(e.message.contains("expected memory:START+SIZE"), "{e}");

    let regions: String = (0..9).map(|i| format!(" mmio:{i}+1")).collect();
    let e = parse_err(&format!("{h}{c}force_pte host{regions}\n"));
    assert_eq!(e.line, 3);
    assert!(e.message.contains("more than 8 host regions"), "{e}");

    let many: String = (0..=MAX_OPS).map(|_| "get_leaf addr=0\n").collect();
    let e = parse_err(&format!("{h}{c}{many}"));
    assert_eq!(e.line, 3 + MAX_OPS);
    assert!(e.message.contains("too many ops"), "{e}");

    // Display includes the line number.
    assert_eq!(
        ParseError {
            line: 7,
            message: "boom".into()
        }
        .to_string(),
        "line 7: boom"
    );
}

#[test]
fn annotated_marks_op() {
    let s = parse(SAMPLE_TEXT).unwrap();
    let a = s.annotated(Some(1));
    assert!(
        a.contains("\n>>   1: s2_set_owner addr=0x400000 size=0x1000 mc=4 owner=1\n"),
        "{a}"
    );
    assert!(a.contains("\n     0: s2_map "), "{a}");
}

/// The committed corpus and every reproducer ever saved depend on these
/// tags: they are written out by hand here so that a change to the op
/// table cannot renumber an op without this test failing.
#[test]
fn canonical_tags_never_change() {
    let pinned: [(u8, &str); 19] = [
        (0, "hyp_map"),
        (1, "hyp_unmap"),
        (2, "s2_map"),
        (3, "s2_set_owner"),
        (4, "s2_unmap"),
        (5, "s2_wrprotect"),
        (6, "s2_mkyoung"),
        (7, "s2_test_clear_young"),
        (8, "s2_relax_perms"),
        (9, "s2_flush"),
        (10, "s2_split"),
        (11, "s2_create_unlinked"),
        (12, "s2_free_unlinked"),
        (13, "walk"),
        (14, "get_leaf"),
        (15, "pte_prot"),
        (16, "get_vtcr"),
        (17, "pgd_size"),
        (60, "tlb_flush_vmid_range"),
    ];
    // The 7.x ops: their text names are those of the 6.12 ops they replace.
    let pinned_7x: [(u8, OpKind); 3] = [
        (56, OpKind::S2Annotate),
        (57, OpKind::S2MkyoungFlags),
        (58, OpKind::S2RelaxPermsFlags),
    ];
    for (tag, k) in pinned_7x {
        assert_eq!(k.tag(), tag, "{k:?}");
        assert_eq!(TAG_TABLE[usize::from(tag)], k, "slot {tag}");
    }
    for (tag, name) in pinned {
        let k = OpKind::from_name(name, KernelLine::V6_12)
            .unwrap_or_else(|| panic!("op {name} is gone"));
        assert_eq!(k.tag(), tag, "{name}");
        assert_eq!(
            TAG_TABLE[usize::from(tag)],
            k,
            "slot {tag} is {name}'s canonical slot"
        );
    }
}

/// A hand-encoded op decodes field by field in table order (the order the
/// generators read them), literal mode `0xFF` first.
#[test]
fn create_unlinked_fields_decode_in_table_order() {
    let mut bytes = encode(&OpStream::new(Config::new(Stage::Stage2), vec![]));
    // tag 11, level: LIT 2, phys: LIT u64, prot: LIT u64 (R = bit 2),
    // mc: LIT_NONE, force_pte: raw byte 1.
    bytes.extend_from_slice(&[11, 0xff, 2, 0xff]);
    bytes.extend_from_slice(&0x20_0000u64.to_le_bytes());
    bytes.push(0xff);
    bytes.extend_from_slice(&4u64.to_le_bytes());
    bytes.extend_from_slice(&[0xfe, 1]);
    let s = decode(&bytes, Profile::Any);
    assert_eq!(
        s.ops,
        vec![Op::S2CreateUnlinked {
            level: 2,
            phys: 0x20_0000,
            prot: prot::R,
            mc: None,
            force_pte: true,
        }]
    );
}

// ----------------------------------------------------------------- races

/// A kernel stage-2 stream with every kind of race, on several ops.
fn sample_races() -> OpStream {
    let mut c = Config::new(Stage::Stage2);
    c.context = Context::Kernel;
    let map = Op::S2Map {
        addr: 0x1000,
        size: 0x1000,
        phys: 0x8000_1000,
        prot: prot::RW,
        mc: Some(4),
        flags: walk_flags::SHARED | walk_flags::HANDLE_FAULT,
    };
    let mut s = OpStream::new(c, vec![map.clone(); 6]);
    let leaf = Install::Leaf(prot::R | prot::SW0);
    for (i, (at, up, what)) in [
        (0, 0, Interference::Af),
        (5, 0, Interference::Locked(leaf)),
        (9, 0, Interference::Locked(Install::Table)),
        (3, 0, Interference::Install(Install::Table)),
        (u32::MAX, 3, Interference::Install(leaf)),
    ]
    .into_iter()
    .enumerate()
    {
        s.races.insert(i + 1, Race { at, up, what });
    }
    s
}

#[test]
fn races_round_trip_binary_and_text() {
    let s = sample_races();
    s.validate().unwrap();
    for p in [Profile::Any, Profile::Stage2, Profile::Walk] {
        assert_eq!(decode(&encode(&s), p), s, "{p:?}");
    }
    let t = print(&s);
    assert_eq!(parse(&t), Ok(s.clone()), "{t}");
    // The printed form, by hand.
    let lines: Vec<&str> = t
        .lines()
        .skip(3)
        .map(|l| l.rsplit(' ').next().unwrap())
        .collect();
    assert_eq!(
        lines,
        [
            "flags=SHARED|HANDLE_FAULT",
            "race=0:af",
            "race=5:locked>leaf(R|SW0)",
            "race=9:locked>table",
            "race=3:table",
            "race=4294967295:up3:leaf(R|SW0)",
        ]
    );
}

#[test]
fn race_tag_by_hand() {
    let mut c = Config::new(Stage::Stage2);
    c.context = Context::Kernel;
    let base = encode(&OpStream::new(c.clone(), vec![]));
    let mut bytes = base.clone();
    // Race tag; at: LIT u32 7; spec: LIT 3 | 1 << 3 (locked>leaf, up 1);
    // prot: LIT u64 R; then get_leaf (tag 14) addr mode 0, page 2.
    bytes.extend_from_slice(&[RACE_TAG, 0xff, 7, 0, 0, 0, 0xff, 3 | 1 << 3, 0xff]);
    bytes.extend_from_slice(&prot::R.to_le_bytes());
    bytes.extend_from_slice(&[14, 0, 2]);
    let s = decode(&bytes, Profile::Stage2);
    assert_eq!(s.ops, vec![Op::GetLeaf { addr: 0x2000 }]);
    let race = Race {
        at: 7,
        up: 1,
        what: Interference::Locked(Install::Leaf(prot::R)),
    };
    assert_eq!(s.race(0), Some(&race));
    // A later race replaces an armed one; one left at the end is dropped.
    let mut two = base.clone();
    two.extend_from_slice(&[RACE_TAG, 0xff, 1, 0, 0, 0, 0xff, 2]);
    two.extend_from_slice(&[RACE_TAG, 0xff, 2, 0, 0, 0, 0xff, 0]);
    two.extend_from_slice(&[14, 0, 2, RACE_TAG, 0xff, 3, 0, 0, 0, 0xff, 4]);
    let s = decode(&two, Profile::Any);
    assert_eq!(s.ops.len(), 1);
    assert_eq!(
        s.races.into_iter().collect::<Vec<_>>(),
        vec![(
            0,
            Race {
                at: 2,
                up: 0,
                what: Interference::Af
            }
        )]
    );
    // Where races are not decoded, the slot is get_leaf as it always was:
    // its address is a literal (mode 0xff) of the next eight bytes.
    let s = decode(&bytes, Profile::Unlinked);
    assert!(s.races.is_empty());
    assert_eq!(
        s.ops[0],
        Op::GetLeaf {
            addr: u64::from_le_bytes([7, 0, 0, 0, 0xff, 3 | 1 << 3, 0xff, 4])
        }
    );
    let hyp = encode(&OpStream::new(Config::new(Stage::Hyp), vec![]));
    let mut h = hyp.clone();
    h.extend_from_slice(&[RACE_TAG, 0, 1]);
    assert_eq!(
        decode(&h, Profile::Any).ops,
        vec![Op::GetLeaf { addr: 0x1000 }]
    );
}

#[test]
fn race_text_errors() {
    let kernel = "kvm-pgtable-diff-stream v1\nconfig stage=stage2 context=kernel\n";
    let e = parse_err(&format!("{kernel}get_leaf addr=0x0 race=x:af\n"));
    assert_eq!(e.line, 3);
    assert!(e.message.contains("race"), "{}", e.message);
    let e = parse_err(&format!("{kernel}get_leaf addr=0x0 race=1:up4:af\n"));
    assert!(e.message.contains("up3"), "{}", e.message);
    let e = parse_err(&format!("{kernel}get_leaf addr=0x0 race=1:leaf(Q)\n"));
    assert!(e.message.contains("prot"), "{}", e.message);
    let e = parse_err(&format!("{kernel}get_leaf addr=0x0 race=1:af race=2:af\n"));
    assert!(e.message.contains("duplicate"), "{}", e.message);
    let e =
        parse_err("kvm-pgtable-diff-stream v1\nconfig stage=hyp\nget_leaf addr=0x0 race=1:af\n");
    assert!(e.message.contains("stage-2"), "{}", e.message);
    // A race must have an op to go with.
    let mut s = sample_races();
    s.races.insert(6, s.races[&1]);
    assert!(matches!(
        s.validate(),
        Err(InvalidStream::Race { index: 6, .. })
    ));
}

#[test]
fn shared_walks_are_what_the_kernel_runs_concurrently() {
    let s2 = |flags| Op::S2Map {
        addr: 0,
        size: 0x1000,
        phys: 0,
        prot: prot::R,
        mc: Some(1),
        flags,
    };
    assert!(s2(walk_flags::SHARED).walks_shared());
    assert!(!s2(walk_flags::HANDLE_FAULT).walks_shared());
    // 6.12's fault-path helpers walk SHARED whatever their caller.
    assert!(Op::S2Mkyoung { addr: 0 }.walks_shared());
    assert!(
        Op::S2RelaxPerms {
            addr: 0,
            prot: prot::R
        }
        .walks_shared()
    );
    assert!(
        !Op::S2MkyoungFlags {
            addr: 0,
            flags: walk_flags::IGNORE_EAGAIN
        }
        .walks_shared()
    );
    assert!(
        !Op::S2Unmap {
            addr: 0,
            size: 0x1000
        }
        .walks_shared()
    );
}

#[test]
fn biased_races_fit_the_op_they_go_with() {
    let mut c = Config::new(Stage::Stage2);
    c.context = Context::Kernel;
    let map = Op::S2Map {
        addr: 0x1000,
        size: 0x1000,
        phys: 0x8000_1000,
        prot: prot::RW,
        mc: Some(4),
        flags: walk_flags::SHARED,
    };
    let unmap = Op::S2Unmap {
        addr: 0x1000,
        size: 0x1000,
    };
    // at: mode 0, byte 5 -> 5; spec: mode 0 (biased, choice 0); prot:
    // mode 1 -> RW; then the op, encoded literally.
    let race_then = |op: &Op, cfg: &Config| {
        let mut bytes = encode(&OpStream::new(cfg.clone(), vec![]));
        let config_len = bytes.len();
        bytes.extend_from_slice(&[RACE_TAG, 0, 5, 0, 1]);
        let with_op = encode(&OpStream::new(cfg.clone(), vec![op.clone()]));
        bytes.extend_from_slice(&with_op[config_len..]);
        decode(&bytes, Profile::Stage2)
    };
    // Before a kernel SHARED map: another walker, locked mid-way.
    let s = race_then(&map, &c);
    assert_eq!(s.ops, vec![map.clone()]);
    assert_eq!(
        s.race(0),
        Some(&Race {
            at: 5,
            up: 0,
            what: Interference::Locked(Install::Leaf(prot::RW))
        })
    );
    // Before an exclusive walk, or at EL2: only the hardware.
    let s = race_then(&unmap, &c);
    assert_eq!(s.race(0).map(|r| r.what), Some(Interference::Af));
    let mut nvhe = c.clone();
    nvhe.context = Context::Nvhe;
    let s = race_then(&map, &nvhe);
    assert_eq!(s.race(0).map(|r| r.what), Some(Interference::Af));
}

/// A decoded range teardown makes at most 2^MAX_DECODED_CHUNKS_LOG2
/// destroy_range calls (one per chunk of 2^blocks_log2 largest blocks over
/// 2^ia_bits bytes), while range teardowns stay in the mix; a text stream
/// may still ask for more.
#[test]
fn decoded_range_teardowns_stay_bounded() {
    let mut chunked = 0;
    for bytes in random_inputs(0x7EA2, 4000, 24) {
        let c = binary::decode(&bytes, Profile::Stage2).config;
        if let Teardown::RangeChunks { blocks_log2 } = c.teardown {
            chunked += 1;
            // Largest block: 1 GiB (2^30) on 4K, 32 MiB (2^25) on 16K,
            // 512 MiB (2^29) on 64K.
            let block_shift = match c.granule {
                Granule::K4 => 30,
                Granule::K16 => 25,
                Granule::K64 => 29,
            };
            let calls_log2 =
                u32::from(c.ia_bits).saturating_sub(block_shift + u32::from(blocks_log2));
            assert!(calls_log2 <= 14, "{c:?}: 2^{calls_log2} calls");
        }
    }
    assert!(
        chunked > 100,
        "only {chunked} range teardowns in 4000 inputs"
    );
    // 48-bit 16K in chunks of one 32 MiB block: 2^23 calls, refused only
    // by the decoder.
    let text = "kvm-pgtable-diff-stream v1\nconfig kernel=7.3 stage=stage2 context=kernel \
                granule=16k ia_bits=48 parange=5 arena_pages=64 teardown=chunks:1\n\
                force_pte none\n";
    let s = text::parse(text).expect("a valid text stream");
    assert_eq!(s.config.teardown, Teardown::RangeChunks { blocks_log2: 0 });
}

/// Scenarios (header first, or `#` comments then the header) are text; raw
/// fuzzer bytes are not, even when their first byte is `#` (0x23: format 3,
/// line menu index 2).
#[test]
fn text_files_and_raw_inputs_are_told_apart() {
    assert!(is_text(b"kvm-pgtable-diff-stream v1\nconfig ..."));
    assert!(is_text(
        b"# a comment\n\tmore\r\nkvm-pgtable-diff-stream v1\n"
    ));
    // A broken scenario is still text, so the parser reports what is wrong.
    assert!(is_text(b"# comment\nkvm-pgtable-diff-stream v9\n"));
    assert!(!is_text(b"#2\n\0\0\0\0"));
    assert!(!is_text(b"#\xff\xfe"));
    assert!(!is_text(b"\x01kvm"));
    assert!(!is_text(b""));
}

/// The dictionary's lost-race phrases: another vCPU's walker installs a table
/// at access 1 or 2 of the next op; `fault_race_lost_table` adds KVM's fault
/// map of one page at 256 GiB, which on an empty table reads the empty
/// level-1 entry (access 0), takes a table page and loses its cmpxchg
/// (access 1): -EAGAIN, and the page goes back (put to 0).
#[test]
fn dictionary_race_phrases_lose_a_table_race() {
    use crate::events::Event;
    use crate::results::Value;
    use crate::side::Side;
    let table_at = |at| Race {
        at,
        up: 0,
        what: Interference::Install(Install::Table),
    };
    // Kernel (KVM guest) context, 4K, 40 bits; line byte 0x01 is 6.12, 0x10 7.3.
    for (line, kernel, flags) in [
        (
            0x01,
            KernelLine::V6_12,
            walk_flags::SHARED | walk_flags::HANDLE_FAULT,
        ),
        (0x10, KernelLine::V7_3, walk_flags::SHARED),
    ] {
        let mut config = s2_4k_40();
        config[0] = line;
        config[2] = 1;
        for (name, at) in [("race_table_won_1", 1), ("race_table_won_2", 2)] {
            let mut bytes = config.clone();
            bytes.extend(dict_phrase(name));
            bytes.extend_from_slice(&[14, 0, 2]);
            let s = decode(&bytes, Profile::Stage2);
            assert_eq!(s.ops, [Op::GetLeaf { addr: 0x2000 }], "{name}");
            assert_eq!(s.race(0), Some(&table_at(at)), "{name}");
        }
        let mut bytes = config.clone();
        bytes.extend(dict_phrase("fault_race_lost_table"));
        let s = decode(&bytes, Profile::Stage2);
        assert_eq!(s.config.kernel, kernel);
        let l = s.config.kernel.prot();
        assert_eq!(
            s.ops,
            [Op::S2Map {
                addr: 0x40_0000_0000,
                size: 0x1000,
                phys: 0x40_0000_0000,
                prot: l.rw(),
                mc: Some(4),
                flags,
            }],
            "line byte {line:#x}"
        );
        assert_eq!(s.race(0), Some(&table_at(1)));
        let mut side = crate::rust_side::RustSide::for_stream(&s.config);
        side.init();
        let o = side.apply_raced(&s.ops[0], s.race(0));
        assert_eq!(o.value, Value::Int(-11), "-EAGAIN");
        let taken: Vec<u64> = o
            .trace
            .iter()
            .filter_map(|e| match *e {
                Event::ZallocPage { pa, .. } => pa,
                _ => None,
            })
            .collect();
        assert_eq!(taken.len(), 1, "{:?}", o.trace);
        assert!(
            o.trace.contains(&Event::PutPage {
                page: taken[0],
                count: 0
            }),
            "{:?}",
            o.trace
        );
    }
}
