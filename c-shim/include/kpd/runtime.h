/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * kvm-pgtable-diff: the contract between the C side and the Rust harness.
 *
 * Run-time CPU features live in a thread-local struct so that one binary can
 * run any configuration (and tests can run in parallel threads).  Every side
 * effect of the kernel code is reported through the kpd_ev_* functions, which
 * the Rust harness implements; it appends them to the current side's event
 * list in program order.
 */
#ifndef KPD_RUNTIME_H
#define KPD_RUNTIME_H

#include <kpd/base.h>

struct kpd_runtime {
	bool stage2_fwb;	/* ARM64_HAS_STAGE2_FWB */
	bool tlb_range;		/* FEAT_TLBIRANGE */
	bool lpa2;		/* FEAT_LPA2 enabled */
	bool bti_kernel;	/* BTI in use at EL2 */
	bool hvhe;		/* ARM64_KVM_HVHE */
	bool ampere_ac03;	/* ARM64_WORKAROUND_AMPERE_AC03_CPU_38 */
	bool xnx;		/* ARM64_HAS_XNX (FEAT_XNX), 7.x only */
	int rcu_depth;		/* rcu_read_lock() nesting, kernel context only */
	/*
	 * Descriptor accesses (READ_ONCE, WRITE_ONCE, smp_store_release,
	 * cmpxchg) since the harness last reset acc_count: how many, and a
	 * digest of their kinds and offsets from arena_base (the side's first
	 * arena page), in order.  Access number acc_stop calls kpd_ev_access()
	 * before it happens; ~0 never comes.
	 */
	u64 acc_count;
	u64 acc_stop;
	u64 acc_digest;
	u64 arena_base;
};

/* The calling thread's runtime settings (kpd_runtime_get() is for Rust). */
extern _Thread_local struct kpd_runtime kpd_rt;
struct kpd_runtime *kpd_runtime_get(void);

enum kpd_store_kind {
	KPD_STORE_WRITE_ONCE = 0,
	KPD_STORE_RELEASE = 1,
	KPD_STORE_CMPXCHG = 2,
};

/* The single-copy-atomic accessors, announced before each access. */
enum kpd_access_kind {
	KPD_ACCESS_READ_ONCE = 0,
	KPD_ACCESS_WRITE_ONCE = 1,
	KPD_ACCESS_RELEASE = 2,
	KPD_ACCESS_CMPXCHG = 3,
};

/* FNV-1a's 64-bit prime: the access digest's multiplier. */
#define KPD_ACCESS_DIGEST_PRIME 0x00000100000001b3ULL

/* Barrier domains/types, in the order of the dsb(opt) option names. */
enum kpd_barrier {
	KPD_BARRIER_sy = 0,
	KPD_BARRIER_st,
	KPD_BARRIER_ld,
	KPD_BARRIER_ish,
	KPD_BARRIER_ishst,
	KPD_BARRIER_ishld,
	KPD_BARRIER_nsh,
	KPD_BARRIER_nshst,
	KPD_BARRIER_nshld,
	KPD_BARRIER_osh,
	KPD_BARRIER_oshst,
	KPD_BARRIER_oshld,
};

/* Stage-1 EL2 TLBI operations the hyp code issues by VA. */
enum kpd_tlbi_hyp_op {
	KPD_TLBI_vae2is = 0,
	KPD_TLBI_vale2is = 1,
};

/* Implemented by the Rust harness (src/c_side/callbacks.rs). */
/* prev: the value the store replaced (for cmpxchg, the expected value). */
void kpd_ev_store(const volatile void *ptep, u64 new_val, enum kpd_store_kind kind, u64 prev);
/* Access number `index` (kpd_rt.acc_stop) to ptep is about to happen. */
void kpd_ev_access(const volatile void *ptep, enum kpd_access_kind kind, u64 index);
void kpd_ev_dsb(enum kpd_barrier kind);
void kpd_ev_isb(void);
void kpd_ev_tlbi_hyp(enum kpd_tlbi_hyp_op op, u64 operand, int level);
void kpd_ev_tlbi_sync_s1ish_hyp(void);
void kpd_ev_tlb_flush_vmid(void);
void kpd_ev_tlb_flush_vmid_ipa(u64 ipa, int level, bool nsh);
void kpd_ev_tlb_flush_vmid_range(u64 start, u64 pages);
void kpd_ev_warn(const char *file, int line, bool once);
void kpd_ev_rcu(bool lock);

/*
 * The kvm_pgtable_mm_ops hooks and callbacks the harness implements; glue.c
 * installs them (with the kernel's prototypes) in every table it creates.
 * Addresses are host pointers into the current side's arena.
 */
struct kpd_visit;
void *kpd_mm_zalloc_page(void *mc);
void *kpd_mm_zalloc_pages_exact(size_t size);
void kpd_mm_free_pages_exact(void *addr, size_t size);
void kpd_mm_free_unlinked_table(void *addr, s8 level);
/* Stands in for a NULL free_unlinked_table: reports the call. */
void kpd_mm_null_free_unlinked_table(void *addr, s8 level);
void kpd_mm_get_page(void *addr);
void kpd_mm_put_page(void *addr);
int kpd_mm_page_count(void *addr);
void *kpd_mm_phys_to_virt(phys_addr_t pa);
phys_addr_t kpd_mm_virt_to_phys(void *addr);
void kpd_mm_dcache_clean_inval_poc(void *addr, size_t size);
void kpd_mm_icache_inval_pou(void *addr, size_t size);
bool kpd_force_pte(u64 addr, u64 end, u64 prot);
int kpd_visit(void *arg, const struct kpd_visit *v);

#endif /* KPD_RUNTIME_H */
