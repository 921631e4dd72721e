"""Extraction tasks: thin wrappers that read/write the lake and call the library."""

from __future__ import annotations

import functools
import json
import os
import tempfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from prefect import task

from vlalign.datasets.readers import DatasetError, DatasetSource, ingest_batches
from vlalign.engine.extract import ShardSpec, embed_shard, plan_shards, shard_is_done, verify_shard
from vlalign.lake.digest import digest_json, digest_values, finish, hasher, update, update_file
from vlalign.lake.schemas import ITEM_SCHEMA, REJECT_SCHEMA
from vlalign.lake.store import Lake


@task(name="ingest_items")
def ingest_items(lake_root: str, source: DatasetSource) -> dict:
    """Read a data set into canonical items in the lake (rewritten only when its content changed).

    The reader's batches stream into a temporary Parquet file (one row group each, every batch sorted by
    image_id, item_id; emoji and coco are one batch), with the digest computed as they pass; the read kept
    by the sweep's validation is used when there is one (vlalign.datasets.readers.ingest_batches). The new index is
    validated in full before anything in the lake changes: a data set that reads as empty (an empty
    annotations file, a filter that matches nothing) raises and leaves the lake's items and rejects as they were."""
    lake = Lake.open(lake_root)
    with ItemsWriter() as w:
        for batch in ingest_batches(source):
            w.add(batch.items.sort_by([("image_id", "ascending"), ("item_id", "ascending")]), batch.rejects)
        if w.rows == 0:
            raise DatasetError(
                f"data set {source.name!r}: no usable items ({w.n_rejects} rejected on read, e.g. "
                f"{w.first_reason or 'the source is empty'}); nothing in the lake was changed"
            )
        if w.duplicates:
            raise DatasetError(f"data set {source.name!r}: item ids are not unique; nothing in the lake was changed")
        return w.commit(lake, source.name, source.to_dict())


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
        self._spills = [open(os.path.join(self._dir.name, f"column-{k}"), "wb") for k in range(len(ITEM_DIGEST_KEYS) + 1)]
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
        self._items.add_key_value_metadata({"vlalign": json.dumps({"digest": digest, "source": source}, sort_keys=True)})
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
    """A hasher-shaped sink (vlalign.lake.digest.update feeds it) that writes to a file."""

    def __init__(self, f):
        self.update = f.write


def store_items(lake: Lake, name: str, items: pa.Table, rejects: list[dict], source: dict) -> dict:
    """Write a data set's items (only when their content changed) and its read rejects."""
    with ItemsWriter() as w:
        w.add(items, rejects)
        return w.commit(lake, name, source)


@task(name="ingest_prompts")
def ingest_prompts(lake_root: str, name: str, items: pa.Table) -> dict:
    """Store a data set's class prompts (vlalign.datasets.prompts) as the text-only data set ``name``."""
    return store_items(Lake.open(lake_root), name, items, [], {"format": "prompts", "name": name})


@task(name="plan_shards")
def plan_extraction(
    lake_root: str,
    dataset: str,
    encoders: list,  # EncoderSpec
    digests: dict[str, str],
    shard_size: int,
    domains: list[str] | None = None,
    langs: list[str] | None = None,
    parts: dict[str, list[str]] | None = None,
) -> tuple[list[ShardSpec], list[ShardSpec]]:
    """(all shards, shards still to compute) for every encoder over the selected domains/languages
    (``parts``: {encoder: its domains or languages}, to embed some parts with some encoders only)."""
    import pyarrow.compute as pc
    from prefect import get_run_logger

    lake = Lake.open(lake_root)
    items = lake.read_table(lake.items_path(dataset), columns=["image_id", "domain", "image", "image_bytes", "caption_id", "lang", "caption"])
    if domains:
        items = items.filter(pc.is_in(items["domain"], pa.array(domains)))
    if langs:
        items = items.filter(pc.is_in(items["lang"], pa.array(langs)))
    if items.num_rows == 0:
        raise ValueError(f"data set {dataset!r}: no items left for domains={domains} langs={langs}")
    planned = []
    for enc in encoders:
        planned += [s for s in plan_shards(lake, dataset, items, enc, digests[enc.name], shard_size)
                    if parts is None or enc.name not in parts or s.part in parts[enc.name]]
    todo = []
    for s in planned:
        _, why = verify_shard(lake, s)
        if why is not None:
            todo.append(s)
            if why != "missing":
                get_run_logger().warning("shard %s failed verification: %s; recomputing it", s.path, why)
    return planned, todo


def preload_encoders(names: list[str], device: str | None = None) -> None:
    """Load ``names`` into this process's encoder cache in a background thread and return at once (run on every
    Dask worker with ``client.run`` while the flow ingests). A shard that needs a model being loaded waits for it
    (vlalign.encoders' load locks); one that fails to load here is loaded, or fails, in its shard as usual."""
    import threading

    from vlalign.encoders import load_encoder

    def load() -> None:
        for name in names:
            try:
                load_encoder(name, device=device)
            except Exception:  # noqa: BLE001 - the shard reports it
                pass

    threading.Thread(target=load, name="vlalign-preload", daemon=True).start()


@functools.lru_cache(maxsize=1)
def _worker_threads() -> int | None:
    """This worker's share of its host's cores: cores / (task slots of all workers on the same host).

    Dask's nanny starts workers with OMP/MKL/OpenBLAS threads = 1; torch is pinned here instead, so workers
    sharing a machine do not oversubscribe its cores. None outside a Dask worker."""
    try:
        from distributed import get_worker

        worker = get_worker()
    except (ImportError, ValueError):
        return None
    host = worker.address.rsplit(":", 1)[0]
    try:
        infos = worker.client.scheduler_info(n_workers=-1)["workers"].values()
        slots = sum(w.get("nthreads", 1) for w in infos if w.get("host") == host.split("://")[-1]) or worker.state.nthreads
    except Exception:  # an old scheduler or a transient error: assume this worker is alone on its host
        slots = worker.state.nthreads
    return max(1, (os.cpu_count() or 1) // max(1, slots))


def auto_batch_size(device: str | None) -> int:
    """8 on CPU (activations stay under glibc's mmap threshold: fewer page faults, measured faster), 64 on CUDA."""
    import torch

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    return 64 if device.startswith("cuda") else 8


@task(name="embed_shard", task_run_name="embed-{spec.lake_name}-{spec.part}-{spec.shard}")
def embed_shard_task(spec: ShardSpec, batch_size: int | None = None, device: str | None = None, threads: int | None = None) -> dict:
    """Embed one shard; the encoder is loaded once per worker process and reused.

    The shard's lock is held while it is computed: a concurrent run that planned the same shard waits,
    then finds it done and computes nothing."""
    from vlalign.encoders import load_encoder

    lake = Lake.open(spec.lake_root)
    with lake.lock(f"shard-{digest_json(spec.path)}"):
        if shard_is_done(lake, spec):  # written meanwhile by another run
            return {"path": spec.path, "encoder": spec.encoder, "rows": 0, "rejects": 0, "seconds": 0.0, "reused": True}
        batch_size = batch_size or auto_batch_size(device)
        encoder = load_encoder(spec.encoder, device=device, threads=threads or _worker_threads(), batch_size=batch_size)
        return embed_shard(lake, spec, encoder, batch_size=batch_size)
