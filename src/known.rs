// SPDX-License-Identifier: GPL-2.0-only
//! Known kernel divergences: behaviour of the kernel's pgtable.c that is
//! wrong (or at least unsafe), that rust-pgtable reproduces faithfully, and
//! that therefore shows up as a finding of an *invariant* (not as a C/Rust
//! difference).
//!
//! Each entry has a minimal reproducer under `tests/known/`, an explanation
//! (also in `docs/KNOWN-DIVERGENCES.md`) and a test that keeps it visible:
//! if the kernel changes, the test fails and the entry must be revisited.
//!
//! Recognising an entry never relaxes the C/Rust comparison: both sides
//! must still agree event for event, byte for byte. It only stops the
//! end-of-run invariant (empty arena after destroy) from reporting a
//! consequence the entry already explains.

use crate::events::Event;

/// A known kernel divergence.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Known {
    pub id: &'static str,
    pub title: &'static str,
    /// Reproducer, relative to the repository root.
    pub reproducer: &'static str,
}

/// KD-1: `kvm_pgtable_hyp_map()` of a range inside an existing hyp block.
pub const KD1: Known = Known {
    id: "KD-1",
    title: "hyp map inside an existing block replaces the valid block with a table \
            without break-before-make and leaks a reference on the parent table",
    reproducer: "tests/known/kd1-hyp-map-into-block.txt",
};

/// Every known divergence.
pub const ALL: &[Known] = &[KD1];

/// Whether `trace` (of either side) shows KD-1: a valid block descriptor
/// (`0b01` at a non-last level) replaced directly by a table descriptor.
/// Stage-2 code always breaks (locks) an entry first, so this store pattern
/// only arises from the hyp map path.
pub fn shows_kd1(trace: &[Event]) -> bool {
    trace.iter().any(
        |e| matches!(*e, Event::Store { old, val, .. } if old & 0b11 == 0b01 && val & 0b11 == 0b11),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::executor::{self, RunOptions};
    use crate::report::{Step, What};

    fn load(path: &str) -> crate::opstream::OpStream {
        let text =
            std::fs::read_to_string(format!("{}/{path}", env!("CARGO_MANIFEST_DIR"))).unwrap();
        crate::opstream::parse(&text).unwrap()
    }

    /// The kernel still behaves as KD-1 describes: mapping page 0x201000
    /// inside the 2 MiB block at 0x200000 (level 2, entry 1 of the level-2
    /// table at arena page 2) turns that entry into a table while the entry
    /// keeps its first reference, so after destroy the level-2 table page
    /// 0x4000_2000 is left with refcount 1 on both sides.
    #[test]
    fn kd1_is_still_present() {
        let stream = load(KD1.reproducer);
        let strict = executor::run_strict(&stream, RunOptions::default()).unwrap_err();
        assert_eq!(strict.step, Step::Destroy);
        assert_eq!(
            strict.what,
            What::NotEmpty {
                a: vec![(0x4000_2000, 1)],
                b: vec![(0x4000_2000, 1)]
            }
        );
        // The normal run recognises it and reports no finding.
        let summary = executor::run(&stream, RunOptions::default()).unwrap();
        assert_eq!(summary.known, vec![KD1.id]);
    }

    #[test]
    fn kd1_pattern() {
        let block_to_table = Event::Store {
            pa: 0,
            old: 0x8020_0000 | 0x7c1,
            val: 0x4000_3003,
            kind: crate::events::StoreKind::Release,
        };
        assert!(shows_kd1(&[block_to_table]));
        let bbm = Event::Store {
            pa: 0,
            old: 1 << 10,
            val: 0x4000_3003,
            kind: crate::events::StoreKind::Release,
        };
        assert!(!shows_kd1(&[bbm]));
    }
}
