"""The sealed read-only SQL door (vlalign.datalake.sqldoor): normal reads work, hostile SQL is refused and changes
nothing, a missing lake creates nothing, and doors coexist with each other and with a catalog swap.

Pure DuckDB + pyarrow: no Prefect, no encoders."""

from __future__ import annotations

import glob
import hashlib
import os
import subprocess
import sys
import textwrap
import threading
from concurrent.futures import ThreadPoolExecutor

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from vlalign.datalake.sqldoor import Limits, QueryError, admit, open_door, open_query, run_query

N_ROWS = 4
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [REPO, os.environ.get("PYTHONPATH")]))}


# ------------------------------------------------------------------ fixtures and helpers
class Lake:
    def __init__(self, tmp):
        self.tmp = str(tmp)
        self.root = os.path.join(self.tmp, "lake")
        self.catalog = os.path.join(self.root, "lake.duckdb")
        self.other = self.root + "-other"
        self.secret = os.path.join(self.tmp, "secret.csv")

    def query(self, sql, params=None):
        return run_query(self.catalog, self.root, sql, params)


def _write_catalog(path: str, view_sql: str) -> None:
    con = duckdb.connect(path)
    try:
        con.execute(view_sql)
    finally:
        con.close()


def _build_lake(tmp) -> Lake:
    lk = Lake(tmp)
    os.makedirs(os.path.join(lk.root, "results", "cka"))
    rows = {
        "vision_encoder": [f"v{i}" for i in range(N_ROWS)],
        "text_encoder": ["t"] * N_ROWS,
        "value": [0.1 * (i + 1) for i in range(N_ROWS)],
        "note": ["it's", "plain", "a;b", "--x"],
    }
    pq.write_table(pa.table(rows), os.path.join(lk.root, "results", "cka", "x.parquet"))
    _write_catalog(
        lk.catalog,
        f"CREATE VIEW cka AS SELECT * FROM read_parquet('{lk.root}/results/cka/*.parquet')",
    )
    with open(lk.secret, "w") as f:
        f.write("user,password\nroot,hunter2\n")
    os.makedirs(lk.other)
    pq.write_table(pa.table({"password": ["hunter2"]}), os.path.join(lk.other, "secret.parquet"))
    return lk


@pytest.fixture
def lake(tmp_path):
    return _build_lake(tmp_path)


@pytest.fixture(scope="module")
def shared_lake(tmp_path_factory):
    """One lake for all hostile statements: each test proves that nothing under its folder changed, so
    sharing it is safe (a statement that changed something fails its own test)."""
    return _build_lake(tmp_path_factory.mktemp("hostile"))


def _snapshot(top: str) -> dict[str, str]:
    """Every file (and link) under ``top``, by relative path, with a hash of its bytes."""
    out = {}
    for folder, dirs, files in os.walk(top):
        for name in dirs + files:
            path = os.path.join(folder, name)
            rel = os.path.relpath(path, top)
            if os.path.islink(path):
                out[rel] = "link:" + os.readlink(path)
            elif os.path.isfile(path):
                with open(path, "rb") as f:
                    out[rel] = hashlib.sha256(f.read()).hexdigest()
            else:
                out[rel] = "dir"
    return out


def _duckdb_home() -> list[str]:
    """What DuckDB keeps in ~/.duckdb (extensions, secrets): nothing may be installed by a query."""
    return sorted(glob.glob(os.path.expanduser("~/.duckdb/**"), recursive=True))


# ------------------------------------------------------------------ normal reads
def test_select_from_the_view(lake):
    t = lake.query("select * from cka order by vision_encoder")
    assert t.num_rows == N_ROWS
    assert t["vision_encoder"].to_pylist() == ["v0", "v1", "v2", "v3"]


def test_aggregate_cte_union_values_and_from_first(lake):
    assert lake.query("select count(*) as n, round(sum(value), 6) as s from cka").to_pylist() == [{"n": 4, "s": 1.0}]
    cte = "with big as (select * from cka where value > 0.25) select count(*) as n from big"
    assert lake.query(cte)["n"].to_pylist() == [2]
    assert lake.query("select 1 as a union all select 2 order by a")["a"].to_pylist() == [1, 2]
    assert lake.query("values (1), (2)").num_rows == 2
    assert lake.query("from cka select vision_encoder limit 1").num_rows == 1
    assert lake.query("with recursive r(n) as (select 1 union all select n + 1 from r where n < 3) select * from r").num_rows == 3


def test_describe_show_summarize_and_pivot_with_values(lake):
    cols = lake.query("describe cka")["column_name"].to_pylist()
    assert cols == ["vision_encoder", "text_encoder", "value", "note"]
    assert "cka" in lake.query("show tables")["name"].to_pylist()
    assert lake.query("summarize cka").num_rows == 4
    assert lake.query("pivot cka on text_encoder in ('t') using count(*) group by vision_encoder").num_rows == N_ROWS


def test_parameterised_query_with_a_quote_in_the_value(lake):
    t = lake.query("select vision_encoder from cka where note = $note", {"note": "it's"})
    assert t["vision_encoder"].to_pylist() == ["v0"]
    t = lake.query("select $v as v, count(*) as n from cka where value > $lo", {"v": "x'); drop view cka; --", "lo": 0.15})
    assert t.to_pylist() == [{"v": "x'); drop view cka; --", "n": 3}]
    with pytest.raises(QueryError, match=r"parameter\(s\) \$note but no value"):
        lake.query("select * from cka where note = $note")
    with pytest.raises(QueryError, match="does not use: extra"):
        lake.query("select 1", {"extra": 1})


def test_comments_are_only_comments(lake):
    before = _snapshot(lake.tmp)
    assert lake.query("select 1 as x /* ; drop view cka */").to_pylist() == [{"x": 1}]
    assert lake.query("select 1 as x; -- drop view cka").to_pylist() == [{"x": 1}]
    assert _snapshot(lake.tmp) == before


def test_reading_files_inside_the_lake_is_allowed(lake):
    t = lake.query(f"select count(*) as n from read_parquet('{lake.root}/results/cka/*.parquet')")
    assert t["n"].to_pylist() == [N_ROWS]
    assert lake.query(f"select count(*) as n from '{lake.root}/results/cka/x.parquet'")["n"].to_pylist() == [N_ROWS]


def test_a_big_sort_runs_without_spilling_anywhere(lake):
    before = _snapshot(lake.tmp)
    cwd = os.getcwd()
    os.chdir(lake.tmp)  # an in-memory DuckDB would spill to ./.tmp by default
    try:
        t = lake.query("select range as r from range(3000000) order by hash(range) limit 5")
        assert t.num_rows == 5
        n = lake.query("select count(*) as n from (select range from range(3000000) order by hash(range) desc)")
        assert n["n"].to_pylist() == [3000000]
    finally:
        os.chdir(cwd)
    assert _snapshot(lake.tmp) == before


# ------------------------------------------------------------------ the door's settings
def test_door_settings_are_sealed(lake):
    con = open_door(lake.catalog, lake.root)
    try:
        settings = dict(con.execute(
            "select name, value from duckdb_settings() where name in ('enable_external_access', 'lock_configuration', "
            "'autoload_known_extensions', 'autoinstall_known_extensions', 'allowed_directories', 'temp_directory')"
        ).fetchall())
        assert settings["enable_external_access"] == "false"
        assert settings["lock_configuration"] == "true"
        assert settings["autoload_known_extensions"] == "false"
        assert settings["autoinstall_known_extensions"] == "false"
        assert settings["temp_directory"] == ""
        assert lake.root + "/" in settings["allowed_directories"]
        assert con.execute("select readonly from duckdb_databases() where database_name = current_database()").fetchall() == [(True,)]
        # even SQL that skips admit() cannot undo the sandbox
        for sql in ("SET enable_external_access = true", "SET allowed_directories = ['/']", "RESET allowed_directories",
                    "SET lock_configuration = false"):
            with pytest.raises(duckdb.Error, match="locked"):
                con.execute(sql)
        with pytest.raises(duckdb.Error):
            con.execute("drop view cka")
    finally:
        con.close()


def test_sibling_folder_with_the_lake_name_as_prefix_is_not_allowed(lake):
    assert os.path.basename(lake.other) == "lake-other"
    for sql in (f"select * from read_parquet('{lake.other}/secret.parquet')", f"select * from '{lake.other}/secret.parquet'"):
        with pytest.raises(QueryError, match=r"reads outside the lake .*lake-other/secret\.parquet"):
            lake.query(sql)


def test_a_link_inside_the_lake_to_a_file_outside_is_refused(lake):
    os.symlink(lake.secret, os.path.join(lake.root, "results", "leak.csv"))
    before = _snapshot(lake.tmp)
    with pytest.raises(QueryError, match="reads outside the lake"):
        lake.query(f"select * from read_csv('{lake.root}/results/leak.csv')")
    assert _snapshot(lake.tmp) == before


def test_admit_returns_the_one_select(lake):
    con = open_door(lake.catalog, lake.root)
    try:
        assert admit(con, "select 1") == ["select 1"]
        assert admit(con, "describe cka") == ["describe cka"]
    finally:
        con.close()


# ------------------------------------------------------------------ hostile statements
# (sql with {lake}/{tmp}/{other} placeholders, regex the QueryError message must match)
OUTSIDE = r"refused: the query reads outside the lake"
HOSTILE = [
    # reads outside the lake
    ("select * from read_csv('{tmp}/secret.csv')", OUTSIDE + r" \(.*secret\.csv\)"),
    ("select * from read_csv('/etc/passwd')", OUTSIDE + r" \(/etc/passwd\)"),
    ("select * from read_text('/etc/passwd')", OUTSIDE + r" \(/etc/passwd\)"),
    ("select * from read_blob('/etc/passwd')", OUTSIDE + r" \(/etc/passwd\)"),
    ("select * from glob('/*')", OUTSIDE + r" \(/\*\)"),
    ("select * from '{tmp}/secret.csv'", OUTSIDE + r" \(.*secret\.csv\)"),
    ("select * from '/etc/passwd'", r"/etc/passwd does not exist.*a file path is no table here"),
    ("select * from read_parquet('{other}/secret.parquet')", OUTSIDE + r" \(.*lake-other/secret\.parquet\)"),
    ("select * from read_csv('{lake}/../secret.csv')", OUTSIDE + r" \(.*lake/\.\./secret\.csv\)"),
    ("select * from read_text('{lake}/results/cka/../../../secret.csv')", OUTSIDE),
    ("select * from read_parquet(['{lake}/results/cka/x.parquet', '{tmp}/secret.csv'])", OUTSIDE + r" \(.*secret\.csv\)"),
    ("select * from read_parquet('https://example.com/x.parquet')", OUTSIDE + r" \(https://example\.com/x\.parquet\)"),
    ("select * from read_csv('http://127.0.0.1:9/x.csv')", OUTSIDE + r" \(http://127"),
    ("select * from read_parquet('s3://bucket/x.parquet')", OUTSIDE + r" \(s3://bucket"),
    ("select * from read_csv('file:///etc/passwd')", OUTSIDE),
    ("select * from read_csv('/proc/self/environ')", OUTSIDE + r" \(/proc/self/environ\)"),
    ("select * from sniff_csv('/etc/passwd')", OUTSIDE),
    ("select * from parquet_metadata('{other}/secret.parquet')", OUTSIDE),
    ("select * from read_duckdb('{tmp}/other.duckdb')", OUTSIDE),
    ("select * from cka, lateral (select * from read_text('/etc/passwd'))", OUTSIDE),
    ("select getenv('HOME')", r"getenv does not exist"),
    ("select * from read_xlsx('{tmp}/secret.csv')", r"excel extension.*cannot install or load extensions"),
    # SQL hidden in strings, state-changing table functions
    ("select * from query('select 1')", r"refused: function query\(\) runs SQL given as a string"),
    ("select * from query('copy (select 1) to ''{lake}/evil.csv''')", r"refused: function query\(\)"),
    ("select * from query_table('cka')", r"refused: function query_table\(\)"),
    ("select * from json_execute_serialized_sql(json_serialize_sql('select 1'))", r"refused: function json_execute_serialized_sql\(\)"),
    ("select * from checkpoint()", r"refused: function checkpoint\(\) changes the database"),
    ("select * from force_checkpoint()", r"refused: function force_checkpoint\(\)"),
    ("select * from enable_logging(storage='file', storage_path='{lake}/logs')", r"refused: function enable_logging\(\)"),
    ("select * from enable_profiling()", r"refused: function enable_profiling\(\)"),
    # writes hidden inside a SELECT (DuckDB 2.0 types these as SELECT statements)
    ("with x as (copy (select 1 as evil) to '{lake}/results/cka/evil.parquet') select 1", r"refused: the SELECT holds a statement that is no query \(COPY"),
    ("with x as (delete from cka returning *) select * from x", r"refused: the SELECT holds a statement that is no query \(DELETE"),
    ("with x as (insert into cka values ('v', 't', 1.0, 'n') returning *) select * from x", r"refused: the SELECT holds a statement that is no query \(INSERT"),
    ("with x as (update cka set value = 0 returning *) select * from x", r"refused: the SELECT holds a statement that is no query \(UPDATE"),
    # writes
    ("create table t as select 1", r"refused: CREATE statement"),
    ("create view v as select 1", r"refused: CREATE statement"),
    ("create temp table t as select 1", r"refused: CREATE statement"),
    ("create macro m() as 1", r"refused: CREATE statement"),
    ("create secret (type s3, key_id 'x', secret 'y')", r"refused: CREATE statement"),
    ("insert into cka values ('v', 't', 1.0, 'n')", r"refused: INSERT statement"),
    ("update cka set value = 0", r"refused: UPDATE statement"),
    ("delete from cka", r"refused: DELETE statement"),
    ("drop view cka", r"refused: DROP statement"),
    ("alter view cka rename to c2", r"refused: ALTER statement"),
    ("merge into cka using (select 'v0' as vision_encoder) s using (vision_encoder) when matched then delete", r"refused: MERGE_INTO statement"),
    ("copy (select 1) to '{lake}/results/cka/evil.parquet'", r"refused: COPY statement .*writes or reads files"),
    ("copy cka from '{tmp}/secret.csv'", r"refused: COPY statement"),
    ("explain analyze copy (select 1) to '{lake}/results/cka/evil.parquet'", r"refused: EXPLAIN statement .*EXPLAIN ANALYZE"),
    ("explain select 1", r"refused: EXPLAIN statement .*like every EXPLAIN"),
    ("export database '{lake}/dump'", r"refused: EXPORT statement .*writes files"),
    ("import database '{lake}'", r"refused: PRAGMA statement .*IMPORT DATABASE"),
    ("vacuum", r"refused: VACUUM statement"),
    ("analyze", r"refused: VACUUM statement"),
    ("pivot cka on note using count(*)", r"refused: MULTI statement .*PIVOT without an IN"),
    # databases, extensions, settings
    ("attach '{lake}/new.duckdb'", r"refused: ATTACH statement"),
    ("attach '{lake}/new.duckdb' as n (read_only)", r"refused: ATTACH statement"),
    ("detach lake", r"refused: DETACH statement"),
    ("use memory", r"refused: SET statement .*USE"),
    ("install httpfs", r"refused: LOAD statement .*installs or loads an extension"),
    ("load httpfs", r"refused: LOAD statement"),
    ("force install httpfs from 'http://127.0.0.1:9'", r"refused: LOAD statement"),
    ("update extensions", r"refused: a statement of a kind this DuckDB client cannot name"),
    ("set enable_external_access = true", r"refused: SET statement"),
    ("set allowed_directories = ['/']", r"refused: SET statement"),
    ("reset allowed_directories", r"refused: SET statement .*RESET"),
    ("set variable x = 1", r"refused: SET statement"),
    ("pragma enable_profiling", r"refused: PRAGMA statement"),
    ("pragma enable_checkpoint_on_shutdown", r"refused: PRAGMA statement"),
    ("pragma show_tables", r"refused: PRAGMA statement"),
    ("pragma table_info('cka')", r"refused: PRAGMA statement"),
    ("call pragma_version()", r"refused: CALL statement"),
    ("call checkpoint()", r"refused: CALL statement"),
    ("checkpoint", r"refused: CALL statement .*CHECKPOINT"),
    ("force checkpoint", r"refused: CALL statement"),
    ("begin transaction", r"refused: TRANSACTION statement"),
    ("commit", r"refused: TRANSACTION statement"),
    ("prepare p as select 1", r"refused: PREPARE statement"),
    ("execute p", r"refused: EXECUTE statement"),
    # several statements, statements behind comments
    ("select 1; copy (select 1) to '{lake}/results/cka/evil.parquet'", r"refused: the SQL holds 2 statements \(SELECT, COPY\)"),
    ("select 1; -- a comment\ncopy (select 1) to '{lake}/evil.csv'", r"refused: the SQL holds 2 statements \(SELECT, COPY\)"),
    ("select 1 /* ; */; drop view cka", r"refused: the SQL holds 2 statements \(SELECT, DROP\)"),
    ("/* select 1; */ drop view cka", r"refused: DROP statement"),
    ("-- select 1\ndrop view cka", r"refused: DROP statement"),
    ("select 1; select 2", r"refused: the SQL holds 2 statements"),
    # nothing to run, or not SQL
    ("", r"empty query"),
    ("  ;  -- only a comment\n/* and a block */", r"empty query"),
    ("selec * from cka", r"cannot parse the query: Parser Error: syntax error"),
]


@pytest.mark.parametrize("sql,message", HOSTILE, ids=[f"{i:02d}-{s[:40]}" for i, (s, _) in enumerate(HOSTILE)])
def test_hostile_sql_is_refused_and_changes_nothing(shared_lake, sql, message):
    lake = shared_lake
    sql = sql.format(lake=lake.root, tmp=lake.tmp, other=lake.other)
    before, home_before = _snapshot(lake.tmp), _duckdb_home()
    with pytest.raises(QueryError, match=message) as err:
        lake.query(sql)
    assert "\n" not in str(err.value), "messages are one line"
    assert _snapshot(lake.tmp) == before, "a file under the test folder changed or appeared"
    assert _duckdb_home() == home_before, "something was installed in ~/.duckdb"
    assert lake.query("select count(*) as n from cka")["n"].to_pylist() == [N_ROWS]


def test_there_are_enough_hostile_cases():
    assert len(HOSTILE) >= 20


# ------------------------------------------------------------------ missing lakes create nothing
def test_a_lake_folder_that_does_not_exist(tmp_path):
    root = tmp_path / "nolake"
    with pytest.raises(QueryError, match=r"no lake at .*nolake.*run a sweep first"):
        run_query(str(root / "lake.duckdb"), str(root), "select 1")
    with pytest.raises(QueryError, match="no lake at"):
        open_door(str(root / "lake.duckdb"), str(root))
    assert not root.exists()
    assert list(tmp_path.iterdir()) == []


def test_a_lake_without_its_catalog(tmp_path):
    root = tmp_path / "lake"
    (root / "results").mkdir(parents=True)
    before = _snapshot(str(tmp_path))
    with pytest.raises(QueryError, match=r"no lake at .*lake\.duckdb does not exist"):
        run_query(str(root / "lake.duckdb"), str(root), "select 1")
    assert _snapshot(str(tmp_path)) == before


def test_a_remote_or_root_lake_is_refused(tmp_path):
    with pytest.raises(QueryError, match="not local"):
        run_query("s3://bucket/lake/lake.duckdb", "s3://bucket/lake", "select 1")
    with pytest.raises(QueryError, match="whole file system"):
        run_query(str(tmp_path / "lake.duckdb"), "/", "select 1")


# ------------------------------------------------------------------ concurrency
_SLOW = "select count(*) as n from cka, range(30000000)"


def test_the_catalog_can_be_replaced_while_a_door_is_open(lake):
    # a new catalog whose view reads a second file (under the same lake root)
    os.makedirs(os.path.join(lake.root, "results", "cka2"))
    pq.write_table(pa.table({"vision_encoder": ["new"]}), os.path.join(lake.root, "results", "cka2", "y.parquet"))
    script = textwrap.dedent(f"""
        import duckdb, os
        new = {lake.catalog!r} + ".new"
        con = duckdb.connect(new)
        con.execute("CREATE VIEW cka AS SELECT * FROM read_parquet('{lake.root}/results/cka2/*.parquet')")
        con.close()
        os.replace(new, {lake.catalog!r})
    """)
    con = open_door(lake.catalog, lake.root)
    try:
        (sql,) = admit(con, _SLOW)
        result = {}

        def slow():
            result["n"] = con.sql(sql).to_arrow_table()["n"].to_pylist()

        worker = threading.Thread(target=slow)
        worker.start()
        done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, env=ENV)
        assert done.returncode == 0, done.stderr
        worker.join(timeout=120)
        assert result["n"] == [N_ROWS * 30000000]
        # the open door still reads the catalog it opened
        assert con.sql("select count(*) as n from cka").to_arrow_table()["n"].to_pylist() == [N_ROWS]
    finally:
        con.close()
    # a new door reads the new catalog
    assert lake.query("select vision_encoder from cka")["vision_encoder"].to_pylist() == ["new"]


def test_two_doors_at_once_in_threads(lake):
    a = open_door(lake.catalog, lake.root)
    b = open_door(lake.catalog, lake.root)
    try:
        assert a.sql("select count(*) as n from cka").fetchall() == [(N_ROWS,)]
        assert b.sql("select count(*) as n from cka").fetchall() == [(N_ROWS,)]
    finally:
        a.close()
        b.close()
    with ThreadPoolExecutor(max_workers=6) as pool:
        counts = list(pool.map(lambda _: lake.query("select count(*) as n from cka")["n"].to_pylist(), range(12)))
    assert counts == [[N_ROWS]] * 12


def test_two_doors_at_once_in_two_processes(lake):
    script = textwrap.dedent(f"""
        from vlalign.datalake.sqldoor import run_query
        print(run_query({lake.catalog!r}, {lake.root!r}, {_SLOW!r})["n"].to_pylist()[0])
    """)
    con = open_door(lake.catalog, lake.root)
    try:
        other = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
        assert con.sql("select count(*) as n from cka").fetchall() == [(N_ROWS,)]
        out, err = other.communicate(timeout=120)
        assert other.returncode == 0, err
        assert int(out.strip()) == N_ROWS * 30000000
    finally:
        con.close()


def test_the_sandbox_alone_does_not_stop_writes_inside_the_lake(lake):
    """Why admit() walks the parse tree: DuckDB 2.0 types a COPY inside a WITH clause as a SELECT, and
    allowed_directories allows writing as well as reading, so a sealed door run without admit() writes."""
    sql = f"with x as (copy (select 1 as evil) to '{lake.root}/evil.parquet') select 1"
    con = open_door(lake.catalog, lake.root)
    try:
        assert [st.type.name for st in con.extract_statements(sql)] == ["SELECT"]
        with pytest.raises(QueryError, match=r"no query \(COPY"):
            admit(con, sql)
        con.execute(sql).fetchall()
    finally:
        con.close()
    assert os.path.exists(os.path.join(lake.root, "evil.parquet"))


def test_a_catalog_that_is_no_duckdb_file(tmp_path):
    root = tmp_path / "lake"
    root.mkdir()
    (root / "lake.duckdb").write_bytes(b"not a database" * 100)
    before = _snapshot(str(tmp_path))
    with pytest.raises(QueryError, match=r"cannot open the lake catalog .*lake\.duckdb"):
        run_query(str(root / "lake.duckdb"), str(root), "select 1")
    assert _snapshot(str(tmp_path)) == before


# ------------------------------------------------------------------ bounds: time, memory, depth, streaming
def test_an_unbounded_query_is_stopped_at_its_time_limit_with_the_limit_named(shared_lake):
    endless = "with recursive t(n) as (select 1 union all select n + 1 from t) select count(*) from t"
    for sql in (endless, "select * from range(3000000000)"):
        with pytest.raises(QueryError, match=r"time limit of 1 s \(vlalign query --timeout"):
            with open_query(shared_lake.catalog, shared_lake.root, sql, limits=Limits(seconds=1)) as (_, batches):
                for _ in batches:
                    pass


def test_a_query_over_its_memory_limit_fails_with_the_limit_named(shared_lake):
    big = "select max(s) from (select string_agg(range::varchar, ',') s from range(20000000))"
    with pytest.raises(QueryError, match=r"memory .* limit of 64MB \(vlalign query --memory-limit"):
        run_query(shared_lake.catalog, shared_lake.root, big, limits=Limits(memory="64MB"))
    # the limit is set, and locked, on the door's connection
    con = open_door(shared_lake.catalog, shared_lake.root, limits=Limits(memory="64MB"))
    try:
        assert con.execute("select current_setting('memory_limit')").fetchone()[0] in ("64.0 MB", "61.0 MiB")
        with pytest.raises(duckdb.Error):
            con.execute("SET memory_limit = '10GB'")
    finally:
        con.close()


@pytest.mark.parametrize("depth", [200, 1000, 5000])
def test_a_deeply_nested_statement_gets_one_line_not_a_recursion_error(shared_lake, depth):
    sql = "select " + "(select " * depth + "1" + ")" * depth
    try:
        assert run_query(shared_lake.catalog, shared_lake.root, sql).num_rows == 1  # shallow enough: it runs
    except QueryError as e:
        assert "nested too deeply" in str(e) and "\n" not in str(e)


def test_results_stream_in_batches_of_the_limit_size(shared_lake):
    with open_query(shared_lake.catalog, shared_lake.root, "select * from range(25000)",
                    limits=Limits(batch_rows=10000)) as (schema, batches):
        sizes = [b.num_rows for b in batches]
    assert schema.names == ["range"] and sum(sizes) == 25000 and max(sizes) <= 10000 and len(sizes) >= 3
