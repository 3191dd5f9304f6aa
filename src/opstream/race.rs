// SPDX-License-Identifier: GPL-2.0-only
//! Scheduled interference: what another CPU or the hardware does to a
//! descriptor while an op walks the table.
//!
//! The harness is single-threaded, so on its own every `cmpxchg` succeeds
//! and no walker ever meets another's locked entry. A [`Race`] attached to
//! an op ([`OpStream::races`]) makes another agent write one descriptor at
//! one precise point of the op: just before the op's descriptor access
//! number [`Race::at`]. Accesses are the kernel's single-copy-atomic ones
//! (`READ_ONCE`, `WRITE_ONCE`, `smp_store_release`, `cmpxchg`, in program
//! order, counted from 0 at the start of the op); both sides count the same
//! accesses, compare their sequences after every op, and apply the race at
//! the same point of their own sequence (`crate::race` does it).
//!
//! What may interfere is what can in the caller's world (docs/CALLERS.md §8 and
//! its legality matrix; [`Race::precondition`] refuses the rest):
//!
//! - [`Interference::Af`]: the hardware sets the access flag of a valid
//!   leaf whose AF is clear (`VTCR_EL2.HA`, which `kvm_get_vtcr` sets
//!   unless the Ampere AC03 workaround is on). Any caller, any op; the
//!   write is a no-op on anything but such a leaf of the live table.
//! - [`Interference::Locked`] and [`Interference::Install`]: another
//!   CPU's map walker, mid-way through break-before-make (the entry holds
//!   the LOCKED marker; it publishes its value at the end of the op) or
//!   done with it (its leaf or new table is in place). Only the kernel's
//!   guest stage-2 has such walkers (fault-path maps, `relax_perms` and
//!   `mkyoung` run `SHARED` under the read side of `mmu_lock` and RCU), and
//!   they only run alongside other `SHARED` walks: every other walk holds
//!   `mmu_lock` for writing, every EL2 caller its table's spinlock.
//!
//! The other agent keeps the table's invariants as the kernel's walker
//! does: it drops the entry's reference on its table page when it breaks a
//! counted entry, takes one for what it publishes, allocates a new table
//! from its own memcache, and hands a table it replaces by a block to
//! `free_unlinked_table` (an RCU-deferred free in the kernel). It never
//! writes what a legal agent could not: a leaf over a locked entry, a
//! table over a table, a block at a level without blocks. Such a race
//! simply does not happen (both sides agree on the table, so on that).
//!
//! [`Race::up`] targets the table entry `up` levels above the accessed
//! descriptor instead: the walker is then inside the subtree another CPU
//! replaces (R4 of docs/CALLERS.md §8), which RCU lets it finish.

use super::codec::{Writer, hex, parse_num, parse_prot, prot_to_string};
use super::generators::{LIT, Reader};
use super::model::*;

/// Interference scheduled at one descriptor access of an op.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Race {
    /// Index (from 0) of the op's descriptor access before which the
    /// descriptor is written.
    pub at: u32,
    /// Which descriptor: 0 the one being accessed, `k` the table entry `k`
    /// levels above it (pointing to the table the walker is in).
    pub up: u8,
    pub what: Interference,
}

/// Largest [`Race::up`].
pub const RACE_UP_MAX: u8 = 3;

/// What the other agent writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Interference {
    /// The hardware sets the access flag of a valid leaf with AF clear.
    Af,
    /// Another walker has locked the entry (its break-before-make is in
    /// progress) and publishes `then` at the end of the op.
    Locked(Install),
    /// Another walker has replaced the entry with this (its whole
    /// break-before-make happened in between two of the op's accesses).
    Install(Install),
}

/// What another walker publishes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Install {
    /// A valid leaf (a block, or a page at the last level) with these
    /// `KVM_PGTABLE_PROT_*` bits, mapping what the entry mapped if it was a
    /// leaf, else what the op maps there (an `s2_map`), else its own IPA.
    Leaf(Prot),
    /// A new, empty table (`stage2_map_walk_leaf` over an invalid entry or
    /// a block).
    Table,
}

impl Interference {
    /// Whether another CPU's software does it (as opposed to the hardware).
    pub fn is_software(self) -> bool {
        !matches!(self, Interference::Af)
    }
}

impl Op {
    /// Whether the op's walk runs concurrently with other walkers: a
    /// `SHARED` walk (the kernel's fault path).
    pub fn walks_shared(&self) -> bool {
        let shared = |f: u8| f & walk_flags::SHARED != 0;
        match *self {
            Op::S2Map { flags, .. }
            | Op::S2MkyoungFlags { flags, .. }
            | Op::S2RelaxPermsFlags { flags, .. }
            | Op::Walk { flags, .. } => shared(flags),
            // 6.12 walks with HANDLE_FAULT | SHARED, whatever the caller.
            Op::S2Mkyoung { .. } | Op::S2RelaxPerms { .. } => true,
            _ => false,
        }
    }
}

impl Race {
    /// `Err(reason)` when no agent of the stream's caller could do this
    /// while `op` runs: the op is then not run on either side.
    pub fn precondition(&self, op: &Op, cfg: &Config) -> Result<(), &'static str> {
        if cfg.stage != Stage::Stage2 {
            return Err("interference is modelled on stage-2 tables only");
        }
        match self.what {
            Interference::Af if cfg.features.ampere_ac03 => Err(
                "the hardware never sets the access flag under the Ampere AC03 workaround \
                 (kvm_get_vtcr leaves VTCR_EL2.HA clear)",
            ),
            Interference::Af => Ok(()),
            _ if cfg.caller() != Caller::KvmGuest => Err(
                "only the kernel's guest stage-2 has concurrent walkers: every EL2 caller \
                 holds its table's lock (host_mmu.lock, vm->lock) for every walk",
            ),
            _ if !op.walks_shared() => Err(
                "another walker runs only alongside SHARED walks (fault-path map, \
                 relax_perms, mkyoung under the read side of mmu_lock); this walk holds \
                 mmu_lock for writing",
            ),
            _ => Ok(()),
        }
    }

    // ----------------------------------------------------------- binary

    /// Appends the race's fields (after the race tag) as literals.
    pub(crate) fn encode_into(&self, w: &mut Writer) {
        w.lit32(self.at);
        let (kind, prot) = match self.what {
            Interference::Af => (0, None),
            Interference::Install(Install::Leaf(p)) => (1, Some(p)),
            Interference::Install(Install::Table) => (2, None),
            Interference::Locked(Install::Leaf(p)) => (3, Some(p)),
            Interference::Locked(Install::Table) => (4, None),
        };
        w.lit8(kind | self.up << 3);
        if let Some(p) = prot {
            w.lit64(p);
        }
    }

    /// Reads a race's fields (after the race tag). Literal modes read
    /// exactly what [`Race::encode_into`] writes; the other modes make
    /// choices that wait for the op the race goes with ([`Armed::resolve`]).
    pub(crate) fn decode(r: &mut Reader, cfg: &Config) -> Armed {
        let m = r.u8();
        let at = match m {
            LIT => r.u32(),
            _ => match m % 8 {
                0..=3 => u32::from(r.u8() % 16),
                4 | 5 => u32::from(r.u8() % 64),
                6 => u32::from(r.u8()),
                _ => u32::from(r.u16()),
            },
        };
        let m = r.u8();
        let spec = if m == LIT {
            let b = r.u8();
            let prot = matches!(b & 7, 1 | 3).then(|| read_prot(r, cfg));
            Spec::Exact(b, prot)
        } else {
            // The prot is read whatever the kind turns out to be, so the
            // bytes consumed do not depend on the op that follows.
            Spec::Biased {
                m,
                prot: read_prot(r, cfg),
            }
        };
        Armed { at, spec }
    }

    /// Whether the decoder can produce this race.
    pub fn validate(&self) -> Result<(), String> {
        if self.up > RACE_UP_MAX {
            return Err(format!("race up{} above up{RACE_UP_MAX}", self.up));
        }
        Ok(())
    }

    // ------------------------------------------------------------- text

    /// Text form: `AT:[upK:]WHAT` with WHAT one of `af`, `leaf(PROT)`,
    /// `table`, `locked>leaf(PROT)`, `locked>table`.
    pub fn text(&self, cfg: &Config) -> String {
        let install = |i: Install| match i {
            Install::Leaf(p) => format!("leaf({})", prot_to_string(p, cfg.kernel.prot())),
            Install::Table => "table".into(),
        };
        let what = match self.what {
            Interference::Af => "af".into(),
            Interference::Install(i) => install(i),
            Interference::Locked(i) => format!("locked>{}", install(i)),
        };
        match self.up {
            0 => format!("{}:{what}", self.at),
            k => format!("{}:up{k}:{what}", self.at),
        }
    }

    /// Parses [`Race::text`].
    pub fn parse(s: &str, cfg: &Config) -> Result<Race, String> {
        let bad = || {
            format!(
                "expected AT:[upK:]WHAT with WHAT af, leaf(PROT), table, locked>leaf(PROT) \
                 or locked>table (e.g. 3:locked>leaf(RW)), got `{s}`"
            )
        };
        let (at, rest) = s.split_once(':').ok_or_else(bad)?;
        let at: u32 = parse_num(at, "race access index")?;
        let (up, what) = match rest.split_once(':') {
            Some((u, w)) if u.starts_with("up") => (parse_num::<u8>(&u[2..], "race up")?, w),
            _ => (0, rest),
        };
        let install = |t: &str| -> Result<Install, String> {
            if t == "table" {
                return Ok(Install::Table);
            }
            let p = t
                .strip_prefix("leaf(")
                .and_then(|t| t.strip_suffix(')'))
                .ok_or_else(bad)?;
            Ok(Install::Leaf(parse_prot(p, cfg.kernel.prot())?))
        };
        let what = match what {
            "af" => Interference::Af,
            w => match w.strip_prefix("locked>") {
                Some(i) => Interference::Locked(install(i)?),
                None => Interference::Install(install(w)?),
            },
        };
        let race = Race { at, up, what };
        race.validate()?;
        Ok(race)
    }
}

/// A leaf's prot: a literal, or one of the prots a fault maps with.
fn read_prot(r: &mut Reader, cfg: &Config) -> Prot {
    let l = cfg.kernel.prot();
    let m = r.u8();
    match m {
        LIT => r.u64(),
        _ => [
            l.r,
            l.rw(),
            l.rwx(),
            l.r | l.x(),
            l.rw() | prot::SW0,
            l.rwx() | prot::SW1,
        ][m as usize % 6],
    }
}

/// A race read from fuzzer bytes, before the op it goes with is known.
pub(crate) struct Armed {
    at: u32,
    spec: Spec,
}

enum Spec {
    /// A literal: kind | up << 3, and a leaf's prot.
    Exact(u8, Option<Prot>),
    /// A biased mode byte and a prot.
    Biased { m: u8, prot: Prot },
}

impl Armed {
    /// The race for `op`. Biased modes pick what can happen while this op
    /// runs in the stream's caller's world: for the kernel's SHARED walks
    /// mostly another walker (locked mid-way or done; now and then the
    /// entry above, its table replaced under the walker), for any other op
    /// the hardware's access flag; one in sixteen picks anything, so that
    /// refused races are tried too.
    pub(crate) fn resolve(self, op: &Op, cfg: &Config) -> Race {
        let (spec, prot) = match self.spec {
            Spec::Exact(b, p) => (b, p.unwrap_or(0)),
            Spec::Biased { m, prot } => {
                let walkers = cfg.caller() == Caller::KvmGuest && op.walks_shared();
                let kind = match (walkers, m % 16) {
                    (_, 15) => (m >> 4) % 5,
                    (false, _) => 0,
                    (true, 0..=3) => 3,
                    (true, 4 | 5) => 1,
                    (true, 6 | 7) => 4,
                    (true, 8 | 9) => 2,
                    (true, _) => 0,
                };
                let up = u8::from(walkers && matches!(kind, 1 | 3) && m >> 4 >= 12);
                (kind | up << 3, prot)
            }
        };
        let what = match spec & 7 {
            1 => Interference::Install(Install::Leaf(prot)),
            2 => Interference::Install(Install::Table),
            3 => Interference::Locked(Install::Leaf(prot)),
            4 => Interference::Locked(Install::Table),
            _ => Interference::Af,
        };
        Race {
            at: self.at,
            up: (spec >> 3) & RACE_UP_MAX,
            what,
        }
    }
}

impl std::fmt::Display for Install {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Install::Leaf(p) => write!(f, "leaf(prot {})", hex(*p)),
            Install::Table => f.write_str("table"),
        }
    }
}
