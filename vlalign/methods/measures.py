"""Alignment measures on paired samples that need no base/query split.

- ``mutual_knn``: the mutual k-nearest-neighbour alignment of Huh et al. (2024), "The Platonic Representation
  Hypothesis" (their ``mutual_knn`` metric): how many of each sample's k nearest neighbours in one space are also
  among its k nearest neighbours in the other space.
- ``mutual_knn_shuffled``: the same measure after a seeded permutation of the pairing, i.e. a chance-level
  control (expected value k / (n - 1) for any data, see ``mutual_knn_shuffled``).
"""

from __future__ import annotations

import numpy as np

from vlalign.methods.kernels import validate_matrix, validate_paired

__all__ = ["mutual_knn", "mutual_knn_shuffled", "knn_mask"]

# rows of the (rows, n) similarity block handled at once: ~4M float64 entries (32 MiB) per block
_BLOCK_ENTRIES = 1 << 22


def _unit_rows(a: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm; a zero row stays zero (inner product 0 with every row)."""
    norms = np.linalg.norm(a, axis=1, keepdims=True)
    return a / np.where(norms > 0, norms, 1.0)


def _validate_k(k: object, n: int) -> int:
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or not 1 <= k <= n - 1:
        raise ValueError(f"k must be an integer in [1, n - 1] = [1, {n - 1}] (n = number of samples), got {k!r}")
    return int(k)


def _block_knn_mask(u: np.ndarray, start: int, stop: int, k: int) -> np.ndarray:
    """Boolean (stop - start, n) mask: row r marks the k nearest neighbours of sample start + r among all rows of
    the unit-normalised ``u``, itself excluded, by largest inner product, ties broken by the lower index."""
    s = u[start:stop] @ u.T
    rows = np.arange(stop - start)
    s[rows, start + rows] = -np.inf  # exclude the sample itself (every real similarity is >= -1 > -inf)
    # t_r = the k-th largest similarity of row r; all entries > t_r are neighbours, and among the entries == t_r
    # those with the lowest indices fill the remaining places (the tie-break)
    n = s.shape[1]
    t = np.partition(s, n - k, axis=1)[:, n - k]
    above = s > t[:, None]
    tied = s == t[:, None]
    room = k - above.sum(axis=1)  # >= 1: the k-th largest value itself is tied with t
    return above | (tied & (np.cumsum(tied, axis=1) <= room[:, None]))


def knn_mask(x: np.ndarray, k: int = 10) -> np.ndarray:
    """Dense boolean (n, n) neighbour mask: row i marks N(i), the k nearest neighbours of sample i (rows of
    x (n, d) L2-normalised, similarity = inner product = cosine, i itself excluded, ties broken by lower index).
    Each row has exactly k True entries. Meant for small n (inspection, tests); ``mutual_knn`` never forms it.
    """
    x = validate_matrix(x, "x", min_rows=2)
    n = x.shape[0]
    k = _validate_k(k, n)
    return _block_knn_mask(_unit_rows(x), 0, n, k)


def mutual_knn(x: np.ndarray, y: np.ndarray, k: int = 10) -> float:
    """Mutual k-NN alignment (Huh et al. 2024):  (1/n) sum_i |N_x(i) ∩ N_y(i)| / k.

    x (n, d1) and y (n, d2): row i of x and row i of y are the same sample in the two spaces. Every row is
    L2-normalised (a zero row stays zero), the similarity of samples i and j is the inner product of their
    normalised rows (cosine), and N_x(i) is the set of the k samples j != i with the largest similarity to i in
    x (likewise N_y(i) in y). Ties at the k-th place are broken by the lower index j (the reference code's
    torch argsort leaves them unspecified). Range [0, 1]: 1 when both spaces give every sample the same k
    neighbours; for unrelated (independent, or shuffled) pairings the expected value is k / (n - 1).

    Invariant to positive rescaling of rows and to orthogonal transformations of either space (only cosines
    enter). ``k`` must be an integer in [1, n - 1]; inputs must be finite and have the same number of rows
    (n >= 2). Cost: O(n^2 (d1 + d2)) for the similarities, O(n^2) for the neighbour sets, done in row blocks of
    about 4M entries (no n x n matrix for large n, no n x n x k loop).
    """
    x, y = validate_paired(x, y, ("x", "y"))
    n = x.shape[0]
    k = _validate_k(k, n)
    ux, uy = _unit_rows(x), _unit_rows(y)
    block = max(1, _BLOCK_ENTRIES // n)
    shared = 0
    for start in range(0, n, block):
        stop = min(n, start + block)
        both = _block_knn_mask(ux, start, stop, k)
        both &= _block_knn_mask(uy, start, stop, k)
        shared += int(both.sum())
    return shared / (n * k)


def mutual_knn_shuffled(x: np.ndarray, y: np.ndarray, k: int = 10, seed: int = 0) -> float:
    """Chance-level control: ``mutual_knn(x, y[perm], k)`` with perm = np.random.default_rng(seed).permutation(n).

    Breaking the pairing this way gives an expected value of exactly k / (n - 1) over permutations, for any x
    and y: for each i, N_y(i) after the permutation is a uniformly random k-subset of the other n - 1 samples,
    so E|N_x(i) ∩ N_y(i)| = k * k / (n - 1). Same validation as ``mutual_knn``.
    """
    x, y = validate_paired(x, y, ("x", "y"))
    _validate_k(k, x.shape[0])
    perm = np.random.default_rng(seed).permutation(x.shape[0])
    return mutual_knn(x, y[perm], k)
