// SPDX-License-Identifier: GPL-2.0-only
//! Fuzz target `stage2`: see `kvm_pgtable_diff::fuzz::run`.
#![no_main]
#![deny(unsafe_op_in_unsafe_fn, clippy::undocumented_unsafe_blocks)]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| kvm_pgtable_diff::fuzz::run("stage2", data));
