"""Seeded QAP matching and assignment matching."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import quadratic_assignment

from vlalign.methods import matching as Mt
from vlalign.methods.cka import cka

try:
    from tests import reference as ref
except ImportError:  # tests/ is not a package: pytest puts it on sys.path
    import reference as ref


def _isometric(seed: int, m: int, q: int, d: int):
    """Y = X R with R orthogonal; base pairs noise-free; returns base_x, base_y, query_x, query_y."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((m + q, d))
    r, _ = np.linalg.qr(rng.standard_normal((d, d)))
    y = x @ r
    return x[:m], y[:m], x[m:], y[m:]


def _noisy(seed: int, m: int, q: int, noise: float):
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((m + q, 12))
    x = np.tanh(z @ rng.standard_normal((12, 20)))
    y = z @ rng.standard_normal((12, 16)) + noise * rng.standard_normal((m + q, 16))
    return x[:m], y[:m], x[m:], y[m:]


@pytest.mark.parametrize("solver", ["fast", "scipy"])
@pytest.mark.parametrize("kernel", ["linear", "rbf"])
def test_qap_recovers_the_permutation_of_isometric_spaces(solver, kernel):
    bx, by, qx, qy = _isometric(0, 25, 40, 10)
    truth = np.random.default_rng(1).permutation(40)
    res = Mt.qap_match(bx, by, qx, qy[truth], restarts=3, seed=0, solver=solver, kernel=kernel)
    # query_x[i] is query_y[truth][j] where truth[j] = i
    np.testing.assert_array_equal(truth[res.perm], np.arange(40))
    assert res.objective == pytest.approx(1.0, abs=1e-9)
    assert res.restarts == 3 and res.seconds > 0


def test_qap_same_seed_gives_the_same_perm_whatever_n_jobs():
    bx, by, qx, qy = _noisy(2, 20, 40, noise=2.0)
    a = Mt.qap_match(bx, by, qx, qy, restarts=6, seed=7, n_jobs=1)
    b = Mt.qap_match(bx, by, qx, qy, restarts=6, seed=7, n_jobs=2)
    np.testing.assert_array_equal(a.perm, b.perm)
    np.testing.assert_array_equal(a.objectives, b.objectives)
    assert a.objective == b.objective
    assert sorted(a.perm) == list(range(40))


def test_qap_objective_is_the_cka_of_the_matched_pairing():
    bx, by, qx, qy = _noisy(3, 20, 30, noise=1.0)
    res = Mt.qap_match(bx, by, qx, qy, restarts=4, seed=1)
    matched = cka(np.vstack([bx, qx]), np.vstack([by, qy[res.perm]]))
    assert res.objective == pytest.approx(matched, rel=1e-10)
    assert res.objective == res.objectives.max()


def test_fast_and_scipy_solvers_give_the_same_restarts():
    bx, by, qx, qy = _noisy(4, 15, 35, noise=3.0)
    fast = Mt.qap_match(bx, by, qx, qy, restarts=5, seed=3, solver="fast")
    slow = Mt.qap_match(bx, by, qx, qy, restarts=5, seed=3, solver="scipy")
    np.testing.assert_array_equal(fast.perm, slow.perm)
    np.testing.assert_allclose(fast.objectives, slow.objectives, rtol=1e-10)


def _symmetric_pair(seed: int, n: int):
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((n, n))
    b = rng.standard_normal((n, n))
    return a + a.T, b + b.T


def test_faq_seeded_follows_scipy_iterations_on_a_hard_instance():
    # random symmetric matrices, few seeds: FAQ needs many iterations, exercising every branch of the line search
    n, s = 60, 3
    a, b = _symmetric_pair(5, n)
    seeds = np.column_stack([np.arange(s), np.arange(s)])
    iters = []
    for r in range(4):
        u = np.random.default_rng(r).uniform(size=(n - s, n - s))
        p0 = (1.0 / (n - s) + Mt._doubly_stochastic(u, tol=1e-12)) / 2  # exact enough for scipy's P0 check
        col, fun, nit = Mt.faq_seeded(a, b, s, p0)
        res = quadratic_assignment(a, b, method="faq", options={"partial_match": seeds, "maximize": True, "P0": p0})
        np.testing.assert_array_equal(col, res.col_ind)
        assert fun == pytest.approx(res.fun, rel=1e-12)
        assert nit == res.nit
        iters.append(nit)
    assert max(iters) > 3


def test_randomized_start_is_scipys():
    n, s = 40, 4
    a, b = _symmetric_pair(6, n)
    p0 = Mt.randomized_start(n - s, np.random.default_rng(0))
    np.testing.assert_allclose(p0.sum(axis=0), 1, atol=1e-3)
    np.testing.assert_allclose(p0.sum(axis=1), 1, atol=1e-3)
    seeds = np.column_stack([np.arange(s), np.arange(s)])
    res = quadratic_assignment(a, b, method="faq", options={
        "partial_match": seeds, "maximize": True, "P0": "randomized", "rng": np.random.default_rng(0)})
    col, fun, nit = Mt.faq_seeded(a, b, s, p0)
    np.testing.assert_array_equal(col, res.col_ind)
    assert nit == res.nit


def test_restart_seeds_do_not_depend_on_the_restart_count():
    a = [s.generate_state(2).tolist() for s in Mt.restart_seeds(9, 3)]
    b = [s.generate_state(2).tolist() for s in Mt.restart_seeds(9, 10)]
    assert a == b[:3]


def test_qap_matches_the_papers_scipy_procedure():
    bx, by, qx, qy = _noisy(7, 20, 30, noise=2.0)
    rngs = [np.random.default_rng(s) for s in Mt.restart_seeds(0, 4)]
    perm_ref, obj_ref = ref.qap_paper(bx, by, qx, qy, rngs)
    res = Mt.qap_match(bx, by, qx, qy, restarts=4, seed=0, shuffle=False)
    np.testing.assert_array_equal(res.perm, perm_ref)
    assert res.objective == pytest.approx(obj_ref, rel=1e-10)


def test_qap_rejects_bad_inputs():
    bx, by, qx, qy = _isometric(0, 5, 6, 3)
    with pytest.raises(ValueError, match="full matching"):
        Mt.qap_match(bx, by, qx, qy[:5])
    with pytest.raises(ValueError, match="base_x and base_y"):
        Mt.qap_match(bx, by[:4], qx, qy)
    with pytest.raises(ValueError, match="query_y must have 3 columns"):
        Mt.qap_match(bx, by, qx, qy[:, :2])
    with pytest.raises(ValueError, match="restarts"):
        Mt.qap_match(bx, by, qx, qy, restarts=0)
    with pytest.raises(ValueError, match="solver"):
        Mt.qap_match(bx, by, qx, qy, solver="2opt")


def test_assignment_match_maximises_the_total_score():
    rng = np.random.default_rng(8)
    s = rng.standard_normal((12, 12))
    perm = Mt.assignment_match(s)
    np.testing.assert_array_equal(perm, ref.lsa_match_ref(s))
    s_diag = s + 10 * np.eye(12)
    assert Mt.matching_accuracy(Mt.assignment_match(s_diag)) == 1.0
    assert Mt.matching_accuracy(np.array([0, 2, 1, 3])) == 0.5
    with pytest.raises(ValueError, match="no more rows than columns"):
        Mt.assignment_match(np.ones((4, 3)))
