//! `cargo xtask kernel`: the pinned kernel source under `.cache/`.
//!
//! `kernel.lock` pins a Debian `linux-source-*` package version and the sha256 of the three
//! files the C side compiles. We `apt-get download` that exact version into `.cache/deb/`
//! and extract only those files into `.cache/<package>/<path>`. A second run with a complete,
//! matching cache does nothing.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use sha2::{Digest, Sha256};

use crate::util::{Res, capture, cmd_line, is_root, rel, root, run_ok, setup_err};
use crate::{say, warn};

const TAG: &str = "kernel";

/// Files the C side needs, relative to the kernel tree.
pub const DEFAULT_FILES: &[&str] = &[
    "arch/arm64/kvm/hyp/pgtable.c",
    "arch/arm64/include/asm/kvm_pgtable.h",
    "arch/arm64/include/asm/stage2_pgtable.h",
];
const DEFAULT_PACKAGE: &str = "linux-source-6.12";
const DEFAULT_HEADER: &[&str] = &[
    "# Default kernel source for the C side. Written by `cargo xtask kernel --update-lock`.",
    "# The build verifies these hashes; LINUX_SRC=<tree> bypasses this lock.",
];

#[derive(Clone, Copy, Debug, Default)]
pub struct Opts {
    /// Rewrite kernel.lock from the cache instead of failing on a mismatch.
    pub update_lock: bool,
}

/// Parsed `kernel.lock`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lock {
    pub comments: Vec<String>,
    pub package: String,
    pub version: Option<String>,
    /// (sha256 hex, path inside the kernel tree)
    pub files: Vec<(String, String)>,
}

impl Lock {
    pub fn parse(text: &str) -> Result<Lock, String> {
        let mut lock = Lock {
            comments: vec![],
            package: String::new(),
            version: None,
            files: vec![],
        };
        for (n, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() {
                continue;
            }
            if line.starts_with('#') {
                lock.comments.push(raw.trim_end().to_string());
                continue;
            }
            let mut it = line.split_whitespace();
            match (it.next(), it.next(), it.next(), it.next()) {
                (Some("package"), Some(p), None, None) => lock.package = p.to_string(),
                (Some("version"), Some(v), None, None) => lock.version = Some(v.to_string()),
                (Some("sha256"), Some(h), Some(p), None)
                    if h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()) =>
                {
                    lock.files.push((h.to_ascii_lowercase(), p.to_string()))
                }
                _ => return Err(format!("kernel.lock:{}: cannot parse `{line}`", n + 1)),
            }
        }
        if lock.package.is_empty() {
            return Err("kernel.lock: no `package` line".into());
        }
        if lock.files.is_empty() {
            return Err("kernel.lock: no `sha256` lines".into());
        }
        Ok(lock)
    }

    pub fn render(&self) -> String {
        let mut s = String::new();
        for c in &self.comments {
            s.push_str(c);
            s.push('\n');
        }
        s.push_str(&format!("package {}\n", self.package));
        if let Some(v) = &self.version {
            s.push_str(&format!("version {v}\n"));
        }
        for (h, p) in &self.files {
            s.push_str(&format!("sha256 {h} {p}\n"));
        }
        s
    }

    fn default_unpinned() -> Lock {
        Lock {
            comments: DEFAULT_HEADER.iter().map(|s| s.to_string()).collect(),
            package: DEFAULT_PACKAGE.into(),
            version: None,
            files: DEFAULT_FILES
                .iter()
                .map(|p| (String::new(), p.to_string()))
                .collect(),
        }
    }
}

pub fn lock_path() -> PathBuf {
    root().join("kernel.lock")
}

pub fn read_lock() -> Res<Lock> {
    let p = lock_path();
    let text = fs::read_to_string(&p).map_err(|e| {
        setup_err(format!(
            "cannot read {}: {e}; restore it from git or run: cargo xtask kernel --update-lock",
            p.display()
        ))
    })?;
    Lock::parse(&text).map_err(setup_err)
}

/// `.cache/<package>/`: the extracted tree.
pub fn cache_dir(package: &str) -> PathBuf {
    root().join(".cache").join(package)
}

fn deb_dir() -> PathBuf {
    root().join(".cache").join("deb")
}

pub fn sha256_file(p: &Path) -> std::io::Result<String> {
    let mut f = fs::File::open(p)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

/// Errors unless `tree` holds every file the C side needs (used for `LINUX_SRC`).
pub fn check_tree(tree: &Path) -> Res {
    let files = read_lock()
        .map(|l| l.files.into_iter().map(|(_, p)| p).collect::<Vec<_>>())
        .unwrap_or_else(|_| DEFAULT_FILES.iter().map(|s| s.to_string()).collect());
    for f in files {
        if !tree.join(&f).is_file() {
            return Err(setup_err(format!(
                "LINUX_SRC={} has no {f}; point LINUX_SRC at a kernel tree or unset it",
                tree.display()
            )));
        }
    }
    Ok(())
}

/// State of one cached file compared with the lock.
#[derive(Debug)]
enum FileState {
    Missing,
    Differs(String),
    Matches,
}

fn cache_states(lock: &Lock) -> Vec<(String, FileState)> {
    let dir = cache_dir(&lock.package);
    lock.files
        .iter()
        .map(|(want, p)| {
            let st = match sha256_file(&dir.join(p)) {
                Err(_) => FileState::Missing,
                Ok(h) if &h == want => FileState::Matches,
                Ok(h) => FileState::Differs(h),
            };
            (p.clone(), st)
        })
        .collect()
}

/// The `kernel` command (also the kernel part of `setup`).
pub fn ensure(opts: Opts) -> Res {
    let lock = match read_lock() {
        Ok(l) => l,
        Err(_) if opts.update_lock && !lock_path().exists() => {
            warn!(
                TAG,
                "no kernel.lock; creating one from apt's candidate {DEFAULT_PACKAGE}"
            );
            Lock::default_unpinned()
        }
        Err(e) => return Err(e),
    };
    let dir = cache_dir(&lock.package);
    let states = cache_states(&lock);
    let all_present = states.iter().all(|(_, s)| !matches!(s, FileState::Missing));
    let all_match = states.iter().all(|(_, s)| matches!(s, FileState::Matches));

    if all_match || (opts.update_lock && all_present) {
        if all_match {
            say!(
                TAG,
                "{} {} in {} matches kernel.lock",
                lock.package,
                lock.version.as_deref().unwrap_or("(unpinned)"),
                rel(&dir)
            );
        }
        if opts.update_lock {
            let version = cached_deb_version(&lock.package).or(lock.version.clone());
            write_lock(&lock, version)?;
        }
        return Ok(());
    }

    // Fetch: the locked version, or apt's candidate when it is gone.
    let (deb, version) = obtain_deb(&lock)?;
    extract(&deb, &lock)?;

    let states = cache_states(&lock);
    let bad: Vec<_> = states
        .iter()
        .filter(|(_, s)| !matches!(s, FileState::Matches))
        .collect();
    if opts.update_lock {
        return write_lock(&lock, Some(version));
    }
    if !bad.is_empty() {
        for (p, s) in &bad {
            let want = &lock.files.iter().find(|(_, q)| q == p).unwrap().0;
            match s {
                FileState::Differs(h) => {
                    eprintln!(
                        "[{TAG}] sha256 MISMATCH {p}\n    kernel.lock: {want}\n    {version}: {h}"
                    )
                }
                _ => eprintln!("[{TAG}] {p}: missing from {} {version}", lock.package),
            }
        }
        return Err(setup_err(format!(
            "{} {version} differs from kernel.lock; review {}, then run: cargo xtask kernel --update-lock",
            lock.package,
            rel(&dir)
        )));
    }
    say!(
        TAG,
        "{} {version} extracted to {}; sha256 matches kernel.lock",
        lock.package,
        rel(&dir)
    );
    if lock.version.as_deref() != Some(version.as_str()) {
        warn!(
            TAG,
            "kernel.lock pins {:?} but {version} was used; record it with: cargo xtask kernel --update-lock",
            lock.version
        );
    }
    Ok(())
}

fn write_lock(old: &Lock, version: Option<String>) -> Res {
    let dir = cache_dir(&old.package);
    let mut files = vec![];
    for (_, p) in &old.files {
        let h = sha256_file(&dir.join(p))
            .map_err(|e| setup_err(format!("cannot hash {}: {e}", dir.join(p).display())))?;
        files.push((h, p.clone()));
    }
    let comments = if old.comments.is_empty() {
        DEFAULT_HEADER.iter().map(|s| s.to_string()).collect()
    } else {
        old.comments.clone()
    };
    let new = Lock {
        comments,
        package: old.package.clone(),
        version,
        files,
    };
    if &new == old {
        say!(TAG, "kernel.lock unchanged");
        return Ok(());
    }
    fs::write(lock_path(), new.render())
        .map_err(|e| setup_err(format!("cannot write kernel.lock: {e}")))?;
    say!(
        TAG,
        "kernel.lock rewritten ({} {}); review and commit it",
        new.package,
        new.version.as_deref().unwrap_or("?")
    );
    for ((h_old, p), (h_new, _)) in old.files.iter().zip(&new.files) {
        if h_old != h_new {
            say!(
                TAG,
                "  {p}: {} -> {h_new}",
                if h_old.is_empty() { "(none)" } else { h_old }
            );
        }
    }
    Ok(())
}

/// Version of a `.deb` from its control file.
fn deb_version(deb: &Path) -> Option<String> {
    let (ok, out, _) = capture(Command::new("dpkg-deb").arg("-f").arg(deb).arg("Version"));
    ok.then(|| out.trim().to_string()).filter(|v| !v.is_empty())
}

fn cached_debs(package: &str) -> Vec<PathBuf> {
    let prefix = format!("{package}_");
    let mut v: Vec<PathBuf> = fs::read_dir(deb_dir())
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&prefix) && n.ends_with(".deb"))
        })
        .collect();
    v.sort_by_key(|p| std::cmp::Reverse(fs::metadata(p).and_then(|m| m.modified()).ok()));
    v
}

fn cached_deb_version(package: &str) -> Option<String> {
    cached_debs(package).first().and_then(|d| deb_version(d))
}

/// Versions apt knows for `pkg`, and its candidate.
fn apt_versions(pkg: &str) -> (Vec<String>, Option<String>) {
    let (_, out, _) = capture(Command::new("apt-cache").args(["madison", pkg]));
    let mut vs: Vec<String> = out
        .lines()
        .filter_map(|l| l.split('|').nth(1).map(|v| v.trim().to_string()))
        .filter(|v| !v.is_empty())
        .collect();
    vs.dedup();
    let (_, out, _) = capture(Command::new("apt-cache").args(["policy", pkg]));
    let cand = out
        .lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix("Candidate:")
                .map(|v| v.trim().to_string())
        })
        .filter(|v| v != "(none)" && !v.is_empty());
    (vs, cand)
}

fn apt_update() -> Res {
    if !is_root() {
        return Err(setup_err(
            "apt does not know the kernel source package; run: sudo apt-get update",
        ));
    }
    say!(TAG, "apt-get update ...");
    run_ok(Command::new("apt-get").args(["update", "-q"]))
}

/// Returns a verified `.deb` of the locked version (or of apt's candidate, with a warning).
fn obtain_deb(lock: &Lock) -> Res<(PathBuf, String)> {
    let pkg = &lock.package;
    if let Some(want) = &lock.version {
        for d in cached_debs(pkg) {
            if deb_version(&d).as_deref() == Some(want.as_str()) {
                say!(TAG, "using {}", rel(&d));
                return Ok((d, want.clone()));
            }
        }
    }
    let (mut versions, mut cand) = apt_versions(pkg);
    let pinned_known = |vs: &[String]| lock.version.as_ref().is_none_or(|w| vs.contains(w));
    if versions.is_empty() || !pinned_known(&versions) {
        // Stale or missing package lists: the pinned version may be newer than they are.
        apt_update()?;
        (versions, cand) = apt_versions(pkg);
    }
    let version = match &lock.version {
        Some(w) if versions.contains(w) => w.clone(),
        pinned => {
            let Some(c) = cand.or_else(|| versions.first().cloned()) else {
                return Err(setup_err(format!(
                    "apt has no {pkg}; enable Debian 12 (bookworm) security sources, then apt-get update"
                )));
            };
            match pinned {
                Some(w) => warn!(
                    TAG,
                    "{pkg} {w} (pinned in kernel.lock) is no longer in apt; FALLING BACK to {c}. \
                     Results may differ from the pinned kernel; record it with: cargo xtask kernel --update-lock"
                ),
                None => warn!(TAG, "no version pinned; using apt's candidate {c}"),
            }
            c
        }
    };
    for d in cached_debs(pkg) {
        if deb_version(&d).as_deref() == Some(version.as_str()) {
            say!(TAG, "using {}", rel(&d));
            return Ok((d, version));
        }
    }
    let dir = deb_dir();
    fs::create_dir_all(&dir)
        .map_err(|e| setup_err(format!("cannot create {}: {e}", dir.display())))?;
    let spec = format!("{pkg}={version}");
    say!(TAG, "apt-get download {spec} (~150 MB) ...");
    let mut cmd = Command::new("apt-get");
    cmd.args(["download", "-q", &spec]).current_dir(&dir);
    if is_root() {
        // apt's _apt sandbox user cannot write into our cache dir; skip its warning.
        cmd.args(["-o", "APT::Sandbox::User=root"]);
    }
    run_ok(&mut cmd)?;
    let deb = cached_debs(pkg)
        .into_iter()
        .find(|d| deb_version(d).as_deref() == Some(version.as_str()))
        .ok_or_else(|| {
            setup_err(format!(
                "`{}` left no {pkg} .deb in {}",
                cmd_line(&cmd),
                rel(&dir)
            ))
        })?;
    verify_deb(&deb, &spec)?;
    // Keep only the deb in use.
    for d in cached_debs(pkg) {
        if d != deb {
            let _ = fs::remove_file(&d);
        }
    }
    Ok((deb, version))
}

/// Checks the downloaded `.deb` against the SHA256 apt's (signed) index records.
fn verify_deb(deb: &Path, spec: &str) -> Res {
    let (_, out, _) = capture(Command::new("apt-cache").args(["show", "--no-all-versions", spec]));
    let Some(want) = out
        .lines()
        .find_map(|l| l.strip_prefix("SHA256:").map(|s| s.trim().to_string()))
    else {
        warn!(
            TAG,
            "apt-cache show {spec} has no SHA256; not verifying {}",
            rel(deb)
        );
        return Ok(());
    };
    let (ok, got, _) = capture(Command::new("sha256sum").arg(deb));
    let got = got.split_whitespace().next().unwrap_or("").to_string();
    if !ok || got != want {
        let _ = fs::remove_file(deb);
        return Err(setup_err(format!(
            "{} is corrupt (sha256 {got}, apt says {want}); deleted it, run again",
            rel(deb)
        )));
    }
    Ok(())
}

/// Extracts the lock's files from the `.deb` into `.cache/<package>/` (replacing it).
fn extract(deb: &Path, lock: &Lock) -> Res {
    let pkg = &lock.package;
    let cache = cache_dir(pkg);
    let tmp = root()
        .join(".cache")
        .join(format!(".{pkg}.tmp-{}", std::process::id()));
    let _ = fs::remove_dir_all(&tmp);
    fs::create_dir_all(&tmp)
        .map_err(|e| setup_err(format!("cannot create {}: {e}", tmp.display())))?;
    say!(
        TAG,
        "extracting {} files from {} (~10 s) ...",
        lock.files.len(),
        rel(deb)
    );

    let err = |what: &str, e: std::io::Error| setup_err(format!("cannot run {what}: {e}"));
    let mut a = Command::new("dpkg-deb")
        .arg("--fsys-tarfile")
        .arg(deb)
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| err("dpkg-deb", e))?;
    let mut b = Command::new("tar")
        .args(["-xO", &format!("./usr/src/{pkg}.tar.xz")])
        .stdin(a.stdout.take().unwrap())
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| err("tar", e))?;
    let mut c = Command::new("tar");
    c.arg("-xJ").arg("-C").arg(&tmp);
    for (_, p) in &lock.files {
        c.arg(format!("{pkg}/{p}"));
    }
    let mut c = c
        .stdin(b.stdout.take().unwrap())
        .spawn()
        .map_err(|e| err("tar -xJ (is xz-utils installed?)", e))?;
    let (sa, sb, sc) = (a.wait(), b.wait(), c.wait());
    let ok = [sa, sb, sc]
        .iter()
        .all(|s| s.as_ref().is_ok_and(|s| s.success()));
    let tree = tmp.join(pkg);
    if !ok || !lock.files.iter().all(|(_, p)| tree.join(p).is_file()) {
        let _ = fs::remove_dir_all(&tmp);
        return Err(setup_err(format!(
            "extracting from {} failed; delete it and run `cargo xtask kernel` again",
            rel(deb)
        )));
    }
    let _ = fs::remove_dir_all(&cache);
    fs::rename(&tree, &cache)
        .map_err(|e| setup_err(format!("cannot move into {}: {e}", cache.display())))?;
    let _ = fs::remove_dir_all(&tmp);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "# c1\n# c2\npackage linux-source-6.12\nversion 6.12.117-1~deb12u1\n\
        sha256 502777920ac90618ee53c4de4e031b81bc6a1f4bfb75b5f8f0b061a181284b25 arch/arm64/kvm/hyp/pgtable.c\n";

    #[test]
    fn lock_roundtrip() {
        let l = Lock::parse(SAMPLE).unwrap();
        assert_eq!(l.package, "linux-source-6.12");
        assert_eq!(l.version.as_deref(), Some("6.12.117-1~deb12u1"));
        assert_eq!(l.files.len(), 1);
        assert_eq!(l.render(), SAMPLE);
    }

    #[test]
    fn lock_rejects_garbage() {
        assert!(Lock::parse("package x\nsha256 zz a/b\n").is_err());
        assert!(Lock::parse("package x\n").is_err());
        assert!(Lock::parse("bogus line\n").is_err());
    }

    #[test]
    fn repo_lock_parses() {
        let l = read_lock().expect("kernel.lock at the repo root parses");
        for f in DEFAULT_FILES {
            assert!(l.files.iter().any(|(_, p)| p == f), "kernel.lock lists {f}");
        }
    }
}
