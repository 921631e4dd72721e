"""A data set's canonical items and read rejects in the lake: written in streamed batches, digested as they pass,
placed atomically, and rewritten only when their content changed."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from vlalign.datalake.digest import digest_values, finish, hasher, update, update_file
from vlalign.datalake.schemas import ITEM_SCHEMA, REJECT_SCHEMA
from vlalign.datalake.store import Lake

__all__ = ["ITEM_DIGEST_KEYS", "ItemsWriter", "store_items"]


ITEM_DIGEST_KEYS = ["item_id", "image_id", "image", "caption_id", "caption", "lang", "label", "sublabel", "domain"]


class ItemsWriter:
    """A data set's items and read rejects, written as batches arrive into local temporaries, then placed in the
    lake (atomically, by Lake.write_bytes) by :meth:`commit`; nothing is placed when the writer is left early.

    The items digest is the one of every lake so far: digest_values of each column's values, column after
    column (``ITEM_DIGEST_KEYS``, then a digest per inline image). To compute it while streaming, each column's
    length-prefixed values are spilled to a temporary file as its batch passes, and the spills are hashed in
    order at the end: the same bytes reach the hasher as when the whole table was in memory."""

    def __init__(self):
        self._dir = tempfile.TemporaryDirectory(prefix="vlalign-items-")
        self._items_path = os.path.join(self._dir.name, "items.parquet")
        self._rejects_path = os.path.join(self._dir.name, "rejects.parquet")
        # store_schema=False: the 'vlalign' metadata, known only at the end (the digest), then goes into the
        # footer's key-value metadata, which is what Lake.read_metadata reads back
        self._items = pq.ParquetWriter(self._items_path, ITEM_SCHEMA, compression="zstd", store_schema=False)
        self._rejects = pq.ParquetWriter(self._rejects_path, REJECT_SCHEMA, compression="zstd", store_schema=False)
        self._spills = [open(os.path.join(self._dir.name, f"column-{k}"), "wb")
                        for k in range(len(ITEM_DIGEST_KEYS) + 1)]
        self._ids: set[str] = set()
        self.rows = self.n_rejects = self.duplicates = 0
        self.first_reason: str | None = None

    def __enter__(self) -> "ItemsWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        for f in self._spills:
            f.close()
        for w in (self._items, self._rejects):
            if w.is_open:
                w.close()
        self._dir.cleanup()

    def add(self, items: pa.Table, rejects: list[dict] = ()) -> None:
        """One batch: its items (ITEM_SCHEMA columns, in the order to store) and its read rejects."""
        items = items.select(ITEM_SCHEMA.names).cast(ITEM_SCHEMA)
        if items.num_rows:
            self._items.write_table(items)
        for key, f in zip(ITEM_DIGEST_KEYS, self._spills):
            sink = _Spill(f)
            for v in items[key].to_pylist():
                update(sink, v)
        sink = _Spill(self._spills[-1])
        for b in items["image_bytes"].to_pylist():
            update(sink, digest_values([b]) if b is not None else "")
        for i in items["item_id"].to_pylist():
            if i in self._ids:
                self.duplicates += 1
            self._ids.add(i)
        self.rows += items.num_rows
        if rejects:
            self._rejects.write_table(pa.Table.from_pylist(list(rejects), schema=REJECT_SCHEMA))
            self.n_rejects += len(rejects)
            self.first_reason = self.first_reason or rejects[0]["reason"]

    def digest(self) -> str:
        h = hasher()
        for f in self._spills:
            f.flush()
            update_file(h, f.name)
        return finish(h)

    def commit(self, lake: Lake, name: str, source: dict) -> dict:
        """Place the items (only when their digest changed) and the read rejects (always) in the lake."""
        digest = self.digest()
        path = lake.items_path(name)
        meta = json.dumps({"digest": digest, "source": source}, sort_keys=True)
        self._items.add_key_value_metadata({"vlalign": meta})
        self._items.close()
        self._rejects.add_key_value_metadata({"vlalign": json.dumps({"digest": digest}, sort_keys=True)})
        self._rejects.close()
        if (lake.read_metadata(path) or {}).get("digest") != digest:
            lake.write_bytes(path, Path(self._items_path).read_bytes())
        rejects_path = lake.read_rejects_path(name)
        lake.write_bytes(rejects_path, Path(self._rejects_path).read_bytes())
        return {"path": path, "rejects_path": rejects_path, "digest": digest, "items": self.rows,
                "rejects": self.n_rejects}


class _Spill:
    """A hasher-shaped sink (vlalign.datalake.digest.update feeds it) that writes to a file."""

    def __init__(self, f):
        self.update = f.write


def store_items(lake: Lake, name: str, items: pa.Table, rejects: list[dict], source: dict) -> dict:
    """Write a data set's items (only when their content changed) and its read rejects."""
    with ItemsWriter() as w:
        w.add(items, rejects)
        return w.commit(lake, name, source)
