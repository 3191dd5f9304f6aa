// SPDX-License-Identifier: GPL-2.0-only
//! Hypervisor stage-1 page tables (EL2 translation regime).
//!
//! Hyp mappings are never shared with other walkers and tables are freed
//! eagerly: a table page's refcount is one plus the number of valid
//! descriptors it holds, so unmapping the last entry releases the table.

use crate::env::{Barrier, Env, TLBI_TTL_UNKNOWN, TlbiOp, warn_on};
use crate::types::{
    Config, Error, Level, PhysAddr, Prot, Pte, WalkFlags, align_down, bit, genmask, is_aligned,
    pte_bits as pb,
};
use crate::walk::{Geometry, Visit, VisitCtx, kvm_pgtable_get_leaf, kvm_pgtable_walk};

/// The VA operand of a stage-1 TLBI by address, with ASID 0.
#[inline]
pub(crate) const fn tlbi_vaddr(va: u64) -> u64 {
    (va >> 12) & genmask(43, 0)
}

/// Whether a leaf covering the whole level-`level` region at `addr` may be
/// used to map `phys`: the level must allow blocks, the region must fit in
/// what is left of the walk, and both addresses must be aligned to it (an
/// invalid `phys`, as used for ownership annotations, has no alignment).
pub(crate) fn block_mapping_supported(
    cfg: &Config,
    level: Level,
    addr: u64,
    end: u64,
    phys: u64,
) -> bool {
    let granule = cfg.granule.granule_size(level);
    if !cfg.granule.level_supports_block_mapping(level) {
        return false;
    }
    if granule > end.wrapping_sub(addr) {
        return false;
    }
    if cfg.phys_is_valid(phys) && !is_aligned(phys, granule) {
        return false;
    }
    is_aligned(addr, granule)
}

/// Translate hyp permissions into stage-1 leaf attributes.
pub fn hyp_set_prot_attr(cfg: &Config, prot: Prot) -> Result<u64, Error> {
    let device = prot.contains(Prot::DEVICE);
    let mtype = if device {
        pb::MT_DEVICE_NGNRE
    } else {
        pb::MT_NORMAL
    };
    let mut attr = (mtype << 2) & pb::S1_ATTRIDX;
    let ap = if prot.contains(Prot::W) {
        cfg.s1_ap_rw()
    } else {
        cfg.s1_ap_ro()
    };

    if !prot.contains(Prot::R) {
        return Err(Error::Inval);
    }

    if prot.contains(Prot::X) {
        // W^X, and never execute from device memory.
        if prot.contains(Prot::W) || device {
            return Err(Error::Inval);
        }
        if cfg.features.bti_kernel {
            attr |= pb::S1_GP;
        }
    } else {
        attr |= pb::S1_XN;
    }

    attr |= (ap << 6) & pb::S1_AP;
    // With LPA2, bits 9:8 carry output address bits instead of SH.
    if !cfg.features.lpa2 {
        attr |= (pb::SH_IS << 8) & pb::S1_SH;
    }
    attr |= pb::S1_AF;
    attr |= prot.bits() & pb::LEAF_ATTR_HI_SW;
    Ok(attr)
}

/// Decode the permissions of a hyp stage-1 descriptor.
pub fn hyp_pte_prot(cfg: &Config, pte: Pte) -> Prot {
    let mut prot = Prot::from_bits_retain(pte.0 & pb::LEAF_ATTR_HI_SW);
    if !pte.is_valid() {
        return prot;
    }
    if pte.0 & pb::S1_XN == 0 {
        prot |= Prot::X;
    }
    let ap = (pte.0 & pb::S1_AP) >> 6;
    if ap == cfg.s1_ap_ro() {
        prot |= Prot::R;
    } else if ap == cfg.s1_ap_rw() {
        prot |= Prot::RW;
    }
    prot
}

/// State of a hyp map walk.
struct HypMapData {
    phys: u64,
    attr: u64,
}

/// Install a leaf if this level can hold one; `false` asks the caller to
/// go one level down instead.
fn hyp_map_walker_try_leaf<E: Env>(ctx: &mut VisitCtx<'_, E>, data: &HypMapData) -> bool {
    let phys = data.phys.wrapping_add(ctx.addr.wrapping_sub(ctx.start));
    if !block_mapping_supported(ctx.cfg, ctx.level, ctx.addr, ctx.end, phys) {
        return false;
    }

    let new = Pte::new_valid_leaf(phys, data.attr, ctx.level, ctx.cfg);
    if ctx.old == new {
        return true;
    }
    if !ctx.old.is_valid() {
        // A new valid entry: the table page gains a reference.
        ctx.env.get_page(ctx.ptep);
    } else if warn_on(ctx.env, (ctx.old.0 ^ new.0) & !pb::LEAF_ATTR_HI_SW != 0) {
        // Only software bits may change on a live hyp mapping.
        return false;
    }

    ctx.store_release(new);
    true
}

fn hyp_map_walker<E: Env>(ctx: &mut VisitCtx<'_, E>, data: &HypMapData) -> Result<(), Error> {
    if hyp_map_walker_try_leaf(ctx, data) {
        return Ok(());
    }

    if warn_on(ctx.env, ctx.level == Level::LAST) {
        return Err(Error::Inval);
    }

    // Hyp tables are always allocated from the default pool.
    let Some(childp) = ctx.env.zalloc_page(None) else {
        return Err(Error::NoMem);
    };
    let new = Pte::new_table(childp, ctx.cfg);
    ctx.env.get_page(ctx.ptep);
    ctx.store_release(new);
    Ok(())
}

fn hyp_unmap_walker<E: Env>(ctx: &mut VisitCtx<'_, E>, unmapped: &mut u64) -> Result<(), Error> {
    let granule = ctx.granule_size();

    // Unmapping stops at the first hole.
    if !ctx.old.is_valid() {
        return Err(Error::Inval);
    }

    let mut childp = None;
    if ctx.old.is_table(ctx.level) {
        let child = ctx.follow(ctx.old);
        // Post-order: only a table whose entries are all gone is removed.
        if ctx.env.page_count(child) != 1 {
            return Ok(());
        }
        childp = Some(child);
        ctx.clear();
        ctx.env.dsb(Barrier::IshSt);
        ctx.env
            .tlbi_hyp(TlbiOp::Vae2is, tlbi_vaddr(ctx.addr), TLBI_TTL_UNKNOWN);
    } else {
        // Never unmap part of a block.
        if ctx.end.wrapping_sub(ctx.addr) < granule {
            return Err(Error::Inval);
        }
        ctx.clear();
        ctx.env.dsb(Barrier::IshSt);
        #[cfg(not(kpd_mutant = "rs-hyp-unmap-no-tlbi"))]
        ctx.env
            .tlbi_hyp(TlbiOp::Vale2is, tlbi_vaddr(ctx.addr), ctx.level.into());
        *unmapped = unmapped.wrapping_add(granule);
    }

    ctx.env.tlbi_sync_s1ish_hyp();
    ctx.env.isb();
    ctx.env.put_page(ctx.ptep);

    if let Some(child) = childp {
        ctx.env.put_page(child);
    }
    Ok(())
}

fn hyp_free_walker<E: Env>(ctx: &mut VisitCtx<'_, E>) -> Result<(), Error> {
    if !ctx.old.is_valid() {
        return Ok(());
    }
    ctx.env.put_page(ctx.ptep);
    if ctx.old.is_table(ctx.level) {
        let child = ctx.follow(ctx.old);
        ctx.env.put_page(child);
    }
    Ok(())
}

/// A hypervisor stage-1 page table owning its environment.
///
/// Created empty by [`HypPgtable::new`]; [`HypPgtable::init`] allocates the
/// root, mirroring how the kernel initialises a caller-provided
/// `struct kvm_pgtable`. Operations on a table without a root fail like the
/// kernel's walker does on a NULL pgd.
pub struct HypPgtable<E> {
    env: E,
    cfg: Config,
    geom: Geometry,
}

impl<E: Env> HypPgtable<E> {
    /// An uninitialised table.
    pub fn new(env: E, cfg: Config) -> Self {
        HypPgtable {
            env,
            cfg,
            geom: Geometry::default(),
        }
    }

    /// The environment.
    pub fn env(&self) -> &E {
        &self.env
    }

    /// The environment, mutably.
    pub fn env_mut(&mut self) -> &mut E {
        &mut self.env
    }

    /// Give the environment back.
    pub fn into_env(self) -> E {
        self.env
    }

    /// The configuration.
    pub fn cfg(&self) -> &Config {
        &self.cfg
    }

    /// Root location and input range.
    pub fn geometry(&self) -> Geometry {
        self.geom
    }

    /// Allocate the root table for a `va_bits`-wide address space.
    pub fn init(&mut self, va_bits: u32) -> Result<(), Error> {
        let levels = self.cfg.granule.levels(va_bits);
        let start_level = Level(((Level::LAST.0 as u32 + 1).wrapping_sub(levels)) as i8);
        if !start_level.is_valid() {
            return Err(Error::Inval);
        }

        let Some(pgd) = self.env.zalloc_page(None) else {
            return Err(Error::NoMem);
        };
        self.geom = Geometry {
            ia_bits: va_bits,
            start_level,
            pgd: Some(pgd),
        };
        Ok(())
    }

    /// Map `[addr, addr + size)` to `phys` with `prot`, using the largest
    /// leaves alignment allows.
    pub fn map(&mut self, addr: u64, size: u64, phys: u64, prot: Prot) -> Result<(), Error> {
        let attr = hyp_set_prot_attr(&self.cfg, prot)?;
        let data = HypMapData {
            phys: align_down(phys, self.cfg.granule.page_size()),
            attr,
        };
        let visitor = |ctx: &mut VisitCtx<'_, E>, _visit: Visit| hyp_map_walker(ctx, &data);
        let ret = kvm_pgtable_walk(
            &mut self.env,
            &self.cfg,
            &self.geom,
            addr,
            size,
            WalkFlags::LEAF,
            visitor,
        );
        self.env.dsb(Barrier::IshSt);
        #[cfg(not(kpd_mutant = "rs-hyp-map-no-isb"))]
        self.env.isb();
        ret
    }

    /// Unmap `[addr, addr + size)`, returning how many bytes were unmapped.
    /// Stops early at a hole or a partially covered block. Returns 0 when
    /// the environment has no `page_count`.
    pub fn unmap(&mut self, addr: u64, size: u64) -> u64 {
        let mut unmapped = 0u64;
        if !self.env.has_page_count() {
            return 0;
        }
        let visitor =
            |ctx: &mut VisitCtx<'_, E>, _visit: Visit| hyp_unmap_walker(ctx, &mut unmapped);
        // Errors only end the walk early; the byte count tells the story.
        let _ = kvm_pgtable_walk(
            &mut self.env,
            &self.cfg,
            &self.geom,
            addr,
            size,
            WalkFlags::LEAF | WalkFlags::TABLE_POST,
            visitor,
        );
        unmapped
    }

    /// Drop every reference the table holds and free the root.
    pub fn destroy(&mut self) {
        let ret = kvm_pgtable_walk(
            &mut self.env,
            &self.cfg,
            &self.geom,
            0,
            bit(self.geom.ia_bits as u64),
            WalkFlags::LEAF | WalkFlags::TABLE_POST,
            |ctx: &mut VisitCtx<'_, E>, _visit: Visit| hyp_free_walker(ctx),
        );
        warn_on(&mut self.env, ret.is_err());
        // Without a root there is nothing to release.
        if let Some(pgd) = self.geom.pgd.take() {
            self.env.put_page(pgd);
        }
    }

    /// Walk `[addr, addr + size)` with a custom visitor.
    pub fn walk<V>(
        &mut self,
        addr: u64,
        size: u64,
        flags: WalkFlags,
        visitor: V,
    ) -> Result<(), Error>
    where
        V: FnMut(&mut VisitCtx<'_, E>, Visit) -> Result<(), Error>,
    {
        kvm_pgtable_walk(
            &mut self.env,
            &self.cfg,
            &self.geom,
            addr,
            size,
            flags,
            visitor,
        )
    }

    /// The leaf descriptor translating `addr`, and its level.
    pub fn get_leaf(&mut self, addr: u64) -> Result<(Pte, Level), Error> {
        kvm_pgtable_get_leaf(&mut self.env, &self.cfg, &self.geom, addr)
    }

    /// Root table address, if initialised.
    pub fn pgd(&self) -> Option<PhysAddr> {
        self.geom.pgd
    }
}
