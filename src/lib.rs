// SPDX-License-Identifier: GPL-2.0-only
//! kvm-pgtable-diff: a differential fuzzer for Linux's arm64 KVM page-table
//! code (`arch/arm64/kvm/hyp/pgtable.c`) against the `rust-pgtable` port.
#![deny(unsafe_op_in_unsafe_fn, clippy::undocumented_unsafe_blocks)]

pub mod arena;
pub mod c_side;
pub mod caller;
pub mod events;
pub mod executor;
pub mod force_pte;
pub mod fuzz;
pub mod hash;
pub mod known;
pub mod opstream;
pub mod oracle;
pub mod race;
pub mod report;
pub mod results;
pub mod rust_side;
pub mod side;
pub mod tree;
