// SPDX-License-Identifier: GPL-2.0-only
//! Entry points of the fuzz targets (thin wrappers live in `fuzz/fuzz_targets/`).
//!
//! Generators: [`crate::opstream::decode`] with a per-target [`Profile`].
//! Oracle: [`crate::executor::run`]. A finding panics with the divergence
//! report, which is what libFuzzer prints and saves a reproducer for.

use crate::executor::{self, RunOptions};
use crate::opstream::{self, Profile};

/// Names of all fuzz targets, in the order `cargo xtask fuzz` runs them.
pub const TARGETS: &[&str] = &["hyp", "stage2", "host_stage2", "walk", "unlinked"];

/// The generator profile of a target.
pub fn profile(target: &str) -> Option<Profile> {
    Some(match target {
        "hyp" => Profile::Hyp,
        "stage2" => Profile::Stage2,
        "host_stage2" => Profile::HostStage2,
        "walk" => Profile::Walk,
        "unlinked" => Profile::Unlinked,
        _ => return None,
    })
}

/// The run options of a target: the host stage-2 target also checks the
/// ownership invariant after every op.
pub fn options(target: &str) -> RunOptions {
    RunOptions {
        owner_invariant: target == "host_stage2",
        ..RunOptions::default()
    }
}

/// Runs one fuzz input for `target`. Panics with a divergence report on a finding.
pub fn run(target: &str, data: &[u8]) {
    let Some(profile) = profile(target) else {
        panic!(
            "unknown fuzz target `{target}`; known: {}",
            TARGETS.join(", ")
        );
    };
    let stream = opstream::decode(data, profile);
    if let Err(d) = executor::run(&stream, options(target)) {
        panic!("\n{d}");
    }
}
