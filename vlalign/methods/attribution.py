"""Feature-pair attributions for a dual encoder with integrated Jacobians (Moller et al. 2024,
"Explaining Vision-Language Similarities in Dual Encoders with Feature-Pair Attributions",
arXiv 2408.14153).

Model
-----
s(a, b) = f(a)^T g(b), where

- a is an intermediate image representation: the feature map (C, H, W) at the output of one block
  (stage) of the vision CNN (vlalign.encoders.differentiable.vision_parts);
- f maps a through the rest of the network (later blocks, head conv, global average pool) to the image
  embedding and, for an unaligned pair (base pairs given), through the affine map
  [h, 1] W fitted by least squares on the base pairs (image embeddings -> text embeddings, as in
  ``baselines.linear_regression_scores`` with intercept; the baseline then takes a cosine, the
  explained score is the plain dot product unless ``normalize_image=True``);
- b is the caption's token hidden states (T, hidden) at one transformer hidden-state index, and g maps them
  through the remaining layers, the sentence-transformers pooling and normalisation to the text embedding
  (vlalign.encoders.differentiable.TextTower).

References r_a, r_b are zero (a zero feature map, zero token states), or, with
``vision_reference="white"``, the feature map of a plain white image (the emoji background).

Integrated Jacobians: J_f_bar = sum_i w_i J_f(r_a + alpha_i (a - r_a)) over a quadrature rule on [0, 1]
(``steps`` nodes of ``rule`` 'graded' (default: midpoint in u, alpha = u^2), 'midpoint' or 'gauss'), likewise
J_g_bar, and

    A[p, t] = sum_{i in p} sum_{j in t} (a - r_a)_i (J_f_bar^T J_g_bar)_{ij} (b - r_b)_j
            = sum_k U[p, k] V[t, k],

p a spatial position (its channels summed), t a token (its hidden units summed). Completeness:
sum A = (J_f_bar (a - r_a))^T (J_g_bar (b - r_b)) -> (f(a) - f(r_a))^T (g(b) - g(r_b))
      = s(a, b) - s(r_a, b) - s(a, r_b) + s(r_a, r_b), exact in the limit of many steps; the
difference is reported as ``residual``.

Defaults and numerics (mobilenetv2 x minilm-l6 on emoji, 256 base pairs): vision_layer -1 (the last
block, a 7x7 map: f is then a per-position 1x1 conv + BN + ReLU6 + mean, cleanly localised maps) and
text_layer -1 (the input of the last transformer layer), 64 'graded' steps: relative residual
1e-4..2e-3. The 14x14 block 4 needs ~128 steps for ~2e-3 (ReLU6 kinks make the integrand piecewise
constant: O(1/N)); text layer 0 (embedding output) from zero states does not settle even at 64 steps.

Computation (torch.func, no hand-written derivatives): V (T, K) with one forward-mode pass
(``torch.func.jvp``) per (token, node), the direction being (b - r_b) masked to that token; then, rather
than forming U (P, K), which needs P forward-mode or K reverse-mode passes per node, each column
A[:, t] = sum_i w_i sum_channels (a - r_a) * (J_f(alpha_i)^T V[t]) is one reverse-mode pass
(``torch.func.vjp``) per (token, node) with cotangent V[t]. The cost is therefore 2 T N passes of the
two tails, batched over (token, node) in chunks, independent of the grid size and of K.

This module is the math only (arrays and tensors in, numbers out): the encoders as differentiable functions are
vlalign.encoders.differentiable, the explanation of an item and its table vlalign.engine.explain, the figure
vlalign.report.explain_figure.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from vlalign.methods.kernels import validate_matrix

__all__ = [
    "Explanation",
    "top_pairs",
    "SPECIAL_TOKENS",
    "fit_linear_map",
    "quadrature",
    "RULES",
    "DEFAULT_RULE",
    "integrated_pair_attributions",
    "DEFAULT_STEPS",
]

DEFAULT_STEPS = 64
DEFAULT_RULE = "graded"


@dataclass
class Explanation:
    """Feature-pair attributions of one (image, caption) pair.

    attributions: (P, T), P = H * W grid positions in row-major order, T tokens (special tokens
    included, as the pooling includes them). score = s(a, b); s_ra_b, s_a_rb, s_ra_rb: the reference
    terms; target = s(a,b) - s(r_a,b) - s(a,r_b) + s(r_a,r_b); residual = attributions.sum() - target."""

    attributions: np.ndarray
    grid: tuple[int, int]
    tokens: list[str]
    score: float
    s_ra_b: float
    s_a_rb: float
    s_ra_rb: float
    residual: float
    seconds: float
    steps: int
    rule: str
    vision: str
    text: str
    vision_layer: int
    text_layer: int
    caption: str = ""
    mapped: bool = True  # f includes the least-squares map fitted on base pairs
    vision_reference: str = "zero"
    image: np.ndarray | None = field(default=None, repr=False)  # (h, w, 3) uint8: what the network saw

    @property
    def target(self) -> float:
        return self.score - self.s_ra_b - self.s_a_rb + self.s_ra_rb

    @property
    def relative_residual(self) -> float:
        t = self.target
        return abs(self.residual) / abs(t) if t else float("inf")

    def token_maps(self) -> np.ndarray:
        """(T, H, W) attribution maps, one per token."""
        h, w = self.grid
        return self.attributions.T.reshape(len(self.tokens), h, w)


# ------------------------------------------------------------------ numerics
RULES = ("midpoint", "gauss", "graded")


def quadrature(steps: int, rule: str = DEFAULT_RULE) -> tuple[np.ndarray, np.ndarray]:
    """Nodes and weights (summing to 1) of an N-point rule on [0, 1]:

    'midpoint': alpha_i = (i + 1/2) / N, weights 1/N;
    'gauss': Gauss-Legendre (exact for polynomials of degree < 2N; no better than midpoint for the
    piecewise-constant Jacobians of a ReLU network);
    'graded': the midpoint rule in u with alpha = u^2 (alpha_i = ((i + 1/2) / N)^2, weights 2 u_i / N), nodes
    dense near the reference: along a path from zero token states the LayerNorms of a transformer change
    fastest near alpha = 0 (the states are then small next to the biases), where the uniform rules under-sample."""
    n = int(steps)
    if n < 1:
        raise ValueError(f"steps must be >= 1, got {steps!r}")
    if rule == "midpoint":
        return (np.arange(n) + 0.5) / n, np.full(n, 1.0 / n)
    if rule == "gauss":
        x, w = np.polynomial.legendre.leggauss(n)
        return (x + 1) / 2, w / 2
    if rule == "graded":
        u = (np.arange(n) + 0.5) / n
        return u**2, 2 * u / n
    raise ValueError(f"rule must be one of {RULES}, got {rule!r}")


def fit_linear_map(x_base: np.ndarray, y_base: np.ndarray) -> np.ndarray:
    """W (d1 + 1, d2) = argmin ||[x_base, 1] W - y_base||_F (minimum norm), as baselines.linear_regression_scores."""
    bx = validate_matrix(x_base, "x_base")
    by = validate_matrix(y_base, "y_base")
    if bx.shape[0] != by.shape[0]:
        raise ValueError(f"base pairs need as many image rows as caption rows, got {bx.shape[0]} and {by.shape[0]}")
    w, *_ = np.linalg.lstsq(np.hstack([bx, np.ones((bx.shape[0], 1))]), by, rcond=None)
    return w


def _chunks(n: int, size: int):
    for i in range(0, n, size):
        yield slice(i, min(n, i + size))


def integrated_pair_attributions(f, g, a, r_a, b, r_b, group_a, group_b, *, steps: int = DEFAULT_STEPS,
                                 rule: str = DEFAULT_RULE, chunk: int = 64):
    """A[p, t] for any differentiable f: a.shape -> (B, K) and g: b.shape -> (B, K) on batched inputs.

    a, r_a: (1, *A) tensors; b, r_b: (1, *B) tensors; group_a: callable (B, *A) -> (B, P) summing the
    features of each group (e.g. channels of a position); group_b: the T masks (T, *B) (1 on the
    features of token t). Returns A (P, T) float64 numpy and (f(a), f(r_a), g(b), g(r_b)) as numpy."""
    import torch  # heavy: only when attributions are computed
    from torch.func import jvp, vjp  # (torch, as above)

    nodes, weights = quadrature(steps, rule)
    da, db = a - r_a, b - r_b
    masks = group_b.to(b.dtype)
    n_tok, n = masks.shape[0], len(nodes)
    alpha = torch.as_tensor(nodes, dtype=a.dtype, device=a.device)
    wts = torch.as_tensor(weights, dtype=a.dtype, device=a.device)
    pairs_t = torch.arange(n_tok, device=a.device).repeat_interleave(n)  # (T*N,) token of each pass
    pairs_i = torch.arange(n, device=a.device).repeat(n_tok)  # (T*N,) node of each pass
    ab_shape = (1,) * (b.dim() - 1)
    aa_shape = (1,) * (a.dim() - 1)

    with torch.no_grad():
        fa, fr, gb, gr = f(a), f(r_a), g(b), g(r_b)
        # V[t] = sum_i w_i J_g(r_b + alpha_i db) (db * mask_t): forward mode, one pass per (t, i)
        v = torch.zeros(n_tok, gb.shape[-1], dtype=torch.float64, device=a.device)
        for sl in _chunks(n_tok * n, chunk):
            t, i = pairs_t[sl], pairs_i[sl]
            x = r_b + alpha[i].view(-1, *ab_shape) * db
            tangent = db * masks[t]
            _, out = jvp(g, (x,), (tangent,))
            v.index_add_(0, t, out.double() * wts[i].double()[:, None])
        # A[:, t] = sum_i w_i group_a(da * J_f(r_a + alpha_i da)^T V[t]): reverse mode, one pass per (t, i)
        attr = None
        vf = v.to(fa.dtype)
        for sl in _chunks(n_tok * n, chunk):
            t, i = pairs_t[sl], pairs_i[sl]
            x = r_a + alpha[i].view(-1, *aa_shape) * da
            _, pullback = vjp(f, x)
            (grad,) = pullback(vf[t] * wts[i][:, None])
            contrib = group_a(grad * da).double()  # (B, P)
            if attr is None:
                attr = torch.zeros(n_tok, contrib.shape[1], dtype=torch.float64, device=a.device)
            attr.index_add_(0, t, contrib)
    out = [z.detach().double().cpu().numpy()[0] for z in (fa, fr, gb, gr)]
    return attr.T.cpu().numpy(), out


# ------------------------------------------------------------------ reading an explanation
SPECIAL_TOKENS = {"[CLS]", "[SEP]", "[PAD]", "<s>", "</s>", "<pad>"}  # left out of top pairs and, optionally, figures


def top_pairs(expl: Explanation, n: int = 10, *, by: str = "value", special: bool = False) -> list[tuple]:
    """The n strongest (row, col, token, value) pairs: by 'value' (most positive first), 'abs' or 'negative'.
    special=False leaves out special tokens ([CLS], [SEP], ...)."""
    a = expl.attributions
    h, w = expl.grid
    keep = [t for t, tok in enumerate(expl.tokens) if special or tok not in SPECIAL_TOKENS]
    sub = a[:, keep]
    key = {"value": -sub, "abs": -np.abs(sub), "negative": sub}.get(by)
    if key is None:
        raise ValueError(f"by must be 'value', 'abs' or 'negative', got {by!r}")
    order = np.argsort(key, axis=None, kind="stable")[: int(n)]
    out = []
    for flat in order:
        p, j = divmod(int(flat), len(keep))
        t = keep[j]
        out.append((p // w, p % w, expl.tokens[t], float(a[p, t])))
    return out
