"""Baseline score matrices: linear regression, relative representations, Procrustes, cosine."""

from __future__ import annotations

import numpy as np
import pytest

from vlalign.methods import baselines as B
from vlalign.methods.matching import assignment_match, matching_accuracy
from vlalign.methods.retrieval import recall_at_k


def _rotated(seed: int, m: int, q: int, d: int):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((m + q, d))
    r, _ = np.linalg.qr(rng.standard_normal((d, d)))
    return x, x @ r


def test_cosine_similarity_matrix_matches_loops_and_handles_zero_rows():
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((5, 4)), rng.standard_normal((6, 4))
    a[2] = 0
    s = B.cosine_similarity_matrix(a, b)
    for i in range(5):
        for j in range(6):
            na, nb = np.linalg.norm(a[i]), np.linalg.norm(b[j])
            expected = 0.0 if na == 0 else a[i] @ b[j] / (na * nb)
            assert s[i, j] == pytest.approx(expected, abs=1e-12)


def test_linear_regression_recovers_a_linear_map():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((90, 6))
    y = x @ rng.standard_normal((6, 9)) + 2.0
    s = B.linear_regression_scores(x[:40], y[:40], x[40:], y[40:])
    assert s.shape == (50, 50)
    np.testing.assert_allclose(np.diag(s), 1.0, atol=1e-10)
    assert matching_accuracy(assignment_match(s)) == 1.0


@pytest.mark.parametrize("name", ["relative", "procrustes"])
def test_relative_and_procrustes_match_rotated_copies(name):
    x, y = _rotated(2, 30, 40, 8)
    s = B.baseline_scores(name, x[:30], y[:30], x[30:], y[30:])
    assert s.shape == (40, 40)
    assert matching_accuracy(assignment_match(s)) == 1.0
    assert recall_at_k(s).text_to_image[1] == 1.0


def test_procrustes_after_pca_to_a_common_dimension():
    rng = np.random.default_rng(3)
    z = rng.standard_normal((80, 5))
    u, _ = np.linalg.qr(rng.standard_normal((12, 5)))
    x = z @ u.T  # an isometric copy of z, rank 5 in 12 dims
    r, _ = np.linalg.qr(rng.standard_normal((5, 5)))
    y = np.hstack([z @ r, np.zeros((80, 2))])  # the same shape rotated, in 7 dims
    s = B.procrustes_scores(x[:40], y[:40], x[40:], y[40:], dim=5)
    np.testing.assert_allclose(np.diag(s), 1.0, atol=1e-8)
    with pytest.raises(ValueError, match="dim must be in"):
        B.procrustes_scores(x[:40], y[:40], x[40:], y[40:], dim=8)


def test_cosine_requires_one_space():
    x, y = _rotated(4, 5, 10, 6)
    np.testing.assert_allclose(np.diag(B.cosine_scores(x, x)), 1.0)
    with pytest.raises(ValueError, match="equal dimensions"):
        B.cosine_scores(x, y[:, :4])
    with pytest.raises(ValueError, match="name must be one of"):
        B.baseline_scores("cca", x, y, x, y)


def test_baselines_validate_their_inputs():
    x, y = _rotated(5, 10, 5, 4)
    with pytest.raises(ValueError, match="base_x and base_y"):
        B.linear_regression_scores(x[:10], y[:9], x[10:], y[10:])
    with pytest.raises(ValueError, match="query_y must have 4 columns"):
        B.relative_scores(x[:10], y[:10], x[10:], y[10:, :3])
