// SPDX-License-Identifier: GPL-2.0-only
//! Raw bindings: bindgen's view of the kernel's `kvm_pgtable.h` and our
//! `c-shim/include/kpd/*.h`, plus the table of C builds.
#![allow(
    non_camel_case_types,
    non_upper_case_globals,
    non_snake_case,
    dead_code
)]
#![allow(clippy::all)]
// bindgen's generated `Default` impls hold unsafe blocks we do not write.
#![allow(clippy::undocumented_unsafe_blocks)]

use super::SetInfo;

include!(concat!(env!("OUT_DIR"), "/bindings.rs"));
include!(concat!(env!("OUT_DIR"), "/builds.rs"));
