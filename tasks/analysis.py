"""Analysis tasks: pair in DuckDB, then score one cell and write it to the lake."""

from __future__ import annotations

from prefect import task

from vlalign.analysis import compute_cell, pairs_digest, write_cell
from vlalign.catalog import run_sql
from vlalign.cells import Cell, cell_is_done
from vlalign.lake import Lake


@task(name="pair_items")
def pair_items(lake_root: str, dataset: str, domain: str, lang: str) -> tuple[str, str]:
    """sql/pairs.sql over the lake's items; writes pairs/dataset=<d>/domain=<x>/lang=<y>/<digest>.parquet.

    Returns (path, digest); the file is named by its content, so concurrent runs write the same file."""
    lake = Lake.open(lake_root)
    table = run_sql("pairs", {"items": lake.items_path(dataset), "domain": domain, "lang": lang})
    if table.num_rows == 0:
        raise ValueError(f"data set {dataset!r}: no pairs for domain {domain!r} and lang {lang!r}")
    digest = pairs_digest(table)
    path = lake.pairs_path(dataset, domain, lang, digest)
    if lake.read_metadata(path) is None:
        lake.write_table(path, table, {"digest": digest})
    return path, digest


@task(name="score_cell", task_run_name="{cell.kind}-{cell.vision.name}-{cell.text.name}")
def score_cell(cell: Cell) -> dict:
    """Compute and write one cell, unless it is in the lake already.

    The cell's lock is held while it is computed: a concurrent run that needs the same cell waits, then
    finds it done and computes nothing."""
    lake = Lake.open(cell.lake_root)
    with lake.lock(f"cell-{cell.cell_id}"):
        reused = cell_is_done(cell)
        if not reused:
            write_cell(cell, compute_cell(cell))
    return {"cell_id": cell.cell_id, "label": cell.label, "reused": reused}
