"""`vlalign verify`: check every file the run records list against what it should hold, name each damaged or
misplaced file, and (with ``repair``) set it aside so that resuming the runs recomputes exactly those.

What is checked, per kind of file (paths relative to the lake's root, as the records list them):

* run records (``runs/run=<id>.json``): a JSON object with a run id that matches the file name;
* items (``items/dataset=<d>/items.parquet``): readable in full, with the canonical item columns;
* embedding shards (``embeddings/dataset=<d>/encoder=<e>[/layer=<i>]/part=<p>/size=<s>/shard=<k>.parquet``): the
  identity in the file's metadata names the data set, encoder, layer, part and shard size of its path (a shard copied over another
  encoder's is misplaced), and its contents match the checksum recorded when it was written;
* result cells (``results/<table>/cell=<id>.parquet``): readable in full, the identity in the metadata digests to the
  cell id of the file name, and every row carries that cell id.

Repair never deletes: a damaged file is moved to ``_damaged/<time>/<its path>`` (so a run or a reader no longer
trusts it), and the runs that listed it are reported for ``vlalign resume``, which recomputes what is missing and
reuses everything else.
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass
from datetime import datetime, timezone

import pyarrow as pa

from vlalign.datalake.digest import digest_json
from vlalign.datalake.schemas import ITEM_SCHEMA
from vlalign.datalake.store import TMP_MARK, Lake
from vlalign.engine.extract import shard_checksum

_SHARD = re.compile(r"embeddings/dataset=([^/]+)/encoder=([^/]+)/(?:layer=([0-9]+)/)?part=([^/]+)/size=([0-9]+)/"
                    r"shard=([0-9]+)\.parquet$")
_CELL = re.compile(r"results/([^/]+)/cell=([^/]+)\.parquet$")
_RUN = re.compile(r"runs/run=([^/]+)\.json$")


@dataclass(frozen=True)
class Problem:
    """A damaged or misplaced file: its path relative to the lake, what it is, what is wrong, the runs listing it."""

    path: str
    kind: str
    reason: str
    runs: tuple[str, ...]

    def line(self) -> str:
        return f"{self.kind:<6} {self.path}: {self.reason} (listed by {', '.join(self.runs) or 'no run'})"


def _read(lake: Lake, rel: str) -> tuple[pa.Table | None, dict | None, str | None]:
    """(table, vlalign metadata, None) or (None, None, why the file cannot be read in full)."""
    path = lake.path(rel)
    if not lake.exists(path):
        return None, None, "missing"
    try:
        table = lake.read_table(path)
    except Exception as e:  # truncated, bit-flipped, not Parquet: any decoding error
        return None, None, f"unreadable ({type(e).__name__}: {str(e).splitlines()[0][:120] if str(e) else ''})"
    return table, lake.read_metadata(path), None


def check_shard(lake: Lake, rel: str) -> str | None:
    """Why the shard at ``rel`` is damaged or misplaced, or None."""
    where = _SHARD.search(rel)
    if where is None:
        return "not a shard path"
    table, md, why = _read(lake, rel)
    if why:
        return why
    ident = (md or {}).get("identity") or {}
    dataset, encoder, layer, part, size, shard = where.groups()
    expect = {"dataset": dataset, "encoder": encoder, "part": part, "layer": None if layer is None else int(layer)}
    found = {k: ident.get(k) for k in expect}  # the output's shards name no layer (as in the first lakes)
    if found != expect:
        return f"holds another shard: its identity says {found}, its path {expect}"
    start, stop = ident.get("start"), ident.get("stop")
    if not (isinstance(start, int) and isinstance(stop, int) and start == int(shard) * int(size)
            and stop - start <= int(size)):
        return f"holds rows {start}..{stop}, not those of shard {int(shard)} of size {int(size)}"
    try:
        actual = shard_checksum(table)
    except Exception as e:  # a table without the shard's columns
        return f"not a shard table ({type(e).__name__})"
    if actual != (md or {}).get("checksum"):
        return f"checksum mismatch (recorded {(md or {}).get('checksum')}, contents {actual})"
    return None


def check_cell(lake: Lake, rel: str) -> str | None:
    """Why the result cell at ``rel`` is damaged or misplaced, or None."""
    where = _CELL.search(rel)
    if where is None:
        return "not a result cell path"
    cell_id = where.group(2)
    table, md, why = _read(lake, rel)
    if why:
        return why
    md = md or {}
    if md.get("cell_id") != cell_id or digest_json(md.get("identity")) != cell_id:
        return f"holds cell {md.get('cell_id')!r}, not {cell_id!r}"
    if "cell_id" in table.column_names and set(table["cell_id"].to_pylist()) - {cell_id}:
        return "holds rows of another cell"
    return None


def check_items(lake: Lake, rel: str) -> str | None:
    table, _, why = _read(lake, rel)
    if why:
        return why
    missing = [n for n in ITEM_SCHEMA.names if n not in table.column_names]
    return f"no item columns {missing}" if missing else None


def check_record(lake: Lake, rel: str) -> tuple[dict | None, str | None]:
    try:
        record = lake.read_json(lake.path(rel))
    except (OSError, ValueError) as e:
        return None, f"unreadable ({str(e).splitlines()[0][:120]})"
    where = _RUN.search(rel)
    if not isinstance(record, dict) or (where and record.get("run_id") != where.group(1)):
        return None, "not the record of this run"
    return record, None


def verify_lake(lake: Lake, run_ids: list[str] | None = None, progress=None) -> tuple[list[Problem], int]:
    """(problems, files checked) over the files the lake's run records list (only ``run_ids``' if given)."""
    problems: list[Problem] = []
    listed: dict[tuple[str, str], list[str]] = {}  # (kind, rel) -> runs
    for path in lake.glob(lake.path("runs", "run=*.json")):
        rel = lake.relpath(path)
        run_id = _RUN.search(rel).group(1)
        if run_ids and run_id not in run_ids:
            continue
        record, why = check_record(lake, rel)
        if why:
            problems.append(Problem(rel, "record", why, (run_id,)))
            continue
        for kind, rels in (record.get("files") or {}).items():
            for r in rels if kind in ("items", "embeddings") else ():
                listed.setdefault((kind, r), []).append(run_id)
        for table, ids in (record.get("cells") or {}).items():
            for cid in ids:
                listed.setdefault(("cells", lake.relpath(lake.result_path(table, cid))), []).append(run_id)
    checks = {"items": check_items, "embeddings": check_shard, "cells": check_cell}
    for n, ((kind, rel), runs) in enumerate(sorted(listed.items())):
        why = checks[kind](lake, rel)
        if why:
            problems.append(Problem(rel, {"embeddings": "shard", "cells": "cell"}.get(kind, kind), why, tuple(runs)))
        if progress and (n + 1) % 200 == 0:
            progress(n + 1, len(listed))
    return problems, len(listed) + len({p.path for p in problems if p.kind == "record"})


def set_aside(lake: Lake, problems: list[Problem]) -> str:
    """Move every damaged file (not missing ones, not run records) to ``_damaged/<time>/``; returns that folder."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    folder = posixpath.join("_damaged", stamp)
    for p in problems:
        if p.kind == "record" or p.reason == "missing" or TMP_MARK in p.path:
            continue
        lake.move(lake.path(p.path), lake.path(folder, p.path))
    return lake.path(folder)
