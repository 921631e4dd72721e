"""Protocol options: cosine base selection, stretching by a reference set, recall with ties in the partner's favour."""

from __future__ import annotations

import math

import numpy as np
import pytest

from vlalign.methods import preprocess as P
from vlalign.methods import retrieval as Rt

try:
    from tests import reference as ref
except ImportError:  # tests/ is not a package: pytest puts it on sys.path
    import reference as ref


# ---------------------------------------------------------------------------------------------------------------
# select_base_kmeans / select_base with metric='cosine'
# ---------------------------------------------------------------------------------------------------------------


def _cos_loop(a: np.ndarray, b: np.ndarray) -> float:
    na = math.sqrt(sum(float(v) ** 2 for v in a))
    nb = math.sqrt(sum(float(v) ** 2 for v in b))
    if na == 0 or nb == 0:
        return 0.0
    return sum(float(u) * float(v) for u, v in zip(a, b, strict=True)) / (na * nb)


def _select_cosine_ref(x: np.ndarray, size: int, seed: int) -> np.ndarray:
    """The definition with loops: for every k-means centre the sample of largest cosine (first maximum), then
    duplicates dropped in centre order and the top-up drawn exactly as documented."""
    from sklearn.cluster import KMeans

    centres = KMeans(n_clusters=size, random_state=seed, n_init="auto").fit(x).cluster_centers_
    chosen: list[int] = []
    for c in centres:
        best, arg = -math.inf, -1
        for i, row in enumerate(x):
            v = _cos_loop(row, c)
            if v > best:
                best, arg = v, i
        if arg not in chosen:
            chosen.append(arg)
    if len(chosen) < size:
        rest = np.setdiff1d(np.arange(len(x)), chosen)
        extra = np.random.default_rng(seed).choice(rest, size=size - len(chosen), replace=False)
        chosen += extra.tolist()
    return np.array(sorted(chosen))


def _varied_norms(seed: int, n: int = 90, d: int = 5) -> np.ndarray:
    # rows with very different norms around a common offset, so that nearest-by-distance and most-similar-by-
    # cosine pick different samples for some centres
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((n, d)) + 1.5) * rng.uniform(0.2, 5.0, size=(n, 1))


def test_cosine_selection_equals_loop_reference_and_differs_from_euclidean():
    x = _varied_norms(0)
    got = P.select_base_kmeans(x, 12, seed=1, metric="cosine")
    np.testing.assert_array_equal(got, _select_cosine_ref(x, 12, seed=1))
    assert not np.array_equal(got, P.select_base_kmeans(x, 12, seed=1))  # the option changes the answer


def test_cosine_selection_is_independent_of_the_block_size(monkeypatch):
    x = _varied_norms(2)
    whole = P.select_base_kmeans(x, 10, seed=0, metric="cosine")
    monkeypatch.setattr(P, "_COSINE_BLOCK_ENTRIES", 10 * 7)  # 7 samples per block, the last one partial
    np.testing.assert_array_equal(P.select_base_kmeans(x, 10, seed=0, metric="cosine"), whole)


def test_most_cosine_similar_breaks_ties_by_lowest_index_across_blocks(monkeypatch):
    # small integers: every product is exact and identical rows give bit-identical cosines (exact ties)
    rng = np.random.default_rng(3)
    x = rng.integers(-3, 4, size=(40, 3)).astype(float)
    x[[5, 17, 33]] = x[2]  # copies of row 2, in three different blocks
    x[0] = 0.0  # a zero row: cosine 0 with every centre
    centres = rng.integers(-3, 4, size=(6, 3)).astype(float)
    centres[0] = x[2]
    monkeypatch.setattr(P, "_COSINE_BLOCK_ENTRIES", 6 * 4)
    got = P._most_cosine_similar(centres, x)
    want = []
    for c in centres:
        cos = [_cos_loop(row, c) for row in x]
        want.append(cos.index(max(cos)))  # first maximum
    assert got.tolist() == want
    assert got[0] == 2


@pytest.mark.filterwarnings("ignore:Number of distinct clusters")  # the reference's own KMeans fit
def test_cosine_selection_tops_up_after_duplicates():
    rng = np.random.default_rng(4)
    x = np.vstack([np.ones((30, 3)), rng.standard_normal((3, 3)) + 10])  # few distinct directions
    got = P.select_base_kmeans(x, 8, seed=0, metric="cosine")
    assert len(np.unique(got)) == 8
    np.testing.assert_array_equal(got, _select_cosine_ref(x, 8, seed=0))


def test_select_base_passes_metric_and_validates_it():
    rng = np.random.default_rng(5)
    image, text = _varied_norms(5), rng.standard_normal((90, 4)) * rng.uniform(0.2, 5.0, size=(90, 1))
    np.testing.assert_array_equal(P.select_base(image, text, 9, "kmeans_image", seed=2, metric="cosine"),
                                  P.select_base_kmeans(image, 9, seed=2, metric="cosine"))
    np.testing.assert_array_equal(P.select_base(image, text, 9, "kmeans_text", seed=2, metric="cosine"),
                                  P.select_base_kmeans(text, 9, seed=2, metric="cosine"))
    # the default is unchanged: Euclidean
    np.testing.assert_array_equal(P.select_base(image, text, 9, seed=2), P.select_base_kmeans(image, 9, seed=2))
    with pytest.raises(ValueError, match="metric must be one of"):
        P.select_base_kmeans(image, 9, metric="manhattan")
    with pytest.raises(ValueError, match="metric must be one of"):
        P.select_base(image, text, 9, "random", metric="dot")


# ---------------------------------------------------------------------------------------------------------------
# stretch_by
# ---------------------------------------------------------------------------------------------------------------


def _stretch_by_ref(x: np.ndarray, r: np.ndarray) -> np.ndarray:
    out = np.empty_like(x)
    for j in range(x.shape[1]):
        col = [float(v) for v in r[:, j]]
        mean = sum(col) / len(col)
        std = math.sqrt(sum((v - mean) ** 2 for v in col) / len(col))  # ddof = 0
        for i in range(x.shape[0]):
            out[i, j] = x[i, j] / std if std > 0 else x[i, j]
    return out


def test_stretch_by_equals_loop_reference_with_a_constant_column():
    rng = np.random.default_rng(6)
    pool = rng.standard_normal((40, 4)) * np.array([1.0, 10.0, 0.1, 1.0])
    pool[:, 3] = 2.5  # zero std in the reference set: the column is left as it is
    x = pool[[1, 7, 30]] + rng.standard_normal((3, 4))
    got = P.stretch_by(x, pool)
    np.testing.assert_allclose(got, _stretch_by_ref(x, pool), rtol=1e-12, atol=0)
    np.testing.assert_array_equal(got[:, 3], x[:, 3])
    np.testing.assert_allclose(P.stretch_by(pool, pool), P.stretch(pool), rtol=1e-15, atol=0)


def test_stretch_by_errors():
    with pytest.raises(ValueError, match="x and ref must have the same number of columns"):
        P.stretch_by(np.ones((2, 3)), np.ones((4, 2)))
    with pytest.raises(ValueError, match="ref contains NaN"):
        P.stretch_by(np.ones((2, 2)), np.array([[1.0, np.nan], [0.0, 1.0]]))


# ---------------------------------------------------------------------------------------------------------------
# recall_at_k(ties=...)
# ---------------------------------------------------------------------------------------------------------------


def _recall_favour_ref(scores: np.ndarray, k: int, axis: int) -> float:
    s = scores if axis == 1 else scores.T
    hits = 0
    for i in range(s.shape[0]):
        better = sum(1 for j in range(s.shape[1]) if j != i and s[i, j] > s[i, i])
        hits += better < k
    return hits / s.shape[0]


def test_recall_ties_modes_match_loop_references_on_a_tied_matrix():
    rng = np.random.default_rng(7)
    s = rng.integers(0, 3, size=(15, 15)).astype(float)  # three values: ties everywhere
    ks = (1, 3, 5)
    fav = Rt.recall_at_k(s, ks, ties="favour")
    agn = Rt.recall_at_k(s, ks, ties="against")
    for k in ks:
        assert fav.image_to_text[k] == _recall_favour_ref(s, k, 1)
        assert fav.text_to_image[k] == _recall_favour_ref(s, k, 0)
        assert agn.image_to_text[k] == ref.recall_ref(s, k, 1)
        assert agn.text_to_image[k] == ref.recall_ref(s, k, 0)
    assert fav.image_to_text[1] > agn.image_to_text[1]  # the data do contain ties that matter
    assert Rt.recall_at_k(s, ks).as_dict() == agn.as_dict()  # the default is 'against'


def test_constant_scores_give_one_in_favour_and_zero_against():
    s = np.full((12, 12), 0.3)
    assert Rt.recall_at_k(s, ties="favour").as_dict() == {f"{d}_r{k}": 1.0 for d in ("i2t", "t2i") for k in (1, 5, 10)}
    assert Rt.recall_at_k(s, ties="against").as_dict() == {f"{d}_r{k}": 0.0 for d in ("i2t", "t2i") for k in (1, 5, 10)}


def test_ties_modes_agree_without_ties_and_bad_ties_raises():
    s = np.random.default_rng(8).standard_normal((20, 20))
    assert Rt.recall_at_k(s, ties="favour") == Rt.recall_at_k(s, ties="against")
    with pytest.raises(ValueError, match="ties must be one of"):
        Rt.recall_at_k(s, ties="favor")
