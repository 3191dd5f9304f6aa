// SPDX-License-Identifier: GPL-2.0-only
//! The typed operation stream: configuration, operations and their helpers.

use std::collections::BTreeMap;
use std::fmt;

pub use super::race::{Install, Interference, Race};

/// Maximum number of operations in a stream (the decoder stops there; the
/// validator and the text parser reject longer streams).
pub const MAX_OPS: usize = 64;
/// Maximum number of regions in a [`ForcePtePolicy::Host`] memory map.
pub const MAX_REGIONS: usize = 8;
/// Smallest allowed [`Config::arena_pages`].
pub const ARENA_PAGES_MIN: u32 = 64;
/// Largest allowed [`Config::arena_pages`].
pub const ARENA_PAGES_MAX: u32 = 1024;
/// Allowed range of a stage-2 start-level override.
pub const START_LEVEL_MIN: i8 = -1;
/// Allowed range of a stage-2 start-level override.
pub const START_LEVEL_MAX: i8 = 3;
/// Largest allowed [`Config::mmfr0_parange`] (ID_AA64MMFR0_EL1.PARange = 52 bits).
pub const PARANGE_MAX: u8 = 6;
/// Largest simulated memory per side, in bytes. It bounds what one op can
/// do (and record): 4 MiB still holds a level-1 split on 4K (513 pages).
pub const ARENA_BYTES_MAX: u64 = 4 << 20;
/// Largest memcache size: the kernel's `kvm_mmu_memory_cache::nobjs` is an `int`.
pub const MEMCACHE_MAX: u32 = i32::MAX as u32;

/// `enum kvm_pgtable_prot` as a bit set.
pub type Prot = u64;

/// `KVM_PGTABLE_PROT_*` bits of Linux 6.12 (7.x moved them, see
/// [`ProtLayout`]); the software bits are the same in every line.
pub mod prot {
    use super::Prot;
    pub const X: Prot = 1 << 0;
    pub const W: Prot = 1 << 1;
    pub const R: Prot = 1 << 2;
    pub const DEVICE: Prot = 1 << 3;
    pub const NORMAL_NC: Prot = 1 << 4;
    pub const SW0: Prot = 1 << 55;
    pub const SW1: Prot = 1 << 56;
    pub const SW2: Prot = 1 << 57;
    pub const SW3: Prot = 1 << 58;
    pub const RW: Prot = R | W;
    pub const RX: Prot = R | X;
    pub const RWX: Prot = R | W | X;
    /// All named bits.
    pub const KNOWN: Prot = RWX | DEVICE | NORMAL_NC | SW0 | SW1 | SW2 | SW3;
}

/// Where the `KVM_PGTABLE_PROT_*` bits sit in one kernel line's
/// `enum kvm_pgtable_prot`. 6.12 has one execute bit (X, bit 0); 7.x
/// splits it into privileged and unprivileged execute (PX bit 0, UX bit 1;
/// X = PX | UX) and moves the rest up by one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProtLayout {
    /// Privileged execute (6.12: the only execute bit, X).
    pub px: Prot,
    /// Unprivileged execute (0 in 6.12, which has none).
    pub ux: Prot,
    pub w: Prot,
    pub r: Prot,
    pub device: Prot,
    pub normal_nc: Prot,
}

impl ProtLayout {
    pub const V6_12: ProtLayout = ProtLayout {
        px: 1 << 0,
        ux: 0,
        w: 1 << 1,
        r: 1 << 2,
        device: 1 << 3,
        normal_nc: 1 << 4,
    };
    pub const V7: ProtLayout = ProtLayout {
        px: 1 << 0,
        ux: 1 << 1,
        w: 1 << 2,
        r: 1 << 3,
        device: 1 << 4,
        normal_nc: 1 << 5,
    };

    /// `KVM_PGTABLE_PROT_X`.
    pub fn x(&self) -> Prot {
        self.px | self.ux
    }
    /// `KVM_PGTABLE_PROT_RW`, pKVM's host MMIO protection.
    pub fn rw(&self) -> Prot {
        self.r | self.w
    }
    /// `KVM_PGTABLE_PROT_RWX`, pKVM's host memory protection.
    pub fn rwx(&self) -> Prot {
        self.rw() | self.x()
    }
    /// Every named bit (software bits included).
    pub fn known(&self) -> Prot {
        self.rwx() | self.device | self.normal_nc | prot::SW0 | prot::SW1 | prot::SW2 | prot::SW3
    }
}

/// `enum kvm_pgtable_walk_flags` bits (as a `u8`).
pub mod walk_flags {
    pub const LEAF: u8 = 1 << 0;
    pub const TABLE_PRE: u8 = 1 << 1;
    pub const TABLE_POST: u8 = 1 << 2;
    pub const SHARED: u8 = 1 << 3;
    /// 6.12 HANDLE_FAULT, 7.x IGNORE_EAGAIN (see [`super::KernelLine::walk_bit4`]).
    pub const HANDLE_FAULT: u8 = 1 << 4;
    /// 7.x name of bit 4.
    pub const IGNORE_EAGAIN: u8 = 1 << 4;
    pub const SKIP_BBM_TLBI: u8 = 1 << 5;
    pub const SKIP_CMO: u8 = 1 << 6;
    /// All defined flags (the 128 combinations the Walk profile covers).
    pub const ALL: u8 = 0x7f;
    /// Names in bit order, as used by the text format.
    pub const NAMES: [(u8, &str); 7] = [
        (LEAF, "LEAF"),
        (TABLE_PRE, "TABLE_PRE"),
        (TABLE_POST, "TABLE_POST"),
        (SHARED, "SHARED"),
        (HANDLE_FAULT, "HANDLE_FAULT"),
        (SKIP_BBM_TLBI, "SKIP_BBM_TLBI"),
        (SKIP_CMO, "SKIP_CMO"),
    ];
}

/// Errno values a test visitor may return (negative, as the kernel does).
pub mod errno {
    pub const E2BIG: i8 = -7;
    pub const EAGAIN: i8 = -11;
    pub const ENOMEM: i8 = -12;
    pub const EINVAL: i8 = -22;
    /// The four values the decoder produces (non-literal modes).
    pub const ALL: [i8; 4] = [EAGAIN, EINVAL, ENOMEM, E2BIG];
    /// Name of a known errno value (without the leading '-').
    pub fn name(e: i8) -> Option<&'static str> {
        match e {
            E2BIG => Some("E2BIG"),
            EAGAIN => Some("EAGAIN"),
            ENOMEM => Some("ENOMEM"),
            EINVAL => Some("EINVAL"),
            _ => None,
        }
    }
}

/// Memcache handed to a stage-2 call: `None` = NULL pointer, `Some(n)` = a
/// memcache holding `n` free pages.
pub type Memcache = Option<u32>;

/// Which page-table flavour is exercised.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Stage {
    /// `kvm_pgtable_hyp_*` (EL2 stage-1).
    Hyp,
    /// `kvm_pgtable_stage2_*`.
    Stage2,
}

/// Build context the C code is compiled/run for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Context {
    /// nVHE hypervisor (`__KVM_NVHE_HYPERVISOR__`).
    Nvhe,
    /// Kernel proper (VHE / host side).
    Kernel,
}

/// A pinned kernel line: which kernel's pgtable.c the C side runs and
/// which API shape the stream speaks (see `kernel.lock`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum KernelLine {
    /// Linux 6.12 (the API of 6.12: set_owner, HANDLE_FAULT, PROT_X, NOFWB).
    #[default]
    V6_12,
    /// Linux 7.3, the API mainline has had since 7.1 (annotate,
    /// IGNORE_EAGAIN, PROT_PX/UX, AS_S1, destroy_range/destroy_pgd).
    V7_3,
}

impl KernelLine {
    pub const ALL: [KernelLine; 2] = [KernelLine::V6_12, KernelLine::V7_3];

    /// The line's name in `kernel.lock` and in the text format.
    pub fn name(self) -> &'static str {
        match self {
            KernelLine::V6_12 => "6.12",
            KernelLine::V7_3 => "7.3",
        }
    }

    /// The line called `name`.
    pub fn from_name(name: &str) -> Option<KernelLine> {
        KernelLine::ALL.iter().copied().find(|l| l.name() == name)
    }

    /// Whether the line has the 7.1+ API shape.
    pub fn is_v7(self) -> bool {
        self >= KernelLine::V7_3
    }

    /// The line's `enum kvm_pgtable_prot` layout.
    pub fn prot(self) -> ProtLayout {
        if self.is_v7() {
            ProtLayout::V7
        } else {
            ProtLayout::V6_12
        }
    }

    /// The name of walk flag bit 4: 6.12's HANDLE_FAULT (stop on -EAGAIN)
    /// became 7.x's IGNORE_EAGAIN (go on after -EAGAIN).
    pub fn walk_bit4(self) -> &'static str {
        if self.is_v7() {
            "IGNORE_EAGAIN"
        } else {
            "HANDLE_FAULT"
        }
    }
}

/// Translation granule.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Granule {
    K4,
    K16,
    K64,
}

impl Granule {
    pub const ALL: [Granule; 3] = [Granule::K4, Granule::K16, Granule::K64];

    /// PAGE_SHIFT: 12, 14 or 16.
    pub fn page_shift(self) -> u32 {
        match self {
            Granule::K4 => 12,
            Granule::K16 => 14,
            Granule::K64 => 16,
        }
    }

    /// PAGE_SIZE in bytes.
    pub fn page_size(self) -> u64 {
        1 << self.page_shift()
    }

    /// PTRS_PER_PTE = 1 << (PAGE_SHIFT - 3).
    pub fn ptrs_per_pte(self) -> u64 {
        1 << (self.page_shift() - 3)
    }

    /// Shift of the size mapped by one entry at `level`:
    /// `(PAGE_SHIFT - 3) * (4 - level) + 3`. Meaningful for levels -1..=3.
    pub fn level_shift(self, level: i8) -> u32 {
        let bits = self.page_shift() as i64 - 3;
        let s = bits * (4 - level as i64) + 3;
        s.clamp(0, 127) as u32
    }

    /// Bytes mapped by one entry at `level`, `None` if that does not fit in
    /// a u64 (e.g. 64K level -1).
    pub fn level_size(self, level: i8) -> Option<u64> {
        1u64.checked_shl(self.level_shift(level))
    }

    /// The first translation level the granule has: -1 for 4K (with
    /// FEAT_LPA2), 0 for 16K, 1 for 64K (Arm ARM, VMSAv8-64 translation
    /// levels). A stage-2 root above it is not a table any VTCR_EL2 can
    /// describe (64K's SL0 = 0b11 is reserved), and pgtable.c's
    /// `kvm_pgd_page_idx()` would shift by 64 or more for it.
    pub fn min_start_level(self) -> i8 {
        match self {
            Granule::K4 => -1,
            Granule::K16 => 0,
            Granule::K64 => 1,
        }
    }

    /// KVM_PGTABLE_MIN_BLOCK_LEVEL: 1 for 4K, 2 otherwise.
    pub fn min_block_level(self) -> i8 {
        match self {
            Granule::K4 => 1,
            _ => 2,
        }
    }

    /// Short text name: "4k", "16k", "64k".
    pub fn name(self) -> &'static str {
        match self {
            Granule::K4 => "4k",
            Granule::K16 => "16k",
            Granule::K64 => "64k",
        }
    }
}

/// Stage-2 `enum kvm_pgtable_stage2_flags`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct S2Flags {
    /// KVM_PGTABLE_S2_IDMAP.
    pub idmap: bool,
    /// KVM_PGTABLE_S2_NOFWB (6.12 only).
    pub nofwb: bool,
    /// KVM_PGTABLE_S2_AS_S1 (7.x only): final attributes are stage 1's.
    pub as_s1: bool,
}

impl S2Flags {
    /// `enum kvm_pgtable_stage2_flags` of `line`: 6.12 NOFWB bit 0, IDMAP
    /// bit 1; 7.x IDMAP bit 0, AS_S1 bit 1.
    pub fn bits(self, line: KernelLine) -> u32 {
        if line.is_v7() {
            u32::from(self.idmap) | u32::from(self.as_s1) << 1
        } else {
            u32::from(self.nofwb) | u32::from(self.idmap) << 1
        }
    }
}

/// How a stage-2 table is torn down at the end of a stream.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Teardown {
    /// `kvm_pgtable_stage2_destroy` (every line; pKVM and 6.12 KVM).
    #[default]
    Destroy,
    /// 7.x KVM (`kvm_stage2_destroy`): `kvm_pgtable_stage2_destroy_range` over
    /// consecutive chunks of `2^blocks_log2` blocks of the largest block
    /// size (KVM_PGTABLE_MIN_BLOCK_LEVEL), then `_destroy_pgd`. KVM itself
    /// uses one block per chunk; chunks never split a block.
    RangeChunks { blocks_log2: u8 },
}

/// Largest `Teardown::RangeChunks::blocks_log2`.
pub const CHUNK_BLOCKS_LOG2_MAX: u8 = 6;

/// CPU features the simulated system advertises.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Features {
    /// LPA2 (52-bit with 4K/16K). Never set together with [`Granule::K64`].
    pub lpa2: bool,
    /// Stage-2 FWB.
    pub fwb: bool,
    /// TLBI range instructions.
    pub tlb_range: bool,
    pub bti: bool,
    /// hVHE.
    pub hvhe: bool,
    /// Ampere AC03 erratum workaround.
    pub ampere_ac03: bool,
    /// FEAT_XNX: stage-2 XN distinguishes EL0 and EL1 (7.x only).
    pub xnx: bool,
}

impl Features {
    /// (name, getter) table in canonical order (also the binary bit order).
    pub const NAMES: [&'static str; 7] = [
        "lpa2",
        "fwb",
        "tlb_range",
        "bti",
        "hvhe",
        "ampere_ac03",
        "xnx",
    ];

    pub fn to_bits(self) -> u8 {
        (self.lpa2 as u8)
            | (self.fwb as u8) << 1
            | (self.tlb_range as u8) << 2
            | (self.bti as u8) << 3
            | (self.hvhe as u8) << 4
            | (self.ampere_ac03 as u8) << 5
            | (self.xnx as u8) << 6
    }

    pub fn from_bits(b: u8) -> Features {
        Features {
            lpa2: b & 1 != 0,
            fwb: b & 2 != 0,
            tlb_range: b & 4 != 0,
            bti: b & 8 != 0,
            hvhe: b & 16 != 0,
            ampere_ac03: b & 32 != 0,
            xnx: b & 64 != 0,
        }
    }
}

/// Kind of a host memory-map region.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RegionKind {
    Memory,
    Mmio,
}

/// One region of a pKVM-host style memory map.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Region {
    pub start: u64,
    pub size: u64,
    pub kind: RegionKind,
}

impl Region {
    /// Whether `addr` lies in `[start, start + size)` (no overflow).
    pub fn contains(&self, addr: u64) -> bool {
        addr >= self.start && (addr as u128) < self.start as u128 + self.size as u128
    }

    /// Whether `[addr, addr + size)` and this region share an address
    /// (computed without overflow).
    pub fn overlaps(&self, addr: u64, size: u64) -> bool {
        let end = addr as u128 + size as u128;
        (self.start as u128) < end && (addr as u128) < self.start as u128 + self.size as u128
    }

    /// Whether `[addr, addr + size)` lies entirely inside this region
    /// (computed without overflow; an empty range at `addr` counts if
    /// `start <= addr <= end`).
    pub fn contains_range(&self, addr: u64, size: u64) -> bool {
        let (Some(end), Some(rend)) = (
            (addr as u128).checked_add(size as u128),
            (self.start as u128).checked_add(self.size as u128),
        ) else {
            return false;
        };
        addr >= self.start && end <= rend
    }
}

/// How the `force_pte_cb` stage-2 callback answers.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub enum ForcePtePolicy {
    /// No callback (NULL).
    #[default]
    None,
    /// pKVM host style: a range fully inside a Memory region forces pages
    /// unless prot == RWX, inside an Mmio region unless prot == RW.
    Host { regions: Vec<Region> },
    /// Call number `i` (0-based) answers bit `i % 64` of `pattern`.
    Arbitrary { pattern: u64 },
}

/// The real caller of pgtable.c a stream stands for. Each calls it with its
/// own `kvm_pgtable_mm_ops`, memory source and WARN semantics (the profile
/// of each is `kvm_pgtable_diff::caller::CallerProfile`).
///
/// It is never written down: [`Config::caller`] derives it from what a
/// configuration already says, so every stream written before there were
/// profiles keeps its meaning. The stage and the execution context pick
/// the caller; an nVHE stage-2 table with `KVM_PGTABLE_S2_IDMAP` is pKVM's
/// host stage-2 (the only identity-mapped stage-2, mem_protect.c
/// `KVM_HOST_S2_FLAGS`), any other nVHE stage-2 table a pKVM guest's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Caller {
    /// pKVM's host stage-2 at EL2 (`host_mmu`, mem_protect.c).
    PkvmHost,
    /// A pKVM guest's stage-2 at EL2 (`kvm_guest_prepare_stage2`).
    PkvmGuest,
    /// A KVM guest's stage-2 built by the kernel (`kvm_s2_mm_ops`, mmu.c);
    /// also the table a pKVM guest runs on in 6.12.
    KvmGuest,
    /// The hypervisor's stage-1 at EL2 after pKVM's setup (`pkvm_pgtable`,
    /// nvhe/setup.c `pkvm_pgtable_mm_ops`).
    HypEl2,
    /// The hypervisor's stage-1 built by the kernel for nVHE
    /// (`hyp_pgtable`, mmu.c `kvm_hyp_mm_ops`).
    HypKernel,
}

impl Caller {
    pub const ALL: [Caller; 5] = [
        Caller::PkvmHost,
        Caller::PkvmGuest,
        Caller::KvmGuest,
        Caller::HypEl2,
        Caller::HypKernel,
    ];

    /// Short name, for reports.
    pub fn name(self) -> &'static str {
        match self {
            Caller::PkvmHost => "pKVM host stage-2",
            Caller::PkvmGuest => "pKVM guest stage-2",
            Caller::KvmGuest => "KVM guest stage-2 (kernel)",
            Caller::HypEl2 => "hyp stage-1 at EL2",
            Caller::HypKernel => "hyp stage-1 (kernel)",
        }
    }

    /// Whether the caller runs pgtable.c at EL2 (nVHE hypervisor), where
    /// every WARN is a hypervisor panic.
    pub fn at_el2(self) -> bool {
        matches!(self, Caller::PkvmHost | Caller::PkvmGuest | Caller::HypEl2)
    }
}

/// Simulation configuration.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Config {
    /// The kernel line the stream runs on.
    pub kernel: KernelLine,
    pub stage: Stage,
    pub context: Context,
    pub granule: Granule,
    /// Hyp: va_bits; stage-2: phys_shift (IPA size).
    /// Valid range: [`Config::ia_bits_range`].
    pub ia_bits: u8,
    /// `None` = derived the kernel way; `Some(l)` = stage-2 start-level
    /// (SL0) override, -1..=3.
    pub start_level: Option<i8>,
    pub s2_flags: S2Flags,
    pub features: Features,
    /// ID_AA64MMFR0_EL1.PARange (0..=6), input to `kvm_get_vtcr`.
    pub mmfr0_parange: u8,
    /// 16-bit VMIDs (ID_AA64MMFR1_EL1.VMIDBits), input to `kvm_get_vtcr`.
    pub vmid16: bool,
    pub force_pte: ForcePtePolicy,
    /// Simulated physical memory in pages (64..=4096).
    pub arena_pages: u32,
    /// Allocation-failure injection: allocation number `n` (0-based) and
    /// later fail; `None` = never.
    pub alloc_fail_after: Option<u32>,
    /// How a stage-2 table is torn down (7.x may destroy it by ranges).
    pub teardown: Teardown,
}

impl Config {
    /// Allowed `ia_bits` for a stage: hyp 25..=52, stage-2 32..=52.
    pub fn ia_bits_range(stage: Stage) -> std::ops::RangeInclusive<u8> {
        match stage {
            Stage::Hyp => 25..=52,
            Stage::Stage2 => 32..=52,
        }
    }

    /// A plain default configuration for `stage` (4K, 48-bit hyp VA or
    /// 40-bit IPA, no features, 512 arena pages).
    pub fn new(stage: Stage) -> Config {
        Config {
            kernel: KernelLine::V6_12,
            stage,
            context: Context::Nvhe,
            granule: Granule::K4,
            ia_bits: match stage {
                Stage::Hyp => 48,
                Stage::Stage2 => 40,
            },
            start_level: None,
            s2_flags: S2Flags::default(),
            features: Features::default(),
            mmfr0_parange: 2,
            vmid16: false,
            force_pte: ForcePtePolicy::None,
            arena_pages: 512,
            alloc_fail_after: None,
            teardown: Teardown::Destroy,
        }
    }

    /// The real caller this configuration stands for (see [`Caller`]).
    pub fn caller(&self) -> Caller {
        match (self.stage, self.context) {
            (Stage::Hyp, Context::Nvhe) => Caller::HypEl2,
            (Stage::Hyp, Context::Kernel) => Caller::HypKernel,
            (Stage::Stage2, Context::Kernel) => Caller::KvmGuest,
            (Stage::Stage2, Context::Nvhe) if self.s2_flags.idmap => Caller::PkvmHost,
            (Stage::Stage2, Context::Nvhe) => Caller::PkvmGuest,
        }
    }

    /// `1 << ia_bits` (saturating at u64::MAX for absurd values).
    pub fn ia_limit(&self) -> u64 {
        1u64.checked_shl(self.ia_bits as u32).unwrap_or(u64::MAX)
    }

    /// Checks the constraints every decoded configuration satisfies.
    pub fn validate(&self) -> Result<(), String> {
        let r = Config::ia_bits_range(self.stage);
        if !r.contains(&self.ia_bits) {
            return Err(format!(
                "ia_bits {} out of range {}..={} for this stage",
                self.ia_bits,
                r.start(),
                r.end()
            ));
        }
        if let Some(l) = self.start_level {
            if !(START_LEVEL_MIN..=START_LEVEL_MAX).contains(&l) {
                return Err(format!("start_level {l} out of range -1..=3"));
            }
            let min = self.granule.min_start_level();
            if l < min {
                return Err(format!(
                    "start_level {l} does not exist with the {} granule (its first level is {min})",
                    self.granule.name()
                ));
            }
        }
        if self.features.lpa2 && self.granule == Granule::K64 {
            return Err("lpa2 is not allowed with the 64k granule".into());
        }
        let line = self.kernel.name();
        if self.kernel.is_v7() {
            if self.s2_flags.nofwb {
                return Err(format!(
                    "flag nofwb does not exist in kernel {line} (7.x removed it)"
                ));
            }
        } else {
            if self.features.xnx {
                return Err(format!(
                    "feature xnx does not exist in kernel {line} (7.x only)"
                ));
            }
            if self.s2_flags.as_s1 {
                return Err(format!(
                    "flag as_s1 does not exist in kernel {line} (7.x only)"
                ));
            }
        }
        if let Teardown::RangeChunks { blocks_log2 } = self.teardown {
            if !self.kernel.is_v7() || self.stage != Stage::Stage2 {
                return Err(format!(
                    "teardown by ranges needs a 7.x stage-2 table (kernel {line} has no destroy_range)"
                ));
            }
            if blocks_log2 > CHUNK_BLOCKS_LOG2_MAX {
                return Err(format!(
                    "teardown chunks of 2^{blocks_log2} blocks; at most 2^{CHUNK_BLOCKS_LOG2_MAX}"
                ));
            }
        }
        if self.mmfr0_parange > PARANGE_MAX {
            return Err(format!("parange {} out of range 0..=6", self.mmfr0_parange));
        }
        if u64::from(self.arena_pages) * self.granule.page_size()
            > ARENA_BYTES_MAX.max(u64::from(ARENA_PAGES_MIN) * self.granule.page_size())
        {
            return Err(format!(
                "arena_pages {} of {} exceeds {} MiB of simulated memory",
                self.arena_pages,
                self.granule.name(),
                ARENA_BYTES_MAX >> 20
            ));
        }
        if !(ARENA_PAGES_MIN..=ARENA_PAGES_MAX).contains(&self.arena_pages) {
            return Err(format!(
                "arena_pages {} out of range {ARENA_PAGES_MIN}..={ARENA_PAGES_MAX}",
                self.arena_pages
            ));
        }
        if let ForcePtePolicy::Host { regions } = &self.force_pte {
            if regions.len() > MAX_REGIONS {
                return Err(format!("more than {MAX_REGIONS} host regions"));
            }
        }
        Ok(())
    }
}

/// What the test visitor of a [`Op::Walk`] returns.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum VisitScript {
    /// Always return 0.
    #[default]
    Ok,
    /// Return `errno` on visit number `n` (0-based) and 0 on every other
    /// visit.
    FailAt { n: u8, errno: i8 },
}

pub use super::ops::{Op, OpHandler, OpKind};

/// A complete scenario: configuration plus the operations to run.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct OpStream {
    pub config: Config,
    pub ops: Vec<Op>,
    /// Interference scheduled during some ops, by op index (see
    /// [`super::race`]).
    pub races: BTreeMap<usize, Race>,
}

impl OpStream {
    /// A stream of `ops` without interference.
    pub fn new(config: Config, ops: Vec<Op>) -> OpStream {
        OpStream {
            config,
            ops,
            races: BTreeMap::new(),
        }
    }

    /// The interference scheduled during op `index`.
    pub fn race(&self, index: usize) -> Option<&Race> {
        self.races.get(&index)
    }
}

/// Why a stream is not valid (see [`OpStream::validate`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InvalidStream {
    /// The configuration violates a constraint.
    Config(String),
    /// More than [`MAX_OPS`] operations.
    TooManyOps(usize),
    /// Op number `index` is not valid for the configured stage.
    OpStage { index: usize, name: &'static str },
    /// A field of op number `index` holds a value the decoder cannot produce.
    Field {
        index: usize,
        key: &'static str,
        why: String,
    },
    /// The race scheduled at op number `index` cannot be encoded.
    Race { index: usize, why: String },
}

impl fmt::Display for InvalidStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InvalidStream::Config(m) => write!(f, "invalid config: {m}"),
            InvalidStream::TooManyOps(n) => write!(f, "{n} ops, at most {MAX_OPS} allowed"),
            InvalidStream::OpStage { index, name } => {
                write!(f, "op #{index} ({name}) is not valid for this stage")
            }
            InvalidStream::Field { index, key, why } => write!(f, "op #{index} {key}: {why}"),
            InvalidStream::Race { index, why } => write!(f, "op #{index} race: {why}"),
        }
    }
}

impl std::error::Error for InvalidStream {}

impl OpStream {
    /// Checks that the stream is one the decoder can produce, i.e. that
    /// `decode(&encode(s), Profile::Any) == s`. Every decoded stream is
    /// valid; the text parser rejects invalid streams.
    pub fn validate(&self) -> Result<(), InvalidStream> {
        self.config.validate().map_err(InvalidStream::Config)?;
        if self.ops.len() > MAX_OPS {
            return Err(InvalidStream::TooManyOps(self.ops.len()));
        }
        for (index, op) in self.ops.iter().enumerate() {
            op.validate_fields()
                .map_err(|(key, why)| InvalidStream::Field { index, key, why })?;
            if !op.valid_for(self.config.stage) {
                return Err(InvalidStream::OpStage {
                    index,
                    name: op.name(),
                });
            }
        }
        for (&index, race) in &self.races {
            let why = if index >= self.ops.len() {
                format!("no op #{index} to race with")
            } else if self.config.stage != Stage::Stage2 {
                "interference is modelled on stage-2 tables only".into()
            } else {
                match race.validate() {
                    Ok(()) => continue,
                    Err(why) => why,
                }
            };
            return Err(InvalidStream::Race { index, why });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn granule_geometry() {
        // 4K: 512 entries, levels map 4K, 2M, 1G, 512G, 256T.
        assert_eq!(Granule::K4.ptrs_per_pte(), 512);
        assert_eq!(Granule::K4.level_size(3), Some(0x1000));
        assert_eq!(Granule::K4.level_size(2), Some(0x20_0000));
        assert_eq!(Granule::K4.level_size(1), Some(0x4000_0000));
        assert_eq!(Granule::K4.level_size(0), Some(1 << 39));
        assert_eq!(Granule::K4.level_size(-1), Some(1 << 48));
        // 16K: 2048 entries, 16K, 32M, 64G, 128T.
        assert_eq!(Granule::K16.ptrs_per_pte(), 2048);
        assert_eq!(Granule::K16.level_size(2), Some(32 << 20));
        assert_eq!(Granule::K16.level_size(1), Some(64 << 30));
        assert_eq!(Granule::K16.level_size(0), Some(1 << 47));
        // 64K: 8192 entries, 64K, 512M, 4T, 2^55; level -1 does not fit.
        assert_eq!(Granule::K64.ptrs_per_pte(), 8192);
        assert_eq!(Granule::K64.level_size(2), Some(512 << 20));
        assert_eq!(Granule::K64.level_size(1), Some(4 << 40));
        assert_eq!(Granule::K64.level_size(0), Some(1 << 55));
        assert_eq!(Granule::K64.level_size(-1), None);
        assert_eq!(Granule::K4.min_block_level(), 1);
        assert_eq!(Granule::K16.min_block_level(), 2);
        assert_eq!(Granule::K64.min_block_level(), 2);
    }

    #[test]
    fn tags_name_their_slot_and_names_their_kind() {
        for &k in OpKind::ALL {
            assert_eq!(super::super::TAG_TABLE[usize::from(k.tag())], k);
            for line in KernelLine::ALL {
                if k.valid_on(line) {
                    assert_eq!(OpKind::from_name(k.name(), line), Some(k));
                }
            }
        }
        // Each replaced 6.12 op maps to its 7.x successor and back.
        for (old, new) in [
            (OpKind::S2SetOwner, OpKind::S2Annotate),
            (OpKind::S2Mkyoung, OpKind::S2MkyoungFlags),
            (OpKind::S2RelaxPerms, OpKind::S2RelaxPermsFlags),
        ] {
            assert_eq!(old.on_line(KernelLine::V7_3), new);
            assert_eq!(new.on_line(KernelLine::V6_12), old);
            assert!(!old.valid_on(KernelLine::V7_3) && !new.valid_on(KernelLine::V6_12));
        }
    }

    #[test]
    fn validity() {
        let mut s = OpStream::new(Config::new(Stage::Hyp), vec![]);
        assert!(s.validate().is_ok());
        s.ops.push(Op::S2Unmap {
            addr: 0,
            size: 0x1000,
        });
        assert_eq!(
            s.validate(),
            Err(InvalidStream::OpStage {
                index: 0,
                name: "s2_unmap"
            })
        );
        s.config.stage = Stage::Stage2;
        assert!(s.validate().is_ok());
        s.config.ia_bits = 31;
        assert!(s.validate().is_err());
        s.config.ia_bits = 32;
        s.config.granule = Granule::K64;
        s.config.arena_pages = 64;
        s.config.features.lpa2 = true;
        assert!(s.validate().is_err());
        s.config.features.lpa2 = false;
        s.config.start_level = Some(4);
        assert!(s.validate().is_err());
        // 64K has no level 0 or -1 (its SL0 = 0b11 is reserved).
        s.config.start_level = Some(0);
        assert!(s.validate().is_err());
        s.config.start_level = Some(1);
        assert!(s.validate().is_ok());
        s.config.granule = Granule::K4;
        s.config.start_level = Some(-1);
        assert!(s.validate().is_ok());
        s.ops = vec![Op::GetLeaf { addr: 0 }; MAX_OPS + 1];
        assert_eq!(s.validate(), Err(InvalidStream::TooManyOps(MAX_OPS + 1)));
    }

    #[test]
    fn ranges() {
        assert_eq!(Op::S2Mkyoung { addr: 5 }.range(), Some((5, 1)));
        assert_eq!(Op::HypUnmap { addr: 7, size: 9 }.range(), Some((7, 9)));
        assert_eq!(Op::PgdSize { vtcr: 0 }.range(), None);
    }

    #[test]
    fn region_contains() {
        let r = Region {
            start: 0x1000,
            size: 0x2000,
            kind: RegionKind::Memory,
        };
        assert!(r.contains_range(0x1000, 0x2000));
        assert!(r.contains_range(0x2000, 0x1000));
        assert!(!r.contains_range(0x2000, 0x1001));
        assert!(!r.contains_range(0xfff, 0x10));
        assert!(!r.contains_range(u64::MAX, 2));
    }
}
