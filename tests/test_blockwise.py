"""CKA, the median bandwidth and the bootstrap by tiles of the Grams (vlalign.methods.blockwise) against the dense
path and the slow references: the same numbers to 1e-12 (relative), the median's order statistics exactly."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vlalign import cka, cka_bootstrap
from vlalign.methods import blockwise as B
from vlalign.methods import cka as C
from vlalign.methods import kernels as K
from vlalign.methods import measures as M

try:
    from tests import reference as ref
except ImportError:  # tests/ is not a package: pytest puts it on sys.path
    import reference as ref

RTOL = 1e-12


def _close(a: float, b: float, rtol: float = RTOL) -> None:
    assert abs(a - b) <= rtol * max(abs(b), 1e-300), (a, b)


def _latent(seed: int, n: int, d1: int, d2: int) -> tuple[np.ndarray, np.ndarray]:
    """x = z A + noise, y = z B + noise: a shared latent z (the bench's data, small)."""
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n, 5))
    x = z @ rng.standard_normal((5, d1)) + rng.standard_normal((n, d1))
    y = z @ rng.standard_normal((5, d2)) + rng.standard_normal((n, d2))
    return x, y


def _integers(seed: int, n: int, d: int) -> np.ndarray:
    """Small integers: every product and distance is exact in float64, whatever the BLAS call's rounding order;
    duplicate rows give zero distances (left out of the median)."""
    x = np.random.default_rng(seed).integers(-3, 4, size=(n, d)).astype(np.float64)
    x[n // 3] = x[0]
    return x


# ---------------------------------------------------------------------------------------------------------------
# Exact selection and the median bandwidth
# ---------------------------------------------------------------------------------------------------------------


def _chunks_of(values: np.ndarray, cuts: list[int], times: tuple[int, ...] = (1,)):
    """``values`` cut at ``cuts``, as (chunk, multiplicity) with the multiplicities ``times`` in turn."""
    edges = [0, *sorted(c % (values.size + 1) for c in cuts), values.size]
    return lambda: ((values[a:b], times[i % len(times)]) for i, (a, b) in enumerate(zip(edges[:-1], edges[1:])))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(values=st.lists(st.one_of(st.floats(-1e6, 1e6, allow_nan=False), st.sampled_from([0.0, 1.0, 2.5, 1e-300])),
                       min_size=1, max_size=300),
       cuts=st.lists(st.integers(0, 400), max_size=5), wanted=st.lists(st.floats(0, 1), min_size=1, max_size=3),
       times=st.lists(st.integers(1, 3), min_size=1, max_size=3).map(tuple), tiny=st.booleans())
def test_select_positive_gives_the_sorted_positive_values_at_any_rank(values, cuts, wanted, times, tiny):
    a = np.array(values)
    chunks = _chunks_of(a, cuts, times)
    every = np.concatenate([np.repeat(c[None, :], m, axis=0).ravel() for c, m in chunks()])
    pos = np.sort(every[every > 0])
    if pos.size == 0:
        return
    ranks = sorted({int(q * (pos.size - 1)) for q in wanted})
    with pytest.MonkeyPatch.context() as mp:
        if tiny:  # 4 buckets, nothing collected: many refinement passes down to single bit patterns
            mp.setattr(B, "_SELECT_BUCKETS", 4)
            mp.setattr(B, "_SELECT_COLLECT", 0)
        got = B.select_positive(chunks, lambda m: ranks if m == pos.size else [])
    assert got == [float(pos[r]) for r in ranks]


@pytest.mark.parametrize("tiny", [False, True])
def test_median_over_chunks_of_the_dense_matrix_is_the_dense_median_bit_for_bit(tiny, monkeypatch):
    if tiny:
        monkeypatch.setattr(B, "_SELECT_BUCKETS", 16)
        monkeypatch.setattr(B, "_SELECT_COLLECT", 5)
    x, _ = _latent(0, 301, 40, 3)
    d = K.squared_distances(x)
    off = d.copy()
    np.fill_diagonal(off, -1.0)
    lo, hi = B.select_positive(_chunks_of(off.ravel(), [7, 1000, 45_000]), B._median_ranks)
    assert (np.float64(lo) + np.float64(hi)) / 2 == K.median_squared_distance(d)


@pytest.mark.parametrize("n,block", [(37, 1), (64, 7), (301, 64), (300, 300), (257, 1000), (211, 100)])
def test_blockwise_median_equals_the_dense_median_exactly_on_exact_data(n, block):
    x = _integers(n, n, 9)
    assert B.median_squared_distance_blockwise(x, block_rows=block) == K.median_squared_distance(
        K.squared_distances(x))
    assert B.rbf_sigma2_blockwise(x, scale=0.7, block_rows=block) == K.rbf_sigma2(K.squared_distances(x), scale=0.7)


@pytest.mark.parametrize("n,block", [(200, 33), (513, 128)])
def test_blockwise_median_on_float_data_matches_to_rounding(n, block):
    # the tiles' products and the one dense product are different BLAS calls: a D_ij may differ in its last bit
    x, _ = _latent(n, n, 50, 3)
    _close(B.median_squared_distance_blockwise(x, block_rows=block),
           K.median_squared_distance(K.squared_distances(x)), 1e-13)


def test_blockwise_median_rejects_identical_samples_and_bad_block_rows():
    with pytest.raises(ValueError, match="identical samples"):
        B.median_squared_distance_blockwise(np.ones((5, 3)), block_rows=2)
    for bad in (0, -3, 2.5, True, "64"):
        with pytest.raises(ValueError, match="block_rows must be a positive integer"):
            B.median_squared_distance_blockwise(np.eye(4), block_rows=bad)
        with pytest.raises(ValueError, match="block_rows"):
            cka(np.eye(4), np.eye(4), "rbf", block_rows=bad)


# ---------------------------------------------------------------------------------------------------------------
# CKA by tiles
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kernel", ["linear", "rbf"])
@pytest.mark.parametrize("debiased", [False, True])
def test_blockwise_cka_matches_the_slow_reference(kernel, debiased):
    x, y = _latent(1, 23, 6, 4)
    _close(B.cka_blockwise(x, y, kernel, debiased, block_rows=5), ref.cka_ref(x, y, kernel, debiased), 1e-10)


@pytest.mark.parametrize("kernel", ["linear", "rbf"])
@pytest.mark.parametrize("debiased", [False, True])
@pytest.mark.parametrize("n,block", [(37, 1), (203, 64), (601, 256), (300, 299), (129, 500)])
def test_blockwise_cka_equals_the_dense_grams(kernel, debiased, n, block):
    x, y = _latent(n, n, 700 if n > 600 else 40, 24)
    dense = C.cka_from_grams(K.gram(x, kernel), K.gram(y, kernel), debiased=debiased)
    _close(B.cka_blockwise(x, y, kernel, debiased, block_rows=block), dense)
    if kernel == "rbf" or n <= 40:  # linear with n > d takes the feature space in cka
        _close(cka(x, y, kernel, debiased, block_rows=block), dense)


def test_blockwise_rbf_with_given_sigma_and_scale_equals_the_dense_path():
    x, y = _latent(4, 150, 20, 10)
    for opts in ({"sigma": 3.0}, {"scale": 0.5}):
        _close(cka(x, y, "rbf", True, block_rows=47, **opts), cka(x, y, "rbf", True, **opts))


def test_cka_takes_tiles_above_dense_max_n_and_the_dense_grams_up_to_it(monkeypatch):
    x, y = _latent(5, 120, 30, 12)
    dense = cka(x, y, "rbf")
    kc, lc = (C._centred_gram(a, "rbf", None, 1.0, False) for a in (x, y))
    assert dense == C._cka_from_centred(kc, lc, float(np.vdot(kc, kc)), float(np.vdot(lc, lc)))  # today's path
    monkeypatch.setattr(C, "DENSE_MAX_N", 119)
    monkeypatch.setattr(C, "BLOCK_ROWS", 50)
    tiled = cka(x, y, "rbf")
    assert tiled == B.cka_blockwise(x, y, "rbf", block_rows=50)
    _close(tiled, dense)
    grid = C.cka_grid({"x": x}, {"y": y, "x": x}, "rbf", True)
    _close(grid.values[0, 0], cka(x, y, "rbf", True))
    _close(grid.values[0, 1], 1.0)


def test_blockwise_cka_never_allocates_an_n_by_n_matrix():
    x, y = _latent(6, 2500, 16, 8)
    _ = B.cka_blockwise(x[:50], y[:50], "rbf", block_rows=256)  # warm-up (imports, caches)
    tracemalloc.start()
    B.cka_blockwise(x, y, "rbf", True, block_rows=256)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 2500 * 2500 * 8 / 4, peak  # a quarter of one Gram; about ten 256 x 256 tiles in fact


# ---------------------------------------------------------------------------------------------------------------
# Bootstrap by tiles
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kernel", ["linear", "rbf"])
@pytest.mark.parametrize("debiased", [False, True])
def test_blockwise_bootstrap_equals_the_dense_bootstrap(kernel, debiased):
    x, y = _latent(7, 211, 30, 12)
    dense = cka_bootstrap(x, y, kernel, debiased, n_boot=40, seed=3)
    tiled = cka_bootstrap(x, y, kernel, debiased, n_boot=40, seed=3, block_rows=64)
    for a, b in zip((tiled.estimate, tiled.low, tiled.high, tiled.bias), (dense.estimate, dense.low, dense.high,
                                                                          dense.bias)):
        # the interval's ends and the bias are differences of resamples: compared on the estimate's scale
        assert abs(a - b) <= RTOL * abs(dense.estimate), (a, b)
    np.testing.assert_allclose(tiled.samples, dense.samples, rtol=RTOL, atol=0)


def test_blockwise_bootstrap_resamples_equal_cka_of_the_cut_grams():
    x, y = _latent(8, 60, 12, 7)
    out = cka_bootstrap(x, y, "rbf", True, n_boot=5, seed=1, block_rows=13)
    rng = np.random.default_rng(1)
    idx = np.stack([rng.integers(0, 60, size=60) for _ in range(5)])
    s2x, s2y = (K.rbf_sigma2(K.squared_distances(a)) for a in (x, y))
    for b, rows in enumerate(idx):
        k, l = K.gram(x, "rbf", sigma=np.sqrt(s2x)), K.gram(y, "rbf", sigma=np.sqrt(s2y))
        _close(out.samples[b], C.cka_from_grams(k[rows][:, rows], l[rows][:, rows], debiased=True), 1e-10)


# ---------------------------------------------------------------------------------------------------------------
# Mutual k-NN above EXACT_MAX_N: approximate neighbour sets with their recall
# ---------------------------------------------------------------------------------------------------------------


def test_exact_neighbours_of_sampled_rows_are_the_knn_mask_sets():
    x = _integers(9, 150, 3)  # many ties: the lower index wins, as in knn_mask
    mask = M.knn_mask(x, 7)
    rows = np.array([0, 3, 50, 149])
    got = M._exact_neighbours(M._unit_rows(x), rows, 7)
    for r, found in zip(rows, got):
        assert sorted(found) == list(np.flatnonzero(mask[r]))


def test_approximate_mutual_knn_is_close_to_exact_and_reports_its_recall():
    x, y = _latent(10, 600, 24, 12)
    exact = M.mutual_knn(x, y, 10)
    assert M.mutual_knn(x, y, 10, exact_max_n=600) == exact  # at the threshold: still exact
    approx = M.mutual_knn_approx(x, y, 10, check=600)
    assert M.mutual_knn(x, y, 10, exact_max_n=599) == approx.value
    assert approx.checked == 600 and approx.recall_x > 0.9 and approx.recall_y > 0.9
    # the value moves by at most the neighbours the approximate sets miss
    assert abs(approx.value - exact) <= (1 - approx.recall_x) + (1 - approx.recall_y) + 1e-12
    # the recall is the overlap with knn_mask's exact sets
    nx = M._approx_neighbours(M._unit_rows(x), 10)
    mask = M.knn_mask(x, 10)
    assert approx.recall_x == pytest.approx(np.mean([mask[i, nx[i]].sum() / 10 for i in range(600)]), abs=1e-12)


def test_approximate_mutual_knn_rejects_bad_options():
    x, y = _latent(11, 30, 4, 3)
    with pytest.raises(ValueError, match="exact_max_n"):
        M.mutual_knn(x, y, 3, exact_max_n=-1)
    with pytest.raises(ValueError, match="check must be a positive integer"):
        M.mutual_knn_approx(x, y, 3, check=0)
    with pytest.raises(ValueError, match="k must be an integer"):
        M.mutual_knn_approx(x, y, 30)


def test_u_centred_product_is_songs_formula_in_row_sums_totals_and_elementwise_products():
    # <U(K), U(L)> = tr(K~L~) - 2/(n-2) r_K.r_L + s_K s_L/((n-1)(n-2)) = n(n-3) HSIC_1: the sums the tiles accumulate
    x, y = _latent(12, 15, 4, 3)
    k, l = K.gram(x, "rbf"), K.gram(y, "linear")
    n = 15
    kt, lt = k - np.diag(np.diag(k)), l - np.diag(np.diag(l))
    rk, rl = kt.sum(axis=1), lt.sum(axis=1)
    sums = float(np.vdot(kt, lt)) - 2.0 / (n - 2) * float(rk @ rl) + rk.sum() * rl.sum() / ((n - 1) * (n - 2))
    _close(float(np.vdot(K.u_center_gram(k), K.u_center_gram(l))), sums, 1e-12)
    _close(sums / (n * (n - 3)), ref.hsic_unbiased_ref(k, l), 1e-12)
