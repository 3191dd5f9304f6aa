// SPDX-License-Identifier: GPL-2.0-only
//! `cargo xtask oss-fuzz`: the OSS-Fuzz / ClusterFuzzLite integration, emulated and checked
//! without Docker; `cargo xtask oss-fuzz-project`: the `projects/kvm-pgtable-diff/` files for
//! google/oss-fuzz.
//!
//! What is emulated is copied from google/oss-fuzz (infra/, read at commit 955c6866c, 2026-08)
//! and named where it is used:
//! - the image: `$SRC` holds the repository as the ClusterFuzzLite Dockerfile's
//!   `COPY . $SRC/kvm-pgtable-diff` sees it (`.dockerignore` applied: no `target/`, no
//!   `.cache/`), and `$SRC/linux-<line>` made by `oss-fuzz/fetch-kernel.sh` itself, run as the
//!   Dockerfiles run it, from a local `file://` mirror (kernel.org is out of reach here) whose
//!   tarballs hold the pinned files; its result is kept while kernel.lock and the script are
//!   unchanged, as Docker's layer cache keeps it;
//! - `compile`: base-clang's CFLAGS, then the sanitizer's and coverage flags, exactly as
//!   `compile` appends them; its RUSTFLAGS; base-builder-rust's pinned nightly, its linker
//!   (clang) and, for coverage builds, its `cargo` wrapper;
//! - base-runner's `check_build` (bad_build_check) on every target of the address and
//!   undefined builds: edges, ELF architecture, sanitizer calls counted in `objdump -dC`,
//!   startup with `$FUZZER_ARGS` and the `.options`; then `--runs` inputs (seeds first) the way
//!   `run_fuzzer` starts a target; coverage builds replay the seeds into a profile that
//!   `llvm-cov-22` maps onto both kernel lines' pgtable.c;
//! - `infra/presubmit.py`'s rules (licence header, project.yaml, apt-get update, no seed zip,
//!   no `-lFuzzingEngine`) and `infra/ci/check_base_os.py` on the generated `projects/` copy.
//!
//! Not seen here: the image's own clang (trunk) and libclang (Ubuntu 20.04's), libc++ (the
//! coverage link's `-lc++` and a libFuzzer built against it), and kernel.org's tarballs.
//!
//! Everything lives under `target/oss-fuzz/`, kept for inspection.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use crate::fuzz::{TARGETS, fuzz_dir};
use crate::libfuzzer::Progress;
use crate::lock::Lock;
use crate::util::{
    Ctx, EXIT_FINDING, EXIT_OK, EXIT_SETUP, Res, capture, cmd_line, files, fmt_count, fmt_dur, hex,
    mkdir, on_lines, rel, reset_dir, root, setup_err, sha1_hex, table, value_name,
};
use crate::{say, setup, warn};

/// Directory name of the repository under `$SRC` (both Dockerfiles).
const PROJECT: &str = "kvm-pgtable-diff";

/// base-clang's `ENV CFLAGS` (infra/base-images/base-clang/Dockerfile), the start of every
/// build's CFLAGS.
const BASE_CLANG_CFLAGS: &str = "-O1 -fno-omit-frame-pointer -gline-tables-only \
-Wno-error=incompatible-function-pointer-types -Wno-error=int-conversion \
-Wno-error=deprecated-declarations -Wno-error=implicit-function-declaration \
-Wno-error=implicit-int -Wno-error=unknown-warning-option -Wno-error=vla-cxx-extension \
-DFUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION";
/// base-clang's `CXXFLAGS_EXTRA`.
const CXXFLAGS_EXTRA: &str = "-stdlib=libc++";
/// base-builder's `SANITIZER_FLAGS_address`.
const SANITIZER_FLAGS_ADDRESS: &str = "-fsanitize=address -fsanitize-address-use-after-scope";
/// base-builder's `SANITIZER_FLAGS_undefined`.
const SANITIZER_FLAGS_UNDEFINED: &str = "-fsanitize=array-bounds,bool,builtin,enum,function,\
integer-divide-by-zero,null,object-size,return,returns-nonnull-attribute,shift,\
signed-integer-overflow,unsigned-integer-overflow,unreachable,vla-bound,vptr \
-fno-sanitize-recover=array-bounds,bool,builtin,enum,function,integer-divide-by-zero,null,\
object-size,return,returns-nonnull-attribute,shift,signed-integer-overflow,unreachable,\
vla-bound,vptr";
/// base-builder's `COVERAGE_FLAGS` (libFuzzer builds).
const COVERAGE_FLAGS: &str = "-fsanitize=fuzzer-no-link";
/// base-builder's `COVERAGE_FLAGS_coverage`.
const COVERAGE_FLAGS_COVERAGE: &str = "-fprofile-instr-generate -fcoverage-mapping -pthread \
-Wl,--no-as-needed -Wl,-ldl -Wl,-lm -Wno-unused-command-line-argument";
/// base-builder-rust's `RUSTUP_TOOLCHAIN` (the default, "legacy" image; rustc 1.91, LLVM 21).
pub const IMAGE_TOOLCHAIN: &str = "nightly-2025-09-05";
/// base-runner's `ASAN_OPTIONS`.
const ASAN_OPTIONS: &str = "alloc_dealloc_mismatch=0:allocator_may_return_null=1:\
allocator_release_to_os_interval_ms=500:check_malloc_usable_size=0:detect_container_overflow=1:\
detect_odr_violation=0:detect_leaks=1:detect_stack_use_after_return=1:fast_unwind_on_fatal=0:\
handle_abort=1:handle_segv=1:handle_sigill=1:max_uar_stack_size_log=16:print_scariness=1:\
quarantine_size_mb=10:strict_memcmp=1:strip_path_prefix=/workspace/:symbolize=1:\
use_sigaltstack=1:dedup_token_length=3";
/// base-runner's `UBSAN_OPTIONS` (unsigned overflow is a coverage signal there, not a bug).
const UBSAN_OPTIONS: &str = "print_stacktrace=1:print_summary=1:silence_unsigned_overflow=1:\
strip_path_prefix=/workspace/:symbolize=1:dedup_token_length=3";
/// base-runner's `FUZZER_ARGS`: how check_build and run_fuzzer start every target.
const FUZZER_ARGS: [&str; 2] = ["-rss_limit_mb=2560", "-timeout=25"];
/// The libFuzzer archive standing in for the image's `$LIB_FUZZING_ENGINE_DEPRECATED`.
const LIBFUZZER_A: &str = "/usr/lib/llvm-22/lib/clang/22/lib/linux/libclang_rt.fuzzer-x86_64.a";
/// The marker of a placeholder in oss-fuzz/project.yaml.
const PLACEHOLDER: &str = "example.invalid";

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum OssSanitizer {
    /// ASan build, as OSS-Fuzz and ClusterFuzzLite fuzz it.
    Address,
    /// UBSan build: UBSan on the C side, clang's runtime linked in.
    Undefined,
    /// Source-coverage build (OSS-Fuzz's coverage reports, ClusterFuzzLite's `mode: coverage`).
    Coverage,
    /// address, undefined and coverage, one after the other.
    All,
}

#[derive(clap::Args, Debug)]
pub struct Args {
    /// SANITIZER to emulate (`all`: every build OSS-Fuzz makes). The static checks always run.
    #[arg(long, value_enum, default_value_t = OssSanitizer::Address)]
    pub sanitizer: OssSanitizer,
    /// Inputs each target runs after check_build (libFuzzer -runs; the seeds come first).
    #[arg(long, value_name = "N", default_value_t = 1000)]
    pub runs: u64,
}

#[derive(clap::Args, Debug)]
pub struct ProjectArgs {
    /// Directory to write, e.g. ~/oss-fuzz/projects/kvm-pgtable-diff.
    #[arg(value_name = "DIR")]
    pub dir: PathBuf,
    /// Write even while oss-fuzz/project.yaml has placeholders (to inspect; not submittable).
    #[arg(long)]
    pub allow_placeholders: bool,
}

fn base_dir() -> PathBuf {
    root().join("target").join("oss-fuzz")
}

// ---------------------------------------------------------------------------------------------
// Check results

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Status {
    Ok,
    /// Passes, but something is left to do before submitting (placeholders).
    Todo,
    Failed,
}

struct Row {
    name: String,
    status: Status,
    detail: String,
    time: Duration,
}

#[derive(Default)]
struct Report {
    rows: Vec<Row>,
    /// A build or setup step failed (exit code 2 rather than 1).
    build_failed: bool,
}

impl Report {
    /// Runs one check, prints its line and records it.
    fn check(&mut self, name: &str, f: impl FnOnce() -> Result<(Status, String), String>) -> bool {
        let t = Instant::now();
        let (status, detail) = f().unwrap_or_else(|e| (Status::Failed, e));
        let time = t.elapsed();
        say!("oss-fuzz", "{}: {name}: {detail}", status_word(status));
        self.rows.push(Row {
            name: name.to_string(),
            status,
            detail,
            time,
        });
        status != Status::Failed
    }
}

fn status_word(s: Status) -> &'static str {
    match s {
        Status::Ok => "ok",
        Status::Todo => "todo",
        Status::Failed => "FAILED",
    }
}

fn ok(detail: impl Into<String>) -> Result<(Status, String), String> {
    Ok((Status::Ok, detail.into()))
}

// ---------------------------------------------------------------------------------------------
// project.yaml: the subset of YAML it uses (top-level `key: scalar`, `key: []`, and
// `key:` followed by `  - item` lines).

#[derive(Debug, Clone, PartialEq, Eq)]
enum YamlValue {
    Scalar(String),
    List(Vec<String>),
}

fn unquote(v: &str) -> String {
    let v = v.trim();
    let q = |c: char| v.len() >= 2 && v.starts_with(c) && v.ends_with(c);
    if q('"') || q('\'') {
        v[1..v.len() - 1].to_string()
    } else {
        v.to_string()
    }
}

/// Strips a ` # comment` from a value (not inside quotes; project.yaml's values have no `#`).
fn strip_comment(v: &str) -> &str {
    match v.find(" #") {
        Some(i) if v[..i].matches('"').count().is_multiple_of(2) => &v[..i],
        _ => v,
    }
}

fn parse_yaml(text: &str) -> Result<Vec<(String, YamlValue)>, String> {
    let mut out: Vec<(String, YamlValue)> = vec![];
    for (i, raw) in text.lines().enumerate() {
        let err = |m: &str| format!("line {}: {m}: `{raw}`", i + 1);
        let t = raw.trim_end();
        if t.trim().is_empty() || t.trim_start().starts_with('#') {
            continue;
        }
        if let Some(item) = t.trim_start().strip_prefix("- ") {
            if !t.starts_with(' ') {
                return Err(err("list item outside a key"));
            }
            match out.last_mut() {
                Some((_, YamlValue::List(l))) => l.push(unquote(strip_comment(item))),
                _ => return Err(err("list item after a scalar")),
            }
            continue;
        }
        if t.starts_with(' ') {
            return Err(err("nested mappings are not used in project.yaml"));
        }
        let (k, v) = t
            .split_once(':')
            .ok_or_else(|| err("expected key: value"))?;
        let v = strip_comment(v).trim();
        let value = match v {
            "" => YamlValue::List(vec![]),
            "[]" => YamlValue::List(vec![]),
            _ if v.starts_with('[') || v.starts_with('{') => {
                return Err(err("flow collections other than [] are not used"));
            }
            _ => YamlValue::Scalar(unquote(v)),
        };
        if out.iter().any(|(key, _)| key == k) {
            return Err(err("duplicate key"));
        }
        out.push((k.trim().to_string(), value));
    }
    Ok(out)
}

fn yaml_get<'a>(y: &'a [(String, YamlValue)], key: &str) -> Option<&'a YamlValue> {
    y.iter().find(|(k, _)| k == key).map(|(_, v)| v)
}

fn yaml_scalar(y: &[(String, YamlValue)], key: &str) -> Option<String> {
    match yaml_get(y, key) {
        Some(YamlValue::Scalar(s)) => Some(s.clone()),
        _ => None,
    }
}

fn yaml_list(y: &[(String, YamlValue)], key: &str) -> Vec<String> {
    match yaml_get(y, key) {
        Some(YamlValue::List(l)) => l.clone(),
        Some(YamlValue::Scalar(s)) => vec![s.clone()],
        None => vec![],
    }
}

// ---------------------------------------------------------------------------------------------
// The projects/kvm-pgtable-diff/ copy for google/oss-fuzz

/// The header infra/presubmit.py requires (it looks for the licence URL) on the copies that go
/// into google/oss-fuzz; the originals in this repository stay GPL-2.0-only.
const APACHE_HEADER: &str = "\
# Copyright the kvm-pgtable-diff authors
#
# Licensed under the Apache License, Version 2.0 (the \"License\");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#
#      http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an \"AS IS\" BASIS,
# WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
# See the License for the specific language governing permissions and
# limitations under the License.
#
################################################################################
";

/// The generated files: (name, content).
struct ProjectFiles {
    files: Vec<(&'static str, String)>,
    /// What is still a placeholder (empty: ready to submit).
    placeholders: Vec<String>,
}

/// Drops the leading comment block (the GPL header and notes addressed to this repository).
fn without_leading_comments(text: &str) -> String {
    let mut lines = text.lines().peekable();
    while lines
        .peek()
        .is_some_and(|l| l.starts_with('#') || l.trim().is_empty())
    {
        lines.next();
    }
    lines.map(|l| format!("{l}\n")).collect()
}

/// Makes projects/kvm-pgtable-diff/{Dockerfile,build.sh,project.yaml} from oss-fuzz/.
fn project_files(repo: &Path) -> Result<ProjectFiles, String> {
    let read =
        |p: &str| fs::read_to_string(repo.join(p)).map_err(|e| format!("cannot read {p}: {e}"));
    let yaml_text = read("oss-fuzz/project.yaml")?;
    let yaml = parse_yaml(&yaml_text).map_err(|e| format!("oss-fuzz/project.yaml: {e}"))?;
    let main_repo = yaml_scalar(&yaml, "main_repo")
        .ok_or("oss-fuzz/project.yaml has no main_repo (the upstream git URL)")?;
    let mut placeholders = vec![];
    for key in ["main_repo", "primary_contact"] {
        match yaml_scalar(&yaml, key) {
            Some(v) if v.contains(PLACEHOLDER) => placeholders.push(format!("{key} ({v})")),
            Some(_) => {}
            None => placeholders.push(format!("{key} (missing)")),
        }
    }
    let generated = "# Generated by `cargo xtask oss-fuzz-project` from kvm-pgtable-diff's";
    let dockerfile_in = read("oss-fuzz/Dockerfile")?;
    if !dockerfile_in.contains("@MAIN_REPO@") {
        return Err("oss-fuzz/Dockerfile has no @MAIN_REPO@ (the clone URL) to fill in".into());
    }
    let dockerfile = format!(
        "{APACHE_HEADER}{generated}\n# oss-fuzz/Dockerfile: edit that file, not this one.\n\n{}",
        without_leading_comments(&dockerfile_in).replace("@MAIN_REPO@", &main_repo)
    );
    let build_sh = format!(
        "#!/bin/bash -eu\n{APACHE_HEADER}{generated}\n# oss-fuzz/build.sh, which this runs.\n\
         exec bash -euo pipefail \"$SRC/{PROJECT}/oss-fuzz/build.sh\" \"$@\"\n"
    );
    let homepage = main_repo.trim_end_matches(".git");
    let mut project_yaml = format!(
        "{generated}\n# oss-fuzz/project.yaml: edit that file, not this one.\nhomepage: \"{homepage}\"\n"
    );
    for l in yaml_text.lines() {
        if !l.trim_start().starts_with('#') && !l.trim().is_empty() {
            project_yaml.push_str(strip_comment(l).trim_end());
            project_yaml.push('\n');
        }
    }
    Ok(ProjectFiles {
        files: vec![
            ("Dockerfile", dockerfile),
            ("build.sh", build_sh),
            ("project.yaml", project_yaml),
        ],
        placeholders,
    })
}

fn write_project(dir: &Path, p: &ProjectFiles) -> Res {
    reset_dir(dir)?;
    for (name, text) in &p.files {
        let path = dir.join(name);
        fs::write(&path, text).ctx(format_args!("cannot write {}", path.display()))?;
        if name.ends_with(".sh") {
            fs::set_permissions(&path, fs::Permissions::from_mode(0o755))
                .ctx(format_args!("cannot chmod {}", path.display()))?;
        }
    }
    Ok(())
}

/// `cargo xtask oss-fuzz-project DIR`.
pub fn project(args: ProjectArgs) -> Res<u8> {
    let p = project_files(&root()).map_err(setup_err)?;
    if !p.placeholders.is_empty() && !args.allow_placeholders {
        return Err(setup_err(format!(
            "oss-fuzz/project.yaml still has placeholders: {}. Set main_repo to this \
             repository's git URL (the Dockerfile's clone URL and homepage derive from it) and \
             primary_contact to the address OSS-Fuzz reports to, then run this again",
            p.placeholders.join(", ")
        )));
    }
    let problems = presubmit(&args.dir, &p);
    write_project(&args.dir, &p)?;
    if !problems.is_empty() {
        return Err(setup_err(format!(
            "wrote {} but it breaks OSS-Fuzz's presubmit: {}",
            args.dir.display(),
            problems.join("; ")
        )));
    }
    let names: Vec<&str> = p.files.iter().map(|(n, _)| *n).collect();
    say!(
        "oss-fuzz",
        "wrote {} in {}",
        names.join(", "),
        args.dir.display()
    );
    if p.placeholders.is_empty() {
        say!(
            "oss-fuzz",
            "ready: commit that directory to google/oss-fuzz as projects/{PROJECT}/"
        );
    } else {
        say!(
            "oss-fuzz",
            "NOT ready to submit: placeholders {}",
            p.placeholders.join(", ")
        );
    }
    Ok(EXIT_OK)
}

// ---------------------------------------------------------------------------------------------
// infra/presubmit.py and infra/ci/check_base_os.py

/// presubmit.py: `_CHECK_LICENSE_FILENAMES`, `_CHECK_LICENSE_EXTENSIONS`, `_LICENSE_STRING`.
const LICENSE_FILENAMES: [&str; 1] = ["Dockerfile"];
const LICENSE_EXTENSIONS: [&str; 17] = [
    ".bash",
    ".c",
    ".cc",
    ".cpp",
    ".css",
    ".Dockerfile",
    ".go",
    ".h",
    ".htm",
    ".html",
    ".java",
    ".js",
    ".proto",
    ".py",
    ".rs",
    ".sh",
    ".ts",
];
const LICENSE_STRING: &str = "http://www.apache.org/licenses/LICENSE-2.0";
/// presubmit.py `ProjectYamlChecker.VALID_SECTION_NAMES`.
const VALID_SECTIONS: [&str; 23] = [
    "architectures",
    "auto_ccs",
    "blackbox",
    "builds_per_day",
    "coverage_extra_args",
    "disabled",
    "disable_remediation",
    "disable_remediation_pre_review",
    "fuzzing_engines",
    "help_url",
    "homepage",
    "language",
    "labels",
    "main_repo",
    "primary_contact",
    "run_tests",
    "sanitizers",
    "selective_unpack",
    "vendor_ccs",
    "view_restrictions",
    "file_github_issue",
    "indexer",
    "base_os_version",
];
/// infra/constants.py.
const LANGUAGES: [&str; 9] = [
    "c",
    "c++",
    "go",
    "javascript",
    "jvm",
    "python",
    "rust",
    "swift",
    "ruby",
];
const SANITIZERS: [&str; 8] = [
    "address",
    "none",
    "memory",
    "undefined",
    "thread",
    "coverage",
    "introspector",
    "hwaddress",
];
const ARCHITECTURES: [&str; 3] = ["i386", "x86_64", "aarch64"];
const ENGINES: [&str; 6] = [
    "libfuzzer",
    "afl",
    "honggfuzz",
    "centipede",
    "none",
    "wycheproof",
];

/// presubmit.py's checks of a project directory (`check_license`, `check_project_yaml`,
/// `check_lib_fuzzing_engine`, `check_seed_corpus`, `check_apt_update`) on files `p` about to
/// be written to `dir`; returns the problems.
fn presubmit(dir: &Path, p: &ProjectFiles) -> Vec<String> {
    let mut problems = vec![];
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    for (file, text) in &p.files {
        let ext_checked = LICENSE_EXTENSIONS.iter().any(|e| file.ends_with(e));
        if (LICENSE_FILENAMES.contains(file) || ext_checked) && !text.contains(LICENSE_STRING) {
            problems.push(format!("missing license header in {file}"));
        }
        if file.ends_with(".zip") {
            problems.push(format!(
                "{file}: seed corpora do not go into google/oss-fuzz"
            ));
        }
        if *file == "build.sh"
            && text.lines().any(|l| {
                l.split('#')
                    .next()
                    .unwrap_or("")
                    .contains("-lFuzzingEngine")
            })
        {
            problems.push("build.sh uses the deprecated -lFuzzingEngine".into());
        }
        if *file == "Dockerfile"
            && (text.contains("RUN apt install") || text.contains("RUN apt-get install"))
        {
            problems.push("Dockerfile runs apt-get install without apt-get update first".into());
        }
        if *file == "project.yaml" {
            problems.extend(check_project_yaml(&name, text));
        }
    }
    problems
}

/// presubmit.py's `ProjectYamlChecker`.
fn check_project_yaml(project: &str, text: &str) -> Vec<String> {
    let y = match parse_yaml(text) {
        Ok(y) => y,
        Err(e) => return vec![format!("project.yaml: {e}")],
    };
    let mut problems = vec![];
    if yaml_scalar(&y, "disabled").is_some_and(|d| d == "true") {
        return problems;
    }
    let constants: [(&str, &[&str]); 3] = [
        ("sanitizers", &SANITIZERS),
        ("architectures", &ARCHITECTURES),
        ("fuzzing_engines", &ENGINES),
    ];
    for (section, allowed) in constants {
        for v in yaml_list(&y, section) {
            if !allowed.contains(&v.as_str()) {
                problems.push(format!(
                    "{v} (in {section} section) is not a valid constant"
                ));
            }
        }
    }
    if yaml_get(&y, "main_repo").is_none() {
        problems.push("main_repo section is missing".into());
    }
    for (k, _) in &y {
        if !VALID_SECTIONS.contains(&k.as_str()) {
            problems.push(format!("{k} is not a valid section name"));
        }
    }
    let mut emails: Vec<String> = yaml_scalar(&y, "primary_contact").into_iter().collect();
    emails.extend(yaml_list(&y, "auto_ccs"));
    for e in emails {
        if !e.contains('@') || !e.contains('.') {
            problems.push(format!("{e} is an invalid email address"));
        }
    }
    match yaml_scalar(&y, "language") {
        None => problems.push("missing \"language\" attribute".into()),
        Some(l) if !LANGUAGES.contains(&l.as_str()) => {
            problems.push(format!("language: {l} is not supported"));
        }
        Some(_) => {}
    }
    let valid_name = !project.is_empty()
        && project
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
    if !valid_name || project.contains("google") || project.contains("g00gle") {
        problems.push(format!("project name `{project}` is not allowed"));
    }
    problems
}

/// check_base_os.py: the first FROM line must carry the tag that project.yaml's
/// `base_os_version` (default "legacy") maps to. Returns that tag.
fn check_base_os(dockerfile: &str, project_yaml: &str) -> Result<String, String> {
    let y = parse_yaml(project_yaml).map_err(|e| format!("project.yaml: {e}"))?;
    let version = yaml_scalar(&y, "base_os_version").unwrap_or_else(|| "legacy".into());
    // SUPPORTED_VERSIONS and BASE_OS_TO_DOCKER_TAG.
    let expected = match version.as_str() {
        "legacy" => "latest",
        "ubuntu-24-04" => "ubuntu-24-04",
        v => return Err(format!("base_os_version \"{v}\" is not yet supported")),
    };
    let from = dockerfile
        .lines()
        .find(|l| l.trim().starts_with("FROM"))
        .ok_or("no FROM line")?;
    if !from.contains(':') {
        return Err(format!(
            "Malformed FROM line in Dockerfile (missing tag): {}",
            from.trim()
        ));
    }
    let tag = from.split(':').nth(1).unwrap_or("").trim();
    if tag != expected {
        return Err(format!(
            "FROM tag \"{tag}\", but base_os_version \"{version}\" expects \"{expected}\""
        ));
    }
    Ok(format!("{} (base_os_version {version})", from.trim()))
}

// ---------------------------------------------------------------------------------------------
// .dockerignore (the subset of Docker's syntax the file uses: `*`, `?`, `**`, no `!`)

struct DockerIgnore {
    patterns: Vec<Vec<String>>,
}

impl DockerIgnore {
    fn parse(text: &str) -> Result<DockerIgnore, String> {
        let mut patterns = vec![];
        for (i, raw) in text.lines().enumerate() {
            let l = raw.trim();
            if l.is_empty() || l.starts_with('#') {
                continue;
            }
            if l.starts_with('!') || l.contains(['[', '\\']) {
                return Err(format!(
                    ".dockerignore:{}: `{l}`: exceptions and character classes are not \
                     emulated; keep to *, ? and **",
                    i + 1
                ));
            }
            let comps: Vec<String> = l
                .trim_start_matches('/')
                .split('/')
                .filter(|c| !c.is_empty() && *c != ".")
                .map(String::from)
                .collect();
            if !comps.is_empty() {
                patterns.push(comps);
            }
        }
        Ok(DockerIgnore { patterns })
    }

    /// True when `rel` (a path relative to the context root) or a directory above it matches.
    fn excludes(&self, rel: &Path) -> bool {
        let comps: Vec<String> = rel
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect();
        (1..=comps.len()).any(|n| {
            self.patterns
                .iter()
                .any(|p| match_components(p, &comps[..n]))
        })
    }
}

fn match_components(pat: &[String], path: &[String]) -> bool {
    match pat.split_first() {
        None => path.is_empty(),
        Some((p, rest)) if p == "**" => {
            (0..=path.len()).any(|i| match_components(rest, &path[i..]))
        }
        Some((p, rest)) => {
            !path.is_empty()
                && glob(p.as_bytes(), path[0].as_bytes())
                && match_components(rest, &path[1..])
        }
    }
}

/// `*` and `?` within one path component.
fn glob(p: &[u8], s: &[u8]) -> bool {
    match p.split_first() {
        None => s.is_empty(),
        Some((b'*', rest)) => (0..=s.len()).any(|i| glob(rest, &s[i..])),
        Some((b'?', rest)) => !s.is_empty() && glob(rest, &s[1..]),
        Some((c, rest)) => s.first() == Some(c) && glob(rest, &s[1..]),
    }
}

/// The files (and symlinks) of the build context, relative to `root`.
fn context_files(root: &Path, ignore: &DockerIgnore) -> Result<Vec<PathBuf>, String> {
    let mut out = vec![];
    let mut stack = vec![PathBuf::new()];
    while let Some(dir) = stack.pop() {
        let rd = fs::read_dir(root.join(&dir)).map_err(|e| format!("{}: {e}", dir.display()))?;
        for e in rd {
            let e = e.map_err(|e| e.to_string())?;
            let rel = dir.join(e.file_name());
            if ignore.excludes(&rel) {
                continue;
            }
            let ft = e.file_type().map_err(|e| e.to_string())?;
            if ft.is_dir() {
                stack.push(rel);
            } else {
                out.push(rel);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Makes `dest` hold exactly `files` of `root` (as `COPY . dest` would), rewriting only what
/// differs so that cargo's fingerprints of unchanged files stay valid.
fn sync_tree(root: &Path, files: &[PathBuf], dest: &Path) -> Result<(), String> {
    let e = |p: &Path, err: std::io::Error| format!("{}: {err}", p.display());
    // An older version linked $SRC/kvm-pgtable-diff to the repository itself: unlink, never
    // descend into it.
    if fs::symlink_metadata(dest).is_ok_and(|m| !m.is_dir()) {
        fs::remove_file(dest).map_err(|err| e(dest, err))?;
    }
    let want: BTreeSet<&Path> = files.iter().map(PathBuf::as_path).collect();
    let mut dirs: BTreeSet<PathBuf> = BTreeSet::new();
    for f in files {
        let mut p = f.parent();
        while let Some(d) = p.filter(|d| !d.as_os_str().is_empty()) {
            dirs.insert(d.to_path_buf());
            p = d.parent();
        }
    }
    // Remove what the context does not have (build.sh's .cache from the previous build too).
    if dest.is_dir() {
        for entry in walkdir::WalkDir::new(dest)
            .min_depth(1)
            .contents_first(true)
        {
            let entry = entry.map_err(|err| err.to_string())?;
            let rel = entry.path().strip_prefix(dest).unwrap();
            let keep = if entry.file_type().is_dir() {
                dirs.contains(rel)
            } else {
                want.contains(rel)
            };
            if !keep {
                let r = if entry.file_type().is_dir() {
                    fs::remove_dir_all(entry.path())
                } else {
                    fs::remove_file(entry.path())
                };
                r.map_err(|err| e(entry.path(), err))?;
            }
        }
    }
    for f in files {
        let (from, to) = (root.join(f), dest.join(f));
        let meta = fs::symlink_metadata(&from).map_err(|err| e(&from, err))?;
        if let Some(parent) = to.parent() {
            fs::create_dir_all(parent).map_err(|err| e(parent, err))?;
        }
        let old = fs::symlink_metadata(&to).ok();
        if meta.file_type().is_symlink() {
            let target = fs::read_link(&from).map_err(|err| e(&from, err))?;
            if fs::read_link(&to).ok().as_ref() != Some(&target) {
                let _ = fs::remove_file(&to);
                std::os::unix::fs::symlink(&target, &to).map_err(|err| e(&to, err))?;
            }
            continue;
        }
        let same = old.is_some_and(|m| {
            m.is_file()
                && m.permissions().mode() == meta.permissions().mode()
                && fs::read(&to).ok() == fs::read(&from).ok()
        });
        if !same {
            if fs::symlink_metadata(&to).is_ok_and(|m| m.is_dir()) {
                fs::remove_dir_all(&to).map_err(|err| e(&to, err))?;
            }
            let _ = fs::remove_file(&to);
            fs::copy(&from, &to).map_err(|err| e(&to, err))?;
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Static checks

fn read_repo(p: &str) -> Result<String, String> {
    fs::read_to_string(root().join(p)).map_err(|e| format!("cannot read {p}: {e}"))
}

/// The sanitizers listed under `matrix: sanitizer:` in a workflow.
fn workflow_sanitizers(text: &str) -> Vec<String> {
    let mut out = vec![];
    let mut lines = text.lines();
    while let Some(l) = lines.next() {
        if l.trim() == "sanitizer:" {
            for item in lines.by_ref() {
                match item.trim().strip_prefix("- ") {
                    Some(s) => out.push(s.trim().to_string()),
                    None => break,
                }
            }
            break;
        }
    }
    out
}

/// The snippets that must stay errors under base-clang's CFLAGS, per diagnostic group.
const API_ERRORS: [(&str, &str); 3] = [
    (
        "incompatible-function-pointer-types",
        "typedef int (*kpd_fp)(int);\nstatic long kpd_f(long x) { return x; }\nkpd_fp kpd_p = kpd_f;\n",
    ),
    ("int-conversion", "int *kpd_q = 5;\n"),
    (
        "implicit-function-declaration",
        "int kpd_g(void) { return kpd_undeclared(1); }\n",
    ),
];

/// Compiles, per diagnostic, glue.c's `#pragma clang diagnostic error` lines followed by code
/// that breaks it, with build.rs' flag order (its -Werror=, then CFLAGS) and base-clang's CFLAGS.
fn check_api_errors(dir: &Path) -> Result<(Status, String), String> {
    api_errors_hold(&read_repo("c-shim/glue.c")?, dir)?;
    ok("glue.c's #pragma keeps all 3 API-signature errors under base-clang's CFLAGS")
}

fn api_errors_hold(glue: &str, dir: &Path) -> Result<(), String> {
    let pragmas: String = glue
        .lines()
        .filter(|l| l.trim_start().starts_with("#pragma clang diagnostic error"))
        .map(|l| format!("{l}\n"))
        .collect();
    fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    for (diag, code) in API_ERRORS {
        let unit = dir.join(format!("{diag}.c"));
        fs::write(&unit, format!("{pragmas}{code}")).map_err(|e| e.to_string())?;
        let mut cmd = Command::new("clang-22");
        cmd.args(["-fsyntax-only", "-w"])
            .args(API_ERRORS.map(|(d, _)| format!("-Werror={d}")))
            .args(BASE_CLANG_CFLAGS.split_whitespace())
            .arg(&unit);
        let (compiled, _, err) = capture(&mut cmd);
        if compiled || !err.contains(&format!("[-W{diag}]")) {
            return Err(format!(
                "-W{diag} is not an error under base-clang's CFLAGS (which end in \
                 -Wno-error={diag}); c-shim/glue.c needs `#pragma clang diagnostic error \
                 \"-W{diag}\"` (test: {})",
                rel(&unit)
            ));
        }
    }
    Ok(())
}

fn static_checks(report: &mut Report, base: &Path) {
    let project_dir = base.join("projects").join(PROJECT);
    let generated = project_files(&root());
    report.check("projects/ copy: presubmit.py rules", || {
        let p = generated.as_ref().map_err(|e| e.clone())?;
        let problems = presubmit(&project_dir, p);
        write_project(&project_dir, p).map_err(|f| f.msg)?;
        if !problems.is_empty() {
            return Err(problems.join("; "));
        }
        ok(format!(
            "Apache-2.0 header in Dockerfile, build.sh; project.yaml valid (sanitizers {}); \
             apt-get update first; {}",
            p.files
                .iter()
                .find(|(n, _)| *n == "project.yaml")
                .map(
                    |(_, t)| yaml_list(&parse_yaml(t).unwrap_or_default(), "sanitizers").join(", ")
                )
                .unwrap_or_default(),
            rel(&project_dir)
        ))
    });
    report.check("projects/ copy: check_base_os.py FROM tag", || {
        let p = generated.as_ref().map_err(|e| e.clone())?;
        let get = |n: &str| {
            p.files
                .iter()
                .find(|(f, _)| *f == n)
                .map(|(_, t)| t.as_str())
        };
        check_base_os(
            get("Dockerfile").unwrap_or(""),
            get("project.yaml").unwrap_or(""),
        )
        .map(|d| (Status::Ok, d))
    });
    report.check(".clusterfuzzlite/Dockerfile FROM tag", || {
        let cfl = read_repo(".clusterfuzzlite/Dockerfile")?;
        check_base_os(&cfl, "language: rust\n").map(|d| (Status::Ok, d))
    });
    report.check("upstream location (oss-fuzz/project.yaml)", || {
        let p = generated.as_ref().map_err(|e| e.clone())?;
        if p.placeholders.is_empty() {
            ok("main_repo and primary_contact set: `cargo xtask oss-fuzz-project DIR` writes submittable files")
        } else {
            Ok((
                Status::Todo,
                format!(
                    "placeholder {}: not ready to submit (set them in oss-fuzz/project.yaml)",
                    p.placeholders.join(", ")
                ),
            ))
        }
    });
    report.check("Dockerfiles fetch every kernel line", || {
        let mut seen = vec![];
        for f in ["oss-fuzz/Dockerfile", ".clusterfuzzlite/Dockerfile"] {
            let text = read_repo(f)?;
            let run = text
                .lines()
                .find(|l| l.trim_start().starts_with("RUN ") && l.contains("fetch-kernel.sh"))
                .ok_or(format!("{f} does not RUN oss-fuzz/fetch-kernel.sh"))?;
            if !run.contains("bash -euo pipefail ") || !run.trim_end().ends_with(" $SRC") {
                return Err(format!(
                    "{f}: `{}` must be `RUN bash -euo pipefail .../fetch-kernel.sh <kernel.lock> $SRC` \
                     (`bash script` ignores the shebang's -eu; build.sh looks in $SRC/linux-<line>)",
                    run.trim()
                ));
            }
            seen.push(f);
        }
        let lock = Lock::read(&root().join("kernel.lock"))?;
        let lines: Vec<&str> = lock.lines.iter().map(|l| l.name.as_str()).collect();
        ok(format!(
            "{} run `bash -euo pipefail fetch-kernel.sh`, which fetches every kernel.lock line ({})",
            seen.join(" and "),
            lines.join(", ")
        ))
    });
    report.check("build.sh's cargo fuzz flags", || {
        let text = read_repo("oss-fuzz/build.sh")?;
        let line = text
            .lines()
            .find(|l| l.trim_start().starts_with("cargo fuzz build "))
            .ok_or("oss-fuzz/build.sh runs no `cargo fuzz build`")?;
        let words: Vec<&str> = line.split_whitespace().collect();
        // BUILD_FLAGS has -a: overflow checks and debug assertions belong to the oracle, and
        // `compile` passes none.
        for f in crate::fuzz::BUILD_FLAGS {
            if !words.contains(&f) {
                return Err(format!(
                    "`{}` lacks {f} (cargo xtask fuzz builds with {} and OSS-Fuzz must fuzz the \
                     same code, overflow checks and debug assertions included)",
                    line.trim(),
                    crate::fuzz::BUILD_FLAGS.join(" ")
                ));
            }
        }
        ok(format!("`{}`", line.trim()))
    });
    report.check("API-signature errors independent of CFLAGS", || {
        check_api_errors(&base.join("api-errors"))
    });
    report.check(".dockerignore", || {
        let ig = DockerIgnore::parse(&read_repo(".dockerignore")?)?;
        for p in [".cache", "target", "fuzz/target", ".git"] {
            if !ig.excludes(Path::new(p)) {
                return Err(format!(".dockerignore does not exclude {p}"));
            }
        }
        ok("excludes .git, .cache, target, fuzz/target (the kernel sources come from the image)")
    });
    report.check("ClusterFuzzLite workflows", || {
        let yaml = generated.as_ref().map_err(|e| e.clone())?;
        let project_yaml = yaml
            .files
            .iter()
            .find(|(n, _)| *n == "project.yaml")
            .map(|(_, t)| parse_yaml(t).unwrap_or_default())
            .unwrap_or_default();
        let want = yaml_list(&project_yaml, "sanitizers");
        let build = read_repo(".github/workflows/cflite_build.yml")
            .map_err(|e| format!("{e} (the continuous build PR fuzzing compares crashes with)"))?;
        if !build.contains("upload-build: true") || !build.contains("push:") {
            return Err("cflite_build.yml must build on push with upload-build: true".into());
        }
        for f in ["cflite_build.yml", "cflite_pr.yml", "cflite_batch.yml"] {
            let text = read_repo(&format!(".github/workflows/{f}"))?;
            let got = workflow_sanitizers(&text);
            if got != want {
                return Err(format!(
                    "{f} builds sanitizers [{}], project.yaml lists [{}]",
                    got.join(", "),
                    want.join(", ")
                ));
            }
            if f != "cflite_build.yml" && !text.contains("output-sarif: true") {
                return Err(format!("{f}: run_fuzzers without output-sarif: true"));
            }
        }
        ok(format!(
            "continuous build (upload-build), PR and batch fuzzing of [{}] with SARIF output",
            want.join(", ")
        ))
    });
}

// ---------------------------------------------------------------------------------------------
// $SRC, as the image has it

struct Src {
    /// `$SRC`.
    dir: PathBuf,
    /// The files of the build context (relative), re-synced before every build.
    context: Vec<PathBuf>,
}

impl Src {
    fn project(&self) -> PathBuf {
        self.dir.join(PROJECT)
    }

    /// A fresh image: the context as copied, without what an earlier build wrote into it.
    fn reset(&self) -> Result<(), String> {
        sync_tree(&root(), &self.context, &self.project())
    }
}

/// The Dockerfiles' fetch step: fetch-kernel.sh from a `file://` mirror of kernel.org made
/// from the pinned files. Cached while kernel.lock and the script are unchanged.
fn fetch_kernels(base: &Path, src: &Src) -> Result<(Status, String), String> {
    let project = src.project();
    let lock_path = project.join("kernel.lock");
    let script = project.join("oss-fuzz").join("fetch-kernel.sh");
    let lock = Lock::read(&lock_path)?;
    let mut h = Sha256::new();
    for p in [&lock_path, &script] {
        h.update(fs::read(p).map_err(|e| format!("{}: {e}", p.display()))?);
    }
    let key = hex(&h.finalize());
    let stamp = base.join("kernel-layer.sha256");
    let trees: Vec<PathBuf> = lock
        .lines
        .iter()
        .map(|l| src.dir.join(format!("linux-{}", l.name)))
        .collect();
    let names: Vec<String> = trees.iter().map(|t| rel(t)).collect();
    if fs::read_to_string(&stamp).ok().as_deref() == Some(key.as_str())
        && trees.iter().all(|t| t.is_dir())
    {
        return ok(format!(
            "{} (cached: kernel.lock and fetch-kernel.sh unchanged, as Docker's layer cache)",
            names.join(", ")
        ));
    }
    let mirror = base.join("kernel-mirror");
    make_mirror(&mirror, &lock, None)?;
    let _ = fs::remove_file(&stamp);
    run_fetch(
        &script,
        &lock_path,
        &src.dir,
        &mirror,
        &base.join("fetch-kernel.log"),
    )?;
    fs::write(&stamp, &key).map_err(|e| e.to_string())?;
    ok(format!(
        "{}: kernel.org layout from a local mirror, sha256 checked against kernel.lock",
        names.join(", ")
    ))
}

/// A `file://` stand-in for kernel.org's `pub/linux/kernel`: per kernel.lock line,
/// `v<major>.x/linux-<upstream>.tar.xz` holding the line's pinned files (from `.cache/`).
/// `tamper` appends a byte to that file of every line (tests: a tarball that is not the pinned one).
fn make_mirror(mirror: &Path, lock: &Lock, tamper: Option<&str>) -> Result<(), String> {
    let _ = fs::remove_dir_all(mirror);
    for line in &lock.lines {
        let upstream = line.version.split('-').next().unwrap_or("");
        let major = upstream.split('.').next().unwrap_or("");
        let top = format!("linux-{upstream}");
        let stage = mirror.join("stage");
        let cache = root().join(line.cache_dir());
        for (_, f) in &line.files {
            let to = stage.join(&top).join(f);
            fs::create_dir_all(to.parent().unwrap()).map_err(|e| e.to_string())?;
            let mut data = fs::read(cache.join(f)).map_err(|e| {
                format!(
                    "{}/{f}: {e}; run: cargo xtask kernel (the emulated kernel.org mirror is made \
                     from the pinned files)",
                    rel(&cache)
                )
            })?;
            if tamper == Some(f.as_str()) {
                data.push(b'\n');
            }
            fs::write(&to, data).map_err(|e| e.to_string())?;
        }
        let dir = mirror.join(format!("v{major}.x"));
        fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let mut tar = Command::new("tar");
        tar.arg("-cJf")
            .arg(dir.join(format!("{top}.tar.xz")))
            .arg("-C")
            .arg(&stage)
            .arg(&top);
        let (made, _, err) = capture(&mut tar);
        if !made {
            return Err(format!("{}: {}", cmd_line(&tar), err.trim()));
        }
    }
    Ok(())
}

/// Runs fetch-kernel.sh as the Dockerfiles do, against `mirror`; the error is its last line.
fn run_fetch(
    script: &Path,
    lock: &Path,
    dest: &Path,
    mirror: &Path,
    log: &Path,
) -> Result<(), String> {
    let mut cmd = Command::new("bash");
    cmd.args(["-euo", "pipefail"])
        .arg(script)
        .arg(lock)
        .arg(dest)
        .env("KERNEL_ORG_MIRROR", format!("file://{}", mirror.display()));
    let (fetched, out, err) = capture(&mut cmd);
    let _ = fs::write(log, format!("$ {}\n{out}{err}", cmd_line(&cmd)));
    if !fetched {
        let last = err.lines().last().unwrap_or("nonzero exit");
        return Err(format!("fetch-kernel.sh failed: {last} (log {})", rel(log)));
    }
    Ok(())
}

fn layout_src(report: &mut Report, base: &Path) -> Option<Src> {
    let mut src = None;
    report.check("$SRC/kvm-pgtable-diff: the build context", || {
        let ig = DockerIgnore::parse(&read_repo(".dockerignore")?)?;
        let context = context_files(&root(), &ig)?;
        let s = Src {
            dir: base.join("src"),
            context,
        };
        s.reset()?;
        let n = s.context.len();
        let shown = rel(&s.project());
        src = Some(s);
        ok(format!(
            "{n} files copied as .dockerignore allows (no .cache) into {shown}"
        ))
    });
    let s = src?;
    let fetched = report.check("$SRC/linux-<line>: fetch-kernel.sh", || {
        fetch_kernels(base, &s)
    });
    fetched.then_some(s)
}

// ---------------------------------------------------------------------------------------------
// compile, emulated

struct Dirs {
    out: PathBuf,
    work: PathBuf,
    cargo_target: PathBuf,
    /// base-builder-rust's `cargo` wrapper (coverage builds), on PATH first.
    bin: PathBuf,
    /// `clang`, `clang++`: the image's compiler names (/usr/local/bin there).
    clang: PathBuf,
    log: PathBuf,
}

fn dirs(base: &Path, san: OssSanitizer) -> Dirs {
    let s = value_name(san);
    Dirs {
        out: base.join(format!("out-{s}")),
        work: base.join(format!("work-{s}")),
        cargo_target: base.join(format!("cargo-{s}")),
        bin: base.join(format!("bin-{s}")),
        clang: base.join("clang"),
        log: base.join(format!("build-{s}.log")),
    }
}

/// CFLAGS as `compile` leaves them: base-clang's, then `$SANITIZER_FLAGS $COVERAGE_FLAGS`, then
/// the undefined build's `-fno-sanitize=function`.
fn compile_cflags(san: OssSanitizer) -> String {
    let (sanitizer_flags, coverage_flags) = match san {
        OssSanitizer::Address => (SANITIZER_FLAGS_ADDRESS, COVERAGE_FLAGS),
        OssSanitizer::Undefined => (SANITIZER_FLAGS_UNDEFINED, COVERAGE_FLAGS),
        _ => ("", COVERAGE_FLAGS_COVERAGE),
    };
    let mut c = format!("{BASE_CLANG_CFLAGS} {sanitizer_flags} {coverage_flags}");
    if san == OssSanitizer::Undefined {
        c.push_str(" -fno-sanitize=function");
    }
    c
}

/// RUSTFLAGS as `compile` sets them (for coverage without `-C link-arg=-lc++`: see env_for).
fn compile_rustflags(san: OssSanitizer) -> String {
    match san {
        OssSanitizer::Address => {
            "--cfg fuzzing -Zsanitizer=address -Cdebuginfo=1 -Cforce-frame-pointers".into()
        }
        OssSanitizer::Undefined => "--cfg fuzzing -Cdebuginfo=1 -Cforce-frame-pointers".into(),
        _ => "--cfg fuzzing -Cdebuginfo=1 -Cforce-frame-pointers -Cinstrument-coverage".into(),
    }
}

/// The oldest libclang installed (directory, LLVM major): the image's LIBCLANG_PATH points at
/// Ubuntu 20.04's libclang 10 while its `clang` is trunk, so an old libclang is the closer
/// stand-in for bindgen here.
fn oldest_libclang() -> Option<(PathBuf, u32)> {
    let mut found: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib")
        .ok()?
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let major: u32 = name.strip_prefix("llvm-")?.parse().ok()?;
            let lib = e.path().join("lib");
            let has = fs::read_dir(&lib).ok()?.flatten().any(|f| {
                let n = f.file_name().to_string_lossy().into_owned();
                n.starts_with("libclang.so") || n.starts_with(&format!("libclang-{major}"))
            });
            has.then_some((major, lib))
        })
        .collect();
    found.sort();
    found.into_iter().next().map(|(m, p)| (p, m))
}

/// The environment `compile` gives build.sh.
fn env_for(san: OssSanitizer, src: &Src, d: &Dirs) -> Vec<(String, String)> {
    let cflags = compile_cflags(san);
    let path = format!(
        "{}:{}:{}",
        d.bin.display(),
        d.clang.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let s = |k: &str, v: &str| (k.to_string(), v.to_string());
    let mut env = vec![
        s("SRC", &src.dir.display().to_string()),
        s("OUT", &d.out.display().to_string()),
        s("WORK", &d.work.display().to_string()),
        // The image's clang is trunk (22 at the time of writing); here `clang` in the bin
        // directory runs Debian's clang-22.
        s("CC", "clang"),
        s("CXX", "clang++"),
        s("CCC", "clang++"),
        s("CFLAGS", &cflags),
        s("CXXFLAGS", &format!("{cflags} {CXXFLAGS_EXTRA}")),
        // The image adds `-C link-arg=-lc++` to coverage builds; there is no libc++ here.
        s("RUSTFLAGS", &compile_rustflags(san)),
        s("SANITIZER", &value_name(san)),
        s("FUZZING_ENGINE", "libfuzzer"),
        s("FUZZING_LANGUAGE", "rust"),
        s("ARCHITECTURE", "x86_64"),
        s("LIB_FUZZING_ENGINE", "-fsanitize=fuzzer"),
        s("CUSTOM_LIBFUZZER_PATH", LIBFUZZER_A),
        // The image's libFuzzer is built against libc++ (c++); Debian's against libstdc++.
        s("CUSTOM_LIBFUZZER_STD_CXX", "stdc++"),
        s("RUSTUP_TOOLCHAIN", toolchain()),
        s("CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_LINKER", "clang"),
        s("CARGO_TARGET_DIR", &d.cargo_target.display().to_string()),
        s("PATH", &path),
    ];
    // The Dockerfiles' `ENV LIBCLANG_PATH`.
    if let Some((dir, _)) = oldest_libclang() {
        env.push(s("LIBCLANG_PATH", &dir.display().to_string()));
    }
    env
}

/// A `cargo` that does what base-builder-rust's wrapper (base-builder/cargo) does in coverage
/// builds: `cargo fuzz build ...` becomes a debug `cargo build --bins` in fuzz/ without debug
/// assertions, with the sources' paths remapped, copied to where `cargo fuzz build -O` puts
/// binaries.
const CARGO_WRAPPER: &str = r#"#!/bin/bash -eu
# Written by `cargo xtask oss-fuzz`: emulates base-builder-rust's cargo wrapper.
self_dir=$(cd "$(dirname "$0")" && pwd)
PATH=$(echo "$PATH" | tr ':' '\n' | grep -vxF "$self_dir" | paste -sd:)
export PATH
if [ "${SANITIZER:-}" = "coverage" ] && [ "${1:-}" = "build" ]; then
    root=$(cargo metadata --no-deps --format-version 1 | jq -r '.workspace_root')
    export RUSTFLAGS="$RUSTFLAGS --remap-path-prefix src=$root/src"
fi
if [ "${SANITIZER:-}" = "coverage" ] && [ "${1:-}" = "fuzz" ] && [ "${2:-}" = "build" ]; then
    (
        cd fuzz || true
        here=$(pwd)
        while read -r i; do
            export RUSTFLAGS="$RUSTFLAGS --remap-path-prefix $i=$here/$i"
        done <<< "$(find . -name "*.rs" | cut -d/ -f2 | uniq)"
        export RUSTFLAGS="$RUSTFLAGS -C debug-assertions=no"
        cargo build --bins
        cd "$(cargo metadata --format-version 1 --no-deps | jq -r '.target_directory')"
        mkdir -p x86_64-unknown-linux-gnu/release
        cp -r debug/* x86_64-unknown-linux-gnu/release/
    )
    exit 0
fi
exec cargo "$@"
"#;

fn prepare(san: OssSanitizer, d: &Dirs) -> Res {
    reset_dir(&d.out)?;
    reset_dir(&d.work)?;
    reset_dir(&d.bin)?;
    reset_dir(&d.clang)?;
    for (name, to) in [
        ("clang", "/usr/bin/clang-22"),
        ("clang++", "/usr/bin/clang++-22"),
    ] {
        let link = d.clang.join(name);
        std::os::unix::fs::symlink(to, &link)
            .ctx(format_args!("cannot link {}", link.display()))?;
    }
    if san == OssSanitizer::Coverage {
        let wrapper = d.bin.join("cargo");
        fs::write(&wrapper, CARGO_WRAPPER)
            .and_then(|_| fs::set_permissions(&wrapper, fs::Permissions::from_mode(0o755)))
            .ctx(format_args!("cannot write {}", wrapper.display()))?;
    }
    Ok(())
}

/// What the emulation runs besides cargo, and base-builder-rust's nightly.
fn tools() -> Res {
    for (tool, pkg) in [
        ("zip", "zip"),
        ("sha1sum", "coreutils"),
        ("jq", "jq"),
        ("curl", "curl"),
        ("tar", "tar"),
        ("objdump", "binutils"),
    ] {
        if !capture(Command::new("sh").args(["-c", &format!("command -v {tool}")])).0 {
            let fix = format!("run: apt-get install -y {pkg}");
            return Err(setup_err(format!("`{tool}` is missing; {fix}")));
        }
    }
    if !Path::new(LIBFUZZER_A).is_file() {
        let fix = "run: cargo xtask setup (installs libclang-rt-22-dev)";
        return Err(setup_err(format!("{LIBFUZZER_A} is missing; {fix}")));
    }
    let tc = format!("+{IMAGE_TOOLCHAIN}");
    if !capture(Command::new("rustc").args([tc.as_str(), "--version"])).0 {
        say!(
            "oss-fuzz",
            "installing base-builder-rust's toolchain {IMAGE_TOOLCHAIN} (rustup, minimal profile) ..."
        );
        let mut cmd = Command::new("rustup");
        cmd.args([
            "toolchain",
            "install",
            IMAGE_TOOLCHAIN,
            "--profile",
            "minimal",
        ]);
        if crate::util::run_ok(&mut cmd).is_err() {
            // Machines without access to the Rust distribution server still emulate
            // everything else; the summary says which toolchain built the targets.
            warn!(
                "oss-fuzz",
                "cannot install {IMAGE_TOOLCHAIN}; emulating with this machine's nightly instead \
                 (run: rustup toolchain install {IMAGE_TOOLCHAIN} --profile minimal)"
            );
            TOOLCHAIN.get_or_init(|| "nightly");
        }
    }
    TOOLCHAIN.get_or_init(|| IMAGE_TOOLCHAIN);
    Ok(())
}

/// The toolchain the emulated build uses: the image's, or this machine's nightly when the
/// image's cannot be installed here (decided by [`tools`]).
static TOOLCHAIN: std::sync::OnceLock<&'static str> = std::sync::OnceLock::new();

fn toolchain() -> &'static str {
    TOOLCHAIN.get().copied().unwrap_or(IMAGE_TOOLCHAIN)
}

/// Whether `var` is a setting of this machine or of the `cargo run` that started xtask, which
/// the image does not have (toolchain homes, HOME and PATH stay).
fn leaks_into_image(var: &str) -> bool {
    const DEV: [&str; 18] = [
        "LINUX_SRC",
        "KPD_AGAINST",
        "KPD_C_COVERAGE",
        "KPD_LINE",
        "LIBCLANG_PATH",
        "CC",
        "CXX",
        "CFLAGS",
        "CXXFLAGS",
        "LDFLAGS",
        "RUSTFLAGS",
        "RUSTDOCFLAGS",
        "RUSTC",
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
        "RUSTUP_TOOLCHAIN",
        "CARGO",
        "CARGO_ENCODED_RUSTFLAGS",
    ];
    DEV.contains(&var)
        || [
            "CARGO_PKG_",
            "CARGO_MANIFEST_",
            "CARGO_CRATE_",
            "CARGO_BIN_",
            "CARGO_PRIMARY_",
        ]
        .iter()
        .any(|p| var.starts_with(p))
        || (var.starts_with("CARGO_BUILD_") || var.starts_with("CARGO_TARGET_"))
}

/// Runs build.sh as `compile` does (`bash -eux $SRC/build.sh`, here the generated one-line
/// projects/ build.sh); logs everything, echoes build.sh's own lines and cargo's verdict.
fn run_build(
    san: OssSanitizer,
    src: &Src,
    project_build_sh: &Path,
    d: &Dirs,
) -> Result<String, String> {
    let mut cmd = Command::new("bash");
    cmd.arg("-eux")
        .arg(project_build_sh)
        .current_dir(src.project())
        .env_clear()
        .envs(std::env::vars().filter(|(k, _)| !leaks_into_image(k)))
        .envs(env_for(san, src, d))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let (s, log_rel) = (value_name(san), rel(&d.log));
    say!(
        "oss-fuzz",
        "SANITIZER={s}: bash -eux build.sh (log {log_rel})"
    );
    let libclang = match oldest_libclang() {
        Some((_, 22)) | None => "bindgen with libclang 22 (the image: Ubuntu 20.04's 10)".into(),
        Some((_, m)) => format!("bindgen with libclang {m} (the image: Ubuntu 20.04's 10)"),
    };
    let t = Instant::now();
    let mut child = cmd.spawn().map_err(|e| format!("cannot run bash: {e}"))?;
    let log = fs::File::create(&d.log).map_err(|e| format!("{log_rel}: {e}"))?;
    let log = Mutex::new(log);
    let shown = ["[build.sh]", "Finished", "error", "warning: C side"];
    for r in on_lines(&mut child, move |line| {
        let _ = writeln!(log.lock().unwrap(), "{line}");
        if shown.iter().any(|p| line.trim_start().starts_with(p)) {
            println!("  {line}");
        }
    }) {
        let _ = r.join();
    }
    let st = child.wait().map_err(|e| e.to_string())?;
    if !st.success() {
        let text = fs::read_to_string(&d.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        eprintln!("--- last lines of {log_rel} ---");
        for l in &lines[lines.len().saturating_sub(40)..] {
            eprintln!("{l}");
        }
        return Err(format!("build.sh failed ({st}); full log: {log_rel}"));
    }
    Ok(format!(
        "built in {} with {}, clang-22 as `clang`, {libclang}",
        fmt_dur(t.elapsed()),
        toolchain()
    ))
}

// ---------------------------------------------------------------------------------------------
// $OUT checks

/// Parses a libFuzzer dictionary: `[name=]"value"` lines with `\\`, `\"` and `\xHH` escapes;
/// `#` comments and blank lines. Returns the number of entries.
pub fn parse_dict(text: &str) -> Result<usize, String> {
    let mut n = 0;
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let err = |m: &str| format!("line {}: {m}: `{raw}`", i + 1);
        let q = line.find('"').ok_or_else(|| err("no opening quote"))?;
        let name = line[..q].trim_end();
        if !name.is_empty() {
            let name = name
                .strip_suffix('=')
                .ok_or_else(|| err("expected name=\"...\""))?;
            if name.is_empty()
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            {
                return Err(err("bad entry name"));
            }
        }
        let body = &line[q + 1..];
        let body = body
            .strip_suffix('"')
            .ok_or_else(|| err("no closing quote at the end of the line"))?;
        let b = body.as_bytes();
        let mut j = 0;
        let mut len = 0;
        while j < b.len() {
            match b[j] {
                b'\\' => match b.get(j + 1) {
                    Some(b'\\') | Some(b'"') => j += 2,
                    Some(b'x') => {
                        let hex = body.get(j + 2..j + 4).unwrap_or("");
                        if hex.len() != 2 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
                            return Err(err("bad \\x escape"));
                        }
                        j += 4;
                    }
                    _ => return Err(err("bad escape")),
                },
                b'"' => return Err(err("unescaped quote")),
                c if !(0x20..0x7f).contains(&c) => return Err(err("non-printable byte")),
                _ => j += 1,
            }
            len += 1;
        }
        if len == 0 {
            return Err(err("empty entry"));
        }
        n += 1;
    }
    if n == 0 {
        return Err("no entries".into());
    }
    Ok(n)
}

/// Parses an OSS-Fuzz `.options` file; returns the `[libfuzzer]` flags as `-key=value`
/// (what base-runner's parse_options.py hands run_fuzzer).
pub fn parse_options(text: &str) -> Result<Vec<String>, String> {
    let mut section: Option<String> = None;
    let mut flags = vec![];
    let mut saw_libfuzzer = false;
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        let err = |m: &str| format!("line {}: {m}: `{raw}`", i + 1);
        if let Some(s) = line.strip_prefix('[') {
            let s = s
                .strip_suffix(']')
                .ok_or_else(|| err("bad section header"))?;
            if !["libfuzzer", "asan", "msan", "ubsan", "afl", "honggfuzz"].contains(&s) {
                return Err(err("unknown section"));
            }
            saw_libfuzzer |= s == "libfuzzer";
            section = Some(s.to_string());
            continue;
        }
        let (k, v) = line
            .split_once('=')
            .ok_or_else(|| err("expected key = value"))?;
        let (k, v) = (k.trim(), v.trim());
        if k.is_empty() || v.is_empty() || !k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            return Err(err("expected key = value"));
        }
        match section.as_deref() {
            None => return Err(err("key outside a section")),
            Some("libfuzzer") => flags.push(format!("-{k}={v}")),
            Some(_) => {}
        }
    }
    if !saw_libfuzzer {
        return Err("no [libfuzzer] section".into());
    }
    Ok(flags)
}

/// Checks the seed zip of `t` (entries named by the sha1 of their content, exactly the
/// distinct files of fuzz/corpus/<t>); unzips it into `dir`; returns the number of seeds.
fn check_zip(t: &str, d: &Dirs, dir: &Path) -> Result<usize, String> {
    let name = format!("{t}_seed_corpus.zip");
    let mut want = BTreeSet::new();
    for f in files(&fuzz_dir().join("corpus").join(t), false, None) {
        want.insert(sha1_hex(
            &fs::read(&f).map_err(|e| format!("{}: {e}", rel(&f)))?,
        ));
    }
    fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    let Ok(file) = fs::File::open(d.out.join(&name)) else {
        return match want.len() {
            0 => Ok(0),
            n => Err(format!("{name} missing but fuzz/corpus/{t} has {n} files")),
        };
    };
    let corrupt = |e: zip::result::ZipError| format!("{name} is corrupt: {e}");
    let mut zip = zip::ZipArchive::new(file).map_err(corrupt)?;
    let mut got = BTreeSet::new();
    for i in 0..zip.len() {
        let mut entry = zip.by_index(i).map_err(corrupt)?;
        let entry_name = entry.name().to_string();
        if entry_name.len() != 40
            || !entry_name
                .bytes()
                .all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'))
        {
            return Err(format!("zip entry `{entry_name}` is not named by a sha1"));
        }
        // Reading to the end also checks the entry's CRC-32.
        let mut data = vec![];
        entry
            .read_to_end(&mut data)
            .map_err(|e| format!("{name}: {entry_name}: {e}"))?;
        let sum = sha1_hex(&data);
        if sum != entry_name {
            return Err(format!(
                "zip entry {entry_name} holds content with sha1 {sum}"
            ));
        }
        fs::write(dir.join(&entry_name), &data).map_err(|e| e.to_string())?;
        got.insert(sum);
    }
    if got != want {
        let (g, w) = (got.len(), want.len());
        return Err(format!(
            "zip holds {g} seeds, fuzz/corpus/{t} has {w} distinct files"
        ));
    }
    Ok(got.len())
}

/// bad_build_check's thresholds: (minimum, maximum) calls into each sanitizer runtime.
struct CallLimits {
    asan: (u64, u64),
    dfsan: (u64, u64),
    msan: (u64, u64),
    ubsan: (u64, u64),
}

fn call_limits(san: OssSanitizer) -> Option<CallLimits> {
    match san {
        // check_asan_build.
        OssSanitizer::Address => Some(CallLimits {
            asan: (1000, u64::MAX),
            dfsan: (0, 0),
            msan: (0, 3),
            ubsan: (0, 200),
        }),
        // check_ubsan_build.
        OssSanitizer::Undefined => Some(CallLimits {
            asan: (0, 0),
            dfsan: (0, 0),
            msan: (0, 3),
            ubsan: (168, u64::MAX),
        }),
        _ => None,
    }
}

/// The call targets counted in `objdump -dC`: bad_build_check's four sanitizer runtimes, and
/// libFuzzer's compare hooks (which the coverage build's C side must not call).
const RUNTIMES: [&str; 5] = [
    "__asan",
    "__dfsan",
    "__msan",
    "__ubsan",
    "__sanitizer_cov_trace",
];

/// Per `objdump -dC` line, what bad_build_check's `egrep "callq?\s+[0-9a-f]+\s+<__asan"` (and
/// __dfsan, __msan, __ubsan) counts: the runtime a call goes to.
fn call_target(line: &str) -> Option<&'static str> {
    let mut rest = line;
    while let Some(i) = rest.find("call") {
        let after = &rest[i + 4..];
        let after = after.strip_prefix('q').unwrap_or(after);
        let ws = after.len() - after.trim_start().len();
        let addr = &after[ws..];
        let hex_len = addr
            .bytes()
            .take_while(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
            .count();
        let tail = &addr[hex_len..];
        let ws2 = tail.len() - tail.trim_start().len();
        if ws > 0 && hex_len > 0 && ws2 > 0 {
            let target = &tail[ws2..];
            for rt in RUNTIMES {
                if target.starts_with(&format!("<{rt}")) {
                    return Some(rt);
                }
            }
        }
        rest = &rest[i + 4..];
    }
    None
}

/// Counts sanitizer-runtime calls in `bin` (bad_build_check's check_mixed_sanitizers) and
/// notes which kernel lines' renamed functions (`<kpd_<line>_...>:`) it holds.
fn objdump_calls(
    bin: &Path,
    lines: &[String],
) -> Result<(BTreeMap<&'static str, u64>, Vec<String>), String> {
    let mut child = Command::new("objdump")
        .arg("-dC")
        .arg(bin)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot run objdump: {e}"))?;
    let mut counts: BTreeMap<&'static str, u64> = RUNTIMES.map(|k| (k, 0)).into();
    let marks: Vec<(String, String)> = lines
        .iter()
        .map(|l| (l.clone(), format!("<kpd_{}_", l.replace(['.', '-'], "_"))))
        .collect();
    let mut seen = BTreeSet::new();
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let line = line.map_err(|e| e.to_string())?;
        if let Some(rt) = call_target(&line) {
            *counts.get_mut(rt).unwrap() += 1;
        } else if line.ends_with(">:") {
            for (l, m) in &marks {
                if line.contains(m.as_str()) {
                    seen.insert(l.clone());
                }
            }
        }
    }
    let st = child.wait().map_err(|e| e.to_string())?;
    if !st.success() {
        return Err(format!("objdump -dC {} failed ({st})", rel(bin)));
    }
    Ok((counts, seen.into_iter().collect()))
}

/// Edges from libFuzzer's `INFO: Loaded N modules (M inline 8-bit counters): M [...]`
/// (bad_build_check's `grep -Po "INFO: Loaded \d+ module.*\(.*(counters|guards)\):\s+\K\d+"`).
fn loaded_edges(output: &str) -> Option<u64> {
    output.lines().find_map(|l| {
        let rest = l.strip_prefix("INFO: Loaded ")?;
        let (_, after) = rest
            .split_once("counters):")
            .or_else(|| rest.split_once("guards):"))?;
        after.split_whitespace().next()?.parse().ok()
    })
}

/// base-runner's environment for running a target.
fn runner_env(cmd: &mut Command) {
    cmd.env("ASAN_OPTIONS", ASAN_OPTIONS)
        .env("UBSAN_OPTIONS", UBSAN_OPTIONS)
        .env_remove("OUT")
        .env_remove("LLVM_PROFILE_FILE")
        .stdin(Stdio::null());
}

fn output_of(cmd: &mut Command, log: &Path) -> (bool, String) {
    let (ok, so, se) = capture(cmd);
    let all = format!("{so}{se}");
    let _ = fs::write(log, format!("$ {}\n{all}", cmd_line(cmd)));
    (ok, all)
}

/// bad_build_check on one target: check_engine, check_architecture, check_mixed_sanitizers,
/// check_startup_crash (check_seed_corpus is disabled upstream; the --runs run below covers
/// the seeds). Returns a summary.
fn check_build(
    t: &str,
    san: OssSanitizer,
    d: &Dirs,
    flags: &[String],
    lines: &[String],
) -> Result<String, String> {
    let bin = d.out.join(t);
    let logs = d.work.join("check_build");
    fs::create_dir_all(&logs).map_err(|e| e.to_string())?;
    // check_engine: `$FUZZER -- -seed=1337 -runs=4`.
    let log = logs.join(format!("{t}.engine.log"));
    let mut cmd = Command::new(&bin);
    cmd.args(["--", "-seed=1337", "-runs=4"]);
    runner_env(&mut cmd);
    let (_, out) = output_of(&mut cmd, &log);
    if out.contains("ERROR: no interesting inputs were found. Is the code instrumented") {
        return Err(format!("no coverage instrumentation (log {})", rel(&log)));
    }
    let edges = loaded_edges(&out)
        .ok_or_else(|| format!("did not start: no `INFO: Loaded` line (log {})", rel(&log)))?;
    // Upstream only prints "BAD BUILD" for this one; here it fails.
    if edges < 100 {
        return Err(format!(
            "only {edges} edges (< 100): partial instrumentation"
        ));
    }
    // check_architecture: `file` must say x86-64.
    let mut head = [0u8; 20];
    fs::File::open(&bin)
        .and_then(|mut f| f.read_exact(&mut head))
        .map_err(|e| format!("{}: {e}", rel(&bin)))?;
    if &head[..4] != b"\x7fELF" || u16::from_le_bytes([head[18], head[19]]) != 62 {
        return Err("not an x86-64 ELF binary".into());
    }
    // check_mixed_sanitizers.
    let (calls, seen) = objdump_calls(&bin, lines)?;
    if let Some(l) = call_limits(san) {
        for (rt, (lo, hi)) in [
            ("__asan", l.asan),
            ("__dfsan", l.dfsan),
            ("__msan", l.msan),
            ("__ubsan", l.ubsan),
        ] {
            let n = calls[rt];
            if n < lo || n > hi {
                let want = if n < lo {
                    format!("at least {lo}")
                } else {
                    format!("at most {hi}")
                };
                return Err(format!(
                    "{n} calls to {rt}* (SANITIZER={} wants {want})",
                    value_name(san)
                ));
            }
        }
    }
    if seen.len() != lines.len() {
        return Err(format!(
            "holds the C side of kernel lines [{}], kernel.lock pins [{}]",
            seen.join(", "),
            lines.join(", ")
        ));
    }
    // check_startup_crash: `SKIP_SEED_CORPUS=1 run_fuzzer $FUZZER -seed=1337 -runs=4`, i.e.
    // `$OUT/$FUZZER -- $FUZZER_ARGS -seed=1337 -runs=4 <options> -dict=$FUZZER.dict`, in $OUT.
    let log = logs.join(format!("{t}.startup.log"));
    let mut cmd = Command::new(&bin);
    cmd.current_dir(&d.out)
        .arg("--")
        .args(FUZZER_ARGS)
        .args(["-seed=1337", "-runs=4"])
        .args(flags)
        .arg(format!("-dict={t}.dict"));
    runner_env(&mut cmd);
    let (_, out) = output_of(&mut cmd, &log);
    if !out.contains("Done 4 runs") {
        return Err(format!("startup crash or exit (log {})", rel(&log)));
    }
    let rt = if san == OssSanitizer::Undefined {
        "__ubsan"
    } else {
        "__asan"
    };
    Ok(format!(
        "{edges} edges, {} {rt} calls, lines {}",
        calls[rt],
        seen.join("+")
    ))
}

/// `run_fuzzer $FUZZER -runs=N` with the seed corpus: `$OUT/$FUZZER -- $FUZZER_ARGS -runs=N
/// <corpus> <options> -dict=...`, plus a fixed seed and an artifact prefix.
fn run_target(
    t: &str,
    d: &Dirs,
    seeds: &Path,
    flags: &[String],
    runs: u64,
) -> Result<String, String> {
    let arts = d.work.join("artifacts").join(t);
    fs::create_dir_all(&arts).map_err(|e| e.to_string())?;
    let mut cmd = Command::new(d.out.join(t));
    cmd.current_dir(&d.out)
        .arg("--")
        .args(FUZZER_ARGS)
        .arg(format!("-runs={runs}"))
        // A fixed seed makes the mutations after the seeds the same on every
        // run, so a CI result can be reproduced (and cannot flake).
        .arg("-seed=1")
        .arg(format!("-artifact_prefix={}/", arts.display()))
        .arg("-print_final_stats=1")
        .arg(seeds)
        .args(flags)
        .arg(format!("-dict={t}.dict"));
    runner_env(&mut cmd);
    let logp = d.work.join(format!("{t}.run.log"));
    let t0 = Instant::now();
    let (ok, all) = output_of(&mut cmd, &logp);
    let took = fmt_dur(t0.elapsed());
    let log = rel(&logp);
    let finding =
        |l: &str| l.contains("==ERROR:") || l.contains("panicked") || l.contains("runtime error:");
    if !ok || all.lines().any(finding) {
        let first = all.lines().find(|l| finding(l) || l.contains("ERROR"));
        return Err(format!("{} (log {log})", first.unwrap_or("nonzero exit")));
    }
    let mut prog = Progress::default();
    all.lines().for_each(|l| prog.feed(l));
    let dict = all.lines().find_map(|l| {
        let n = l.strip_prefix("Dictionary: ")?.split_whitespace().next()?;
        Some(format!(", dict {} loaded", n.parse::<usize>().ok()?))
    });
    let execs = prog.final_execs.unwrap_or(0);
    if execs < runs {
        return Err(format!("ran {execs} inputs, expected {runs} (log {log})"));
    }
    let (n, cov, dict) = (fmt_count(execs), prog.cov, dict.unwrap_or_default());
    Ok(format!("{n} runs in {took}, cov {cov}{dict}"))
}

/// Replays the seeds through the coverage build and checks the profile it writes: it merges,
/// and llvm-cov maps it onto every kernel line's pgtable.c.
fn run_coverage(t: &str, d: &Dirs, seeds: &Path, lines: &[String]) -> Result<String, String> {
    // OSS-Fuzz's coverage CFLAGS carry no -fsanitize=fuzzer-no-link, nor may build.rs add it.
    let (calls, _) = objdump_calls(&d.out.join(t), lines)?;
    let hooks = calls["__sanitizer_cov_trace"];
    if hooks > 0 {
        return Err(format!(
            "{hooks} calls to libFuzzer's __sanitizer_cov_trace* hooks: a coverage build's code \
             must not carry -fsanitize=fuzzer-no-link"
        ));
    }
    let prof = d.work.join("profiles");
    fs::create_dir_all(&prof).map_err(|e| e.to_string())?;
    let raw = prof.join(format!("{t}.profraw"));
    let data = prof.join(format!("{t}.profdata"));
    let mut cmd = Command::new(d.out.join(t));
    cmd.arg("-runs=0").arg(seeds);
    runner_env(&mut cmd);
    cmd.env("LLVM_PROFILE_FILE", &raw);
    let (ok, all) = output_of(&mut cmd, &d.work.join(format!("{t}.replay.log")));
    if !ok {
        let first = all
            .lines()
            .find(|l| l.contains("ERROR"))
            .unwrap_or("nonzero exit");
        return Err(first.to_string());
    }
    if fs::metadata(&raw).map(|m| m.len()).unwrap_or(0) == 0 {
        return Err(format!("no profile written to {}", rel(&raw)));
    }
    let (ok, _, se) = capture(
        Command::new("llvm-profdata-22")
            .args(["merge", "-sparse"])
            .arg(&raw)
            .arg("-o")
            .arg(&data),
    );
    if !ok {
        return Err(format!("llvm-profdata-22 merge: {}", se.trim()));
    }
    let (ok, so, se) = capture(
        Command::new("llvm-cov-22")
            .arg("report")
            .arg(d.out.join(t))
            .arg(format!("-instr-profile={}", data.display())),
    );
    if !ok {
        return Err(format!("llvm-cov-22 report: {}", se.trim()));
    }
    let mut shown = vec![];
    for l in lines {
        let dir = format!(
            "{}/arch/arm64/kvm/hyp/pgtable.c",
            l.replace(['.', '-'], "_")
        );
        let row = so.lines().find(|r| r.contains(&dir)).ok_or_else(|| {
            format!("llvm-cov-22 report has no pgtable.c of line {l} (C side not instrumented)")
        })?;
        // Columns: file, regions, missed, cover%, functions, missed, executed%, lines, missed, cover%.
        let cols: Vec<&str> = row.split_whitespace().collect();
        shown.push(format!("{l} {}", cols.get(9).copied().unwrap_or("?")));
    }
    Ok(format!(
        "profile ok, pgtable.c lines covered: {}",
        shown.join(", ")
    ))
}

/// Checks one target in $OUT; returns its summary row and whether every check passed.
fn check_target(
    t: &str,
    san: OssSanitizer,
    d: &Dirs,
    runs: u64,
    lines: &[String],
) -> (Vec<String>, bool) {
    let (mut seeds, mut dict, mut check) = ("-".to_string(), "-".to_string(), "-".to_string());
    let res = (|| -> Result<String, String> {
        let bin = d.out.join(t);
        let meta = fs::metadata(&bin).map_err(|_| format!("$OUT/{t} missing"))?;
        if meta.permissions().mode() & 0o111 == 0 {
            return Err(format!("$OUT/{t} is not executable"));
        }
        let dir = d.work.join("seeds").join(t);
        let n = check_zip(t, d, &dir)?;
        seeds = if n == 0 { "none".into() } else { n.to_string() };
        let read = |ext: &str| {
            fs::read_to_string(d.out.join(format!("{t}.{ext}")))
                .map_err(|_| format!("$OUT/{t}.{ext} missing"))
        };
        let n = parse_dict(&read("dict")?).map_err(|e| format!("{t}.dict {e}"))?;
        dict = format!("{n} entries");
        let flags = parse_options(&read("options")?).map_err(|e| format!("{t}.options {e}"))?;
        if san == OssSanitizer::Coverage {
            // OSS-Fuzz and ClusterFuzzLite run no check_build on coverage builds.
            return run_coverage(t, d, &dir, lines);
        }
        check = check_build(t, san, d, &flags, lines)?;
        run_target(t, d, &dir, &flags, runs)
    })();
    match &res {
        Ok(run) => say!("oss-fuzz", "{t}: ok ({check}; {run})"),
        Err(p) => say!("oss-fuzz", "{t}: FAILED: {p}"),
    }
    let status = if res.is_ok() { "ok" } else { "FAILED" };
    let last = res.clone().unwrap_or_else(|e| e);
    (
        vec![t.into(), status.into(), seeds, dict, check, last],
        res.is_ok(),
    )
}

fn build_and_check(
    report: &mut Report,
    base: &Path,
    san: OssSanitizer,
    src: &Src,
    project_build_sh: &Path,
    runs: u64,
) {
    let s = value_name(san);
    let d = dirs(base, san);
    let lines: Vec<String> = Lock::read(&root().join("kernel.lock"))
        .map(|l| l.lines.iter().map(|x| x.name.clone()).collect())
        .unwrap_or_default();
    let name = format!("SANITIZER={s} build");
    let mut built = false;
    report.check(&name, || {
        prepare(san, &d).map_err(|f| f.msg)?;
        src.reset()?;
        let r = run_build(san, src, project_build_sh, &d);
        built = r.is_ok();
        r.map(|m| (Status::Ok, m))
    });
    if !built {
        report.build_failed = true;
        return;
    }
    let name = match san {
        OssSanitizer::Coverage => format!("SANITIZER={s} targets: seeds replayed into a profile"),
        _ => format!("SANITIZER={s} targets: check_build + {runs} runs"),
    };
    report.check(&name, || {
        let n = TARGETS.len();
        let (rows, oks): (Vec<_>, Vec<_>) = TARGETS
            .iter()
            .map(|t| check_target(t, san, &d, runs, &lines))
            .unzip();
        let header = ["target", "status", "seeds", "dict", "check_build", "run"];
        print!("{}", table(&header, &rows));
        let ours = |f: &String| {
            TARGETS.iter().any(|t| {
                [
                    t.to_string(),
                    format!("{t}.dict"),
                    format!("{t}.options"),
                    format!("{t}_seed_corpus.zip"),
                ]
                .contains(f)
            })
        };
        let extra: Vec<String> = crate::util::names(&d.out)
            .into_iter()
            .filter(|f| !ours(f))
            .collect();
        let failed = oks.iter().filter(|ok| !**ok).count();
        if failed > 0 || n == 0 {
            return Err(format!("{failed} of {n} targets failed (table above)"));
        }
        let mut detail = format!("{n} targets ok: {}", TARGETS.join(", "));
        if !extra.is_empty() {
            detail.push_str(&format!("; other files in $OUT: {}", extra.join(", ")));
        }
        ok(detail)
    });
}

pub fn run(args: Args) -> Res<u8> {
    setup::setup(setup::Opts { fuzz: true })?;
    tools()?;
    let base = base_dir();
    mkdir(&base)?;
    let t = Instant::now();
    let mut report = Report::default();
    static_checks(&mut report, &base);
    let sans = match args.sanitizer {
        OssSanitizer::All => vec![
            OssSanitizer::Address,
            OssSanitizer::Undefined,
            OssSanitizer::Coverage,
        ],
        s => vec![s],
    };
    // compile runs $SRC/build.sh, which on OSS-Fuzz is the generated one-line projects/ copy.
    let project_build_sh = base.join("projects").join(PROJECT).join("build.sh");
    match layout_src(&mut report, &base) {
        Some(src) if project_build_sh.is_file() => {
            for san in sans {
                build_and_check(&mut report, &base, san, &src, &project_build_sh, args.runs);
            }
        }
        _ => report.build_failed = true,
    }
    println!();
    let rows: Vec<Vec<String>> = report
        .rows
        .iter()
        .map(|r| {
            vec![
                status_word(r.status).to_string(),
                r.name.clone(),
                fmt_dur(r.time),
                r.detail.clone(),
            ]
        })
        .collect();
    say!(
        "oss-fuzz",
        "summary ({}, {})",
        value_name(args.sanitizer),
        fmt_dur(t.elapsed())
    );
    print!("{}", table(&["status", "check", "time", "detail"], &rows));
    let failed = report
        .rows
        .iter()
        .filter(|r| r.status == Status::Failed)
        .count();
    let todo = report
        .rows
        .iter()
        .filter(|r| r.status == Status::Todo)
        .count();
    let n = report.rows.len();
    if failed > 0 || report.build_failed {
        println!("oss-fuzz: {failed} of {n} checks failed");
        return Ok(if report.build_failed {
            EXIT_SETUP
        } else {
            EXIT_FINDING
        });
    }
    let todo = match todo {
        0 => String::new(),
        k => format!(" ({k} todo before submitting)"),
    };
    println!("oss-fuzz: {n} checks ok{todo}");
    Ok(EXIT_OK)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dict_parser() {
        assert_eq!(
            parse_dict("# c\n\nkw=\"\\xFF\\x00\"\n\"ab\\\\\\\"\"\n"),
            Ok(2)
        );
        assert!(parse_dict("kw=\"\\xG0\"").is_err());
        assert!(parse_dict("kw=\"abc").is_err());
        assert!(parse_dict("kw=\"\"").is_err());
        assert!(parse_dict("k w=\"a\"").is_err());
        assert!(parse_dict("# only comments\n").is_err());
    }

    #[test]
    fn options_parser() {
        assert_eq!(
            parse_options("# c\n[libfuzzer]\nmax_len = 4096\ntimeout=25\n[asan]\nx = 1\n"),
            Ok(vec!["-max_len=4096".to_string(), "-timeout=25".to_string()])
        );
        assert!(parse_options("max_len = 1\n").is_err());
        assert!(parse_options("[asan]\nx = 1\n").is_err());
        assert!(parse_options("[libfuzzer]\nmax_len\n").is_err());
        assert!(parse_options("[libfuzzer\n").is_err());
    }

    #[test]
    fn committed_dict_and_options_parse() {
        let dir = root().join("oss-fuzz");
        let dict = fs::read_to_string(dir.join("kvm-pgtable-diff.dict")).unwrap();
        // 22 op tags and the race tag, 2 mode bytes, 10 u64 literals, 4 u32 literals, 4
        // permission-fault phrases, 2 split phrases, 3 lost-race phrases.
        assert_eq!(parse_dict(&dict), Ok(48));
        let opts = fs::read_to_string(dir.join("kvm-pgtable-diff.options")).unwrap();
        assert_eq!(
            parse_options(&opts),
            Ok(vec![
                "-max_len=4096".to_string(),
                "-len_control=0".to_string(),
                "-timeout=25".to_string(),
                "-entropic_scale_per_exec_time=1".to_string()
            ])
        );
    }

    #[test]
    fn yaml_subset() {
        let y = parse_yaml(
            "# c\nmain_repo: \"https://x/y.git\"  # note\nlanguage: rust\nauto_ccs: []\n\
             sanitizers:\n  - address\n  - undefined\n",
        )
        .unwrap();
        assert_eq!(
            yaml_scalar(&y, "main_repo").as_deref(),
            Some("https://x/y.git")
        );
        assert_eq!(yaml_list(&y, "sanitizers"), ["address", "undefined"]);
        assert_eq!(yaml_list(&y, "auto_ccs"), Vec::<String>::new());
        assert!(parse_yaml("a:\n  b: c\n").is_err());
        assert!(parse_yaml("a: 1\na: 2\n").is_err());
    }

    #[test]
    fn project_yaml_rules() {
        let good = "main_repo: \"https://h/r.git\"\nlanguage: rust\nprimary_contact: \"a@b.org\"\n\
                    sanitizers:\n  - address\n  - undefined\n";
        assert_eq!(
            check_project_yaml("kvm-pgtable-diff", good),
            Vec::<String>::new()
        );
        let bad = "language: cobol\nprimary_contact: nobody\nsanitizers:\n  - leak\nhome: x\n";
        let p = check_project_yaml("Bad_Name", bad);
        for want in [
            "leak",
            "main_repo",
            "home is not",
            "invalid email",
            "cobol",
            "Bad_Name",
        ] {
            assert!(p.iter().any(|m| m.contains(want)), "{want} in {p:?}");
        }
        assert_eq!(check_project_yaml("my-google-fuzz", good).len(), 1);
    }

    #[test]
    fn base_os_rule() {
        let legacy = "language: rust\n";
        let from = |tag: &str| {
            format!("# c: x\nFROM gcr.io/oss-fuzz-base/base-builder-rust{tag}\nRUN x\n")
        };
        assert!(check_base_os(&from(":latest"), legacy).is_ok());
        let e = check_base_os(&from(""), legacy).unwrap_err();
        assert!(e.contains("missing tag"), "{e}");
        assert!(check_base_os(&from(":ubuntu-24-04"), legacy).is_err());
        let u24 = "language: rust\nbase_os_version: ubuntu-24-04\n";
        assert!(check_base_os(&from(":ubuntu-24-04"), u24).is_ok());
        assert!(check_base_os(&from(":latest"), "base_os_version: ubuntu-20-04\n").is_err());
    }

    #[test]
    fn generated_project_files() {
        let p = project_files(&root()).unwrap();
        let get = |n: &str| &p.files.iter().find(|(f, _)| *f == n).unwrap().1;
        let dockerfile = get("Dockerfile");
        assert!(dockerfile.contains(LICENSE_STRING));
        assert!(!dockerfile.contains("SPDX-License-Identifier: GPL"));
        assert!(!dockerfile.contains("@MAIN_REPO@"));
        let build = get("build.sh");
        let code: Vec<&str> = build.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(
            code,
            ["exec bash -euo pipefail \"$SRC/kvm-pgtable-diff/oss-fuzz/build.sh\" \"$@\""]
        );
        let y = parse_yaml(get("project.yaml")).unwrap();
        let repo = yaml_scalar(&y, "main_repo").unwrap();
        assert_eq!(
            yaml_scalar(&y, "homepage").unwrap(),
            repo.trim_end_matches(".git")
        );
        assert!(dockerfile.contains(&format!("git clone --depth 1 {repo} kvm-pgtable-diff")));
        let dir = Path::new("/x/projects/kvm-pgtable-diff");
        assert_eq!(presubmit(dir, &p), Vec::<String>::new());
    }

    #[test]
    fn presubmit_catches_a_missing_licence() {
        let p = ProjectFiles {
            files: vec![
                (
                    "Dockerfile",
                    "FROM x:latest\nRUN apt-get install y\n".into(),
                ),
                (
                    "build.sh",
                    "#!/bin/bash\n$CC -lFuzzingEngine x.c # ok in a comment\n".into(),
                ),
                ("project.yaml", "main_repo: \"u\"\nlanguage: rust\n".into()),
            ],
            placeholders: vec![],
        };
        let problems = presubmit(Path::new("/x/projects/p"), &p);
        assert_eq!(problems.len(), 4, "{problems:?}");
    }

    #[test]
    fn dockerignore_subset() {
        let ig = DockerIgnore::parse("# c\n.cache\n/target\nfuzz/target\n**/*.profraw\n").unwrap();
        for p in [
            ".cache",
            ".cache/linux-source-6.12/x.c",
            "target/debug/x",
            "fuzz/target",
            "a/b/c.profraw",
            "x.profraw",
        ] {
            assert!(ig.excludes(Path::new(p)), "{p}");
        }
        for p in [
            "src/target",
            "fuzz/targets",
            "cache",
            "fuzz/corpus/x",
            "x.profraw.txt",
        ] {
            assert!(!ig.excludes(Path::new(p)), "{p}");
        }
        assert!(DockerIgnore::parse("!keep\n").is_err());
        let committed =
            DockerIgnore::parse(&fs::read_to_string(root().join(".dockerignore")).unwrap())
                .unwrap();
        assert!(!committed.excludes(Path::new("oss-fuzz/build.sh")));
        assert!(committed.excludes(Path::new(".cache")));
    }

    #[test]
    fn objdump_call_counting() {
        let asan = "  4011d6:\te8 25 fe ff ff       \tcall   401000 <__asan_report_load8>";
        let ubsan = "  4011d6:\te8 25 fe ff ff       \tcallq  401000 <__ubsan_handle_shift_out_of_bounds_abort>";
        assert_eq!(call_target(asan), Some("__asan"));
        assert_eq!(call_target(ubsan), Some("__ubsan"));
        assert_eq!(
            call_target("  40: e8 00 \tcall   401000 <memcpy@plt>"),
            None
        );
        assert_eq!(
            call_target("  40: ff 15 \tcall   *0x2fe2(%rip)   # <__asan_x>"),
            None
        );
        assert_eq!(call_target("0000000000401000 <__asan_report_load8>:"), None);
    }

    #[test]
    fn libfuzzer_edges_line() {
        let out = "INFO: Seed: 1337\nINFO: Loaded 1 modules   (43210 inline 8-bit counters): 43210 [0x1, 0x2),\n";
        assert_eq!(loaded_edges(out), Some(43210));
        assert_eq!(
            loaded_edges("INFO: Loaded 1 PC tables (43210 PCs): 43210 [0x1,0x2),\n"),
            None
        );
    }

    #[test]
    fn fetch_kernel_sh_fetches_every_line_and_refuses_other_bytes() {
        let tmp = std::env::temp_dir().join(format!("kpd-fetch-test-{}", std::process::id()));
        let _ = fs::remove_dir_all(&tmp);
        let lock_path = root().join("kernel.lock");
        let lock = Lock::read(&lock_path).unwrap();
        let script = root().join("oss-fuzz").join("fetch-kernel.sh");
        let (mirror, dest, log) = (tmp.join("mirror"), tmp.join("src"), tmp.join("log"));
        make_mirror(&mirror, &lock, None).unwrap();
        run_fetch(&script, &lock_path, &dest, &mirror, &log).unwrap();
        for line in &lock.lines {
            for (hash, f) in &line.files {
                let got =
                    crate::util::sha256_file(&dest.join(format!("linux-{}", line.name)).join(f));
                assert_eq!(got.unwrap(), *hash, "{} {f}", line.name);
            }
        }
        let last = &lock.lines.last().unwrap().files[0].1;
        make_mirror(&mirror, &lock, Some(last)).unwrap();
        let e = run_fetch(&script, &lock_path, &dest, &mirror, &log).unwrap_err();
        assert!(e.contains(last.as_str()) && e.contains("pins"), "{e}");
        let e = run_fetch(&script, &lock_path, &dest, &tmp.join("no-mirror"), &log).unwrap_err();
        assert!(e.contains("cannot download"), "{e}");
        let _ = fs::remove_dir_all(&tmp);
    }

    #[test]
    fn api_errors_need_glue_pragmas() {
        let tmp = std::env::temp_dir().join(format!("kpd-api-test-{}", std::process::id()));
        let glue = fs::read_to_string(root().join("c-shim/glue.c")).unwrap();
        assert!(api_errors_hold(&glue, &tmp).is_ok());
        let stripped: String = glue
            .lines()
            .filter(|l| !l.starts_with("#pragma clang diagnostic"))
            .map(|l| format!("{l}\n"))
            .collect();
        let e = api_errors_hold(&stripped, &tmp).unwrap_err();
        assert!(e.contains("-Wincompatible-function-pointer-types"), "{e}");
        let _ = fs::remove_dir_all(&tmp);
    }

    #[test]
    fn compile_flags_as_the_image() {
        let u = compile_cflags(OssSanitizer::Undefined);
        assert!(u.starts_with(BASE_CLANG_CFLAGS));
        assert!(u.ends_with("-fsanitize=fuzzer-no-link -fno-sanitize=function"));
        let c = compile_cflags(OssSanitizer::Coverage);
        assert!(c.contains("-fprofile-instr-generate") && !c.contains("fuzzer-no-link"));
        assert!(!compile_rustflags(OssSanitizer::Undefined).contains("-Zsanitizer"));
    }
}
