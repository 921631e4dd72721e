"""The extraction flow: ingest a data set, plan shards, embed the missing ones across Dask workers."""

from __future__ import annotations

import os
import threading
import time

from prefect import flow, get_run_logger
from prefect.context import FlowRunContext
from prefect.futures import as_completed

from vlalign.datalake.catalog import refresh_or_log
from vlalign.datalake.digest import digest_json
from vlalign.datalake.runs import record_extraction, recorded_run
from vlalign.datalake.store import Lake
from vlalign.datasets.readers import DatasetSource
from vlalign.encoders import preflight, weights_digest
from vlalign.encoders.cache import preload_encoders
from vlalign.engine.extract import by_range
from vlalign.flows.runtime import Automatic, batch_handle, batch_of, heavy_runner
from vlalign.tasks.extract import embed_shard_task, ingest_items, plan_extraction


class Progress:
    """Per-encoder progress, logged as each shard lands: units done, rate and ETA.

    The rate is measured from an encoder's first finished shard on, so model loading does not skew it."""

    def __init__(self, todo, log):
        self.log = log
        self.total: dict[str, int] = {}
        self.done: dict[str, int] = {}
        self.first: dict[str, tuple[float, int]] = {}
        for s in todo:
            self.total[s.encoder] = self.total.get(s.encoder, 0) + s.size
            self.done.setdefault(s.encoder, 0)

    def update(self, summary: dict, size: int) -> None:
        enc, now = summary["encoder"], time.perf_counter()
        self.done[enc] += size
        t_first, n_first = self.first.setdefault(enc, (now, self.done[enc]))
        left = self.total[enc] - self.done[enc]
        if now > t_first:
            rate = (self.done[enc] - n_first) / (now - t_first)
            speed = f"{rate:7.1f} items/s  ETA {left / rate if rate > 0 else float('inf'):5.0f}s"
        else:
            speed = "  (warming up: rate after the next shard)"
        where = "/".join(summary["path"].rsplit("/", 2)[-2:])
        self.log.info("%-20s %6d/%-6d items  %s  %s, %d rejects", enc, self.done[enc], self.total[enc], speed, where, summary["rejects"])


class Preload:
    """Start the flow's Dask cluster and have every worker load the encoders, in a background thread, while
    the parent reads the data set and plans: cluster start-up and model loading overlap the ingest.

    Only for a first extraction (some encoder has no embeddings of this data set in the lake yet): a rerun
    that finds its shards done never starts a cluster for nothing. Best effort: a failure is logged and the
    shards then load their models themselves. Join before submitting (the task runner's client is created once)."""

    def __init__(self, thread=None):
        self.thread = thread

    @classmethod
    def start(cls, lake: Lake, dataset: str, specs, device: str | None) -> "Preload":
        ctx = FlowRunContext.get()
        runner = getattr(ctx, "task_runner", None)
        if runner is None or not hasattr(runner, "client"):  # not a DaskTaskRunner: nothing to warm
            return cls()
        fresh = [s.name for s in specs
                 if not lake.exists(lake.path("embeddings", f"dataset={dataset}", f"encoder={s.lake_name}"))]
        if not fresh:
            return cls()
        log = get_run_logger()

        def warm() -> None:
            try:
                runner.client.run(preload_encoders, fresh, device)  # returns at once: loads in a thread
            except Exception as e:  # noqa: BLE001 - an optimisation only
                log.warning("could not preload encoders on the workers: %s", e)

        t = threading.Thread(target=warm, name="vlalign-preload", daemon=True)
        t.start()
        return cls(t)

    def join(self) -> None:
        if self.thread is not None:
            self.thread.join()


def _embed(todo: list, batch_size: int | None, device: str | None, threads: int | None) -> list[dict]:
    """Submit every shard of ``todo`` to the running flow's task runner; log progress as they land."""
    groups = by_range(todo)  # the layers of one item range come from one forward pass: one task
    progress = Progress([s for s, _ in groups], get_run_logger())
    futures = {embed_shard_task.submit(s, batch_size=batch_size, device=device, threads=threads, more=more): s
               for s, more in groups}
    summaries = []
    for fut in as_completed(list(futures)):
        summary = fut.result()
        summaries.append(summary)
        progress.update(summary, futures[fut].size)
    return summaries


@flow(name="embed-shards")
def embed_shards_on_cluster(shards: str, batch_size: int | None = None, device: str | None = None,
                            threads: int | None = None) -> list[dict]:
    """The shards of a large extraction (``shards``: a handle, vlalign.flows.runtime.batch_handle), on the Dask
    cluster of this sub-flow's task runner."""
    return _embed(batch_of(shards), batch_size, device, threads)


def embed_shards(todo: list, batch_size: int | None, device: str | None, threads: int | None) -> list[dict]:
    """Embed the shards ``todo``: on the flow's own task runner, or, in automatic mode above the light limit
    (vlalign.flows.runtime.heavy_runner), in a sub-flow on a LocalCluster. Nothing to do: nothing starts."""
    if not todo:
        return []
    units = sum(s.size for s, _ in by_range(todo))
    runner = heavy_runner("items", units)
    if runner is None:
        if threads is None and isinstance(FlowRunContext.get().task_runner, Automatic):
            # shards of one encoder run one after another (one model per process): encoders share the cores
            encoders = len({s.encoder for s in todo})
            threads = max(1, (os.cpu_count() or 1) // min(encoders, os.cpu_count() or 1))
        return _embed(todo, batch_size, device, threads)
    get_run_logger().info("%d shards (%d units to embed): on a LocalCluster", len(todo), units)
    with batch_handle(todo) as shards:
        return embed_shards_on_cluster.with_options(task_runner=runner)(shards, batch_size, device, threads)


def run_extraction(
    dataset: DatasetSource,
    encoders: list[str],
    lake: Lake,
    shard_size: int = 256,
    domains: list[str] | None = None,
    langs: list[str] | None = None,
    batch_size: int | None = None,
    device: str | None = None,
    threads: int | None = None,
    parts: dict[str, list[str]] | None = None,
    ingested: dict | None = None,
    layers: dict[str, tuple[int, ...]] | None = None,
    layer_parts: dict[str, list[str]] | None = None,
) -> dict:
    """Embed ``dataset`` with every encoder in ``encoders``; only shards not already in the lake run.

    ``parts``: {encoder: domains or languages} restricts some encoders to some parts (studies that need
    one more domain or language for a few encoders only). ``layers``: {encoder: its layers (vlalign.encoders.layers;
    default the output only)}, every layer of an item range from one forward pass; ``layer_parts``: {encoder: the
    parts its inner layers are embedded in} (default: all its parts). ``ingested``: the data set is already in the lake
    (``ingest_prompts``), do not read it. Runs its tasks on the task runner of the calling flow."""
    log = get_run_logger()
    specs = preflight(encoders)  # fails on unknown or unloadable names before any shard runs
    digests = {s.name: weights_digest(s) for s in specs}
    warm = Preload.start(lake, dataset.name, specs, device)  # workers load models while this process ingests
    ingested = ingested or ingest_items(lake, dataset)
    planned, todo = plan_extraction(lake, dataset.name, specs, digests, shard_size, domains, langs, parts, layers,
                                    layer_parts)
    warm.join()
    log.info(
        "%s: %d items (%d rejected on read); %d shards planned for %d encoders, %d already in the lake, %d to compute",
        dataset.name, ingested["items"], ingested["rejects"], len(planned), len(specs), len(planned) - len(todo), len(todo),
    )
    summaries = embed_shards(todo, batch_size, device, threads)
    result = {
        "dataset": dataset.name,
        "encoders": [s.name for s in specs],
        "shards_planned": len(planned),
        "shards_computed": len(summaries),
        "rows_computed": sum(s["rows"] for s in summaries),
        "rejects": ingested["rejects"] + sum(s["rejects"] for s in summaries),
        "lake": lake.root,
        "items_path": ingested["path"],
        "rejects_path": ingested["rejects_path"],
        "planned": planned,
    }
    log.info("extraction of %s done: %d shards planned, %d computed, %d units, %d rejects", dataset.name,
             result["shards_planned"], result["shards_computed"], result["rows_computed"], result["rejects"])
    return result


@flow(name="extract", log_prints=True)
def extract_flow(
    dataset: DatasetSource,
    encoders: list[str],
    lake_root: str = "lake",
    shard_size: int = 256,
    domains: list[str] | None = None,
    langs: list[str] | None = None,
    batch_size: int | None = None,
    device: str | None = None,
    threads: int | None = None,
) -> dict:
    """:func:`run_extraction` as a run of its own, with a run record (``extract-<dataset>-<digest>``) that lists
    the files it used, so its items, rejects and embeddings appear in the SQL tables."""
    lake = Lake.open(lake_root)
    lake.clean_tmp()
    settings = {"dataset": dataset.to_dict(), "encoders": encoders, "shard_size": shard_size, "domains": domains, "langs": langs}
    run_id = f"extract-{dataset.name[:100]}-{digest_json(settings)[:10]}"
    log = get_run_logger()
    with recorded_run(lake, run_id, "extract", settings, on_exit=lambda lk: refresh_or_log(lk, log)) as record:
        result = run_extraction(dataset, encoders, lake, shard_size, domains, langs, batch_size, device, threads)
        record_extraction(record, lake, result)
    return {**{k: v for k, v in result.items() if k != "planned"}, "run_id": run_id}
