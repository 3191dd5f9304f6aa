/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * kvm-pgtable-diff: the minimal kernel vocabulary (types, bit helpers,
 * alignment, errno, error pointers) that arm64's KVM page-table code needs
 * to compile as an ordinary userspace translation unit.  Written for this
 * project from the kernel's documented semantics; it is not kernel code.
 */
#ifndef KPD_BASE_H
#define KPD_BASE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <limits.h>

typedef uint8_t u8;
typedef uint16_t u16;
typedef uint32_t u32;
typedef uint64_t u64;
typedef int8_t s8;
typedef int16_t s16;
typedef int32_t s32;
typedef int64_t s64;
typedef u64 phys_addr_t;
typedef u64 kvm_pfn_t;

/* Sparse annotations mean nothing to clang. */
#define __rcu

#define likely(x) __builtin_expect(!!(x), 1)
#define unlikely(x) __builtin_expect(!!(x), 0)

/* LP64: unsigned long is 64 bits, as on arm64. */
#define UL(x) ((unsigned long)(x))
#define ULL(x) ((unsigned long long)(x))
#define BIT(n) (UL(1) << (n))
#define BIT_ULL(n) (ULL(1) << (n))
#define GENMASK(h, l) ((~UL(0) << (l)) & (~UL(0) >> (63 - (h))))
#define GENMASK_ULL(h, l) ((~ULL(0) << (l)) & (~ULL(0) >> (63 - (h))))

/* Field helpers: the shift is the position of the mask's lowest set bit. */
#define KPD_MASK_SHIFT(mask) __builtin_ctzll(mask)
#define FIELD_PREP(mask, val) \
	((((__typeof__(mask))(val)) << KPD_MASK_SHIFT(mask)) & (mask))
#define FIELD_GET(mask, reg) \
	((__typeof__(mask))(((reg) & (mask)) >> KPD_MASK_SHIFT(mask)))

/* Power-of-two alignment. */
#define KPD_ALIGN_MASK(x, a) ((__typeof__(x))(a) - 1)
#define ALIGN(x, a) (((x) + KPD_ALIGN_MASK(x, a)) & ~KPD_ALIGN_MASK(x, a))
#define ALIGN_DOWN(x, a) ((x) & ~KPD_ALIGN_MASK(x, a))
#define IS_ALIGNED(x, a) (((x) & KPD_ALIGN_MASK(x, a)) == 0)

#define min(a, b) ({ __auto_type _a = (a); __auto_type _b = (b); _a < _b ? _a : _b; })
#define max(a, b) ({ __auto_type _a = (a); __auto_type _b = (b); _a > _b ? _a : _b; })

#define container_of(ptr, type, member) \
	((type *)((char *)(ptr) - offsetof(type, member)))

/* Kconfig-style IS_ENABLED(): 1 when the option is defined to 1. */
#define KPD_ARG_PLACEHOLDER_1 0,
#define KPD_TAKE_SECOND(ignored, val, ...) val
#define KPD_IS_DEFINED3(arg1_or_junk) KPD_TAKE_SECOND(arg1_or_junk 1, 0, 0)
#define KPD_IS_DEFINED2(val) KPD_IS_DEFINED3(KPD_ARG_PLACEHOLDER_##val)
#define IS_ENABLED(option) KPD_IS_DEFINED2(option)

/* errno values of the Linux ABI. */
#define EPERM 1
#define E2BIG 7
#define EAGAIN 11
#define ENOMEM 12
#define EFAULT 14
#define EBUSY 16
#define EEXIST 17
#define EINVAL 22
#define ERANGE 34
#define ENOTSUPP 524

#define MAX_ERRNO 4095
#define IS_ERR_VALUE(x) unlikely((unsigned long)(void *)(x) >= (unsigned long)-MAX_ERRNO)
static inline void *ERR_PTR(long error) { return (void *)error; }
static inline long PTR_ERR(const void *ptr) { return (long)ptr; }
static inline bool IS_ERR(const void *ptr) { return IS_ERR_VALUE((unsigned long)ptr); }
static inline bool IS_ERR_OR_NULL(const void *ptr) { return !ptr || IS_ERR(ptr); }

#endif /* KPD_BASE_H */
