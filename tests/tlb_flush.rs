// SPDX-License-Identifier: GPL-2.0-only
//! `kvm_tlb_flush_vmid_range`, driven as an op of its own: the helper calls
//! it makes, worked out by hand from the architecture's range TLBI limits.
//! With FEAT_TLBIRANGE one `TLBI RIPAS2E1IS` covers at most
//! `(31 + 1) << (5 * 3 + 1)` = 2^21 pages (the largest NUM and SCALE of the
//! operand), so a range is cut into chunks of that many pages; without it
//! the whole VMID is invalidated once. Both sides must agree and the C
//! side's trace must be exactly this.

use kvm_pgtable_diff::events::Event;
use kvm_pgtable_diff::executor::{self, RunOptions, Value};
use kvm_pgtable_diff::opstream;

const CHUNK: u64 = 1 << 21;

/// The result and events of the single op of a 4K, 48-bit KVM stage-2
/// stream with `features`.
fn run(features: &str, addr: u64, size: u64) -> (Value, Vec<Event>) {
    let text = format!(
        "# test\nkvm-pgtable-diff-stream v1\n\
         config stage=stage2 context=kernel granule=4k ia_bits=48 features={features}\n\
         force_pte none\n\
         tlb_flush_vmid_range addr={addr:#x} size={size:#x}\n"
    );
    let s = opstream::parse(&text).unwrap();
    executor::validate(&s).unwrap();
    let opts = RunOptions {
        keep_log: true,
        ..RunOptions::default()
    };
    let sum = executor::run(&s, opts).unwrap_or_else(|d| panic!("{d}"));
    let op = &sum.log[1];
    let events = op.trace.iter();
    let events = events.filter(|e| !matches!(e, Event::Accesses { .. }));
    (op.value.clone(), events.cloned().collect())
}

fn flush(features: &str, addr: u64, size: u64) -> Vec<Event> {
    let (value, events) = run(features, addr, size);
    assert_eq!(value, Value::Unit);
    events
}

#[test]
fn a_range_is_one_range_invalidation() {
    assert_eq!(
        flush("tlb_range", 0x20_0000, 0x3000),
        [Event::TlbFlushVmidRange {
            start: 0x20_0000,
            pages: 3
        }]
    );
}

#[test]
fn a_range_above_the_operand_limit_is_cut_into_chunks() {
    let size = (CHUNK + 1) << 12;
    assert_eq!(
        flush("tlb_range", 0x4000_0000, size),
        [
            Event::TlbFlushVmidRange {
                start: 0x4000_0000,
                pages: CHUNK
            },
            Event::TlbFlushVmidRange {
                start: 0x4000_0000 + (CHUNK << 12),
                pages: 1
            },
        ]
    );
}

#[test]
fn without_range_tlbi_the_whole_vmid_goes() {
    assert_eq!(flush("none", 0x20_0000, 0x3000), [Event::TlbFlushVmid]);
}

/// KVM passes gfn ranges inside the IPA space: anything else is no input
/// a real caller makes, and is not run on either side.
#[test]
fn ranges_kvm_never_passes_are_not_run() {
    for (addr, size) in [
        (0x20_0000, 0x800),
        (0x20_0800, 0x1000),
        (0xffff_ffff_f000, 0x2000),
    ] {
        let (value, events) = run("tlb_range", addr, size);
        assert!(
            matches!(value, Value::Skipped(_)),
            "{addr:#x}+{size:#x}: {value:?}"
        );
        assert_eq!(events, [], "{addr:#x}+{size:#x}");
    }
}
