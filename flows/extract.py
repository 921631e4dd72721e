"""The extraction flow: ingest a data set, plan shards, embed the missing ones across Dask workers."""

from __future__ import annotations

import time

from prefect import flow, get_run_logger
from prefect.futures import as_completed

from tasks.extract import embed_shard_task, ingest_items, plan_extraction
from vlalign.encoders import preflight, weights_digest
from vlalign.lake import Lake
from vlalign.readers import DatasetSource


class Progress:
    """Per-encoder progress: units done, rate and ETA, logged as each shard lands."""

    def __init__(self, todo, log):
        self.log = log
        self.total: dict[str, int] = {}
        self.done: dict[str, int] = {}
        self.start: dict[str, float] = {}
        for s in todo:
            self.total[s.encoder] = self.total.get(s.encoder, 0) + s.size
            self.done.setdefault(s.encoder, 0)
        self.t0 = time.perf_counter()

    def update(self, summary: dict, size: int) -> None:
        enc = summary["encoder"]
        self.done[enc] += size
        elapsed = time.perf_counter() - self.t0
        rate = self.done[enc] / elapsed if elapsed > 0 else float("nan")
        left = self.total[enc] - self.done[enc]
        eta = left / rate if rate > 0 else float("inf")
        self.log.info(
            "%-22s %6d/%-6d items  %7.1f items/s  ETA %5.0fs  (%s, %d rejects)",
            enc, self.done[enc], self.total[enc], rate, eta, summary["path"].rsplit("/", 3)[-2] + "/" + summary["path"].rsplit("/", 1)[-1], summary["rejects"],
        )


@flow(name="extract", log_prints=True)
def extract_flow(
    dataset: DatasetSource,
    encoders: list[str],
    lake_root: str = "lake",
    shard_size: int = 256,
    domains: list[str] | None = None,
    langs: list[str] | None = None,
    batch_size: int = 32,
    device: str | None = None,
    threads: int | None = None,
) -> dict:
    """Embed ``dataset`` with every encoder in ``encoders``; only shards not already in the lake run."""
    log = get_run_logger()
    specs = preflight(encoders)  # fails on unknown or unloadable names before any shard runs
    digests = {s.name: weights_digest(s) for s in specs}
    lake = Lake.open(lake_root)
    ingested = ingest_items(lake.root, dataset)
    planned, todo = plan_extraction(lake.root, dataset.name, specs, digests, shard_size, domains, langs)
    log.info(
        "%s: %d items (%d rejected on read); %d shards planned for %d encoders, %d already in the lake, %d to compute",
        dataset.name, ingested["items"], ingested["rejects"], len(planned), len(specs), len(planned) - len(todo), len(todo),
    )
    progress = Progress(todo, log)
    futures = {
        embed_shard_task.submit(s, batch_size=batch_size, device=device, threads=threads): s for s in todo
    }
    summaries = []
    for fut in as_completed(list(futures)):
        summary = fut.result()
        summaries.append(summary)
        progress.update(summary, futures[fut].size)
    rejects = ingested["rejects"] + sum(s["rejects"] for s in summaries)
    result = {
        "dataset": dataset.name,
        "encoders": [s.name for s in specs],
        "shards_planned": len(planned),
        "shards_computed": len(summaries),
        "rows_computed": sum(s["rows"] for s in summaries),
        "rejects": rejects,
        "lake": lake.root,
    }
    log.info("extraction done: %s", result)
    return result
