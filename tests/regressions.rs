// SPDX-License-Identifier: GPL-2.0-only
//! Regression scenarios: every `tests/regressions/*.txt` is a minimal,
//! hand-written stream for a bug found earlier (its comment says which). Each
//! must parse and run with no finding. Streams with a pKVM-host force_pte
//! policy also get the host stage-2 owner invariant, like the `host_stage2`
//! fuzz target.

use std::fs;
use std::path::PathBuf;

use kvm_pgtable_diff::executor;
use kvm_pgtable_diff::fuzz;
use kvm_pgtable_diff::opstream::{self, ForcePtePolicy};

#[test]
fn regressions_run_without_findings() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/regressions");
    let mut list: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "txt"))
        .collect();
    list.sort();
    assert!(
        !list.is_empty(),
        "no regression scenarios in {}",
        dir.display()
    );
    let mut problems = Vec::new();
    for p in &list {
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        let text = fs::read_to_string(p).unwrap();
        if !text.starts_with('#') {
            problems.push(format!(
                "{name}: must begin with a comment explaining the bug"
            ));
        }
        let stream = match opstream::parse(&text) {
            Ok(s) => s,
            Err(e) => {
                problems.push(format!("{name}: {e}"));
                continue;
            }
        };
        let target = match stream.config.force_pte {
            ForcePtePolicy::Host { .. } => "host_stage2",
            _ => "stage2",
        };
        if let Err(d) = executor::run(&stream, fuzz::options(target)) {
            problems.push(format!("{name}: {}", d.headline()));
        }
    }
    assert!(
        problems.is_empty(),
        "regressions failed (see `cargo run --release -- show tests/regressions/<file> --trace`):\n  {}",
        problems.join("\n  ")
    );
    println!("regressions: {} scenarios replayed, no finding", list.len());
}
