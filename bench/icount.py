#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-only
"""Instructions per run of the C side, the Rust side and the diff, per driver input (callgrind).

    bench/icount.py KPD_BENCH [KPD_BENCH_B] [INPUTS...]

KPD_BENCH is a built driver (`cargo bench -p kvm-pgtable-diff --bench kpd-bench --no-run`
prints its path under target/release/deps/). Each mode of each input runs under
`valgrind --tool=callgrind` with --iters 10 and --iters 30; the difference over 20 is the
instructions of one run, without process start-up and the warm-up run. Unlike wall time on a
shared machine, the count is the same from one run to the next, so two builds compare exactly
(codegen still moves the Rust side by a few percent between unrelated commits). With a second
binary, prints both and the change in the diff's count. Inputs default to bench/inputs/*.txt.
"""
import glob
import os
import re
import statistics
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def instructions(binary, mode, path, iters):
    out = subprocess.run(
        ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", binary,
         "--mode", mode, "--iters", str(iters), path],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, check=True).stderr
    m = re.search(r"Collected : (\d+)", out)
    if not m:
        sys.exit(f"icount: no callgrind total for {binary} {mode} {path}")
    return int(m.group(1))


def per_run(binary, mode, path):
    return (instructions(binary, mode, path, 30) - instructions(binary, mode, path, 10)) // 20


def main():
    args = sys.argv[1:]
    if not args or args[0] in ("-h", "--help"):
        sys.exit(__doc__)
    bins = [a for a in args[:2] if os.access(a, os.X_OK) and not a.endswith(".txt")]
    inputs = args[len(bins):] or sorted(glob.glob(os.path.join(ROOT, "bench", "inputs", "*.txt")))
    ratios = {b: [] for b in bins}
    head = f"{'input':28}" + "".join(f" {'C':>10} {'Rust':>10} {'diff':>10} {'d/(C+R)':>8}" for _ in bins)
    if len(bins) == 2:
        head += f" {'diff B/A':>8}"
    print(head)
    for path in inputs:
        row = f"{os.path.basename(path).removesuffix('.txt'):28}"
        diffs = []
        for b in bins:
            c, r, d = (per_run(b, m, path) for m in ("c", "rust", "diff"))
            ratios[b].append(d / (c + r))
            diffs.append(d)
            row += f" {c:10} {r:10} {d:10} {d / (c + r):8.2f}"
        if len(bins) == 2:
            row += f" {diffs[1] / diffs[0]:8.2f}"
        print(row, flush=True)
    print("mean d/(C+R): " + ", ".join(f"{statistics.mean(v):.3f}" for v in ratios.values()))


if __name__ == "__main__":
    main()
