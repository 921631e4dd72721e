"""Kernel CKA at any n in bounded memory: the Grams are visited tile by tile, never held whole.

The Grams K = k(X), L = k(Y) of n samples are cut into square tiles (rows I, columns J) of ``block_rows`` rows;
only the tiles with J >= I are computed (the Grams are symmetric) and an off-diagonal tile stands for itself and
its transpose. A tile of the RBF Gram is built like ``kernels.squared_distances`` builds the whole matrix:

    G_IJ = X_I X_J^T,  D_ij = (-2 G_ij + ||x_i||^2) + ||x_j||^2 clipped at 0 (D_ii = 0),  K_ij = exp(-D_ij / (2 s^2))

with G symmetric (a diagonal tile keeps its upper triangle and mirrors it, as numpy's syrk does for X X^T).

- The median bandwidth (``median_squared_distance_blockwise``): sigma^2 = scale^2 * median{ D_ij : i != j,
  D_ij > 0 }, both triangles, the mean of the lower and upper middle values when their number is even (exactly
  ``kernels.median_squared_distance``). The order statistics are selected exactly by radix passes over the tiles
  on the bits of the values (a positive float64 orders like its bit pattern): a histogram of the bits in an
  interval locates each wanted rank's bucket, and a last pass collects that bucket's few values and partitions
  them. An off-diagonal tile's D_ij (i < j) is counted twice, for D_ji. The result is the exact order statistic
  of the tiles' distances, bit for bit; it equals the dense median whenever the tiles' products round like the
  one whole-matrix product (always for integer data; otherwise the two BLAS calls may differ in the last bit of
  some D_ij, and the medians then differ at that level, ~1e-16 relative).
- CKA (``cka_blockwise``): a first pass accumulates the row sums r of K and L (of K~ = K off its diagonal for the
  debiased estimator); a second pass centres each tile with them and accumulates the three sums of elementwise
  products <Kc, Lc>, <Kc, Kc>, <Lc, Lc>, CKA = <Kc, Lc> / sqrt(<Kc, Kc> <Lc, Lc>). Biased: Kc = H K H,
  (HKH)_ij = K_ij - r_i/n - r_j/n + s/n^2 (s = 1^T K 1). Debiased: Kc = U(K), the U-centring of
  ``kernels.u_center_gram``: U_ij = K~_ij - r_i/(n-2) - r_j/(n-2) + s/((n-1)(n-2)) for i != j, U_ii = 0, whose
  elementwise product is Song et al.'s unbiased HSIC written with the zero-diagonal Gram's row sums r, total s
  and elementwise products:  <U(K), U(L)> = tr(K~L~) - 2/(n-2) r_K.r_L + s_K s_L/((n-1)(n-2)) = n(n-3) HSIC_1
  (expand the four terms: the row sums of U vanish, and 1^T K~ L~ 1 = r_K.r_L).
- The bootstrap's moments (``weighted_moments_of_tiles``): K W, L W, (K o L) W, (K o K) W, (L o L) W for count
  vectors W (n, B), accumulated tile by tile (a tile I, J adds K_IJ W_J to rows I and K_IJ^T W_I to rows J).

Peak extra memory: a few tiles (block_rows^2 floats each) plus O(n) vectors (O(n B) for the bootstrap), never
n x n. Every pass computes the tiles' products anew: CKA with the median bandwidth costs about four passes of
n^2 (d1 + d2) multiply-adds, half of a dense product each.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator

import numpy as np

from vlalign.methods.kernels import Kernel, validate_kernel, validate_matrix, validate_paired

__all__ = [
    "DENSE_MAX_N",
    "BLOCK_ROWS",
    "validate_block_rows",
    "median_squared_distance_blockwise",
    "rbf_sigma2_blockwise",
    "TiledGram",
    "tiled_grams",
    "cka_of_tiles",
    "cka_blockwise",
    "weighted_moments_of_tiles",
]

# Up to this many samples CKA builds the dense (n, n) Grams (the path whose numbers are stored, ~200 MB per
# float64 Gram at 5,000); above it the Grams are visited by tiles (this module).
DENSE_MAX_N = 5_000
# Default tile side: a float64 tile of 2048 x 2048 is 32 MiB; a pass holds a handful of them.
BLOCK_ROWS = 2_048
# Radix selection: buckets per histogram pass, and the most values a final pass collects (32 MiB of float64).
_SELECT_BUCKETS = 1 << 18
_SELECT_COLLECT = 1 << 22
# Rows whose pairwise distances give the selection's first interval.
_SAMPLE_ROWS = 512
# Bit patterns of positive float64 values: 1 (the smallest subnormal) up to +inf's, inclusive.
_POS_FIRST = 1
_POS_END = 0x7FF0000000000000 + 1


def validate_block_rows(block_rows: object) -> int:
    """Return ``block_rows`` as an int >= 1, or raise ValueError."""
    if isinstance(block_rows, bool) or not isinstance(block_rows, int | np.integer) or block_rows < 1:
        raise ValueError(f"block_rows must be a positive integer (rows per tile) or None, got {block_rows!r}")
    return int(block_rows)


# ---------------------------------------------------------------------------------------------------------------
# Tiles
# ---------------------------------------------------------------------------------------------------------------


def _tiles(n: int, block: int) -> Iterator[tuple[slice, slice]]:
    """(rows I, columns J) of the tiles on and above the diagonal, row-major."""
    for s in range(0, n, block):
        for t in range(s, n, block):
            yield slice(s, min(n, s + block)), slice(t, min(n, t + block))


def _row_sq_norms(x: np.ndarray, block: int) -> np.ndarray:
    """||x_i||^2 for every row, by blocks of rows."""
    out = np.empty(x.shape[0])
    for s in range(0, x.shape[0], block):
        xb = x[s : s + block]
        out[s : s + block] = np.einsum("ij,ij->i", xb, xb)
    return out


def _gram_tile(x: np.ndarray, rows: slice, cols: slice) -> np.ndarray:
    """G_IJ = X_I X_J^T; on the diagonal (I == J) the upper triangle mirrored, so that G is exactly symmetric."""
    g = x[rows] @ x[cols].T
    if rows == cols:
        np.copyto(g, g.T, where=_strictly_lower(g.shape[0]))
    return g


@functools.lru_cache(maxsize=4)
def _strictly_lower(m: int) -> np.ndarray:
    """Boolean (m, m) mask of the entries below the diagonal (cached: one per tile size)."""
    return np.tri(m, k=-1, dtype=bool)


def _distances_from_gram(g: np.ndarray, sq_rows: np.ndarray, sq_cols: np.ndarray, diagonal: bool) -> np.ndarray:
    """D = (-2 G + sq_i) + sq_j clipped at 0, in place on ``g`` (the order of ``kernels.squared_distances``)."""
    g *= -2.0
    g += sq_rows[:, None]
    g += sq_cols[None, :]
    np.maximum(g, 0.0, out=g)
    if diagonal:
        np.fill_diagonal(g, 0.0)
    return g


def _kernel_tile(x: np.ndarray, sq: np.ndarray | None, kernel: str, sigma2: float | None,
                 rows: slice, cols: slice) -> np.ndarray:
    """Tile (I, J) of the Gram: linear G_IJ, or rbf exp(-D_IJ / (2 sigma^2)) (as ``rbf_from_squared_distances``)."""
    g = _gram_tile(x, rows, cols)
    if kernel == "linear":
        return g
    d = _distances_from_gram(g, sq[rows], sq[cols], rows == cols)
    d *= -0.5 / sigma2
    return np.exp(d, out=d)


def _distance_chunks(x: np.ndarray, sq: np.ndarray, block: int) -> Iterator[tuple[np.ndarray, int]]:
    """Every off-diagonal squared distance D_ij (i != j, both orders) as (flat chunk, multiplicity): a diagonal
    tile once, with its diagonal entries as -1 (left out like the zeros); an off-diagonal tile (i < j) twice,
    standing for D_ji too. The dense matrix adds sq_j before sq_i in D_ji, which can move its last bit: exact
    data (integers) has D_ji == D_ij either way, and on other data the tiles' products already round otherwise
    than the one dense product."""
    for rows, cols in _tiles(x.shape[0], block):
        d = _distances_from_gram(_gram_tile(x, rows, cols), sq[rows], sq[cols], False)
        if rows == cols:
            np.fill_diagonal(d, -1.0)
        yield d.ravel(), 1 if rows == cols else 2


# ---------------------------------------------------------------------------------------------------------------
# Exact selection of order statistics over chunks
# ---------------------------------------------------------------------------------------------------------------


def _positive_bits(chunk: np.ndarray) -> np.ndarray:
    """The int64 bit patterns of the positive entries (a positive float64 sorts like its bits)."""
    bits = np.ascontiguousarray(chunk, dtype=np.float64).reshape(-1).view(np.int64)
    return bits[bits >= _POS_FIRST]


class _Rank:
    """One wanted order statistic: global rank ``rank`` among the positive values; it lies in the bit interval
    [lo, hi), whose first value has global rank ``start`` and which holds ``count`` values (None: not known)."""

    def __init__(self, rank: int, lo: int, hi: int, start: int, count: int | None):
        self.rank, self.lo, self.hi, self.start, self.count = rank, lo, hi, start, count
        self.value: float | None = None

    def shift(self) -> int:
        return max(0, int(self.hi - self.lo - 1).bit_length() - _SELECT_BUCKETS.bit_length() + 1)

    def collecting(self) -> bool:
        return self.count is not None and self.count <= _SELECT_COLLECT


def _histogram(chunks: Iterator[tuple[np.ndarray, int]], lo: int, hi: int, shift: int) -> tuple[np.ndarray, int, int]:
    """Counts of the positive values' bits in [lo, hi) per bucket (bits - lo) >> shift, and the counts of the
    positive values below lo and at or above hi (in place on one int64 copy of each chunk: no compressed copies)."""
    nb = ((hi - lo - 1) >> shift) + 1
    counts = np.zeros(nb + 2, dtype=np.int64)  # [below or not positive, the nb buckets, at or above hi]
    not_positive = 0
    for chunk, times in chunks:
        key = np.maximum(np.ascontiguousarray(chunk, dtype=np.float64).reshape(-1).view(np.int64), 0)
        not_positive += times * (key.size - int(np.count_nonzero(key)))
        past = key >= hi  # key nb, past the last bucket (in which hi may end)
        key -= lo
        key >>= shift  # arithmetic: every value below lo gets a negative key
        np.clip(key, -1, nb, out=key)
        np.putmask(key, past, nb)
        key += 1
        counts += times * np.bincount(key, minlength=nb + 2)
    return counts[1:-1], int(counts[0]) - not_positive, int(counts[-1])


def _locate(r: _Rank, counts: np.ndarray, below: int, above: int, shift: int) -> None:
    """Narrow ``r`` to the bucket (or the region below / above the interval) holding its rank."""
    inside = int(counts.sum())
    if r.rank < below:
        r.lo, r.hi, r.start, r.count = _POS_FIRST, r.lo, 0, below
    elif r.rank >= below + inside:
        r.lo, r.hi, r.start, r.count = r.hi, _POS_END, below + inside, above
    else:
        cum = np.cumsum(counts)
        k = int(np.searchsorted(cum, r.rank - below, side="right"))
        start = below + (int(cum[k - 1]) if k else 0)
        lo = r.lo + (k << shift)
        r.lo, r.hi, r.start, r.count = lo, min(r.hi, lo + (1 << shift)), start, int(counts[k])
        if shift == 0:  # a bucket of one bit pattern: the value itself
            r.value = float(np.array([lo], dtype=np.int64).view(np.float64)[0])


def _collect(chunks: Iterator[tuple[np.ndarray, int]], ranks: list[_Rank]) -> None:
    """Gather the values of each rank's interval and partition them: the exact order statistic."""
    found: list[list[np.ndarray]] = [[] for _ in ranks]
    for chunk, times in chunks:
        bits = _positive_bits(chunk)
        for f, r in zip(found, ranks):
            f.extend([bits[(bits >= r.lo) & (bits < r.hi)]] * times)
    for f, r in zip(found, ranks):
        vals = np.concatenate(f).view(np.float64)
        r.value = float(np.partition(vals, r.rank - r.start)[r.rank - r.start])


def _first_interval(chunks: Iterator[tuple[np.ndarray, int]]) -> tuple[int, int]:
    """A first bit interval: the range of the first chunk with positive values, widened by a factor 4 each way."""
    for chunk, _ in chunks:
        bits = _positive_bits(chunk)
        if bits.size:
            return max(_POS_FIRST, int(bits.min()) - (2 << 52)), min(_POS_END, int(bits.max()) + 1 + (2 << 52))
    return _POS_FIRST, _POS_END


def select_positive(chunks: Callable[[], Iterator[tuple[np.ndarray, int]]], which: Callable[[int], list[int]],
                    sample: Callable[[], Iterator[tuple[np.ndarray, int]]] | None = None) -> list[float]:
    """Exact order statistics of the positive values among ``chunks()``, which yields (values, multiplicity) pairs
    (called once per pass; each call must yield the same). ``which(m)`` gives the wanted ranks (0-based,
    ascending order) for m positive values, multiplicities counted.
    ``sample()``: some of the values, whose range sets the first histogram's interval (default: the first chunk);
    any choice gives the same result, a good one saves passes.
    Memory: one chunk, a histogram of 2^18 counts, and at most 2^22 collected values per rank."""
    lo, hi = _first_interval((sample or chunks)())
    probe = _Rank(0, lo, hi, 0, None)
    counts, below, above = _histogram(chunks(), lo, hi, probe.shift())
    m = below + int(counts.sum()) + above
    ranks = [_Rank(k, lo, hi, 0, None) for k in which(m)]
    for r in ranks:
        _locate(r, counts, below, above, probe.shift())
    while any(r.value is None for r in ranks):
        todo = [r for r in ranks if r.value is None]
        collect = [r for r in todo if r.collecting()]
        if collect:
            _collect(chunks(), collect)
            continue
        r = todo[0]
        shift = r.shift()
        counts, below, above = _histogram(chunks(), r.lo, r.hi, shift)
        for q in [q for q in todo if (q.lo, q.hi) == (r.lo, r.hi)]:  # below: the global rank of the interval's start
            _locate(q, counts, below, above, shift)
    return [r.value for r in ranks]


def _median_ranks(m: int) -> list[int]:
    if m == 0:
        raise ValueError("all pairwise distances are zero (identical samples): the median bandwidth is undefined")
    return [(m - 1) // 2, m // 2]


def median_squared_distance_blockwise(x: np.ndarray, *, block_rows: int = BLOCK_ROWS) -> float:
    """median{ D_ij : i != j, D_ij > 0 } of X's squared distances (``kernels.median_squared_distance`` of
    ``kernels.squared_distances(x)``: both triangles, zeros left out, mean of the two middle values when their
    number is even), selected exactly over tiles of ``block_rows`` rows; no n x n matrix. X: (n, d), n >= 2."""
    x = validate_matrix(x, "x", min_rows=2)
    block = validate_block_rows(block_rows)
    return _median_blockwise(x, _row_sq_norms(x, block), block)


def _median_blockwise(x: np.ndarray, sq: np.ndarray, block: int) -> float:
    sample = min(x.shape[0], _SAMPLE_ROWS)  # the first interval from the distances among the first rows
    a, b = select_positive(lambda: _distance_chunks(x, sq, block), _median_ranks,
                           lambda: _distance_chunks(x[:sample], sq[:sample], sample))
    return float((np.float64(a) + np.float64(b)) / 2)


def rbf_sigma2_blockwise(x: np.ndarray, *, sigma: float | None = None, scale: float = 1.0,
                         block_rows: int = BLOCK_ROWS) -> float:
    """``kernels.rbf_sigma2`` of X's squared distances without forming them: sigma^2 if ``sigma`` is given, else
    scale^2 * ``median_squared_distance_blockwise(x)``."""
    validate_kernel("rbf", sigma, scale)
    x = validate_matrix(x, "x", min_rows=2)
    block = validate_block_rows(block_rows)
    return _sigma2(x, _row_sq_norms(x, block), sigma, scale, block)


def _sigma2(x: np.ndarray, sq: np.ndarray, sigma: float | None, scale: float, block: int) -> float:
    if sigma is not None:
        return float(sigma) ** 2
    return float(scale) ** 2 * _median_blockwise(x, sq, block)


# ---------------------------------------------------------------------------------------------------------------
# CKA by tiles
# ---------------------------------------------------------------------------------------------------------------


class TiledGram:
    """The Gram of X for ``kernel`` (and bandwidth), served tile by tile."""

    def __init__(self, x: np.ndarray, kernel: str, block: int, *, sigma: float | None = None, scale: float = 1.0,
                 sigma2: float | None = None):
        """RBF: the bandwidth ``sigma2`` if given, else ``sigma``'s square or the median rule (``_sigma2``)."""
        self.x, self.kernel, self.block = x, kernel, block
        self.sq = _row_sq_norms(x, block) if kernel == "rbf" else None
        if kernel == "rbf" and sigma2 is None:
            sigma2 = _sigma2(x, self.sq, sigma, scale, block)
        self.sigma2 = sigma2

    def tile(self, rows: slice, cols: slice, zero_diagonal: bool = False) -> np.ndarray:
        k = _kernel_tile(self.x, self.sq, self.kernel, self.sigma2, rows, cols)
        if zero_diagonal and rows == cols:
            np.fill_diagonal(k, 0.0)
        return k

    def diagonal(self) -> np.ndarray:
        """K_ii: 1 for rbf, ||x_i||^2 (as the diagonal tiles compute it) for linear."""
        if self.kernel == "rbf":
            return np.ones(self.x.shape[0])
        return np.concatenate([np.diag(self.tile(r, r)) for r in (slice(s, s + self.block)
                                                                  for s in range(0, self.x.shape[0], self.block))])


def _row_sums(grams: tuple[TiledGram, ...], n: int, block: int, debiased: bool) -> list[np.ndarray]:
    """First pass: the row sums of each Gram (of its zero-diagonal version when ``debiased``)."""
    sums = [np.zeros(n) for _ in grams]
    for rows, cols in _tiles(n, block):
        for g, r in zip(grams, sums):
            k = g.tile(rows, cols, zero_diagonal=debiased)
            r[rows] += k.sum(axis=1)
            if rows != cols:
                r[cols] += k.sum(axis=0)
    return sums


def _centring(r: np.ndarray, n: int, debiased: bool) -> tuple[np.ndarray, float]:
    """(a, c) with Kc_ij = K_ij - a_i - a_j + c: biased a = r/n, c = s/n^2; debiased (U-centring, i != j)
    a = r/(n-2), c = s/((n-1)(n-2)), where r are the row sums and s = sum(r)."""
    s = float(r.sum())
    if debiased:
        return r / (n - 2), s / ((n - 1) * (n - 2))
    return r / n, s / n**2


def _centred_tile(k: np.ndarray, a: np.ndarray, c: float, rows: slice, cols: slice, debiased: bool) -> np.ndarray:
    k -= a[rows, None]
    k -= a[None, cols]
    k += c
    if debiased and rows == cols:
        np.fill_diagonal(k, 0.0)
    return k


def tiled_grams(x: np.ndarray, y: np.ndarray, kernel: str, *, sigma: float | None = None, scale: float = 1.0,
                block_rows: int = BLOCK_ROWS) -> tuple[TiledGram, TiledGram]:
    """The Grams of X and Y served by tiles (RBF: each with its own bandwidth, ``rbf_sigma2_blockwise``).
    Inputs already validated (``validate_paired``, ``validate_kernel``, ``validate_block_rows``)."""
    return TiledGram(x, kernel, block_rows, sigma=sigma, scale=scale), TiledGram(y, kernel, block_rows, sigma=sigma,
                                                                                   scale=scale)


def cka_of_tiles(k: TiledGram, l: TiledGram, debiased: bool) -> float:
    """CKA = <Kc, Lc> / sqrt(<Kc, Kc> <Lc, Lc>) over the tiles of two Grams of the same n samples (two passes: the
    row sums, then the centred tiles' products; see the module's docstring)."""
    n, block = k.x.shape[0], k.block
    (ak, ck), (al, cl) = (_centring(r, n, debiased) for r in _row_sums((k, l), n, block, debiased))
    kl = kk = ll = 0.0
    for rows, cols in _tiles(n, block):
        kc = _centred_tile(k.tile(rows, cols, debiased), ak, ck, rows, cols, debiased)
        lc = _centred_tile(l.tile(rows, cols, debiased), al, cl, rows, cols, debiased)
        w = 1.0 if rows == cols else 2.0  # an off-diagonal tile stands for itself and its transpose
        kl += w * float(np.vdot(kc, lc))
        kk += w * float(np.vdot(kc, kc))
        ll += w * float(np.vdot(lc, lc))
    return kl / np.sqrt(kk * ll)


def cka_blockwise(x: np.ndarray, y: np.ndarray, kernel: Kernel = "linear", debiased: bool = False, *,
                  sigma: float | None = None, scale: float = 1.0, block_rows: int = BLOCK_ROWS) -> float:
    """CKA(X, Y) with the Grams visited by tiles of ``block_rows`` rows (``cka_of_tiles``): the same quantity as
    ``cka.cka`` (kernel, bandwidth and ``debiased`` options alike; the RBF bandwidth is the exact median of the
    tiles' distances), to rounding. X: (n, d1), Y: (n, d2), rows paired; memory O(block_rows^2 + n)."""
    validate_kernel(kernel, sigma, scale)
    x, y = validate_paired(x, y, ("X", "Y"), min_rows=4 if debiased else 2)
    block = validate_block_rows(block_rows)
    return cka_of_tiles(*tiled_grams(x, y, kernel, sigma=sigma, scale=scale, block_rows=block), debiased)


# ---------------------------------------------------------------------------------------------------------------
# Bootstrap moments by tiles
# ---------------------------------------------------------------------------------------------------------------


def weighted_moments_of_tiles(k: TiledGram, l: TiledGram, w: np.ndarray) -> tuple[np.ndarray, ...]:
    """For count vectors w (n, B): K w, L w, (K o L) w, (K o K) w, (L o L) w (each (n, B)) and the diagonals of K
    and L, accumulated over the tiles of the full-data Grams: the inputs of ``cka._hsic_weighted``, as
    ``cka._weighted_moments`` computes them from row blocks of the dense Grams' rows."""
    n, nb = w.shape
    out = [np.zeros((n, nb)) for _ in range(5)]
    for rows, cols in _tiles(n, k.block):
        kt, lt = k.tile(rows, cols), l.tile(rows, cols)
        for acc, t in zip(out, (kt, lt, kt * lt, kt * kt, lt * lt)):
            acc[rows] += t @ w[cols]
            if rows != cols:  # the transposed tile (J, I)
                acc[cols] += t.T @ w[rows]
    return (*out, k.diagonal(), l.diagonal())
