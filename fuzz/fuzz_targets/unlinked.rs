//! Fuzz target `unlinked`: see `kvm_pgtable_diff::fuzz::run`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| kvm_pgtable_diff::fuzz::run("unlinked", data));
