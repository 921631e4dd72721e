"""A sealed, read-only door for ``vlalign query``: users' SQL over the lake, and nothing else.

The lake's catalog (``<lake>/lake.duckdb``) holds views over the Parquet/JSON files under the lake root.
A user's SQL gets through only if all of this holds:

* **One SELECT, by the parser's word.** :func:`admit` parses the text with DuckDB's own parser and
  admits exactly one statement whose type is ``SELECT`` (which is also what DuckDB gives DESCRIBE,
  SHOW, SUMMARIZE, ``FROM tbl``, VALUES, CTEs, UNION, UNPIVOT and PIVOT with an ``IN`` list). Every
  other type is refused: COPY, EXPORT, PRAGMA (IMPORT DATABASE is one), SET/RESET/USE, CALL
  (CHECKPOINT is one), INSTALL/LOAD, ATTACH/DETACH, CREATE/DROP/INSERT/UPDATE/DELETE/ALTER/MERGE,
  TRANSACTION, VACUUM/ANALYZE, PREPARE/EXECUTE, MULTI (PIVOT without ``IN``) and EXPLAIN: the parser's
  output does not tell EXPLAIN from EXPLAIN ANALYZE, and EXPLAIN ANALYZE runs what it explains, a COPY
  included, so every EXPLAIN is refused.
* **A SELECT's parse tree holds no writer.** DuckDB 2.0 types ``WITH x AS (COPY ... TO 'file') SELECT 1``
  (and INSERT/UPDATE/DELETE ... RETURNING in a CTE) as a SELECT and runs the COPY. So the statement's
  parse tree, as DuckDB's ``json_serialize_sql`` gives it, is walked: every query node must be a
  SELECT, set operation or CTE node, and no table or scalar function may be one that runs SQL from a
  string (``query``, ``query_table``, ``json_execute_serialized_sql``, which would hide SQL from this
  check) or changes the database or its settings (``checkpoint``, ``enable_logging``, ...).
* **A sandboxed engine.** :func:`open_door` opens a private in-memory DuckDB with extension autoload
  and autoinstall off, spilling to disk off, attaches the catalog READ_ONLY, allows file access only
  under ``<lake_root>/``, turns external access (any other file, http(s), s3, ...) off and locks the
  configuration, so that no later statement can undo any of it.
* **An object-store lake** (``s3://bucket/lake``) is read through its fsspec filesystem, registered on
  the door's connection wrapped in :class:`ReadOnlyFileSystem` (it opens files for reading and refuses
  every write, so on an object store even a write that got past :func:`admit` has nowhere to go).
  ``allowed_directories`` is the lake's URL with a trailing '/', set before external access is turned
  off: DuckDB then serves exactly the paths under that prefix through the registered filesystem and
  refuses any other URL (another prefix or bucket, s3a://, local files) with a permission error.

Anything refused or failing raises :class:`QueryError` with a one-line message.
"""

from __future__ import annotations

import contextlib
import json
import os
import posixpath
import re
import threading
from pathlib import Path
from typing import Iterator

import duckdb
import pyarrow as pa
from fsspec import AbstractFileSystem

from vlalign.datalake.limits import DEFAULT_LIMITS, Limits
from vlalign.datalake.views import create_views

__all__ = ["QueryError", "Limits", "open_door", "admit", "run_query", "open_query", "ReadOnlyFileSystem",
           "ADMITTED_TYPES", "REFUSED_FUNCTIONS"]


_TOO_DEEP = ("refused: the query is nested too deeply (DuckDB's limit is 1000 levels of expressions and "
             "subqueries); write it with fewer nested subqueries or expressions")



ADMITTED_TYPES = frozenset({"SELECT"})

# Query nodes a read-only SELECT is made of; anything else (INSERT_QUERY_NODE, DELETE_QUERY_NODE,
# UPDATE_QUERY_NODE, COPY_QUERY_NODE, and whatever a later DuckDB adds) is refused.
_READ_NODES = frozenset({"SELECT_NODE", "SET_OPERATION_NODE", "RECURSIVE_CTE_NODE", "CTE_NODE"})

# Functions (table or scalar) a query may not call, with the reason.
_RUNS_SQL = "runs SQL given as a string, which vlalign query cannot check"
_CHANGES = "changes the database or its settings"
_INTERNAL = "is an internal scan of the Python client"
REFUSED_FUNCTIONS: dict[str, str] = {
    "query": _RUNS_SQL,
    "query_table": _RUNS_SQL,
    "json_execute_serialized_sql": _RUNS_SQL,
    "checkpoint": _CHANGES,
    "force_checkpoint": _CHANGES,
    "enable_logging": _CHANGES,
    "disable_logging": _CHANGES,
    "truncate_duckdb_logs": _CHANGES,
    "write_log": _CHANGES,
    "enable_profiling": _CHANGES,
    "disable_profiling": _CHANGES,
    "create_external_resource": _CHANGES,
    "destroy_external_resource": _CHANGES,
    "register_external_resource": _CHANGES,
    "register_external_resource_type": _CHANGES,
    "deregister_external_resource": _CHANGES,
    "arrow_scan": _INTERNAL,
    "arrow_scan_dumb": _INTERNAL,
    "pandas_scan": _INTERNAL,
    "python_arrow_scan": _INTERNAL,
    "python_map_function": _INTERNAL,
}

# Why each refused statement type is refused (DuckDB's StatementType names).
_WHY = {
    "EXPLAIN": "is refused, like every EXPLAIN: DuckDB's parser does not tell EXPLAIN from EXPLAIN ANALYZE, "
    "which runs the explained statement (writes included)",
    "COPY": "writes or reads files",
    "EXPORT": "writes files",
    "PRAGMA": "runs a command (IMPORT DATABASE and PRAGMA calls are both PRAGMA statements)",
    "SET": "changes settings (SET, RESET and USE are all SET statements)",
    "VARIABLE_SET": "changes settings",
    "CALL": "runs a procedure (CALL and CHECKPOINT are CALL statements)",
    "LOAD": "installs or loads an extension",
    "UPDATE_EXTENSIONS": "updates extensions",
    "ATTACH": "attaches a database",
    "DETACH": "detaches a database",
    "TRANSACTION": "controls transactions",
    "VACUUM": "rewrites the database (VACUUM and ANALYZE)",
    "PREPARE": "prepares a statement",
    "EXECUTE": "runs a prepared statement",
    "MULTI": "expands into several statements (a PIVOT without an IN (...) list does: list the pivot values "
    "with IN (...))",
}
_WRITES = "changes the database"

_NO_ROOT = ("/", "")


class QueryError(ValueError):
    """A query that is refused (it would write, reach outside the lake, ...) or that fails."""


# ------------------------------------------------------------------ helpers
def _line(text: str) -> str:
    """DuckDB's message, first line only (the rest is a caret drawing or a list of candidates)."""
    return (str(text).strip().splitlines() or [""])[0].strip()


def _snippet(sql: str, n: int = 60) -> str:
    flat = " ".join(sql.split())
    return flat if len(flat) <= n else flat[: n - 3] + "..."


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _local_root(lake_root: str) -> str:
    root = os.fspath(lake_root)
    if root.startswith("file://"):
        root = root[len("file://"):]
    if "://" in root:
        raise QueryError(f"lake {lake_root} is not local: vlalign query only opens a lake on this machine")
    root = os.path.abspath(root).rstrip("/")
    if root in _NO_ROOT:
        raise QueryError("refused: the lake root is '/', which would open the whole file system to queries")
    return root


def _door_root(lake_root: str, fs: AbstractFileSystem | None) -> str:
    """The lake root the door confines queries to: a local folder, or (with ``fs``) an object-store URL."""
    root = os.fspath(lake_root)
    if fs is None or "://" not in root or root.startswith("file://"):
        return _local_root(root)
    proto, rest = root.split("://", 1)
    protocols = (fs.protocol,) if isinstance(fs.protocol, str) else tuple(fs.protocol)
    if proto not in protocols:
        raise QueryError(f"lake {lake_root}: its filesystem serves {'/'.join(protocols)}://, not {proto}://")
    rest = rest.strip("/")
    if not rest or posixpath.normpath("/" + rest) != "/" + rest:
        raise QueryError(f"refused: the lake root {lake_root!r} is no bucket or folder of its own")
    return f"{proto}://{rest}"


def _allowed_directories(root: str) -> list[str]:
    """The lake root as given and as resolved (if a link leads to it), each with a trailing '/'."""
    dirs = [root + "/"]
    if "://" in root:
        return dirs
    real = os.path.realpath(root).rstrip("/")
    if real not in _NO_ROOT and real + "/" not in dirs:
        dirs.append(real + "/")
    return dirs


# ------------------------------------------------------------------ a read-only filesystem
class ReadOnlyFileSystem(AbstractFileSystem):
    """An fsspec filesystem that reads through ``fs`` and refuses every write (PermissionError).

    What the door registers on DuckDB for an object-store lake: DuckDB asks a registered filesystem to
    open, list, glob, stat and also to write, delete, move and make folders; only the reads get through."""

    cachable = False  # one wrapper per door, never shared through fsspec's instance cache

    def __init__(self, fs: AbstractFileSystem):
        super().__init__()
        self._fs = fs
        self.protocol = fs.protocol

    def _strip_protocol(self, path):  # noqa: D102 - as the wrapped filesystem does it
        return self._fs._strip_protocol(path)

    def unstrip_protocol(self, name: str) -> str:
        return self._fs.unstrip_protocol(name)

    def _refuse(self, what: str, path) -> None:
        raise PermissionError(f"vlalign query is read-only: {what} {path} refused")

    # reads
    def _open(self, path, mode="rb", block_size=None, autocommit=True, cache_options=None, **kwargs):
        if mode != "rb":
            self._refuse(f"opening (mode {mode!r})", path)
        return self._fs.open(path, "rb", block_size=block_size, cache_options=cache_options, **kwargs)

    def ls(self, path, detail=True, **kwargs):
        return self._fs.ls(path, detail=detail, **kwargs)

    def info(self, path, **kwargs):
        return self._fs.info(path, **kwargs)

    def glob(self, path, maxdepth=None, **kwargs):
        return self._fs.glob(path, maxdepth=maxdepth, **kwargs)

    def find(self, path, maxdepth=None, withdirs=False, detail=False, **kwargs):
        return self._fs.find(path, maxdepth=maxdepth, withdirs=withdirs, detail=detail, **kwargs)

    def exists(self, path, **kwargs):
        return self._fs.exists(path, **kwargs)

    def isdir(self, path):
        return self._fs.isdir(path)

    def isfile(self, path):
        return self._fs.isfile(path)

    def size(self, path):
        return self._fs.size(path)

    def modified(self, path):
        return self._fs.modified(path)

    def created(self, path):
        return self._fs.created(path)

    def ukey(self, path):
        return self._fs.ukey(path)

    # writes
    def mkdir(self, path, create_parents=True, **kwargs):
        self._refuse("making folder", path)

    def makedirs(self, path, exist_ok=False):
        self._refuse("making folder", path)

    def rm(self, path, recursive=False, maxdepth=None):
        self._refuse("deleting", path)

    def rm_file(self, path):
        self._refuse("deleting", path)

    def rmdir(self, path):
        self._refuse("deleting", path)

    def mv(self, path1, path2, recursive=False, maxdepth=None, **kwargs):
        self._refuse("moving", path1)

    def cp_file(self, path1, path2, **kwargs):
        self._refuse("copying to", path2)

    def copy(self, path1, path2, recursive=False, maxdepth=None, on_error=None, **kwargs):
        self._refuse("copying to", path2)

    def touch(self, path, truncate=True, **kwargs):
        self._refuse("touching", path)

    def pipe_file(self, path, value, mode="overwrite", **kwargs):
        self._refuse("writing", path)

    def put_file(self, lpath, rpath, callback=None, mode="overwrite", **kwargs):
        self._refuse("writing", rpath)


# ------------------------------------------------------------------ the door
def open_door(catalog_path: str, lake_root: str, fs: AbstractFileSystem | None = None,
              limits: Limits = DEFAULT_LIMITS, tables: set[str] | None = None) -> duckdb.DuckDBPyConnection:
    """A sealed read-only connection over the lake's catalog.

    A private in-memory DuckDB (its own instance: two doors never share settings, and a door always sees
    the catalog file that is there when it opens) with extension autoload/autoinstall and spilling off;
    ``catalog_path`` (a local file) attached READ_ONLY and made the default database; file access only under
    ``<lake_root>/``; external access off; configuration locked. Creates nothing anywhere.

    ``fs``: for a lake on an object store (``lake_root`` a URL such as ``s3://bucket/lake``), its fsspec
    filesystem; registered read-only (:class:`ReadOnlyFileSystem`). Without it, a URL root is refused.
    ``limits.memory``: DuckDB's memory limit, set before the configuration is locked. ``tables``: the public
    tables to make views of (default: all; making a view reads the footers of its files).
    """
    root = _door_root(lake_root, fs)
    path = os.path.abspath(os.fspath(catalog_path))
    if not os.path.isfile(path):
        raise QueryError(f"no lake at {root}: {path} does not exist (run a sweep first)")
    config = {
        "autoload_known_extensions": False,
        "autoinstall_known_extensions": False,
        "allow_community_extensions": False,
        "allow_persistent_secrets": False,
        "python_enable_replacements": False,  # no reading the caller's Python variables as tables
        "temp_directory": "",  # no spilling: the default would be '<lake>/lake.duckdb.tmp' or './.tmp'
    }
    con = duckdb.connect(":memory:", config=config)
    try:
        if "://" in root:
            con.register_filesystem(ReadOnlyFileSystem(fs))
        alias = Path(path).stem  # the name the catalog has when opened directly ('lake')
        con.execute(f"ATTACH {_quote(path)} AS {_ident(alias)} (READ_ONLY)")
        con.execute(f"USE {_ident(alias)}")
        create_views(con, root, tables)  # the public tables over this root's files (older catalogs store theirs)
        dirs = ", ".join(_quote(d) for d in _allowed_directories(root))
        # This order: once external access is off, allowed_directories can no longer be set.
        con.execute(f"SET memory_limit = {_quote(limits.memory)}")
        con.execute("SET enable_progress_bar = false")  # the door's output is the result, nothing else
        con.execute(f"SET allowed_directories = [{dirs}]")
        con.execute("SET enable_external_access = false")
        con.execute("SET lock_configuration = true")
    except duckdb.Error as e:
        con.close()
        raise QueryError(f"cannot open the lake catalog {path}: {_line(e)}") from e
    except BaseException:
        con.close()
        raise
    return con


# ------------------------------------------------------------------ admission
def _statement_type(st) -> str:
    try:
        return st.type.name
    except ValueError:  # duckdb 2.0's Python client has no name for some types (UPDATE EXTENSIONS)
        return "UNKNOWN"


def _walk(tree, node_types: set, functions: set) -> None:
    """Collect the query-node types and function names of a parse tree (iteratively: a deep tree is no problem)."""
    todo = [tree]
    while todo:
        node = todo.pop()
        if isinstance(node, dict):
            kind = node.get("type")
            if isinstance(kind, str) and kind.endswith("_NODE"):
                node_types.add(kind)
            name = node.get("function_name")
            if isinstance(name, str):
                functions.add(name.lower())
            todo.extend(node.values())
        elif isinstance(node, list):
            todo.extend(node)


def _tables_named(con: duckdb.DuckDBPyConnection, query: str) -> set[str] | None:
    """The names of the tables an admitted SELECT reads, from its parse tree (parsed, not bound: binding would call
    into an object-store lake's Python filesystem); None (every table) where the tree cannot be read."""
    try:
        tree = json.loads(con.execute("SELECT json_serialize_sql($q)", {"q": query}).fetchall()[0][0])
    except (duckdb.Error, ValueError, TypeError, RecursionError):
        return None
    names, todo = set(), [tree]
    while todo:
        node = todo.pop()
        if isinstance(node, dict):
            if node.get("type") == "BASE_TABLE" and isinstance(node.get("table_name"), str):
                names.add(node["table_name"].lower())
            todo.extend(node.values())
        elif isinstance(node, list):
            todo.extend(node)
    return names


def _check_tree(con: duckdb.DuckDBPyConnection, query: str) -> None:
    """Refuse a SELECT whose parse tree holds a writer (COPY/INSERT/... in a CTE) or a refused function."""
    try:
        text = con.execute("SELECT json_serialize_sql($q)", {"q": query}).fetchall()[0][0]
        tree = json.loads(text)
    except RecursionError:
        raise QueryError("refused: the query is nested too deeply to be checked (its parse tree is deeper than "
                         "Python can read); write it with fewer nested subqueries") from None
    except (duckdb.Error, ValueError, TypeError) as e:
        raise QueryError(f"refused: DuckDB cannot show this query's parse tree, so it cannot be checked ({_line(e)})") from e
    if tree.get("error"):
        raise QueryError(
            f"refused: DuckDB cannot show this query's parse tree, so it cannot be checked "
            f"({tree.get('error_message', 'unknown error')})"
        )
    node_types: set[str] = set()
    functions: set[str] = set()
    _walk(tree.get("statements", []), node_types, functions)
    writers = sorted(node_types - _READ_NODES)
    if writers:
        kinds = ", ".join(w.removesuffix("_NODE").removesuffix("_QUERY") for w in writers)
        raise QueryError(
            f"refused: the SELECT holds a statement that is no query ({kinds}, in a WITH clause), which DuckDB "
            "would run; vlalign query only runs SELECT queries over the lake's tables"
        )
    for name in sorted(functions):
        if name in REFUSED_FUNCTIONS:
            raise QueryError(
                f"refused: function {name}() {REFUSED_FUNCTIONS[name]}; "
                "vlalign query only runs SELECT queries over the lake's tables"
            )


def admit(con: duckdb.DuckDBPyConnection, sql: str) -> list[str]:
    """The statement(s) of ``sql`` to run, or QueryError: exactly one SELECT (by DuckDB's parser), whose
    parse tree holds no data-modifying node and no refused function. Returns a list of one query text."""
    if not isinstance(sql, str):
        raise QueryError(f"the query must be a string, not {type(sql).__name__}")
    try:
        statements = con.extract_statements(sql)
    except duckdb.Error as e:
        raise QueryError(_TOO_DEEP if "expression depth" in str(e) else f"cannot parse the query: {_line(e)}") from e
    except RecursionError:
        raise QueryError("refused: the query is nested too deeply to be parsed; write it with fewer nested "
                         "subqueries") from None
    if not statements:
        raise QueryError("empty query: the SQL holds no statement (only whitespace, ';' or comments)")
    if len(statements) > 1:
        kinds = ", ".join(_statement_type(st) for st in statements)
        raise QueryError(
            f"refused: the SQL holds {len(statements)} statements ({kinds}); "
            "vlalign query runs exactly one SELECT per call"
        )
    st = statements[0]
    kind = _statement_type(st)
    if kind == "UNKNOWN":
        raise QueryError(
            f"refused: a statement of a kind this DuckDB client cannot name ({_snippet(st.query)!r}); "
            "vlalign query only runs SELECT queries over the lake's tables"
        )
    if kind not in ADMITTED_TYPES:
        raise QueryError(
            f"refused: {kind} statement ({_snippet(st.query)!r}) {_WHY.get(kind, _WRITES)}; "
            "vlalign query only runs SELECT queries over the lake's tables"
        )
    _check_tree(con, st.query)
    return [st.query]


# ------------------------------------------------------------------ running
_PATH_IN_MESSAGE = re.compile(r'Cannot access (?:file|directory) "([^"]*)"')
_TABLE_MISSING = re.compile(r"Table with name (\S+) does not exist")


def _explain(e: duckdb.Error, root: str) -> str:
    first = _line(e)
    if "expression depth" in first:
        return _TOO_DEEP
    if isinstance(e, duckdb.PermissionException) or "disabled by configuration" in first:
        found = _PATH_IN_MESSAGE.search(str(e))
        where = found.group(1) if found else "a file or the network"
        return f"refused: the query reads outside the lake ({where}); vlalign query reads only files under {root}/"
    if "configuration has been locked" in first:
        return f"refused: the query tries to change DuckDB's settings, which are locked ({first})"
    if isinstance(e, duckdb.CatalogException) and " extension" in first:
        return f"query failed: {first} (vlalign query cannot install or load extensions)"
    if "vlalign verify" in first:
        return f"query failed: {first}"
    if isinstance(e, (duckdb.IOException, duckdb.InvalidInputException)) and root in str(e):
        return (f"query failed: {first} (a file of the lake is damaged or missing: `vlalign verify` names it, "
                "`vlalign verify --repair` recomputes it)")
    missing = _TABLE_MISSING.search(first)
    if missing and ("/" in missing.group(1) or "." in missing.group(1)):
        return (f"query failed: {first} (a file path is no table here: read files under the lake with "
                f"read_parquet('{root}/...'))")
    return f"query failed: {first}"


def _check_params(query_params: list[str], params: dict | None) -> dict | None:
    if params is None or params == {}:
        params = None
    elif not isinstance(params, dict):
        raise QueryError(f"query parameters must be a dict of name -> value, not {type(params).__name__}")
    given = set(params or {})
    wanted = set(query_params)
    if wanted - given:
        names = ", ".join("$" + n for n in sorted(wanted - given))
        raise QueryError(f"the query uses parameter(s) {names} but no value was given for them")
    if given - wanted:
        names = ", ".join(sorted(given - wanted))
        raise QueryError(f"value(s) given for parameter(s) the query does not use: {names}")
    return params


def _failure(e: Exception, root: str, limits: Limits, timer: threading.Timer) -> str:
    """The one-line message of a query that failed while running or streaming: a limit it hit, or why it failed.
    (DuckDB's errors may reach the Arrow stream as Arrow errors, hence the text checks.)"""
    text = str(e).lower()
    if isinstance(e, duckdb.InterruptException) or (timer.finished.is_set() and "interrupt" in text):
        return (f"stopped: the query ran longer than its time limit of {limits.seconds:g} s "
                "(vlalign query --timeout SECONDS)")
    if isinstance(e, duckdb.OutOfMemoryException) or "memory limit" in text or "out of memory" in text:
        return (f"stopped: the query needs more memory than its limit of {limits.memory} "
                "(vlalign query --memory-limit SIZE)")
    return _explain(e, root) if isinstance(e, duckdb.Error) else f"query failed: {_line(e)}"


@contextlib.contextmanager
def open_query(catalog_path: str, lake_root: str, sql: str, params: dict | None = None,
               fs: AbstractFileSystem | None = None,
               limits: Limits = DEFAULT_LIMITS) -> Iterator[tuple[pa.Schema, Iterator[pa.RecordBatch]]]:
    """Run one read-only SELECT over the lake's tables, with ``$name`` parameters bound from ``params``, and
    yield ``(schema, batches)``: the result streamed in Arrow record batches of ``limits.batch_rows`` rows, never
    materialised whole. The query is interrupted after ``limits.seconds`` (reading included) and may use at
    most ``limits.memory``; either limit, a refusal or a failure raises QueryError with one line. The connection
    is closed on leaving. ``fs``: the filesystem of an object-store lake (see :func:`open_door`)."""
    root = _door_root(lake_root, fs)
    con = open_door(catalog_path, lake_root, fs, limits, tables=set())
    timer = threading.Timer(limits.seconds, con.interrupt)
    timer.daemon = True
    try:
        (query,) = admit(con, sql)
        create_views(con, root, _tables_named(con, query))  # (making a view reads its files' footers)
        try:
            wanted = list(con.extract_statements(query)[0].named_parameters)
        except duckdb.Error:
            wanted = []
        bound = _check_params(wanted, params)
        timer.start()

        try:
            reader = con.sql(query, params=bound).to_arrow_reader(limits.batch_rows)
        except duckdb.Error as e:
            raise QueryError(_failure(e, root, limits, timer)) from e
        except (TypeError, ValueError, OverflowError) as e:  # a parameter value DuckDB cannot bind
            raise QueryError(f"query failed: cannot bind the parameters ({e})") from e

        def batches() -> Iterator[pa.RecordBatch]:
            while True:
                try:
                    yield reader.read_next_batch()
                except StopIteration:
                    return
                except (duckdb.Error, pa.ArrowException, OSError) as e:  # DuckDB errors arrive as Arrow errors
                    raise QueryError(_failure(e, root, limits, timer)) from e

        yield reader.schema, batches()
    finally:
        timer.cancel()
        con.close()


def run_query(catalog_path: str, lake_root: str, sql: str, params: dict | None = None,
              fs: AbstractFileSystem | None = None, limits: Limits = DEFAULT_LIMITS) -> pa.Table:
    """:func:`open_query`, read into one Arrow table (for results known to be small: reports, tests)."""
    with open_query(catalog_path, lake_root, sql, params, fs, limits) as (schema, batches):
        return pa.Table.from_batches(list(batches), schema=schema)
