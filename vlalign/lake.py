"""The lake: where every table lives, and how files get there atomically.

Layout (root is a local folder or any fsspec URL such as ``s3://bucket/lake``)::

    items/dataset=<d>/items.parquet                              canonical items (one row per caption)
    rejects/dataset=<d>/stage=<stage>/part-<key>.parquet         bad items, with their reasons
    embeddings/dataset=<d>/encoder=<e>/part=<p>/shard=<k>.parquet one file per shard
    results/<table>/run=<id>/<cell>.parquet                      analysis results
    runs/run=<id>.json                                           one record per run

Every file is written to a temporary name beside its target and renamed into place, so a killed
run never leaves a half-written file under a name that a rerun trusts. Leftover temporaries are
removed by :meth:`Lake.clean_tmp` at the start of the next run.
"""

from __future__ import annotations

import io
import json
import os
import posixpath
import uuid
from dataclasses import dataclass
from typing import Any, Iterable

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq

TMP_MARK = ".tmp-"


@dataclass(frozen=True)
class Lake:
    """A lake rooted at ``root`` (a local path or an fsspec URL)."""

    root: str

    @classmethod
    def open(cls, root: str | os.PathLike) -> "Lake":
        root = os.fspath(root)
        if "://" not in root:
            root = os.path.abspath(root)
        return cls(root.rstrip("/"))

    # ----------------------------------------------------------------- plumbing
    @property
    def fs(self) -> fsspec.AbstractFileSystem:
        return fsspec.core.url_to_fs(self.root)[0]

    @property
    def is_local(self) -> bool:
        return "://" not in self.root or self.root.startswith("file://")

    def path(self, *parts: str) -> str:
        return posixpath.join(self.root, *parts)

    def exists(self, path: str) -> bool:
        return self.fs.exists(path)

    def glob(self, pattern: str) -> list[str]:
        fs = self.fs
        found = fs.glob(pattern)
        proto = self.root.split("://", 1)[0] + "://" if not self.is_local else ""
        return sorted(p if p.startswith(proto) else proto + p for p in found if TMP_MARK not in p)

    # ----------------------------------------------------------------- atomic writes
    def write_bytes(self, path: str, data: bytes) -> str:
        """Write ``data`` to ``path`` atomically (temporary file in the same folder, then rename)."""
        fs = self.fs
        parent = posixpath.dirname(path)
        fs.makedirs(parent, exist_ok=True)
        tmp = f"{path}{TMP_MARK}{uuid.uuid4().hex[:12]}"
        if self.is_local:
            with open(tmp, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        else:  # object stores: a single PUT is atomic; write then move for symmetry
            with fs.open(tmp, "wb") as f:
                f.write(data)
            fs.mv(tmp, path)
        return path

    def write_table(self, path: str, table: pa.Table, metadata: dict[str, Any] | None = None) -> str:
        """Write a Parquet file atomically; ``metadata`` goes into the schema as JSON under 'vlalign'."""
        if metadata is not None:
            md = dict(table.schema.metadata or {})
            md[b"vlalign"] = json.dumps(metadata, sort_keys=True).encode()
            table = table.replace_schema_metadata(md)
        buf = io.BytesIO()
        pq.write_table(table, buf, compression="zstd")
        return self.write_bytes(path, buf.getvalue())

    def write_json(self, path: str, obj: Any) -> str:
        return self.write_bytes(path, json.dumps(obj, indent=2, sort_keys=True, default=str).encode())

    def read_json(self, path: str) -> Any:
        with self.fs.open(path, "rb") as f:
            return json.loads(f.read())

    def read_table(self, path: str, columns: list[str] | None = None) -> pa.Table:
        with self.fs.open(path, "rb") as f:
            return pq.read_table(f, columns=columns)

    def read_metadata(self, path: str) -> dict[str, Any] | None:
        """The 'vlalign' metadata of a Parquet file, or None if the file is missing or unreadable."""
        try:
            with self.fs.open(path, "rb") as f:
                md = pq.read_schema(f).metadata or {}
        except (FileNotFoundError, OSError, pa.ArrowInvalid):
            return None
        raw = md.get(b"vlalign")
        return json.loads(raw) if raw else None

    def clean_tmp(self, under: str = "") -> list[str]:
        """Remove temporaries left by killed writers under ``under`` (relative to the root)."""
        fs = self.fs
        base = self.path(under) if under else self.root
        if not fs.exists(base):
            return []
        removed = []
        for p in fs.find(base):
            if TMP_MARK in posixpath.basename(p):
                fs.rm(p)
                removed.append(p)
        return removed

    # ----------------------------------------------------------------- well-known places
    def items_path(self, dataset: str) -> str:
        return self.path("items", f"dataset={dataset}", "items.parquet")

    def rejects_path(self, dataset: str, stage: str, key: str) -> str:
        return self.path("rejects", f"dataset={dataset}", f"stage={stage}", f"part-{key}.parquet")

    def shard_path(self, dataset: str, encoder: str, part: str, shard: int) -> str:
        return self.path(
            "embeddings", f"dataset={dataset}", f"encoder={encoder}", f"part={part}", f"shard={shard:05d}.parquet"
        )

    def result_path(self, table: str, run_id: str, cell: str) -> str:
        return self.path("results", table, f"run={run_id}", f"{cell}.parquet")

    def run_path(self, run_id: str) -> str:
        return self.path("runs", f"run={run_id}.json")


def rows_to_table(rows: Iterable[dict[str, Any]], schema: pa.Schema) -> pa.Table:
    """A table with exactly ``schema`` from a list of dicts (missing keys become nulls)."""
    rows = list(rows)
    return pa.Table.from_pylist(rows, schema=schema)
