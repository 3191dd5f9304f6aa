// SPDX-License-Identifier: GPL-2.0-only
//! The one generic page-table walker every operation is built on.
//!
//! A walk visits, depth first, every descriptor covering `[addr, end)`.
//! Which descriptors reach the visitor is decided by [`WalkFlags`]: leaves
//! (including invalid entries), tables before descending, tables after
//! their children. After a leaf or pre-order visit the descriptor is read
//! again, so a visitor that replaced a leaf with a table gets the new table
//! walked straight away.
//!
//! A visitor is any `FnMut(&mut VisitCtx<E>, Visit) -> Result<(), Error>`:
//! the kernel's `kvm_pgtable_walker` is its callback plus `arg`, which a
//! Rust closure captures.

use crate::env::{Env, warn_on_once};
use crate::mem::{self, Slot, Table};
use crate::types::{
    Config, Context, Error, Granule, KernelLine, Level, PhysAddr, Pte, WalkFlags, align_down,
    align_up, bit,
};

/// Which kind of visit a visitor invocation is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Visit {
    /// A leaf (block, page or invalid entry).
    Leaf,
    /// A table, before its children.
    TablePre,
    /// A table, after its children.
    TablePost,
}

impl Visit {
    /// The walk flag that requests this kind of visit.
    pub const fn as_flag(self) -> WalkFlags {
        match self {
            Visit::Leaf => WalkFlags::LEAF,
            Visit::TablePre => WalkFlags::TABLE_PRE,
            Visit::TablePost => WalkFlags::TABLE_POST,
        }
    }
}

/// What a visitor is told about the descriptor being visited, plus access
/// to the environment so it can allocate, refcount and store descriptors.
///
/// The fields are a snapshot: changing them does not affect the walk, nor
/// which descriptor [`VisitCtx::read`] and the stores reach (they go through
/// the pointer the walker resolved for `ptep`'s table page).
#[doc(alias = "kvm_pgtable_visit_ctx")]
pub struct VisitCtx<'a, E> {
    /// The environment.
    pub env: &'a mut E,
    /// The configuration.
    pub cfg: &'a Config,
    /// Physical address of the descriptor.
    pub ptep: PhysAddr,
    /// Descriptor value when the visit started (re-read before a post-order
    /// visit).
    pub old: Pte,
    /// Page-aligned start of the walk.
    pub start: u64,
    /// Walk position when this descriptor was reached.
    pub addr: u64,
    /// Page-aligned end of the walk.
    pub end: u64,
    /// Level of the descriptor.
    pub level: Level,
    /// The walk's flags.
    pub flags: WalkFlags,
    /// `ptep` and the pointer it is accessed through, resolved once per
    /// table page by the walker.
    slot: Slot,
}

impl<E: Env> VisitCtx<'_, E> {
    /// The walk may race with other walkers.
    #[doc(alias = "kvm_pgtable_walk_shared")]
    #[inline]
    pub fn shared(&self) -> bool {
        self.flags.contains(WalkFlags::SHARED)
    }

    /// Break-before-make should not invalidate TLBs.
    #[doc(alias = "kvm_pgtable_walk_skip_bbm_tlbi")]
    #[inline]
    pub fn skip_bbm_tlbi(&self) -> bool {
        self.flags.contains(WalkFlags::SKIP_BBM_TLBI)
    }

    /// Leaf installation should not do cache maintenance.
    #[doc(alias = "kvm_pgtable_walk_skip_cmo")]
    #[inline]
    pub fn skip_cmo(&self) -> bool {
        self.flags.contains(WalkFlags::SKIP_CMO)
    }

    /// Size of the region an entry at this level covers.
    #[doc(alias = "kvm_granule_size")]
    #[inline]
    pub fn granule_size(&self) -> u64 {
        self.cfg.granule.granule_size(self.level)
    }

    /// Address a descriptor points at.
    #[doc(alias = "kvm_pte_follow")]
    #[inline]
    pub fn follow(&self, pte: Pte) -> PhysAddr {
        pte.to_phys(self.cfg)
    }

    /// Current value of the descriptor in memory (`READ_ONCE`).
    #[inline]
    pub fn read(&mut self) -> Pte {
        Pte(mem::read_once(self.env, self.slot))
    }

    /// Current value of the descriptor, read the way the kernel reads it
    /// with a plain `*ctx->ptep`: not an access other agents synchronise
    /// with (see [`crate::Hw::pte_access`]).
    #[inline]
    pub(crate) fn load(&mut self) -> Pte {
        Pte(mem::read_plain(self.slot))
    }

    /// Plain store of `new` into the descriptor (`WRITE_ONCE`).
    #[inline]
    pub fn write_once(&mut self, new: Pte) {
        mem::write_once(self.env, self.slot, new.0);
    }

    /// Release store of `new` into the descriptor.
    #[inline]
    pub fn store_release(&mut self, new: Pte) {
        mem::store_release(self.env, self.slot, new.0);
    }

    /// Replace the descriptor with `new` if it still holds `self.old`.
    #[inline]
    pub fn cmpxchg(&mut self, new: Pte) -> bool {
        mem::cmpxchg(self.env, self.slot, self.old.0, new.0) == self.old.0
    }

    /// Zero the descriptor with a plain store.
    #[doc(alias = "kvm_clear_pte")]
    #[inline]
    pub(crate) fn clear(&mut self) {
        self.write_once(Pte::EMPTY);
    }
}

/// Where a table lives and which addresses it translates.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Geometry {
    /// Input address width.
    pub ia_bits: u32,
    /// Level of the top-level table(s).
    pub start_level: Level,
    /// Physical address of the top-level table (concatenated pages for
    /// stage-2), or `None` before init / after destroy.
    pub pgd: Option<PhysAddr>,
}

impl Geometry {
    /// Index of the top-level page covering `addr`. The level above the
    /// start level may not exist; its shift is only used to pick among
    /// concatenated top-level pages.
    #[doc(alias = "kvm_pgd_page_idx")]
    pub fn pgd_page_idx(&self, cfg: &Config, addr: u64) -> u32 {
        pgd_page_idx(cfg.granule, self.ia_bits, self.start_level, addr)
    }

    /// Number of (concatenated) top-level pages.
    #[doc(alias = "kvm_pgd_pages")]
    pub fn pgd_pages(&self, cfg: &Config) -> u32 {
        crate::vtcr::pgd_pages(cfg.granule, self.ia_bits, self.start_level)
    }
}

/// [`Geometry::pgd_page_idx`] for a table described by its input width and
/// start level.
#[doc(alias = "kvm_pgd_page_idx")]
pub(crate) fn pgd_page_idx(granule: Granule, ia_bits: u32, start_level: Level, addr: u64) -> u32 {
    // The level above the start level may underflow to -2; only its shift
    // matters.
    let shift = granule.granule_shift(Level(start_level.0.wrapping_sub(1)));
    let mask = bit(ia_bits as u64).wrapping_sub(1);
    (addr & mask).wrapping_shr(shift as u32) as u32
}

/// Mutable walk state shared by all levels of one walk.
#[doc(alias = "kvm_pgtable_walk_data")]
pub(crate) struct WalkData {
    pub(crate) start: u64,
    pub(crate) addr: u64,
    pub(crate) end: u64,
    pub(crate) flags: WalkFlags,
}

/// Whether the synchronisation a shared walk needs is in place.
fn kvm_pgtable_walk_lock_held<E: Env>(env: &mut E, cfg: &Config) -> bool {
    match cfg.context {
        // The hypervisor serialises walkers with its own locks.
        Context::NvheHyp => true,
        Context::Kernel => env.rcu_read_lock_held(),
    }
}

/// Invoke the visitor, first checking that a shared walk is protected.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn kvm_pgtable_visitor_cb<E, V>(
    env: &mut E,
    cfg: &Config,
    data: &WalkData,
    visitor: &mut V,
    slot: Slot,
    old: Pte,
    addr: u64,
    level: Level,
    visit: Visit,
) -> Result<(), Error>
where
    E: Env,
    V: FnMut(&mut VisitCtx<'_, E>, Visit) -> Result<(), Error>,
{
    let shared = data.flags.contains(WalkFlags::SHARED);
    let unprotected = shared && !kvm_pgtable_walk_lock_held(env, cfg);
    warn_on_once(env, unprotected);
    let mut ctx = VisitCtx {
        env,
        cfg,
        ptep: slot.pa,
        old,
        start: data.start,
        addr,
        end: data.end,
        level,
        flags: data.flags,
        slot,
    };
    visitor(&mut ctx, visit)
}

/// Whether a visitor's `EAGAIN` ("lost a race, or nothing to do") lets the
/// walk go on. Linux 6.12: yes, unless a fault handler walks (it retries
/// the guest instead). Linux 7.3 turned the flag around: only walks asking
/// for it go on.
#[inline]
fn kvm_pgtable_walk_ignore_eagain(cfg: &Config, flags: WalkFlags) -> bool {
    match cfg.line {
        KernelLine::V6_12 => !flags.contains(WalkFlags::HANDLE_FAULT),
        KernelLine::V7_3 => flags.contains(WalkFlags::IGNORE_EAGAIN),
    }
}

/// Whether the walk goes on after a visitor returned `r`.
#[inline]
fn kvm_pgtable_walk_continue(cfg: &Config, flags: WalkFlags, r: Result<(), Error>) -> bool {
    if r == Err(Error::Again) {
        return kvm_pgtable_walk_ignore_eagain(cfg, flags);
    }
    r.is_ok()
}

/// Visit one descriptor and, if it is (or became) a table, its subtree.
#[doc(alias = "__kvm_pgtable_visit")]
fn visit<E, V>(
    env: &mut E,
    cfg: &Config,
    data: &mut WalkData,
    visitor: &mut V,
    slot: Slot,
    level: Level,
) -> Result<(), Error>
where
    E: Env,
    V: FnMut(&mut VisitCtx<'_, E>, Visit) -> Result<(), Error>,
{
    let flags = data.flags;
    // The context's address is fixed when the descriptor is reached; the
    // walk position moves on as children are visited.
    let addr = data.addr;
    let mut old = Pte(mem::read_once(env, slot));
    let mut table = old.is_table(level);
    let mut ret = Ok(());
    let mut reload = false;

    if table && flags.contains(WalkFlags::TABLE_PRE) {
        ret = kvm_pgtable_visitor_cb(
            env,
            cfg,
            data,
            visitor,
            slot,
            old,
            addr,
            level,
            Visit::TablePre,
        );
        reload = true;
    }
    if !table && flags.contains(WalkFlags::LEAF) {
        ret = kvm_pgtable_visitor_cb(env, cfg, data, visitor, slot, old, addr, level, Visit::Leaf);
        reload = true;
    }

    // The visitor may have installed or replaced a table: look again so
    // the walk follows what is in memory now.
    if reload {
        old = Pte(mem::read_once(env, slot));
        table = old.is_table(level);
    }

    'out: {
        if !kvm_pgtable_walk_continue(cfg, flags, ret) {
            break 'out;
        }

        if !table {
            let granule = cfg.granule.granule_size(level);
            data.addr = align_down(data.addr, granule);
            data.addr = data.addr.wrapping_add(granule);
            break 'out;
        }

        let childp = Table::follow(env, cfg.granule, old.to_phys(cfg));
        ret = walk_table(env, cfg, data, visitor, childp, level.next());
        if !kvm_pgtable_walk_continue(cfg, flags, ret) {
            break 'out;
        }

        if flags.contains(WalkFlags::TABLE_POST) {
            ret = kvm_pgtable_visitor_cb(
                env,
                cfg,
                data,
                visitor,
                slot,
                old,
                addr,
                level,
                Visit::TablePost,
            );
        }
    }

    if kvm_pgtable_walk_continue(cfg, flags, ret) {
        Ok(())
    } else {
        ret
    }
}

/// Index in a level-`level` table of the entry covering the walk position.
fn kvm_pgtable_idx(cfg: &Config, data: &WalkData, level: Level) -> u64 {
    let shift = cfg.granule.granule_shift(level);
    data.addr.wrapping_shr(shift as u32) & (cfg.granule.ptrs_per_pte() - 1)
}

/// Walk the entries of the table page `table` (a level-`level` table)
/// from the current walk position to the end of the page or of the walk.
#[doc(alias = "__kvm_pgtable_walk")]
pub(crate) fn walk_table<E, V>(
    env: &mut E,
    cfg: &Config,
    data: &mut WalkData,
    visitor: &mut V,
    table: Table,
    level: Level,
) -> Result<(), Error>
where
    E: Env,
    V: FnMut(&mut VisitCtx<'_, E>, Visit) -> Result<(), Error>,
{
    if warn_on_once(env, !level.is_valid()) {
        return Err(Error::Inval);
    }

    let mut idx = kvm_pgtable_idx(cfg, data, level);
    // The page's own length (PTRS_PER_PTE): the bound `Table::slot` checks.
    while idx < table.len() {
        if data.addr >= data.end {
            break;
        }
        visit(env, cfg, data, visitor, table.slot(idx), level)?;
        idx += 1;
    }
    Ok(())
}

/// Walk a whole (rooted) table over the pages of its top level.
#[doc(alias = "_kvm_pgtable_walk")]
fn walk_pgd<E, V>(
    env: &mut E,
    cfg: &Config,
    geom: &Geometry,
    data: &mut WalkData,
    visitor: &mut V,
) -> Result<(), Error>
where
    E: Env,
    V: FnMut(&mut VisitCtx<'_, E>, Visit) -> Result<(), Error>,
{
    let limit = bit(geom.ia_bits as u64);
    if data.addr > limit || data.end > limit {
        return Err(Error::Range);
    }
    let Some(pgd) = geom.pgd else {
        return Err(Error::Inval);
    };

    let mut idx = geom.pgd_page_idx(cfg, data.addr);
    let page_bytes = cfg.granule.ptrs_per_pte() * 8;
    while data.addr < data.end {
        let pgtable = pgd.wrapping_add((idx as u64).wrapping_mul(page_bytes));
        let table = Table::follow(env, cfg.granule, pgtable);
        walk_table(env, cfg, data, visitor, table, geom.start_level)?;
        idx = idx.wrapping_add(1);
    }
    Ok(())
}

/// Enter the walk: shared walks need RCU in the kernel and are refused in
/// the hypervisor, which has none.
fn kvm_pgtable_walk_begin<E: Env>(
    env: &mut E,
    cfg: &Config,
    flags: WalkFlags,
) -> Result<(), Error> {
    if flags.contains(WalkFlags::SHARED) {
        match cfg.context {
            Context::NvheHyp => return Err(Error::Perm),
            Context::Kernel => env.rcu_read_lock(),
        }
    }
    Ok(())
}

fn kvm_pgtable_walk_end<E: Env>(env: &mut E, cfg: &Config, flags: WalkFlags) {
    if flags.contains(WalkFlags::SHARED) && cfg.context == Context::Kernel {
        env.rcu_read_unlock();
    }
}

/// Walk `[addr, addr + size)` (widened to page boundaries) of the table
/// described by `geom`, calling `visitor` on the descriptors `flags`
/// selects.
pub fn kvm_pgtable_walk<E, V>(
    env: &mut E,
    cfg: &Config,
    geom: &Geometry,
    addr: u64,
    size: u64,
    flags: WalkFlags,
    mut visitor: V,
) -> Result<(), Error>
where
    E: Env,
    V: FnMut(&mut VisitCtx<'_, E>, Visit) -> Result<(), Error>,
{
    let page = cfg.granule.page_size();
    let start = align_down(addr, page);
    let mut walk_data = WalkData {
        start,
        addr: start,
        end: align_up(start.wrapping_add(size), page),
        flags,
    };

    kvm_pgtable_walk_begin(env, cfg, flags)?;
    let r = walk_pgd(env, cfg, geom, &mut walk_data, &mut visitor);
    kvm_pgtable_walk_end(env, cfg, flags);
    r
}

/// What [`leaf_walker`] found.
#[doc(alias = "leaf_walk_data")]
struct LeafWalkData {
    pte: Pte,
    level: Level,
}

#[inline]
fn leaf_walker<E: Env>(ctx: &mut VisitCtx<'_, E>, data: &mut LeafWalkData) -> Result<(), Error> {
    data.pte = ctx.old;
    data.level = ctx.level;
    Ok(())
}

/// Find the leaf descriptor (possibly invalid) translating `addr`, and its
/// level.
pub fn kvm_pgtable_get_leaf<E: Env>(
    env: &mut E,
    cfg: &Config,
    geom: &Geometry,
    addr: u64,
) -> Result<(Pte, Level), Error> {
    let mut data = LeafWalkData {
        pte: Pte::EMPTY,
        level: Level(0),
    };
    let page = cfg.granule.page_size();
    kvm_pgtable_walk(
        env,
        cfg,
        geom,
        align_down(addr, page),
        page,
        WalkFlags::LEAF,
        |ctx: &mut VisitCtx<'_, E>, _: Visit| leaf_walker(ctx, &mut data),
    )?;
    Ok((data.pte, data.level))
}
