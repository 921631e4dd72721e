"""SQL over the lake: views built by writers from the run records, read-only queries, pairs and splits."""

from __future__ import annotations

import os
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest

from vlalign.datalake.catalog import QueryError, query, refresh_catalog, run_sql
from vlalign.datalake.runs import start_record, write_record
from vlalign.datalake.schemas import CKA_SCHEMA, ITEM_SCHEMA, TABLE_SCHEMAS, readme_table
from vlalign.datalake.store import Lake
from vlalign.datalake.views import create_views

REPO = Path(__file__).resolve().parent.parent


def _cka_rows(cell_id, n):
    return [
        {"cell_id": cell_id, "dataset": "emoji", "domain": "google", "lang": "en", "vision_encoder": f"v{i}",
         "text_encoder": "t", "kernel": "linear", "debiased": False, "n": 100, "value": 0.5, "shuffled_value": 0.01,
         "ci_low": None, "ci_high": None, "seed": 0, "seconds": 0.1, "note": None}
        for i in range(n)
    ]


def _cell(lake, cell_id, n):
    return lake.write_table(lake.result_path("cka", cell_id), pa.Table.from_pylist(_cka_rows(cell_id, n), schema=CKA_SCHEMA))


def _run(lake, run_id, cells):
    rec = start_record(lake, run_id, "sweep", {"name": run_id})
    rec["cells"] = {"cka": cells}
    write_record(lake, rec)
    refresh_catalog(lake)


def test_every_view_exists_with_its_columns_before_any_result(tmp_path):
    lake = Lake.open(tmp_path)
    refresh_catalog(lake)
    for name, schema in TABLE_SCHEMAS.items():
        assert query(lake, f"select * from {name}").column_names == schema.names
    assert query(lake, "select count(*) as n from cka")["n"].to_pylist() == [0]


def test_result_views_show_only_cells_that_runs_list_and_join_run_ids(tmp_path):
    lake = Lake.open(tmp_path)
    _cell(lake, "aaaa", 3)
    _cell(lake, "bbbb", 2)
    _cell(lake, "dropped", 5)  # a file no run recorded: never read
    _run(lake, "r1", ["aaaa"])
    assert query(lake, "select count(*) as n from cka")["n"].to_pylist() == [3]
    _run(lake, "r2", ["aaaa", "bbbb"])  # a cell shared by two runs is stored once, listed by both
    rows = query(lake, "select run_id, count(*) as n from cka group by run_id order by run_id").to_pylist()
    assert rows == [{"run_id": "r1", "n": 3}, {"run_id": "r2", "n": 5}]
    assert query(lake, "select count(*) as n from cka where cell_id = 'dropped'")["n"].to_pylist() == [0]
    assert sorted(query(lake, "select run_id from runs")["run_id"].to_pylist()) == ["r1", "r2"]


def test_query_binds_parameters(tmp_path):
    lake = Lake.open(tmp_path)
    _cell(lake, "aaaa", 3)
    _run(lake, "r1", ["aaaa"])
    out = query(lake, "select count(*) as n from cka where run_id = $r and vision_encoder <> $v", {"r": "r1", "v": "it's"})
    assert out["n"].to_pylist() == [3]


def test_query_on_a_missing_lake_is_an_error_and_creates_nothing(tmp_path):
    missing = tmp_path / "no" / "lake"
    with pytest.raises(QueryError, match="no lake at"):
        query(Lake.open(missing), "select 1")
    assert not (tmp_path / "no").exists()
    (tmp_path / "empty").mkdir()
    with pytest.raises(QueryError, match="no catalog"):
        query(Lake.open(tmp_path / "empty"), "select 1")
    assert os.listdir(tmp_path / "empty") == []


def test_a_refresh_while_a_query_holds_the_catalog_succeeds(tmp_path):
    lake = Lake.open(tmp_path)
    _cell(lake, "aaaa", 3)
    _run(lake, "r1", ["aaaa"])
    reader = duckdb.connect(str(tmp_path / "lake.duckdb"), read_only=True)  # a long query, still open
    assert create_views(reader, str(tmp_path))  # the views over this root's files (the catalog holds no path)
    try:
        _cell(lake, "bbbb", 2)
        _run(lake, "r2", ["bbbb"])  # the writer's refresh does not wait for, or break, the reader
        assert reader.execute("select count(*) from cka").fetchone()[0] == 3  # the reader keeps its snapshot
    finally:
        reader.close()
    assert query(lake, "select count(*) as n from cka")["n"].to_pylist() == [5]
    assert not [p for p in os.listdir(tmp_path) if ".tmp-" in p]


def test_query_errors_are_clear(tmp_path):
    lake = Lake.open(tmp_path)
    refresh_catalog(lake)
    with pytest.raises(QueryError, match="nope"):
        query(lake, "select nope from cka")


def test_readme_lists_every_table_with_the_columns_of_the_schemas():
    readme = (REPO / "README.md").read_text()
    assert readme_table() in readme, "README's table reference is stale: paste `python -m vlalign.datalake.schemas`"


def test_pairs_and_splits_are_deterministic_by_seed(tmp_path):
    items = pa.table({
        "image_id": [f"i{k // 2}" for k in range(40)], "caption_id": [f"c{k}" for k in range(40)],
        "domain": ["d"] * 40, "lang": ["en"] * 38 + ["fr"] * 2, "label": [None] * 40, "sublabel": [None] * 40,
    })
    import pyarrow.parquet as pq

    pq.write_table(items, tmp_path / "items.parquet")
    pairs = run_sql("pairs", {"items": str(tmp_path / "items.parquet"), "domain": "d", "lang": "en"})
    assert pairs.num_rows == 19 + 1 - 1  # images i0..i18 (i19's captions are fr)
    assert pairs["caption_ids"].to_pylist()[0] == ["c0", "c1"]
    pq.write_table(pairs, tmp_path / "pairs.parquet")
    split = lambda seed: run_sql("splits", {"pairs": str(tmp_path / "pairs.parquet"), "seed": seed, "query_size": 5})
    a, b, c = split(0), split(0), split(1)
    assert a.equals(b)
    assert a["image_id"].to_pylist() != c["image_id"].to_pylist()
    assert a["role"].to_pylist().count("query") == 5
    assert sorted(a["image_id"].to_pylist()) == sorted(pairs["image_id"].to_pylist())


def _lake_with_items_and_cells(root: Path) -> Lake:
    lake = Lake.open(root)
    items = pa.Table.from_pylist([{"item_id": f"i{k}", "image_id": f"m{k}", "caption": "a cat", "lang": "en",
                                   "domain": "google"} for k in range(4)], schema=ITEM_SCHEMA)
    lake.write_table(lake.items_path("tiny"), items)
    _cell(lake, "aaaa", 3)
    rec = start_record(lake, "r1", "sweep", {"name": "r1"})
    rec["cells"] = {"cka": ["aaaa"]}
    rec["files"] = {"items": [lake.relpath(lake.items_path("tiny"))]}
    write_record(lake, rec)
    refresh_catalog(lake)
    return lake


def _every_view(lake) -> dict[str, list]:
    return {name: sorted(map(str, query(lake, f"select * exclude (path) from {name}" if name == "embedding_index"
                                        else f"select * from {name}").to_pylist())) for name in TABLE_SCHEMAS}


@pytest.mark.parametrize("where", ["plain/lake", "a [1]/dataset=x/lake", "spaces and ü/runs=3/lake"])
def test_a_copied_moved_read_only_lake_answers_every_view_in_place(tmp_path, where):
    import shutil

    original = _lake_with_items_and_cells(tmp_path / "first" / "lake")
    before = _every_view(original)
    assert len(before["items"]) == 4 and len(before["cka"]) == 3 and len(before["runs"]) == 1
    assert {r for r in before["items"] if "'dataset': 'tiny'" not in r} == set()
    copy = tmp_path / "elsewhere" / where
    shutil.copytree(tmp_path / "first" / "lake", copy)
    shutil.rmtree(tmp_path / "first")  # the old root is gone: nothing may still point at it
    for dirpath, dirs, files in os.walk(copy):
        for f in files:
            os.chmod(os.path.join(dirpath, f), 0o444)
    for dirpath, dirs, files in os.walk(copy, topdown=False):
        os.chmod(dirpath, 0o555)
    try:
        moved = Lake.open(copy)
        assert _every_view(moved) == before  # the same rows; names come from the lake's own layout
        assert query(moved, "select count(*) as n from items where dataset = 'tiny'")["n"].to_pylist() == [4]
    finally:
        for dirpath, dirs, files in os.walk(copy):
            os.chmod(dirpath, 0o755)


def test_a_run_that_stopped_rewriting_its_record_shows_as_interrupted_with_its_cells(tmp_path):
    """A killed run leaves its record 'running': once its heartbeat is older than STALE_SECONDS the runs view says
    'interrupted', with the cells_done it last wrote; a live run stays 'running'."""
    import json
    import time

    from vlalign.datalake.runs import STALE_SECONDS
    from vlalign.datalake.views import load_sql

    assert f"epoch(now()) - {STALE_SECONDS:g}" in load_sql("views")  # the view's bound is the module's
    lake = Lake.open(tmp_path)
    for run_id, age in (("killed", STALE_SECONDS + 60), ("alive", 5)):
        rec = start_record(lake, run_id, "sweep", {"name": run_id})
        rec.update(cells_total=150, cells_done=16)
        write_record(lake, rec)
        path = lake.run_path(run_id)
        data = json.loads(Path(path).read_text())
        data["alive_at"] = time.time() - age
        Path(path).write_text(json.dumps(data))
    refresh_catalog(lake)
    rows = query(lake, "select run_id, status, cells_done from runs order by run_id").to_pylist()
    assert rows == [{"run_id": "alive", "status": "running", "cells_done": 16},
                    {"run_id": "killed", "status": "interrupted", "cells_done": 16}]


def test_a_running_record_is_rewritten_by_its_heartbeat(tmp_path, monkeypatch):
    import time

    from vlalign.datalake import runs

    monkeypatch.setattr(runs, "HEARTBEAT_SECONDS", 0.2)
    lake = Lake.open(tmp_path)
    with runs.recorded_run(lake, "r", "sweep", {"name": "r"}) as record:
        record["cells_done"] = 7
        first = lake.read_json(lake.run_path("r"))["alive_at"]
        deadline = time.monotonic() + 30
        while (now := lake.read_json(lake.run_path("r")))["alive_at"] == first and time.monotonic() < deadline:
            time.sleep(0.05)
        assert now["alive_at"] > first and now["cells_done"] == 7 and now["status"] == "running"
    assert lake.read_json(lake.run_path("r"))["status"] == "completed"
