// SPDX-License-Identifier: GPL-2.0-only
//! Simulated physical memory for page tables.
//!
//! Both sides get an `Arena` of the same geometry. Allocation is
//! deterministic (lowest free page first; lowest fitting run for exact
//! allocations), so a faithful implementation allocates the same PAs in the
//! same order, table descriptors come out byte-identical, and whole arenas
//! can be compared.
//!
//! Refcounts follow `kvm_pgtable_mm_ops`: a page from zalloc starts at 1,
//! get/put move it, and it is freed when it reaches 0. Every page of an
//! exact (PGD) allocation has its own count, as with `alloc_pages_exact`.
//! Contract breaches become [`Misuse`] events, never crashes.

use std::ptr::NonNull;

use crate::events::{AllocSource, CallerBug, CallerWarn, Event, Misuse, MmOp, Record};

/// The size and placement of an arena.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Geometry {
    /// Physical address of page 0; aligned to the page size.
    pub base_pa: u64,
    /// Page size in bytes: the granule.
    pub page_size: u64,
    /// Number of pages.
    pub pages: u32,
}

impl Geometry {
    /// The default base PA: 1 GiB, valid under every PARange and aligned for every granule.
    pub const DEFAULT_BASE_PA: u64 = 0x4000_0000;

    pub fn new(page_size: u64, pages: u32) -> Geometry {
        Geometry {
            base_pa: Self::DEFAULT_BASE_PA,
            page_size,
            pages,
        }
    }

    fn words_per_page(&self) -> usize {
        (self.page_size / 8) as usize
    }

    /// One past the last PA.
    pub fn end_pa(&self) -> u64 {
        self.base_pa + self.page_size * u64::from(self.pages)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PageState {
    Free,
    /// A page from zalloc_page.
    Single,
    /// Page `index` of an exact allocation of `len` pages starting at `first`.
    Exact {
        first: u32,
        len: u32,
    },
}

/// What `zalloc_page(mc)` does: the memory source of the caller whose
/// mm_ops the arena stands in for (see `crate::caller`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PageSource {
    /// An allocator that ignores the argument and fails when it runs dry:
    /// the hypervisor's `hpool` (nvhe/setup.c `hyp_zalloc_hyp_page`), the
    /// kernel's `get_zeroed_page` (mmu.c `kvm_hyp_zalloc_page`), and pKVM's
    /// `host_s2_pool`, which the host passes *as* the memcache argument
    /// (mem_protect.c `host_s2_zalloc_page`): its page count means nothing.
    Pool,
    /// A pKVM guest: first `vm->pool` (pages the guest's table freed), then
    /// a page popped from the vCPU's memcache, NULL when both are empty
    /// (nvhe/mem_protect.c `guest_s2_zalloc_page`).
    GuestPool,
    /// Kernel context: `kvm_mmu_memory_cache_alloc` pops a page the cache
    /// already holds (it cannot fail); an empty cache WARNs and allocates
    /// with `GFP_ATOMIC`, and `BUG_ON`s if that fails (virt/kvm/kvm_main.c).
    KernelMemcache,
    /// No real caller: a memcache is a budget of pages and NULL has none
    /// (what the harness did before caller profiles; unit tests use it).
    Budget,
}

/// Where a page stands with respect to an RCU grace period.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Grace {
    None,
    /// Unlinked; no walker may use it until the grace period ends.
    Pending,
    /// Unlinked by another CPU while the running op's walker was inside.
    Entered,
}

/// What the arena knows of one page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Page {
    state: PageState,
    refcount: u32,
    /// Whether the page waits for an RCU grace period (pages of unlinked tables).
    grace: Grace,
}

impl Page {
    const FREE: Page = Page {
        state: PageState::Free,
        refcount: 0,
        grace: Grace::None,
    };
}

/// A memcache: a budget of pages that `zalloc_page(mc)` may take.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Memcache {
    pub nobjs: u32,
}

/// What free (never allocated or freed) arena memory reads as: an invalid
/// descriptor (bit 0 clear) that no correct code reads.
pub const POISON: u64 = 0x6b6b_6b6b_6b6b_6b6a;

/// The backing store of an arena.
///
/// It is owned through a raw pointer only. The C side keeps raw pointers
/// into it across calls (`pgt->pgd`, every table pointer it derives) and
/// writes through them, and rust-pgtable does the same through
/// [`Arena::table_ptr`]; so Rust code never creates a `&mut [u64]` over it,
/// which would assert exclusive access and invalidate those pointers. Every
/// access goes through the one base pointer: raw reads and writes, and
/// short-lived shared slices for comparisons while no side is running.
struct Mem {
    base: NonNull<u64>,
    words: usize,
}

impl Mem {
    fn poisoned(words: usize) -> Mem {
        let v: &'static mut [u64] = Vec::leak(vec![POISON; words]);
        Mem {
            base: NonNull::from(v).cast(),
            words,
        }
    }

    /// Pointer to word `i` (in bounds, or one past the end).
    fn ptr(&self, i: usize) -> *mut u64 {
        assert!(i <= self.words, "arena word index out of bounds");
        // SAFETY: `i <= words`, so the offset stays inside the allocation or
        // one past its end.
        unsafe { self.base.as_ptr().add(i) }
    }

    fn read(&self, i: usize) -> u64 {
        assert!(i < self.words, "arena word index out of bounds");
        // SAFETY: in bounds and initialised; no Rust reference to the word
        // is live (see the type's documentation).
        unsafe { self.ptr(i).read() }
    }

    fn write(&self, i: usize, v: u64) {
        assert!(i < self.words, "arena word index out of bounds");
        // SAFETY: in bounds; a volatile raw write, as the sides' own
        // descriptor stores are, invalidates none of the pointers they hold.
        unsafe { self.ptr(i).write_volatile(v) }
    }

    /// Sets words `range` to `v`.
    fn fill(&self, range: std::ops::Range<usize>, v: u64) {
        assert!(range.start <= range.end && range.end <= self.words);
        let p = self.ptr(range.start);
        for k in 0..range.end - range.start {
            // SAFETY: `range` is inside the allocation (checked above); raw
            // writes do not invalidate the pointers the sides hold.
            unsafe { p.add(k).write(v) };
        }
    }

    /// Words `range`, for reading while no side runs: callers hold the
    /// arena borrowed, and only a side's call (which needs the arena's
    /// owner mutably) writes the memory.
    fn slice(&self, range: std::ops::Range<usize>) -> &[u64] {
        assert!(range.start <= range.end && range.end <= self.words);
        // SAFETY: in bounds and initialised; nothing writes these words
        // while `&self` is borrowed (see above).
        unsafe { std::slice::from_raw_parts(self.ptr(range.start), range.end - range.start) }
    }
}

impl Drop for Mem {
    fn drop(&mut self) {
        // SAFETY: `base`/`words` came from `Vec::leak` of a `Vec` of exactly
        // `words` elements (capacity == length for `vec![x; n]`) and are
        // dropped once.
        drop(unsafe { Vec::from_raw_parts(self.base.as_ptr(), self.words, self.words) });
    }
}

/// Arena backing stores are reused within a thread: allocating and faulting
/// in fresh zeroed memory for two arenas per fuzz input dominated the run
/// time. Every buffer in the pool is entirely POISON.
mod pool {
    use std::cell::RefCell;

    use super::Mem;

    thread_local! {
        static FREE: RefCell<Vec<Mem>> = const { RefCell::new(Vec::new()) };
        static RECORDS: RefCell<Vec<Vec<super::Page>>> = const { RefCell::new(Vec::new()) };
    }

    /// `n` page records, all free, in a vector an earlier arena gave back
    /// when one is spare: under ASan a new vector is fresh pages from the
    /// kernel (freed memory waits in its quarantine), and every run makes
    /// two arenas.
    pub(super) fn take_records(n: usize) -> Vec<super::Page> {
        let mut v = RECORDS.with(|r| r.borrow_mut().pop()).unwrap_or_default();
        v.clear();
        v.resize(n, super::Page::FREE);
        v
    }

    /// Keeps an arena's page records for the next arena on this thread.
    pub(super) fn give_records(v: Vec<super::Page>) {
        RECORDS.with(|r| {
            let mut r = r.borrow_mut();
            // Two arenas a run, as for the memory buffers above.
            if r.len() < 8 {
                r.push(v);
            }
        });
    }

    /// Size of pooled buffers: every arena the op-stream model allows
    /// (4 MiB of simulated memory) fits in one, so fuzz inputs of varying
    /// geometry all reuse the same two buffers.
    const POOLED_WORDS: usize = (4 << 20) / 8;

    /// A buffer of at least `words` words, all POISON.
    pub(super) fn take(words: usize) -> Mem {
        FREE.with(|f| {
            let mut f = f.borrow_mut();
            match f.iter().position(|b| b.words >= words) {
                Some(i) => f.swap_remove(i),
                None => Mem::poisoned(words.max(POOLED_WORDS)),
            }
        })
    }

    /// Returns a buffer whose words outside `dirty` (a word range) are POISON.
    pub(super) fn give(buf: Mem, dirty: std::ops::Range<usize>) {
        buf.fill(dirty, super::POISON);
        FREE.with(|f| {
            let mut f = f.borrow_mut();
            // A few buffers per size are enough: each run uses two arenas
            // per side pair.
            if f.len() < 8 {
                f.push(buf);
            }
        });
    }
}

/// Simulated physical memory.
pub struct Arena {
    geo: Geometry,
    mem: Option<Mem>,
    /// `mem`'s base pointer, kept at hand: every descriptor access of the
    /// Rust side and every C callback translates through it.
    base: *mut u64,
    /// `log2(page_size)` and the arena's size in bytes: every store either
    /// side reports and every get/put_page finds its page through them.
    page_shift: u32,
    span: u64,
    /// Per page: what the arena knows of it, in one record so that the
    /// checks of a store or a refcount change touch one cache line.
    pages: Vec<Page>,
    source: PageSource,
    /// Free pages in a pKVM guest's `vm->pool` (pages its table released).
    vm_pool: u32,
    /// Successful allocations still allowed before every allocation fails.
    budget: Option<u32>,
    live: u32,
    /// One past the highest page ever allocated: memory to re-poison on drop.
    high_water: u32,
}

impl Drop for Arena {
    fn drop(&mut self) {
        let w = self.geo.words_per_page();
        if let Some(mem) = self.mem.take() {
            pool::give(mem, 0..self.high_water as usize * w);
        }
        pool::give_records(std::mem::take(&mut self.pages));
    }
}

impl Arena {
    pub fn new(geo: Geometry, source: PageSource, fail_after: Option<u32>) -> Arena {
        assert!(geo.page_size.is_power_of_two() && geo.page_size >= 4096);
        assert_eq!(
            geo.base_pa % geo.page_size,
            0,
            "base PA must be page aligned"
        );
        let mem = pool::take(geo.words_per_page() * geo.pages as usize);
        let base = mem.ptr(0);
        Arena {
            geo,
            mem: Some(mem),
            base,
            page_shift: geo.page_size.trailing_zeros(),
            span: geo.page_size * u64::from(geo.pages),
            pages: pool::take_records(geo.pages as usize),
            source,
            vm_pool: 0,
            budget: fail_after,
            live: 0,
            high_water: 0,
        }
    }

    pub fn geometry(&self) -> Geometry {
        self.geo
    }

    /// Number of allocated pages.
    pub fn live_pages(&self) -> u32 {
        self.live
    }

    pub fn is_empty(&self) -> bool {
        self.live == 0
    }

    /// Index of the page holding `pa`, if it is inside the arena.
    pub fn page_index(&self, pa: u64) -> Option<u32> {
        let off = pa.wrapping_sub(self.geo.base_pa);
        (off < self.span).then_some((off >> self.page_shift) as u32)
    }

    fn page_pa(&self, idx: u32) -> u64 {
        self.geo.base_pa + (u64::from(idx) << self.page_shift)
    }

    /// The record of the page holding `pa`, if it is inside the arena.
    #[inline]
    fn page(&self, pa: u64) -> Option<&Page> {
        self.page_index(pa).map(|i| &self.pages[i as usize])
    }

    fn mem(&self) -> &Mem {
        self.mem
            .as_ref()
            .expect("an arena owns its memory until dropped")
    }

    /// Host pointer for `pa` on the linear map. Any PA maps (the address
    /// wraps; the pointer keeps the provenance of the arena's memory), but
    /// only arena PAs may be dereferenced.
    #[inline]
    pub fn phys_to_virt(&self, pa: u64) -> *mut u64 {
        self.base
            .wrapping_byte_add(pa.wrapping_sub(self.geo.base_pa) as usize)
    }

    /// Inverse of [`Arena::phys_to_virt`].
    #[inline]
    pub fn virt_to_phys(&self, va: *const u64) -> u64 {
        (va.addr().wrapping_sub(self.base.addr()) as u64).wrapping_add(self.geo.base_pa)
    }

    /// Host pointer for the table page at `pa` when `pa` starts a page of
    /// the arena (live or free), so the whole page lies behind it; the Rust
    /// side resolves every table page it walks through it.
    #[inline]
    pub fn table_ptr(&self, pa: u64) -> Option<*mut u64> {
        let off = pa.wrapping_sub(self.geo.base_pa);
        (off < self.span && off % self.geo.page_size == 0)
            .then(|| self.base.wrapping_byte_add(off as usize))
    }

    /// Records that memory outside live pages may have been written (a stray
    /// store): the whole buffer is re-poisoned when the arena is dropped.
    pub fn taint(&mut self) {
        self.high_water = self.geo.pages;
    }

    /// Whether `pa` is an 8-byte slot inside an allocated page.
    pub fn is_table_slot(&self, pa: u64) -> bool {
        self.table_page(pa).is_some()
    }

    /// The record of the allocated page holding `pa`, when `pa` is an
    /// 8-byte slot of it.
    #[inline]
    fn table_page(&self, pa: u64) -> Option<&Page> {
        self.page(pa)
            .filter(|p| pa % 8 == 0 && p.state != PageState::Free)
    }

    fn take_budget(&mut self) -> bool {
        match &mut self.budget {
            Some(0) => false,
            Some(n) => {
                *n -= 1;
                true
            }
            None => true,
        }
    }

    fn zero(&mut self, idx: u32, len: u32) {
        let w = self.geo.words_per_page();
        let start = idx as usize * w;
        self.mem().fill(start..start + len as usize * w, 0);
    }

    /// `zalloc_page(mc)`: a zeroed page with refcount 1, taken the way the
    /// arena's [`PageSource`] takes it. Pages are always the lowest free
    /// ones: where they come from only decides whether there is one, and
    /// what is counted (the two sides just need to agree).
    ///
    /// The allocation-failure budget (`fail_after`) models an allocator
    /// running dry, so it does not apply to pages a cache already holds: a
    /// kernel memcache's (topped up before the walk), or a pKVM guest's
    /// `vm->pool`. It does apply to a pKVM guest's memcache, which the host
    /// fills page by page at each hypercall (hyp-main.c `refill_memcache`).
    pub fn zalloc_page(
        &mut self,
        mc: Option<&mut Memcache>,
        trace: &mut impl Record,
    ) -> Option<u64> {
        let (source, pa) = match (self.source, mc) {
            (PageSource::Pool, _) => (AllocSource::Pool, self.alloc_run(1, false)),
            (PageSource::Budget, None) => (AllocSource::NoCache, None),
            (PageSource::Budget, Some(mc)) => (AllocSource::Memcache, self.pop(mc, true)),
            (PageSource::GuestPool, _) if self.vm_pool > 0 => {
                let pa = self.alloc_page_unbudgeted();
                if pa.is_some() {
                    self.vm_pool -= 1;
                }
                (AllocSource::VmPool, pa)
            }
            // pop_hyp_memcache(NULL) would dereference NULL; the op
            // preconditions keep NULL away from every path that allocates.
            (PageSource::GuestPool, None) => (AllocSource::NoCache, None),
            (PageSource::GuestPool, Some(mc)) => (AllocSource::Memcache, self.pop(mc, true)),
            (PageSource::KernelMemcache, None) => (AllocSource::NoCache, None),
            (PageSource::KernelMemcache, Some(mc)) if mc.nobjs > 0 => {
                (AllocSource::Memcache, self.pop(mc, false))
            }
            (PageSource::KernelMemcache, Some(_)) => {
                trace.push(Event::CallerWarn(CallerWarn::EmptyMemcache));
                let pa = self.alloc_run(1, false);
                trace.push(Event::ZallocPage {
                    source: AllocSource::Atomic,
                    pa,
                });
                if pa.is_none() {
                    trace.push(Event::CallerBug(CallerBug::MemcacheAllocFailed));
                }
                return pa;
            }
        };
        trace.push(Event::ZallocPage { source, pa });
        pa
    }

    /// Takes one of `mc`'s pages (none when it is empty). `budgeted`: the
    /// page counts against `fail_after`. A memcache cannot hold more pages
    /// than the arena has free: beyond that it runs dry like a pool.
    fn pop(&mut self, mc: &mut Memcache, budgeted: bool) -> Option<u64> {
        if mc.nobjs == 0 {
            return None;
        }
        let pa = if budgeted {
            self.alloc_run(1, false)
        } else {
            self.alloc_page_unbudgeted()
        };
        if pa.is_some() {
            mc.nobjs -= 1;
        }
        pa
    }

    fn alloc_page_unbudgeted(&mut self) -> Option<u64> {
        let budget = self.budget.take();
        let pa = self.alloc_run(1, false);
        self.budget = budget;
        pa
    }

    /// Marks `pages` as belonging to an unlinked table whose free waits
    /// for an RCU grace period: any use of them is a [`Misuse`] until
    /// [`Arena::end_grace_period`].
    pub fn defer_free(&mut self, pages: &[u64]) {
        self.set_grace(pages, Grace::Pending);
    }

    /// Like [`Arena::defer_free`], for a table another CPU unlinked while
    /// the walker of the running op was inside it: RCU lets that walker go
    /// on using it until its `rcu_read_unlock`, so its uses are none of
    /// the arena's business until [`Arena::revoke_entered`] says the walker
    /// has left.
    pub fn defer_free_entered(&mut self, pages: &[u64]) {
        self.set_grace(pages, Grace::Entered);
    }

    /// The walker that was inside `pages` when they were unlinked has left
    /// them: from now on any use is a [`Misuse`] again.
    pub fn revoke_entered(&mut self, pages: &[u64]) {
        for &pa in pages {
            if let Some(i) = self.page_index(pa) {
                let page = &mut self.pages[i as usize];
                if page.grace == Grace::Entered {
                    page.grace = Grace::Pending;
                }
            }
        }
    }

    /// The grace period of `pages` has ended: the RCU callback may free them.
    pub fn end_grace_period(&mut self, pages: &[u64]) {
        self.set_grace(pages, Grace::None);
    }

    fn set_grace(&mut self, pages: &[u64], g: Grace) {
        for &pa in pages {
            if let Some(i) = self.page_index(pa) {
                self.pages[i as usize].grace = g;
            }
        }
    }

    /// Whether the page holding `pa` waits for an RCU grace period.
    pub fn rcu_pending(&self, pa: u64) -> bool {
        self.page(pa).is_some_and(|p| p.grace != Grace::None)
    }

    /// Checks a descriptor store at `pa` (either side reports every store):
    /// it must hit a live table page that is not waiting to be freed (a
    /// page waiting for a grace period that no walker still inside it may
    /// use: [`Grace::Pending`]).
    #[inline]
    pub fn check_store(&mut self, pa: u64) -> Option<Misuse> {
        match self.table_page(pa) {
            Some(p) => (p.grace == Grace::Pending).then_some(Misuse::UnlinkedTableUsed {
                op: MmOp::Store,
                pa,
            }),
            None => self.stray_store(pa),
        }
    }

    #[cold]
    fn stray_store(&mut self, pa: u64) -> Option<Misuse> {
        self.taint();
        Some(Misuse::StoreOutsideTables { pa })
    }

    /// Another agent's store of `val` into the descriptor at `pa` (a
    /// scheduled race): not an event of either side. False, and nothing
    /// written, when `pa` is not a slot of a live table page.
    pub fn store_foreign(&mut self, pa: u64, val: u64) -> bool {
        if !self.is_table_slot(pa) {
            return false;
        }
        let off = ((pa - self.geo.base_pa) / 8) as usize;
        self.mem().write(off, val);
        true
    }

    /// A zeroed page with refcount 1 for another CPU's walker, from that
    /// CPU's own memcache: it does not count against this side's
    /// allocation budget and records nothing.
    pub fn zalloc_foreign(&mut self) -> Option<u64> {
        self.alloc_page_unbudgeted()
    }

    /// `zalloc_pages_exact(size)`: a zeroed, contiguous run, each page with refcount 1.
    pub fn zalloc_pages_exact(&mut self, size: u64, trace: &mut impl Record) -> Option<u64> {
        let n = size.div_ceil(self.geo.page_size);
        let pa = if n == 0 || n > u64::from(self.geo.pages) {
            None
        } else {
            self.alloc_run(n as u32, true)
        };
        trace.push(Event::ZallocPagesExact { size, pa });
        pa
    }

    fn alloc_run(&mut self, len: u32, exact: bool) -> Option<u64> {
        let total = self.geo.pages;
        let mut first = 0;
        while first + len <= total {
            match (first..first + len).find(|&i| self.pages[i as usize].state != PageState::Free) {
                Some(busy) => first = busy + 1,
                None => {
                    if !self.take_budget() {
                        return None;
                    }
                    for i in first..first + len {
                        let page = &mut self.pages[i as usize];
                        page.state = if exact {
                            PageState::Exact { first, len }
                        } else {
                            PageState::Single
                        };
                        page.refcount = 1;
                    }
                    self.zero(first, len);
                    self.live += len;
                    self.high_water = self.high_water.max(first + len);
                    return Some(self.page_pa(first));
                }
            }
        }
        None
    }

    /// `free_pages_exact(pa, size)`.
    pub fn free_pages_exact(&mut self, pa: u64, size: u64, trace: &mut impl Record) {
        trace.push(Event::FreePagesExact { pa, size });
        let n = size.div_ceil(self.geo.page_size) as u32;
        let Some(first) = self.page_index(pa) else {
            trace.push(Event::Misuse(Misuse::ForeignAddress {
                op: MmOp::FreePagesExact,
                pa,
            }));
            return;
        };
        let ok = pa % self.geo.page_size == 0
            && n > 0
            && first + n <= self.geo.pages
            && (first..first + n)
                .all(|i| self.pages[i as usize].state == PageState::Exact { first, len: n });
        if !ok {
            trace.push(Event::Misuse(Misuse::BadFreeExact { pa, size }));
            return;
        }
        for i in first..first + n {
            let count = self.pages[i as usize].refcount;
            if count != 1 {
                trace.push(Event::Misuse(Misuse::FreeWithReferences {
                    pa: self.page_pa(i),
                    count,
                }));
            }
            self.release(i);
        }
    }

    fn release(&mut self, idx: u32) {
        // Freed memory reads as POISON, so a use after free behaves the
        // same on every run and on both sides.
        let w = self.geo.words_per_page();
        self.mem()
            .fill(idx as usize * w..(idx as usize + 1) * w, POISON);
        self.pages[idx as usize] = Page::FREE;
        self.live -= 1;
        if self.source == PageSource::GuestPool {
            // hyp_put_page / guest_s2_free_pages_exact return it to vm->pool.
            self.vm_pool += 1;
        }
    }

    fn live_index(&self, op: MmOp, pa: u64, trace: &mut impl Record) -> Option<u32> {
        match self.page_index(pa) {
            None => {
                trace.push(Event::Misuse(Misuse::ForeignAddress { op, pa }));
                None
            }
            Some(i) if self.pages[i as usize].state == PageState::Free => {
                trace.push(Event::Misuse(Misuse::FreePage { op, pa }));
                None
            }
            Some(i) => {
                if self.pages[i as usize].grace == Grace::Pending {
                    trace.push(Event::Misuse(Misuse::UnlinkedTableUsed { op, pa }));
                }
                Some(i)
            }
        }
    }

    /// `get_page(addr)`: addr may be anywhere inside the page.
    pub fn get_page(&mut self, pa: u64, trace: &mut impl Record) {
        if let Some(i) = self.live_index(MmOp::GetPage, pa, trace) {
            let page = &mut self.pages[i as usize];
            page.refcount += 1;
            let count = page.refcount;
            trace.push(Event::GetPage {
                page: self.page_pa(i),
                count,
            });
        }
    }

    /// `put_page(addr)`: frees the page when its count reaches 0.
    pub fn put_page(&mut self, pa: u64, trace: &mut impl Record) {
        if let Some(i) = self.live_index(MmOp::PutPage, pa, trace) {
            let page = &mut self.pages[i as usize];
            page.refcount -= 1;
            let count = page.refcount;
            trace.push(Event::PutPage {
                page: self.page_pa(i),
                count,
            });
            if count == 0 {
                self.release(i);
            }
        }
    }

    /// `page_count(addr)`; 0 (with a finding) for a page that is not live.
    pub fn page_count(&self, pa: u64, trace: &mut impl Record) -> i32 {
        match self.live_index(MmOp::PageCount, pa, trace) {
            Some(i) => self.pages[i as usize].refcount as i32,
            None => 0,
        }
    }

    /// Refcount of page `idx` (0 when free).
    pub fn refcount(&self, idx: u32) -> u32 {
        self.pages[idx as usize].refcount
    }

    /// The live pages in PA order, as (pa, refcount).
    pub fn live(&self) -> impl Iterator<Item = (u64, u32)> + '_ {
        // Pages at or above the high-water mark were never allocated.
        (0..self.high_water.min(self.geo.pages))
            .filter(|&i| self.pages[i as usize].state != PageState::Free)
            .map(|i| (self.page_pa(i), self.pages[i as usize].refcount))
    }

    /// The descriptors of the live page at `pa`.
    pub fn page_words(&self, pa: u64) -> &[u64] {
        let idx = self
            .page_index(pa)
            .expect("page_words: PA outside the arena") as usize;
        let w = self.geo.words_per_page();
        self.mem().slice(idx * w..(idx + 1) * w)
    }

    /// Reads a descriptor (for reports and checks).
    pub fn read(&self, pa: u64) -> Option<u64> {
        let idx = self.page_index(pa)?;
        let off = ((pa - self.geo.base_pa) / 8) as usize;
        (pa % 8 == 0 && self.pages[idx as usize].state != PageState::Free)
            .then(|| self.mem().read(off))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::Trace;

    fn arena(pages: u32) -> Arena {
        Arena::new(Geometry::new(4096, pages), PageSource::Pool, None)
    }

    #[test]
    fn allocates_lowest_free_page_first_and_zeroes() {
        let mut a = arena(4);
        let mut t = Trace::new();
        let p0 = a.zalloc_page(None, &mut t).unwrap();
        let p1 = a.zalloc_page(None, &mut t).unwrap();
        assert_eq!(p0, 0x4000_0000);
        assert_eq!(p1, 0x4000_1000);
        // SAFETY: p1 is a live arena page.
        unsafe { *a.phys_to_virt(p1 + 8) = 0xdead };
        a.put_page(p0, &mut t);
        a.put_page(p1, &mut t);
        assert!(a.is_empty());
        // The freed p0 is reused first, and p1 comes back zeroed.
        assert_eq!(a.zalloc_page(None, &mut t), Some(p0));
        assert_eq!(a.zalloc_page(None, &mut t), Some(p1));
        assert_eq!(a.read(p1 + 8), Some(0));
    }

    /// An arena whose page records were reused starts as a new one: every
    /// page free, no count, none waiting for a grace period.
    #[test]
    fn the_next_arena_starts_with_every_page_free() {
        let mut t = Trace::new();
        let mut a = arena(4);
        let p = a.zalloc_page(None, &mut t).unwrap();
        let q = a.zalloc_page(None, &mut t).unwrap();
        a.get_page(p, &mut t);
        a.defer_free(&[q]);
        assert_eq!(a.live_pages(), 2);
        drop(a);
        let b = arena(8);
        assert!(b.is_empty());
        assert_eq!(b.live_pages(), 0);
        assert!((0..8).all(|i| b.refcount(i) == 0), "a count came back");
        assert!(!b.rcu_pending(p) && !b.rcu_pending(q));
        assert_eq!(b.pages.len(), 8);
        assert!(b.pages.iter().all(|&r| r == Page::FREE));
    }

    #[test]
    fn refcount_contract() {
        let mut a = arena(2);
        let mut t = Trace::new();
        let p = a.zalloc_page(None, &mut t).unwrap();
        a.get_page(p + 0x18, &mut t);
        assert_eq!(a.page_count(p + 0xff8, &mut t), 2);
        a.put_page(p, &mut t);
        a.put_page(p, &mut t);
        assert!(a.is_empty());
        t.clear();
        a.put_page(p, &mut t);
        assert_eq!(
            t,
            vec![Event::Misuse(Misuse::FreePage {
                op: MmOp::PutPage,
                pa: p
            })]
        );
    }

    #[test]
    fn foreign_address_is_a_finding() {
        let mut a = arena(1);
        let mut t = Trace::new();
        a.get_page(0x1000, &mut t);
        assert_eq!(
            t,
            vec![Event::Misuse(Misuse::ForeignAddress {
                op: MmOp::GetPage,
                pa: 0x1000
            })]
        );
    }

    #[test]
    fn exact_allocation_is_contiguous_with_per_page_counts() {
        let mut a = arena(8);
        let mut t = Trace::new();
        let single = a.zalloc_page(None, &mut t).unwrap();
        let pgd = a.zalloc_pages_exact(3 * 4096, &mut t).unwrap();
        assert_eq!(pgd, single + 4096);
        assert_eq!(a.live_pages(), 4);
        a.get_page(pgd + 4096, &mut t);
        t.clear();
        a.free_pages_exact(pgd, 3 * 4096, &mut t);
        assert_eq!(
            t[1],
            Event::Misuse(Misuse::FreeWithReferences {
                pa: pgd + 4096,
                count: 2
            })
        );
        assert_eq!(a.live_pages(), 1);
        // A one-page exact allocation is still freed by free_pages_exact.
        let one = a.zalloc_pages_exact(4096, &mut t).unwrap();
        t.clear();
        a.free_pages_exact(one, 4096, &mut t);
        assert_eq!(
            t,
            vec![Event::FreePagesExact {
                pa: one,
                size: 4096
            }]
        );
    }

    #[test]
    fn memcache_and_null_policies() {
        let mut a = Arena::new(Geometry::new(4096, 8), PageSource::Budget, None);
        let mut t = Trace::new();
        assert_eq!(a.zalloc_page(None, &mut t), None);
        let mut mc = Memcache { nobjs: 1 };
        assert!(a.zalloc_page(Some(&mut mc), &mut t).is_some());
        assert_eq!(mc.nobjs, 0);
        assert_eq!(a.zalloc_page(Some(&mut mc), &mut t), None);
    }

    #[test]
    fn kernel_memcache_never_returns_null_for_an_empty_cache() {
        let mut a = Arena::new(Geometry::new(4096, 8), PageSource::KernelMemcache, Some(1));
        let mut t = Trace::new();
        // A page the cache holds: no WARN, and the failure budget does not
        // apply (it was allocated when the cache was topped up).
        let mut mc = Memcache { nobjs: 2 };
        assert_eq!(a.zalloc_page(Some(&mut mc), &mut t), Some(0x4000_0000));
        assert_eq!(a.zalloc_page(Some(&mut mc), &mut t), Some(0x4000_1000));
        assert_eq!(mc.nobjs, 0);
        // Empty: WARN, then a GFP_ATOMIC allocation (budget #0 succeeds).
        t.clear();
        assert_eq!(a.zalloc_page(Some(&mut mc), &mut t), Some(0x4000_2000));
        assert_eq!(
            t,
            vec![
                Event::CallerWarn(CallerWarn::EmptyMemcache),
                Event::ZallocPage {
                    source: AllocSource::Atomic,
                    pa: Some(0x4000_2000)
                }
            ]
        );
        // The atomic allocation fails: BUG.
        t.clear();
        assert_eq!(a.zalloc_page(Some(&mut mc), &mut t), None);
        assert_eq!(
            t[2],
            Event::CallerBug(CallerBug::MemcacheAllocFailed),
            "{t:?}"
        );
    }

    #[test]
    fn guest_pool_reuses_freed_pages_before_the_memcache() {
        let mut a = Arena::new(Geometry::new(4096, 8), PageSource::GuestPool, None);
        let mut t = Trace::new();
        let mut mc = Memcache { nobjs: 1 };
        let p = a.zalloc_page(Some(&mut mc), &mut t).unwrap();
        assert_eq!(mc.nobjs, 0);
        assert_eq!(a.zalloc_page(Some(&mut mc), &mut t), None);
        a.put_page(p, &mut t);
        t.clear();
        // Back in vm->pool: taken first, the (empty) memcache untouched.
        assert_eq!(a.zalloc_page(Some(&mut mc), &mut t), Some(p));
        assert_eq!(
            t,
            vec![Event::ZallocPage {
                source: AllocSource::VmPool,
                pa: Some(p)
            }]
        );
        assert_eq!(a.zalloc_page(None, &mut t), None);
    }

    #[test]
    fn pages_waiting_for_a_grace_period_must_not_be_used() {
        let mut a = arena(4);
        let mut t = Trace::new();
        let p = a.zalloc_page(None, &mut t).unwrap();
        a.defer_free(&[p]);
        t.clear();
        a.get_page(p + 8, &mut t);
        assert_eq!(
            t[0],
            Event::Misuse(Misuse::UnlinkedTableUsed {
                op: MmOp::GetPage,
                pa: p + 8
            })
        );
        assert_eq!(
            a.check_store(p + 16),
            Some(Misuse::UnlinkedTableUsed {
                op: MmOp::Store,
                pa: p + 16
            })
        );
        // Once the grace period has ended the RCU callback may free it.
        a.end_grace_period(&[p]);
        t.clear();
        a.put_page(p, &mut t);
        a.put_page(p, &mut t);
        assert_eq!(t, vec![put(p, 1), put(p, 0)]);
        assert_eq!(a.check_store(p), Some(Misuse::StoreOutsideTables { pa: p }));
    }

    #[test]
    fn a_walker_inside_an_unlinked_table_may_use_it_until_it_leaves() {
        let mut a = arena(4);
        let mut t = Trace::new();
        let p = a.zalloc_page(None, &mut t).unwrap();
        a.defer_free_entered(&[p]);
        assert!(a.rcu_pending(p));
        t.clear();
        a.get_page(p, &mut t);
        assert_eq!(t, vec![Event::GetPage { page: p, count: 2 }]);
        assert_eq!(a.check_store(p + 8), None);
        // Once the walker has left, a use is a use after unlink again.
        a.revoke_entered(&[p]);
        assert_eq!(
            a.check_store(p + 8),
            Some(Misuse::UnlinkedTableUsed {
                op: MmOp::Store,
                pa: p + 8
            })
        );
        a.end_grace_period(&[p]);
        assert_eq!(a.check_store(p + 8), None);
    }

    #[test]
    fn another_agents_store_and_page_are_silent() {
        let mut a = arena(4);
        let mut t = Trace::new();
        let p = a.zalloc_page(None, &mut t).unwrap();
        assert!(a.store_foreign(p + 8, 0x400));
        assert_eq!(a.read(p + 8), Some(0x400));
        // Not a table slot: nothing written.
        assert!(!a.store_foreign(p + 0x1000, 1));
        assert_eq!(a.zalloc_foreign(), Some(p + 0x1000));
        assert_eq!(a.refcount(1), 1);
    }

    fn put(page: u64, count: u32) -> Event {
        Event::PutPage { page, count }
    }

    #[test]
    fn allocation_failure_injection() {
        let mut a = Arena::new(Geometry::new(4096, 8), PageSource::Pool, Some(2));
        let mut t = Trace::new();
        assert!(a.zalloc_page(None, &mut t).is_some());
        assert!(a.zalloc_page(None, &mut t).is_some());
        assert_eq!(a.zalloc_page(None, &mut t), None);
    }
}
