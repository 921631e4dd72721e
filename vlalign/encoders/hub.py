"""Where hub weights are, without downloading anything: the local Hugging Face cache, the torch hub
cache (timm weights hosted outside the HF hub), whether the hub host is reachable, and the hub
revision (commit) of a repo.

Locations are read from the environment at call time (HF_HUB_CACHE, HF_HOME, XDG_CACHE_HOME,
TORCH_HOME); huggingface_hub itself reads them once, at import.
"""
from __future__ import annotations

import functools
import os
import socket
import threading
from pathlib import Path
from urllib.parse import urlparse

from vlalign._compat import hub_offline

__all__: list[str] = []


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
    return urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co")).hostname or "huggingface.co"


def _hub_commit(repo_id: str) -> str | None:
    """The commit the local HF cache resolved for `repo_id` (refs/main), else asked from the hub when
    online; None when neither is possible."""
    ref = _hf_hub_cache() / f"models--{repo_id.replace('/', '--')}" / "refs" / "main"
    try:
        return ref.read_text().strip() or None
    except OSError:
        pass
    if hub_offline() or not _reachable(_hub_host()):
        return None
    try:
        from huggingface_hub import HfApi  # optional (comes with timm/transformers), slow: only when online

        return HfApi().model_info(repo_id).sha
    except Exception:  # noqa: BLE001
        return None
