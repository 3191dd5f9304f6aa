// SPDX-License-Identifier: GPL-2.0-only
//! Hypervisor stage-1 page tables (EL2 translation regime).
//!
//! Hyp mappings are never shared with other walkers and tables are freed
//! eagerly: a table page's refcount is one plus the number of valid
//! descriptors it holds, so unmapping the last entry releases the table.

use core::ops::{Deref, DerefMut};

use crate::env::{Barrier, Env, TLBI_TTL_UNKNOWN, TlbiOp, warn_on};
use crate::pgtable::{Pgtable, kvm_block_mapping_supported};
use crate::types::{
    Config, Error, KernelLine, Level, Prot, Pte, WalkFlags, align_down, bit, genmask,
    pte_bits as pb,
};
use crate::walk::{Visit, VisitCtx};

/// The VA operand of a stage-1 TLBI by address, with ASID 0. Linux 6.12
/// builds it before calling `__tlbi_level()`; 7.3 passes the address and
/// `__tlbi_level()` builds the same operand itself, so [`crate::Hw::tlbi_hyp`]
/// receives the same value on both lines.
#[doc(alias = "__TLBI_VADDR")]
#[inline]
pub(crate) const fn tlbi_vaddr(va: u64) -> u64 {
    (va >> 12) & genmask(43, 0)
}

/// A hypervisor stage-1 page table owning its environment.
///
/// Created empty by [`HypPgtable::new`]; [`HypPgtable::init`] allocates the
/// root, mirroring how the kernel initialises a caller-provided
/// `struct kvm_pgtable`. Operations on a table without a root fail like the
/// kernel's walker does on a NULL pgd. The environment, configuration and
/// generic walks are those of the shared core, [`Pgtable`].
pub struct HypPgtable<E> {
    pgt: Pgtable<E>,
}

impl<E> Deref for HypPgtable<E> {
    type Target = Pgtable<E>;

    fn deref(&self) -> &Pgtable<E> {
        &self.pgt
    }
}

impl<E> DerefMut for HypPgtable<E> {
    fn deref_mut(&mut self) -> &mut Pgtable<E> {
        &mut self.pgt
    }
}

impl<E: Env> HypPgtable<E> {
    /// An uninitialised table.
    pub fn new(env: E, cfg: Config) -> Self {
        HypPgtable {
            pgt: Pgtable::new(env, cfg),
        }
    }

    /// Give the environment back.
    pub fn into_env(self) -> E {
        self.pgt.env
    }
}

/// State of a hyp map walk.
#[doc(alias = "hyp_map_data")]
struct HypMapData {
    phys: u64,
    attr: u64,
}

/// Translate hyp permissions (in the encoding of `cfg.line`) into stage-1
/// leaf attributes.
///
/// Linux 7.3 tells privileged from unprivileged execution: with hVHE the
/// EL2&0 regime has both PXN and UXN, and PX/UX set them; without it, EL2
/// has a single XN bit, UX is ignored and PX alone decides.
pub fn hyp_set_prot_attr(cfg: &Config, prot: Prot) -> Result<u64, Error> {
    let bits = cfg.line.prot_bits();
    let mut prot = prot;
    let device = prot.intersects(bits.device);
    let mtype = if device {
        pb::MT_DEVICE_NGNRE
    } else {
        pb::MT_NORMAL
    };
    let mut attr = (mtype << 2) & pb::S1_ATTRIDX;
    let ap = if prot.intersects(bits.w) {
        cfg.s1_ap_rw()
    } else {
        cfg.s1_ap_ro()
    };

    if !prot.intersects(bits.r) {
        return Err(Error::Inval);
    }

    if cfg.line == KernelLine::V7_3 && !cfg.features.hvhe {
        prot.remove(bits.ux);
    }

    if prot.intersects(bits.x()) {
        // W^X, and never execute from device memory.
        if prot.intersects(bits.w) || device {
            return Err(Error::Inval);
        }
        if cfg.features.bti_kernel {
            attr |= pb::S1_GP;
        }
    }

    match cfg.line {
        KernelLine::V6_12 => {
            if !prot.intersects(bits.x()) {
                attr |= pb::S1_XN;
            }
        }
        KernelLine::V7_3 if cfg.features.hvhe => {
            if !prot.intersects(bits.px) {
                attr |= pb::S1_PXN;
            }
            if !prot.intersects(bits.ux) {
                attr |= pb::S1_UXN;
            }
        }
        KernelLine::V7_3 => {
            if !prot.intersects(bits.px) {
                attr |= pb::S1_XN;
            }
        }
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

/// Decode the permissions of a hyp stage-1 descriptor, in the encoding of
/// `cfg.line`.
#[doc(alias = "kvm_pgtable_hyp_pte_prot")]
pub fn hyp_pte_prot(cfg: &Config, pte: Pte) -> Prot {
    let bits = cfg.line.prot_bits();
    let mut prot = Prot::from_bits_retain(pte.0 & pb::LEAF_ATTR_HI_SW);
    if !pte.is_valid() {
        return prot;
    }

    match cfg.line {
        KernelLine::V6_12 => {
            if pte.0 & pb::S1_XN == 0 {
                prot |= Prot::X;
            }
        }
        KernelLine::V7_3 if cfg.features.hvhe => {
            if pte.0 & pb::S1_PXN == 0 {
                prot |= bits.px;
            }
            if pte.0 & pb::S1_UXN == 0 {
                prot |= bits.ux;
            }
        }
        KernelLine::V7_3 => {
            if pte.0 & pb::S1_XN == 0 {
                prot |= bits.px;
            }
        }
    }

    let ap = (pte.0 & pb::S1_AP) >> 6;
    if ap == cfg.s1_ap_ro() {
        prot |= bits.r;
    } else if ap == cfg.s1_ap_rw() {
        prot |= bits.rw();
    }
    prot
}

/// Install a leaf if this level can hold one; `false` asks the caller to
/// go one level down instead.
fn hyp_map_walker_try_leaf<E: Env>(ctx: &mut VisitCtx<'_, E>, data: &HypMapData) -> bool {
    let phys = data.phys.wrapping_add(ctx.addr.wrapping_sub(ctx.start));
    if !kvm_block_mapping_supported(ctx, phys) {
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

#[inline]
fn hyp_map_walker<E: Env>(
    ctx: &mut VisitCtx<'_, E>,
    _visit: Visit,
    data: &HypMapData,
) -> Result<(), Error> {
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

impl<E: Env> HypPgtable<E> {
    /// Map `[addr, addr + size)` to `phys` with `prot`, using the largest
    /// leaves alignment allows.
    #[doc(alias = "kvm_pgtable_hyp_map")]
    pub fn map(&mut self, addr: u64, size: u64, phys: u64, prot: Prot) -> Result<(), Error> {
        let mut map_data = HypMapData {
            phys: align_down(phys, self.cfg.granule.page_size()),
            attr: 0,
        };

        map_data.attr = hyp_set_prot_attr(&self.cfg, prot)?;

        let ret = self.walk(addr, size, WalkFlags::LEAF, |ctx, visit| {
            hyp_map_walker(ctx, visit, &map_data)
        });
        self.env.dsb(Barrier::IshSt);
        self.env.isb();
        ret
    }
}

#[inline]
fn hyp_unmap_walker<E: Env>(
    ctx: &mut VisitCtx<'_, E>,
    _visit: Visit,
    unmapped: &mut u64,
) -> Result<(), Error> {
    let granule = ctx.granule_size();
    let mut childp = None;

    // Unmapping stops at the first hole.
    if !ctx.old.is_valid() {
        return Err(Error::Inval);
    }

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

impl<E: Env> HypPgtable<E> {
    /// Unmap `[addr, addr + size)`, returning how many bytes were unmapped.
    /// Stops early at a hole or a partially covered block. Returns 0 when
    /// the environment has no `page_count`.
    #[doc(alias = "kvm_pgtable_hyp_unmap")]
    pub fn unmap(&mut self, addr: u64, size: u64) -> u64 {
        let mut unmapped = 0u64;
        let flags = WalkFlags::LEAF | WalkFlags::TABLE_POST;

        if !self.env.has_page_count() {
            return 0;
        }

        // Errors only end the walk early; the byte count tells the story.
        let _ = self.walk(addr, size, flags, |ctx, visit| {
            hyp_unmap_walker(ctx, visit, &mut unmapped)
        });
        unmapped
    }

    /// Allocate the root table for a `va_bits`-wide address space.
    #[doc(alias = "kvm_pgtable_hyp_init")]
    pub fn init(&mut self, va_bits: u32) -> Result<(), Error> {
        let pgt = &mut self.pgt;
        let levels = pgt.cfg.granule.levels(va_bits);
        let start_level = Level(((Level::LAST.0 as u32 + 1).wrapping_sub(levels)) as i8);
        if !start_level.is_valid() {
            return Err(Error::Inval);
        }

        let Some(pgd) = pgt.env.zalloc_page(None) else {
            return Err(Error::NoMem);
        };
        pgt.geom.pgd = Some(pgd);
        pgt.geom.ia_bits = va_bits;
        pgt.geom.start_level = start_level;
        Ok(())
    }
}

#[inline]
fn hyp_free_walker<E: Env>(ctx: &mut VisitCtx<'_, E>, _visit: Visit) -> Result<(), Error> {
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

impl<E: Env> HypPgtable<E> {
    /// Drop every reference the table holds and free the root.
    #[doc(alias = "kvm_pgtable_hyp_destroy")]
    pub fn destroy(&mut self) {
        let flags = WalkFlags::LEAF | WalkFlags::TABLE_POST;
        let size = bit(self.geom.ia_bits as u64);
        let ret = self.walk(0, size, flags, hyp_free_walker);
        warn_on(&mut self.env, ret.is_err());
        // Without a root there is nothing to release.
        if let Some(pgd) = self.geom.pgd.take() {
            self.env.put_page(pgd);
        }
    }
}
