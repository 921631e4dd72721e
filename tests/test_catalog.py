"""SQL over the lake: views from sql/views.sql, read-only queries, pairs and splits in DuckDB."""

from __future__ import annotations

import duckdb
import pyarrow as pa
import pytest

from vlalign.catalog import QueryError, query, refresh_catalog, run_sql
from vlalign.lake import Lake
from vlalign.schemas import CKA_SCHEMA


def _cka_rows(run_id, n):
    return [
        {"run_id": run_id, "dataset": "emoji", "domain": "google", "lang": "en", "vision_encoder": f"v{i}",
         "text_encoder": "t", "kernel": "linear", "debiased": False, "n": 100, "value": 0.5, "shuffled_value": 0.01,
         "ci_low": None, "ci_high": None, "seed": 0, "seconds": 0.1}
        for i in range(n)
    ]


def test_views_exist_even_before_any_result_and_fill_in_later(tmp_path):
    lake = Lake.open(tmp_path)
    assert query(lake, "select count(*) as n from cka")["n"].to_pylist() == [0]
    assert "vision_encoder" in query(lake, "select * from matching").column_names
    lake.write_table(lake.result_path("cka", "r1", "cell-a"), pa.Table.from_pylist(_cka_rows("r1", 3), schema=CKA_SCHEMA))
    assert query(lake, "select count(*) as n from cka")["n"].to_pylist() == [3]


def test_write_statements_are_refused_and_change_nothing(tmp_path):
    lake = Lake.open(tmp_path)
    lake.write_table(lake.result_path("cka", "r1", "c"), pa.Table.from_pylist(_cka_rows("r1", 2), schema=CKA_SCHEMA))
    for sql in ("drop view cka", "create table x as select 1", "delete from cka", "copy cka to 'out.csv'",
                "select 1; drop view cka"):
        with pytest.raises(QueryError, match="refused: .* read-only"):
            query(lake, sql)
    assert query(lake, "select count(*) as n from cka")["n"].to_pylist() == [2]
    # and the file itself is opened read-only: a write that slips past the check still fails
    con = duckdb.connect(refresh_catalog(lake), read_only=True)
    with pytest.raises(duckdb.Error, match="read-only"):
        con.execute("drop view cka")
    con.close()


def test_query_errors_are_clear(tmp_path):
    with pytest.raises(QueryError, match="query failed"):
        query(Lake.open(tmp_path), "select nope from cka")


def test_pairs_and_splits_are_deterministic_by_seed(tmp_path):
    items = pa.table({
        "image_id": [f"i{k // 2}" for k in range(40)], "caption_id": [f"c{k}" for k in range(40)],
        "domain": ["d"] * 40, "lang": ["en"] * 38 + ["fr"] * 2, "label": [None] * 40,
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
