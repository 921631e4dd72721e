"""CKNNA, cycle kNN, RSA, SVCCA and the registry, each against a slow, obvious reference on small random data, and
against platonic-rep's own formulas (minyoungg/platonic-rep, metrics.py, transcribed below with torch)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.spatial.distance import pdist, squareform
from scipy.stats import spearmanr

from vlalign.methods.cka import cka
from vlalign.methods.geometry_measures import rdm, rsa, svcca
from vlalign.methods.knn_measures import cknna, cycle_knn, knn_indices
from vlalign.methods.measures import mutual_knn
from vlalign.methods.registry import MEASURES, measure, measure_info, resolve_settings

F = torch.nn.functional


def _pair(n=40, d1=7, d2=5, noise=0.5, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d1))
    y = x[:, : min(d1, d2)] @ rng.standard_normal((min(d1, d2), d2)) + noise * rng.standard_normal((n, d2))
    return x, y


# --- platonic-rep metrics.py, transcribed (commit dcd76ba) ------------------------------------------------------


def _pr_hsic_unbiased(K, L):  # metrics.py hsic_unbiased
    m = K.shape[0]
    K_tilde = K.clone().fill_diagonal_(0)
    L_tilde = L.clone().fill_diagonal_(0)
    value = (torch.sum(K_tilde * L_tilde.T) + torch.sum(K_tilde) * torch.sum(L_tilde) / ((m - 1) * (m - 2))
             - 2 * torch.sum(torch.mm(K_tilde, L_tilde)) / (m - 2))
    return value / (m * (m - 3))


def _pr_hsic_biased(K, L):  # metrics.py hsic_biased
    H = torch.eye(K.shape[0], dtype=K.dtype) - 1 / K.shape[0]
    return torch.trace(K @ H @ L @ H)


def _pr_cknna(feats_A, feats_B, topk, unbiased=True):  # metrics.py AlignmentMetrics.cknna, distance_agnostic=False
    n = feats_A.shape[0]
    K, L = feats_A @ feats_A.T, feats_B @ feats_B.T

    def similarity(K, L, topk):
        if unbiased:
            K_hat, L_hat = K.clone().fill_diagonal_(float("-inf")), L.clone().fill_diagonal_(float("-inf"))
        else:
            K_hat, L_hat = K, L
        _, ki = torch.topk(K_hat, topk, dim=1)
        _, li = torch.topk(L_hat, topk, dim=1)
        mask = torch.zeros(n, n, dtype=K.dtype).scatter_(1, ki, 1) * torch.zeros(n, n, dtype=K.dtype).scatter_(1, li, 1)
        return (_pr_hsic_unbiased if unbiased else _pr_hsic_biased)(mask * K, mask * L)

    return similarity(K, L, topk).item() / (torch.sqrt(similarity(K, K, topk) * similarity(L, L, topk)) + 1e-6).item()


def _pr_knn(feats, topk):  # metrics.py compute_nearest_neighbors
    return (feats @ feats.T).fill_diagonal_(-1e8).argsort(dim=1, descending=True)[:, :topk]


def _pr_cycle_knn(feats_A, feats_B, topk):  # metrics.py AlignmentMetrics.cycle_knn + compute_knn_accuracy
    knn = _pr_knn(feats_A, topk)[_pr_knn(feats_B, topk)]
    n = knn.shape[0]
    acc = knn == torch.arange(n).view(-1, 1, 1)
    return acc.float().view(n, -1).max(dim=1).values.mean().item()


def _normalised(a):  # measure_alignment.py compute_score(normalize=True)
    return F.normalize(torch.tensor(a), p=2, dim=-1)


# --- knn_indices, cycle kNN, CKNNA ------------------------------------------------------------------------------


def test_knn_indices_are_the_sets_of_an_explicit_sort():
    x, _ = _pair(n=30)
    for normalize in (True, False):
        u = x / np.linalg.norm(x, axis=1, keepdims=True) if normalize else x
        for exclude in (True, False):
            got = knn_indices(x, 4, normalize=normalize, exclude_self=exclude)
            for i in range(30):
                sims = [(-(u[i] @ u[j]), j) for j in range(30) if not (exclude and j == i)]
                assert set(got[i]) == {j for _, j in sorted(sims)[:4]}


def test_cycle_knn_matches_explicit_sets_and_platonic_rep():
    x, y = _pair()
    for k in (1, 3, 10):
        nx, ny = knn_indices(x, k), knn_indices(y, k)
        slow = np.mean([any(i in set(nx[j]) for j in ny[i]) for i in range(x.shape[0])])
        assert cycle_knn(x, y, k) == pytest.approx(slow, abs=1e-15)
        assert cycle_knn(x, y, k) == pytest.approx(_pr_cycle_knn(_normalised(x), _normalised(y), k), abs=1e-7)
    assert cycle_knn(x, x, 5) == 1.0


def test_cknna_matches_platonic_rep_formula():
    x, y = _pair()
    for unbiased in (True, False):
        for k in (2, 5, 39):
            ref = _pr_cknna(_normalised(x), _normalised(y), k, unbiased)
            assert cknna(x, y, k, unbiased=unbiased) == pytest.approx(ref, rel=1e-12, abs=1e-14)
    ref_raw = _pr_cknna(torch.tensor(x), torch.tensor(y), 6)
    assert cknna(x, y, 6, normalize=False) == pytest.approx(ref_raw, rel=1e-12)


def test_cknna_with_all_neighbours_is_debiased_linear_cka():
    x, y = _pair()
    u = x / np.linalg.norm(x, axis=1, keepdims=True)
    v = y / np.linalg.norm(y, axis=1, keepdims=True)
    assert cknna(x, y, None, eps=0.0) == pytest.approx(cka(u, v, "linear", debiased=True), rel=1e-10)


def test_cknna_rejects_bad_settings():
    x, y = _pair(n=10)
    with pytest.raises(ValueError, match="k must"):
        cknna(x, y, 1)
    with pytest.raises(ValueError, match="eps"):
        cknna(x, y, 3, eps=-1.0)
    with pytest.raises(ValueError, match="same number of rows"):
        cknna(x, y[:-1], 3)


# --- RSA ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("distance", ["correlation", "cosine", "euclidean"])
def test_rsa_is_spearman_of_the_upper_triangles(distance):
    x, y = _pair(n=25)
    dx, dy = squareform(pdist(x, distance)), squareform(pdist(y, distance))
    assert np.allclose(rdm(x, distance), dx, atol=1e-12)
    iu = [(i, j) for i in range(25) for j in range(i + 1, 25)]
    ref = spearmanr([dx[p] for p in iu], [dy[p] for p in iu]).statistic
    assert rsa(x, y, distance) == pytest.approx(ref, abs=1e-12)


def test_rsa_handles_ties_like_spearmanr_and_rejects_bad_input():
    x = np.repeat(np.arange(6.0)[:, None], 3, axis=1) % 3 + np.eye(6, 3)  # repeated rows: tied distances
    y, _ = _pair(n=6, d1=4)
    d = lambda a: squareform(pdist(a, "euclidean"))  # noqa: E731
    assert rsa(x, y, "euclidean") == pytest.approx(spearmanr(squareform(d(x)), squareform(d(y))).statistic, abs=1e-12)
    with pytest.raises(ValueError, match="distance must be one of"):
        rsa(x, y, "manhattan")
    with pytest.raises(ValueError, match="x has a row"):
        rsa(np.ones((6, 3)), y)


# --- SVCCA -------------------------------------------------------------------------------------------------------


def _svcca_slow(x, y, keep=0.99, dims=None, standardize=False):
    """SV step by an explicit energy loop, CCA step from covariance matrices (scipy.linalg), on U S (not U)."""
    import scipy.linalg as sl  # noqa: PLC0415  (test-only reference)

    def reduce(a):
        a = a - a.mean(axis=0)
        if standardize:
            a = a / (a.std(axis=0, ddof=1) + 1e-8)
        u, s, _ = sl.svd(a, full_matrices=False)
        r = dims
        if r is None:
            r = 1
            while np.sum(s[:r] ** 2) < keep * np.sum(s**2) * (1 - 1e-12):
                r += 1
        return u[:, :r] * s[:r]

    a, b = reduce(x), reduce(y)
    sab, saa, sbb = a.T @ b, a.T @ a, b.T @ b
    m = sl.solve(saa, sab) @ sl.solve(sbb, sab.T)  # Saa^-1 Sab Sbb^-1 Sba: eigenvalues rho^2
    rho2 = np.sort(np.linalg.eigvals(m).real)[::-1][: min(a.shape[1], b.shape[1])]
    return float(np.mean(np.sqrt(np.clip(rho2, 0, 1))))


def test_svcca_matches_covariance_cca():
    x, y = _pair(n=50, d1=12, d2=9, noise=1.0)
    for keep in (0.5, 0.9, 0.99, 1.0):
        assert svcca(x, y, keep) == pytest.approx(_svcca_slow(x, y, keep), abs=1e-10)
    assert svcca(x, y, dims=4, standardize=True) == pytest.approx(_svcca_slow(x, y, dims=4, standardize=True),
                                                                   abs=1e-10)


def test_svcca_close_to_platonic_rep_recipe():
    """platonic-rep's svcca with exact SVD (theirs: torch.svd_lowrank, approximate) and sklearn CCA (NIPALS)."""
    cross_decomposition = pytest.importorskip("sklearn.cross_decomposition")
    x, y = _pair(n=200, d1=16, d2=12, noise=1.0)

    def prep(a):
        a = torch.tensor(a)
        a = a - torch.mean(a, axis=0)
        return a / (torch.std(a, axis=0) + 1e-8)

    u1 = torch.linalg.svd(prep(x), full_matrices=False)[0][:, :4].numpy()
    u2 = torch.linalg.svd(prep(y), full_matrices=False)[0][:, :4].numpy()
    cca_ = cross_decomposition.CCA(n_components=4, max_iter=5000, tol=1e-12).fit(u1, u2)
    c1, c2 = cca_.transform(u1, u2)
    ref = np.mean([np.corrcoef(c1[:, i], c2[:, i])[0, 1] for i in range(4)])
    assert svcca(x, y, dims=4, standardize=True) == pytest.approx(ref, abs=1e-4)


def test_svcca_rejects_bad_settings():
    x, y = _pair(n=10)
    with pytest.raises(ValueError, match="keep_variance"):
        svcca(x, y, 0.0)
    with pytest.raises(ValueError, match="dims must be at most"):
        svcca(x, y, dims=50)


# --- registry ----------------------------------------------------------------------------------------------------


def test_registry_calls_each_measure_with_its_defaults():
    x, y = _pair()
    assert measure("cka", x, y) == cka(x, y)
    assert measure("cka", x, y, kernel="rbf", debiased=True) == cka(x, y, "rbf", True)
    assert measure("mutual_knn", x, y, k=4) == mutual_knn(x, y, 4)
    assert measure("cknna", x, y) == cknna(x, y, 10)
    assert measure("rsa", x, y, distance="cosine") == rsa(x, y, "cosine")
    assert measure("svcca", x, y) == svcca(x, y)
    assert measure("cycle_knn", x, y) == cycle_knn(x, y)
    assert set(MEASURES) == {"cka", "mutual_knn", "cycle_knn", "cknna", "svcca", "rsa"}
    for name, info in MEASURES.items():
        assert info.name == name and info.value_range[0] < info.value_range[1] and info.larger_is_more_similar
        lo, hi = info.value_range
        assert lo - 1e-9 <= measure(name, x, y) <= hi + 1e-9


def test_registry_rejects_unknown_names_and_settings():
    with pytest.raises(ValueError, match="measure must be one of"):
        measure_info("procrustes")
    with pytest.raises(ValueError, match="unknown \\['kernel'\\]"):
        resolve_settings("mutual_knn", {"kernel": "rbf"})


@pytest.mark.parametrize("name", sorted(MEASURES))
def test_every_measure_is_invariant_to_reordering_the_samples(name):
    x, y = _pair(n=30)
    q = np.random.default_rng(5).permutation(30)
    assert measure(name, x[q], y[q]) == pytest.approx(measure(name, x, y), abs=1e-12)


@pytest.mark.parametrize("name", sorted(MEASURES))
def test_every_measure_is_invariant_to_an_orthogonal_map_when_its_metadata_says_so(name):
    x, y = _pair(n=30)
    q, _ = np.linalg.qr(np.random.default_rng(6).standard_normal((5, 5)))
    settings = {"distance": "cosine"} if name == "rsa" else {}
    if "orthogonal maps" in MEASURES[name].invariances or name == "rsa":
        assert measure(name, x, y @ q, **settings) == pytest.approx(measure(name, x, y, **settings), abs=1e-10)
