/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * kvm-pgtable-diff: the memcache the harness hands to pgtable.c.  pgtable.c
 * only reads `nobjs` (split) and passes the pointer on to mm_ops->zalloc_page,
 * which the harness implements; split finds it embedded in struct
 * kvm_s2_mmu, as KVM's container_of expects.
 */
#ifndef KPD_MEMCACHE_H
#define KPD_MEMCACHE_H

#include <kpd/base.h>

/* A pre-filled page cache: nobjs pages may still be taken from it. */
struct kvm_mmu_memory_cache {
	int nobjs;
};

#endif /* KPD_MEMCACHE_H */
