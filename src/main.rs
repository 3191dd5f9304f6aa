// SPDX-License-Identifier: GPL-2.0-only
//! `kvm-pgtable-diff`: replay, inspect and convert op streams.
//!
//! Exit status: 0 no finding, 1 a finding, 2 bad usage or unreadable input.
#![deny(unsafe_op_in_unsafe_fn, clippy::undocumented_unsafe_blocks)]

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use kvm_pgtable_diff::executor::{self, RunOptions};
use kvm_pgtable_diff::fuzz;
use kvm_pgtable_diff::opstream::{self, OpStream, Profile};

#[derive(Parser)]
#[command(
    name = "kvm-pgtable-diff",
    about = "Differential fuzzer: Linux's arm64 KVM pgtable.c against rust-pgtable",
    after_help = "Inputs are readable scenarios (text starting with `kvm-pgtable-diff-stream v1`) or raw fuzzer inputs \
                  (crash files); raw inputs are decoded with the profile of --target, guessed from a \
                  fuzz/artifacts/<target>/ path when not given.\n\nExit status: 0 no finding, 1 finding, 2 usage or input error."
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run one input and print the divergence report (or a summary when both sides agree).
    Show {
        input: PathBuf,
        /// Fuzz target whose generator profile decodes a raw input.
        #[arg(long)]
        target: Option<String>,
        /// Also print every op's outcome and event trace (C side).
        #[arg(long)]
        trace: bool,
        /// Compare all live memory after every op, not only at the end.
        #[arg(long)]
        full_memory: bool,
        /// Run the C side alone, checked by the contract and architecture oracles (for kernel
        /// trees rust-pgtable does not model yet; also `KPD_C_ONLY=1`).
        #[arg(long)]
        c_only: bool,
    },
    /// Run many inputs (files or directories); report every finding.
    Run {
        inputs: Vec<PathBuf>,
        #[arg(long)]
        target: Option<String>,
        #[arg(long)]
        full_memory: bool,
        /// Run the C side alone (see `show --c-only`).
        #[arg(long)]
        c_only: bool,
    },
    /// Decode a raw fuzzer input to the readable text format.
    Decode {
        input: PathBuf,
        #[arg(long)]
        target: Option<String>,
    },
    /// Encode a readable scenario to the raw fuzzer input that decodes back to it.
    Encode {
        input: PathBuf,
        /// Output file (default: stdout is refused; give a path).
        #[arg(short, long)]
        output: PathBuf,
    },
}

struct Loaded {
    stream: OpStream,
    target: Option<String>,
}

fn guess_target(path: &Path) -> Option<String> {
    let comps: Vec<String> = path
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    comps.windows(2).find_map(|w| {
        (matches!(
            w[0].as_str(),
            "artifacts" | "corpus" | "corpus-work" | "scenarios"
        ) && fuzz::profile(&w[1]).is_some())
        .then(|| w[1].clone())
    })
}

fn load(path: &Path, target: Option<&str>) -> Result<Loaded, String> {
    if path.is_dir() {
        return Err(format!(
            "{} is a directory; `kvm-pgtable-diff run {0}` replays every file in it",
            path.display()
        ));
    }
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let target = target.map(str::to_owned).or_else(|| guess_target(path));
    if let Some(t) = &target {
        if fuzz::profile(t).is_none() {
            return Err(format!(
                "unknown target `{t}`; known: {}",
                fuzz::TARGETS.join(", ")
            ));
        }
    }
    if opstream::is_text(&bytes) {
        let text =
            String::from_utf8(bytes).map_err(|_| format!("{}: not UTF-8 text", path.display()))?;
        let stream = opstream::parse(&text).map_err(|e| {
            format!(
                "{}: {e}\n(a readable scenario starts with `{}`)",
                path.display(),
                opstream::TEXT_HEADER
            )
        })?;
        return Ok(Loaded { stream, target });
    }
    let profile = target
        .as_deref()
        .and_then(fuzz::profile)
        .unwrap_or(Profile::Any);
    Ok(Loaded {
        stream: opstream::decode(&bytes, profile),
        target,
    })
}

fn options(target: Option<&str>, full_memory: bool, c_only: bool) -> RunOptions {
    let mut o = target
        .map(fuzz::options)
        .unwrap_or_else(|| fuzz::options(""));
    o.full_memory_each_op = full_memory;
    o.c_only |= c_only;
    o
}

/// The files named, with directories expanded recursively (sorted).
fn files(inputs: &[PathBuf]) -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .collect();
        entries.sort();
        for p in entries {
            if p.is_dir() {
                walk(&p, out);
            } else if p.is_file() {
                out.push(p);
            }
        }
    }
    let mut out = Vec::new();
    for p in inputs {
        if p.is_dir() {
            walk(p, &mut out);
        } else {
            out.push(p.clone());
        }
    }
    out
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.cmd {
        Cmd::Show {
            input,
            target,
            trace,
            full_memory,
            c_only,
        } => show(&input, target.as_deref(), trace, full_memory, c_only),
        Cmd::Run {
            inputs,
            target,
            full_memory,
            c_only,
        } => run_many(&inputs, target.as_deref(), full_memory, c_only),
        Cmd::Decode { input, target } => load(&input, target.as_deref()).map(|l| {
            print!("{}", opstream::print(&l.stream));
            ExitCode::SUCCESS
        }),
        Cmd::Encode { input, output } => load(&input, None).and_then(|l| {
            std::fs::write(&output, opstream::encode(&l.stream))
                .map_err(|e| format!("cannot write {}: {e}", output.display()))?;
            Ok(ExitCode::SUCCESS)
        }),
    };
    result.unwrap_or_else(|e| {
        eprintln!("error: {e}");
        ExitCode::from(2)
    })
}

fn show(
    input: &Path,
    target: Option<&str>,
    trace: bool,
    full_memory: bool,
    c_only: bool,
) -> Result<ExitCode, String> {
    let l = load(input, target)?;
    executor::validate(&l.stream).map_err(|e| format!("{}: {e}", input.display()))?;
    let mut opts = options(l.target.as_deref(), full_memory, c_only);
    opts.keep_log = trace;
    match executor::run(&l.stream, opts) {
        Ok(summary) => {
            if trace {
                print_log(&l.stream, &summary.log);
            } else {
                print!("{}", l.stream.annotated(None));
            }
            let c = &l.stream.config;
            println!("caller: {} (Linux {})", c.caller().name(), c.kernel.name());
            if let Some(p) = &summary.panic {
                println!("{p}: both sides agree up to it; nothing after it is compared");
            }
            println!(
                "no divergence: {} ops run, {} skipped, {} events {}",
                summary.ops_run,
                summary.ops_skipped,
                summary.events,
                if opts.c_only {
                    "checked (C side alone)"
                } else {
                    "compared"
                }
            );
            for id in &summary.known {
                if let Some(k) = kvm_pgtable_diff::known::ALL.iter().find(|k| k.id == *id) {
                    println!(
                        "known kernel divergence {id}: {} ({})",
                        k.title, k.reproducer
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(d) => {
            if trace {
                print_log(&l.stream, &d.log);
            }
            println!("{d}");
            Ok(ExitCode::from(1))
        }
    }
}

fn print_log(stream: &OpStream, log: &[executor::Outcome]) {
    let names = std::iter::once("init".to_string())
        .chain(
            stream
                .op_lines()
                .into_iter()
                .map(|(i, s)| format!("#{i} {s}")),
        )
        .chain(std::iter::once("destroy".to_string()));
    for (name, o) in names.zip(log) {
        println!(
            "{name}\n  => {} (memcache left {:?})",
            o.value, o.memcache_left
        );
        for e in &o.trace {
            println!("     {e:x?}");
        }
    }
}

fn run_many(
    inputs: &[PathBuf],
    target: Option<&str>,
    full_memory: bool,
    c_only: bool,
) -> Result<ExitCode, String> {
    let files = files(inputs);
    if files.is_empty() {
        return Err("no input files".into());
    }
    let (mut ok, mut panics, mut findings) = (0, 0, 0);
    for f in &files {
        let l = load(f, target)?;
        if let Err(e) = executor::validate(&l.stream) {
            return Err(format!("{}: {e}", f.display()));
        }
        match executor::run(&l.stream, options(l.target.as_deref(), full_memory, c_only)) {
            Ok(s) => {
                ok += 1;
                if s.panic.is_some() {
                    panics += 1;
                }
            }
            Err(d) => {
                findings += 1;
                println!("{}: {}", f.display(), d.headline());
            }
        }
    }
    println!(
        "{} inputs: {ok} agree ({panics} ended in a hypervisor panic or kernel BUG), {findings} findings",
        files.len()
    );
    Ok(if findings == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
