// SPDX-License-Identifier: GPL-2.0-only
//! The differential oracle: runs one [`OpStream`] on two [`Side`]s and
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
//! 5. an mm_ops contract breach ([`Misuse`](crate::events::Misuse)) on either side is a finding
//!    even when both sides agree;
//! 6. the architecture oracle ([`crate::oracle::arch`]) checks the reference side `a` after
//!    every op and at destroy: break-before-make, the TLB model, descriptor formats,
//!    refcounts. Checking `a` alone suffices: by then the diff has found `b`'s outcome equal
//!    to `a`'s event for event (and its memory is compared at the end), so `b` would give
//!    the same verdict.
//!
//! Nothing is normalised here except what [`crate::events::WarnLoc`]'s
//! equality does (WARN source locations).
//!
//! Some inputs are outside the API's contract in a way that makes the C code
//! undefined behaviour (a shift by 64 or more); those ops are not run on
//! either side and are reported as skipped. [`crate::opstream::Op::precondition`]
//! is the only place that decides this.

use crate::c_side::CSide;
use crate::caller::CallerProfile;
use crate::known;
use crate::opstream::OpStream;
use crate::oracle::arch::{self, ArchStep};
use crate::oracle::{contract, diff};
pub use crate::results::{Divergence, Outcome, Step, Summary, Value, What};
use crate::rust_side::RustSide;
use crate::side::Side;
use crate::tree::Format;

/// Knobs of a run.
#[derive(Clone, Copy, Debug, Default)]
pub struct RunOptions {
    /// Compare every live page after every op, not only at the end.
    pub full_memory_each_op: bool,
    /// Check that no owner annotation outside an op's range is destroyed.
    pub owner_invariant: bool,
    /// With `owner_invariant`: check each update of the annotation set from
    /// an op's stores against a full read of the tree (panics on a
    /// difference; for tests).
    pub owner_cross_check: bool,
    /// Check every break-before-make look-up of the architecture oracle's
    /// stale-entry index against a scan of every entry (panics on a
    /// difference; for tests).
    pub arch_cross_check: bool,
    /// Record every op's outcome (for determinism checks and `show`).
    pub keep_log: bool,
    /// Run the C side alone ([`Pairing::COnly`]): the contract and
    /// architecture oracles only (`--c-only`, `KPD_C_ONLY=1`).
    pub c_only: bool,
    /// Report no architecture finding (the oracle still recognises known
    /// kernel divergences): what the differential and contract oracles find
    /// alone (`KPD_NO_ARCH=1`, `cargo xtask mutants --no-arch`).
    pub no_arch: bool,
}

/// How descriptors of a stream's tables are read.
pub fn format_of(stream: &OpStream) -> Format {
    let c = &stream.config;
    Format {
        stage: c.stage,
        granule: c.granule,
        lpa2: c.features.lpa2,
        v7: c.kernel.is_v7(),
    }
}

pub use crate::oracle::contract::tree_of;

/// The architecture oracle's view of one step: its checker, the side it
/// follows and the step.
type ArchCheck<'a> = Option<(&'a mut arch::Checker, &'a dyn Side, ArchStep<'a>)>;

/// Settles one step: compares the two sides' outcomes (`b` is None when
/// `a` runs alone), runs the contract and architecture oracles on `a` and,
/// when nothing is found, books the first outcome into the summary (event
/// count, known divergences, the log with `keep_log`) and recycles the
/// traces. `b_is_a`: `b` compared its events with `a`'s as it recorded
/// them and they were the same ([`Side::compare_next`]), so `b` holds no
/// trace. Returns whether the step changed table memory (a store or a
/// freed page/table), or what was found together with the first outcome
/// for the log.
///
/// A step that ends the machine under the stream's caller (an EL2 WARN, a
/// NULL hook, a caller's BUG: [`CallerProfile::is_fatal`]) is compared up
/// to and including that event only: what the harness lets the code do
/// after it no hardware shows. Its return value and memcache are never
/// reached, so they are not compared either; a fatal event on one side
/// only is a trace divergence. When both sides stop, `summary.panic` says
/// where and the run ends there.
#[allow(clippy::too_many_arguments)]
fn settle(
    summary: &mut Summary,
    opts: RunOptions,
    allow_known: bool,
    profile: &CallerProfile,
    step: Step,
    mut a: Outcome,
    (mut b, b_is_a): (Option<Outcome>, bool),
    check: ArchCheck<'_>,
) -> Result<bool, Box<(What, Option<Outcome>)>> {
    let cut = profile.cut_at_fatal(&mut a, b.as_mut(), b_is_a);
    let fatal = cut.fatal;
    let found = b
        .as_ref()
        .and_then(|b| match cut.same_trace {
            true => diff::compare_returns(&a, b),
            false => diff::compare(&a, b),
        })
        .or_else(|| cut.misuse.map(|event| What::Misuse { event }))
        .or_else(|| {
            // When the machine stopped inside the op, its stores up to the
            // fatal event are judged, its end-of-op rules are not.
            let (checker, side, step) = check?;
            let ended = fatal.is_some();
            checker
                .check(side, step, &a, ended, allow_known, &mut summary.known)
                .map(|breach| What::Arch(Box::new(breach)))
        });
    if let Some(what) = found {
        return Err(Box::new((what, opts.keep_log.then_some(a))));
    }
    summary.panic = fatal.map(|event| profile.panic(step, event));
    summary.events += a.trace.len();
    let changed = cut.changes_memory;
    if opts.keep_log {
        summary.log.push(a);
    } else {
        a.recycle();
    }
    if let Some(b) = b {
        b.recycle();
    }
    Ok(changed)
}

/// Runs `stream` on the kernel's pgtable.c and on rust-pgtable; `Err`
/// carries the first finding.
///
/// Known kernel divergences ([`crate::known`]) whose consequences both
/// sides share are noted in [`Summary::known`] instead of being reported.
pub fn run(stream: &OpStream, opts: RunOptions) -> Result<Summary, Box<Divergence>> {
    run_pair(stream, opts, true)
}

/// Like [`run`], but every invariant breach is a finding, including those a
/// known kernel divergence explains.
pub fn run_strict(stream: &OpStream, opts: RunOptions) -> Result<Summary, Box<Divergence>> {
    run_pair(stream, opts, false)
}

/// Which two implementations a run compares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pairing {
    /// The kernel's pgtable.c of the stream's line against rust-pgtable
    /// (the product).
    CAgainstRust,
    /// The tree under test (`LINUX_SRC`) against the baseline tree of the
    /// same line (`KPD_AGAINST`): what a kernel patch changed. Needs no Rust
    /// model, so it also works for trees the port does not model yet.
    CAgainstBaseline,
    /// The C side alone, checked by the contract and architecture oracles
    /// ([`RunOptions::c_only`]): for kernel trees the port does not model
    /// yet, and for a baseline of its own.
    COnly,
}

impl Pairing {
    /// What this binary compares for `stream`: the C-against-C diff when it
    /// was built with a baseline of the stream's line, else C against Rust.
    pub fn for_stream(stream: &OpStream) -> Pairing {
        match crate::c_side::against() {
            Some(base) if base.line == stream.config.kernel.name() => Pairing::CAgainstBaseline,
            _ => Pairing::CAgainstRust,
        }
    }

    /// What a run with `opts` compares for `stream`.
    pub fn for_run(stream: &OpStream, opts: RunOptions) -> Pairing {
        if opts.c_only {
            Pairing::COnly
        } else {
            Pairing::for_stream(stream)
        }
    }
}

fn run_pair(
    stream: &OpStream,
    opts: RunOptions,
    allow_known: bool,
) -> Result<Summary, Box<Divergence>> {
    let cfg = &stream.config;
    let mut c = CSide::for_stream(cfg);
    match Pairing::for_run(stream, opts) {
        Pairing::CAgainstRust => {
            let mut r = RustSide::for_stream(cfg);
            run_sides(stream, opts, allow_known, &mut c, Some(&mut r))
        }
        Pairing::CAgainstBaseline => {
            let base = crate::c_side::against().expect("the pairing checked it");
            let mut b = CSide::for_stream_in(cfg, base.name);
            run_sides(stream, opts, allow_known, &mut c, Some(&mut b))
        }
        Pairing::COnly => run_sides(stream, opts, allow_known, &mut c, None),
    }
}

/// Runs `stream` on any two sides set up for it and compares them after
/// every step (or, with `b` None, runs `a` alone: [`Pairing::COnly`]). `a`
/// is the reference: its tree places descriptors in the report, its
/// outcomes fill the log, and the contract and architecture oracles check
/// it.
pub fn run_sides(
    stream: &OpStream,
    opts: RunOptions,
    allow_known: bool,
    a: &mut dyn Side,
    mut b: Option<&mut dyn Side>,
) -> Result<Summary, Box<Divergence>> {
    let fmt = format_of(stream);
    let mut summary = Summary::default();
    let sides = [
        a.label(),
        b.as_deref().map(|b| b.label()).unwrap_or_default(),
    ];
    let fail =
        |a: &dyn Side, step: Step, what: What, log: &mut Vec<Outcome>, first: Option<Outcome>| {
            let mut log = std::mem::take(log);
            log.extend(first);
            Box::new(Divergence {
                stream: stream.clone(),
                sides: sides.clone(),
                step,
                what,
                tree: tree_of(a, fmt),
                format: fmt,
                log,
            })
        };
    let (oa, ob) = (a.init(), b.as_mut().map(|b| b.init()));
    let profile = CallerProfile::of(&stream.config);
    if let Err(e) = settle(
        &mut summary,
        opts,
        allow_known,
        &profile,
        Step::Init,
        oa,
        (ob, false),
        None,
    ) {
        let (what, first) = *e;
        return Err(fail(a, Step::Init, what, &mut summary.log, first));
    }
    if summary.panic.is_some() {
        summary.ops_skipped = stream.ops.len();
        return Ok(summary);
    }
    let mut owners_read =
        (opts.owner_invariant && opts.owner_cross_check).then(|| contract::OwnersRead::new(a, fmt));
    let mut checker = arch::Checker::new(stream, a);
    if let Some(c) = checker.as_mut() {
        if opts.no_arch {
            c.silence();
        }
        if opts.owner_invariant {
            c.follow_owners();
        }
        if opts.arch_cross_check {
            c.cross_check();
        }
    }
    // No caller uses a table whose init failed (create_unlinked would call
    // through its NULL mm_ops): the ops are not run on either side.
    let initialised = a.root().is_some();
    for (i, op) in stream.ops.iter().enumerate() {
        if !initialised {
            summary.ops_skipped += 1;
            continue;
        }
        let race = stream.race(i);
        let (oa, ob) = match precondition(op, race, &stream.config) {
            Ok(()) => {
                summary.ops_run += 1;
                let mut oa = a.apply_raced(op, race);
                let ob = second(&mut oa, b.as_deref_mut(), |b| b.apply_raced(op, race));
                (oa, ob)
            }
            Err(why) => {
                summary.ops_skipped += 1;
                let o = Outcome::new(Value::Skipped(why), Vec::new());
                (o.clone(), (b.is_some().then_some(o), false))
            }
        };
        let check = checker.as_mut().map(|c| (c, &*a, ArchStep::Op(op)));
        let step = Step::Op(i);
        let memory_changed = match settle(
            &mut summary,
            opts,
            allow_known,
            &profile,
            step,
            oa,
            ob,
            check,
        ) {
            Ok(changed) => changed,
            Err(e) => {
                let (what, first) = *e;
                return Err(fail(a, Step::Op(i), what, &mut summary.log, first));
            }
        };
        if summary.panic.is_some() {
            // The machine stopped: no later op, no memory comparison, no
            // teardown (none of it would happen).
            summary.ops_skipped += stream.ops.len() - i - 1;
            return Ok(summary);
        }
        if opts.full_memory_each_op {
            if let Some(what) = b.as_deref().and_then(|b| diff::compare_memory(a, b)) {
                return Err(fail(a, Step::Op(i), what, &mut summary.log, None));
            }
        }
        if let Some(c) = checker
            .as_mut()
            .filter(|_| opts.owner_invariant && memory_changed)
        {
            let lost = c.owner_lost(op);
            if let Some(read) = owners_read.as_mut() {
                assert_eq!(lost, read.lost(a, op), "owner rule followed through {op:?}");
            }
            if let Some(what) = lost {
                return Err(fail(a, Step::Op(i), what, &mut summary.log, None));
            }
        }
    }
    if let Some(what) = b.as_deref().and_then(|b| diff::compare_memory(a, b)) {
        return Err(fail(a, Step::End, what, &mut summary.log, None));
    }
    let mut oa = a.destroy();
    let ob = second(&mut oa, b.as_deref_mut(), |b| b.destroy());
    let check = checker.as_mut().map(|c| (c, &*a, ArchStep::Destroy));
    let step = Step::Destroy;
    if let Err(e) = settle(
        &mut summary,
        opts,
        allow_known,
        &profile,
        step,
        oa,
        ob,
        check,
    ) {
        let (what, first) = *e;
        return Err(fail(a, Step::Destroy, what, &mut summary.log, first));
    }
    if summary.panic.is_some() {
        return Ok(summary);
    }
    if let Some(what) = contract::leftovers(a, b.as_deref().unwrap_or(a)) {
        // A known divergence may leak table references; when both sides
        // leak the same pages with the same counts, that is the known
        // kernel behaviour.
        let same = matches!(&what, What::NotEmpty { a, b } if a == b);
        let explained = allow_known && same && known::explains_leak(&summary.known);
        if !explained {
            return Err(fail(a, Step::Destroy, what, &mut summary.log, None));
        }
    }
    Ok(summary)
}

/// Runs a step on the second side `b`, if any, after the first side's
/// outcome `a`: a side that can compares its events with `a`'s trace as it
/// records them ([`Side::compare_next`]). Returns `b`'s outcome and whether
/// its trace was `a`'s exactly (it then holds none).
fn second<'s>(
    a: &mut Outcome,
    b: Option<&mut (dyn Side + 's)>,
    step: impl FnOnce(&mut (dyn Side + 's)) -> Outcome,
) -> (Option<Outcome>, bool) {
    let Some(b) = b else {
        return (None, false);
    };
    if let Err(first) = b.compare_next(std::mem::take(&mut a.trace)) {
        a.trace = first;
        return (Some(step(b)), false);
    }
    let mut o = step(b);
    let (first, own) = b.compared();
    a.trace = first;
    let b_is_a = own.is_none();
    if let Some(own) = own {
        crate::events::recycle(std::mem::replace(&mut o.trace, own));
        // Noted during the comparison: not the marks of `own`.
        o.marks = None;
    }
    (Some(o), b_is_a)
}

/// Whether `op`, with its race, may run under `cfg`: the op's own
/// precondition, then what the race's agent could do during it.
pub(crate) fn precondition(
    op: &crate::opstream::Op,
    race: Option<&crate::opstream::Race>,
    cfg: &crate::opstream::Config,
) -> Result<(), &'static str> {
    op.precondition(cfg)?;
    race.map_or(Ok(()), |r| r.precondition(op, cfg))
}

/// Runs `stream` on one side only, with no comparison: the cost of that
/// implementation plus its environment (init, ops, teardown, as in the
/// diff), for `cargo xtask bench`. Returns the number of events recorded.
pub fn run_single(stream: &OpStream, side: &mut dyn Side) -> usize {
    // Traces and visit logs are recycled as `settle` does, so the side
    // alone pays for them what it pays in the diff.
    let len = |o: Outcome| {
        let n = o.trace.len();
        o.recycle();
        n
    };
    let mut events = len(side.init());
    if side.root().is_some() {
        for (i, op) in stream.ops.iter().enumerate() {
            let race = stream.race(i);
            if precondition(op, race, &stream.config).is_ok() {
                events += len(side.apply_raced(op, race));
            }
        }
    }
    events + len(side.destroy())
}

/// Checks that a stream can run: a valid config and only ops of its stage.
pub fn validate(stream: &OpStream) -> Result<(), InvalidStream> {
    stream.validate().map_err(|e| InvalidStream(e.to_string()))
}

/// Why a stream cannot run at all.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvalidStream(pub String);

impl std::fmt::Display for InvalidStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "invalid stream: {}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{fresh_trace, recycle, spare_traces};

    const STREAM: &str = "kvm-pgtable-diff-stream v1
config stage=stage2 context=nvhe granule=4k ia_bits=40 features=fwb arena_pages=64
s2_map addr=0x80000000 size=0x1000 phys=0x100000000 prot=RW mc=3 flags=0
s2_map addr=0x80200000 size=0x1000 phys=0x100003000 prot=RW mc=3 flags=0
s2_unmap addr=0x80000000 size=0x1000
s2_map addr=0x80400000 size=0x1000 phys=0x100006000 prot=RW mc=3 flags=0
s2_unmap addr=0x80200000 size=0x1000
";

    /// A side takes one spare per step and `run_single` recycles one: a run
    /// leaves as many spares as it found. Dropping the vector a side keeps
    /// recording into (by taking it to append it) would empty the pool after
    /// a few ops, and every later op would regrow its trace from empty.
    #[test]
    fn a_run_leaves_the_spare_traces_it_found() {
        let stream = crate::opstream::text::parse(STREAM).expect("the stream parses");
        while spare_traces() > 0 {
            drop(fresh_trace());
        }
        for _ in 0..4 {
            recycle(Vec::with_capacity(256));
        }
        let mut rust = RustSide::for_stream(&stream.config);
        run_single(&stream, &mut rust);
        drop(rust);
        assert_eq!(spare_traces(), 4, "Rust side");
        let mut c = CSide::for_stream(&stream.config);
        run_single(&stream, &mut c);
        drop(c);
        assert_eq!(spare_traces(), 4, "C side");
        run(&stream, RunOptions::default()).expect("the sides agree");
        assert_eq!(spare_traces(), 4, "diff");
    }

    /// The second side compares its events with the first side's as it
    /// records them: a step where the two differ is still reported with
    /// both whole traces. Two sides of one implementation, one with
    /// FEAT_TLBIRANGE and one without, agree on the maps and differ inside
    /// the unmap (a deferred range TLBI after the stores against a TLBI per
    /// entry). The expected finding comes from running each side alone, its
    /// traces recorded whole, and comparing step by step. Two Rust sides
    /// compare as they record; two C sides (a C-against-C run,
    /// `KPD_AGAINST`) record whole traces, compared after the step.
    #[test]
    fn a_trace_compared_as_it_is_recorded_is_reported_whole() {
        fn rust(c: &crate::opstream::Config) -> Box<dyn Side> {
            Box::new(RustSide::for_stream(c))
        }
        fn c(c: &crate::opstream::Config) -> Box<dyn Side> {
            Box::new(CSide::for_stream(c))
        }
        let with_range = crate::opstream::text::parse(&STREAM.replace("fwb", "fwb,tlb_range"))
            .expect("the stream parses");
        let without = crate::opstream::text::parse(STREAM).expect("the stream parses");
        for (side, in_flight) in [(rust as fn(&_) -> _, true), (c, false)] {
            let (mut a, mut b) = (side(&with_range.config), side(&without.config));
            let (ia, ib) = (a.init(), b.init());
            assert_eq!(diff::compare(&ia, &ib), None);
            let expected = with_range.ops.iter().enumerate().find_map(|(i, op)| {
                diff::compare(&a.apply(op), &b.apply(op)).map(|what| (i, what))
            });
            let Some((step, What::Trace { a: ta, b: tb })) = expected else {
                panic!("the sides differ in a trace: {expected:?}")
            };
            assert!(step > 0, "some steps agree first");
            assert!(
                ta.iter().zip(&tb).take_while(|(x, y)| x == y).count() > 0,
                "the traces agree on a prefix"
            );
            // An agreeing step compared as it is recorded leaves the second
            // side no trace of its own.
            let (mut a, mut b) = (side(&with_range.config), side(&without.config));
            let (_, _) = (a.init(), b.init());
            let mut first = a.apply(&with_range.ops[0]);
            let events = first.trace.clone();
            let (o, b_is_a) = second(&mut first, Some(&mut *b), |b| b.apply(&with_range.ops[0]));
            let o = o.expect("a second side");
            assert_eq!((b_is_a, o.trace.is_empty()), (in_flight, in_flight));
            assert_eq!(first.trace, events, "the first trace given back");
            let (mut a, mut b) = (side(&with_range.config), side(&without.config));
            let found = run_sides(
                &with_range,
                RunOptions::default(),
                false,
                &mut *a,
                Some(&mut *b),
            )
            .expect_err("the sides differ");
            assert_eq!(found.step, Step::Op(step));
            assert_eq!(found.what, What::Trace { a: ta, b: tb });
        }
    }
}
