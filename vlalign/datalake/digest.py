"""The one digest of the project: a short, stable sha256 of bytes, strings, files or JSON-able objects.

Every identity in the lake (shard inputs, weights, cells, specs, checksums) is built from these two
functions, so a digest means the same thing wherever it appears.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Iterable

DIGEST_LEN = 16  # hex characters kept: 64 bits, plenty for identities inside one lake


def hasher() -> "hashlib._Hash":
    """A fresh sha256, for callers that stream many pieces (use :func:`finish` to cut it)."""
    return hashlib.sha256()


def update(h: "hashlib._Hash", value: Any) -> None:
    """Feed one value, length-prefixed so that ('ab', 'c') and ('a', 'bc') differ."""
    b = value if isinstance(value, (bytes, bytearray, memoryview)) else str(value).encode()
    h.update(len(b).to_bytes(8, "little"))
    h.update(b)


def update_file(h: "hashlib._Hash", path: Path, chunk: int = 1 << 20) -> None:
    """Feed a file's bytes (streamed)."""
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)


def finish(h: "hashlib._Hash", length: int = DIGEST_LEN) -> str:
    return h.hexdigest()[:length]


def digest_values(values: Iterable[Any], length: int = DIGEST_LEN) -> str:
    """Digest of a sequence of str/bytes values (each length-prefixed)."""
    h = hasher()
    for v in values:
        update(h, v)
    return finish(h, length)


def digest_json(obj: Any, length: int = DIGEST_LEN) -> str:
    """Digest of a JSON-able object (keys sorted; tuples and lists alike)."""
    return finish(hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()), length)
