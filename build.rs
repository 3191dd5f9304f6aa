// SPDX-License-Identifier: GPL-2.0-only
//! Builds the C side: the kernel's own `pgtable.c`, unmodified, compiled with
//! clang against our stubs in `c-shim/`, once per (kernel line, execution
//! context, granule), with global symbols renamed per build so every build
//! links into one binary. Each build also compiles `c-shim/glue.c`, which
//! exports the build's entry points through the ABI of
//! `c-shim/include/kpd/api.h`; bindgen reads that ABI (basic types only), so
//! no kernel structure layout reaches Rust and one binary drives every API
//! generation.
//!
//! Source selection, per kernel line of `kernel.lock`:
//! - default: `.cache/linux-source-<line>/` (made by `cargo xtask kernel`),
//!   checked against the lock's hashes;
//! - `LINUX_SRC=<kernel tree>`: the tree replaces the pinned line of its API
//!   generation (decided from what its pgtable.c defines, `build-support/probe.rs`);
//! - `KPD_AGAINST=pinned|<tree>` (with `LINUX_SRC`): adds a baseline copy of
//!   that line built from the pinned source (or the second tree), for the
//!   C-against-C behaviour diff of a patch.

use std::env;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, exit};

use sha2::{Digest, Sha256};

#[path = "build-support/lock.rs"]
mod lock;
#[path = "build-support/probe.rs"]
mod probe;

/// The three kernel files the C side needs, relative to a kernel tree.
const KERNEL_FILES: [&str; 3] = [
    "arch/arm64/kvm/hyp/pgtable.c",
    "arch/arm64/include/asm/kvm_pgtable.h",
    "arch/arm64/include/asm/stage2_pgtable.h",
];
const PGTABLE_C: &str = KERNEL_FILES[0];

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

/// One kernel tree compiled into the binary (six builds).
struct Set {
    /// "6.12", "7.3", or "7.3-base" for the C-against-C baseline.
    name: String,
    /// The kernel.lock line it stands for.
    line: String,
    generation: &'static probe::Generation,
    dir: PathBuf,
    /// Where it came from, for reports.
    source: String,
    pinned: bool,
    /// sha256 per kernel file, in KERNEL_FILES order.
    hashes: Vec<String>,
}

impl Set {
    /// The set's name as a C identifier part.
    fn ident(&self) -> String {
        self.name.replace(['.', '-'], "_")
    }
}

/// Checks that `tree` holds the kernel files (`what` names it in messages).
fn check_tree(tree: &Path, what: &str) {
    if !tree.is_dir() {
        fail(&format!(
            "{what}={} is not a directory. Point it at a Linux kernel tree (the directory \
             containing arch/arm64), or unset it to use the pinned Debian sources.",
            tree.display()
        ));
    }
    for f in KERNEL_FILES {
        if !tree.join(f).is_file() {
            fail(&format!(
                "{what}={} has no {f}. Point it at the top of a Linux kernel tree, or unset it \
                 to use the pinned Debian sources.",
                tree.display()
            ));
        }
    }
}

fn read(path: &Path) -> Vec<u8> {
    fs::read(path).unwrap_or_else(|e| fail(&format!("cannot read {}: {e}", path.display())))
}

/// A tree given by the user: its generation decides which line it replaces.
fn user_set(tree: PathBuf, var: &str, name_suffix: &str) -> Set {
    check_tree(&tree, var);
    let src = String::from_utf8_lossy(&read(&tree.join(PGTABLE_C))).into_owned();
    let shown = format!("{var}={}", tree.display());
    let generation = probe::detect(&src, &shown).unwrap_or_else(|e| fail(&e));
    Set {
        name: format!("{}{name_suffix}", generation.line),
        line: generation.line.to_string(),
        generation,
        source: shown,
        dir: tree,
        pinned: false,
        hashes: Vec::new(),
    }
}

/// Every tree to compile: each pinned line (or the LINUX_SRC tree that
/// replaces it), plus the C-against-C baseline when asked for.
fn sets(root: &Path) -> Vec<Set> {
    for var in ["LINUX_SRC", "KPD_AGAINST"] {
        println!("cargo:rerun-if-env-changed={var}");
    }
    let lock = lock::Lock::read(&root.join("kernel.lock")).unwrap_or_else(|e| fail(&e));
    let user = env::var_os("LINUX_SRC")
        .filter(|v| !v.is_empty())
        .map(|t| user_set(PathBuf::from(t), "LINUX_SRC", ""));
    let pinned = |line: &lock::Line| -> Set {
        let generation = probe::of_line(&line.name).unwrap_or_else(|| {
            fail(&format!(
                "kernel.lock pins line {} but the C side knows no API generation for it; \
                 restore kernel.lock from git",
                line.name
            ))
        });
        let dir = root.join(line.cache_dir());
        println!("cargo:rerun-if-changed={}", dir.display());
        if KERNEL_FILES.iter().any(|f| !dir.join(f).is_file()) {
            fail(&format!(
                "the kernel source of line {} is missing from {}. Run `cargo xtask kernel` \
                 (fetches Debian's {} {}), or set LINUX_SRC=<path to a Linux kernel tree>.",
                line.name,
                line.cache_dir().display(),
                line.package,
                line.version
            ));
        }
        Set {
            name: line.name.clone(),
            line: line.name.clone(),
            generation,
            source: format!("{} {} (kernel.lock)", line.package, line.version),
            dir,
            pinned: true,
            hashes: Vec::new(),
        }
    };
    let user_line = user.as_ref().map(|u| u.line.clone());
    let mut user = user;
    let mut sets: Vec<Set> = Vec::new();
    for line in &lock.lines {
        if user.as_ref().is_some_and(|u| u.line == line.name) {
            sets.extend(user.take());
        } else {
            sets.push(pinned(line));
        }
    }
    if let Some(u) = user {
        fail(&format!(
            "{} implements the {} API, whose line {} is not in kernel.lock; restore kernel.lock from git",
            u.source, u.generation.name, u.line
        ));
    }
    if let Some(line) = user_line {
        match env::var("KPD_AGAINST").ok().filter(|v| !v.is_empty()) {
            None => {}
            Some(v) if v == "pinned" => {
                let l = lock
                    .line(&line)
                    .unwrap_or_else(|| fail(&format!("kernel.lock has no line {line}")));
                let mut base = pinned(l);
                base.name = format!("{line}-base");
                sets.push(base);
            }
            Some(t) => {
                let base = user_set(PathBuf::from(t), "KPD_AGAINST", "-base");
                if base.line != line {
                    fail(&format!(
                        "{} implements the {} API, LINUX_SRC the API of line {line}: a \
                         C-against-C run compares two trees of the same API generation.",
                        base.source, base.generation.name
                    ));
                }
                sets.push(base);
            }
        }
    } else if env::var_os("KPD_AGAINST").is_some_and(|v| !v.is_empty()) {
        fail("KPD_AGAINST needs LINUX_SRC: the tree under test is compared against it.");
    }
    // Check the pinned sources against the lock (a warning: a stale cache
    // still builds, and `cargo xtask kernel` says how to fix it).
    for set in &mut sets {
        for f in KERNEL_FILES {
            let h = sha256_hex(&read(&set.dir.join(f)));
            if set.pinned {
                let line = lock
                    .line(&set.line)
                    .expect("pinned sets come from the lock");
                match line.sha256(f) {
                    Some(want) if want == h => {}
                    Some(want) => println!(
                        "cargo:warning={} of line {} differs from kernel.lock ({} expects {want}, \
                         the cache has {h}). Run `cargo xtask kernel` to restore the pinned source.",
                        f, set.line, line.version
                    ),
                    None => println!(
                        "cargo:warning=kernel.lock has no hash for {f} of line {}; run `cargo xtask kernel --update-lock`",
                        set.line
                    ),
                }
            }
            set.hashes.push(h);
        }
        if !set.pinned {
            println!(
                "cargo:warning=C side line {} built from {}",
                set.name, set.source
            );
            for (f, h) in KERNEL_FILES.iter().zip(&set.hashes) {
                println!("cargo:warning=  sha256 {h} {f}");
            }
        }
    }
    sets
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

/// Flags of every C compile beyond CFLAGS. The cc crate puts CFLAGS after these, so under
/// OSS-Fuzz (whose base-clang CFLAGS carry `-Wno-error=incompatible-function-pointer-types`,
/// `-Wno-error=int-conversion`, `-Wno-error=implicit-function-declaration`) the three
/// `-Werror=` below hold only in the syntax probe (which takes no CFLAGS); c-shim/glue.c,
/// where a changed kernel API stops compiling, makes them errors itself with
/// `#pragma clang diagnostic error`, whatever the command line says.
fn extra_flags() -> Vec<String> {
    let cflags = env::var("CFLAGS").unwrap_or_default();
    let mut extra: Vec<String> = vec![
        "-std=gnu11".into(),
        // The kernel's own code-generation assumptions (top-level Makefile): no type-based
        // aliasing, signed overflow wraps, and a NULL check after a dereference is kept.
        "-fno-strict-aliasing".into(),
        "-fno-strict-overflow".into(),
        "-fno-delete-null-pointer-checks".into(),
        "-Wno-unused-parameter".into(),
        "-Wno-sign-compare".into(),
        "-Wno-unused-function".into(),
        "-Werror=incompatible-function-pointer-types".into(),
        "-Werror=implicit-function-declaration".into(),
        "-Werror=int-conversion".into(),
    ];
    // OSS-Fuzz's coverage builds (SANITIZER=coverage) measure source coverage and leave
    // libFuzzer's edge instrumentation out of their CFLAGS: so does the C side then.
    let coverage = cflags.contains("-fprofile-instr-generate");
    // libFuzzer must see the C code's edges; OSS-Fuzz already passes these in CFLAGS.
    if env::var_os("CARGO_CFG_FUZZING").is_some() {
        if !cflags.contains("-fsanitize=fuzzer") && !coverage {
            extra.push("-fsanitize=fuzzer-no-link".into());
        }
        if !coverage && !keep_c_hooks() {
            extra.push(C_HOOKS_DROPPED.into());
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
    extra
}

/// libFuzzer's hooks the kernel code goes without in fuzzing builds: compare tracing and
/// indirect-call tracing. Edges (inline 8-bit counters, the PC table) stay: they are what
/// libFuzzer keeps inputs for.
///
/// The compare hooks fed libFuzzer's table of recent compares, from which its CMP mutation
/// copies operands into inputs. An input here is an op stream the harness decodes (no pgtable.c
/// compare reads input bytes directly), and every one of pgtable.c's compares ran the hook,
/// ~30% of a fuzz target's time with the indirect-call hooks. Measured (docs/PERFORMANCE.md,
/// sixth round): instructions per corpus replay -43% (stage2) and -25% (host_stage2), and
/// coverage from an empty corpus and the mutants' detection no worse. `KPD_C_TRACE_CMP=1`
/// keeps the hooks (for comparing the two).
const C_HOOKS_DROPPED: &str = "-fno-sanitize-coverage=trace-cmp,indirect-calls";

/// Every coverage feature clang's `-fsanitize=fuzzer-no-link` turns on: c-shim/runtime.c (the
/// event recorder, ours) goes without all of them. Its branches say how many events an op
/// recorded, not which kernel paths ran: as features they only made libFuzzer keep inputs for
/// their length.
const NO_COVERAGE: &str =
    "-fno-sanitize-coverage=inline-8bit-counters,pc-table,trace-cmp,indirect-calls,stack-depth";

/// Whether the kernel code keeps libFuzzer's compare hooks (`KPD_C_TRACE_CMP=1`).
fn keep_c_hooks() -> bool {
    env::var_os("KPD_C_TRACE_CMP").is_some_and(|v| v == "1")
}

/// Whether each build gets a second copy, compiled without libFuzzer's compare hooks,
/// whose entry points the C side uses for the final teardown only.
///
/// Teardown walks the whole input range and visits every root entry (1024 on a 4K, 40-bit
/// stage-2; 32768 on 16K): with the hooks, 18-38% of a fuzz target's corpus replay went to
/// the hooks inside teardown (docs/PERFORMANCE.md). Its compares guide nothing the ops'
/// own compares do not: every input tears down the same way. Only builds that carry the
/// hooks (fuzzing, not OSS-Fuzz's source-coverage builds) need the copy; elsewhere the
/// teardown entry points are the build's own.
fn teardown_copies(extra: &[String]) -> bool {
    let cflags = env::var("CFLAGS").unwrap_or_default();
    let hooked = |f: &str| f.contains("-fsanitize=fuzzer") || f.contains("trace-cmp");
    (extra.iter().any(|f| hooked(f)) || hooked(&cflags))
        && !extra.iter().any(|f| f == C_HOOKS_DROPPED)
        && !cflags.contains("-fprofile-instr-generate")
        && env::var_os("KPD_C_COVERAGE").is_none()
}

fn main() {
    let root = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap());
    let out = PathBuf::from(env::var("OUT_DIR").unwrap());
    let shim = root.join("c-shim");
    println!("cargo:rerun-if-changed=c-shim");
    println!("cargo:rerun-if-changed=build-support");
    println!("cargo:rerun-if-changed=kernel.lock");
    for var in [
        "CC",
        "CFLAGS",
        "KPD_C_COVERAGE",
        "KPD_C_TRACE_CMP",
        "LIBCLANG_PATH",
    ] {
        println!("cargo:rerun-if-env-changed={var}");
    }

    let sets = sets(&root);
    let shim_inc = shim.join("include");
    let cc = find_clang();
    let extra = extra_flags();
    let teardown_copies = teardown_copies(&extra);
    let units_dir = out.join("units");
    fs::create_dir_all(&units_dir).unwrap();

    let mut builds_rs =
        String::from("// @generated by build.rs: the C builds linked into this binary.\n");
    let mut table = String::new();
    for set in &sets {
        // Each set's kernel files, copied so every set has its own include tree.
        let ksrc = out.join("ksrc").join(set.ident());
        for f in KERNEL_FILES {
            let from = set.dir.join(f);
            println!("cargo:rerun-if-changed={}", from.display());
            let data = read(&from);
            let to = ksrc.join(f);
            fs::create_dir_all(to.parent().unwrap()).unwrap();
            // Write only on change so clang's inputs keep their mtimes.
            if fs::read(&to).ok().as_deref() != Some(&data[..]) {
                fs::write(&to, &data).unwrap();
            }
        }
        let pgtable_c = fs::read_to_string(ksrc.join(PGTABLE_C)).unwrap();
        let globals = probe::global_functions(&pgtable_c);
        let kinc = ksrc.join("arch/arm64/include");

        let mut units = Vec::new();
        let mut teardown_units = Vec::new();
        for (ctx, nvhe) in CONTEXTS {
            for (gran, shift) in GRANULES {
                let build = format!("{}_{ctx}_{gran}", set.ident());
                let copies: &[&str] = if teardown_copies {
                    &["", "_teardown"]
                } else {
                    &[""]
                };
                for suffix in copies {
                    let sym = format!("{build}{suffix}");
                    let mut u = format!("/* @generated by build.rs for build {sym} */\n");
                    let _ = writeln!(u, "#define KPD_GEN {}", set.generation.id);
                    let _ = writeln!(u, "#define KPD_PAGE_SHIFT {shift}");
                    if nvhe {
                        u.push_str("#define __KVM_NVHE_HYPERVISOR__ 1\n");
                    }
                    let _ = writeln!(u, "#define KPD_BUILD_NAME \"{}_{ctx}_{gran}\"", set.name);
                    let _ = writeln!(u, "#define KPD_API_SYMBOL kpd_api_{sym}");
                    for g in &globals {
                        let _ = writeln!(u, "#define {g} kpd_{sym}__{g}");
                    }
                    let _ = writeln!(u, "#include \"{}\"", ksrc.join(PGTABLE_C).display());
                    let _ = writeln!(u, "#include \"{}\"", shim.join("glue.c").display());
                    let path = units_dir.join(format!("{sym}.c"));
                    if fs::read_to_string(&path).ok().as_deref() != Some(&u) {
                        fs::write(&path, &u).unwrap();
                    }
                    if suffix.is_empty() {
                        units.push(path);
                    } else {
                        teardown_units.push(path);
                    }
                    let _ = writeln!(
                        builds_rs,
                        "unsafe extern \"C\" {{ static kpd_api_{sym}: kpd_api; }}"
                    );
                }
                let teardown = if teardown_copies {
                    format!("{build}_teardown")
                } else {
                    build.clone()
                };
                let _ = writeln!(
                    table,
                    "        ({:?}, {nvhe}, {shift}, &*core::ptr::addr_of!(kpd_api_{build}), \
                     &*core::ptr::addr_of!(kpd_api_{teardown})),",
                    set.name
                );
            }
        }

        // Fail early, with a short message, if the tree does not compile as
        // its generation's API (a signature changed, a stub is missing).
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
                "{} (line {}) does not compile as the {} kvm_pgtable API that kvm-pgtable-diff drives: \
                 a signature or a definition the stubs rely on differs. {}.\nFirst errors:\n  {}",
                set.source,
                set.line,
                set.generation.name,
                probe::supported(),
                first.join("\n  ")
            ));
        }

        let mut build = cc::Build::new();
        build
            .compiler(&cc)
            .include(&shim_inc)
            .include(&kinc)
            .files(&units)
            .warnings(false)
            .opt_level(2);
        for f in &extra {
            build.flag(f);
        }
        build.compile(&format!("kpd_c_{}", set.ident()));

        if teardown_copies {
            let mut build = cc::Build::new();
            build
                .compiler(&cc)
                .include(&shim_inc)
                .include(&kinc)
                .files(&teardown_units)
                .warnings(false)
                .opt_level(2);
            for f in &extra {
                build.flag(f);
            }
            // Edges stay (libFuzzer still sees which teardown paths ran); the
            // compare hooks go. clang drops trace-cmp whatever the order of
            // this flag and CFLAGS' -fsanitize=fuzzer-no-link.
            build.flag("-fno-sanitize-coverage=trace-cmp");
            build.compile(&format!("kpd_c_{}_teardown", set.ident()));
        }
    }

    let mut rt = cc::Build::new();
    rt.compiler(&cc)
        .include(&shim_inc)
        .file(shim.join("runtime.c"))
        .warnings(false)
        .opt_level(2);
    for f in &extra {
        rt.flag(f);
    }
    if env::var_os("CARGO_CFG_FUZZING").is_some() {
        rt.flag(NO_COVERAGE);
    }
    rt.compile("kpd_runtime");

    let n = sets.len() * CONTEXTS.len() * GRANULES.len();
    let _ = writeln!(
        builds_rs,
        "/// Every C build, as (set, context is nVHE, page shift, entry points, the entry\n\
         /// points of its teardown copy).\n\
         pub(crate) fn builds() -> [(&'static str, bool, u32, &'static kpd_api, &'static kpd_api); {n}] {{\n    \
         // SAFETY: the tables are immutable C constants defined by glue.c.\n    unsafe {{ [\n{table}    ] }}\n}}"
    );
    builds_rs.push_str(
        "/// The kernel trees compiled in, one per set.\npub(crate) const SETS: &[SetInfo] = &[\n",
    );
    for s in &sets {
        let _ = writeln!(
            builds_rs,
            "    SetInfo {{ name: {:?}, line: {:?}, generation: {}, source: {:?}, pinned: {}, pgtable_c_sha256: {:?} }},",
            s.name, s.line, s.generation.id, s.source, s.pinned, s.hashes[0]
        );
    }
    builds_rs.push_str("];\n");
    fs::write(out.join("builds.rs"), builds_rs).unwrap();

    // Bindings of the ABI (our own headers only).
    if env::var_os("LIBCLANG_PATH").is_none() && Path::new("/usr/lib/llvm-22/lib").is_dir() {
        // SAFETY: build scripts are single-threaded at this point.
        unsafe { env::set_var("LIBCLANG_PATH", "/usr/lib/llvm-22/lib") };
    }
    let bindings = bindgen::Builder::default()
        .header(shim.join("bindings.h").display().to_string())
        .clang_arg(format!("-I{}", shim_inc.display()))
        .allowlist_type("kpd_.*|kvm_mmu_memory_cache")
        .allowlist_var("KPD_.*")
        .allowlist_function("kpd_runtime_get|kpd_evbuf_get")
        .blocklist_item("kpd_rt|kpd_evbuf")
        .derive_default(true)
        .layout_tests(false)
        .generate()
        .unwrap_or_else(|e| {
            fail(&format!(
                "bindgen failed on c-shim/bindings.h: {e}. Run `cargo xtask setup` (installs \
                 libclang-22-dev), or set LIBCLANG_PATH to a directory holding libclang.so."
            ))
        });
    bindings.write_to_file(out.join("bindings.rs")).unwrap();
}
