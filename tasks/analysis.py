"""Analysis tasks: pair in DuckDB, then score one cell and write it to the lake."""

from __future__ import annotations

from prefect import task

from vlalign.datalake.store import Lake
from vlalign.engine.analysis import write_cell
from vlalign.engine.scoring import compute_cell
from vlalign.engine.cells import Cell, cell_is_done
from vlalign.engine.concept_dictionary import ConceptDictionary, write_concept_dictionary
from vlalign.engine.pairing import write_pairs


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
