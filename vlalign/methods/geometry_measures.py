"""RSA and SVCCA: alignment of two representations through their dissimilarity matrices or their subspaces.

- ``rsa``: representational similarity analysis (Kriegeskorte et al. 2008): the Spearman correlation of the upper
  triangles of the two representational dissimilarity matrices (RDMs); the RDM's distance is a named setting,
  'correlation' by default as in rsatoolbox and thingsvision.
- ``svcca``: singular vector CCA (Raghu et al. 2017): SVD of each centred representation, keep the top directions,
  then CCA between the reduced spaces; the value is the mean canonical correlation.

Each measure is split into a per-representation part computed once (``rdm_ranks``, ``svcca_basis``) and a cheap
pairing step (``rsa_from_ranks``, ``svcca_from_bases``), so that permuting one side's rows permutes that part
instead of recomputing it (``vlalign.methods.calibration``).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from scipy.stats import rankdata

from vlalign.methods.kernels import squared_distances, validate_matrix, validate_paired

__all__ = [
    "RDM_DISTANCES",
    "rdm",
    "rdm_ranks",
    "rsa_from_ranks",
    "rsa",
    "svcca_basis",
    "svcca_from_bases",
    "svcca",
]

RdmDistance = Literal["correlation", "euclidean", "cosine"]
RDM_DISTANCES = ("correlation", "euclidean", "cosine")


def _unit(a: np.ndarray, name: str, what: str) -> np.ndarray:
    norms = np.linalg.norm(a, axis=1, keepdims=True)
    if np.any(norms == 0):
        raise ValueError(f"{name} has a row with {what}: the {what.split()[0]} distance is undefined for it")
    return a / norms


def rdm(x: np.ndarray, distance: RdmDistance = "correlation", *, name: str = "x") -> np.ndarray:
    """Representational dissimilarity matrix D (n, n) of x (n, d), zero diagonal:

        correlation  D_ij = 1 - pearson(x_i, x_j)   (each row centred over its features and L2-normalised)
        cosine       D_ij = 1 - <x_i, x_j> / (||x_i|| ||x_j||)
        euclidean    D_ij = ||x_i - x_j||
    """
    if distance not in RDM_DISTANCES:
        raise ValueError(f"distance must be one of {RDM_DISTANCES}, got {distance!r}")
    x = validate_matrix(x, name, min_rows=3)
    if distance == "euclidean":
        return np.sqrt(squared_distances(x))
    if distance == "correlation":
        u = _unit(x - x.mean(axis=1, keepdims=True), name, "correlation zero variance")
    else:
        u = _unit(x, name, "cosine zero norm")
    d = 1.0 - u @ u.T
    np.fill_diagonal(d, 0.0)
    return d


def rdm_ranks(d: np.ndarray, *, name: str = "x") -> tuple[np.ndarray, float]:
    """The upper triangle of an RDM as centred ranks, placed symmetrically: R (n, n) with R_ij = R_ji =
    rank(D_ij) - mean rank for i < j (average ranks for ties, as scipy.stats.spearmanr), zero diagonal;
    and sum_{i<j} R_ij^2. A simultaneous permutation of rows and columns of D permutes R the same way."""
    n = d.shape[0]
    iu = np.triu_indices(n, 1)
    r = rankdata(d[iu])
    r -= r.mean()
    ss = float(r @ r)
    if ss == 0:
        raise ValueError(f"the RDM of {name} is constant (all pairwise dissimilarities equal): RSA is undefined")
    out = np.zeros((n, n))
    out[iu] = r
    out += out.T
    return out, ss


def rsa_from_ranks(rx: np.ndarray, ssx: float, ry: np.ndarray, ssy: float) -> float:
    """Spearman correlation from two ``rdm_ranks`` results: sum_{i<j} Rx_ij Ry_ij / sqrt(ssx ssy)."""
    return 0.5 * float(np.vdot(rx, ry)) / np.sqrt(ssx * ssy)


def rsa(x: np.ndarray, y: np.ndarray, distance: RdmDistance = "correlation") -> float:
    """RSA (Kriegeskorte et al. 2008): spearman({D^x_ij}_{i<j}, {D^y_ij}_{i<j}), D = ``rdm(., distance)``.

    Spearman = Pearson correlation of the ranks (average ranks for ties), as scipy.stats.spearmanr. Range
    [-1, 1], larger = more similar. Invariant to any strictly increasing transformation of either RDM;
    correlation distance: to per-sample affine maps a x_i + b 1 (a > 0); cosine: to orthogonal maps and positive
    row rescaling; euclidean: to orthogonal maps, translations and isotropic scaling. x (n, d1), y (n, d2) paired,
    n >= 3. Cost O(n^2 (d1 + d2)) and O(n^2 log n) for the ranks; n x n matrices.
    """
    x, y = validate_paired(x, y, ("x", "y"), min_rows=3)
    rx, ssx = rdm_ranks(rdm(x, distance, name="x"), name="x")
    ry, ssy = rdm_ranks(rdm(y, distance, name="y"), name="y")
    return rsa_from_ranks(rx, ssx, ry, ssy)


# ---------------------------------------------------------------------------------------------------------------
# SVCCA
# ---------------------------------------------------------------------------------------------------------------


def _validate_svcca(keep_variance: float, dims: int | None) -> None:
    if not (isinstance(keep_variance, float | int) and 0 < keep_variance <= 1):
        raise ValueError(f"keep_variance must be a number in (0, 1], got {keep_variance!r}")
    if dims is not None and (isinstance(dims, bool) or not isinstance(dims, int | np.integer) or dims < 1):
        raise ValueError(f"dims must be a positive integer or None, got {dims!r}")


def svcca_basis(
    x: np.ndarray, keep_variance: float = 0.99, *, dims: int | None = None, standardize: bool = False, name: str = "x"
) -> np.ndarray:
    """SVCCA's first step for one representation: an orthonormal (n, r) basis U of its top singular directions.

    Xc = X - column means (``standardize``: also divided by the column std, ddof = 1, plus 1e-8, as platonic-rep);
    Xc = U S V^T; r = ``dims`` if given, else the smallest r with sum_{i<=r} s_i^2 >= keep_variance sum_i s_i^2.
    The columns of U are centred (they lie in the span of Xc's columns), and permuting the rows of X permutes
    the rows of U (with the same singular values, hence the same r).
    """
    _validate_svcca(keep_variance, dims)
    x = validate_matrix(x, name, min_rows=2)
    xc = x - x.mean(axis=0)
    if standardize:
        xc /= xc.std(axis=0, ddof=1) + 1e-8
    u, s, _ = np.linalg.svd(xc, full_matrices=False)
    energy = np.cumsum(s**2)
    if energy[-1] <= 0:
        raise ValueError(f"{name} is constant across samples (no variance): SVCCA is undefined")
    if dims is not None:
        if dims > s.size:
            raise ValueError(f"dims must be at most min(n, d) = {s.size} for {name}, got {dims}")
        return u[:, :dims]
    r = int(np.searchsorted(energy, keep_variance * energy[-1] * (1 - 1e-12))) + 1
    return u[:, : min(r, s.size)]


def svcca_from_bases(ux: np.ndarray, uy: np.ndarray) -> float:
    """Mean canonical correlation between the column spans of two orthonormal, centred bases: the canonical
    correlations are the singular values of Ux^T Uy (cosines of the principal angles), min(rx, ry) of them."""
    rho = np.linalg.svd(ux.T @ uy, compute_uv=False)
    return float(np.clip(rho, 0.0, 1.0).mean())


def svcca(
    x: np.ndarray,
    y: np.ndarray,
    keep_variance: float = 0.99,
    *,
    dims: int | None = None,
    standardize: bool = False,
) -> float:
    """SVCCA (Raghu et al. 2017, "SVCCA: Singular Vector Canonical Correlation Analysis ..."):

        1. SV step: for each representation, centre the columns and keep the top singular directions explaining
           ``keep_variance`` (default 0.99) of the variance (``svcca_basis``; ``dims`` = a fixed count instead);
        2. CCA step: canonical correlations rho_1..rho_m (m = min(rx, ry)) between the two reduced spaces;
        value = (1/m) sum rho_i.

    CCA is invariant to invertible linear maps of each reduced space, so step 2 only needs orthonormal bases: the
    rho_i are the singular values of Ux^T Uy (exact, no iterative solver). platonic-rep's ``svcca`` differs in
    three ways: it standardises each feature (``standardize=True`` here), keeps a fixed number of directions
    (cca_dim = 10: ``dims=10``) found by torch.svd_lowrank (randomised, approximate; here an exact SVD), and fits
    sklearn's iterative CCA (NIPALS) with 1e-10 noise added; with standardize=True, dims=10 this function computes
    the quantity theirs approximates. Range [0, 1], larger = more similar; invariant to orthogonal maps, isotropic
    scaling and translations of either space (standardize: also per-feature scaling). x (n, d1), y (n, d2).
    """
    _validate_svcca(keep_variance, dims)
    x, y = validate_paired(x, y, ("x", "y"))
    ux = svcca_basis(x, keep_variance, dims=dims, standardize=standardize, name="x")
    uy = svcca_basis(y, keep_variance, dims=dims, standardize=standardize, name="y")
    return svcca_from_bases(ux, uy)
