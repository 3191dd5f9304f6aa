// SPDX-License-Identifier: GPL-2.0-only
//! The one definition of every operation.
//!
//! Each entry of the table at the bottom of this file declares one
//! kvm_pgtable API call: its stable binary tag, its text name, the method
//! every [`Side`](crate::side::Side) implements for it ([`OpHandler`]), the
//! stages it applies to, and its fields. Each field names its type, its
//! [`codec`](super::codec) (binary literal encoding, text form, validity)
//! and the generator expression the fuzzer decoder uses for it (`g` is the
//! generator state, `r` the byte reader; earlier fields are in scope). An
//! entry may also say which input-address range the op targets and when it
//! must not run because the C code would be undefined for it.
//!
//! From that table [`define_ops!`] derives the typed [`Op`] and [`OpKind`],
//! the tag and name tables, the binary decoder and encoder of an op's
//! fields, its text printer and parser, field validation, the per-side
//! dispatch ([`Op::dispatch`] over [`OpHandler`]) and [`Op::precondition`].
//! Adding an op means: one entry here, one method on each side, and its
//! weight in [`super::binary::TAG_TABLE`].

use super::codec::*;
use super::generators::{Gen, Reader};
use super::model::{Caller, Config, Granule, KernelLine, Memcache, Prot, Stage, VisitScript};
use crate::results::Outcome;

/// Expands the op table; see the module documentation.
macro_rules! define_ops {
    (
        names($g:ident, $r:ident, $cfg:ident);
        $(
            $(#[$meta:meta])*
            op $variant:ident = $tag:literal, $name:literal, fn $method:ident, [$($stage:ident),+]
            $(on [$($line:ident),+])? {
                $( $field:ident $(($key:literal))? : $ty:ty as $codec:ty = $gen:expr ),* $(,)?
            }
            $(range($ra:expr, $rs:expr);)?
            $(skip if $skip:expr => $why:literal;)*
        )*
    ) => {
        /// One kvm_pgtable API call with its arguments.
        #[derive(Clone, Debug, PartialEq, Eq, Hash)]
        pub enum Op {
            $( $(#[$meta])* $variant { $( $field: $ty ),* }, )*
        }

        /// Field-less mirror of [`Op`].
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum OpKind {
            $( $variant, )*
        }

        /// What each side implements: one method per op, called with the
        /// op's fields ([`Op::dispatch`]).
        pub trait OpHandler {
            $( $(#[$meta])* fn $method(&mut self, $( $field: $ty ),*) -> Outcome; )*
        }

        impl OpKind {
            /// Every kind, in canonical-tag order (`ALL[k.tag()] == k`).
            pub const ALL: &'static [OpKind] = &[ $( OpKind::$variant, )* ];

            /// Stable canonical binary tag (what the encoder writes). Never
            /// change these: the committed corpus depends on them.
            pub fn tag(self) -> u8 {
                match self { $( OpKind::$variant => $tag, )* }
            }

            /// Text-format name.
            pub fn name(self) -> &'static str {
                match self { $( OpKind::$variant => $name, )* }
            }

            /// The kind a stream on kernel `line` means by the text name
            /// `name` (a name may stand for one kind per line).
            pub fn from_name(name: &str, line: KernelLine) -> Option<OpKind> {
                OpKind::ALL
                    .iter()
                    .copied()
                    .find(|k| k.name() == name && k.valid_on(line))
            }

            /// Whether this kind may appear in a stream of `stage`.
            pub fn valid_for(self, stage: Stage) -> bool {
                match self { $( OpKind::$variant => false $( || stage == Stage::$stage )+, )* }
            }

            /// Whether this kind exists in the API of kernel `line`.
            #[allow(unused_variables)]
            pub fn valid_on(self, line: KernelLine) -> bool {
                match self {
                    $( OpKind::$variant => define_ops!(@lines line $( $($line)+ )?), )*
                }
            }

            /// The text keys of the op's fields, in order.
            pub fn keys(self) -> &'static [&'static str] {
                match self {
                    $( OpKind::$variant => &[ $( define_ops!(@key $field $($key)?) ),* ], )*
                }
            }
        }

        impl Op {
            /// The op's kind.
            pub fn kind(&self) -> OpKind {
                match self { $( Op::$variant { .. } => OpKind::$variant, )* }
            }

            /// Calls the handler method of this op with its fields.
            pub fn dispatch<H: OpHandler + ?Sized>(&self, h: &mut H) -> Outcome {
                match *self { $( Op::$variant { $( $field ),* } => h.$method($( $field ),*), )* }
            }

            /// The input-address range the op targets, as `(addr, size)`
            /// (`addr + size` may wrap); `None` for ops without one.
            #[allow(unused_variables)]
            pub fn range(&self) -> Option<(u64, u64)> {
                match *self {
                    $( Op::$variant { $( $field ),* } => define_ops!(@range $(($ra, $rs))?), )*
                }
            }

            /// `Err(reason)` when the op must not run on any side under
            /// `cfg`: it does not apply to the configured stage, its inputs
            /// make the C code undefined, or the stream's real caller
            /// ([`Config::caller`]) never passes them (the kernel's callers
            /// guarantee all three).
            #[allow(unused_variables)]
            pub fn precondition(&self, $cfg: &Config) -> Result<(), &'static str> {
                if !self.kind().valid_for($cfg.stage) {
                    return Err("op does not apply to this stage");
                }
                if !self.kind().valid_on($cfg.kernel) {
                    return Err("op does not exist in this kernel line's API");
                }
                match *self {
                    $( Op::$variant { $( $field ),* } => {
                        $( if $skip { return Err($why); } )*
                    } )*
                }
                Ok(())
            }

            /// Checks every field against its codec's domain (what the
            /// decoder can produce); `Err((key, why))` names the field.
            pub fn validate_fields(&self) -> Result<(), (&'static str, String)> {
                match self {
                    $( Op::$variant { $( $field ),* } => {
                        $( <$codec as FieldCodec<$ty>>::validate(*$field)
                            .map_err(|e| (define_ops!(@key $field $($key)?), e))?; )*
                    } )*
                }
                Ok(())
            }

            /// Appends the canonical tag and every field as literals.
            pub(crate) fn encode_into(&self, w: &mut Writer) {
                w.byte(self.kind().tag());
                match self {
                    $( Op::$variant { $( $field ),* } => {
                        $( <$codec as FieldCodec<$ty>>::encode(*$field, w); )*
                    } )*
                }
            }

            /// The fields as `(key, text value)` pairs, in order; values
            /// that depend on the kernel line (prot, walk flags) are
            /// spelled for `cfg`'s.
            pub fn text_fields(&self, cfg: &Config) -> Vec<(&'static str, String)> {
                match self {
                    $( Op::$variant { $( $field ),* } => vec![
                        $( (define_ops!(@key $field $($key)?), <$codec as FieldCodec<$ty>>::print(*$field, cfg)), )*
                    ], )*
                }
            }

            /// Builds an op of `kind` from text `key=value` pairs (every key
            /// required, any order; unknown and duplicate keys are the
            /// caller's to reject, see [`OpKind::keys`]).
            pub fn from_text<'a>(
                kind: OpKind,
                get: &dyn Fn(&'static str) -> Result<&'a str, String>,
                cfg: &Config,
            ) -> Result<Op, String> {
                Ok(match kind {
                    $( OpKind::$variant => Op::$variant { $(
                        $field: {
                            let key = define_ops!(@key $field $($key)?);
                            <$codec as FieldCodec<$ty>>::parse(get(key)?, cfg)
                                .map_err(|e| format!("{} {key}: {e}", $name))?
                        },
                    )* }, )*
                })
            }
        }

        /// Decodes the fields of an op of `kind` with the biased generators.
        pub(crate) fn decode_op(kind: OpKind, $r: &mut Reader, $g: &mut Gen) -> Op {
            match kind {
                $( OpKind::$variant => {
                    $( let $field: $ty = $gen; )*
                    Op::$variant { $( $field ),* }
                } )*
            }
        }
    };
    (@key $field:ident) => { stringify!($field) };
    (@key $field:ident $key:literal) => { $key };
    (@lines $l:ident) => { true };
    (@lines $l:ident $($line:ident)+) => { false $( || $l == KernelLine::$line )+ };
    (@range) => { None };
    (@range ($a:expr, $s:expr)) => { Some(($a, $s)) };
}

/// Deferred range TLBIs an unmap may cost before it is not run (see the
/// `S2Unmap` entry).
pub const MAX_RANGE_TLBIS: u64 = 4096;

define_ops! {
    names(g, r, cfg);

    /// `kvm_pgtable_hyp_map`.
    op HypMap = 0, "hyp_map", fn hyp_map, [Hyp] {
        addr: u64 as Hex = g.addr(r),
        size: u64 as Hex = g.size(r, addr),
        phys: u64 as Hex = g.phys(r, addr),
        prot: Prot as ProtBits = g.prot(r, addr, size),
    }
    range(addr, size);

    /// `kvm_pgtable_hyp_unmap`.
    op HypUnmap = 1, "hyp_unmap", fn hyp_unmap, [Hyp] {
        addr: u64 as Hex = g.addr(r),
        size: u64 as Hex = g.size(r, addr),
    }
    range(addr, size);

    /// `kvm_pgtable_stage2_map`.
    op S2Map = 2, "s2_map", fn stage2_map, [Stage2] {
        addr: u64 as Hex = g.addr(r),
        size: u64 as Hex = g.map_size(r, addr),
        phys: u64 as Hex = g.map_phys(r, addr),
        prot: Prot as ProtBits = g.prot(r, addr, size),
        mc: Memcache as Mc = g.memcache(r),
        flags: u8 as WalkFlagBits = g.map_flags(r),
    }
    range(addr, size);
    skip if mc.is_none() && cfg.caller() == Caller::KvmGuest
        => "KVM always passes a memcache to map (mmu.c: user_mem_abort the vCPU's \
            mmu_page_cache, kvm_phys_addr_ioremap an on-stack one)";
    skip if mc.is_none() && cfg.caller() == Caller::PkvmHost
        => "the pKVM host passes its page pool as the memcache, never NULL \
            (mem_protect.c __host_stage2_idmap: &host_s2_pool)";
    skip if addr != phys && cfg.caller() == Caller::PkvmHost
        => "the pKVM host only maps its memory one to one (mem_protect.c \
            __host_stage2_idmap passes the address as phys)";

    /// `kvm_pgtable_stage2_set_owner` (6.12; 7.x annotates instead).
    op S2SetOwner = 3, "s2_set_owner", fn stage2_set_owner, [Stage2] on [V6_12] {
        addr: u64 as Hex = g.addr(r),
        size: u64 as Hex = g.size(r, addr),
        mc: Memcache as Mc = g.memcache(r),
        owner_id("owner"): u8 as Dec8 = g.owner(r),
    }
    range(addr, size);
    skip if mc.is_none() && cfg.caller() == Caller::PkvmHost
        => "the pKVM host passes its page pool as the memcache, never NULL \
            (mem_protect.c host_stage2_set_owner_locked: &host_s2_pool)";

    /// `kvm_pgtable_stage2_unmap`.
    op S2Unmap = 4, "s2_unmap", fn stage2_unmap, [Stage2] {
        addr: u64 as Hex = g.addr(r),
        size: u64 as Hex = g.size(r, addr),
    }
    range(addr, size);
    // With FEAT_TLBIRANGE and FWB, unmap defers to one range TLBI per
    // MAX_TLBI_RANGE_PAGES pages of `size`, whatever is mapped: a size near
    // 2^64 means ~10^8 events. Callers bound size by a memslot.
    skip if cfg.features.tlb_range
        && cfg.features.fwb
        && !cfg.s2_flags.nofwb
        && (size >> cfg.granule.page_shift()) / rust_pgtable::MAX_TLBI_RANGE_PAGES > MAX_RANGE_TLBIS
        => "unmap size needs more than 4096 deferred range TLBIs";

    /// `kvm_pgtable_stage2_wrprotect`.
    op S2Wrprotect = 5, "s2_wrprotect", fn stage2_wrprotect, [Stage2] {
        addr: u64 as Hex = g.addr(r),
        size: u64 as Hex = g.size(r, addr),
    }
    range(addr, size);

    /// `kvm_pgtable_stage2_mkyoung` (6.12: fixed walk flags, returns the
    /// old descriptor).
    op S2Mkyoung = 6, "s2_mkyoung", fn stage2_mkyoung, [Stage2] on [V6_12] {
        addr: u64 as Hex = g.addr(r),
    }
    range(addr, 1);

    /// `kvm_pgtable_stage2_test_clear_young`.
    op S2TestClearYoung = 7, "s2_test_clear_young", fn stage2_test_clear_young, [Stage2] {
        addr: u64 as Hex = g.addr(r),
        size: u64 as Hex = g.size(r, addr),
        mkold: bool as YesNo = r.u8() & 1 != 0,
    }
    range(addr, size);

    /// `kvm_pgtable_stage2_relax_perms` (6.12: fixed walk flags).
    op S2RelaxPerms = 8, "s2_relax_perms", fn stage2_relax_perms, [Stage2] on [V6_12] {
        addr: u64 as Hex = g.fault_addr(r),
        prot: Prot as ProtBits = g.fault_prot(r, addr),
    }
    range(addr, 1);

    /// `kvm_pgtable_stage2_flush`.
    op S2Flush = 9, "s2_flush", fn stage2_flush, [Stage2] {
        addr: u64 as Hex = g.addr(r),
        size: u64 as Hex = g.size(r, addr),
    }
    range(addr, size);

    /// `kvm_tlb_flush_vmid_range` on the table's `kvm_s2_mmu`: KVM's
    /// `kvm_arch_flush_remote_tlbs_range` (mmu.c) calls it for a range of
    /// a memslot. Changes no descriptor.
    op TlbFlushVmidRange = 60, "tlb_flush_vmid_range", fn tlb_flush_vmid_range, [Stage2] {
        addr: u64 as Hex = g.addr(r),
        size: u64 as Hex = g.size(r, addr),
    }
    range(addr, size);
    skip if cfg.caller() != Caller::KvmGuest
        => "only KVM in kernel context calls it from outside pgtable.c \
            (mmu.c kvm_arch_flush_remote_tlbs_range)";
    skip if (addr | size) % cfg.granule.page_size() != 0
        => "KVM passes a range of whole pages (a gfn and a page count, \
            mmu.c kvm_arch_flush_remote_tlbs_range)";
    skip if addr.checked_add(size).is_none_or(|end| end > 1u64 << cfg.ia_bits)
        => "KVM flushes a range of a memslot, inside the IPA space \
            (mmu.c kvm_arch_flush_remote_tlbs_range)";

    /// `kvm_pgtable_stage2_split` with a memcache of `nobjs` pages.
    op S2Split = 10, "s2_split", fn stage2_split, [Stage2] {
        addr: u64 as Hex = g.addr(r),
        size: u64 as Hex = g.size(r, addr),
        nobjs: u32 as McPages = g.nobjs(r),
    }
    range(addr, size);
    skip if cfg.caller() == Caller::PkvmHost
        => "the pKVM host never splits (its zalloc_page would take the split cache \
            for its page pool, mem_protect.c host_s2_zalloc_page)";

    /// `kvm_pgtable_stage2_create_unlinked`; the side keeps the table for a
    /// later [`Op::S2FreeUnlinked`] (or frees it at destroy).
    op S2CreateUnlinked = 11, "s2_create_unlinked", fn stage2_create_unlinked, [Stage2] {
        level: i8 as Level = g.level(r),
        phys: u64 as Hex = g.phys_for_level(r, level),
        prot: Prot as ProtBits = g.prot(r, phys, 1),
        mc: Memcache as Mc = g.memcache(r),
        force_pte: bool as YesNo = r.u8() & 1 != 0,
    }
    // kvm_granule_size(level) shifts by (PAGE_SHIFT-3)*(4-level)+3.
    skip if !(-1..=3).contains(&level) => "create_unlinked level outside -1..=3";
    skip if mc.is_none()
        => "every stage-2 caller's zalloc_page dereferences its memcache \
            (kvm_mmu_memory_cache_alloc, pop_hyp_memcache, the host's pool); KVM \
            creates unlinked tables only from split, with mmu->split_page_cache";
    skip if cfg.caller() == Caller::PkvmHost
        => "the pKVM host never builds unlinked tables (its zalloc_page would take \
            the memcache for its page pool, mem_protect.c host_s2_zalloc_page)";

    /// `kvm_pgtable_stage2_free_unlinked` of the side's unlinked table
    /// number `index % count` (nothing when there is none).
    op S2FreeUnlinked = 12, "s2_free_unlinked", fn stage2_free_unlinked, [Stage2] {
        index: u8 as Index = r.u8(),
    }

    /// `kvm_pgtable_walk` with a scripted test visitor.
    op Walk = 13, "walk", fn walk, [Hyp, Stage2] {
        addr: u64 as Hex = g.addr(r),
        size: u64 as Hex = g.size(r, addr),
        flags: u8 as WalkFlagBits = g.walk_flags(r),
        script: VisitScript as Script = g.script(r),
    }
    range(addr, size);

    /// `kvm_pgtable_get_leaf`.
    op GetLeaf = 14, "get_leaf", fn get_leaf, [Hyp, Stage2] {
        addr: u64 as Hex = g.addr(r),
    }
    range(addr, 1);

    /// `kvm_pgtable_hyp_pte_prot` or `kvm_pgtable_stage2_pte_prot` (by stage).
    op PteProt = 15, "pte_prot", fn pte_prot, [Hyp, Stage2] {
        pte: u64 as Hex = g.pte(r),
    }

    /// `kvm_get_vtcr`.
    op GetVtcr = 16, "get_vtcr", fn get_vtcr, [Hyp, Stage2] {
        mmfr0: u64 as Hex = g.mmfr0(r),
        mmfr1: u64 as Hex = g.mmfr1(r),
        phys_shift: u32 as Dec32 = g.phys_shift(r),
    }

    /// `kvm_pgtable_stage2_pgd_size`.
    op PgdSize = 17, "pgd_size", fn pgd_size, [Hyp, Stage2] {
        vtcr: u64 as Hex = g.vtcr(r),
    }
    // VTCR_EL2_IPA = 64 - T0SZ; T0SZ = 0 makes BIT(64).
    skip if vtcr & 0x3f == 0 => "pgd_size with T0SZ = 0 (a 64-bit IPA space)";
    // SL0 = 0b11 names start level 0, which 64K does not have (reserved
    // encoding); kvm_pgd_page_idx() would shift by 68.
    skip if cfg.granule == Granule::K64 && (vtcr >> 6) & 3 == 3
        => "pgd_size with SL0 = 0b11 (reserved for 64K: no level 0)";

    // 7.x ops take tags equal to their TAG_TABLE slot (56 and up).

    /// `kvm_pgtable_stage2_annotate` (7.x): unmap the range and mark it
    /// with an invalid-PTE `type` (bits [63:60]) and an annotation.
    op S2Annotate = 56, "s2_annotate", fn stage2_annotate, [Stage2] on [V7_3] {
        addr: u64 as Hex = g.addr(r),
        size: u64 as Hex = g.size(r, addr),
        mc: Memcache as Mc = g.memcache(r),
        kind("type"): u8 as Dec8 = g.annotation_type(r),
        annotation: u64 as Hex = g.annotation(r, kind),
    }
    range(addr, size);
    skip if mc.is_none() && cfg.caller() == Caller::PkvmHost
        => "the pKVM host passes its page pool as the memcache, never NULL \
            (mem_protect.c host_stage2_set_owner_metadata_locked: &host_s2_pool)";
    skip if kind > 15
        => "callers pass an enum kvm_invalid_pte_type value, and every one fits \
            the 4-bit type field; a larger one is cut to its low bits by \
            FIELD_PREP after annotate's checks (145 stores LOCKED)";

    /// `kvm_pgtable_stage2_mkyoung` (7.x): the caller's walk flags, no result.
    op S2MkyoungFlags = 57, "s2_mkyoung", fn stage2_mkyoung_flags, [Stage2] on [V7_3] {
        addr: u64 as Hex = g.addr(r),
        flags: u8 as WalkFlagBits = g.fault_flags(r),
    }
    range(addr, 1);

    /// `kvm_pgtable_stage2_relax_perms` (7.x): the caller's walk flags.
    op S2RelaxPermsFlags = 58, "s2_relax_perms", fn stage2_relax_perms_flags, [Stage2] on [V7_3] {
        addr: u64 as Hex = g.fault_addr(r),
        prot: Prot as ProtBits = g.fault_prot(r, addr),
        flags: u8 as WalkFlagBits = g.fault_flags(r),
    }
    range(addr, 1);
}

impl OpKind {
    /// Whether this kind may appear in a stream configured by `cfg`.
    pub fn valid_in(self, cfg: &Config) -> bool {
        self.valid_for(cfg.stage) && self.valid_on(cfg.kernel)
    }

    /// The kind a stream on `line` uses for what this kind does on another
    /// line (the 6.12 op and its 7.x successor), or `self`.
    pub fn on_line(self, line: KernelLine) -> OpKind {
        use OpKind as K;
        if self.valid_on(line) {
            return self;
        }
        match self {
            K::S2SetOwner => K::S2Annotate,
            K::S2Annotate => K::S2SetOwner,
            K::S2Mkyoung => K::S2MkyoungFlags,
            K::S2MkyoungFlags => K::S2Mkyoung,
            K::S2RelaxPerms => K::S2RelaxPermsFlags,
            K::S2RelaxPermsFlags => K::S2RelaxPerms,
            _ => K::GetLeaf,
        }
    }
}

impl Op {
    /// Text-format name of the op (e.g. `"s2_map"`).
    pub fn name(&self) -> &'static str {
        self.kind().name()
    }

    /// Whether the op may appear in a stream of the given stage.
    pub fn valid_for(&self, stage: Stage) -> bool {
        self.kind().valid_for(stage)
    }

    /// Whether the op may appear in a stream configured by `cfg` (its
    /// stage and its kernel line's API).
    pub fn valid_in(&self, cfg: &Config) -> bool {
        self.kind().valid_in(cfg)
    }

    /// One canonical text line (no newline) for a stream configured by `cfg`.
    pub fn text(&self, cfg: &Config) -> String {
        let mut s = self.name().to_string();
        for (k, v) in self.text_fields(cfg) {
            s.push(' ');
            s.push_str(k);
            s.push('=');
            s.push_str(&v);
        }
        s
    }
}
