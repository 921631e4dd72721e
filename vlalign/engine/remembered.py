"""What a plan remembers between runs so that a rerun of finished work reads nothing it need not read: the shards
found whole (:class:`VerifiedShards`) and the sources ingested (:class:`IngestedSources`), each trusted only while
the files it was made from keep their signatures. Kept beside the lake's locks (Lake.lock_path); a cache that
cannot be read or written is ignored, and the work is then checked in full."""

from __future__ import annotations

import json
from pathlib import Path

from vlalign.datalake.digest import digest_json
from vlalign.datalake.store import Lake, atomic_write_bytes


class VerifiedShards:
    """The shards a plan found whole (identity and checksum), with each file's signature then (Lake.stat_key: size,
    mtime, inode and ctime; an object's ETag): a later plan trusts a shard whose file did not change since, instead
    of reading and checksumming every shard again (a no-op rerun of the default sweep read 330 MB for that). Any
    rewrite of the file, by a run, a copy or a restore, changes its signature; `vlalign verify` still reads every
    file. Kept beside the lake's locks (vlalign.datalake.store.Lake.lock_path); a cache that cannot be read or
    written is ignored."""

    FILE = "verified-shards.json"

    def __init__(self, lake: Lake):
        self.lake, self.new, self.entries, self.path = lake, {}, {}, None
        try:
            self.path = Path(lake.lock_path("verified")).with_name(self.FILE)
            got = json.loads(self.path.read_text())
            self.entries = got if isinstance(got, dict) else {}
        except (OSError, ValueError):
            pass  # none yet, or unreadable: verify every shard

    def _entry(self, s) -> list | None:
        key = self.lake.stat_key(s.path)
        return None if key is None else [key, digest_json(s.identity)]

    def unchanged(self, s) -> bool:
        old = self.entries.get(self.lake.relpath(s.path))
        return old is not None and old == self._entry(s)

    def before(self, s) -> list | None:
        """The shard file's signature before it is verified (:meth:`add` stores it only if still the same)."""
        return self._entry(s)

    def add(self, s, before: list | None) -> None:
        entry = self._entry(s)
        if entry is not None and entry == before:  # the file verified is the file whose signature is kept
            self.new[self.lake.relpath(s.path)] = entry

    def save(self) -> None:
        if not self.new or self.path is None:
            return
        try:
            atomic_write_bytes(str(self.path), json.dumps({**self.entries, **self.new}).encode(), "verified")
        except OSError:
            pass  # a read-only lake: the next plan verifies again


class IngestedSources:
    """What each data set's last ingest read: its source's fingerprint (vlalign.datasets.readers.source_fingerprint:
    the settings and the files' sizes, times and inodes) and the ingest's result. An ingest of an unchanged source,
    whose items and rejects files are still the ones it wrote (their digest), reads nothing: a no-op rerun of the
    default sweep spent 2 s reading and hashing 38,120 items for that. Kept beside the lake's locks; a cache that
    cannot be read or written is ignored."""

    FILE = "ingested-sources.json"

    def __init__(self, lake: Lake):
        self.lake, self.entries, self.path = lake, {}, None
        try:
            self.path = Path(lake.lock_path("ingested")).with_name(self.FILE)
            got = json.loads(self.path.read_text())
            self.entries = got if isinstance(got, dict) else {}
        except (OSError, ValueError):
            pass  # none yet, or unreadable: ingest reads the source

    def unchanged(self, name: str, fingerprint: str) -> dict | None:
        entry = self.entries.get(name)
        if not isinstance(entry, dict) or entry.get("fingerprint") != fingerprint:
            return None
        result = entry.get("result") or {}
        try:
            same = ((self.lake.read_metadata(self.lake.items_path(name)) or {}).get("digest") == result.get("digest")
                    and (self.lake.read_metadata(self.lake.read_rejects_path(name)) or {}).get("digest")
                    == result.get("digest"))
        except Exception:  # noqa: BLE001 - any doubt: read the source
            return None
        if not same:
            return None
        return {**result, "path": self.lake.items_path(name), "rejects_path": self.lake.read_rejects_path(name)}

    def remember(self, name: str, fingerprint: str, result: dict) -> None:
        if self.path is None:
            return
        keep = {k: result[k] for k in ("digest", "items", "rejects")}
        try:
            atomic_write_bytes(str(self.path), json.dumps({**self.entries, name: {"fingerprint": fingerprint,
                                                                                  "result": keep}}).encode(), "ingested")
        except OSError:
            pass  # a read-only lake: the next ingest reads the source again
