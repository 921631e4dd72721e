"""Bench: peak memory of linear CKA at large n (feature space: no n x n matrix).

Measures, for vlalign.methods.cka.cka(X, Y) with X, Y of shape (n, d), the peak of memory allocated during the call
(tracemalloc, which sees numpy's allocations; the inputs are allocated before tracing starts and are not counted)
and the process's peak resident set size (resource.getrusage, inputs included). Run at several n to show that
the extra memory does not grow with n^2 (nor with n x d: rows are processed in blocks).
No reference: an n x n float64 Gram at n = 100000 would need 80 GB.

    .venv/bin/python bench/bench_memory.py                     # n = 10000 and 100000, d = 1024
    .venv/bin/python bench/bench_memory.py --quick             # n = 2000 and 20000, d = 256
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT)]

from vlalign.methods.cka import cka  # noqa: E402

MB = 1024**2


def measure(n: int, d: int, seed: int, debiased: bool) -> tuple[float, float, float, float]:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d))
    y = 0.5 * x[:, ::-1] + rng.standard_normal((n, d))
    tracemalloc.start()
    t0 = time.perf_counter()
    value = cka(x, y, debiased=debiased)
    seconds = time.perf_counter() - t0
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return value, seconds, peak / MB, (x.nbytes + y.nbytes) / MB


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", default="10000,100000", help="comma-separated sample counts")
    ap.add_argument("--d", type=int, default=1024)
    ap.add_argument("--debiased", action="store_true")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quick", action="store_true", help="n = 2000,20000 and d = 256")
    args = ap.parse_args()
    if args.quick:
        args.n, args.d = "2000,20000", 256
    sizes = [int(s) for s in args.n.split(",")]
    print(f"Memory bench: linear CKA{' (debiased)' if args.debiased else ''}, d = {args.d}, n = {sizes}, float64")
    for n in sizes:
        value, seconds, peak, inputs = measure(n, args.d, args.seed, args.debiased)
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
        print(f"n = {n:>7}: CKA = {value:.4f} in {seconds:.2f} s; peak extra memory during the call "
              f"{peak:.1f} MB (inputs {inputs:.0f} MB, an n x n Gram would be {n * n * 8 / MB:,.0f} MB); "
              f"process peak RSS so far {rss:.0f} MB")

    print(f"(1-minute load average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores; "
          "other jobs on the machine inflate both sides' times)")


if __name__ == "__main__":
    main()
