/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * kvm-pgtable-diff: memory accessors, barriers, TLB maintenance and WARN as
 * recording operations.  Each does what the arm64 primitive does to memory
 * (the store really happens, with the same atomicity/ordering in C11 terms)
 * and then reports it with the value it replaced, so the harness sees every
 * descriptor write.
 */
#ifndef KPD_RECORDER_H
#define KPD_RECORDER_H

#include <kpd/runtime.h>
#include <kpd/api.h>

/*
 * Every single-copy-atomic access is announced first: counted, folded into
 * the access digest, and at the access the harness asked for, reported, so
 * that another agent's write can happen right there (a scheduled race).
 * Inline, because the fuzzers run it on every descriptor access.
 */
static inline void kpd_access(const volatile void *p, enum kpd_access_kind kind)
{
	u64 n = kpd_rt.acc_count++;
	u64 off = (u64)(uintptr_t)p - kpd_rt.arena_base;

	kpd_rt.acc_digest = (kpd_rt.acc_digest ^ (off | kind)) * KPD_ACCESS_DIGEST_PRIME;
	if (unlikely(n == kpd_rt.acc_stop))
		kpd_ev_access(p, kind, n);
}

#define READ_ONCE(x)                                                         \
	({                                                                   \
		kpd_access(&(x), KPD_ACCESS_READ_ONCE);                      \
		*(const volatile __typeof__(x) *)&(x);                       \
	})

#define WRITE_ONCE(x, val)                                                   \
	do {                                                                 \
		__typeof__(x) *kpd_p_ = &(x);                                \
		__typeof__(x) kpd_v_ = (val);                                \
		kpd_access(kpd_p_, KPD_ACCESS_WRITE_ONCE);                   \
		u64 kpd_prev_ = (u64)*(volatile __typeof__(x) *)kpd_p_;      \
		*(volatile __typeof__(x) *)kpd_p_ = kpd_v_;                  \
		kpd_ev_store(kpd_p_, (u64)kpd_v_, KPD_STORE_WRITE_ONCE,      \
			     kpd_prev_);                                     \
	} while (0)

#define smp_store_release(p, v)                                              \
	do {                                                                 \
		__typeof__(p) kpd_p_ = (p);                                  \
		__typeof__(*kpd_p_) kpd_v_ = (v);                            \
		kpd_access(kpd_p_, KPD_ACCESS_RELEASE);                      \
		u64 kpd_prev_ = (u64)__atomic_load_n(kpd_p_, __ATOMIC_RELAXED); \
		__atomic_store_n(kpd_p_, kpd_v_, __ATOMIC_RELEASE);          \
		kpd_ev_store(kpd_p_, (u64)kpd_v_, KPD_STORE_RELEASE, kpd_prev_); \
	} while (0)

/* Returns the value found; reports the store only when it took place. */
#define cmpxchg(ptr, o, n)                                                   \
	({                                                                   \
		__typeof__(ptr) kpd_p_ = (ptr);                              \
		__typeof__(*kpd_p_) kpd_old_ = (o);                          \
		__typeof__(*kpd_p_) kpd_new_ = (n);                          \
		__typeof__(*kpd_p_) kpd_seen_ = kpd_old_;                    \
		kpd_access(kpd_p_, KPD_ACCESS_CMPXCHG);                      \
		if (__atomic_compare_exchange_n(kpd_p_, &kpd_seen_, kpd_new_, \
						false, __ATOMIC_SEQ_CST,     \
						__ATOMIC_SEQ_CST))           \
			kpd_ev_store(kpd_p_, (u64)kpd_new_,                  \
				     KPD_STORE_CMPXCHG, (u64)kpd_old_);      \
		kpd_seen_;                                                   \
	})

#define dsb(opt) kpd_ev_dsb(KPD_BARRIER_##opt)
#define isb() kpd_ev_isb()

/* WARN never stops execution and keeps no "once" state between calls. */
#define KPD_WARN(cond, once)                                                 \
	({                                                                   \
		bool kpd_c_ = !!(cond);                                      \
		if (unlikely(kpd_c_))                                        \
			kpd_ev_warn(__FILE__, __LINE__, once);               \
		unlikely(kpd_c_);                                            \
	})
#define WARN_ON(cond) KPD_WARN(cond, false)
#define WARN_ON_ONCE(cond) KPD_WARN(cond, true)

/*
 * TLBI by VA at EL2.  The operand is built as the architecture defines the
 * Xt of TLBI VAE2IS/VALE2IS: VA[55:12] in bits [43:0], ASID in [63:48].
 */
#define TLBI_TTL_UNKNOWN INT_MAX
#define __TLBI_VADDR(addr, asid)                                             \
	({                                                                   \
		u64 kpd_ta_ = ((u64)(addr) >> 12) & GENMASK_ULL(43, 0);      \
		kpd_ta_ |= (u64)(asid) << 48;                                \
		kpd_ta_;                                                     \
	})
#if KPD_GEN >= KPD_GEN_7_1
/* 7.x: the caller passes the VA; the helper builds the operand itself. */
#define __tlbi_level(op, addr, level) \
	kpd_ev_tlbi_hyp(KPD_TLBI_##op, __TLBI_VADDR((addr), 0), (level))
#else
/* 6.12: the caller passes the operand __TLBI_VADDR() built. */
#define __tlbi_level(op, addr, level) kpd_ev_tlbi_hyp(KPD_TLBI_##op, (addr), (level))
#endif
#define __tlbi_sync_s1ish_hyp() kpd_ev_tlbi_sync_s1ish_hyp()

/* Range TLBI: pages = (NUM + 1) << (5 * SCALE + 1), NUM <= 31, SCALE <= 3. */
#define __TLBI_RANGE_PAGES(num, scale) ((unsigned long)((num) + 1) << (5 * (scale) + 1))
#define MAX_TLBI_RANGE_PAGES __TLBI_RANGE_PAGES(31, 3)

#endif /* KPD_RECORDER_H */
