/* SPDX-License-Identifier: GPL-2.0-only */
/* kvm-pgtable-diff: what bindgen reads: the harness contract only (the ABI of
 * every C build, the run-time settings, the memcache the harness passes).
 * No kernel structure crosses the boundary. */
#include <kpd/api.h>
#include <kpd/memcache.h>
#include <kpd/runtime.h>
