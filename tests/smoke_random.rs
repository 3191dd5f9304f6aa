// SPDX-License-Identifier: GPL-2.0-only
//! Random byte strings through every target's generator: both sides must
//! agree on all of them (the differential property itself, on a fixed
//! pseudo-random sample so that CI is deterministic).

#[test]
fn random_streams_agree_on_every_target() {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut findings = Vec::new();
    for i in 0..120 {
        let len = (i * 7) % 300;
        let data: Vec<u8> = (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
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
