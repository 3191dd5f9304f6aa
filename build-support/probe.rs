// SPDX-License-Identifier: GPL-2.0-only
//! Which kvm_pgtable API generation a kernel tree implements, decided from
//! what its `pgtable.c` defines. Shared, std only, by build.rs and xtask
//! (`#[path = ...] mod probe;`), so a tree is judged the same way before
//! cargo-fuzz runs and when it is compiled.
//!
//! A *generation* is an API shape; each has one pinned *line* in
//! `kernel.lock` that a tree of that generation replaces (`LINUX_SRC`).
#![allow(dead_code)]

/// One API generation.
#[derive(Debug, PartialEq, Eq)]
pub struct Generation {
    /// `KPD_GEN` as c-shim/include/kpd/api.h numbers it.
    pub id: u32,
    /// How people name it.
    pub name: &'static str,
    /// The kernel.lock line of this generation.
    pub line: &'static str,
    /// The global functions a tree of this generation defines in pgtable.c
    /// besides [`COMMON`] (the ones c-shim/glue.c calls).
    pub own: &'static [&'static str],
}

impl Generation {
    /// Every function c-shim/glue.c calls for this generation.
    pub fn functions(&self) -> impl Iterator<Item = &'static str> {
        COMMON.iter().copied().chain(self.own.iter().copied())
    }
}

/// The functions every generation defines.
pub const COMMON: [&str; 22] = [
    "kvm_pgtable_hyp_init",
    "kvm_pgtable_hyp_destroy",
    "kvm_pgtable_hyp_map",
    "kvm_pgtable_hyp_unmap",
    "kvm_pgtable_hyp_pte_prot",
    "kvm_get_vtcr",
    "kvm_pgtable_stage2_pgd_size",
    "__kvm_pgtable_stage2_init",
    "kvm_pgtable_stage2_destroy",
    "kvm_pgtable_stage2_free_unlinked",
    "kvm_pgtable_stage2_create_unlinked",
    "kvm_pgtable_stage2_map",
    "kvm_pgtable_stage2_unmap",
    "kvm_pgtable_stage2_wrprotect",
    "kvm_pgtable_stage2_mkyoung",
    "kvm_pgtable_stage2_test_clear_young",
    "kvm_pgtable_stage2_relax_perms",
    "kvm_pgtable_stage2_flush",
    "kvm_pgtable_stage2_split",
    "kvm_pgtable_stage2_pte_prot",
    "kvm_pgtable_walk",
    "kvm_pgtable_get_leaf",
];

/// Every generation the C side drives, oldest first.
pub const GENERATIONS: [Generation; 2] = [
    Generation {
        id: 612,
        name: "Linux 6.12",
        line: "6.12",
        own: &["kvm_pgtable_stage2_set_owner"],
    },
    Generation {
        id: 701,
        name: "Linux 7.1 and later (mainline)",
        line: "7.3",
        own: &[
            "kvm_pgtable_stage2_annotate",
            "kvm_pgtable_stage2_destroy_range",
            "kvm_pgtable_stage2_destroy_pgd",
        ],
    },
];

/// The generation whose pinned line is `line`.
pub fn of_line(line: &str) -> Option<&'static Generation> {
    GENERATIONS.iter().find(|g| g.line == line)
}

/// Global (non-static) functions defined in a pgtable.c, in file order.
/// Scanning the file rather than listing names keeps a patched tree that
/// adds a global helper linkable (build.rs renames each one per build).
pub fn global_functions(src: &str) -> Vec<String> {
    let mut names = Vec::new();
    for line in src.lines() {
        let first = line.chars().next().unwrap_or(' ');
        if !(first.is_ascii_alphabetic() || first == '_') {
            continue;
        }
        if ["static", "typedef", "struct kvm_pgtable_walk_data", "#"]
            .iter()
            .any(|p| line.starts_with(p))
        {
            continue;
        }
        let Some(paren) = line.find('(') else {
            continue;
        };
        let head = line[..paren].trim_end();
        if head.contains('=') || head.contains('{') {
            continue;
        }
        let name: String = head
            .chars()
            .rev()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        let is_macro_like = name
            .chars()
            .all(|c| c.is_ascii_uppercase() || c == '_' || c.is_ascii_digit());
        if !name.is_empty()
            && !is_macro_like
            && !["if", "for", "while", "switch", "return"].contains(&name.as_str())
            && !names.contains(&name)
        {
            names.push(name);
        }
    }
    names
}

/// The supported generations and their lines, as one sentence.
pub fn supported() -> String {
    let v: Vec<String> = GENERATIONS
        .iter()
        .map(|g| format!("{} (pinned line {})", g.name, g.line))
        .collect();
    format!(
        "kvm-pgtable-diff drives the kvm_pgtable API of {}",
        v.join(" and of ")
    )
}

/// The generation of a tree whose pgtable.c is `src`, or a paragraph
/// saying why it is none of them: the supported generations and the
/// functions the closest one misses.
pub fn detect(src: &str, tree: &str) -> Result<&'static Generation, String> {
    let defined = global_functions(src);
    let missing = |g: &Generation| -> Vec<&'static str> {
        g.functions()
            .filter(|f| !defined.iter().any(|d| d == f))
            .collect()
    };
    let mut best: Option<(&'static Generation, Vec<&'static str>)> = None;
    for g in &GENERATIONS {
        let m = missing(g);
        if m.is_empty() {
            return Ok(g);
        }
        if best.as_ref().is_none_or(|(_, b)| m.len() <= b.len()) {
            best = Some((g, m));
        }
    }
    let (g, m) = best.expect("at least one generation");
    Err(format!(
        "{tree} is not a supported kernel tree: its arch/arm64/kvm/hyp/pgtable.c does not define {} \
         (closest: the {} API). {}. Point LINUX_SRC at a tree of one of those, or unset it to use the \
         pinned Debian sources (cargo xtask kernel).",
        m.join(", "),
        g.name,
        supported()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(functions: &[&str]) -> String {
        functions
            .iter()
            .map(|f| {
                format!("int {f}(struct kvm_pgtable *pgt)\n{{\n}}\n\nstatic int helper(void)\n")
            })
            .collect()
    }

    #[test]
    fn each_generation_is_recognised_by_its_functions() {
        for g in &GENERATIONS {
            let f: Vec<&str> = g.functions().collect();
            assert_eq!(detect(&tree(&f), "t"), Ok(g));
        }
    }

    #[test]
    fn a_tree_of_neither_names_what_is_missing() {
        // A 6.12 tree without split (as in 6.1) is closest to 6.12.
        let f: Vec<&str> = GENERATIONS[0]
            .functions()
            .filter(|f| *f != "kvm_pgtable_stage2_split")
            .collect();
        let e = detect(&tree(&f), "/src/linux-6.1").unwrap_err();
        assert!(
            e.starts_with("/src/linux-6.1 is not a supported kernel tree"),
            "{e}"
        );
        assert!(
            e.contains("does not define kvm_pgtable_stage2_split (closest: the Linux 6.12 API)"),
            "{e}"
        );
        assert!(e.contains("pinned line 7.3"), "{e}");
    }

    #[test]
    fn static_functions_and_calls_are_not_definitions() {
        let src =
            "static int kvm_pgtable_walk(void)\n\tkvm_pgtable_walk(x);\nu64 kvm_get_vtcr(u64 a,\n";
        assert_eq!(global_functions(src), vec!["kvm_get_vtcr".to_string()]);
    }
}
