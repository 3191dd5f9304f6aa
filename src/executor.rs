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
//!    even when both sides agree.
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
    /// Record every op's outcome (for determinism checks and `show`).
    pub keep_log: bool,
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

/// Settles one step: compares the two sides' outcomes and, when they agree,
/// books the first outcome into the summary (event count, known
/// divergences, the log with `keep_log`) and recycles the traces. Returns
/// whether the step changed table memory (a store or a freed page/table),
/// or what differs together with the first outcome for the log.
///
/// A step that ends the machine under the stream's caller (an EL2 WARN, a
/// NULL hook, a caller's BUG: [`CallerProfile::is_fatal`]) is compared up
/// to and including that event only: what the harness lets the code do
/// after it no hardware shows. Its return value and memcache are never
/// reached, so they are not compared either; a fatal event on one side
/// only is a trace divergence. When both sides stop, `summary.panic` says
/// where and the run ends there.
fn settle(
    summary: &mut Summary,
    opts: RunOptions,
    profile: &CallerProfile,
    step: Step,
    mut a: Outcome,
    mut b: Outcome,
) -> Result<bool, Box<(What, Option<Outcome>)>> {
    let fatal = profile.cut_at_fatal(&mut a, &mut b);
    if let Some(what) = diff::compare(&a, &b).or_else(|| contract::misuse(&a.trace)) {
        return Err(Box::new((what, opts.keep_log.then_some(a))));
    }
    summary.panic = fatal.map(|event| profile.panic(step, event));
    summary.events += a.trace.len();
    // Only the hyp map path can show it: stage-2 always locks an entry first.
    if !summary.known.contains(&known::KD1.id) && known::shows_kd1(&a.trace) {
        summary.known.push(known::KD1.id);
    }
    let changed = contract::may_change_memory(&a.trace);
    if opts.keep_log {
        summary.log.push(a);
    } else {
        crate::events::recycle(a.trace);
    }
    crate::events::recycle(b.trace);
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
}

fn run_pair(
    stream: &OpStream,
    opts: RunOptions,
    allow_known: bool,
) -> Result<Summary, Box<Divergence>> {
    let cfg = &stream.config;
    let mut c = CSide::for_stream(cfg);
    match Pairing::for_stream(stream) {
        Pairing::CAgainstRust => {
            let mut r = RustSide::for_stream(cfg);
            run_sides(stream, opts, allow_known, &mut c, &mut r)
        }
        Pairing::CAgainstBaseline => {
            let base = crate::c_side::against().expect("the pairing checked it");
            let mut b = CSide::for_stream_in(cfg, base.name);
            run_sides(stream, opts, allow_known, &mut c, &mut b)
        }
    }
}

/// Runs `stream` on any two sides set up for it and compares them after
/// every step. `a` is the reference: its tree places descriptors in the
/// report and its outcomes fill the log.
pub fn run_sides(
    stream: &OpStream,
    opts: RunOptions,
    allow_known: bool,
    a: &mut dyn Side,
    b: &mut dyn Side,
) -> Result<Summary, Box<Divergence>> {
    let fmt = format_of(stream);
    let mut summary = Summary::default();
    let fail = |a: &dyn Side,
                b: &dyn Side,
                step: Step,
                what: What,
                log: &mut Vec<Outcome>,
                first: Option<Outcome>| {
        let mut log = std::mem::take(log);
        log.extend(first);
        Box::new(Divergence {
            stream: stream.clone(),
            sides: [a.label(), b.label()],
            step,
            what,
            tree: tree_of(a, fmt),
            format: fmt,
            log,
        })
    };
    let profile = CallerProfile::of(&stream.config);
    let (oa, ob) = (a.init(), b.init());
    if let Err(e) = settle(&mut summary, opts, &profile, Step::Init, oa, ob) {
        let (what, first) = *e;
        return Err(fail(a, b, Step::Init, what, &mut summary.log, first));
    }
    if summary.panic.is_some() {
        summary.ops_skipped = stream.ops.len();
        return Ok(summary);
    }
    let mut owners = opts.owner_invariant.then(|| contract::Owners::new(a, fmt));
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
                (a.apply_raced(op, race), b.apply_raced(op, race))
            }
            Err(why) => {
                summary.ops_skipped += 1;
                let o = Outcome::new(Value::Skipped(why), Vec::new());
                (o.clone(), o)
            }
        };
        let memory_changed = match settle(&mut summary, opts, &profile, Step::Op(i), oa, ob) {
            Ok(changed) => changed,
            Err(e) => {
                let (what, first) = *e;
                return Err(fail(a, b, Step::Op(i), what, &mut summary.log, first));
            }
        };
        if summary.panic.is_some() {
            // The machine stopped: no later op, no memory comparison, no
            // teardown (none of it would happen).
            summary.ops_skipped += stream.ops.len() - i - 1;
            return Ok(summary);
        }
        if opts.full_memory_each_op {
            if let Some(what) = diff::compare_memory(a, b) {
                return Err(fail(a, b, Step::Op(i), what, &mut summary.log, None));
            }
        }
        if let Some(owners) = owners.as_mut().filter(|_| memory_changed) {
            if let Some(what) = owners.check(a, op) {
                return Err(fail(a, b, Step::Op(i), what, &mut summary.log, None));
            }
        }
    }
    if let Some(what) = diff::compare_memory(a, b) {
        return Err(fail(a, b, Step::End, what, &mut summary.log, None));
    }
    let (oa, ob) = (a.destroy(), b.destroy());
    if let Err(e) = settle(&mut summary, opts, &profile, Step::Destroy, oa, ob) {
        let (what, first) = *e;
        return Err(fail(a, b, Step::Destroy, what, &mut summary.log, first));
    }
    if summary.panic.is_some() {
        return Ok(summary);
    }
    if let Some(what) = contract::leftovers(a, b) {
        // KD-1 leaks table references; when both sides leak the same pages
        // with the same counts, that is the known kernel behaviour.
        let same = matches!(&what, What::NotEmpty { a, b } if a == b);
        let explained = allow_known && same && summary.known.contains(&known::KD1.id);
        if !explained {
            return Err(fail(a, b, Step::Destroy, what, &mut summary.log, None));
        }
    }
    Ok(summary)
}

/// Whether `op`, with its race, may run under `cfg`: the op's own
/// precondition, then what the race's agent could do during it.
fn precondition(
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
    let mut events = side.init().trace.len();
    if side.root().is_some() {
        for (i, op) in stream.ops.iter().enumerate() {
            let race = stream.race(i);
            if precondition(op, race, &stream.config).is_ok() {
                events += side.apply_raced(op, race).trace.len();
            }
        }
    }
    events + side.destroy().trace.len()
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
