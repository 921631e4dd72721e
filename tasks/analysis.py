"""Analysis tasks: pair and split in DuckDB, then score one cell and write it to the lake."""

from __future__ import annotations

import os

from prefect import task

from vlalign.analysis import CKACell, MatchCell, run_cka_cell, run_match_cell, write_cka_cell, write_match_cell
from vlalign.catalog import run_sql
from vlalign.lake import Lake


@task(name="pair_items")
def pair_items(lake_root: str, dataset: str, domain: str, lang: str) -> str:
    """sql/pairs.sql over the lake's items; writes pairs/dataset=<d>/domain=<x>/lang=<y>.parquet."""
    lake = Lake.open(lake_root)
    table = run_sql("pairs", {"items": lake.items_path(dataset), "domain": domain, "lang": lang})
    if table.num_rows == 0:
        raise ValueError(f"data set {dataset!r}: no pairs for domain {domain!r} and lang {lang!r}")
    path = lake.path("pairs", f"dataset={dataset}", f"domain={domain}", f"lang={lang}.parquet")
    return lake.write_table(path, table)


def _maybe_fail(key: str) -> None:
    """Fault injection for resume tests: VLALIGN_FAIL_CELL=<substring> makes matching cells fail."""
    needle = os.environ.get("VLALIGN_FAIL_CELL")
    if needle and needle in key:
        raise RuntimeError(f"injected failure in cell {key} (VLALIGN_FAIL_CELL={needle})")


@task(name="score_cka", task_run_name="cka-{cell.vision.name}-{cell.kernel}")
def score_cka(cell: CKACell) -> dict:
    rows = run_cka_cell(cell)
    write_cka_cell(cell, rows)
    return {"table": "cka", "key": cell.key, "rows": len(rows)}


@task(name="match_pair", task_run_name="match-{cell.vision.name}-{cell.text.name}-b{cell.base_size}-q{cell.query_size}-s{cell.seed}")
def match_pair(cell: MatchCell) -> dict:
    _maybe_fail(cell.key)
    matching, retrieval = run_match_cell(cell)
    write_match_cell(cell, matching, retrieval)
    return {"table": "matching", "key": cell.key, "rows": len(matching)}
