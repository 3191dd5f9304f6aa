// SPDX-License-Identifier: GPL-2.0-only
//! Plain data types shared by every part of the crate: addresses, levels,
//! granules, permission and walk flags, errors, the run-time configuration
//! and the descriptor newtype.

use bitflags::bitflags;

/// A physical address. Every table, page and descriptor location handed to
/// the environment is expressed as one of these.
pub type PhysAddr = u64;

/// The "no physical address" marker (all ones). Linux 6.12's `set_owner`
/// walks carry it instead of a real output address.
pub const PHYS_INVALID: PhysAddr = u64::MAX;

/// Largest owner id that may be stored in an invalid stage-2 descriptor
/// (Linux 6.12; 7.3 has typed annotations instead, see [`InvalidPteType`]).
#[doc(alias = "KVM_MAX_OWNER_ID")]
pub const MAX_OWNER_ID: u8 = 1;

/// Return `x` rounded down to a multiple of the power of two `a`.
#[inline]
#[doc(alias = "ALIGN_DOWN")]
pub(crate) const fn align_down(x: u64, a: u64) -> u64 {
    x & !a.wrapping_sub(1)
}

/// Return `x` rounded up to a multiple of the power of two `a` (wrapping at
/// the top of the address space, as unsigned C arithmetic does).
#[inline]
#[doc(alias = "ALIGN")]
pub(crate) const fn align_up(x: u64, a: u64) -> u64 {
    align_down(x.wrapping_add(a.wrapping_sub(1)), a)
}

/// `true` when `x` is a multiple of the power of two `a`.
#[inline]
#[doc(alias = "IS_ALIGNED")]
pub(crate) const fn is_aligned(x: u64, a: u64) -> bool {
    x & a.wrapping_sub(1) == 0
}

/// `1 << shift`, with the shift amount taken modulo 64 as the AArch64 `LSL`
/// (register) instruction does. Only ill-formed geometries (for instance a
/// VTCR with T0SZ = 0) ever reach a shift of 64 or more.
#[inline]
#[doc(alias = "BIT")]
pub(crate) const fn bit(shift: u64) -> u64 {
    1u64.wrapping_shl(shift as u32)
}

/// Mask with bits `hi..=lo` set.
#[inline]
#[doc(alias = "GENMASK")]
pub(crate) const fn genmask(hi: u32, lo: u32) -> u64 {
    (u64::MAX >> (63 - hi)) & (u64::MAX << lo)
}

/// A translation-table level, from -1 (only reachable with 52-bit LPA2
/// input ranges on 4K pages) to 3 (the page level).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Level(pub i8);

impl Level {
    /// The shallowest level any table can start at.
    pub const FIRST: Level = Level(-1);
    /// The page level: entries here are never tables.
    pub const LAST: Level = Level(3);

    /// The raw level number.
    #[inline]
    pub const fn get(self) -> i8 {
        self.0
    }

    /// The next deeper level (wrapping like the kernel's `s8` arithmetic).
    #[inline]
    pub const fn next(self) -> Level {
        Level(self.0.wrapping_add(1))
    }

    /// `true` for a level within `FIRST..=LAST`.
    #[inline]
    pub const fn is_valid(self) -> bool {
        self.0 >= Self::FIRST.0 && self.0 <= Self::LAST.0
    }
}

impl From<i8> for Level {
    fn from(v: i8) -> Self {
        Level(v)
    }
}

impl From<Level> for i32 {
    fn from(l: Level) -> i32 {
        l.0 as i32
    }
}

/// Translation granule, picked at run time (the kernel fixes it at build
/// time through `CONFIG_ARM64_*K_PAGES`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Granule {
    /// 4KiB pages.
    Size4K,
    /// 16KiB pages.
    Size16K,
    /// 64KiB pages.
    Size64K,
}

impl Granule {
    /// log2 of the page size.
    #[inline]
    #[doc(alias = "PAGE_SHIFT")]
    pub const fn page_shift(self) -> u32 {
        match self {
            Granule::Size4K => 12,
            Granule::Size16K => 14,
            Granule::Size64K => 16,
        }
    }

    /// Page size in bytes.
    #[inline]
    #[doc(alias = "PAGE_SIZE")]
    pub const fn page_size(self) -> u64 {
        1 << self.page_shift()
    }

    /// Number of bits of address resolved by one table level.
    #[inline]
    #[doc(alias = "PTDESC_TABLE_SHIFT")]
    pub const fn bits_per_level(self) -> u32 {
        self.page_shift() - 3
    }

    /// Descriptors per table page.
    #[inline]
    #[doc(alias = "PTRS_PER_PTE")]
    pub const fn ptrs_per_pte(self) -> u64 {
        1 << self.bits_per_level()
    }

    /// Shift of the region one entry at `level` covers:
    /// `(page_shift - 3) * (4 - level) + 3`.
    ///
    /// The arithmetic is signed and the result converted to 64 bits the way
    /// the C macro's `int` result is, so out-of-range levels give the same
    /// (nonsensical) values as in the kernel.
    #[inline]
    #[doc(alias = "kvm_granule_shift")]
    pub const fn granule_shift(self, level: Level) -> u64 {
        let s = self.bits_per_level() as i64 * (4 - level.0 as i64) + 3;
        s as u64
    }

    /// Size in bytes of the region one entry at `level` covers.
    #[inline]
    #[doc(alias = "kvm_granule_size")]
    pub const fn granule_size(self, level: Level) -> u64 {
        bit(self.granule_shift(level))
    }

    /// Number of table levels needed to translate `va_bits` of input
    /// address: `(va_bits - 4) / (page_shift - 3)`, in unsigned 32-bit
    /// arithmetic like the kernel macro applied to a `u32`.
    #[inline]
    #[doc(alias = "ARM64_HW_PGTABLE_LEVELS")]
    pub const fn levels(self, va_bits: u32) -> u32 {
        va_bits.wrapping_sub(4) / self.bits_per_level()
    }

    /// Shallowest level at which a block mapping may be installed.
    #[inline]
    #[doc(alias = "KVM_PGTABLE_MIN_BLOCK_LEVEL")]
    pub const fn min_block_level(self) -> Level {
        match self {
            Granule::Size4K => Level(1),
            Granule::Size16K | Granule::Size64K => Level(2),
        }
    }

    /// Whether `level` may hold a block (or page) descriptor.
    #[inline]
    #[doc(alias = "kvm_level_supports_block_mapping")]
    pub const fn level_supports_block_mapping(self, level: Level) -> bool {
        level.0 >= self.min_block_level().0
    }

    /// Bitmap of all the leaf mapping sizes, truncated to 32 bits like the
    /// kernel's `u32` result.
    #[doc(alias = "kvm_supported_block_sizes")]
    pub const fn supported_block_sizes(self) -> u32 {
        let mut level = self.min_block_level().0;
        let mut r = 0u32;
        while level <= Level::LAST.0 {
            r |= self.granule_size(Level(level)) as u32;
            level += 1;
        }
        r
    }

    /// Whether `size` is exactly one of the leaf mapping sizes.
    #[doc(alias = "kvm_is_block_size_supported")]
    pub const fn is_block_size_supported(self, size: u64) -> bool {
        is_aligned(size, size) && (size & self.supported_block_sizes() as u64) != 0
    }

    /// The VTCR_EL2.TG0 encoding of this granule (already shifted).
    #[inline]
    #[doc(alias = "VTCR_EL2_TGRAN")]
    pub const fn vtcr_tg0(self) -> u64 {
        let tg = match self {
            Granule::Size4K => 0,
            Granule::Size64K => 1,
            Granule::Size16K => 2,
        };
        tg << 14
    }

    /// The level that VTCR_EL2.SL0 = 0 denotes for this granule.
    #[inline]
    #[doc(alias = "VTCR_EL2_TGRAN_SL0_BASE")]
    pub const fn vtcr_sl0_base(self) -> u64 {
        match self {
            Granule::Size4K => 2,
            Granule::Size16K | Granule::Size64K => 3,
        }
    }
}

bitflags! {
    /// Page-table permissions and attributes requested by callers: the raw
    /// bits of the kernel's `enum kvm_pgtable_prot`, interpreted per the
    /// table's [`KernelLine`]. Every bit is kept, unknown ones included,
    /// and treated exactly as the kernel of that line treats it.
    ///
    /// The named flags below are the **Linux 6.12** encoding. Linux 7.3
    /// moved them (execute split into PX and UX); its encoding is
    /// [`ProtBits::V7_3`], and [`KernelLine::prot_bits`] gives the one of
    /// any line:
    ///
    /// ```
    /// use rust_pgtable::{KernelLine, Prot, ProtBits};
    ///
    /// let v7 = KernelLine::V7_3.prot_bits();
    /// assert_eq!(v7.r | v7.w | v7.x(), Prot::from_bits_retain(0b1111));
    /// assert_eq!(v7.pkvm_host_mem_prot(), v7.rwx());
    /// // Linux 6.12's names are the flags themselves.
    /// assert_eq!(ProtBits::V6_12.rwx(), Prot::RWX);
    /// ```
    #[doc(alias = "kvm_pgtable_prot")]
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub struct Prot: u64 {
        /// Execute.
        const X = 1 << 0;
        /// Write.
        const W = 1 << 1;
        /// Read.
        const R = 1 << 2;
        /// Device-nGnRE memory type.
        const DEVICE = 1 << 3;
        /// Normal non-cacheable memory type.
        const NORMAL_NC = 1 << 4;
        /// Software bit 0 (descriptor bit 55).
        const SW0 = 1 << 55;
        /// Software bit 1 (descriptor bit 56).
        const SW1 = 1 << 56;
        /// Software bit 2 (descriptor bit 57).
        const SW2 = 1 << 57;
        /// Software bit 3 (descriptor bit 58).
        const SW3 = 1 << 58;
        /// Read + write.
        const RW = Self::R.bits() | Self::W.bits();
        /// Read + write + execute.
        const RWX = Self::RW.bits() | Self::X.bits();
        /// pKVM host stage-2 permissions for memory.
        const PKVM_HOST_MEM_PROT = Self::RWX.bits();
        /// pKVM host stage-2 permissions for MMIO.
        const PKVM_HOST_MMIO_PROT = Self::RW.bits();
        /// Hypervisor data.
        const PAGE_HYP = Self::RW.bits();
        /// Hypervisor text.
        const PAGE_HYP_EXEC = Self::R.bits() | Self::X.bits();
        /// Hypervisor read-only data.
        const PAGE_HYP_RO = Self::R.bits();
        /// Hypervisor device mapping.
        const PAGE_HYP_DEVICE = Self::PAGE_HYP.bits() | Self::DEVICE.bits();
    }
}

bitflags! {
    /// Flags that select what a walk visits and how updates are made: the
    /// raw bits of the kernel's `enum kvm_pgtable_walk_flags`. The two lines
    /// agree on every bit except the meaning of bit 4.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub struct WalkFlags: u32 {
        /// Visit leaf entries (including invalid ones).
        const LEAF = 1 << 0;
        /// Visit table entries before descending into them.
        const TABLE_PRE = 1 << 1;
        /// Visit table entries after their children.
        const TABLE_POST = 1 << 2;
        /// Tables may be walked concurrently by other software walkers.
        const SHARED = 1 << 3;
        /// Linux 6.12: the walk runs on behalf of a fault handler (EAGAIN
        /// aborts it). Linux 7.3 gives bit 4 the opposite sense, see
        /// [`WalkFlags::IGNORE_EAGAIN`].
        const HANDLE_FAULT = 1 << 4;
        /// Break-before-make without the TLB invalidation.
        const SKIP_BBM_TLBI = 1 << 5;
        /// Skip cache maintenance when installing leaves.
        const SKIP_CMO = 1 << 6;
    }
}

bitflags! {
    /// Stage-2 page-table flags: the raw bits of the kernel's
    /// `enum kvm_pgtable_stage2_flags`, interpreted per the table's
    /// [`KernelLine`]; unknown bits are kept and ignored, as the kernel does.
    ///
    /// The named flags are the **Linux 6.12** encoding. Linux 7.3 dropped
    /// NOFWB, moved IDMAP to bit 0 and added AS_S1 at bit 1; see
    /// [`Stage2FlagBits`].
    #[doc(alias = "kvm_pgtable_stage2_flags")]
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
    pub struct Stage2Flags: u32 {
        /// Don't use forced write-back even if the CPU supports it.
        const NOFWB = 1 << 0;
        /// Identity map only (input address must equal output address).
        const IDMAP = 1 << 1;
    }
}

impl WalkFlags {
    /// Linux 7.3's name and meaning of bit 4: a visitor's `-EAGAIN` does
    /// not end the walk. Without it, every `-EAGAIN` ends a 7.3 walk.
    #[doc(alias = "KVM_PGTABLE_WALK_IGNORE_EAGAIN")]
    pub const IGNORE_EAGAIN: WalkFlags = WalkFlags::HANDLE_FAULT;
}

/// Where a kernel line puts each `enum kvm_pgtable_prot` permission and
/// memory-type bit. The software bits (55 to 58) are the same in every line.
///
/// Linux 6.12 has a single execute bit: there, `px` and `ux` are both
/// [`Prot::X`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ProtBits {
    /// Privileged execute (`KVM_PGTABLE_PROT_PX`).
    pub px: Prot,
    /// Unprivileged execute (`KVM_PGTABLE_PROT_UX`).
    pub ux: Prot,
    /// Write (`KVM_PGTABLE_PROT_W`).
    pub w: Prot,
    /// Read (`KVM_PGTABLE_PROT_R`).
    pub r: Prot,
    /// Device-nGnRE memory (`KVM_PGTABLE_PROT_DEVICE`).
    pub device: Prot,
    /// Normal non-cacheable memory (`KVM_PGTABLE_PROT_NORMAL_NC`).
    pub normal_nc: Prot,
}

impl ProtBits {
    /// Linux 6.12: X, W, R, DEVICE, NORMAL_NC in bits 0 to 4.
    pub const V6_12: ProtBits = ProtBits {
        px: Prot::X,
        ux: Prot::X,
        w: Prot::W,
        r: Prot::R,
        device: Prot::DEVICE,
        normal_nc: Prot::NORMAL_NC,
    };

    /// Linux 7.3: PX, UX, W, R, DEVICE, NORMAL_NC in bits 0 to 5.
    pub const V7_3: ProtBits = ProtBits {
        px: Prot::from_bits_retain(1 << 0),
        ux: Prot::from_bits_retain(1 << 1),
        w: Prot::from_bits_retain(1 << 2),
        r: Prot::from_bits_retain(1 << 3),
        device: Prot::from_bits_retain(1 << 4),
        normal_nc: Prot::from_bits_retain(1 << 5),
    };

    /// Execute at every exception level (`KVM_PGTABLE_PROT_X`).
    pub const fn x(&self) -> Prot {
        Prot::from_bits_retain(self.px.bits() | self.ux.bits())
    }

    /// `KVM_PGTABLE_PROT_RW`.
    pub const fn rw(&self) -> Prot {
        Prot::from_bits_retain(self.r.bits() | self.w.bits())
    }

    /// `KVM_PGTABLE_PROT_RWX`.
    pub const fn rwx(&self) -> Prot {
        Prot::from_bits_retain(self.rw().bits() | self.x().bits())
    }

    /// pKVM host stage-2 permissions for memory (`PKVM_HOST_MEM_PROT`).
    pub const fn pkvm_host_mem_prot(&self) -> Prot {
        self.rwx()
    }

    /// pKVM host stage-2 permissions for MMIO (`PKVM_HOST_MMIO_PROT`).
    pub const fn pkvm_host_mmio_prot(&self) -> Prot {
        self.rw()
    }

    /// Hypervisor data (`PAGE_HYP`).
    pub const fn page_hyp(&self) -> Prot {
        self.rw()
    }

    /// Hypervisor text (`PAGE_HYP_EXEC`).
    pub const fn page_hyp_exec(&self) -> Prot {
        Prot::from_bits_retain(self.r.bits() | self.x().bits())
    }

    /// Hypervisor read-only data (`PAGE_HYP_RO`).
    pub const fn page_hyp_ro(&self) -> Prot {
        self.r
    }

    /// Hypervisor device mapping (`PAGE_HYP_DEVICE`).
    pub const fn page_hyp_device(&self) -> Prot {
        Prot::from_bits_retain(self.page_hyp().bits() | self.device.bits())
    }
}

/// Where a kernel line puts each `enum kvm_pgtable_stage2_flags` bit. A
/// flag the line does not have is empty.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Stage2FlagBits {
    /// Only identity mappings (`KVM_PGTABLE_S2_IDMAP`).
    pub idmap: Stage2Flags,
    /// Linux 6.12 only: no forced write-back (`KVM_PGTABLE_S2_NOFWB`).
    pub nofwb: Stage2Flags,
    /// Linux 7.3 only: every leaf takes its memory attributes from stage 1
    /// (`KVM_PGTABLE_S2_AS_S1`).
    pub as_s1: Stage2Flags,
}

impl Stage2FlagBits {
    /// Linux 6.12: NOFWB = bit 0, IDMAP = bit 1.
    pub const V6_12: Stage2FlagBits = Stage2FlagBits {
        idmap: Stage2Flags::IDMAP,
        nofwb: Stage2Flags::NOFWB,
        as_s1: Stage2Flags::empty(),
    };

    /// Linux 7.3: IDMAP = bit 0, AS_S1 = bit 1.
    pub const V7_3: Stage2FlagBits = Stage2FlagBits {
        idmap: Stage2Flags::from_bits_retain(1 << 0),
        nofwb: Stage2Flags::empty(),
        as_s1: Stage2Flags::from_bits_retain(1 << 1),
    };
}

/// The type of an invalid stage-2 descriptor in Linux 7.3 (`enum
/// kvm_invalid_pte_type`), kept in descriptor bits \[63:60\]. It holds the raw
/// 32-bit value a caller passes, known or not, as the kernel's enum
/// parameter does; only bits \[3:0\] reach the descriptor.
#[doc(alias = "kvm_invalid_pte_type")]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct InvalidPteType(pub u32);

impl InvalidPteType {
    /// A break-before-make of this entry is in progress
    /// (`KVM_INVALID_PTE_TYPE_LOCKED`). Never a valid annotation.
    #[doc(alias = "KVM_INVALID_PTE_TYPE_LOCKED")]
    pub const LOCKED: InvalidPteType = InvalidPteType(1);
    /// pKVM took the page from the host because it changed owner
    /// (`KVM_HOST_INVALID_PTE_TYPE_DONATION`).
    #[doc(alias = "KVM_HOST_INVALID_PTE_TYPE_DONATION")]
    pub const HOST_DONATION: InvalidPteType = InvalidPteType(2);
    /// The host forcefully reclaimed the page from the guest
    /// (`KVM_GUEST_INVALID_PTE_TYPE_POISONED`).
    #[doc(alias = "KVM_GUEST_INVALID_PTE_TYPE_POISONED")]
    pub const GUEST_POISONED: InvalidPteType = InvalidPteType(3);

    /// The descriptor bits this type contributes:
    /// `FIELD_PREP(KVM_INVALID_PTE_TYPE_MASK, type)`, which keeps only the
    /// low four bits.
    pub const fn to_pte_bits(self) -> u64 {
        ((self.0 as u64) << 60) & pte_bits::INVALID_PTE_TYPE_MASK
    }
}

/// Which Linux kernel line the code behaves like. The page-table code's API
/// changed after 6.12; one crate models both lines exactly, switched here.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum KernelLine {
    /// Linux 6.12 (pinned at 6.12.117).
    #[default]
    V6_12,
    /// V7_3 = the API shape mainline has had since 7.1, pinned at 7.3.4
    /// (7.2.x and 7.3.x have identical page-table code): typed invalid-PTE
    /// annotations instead of owner ids, separate privileged and
    /// unprivileged execute permissions, `IGNORE_EAGAIN` instead of
    /// `HANDLE_FAULT`, the `AS_S1` stage-2 flag instead of `NOFWB`,
    /// `destroy_range`/`destroy_pgd`, and caller walk flags for `mkyoung`
    /// and `relax_perms`.
    V7_3,
}

impl KernelLine {
    /// This line's `enum kvm_pgtable_prot` encoding.
    pub const fn prot_bits(self) -> ProtBits {
        match self {
            KernelLine::V6_12 => ProtBits::V6_12,
            KernelLine::V7_3 => ProtBits::V7_3,
        }
    }

    /// This line's `enum kvm_pgtable_stage2_flags` encoding.
    pub const fn stage2_flag_bits(self) -> Stage2FlagBits {
        match self {
            KernelLine::V6_12 => Stage2FlagBits::V6_12,
            KernelLine::V7_3 => Stage2FlagBits::V7_3,
        }
    }

    /// The stage-2 execute-never field of a leaf
    /// (`KVM_PTE_LEAF_ATTR_HI_S2_XN`): bit 54 in 6.12, bits \[54:53\]
    /// (FEAT_XNX's XN\[1:0\]) in 7.3.
    pub const fn s2_xn(self) -> u64 {
        match self {
            KernelLine::V6_12 => pte_bits::S2_XN,
            KernelLine::V7_3 => pte_bits::S2_XN_XNX,
        }
    }

    /// The stage-2 permission bits (`KVM_PTE_LEAF_ATTR_S2_PERMS`): S2AP
    /// and the execute-never field.
    pub const fn s2_perms(self) -> u64 {
        pte_bits::S2_S2AP_R | pte_bits::S2_S2AP_W | self.s2_xn()
    }
}

/// Errors, each standing for the negative errno the kernel returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Error {
    /// `EPERM`: not allowed in this context.
    Perm,
    /// `E2BIG`: the mapping does not fit at this level (internal to the
    /// stage-2 map walker, but observable through user visitors).
    TooBig,
    /// `EAGAIN`: lost a race or nothing to do; retry.
    Again,
    /// `ENOMEM`: out of memory (or no memcache supplied).
    NoMem,
    /// `EINVAL`: invalid argument.
    Inval,
    /// `ERANGE`: address outside the table's input range.
    Range,
    /// Any other errno, stored positive (only user visitors produce these).
    Other(i32),
}

impl Error {
    /// The negative kernel errno for this error.
    pub const fn to_errno(self) -> i32 {
        match self {
            Error::Perm => -1,
            Error::TooBig => -7,
            Error::Again => -11,
            Error::NoMem => -12,
            Error::Inval => -22,
            Error::Range => -34,
            Error::Other(e) => -e,
        }
    }

    /// Map a kernel errno back to an error. Accepts the negative form
    /// returned by the kernel (and, for convenience, the positive one);
    /// `0` yields `None`.
    pub const fn from_errno(errno: i32) -> Option<Error> {
        let e = if errno < 0 {
            errno.wrapping_neg()
        } else {
            errno
        };
        Some(match e {
            0 => return None,
            1 => Error::Perm,
            7 => Error::TooBig,
            11 => Error::Again,
            12 => Error::NoMem,
            22 => Error::Inval,
            34 => Error::Range,
            other => Error::Other(other),
        })
    }

    /// Convert a `Result` into the kernel's "0 or negative errno" form.
    pub const fn result_to_errno(r: Result<(), Error>) -> i32 {
        match r {
            Ok(()) => 0,
            Err(e) => e.to_errno(),
        }
    }
}

impl core::fmt::Display for Error {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let name = match self {
            Error::Perm => "EPERM",
            Error::TooBig => "E2BIG",
            Error::Again => "EAGAIN",
            Error::NoMem => "ENOMEM",
            Error::Inval => "EINVAL",
            Error::Range => "ERANGE",
            Error::Other(e) => return write!(f, "errno {}", -e),
        };
        f.write_str(name)
    }
}

impl core::error::Error for Error {}

/// Which kind of kernel build the code behaves like.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Context {
    /// The nVHE hypervisor (and pKVM): no RCU, shared walks are refused
    /// with `EPERM`.
    NvheHyp,
    /// The host kernel: shared walks run inside an RCU read-side section.
    Kernel,
}

/// CPU features and errata that change the code's behaviour.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct Features {
    /// 52-bit addresses with the LPA2 descriptor format (FEAT_LPA2).
    pub lpa2: bool,
    /// Stage-2 forced write-back (FEAT_S2FWB).
    pub stage2_fwb: bool,
    /// Range TLB invalidation (FEAT_TLBIRANGE).
    pub tlb_range: bool,
    /// The kernel uses BTI, so hyp text is mapped guarded.
    pub bti_kernel: bool,
    /// The hypervisor runs at EL2 with VHE-style stage-1 (hVHE).
    pub hvhe: bool,
    /// Ampere AC03_CPU_38 erratum: never set VTCR_EL2.HA.
    pub ampere_ac03_workaround: bool,
    /// Stage-2 execute-never can tell EL0 from EL1 execution (FEAT_XNX,
    /// `ARM64_HAS_XNX`). Only Linux 7.3 uses it: without it, a stage-2
    /// permission granting only one of PX and UX is refused.
    pub xnx: bool,
}

/// Run-time configuration replacing the kernel's build-time options and
/// boot-time capabilities.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Config {
    /// Translation granule.
    pub granule: Granule,
    /// Execution context.
    pub context: Context,
    /// CPU features.
    pub features: Features,
    /// The kernel line modelled: decides the raw encodings of [`Prot`],
    /// [`WalkFlags`] and [`Stage2Flags`] and every behaviour that differs.
    pub line: KernelLine,
}

impl Config {
    /// Build a configuration for Linux 6.12 (see [`Config::with_line`]).
    pub const fn new(granule: Granule, context: Context, features: Features) -> Self {
        Config {
            granule,
            context,
            features,
            line: KernelLine::V6_12,
        }
    }

    /// The same configuration for another kernel line.
    ///
    /// ```
    /// use rust_pgtable::*;
    ///
    /// let cfg = Config::new(Granule::Size4K, Context::Kernel, Features::default())
    ///     .with_line(KernelLine::V7_3);
    /// assert_eq!(cfg.line, KernelLine::V7_3);
    /// ```
    pub const fn with_line(self, line: KernelLine) -> Self {
        Config { line, ..self }
    }

    /// 52-bit PA support is modelled as built in exactly for 64K pages.
    #[inline]
    pub const fn pa_bits_52(&self) -> bool {
        matches!(self.granule, Granule::Size64K)
    }

    /// The largest PARange encoding the code will use.
    #[inline]
    #[doc(alias = "kvm_get_parange_max")]
    pub const fn parange_max(&self) -> u64 {
        if self.features.lpa2 || self.pa_bits_52() {
            PARANGE_52
        } else {
            PARANGE_48
        }
    }

    /// Convert an ID_AA64MMFR0_EL1.PARange encoding to an address width.
    #[doc(alias = "id_aa64mmfr0_parange_to_phys_shift")]
    pub const fn parange_to_phys_shift(&self, parange: u64) -> u32 {
        match parange {
            0 => 32,
            1 => 36,
            2 => 40,
            3 => 42,
            4 => 44,
            5 => 48,
            6 => 52,
            _ => {
                if self.pa_bits_52() {
                    52
                } else {
                    48
                }
            }
        }
    }

    /// Clamp the PARange field of `mmfr0` to what the code supports.
    #[doc(alias = "kvm_get_parange")]
    pub const fn get_parange(&self, mmfr0: u64) -> u64 {
        let max = self.parange_max();
        let parange = mmfr0 & 0xf;
        if parange > max { max } else { parange }
    }

    /// Whether `phys` is a real output address (below the largest PA the
    /// configuration can use).
    #[inline]
    #[doc(alias = "kvm_phys_is_valid")]
    pub const fn phys_is_valid(&self, phys: u64) -> bool {
        phys < bit(self.parange_to_phys_shift(self.parange_max()) as u64)
    }

    /// Stage-1 AP encoding for read-only hyp mappings.
    #[inline]
    #[doc(alias = "KVM_PTE_LEAF_ATTR_LO_S1_AP_RO")]
    pub const fn s1_ap_ro(&self) -> u64 {
        if self.features.hvhe { 2 } else { 3 }
    }

    /// Stage-1 AP encoding for read-write hyp mappings.
    #[inline]
    #[doc(alias = "KVM_PTE_LEAF_ATTR_LO_S1_AP_RW")]
    pub const fn s1_ap_rw(&self) -> u64 {
        if self.features.hvhe { 0 } else { 1 }
    }
}

/// PARange encoding for 48 bits.
pub const PARANGE_48: u64 = 5;
/// PARange encoding for 52 bits.
pub const PARANGE_52: u64 = 6;

/// Descriptor bit layout. Names follow the architecture.
pub mod pte_bits {
    use super::genmask;

    /// Valid bit.
    pub const VALID: u64 = 1 << 0;
    /// Type bit: table (levels < 3) or page (level 3) when set.
    pub const TYPE: u64 = 1 << 1;
    /// Output address bits for the non-LPA2 formats (bits 47..page_shift
    /// are added per granule by [`addr_mask`]).
    pub const ADDR_51_48: u64 = genmask(15, 12);
    /// Output address bits 51:50 in the LPA2 format.
    pub const ADDR_51_50_LPA2: u64 = genmask(9, 8);
    /// Low attribute field of a leaf.
    pub const LEAF_ATTR_LO: u64 = genmask(11, 2);
    /// Stage-1 AttrIndx.
    pub const S1_ATTRIDX: u64 = genmask(4, 2);
    /// Stage-1 AP field.
    pub const S1_AP: u64 = genmask(7, 6);
    /// Stage-1 shareability.
    pub const S1_SH: u64 = genmask(9, 8);
    /// Inner-shareable encoding.
    pub const SH_IS: u64 = 3;
    /// Stage-1 access flag.
    pub const S1_AF: u64 = 1 << 10;
    /// Stage-2 MemAttr.
    pub const S2_MEMATTR: u64 = genmask(5, 2);
    /// Stage-2 read permission.
    pub const S2_S2AP_R: u64 = 1 << 6;
    /// Stage-2 write permission.
    pub const S2_S2AP_W: u64 = 1 << 7;
    /// Stage-2 shareability.
    pub const S2_SH: u64 = genmask(9, 8);
    /// Stage-2 access flag.
    pub const S2_AF: u64 = 1 << 10;
    /// High attribute field of a leaf.
    pub const LEAF_ATTR_HI: u64 = genmask(63, 50);
    /// Software-defined bits.
    pub const LEAF_ATTR_HI_SW: u64 = genmask(58, 55);
    /// Stage-1 execute-never.
    pub const S1_XN: u64 = 1 << 54;
    /// Stage-1 unprivileged execute-never, in a two-privilege regime such
    /// as the one hVHE uses (the same bit as [`S1_XN`]).
    pub const S1_UXN: u64 = 1 << 54;
    /// Stage-1 privileged execute-never, in a two-privilege regime.
    pub const S1_PXN: u64 = 1 << 53;
    /// Stage-2 execute-never as Linux 6.12 uses it (XN\[1\] alone).
    pub const S2_XN: u64 = 1 << 54;
    /// Stage-2 execute-never field XN\[1:0\] of FEAT_XNX, which Linux 7.3
    /// always reads and writes whole: 0b00 execute at EL1 and EL0, 0b01
    /// EL0 only, 0b10 neither, 0b11 EL1 only.
    pub const S2_XN_XNX: u64 = genmask(54, 53);
    /// Stage-1 guarded page (BTI).
    pub const S1_GP: u64 = 1 << 50;
    /// Stage-2 permission bits (Linux 6.12; see
    /// [`KernelLine::s2_perms`](super::KernelLine::s2_perms)).
    pub const S2_PERMS: u64 = S2_S2AP_R | S2_S2AP_W | S2_XN;
    /// Owner id field of an invalid stage-2 descriptor (Linux 6.12).
    pub const INVALID_OWNER_MASK: u64 = genmask(9, 2);
    /// Marks an invalid descriptor whose break-before-make is in progress
    /// (Linux 6.12; 7.3 uses the type
    /// [`InvalidPteType::LOCKED`](super::InvalidPteType::LOCKED)).
    pub const INVALID_LOCKED: u64 = 1 << 10;
    /// The type field of an invalid stage-2 descriptor (Linux 7.3).
    pub const INVALID_PTE_TYPE_MASK: u64 = genmask(63, 60);
    /// What an annotation may set besides its type (Linux 7.3): everything
    /// but the valid bit and the type field.
    pub const INVALID_PTE_ANNOT_MASK: u64 = !(VALID | INVALID_PTE_TYPE_MASK);

    /// Stage-1 memory attribute indices (Linux MAIR layout).
    pub const MT_NORMAL: u64 = 0;
    /// Normal non-cacheable index.
    pub const MT_NORMAL_NC: u64 = 2;
    /// Device-nGnRE index.
    pub const MT_DEVICE_NGNRE: u64 = 4;

    /// Stage-2 MemAttr values without FWB.
    pub const MT_S2_NORMAL: u64 = 0xf;
    /// Non-FWB normal non-cacheable.
    pub const MT_S2_NORMAL_NC: u64 = 0x5;
    /// Non-FWB device-nGnRE.
    pub const MT_S2_DEVICE_NGNRE: u64 = 0x1;
    /// Non-FWB "as stage 1" (Linux 7.3): Normal write-back, which,
    /// combined with stage 1, leaves stage 1's attributes in charge.
    pub const MT_S2_AS_S1: u64 = MT_S2_NORMAL;
    /// Stage-2 MemAttr values with FWB.
    pub const MT_S2_FWB_NORMAL: u64 = 0x6;
    /// FWB normal non-cacheable.
    pub const MT_S2_FWB_NORMAL_NC: u64 = 0x5;
    /// FWB device-nGnRE.
    pub const MT_S2_FWB_DEVICE_NGNRE: u64 = 0x1;
    /// FWB "use the stage-1 attributes" (MemAttr\[2:0\] = 0b111; Linux 7.3).
    pub const MT_S2_FWB_AS_S1: u64 = 0x7;

    /// Output-address mask for the classic formats: bits 47..page_shift.
    pub const fn addr_mask(page_shift: u32) -> u64 {
        genmask(47, page_shift)
    }

    /// Output-address mask for LPA2: bits 49..page_shift.
    pub const fn addr_mask_lpa2(page_shift: u32) -> u64 {
        genmask(49, page_shift)
    }
}

/// A translation table descriptor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct Pte(pub u64);

impl Pte {
    /// The all-zero descriptor.
    pub const EMPTY: Pte = Pte(0);

    /// Raw value.
    #[inline]
    pub const fn bits(self) -> u64 {
        self.0
    }

    /// Valid bit set.
    #[inline]
    #[doc(alias = "kvm_pte_valid")]
    pub const fn is_valid(self) -> bool {
        self.0 & pte_bits::VALID != 0
    }

    /// A valid table descriptor at `level` (never at the last level).
    #[inline]
    #[doc(alias = "kvm_pte_table")]
    pub const fn is_table(self, level: Level) -> bool {
        if level.0 == Level::LAST.0 {
            return false;
        }
        if !self.is_valid() {
            return false;
        }
        self.0 & pte_bits::TYPE != 0
    }

    /// Output (or next-level table) address, decoded per the configured
    /// descriptor format.
    #[doc(alias = "kvm_pte_to_phys")]
    pub const fn to_phys(self, cfg: &Config) -> PhysAddr {
        let ps = cfg.granule.page_shift();
        if cfg.features.lpa2 {
            let mut pa = self.0 & pte_bits::addr_mask_lpa2(ps);
            pa |= ((self.0 & pte_bits::ADDR_51_50_LPA2) >> 8) << 50;
            pa
        } else {
            let mut pa = self.0 & pte_bits::addr_mask(ps);
            if ps == 16 {
                pa |= ((self.0 & pte_bits::ADDR_51_48) >> 12) << 48;
            }
            pa
        }
    }

    /// Encode `pa` into the output-address bits (nothing else set).
    #[doc(alias = "kvm_phys_to_pte")]
    pub const fn from_phys(pa: PhysAddr, cfg: &Config) -> Pte {
        let ps = cfg.granule.page_shift();
        if cfg.features.lpa2 {
            let mut pte = pa & pte_bits::addr_mask_lpa2(ps);
            let hi = pa & genmask(51, 50);
            pte |= ((hi >> 50) << 8) & pte_bits::ADDR_51_50_LPA2;
            Pte(pte)
        } else {
            let mut pte = pa & pte_bits::addr_mask(ps);
            if ps == 16 {
                let hi = pa & genmask(51, 48);
                pte |= ((hi >> 48) << 12) & pte_bits::ADDR_51_48;
            }
            Pte(pte)
        }
    }

    /// Output page frame number.
    #[inline]
    #[doc(alias = "kvm_pte_to_pfn")]
    pub const fn to_pfn(self, cfg: &Config) -> u64 {
        self.to_phys(cfg) >> cfg.granule.page_shift()
    }

    /// Owner id recorded in bits 9:2 (meaningful for invalid stage-2
    /// descriptors only).
    #[inline]
    pub const fn owner_id(self) -> u8 {
        ((self.0 & pte_bits::INVALID_OWNER_MASK) >> 2) as u8
    }

    /// A stage-2 descriptor that must be reference counted in its table
    /// page: anything non-zero (valid entries and owner annotations).
    #[inline]
    #[doc(alias = "stage2_pte_is_counted")]
    pub const fn is_counted(self) -> bool {
        self.0 != 0
    }

    /// An invalid descriptor marked as being mid break-before-make, in the
    /// Linux 6.12 encoding (bit 10). See [`Pte::is_locked_in`].
    #[inline]
    #[doc(alias = "stage2_pte_is_locked")]
    pub const fn is_locked(self) -> bool {
        !self.is_valid() && (self.0 & pte_bits::INVALID_LOCKED) != 0
    }

    /// The type field (bits \[63:60\]) of an invalid stage-2 descriptor in
    /// Linux 7.3 (meaningless for valid descriptors).
    #[inline]
    pub const fn invalid_pte_type(self) -> InvalidPteType {
        InvalidPteType(((self.0 & pte_bits::INVALID_PTE_TYPE_MASK) >> 60) as u32)
    }

    /// An invalid descriptor marked as being mid break-before-make, in the
    /// encoding of `line`.
    #[doc(alias = "stage2_pte_is_locked")]
    pub const fn is_locked_in(self, line: KernelLine) -> bool {
        match line {
            KernelLine::V6_12 => self.is_locked(),
            KernelLine::V7_3 => {
                if self.is_valid() {
                    return false;
                }
                self.invalid_pte_type().0 == InvalidPteType::LOCKED.0
            }
        }
    }

    /// The marker break-before-make stores while it is in progress, in the
    /// encoding of `line`.
    pub const fn locked(line: KernelLine) -> Pte {
        match line {
            KernelLine::V6_12 => Pte(pte_bits::INVALID_LOCKED),
            KernelLine::V7_3 => Pte(InvalidPteType::LOCKED.to_pte_bits()),
        }
    }

    /// Build a table descriptor pointing at `table`.
    #[doc(alias = "kvm_init_table_pte")]
    pub const fn new_table(table: PhysAddr, cfg: &Config) -> Pte {
        Pte(Pte::from_phys(table, cfg).0 | pte_bits::TYPE | pte_bits::VALID)
    }

    /// Build a valid leaf at `level` for `pa` with leaf attributes `attr`
    /// (bits outside the two attribute fields are dropped).
    #[doc(alias = "kvm_init_valid_leaf_pte")]
    pub const fn new_valid_leaf(pa: PhysAddr, attr: u64, level: Level, cfg: &Config) -> Pte {
        let mut pte = Pte::from_phys(pa, cfg).0;
        pte |= attr & (pte_bits::LEAF_ATTR_LO | pte_bits::LEAF_ATTR_HI);
        if level.0 == Level::LAST.0 {
            pte |= pte_bits::TYPE;
        }
        pte |= pte_bits::VALID;
        Pte(pte)
    }

    /// Build an invalid descriptor recording `owner_id`.
    #[inline]
    #[doc(alias = "kvm_init_invalid_leaf_owner")]
    pub const fn new_invalid_owner(owner_id: u8) -> Pte {
        Pte(((owner_id as u64) << 2) & pte_bits::INVALID_OWNER_MASK)
    }
}

impl From<u64> for Pte {
    fn from(v: u64) -> Self {
        Pte(v)
    }
}

impl From<Pte> for u64 {
    fn from(p: Pte) -> u64 {
        p.0
    }
}
