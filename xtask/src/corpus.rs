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

use crate::fuzz::{TARGETS, fuzz_dir};
use crate::util::{
    Ctx, EXIT_FINDING, EXIT_OK, Res, capture, files, mkdir, rel, root, run_ok, setup_err, sha1_hex,
    table,
};
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

/// Builds the CLI (release) and returns its path.
fn build_cli() -> Res<PathBuf> {
    say!(
        "corpus",
        "building the encoder: cargo build --release -p kvm-pgtable-diff"
    );
    let build = ["build", "--quiet", "--release", "-p", "kvm-pgtable-diff"];
    run_ok(Command::new("cargo").current_dir(root()).args(build))?;
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"));
    let bin = target_dir.join("release").join("kvm-pgtable-diff");
    if !bin.is_file() {
        let b = bin.display();
        let fix = "run: cargo build --release -p kvm-pgtable-diff";
        return Err(setup_err(format!("{b} was not built; {fix}")));
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
        let s = rel(scenario);
        return Err(setup_err(format!(
            "{s}: {msg} (fix the scenario, then rerun cargo xtask corpus)"
        )));
    }
    fs::read(tmp).ctx(format_args!("cannot read {}", tmp.display()))
}

fn plan_target(bin: &Path, target: &str, tmp: &Path) -> Res<Plan> {
    let sdir = scenarios_dir().join(target);
    let cdir = corpus_dir().join(target);
    let mut plan = Plan::default();
    let mut want: BTreeMap<String, (Vec<u8>, PathBuf)> = BTreeMap::new();
    for s in files(&sdir, false, Some("txt")) {
        let bytes = encode(bin, &s, tmp)?;
        let name = sha1_hex(&bytes);
        if let Some((_, other)) = want.get(&name) {
            let (a, b) = (rel(other), rel(&s));
            return Err(setup_err(format!(
                "{a} and {b} encode to the same input; delete one of them"
            )));
        }
        plan.scenarios += 1;
        want.insert(name, (bytes, s));
    }
    for f in files(&cdir, false, None) {
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
    mkdir(&cdir)?;
    for (name, bytes) in &plan.write {
        let p = cdir.join(name);
        fs::write(&p, bytes).ctx(format_args!("cannot write {}", rel(&p)))?;
    }
    for name in &plan.remove {
        let p = cdir.join(name);
        fs::remove_file(&p).ctx(format_args!("cannot remove {}", rel(&p)))?;
    }
    Ok(())
}

/// Checks that every scenario directory is a known target.
fn check_dirs() -> Res {
    for d in fs::read_dir(scenarios_dir())
        .into_iter()
        .flatten()
        .flatten()
    {
        let name = d.file_name().to_string_lossy().into_owned();
        if d.path().is_dir() && !TARGETS.contains(&name.as_str()) {
            let all = TARGETS.join(", ");
            let msg = format!("fuzz/scenarios/{name}/ is not a fuzz target; valid targets: {all}");
            return Err(setup_err(msg));
        }
    }
    Ok(())
}

pub fn run(args: Args) -> Res<u8> {
    if !scenarios_dir().is_dir() {
        return Err(setup_err(format!("{} is missing", rel(&scenarios_dir()))));
    }
    check_dirs()?;
    setup::apt_packages()?;
    setup::kernel_source()?;
    let bin = build_cli()?;
    let tmp_dir = root().join("target").join("tmp");
    mkdir(&tmp_dir)?;
    let tmp = tmp_dir.join(format!("corpus-encode-{}", std::process::id()));
    let mut rows = Vec::new();
    let mut stale = 0;
    let (mut total_s, mut total_w, mut total_r) = (0, 0, 0);
    for t in TARGETS {
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
            t.to_string(),
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
    let now = if args.check { "is" } else { "now" };
    println!("corpus: fuzz/corpus/ {now} up to date ({total_s} scenarios)");
    Ok(EXIT_OK)
}
