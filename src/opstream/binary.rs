// SPDX-License-Identifier: GPL-2.0-only
//! Fuzzer bytes <-> [`OpStream`]: total decoder and exact encoder.
//!
//! See the module documentation of [`super`] for the rationale. Layout
//! (every read past the end of the input yields 0):
//!
//! ```text
//! byte 0        header: bits 0..=3 the format version (read as-is; any
//!               value decodes with the latest rules; the encoder writes
//!               FORMAT_VERSION), bits 4..=7 the kernel line (LINE_MENU)
//! stage         b & 1            0 = hyp, 1 = stage-2      (profile may force)
//! context       b & 1            0 = nvhe, 1 = kernel      (HostStage2 forces nvhe;
//!                                Hyp: kernel only for b % 4 == 1)
//! granule       b % 8            menu; 0 = 4K, 1 = 16K, 2 = 64K (the encoder's bytes)
//! features      bit set          lpa2, fwb, tlb_range, bti, hvhe, ampere_ac03, xnx
//!                                (bits 0..=6; lpa2 dropped with 64K, xnx before 7.x)
//! s2 flags      bit set          bit 0 idmap, bit 1 nofwb (6.12) or as_s1 (7.x)
//!                                (HostStage2 forces idmap)
//! ia_bits       mode [+ byte]    LIT or m % 4 == 3: lo + b % (hi - lo + 1);
//!                                else a stage menu [(m >> 2) % 8]
//! start_level   byte             0xC0..=0xFF: Some((b & 15) % 5 - 1) raised to the
//!                                granule's first level, else None
//! parange       b % 7
//! vmid16        b & 1; bits 1..=3: 7.x stage-2 teardown (0 destroy, k range
//!               chunks of 2^(k-1) blocks; destroy when that is more than
//!               2^MAX_DECODED_CHUNKS_LOG2 destroy_range calls)
//! arena_pages   mode [+ u16]     LIT: 64 + v % 4033; else a menu
//! fail_after    mode [+ ...]     LIT: Some(u32); < 0xC0: None; else Some(small)
//! force_pte     choice           c % 4: 0,1 = none, 2 = host, 3 = arbitrary
//!                                (HostStage2 forces host)
//!   host:       count (n % 9), then per region: kind (b & 1), start, size
//!   arbitrary:  pattern (raw u64)
//! ops           until the input is exhausted or MAX_OPS ops decoded:
//!               tag byte (b & 63, see TAG_TABLE), then the op's fields;
//!               in a stage-2 stream of the Stage2, Walk or Any profile,
//!               tag RACE_TAG instead arms a race for the next op: its
//!               fields (Race::decode), then that op (a later race
//!               replaces it; one left at the end is dropped)
//! ```
//!
//! Op fields are decoded with the generators of `super::generators`: a mode byte
//! (0xFF = literal little-endian value) plus a payload. Booleans and
//! unlinked-table indices are plain bytes (`b & 1`, `b`).

use super::codec::Writer;
use super::generators::{Gen, LIT, Reader};
use super::model::*;
use super::ops::decode_op;
pub use super::profile::Profile;

/// Version byte the encoder writes first. Bump it (and keep decoding old
/// inputs with the newest rules) whenever the layout changes; regenerate
/// the committed corpus from the text scenarios (`cargo xtask corpus`).
pub const FORMAT_VERSION: u8 = 1;

use OpKind as K;

/// The 64-slot op tag table (`tag byte & 63`). Slots 0..=17, 56..=58 and 60
/// are canonical tags ([`OpKind::tag`]: `TAG_TABLE[k.tag()] == k`);
/// 18..=55 weight the random op mix; 59 is [`RACE_TAG`] where races are
/// decoded ([`races_decoded`]) and `GetLeaf` elsewhere; 61..=63 are
/// unassigned and alias to `GetLeaf`. To add an op, give it one of the
/// unassigned slots as its tag (only inputs that used that slot change).
/// Never reorder existing entries.
pub const TAG_TABLE: [OpKind; 64] = [
    // 0..=17: canonical.
    K::HypMap,
    K::HypUnmap,
    K::S2Map,
    K::S2SetOwner,
    K::S2Unmap,
    K::S2Wrprotect,
    K::S2Mkyoung,
    K::S2TestClearYoung,
    K::S2RelaxPerms,
    K::S2Flush,
    K::S2Split,
    K::S2CreateUnlinked,
    K::S2FreeUnlinked,
    K::Walk,
    K::GetLeaf,
    K::PteProt,
    K::GetVtcr,
    K::PgdSize,
    // 18..=27: maps.
    K::HypMap,
    K::S2Map,
    K::HypMap,
    K::S2Map,
    K::HypMap,
    K::S2Map,
    K::HypMap,
    K::S2Map,
    K::HypMap,
    K::S2Map,
    // 28..=33: unmaps.
    K::HypUnmap,
    K::S2Unmap,
    K::HypUnmap,
    K::S2Unmap,
    K::HypUnmap,
    K::S2Unmap,
    // 34..=37: walks.
    K::Walk,
    K::Walk,
    K::Walk,
    K::Walk,
    // 38..=55: the rest of stage-2.
    K::S2SetOwner,
    K::S2SetOwner,
    K::S2SetOwner,
    K::S2Wrprotect,
    K::S2Wrprotect,
    K::S2TestClearYoung,
    K::S2TestClearYoung,
    K::S2RelaxPerms,
    K::S2RelaxPerms,
    K::S2Split,
    K::S2Split,
    K::S2CreateUnlinked,
    K::S2CreateUnlinked,
    K::S2FreeUnlinked,
    K::S2Mkyoung,
    K::S2Mkyoung,
    K::S2Flush,
    K::S2Flush,
    // 56..=58: canonical tags of the 7.x ops (on 6.12 they become their
    // 6.12 counterparts, see OpKind::on_line).
    K::S2Annotate,
    K::S2MkyoungFlags,
    K::S2RelaxPermsFlags,
    // 59: RACE_TAG where races are decoded, else GetLeaf.
    K::GetLeaf,
    // 60: canonical tag of TlbFlushVmidRange.
    K::TlbFlushVmidRange,
    // 61..=63: unassigned, alias to GetLeaf.
    K::GetLeaf,
    K::GetLeaf,
    K::GetLeaf,
];

/// The tag that arms a [`Race`] for the next op (once an alias of
/// `GetLeaf`, which it still is where races are not decoded).
pub const RACE_TAG: u8 = 59;

/// Whether streams of `profile` with configuration `cfg` read [`RACE_TAG`]
/// as a race: stage-2 streams of the targets where interference happens
/// (the kernel's SHARED fault path, hardware AF). The hyp stage-1 has
/// none; the pKVM host's leaves never lose AF; the unlinked target's
/// split and unlinked tables are exclusive walks.
pub fn races_decoded(profile: Profile, cfg: &Config) -> bool {
    cfg.stage == Stage::Stage2 && matches!(profile, Profile::Stage2 | Profile::Walk | Profile::Any)
}

fn map_kind(stage: Stage) -> OpKind {
    match stage {
        Stage::Hyp => K::HypMap,
        Stage::Stage2 => K::S2Map,
    }
}

fn unmap_kind(stage: Stage) -> OpKind {
    match stage {
        Stage::Hyp => K::HypUnmap,
        Stage::Stage2 => K::S2Unmap,
    }
}

/// Op kind for a tag byte under a stage and profile. Canonical tags of
/// kinds valid for the stage and allowed by the profile map to themselves.
/// Otherwise: hyp<->stage-2 map/unmap swap; other stage-2-only kinds
/// under Hyp become `[map, unmap, walk, get_leaf, map, pte_prot, unmap,
/// walk][tag % 8]`; kinds a profile excludes become that profile's
/// fallback `[..][tag % 8]`.
pub fn kind_for_tag(tag: u8, stage: Stage, line: KernelLine, profile: Profile) -> OpKind {
    let t = tag & 63;
    let (map, unmap) = (map_kind(stage), unmap_kind(stage));
    let stage_fix = |k: OpKind| {
        if k.valid_for(stage) {
            k
        } else {
            match k {
                K::HypMap | K::S2Map => map,
                K::HypUnmap | K::S2Unmap => unmap,
                _ => [
                    map,
                    unmap,
                    K::Walk,
                    K::GetLeaf,
                    map,
                    K::PteProt,
                    unmap,
                    K::Walk,
                ][t as usize % 8],
            }
        }
    };
    let k = stage_fix(TAG_TABLE[t as usize]);
    let i = t as usize % 8;
    let k = match profile {
        Profile::Any | Profile::Hyp | Profile::Stage2 => k,
        Profile::HostStage2 => match k {
            K::S2Map | K::S2SetOwner | K::S2Annotate | K::S2Unmap | K::GetLeaf => k,
            _ => [
                map,
                map,
                K::S2SetOwner,
                unmap,
                K::GetLeaf,
                map,
                K::S2SetOwner,
                unmap,
            ][i],
        },
        Profile::Walk => match k {
            K::Walk | K::HypMap | K::S2Map | K::HypUnmap | K::S2Unmap | K::GetLeaf => k,
            _ => [
                K::Walk,
                K::Walk,
                K::Walk,
                map,
                K::Walk,
                K::Walk,
                unmap,
                K::Walk,
            ][i],
        },
        Profile::Unlinked => match k {
            K::S2Split
            | K::S2CreateUnlinked
            | K::S2FreeUnlinked
            | K::S2Map
            | K::S2Unmap
            | K::GetLeaf
            | K::Walk => k,
            _ => [
                K::S2Split,
                K::S2CreateUnlinked,
                K::S2FreeUnlinked,
                map,
                K::S2Split,
                K::S2CreateUnlinked,
                map,
                K::S2FreeUnlinked,
            ][i],
        },
    };
    // Profiles force their stage, so this only matters for direct callers
    // passing an unusual (stage, profile) pair.
    stage_fix(k.on_line(line))
}

/// Granules of random configs. Bytes 0, 1, 2 are 4K, 16K, 64K (what the
/// encoder writes); the rest favour 4K because teardown visits every root
/// entry, and 16K/64K roots hold 4x/16x more of them: 5/8 of random inputs
/// run at 4K, 2/8 at 16K and 1/8 at 64K.
const GRANULE_MENU: [Granule; 8] = [
    Granule::K4,
    Granule::K16,
    Granule::K64,
    Granule::K4,
    Granule::K4,
    Granule::K16,
    Granule::K4,
    Granule::K4,
];
/// log2 of the most `destroy_range` calls a decoded range teardown makes
/// (16384: the 16K, 40-bit, two-block chunks of a committed scenario).
pub const MAX_DECODED_CHUNKS_LOG2: u32 = 14;
const IA_MENU_HYP: [u8; 8] = [39, 48, 36, 47, 42, 52, 40, 44];
const IA_MENU_S2: [u8; 8] = [40, 32, 36, 44, 48, 52, 39, 42];
const ARENA_MENU: [u32; 8] = [64, 128, 256, 512, 1024, 2048, 4096, 96];
/// Kernel lines by the header byte's high nibble: the encoder writes the
/// first index of a line; random inputs run each line half the time. Index
/// 0 is 6.12, so every input written before there were two lines keeps
/// meaning 6.12.
const LINE_MENU: [KernelLine; 16] = {
    let mut m = [KernelLine::V6_12; 16];
    let mut i = 1;
    while i < 16 {
        m[i] = KernelLine::V7_3;
        i += 2;
    }
    m
};

fn decode_config(r: &mut Reader, profile: Profile, line: Option<KernelLine>) -> Config {
    let header = LINE_MENU[usize::from(r.u8() >> 4)];
    let kernel = line.unwrap_or(header);
    let mut stage = if r.u8() & 1 == 0 {
        Stage::Hyp
    } else {
        Stage::Stage2
    };
    match profile {
        Profile::Hyp => stage = Stage::Hyp,
        Profile::Stage2 | Profile::HostStage2 | Profile::Unlinked => stage = Stage::Stage2,
        Profile::Walk | Profile::Any => {}
    }
    let b = r.u8();
    // The hyp target is mostly the hypervisor's own stage-1 at EL2: the
    // kernel's copy (nVHE without pKVM) only ever maps. Bytes 0 and 1 (what
    // the encoder writes) keep their meaning in every profile.
    let kernel_context = match profile {
        Profile::Hyp => b % 4 == 1,
        _ => b & 1 == 1,
    };
    let mut context = if kernel_context {
        Context::Kernel
    } else {
        Context::Nvhe
    };
    let granule = GRANULE_MENU[(r.u8() % 8) as usize];
    let mut features = Features::from_bits(r.u8());
    if granule == Granule::K64 {
        features.lpa2 = false;
    }
    if !kernel.is_v7() {
        features.xnx = false;
    }
    let fb = r.u8();
    let mut s2_flags = S2Flags {
        idmap: fb & 1 != 0,
        nofwb: fb & 2 != 0 && !kernel.is_v7(),
        as_s1: fb & 2 != 0 && kernel.is_v7(),
    };
    let range = Config::ia_bits_range(stage);
    let (lo, hi) = (*range.start(), *range.end());
    let m = r.u8();
    let ia_bits = if m == LIT || m % 4 == 3 {
        lo + r.u8() % (hi - lo + 1)
    } else {
        let menu = match stage {
            Stage::Hyp => IA_MENU_HYP,
            Stage::Stage2 => IA_MENU_S2,
        };
        menu[(m >> 2) as usize % 8].clamp(lo, hi)
    };
    let b = r.u8();
    // Levels the granule does not have read as its first level.
    let start_level =
        (b >= 0xC0).then(|| (((b & 15) % 5) as i8 - 1).max(granule.min_start_level()));
    let mmfr0_parange = r.u8() % (PARANGE_MAX + 1);
    let b = r.u8();
    let vmid16 = b & 1 != 0;
    let teardown = match (b >> 1) & 7 {
        k @ 1..=7 if kernel.is_v7() && stage == Stage::Stage2 => {
            let blocks_log2 = (k - 1).min(CHUNK_BLOCKS_LOG2_MAX);
            let chunk_shift =
                granule.level_shift(granule.min_block_level()) + u32::from(blocks_log2);
            // KVM makes one destroy_range call per chunk over the whole IPA
            // space: 2^27 calls for a 52-bit 16K table, minutes per input, a
            // timeout on OSS-Fuzz. Fuzz inputs keep the range teardowns of up
            // to MAX_DECODED_CHUNKS calls (every committed scenario's) and
            // tear larger spaces down whole; text streams may still ask.
            if u32::from(ia_bits).saturating_sub(chunk_shift) <= MAX_DECODED_CHUNKS_LOG2 {
                Teardown::RangeChunks { blocks_log2 }
            } else {
                Teardown::Destroy
            }
        }
        _ => Teardown::Destroy,
    };
    let m = r.u8();
    // At most ARENA_BYTES_MAX of simulated memory per side (see the model).
    let cap = (ARENA_BYTES_MAX / granule.page_size()).max(u64::from(ARENA_PAGES_MIN)) as u32;
    let arena_pages = if m == LIT {
        (ARENA_PAGES_MIN + r.u16() as u32 % (ARENA_PAGES_MAX - ARENA_PAGES_MIN + 1)).min(cap)
    } else {
        ARENA_MENU[m as usize % 8].min(cap)
    };
    let m = r.u8();
    let alloc_fail_after = match m {
        LIT => Some(r.u32()),
        0..0xC0 => None,
        _ => Some(r.u8() as u32 % 64),
    };
    let mut config = Config {
        kernel,
        stage,
        context,
        granule,
        ia_bits,
        start_level,
        s2_flags,
        features,
        mmfr0_parange,
        vmid16,
        force_pte: ForcePtePolicy::None,
        arena_pages,
        alloc_fail_after,
        teardown,
    };
    let c = r.u8();
    let choice = if profile == Profile::HostStage2 {
        2
    } else {
        c % 4
    };
    config.force_pte = match choice {
        0 | 1 => ForcePtePolicy::None,
        2 => {
            let n = r.u8() as usize % (MAX_REGIONS + 1);
            let n = if profile == Profile::HostStage2 && n == 0 {
                2
            } else {
                n
            };
            let mut regions = Vec::with_capacity(n);
            let mut prev_end = 0u64;
            let mut g = Gen::new(&config, profile);
            for _ in 0..n {
                let kind = if r.u8() & 1 == 0 {
                    RegionKind::Memory
                } else {
                    RegionKind::Mmio
                };
                let start = g.region_start(r, prev_end);
                let size = g.region_size(r);
                prev_end = start.wrapping_add(size);
                regions.push(Region { start, size, kind });
            }
            ForcePtePolicy::Host { regions }
        }
        _ => ForcePtePolicy::Arbitrary { pattern: r.u64() },
    };
    if profile == Profile::HostStage2 {
        context = Context::Nvhe;
        s2_flags.idmap = true;
        config.context = context;
        config.s2_flags = s2_flags;
    }
    config
}

/// Decodes fuzzer bytes into a stream. Total: every byte string (including
/// the empty one) decodes to a valid stream ([`OpStream::validate`] holds);
/// missing bytes read as zero, ops end with the input or at [`MAX_OPS`].
pub fn decode(bytes: &[u8], profile: Profile) -> OpStream {
    decode_on(bytes, profile, None)
}

/// Like [`decode`], with every input on kernel `line` when given (the
/// header's line bits are then ignored).
pub fn decode_on(bytes: &[u8], profile: Profile, line: Option<KernelLine>) -> OpStream {
    let mut r = Reader::new(bytes);
    let config = decode_config(&mut r, profile, line);
    let mut ops = Vec::new();
    let mut races = std::collections::BTreeMap::new();
    let mut g = Gen::new(&config, profile);
    let racing = races_decoded(profile, &config);
    let mut armed = None;
    while ops.len() < MAX_OPS && !r.exhausted() {
        let tag = r.u8();
        if racing && tag & 63 == RACE_TAG {
            armed = Some(Race::decode(&mut r, &config));
            continue;
        }
        let kind = kind_for_tag(tag, config.stage, config.kernel, profile);
        let op = decode_op(kind, &mut r, &mut g);
        if let Some(race) = armed.take() {
            races.insert(ops.len(), race.resolve(&op, &config));
        }
        ops.push(op);
    }
    OpStream { config, ops, races }
}

fn encode_config(w: &mut Writer, c: &Config) {
    let line = LINE_MENU
        .iter()
        .position(|&l| l == c.kernel)
        .expect("every line is in the menu") as u8;
    w.byte(FORMAT_VERSION | line << 4);
    w.byte(match c.stage {
        Stage::Hyp => 0,
        Stage::Stage2 => 1,
    });
    w.byte(match c.context {
        Context::Nvhe => 0,
        Context::Kernel => 1,
    });
    w.byte(match c.granule {
        Granule::K4 => 0,
        Granule::K16 => 1,
        Granule::K64 => 2,
    });
    w.byte(c.features.to_bits());
    w.byte(c.s2_flags.idmap as u8 | ((c.s2_flags.nofwb || c.s2_flags.as_s1) as u8) << 1);
    let lo = *Config::ia_bits_range(c.stage).start();
    w.lit8(c.ia_bits.wrapping_sub(lo));
    w.byte(match c.start_level {
        None => 0,
        Some(l) => 0xC0u8.wrapping_add(l.wrapping_add(1) as u8),
    });
    w.byte(c.mmfr0_parange);
    let teardown = match c.teardown {
        Teardown::Destroy => 0,
        Teardown::RangeChunks { blocks_log2 } => blocks_log2 + 1,
    };
    w.byte(c.vmid16 as u8 | teardown << 1);
    w.byte(LIT);
    w.0.extend_from_slice(&(c.arena_pages.wrapping_sub(ARENA_PAGES_MIN) as u16).to_le_bytes());
    match c.alloc_fail_after {
        None => w.byte(0),
        Some(n) => w.lit32(n),
    }
    match &c.force_pte {
        ForcePtePolicy::None => w.byte(0),
        ForcePtePolicy::Host { regions } => {
            w.byte(2);
            w.byte(regions.len() as u8);
            for g in regions {
                w.byte(match g.kind {
                    RegionKind::Memory => 0,
                    RegionKind::Mmio => 1,
                });
                w.lit64(g.start);
                w.lit64(g.size);
            }
        }
        ForcePtePolicy::Arbitrary { pattern } => {
            w.byte(3);
            w.0.extend_from_slice(&pattern.to_le_bytes());
        }
    }
}

/// Encodes a stream as fuzzer bytes using only literal modes and canonical
/// tags. For every valid stream `s` (see [`OpStream::validate`]),
/// `decode(&encode(s), Profile::Any) == s`. Invalid streams are encoded
/// on a best-effort basis (the result decodes to some valid stream).
pub fn encode(s: &OpStream) -> Vec<u8> {
    let mut w = Writer(Vec::new());
    encode_config(&mut w, &s.config);
    for (i, op) in s.ops.iter().take(MAX_OPS).enumerate() {
        if let Some(race) = s.race(i) {
            w.byte(RACE_TAG);
            race.encode_into(&mut w);
        }
        op.encode_into(&mut w);
    }
    w.0
}
