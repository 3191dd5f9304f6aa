//! `cargo xtask setup`: installs what the build and the fuzzer need.
//!
//! - Debian packages (clang/LLVM 22 for the C side and bindgen, xz for the kernel tarball);
//! - every kernel line pinned in kernel.lock (see `kernel.rs`), unless `LINUX_SRC` points at a tree;
//! - rustup's rustfmt and clippy (the style steps of `cargo xtask test`);
//! - with `--fuzz`: the nightly toolchain check and `cargo-fuzz`.

use std::path::Path;
use std::process::Command;

use crate::kernel;
use crate::util::{Res, capture, cmd_line, is_root, run_ok, setup_err};
use crate::{say, warn};

/// Debian packages the project needs. clang-22 compiles pgtable.c (with libFuzzer/ASan
/// instrumentation under cargo fuzz), libclang-22-dev feeds bindgen, libclang-rt-22-dev holds
/// the sanitizer runtimes, llvm-22 has llvm-cov/llvm-profdata for coverage, xz-utils unpacks
/// the kernel tarball.
pub const APT_PACKAGES: &[&str] = &[
    "clang-22",
    "llvm-22",
    "libclang-22-dev",
    "libclang-rt-22-dev",
    "xz-utils",
    // The oldest libclang bookworm has: `cargo xtask oss-fuzz` runs bindgen against it, as
    // OSS-Fuzz's Ubuntu 20.04 image does with its libclang 10.
    "libclang1-13",
];

#[derive(Clone, Copy, Debug, Default)]
pub struct Opts {
    /// Also make sure nightly and cargo-fuzz are available.
    pub fuzz: bool,
}

/// Runs the whole setup. Idempotent: a second run only checks.
pub fn setup(opts: Opts) -> Res {
    apt_packages()?;
    kernel_source()?;
    style_tools()?;
    if opts.fuzz {
        fuzz_tools()?;
    }
    say!("setup", "ok");
    Ok(())
}

/// rustfmt and clippy, which `cargo xtask test` runs (in rustup's default profile, not the
/// minimal one).
pub fn style_tools() -> Res {
    let missing =
        ["fmt", "clippy"].map(|t| !capture(Command::new("cargo").args([t, "--version"])).0);
    if missing.contains(&true) {
        say!(
            "setup",
            "rustfmt/clippy missing; rustup component add rustfmt clippy ..."
        );
        run_ok(Command::new("rustup").args(["component", "add", "rustfmt", "clippy"]))
            .map_err(|_| setup_err("cargo xtask test needs rustfmt and clippy; run: rustup component add rustfmt clippy"))?;
    }
    Ok(())
}

/// True when `pkg` is installed according to dpkg.
pub fn dpkg_installed(pkg: &str) -> bool {
    let (ok, out, _) = capture(Command::new("dpkg-query").args(["-W", "-f=${Status}", pkg]));
    ok && out.trim() == "install ok installed"
}

/// Installs missing Debian packages (as root), or says which command to run (exit 2).
pub fn apt_packages() -> Res {
    let missing: Vec<&str> = APT_PACKAGES
        .iter()
        .copied()
        .filter(|p| !dpkg_installed(p))
        .collect();
    if missing.is_empty() {
        say!("setup", "apt packages present: {}", APT_PACKAGES.join(" "));
        return Ok(());
    }
    if !is_root() {
        let m = missing.join(" ");
        let fix = format!("sudo apt-get update && sudo apt-get install -y {m}");
        return Err(setup_err(format!("missing packages; run: {fix}")));
    }
    say!("setup", "apt-get update ...");
    run_ok(Command::new("apt-get").args(["update", "-q"]))?;
    say!("setup", "installing {} ...", missing.join(" "));
    let mut cmd = Command::new("apt-get");
    cmd.env("DEBIAN_FRONTEND", "noninteractive")
        .args(["install", "-y", "-q", "--no-install-recommends"])
        .args(&missing);
    run_ok(&mut cmd)?;
    let still: Vec<&str> = missing.into_iter().filter(|p| !dpkg_installed(p)).collect();
    if !still.is_empty() {
        let s = still.join(" ");
        return Err(setup_err(format!(
            "apt-get did not install {s}; run: apt-get install -y {s}"
        )));
    }
    Ok(())
}

/// Makes sure a kernel source is available: `LINUX_SRC` if set, else every locked line.
pub fn kernel_source() -> Res {
    if let Some(src) = std::env::var_os("LINUX_SRC") {
        let src = Path::new(&src);
        kernel::check_tree(src)?;
        let s = src.display();
        say!(
            "setup",
            "LINUX_SRC={s} (kernel.lock and the cache are not used)"
        );
        return Ok(());
    }
    kernel::ensure(kernel::Opts::default())
}

/// Checks the nightly toolchain and installs cargo-fuzz when missing.
pub fn fuzz_tools() -> Res {
    let (ok, out, _) = capture(Command::new("cargo").args(["+nightly", "--version"]));
    if !ok {
        say!(
            "setup",
            "nightly toolchain missing; rustup toolchain install nightly ..."
        );
        let mut cmd = Command::new("rustup");
        cmd.args(["toolchain", "install", "nightly", "--profile", "minimal"]);
        run_ok(&mut cmd).map_err(|_| {
            setup_err("cargo fuzz needs a nightly toolchain; run: rustup toolchain install nightly")
        })?;
    } else {
        say!("setup", "nightly: {}", out.trim());
    }
    let (ok, out, _) = capture(Command::new("cargo").args(["fuzz", "--version"]));
    if ok {
        say!("setup", "{}", out.trim());
        return Ok(());
    }
    let mut cmd = Command::new("cargo");
    cmd.args(["install", "cargo-fuzz", "--locked"]);
    say!("setup", "installing cargo-fuzz: {} ...", cmd_line(&cmd));
    run_ok(&mut cmd)?;
    let (ok, _, err) = capture(Command::new("cargo").args(["fuzz", "--version"]));
    if !ok {
        warn!("setup", "{}", err.trim());
        return Err(setup_err(
            "cargo-fuzz installed but `cargo fuzz` fails; is ~/.cargo/bin on PATH?",
        ));
    }
    Ok(())
}
