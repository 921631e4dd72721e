"""Extraction tasks: thin wrappers around the library (vlalign.engine.extract), given the lake the flow opened."""

from __future__ import annotations

import pyarrow as pa
from prefect import get_run_logger, task

from vlalign.datalake.items import store_items
from vlalign.datalake.store import Lake
from vlalign.datasets.readers import DatasetSource
from vlalign.engine.extract import ShardSpec, compute_shard, ingest_dataset, plan_dataset_shards


@task(name="ingest_items")
def ingest_items(lake: Lake, source: DatasetSource) -> dict:
    """Read a data set into canonical items in the lake (:func:`vlalign.engine.extract.ingest_dataset`)."""
    return ingest_dataset(lake, source)


@task(name="ingest_prompts")
def ingest_prompts(lake: Lake, name: str, items: pa.Table) -> dict:
    """Store a data set's class prompts (vlalign.datasets.prompts) as the text-only data set ``name``."""
    return store_items(lake, name, items, [], {"format": "prompts", "name": name})


@task(name="plan_shards")
def plan_extraction(
    lake: Lake,
    dataset: str,
    encoders: list,  # EncoderSpec
    digests: dict[str, str],
    shard_size: int,
    domains: list[str] | None = None,
    langs: list[str] | None = None,
    parts: dict[str, list[str]] | None = None,
    layers: dict[str, tuple[int, ...]] | None = None,
    layer_parts: dict[str, list[str]] | None = None,
) -> tuple[list[ShardSpec], list[ShardSpec]]:
    """(all shards, shards still to compute) (:func:`vlalign.engine.extract.plan_dataset_shards`); a shard that
    failed verification is logged."""
    planned, todo = plan_dataset_shards(lake, dataset, encoders, digests, shard_size, domains, langs, parts, layers,
                                         layer_parts)
    for s, why in todo:
        if why != "missing":
            get_run_logger().warning("shard %s failed verification: %s; recomputing it", s.path, why)
    return planned, [s for s, _ in todo]


@task(name="embed_shard", task_run_name="embed-{spec.lake_name}-{spec.part}-{spec.shard}")
def embed_shard_task(spec: ShardSpec, batch_size: int | None = None, device: str | None = None,
                     threads: int | None = None, more: tuple[ShardSpec, ...] = ()) -> dict:
    """Embed one shard (and ``more``: its other layers) unless another run did
    (:func:`vlalign.engine.extract.compute_shard`)."""
    return compute_shard(spec, batch_size, device, threads, more)
