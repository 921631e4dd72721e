"""The lake's public tables as DuckDB views: the SQL files they come from (sql/views.sql), the columns they project
(vlalign.datalake.schemas) and the files they read.

The catalog (``lake.duckdb``) stores the files each view reads relative to the lake's root, in the table
``lake_files (placeholder, path)``, and no path anywhere else. The views are created by whoever opens the catalog
(the query door) for the root it opened, so a lake that was copied, moved, re-mounted or synced elsewhere reads its
own files, under any root path (spaces, brackets, ``=``, unicode)."""

from __future__ import annotations

import re
from functools import lru_cache
from importlib import resources
from pathlib import Path

import duckdb
import pyarrow as pa

from vlalign.datalake.schemas import RESULT_SCHEMAS, TABLE_SCHEMAS

SQL_DIR = Path(str(resources.files("vlalign.sql")))
LAKE_FILES = "lake_files"


@lru_cache(maxsize=None)
def load_sql(name: str) -> str:
    """The text of ``sql/<name>.sql``."""
    path = SQL_DIR / f"{name}.sql"
    if not path.is_file():
        raise FileNotFoundError(f"no SQL file {path}")
    return path.read_text()


# views that read other views (created first: sql/views.sql lists them before)
VIEW_DEPENDS: dict[str, tuple[str, ...]] = {"best_layers": ("cka",)}


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


def view_statements(files: dict[str, list[str]], temp: bool = False) -> list[tuple[str, str]]:
    """(view name, CREATE VIEW statement) for every public table, over ``files`` ({placeholder: paths}).

    Each view projects exactly the columns of its schema in vlalign/datalake/schemas.py, cast to their types.
    ``temp``: temporary views (the query door's, which live as long as its connection)."""
    out = []
    create = "CREATE OR REPLACE TEMP VIEW" if temp else "CREATE OR REPLACE VIEW"
    for name, source in view_sources().items():
        schema = TABLE_SCHEMAS[name]
        placeholders = re.findall(r"\{(\w+)\}", source)
        if all(files.get(p) for p in placeholders):
            cols = ", ".join(f'CAST("{f.name}" AS {_duck_type(f.type)}) AS "{f.name}"' for f in schema)
            body = re.sub(r"\{(\w+)\}", lambda m: _sql_list(files[m.group(1)]), source)
            if name in RESULT_SCHEMAS:  # cells written before a column existed read it as NULL
                nulls = ", ".join(f'CAST(NULL AS {_duck_type(f.type)}) AS "{f.name}"' for f in schema)
                body = f"SELECT {nulls} WHERE false UNION ALL BY NAME ({body})"
            stmt = f"{create} {name} AS SELECT {cols} FROM ({body}) AS src"
        else:
            cols = ", ".join(f'CAST(NULL AS {_duck_type(f.type)}) AS "{f.name}"' for f in schema)
            stmt = f"{create} {name} AS SELECT {cols} WHERE false"
        out.append((name, stmt))
    return out


def write_lake_files(con: duckdb.DuckDBPyConnection, files: dict[str, list[str]]) -> None:
    """Store ``files`` ({placeholder: paths relative to the lake's root}) in the catalog being built."""
    rows = [(k, p) for k, paths in sorted(files.items()) for p in paths]
    table = pa.table({"placeholder": pa.array([r[0] for r in rows], pa.string()),
                      "path": pa.array([r[1] for r in rows], pa.string())})
    # one bulk insert from Arrow (executemany inserts row by row: 3 s for the default run's 5,000 files)
    con.register("vlalign_lake_files_rows", table)
    try:
        con.execute(f"CREATE TABLE {LAKE_FILES} AS SELECT placeholder, path FROM vlalign_lake_files_rows")
    finally:
        con.unregister("vlalign_lake_files_rows")


def create_views(con: duckdb.DuckDBPyConnection, root: str, only: set[str] | None = None) -> bool:
    """On a connection whose current database is a catalog that lists its files relative to the root, create
    the public views (temporary) over the files under ``root``: all of them, or those named in ``only``. False
    (nothing created) for a catalog made before lake_files existed, whose views are stored in it."""
    known = con.execute("SELECT count(*) FROM duckdb_tables() WHERE table_name = ? AND database_name = "
                        "current_database()", [LAKE_FILES]).fetchall()[0][0]
    if not known:
        return False
    files: dict[str, list[str]] = {}
    for placeholder, rel in con.execute(f"SELECT placeholder, path FROM {LAKE_FILES} ORDER BY placeholder, path").fetchall():
        files.setdefault(placeholder, []).append(f"{root.rstrip('/')}/{rel}")
    if only is not None:
        only = set(only) | {d for name in only for d in VIEW_DEPENDS.get(name, ())}
    for name, stmt in view_statements(files, temp=True):
        if only is not None and name not in only:
            continue
        try:
            con.execute(stmt)
        except duckdb.Error as e:  # a damaged file: this view says so when queried, the others still answer
            con.execute(_failing_view(name, f"table {name} cannot read its files: {str(e).splitlines()[0]}; "
                                            "`vlalign verify` names the damaged file, `vlalign verify --repair` "
                                            "recomputes it"))
    return True


def _failing_view(name: str, message: str) -> str:
    """A view with ``name``'s columns that raises ``message`` when it is read (and not before)."""
    cols = ", ".join(f'CAST(NULL AS {_duck_type(f.type)}) AS "{f.name}"' for f in TABLE_SCHEMAS[name])
    text = message.replace("'", "''")
    return f"CREATE OR REPLACE TEMP VIEW {name} AS SELECT {cols} WHERE error('{text}') IS NULL"
