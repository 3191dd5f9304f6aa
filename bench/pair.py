#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-only
"""Steady-state exec/s of two builds of one fuzz target, run at the same time (one core each).

    bench/pair.py TARGET SECONDS SEEDS A_BIN_DIR B_BIN_DIR [CORPUS_DIR]

For each seed 1..SEEDS, A's and B's binary of TARGET fuzz SECONDS at once, each from its own
empty work directory plus CORPUS_DIR (default fuzz/corpus/TARGET). Steady exec/s counts the
executions after libFuzzer's INITED line (the end of the corpus replay) over the time from that
line to the end. Prints each seed's pair, libFuzzer's final cov/ft, then the medians and the
median of the per-seed ratios B/A. EXTRA_A / EXTRA_B (environment) add libFuzzer flags to
one side, e.g. EXTRA_B=-entropic_scale_per_exec_time=1 with A_BIN_DIR = B_BIN_DIR.
"""
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(binary, seed, secs, corpus, extra, out):
    work = tempfile.mkdtemp(prefix="kpd-pair-")
    p = subprocess.Popen(
        [binary, f"-max_total_time={secs}", f"-seed={seed}", "-print_final_stats=1",
         "-timeout=60", "-rss_limit_mb=4096", f"-artifact_prefix={work}/"] + extra + [work, corpus],
        stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, errors="replace")
    inited, n0, total, crash, cov = None, 0, None, False, ""
    for line in p.stderr:
        m = re.match(r"#(\d+)\s+INITED", line)
        if m:
            inited, n0 = time.time(), int(m.group(1))
        m = re.match(r"stat::number_of_executed_units:\s+(\d+)", line)
        if m:
            total = int(m.group(1))
        m = re.match(r"#\d+\s+DONE\s+cov: (\d+) ft: (\d+)", line)
        if m:
            cov = f"cov {m.group(1)} ft {m.group(2)}"
        if "ERROR" in line or "deadly signal" in line:
            crash = True
    p.wait()
    end = time.time()
    shutil.rmtree(work, ignore_errors=True)
    out.extend([(total - n0) / (end - inited) if total and inited else float("nan"), crash, cov])


def main():
    if len(sys.argv) < 6:
        sys.exit(__doc__)
    target, secs, seeds, a_dir, b_dir = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
    corpus = sys.argv[6] if len(sys.argv) > 6 else os.path.join(ROOT, "fuzz", "corpus", target)
    xa, xb = os.environ.get("EXTRA_A", "").split(), os.environ.get("EXTRA_B", "").split()
    ra, rb = [], []
    for seed in range(1, seeds + 1):
        a, b = [], []
        ta = threading.Thread(target=run, args=(os.path.join(a_dir, target), seed, secs, corpus, xa, a))
        tb = threading.Thread(target=run, args=(os.path.join(b_dir, target), seed, secs, corpus, xb, b))
        ta.start(); tb.start(); ta.join(); tb.join()
        ra.append(a[0]); rb.append(b[0])
        flag = " CRASH" if a[1] or b[1] else ""
        print(f"{target} seed {seed}: A {a[0]:.1f} B {b[0]:.1f} B/A {b[0] / a[0]:.2f}  A {a[2]}  B {b[2]}{flag}", flush=True)
    ratio = statistics.median([y / x for x, y in zip(ra, rb)])
    print(f"{target} median A {statistics.median(ra):.1f} B {statistics.median(rb):.1f} B/A {ratio:.2f}")


if __name__ == "__main__":
    main()
