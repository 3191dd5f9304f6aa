//! Parsing libFuzzer's stderr: progress lines, final stats, errors, artifacts.

/// What we know about a libFuzzer run from its output so far.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Progress {
    /// `#N` of the latest status line.
    pub execs: u64,
    pub cov: u64,
    pub ft: u64,
    /// Units in the in-memory corpus (`corp: K/...`).
    pub corp: u64,
    pub exec_s: u64,
    /// `stat::number_of_executed_units` (with -print_final_stats=1).
    pub final_execs: Option<u64>,
    /// `stat::average_exec_per_sec`.
    pub final_exec_s: Option<u64>,
    /// First `ERROR:` line (sanitizer or libFuzzer), if any.
    pub error: Option<String>,
}

impl Progress {
    pub fn feed(&mut self, line: &str) {
        let t = line.trim();
        if let Some(rest) = t.strip_prefix('#') {
            let mut toks = rest.split_whitespace();
            // Fork mode's parent writes `#N: cov: ...`.
            let Some(Ok(n)) = toks.next().map(|n| n.trim_end_matches(':').parse::<u64>()) else {
                return;
            };
            self.execs = n;
            let toks: Vec<&str> = toks.collect();
            for w in toks.windows(2) {
                let num = |s: &str| s.split('/').next().and_then(|x| x.parse::<u64>().ok());
                match (w[0], num(w[1])) {
                    ("cov:", Some(v)) => self.cov = v,
                    ("ft:", Some(v)) => self.ft = v,
                    ("corp:", Some(v)) => self.corp = v,
                    ("exec/s:", Some(v)) => self.exec_s = v,
                    _ => {}
                }
            }
        } else if let Some(v) = t.strip_prefix("stat::number_of_executed_units:") {
            self.final_execs = v.trim().parse().ok();
        } else if let Some(v) = t.strip_prefix("stat::average_exec_per_sec:") {
            self.final_exec_s = v.trim().parse().ok();
        } else if self.error.is_none() && is_error_line(t) {
            self.error = Some(t.to_string());
        }
    }

    pub fn total_execs(&self) -> u64 {
        self.final_execs.unwrap_or(self.execs)
    }

    /// Average exec/s: libFuzzer's final stat, else the last status line's.
    pub fn avg_exec_s(&self) -> u64 {
        self.final_exec_s.filter(|&v| v > 0).unwrap_or(self.exec_s)
    }
}

/// `==123== ERROR: libFuzzer: deadly signal`, `==1==ERROR: AddressSanitizer: ...`, etc.
pub fn is_error_line(t: &str) -> bool {
    t.starts_with("==") && t.contains("ERROR:")
}

/// Whether a file name in the artifact dir is a finding (not e.g. a slow unit).
pub fn is_finding_artifact(name: &str) -> bool {
    ["crash-", "leak-", "timeout-", "oom-"]
        .iter()
        .any(|p| name.starts_with(p))
}

/// libFuzzer's exit code after SIGINT (-interrupted_exitcode default).
pub const INTERRUPTED_EXIT: i32 = 72;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_status_and_stats() {
        let mut p = Progress::default();
        p.feed("#2\tINITED cov: 12 ft: 13 corp: 1/1b exec/s: 0 rss: 30Mb");
        p.feed(
            "#524288\tpulse  cov: 345 ft: 1024 corp: 67/2048b lim: 4096 exec/s: 26214 rss: 412Mb",
        );
        assert_eq!(
            (p.execs, p.cov, p.ft, p.corp, p.exec_s),
            (524288, 345, 1024, 67, 26214)
        );
        p.feed("#1200000\tDONE   cov: 350 ft: 1100 corp: 70/2k lim: 4096 exec/s: 20000 rss: 420Mb");
        p.feed("stat::number_of_executed_units: 1200001");
        p.feed("stat::average_exec_per_sec:     19999");
        assert_eq!(
            (p.total_execs(), p.avg_exec_s(), p.corp),
            (1200001, 19999, 70)
        );
        assert!(p.error.is_none());
        let mut f = Progress::default();
        f.feed("#81234: cov: 400 ft: 1500 corp: 90 exec/s: 2706 oom/timeout/crash: 0/0/0 time: 30s job: 7 dft_time: 0");
        assert_eq!(
            (f.total_execs(), f.cov, f.ft, f.corp, f.avg_exec_s()),
            (81234, 400, 1500, 90, 2706)
        );
    }

    #[test]
    fn parses_crash() {
        let mut p = Progress::default();
        p.feed("==4242== ERROR: libFuzzer: deadly signal");
        p.feed("artifact_prefix='/w/fuzz/artifacts/stage2/'; Test unit written to /w/fuzz/artifacts/stage2/crash-da39a3ee");
        assert_eq!(
            p.error.as_deref(),
            Some("==4242== ERROR: libFuzzer: deadly signal")
        );
        assert!(is_finding_artifact("crash-da39a3ee") && !is_finding_artifact("slow-unit-1"));
    }
}
