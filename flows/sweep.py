"""The sweep flow: extraction for every (data set, encoder), pairing and splits in DuckDB, then every
analysis cell (encoder combinations x settings) fanned out over Dask. Cells are shared by content across
runs: a rerun, or a run that overlaps another, computes only the cells that are not in the lake yet."""

from __future__ import annotations

import time
from typing import Callable

from prefect import flow, get_run_logger
from prefect.futures import as_completed

from vlalign.datalake.catalog import refresh_or_log
from vlalign.datalake.names import check_name
from vlalign.datalake.runs import record_extraction, recorded_run, write_record
from vlalign.datalake.store import Lake
from vlalign.datasets.prompts import prompt_items, prompts_dataset
from vlalign.datasets.readers import DatasetSource
from vlalign.encoders import get_encoder
from vlalign.encoders.layers import OUTPUT
from vlalign.engine.cells import Embeddings, cell_is_done, english_only_reason, plan_cells
from vlalign.engine.concept_dictionary import concept_domains
from vlalign.engine.spec import SweepSpec
from vlalign.engine.world import CheckedSpec, check_spec, main_selections
from vlalign.flows.extract import run_extraction
from vlalign.flows.runtime import batch_handle, batch_of, configure_environment, dask_task_runner, heavy_runner
from vlalign.tasks.analysis import explain_best_pairs, pair_items, score_cell, write_concepts
from vlalign.tasks.extract import ingest_prompts


def checked_spec(spec: str | dict | CheckedSpec | None) -> CheckedSpec:
    """The spec a flow was given, checked (vlalign.engine.world.check_spec) unless the caller did it already:
    the CLI checks before Prefect and Dask start and passes the CheckedSpec; a deployment passes a path."""
    return spec if isinstance(spec, CheckedSpec) else check_spec(spec)


def _encoder_parts(sweep: SweepSpec, ds_name: str, main: list, sizes: dict) -> dict[str, set[str]]:
    """{encoder: the domains (vision) or languages (text) it embeds in data set ``ds_name``}: the main grid's
    for every encoder, plus what each study needs from the encoders it names."""
    parts: dict[str, set[str]] = {}
    for v in sweep.vision_encoders:
        parts[v] = {d for d, _ in main}
    for t in sweep.text_encoders:
        parts[t] = {lang for _, lang in main}
    cd = sweep.cross_domain
    if cd:
        have = {d for d, _ in sizes}
        for p in cd.pairs:
            for v in (cd.vision_encoders or sweep.vision_encoders):
                parts[v] |= {d for d in (p.base, p.query) if d in have}
    cl = sweep.cross_lingual
    if cl:
        for t in (cl.text_encoders or sweep.text_encoders):
            parts[t] |= {lang for lang in cl.langs if english_only_reason(t, lang, cl.multilingual) is None}
    if sweep.concepts:
        have = {d for d, _ in sizes}
        for v in (sweep.concepts.vision_encoders or sweep.vision_encoders):
            parts[v] |= set(concept_domains(sweep, ds_name, main)) & have
    return parts


def _main_parts(sweep: SweepSpec, main: list) -> dict[str, list[str]]:
    """{encoder: its parts in the main grid}: where the cka cells, and so their inner layers, are."""
    out = {v: sorted({d for d, _ in main}) for v in sweep.vision_encoders}
    return {**out, **{t: sorted({lang for _, lang in main}) for t in sweep.text_encoders}}


def prepare_cells(sweep: SweepSpec, sizes: dict, lake: Lake, record: dict, device=None, batch_size=None,
                  layers: dict | None = None) -> list:
    """Extraction (missing shards only), pairing, class prompts, and the plan of every cell; records the files used.
    ``layers``: {encoder: ((index, name), ...)} (vlalign.engine.layers.spec_layers), the layers of the cka cells."""
    main = main_selections(sweep, sizes)
    layers = layers or {}
    layer_embeddings: dict[tuple[str, str, str], tuple[Embeddings, ...]] = {}
    pairs: dict[str, dict] = {}
    embeddings: dict[tuple[str, str, str], Embeddings] = {}
    prompts: dict[tuple[str, str], tuple] = {}
    concepts: dict[str, tuple] = {}
    encoders = list(sweep.vision_encoders) + list(sweep.text_encoders)
    for ds in sweep.datasets:
        source = ds.source()
        parts = _encoder_parts(sweep, ds.name, main[ds.name], sizes[ds.name])
        domains = sorted({p for e in sweep.vision_encoders for p in parts[e]})
        langs = sorted({p for e in sweep.text_encoders for p in parts[e]})
        ext = run_extraction(source, encoders, lake, sweep.shard_size, domains, langs,
                             batch_size or sweep.batch_size, device, parts={k: sorted(v) for k, v in parts.items()},
                             layers={k: tuple(i for i, _ in v) for k, v in layers.items()},
                             layer_parts=_main_parts(sweep, main[ds.name]))
        record_extraction(record, lake, ext)
        for name in encoders:
            enc = get_encoder(name)
            for part in parts[name]:
                shards = [s for s in ext["planned"] if s.encoder == enc.name and s.part == part]
                embeddings[(ds.name, name, part)] = Embeddings.of(
                    lake, name, enc.lake_name, part, [s for s in shards if s.layer == OUTPUT])
                if name in layers and part in _main_parts(sweep, main[ds.name])[name]:
                    layer_embeddings[(ds.name, name, part)] = tuple(
                        Embeddings.of(lake, name, enc.lake_name, part, [s for s in shards if s.layer == i], i, lname)
                        for i, lname in layers[name])
        selections = sorted({(d, lang) for d in domains for lang in langs if (d, lang) in sizes[ds.name]})
        pairs[ds.name] = {(d, lang): pair_items(lake, ds.name, d, lang) for d, lang in selections}
        if sweep.classification:
            classes: dict[str, set] = {f: set() for f in sweep.classification.label_fields}
            for sel in main[ds.name]:
                table = lake.read_table(pairs[ds.name][sel][0])
                for f in classes:
                    classes[f] |= {v for v in table[f].to_pylist() if v is not None}
            classes_l = {f: sorted(v) for f, v in classes.items()}
            name = prompts_dataset(ds.name, classes_l, sweep.classification.templates)
            items = prompt_items(classes_l, sweep.classification.templates)
            texts = list(sweep.classification.text_encoders or sweep.text_encoders)
            embedded = _embed_text_dataset(sweep, lake, name, items, texts, record, device, batch_size)
            prompts.update({(ds.name, t): v for t, v in embedded.items()})
        if sweep.concepts:
            concepts[ds.name] = _concept_inputs(sweep, ds, lake, main[ds.name], record, device, batch_size)
    return plan_cells(sweep, lake, pairs, embeddings, main, prompts, concepts, layer_embeddings)


def _embed_text_dataset(sweep: SweepSpec, lake: Lake, name: str, items, texts: list[str], record: dict, device,
                        batch_size) -> dict[str, tuple]:
    """Store a derived text-only data set (class prompts, concept aliases) as ``name`` and embed it with every
    encoder in ``texts`` (missing shards only): {encoder: (Embeddings, items path, items digest)}."""
    ingested = ingest_prompts(lake, name, items)
    ext = run_extraction(DatasetSource(name, "prompts"), texts, lake, sweep.shard_size, None, ["en"],
                         batch_size or sweep.batch_size, device, ingested=ingested)
    record_extraction(record, lake, ext)
    out = {}
    for t in texts:
        enc = get_encoder(t)
        shards = [s for s in ext["planned"] if s.encoder == enc.name]
        out[t] = (Embeddings.of(lake, t, enc.lake_name, "en", shards), ingested["path"], ingested["digest"])
    return out


def _concept_inputs(sweep: SweepSpec, ds, lake: Lake, main: list, record: dict, device, batch_size) -> tuple:
    """The data set's concept dictionary: its members table in the lake, and its aliases embedded by every
    text encoder of the study (a text-only data set ``<dataset>.aliases-<digest>``)."""
    d = write_concepts(lake, ds.name, ds.format, concept_domains(sweep, ds.name, main))
    texts = list(sweep.concepts.text_encoders or sweep.text_encoders)
    aliases = _embed_text_dataset(sweep, lake, d.aliases_dataset, d.alias_items, texts, record, device, batch_size)
    return d.present, d.members_path, d.members_digest, aliases


@flow(name="plan-sweep")
def plan_sweep(spec: str | dict | CheckedSpec | None = None, lake_root: str = "lake") -> list:
    """The cells of a sweep, without computing them (extracts what is missing); for benchmarks and tools."""
    checked = checked_spec(spec)
    return prepare_cells(checked.spec, checked.sizes, Lake.open(lake_root), {}, layers=checked.layers)


def _score_all(todo: list, on_done: Callable[[], None]) -> tuple[int, list[str]]:
    """Submit every cell to the running flow's task runner and log progress as they land, calling ``on_done``
    for each finished cell: (cells computed now, not found done meanwhile; the errors of the cells that failed).
    Every cell runs to its end, whatever the others do."""
    log = get_run_logger()
    futures = [score_cell.submit(c) for c in todo]
    t0 = time.perf_counter()
    errors, computed = [], 0
    for k, fut in enumerate(as_completed(futures), 1):
        try:
            out = fut.result()
        except Exception as e:  # keep collecting: finished cells are already in the lake
            errors.append(str(e))
            log.error("cell failed: %s", e)
            continue
        computed += not out["reused"]
        on_done()
        rate = k / (time.perf_counter() - t0)
        log.info("cells %d/%d  %.2f cells/s  ETA %.0fs  (%s)", k, len(todo), rate, (len(todo) - k) / rate, out["label"])
    return computed, errors


@flow(name="score-cells")
def score_cells_on_cluster(cells: str, on_done: str) -> tuple[int, list[str]]:
    """The cells of a large sweep (``cells``: a handle, vlalign.flows.runtime.batch_handle; ``on_done``: the handle
    of the function that counts a finished cell), on the Dask cluster of this sub-flow's task runner."""
    return _score_all(batch_of(cells), batch_of(on_done))


def _score(todo: list, log, record: dict) -> tuple[int, list[str]]:
    """Score the cells ``todo``, counting them in ``record['cells_done']`` (written by the record's heartbeat: a
    killed run shows what it had finished): on the flow's own task runner, or, in automatic mode above the light
    limit (vlalign.flows.runtime.heavy_runner), in a sub-flow on a LocalCluster."""
    if not todo:
        return 0, []

    def done() -> None:
        record["cells_done"] += 1

    runner = heavy_runner("cells", len(todo))
    if runner is None:
        return _score_all(todo, done)
    log.info("%d cells: on a LocalCluster", len(todo))
    with batch_handle(todo) as cells, batch_handle(done) as counter:
        return score_cells_on_cluster.with_options(task_runner=runner)(cells, counter)


@flow(name="sweep", log_prints=True)
def sweep_flow(
    spec: str | dict | CheckedSpec | None = None,
    lake_root: str = "lake",
    run_id: str | None = None,
    device: str | None = None,
    batch_size: int | None = None,
) -> dict:
    """Run (or resume) the sweep ``spec`` (a YAML path or a mapping; None: the built-in default; or a
    CheckedSpec, checked by the caller). ``device`` and ``batch_size`` (default: the spec's, else automatic)
    only affect speed, not results."""
    log = get_run_logger()
    checked = checked_spec(spec)  # every check, before any work
    sweep, sizes = checked.spec, checked.sizes
    run_id = check_name(run_id or sweep.default_run_id, "run id")
    lake = Lake.open(lake_root)
    removed = lake.clean_tmp()
    if removed:
        log.info("removed %d temporaries left by dead writers", len(removed))
    t_start = time.perf_counter()
    with recorded_run(lake, run_id, "sweep", sweep.source, on_exit=lambda lk: refresh_or_log(lk, log)) as record:
        cells = prepare_cells(sweep, sizes, lake, record, device, batch_size, checked.layers)
        for c in cells:
            for table in c.tables:
                record["cells"].setdefault(table, []).append(c.cell_id)
        todo = [c for c in cells if not cell_is_done(c)]
        record.update(cells_total=len(cells), cells_done=len(cells) - len(todo))
        write_record(lake, record)
        refresh_or_log(lake, log)
        log.info("run %s: %d analysis cells, %d already in the lake, %d to compute", run_id, len(cells),
                 len(cells) - len(todo), len(todo))
        computed, errors = _score(todo, log, record)
        record["cells_computed"] = computed
        if errors:
            try:
                record["cells_done"] = sum(cell_is_done(c) for c in cells)  # what the lake holds now
            except Exception:  # noqa: BLE001 - counting must not replace the real error
                pass
            raise RuntimeError(f"{len(errors)} of {len(todo)} cells failed; finished cells are kept, "
                               f"`vlalign resume {run_id}` computes the rest. First error: {errors[0]}")
        record["cells_done"] = len(cells)
        if sweep.explain:
            try:  # in this process: it needs both encoders as differentiable functions, and takes seconds
                got = explain_best_pairs(lake, run_id, sweep)
            except Exception as e:  # noqa: BLE001 - the cells are done: the run completes, the record says why
                record["explain"] = {"error": f"{type(e).__name__}: {e}"}
                log.error("explain failed (the run's cells are all done): %s: %s", type(e).__name__, e)
            else:
                record["explain"] = {"run_id": got["run_id"], "items": got["items"]}
                log.info("explain: %d best-matched pairs%s (%s); pictures in %s", len(got["items"]),
                         " (done before)" if got["reused"] else "", got["run_id"], got["dir"])
    return {"run_id": run_id, "lake": lake.root, "cells": len(cells), "computed": computed,
            "seconds": time.perf_counter() - t_start}


@flow(name="scheduled-sweep", log_prints=True)
def scheduled_sweep(
    spec: str | None = None,
    lake_root: str = "lake",
    run_id: str | None = None,
    dask_address: str | None = None,
    workers: int | None = None,
) -> dict:
    """Entry point for deployments (prefect.yaml): the sweep on Dask, a fresh run id per scheduled run."""
    configure_environment()  # before Dask starts: its worker processes inherit these defaults
    from prefect.runtime import flow_run  # the flow run's context, only where a deployment runs this flow

    checked = check_spec(spec)  # before Dask starts
    rid = run_id or f"{checked.spec.name}-{flow_run.scheduled_start_time:%Y%m%dT%H%M}"
    return sweep_flow.with_options(task_runner=dask_task_runner(dask_address, workers))(checked, lake_root, rid)
