// SPDX-License-Identifier: GPL-2.0-only
//! What distinguishes each caller profile, run on both sides (they must
//! agree, and the C side's trace must be the one worked out here by hand
//! from pgtable.c's algorithm and the callers' mm_ops).
//!
//! Common ground of the stage-2 expectations: a 4K table with a 40-bit IPA
//! space starts at level 1 with two concatenated level-1 tables as its PGD
//! (PAs 0x4000_0000 and 0x4000_1000, the arena's first two pages); the next
//! pages allocated are 0x4000_2000, 0x4000_3000, ... Linux 6.12's
//! break-before-make marker is bit 10 (0x400); a table descriptor is its PA
//! | 0b11. A normal, non-FWB level-3 page with R and W has MemAttr 0xf
//! (0x3c), S2AP RW (0xc0), SH inner (0x300), AF (0x400) and type 0b11:
//! 0x7ff, plus XN (bit 54) unless executable; a level-2 block has type
//! 0b01: 0x7fd.

mod common;
use common::random_bytes;

use kvm_pgtable_diff::caller::Panic;
use kvm_pgtable_diff::events::{
    AllocSource, Barrier, CallerBug, CallerWarn, Event, Hook, StoreKind, TlbiHypOp,
};
use kvm_pgtable_diff::executor::{self, RunOptions, Summary, Value};
use kvm_pgtable_diff::opstream::{self, Caller};
use kvm_pgtable_diff::results::Step;

const LOCKED: u64 = 0x400;
const XN: u64 = 1 << 54;

fn stream(text: &str) -> opstream::OpStream {
    let s = opstream::parse(&format!("# test\nkvm-pgtable-diff-stream v1\n{text}")).unwrap();
    executor::validate(&s).unwrap();
    s
}

/// Runs `text` on both sides (they must agree) and returns the summary with
/// the first side's log: init, then one outcome per op run, then destroy.
/// The access tally that ends every op's and the teardown's trace (checked
/// by tests/races.rs) is taken off: these traces are about the callers.
fn run(text: &str) -> Summary {
    let s = stream(text);
    let opts = RunOptions {
        keep_log: true,
        ..RunOptions::default()
    };
    let mut sum = match executor::run(&s, opts) {
        Ok(sum) => sum,
        Err(d) => panic!("{d}"),
    };
    for o in sum.log.iter_mut().skip(1) {
        if let Some(Event::Accesses { .. }) = o.trace.last() {
            o.trace.pop();
        }
    }
    sum
}

fn store(pa: u64, old: u64, val: u64, kind: StoreKind) -> Event {
    Event::Store { pa, old, val, kind }
}

fn wo(pa: u64, old: u64, val: u64) -> Event {
    store(pa, old, val, StoreKind::WriteOnce)
}

fn rel(pa: u64, old: u64, val: u64) -> Event {
    store(pa, old, val, StoreKind::Release)
}

fn zalloc(source: AllocSource, pa: u64) -> Event {
    Event::ZallocPage {
        source,
        pa: Some(pa),
    }
}

fn get(page: u64, count: u32) -> Event {
    Event::GetPage { page, count }
}

fn put(page: u64, count: u32) -> Event {
    Event::PutPage { page, count }
}

/// The trace of mapping one 4K page at IA `ia` (level-1 index 1, level-2
/// and level-3 index 1) into an empty 40-bit 4K table: two new tables, then
/// the leaf `leaf`, with `cmo` between locking the leaf and counting it.
fn map_page_into_empty(source: AllocSource, ia: u64, leaf: u64, cmo: &[Event]) -> Vec<Event> {
    assert_eq!(ia >> 30, 1);
    assert_eq!((ia >> 21) & 511, 1);
    assert_eq!((ia >> 12) & 511, 1);
    let (pgd, l2, l3) = (0x4000_0000u64, 0x4000_2000u64, 0x4000_3000u64);
    let mut t = vec![
        zalloc(source, l2),
        wo(pgd + 8, 0, LOCKED),
        get(pgd, 2),
        rel(pgd + 8, LOCKED, l2 | 3),
        zalloc(source, l3),
        wo(l2 + 8, 0, LOCKED),
        get(l2, 2),
        rel(l2 + 8, LOCKED, l3 | 3),
        wo(l3 + 8, 0, LOCKED),
    ];
    t.extend_from_slice(cmo);
    t.extend([
        get(l3, 2),
        rel(l3 + 8, LOCKED, leaf),
        Event::Dsb(Barrier::IshSt),
    ]);
    t
}

const HOST_6_12: &str = "config kernel=6.12 stage=stage2 context=nvhe granule=4k ia_bits=40 \
                         flags=idmap,nofwb parange=2 arena_pages=64\n";
const KERNEL_6_12: &str = "config kernel=6.12 stage=stage2 context=kernel granule=4k ia_bits=40 parange=2 arena_pages=64\n";

#[test]
fn pkvm_host_maps_normal_memory_without_cache_maintenance() {
    let map = "s2_map addr=0x40201000 size=0x1000 phys=0x40201000 prot=RWX mc=4 flags=0\n";
    let host = run(&format!("{HOST_6_12}{map}"));
    assert_eq!(stream(HOST_6_12).config.caller(), Caller::PkvmHost);
    let o = &host.log[1];
    assert_eq!(o.value, Value::Int(0));
    // The memcache argument is host_s2_pool itself: its count means nothing.
    assert_eq!(o.memcache_left, Some(4));
    assert_eq!(
        o.trace,
        map_page_into_empty(AllocSource::Pool, 0x4020_1000, 0x4020_17ff, &[])
    );
    // The same map for a KVM guest (kernel): RWX non-FWB memory is cleaned
    // to the PoC and invalidated in the I-cache before the leaf goes in,
    // and both tables come out of the memcache.
    let kvm = run(&format!("{KERNEL_6_12}{map}"));
    let o = &kvm.log[1];
    assert_eq!(o.memcache_left, Some(2));
    let cmo = [
        Event::DcacheCleanInvalPoc {
            pa: 0x4020_1000,
            size: 0x1000,
        },
        Event::IcacheInvalPou {
            pa: 0x4020_1000,
            size: 0x1000,
        },
    ];
    assert_eq!(
        o.trace,
        map_page_into_empty(AllocSource::Memcache, 0x4020_1000, 0x4020_17ff, &cmo)
    );
}

#[test]
fn pkvm_host_on_7_3_has_no_cache_maintenance_either() {
    let s = run(
        "config kernel=7.3 stage=stage2 context=nvhe granule=4k ia_bits=40 \
                 flags=idmap,as_s1 parange=2 arena_pages=64\n\
                 s2_map addr=0x40201000 size=0x1000 phys=0x40201000 prot=RWX mc=4 flags=IGNORE_EAGAIN\n\
                 s2_map addr=0x40400000 size=0x200000 phys=0x40400000 prot=RWX mc=4 flags=IGNORE_EAGAIN\n",
    );
    assert_eq!(s.ops_run, 2);
    for o in &s.log {
        assert!(!o.trace.iter().any(|e| matches!(
            e,
            Event::DcacheCleanInvalPoc { .. } | Event::IcacheInvalPou { .. }
        )));
    }
}

#[test]
fn kernel_hyp_unmap_is_a_no_op_without_page_count() {
    let ops = "hyp_map addr=0x1000 size=0x1000 phys=0x80001000 prot=RW\n\
               hyp_unmap addr=0x1000 size=0x1000\n\
               get_leaf addr=0x1000\n";
    let cfg = |ctx: &str| format!("config stage=hyp context={ctx} granule=4k ia_bits=48\n{ops}");
    // A 48-bit 4K hyp table has four levels: the map builds tables at
    // 0x4000_1000 (level 1), 0x4000_2000 (level 2), 0x4000_3000 (level 3)
    // below the root 0x4000_0000 and stores the leaf at 0x4000_3008.
    let leaf_of = |s: &Summary| match s.log[1].trace.iter().rev().find_map(|e| match e {
        Event::Store {
            pa: 0x4000_3008,
            val,
            ..
        } => Some(*val),
        _ => None,
    }) {
        Some(v) => v,
        None => panic!("no leaf store in {:?}", s.log[1].trace),
    };
    let kernel = run(&cfg("kernel"));
    // mmu.c kvm_hyp_mm_ops has no page_count: kvm_pgtable_hyp_unmap
    // returns 0 before walking, so nothing is stored or invalidated, and
    // the page stays mapped.
    assert_eq!(kernel.log[2].value, Value::U64(0));
    assert!(kernel.log[2].trace.is_empty());
    assert_eq!(
        kernel.log[3].value,
        Value::Leaf {
            ret: 0,
            pte: leaf_of(&kernel),
            level: 3
        }
    );
    // At EL2 (pkvm_pgtable_mm_ops has page_count) the page is unmapped:
    // the leaf is cleared, DSB ISHST, TLBI VALE2IS of VA >> 12 at level 3,
    // sync, ISB, and its table page loses a reference; then each table
    // left holding nothing is unlinked the same way with TLBI VAE2IS (no
    // level hint) and freed, up to the root.
    let el2 = run(&cfg("nvhe"));
    assert_eq!(el2.log[2].value, Value::U64(0x1000));
    let inval = |op, level| {
        [
            Event::Dsb(Barrier::IshSt),
            Event::TlbiHyp {
                op,
                operand: 1,
                level,
            },
            Event::TlbiSyncS1IshHyp,
            Event::Isb,
        ]
    };
    let mut want = vec![wo(0x4000_3008, leaf_of(&el2), 0)];
    want.extend(inval(TlbiHypOp::Vale2is, 3));
    want.push(put(0x4000_3000, 1));
    for (entry, child) in [
        (0x4000_2000u64, 0x4000_3000u64),
        (0x4000_1000, 0x4000_2000),
        (0x4000_0000, 0x4000_1000),
    ] {
        want.push(wo(entry, child | 3, 0));
        want.extend(inval(TlbiHypOp::Vae2is, i32::MAX));
        want.extend([put(entry, 1), put(child, 0)]);
    }
    assert_eq!(el2.log[2].trace, want);
    assert_eq!(
        el2.log[3].value,
        Value::Leaf {
            ret: 0,
            pte: 0,
            level: 0
        }
    );
}

#[test]
fn empty_kernel_memcache_warns_and_allocates_anyway() {
    let map = "s2_map addr=0x40201000 size=0x1000 phys=0x90001000 prot=RW mc=0 flags=0\n";
    let s = run(&format!("{KERNEL_6_12}{map}"));
    let o = &s.log[1];
    // kvm_mmu_memory_cache_alloc: WARN_ON(!mc->nobjs), then GFP_ATOMIC.
    assert_eq!(o.value, Value::Int(0));
    assert_eq!(o.memcache_left, Some(0));
    let mut want = map_page_into_empty(
        AllocSource::Atomic,
        0x4020_1000,
        XN | 0x9000_17ff,
        &[Event::DcacheCleanInvalPoc {
            pa: 0x9000_1000,
            size: 0x1000,
        }],
    );
    want.insert(4, Event::CallerWarn(CallerWarn::EmptyMemcache));
    want.insert(0, Event::CallerWarn(CallerWarn::EmptyMemcache));
    assert_eq!(o.trace, want);
    assert!(s.panic.is_none());

    // A pKVM guest's memcache can run dry: NULL, -ENOMEM.
    let guest = run(&format!(
        "config kernel=6.12 stage=stage2 context=nvhe granule=4k ia_bits=40 parange=2 arena_pages=64\n{map}"
    ));
    assert_eq!(guest.log[1].value, Value::Int(-12));
    assert_eq!(
        guest.log[1].trace,
        vec![
            Event::ZallocPage {
                source: AllocSource::Memcache,
                pa: None
            },
            Event::Dsb(Barrier::IshSt)
        ]
    );

    // If the atomic allocation fails too, the kernel BUGs: the run ends
    // there (allocation #0 is the PGD, #1 the atomic one).
    let bug = run(&format!(
        "config kernel=6.12 stage=stage2 context=kernel granule=4k ia_bits=40 parange=2 \
         arena_pages=64 fail_after=1\n{map}get_leaf addr=0x40201000\n"
    ));
    assert_eq!(
        bug.log[1].trace,
        vec![
            Event::CallerWarn(CallerWarn::EmptyMemcache),
            Event::ZallocPage {
                source: AllocSource::Atomic,
                pa: None
            },
            Event::CallerBug(CallerBug::MemcacheAllocFailed),
        ]
    );
    assert_eq!(
        bug.panic,
        Some(Panic {
            step: Step::Op(0),
            event: Event::CallerBug(CallerBug::MemcacheAllocFailed),
            at_el2: false
        })
    );
    assert_eq!((bug.ops_run, bug.ops_skipped), (1, 1));
}

/// Maps one page at `0x40201000`, then the 2 MiB block around it: the
/// block replaces the level-3 table (0x4000_3000) from TABLE_PRE.
const BLOCK_OVER_TABLE: &str = "s2_map addr=0x40201000 size=0x1000 phys=0x40201000 prot=RWX mc=4 flags=0\n\
     s2_map addr=0x40200000 size=0x200000 phys=0x40200000 prot=RWX mc=4 flags=0\n";

/// The block map's trace up to and including handing the table over:
/// lock the table entry, invalidate the whole VMID (no TLBI range), drop
/// the entry's reference, `cmo`, count and store the block, then
/// free_unlinked_table(table, level 2).
fn block_over_table(cmo: &[Event]) -> Vec<Event> {
    let (l2, l3) = (0x4000_2000u64, 0x4000_3000u64);
    let mut t = vec![wo(l2 + 8, l3 | 3, LOCKED), Event::TlbFlushVmid, put(l2, 1)];
    t.extend_from_slice(cmo);
    t.extend([
        get(l2, 2),
        rel(l2 + 8, LOCKED, 0x4020_07fd),
        Event::FreeUnlinkedTable { pa: l3, level: 2 },
    ]);
    t
}

#[test]
fn kernel_frees_an_unlinked_table_after_the_grace_period() {
    let s = run(&format!("{KERNEL_6_12}{BLOCK_OVER_TABLE}"));
    let l3 = 0x4000_3000;
    let cmo = [
        Event::DcacheCleanInvalPoc {
            pa: 0x4020_0000,
            size: 0x20_0000,
        },
        Event::IcacheInvalPou {
            pa: 0x4020_0000,
            size: 0x20_0000,
        },
    ];
    let mut want = block_over_table(&cmo);
    // The op ends (its last store and DSB); the table is still whole. Then
    // the grace period ends: the RCU callback puts the leaf's reference and
    // the table page itself.
    want.extend([
        Event::Dsb(Barrier::IshSt),
        Event::RcuCallback { pa: l3, level: 2 },
        put(l3, 1),
        put(l3, 0),
    ]);
    assert_eq!(s.log[2].trace, want);

    // The pKVM host frees it at once, inside the walk.
    let h = run(&format!("{HOST_6_12}{BLOCK_OVER_TABLE}"));
    let mut want = block_over_table(&[]);
    want.extend([put(l3, 1), put(l3, 0), Event::Dsb(Barrier::IshSt)]);
    assert_eq!(h.log[2].trace, want);
}

#[test]
fn pkvm_guest_has_no_free_unlinked_table() {
    let guest = "config kernel=6.12 stage=stage2 context=nvhe granule=4k ia_bits=40 parange=2 \
                 arena_pages=64\n";
    let s = run(&format!(
        "{guest}{BLOCK_OVER_TABLE}get_leaf addr=0x40201000\n"
    ));
    let cmo = [
        Event::DcacheCleanInvalPoc {
            pa: 0x4020_0000,
            size: 0x20_0000,
        },
        Event::IcacheInvalPou {
            pa: 0x4020_0000,
            size: 0x20_0000,
        },
    ];
    let mut want = block_over_table(&cmo);
    // The call goes through the NULL hook: the hypervisor panics there.
    *want.last_mut().unwrap() = Event::AbsentHook(Hook::FreeUnlinkedTable);
    assert_eq!(s.log[2].trace, want);
    let p = s.panic.expect("a hypervisor panic");
    assert_eq!(p.step, Step::Op(1));
    assert_eq!(
        p.to_string(),
        "hypervisor panic: call through the NULL mm_ops->free_unlinked_table (op #1)"
    );
    // No later op, no teardown.
    assert_eq!((s.ops_run, s.ops_skipped), (2, 1));
    assert_eq!(s.log.len(), 3);
}

#[test]
fn pkvm_guest_reuses_its_pool_before_the_memcache() {
    let s = run(
        "config kernel=6.12 stage=stage2 context=nvhe granule=4k ia_bits=40 parange=2 arena_pages=64\n\
         s2_map addr=0x40201000 size=0x1000 phys=0x90001000 prot=RW mc=4 flags=0\n\
         s2_unmap addr=0x40200000 size=0x200000\n\
         s2_map addr=0x40201000 size=0x1000 phys=0x90001000 prot=RW mc=4 flags=0\n",
    );
    assert_eq!(s.log[1].memcache_left, Some(2));
    // The unmap empties and frees both tables into vm->pool; the next map
    // takes them from there (guest_s2_zalloc_page) and leaves the
    // memcache alone.
    let map = &s.log[3];
    assert_eq!(map.memcache_left, Some(4));
    let allocs: Vec<&Event> = map
        .trace
        .iter()
        .filter(|e| matches!(e, Event::ZallocPage { .. }))
        .collect();
    assert_eq!(
        allocs,
        [
            &zalloc(AllocSource::VmPool, 0x4000_2000),
            &zalloc(AllocSource::VmPool, 0x4000_3000)
        ]
    );
}

#[test]
fn an_el2_warn_ends_the_run_and_a_kernel_one_does_not() {
    // Remapping a valid hyp page with other attributes WARNs (twice: the
    // leaf is refused, and a last-level entry cannot become a table).
    let ops = "hyp_map addr=0x1000 size=0x1000 phys=0x80001000 prot=RW\n\
               hyp_map addr=0x1000 size=0x1000 phys=0x80001000 prot=R\n\
               get_leaf addr=0x1000\n";
    let el2 = run(&format!(
        "config stage=hyp context=nvhe granule=4k ia_bits=48\n{ops}"
    ));
    let p = el2.panic.clone().expect("a hypervisor panic");
    assert_eq!(p.step, Step::Op(1));
    assert!(matches!(p.event, Event::Warn { once: false, .. }));
    assert!(
        p.to_string().starts_with("hypervisor panic: WARN at "),
        "{p}"
    );
    assert!(p.to_string().contains("pgtable.c:"), "{p}");
    // Compared up to and including the first WARN, then nothing: no later
    // op, no memory comparison, no teardown.
    let t = &el2.log[2].trace;
    assert!(matches!(t.last(), Some(Event::Warn { .. })));
    assert_eq!(
        t.iter().filter(|e| matches!(e, Event::Warn { .. })).count(),
        1
    );
    assert_eq!(el2.log[2].value, Value::Unit);
    assert_eq!((el2.ops_run, el2.ops_skipped, el2.log.len()), (2, 1, 3));

    let kernel = run(&format!(
        "config stage=hyp context=kernel granule=4k ia_bits=48\n{ops}"
    ));
    assert!(kernel.panic.is_none());
    assert_eq!(kernel.ops_run, 3);
    let t = &kernel.log[2].trace;
    assert_eq!(
        t.iter().filter(|e| matches!(e, Event::Warn { .. })).count(),
        2
    );
    assert_eq!(kernel.log[2].value, Value::Int(-22));
}

#[test]
fn host_stage2_target_streams_never_show_cache_maintenance() {
    // The host_stage2 fuzz target always decodes to the pKVM host: no
    // stream of it may show a CMO, whatever the bytes.
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let profile = kvm_pgtable_diff::fuzz::profile("host_stage2").unwrap();
    for i in 0..60 {
        let data = random_bytes(&mut x, (i * 11) % 400);
        let s = opstream::decode(&data, profile);
        assert_eq!(s.config.caller(), Caller::PkvmHost);
        let opts = RunOptions {
            keep_log: true,
            ..kvm_pgtable_diff::fuzz::options("host_stage2")
        };
        let sum = executor::run(&s, opts).unwrap_or_else(|d| panic!("input {i}: {d}"));
        for o in &sum.log {
            assert!(
                !o.trace.iter().any(|e| matches!(
                    e,
                    Event::DcacheCleanInvalPoc { .. } | Event::IcacheInvalPou { .. }
                )),
                "input {i}: {:?}",
                o.trace
            );
        }
    }
}

#[test]
fn only_tables_of_an_unlinked_subtree_wait_for_the_grace_period() {
    // The level-3 table the block replaces maps a page whose PA is the
    // PGD's own page. The same map then goes on into the next 1 GiB and
    // links a new table into the PGD (entry 2, at 0x4000_0010) before the
    // grace period ends: a leaf's output address is no table of the
    // unlinked subtree, so that store is fine (found by the stage2 and
    // walk targets when the subtree was read one level too high).
    let s = run(&format!(
        "{KERNEL_6_12}\
         s2_map addr=0x7fe01000 size=0x1000 phys=0x40000000 prot=RW mc=4 flags=0\n\
         s2_map addr=0x7fe00000 size=0x400000 phys=0x7fe00000 prot=RW mc=4 flags=0\n"
    ));
    let t = &s.log[2].trace;
    let freed = t
        .iter()
        .position(|e| {
            *e == Event::FreeUnlinkedTable {
                pa: 0x4000_3000,
                level: 2,
            }
        })
        .expect("the block replaces the level-3 table");
    let pgd_store = t
        .iter()
        .position(|e| {
            matches!(
                e,
                Event::Store {
                    pa: 0x4000_0010,
                    ..
                }
            )
        })
        .expect("a new table in the PGD");
    let callback = t
        .iter()
        .position(|e| matches!(e, Event::RcuCallback { .. }))
        .expect("the RCU callback at the end of the op");
    assert!(freed < pgd_store && pgd_store < callback, "{t:?}");
}
