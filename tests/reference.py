"""Slow, obvious reference implementations, used by the tests and the benches.

Each one follows its definition literally: a dense centring matrix H, explicit loops, augmented Grams built one
pair at a time, distances from explicit differences (never the Gram trick). Nothing here is meant to be fast;
the benches time these against the engine in the same run.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment, quadratic_assignment
from scipy.spatial.distance import cdist


def centering_matrix(n: int) -> np.ndarray:
    """H = I - 11^T / n, dense."""
    return np.eye(n) - np.ones((n, n)) / n


def sq_dists_loop(x: np.ndarray) -> np.ndarray:
    """D_ij = ||x_i - x_j||^2 by an explicit double loop over pairs."""
    n = x.shape[0]
    d = np.zeros((n, n))
    for i in range(n):
        for j in range(n):
            diff = x[i] - x[j]
            d[i, j] = float(diff @ diff)
    return d


def median_sq_dist_loop(x: np.ndarray) -> float:
    """Median of the non-zero squared distances over pairs i != j, collected one pair at a time."""
    n = x.shape[0]
    vals = []
    for i in range(n):
        for j in range(n):
            if i != j:
                diff = x[i] - x[j]
                v = float(diff @ diff)
                if v > 0:
                    vals.append(v)
    return float(np.median(vals))


def median_sq_dist_direct(x: np.ndarray) -> float:
    """Same quantity for larger n: explicit differences (cdist), a mask for i != j, then > 0."""
    d = cdist(x, x, "sqeuclidean")
    off = d[~np.eye(len(d), dtype=bool)]
    return float(np.median(off[off > 0]))


def gram_ref(x: np.ndarray, kernel: str = "linear", sigma2: float | None = None, *, loops: bool = True) -> np.ndarray:
    """Linear Gram X X^T, or RBF exp(-D / (2 sigma^2)) with D from explicit differences, sigma^2 = median rule."""
    if kernel == "linear":
        return x @ x.T
    d = sq_dists_loop(x) if loops else cdist(x, x, "sqeuclidean")
    if sigma2 is None:
        sigma2 = median_sq_dist_loop(x) if loops else median_sq_dist_direct(x)
    return np.exp(-d / (2 * sigma2))


def hsic_biased_ref(k: np.ndarray, l: np.ndarray) -> float:
    """tr(K H L H) / (n-1)^2 with a dense H and matrix products."""
    n = k.shape[0]
    h = centering_matrix(n)
    return float(np.trace(k @ h @ l @ h)) / (n - 1) ** 2


def hsic_unbiased_ref(k: np.ndarray, l: np.ndarray) -> float:
    """Song et al. (2012), Eq. (5), with double loops:
    [tr(K~L~) + 1'K~1 1'L~1/((n-1)(n-2)) - 2/(n-2) 1'K~L~1] / (n(n-3)), K~ = K with zero diagonal."""
    n = k.shape[0]
    kt, lt = k.copy(), l.copy()
    for i in range(n):
        kt[i, i] = 0.0
        lt[i, i] = 0.0
    tr = 0.0
    sk = sl = 0.0
    rk = np.zeros(n)
    rl = np.zeros(n)
    for i in range(n):
        for j in range(n):
            tr += kt[i, j] * lt[j, i]
            sk += kt[i, j]
            sl += lt[i, j]
            rk[i] += kt[i, j]
            rl[j] += lt[j, i]
    kl = 0.0
    for i in range(n):
        kl += rk[i] * rl[i]  # 1' K~ L~ 1 = sum_j (sum_i K~_ij)(sum_k L~_jk), K~ symmetric
    return (tr + sk * sl / ((n - 1) * (n - 2)) - 2.0 / (n - 2) * kl) / (n * (n - 3))


def hsic_unbiased_ustat(k: np.ndarray, l: np.ndarray) -> float:
    """The U-statistic itself: mean over distinct ordered (i, j, q, r) of k_ij l_ij + k_ij l_qr - 2 k_ij l_iq."""
    n = k.shape[0]
    total, count = 0.0, 0
    for i in range(n):
        for j in range(n):
            for q in range(n):
                for r in range(n):
                    if len({i, j, q, r}) < 4:
                        continue
                    total += k[i, j] * l[i, j] + k[i, j] * l[q, r] - 2 * k[i, j] * l[i, q]
                    count += 1
    return total / count


def cka_ref(x: np.ndarray, y: np.ndarray, kernel: str = "linear", debiased: bool = False,
            sigma2: float | None = None, *, loops: bool = True) -> float:
    """CKA from the reference Grams and the reference HSIC."""
    k = gram_ref(x, kernel, sigma2, loops=loops)
    l = gram_ref(y, kernel, sigma2, loops=loops)
    hsic = hsic_unbiased_ref if debiased else hsic_biased_ref
    return hsic(k, l) / np.sqrt(hsic(k, k) * hsic(l, l))


def cka_dense_h(x: np.ndarray, y: np.ndarray, kernel: str = "linear") -> float:
    """One CKA value the way the research code does it: both Grams per call, centred by H K H with a dense H
    (three HSIC calls, each with its own Grams and centring). RBF: median over i != j of non-zero distances."""

    def kern(z: np.ndarray) -> np.ndarray:
        if kernel == "linear":
            return z @ z.T
        g = z @ z.T
        sq = np.diag(g)
        d = sq[:, None] + sq[None, :] - 2 * g
        d = np.maximum(d, 0)
        off = d[~np.eye(len(d), dtype=bool)]
        sigma2 = np.median(off[off > 0])
        return np.exp(-d / (2 * sigma2))

    def centering(k: np.ndarray) -> np.ndarray:
        h = centering_matrix(k.shape[0])
        return h @ k @ h

    def hsic(a: np.ndarray, b: np.ndarray) -> float:
        return float(np.sum(centering(kern(a)) * centering(kern(b))))

    return hsic(x, y) / np.sqrt(hsic(x, x) * hsic(y, y))


def local_cka_pairwise(base_x: np.ndarray, base_y: np.ndarray, query_x: np.ndarray, query_y: np.ndarray,
                       kernel: str = "linear", *, scale: float = 1.0, sigma: float | None = None,
                       pairs: list[tuple[int, int]] | None = None) -> np.ndarray:
    """localCKA(x_i, y_j) = CKA(K[base + x_i], L[base + y_j]) one pair at a time: the augmented (M+1) x (M+1)
    Grams are built for each pair and centred with a dense H. RBF: sigma^2 = scale^2 * median of the base set's
    non-zero pairwise squared distances (explicit differences), the same for every query (the engine's rule).
    Entries not in ``pairs`` (default: all) are NaN."""
    p, q = len(query_x), len(query_y)
    m = len(base_x) + 1
    h = centering_matrix(m)
    if kernel == "rbf":
        s2x = sigma ** 2 if sigma is not None else scale ** 2 * median_sq_dist_direct(base_x)
        s2y = sigma ** 2 if sigma is not None else scale ** 2 * median_sq_dist_direct(base_y)

    def kern(z: np.ndarray, s2: float | None) -> np.ndarray:
        if kernel == "linear":
            return z @ z.T
        return np.exp(-cdist(z, z, "sqeuclidean") / (2 * s2))

    out = np.full((p, q), np.nan)
    todo = pairs if pairs is not None else [(i, j) for i in range(p) for j in range(q)]
    for i, j in todo:
        k = kern(np.vstack([base_x, query_x[i : i + 1]]), s2x if kernel == "rbf" else None)
        l = kern(np.vstack([base_y, query_y[j : j + 1]]), s2y if kernel == "rbf" else None)
        khh = h @ k @ h
        lhh = h @ l @ h
        out[i, j] = np.trace(khh @ lhh) / np.sqrt(np.trace(khh @ khh) * np.trace(lhh @ lhh))
    return out


def recall_ref(scores: np.ndarray, k: int, axis: int) -> float:
    """Share of queries whose true partner (same index) is within the top k, ties counted against (loops)."""
    s = scores if axis == 1 else scores.T
    hits = 0
    for i in range(s.shape[0]):
        better = 0
        for j in range(s.shape[1]):
            if j != i and s[i, j] >= s[i, i]:
                better += 1
        hits += better < k
    return hits / s.shape[0]


def qap_paper(base_x: np.ndarray, base_y: np.ndarray, query_x: np.ndarray, query_y: np.ndarray,
              rngs: list[np.random.Generator]) -> tuple[np.ndarray, float]:
    """Seeded QAP as the paper's code runs it: linear kernels of base + query centred with a dense H and
    normalised by their Frobenius norm, then scipy's FAQ with P0='randomized', serially, once per rng in
    ``rngs``; the best objective wins. Returns (perm over the query set, objective)."""
    m = len(base_x)

    def kern(z: np.ndarray) -> np.ndarray:
        h = centering_matrix(len(z))
        k = h @ (z @ z.T) @ h
        return k / np.linalg.norm(k)

    a = kern(np.vstack([base_x, query_x]))
    b = kern(np.vstack([base_y, query_y]))
    seeds = np.column_stack([np.arange(m), np.arange(m)])
    best, best_fun = None, -np.inf
    for rng in rngs:
        res = quadratic_assignment(a, b, method="faq", options={
            "partial_match": seeds, "maximize": True, "P0": "randomized", "rng": rng})
        if res.fun > best_fun:
            best, best_fun = res.col_ind, res.fun
    return best[m:] - m, float(best_fun)


def lsa_match_ref(scores: np.ndarray) -> np.ndarray:
    """perm[i] = column assigned to row i, maximising the total score."""
    rows, cols = linear_sum_assignment(scores, maximize=True)
    perm = np.empty(scores.shape[0], dtype=int)
    perm[rows] = cols
    return perm
