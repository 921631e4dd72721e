"""Permutation calibration: the fast permuted values equal a recomputation on y[perm] for every measure and every
permutation, the definitions of calibrated-similarity 0.1.1 (tau, p, calibrated), the layer-search correction,
and reproducible seeds."""

from __future__ import annotations

import math

import numpy as np
import pytest

from vlalign.methods.calibration import (
    calibrate,
    calibrated_score,
    null_threshold,
    permutation_p_value,
    permutations,
    permuted_values,
)
from vlalign.methods.registry import measure

CASES = [
    ("cka", {}),  # linear, feature space (d1 d2 <= 64 n)
    ("cka", {"debiased": True}),
    ("cka", {"kernel": "rbf"}),
    ("cka", {"kernel": "rbf", "debiased": True}),
    ("cka", {"kernel": "rbf", "sigma": 2.0}),
    ("mutual_knn", {"k": 3}),
    ("cycle_knn", {"k": 3}),
    ("cycle_knn", {"k": 2, "normalize": False}),
    ("cknna", {"k": 4}),
    ("cknna", {"k": 5, "unbiased": False}),
    ("cknna", {"k": None}),
    ("rsa", {}),
    ("rsa", {"distance": "euclidean"}),
    ("rsa", {"distance": "cosine"}),
    ("svcca", {}),
    ("svcca", {"keep_variance": 0.8}),
    ("svcca", {"dims": 3, "standardize": True}),
]


def _pair(n=30, d1=6, d2=5, noise=0.7, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d1))
    y = x[:, :d2] @ rng.standard_normal((d2, d2)) + noise * rng.standard_normal((n, d2))
    return x, y


@pytest.mark.parametrize(("name", "settings"), CASES, ids=[f"{n}-{s}" for n, s in CASES])
def test_fast_permuted_value_equals_recompute_on_permuted_rows(name, settings):
    x, y = _pair()
    perms = permutations(30, 12, seed=3)
    fast = permuted_values(name, x, y, perms, **settings)
    slow = np.array([measure(name, x, y[p], **settings) for p in perms])
    assert np.abs(fast - slow).max() < 1e-10


@pytest.mark.parametrize("debiased", [False, True])
def test_linear_cka_through_permuted_grams_equals_recompute(debiased):
    """d1 d2 > 64 n: the centred linear Gram is permuted instead of the features."""
    x, y = _pair(n=12, d1=40, d2=30)
    perms = permutations(12, 8, seed=1)
    fast = permuted_values("cka", x, y, perms, debiased=debiased)
    slow = np.array([measure("cka", x, y[p], debiased=debiased) for p in perms])
    assert np.abs(fast - slow).max() < 1e-10


@pytest.mark.parametrize(("name", "settings"), CASES[:1] + CASES[5:6] + CASES[8:9] + CASES[11:12] + CASES[14:15])
def test_grid_values_and_nulls_match_recompute_for_every_layer_pair(name, settings):
    x, y = _pair()
    rng = np.random.default_rng(9)
    xs = [x, np.tanh(x) + 0.1 * rng.standard_normal(x.shape)]
    ys = [y, y[:, :3] + 0.5 * rng.standard_normal((30, 3)), rng.standard_normal((30, 4))]
    cal = calibrate(name, xs, ys, K=6, seed=2, **settings)
    for i, a in enumerate(xs):
        for j, b in enumerate(ys):
            assert cal.values[i, j] == pytest.approx(measure(name, a, b, **settings), abs=1e-12)
            slow = [measure(name, a, b[p], **settings) for p in cal.perms]
            assert np.abs(cal.null[:, i, j] - slow).max() < 1e-10


def test_definitions_of_tau_p_and_calibrated():
    rng = np.random.default_rng(0)
    null = rng.uniform(0, 0.5, 200)
    for s in (0.01, 0.3, 0.49, 0.9):
        for alpha in (0.05, 0.1, 0.5):
            combined = sorted([s, *null])
            tau = combined[math.ceil((1 - alpha) * 201) - 1]
            assert null_threshold(s, null, alpha) == tau
            p = permutation_p_value(s, null)
            assert p == (1 + sum(v >= s for v in null)) / 201 and 0 < p <= 1
            want = min(max((s - tau) / (1 - tau), 0.0), 1.0)
            assert abs(calibrated_score(s, tau) - want) < 1e-12
            assert calibrated_score(s, tau, smax=None) == max(s - tau, 0.0)
    assert permutation_p_value(1.0, np.ones(9)) == 1.0  # ties count as ">="


def test_calibration_fields_follow_the_definitions():
    x, y = _pair(n=40)
    cal = calibrate("cka", [x, x[:, :3]], [y], K=50, alpha=0.1, seed=4)
    for i in range(2):
        s, null = cal.values[i, 0], cal.null[:, i, 0]
        assert cal.tau[i, 0] == null_threshold(s, null, 0.1)
        assert cal.p_value[i, 0] == (1 + np.sum(null >= s)) / 51
        assert abs(cal.calibrated[i, 0] - np.clip((s - cal.tau[i, 0]) / (1 - cal.tau[i, 0]), 0, 1)) < 1e-12
        assert cal.null_mean[i, 0] == pytest.approx(null.mean())
    tnull = cal.null.max(axis=(1, 2))
    assert cal.max_value == cal.values.max() == cal.values[cal.best]
    assert cal.max_p_value == (1 + np.sum(tnull >= cal.max_value)) / 51
    assert cal.max_tau == null_threshold(cal.max_value, tnull, 0.1)
    assert cal.max_p_value >= cal.p_value[cal.best]  # the search correction never lowers the p-value
    assert cal.max_tau >= cal.tau[cal.best]
    assert cal.p_value.min() == 1 / 51  # x and y are related: the observed CKA beats every permutation
    assert len(cal.records()) == 2 and sum(r["is_best"] for r in cal.records()) == 1


def test_null_is_chance_level_for_mutual_knn():
    """E[mutual_knn(x, y[perm])] = k / (n - 1) for any data (see measures.mutual_knn_shuffled)."""
    x, y = _pair(n=40)
    cal = calibrate("mutual_knn", x, y, K=400, seed=0, k=5)
    assert abs(cal.null_mean[0, 0] - 5 / 39) < 0.01


def test_seeds_are_reproducible_and_perms_can_be_injected():
    x, y = _pair()
    a = calibrate("rsa", x, y, K=20, seed=7)
    b = calibrate("rsa", x, y, K=20, seed=7)
    c = calibrate("rsa", x, y, K=20, seed=8)
    assert np.array_equal(a.perms, b.perms) and np.array_equal(a.null, b.null)
    assert not np.array_equal(a.perms, c.perms)
    rng = np.random.default_rng(7)
    assert np.array_equal(a.perms, np.stack([rng.permutation(30) for _ in range(20)]))
    d = calibrate("rsa", x, y, perms=a.perms, seed=None)
    assert np.array_equal(d.null, a.null) and d.K == 20 and d.seed is None


def test_calibrate_rejects_bad_arguments():
    x, y = _pair()
    with pytest.raises(ValueError, match="alpha"):
        calibrate("cka", x, y, alpha=1.0)
    with pytest.raises(ValueError, match="K must"):
        calibrate("cka", x, y, K=0)
    with pytest.raises(ValueError, match="ys\\[1\\] must have n = 30 rows"):
        calibrate("cka", [x], [y, y[:-1]])
    with pytest.raises(ValueError, match="perms must hold"):
        calibrate("cka", x, y, perms=np.zeros((3, 30), dtype=int))
    with pytest.raises(ValueError, match="unknown"):
        calibrate("svcca", x, y, k=3)
    with pytest.raises(ValueError, match="measure must be one of"):
        calibrate("nope", x, y)
    with pytest.raises(ValueError, match="xs must be"):
        calibrate("cka", [], y)


def test_matches_calibrated_similarity_with_the_same_permutations():
    """The package of Groger et al. (PyPI calibrated-similarity), when installed, on the same permutations."""
    cs = pytest.importorskip("calibrated_similarity")
    import torch  # noqa: PLC0415  (only with the optional package)

    x, y = _pair(n=40)
    xs, ys = [x, x ** 2], [y, y[:, :2]]
    cal = calibrate("cka", xs, ys, K=30, alpha=0.05, seed=1)

    def sim(a, b):
        return measure("cka", a.numpy(), b.numpy())

    def feeder():
        it = iter(cal.perms)
        return lambda n, device: torch.as_tensor(next(it))

    tx, ty = [torch.tensor(a) for a in xs], [torch.tensor(b) for b in ys]
    score, p, tau = cs.calibrate_layers(tx, ty, sim, agg="max", K=30, alpha=0.05, perm_fn=feeder())
    assert round(float(p) * 31) == round(cal.max_p_value * 31)  # theirs is float32: compare the counts
    assert float(tau) == pytest.approx(cal.max_tau, abs=1e-6)
    assert float(score) == pytest.approx(cal.max_calibrated, abs=1e-5)
    score, p, tau = cs.calibrate(tx[1], ty[0], sim, K=30, alpha=0.05, perm_fn=feeder())
    assert round(float(p) * 31) == round(cal.p_value[1, 0] * 31)
    assert float(tau) == pytest.approx(cal.tau[1, 0], abs=1e-6)
