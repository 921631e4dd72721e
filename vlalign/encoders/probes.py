"""Availability: can an encoder be loaded here, and if not, what is the fix.

is_available() is cheap and never imports the model libraries: catalog entries check that the
packages can be found and that the weight files exist; hub names check the local caches, then
offline mode, then (at most once per host and process) a 3-second TCP probe of the hub host.
preflight() resolves a whole list of names before any work and reports every problem at once.
"""
from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path
from typing import Any, Sequence

from vlalign._compat import hub_offline
from vlalign.encoders.base import EncoderError, EncoderSpec
from vlalign.encoders.catalog import _CATALOG, _pkg_dir, list_encoders
from vlalign.encoders.hub import _hf_cached, _hf_hub_cache, _hub_host, _reachable, _torch_hub_file
from vlalign.encoders.resolve import _resolve_hub, get_encoder

__all__ = ["is_available", "preflight", "encoder_table"]

_PIP_NAMES = {"PIL": "pillow", "sentence_transformers": "sentence-transformers"}


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
            return False, f"'{spec.name}' needs {', '.join(lacking)}: pip install {' '.join(_PIP_NAMES.get(r, r) for r in lacking)}"
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


def encoder_table() -> list[dict[str, Any]]:
    """The catalog as rows (name, modality, dim, pooling, lake_name, source, available, reason)."""
    rows = []
    for spec in list_encoders():
        ok, reason = is_available(spec)
        rows.append({**dataclasses.asdict(spec), "lake_name": spec.lake_name, "available": ok, "reason": reason})
    return rows
