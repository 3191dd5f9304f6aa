// SPDX-License-Identifier: GPL-2.0-only
//! `kpd-bench`: time per input of the C side alone, the Rust side alone and
//! the full differential run, on fixed scenarios (`bench/inputs/*.txt`).
//!
//! Run through `cargo xtask bench`, or directly:
//! `cargo bench -p kvm-pgtable-diff --bench kpd-bench -- [OPTIONS] [FILES/DIRS]`.
//!
//! Method: every input is run once as a warm-up (and must not diverge), then
//! `--rounds` rounds each time `C`, `Rust` and `diff` in turn, each over as
//! many iterations as fit in `--round-ms`; the reported time per run is the
//! median over rounds of the per-round average. Interleaving the three modes
//! round by round keeps machine noise from favouring one of them.
//!
//! Output: a human table, plus one machine-readable line per input
//! (`result NAME ops=N events=E c_ns=A rust_ns=B diff_ns=D`) and a final
//! `total c_ns=A rust_ns=B diff_ns=D` line with the means over inputs.
//!
//! `--mode c|rust|diff --iters N` instead runs only that mode N times per
//! input, with no timing: a steady workload for `perf` or `valgrind`.
#![deny(unsafe_op_in_unsafe_fn, clippy::undocumented_unsafe_blocks)]

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use kvm_pgtable_diff::c_side::CSide;
use kvm_pgtable_diff::executor::{self, RunOptions};
use kvm_pgtable_diff::fuzz;
use kvm_pgtable_diff::opstream::{self, ForcePtePolicy, OpStream};
use kvm_pgtable_diff::rust_side::RustSide;

const USAGE: &str =
    "usage: kpd-bench [--rounds N] [--round-ms MS] [--mode c|rust|diff --iters N] [FILES/DIRS...]
  default inputs: bench/inputs/
  --rounds N     timing rounds per input (default 5)
  --round-ms MS  time budget of each mode per round per input (default 60)
  --mode M       profile mode: run only M (c, rust or diff), --iters times per input, untimed
  --iters N      iterations per input in --mode (default 2000)";

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    C,
    Rust,
    Diff,
}

struct Opts {
    rounds: usize,
    round: Duration,
    mode: Option<Mode>,
    iters: u64,
    inputs: Vec<PathBuf>,
}

fn parse_args() -> Result<Opts, String> {
    let mut o = Opts {
        rounds: 5,
        round: Duration::from_millis(60),
        mode: None,
        iters: 2000,
        inputs: Vec::new(),
    };
    let mut args = std::env::args().skip(1);
    let num = |v: Option<String>, what: &str| -> Result<u64, String> {
        v.as_deref()
            .and_then(|s| s.parse::<u64>().ok())
            .filter(|&n| n > 0)
            .ok_or_else(|| format!("{what} needs a positive number\n{USAGE}"))
    };
    while let Some(a) = args.next() {
        match a.as_str() {
            // `cargo bench` passes --bench to every bench binary.
            "--bench" => {}
            "--rounds" => o.rounds = num(args.next(), "--rounds")? as usize,
            "--round-ms" => o.round = Duration::from_millis(num(args.next(), "--round-ms")?),
            "--iters" => o.iters = num(args.next(), "--iters")?,
            "--mode" => {
                o.mode = Some(match args.next().as_deref() {
                    Some("c") => Mode::C,
                    Some("rust") => Mode::Rust,
                    Some("diff") => Mode::Diff,
                    _ => return Err(format!("--mode needs c, rust or diff\n{USAGE}")),
                })
            }
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            s if s.starts_with('-') => return Err(format!("unknown option `{s}`\n{USAGE}")),
            _ => o.inputs.push(PathBuf::from(a)),
        }
    }
    if o.inputs.is_empty() {
        o.inputs
            .push(Path::new(env!("CARGO_MANIFEST_DIR")).join("bench/inputs"));
    }
    Ok(o)
}

fn files(inputs: &[PathBuf]) -> Result<Vec<PathBuf>, String> {
    let mut out = Vec::new();
    for p in inputs {
        if p.is_dir() {
            let mut v: Vec<PathBuf> = std::fs::read_dir(p)
                .map_err(|e| format!("cannot read {}: {e}", p.display()))?
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "txt"))
                .collect();
            v.sort();
            out.extend(v);
        } else if p.is_file() {
            out.push(p.clone());
        } else {
            return Err(format!("{} does not exist", p.display()));
        }
    }
    if out.is_empty() {
        return Err("no *.txt inputs found".into());
    }
    Ok(out)
}

struct Input {
    name: String,
    stream: OpStream,
    opts: RunOptions,
}

fn load(p: &Path) -> Result<Input, String> {
    let text =
        std::fs::read_to_string(p).map_err(|e| format!("cannot read {}: {e}", p.display()))?;
    let stream = opstream::parse(&text).map_err(|e| format!("{}: {e}", p.display()))?;
    executor::validate(&stream).map_err(|e| format!("{}: {e}", p.display()))?;
    // Host stage-2 scenarios run with the host_stage2 target's options
    // (the owner invariant), as the fuzz target does.
    let target = match stream.config.force_pte {
        ForcePtePolicy::Host { .. } => "host_stage2",
        _ => "stage2",
    };
    Ok(Input {
        name: p
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default(),
        stream,
        opts: fuzz::options(target),
    })
}

fn once(inp: &Input, mode: Mode) {
    match mode {
        Mode::C => {
            let mut side = CSide::for_stream(&inp.stream.config);
            black_box(executor::run_single(black_box(&inp.stream), &mut side));
        }
        Mode::Rust => {
            let mut side = RustSide::for_stream(&inp.stream.config);
            black_box(executor::run_single(black_box(&inp.stream), &mut side));
        }
        Mode::Diff => {
            let r = executor::run(black_box(&inp.stream), inp.opts);
            black_box(r.is_ok());
        }
    }
}

/// Average ns per run of `mode` over as many runs as fit in `budget`.
fn measure(inp: &Input, mode: Mode, budget: Duration) -> f64 {
    let t0 = Instant::now();
    let mut n = 0u64;
    loop {
        // Batches of 8 keep the clock reads negligible.
        for _ in 0..8 {
            once(inp, mode);
        }
        n += 8;
        let el = t0.elapsed();
        if el >= budget {
            return el.as_nanos() as f64 / n as f64;
        }
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn main() -> ExitCode {
    let o = match parse_args() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let loaded: Result<Vec<Input>, String> =
        files(&o.inputs).and_then(|f| f.iter().map(|p| load(p)).collect());
    let inputs = match loaded {
        Ok(v) => v,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    // Warm-up and sanity: a benchmark input must not diverge.
    let mut events = Vec::new();
    for inp in &inputs {
        match executor::run(&inp.stream, inp.opts) {
            Ok(s) => events.push(s.events),
            Err(d) => {
                println!("{}: {}", inp.name, d.headline());
                eprintln!(
                    "error: bench input {} diverges; inspect it with `cargo run -p kvm-pgtable-diff -- show <file>`",
                    inp.name
                );
                return ExitCode::from(1);
            }
        }
    }
    if let Some(mode) = o.mode {
        let t = Instant::now();
        for inp in &inputs {
            for _ in 0..o.iters {
                once(inp, mode);
            }
        }
        println!(
            "ran {} inputs x {} iterations in {:.2?}",
            inputs.len(),
            o.iters,
            t.elapsed()
        );
        return ExitCode::SUCCESS;
    }

    println!(
        "{:<28} {:>4} {:>7} {:>10} {:>10} {:>10} {:>9} {:>7}",
        "input", "ops", "events", "C ns", "Rust ns", "diff ns", "overhead", "rust/c"
    );
    let (mut tc, mut tr, mut td) = (0.0, 0.0, 0.0);
    let mut machine = Vec::new();
    for (inp, ev) in inputs.iter().zip(&events) {
        let (mut c, mut r, mut d) = (vec![], vec![], vec![]);
        for _ in 0..o.rounds {
            c.push(measure(inp, Mode::C, o.round));
            r.push(measure(inp, Mode::Rust, o.round));
            d.push(measure(inp, Mode::Diff, o.round));
        }
        let (c, r, d) = (median(c), median(r), median(d));
        tc += c;
        tr += r;
        td += d;
        println!(
            "{:<28} {:>4} {:>7} {:>10.0} {:>10.0} {:>10.0} {:>9.2} {:>7.2}",
            inp.name,
            inp.stream.ops.len(),
            ev,
            c,
            r,
            d,
            d / (c + r),
            r / c
        );
        machine.push(format!(
            "result {} ops={} events={} c_ns={:.0} rust_ns={:.0} diff_ns={:.0}",
            inp.name,
            inp.stream.ops.len(),
            ev,
            c,
            r,
            d
        ));
    }
    let n = inputs.len() as f64;
    let (c, r, d) = (tc / n, tr / n, td / n);
    println!(
        "{:<28} {:>4} {:>7} {:>10.0} {:>10.0} {:>10.0} {:>9.2} {:>7.2}",
        "mean",
        "",
        "",
        c,
        r,
        d,
        d / (c + r),
        r / c
    );
    for m in machine {
        println!("{m}");
    }
    println!("total c_ns={c:.0} rust_ns={r:.0} diff_ns={d:.0}");
    ExitCode::SUCCESS
}
