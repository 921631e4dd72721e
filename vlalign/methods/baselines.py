"""Baselines for training-free matching: each returns a (p, q) score matrix S[i, j] for query image i and query
caption j, to be evaluated with the same helpers as local CKA (``retrieval.recall_at_k``,
``matching.assignment_match``).

- linear regression fitted on the base pairs (images -> captions), then cosine to the query captions;
- relative representations (Moschella et al. 2023): cosine to the base anchors in each space, then cosine between
  the relative vectors;
- orthogonal Procrustes (Li et al.) after PCA of each space to a common dimension, fitted on the base pairs;
- plain cosine (only meaningful for aligned models such as CLIP; needs equal dimensions).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from vlalign.methods.kernels import validate_matrix, validate_split

__all__ = [
    "cosine_similarity_matrix",
    "linear_regression_scores",
    "relative_scores",
    "procrustes_scores",
    "cosine_scores",
    "BASELINES",
    "baseline_scores",
]


def _unit_rows(a: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(a, axis=1, keepdims=True)
    return a / np.where(norms > 0, norms, 1.0)  # a zero row stays zero: cosine 0 with everything


def cosine_similarity_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """S_ij = <a_i, b_j> / (||a_i|| ||b_j||), 0 where a row is zero. A: (p, d), B: (q, d) -> (p, q)."""
    a = validate_matrix(a, "a")
    b = validate_matrix(b, "b")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"a and b must have the same number of columns, got {a.shape[1]} and {b.shape[1]}")
    return _unit_rows(a) @ _unit_rows(b).T


def linear_regression_scores(
    base_x: np.ndarray, base_y: np.ndarray, query_x: np.ndarray, query_y: np.ndarray, *, intercept: bool = True
) -> np.ndarray:
    """S = cos([query_x, 1] W, query_y), W = argmin_W ||[base_x, 1] W - base_y||_F (least squares, minimum-norm
    when underdetermined, e.g. M < d1). base_x (M, d1), base_y (M, d2), query_x (p, d1), query_y (q, d2) -> (p, q).
    """
    bx, by, qx, qy = validate_split(base_x, base_y, query_x, query_y)
    if intercept:
        bx = np.hstack([bx, np.ones((bx.shape[0], 1))])
        qx = np.hstack([qx, np.ones((qx.shape[0], 1))])
    w, *_ = np.linalg.lstsq(bx, by, rcond=None)
    return cosine_similarity_matrix(qx @ w, qy)


def relative_scores(base_x: np.ndarray, base_y: np.ndarray, query_x: np.ndarray, query_y: np.ndarray) -> np.ndarray:
    """Relative representations: r_x(i) = cos(query_x_i, base_x) in R^M, r_y(j) = cos(query_y_j, base_y);
    S_ij = cos(r_x(i), r_y(j)). The base rows are the anchors, paired across the two spaces. -> (p, q)."""
    bx, by, qx, qy = validate_split(base_x, base_y, query_x, query_y)
    return cosine_similarity_matrix(cosine_similarity_matrix(qx, bx), cosine_similarity_matrix(qy, by))


def _pca_basis(centred: np.ndarray, k: int) -> np.ndarray:
    """Top-k principal directions (d, k) of row-centred data, signs fixed (largest entry of each positive)."""
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    v = vt[:k].T
    signs = np.sign(v[np.abs(v).argmax(axis=0), np.arange(k)])
    return v * np.where(signs == 0, 1.0, signs)


def procrustes_scores(
    base_x: np.ndarray, base_y: np.ndarray, query_x: np.ndarray, query_y: np.ndarray, *, dim: int | None = None
) -> np.ndarray:
    """Orthogonal Procrustes after PCA to a common dimension k, all fitted on the base pairs:

        Px = PCA_k(base_x), Py = PCA_k(base_y)  (each centred by its base mean),
        R = argmin_{R^T R = I} ||Px(base_x) R - Py(base_y)||_F = U V^T,  U S V^T = svd(Px(base_x)^T Py(base_y)),
        S_ij = cos(Px(query_x_i) R, Py(query_y_j)).

    k = ``dim``, default min(d1, d2, M - 1) (the centred base has rank at most M - 1). -> (p, q).
    """
    bx, by, qx, qy = validate_split(base_x, base_y, query_x, query_y, min_base=2)
    kmax = min(bx.shape[1], by.shape[1], bx.shape[0] - 1)
    k = kmax if dim is None else int(dim)
    if not 1 <= k <= kmax:
        raise ValueError(f"dim must be in [1, min(d1, d2, M - 1)] = [1, {kmax}], got {dim!r}")
    mx, my = bx.mean(axis=0), by.mean(axis=0)
    vx = _pca_basis(bx - mx, k)
    vy = _pca_basis(by - my, k)
    zx, zy = (bx - mx) @ vx, (by - my) @ vy
    u, _, vt = np.linalg.svd(zx.T @ zy)
    r = u @ vt
    return cosine_similarity_matrix((qx - mx) @ vx @ r, (qy - my) @ vy)


def cosine_scores(query_x: np.ndarray, query_y: np.ndarray) -> np.ndarray:
    """S_ij = cos(query_x_i, query_y_j): no fitting, only meaningful for models trained to share one space (CLIP).
    query_x (p, d) and query_y (q, d) must have the same dimension d."""
    qx = validate_matrix(query_x, "query_x")
    qy = validate_matrix(query_y, "query_y")
    if qx.shape[1] != qy.shape[1]:
        raise ValueError(
            f"cosine_scores needs query_x and query_y in one space (equal dimensions), got {qx.shape[1]} and "
            f"{qy.shape[1]}; for unaligned encoders use 'linear', 'relative' or 'procrustes'"
        )
    return cosine_similarity_matrix(qx, qy)


BASELINES: dict[str, Callable[..., np.ndarray]] = {
    "linear": linear_regression_scores,
    "relative": relative_scores,
    "procrustes": procrustes_scores,
    "cosine": lambda base_x, base_y, query_x, query_y: cosine_scores(query_x, query_y),
}


def baseline_scores(
    name: str, base_x: np.ndarray, base_y: np.ndarray, query_x: np.ndarray, query_y: np.ndarray, **options: object
) -> np.ndarray:
    """The (p, q) score matrix of baseline ``name`` in {'linear', 'relative', 'procrustes', 'cosine'}
    ('cosine' ignores the base pairs). ``options`` go to the baseline (e.g. dim= for procrustes)."""
    if name not in BASELINES:
        raise ValueError(f"name must be one of {sorted(BASELINES)}, got {name!r}")
    return BASELINES[name](base_x, base_y, query_x, query_y, **options)
