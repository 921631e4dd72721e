"""The two encoders as differentiable functions of an intermediate representation, for feature-pair attributions
(vlalign.methods.attribution, vlalign.engine.explain).

- Vision (:func:`vision_parts`): a is the feature map (C, H, W) at the output of one block (stage) of the vision
  CNN, ``layer`` indexing ``model.blocks`` of the timm EfficientNet-family models (mobilenetv2,
  efficientnet-lite*, timm/ hub names of that family); ``head`` maps the preprocessed image to a, ``tail`` maps
  a through the rest of the network (later blocks, head conv, global average pool) to the image embedding.
- Text (:class:`TextTower`): b is the caption's token hidden states (T, hidden) at transformer hidden-state index
  ``layer`` (0 = embedding output, i = output of layer i), and g maps them through the remaining layers, the
  sentence-transformers pooling and normalisation to the text embedding: the model's own modules run, with a
  forward hook that replaces the states at that layer.

torch is imported inside the functions that need it: importing vlalign.encoders stays light.
"""
from __future__ import annotations

import contextlib
from typing import Any

import numpy as np

from vlalign.encoders.base import EncoderError

__all__ = ["DEFAULT_VISION_LAYER", "DEFAULT_TEXT_LAYER", "vision_parts", "text_layers", "TextTower", "image_view"]

# index into timm's model.blocks, negative from the end: -1 = the last block (mobilenetv2: 320 x 7 x 7 at
# 224 px; f is then the 1x1 head conv, BN, ReLU6 and the average pool, applied position by position).
# 4 = the last 14 x 14 stage: finer regions, but f crosses many more ReLU6 kinks and needs ~4x the steps.
DEFAULT_VISION_LAYER = -1
# hidden-state index of the text transformer, negative from the end: -1 = the input of the last layer
# (minilm-l6: hidden_states[5]). The last layer's output itself is excluded (see TextTower).
DEFAULT_TEXT_LAYER = -1


def vision_parts(enc, layer: int | None):
    """(features up to the block, tail from the block to the pooled embedding, resolved layer index)."""
    m = enc.model
    needed = ("conv_stem", "bn1", "blocks", "conv_head", "bn2", "forward_head")
    if not all(hasattr(m, k) for k in needed):
        raise EncoderError(f"{enc.spec.name}: explanations need a timm EfficientNet-family model "
                           "(conv_stem, blocks, conv_head); this one is " + type(m).__name__)
    n = len(m.blocks)
    li = DEFAULT_VISION_LAYER if layer is None else int(layer)
    if li < 0:
        li += n
    if not 0 <= li < n:
        raise ValueError(f"vision_layer must index one of the {n} blocks of {enc.spec.name} (0..{n - 1}), "
                         f"got {layer!r}")

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


def text_layers(auto_model) -> tuple[Any, Any]:
    """(embedding module, list of transformer layers) of a BERT-like transformers model."""
    emb = getattr(auto_model, "embeddings", None)
    for path in ("encoder.layer", "transformer.layer", "layers", "encoder.layers"):
        obj = auto_model
        for part in path.split("."):
            obj = getattr(obj, part, None)
        if obj is not None and emb is not None:
            return emb, obj
    raise EncoderError("explanations need a BERT-like text model (embeddings + encoder layers), "
                       f"not {type(auto_model).__name__}")


class TextTower:
    """g: token states at hidden-state index `layer` -> the sentence-transformers embedding, run by the
    model's own modules with a forward hook that replaces the states at that layer."""

    def __init__(self, enc, layer: int | None):
        st = enc.model
        try:
            auto_model = st[0].auto_model
        except (TypeError, AttributeError, IndexError):
            raise EncoderError(f"{enc.spec.name}: explanations need a sentence-transformers text encoder") from None
        emb, layers = text_layers(auto_model)
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
        """(b: the caption's token states at the layer (1, T, hidden), its tokens, its embedding); keeps the
        tokenised caption for the calls that follow."""
        import torch  # heavy: only when a caption is explained

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
        from torch.nn.attention import SDPBackend, sdpa_kernel  # torch: heavy, only when a caption is explained

        feats = {k: v.expand(x.shape[0], *v.shape[1:]) for k, v in self.features.items()}
        # the math kernel of scaled_dot_product_attention is composite, so forward-mode AD goes through it
        # (the fused CPU flash kernel has no forward derivative)
        with self._hooked(), sdpa_kernel([SDPBackend.MATH]):
            self._replace = x
            return self.st.forward(feats)["sentence_embedding"]


def image_view(x, cfg: dict) -> np.ndarray:
    """(h, w, 3) uint8: a preprocessed image batch's first image as the network saw it (normalisation undone)."""
    mean = np.asarray(cfg.get("mean", (0.0, 0.0, 0.0)), np.float32)[:, None, None]
    std = np.asarray(cfg.get("std", (1.0, 1.0, 1.0)), np.float32)[:, None, None]
    arr = x[0].detach().float().cpu().numpy() * std + mean
    return (np.clip(arr.transpose(1, 2, 0), 0, 1) * 255).round().astype(np.uint8)
