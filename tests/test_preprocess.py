"""Stretching and base selection."""

from __future__ import annotations

import numpy as np
import pytest

from vlalign.methods import preprocess as P


def test_stretch_gives_unit_std_and_keeps_constant_columns():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((50, 4)) * np.array([1.0, 10.0, 0.1, 1.0])
    x[:, 3] = 7.0
    s = P.stretch(x)
    np.testing.assert_allclose(s[:, :3].std(axis=0), 1.0)
    np.testing.assert_array_equal(s[:, 3], 7.0)


def test_stretch_base_query_uses_both_sets():
    rng = np.random.default_rng(1)
    base, query = rng.standard_normal((20, 3)), 5 * rng.standard_normal((30, 3))
    b, q = P.stretch_base_query(base, query)
    np.testing.assert_allclose(np.vstack([b, q]).std(axis=0), 1.0)
    np.testing.assert_allclose(b, base / np.vstack([base, query]).std(axis=0))
    with pytest.raises(ValueError, match="same number of columns"):
        P.stretch_base_query(base, query[:, :2])


def test_random_base_is_seeded_sorted_and_distinct():
    a = P.select_base_random(100, 30, seed=4)
    assert np.array_equal(a, P.select_base_random(100, 30, seed=4))
    assert not np.array_equal(a, P.select_base_random(100, 30, seed=5))
    assert len(np.unique(a)) == 30 and np.all(np.diff(a) > 0)
    with pytest.raises(ValueError, match="size must be an integer in"):
        P.select_base_random(10, 11)


def test_kmeans_base_takes_the_sample_nearest_each_centre():
    from sklearn.cluster import KMeans

    rng = np.random.default_rng(2)
    x = rng.standard_normal((120, 5))
    idx = P.select_base_kmeans(x, 10, seed=3)
    assert np.array_equal(idx, P.select_base_kmeans(x, 10, seed=3))
    centres = KMeans(n_clusters=10, random_state=3, n_init="auto").fit(x).cluster_centers_
    nearest = {int(np.argmin(((x - c) ** 2).sum(axis=1))) for c in centres}
    assert set(idx.tolist()) == nearest
    assert len(idx) == 10


def test_kmeans_base_tops_up_when_centres_share_a_nearest_sample():
    rng = np.random.default_rng(3)
    x = np.vstack([np.zeros((40, 3)), rng.standard_normal((3, 3)) + 10])  # only 4 distinct points
    idx = P.select_base_kmeans(x, 8, seed=0)
    assert len(idx) == 8 and len(np.unique(idx)) == 8
    assert np.array_equal(idx, P.select_base_kmeans(x, 8, seed=0))


def test_select_base_dispatches_on_method():
    rng = np.random.default_rng(4)
    img, txt = rng.standard_normal((60, 4)), rng.standard_normal((60, 3))
    assert np.array_equal(P.select_base(img, txt, 8, "kmeans_text", seed=1), P.select_base_kmeans(txt, 8, seed=1))
    assert np.array_equal(P.select_base(img, txt, 8, "kmeans_image", seed=1), P.select_base_kmeans(img, 8, seed=1))
    assert np.array_equal(P.select_base(img, None, 8, "random", seed=1), P.select_base_random(60, 8, seed=1))
    with pytest.raises(ValueError, match="method must be"):
        P.select_base(img, txt, 8, "farthest")
    with pytest.raises(ValueError, match="text embeddings are required"):
        P.select_base(img, None, 8, "kmeans_text")
