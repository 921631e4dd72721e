"""Name resolution: a catalog name or a hub name -> its EncoderSpec (and, for hub names, where the
weights come from), without network.

Catalog names are case-insensitive. Hub names:
    timm/<model>[@pool]   pooling = the model's own global pool unless @pool is given; pooling and dim
                          are resolved offline by instantiating the architecture on the meta device.
    st/<model>[@pool]     a model without an org gets the "sentence-transformers/" org; a local
                          folder path also works; pooling defaults to "mean".
    hf/<repo>[@pool]      pooling "cls" (default), "mean" or "pooler"; a local folder path also works.
Resolving a timm name imports timm, so ensure_torchvision() runs first.
"""
from __future__ import annotations

import difflib
import functools
import os
import re
from dataclasses import dataclass
from typing import Any

from vlalign._compat import ensure_torchvision
from vlalign.encoders.base import EncoderError, EncoderSpec
from vlalign.encoders.catalog import _CATALOG
from vlalign.encoders.names import _split_pool, _split_prefix

__all__ = ["get_encoder"]

_ST_POOLS = ("mean", "cls", "max", "mean_sqrt_len_tokens", "weightedmean", "lasttoken")
_HF_POOLS = ("cls", "mean", "pooler")
_REPO_RE = re.compile(r"[A-Za-z0-9][\w.-]*(/[\w.-]+)?")


def _unknown(name: str) -> EncoderError:
    known = list(_CATALOG)
    close = difflib.get_close_matches(name.lower(), known, n=1)
    hint = f" Did you mean '{close[0]}'?" if close else ""
    return EncoderError(
        f"unknown encoder '{name}'.{hint} Known names: {', '.join(known)}; or a hub name: "
        "timm/<model> (vision, timm), st/<model> (text, sentence-transformers), "
        "hf/<repo> (vision, transformers); append @<pooling> to choose the pooling."
    )


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
                           f"sentence-transformers {'folder ' + local if local else repo}",
                           multilingual=_looks_multilingual(base))
        return spec, _HubInfo("st", local or repo, repo, local, None, pool is not None)
    # hf/
    if pool is not None and pool not in _HF_POOLS:
        raise EncoderError(f"'{name}': unknown pooling '{pool}' for hf/ models; use one of {_HF_POOLS}")
    spec = EncoderSpec(name, "vision", None, pool or "cls", False,
                       f"transformers {'folder ' + local if local else base}")
    return spec, _HubInfo("hf", local or base, None if local else base, local, None, pool is not None)


_MULTILINGUAL_HINTS = ("multilingual", "labse", "xlm", "-m3", "mbert", "paraphrase-multilingual")


def _looks_multilingual(model: str) -> bool | None:
    """True if a hub text model's name says it is multilingual (e.g. paraphrase-multilingual-*, LaBSE,
    XLM-R based), else None: not known (a spec declares it in cross_lingual.multilingual)."""
    low = model.lower()
    return True if any(h in low for h in _MULTILINGUAL_HINTS) else None


def _resolve_timm(name: str, model: str, pool: str | None) -> tuple[EncoderSpec, _HubInfo]:
    """Pooling, dim and weight location of a timm model, without network: the architecture is
    built on the meta device (no memory, no weights) and run once on a meta tensor."""
    ensure_torchvision()
    try:
        import timm  # timm imports torch: seconds; only where a model is resolved
        import torch  # seconds to import: only where a model runs
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
