"""Preprocessing of embeddings before matching (Maniparambil et al. 2024, Sec. 4.3): stretching, base selection.

- Stretching: divide every dimension by its standard deviation over the rows given (base + query).
- Base selection: which M samples form the seed (base) set. Random, or k-means with M clusters on the image
  (or the text) embeddings, taking the sample nearest each centre (the paper found k-means on images best);
  "nearest" is the smallest Euclidean distance by default, or the largest cosine similarity (metric='cosine',
  the paper's code).
"""

from __future__ import annotations

import warnings
from typing import Literal

import numpy as np

from vlalign.methods.kernels import validate_matrix

__all__ = [
    "stretch",
    "stretch_by",
    "stretch_base_query",
    "select_base_random",
    "select_base_kmeans",
    "select_base",
]

METRICS = ("euclidean", "cosine")

# entries of the (centres, block of samples) similarity matrix formed at once by metric='cosine' (~32 MiB)
_COSINE_BLOCK_ENTRIES = 1 << 22


def stretch(x: np.ndarray) -> np.ndarray:
    """Stretching: X'_ij = X_ij / std_j, std_j = the standard deviation of column j over the rows of X.

    A constant column (std_j = 0) is left as it is (divided by 1). X: (n, d) -> (n, d).
    """
    x = validate_matrix(x, "x", min_rows=1)
    std = x.std(axis=0)
    return x / np.where(std > 0, std, 1.0)


def stretch_by(x: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """Stretching by another set's spread: X'_ij = X_ij / std_j(ref), std_j(ref) the standard deviation
    (ddof=0) of column j over the rows of ``ref``; a column with std_j(ref) = 0 is left as it is (divided by 1),
    as in ``stretch``. ``stretch_by(x, x)`` equals ``stretch(x)``. x: (n, d), ref: (m, d) -> (n, d).

    E.g. stretch only the selected base rows by the std of the whole pool plus the queries.
    """
    x = validate_matrix(x, "x")
    ref = validate_matrix(ref, "ref")
    if x.shape[1] != ref.shape[1]:
        raise ValueError(f"x and ref must have the same number of columns, got {x.shape[1]} and {ref.shape[1]}")
    std = ref.std(axis=0)
    return x / np.where(std > 0, std, 1.0)


def stretch_base_query(base: np.ndarray, query: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``stretch`` with the standard deviation taken over base and query together (the paper's rows), returned
    split again. base: (M, d), query: (p, d)."""
    base = validate_matrix(base, "base")
    query = validate_matrix(query, "query")
    if base.shape[1] != query.shape[1]:
        raise ValueError(f"base and query must have the same number of columns, got {base.shape[1]} and "
                         f"{query.shape[1]}")
    s = stretch(np.vstack([base, query]))
    return s[: base.shape[0]], s[base.shape[0] :]


def _check_size(n: int, size: int) -> None:
    if not (isinstance(size, int | np.integer) and 1 <= size <= n):
        raise ValueError(f"size must be an integer in [1, {n}] (the number of samples), got {size!r}")


def select_base_random(n: int, size: int, *, seed: int = 0) -> np.ndarray:
    """``size`` distinct indices of range(n), uniformly at random from ``np.random.default_rng(seed)``, sorted."""
    _check_size(n, size)
    return np.sort(np.random.default_rng(seed).choice(n, size=size, replace=False)).astype(np.int64)


def _check_metric(metric: str) -> None:
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")


def _most_cosine_similar(centres: np.ndarray, x: np.ndarray) -> np.ndarray:
    """For every centre c_k: argmax_i cos(x_i, c_k) (first maximum: lowest i), in column blocks of x.

    cos = <x_i, c_k> / (||x_i|| ||c_k||); a zero row of x has cosine 0 with every centre. Dividing by ||c_k|| does
    not change an argmax over i, so only the rows of x are normalised."""
    norms = np.linalg.norm(x, axis=1)
    best = np.full(centres.shape[0], -np.inf)
    arg = np.zeros(centres.shape[0], dtype=np.int64)
    block = max(1, _COSINE_BLOCK_ENTRIES // max(1, centres.shape[0]))
    for start in range(0, x.shape[0], block):
        stop = min(x.shape[0], start + block)
        s = centres @ x[start:stop].T
        s /= np.where(norms[start:stop] > 0, norms[start:stop], 1.0)[None, :]
        local = s.argmax(axis=1)
        val = s[np.arange(s.shape[0]), local]
        better = val > best  # strict: an equal value in a later block keeps the earlier (lower) index
        best[better] = val[better]
        arg[better] = local[better] + start
    return arg


def select_base_kmeans(
    x: np.ndarray, size: int, *, seed: int = 0, n_init: int | str = "auto", metric: str = "euclidean"
) -> np.ndarray:
    """Base by k-means: fit sklearn KMeans(n_clusters=size, random_state=seed) on X (n, d), take for every centre
    c_k the sample nearest to it, drop duplicates (two centres with the same nearest sample), and top up to
    ``size`` with samples drawn from the rest by ``np.random.default_rng(seed)``. Sorted indices.

    "Nearest" (ties: the lowest index i): metric='euclidean' (default) argmin_i ||x_i - c_k||; metric='cosine'
    argmax_i cos(x_i, c_k) (the paper's code; a zero row has cosine 0). The k-means fit itself is Euclidean
    either way.
    """
    # scikit-learn takes about a second to import: only k-means base selection needs it
    from sklearn.cluster import KMeans
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.metrics import pairwise_distances_argmin

    _check_metric(metric)
    x = validate_matrix(x, "x")
    n = x.shape[0]
    _check_size(n, size)
    with warnings.catch_warnings():
        # fewer distinct clusters than asked (duplicate samples) is handled by the top-up below
        warnings.simplefilter("ignore", ConvergenceWarning)
        km = KMeans(n_clusters=size, random_state=seed, n_init=n_init).fit(x)
    if metric == "cosine":
        nearest = _most_cosine_similar(km.cluster_centers_, x)
    else:
        nearest = pairwise_distances_argmin(km.cluster_centers_, x)
    _, first = np.unique(nearest, return_index=True)
    chosen = nearest[np.sort(first)]
    missing = size - chosen.size
    if missing > 0:
        rest = np.setdiff1d(np.arange(n), chosen)
        chosen = np.concatenate([chosen, np.random.default_rng(seed).choice(rest, size=missing, replace=False)])
    return np.sort(chosen).astype(np.int64)


def select_base(
    image: np.ndarray,
    text: np.ndarray | None,
    size: int,
    method: Literal["random", "kmeans_image", "kmeans_text"] = "kmeans_image",
    *,
    seed: int = 0,
    metric: str = "euclidean",
) -> np.ndarray:
    """Indices (sorted) of the ``size`` base pairs among the n rows of ``image`` (n, d1) / ``text`` (n, d2):
    'random' (``select_base_random``), 'kmeans_image' or 'kmeans_text' (``select_base_kmeans`` on that side,
    with ``metric`` 'euclidean' or 'cosine' choosing the sample taken for each centre; unused by 'random')."""
    _check_metric(metric)
    image = validate_matrix(image, "image")
    if method == "random":
        return select_base_random(image.shape[0], size, seed=seed)
    if method == "kmeans_image":
        return select_base_kmeans(image, size, seed=seed, metric=metric)
    if method == "kmeans_text":
        if text is None:
            raise ValueError("text embeddings are required for method='kmeans_text'")
        text = validate_matrix(text, "text")
        if text.shape[0] != image.shape[0]:
            raise ValueError(f"image and text must have the same number of rows (paired), got "
                             f"{image.shape[0]} and {text.shape[0]}")
        return select_base_kmeans(text, size, seed=seed, metric=metric)
    raise ValueError(f"method must be 'random', 'kmeans_image' or 'kmeans_text', got {method!r}")
