"""Hub-name parsing and lake names.

A hub name is ``<prefix><model>[@<pool>]`` with prefix ``timm/``, ``st/`` or ``hf/``; the ``@pool``
suffix is recognised only when it looks like a pooling mode (lower-case identifier), so a local
folder containing "@" still parses. A lake name is the filesystem-safe form of a name plus its
pooling ("mobilenetv2__avg", "st--all-roberta-large-v1__mean"): "/" becomes "--", any character
outside [A-Za-z0-9._-] becomes "-", and names that could collide that way (or longer than 120
characters) get the first 8 hex of a sha256 of the original name. Lake names are part of stored
paths: the rules, and the hash, must never change.
"""
from __future__ import annotations

import re

from vlalign.datalake.digest import finish, hasher

__all__ = ["HUB_PREFIXES"]

HUB_PREFIXES = ("timm/", "st/", "hf/")

_SAFE = re.compile(r"[^A-Za-z0-9._-]")
_POOL = re.compile(r"[a-z][a-z0-9_]*")


def _split_prefix(name: str) -> tuple[str | None, str]:
    """("timm/", "resnet18@max") for "timm/resnet18@max"; (None, name) for a non-hub name."""
    for p in HUB_PREFIXES:
        if name.startswith(p):
            return p, name[len(p):]
    return None, name


def _split_pool(rest: str) -> tuple[str, str | None]:
    """("resnet18", "max") for "resnet18@max"; (rest, None) when there is no pooling suffix."""
    base, sep, pool = rest.rpartition("@")
    if sep and base and _POOL.fullmatch(pool):
        return base, pool
    return rest, None


def _strip_pool_suffix(name: str) -> str:
    """A hub name without its "@pool" suffix (catalog names are returned as they are)."""
    prefix, rest = _split_prefix(name)
    if prefix is None:
        return name
    base, _pool = _split_pool(rest)
    return prefix + base


def _lake_name(name: str, pooling: str) -> str:
    """Filesystem-safe, unique name of an encoder and its pooling (see the module docstring)."""
    base = _strip_pool_suffix(name)
    safe = base.replace("/", "--")
    # "--" is our separator for "/", and any character outside [A-Za-z0-9._-] is replaced:
    # both could make two names collide, so such names get a short hash of the original.
    needs_hash = "--" in base or "__" in base or bool(_SAFE.search(safe)) or safe.startswith(".")
    safe = _SAFE.sub("-", safe).lstrip(".")
    if len(safe) > 120:
        safe, needs_hash = safe[:120], True
    if needs_hash:
        h = hasher()
        h.update(base.encode())  # plain sha256 of the name (not length-prefixed): stored lake names use it
        safe = f"{safe}-{finish(h, 8)}"
    return f"{safe}__{_SAFE.sub('-', pooling)}"
