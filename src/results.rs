// SPDX-License-Identifier: GPL-2.0-only
//! What running a stream produces: each side's outcome of one step, the
//! summary of a clean run, and the finding (a [`Divergence`]) otherwise.
//!
//! Pure data: the executor fills these in, `report` prints them.

use crate::events::{Event, Marks, Misuse, Trace, Visit};
use crate::opstream::OpStream;
use crate::tree::{Format, TreeIndex};

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
    /// Stage-2 init: the VTCR the side's own `kvm_get_vtcr()` computed
    /// (with the stream's start-level override applied) and the return
    /// value of `__kvm_pgtable_stage2_init`.
    Stage2Init {
        vtcr: u64,
        ret: i32,
    },
    /// Not run on any side: the input breaks a precondition the kernel's
    /// callers guarantee (see [`crate::opstream::Op::precondition`]).
    Skipped(&'static str),
}

/// One side's result of one step.
#[derive(Clone, Debug)]
pub struct Outcome {
    pub value: Value,
    /// Pages left in the memcache the op was given, if any.
    pub memcache_left: Option<u32>,
    pub trace: Trace,
    /// The marks of `trace`'s events, when the side noted them as it
    /// recorded them (None: whoever needs them reads the trace).
    pub marks: Option<Marks>,
}

/// The marks say nothing the trace does not: outcomes are equal when their
/// value, memcache and trace are.
impl PartialEq for Outcome {
    fn eq(&self, other: &Outcome) -> bool {
        self.value == other.value
            && self.memcache_left == other.memcache_left
            && self.trace == other.trace
    }
}

impl Eq for Outcome {}

impl Outcome {
    /// Hands the outcome's trace, and a walk's visit log, back for reuse
    /// once they have been compared (`events::recycle`,
    /// `events::recycle_visits`).
    pub fn recycle(self) {
        crate::events::recycle(self.trace);
        if let Value::Walk { visits, .. } = self.value {
            crate::events::recycle_visits(visits);
        }
    }

    /// An outcome with no memcache and the given trace.
    pub fn new(value: Value, trace: Trace) -> Outcome {
        Outcome {
            value,
            memcache_left: None,
            trace,
            marks: None,
        }
    }

    /// An outcome with no memcache, the given trace and its marks.
    pub fn marked(value: Value, (trace, marks): (Trace, Marks)) -> Outcome {
        Outcome {
            marks: Some(marks),
            ..Outcome::new(value, trace)
        }
    }

    /// Appends `trace`, whose marks are `marks` (None: not noted).
    pub fn append(&mut self, (trace, marks): (Trace, Option<Marks>)) {
        let len = self.trace.len();
        crate::events::append(&mut self.trace, trace);
        self.marks = self.marks.zip(marks).map(|(a, b)| a.join(len, b));
    }
}

/// What a successful run produced.
#[derive(Clone, Debug, Default)]
pub struct Summary {
    pub ops_run: usize,
    pub ops_skipped: usize,
    pub events: usize,
    /// Per step (init first, destroy last) the first side's outcome, with
    /// `RunOptions::keep_log`.
    pub log: Vec<Outcome>,
    /// Known kernel divergences observed (ids from [`crate::known`]).
    pub known: Vec<&'static str>,
    /// Where the run stopped because the real machine would have (an EL2
    /// WARN, a call through a NULL hook, a caller's BUG): both sides agreed
    /// up to and including that event, and nothing after it was compared.
    pub panic: Option<crate::caller::Panic>,
}

/// Where in the run a divergence showed up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Creating the tables.
    Init,
    /// Op number `n` of the stream.
    Op(usize),
    /// The end-of-stream memory and refcount comparison.
    End,
    /// Tearing down (unlinked tables, then destroy).
    Destroy,
}

/// What was found. `a` is the first side (the C side in a C-against-Rust
/// run), `b` the second.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum What {
    /// Return values or outputs differ.
    Value { a: Value, b: Value },
    /// Different numbers of pages left in the memcache.
    MemcacheLeft { a: Option<u32>, b: Option<u32> },
    /// The side-effect traces differ.
    Trace { a: Vec<Event>, b: Vec<Event> },
    /// Different sets of live pages (pa, refcount).
    LivePages {
        a: Vec<(u64, u32)>,
        b: Vec<(u64, u32)>,
    },
    /// A descriptor differs.
    Memory { pa: u64, a: u64, b: u64 },
    /// Pages still allocated after destroy.
    NotEmpty {
        a: Vec<(u64, u32)>,
        b: Vec<(u64, u32)>,
    },
    /// An owner annotation outside the op's range was destroyed (both sides
    /// agree, so this is a finding about the shared algorithm).
    OwnerLost {
        ia: u64,
        level: i8,
        pte: u64,
        range: Option<(u64, u64)>,
    },
    /// A breach of the mm_ops contract seen on both sides alike.
    Misuse { event: Misuse },
    /// An architecture rule broken by the reference side (both sides agree,
    /// or there is one side only): see [`crate::oracle::arch`].
    Arch(Box<crate::oracle::arch::Breach>),
}

impl What {
    /// The oracle that reports this finding.
    pub fn oracle(&self) -> crate::oracle::Oracle {
        use crate::oracle::Oracle;
        match self {
            What::Value { .. }
            | What::MemcacheLeft { .. }
            | What::Trace { .. }
            | What::LivePages { .. }
            | What::Memory { .. } => Oracle::Diff,
            What::NotEmpty { .. } | What::OwnerLost { .. } | What::Misuse { .. } => {
                Oracle::Contract
            }
            What::Arch(_) => Oracle::Arch,
        }
    }
}

/// A finding, with everything needed to print its report.
#[derive(Clone, Debug)]
pub struct Divergence {
    pub stream: OpStream,
    /// The names of the two sides, as the report's columns are headed (the
    /// second is empty when one side ran alone: `Pairing::COnly`).
    pub sides: [String; 2],
    pub step: Step,
    pub what: What,
    /// The first side's table tree after the step, to place descriptors.
    pub tree: TreeIndex,
    pub format: Format,
    /// With `RunOptions::keep_log`: the first side's outcome of every step run.
    pub log: Vec<Outcome>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::CallerBug;

    /// An outcome built from pieces has the marks of its whole trace: an
    /// alarm in a later piece is placed after the earlier pieces' events,
    /// and a piece whose marks were not noted leaves the whole unnoted.
    #[test]
    fn appended_pieces_keep_the_marks_of_the_whole_trace() {
        let bug = Event::CallerBug(CallerBug::MemcacheAllocFailed);
        let put = Event::PutPage {
            page: 0x4000,
            count: 0,
        };
        let piece = |t: &[Event]| (t.to_vec(), Some(Marks::of(t)));
        let mut o = Outcome::marked(
            Value::Unit,
            (vec![Event::Isb, Event::Isb], Marks::default()),
        );
        o.append(piece(&[Event::Isb]));
        o.append(piece(&[put, bug, put]));
        assert_eq!(o.trace.len(), 6);
        let want = Marks {
            changes_memory: true,
            alarm: Some(crate::events::Alarm {
                at: 4,
                after_change: true,
            }),
        };
        assert_eq!(o.marks, Some(want));
        o.append((vec![Event::Isb], None));
        assert_eq!(o.marks, None);
    }
}
