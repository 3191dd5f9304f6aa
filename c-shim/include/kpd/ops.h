/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * kvm-pgtable-diff: one table of entry points per C build.
 *
 * pgtable.c is compiled several times (execution context x granule) into one
 * binary, each time with its global symbols renamed.  Each build exports a
 * `const struct kpd_ops kpd_ops_<ctx>_<granule>` that the Rust side calls
 * through.
 *
 * KPD_API lists every entry point once: the member name, the kernel
 * function it points at, and the signature we expect.  The struct below and
 * the table in glue.c are both expanded from it, so a kernel tree whose
 * functions have other signatures stops compiling (the build turns
 * incompatible function pointers into errors), which is how an unsupported
 * kernel API is recognised.
 */
#ifndef KPD_OPS_H
#define KPD_OPS_H

#include <asm/kvm_pgtable.h>

/* X(member, kernel function, return type, parameter list) */
#define KPD_API(X)                                                                          \
	X(hyp_init, kvm_pgtable_hyp_init, int,                                              \
	  (struct kvm_pgtable *pgt, u32 va_bits, struct kvm_pgtable_mm_ops *mm_ops))        \
	X(hyp_destroy, kvm_pgtable_hyp_destroy, void, (struct kvm_pgtable *pgt))            \
	X(hyp_map, kvm_pgtable_hyp_map, int,                                                \
	  (struct kvm_pgtable *pgt, u64 addr, u64 size, u64 phys, enum kvm_pgtable_prot prot)) \
	X(hyp_unmap, kvm_pgtable_hyp_unmap, u64, (struct kvm_pgtable *pgt, u64 addr, u64 size)) \
	X(hyp_pte_prot, kvm_pgtable_hyp_pte_prot, enum kvm_pgtable_prot, (kvm_pte_t pte))   \
	X(get_vtcr, kvm_get_vtcr, u64, (u64 mmfr0, u64 mmfr1, u32 phys_shift))              \
	X(stage2_pgd_size, kvm_pgtable_stage2_pgd_size, size_t, (u64 vtcr))                 \
	X(stage2_init, __kvm_pgtable_stage2_init, int,                                      \
	  (struct kvm_pgtable *pgt, struct kvm_s2_mmu *mmu, struct kvm_pgtable_mm_ops *mm_ops, \
	   enum kvm_pgtable_stage2_flags flags, kvm_pgtable_force_pte_cb_t cb))             \
	X(stage2_destroy, kvm_pgtable_stage2_destroy, void, (struct kvm_pgtable *pgt))      \
	X(stage2_free_unlinked, kvm_pgtable_stage2_free_unlinked, void,                     \
	  (struct kvm_pgtable_mm_ops *mm_ops, void *pgtable, s8 level))                     \
	X(stage2_create_unlinked, kvm_pgtable_stage2_create_unlinked, kvm_pte_t *,          \
	  (struct kvm_pgtable *pgt, u64 phys, s8 level, enum kvm_pgtable_prot prot, void *mc, \
	   bool force_pte))                                                                 \
	X(stage2_map, kvm_pgtable_stage2_map, int,                                          \
	  (struct kvm_pgtable *pgt, u64 addr, u64 size, u64 phys, enum kvm_pgtable_prot prot, \
	   void *mc, enum kvm_pgtable_walk_flags flags))                                    \
	X(stage2_set_owner, kvm_pgtable_stage2_set_owner, int,                              \
	  (struct kvm_pgtable *pgt, u64 addr, u64 size, void *mc, u8 owner_id))             \
	X(stage2_unmap, kvm_pgtable_stage2_unmap, int, (struct kvm_pgtable *pgt, u64 addr, u64 size)) \
	X(stage2_wrprotect, kvm_pgtable_stage2_wrprotect, int,                              \
	  (struct kvm_pgtable *pgt, u64 addr, u64 size))                                    \
	X(stage2_mkyoung, kvm_pgtable_stage2_mkyoung, kvm_pte_t, (struct kvm_pgtable *pgt, u64 addr)) \
	X(stage2_test_clear_young, kvm_pgtable_stage2_test_clear_young, bool,               \
	  (struct kvm_pgtable *pgt, u64 addr, u64 size, bool mkold))                        \
	X(stage2_relax_perms, kvm_pgtable_stage2_relax_perms, int,                          \
	  (struct kvm_pgtable *pgt, u64 addr, enum kvm_pgtable_prot prot))                  \
	X(stage2_flush, kvm_pgtable_stage2_flush, int, (struct kvm_pgtable *pgt, u64 addr, u64 size)) \
	X(stage2_split, kvm_pgtable_stage2_split, int,                                      \
	  (struct kvm_pgtable *pgt, u64 addr, u64 size, struct kvm_mmu_memory_cache *cache)) \
	X(stage2_pte_prot, kvm_pgtable_stage2_pte_prot, enum kvm_pgtable_prot, (kvm_pte_t pte)) \
	X(tlb_flush_vmid_range, kvm_tlb_flush_vmid_range, void,                             \
	  (struct kvm_s2_mmu *mmu, phys_addr_t addr, size_t size))                          \
	X(walk, kvm_pgtable_walk, int,                                                      \
	  (struct kvm_pgtable *pgt, u64 addr, u64 size, struct kvm_pgtable_walker *walker)) \
	X(get_leaf, kvm_pgtable_get_leaf, int,                                              \
	  (struct kvm_pgtable *pgt, u64 addr, kvm_pte_t *ptep, s8 *level))

#define KPD_OPS_MEMBER(member, fn, ret, params) ret(*member) params;

struct kpd_ops {
	const char *name;
	int page_shift;
	bool nvhe;
	KPD_API(KPD_OPS_MEMBER)
};

#endif /* KPD_OPS_H */
