// SPDX-License-Identifier: GPL-2.0-only
//! The force-PTE callback and the pKVM host policy built on it: memory is
//! mapped with blocks only for RWX, MMIO only for RW; everything else is
//! forced down to pages. The callback is consulted exactly once per map
//! call, with `(addr, addr + size, prot)`, before anything else.

mod common;
use common::*;
use rust_pgtable::*;

const P: u64 = 0x1000;
const M2: u64 = 0x20_0000;
const G1: u64 = 0x4000_0000;

/// Host memory: 1GiB at 1GiB, and 2MiB at 4GiB. The rest is MMIO.
const REGIONS: [MemRegion; 2] = [
    MemRegion { base: G1, size: G1 },
    MemRegion {
        base: 0x1_0000_0000,
        size: M2,
    },
];

fn host_cb(env: &mut Mock, addr: u64, end: u64, prot: Prot) -> bool {
    env.events.push(Ev::ForcePte { addr, end, prot });
    pkvm_host_force_pte(range_is_memory(&REGIONS, addr, end), prot)
}

type HostCb = fn(&mut Mock, u64, u64, Prot) -> bool;

/// A pKVM-host-like stage-2: identity mapped, no FWB, no CMO callbacks.
fn host_s2() -> Stage2Pgtable<Mock, HostCb> {
    let cf = cfg_with(Granule::Size4K, Context::NvheHyp, |f| f.stage2_fwb = true);
    let vtcr = vtcr_for(&cf, 40);
    let mut mock = Mock::new(cf, 600);
    mock.has_dcache = false;
    mock.has_icache = false;
    let mut pgt = Stage2Pgtable::new(mock, cf);
    pgt.init(
        vtcr,
        Stage2Flags::IDMAP | Stage2Flags::NOFWB,
        Some(host_cb as HostCb),
    )
    .unwrap();
    pgt.env_mut().take_events();
    pgt
}

fn idmap(
    pgt: &mut Stage2Pgtable<Mock, HostCb>,
    addr: u64,
    size: u64,
    prot: Prot,
) -> Result<(), Error> {
    let mut mc = Mc { nobjs: 600 };
    pgt.map(addr, size, addr, prot, Some(&mut mc), WalkFlags::empty())
}

fn cb_calls(pgt: &Stage2Pgtable<Mock, HostCb>) -> Vec<Ev> {
    pgt.env()
        .events
        .iter()
        .copied()
        .filter(|e| matches!(e, Ev::ForcePte { .. }))
        .collect()
}

#[test]
fn host_policy_truth_table() {
    assert!(!pkvm_host_force_pte(true, Prot::RWX));
    assert!(pkvm_host_force_pte(true, Prot::RW));
    assert!(pkvm_host_force_pte(true, Prot::R));
    assert!(pkvm_host_force_pte(true, Prot::RWX | Prot::SW0));
    assert!(!pkvm_host_force_pte(false, Prot::RW));
    assert!(pkvm_host_force_pte(false, Prot::RWX));
    assert!(pkvm_host_force_pte(false, Prot::RW | Prot::DEVICE));
    assert!(pkvm_host_force_pte(false, Prot::empty()));
}

#[test]
fn range_is_memory_needs_one_region() {
    assert!(range_is_memory(&REGIONS, G1, 2 * G1));
    assert!(range_is_memory(&REGIONS, 2 * G1 - P, 2 * G1));
    assert!(!range_is_memory(&REGIONS, 2 * G1 - P, 2 * G1 + P));
    assert!(!range_is_memory(&REGIONS, G1 - P, G1 + P));
    assert!(!range_is_memory(&REGIONS, 0, P));
    assert!(range_is_memory(&REGIONS, 0x1_0000_0000, 0x1_0000_1000));
    assert!(!range_is_memory(&[], G1, G1 + P));
}

#[test]
fn memory_rwx_gets_blocks() {
    let mut pgt = host_s2();
    idmap(&mut pgt, G1 + M2, M2, Prot::RWX).unwrap();
    assert_eq!(
        cb_calls(&pgt),
        [Ev::ForcePte {
            addr: G1 + M2,
            end: G1 + 2 * M2,
            prot: Prot::RWX
        }]
    );
    // The callback is the very first event.
    assert!(matches!(pgt.env().events[0], Ev::ForcePte { .. }));
    assert_eq!(pgt.get_leaf(G1 + M2).unwrap().1, Level(2));
    // No CMOs: the host mm_ops has none.
    assert!(
        !pgt.env()
            .events
            .iter()
            .any(|e| matches!(e, Ev::Dcache { .. }))
    );

    // A whole aligned GiB: a level-1 block.
    let mut pgt = host_s2();
    idmap(&mut pgt, G1, G1, Prot::RWX).unwrap();
    assert_eq!(pgt.get_leaf(G1 + 5 * M2).unwrap().1, Level(1));
    assert_eq!(cb_calls(&pgt).len(), 1);
}

#[test]
fn memory_other_prot_gets_pages() {
    let mut pgt = host_s2();
    idmap(&mut pgt, G1 + M2, M2, Prot::RW).unwrap();
    assert_eq!(
        cb_calls(&pgt),
        [Ev::ForcePte {
            addr: G1 + M2,
            end: G1 + 2 * M2,
            prot: Prot::RW
        }]
    );
    for off in [0, P, M2 - P] {
        let (pte, level) = pgt.get_leaf(G1 + M2 + off).unwrap();
        assert_eq!(level, Level(3));
        assert_eq!(pte.to_phys(pgt.cfg()), G1 + M2 + off);
        assert_eq!(stage2_pte_prot(pte), Prot::RW);
    }
    // Root, one level-2 and one level-3 table.
    assert_eq!(pgt.env().next, 2 + 2);
}

#[test]
fn mmio_rw_gets_blocks_and_rwx_pages() {
    let mut pgt = host_s2();
    let mmio = 0x1000_0000;
    idmap(&mut pgt, mmio, M2, Prot::RW).unwrap();
    assert_eq!(pgt.get_leaf(mmio).unwrap().1, Level(2));
    idmap(&mut pgt, mmio + M2, M2, Prot::RWX).unwrap();
    assert_eq!(pgt.get_leaf(mmio + M2).unwrap().1, Level(3));
    // Device memory is never the host MMIO default either.
    idmap(&mut pgt, mmio + 2 * M2, M2, Prot::RW | Prot::DEVICE).unwrap();
    assert_eq!(pgt.get_leaf(mmio + 2 * M2).unwrap().1, Level(3));
    assert_eq!(
        cb_calls(&pgt),
        [
            Ev::ForcePte {
                addr: mmio,
                end: mmio + M2,
                prot: Prot::RW
            },
            Ev::ForcePte {
                addr: mmio + M2,
                end: mmio + 2 * M2,
                prot: Prot::RWX
            },
            Ev::ForcePte {
                addr: mmio + 2 * M2,
                end: mmio + 3 * M2,
                prot: Prot::RW | Prot::DEVICE
            },
        ]
    );
}

#[test]
fn straddling_the_end_of_memory_uses_the_mmio_policy() {
    let mut pgt = host_s2();
    // [2G - 2M, 2G + 2M): starts in memory but does not end there.
    idmap(&mut pgt, 2 * G1 - M2, 2 * M2, Prot::RWX).unwrap();
    assert_eq!(pgt.get_leaf(2 * G1 - M2).unwrap().1, Level(3));
    assert_eq!(pgt.get_leaf(2 * G1).unwrap().1, Level(3));
    let mut pgt = host_s2();
    idmap(&mut pgt, 2 * G1 - M2, 2 * M2, Prot::RW).unwrap();
    assert_eq!(pgt.get_leaf(2 * G1 - M2).unwrap().1, Level(2));
    assert_eq!(pgt.get_leaf(2 * G1).unwrap().1, Level(2));
}

#[test]
fn consulted_before_idmap_and_prot_checks() {
    let mut pgt = host_s2();
    let mut mc = Mc { nobjs: 10 };
    assert_eq!(
        pgt.map(G1, P, G1 + P, Prot::RWX, Some(&mut mc), WalkFlags::empty()),
        Err(Error::Inval)
    );
    assert_eq!(
        pgt.env_mut().take_events(),
        [
            Ev::ForcePte {
                addr: G1,
                end: G1 + P,
                prot: Prot::RWX
            },
            Ev::Warn { once: false }
        ]
    );
    assert_eq!(
        idmap(&mut pgt, G1, P, Prot::RWX | Prot::DEVICE),
        Err(Error::Inval)
    );
    assert_eq!(
        pgt.env_mut().take_events(),
        [Ev::ForcePte {
            addr: G1,
            end: G1 + P,
            prot: Prot::RWX | Prot::DEVICE
        }]
    );
    // The end is computed with wrapping arithmetic, unaligned as given.
    let _ = idmap(&mut pgt, G1 + 0x10, 0x20, Prot::RWX);
    assert_eq!(
        cb_calls(&pgt),
        [Ev::ForcePte {
            addr: G1 + 0x10,
            end: G1 + 0x30,
            prot: Prot::RWX
        }]
    );
}

#[test]
fn not_consulted_by_other_operations() {
    let mut pgt = host_s2();
    let mut mc = Mc { nobjs: 600 };
    idmap(&mut pgt, G1, M2, Prot::RWX).unwrap();
    pgt.env_mut().take_events();
    pgt.set_owner(G1 + M2, M2, Some(&mut mc), 1).unwrap();
    pgt.split(G1, M2, &mut mc).unwrap();
    pgt.create_unlinked(G1, Level(2), Prot::RW, Some(&mut mc), false)
        .unwrap();
    pgt.unmap(G1, M2).unwrap();
    pgt.wrprotect(G1, 2 * M2).unwrap();
    assert!(cb_calls(&pgt).is_empty());
}

#[test]
fn forced_pages_do_not_collapse_tables_but_blocks_do() {
    let mut pgt = host_s2();
    // A stray page inside an otherwise unmapped 2MiB memory range.
    idmap(&mut pgt, G1 + P, P, Prot::R).unwrap();
    let l3 = ARENA_BASE + 3 * P;
    // Remapping the whole range with a non-default prot: still pages, and
    // the existing level-3 table is kept.
    pgt.env_mut().take_events();
    idmap(&mut pgt, G1, M2, Prot::RW).unwrap();
    assert!(
        !pgt.env()
            .events
            .iter()
            .any(|e| matches!(e, Ev::FreeUnlinked { .. }))
    );
    assert_eq!(pgt.env().refcount(l3), 513);
    // The default prot: the table is replaced by a block and freed.
    pgt.env_mut().take_events();
    idmap(&mut pgt, G1, M2, Prot::RWX).unwrap();
    assert!(
        pgt.env()
            .events
            .contains(&Ev::FreeUnlinked { pa: l3, level: 2 })
    );
    assert_eq!(pgt.env().refcount(l3), 0);
    assert_eq!(pgt.get_leaf(G1 + P).unwrap().1, Level(2));
}

#[test]
fn closure_with_state() {
    // Any FnMut works; here one that counts and forces every other call.
    let cf = cfg(Granule::Size4K, Context::Kernel);
    let vtcr = vtcr_for(&cf, 40);
    let mut n = 0u32;
    let mut pgt = Stage2Pgtable::new(Mock::new(cf, 16), cf);
    pgt.init(
        vtcr,
        Stage2Flags::empty(),
        Some(move |_env: &mut Mock, _a: u64, _e: u64, _p: Prot| {
            n += 1;
            n % 2 == 0
        }),
    )
    .unwrap();
    let mut mc = Mc { nobjs: 16 };
    pgt.map(0, M2, 0, Prot::RW, Some(&mut mc), WalkFlags::empty())
        .unwrap();
    assert_eq!(pgt.get_leaf(0).unwrap().1, Level(2));
    pgt.map(M2, M2, M2, Prot::RW, Some(&mut mc), WalkFlags::empty())
        .unwrap();
    assert_eq!(pgt.get_leaf(M2).unwrap().1, Level(3));
}
