// SPDX-License-Identifier: GPL-2.0-only
//! Operation streams for the differential fuzzer.
//!
//! An [`OpStream`] is a [`Config`] plus a list of [`Op`]s, one variant per
//! KVM page-table API function. Both implementations (pgtable.c and the
//! Rust port) are driven with the same stream. This module is
//! self-contained (std only) and provides three representations:
//!
//! * the typed model ([`model`]),
//! * a compact binary form for fuzzer inputs ([`decode`] / [`encode`],
//!   biased value generators in `generators`),
//! * a human-readable text form ([`parse`] / [`print()`]), which is the
//!   source of truth for committed scenarios.
//!
//! # Why a hand-written binary format instead of `#[derive(Arbitrary)]`
//!
//! 1. **Total decoding.** Every byte string, including the empty one, must
//!    decode to a valid stream: no errors, no rejected inputs. Running out
//!    of bytes reads zeros and ends the op list.
//! 2. **Exact encoding.** We need [`encode`] such that a readable
//!    scenario produces exactly the fuzzer input that decodes back to it:
//!    `decode(&encode(&s), Profile::Any) == s` for every valid `s`
//!    ([`OpStream::validate`]). `arbitrary` has no inverse.
//! 3. **Corpus stability.** `arbitrary`'s derive reinterprets every input
//!    whenever an enum gains a variant or a loop bound changes (its choice
//!    and length decoding depends on variant counts and on the remaining
//!    input length), silently turning the committed corpus into noise.
//!
//! Mitigations built into the format:
//!
//! * Op tags are explicit, stable numbers in a 64-slot table
//!   ([`TAG_TABLE`], `tag byte & 63`). Slots 0..=17 and 56..=58 are the
//!   canonical tags ([`OpKind::tag`]), further slots weight the random op
//!   mix, and the unassigned slots 59..=63 alias to `GetLeaf`. A new op
//!   takes an unassigned slot, so only inputs that used that alias slot
//!   change. A kernel line whose API replaced an op maps the tags of the
//!   one to the other ([`OpKind::on_line`]).
//! * Every value is a mode byte plus payload; mode `0xFF` is always a
//!   literal little-endian value and means the same in every profile. The
//!   encoder only uses literals and canonical tags.
//! * The first byte is a format version ([`FORMAT_VERSION`]), read as-is:
//!   unknown versions still decode with the latest rules.
//! * The committed corpus is always regenerated from the text scenarios
//!   (`cargo xtask corpus`); the text files are the source of truth.
//!
//! Non-literal modes are biased toward what finds bugs: page, block and
//! table boundaries of the configured granule, ranges straddling them,
//! the `ia_bits` limit, unaligned starts, zero/tiny/huge/wrapping sizes,
//! memcaches around `PTRS_PER_PTE`, levels -1..=3 (and out of range),
//! meaningful prot sets, and reuse of earlier addresses and sizes.
//!
//! [`Profile`]s specialise fuzz targets (Hyp, Stage2, HostStage2, Walk,
//! Unlinked, Any); they only change how non-literal modes, choices and
//! non-canonical tags are mapped (and force some config fields), so
//! [`encode`] is profile-independent.

pub mod binary;
pub mod codec;
mod generators;
pub mod model;
pub mod ops;
pub mod profile;
pub mod race;
pub mod text;

pub use binary::{
    FORMAT_VERSION, RACE_TAG, TAG_TABLE, decode, decode_on, encode, kind_for_tag, races_decoded,
};
pub use codec::{parse_prot, parse_walk_flags, prot_to_string, walk_flags_to_string};
pub use model::*;
pub use profile::Profile;
pub use text::{ParseError, TEXT_HEADER, is_text, op_lines, parse, print};

#[cfg(test)]
mod tests;
