"""The sweep flow: extraction for every (data set, encoder), pairing and splits in DuckDB, then every
analysis cell (encoder combinations x settings) fanned out over Dask. Reruns compute only what is missing."""

from __future__ import annotations

import time
from datetime import datetime, timezone

from prefect import flow, get_run_logger
from prefect.futures import as_completed

from vlalign.flows.extract import run_extraction
from vlalign.flows.runtime import dask_task_runner
from vlalign.tasks.analysis import match_pair, pair_items, score_cka
from vlalign.analysis import CKACell, Enc, MatchCell, cell_is_done, embeddings_digest
from vlalign.catalog import refresh_catalog
from vlalign.encoders import get_encoder
from vlalign.lake import Lake
from vlalign.readers import DatasetSource
from vlalign.spec import SweepSpec, load_spec, parse_spec, validate_against_world


def resolve_spec(spec: str | dict | None) -> SweepSpec:
    """A spec mapping, a YAML path, or None for the built-in default."""
    return parse_spec(spec) if isinstance(spec, dict) else load_spec(spec)


def write_run(lake: Lake, record: dict) -> None:
    lake.write_json(lake.run_path(record["run_id"]), record)


def plan_cells(spec: SweepSpec, lake: Lake, run_id: str, pairs: dict) -> list:
    """Every analysis cell of the sweep, in a fixed order."""
    cells: list = []
    for ds in spec.datasets:
        for (domain, lang), pairs_path in pairs[ds.name].items():
            vis = [get_encoder(v) for v in spec.vision_encoders]
            txt = [get_encoder(t) for t in spec.text_encoders]
            venc = [Enc(v.name, v.lake_name, embeddings_digest(lake, ds.name, v.lake_name, domain)) for v in vis]
            tenc = [Enc(t.name, t.lake_name, embeddings_digest(lake, ds.name, t.lake_name, lang)) for t in txt]
            common = dict(run_id=run_id, lake_root=lake.root, dataset=ds.name, domain=domain, lang=lang, pairs_path=pairs_path)
            if spec.cka:
                for kernel in spec.cka.kernels:
                    for v in venc:
                        cells.append(CKACell(**common, vision=v, texts=tuple(tenc), kernel=kernel,
                                             debiased=spec.cka.debiased, shuffled=spec.cka.shuffled,
                                             bootstrap=spec.cka.bootstrap, seed=spec.seeds[0]))
            if spec.has_matching:
                for setting in spec.settings():
                    for v in venc:
                        for t in tenc:
                            cells.append(MatchCell(
                                **common, vision=v, text=t, base_size=setting.base_size, query_size=setting.query_size,
                                base_selection=setting.base_selection, stretch=setting.stretch, seed=setting.seed,
                                matching=spec.matching, retrieval=spec.retrieval, baselines=spec.baselines,
                                qap_restarts=spec.qap_restarts, qap_kernel=spec.qap_kernel,
                                local_cka_kernel=spec.local_cka_kernel))
    return cells


@flow(name="sweep", log_prints=True)
def sweep_flow(
    spec: str | dict | None = None,
    lake_root: str = "lake",
    run_id: str | None = None,
    device: str | None = None,
    batch_size: int | None = None,
) -> dict:
    """Run (or resume) the sweep ``spec`` (a YAML path or a mapping; None: the built-in default).
    ``device`` and ``batch_size`` (default: the spec's, else automatic) only affect speed, not results."""
    log = get_run_logger()
    sweep = resolve_spec(spec)
    sizes = validate_against_world(sweep)  # every check that needs the catalog or the data, before any work
    run_id = run_id or sweep.default_run_id
    lake = Lake.open(lake_root)
    lake.clean_tmp("results")
    record = {
        "run_id": run_id, "spec": sweep.source, "status": "running", "flow": "sweep",
        "started_at": datetime.now(timezone.utc).isoformat(), "finished_at": None,
        "cells_total": None, "cells_done": None, "error": None,
    }
    previous = lake.read_json(lake.run_path(run_id)) if lake.exists(lake.run_path(run_id)) else None
    if previous:
        record["started_at"] = previous.get("started_at") or record["started_at"]
    write_run(lake, record)
    t_start = time.perf_counter()
    try:
        pairs: dict[str, dict] = {}
        for ds in sweep.datasets:
            source = DatasetSource(ds.name, ds.format, ds.annotations, ds.images)
            selections = sorted(sizes[ds.name])
            domains = sorted({d for d, _ in selections})
            langs = sorted({lang for _, lang in selections})
            run_extraction(source, list(sweep.vision_encoders) + list(sweep.text_encoders), lake.root,
                           sweep.shard_size, domains, langs, batch_size or sweep.batch_size, device)
            pairs[ds.name] = {(d, lang): pair_items(lake.root, ds.name, d, lang) for d, lang in selections}

        cells = plan_cells(sweep, lake, run_id, pairs)
        todo = [c for c in cells if not cell_is_done(c)]
        record["cells_total"] = len(cells)
        write_run(lake, record)
        log.info("run %s: %d analysis cells, %d already done, %d to compute", run_id, len(cells), len(cells) - len(todo), len(todo))
        futures = [score_cka.submit(c) if isinstance(c, CKACell) else match_pair.submit(c) for c in todo]
        t0 = time.perf_counter()
        errors = []
        for k, fut in enumerate(as_completed(futures), 1):
            try:
                out = fut.result()
            except Exception as e:  # keep collecting: finished cells are already in the lake
                errors.append(str(e))
                log.error("cell failed: %s", e)
                continue
            rate = k / (time.perf_counter() - t0)
            log.info("cells %d/%d  %.2f cells/s  ETA %.0fs  (%s %s)", k, len(todo), rate, (len(todo) - k) / rate, out["table"], out["key"])
        if errors:
            raise RuntimeError(f"{len(errors)} of {len(todo)} cells failed; finished cells are kept, "
                               f"`vlalign resume {run_id}` computes the rest. First error: {errors[0]}")
        record.update(status="completed", cells_done=len(cells))
        return {"run_id": run_id, "lake": lake.root, "cells": len(cells), "computed": len(todo),
                "seconds": time.perf_counter() - t_start}
    except BaseException as e:
        record.update(status="failed", error=f"{type(e).__name__}: {e}")
        if record["cells_total"]:
            record["cells_done"] = sum(cell_is_done(c) for c in cells)
        raise
    finally:
        record["finished_at"] = datetime.now(timezone.utc).isoformat()
        write_run(lake, record)
        if lake.is_local:
            refresh_catalog(lake)


@flow(name="scheduled-sweep", log_prints=True)
def scheduled_sweep(
    spec: str | None = None,
    lake_root: str = "lake",
    run_id: str | None = None,
    dask_address: str | None = None,
    workers: int | None = None,
) -> dict:
    """Entry point for deployments (prefect.yaml): the sweep on Dask, a fresh run id per scheduled run."""
    from prefect.runtime import flow_run

    rid = run_id or f"{resolve_spec(spec).name if spec else 'emoji-default'}-{flow_run.scheduled_start_time:%Y%m%dT%H%M}"
    return sweep_flow.with_options(task_runner=dask_task_runner(dask_address, workers))(spec, lake_root, rid)
