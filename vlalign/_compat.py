"""Environment workarounds, each in one place.

ensure_torchvision()
    torchvision 0.28.0 on PyPI is a CUDA build. Next to a CPU-only torch its compiled extension
    (``torchvision/_C.so``) fails to load, and ``import torchvision`` then dies with
    ``RuntimeError: operator torchvision::nms does not exist`` -- which breaks timm and transformers,
    both of which import torchvision when it is installed. Defining the missing operator schemas
    *before* torchvision is imported fixes the import; only torchvision's compiled operators
    (nms, roi_align, ...) stay unavailable, and this project uses none of them.

    Detection mirrors torchvision's own ``extension._load_library``: we try to load ``_C`` ourselves
    (``torch.ops.load_library``, which torchvision repeats later as a no-op on the same path). The
    schemas are defined only when that load fails, so a matching torchvision (CPU/CPU or CUDA/CUDA)
    is never touched -- defining ``nms`` ahead of a working ``_C`` would make its registration
    collide. Idempotent and cheap after the first call; call it before anything imports timm,
    transformers, sentence_transformers or torchvision (``vlalign.encoders`` does so at import, so
    Dask worker processes that import the package get it too).

offline_env()
    Context manager that switches the Hugging Face libraries to offline mode for the duration of a
    load from an offline-packaged model folder, and restores the previous state afterwards, so that
    hub names keep working for users with network access.
"""
from __future__ import annotations

import contextlib
import importlib.machinery
import importlib.util
import os
import sys
import threading

__all__ = ["ensure_torchvision", "torchvision_patched", "offline_env", "hub_offline"]

_TV_SCHEMAS = (
    "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
)

_lock = threading.Lock()
_done = False
_patched = False
_lib = None  # keep the Library fragment alive: dropping it would unregister the schemas


def _has_op(qualname: str) -> bool:
    import torch  # heavy and optional here: only the encoders need it

    try:
        torch._C._dispatch_find_schema_or_throw(qualname, "")
        return True
    except RuntimeError:
        return False


def _torchvision_ext_path() -> str | None:
    """Path of torchvision's compiled ``_C`` extension, found without importing torchvision."""
    spec = importlib.util.find_spec("torchvision")
    if spec is None or not spec.submodule_search_locations:
        return None
    for lib_dir in spec.submodule_search_locations:
        finder = importlib.machinery.FileFinder(
            lib_dir, (importlib.machinery.ExtensionFileLoader, importlib.machinery.EXTENSION_SUFFIXES)
        )
        ext = finder.find_spec("_C")
        if ext is not None and ext.origin:
            return ext.origin
    return None


def ensure_torchvision() -> bool:
    """Make ``import torchvision`` work with a mismatched CPU torch / CUDA torchvision pair.

    Returns True when the workaround had to be applied in this process (now or earlier).
    """
    global _done, _patched, _lib
    if _done:
        return _patched
    with _lock:
        if _done:
            return _patched
        try:
            import torch  # heavy and optional here: only the encoders need it
        except ImportError:  # no torch: nothing to fix
            _done = True
            return False
        tv = sys.modules.get("torchvision")
        if tv is not None and hasattr(tv, "__version__"):
            _done = True  # already imported successfully: it works as it is
            return _patched
        if _has_op("torchvision::nms"):
            _done = True  # ops registered: torchvision's extension is loaded and working
            return _patched
        if os.name == "nt":
            # torchvision adds DLL directories before loading _C on Windows; our probe would not, so
            # it could report a working extension as broken. PyPI's Windows wheels come in matching
            # pairs anyway: leave them alone.
            _done = True
            return False
        path = _torchvision_ext_path()
        if path is None:  # torchvision not installed (or no compiled extension): nothing to fix
            _done = True
            return False
        try:
            torch.ops.load_library(path)
        except (ImportError, OSError):
            pass
        if not _has_op("torchvision::nms"):
            lib = torch.library.Library("torchvision", "FRAGMENT")
            for schema in _TV_SCHEMAS:
                try:
                    lib.define(schema)
                except RuntimeError:  # already defined
                    pass
            _lib = lib
            _patched = True
        _done = True
        return _patched


def torchvision_patched() -> bool:
    """Whether ensure_torchvision() had to define the missing schemas in this process."""
    return _patched


_OFFLINE_VARS = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
_TRUE = {"1", "ON", "YES", "TRUE"}


def hub_offline() -> bool:
    """Whether the user asked for Hugging Face offline mode (HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE).

    Reads the environment at call time (huggingface_hub reads it once, at import)."""
    if any(os.environ.get(v, "").upper() in _TRUE for v in _OFFLINE_VARS):
        return True
    hh = sys.modules.get("huggingface_hub.constants")
    return bool(getattr(hh, "HF_HUB_OFFLINE", False)) if hh is not None else False


_env_lock = threading.RLock()


@contextlib.contextmanager
def offline_env():
    """Hugging Face offline mode for the duration of the block, then the previous state.

    Use it only around loads of offline-packaged models (a local folder inside an installed
    package): they must never reach for the network. huggingface_hub caches HF_HUB_OFFLINE in
    ``huggingface_hub.constants`` at import time, so that attribute is switched too.
    """
    with _env_lock:
        saved = {v: os.environ.get(v) for v in _OFFLINE_VARS}
        for v in _OFFLINE_VARS:
            os.environ[v] = "1"
        hh = sys.modules.get("huggingface_hub.constants")
        saved_const = getattr(hh, "HF_HUB_OFFLINE", None) if hh is not None else None
        if hh is not None:
            hh.HF_HUB_OFFLINE = True
        try:
            yield
        finally:
            for v, old in saved.items():
                if old is None:
                    os.environ.pop(v, None)
                else:
                    os.environ[v] = old
            hh2 = sys.modules.get("huggingface_hub.constants")
            if hh2 is not None:
                # imported inside the block: it read our "1"; give it the outside value instead
                hh2.HF_HUB_OFFLINE = (
                    saved_const if (hh is not None and saved_const is not None)
                    else any((saved[v] or "").upper() in _TRUE for v in _OFFLINE_VARS)
                )
