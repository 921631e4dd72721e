"""Feature-pair attributions for a dual encoder with integrated Jacobians (Moller et al. 2024,
"Explaining Vision-Language Similarities in Dual Encoders with Feature-Pair Attributions",
arXiv 2408.14153).

Model
-----
s(a, b) = f(a)^T g(b), where

- a is an intermediate image representation: the feature map (C, H, W) at the output of one block
  (stage) of the vision CNN, ``vision_layer`` indexing ``model.blocks`` of the timm EfficientNet-family
  models (mobilenetv2, efficientnet-lite*, timm/ hub names of that family);
- f maps a through the rest of the network (later blocks, head conv, global average pool) to the image
  embedding and, for an unaligned pair (``base_pairs`` given), through the affine map
  [h, 1] W fitted by least squares on the base pairs (image embeddings -> text embeddings, as in
  ``baselines.linear_regression_scores`` with intercept; the baseline then takes a cosine, the
  explained score is the plain dot product unless ``normalize_image=True``);
- b is the caption's token hidden states (T, hidden) at transformer hidden-state index ``text_layer``
  (0 = embedding output, i = output of layer i), and g maps them through the remaining layers, the
  sentence-transformers pooling and normalisation to the text embedding.

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
"""
from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pyarrow as pa

__all__ = [
    "Explanation",
    "explain_pair",
    "top_pairs",
    "plot_explanation",
    "explanation_table",
    "EXPLANATION_SCHEMA",
    "fit_linear_map",
    "quadrature",
    "RULES",
    "DEFAULT_RULE",
    "integrated_pair_attributions",
    "explain_items",
    "DEFAULT_STEPS",
    "DEFAULT_VISION_LAYER",
    "DEFAULT_TEXT_LAYER",
]

DEFAULT_STEPS = 64
DEFAULT_RULE = "graded"
# index into timm's model.blocks, negative from the end: -1 = the last block (mobilenetv2: 320 x 7 x 7 at
# 224 px; f is then the 1x1 head conv, BN, ReLU6 and the average pool, applied position by position).
# 4 = the last 14 x 14 stage: finer regions, but f crosses many more ReLU6 kinks and needs ~4x the steps.
DEFAULT_VISION_LAYER = -1
# hidden-state index of the text transformer, negative from the end: -1 = the input of the last layer
# (minilm-l6: hidden_states[5]). The last layer's output itself is excluded (see _TextTower).
DEFAULT_TEXT_LAYER = -1

from vlalign.lake.schemas import ATTRIBUTIONS_SCHEMA as EXPLANATION_SCHEMA  # noqa: E402  (the lake's `attributions` columns)


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
    from vlalign.methods.kernels import validate_matrix

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
    import torch
    from torch.func import jvp, vjp

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


# ------------------------------------------------------------------ the two towers
def _vision_parts(enc, layer: int | None):
    """(features up to the block, tail from the block to the pooled embedding, resolved layer index)."""
    m = enc.model
    needed = ("conv_stem", "bn1", "blocks", "conv_head", "bn2", "forward_head")
    if not all(hasattr(m, k) for k in needed):
        from vlalign.encoders import EncoderError

        raise EncoderError(f"{enc.spec.name}: explanations need a timm EfficientNet-family model "
                           "(conv_stem, blocks, conv_head); this one is " + type(m).__name__)
    n = len(m.blocks)
    li = DEFAULT_VISION_LAYER if layer is None else int(layer)
    if li < 0:
        li += n
    if not 0 <= li < n:
        raise ValueError(f"vision_layer must index one of the {n} blocks of {enc.spec.name} (0..{n - 1}), got {layer!r}")

    def head(x):
        x = m.bn1(m.conv_stem(x))
        for blk in m.blocks[: li + 1]:
            x = blk(x)
        return x

    def tail(x):
        for blk in m.blocks[li + 1:]:
            x = blk(x)
        return m.forward_head(m.bn2(m.conv_head(x)), pre_logits=True)

    return head, tail, li


def _text_layers(auto_model) -> tuple[Any, Any]:
    """(embedding module, list of transformer layers) of a BERT-like transformers model."""
    emb = getattr(auto_model, "embeddings", None)
    for path in ("encoder.layer", "transformer.layer", "layers", "encoder.layers"):
        obj = auto_model
        for part in path.split("."):
            obj = getattr(obj, part, None)
        if obj is not None and emb is not None:
            return emb, obj
    from vlalign.encoders import EncoderError

    raise EncoderError(f"explanations need a BERT-like text model (embeddings + encoder layers), not {type(auto_model).__name__}")


class _TextTower:
    """g: token states at hidden-state index `layer` -> the sentence-transformers embedding, run by the
    model's own modules with a forward hook that replaces the states at that layer."""

    def __init__(self, enc, layer: int | None):
        st = enc.model
        try:
            auto_model = st[0].auto_model
        except (TypeError, AttributeError, IndexError):
            from vlalign.encoders import EncoderError

            raise EncoderError(f"{enc.spec.name}: explanations need a sentence-transformers text encoder") from None
        emb, layers = _text_layers(auto_model)
        n = len(layers)
        li = DEFAULT_TEXT_LAYER if layer is None else int(layer)
        if li < 0:
            li += n
        if not 0 <= li < n:
            raise ValueError(
                f"text_layer must be a hidden-state index 0..{n - 1} (or -{n}..-1) of {enc.spec.name} "
                f"(0 = embedding output, -1 = the last layer's input); "
                f"the last layer's output ({n}) is excluded: with a zero reference the normalised mean of zero "
                f"states is undefined and the path is scale-invariant")
        self.st, self.layer = st, li
        self.module = emb if li == 0 else layers[li - 1]
        self._replace = None
        self._captured = None

    @contextlib.contextmanager
    def _hooked(self):
        def hook(mod, inp, out):
            if self._replace is None:
                self._captured = out[0] if isinstance(out, tuple) else out
                return None
            return (self._replace, *out[1:]) if isinstance(out, tuple) else self._replace

        h = self.module.register_forward_hook(hook)
        try:
            yield
        finally:
            h.remove()
            self._replace = None

    def prepare(self, caption: str):
        import torch

        feats = self.st.preprocess([caption])
        self.features = {k: v for k, v in feats.items() if isinstance(v, torch.Tensor)}
        dev = next(self.st.parameters()).device
        self.features = {k: v.to(dev) for k, v in self.features.items()}
        ids = self.features["input_ids"][0].tolist()
        tokens = self.st.tokenizer.convert_ids_to_tokens(ids)
        with torch.no_grad(), self._hooked():
            emb = self.st.forward(dict(self.features))["sentence_embedding"]
        return self._captured.detach().clone(), tokens, emb

    def __call__(self, x):
        from torch.nn.attention import SDPBackend, sdpa_kernel

        feats = {k: v.expand(x.shape[0], *v.shape[1:]) for k, v in self.features.items()}
        # the math kernel of scaled_dot_product_attention is composite, so forward-mode AD goes through it
        # (the fused CPU flash kernel has no forward derivative)
        with self._hooked(), sdpa_kernel([SDPBackend.MATH]):
            self._replace = x
            return self.st.forward(feats)["sentence_embedding"]


def _image_view(x, cfg) -> np.ndarray:
    mean = np.asarray(cfg.get("mean", (0.0, 0.0, 0.0)), np.float32)[:, None, None]
    std = np.asarray(cfg.get("std", (1.0, 1.0, 1.0)), np.float32)[:, None, None]
    arr = x[0].detach().float().cpu().numpy() * std + mean
    return (np.clip(arr.transpose(1, 2, 0), 0, 1) * 255).round().astype(np.uint8)


def explain_pair(image_bytes: Any, caption: str, vision: str = "mobilenetv2", text: str = "minilm-l6", *,
                 base_pairs: tuple[np.ndarray, np.ndarray] | None = None, steps: int = DEFAULT_STEPS,
                 vision_layer: int | None = None, text_layer: int | None = None, rule: str = DEFAULT_RULE,
                 vision_reference: str = "zero", normalize_image: bool = False, device: str = "cpu",
                 threads: int | None = None, chunk: int = 64) -> Explanation:
    """Feature-pair attributions of (image, caption) under s(a, b) = f(a)^T g(b) (see the module docstring).

    base_pairs: (X_base (M, d_img), Y_base (M, d_txt)) embeddings of base pairs by these two encoders; the
    least-squares map [x, 1] W fitted on them is part of f. None: the pair is treated as aligned (f without a
    map; the dimensions must match).

    vision_layer: index into the CNN's blocks, negative from the end (default -1: the last block, 7x7 for a
    224 px mobilenetv2 input; 4: the last 14x14 stage, finer but needing ~128 steps for a 1e-2 residual).
    text_layer: hidden-state index, negative from the end (default -1: the input of the last transformer
    layer; 0, the embedding output, integrates badly from a zero reference: the residual stays ~10 % at 64
    steps). steps, rule: the quadrature of the integrated Jacobians (see quadrature; default 64, 'graded').
    vision_reference: 'zero' or 'white' (the feature map of a white image). normalize_image: explain
    f(a)^T g(b) / ||f(a)|| instead (f then ends with an L2 normalisation; with a unit-norm g that is the
    cosine the linear baseline scores with). chunk: passes batched together (memory ~ chunk x one tail)."""
    import torch

    from vlalign.encoders import load_encoder

    t0 = time.perf_counter()
    venc = load_encoder(vision, device=device, threads=threads)
    tenc = load_encoder(text, device=device, threads=threads)
    if venc.spec.modality != "vision" or tenc.spec.modality != "text":
        raise ValueError(f"need a vision and a text encoder, got {vision!r} ({venc.spec.modality}) and "
                         f"{text!r} ({tenc.spec.modality})")
    if vision_reference not in ("zero", "white"):
        raise ValueError(f"vision_reference must be 'zero' or 'white', got {vision_reference!r}")
    backend = venc._backend  # noqa: SLF001 - the preprocessing transform of the loaded model
    head, tail, vli = _vision_parts(venc, vision_layer)
    tower = _TextTower(tenc, text_layer)

    if base_pairs is None:
        if venc.dim != tenc.dim:
            raise ValueError(f"{vision} ({venc.dim}-d) and {text} ({tenc.dim}-d) are not aligned: pass base_pairs "
                             "to fit the linear map")
        w_mat = w_bias = None
    else:
        xb, yb = base_pairs
        xb, yb = np.asarray(xb), np.asarray(yb)
        if xb.ndim != 2 or yb.ndim != 2 or xb.shape[1] != venc.dim or yb.shape[1] != tenc.dim:
            raise ValueError(f"base_pairs must be ((M, {venc.dim}), (M, {tenc.dim})) arrays, got {xb.shape}, {yb.shape}")
        w = fit_linear_map(xb, yb)
        w_mat = torch.as_tensor(w[:-1], dtype=torch.float32, device=device)
        w_bias = torch.as_tensor(w[-1], dtype=torch.float32, device=device)

    def f(x):
        h = tail(x)
        if w_mat is not None:
            h = h @ w_mat + w_bias
        return torch.nn.functional.normalize(h, dim=-1) if normalize_image else h

    with torch.no_grad():
        x_img = backend.prepare([image_bytes])
        a = head(x_img)
        if vision_reference == "zero":
            r_a = torch.zeros_like(a)
        else:
            from PIL import Image

            white = Image.new("RGB", (224, 224), (255, 255, 255))
            r_a = head(backend.prepare([white]))
    with tenc._lock:  # noqa: SLF001
        b, tokens, _ = tower.prepare(caption)
    r_b = torch.zeros_like(b)
    n_tok = b.shape[1]
    masks = torch.zeros(n_tok, *b.shape[1:], dtype=b.dtype, device=b.device)
    masks[torch.arange(n_tok), torch.arange(n_tok)] = 1.0
    grid = (int(a.shape[2]), int(a.shape[3]))

    def group_a(z):  # (B, C, H, W) -> (B, H*W): sum over the channels of each position
        return z.sum(dim=1).reshape(z.shape[0], -1)

    with tenc._lock:  # noqa: SLF001 - the hook on the shared text model must not meet a concurrent encode()
        attr, (fa, fr, gb, gr) = integrated_pair_attributions(
            f, tower, a, r_a, b, r_b, group_a, masks, steps=steps, rule=rule, chunk=chunk)
    score, s_ra_b, s_a_rb, s_ra_rb = float(fa @ gb), float(fr @ gb), float(fa @ gr), float(fr @ gr)
    target = score - s_ra_b - s_a_rb + s_ra_rb
    return Explanation(
        attributions=attr, grid=grid, tokens=list(tokens), score=score, s_ra_b=s_ra_b, s_a_rb=s_a_rb,
        s_ra_rb=s_ra_rb, residual=float(attr.sum() - target), seconds=time.perf_counter() - t0, steps=int(steps),
        rule=rule, vision=venc.spec.name, text=tenc.spec.name, vision_layer=vli, text_layer=tower.layer,
        caption=caption, mapped=w_mat is not None, vision_reference=vision_reference,
        image=_image_view(x_img, backend.data_config or {}))


# ------------------------------------------------------------------ reading an explanation
_SPECIAL = {"[CLS]", "[SEP]", "[PAD]", "<s>", "</s>", "<pad>"}


def top_pairs(expl: Explanation, n: int = 10, *, by: str = "value", special: bool = False) -> list[tuple]:
    """The n strongest (row, col, token, value) pairs: by 'value' (most positive first), 'abs' or 'negative'.
    special=False leaves out special tokens ([CLS], [SEP], ...)."""
    a = expl.attributions
    h, w = expl.grid
    keep = [t for t, tok in enumerate(expl.tokens) if special or tok not in _SPECIAL]
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


def explanation_table(expl: Explanation, item_id: str = "") -> pa.Table:
    """One row per (token, grid position): item_id, vision_encoder, text_encoder, token_index, token, row, col,
    attribution, score, residual, steps (EXPLANATION_SCHEMA)."""
    p, t = expl.attributions.shape
    h, w = expl.grid
    pos = np.tile(np.arange(p), t)
    tok = np.repeat(np.arange(t), p)
    n = p * t
    cols = {
        "item_id": [item_id] * n,
        "vision_encoder": [expl.vision] * n,
        "text_encoder": [expl.text] * n,
        "token_index": tok.astype(np.int32),
        "token": [expl.tokens[i] for i in tok],
        "row": (pos // w).astype(np.int32),
        "col": (pos % w).astype(np.int32),
        "attribution": expl.attributions.T.reshape(-1).astype(np.float64),
        "score": np.full(n, expl.score),
        "residual": np.full(n, expl.residual),
        "steps": np.full(n, expl.steps, np.int32),
    }
    return pa.table(cols, schema=EXPLANATION_SCHEMA)


def plot_explanation(expl: Explanation, image_bytes: Any = None, path: str | Path = "explanation.png", *,
                     special: bool = True, max_tokens: int = 16, alpha: float = 0.6) -> Path:
    """PNG: the image as the network saw it (resized and cropped) and one heat map per caption token, upsampled
    over a grey copy of the image, red positive / blue negative on one symmetric scale for all tokens; the score, the
    reference terms and the completeness residual in the title. image_bytes is used only when the
    explanation carries no image."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    if expl.image is not None:
        img = expl.image
    else:
        from vlalign.encoders import decode_image

        img = np.asarray(decode_image(image_bytes))
    idx = [t for t, tok in enumerate(expl.tokens) if special or tok not in _SPECIAL][: int(max_tokens)]
    maps = expl.token_maps()
    vmax = float(np.abs(maps[idx]).max()) if idx else 1.0
    vmax = vmax or 1.0
    ncol = min(len(idx) + 1, 6)
    nrow = math.ceil((len(idx) + 1) / ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(2.6 * ncol, 2.8 * nrow + 0.6), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    ih, iw = img.shape[:2]
    grey = img[..., :3].astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)  # under the maps
    axes.flat[0].imshow(img)
    axes.flat[0].set_title("image", fontsize=9)
    im = None
    for ax, t in zip(list(axes.flat)[1:], idx):
        ax.imshow(grey, cmap="gray", vmin=0, vmax=255)
        im = ax.imshow(maps[t], cmap="RdBu_r", vmin=-vmax, vmax=vmax, alpha=alpha, interpolation="bilinear",
                       extent=(0, iw, ih, 0))
        ax.set_title(f"{expl.tokens[t]}  ({maps[t].sum():+.3f})", fontsize=9)
    if im is not None:
        fig.colorbar(im, ax=axes.ravel().tolist(), shrink=0.7, label="attribution")
    fig.suptitle(
        f"{expl.caption!r}   {expl.vision} (block {expl.vision_layer}, {expl.grid[0]}x{expl.grid[1]}) x "
        f"{expl.text} (layer {expl.text_layer})\n"
        f"s = {expl.score:.4f}, target s - s(r,b) - s(a,r) + s(r,r) = {expl.target:.4f}, "
        f"sum A = {expl.attributions.sum():.4f}, residual = {expl.residual:.2e} "
        f"({expl.relative_residual:.1e} rel.), {expl.steps} steps", fontsize=9)
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return out


# ------------------------------------------------------------------ what the CLI calls
def explain_items(item_ids: Sequence[str], vision: str = "mobilenetv2", text: str = "minilm-l6", *,
                  base_size: int = 256, seed: int = 0, steps: int = DEFAULT_STEPS, vision_layer: int | None = None,
                  text_layer: int | None = None, rule: str = DEFAULT_RULE, vision_reference: str = "zero",
                  out_dir: str | Path | None = None, threads: int | None = None, device: str = "cpu",
                  rows: dict[str, dict] | None = None,
                  bases: dict[tuple[str, str], tuple[np.ndarray, np.ndarray] | None] | None = None,
                  ) -> tuple[pa.Table, list[Explanation]]:
    """Explain items: emoji ids "domain/lang/emoji_id" (e.g. "google/en/1f431") of the embedded set, or, with
    ``rows`` ({item id: a canonical item row with image/image_bytes, caption, domain, lang}), any data set's.

    ``bases``: {(domain, lang): (X_base, Y_base) or None (aligned)}, the base pairs the linear map is fitted on
    (a run's or the default split's base, flows/explain.py). Without it (emoji only), ``base_size`` pairs are
    drawn (seeded) from the same domain and language, never an explained emoji, and embedded with the two
    encoders; base_size=0 treats the encoders as aligned.
    With out_dir: one PNG per item (the item id with '/' as '_') and explanations.parquet there.
    Returns the explanation table (EXPLANATION_SCHEMA, all items) and the explanations."""
    from vlalign.datasets.readers import image_source

    if rows is None:
        rows, random_bases = _emoji_rows(item_ids, vision, text, base_size, seed, bases is None, device, threads)
        bases = bases if bases is not None else random_bases
    for iid in item_ids:
        if iid not in rows:
            raise ValueError(f"no item {iid!r} among the rows given")
        key = (rows[iid]["domain"], rows[iid]["lang"])
        if key not in bases:
            raise ValueError(f"no base pairs given for domain/lang {key} of item {iid!r}")
    images = {iid: image_source(rows[iid].get("image"), rows[iid].get("image_bytes")) for iid in item_ids}
    tables, expls = [], []
    out = Path(out_dir) if out_dir is not None else None
    for iid in item_ids:
        row = rows[iid]
        ex = explain_pair(images[iid], row["caption"], vision, text, base_pairs=bases[(row["domain"], row["lang"])],
                          steps=steps, vision_layer=vision_layer, text_layer=text_layer, rule=rule,
                          vision_reference=vision_reference, device=device, threads=threads)
        expls.append(ex)
        tables.append(explanation_table(ex, iid))
        if out is not None:
            plot_explanation(ex, images[iid], out / f"{_file_name(iid)}.png")
    table = pa.concat_tables(tables) if tables else EXPLANATION_SCHEMA.empty_table()
    if out is not None:
        import pyarrow.parquet as pq

        out.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, out / "explanations.parquet")
    return table, expls


def _file_name(item_id: str) -> str:
    """A file name for an item id: '/' and anything unusual as '_'."""
    import re

    return re.sub(r"[^A-Za-z0-9._-]", "_", item_id).strip("._") or "item"


def _emoji_rows(item_ids: Sequence[str], vision: str, text: str, base_size: int, seed: int, want_bases: bool,
                device: str, threads: int | None) -> tuple[dict[str, dict], dict]:
    """Rows of emoji items of the embedded set, and (want_bases) seeded random base pairs per (domain, lang):
    ``base_size`` pairs of the same domain and language, never an explained emoji, embedded here."""
    from vlalign.datasets.readers import read_emoji
    from vlalign.encoders import load_encoder

    parsed = []
    for iid in item_ids:
        parts = str(iid).split("/")
        if len(parts) != 3:
            raise ValueError(f"item ids look like 'google/en/1f431' (domain/lang/emoji), got {iid!r}")
        parsed.append(parts)
    groups: dict[tuple[str, str], list[str]] = {}
    for d, lang, e in parsed:
        groups.setdefault((d, lang), []).append(e)
    explained = {e for _, _, e in parsed}
    rows: dict[str, dict] = {}
    bases: dict[tuple[str, str], tuple[np.ndarray, np.ndarray] | None] = {}
    for (d, lang), eids in groups.items():
        items = read_emoji(domains=[d], langs=[lang]).items
        ids = items["item_id"].to_pylist()
        imgs, caps = items["image_bytes"].to_pylist(), items["caption"].to_pylist()
        index = {iid: k for k, iid in enumerate(ids)}
        for e in eids:
            iid = f"{d}/{lang}/{e}"
            if iid not in index:
                raise ValueError(f"no emoji item {iid!r} in the embedded set")
            k = index[iid]
            rows[iid] = {"image": None, "image_bytes": imgs[k], "caption": caps[k], "domain": d, "lang": lang}
        if want_bases and base_size > 0:
            pool = [k for k, iid in enumerate(ids) if iid.rsplit("/", 1)[1] not in explained]
            if len(pool) < base_size:
                raise ValueError(f"{d}/{lang}: only {len(pool)} base pairs available, base_size is {base_size}")
            pick = np.random.default_rng(seed).choice(len(pool), size=base_size, replace=False)
            chosen = [pool[k] for k in sorted(pick)]
            venc = load_encoder(vision, device=device, threads=threads)
            tenc = load_encoder(text, device=device, threads=threads)
            bases[(d, lang)] = (venc.encode([imgs[k] for k in chosen]), tenc.encode([caps[k] for k in chosen]))
        else:
            bases[(d, lang)] = None
    return rows, bases
