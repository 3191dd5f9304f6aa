// SPDX-License-Identifier: GPL-2.0-only
//! `cargo xtask corpus`: regenerate the committed seed corpus from the readable
//! scenarios.
//!
//! Source of truth: `fuzz/scenarios/<target>/*.txt` (text op streams). Each is
//! encoded with `kvm-pgtable-diff encode` (literal modes and canonical tags
//! only, so it decodes back to the same stream) and stored as
//! `fuzz/corpus/<target>/<sha1 of the bytes>`, the name libFuzzer itself would
//! give it. Files in `fuzz/corpus/<target>/` that no scenario produces are
//! removed. `--check` changes nothing and exits 1 when the corpus is stale.
//!
//! xtask must not depend on the root crate, so the encoder is the CLI binary,
//! built with `cargo build --release -p kvm-pgtable-diff`.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use clap::Args as ClapArgs;

use crate::fuzz::{all_targets, fuzz_dir};
use crate::util::{EXIT_FINDING, EXIT_OK, Res, capture, rel, root, run_ok, setup_err, table};
use crate::{say, setup};

#[derive(ClapArgs, Debug)]
#[command(
    about = "Regenerate fuzz/corpus/<target>/ from the readable scenarios in fuzz/scenarios/<target>/",
    after_help = "Each fuzz/scenarios/<target>/*.txt is encoded with `kvm-pgtable-diff encode` and \
written as fuzz/corpus/<target>/<sha1 of its bytes>; corpus files no scenario produces are removed.\n\
With --check nothing is written: exit 1 if the committed corpus is out of date.\n\
Exit codes: 0 up to date / regenerated, 1 out of date (--check), 2 usage or setup error \
(e.g. a scenario that does not parse)."
)]
pub struct Args {
    /// Only check that the committed corpus matches the scenarios; change nothing.
    #[arg(long)]
    pub check: bool,
}

/// Directory of the readable scenarios.
pub fn scenarios_dir() -> PathBuf {
    fuzz_dir().join("scenarios")
}

/// Directory of the committed corpus.
pub fn corpus_dir() -> PathBuf {
    fuzz_dir().join("corpus")
}

/// What one target's corpus needs.
#[derive(Debug, Default)]
struct Plan {
    scenarios: usize,
    /// Files to create or rewrite: name -> bytes.
    write: BTreeMap<String, Vec<u8>>,
    /// Stale files to remove.
    remove: Vec<String>,
    unchanged: usize,
}

fn sorted_files(dir: &Path, ext: Option<&str>) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .filter(|p| ext.is_none_or(|x| p.extension().is_some_and(|e| e == x)))
        .collect();
    v.sort();
    v
}

/// Builds the CLI (release) and returns its path.
fn build_cli() -> Res<PathBuf> {
    say!(
        "corpus",
        "building the encoder: cargo build --release -p kvm-pgtable-diff"
    );
    run_ok(Command::new("cargo").current_dir(root()).args([
        "build",
        "--quiet",
        "--release",
        "-p",
        "kvm-pgtable-diff",
    ]))?;
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"));
    let bin = target_dir.join("release").join("kvm-pgtable-diff");
    if !bin.is_file() {
        return Err(setup_err(format!(
            "{} was not built; run: cargo build --release -p kvm-pgtable-diff",
            bin.display()
        )));
    }
    Ok(bin)
}

/// Encodes one scenario with the CLI.
fn encode(bin: &Path, scenario: &Path, tmp: &Path) -> Res<Vec<u8>> {
    let (ok, _out, err) = capture(
        Command::new(bin)
            .arg("encode")
            .arg(scenario)
            .arg("-o")
            .arg(tmp),
    );
    if !ok {
        let msg = err
            .lines()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("encoder failed");
        return Err(setup_err(format!(
            "{}: {msg} (fix the scenario, then rerun cargo xtask corpus)",
            rel(scenario)
        )));
    }
    fs::read(tmp).map_err(|e| setup_err(format!("cannot read {}: {e}", tmp.display())))
}

fn plan_target(bin: &Path, target: &str, tmp: &Path) -> Res<Plan> {
    let sdir = scenarios_dir().join(target);
    let cdir = corpus_dir().join(target);
    let mut plan = Plan::default();
    let mut want: BTreeMap<String, (Vec<u8>, PathBuf)> = BTreeMap::new();
    for s in sorted_files(&sdir, Some("txt")) {
        let bytes = encode(bin, &s, tmp)?;
        let name = sha1_hex(&bytes);
        if let Some((_, other)) = want.get(&name) {
            return Err(setup_err(format!(
                "{} and {} encode to the same input; delete one of them",
                rel(other),
                rel(&s)
            )));
        }
        plan.scenarios += 1;
        want.insert(name, (bytes, s));
    }
    for f in sorted_files(&cdir, None) {
        let name = f
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        if !want.contains_key(&name) {
            plan.remove.push(name);
        }
    }
    for (name, (bytes, _)) in want {
        match fs::read(cdir.join(&name)) {
            Ok(have) if have == bytes => plan.unchanged += 1,
            _ => {
                plan.write.insert(name, bytes);
            }
        }
    }
    Ok(plan)
}

fn apply(target: &str, plan: &Plan) -> Res {
    let cdir = corpus_dir().join(target);
    fs::create_dir_all(&cdir)
        .map_err(|e| setup_err(format!("cannot create {}: {e}", rel(&cdir))))?;
    for (name, bytes) in &plan.write {
        let p = cdir.join(name);
        fs::write(&p, bytes).map_err(|e| setup_err(format!("cannot write {}: {e}", rel(&p))))?;
    }
    for name in &plan.remove {
        let p = cdir.join(name);
        fs::remove_file(&p).map_err(|e| setup_err(format!("cannot remove {}: {e}", rel(&p))))?;
    }
    Ok(())
}

/// Checks that every scenario directory is a known target.
fn check_dirs(targets: &[String]) -> Res {
    for d in fs::read_dir(scenarios_dir())
        .into_iter()
        .flatten()
        .flatten()
    {
        let name = d.file_name().to_string_lossy().into_owned();
        if d.path().is_dir() && !targets.contains(&name) {
            return Err(setup_err(format!(
                "fuzz/scenarios/{name}/ is not a fuzz target; valid targets: {}",
                targets.join(", ")
            )));
        }
    }
    Ok(())
}

pub fn run(args: Args) -> Res<u8> {
    let targets = all_targets();
    if targets.is_empty() {
        return Err(setup_err("no fuzz targets in fuzz/fuzz_targets/"));
    }
    if !scenarios_dir().is_dir() {
        return Err(setup_err(format!("{} is missing", rel(&scenarios_dir()))));
    }
    check_dirs(&targets)?;
    setup::apt_packages()?;
    setup::kernel_source()?;
    let bin = build_cli()?;
    let tmp_dir = root().join("target").join("tmp");
    fs::create_dir_all(&tmp_dir)
        .map_err(|e| setup_err(format!("cannot create {}: {e}", tmp_dir.display())))?;
    let tmp = tmp_dir.join(format!("corpus-encode-{}", std::process::id()));
    let mut rows = Vec::new();
    let mut stale = 0;
    let (mut total_s, mut total_w, mut total_r) = (0, 0, 0);
    for t in &targets {
        say!("corpus", "{t}: encoding fuzz/scenarios/{t}/*.txt");
        let plan = plan_target(&bin, t, &tmp);
        let _ = fs::remove_file(&tmp);
        let plan = plan?;
        if plan.scenarios == 0 {
            crate::warn!("corpus", "{t}: no scenarios in fuzz/scenarios/{t}/");
        }
        stale += plan.write.len() + plan.remove.len();
        if !args.check {
            apply(t, &plan)?;
        }
        total_s += plan.scenarios;
        total_w += plan.write.len();
        total_r += plan.remove.len();
        rows.push(vec![
            t.clone(),
            plan.scenarios.to_string(),
            plan.unchanged.to_string(),
            plan.write.len().to_string(),
            plan.remove.len().to_string(),
        ]);
    }
    rows.push(vec![
        "total".into(),
        total_s.to_string(),
        (total_s - total_w).to_string(),
        total_w.to_string(),
        total_r.to_string(),
    ]);
    let (w, r) = if args.check {
        ("to write", "to remove")
    } else {
        ("written", "removed")
    };
    println!();
    print!(
        "{}",
        table(&["target", "scenarios", "unchanged", w, r], &rows)
    );
    if args.check && stale > 0 {
        println!("corpus: fuzz/corpus/ is out of date ({stale} file(s)); run: cargo xtask corpus");
        return Ok(EXIT_FINDING);
    }
    println!(
        "corpus: {} up to date ({total_s} scenarios)",
        if args.check {
            "fuzz/corpus/ is"
        } else {
            "fuzz/corpus/ now"
        }
    );
    Ok(EXIT_OK)
}

/// SHA-1 of `data` as 40 lower-case hex digits: the name libFuzzer gives
/// corpus files (the same naming `tests/corpus.rs` checks).
pub fn sha1_hex(data: &[u8]) -> String {
    use sha1::{Digest, Sha1};
    Sha1::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha1_known_answers() {
        // FIPS 180-2 appendix A test vectors.
        assert_eq!(sha1_hex(b""), "da39a3ee5e6b4b0d3255bfef95601890afd80709");
        assert_eq!(sha1_hex(b"abc"), "a9993e364706816aba3e25717850c26c9cd0d89d");
        assert_eq!(
            sha1_hex(b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
            "84983e441c3bd26ebaae4aa1f95129e5e54670f1"
        );
        // One million 'a': many blocks.
        assert_eq!(
            sha1_hex(&vec![b'a'; 1_000_000]),
            "34aa973cd4c4daa4f61eeb2bdbad27316534016f"
        );
    }
}
