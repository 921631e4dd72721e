"""Bench: RBF CKA, debiased RBF CKA, the bootstrap interval and mutual 10-NN at large n in bounded memory (issue #20).

Synthetic latent-factor data: a shared latent z (n, 16), x = z A + noise in d = 1280, y = z B + noise in d = 384.
Each measurement runs in its own subprocess, which reports the call's wall time and the process's peak resident set
(VmHWM from /proc/self/status, inputs included; the RSS before the call is printed beside it). Above
DENSE_MAX_N = 5,000 samples ``cka`` and ``cka_bootstrap`` visit the Grams by tiles (vlalign.methods.blockwise);
the dense implementation is measured at the largest n it is run at here (--dense-n) against the tiles forced at
the same n, and the ratio printed. "Share of machine": the measure's floating-point work (the products behind its
Grams and similarities, counted below) timed as one plain matrix product in float64 and float32, against the
measure's own time. Sizes that would take too long (default: 100,000) are estimated from the largest measured n by
the n^2 law and printed as estimates, unless --large.

    .venv/bin/python bench/bench_blockwise.py                 # n = 30,000 (100,000 estimated), dense at 5,000
    .venv/bin/python bench/bench_blockwise.py --large         # also runs n = 100,000 (hours on 2 cores)
    .venv/bin/python bench/bench_blockwise.py --quick         # n = 2,500, dense at 1,500: under a minute
    .venv/bin/python bench/bench_blockwise.py --measures knn-approx --n 30000 --dense-n 0   # HNSW and its recall
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT)]

D1, D2, LATENT, K_NN = 1280, 384, 16, 10
MEASURES = ("rbf", "rbf-debiased", "bootstrap", "knn", "knn-approx")


def data(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """x = z A + noise (n, 1280), y = z B + noise (n, 384), z (n, 16) shared."""
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n, LATENT))
    x = z @ rng.standard_normal((LATENT, D1)) + rng.standard_normal((n, D1))
    y = z @ rng.standard_normal((LATENT, D2)) + rng.standard_normal((n, D2))
    return x, y


def _status_mb(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def child(what: str, n: int, path: str, n_boot: int, block_rows: int | None) -> None:
    """One measurement in this process; prints one JSON line."""
    from vlalign import cka, cka_bootstrap, mutual_knn
    from vlalign.methods.measures import mutual_knn_approx

    x, y = data(n)
    before = _status_mb("VmRSS")
    opts = {} if block_rows is None else {"block_rows": block_rows}
    t0 = time.perf_counter()
    if what == "knn":
        value = mutual_knn(x, y, K_NN)
    elif what == "knn-approx":  # approximate at any n: value, recall of the x and y sets on 1,000 rows
        a = mutual_knn_approx(x, y, K_NN)
        value = [a.value, a.recall_x, a.recall_y]
    elif what == "bootstrap":
        ci = cka_bootstrap(x, y, "rbf", n_boot=n_boot, seed=0, **opts)
        value = [ci.estimate, ci.low, ci.high]
    else:
        value = cka(x, y, "rbf", what == "rbf-debiased", **opts)
    seconds = time.perf_counter() - t0
    print(json.dumps({"what": what, "n": n, "path": path, "value": value, "seconds": seconds,
                      "peak_mb": _status_mb("VmHWM"), "before_mb": before}))


def run_child(what: str, n: int, path: str, n_boot: int, block_rows: int | None = None) -> dict:
    cmd = [sys.executable, __file__, "--child", what, "--n", str(n), "--path", path, "--boot", str(n_boot)]
    if block_rows is not None:
        cmd += ["--block-rows", str(block_rows)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def flops(what: str, n: int, path: str, n_boot: int) -> float:
    """Multiply-adds x 2 of the products behind a measure, in units of one = n^2 (d1 + d2): a pass over the tiles
    on and above the diagonal costs one (half of X X^T and Y Y^T each); the median bandwidth takes 2 passes and
    CKA 2 more (4); the dense path forms X X^T and Y Y^T once by syrk (1). The bootstrap: tiles 4 + one pass of
    its moments (5), dense 1 (estimate) + 1 (bandwidths) + 2 (its moments from full rows) = 4, plus the 5 products
    of the Grams by the (n, B) counts (10 n^2 B). Mutual k-NN forms both full similarity matrices (2)."""
    one = float(n) ** 2 * (D1 + D2)
    if what == "knn-approx":
        return 0.0  # graph building and search: no plain product to compare with
    units = {"knn": 2, "bootstrap": 5 if path == "tiles" else 4}.get(what, 4 if path == "tiles" else 1)
    return units * one + (10 * float(n) ** 2 * n_boot if what == "bootstrap" else 0.0)


def gemm_rate(dtype: type) -> float:
    """Flop/s of one plain (4096, 1664) x (1664, 4096) product in ``dtype`` (best of 3)."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((4096, D1 + D2)).astype(dtype)
    b = np.ascontiguousarray(rng.standard_normal((4096, D1 + D2)).astype(dtype).T)
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t0)
    return 2 * 4096 * 4096 * (D1 + D2) / best


def report(r: dict, rates: dict[str, float], n_boot: int) -> str:
    f = flops(r["what"], r["n"], r["path"], n_boot)
    share = " ".join(f"{k} {f / rate / r['seconds']:.2f}" for k, rate in rates.items()) if f else "n/a"
    value = ", ".join(f"{v:.6f}" for v in np.atleast_1d(r["value"]))
    return (f"{r['what']:>13} n = {r['n']:>7,} {r['path']:>5}: {r['seconds']:8.1f} s, peak RSS {r['peak_mb']:7.0f} MB "
            f"(before the call {r['before_mb']:.0f} MB), value {value}; share of machine (plain product) {share}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", default="30000,100000", help="comma-separated sample counts for the tiled path")
    ap.add_argument("--dense-n", type=int, default=5000, help="n for dense against tiles at the same n")
    ap.add_argument("--boot", type=int, default=50, help="bootstrap resamples")
    ap.add_argument("--budget", type=float, default=600.0, help="seconds: larger sizes estimated instead of run")
    ap.add_argument("--large", action="store_true", help="run every size, whatever its estimate")
    ap.add_argument("--quick", action="store_true", help="n = 2500, dense at 1500, 10 resamples")
    ap.add_argument("--measures", default="rbf,rbf-debiased,bootstrap,knn",
                    help=f"comma-separated, in order, of {', '.join(MEASURES)}")
    ap.add_argument("--child", choices=MEASURES, help=argparse.SUPPRESS)
    ap.add_argument("--path", default="auto", help=argparse.SUPPRESS)
    ap.add_argument("--block-rows", type=int, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child(args.child, int(args.n), args.path, args.boot, args.block_rows)
    if args.quick:
        args.n, args.dense_n, args.boot = "2500", 1500, 10
    sizes = [int(s) for s in args.n.split(",")]
    rates = {"f64": gemm_rate(np.float64), "f32": gemm_rate(np.float32)}
    print(f"Blockwise bench: d = {D1} and {D2}, latent {LATENT}, {args.boot} resamples, k = {K_NN}; plain product "
          f"{rates['f64'] / 1e9:.0f} GFlop/s float64, {rates['f32'] / 1e9:.0f} float32")
    from vlalign.methods.blockwise import BLOCK_ROWS

    measures = [m for m in args.measures.split(",") if m]
    if any(m not in MEASURES for m in measures):
        ap.error(f"--measures: each of {MEASURES}, got {measures}")
    for what in [m for m in measures if args.dense_n and m in ("rbf", "rbf-debiased", "bootstrap")]:
        dense = run_child(what, args.dense_n, "dense", args.boot)
        tiled = run_child(what, args.dense_n, "tiles", args.boot, BLOCK_ROWS)
        print(report(dense, rates, args.boot))
        print(report(tiled, rates, args.boot) + f"; tiles / dense time {tiled['seconds'] / dense['seconds']:.2f}")
    for what in measures:
        last, path = None, {"knn": "rows", "knn-approx": "hnsw"}.get(what, "tiles")
        for n in sizes:
            if last is not None and not args.large:
                law = "n log n" if what == "knn-approx" else "n^2"  # graph building and search, or all pairs
                m = last["n"]
                guess = last["seconds"] * (n * np.log(n) / (m * np.log(m)) if law == "n log n" else (n / m) ** 2)
                if guess > args.budget:
                    print(f"{what:>13} n = {n:>7,} {path:>5}: estimated {guess:,.0f} s ({law} from n = {last['n']:,}); "
                          "not run (--large runs it)")
                    continue
            tiles = BLOCK_ROWS  # forced: the tiles also at n <= DENSE_MAX_N (--quick)
            last = run_child(what, n, path, args.boot, None if what.startswith("knn") else tiles)
            print(report(last, rates, args.boot))
    print(f"(1-minute load average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores; "
          "other jobs on the machine inflate the times)")


if __name__ == "__main__":
    main()
