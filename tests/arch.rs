// SPDX-License-Identifier: GPL-2.0-only
//! The architecture oracle on every committed input (scenarios, seed
//! corpus, regressions, known-divergence reproducers), on both sides:
//!
//! (a) its shadow of the tables, replayed from the event trace alone,
//!     equals the side's memory after every op: the trace reports every
//!     write, so the rules see what the hardware would;
//! (b) the C side alone (`Pairing::COnly`, `--c-only`) runs every input
//!     with no finding other than the known divergences, and recognises
//!     the same ones as the paired run;
//! (c) every known divergence is recognised from its own reproducer.

mod common;
use common::{files, root};

use std::fs;

use kvm_pgtable_diff::c_side::CSide;
use kvm_pgtable_diff::executor::{self, RunOptions};
use kvm_pgtable_diff::fuzz;
use kvm_pgtable_diff::known;
use kvm_pgtable_diff::opstream::{self, OpStream};
use kvm_pgtable_diff::oracle::arch::{ArchStep, Checker};
use kvm_pgtable_diff::rust_side::RustSide;
use kvm_pgtable_diff::side::Side;

/// Every committed input: (name, target whose options it runs with, stream).
fn inputs() -> Vec<(String, &'static str, OpStream)> {
    let mut out = Vec::new();
    for &t in fuzz::TARGETS {
        for p in files(&root().join("fuzz/scenarios").join(t), None) {
            let text = fs::read_to_string(&p).unwrap();
            out.push((p.display().to_string(), t, opstream::parse(&text).unwrap()));
        }
        let profile = fuzz::profile(t).unwrap();
        for p in files(&root().join("fuzz/corpus").join(t), None) {
            let bytes = fs::read(&p).unwrap();
            out.push((
                p.display().to_string(),
                t,
                opstream::decode(&bytes, profile),
            ));
        }
    }
    for dir in ["tests/regressions", "tests/known"] {
        for p in files(&root().join(dir), None) {
            let text = fs::read_to_string(&p).unwrap();
            let s = opstream::parse(&text).unwrap();
            let t = match s.config.force_pte {
                opstream::ForcePtePolicy::Host { .. } => "host_stage2",
                _ => "stage2",
            };
            out.push((p.display().to_string(), t, s));
        }
    }
    assert!(out.len() > 100, "only {} inputs found", out.len());
    out
}

/// Runs `stream` on `side` with a checker following it, and returns the
/// first op after which the shadow differs from memory.
fn shadow_follows(stream: &OpStream, side: &mut dyn Side) -> Result<(), String> {
    side.init();
    let Some(mut checker) = Checker::new(stream, side) else {
        return Ok(());
    };
    checker.cross_check();
    let mut known = Vec::new();
    for (i, op) in stream.ops.iter().enumerate() {
        if op.precondition(&stream.config).is_err() {
            continue;
        }
        let out = side.apply(op);
        if let Some(b) = checker.check(side, ArchStep::Op(op), &out, false, true, &mut known) {
            return Err(format!("op #{i}: {}: {}", b.rule.name(), b.detail));
        }
        checker
            .shadow_matches(side.arena())
            .map_err(|e| format!("after op #{i} ({}): {e}", op.name()))?;
    }
    let out = side.destroy();
    if let Some(b) = checker.check(side, ArchStep::Destroy, &out, false, true, &mut known) {
        return Err(format!("destroy: {}: {}", b.rule.name(), b.detail));
    }
    checker
        .shadow_matches(side.arena())
        .map_err(|e| format!("after destroy: {e}"))
}

#[test]
fn the_shadow_follows_memory_on_both_sides() {
    let mut problems = Vec::new();
    let all = inputs();
    for (name, _, stream) in &all {
        let mut c = CSide::for_stream(&stream.config);
        let mut r = RustSide::for_stream(&stream.config);
        for (label, side) in [("C", &mut c as &mut dyn Side), ("Rust", &mut r)] {
            if let Err(e) = shadow_follows(stream, side) {
                problems.push(format!("{name} ({label}): {e}"));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    println!("shadow followed memory on {} inputs, both sides", all.len());
}

#[test]
fn the_c_side_alone_passes_every_input() {
    let mut problems = Vec::new();
    let all = inputs();
    for (name, target, stream) in &all {
        let paired = executor::run(stream, fuzz::options(target));
        let alone = executor::run(
            stream,
            RunOptions {
                c_only: true,
                ..fuzz::options(target)
            },
        );
        match (paired, alone) {
            (Ok(p), Ok(a)) if p.known == a.known => {}
            (Ok(p), Ok(a)) => problems.push(format!(
                "{name}: known divergences {:?} paired, {:?} alone",
                p.known, a.known
            )),
            (_, Err(d)) => problems.push(format!("{name} (C only): {}", d.headline())),
            (Err(d), _) => problems.push(format!("{name}: {}", d.headline())),
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn every_known_divergence_is_recognised_from_its_reproducer() {
    for k in known::ALL {
        let text = fs::read_to_string(root().join(k.reproducer)).unwrap();
        let stream = opstream::parse(&text).unwrap();
        let summary = executor::run(&stream, RunOptions::default())
            .unwrap_or_else(|d| panic!("{}: {}", k.id, d.headline()));
        assert_eq!(summary.known, vec![k.id], "{}", k.reproducer);
        let d = executor::run_strict(&stream, RunOptions::default()).unwrap_err();
        assert_eq!(
            d.what.oracle(),
            kvm_pgtable_diff::oracle::Oracle::Arch,
            "{}",
            k.id
        );
    }
}
