// SPDX-License-Identifier: GPL-2.0-only
//! The `force_pte_cb` policies the harness installs on stage-2 tables.
//!
//! One implementation answers for both sides, so a difference in when or
//! with what arguments the callback is consulted shows up as a difference in
//! the `ForcePteCb` events, not as a difference in policy.

use crate::events::{Event, Record};

use crate::opstream::ProtLayout;

/// A memory region of the pKVM host's physical memory map.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemRegion {
    pub start: u64,
    pub size: u64,
}

/// Which `force_pte_cb` a stage-2 table is created with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ForcePte {
    /// No callback (NULL).
    None,
    /// pKVM host style: a range inside one memory region is forced to pages
    /// unless prot is `PKVM_HOST_MEM_PROT` (RWX); any other range (MMIO)
    /// unless prot is `PKVM_HOST_MMIO_PROT` (RW), both in the kernel line's
    /// prot layout.
    Host {
        memory: Vec<MemRegion>,
        prot: ProtLayout,
    },
    /// Answer bit `n % 64` of `pattern` on the n-th call.
    Arbitrary { pattern: u64, calls: u32 },
}

impl ForcePte {
    /// Whether a callback is installed at all.
    pub fn installed(&self) -> bool {
        !matches!(self, ForcePte::None)
    }

    /// The callback: decides and records the question and the answer.
    pub fn decide(&mut self, addr: u64, end: u64, prot: u64, trace: &mut impl Record) -> bool {
        let answer = match self {
            ForcePte::None => false,
            ForcePte::Host { memory, prot: l } => {
                // Like pKVM's range_is_memory(): the region holding `addr`
                // must also hold the whole range.
                let is_memory = memory.iter().any(|r| {
                    addr >= r.start
                        && addr - r.start < r.size
                        && end <= r.start.saturating_add(r.size)
                });
                if is_memory {
                    prot != l.rwx()
                } else {
                    prot != l.rw()
                }
            }
            ForcePte::Arbitrary { pattern, calls } => {
                let bit = (*pattern >> (*calls % 64)) & 1 == 1;
                *calls += 1;
                bit
            }
        };
        trace.push(Event::ForcePteCb {
            addr,
            end,
            prot,
            answer,
        });
        answer
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::Trace;

    #[test]
    fn host_policy_follows_pkvm() {
        // 6.12: R bit 2, W bit 1, X bit 0; 7.x: R bit 3, W bit 2, X bits 1:0.
        for (l, rwx, rw, r) in [
            (ProtLayout::V6_12, 0b111, 0b110, 0b100),
            (ProtLayout::V7, 0b1111, 0b1100, 0b1000),
        ] {
            let mut p = ForcePte::Host {
                memory: vec![MemRegion {
                    start: 0x8000_0000,
                    size: 0x4000_0000,
                }],
                prot: l,
            };
            let mut t = Trace::new();
            // Memory: only RWX may use blocks.
            assert!(!p.decide(0x8000_0000, 0x8020_0000, rwx, &mut t));
            assert!(p.decide(0x8000_0000, 0x8020_0000, rw, &mut t));
            // Straddling the end of memory counts as MMIO.
            assert!(!p.decide(0xbfe0_0000, 0xc020_0000, rw, &mut t));
            // MMIO: only RW may use blocks.
            assert!(!p.decide(0x1000_0000, 0x1020_0000, rw, &mut t));
            assert!(p.decide(0x1000_0000, 0x1020_0000, r, &mut t));
            assert_eq!(t.len(), 5);
        }
    }

    #[test]
    fn arbitrary_policy_walks_the_pattern() {
        let mut p = ForcePte::Arbitrary {
            pattern: 0b101,
            calls: 0,
        };
        let mut t = Trace::new();
        let answers: Vec<bool> = (0..3).map(|_| p.decide(0, 0x1000, 0b100, &mut t)).collect();
        assert_eq!(answers, [true, false, true]);
    }
}
