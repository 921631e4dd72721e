"""Neighbour-based alignment measures of Huh et al. (2024) beyond mutual kNN: CKNNA and cycle kNN.

Both follow minyoungg/platonic-rep ``metrics.py`` (``AlignmentMetrics.cknna``, ``AlignmentMetrics.cycle_knn``,
``compute_nearest_neighbors``, ``hsic_unbiased``, ``hsic_biased``). Their pipeline (``measure_alignment.py``,
``compute_score(..., normalize=True)``) L2-normalises every row before any metric; here that is the named setting
``normalize`` (default True). Their outlier clamp (``remove_outliers``, a preprocessing step) is not part of a
measure and is not applied here.

Neighbour sets are computed once, as an (n, k) array of indices (``knn_indices``), in row blocks (no n x n
matrix for large n), ties at the k-th place broken by the lower index (torch's top-k/argsort leave them
unspecified). Everything after the sets costs O(n k^2), so that a permutation of one side's rows is a relabelling
of its sets (``permute_neighbours``) and never a new neighbour search (see ``vlalign.methods.calibration``).
"""

from __future__ import annotations

import numpy as np

from vlalign.methods.kernels import validate_matrix, validate_paired

__all__ = [
    "knn_indices",
    "permute_neighbours",
    "shared_neighbours",
    "cycle_knn",
    "cycle_knn_from_sets",
    "cknna",
    "CknnaSide",
    "cknna_side",
    "cknna_from_sides",
]

_BLOCK_ENTRIES = 1 << 22  # entries of one (rows, n) similarity block, or of one (rows, k, k) comparison block


def _unit_rows(a: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (torch.nn.functional.normalize: a zero row stays zero)."""
    norms = np.linalg.norm(a, axis=1, keepdims=True)
    return a / np.where(norms > 0, norms, 1.0)


def _validate_k(k: object, n: int, low: int = 1, name: str = "k") -> int:
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or not low <= k <= n - 1:
        raise ValueError(f"{name} must be an integer in [{low}, n - 1] = [{low}, {n - 1}] (n = number of samples), "
                         f"got {k!r}")
    return int(k)


def _block_indices(u: np.ndarray, start: int, stop: int, k: int, exclude_self: bool) -> np.ndarray:
    """(stop - start, k) indices of the k largest inner products of rows start..stop of u with all rows, in
    increasing index order; ties at the k-th value go to the lower index; the row itself excluded if asked."""
    s = u[start:stop] @ u.T
    rows = np.arange(stop - start)
    if exclude_self:
        s[rows, start + rows] = -np.inf
    n = s.shape[1]
    t = np.partition(s, n - k, axis=1)[:, n - k]
    above = s > t[:, None]
    tied = s == t[:, None]
    room = k - above.sum(axis=1)
    mask = above | (tied & (np.cumsum(tied, axis=1) <= room[:, None]))
    return np.nonzero(mask)[1].reshape(stop - start, k)


def knn_indices(x: np.ndarray, k: int = 10, *, normalize: bool = True, exclude_self: bool = True) -> np.ndarray:
    """N(i) for every sample: an (n, k) int64 array whose row i holds the k samples j with the largest <x_i, x_j>.

    ``normalize``: rows L2-normalised first (similarity = cosine), as platonic-rep's pipeline does.
    ``exclude_self``: j != i (platonic-rep's ``compute_nearest_neighbors`` sets the diagonal to -1e8, CKNNA's
    unbiased variant to -inf); False lets i be its own neighbour (CKNNA's biased variant). Ties at the k-th place:
    lower index first. Rows list their neighbours in increasing index order. With normalize and exclude_self these
    are exactly the sets of ``vlalign.methods.measures.mutual_knn``.
    """
    x = validate_matrix(x, "x", min_rows=2)
    n = x.shape[0]
    k = _validate_k(k, n + (0 if exclude_self else 1))
    u = _unit_rows(x) if normalize else x
    block = max(1, _BLOCK_ENTRIES // n)
    out = np.empty((n, k), dtype=np.int64)
    for start in range(0, n, block):
        stop = min(n, start + block)
        out[start:stop] = _block_indices(u, start, stop, k, exclude_self)
    return out


def permute_neighbours(nbrs: np.ndarray, perm: np.ndarray) -> np.ndarray:
    """The neighbour sets of y[perm] from those of y, without a new search: N_{y[perm]}(i) = perm^-1(N_y(perm_i)).

    (Row i of y[perm] is y_{perm_i}; j is its neighbour iff perm_j is a neighbour of perm_i.) Exact whenever no
    tie sits at the k-th place (with ties, a new search could break them differently). Rows are not re-sorted.
    """
    inv = np.empty_like(perm)
    inv[perm] = np.arange(perm.size)
    return inv[nbrs[perm]]


def _row_blocks(n: int, k: int):
    step = max(1, _BLOCK_ENTRIES // (k * k))
    for start in range(0, n, step):
        yield slice(start, min(n, start + step))


def shared_neighbours(nx: np.ndarray, ny: np.ndarray) -> int:
    """sum_i |N_x(i) ∩ N_y(i)| from two (n, k) neighbour arrays (entries of a row distinct), O(n k^2)."""
    return int(sum(np.count_nonzero(nx[b, :, None] == ny[b, None, :]) for b in _row_blocks(*nx.shape)))


def cycle_knn_from_sets(nx: np.ndarray, ny: np.ndarray) -> float:
    """(1/n) #{i : there is j in N_y(i) with i in N_x(j)}: platonic-rep's ``compute_knn_accuracy(knn_A[knn_B])``
    with knn_A = nx, knn_B = ny."""
    n, k = nx.shape
    ids = np.arange(n)
    hits = 0
    for b in _row_blocks(n, k):
        hits += int(np.count_nonzero((nx[ny[b]] == ids[b, None, None]).any(axis=(1, 2))))
    return hits / n


def cycle_knn(x: np.ndarray, y: np.ndarray, k: int = 10, *, normalize: bool = True) -> float:
    """Cycle kNN of Huh et al. (2024), platonic-rep ``AlignmentMetrics.cycle_knn(feats_A=x, feats_B=y, topk=k)``:

        cycle_knn(x, y) = (1/n) #{ i : exists j in N_y(i) with i in N_x(j) },

    i.e. go from sample i to one of its k neighbours j in y, then back through j's k neighbours in x: the fraction
    of samples that come back. N as in ``knn_indices`` (largest inner product, self excluded, rows L2-normalised
    when ``normalize``; ties: lower index). Range [0, 1], larger = more similar; not symmetric in x and y.
    Invariant (normalize=True) to orthogonal maps of either space and positive rescaling of rows.
    x (n, d1), y (n, d2) paired; k an integer in [1, n - 1].
    """
    x, y = validate_paired(x, y, ("x", "y"))
    k = _validate_k(k, x.shape[0])
    return cycle_knn_from_sets(knn_indices(x, k, normalize=normalize), knn_indices(y, k, normalize=normalize))


# ---------------------------------------------------------------------------------------------------------------
# CKNNA
# ---------------------------------------------------------------------------------------------------------------


class CknnaSide:
    """One representation's share of CKNNA: its neighbour sets, the kernel values on them and its self-term."""

    __slots__ = ("nbrs", "vals", "self_sim")

    def __init__(self, nbrs: np.ndarray, vals: np.ndarray, self_sim: float) -> None:
        self.nbrs = nbrs  # (n, k): N(i)
        self.vals = vals  # (n, k): K_{i, N(i)}, K = u u^T
        self.self_sim = self_sim  # the masked HSIC of K with itself

    def permuted(self, perm: np.ndarray) -> CknnaSide:
        """The side of y[perm]: sets relabelled (``permute_neighbours``), K values carried along (K' = P K P^T)."""
        return CknnaSide(permute_neighbours(self.nbrs, perm), self.vals[perm], self.self_sim)


def _masked_hsic(rows: np.ndarray, cols: np.ndarray, a: np.ndarray, b: np.ndarray, n: int, unbiased: bool) -> float:
    """platonic-rep's ``hsic_unbiased(A, B)`` or ``hsic_biased(A, B)`` for sparse A, B (entries a, b at positions
    (rows, cols), zero elsewhere, positions distinct), in O(m log m) for m positions. A and B need not be
    symmetric, so the transposes of their formulas are kept: sum(A * B^T), 1^T A B 1, trace(A H B H)."""
    keys = rows * n + cols
    order = np.argsort(keys)
    skeys = keys[order]
    tkeys = cols * n + rows  # where B_ji sits, if (j, i) is a position
    at = np.minimum(np.searchsorted(skeys, tkeys), max(skeys.size - 1, 0))
    found = skeys[at] == tkeys if skeys.size else np.zeros(0, dtype=bool)
    ab_t = float(a[found] @ b[order[at[found]]])  # sum_ij A_ij B_ji
    sa, sb = float(a.sum()), float(b.sum())
    rs_a, cs_a = np.bincount(rows, a, n), np.bincount(cols, a, n)
    rs_b, cs_b = np.bincount(rows, b, n), np.bincount(cols, b, n)
    if unbiased:  # diagonals are zero (self excluded), so K~ = K
        value = ab_t + sa * sb / ((n - 1) * (n - 2)) - 2.0 * float(cs_a @ rs_b) / (n - 2)
        return value / (n * (n - 3))
    # trace(A H B H) = tr(AB) - (rowsum(A).colsum(B) + colsum(A).rowsum(B))/n + sum(A) sum(B)/n^2
    return ab_t - (float(rs_a @ cs_b) + float(cs_a @ rs_b)) / n + sa * sb / n**2


def _cknna_pair(x: CknnaSide, y: CknnaSide, unbiased: bool) -> float:
    """platonic-rep's inner ``similarity(K, L, topk)``: HSIC(M * K, M * L) with M = mask_K * mask_L."""
    n, k = x.nbrs.shape
    rows, ai, bi = [], [], []
    for blk in _row_blocks(n, k):
        r, a, b = np.nonzero(x.nbrs[blk, :, None] == y.nbrs[blk, None, :])
        rows.append(r + blk.start)
        ai.append(a)
        bi.append(b)
    r, a, b = np.concatenate(rows), np.concatenate(ai), np.concatenate(bi)
    return _masked_hsic(r, x.nbrs[r, a], x.vals[r, a], y.vals[r, b], n, unbiased)


def _validate_cknna(n: int, k: object, unbiased: bool, eps: float) -> int:
    if n < 4 and unbiased:
        raise ValueError(f"x and y must have at least 4 rows for the unbiased CKNNA, got {n}")
    k = _validate_k(n - 1 if k is None else k, n, low=2)
    if not (np.isfinite(eps) and eps >= 0):
        raise ValueError(f"eps must be a finite number >= 0, got {eps!r}")
    return k


def cknna_side(x: np.ndarray, k: int, *, normalize: bool = True, unbiased: bool = True) -> CknnaSide:
    """Neighbour sets, kernel values on them and self-term of one representation (for ``cknna_from_sides``)."""
    x = validate_matrix(x, "x", min_rows=2)
    u = _unit_rows(x) if normalize else x
    nbrs = knn_indices(u, k, normalize=False, exclude_self=unbiased)
    vals = np.einsum("id,ikd->ik", u, u[nbrs])
    side = CknnaSide(nbrs, vals, 0.0)
    side.self_sim = _cknna_pair(side, side, unbiased)
    return side


def cknna_from_sides(x: CknnaSide, y: CknnaSide, *, unbiased: bool = True, eps: float = 1e-6) -> float:
    """CKNNA from two prepared sides: sim(K, L) / (sqrt(sim(K, K) sim(L, L)) + eps)."""
    return _cknna_pair(x, y, unbiased) / (np.sqrt(x.self_sim * y.self_sim) + eps)


def cknna(
    x: np.ndarray,
    y: np.ndarray,
    k: int | None = 10,
    *,
    normalize: bool = True,
    unbiased: bool = True,
    eps: float = 1e-6,
) -> float:
    """CKNNA, "similarity-only" CKA restricted to mutual neighbours (Huh et al. 2024, Appendix; platonic-rep
    ``AlignmentMetrics.cknna(feats_A=x, feats_B=y, topk=k, distance_agnostic=False, unbiased=unbiased)``):

        K = u_x u_x^T, L = u_y u_y^T (u: the rows, L2-normalised when ``normalize``; no centring of features)
        mask_K[i, j] = 1 iff j is among the k largest entries of row i of K (unbiased: diagonal set to -inf
                       first, so j != i; biased: i may pick itself); mask_L likewise; M = mask_K * mask_L
        sim(K, L) = HSIC(M * K, M * L)     HSIC_1 of Song et al. (``hsic_unbiased``: diagonals zeroed,
                   sum(K~ * L~^T) + sum K~ sum L~ / ((n-1)(n-2)) - 2 sum(K~ L~) / (n-2), over n(n-3)) when
                   ``unbiased``, else trace(K H L H) (``hsic_biased``, no 1/(n-1)^2: it cancels)
        CKNNA = sim(K, L) / (sqrt(sim(K, K) sim(L, L)) + eps)     (sim(K, K) uses M = mask_K)

    M * K is not symmetric (mask rows are per-sample neighbour sets); the formulas are used as written, with
    their transposes. ``eps`` = 1e-6 as in platonic-rep (so CKNNA(x, x) is slightly below 1; eps = 0 gives the
    plain ratio). ``k``: integer in [2, n - 1], None means n - 1 (then unbiased CKNNA equals unbiased linear
    CKA up to eps). Larger = more similar; at most about 1; invariant (normalize=True) to orthogonal maps of
    either space and positive rescaling of rows. Ties at the k-th place: lower index (torch leaves them open).
    Cost O(n^2 d) for the neighbour search (row blocks), O(n k^2) after it; no n x n matrix for large n.
    """
    x, y = validate_paired(x, y, ("x", "y"))
    k = _validate_cknna(x.shape[0], k, unbiased, eps)
    sx = cknna_side(x, k, normalize=normalize, unbiased=unbiased)
    sy = cknna_side(y, k, normalize=normalize, unbiased=unbiased)
    return cknna_from_sides(sx, sy, unbiased=unbiased, eps=eps)
