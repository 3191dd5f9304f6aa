//! `cargo xtask kernel`: the kernel lines pinned in `kernel.lock`, under `.cache/`.
//!
//! Each `[line NAME]` of `kernel.lock` (format and parser: `build-support/lock.rs`) pins a
//! Debian `linux-source-*` package version, the suite that carries it, and the sha256 of the
//! files the C side reads. Per line we `apt-get download` that version into `.cache/deb/` and
//! extract only those files into `.cache/linux-source-NAME/`; a line whose cache matches is
//! skipped. A suite the system's apt sources do not list (7.3's trixie-backports on bookworm)
//! is reached through a private apt state in `.cache/apt/<suite>/`, made from the Debian mirror
//! the system's sources name; the system's own apt configuration is never changed.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use crate::lock::{BUILT_LINE, Line, Lock};
use crate::util::{
    Ctx, Res, capture, cmd_line, files, fmt_dur, is_root, mkdir, rel, root, run_ok, setup_err,
    sha256_file,
};
use crate::{say, warn};

const TAG: &str = "kernel";

/// Files the C side needs, relative to the kernel tree.
pub const FILES: [&str; 3] = [
    "arch/arm64/kvm/hyp/pgtable.c",
    "arch/arm64/include/asm/kvm_pgtable.h",
    "arch/arm64/include/asm/stage2_pgtable.h",
];
/// What `--update-lock` pins when there is no kernel.lock at all: (line, Debian suite).
const DEFAULT_LINES: [(&str, &str); 2] =
    [("6.12", "bookworm-security"), ("7.3", "trixie-backports")];
const HEADER: [&str; 3] = [
    "# Kernel lines for the C side, one section each. Written by `cargo xtask kernel --update-lock`.",
    "# `cargo xtask kernel` fetches each into .cache/linux-source-<line>/ and checks these hashes;",
    "# the build compiles every line and checks its hashes; LINUX_SRC=<tree> replaces the line whose API it has.",
];
/// The keyring that signs Debian's archives, for a private apt state whose source has none.
const DEBIAN_KEYRING: &str = "/usr/share/keyrings/debian-archive-keyring.gpg";

#[derive(Clone, Debug, Default)]
pub struct Opts {
    /// Rewrite kernel.lock from the cache instead of failing on a mismatch.
    pub update_lock: bool,
    /// Only this line (default: every line).
    pub line: Option<String>,
}

pub fn lock_path() -> PathBuf {
    root().join("kernel.lock")
}

pub fn read_lock() -> Res<Lock> {
    let fix = "restore kernel.lock from git or run: cargo xtask kernel --update-lock";
    Lock::read(&lock_path()).map_err(|e| setup_err(format!("{e}; {fix}")))
}

fn cache_dir(line: &Line) -> PathBuf {
    root().join(line.cache_dir())
}

/// The cached tree build.rs compiles when LINUX_SRC is unset.
pub fn built_tree() -> Res<PathBuf> {
    let lock = read_lock()?;
    let line = lock.line(BUILT_LINE);
    line.map(cache_dir)
        .ok_or_else(|| setup_err(format!("kernel.lock has no [line {BUILT_LINE}]")))
}

/// Errors unless `tree` holds every file the C side needs (used for `LINUX_SRC`).
pub fn check_tree(tree: &Path) -> Res {
    let t = tree.display();
    match FILES.iter().find(|f| !tree.join(f).is_file()) {
        Some(f) => Err(setup_err(format!(
            "LINUX_SRC={t} has no {f}; point LINUX_SRC at a kernel tree or unset it"
        ))),
        None => Ok(()),
    }
}

/// The `kernel` command (also the kernel part of `setup`): every selected line, each fetched
/// only when its cache does not match; failures are reported per line, then together.
pub fn ensure(opts: Opts) -> Res {
    let mut lock = match read_lock() {
        Err(_) if opts.update_lock && !lock_path().exists() => {
            warn!(TAG, "no kernel.lock; creating one from apt's candidates");
            default_lock()
        }
        r => r?,
    };
    let all: Vec<String> = lock.lines.iter().map(|l| l.name.clone()).collect();
    let names = match &opts.line {
        Some(n) if !all.contains(n) => {
            let all = all.join(", ");
            return Err(setup_err(format!(
                "kernel.lock has no [line {n}]; lines: {all}"
            )));
        }
        Some(n) => vec![n.clone()],
        None => all,
    };
    let (mut apts, mut failed, mut changed) = (Apts::default(), vec![], false);
    for name in &names {
        let i = lock.lines.iter().position(|l| &l.name == name).unwrap();
        let t = Instant::now();
        match ensure_line(&lock.lines[i], opts.update_lock, &mut apts) {
            Ok(new) => {
                if let Some(new) = new.filter(|n| *n != lock.lines[i]) {
                    report_change(&lock.lines[i], &new);
                    lock.lines[i] = new;
                    changed = true;
                }
                say!(TAG, "line {name}: ok ({})", fmt_dur(t.elapsed()));
            }
            Err(f) => {
                eprintln!("[{TAG}] line {name}: FAILED: {}", f.msg);
                failed.push(format!("line {name}: {}", f.msg));
            }
        }
    }
    if opts.update_lock && changed {
        fs::write(lock_path(), lock.render()).ctx("cannot write kernel.lock")?;
        say!(TAG, "kernel.lock rewritten; review and commit it");
    } else if opts.update_lock {
        say!(TAG, "kernel.lock unchanged");
    }
    match failed.len() {
        0 => Ok(()),
        _ => Err(setup_err(failed.join("; "))),
    }
}

fn default_lock() -> Lock {
    let line = |(name, suite): &(&str, &str)| Line {
        name: name.to_string(),
        package: format!("linux-source-{name}"),
        suite: suite.to_string(),
        files: FILES.map(|p| (String::new(), p.to_string())).to_vec(),
        ..Line::default()
    };
    let header = HEADER.map(String::from).to_vec();
    Lock {
        header,
        lines: DEFAULT_LINES.iter().map(line).collect(),
    }
}

fn report_change(old: &Line, new: &Line) {
    let (name, v0, v1) = (&new.name, &old.version, &new.version);
    if v0 != v1 {
        say!(TAG, "  [line {name}] version {v0:?} -> {v1}");
    }
    for ((h0, p), (h1, _)) in old.files.iter().zip(&new.files) {
        if h0 != h1 {
            say!(
                TAG,
                "  {p}: {} -> {h1}",
                if h0.is_empty() { "(none)" } else { h0 }
            );
        }
    }
}

/// Paths of `line` whose cached copy is missing (None) or differs (its sha256).
fn mismatches(line: &Line) -> Vec<(&str, Option<String>)> {
    let dir = cache_dir(line);
    let sums = line
        .files
        .iter()
        .map(|(want, p)| (want, p, sha256_file(&dir.join(p))));
    sums.filter(|(want, _, h)| h.as_ref().ok() != Some(*want))
        .map(|(_, p, h)| (p.as_str(), h.ok()))
        .collect()
}

/// Fetches and verifies one line; with `update`, returns it with the version and hashes found.
fn ensure_line(line: &Line, update: bool, apts: &mut Apts) -> Res<Option<Line>> {
    let (name, pkg, pinned, dir) = (
        &line.name,
        &line.package,
        &line.version,
        rel(&cache_dir(line)),
    );
    let bad = mismatches(line);
    if bad.is_empty() || (update && bad.iter().all(|(_, h)| h.is_some())) {
        if bad.is_empty() {
            say!(
                TAG,
                "line {name}: {pkg} {pinned} in {dir} matches kernel.lock"
            );
        }
        let version = cached_deb_version(pkg).unwrap_or_else(|| pinned.clone());
        return update.then(|| rehash(line, version)).transpose();
    }
    let (n, all) = (bad.len(), line.files.len());
    let v = if pinned.is_empty() {
        "(unpinned)"
    } else {
        pinned
    };
    say!(
        TAG,
        "line {name}: {n} of {all} files missing or different in {dir}; fetching {pkg} {v}"
    );
    let (deb, version) = obtain_deb(line, apts)?;
    extract(&deb, line)?;
    if update {
        return rehash(line, version).map(Some);
    }
    let bad = mismatches(line);
    for (p, h) in &bad {
        let want = line.sha256(p).unwrap_or_default();
        match h {
            Some(h) => eprintln!(
                "[{TAG}] sha256 MISMATCH {p}\n    kernel.lock: {want}\n    {version}: {h}"
            ),
            None => eprintln!("[{TAG}] {p}: missing from {pkg} {version}"),
        }
    }
    let record = format!("cargo xtask kernel --line {name} --update-lock");
    if !bad.is_empty() {
        let msg =
            format!("{pkg} {version} differs from kernel.lock; review {dir}, then run: {record}");
        return Err(setup_err(msg));
    }
    say!(
        TAG,
        "line {name}: {pkg} {version} extracted to {dir}; sha256 matches kernel.lock"
    );
    if *pinned != version {
        warn!(
            TAG,
            "kernel.lock pins {pkg} {pinned:?} but {version} was used; record it with: {record}"
        );
    }
    Ok(None)
}

/// `line` with `version` and the hashes of the cached files.
fn rehash(line: &Line, version: String) -> Res<Line> {
    let dir = cache_dir(line);
    let hash = |(_, p): &(String, String)| {
        let f = dir.join(p);
        Ok((
            sha256_file(&f).ctx(format_args!("cannot hash {}", f.display()))?,
            p.clone(),
        ))
    };
    let files = line.files.iter().map(hash).collect::<Res<_>>()?;
    Ok(Line {
        version,
        files,
        ..line.clone()
    })
}

fn deb_dir() -> PathBuf {
    root().join(".cache").join("deb")
}

/// Version of a `.deb` from its control file.
fn deb_version(deb: &Path) -> Option<String> {
    let (ok, out, _) = capture(Command::new("dpkg-deb").arg("-f").arg(deb).arg("Version"));
    ok.then(|| out.trim().to_string()).filter(|v| !v.is_empty())
}

/// The cached `.deb`s of `package`, newest first.
fn cached_debs(package: &str) -> Vec<PathBuf> {
    let prefix = format!("{package}_");
    let mut v = files(&deb_dir(), false, Some("deb"));
    v.retain(|p| {
        p.file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with(&prefix)
    });
    v.sort_by_key(|p| std::cmp::Reverse(fs::metadata(p).and_then(|m| m.modified()).ok()));
    v
}

fn cached_deb_version(package: &str) -> Option<String> {
    cached_debs(package).first().and_then(|d| deb_version(d))
}

fn cached_deb(package: &str, version: &str) -> Option<PathBuf> {
    let mut debs = cached_debs(package).into_iter();
    debs.find(|d| deb_version(d).as_deref() == Some(version))
}

// ---------------------------------------------------------------------------------------------
// apt: the system's, or a private state for a suite the system's sources do not list

/// One `deb` source of the system's apt configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Source {
    uri: String,
    suites: Vec<String>,
    /// `signed-by` / `Signed-By`: a keyring path, fingerprints, or an inline key.
    signed_by: Option<String>,
}

/// Sources of the one-line format (`deb [signed-by=K] URI SUITE COMPONENT...`).
fn parse_list(text: &str) -> Vec<Source> {
    let mut out = vec![];
    for l in text.lines() {
        let l = l.split('#').next().unwrap_or("").trim();
        let Some(rest) = l.strip_prefix("deb ") else {
            continue;
        };
        let (opts, rest) = match rest.trim_start().strip_prefix('[') {
            Some(r) => r.split_once(']').unwrap_or((r, "")),
            None => ("", rest),
        };
        let mut w = rest.split_whitespace();
        if let (Some(uri), Some(suite)) = (w.next(), w.next()) {
            let signed_by = opts
                .split_whitespace()
                .find_map(|o| o.strip_prefix("signed-by="))
                .map(String::from);
            out.push(Source {
                uri: uri.into(),
                suites: vec![suite.into()],
                signed_by,
            });
        }
    }
    out
}

/// Sources of the deb822 format (`.sources`: `Types:`, `URIs:`, `Suites:`, `Signed-By:`,
/// `Enabled:` fields; continuation lines start with a space, ` .` is an empty line).
fn parse_deb822(text: &str) -> Vec<Source> {
    let mut out = vec![];
    let mut stanzas = vec![BTreeMap::<String, String>::new()];
    let mut key = String::new();
    for l in text.lines().chain([""]) {
        if l.trim().is_empty() {
            stanzas.push(BTreeMap::new());
        } else if l.starts_with('#') {
        } else if l.starts_with([' ', '\t']) {
            let v = stanzas.last_mut().unwrap().entry(key.clone()).or_default();
            let t = l.trim();
            v.push('\n');
            v.push_str(if t == "." { "" } else { t });
        } else if let Some((k, v)) = l.split_once(':') {
            key = k.trim().to_ascii_lowercase();
            stanzas
                .last_mut()
                .unwrap()
                .insert(key.clone(), v.trim().to_string());
        }
    }
    for s in stanzas {
        let get = |k: &str| s.get(k).map(String::as_str).unwrap_or("");
        if !get("types").split_whitespace().any(|t| t == "deb") || get("enabled") == "no" {
            continue;
        }
        for uri in get("uris").split_whitespace() {
            out.push(Source {
                uri: uri.into(),
                suites: get("suites").split_whitespace().map(String::from).collect(),
                signed_by: s.get("signed-by").map(|k| k.trim().to_string()),
            });
        }
    }
    out
}

/// The system's apt sources: /etc/apt/sources.list and /etc/apt/sources.list.d/*.{list,sources}.
fn system_sources() -> Vec<Source> {
    let mut paths = vec![PathBuf::from("/etc/apt/sources.list")];
    paths.extend(files(Path::new("/etc/apt/sources.list.d"), false, None));
    let mut out = vec![];
    for p in paths {
        let text = fs::read_to_string(&p).unwrap_or_default();
        match p.extension().and_then(|e| e.to_str()) {
            Some("sources") => out.extend(parse_deb822(&text)),
            Some("list") | None => out.extend(parse_list(&text)),
            _ => {}
        }
    }
    out
}

/// The Debian archive to reach `suite` from: a source whose URI ends in `/debian` (or
/// `/debian-security` for a `-security` suite).
fn mirror_for<'a>(suite: &str, sources: &'a [Source]) -> Option<&'a Source> {
    let security = suite.ends_with("-security");
    let archive = if security {
        "/debian-security"
    } else {
        "/debian"
    };
    sources
        .iter()
        .find(|s| s.uri.trim_end_matches('/').ends_with(archive))
}

/// How to run apt-get / apt-cache: the system's state, or `-o` options for a private one.
#[derive(Clone, Debug, Default)]
struct Apt {
    opts: Vec<String>,
    /// For messages: where the package lists come from.
    what: String,
}

impl Apt {
    fn cmd(&self, tool: &str) -> Command {
        let mut c = Command::new(tool);
        self.opts.iter().for_each(|o| _ = c.args(["-o", o]));
        if is_root() {
            // apt's _apt sandbox user cannot write into our directories; skip its warning.
            c.args(["-o", "APT::Sandbox::User=root"]);
        }
        c
    }

    /// `apt-cache ARGS`' stdout.
    fn cache(&self, args: &[&str]) -> String {
        capture(self.cmd("apt-cache").args(args)).1
    }

    /// Versions apt knows for `pkg`, and its candidate.
    fn versions(&self, pkg: &str) -> (Vec<String>, Option<String>) {
        let madison = self.cache(&["madison", pkg]);
        let mut vs: Vec<String> = madison
            .lines()
            .filter_map(|l| Some(l.split('|').nth(1)?.trim().to_string()))
            .filter(|v| !v.is_empty())
            .collect();
        vs.dedup();
        let policy = self.cache(&["policy", pkg]);
        let cand = policy
            .lines()
            .find_map(|l| Some(l.trim().strip_prefix("Candidate:")?.trim().to_string()))
            .filter(|v| v != "(none)" && !v.is_empty());
        (vs, cand)
    }
}

/// The apt to use per suite, made on first use (a private one runs `apt-get update` then).
#[derive(Default)]
struct Apts {
    sources: Option<Vec<Source>>,
    by_suite: BTreeMap<String, Apt>,
    system_updated: bool,
}

impl Apts {
    fn for_suite(&mut self, suite: &str, line: &str) -> Res<Apt> {
        if let Some(a) = self.by_suite.get(suite) {
            return Ok(a.clone());
        }
        let sources = self.sources.get_or_insert_with(system_sources);
        let apt = if sources.iter().any(|s| s.suites.iter().any(|x| x == suite)) {
            Apt {
                opts: vec![],
                what: "the system's apt".into(),
            }
        } else {
            private_apt(suite, sources, line)?
        };
        self.by_suite.insert(suite.to_string(), apt.clone());
        Ok(apt)
    }
}

/// A private apt state in `.cache/apt/<suite>/` whose only source is `suite` on the system's
/// Debian mirror; runs `apt-get update` for it.
fn private_apt(suite: &str, sources: &[Source], line: &str) -> Res<Apt> {
    let retry = format!("cargo xtask kernel --line {line}");
    let Some(src) = mirror_for(suite, sources) else {
        return Err(setup_err(format!(
            "the system's apt sources have no {suite} and no Debian archive (a URI ending in \
             /debian) to reach it from; add a Debian mirror to /etc/apt/sources.list.d/, then \
             run: {retry}"
        )));
    };
    let dir = root().join(".cache").join("apt").join(suite);
    mkdir(&dir.join("lists").join("partial"))?;
    mkdir(&dir.join("cache").join("archives").join("partial"))?;
    let key = match &src.signed_by {
        // An inline key (deb822): apt reads an armored key from a file named *.asc.
        Some(k) if k.contains('\n') => {
            let p = dir.join("keyring.asc");
            let write = fs::write(&p, format!("{}\n", k.trim()));
            write.ctx(format_args!("cannot write {}", p.display()))?;
            Some(p.display().to_string())
        }
        Some(k) => Some(k.clone()),
        None => Path::new(DEBIAN_KEYRING)
            .is_file()
            .then(|| DEBIAN_KEYRING.to_string()),
    };
    let signed_by = key.map(|k| format!("[signed-by={k}] ")).unwrap_or_default();
    let (list, status, uri) = (dir.join("sources.list"), dir.join("status"), &src.uri);
    fs::write(&list, format!("deb {signed_by}{uri} {suite} main\n"))
        .and_then(|_| fs::write(&status, ""))
        .ctx(format_args!("cannot write {}", dir.display()))?;
    let o = |k: &str, p: &Path| format!("{k}={}", p.display());
    let opts = vec![
        o("Dir::Etc::SourceList", &list),
        "Dir::Etc::SourceParts=/dev/null".into(),
        o("Dir::State::Lists", &dir.join("lists")),
        o("Dir::Cache", &dir.join("cache")),
        o("Dir::State::Status", &status),
        // Our own state: no need for (root's) locks on it.
        "Debug::NoLocking=1".into(),
    ];
    let (rel_dir, what) = (rel(&dir), format!("{} ({suite} from {uri})", rel(&dir)));
    let apt = Apt { opts, what };
    say!(
        TAG,
        "{suite} is not in the system's apt sources; apt-get update of a private state: {}",
        apt.what
    );
    run_ok(apt.cmd("apt-get").args(["update", "-q"])).map_err(|_| {
        setup_err(format!(
            "cannot reach {suite} at {uri} (`apt-get update` of {rel_dir} failed, see above); \
             check the suite of [line {line}] in kernel.lock, the network and the mirror, then \
             run: {retry}"
        ))
    })?;
    Ok(apt)
}

/// Returns a verified `.deb` of the locked version (or of apt's candidate, with a warning).
fn obtain_deb(line: &Line, apts: &mut Apts) -> Res<(PathBuf, String)> {
    let (name, pkg, want) = (&line.name, &line.package, &line.version);
    let cached = |version: &str| {
        let d = cached_deb(pkg, version)?;
        say!(TAG, "using {}", rel(&d));
        Some((d, version.to_string()))
    };
    if let Some(c) = cached(want) {
        return Ok(c);
    }
    let apt = apts.for_suite(&line.suite, name)?;
    let (mut versions, mut cand) = apt.versions(pkg);
    let unknown = versions.is_empty() || !(want.is_empty() || versions.contains(want));
    if apt.opts.is_empty() && !apts.system_updated && unknown {
        // Stale or missing package lists: the pinned version may be newer than they are.
        if !is_root() {
            let msg = format!("apt does not know {pkg} {want}; run: sudo apt-get update");
            return Err(setup_err(msg));
        }
        say!(TAG, "apt-get update ...");
        run_ok(Command::new("apt-get").args(["update", "-q"]))?;
        apts.system_updated = true;
        (versions, cand) = apt.versions(pkg);
    }
    let version = if versions.contains(want) {
        want.clone()
    } else {
        let Some(c) = cand.or_else(|| versions.first().cloned()) else {
            return Err(setup_err(format!(
                "{} has no {pkg}; check the suite of [line {name}] in kernel.lock ({}) and that \
                 the apt sources carry it",
                apt.what, line.suite
            )));
        };
        if want.is_empty() {
            warn!(
                TAG,
                "no version pinned for [line {name}]; using apt's candidate {c}"
            );
        } else {
            warn!(
                TAG,
                "{pkg} {want} (pinned in kernel.lock) is no longer in apt; FALLING BACK to {c}. \
                 Results may differ from the pinned kernel; record it with: cargo xtask kernel --update-lock"
            );
        }
        c
    };
    if let Some(c) = cached(&version) {
        return Ok(c);
    }
    let dir = deb_dir();
    mkdir(&dir)?;
    let spec = format!("{pkg}={version}");
    let mut cmd = apt.cmd("apt-get");
    cmd.args(["download", "-q", &spec]).current_dir(&dir);
    say!(
        TAG,
        "apt-get download {spec} (~150 MB, from {}) ...",
        apt.what
    );
    run_ok(&mut cmd)?;
    let (shown, rel_dir) = (cmd_line(&cmd), rel(&dir));
    let deb = cached_deb(pkg, &version)
        .ok_or_else(|| setup_err(format!("`{shown}` left no {pkg} .deb in {rel_dir}")))?;
    // Check the download against the SHA256 apt's signed index records.
    let show = apt.cache(&["show", "--no-all-versions", &spec]);
    let deb_rel = rel(&deb);
    match show
        .lines()
        .find_map(|l| Some(l.strip_prefix("SHA256:")?.trim()))
    {
        None => warn!(
            TAG,
            "apt-cache show {spec} has no SHA256; not verifying {deb_rel}"
        ),
        Some(want) => {
            let got = sha256_file(&deb).unwrap_or_default();
            if got != want {
                let _ = fs::remove_file(&deb);
                return Err(setup_err(format!(
                    "{deb_rel} is corrupt (sha256 {got}, apt says {want}); deleted it, run again"
                )));
            }
        }
    }
    // Keep only the deb in use.
    for d in cached_debs(pkg).into_iter().filter(|d| *d != deb) {
        let _ = fs::remove_file(d);
    }
    Ok((deb, version))
}

/// Extracts the line's files from the `.deb` into `.cache/linux-source-NAME/` (replacing it).
fn extract(deb: &Path, line: &Line) -> Res {
    let (pkg, cache) = (&line.package, cache_dir(line));
    let tmp = root()
        .join(".cache")
        .join(format!(".{pkg}.tmp-{}", std::process::id()));
    let _ = fs::remove_dir_all(&tmp);
    mkdir(&tmp)?;
    let (n, deb_rel) = (line.files.len(), rel(deb));
    say!(TAG, "extracting {n} files from {deb_rel} (~15 s) ...");
    // The .deb holds /usr/src/<pkg>.tar.xz, whose top directory is <pkg>/.
    let script = r#"dpkg-deb --fsys-tarfile "$0" | tar -xO "$1" | tar -xJ -C "$2" "${@:3}""#;
    let mut cmd = Command::new("bash");
    cmd.args(["-o", "pipefail", "-c", script])
        .arg(deb)
        .arg(format!("./usr/src/{pkg}.tar.xz"))
        .arg(&tmp)
        .args(line.files.iter().map(|(_, p)| format!("{pkg}/{p}")));
    let ok = crate::util::run(&mut cmd)?.success();
    let tree = tmp.join(pkg);
    if !ok || !line.files.iter().all(|(_, p)| tree.join(p).is_file()) {
        let _ = fs::remove_dir_all(&tmp);
        return Err(setup_err(format!(
            "extracting from {deb_rel} failed (are dpkg-deb, tar and xz-utils installed?); \
             delete it and run `cargo xtask kernel --line {}` again",
            line.name
        )));
    }
    let _ = fs::remove_dir_all(&cache);
    fs::rename(&tree, &cache).ctx(format_args!("cannot move into {}", cache.display()))?;
    let _ = fs::remove_dir_all(&tmp);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repo_lock_pins_both_lines_with_every_file() {
        let lock = read_lock().expect("kernel.lock at the repo root parses");
        let names: Vec<&str> = lock.lines.iter().map(|l| l.name.as_str()).collect();
        assert_eq!(names, ["6.12", "7.3"]);
        for l in &lock.lines {
            assert_eq!(l.package, format!("linux-source-{}", l.name));
            for f in FILES {
                assert!(l.sha256(f).is_some(), "[line {}] pins {f}", l.name);
            }
        }
        assert!(built_tree().unwrap().ends_with(".cache/linux-source-6.12"));
        // Without kernel.lock, --update-lock pins the same lines and files.
        let d = default_lock();
        assert_eq!(d.lines.len(), 2);
        for (a, b) in d.lines.iter().zip(&lock.lines) {
            assert_eq!(
                (&a.name, &a.package, &a.suite),
                (&b.name, &b.package, &b.suite)
            );
        }
    }

    #[test]
    fn one_line_sources() {
        let s = parse_list(
            "# comment\ndeb http://m.example/debian bookworm main contrib\n\
             deb-src http://m.example/debian bookworm main\n\
             deb [arch=amd64 signed-by=/k.gpg] https://m.example/debian-security/ bookworm-security main # x\n",
        );
        let got: Vec<_> = s
            .iter()
            .map(|s| (&s.uri[..], &s.suites[..], s.signed_by.as_deref()))
            .collect();
        let want: [(&str, &[String], _); 2] = [
            ("http://m.example/debian", &["bookworm".into()], None),
            (
                "https://m.example/debian-security/",
                &["bookworm-security".into()],
                Some("/k.gpg"),
            ),
        ];
        assert_eq!(got, want);
        assert_eq!(mirror_for("trixie-backports", &s), Some(&s[0]));
        assert_eq!(mirror_for("trixie-security", &s), Some(&s[1]));
        assert!(mirror_for("trixie", &s[1..]).is_none());
    }

    #[test]
    fn deb822_sources() {
        let s = parse_deb822(
            "Types: deb deb-src\nURIs: http://m.example/debian\nSuites: bookworm bookworm-updates\n\
             Components: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n\n\
             # disabled\nTypes: deb\nURIs: http://other.example/x\nSuites: nodistro\nEnabled: no\n\n\
             Types: deb\nURIs: http://a.example/debian http://b.example/debian\nSuites: sid\n\
             Signed-By:\n -----BEGIN PGP PUBLIC KEY BLOCK-----\n .\n abc\n -----END PGP PUBLIC KEY BLOCK-----\n",
        );
        let uris: Vec<&str> = s.iter().map(|s| s.uri.as_str()).collect();
        assert_eq!(
            uris,
            [
                "http://m.example/debian",
                "http://a.example/debian",
                "http://b.example/debian"
            ]
        );
        assert_eq!(s[0].suites, ["bookworm", "bookworm-updates"]);
        assert_eq!(s[0].signed_by.as_deref(), Some(DEBIAN_KEYRING));
        let key = "-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nabc\n-----END PGP PUBLIC KEY BLOCK-----";
        assert_eq!(s[2].signed_by.as_deref(), Some(key));
        assert_eq!(mirror_for("trixie-backports", &s), Some(&s[0]));
    }
}
