//! `cargo xtask test`: the project's test suite as a list of steps with a summary table.
//!
//! To add a step, append to [`STEPS`]. A step returns test counts (if it has any) or a
//! [`Fail`]: exit code 2 (setup) or 1 (test failure). A failing `required` step skips the rest.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::Instant;

use crate::say;
use crate::setup;
use crate::util::{
    EXIT_FINDING, EXIT_OK, EXIT_SETUP, Fail, Res, finding, fmt_dur, root, setup_err, table,
};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub passed: u64,
    pub failed: u64,
    pub ignored: u64,
}

impl Counts {
    fn add(&mut self, o: Counts) {
        self.passed += o.passed;
        self.failed += o.failed;
        self.ignored += o.ignored;
    }
}

pub struct Step {
    pub name: &'static str,
    /// A failure here skips the remaining steps.
    pub required: bool,
    pub run: fn() -> Res<Option<Counts>>,
}

/// The steps of `cargo xtask test`, in order.
pub const STEPS: &[Step] = &[
    Step {
        name: "setup",
        required: true,
        run: step_setup,
    },
    Step {
        name: "cargo test --workspace",
        required: false,
        run: step_cargo_test,
    },
];

fn step_setup() -> Res<Option<Counts>> {
    setup::setup(setup::Opts { fuzz: false })?;
    Ok(None)
}

fn step_cargo_test() -> Res<Option<Counts>> {
    let mut cmd = Command::new("cargo");
    cmd.args(["test", "--workspace", "--no-fail-fast"])
        .current_dir(root());
    let (ok, counts) = stream_cargo_test(&mut cmd)?;
    if ok {
        Ok(Some(counts))
    } else {
        Err(finding(format!(
            "cargo test failed ({} failed)",
            counts.failed
        )))
    }
}

/// Runs a `cargo test`-like command, echoing its stdout, summing `test result:` lines.
pub fn stream_cargo_test(cmd: &mut Command) -> Res<(bool, Counts)> {
    let mut child = cmd
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| setup_err(format!("cannot run cargo: {e}")))?;
    let mut total = Counts::default();
    let out = child.stdout.take().unwrap();
    let mut so = std::io::stdout();
    for line in BufReader::new(out).split(b'\n') {
        let Ok(line) = line else { break };
        let line = String::from_utf8_lossy(&line);
        let _ = writeln!(so, "{line}");
        if let Some(c) = parse_test_result(&line) {
            total.add(c);
        }
    }
    let st = child.wait().map_err(|e| setup_err(format!("cargo: {e}")))?;
    Ok((st.success(), total))
}

/// Parses `test result: ok. 3 passed; 1 failed; 2 ignored; ...`.
pub fn parse_test_result(line: &str) -> Option<Counts> {
    let rest = line.trim().strip_prefix("test result:")?;
    let mut c = Counts::default();
    for part in rest.split(';') {
        let mut w = part.split_whitespace().rev();
        let (Some(kind), Some(n)) = (w.next(), w.next()) else {
            continue;
        };
        let Ok(n) = n.parse::<u64>() else { continue };
        match kind {
            "passed" => c.passed = n,
            "failed" => c.failed = n,
            "ignored" => c.ignored = n,
            _ => {}
        }
    }
    Some(c)
}

enum Status {
    Ok(Option<Counts>),
    Failed(Fail),
    Skipped,
}

/// Runs all steps, prints the summary, returns the exit code.
pub fn run_all() -> u8 {
    let mut results: Vec<(&str, Status, std::time::Duration)> = vec![];
    let mut stop = false;
    for step in STEPS {
        if stop {
            results.push((step.name, Status::Skipped, Default::default()));
            continue;
        }
        say!("test", "step: {}", step.name);
        let t = Instant::now();
        let r = (step.run)();
        let dt = t.elapsed();
        match r {
            Ok(c) => results.push((step.name, Status::Ok(c), dt)),
            Err(f) => {
                eprintln!("[test] {}: {}", step.name, f.msg);
                stop |= step.required;
                results.push((step.name, Status::Failed(f), dt));
            }
        }
    }

    let mut total = Counts::default();
    let mut code = EXIT_OK;
    let rows: Vec<Vec<String>> = results
        .iter()
        .map(|(name, st, dt)| {
            let (status, note) = match st {
                Status::Ok(c) => {
                    let note = c.map(|c| {
                        total.add(c);
                        format!(
                            "{} passed, {} failed, {} ignored",
                            c.passed, c.failed, c.ignored
                        )
                    });
                    ("ok", note.unwrap_or_default())
                }
                Status::Failed(f) => {
                    code = code.max(if f.code == EXIT_SETUP {
                        EXIT_SETUP
                    } else {
                        EXIT_FINDING
                    });
                    ("FAILED", f.msg.clone())
                }
                Status::Skipped => ("skipped", String::new()),
            };
            let time = if matches!(st, Status::Skipped) {
                "-".into()
            } else {
                fmt_dur(*dt)
            };
            vec![name.to_string(), status.to_string(), time, note]
        })
        .collect();
    // Failed steps' counts are unknown; count each failed step as one failure at least.
    let failed_steps = results
        .iter()
        .filter(|(_, s, _)| matches!(s, Status::Failed(_)))
        .count() as u64;
    println!();
    say!("test", "summary");
    print!("{}", table(&["step", "status", "time", "notes"], &rows));
    println!(
        "tests: {} passed, {} failed, {} skipped",
        total.passed,
        total.failed.max(failed_steps),
        total.ignored
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
}
