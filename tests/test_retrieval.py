"""Closed-form local CKA against augmented Grams built one pair at a time; retrieval recall."""

from __future__ import annotations

import numpy as np
import pytest

from vlalign.methods import retrieval as Rt
from vlalign.methods.cka import cka
from vlalign.methods.matching import assignment_match, matching_accuracy

try:
    from tests import reference as ref
except ImportError:  # tests/ is not a package: pytest puts it on sys.path
    import reference as ref


def _split(seed: int, m: int, p: int, q: int, offset: float = 0.0):
    rng = np.random.default_rng(seed)
    n = m + max(p, q)
    z = rng.standard_normal((n, 6))
    x = z @ rng.standard_normal((6, 9)) + offset + 0.3 * rng.standard_normal((n, 9))
    y = np.tanh(z @ rng.standard_normal((6, 7))) - offset + 0.3 * rng.standard_normal((n, 7))
    return x[:m], y[:m], x[m : m + p], y[m : m + q]


@pytest.mark.parametrize("kernel", ["linear", "rbf"])
@pytest.mark.parametrize("offset", [0.0, 25.0])
def test_local_cka_closed_form_equals_pairwise_definition(kernel, offset):
    bx, by, qx, qy = _split(0, 16, 7, 9, offset)
    fast = Rt.local_cka_scores(bx, by, qx, qy, kernel)
    slow = ref.local_cka_pairwise(bx, by, qx, qy, kernel)
    assert fast.shape == (7, 9)
    np.testing.assert_allclose(fast, slow, rtol=1e-8, atol=0)


def test_local_cka_entry_is_cka_of_the_augmented_sets_for_linear():
    bx, by, qx, qy = _split(1, 12, 4, 4)
    s = Rt.local_cka_scores(bx, by, qx, qy)
    for i, j in [(0, 0), (1, 3), (3, 2)]:
        expected = cka(np.vstack([bx, qx[i : i + 1]]), np.vstack([by, qy[j : j + 1]]))
        assert s[i, j] == pytest.approx(expected, rel=1e-10)


@pytest.mark.parametrize("options", [{"scale": 0.5}, {"sigma": 2.0}])
def test_local_cka_rbf_bandwidth_options(options):
    bx, by, qx, qy = _split(2, 14, 5, 6)
    fast = Rt.local_cka_scores(bx, by, qx, qy, "rbf", **options)
    slow = ref.local_cka_pairwise(bx, by, qx, qy, "rbf", **options)
    np.testing.assert_allclose(fast, slow, rtol=1e-8, atol=0)


@pytest.mark.parametrize("kernel", ["linear", "rbf"])
def test_local_cka_invariant_to_rotating_one_space(kernel):
    bx, by, qx, qy = _split(3, 15, 6, 6)
    r, _ = np.linalg.qr(np.random.default_rng(0).standard_normal((7, 7)))
    a = Rt.local_cka_scores(bx, by, qx, qy, kernel)
    b = Rt.local_cka_scores(bx, 2.0 * by @ r, qx, 2.0 * qy @ r, kernel)
    np.testing.assert_allclose(a, b, rtol=1e-9)


def test_local_cka_finds_partners_of_isometric_copies():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((60, 8))
    r, _ = np.linalg.qr(rng.standard_normal((8, 8)))
    y = x @ r
    s = Rt.local_cka_scores(x[:30], y[:30], x[30:], y[30:])
    assert matching_accuracy(assignment_match(s)) == 1.0
    assert Rt.recall_at_k(s).image_to_text[1] == 1.0


def test_local_cka_rejects_mismatched_inputs():
    bx, by, qx, qy = _split(5, 10, 3, 3)
    with pytest.raises(ValueError, match="base_x and base_y"):
        Rt.local_cka_scores(bx, by[:9], qx, qy)
    with pytest.raises(ValueError, match="query_x must have 9 columns"):
        Rt.local_cka_scores(bx, by, qx[:, :3], qy)
    with pytest.raises(ValueError, match="query_y contains NaN"):
        Rt.local_cka_scores(bx, by, qx, np.full_like(qy, np.nan))


def test_recall_at_k_matches_loop_reference_with_ties():
    rng = np.random.default_rng(6)
    s = rng.integers(0, 4, size=(20, 20)).astype(float)  # many ties
    res = Rt.recall_at_k(s, ks=(1, 3, 5))
    for k in (1, 3, 5):
        assert res.image_to_text[k] == ref.recall_ref(s, k, axis=1)
        assert res.text_to_image[k] == ref.recall_ref(s, k, axis=0)
    assert set(res.as_dict()) == {"i2t_r1", "i2t_r3", "i2t_r5", "t2i_r1", "t2i_r3", "t2i_r5"}


def test_recall_extremes():
    assert Rt.recall_at_k(np.eye(12)).as_dict() == {f"{d}_r{k}": 1.0 for d in ("i2t", "t2i") for k in (1, 5, 10)}
    assert Rt.recall_at_k(np.ones((12, 12))).image_to_text[10] == 0.0  # ties count against the partner
    with pytest.raises(ValueError, match="square"):
        Rt.recall_at_k(np.ones((3, 4)))
