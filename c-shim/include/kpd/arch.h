/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * kvm-pgtable-diff: arm64 architectural constants and CPU-feature queries,
 * with values taken from the Arm Architecture Reference Manual (VMSAv8-64
 * descriptor formats, VTCR_EL2, ID_AA64MMFR0/1_EL1) and, where Linux picks a
 * number itself (MAIR slots), from Linux's documented choice.
 *
 * The granule is a compile-time choice of each C build (KPD_PAGE_SHIFT);
 * CPU features are run-time settings read from struct kpd_runtime.
 */
#ifndef KPD_ARCH_H
#define KPD_ARCH_H

#include <kpd/base.h>
#include <kpd/runtime.h>
#include <kpd/api.h>

#ifndef KPD_PAGE_SHIFT
#define KPD_PAGE_SHIFT 12
#endif

#define PAGE_SHIFT KPD_PAGE_SHIFT
#define PAGE_SIZE (UL(1) << PAGE_SHIFT)
#define PAGE_MASK (~(PAGE_SIZE - 1))
#define PAGE_ALIGN(addr) ALIGN(addr, PAGE_SIZE)

#if KPD_PAGE_SHIFT == 12
#define CONFIG_ARM64_4K_PAGES 1
#define CONFIG_ARM64_PA_BITS 48
#elif KPD_PAGE_SHIFT == 14
#define CONFIG_ARM64_16K_PAGES 1
#define CONFIG_ARM64_PA_BITS 48
#elif KPD_PAGE_SHIFT == 16
#define CONFIG_ARM64_64K_PAGES 1
/* 64K kernels are built with 52-bit PA support (the 51:48 OA field). */
#define CONFIG_ARM64_PA_BITS_52 1
#define CONFIG_ARM64_PA_BITS 52
#else
#error "KPD_PAGE_SHIFT must be 12, 14 or 16"
#endif

/* Hardware access-flag management is configured in (VTCR_EL2.HA). */
#define CONFIG_ARM64_HW_AFDBM 1

/* Each table level resolves PAGE_SHIFT - 3 bits; a table holds 8-byte entries. */
#define PTRS_PER_PTE (1 << (PAGE_SHIFT - 3))
#define ARM64_HW_PGTABLE_LEVEL_SHIFT(n) ((PAGE_SHIFT - 3) * (4 - (n)) + 3)
#define ARM64_HW_PGTABLE_LEVELS(va_bits) (((va_bits) - 4) / (PAGE_SHIFT - 3))
#define __phys_to_pfn(paddr) ((unsigned long)((paddr) >> PAGE_SHIFT))

/* CPU capabilities that the code asks about, answered from kpd_runtime. */
enum kpd_cpucap {
	ARM64_HAS_STAGE2_FWB = 1,
	ARM64_KVM_HVHE,
	ARM64_WORKAROUND_AMPERE_AC03_CPU_38,
	ARM64_HAS_XNX,
};

static inline bool cpus_have_final_cap(int cap)
{
	const struct kpd_runtime *rt = &kpd_rt;

	switch (cap) {
	case ARM64_HAS_STAGE2_FWB:
		return rt->stage2_fwb;
	case ARM64_KVM_HVHE:
		return rt->hvhe;
	case ARM64_WORKAROUND_AMPERE_AC03_CPU_38:
		return rt->ampere_ac03;
	case ARM64_HAS_XNX:
		return rt->xnx;
	default:
		return false;
	}
}

static inline bool system_supports_lpa2(void) { return kpd_rt.lpa2; }
static inline bool system_supports_tlb_range(void) { return kpd_rt.tlb_range; }
static inline bool system_supports_bti_kernel(void) { return kpd_rt.bti_kernel; }

/* ID_AA64MMFR0_EL1.PARange, bits [3:0]. */
#define ID_AA64MMFR0_EL1_PARANGE_SHIFT 0
#define ID_AA64MMFR0_EL1_PARANGE_32 0x0
#define ID_AA64MMFR0_EL1_PARANGE_36 0x1
#define ID_AA64MMFR0_EL1_PARANGE_40 0x2
#define ID_AA64MMFR0_EL1_PARANGE_42 0x3
#define ID_AA64MMFR0_EL1_PARANGE_44 0x4
#define ID_AA64MMFR0_EL1_PARANGE_48 0x5
#define ID_AA64MMFR0_EL1_PARANGE_52 0x6
/* ID_AA64MMFR1_EL1.VMIDBits, bits [7:4]: 0b0010 means 16-bit VMIDs. */
#define ID_AA64MMFR1_EL1_VMIDBits_SHIFT 4
#define ID_AA64MMFR1_EL1_VMIDBits_16 0x2

static inline unsigned int cpuid_feature_extract_unsigned_field(u64 features, int field)
{
	return (features >> field) & 0xf;
}

static inline u32 id_aa64mmfr0_parange_to_phys_shift(int parange)
{
	switch (parange) {
	case ID_AA64MMFR0_EL1_PARANGE_32: return 32;
	case ID_AA64MMFR0_EL1_PARANGE_36: return 36;
	case ID_AA64MMFR0_EL1_PARANGE_40: return 40;
	case ID_AA64MMFR0_EL1_PARANGE_42: return 42;
	case ID_AA64MMFR0_EL1_PARANGE_44: return 44;
	case ID_AA64MMFR0_EL1_PARANGE_48: return 48;
	case ID_AA64MMFR0_EL1_PARANGE_52: return 52;
	default: return CONFIG_ARM64_PA_BITS;
	}
}

static inline unsigned int get_vmid_bits(u64 mmfr1)
{
	unsigned int bits = cpuid_feature_extract_unsigned_field(mmfr1, ID_AA64MMFR1_EL1_VMIDBits_SHIFT);

	return bits == ID_AA64MMFR1_EL1_VMIDBits_16 ? 16 : 8;
}

/* Linux's MAIR_EL2 slot numbers (stage-1 AttrIndx values). */
#define MT_NORMAL 0
#define MT_NORMAL_TAGGED 1
#define MT_NORMAL_NC 2
#define MT_DEVICE_nGnRnE 3
#define MT_DEVICE_nGnRE 4

/* Stage-2 MemAttr[3:0] (descriptor bits [5:2]) without and with FEAT_S2FWB. */
#define MT_S2_NORMAL 0xf
#define MT_S2_NORMAL_NC 0x5
#define MT_S2_DEVICE_nGnRE 0x1
#define MT_S2_FWB_NORMAL 0x6
#define MT_S2_FWB_NORMAL_NC 0x5
#define MT_S2_FWB_DEVICE_nGnRE 0x1
/* 7.x: "final attributes are those of stage 1" (FWB: MemAttr 0b0111). */
#define MT_S2_AS_S1 MT_S2_NORMAL
#define MT_S2_FWB_AS_S1 0x7
#define PTE_S2_MEMATTR(t) ((u64)(t) << 2)
#if KPD_GEN >= KPD_GEN_7_1
/* 7.x: whether FWB applies is the CPU capability alone. */
#define PAGE_S2_MEMATTR(attr)                                                \
	({                                                                   \
		u64 kpd_ma_;                                                 \
		if (cpus_have_final_cap(ARM64_HAS_STAGE2_FWB))               \
			kpd_ma_ = PTE_S2_MEMATTR(MT_S2_FWB_##attr);          \
		else                                                         \
			kpd_ma_ = PTE_S2_MEMATTR(MT_S2_##attr);              \
		kpd_ma_;                                                     \
	})
#else
/* 6.12: the caller says whether FWB applies (a table may opt out, NOFWB). */
#define PAGE_S2_MEMATTR(attr, has_fwb)                                       \
	({                                                                   \
		u64 kpd_ma_;                                                 \
		if (has_fwb)                                                 \
			kpd_ma_ = PTE_S2_MEMATTR(MT_S2_FWB_##attr);          \
		else                                                         \
			kpd_ma_ = PTE_S2_MEMATTR(MT_S2_##attr);              \
		kpd_ma_;                                                     \
	})
#endif

/* VTCR_EL2 fields. */
#define VTCR_EL2_SL0_SHIFT 6
#if KPD_GEN >= KPD_GEN_7_1
/* 7.x: field masks as the generated sysreg definitions give them. */
#define VTCR_EL2_T0SZ GENMASK_ULL(5, 0)
#define VTCR_EL2_SL0 GENMASK_ULL(7, 6)
#define VTCR_EL2_SL0_MASK GENMASK_ULL(7, 6)
#define VTCR_EL2_PS GENMASK_ULL(18, 16)
#define VTCR_EL2_VS GENMASK_ULL(19, 19)
#else
#define VTCR_EL2_T0SZ_MASK 0x3f
/* Unmasked, as in the kernel: an out-of-range size spills into other fields. */
#define VTCR_EL2_T0SZ(x) (UL(64) - (x))
#define VTCR_EL2_SL0_MASK (3 << VTCR_EL2_SL0_SHIFT)
#endif
#define VTCR_EL2_IRGN0_WBWA (UL(1) << 8)
#define VTCR_EL2_ORGN0_WBWA (UL(1) << 10)
#define VTCR_EL2_SH0_INNER (UL(3) << 12)
#define VTCR_EL2_TG0_SHIFT 14
#define VTCR_EL2_TG0_4K (UL(0) << VTCR_EL2_TG0_SHIFT)
#define VTCR_EL2_TG0_64K (UL(1) << VTCR_EL2_TG0_SHIFT)
#define VTCR_EL2_TG0_16K (UL(2) << VTCR_EL2_TG0_SHIFT)
#define VTCR_EL2_PS_SHIFT 16
#define VTCR_EL2_VS_SHIFT 19
#define VTCR_EL2_VS_8BIT (UL(0) << VTCR_EL2_VS_SHIFT)
#define VTCR_EL2_VS_16BIT (UL(1) << VTCR_EL2_VS_SHIFT)
#define VTCR_EL2_HA (UL(1) << 21)
#define VTCR_EL2_RES1 (UL(1) << 31)
#define VTCR_EL2_DS (UL(1) << 32)

#if KPD_PAGE_SHIFT == 12
#define VTCR_EL2_TGRAN VTCR_EL2_TG0_4K
#define VTCR_EL2_TGRAN_SL0_BASE 2UL
#elif KPD_PAGE_SHIFT == 14
#define VTCR_EL2_TGRAN VTCR_EL2_TG0_16K
#define VTCR_EL2_TGRAN_SL0_BASE 3UL
#else
#define VTCR_EL2_TGRAN VTCR_EL2_TG0_64K
#define VTCR_EL2_TGRAN_SL0_BASE 3UL
#endif

#define VTCR_EL2_COMMON_BITS \
	(VTCR_EL2_SH0_INNER | VTCR_EL2_ORGN0_WBWA | VTCR_EL2_IRGN0_WBWA | VTCR_EL2_RES1)
#define VTCR_EL2_FLAGS (VTCR_EL2_COMMON_BITS | VTCR_EL2_TGRAN)
#if KPD_GEN >= KPD_GEN_7_1
/* 7.x: SL0 is masked into its field; 6.12 shifts it unmasked. */
#define VTCR_EL2_LVLS_TO_SL0(levels) \
	FIELD_PREP(VTCR_EL2_SL0, (VTCR_EL2_TGRAN_SL0_BASE - (4 - (levels))))
#define VTCR_EL2_IPA(vtcr) (64 - FIELD_GET(VTCR_EL2_T0SZ, (vtcr)))
#else
#define VTCR_EL2_LVLS_TO_SL0(levels) \
	((VTCR_EL2_TGRAN_SL0_BASE - (4 - (levels))) << VTCR_EL2_SL0_SHIFT)
#define VTCR_EL2_IPA(vtcr) (64 - ((vtcr) & VTCR_EL2_T0SZ_MASK))
#endif
#define VTCR_EL2_SL0_TO_LVLS(sl0) ((sl0) + 4 - VTCR_EL2_TGRAN_SL0_BASE)
#define VTCR_EL2_LVLS(vtcr) VTCR_EL2_SL0_TO_LVLS(((vtcr) & VTCR_EL2_SL0_MASK) >> VTCR_EL2_SL0_SHIFT)

#endif /* KPD_ARCH_H */
