// SPDX-License-Identifier: GPL-2.0-only
//! The oracles: what decides that a run found something.
//!
//! - [`diff`]: the two sides agree (return values, outputs, event traces,
//!   memory and refcounts). Blind to every bug both sides share.
//! - [`contract`]: each side keeps the kernel's documented contracts (the
//!   mm_ops refcount contract, owner annotations outside an op's range
//!   survive, everything is freed at destroy), whatever the other side does.
//!   The owner rule is followed on [`arch`]'s shadow, in its pass over each
//!   trace (`arch::Checker::owner_lost`), but reported as this oracle's.
//! - [`arch`]: the Arm architecture (break-before-make, the TLB, descriptor
//!   formats) and the kernel's refcount and TLB contracts, checked on the
//!   reference side's trace and memory; sees the bugs both sides share.
//!
//! A finding ([`crate::results::What`]) names the oracle that spoke
//! ([`crate::results::What::oracle`]).

pub mod arch;
pub mod contract;
pub mod diff;

/// Which oracle reported a finding.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Oracle {
    /// The two sides disagree.
    Diff,
    /// A side broke the kernel's own contract (both may agree on it).
    Contract,
    /// An architecture rule is broken (both sides agree on it).
    Arch,
}

impl Oracle {
    /// How reports name it.
    pub fn name(self) -> &'static str {
        match self {
            Oracle::Diff => "the two sides disagree",
            Oracle::Contract => "a kernel contract is broken",
            Oracle::Arch => "architecture rule broken, both sides agree",
        }
    }
}
