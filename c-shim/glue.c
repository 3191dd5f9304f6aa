/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * kvm-pgtable-diff: appended to each build of pgtable.c (see unit.c).  The
 * function names below are the renamed ones of this build, because the
 * generated rename header is in force.
 */
#include <kpd/ops.h>

const struct kpd_ops KPD_OPS_SYMBOL = {
	.name = KPD_BUILD_NAME,
	.page_shift = PAGE_SHIFT,
#ifdef __KVM_NVHE_HYPERVISOR__
	.nvhe = true,
#else
	.nvhe = false,
#endif
	.hyp_init = kvm_pgtable_hyp_init,
	.hyp_destroy = kvm_pgtable_hyp_destroy,
	.hyp_map = kvm_pgtable_hyp_map,
	.hyp_unmap = kvm_pgtable_hyp_unmap,
	.hyp_pte_prot = kvm_pgtable_hyp_pte_prot,
	.get_vtcr = kvm_get_vtcr,
	.stage2_pgd_size = kvm_pgtable_stage2_pgd_size,
	.stage2_init = __kvm_pgtable_stage2_init,
	.stage2_destroy = kvm_pgtable_stage2_destroy,
	.stage2_free_unlinked = kvm_pgtable_stage2_free_unlinked,
	.stage2_create_unlinked = kvm_pgtable_stage2_create_unlinked,
	.stage2_map = kvm_pgtable_stage2_map,
	.stage2_set_owner = kvm_pgtable_stage2_set_owner,
	.stage2_unmap = kvm_pgtable_stage2_unmap,
	.stage2_wrprotect = kvm_pgtable_stage2_wrprotect,
	.stage2_mkyoung = kvm_pgtable_stage2_mkyoung,
	.stage2_test_clear_young = kvm_pgtable_stage2_test_clear_young,
	.stage2_relax_perms = kvm_pgtable_stage2_relax_perms,
	.stage2_flush = kvm_pgtable_stage2_flush,
	.stage2_split = kvm_pgtable_stage2_split,
	.stage2_pte_prot = kvm_pgtable_stage2_pte_prot,
	.tlb_flush_vmid_range = kvm_tlb_flush_vmid_range,
	.walk = kvm_pgtable_walk,
	.get_leaf = kvm_pgtable_get_leaf,
};
