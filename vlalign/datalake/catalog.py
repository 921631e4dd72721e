"""DuckDB over the lake: SQL files loaded by name, the catalog of views, and the read-only query door.

``lake.duckdb`` holds the views of the public tables and the ``run_cells`` table, and nothing else. It is
written only by runs (:func:`refresh_catalog`, at the start and the end of each run): built beside the old
one under the lake's catalog lock and renamed over it, so a query that has the old file open finishes
undisturbed, and two runs never write it at once. The views read exactly the files that the run records
list. :func:`query` never writes: it opens the file read-only through the sealed door of
:mod:`vlalign.datalake.sqldoor` (DuckDB confined to the lake, statements admitted by the parser's type).

An object-store lake (``s3://bucket/lake``, any fsspec URL): DuckDB reads it through the lake's fsspec
filesystem, registered on each connection (:func:`connect`), never through the httpfs extension. Its
catalog is built the same way in a private local temporary file and stored in the lake as
``<lake>/lake.duckdb`` with one PUT (atomic), still under the catalog lock (a local lock, see
:meth:`Lake.lock_path`). A query GETs that object into a private temporary file, attaches it read-only and
removes the copy when the query ends: every machine that can read the bucket can query it, and a query
sees one whole catalog even while a run replaces it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import uuid
from typing import Iterator

import duckdb
import pyarrow as pa

from vlalign.datalake.schemas import RESULT_SCHEMAS
from vlalign.datalake.sqldoor import DEFAULT_LIMITS, Limits, QueryError, open_query
from vlalign.datalake.store import TMP_MARK, Lake, LakeError, lake_filesystem
from vlalign.datalake.views import load_sql, write_lake_files

CATALOG = "lake.duckdb"

__all__ = ["QueryError", "load_sql", "run_sql", "connect", "refresh_catalog", "query", "open_lake_query", "run_records"]


def _urls(values) -> list[str]:
    out = []
    for v in values:
        if isinstance(v, str):
            if "://" in v and not v.startswith("file://"):
                out.append(v)
        elif isinstance(v, (list, tuple)):
            out += _urls(v)
    return out


def register_filesystems(con: duckdb.DuckDBPyConnection, urls) -> duckdb.DuckDBPyConnection:
    """Register on ``con`` the fsspec filesystem of every object-store URL among ``urls`` (once per
    protocol), so that DuckDB reads ``s3://...`` through fsspec (credentials and endpoint the fsspec way)
    rather than through an extension it would have to download."""
    done: set[str] = set(con.list_filesystems())
    for url in _urls(urls):
        proto = url.split("://", 1)[0]
        if proto in done:
            continue
        fs = lake_filesystem(url)
        con.register_filesystem(fs)
        done.update((fs.protocol,) if isinstance(fs.protocol, str) else fs.protocol)
    return con


def connect(database: str = ":memory:", urls=()) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection (extension autoload off) that reads the object-store URLs among ``urls``."""
    con = duckdb.connect(database, config={"autoinstall_known_extensions": False, "autoload_known_extensions": False})
    try:
        return register_filesystems(con, urls)
    except BaseException:
        con.close()
        raise


def run_sql(name: str, params: dict, con: duckdb.DuckDBPyConnection | None = None) -> pa.Table:
    """Run ``sql/<name>.sql`` with named parameters and return an Arrow table (for writers and tasks).

    A parameter that is an object-store URL (a lake on s3://...) is read through its fsspec filesystem."""
    urls = _urls(params.values())
    if con is not None:
        if urls:
            register_filesystems(con, urls)
        return con.sql(load_sql(name), params=params).to_arrow_table()
    con = connect(urls=urls)
    try:
        return con.sql(load_sql(name), params=params).to_arrow_table()
    finally:
        con.close()


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
    """({placeholder: existing files the records list, relative to the root}, run_cells rows)."""
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
    if lake.is_local:
        exists = os.path.exists
    else:  # one listing of the lake, not one request per file
        exists = lake.files().__contains__
    existing = {k: sorted(lake.relpath(p) for p in v if exists(p)) for k, v in files.items()}
    existing["runs"] = sorted(lake.relpath(rec["_path"]) for rec in records)
    return existing, run_cells


def _build_catalog(lake: Lake, db_path: str, files: dict[str, list[str]], run_cells: list) -> None:
    """Write the run_cells and lake_files tables into a new DuckDB file ``db_path`` (no paths but relative ones:
    the views are made by whoever opens it, for the root it opens; vlalign.datalake.views)."""
    con = connect(db_path)
    try:
        cols = list(zip(*run_cells)) if run_cells else [(), (), ()]
        rows = pa.table({name: pa.array(list(col), pa.string())
                         for name, col in zip(("run_id", "table_name", "cell_id"), cols)})
        con.register("vlalign_run_cells_rows", rows)  # one bulk insert from Arrow, not one INSERT per row
        try:
            con.execute("CREATE TABLE run_cells AS SELECT run_id, table_name, cell_id FROM vlalign_run_cells_rows")
        finally:
            con.unregister("vlalign_run_cells_rows")
        write_lake_files(con, files)
        con.execute("CHECKPOINT")
    finally:
        con.close()


def refresh_catalog(lake: Lake) -> str:
    """Rebuild lake.duckdb from the run records (writers only): a new file, renamed over the old one (on an
    object store: built in a local temporary folder and stored with one PUT). Returns its path or URL."""
    if lake.is_local:
        os.makedirs(lake.root, exist_ok=True)
    path = lake.path(CATALOG)
    with lake.lock("catalog"):
        files, run_cells = _recorded_files(lake, run_records(lake))
        if not lake.is_local:
            tmpdir = tempfile.mkdtemp(prefix="vlalign-catalog-")
            try:
                local = os.path.join(tmpdir, CATALOG)
                _build_catalog(lake, local, files, run_cells)
                with open(local, "rb") as f:
                    lake.write_bytes(path, f.read())
            finally:
                shutil.rmtree(tmpdir, ignore_errors=True)
            return path
        tmp = f"{path}{TMP_MARK}{lake.writer_token()}-{uuid.uuid4().hex[:8]}"
        try:
            _build_catalog(lake, tmp, files, run_cells)
            os.replace(tmp, path)
        finally:
            for leftover in (tmp, tmp + ".wal"):
                if os.path.exists(leftover):
                    os.unlink(leftover)
    return path


def refresh_or_log(lake: Lake, log) -> None:
    """Refresh the catalog at the end of a run; a failure (a full disk) is logged, never allowed to hide
    the run's own outcome."""
    try:
        refresh_catalog(lake)
    except Exception as e:  # noqa: BLE001
        log.error("could not refresh the SQL catalog of %s: %s", lake.root, e)


# ------------------------------------------------------------------ the door
@contextlib.contextmanager
def open_lake_query(lake: Lake | str, sql: str, params: dict | None = None,
                    limits: Limits = DEFAULT_LIMITS) -> Iterator[tuple[pa.Schema, Iterator[pa.RecordBatch]]]:
    """Run one read-only SELECT over the lake's tables, with DuckDB named parameters ($name) from ``params``,
    and yield ``(schema, batches)``: the result streamed in record batches, within ``limits`` (time, memory).

    Never writes and never creates anything: a lake or catalog that does not exist is an error. On an
    object-store lake the catalog is copied to a private temporary file for the query's duration (the
    lake is read through its fsspec filesystem, wrapped read-only)."""
    lake = lake if isinstance(lake, Lake) else Lake.open(lake)
    try:
        lake = Lake.existing(lake.root)
    except LakeError as e:
        raise QueryError(str(e)) from None
    path = lake.path(CATALOG)
    if lake.is_local:
        if not os.path.exists(path):
            raise QueryError(f"no catalog in {lake.root} ({CATALOG} is missing): run a sweep on this lake first")
        with open_query(path, lake.root, sql, params, limits=limits) as result:
            yield result
        return
    fs = lake.fs
    try:
        data = fs.cat_file(path)
    except FileNotFoundError:
        raise QueryError(f"no catalog in {lake.root} ({CATALOG} is missing): run a sweep on this lake first") from None
    except OSError as e:
        raise QueryError(f"cannot read the catalog {path}: {e}") from e
    tmpdir = tempfile.mkdtemp(prefix="vlalign-query-")
    try:
        local = os.path.join(tmpdir, CATALOG)
        with open(local, "wb") as f:
            f.write(data)
        with open_query(local, lake.root, sql, params, fs=fs, limits=limits) as result:
            yield result
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)


def query(lake: Lake | str, sql: str, params: dict | None = None, limits: Limits = DEFAULT_LIMITS) -> pa.Table:
    """:func:`open_lake_query` read into one Arrow table (for results known to be small: the report, tests)."""
    with open_lake_query(lake, sql, params, limits) as (schema, batches):
        return pa.Table.from_batches(list(batches), schema=schema)


