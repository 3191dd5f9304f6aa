// SPDX-License-Identifier: GPL-2.0-only
//! The oracle: runs one [`OpStream`] on the C side and the Rust side and
//! compares them.
//!
//! Comparison points (see the brief):
//! 1. after every op: the return value and outputs (including visit
//!    sequences and memcache pages left) and the full event trace;
//! 2. at the end: every live page, byte for byte, and every refcount;
//! 3. then destroy both: the teardown traces must match and both arenas
//!    must end empty;
//! 4. with [`RunOptions::owner_invariant`]: no owner annotation outside an
//!    op's range may disappear (the host stage-2 seed invariant);
//! 5. an mm_ops contract breach ([`Misuse`]) on either side is a finding
//!    even when both sides agree.
//!
//! Nothing is normalised here except what [`crate::events::WarnLoc`]'s
//! equality does (WARN source locations).
//!
//! Some inputs are outside the API's contract in a way that makes the C code
//! undefined behaviour (a shift by 64 or more); those ops are not run on
//! either side and are reported as skipped. [`precondition`] is the only
//! place that decides this.

use rust_pgtable as rp;

use crate::arena::{Arena, Geometry, Memcache, NullMemcache};
use crate::c_side::{Build, CSide, CpuFeatures};
use crate::events::{Event, Trace, Visit};
use crate::force_pte::{ForcePte, MemRegion};
use crate::known;
use crate::opstream::{
    self, Config, Context, ForcePtePolicy, Op, OpStream, RegionKind, Stage, VisitScript,
};
use crate::report::{Divergence, Step, What};
use crate::rust_side::{ForcePteAdapter, RustEnv};
use crate::tree::{Format, TreeIndex};

/// Knobs of a run.
#[derive(Clone, Copy, Debug, Default)]
pub struct RunOptions {
    /// Compare every live page after every op, not only at the end.
    pub full_memory_each_op: bool,
    /// Check that no owner annotation outside an op's range is destroyed.
    pub owner_invariant: bool,
    /// Record every op's outcome (for determinism checks and `show`).
    pub keep_log: bool,
}

/// A comparable op result (outputs other than the trace).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value {
    Unit,
    Int(i64),
    U64(u64),
    Bool(bool),
    Leaf {
        ret: i32,
        pte: u64,
        level: i8,
    },
    Table(Result<u64, i32>),
    Walk {
        ret: i32,
        visits: Vec<Visit>,
    },
    /// Not run on either side: the input breaks a precondition the kernel's
    /// callers guarantee (see [`precondition`]).
    Skipped(&'static str),
}

/// One side's result of one op.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    pub value: Value,
    /// Pages left in the memcache the op was given, if any.
    pub memcache_left: Option<u32>,
    pub trace: Trace,
}

/// What a successful run produced.
#[derive(Clone, Debug, Default)]
pub struct Summary {
    pub ops_run: usize,
    pub ops_skipped: usize,
    pub events: usize,
    /// Per op (init first, destroy last) the C side's outcome, with `keep_log`.
    pub log: Vec<Outcome>,
    /// Known kernel divergences observed (ids from [`crate::known`]).
    pub known: Vec<&'static str>,
}

/// Deferred range TLBIs an unmap may cost before it is not run (see [`precondition`]).
const MAX_RANGE_TLBIS: u64 = 4096;

/// Decides whether an op may run at all. Returns the reason when the C code
/// would hit undefined behaviour for it.
pub fn precondition(cfg: &Config, op: &Op) -> Result<(), &'static str> {
    match *op {
        // kvm_granule_size(level) shifts by (PAGE_SHIFT-3)*(4-level)+3.
        Op::S2CreateUnlinked { level, .. } if !(-1..=3).contains(&level) => {
            Err("create_unlinked level outside -1..=3")
        }
        // VTCR_EL2_IPA = 64 - T0SZ; T0SZ = 0 makes BIT(64).
        Op::PgdSize { vtcr } if vtcr & 0x3f == 0 => {
            Err("pgd_size with T0SZ = 0 (a 64-bit IPA space)")
        }
        // With FEAT_TLBIRANGE and FWB, unmap defers to one range TLBI per
        // MAX_TLBI_RANGE_PAGES pages of `size`, whatever is mapped: a size
        // near 2^64 means ~10^8 events. Callers bound size by a memslot.
        Op::S2Unmap { size, .. }
            if cfg.features.tlb_range
                && cfg.features.fwb
                && !cfg.s2_flags.nofwb
                && (size >> cfg.granule.page_shift()) / rp::MAX_TLBI_RANGE_PAGES
                    > MAX_RANGE_TLBIS =>
        {
            Err("unmap size needs more than 4096 deferred range TLBIs")
        }
        _ if !op.valid_for(cfg.stage) => Err("op does not apply to this stage"),
        _ => Ok(()),
    }
}

enum RTable {
    Hyp(rp::HypPgtable<RustEnv>),
    Stage2(rp::Stage2Pgtable<RustEnv, ForcePteAdapter>),
}

impl RTable {
    fn env(&mut self) -> &mut RustEnv {
        match self {
            RTable::Hyp(t) => t.env_mut(),
            RTable::Stage2(t) => t.env_mut(),
        }
    }

    fn env_ref(&self) -> &RustEnv {
        match self {
            RTable::Hyp(t) => t.env(),
            RTable::Stage2(t) => t.env(),
        }
    }
}

fn errno(r: Result<(), rp::Error>) -> i64 {
    match r {
        Ok(()) => 0,
        Err(e) => i64::from(e.to_errno()),
    }
}

fn rp_granule(g: opstream::Granule) -> rp::Granule {
    match g {
        opstream::Granule::K4 => rp::Granule::Size4K,
        opstream::Granule::K16 => rp::Granule::Size16K,
        opstream::Granule::K64 => rp::Granule::Size64K,
    }
}

fn force_pte(cfg: &Config) -> ForcePte {
    match &cfg.force_pte {
        ForcePtePolicy::None => ForcePte::None,
        ForcePtePolicy::Host { regions } => ForcePte::Host {
            memory: regions
                .iter()
                .filter(|r| r.kind == RegionKind::Memory)
                .map(|r| MemRegion {
                    start: r.start,
                    size: r.size,
                })
                .collect(),
        },
        ForcePtePolicy::Arbitrary { pattern } => ForcePte::Arbitrary {
            pattern: *pattern,
            calls: 0,
        },
    }
}

/// The two sides, set up from a config.
pub struct Pair {
    cfg: Config,
    c: CSide,
    r: RTable,
    /// Tables from create_unlinked: (C pa, Rust pa, level).
    unlinked: Vec<(u64, u64, i8)>,
    fmt: Format,
    pgd_pages: u32,
}

impl Pair {
    pub fn new(cfg: &Config) -> Pair {
        let geo = Geometry::new(cfg.granule.page_size(), cfg.arena_pages);
        let null_mc = match cfg.stage {
            Stage::Hyp => NullMemcache::Pool,
            Stage::Stage2 => NullMemcache::Fail,
        };
        let features = CpuFeatures {
            stage2_fwb: cfg.features.fwb,
            tlb_range: cfg.features.tlb_range,
            lpa2: cfg.features.lpa2,
            bti_kernel: cfg.features.bti,
            hvhe: cfg.features.hvhe,
            ampere_ac03: cfg.features.ampere_ac03,
        };
        let nvhe = cfg.context == Context::Nvhe;
        let build = Build {
            nvhe,
            granule: cfg.granule,
        };
        let c = CSide::new(
            build,
            features,
            Arena::new(geo, null_mc, cfg.alloc_fail_after),
            force_pte(cfg),
        );
        let rcfg = rp::Config::new(
            rp_granule(cfg.granule),
            if nvhe {
                rp::Context::NvheHyp
            } else {
                rp::Context::Kernel
            },
            rp::Features {
                lpa2: features.lpa2,
                stage2_fwb: features.stage2_fwb,
                tlb_range: features.tlb_range,
                bti_kernel: features.bti_kernel,
                hvhe: features.hvhe,
                ampere_ac03_workaround: features.ampere_ac03,
                xnx: false, // FEAT_XNX: only the Linux 7.3 code reads it
            },
        );
        let env = RustEnv::new(Arena::new(geo, null_mc, cfg.alloc_fail_after), rcfg);
        let r = match cfg.stage {
            Stage::Hyp => RTable::Hyp(rp::HypPgtable::new(env, rcfg)),
            Stage::Stage2 => RTable::Stage2(rp::Stage2Pgtable::new(env, rcfg)),
        };
        let fmt = Format {
            stage: cfg.stage,
            granule: cfg.granule,
            lpa2: cfg.features.lpa2,
        };
        Pair {
            cfg: cfg.clone(),
            c,
            r,
            unlinked: Vec::new(),
            fmt,
            pgd_pages: 1,
        }
    }

    /// Whether init created the table (on the C side; the sides agreed).
    pub fn initialised(&self) -> bool {
        self.c.pgd().is_some()
    }

    pub fn c_arena(&self) -> &Arena {
        self.c.arena()
    }

    pub fn rust_arena(&self) -> &Arena {
        &self.r.env_ref().arena
    }

    pub fn format(&self) -> Format {
        self.fmt
    }

    /// Index of the C side's current tree.
    pub fn c_tree(&self) -> TreeIndex {
        match self.c.pgd() {
            Some(pgd) => TreeIndex::build(
                self.c.arena(),
                self.fmt,
                pgd,
                self.pgd_pages,
                self.c.geometry().1,
            ),
            None => TreeIndex::default(),
        }
    }

    fn initialised_side(&self, side: Side) -> bool {
        match side {
            Side::C => self.c.pgd().is_some(),
            Side::Rust => match &self.r {
                RTable::Hyp(t) => t.pgd().is_some(),
                RTable::Stage2(t) => t.pgd().is_some(),
            },
        }
    }

    /// Creates the table on one side only (the other outcome is empty).
    fn init_side(&mut self, side: Side) -> (Outcome, Outcome) {
        let empty = Outcome {
            value: Value::Unit,
            memcache_left: None,
            trace: Trace::new(),
        };
        let (c, r) = self.init_with(side == Side::C, side == Side::Rust);
        match side {
            Side::C => (c, empty),
            Side::Rust => (empty, r),
        }
    }

    /// Creates the table on both sides. Returns the two outcomes.
    pub fn init(&mut self) -> (Outcome, Outcome) {
        self.init_with(true, true)
    }

    fn init_with(&mut self, do_c: bool, do_rust: bool) -> (Outcome, Outcome) {
        let cfg = self.cfg.clone();
        let ia_bits = u32::from(cfg.ia_bits);
        let int = |v: i64, trace: Trace| Outcome {
            value: Value::Int(v),
            memcache_left: None,
            trace,
        };
        let none = || int(0, Trace::new());
        match &mut self.r {
            RTable::Hyp(t) => {
                let c = if do_c {
                    let o = self.c.hyp_init(ia_bits);
                    int(o.ret.into(), o.trace)
                } else {
                    none()
                };
                let r = if do_rust {
                    let v = errno(t.init(ia_bits));
                    int(v, t.env_mut().take_trace())
                } else {
                    none()
                };
                (c, r)
            }
            RTable::Stage2(t) => {
                // The VTCR comes from each side's own kvm_get_vtcr().
                let mmfr0 = u64::from(cfg.mmfr0_parange);
                let mmfr1 = if cfg.vmid16 { 0x20 } else { 0 };
                let cv = self.c.get_vtcr(mmfr0, mmfr1, ia_bits);
                let rv = rp::get_vtcr(t.cfg(), mmfr0, mmfr1, ia_bits);
                if do_c && do_rust && cv != rv {
                    let u = |v| Outcome {
                        value: Value::U64(v),
                        memcache_left: None,
                        trace: Trace::new(),
                    };
                    return (u(cv), u(rv));
                }
                let with_start_level = |mut vtcr: u64| {
                    if let Some(level) = cfg.start_level {
                        let base: i64 = if cfg.granule == opstream::Granule::K4 {
                            2
                        } else {
                            3
                        };
                        let sl0 = (base - i64::from(level)).clamp(0, 3) as u64;
                        vtcr = (vtcr & !(3 << 6)) | (sl0 << 6);
                    }
                    vtcr
                };
                let flags = u32::from(cfg.s2_flags.nofwb) | (u32::from(cfg.s2_flags.idmap) << 1);
                let c = if do_c {
                    let vtcr = with_start_level(cv);
                    self.pgd_pages =
                        (self.c.stage2_pgd_size(vtcr) / cfg.granule.page_size()) as u32;
                    let o = self.c.stage2_init(vtcr, flags);
                    int(o.ret.into(), o.trace)
                } else {
                    none()
                };
                let r = if do_rust {
                    let fp = force_pte(&cfg);
                    let cb = fp.installed().then_some(ForcePteAdapter(fp));
                    let v = errno(t.init(
                        with_start_level(rv),
                        rp::Stage2Flags::from_bits_retain(flags),
                        cb,
                    ));
                    int(v, t.env_mut().take_trace())
                } else {
                    none()
                };
                (c, r)
            }
        }
    }

    /// Runs one op on both sides.
    pub fn step(&mut self, op: &Op) -> (Outcome, Outcome) {
        if let Err(why) = precondition(&self.cfg, op) {
            let o = Outcome {
                value: Value::Skipped(why),
                memcache_left: None,
                trace: Trace::new(),
            };
            return (o.clone(), o);
        }
        let c = run_c(&mut self.c, self.cfg.stage, &self.unlinked, op);
        let r = run_rust(&mut self.r, &self.unlinked, op);
        // Unlinked tables are recorded as pairs once both sides have made one.
        if let (Value::Table(Ok(cpa)), Value::Table(Ok(rpa))) = (&c.value, &r.value) {
            self.track_unlinked(op, Some((*cpa, *rpa)));
        } else {
            self.track_unlinked(op, None);
        }
        (c, r)
    }

    /// Keeps the list of unlinked tables: `made` is the (C, Rust) table a
    /// create_unlinked op returned; free_unlinked removes the entry it freed.
    fn track_unlinked(&mut self, op: &Op, made: Option<(u64, u64)>) {
        match (op, made) {
            (Op::S2CreateUnlinked { level, .. }, Some((c, r))) => {
                self.unlinked.push((c, r, *level))
            }
            (Op::S2FreeUnlinked { index }, _) if !self.unlinked.is_empty() => {
                let n = self.unlinked.len();
                self.unlinked.remove(usize::from(*index) % n);
            }
            _ => {}
        }
    }

    /// Teardown on one side only (for [`run_one_side`]); returns its trace.
    fn destroy_side(&mut self, side: Side) -> Trace {
        let mut trace = Trace::new();
        let unlinked = std::mem::take(&mut self.unlinked);
        match (side, &mut self.r) {
            (Side::C, r) => {
                for &(pa, _, level) in &unlinked {
                    trace.extend(self.c.stage2_free_unlinked(pa, level).trace);
                }
                let o = match r {
                    RTable::Hyp(_) => self.c.hyp_destroy(),
                    RTable::Stage2(_) => self.c.stage2_destroy(),
                };
                trace.extend(o.trace);
            }
            (Side::Rust, RTable::Hyp(t)) => {
                t.destroy();
                trace.extend(t.env_mut().take_trace());
            }
            (Side::Rust, RTable::Stage2(t)) => {
                for &(_, pa, level) in &unlinked {
                    t.free_unlinked(pa, rp::Level(level));
                }
                t.destroy();
                trace.extend(t.env_mut().take_trace());
            }
        }
        trace
    }

    /// Frees leftover unlinked tables, then destroys both tables.
    pub fn destroy(&mut self) -> (Outcome, Outcome) {
        let mut ct = Trace::new();
        for &(cpa, _, level) in &self.unlinked {
            ct.extend(self.c.stage2_free_unlinked(cpa, level).trace);
        }
        let mut rt = Trace::new();
        for &(_, rpa, level) in &self.unlinked {
            if let RTable::Stage2(t) = &mut self.r {
                t.free_unlinked(rpa, rp::Level(level));
            }
        }
        self.unlinked.clear();
        if !self.initialised() {
            // Nothing to destroy: init failed on both sides.
            return (
                Outcome {
                    value: Value::Unit,
                    memcache_left: None,
                    trace: ct,
                },
                Outcome {
                    value: Value::Unit,
                    memcache_left: None,
                    trace: rt,
                },
            );
        }
        match &mut self.r {
            RTable::Hyp(t) => {
                ct.extend(self.c.hyp_destroy().trace);
                t.destroy();
            }
            RTable::Stage2(t) => {
                ct.extend(self.c.stage2_destroy().trace);
                t.destroy();
            }
        }
        rt.extend(self.r.env().take_trace());
        (
            Outcome {
                value: Value::Unit,
                memcache_left: None,
                trace: ct,
            },
            Outcome {
                value: Value::Unit,
                memcache_left: None,
                trace: rt,
            },
        )
    }
}

fn mc_of(mc: opstream::Memcache) -> Option<Memcache> {
    mc.map(|n| Memcache { nobjs: n })
}

fn script_result(script: VisitScript, n: usize) -> i32 {
    match script {
        VisitScript::Ok => 0,
        VisitScript::FailAt { n: at, errno } => {
            if n == usize::from(at) {
                i32::from(errno)
            } else {
                0
            }
        }
    }
}

fn run_c(c: &mut CSide, stage: Stage, unlinked: &[(u64, u64, i8)], op: &Op) -> Outcome {
    let mut mc_used = false;
    let (value, trace) = match *op {
        Op::HypMap {
            addr,
            size,
            phys,
            prot,
        } => {
            let o = c.hyp_map(addr, size, phys, prot);
            (Value::Int(o.ret.into()), o.trace)
        }
        Op::HypUnmap { addr, size } => {
            let o = c.hyp_unmap(addr, size);
            (Value::U64(o.ret), o.trace)
        }
        Op::S2Map {
            addr,
            size,
            phys,
            prot,
            mc,
            flags,
        } => {
            mc_used = mc.is_some();
            let o = c.stage2_map(addr, size, phys, prot, mc_of(mc), u32::from(flags));
            (Value::Int(o.ret.into()), o.trace)
        }
        Op::S2SetOwner {
            addr,
            size,
            mc,
            owner_id,
        } => {
            mc_used = mc.is_some();
            let o = c.stage2_set_owner(addr, size, mc_of(mc), owner_id);
            (Value::Int(o.ret.into()), o.trace)
        }
        Op::S2Unmap { addr, size } => {
            let o = c.stage2_unmap(addr, size);
            (Value::Int(o.ret.into()), o.trace)
        }
        Op::S2Wrprotect { addr, size } => {
            let o = c.stage2_wrprotect(addr, size);
            (Value::Int(o.ret.into()), o.trace)
        }
        Op::S2Mkyoung { addr } => {
            let o = c.stage2_mkyoung(addr);
            (Value::U64(o.ret), o.trace)
        }
        Op::S2TestClearYoung { addr, size, mkold } => {
            let o = c.stage2_test_clear_young(addr, size, mkold);
            (Value::Bool(o.ret), o.trace)
        }
        Op::S2RelaxPerms { addr, prot } => {
            let o = c.stage2_relax_perms(addr, prot);
            (Value::Int(o.ret.into()), o.trace)
        }
        Op::S2Flush { addr, size } => {
            let o = c.stage2_flush(addr, size);
            (Value::Int(o.ret.into()), o.trace)
        }
        Op::S2Split { addr, size, nobjs } => {
            let o = c.stage2_split(addr, size, nobjs);
            let left = c.split_cache_left();
            return Outcome {
                value: Value::Int(o.ret.into()),
                memcache_left: Some(left),
                trace: o.trace,
            };
        }
        Op::S2CreateUnlinked {
            phys,
            level,
            prot,
            mc,
            force_pte,
        } => {
            mc_used = mc.is_some();
            let o = c.stage2_create_unlinked(phys, level, prot, mc_of(mc), force_pte);
            (Value::Table(o.ret), o.trace)
        }
        Op::S2FreeUnlinked { index } => {
            if unlinked.is_empty() {
                (Value::Unit, Trace::new())
            } else {
                let (pa, _, level) = unlinked[usize::from(index) % unlinked.len()];
                let o = c.stage2_free_unlinked(pa, level);
                (Value::Unit, o.trace)
            }
        }
        Op::Walk {
            addr,
            size,
            flags,
            script,
        } => {
            let mut visits = Vec::new();
            let o = c.walk(addr, size, u32::from(flags), &mut |v| {
                let r = script_result(script, visits.len());
                visits.push(*v);
                r
            });
            (Value::Walk { ret: o.ret, visits }, o.trace)
        }
        Op::GetLeaf { addr } => {
            let o = c.get_leaf(addr);
            let (ret, pte, level) = o.ret;
            // The kernel leaves the outputs untouched on error.
            let (pte, level) = if ret == 0 { (pte, level) } else { (0, 0) };
            (Value::Leaf { ret, pte, level }, o.trace)
        }
        Op::PteProt { pte } => {
            let v = if stage == Stage::Hyp {
                c.hyp_pte_prot(pte)
            } else {
                c.stage2_pte_prot(pte)
            };
            (Value::U64(v), Trace::new())
        }
        Op::GetVtcr {
            mmfr0,
            mmfr1,
            phys_shift,
        } => (
            Value::U64(c.get_vtcr(mmfr0, mmfr1, phys_shift)),
            Trace::new(),
        ),
        Op::PgdSize { vtcr } => (Value::U64(c.stage2_pgd_size(vtcr)), Trace::new()),
    };
    Outcome {
        value,
        memcache_left: mc_used.then(|| c.memcache_left()),
        trace,
    }
}

fn run_rust(r: &mut RTable, unlinked: &[(u64, u64, i8)], op: &Op) -> Outcome {
    let prot = rp::Prot::from_bits_retain;
    let mut left = None;
    let value = match (&mut *r, op) {
        (
            RTable::Hyp(t),
            &Op::HypMap {
                addr,
                size,
                phys,
                prot: p,
            },
        ) => Value::Int(errno(t.map(addr, size, phys, prot(p)))),
        (RTable::Hyp(t), &Op::HypUnmap { addr, size }) => Value::U64(t.unmap(addr, size)),
        (
            RTable::Stage2(t),
            &Op::S2Map {
                addr,
                size,
                phys,
                prot: p,
                mc,
                flags,
            },
        ) => {
            let mut m = mc_of(mc);
            let v = errno(t.map(
                addr,
                size,
                phys,
                prot(p),
                m.as_mut(),
                rp::WalkFlags::from_bits_retain(flags.into()),
            ));
            left = m.map(|m| m.nobjs);
            Value::Int(v)
        }
        (
            RTable::Stage2(t),
            &Op::S2SetOwner {
                addr,
                size,
                mc,
                owner_id,
            },
        ) => {
            let mut m = mc_of(mc);
            let v = errno(t.set_owner(addr, size, m.as_mut(), owner_id));
            left = m.map(|m| m.nobjs);
            Value::Int(v)
        }
        (RTable::Stage2(t), &Op::S2Unmap { addr, size }) => Value::Int(errno(t.unmap(addr, size))),
        (RTable::Stage2(t), &Op::S2Wrprotect { addr, size }) => {
            Value::Int(errno(t.wrprotect(addr, size)))
        }
        (RTable::Stage2(t), &Op::S2Mkyoung { addr }) => Value::U64(t.mkyoung(addr).0),
        (RTable::Stage2(t), &Op::S2TestClearYoung { addr, size, mkold }) => {
            Value::Bool(t.test_clear_young(addr, size, mkold))
        }
        (RTable::Stage2(t), &Op::S2RelaxPerms { addr, prot: p }) => {
            Value::Int(errno(t.relax_perms(addr, prot(p))))
        }
        (RTable::Stage2(t), &Op::S2Flush { addr, size }) => Value::Int(errno(t.flush(addr, size))),
        (RTable::Stage2(t), &Op::S2Split { addr, size, nobjs }) => {
            let mut m = Memcache { nobjs };
            let v = errno(t.split(addr, size, &mut m));
            left = Some(m.nobjs);
            Value::Int(v)
        }
        (
            RTable::Stage2(t),
            &Op::S2CreateUnlinked {
                phys,
                level,
                prot: p,
                mc,
                force_pte,
            },
        ) => {
            let mut m = mc_of(mc);
            let v = t.create_unlinked(phys, rp::Level(level), prot(p), m.as_mut(), force_pte);
            left = m.map(|m| m.nobjs);
            Value::Table(v.map_err(|e| e.to_errno()))
        }
        (RTable::Stage2(t), &Op::S2FreeUnlinked { index }) => {
            if !unlinked.is_empty() {
                let (_, pa, level) = unlinked[usize::from(index) % unlinked.len()];
                t.free_unlinked(pa, rp::Level(level));
            }
            Value::Unit
        }
        (
            t,
            &Op::Walk {
                addr,
                size,
                flags,
                script,
            },
        ) => {
            let mut visits = Vec::new();
            let mut visitor = |ctx: &mut rp::VisitCtx<'_, RustEnv>, visit: rp::walk::Visit| {
                let r = script_result(script, visits.len());
                visits.push(Visit {
                    kind: visit.as_flag().bits(),
                    ptep: ctx.ptep,
                    old: ctx.old.0,
                    start: ctx.start,
                    addr: ctx.addr,
                    end: ctx.end,
                    level: ctx.level.get(),
                    flags: ctx.flags.bits(),
                });
                match rp::Error::from_errno(r) {
                    None => Ok(()),
                    Some(e) => Err(e),
                }
            };
            let wf = rp::WalkFlags::from_bits_retain(flags.into());
            let ret = match t {
                RTable::Hyp(t) => t.walk(addr, size, wf, &mut visitor),
                RTable::Stage2(t) => t.walk(addr, size, wf, &mut visitor),
            };
            Value::Walk {
                ret: errno(ret) as i32,
                visits,
            }
        }
        (t, &Op::GetLeaf { addr }) => {
            let r = match t {
                RTable::Hyp(t) => t.get_leaf(addr),
                RTable::Stage2(t) => t.get_leaf(addr),
            };
            match r {
                Ok((pte, level)) => Value::Leaf {
                    ret: 0,
                    pte: pte.0,
                    level: level.get(),
                },
                Err(e) => Value::Leaf {
                    ret: e.to_errno(),
                    pte: 0,
                    level: 0,
                },
            }
        }
        (RTable::Hyp(t), &Op::PteProt { pte }) => {
            Value::U64(rp::hyp_pte_prot(t.cfg(), rp::Pte(pte)).bits())
        }
        (RTable::Stage2(_), &Op::PteProt { pte }) => {
            Value::U64(rp::stage2_pte_prot(rp::Pte(pte)).bits())
        }
        (
            t,
            &Op::GetVtcr {
                mmfr0,
                mmfr1,
                phys_shift,
            },
        ) => {
            let cfg = match t {
                RTable::Hyp(t) => *t.cfg(),
                RTable::Stage2(t) => *t.cfg(),
            };
            Value::U64(rp::get_vtcr(&cfg, mmfr0, mmfr1, phys_shift))
        }
        (t, &Op::PgdSize { vtcr }) => {
            let g = match t {
                RTable::Hyp(t) => t.cfg().granule,
                RTable::Stage2(t) => t.cfg().granule,
            };
            Value::U64(rp::stage2_pgd_size(g, vtcr))
        }
        (_, _) => Value::Skipped("op does not apply to this stage"),
    };
    Outcome {
        value,
        memcache_left: left,
        trace: r.env().take_trace(),
    }
}

/// Which implementation to run alone (for benchmarks).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    C,
    Rust,
}

/// Runs `stream` on one side only, with no comparison: the cost of that
/// implementation plus its environment (init, ops, teardown, as in the
/// diff), for `cargo xtask bench`.
/// Returns the number of events recorded.
pub fn run_one_side(stream: &OpStream, side: Side) -> usize {
    let mut pair = Pair::new(&stream.config);
    let mut events = 0;
    let (c, r) = pair.init_side(side);
    events += c.trace.len() + r.trace.len();
    if pair.initialised_side(side) {
        for op in &stream.ops {
            if precondition(&stream.config, op).is_err() {
                continue;
            }
            let o = match side {
                Side::C => run_c(&mut pair.c, pair.cfg.stage, &pair.unlinked, op),
                Side::Rust => run_rust(&mut pair.r, &pair.unlinked, op),
            };
            let made = match o.value {
                Value::Table(Ok(pa)) => Some((pa, pa)),
                _ => None,
            };
            pair.track_unlinked(op, made);
            events += o.trace.len();
        }
        events += pair.destroy_side(side).len();
    }
    events
}

/// Why a stream cannot run at all.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvalidStream(pub String);

impl std::fmt::Display for InvalidStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "invalid stream: {}", self.0)
    }
}

fn compare(c: &Outcome, r: &Outcome) -> Option<What> {
    if c.value != r.value {
        return Some(What::Value {
            c: c.value.clone(),
            rust: r.value.clone(),
        });
    }
    if c.memcache_left != r.memcache_left {
        return Some(What::MemcacheLeft {
            c: c.memcache_left,
            rust: r.memcache_left,
        });
    }
    if c.trace != r.trace {
        return Some(What::Trace {
            c: c.trace.clone(),
            rust: r.trace.clone(),
        });
    }
    // Both agree, but the code broke the mm_ops contract.
    c.trace.iter().find_map(|e| match e {
        Event::Misuse(m) => Some(What::Misuse { event: *m }),
        _ => None,
    })
}

fn compare_memory(c: &Arena, r: &Arena) -> Option<What> {
    let cl: Vec<(u64, u32)> = c.live().collect();
    let rl: Vec<(u64, u32)> = r.live().collect();
    if cl != rl {
        return Some(What::LivePages { c: cl, rust: rl });
    }
    for &(pa, _) in &cl {
        let (a, b) = (c.page_words(pa), r.page_words(pa));
        if a != b {
            let i = a.iter().zip(b).position(|(x, y)| x != y).unwrap_or(0);
            return Some(What::Memory {
                pa: pa + 8 * i as u64,
                c: a[i],
                rust: b[i],
            });
        }
    }
    None
}

/// Settles one step: compares the two sides' outcomes and, when they agree,
/// books the C outcome into the summary (event count, known divergences,
/// the log with `keep_log`) and recycles the traces. Returns whether the
/// step changed table memory (a store or a freed page/table), or what
/// differs together with the C outcome for the log.
fn settle(
    summary: &mut Summary,
    opts: RunOptions,
    c: Outcome,
    r: Outcome,
) -> Result<bool, Box<(What, Option<Outcome>)>> {
    if let Some(what) = compare(&c, &r) {
        return Err(Box::new((what, opts.keep_log.then_some(c))));
    }
    summary.events += c.trace.len();
    // Only the hyp map path can show it: stage-2 always locks an entry first.
    if !summary.known.contains(&known::KD1.id) && known::shows_kd1(&c.trace) {
        summary.known.push(known::KD1.id);
    }
    // Owner annotations can only go away through a store or a freed table.
    let changed = c.trace.iter().any(|e| {
        matches!(
            e,
            Event::Store { .. } | Event::PutPage { .. } | Event::FreeUnlinkedTable { .. }
        )
    });
    if opts.keep_log {
        summary.log.push(c);
    } else {
        crate::events::recycle(c.trace);
    }
    crate::events::recycle(r.trace);
    Ok(changed)
}

/// Runs `stream` on both sides; `Err` carries the first finding.
///
/// Known kernel divergences ([`crate::known`]) whose consequences both
/// sides share are noted in [`Summary::known`] instead of being reported.
pub fn run(stream: &OpStream, opts: RunOptions) -> Result<Summary, Box<Divergence>> {
    run_inner(stream, opts, true)
}

/// Like [`run`], but every invariant breach is a finding, including those a
/// known kernel divergence explains.
pub fn run_strict(stream: &OpStream, opts: RunOptions) -> Result<Summary, Box<Divergence>> {
    run_inner(stream, opts, false)
}

fn run_inner(
    stream: &OpStream,
    opts: RunOptions,
    allow_known: bool,
) -> Result<Summary, Box<Divergence>> {
    let mut pair = Pair::new(&stream.config);
    let mut summary = Summary::default();
    let fail = |pair: &Pair, step: Step, what: What, log: &mut Vec<Outcome>, c: Option<Outcome>| {
        let mut log = std::mem::take(log);
        log.extend(c);
        Box::new(Divergence {
            stream: stream.clone(),
            step,
            what,
            tree: pair.c_tree(),
            format: pair.format(),
            log,
        })
    };
    let (c, r) = pair.init();
    if let Err(e) = settle(&mut summary, opts, c, r) {
        let (what, c) = *e;
        return Err(fail(&pair, Step::Init, what, &mut summary.log, c));
    }
    let mut annotations = if opts.owner_invariant {
        pair.c_tree().annotations(pair.c_arena(), pair.format())
    } else {
        Vec::new()
    };
    // No caller uses a table whose init failed (create_unlinked would call
    // through its NULL mm_ops): the ops are not run on either side.
    let initialised = pair.initialised();
    for (i, op) in stream.ops.iter().enumerate() {
        if !initialised {
            summary.ops_skipped += 1;
            continue;
        }
        let (c, r) = pair.step(op);
        if matches!(c.value, Value::Skipped(_)) {
            summary.ops_skipped += 1;
        } else {
            summary.ops_run += 1;
        }
        let memory_changed = match settle(&mut summary, opts, c, r) {
            Ok(changed) => changed,
            Err(e) => {
                let (what, c) = *e;
                return Err(fail(&pair, Step::Op(i), what, &mut summary.log, c));
            }
        };
        if opts.full_memory_each_op {
            if let Some(what) = compare_memory(pair.c_arena(), pair.rust_arena()) {
                return Err(fail(&pair, Step::Op(i), what, &mut summary.log, None));
            }
        }
        if opts.owner_invariant && memory_changed {
            let now = pair.c_tree().annotations(pair.c_arena(), pair.format());
            let range = op.range();
            for &(ia, level, pte) in &annotations {
                let size = pair.format().entry_size(level);
                let inside = range.is_some_and(|(a, s)| {
                    let end = a.saturating_add(s);
                    ia < end && ia.saturating_add(size) > a
                });
                if !inside && now.binary_search(&(ia, level, pte)).is_err() {
                    return Err(fail(
                        &pair,
                        Step::Op(i),
                        What::OwnerLost {
                            ia,
                            level,
                            pte,
                            range,
                        },
                        &mut summary.log,
                        None,
                    ));
                }
            }
            annotations = now;
        }
    }
    if let Some(what) = compare_memory(pair.c_arena(), pair.rust_arena()) {
        return Err(fail(&pair, Step::End, what, &mut summary.log, None));
    }
    let (c, r) = pair.destroy();
    if let Err(e) = settle(&mut summary, opts, c, r) {
        let (what, c) = *e;
        return Err(fail(&pair, Step::Destroy, what, &mut summary.log, c));
    }
    if !pair.c_arena().is_empty() || !pair.rust_arena().is_empty() {
        let (c, rust): (Vec<_>, Vec<_>) = (
            pair.c_arena().live().collect(),
            pair.rust_arena().live().collect(),
        );
        // KD-1 leaks table references; when both sides leak the same pages
        // with the same counts, that is the known kernel behaviour.
        let explained = allow_known && c == rust && summary.known.contains(&known::KD1.id);
        if !explained {
            return Err(fail(
                &pair,
                Step::Destroy,
                What::NotEmpty { c, rust },
                &mut summary.log,
                None,
            ));
        }
    }
    Ok(summary)
}

/// Checks that a stream can run: a valid config and only ops of its stage.
pub fn validate(stream: &OpStream) -> Result<(), InvalidStream> {
    stream.validate().map_err(|e| InvalidStream(e.to_string()))
}
