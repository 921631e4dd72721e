"""Bench: all p x q local CKA scores in closed form against the pairwise definition.

Engine: vlalign.methods.retrieval.local_cka_scores (one (p, M) x (M, q) product plus per-row/per-column vectors).
Reference: tests/reference.py::local_cka_pairwise, the paper's way: for each (image, caption) pair, stack the M base
samples with the query, build both (M+1) x (M+1) Grams, centre them with a dense H and take the traces. At
M = 320, p = q = 500 that is 250,000 pairs, so the reference is timed on --ref-pairs random pairs (seeded) and
extrapolated to all of them; the printout says so. The difference is the maximum over the timed pairs.

    .venv/bin/python bench/bench_local_cka.py            # M = 320, p = q = 500, dims 768 / 384
    .venv/bin/python bench/bench_local_cka.py --quick    # M = 64, p = q = 100
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

from vlalign.methods.matching import assignment_match, matching_accuracy  # noqa: E402
from vlalign.methods.retrieval import local_cka_scores, recall_at_k  # noqa: E402


def synthetic_split(m: int, p: int, d1: int, d2: int, seed: int, noise: float):
    """Images and captions as noisy views of one latent; the first m rows are the base, the next p the queries.
    At noise 1.2 local CKA matches about 60% of the queries (the paper's COCO range is 48-63%)."""
    rng = np.random.default_rng(seed)
    n = m + p
    z = rng.standard_normal((n, 48))
    x = np.tanh(z @ rng.standard_normal((48, d1)) / 7) + noise * rng.standard_normal((n, d1)) + 0.2
    y = np.maximum(z @ rng.standard_normal((48, d2)) / 7, 0) + noise * rng.standard_normal((n, d2))
    return x[:m], y[:m], x[m:], y[m:]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--m", type=int, default=320, help="base pairs (default 320)")
    ap.add_argument("--p", type=int, default=500, help="query pairs, p = q (default 500)")
    ap.add_argument("--d1", type=int, default=768)
    ap.add_argument("--d2", type=int, default=384)
    ap.add_argument("--ref-pairs", type=int, default=300, help="pairs the reference computes (default 300)")
    ap.add_argument("--repeats", type=int, default=5, help="engine runs; the best is reported")
    ap.add_argument("--kernels", default="linear,rbf")
    ap.add_argument("--noise", type=float, default=1.2, help="noise of the synthetic encoders (default 1.2)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quick", action="store_true", help="M = 64, p = q = 100, 100 reference pairs")
    args = ap.parse_args()
    if args.quick:
        args.m, args.p, args.ref_pairs = 64, 100, 100

    bx, by, qx, qy = synthetic_split(args.m, args.p, args.d1, args.d2, args.seed, args.noise)
    total = args.p * args.p
    rng = np.random.default_rng(args.seed + 1)
    flat = rng.choice(total, size=min(args.ref_pairs, total), replace=False)
    pairs = [(int(f // args.p), int(f % args.p)) for f in flat]
    print(f"Local CKA bench: M = {args.m}, p = q = {args.p}, d_image = {args.d1}, d_text = {args.d2} "
          f"({total} pairs; synthetic, noise {args.noise}, float64)")
    for kernel in args.kernels.split(","):
        times = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            scores = local_cka_scores(bx, by, qx, qy, kernel)
            times.append(time.perf_counter() - t0)
        t_engine = min(times)
        t0 = time.perf_counter()
        ref = reference.local_cka_pairwise(bx, by, qx, qy, kernel, pairs=pairs)
        t_ref_timed = time.perf_counter() - t0
        t_ref = t_ref_timed / len(pairs) * total
        diff = max(abs(scores[i, j] - ref[i, j]) for i, j in pairs)
        acc = matching_accuracy(assignment_match(scores))
        r1 = recall_at_k(scores).image_to_text[1]
        print(f"[{kernel}] engine: {t_engine * 1e3:.1f} ms for all {total} pairs (best of {args.repeats}); "
              f"reference: {t_ref_timed:.1f} s for {len(pairs)} pairs = {t_ref_timed / len(pairs) * 1e3:.1f} ms/pair, "
              f"extrapolated to {total} pairs: {t_ref:.0f} s")
        print(f"[{kernel}] ratio reference / engine = {t_ref / t_engine:,.0f}x; max |difference| = {diff:.2e} "
              f"(over the {len(pairs)} timed pairs); matching accuracy {acc:.3f}, image->text R@1 {r1:.3f}")

    print(f"(1-minute load average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores; "
          "other jobs on the machine inflate both sides' times)")


if __name__ == "__main__":
    main()
