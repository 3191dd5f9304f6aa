/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * kvm-pgtable-diff: the slice of KVM that the page-table code touches.
 * The structures carry only the members pgtable.c uses; TLB maintenance
 * "hypercalls" and RCU are reported to the recorder.
 */
#ifndef KPD_KVM_H
#define KPD_KVM_H

#include <kpd/base.h>
#include <kpd/memcache.h>
#include <kpd/recorder.h>

struct kvm_pgtable;

/*
 * 7.x: struct kvm_pgtable overlays the pKVM host's tree of guest mappings
 * on the table fields; pgtable.c never touches it.  Same size and alignment
 * as the kernel's (two pointers).
 */
struct rb_root_cached {
	void *rb_root;
	void *rb_leftmost;
};

struct kvm_s2_mmu {
	u64 vtcr;
	struct kvm_pgtable *pgt;
	struct kvm_mmu_memory_cache split_page_cache;
};

/* Hypercalls are direct calls here; the TLB ones are recorded. */
#define kvm_call_hyp(f, ...) f(__VA_ARGS__)

static inline void __kvm_tlb_flush_vmid(struct kvm_s2_mmu *mmu)
{
	(void)mmu;
	kpd_ev_tlb_flush_vmid();
}

static inline void __kvm_tlb_flush_vmid_ipa(struct kvm_s2_mmu *mmu, phys_addr_t ipa, int level)
{
	(void)mmu;
	kpd_ev_tlb_flush_vmid_ipa(ipa, level, false);
}

static inline void __kvm_tlb_flush_vmid_ipa_nsh(struct kvm_s2_mmu *mmu, phys_addr_t ipa, int level)
{
	(void)mmu;
	kpd_ev_tlb_flush_vmid_ipa(ipa, level, true);
}

static inline void __kvm_tlb_flush_vmid_range(struct kvm_s2_mmu *mmu, phys_addr_t start,
					      unsigned long pages)
{
	(void)mmu;
	kpd_ev_tlb_flush_vmid_range(start, pages);
}

#ifndef __KVM_NVHE_HYPERVISOR__
/* Kernel context: RCU read-side critical sections are tracked, not real. */
#define rcu_dereference_check(p, c) (p)
#define rcu_dereference_raw(p) (p)
static inline void rcu_read_lock(void)
{
	kpd_rt.rcu_depth++;
	kpd_ev_rcu(true);
}
static inline void rcu_read_unlock(void)
{
	kpd_rt.rcu_depth--;
	kpd_ev_rcu(false);
}
static inline bool rcu_read_lock_held(void) { return kpd_rt.rcu_depth > 0; }
#endif

#endif /* KPD_KVM_H */
