// SPDX-License-Identifier: GPL-2.0-only
//! What every page table has, whatever its stage: the environment it runs
//! in, the configuration, and where its root is. [`crate::HypPgtable`] and
//! [`crate::Stage2Pgtable`] are this core plus their own operations, the
//! way both kinds of table are a `struct kvm_pgtable` in the kernel.

use crate::env::Env;
use crate::types::{Config, Error, KernelLine, Level, PhysAddr, Pte, WalkFlags, is_aligned};
use crate::walk::{Geometry, Visit, VisitCtx, kvm_pgtable_get_leaf, kvm_pgtable_walk};

/// The state shared by hypervisor stage-1 and guest stage-2 tables. It owns
/// the environment, so every effect of every operation goes through it.
///
/// Reached through [`crate::HypPgtable`] and [`crate::Stage2Pgtable`], which
/// dereference to it.
#[doc(alias = "kvm_pgtable")]
pub struct Pgtable<E> {
    pub(crate) env: E,
    pub(crate) cfg: Config,
    pub(crate) geom: Geometry,
}

impl<E: Env> Pgtable<E> {
    /// A table without a root: every walk fails with `EINVAL` until the
    /// owner's `init` allocates one.
    pub(crate) fn new(env: E, cfg: Config) -> Self {
        Pgtable {
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

    /// The configuration.
    pub fn cfg(&self) -> &Config {
        &self.cfg
    }

    /// Root location and input range.
    pub fn geometry(&self) -> Geometry {
        self.geom
    }

    /// Root table address, if initialised.
    pub fn pgd(&self) -> Option<PhysAddr> {
        self.geom.pgd
    }

    /// Walk `[addr, addr + size)` with a custom visitor.
    #[doc(alias = "kvm_pgtable_walk")]
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
    #[doc(alias = "kvm_pgtable_get_leaf")]
    pub fn get_leaf(&mut self, addr: u64) -> Result<(Pte, Level), Error> {
        kvm_pgtable_get_leaf(&mut self.env, &self.cfg, &self.geom, addr)
    }
}

/// Whether a leaf covering the whole level-`ctx.level` region at `ctx.addr`
/// may be used to map `phys`: the level must allow blocks, the region must
/// fit in what is left of the walk, and both addresses must be aligned to
/// it. In Linux 6.12 an invalid `phys` (ownership annotations carry one)
/// has no alignment to check; 7.3 annotates without a `phys` and checks
/// every one.
pub(crate) fn kvm_block_mapping_supported<E>(ctx: &VisitCtx<'_, E>, phys: u64) -> bool {
    let cfg = ctx.cfg;
    let granule = cfg.granule.granule_size(ctx.level);
    if !cfg.granule.level_supports_block_mapping(ctx.level) {
        return false;
    }
    if granule > ctx.end.wrapping_sub(ctx.addr) {
        return false;
    }
    let check_phys = match cfg.line {
        KernelLine::V6_12 => cfg.phys_is_valid(phys),
        KernelLine::V7_3 => true,
    };
    if check_phys && !is_aligned(phys, granule) {
        return false;
    }
    is_aligned(ctx.addr, granule)
}
