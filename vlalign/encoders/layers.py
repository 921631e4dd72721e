"""Per-layer features: the inner layers of an encoder, pooled as its output is, all from one forward pass.

Layer indices: 0, 1, ... are the model's inner layers; -1 (OUTPUT) is the encoder's own output, the embedding
the lake has always stored (after any final norm, head, pooling or normalisation of the model). Inner layers:

* timm: the outputs of ``forward_intermediates`` (the stem and stages of a conv net, the blocks of a ViT; a
  model without it: forward hooks on the modules of its feature_info),
  pooled with the encoder's pooling: ``avg`` the mean over the spatial map (or the patch tokens), ``max`` the
  maximum, ``avgmax`` their mean, ``token`` the class token. Named by timm's feature_info module where it has
  one per intermediate.
* transformers vision (hf/): every ``hidden_states`` entry (0: the embeddings), pooled as the output: ``cls`` the
  first token, ``mean`` all tokens or the spatial map; ``pooler`` has no inner equivalent.
* sentence-transformers: every ``hidden_states`` entry of the underlying transformers model (0: the token
  embeddings), mean-pooled over the attention mask as sentence-transformers pools (whatever the model's own
  pooling; no normalisation). The output comes from the same forward pass, through the model's own pipeline.
* e5-small, wordllama and other encoders without a model to open: the output only.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from vlalign.encoders.base import EncoderError

__all__ = ["OUTPUT"]

OUTPUT = -1


def pool_map(h: Any, pooling: str, prefix: Any = None) -> Any:
    """(B, C, H, W) map or (B, N, C) tokens -> (B, C), pooled by ``pooling`` (timm's names and hf's)."""
    if pooling in ("token", "cls"):
        if prefix is not None:
            return prefix[:, 0]
        if h.dim() == 3:
            return h[:, 0]
        raise EncoderError(f"pooling {pooling!r}: this layer has no class token")
    dims = (2, 3) if h.dim() == 4 else (1,)
    if pooling in ("avg", "mean", "fast"):
        return h.mean(dim=dims)
    if pooling == "max":
        return h.amax(dim=dims)
    if pooling == "avgmax":
        return 0.5 * (h.mean(dim=dims) + h.amax(dim=dims))
    raise EncoderError(f"pooling {pooling!r} has no per-layer equivalent here (use avg, max, avgmax or token/cls)")


def mean_pool(h: Any, mask: Any) -> Any:
    """Mean of the tokens ``h`` (B, N, C) where ``mask`` (B, N) is 1, as sentence-transformers' mean pooling."""
    m = mask.unsqueeze(-1).to(h.dtype)
    return (h * m).sum(dim=1) / m.sum(dim=1).clamp(min=1e-9)


def check_layers(layers: tuple[int, ...], names: tuple[str, ...], what: str) -> None:
    """EncoderError if ``layers`` names an inner layer ``what`` does not have."""
    bad = [i for i in layers if i != OUTPUT and not 0 <= i < len(names)]
    if bad:
        have = f"inner layers 0..{len(names) - 1}" if names else "no inner layers"
        raise EncoderError(f"{what} has {have} (and -1: its output); asked for {bad}")


def stack_layers(per_batch: list[dict[int, np.ndarray]], layers: tuple[int, ...], dim: dict[int, int]) -> dict:
    """{layer: (n, d) float32} from the per-batch outputs."""
    return {i: (np.concatenate([b[i] for b in per_batch]) if per_batch else np.zeros((0, dim.get(i, 0)), np.float32))
            for i in layers}
