// SPDX-License-Identifier: GPL-2.0-only
//! Scheduled races: another CPU's walker or the hardware writes a
//! descriptor at one access of an op. Each test runs both sides (they must
//! agree) and checks the C side's outcome against what pgtable.c's
//! algorithm does by hand; the access sequences are written out from the
//! walker's algorithm (a READ_ONCE when it reaches a descriptor, another
//! after a leaf or pre-order visit, then the visitor's own stores).
//!
//! Common ground (as in tests/callers.rs): a 4K table with a 40-bit IPA
//! space starts at level 1, two concatenated level-1 tables at PAs
//! 0x4000_0000 and 0x4000_1000; later pages are 0x4000_2000, 0x4000_3000,
//! ... Linux 6.12's LOCKED marker is bit 10 (0x400), 7.3's type 1 in bits
//! [63:60]. A normal non-FWB page mapping is its PA | 0x77f (R) or 0x7ff
//! (RW), plus XN (bit 54) unless executable; a level-2 block has type 0b01
//! (0x77d, 0x7fd); a table descriptor is its PA | 0b11.

mod common;
use common::{files, root};

use std::fs;

use kvm_pgtable_diff::c_side::CSide;
use kvm_pgtable_diff::events::{Access, Barrier, Event, StoreKind};
use kvm_pgtable_diff::executor::{self, RunOptions, Summary, Value};
use kvm_pgtable_diff::opstream::{self, OpStream};
use kvm_pgtable_diff::race::{DIGEST_SEED, mix};
use kvm_pgtable_diff::rust_side::RustSide;
use kvm_pgtable_diff::side::Side;

const LOCKED: u64 = 0x400;
const LOCKED_7: u64 = 1 << 60;
const XN: u64 = 1 << 54;
const PGD: u64 = 0x4000_0000;
const BASE: u64 = 0x4000_0000;
const R_PAGE: u64 = 0x77f | XN;
const RW_PAGE: u64 = 0x7ff | XN;
const RW_BLOCK: u64 = 0x7fd | XN;
const R_BLOCK: u64 = 0x77d | XN;

const KERNEL_6_12: &str = "config kernel=6.12 stage=stage2 context=kernel granule=4k ia_bits=40 \
                           parange=2 arena_pages=64\n";
const FAULT: &str = "flags=SHARED|HANDLE_FAULT";

fn stream(text: &str) -> OpStream {
    let s = opstream::parse(&format!("# test\nkvm-pgtable-diff-stream v1\n{text}")).unwrap();
    executor::validate(&s).unwrap();
    s
}

/// Runs `text` on both sides (they must agree); the summary holds the C
/// side's log: init, one outcome per op run, destroy.
fn run(text: &str) -> Summary {
    let opts = RunOptions {
        keep_log: true,
        ..RunOptions::default()
    };
    match executor::run(&stream(text), opts) {
        Ok(sum) => sum,
        Err(d) => panic!("{d}"),
    }
}

/// The tally that ends an op's trace for these accesses.
fn accesses(list: &[(u64, Access)]) -> Event {
    Event::Accesses {
        count: list.len() as u64,
        digest: list
            .iter()
            .fold(DIGEST_SEED, |d, &(pa, a)| mix(d, pa - BASE, a)),
    }
}

use Access::{Cmpxchg as C, ReadOnce as R, Release as S};

fn store(pa: u64, old: u64, val: u64, kind: StoreKind) -> Event {
    Event::Store { pa, old, val, kind }
}

fn get(page: u64, count: u32) -> Event {
    Event::GetPage { page, count }
}

fn put(page: u64, count: u32) -> Event {
    Event::PutPage { page, count }
}

const RCU_LOCK: Event = Event::Rcu { lock: true };
const RCU_UNLOCK: Event = Event::Rcu { lock: false };

/// Maps the RW page 0x1000 -> 0x8000_1000: level-2 table 0x4000_2000,
/// level-3 table 0x4000_3000, the leaf at 0x4000_3008.
const MAP_0X1000: &str =
    "s2_map addr=0x1000 size=0x1000 phys=0x80001000 prot=RW mc=4 flags=SHARED|HANDLE_FAULT\n";

/// stage2_try_break_pte's cmpxchg loses to another walker's lock: the map
/// returns -EAGAIN having written nothing, invalidated nothing and put no
/// reference; the other walker (remapping the page with a software bit,
/// as NV does) publishes its leaf at the end.
#[test]
fn break_before_make_loses_its_cmpxchg_to_a_locked_marker() {
    let (l2, l3) = (0x4000_2000u64, 0x4000_3000u64);
    let s = run(&format!(
        "{KERNEL_6_12}{MAP_0X1000}\
         s2_map addr=0x1000 size=0x1000 phys=0x90001000 prot=RW mc=4 {FAULT} race=5:locked>leaf(R|SW0)\n\
         get_leaf addr=0x1000\n"
    ));
    let sw0 = 1 << 55;
    let o = &s.log[2];
    assert_eq!(o.value, Value::Int(-11));
    assert_eq!(o.memcache_left, Some(4));
    let leaf = 0x8000_1000 | RW_PAGE;
    // Both tables are visited before (TABLE_PRE) and reloaded after; the
    // leaf is read, the cmpxchg fails, the leaf is read again and the
    // fault-path walk stops on -EAGAIN.
    let acc = [
        (PGD, R),
        (PGD, R),
        (l2, R),
        (l2, R),
        (l3 + 8, R),
        (l3 + 8, C),
        (l3 + 8, R),
    ];
    assert_eq!(
        o.trace,
        vec![
            RCU_LOCK,
            Event::Interference {
                at: 5,
                access: C,
                pa: l3 + 8,
                old: leaf,
                new: LOCKED
            },
            RCU_UNLOCK,
            Event::Dsb(Barrier::IshSt),
            // It keeps the page the entry mapped.
            Event::Published {
                pa: l3 + 8,
                old: LOCKED,
                new: 0x8000_1000 | R_PAGE | sw0
            },
            accesses(&acc),
        ]
    );
    assert_eq!(
        s.log[3].value,
        Value::Leaf {
            ret: 0,
            pte: 0x8000_1000 | R_PAGE | sw0,
            level: 3
        }
    );
}

/// stage2_map_walk_leaf took a page from the memcache for a new table,
/// then lost the entry: the page is put back (freed; the memcache object
/// is gone) and the map returns -EAGAIN. The other walker's table is the
/// one that ends up linked.
#[test]
fn map_walk_leaf_loses_after_allocating_and_puts_the_page_back() {
    let s = run(&format!(
        "{KERNEL_6_12}s2_map addr=0x1000 size=0x1000 phys=0x80001000 prot=RW mc=4 {FAULT} \
         race=1:locked>table\nget_leaf addr=0x1000\n"
    ));
    let o = &s.log[1];
    assert_eq!(o.value, Value::Int(-11));
    assert_eq!(o.memcache_left, Some(3));
    // Ours is 0x4000_2000; the other walker's comes from its own
    // memcache, the next free page.
    let (ours, theirs) = (0x4000_2000u64, 0x4000_3000u64);
    assert_eq!(
        o.trace,
        vec![
            RCU_LOCK,
            Event::ZallocPage {
                source: kvm_pgtable_diff::events::AllocSource::Memcache,
                pa: Some(ours)
            },
            Event::Interference {
                at: 1,
                access: C,
                pa: PGD,
                old: 0,
                new: LOCKED
            },
            put(ours, 0),
            RCU_UNLOCK,
            Event::Dsb(Barrier::IshSt),
            Event::Published {
                pa: PGD,
                old: LOCKED,
                new: theirs | 3
            },
            accesses(&[(PGD, R), (PGD, C), (PGD, R)]),
        ]
    );
    // The address now leads into the other walker's empty table.
    assert_eq!(
        s.log[2].value,
        Value::Leaf {
            ret: 0,
            pte: 0,
            level: 2
        }
    );
}

/// relax_perms finds a block locked: another walker is replacing it by a
/// table (its map_walk_leaf, between the lock and the publish). The
/// attribute walker returns -EAGAIN and relax_perms invalidates this CPU's
/// TLB for the address with the level unknown; the other walker's (empty)
/// table is in place at the end.
#[test]
fn relax_perms_on_a_locked_entry_flushes_locally_with_ttl_unknown() {
    let l2 = 0x4000_2000u64;
    let s = run(&format!(
        "{KERNEL_6_12}s2_map addr=0x200000 size=0x200000 phys=0x80200000 prot=R mc=4 {FAULT}\n\
         s2_relax_perms addr=0x201000 prot=RW race=1:locked>table\n\
         get_leaf addr=0x201000\n"
    ));
    let o = &s.log[2];
    assert_eq!(o.value, Value::Int(-11));
    // A LEAF-only walk reads a table entry once (no visit, no reload).
    let acc = [(PGD, R), (l2 + 8, R), (l2 + 8, R)];
    assert_eq!(
        o.trace,
        vec![
            RCU_LOCK,
            Event::Interference {
                at: 1,
                access: R,
                pa: l2 + 8,
                old: 0x8020_0000 | R_BLOCK,
                new: LOCKED
            },
            RCU_UNLOCK,
            Event::TlbFlushVmidIpa {
                ipa: 0x201000,
                level: i32::MAX,
                nsh: true
            },
            Event::Published {
                pa: l2 + 8,
                old: LOCKED,
                new: 0x4000_3000 | 3
            },
            accesses(&acc),
        ]
    );
    assert_eq!(
        s.log[3].value,
        Value::Leaf {
            ret: 0,
            pte: 0,
            level: 3
        }
    );
}

/// The map's TABLE_PRE visit leaves a table it cannot replace (the output
/// address is not block-aligned); before the walker reloads the entry,
/// another walker replaces the table by a block. The reload sees the
/// block: no descent, the granule is skipped and the map returns 0 without
/// mapping anything; the replaced table is freed after the grace period.
#[test]
fn table_pre_reload_sees_another_walkers_block_and_skips_the_granule() {
    let (l2, l3) = (0x4000_2000u64, 0x4000_3000u64);
    let s = run(&format!(
        "{KERNEL_6_12}s2_map addr=0x201000 size=0x1000 phys=0x80201000 prot=RW mc=4 {FAULT}\n\
         s2_map addr=0x200000 size=0x200000 phys=0x80201000 prot=RW mc=4 {FAULT} race=3:leaf(RW)\n\
         get_leaf addr=0x201000\n"
    ));
    let o = &s.log[2];
    assert_eq!(o.value, Value::Int(0));
    assert_eq!(o.memcache_left, Some(4));
    // What the map would have mapped at 0x200000, as a 2 MiB block.
    let block = 0x8020_0000 | RW_BLOCK;
    let mut acc = vec![(PGD, R), (PGD, R), (l2 + 8, R), (l2 + 8, R)];
    // The RCU callback's free walk reads every entry of the level-3 table
    // and reloads it after its leaf visit.
    for i in 0..512 {
        acc.extend([(l3 + 8 * i, R), (l3 + 8 * i, R)]);
    }
    assert_eq!(
        o.trace,
        vec![
            RCU_LOCK,
            Event::Interference {
                at: 3,
                access: R,
                pa: l2 + 8,
                old: l3 | 3,
                new: block
            },
            RCU_UNLOCK,
            Event::Dsb(Barrier::IshSt),
            Event::RcuCallback { pa: l3, level: 2 },
            put(l3, 1),
            put(l3, 0),
            accesses(&acc),
        ]
    );
    assert_eq!(
        s.log[3].value,
        Value::Leaf {
            ret: 0,
            pte: block,
            level: 2
        }
    );
}

/// R4: the walker is inside a level-2 table when another CPU replaces the
/// level-1 entry above it by a 1 GiB block and hands the table to
/// free_unlinked_table (RCU). The walker finishes its work in the
/// unlinked table (a new level-3 table and the leaf), which RCU allows:
/// no finding. The grace period ends with the op; the callback frees the
/// whole subtree, the walker's new table included.
#[test]
fn a_walker_inside_a_table_another_cpu_unlinks_finishes_there() {
    let (l2, l3, new) = (0x4000_2000u64, 0x4000_3000u64, 0x4000_4000u64);
    let s = run(&format!(
        "{KERNEL_6_12}{MAP_0X1000}\
         s2_map addr=0x200000 size=0x1000 phys=0x80200000 prot=RW mc=4 {FAULT} race=4:up1:leaf(R)\n\
         get_leaf addr=0x200000\n"
    ));
    let o = &s.log[2];
    assert_eq!(o.value, Value::Int(0));
    assert_eq!(o.memcache_left, Some(3));
    let gib = 0x8000_0000 | R_BLOCK;
    let leaf = 0x8020_0000 | RW_PAGE;
    let mut trace = vec![
        RCU_LOCK,
        Event::ZallocPage {
            source: kvm_pgtable_diff::events::AllocSource::Memcache,
            pa: Some(new),
        },
        store(l2 + 8, 0, LOCKED, StoreKind::Cmpxchg),
        get(l2, 3),
        // Before the walker publishes its table: the level-1 entry above.
        Event::Interference {
            at: 4,
            access: S,
            pa: PGD,
            old: l2 | 3,
            new: gib,
        },
        store(l2 + 8, LOCKED, new | 3, StoreKind::Release),
        store(new, 0, LOCKED, StoreKind::Cmpxchg),
        Event::DcacheCleanInvalPoc {
            pa: 0x8020_0000,
            size: 0x1000,
        },
        get(new, 2),
        store(new, LOCKED, leaf, StoreKind::Release),
        RCU_UNLOCK,
        Event::Dsb(Barrier::IshSt),
        Event::RcuCallback { pa: l2, level: 1 },
        // Entry 0: the level-3 table of 0x1000 and its leaf; entry 1: the
        // walker's table and its leaf; then the level-2 table itself.
        put(l3, 1),
        put(l2, 2),
        put(l3, 0),
        put(new, 1),
        put(l2, 1),
        put(new, 0),
        put(l2, 0),
    ];
    // Snapshot and reload of the level-1 entry (TABLE_PRE), the level-2
    // entry (a leaf visit: lock, publish the table, reload), then the new
    // table's entry (lock, publish, reload); then the callback's free walk
    // of the level-2 table and of the two level-3 tables below it.
    let mut acc = vec![
        (PGD, R),
        (PGD, R),
        (l2 + 8, R),
        (l2 + 8, C),
        (l2 + 8, S),
        (l2 + 8, R),
        (new, R),
        (new, C),
        (new, S),
        (new, R),
    ];
    for (i, sub) in [(0u64, l3), (1, new)] {
        acc.push((l2 + 8 * i, R));
        for j in 0..512 {
            acc.extend([(sub + 8 * j, R), (sub + 8 * j, R)]);
        }
    }
    for i in 2..512 {
        acc.extend([(l2 + 8 * i, R), (l2 + 8 * i, R)]);
    }
    trace.push(accesses(&acc));
    assert_eq!(o.trace, trace);
    assert_eq!(
        s.log[3].value,
        Value::Leaf {
            ret: 0,
            pte: gib,
            level: 1
        }
    );
}

/// The hardware sets the access flag between the attribute walker's
/// snapshot and its store: an exclusive walker (wrprotect, WRITE_ONCE)
/// writes its stale value over it and the update is lost, which the
/// kernel accepts.
#[test]
fn an_exclusive_walker_overwrites_the_hardwares_access_flag() {
    let l3 = 0x4000_3000u64;
    let s = run(&format!(
        "{KERNEL_6_12}{MAP_0X1000}s2_test_clear_young addr=0x1000 size=0x1000 mkold=yes\n\
         s2_wrprotect addr=0x1000 size=0x1000 race=3:af\n"
    ));
    let old = 0x8000_1000 | RW_PAGE;
    let young = old & !0x400;
    let o = &s.log[3];
    assert_eq!(o.value, Value::Int(0));
    assert_eq!(
        o.trace,
        vec![
            Event::Interference {
                at: 3,
                access: Access::WriteOnce,
                pa: l3 + 8,
                old: young,
                new: old
            },
            store(l3 + 8, old, young & !0x80, StoreKind::WriteOnce),
            accesses(&[
                (PGD, R),
                (0x4000_2000, R),
                (l3 + 8, R),
                (l3 + 8, Access::WriteOnce),
                (l3 + 8, R)
            ]),
        ]
    );
}

/// relax_perms making a page executable invalidates the I-cache first;
/// if the hardware sets AF before its cmpxchg, the cmpxchg fails: the CMO
/// happened, the descriptor did not change (R5d).
#[test]
fn relax_perms_loses_to_the_hardware_after_its_icache_invalidation() {
    let l3 = 0x4000_3000u64;
    let s = run(&format!(
        "{KERNEL_6_12}{MAP_0X1000}s2_test_clear_young addr=0x1000 size=0x1000 mkold=yes\n\
         s2_relax_perms addr=0x1000 prot=RX race=3:af\nget_leaf addr=0x1000\n"
    ));
    let young = (0x8000_1000 | RW_PAGE) & !0x400;
    let o = &s.log[3];
    assert_eq!(o.value, Value::Int(-11));
    assert_eq!(
        o.trace,
        vec![
            RCU_LOCK,
            Event::IcacheInvalPou {
                pa: 0x8000_1000,
                size: 0x1000
            },
            Event::Interference {
                at: 3,
                access: C,
                pa: l3 + 8,
                old: young,
                new: young | 0x400
            },
            RCU_UNLOCK,
            Event::TlbFlushVmidIpa {
                ipa: 0x1000,
                level: i32::MAX,
                nsh: true
            },
            accesses(&[
                (PGD, R),
                (0x4000_2000, R),
                (l3 + 8, R),
                (l3 + 8, C),
                (l3 + 8, R)
            ]),
        ]
    );
    assert_eq!(
        s.log[4].value,
        Value::Leaf {
            ret: 0,
            pte: young | 0x400,
            level: 3
        }
    );
}

/// Linux 7.3: the same lost break-before-make with 7.3's LOCKED type; a
/// SHARED walk without IGNORE_EAGAIN stops on -EAGAIN.
#[test]
fn on_7_3_a_lost_break_before_make_is_the_same() {
    let l3 = 0x4000_3000u64;
    let cfg = "config kernel=7.3 stage=stage2 context=kernel granule=4k ia_bits=40 parange=2 \
               arena_pages=64\n";
    let s = run(&format!(
        "{cfg}s2_map addr=0x1000 size=0x1000 phys=0x80001000 prot=RW mc=4 flags=SHARED\n\
         s2_map addr=0x1000 size=0x1000 phys=0x90001000 prot=RW mc=4 flags=SHARED race=5:locked>leaf(R|SW0)\n"
    ));
    // 7.3 sets both XN bits (54:53) for a non-executable leaf.
    let xn7 = 0b10 << 53;
    let o = &s.log[2];
    assert_eq!(o.value, Value::Int(-11));
    let published = o.trace.iter().find_map(|e| match e {
        Event::Published { pa, old, new } => Some((*pa, *old, *new)),
        _ => None,
    });
    assert_eq!(
        published,
        Some((l3 + 8, LOCKED_7, 0x8000_1000 | 0x77f | xn7 | 1 << 55))
    );
    assert!(o.trace.contains(&Event::Interference {
        at: 5,
        access: C,
        pa: l3 + 8,
        old: 0x8000_1000 | 0x7ff | xn7,
        new: LOCKED_7
    }));
    assert!(
        !o.trace
            .iter()
            .any(|e| matches!(e, Event::TlbFlushVmidIpa { .. } | Event::PutPage { .. }))
    );
}

/// A race no agent of the caller could cause is not run: the op is
/// skipped, with the reason.
#[test]
fn races_the_callers_locking_forbids_are_skipped() {
    let skipped = |text: &str| {
        let s = run(text);
        match &s.log[s.log.len() - 2].value {
            Value::Skipped(why) => why.to_string(),
            v => panic!("not skipped: {v:?}"),
        }
    };
    // An exclusive walk (flags 0: ioremap, under mmu_lock for writing).
    let why = skipped(&format!(
        "{KERNEL_6_12}s2_map addr=0x1000 size=0x1000 phys=0x80001000 prot=RW mc=4 flags=0 \
         race=0:locked>table\n"
    ));
    assert!(why.contains("SHARED"), "{why}");
    // Any walk at EL2: the pKVM host holds its lock.
    let why = skipped(
        "config kernel=6.12 stage=stage2 context=nvhe granule=4k ia_bits=40 flags=idmap \
         arena_pages=64\n\
         s2_map addr=0x1000 size=0x1000 phys=0x1000 prot=RWX mc=4 flags=0 race=0:leaf(R)\n",
    );
    assert!(why.contains("lock"), "{why}");
    // No hardware AF under the Ampere AC03 workaround.
    let why = skipped(
        "config kernel=6.12 stage=stage2 context=kernel granule=4k ia_bits=40 \
         features=ampere_ac03 arena_pages=64\n\
         s2_wrprotect addr=0x1000 size=0x1000 race=0:af\n",
    );
    assert!(why.contains("AC03"), "{why}");
    // The hardware's AF is possible anywhere else, even at EL2.
    let s = run(
        "config kernel=6.12 stage=stage2 context=nvhe granule=4k ia_bits=40 arena_pages=64\n\
         s2_wrprotect addr=0x1000 size=0x1000 race=0:af\n",
    );
    assert_eq!(s.ops_run, 1);
}

/// A race whose agent could not write the entry (a leaf at a level
/// without blocks, a table over a table, anything over a locked entry)
/// does not happen: no interference event, the op runs undisturbed.
#[test]
fn impossible_writes_do_not_happen() {
    let s = run(&format!(
        "{KERNEL_6_12}{MAP_0X1000}\
         s2_map addr=0x2000 size=0x1000 phys=0x80002000 prot=RW mc=4 {FAULT} race=1:table\n\
         s2_map addr=0x3000 size=0x1000 phys=0x80003000 prot=RW mc=4 {FAULT} race=6:locked>table\n\
         s2_map addr=0x4000 size=0x1000 phys=0x80004000 prot=RW mc=4 {FAULT} race=0:up1:leaf(RW)\n"
    ));
    for o in &s.log[2..5] {
        assert_eq!(o.value, Value::Int(0));
        assert!(
            !o.trace
                .iter()
                .any(|e| matches!(e, Event::Interference { .. })),
            "{:?}",
            o.trace
        );
    }
}

/// Both sides make the same descriptor accesses, one by one, on every op
/// of the committed corpus (the executor compares their tallies; this
/// compares the full lists, so a difference says where).
#[test]
fn both_sides_make_the_same_accesses_on_the_whole_corpus() {
    let root = root();
    let mut inputs = 0;
    let mut accesses = 0;
    for &t in kvm_pgtable_diff::fuzz::TARGETS {
        for p in files(&root.join("fuzz/corpus").join(t), None) {
            let bytes = fs::read(&p).unwrap();
            let s = opstream::decode(&bytes, kvm_pgtable_diff::fuzz::profile(t).unwrap());
            let mut c = CSide::for_stream(&s.config);
            let mut r = RustSide::for_stream(&s.config);
            c.init();
            r.init();
            c.keep_accesses(true);
            r.keep_accesses(true);
            inputs += 1;
            let profile = kvm_pgtable_diff::caller::CallerProfile::of(&s.config);
            if c.root().is_some() {
                for (i, op) in s.ops.iter().enumerate() {
                    let race = s.race(i);
                    let ok = op.precondition(&s.config).is_ok()
                        && race.is_none_or(|x| x.precondition(op, &s.config).is_ok());
                    if !ok {
                        continue;
                    }
                    let (oc, _) = (c.apply_raced(op, race), r.apply_raced(op, race));
                    let (lc, lr) = (c.take_accesses().unwrap(), r.take_accesses().unwrap());
                    let at = lc.iter().zip(&lr).position(|(x, y)| x != y);
                    assert!(
                        lc == lr,
                        "{t}/{}: op #{i}: C made {} accesses, Rust {}; first difference at {at:?}",
                        p.display(),
                        lc.len(),
                        lr.len()
                    );
                    assert_eq!(
                        oc.trace.last(),
                        Some(&Event::Accesses {
                            count: lc.len() as u64,
                            digest: lc
                                .iter()
                                .fold(DIGEST_SEED, |d, &(pa, a)| mix(d, pa - BASE, a))
                        }),
                        "{t}/{}: op #{i}: the tally is not the list",
                        p.display()
                    );
                    accesses += lc.len();
                    if profile.fatal_at(&oc.trace).is_some() {
                        // The machine stopped there (an EL2 WARN, a BUG).
                        break;
                    }
                }
            }
            c.destroy();
            r.destroy();
            assert_eq!(c.take_accesses(), r.take_accesses());
        }
    }
    assert!(inputs > 0 && accesses > 0);
    println!("{inputs} inputs, {accesses} accesses, the same on both sides");
}
