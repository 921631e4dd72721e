"""Zero-shot classification with a labelled base set: argmax of references, QAP against class prototypes."""

from __future__ import annotations

import numpy as np
import pytest

from vlalign.methods import classify as Cl
from vlalign.methods.baselines import baseline_scores
from vlalign.methods.matching import qap_match

try:
    from tests import reference as ref
except ImportError:  # tests/ is not a package: pytest puts it on sys.path
    import reference as ref


def _unrelated_split(seed: int, m: int = 14, p: int = 9, c: int = 5, offset: float = 0.0):
    """Base pairs that share a latent factor, queries and class embeddings drawn the same way."""
    rng = np.random.default_rng(seed)
    n = m + max(p, c)
    z = rng.standard_normal((n, 4))
    x = z @ rng.standard_normal((4, 7)) + offset + 0.4 * rng.standard_normal((n, 7))
    y = np.tanh(z @ rng.standard_normal((4, 6))) - offset + 0.4 * rng.standard_normal((n, 6))
    return x[:m], y[:m], x[m : m + p], y[m : m + c]


def _assert_clear_argmax(scores: np.ndarray, gap: float = 1e-6) -> None:
    """The top two scores of every row differ by more than round-off, so argmax is well defined."""
    top2 = np.sort(scores, axis=1)[:, -2:]
    assert np.all(top2[:, 1] - top2[:, 0] > gap)


def _cos_ref(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    out = np.zeros((len(a), len(b)))
    for i in range(len(a)):
        for j in range(len(b)):
            out[i, j] = a[i] @ b[j] / np.sqrt((a[i] @ a[i]) * (b[j] @ b[j]))
    return out


@pytest.mark.parametrize("kernel", ["linear", "rbf"])
def test_local_cka_is_argmax_of_the_pairwise_reference(kernel):
    bx, by, qx, cy = _unrelated_split(0, offset=3.0)
    slow = ref.local_cka_pairwise(bx, by, qx, cy, kernel)
    _assert_clear_argmax(slow)
    pred = Cl.classify("local_cka", bx, by, qx, cy, kernel=kernel)
    assert pred.dtype == np.int64 and pred.shape == (9,)
    np.testing.assert_array_equal(pred, slow.argmax(axis=1))


@pytest.mark.parametrize("intercept", [True, False])
def test_linear_regression_is_argmax_of_a_least_squares_reference(intercept):
    bx, by, qx, cy = _unrelated_split(1, offset=3.0)
    a, b = (np.hstack([bx, np.ones((len(bx), 1))]), np.hstack([qx, np.ones((len(qx), 1))])) if intercept else (bx, qx)
    w = np.linalg.pinv(a) @ by  # minimum-norm least squares
    slow = _cos_ref(b @ w, cy)
    _assert_clear_argmax(slow)
    np.testing.assert_array_equal(Cl.classify("linear_regression", bx, by, qx, cy, intercept=intercept),
                                  slow.argmax(axis=1))


def test_intercept_option_reaches_the_regression():
    bx, by, qx, cy = _unrelated_split(1, offset=3.0)
    with_i = Cl.classify("linear_regression", bx, by, qx, cy)  # default intercept=True
    without = Cl.classify("linear_regression", bx, by, qx, cy, intercept=False)
    assert not np.array_equal(with_i, without)  # so the test above distinguishes the two


def test_relative_is_argmax_of_a_loop_reference():
    bx, by, qx, cy = _unrelated_split(2)
    slow = _cos_ref(_cos_ref(qx, bx), _cos_ref(cy, by))
    _assert_clear_argmax(slow)
    np.testing.assert_array_equal(Cl.classify("relative", bx, by, qx, cy), slow.argmax(axis=1))


@pytest.mark.parametrize("dim", [None, 3])
def test_procrustes_is_argmax_of_its_baseline_scores(dim):
    bx, by, qx, cy = _unrelated_split(3)
    opts = {} if dim is None else {"dim": dim}
    s = baseline_scores("procrustes", bx, by, qx, cy, **opts)
    _assert_clear_argmax(s)
    np.testing.assert_array_equal(Cl.classify("procrustes", bx, by, qx, cy, **opts), s.argmax(axis=1))


def _clustered(seed: int, c: int, per_class: int, m_per_class: int, *, related: bool, d1: int = 8, d2: int = 11):
    """Well-separated image clusters (centres 8 sd apart on average, noise sd 0.5). Related: text = image @ Q^T with
    Q (d2, d1) orthonormal columns (inner products preserved), class text = centre @ Q^T. Unrelated: every text
    embedding (base captions and classes) is independent noise."""
    rng = np.random.default_rng(seed)
    centres = 6.0 * rng.standard_normal((c, d1))
    base_lab = np.repeat(np.arange(c), m_per_class)
    query_lab = rng.permutation(np.repeat(np.arange(c), per_class))
    bx = centres[base_lab] + 0.5 * rng.standard_normal((len(base_lab), d1))
    qx = centres[query_lab] + 0.5 * rng.standard_normal((len(query_lab), d1))
    if related:
        q, _ = np.linalg.qr(rng.standard_normal((d2, d1)))
        by, cy = bx @ q.T, centres @ q.T
    else:
        by, cy = rng.standard_normal((len(base_lab), d2)), rng.standard_normal((c, d2))
    return bx, by, qx, cy, query_lab


def test_qap_recovers_classes_when_text_is_a_rotation_of_images():
    bx, by, qx, cy, lab = _clustered(4, c=6, per_class=20, m_per_class=4, related=True)
    pred = Cl.classify("qap", bx, by, qx, cy, restarts=10, seed=0)
    assert pred.shape == lab.shape and pred.dtype == np.int64
    assert Cl.top1_accuracy(pred, lab) >= 0.95


def test_qap_is_perm_of_the_kmeans_cluster_and_deterministic():
    from sklearn.cluster import KMeans

    bx, by, qx, cy, _ = _clustered(5, c=5, per_class=12, m_per_class=3, related=True)
    pred = Cl.classify("qap", bx, by, qx, cy, restarts=5, seed=3)
    km = KMeans(n_clusters=5, random_state=3, n_init="auto").fit(qx)
    perm = qap_match(bx, by, km.cluster_centers_, cy, restarts=5, seed=3, n_jobs=1).perm
    np.testing.assert_array_equal(pred, perm[km.labels_])
    assert sorted(set(pred.tolist())) == list(range(5))  # every cluster gets a different class
    np.testing.assert_array_equal(pred, Cl.classify("qap", bx, by, qx, cy, restarts=5, seed=3))


def test_qap_on_unrelated_data_is_near_chance():
    # Text carries no information about the images, so the labels are exchangeable with respect to the class
    # embeddings and E[accuracy] = 1/C = 0.2 per trial. One trial's accuracy is (about) the share of clusters
    # that are fixed points of the matching, sd ~ 1/C = 0.2; the mean of 10 trials has sd ~ 0.065. Bound:
    # mean < 0.2 + 0.3 (over 4 sd), far below the >= 0.95 of the related case.
    accs = []
    for t in range(10):
        bx, by, qx, cy, lab = _clustered(100 + t, c=5, per_class=10, m_per_class=4, related=False)
        accs.append(Cl.top1_accuracy(Cl.classify("qap", bx, by, qx, cy, restarts=4, seed=t), lab))
    assert np.mean(accs) < 0.5


def test_shape_errors():
    bx, by, qx, cy = _unrelated_split(6)
    with pytest.raises(ValueError, match="base_x and base_y must have the same number of rows"):
        Cl.classify("local_cka", bx, by[:-1], qx, cy)
    with pytest.raises(ValueError, match="query_x must have 7 columns"):
        Cl.classify("relative", bx, by, qx[:, :5], cy)
    with pytest.raises(ValueError, match="class_y must have 6 columns"):
        Cl.classify("qap", bx, by, qx, cy[:, :4])
    with pytest.raises(ValueError, match="class_y must have at least 2 rows"):
        Cl.classify("local_cka", bx, by, qx, cy[:1])
    with pytest.raises(ValueError, match="query_x contains NaN"):
        Cl.classify("local_cka", bx, by, np.full_like(qx, np.nan), cy)


def test_qap_needs_at_least_as_many_queries_as_classes():
    bx, by, qx, cy = _unrelated_split(7, p=4, c=5)
    with pytest.raises(ValueError, match="at least as many query images as classes"):
        Cl.classify("qap", bx, by, qx, cy)


def test_method_option_and_kernel_errors():
    bx, by, qx, cy = _unrelated_split(8)
    with pytest.raises(ValueError, match="method must be one of"):
        Cl.classify("cosine", bx, by, qx, cy)
    with pytest.raises(ValueError, match=r"options \['dim'\] are not accepted by method 'relative'"):
        Cl.classify("relative", bx, by, qx, cy, dim=2)
    with pytest.raises(ValueError, match="kernel must be one of"):
        Cl.classify("local_cka", bx, by, qx, cy, kernel="poly")
    for method in Cl.CLASSIFY_METHODS:  # the names the spec accepts (vlalign.engine.spec) are the ones classify runs
        assert Cl.classify(method, bx, by, qx, cy).shape == (len(qx),)


def test_top1_accuracy_and_its_errors():
    assert Cl.top1_accuracy(np.array([0, 1, 2, 2]), np.array([0, 1, 1, 2])) == 0.75
    with pytest.raises(ValueError, match="labels must have the shape of pred"):
        Cl.top1_accuracy(np.array([0, 1]), np.array([0, 1, 2]))
    with pytest.raises(ValueError, match="pred must be a non-empty 1-D"):
        Cl.top1_accuracy(np.array([], dtype=int), np.array([], dtype=int))
    with pytest.raises(ValueError, match="pred must hold integer"):
        Cl.top1_accuracy(np.array([0.0, 1.0]), np.array([0, 1]))
