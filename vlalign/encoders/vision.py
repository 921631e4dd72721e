"""Vision backends: timm models (the offline catalog's conv nets and timm/ hub names) and
transformers models (hf/ hub names and local folders).

Catalog conv nets load a state dict shipped in a PyPI package and map it, tensor by tensor and in
order, onto the matching timm architecture (_map_state_dict checks count, shape and role of every
tensor). Features are timm's pre-logits output (global pool); on CPU the models run channels_last
(~1.8x faster for these conv nets with oneDNN, numerically equal to 1e-5). hf/ models pool
last_hidden_state ("cls": first token, "mean": all tokens or the spatial map of a conv net) or use
pooler_output ("pooler"). Every loader here calls ensure_torchvision() before importing timm or
transformers.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from vlalign._compat import ensure_torchvision, offline_env
from vlalign.encoders.backend import _autocast, _Backend, _nullctx
from vlalign.encoders.base import EncoderError, EncoderSpec
from vlalign.encoders.catalog import _CATALOG, _pkg_dir
from vlalign.encoders.images import decode_image
from vlalign.encoders.layers import OUTPUT, check_layers, pool_map, stack_layers
from vlalign.encoders.resolve import _HubInfo

__all__: list[str] = []


def _map_state_dict(src: dict, dst: dict, what: str) -> dict:
    """Map `src` onto the keys of `dst` in order, checking count, shape and tensor role
    (weight/bias/running_mean/...) one by one; EncoderError on the first mismatch."""
    src_items, dst_items = list(src.items()), list(dst.items())
    if len(src_items) != len(dst_items):
        raise EncoderError(f"{what}: {len(src_items)} tensors in the file, the model has {len(dst_items)}")
    out = {}
    for i, ((ks, vs), (kd, vd)) in enumerate(zip(src_items, dst_items)):
        if tuple(vs.shape) != tuple(vd.shape) or ks.rsplit(".", 1)[-1] != kd.rsplit(".", 1)[-1]:
            raise EncoderError(
                f"{what}: tensor {i} does not match: file {ks} {tuple(vs.shape)} vs model {kd} {tuple(vd.shape)}")
        out[kd] = vs
    return out


class _TimmVision(_Backend):
    def __init__(self, model: Any, transform: Any, device: str):
        import torch  # seconds to import: only where a model runs

        self.model = model.eval().to(device)
        if device == "cpu":
            # ~1.8x faster for these conv nets on CPU (oneDNN), numerically equal to 1e-5
            self.model = self.model.to(memory_format=torch.channels_last)
        self.transform = transform
        self.device = device
        self.data_config = None

    def features(self, x: Any) -> Any:
        m = self.model
        return m.forward_head(m.forward_features(x), pre_logits=True)

    def prepare(self, items: list) -> Any:
        import torch  # seconds to import: only where a model runs

        x = torch.stack([self.transform(decode_image(it)) for it in items]).to(self.device)
        return x.contiguous(memory_format=torch.channels_last) if self.device == "cpu" else x

    def encode(self, items, batch_size, threads, precision):
        import torch  # seconds to import: only where a model runs

        outs = []
        for i in range(0, len(items), batch_size):
            x = self.prepare(items[i:i + batch_size])
            with torch.inference_mode(), _autocast(self.device, precision):
                outs.append(self.features(x).float().cpu().numpy())
        return np.concatenate(outs) if outs else np.zeros((0, self.dim), np.float32)

    _layer_names: tuple[str, ...] | None = None

    def layer_names(self) -> tuple[str, ...]:
        """The names of forward_intermediates' outputs (timm's feature_info modules where they match one to one),
        counted with one probe image."""
        import torch  # seconds to import: only where a model runs
        from PIL import Image  # as torch: only where a model runs

        if self._layer_names is None:
            if not hasattr(self.model, "forward_intermediates"):  # feature hooks on timm's feature_info modules
                self._layer_names = tuple(f["module"] for f in getattr(self.model, "feature_info", []) or []
                                          if f.get("module"))
                return self._layer_names
            with torch.inference_mode():
                inter = self.model.forward_intermediates(self.prepare([Image.new("RGB", (64, 64))]),
                                                         intermediates_only=True)
            info = [f.get("module", "") for f in getattr(self.model, "feature_info", [])]
            self._layer_names = tuple(info) if len(info) == len(inter) and all(info) else \
                tuple(f"intermediate.{i}" for i in range(len(inter)))
        return self._layer_names

    def encode_layers(self, items, batch_size, threads, precision, layers, pooling):
        """{layer: (n, d)}: forward_intermediates' outputs pooled with ``pooling``, and the output (-1), from one
        forward pass per batch; the output is forward_head of the same final features, as :meth:`features`."""
        import torch  # seconds to import: only where a model runs

        inner = sorted(i for i in layers if i != OUTPUT)
        check_layers(tuple(inner), self.layer_names(), f"timm {type(self.model).__name__}")
        if not hasattr(self.model, "forward_intermediates"):
            return self._hooked_layers(items, batch_size, precision, layers, pooling)
        token = pooling == "token"
        out = []
        for i in range(0, len(items), batch_size):
            x = self.prepare(items[i:i + batch_size])
            with torch.inference_mode(), _autocast(self.device, precision):
                final, inter = self.model.forward_intermediates(x, indices=inner or [0], return_prefix_tokens=token) \
                    if token else self.model.forward_intermediates(x, indices=inner or [0])
                got = {OUTPUT: self.model.forward_head(final, pre_logits=True)} if OUTPUT in layers else {}
                for k, h in zip(inner, inter):
                    got[k] = pool_map(h[0], pooling, h[1]) if token else pool_map(h, pooling)
            out.append({k: v.float().cpu().numpy() for k, v in got.items()})
        return stack_layers(out, tuple(layers), {OUTPUT: self.dim})

    def _hooked_layers(self, items, batch_size, precision, layers, pooling):
        """encode_layers for a timm model without forward_intermediates: forward hooks on its feature_info modules
        catch the inner layers while :meth:`features` computes the output (one forward pass per batch)."""
        import torch  # seconds to import: only where a model runs

        names, modules = self.layer_names(), dict(self.model.named_modules())
        caught: dict[int, Any] = {}
        hooks = [modules[names[k]].register_forward_hook(lambda m, a, o, k=k: caught.__setitem__(k, o))
                 for k in layers if k != OUTPUT]
        out = []
        try:
            for i in range(0, len(items), batch_size):
                x = self.prepare(items[i:i + batch_size])
                with torch.inference_mode(), _autocast(self.device, precision):
                    got = {OUTPUT: self.features(x)}
                    got.update({k: pool_map(h, pooling) for k, h in caught.items()})
                out.append({k: v.float().cpu().numpy() for k, v in got.items() if k in layers})
                caught.clear()
        finally:
            for h in hooks:
                h.remove()
        return stack_layers(out, tuple(layers), {OUTPUT: self.dim})


def _load_timm_catalog(name: str, device: str) -> _TimmVision:
    ensure_torchvision()
    import timm  # timm imports torch: seconds; only to load a model
    import torch  # seconds to import: only where a model runs
    from timm.data import create_transform, resolve_data_config  # as timm

    entry = _CATALOG[name]
    root = _pkg_dir(entry.package)
    (wfile,) = entry.files(root)
    arch = "mobilenetv2_100" if name == "mobilenetv2" else f"tf_{name.replace('-', '_')}"
    src = torch.load(wfile, map_location="cpu", weights_only=True)
    model = timm.create_model(arch, pretrained=False)
    model.load_state_dict(_map_state_dict(src, model.state_dict(), f"{name} ({wfile.name} -> timm {arch})"))
    overrides = {"interpolation": "bilinear"} if name == "mobilenetv2" else {}
    cfg = resolve_data_config(overrides, model=model)
    be = _TimmVision(model, create_transform(**cfg), device)
    be.data_config = cfg
    be.dim = model.num_features
    return be


def _load_timm_hub(spec: EncoderSpec, info: _HubInfo, device: str) -> _TimmVision:
    ensure_torchvision()
    import timm  # timm imports torch: seconds; only to load a model
    from timm.data import create_transform, resolve_data_config  # as timm

    kwargs: dict[str, Any] = {"pretrained": True, "num_classes": 0}
    if info.explicit_pool:
        kwargs["global_pool"] = spec.pooling
    model = timm.create_model(info.model, **kwargs)
    cfg = resolve_data_config({}, model=model)
    be = _TimmVision(model, create_transform(**cfg), device)
    be.data_config = cfg
    return be


class _HFVision(_Backend):
    def __init__(self, repo: str, pooling: str, device: str, local: bool):
        ensure_torchvision()
        from transformers import AutoImageProcessor, AutoModel  # transformers: heavy; only to load a model

        ctx = offline_env() if local else _nullctx()
        with ctx:
            self.processor = AutoImageProcessor.from_pretrained(repo)
            self.model = AutoModel.from_pretrained(repo).eval().to(device)
        self.pooling, self.device = pooling, device

    def _pixels(self, items: list) -> Any:
        imgs = [decode_image(it) for it in items]
        return self.processor(images=imgs, return_tensors="pt")["pixel_values"].to(self.device)

    def _output(self, out: Any) -> Any:
        """The encoder's output (its embedding) from the model's outputs, pooled as the name says."""
        if self.pooling == "pooler":
            po = getattr(out, "pooler_output", None)
            if po is None:
                raise EncoderError("this model has no pooler_output: use @cls or @mean")
            return po.flatten(1)
        h = out.last_hidden_state
        if h.dim() == 4:  # conv net: (B, C, H, W)
            if self.pooling == "cls":
                raise EncoderError("a convolutional model has no CLS token: use @mean or @pooler")
            return h.mean(dim=(2, 3))
        return h[:, 0] if self.pooling == "cls" else h.mean(dim=1)

    def encode(self, items, batch_size, threads, precision):
        import torch  # seconds to import: only where a model runs

        outs = []
        for i in range(0, len(items), batch_size):
            px = self._pixels(items[i:i + batch_size])
            with torch.inference_mode(), _autocast(self.device, precision):
                out = self.model(pixel_values=px)
            outs.append(self._output(out).float().cpu().numpy())
        return np.concatenate(outs) if outs else np.zeros((0, self.dim), np.float32)

    _layer_names: tuple[str, ...] | None = None

    def layer_names(self) -> tuple[str, ...]:
        """hidden_states.0 (the embeddings) .. hidden_states.L, counted with one probe image."""
        import torch  # seconds to import: only where a model runs
        from PIL import Image  # as torch: only where a model runs

        if self._layer_names is None:
            with torch.inference_mode():
                out = self.model(pixel_values=self._pixels([Image.new("RGB", (64, 64))]), output_hidden_states=True)
            self._layer_names = tuple(f"hidden_states.{i}" for i in range(len(out.hidden_states or ())))
        return self._layer_names

    def encode_layers(self, items, batch_size, threads, precision, layers, pooling):
        """{layer: (n, d)}: every requested hidden state pooled as the output (cls: first token; mean: all
        tokens or the spatial map), and the output (-1), from one forward pass per batch."""
        import torch  # seconds to import: only where a model runs

        check_layers(tuple(layers), self.layer_names(), f"hf {type(self.model).__name__}")
        if self.pooling == "pooler" and any(i != OUTPUT for i in layers):
            raise EncoderError("pooling 'pooler' exists for the output only: name the encoder with @cls or @mean to "
                               "embed its inner layers")
        outs = []
        for i in range(0, len(items), batch_size):
            px = self._pixels(items[i:i + batch_size])
            with torch.inference_mode(), _autocast(self.device, precision):
                out = self.model(pixel_values=px, output_hidden_states=True)
            got = {k: self._output(out) if k == OUTPUT else pool_map(out.hidden_states[k], self.pooling)
                   for k in layers}
            outs.append({k: v.float().cpu().numpy() for k, v in got.items()})
        return stack_layers(outs, tuple(layers), {OUTPUT: self.dim})
