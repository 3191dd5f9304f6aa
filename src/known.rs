// SPDX-License-Identifier: GPL-2.0-only
//! Known kernel divergences: behaviour of the kernel's pgtable.c that is
//! wrong (or at least unsafe), that rust-pgtable reproduces faithfully, and
//! that therefore shows up as a finding of a *rule* (an architecture rule or
//! a kernel contract), never as a C/Rust difference.
//!
//! Each entry has a minimal reproducer under `tests/known/`, an explanation
//! (also in `docs/KNOWN-DIVERGENCES.md`) and a test that keeps it visible:
//! if the kernel changes, the test fails and the entry must be revisited.
//!
//! An entry is recognised from the finding the architecture oracle makes
//! ([`recognise`]: which rule, in which op, on which descriptors), never
//! from a trace pattern of its own. Recognising it never relaxes the C/Rust
//! comparison: both sides must still agree event for event, byte for byte.
//! It only stops the rules the entry explains ([`Known::explains`]) from
//! reporting the consequences of that step, and the end-of-run check (empty
//! arena after destroy) from reporting a leak the entry explains.

use crate::opstream::{Config, Op, Stage};
use crate::oracle::arch::{Breach, Rule};

/// A known kernel divergence.
#[derive(Clone, Copy, Debug)]
pub struct Known {
    pub id: &'static str,
    pub title: &'static str,
    /// Reproducer, relative to the repository root.
    pub reproducer: &'static str,
    /// The rules whose findings in the step where it is recognised are its
    /// consequences.
    pub explains: &'static [Rule],
    /// Whether the entry leaks table pages, so that pages left after
    /// destroy are its consequence too.
    pub leaks: bool,
    /// Whether a finding (in `op` of a stream configured by the `Config`)
    /// is this entry.
    pub recognise: fn(&Breach, Option<&Op>, &Config) -> bool,
}

/// KD-1: `kvm_pgtable_hyp_map()` of a range inside an existing hyp block.
pub const KD1: Known = Known {
    id: "KD-1",
    title: "hyp map inside an existing block replaces the valid block with a table \
            without break-before-make and leaks a reference on the parent table",
    reproducer: "tests/known/kd1-hyp-map-into-block.txt",
    explains: &[Rule::BreakBeforeMake, Rule::StaleTlb, Rule::Refcount],
    leaks: true,
    recognise: kd1,
};

/// KD-1 is the break-before-make finding of a hyp map whose store turns a
/// valid block (`0b01` at a level above 3) straight into a table (`0b11`).
fn kd1(b: &Breach, op: Option<&Op>, cfg: &Config) -> bool {
    let (Some(old), Some(new), Some(slot)) = (b.old, b.new, b.slot) else {
        return false;
    };
    b.rule == Rule::BreakBeforeMake
        && b.cause.is_none()
        && cfg.stage == Stage::Hyp
        && matches!(op, Some(Op::HypMap { .. }))
        && slot.level < 3
        && old & 0b11 == 0b01
        && new & 0b11 == 0b11
}

/// KD-2: 7.x `kvm_pgtable_stage2_relax_perms()` with FEAT_XNX and only one
/// of PX/UX takes the other execute permission away.
pub const KD2: Known = Known {
    id: "KD-2",
    title: "7.x relax_perms with one of PX/UX replaces the stage-2 XN field, taking the \
            other execute permission away, and invalidates only the local TLB",
    reproducer: "tests/known/kd2-relax-perms-xnx-removes-exec.txt",
    explains: &[Rule::StaleTlb],
    leaks: false,
    recognise: kd2,
};

/// KD-2 is the stale-TLB finding of a 7.x relax_perms whose change to the
/// leaf takes an execute permission away (XN[54:53]) and otherwise only
/// grants (S2AP read/write).
fn kd2(b: &Breach, op: Option<&Op>, cfg: &Config) -> bool {
    const XN: u64 = 3 << 53;
    const S2AP: u64 = 3 << 6;
    let (Some(old), Some(new)) = (b.old, b.new) else {
        return false;
    };
    // XN[54:53] -> {EL1, EL0} execute: 00 both, 01 EL0, 10 none, 11 EL1.
    let exec = |pte: u64| [3u8, 2, 0, 1][(pte >> 53 & 3) as usize];
    b.rule == Rule::StaleTlb
        && cfg.stage == Stage::Stage2
        && matches!(op, Some(Op::S2RelaxPermsFlags { .. }))
        && old & 1 == 1
        && new & 1 == 1
        && (old ^ new) & !(XN | S2AP) == 0
        && old & !new & S2AP == 0
        && exec(old) & !exec(new) != 0
}

/// KD-3: stage-2 unmap with FWB and FEAT_TLBIRANGE defers its leaf TLBIs
/// to a range flush that rounds the size down.
pub const KD3: Known = Known {
    id: "KD-3",
    title: "stage-2 unmap with FWB and range TLBIs: the deferred range flush covers \
            size >> PAGE_SHIFT pages, fewer than the walk (rounded up to pages) cleared",
    reproducer: "tests/known/kd3-unmap-deferred-flush-rounds-down.txt",
    explains: &[Rule::StaleTlb],
    leaks: false,
    recognise: kd3,
};

/// KD-3 is a stale-TLB finding of a stage-2 unmap that defers its TLBIs
/// (`stage2_unmap_defer_tlb_flush`: FEAT_TLBIRANGE and FWB, 6.12 also
/// without NOFWB) whose stale entry overlaps the range the walk covered,
/// `[addr & ~(PAGE_SIZE-1), PAGE_ALIGN(that + size))`, and not the range the
/// flush covered, `size >> PAGE_SHIFT` pages from there (empty when `size`
/// is below a page).
fn kd3(b: &Breach, op: Option<&Op>, cfg: &Config) -> bool {
    let (Some(Op::S2Unmap { addr, size }), Some(slot)) = (op, b.slot) else {
        return false;
    };
    // 6.12 asks the table (NOFWB), 7.x only the CPU.
    let fwb = cfg.features.fwb && (cfg.kernel.is_v7() || !cfg.s2_flags.nofwb);
    let page = cfg.granule.page_size();
    let start = addr & !(page - 1);
    let walk_end = start.saturating_add(*size).saturating_add(page - 1) & !(page - 1);
    let flush_end = start.saturating_add((size >> cfg.granule.page_shift()) * page);
    let entry_end = slot
        .ia
        .saturating_add(cfg.granule.level_size(slot.level).unwrap_or(u64::MAX));
    b.rule == Rule::StaleTlb
        && cfg.stage == Stage::Stage2
        && cfg.features.tlb_range
        && fwb
        && slot.ia < walk_end
        && entry_end > start
        && !(flush_end > start && slot.ia < flush_end && entry_end > start)
}

/// KD-4: 6.12 hyp map of a PA outside the PA range installs blocks whose
/// output address is not aligned to the block size.
pub const KD4: Known = Known {
    id: "KD-4",
    title: "6.12 hyp map of a PA at or above the kernel's PA limit skips the block alignment \
            check (kvm_phys_is_valid) and writes misaligned, truncated block descriptors",
    reproducer: "tests/known/kd4-hyp-map-pa-above-limit.txt",
    explains: &[Rule::WellFormed],
    leaks: false,
    recognise: kd4,
};

/// KD-4 is the well-formedness finding of a 6.12 hyp map whose block is
/// written for a PA (the op's `phys`, page-aligned, plus the offset of the
/// entry in the range) that `kvm_phys_is_valid()` calls invalid: at or above
/// 2^52 with LPA2 or 64K pages (`CONFIG_ARM64_PA_BITS_52`), 2^48 otherwise.
fn kd4(b: &Breach, op: Option<&Op>, cfg: &Config) -> bool {
    let (Some(Op::HypMap { addr, phys, .. }), Some(slot)) = (op, b.slot) else {
        return false;
    };
    let page = cfg.granule.page_size();
    let limit_bits = if cfg.features.lpa2 || cfg.granule == crate::opstream::Granule::K64 {
        52
    } else {
        48
    };
    let pa = (phys & !(page - 1)).wrapping_add(slot.ia.wrapping_sub(addr & !(page - 1)));
    b.rule == Rule::WellFormed
        && !cfg.kernel.is_v7()
        && cfg.stage == Stage::Hyp
        && slot.level < 3
        && b.new.is_some_and(|d| d & 0b11 == 0b01)
        && pa >> limit_bits != 0
}

/// Every known divergence.
pub const ALL: &[Known] = &[KD1, KD2, KD3, KD4];

/// The known divergence `b` (found in `op` of a stream configured by `cfg`)
/// is, if any.
pub fn recognise(b: &Breach, op: Option<&Op>, cfg: &Config) -> Option<&'static Known> {
    ALL.iter().find(|k| (k.recognise)(b, op, cfg))
}

/// Whether one of the divergences `seen` (ids) leaks table pages.
pub fn explains_leak(seen: &[&str]) -> bool {
    ALL.iter().any(|k| k.leaks && seen.contains(&k.id))
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

    /// The kernel still behaves as KD-1 describes. The table (4K, 48-bit
    /// VA, arena at 0x4000_0000): root page 0, level-1 table page 1,
    /// level-2 table page 2; the first map makes entry 1 of page 2
    /// (0x4000_2008, VA 0x200000) a 2 MiB block at 0x80200000 with R
    /// attributes (XN bit 54, AF, SH inner, AP read-only `0b11`, valid
    /// block: 0x0040_0000_8020_07c1). Mapping page 0x201000 allocates page
    /// 3 (event 0), takes a reference on page 2 (event 1) and stores the
    /// table descriptor 0x4000_3003 straight over the block (event 2): the
    /// break-before-make finding. Its leaked reference leaves page 2 with
    /// refcount 1 after destroy.
    #[test]
    fn kd1_is_still_present() {
        let stream = load(KD1.reproducer);
        let strict = executor::run_strict(&stream, RunOptions::default()).unwrap_err();
        assert_eq!(strict.step, Step::Op(1));
        let What::Arch(b) = &strict.what else {
            panic!("{strict}");
        };
        assert_eq!(b.rule, Rule::BreakBeforeMake);
        assert_eq!((b.event, b.cause), (Some(2), None));
        assert_eq!(
            b.slot,
            Some(crate::oracle::arch::Slot {
                pa: 0x4000_2008,
                level: 2,
                ia: 0x20_0000
            })
        );
        assert_eq!(b.old, Some(0x0040_0000_8020_07c1));
        assert_eq!(b.new, Some(0x4000_3003));
        // Without the architecture oracle, the leak is what shows.
        let opts = RunOptions {
            no_arch: true,
            ..RunOptions::default()
        };
        let leak = executor::run_strict(&stream, opts).unwrap_err();
        assert_eq!(leak.step, Step::Destroy);
        assert_eq!(
            leak.what,
            What::NotEmpty {
                a: vec![(0x4000_2000, 1)],
                b: vec![(0x4000_2000, 1)]
            }
        );
        // The normal run recognises it and reports no finding, C-only too.
        let summary = executor::run(&stream, RunOptions::default()).unwrap();
        assert_eq!(summary.known, vec![KD1.id]);
        let c_only = RunOptions {
            c_only: true,
            ..RunOptions::default()
        };
        assert_eq!(executor::run(&stream, c_only).unwrap().known, vec![KD1.id]);
    }
}

#[cfg(test)]
mod kd2_tests {
    use super::*;
    use crate::executor::{self, RunOptions};
    use crate::report::{Step, What};

    /// The 7.3 kernel still behaves as KD-2 describes. The reproducer maps
    /// IPA 0 (4K, 40-bit IPA: two concatenated level-1 root pages at
    /// 0x4000_0000, then tables at pages 2 and 3) as R|UX: S2AP read
    /// (bit 6), MemAttr 0b1111, SH inner, AF, XN[54:53] = 0b01, page:
    /// 0x0020_0000_8000_077f at 0x4000_3000. relax_perms(R|PX) sets XN to
    /// 0b11 (0x0060_0000_8000_077f, event 0) and issues only the nsh TLBI
    /// (event 1): EL0 execute is gone while the other PEs may keep it.
    #[test]
    fn kd2_is_still_present() {
        let text =
            std::fs::read_to_string(format!("{}/{}", env!("CARGO_MANIFEST_DIR"), KD2.reproducer))
                .unwrap();
        let stream = crate::opstream::parse(&text).unwrap();
        let strict = executor::run_strict(&stream, RunOptions::default()).unwrap_err();
        assert_eq!(strict.step, Step::Op(1));
        let What::Arch(b) = &strict.what else {
            panic!("{strict}");
        };
        assert_eq!(b.rule, Rule::StaleTlb);
        assert_eq!((b.event, b.cause), (None, Some(0)));
        assert_eq!(
            b.slot.map(|s| (s.pa, s.level, s.ia)),
            Some((0x4000_3000, 3, 0))
        );
        assert_eq!(b.old, Some(0x0020_0000_8000_077f));
        assert_eq!(b.new, Some(0x0060_0000_8000_077f));
        let summary = executor::run(&stream, RunOptions::default()).unwrap();
        assert_eq!(summary.known, vec![KD2.id]);
    }
}

#[cfg(test)]
mod kd3_tests {
    use super::*;
    use crate::executor::{self, RunOptions};
    use crate::report::{Step, What};

    /// The kernel still behaves as KD-3 describes, on both lines. The
    /// reproducer (4K, 40-bit IPA, FWB and range TLBIs) maps IPA 0 and
    /// 0x1000 (level-3 table at arena page 3: slots 0x4000_3000 and
    /// 0x4000_3008), then unmaps `size = 0x1800`: the walk clears both
    /// pages, the deferred flush covers 0x1800 >> 12 = 1 page from IPA 0,
    /// so the page at IPA 0x1000 stays in the TLB. Its descriptor: FWB
    /// normal memory (MemAttr 0b0110), S2AP RW, SH inner, AF, XN, page:
    /// 0x0040_0000_8000_17db.
    #[test]
    fn kd3_is_still_present() {
        let text =
            std::fs::read_to_string(format!("{}/{}", env!("CARGO_MANIFEST_DIR"), KD3.reproducer))
                .unwrap();
        for line in ["6.12", "7.3"] {
            let stream =
                crate::opstream::parse(&text.replace("kernel=6.12", &format!("kernel={line}")))
                    .unwrap();
            let strict = executor::run_strict(&stream, RunOptions::default()).unwrap_err();
            assert_eq!(strict.step, Step::Op(1), "{line}");
            let What::Arch(b) = &strict.what else {
                panic!("{strict}");
            };
            assert_eq!(b.rule, Rule::StaleTlb);
            assert_eq!(
                b.slot.map(|s| (s.pa, s.level, s.ia)),
                Some((0x4000_3008, 3, 0x1000))
            );
            assert_eq!(b.old, Some(0x0040_0000_8000_17db));
            let summary = executor::run(&stream, RunOptions::default()).unwrap();
            assert_eq!(summary.known, vec![KD3.id], "{line}");
        }
    }
}

#[cfg(test)]
mod kd4_tests {
    use super::*;
    use crate::executor::{self, RunOptions};
    use crate::report::{Step, What};

    /// 6.12 still behaves as KD-4 describes. The reproducer (4K, 48-bit VA:
    /// root page 0, level-1 table page 1, level-2 table page 2) maps 2 MiB
    /// at VA 0x200000 from PA 2^48 + 0x1000. That PA is "invalid"
    /// (>= 2^48), so the alignment test is skipped and entry 1 of page 2
    /// (0x4000_2008) becomes a 2 MiB block whose output address is the PA
    /// truncated to bits [47:12], 0x1000: not 2 MiB aligned. Descriptor:
    /// XN, AF, SH inner, AP read-only, block: 0x0040_0000_0000_17c1. 7.3
    /// checks the alignment whatever the PA and maps pages.
    #[test]
    fn kd4_is_still_present() {
        let text =
            std::fs::read_to_string(format!("{}/{}", env!("CARGO_MANIFEST_DIR"), KD4.reproducer))
                .unwrap();
        let stream = crate::opstream::parse(&text).unwrap();
        let strict = executor::run_strict(&stream, RunOptions::default()).unwrap_err();
        assert_eq!(strict.step, Step::Op(0));
        let What::Arch(b) = &strict.what else {
            panic!("{strict}");
        };
        assert_eq!(b.rule, Rule::WellFormed);
        assert_eq!(
            b.slot.map(|s| (s.pa, s.level, s.ia)),
            Some((0x4000_2008, 2, 0x20_0000))
        );
        assert_eq!(b.new, Some(0x0040_0000_0000_17c1));
        let summary = executor::run(&stream, RunOptions::default()).unwrap();
        assert_eq!(summary.known, vec![KD4.id]);
        let v7 = crate::opstream::parse(&text.replace("kernel=6.12", "kernel=7.3")).unwrap();
        let summary = executor::run_strict(&v7, RunOptions::default()).unwrap();
        assert!(summary.known.is_empty());
    }
}
