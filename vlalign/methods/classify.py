"""Zero-shot classification with a labelled (paired) base set (Maniparambil et al. CVPR 2024, Sec. 5).

The M base pairs (base_x (M, d1) image embeddings, base_y (M, d2) the embeddings of their captions) are the seeds
that relate the two unaligned spaces; each query image (query_x (p, d1)) is given one of C classes, each class
represented by one text embedding (class_y (C, d2), e.g. the prompt embedding averaged over templates by the
caller). Methods (``CLASSIFY_METHODS``):

- 'local_cka': pred_i = argmax_c localCKA(query_x_i, class_y_c) (``retrieval.local_cka_scores``);
- 'linear_regression', 'relative', 'procrustes': pred_i = argmax_c S_ic with S the baseline's (p, C) score matrix
  (``baselines.baseline_scores`` 'linear', 'relative', 'procrustes');
- 'qap': class prototypes matched by seeded QAP (transductive, see ``classify``).

Ties in an argmax go to the lowest class index (np.argmax).
"""

from __future__ import annotations

import warnings

import numpy as np

from vlalign.methods.baselines import baseline_scores
from vlalign.methods.kernels import Kernel, validate_kernel, validate_matrix
from vlalign.methods.matching import qap_match
from vlalign.methods.retrieval import local_cka_scores

__all__ = ["CLASSIFY_METHODS", "classify", "top1_accuracy"]

CLASSIFY_METHODS = ("local_cka", "linear_regression", "relative", "procrustes", "qap")

_BASELINE_NAME = {"linear_regression": "linear", "relative": "relative", "procrustes": "procrustes"}

# the keyword options each method accepts (passed on to the function named in the docstring of ``classify``)
_OPTIONS: dict[str, frozenset[str]] = {
    "local_cka": frozenset({"sigma", "scale"}),
    "linear_regression": frozenset({"intercept"}),
    "relative": frozenset(),
    "procrustes": frozenset({"dim"}),
    "qap": frozenset({"sigma", "scale", "solver", "shuffle", "maxiter", "tol"}),
}


def _validate_inputs(
    base_x: object, base_y: object, query_x: object, class_y: object
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    bx = validate_matrix(base_x, "base_x", min_rows=2)
    by = validate_matrix(base_y, "base_y", min_rows=2)
    if bx.shape[0] != by.shape[0]:
        raise ValueError(f"base_x and base_y must have the same number of rows (paired), got "
                         f"{bx.shape[0]} and {by.shape[0]}")
    qx = validate_matrix(query_x, "query_x")
    cy = validate_matrix(class_y, "class_y", min_rows=2)
    if qx.shape[1] != bx.shape[1]:
        raise ValueError(f"query_x must have {bx.shape[1]} columns like base_x (image space), got {qx.shape[1]}")
    if cy.shape[1] != by.shape[1]:
        raise ValueError(f"class_y must have {by.shape[1]} columns like base_y (text space), got {cy.shape[1]}")
    return bx, by, qx, cy


def _qap_classify(
    bx: np.ndarray, by: np.ndarray, qx: np.ndarray, cy: np.ndarray, *, kernel: Kernel, restarts: int, seed: int,
    n_jobs: int, options: dict[str, object],
) -> np.ndarray:
    # scikit-learn takes about a second to import: only the QAP method's k-means needs it
    from sklearn.cluster import KMeans
    from sklearn.exceptions import ConvergenceWarning

    p, c = qx.shape[0], cy.shape[0]
    if p < c:
        raise ValueError(f"method 'qap' needs at least as many query images as classes (one k-means cluster per "
                         f"class): query_x has {p} rows, class_y {c}")
    with warnings.catch_warnings():
        # fewer distinct points than classes: duplicate centres, matched like any other prototype
        warnings.simplefilter("ignore", ConvergenceWarning)
        km = KMeans(n_clusters=c, random_state=seed, n_init="auto").fit(qx)
    res = qap_match(bx, by, km.cluster_centers_, cy, restarts=restarts, seed=seed, kernel=kernel, n_jobs=n_jobs,
                    **options)
    return np.asarray(res.perm, dtype=np.int64)[km.labels_]


def classify(
    method: str,
    base_x: np.ndarray,
    base_y: np.ndarray,
    query_x: np.ndarray,
    class_y: np.ndarray,
    *,
    kernel: Kernel = "linear",
    restarts: int = 20,
    seed: int = 0,
    n_jobs: int = 1,
    **options: object,
) -> np.ndarray:
    """Predicted class index (int64 array (p,), values in [0, C)) for every query image.

    base_x (M, d1) and base_y (M, d2): paired base images and captions (M >= 2); query_x (p, d1): the images to
    classify; class_y (C, d2), C >= 2: one text embedding per class. ``method`` in ``CLASSIFY_METHODS``:

    - 'local_cka': pred_i = argmax_c S_ic, S = ``local_cka_scores(base_x, base_y, query_x, class_y, kernel)``;
      options sigma=, scale= (RBF bandwidth) are passed on.
    - 'linear_regression' / 'relative' / 'procrustes': pred_i = argmax_c S_ic, S = ``baseline_scores`` with name
      'linear' / 'relative' / 'procrustes'; options intercept= (linear_regression) and dim= (procrustes) are
      passed on. ``kernel`` is not used by these methods (they have none).
    - 'qap' (class prototypes matched by seeded QAP): sklearn KMeans(n_clusters=C, random_state=seed,
      n_init='auto') on query_x gives C image prototypes (the cluster centres) and a cluster per image; then
      ``qap_match(base_x, base_y, prototypes, class_y, restarts=restarts, seed=seed, kernel=kernel,
      n_jobs=n_jobs)`` (base pairs as seeds) gives perm, prototype c <-> class perm[c]; pred_i = perm[cluster_i].
      Transductive: it uses the cluster structure of all query images together (never their labels), so a
      query's prediction depends on the other queries. Every cluster gets a different class. Requires p >= C.
      Options sigma=, scale=, solver=, shuffle=, maxiter=, tol= are passed on to ``qap_match``.

    ``restarts`` and ``n_jobs`` are used by 'qap' only, ``seed`` by 'qap' only (k-means and QAP restarts).
    Ties in an argmax go to the lowest class index. Unknown methods or options raise ValueError.
    """
    if method not in CLASSIFY_METHODS:
        raise ValueError(f"method must be one of {CLASSIFY_METHODS}, got {method!r}")
    unknown = sorted(set(options) - _OPTIONS[method])
    if unknown:
        raise ValueError(f"options {unknown} are not accepted by method {method!r}; it accepts "
                         f"{sorted(_OPTIONS[method])}")
    validate_kernel(kernel)
    bx, by, qx, cy = _validate_inputs(base_x, base_y, query_x, class_y)
    if method == "qap":
        return _qap_classify(bx, by, qx, cy, kernel=kernel, restarts=restarts, seed=seed, n_jobs=n_jobs,
                             options=options)
    if method == "local_cka":
        scores = local_cka_scores(bx, by, qx, cy, kernel, **options)
    else:
        scores = baseline_scores(_BASELINE_NAME[method], bx, by, qx, cy, **options)
    return np.argmax(scores, axis=1).astype(np.int64)


def top1_accuracy(pred: np.ndarray, labels: np.ndarray) -> float:
    """Top-1 accuracy: (1/p) sum_i [pred_i == labels_i]. pred and labels: 1-D integer arrays of the same length
    p >= 1."""
    pred = np.asarray(pred)
    labels = np.asarray(labels)
    if pred.ndim != 1 or pred.size == 0:
        raise ValueError(f"pred must be a non-empty 1-D array of class indices, got shape {pred.shape}")
    if labels.shape != pred.shape:
        raise ValueError(f"labels must have the shape of pred {pred.shape}, got {labels.shape}")
    for name, a in (("pred", pred), ("labels", labels)):
        if not np.issubdtype(a.dtype, np.integer):
            raise ValueError(f"{name} must hold integer class indices, got dtype {a.dtype}")
    return float(np.mean(pred == labels))
