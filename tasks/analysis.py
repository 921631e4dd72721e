"""Analysis tasks: pair in DuckDB, then score one cell and write it to the lake."""

from __future__ import annotations

import functools

from prefect import get_run_logger, task

from vlalign.datalake.store import Lake
from vlalign.engine.analysis import write_cell
from vlalign.engine.cells import Cell, cell_is_done, engine_version
from vlalign.engine.concept_dictionary import ConceptDictionary, write_concept_dictionary
from vlalign.engine.explain import explain_best
from vlalign.engine.pairing import write_pairs
from vlalign.engine.scoring import compute_cell
from vlalign.report.explain_figure import plot_explanation


@task(name="pair_items")
def pair_items(lake: Lake, dataset: str, domain: str, lang: str) -> tuple[str, str]:
    """sql/pairs.sql over the lake's items (:func:`vlalign.engine.pairing.write_pairs`): (path, digest)."""
    return write_pairs(lake, dataset, domain, lang)


@task(name="score_cell", task_run_name="{cell.kind}-{cell.vision.name}-{cell.text.name}")
def score_cell(cell: Cell) -> dict:
    """Compute and write one cell, unless it is in the lake already.

    The cell's lock is held while it is computed: a concurrent run that needs the same cell waits, then
    finds it done and computes nothing."""
    with cell.lake.lock(f"cell-{cell.cell_id}"):
        reused = cell_is_done(cell)
        if not reused:
            write_cell(cell, compute_cell(cell))
    return {"cell_id": cell.cell_id, "label": cell.label, "reused": reused}


@task(name="write_concepts")
def write_concepts(lake: Lake, dataset: str, fmt: str, domains: list[str]) -> ConceptDictionary:
    """The concept dictionary of a data set's items, its members table written to the lake
    (:func:`vlalign.engine.concept_dictionary.write_concept_dictionary`)."""
    return write_concept_dictionary(lake, dataset, fmt, domains)


@task(name="explain_best")
def explain_best_pairs(lake: Lake, run_id: str, spec) -> dict:
    """The sweep's explain study (:func:`vlalign.engine.explain.explain_best`): its best-matched pairs explained, or
    the explanations of the same request found in the lake."""
    # a third of the page's width, three side by side: the image and the three word tokens with the largest
    # attributions
    plot = functools.partial(plot_explanation, special=False, max_tokens=3, strongest=True, panel_in=1.05)
    return explain_best(lake, run_id, spec, engine_version("matching"), plot, log=get_run_logger().info)
