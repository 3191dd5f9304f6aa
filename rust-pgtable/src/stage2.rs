// SPDX-License-Identifier: GPL-2.0-only
//! Guest (and pKVM host) stage-2 page tables.
//!
//! Refcounting: a table page holds one reference for itself plus one per
//! *counted* descriptor, i.e. any non-zero descriptor. That includes
//! invalid descriptors carrying an owner id (Linux 6.12) or a typed
//! annotation (7.3), so annotations keep their table alive.
//!
//! Descriptors are replaced with break-before-make: the old entry is first
//! swapped for a "locked" invalid marker (so concurrent walkers back off),
//! the TLBs are invalidated, and only then is the new entry published with
//! a release store.
//!
//! The order of this file follows the stage-2 part of the kernel's
//! `pgtable.c`: each operation's visitor comes right before the method
//! that walks with it.

use core::ops::{Deref, DerefMut};

use crate::env::{Barrier, Env, MAX_TLBI_RANGE_PAGES, TLBI_TTL_UNKNOWN, warn_on, warn_on_once};
use crate::mem::Table;
use crate::pgtable::{Pgtable, kvm_block_mapping_supported};
use crate::pkvm::{ForcePteCb, NoForcePte};
use crate::types::{
    Config, Error, InvalidPteType, KernelLine, Level, MAX_OWNER_ID, PHYS_INVALID, PhysAddr, Prot,
    Pte, Stage2Flags, WalkFlags, align_down, bit, is_aligned, pte_bits as pb,
};
use crate::vtcr::{pgd_pages, vtcr_ipa, vtcr_start_level};
use crate::walk::{Visit, VisitCtx, WalkData, walk_table};

/// A stage-2 page table owning its environment and optional force-PTE
/// callback. The environment, configuration and generic walks are those
/// of the shared core, [`Pgtable`].
pub struct Stage2Pgtable<E, F = NoForcePte> {
    pgt: Pgtable<E>,
    flags: Stage2Flags,
    force_pte_cb: Option<F>,
}

impl<E, F> Deref for Stage2Pgtable<E, F> {
    type Target = Pgtable<E>;

    fn deref(&self) -> &Pgtable<E> {
        &self.pgt
    }
}

impl<E, F> DerefMut for Stage2Pgtable<E, F> {
    fn deref_mut(&mut self) -> &mut Pgtable<E> {
        &mut self.pgt
    }
}

impl<E: Env, F: ForcePteCb<E>> Stage2Pgtable<E, F> {
    /// An uninitialised table (no root, empty input range).
    pub fn new(env: E, cfg: Config) -> Self {
        Stage2Pgtable {
            pgt: Pgtable::new(env, cfg),
            flags: Stage2Flags::empty(),
            force_pte_cb: None,
        }
    }

    /// Give the environment back.
    pub fn into_env(self) -> E {
        self.pgt.env
    }

    /// Operations of only one kernel line refuse a table modelling the
    /// other: there is no kernel behaviour to reproduce.
    #[track_caller]
    fn expect_line(&self, line: KernelLine, what: &str) {
        let cur = self.pgt.cfg.line;
        assert!(
            cur == line,
            "{what} is a Linux {line:?} operation, but this table models {cur:?}"
        );
    }

    /// Stage-2 flags given at init.
    pub fn flags(&self) -> Stage2Flags {
        self.flags
    }

    /// The force-PTE callback, if any.
    pub fn force_pte_cb_mut(&mut self) -> Option<&mut F> {
        self.force_pte_cb.as_mut()
    }
}

/// State of a stage-2 map (or annotation) walk.
#[doc(alias = "stage2_map_data")]
struct Stage2MapData<'m, M> {
    /// Output address of the walk start; in Linux 6.12, [`PHYS_INVALID`]
    /// to annotate ownership instead.
    phys: u64,
    attr: u64,
    /// Linux 6.12: the owner an ownership walk records.
    owner_id: u8,
    /// Linux 7.3: the descriptor an annotation walk installs.
    pte_annot: Pte,
    /// Linux 7.3: this walk annotates instead of mapping.
    annotation: bool,
    memcache: Option<&'m mut M>,
    /// Never install blocks.
    force_pte: bool,
    /// The table's flags (they decide what "cacheable" means).
    s2flags: Stage2Flags,
}

/// Stage-2 forced write-back in effect for a table with `flags`. Linux 7.3
/// has no per-table opt-out: the CPU capability alone decides.
fn stage2_has_fwb(cfg: &Config, flags: Stage2Flags) -> bool {
    if !cfg.features.stage2_fwb {
        return false;
    }
    match cfg.line {
        KernelLine::V6_12 => !flags.contains(Stage2Flags::NOFWB),
        KernelLine::V7_3 => true,
    }
}

/// Invalidate stage-2 TLB entries for `[addr, addr + size)`: range TLBIs in
/// chunks of at most [`MAX_TLBI_RANGE_PAGES`] when the CPU has them, a
/// full VMID flush otherwise.
pub fn kvm_tlb_flush_vmid_range<E: Env>(env: &mut E, cfg: &Config, addr: u64, size: u64) {
    if !cfg.features.tlb_range {
        env.tlb_flush_vmid();
        return;
    }

    let shift = cfg.granule.page_shift();
    let mut addr = addr;
    let mut pages = size >> shift;
    while pages > 0 {
        let inval_pages = pages.min(MAX_TLBI_RANGE_PAGES);
        env.tlb_flush_vmid_range(addr, inval_pages);
        addr = addr.wrapping_add(inval_pages << shift);
        pages -= inval_pages;
    }
}

/// Memory type classes for stage-2 MemAttr.
#[derive(Clone, Copy)]
enum S2MemType {
    Normal,
    NormalNc,
    DeviceNgnre,
    /// Linux 7.3: whatever stage 1 says.
    AsS1,
}

/// MemAttr field (already shifted into bits 5:2) for a memory type.
#[doc(alias = "PAGE_S2_MEMATTR")]
fn page_s2_memattr(mt: S2MemType, fwb: bool) -> u64 {
    let v = match (mt, fwb) {
        (S2MemType::Normal, false) => pb::MT_S2_NORMAL,
        (S2MemType::NormalNc, false) => pb::MT_S2_NORMAL_NC,
        (S2MemType::DeviceNgnre, false) => pb::MT_S2_DEVICE_NGNRE,
        (S2MemType::AsS1, false) => pb::MT_S2_AS_S1,
        (S2MemType::Normal, true) => pb::MT_S2_FWB_NORMAL,
        (S2MemType::NormalNc, true) => pb::MT_S2_FWB_NORMAL_NC,
        (S2MemType::DeviceNgnre, true) => pb::MT_S2_FWB_DEVICE_NGNRE,
        (S2MemType::AsS1, true) => pb::MT_S2_FWB_AS_S1,
    };
    v << 2
}

/// The MemAttr a table with `flags` uses for memory type `mt`. A Linux 7.3
/// table with `AS_S1` uses the "as stage 1" value for every type.
#[doc(alias = "KVM_S2_MEMATTR")]
fn kvm_s2_memattr(cfg: &Config, flags: Stage2Flags, mt: S2MemType) -> u64 {
    let as_s1 = cfg.line.stage2_flag_bits().as_s1;
    let mt = if flags.intersects(as_s1) {
        S2MemType::AsS1
    } else {
        mt
    };
    page_s2_memattr(mt, stage2_has_fwb(cfg, flags))
}

/// Linux 7.3: set the two-bit stage-2 XN field of `attr` from PX and UX.
/// Without FEAT_XNX the hardware cannot tell them apart, so granting just
/// one of them is refused.
fn stage2_set_xn_attr(cfg: &Config, prot: Prot, attr: &mut u64) -> Result<(), Error> {
    let bits = cfg.line.prot_bits();
    let px = prot.intersects(bits.px);
    let ux = prot.intersects(bits.ux);

    if !cfg.features.xnx && px != ux {
        return Err(Error::Inval);
    }

    let xn: u64 = match (px, ux) {
        (true, true) => 0b00,
        (false, true) => 0b01,
        (false, false) => 0b10,
        (true, false) => 0b11,
    };

    *attr &= !pb::S2_XN_XNX;
    *attr |= (xn << 53) & pb::S2_XN_XNX;
    Ok(())
}

/// Translate permissions (in the encoding of `cfg.line`) into stage-2 leaf
/// attributes for a table with stage-2 `flags`.
pub fn stage2_set_prot_attr(cfg: &Config, flags: Stage2Flags, prot: Prot) -> Result<u64, Error> {
    let bits = cfg.line.prot_bits();
    let memtype = prot & (bits.device | bits.normal_nc);
    let mut attr = if memtype == bits.device | bits.normal_nc {
        return Err(Error::Inval);
    } else if memtype == bits.device {
        if prot.intersects(bits.x()) {
            return Err(Error::Inval);
        }
        kvm_s2_memattr(cfg, flags, S2MemType::DeviceNgnre)
    } else if memtype == bits.normal_nc {
        if prot.intersects(bits.x()) {
            return Err(Error::Inval);
        }
        kvm_s2_memattr(cfg, flags, S2MemType::NormalNc)
    } else {
        kvm_s2_memattr(cfg, flags, S2MemType::Normal)
    };

    match cfg.line {
        KernelLine::V6_12 => {
            if !prot.intersects(bits.x()) {
                attr |= pb::S2_XN;
            }
        }
        KernelLine::V7_3 => stage2_set_xn_attr(cfg, prot, &mut attr)?,
    }
    if prot.intersects(bits.r) {
        attr |= pb::S2_S2AP_R;
    }
    if prot.intersects(bits.w) {
        attr |= pb::S2_S2AP_W;
    }
    // LPA2 reuses bits 9:8 for the output address.
    if !cfg.features.lpa2 {
        attr |= (pb::SH_IS << 8) & pb::S2_SH;
    }
    attr |= pb::S2_AF;
    attr |= prot.bits() & pb::LEAF_ATTR_HI_SW;
    Ok(attr)
}

/// Decode the permissions (and software bits) of a stage-2 descriptor, in
/// the Linux 6.12 encoding. See [`kvm_pgtable_stage2_pte_prot`] for any
/// line.
#[doc(alias = "kvm_pgtable_stage2_pte_prot")]
pub fn stage2_pte_prot(pte: Pte) -> Prot {
    let mut prot = Prot::from_bits_retain(pte.0 & pb::LEAF_ATTR_HI_SW);
    if !pte.is_valid() {
        return prot;
    }
    if pte.0 & pb::S2_S2AP_R != 0 {
        prot |= Prot::R;
    }
    if pte.0 & pb::S2_S2AP_W != 0 {
        prot |= Prot::W;
    }
    if pte.0 & pb::S2_XN == 0 {
        prot |= Prot::X;
    }
    prot
}

/// Decode the permissions (and software bits) of a stage-2 descriptor, in
/// the encoding of `cfg.line`. Linux 7.3 reads the whole XN\[1:0\] field,
/// whether or not the CPU has FEAT_XNX.
///
/// ```
/// use rust_pgtable::*;
///
/// let cfg = Config::new(Granule::Size4K, Context::Kernel, Features::default())
///     .with_line(KernelLine::V7_3);
/// let v7 = ProtBits::V7_3;
/// // A valid, readable leaf with XN\[1:0\] = 0b01: EL0 may execute, EL1 not.
/// let pte = Pte((0b01 << 53) | (1 << 6) | 1);
/// assert_eq!(kvm_pgtable_stage2_pte_prot(&cfg, pte), v7.r | v7.ux);
/// ```
pub fn kvm_pgtable_stage2_pte_prot(cfg: &Config, pte: Pte) -> Prot {
    if cfg.line == KernelLine::V6_12 {
        return stage2_pte_prot(pte);
    }

    let bits = cfg.line.prot_bits();

    let mut prot = Prot::from_bits_retain(pte.0 & pb::LEAF_ATTR_HI_SW);
    if !pte.is_valid() {
        return prot;
    }
    if pte.0 & pb::S2_S2AP_R != 0 {
        prot |= bits.r;
    }
    if pte.0 & pb::S2_S2AP_W != 0 {
        prot |= bits.w;
    }
    match (pte.0 & pb::S2_XN_XNX) >> 53 {
        0b00 => prot |= bits.px | bits.ux,
        0b01 => prot |= bits.ux,
        0b11 => prot |= bits.px,
        _ => {}
    }
    prot
}

/// A mapping (or permission change) that only touches permission bits
/// does not need to be installed by the map path.
fn stage2_pte_needs_update(cfg: &Config, old: Pte, new: Pte) -> bool {
    if !old.is_valid() || !new.is_valid() {
        return true;
    }
    (old.0 ^ new.0) & !cfg.line.s2_perms() != 0
}

/// Store `new` over `ctx.old`: a plain store when the walker has the table
/// to itself, a compare-and-exchange (which may lose a race) otherwise.
fn stage2_try_set_pte<E: Env>(ctx: &mut VisitCtx<'_, E>, new: Pte) -> bool {
    if !ctx.shared() {
        ctx.write_once(new);
        return true;
    }
    ctx.cmpxchg(new)
}

/// First half of break-before-make: lock the descriptor, invalidate what
/// it used to map, and drop the reference it held on its table page.
/// Returns `false` if another walker got there first.
fn stage2_try_break_pte<E: Env>(ctx: &mut VisitCtx<'_, E>) -> bool {
    if ctx.old.is_locked_in(ctx.cfg.line) {
        // Only a concurrent walker can leave a locked entry behind.
        let shared = ctx.shared();
        warn_on(ctx.env, !shared);
        return false;
    }

    let locked_pte = Pte::locked(ctx.cfg.line);
    if !stage2_try_set_pte(ctx, locked_pte) {
        return false;
    }

    if !ctx.skip_bbm_tlbi() {
        if ctx.old.is_table(ctx.level) {
            // A whole subtree goes away: invalidate its entire span.
            let size = ctx.granule_size();
            let addr = align_down(ctx.addr, size);
            kvm_tlb_flush_vmid_range(ctx.env, ctx.cfg, addr, size);
        } else if ctx.old.is_valid() {
            ctx.env.tlb_flush_vmid_ipa(ctx.addr, ctx.level.into());
        }
    }

    if ctx.old.is_counted() {
        ctx.env.put_page(ctx.ptep);
    }
    true
}

/// Second half of break-before-make: publish `new` over the locked entry.
fn stage2_make_pte<E: Env>(ctx: &mut VisitCtx<'_, E>, new: Pte) {
    let cur = ctx.load();
    warn_on(ctx.env, !cur.is_locked_in(ctx.cfg.line));

    if new.is_counted() {
        ctx.env.get_page(ctx.ptep);
    }
    ctx.store_release(new);
}

/// Whether unmap may batch its TLB invalidation into one range flush at
/// the end. Only worth it when no per-entry cache maintenance is needed
/// (FWB) and range TLBIs exist.
fn stage2_unmap_defer_tlb_flush(cfg: &Config, flags: Stage2Flags) -> bool {
    cfg.features.tlb_range && stage2_has_fwb(cfg, flags)
}

/// Clear an entry the unmap walker removes. TLB invalidation of leaves may
/// be batched until the walk is over; a table's is not.
fn stage2_unmap_put_pte<E: Env>(ctx: &mut VisitCtx<'_, E>, flags: Stage2Flags) {
    if ctx.old.is_valid() {
        ctx.clear();

        if ctx.old.is_table(ctx.level) {
            ctx.env.tlb_flush_vmid_ipa(ctx.addr, TLBI_TTL_UNKNOWN);
        } else if !stage2_unmap_defer_tlb_flush(ctx.cfg, flags) {
            ctx.env.tlb_flush_vmid_ipa(ctx.addr, ctx.level.into());
        }
    }

    ctx.env.put_page(ctx.ptep);
}

/// A valid leaf mapping normal cacheable memory.
fn stage2_pte_cacheable(cfg: &Config, flags: Stage2Flags, pte: Pte) -> bool {
    let memattr = pte.0 & pb::S2_MEMATTR;
    pte.is_valid() && memattr == kvm_s2_memattr(cfg, flags, S2MemType::Normal)
}

/// A valid leaf the guest may execute from (at any exception level).
fn stage2_pte_executable(cfg: &Config, pte: Pte) -> bool {
    match cfg.line {
        KernelLine::V6_12 => pte.is_valid() && pte.0 & pb::S2_XN == 0,
        KernelLine::V7_3 => {
            let prot = kvm_pgtable_stage2_pte_prot(cfg, pte);
            prot.intersects(cfg.line.prot_bits().x())
        }
    }
}

/// Output address for the current walk position. In Linux 6.12 an invalid
/// address (an ownership walk) stays invalid: adding an offset could wrap
/// it back into range.
fn stage2_map_walker_phys_addr<E, M>(ctx: &VisitCtx<'_, E>, data: &Stage2MapData<'_, M>) -> u64 {
    let phys = data.phys;
    if ctx.cfg.line == KernelLine::V6_12 && !ctx.cfg.phys_is_valid(phys) {
        return phys;
    }
    phys.wrapping_add(ctx.addr.wrapping_sub(ctx.start))
}

fn stage2_leaf_mapping_allowed<E, M>(ctx: &VisitCtx<'_, E>, data: &Stage2MapData<'_, M>) -> bool {
    let phys = stage2_map_walker_phys_addr(ctx, data);

    if data.force_pte && ctx.level < Level::LAST {
        return false;
    }

    if data.annotation {
        return true;
    }

    kvm_block_mapping_supported(ctx, phys)
}

/// Install a leaf (or ownership annotation) at this level, or report
/// `TooBig` if the mapping must go deeper.
fn stage2_map_walker_try_leaf<E: Env>(
    ctx: &mut VisitCtx<'_, E>,
    data: &mut Stage2MapData<'_, E::Memcache>,
) -> Result<(), Error> {
    let phys = stage2_map_walker_phys_addr(ctx, data);
    let granule = ctx.granule_size();

    if !stage2_leaf_mapping_allowed(ctx, data) {
        return Err(Error::TooBig);
    }

    // Linux 6.12 recognises an ownership walk by its invalid address, 7.3
    // by its flag.
    let annotate = match ctx.cfg.line {
        KernelLine::V6_12 => !ctx.cfg.phys_is_valid(phys),
        KernelLine::V7_3 => data.annotation,
    };
    let new = if !annotate {
        Pte::new_valid_leaf(phys, data.attr, ctx.level, ctx.cfg)
    } else if ctx.cfg.line == KernelLine::V6_12 {
        Pte::new_invalid_owner(data.owner_id)
    } else {
        data.pte_annot
    };

    // Re-creating the same mapping, or one differing only in permissions,
    // is left to the permission-relaxation path.
    if !stage2_pte_needs_update(ctx.cfg, ctx.old, new) {
        return Err(Error::Again);
    }

    // Software-bit-only changes need no break-before-make (exclusive
    // walkers only), just refcount fix-ups if countedness changes.
    if !ctx.shared() && (ctx.old.0 ^ new.0) & !pb::LEAF_ATTR_HI_SW == 0 {
        let old_is_counted = ctx.old.is_counted();

        if old_is_counted != new.is_counted() {
            if old_is_counted {
                ctx.env.put_page(ctx.ptep);
            } else {
                ctx.env.get_page(ctx.ptep);
            }
        }
        let stored = stage2_try_set_pte(ctx, new);
        warn_on_once(ctx.env, !stored);
        return Ok(());
    }

    if !stage2_try_break_pte(ctx) {
        return Err(Error::Again);
    }

    // Make the memory coherent before the guest can reach it.
    if !ctx.skip_cmo()
        && ctx.env.has_dcache_clean_inval_poc()
        && stage2_pte_cacheable(ctx.cfg, data.s2flags, new)
    {
        let pa = ctx.follow(new);
        ctx.env.dcache_clean_inval_poc(pa, granule);
    }

    if !ctx.skip_cmo() && ctx.env.has_icache_inval_pou() && stage2_pte_executable(ctx.cfg, new) {
        let pa = ctx.follow(new);
        ctx.env.icache_inval_pou(pa, granule);
    }

    stage2_make_pte(ctx, new);
    Ok(())
}

/// Pre-order visit of a table: if the whole table's range can become one
/// block, replace the table and free the detached subtree.
fn stage2_map_walk_table_pre<E: Env>(
    ctx: &mut VisitCtx<'_, E>,
    data: &mut Stage2MapData<'_, E::Memcache>,
) -> Result<(), Error> {
    let childp = ctx.follow(ctx.old);

    if !stage2_leaf_mapping_allowed(ctx, data) {
        return Ok(());
    }

    stage2_map_walker_try_leaf(ctx, data)?;

    ctx.env.free_unlinked_table(childp, ctx.level);
    Ok(())
}

/// Leaf visit: install a leaf here, or replace this entry (possibly a
/// block, whose remaining range is then faulted back lazily) with a fresh
/// table to descend into.
fn stage2_map_walk_leaf<E: Env>(
    ctx: &mut VisitCtx<'_, E>,
    data: &mut Stage2MapData<'_, E::Memcache>,
) -> Result<(), Error> {
    let ret = stage2_map_walker_try_leaf(ctx, data);
    if ret != Err(Error::TooBig) {
        return ret;
    }

    if warn_on(ctx.env, ctx.level == Level::LAST) {
        return Err(Error::Inval);
    }

    let Some(mc) = data.memcache.as_deref_mut() else {
        return Err(Error::NoMem);
    };

    let Some(childp) = ctx.env.zalloc_page(Some(mc)) else {
        return Err(Error::NoMem);
    };

    if !stage2_try_break_pte(ctx) {
        ctx.env.put_page(childp);
        return Err(Error::Again);
    }

    let new = Pte::new_table(childp, ctx.cfg);
    stage2_make_pte(ctx, new);
    Ok(())
}

/// Tables are visited on the way down, in case the whole table's range can
/// become one block; everything else happens at the leaves.
#[inline]
fn stage2_map_walker<E: Env>(
    ctx: &mut VisitCtx<'_, E>,
    visit: Visit,
    data: &mut Stage2MapData<'_, E::Memcache>,
) -> Result<(), Error> {
    match visit {
        Visit::TablePre => stage2_map_walk_table_pre(ctx, data),
        Visit::Leaf => stage2_map_walk_leaf(ctx, data),
        Visit::TablePost => Err(Error::Inval),
    }
}

impl<E: Env, F: ForcePteCb<E>> Stage2Pgtable<E, F> {
    /// Map `[addr, addr + size)` to `phys` with `prot`. Table pages come
    /// from `mc` (none given: `NoMem` whenever a table is needed). Extra
    /// walk flags (e.g. `SHARED`, `HANDLE_FAULT` or `IGNORE_EAGAIN`,
    /// `SKIP_CMO`) are honoured. Both kernel lines.
    #[doc(alias = "kvm_pgtable_stage2_map")]
    pub fn map(
        &mut self,
        addr: u64,
        size: u64,
        phys: u64,
        prot: Prot,
        mc: Option<&mut E::Memcache>,
        flags: WalkFlags,
    ) -> Result<(), Error> {
        let pgt = &mut self.pgt;
        let end = addr.wrapping_add(size);
        let force_pte = match self.force_pte_cb.as_mut() {
            Some(cb) => cb.force_pte(&mut pgt.env, addr, end, prot),
            None => false,
        };
        let mut map_data = Stage2MapData {
            phys: align_down(phys, pgt.cfg.granule.page_size()),
            attr: 0,
            owner_id: 0,
            pte_annot: Pte::EMPTY,
            annotation: false,
            memcache: mc,
            force_pte,
            s2flags: self.flags,
        };
        let walk_flags = flags | WalkFlags::TABLE_PRE | WalkFlags::LEAF;

        let idmap = self.flags.intersects(pgt.cfg.line.stage2_flag_bits().idmap);
        if warn_on(&mut pgt.env, idmap && addr != phys) {
            return Err(Error::Inval);
        }

        map_data.attr = stage2_set_prot_attr(&pgt.cfg, self.flags, prot)?;

        let ret = pgt.walk(addr, size, walk_flags, |ctx, visit| {
            stage2_map_walker(ctx, visit, &mut map_data)
        });
        pgt.env.dsb(Barrier::IshSt);
        ret
    }

    /// Mark `[addr, addr + size)` as owned by `owner_id` with invalid,
    /// page-granular annotations (id 0 clears them). Linux 6.12; 7.3
    /// replaced it with [`Stage2Pgtable::annotate`].
    ///
    /// # Panics
    ///
    /// If the table models Linux 7.3.
    #[doc(alias = "kvm_pgtable_stage2_set_owner")]
    pub fn set_owner(
        &mut self,
        addr: u64,
        size: u64,
        mc: Option<&mut E::Memcache>,
        owner_id: u8,
    ) -> Result<(), Error> {
        self.expect_line(KernelLine::V6_12, "set_owner");
        let mut map_data = Stage2MapData {
            phys: PHYS_INVALID,
            attr: 0,
            owner_id,
            pte_annot: Pte::EMPTY,
            annotation: false,
            memcache: mc,
            force_pte: true,
            s2flags: self.flags,
        };
        let walk_flags = WalkFlags::TABLE_PRE | WalkFlags::LEAF;

        if owner_id > MAX_OWNER_ID {
            return Err(Error::Inval);
        }

        self.walk(addr, size, walk_flags, |ctx, visit| {
            stage2_map_walker(ctx, visit, &mut map_data)
        })
    }

    /// Unmap `[addr, addr + size)` and leave, page by page, an invalid
    /// descriptor of type `ty` carrying `annotation` (Linux 7.3; it
    /// replaced 6.12's [`Stage2Pgtable::set_owner`]). The annotation may use
    /// bits \[59:1\]; bit 0 or any of \[63:60\] set is `EINVAL`, and so are the
    /// types 0 and [`InvalidPteType::LOCKED`]. Only the low four bits of the
    /// type are stored. Annotations hold a reference on their table page
    /// like mappings do; [`Stage2Pgtable::unmap`] removes them.
    ///
    /// # Panics
    ///
    /// If the table models Linux 6.12.
    ///
    /// # Example
    ///
    /// ```
    /// # use core::panic::Location;
    /// # use rust_pgtable::*;
    /// # struct Env { mem: Vec<u64>, next: usize, refs: Vec<i32> }
    /// # const BASE: u64 = 0x4000_0000;
    /// # const PAGE: u64 = 4096;
    /// # unsafe impl MmOps for Env {
    /// #     type Memcache = usize;
    /// #     fn zalloc_page(&mut self, mc: Option<&mut usize>) -> Option<PhysAddr> {
    /// #         *mc? -= 1;
    /// #         self.next += 1;
    /// #         self.refs[self.next - 1] = 1;
    /// #         Some(BASE + (self.next - 1) as u64 * PAGE)
    /// #     }
    /// #     fn memcache_nobjs(&self, mc: &usize) -> usize { *mc }
    /// #     fn zalloc_pages_exact(&mut self, size: u64) -> Option<PhysAddr> {
    /// #         let pa = BASE + self.next as u64 * PAGE;
    /// #         for _ in 0..size / PAGE { self.refs[self.next] = 1; self.next += 1; }
    /// #         Some(pa)
    /// #     }
    /// #     fn free_pages_exact(&mut self, _pa: PhysAddr, _size: u64) {}
    /// #     fn free_unlinked_table(&mut self, _pa: PhysAddr, _level: Level) {}
    /// #     fn get_page(&mut self, pa: PhysAddr) { self.refs[((pa - BASE) / PAGE) as usize] += 1 }
    /// #     fn put_page(&mut self, pa: PhysAddr) { self.refs[((pa - BASE) / PAGE) as usize] -= 1 }
    /// #     fn page_count(&mut self, pa: PhysAddr) -> i32 { self.refs[((pa - BASE) / PAGE) as usize] }
    /// #     fn phys_to_virt(&mut self, pa: PhysAddr) -> *mut u64 {
    /// #         let idx = ((pa - BASE) / 8) as usize;
    /// #         self.mem.as_mut_ptr().wrapping_add(idx)
    /// #     }
    /// #     fn dcache_clean_inval_poc(&mut self, _pa: PhysAddr, _size: u64) {}
    /// #     fn icache_inval_pou(&mut self, _pa: PhysAddr, _size: u64) {}
    /// # }
    /// # impl Hw for Env {
    /// #     fn pte_store(&mut self, _pa: PhysAddr, _prev: u64, _new: u64, _kind: StoreKind) {}
    /// #     fn tlbi_hyp(&mut self, _op: TlbiOp, _operand: u64, _level: i32) {}
    /// #     fn tlbi_sync_s1ish_hyp(&mut self) {}
    /// #     fn tlb_flush_vmid(&mut self) {}
    /// #     fn tlb_flush_vmid_ipa(&mut self, _ipa: u64, _level: i32) {}
    /// #     fn tlb_flush_vmid_ipa_nsh(&mut self, _ipa: u64, _level: i32) {}
    /// #     fn tlb_flush_vmid_range(&mut self, _start: u64, _pages: u64) {}
    /// #     fn dsb(&mut self, _kind: Barrier) {}
    /// #     fn isb(&mut self) {}
    /// #     fn warn(&mut self, _once: bool, loc: &'static Location<'static>) { panic!("WARN at {loc}") }
    /// #     fn rcu_read_lock(&mut self) {}
    /// #     fn rcu_read_unlock(&mut self) {}
    /// #     fn rcu_read_lock_held(&mut self) -> bool { false }
    /// # }
    /// let cfg = Config::new(Granule::Size4K, Context::NvheHyp, Features::default())
    ///     .with_line(KernelLine::V7_3);
    /// let env = Env { mem: vec![0; 8 * 512], next: 0, refs: vec![0; 8] };
    /// let mut pgt = Stage2Pgtable::<_, NoForcePte>::new(env, cfg);
    /// pgt.init(get_vtcr(&cfg, 5, 0, 40), Stage2Flags::empty(), NO_FORCE_PTE).unwrap();
    ///
    /// // Annotate the page at IPA 0x1000 as donated by the host, with
    /// // payload 0x42 << 1 (bit 0 must stay clear).
    /// let mut mc = 3;
    /// let ty = InvalidPteType::HOST_DONATION;
    /// pgt.annotate(0x1000, 0x1000, Some(&mut mc), ty, 0x42 << 1).unwrap();
    /// let (pte, level) = pgt.get_leaf(0x1000).unwrap();
    /// assert_eq!((pte, level), (Pte((2 << 60) | (0x42 << 1)), Level(3)));
    /// assert_eq!(pte.invalid_pte_type(), ty);
    ///
    /// // Bit 0 would make the descriptor valid; LOCKED is reserved.
    /// assert_eq!(pgt.annotate(0x1000, 0x1000, Some(&mut mc), ty, 1), Err(Error::Inval));
    /// let locked = InvalidPteType::LOCKED;
    /// assert_eq!(pgt.annotate(0x1000, 0x1000, Some(&mut mc), locked, 0), Err(Error::Inval));
    /// ```
    #[doc(alias = "kvm_pgtable_stage2_annotate")]
    pub fn annotate(
        &mut self,
        addr: u64,
        size: u64,
        mc: Option<&mut E::Memcache>,
        ty: InvalidPteType,
        annotation: u64,
    ) -> Result<(), Error> {
        self.expect_line(KernelLine::V7_3, "annotate");
        let mut map_data = Stage2MapData {
            phys: 0,
            attr: 0,
            owner_id: 0,
            pte_annot: Pte(annotation | ty.to_pte_bits()),
            annotation: true,
            memcache: mc,
            force_pte: true,
            s2flags: self.flags,
        };
        let walk_flags = WalkFlags::TABLE_PRE | WalkFlags::LEAF;

        if annotation & !pb::INVALID_PTE_ANNOT_MASK != 0 {
            return Err(Error::Inval);
        }

        if ty.0 == 0 || ty == InvalidPteType::LOCKED {
            return Err(Error::Inval);
        }

        self.walk(addr, size, walk_flags, |ctx, visit| {
            stage2_map_walker(ctx, visit, &mut map_data)
        })
    }
}

/// Remove a leaf, an annotation or an emptied table; blocks overlapping the
/// range go whole and are faulted back lazily, like map does.
#[inline]
fn stage2_unmap_walker<E: Env>(
    ctx: &mut VisitCtx<'_, E>,
    _visit: Visit,
    flags: Stage2Flags,
) -> Result<(), Error> {
    let mut childp = None;
    let mut need_flush = false;

    if !ctx.old.is_valid() {
        // Drop ownership annotations too.
        if ctx.old.is_counted() {
            ctx.clear();
            ctx.env.put_page(ctx.ptep);
        }
        return Ok(());
    }

    if ctx.old.is_table(ctx.level) {
        let child = ctx.follow(ctx.old);
        if ctx.env.page_count(child) != 1 {
            return Ok(());
        }
        childp = Some(child);
    } else if stage2_pte_cacheable(ctx.cfg, flags, ctx.old) {
        need_flush = !stage2_has_fwb(ctx.cfg, flags);
    }

    stage2_unmap_put_pte(ctx, flags);

    if need_flush && ctx.env.has_dcache_clean_inval_poc() {
        let pa = ctx.follow(ctx.old);
        let size = ctx.granule_size();
        ctx.env.dcache_clean_inval_poc(pa, size);
    }

    if let Some(child) = childp {
        ctx.env.put_page(child);
    }
    Ok(())
}

impl<E: Env, F: ForcePteCb<E>> Stage2Pgtable<E, F> {
    /// Remove mappings and annotations in `[addr, addr + size)`. Blocks
    /// overlapping the range are removed whole; tables are freed once
    /// empty.
    #[doc(alias = "kvm_pgtable_stage2_unmap")]
    pub fn unmap(&mut self, addr: u64, size: u64) -> Result<(), Error> {
        let s2flags = self.flags;
        let walk_flags = WalkFlags::LEAF | WalkFlags::TABLE_POST;

        let ret = self.walk(addr, size, walk_flags, |ctx, visit| {
            stage2_unmap_walker(ctx, visit, s2flags)
        });
        if stage2_unmap_defer_tlb_flush(&self.cfg, s2flags) {
            let pgt = &mut self.pgt;
            kvm_tlb_flush_vmid_range(&mut pgt.env, &pgt.cfg, addr, size);
        }
        ret
    }
}

/// State of an attribute-update walk.
#[doc(alias = "stage2_attr_data")]
struct Stage2AttrData {
    attr_set: u64,
    attr_clr: u64,
    pte: Pte,
    level: Level,
}

#[inline]
fn stage2_attr_walker<E: Env>(
    ctx: &mut VisitCtx<'_, E>,
    _visit: Visit,
    data: &mut Stage2AttrData,
) -> Result<(), Error> {
    if !ctx.old.is_valid() {
        return Err(Error::Again);
    }

    data.level = ctx.level;
    data.pte = ctx.old;
    let pte = Pte((ctx.old.0 & !data.attr_clr) | data.attr_set);

    // Hardware AF management may update the entry behind our back; if our
    // store wins, the access flag simply gets set again later.
    if data.pte != pte {
        // Becoming executable: the I-cache must not hold stale lines.
        if ctx.env.has_icache_inval_pou()
            && stage2_pte_executable(ctx.cfg, pte)
            && !stage2_pte_executable(ctx.cfg, ctx.old)
        {
            let pa = ctx.follow(pte);
            let size = ctx.granule_size();
            ctx.env.icache_inval_pou(pa, size);
        }

        if !stage2_try_set_pte(ctx, pte) {
            return Err(Error::Again);
        }
    }
    Ok(())
}

impl<E: Env, F: ForcePteCb<E>> Stage2Pgtable<E, F> {
    /// Apply `set`/`clr` (limited to the leaf attribute fields) to every
    /// valid leaf in the range; returns the last visited leaf's original
    /// value and level.
    fn stage2_update_leaf_attrs(
        &mut self,
        addr: u64,
        size: u64,
        attr_set: u64,
        attr_clr: u64,
        flags: WalkFlags,
    ) -> Result<(Pte, Level), Error> {
        let attr_mask = pb::LEAF_ATTR_LO | pb::LEAF_ATTR_HI;
        let mut data = Stage2AttrData {
            attr_set: attr_set & attr_mask,
            attr_clr: attr_clr & attr_mask,
            pte: Pte::EMPTY,
            level: Level(0),
        };

        self.walk(addr, size, flags | WalkFlags::LEAF, |ctx, visit| {
            stage2_attr_walker(ctx, visit, &mut data)
        })?;
        Ok((data.pte, data.level))
    }

    /// Remove write permission from every valid leaf in the range (no TLB
    /// maintenance: the caller does it). Holes do not stop it (in Linux 7.3
    /// because it walks with `IGNORE_EAGAIN`). Both kernel lines.
    #[doc(alias = "kvm_pgtable_stage2_wrprotect")]
    pub fn wrprotect(&mut self, addr: u64, size: u64) -> Result<(), Error> {
        let flags = match self.cfg.line {
            KernelLine::V6_12 => WalkFlags::empty(),
            KernelLine::V7_3 => WalkFlags::IGNORE_EAGAIN,
        };
        self.stage2_update_leaf_attrs(addr, size, 0, pb::S2_S2AP_W, flags)
            .map(|_| ())
    }

    /// Set the access flag of the leaf mapping `addr` (fault path, shared
    /// walk). Returns the descriptor as it was, or 0 on failure. Linux
    /// 6.12; see [`Stage2Pgtable::mkyoung_with_flags`] for 7.3.
    ///
    /// # Panics
    ///
    /// If the table models Linux 7.3.
    #[doc(alias = "kvm_pgtable_stage2_mkyoung")]
    pub fn mkyoung(&mut self, addr: u64) -> Pte {
        self.expect_line(KernelLine::V6_12, "mkyoung(addr)");
        let flags = WalkFlags::HANDLE_FAULT | WalkFlags::SHARED;
        let ret = self.stage2_update_leaf_attrs(addr, 1, pb::S2_AF, 0, flags);
        match ret {
            Ok((pte, _)) => {
                self.env.dsb(Barrier::IshSt);
                pte
            }
            Err(_) => Pte::EMPTY,
        }
    }

    /// Set the access flag of the leaf mapping `addr`, walking with the
    /// caller's `flags` (e.g. `SHARED` on the fault path), and return
    /// nothing: Linux 7.3's `kvm_pgtable_stage2_mkyoung(pgt, addr, flags)`.
    /// A `dsb(ishst)` follows only a successful walk.
    ///
    /// # Panics
    ///
    /// If the table models Linux 6.12 (use [`Stage2Pgtable::mkyoung`]).
    #[doc(alias = "kvm_pgtable_stage2_mkyoung")]
    pub fn mkyoung_with_flags(&mut self, addr: u64, flags: WalkFlags) {
        self.expect_line(KernelLine::V7_3, "mkyoung_with_flags");
        let ret = self.stage2_update_leaf_attrs(addr, 1, pb::S2_AF, 0, flags);
        if ret.is_ok() {
            self.env.dsb(Barrier::IshSt);
        }
    }
}

/// State of an access-flag walk.
#[doc(alias = "stage2_age_data")]
struct Stage2AgeData {
    mkold: bool,
    young: bool,
}

#[inline]
fn stage2_age_walker<E: Env>(
    ctx: &mut VisitCtx<'_, E>,
    _visit: Visit,
    data: &mut Stage2AgeData,
) -> Result<(), Error> {
    let new = Pte(ctx.old.0 & !pb::S2_AF);
    if !ctx.old.is_valid() || new == ctx.old {
        return Ok(());
    }

    data.young = true;

    // Callers hold the MMU lock for write, so this cannot fail today; the
    // race check is kept for symmetry with the other walkers. TLB
    // maintenance is the caller's business.
    if data.mkold && !stage2_try_set_pte(ctx, new) {
        return Err(Error::Again);
    }
    Ok(())
}

impl<E: Env, F: ForcePteCb<E>> Stage2Pgtable<E, F> {
    /// Whether any valid leaf in the range has its access flag set,
    /// clearing the flags when `mkold`.
    #[doc(alias = "kvm_pgtable_stage2_test_clear_young")]
    pub fn test_clear_young(&mut self, addr: u64, size: u64, mkold: bool) -> bool {
        let mut data = Stage2AgeData {
            mkold,
            young: false,
        };

        let ret = self.walk(addr, size, WalkFlags::LEAF, |ctx, visit| {
            stage2_age_walker(ctx, visit, &mut data)
        });
        warn_on(&mut self.env, ret.is_err());
        data.young
    }

    /// Add the permissions in `prot` to the leaf mapping `addr` (fault
    /// path: a shared walk that stops at `EAGAIN`), then invalidate the
    /// local TLB for it. Linux 6.12; see
    /// [`Stage2Pgtable::relax_perms_with_flags`] for 7.3.
    ///
    /// # Panics
    ///
    /// If the table models Linux 7.3.
    #[doc(alias = "kvm_pgtable_stage2_relax_perms")]
    pub fn relax_perms(&mut self, addr: u64, prot: Prot) -> Result<(), Error> {
        self.expect_line(KernelLine::V6_12, "relax_perms(addr, prot)");
        let flags = WalkFlags::HANDLE_FAULT | WalkFlags::SHARED;
        self.stage2_relax_perms(addr, prot, flags)
    }

    /// Add the permissions in `prot` (Linux 7.3 encoding) to the leaf
    /// mapping `addr`, walking with the caller's `flags`, then invalidate
    /// the local TLB for it: Linux 7.3's
    /// `kvm_pgtable_stage2_relax_perms(pgt, addr, prot, flags)`. With any
    /// execute bit in `prot`, the XN field becomes exactly what PX and UX
    /// ask for (`EINVAL` if they differ on a CPU without FEAT_XNX).
    ///
    /// # Panics
    ///
    /// If the table models Linux 6.12 (use [`Stage2Pgtable::relax_perms`]).
    #[doc(alias = "kvm_pgtable_stage2_relax_perms")]
    pub fn relax_perms_with_flags(
        &mut self,
        addr: u64,
        prot: Prot,
        flags: WalkFlags,
    ) -> Result<(), Error> {
        self.expect_line(KernelLine::V7_3, "relax_perms_with_flags");
        self.stage2_relax_perms(addr, prot, flags)
    }

    /// The body of `kvm_pgtable_stage2_relax_perms()` in both lines.
    fn stage2_relax_perms(&mut self, addr: u64, prot: Prot, flags: WalkFlags) -> Result<(), Error> {
        let bits = self.cfg.line.prot_bits();
        let mut set = 0;
        let mut clr = 0;

        if prot.bits() & pb::LEAF_ATTR_HI_SW != 0 {
            return Err(Error::Inval);
        }
        if prot.intersects(bits.r) {
            set |= pb::S2_S2AP_R;
        }
        if prot.intersects(bits.w) {
            set |= pb::S2_S2AP_W;
        }
        if prot.intersects(bits.x()) {
            match self.cfg.line {
                KernelLine::V6_12 => clr |= pb::S2_XN,
                KernelLine::V7_3 => {
                    let mut xn = 0;
                    stage2_set_xn_attr(&self.cfg, prot, &mut xn)?;
                    set |= xn & pb::S2_XN_XNX;
                    clr |= !xn & pb::S2_XN_XNX;
                }
            }
        }

        let ret = self.stage2_update_leaf_attrs(addr, 1, set, clr, flags);
        match ret {
            Ok((_, level)) => self.env.tlb_flush_vmid_ipa_nsh(addr, level.into()),
            // Someone else changed the entry; its level is unknown.
            Err(Error::Again) => self.env.tlb_flush_vmid_ipa_nsh(addr, TLBI_TTL_UNKNOWN),
            Err(_) => {}
        }
        ret.map(|_| ())
    }
}

#[inline]
fn stage2_flush_walker<E: Env>(
    ctx: &mut VisitCtx<'_, E>,
    _visit: Visit,
    flags: Stage2Flags,
) -> Result<(), Error> {
    if !stage2_pte_cacheable(ctx.cfg, flags, ctx.old) {
        return Ok(());
    }

    if ctx.env.has_dcache_clean_inval_poc() {
        let pa = ctx.follow(ctx.old);
        let size = ctx.granule_size();
        ctx.env.dcache_clean_inval_poc(pa, size);
    }
    Ok(())
}

impl<E: Env, F: ForcePteCb<E>> Stage2Pgtable<E, F> {
    /// Clean cacheable mappings in the range to the PoC (nothing to do
    /// with FWB).
    #[doc(alias = "kvm_pgtable_stage2_flush")]
    pub fn flush(&mut self, addr: u64, size: u64) -> Result<(), Error> {
        let s2flags = self.flags;

        if stage2_has_fwb(&self.cfg, s2flags) {
            return Ok(());
        }

        self.walk(addr, size, WalkFlags::LEAF, |ctx, visit| {
            stage2_flush_walker(ctx, visit, s2flags)
        })
    }
}

/// Build, off to the side, a table mapping the whole level-`level` region
/// at `phys` (a replacement for a block). No TLB or cache maintenance is
/// done since nothing can be using it yet.
///
/// A free function rather than a method because the split walker calls it
/// while the table it belongs to is being walked.
#[doc(alias = "kvm_pgtable_stage2_create_unlinked")]
#[allow(clippy::too_many_arguments)]
fn stage2_create_unlinked<E: Env>(
    env: &mut E,
    cfg: &Config,
    s2flags: Stage2Flags,
    phys: u64,
    level: Level,
    prot: Prot,
    mut mc: Option<&mut E::Memcache>,
    force_pte: bool,
) -> Result<PhysAddr, Error> {
    let mut map_data = Stage2MapData {
        phys,
        attr: 0,
        owner_id: 0,
        pte_annot: Pte::EMPTY,
        annotation: false,
        memcache: None,
        force_pte,
        s2flags,
    };
    // The input addresses are arbitrary for an unlinked table; all that
    // matters is covering one level-`level` region.
    let mut data = WalkData {
        start: 0,
        addr: 0,
        end: cfg.granule.granule_size(level),
        flags: WalkFlags::LEAF | WalkFlags::SKIP_BBM_TLBI | WalkFlags::SKIP_CMO,
    };

    if !is_aligned(phys, cfg.granule.granule_size(level)) {
        return Err(Error::Inval);
    }

    map_data.attr = stage2_set_prot_attr(cfg, s2flags, prot)?;

    let Some(pgtable) = env.zalloc_page(mc.as_deref_mut()) else {
        return Err(Error::NoMem);
    };
    map_data.memcache = mc;

    let mut visitor =
        |ctx: &mut VisitCtx<'_, E>, visit: Visit| stage2_map_walker(ctx, visit, &mut map_data);
    let table = Table::follow(env, cfg.granule, pgtable);
    let ret = walk_table(env, cfg, &mut data, &mut visitor, table, level.next());
    if let Err(e) = ret {
        stage2_free_unlinked(env, cfg, pgtable, level);
        return Err(e);
    }
    Ok(pgtable)
}

impl<E: Env, F: ForcePteCb<E>> Stage2Pgtable<E, F> {
    /// Build an unlinked table mapping the level-`level` block at `phys`
    /// with `prot` (pages only if `force_pte`).
    #[doc(alias = "kvm_pgtable_stage2_create_unlinked")]
    pub fn create_unlinked(
        &mut self,
        phys: u64,
        level: Level,
        prot: Prot,
        mc: Option<&mut E::Memcache>,
        force_pte: bool,
    ) -> Result<PhysAddr, Error> {
        let pgt = &mut self.pgt;
        stage2_create_unlinked(
            &mut pgt.env,
            &pgt.cfg,
            self.flags,
            phys,
            level,
            prot,
            mc,
            force_pte,
        )
    }
}

/// Number of table pages needed to rebuild a level-`level` block down to
/// pages.
fn stage2_block_get_nr_page_tables<E: Env>(
    env: &mut E,
    cfg: &Config,
    level: Level,
) -> Result<i64, Error> {
    match level.0 {
        1 => Ok(cfg.granule.ptrs_per_pte() as i64 + 1),
        2 => Ok(1),
        3 => Ok(0),
        _ => {
            let bad = level < cfg.granule.min_block_level() || level > Level::LAST;
            warn_on_once(env, bad);
            Err(Error::Inval)
        }
    }
}

#[inline]
fn stage2_split_walker<E: Env>(
    ctx: &mut VisitCtx<'_, E>,
    _visit: Visit,
    mc: &mut E::Memcache,
    s2flags: Stage2Flags,
) -> Result<(), Error> {
    let pte = ctx.old;
    let level = ctx.level;

    // Pages cannot be split, and only valid blocks need splitting.
    if level == Level::LAST {
        return Ok(());
    }
    if !pte.is_valid() {
        return Ok(());
    }

    let mut nr_pages = stage2_block_get_nr_page_tables(ctx.env, ctx.cfg, level)?;

    // With enough pages, go straight down to page mappings; otherwise
    // split one level only (which may still recurse for a level-1 block).
    let force_pte = if ctx.env.memcache_nobjs(mc) as i64 >= nr_pages {
        true
    } else {
        nr_pages = 1;
        false
    };

    if (ctx.env.memcache_nobjs(mc) as i64) < nr_pages {
        return Err(Error::NoMem);
    }

    let phys = pte.to_phys(ctx.cfg);
    let prot = kvm_pgtable_stage2_pte_prot(ctx.cfg, pte);

    let childp = stage2_create_unlinked(
        ctx.env,
        ctx.cfg,
        s2flags,
        phys,
        level,
        prot,
        Some(mc),
        force_pte,
    )?;

    if !stage2_try_break_pte(ctx) {
        stage2_free_unlinked(ctx.env, ctx.cfg, childp, level);
        return Err(Error::Again);
    }

    // The release store in make_pte orders the new table's contents
    // before the descriptor pointing at it.
    let new = Pte::new_table(childp, ctx.cfg);
    stage2_make_pte(ctx, new);
    Ok(())
}

impl<E: Env, F: ForcePteCb<E>> Stage2Pgtable<E, F> {
    /// Split the valid blocks in the range into tables, using pages from
    /// `mc`.
    #[doc(alias = "kvm_pgtable_stage2_split")]
    pub fn split(&mut self, addr: u64, size: u64, mc: &mut E::Memcache) -> Result<(), Error> {
        let s2flags = self.flags;

        let ret = self.walk(addr, size, WalkFlags::LEAF, |ctx, visit| {
            stage2_split_walker(ctx, visit, &mut *mc, s2flags)
        });
        self.env.dsb(Barrier::IshSt);
        ret
    }

    /// Allocate the (concatenated) root for the geometry `vtcr` describes.
    /// On failure the table is left untouched.
    #[doc(alias = "__kvm_pgtable_stage2_init")]
    pub fn init(
        &mut self,
        vtcr: u64,
        flags: Stage2Flags,
        force_pte_cb: Option<F>,
    ) -> Result<(), Error> {
        let pgt = &mut self.pgt;
        let granule = pgt.cfg.granule;
        let ia_bits = vtcr_ipa(vtcr);
        let start_level = vtcr_start_level(granule, vtcr);

        let pgd_sz = pgd_pages(granule, ia_bits, start_level) as u64 * granule.page_size();
        let Some(pgd) = pgt.env.zalloc_pages_exact(pgd_sz) else {
            return Err(Error::NoMem);
        };

        pgt.geom.pgd = Some(pgd);
        pgt.geom.ia_bits = ia_bits;
        pgt.geom.start_level = start_level;
        self.flags = flags;
        self.force_pte_cb = force_pte_cb;

        // The zeroed root must be visible to the table walker before use.
        pgt.env.dsb(Barrier::IshSt);
        Ok(())
    }
}

/// Linux 7.3: a leaf only gives back its reference on the table page.
fn stage2_free_leaf<E: Env>(ctx: &mut VisitCtx<'_, E>) -> Result<(), Error> {
    ctx.env.put_page(ctx.ptep);
    Ok(())
}

/// Linux 7.3: a table, after its children, is freed only if nothing is
/// left in it (a partial range may have kept some entries), and its entry
/// is cleared so the freed table is never walked again.
fn stage2_free_table_post<E: Env>(ctx: &mut VisitCtx<'_, E>) -> Result<(), Error> {
    let childp = ctx.follow(ctx.old);

    if ctx.env.page_count(childp) != 1 {
        return Ok(());
    }

    ctx.env.put_page(ctx.ptep);
    ctx.env.put_page(childp);
    ctx.clear();
    Ok(())
}

/// Release everything a (sub)table holds: a reference on the table page
/// per counted entry, and the child tables themselves. Linux 6.12 frees
/// every table it meets; 7.3 only emptied ones.
#[inline]
fn stage2_free_walker<E: Env>(ctx: &mut VisitCtx<'_, E>, visit: Visit) -> Result<(), Error> {
    if !ctx.old.is_counted() {
        return Ok(());
    }

    if ctx.cfg.line == KernelLine::V7_3 {
        return match visit {
            Visit::Leaf => stage2_free_leaf(ctx),
            Visit::TablePost => stage2_free_table_post(ctx),
            Visit::TablePre => Err(Error::Inval),
        };
    }

    ctx.env.put_page(ctx.ptep);

    if ctx.old.is_table(ctx.level) {
        let child = ctx.follow(ctx.old);
        ctx.env.put_page(child);
    }
    Ok(())
}

impl<E: Env, F: ForcePteCb<E>> Stage2Pgtable<E, F> {
    /// Drop every reference the tables covering `[addr, addr + size)` hold
    /// and free the tables left empty, without TLB maintenance: nothing
    /// may be using the table any more. Linux 7.3.
    ///
    /// # Panics
    ///
    /// If the table models Linux 6.12.
    #[doc(alias = "kvm_pgtable_stage2_destroy_range")]
    pub fn destroy_range(&mut self, addr: u64, size: u64) {
        self.expect_line(KernelLine::V7_3, "destroy_range");
        self.stage2_destroy_range(addr, size);
    }

    /// Free the root table(s); the rest must already be gone (see
    /// [`Stage2Pgtable::destroy_range`]). Linux 7.3.
    ///
    /// # Panics
    ///
    /// If the table models Linux 6.12.
    #[doc(alias = "kvm_pgtable_stage2_destroy_pgd")]
    pub fn destroy_pgd(&mut self) {
        self.expect_line(KernelLine::V7_3, "destroy_pgd");
        self.stage2_destroy_pgd();
    }

    /// Drop every reference the table holds and free the root: in Linux
    /// 7.3, `destroy_range` over the whole input range, then `destroy_pgd`.
    /// Linux 6.12 does the same in one function. Both kernel lines.
    #[doc(alias = "kvm_pgtable_stage2_destroy")]
    pub fn destroy(&mut self) {
        let size = bit(self.geom.ia_bits as u64);
        self.stage2_destroy_range(0, size);
        self.stage2_destroy_pgd();
    }

    fn stage2_destroy_range(&mut self, addr: u64, size: u64) {
        let flags = WalkFlags::LEAF | WalkFlags::TABLE_POST;
        let ret = self.walk(addr, size, flags, stage2_free_walker);
        warn_on(&mut self.env, ret.is_err());
    }

    fn stage2_destroy_pgd(&mut self) {
        let pgt = &mut self.pgt;
        let granule = pgt.cfg.granule;
        let pgd_sz =
            pgd_pages(granule, pgt.geom.ia_bits, pgt.geom.start_level) as u64 * granule.page_size();
        // Without a root there is nothing to release.
        if let Some(pgd) = pgt.geom.pgd.take() {
            pgt.env.free_pages_exact(pgd, pgd_sz);
        }
    }
}

/// Tear down a table that is no longer linked into any tree. `level` is
/// the level of the entry that used to point at it.
///
/// This is what [`MmOps::free_unlinked_table`](crate::MmOps::free_unlinked_table)
/// is expected to call (KVM's implementation does).
#[doc(alias = "kvm_pgtable_stage2_free_unlinked")]
pub fn stage2_free_unlinked<E: Env>(env: &mut E, cfg: &Config, pgtable: PhysAddr, level: Level) {
    // The IPA no longer matters: just cover the whole table.
    let mut data = WalkData {
        start: 0,
        addr: 0,
        end: cfg.granule.granule_size(level),
        flags: WalkFlags::LEAF | WalkFlags::TABLE_POST,
    };

    let table = Table::follow(env, cfg.granule, pgtable);
    let ret = walk_table(
        env,
        cfg,
        &mut data,
        &mut stage2_free_walker,
        table,
        level.next(),
    );
    warn_on(env, ret.is_err());

    let count = env.page_count(pgtable);
    warn_on(env, count != 1);
    env.put_page(pgtable);
}

impl<E: Env, F: ForcePteCb<E>> Stage2Pgtable<E, F> {
    /// Free an unlinked table (see [`stage2_free_unlinked`]).
    #[doc(alias = "kvm_pgtable_stage2_free_unlinked")]
    pub fn free_unlinked(&mut self, pgtable: PhysAddr, level: Level) {
        let pgt = &mut self.pgt;
        stage2_free_unlinked(&mut pgt.env, &pgt.cfg, pgtable, level);
    }

    /// Invalidate stage-2 TLBs for a range (see
    /// [`kvm_tlb_flush_vmid_range`]).
    #[doc(alias = "kvm_tlb_flush_vmid_range")]
    pub fn tlb_flush_vmid_range(&mut self, addr: u64, size: u64) {
        let pgt = &mut self.pgt;
        kvm_tlb_flush_vmid_range(&mut pgt.env, &pgt.cfg, addr, size);
    }
}
