/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * kvm-pgtable-diff: the contract between the C side and the Rust harness.
 *
 * Run-time CPU features live in a thread-local struct so that one binary can
 * run any configuration (and tests can run in parallel threads).  Every side
 * effect of the kernel code is reported through the kpd_ev_* functions: into
 * a per-thread buffer that the Rust harness empties into the current side's
 * event list, in program order (below).
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

/*
 * Events are appended to a per-thread buffer in program order and handed to
 * the harness in one call (kpd_ev_flush) when it is full, when C calls any
 * harness function that reads or changes the arena or the event list, and
 * when the entry point returns.  The harness therefore sees every event in
 * the order it happened, checked against the arena as it was at that point:
 * between two calls into the harness only C runs, and the buffered events
 * change nothing but harness bookkeeping (counts, the event list).
 */
enum kpd_ev_kind {
	KPD_EV_STORE = 0,	/* a: ptep, b: new value, c: value replaced (for
				 * cmpxchg, the expected one), arg: store kind */
	KPD_EV_DSB,		/* arg: enum kpd_barrier */
	KPD_EV_ISB,
	KPD_EV_TLBI_HYP,	/* arg: enum kpd_tlbi_hyp_op, a: operand, b: level */
	KPD_EV_TLBI_SYNC_S1ISH_HYP,
	KPD_EV_TLB_FLUSH_VMID,
	KPD_EV_TLB_FLUSH_VMID_IPA, /* a: ipa, b: level, arg: nsh */
	KPD_EV_TLB_FLUSH_VMID_RANGE, /* a: start, b: pages */
	KPD_EV_WARN,		/* a: __FILE__, b: __LINE__, arg: once */
	KPD_EV_RCU,		/* arg: lock (1) or unlock (0) */
	KPD_EV_GET_PAGE,	/* a: the page (mm_ops->get_page) */
	KPD_EV_DCACHE_CLEAN_INVAL_POC, /* a: address, b: size */
	KPD_EV_ICACHE_INVAL_POU,	/* a: address, b: size */
};

struct kpd_ev {
	u64 a, b, c;
	u32 kind;
	s32 arg;
};

#define KPD_EV_CAP 256
struct kpd_ev_buffer {
	u32 len;
	struct kpd_ev ev[KPD_EV_CAP];
};

/* The calling thread's event buffer (kpd_evbuf_get() is for Rust). */
extern _Thread_local struct kpd_ev_buffer kpd_evbuf;
struct kpd_ev_buffer *kpd_evbuf_get(void);

/* Implemented by the Rust harness (src/c_side/callbacks.rs). */
/* Takes every buffered event, in order, and empties the buffer. */
void kpd_ev_flush(void);
/* Access number `index` (kpd_rt.acc_stop) to ptep is about to happen. */
void kpd_ev_access(const volatile void *ptep, enum kpd_access_kind kind, u64 index);

/* Appends one event (runtime.c: not inlined and not instrumented, so the
 * fuzzers' coverage and compare hooks see only the kernel's code). */
void kpd_ev_put(enum kpd_ev_kind kind, s32 arg, u64 a, u64 b, u64 c);

/* prev: the value the store replaced (for cmpxchg, the expected value). */
static inline void kpd_ev_store(const volatile void *ptep, u64 new_val,
				enum kpd_store_kind kind, u64 prev)
{
	kpd_ev_put(KPD_EV_STORE, kind, (u64)(uintptr_t)ptep, new_val, prev);
}
static inline void kpd_ev_dsb(enum kpd_barrier kind) { kpd_ev_put(KPD_EV_DSB, kind, 0, 0, 0); }
static inline void kpd_ev_isb(void) { kpd_ev_put(KPD_EV_ISB, 0, 0, 0, 0); }
static inline void kpd_ev_tlbi_hyp(enum kpd_tlbi_hyp_op op, u64 operand, int level)
{
	kpd_ev_put(KPD_EV_TLBI_HYP, op, operand, (u64)(s64)level, 0);
}
static inline void kpd_ev_tlbi_sync_s1ish_hyp(void)
{
	kpd_ev_put(KPD_EV_TLBI_SYNC_S1ISH_HYP, 0, 0, 0, 0);
}
static inline void kpd_ev_tlb_flush_vmid(void) { kpd_ev_put(KPD_EV_TLB_FLUSH_VMID, 0, 0, 0, 0); }
static inline void kpd_ev_tlb_flush_vmid_ipa(u64 ipa, int level, bool nsh)
{
	kpd_ev_put(KPD_EV_TLB_FLUSH_VMID_IPA, nsh, ipa, (u64)(s64)level, 0);
}
static inline void kpd_ev_tlb_flush_vmid_range(u64 start, u64 pages)
{
	kpd_ev_put(KPD_EV_TLB_FLUSH_VMID_RANGE, 0, start, pages, 0);
}
static inline void kpd_ev_warn(const char *file, int line, bool once)
{
	kpd_ev_put(KPD_EV_WARN, once, (u64)(uintptr_t)file, (u64)line, 0);
}
static inline void kpd_ev_rcu(bool lock) { kpd_ev_put(KPD_EV_RCU, lock, 0, 0, 0); }

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
/* get_page, dcache_clean_inval_poc and icache_inval_pou are buffered events
 * (glue.c installs kpd_ev_* wrappers); the others call the harness. */
void kpd_mm_put_page(void *addr);
int kpd_mm_page_count(void *addr);
void *kpd_mm_phys_to_virt(phys_addr_t pa);
phys_addr_t kpd_mm_virt_to_phys(void *addr);
bool kpd_force_pte(u64 addr, u64 end, u64 prot);
int kpd_visit(void *arg, const struct kpd_visit *v);

#endif /* KPD_RUNTIME_H */
