// SPDX-License-Identifier: GPL-2.0-only
//! The differential oracle: two implementations run on the same stream
//! must produce the same outputs, the same events in the same order, and
//! the same memory and refcounts. Nothing is normalised here except what
//! [`crate::events::WarnLoc`]'s equality does (WARN source locations).

use crate::results::{Outcome, What};
use crate::side::Side;

/// What differs between two outcomes of the same step, if anything.
pub fn compare(a: &Outcome, b: &Outcome) -> Option<What> {
    compare_returns(a, b).or_else(|| {
        (!crate::events::same_trace(&a.trace, &b.trace)).then(|| What::Trace {
            a: a.trace.clone(),
            b: b.trace.clone(),
        })
    })
}

/// The return value and memcache count of one step, in [`compare`]'s order:
/// all there is left to compare when the traces are known equal.
pub fn compare_returns(a: &Outcome, b: &Outcome) -> Option<What> {
    if a.value != b.value {
        return Some(What::Value {
            a: a.value.clone(),
            b: b.value.clone(),
        });
    }
    if a.memcache_left != b.memcache_left {
        return Some(What::MemcacheLeft {
            a: a.memcache_left,
            b: b.memcache_left,
        });
    }
    None
}

/// The first difference between the two sides' live pages: which pages
/// and refcounts, then their bytes.
pub fn compare_memory(a: &dyn Side, b: &dyn Side) -> Option<What> {
    let (a, b) = (a.arena(), b.arena());
    // The lists are built only to report a difference (every input ends here).
    if !a.live().eq(b.live()) {
        return Some(What::LivePages {
            a: a.live().collect(),
            b: b.live().collect(),
        });
    }
    for (pa, _) in a.live() {
        let (x, y) = (a.page_words(pa), b.page_words(pa));
        if x != y {
            let i = x.iter().zip(y).position(|(p, q)| p != q).unwrap_or(0);
            return Some(What::Memory {
                pa: pa + 8 * i as u64,
                a: x[i],
                b: y[i],
            });
        }
    }
    None
}
