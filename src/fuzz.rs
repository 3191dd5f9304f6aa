//! Entry points of the fuzz targets (thin wrappers live in `fuzz/fuzz_targets/`).

/// Names of all fuzz targets, in the order `cargo xtask fuzz` runs them.
pub const TARGETS: &[&str] = &["hyp", "stage2", "host_stage2", "walk", "unlinked"];

/// Runs one fuzz input for `target`. Panics with a divergence report on a finding.
pub fn run(target: &str, data: &[u8]) {
    let _ = (target, data);
}
