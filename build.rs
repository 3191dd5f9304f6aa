// SPDX-License-Identifier: GPL-2.0-only
//! Builds the C side: the kernel's own `pgtable.c`, unmodified, compiled with
//! clang against our stubs in `c-shim/`, once per execution context and
//! granule, with global symbols renamed per build so all builds link into one
//! binary. bindgen then reads the kernel's own `kvm_pgtable.h` (through the
//! same stubs) so that Rust sees the struct layouts of the compiled tree.
//!
//! Source selection:
//! - default: `.cache/linux-source-6.12/` (made by `cargo xtask kernel`),
//!   verified against `[line 6.12]` of `kernel.lock`;
//! - `LINUX_SRC=<kernel tree>`: any tree, e.g. one with a patch under test.

use std::env;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, exit};

use sha2::{Digest, Sha256};

#[path = "build-support/lock.rs"]
mod lock;

/// The three kernel files the C side needs, relative to a kernel tree.
const KERNEL_FILES: [&str; 3] = [
    "arch/arm64/kvm/hyp/pgtable.c",
    "arch/arm64/include/asm/kvm_pgtable.h",
    "arch/arm64/include/asm/stage2_pgtable.h",
];
const PGTABLE_C: &str = KERNEL_FILES[0];

/// The kvm_pgtable API functions (Linux 6.12) that c-shim/glue.c puts in
/// each build's ops table; pgtable.c must define every one of them.
const API_6_12: [&str; 24] = [
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
    "kvm_pgtable_stage2_set_owner",
    "kvm_pgtable_stage2_unmap",
    "kvm_pgtable_stage2_wrprotect",
    "kvm_pgtable_stage2_mkyoung",
    "kvm_pgtable_stage2_test_clear_young",
    "kvm_pgtable_stage2_relax_perms",
    "kvm_pgtable_stage2_flush",
    "kvm_pgtable_stage2_split",
    "kvm_pgtable_stage2_pte_prot",
    "kvm_tlb_flush_vmid_range",
    "kvm_pgtable_walk",
    "kvm_pgtable_get_leaf",
];

/// Execution contexts: nVHE hypervisor (no RCU, SHARED walks refused) and
/// the kernel proper (RCU read-side stubs).
const CONTEXTS: [(&str, bool); 2] = [("nvhe", true), ("kernel", false)];
/// Granules by page shift.
const GRANULES: [(&str, u32); 3] = [("4k", 12), ("16k", 14), ("64k", 16)];

fn fail(msg: &str) -> ! {
    // cargo shows build-script stderr on failure; keep the first line short.
    eprintln!("\nerror: {msg}\n");
    exit(1);
}

fn sha256_hex(data: &[u8]) -> String {
    Sha256::digest(data).iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// The kernel.lock line built by default (its cache is `.cache/linux-source-6.12`).
fn locked_line(root: &Path) -> lock::Line {
    let lock = lock::Lock::read(&root.join("kernel.lock")).unwrap_or_else(|e| fail(&e));
    match lock.line(lock::BUILT_LINE) {
        Some(line) => line.clone(),
        None => fail(&format!(
            "kernel.lock has no [line {}]; restore kernel.lock from git",
            lock::BUILT_LINE
        )),
    }
}

/// Finds the kernel tree to build and says which one it is (the locked line, unless LINUX_SRC).
fn kernel_source(root: &Path) -> (PathBuf, Option<lock::Line>) {
    println!("cargo:rerun-if-env-changed=LINUX_SRC");
    match env::var_os("LINUX_SRC").filter(|v| !v.is_empty()) {
        Some(src) => {
            let tree = PathBuf::from(&src);
            if !tree.is_dir() {
                fail(&format!(
                    "LINUX_SRC={} is not a directory. Point it at a Linux kernel tree \
                     (the directory containing arch/arm64), or unset it to use the locked Debian source.",
                    tree.display()
                ));
            }
            for f in KERNEL_FILES {
                if !tree.join(f).is_file() {
                    fail(&format!(
                        "LINUX_SRC={} has no {f}. Point LINUX_SRC at the top of a Linux kernel tree, \
                         or unset it to use the locked Debian source.",
                        tree.display()
                    ));
                }
            }
            (tree, None)
        }
        None => {
            let line = locked_line(root);
            let tree = root.join(line.cache_dir());
            println!("cargo:rerun-if-changed={}", tree.display());
            if KERNEL_FILES.iter().any(|f| !tree.join(f).is_file()) {
                fail(
                    "the kernel source is missing. Run `cargo xtask kernel` (fetches Debian's \
                     linux-source-6.12), or set LINUX_SRC=<path to a Linux kernel tree>.",
                );
            }
            (tree, Some(line))
        }
    }
}

/// Global (non-static) functions defined in pgtable.c: these get renamed per
/// build. Scanning the file rather than listing names keeps a patched tree
/// that adds a global helper linkable.
fn global_functions(src: &str) -> Vec<String> {
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

fn find_clang() -> String {
    if let Ok(cc) = env::var("CC") {
        if !cc.is_empty() {
            return cc;
        }
    }
    for cand in ["clang-22", "clang"] {
        if Command::new(cand)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
        {
            return cand.to_string();
        }
    }
    fail(
        "clang is not installed. Run `cargo xtask setup` (installs clang-22), or set CC to a clang.",
    );
}

fn main() {
    let root = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap());
    let out = PathBuf::from(env::var("OUT_DIR").unwrap());
    let shim = root.join("c-shim");
    println!("cargo:rerun-if-changed=c-shim");
    println!("cargo:rerun-if-changed=kernel.lock");
    for var in ["CC", "CFLAGS", "KPD_C_COVERAGE", "LIBCLANG_PATH"] {
        println!("cargo:rerun-if-env-changed={var}");
    }

    let (tree, locked) = kernel_source(&root);
    let custom = locked.is_none();
    let ksrc = out.join("ksrc");
    let mut hashes = Vec::new();
    for f in KERNEL_FILES {
        let from = tree.join(f);
        println!("cargo:rerun-if-changed={}", from.display());
        let data = fs::read(&from)
            .unwrap_or_else(|e| fail(&format!("cannot read {}: {e}", from.display())));
        hashes.push((f, sha256_hex(&data)));
        let to = ksrc.join(f);
        fs::create_dir_all(to.parent().unwrap()).unwrap();
        // Write only on change so clang's inputs keep their mtimes.
        if fs::read(&to).ok().as_deref() != Some(&data[..]) {
            fs::write(&to, &data).unwrap();
        }
    }
    if custom {
        println!(
            "cargo:warning=C side built from LINUX_SRC={}",
            tree.display()
        );
        for (f, h) in &hashes {
            println!("cargo:warning=  sha256 {h} {f}");
        }
    } else if let Some(lock) = &locked {
        for (f, h) in &hashes {
            match lock.sha256(f) {
                Some(want) if want == h => {}
                Some(want) => println!(
                    "cargo:warning={f} differs from kernel.lock ({} expects {want}, cache has {h}). \
                     Run `cargo xtask kernel` to restore the locked source, or `cargo xtask kernel --update-lock` to accept it.",
                    lock.version
                ),
                None => println!(
                    "cargo:warning=kernel.lock has no hash for {f}; run `cargo xtask kernel --update-lock`"
                ),
            }
        }
    }

    let pgtable_c = fs::read_to_string(ksrc.join(PGTABLE_C)).unwrap();
    let globals = global_functions(&pgtable_c);
    let missing: Vec<&str> = API_6_12
        .iter()
        .copied()
        .filter(|f| !globals.iter().any(|g| g == f))
        .collect();
    if !missing.is_empty() {
        fail(&format!(
            "{} is not the Linux 6.12 kvm_pgtable API that kvm-pgtable-diff drives: pgtable.c does not \
             define {}.\nUse a 6.12-based tree, or unset LINUX_SRC to use the locked Debian source.",
            tree.display(),
            missing.join(", ")
        ));
    }
    let kinc = ksrc.join("arch/arm64/include");
    let shim_inc = shim.join("include");

    // One generated translation unit per (context, granule).
    let units_dir = out.join("units");
    fs::create_dir_all(&units_dir).unwrap();
    let mut units = Vec::new();
    let mut builds_rs =
        String::from("// @generated by build.rs: one C build per (context, granule).\n");
    for (ctx, nvhe) in CONTEXTS {
        for (gran, shift) in GRANULES {
            let build = format!("{ctx}_{gran}");
            let mut u = format!("/* @generated by build.rs for build {build} */\n");
            let _ = writeln!(u, "#define KPD_PAGE_SHIFT {shift}");
            if nvhe {
                u.push_str("#define __KVM_NVHE_HYPERVISOR__ 1\n");
            }
            let _ = writeln!(u, "#define KPD_BUILD_NAME \"{build}\"");
            let _ = writeln!(u, "#define KPD_OPS_SYMBOL kpd_ops_{build}");
            for g in &globals {
                let _ = writeln!(u, "#define {g} kpd_{build}__{g}");
            }
            let _ = writeln!(u, "#include \"{}\"", ksrc.join(PGTABLE_C).display());
            let _ = writeln!(u, "#include \"{}\"", shim.join("glue.c").display());
            let path = units_dir.join(format!("{build}.c"));
            if fs::read_to_string(&path).ok().as_deref() != Some(&u) {
                fs::write(&path, &u).unwrap();
            }
            units.push(path);
            let _ = writeln!(
                builds_rs,
                "unsafe extern \"C\" {{ static kpd_ops_{build}: kpd_ops; }}"
            );
        }
    }
    builds_rs.push_str("/// Every C build, as (context is nVHE, page shift, ops table).\npub(crate) fn builds() -> [(bool, u32, &'static kpd_ops); 6] {\n    // SAFETY: the tables are immutable C constants defined by glue.c.\n    unsafe { [\n");
    for (ctx, nvhe) in CONTEXTS {
        for (gran, shift) in GRANULES {
            let _ = writeln!(
                builds_rs,
                "        ({nvhe}, {shift}, &*core::ptr::addr_of!(kpd_ops_{ctx}_{gran})),"
            );
        }
    }
    builds_rs.push_str("    ] }\n}\n");
    fs::write(out.join("builds.rs"), builds_rs).unwrap();

    let cc = find_clang();
    let cflags = env::var("CFLAGS").unwrap_or_default();
    let mut extra: Vec<String> = vec![
        "-std=gnu11".into(),
        "-fno-strict-aliasing".into(),
        "-Wno-unused-parameter".into(),
        "-Wno-sign-compare".into(),
        "-Wno-unused-function".into(),
        "-Werror=incompatible-function-pointer-types".into(),
        "-Werror=implicit-function-declaration".into(),
        "-Werror=int-conversion".into(),
    ];
    // libFuzzer must see the C code's edges; OSS-Fuzz already passes these in CFLAGS.
    if env::var_os("CARGO_CFG_FUZZING").is_some() {
        if !cflags.contains("-fsanitize=fuzzer") {
            extra.push("-fsanitize=fuzzer-no-link".into());
        }
        let sanitize = env::var("CARGO_CFG_SANITIZE").unwrap_or_default();
        if sanitize.split(',').any(|s| s == "address") && !cflags.contains("-fsanitize=address") {
            extra.push("-fsanitize=address".into());
        }
    }
    if env::var_os("KPD_C_COVERAGE").is_some() {
        extra.push("-fprofile-instr-generate".into());
        extra.push("-fcoverage-mapping".into());
    }

    // Fail early, with a short message, if the tree is not the 6.12 API.
    let probe = Command::new(&cc)
        .args(["-fsyntax-only", "-w"])
        .args(&extra)
        .arg(format!("-I{}", shim_inc.display()))
        .arg(format!("-I{}", kinc.display()))
        .arg(&units[0])
        .output()
        .unwrap_or_else(|e| {
            fail(&format!(
                "cannot run {cc}: {e}. Run `cargo xtask setup`, or set CC to a clang."
            ))
        });
    if !probe.status.success() {
        let errs = String::from_utf8_lossy(&probe.stderr);
        let first: Vec<&str> = errs
            .lines()
            .filter(|l| l.contains("error"))
            .take(6)
            .collect();
        fail(&format!(
            "{} does not compile as the Linux 6.12 kvm_pgtable API that kvm-pgtable-diff drives \
             (pgtable.c/kvm_pgtable.h differ from 6.12 in an incompatible way).\n\
             Use a 6.12-based tree, or unset LINUX_SRC to use the locked Debian source.\nFirst errors:\n  {}",
            tree.display(),
            first.join("\n  ")
        ));
    }

    let mut build = cc::Build::new();
    build
        .compiler(&cc)
        .include(&shim_inc)
        .include(&kinc)
        .files(&units)
        .file(shim.join("runtime.c"))
        .warnings(false)
        .opt_level(2);
    for f in &extra {
        build.flag(f);
    }
    build.compile("kpd_c");

    // Bindings from the kernel's header, seen through the stubs (kernel
    // context, 4K: the struct layouts are the same in every build).
    if env::var_os("LIBCLANG_PATH").is_none() && Path::new("/usr/lib/llvm-22/lib").is_dir() {
        // SAFETY: build scripts are single-threaded at this point.
        unsafe { env::set_var("LIBCLANG_PATH", "/usr/lib/llvm-22/lib") };
    }
    let bindings = bindgen::Builder::default()
        .header(shim.join("bindings.h").display().to_string())
        .clang_arg(format!("-I{}", shim_inc.display()))
        .clang_arg(format!("-I{}", kinc.display()))
        .clang_arg("-DKPD_PAGE_SHIFT=12")
        .allowlist_type("kvm_.*|kpd_.*")
        .allowlist_var("KVM_.*|KPD_.*")
        .allowlist_function("kpd_runtime_get")
        .blocklist_item("kpd_rt")
        .blocklist_function("kpd_ev_.*")
        .derive_default(true)
        .layout_tests(false)
        .generate()
        .unwrap_or_else(|e| {
            fail(&format!(
                "bindgen failed on kvm_pgtable.h: {e}. Run `cargo xtask setup` (installs libclang-22-dev), \
                 or set LIBCLANG_PATH to a directory holding libclang.so."
            ))
        });
    bindings.write_to_file(out.join("bindings.rs")).unwrap();
    println!(
        "cargo:rustc-env=KPD_KERNEL_SOURCE={}",
        match &locked {
            None => tree.display().to_string(),
            Some(line) => format!("{} (kernel.lock)", line.cache_dir().display()),
        }
    );
    println!("cargo:rustc-env=KPD_PGTABLE_C_SHA256={}", hashes[0].1);
}
