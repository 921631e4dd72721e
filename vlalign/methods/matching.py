"""Matching query images to query captions: seeded QAP (FAQ with seeded random restarts) and linear assignment.

Seeded QAP (Maniparambil et al. 2024, Sec. 4.1): with A the centred, normalised kernel of the images (base then
query) and B the same for the captions, find the permutation P of the captions that maximises

    tr(A P B P^T),   P = blockdiag(I_M, P_q)   (the M base pairs are seeds: fixed to themselves),

i.e. the pairing whose CKA is largest. Solved by FAQ (Vogelstein et al. 2015; Fishkind et al. 2019) from
randomised doubly-stochastic starts. The paper's code runs scipy's FAQ 500 times, unseeded; here every restart's
start is drawn from ``np.random.SeedSequence(seed).spawn(...)``, so the same seed gives the same answer, restarts
may run on a thread pool, and the default solver is an FAQ specialised to symmetric A, B (below) that follows
scipy's iterations exactly but needs one q x q x q product per iteration instead of six.
"""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from scipy.optimize import linear_sum_assignment, quadratic_assignment

from vlalign.methods.kernels import (
    Kernel,
    center_gram,
    gram,
    validate_kernel,
    validate_matrix,
    validate_split,
)

try:  # installed with scikit-learn; only used to hold BLAS to one thread per restart worker
    from threadpoolctl import threadpool_limits
except ImportError:  # pragma: no cover
    from contextlib import nullcontext

    def threadpool_limits(*args: object, **kwargs: object) -> nullcontext:  # type: ignore[misc]
        return nullcontext()

__all__ = [
    "QAPResult",
    "qap_kernel",
    "restart_seeds",
    "randomized_start",
    "faq_seeded",
    "qap_match",
    "assignment_match",
    "matching_accuracy",
]


@dataclass(frozen=True)
class QAPResult:
    """Result of ``qap_match``: perm[i] is the index in query_y matched to query_x[i]."""

    perm: np.ndarray
    objective: float  # tr(A P B P^T) of the best restart (= CKA of the matched base + query pairing)
    seconds: float  # wall time of the whole call
    restarts: int
    objectives: np.ndarray = field(repr=False)  # objective of every restart, in restart order
    best_restart: int = 0


# ---------------------------------------------------------------------------------------------------------------
# Building blocks
# ---------------------------------------------------------------------------------------------------------------


def qap_kernel(
    x: np.ndarray, kernel: Kernel = "linear", *, sigma: float | None = None, scale: float = 1.0
) -> np.ndarray:
    """A = H K H / ||H K H||_F: the centred kernel of X (n, d), normalised so that tr(A P B P^T) is the CKA of
    the pairing P (||HKH||_F = (n-1) sqrt(HSIC_0(K, K))). RBF bandwidth: the median rule over all n rows."""
    a = center_gram(gram(x, kernel, sigma=sigma, scale=scale), inplace=True)
    a /= np.linalg.norm(a)
    return a


def restart_seeds(seed: int, restarts: int) -> list[np.random.SeedSequence]:
    """One independent SeedSequence per restart: SeedSequence(seed).spawn(restarts + 1)[1:].

    Child 0 is kept for shuffling the query captions (``qap_match(shuffle=True)``). Children are defined by their
    index, so restart r gets the same seed whatever the total count.
    """
    return np.random.SeedSequence(seed).spawn(restarts + 1)[1:]


def _doubly_stochastic(p: np.ndarray, tol: float = 1e-3) -> np.ndarray:
    """Sinkhorn-Knopp balancing, as in scipy.optimize._qap (so that starts match scipy's bit for bit)."""
    c = 1 / p.sum(axis=0)
    r = 1 / (p @ c)
    p_eps = p
    for _ in range(1000):
        if (np.abs(p_eps.sum(axis=1) - 1) < tol).all() and (np.abs(p_eps.sum(axis=0) - 1) < tol).all():
            break
        c = 1 / (r @ p)
        r = 1 / (p @ c)
        p_eps = r[:, None] * p * c
    return p_eps


def randomized_start(n: int, rng: np.random.Generator) -> np.ndarray:
    """scipy's P0='randomized': P0 = (J + S) / 2, J = 11^T/n, S = Sinkhorn(U), U_ij ~ Uniform(0, 1) from ``rng``."""
    j = np.ones((n, n)) / n
    s = _doubly_stochastic(rng.uniform(size=(n, n)))
    return (j + s) / 2


@dataclass(frozen=True)
class _SeededBlocks:
    """The restart-independent parts of a seeded FAQ problem: A22, B22 and C = A21 B21^T."""

    a22: np.ndarray
    b22: np.ndarray
    c: np.ndarray

    @classmethod
    def of(cls, a: np.ndarray, b: np.ndarray, s: int) -> _SeededBlocks:
        a22 = np.ascontiguousarray(a[s:, s:])
        b22 = np.ascontiguousarray(b[s:, s:])
        return cls(a22, b22, a[s:, :s] @ b[s:, :s].T)


def _faq_iterations(blocks: _SeededBlocks, p0: np.ndarray, maxiter: int, tol: float) -> tuple[np.ndarray, int]:
    """FAQ iterations on the non-seed block; returns (col over the non-seeds, iterations). See ``faq_seeded``."""
    a22, b22, c = blocks.a22, blocks.b22, blocks.c
    q = a22.shape[0]
    p = np.array(p0, dtype=np.float64, copy=True)
    g = a22 @ p @ b22
    rows = np.arange(q)
    n_iter = 0
    for n_iter in range(1, maxiter + 1):
        grad = c + g
        grad *= 2
        _, cols = linear_sum_assignment(grad, maximize=True)
        g_q = float(g[rows, cols].sum())
        qbq = float(np.vdot(a22, b22[np.ix_(cols, cols)]))
        a_coef = float(np.vdot(g, p)) - 2 * g_q + qbq
        b_coef = 2 * (float(np.vdot(c, p)) - float(c[rows, cols].sum())) + 2 * (g_q - qbq)
        # maximise b t + a t^2 over t in [0, 1], with scipy's rule (its objective sign is -1 for maximisation)
        if a_coef < 0 and 0 <= -b_coef / (2 * a_coef) <= 1:
            t = -b_coef / (2 * a_coef)
        else:
            t = 1.0 if a_coef + b_coef > 0 else 0.0  # scipy: argmin([0, -(a + b)]), ties -> 0
        p_new = p * t
        p_new[rows, cols] += 1 - t
        done = np.linalg.norm(p - p_new) / np.sqrt(q) < tol
        if t != 1:
            g *= t
            g += (1 - t) * (a22 @ b22[cols])  # A22 Q B22, Q B22 = rows of B22 gathered
        p = p_new
        if done:
            break
    return _project(p), n_iter


def _project(p: np.ndarray) -> np.ndarray:
    """The permutation closest to the doubly stochastic P: argmax_perm <P, perm> (linear_sum_assignment).

    Shortcut, exact: if every row's largest entry exceeds 1/2 and those entries sit in distinct columns, that
    permutation is the unique optimum (any other permutation swaps some entry > 1/2 for one < 1/2 in its row).
    """
    am = p.argmax(axis=1)
    if p[np.arange(p.shape[0]), am].min() > 0.5 and np.unique(am).size == am.size:
        return am
    return linear_sum_assignment(p, maximize=True)[1]


def faq_seeded(
    a: np.ndarray, b: np.ndarray, n_seeds: int, p0: np.ndarray, *, maxiter: int = 30, tol: float = 0.03
) -> tuple[np.ndarray, float, int]:
    """FAQ for max tr(A P B P^T) over P = blockdiag(I_s, P_q), for symmetric A, B (n, n) whose first s = n_seeds
    rows/columns are the seeds. Same iterations as scipy's ``quadratic_assignment(method='faq')``, written for
    symmetric inputs. Blocks: A = [[A11, A21^T], [A21, A22]], same for B; C = A21 B21^T; G = A22 P B22.

        gradient        grad f(P) = 2 C + 2 G,  Q = argmax_{perm} <grad, Q>  (linear_sum_assignment)
        line search     f(Q + t R) = f(Q) + b t + a t^2,  R = P - Q, with
                        a = <G, P> - 2 <G, Q> + <A22, Q B22 Q^T>,  b = 2 <C, R> + 2 (<G, Q> - <A22, Q B22 Q^T>)
        update          P <- t P + (1 - t) Q,  G <- t G + (1 - t) A22 (Q B22)   (Q B22 is a row gather)
        stop            ||P_old - P_new||_F / sqrt(q) < tol, or maxiter iterations; then project P by LSA.

    One q x q x q product per iteration (scipy: six), since the <., Q> terms are gathers, and C is shared by all
    restarts of ``qap_match``. ``p0``: (q, q) doubly stochastic start. Returns (col: (n,) with col[i] the node of
    B matched to node i of A, objective tr(A P B P^T) = sum(A * B[col][:, col]), iterations).
    """
    a = validate_matrix(a, "a")
    b = validate_matrix(b, "b")
    if a.shape != b.shape or a.shape[0] != a.shape[1]:
        raise ValueError(f"a and b must be square and of the same shape, got {a.shape} and {b.shape}")
    q = a.shape[0] - n_seeds
    if not 0 <= n_seeds < a.shape[0]:
        raise ValueError(f"n_seeds must be in [0, {a.shape[0]}), got {n_seeds}")
    p0 = validate_matrix(p0, "p0")
    if p0.shape != (q, q):
        raise ValueError(f"p0 must have shape ({q}, {q}) (the non-seed block), got {p0.shape}")
    return _faq_solve(a, b, n_seeds, _SeededBlocks.of(a, b, n_seeds), p0, maxiter, tol)


def _faq_solve(
    a: np.ndarray, b: np.ndarray, s: int, blocks: _SeededBlocks, p0: np.ndarray, maxiter: int, tol: float
) -> tuple[np.ndarray, float, int]:
    col, n_iter = _faq_iterations(blocks, p0, maxiter, tol)
    perm = np.concatenate([np.arange(s), col + s])
    return perm, float(np.vdot(a, b[np.ix_(perm, perm)])), n_iter


def _scipy_faq(a: np.ndarray, b: np.ndarray, n_seeds: int, rng: np.random.Generator, maxiter: int, tol: float):
    seeds = np.column_stack([np.arange(n_seeds), np.arange(n_seeds)])
    res = quadratic_assignment(a, b, method="faq", options={
        "partial_match": seeds, "maximize": True, "P0": "randomized", "rng": rng, "maxiter": maxiter, "tol": tol})
    return np.asarray(res.col_ind), float(res.fun), int(res.nit)


# ---------------------------------------------------------------------------------------------------------------
# Seeded QAP matching
# ---------------------------------------------------------------------------------------------------------------


def qap_match(
    base_x: np.ndarray,
    base_y: np.ndarray,
    query_x: np.ndarray,
    query_y: np.ndarray,
    *,
    restarts: int = 20,
    seed: int = 0,
    kernel: Kernel = "linear",
    sigma: float | None = None,
    scale: float = 1.0,
    n_jobs: int | None = None,
    solver: Literal["fast", "scipy"] = "fast",
    shuffle: bool = True,
    maxiter: int = 30,
    tol: float = 0.03,
) -> QAPResult:
    """Seeded graph matching of query images to query captions: argmax_P tr(A P B P^T), P = blockdiag(I_M, P_q).

    A = ``qap_kernel``([base_x; query_x]) (M+p rows), B = ``qap_kernel``([base_y; query_y]); the M base pairs are
    seeds. FAQ from ``restarts`` randomised starts (scipy's P0='randomized'), restart r drawing from
    ``np.random.default_rng(restart_seeds(seed, restarts)[r])``; the largest objective wins (ties: lowest r).
    ``shuffle``: the query captions are first put in a random order (from child 0 of the same SeedSequence) so
    that no solver tie-break can favour the true (identity) order; the answer is mapped back. ``n_jobs``: threads
    for the restarts (None: the usable cores); with n_jobs > 1 BLAS is held to one thread per worker for the
    duration (threadpoolctl, process-wide). The answer does not depend on n_jobs. Pass n_jobs=1 where the caller
    already runs one QAP per core (e.g. several Dask workers on one machine). ``solver``: 'fast' (``faq_seeded``)
    or 'scipy' (scipy.optimize.quadratic_assignment; the same iterations, slower). Requires p == q (a full
    matching). Same seed -> identical perm.

    Returns QAPResult(perm, objective, seconds, restarts, objectives, best_restart), perm[i] = index in query_y
    matched to query_x[i].
    """
    t0 = time.perf_counter()
    validate_kernel(kernel, sigma, scale)
    base_x, base_y, query_x, query_y = validate_split(base_x, base_y, query_x, query_y)
    if query_x.shape[0] != query_y.shape[0]:
        raise ValueError(f"query_x and query_y must have the same number of rows for a full matching, got "
                         f"{query_x.shape[0]} and {query_y.shape[0]}")
    if not (isinstance(restarts, int | np.integer) and restarts >= 1):
        raise ValueError(f"restarts must be a positive integer, got {restarts!r}")
    if n_jobs is None:
        n_jobs = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if not (isinstance(n_jobs, int | np.integer) and n_jobs >= 1):
        raise ValueError(f"n_jobs must be a positive integer or None, got {n_jobs!r}")
    if solver not in ("fast", "scipy"):
        raise ValueError(f"solver must be 'fast' or 'scipy', got {solver!r}")

    m, q = base_x.shape[0], query_x.shape[0]
    order = (np.random.default_rng(np.random.SeedSequence(seed).spawn(1)[0]).permutation(q)
             if shuffle else np.arange(q))
    a = qap_kernel(np.vstack([base_x, query_x]), kernel, sigma=sigma, scale=scale)
    b = qap_kernel(np.vstack([base_y, query_y[order]]), kernel, sigma=sigma, scale=scale)
    seeds = restart_seeds(seed, restarts)
    blocks = _SeededBlocks.of(a, b, m) if solver == "fast" else None

    def one(r: int) -> tuple[np.ndarray, float]:
        rng = np.random.default_rng(seeds[r])
        if solver == "scipy":
            col, fun, _ = _scipy_faq(a, b, m, rng, maxiter, tol)
        else:
            col, fun, _ = _faq_solve(a, b, m, blocks, randomized_start(q, rng), maxiter, tol)
        return col, fun

    if n_jobs == 1 or restarts == 1:
        results = [one(r) for r in range(restarts)]
    else:
        # one BLAS thread per worker: the workers, not BLAS, use the cores (avoids oversubscription)
        with threadpool_limits(limits=1, user_api="blas"), ThreadPoolExecutor(min(n_jobs, restarts)) as pool:
            results = list(pool.map(one, range(restarts)))
    objectives = np.array([fun for _, fun in results])
    best = int(np.argmax(objectives))  # first maximum: lowest restart index
    col = results[best][0]
    perm = order[col[m:] - m]
    return QAPResult(perm, float(objectives[best]), time.perf_counter() - t0, int(restarts), objectives, best)


# ---------------------------------------------------------------------------------------------------------------
# Matching from a score matrix
# ---------------------------------------------------------------------------------------------------------------


def assignment_match(scores: np.ndarray) -> np.ndarray:
    """One-to-one matching that maximises sum_i S[i, perm[i]] (scipy.optimize.linear_sum_assignment).

    ``scores``: (p, q) with p <= q, S[i, j] = score of query image i with query caption j (local CKA or a
    baseline). Returns perm (p,), perm[i] = caption matched to image i.
    """
    s = validate_matrix(scores, "scores")
    if s.shape[0] > s.shape[1]:
        raise ValueError(f"scores must have no more rows than columns (each image gets a caption), got {s.shape}")
    rows, cols = linear_sum_assignment(s, maximize=True)
    perm = np.empty(s.shape[0], dtype=np.int64)
    perm[rows] = cols
    return perm


def matching_accuracy(perm: np.ndarray, truth: np.ndarray | None = None) -> float:
    """Share of queries matched to their true partner: mean_i [perm[i] == truth[i]], truth = identity by default."""
    perm = np.asarray(perm)
    if perm.ndim != 1 or perm.size == 0:
        raise ValueError(f"perm must be a non-empty 1-D array of indices, got shape {perm.shape}")
    truth = np.arange(perm.size) if truth is None else np.asarray(truth)
    if truth.shape != perm.shape:
        raise ValueError(f"truth must have the shape of perm {perm.shape}, got {truth.shape}")
    return float(np.mean(perm == truth))
