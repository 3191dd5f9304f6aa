/* SPDX-License-Identifier: GPL-2.0-only */
/* kvm-pgtable-diff: what bindgen reads: the kernel's own kvm_pgtable.h
 * (through our stubs) plus the harness contract. */
#include <asm/kvm_pgtable.h>
#include <kpd/ops.h>
#include <kpd/runtime.h>
