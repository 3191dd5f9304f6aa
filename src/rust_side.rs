// SPDX-License-Identifier: GPL-2.0-only
//! The Rust side's environment: rust-pgtable's `MmOps` and `Hw` over an
//! [`Arena`], recording into the same [`Event`] vocabulary as the C stubs.

use core::panic::Location;

use rust_pgtable as rp;

use crate::arena::{Arena, Memcache};
use crate::events::{Barrier, Event, Misuse, StoreKind, TlbiHypOp, Trace, WarnLoc};
use crate::force_pte::ForcePte;

/// Arena + trace, as seen by rust-pgtable.
pub struct RustEnv {
    pub arena: Arena,
    pub trace: Trace,
    cfg: rp::Config,
    rcu_depth: i32,
    cmo_ops: bool,
    /// Backing for a table pointer that is not in the arena: rust-pgtable's
    /// accesses stay memory-safe and the breach is reported.
    scratch: Box<[u64]>,
}

impl RustEnv {
    pub fn new(arena: Arena, cfg: rp::Config) -> RustEnv {
        let words = (arena.geometry().page_size / 8) as usize;
        RustEnv {
            arena,
            trace: Trace::new(),
            cfg,
            rcu_depth: 0,
            cmo_ops: true,
            scratch: vec![0; words].into(),
        }
    }

    /// Without cache-maintenance mm ops, like pKVM's host stage-2.
    pub fn without_cmo_ops(mut self) -> RustEnv {
        self.cmo_ops = false;
        self
    }

    pub fn take_trace(&mut self) -> Trace {
        std::mem::replace(&mut self.trace, crate::events::fresh_trace())
    }
}

// SAFETY: phys_to_virt returns either a pointer into the arena's backing
// store (for arena PAs) or into `scratch` (any other PA); both are valid,
// 8-byte aligned and live as long as the environment.
unsafe impl rp::MmOps for RustEnv {
    type Memcache = Memcache;

    fn zalloc_page(&mut self, mc: Option<&mut Memcache>) -> Option<u64> {
        self.arena.zalloc_page(mc, &mut self.trace)
    }

    fn memcache_nobjs(&self, mc: &Memcache) -> usize {
        mc.nobjs as usize
    }

    fn zalloc_pages_exact(&mut self, size: u64) -> Option<u64> {
        self.arena.zalloc_pages_exact(size, &mut self.trace)
    }

    fn free_pages_exact(&mut self, pa: u64, size: u64) {
        self.arena.free_pages_exact(pa, size, &mut self.trace);
    }

    fn free_unlinked_table(&mut self, pa: u64, level: rp::Level) {
        // As KVM does: the mm op hands the table back to the page-table code.
        self.trace.push(Event::FreeUnlinkedTable {
            pa,
            level: level.get(),
        });
        let cfg = self.cfg;
        rp::stage2_free_unlinked(self, &cfg, pa, level);
    }

    fn get_page(&mut self, pa: u64) {
        self.arena.get_page(pa, &mut self.trace);
    }

    fn put_page(&mut self, pa: u64) {
        self.arena.put_page(pa, &mut self.trace);
    }

    fn page_count(&mut self, pa: u64) -> i32 {
        self.arena.page_count(pa, &mut self.trace)
    }

    fn phys_to_virt(&mut self, pa: u64) -> *mut u64 {
        if let Some(p) = self.arena.slot_ptr(pa) {
            return p;
        }
        self.trace.push(Event::Misuse(Misuse::ForeignAddress {
            op: "phys_to_virt",
            pa,
        }));
        self.scratch.fill(0);
        self.scratch.as_mut_ptr()
    }

    fn dcache_clean_inval_poc(&mut self, pa: u64, size: u64) {
        self.trace.push(Event::DcacheCleanInvalPoc { pa, size });
    }

    fn icache_inval_pou(&mut self, pa: u64, size: u64) {
        self.trace.push(Event::IcacheInvalPou { pa, size });
    }

    fn has_dcache_clean_inval_poc(&self) -> bool {
        self.cmo_ops
    }

    fn has_icache_inval_pou(&self) -> bool {
        self.cmo_ops
    }
}

impl rp::Hw for RustEnv {
    fn pte_store(&mut self, pa: u64, prev: u64, new: u64, kind: rp::StoreKind) {
        if !self.arena.is_table_slot(pa) {
            self.arena.taint();
            self.trace
                .push(Event::Misuse(Misuse::StoreOutsideTables { pa }));
        }
        let kind = match kind {
            rp::StoreKind::WriteOnce => StoreKind::WriteOnce,
            rp::StoreKind::Release => StoreKind::Release,
            rp::StoreKind::Cmpxchg { .. } => StoreKind::Cmpxchg,
        };
        self.trace.push(Event::Store {
            pa,
            old: prev,
            val: new,
            kind,
        });
    }

    fn tlbi_hyp(&mut self, op: rp::TlbiOp, operand: u64, level: i32) {
        let op = match op {
            rp::TlbiOp::Vae2is => TlbiHypOp::Vae2is,
            rp::TlbiOp::Vale2is => TlbiHypOp::Vale2is,
        };
        self.trace.push(Event::TlbiHyp { op, operand, level });
    }

    fn tlbi_sync_s1ish_hyp(&mut self) {
        self.trace.push(Event::TlbiSyncS1IshHyp);
    }

    fn tlb_flush_vmid(&mut self) {
        self.trace.push(Event::TlbFlushVmid);
    }

    fn tlb_flush_vmid_ipa(&mut self, ipa: u64, level: i32) {
        self.trace.push(Event::TlbFlushVmidIpa {
            ipa,
            level,
            nsh: false,
        });
    }

    fn tlb_flush_vmid_ipa_nsh(&mut self, ipa: u64, level: i32) {
        self.trace.push(Event::TlbFlushVmidIpa {
            ipa,
            level,
            nsh: true,
        });
    }

    fn tlb_flush_vmid_range(&mut self, start: u64, pages: u64) {
        self.trace.push(Event::TlbFlushVmidRange { start, pages });
    }

    fn dsb(&mut self, kind: rp::Barrier) {
        use rp::Barrier as B;
        let b = match kind {
            B::Sy => Barrier::Sy,
            B::St => Barrier::St,
            B::Ld => Barrier::Ld,
            B::Ish => Barrier::Ish,
            B::IshSt => Barrier::IshSt,
            B::IshLd => Barrier::IshLd,
            B::Nsh => Barrier::Nsh,
            B::NshSt => Barrier::NshSt,
            B::NshLd => Barrier::NshLd,
            B::Osh => Barrier::Osh,
            B::OshSt => Barrier::OshSt,
            B::OshLd => Barrier::OshLd,
        };
        self.trace.push(Event::Dsb(b));
    }

    fn isb(&mut self) {
        self.trace.push(Event::Isb);
    }

    fn warn(&mut self, once: bool, loc: &'static Location<'static>) {
        self.trace.push(Event::Warn {
            once,
            loc: WarnLoc {
                file: loc.file(),
                line: loc.line(),
            },
        });
    }

    fn rcu_read_lock(&mut self) {
        self.rcu_depth += 1;
        self.trace.push(Event::Rcu { lock: true });
    }

    fn rcu_read_unlock(&mut self) {
        self.rcu_depth -= 1;
        self.trace.push(Event::Rcu { lock: false });
    }

    fn rcu_read_lock_held(&mut self) -> bool {
        self.rcu_depth > 0
    }
}

/// The harness's force_pte policy as a rust-pgtable callback; it records
/// into the environment's trace exactly as the C callback does.
pub struct ForcePteAdapter(pub ForcePte);

impl rp::ForcePteCb<RustEnv> for ForcePteAdapter {
    fn force_pte(&mut self, env: &mut RustEnv, addr: u64, end: u64, prot: rp::Prot) -> bool {
        self.0.decide(addr, end, prot.bits(), &mut env.trace)
    }
}
