"""How the command line prints rows: an aligned text table, CSV or JSON, streamed batch by batch where the format
allows it (CSV, JSON), so a large result never has to fit in memory."""

from __future__ import annotations

import csv
import itertools
import json
import sys
import textwrap
from typing import IO, Iterable, Iterator

import pyarrow as pa

TABLE_MAX_ROWS = 10_000  # the text table aligns its columns over every row it shows, so it shows at most these


def fmt(v) -> str:
    """A cell of the text table: floats to 4 significant digits, None as empty."""
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def print_table(rows: list[dict], cols: list[str], out: IO[str] | None = None) -> None:
    """Rows as a text table with aligned columns, a header and a rule."""
    out = out or sys.stdout
    widths = {c: max(len(c), *(len(fmt(r.get(c))) for r in rows)) if rows else len(c) for c in cols}
    print("  ".join(c.ljust(widths[c]) for c in cols), file=out)
    print("  ".join("-" * widths[c] for c in cols), file=out)
    for r in rows:
        print("  ".join(fmt(r.get(c)).ljust(widths[c]) for c in cols), file=out)


def _rows(batches: Iterable[pa.RecordBatch]) -> Iterator[dict]:
    for b in batches:
        yield from b.to_pylist()


def write_rows(schema: pa.Schema, batches: Iterable[pa.RecordBatch], form: str, out: IO[str] | None = None,
               max_rows: int = TABLE_MAX_ROWS) -> int:
    """Write a result in ``form`` (table, csv or json) and return the number of rows written. CSV and JSON stream
    every row; the table shows at most ``max_rows`` and then says how to get the rest. JSON is the same text as
    ``json.dumps(rows, indent=2, default=str)``."""
    out = out or sys.stdout
    rows = _rows(batches)
    cols = schema.names
    if form == "csv":
        w = csv.DictWriter(out, fieldnames=cols)
        w.writeheader()
        n = 0
        for r in rows:
            w.writerow(r)
            n += 1
        return n
    if form == "json":
        n = 0
        for r in rows:
            out.write(("[\n" if n == 0 else ",\n") + textwrap.indent(json.dumps(r, indent=2, default=str), "  "))
            n += 1
        out.write("[]\n" if n == 0 else "\n]\n")
        return n
    shown = list(itertools.islice(rows, max_rows + 1))
    more = len(shown) > max_rows
    shown = shown[:max_rows]
    print_table(shown, cols, out)
    if more:
        print(f"(the first {max_rows} rows; --format csv or json streams every row, or add a LIMIT)", file=out)
    else:
        print(f"({len(shown)} rows)", file=out)
    return len(shown)
