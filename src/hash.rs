// SPDX-License-Identifier: GPL-2.0-only
//! A hasher for maps keyed by aligned addresses, cheaper than the standard
//! library's SipHash on the per-descriptor paths of the oracles.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// A cheap hasher for keys that are aligned addresses (and a level): the
/// architecture oracle's stale-entry index, the tree index's table pages.
#[derive(Default)]
pub struct FoldHasher(u64);

impl Hasher for FoldHasher {
    fn finish(&self) -> u64 {
        // The multiply mixes upward only, and the keys' addresses are aligned (a 4K page's
        // low 12 bits, a 2M block's low 21, are zero), so the product's low bits hold only the
        // level: the table picks buckets by the low bits, and every key of a level probed the
        // same run of buckets. The rotation brings the well-mixed high bits down.
        self.0.rotate_left(26)
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = (self.0.rotate_left(5) ^ v).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
    fn write_i8(&mut self, v: i8) {
        self.write_u64(v as u64);
    }
}

/// A `HashMap` hashed with [`FoldHasher`].
pub type FoldMap<K, V> = HashMap<K, V, BuildHasherDefault<FoldHasher>>;
