"""How `vlalign query` prints: JSON and CSV streamed batch by batch (the same text as writing all rows at once),
the text table cut at its row limit with a note, and a closed pipe (`| head`) ending quietly."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys

import duckdb
import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from vlalign.cli.output import write_rows

ROW = st.fixed_dictionaries({"a": st.integers(-10**12, 10**12) | st.none(),
                             "b": st.text(max_size=8), "c": st.floats(allow_nan=False) | st.none()})


def _batches(rows: list[dict], size: int) -> tuple[pa.Schema, list[pa.RecordBatch]]:
    schema = pa.schema([("a", pa.int64()), ("b", pa.string()), ("c", pa.float64())])
    table = pa.Table.from_pylist(rows, schema=schema)
    return schema, table.to_batches(max_chunksize=size) if rows else []


@settings(max_examples=60, deadline=None)
@given(st.lists(ROW, max_size=12), st.integers(1, 5))
def test_streamed_json_and_csv_equal_writing_every_row_at_once(rows, size):
    rows = [{k: r[k] for k in "abc"} for r in rows]  # the result's column order
    schema, batches = _batches(rows, size)
    out = io.StringIO()
    assert write_rows(schema, batches, "json", out) == len(rows)
    assert out.getvalue() == json.dumps(rows, indent=2, default=str) + "\n"
    assert json.loads(out.getvalue()) == rows
    out = io.StringIO()
    assert write_rows(schema, batches, "csv", out) == len(rows)
    expect = io.StringIO()
    w = csv.DictWriter(expect, fieldnames=["a", "b", "c"])
    w.writeheader()
    w.writerows(rows)
    assert out.getvalue() == expect.getvalue()


def test_the_table_shows_its_row_limit_and_says_how_to_get_the_rest():
    rows = [{"a": i, "b": "x", "c": 0.5} for i in range(7)]
    schema, batches = _batches(rows, 3)
    out = io.StringIO()
    assert write_rows(schema, batches, "table", out, max_rows=5) == 5
    lines = out.getvalue().splitlines()
    assert lines[0].split() == ["a", "b", "c"] and len(lines) == 2 + 5 + 1
    assert "the first 5 rows" in lines[-1] and "--format csv" in lines[-1]
    out = io.StringIO()
    write_rows(schema, _batches(rows, 3)[1], "table", out, max_rows=7)
    assert out.getvalue().splitlines()[-1] == "(7 rows)"


def test_query_into_a_closed_pipe_ends_quietly(tmp_path):
    root = tmp_path / "lake"
    root.mkdir()
    duckdb.connect(str(root / "lake.duckdb")).close()
    vlalign = [sys.executable, "-c", "import sys; from vlalign.cli.main import main; sys.exit(main())"]
    p = subprocess.run(" ".join(["'" + a + "'" for a in vlalign]) +
                       f" query 'select * from range(2000000)' --format csv --lake '{root}' | head -2",
                       shell=True, capture_output=True, text=True, timeout=300)
    assert p.stdout.splitlines() == ["range", "0"]
    assert p.stderr == ""


def test_the_console_shows_one_line_per_failure_and_no_routine_task_lines():
    """Prefect's console records: a failure keeps its error in one line without the traceback; a task's
    "Finished in state Completed()" line is dropped; the flow's own lines and warnings stay."""
    import logging

    from vlalign.flows.runtime import _NoRoutine, _NoTraceback

    try:
        raise RuntimeError("cell x failed: disk full")
    except RuntimeError:
        import sys as _sys

        failed = logging.LogRecord("prefect.task_runs", logging.ERROR, __file__, 1, "Task run failed with exception:",
                                   (), _sys.exc_info())
    assert _NoTraceback().filter(failed) and failed.exc_info is None and failed.exc_text is None
    assert failed.getMessage() == "Task run failed with exception: RuntimeError: cell x failed: disk full"

    def record(name, level, msg):
        return logging.LogRecord(name, level, __file__, 1, msg, (), None)

    routine = _NoRoutine()
    assert not routine.filter(record("prefect.task_runs", logging.INFO, "Finished in state Completed()"))
    assert routine.filter(record("prefect.task_runs", logging.WARNING, "Finished in state Completed()"))
    assert routine.filter(record("prefect.task_runs", logging.ERROR, "Finished in state Failed('x')"))
    assert routine.filter(record("prefect.flow_runs", logging.INFO, "cells 3/150  0.5 cells/s"))
