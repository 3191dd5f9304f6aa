// SPDX-License-Identifier: GPL-2.0-only
//! Reading page tables straight out of an arena, without calling either
//! implementation: used to decode descriptors in reports and to check the
//! host stage-2 ownership invariant.

use std::collections::HashSet;
use std::fmt::Write as _;

use crate::arena::Arena;
use crate::hash::FoldMap;
use crate::opstream::{Granule, Stage};

/// The 7.x invalid-PTE types (bits [63:60]) by number.
const INVALID_TYPES: [&str; 4] = [
    "none",
    "LOCKED (break-before-make in progress)",
    "host donation",
    "guest poisoned",
];

/// How to read descriptors of one table tree.
#[derive(Clone, Copy, Debug)]
pub struct Format {
    pub stage: Stage,
    pub granule: Granule,
    pub lpa2: bool,
    /// 7.x: invalid-PTE types in bits [63:60], two stage-2 XN bits.
    pub v7: bool,
}

impl Format {
    fn page_shift(&self) -> u32 {
        self.granule.page_shift()
    }

    /// Output address of a valid descriptor (or of a table descriptor).
    pub fn output_address(&self, pte: u64) -> u64 {
        let ps = self.page_shift();
        if self.lpa2 {
            (pte & mask(49, ps)) | (((pte >> 8) & 3) << 50)
        } else if self.granule == Granule::K64 {
            (pte & mask(47, ps)) | (((pte >> 12) & 0xf) << 48)
        } else {
            pte & mask(47, ps)
        }
    }

    /// Bytes covered by one entry at `level`.
    pub fn entry_size(&self, level: i8) -> u64 {
        self.granule.level_size(level).unwrap_or(0)
    }

    /// Whether `pte` at `level` points to a next-level table.
    pub fn is_table(&self, pte: u64, level: i8) -> bool {
        level < 3 && pte & 0b11 == 0b11
    }
}

fn mask(hi: u32, lo: u32) -> u64 {
    (u64::MAX >> (63 - hi)) & (u64::MAX << lo)
}

/// Where a table page sits in the tree.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TablePos {
    pub level: i8,
    /// Input address covered by the table's entry 0.
    pub base: u64,
}

/// Table pages of a tree, keyed by PA.
#[derive(Clone, Debug, Default)]
pub struct TreeIndex {
    pub tables: FoldMap<u64, TablePos>,
}

impl TreeIndex {
    /// Indexes the tree rooted at `pgd` (`pgd_pages` concatenated pages).
    pub fn build(
        arena: &Arena,
        fmt: Format,
        pgd: u64,
        pgd_pages: u32,
        start_level: i8,
    ) -> TreeIndex {
        let mut idx = TreeIndex::default();
        let page = arena.geometry().page_size;
        let span = fmt.entry_size(start_level).saturating_mul(page / 8);
        for i in 0..u64::from(pgd_pages) {
            let mut seen = HashSet::new();
            walk(
                arena,
                fmt,
                pgd + i * page,
                start_level,
                span.wrapping_mul(i),
                &mut idx,
                &mut seen,
            );
        }
        idx
    }

    /// Level and input address of the descriptor at `pa`, if its table is known.
    pub fn locate(&self, pa: u64, page_size: u64, fmt: Format) -> Option<(i8, u64)> {
        let page = pa & !(page_size - 1);
        let pos = self.tables.get(&page)?;
        let index = (pa - page) / 8;
        Some((
            pos.level,
            pos.base
                .wrapping_add(index.wrapping_mul(fmt.entry_size(pos.level))),
        ))
    }

    /// Every non-zero invalid leaf (owner annotation), as (IA, level, pte).
    pub fn annotations(&self, arena: &Arena, fmt: Format) -> Vec<(u64, i8, u64)> {
        let mut out = Vec::new();
        for (&pa, &pos) in &self.tables {
            annotations_in(arena, fmt, pa, pos, &mut out);
        }
        out.sort_unstable();
        out
    }
}

/// Appends the owner annotations in table page `pa` (at `pos`) to `out`.
pub fn annotations_in(
    arena: &Arena,
    fmt: Format,
    pa: u64,
    pos: TablePos,
    out: &mut Vec<(u64, i8, u64)>,
) {
    if arena.read(pa).is_none() {
        return;
    }
    for (i, &d) in arena.page_words(pa).iter().enumerate() {
        if d != 0 && d & 1 == 0 {
            let ia = pos
                .base
                .wrapping_add((i as u64).wrapping_mul(fmt.entry_size(pos.level)));
            out.push((ia, pos.level, d));
        }
    }
}

/// Indexes the table at `table` and everything below it; true when a page
/// was reached again (and not walked twice).
fn walk(
    arena: &Arena,
    fmt: Format,
    table: u64,
    level: i8,
    base: u64,
    idx: &mut TreeIndex,
    seen: &mut HashSet<u64>,
) -> bool {
    if !(-1..=3).contains(&level) {
        return false;
    }
    if !seen.insert(table) {
        return true;
    }
    if arena.read(table).is_none() {
        return false;
    }
    idx.tables.insert(table, TablePos { level, base });
    if level == 3 {
        return false;
    }
    let mut repeated = false;
    for (i, &d) in arena.page_words(table).iter().enumerate() {
        if fmt.is_table(d, level) {
            let child = fmt.output_address(d);
            let child_base = base.wrapping_add((i as u64).wrapping_mul(fmt.entry_size(level)));
            repeated |= walk(arena, fmt, child, level + 1, child_base, idx, seen);
        }
    }
    repeated
}

/// A one-line decoding of a descriptor: kind, output address and attributes.
pub fn describe(fmt: Format, pte: u64, level: Option<i8>) -> String {
    let mut s = String::new();
    if pte & 1 == 0 {
        if pte == 0 {
            return "invalid (empty)".into();
        }
        if fmt.stage == Stage::Stage2 && fmt.v7 {
            let t = (pte >> 60) as usize;
            let name = INVALID_TYPES.get(t).copied().unwrap_or("unknown");
            let _ = write!(s, "invalid, type {t} ({name})");
            let annot = pte & !(0xf << 60);
            if annot != 0 {
                let _ = write!(s, ", annotation {annot:#x}");
            }
            return s;
        }
        if fmt.stage == Stage::Stage2 {
            let owner = (pte >> 2) & 0xff;
            let locked = pte & (1 << 10) != 0;
            let _ = write!(s, "invalid, owner id {owner}");
            if locked {
                s.push_str(", LOCKED (break-before-make in progress)");
            }
            let other = pte & !((0xff << 2) | (1 << 10));
            if other != 0 {
                let _ = write!(s, ", other bits {other:#x}");
            }
            return s;
        }
        return format!("invalid, stray bits {pte:#x}");
    }
    let oa = fmt.output_address(pte);
    let is_page_level = level == Some(3);
    if pte & 2 != 0 && !is_page_level {
        if level.is_some() {
            return format!("table -> {oa:#x}");
        }
        let _ = write!(s, "table or page -> {oa:#x}; ");
    } else if pte & 2 != 0 {
        let _ = write!(s, "page -> {oa:#x}; ");
    } else if is_page_level {
        let _ = write!(s, "RESERVED (block type at level 3) -> {oa:#x}; ");
    } else {
        let _ = write!(s, "block -> {oa:#x}; ");
    }
    let sh = if fmt.lpa2 { None } else { Some((pte >> 8) & 3) };
    let af = (pte >> 10) & 1;
    let sw = (pte >> 55) & 0xf;
    let xn = (pte >> 54) & 1;
    match fmt.stage {
        Stage::Stage2 => {
            let s2ap = (pte >> 6) & 3;
            let ap = ["none", "RO", "WO", "RW"][s2ap as usize];
            let memattr = (pte >> 2) & 0xf;
            let _ = write!(s, "S2AP={s2ap:#04b}({ap}) MemAttr={memattr:#06b} ");
            if fmt.v7 {
                // FEAT_XNX: XN[54:53].
                let _ = write!(s, "XN={:#04b}", (pte >> 53) & 3);
            } else {
                let _ = write!(s, "XN={xn}");
            }
        }
        Stage::Hyp => {
            let ap = (pte >> 6) & 3;
            let attr = (pte >> 2) & 7;
            let gp = (pte >> 50) & 1;
            let pxn = (pte >> 53) & 1;
            let _ = write!(
                s,
                "AP={ap:#04b} AttrIndx={attr} XN/UXN={xn} PXN={pxn} GP={gp}"
            );
        }
    }
    if let Some(sh) = sh {
        let _ = write!(s, " SH={sh:#04b}");
    }
    let _ = write!(s, " AF={af} SW={sw:#06b}");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    const S2_4K: Format = Format {
        stage: Stage::Stage2,
        granule: Granule::K4,
        lpa2: false,
        v7: false,
    };

    #[test]
    fn describes_a_stage2_block() {
        // 2 MiB block at 0x8000_0000: AF, SH=inner, S2AP=RW, MemAttr=0b1111.
        let d = describe(S2_4K, 0x8000_0000 | 0x7fd, Some(2));
        assert_eq!(
            d,
            "block -> 0x80000000; S2AP=0b11(RW) MemAttr=0b1111 XN=0 SH=0b11 AF=1 SW=0b0000"
        );
    }

    #[test]
    fn describes_7x_invalid_types() {
        let v7 = Format { v7: true, ..S2_4K };
        assert_eq!(
            describe(v7, 2 << 60 | 1 << 1, Some(3)),
            "invalid, type 2 (host donation), annotation 0x2"
        );
        assert!(describe(v7, 1 << 60, Some(3)).contains("LOCKED"));
        // XN[54:53] = 0b11: executable at EL1 only.
        assert!(describe(v7, 0x8000_0000 | 3 << 53 | 0x7ff, Some(3)).contains("XN=0b11"));
    }

    #[test]
    fn describes_owner_annotations() {
        assert_eq!(describe(S2_4K, 1 << 2, Some(3)), "invalid, owner id 1");
        assert!(describe(S2_4K, 1 << 10, Some(3)).contains("LOCKED"));
    }

    #[test]
    fn output_address_formats() {
        let lpa2 = Format {
            lpa2: true,
            ..S2_4K
        };
        // PA bit 50 lives in descriptor bit 8 under LPA2.
        assert_eq!(
            lpa2.output_address((1 << 8) | 0x1000 | 3),
            (1 << 50) | 0x1000
        );
        let k64 = Format {
            granule: Granule::K64,
            ..S2_4K
        };
        // PA bits [51:48] live in descriptor bits [15:12] with 64K pages.
        assert_eq!(
            k64.output_address((0xf << 12) | 0x1_0000 | 3),
            (0xf << 48) | 0x1_0000
        );
    }
}
