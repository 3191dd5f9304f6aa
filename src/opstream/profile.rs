// SPDX-License-Identifier: GPL-2.0-only
//! Fuzz-target profiles: what random bytes decode to for each target.

/// Fuzz-target specialisation: constrains what random bytes decode to.
/// Literal modes and canonical op tags mean the same thing in every
/// profile, so [`encode`] is profile-independent and
/// `decode(&encode(s), Profile::Any) == s` for every valid `s`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Profile {
    /// Forces stage = Hyp; mostly the hypervisor's stage-1 at EL2 (nVHE
    /// context three times in four), else the kernel's.
    Hyp,
    /// Forces stage = Stage2: pKVM guests (nVHE) and KVM guests (kernel)
    /// alike, the pKVM host when the IDMAP flag is set (see
    /// [`super::Caller`]).
    Stage2,
    /// pKVM host: stage-2, nvhe, IDMAP, force_pte = Host with a decoded
    /// memory map; ops limited to identity S2Map (phys = addr) with host
    /// prots, S2SetOwner (owners 0/1), S2Unmap and GetLeaf.
    HostStage2,
    /// Mostly Walk ops (flags uniform over all 128 combinations) plus
    /// maps/unmaps to populate; either stage.
    Walk,
    /// Stage-2 with S2Split / S2CreateUnlinked / S2FreeUnlinked plus maps;
    /// memcache sizes around PTRS_PER_PTE.
    Unlinked,
    /// No constraint; the profile the encoder targets.
    Any,
}

impl Profile {
    /// Lower-case name (`hyp`, `stage2`, `host_stage2`, `walk`,
    /// `unlinked`, `any`), e.g. for fuzz-target or corpus directory names.
    pub fn name(self) -> &'static str {
        match self {
            Profile::Hyp => "hyp",
            Profile::Stage2 => "stage2",
            Profile::HostStage2 => "host_stage2",
            Profile::Walk => "walk",
            Profile::Unlinked => "unlinked",
            Profile::Any => "any",
        }
    }

    /// Inverse of [`Profile::name`].
    pub fn from_name(name: &str) -> Option<Profile> {
        Profile::ALL.iter().copied().find(|p| p.name() == name)
    }

    pub const ALL: [Profile; 6] = [
        Profile::Hyp,
        Profile::Stage2,
        Profile::HostStage2,
        Profile::Walk,
        Profile::Unlinked,
        Profile::Any,
    ];
}
