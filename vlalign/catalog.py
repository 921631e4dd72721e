"""DuckDB over the lake: SQL files loaded by name, the catalog of views, and the read-only query door.

``lake.duckdb`` holds the views of the public tables and the ``run_cells`` table, and nothing else. It is
written only by runs (:func:`refresh_catalog`, at the start and the end of each run): built beside the old
one under the lake's catalog lock and renamed over it, so a query that has the old file open finishes
undisturbed, and two runs never write it at once. The views read exactly the files that the run records
list. :func:`query` never writes: it opens the file read-only through the sealed door of
:mod:`vlalign.sqldoor` (DuckDB confined to the lake, statements admitted by the parser's type).
"""

from __future__ import annotations

import os
import re
import uuid
from functools import lru_cache
from importlib import resources
from pathlib import Path

import duckdb
import pyarrow as pa

from .lake import TMP_MARK, Lake, LakeError
from .schemas import RESULT_SCHEMAS, TABLE_SCHEMAS
from .sqldoor import QueryError, run_query

SQL_DIR = Path(str(resources.files("vlalign.sql")))
CATALOG = "lake.duckdb"

__all__ = ["QueryError", "load_sql", "run_sql", "refresh_catalog", "query", "view_statements", "run_records"]


@lru_cache(maxsize=None)
def load_sql(name: str) -> str:
    """The text of ``sql/<name>.sql``."""
    path = SQL_DIR / f"{name}.sql"
    if not path.is_file():
        raise FileNotFoundError(f"no SQL file {path}")
    return path.read_text()


def run_sql(name: str, params: dict, con: duckdb.DuckDBPyConnection | None = None) -> pa.Table:
    """Run ``sql/<name>.sql`` with named parameters and return an Arrow table (for writers and tasks)."""
    con = con or duckdb.connect()
    return con.sql(load_sql(name), params=params).to_arrow_table()


# ------------------------------------------------------------------ views
def view_sources() -> dict[str, str]:
    """{view name: the SELECT it reads from}, from sql/views.sql."""
    text = "\n".join(line for line in load_sql("views").splitlines() if not line.startswith("-- ") or line.startswith("-- view:"))
    parts = re.split(r"^-- view: (\w+)\s*$", text, flags=re.M)
    return {parts[i]: parts[i + 1].strip().rstrip(";") for i in range(1, len(parts), 2)}


def _duck_type(t: pa.DataType) -> str:
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return "VARCHAR"
    if pa.types.is_int64(t):
        return "BIGINT"
    if pa.types.is_integer(t):
        return "INTEGER"
    if pa.types.is_floating(t):
        return "DOUBLE"
    if pa.types.is_boolean(t):
        return "BOOLEAN"
    if pa.types.is_timestamp(t):
        return "TIMESTAMP"
    if pa.types.is_binary(t):
        return "BLOB"
    if pa.types.is_fixed_size_list(t) or pa.types.is_list(t):
        return "FLOAT[]"
    raise TypeError(f"no DuckDB type for {t}")


def _sql_list(paths: list[str]) -> str:
    return "[" + ", ".join("'" + p.replace("'", "''") + "'" for p in paths) + "]"


def view_statements(files: dict[str, list[str]]) -> list[tuple[str, str]]:
    """(view name, CREATE VIEW statement) for every public table, over ``files`` ({placeholder: paths}).

    Each view projects exactly the columns of its schema in vlalign/schemas.py, cast to their types."""
    out = []
    for name, source in view_sources().items():
        schema = TABLE_SCHEMAS[name]
        placeholders = re.findall(r"\{(\w+)\}", source)
        if all(files.get(p) for p in placeholders):
            cols = ", ".join(f'CAST("{f.name}" AS {_duck_type(f.type)}) AS "{f.name}"' for f in schema)
            body = re.sub(r"\{(\w+)\}", lambda m: _sql_list(files[m.group(1)]), source)
            if name in RESULT_SCHEMAS:  # cells written before a column existed read it as NULL
                nulls = ", ".join(f'CAST(NULL AS {_duck_type(f.type)}) AS "{f.name}"' for f in schema)
                body = f"SELECT {nulls} WHERE false UNION ALL BY NAME ({body})"
            stmt = f"CREATE OR REPLACE VIEW {name} AS SELECT {cols} FROM ({body}) AS src"
        else:
            cols = ", ".join(f'CAST(NULL AS {_duck_type(f.type)}) AS "{f.name}"' for f in schema)
            stmt = f"CREATE OR REPLACE VIEW {name} AS SELECT {cols} WHERE false"
        out.append((name, stmt))
    return out


def run_records(lake: Lake) -> list[dict]:
    """Every readable run record of the lake (a record that cannot be parsed is skipped, not trusted)."""
    records = []
    for path in lake.glob(lake.path("runs", "run=*.json")):
        try:
            rec = lake.read_json(path)
        except (OSError, ValueError):
            continue
        if isinstance(rec, dict) and isinstance(rec.get("run_id"), str):
            rec["_path"] = path
            records.append(rec)
    return records


def _recorded_files(lake: Lake, records: list[dict]) -> tuple[dict[str, list[str]], list[tuple[str, str, str]]]:
    """({placeholder: existing files the records list}, run_cells rows)."""
    files: dict[str, set[str]] = {k: set() for k in ("items", "rejects", "embeddings", "attributions", *RESULT_SCHEMAS)}
    run_cells = []
    for rec in records:
        for kind, rels in (rec.get("files") or {}).items():
            if kind in files:
                files[kind].update(lake.path(r) for r in rels if isinstance(r, str) and ".." not in r)
        for table, ids in (rec.get("cells") or {}).items():
            if table not in RESULT_SCHEMAS:
                continue
            for cid in ids:
                try:
                    files[table].add(lake.result_path(table, cid))
                except ValueError:
                    continue
                run_cells.append((rec["run_id"], table, cid))
    existing = {k: sorted(p for p in v if os.path.exists(p)) for k, v in files.items()}
    existing["runs"] = sorted(rec["_path"] for rec in records)
    return existing, run_cells


def refresh_catalog(lake: Lake) -> str:
    """Rebuild lake.duckdb from the run records (writers only): a new file, renamed over the old one."""
    if not lake.is_local:
        raise QueryError(f"lake {lake.root} is not local: the SQL catalog needs a local lake (see README, 'Scaling out')")
    os.makedirs(lake.root, exist_ok=True)
    path = lake.path(CATALOG)
    with lake.lock("catalog"):
        files, run_cells = _recorded_files(lake, run_records(lake))
        tmp = f"{path}{TMP_MARK}{lake.writer_token()}-{uuid.uuid4().hex[:8]}"
        try:
            con = duckdb.connect(tmp)
            try:
                con.execute("CREATE TABLE run_cells (run_id VARCHAR, table_name VARCHAR, cell_id VARCHAR)")
                if run_cells:
                    con.executemany("INSERT INTO run_cells VALUES (?, ?, ?)", run_cells)
                for _name, stmt in view_statements(files):
                    con.execute(stmt)
                con.execute("CHECKPOINT")
            finally:
                con.close()
            os.replace(tmp, path)
        finally:
            for leftover in (tmp, tmp + ".wal"):
                if os.path.exists(leftover):
                    os.unlink(leftover)
    return path


def refresh_or_log(lake: Lake, log) -> None:
    """Refresh the catalog at the end of a run; a failure (a full disk) is logged, never allowed to hide
    the run's own outcome."""
    if not lake.is_local:
        return
    try:
        refresh_catalog(lake)
    except Exception as e:  # noqa: BLE001
        log.error("could not refresh the SQL catalog of %s: %s", lake.root, e)


# ------------------------------------------------------------------ the door
def query(lake: Lake | str, sql: str, params: dict | None = None) -> pa.Table:
    """Run one read-only SELECT over the lake's tables, with DuckDB named parameters ($name) from ``params``.

    Never writes and never creates anything: a lake or catalog that does not exist is an error."""
    lake = lake if isinstance(lake, Lake) else Lake.open(lake)
    if not lake.is_local:
        raise QueryError(f"lake {lake.root} is not local: the SQL catalog needs a local lake (see README, 'Scaling out')")
    try:
        lake = Lake.existing(lake.root)
    except LakeError as e:
        raise QueryError(str(e)) from None
    path = lake.path(CATALOG)
    if not os.path.exists(path):
        raise QueryError(f"no catalog in {lake.root} ({CATALOG} is missing): run a sweep on this lake first")
    return run_query(path, lake.root, sql, params)


