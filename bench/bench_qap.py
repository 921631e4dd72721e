"""Bench: seeded QAP matching, engine against scipy's FAQ called the way the paper's code calls it.

Both sides get the same data (query captions in a shuffled order, so the answer is not the identity), the same
restart count and the same per-restart seeds (np.random.SeedSequence(seed).spawn, see
vlalign.methods.matching.restart_seeds), and keep the best objective.
Engine: vlalign.methods.matching.qap_match (kernels centred without H, FAQ specialised to symmetric A and B with the
seed block products shared by all restarts, restarts on a thread pool).
Reference: tests/reference.py::qap_paper (kernels centred with a dense H, scipy.optimize.quadratic_assignment
with P0='randomized', restarts run serially).

    .venv/bin/python bench/bench_qap.py            # M = 320 base, q = 500 queries, 20 restarts
    .venv/bin/python bench/bench_qap.py --quick    # M = 100, q = 150, 10 restarts
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import reference  # noqa: E402

from vlalign.methods.matching import matching_accuracy, qap_match, restart_seeds  # noqa: E402


def synthetic_split(m: int, q: int, seed: int, noise: float, d1: int = 384, d2: int = 256):
    """Clustered latent (like semantic classes), seen through two different non-linear encoders plus noise."""
    rng = np.random.default_rng(seed)
    n = m + q
    centres = 2 * rng.standard_normal((20, 64))
    z = centres[rng.integers(0, 20, n)] + rng.standard_normal((n, 64))
    x = np.tanh(z @ rng.standard_normal((64, d1)) / 8) + 0.3 * noise * rng.standard_normal((n, d1))
    y = np.maximum(z @ rng.standard_normal((64, d2)) / 8, 0) + 0.3 * noise * rng.standard_normal((n, d2))
    return x[:m], y[:m], x[m:], y[m:]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--m", type=int, default=320, help="base (seed) pairs")
    ap.add_argument("--q", type=int, default=500, help="query pairs")
    ap.add_argument("--restarts", type=int, default=20)
    ap.add_argument("--noise", type=float, default=2.5, help="noise level of the synthetic encoders")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeats", type=int, default=3, help="timed runs of each side; the best time is reported")
    ap.add_argument("--quick", action="store_true", help="M = 100, q = 150, 10 restarts")
    args = ap.parse_args()
    if args.quick:
        args.m, args.q, args.restarts = 100, 150, 10

    bx, by, qx, qy = synthetic_split(args.m, args.q, args.seed, args.noise)
    truth = np.random.default_rng(args.seed + 1).permutation(args.q)
    qy = qy[truth]  # query_x[i] belongs with qy[j] where truth[j] = i
    inverse = np.argsort(truth)
    cores = len(os.sched_getaffinity(0))
    print(f"QAP bench: M = {args.m} base, q = {args.q} queries, {args.restarts} restarts, seed {args.seed}, "
          f"dims 384 / 256 (synthetic), {cores} cores; times are the best of {args.repeats} runs")

    times = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        rngs = [np.random.default_rng(s) for s in restart_seeds(args.seed, args.restarts)]
        perm_ref, obj_ref = reference.qap_paper(bx, by, qx, qy, rngs)
        times.append(time.perf_counter() - t0)
    t_ref = min(times)
    acc_ref = matching_accuracy(perm_ref, inverse)
    print(f"reference (dense H, scipy FAQ, P0='randomized', serial): {t_ref:.2f} s, accuracy {acc_ref:.3f}, "
          f"objective {obj_ref:.6f}")

    for n_jobs in (1, None):
        runs = [qap_match(bx, by, qx, qy, restarts=args.restarts, seed=args.seed, shuffle=False, n_jobs=n_jobs)
                for _ in range(args.repeats)]
        res = min(runs, key=lambda r: r.seconds)
        acc = matching_accuracy(res.perm, inverse)
        label = "n_jobs=1" if n_jobs == 1 else f"n_jobs=None ({cores} threads)"
        print(f"engine qap_match {label}: {res.seconds:.2f} s, accuracy {acc:.3f}, objective {res.objective:.6f}; "
              f"ratio reference / engine = {t_ref / res.seconds:.1f}x; same perm as reference: "
              f"{bool(np.array_equal(res.perm, perm_ref))}; "
              f"|objective difference| = {abs(res.objective - obj_ref):.2e}")
    again = qap_match(bx, by, qx, qy, restarts=args.restarts, seed=args.seed, shuffle=False)
    print(f"rerun with the same seed gives the same perm: {bool(np.array_equal(again.perm, res.perm))}")

    print(f"(1-minute load average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores; "
          "other jobs on the machine inflate both sides' times)")


if __name__ == "__main__":
    main()
