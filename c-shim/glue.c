/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * kvm-pgtable-diff: appended to each build of pgtable.c (build.rs writes one
 * translation unit per build, `$OUT_DIR/units/<ctx>_<granule>.c`, that
 * defines the build's rename macros, includes pgtable.c, then this file).
 * The function names KPD_API expands to are therefore this build's renamed
 * ones.
 */
#include <kpd/ops.h>

#define KPD_OPS_INIT(member, fn, ret, params) .member = fn,

const struct kpd_ops KPD_OPS_SYMBOL = {
	.name = KPD_BUILD_NAME,
	.page_shift = PAGE_SHIFT,
#ifdef __KVM_NVHE_HYPERVISOR__
	.nvhe = true,
#else
	.nvhe = false,
#endif
	KPD_API(KPD_OPS_INIT)
};
