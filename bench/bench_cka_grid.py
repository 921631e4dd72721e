"""Bench: the CKA grid (every vision x text encoder pair) against a per-pair dense-H implementation.

Engine: vlalign.methods.cka.cka_grid (each Gram built and centred once; linear in feature space when n > d).
Reference: tests/reference.py::cka_dense_h, the research code's way: for every pair, three HSIC calls, each
building both Grams and centring them as H K H with a dense H. The reference is slow (about 80 s per pair at
n = 5000 on 2 cores), so by default it is timed on --ref-pairs pairs per kernel and extrapolated to the whole
grid; the printout says so. The maximum absolute difference is over the pairs the reference computed.

    .venv/bin/python bench/bench_cka_grid.py            # n = 5000, 4 x 3 encoders, dims 384-1280
    .venv/bin/python bench/bench_cka_grid.py --quick    # n = 1000, reference on every pair
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

from vlalign.methods.cka import cka_grid  # noqa: E402

VISION_DIMS = {"vit_s": 384, "vit_b": 768, "vit_l": 1024, "effnet": 1280}
TEXT_DIMS = {"minilm": 384, "mpnet": 768, "roberta_l": 1024}


def synthetic_encoders(n: int, seed: int, latent: int = 64) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Encoders as noisy non-linear views of one shared latent (so CKA values are spread, not all ~0)."""
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n, latent))

    def view(d: int, k: int) -> np.ndarray:
        w = rng.standard_normal((latent, d)) / np.sqrt(latent)
        h = z @ w
        h = np.tanh(h) if k % 2 else np.maximum(h, 0)
        return h + (0.5 + 0.3 * k) * rng.standard_normal((n, d))

    vision = {name: view(d, k) for k, (name, d) in enumerate(VISION_DIMS.items())}
    text = {name: view(d, k + 1) for k, (name, d) in enumerate(TEXT_DIMS.items())}
    return vision, text


def run(kernel: str, vision: dict, text: dict, ref_pairs: int) -> dict:
    t0 = time.perf_counter()
    grid = cka_grid(vision, text, kernel)
    t_engine = time.perf_counter() - t0

    pairs = [(v, t) for v in vision for t in text]
    k = len(pairs) if ref_pairs <= 0 else min(ref_pairs, len(pairs))
    chosen = [pairs[i] for i in np.linspace(0, len(pairs) - 1, k).round().astype(int)]
    t0 = time.perf_counter()
    ref_values = {(v, t): reference.cka_dense_h(vision[v], text[t], kernel) for v, t in chosen}
    t_ref_timed = time.perf_counter() - t0
    t_ref = t_ref_timed * len(pairs) / k
    got = grid.as_dict()
    diff = max(abs(got[p] - ref_values[p]) for p in chosen)
    return {"kernel": kernel, "engine_s": t_engine, "ref_s": t_ref, "ref_timed_s": t_ref_timed,
            "ref_pairs": k, "pairs": len(pairs), "ratio": t_ref / t_engine, "max_abs_diff": diff,
            "values": grid.values}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=5000, help="samples (default 5000)")
    ap.add_argument("--kernels", default="linear,rbf", help="comma-separated (default linear,rbf)")
    ap.add_argument("--ref-pairs", type=int, default=2,
                    help="pairs per kernel the reference computes; the rest is extrapolated (0 = all)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quick", action="store_true", help="n = 1000 and the reference on every pair")
    args = ap.parse_args()
    if args.quick:
        args.n, args.ref_pairs = 1000, 0

    vision, text = synthetic_encoders(args.n, args.seed)
    print(f"CKA grid bench: n = {args.n}, vision {VISION_DIMS}, text {TEXT_DIMS} (synthetic, float64)")
    for kernel in args.kernels.split(","):
        r = run(kernel, vision, text, args.ref_pairs)
        extrap = "" if r["ref_pairs"] == r["pairs"] else (
            f" (extrapolated from {r['ref_pairs']} of {r['pairs']} pairs timed in {r['ref_timed_s']:.1f} s)")
        print(f"[{kernel}] engine cka_grid: {r['engine_s']:.2f} s for {r['pairs']} pairs; "
              f"reference dense-H per pair: {r['ref_s']:.1f} s{extrap}")
        print(f"[{kernel}] ratio reference / engine = {r['ratio']:.0f}x; max |difference| = {r['max_abs_diff']:.2e} "
              f"(over {r['ref_pairs']} pairs); CKA range {r['values'].min():.3f} .. {r['values'].max():.3f}")

    print(f"(1-minute load average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores; "
          "other jobs on the machine inflate both sides' times)")


if __name__ == "__main__":
    main()
