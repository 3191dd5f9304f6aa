// SPDX-License-Identifier: GPL-2.0-only
//! The other agents of a scheduled race, and the descriptor-access count
//! that says when they act.
//!
//! # Counting accesses
//!
//! Both sides announce every single-copy-atomic descriptor access before
//! making it: the C stubs of `READ_ONCE`, `WRITE_ONCE`,
//! `smp_store_release` and `cmpxchg` (c-shim `kpd/recorder.h`), and
//! rust-pgtable's memory module through [`rust_pgtable::Hw::pte_access`].
//! The kernel's plain `*ptep` loads cannot be hooked in C and are not
//! announced by the port either (it reads them with a plain load where the
//! kernel does). Each side numbers its accesses from 0 at the start of an
//! op and folds each (address, kind) into a [`Tally`] digest; the op's
//! trace ends with [`Event::Accesses`], so two sides that disagree on a
//! single access are a finding, and a race's access index means the same
//! point in both.
//!
//! Counting must be cheap (the fuzzers count every access): the C side
//! keeps its count and digest in its thread's runtime and calls back only
//! at the access the [`Injector`] asked for; the Rust side does the same
//! in its environment.
//!
//! # Acting
//!
//! At the access a race is scheduled for, the [`Injector`] finds the
//! descriptor (or the entry [`Race::up`] levels above it) in the live
//! table, and, if the agent could write it at all (a leaf for the
//! hardware's access flag; for another walker, an entry that is not
//! locked, a leaf where the level has leaves, a table where there is
//! none), writes it and does what that agent does to the table's
//! bookkeeping (see `opstream::race`), recording [`Event::Interference`].
//! A locked entry is published at the end of the walk
//! ([`Injector::end_walk`], [`Event::Published`]). A table another walker
//! replaced goes to the side's RCU list like one its own walker unlinked;
//! when the op's walker was inside it, the arena lets the walker finish
//! there ([`Arena::defer_free_entered`]) until it accesses a table at or
//! above the replaced entry's level again.
//!
//! Descriptor values another walker writes are built with rust-pgtable's
//! encoders (`Pte::new_valid_leaf`, `stage2_set_prot_attr`,
//! `Pte::new_table`, `Pte::locked`); both sides get the same value.

use std::collections::{HashMap, HashSet};

use rust_pgtable as rp;

use crate::arena::Arena;
use crate::events::{Access, Event, Record, Trace};
use crate::opstream::{Config, Install, Interference, KernelLine, Op, Race};
use crate::side::Root;
use crate::tree::Format;

/// Seed of the access digest (FNV-1a's offset basis).
pub const DIGEST_SEED: u64 = 0xcbf2_9ce4_8422_2325;
/// Multiplier of the access digest (FNV-1a's 64-bit prime).
pub const DIGEST_PRIME: u64 = 0x0000_0100_0000_01b3;
/// "Never": no access index reaches it.
pub const NEVER: u64 = u64::MAX;

/// Folds one access into a digest: `offset` is the descriptor's offset from
/// the arena's first page (the same on both sides), 8-byte aligned, so the
/// kind fits in its low bits. The C side's `kpd_access` computes the same.
#[inline]
pub fn mix(digest: u64, offset: u64, access: Access) -> u64 {
    (digest ^ (offset | access as u64)).wrapping_mul(DIGEST_PRIME)
}

/// The descriptor accesses of one op, as one side counts them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tally {
    pub count: u64,
    pub digest: u64,
}

impl Tally {
    pub const START: Tally = Tally {
        count: 0,
        digest: DIGEST_SEED,
    };

    /// The event that ends an op's trace.
    pub fn event(self) -> Event {
        Event::Accesses {
            count: self.count,
            digest: self.digest,
        }
    }
}

/// What a race acts on besides the injector: one side's world.
pub struct World<'a> {
    pub arena: &'a mut Arena,
    pub trace: &'a mut dyn Record,
    /// The side's unlinked tables waiting for an RCU grace period.
    pub rcu: &'a mut Vec<(u64, i8, Vec<u64>)>,
}

/// How the stream's descriptors are read and written.
#[derive(Clone, Copy, Debug)]
struct Scene {
    fmt: Format,
    cfg: rp::Config,
    s2flags: rp::Stage2Flags,
    line: KernelLine,
}

/// A locked entry the other walker publishes at the end of the walk.
#[derive(Clone, Copy, Debug)]
struct Publish {
    pa: u64,
    level: i8,
    /// The entry before it was locked (a table is unlinked on publishing).
    before: u64,
    new: u64,
}

/// A table unlinked while the walker was inside it, until it leaves.
#[derive(Clone, Debug)]
struct Inside {
    pages: Vec<u64>,
    /// Live table pages at or above the replaced entry's level: touching
    /// one means the walker has come back up.
    above: HashSet<u64>,
}

/// Applies one op's race on one side, and keeps what it needs between the
/// op's accesses.
#[derive(Debug, Default)]
pub struct Injector {
    scene: Option<Scene>,
    root: Option<Root>,
    race: Option<Race>,
    /// What an `s2_map` maps at its start: (IPA, PA).
    map: Option<(u64, u64)>,
    pending: Option<Publish>,
    inside: Option<Inside>,
    /// Every access of the op, when asked for (checks and reports).
    log: Option<Vec<(u64, Access)>>,
}

impl Injector {
    /// An injector for streams configured by `cfg`.
    pub fn new(cfg: &Config) -> Injector {
        let scene = (cfg.stage == crate::opstream::Stage::Stage2).then(|| Scene {
            fmt: crate::side::format_of(cfg),
            cfg: crate::rust_side::rp_config(cfg),
            s2flags: rp::Stage2Flags::from_bits_retain(crate::side::stage2_flags(cfg)),
            line: cfg.kernel,
        });
        Injector {
            scene,
            ..Injector::default()
        }
    }

    /// Records every access of the following ops ([`Injector::take_log`]).
    pub fn keep_log(&mut self, on: bool) {
        self.log = on.then(Vec::new);
    }

    /// The accesses recorded since the last call, when [`Injector::keep_log`]
    /// is on.
    pub fn take_log(&mut self) -> Option<Vec<(u64, Access)>> {
        self.log.as_mut().map(std::mem::take)
    }

    /// Arms `race` for the walk of `op` (None: the teardown) on the table
    /// at `root`. Returns the first access index at which the side must
    /// call [`Injector::on_access`].
    pub fn begin_op(&mut self, op: Option<&Op>, race: Option<&Race>, root: Option<Root>) -> u64 {
        self.race = race.copied().filter(|_| self.scene.is_some());
        self.root = root;
        self.map = match op {
            Some(&Op::S2Map { addr, phys, .. }) => Some((addr, phys)),
            _ => None,
        };
        self.pending = None;
        self.inside = None;
        self.next_stop(None)
    }

    /// The next access index to stop at after `index` (or from the start).
    fn next_stop(&self, index: Option<u64>) -> u64 {
        let next = index.map_or(0, |i| i + 1);
        if self.log.is_some() || self.inside.is_some() {
            return next;
        }
        match self.race {
            Some(r) if u64::from(r.at) >= next => u64::from(r.at),
            _ => NEVER,
        }
    }

    /// Access number `index`, of kind `access` to the descriptor at `pa`,
    /// is about to happen. Returns the next index to stop at.
    pub fn on_access(&mut self, index: u64, pa: u64, access: Access, w: World) -> u64 {
        if let Some(log) = &mut self.log {
            log.push((pa, access));
        }
        let page = w.arena.geometry().page_size;
        if let Some(inside) = &self.inside {
            if inside.above.contains(&(pa & !(page - 1))) {
                w.arena.revoke_entered(&inside.pages);
                self.inside = None;
            }
        }
        if let Some(race) = self.race.filter(|r| u64::from(r.at) == index) {
            self.race = None;
            self.fire(race, index as u32, pa, access, w);
        }
        self.next_stop(Some(index))
    }

    /// The op's walk is over after `count` accesses: the other walker
    /// publishes what it locked, and a walker that was inside an unlinked
    /// table has left it. Returns the next access index to stop at (the
    /// rest of the op, e.g. RCU callbacks, is only logged).
    pub fn end_walk(&mut self, count: u64, w: World) -> u64 {
        self.race = None;
        if let Some(inside) = self.inside.take() {
            w.arena.revoke_entered(&inside.pages);
        }
        self.publish(w);
        if self.log.is_some() { count } else { NEVER }
    }

    fn publish(&mut self, w: World) {
        let Some(p) = self.pending.take() else {
            return;
        };
        let scene = self.scene.expect("a pending publish has a scene");
        let old = w.arena.read(p.pa).unwrap_or(0);
        get_page(w.arena, p.pa);
        w.arena.store_foreign(p.pa, p.new);
        w.trace.push(Event::Published {
            pa: p.pa,
            old,
            new: p.new,
        });
        if scene.fmt.is_table(p.before, p.level) {
            unlink(scene, p.before, p.level, None, w);
        }
    }

    fn fire(&mut self, race: Race, at: u32, pa: u64, access: Access, w: World) {
        let (Some(scene), Some(root)) = (self.scene, self.root) else {
            return;
        };
        let tree = LiveTree::build(w.arena, scene.fmt, root);
        let Some(target) = tree.ancestor(pa, race.up, w.arena.geometry().page_size, scene.fmt)
        else {
            // Not in the live table: no other agent can reach it.
            return;
        };
        let Some(old) = w.arena.read(target.pa) else {
            return;
        };
        let locked = rp::Pte(old).is_locked_in(line(scene.line));
        let new = match race.what {
            Interference::Af => {
                let af = rp::pte_bits::S2_AF;
                let leaf = old & 1 == 1 && !scene.fmt.is_table(old, target.level);
                if !leaf || old & af != 0 {
                    return;
                }
                w.arena.store_foreign(target.pa, old | af);
                old | af
            }
            Interference::Install(what) | Interference::Locked(what) => {
                if locked {
                    return;
                }
                let locks = matches!(race.what, Interference::Locked(_));
                let Some(new) = self.publishable(scene, old, what, locks, target, w.arena) else {
                    return;
                };
                // Break: the entry's reference on its table page goes.
                if old != 0 {
                    put_page(w.arena, target.pa);
                }
                if let Interference::Locked(_) = race.what {
                    let lock = rp::Pte::locked(line(scene.line)).0;
                    w.arena.store_foreign(target.pa, lock);
                    self.pending = Some(Publish {
                        pa: target.pa,
                        level: target.level,
                        before: old,
                        new,
                    });
                    lock
                } else {
                    get_page(w.arena, target.pa);
                    w.arena.store_foreign(target.pa, new);
                    new
                }
            }
        };
        w.trace.push(Event::Interference {
            at,
            access,
            pa: target.pa,
            old,
            new,
        });
        if race.what.is_software()
            && !matches!(race.what, Interference::Locked(_))
            && scene.fmt.is_table(old, target.level)
        {
            let inside = (race.up > 0).then(|| tree.at_or_above(target.level));
            if let Some(pages) = unlink(scene, old, target.level, inside, w) {
                self.inside = Some(pages);
            }
        }
    }

    /// What another walker publishes over `old` at `target`, if it can:
    /// a leaf where the level has leaves (mapping what `old` mapped, else
    /// what the op maps there, else the entry's IPA), a new table over an
    /// invalid entry or a block. A leaf it `locks` the entry for must
    /// differ from `old` in more than permissions: for those alone the
    /// kernel's map walker does not break the entry
    /// (`stage2_pte_needs_update`), it is relax_perms' single cmpxchg.
    fn publishable(
        &self,
        scene: Scene,
        old: u64,
        what: Install,
        locks: bool,
        target: Entry,
        arena: &mut Arena,
    ) -> Option<u64> {
        let level = rp::Level(target.level);
        let old_table = scene.fmt.is_table(old, target.level);
        match what {
            Install::Leaf(prot) => {
                let g = scene.cfg.granule;
                if target.level != 3 && !g.level_supports_block_mapping(level) {
                    return None;
                }
                let size = g.granule_size(level);
                let oa = if old & 1 == 1 && !old_table {
                    scene.fmt.output_address(old)
                } else if let Some((addr, phys)) = self.map {
                    phys.wrapping_add(target.ia.wrapping_sub(addr))
                } else {
                    target.ia
                };
                let oa = oa & !(size - 1);
                let prot = rp::Prot::from_bits_retain(prot);
                let attr = rp::stage2_set_prot_attr(&scene.cfg, scene.s2flags, prot).ok()?;
                let new = rp::Pte::new_valid_leaf(oa, attr, level, &scene.cfg).0;
                let perms_only = old & 1 == 1 && (old ^ new) & !line(scene.line).s2_perms() == 0;
                (new != old && !(locks && perms_only)).then_some(new)
            }
            Install::Table => {
                if target.level >= 3 || old_table {
                    return None;
                }
                let page = arena.zalloc_foreign()?;
                Some(rp::Pte::new_table(page, &scene.cfg).0)
            }
        }
    }
}

fn line(l: KernelLine) -> rp::KernelLine {
    crate::rust_side::rp_line(l)
}

/// Another CPU's reference on a table page (nothing of this side's trace).
fn get_page(arena: &mut Arena, pa: u64) {
    arena.get_page(pa, &mut Trace::new());
}

fn put_page(arena: &mut Arena, pa: u64) {
    arena.put_page(pa, &mut Trace::new());
}

/// Another CPU's `free_unlinked_table` of the table `pte` pointed to from
/// a level-`level` entry: the kernel's caller defers it to an RCU grace
/// period. With `inside` (the pages at or above the entry's level), the
/// op's walker is inside the table: RCU lets it finish there.
fn unlink(
    scene: Scene,
    pte: u64,
    level: i8,
    inside: Option<HashSet<u64>>,
    w: World,
) -> Option<Inside> {
    let child = scene.fmt.output_address(pte);
    let pages = crate::caller::unlinked_pages(w.arena, scene.fmt, child, level);
    let inside = match inside {
        Some(above) => {
            w.arena.defer_free_entered(&pages);
            Some(Inside {
                pages: pages.clone(),
                above,
            })
        }
        None => {
            w.arena.defer_free(&pages);
            None
        }
    };
    w.rcu.push((child, level, pages));
    inside
}

/// A descriptor of the live table.
#[derive(Clone, Copy, Debug)]
struct Entry {
    pa: u64,
    level: i8,
    /// The IPA it translates.
    ia: u64,
}

/// Where a table page sits in the live tree.
#[derive(Clone, Copy, Debug)]
struct Node {
    level: i8,
    base: u64,
    /// The entry pointing to it (None for the root pages).
    parent: Option<u64>,
}

/// The table pages reachable from the root, with their parents.
struct LiveTree {
    nodes: HashMap<u64, Node>,
}

impl LiveTree {
    fn build(arena: &Arena, fmt: Format, root: Root) -> LiveTree {
        let mut t = LiveTree {
            nodes: HashMap::new(),
        };
        let page = arena.geometry().page_size;
        let span = fmt.entry_size(root.start_level).saturating_mul(page / 8);
        let mut stack: Vec<(u64, Node)> = (0..u64::from(root.pages))
            .map(|i| {
                let node = Node {
                    level: root.start_level,
                    base: span.wrapping_mul(i),
                    parent: None,
                };
                (root.pgd + i * page, node)
            })
            .collect();
        while let Some((pa, node)) = stack.pop() {
            if !(-1..=3).contains(&node.level)
                || arena.read(pa).is_none()
                || t.nodes.insert(pa, node).is_some()
            {
                continue;
            }
            if node.level == 3 {
                continue;
            }
            for (i, &d) in arena.page_words(pa).iter().enumerate() {
                if fmt.is_table(d, node.level) {
                    let child = Node {
                        level: node.level + 1,
                        base: node
                            .base
                            .wrapping_add((i as u64).wrapping_mul(fmt.entry_size(node.level))),
                        parent: Some(pa + 8 * i as u64),
                    };
                    stack.push((fmt.output_address(d), child));
                }
            }
        }
        t
    }

    fn entry(&self, pa: u64, page: u64, fmt: Format) -> Option<Entry> {
        let node = self.nodes.get(&(pa & !(page - 1)))?;
        let index = (pa & (page - 1)) / 8;
        Some(Entry {
            pa,
            level: node.level,
            ia: node
                .base
                .wrapping_add(index.wrapping_mul(fmt.entry_size(node.level))),
        })
    }

    /// The descriptor at `pa`, or the entry `up` levels above it.
    fn ancestor(&self, pa: u64, up: u8, page: u64, fmt: Format) -> Option<Entry> {
        let mut e = self.entry(pa, page, fmt)?;
        for _ in 0..up {
            let parent = self.nodes.get(&(e.pa & !(page - 1)))?.parent?;
            e = self.entry(parent, page, fmt)?;
        }
        Some(e)
    }

    /// The table pages holding entries of `level` or above.
    fn at_or_above(&self, level: i8) -> HashSet<u64> {
        self.nodes
            .iter()
            .filter(|(_, n)| n.level <= level)
            .map(|(&pa, _)| pa)
            .collect()
    }
}
