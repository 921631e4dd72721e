"""Bench: permutation calibration of a layer grid, engine against PyPI calibrated-similarity (Groger et al. 2026).

Both sides get the same layers and the same K permutations (the engine's ``permutations(n, K, seed)``, fed to
calibrated-similarity through its ``perm_fn``), and calibrate linear CKA and mutual kNN (k = 10) for every pair of
x layers (dim 1280) and y layers (dim 384), and the maximum over the pairs.
Engine: vlalign.methods.calibration.calibrate (per-layer state once; each permutation permutes the centred Gram or
the neighbour sets; per-pair and max-corrected results in one call).
Reference: calibrated_similarity.calibrate_layers(agg="max") for the corrected maximum, plus
calibrated_similarity.calibrate per pair for the per-pair p-values (the package gives either, not both), with
the similarity functions as its README writes them in torch: README's ``cka``; platonic-rep's ``mutual_knn`` on
L2-normalised rows (their measure_alignment.py). The package is not a dependency of vlalign:

    .venv/bin/pip install calibrated-similarity       # pulls torch, already installed here
    .venv/bin/python bench/bench_calibration.py            # n = 1000, 2 x 2 layers, K = 200 (minutes)
    .venv/bin/python bench/bench_calibration.py --quick    # n = 200, K = 10, dims 512 / 256 (seconds)

Without the package it says so and exits 0. "p-values identical" compares the permutation counts behind each
p-value (the package computes in float32).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT)]

from vlalign.methods.calibration import calibrate, permutations  # noqa: E402


def synthetic_layers(n: int, dx: int, dy: int, lx: int, ly: int, seed: int):
    """lx x layers and ly y layers seeing one latent through different non-linear maps, with a signal that fades
    from layer to layer (so that some pairs are significant and some are not)."""
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n, 32))
    xs = [np.tanh(z @ rng.standard_normal((32, dx)) / 6) + (1 + 12 * i) * rng.standard_normal((n, dx)) / 4
          for i in range(lx)]
    ys = [np.maximum(z @ rng.standard_normal((32, dy)) / 6, 0) + (1 + 12 * j) * rng.standard_normal((n, dy)) / 4
          for j in range(ly)]
    return xs, ys


def reference_sims(torch):
    """The similarity functions handed to calibrated-similarity."""

    def cka(X, Y):  # calibrated-similarity README, "Quick Start"
        X, Y = X - X.mean(0), Y - Y.mean(0)
        hsic_xy = (X @ X.T * (Y @ Y.T)).sum()
        hsic_xx = (X @ X.T * (X @ X.T)).sum()
        hsic_yy = (Y @ Y.T * (Y @ Y.T)).sum()
        return hsic_xy / torch.sqrt(hsic_xx * hsic_yy)

    def mutual_knn(A, B, topk=10):  # platonic-rep metrics.py mutual_knn, rows L2-normalised first
        A, B = torch.nn.functional.normalize(A, dim=-1), torch.nn.functional.normalize(B, dim=-1)
        knn_a = (A @ A.T).fill_diagonal_(-1e8).argsort(dim=1, descending=True)[:, :topk]
        knn_b = (B @ B.T).fill_diagonal_(-1e8).argsort(dim=1, descending=True)[:, :topk]
        n = knn_a.shape[0]
        rows = torch.arange(n).unsqueeze(1)
        ma, mb = torch.zeros(n, n), torch.zeros(n, n)
        ma[rows, knn_a] = 1.0
        mb[rows, knn_b] = 1.0
        return ((ma * mb).sum(dim=1) / topk).mean().item()

    return {"cka": cka, "mutual_knn": mutual_knn}


def run_reference(cs, torch, sim, xs, ys, perms, alpha):
    """calibrate_layers (max) and calibrate per pair on the given permutations; returns seconds and results."""
    def feeder():
        it = iter(perms)
        return lambda n, device: torch.as_tensor(next(it))

    tx, ty = [torch.from_numpy(a) for a in xs], [torch.from_numpy(b) for b in ys]
    k = perms.shape[0]
    t0 = time.perf_counter()
    _, pmax, taumax = cs.calibrate_layers(tx, ty, sim, agg="max", K=k, alpha=alpha, perm_fn=feeder())
    pairs = np.empty((len(xs), len(ys)))
    for i, a in enumerate(tx):
        for j, b in enumerate(ty):
            pairs[i, j] = float(cs.calibrate(a, b, sim, K=k, alpha=alpha, perm_fn=feeder())[1])
    return time.perf_counter() - t0, float(pmax), float(taumax), pairs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=1000, help="paired samples")
    ap.add_argument("--dx", type=int, default=1280)
    ap.add_argument("--dy", type=int, default=384)
    ap.add_argument("--lx", type=int, default=2, help="x layers")
    ap.add_argument("--ly", type=int, default=2, help="y layers")
    ap.add_argument("--K", type=int, default=200, help="permutations")
    ap.add_argument("--alpha", type=float, default=0.05)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quick", action="store_true", help="n = 200, K = 10, dims 512 and 256")
    args = ap.parse_args()
    if args.quick:
        args.n, args.K, args.dx, args.dy = 200, 10, 512, 256
    try:
        import calibrated_similarity as cs  # noqa: PLC0415  (optional: the bench skips without it)
        import torch  # noqa: PLC0415  (only with the optional package)
    except ImportError:
        print("calibrated-similarity is not installed: skipping (install it with "
              "`.venv/bin/pip install calibrated-similarity` to run this bench)")
        return

    xs, ys = synthetic_layers(args.n, args.dx, args.dy, args.lx, args.ly, args.seed)
    perms = permutations(args.n, args.K, args.seed)
    print(f"calibration bench: n = {args.n}, {args.lx} x layers (d {args.dx}) x {args.ly} y layers (d {args.dy}), "
          f"K = {args.K}, alpha = {args.alpha}, seed {args.seed}, calibrated-similarity {cs.__version__}, "
          f"torch {torch.__version__}, {len(os.sched_getaffinity(0))} cores")
    sims = reference_sims(torch)
    for name, settings in (("cka", {}), ("mutual_knn", {"k": 10})):
        t0 = time.perf_counter()
        cal = calibrate(name, xs, ys, alpha=args.alpha, perms=perms, seed=args.seed, **settings)
        t_eng = time.perf_counter() - t0
        t_ref, pmax, taumax, pairs = run_reference(cs, torch, sims[name], xs, ys, perms, args.alpha)
        counts = lambda p: np.rint(np.asarray(p) * (args.K + 1)).astype(int)  # noqa: E731
        same = bool(np.array_equal(counts(pairs), counts(cal.p_value)) and counts(pmax) == counts(cal.max_p_value))
        print(f"{name}: engine {t_eng:.2f} s, reference {t_ref:.1f} s, ratio {t_ref / t_eng:.0f}x; "
              f"p-values identical: {same}; max p {cal.max_p_value:.4f} (reference {pmax:.4f}), "
              f"|tau_max difference| {abs(taumax - cal.max_tau):.1e} (reference tau is float32)")
        print(f"  per-pair p-values {np.round(cal.p_value, 4).tolist()}, values {np.round(cal.values, 4).tolist()}")
    print(f"(1-minute load average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores; "
          "other jobs on the machine inflate both sides' times)")


if __name__ == "__main__":
    main()
