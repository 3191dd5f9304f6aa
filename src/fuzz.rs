// SPDX-License-Identifier: GPL-2.0-only
//! Entry points of the fuzz targets (thin wrappers live in `fuzz/fuzz_targets/`).
//!
//! Generators: [`crate::opstream::decode`] with a per-target [`Profile`].
//! Oracle: [`crate::executor::run`]. A finding panics with the divergence
//! report, which is what libFuzzer prints and saves a reproducer for.

use crate::executor::{self, RunOptions};
use std::sync::OnceLock;

use crate::opstream::{self, KernelLine, Profile};

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
/// ownership invariant after every op. `KPD_C_ONLY=1` runs the C side alone
/// (contract and architecture oracles, for trees the port does not model);
/// `KPD_NO_ARCH=1` leaves the architecture oracle out (what the other
/// oracles find alone). Both are read once.
pub fn options(target: &str) -> RunOptions {
    let (c_only, no_arch) = switches();
    RunOptions {
        owner_invariant: target == "host_stage2",
        c_only,
        no_arch,
        ..RunOptions::default()
    }
}

/// `KPD_C_ONLY` and `KPD_NO_ARCH`, read once: set and not `0`.
fn switches() -> (bool, bool) {
    static SWITCHES: OnceLock<(bool, bool)> = OnceLock::new();
    *SWITCHES.get_or_init(|| {
        let on = |name: &str| std::env::var(name).is_ok_and(|v| !v.is_empty() && v != "0");
        (on("KPD_C_ONLY"), on("KPD_NO_ARCH"))
    })
}

/// The kernel line every input runs on, when this run is restricted to
/// one: the line of the C-against-C baseline compiled in, or `KPD_LINE`
/// (e.g. `KPD_LINE=7.3`, set by `cargo xtask fuzz --line`).
pub fn line_filter() -> Option<KernelLine> {
    static LINE: OnceLock<Option<KernelLine>> = OnceLock::new();
    *LINE.get_or_init(|| {
        if let Some(base) = crate::c_side::against() {
            return KernelLine::from_name(base.line);
        }
        let v = std::env::var("KPD_LINE").ok()?;
        match KernelLine::from_name(&v) {
            Some(l) => Some(l),
            None => panic!("KPD_LINE={v}: not a kernel line of this build"),
        }
    })
}

/// Runs one fuzz input for `target`. Panics with a divergence report on a finding.
pub fn run(target: &str, data: &[u8]) {
    let Some(profile) = profile(target) else {
        panic!(
            "unknown fuzz target `{target}`; known: {}",
            TARGETS.join(", ")
        );
    };
    let stream = opstream::decode_on(data, profile, line_filter());
    if let Err(d) = executor::run(&stream, options(target)) {
        panic!("\n{d}");
    }
}
