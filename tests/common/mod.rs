// SPDX-License-Identifier: GPL-2.0-only
//! Helpers shared by the integration tests that read the repository's inputs.

#![allow(dead_code)]

use std::fs;
use std::path::{Path, PathBuf};

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The files of `dir` (not its subdirectories), sorted; only those ending in
/// `.ext` when given. A missing directory has none.
pub fn files(dir: &Path, ext: Option<&str>) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .filter(|p| ext.is_none_or(|x| p.extension().is_some_and(|e| e == x)))
        .collect();
    v.sort();
    v
}

/// `len` pseudo-random bytes from the xorshift64 state `x` (advanced): fixed
/// samples of fuzz inputs, the same on every run.
pub fn random_bytes(x: &mut u64, len: usize) -> Vec<u8> {
    (0..len)
        .map(|_| {
            *x ^= *x << 13;
            *x ^= *x >> 7;
            *x ^= *x << 17;
            *x as u8
        })
        .collect()
}

/// Every committed input of fuzz target `target` as a stream: its corpus
/// (decoded with the target's profile) and its text scenarios.
pub fn committed_streams(target: &str) -> Vec<kvm_pgtable_diff::opstream::OpStream> {
    use kvm_pgtable_diff::opstream;
    let profile = kvm_pgtable_diff::fuzz::profile(target).unwrap();
    let mut out = Vec::new();
    for dir in ["fuzz/corpus", "fuzz/scenarios"] {
        for p in files(&root().join(dir).join(target), None) {
            let bytes = fs::read(&p).unwrap();
            out.push(if opstream::is_text(&bytes) {
                opstream::parse(std::str::from_utf8(&bytes).unwrap()).unwrap()
            } else {
                opstream::decode(&bytes, profile)
            });
        }
    }
    out
}
