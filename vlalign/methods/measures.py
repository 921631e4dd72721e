"""Alignment measures on paired samples that need no base/query split.

- ``mutual_knn``: the mutual k-nearest-neighbour alignment of Huh et al. (2024), "The Platonic Representation
  Hypothesis" (their ``mutual_knn`` metric): how many of each sample's k nearest neighbours in one space are also
  among its k nearest neighbours in the other space.
- ``mutual_knn_shuffled``: the same measure after a seeded permutation of the pairing, i.e. a chance-level
  control (expected value k / (n - 1) for any data, see ``mutual_knn_shuffled``).
- ``mutual_knn_approx``: the measure from approximate neighbour sets (faiss HNSW, inner product of unit rows),
  with the recall of those sets against the exact ones on a seeded sample of rows; ``mutual_knn`` takes it above
  ``EXACT_MAX_N`` samples (exact by row blocks up to there: O(n^2 (d1 + d2)) time, bounded memory at any n).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vlalign.methods.kernels import validate_matrix, validate_paired

__all__ = ["mutual_knn", "mutual_knn_shuffled", "knn_mask", "EXACT_MAX_N", "ApproxKnn", "mutual_knn_approx"]

# rows of the (rows, n) similarity block handled at once: ~4M float64 entries (32 MiB) per block
_BLOCK_ENTRIES = 1 << 22
# Up to this many samples mutual_knn is exact (row blocks); above it, approximate neighbours (mutual_knn_approx).
EXACT_MAX_N = 100_000
# HNSW graph: links per node, candidate lists when building and when searching (at least 4k when searching).
_HNSW_M, _HNSW_EF_BUILD, _HNSW_EF_SEARCH = 32, 80, 64
# Rows whose approximate neighbour sets are checked against the exact ones (the recall beside the value).
_RECALL_ROWS = 1_000


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


def mutual_knn(x: np.ndarray, y: np.ndarray, k: int = 10, *, exact_max_n: int = EXACT_MAX_N) -> float:
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
    about 4M entries (no n x n matrix for large n, no n x n x k loop). Above ``exact_max_n`` samples the neighbour
    sets are approximate (``mutual_knn_approx``, whose recall against the exact sets it reports).
    """
    x, y = validate_paired(x, y, ("x", "y"))
    n = x.shape[0]
    k = _validate_k(k, n)
    if isinstance(exact_max_n, bool) or not isinstance(exact_max_n, int | np.integer) or exact_max_n < 0:
        raise ValueError(f"exact_max_n must be a non-negative integer, got {exact_max_n!r}")
    if n > exact_max_n:
        return mutual_knn_approx(x, y, k).value
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


@dataclass(frozen=True)
class ApproxKnn:
    """Mutual k-NN from approximate neighbour sets, with their recall against the exact sets on ``checked`` rows."""

    value: float
    recall_x: float  # mean over the checked rows of |approximate N_x(i) ∩ exact N_x(i)| / k
    recall_y: float
    checked: int


def _exact_neighbours(u: np.ndarray, rows: np.ndarray, k: int) -> np.ndarray:
    """(len(rows), k) indices of the exact k nearest neighbours of ``rows`` (``_block_knn_mask``'s sets)."""
    out = np.empty((rows.size, k), dtype=np.int64)
    block = max(1, _BLOCK_ENTRIES // u.shape[0])
    for s in range(0, rows.size, block):
        sim = u[rows[s : s + block]] @ u.T
        sim[np.arange(sim.shape[0]), rows[s : s + block]] = -np.inf
        t = np.partition(sim, sim.shape[1] - k, axis=1)[:, sim.shape[1] - k]
        above, tied = sim > t[:, None], sim == t[:, None]
        mask = above | (tied & (np.cumsum(tied, axis=1) <= (k - above.sum(axis=1))[:, None]))
        out[s : s + block] = np.nonzero(mask)[1].reshape(-1, k)
    return out


def _approx_neighbours(u: np.ndarray, k: int) -> np.ndarray:
    """(n, k) indices of approximate k nearest neighbours by inner product (faiss HNSW on float32), self excluded.
    Deterministic: the graph is built by one thread (faiss draws its levels from a fixed seed)."""
    try:
        import faiss  # an optional dependency of the approximate path only (above EXACT_MAX_N): loaded when used
    except ImportError as exc:
        raise ImportError("approximate neighbours (mutual_knn above exact_max_n samples) need faiss-cpu "
                          "(pip install faiss-cpu, or the project's 'ann' extra); exact_max_n=n keeps the exact "
                          "path") from exc

    u32 = np.ascontiguousarray(u, dtype=np.float32)
    index = faiss.IndexHNSWFlat(u.shape[1], _HNSW_M, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = _HNSW_EF_BUILD
    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)  # a graph built by several threads depends on their timing: one, deterministic
    try:
        index.add(u32)
    finally:
        faiss.omp_set_num_threads(threads)
    index.hnsw.efSearch = max(_HNSW_EF_SEARCH, 4 * k)
    _, found = index.search(u32, k + 1)
    own = found == np.arange(u.shape[0])[:, None]
    own[~own.any(axis=1), k] = True  # self not found: drop the last candidate instead
    return found[~own].reshape(-1, k)


def _shared_per_row(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """|row i of a ∩ row i of b| for (n, k) index arrays (entries distinct within a row)."""
    out = np.empty(a.shape[0], dtype=np.int64)
    step = max(1, _BLOCK_ENTRIES // (a.shape[1] * b.shape[1]))
    for s in range(0, a.shape[0], step):
        out[s : s + step] = (a[s : s + step, :, None] == b[s : s + step, None, :]).sum(axis=(1, 2))
    return out


def mutual_knn_approx(x: np.ndarray, y: np.ndarray, k: int = 10, *, check: int = _RECALL_ROWS,
                      seed: int = 0) -> ApproxKnn:
    """``mutual_knn`` with each space's k nearest neighbours found approximately (faiss HNSW graph, M = 32,
    efConstruction = 80, efSearch = max(64, 4k), on the float32 unit rows; inner product = cosine), and the
    recall of those sets against the exact ones, mean_i |approx N(i) ∩ exact N(i)| / k, on ``check`` rows drawn
    without replacement by ``np.random.default_rng(seed)`` (all rows when n <= check). Cost: the graphs,
    about O(n log n d), plus the check's O(check n d)."""
    x, y = validate_paired(x, y, ("x", "y"))
    n = x.shape[0]
    k = _validate_k(k, n)
    if isinstance(check, bool) or not isinstance(check, int | np.integer) or check < 1:
        raise ValueError(f"check must be a positive integer (rows checked against exact neighbours), got {check!r}")
    ux, uy = _unit_rows(x), _unit_rows(y)
    nx, ny = _approx_neighbours(ux, k), _approx_neighbours(uy, k)
    value = float(_shared_per_row(nx, ny).sum()) / (n * k)
    rows = np.sort(np.random.default_rng(seed).choice(n, size=min(int(check), n), replace=False))
    recall = [float(_shared_per_row(found[rows], _exact_neighbours(u, rows, k)).mean()) / k
              for found, u in ((nx, ux), (ny, uy))]
    return ApproxKnn(value, recall[0], recall[1], int(rows.size))
