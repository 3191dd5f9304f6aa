/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * kvm-pgtable-diff: the ABI between the Rust harness and every C build.
 *
 * pgtable.c is compiled once per (kernel line, execution context, granule),
 * each time with its global symbols renamed, and each build exports one
 * `const struct kpd_api kpd_api_<build>` (glue.c).  The entry points below
 * use basic types only and take an opaque per-table state that glue.c
 * allocates, so the Rust side never depends on the layout of a kernel
 * structure (struct kvm_pgtable became a union in 7.x) and one Rust binary
 * drives every API generation.  glue.c absorbs the differences between
 * generations; an entry point a generation does not have is NULL.
 *
 * Memcache arguments (`s64 mc`): negative means a NULL memcache, otherwise
 * a memcache holding that many pages (read back through `info`).
 */
#ifndef KPD_API_H
#define KPD_API_H

#include <kpd/base.h>

/* API generations (KPD_GEN): the shape of the kvm_pgtable API. */
#define KPD_GEN_6_12 612 /* set_owner, HANDLE_FAULT, PROT_X, NOFWB */
#define KPD_GEN_7_1 701  /* annotate, IGNORE_EAGAIN, PROT_PX/UX, AS_S1, destroy_range */

/*
 * Which optional kvm_pgtable_mm_ops hooks a table's caller installs (the
 * harness's caller profiles, src/caller.rs).  pgtable.c tests the first
 * three for NULL; a missing free_unlinked_table is a stub that reports the
 * call a real caller would make through NULL.
 */
#define KPD_HOOK_DCACHE_CLEAN_INVAL_POC (1u << 0)
#define KPD_HOOK_ICACHE_INVAL_POU (1u << 1)
#define KPD_HOOK_PAGE_COUNT (1u << 2)
#define KPD_HOOK_FREE_UNLINKED_TABLE (1u << 3)
#define KPD_HOOKS_ALL 0xfu

struct kpd_state;

/* What the harness reads back between calls. */
struct kpd_info {
	const void *pgd; /* NULL before init and after destroy */
	u32 ia_bits;
	s8 start_level;
	u64 vtcr;
	int mc_nobjs;    /* the op memcache */
	int split_nobjs; /* mmu->split_page_cache */
};

/* One visitor callback of kvm_pgtable_walk, as the harness sees it. */
struct kpd_visit {
	u32 kind; /* KVM_PGTABLE_WALK_LEAF / _TABLE_PRE / _TABLE_POST */
	const void *ptep;
	u64 old;
	u64 start;
	u64 addr;
	u64 end;
	s8 level;
	u32 flags;
};

/* The kernel's own values of the constants the harness's model spells out. */
struct kpd_kernel_consts {
	u64 prot_x, prot_w, prot_r, prot_device, prot_normal_nc, prot_px, prot_ux;
	u32 walk_leaf, walk_table_pre, walk_table_post, walk_shared, walk_bit4;
	u32 walk_skip_bbm_tlbi, walk_skip_cmo;
	u32 s2_idmap, s2_nofwb, s2_as_s1;
	u64 pte_locked; /* the break-before-make marker */
};

/* X(member, return type, parameter list) */
#define KPD_API(X)                                                                          \
	X(state_new, struct kpd_state *, (u32 hooks))                                       \
	X(state_free, void, (struct kpd_state * s))                                         \
	X(info, void, (const struct kpd_state *s, struct kpd_info *out))                    \
	X(hyp_init, int, (struct kpd_state * s, u32 va_bits))                               \
	X(hyp_destroy, void, (struct kpd_state * s))                                        \
	X(hyp_map, int, (struct kpd_state * s, u64 addr, u64 size, u64 phys, u64 prot))     \
	X(hyp_unmap, u64, (struct kpd_state * s, u64 addr, u64 size))                       \
	X(hyp_pte_prot, u64, (u64 pte))                                                     \
	X(get_vtcr, u64, (u64 mmfr0, u64 mmfr1, u32 phys_shift))                            \
	X(stage2_pgd_size, u64, (u64 vtcr))                                                 \
	X(stage2_init, int, (struct kpd_state * s, u64 vtcr, u32 flags, bool force_pte_cb)) \
	X(stage2_destroy, void, (struct kpd_state * s))                                     \
	X(stage2_destroy_range, void, (struct kpd_state * s, u64 addr, u64 size))           \
	X(stage2_destroy_pgd, void, (struct kpd_state * s))                                 \
	X(stage2_free_unlinked, void, (struct kpd_state * s, void *pgtable, s8 level))      \
	X(stage2_create_unlinked, void *,                                                   \
	  (struct kpd_state * s, u64 phys, s8 level, u64 prot, s64 mc, bool force_pte))     \
	X(stage2_map, int,                                                                  \
	  (struct kpd_state * s, u64 addr, u64 size, u64 phys, u64 prot, s64 mc, u32 flags)) \
	X(stage2_set_owner, int, (struct kpd_state * s, u64 addr, u64 size, s64 mc, u8 owner_id)) \
	X(stage2_annotate, int,                                                             \
	  (struct kpd_state * s, u64 addr, u64 size, s64 mc, u32 type, u64 annotation))     \
	X(stage2_unmap, int, (struct kpd_state * s, u64 addr, u64 size))                    \
	X(stage2_wrprotect, int, (struct kpd_state * s, u64 addr, u64 size))                \
	X(stage2_mkyoung, u64, (struct kpd_state * s, u64 addr, u32 flags))                 \
	X(stage2_test_clear_young, bool, (struct kpd_state * s, u64 addr, u64 size, bool mkold)) \
	X(stage2_relax_perms, int, (struct kpd_state * s, u64 addr, u64 prot, u32 flags))   \
	X(stage2_flush, int, (struct kpd_state * s, u64 addr, u64 size))                    \
	X(stage2_split, int, (struct kpd_state * s, u64 addr, u64 size, u32 nobjs))         \
	X(tlb_flush_vmid_range, void, (struct kpd_state * s, u64 addr, u64 size))           \
	X(stage2_pte_prot, u64, (u64 pte))                                                  \
	X(walk, int, (struct kpd_state * s, u64 addr, u64 size, u32 flags, void *arg))      \
	X(get_leaf, int, (struct kpd_state * s, u64 addr, u64 *pte, s8 *level))

#define KPD_API_MEMBER(member, ret, params) ret(*member) params;

struct kpd_api {
	const char *name; /* "<line>_<context>_<granule>" */
	int page_shift;
	bool nvhe;
	int generation; /* KPD_GEN_* */
	const struct kpd_kernel_consts *consts;
	KPD_API(KPD_API_MEMBER)
};

#endif /* KPD_API_H */
