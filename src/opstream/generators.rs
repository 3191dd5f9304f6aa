// SPDX-License-Identifier: GPL-2.0-only
//! Biased value generators used by the binary decoder.
//!
//! Every value is read as a *mode byte* followed by a mode-specific payload.
//! Mode [`LIT`] (0xFF) is always "literal": the payload is the exact value
//! in little-endian (8 bytes for u64, 4 for u32, 1 for u8/i8). That is the
//! only mode the encoder uses, and it means the same thing in every
//! [`Profile`]. All other mode bytes select a bug-finding bias (mode
//! `m % N` for a generator with `N` biased modes); profiles may map those
//! differently. Reading past the end of the input yields zero bytes.

use super::model::*;
use super::profile::Profile;

/// Literal mode byte: exact little-endian value follows.
pub(crate) const LIT: u8 = 0xFF;
/// Literal `None` for optional values that have one (memcache).
pub(crate) const LIT_NONE: u8 = 0xFE;

/// Byte reader that yields zeros once the input is exhausted.
pub(crate) struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(data: &'a [u8]) -> Self {
        Reader { data, pos: 0 }
    }

    pub(crate) fn exhausted(&self) -> bool {
        self.pos >= self.data.len()
    }

    pub(crate) fn u8(&mut self) -> u8 {
        let b = self.data.get(self.pos).copied().unwrap_or(0);
        self.pos = self.pos.saturating_add(1);
        b
    }

    pub(crate) fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.u8(), self.u8()])
    }

    pub(crate) fn u32(&mut self) -> u32 {
        let mut b = [0u8; 4];
        b.iter_mut().for_each(|x| *x = self.u8());
        u32::from_le_bytes(b)
    }

    pub(crate) fn u64(&mut self) -> u64 {
        let mut b = [0u8; 8];
        b.iter_mut().for_each(|x| *x = self.u8());
        u64::from_le_bytes(b)
    }
}

/// Small signed delta in `-max..=max` from a byte.
fn delta(b: u8, max: i64) -> i64 {
    (b as i8 as i64) % (max + 1)
}

/// Generator state: configuration, profile and a history of decoded
/// addresses and sizes (so later ops can hit earlier ranges).
pub(crate) struct Gen<'c> {
    pub(crate) cfg: &'c Config,
    pub(crate) profile: Profile,
    addrs: Vec<u64>,
    /// The addresses of the `s2_map`s decoded so far (for [`Self::fault_addr`]).
    maps: Vec<u64>,
    sizes: Vec<u64>,
    /// Levels whose entry size fits inside the IA space, 3 first (always
    /// contains 3).
    levels: Vec<i8>,
}

impl<'c> Gen<'c> {
    pub(crate) fn new(cfg: &'c Config, profile: Profile) -> Self {
        let lim = cfg.ia_limit();
        let levels = (-1..=3)
            .rev()
            .filter(|&l| cfg.granule.level_size(l).is_some_and(|s| s <= lim))
            .collect();
        Gen {
            cfg,
            profile,
            addrs: Vec::new(),
            maps: Vec::new(),
            sizes: Vec::new(),
            levels,
        }
    }

    fn page(&self) -> u64 {
        self.cfg.granule.page_size()
    }

    fn lim(&self) -> u64 {
        self.cfg.ia_limit()
    }

    /// A level picked from `b` (uniform over `self.levels`).
    fn level_from(&self, b: u8) -> i8 {
        self.levels[b as usize % self.levels.len()]
    }

    fn lsize(&self, level: i8) -> u64 {
        self.cfg.granule.level_size(level).unwrap_or(u64::MAX)
    }

    /// `k * size(level)` for `k` below the number of such blocks in the IA
    /// space (and below 256).
    fn boundary(&self, level: i8, k: u8) -> u64 {
        let sz = self.lsize(level);
        let n = (self.lim() / sz).clamp(1, 256);
        (k as u64 % n).wrapping_mul(sz)
    }

    fn host_regions(&self) -> &[Region] {
        match (&self.cfg.force_pte, self.profile) {
            (ForcePtePolicy::Host { regions }, Profile::HostStage2) => regions,
            _ => &[],
        }
    }

    /// Input address.
    pub(crate) fn addr(&mut self, r: &mut Reader) -> u64 {
        let v = self.addr_inner(r);
        self.addrs.push(v);
        v
    }

    /// Address of a permission fault (`relax_perms`): KVM relaxes an IPA
    /// the guest touched with too few permissions, so one it mapped before
    /// (mmu.c, the `perm_fault` path of the stage-2 abort handler). Three
    /// times in four the address of an earlier `s2_map` (half of those the
    /// latest map, as when the guest touches what it was just given; the
    /// others counted back from it) or one of the three pages after it, or,
    /// before any map, an earlier address; otherwise any address, as
    /// [`Self::addr`].
    pub(crate) fn fault_addr(&mut self, r: &mut Reader) -> u64 {
        let m = r.u8();
        let v = if m == LIT {
            r.u64()
        } else if m % 4 == 3 || self.addrs.is_empty() {
            self.addr_inner(r)
        } else {
            let b = r.u8();
            let base = match (self.maps.last(), b) {
                (Some(&latest), 0..128) => latest,
                (Some(_), _) => self.maps[self.maps.len() - 1 - b as usize % self.maps.len()],
                (None, _) => self.addrs[self.addrs.len() - 1 - b as usize % self.addrs.len()],
            };
            base.wrapping_add(u64::from((m >> 2) % 4) * self.page())
        };
        self.addrs.push(v);
        v
    }

    fn addr_inner(&mut self, r: &mut Reader) -> u64 {
        let m = r.u8();
        if m == LIT {
            return r.u64();
        }
        let page = self.page();
        let mode = m % 16;
        let regions = self.host_regions();
        if !regions.is_empty() && (9..=11).contains(&mode) {
            // Host profile: somewhere meaningful inside/around a region.
            let reg = regions[r.u8() as usize % regions.len()];
            let b = r.u8();
            let k = (b >> 2) as u64;
            return match b % 4 {
                0 => reg.start,
                1 => reg.start.wrapping_add(k.wrapping_mul(page)),
                2 => reg
                    .start
                    .wrapping_add(reg.size)
                    .wrapping_sub((k + 1).wrapping_mul(page)),
                _ => reg
                    .start
                    .wrapping_add(self.boundary(self.level_from(b >> 4), r.u8())),
            };
        }
        match mode {
            // Small page index (0 included).
            0..=2 => r.u8() as u64 * page,
            // Level-L boundary.
            3..=5 => {
                let l = self.level_from(r.u8());
                self.boundary(l, r.u8())
            }
            // Straddling a boundary: boundary +- a few pages.
            6 | 7 => {
                let l = self.level_from(r.u8());
                let k = r.u8().max(1);
                let d = delta(r.u8(), 4);
                self.boundary(l, k)
                    .wrapping_add_signed(d.wrapping_mul(page as i64))
            }
            // Around the IA limit.
            8 => {
                let b = r.u8();
                let k = 1 + ((b >> 2) % 4) as u64;
                match b % 4 {
                    0 => self.lim(),
                    1 => self.lim().wrapping_sub(k * page),
                    2 => self.lim().wrapping_add((k - 1) * page),
                    _ => self.lim().wrapping_sub(1),
                }
            }
            // Unaligned: a page plus a small sub-page offset.
            9 => {
                let base = r.u8() as u64 * page;
                let b = r.u8();
                let off = match b % 4 {
                    0 => 1 + (b >> 2) as u64,
                    1 => page - 1 - (b >> 2) as u64 % 8,
                    2 => page / 2,
                    _ => 8 * (1 + (b >> 2) as u64),
                };
                base + off
            }
            // Random page inside the IA space.
            10 => {
                let pages = (self.lim() / page).max(1);
                (r.u32() as u64 % pages) * page
            }
            // Top of the 64-bit space / wrap candidates.
            11 => {
                let b = r.u8();
                let k = ((b >> 2) % 8) as u64;
                match b % 4 {
                    0 => 0u64.wrapping_sub((k + 1) * page),
                    1 => u64::MAX - k,
                    2 => (1u64 << 63).wrapping_add(k * page),
                    _ => (1u64 << 52).wrapping_sub(k * page),
                }
            }
            // Reuse a previously decoded address, possibly nudged.
            _ => {
                let b = r.u8();
                let base = if self.addrs.is_empty() {
                    0
                } else {
                    self.addrs[b as usize % self.addrs.len()]
                };
                match r.u8() % 4 {
                    0 | 1 => base,
                    2 => base.wrapping_add(page),
                    _ => base.wrapping_sub(page),
                }
            }
        }
    }

    /// Size of a range starting at `addr`.
    pub(crate) fn size(&mut self, r: &mut Reader, addr: u64) -> u64 {
        let (v, _) = self.size_inner(r, addr);
        self.sizes.push(v);
        v
    }

    /// Size of a stage-2 map at `addr`: [`Gen::size`], with a guest's maps cut to
    /// what its caller maps in one call.
    ///
    /// KVM maps one page or one block per fault (`user_mem_abort`'s `vma_pagesize`, 6.12
    /// mmu.c:1663-1667, 7.3 mmu.c:2057-2059; `kvm_phys_addr_ioremap` a page per call): at
    /// most the granule's largest stage-2 block (4K's PUD, 1G; 16K's and 64K's PMD, 32M and
    /// 512M). pKVM maps a guest's 4K page or exactly one level-2 block
    /// (`__pkvm_host_share_guest`, 7.3 mem_protect.c:1488-1557; docs/CALLERS.md). A
    /// guest map is cut to that. Without the cut, valid maps of the whole IA space
    /// wrote an entry per block or page until the arena was full (up to 2 million events
    /// on a 64K, 52-bit stage-2): 16 inputs of 1211 were 61% of a steady-state stage2
    /// run. Sizes with the generator's escape (the mode byte's high nibble 15, 1 in 16)
    /// are not cut, so the kernel's handling of any larger range stays reachable; ranges
    /// past the IA limit are not cut either (the range checks fail them). `addr` is
    /// remembered as a map's, for the permission faults of [`Self::fault_addr`].
    pub(crate) fn map_size(&mut self, r: &mut Reader, addr: u64) -> u64 {
        self.maps.push(addr);
        let (v, escape) = self.size_inner(r, addr);
        let largest = match self.cfg.caller() {
            Caller::KvmGuest => Some(self.lsize(self.cfg.granule.min_block_level())),
            Caller::PkvmGuest => Some(self.lsize(2)),
            _ => None,
        };
        let v = match largest {
            Some(block) if !escape => {
                let valid = (addr as u128) + (v as u128) <= self.lim() as u128;
                if valid && v > block { block } else { v }
            }
            _ => v,
        };
        self.sizes.push(v);
        v
    }

    /// A size, and whether it came through an escape (a literal, or a mode byte
    /// whose high nibble is 15) that the shape rules leave as it is.
    fn size_inner(&mut self, r: &mut Reader, addr: u64) -> (u64, bool) {
        let m = r.u8();
        if m == LIT {
            return (r.u64(), true);
        }
        let v = self.size_from_mode(r, m, addr);
        // The pKVM host's ranges never cross from memory into MMIO or back (see
        // `host_span_end`); 1 size in 16 (mode byte's high nibble 15) may, so the
        // kernel's handling of such a range stays reachable.
        if m >> 4 == 15 {
            return (v, true);
        }
        match self.host_span_end(addr) {
            Some(end) if (addr as u128) + (v as u128) > end as u128 => (end - addr, false),
            _ => (v, false),
        }
    }

    /// The end of the pKVM host's "memory range" around `addr`, in the host profile:
    /// the end of the memory region holding `addr`, or else the start of the next
    /// memory region above it (or the IA limit). Every range the host hands to
    /// pgtable.c lies inside one such span. `host_stage2_idmap` maps what
    /// `find_mem_range` and `host_stage2_adjust_range` pick: a block-aligned range
    /// inside the memblock region, or the gap between two, around the faulting
    /// address (6.12 mem_protect.c:508-547, 7.3 mem_protect.c:721-807);
    /// `host_stage2_unmap_dev_all` unmaps the gaps one by one (6.12
    /// mem_protect.c:326-341); shares and donations are pages of memory.
    /// `None` outside the host profile or at or above the IA limit.
    fn host_span_end(&self, addr: u64) -> Option<u64> {
        let regions = self.host_regions();
        if regions.is_empty() || addr >= self.lim() {
            return None;
        }
        let memory = regions.iter().filter(|g| g.kind == RegionKind::Memory);
        if let Some(g) = memory.clone().find(|g| g.contains(addr)) {
            return Some(g.start.saturating_add(g.size));
        }
        Some(
            memory
                .filter(|g| g.start > addr)
                .map(|g| g.start)
                .fold(self.lim(), u64::min),
        )
    }

    fn size_from_mode(&mut self, r: &mut Reader, m: u8, addr: u64) -> u64 {
        let page = self.page();
        let mode = m % 16;
        let regions = self.host_regions();
        if !regions.is_empty() && (11..=13).contains(&mode) {
            // Host profile: region-relative sizes.
            let b = r.u8();
            let containing = regions.iter().find(|g| g.contains(addr));
            let reg = containing
                .copied()
                .unwrap_or(regions[b as usize % regions.len()]);
            return match b % 4 {
                // Up to the end of the region (or from addr to its end).
                0 | 1 => reg.start.wrapping_add(reg.size).wrapping_sub(addr),
                // The whole region size.
                2 => reg.size,
                // One page past the end of the region.
                _ => reg
                    .start
                    .wrapping_add(reg.size)
                    .wrapping_sub(addr)
                    .wrapping_add(page),
            };
        }
        match mode {
            // Whole pages (0 included).
            0..=3 => r.u8() as u64 * page,
            // Zero / tiny / around one page.
            4 | 5 => {
                let b = r.u8();
                match b % 6 {
                    0 => 0,
                    1 => 1,
                    2 => page - 1,
                    3 => page + 1,
                    4 => 1 + (b >> 3) as u64,
                    _ => page / 2,
                }
            }
            // k blocks of level L.
            6..=8 => {
                let l = self.level_from(r.u8());
                (1 + r.u8() as u64 % 4).wrapping_mul(self.lsize(l))
            }
            // A block +- a few pages.
            9 | 10 => {
                let l = self.level_from(r.u8());
                let d = delta(r.u8(), 4);
                self.lsize(l)
                    .wrapping_add_signed(d.wrapping_mul(page as i64))
            }
            // Up to (around) the IA limit.
            11 => {
                let d = delta(r.u8(), 2);
                self.lim()
                    .wrapping_sub(addr)
                    .wrapping_add_signed(d.wrapping_mul(page as i64))
            }
            // Huge.
            12 => match r.u8() % 4 {
                0 => self.lim(),
                1 => self.lim().wrapping_mul(2),
                2 => u64::MAX,
                _ => 1 << 63,
            },
            // Wrap: addr + size wraps (to a few pages) or ends at u64::MAX.
            13 => {
                let b = r.u8();
                let to_top = 0u64.wrapping_sub(addr);
                match b % 2 {
                    0 => to_top.wrapping_add(((b >> 1) % 4) as u64 * page),
                    _ => to_top.wrapping_sub(1),
                }
            }
            // Reuse a previous size, or reach a previous address.
            _ => {
                let b = r.u8();
                if b % 2 == 0 && !self.sizes.is_empty() {
                    self.sizes[(b >> 1) as usize % self.sizes.len()]
                } else if !self.addrs.is_empty() {
                    self.addrs[(b >> 1) as usize % self.addrs.len()].wrapping_sub(addr)
                } else {
                    page
                }
            }
        }
    }

    /// Output (physical) address for a mapping of `addr`.
    pub(crate) fn phys(&mut self, r: &mut Reader, addr: u64) -> u64 {
        let m = r.u8();
        if m == LIT {
            return r.u64();
        }
        let page = self.page();
        match m % 8 {
            // Identity.
            0 | 1 => addr,
            // Identity shifted by a few pages (breaks block alignment).
            2 => addr.wrapping_add_signed(delta(r.u8(), 4).wrapping_mul(page as i64)),
            // Block-aligned.
            3 => {
                let l = self.level_from(r.u8());
                self.boundary(l, r.u8())
            }
            // A page inside the arena.
            4 => (r.u16() as u64 % self.cfg.arena_pages.max(1) as u64) * page,
            // Beyond the PA range / high bits.
            5 => {
                let b = r.u8();
                let k = (b >> 2) as u64 * page;
                match b % 4 {
                    0 => (1u64 << 48) + k,
                    1 => (1u64 << 52) + k,
                    2 => (1u64 << 52) - page - k,
                    _ => !(page - 1),
                }
            }
            // Unaligned physical address.
            6 => addr.wrapping_add(1 + r.u8() as u64 % 64),
            // Random page-aligned.
            _ => r.u32() as u64 * page,
        }
    }

    /// Output address of a stage-2 map: the pKVM host maps its own memory
    /// one to one (IDMAP), so the host profile reads the byte but keeps `addr`.
    pub(crate) fn map_phys(&mut self, r: &mut Reader, addr: u64) -> u64 {
        let phys = self.phys(r, addr);
        if self.profile == Profile::HostStage2 {
            addr
        } else {
            phys
        }
    }

    /// Physical address for an unlinked table of `level`.
    pub(crate) fn phys_for_level(&mut self, r: &mut Reader, level: i8) -> u64 {
        let m = r.u8();
        if m == LIT {
            return r.u64();
        }
        let page = self.page();
        let sz = if (-1..=3).contains(&level) {
            self.lsize(level)
        } else {
            page
        };
        match m % 4 {
            0 | 1 => (r.u8() as u64).wrapping_mul(sz),
            2 => (r.u8() as u64).wrapping_mul(sz).wrapping_add(page),
            _ => r.u32() as u64 * page,
        }
    }

    /// Protection for a mapping of `[addr, addr + size)`, in the bit layout
    /// of the stream's kernel line.
    pub(crate) fn prot(&mut self, r: &mut Reader, addr: u64, size: u64) -> Prot {
        let l = self.cfg.kernel.prot();
        let m = r.u8();
        if m == LIT {
            return r.u64();
        }
        if self.profile == Profile::HostStage2 {
            // pKVM maps its host's memory RWX and everything else RW
            // (PKVM_HOST_MEM_PROT, PKVM_HOST_MMIO_PROT: host_stage2_idmap). Other
            // prots come only with shares and donations (and 7.3's read-only hyp
            // text), a few pages each (docs/CALLERS.md §2.4), and are what makes
            // the host's force_pte_cb ask for pages: so a range of more than
            // PTRS_PER_PTE pages gets its span's own prot, except when both nibbles
            // of the mode byte are 12 or more (1 in 16), which keeps the kernel's
            // page-by-page path over large ranges reachable.
            let big = size / self.page() > self.cfg.granule.ptrs_per_pte();
            if m % 16 < 12 || (big && m >> 4 < 12) {
                let regions = self.host_regions();
                let memory = |g: &&Region| g.kind == RegionKind::Memory;
                let p = match regions.iter().find(|g| g.contains_range(addr, size)) {
                    Some(g) if g.kind == RegionKind::Mmio => l.rw(),
                    Some(_) => l.rwx(),
                    // Across memory and MMIO: the callback takes it for MMIO (pages
                    // unless RW); either prot.
                    None if regions
                        .iter()
                        .filter(memory)
                        .any(|g| g.overlaps(addr, size)) =>
                    {
                        if m % 2 == 0 {
                            l.rwx()
                        } else {
                            l.rw()
                        }
                    }
                    None => l.rw(),
                };
                return p;
            }
        }
        let (r_, w, x) = (l.r, l.w, l.x());
        let menu: [Prot; 16] = [
            r_,
            r_ | w,
            r_ | x,
            r_ | w | x,
            l.device | r_ | w,
            l.normal_nc | r_ | w,
            r_ | w,
            r_ | w | x,
            0,
            w,
            x,
            w | x,
            l.device | r_,
            l.device | r_ | w | x,
            l.normal_nc | r_ | w | x,
            l.device | l.normal_nc | r_ | w,
        ];
        let mut p = menu[(m % 16) as usize];
        // 7.x: only one of the two execute bits. With FEAT_XNX that is what
        // KVM's nested fault path maps and relaxes to (mmu.c
        // adjust_nested_exec_perms drops UX or PX as the guest hypervisor's
        // stage-2 allows), so high nibbles 8 and 9 ask for it too; without
        // FEAT_XNX the kernel refuses it (-EINVAL), from 10 and 11 only.
        let one_x = l.ux != 0 && p & x != 0 && (m >> 4 >= 10 || self.cfg.features.xnx);
        match m >> 4 {
            8 | 10 if one_x => p &= !l.ux,
            9 | 11 if one_x => p &= !l.px,
            // Software bits sometimes.
            12 | 13 => p |= ((r.u8() & 0xf) as u64) << 55,
            // Occasionally arbitrary (1 in 32).
            14 if m % 2 == 0 => p = r.u64(),
            _ => {}
        }
        p
    }

    /// Permissions of a permission fault (`relax_perms`): what KVM's stage-2
    /// abort handler asks for (mmu.c `user_mem_abort`): R, W when the page is
    /// writable, X on an execute fault, and on 7.x with FEAT_XNX one execute
    /// bit of the two as the guest hypervisor's stage-2 allows
    /// (`adjust_nested_exec_perms`). One time in four any prot, as
    /// [`Self::prot`]. Mode byte: bit 2 W, bit 3 X, bits 4-5 the execute bits
    /// under FEAT_XNX (2: PX only, 3: UX only).
    pub(crate) fn fault_prot(&mut self, r: &mut Reader, addr: u64) -> Prot {
        let m = r.u8();
        if m == LIT {
            return r.u64();
        }
        if m % 4 == 3 {
            return self.prot(r, addr, 1);
        }
        let l = self.cfg.kernel.prot();
        let mut p = l.r;
        if m & 4 != 0 {
            p |= l.w;
        }
        if m & 8 != 0 {
            p |= l.x();
            if l.ux != 0 && self.cfg.features.xnx {
                match (m >> 4) % 4 {
                    2 => p &= !l.ux,
                    3 => p &= !l.px,
                    _ => {}
                }
            }
        }
        p
    }

    /// Memcache size (`None` = NULL memcache).
    pub(crate) fn memcache(&mut self, r: &mut Reader) -> Memcache {
        let m = r.u8();
        match m {
            LIT => return Some(r.u32() & MEMCACHE_MAX),
            LIT_NONE => return None,
            _ => {}
        }
        let ptrs = self.cfg.granule.ptrs_per_pte() as u32;
        let unlinked = self.profile == Profile::Unlinked;
        match m % 8 {
            0 | 1 => Some(r.u8() as u32 % 9),
            2 => Some(ptrs),
            3 => Some(ptrs + 1),
            4 => Some(ptrs.wrapping_add_signed(delta(r.u8(), 2) as i32)),
            5 if unlinked => Some(ptrs - 1),
            // Only a pKVM guest's caller passes NULL (7.x annotate of a
            // poisoned page); the kernel's and the host's never do, so
            // they get an empty cache instead (the kernel WARNs on it).
            5 if self.cfg.caller() == Caller::PkvmGuest => None,
            5 => Some(0),
            6 => Some(16 + r.u8() as u32 % 48),
            _ => Some(2 * ptrs + r.u8() as u32 % 4),
        }
    }

    /// Number of memcache pages for a split.
    pub(crate) fn nobjs(&mut self, r: &mut Reader) -> u32 {
        let m = r.u8();
        if m == LIT {
            return r.u32() & MEMCACHE_MAX;
        }
        let ptrs = self.cfg.granule.ptrs_per_pte() as u32;
        match m % 6 {
            0 => 0,
            1 => r.u8() as u32 % 9,
            2 => ptrs,
            3 => ptrs + 1,
            4 => ptrs.wrapping_add_signed(delta(r.u8(), 2) as i32),
            _ => ptrs * (1 + r.u8() as u32 % 3),
        }
    }

    /// Page-table level (mostly -1..=3, 1 in 16 out of range except in
    /// the Unlinked profile).
    pub(crate) fn level(&mut self, r: &mut Reader) -> i8 {
        let m = r.u8();
        if m == LIT {
            return r.u8() as i8;
        }
        let unlinked = self.profile == Profile::Unlinked;
        match m % 16 {
            x @ 0..=4 => x as i8 - 1,
            x @ 5..=9 => x as i8 - 6,
            10..=12 => self.cfg.granule.min_block_level(),
            13 => 3,
            14 => 2,
            _ if unlinked => self.cfg.granule.min_block_level(),
            _ => [-2, 4, 5, i8::MIN, i8::MAX][r.u8() as usize % 5],
        }
    }

    /// Owner id (0/1, occasionally invalid).
    pub(crate) fn owner(&mut self, r: &mut Reader) -> u8 {
        let m = r.u8();
        if m == LIT {
            return r.u8();
        }
        match m % 8 {
            0..=3 => 0,
            4..=6 => 1,
            _ if self.profile == Profile::HostStage2 => 1,
            _ => 2 + r.u8() % 254,
        }
    }

    /// Walk flags: uniform over the 128 defined combinations.
    pub(crate) fn walk_flags(&mut self, r: &mut Reader) -> u8 {
        let m = r.u8();
        if m == LIT {
            return r.u8();
        }
        m & walk_flags::ALL
    }

    /// Flags of a stage-2 map: half the time what the stream's caller
    /// passes (the kernel: its fault path's SHARED, with HANDLE_FAULT in
    /// 6.12, or 0 for ioremap; 7.x's pKVM host IGNORE_EAGAIN, 6.12's 0;
    /// a pKVM guest 0), else other callers' flags or anything.
    pub(crate) fn map_flags(&mut self, r: &mut Reader) -> u8 {
        use super::model::walk_flags::*;
        let m = r.u8();
        if m == LIT {
            return r.u8();
        }
        let v7 = self.cfg.kernel.is_v7();
        let own = match (self.cfg.caller(), v7) {
            (Caller::KvmGuest, false) => [SHARED | HANDLE_FAULT, 0],
            (Caller::KvmGuest, true) => [SHARED, 0],
            (Caller::PkvmHost, true) => [IGNORE_EAGAIN, IGNORE_EAGAIN],
            _ => [0, 0],
        };
        match m % 8 {
            k @ 0..=3 => own[usize::from(k & 1)],
            4 => SHARED,
            5 => SKIP_BBM_TLBI | SKIP_CMO,
            6 if v7 => IGNORE_EAGAIN,
            6 => SHARED | HANDLE_FAULT,
            _ => r.u8() & ALL,
        }
    }

    /// Walk flags a 7.x caller gives mkyoung and relax_perms: mostly the
    /// stream's caller's (SHARED on the kernel's fault path, 0 at EL2),
    /// sometimes the other or anything.
    pub(crate) fn fault_flags(&mut self, r: &mut Reader) -> u8 {
        use super::model::walk_flags::*;
        let m = r.u8();
        if m == LIT {
            return r.u8();
        }
        let (own, other) = if self.cfg.caller() == Caller::KvmGuest {
            (SHARED, 0)
        } else {
            (0, SHARED)
        };
        match m % 8 {
            0..=2 => own,
            3 | 4 => other,
            5 => SHARED | IGNORE_EAGAIN,
            6 => IGNORE_EAGAIN,
            _ => r.u8() & ALL,
        }
    }

    /// Invalid-PTE type for 7.x annotate: pKVM's host donation (2) and
    /// guest poisoning (3), sometimes a type annotate refuses (0, LOCKED)
    /// or one nobody defines yet.
    pub(crate) fn annotation_type(&mut self, r: &mut Reader) -> u8 {
        let m = r.u8();
        if m == LIT {
            return r.u8();
        }
        match m % 8 {
            0..=3 => 2,
            4 | 5 => 3,
            6 => [0, 1][usize::from(r.u8() & 1)],
            _ => r.u8() % 16,
        }
    }

    /// Annotation for 7.x annotate of type `kind`: what pKVM stores (a host
    /// donation packs the owner id in bits [3:1] and metadata in [59:4];
    /// a poisoned guest page has none), sometimes bits annotate refuses
    /// (bit 0, bits [63:60]).
    pub(crate) fn annotation(&mut self, r: &mut Reader, kind: u8) -> u64 {
        let m = r.u8();
        if m == LIT {
            return r.u64();
        }
        match (m % 8, kind) {
            (0..=3, 2) => {
                let owner = 1 + u64::from(r.u8() % 2);
                let meta = if owner == 2 { u64::from(r.u32()) } else { 0 };
                owner << 1 | (meta << 4) & 0x0fff_ffff_ffff_fff0
            }
            (0..=3, _) => 0,
            (4 | 5, _) => (u64::from(r.u32()) << 1) & 0x0fff_ffff_ffff_fffe,
            (6, _) => 1 << (r.u8() % 64),
            _ => r.u64(),
        }
    }

    /// Visitor script.
    pub(crate) fn script(&mut self, r: &mut Reader) -> VisitScript {
        let m = r.u8();
        if m == LIT {
            return match r.u8() & 1 {
                0 => VisitScript::Ok,
                _ => VisitScript::FailAt {
                    n: r.u8(),
                    // Visitors return 0 or a negative errno; non-negative
                    // bytes fold onto negatives (encoded streams never
                    // hold them, so exact round trips are unaffected).
                    errno: match r.u8() as i8 {
                        e if e < 0 => e,
                        e => -e - 1,
                    },
                },
            };
        }
        let ok_modes = if self.profile == Profile::Walk { 1 } else { 2 };
        if m % 4 < ok_modes {
            VisitScript::Ok
        } else {
            let b = r.u8();
            VisitScript::FailAt {
                n: b % 16,
                errno: errno::ALL[(b >> 4) as usize % 4],
            }
        }
    }

    /// A page-table entry to feed `*_pte_prot`.
    pub(crate) fn pte(&mut self, r: &mut Reader) -> u64 {
        let m = r.u8();
        if m == LIT {
            return r.u64();
        }
        let page = self.page();
        let oa = (r.u16() as u64) * page;
        // Lower attributes (bits 2..=11) and upper attributes (51..=58).
        let lo = (r.u16() as u64 & 0x3ff) << 2;
        let hi = (r.u8() as u64) << 51;
        match m % 4 {
            0 => oa | lo | hi | 0b11, // page / table descriptor
            1 => oa | lo | hi | 0b01, // block descriptor
            2 => (oa | lo | hi) & !1, // invalid (maybe with SW bits)
            _ => r.u64(),
        }
    }

    /// ID_AA64MMFR0_EL1 value.
    pub(crate) fn mmfr0(&mut self, r: &mut Reader) -> u64 {
        let m = r.u8();
        if m == LIT {
            return r.u64();
        }
        let parange = if m % 8 == 7 { 7 + (m >> 3) % 9 } else { m % 7 } as u64;
        // TGRAN16 [23:20], TGRAN64 [27:24], TGRAN4 [31:28],
        // TGRAN16_2 [35:32], TGRAN64_2 [39:36], TGRAN4_2 [43:40].
        let tgran = r.u32() as u64 & 0x00ff_ffff;
        parange | (tgran << 20)
    }

    /// ID_AA64MMFR1_EL1 value.
    pub(crate) fn mmfr1(&mut self, r: &mut Reader) -> u64 {
        let m = r.u8();
        if m == LIT {
            return r.u64();
        }
        // HAFDBS [3:0] in 0..=3, VMIDBits [7:4] in {0, 2}.
        let hafdbs = (m % 4) as u64;
        let vmid = if m & 0x10 != 0 { 2 } else { 0 };
        let rest = if m & 0x20 != 0 {
            (r.u32() as u64) << 8
        } else {
            0
        };
        hafdbs | vmid << 4 | rest
    }

    /// `phys_shift` argument of `kvm_get_vtcr`.
    pub(crate) fn phys_shift(&mut self, r: &mut Reader) -> u32 {
        let m = r.u8();
        if m == LIT {
            return r.u32();
        }
        match m % 8 {
            0..=4 => 32 + (r.u8() % 21) as u32,
            5 => self.cfg.ia_bits as u32,
            6 => 40,
            _ => [0, 24, 31, 53, 64, 255][r.u8() as usize % 6],
        }
    }

    /// A VTCR_EL2 value for `kvm_pgtable_stage2_pgd_size`.
    pub(crate) fn vtcr(&mut self, r: &mut Reader) -> u64 {
        let m = r.u8();
        if m == LIT {
            return r.u64();
        }
        if m % 8 == 7 {
            return r.u64();
        }
        let b = r.u8();
        let ia = 25 + (b % 28) as u64;
        let t0sz = 64 - ia;
        let sl0 = ((b >> 5) % 4) as u64;
        let tg0 = match (m % 4, self.cfg.granule) {
            (3, _) => ((m >> 2) % 4) as u64,
            (_, Granule::K4) => 0,
            (_, Granule::K64) => 1,
            (_, Granule::K16) => 2,
        };
        let sl2 = ((m >> 4) & 1) as u64;
        let ds = if self.cfg.features.lpa2 || m & 0x20 != 0 {
            1
        } else {
            0
        };
        t0sz | sl0 << 6 | tg0 << 14 | ds << 32 | sl2 << 33
    }

    /// Start of the next host memory-map region (`prev_end` = end of the
    /// previous region, 0 for the first).
    pub(crate) fn region_start(&mut self, r: &mut Reader, prev_end: u64) -> u64 {
        let m = r.u8();
        if m == LIT {
            return r.u64();
        }
        let page = self.page();
        match m % 4 {
            0 | 1 => prev_end,
            2 => {
                let l = self.level_from(r.u8());
                let sz = self.lsize(l);
                // Next l-aligned boundary after prev_end, plus k blocks.
                let up = prev_end.wrapping_add(sz - 1) & !(sz - 1);
                up.wrapping_add((r.u8() % 4) as u64 * sz)
            }
            _ => prev_end.wrapping_add((1 + r.u8() as u64 % 16) * page),
        }
    }

    /// Size of a host memory-map region.
    pub(crate) fn region_size(&mut self, r: &mut Reader) -> u64 {
        let m = r.u8();
        if m == LIT {
            return r.u64();
        }
        let page = self.page();
        let l = self.level_from(r.u8());
        let sz = self.lsize(l);
        match m % 4 {
            0 | 1 => (1 + r.u8() as u64 % 4).wrapping_mul(sz),
            2 => (1 + r.u8() as u64 % 64) * page,
            _ => sz.wrapping_add_signed(delta(r.u8(), 4).wrapping_mul(page as i64)),
        }
    }
}
