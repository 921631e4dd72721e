"""Mutual k-NN alignment against a loop-and-sorted() reference."""

from __future__ import annotations

import math

import numpy as np
import pytest

from vlalign.methods import measures as Ms


def _neighbours_ref(a: np.ndarray, k: int) -> list[set[int]]:
    """N(i) by definition: normalise each row, score every j != i by the inner product (explicit sums), sort by
    (-score, j) with sorted() and keep the first k (ties -> lower index)."""
    n, d = a.shape
    unit = []
    for i in range(n):
        norm = math.sqrt(sum(float(v) ** 2 for v in a[i]))
        unit.append([float(v) / norm if norm > 0 else 0.0 for v in a[i]])
    out = []
    for i in range(n):
        scored = [(-sum(unit[i][t] * unit[j][t] for t in range(d)), j) for j in range(n) if j != i]
        out.append({j for _, j in sorted(scored)[:k]})
    return out


def mutual_knn_ref(x: np.ndarray, y: np.ndarray, k: int) -> float:
    nx, ny = _neighbours_ref(x, k), _neighbours_ref(y, k)
    return sum(len(nx[i] & ny[i]) / k for i in range(len(nx))) / len(nx)


def _related(seed: int, n: int, d1: int = 6, d2: int = 5, noise: float = 0.7):
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n, 4))
    x = z @ rng.standard_normal((4, d1)) + noise * rng.standard_normal((n, d1))
    y = np.tanh(z @ rng.standard_normal((4, d2))) + noise * rng.standard_normal((n, d2))
    return x, y


@pytest.mark.parametrize("k", [1, 3, 7, 29])
def test_mutual_knn_equals_loop_reference(k):
    x, y = _related(0, 30)
    got = Ms.mutual_knn(x, y, k)
    assert got == pytest.approx(mutual_knn_ref(x, y, k), abs=1e-12)


def test_mutual_knn_is_neither_trivial_nor_perfect_on_the_reference_data():
    # guards the test above: the reference data lie strictly between chance and perfect agreement
    x, y = _related(0, 30)
    assert 0.0 < mutual_knn_ref(x, y, 3) < 1.0


def test_ties_are_broken_by_the_lower_index():
    # rows are +-unit basis vectors: the norms are exactly 1 and every inner product is exactly -1, 0 or 1, so
    # most similarities tie and only the tie-break decides the neighbour sets
    rng = np.random.default_rng(1)
    n, d = 25, 4

    def signed_basis():
        a = np.zeros((n, d))
        a[np.arange(n), rng.integers(0, d, n)] = rng.choice([-1.0, 1.0], n)
        return a

    x, y = signed_basis(), 3.0 * signed_basis()
    for k in (1, 4, 10):
        assert Ms.mutual_knn(x, y, k) == pytest.approx(mutual_knn_ref(x, y, k), abs=1e-12)
        mask = Ms.knn_mask(x, k)
        ref = _neighbours_ref(x, k)
        assert [set(np.flatnonzero(row).tolist()) for row in mask] == ref


def test_blocked_path_equals_single_block(monkeypatch):
    x, y = _related(2, 57)
    whole = Ms.mutual_knn(x, y, 5)
    monkeypatch.setattr(Ms, "_BLOCK_ENTRIES", 57 * 4)  # 4 rows per block, the last block partial
    assert Ms.mutual_knn(x, y, 5) == whole
    assert whole == pytest.approx(mutual_knn_ref(x, y, 5), abs=1e-12)


def test_identical_pairs_give_one():
    x, _ = _related(3, 40)
    assert Ms.mutual_knn(x, x, 5) == 1.0
    assert Ms.mutual_knn(x, x.copy(), 39) == 1.0


def test_invariant_to_row_scaling_and_rotation():
    x, y = _related(4, 60)
    rng = np.random.default_rng(5)
    q, _ = np.linalg.qr(rng.standard_normal((6, 6)))  # orthogonal
    scale = rng.uniform(0.1, 10.0, size=(60, 1))
    base = Ms.mutual_knn(x, y, 6)
    assert Ms.mutual_knn(scale * x, y, 6) == pytest.approx(base, abs=1e-12)
    assert Ms.mutual_knn(x @ q, y, 6) == pytest.approx(base, abs=1e-12)
    assert Ms.mutual_knn(y, x, 6) == pytest.approx(base, abs=1e-12)  # symmetric in its two arguments


def test_chance_level_for_independent_data():
    # For x and y independent with i.i.d. rows, each j != i is in N_x(i) with probability k/(n-1) and,
    # independently, in N_y(i) with the same probability, so E[score] = k/(n-1) exactly (= 0.0251 here).
    # The per-sample overlap is ~hypergeometric (k draws from n-1 with k marked): sd of |∩|/k ~ 0.05, so the
    # mean over n = 400 samples has sd ~ 0.0025 if they were independent; neighbour sets overlap across samples,
    # so allow ~6x that: |score - k/(n-1)| < 0.015. A real dependence (test below) is far outside this band.
    n, k = 400, 10
    rng = np.random.default_rng(6)
    for _ in range(3):
        x, y = rng.standard_normal((n, 20)), rng.standard_normal((n, 12))
        assert abs(Ms.mutual_knn(x, y, k) - k / (n - 1)) < 0.015


def test_shuffled_is_the_measure_with_permuted_rows_and_sits_at_chance():
    x, y = _related(7, 400, noise=0.3)
    perm = np.random.default_rng(11).permutation(400)
    assert Ms.mutual_knn_shuffled(x, y, 10, seed=11) == Ms.mutual_knn(x, y[perm], 10)
    # paired: far outside the chance band justified above (several band widths); shuffled: inside it
    assert Ms.mutual_knn(x, y, 10) > 10 / 399 + 3 * 0.015
    assert abs(Ms.mutual_knn_shuffled(x, y, 10, seed=11) - 10 / 399) < 0.015


@pytest.mark.parametrize("k", [0, -1, 20, 2.0, True, "3", None])
def test_bad_k_raises(k):
    x, y = _related(8, 20)
    with pytest.raises(ValueError, match="k must be an integer in"):
        Ms.mutual_knn(x, y, k)
    with pytest.raises(ValueError, match="k must be an integer in"):
        Ms.mutual_knn_shuffled(x, y, k)


def test_bad_inputs_raise():
    x, y = _related(9, 20)
    with pytest.raises(ValueError, match="same number of rows"):
        Ms.mutual_knn(x, y[:-1], 3)
    bad = x.copy()
    bad[3, 1] = np.nan
    with pytest.raises(ValueError, match="x contains NaN"):
        Ms.mutual_knn(bad, y, 3)
    with pytest.raises(ValueError, match="y contains NaN"):
        Ms.mutual_knn(x, np.where(y > 1, np.inf, y), 3)
    with pytest.raises(ValueError, match="2-D"):
        Ms.mutual_knn(x[:, 0], y, 3)
    with pytest.raises(ValueError, match="at least 2 rows"):
        Ms.mutual_knn(x[:1], y[:1], 1)
