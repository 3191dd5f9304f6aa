//! Fuzz target `host_stage2`: see `kvm_pgtable_diff::fuzz::run`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| kvm_pgtable_diff::fuzz::run("host_stage2", data));
