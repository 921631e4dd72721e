"""Kernels, HSIC and CKA against the slow references in tests/reference.py, plus CKA's invariances."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from vlalign.methods import cka as C
from vlalign.methods import kernels as K

try:
    from tests import reference as ref
except ImportError:  # tests/ is not a package: pytest puts it on sys.path
    import reference as ref

RTOL = 1e-8


def _pair(seed: int, n: int, d1: int, d2: int, offset: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d1)) + offset
    y = np.tanh(x @ rng.standard_normal((d1, d2))) + 0.5 * rng.standard_normal((n, d2))
    return x, y


def _close(a: float, b: float, rtol: float = RTOL) -> None:
    assert abs(a - b) <= rtol * max(abs(b), 1e-300), (a, b)


# ---------------------------------------------------------------------------------------------------------------
# Kernels and the median bandwidth
# ---------------------------------------------------------------------------------------------------------------


def test_squared_distances_match_explicit_differences_and_have_zero_diagonal():
    x, _ = _pair(0, 15, 6, 3, offset=2.0)
    d = K.squared_distances(x)
    np.testing.assert_allclose(d, ref.sq_dists_loop(x), rtol=1e-10, atol=1e-12)
    assert np.all(np.diag(d) == 0.0)


def test_median_squared_distance_matches_pair_loop():
    x, _ = _pair(1, 17, 5, 3)
    _close(K.median_squared_distance(K.squared_distances(x)), ref.median_sq_dist_loop(x))


def test_median_ignores_gram_trick_round_off_on_the_diagonal():
    # distances from separately computed squared norms: the usual Gram trick leaves round-off on the diagonal
    rng = np.random.default_rng(2)
    x = 100.0 + rng.standard_normal((30, 8))
    sq = np.einsum("ij,ij->i", x, x)
    d = sq[:, None] + sq[None, :] - 2 * (x @ x.T)
    d[np.diag_indices(30)] = np.abs(np.diag(d)) + 1e-9  # make sure the diagonal is non-zero garbage
    expected = ref.median_sq_dist_loop(x)
    naive = float(np.median(d[d != 0]))  # the research code's filter: lets the diagonal in
    assert abs(naive - expected) > 1e-3 * expected  # the trap is real
    _close(K.median_squared_distance(d), expected, rtol=1e-9)


def test_median_leaves_out_zero_distances_of_duplicate_samples():
    x, _ = _pair(3, 12, 4, 2)
    xd = np.vstack([x, x[:5]])
    _close(K.median_squared_distance(K.squared_distances(xd)), ref.median_sq_dist_loop(xd))


def test_gram_rbf_matches_reference_and_bandwidth_options():
    x, _ = _pair(4, 14, 5, 2)
    np.testing.assert_allclose(K.gram_rbf(x), ref.gram_ref(x, "rbf"), rtol=1e-10)
    med = ref.median_sq_dist_loop(x)
    np.testing.assert_allclose(K.gram_rbf(x, scale=2.0), ref.gram_ref(x, "rbf", sigma2=4.0 * med), rtol=1e-10)
    np.testing.assert_allclose(K.gram_rbf(x, sigma=0.7), ref.gram_ref(x, "rbf", sigma2=0.49), rtol=1e-10)


def test_center_gram_equals_dense_h():
    x, _ = _pair(5, 11, 4, 2, offset=3.0)
    g = x @ x.T
    h = ref.centering_matrix(11)
    np.testing.assert_allclose(K.center_gram(g), h @ g @ h, rtol=1e-9, atol=1e-9)


def _cross_kernel_loop(x: np.ndarray, z: np.ndarray, kernel: str, sigma2: float | None = None) -> np.ndarray:
    """k(x_i, z_j) one pair at a time, from explicit differences."""
    out = np.empty((len(x), len(z)))
    for i in range(len(x)):
        for j in range(len(z)):
            if kernel == "linear":
                out[i, j] = sum(float(a) * float(b) for a, b in zip(x[i], z[j]))
            else:
                out[i, j] = np.exp(-sum((float(a) - float(b)) ** 2 for a, b in zip(x[i], z[j])) / (2 * sigma2))
    return out


@pytest.mark.parametrize("kernel", ["linear", "rbf"])
def test_cross_gram_and_gram_diagonal_match_pair_loops(kernel):
    x, _ = _pair(20, 7, 5, 2, offset=1.5)
    z, _ = _pair(21, 11, 5, 2)
    sigma2 = 3.7 if kernel == "rbf" else None
    np.testing.assert_allclose(K.cross_gram(x, z, kernel, sigma2=sigma2), _cross_kernel_loop(x, z, kernel, sigma2),
                               rtol=1e-10, atol=1e-12)
    diag = np.diag(_cross_kernel_loop(x, x, kernel, sigma2))
    np.testing.assert_allclose(K.gram_diagonal(x, kernel), diag, rtol=1e-12)
    # a set against itself is its Gram
    gram = K.gram_linear(x) if kernel == "linear" else K.gram_rbf(x, sigma=np.sqrt(sigma2))
    np.testing.assert_allclose(K.cross_gram(x, x, kernel, sigma2=sigma2), gram, rtol=1e-10, atol=1e-12)


def test_cross_gram_rejects_bad_arguments():
    x, z = np.ones((3, 4)), np.ones((5, 4))
    with pytest.raises(ValueError, match="sigma2 must be a positive"):
        K.cross_gram(x, z, "rbf")
    with pytest.raises(ValueError, match="same number of columns"):
        K.cross_gram(x, np.ones((5, 3)))
    with pytest.raises(ValueError, match="kernel must be one of"):
        K.gram_diagonal(x, "poly")


def _center_with_base_loop(k_bb: np.ndarray, k_qb: np.ndarray, kappa: np.ndarray):
    """The formulas of ``center_with_base`` written out entry by entry."""
    m, p = k_bb.shape[0], k_qb.shape[0]
    r = [sum(k_bb[a, b] for b in range(m)) / m for a in range(m)]
    g = sum(r) / m
    km = [sum(k_qb[i, b] for b in range(m)) / m for i in range(p)]
    kc_bb = np.array([[k_bb[a, b] - r[a] - r[b] + g for b in range(m)] for a in range(m)])
    kc = np.array([[k_qb[i, b] - r[b] - km[i] + g for b in range(m)] for i in range(p)])
    return kc_bb, kc, np.array([kappa[i] - 2 * km[i] + g for i in range(p)])


@pytest.mark.parametrize("kernel", ["linear", "rbf"])
def test_center_with_base_matches_entry_loops_and_leaves_each_augmented_centred_gram_unchanged(kernel):
    base, _ = _pair(22, 9, 4, 2, offset=2.0)
    query, _ = _pair(23, 5, 4, 2, offset=2.5)
    sigma2 = K.rbf_sigma2(K.squared_distances(base)) if kernel == "rbf" else None
    k_bb = K.gram(base, kernel)
    k_qb = K.cross_gram(query, base, kernel, sigma2=sigma2)
    kappa = K.gram_diagonal(query, kernel)
    kc_bb, kc, kappa_c = K.center_with_base(k_bb, k_qb, kappa)
    for got, want in zip((kc_bb, kc, kappa_c), _center_with_base_loop(k_bb, k_qb, kappa)):
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(kc_bb, K.center_gram(k_bb), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(kc_bb.sum(axis=1), 0.0, atol=1e-12)  # Kc_bb 1 = 0
    np.testing.assert_allclose(kc.sum(axis=1), 0.0, atol=1e-12)  # 1^T kc_i = 0
    # H K~ H of the augmented Gram of base + query i is the same before and after (dense H)
    h = ref.centering_matrix(10)
    for i in range(len(query)):
        aug = ref.gram_ref(np.vstack([base, query[i : i + 1]]), kernel, sigma2=sigma2)
        aug_c = np.block([[kc_bb, kc[i][:, None]], [kc[i][None, :], np.array([[kappa_c[i]]])]])
        np.testing.assert_allclose(h @ aug_c @ h, h @ aug @ h, rtol=1e-9, atol=1e-10)
    # in place: the same values, written over the inputs
    a, b = k_bb.copy(), k_qb.copy()
    out = K.center_with_base(a, b, kappa, inplace=True)
    assert out[0] is a and out[1] is b
    np.testing.assert_array_equal(out[1], kc)


def test_center_with_base_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="k_qb must have 4 columns"):
        K.center_with_base(np.eye(4), np.ones((2, 3)), np.ones(2))
    with pytest.raises(ValueError, match="kappa must have shape"):
        K.center_with_base(np.eye(4), np.ones((2, 4)), np.ones(3))


# ---------------------------------------------------------------------------------------------------------------
# HSIC
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kernel", ["linear", "rbf"])
def test_hsic_biased_matches_trace_with_dense_h(kernel):
    x, y = _pair(6, 13, 5, 4, offset=1.0)
    k, l = ref.gram_ref(x, kernel), ref.gram_ref(y, kernel)
    _close(C.hsic_biased(k, l), ref.hsic_biased_ref(k, l))


@pytest.mark.parametrize("kernel", ["linear", "rbf"])
def test_hsic_unbiased_matches_song_formula_loops(kernel):
    x, y = _pair(7, 13, 5, 4, offset=1.0)
    k, l = ref.gram_ref(x, kernel), ref.gram_ref(y, kernel)
    _close(C.hsic_unbiased(k, l), ref.hsic_unbiased_ref(k, l))


def test_hsic_unbiased_is_the_u_statistic():
    x, y = _pair(8, 7, 3, 3)
    k, l = x @ x.T, y @ y.T
    _close(C.hsic_unbiased(k, l), ref.hsic_unbiased_ustat(k, l))


# ---------------------------------------------------------------------------------------------------------------
# CKA
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kernel", ["linear", "rbf"])
@pytest.mark.parametrize("debiased", [False, True])
@pytest.mark.parametrize("shape", [(12, 20, 15), (40, 6, 9)])  # n < d (Gram path), n > d (feature space)
def test_cka_matches_reference(kernel, debiased, shape):
    n, d1, d2 = shape
    x, y = _pair(9, n, d1, d2, offset=0.5)
    _close(C.cka(x, y, kernel, debiased), ref.cka_ref(x, y, kernel, debiased))


@pytest.mark.parametrize("debiased", [False, True])
def test_feature_space_linear_cka_equals_gram_cka(debiased):
    x, y = _pair(10, 60, 7, 5, offset=4.0)
    _close(C.feature_space_linear_cka(x, y, debiased=debiased),
           C.cka_from_grams(x @ x.T, y @ y.T, debiased=debiased))


@pytest.mark.parametrize("kernel", ["linear", "rbf"])
@pytest.mark.parametrize("debiased", [False, True])
def test_cka_of_a_representation_with_itself_is_one(kernel, debiased):
    x, _ = _pair(11, 25, 8, 2)
    _close(C.cka(x, x, kernel, debiased), 1.0, rtol=1e-12)


@pytest.mark.parametrize("kernel", ["linear", "rbf"])
@pytest.mark.parametrize("debiased", [False, True])
def test_cka_invariant_to_orthogonal_transform_and_isotropic_scaling(kernel, debiased):
    x, y = _pair(12, 30, 6, 10)
    q, _ = np.linalg.qr(np.random.default_rng(0).standard_normal((10, 10)))
    base = C.cka(x, y, kernel, debiased)
    _close(C.cka(x, 3.7 * (y @ q), kernel, debiased), base, rtol=1e-9)
    _close(C.cka(0.01 * x, y, kernel, debiased), base, rtol=1e-9)


def test_linear_cka_in_feature_space_never_forms_an_n_by_n_matrix():
    rng = np.random.default_rng(13)
    n = 20_000  # an n x n float64 matrix would be 3.2 GB
    x = rng.standard_normal((n, 16))
    y = x[:, :8] + rng.standard_normal((n, 8))
    tracemalloc.start()
    value = C.cka(x, y)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert 0 < value < 1
    assert peak < 20 * n * 16 * 8  # a few n x d blocks at most, nowhere near n^2


# ---------------------------------------------------------------------------------------------------------------
# Grid, shuffled pairing, bootstrap
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kernel", ["linear", "rbf"])
@pytest.mark.parametrize("debiased", [False, True])
@pytest.mark.parametrize("n", [10, 50])  # Gram path / feature-space path for linear
def test_cka_grid_equals_cka_of_each_pair(kernel, debiased, n):
    rng = np.random.default_rng(14)
    z = rng.standard_normal((n, 5))
    vision = {"v1": z @ rng.standard_normal((5, 12)), "v2": np.tanh(z @ rng.standard_normal((5, 20)))}
    text = {"t1": z @ rng.standard_normal((5, 8)) + rng.standard_normal((n, 8)),
            "t2": rng.standard_normal((n, 15)), "t3": z[:, :2]}
    grid = C.cka_grid(vision, text, kernel, debiased)
    assert grid.values.shape == (2, 3) and grid.vision == ("v1", "v2") and grid.text == ("t1", "t2", "t3")
    for (v, t), value in grid.as_dict().items():
        _close(value, C.cka(vision[v], text[t], kernel, debiased))
        _close(value, ref.cka_ref(vision[v], text[t], kernel, debiased, loops=False))
    assert len(grid.records()) == 6 and grid.records()[0]["kernel"] == kernel


def test_cka_grid_rejects_encoders_with_different_sample_counts():
    with pytest.raises(ValueError, match="same n samples"):
        C.cka_grid({"v": np.ones((10, 3))}, {"t": np.ones((9, 3))})
    with pytest.raises(ValueError, match="non-empty mapping"):
        C.cka_grid({}, {"t": np.ones((9, 3))})


def test_shuffled_cka_is_seeded_and_near_chance():
    x, y = _pair(15, 200, 10, 10)
    a = C.cka_shuffled(x, y, seed=3)
    assert a == C.cka_shuffled(x, y, seed=3)
    assert a != C.cka_shuffled(x, y, seed=4)
    assert a < 0.5 * C.cka(x, y)


@pytest.mark.parametrize("kernel", ["linear", "rbf"])
def test_bootstrap_interval_is_seeded_and_brackets_the_estimate(kernel):
    x, y = _pair(16, 40, 6, 50)
    a = C.cka_bootstrap(x, y, kernel, n_boot=40, seed=1)
    b = C.cka_bootstrap(x, y, kernel, n_boot=40, seed=1)
    assert a.low == b.low and a.high == b.high
    assert a.low <= a.estimate <= a.high
    # the interval is the percentile interval shifted by the bootstrap bias (mean of resamples - estimate)
    lo, hi = np.quantile(a.samples, [0.025, 0.975])
    _close(a.bias, float(a.samples.mean() - a.estimate), rtol=1e-12)
    _close(a.low, lo - a.bias, rtol=1e-12)
    _close(a.high, hi - a.bias, rtol=1e-12)


def _resample_reference(x, y, idx, kernel, debiased):
    """CKA of one resample, the slow obvious way: the full data's Gram (RBF: full-data median bandwidth), cut at
    the drawn rows, centred (or U-centred), then <Kc, Lc> / (|Kc| |Lc|)."""
    grams = []
    for a in (x, y):
        d = ((a[:, None, :] - a[None, :, :]) ** 2).sum(-1)
        full = a @ a.T if kernel == "linear" else np.exp(-d / (2 * np.median(d[d > 0])))
        k = full[np.ix_(idx, idx)]
        grams.append(K.u_center_gram(k) if debiased else K.center_gram(k))
    kc, lc = grams
    return float((kc * lc).sum() / np.sqrt((kc * kc).sum() * (lc * lc).sum()))


@pytest.mark.parametrize("kernel", ["linear", "rbf"])
@pytest.mark.parametrize("debiased", [False, True])
def test_every_bootstrap_resample_equals_cka_of_the_cut_grams(kernel, debiased):
    x, y = _pair(17, 30, 5, 8)
    a = C.cka_bootstrap(x, y, kernel, debiased, n_boot=70, seed=2)  # 70 resamples: more than one chunk of 64
    rng = np.random.default_rng(2)
    for b in range(70):
        idx = rng.integers(0, 30, size=30)
        if b % 9 == 0 or b == 69:
            _close(a.samples[b], _resample_reference(x, y, idx, kernel, debiased), rtol=1e-9)
            if kernel == "linear":  # a linear resample is also CKA from scratch on the resampled rows
                _close(a.samples[b], C.cka(x[idx], y[idx], kernel, debiased), rtol=1e-9)


# ---------------------------------------------------------------------------------------------------------------
# Boundary validation
# ---------------------------------------------------------------------------------------------------------------


def test_cka_rejects_bad_inputs_with_named_arguments():
    x = np.ones((10, 3))
    with pytest.raises(ValueError, match="X and Y must have the same number of rows"):
        C.cka(x, np.ones((9, 3)))
    bad = np.random.default_rng(0).standard_normal((10, 3))
    bad[2, 1] = np.nan
    with pytest.raises(ValueError, match="Y contains NaN"):
        C.cka(x, bad)
    with pytest.raises(ValueError, match="at least 4 rows"):
        C.cka(np.ones((3, 2)), np.ones((3, 2)), debiased=True)
    with pytest.raises(ValueError, match="2-D"):
        C.cka(np.ones(10), np.ones(10))
    with pytest.raises(ValueError, match="kernel must be one of"):
        C.cka(x, x, kernel="poly")
    with pytest.raises(ValueError, match="identical samples"):
        C.cka(np.ones((10, 3)), np.ones((10, 3)), kernel="rbf")
