"""Local CKA in closed form, and retrieval recall from a (query image x query caption) score matrix.

localCKA(x_i, y_j) = CKA(K[base + x_i], L[base + y_j]) (Maniparambil et al. 2024, Sec. 4.2): the CKA of the M base
images plus query image i against the M base captions plus query caption j. The paper scores it with a Python
loop over all p x q pairs, each building and centring (M+1) x (M+1) Grams; here every score comes from one
(p, M) x (M, q) product plus per-row and per-column vectors (derivation in ``local_cka_scores``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vlalign.methods.kernels import (
    Kernel,
    _center_with_base,
    _cross_gram,
    _gram_diagonal,
    center_gram,
    gram_linear,
    rbf_from_squared_distances,
    rbf_sigma2,
    squared_distances,
    validate_kernel,
    validate_matrix,
    validate_split,
)

__all__ = ["local_cka_scores", "RetrievalResult", "recall_at_k"]


@dataclass(frozen=True)
class _BaseCentred:
    """Base Gram and query kernels after centring with the base statistics (``kernels.center_with_base``)."""

    base_sq: float  # ||Kc_bb||_F^2
    cross: np.ndarray  # (p, M): kc_i
    diag: np.ndarray  # (p,): kappa_i
    base: np.ndarray  # (M, M): Kc_bb


def _base_centred_kernel(
    base: np.ndarray, query: np.ndarray, kernel: Kernel = "linear", *, sigma: float | None = None, scale: float = 1.0
) -> _BaseCentred:
    """Kernel of base (M, d) and queries (p, d), centred with the base's statistics (``kernels.center_with_base``):
    Kc_bb 1 = 0 and 1^T kc_i = 0, every augmented CKA unchanged.

    Linear: the features are first shifted by the base mean. That only adds terms a 1^T + 1 a^T to each augmented
    Gram (H annihilates them), avoids the cancellation of a large common offset, and already is the base-statistics
    centring in exact arithmetic.
    RBF: sigma^2 = scale^2 * median of the base set's non-zero off-diagonal squared distances (or ``sigma``), from
    ``kernels.rbf_sigma2``, the same for the base Gram and every query.
    """
    if kernel == "linear":
        mu = base.mean(axis=0)
        zb = base - mu
        zq = query - mu
        # the base-centred features make r, mean(k_i) and g of ``center_with_base`` zero in exact arithmetic, so
        # only the base Gram is recentred (round-off of the mean); kc_i and kappa_i are the plain kernels
        kc_bb = center_gram(gram_linear(zb), inplace=True)
        kc_qb = _cross_gram(zq, zb, "linear", None)
        kappa_c = _gram_diagonal(zq, "linear")
    else:
        d_bb = squared_distances(base)
        sigma2 = rbf_sigma2(d_bb, sigma=sigma, scale=scale)
        k_bb = rbf_from_squared_distances(d_bb, sigma2, inplace=True)
        k_qb = _cross_gram(query, base, "rbf", sigma2)
        kc_bb, kc_qb, kappa_c = _center_with_base(k_bb, k_qb, _gram_diagonal(query, "rbf"), inplace=True)
    return _BaseCentred(float(np.vdot(kc_bb, kc_bb)), kc_qb, kappa_c, kc_bb)


def local_cka_scores(
    base_x: np.ndarray,
    base_y: np.ndarray,
    query_x: np.ndarray,
    query_y: np.ndarray,
    kernel: Kernel = "linear",
    *,
    sigma: float | None = None,
    scale: float = 1.0,
) -> np.ndarray:
    """All local CKA scores S[i, j] = CKA(K[base_x + query_x[i]], L[base_y + query_y[j]]) in closed form.

    base_x (M, d1) images and base_y (M, d2) captions, rows paired; query_x (p, d1); query_y (q, d2).
    Returns a (p, q) array.

    Closed form: for the augmented (m x m) Grams, m = M + 1, centred with the base statistics
    (``kernels.center_with_base``: Kc_bb 1 = 0, 1^T kc_i = 0),
        tr(K~ H L~ H) = <Kc_bb, Lc_bb>_F + 2 (1 - 1/m) <kc_i, lc_j> + (1 - 1/m)^2 kappa_i lambda_j,
        tr(K~ H K~ H) = ||Kc_bb||_F^2 + 2 (1 - 1/m) ||kc_i||^2 + (1 - 1/m)^2 kappa_i^2     (same for L~),
    S = tr(K~HL~H) / sqrt(tr(K~HK~H) tr(L~HL~H)). The only pair term <kc_i, lc_j> is one (p, M) x (M, q) product.

    RBF bandwidth: sigma_x^2 = scale^2 * median of the non-zero pairwise squared distances of base_x (likewise
    sigma_y^2 from base_y), fixed for every query, which is what makes a single product possible. This differs
    from recomputing the median on each augmented (M+1)-set: adding one query changes that median slightly, and
    differently for every query. A fixed ``sigma`` is also accepted. The linear kernel has no such choice.
    """
    validate_kernel(kernel, sigma, scale)
    base_x, base_y, query_x, query_y = validate_split(base_x, base_y, query_x, query_y, min_base=2)
    m = base_x.shape[0] + 1
    c = 1.0 - 1.0 / m
    kx = _base_centred_kernel(base_x, query_x, kernel, sigma=sigma, scale=scale)
    ky = _base_centred_kernel(base_y, query_y, kernel, sigma=sigma, scale=scale)
    num = kx.cross @ ky.cross.T
    num *= 2 * c
    num += (c * c) * np.outer(kx.diag, ky.diag)
    num += float(np.vdot(kx.base, ky.base))
    nx = kx.base_sq + 2 * c * np.einsum("ij,ij->i", kx.cross, kx.cross) + (c * kx.diag) ** 2
    ny = ky.base_sq + 2 * c * np.einsum("ij,ij->i", ky.cross, ky.cross) + (c * ky.diag) ** 2
    num /= np.sqrt(nx)[:, None]
    num /= np.sqrt(ny)[None, :]
    return num


# ---------------------------------------------------------------------------------------------------------------
# Retrieval
# ---------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RetrievalResult:
    """Recall@k in both directions; the true partner of query i is i."""

    image_to_text: dict[int, float]  # row i ranks the captions (columns)
    text_to_image: dict[int, float]  # column j ranks the images (rows)

    def as_dict(self) -> dict[str, float]:
        """{'i2t_r1': ..., 't2i_r10': ...}."""
        out = {f"i2t_r{k}": v for k, v in self.image_to_text.items()}
        out.update({f"t2i_r{k}": v for k, v in self.text_to_image.items()})
        return out


TIES = ("against", "favour")


def _true_ranks(scores: np.ndarray, ties: str = "against") -> np.ndarray:
    """rank_i = #{j != i : S_ij >= S_ii} (ties='against': a tie counts against the partner) or
    #{j != i : S_ij > S_ii} (ties='favour'). 0 = the partner is first."""
    true = np.diag(scores)[:, None]
    if ties == "favour":
        return (scores > true).sum(axis=1)  # the diagonal itself is never > itself
    return (scores >= true).sum(axis=1) - 1


def recall_at_k(scores: np.ndarray, ks: tuple[int, ...] = (1, 5, 10), ties: str = "against") -> RetrievalResult:
    """Recall@k = (1/n) sum_i [rank_i < k], for image->text (rows of S) and text->image (columns of S).
    ``scores``: (n, n), S[i, j] = score of image i with caption j; the true partner of i is i.

    ``ties`` decides how a score equal to the partner's counts:
      'against' (default): rank_i = #{j != i : S_ij >= S_ii}; a constant score matrix gives recall 0.
      'favour' (the paper's code): rank_i = #{j != i : S_ij > S_ii}; a constant score matrix gives recall 1.
    """
    s = validate_matrix(scores, "scores")
    if s.shape[0] != s.shape[1]:
        raise ValueError(f"scores must be square (query i's partner is i), got shape {s.shape}")
    if not ks or any(int(k) < 1 for k in ks):
        raise ValueError(f"ks must be positive integers, got {ks!r}")
    if ties not in TIES:
        raise ValueError(f"ties must be one of {TIES}, got {ties!r}")
    r_i2t = _true_ranks(s, ties)
    r_t2i = _true_ranks(s.T, ties)
    return RetrievalResult(
        {int(k): float(np.mean(r_i2t < k)) for k in ks},
        {int(k): float(np.mean(r_t2i < k)) for k in ks},
    )
