//! `cargo xtask test`: the project's test suite as a list of steps with a summary table.
//!
//! To add a step, append to [`STEPS`]. A step adds the tests it ran to the [`Counts`] it is
//! given and returns `Ok(())` or a [`Fail`]: exit code 2 (setup) or 1 (test failure).
//! A failing `required` step skips the rest. The summary ends with the plain line
//! `tests: N passed, N failed, N skipped`, which CI reads.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::fuzz::TARGETS;
use crate::util::{
    Ctx, EXIT_FINDING, EXIT_OK, EXIT_SETUP, Fail, Res, finding, fmt_dur, root, run, table,
};
use crate::{ossfuzz, say, setup};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub passed: u64,
    pub failed: u64,
    pub ignored: u64,
}

impl Counts {
    pub fn add(&mut self, o: Counts) {
        self.passed += o.passed;
        self.failed += o.failed;
        self.ignored += o.ignored;
    }
}

pub struct Step {
    pub name: &'static str,
    /// A failure here skips the remaining steps.
    pub required: bool,
    pub run: fn(&mut Counts) -> Res,
}

const fn step(name: &'static str, required: bool, run: fn(&mut Counts) -> Res) -> Step {
    Step {
        name,
        required,
        run,
    }
}

const FMT: &str = "cargo fmt --all --check";
// Without --all: that would also take the fuzz crate's path dependencies (the root workspace,
// checked by FMT already).
const FMT_FUZZ: &str = "cargo fmt --check --manifest-path fuzz/Cargo.toml";
const CLIPPY: &str = "cargo clippy --workspace --all-targets -- -D warnings";

/// The steps of `cargo xtask test`, in order.
pub const STEPS: &[Step] = &[
    step("setup", true, |_| setup::setup(setup::Opts { fuzz: false })),
    step(FMT, false, |c| check(c, FMT, "run: cargo fmt --all")),
    step(FMT_FUZZ, false, |c| {
        check(
            c,
            FMT_FUZZ,
            "run: cargo fmt --manifest-path fuzz/Cargo.toml",
        )
    }),
    step(CLIPPY, false, |c| {
        let fix =
            "fix the warnings above (`cargo clippy --fix --workspace --all-targets` fixes some)";
        check(c, CLIPPY, fix)
    }),
    step("cargo test --workspace", false, step_cargo_test),
    step("oss-fuzz", false, step_oss_fuzz),
];

/// A style check: the command `cmd` (`cargo ...`) must pass (one test); else `fix` says what
/// to do.
fn check(counts: &mut Counts, cmd: &str, fix: &str) -> Res {
    let args: Vec<&str> = cmd.split_whitespace().skip(1).collect();
    if run(Command::new("cargo").args(args).current_dir(root()))?.success() {
        counts.passed += 1;
        Ok(())
    } else {
        Err(finding(format!("`{cmd}` failed; {fix}")))
    }
}

/// The ASan OSS-Fuzz emulation with 1000 runs per target; each target counts as one test.
fn step_oss_fuzz(counts: &mut Counts) -> Res {
    let args = ossfuzz::Args {
        sanitizer: ossfuzz::OssSanitizer::Address,
        runs: 1000,
    };
    if ossfuzz::run(args)? == EXIT_OK {
        counts.passed += TARGETS.len() as u64;
        Ok(())
    } else {
        Err(finding("oss-fuzz check failed (see the table above)"))
    }
}

fn step_cargo_test(counts: &mut Counts) -> Res {
    let mut cmd = Command::new("cargo");
    cmd.args(["test", "--workspace", "--no-fail-fast"])
        .current_dir(root());
    let (ok, c) = stream_cargo_test(&mut cmd)?;
    counts.add(c);
    if ok {
        Ok(())
    } else if c.failed > 0 {
        Err(finding(format!("{} test(s) failed", c.failed)))
    } else {
        Err(finding(
            "cargo test failed (build error or crashed test binary; see above)",
        ))
    }
}

/// Runs a `cargo test`-like command, echoing its stdout, summing `test result:` lines.
pub fn stream_cargo_test(cmd: &mut Command) -> Res<(bool, Counts)> {
    let mut child = cmd.stdout(Stdio::piped()).spawn().ctx("cannot run cargo")?;
    let mut total = Counts::default();
    let out = BufReader::new(child.stdout.take().unwrap());
    for line in out.split(b'\n').map_while(Result::ok) {
        let line = String::from_utf8_lossy(&line);
        let _ = writeln!(std::io::stdout(), "{line}");
        if let Some(c) = parse_test_result(&line) {
            total.add(c);
        }
    }
    let st = child.wait().ctx("cargo")?;
    Ok((st.success(), total))
}

/// Parses `test result: ok. 3 passed; 1 failed; 2 ignored; ...`.
pub fn parse_test_result(line: &str) -> Option<Counts> {
    let rest = line.trim().strip_prefix("test result:")?;
    let mut c = Counts::default();
    for part in rest.split(';') {
        let mut w = part.split_whitespace().rev();
        let (Some(kind), Some(Ok(n))) = (w.next(), w.next().map(str::parse)) else {
            continue;
        };
        match kind {
            "passed" => c.passed = n,
            "failed" => c.failed = n,
            "ignored" => c.ignored = n,
            _ => {}
        }
    }
    Some(c)
}

struct StepResult {
    name: &'static str,
    /// None: skipped.
    outcome: Option<Res>,
    counts: Counts,
    time: Duration,
}

/// Runs all steps, prints the summary, returns the exit code.
pub fn run_all() -> u8 {
    let mut results: Vec<StepResult> = vec![];
    let mut stop = false;
    for step in STEPS {
        let (name, mut counts, t) = (step.name, Counts::default(), Instant::now());
        let outcome = (!stop).then(|| {
            say!("test", "step: {name}");
            (step.run)(&mut counts)
        });
        if let Some(Err(f)) = &outcome {
            eprintln!("[test] {name}: {}", f.msg);
            stop |= step.required;
        }
        let time = t.elapsed();
        results.push(StepResult {
            name,
            outcome,
            counts,
            time,
        });
    }
    print_summary(&results)
}

fn print_summary(results: &[StepResult]) -> u8 {
    let mut total = Counts::default();
    let mut code = EXIT_OK;
    let mut rows = vec![];
    for r in results {
        total.add(r.counts);
        let (status, time) = match &r.outcome {
            None => ("skipped", "-".to_string()),
            Some(Ok(())) => ("ok", fmt_dur(r.time)),
            Some(Err(Fail { code: c, .. })) => {
                code = code.max(if *c == EXIT_SETUP {
                    EXIT_SETUP
                } else {
                    EXIT_FINDING
                });
                // A failure without a failed test (build error, crash) still counts as one.
                total.failed += (r.counts.failed == 0) as u64;
                ("FAILED", fmt_dur(r.time))
            }
        };
        let mut notes = vec![];
        let Counts {
            passed,
            failed,
            ignored,
        } = r.counts;
        if r.counts != Counts::default() {
            notes.push(format!(
                "{passed} passed, {failed} failed, {ignored} ignored"
            ));
        }
        if let Some(Err(f)) = &r.outcome {
            notes.push(f.msg.clone());
        }
        rows.push(vec![r.name.into(), status.into(), time, notes.join("; ")]);
    }
    println!();
    say!("test", "summary");
    print!("{}", table(&["step", "status", "time", "notes"], &rows));
    println!(
        "tests: {} passed, {} failed, {} skipped",
        total.passed, total.failed, total.ignored
    );
    code
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_cargo_test_summary() {
        let c = parse_test_result(
            "test result: FAILED. 3 passed; 1 failed; 2 ignored; 0 measured; 0 filtered out; finished in 0.01s",
        )
        .unwrap();
        assert_eq!(
            c,
            Counts {
                passed: 3,
                failed: 1,
                ignored: 2
            }
        );
        assert_eq!(parse_test_result("running 3 tests"), None);
    }

    #[test]
    fn summary_exit_codes() {
        let ok = |name, n| StepResult {
            name,
            outcome: Some(Ok(())),
            counts: Counts {
                passed: n,
                ..Default::default()
            },
            time: Duration::ZERO,
        };
        assert_eq!(print_summary(&[ok("a", 1), ok("b", 2)]), EXIT_OK);
        let failed = StepResult {
            outcome: Some(Err(finding("x"))),
            ..ok("c", 3)
        };
        assert_eq!(print_summary(&[ok("a", 1), failed]), EXIT_FINDING);
        let setup = StepResult {
            outcome: Some(Err(crate::util::setup_err("y"))),
            ..ok("s", 0)
        };
        let skipped = StepResult {
            outcome: None,
            ..ok("t", 0)
        };
        assert_eq!(print_summary(&[setup, skipped]), EXIT_SETUP);
    }
}
