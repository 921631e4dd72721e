"""Kernels (Gram matrices), pairwise distances, the RBF bandwidth and Gram centring.

One short function per quantity, after Kornblith et al.'s CKA reference code. Everything is float64.

Notation: X is (n, d) with one sample per row; K is an (n, n) Gram; H = I - 11^T/n is the centring matrix,
which is never formed: centring subtracts row and column means instead.

The input checks (``validate_matrix``, ``validate_paired``) live here too, so that every public function of the
engine validates its arguments once, at its boundary, with the same messages.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

__all__ = [
    "Kernel",
    "validate_matrix",
    "validate_paired",
    "validate_kernel",
    "gram_linear",
    "squared_distances",
    "cross_squared_distances",
    "median_squared_distance",
    "rbf_sigma2",
    "rbf_from_squared_distances",
    "gram_rbf",
    "gram",
    "cross_gram",
    "gram_diagonal",
    "center_gram",
    "center_with_base",
    "u_center_gram",
]

Kernel = Literal["linear", "rbf"]
KERNELS = ("linear", "rbf")


# ---------------------------------------------------------------------------------------------------------------
# Input checks (used at every public boundary of the engine)
# ---------------------------------------------------------------------------------------------------------------


def _all_finite(a: np.ndarray) -> bool:
    """True when every entry of ``a`` is finite; a sum is the fast path (NaN/inf anywhere make it non-finite)."""
    if np.isfinite(a.sum()):
        return True
    return bool(np.isfinite(a).all())  # the sum may have overflowed on huge but finite values


def validate_matrix(x: object, name: str, *, min_rows: int = 1, min_cols: int = 1) -> np.ndarray:
    """Return ``x`` as a 2-D float64 array, or raise ValueError naming ``name`` and what was expected.

    Checks: two dimensions, at least ``min_rows`` rows and ``min_cols`` columns, every entry finite.
    No copy is made when ``x`` is already a float64 array.
    """
    try:
        a = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be a numeric array, got {type(x).__name__}: {exc}") from exc
    if a.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array (samples x features), got shape {a.shape}")
    if a.shape[0] < min_rows:
        raise ValueError(f"{name} must have at least {min_rows} rows (samples), got {a.shape[0]}")
    if a.shape[1] < min_cols:
        raise ValueError(f"{name} must have at least {min_cols} columns, got {a.shape[1]}")
    if not _all_finite(a):
        raise ValueError(f"{name} contains NaN or infinite values")
    return a


def validate_paired(
    x: object, y: object, names: tuple[str, str] = ("X", "Y"), *, min_rows: int = 2
) -> tuple[np.ndarray, np.ndarray]:
    """Validate two matrices whose rows are paired (same number of rows); see ``validate_matrix``."""
    a = validate_matrix(x, names[0], min_rows=min_rows)
    b = validate_matrix(y, names[1], min_rows=min_rows)
    if a.shape[0] != b.shape[0]:
        raise ValueError(
            f"{names[0]} and {names[1]} must have the same number of rows (paired samples), "
            f"got {a.shape[0]} and {b.shape[0]}"
        )
    return a, b


def validate_split(
    base_x: object, base_y: object, query_x: object, query_y: object, *, min_base: int = 1
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Validate a base/query split: base_x (M, d1) and base_y (M, d2) paired; query_x (p, d1); query_y (q, d2)."""
    bx = validate_matrix(base_x, "base_x", min_rows=min_base)
    by = validate_matrix(base_y, "base_y", min_rows=min_base)
    if bx.shape[0] != by.shape[0]:
        raise ValueError(f"base_x and base_y must have the same number of rows (paired), got "
                         f"{bx.shape[0]} and {by.shape[0]}")
    qx = validate_matrix(query_x, "query_x")
    qy = validate_matrix(query_y, "query_y")
    if qx.shape[1] != bx.shape[1]:
        raise ValueError(f"query_x must have {bx.shape[1]} columns like base_x, got {qx.shape[1]}")
    if qy.shape[1] != by.shape[1]:
        raise ValueError(f"query_y must have {by.shape[1]} columns like base_y, got {qy.shape[1]}")
    return bx, by, qx, qy


def validate_kernel(kernel: str, sigma: float | None = None, scale: float = 1.0) -> None:
    """Raise ValueError unless ``kernel`` is 'linear' or 'rbf' and the bandwidth options are positive."""
    if kernel not in KERNELS:
        raise ValueError(f"kernel must be one of {KERNELS}, got {kernel!r}")
    if sigma is not None and not (np.isfinite(sigma) and sigma > 0):
        raise ValueError(f"sigma must be a positive finite number or None, got {sigma!r}")
    if not (np.isfinite(scale) and scale > 0):
        raise ValueError(f"scale must be a positive finite number, got {scale!r}")


def _validate_square(k: object, name: str) -> np.ndarray:
    a = validate_matrix(k, name)
    if a.shape[0] != a.shape[1]:
        raise ValueError(f"{name} must be a square (n, n) Gram matrix, got shape {a.shape}")
    return a


# ---------------------------------------------------------------------------------------------------------------
# Grams and distances
# ---------------------------------------------------------------------------------------------------------------


def gram_linear(x: np.ndarray) -> np.ndarray:
    """Linear Gram: K = X X^T, K_ij = <x_i, x_j>.  X: (n, d) -> K: (n, n), exactly symmetric."""
    x = validate_matrix(x, "x")
    return x @ x.T  # numpy uses syrk for a @ a.T: half the work and an exactly symmetric result


def squared_distances(x: np.ndarray) -> np.ndarray:
    """Squared Euclidean distances by the Gram trick: D_ij = ||x_i||^2 + ||x_j||^2 - 2 <x_i, x_j>.

    X: (n, d) -> D: (n, n). Round-off can leave small negative entries (clipped to 0) and, on the diagonal,
    non-zero values where the exact answer is 0: the diagonal is set to exactly 0, so that it can never enter
    the median bandwidth (``median_squared_distance``).
    """
    x = validate_matrix(x, "x")
    d = x @ x.T
    sq = np.diag(d).copy()
    d *= -2.0
    d += sq[:, None]
    d += sq[None, :]
    np.maximum(d, 0.0, out=d)
    np.fill_diagonal(d, 0.0)
    return d


def cross_squared_distances(x: np.ndarray, z: np.ndarray) -> np.ndarray:
    """Squared distances between two sets: D_ij = ||x_i - z_j||^2 (Gram trick, clipped at 0).

    X: (p, d), Z: (m, d) -> D: (p, m).
    """
    x = validate_matrix(x, "x")
    z = validate_matrix(z, "z")
    if x.shape[1] != z.shape[1]:
        raise ValueError(f"x and z must have the same number of columns, got {x.shape[1]} and {z.shape[1]}")
    d = x @ z.T
    d *= -2.0
    d += np.einsum("ij,ij->i", x, x)[:, None]
    d += np.einsum("ij,ij->i", z, z)[None, :]
    np.maximum(d, 0.0, out=d)
    return d


def median_squared_distance(d: np.ndarray) -> float:
    """The paper's median heuristic: median{ D_ij : i != j, D_ij > 0 } of an (n, n) squared-distance matrix.

    Only off-diagonal pairs (i != j) are used, whatever the diagonal holds (Gram-trick round-off there never
    enters the median); zero distances (duplicate samples) are left out, as in the paper. Both triangles are
    used, which gives the same median as one triangle for a symmetric D.
    """
    d = _validate_square(d, "d")
    n = d.shape[0]
    if n < 2:
        raise ValueError(f"d must be at least 2 x 2 to have off-diagonal pairs, got {d.shape}")
    # a copy (the partition below reorders it) in which the diagonal is marked -1, i.e. left out like a zero
    off = np.array(d, dtype=np.float64, order="C", copy=True).ravel()
    off[:: n + 1] = -1.0
    # median of the positive entries without a boolean-mask copy: the z entries <= 0 sort first, so the positive
    # ones occupy ranks z .. N-1 and their median sits at ranks z + (m-1)//2 and z + m//2 (m positive entries)
    z = int(np.count_nonzero(off <= 0))
    m = off.size - z
    if m == 0:
        raise ValueError("all pairwise distances are zero (identical samples): the median bandwidth is undefined")
    lo, hi = z + (m - 1) // 2, z + m // 2
    off.partition([lo, hi])
    return float((off[lo] + off[hi]) / 2)


def rbf_sigma2(d: np.ndarray | None = None, *, sigma: float | None = None, scale: float = 1.0) -> float:
    """The RBF bandwidth sigma^2 used by k(x, y) = exp(-||x - y||^2 / (2 sigma^2)).

    Default (the paper): sigma^2 = scale^2 * median{ D_ij : i != j, D_ij > 0 } with scale = 1, i.e. sigma is
    ``scale`` times the median pairwise distance's square root (Kornblith's ``threshold``). With ``sigma`` given,
    sigma^2 = sigma^2 and ``d`` is not used.
    """
    validate_kernel("rbf", sigma, scale)
    if sigma is not None:
        return float(sigma) ** 2
    if d is None:
        raise ValueError("d (squared distances) is required when sigma is None")
    return float(scale) ** 2 * median_squared_distance(d)


def rbf_from_squared_distances(d: np.ndarray, sigma2: float, *, inplace: bool = False) -> np.ndarray:
    """RBF kernel from squared distances: K_ij = exp(-D_ij / (2 sigma^2)). In place on ``d`` if asked."""
    k = d if inplace else np.array(d, dtype=np.float64, copy=True)
    k *= -0.5 / sigma2
    np.exp(k, out=k)
    return k


def gram_rbf(x: np.ndarray, *, sigma: float | None = None, scale: float = 1.0) -> np.ndarray:
    """RBF Gram: K_ij = exp(-||x_i - x_j||^2 / (2 sigma^2)), sigma^2 from ``rbf_sigma2`` (per-matrix median).

    X: (n, d) -> K: (n, n).
    """
    x = validate_matrix(x, "x", min_rows=2)
    validate_kernel("rbf", sigma, scale)
    d = squared_distances(x)
    return rbf_from_squared_distances(d, rbf_sigma2(d, sigma=sigma, scale=scale), inplace=True)


def gram(x: np.ndarray, kernel: Kernel = "linear", *, sigma: float | None = None, scale: float = 1.0) -> np.ndarray:
    """Gram matrix of X (n, d) for ``kernel`` 'linear' (X X^T) or 'rbf' (``gram_rbf``)."""
    validate_kernel(kernel, sigma, scale)
    if kernel == "linear":
        return gram_linear(x)
    return gram_rbf(x, sigma=sigma, scale=scale)


def cross_gram(x: np.ndarray, z: np.ndarray, kernel: Kernel = "linear", *, sigma2: float | None = None) -> np.ndarray:
    """Cross-kernel between two sets: K_ij = k(x_i, z_j).  X: (p, d), Z: (m, d) -> K: (p, m).

    linear: K_ij = <x_i, z_j>, i.e. K = X Z^T.
    rbf:    K_ij = exp(-||x_i - z_j||^2 / (2 sigma^2)) with the given ``sigma2`` (required: a cross-kernel has no
            bandwidth of its own; e.g. take ``rbf_sigma2`` of one of the two sets), distances by
            ``cross_squared_distances``.
    """
    if kernel not in KERNELS:
        raise ValueError(f"kernel must be one of {KERNELS}, got {kernel!r}")
    if kernel == "rbf":
        if sigma2 is None or not (np.isfinite(sigma2) and sigma2 > 0):
            raise ValueError(f"sigma2 must be a positive finite number for the rbf kernel, got {sigma2!r}")
        return _cross_gram(x, z, kernel, sigma2)  # cross_squared_distances validates x and z
    x = validate_matrix(x, "x")
    z = validate_matrix(z, "z")
    if x.shape[1] != z.shape[1]:
        raise ValueError(f"x and z must have the same number of columns, got {x.shape[1]} and {z.shape[1]}")
    return _cross_gram(x, z, kernel, sigma2)


def _cross_gram(x: np.ndarray, z: np.ndarray, kernel: str, sigma2: float | None) -> np.ndarray:
    """``cross_gram`` without the checks (for callers that validated x and z already)."""
    if kernel == "rbf":
        return rbf_from_squared_distances(cross_squared_distances(x, z), sigma2, inplace=True)
    return x @ z.T


def gram_diagonal(x: np.ndarray, kernel: Kernel = "linear") -> np.ndarray:
    """The diagonal of the Gram, kappa_i = k(x_i, x_i), without forming the Gram.  X: (n, d) -> (n,).

    linear: kappa_i = ||x_i||^2.   rbf: kappa_i = exp(0) = 1 whatever the bandwidth.
    """
    if kernel not in KERNELS:
        raise ValueError(f"kernel must be one of {KERNELS}, got {kernel!r}")
    return _gram_diagonal(validate_matrix(x, "x"), kernel)


def _gram_diagonal(x: np.ndarray, kernel: str) -> np.ndarray:
    """``gram_diagonal`` without the checks."""
    if kernel == "rbf":
        return np.ones(x.shape[0])
    return np.einsum("ij,ij->i", x, x)


# ---------------------------------------------------------------------------------------------------------------
# Centring (no dense H)
# ---------------------------------------------------------------------------------------------------------------


def center_gram(k: np.ndarray, *, inplace: bool = False) -> np.ndarray:
    """Double centring: H K H = K - 1 r^T/n ... written out: (HKH)_ij = K_ij - mean_i. - mean_.j + mean_..

    K: (n, n). The centring matrix H = I - 11^T/n is never formed (O(n^2) instead of O(n^3)).
    """
    k = _validate_square(k, "k")
    kc = k if inplace else k.copy()
    row = kc.mean(axis=1)
    col = kc.mean(axis=0)
    grand = row.mean()
    kc -= row[:, None]
    kc -= col[None, :]
    kc += grand
    return kc


def center_with_base(
    k_bb: np.ndarray, k_qb: np.ndarray, kappa: np.ndarray, *, inplace: bool = False
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Centre a base Gram and the kernels of extra (query) samples with the base's statistics.

    K_bb: (M, M) symmetric Gram of M base samples; k_qb: (p, M), row i is k_i = k(q_i, base) for query i;
    kappa: (p,), kappa_i = k(q_i, q_i). With r = K_bb 1 / M (the base Gram's row means, before centring) and
    g = 1^T K_bb 1 / M^2:
        Kc_bb      = K_bb - r 1^T - 1 r^T + g    (= H K_bb H, i.e. ``center_gram``)
        kc_i       = k_i - r - mean(k_i) + g
        kappa_c_i  = kappa_i - 2 mean(k_i) + g
    Returns (Kc_bb, kc (p, M), kappa_c (p,)). For each i this subtracts a 1^T + 1 a^T, a = (r - g/2, mean(k_i) - g/2),
    from the augmented (M+1) x (M+1) Gram K~ = [[K_bb, k_i], [k_i^T, kappa_i]], which the centring matrix
    annihilates: H K~ H is unchanged, while Kc_bb 1 = 0 and 1^T kc_i = 0 (the "Closed form" of local CKA, README).
    ``inplace``: overwrite ``k_bb`` and ``k_qb`` (float64 inputs) instead of copying them.
    """
    k_bb = _validate_square(k_bb, "k_bb")
    k_qb = validate_matrix(k_qb, "k_qb")
    kappa = np.asarray(kappa, dtype=np.float64)
    if k_qb.shape[1] != k_bb.shape[0]:
        raise ValueError(f"k_qb must have {k_bb.shape[0]} columns (one per base sample), got {k_qb.shape[1]}")
    if kappa.shape != (k_qb.shape[0],):
        raise ValueError(f"kappa must have shape ({k_qb.shape[0]},) (one per query row of k_qb), got {kappa.shape}")
    if not _all_finite(kappa):
        raise ValueError("kappa contains NaN or infinite values")
    return _center_with_base(k_bb, k_qb, kappa, inplace)


def _center_with_base(
    k_bb: np.ndarray, k_qb: np.ndarray, kappa: np.ndarray, inplace: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``center_with_base`` without the checks of k_qb and kappa (float64 arrays of matching shapes)."""
    r = k_bb.mean(axis=1)  # before center_gram, which may overwrite k_bb
    g = r.mean()
    km = k_qb.mean(axis=1)
    kc_bb = center_gram(k_bb, inplace=inplace)
    kc = k_qb if inplace else k_qb.copy()
    kc -= r[None, :]
    kc -= km[:, None]
    kc += g
    return kc_bb, kc, kappa - 2 * km + g


def u_center_gram(k: np.ndarray, *, inplace: bool = False) -> np.ndarray:
    """U-centring (Szekely & Rizzo 2014), the centring behind the unbiased HSIC of Song et al. (2012).

    With K~ = K with a zero diagonal, r_i = sum_j K~_ij, s = sum_ij K~_ij:
        U_ij = K~_ij - r_i/(n-2) - r_j/(n-2) + s/((n-1)(n-2))  for i != j,   U_ii = 0.
    Then sum_ij U(K)_ij U(L)_ij / (n(n-3)) is Song et al.'s unbiased HSIC_1. Requires n >= 4. K: (n, n), symmetric.
    """
    k = _validate_square(k, "k")
    n = k.shape[0]
    if n < 4:
        raise ValueError(f"k must be at least 4 x 4 for the unbiased (U-centred) estimator, got {k.shape}")
    u = k if inplace else k.copy()
    np.fill_diagonal(u, 0.0)
    means = u.sum(axis=0) / (n - 2)
    means -= means.sum() / (2 * (n - 1))
    u -= means[:, None]
    u -= means[None, :]
    np.fill_diagonal(u, 0.0)
    return u
