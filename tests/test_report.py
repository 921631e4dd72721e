"""The report's SQL files (sql/report_*.sql) run with bound parameters, and summary / plot_run on top of them.

The SQL files are run with DuckDB directly against in-memory tables named like the lake's views (cka, matching,
rejects, with the views' columns from vlalign.schemas.TABLE_SCHEMAS), so nothing here depends on how the lake lays
out its files. Run ids and data set names contain a single quote: binding, not quoting, keeps them intact.
"""

from __future__ import annotations

import re
from collections import defaultdict
from types import SimpleNamespace

import duckdb
import pyarrow as pa
import pytest

import vlalign.report as report
from vlalign.catalog import load_sql
from vlalign.schemas import TABLE_SCHEMAS

RUN = "it's"  # the run under test
OTHER = "other"  # a second run in the same tables, which no query for RUN may see
DATASETS = ("emoji", "o'brien")
REPORT_SQL = ("report_cka_summary", "report_matching_summary", "report_datasets", "report_rejects",
              "report_cka_grid", "report_matching_bars")

# (vision, text, kernel) -> (value, shuffled_value) for RUN; o'brien's values are 0.01 lower
CKA = {("v1", "t1", "linear"): (0.81, 0.10), ("v1", "t2", "linear"): (0.52, 0.20),
       ("v2", "t1", "linear"): (0.30, 0.35), ("v2", "t2", "linear"): (0.63, 0.05),
       ("v1", "t1", "rbf"): (0.71, 0.10), ("v2", "t2", "rbf"): (0.40, 0.50)}
# method -> (vision, text) -> accuracy at seed 0 (seed 1 adds 0.02)
MATCHING = {"local_cka": {("v1", "t1"): 0.40, ("v1", "t2"): 0.20, ("v2", "t1"): 0.10},
            "relative": {("v1", "t1"): 0.30, ("v2", "t1"): 0.50}}
REJECTS = {("emoji", "decode"): 2, ("emoji", "caption"): 1, ("o'brien", "decode"): 3, ("zzz", "decode"): 7}


def _cka_rows() -> list[dict]:
    rows = [dict(run_id=RUN, dataset=ds, domain="google", lang="en", vision_encoder=v, text_encoder=t, kernel=k,
                 debiased=False, n=100, value=a - 0.01 * d, shuffled_value=b, seed=0, seconds=0.1)
            for (v, t, k), (a, b) in CKA.items() for d, ds in enumerate(DATASETS)]
    rows.append(dict(run_id=OTHER, dataset="zzz", vision_encoder="v9", text_encoder="t9", kernel="linear",
                     value=0.99, shuffled_value=0.0))
    return rows


def _matching_rows() -> list[dict]:
    rows = [dict(run_id=RUN, dataset="emoji", domain="google", lang="en", vision_encoder=v, text_encoder=t,
                 method=m, base_size=50, query_size=50, base_selection="random", stretch=False, seed=seed,
                 accuracy=a + 0.02 * seed, chance=0.02 + 0.01 * (m == "relative"), objective=1.0, seconds=0.1)
            for m, accs in MATCHING.items() for (v, t), a in accs.items() for seed in (0, 1)]
    rows.append(dict(run_id=OTHER, dataset="zzz", vision_encoder="v1", text_encoder="t1", method="local_cka",
                     accuracy=0.99, chance=0.5))
    return rows


def _reject_rows() -> list[dict]:
    return [dict(dataset=ds, stage=stage, item_id=f"{ds}-{stage}-{i}", reason="bad")
            for (ds, stage), n in REJECTS.items() for i in range(n)]


def _connection() -> duckdb.DuckDBPyConnection:
    """In-memory tables cka, matching and rejects with the columns of the lake's views (others left NULL)."""
    con = duckdb.connect()
    for name, rows in (("cka", _cka_rows()), ("matching", _matching_rows()), ("rejects", _reject_rows())):
        table = pa.Table.from_pylist(rows, schema=TABLE_SCHEMAS[name])
        con.register("_rows", table)
        con.execute(f"CREATE TABLE {name} AS SELECT * FROM _rows")
        con.unregister("_rows")
    return con


@pytest.fixture(scope="module")
def con():
    c = _connection()
    yield c
    c.close()


def _run(con, name: str, **params) -> list[dict]:
    return con.sql(load_sql(name), params=params).to_arrow_table().to_pylist()


def _mean(xs) -> float:
    xs = list(xs)
    return sum(xs) / len(xs)


# ---------------------------------------------------------------------------------------------------------------
# The SQL files
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", REPORT_SQL)
def test_each_report_sql_file_documents_what_it_returns_and_its_parameters(name):
    text = load_sql(name)
    assert text.startswith(f"-- {name}: ")
    header = "".join(line for line in text.splitlines() if line.startswith("--"))
    documented = set(re.findall(r"\$(\w+)", re.search(r"Parameters: (.*)", header).group(1)))
    body = "\n".join(line for line in text.splitlines() if not line.startswith("--"))
    assert documented == set(re.findall(r"\$(\w+)", body)) and documented
    assert "'" not in re.sub(r"' x '", "", body)  # no string literal other than the pair separator


def test_cka_summary_matches_python(con):
    rows = _run(con, "report_cka_summary", run_id=RUN)
    assert [r["kernel"] for r in rows] == ["linear", "rbf"]
    for r in rows:
        mine = [c for c in _cka_rows() if c["run_id"] == RUN and c["kernel"] == r["kernel"]]
        best = max(mine, key=lambda c: c["value"])
        assert r["n"] == len(mine) == 2 * sum(k == r["kernel"] for _, _, k in CKA)
        assert r["mean_value"] == pytest.approx(_mean(c["value"] for c in mine), rel=1e-12)
        assert r["mean_shuffled"] == pytest.approx(_mean(c["shuffled_value"] for c in mine), rel=1e-12)
        assert r["beats_shuffled"] == sum(c["value"] > c["shuffled_value"] for c in mine)
        assert r["best_pair"] == f"{best['vision_encoder']} x {best['text_encoder']}"
        assert r["best_value"] == best["value"]
    assert rows[0]["best_pair"] == "v1 x t1" and rows[0]["beats_shuffled"] == 6  # v2 x t1 loses on both sets


def test_matching_summary_matches_python(con):
    rows = _run(con, "report_matching_summary", run_id=RUN)
    groups = defaultdict(list)
    for r in _matching_rows():
        if r["run_id"] == RUN:
            groups[(r["method"], r["vision_encoder"], r["text_encoder"])].append(r)
    expected = sorted(((m, v, t, _mean(r["accuracy"] for r in rs), _mean(r["chance"] for r in rs))
                       for (m, v, t), rs in groups.items()), key=lambda e: (e[0], -e[3]))
    assert [(r["method"], r["vision_encoder"], r["text_encoder"]) for r in rows] == [e[:3] for e in expected]
    for r, e in zip(rows, expected):
        assert r["accuracy"] == pytest.approx(e[3], rel=1e-12)
        assert r["chance"] == pytest.approx(e[4], rel=1e-12)


def test_datasets_and_rejects_bind_names_with_quotes(con):
    assert [r["dataset"] for r in _run(con, "report_datasets", run_id=RUN)] == sorted(DATASETS)
    assert [r["dataset"] for r in _run(con, "report_datasets", run_id=OTHER)] == ["zzz"]
    for ds in ("emoji", "o'brien", "zzz"):
        expected = sorted((stage, n) for (d, stage), n in REJECTS.items() if d == ds)
        assert [(r["stage"], r["n"]) for r in _run(con, "report_rejects", dataset=ds)] == expected
    assert _run(con, "report_rejects", dataset="nowhere") == []


def test_cka_grid_matches_python(con):
    rows = _run(con, "report_cka_grid", run_id=RUN)
    assert len(rows) == len(CKA)
    cell = ("vision_encoder", "text_encoder", "kernel")
    for r in rows:
        mine = [c for c in _cka_rows() if c["run_id"] == RUN and [c[k] for k in cell] == [r[k] for k in cell]]
        assert len(mine) == len(DATASETS)
        assert r["v"] == pytest.approx(_mean(c["value"] for c in mine), rel=1e-12)
        assert r["s"] == pytest.approx(_mean(c["shuffled_value"] for c in mine), rel=1e-12)


def test_matching_bars_match_python(con):
    rows = _run(con, "report_matching_bars", run_id=RUN)
    pairs = [r["pair"] for r in rows]
    assert pairs == sorted(pairs)
    groups = defaultdict(list)
    for r in _matching_rows():
        if r["run_id"] == RUN:
            groups[(r["method"], f"{r['vision_encoder']} x {r['text_encoder']}")].append(r)
    assert {(r["method"], r["pair"]) for r in rows} == set(groups)
    for r in rows:
        rs = groups[(r["method"], r["pair"])]
        assert r["acc"] == pytest.approx(_mean(x["accuracy"] for x in rs), rel=1e-12)
        assert r["chance"] == pytest.approx(_mean(x["chance"] for x in rs), rel=1e-12)


@pytest.mark.parametrize("name", [n for n in REPORT_SQL if n != "report_rejects"])
def test_a_quote_in_the_run_id_is_data_not_sql(con, name):
    assert _run(con, name, run_id="x' OR '1'='1") == []
    assert _run(con, name, run_id="it''s") == []  # the escaped spelling is another run id, not RUN


# ---------------------------------------------------------------------------------------------------------------
# summary and plot_run over those SQL files
# ---------------------------------------------------------------------------------------------------------------


@pytest.fixture()
def bound_query(monkeypatch, con):
    """vlalign.report.query replaced by one that runs the SQL on the in-memory tables with its parameters bound;
    the calls are recorded."""
    calls = []

    def query(lake, sql, params=None):
        calls.append((sql, params))
        return con.sql(sql, params=params).to_arrow_table()

    monkeypatch.setattr(report, "query", query)
    return calls


def test_summary_text(bound_query):
    text = report.summary(SimpleNamespace(root="/nonexistent"), RUN)
    assert text.splitlines() == [
        "run it's",
        "  CKA linear: 8 pairs, mean 0.560 (shuffled 0.175), true > shuffled in 6/8; best v1 x t1 = 0.810",
        "  CKA    rbf: 4 pairs, mean 0.550 (shuffled 0.300), true > shuffled in 2/4; best v1 x t1 = 0.710",
        "  matching         local_cka: best v1 x t1 41.0%, v1 x t2 21.0%, v2 x t1 11.0%  "
        "(chance 2.00%, best = 20x chance)",
        "  matching          relative: best v2 x t1 51.0%, v1 x t1 31.0%  (chance 3.00%, best = 17x chance)",
        "  rejects in emoji: 3 (caption 1, decode 2; vlalign query \"select * from rejects\")",
        "  rejects in o'brien: 3 (decode 3; vlalign query \"select * from rejects\")",
    ]
    assert report.summary(SimpleNamespace(root="/nonexistent"), RUN, top=1).splitlines()[3].endswith(
        "best v1 x t1 41.0%  (chance 2.00%, best = 20x chance)")
    # every query came from a report SQL file, the names only as bound parameters
    assert bound_query and all(params for _, params in bound_query)
    assert all(sql in {load_sql(n) for n in REPORT_SQL} for sql, _ in bound_query)
    assert {"run_id": RUN} in [p for _, p in bound_query] and {"dataset": "o'brien"} in [p for _, p in bound_query]


def test_summary_of_an_unknown_run_is_just_its_title(bound_query):
    assert report.summary(SimpleNamespace(root="/nonexistent"), "x' OR '1'='1") == "run x' OR '1'='1"


def test_plot_run_writes_pngs(bound_query, tmp_path):
    written = report.plot_run(SimpleNamespace(root=str(tmp_path)), RUN, tmp_path / "plots")
    assert [p.rsplit("/", 1)[1] for p in written] == ["cka_linear.png", "cka_rbf.png", "matching.png"]
    for p in written:
        with open(p, "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    # default folder: <lake root>/reports/run=<run id>
    default = report.plot_run(SimpleNamespace(root=str(tmp_path)), RUN)
    assert all(p.startswith(str(tmp_path / "reports" / "run=it's")) for p in default) and len(default) == 3
    assert report.plot_run(SimpleNamespace(root=str(tmp_path)), OTHER + "-none", tmp_path / "empty") == []
