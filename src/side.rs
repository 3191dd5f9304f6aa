// SPDX-License-Identifier: GPL-2.0-only
//! One interface over every implementation of the kvm_pgtable API.
//!
//! A [`Side`] is one implementation with its own [`Arena`], set up for one
//! stream configuration: the kernel's pgtable.c of some build
//! ([`crate::c_side::CSide`]) or rust-pgtable
//! ([`crate::rust_side::RustSide`]). The executor runs any two sides
//! through one loop and compares them (wasmtime's `DiffEngine` is the
//! model); [`OpHandler`] is the per-op half of the interface, generated from
//! the op table.
//!
//! The helpers below are the harness decisions every side must make the
//! same way (arena geometry, force_pte policy, ID registers, start-level
//! override, unlinked-table bookkeeping, walk visitor scripts).

use rust_pgtable as rp;

use crate::arena::{Arena, Geometry, Memcache};
use crate::caller::CallerProfile;
use crate::events::{Access, Trace};
use crate::force_pte::{ForcePte, MemRegion};
use crate::opstream::{
    self, Config, ForcePtePolicy, Op, OpHandler, Race, RegionKind, Teardown, VisitScript,
};
use crate::results::Outcome;
use crate::tree::Format;

/// Where a side's table lives, for reading it straight from its arena.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Root {
    /// PA of the top-level table (of its first page when concatenated).
    pub pgd: u64,
    /// Number of concatenated top-level pages.
    pub pages: u32,
    pub start_level: i8,
}

/// One implementation of the kvm_pgtable API, set up for one stream.
pub trait Side: OpHandler {
    /// What the report calls this side.
    fn label(&self) -> String;

    /// Creates the table the stream's configuration describes.
    fn init(&mut self) -> Outcome;

    /// Runs one op (its precondition, and its race's, have been checked
    /// by the caller) with `race` scheduled during its walk (see
    /// [`crate::race`]). The trace ends with the op's
    /// [`Event::Accesses`](crate::events::Event::Accesses).
    fn apply_raced(&mut self, op: &Op, race: Option<&Race>) -> Outcome;

    /// Runs one op without interference.
    fn apply(&mut self, op: &Op) -> Outcome {
        self.apply_raced(op, None)
    }

    /// Frees the unlinked tables still held, then destroys the table. The
    /// trace ends with the teardown's
    /// [`Event::Accesses`](crate::events::Event::Accesses).
    fn destroy(&mut self) -> Outcome;

    /// Logs every descriptor access (address and kind) of the following
    /// ops when `on`, for [`Side::take_accesses`].
    fn keep_accesses(&mut self, on: bool);

    /// The accesses logged since the last call (None when not logging).
    fn take_accesses(&mut self) -> Option<Vec<(u64, Access)>>;

    /// The side's simulated physical memory.
    fn arena(&self) -> &Arena;

    /// The table's root, once created (None before init, after destroy, or
    /// when init failed).
    fn root(&self) -> Option<Root>;

    /// Compares the events of the next [`Side::apply_raced`] or
    /// [`Side::destroy`] with `first`, the first side's trace of the same
    /// step, as they are recorded (see [`crate::events::Recorder`]), until
    /// [`Side::compared`]. Gives `first` back when this side records whole
    /// traces only (the default: the C side).
    fn compare_next(&mut self, first: Trace) -> Result<(), Trace> {
        Err(first)
    }

    /// Ends the comparison [`Side::compare_next`] began: `first` back, and
    /// this side's trace of the step when it differs from `first` (None:
    /// the step's outcome then holds no trace, the step's events were
    /// `first`'s exactly).
    fn compared(&mut self) -> (Trace, Option<Trace>) {
        unreachable!("compared() without a comparison under way")
    }
}

/// A stream's arena: the granule's page size, `arena_pages` pages, and the
/// memory source of the stream's caller ([`CallerProfile::pages`]).
pub fn arena_for(cfg: &Config) -> Arena {
    Arena::new(
        Geometry::new(cfg.granule.page_size(), cfg.arena_pages),
        CallerProfile::of(cfg).pages,
        cfg.alloc_fail_after,
    )
}

/// How a stream's descriptors are read (by the harness, e.g. to find the
/// pages of an unlinked table).
pub fn format_of(cfg: &Config) -> Format {
    Format {
        stage: cfg.stage,
        granule: cfg.granule,
        lpa2: cfg.features.lpa2,
        v7: cfg.kernel.is_v7(),
    }
}

/// The force_pte_cb policy of a stream.
pub fn force_pte_for(cfg: &Config) -> ForcePte {
    match &cfg.force_pte {
        ForcePtePolicy::None => ForcePte::None,
        ForcePtePolicy::Host { regions } => ForcePte::Host {
            memory: regions
                .iter()
                .filter(|r| r.kind == RegionKind::Memory)
                .map(|r| MemRegion {
                    start: r.start,
                    size: r.size,
                })
                .collect(),
            prot: cfg.kernel.prot(),
        },
        ForcePtePolicy::Arbitrary { pattern } => ForcePte::Arbitrary {
            pattern: *pattern,
            calls: 0,
        },
    }
}

/// ID_AA64MMFR0_EL1 and ID_AA64MMFR1_EL1 as `kvm_get_vtcr` reads them:
/// PARange in MMFR0[3:0], VMIDBits (0b0010 = 16 bits) in MMFR1[7:4].
pub fn id_registers(cfg: &Config) -> (u64, u64) {
    let mmfr1 = if cfg.vmid16 { 0x20 } else { 0 };
    (u64::from(cfg.mmfr0_parange), mmfr1)
}

/// `vtcr` with the stream's start-level override in VTCR_EL2.SL0 (bits
/// [7:6]): SL0 = TGRAN_SL0_BASE - level, the base being 2 for 4K and 3 for
/// 16K/64K (Arm ARM, VTCR_EL2.SL0), clamped to the field.
pub fn with_start_level(cfg: &Config, vtcr: u64) -> u64 {
    match cfg.start_level {
        None => vtcr,
        Some(level) => {
            let base: i64 = if cfg.granule == opstream::Granule::K4 {
                2
            } else {
                3
            };
            let sl0 = (base - i64::from(level)).clamp(0, 3) as u64;
            (vtcr & !(3 << 6)) | (sl0 << 6)
        }
    }
}

/// `enum kvm_pgtable_stage2_flags` of the stream, in its line's encoding.
pub fn stage2_flags(cfg: &Config) -> u32 {
    cfg.s2_flags.bits(cfg.kernel)
}

/// The `kvm_pgtable_stage2_destroy_range` calls of a range teardown of a
/// table translating `ia_bits` bits, as 7.x KVM's `stage2_destroy_range`
/// makes them: consecutive chunks of `chunk` bytes (a multiple of the
/// largest block), each ending at the next chunk boundary or at the end.
/// None for any other teardown.
///
/// An iterator, not a list: both sides tear down every run, and a list of
/// up to 2^14 chunks built for each (fresh pages every time under ASan)
/// is work the calls themselves do not need.
pub fn teardown_chunks(cfg: &Config, ia_bits: u32) -> impl Iterator<Item = (u64, u64)> + use<> {
    let chunk = match cfg.teardown {
        Teardown::RangeChunks { blocks_log2 } => {
            let block = cfg
                .granule
                .level_size(cfg.granule.min_block_level())
                .expect("the largest block fits in 64 bits");
            Some(block << blocks_log2)
        }
        _ => None,
    };
    // 2^64 wraps to 0, which the comparisons below treat as the top.
    let end = 1u64.checked_shl(ia_bits).unwrap_or(0);
    // The next chunk's start, None once the end is reached.
    let mut next_addr = chunk.map(|_| 0u64);
    std::iter::from_fn(move || {
        let (addr, chunk) = (next_addr?, chunk?);
        let boundary = (addr.wrapping_add(chunk)) & !(chunk - 1);
        let next = if boundary.wrapping_sub(1) < end.wrapping_sub(1) {
            boundary
        } else {
            end
        };
        next_addr = (next != end).then_some(next);
        Some((addr, next.wrapping_sub(addr)))
    })
}

/// rust-pgtable's granule for the model's.
pub fn rp_granule(g: opstream::Granule) -> rp::Granule {
    match g {
        opstream::Granule::K4 => rp::Granule::Size4K,
        opstream::Granule::K16 => rp::Granule::Size16K,
        opstream::Granule::K64 => rp::Granule::Size64K,
    }
}

/// The memcache an op passes (None: a NULL memcache).
pub fn memcache(mc: Option<u32>) -> Option<Memcache> {
    mc.map(|n| Memcache { nobjs: n })
}

/// Removes and returns unlinked table number `index % count` of a side's
/// list (None when it is empty), as `s2_free_unlinked` picks it.
pub fn take_unlinked(list: &mut Vec<(u64, i8)>, index: u8) -> Option<(u64, i8)> {
    if list.is_empty() {
        return None;
    }
    let i = usize::from(index) % list.len();
    Some(list.remove(i))
}

/// What a scripted walk visitor returns on its `n`-th visit (0-based).
pub fn script_result(script: VisitScript, n: usize) -> i32 {
    match script {
        VisitScript::Ok => 0,
        VisitScript::FailAt { n: at, errno } if n == usize::from(at) => i32::from(errno),
        VisitScript::FailAt { .. } => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::opstream::{Granule, Stage};

    fn chunks(granule: Granule, teardown: Teardown, ia_bits: u32) -> Vec<(u64, u64)> {
        let mut cfg = Config::new(Stage::Stage2);
        cfg.granule = granule;
        cfg.teardown = teardown;
        teardown_chunks(&cfg, ia_bits).collect()
    }

    /// Chunks of 2^k largest blocks (1 GiB on 4K, 32 MiB on 16K, 512 MiB
    /// on 64K: Arm ARM, the level-1 or level-2 block sizes), cut at the
    /// end of the input range; worked out by hand.
    #[test]
    fn a_range_teardown_covers_the_input_range_in_chunks_of_whole_blocks() {
        const GIB: u64 = 1 << 30;
        let one = Teardown::RangeChunks { blocks_log2: 0 };
        // 4K, 32-bit IPA: four 1 GiB chunks.
        assert_eq!(
            chunks(Granule::K4, one, 32),
            [(0, GIB), (GIB, GIB), (2 * GIB, GIB), (3 * GIB, GIB)]
        );
        // 4K, 33-bit IPA, 4 blocks a chunk: two chunks of 4 GiB.
        let four = Teardown::RangeChunks { blocks_log2: 2 };
        assert_eq!(
            chunks(Granule::K4, four, 33),
            [(0, 4 * GIB), (4 * GIB, 4 * GIB)]
        );
        // A chunk larger than the range: one call over the whole range.
        let sixty_four = Teardown::RangeChunks { blocks_log2: 6 };
        assert_eq!(chunks(Granule::K4, sixty_four, 32), [(0, 4 * GIB)]);
        // 16K, 32-bit IPA, one 32 MiB block a chunk: 128 chunks, in order.
        let c = chunks(Granule::K16, one, 32);
        assert_eq!(c.len(), 128);
        assert!(
            c.iter()
                .enumerate()
                .all(|(i, &ch)| ch == (i as u64 * (32 << 20), 32 << 20))
        );
        // 64K, 36-bit IPA, two 512 MiB blocks a chunk: 64 GiB / 1 GiB.
        let two = Teardown::RangeChunks { blocks_log2: 1 };
        assert_eq!(chunks(Granule::K64, two, 36).len(), 64);
        // The whole-table teardown makes no range calls.
        assert_eq!(chunks(Granule::K4, Teardown::Destroy, 40), []);
    }
}
