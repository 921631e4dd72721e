"""Preprocessing of embeddings before matching (Maniparambil et al. 2024, Sec. 4.3): stretching, base selection.

- Stretching: divide every dimension by its standard deviation over the rows given (base + query).
- Base selection: which M samples form the seed (base) set. Random, or k-means with M clusters on the image
  (or the text) embeddings, taking the sample nearest each centre (the paper found k-means on images best).
"""

from __future__ import annotations

import warnings
from typing import Literal

import numpy as np

from vlalign.kernels import validate_matrix

__all__ = ["stretch", "stretch_base_query", "select_base_random", "select_base_kmeans", "select_base"]


def stretch(x: np.ndarray) -> np.ndarray:
    """Stretching: X'_ij = X_ij / std_j, std_j = the standard deviation of column j over the rows of X.

    A constant column (std_j = 0) is left as it is (divided by 1). X: (n, d) -> (n, d).
    """
    x = validate_matrix(x, "x", min_rows=1)
    std = x.std(axis=0)
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


def select_base_kmeans(x: np.ndarray, size: int, *, seed: int = 0, n_init: int | str = "auto") -> np.ndarray:
    """Base by k-means: fit sklearn KMeans(n_clusters=size, random_state=seed) on X (n, d), take for every centre
    the sample nearest to it (argmin_i ||x_i - c_k||), drop duplicates (two centres with the same nearest sample),
    and top up to ``size`` with samples drawn from the rest by ``np.random.default_rng(seed)``. Sorted indices.
    """
    from sklearn.cluster import KMeans
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.metrics import pairwise_distances_argmin

    x = validate_matrix(x, "x")
    n = x.shape[0]
    _check_size(n, size)
    with warnings.catch_warnings():
        # fewer distinct clusters than asked (duplicate samples) is handled by the top-up below
        warnings.simplefilter("ignore", ConvergenceWarning)
        km = KMeans(n_clusters=size, random_state=seed, n_init=n_init).fit(x)
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
) -> np.ndarray:
    """Indices (sorted) of the ``size`` base pairs among the n rows of ``image`` (n, d1) / ``text`` (n, d2):
    'random' (``select_base_random``), 'kmeans_image' or 'kmeans_text' (``select_base_kmeans`` on that side)."""
    image = validate_matrix(image, "image")
    if method == "random":
        return select_base_random(image.shape[0], size, seed=seed)
    if method == "kmeans_image":
        return select_base_kmeans(image, size, seed=seed)
    if method == "kmeans_text":
        if text is None:
            raise ValueError("text embeddings are required for method='kmeans_text'")
        text = validate_matrix(text, "text")
        if text.shape[0] != image.shape[0]:
            raise ValueError(f"image and text must have the same number of rows (paired), got "
                             f"{image.shape[0]} and {text.shape[0]}")
        return select_base_kmeans(text, size, seed=seed)
    raise ValueError(f"method must be 'random', 'kmeans_image' or 'kmeans_text', got {method!r}")
