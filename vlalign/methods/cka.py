"""HSIC and CKA: exact definitions, feature-space linear CKA, a grid over encoders, shuffled and bootstrap baselines.

Definitions (Kornblith et al. 2019; Song et al. 2012; Maniparambil et al. 2024):

    HSIC_0(K, L) = tr(K H L H) / (n-1)^2                                    biased, H = I - 11^T/n
    HSIC_1(K, L) = [tr(K~L~) + 1^T K~ 1 1^T L~ 1 / ((n-1)(n-2)) - 2/(n-2) 1^T K~ L~ 1] / (n(n-3))
                   with K~, L~ the Grams with their diagonals set to 0      unbiased (Song et al. 2012)
    CKA(K, L)    = HSIC(K, L) / sqrt(HSIC(K, K) HSIC(L, L))                 HSIC_0: CKA, HSIC_1: debiased CKA

H is never formed: Grams are centred by subtracting row and column means (``kernels.center_gram``), and
HSIC_0 = sum_ij (HKH)_ij (HLH)_ij / (n-1)^2 (an elementwise product; both are symmetric), so no matrix product
is needed once the Grams exist. Linear CKA with n > d is computed in feature space and never forms an n x n matrix.
Above ``blockwise.DENSE_MAX_N`` samples (or with ``block_rows`` given) the Grams are visited by tiles instead
(``vlalign.methods.blockwise``): the same quantities, exact to rounding, in memory set by the tile size, not by n.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from vlalign.methods.blockwise import (
    BLOCK_ROWS,
    DENSE_MAX_N,
    TiledGram,
    cka_of_tiles,
    tiled_grams,
    validate_block_rows,
    weighted_moments_of_tiles,
)
from vlalign.methods.kernels import (
    Kernel,
    _validate_square,
    center_gram,
    cross_squared_distances,
    rbf_from_squared_distances,
    rbf_sigma2,
    squared_distances,
    u_center_gram,
    validate_kernel,
    validate_matrix,
    validate_paired,
)

__all__ = [
    "hsic_biased",
    "hsic_unbiased",
    "cka_from_grams",
    "feature_space_linear_cka",
    "cka",
    "CKAGrid",
    "cka_grid",
    "cka_shuffled",
    "CKAInterval",
    "cka_bootstrap",
]

# Rows per block when accumulating X^T Y over row blocks (bounds the extra memory by a block, not by n).
_BLOCK_ELEMENTS = 4_000_000
# Blockwise bootstrap: resamples per pass over the tiles, about this many entries per (n, B) moment array.
_BOOT_ENTRIES = 1 << 22


def _check_grams(k: np.ndarray, l: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    k = _validate_square(k, "k")
    l = _validate_square(l, "l")
    if k.shape != l.shape:
        raise ValueError(f"k and l must have the same shape, got {k.shape} and {l.shape}")
    return k, l


def _min_rows(debiased: bool) -> int:
    return 4 if debiased else 2


# ---------------------------------------------------------------------------------------------------------------
# HSIC
# ---------------------------------------------------------------------------------------------------------------


def hsic_biased(k: np.ndarray, l: np.ndarray) -> float:
    """Biased HSIC: HSIC_0(K, L) = tr(K H L H) / (n-1)^2, H = I - 11^T/n.

    K, L: symmetric (n, n) Grams. Computed as sum((HKH) * L) / (n-1)^2 with HKH from row/column means.
    """
    k, l = _check_grams(k, l)
    n = k.shape[0]
    if n < 2:
        raise ValueError(f"k must be at least 2 x 2, got {k.shape}")
    return float(np.vdot(center_gram(k), l)) / (n - 1) ** 2


def hsic_unbiased(k: np.ndarray, l: np.ndarray) -> float:
    """Unbiased HSIC of Song et al. (2012), K~ = K - diag(K), L~ = L - diag(L):

        HSIC_1 = 1/(n(n-3)) [ tr(K~ L~) + (1^T K~ 1)(1^T L~ 1)/((n-1)(n-2)) - 2/(n-2) 1^T K~ L~ 1 ].

    K, L: symmetric (n, n) Grams, n >= 4. Computed as sum(U(K) * U(L)) / (n(n-3)) with the U-centring
    ``kernels.u_center_gram`` (equal to the formula above, and numerically better behaved).
    """
    k, l = _check_grams(k, l)
    n = k.shape[0]
    if n < 4:
        raise ValueError(f"k must be at least 4 x 4 for the unbiased HSIC, got {k.shape}")
    return float(np.vdot(u_center_gram(k), u_center_gram(l))) / (n * (n - 3))


def _cka_from_centred(kc: np.ndarray, lc: np.ndarray, kk: float, ll: float) -> float:
    """CKA from two centred Grams and their self-products sum(kc*kc), sum(lc*lc) (scale factors cancel)."""
    return float(np.vdot(kc, lc)) / np.sqrt(kk * ll)


def cka_from_grams(k: np.ndarray, l: np.ndarray, *, debiased: bool = False) -> float:
    """CKA(K, L) = HSIC(K, L) / sqrt(HSIC(K, K) HSIC(L, L)), HSIC_0 (biased) or HSIC_1 (``debiased=True``).

    K, L: symmetric (n, n) Grams of the same n samples, in the same order.
    """
    k, l = _check_grams(k, l)
    if k.shape[0] < _min_rows(debiased):
        raise ValueError(f"k must be at least {_min_rows(debiased)} x {_min_rows(debiased)}, got {k.shape}")
    centre = u_center_gram if debiased else center_gram
    kc, lc = centre(k), centre(l)
    return _cka_from_centred(kc, lc, float(np.vdot(kc, kc)), float(np.vdot(lc, lc)))


# ---------------------------------------------------------------------------------------------------------------
# Linear CKA in feature space
# ---------------------------------------------------------------------------------------------------------------


def _block_rows(*dims: int) -> int:
    return max(256, _BLOCK_ELEMENTS // max(dims))


def _centred_cross(x: np.ndarray, y: np.ndarray, mx: np.ndarray, my: np.ndarray) -> np.ndarray:
    """Xc^T Yc with Xc = X - mean, accumulated over row blocks (extra memory: one block, never n x n or n x d)."""
    n = x.shape[0]
    out = np.zeros((x.shape[1], y.shape[1]))
    step = _block_rows(x.shape[1], y.shape[1])
    same = x is y
    for s in range(0, n, step):
        xb = x[s : s + step] - mx
        yb = xb if same else y[s : s + step] - my
        out += xb.T @ yb
    return out


def _centred_row_sq_norms(x: np.ndarray, mx: np.ndarray) -> np.ndarray:
    """||x_i - mean||^2 for every row, by blocks (an n-vector)."""
    n = x.shape[0]
    out = np.empty(n)
    step = _block_rows(x.shape[1])
    for s in range(0, n, step):
        xb = x[s : s + step] - mx
        out[s : s + step] = np.einsum("ij,ij->i", xb, xb)
    return out


@dataclass(frozen=True)
class _FeatureStats:
    """Per-matrix quantities of feature-space linear CKA: column means, self-similarity, centred row norms."""

    mean: np.ndarray
    self_sim: float  # ||Xc^T Xc||_F^2 (biased) or its debiased counterpart
    row_sq: np.ndarray | None  # ||xc_i||^2 (debiased only)
    total_sq: float  # ||Xc||_F^2


def _debiased_dot(xty_sq: float, rx: np.ndarray, ry: np.ndarray, tx: float, ty: float, n: int) -> float:
    """n(n-3) HSIC_1 for linear kernels on centred features (Song's formula with K1 = 0):

    ||Xc^T Yc||_F^2 - n/(n-2) <r_x, r_y> + ||Xc||_F^2 ||Yc||_F^2 / ((n-1)(n-2)), r = centred row norms squared.
    """
    return xty_sq - n / (n - 2.0) * float(rx @ ry) + tx * ty / ((n - 1.0) * (n - 2.0))


def _feature_stats(x: np.ndarray, debiased: bool) -> _FeatureStats:
    mean = x.mean(axis=0)
    xtx = _centred_cross(x, x, mean, mean)
    self_sq = float(np.vdot(xtx, xtx))
    total = float(np.trace(xtx))
    if not debiased:
        return _FeatureStats(mean, self_sq, None, total)
    rows = _centred_row_sq_norms(x, mean)
    return _FeatureStats(mean, _debiased_dot(self_sq, rows, rows, total, total, x.shape[0]), rows, total)


def _feature_cka(x: np.ndarray, y: np.ndarray, sx: _FeatureStats, sy: _FeatureStats, debiased: bool) -> float:
    xty = _centred_cross(x, y, sx.mean, sy.mean)
    num = float(np.vdot(xty, xty))
    if debiased:
        num = _debiased_dot(num, sx.row_sq, sy.row_sq, sx.total_sq, sy.total_sq, x.shape[0])
    return num / np.sqrt(sx.self_sim * sy.self_sim)


def feature_space_linear_cka(x: np.ndarray, y: np.ndarray, *, debiased: bool = False) -> float:
    """Linear CKA without n x n matrices (Kornblith et al. 2019, Sec. 3): with column-centred Xc, Yc,

        CKA = ||Yc^T Xc||_F^2 / (||Xc^T Xc||_F ||Yc^T Yc||_F),

    equal to CKA(X X^T, Y Y^T). Debiased: each ||.||_F^2 is replaced by n(n-3) HSIC_1 written in features,
    ||Xc^T Yc||_F^2 - n/(n-2) sum_i ||xc_i||^2 ||yc_i||^2 + ||Xc||_F^2 ||Yc||_F^2 / ((n-1)(n-2)).
    X: (n, d1), Y: (n, d2), rows paired. Memory: O(d1 d2 + block x d), independent of n^2.
    """
    x, y = validate_paired(x, y, ("x", "y"), min_rows=_min_rows(debiased))
    return _feature_cka(x, y, _feature_stats(x, debiased), _feature_stats(y, debiased), debiased)


# ---------------------------------------------------------------------------------------------------------------
# CKA of two representations
# ---------------------------------------------------------------------------------------------------------------


def _centred_gram(x: np.ndarray, kernel: Kernel, sigma: float | None, scale: float, debiased: bool) -> np.ndarray:
    """The Gram of X for ``kernel``, centred in place (H K H, or U-centred when debiased)."""
    if kernel == "linear":
        k = x @ x.T
    else:
        k = squared_distances(x)
        k = rbf_from_squared_distances(k, rbf_sigma2(k, sigma=sigma, scale=scale), inplace=True)
    return u_center_gram(k, inplace=True) if debiased else center_gram(k, inplace=True)


def _use_features(kernel: str, n: int, *dims: int) -> bool:
    return kernel == "linear" and n > max(dims)


def _tile_rows(n: int, block_rows: int | None) -> int | None:
    """Rows per tile for the blockwise path, or None for the dense Grams: ``block_rows`` when given (forced),
    else BLOCK_ROWS above DENSE_MAX_N samples (up to it, the dense path whose numbers are stored)."""
    if block_rows is not None:
        return validate_block_rows(block_rows)
    return BLOCK_ROWS if n > DENSE_MAX_N else None


def cka(
    x: np.ndarray,
    y: np.ndarray,
    kernel: Kernel = "linear",
    debiased: bool = False,
    *,
    sigma: float | None = None,
    scale: float = 1.0,
    block_rows: int | None = None,
) -> float:
    """CKA(X, Y) = HSIC(K, L) / sqrt(HSIC(K, K) HSIC(L, L)) with K = k(X), L = k(Y).

    X: (n, d1), Y: (n, d2), rows paired. ``kernel``: 'linear' (K = X X^T) or 'rbf'
    (K_ij = exp(-||x_i - x_j||^2 / (2 sigma^2)), sigma^2 = scale^2 * median of the non-zero off-diagonal squared
    distances of that matrix, unless ``sigma`` is given). ``debiased``: HSIC_1 of Song et al. instead of HSIC_0.
    Linear with n > max(d1, d2) is computed in feature space (``feature_space_linear_cka``), never forming n x n.
    Otherwise, above DENSE_MAX_N samples or with ``block_rows`` given, the Grams are visited by tiles of
    ``block_rows`` rows (default BLOCK_ROWS; ``blockwise.cka_of_tiles``, exact to rounding, the RBF bandwidth the
    exact median selected over tiles); up to DENSE_MAX_N, dense (n, n) Grams.
    """
    validate_kernel(kernel, sigma, scale)
    x, y = validate_paired(x, y, ("X", "Y"), min_rows=_min_rows(debiased))
    n = x.shape[0]
    block = _tile_rows(n, block_rows)
    if _use_features(kernel, n, x.shape[1], y.shape[1]):
        return _feature_cka(x, y, _feature_stats(x, debiased), _feature_stats(y, debiased), debiased)
    if block is not None:
        return cka_of_tiles(*tiled_grams(x, y, kernel, sigma=sigma, scale=scale, block_rows=block), debiased)
    kc = _centred_gram(x, kernel, sigma, scale, debiased)
    lc = _centred_gram(y, kernel, sigma, scale, debiased)
    return _cka_from_centred(kc, lc, float(np.vdot(kc, kc)), float(np.vdot(lc, lc)))


# ---------------------------------------------------------------------------------------------------------------
# Grid over encoders
# ---------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CKAGrid:
    """CKA of every vision encoder (rows) with every text encoder (columns)."""

    values: np.ndarray  # (n_vision, n_text)
    vision: tuple[str, ...]
    text: tuple[str, ...]
    kernel: str = "linear"
    debiased: bool = False

    def as_dict(self) -> dict[tuple[str, str], float]:
        """{(vision_name, text_name): cka} for every pair."""
        return {(v, t): float(self.values[i, j]) for i, v in enumerate(self.vision) for j, t in enumerate(self.text)}

    def records(self) -> list[dict[str, object]]:
        """One dict per pair (vision, text, kernel, debiased, cka): ready for a results table."""
        return [
            {"vision": v, "text": t, "kernel": self.kernel, "debiased": self.debiased, "cka": c}
            for (v, t), c in self.as_dict().items()
        ]


def _validate_encoders(arrays: Mapping[str, object], side: str, min_rows: int) -> dict[str, np.ndarray]:
    if not isinstance(arrays, Mapping) or len(arrays) == 0:
        raise ValueError(f"{side} must be a non-empty mapping of encoder name -> (n, d) array")
    return {name: validate_matrix(a, f"{side}[{name!r}]", min_rows=min_rows) for name, a in arrays.items()}


def cka_grid(
    vision: Mapping[str, np.ndarray],
    text: Mapping[str, np.ndarray],
    kernel: Kernel = "linear",
    debiased: bool = False,
    *,
    sigma: float | None = None,
    scale: float = 1.0,
    block_rows: int | None = None,
) -> CKAGrid:
    """CKA(V_a, T_b) for every vision encoder a and text encoder b (same n samples, rows paired across all).

    Each encoder's Gram is built and centred once (not once per pair), and each pair then costs one elementwise
    product: CKA_ab = sum(Kc_a * Lc_b) / (||Kc_a||_F ||Lc_b||_F). Linear with n > every d uses feature space
    (per-encoder means and ||Xc^T Xc||_F once, then ||Xc_a^T Yc_b||_F^2 per pair). Memory for Grams: the text
    Grams plus one vision Gram at a time. Kernel options as in ``cka``; the RBF bandwidth is per encoder. Above
    DENSE_MAX_N samples (or with ``block_rows``) each pair's Grams are visited by tiles (``cka``), the bandwidths
    selected once per encoder.
    """
    validate_kernel(kernel, sigma, scale)
    mr = _min_rows(debiased)
    vis = _validate_encoders(vision, "vision", mr)
    txt = _validate_encoders(text, "text", mr)
    sizes = {a.shape[0] for a in (*vis.values(), *txt.values())}
    if len(sizes) != 1:
        shapes = {f"{side}[{k!r}]": a.shape for side, d in (("vision", vis), ("text", txt)) for k, a in d.items()}
        raise ValueError(f"all encoders must embed the same n samples (same number of rows), got {shapes}")
    n = sizes.pop()
    block = _tile_rows(n, block_rows)
    values = np.empty((len(vis), len(txt)))
    dims = [a.shape[1] for a in (*vis.values(), *txt.values())]
    if not _use_features(kernel, n, *dims) and block is not None:
        tiled = {side: [TiledGram(a, kernel, block, sigma=sigma, scale=scale) for a in d.values()]
                 for side, d in (("vision", vis), ("text", txt))}
        for i, k in enumerate(tiled["vision"]):
            for j, l in enumerate(tiled["text"]):
                values[i, j] = cka_of_tiles(k, l, debiased)
    elif _use_features(kernel, n, *dims):
        tstats = {name: _feature_stats(y, debiased) for name, y in txt.items()}
        for i, x in enumerate(vis.values()):
            sx = _feature_stats(x, debiased)
            for j, (name, y) in enumerate(txt.items()):
                values[i, j] = _feature_cka(x, y, sx, tstats[name], debiased)
    else:
        tgrams = [_centred_gram(y, kernel, sigma, scale, debiased) for y in txt.values()]
        tself = [float(np.vdot(lc, lc)) for lc in tgrams]
        for i, x in enumerate(vis.values()):
            kc = _centred_gram(x, kernel, sigma, scale, debiased)
            kk = float(np.vdot(kc, kc))
            for j, lc in enumerate(tgrams):
                values[i, j] = _cka_from_centred(kc, lc, kk, tself[j])
            del kc
    return CKAGrid(values, tuple(vis), tuple(txt), kernel, debiased)


# ---------------------------------------------------------------------------------------------------------------
# Baselines for a CKA value: shuffled pairing, bootstrap interval
# ---------------------------------------------------------------------------------------------------------------


def cka_shuffled(
    x: np.ndarray,
    y: np.ndarray,
    kernel: Kernel = "linear",
    debiased: bool = False,
    *,
    seed: int = 0,
    sigma: float | None = None,
    scale: float = 1.0,
    block_rows: int | None = None,
) -> float:
    """CKA(X, Y[pi]) with pi a random permutation of the rows drawn from ``np.random.default_rng(seed)``.

    The chance level of ``cka`` (the paper: 0.72 with the true pairing, 0.01 shuffled on COCO).
    """
    x, y = validate_paired(x, y, ("X", "Y"), min_rows=_min_rows(debiased))
    perm = np.random.default_rng(seed).permutation(x.shape[0])
    return cka(x, y[perm], kernel, debiased, sigma=sigma, scale=scale, block_rows=block_rows)


@dataclass(frozen=True)
class CKAInterval:
    """A CKA value with a percentile bootstrap confidence interval."""

    estimate: float
    low: float
    high: float
    level: float
    n_boot: int
    seed: int
    samples: np.ndarray = field(repr=False)
    bias: float = 0.0  # mean of the resamples minus the estimate; low and high are shifted by it


def _bootstrap_grams(x: np.ndarray, y: np.ndarray, kernel: str, sigma2: tuple | None, rows: slice):
    """Row block ``rows`` of the full-data Grams K, L (RBF: bandwidths ``sigma2`` of the full data)."""
    if kernel == "linear":
        return x[rows] @ x.T, y[rows] @ y.T
    return tuple(rbf_from_squared_distances(np.maximum(cross_squared_distances(a[rows], a), 0.0), s2, inplace=True)
                 for a, s2 in ((x, sigma2[0]), (y, sigma2[1])))


def _weighted_moments(x, y, w, kernel, sigma2):
    """For count vectors w (n, B) of B resamples: per resample the sums that HSIC of the resampled Grams needs,
    computed from row blocks of the full-data Grams (a resample's Gram is K[idx][:, idx]; a sample drawn c
    times has weight c). Returns dict of (B,) arrays, and the diagonals' terms."""
    n, nb = w.shape
    kw, lw = np.empty((n, nb)), np.empty((n, nb))
    klw, kkw, llw = np.empty((n, nb)), np.empty((n, nb)), np.empty((n, nb))
    kd, ld = np.empty(n), np.empty(n)
    step = max(1, min(n, 4_000_000 // max(n, 1)))
    for start in range(0, n, step):
        rows = slice(start, min(n, start + step))
        k, l = _bootstrap_grams(x, y, kernel, sigma2, rows)
        kw[rows], lw[rows] = k @ w, l @ w
        klw[rows], kkw[rows], llw[rows] = (k * l) @ w, (k * k) @ w, (l * l) @ w
        r = np.arange(rows.start, rows.stop)
        kd[rows], ld[rows] = k[r - rows.start, r], l[r - rows.start, r]
    return kw, lw, klw, kkw, llw, kd, ld


def _hsic_weighted(w, aw, bw, abw, ad, bd, n, debiased):
    """HSIC (up to the factor that cancels in CKA) of the resampled Grams A~ = A[idx][:, idx], B~, from
    w (n, B) counts, aw = A w, bw = B w, abw = (A o B) w, and the diagonals ad, bd:
        biased:   tr(A~ B~) - (2/n) 1'A~B~1 + (1'A~1)(1'B~1)/n^2           (= tr(A~ H B~ H))
        debiased: [tr(A0 B0) + 1'A0 1 1'B0 1/((n-1)(n-2)) - 2/(n-2) 1'A0 B0 1] / (n(n-3)), A0 = A~ off the diagonal
    with tr(A~B~) = w'(A o B)w, 1'A~B~1 = sum_j w_j (Aw)_j (Bw)_j, 1'A~1 = w'Aw (Song et al. 2012 for the second)."""
    t = np.einsum("ib,ib->b", w, abw)
    sa, sb = np.einsum("ib,ib->b", w, aw), np.einsum("ib,ib->b", w, bw)
    if not debiased:
        u = np.einsum("ib,ib,ib->b", w, aw, bw)
        return t - 2.0 / n * u + sa * sb / n**2
    t0 = t - w.T @ (ad * bd)
    sa0, sb0 = sa - w.T @ ad, sb - w.T @ bd
    u0 = np.einsum("ib,ib,ib->b", w, aw - ad[:, None], bw - bd[:, None])
    return (t0 + sa0 * sb0 / ((n - 1) * (n - 2)) - 2.0 / (n - 2) * u0) / (n * (n - 3))


def _bootstrap_samples(n: int, idx: np.ndarray, debiased: bool, moments, per_chunk: int = 64) -> np.ndarray:
    """CKA of every resample (rows of ``idx``), in closed form over the full-data Grams (never a Gram per resample).
    ``moments(w)``: ``_weighted_moments`` (dense rows) or ``blockwise.weighted_moments_of_tiles`` for the count
    vectors w of about ``per_chunk`` resamples at a time (each chunk is one pass over the Grams)."""
    out = []
    for chunk in np.array_split(idx, max(1, len(idx) // per_chunk)):
        w = np.zeros((n, len(chunk)))
        for b, rows in enumerate(chunk):
            np.add.at(w[:, b], rows, 1.0)
        kw, lw, klw, kkw, llw, kd, ld = moments(w)
        kl = _hsic_weighted(w, kw, lw, klw, kd, ld, n, debiased)
        kk = _hsic_weighted(w, kw, kw, kkw, kd, kd, n, debiased)
        ll = _hsic_weighted(w, lw, lw, llw, ld, ld, n, debiased)
        with np.errstate(invalid="ignore", divide="ignore"):
            out.append(kl / np.sqrt(kk * ll))
    return np.concatenate(out)


def cka_bootstrap(
    x: np.ndarray,
    y: np.ndarray,
    kernel: Kernel = "linear",
    debiased: bool = False,
    *,
    n_boot: int = 200,
    level: float = 0.95,
    seed: int = 0,
    sigma: float | None = None,
    scale: float = 1.0,
    block_rows: int | None = None,
) -> CKAInterval:
    """Percentile bootstrap interval for CKA(X, Y): resample the n paired rows with replacement ``n_boot`` times
    (indices from ``np.random.default_rng(seed)``), compute CKA on each resample, and report the
    ((1-level)/2, (1+level)/2) quantiles shifted by the bootstrap's bias estimate (mean of the resamples minus the
    estimate). The shift matters: a resample repeats samples, and repeated samples align perfectly with
    themselves, so resampled CKA sits above the estimate (on emoji by about half the interval's width, which
    left the plain percentile interval with the estimate at or below its lower end). A resample's Gram is the full data's Gram cut at the drawn rows,
    K[idx][:, idx] (a duplicated sample is the same sample twice), so every resample's HSIC terms are
    weighted sums over the full Grams with the draw counts as weights (``_hsic_weighted``): all resamples
    together cost a few (n, n) x (n, B) products over row blocks, never a Gram per resample. RBF: the bandwidth
    is the full data's median heuristic, held fixed across resamples (the interval is for CKA at that
    bandwidth). Deterministic given ``seed``. RBF above DENSE_MAX_N samples, or any kernel with ``block_rows``
    given: the Grams are visited by tiles (``blockwise``; the bandwidths selected once, the estimate by
    ``cka_of_tiles``, the resamples' moments by ``weighted_moments_of_tiles``), in memory O(block_rows^2 + n B).
    """
    validate_kernel(kernel, sigma, scale)
    x, y = validate_paired(x, y, ("X", "Y"), min_rows=_min_rows(debiased))
    if not (isinstance(n_boot, int | np.integer) and n_boot >= 1):
        raise ValueError(f"n_boot must be a positive integer, got {n_boot!r}")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level!r}")
    n = x.shape[0]
    block = _tile_rows(n, block_rows) if kernel == "rbf" or block_rows is not None else None
    if block is None:  # the dense Grams' rows (linear: bounded by row blocks at any n)
        estimate = cka(x, y, kernel, debiased, sigma=sigma, scale=scale)
        sigma2 = None
        if kernel == "rbf":
            sigma2 = tuple(rbf_sigma2(squared_distances(a), sigma=sigma, scale=scale) for a in (x, y))
        moments, per_chunk = (lambda w: _weighted_moments(x, y, w, kernel, sigma2)), 64
    else:
        k, l = tiled_grams(x, y, kernel, sigma=sigma, scale=scale, block_rows=block)
        estimate = cka_of_tiles(k, l, debiased) if kernel == "rbf" else cka(x, y, kernel, debiased, block_rows=block)
        moments, per_chunk = (lambda w: weighted_moments_of_tiles(k, l, w)), max(64, _BOOT_ENTRIES // n)
    rng = np.random.default_rng(seed)
    idx = np.stack([rng.integers(0, n, size=n) for _ in range(n_boot)])
    samples = _bootstrap_samples(n, idx, debiased, moments, per_chunk)
    bias = float(np.mean(samples) - estimate)
    low, high = np.quantile(samples, [(1 - level) / 2, (1 + level) / 2]) - bias
    return CKAInterval(estimate, float(low), float(high), float(level), int(n_boot), int(seed), samples, bias)
