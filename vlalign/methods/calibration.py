"""Permutation calibration of alignment measures, per layer pair and over a layer search.

Definitions of Groger, Wen and Brbic (2026), "Revisiting the Platonic Representation Hypothesis: An Aristotelian
View", as implemented in PyPI calibrated-similarity 0.1.1 (mlbio-epfl/Aristotelian,
``calibrated_similarity/calibration.py``, ``calibrate`` and ``calibrate_layers``). With the observed value s and
the null s_1..s_K (the measure after K random permutations of the rows of y):

    tau        = the ceil((1 - alpha)(K + 1))-th smallest of {s, s_1, ..., s_K}    (order statistic of the
                 combined sample, index clamped to [1, K + 1]; not a quantile of the null alone)
    p          = (1 + #{k : s_k >= s}) / (K + 1)
    calibrated = clamp((s - tau) / max(smax - tau, 1e-12), 0, 1)   (smax = 1; smax None: max(s - tau, 0))

Over a layer search (x layers i, y layers j): the SAME permutation is applied to every y layer, the statistic is
T = max_ij s_ij and its null T_k = max_ij s_ij^(k); tau, p and calibrated of T come from that null, which
corrects the best pair for the search (their Algorithm 2, agg="max").

Fast: nothing is recomputed per permutation that a permutation only relabels. Each measure is split into a
per-representation state (centred Gram, centred features, neighbour sets, RDM ranks, SVD basis), computed once per
layer, a ``permute`` of y's state (P L P^T, rows of Y, relabelled sets) computed once per (permutation, y layer),
and a ``score`` of two states per (permutation, layer pair). Exact: centring commutes with a simultaneous row and
column permutation (also the U-centring of the debiased HSIC), so HSIC(K, P L P^T) is the permuted centred Gram.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from vlalign.methods.cka import _centred_gram, _debiased_dot, _feature_stats, _min_rows
from vlalign.methods.geometry_measures import rdm, rdm_ranks, svcca_basis, svcca_from_bases
from vlalign.methods.kernels import validate_kernel, validate_matrix
from vlalign.methods.knn_measures import (
    _validate_cknna,
    _validate_k,
    cknna_from_sides,
    cknna_side,
    cycle_knn_from_sets,
    knn_indices,
    permute_neighbours,
    shared_neighbours,
)
from vlalign.methods.registry import measure_info, resolve_settings

__all__ = [
    "permutations",
    "null_threshold",
    "permutation_p_value",
    "calibrated_score",
    "Calibration",
    "permuted_values",
    "calibrate",
]

_EPSILON = 1e-12  # calibrated-similarity's floor on smax - tau
_FEATURE_RATIO = 64  # linear CKA in feature space when d1 * d2 <= 64 n (else permute the centred n x n Gram)


# ---------------------------------------------------------------------------------------------------------------
# The definitions
# ---------------------------------------------------------------------------------------------------------------


def permutations(n: int, K: int = 200, seed: int = 0) -> np.ndarray:
    """(K, n) int64: K permutations of range(n), row k = the k-th ``rng.permutation(n)`` of
    ``rng = np.random.default_rng(seed)``. Reproducible from (n, K, seed)."""
    if isinstance(K, bool) or not isinstance(K, int | np.integer) or K < 1:
        raise ValueError(f"K must be a positive integer (number of permutations), got {K!r}")
    rng = np.random.default_rng(seed)
    return np.stack([rng.permutation(n) for _ in range(K)]) if n else np.zeros((K, 0), dtype=np.int64)


def _validate_alpha(alpha: float) -> float:
    if not (isinstance(alpha, float | int) and 0.0 < alpha < 1.0):
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")
    return float(alpha)


def null_threshold(observed, null: np.ndarray, alpha: float = 0.05):
    """tau: the ceil((1 - alpha)(K + 1))-th smallest of {observed} ∪ null (null: (K, ...) along axis 0)."""
    alpha = _validate_alpha(alpha)
    null = np.asarray(null, dtype=np.float64)
    k = null.shape[0]
    combined = np.sort(np.concatenate([np.asarray(observed, dtype=np.float64)[None], null]), axis=0)
    idx = min(max(math.ceil((1.0 - alpha) * (k + 1)) - 1, 0), k)
    return combined[idx]


def permutation_p_value(observed, null: np.ndarray):
    """Add-one right-tail p-value (1 + #{null >= observed}) / (K + 1), in (0, 1]. null: (K, ...)."""
    null = np.asarray(null, dtype=np.float64)
    return (1.0 + np.count_nonzero(null >= np.asarray(observed), axis=0)) / (null.shape[0] + 1.0)


def calibrated_score(observed, tau, smax: float | None = 1.0):
    """clamp((observed - tau) / max(smax - tau, 1e-12), 0, 1); with smax None, max(observed - tau, 0)."""
    s, t = np.asarray(observed, dtype=np.float64), np.asarray(tau, dtype=np.float64)
    if smax is None:
        return np.maximum(s - t, 0.0)
    return np.clip((s - t) / np.maximum(smax - t, _EPSILON), 0.0, 1.0)


def _inner(a: np.ndarray, b: np.ndarray) -> float:
    """sum_ij a_ij b_ij by einsum's own loop: BLAS ddot (np.vdot) spreads one such sum over threads, which costs
    milliseconds per call when the cores are busy (measured: 11 ms against 0.2 ms for 300 x 300 on 2 loaded cores)."""
    return float(np.einsum("ij,ij->", a, b))


# ---------------------------------------------------------------------------------------------------------------
# Per-measure states: prepare once, permute y's state, score a pair
# ---------------------------------------------------------------------------------------------------------------


class _GramNull:
    """CKA via centred Grams (rbf, or linear when n is small next to d1 d2): state (Kc, <Kc, Kc>)."""

    def __init__(self, kernel: str, debiased: bool, sigma, scale) -> None:
        validate_kernel(kernel, sigma, scale)
        self.args = (kernel, sigma, scale, bool(debiased))

    def prepare(self, a):
        kc = _centred_gram(a, *self.args)
        return kc, _inner(kc, kc)

    def permute(self, state, perm):
        kc, ss = state
        return kc.take(perm, axis=0).take(perm, axis=1), ss

    def score(self, sx, sy):
        return _inner(sx[0], sy[0]) / np.sqrt(sx[1] * sy[1])


class _FeatureNull:
    """Linear CKA in feature space: state (Xc, stats); a pair costs ||Xc^T Yc[perm]||_F^2, normalisers once."""

    def __init__(self, debiased: bool) -> None:
        self.debiased = bool(debiased)

    def prepare(self, a):
        st = _feature_stats(a, self.debiased)
        return a - st.mean, st.self_sim, st.row_sq, st.total_sq

    def permute(self, state, perm):
        ac, ss, rows, tot = state
        return ac[perm], ss, None if rows is None else rows[perm], tot

    def score(self, sx, sy):
        xty = sx[0].T @ sy[0]
        num = _inner(xty, xty)
        if self.debiased:
            num = _debiased_dot(num, sx[2], sy[2], sx[3], sy[3], sx[0].shape[0])
        return num / np.sqrt(sx[1] * sy[1])


class _KnnNull:
    """mutual_knn and cycle_knn: state = the (n, k) neighbour sets; a permutation relabels them."""

    def __init__(self, k, normalize: bool, cycle: bool) -> None:
        self.k, self.normalize, self.cycle = k, bool(normalize), cycle

    def prepare(self, a):
        return knn_indices(a, _validate_k(self.k, a.shape[0]), normalize=self.normalize)

    def permute(self, state, perm):
        return permute_neighbours(state, perm)

    def score(self, sx, sy):
        if self.cycle:
            return cycle_knn_from_sets(sx, sy)
        return shared_neighbours(sx, sy) / sx.size


class _CknnaNull:
    def __init__(self, k, normalize: bool, unbiased: bool, eps: float) -> None:
        self.k, self.normalize, self.unbiased, self.eps = k, bool(normalize), bool(unbiased), eps

    def prepare(self, a):
        k = _validate_cknna(a.shape[0], self.k, self.unbiased, self.eps)
        return cknna_side(a, k, normalize=self.normalize, unbiased=self.unbiased)

    def permute(self, state, perm):
        return state.permuted(perm)

    def score(self, sx, sy):
        return cknna_from_sides(sx, sy, unbiased=self.unbiased, eps=self.eps)


class _RsaNull:
    def __init__(self, distance: str) -> None:
        self.distance = distance

    def prepare(self, a):
        return rdm_ranks(rdm(a, self.distance))

    def permute(self, state, perm):
        return state[0].take(perm, axis=0).take(perm, axis=1), state[1]

    def score(self, sx, sy):
        return 0.5 * _inner(sx[0], sy[0]) / np.sqrt(sx[1] * sy[1])  # rsa_from_ranks without BLAS


class _SvccaNull:
    def __init__(self, keep_variance, dims, standardize) -> None:
        self.kw = {"keep_variance": keep_variance, "dims": dims, "standardize": bool(standardize)}

    def prepare(self, a):
        return svcca_basis(a, **self.kw)

    def permute(self, state, perm):
        return state[perm]

    def score(self, sx, sy):
        return svcca_from_bases(sx, sy)


def _null_for(name: str, s: dict, n: int, dims_x: list[int], dims_y: list[int]):
    if name == "cka":
        linear_features = s["kernel"] == "linear" and max(dims_x) * max(dims_y) <= _FEATURE_RATIO * n
        if linear_features and n > max(dims_x + dims_y):
            return _FeatureNull(s["debiased"])
        return _GramNull(s["kernel"], s["debiased"], s["sigma"], s["scale"])
    if name in ("mutual_knn", "cycle_knn"):
        return _KnnNull(s["k"], s.get("normalize", True), name == "cycle_knn")
    if name == "cknna":
        return _CknnaNull(s["k"], s["normalize"], s["unbiased"], s["eps"])
    if name == "rsa":
        return _RsaNull(s["distance"])
    return _SvccaNull(s["keep_variance"], s["dims"], s["standardize"])


# ---------------------------------------------------------------------------------------------------------------
# Calibration of a grid of layer pairs
# ---------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Calibration:
    """Calibrated values of one measure for every (x layer i, y layer j) pair and for the best pair."""

    measure: str
    settings: dict
    values: np.ndarray  # (Lx, Ly) observed s_ij
    null: np.ndarray = field(repr=False)  # (K, Lx, Ly): s_ij under permutation k (the same k for every pair)
    tau: np.ndarray  # (Lx, Ly) per-pair threshold
    p_value: np.ndarray  # (Lx, Ly) per-pair p-value (uncorrected for the search)
    calibrated: np.ndarray  # (Lx, Ly)
    null_mean: np.ndarray  # (Lx, Ly)
    best: tuple[int, int]  # argmax of values (first in row-major order)
    max_value: float  # T = max_ij s_ij
    max_tau: float  # tau of T from the null of the maximum
    max_p_value: float  # p of T: corrected for the search over layer pairs
    max_calibrated: float
    K: int
    alpha: float
    seed: int | None
    perms: np.ndarray = field(repr=False)  # (K, n): row k is permutation k of y's rows

    def records(self) -> list[dict[str, object]]:
        """One dict per layer pair (x_layer, y_layer, value, tau, p_value, calibrated, null_mean, is_best)."""
        return [
            {"x_layer": i, "y_layer": j, "value": float(self.values[i, j]), "tau": float(self.tau[i, j]),
             "p_value": float(self.p_value[i, j]), "calibrated": float(self.calibrated[i, j]),
             "null_mean": float(self.null_mean[i, j]), "is_best": (i, j) == self.best}
            for i in range(self.values.shape[0]) for j in range(self.values.shape[1])
        ]


def _layers(arrays, side: str) -> list[np.ndarray]:
    if isinstance(arrays, np.ndarray):
        arrays = [arrays]
    if not isinstance(arrays, Sequence) or len(arrays) == 0:
        raise ValueError(f"{side} must be an (n, d) array or a non-empty list of them (one per layer)")
    return [validate_matrix(a, f"{side}[{i}]", min_rows=2) for i, a in enumerate(arrays)]


def _validate_perms(perms, n: int) -> np.ndarray:
    p = np.asarray(perms)
    if p.ndim != 2 or p.shape[1] != n or p.shape[0] < 1 or not np.issubdtype(p.dtype, np.integer):
        raise ValueError(f"perms must be a (K, n) = (K, {n}) integer array, got shape {p.shape} dtype {p.dtype}")
    if not (np.sort(p, axis=1) == np.arange(n)).all():
        raise ValueError("perms must hold one permutation of range(n) per row")
    return p.astype(np.int64, copy=False)


def _grid_null(null, xs, ys, perms) -> tuple[np.ndarray, np.ndarray]:
    sx = [null.prepare(x) for x in xs]
    sy = [null.prepare(y) for y in ys]
    values = np.array([[null.score(a, b) for b in sy] for a in sx])
    out = np.empty((perms.shape[0], len(xs), len(ys)))
    for k, perm in enumerate(perms):
        for j, b in enumerate(sy):
            bp = null.permute(b, perm)
            for i, a in enumerate(sx):
                out[k, i, j] = null.score(a, bp)
    return values, out


def _setup(measure: str, xs, ys, settings: dict):
    s = resolve_settings(measure, settings)
    xs, ys = _layers(xs, "xs"), _layers(ys, "ys")
    n = xs[0].shape[0]
    for side, arrays in (("xs", xs), ("ys", ys)):
        for i, a in enumerate(arrays):
            if a.shape[0] != n:
                raise ValueError(f"{side}[{i}] must have n = {n} rows like xs[0] (paired samples), got {a.shape[0]}")
    if measure == "cka" and n < _min_rows(bool(s["debiased"])):
        raise ValueError(f"xs and ys must have at least {_min_rows(bool(s['debiased']))} rows, got {n}")
    null = _null_for(measure, s, n, [a.shape[1] for a in xs], [a.shape[1] for a in ys])
    return s, xs, ys, n, null


def permuted_values(measure: str, x: np.ndarray, y: np.ndarray, perms: np.ndarray, **settings) -> np.ndarray:
    """(K,): the measure of (x, y[perms[k]]) for every k, by the fast route (equal to recomputing
    ``measure(x, y[perm])``; kNN measures: exactly, whenever no tie sits at the k-th neighbour)."""
    _, xs, ys, n, null = _setup(measure, x, y, settings)
    return _grid_null(null, xs, ys, _validate_perms(perms, n))[1][:, 0, 0]


def calibrate(
    measure: str,
    xs: np.ndarray | Sequence[np.ndarray],
    ys: np.ndarray | Sequence[np.ndarray],
    K: int = 200,
    alpha: float = 0.05,
    seed: int | None = 0,
    *,
    perms: np.ndarray | None = None,
    **settings: object,
) -> Calibration:
    """Permutation calibration of ``measure`` (a ``vlalign.methods.registry.MEASURES`` name, with its
    ``settings``) for every pair of an x layer and a y layer, and for the best pair over the search.

    xs: one (n, d) array or a list (one per layer of the first encoder); ys likewise; all rows paired. The null
    uses K permutations of y's rows, ``permutations(n, K, seed)``, or the given ``perms`` (K, n) (then ``seed``
    is recorded as given, None if unknown); the same permutation k serves every layer pair. Per pair: tau,
    p-value, calibrated (module docstring); over the search: the maximum's tau, p-value (corrected for the
    search) and calibrated value. smax is the registry's (1 for every measure here). Returns a ``Calibration``
    with the permutations, so that a result can be recorded and reproduced.
    """
    alpha = _validate_alpha(alpha)
    s, xs, ys, n, null = _setup(measure, xs, ys, settings)
    perms = permutations(n, K, seed) if perms is None else _validate_perms(perms, n)
    values, nulls = _grid_null(null, xs, ys, perms)
    smax = measure_info(measure).smax
    tau = null_threshold(values, nulls, alpha)
    best = np.unravel_index(int(np.argmax(values)), values.shape)
    tmax, tnull = values.max(), nulls.reshape(nulls.shape[0], -1).max(axis=1)
    max_tau = float(null_threshold(tmax, tnull, alpha))
    return Calibration(
        measure=measure, settings=s, values=values, null=nulls, tau=tau,
        p_value=permutation_p_value(values, nulls), calibrated=calibrated_score(values, tau, smax),
        null_mean=nulls.mean(axis=0), best=(int(best[0]), int(best[1])), max_value=float(tmax),
        max_tau=max_tau, max_p_value=float(permutation_p_value(tmax, tnull)),
        max_calibrated=float(calibrated_score(tmax, max_tau, smax)), K=int(perms.shape[0]), alpha=alpha,
        seed=seed, perms=perms,
    )
