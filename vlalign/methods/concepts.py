"""Concept alignment (Li et al., "Do Vision and Language Models Share Concepts? A Vector Space Alignment
Study"): fit a linear map from an image embedding space to a text embedding space on a dictionary of concepts,
then retrieve held-out concepts among *all* the text aliases of *all* concepts.

The dictionary
--------------
C concepts. ``image (C, d1)``: each concept's mean image embedding (one row per concept). Aliases:
``alias_emb (A, d2)`` text embeddings, ``alias_concept (A,)`` the concept index (0 <= c < C) of each alias;
every concept has at least one alias, an alias belongs to one concept.

Protocol (:func:`concept_alignment`)
-----------------------------------
1. Folds: ``perm = np.random.default_rng(seed).permutation(C)``; fold f is ``np.array_split(perm, folds)[f]``
   (sizes differ by at most one). Every concept is tested exactly once, by the map fitted without its fold.
2. Training pairs of a fold: for every concept c outside the fold, source ``image[c]`` and target
   ``t_c = mean over the aliases a of c of alias_emb[a] / ||alias_emb[a]||`` (each alias L2-normalised first).
3. The map (:func:`procrustes_fit`, :func:`random_orthogonal_fit` or Procrustes on a shuffled dictionary) is
   fitted on those pairs. Held-out concepts are mapped with ``Map.apply(image[c])``; every alias (of every
   concept, training ones included) is projected with ``Map.target(alias_emb[a] / ||alias_emb[a]||)``.
4. Scores (:func:`retrieval_scores`): ``nn`` = cosine; ``csls`` = CSLS with the fold's mapped held-out
   concepts as the source set.
5. Ranking (:func:`hits_at_k`): for each held-out concept, all A aliases are sorted by decreasing score, ties
   broken by the smaller alias index. The concept's rank is the 0-based position of its best-placed alias; it
   is a hit at k when that rank is < k (i.e. some alias of the concept is among its top k aliases).
   P@k = mean of the hits over all C concepts.

Only numpy and scipy; everything is matrix operations (no Python loop over concepts x aliases).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from vlalign.methods.baselines import _unit_rows, cosine_similarity_matrix
from vlalign.methods.kernels import validate_matrix

__all__ = [
    "MAPPINGS",
    "RETRIEVALS",
    "Map",
    "procrustes_fit",
    "random_orthogonal_fit",
    "haar_orthogonal",
    "retrieval_scores",
    "csls_scores",
    "hits_at_k",
    "concept_targets",
    "concept_folds",
    "ConceptResult",
    "concept_alignment",
    "dispersion",
    "breakdown",
]

MAPPINGS = ("procrustes", "random_orthogonal", "shuffled_dictionary")
RETRIEVALS = ("nn", "csls")

_CHUNK = 512  # query rows per block when ranking (bounds the temporary boolean matrices)


# --------------------------------------------------------------------------------------------------------------
# Maps
# --------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Map:
    """A fitted linear map from a source space (d1) into the (PCA-reduced, centred) target space.

    ``apply(x) = (x - src_mean) @ src_basis @ rotation`` and ``target(y) = (y - dst_mean) @ dst_basis``;
    a basis is None when no PCA was done (the identity). Both results have ``dim`` columns.
    """

    src_mean: np.ndarray  # (d1,)
    dst_mean: np.ndarray  # (d2,)
    src_basis: np.ndarray | None  # (d1, k) PCA directions, or None (identity, d1 == k)
    dst_basis: np.ndarray | None  # (d2, k)
    rotation: np.ndarray  # (k, k) orthogonal
    kind: str = "procrustes"

    @property
    def dim(self) -> int:
        return int(self.rotation.shape[0])

    def _project(self, a: object, mean: np.ndarray, basis: np.ndarray | None, name: str) -> np.ndarray:
        a = validate_matrix(a, name)
        if a.shape[1] != mean.shape[0]:
            raise ValueError(f"{name} must have {mean.shape[0]} columns, got {a.shape[1]}")
        z = a - mean
        return z if basis is None else z @ basis

    def apply(self, x: object) -> np.ndarray:
        """Map source rows x (n, d1) into the target space: (x - src_mean) src_basis R -> (n, k)."""
        return self._project(x, self.src_mean, self.src_basis, "x") @ self.rotation

    def target(self, y: object) -> np.ndarray:
        """Project target rows y (n, d2) the way the training targets were: (y - dst_mean) dst_basis -> (n, k)."""
        return self._project(y, self.dst_mean, self.dst_basis, "y")


def _pca_basis_gram(centred: np.ndarray, k: int) -> np.ndarray:
    """``vlalign.methods.baselines._pca_basis`` (top-k right singular vectors of the centred rows, the largest entry of
    each made positive), computed from the eigendecomposition of the smaller Gram matrix: Z^T Z (d x d) when
    d <= n, else Z Z^T (n x n) with V = Z^T U / sqrt(lambda). Same directions to ~1e-12 when the top k
    eigenvalues are distinct, several times faster than the SVD for n, d ~ 1000s."""
    n, d = centred.shape
    if d <= n:
        _, v = np.linalg.eigh(centred.T @ centred)
        v = v[:, ::-1][:, :k]
    else:
        w, u = np.linalg.eigh(centred @ centred.T)
        w, u = w[::-1][:k], u[:, ::-1][:, :k]
        v = (centred.T @ u) / np.sqrt(np.maximum(w, np.finfo(np.float64).tiny))
        v /= np.linalg.norm(v, axis=0, keepdims=True)
    signs = np.sign(v[np.abs(v).argmax(axis=0), np.arange(k)])
    return v * np.where(signs == 0, 1.0, signs)


def _prepare(src: object, dst: object, dim: int | None):
    """Validate, centre each side by its mean and (when d1 != d2 or ``dim`` is given) reduce each side to its
    top-k principal directions, k = ``dim`` or min(d1, d2, n - 1) (the centred data has rank <= n - 1)."""
    x = validate_matrix(src, "src", min_rows=2)
    y = validate_matrix(dst, "dst", min_rows=2)
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"src and dst must have the same number of rows (paired), got {x.shape[0]} and {y.shape[0]}")
    n, d1 = x.shape
    d2 = y.shape[1]
    mx, my = x.mean(axis=0), y.mean(axis=0)
    zx, zy = x - mx, y - my
    if dim is None and d1 == d2:
        return mx, my, None, None, zx, zy
    kmax = min(d1, d2, n - 1)
    if dim is None:
        k = kmax
    else:
        if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)):
            raise ValueError(f"dim must be an integer or None, got {dim!r}")
        k = int(dim)
        if not 1 <= k <= kmax:
            raise ValueError(f"dim must be in [1, min(d1, d2, n - 1)] = [1, {kmax}], got {dim!r}")
    vx, vy = _pca_basis_gram(zx, k), _pca_basis_gram(zy, k)
    return mx, my, vx, vy, zx @ vx, zy @ vy


def procrustes_fit(src: object, dst: object, dim: int | None = None) -> Map:
    """Orthogonal Procrustes from paired rows src (n, d1) to dst (n, d2).

    Each side is centred by its own mean over these n rows. When d1 != d2, or ``dim`` is given, each side is
    reduced to its top-k principal directions (PCA of the centred rows, signs fixed as in
    ``vlalign.methods.baselines._pca_basis``; computed from the smaller Gram matrix, see ``_pca_basis_gram``),
    k = ``dim`` or min(d1, d2, n - 1); with d1 == d2 and no ``dim`` there is no PCA. With Zx, Zy the centred
    (reduced) rows:

        R = argmin_{R^T R = I} ||Zx R - Zy||_F = U V^T,   U S V^T = svd(Zx^T Zy).

    This is ``vlalign.methods.baselines.procrustes_scores``'s map (which always does the PCA) as a reusable object.
    """
    mx, my, vx, vy, zx, zy = _prepare(src, dst, dim)
    u, _, vt = np.linalg.svd(zx.T @ zy)
    return Map(mx, my, vx, vy, u @ vt, "procrustes")


def haar_orthogonal(k: int, seed: int | np.random.Generator | Sequence[int] = 0) -> np.ndarray:
    """A Haar-distributed (uniformly random) k x k orthogonal matrix: Q R = qr(G) of a standard Gaussian G
    (``np.random.default_rng(seed)``), then Q's columns multiplied by sign(diag(R)) (Mezzadri 2007)."""
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    q, r = np.linalg.qr(rng.standard_normal((int(k), int(k))))
    d = np.sign(np.diag(r))
    return q * np.where(d == 0, 1.0, d)


def random_orthogonal_fit(
    src: object, dst: object, seed: int | Sequence[int] = 0, *, dim: int | None = None
) -> Map:
    """The control map: the same centring and PCA as :func:`procrustes_fit`, but R is a seeded Haar-random
    orthogonal matrix (:func:`haar_orthogonal`) instead of the Procrustes solution (the pairs are not used
    beyond the means and the PCA bases)."""
    mx, my, vx, vy, zx, _ = _prepare(src, dst, dim)
    return Map(mx, my, vx, vy, haar_orthogonal(zx.shape[1], seed), "random_orthogonal")


# --------------------------------------------------------------------------------------------------------------
# Retrieval
# --------------------------------------------------------------------------------------------------------------


def _check_k(k: object, name: str) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"{name} must be a positive integer, got {k!r}")
    return int(k)


def _mean_top(s: np.ndarray, k: int, axis: int) -> np.ndarray:
    """Mean of the k largest entries along ``axis`` (k clipped to that axis's length)."""
    n = s.shape[axis]
    k = min(k, n)
    if k == n:
        return s.mean(axis=axis)
    top = np.partition(s, n - k, axis=axis)
    top = top[n - k:] if axis == 0 else top[:, n - k:]
    return top.mean(axis=axis)


def csls_scores(sources: object, targets: object, csls_k: int = 10) -> np.ndarray:
    """CSLS (Conneau et al. 2018) between mapped sources (m, k) and targets (A, k):

        CSLS(x, y) = 2 cos(x, y) - r_T(x) - r_S(y),
        r_T(x) = mean cosine of x to its K nearest targets,  r_S(y) = mean cosine of y to its K nearest sources,

    K = ``csls_k``, clipped to A for r_T and to m for r_S. "Nearest" = largest cosine; a row's own pair is not
    excluded (sources and targets are different sets). -> (m, A).
    """
    k = _check_k(csls_k, "csls_k")
    cos = cosine_similarity_matrix(sources, targets)
    r_t = _mean_top(cos, k, axis=1)
    r_s = _mean_top(cos, k, axis=0)
    return 2.0 * cos - r_t[:, None] - r_s[None, :]


def retrieval_scores(sources: object, targets: object, retrieval: str = "nn", csls_k: int = 10) -> np.ndarray:
    """(m, A) scores of mapped sources against targets: ``nn`` = cosine, ``csls`` = :func:`csls_scores`."""
    if retrieval not in RETRIEVALS:
        raise ValueError(f"retrieval must be one of {RETRIEVALS}, got {retrieval!r}")
    if retrieval == "nn":
        return cosine_similarity_matrix(sources, targets)
    return csls_scores(sources, targets, csls_k)


def _best_rank(scores: np.ndarray, alias_concept: np.ndarray, query_concept: np.ndarray) -> np.ndarray:
    """0-based rank of each query's best-placed own alias when its row is sorted by (-score, alias index)."""
    m, a = scores.shape
    idx = np.arange(a)
    ranks = np.empty(m, dtype=np.int64)
    for lo in range(0, m, _CHUNK):  # blocks of query rows: bounded memory, no per-concept Python loop
        s = scores[lo:lo + _CHUNK]
        own = alias_concept[None, :] == query_concept[lo:lo + _CHUNK, None]
        best = np.where(own, s, -np.inf).max(axis=1)
        first = np.where(own & (s == best[:, None]), idx[None, :], a).min(axis=1)
        before = (s > best[:, None]) | ((s == best[:, None]) & (idx[None, :] < first[:, None]))
        ranks[lo:lo + _CHUNK] = before.sum(axis=1)
    return ranks


def hits_at_k(
    scores: object, alias_concept: object, query_concept: object, ks: Iterable[int] = (1, 10, 100)
) -> tuple[dict[int, np.ndarray], np.ndarray]:
    """Hits of queries against all aliases.

    scores (m, A): query i's score for alias j; alias_concept (A,) and query_concept (m,) integer concept ids.
    Each row is ranked by decreasing score, ties broken by the smaller alias index; ``rank[i]`` is the 0-based
    position of the first alias of concept ``query_concept[i]`` in that order, A if the concept has no alias.
    Returns ({k: rank < k (bool, (m,))}, rank).
    """
    s = validate_matrix(scores, "scores")
    ac = _int_vector(alias_concept, "alias_concept", s.shape[1])
    qc = _int_vector(query_concept, "query_concept", s.shape[0])
    ks = _check_ks(ks)
    rank = _best_rank(s, ac, qc)
    return {k: rank < k for k in ks}, rank


def _int_vector(v: object, name: str, n: int | None = None) -> np.ndarray:
    a = np.asarray(v)
    if a.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array, got shape {a.shape}")
    if a.size and not np.issubdtype(a.dtype, np.integer):
        raise ValueError(f"{name} must hold integers, got dtype {a.dtype}")
    if n is not None and a.shape[0] != n:
        raise ValueError(f"{name} must have {n} entries, got {a.shape[0]}")
    return a.astype(np.int64, copy=False)


def _check_ks(ks: Iterable[int]) -> tuple[int, ...]:
    try:
        out = tuple(ks)
    except TypeError as exc:
        raise ValueError(f"ks must be an iterable of positive integers, got {ks!r}") from exc
    if not out:
        raise ValueError("ks must not be empty")
    for k in out:
        _check_k(k, "ks")
    return tuple(sorted(set(int(k) for k in out)))


# --------------------------------------------------------------------------------------------------------------
# The protocol
# --------------------------------------------------------------------------------------------------------------


def concept_targets(alias_emb: object, alias_concept: object, n_concepts: int) -> np.ndarray:
    """(C, d2) training targets: row c = mean of the L2-normalised embeddings of concept c's aliases
    (a zero embedding stays zero). Every concept must have at least one alias."""
    emb = validate_matrix(alias_emb, "alias_emb")
    ac = _check_alias_concept(alias_concept, emb.shape[0], n_concepts)
    import scipy.sparse as sp  # a slow import that only this function needs

    counts = np.bincount(ac, minlength=n_concepts).astype(np.float64)
    avg = sp.csr_matrix((1.0 / counts[ac], (ac, np.arange(ac.size))), shape=(n_concepts, ac.size))
    return np.asarray(avg @ _unit_rows(emb))


def _check_alias_concept(alias_concept: object, n_alias: int, n_concepts: int) -> np.ndarray:
    ac = _int_vector(alias_concept, "alias_concept", n_alias)
    if ac.size and (ac.min() < 0 or ac.max() >= n_concepts):
        raise ValueError(f"alias_concept entries must be concept indices in [0, {n_concepts}), got range "
                         f"[{ac.min()}, {ac.max()}]")
    missing = np.flatnonzero(np.bincount(ac, minlength=n_concepts) == 0)
    if missing.size:
        raise ValueError(f"alias_concept: every concept needs at least one alias; {missing.size} have none "
                         f"(first: {missing[:5].tolist()})")
    return ac


def concept_folds(n_concepts: int, folds: int = 5, seed: int = 0) -> np.ndarray:
    """(C,) fold index of each concept: ``perm = np.random.default_rng(seed).permutation(C)``, fold f holds
    ``np.array_split(perm, folds)[f]``."""
    n = _check_k(n_concepts, "n_concepts")
    f = _check_k(folds, "folds")
    if not 2 <= f <= n:
        raise ValueError(f"folds must be in [2, n_concepts] = [2, {n}], got {folds!r}")
    fold = np.empty(n, dtype=np.int64)
    for i, part in enumerate(np.array_split(np.random.default_rng(seed).permutation(n), f)):
        fold[part] = i
    return fold


@dataclass
class ConceptResult:
    """Per-concept outcome of :func:`concept_alignment`.

    hits[k] (C,) bool: some alias of concept c is in its top k; fold (C,): the fold in which c was tested;
    rank (C,): 0-based rank of c's best-placed alias; p_at_k[k] = hits[k].mean().
    """

    hits: dict[int, np.ndarray]
    fold: np.ndarray
    rank: np.ndarray
    p_at_k: dict[int, float]
    n_concepts: int
    n_aliases: int
    mapping: str
    retrieval: str
    options: dict = field(default_factory=dict)


def concept_alignment(
    image: object,
    alias_emb: object,
    alias_concept: object,
    *,
    mapping: str = "procrustes",
    retrieval: str = "nn",
    folds: int = 5,
    seed: int = 0,
    ks: Iterable[int] = (1, 10, 100),
    csls_k: int = 10,
    dim: int | None = None,
) -> ConceptResult:
    """Cross-validated concept retrieval (see the module docstring for the exact protocol).

    image (C, d1) concept image means; alias_emb (A, d2), alias_concept (A,) in [0, C), >= 1 alias per concept.
    mapping: 'procrustes' (:func:`procrustes_fit`), 'random_orthogonal' (:func:`random_orthogonal_fit`, seed
    ``[seed, fold]``) or 'shuffled_dictionary' (Procrustes fitted after permuting which training target goes with
    which training image, permutation from ``np.random.default_rng([seed, fold, 1])``). retrieval: 'nn' or 'csls'
    (sources = the fold's mapped held-out concepts, K = ``csls_k``). ``dim``: PCA dimension, see
    :func:`procrustes_fit`. Deterministic for a given seed.
    """
    img = validate_matrix(image, "image")
    emb = validate_matrix(alias_emb, "alias_emb")
    c = img.shape[0]
    ac = _check_alias_concept(alias_concept, emb.shape[0], c)
    if mapping not in MAPPINGS:
        raise ValueError(f"mapping must be one of {MAPPINGS}, got {mapping!r}")
    if retrieval not in RETRIEVALS:
        raise ValueError(f"retrieval must be one of {RETRIEVALS}, got {retrieval!r}")
    ks = _check_ks(ks)
    csls_k = _check_k(csls_k, "csls_k")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    if c < 3:
        raise ValueError(f"image must have at least 3 rows (concepts), got {c}")
    fold = concept_folds(c, folds, int(seed))
    if np.bincount(fold).max() > c - 2:
        raise ValueError(f"folds={folds} leaves fewer than 2 training concepts in some fold")

    unit_alias = _unit_rows(emb)
    targets = concept_targets(emb, ac, c)
    rank = np.empty(c, dtype=np.int64)
    for f in range(int(folds)):
        test = np.flatnonzero(fold == f)
        train = np.flatnonzero(fold != f)
        src, dst = img[train], targets[train]
        if mapping == "procrustes":
            m = procrustes_fit(src, dst, dim)
        elif mapping == "random_orthogonal":
            m = random_orthogonal_fit(src, dst, [int(seed), f], dim=dim)
        else:
            perm = np.random.default_rng([int(seed), f, 1]).permutation(train.size)
            m = procrustes_fit(src, dst[perm], dim)
        scores = retrieval_scores(m.apply(img[test]), m.target(unit_alias), retrieval, csls_k)
        rank[test] = _best_rank(scores, ac, test)
    hits = {k: rank < k for k in ks}
    return ConceptResult(
        hits=hits,
        fold=fold,
        rank=rank,
        p_at_k={k: float(h.mean()) for k, h in hits.items()},
        n_concepts=c,
        n_aliases=int(emb.shape[0]),
        mapping=mapping,
        retrieval=retrieval,
        options={"folds": int(folds), "seed": int(seed), "csls_k": csls_k, "dim": dim},
    )


# --------------------------------------------------------------------------------------------------------------
# Concept properties and breakdowns
# --------------------------------------------------------------------------------------------------------------


def dispersion(images_per_concept: Sequence[object]) -> np.ndarray:
    """(C,) image dispersion of each concept: the mean over unordered pairs i < j of its n images of the cosine
    distance 1 - cos(x_i, x_j) (a zero row has cosine 0 with everything). A concept with a single image has no
    pair: its dispersion is defined as 0 (it cannot be told apart from a perfectly tight concept)."""
    if isinstance(images_per_concept, np.ndarray) and images_per_concept.ndim != 3:
        raise ValueError("images_per_concept must be a list of (n_i, d) arrays")
    out = np.empty(len(images_per_concept), dtype=np.float64)
    for i, x in enumerate(images_per_concept):  # one O(n d) pass per concept: sum of pairwise cosines in closed form
        u = _unit_rows(validate_matrix(x, f"images_per_concept[{i}]"))
        n = u.shape[0]
        if n == 1:
            out[i] = 0.0
            continue
        s = u.sum(axis=0)
        pair_sum = (s @ s - np.einsum("ij,ij->", u, u)) / 2.0  # sum_{i<j} cos(x_i, x_j)
        out[i] = 1.0 - pair_sum / (n * (n - 1) / 2.0)
    return out


def breakdown(values: object, hits: Mapping[int, object] | ConceptResult, bins: int = 3) -> list[dict]:
    """P@k per quantile bin of a concept property.

    values (C,) float, NaN where unknown; hits: {k: (C,) bool} or a :class:`ConceptResult`. NaN values are left
    out of the bins; their number is reported as ``n_missing`` in every row. Bin edges are
    ``np.quantile(finite values, linspace(0, 1, bins + 1))``; bin b holds low <= v < high (the last bin also
    v == high). Tied edges can leave a bin empty (n = 0, P@k = NaN). Rows, one per bin:
    ``{bin, low, high, n, n_missing, p_at_<k> for each k}`` (so p_at_1, p_at_10, p_at_100 by default).
    """
    if isinstance(hits, ConceptResult):
        hits = hits.hits
    if not isinstance(hits, Mapping) or not hits:
        raise ValueError("hits must be a non-empty {k: bool array} mapping or a ConceptResult")
    b = _check_k(bins, "bins")
    try:
        v = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"values must be numeric, got {type(values).__name__}: {exc}") from exc
    if v.ndim != 1:
        raise ValueError(f"values must be a 1-D array, got shape {v.shape}")
    if np.isinf(v).any():
        raise ValueError("values contains infinite entries (use NaN for unknown)")
    hs = {}
    for k in sorted(hits):
        h = np.asarray(hits[k])
        if h.shape != v.shape:
            raise ValueError(f"hits[{k}] must have shape {v.shape} like values, got {h.shape}")
        hs[int(k)] = h.astype(bool)
    ok = ~np.isnan(v)
    n_missing = int((~ok).sum())
    if not ok.any():
        raise ValueError("values has no finite entry")
    edges = np.quantile(v[ok], np.linspace(0.0, 1.0, b + 1))
    which = np.full(v.shape, -1, dtype=np.int64)
    which[ok] = np.searchsorted(edges[1:-1], v[ok], side="right")
    rows = []
    for i in range(b):
        sel = which == i
        n = int(sel.sum())
        row = {"bin": i, "low": float(edges[i]), "high": float(edges[i + 1]), "n": n, "n_missing": n_missing}
        for k, h in hs.items():
            row[f"p_at_{k}"] = float(h[sel].mean()) if n else float("nan")
        rows.append(row)
    return rows
