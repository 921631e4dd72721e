"""DuckDB over the lake: SQL files loaded by name, the views of sql/views.sql, read-only queries.

``lake.duckdb`` in the lake root holds nothing but views; :func:`refresh_catalog` (re)creates them and
:func:`query` opens the file read-only, so a user's SQL can read every table but change none.
"""

from __future__ import annotations

import hashlib
import re
from functools import lru_cache
from importlib import resources
from pathlib import Path

import duckdb
import pyarrow as pa

from .lake import Lake

SQL_DIR = Path(str(resources.files("vlalign.sql")))
READ_ONLY_TYPES = {"SELECT", "EXPLAIN", "PRAGMA"}


class QueryError(ValueError):
    """A query that is refused (it would write) or fails."""


@lru_cache(maxsize=None)
def load_sql(name: str) -> str:
    """The text of ``sql/<name>.sql``."""
    path = SQL_DIR / f"{name}.sql"
    if not path.is_file():
        raise FileNotFoundError(f"no SQL file {path}")
    return path.read_text()


def run_sql(name: str, params: dict, con: duckdb.DuckDBPyConnection | None = None) -> pa.Table:
    """Run ``sql/<name>.sql`` with named parameters and return an Arrow table."""
    con = con or duckdb.connect()
    return con.sql(load_sql(name), params=params).to_arrow_table()


# ------------------------------------------------------------------ views
def view_statements() -> list[tuple[str, str]]:
    """(view name, CREATE statement) pairs from sql/views.sql."""
    text = load_sql("views")
    parts = re.split(r"^-- view: (\w+)\s*$", text, flags=re.M)
    return [(parts[i], parts[i + 1].strip()) for i in range(1, len(parts), 2)]


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
    return "VARCHAR"


def empty_view(name: str, schema: pa.Schema) -> str:
    cols = ", ".join(f"CAST(NULL AS {_duck_type(f.type)}) AS {f.name}" for f in schema)
    return f"CREATE OR REPLACE VIEW {name} AS SELECT {cols} WHERE false"


def _views_digest(root: str) -> str:
    return hashlib.sha256((root + load_sql("views")).encode()).hexdigest()[:16]


def catalog_path(lake: Lake) -> str:
    if not lake.is_local:
        raise QueryError(f"lake {lake.root} is not local: query it with an in-memory DuckDB (see README, 'Scaling out')")
    return lake.path("lake.duckdb")


def refresh_catalog(lake: Lake, force: bool = False) -> str:
    """(Re)create the views in lake.duckdb when the lake root, views.sql, or the set of empty tables changed."""
    from .schemas import TABLE_SCHEMAS

    path = catalog_path(lake)
    Path(lake.root).mkdir(parents=True, exist_ok=True)
    digest = _views_digest(lake.root)
    con = duckdb.connect(path)
    try:
        con.execute("CREATE TABLE IF NOT EXISTS _vlalign_meta (key VARCHAR PRIMARY KEY, value VARCHAR)")
        meta = dict(con.execute("SELECT key, value FROM _vlalign_meta").fetchall())
        empty_before = set(filter(None, (meta.get("empty") or "").split(",")))
        stale = force or meta.get("digest") != digest or any(_has_files(lake, v) for v in empty_before)
        if not stale:
            return path
        empty = []
        for name, stmt in view_statements():
            try:
                con.execute(stmt.replace("{lake}", lake.root))
            except duckdb.Error as e:
                if "No files found" not in str(e) and "no files" not in str(e).lower():
                    raise
                con.execute(empty_view(name, TABLE_SCHEMAS[name]))
                empty.append(name)
        con.execute("INSERT OR REPLACE INTO _vlalign_meta VALUES ('digest', ?), ('empty', ?)", [digest, ",".join(empty)])
    finally:
        con.close()
    return path


def _has_files(lake: Lake, view: str) -> bool:
    """Whether the files behind ``view`` (the '{lake}/...' path in its statement in sql/views.sql) exist yet."""
    stmt = dict(view_statements()).get(view, "")
    found = re.search(r"'\{lake\}/([^']+)'", stmt)
    return bool(found and lake.glob(lake.path(found.group(1))))


def query(lake: Lake, sql: str) -> pa.Table:
    """Run read-only SQL over the lake's views. Statements that would write are refused before running."""
    try:
        statements = duckdb.extract_statements(sql)
    except duckdb.Error as e:
        raise QueryError(f"cannot parse the query: {e}") from e
    if not statements:
        raise QueryError("empty query")
    for st in statements:
        kind = st.type.name
        if kind not in READ_ONLY_TYPES:
            raise QueryError(
                f"refused: {kind} statement ({st.query.strip()[:60]!r}); the lake is read-only here. "
                "Only SELECT, EXPLAIN, PRAGMA, DESCRIBE, SHOW and SUMMARIZE are allowed."
            )
    path = refresh_catalog(lake)
    con = duckdb.connect(path, read_only=True)
    try:
        for st in statements[:-1]:
            con.execute(st.query)
        return con.sql(statements[-1].query).to_arrow_table()
    except duckdb.Error as e:
        raise QueryError(f"query failed: {e}") from e
    finally:
        con.close()
