/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * kvm-pgtable-diff: appended to each build of pgtable.c.  build.rs writes one
 * translation unit per build, `$OUT_DIR/units/<line>_<context>_<granule>.c`,
 * that defines KPD_GEN, the page size, the context and the build's rename
 * macros, includes the tree's pgtable.c, then this file.  So the kernel
 * functions called below are this build's renamed copies, and this file is
 * compiled against the kernel's own kvm_pgtable.h of that tree: a tree whose
 * functions have other signatures stops compiling here.
 *
 * It implements the ABI of kpd/api.h: a per-table state holding the
 * structures pgtable.c works on, and one wrapper per entry point.
 */
/* API mismatches stay errors even where CFLAGS end in -Wno-error=... (OSS-Fuzz). */
#pragma clang diagnostic error "-Wincompatible-function-pointer-types"
#pragma clang diagnostic error "-Wint-conversion"
#pragma clang diagnostic error "-Wimplicit-function-declaration"
#include <stdlib.h>

#include <kpd/api.h>

struct kpd_state {
	struct kvm_pgtable pgt;
	struct kvm_s2_mmu mmu;
	struct kvm_pgtable_mm_ops mm_ops;
	struct kvm_mmu_memory_cache mc; /* the op memcache */
};

/* The hooks that only report (recorded in the event buffer, runtime.h). */
static void kpd_buf_get_page(void *addr)
{
	kpd_ev_put(KPD_EV_GET_PAGE, 0, (u64)(uintptr_t)addr, 0, 0);
}

static void kpd_buf_dcache_clean_inval_poc(void *addr, size_t size)
{
	kpd_ev_put(KPD_EV_DCACHE_CLEAN_INVAL_POC, 0, (u64)(uintptr_t)addr, size, 0);
}

static void kpd_buf_icache_inval_pou(void *addr, size_t size)
{
	kpd_ev_put(KPD_EV_ICACHE_INVAL_POU, 0, (u64)(uintptr_t)addr, size, 0);
}

static struct kpd_state *kpd_state_new(u32 hooks)
{
	struct kpd_state *s = calloc(1, sizeof(*s));

	if (!s)
		abort();
	s->mmu.pgt = &s->pgt;
	s->mm_ops.zalloc_page = kpd_mm_zalloc_page;
	s->mm_ops.zalloc_pages_exact = kpd_mm_zalloc_pages_exact;
	s->mm_ops.free_pages_exact = kpd_mm_free_pages_exact;
	s->mm_ops.get_page = kpd_buf_get_page;
	s->mm_ops.put_page = kpd_mm_put_page;
	s->mm_ops.phys_to_virt = kpd_mm_phys_to_virt;
	s->mm_ops.virt_to_phys = kpd_mm_virt_to_phys;
	/*
	 * pgtable.c calls free_unlinked_table without testing it, so a caller
	 * without one (a pKVM guest) would branch to NULL: the stub reports
	 * that call instead of crashing the harness.
	 */
	if (hooks & KPD_HOOK_FREE_UNLINKED_TABLE)
		s->mm_ops.free_unlinked_table = kpd_mm_free_unlinked_table;
	else
		s->mm_ops.free_unlinked_table = kpd_mm_null_free_unlinked_table;
	if (hooks & KPD_HOOK_PAGE_COUNT)
		s->mm_ops.page_count = kpd_mm_page_count;
	if (hooks & KPD_HOOK_DCACHE_CLEAN_INVAL_POC)
		s->mm_ops.dcache_clean_inval_poc = kpd_buf_dcache_clean_inval_poc;
	if (hooks & KPD_HOOK_ICACHE_INVAL_POU)
		s->mm_ops.icache_inval_pou = kpd_buf_icache_inval_pou;
	return s;
}

static void kpd_state_free(struct kpd_state *s)
{
	free(s);
}

static void kpd_info(const struct kpd_state *s, struct kpd_info *out)
{
	out->pgd = s->pgt.pgd;
	out->ia_bits = s->pgt.ia_bits;
	out->start_level = s->pgt.start_level;
	out->vtcr = s->mmu.vtcr;
	out->mc_nobjs = s->mc.nobjs;
	out->split_nobjs = s->mmu.split_page_cache.nobjs;
}

/* The memcache argument of an op: NULL, or the state's memcache with n pages. */
static void *kpd_mc(struct kpd_state *s, s64 n)
{
	if (n < 0)
		return NULL;
	s->mc.nobjs = (int)n;
	return &s->mc;
}

static bool kpd_force_pte_cb(u64 addr, u64 end, enum kvm_pgtable_prot prot)
{
	return kpd_force_pte(addr, end, prot);
}

static int kpd_visitor(const struct kvm_pgtable_visit_ctx *ctx, enum kvm_pgtable_walk_flags visit)
{
	struct kpd_visit v = {
		.kind = visit,
		.ptep = ctx->ptep,
		.old = ctx->old,
		.start = ctx->start,
		.addr = ctx->addr,
		.end = ctx->end,
		.level = ctx->level,
		.flags = ctx->flags,
	};

	return kpd_visit(ctx->arg, &v);
}

static int kpd_hyp_init(struct kpd_state *s, u32 va_bits)
{
	return kvm_pgtable_hyp_init(&s->pgt, va_bits, &s->mm_ops);
}

static void kpd_hyp_destroy(struct kpd_state *s)
{
	if (s->pgt.pgd)
		kvm_pgtable_hyp_destroy(&s->pgt);
}

static int kpd_hyp_map(struct kpd_state *s, u64 addr, u64 size, u64 phys, u64 prot)
{
	return kvm_pgtable_hyp_map(&s->pgt, addr, size, phys, prot);
}

static u64 kpd_hyp_unmap(struct kpd_state *s, u64 addr, u64 size)
{
	return kvm_pgtable_hyp_unmap(&s->pgt, addr, size);
}

static u64 kpd_hyp_pte_prot(u64 pte)
{
	return kvm_pgtable_hyp_pte_prot(pte);
}

static u64 kpd_get_vtcr(u64 mmfr0, u64 mmfr1, u32 phys_shift)
{
	return kvm_get_vtcr(mmfr0, mmfr1, phys_shift);
}

static u64 kpd_stage2_pgd_size(u64 vtcr)
{
	return kvm_pgtable_stage2_pgd_size(vtcr);
}

static int kpd_stage2_init(struct kpd_state *s, u64 vtcr, u32 flags, bool force_pte_cb)
{
	s->mmu.vtcr = vtcr;
	return __kvm_pgtable_stage2_init(&s->pgt, &s->mmu, &s->mm_ops, flags,
					 force_pte_cb ? kpd_force_pte_cb : NULL);
}

static void kpd_stage2_destroy(struct kpd_state *s)
{
	if (s->pgt.pgd)
		kvm_pgtable_stage2_destroy(&s->pgt);
}

static void kpd_stage2_free_unlinked(struct kpd_state *s, void *pgtable, s8 level)
{
	kvm_pgtable_stage2_free_unlinked(&s->mm_ops, pgtable, level);
}

static void *kpd_stage2_create_unlinked(struct kpd_state *s, u64 phys, s8 level, u64 prot, s64 mc,
					bool force_pte)
{
	return kvm_pgtable_stage2_create_unlinked(&s->pgt, phys, level, prot, kpd_mc(s, mc),
						  force_pte);
}

static int kpd_stage2_map(struct kpd_state *s, u64 addr, u64 size, u64 phys, u64 prot, s64 mc,
			  u32 flags)
{
	return kvm_pgtable_stage2_map(&s->pgt, addr, size, phys, prot, kpd_mc(s, mc), flags);
}

static int kpd_stage2_unmap(struct kpd_state *s, u64 addr, u64 size)
{
	return kvm_pgtable_stage2_unmap(&s->pgt, addr, size);
}

static int kpd_stage2_wrprotect(struct kpd_state *s, u64 addr, u64 size)
{
	return kvm_pgtable_stage2_wrprotect(&s->pgt, addr, size);
}

static bool kpd_stage2_test_clear_young(struct kpd_state *s, u64 addr, u64 size, bool mkold)
{
	return kvm_pgtable_stage2_test_clear_young(&s->pgt, addr, size, mkold);
}

static int kpd_stage2_flush(struct kpd_state *s, u64 addr, u64 size)
{
	return kvm_pgtable_stage2_flush(&s->pgt, addr, size);
}

static void kpd_tlb_flush_vmid_range(struct kpd_state *s, u64 addr, u64 size)
{
	kvm_tlb_flush_vmid_range(&s->mmu, addr, size);
}

static int kpd_stage2_split(struct kpd_state *s, u64 addr, u64 size, u32 nobjs)
{
	/* KVM passes the cache embedded in the mmu (pgtable.c relies on it). */
	s->mmu.split_page_cache.nobjs = (int)nobjs;
	return kvm_pgtable_stage2_split(&s->pgt, addr, size, &s->mmu.split_page_cache);
}

static u64 kpd_stage2_pte_prot(u64 pte)
{
	return kvm_pgtable_stage2_pte_prot(pte);
}

static int kpd_walk(struct kpd_state *s, u64 addr, u64 size, u32 flags, void *arg)
{
	struct kvm_pgtable_walker walker = {
		.cb = kpd_visitor,
		.arg = arg,
		.flags = flags,
	};

	return kvm_pgtable_walk(&s->pgt, addr, size, &walker);
}

static int kpd_get_leaf(struct kpd_state *s, u64 addr, u64 *pte, s8 *level)
{
	kvm_pte_t p = *pte;
	int r = kvm_pgtable_get_leaf(&s->pgt, addr, &p, level);

	*pte = p;
	return r;
}

#if KPD_GEN >= KPD_GEN_7_1

static int kpd_stage2_annotate(struct kpd_state *s, u64 addr, u64 size, s64 mc, u32 type,
			       u64 annotation)
{
	return kvm_pgtable_stage2_annotate(&s->pgt, addr, size, kpd_mc(s, mc), type, annotation);
}

/* 7.x returns nothing; the caller chooses the walk flags. */
static u64 kpd_stage2_mkyoung(struct kpd_state *s, u64 addr, u32 flags)
{
	kvm_pgtable_stage2_mkyoung(&s->pgt, addr, flags);
	return 0;
}

static int kpd_stage2_relax_perms(struct kpd_state *s, u64 addr, u64 prot, u32 flags)
{
	return kvm_pgtable_stage2_relax_perms(&s->pgt, addr, prot, flags);
}

static void kpd_stage2_destroy_range(struct kpd_state *s, u64 addr, u64 size)
{
	kvm_pgtable_stage2_destroy_range(&s->pgt, addr, size);
}

static void kpd_stage2_destroy_pgd(struct kpd_state *s)
{
	if (s->pgt.pgd)
		kvm_pgtable_stage2_destroy_pgd(&s->pgt);
}

#define kpd_stage2_set_owner NULL

static const struct kpd_kernel_consts kpd_consts = {
	.prot_x = KVM_PGTABLE_PROT_X,
	.prot_w = KVM_PGTABLE_PROT_W,
	.prot_r = KVM_PGTABLE_PROT_R,
	.prot_device = KVM_PGTABLE_PROT_DEVICE,
	.prot_normal_nc = KVM_PGTABLE_PROT_NORMAL_NC,
	.prot_px = KVM_PGTABLE_PROT_PX,
	.prot_ux = KVM_PGTABLE_PROT_UX,
	.walk_bit4 = KVM_PGTABLE_WALK_IGNORE_EAGAIN,
	.s2_idmap = KVM_PGTABLE_S2_IDMAP,
	.s2_as_s1 = KVM_PGTABLE_S2_AS_S1,
	.pte_locked = FIELD_PREP(KVM_INVALID_PTE_TYPE_MASK, KVM_INVALID_PTE_TYPE_LOCKED),
#else /* KPD_GEN_6_12 */

static int kpd_stage2_set_owner(struct kpd_state *s, u64 addr, u64 size, s64 mc, u8 owner_id)
{
	return kvm_pgtable_stage2_set_owner(&s->pgt, addr, size, kpd_mc(s, mc), owner_id);
}

/* 6.12 returns the old descriptor and walks with fixed flags. */
static u64 kpd_stage2_mkyoung(struct kpd_state *s, u64 addr, u32 flags)
{
	(void)flags;
	return kvm_pgtable_stage2_mkyoung(&s->pgt, addr);
}

static int kpd_stage2_relax_perms(struct kpd_state *s, u64 addr, u64 prot, u32 flags)
{
	(void)flags;
	return kvm_pgtable_stage2_relax_perms(&s->pgt, addr, prot);
}

#define kpd_stage2_annotate NULL
#define kpd_stage2_destroy_range NULL
#define kpd_stage2_destroy_pgd NULL

static const struct kpd_kernel_consts kpd_consts = {
	.prot_x = KVM_PGTABLE_PROT_X,
	.prot_w = KVM_PGTABLE_PROT_W,
	.prot_r = KVM_PGTABLE_PROT_R,
	.prot_device = KVM_PGTABLE_PROT_DEVICE,
	.prot_normal_nc = KVM_PGTABLE_PROT_NORMAL_NC,
	.walk_bit4 = KVM_PGTABLE_WALK_HANDLE_FAULT,
	.s2_idmap = KVM_PGTABLE_S2_IDMAP,
	.s2_nofwb = KVM_PGTABLE_S2_NOFWB,
	.pte_locked = KVM_INVALID_PTE_LOCKED,
#endif
	.walk_leaf = KVM_PGTABLE_WALK_LEAF,
	.walk_table_pre = KVM_PGTABLE_WALK_TABLE_PRE,
	.walk_table_post = KVM_PGTABLE_WALK_TABLE_POST,
	.walk_shared = KVM_PGTABLE_WALK_SHARED,
	.walk_skip_bbm_tlbi = KVM_PGTABLE_WALK_SKIP_BBM_TLBI,
	.walk_skip_cmo = KVM_PGTABLE_WALK_SKIP_CMO,
};

#define KPD_API_INIT(member, ret, params) .member = kpd_##member,

const struct kpd_api KPD_API_SYMBOL = {
	.name = KPD_BUILD_NAME,
	.page_shift = PAGE_SHIFT,
#ifdef __KVM_NVHE_HYPERVISOR__
	.nvhe = true,
#else
	.nvhe = false,
#endif
	.generation = KPD_GEN,
	.consts = &kpd_consts,
	KPD_API(KPD_API_INIT)
};
