/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * kvm-pgtable-diff: one table of entry points per C build.
 *
 * pgtable.c is compiled several times (execution context x granule) into one
 * binary, each time with its global symbols renamed.  Each build exports a
 * `const struct kpd_ops kpd_ops_<ctx>_<granule>` that the Rust side calls
 * through.  The member types spell out the 6.12 API: if a kernel tree's
 * functions have other signatures, the glue stops compiling, which is how the
 * build recognises an unsupported kernel version.
 */
#ifndef KPD_OPS_H
#define KPD_OPS_H

#include <asm/kvm_pgtable.h>

struct kpd_ops {
	const char *name;
	int page_shift;
	bool nvhe;

	int (*hyp_init)(struct kvm_pgtable *pgt, u32 va_bits, struct kvm_pgtable_mm_ops *mm_ops);
	void (*hyp_destroy)(struct kvm_pgtable *pgt);
	int (*hyp_map)(struct kvm_pgtable *pgt, u64 addr, u64 size, u64 phys,
		       enum kvm_pgtable_prot prot);
	u64 (*hyp_unmap)(struct kvm_pgtable *pgt, u64 addr, u64 size);
	enum kvm_pgtable_prot (*hyp_pte_prot)(kvm_pte_t pte);

	u64 (*get_vtcr)(u64 mmfr0, u64 mmfr1, u32 phys_shift);
	size_t (*stage2_pgd_size)(u64 vtcr);
	int (*stage2_init)(struct kvm_pgtable *pgt, struct kvm_s2_mmu *mmu,
			   struct kvm_pgtable_mm_ops *mm_ops, enum kvm_pgtable_stage2_flags flags,
			   kvm_pgtable_force_pte_cb_t cb);
	void (*stage2_destroy)(struct kvm_pgtable *pgt);
	void (*stage2_free_unlinked)(struct kvm_pgtable_mm_ops *mm_ops, void *pgtable, s8 level);
	kvm_pte_t *(*stage2_create_unlinked)(struct kvm_pgtable *pgt, u64 phys, s8 level,
					     enum kvm_pgtable_prot prot, void *mc, bool force_pte);
	int (*stage2_map)(struct kvm_pgtable *pgt, u64 addr, u64 size, u64 phys,
			  enum kvm_pgtable_prot prot, void *mc, enum kvm_pgtable_walk_flags flags);
	int (*stage2_set_owner)(struct kvm_pgtable *pgt, u64 addr, u64 size, void *mc, u8 owner_id);
	int (*stage2_unmap)(struct kvm_pgtable *pgt, u64 addr, u64 size);
	int (*stage2_wrprotect)(struct kvm_pgtable *pgt, u64 addr, u64 size);
	kvm_pte_t (*stage2_mkyoung)(struct kvm_pgtable *pgt, u64 addr);
	bool (*stage2_test_clear_young)(struct kvm_pgtable *pgt, u64 addr, u64 size, bool mkold);
	int (*stage2_relax_perms)(struct kvm_pgtable *pgt, u64 addr, enum kvm_pgtable_prot prot);
	int (*stage2_flush)(struct kvm_pgtable *pgt, u64 addr, u64 size);
	int (*stage2_split)(struct kvm_pgtable *pgt, u64 addr, u64 size,
			    struct kvm_mmu_memory_cache *cache);
	enum kvm_pgtable_prot (*stage2_pte_prot)(kvm_pte_t pte);
	void (*tlb_flush_vmid_range)(struct kvm_s2_mmu *mmu, phys_addr_t addr, size_t size);

	int (*walk)(struct kvm_pgtable *pgt, u64 addr, u64 size, struct kvm_pgtable_walker *walker);
	int (*get_leaf)(struct kvm_pgtable *pgt, u64 addr, kvm_pte_t *ptep, s8 *level);
};

#endif /* KPD_OPS_H */
