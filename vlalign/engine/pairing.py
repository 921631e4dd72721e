"""Pairing: sql/pairs.sql over a data set's items, written to the lake by content."""

from __future__ import annotations

from vlalign.datalake.catalog import run_sql
from vlalign.datalake.store import Lake
from vlalign.engine.analysis import pairs_digest


def write_pairs(lake: Lake, dataset: str, domain: str, lang: str) -> tuple[str, str]:
    """sql/pairs.sql over the lake's items; writes pairs/dataset=<d>/domain=<x>/lang=<y>/<digest>.parquet.

    Returns (path, digest); the file is named by its content, so concurrent runs write the same file."""
    table = run_sql("pairs", {"items": lake.items_path(dataset), "domain": domain, "lang": lang})
    if table.num_rows == 0:
        raise ValueError(f"data set {dataset!r}: no pairs for domain {domain!r} and lang {lang!r}")
    digest = pairs_digest(table)
    path = lake.pairs_path(dataset, domain, lang, digest)
    if lake.read_metadata(path) is None:
        lake.write_table(path, table, {"digest": digest})
    return path, digest
