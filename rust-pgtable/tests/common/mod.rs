// SPDX-License-Identifier: GPL-2.0-only
//! A recording mock environment: a Vec-backed arena of zeroed pages with
//! refcounts, and an event log of everything the page-table code does.

#![allow(dead_code)]

use core::panic::Location;
use rust_pgtable::*;

/// Physical address of the first arena page.
pub const ARENA_BASE: u64 = 0x10_0000_0000;

/// Everything observable, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ev {
    Store {
        pa: u64,
        val: u64,
        kind: StoreKind,
    },
    Alloc {
        pa: u64,
        from_mc: bool,
    },
    AllocExact {
        pa: u64,
        size: u64,
    },
    FreeExact {
        pa: u64,
        size: u64,
    },
    FreeUnlinked {
        pa: u64,
        level: i8,
    },
    Get(u64),
    Put(u64),
    PageCount(u64),
    Dcache {
        pa: u64,
        size: u64,
    },
    Icache {
        pa: u64,
        size: u64,
    },
    Tlbi {
        op: TlbiOp,
        operand: u64,
        level: i32,
    },
    TlbiSync,
    FlushVmid,
    FlushIpa {
        ipa: u64,
        level: i32,
    },
    FlushIpaNsh {
        ipa: u64,
        level: i32,
    },
    FlushRange {
        start: u64,
        pages: u64,
    },
    Dsb(Barrier),
    Isb,
    Warn {
        once: bool,
    },
    RcuLock,
    RcuUnlock,
    ForcePte {
        addr: u64,
        end: u64,
        prot: Prot,
    },
}

/// A memcache: just a number of pages the allocator may still take.
#[derive(Debug, Default)]
pub struct Mc {
    pub nobjs: usize,
}

pub struct Mock {
    pub cfg: Config,
    pub page: u64,
    pub mem: Vec<u64>,
    pub refs: Vec<i32>,
    pub next: usize,
    pub events: Vec<Ev>,
    pub rcu_depth: u32,
    /// Pretend RCU is never held (to provoke the shared-walk warning).
    pub rcu_never_held: bool,
    pub has_page_count: bool,
    pub has_dcache: bool,
    pub has_icache: bool,
    /// Allocations beyond this many pages fail.
    pub alloc_limit: usize,
    /// Every address passed to `phys_to_virt`, in order.
    pub follows: Vec<PhysAddr>,
}

impl Mock {
    pub fn new(cfg: Config, pages: usize) -> Self {
        let page = cfg.granule.page_size();
        Mock {
            cfg,
            page,
            mem: vec![0; pages * (page as usize / 8)],
            refs: vec![0; pages],
            next: 0,
            events: Vec::new(),
            rcu_depth: 0,
            rcu_never_held: false,
            has_page_count: true,
            has_dcache: true,
            has_icache: true,
            alloc_limit: pages,
            follows: Vec::new(),
        }
    }

    pub fn idx(&self, pa: u64) -> usize {
        assert!(pa >= ARENA_BASE, "PA {pa:#x} is not in the arena");
        let i = ((pa - ARENA_BASE) / self.page) as usize;
        assert!(i < self.refs.len(), "PA {pa:#x} is not in the arena");
        i
    }

    /// Refcount of the arena page containing `pa`.
    pub fn refcount(&self, pa: u64) -> i32 {
        self.refs[self.idx(pa)]
    }

    /// PA of the `i`-th arena page.
    pub fn page_pa(&self, i: usize) -> u64 {
        ARENA_BASE + i as u64 * self.page
    }

    /// Read a descriptor.
    pub fn read(&self, pa: u64) -> u64 {
        self.mem[((pa - ARENA_BASE) / 8) as usize]
    }

    /// Pages currently allocated (refcount > 0).
    pub fn live_pages(&self) -> usize {
        self.refs.iter().filter(|&&r| r > 0).count()
    }

    pub fn take_events(&mut self) -> Vec<Ev> {
        core::mem::take(&mut self.events)
    }

    /// Events without refcount queries.
    pub fn warns(&self) -> usize {
        self.events
            .iter()
            .filter(|e| matches!(e, Ev::Warn { .. }))
            .count()
    }

    fn alloc(&mut self, n: usize) -> Option<u64> {
        if self.next + n > self.alloc_limit {
            return None;
        }
        let i = self.next;
        self.next += n;
        for j in i..i + n {
            self.refs[j] = 1;
        }
        Some(self.page_pa(i))
    }
}

unsafe impl MmOps for Mock {
    type Memcache = Mc;

    fn zalloc_page(&mut self, mc: Option<&mut Mc>) -> Option<PhysAddr> {
        let from_mc = mc.is_some();
        if let Some(mc) = mc {
            if mc.nobjs == 0 {
                return None;
            }
            mc.nobjs -= 1;
        }
        let pa = self.alloc(1)?;
        self.events.push(Ev::Alloc { pa, from_mc });
        Some(pa)
    }

    fn memcache_nobjs(&self, mc: &Mc) -> usize {
        mc.nobjs
    }

    fn zalloc_pages_exact(&mut self, size: u64) -> Option<PhysAddr> {
        let n = size.div_ceil(self.page) as usize;
        let pa = self.alloc(n)?;
        self.events.push(Ev::AllocExact { pa, size });
        Some(pa)
    }

    fn free_pages_exact(&mut self, pa: PhysAddr, size: u64) {
        self.events.push(Ev::FreeExact { pa, size });
        let i = self.idx(pa);
        for j in i..i + size.div_ceil(self.page) as usize {
            self.refs[j] -= 1;
        }
    }

    fn free_unlinked_table(&mut self, pa: PhysAddr, level: Level) {
        self.events.push(Ev::FreeUnlinked { pa, level: level.0 });
        let cfg = self.cfg;
        stage2_free_unlinked(self, &cfg, pa, level);
    }

    fn get_page(&mut self, pa: PhysAddr) {
        self.events.push(Ev::Get(pa));
        let i = self.idx(pa);
        self.refs[i] += 1;
    }

    fn put_page(&mut self, pa: PhysAddr) {
        self.events.push(Ev::Put(pa));
        let i = self.idx(pa);
        self.refs[i] -= 1;
        assert!(self.refs[i] >= 0, "refcount underflow on {pa:#x}");
        if self.refs[i] == 0 {
            let words = self.page as usize / 8;
            // Through `as_mut_ptr`, not a slice: a walk may still hold
            // pointers into other pages of `mem`, which a `&mut` to the
            // whole vector would invalidate.
            // SAFETY: page `i` is inside `mem` (`idx` checked it).
            unsafe { self.mem.as_mut_ptr().add(i * words).write_bytes(0, words) };
        }
    }

    fn page_count(&mut self, pa: PhysAddr) -> i32 {
        self.events.push(Ev::PageCount(pa));
        self.refcount(pa)
    }

    fn phys_to_virt(&mut self, pa: PhysAddr) -> *mut u64 {
        self.follows.push(pa);
        let i = self.idx(pa);
        assert!(self.refs[i] > 0, "access to free page {pa:#x}");
        let w = ((pa - ARENA_BASE) / 8) as usize;
        // `as_mut_ptr` makes no reference to the vector, so the pointers
        // the walker keeps for the tables it is in stay valid.
        self.mem.as_mut_ptr().wrapping_add(w)
    }

    fn dcache_clean_inval_poc(&mut self, pa: PhysAddr, size: u64) {
        self.events.push(Ev::Dcache { pa, size });
    }

    fn icache_inval_pou(&mut self, pa: PhysAddr, size: u64) {
        self.events.push(Ev::Icache { pa, size });
    }

    fn has_page_count(&self) -> bool {
        self.has_page_count
    }

    fn has_dcache_clean_inval_poc(&self) -> bool {
        self.has_dcache
    }

    fn has_icache_inval_pou(&self) -> bool {
        self.has_icache
    }
}

impl Hw for Mock {
    fn pte_store(&mut self, pa: PhysAddr, _prev: u64, val: u64, kind: StoreKind) {
        self.events.push(Ev::Store { pa, val, kind });
    }
    fn tlbi_hyp(&mut self, op: TlbiOp, operand: u64, level: i32) {
        self.events.push(Ev::Tlbi { op, operand, level });
    }
    fn tlbi_sync_s1ish_hyp(&mut self) {
        self.events.push(Ev::TlbiSync);
    }
    fn tlb_flush_vmid(&mut self) {
        self.events.push(Ev::FlushVmid);
    }
    fn tlb_flush_vmid_ipa(&mut self, ipa: u64, level: i32) {
        self.events.push(Ev::FlushIpa { ipa, level });
    }
    fn tlb_flush_vmid_ipa_nsh(&mut self, ipa: u64, level: i32) {
        self.events.push(Ev::FlushIpaNsh { ipa, level });
    }
    fn tlb_flush_vmid_range(&mut self, start: u64, pages: u64) {
        self.events.push(Ev::FlushRange { start, pages });
    }
    fn dsb(&mut self, kind: Barrier) {
        self.events.push(Ev::Dsb(kind));
    }
    fn isb(&mut self) {
        self.events.push(Ev::Isb);
    }
    fn warn(&mut self, once: bool, _loc: &'static Location<'static>) {
        self.events.push(Ev::Warn { once });
    }
    fn rcu_read_lock(&mut self) {
        self.rcu_depth += 1;
        self.events.push(Ev::RcuLock);
    }
    fn rcu_read_unlock(&mut self) {
        self.rcu_depth -= 1;
        self.events.push(Ev::RcuUnlock);
    }
    fn rcu_read_lock_held(&mut self) -> bool {
        self.rcu_depth > 0 && !self.rcu_never_held
    }
}

pub fn cfg(granule: Granule, context: Context) -> Config {
    Config::new(granule, context, Features::default())
}

pub fn cfg_with(granule: Granule, context: Context, f: impl FnOnce(&mut Features)) -> Config {
    let mut features = Features::default();
    f(&mut features);
    Config::new(granule, context, features)
}

/// Store event shorthands.
pub fn wo(pa: u64, val: u64) -> Ev {
    Ev::Store {
        pa,
        val,
        kind: StoreKind::WriteOnce,
    }
}
pub fn rel(pa: u64, val: u64) -> Ev {
    Ev::Store {
        pa,
        val,
        kind: StoreKind::Release,
    }
}
pub fn cx(pa: u64, old: u64, val: u64) -> Ev {
    Ev::Store {
        pa,
        val,
        kind: StoreKind::Cmpxchg { old },
    }
}

/// Stage-2 VTCR for a `ipa`-bit IPA space (16-bit VMIDs, PARange 48 bits).
pub fn vtcr_for(cfg: &Config, ipa: u32) -> u64 {
    get_vtcr(cfg, 5, 2 << 4, ipa)
}

/// A stage-2 table over a fresh mock.
pub fn s2(cfg: Config, pages: usize, ipa: u32, flags: Stage2Flags) -> Stage2Pgtable<Mock> {
    let vtcr = vtcr_for(&cfg, ipa);
    let mut pgt = Stage2Pgtable::new(Mock::new(cfg, pages), cfg);
    pgt.init(vtcr, flags, NO_FORCE_PTE).unwrap();
    pgt.env_mut().take_events();
    pgt
}

/// A hyp table over a fresh mock.
pub fn hyp(cfg: Config, pages: usize, va_bits: u32) -> HypPgtable<Mock> {
    let mut pgt = HypPgtable::new(Mock::new(cfg, pages), cfg);
    pgt.init(va_bits).unwrap();
    pgt.env_mut().take_events();
    pgt
}
