// SPDX-License-Identifier: GPL-2.0-only
//! Random byte strings through every target's generator: both sides must
//! agree on all of them (the differential property itself, on a fixed
//! pseudo-random sample so that CI is deterministic).

mod common;
use common::{committed_streams, random_bytes};

#[test]
fn random_streams_agree_on_every_target() {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut findings = Vec::new();
    for i in 0..120 {
        let data = random_bytes(&mut x, (i * 7) % 300);
        for t in kvm_pgtable_diff::fuzz::TARGETS {
            let p = kvm_pgtable_diff::fuzz::profile(t).unwrap();
            let s = kvm_pgtable_diff::opstream::decode(&data, p);
            if let Err(d) = kvm_pgtable_diff::executor::run(&s, kvm_pgtable_diff::fuzz::options(t))
            {
                findings.push(format!("{t} input {i}: {d}"));
            }
        }
    }
    assert!(findings.is_empty(), "{}", findings.join("\n"));
}

/// The host stage-2 owner rule is followed on the architecture oracle's
/// shadow (annotations noted where they leave or join the live tree, looked
/// up from the root at the check); after every op that changed memory its
/// finding is checked here against a full read of the tree's annotations
/// before and after (the executor panics on a difference), over the
/// committed host_stage2 corpus, the host scenarios and random streams.
#[test]
fn owner_annotations_from_stores_match_a_full_read() {
    use kvm_pgtable_diff::executor::{self, RunOptions};
    use kvm_pgtable_diff::opstream::{self, Profile};
    let opts = RunOptions {
        owner_invariant: true,
        owner_cross_check: true,
        ..RunOptions::default()
    };
    let mut streams = committed_streams("host_stage2");
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    for i in 0..150 {
        let data = random_bytes(&mut x, (i * 13) % 300);
        streams.push(opstream::decode(&data, Profile::HostStage2));
    }
    assert!(streams.len() > 150);
    for s in &streams {
        if let Err(d) = executor::run(s, opts) {
            panic!("{}", d.headline());
        }
    }
}

const MANY_STALE: &str = "kvm-pgtable-diff-stream v1
config kernel=LINE stage=stage2 context=kernel granule=4k ia_bits=39 start_level=auto flags=none features=fwb parange=3 vmid16=no arena_pages=1024 fail_after=none
force_pte none
s2_map addr=0x2eaeaea000 size=0x800000 phys=0x2eaeae8000 prot=RW mc=64 flags=0
s2_wrprotect addr=0x2eaeaea000 size=0x800000
s2_map addr=0x2eaeaea000 size=0x800000 phys=0x2eaeae8000 prot=RWX mc=64 flags=0
s2_unmap addr=0x2eaeaea000 size=0x400000
s2_map addr=0x2eaeaea000 size=0x800000 phys=0x2eaeae8000 prot=R mc=64 flags=0
";

/// The architecture oracle looks up the stale entries a new descriptor may
/// conflict with through an index by (level, aligned address); every look-up
/// is checked here against a scan of the whole list (the executor panics on
/// a difference), over random streams of each target and a stream with
/// thousands of stale pages (the committed inputs are cross-checked, on both
/// sides, by tests/arch.rs).
#[test]
fn arch_index_look_ups_match_a_scan() {
    use kvm_pgtable_diff::executor::{self, RunOptions};
    use kvm_pgtable_diff::fuzz;
    use kvm_pgtable_diff::opstream;
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut runs = 0;
    for &t in fuzz::TARGETS {
        let profile = fuzz::profile(t).unwrap();
        let opts = RunOptions {
            arch_cross_check: true,
            ..fuzz::options(t)
        };
        let mut streams = Vec::new();
        if t == "stage2" {
            // Thousands of stale pages at once (KVM's wrprotect leaves the
            // flush to its caller): the index is used for every store after
            // the first 32.
            for line in ["6.12", "7.3"] {
                streams.push(opstream::parse(&MANY_STALE.replace("LINE", line)).unwrap());
            }
        }
        for i in 0..40 {
            let data = random_bytes(&mut x, (i * 29) % 600);
            streams.push(opstream::decode(&data, profile));
        }
        for s in &streams {
            // Findings are other tests' business; a panic is this one's.
            let _ = executor::run(s, opts);
            runs += 1;
        }
    }
    assert!(runs > 200, "{runs} runs");
}
