#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-only
"""Corpus-replay speed of two builds of one fuzz target, alternated A B A B.

    bench/replay.py TARGET RUNS N A_BIN_DIR B_BIN_DIR

Each build runs `BIN -runs=RUNS fuzz/corpus/TARGET/*` once to warm up, then N times,
alternating with the other. exec/s = files x RUNS / median wall time; the speed-up is the
median of the N pairwise wall-time ratios A/B (above 1: B is faster).
"""
import glob
import os
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main():
    if len(sys.argv) != 6:
        sys.exit(__doc__)
    target, runs, n, a_dir, b_dir = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
    files = sorted(glob.glob(os.path.join(ROOT, "fuzz", "corpus", target, "*")))

    def run(d):
        t = time.time()
        subprocess.run([os.path.join(d, target), f"-runs={runs}"] + files,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        return time.time() - t

    run(a_dir)
    run(b_dir)
    wa, wb = [], []
    for _ in range(n):
        wa.append(run(a_dir))
        wb.append(run(b_dir))
    execs = len(files) * runs
    speedup = statistics.median([a / b for a, b in zip(wa, wb)])
    print(f"{target}: A {execs / statistics.median(wa):.0f} exec/s  B {execs / statistics.median(wb):.0f} exec/s  "
          f"speed-up B/A {speedup:.2f}", flush=True)


if __name__ == "__main__":
    main()
