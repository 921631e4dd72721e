"""Extraction tasks: thin wrappers that read/write the lake and call the library."""

from __future__ import annotations

import functools
import os

import pyarrow as pa
from prefect import task

from vlalign.extract import ShardSpec, embed_shard, plan_shards, shard_is_done, verify_shard
from vlalign.lake import Lake
from vlalign.digest import digest_json, digest_values
from vlalign.readers import REJECT_SCHEMA, DatasetError, DatasetSource, read_dataset


@task(name="ingest_items")
def ingest_items(lake_root: str, source: DatasetSource) -> dict:
    """Read a data set into canonical items in the lake (rewritten only when its content changed).

    The new index is validated in full before anything in the lake changes: a data set that reads as
    empty (an empty annotations file, a filter that matches nothing) raises and leaves the lake's items
    and rejects as they were."""
    lake = Lake.open(lake_root)
    result = read_dataset(source)
    items = result.items.sort_by([("image_id", "ascending"), ("item_id", "ascending")])
    if items.num_rows == 0:
        raise DatasetError(
            f"data set {source.name!r}: no usable items ({len(result.rejects)} rejected on read, e.g. "
            f"{result.rejects[0]['reason'] if result.rejects else 'the source is empty'}); nothing in the lake was changed"
        )
    if len(set(items["item_id"].to_pylist())) != items.num_rows:
        raise DatasetError(f"data set {source.name!r}: item ids are not unique; nothing in the lake was changed")
    return store_items(lake, source.name, items, result.rejects, source.__dict__)


def store_items(lake: Lake, name: str, items: pa.Table, rejects: list[dict], source: dict) -> dict:
    """Write a data set's items (only when their content changed) and its read rejects."""
    keys = ["item_id", "image_id", "image", "caption_id", "caption", "lang", "label", "sublabel", "domain"]
    digest = digest_values(
        [v for k in keys for v in items[k].to_pylist()]
        + [digest_values([b]) if b is not None else "" for b in items["image_bytes"].to_pylist()]
    )
    path = lake.items_path(name)
    if (lake.read_metadata(path) or {}).get("digest") != digest:
        lake.write_table(path, items, metadata={"digest": digest, "source": source})
    rejects_path = lake.read_rejects_path(name)
    lake.write_table(rejects_path, pa.Table.from_pylist(rejects, schema=REJECT_SCHEMA), {"digest": digest})
    return {"path": path, "rejects_path": rejects_path, "digest": digest, "items": items.num_rows,
            "rejects": len(rejects)}


@task(name="ingest_prompts")
def ingest_prompts(lake_root: str, name: str, items: pa.Table) -> dict:
    """Store a data set's class prompts (vlalign.prompts) as the text-only data set ``name``."""
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
