/* SPDX-License-Identifier: GPL-2.0-only */
/* kvm-pgtable-diff: per-thread run-time settings shared by all C builds. */
#include <kpd/runtime.h>

_Thread_local struct kpd_runtime kpd_rt = { .acc_stop = ~0ULL };

struct kpd_runtime *kpd_runtime_get(void)
{
	return &kpd_rt;
}
