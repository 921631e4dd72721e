"""Weight digests: 16 hex characters identifying the weights an encoder runs with.

Catalog entries: the weight file(s) inside the package plus the entry's recipe string (loader and
preprocessing version), so a change in how an encoder is run also changes the identity. Hub names:
the resolved hub commit of the repo (from the HF cache, or asked from the hub when online); local
folders: their files; timm weights outside the hub: the downloaded file. File hashes are cached
per process; hub revisions are looked up every time (a later download may move them).

The digests are part of stored shard identities, so their byte layout is frozen: the sha256 (from
vlalign.datalake.digest) is fed plain, NUL-separated pieces -- not digest.update's length-prefixed values.
"""
from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any, Iterable

from vlalign.datalake.digest import digest_json, finish, hasher, update_file
from vlalign.datalake.store import atomic_write_bytes, cache_home
from vlalign.encoders.base import EncoderError, EncoderSpec
from vlalign.encoders.catalog import _CATALOG, _pkg_dir
from vlalign.encoders.hub import _hub_commit, _torch_hub_file
from vlalign.encoders.probes import is_available
from vlalign.encoders.resolve import _resolve_hub, get_encoder

__all__ = ["weights_digest"]

_LEN = 16  # hex characters kept; frozen (stored identities), whatever digest.DIGEST_LEN becomes


def _hash_files(h: Any, files: Iterable[Path], root: Path | None = None) -> None:
    """Feed `h` (a digest.hasher()) each file as its name (relative to `root`, else the bare name),
    a NUL, then its bytes."""
    for f in files:
        rel = str(f.relative_to(root)) if root is not None else f.name
        h.update(rel.encode() + b"\0")
        update_file(h, f)


@functools.lru_cache(maxsize=64)
def _digest_files(name: str) -> str:
    """Catalog entries and local folders: hash the files once per process, and once per machine while none of the
    files changes (:func:`_remembered`: a weight file of 50 MB costs 0.3 s to hash, every command)."""
    entry = _CATALOG.get(name)
    if entry is not None:
        ok, reason = is_available(entry.spec)
        if not ok:
            raise EncoderError(reason)
        root = _pkg_dir(entry.package)
        assert root is not None
        head, files = entry.recipe + "\0", list(entry.files(root))
    else:
        spec, info = _resolve_hub(name)
        assert info.local_dir
        head, root = f"{name}\0pooling={spec.pooling}\0", Path(info.local_dir)
        files = sorted(p for p in root.rglob("*")
                       if p.is_file() and not any(s.startswith(".") for s in p.relative_to(root).parts))

    def compute() -> str:
        h = hasher()
        h.update(head.encode())
        _hash_files(h, files, root)
        return finish(h, _LEN)

    return _remembered(head, files, compute)


def _remembered(head: str, files: list[Path], compute) -> str:
    """``compute()``, or the value it gave for the same ``head`` and files, each with the same size, mtime, inode and
    ctime (a rewrite changes the ctime, which no user can set back): kept in <cache>/weights-digests.json. A cache
    that cannot be read or written is ignored."""
    try:
        sig = [head] + [[str(f), *((st := f.stat()).st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns)] for f in files]
    except OSError:
        return compute()  # a missing file: hashing names it
    key = digest_json(sig)
    path = Path(cache_home()) / "weights-digests.json"
    try:
        known = json.loads(path.read_text())
    except (OSError, ValueError):
        known = {}
    if isinstance(known, dict) and isinstance(known.get(key), str):
        return known[key]
    value = compute()
    try:
        known = known if isinstance(known, dict) else {}
        known[key] = value
        atomic_write_bytes(str(path), json.dumps(known).encode(), "digests")
    except OSError:
        pass
    return value


def _digest(name: str) -> str:
    if name in _CATALOG or _resolve_hub(name)[1].local_dir:
        return _digest_files(name)
    # hub names: cheap (reads the cache's refs/main), not memoised: a later download may move it
    spec, info = _resolve_hub(name)
    h = hasher()
    h.update(f"{name}\0pooling={spec.pooling}\0".encode())
    if info.repo_id:
        commit = _hub_commit(info.repo_id)
        if commit is None:
            raise EncoderError(f"cannot resolve the hub revision of '{name}' ({info.repo_id}): load it once "
                               "with network access (it fills the HF cache) or unset HF_HUB_OFFLINE")
        h.update(f"{info.repo_id}@{commit}".encode())
        return finish(h, _LEN)
    path = _torch_hub_file(info.url or "")
    if not path.is_file():
        raise EncoderError(f"cannot digest '{name}': its weights ({info.url}) are not downloaded yet; load it first")
    _hash_files(h, [path])
    return finish(h, _LEN)


def weights_digest(spec: EncoderSpec | str) -> str:
    """First 16 hex of a sha256 identifying the weights (file hashes cached per process).

    Catalog entries: the weight file(s) inside the package plus a short recipe string (loader and
    preprocessing version), so a change in how an encoder is run also changes the identity.
    Hub names: the resolved hub commit of the repo (from the HF cache, or asked from the hub when
    online); local folders: their files; timm weights outside the hub: the downloaded file."""
    return _digest(get_encoder(spec if isinstance(spec, str) else spec.name).name)
