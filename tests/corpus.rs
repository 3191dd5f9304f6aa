// SPDX-License-Identifier: GPL-2.0-only
//! The committed seed corpus (`fuzz/corpus/<target>/`) against its source of
//! truth, the readable scenarios (`fuzz/scenarios/<target>/*.txt`):
//!
//! (a) every scenario encodes to exactly one committed corpus file (named by
//!     the SHA-1 of its bytes, as libFuzzer names corpus files) and every
//!     corpus file comes from a scenario; the target's profile decodes it
//!     back to the scenario;
//! (b) every corpus file, decoded with its target's profile, runs with no
//!     finding under that target's run options;
//! (c) replaying the whole corpus twice gives identical logs (values,
//!     memcache pages left, event traces).

mod common;
use common::{files, root};

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use kvm_pgtable_diff::executor::{self, Outcome, RunOptions};
use kvm_pgtable_diff::fuzz;
use kvm_pgtable_diff::opstream::{self, OpStream};

fn name(p: &Path) -> String {
    p.file_name().unwrap().to_string_lossy().into_owned()
}

/// SHA-1, hex: the corpus file name of an input (libFuzzer's naming).
fn sha1_hex(data: &[u8]) -> String {
    use sha1::{Digest, Sha1};
    Sha1::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Every corpus file of every target: (target, path, bytes).
fn corpus() -> Vec<(&'static str, PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    for &t in fuzz::TARGETS {
        for p in files(&root().join("fuzz/corpus").join(t), None) {
            let bytes = fs::read(&p).unwrap();
            out.push((t, p, bytes));
        }
    }
    out
}

#[test]
fn corpus_is_generated_from_the_scenarios() {
    let mut problems = Vec::new();
    let mut scenarios = 0;
    for &t in fuzz::TARGETS {
        let profile = fuzz::profile(t).unwrap();
        let sdir = root().join("fuzz/scenarios").join(t);
        let list = files(&sdir, Some("txt"));
        if list.is_empty() {
            problems.push(format!("fuzz/scenarios/{t}/ has no scenarios"));
        }
        let mut want: BTreeMap<String, (Vec<u8>, String)> = BTreeMap::new();
        for s in list {
            scenarios += 1;
            let text = fs::read_to_string(&s).unwrap();
            if !text.starts_with('#') {
                problems.push(format!(
                    "{t}/{}: must begin with comment lines saying what it exercises",
                    name(&s)
                ));
            }
            let stream: OpStream = match opstream::parse(&text) {
                Ok(s) => s,
                Err(e) => {
                    problems.push(format!("{t}/{}: {e}", name(&s)));
                    continue;
                }
            };
            let bytes = opstream::encode(&stream);
            // The fuzz target decodes with its own profile: the seed must mean
            // the scenario there, not just under Profile::Any.
            if opstream::decode(&bytes, profile) != stream {
                problems.push(format!(
                    "{t}/{}: the {t} profile decodes it to a different stream \
                     (it uses ops or config values the {t} target does not generate); \
                     move it to a fitting target",
                    name(&s)
                ));
            }
            if let Some((_, other)) = want.insert(sha1_hex(&bytes), (bytes, name(&s))) {
                problems.push(format!("{t}/{}: same input as {other}", name(&s)));
            }
        }
        let cdir = root().join("fuzz/corpus").join(t);
        let have: BTreeMap<String, Vec<u8>> = files(&cdir, None)
            .into_iter()
            .map(|p| (name(&p), fs::read(&p).unwrap()))
            .collect();
        for (h, (bytes, s)) in &want {
            match have.get(h) {
                None => problems.push(format!("{t}/{s}: fuzz/corpus/{t}/{h} is missing")),
                Some(b) if b != bytes => {
                    problems.push(format!("fuzz/corpus/{t}/{h}: content differs from {s}"))
                }
                Some(_) => {}
            }
        }
        for h in have.keys().filter(|h| !want.contains_key(*h)) {
            problems.push(format!(
                "fuzz/corpus/{t}/{h}: stale (no scenario encodes to it)"
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "the committed corpus is out of date with fuzz/scenarios/; run `cargo xtask corpus` \
         (and commit fuzz/corpus/):\n  {}",
        problems.join("\n  ")
    );
    assert!(scenarios > 0);
    println!("corpus: {scenarios} scenarios match their committed corpus files");
}

#[test]
fn corpus_runs_without_findings() {
    let corpus = corpus();
    assert!(
        !corpus.is_empty(),
        "fuzz/corpus/ is empty; run `cargo xtask corpus`"
    );
    let mut findings = Vec::new();
    let (mut ops, mut skipped) = (0, 0);
    for (t, p, bytes) in &corpus {
        let stream = opstream::decode(bytes, fuzz::profile(t).unwrap());
        match executor::run(&stream, fuzz::options(t)) {
            Ok(s) => {
                ops += s.ops_run;
                skipped += s.ops_skipped;
            }
            Err(d) => findings.push(format!("{t}/{}: {}", name(p), d.headline())),
        }
    }
    assert!(
        findings.is_empty(),
        "corpus inputs with a finding (replay one with `cargo run --release -- show <file>`):\n  {}",
        findings.join("\n  ")
    );
    println!(
        "corpus: {} inputs replayed, {ops} ops run, {skipped} skipped, no finding",
        corpus.len()
    );
}

/// One replay of the whole corpus with `keep_log`: per input its summary
/// counts and its full log.
/// Per input: name, ops run, ops skipped, events, known divergences, log.
type Replay = (String, usize, usize, usize, Vec<&'static str>, Vec<Outcome>);

fn replay() -> Vec<Replay> {
    corpus()
        .into_iter()
        .map(|(t, p, bytes)| {
            let stream = opstream::decode(&bytes, fuzz::profile(t).unwrap());
            let opts = RunOptions {
                keep_log: true,
                ..fuzz::options(t)
            };
            let s = executor::run(&stream, opts)
                .unwrap_or_else(|d| panic!("{t}/{}: {}", name(&p), d.headline()));
            (
                format!("{t}/{}", name(&p)),
                s.ops_run,
                s.ops_skipped,
                s.events,
                s.known,
                s.log,
            )
        })
        .collect()
}

#[test]
fn corpus_replay_is_deterministic() {
    let a = replay();
    let b = replay();
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(x.0, y.0);
        // Init, every op, destroy.
        assert!(!x.5.is_empty(), "{}: empty log with keep_log", x.0);
        assert_eq!(
            (x.1, x.2, x.3, &x.4),
            (y.1, y.2, y.3, &y.4),
            "{}: counts differ between two replays",
            x.0
        );
        for (i, (o1, o2)) in x.5.iter().zip(&y.5).enumerate() {
            assert_eq!(o1, o2, "{}: log entry {i} differs between two replays", x.0);
        }
        assert_eq!(x.5.len(), y.5.len(), "{}: log lengths differ", x.0);
    }
    println!("corpus: {} inputs replayed twice, identical logs", a.len());
}
