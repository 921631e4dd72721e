"""The report's SQL files (sql/report_*.sql) run with bound parameters, and summary / correlations / plot_run /
write_report on top of them.

The SQL files are run with DuckDB directly against in-memory tables named like the lake's views (cka, matching,
retrieval, classification, rejects, runs, run_cells, with the views' columns from vlalign.datalake.schemas.TABLE_SCHEMAS),
so nothing here depends on how the lake lays out its files. The run under test has every study of a spec: the
main grid, curves and the ablation, cross-domain, cross-lingual (one text encoder skipped as English-only) and
classification, plus a result that two cells hold, a row in no study and a second run that no query may see.
Run ids and data set names contain a single quote: binding, not quoting, keeps them intact.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from datetime import datetime
from html.parser import HTMLParser
from types import SimpleNamespace

import duckdb
import pyarrow as pa
import pytest

import vlalign.report.build as report
from vlalign.datalake.schemas import TABLE_SCHEMAS
from vlalign.datalake.views import SQL_DIR, load_sql
from vlalign.report import rundata
from vlalign.report.plan import Plan
from vlalign.report.rows import measure_name, over_seeds, pair_name
from vlalign.report.studies import concepts
from vlalign.report.studies.correlation import CORRELATION_KEYS

try:
    from tests.chromium import chromium, readability_problems  # noqa: F401  (the fixture)
except ImportError:  # tests/ itself on sys.path
    from chromium import chromium, readability_problems  # noqa: F401

RUN = "it's"  # the run under test
OTHER = "other"  # a second run in the same tables, which no query for RUN may see
DATASETS = ("emoji", "o'brien")
REPORT_SQL = sorted(p.stem for p in SQL_DIR.glob("report_*.sql"))
BY_DATASET = {"report_rejects"}  # the files bound to $dataset; every other one is bound to $run_id

SPEC = {
    "name": "t", "datasets": [{"name": "emoji", "domains": ["google"], "langs": ["en"]}],
    "vision_encoders": ["v1", "v2"], "text_encoders": ["t1", "t2"],
    "analyses": {"cka": {"kernels": ["linear", "rbf"], "debiased": [False, True], "mutual_knn": [5]},
                 "matching": ["local_cka"], "retrieval": ["local_cka"], "baselines": ["relative"],
                 "cross_domain": {"pairs": [{"base": "google", "query": "twitter"}]},
                 "cross_lingual": {"langs": ["de"]},
                 "classification": {"label_fields": ["label"], "methods": ["local_cka", "relative"]},
                 "curves": {"base_sizes": [20, 50], "query_sizes": [50, 100], "seeds": [0, 1], "methods": ["local_cka"]}},
    "base_size": 50, "query_size": 50, "base_selection": "random", "stretch": False, "seeds": [0, 1],
}
MAIN = dict(base_size=50, query_size=50, base_selection="random", stretch=False)
SKIP_NOTE = ("skipped: text encoder t2 is English-only in the catalog, so captions in 'de' are not computed "
             "(declare it in analyses.cross_lingual.multilingual to include it)")

# (vision, text, kernel, debiased) -> (value, shuffled_value) for RUN; o'brien's values are 0.01 lower
CKA = {("v1", "t1", "linear", False): (0.81, 0.10), ("v1", "t2", "linear", False): (0.52, 0.20),
       ("v2", "t1", "linear", False): (0.30, 0.35), ("v2", "t2", "linear", False): (0.63, 0.05),
       ("v1", "t1", "linear", True): (0.61, 0.01), ("v1", "t2", "linear", True): (0.44, -0.01),
       ("v2", "t1", "linear", True): (0.20, 0.02),
       ("v1", "t1", "rbf", False): (0.71, 0.10), ("v2", "t2", "rbf", False): (0.40, 0.50),
       ("v1", "t1", "mutual_knn_k5", False): (0.305, 0.05)}
# main grid: method -> (vision, text) -> accuracy at seed 0 (seed 1 adds 0.02)
MATCHING = {"local_cka": {("v1", "t1"): 0.40, ("v1", "t2"): 0.20, ("v2", "t1"): 0.10},
            "relative": {("v1", "t1"): 0.30, ("v2", "t1"): 0.50}}
# curves of v1 x t1 with local_cka, seed 0 (seed 1 adds 0.02): (base, query, selection, stretch) -> accuracy
CURVES = {(20, 50, "random", False): 0.20, (50, 100, "random", False): 0.30, (50, 50, "random", True): 0.45,
          (50, 50, "kmeans_image", False): 0.35, (50, 50, "kmeans_image", True): 0.55}
CROSS_DOMAIN = {"local_cka": {("v1", "t1"): 0.15, ("v2", "t2"): 0.05}, "relative": {("v1", "t1"): 0.25}}
CROSS_LINGUAL = {"local_cka": {("v1", "t1"): 0.30, ("v2", "t1"): 0.20}, "relative": {("v1", "t1"): 0.35}}
# retrieval, main grid, local_cka: (vision, text, direction) -> r1 at seed 0 (seed 1 adds 0.02)
RETRIEVAL = {("v1", "t1", "image_to_text"): 0.30, ("v1", "t1", "text_to_image"): 0.20,
             ("v2", "t1", "image_to_text"): 0.10, ("v2", "t1", "text_to_image"): 0.05}
CLASSIFICATION = {"local_cka": {("v1", "t1"): 0.50, ("v2", "t2"): 0.30}, "relative": {("v1", "t1"): 0.60, ("v2", "t2"): 0.70}}
REJECTS = {("emoji", "decode"): 2, ("emoji", "caption"): 1, ("o'brien", "decode"): 3, ("zzz", "decode"): 7}


def _cka_rows() -> list[dict]:
    rows = [dict(run_id=RUN, cell_id=f"c{i}{d}", dataset=ds, domain="google", lang="en", vision_encoder=v,
                 text_encoder=t, kernel=k, debiased=deb, n=100, value=a - 0.01 * d, shuffled_value=b,
                 ci_low=None if k.startswith("mutual") else a - 0.05, ci_high=None if k.startswith("mutual") else a + 0.03,
                 seed=0, seconds=0.1)
            for i, ((v, t, k, deb), (a, b)) in enumerate(CKA.items()) for d, ds in enumerate(DATASETS)]
    rows.append(dict(run_id=OTHER, dataset="zzz", vision_encoder="v9", text_encoder="t9", kernel="linear",
                     debiased=False, value=0.99, shuffled_value=0.0))
    return rows


def _m(method, v, t, acc, seed, cell="m", domain="google", lang="en", base_domain="google", note=None, chance=None,
       **setting) -> dict:
    s = {**MAIN, **setting}
    return dict(run_id=RUN, cell_id=f"{cell}-{v}{t}-{seed}-{lang}-{domain}-{s['base_size']}{s['query_size']}"
                f"{s['base_selection']}{s['stretch']}", dataset="emoji", domain=domain, lang=lang, vision_encoder=v,
                text_encoder=t, method=method, seed=seed, accuracy=acc,
                chance=chance if chance is not None else round(1 / s["query_size"] + 0.01 * (method == "relative"), 4),
                objective=1.0, seconds=0.1, note=note, base_domain=base_domain, query_domain=domain,
                protocol="default", **s)


def _matching_rows() -> list[dict]:
    rows = [_m(m, v, t, a + 0.02 * seed, seed) for m, accs in MATCHING.items() for (v, t), a in accs.items()
            for seed in (0, 1)]
    rows.append({**rows[0], "cell_id": "curve-cell"})  # the same result held by a curve cell: counted once
    rows += [_m("local_cka", "v1", "t1", a + 0.02 * seed, seed, cell="cv", base_size=b, query_size=q,
                base_selection=sel, stretch=st) for (b, q, sel, st), a in CURVES.items() for seed in (0, 1)]
    rows += [_m(m, v, t, a + 0.02 * seed, seed, cell="cd", domain="twitter")
             for m, accs in CROSS_DOMAIN.items() for (v, t), a in accs.items() for seed in (0, 1)]
    rows += [_m(m, v, t, a + 0.02 * seed, seed, cell="cl", lang="de")
             for m, accs in CROSS_LINGUAL.items() for (v, t), a in accs.items() for seed in (0, 1)]
    skipped = [_m(m, v, "t2", None, seed, cell="cl", lang="de", note=SKIP_NOTE)
               for m in ("local_cka", "relative") for v in ("v1", "v2") for seed in (0, 1)]
    rows += [{**r, "chance": None} for r in skipped]
    rows.append(_m("local_cka", "v1", "t1", 0.99, 7, cell="odd"))  # seed 7: in no study of the spec
    rows.append(dict(run_id=OTHER, dataset="zzz", vision_encoder="v1", text_encoder="t1", method="local_cka",
                     accuracy=0.99, chance=0.5, seed=0))
    return rows


def _retrieval_rows() -> list[dict]:
    rows = []
    for (v, t, direction), r1 in RETRIEVAL.items():
        for seed in (0, 1):
            m = _m("local_cka", v, t, None, seed, cell="r")
            rows.append({k: m[k] for k in ("run_id", "cell_id", "dataset", "domain", "lang", "vision_encoder",
                                            "text_encoder", "method", "base_size", "query_size", "base_selection",
                                            "stretch", "seed", "note", "base_domain", "query_domain", "protocol")}
                        | dict(direction=direction, r1=r1 + 0.02 * seed, r5=r1 + 0.2, r10=r1 + 0.3))
    for seed in (0, 1):  # skipped, like its matching rows
        m = _m("local_cka", "v1", "t2", None, seed, cell="cl", lang="de", note=SKIP_NOTE)
        for direction in ("image_to_text", "text_to_image"):
            rows.append({k: m[k] for k in ("run_id", "cell_id", "dataset", "domain", "lang", "vision_encoder",
                                            "text_encoder", "method", "base_size", "query_size", "base_selection",
                                            "stretch", "seed", "note", "base_domain", "query_domain", "protocol")}
                        | dict(direction=direction, r1=None, r5=None, r10=None))
    return rows


def _classification_rows() -> list[dict]:
    return [dict(run_id=RUN, cell_id=f"k-{v}{t}-{seed}", dataset="emoji", domain="google", lang="en", vision_encoder=v,
                 text_encoder=t, label_field="label", template_set="default", method=m, seed=seed, n=50, n_classes=10,
                 accuracy=a + 0.02 * seed, chance=0.1, majority=0.2, protocol="default", **MAIN)
            for m, accs in CLASSIFICATION.items() for (v, t), a in accs.items() for seed in (0, 1)]


def _reject_rows() -> list[dict]:
    return [dict(dataset=ds, stage=stage, item_id=f"{ds}-{stage}-{i}", reason="bad")
            for (ds, stage), n in REJECTS.items() for i in range(n)]


def _run_rows() -> list[dict]:
    return [dict(run_id=RUN, spec=json.dumps(SPEC), status="completed", started_at=datetime(2026, 1, 2, 3, 4, 5),
                 finished_at=datetime(2026, 1, 2, 3, 9, 5), flow="sweep", cells_total=40, cells_done=40,
                 cells_computed=38),
            dict(run_id=OTHER, spec="{}", status="failed", flow="sweep")]


def _tables() -> dict[str, list[dict]]:
    return {"cka": _cka_rows(), "matching": _matching_rows(), "retrieval": _retrieval_rows(),
            "classification": _classification_rows(), "rejects": _reject_rows(), "runs": _run_rows(),
            "run_cells": [dict(run_id=RUN, table_name=t, cell_id=f"{t}-{i}") for t, n in
                          (("cka", 20), ("matching", 30), ("classification", 4)) for i in range(n)]
            + [dict(run_id=OTHER, table_name="cka", cell_id="x")]}


def _connection() -> duckdb.DuckDBPyConnection:
    """In-memory tables with the columns of the lake's views (others left NULL)."""
    con = duckdb.connect()
    given = _tables()
    for name in TABLE_SCHEMAS:  # every view of the lake; the ones a test does not fill are empty
        rows = given.get(name, [])
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


def _mine(rows):
    return [r for r in rows if r["run_id"] == RUN]


# ---------------------------------------------------------------------------------------------------------------
# The SQL files
# ---------------------------------------------------------------------------------------------------------------


def test_the_report_sql_files_are_the_ones_the_report_uses():
    used = set(re.findall(r'"(report_\w+)"', open(rundata.__file__).read()))
    assert used == set(REPORT_SQL)


@pytest.mark.parametrize("name", REPORT_SQL)
def test_each_report_sql_file_documents_what_it_returns_and_its_parameters(name):
    text = load_sql(name)
    assert text.startswith(f"-- {name}: ")
    header = "".join(line for line in text.splitlines() if line.startswith("--"))
    documented = set(re.findall(r"\$(\w+)", re.search(r"Parameters: (.*)", header).group(1)))
    body = "\n".join(line for line in text.splitlines() if not line.startswith("--"))
    assert documented == set(re.findall(r"\$(\w+)", body)) and documented
    assert documented == ({"dataset"} if name in BY_DATASET else {"run_id"})
    assert "'" not in re.sub(r"' x '", "", body)  # no string literal other than the pair separator


def test_cka_summary_matches_python(con):
    rows = _run(con, "report_cka_summary", run_id=RUN)
    measures = sorted({(k, deb) for _, _, k, deb in CKA})
    assert [(r["kernel"], r["debiased"]) for r in rows] == measures
    for r in rows:
        mine = [c for c in _mine(_cka_rows()) if (c["kernel"], c["debiased"]) == (r["kernel"], r["debiased"])]
        best = max(mine, key=lambda c: c["value"])
        assert r["n"] == len(mine) == 2 * sum((k, deb) == (r["kernel"], r["debiased"]) for _, _, k, deb in CKA)
        assert r["mean_value"] == pytest.approx(_mean(c["value"] for c in mine), rel=1e-12)
        assert r["mean_shuffled"] == pytest.approx(_mean(c["shuffled_value"] for c in mine), rel=1e-12)
        assert r["beats_shuffled"] == sum(c["value"] > c["shuffled_value"] for c in mine)
        assert r["best_pair"] == f"{best['vision_encoder']} x {best['text_encoder']}"
        assert r["best_value"] == best["value"]
    assert rows[0]["best_pair"] == "v1 x t1" and rows[0]["beats_shuffled"] == 6  # v2 x t1 loses on both sets


def test_cka_grid_and_rows_match_python(con):
    rows = _run(con, "report_cka_grid", run_id=RUN)
    assert len(rows) == len(CKA)
    cell = ("vision_encoder", "text_encoder", "kernel", "debiased")
    for r in rows:
        mine = [c for c in _mine(_cka_rows()) if [c[k] for k in cell] == [r[k] for k in cell]]
        assert len(mine) == len(DATASETS) == r["n"]
        assert r["v"] == pytest.approx(_mean(c["value"] for c in mine), rel=1e-12)
        assert r["s"] == pytest.approx(_mean(c["shuffled_value"] for c in mine), rel=1e-12)
        if r["kernel"].startswith("mutual"):
            assert r["ci_low"] is None and r["ci_high"] is None
        else:
            assert r["ci_low"] == pytest.approx(_mean(c["ci_low"] for c in mine), rel=1e-12)
    every = _run(con, "report_cka_rows", run_id=RUN)
    key = lambda r: (r["dataset"], r["vision_encoder"], r["text_encoder"], r["kernel"], r["debiased"], r["value"])  # noqa: E731
    assert sorted(map(key, every)) == sorted(map(key, _mine(_cka_rows())))


def _identity(r: dict, cols: tuple) -> tuple:
    return tuple(r[c] for c in cols)


MATCH_KEY = ("dataset", "domain", "lang", "base_domain", "query_domain", "vision_encoder", "text_encoder", "method",
             "base_size", "query_size", "base_selection", "stretch", "seed")


@pytest.mark.parametrize("name, rows, key", [
    ("report_matching_rows", _matching_rows, MATCH_KEY),
    ("report_retrieval_rows", _retrieval_rows, MATCH_KEY[:8] + ("direction",) + MATCH_KEY[8:]),
    ("report_classification_rows", _classification_rows,
     ("dataset", "domain", "lang", "vision_encoder", "text_encoder", "label_field", "template_set", "method", "seed")),
])
def test_result_rows_come_once_per_result_and_in_key_order(con, name, rows, key):
    got = _run(con, name, run_id=RUN)
    expected = {}
    for r in _mine(rows()):
        expected.setdefault(_identity(r, key), r)
    assert len(got) == len(expected) and {_identity(r, key) for r in got} == set(expected)
    for r in got:
        e = expected[_identity(r, key)]
        assert all(r[c] == e[c] for c in r if c in e), (r, e)
    if name == "report_matching_rows":  # the result that a curve cell also holds comes once
        assert len(_mine(rows())) == len(got) + 1


def test_run_record_and_run_cells(con):
    [rec] = _run(con, "report_run", run_id=RUN)
    assert json.loads(rec["spec"]) == SPEC and rec["status"] == "completed" and rec["cells_computed"] == 38
    assert _run(con, "report_run", run_id="nope") == []
    assert [(r["table_name"], r["cells"]) for r in _run(con, "report_run_cells", run_id=RUN)] == [
        ("cka", 20), ("classification", 4), ("matching", 30)]


def test_datasets_and_rejects_bind_names_with_quotes(con):
    assert [r["dataset"] for r in _run(con, "report_datasets", run_id=RUN)] == sorted(DATASETS)
    assert [r["dataset"] for r in _run(con, "report_datasets", run_id=OTHER)] == ["zzz"]
    for ds in ("emoji", "o'brien", "zzz"):
        expected = sorted((stage, n) for (d, stage), n in REJECTS.items() if d == ds)
        assert [(r["stage"], r["n"]) for r in _run(con, "report_rejects", dataset=ds)] == expected
    assert _run(con, "report_rejects", dataset="nowhere") == []


@pytest.mark.parametrize("name", [n for n in REPORT_SQL if n not in BY_DATASET])
def test_a_quote_in_the_run_id_is_data_not_sql(con, name):
    assert _run(con, name, run_id="x' OR '1'='1") == []
    assert _run(con, name, run_id="it''s") == []  # the escaped spelling is another run id, not RUN


# ---------------------------------------------------------------------------------------------------------------
# summary, correlations, plot_run and write_report over those SQL files
# ---------------------------------------------------------------------------------------------------------------


@pytest.fixture()
def bound_query(monkeypatch, con):
    """vlalign.report.rundata.query replaced by one that runs the SQL on the in-memory tables with its parameters bound;
    the calls are recorded."""
    calls = []

    def query(lake, sql, params=None):
        calls.append((sql, params))
        return con.sql(sql, params=params).to_arrow_table()

    monkeypatch.setattr(rundata, "query", query)
    return calls


LAKE = SimpleNamespace(root="/nonexistent", is_local=True)


def test_rows_are_split_into_the_studies_of_the_spec(bound_query):
    d = report.load_run(LAKE, RUN)
    assert d.spec is not None and d.spec_problem is None
    studies = defaultdict(int)
    for r in d.matching:
        studies[d.plan.study(r)] += 1
    assert dict(studies) == {"main": 10, "curves": 10, "cross-domain": 6, "cross-lingual": 14, "other": 1}
    kinds = defaultdict(set)
    for r in d.matching:
        for k in d.plan.curve_kinds(r):
            kinds[k].add((r["base_size"], r["query_size"], r["base_selection"], r["stretch"]))
    assert kinds == {"base_size": {(20, 50, "random", False), (50, 50, "random", False)},
                     "query_size": {(50, 50, "random", False), (50, 100, "random", False)},
                     "ablation": {(50, 50, s, st) for s in ("random", "kmeans_image") for st in (False, True)}}


def test_summary_text(bound_query):
    text = report.summary(LAKE, RUN)
    assert text.splitlines() == [
        "run it's",
        "  CKA            linear: 8 pairs, mean 0.560 (shuffled 0.175), true > shuffled in 6/8; best v1 x t1 = 0.810",
        "  CKA linear (debiased): 6 pairs, mean 0.412 (shuffled 0.007), true > shuffled in 6/6; best v1 x t1 = 0.610",
        "  CKA     mutual_knn_k5: 2 pairs, mean 0.300 (shuffled 0.050), true > shuffled in 2/2; best v1 x t1 = 0.305",
        "  CKA               rbf: 4 pairs, mean 0.550 (shuffled 0.300), true > shuffled in 2/4; best v1 x t1 = 0.710",
        "  matching local_cka: best v1 x t1 41.0% [40.0-42.0], v1 x t2 21.0% [20.0-22.0], v2 x t1 11.0% [10.0-12.0]  "
        "(chance 2.00%, best = 20x chance; mean [min-max] over 2 seeds)",
        "  matching  relative: best v2 x t1 51.0% [50.0-52.0], v1 x t1 31.0% [30.0-32.0]  "
        "(chance 3.00%, best = 17x chance; mean [min-max] over 2 seeds)",
        "  retrieval local_cka: R@1 image->text 21.0%, text->image 13.5% (mean over pairs; best v1 x t1 26.0%; "
        "chance 2.00%)",
        "  cross-domain google->twitter: local_cka 11.0%, relative 26.0%  "
        "(same domain google->google: local_cka 24.3%, relative 41.0%; chance 2.00%)",
        "  cross-lingual t1: best method relative: de 36.0%; en (main) 41.0%; chance 3.00%",
        "  cross-lingual skipped: 8 rows, text encoder t2 (English-only in the catalog), in 1 language (de)",
        "  classification label (10 classes): best method relative 66.0% (mean over pairs and seeds; best pair "
        "v2 x t2 71.0%) vs chance 10.0%, majority 20.0%",
        "  curves (v1 x t1): base 20->50: local_cka 21.0%->41.0% (chance 2.00%); query 50->100: local_cka "
        "41.0%->31.0% (chance 2.00%->1.00%); ablation best local_cka kmeans_image+stretch 56.0%, worst local_cka "
        "kmeans_image 36.0% (chance 2.00%)",
        "  rejects in emoji: 3 (caption 1, decode 2; vlalign query \"select * from rejects\")",
        "  rejects in o'brien: 3 (decode 3; vlalign query \"select * from rejects\")",
    ]
    assert report.summary(LAKE, RUN, top=1).splitlines()[5].startswith("  matching local_cka: best v1 x t1 41.0% "
                                                                       "[40.0-42.0]  (chance")
    # every query came from a report SQL file, the names only as bound parameters
    assert bound_query and all(params for _, params in bound_query)
    assert all(sql in {load_sql(n) for n in REPORT_SQL} for sql, _ in bound_query)
    assert {"run_id": RUN} in [p for _, p in bound_query] and {"dataset": "o'brien"} in [p for _, p in bound_query]


def test_main_grid_means_match_an_independent_computation(bound_query):
    """Per (method, pair): the mean over seeds of the main-grid rows (the duplicate counted once, the seed-7 row
    and every study row left out), min and max over seeds."""
    d = report.load_run(LAKE, RUN)
    got = over_seeds(d.main, lambda r: (r["method"], pair_name(r)))
    assert set(got) == {(m, f"{v} x {t}") for m, accs in MATCHING.items() for v, t in accs}
    for m, accs in MATCHING.items():
        for (v, t), a in accs.items():
            st = got[(m, f"{v} x {t}")]
            assert st["mean"] == pytest.approx(a + 0.01) and st["min"] == pytest.approx(a)
            assert st["max"] == pytest.approx(a + 0.02) and st["seeds"] == 2 and st["std"] == pytest.approx(0.01)


def test_correlations_equal_scipy(bound_query):
    from scipy import stats

    got = {(c["measure"], c["method"]): c for c in report.correlations(LAKE, RUN)}
    assert set(got) == {(measure_name(k, deb), m) for _, _, k, deb in CKA for m in MATCHING}
    assert all(set(c) == set(CORRELATION_KEYS) for c in got.values())
    cka = defaultdict(list)
    for r in _mine(_cka_rows()):
        cka[(measure_name(r["kernel"], r["debiased"]), f"{r['vision_encoder']} x {r['text_encoder']}")].append(r["value"])
    pairs = sorted(f"{v} x {t}" for v, t in MATCHING["local_cka"])
    x = [_mean(cka[("linear", p)]) for p in pairs]
    y = [MATCHING["local_cka"][tuple(p.split(" x "))] + 0.01 for p in pairs]
    c = got[("linear", "local_cka")]
    assert c["n_pairs"] == 3
    assert c["pearson_r"] == pytest.approx(stats.pearsonr(x, y).statistic, rel=1e-9)
    assert c["pearson_p"] == pytest.approx(stats.pearsonr(x, y).pvalue, rel=1e-9)
    assert c["spearman_rho"] == pytest.approx(stats.spearmanr(x, y).statistic, rel=1e-9)
    assert c["spearman_p"] == pytest.approx(stats.spearmanr(x, y).pvalue, rel=1e-9)
    assert got[("linear (debiased)", "local_cka")]["n_pairs"] == 3
    for key in (("linear", "relative"), ("rbf", "local_cka"), ("mutual_knn_k5", "relative")):  # < 3 pairs
        assert got[key]["n_pairs"] < 3 and got[key]["pearson_r"] is got[key]["spearman_p"] is None


def test_summary_of_an_unknown_run_is_just_its_title(bound_query):
    assert report.summary(LAKE, "x' OR '1'='1") == "run x' OR '1'='1"


PNGS = ["cka_measures.png", "matching.png",
        "curves.png", "ablation.png", "scatter.png", "cross_lingual.png", "cross_domain.png", "classification.png"]


def test_plot_run_writes_pngs(bound_query, tmp_path):
    written = report.plot_run(SimpleNamespace(root=str(tmp_path)), RUN, tmp_path / "plots")
    assert [p.rsplit("/", 1)[1] for p in written] == PNGS
    for p in written:
        with open(p, "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    # default folder: <lake root>/reports/run=<run id>
    default = report.plot_run(SimpleNamespace(root=str(tmp_path)), RUN)
    assert all(p.startswith(str(tmp_path / "reports" / "run=it's")) for p in default) and len(default) == len(PNGS)
    assert report.plot_run(SimpleNamespace(root=str(tmp_path)), OTHER + "-none", tmp_path / "empty") == []


class _Page(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.sections, self.imgs, self._sec, self._body = {}, [], None, False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "section":
            self._sec = self.sections.setdefault(a["id"], {"tables": [], "text": ""})
        elif tag == "table" and self._sec is not None:
            self._sec["tables"].append([int(a["data-rows"]), 0])
        elif tag == "tbody":
            self._body = True
        elif tag == "tr" and self._body:
            self._sec["tables"][-1][1] += 1
        elif tag == "img":
            self.imgs.append(a["src"])

    def handle_endtag(self, tag):
        if tag == "section":
            self._sec = None
        elif tag == "tbody":
            self._body = False

    def handle_data(self, data):
        if self._sec is not None:
            self._sec["text"] += data


def test_write_report_shows_every_study(bound_query, tmp_path):
    path = report.write_report(SimpleNamespace(root=str(tmp_path), is_local=True), RUN, tmp_path / "out")
    assert path == (tmp_path / "out" / "report.html").resolve()
    assert sorted(p.name for p in (tmp_path / "out").glob("*.png")) == sorted(PNGS)
    page = _Page()
    page.feed(path.read_text(encoding="utf-8"))
    assert list(page.sections) == ["sec-summary", "sec-alignment", "sec-matching", "sec-curves",
                                   "sec-cross-pair-analysis", "sec-cross-lingual", "sec-cross-domain",
                                   "sec-classification", "sec-concepts", "sec-runs-and-data"]
    for sid, sec in page.sections.items():
        if sid == "sec-concepts":  # this synthetic run has no concept study (test_concept_rows_and_lines has one)
            assert "not in this run's spec" in sec["text"]
            continue
        assert sec["tables"] and all(n == rows > 0 for n, rows in sec["tables"]), sid
        assert "not in this run's spec" not in sec["text"], sid
    assert len(page.imgs) == len(PNGS) and all(src.startswith("data:image/png;base64,") for src in page.imgs)
    assert ("Skipped: 8 rows, text encoder t2 (English-only in the catalog), in 1 language (de)"
            in page.sections["sec-cross-lingual"]["text"])  # one line for the skipped rows
    assert SKIP_NOTE in page.sections["sec-cross-lingual"]["text"]
    assert "in no study of the spec" in page.sections["sec-matching"]["text"]  # the seed-7 row is shown too
    text = path.read_text(encoding="utf-8")
    assert "<script" not in text.lower() and "it&#x27;s" in text


def test_a_run_without_studies_says_so(bound_query, tmp_path, monkeypatch):
    plain = {k: v for k, v in SPEC.items()}
    plain["analyses"] = {"cka": {"kernels": ["linear"]}, "matching": ["local_cka"]}
    monkeypatch.setattr(report, "load_run", lambda lake, run_id, real=report.load_run: _with_spec(real(lake, run_id), plain))
    path = report.write_report(SimpleNamespace(root=str(tmp_path), is_local=True), RUN, tmp_path / "out")
    page = _Page()
    page.feed(path.read_text(encoding="utf-8"))
    for sid in ("sec-curves", "sec-cross-lingual", "sec-classification"):
        assert "not in this run's spec" in page.sections[sid]["text"], sid
    lines = report.summary(LAKE, RUN).splitlines()
    assert "  cross-lingual: not in this run's spec" in lines and "  curves: not in this run's spec" in lines


def _with_spec(d, doc):
    from vlalign.engine.spec import parse_spec

    d.spec = parse_spec(doc)
    d.plan = Plan(d.spec)
    d.classification = []
    return d


def test_concept_rows_and_lines():
    """report_concepts_rows keeps one row per result (two cells may hold it) and the summary line says P@k."""
    con = duckdb.connect()
    rows = [dict(run_id="r", cell_id=cid, dataset="emoji", vision_encoder="v", text_encoder="t", retrieval=ret,
                 mapping=m, n_concepts=100, n_aliases=300, folds=5, seed=0, p_at_1=p1, p_at_10=p10, p_at_100=p100)
            for cid in ("c1", "c2")
            for m, ret, p1, p10, p100 in (("procrustes", "csls", 0.1, 0.3, 0.6), ("procrustes", "nn", 0.05, 0.2, 0.5),
                                          ("random_orthogonal", "nn", 0.0, 0.01, 0.1))]
    con.register("_rows", pa.Table.from_pylist(rows, schema=TABLE_SCHEMAS["concepts"]))
    con.execute("CREATE TABLE concepts AS SELECT * FROM _rows")
    got = _run(con, "report_concepts_rows", run_id="r")
    assert [(r["mapping"], r["retrieval"]) for r in got] == [("procrustes", "csls"), ("procrustes", "nn"),
                                                             ("random_orthogonal", "nn")]

    class D:
        concepts = got

    assert concepts.lines(D(), top=3) == ["  concepts v x t (100 concepts): procrustes csls P@1/10/100 10.0%/30.0%/60.0%, "
                                   "nn P@1/10/100 5.0%/20.0%/50.0%; baselines P@10 at most 1.0%"]


def test_every_study_of_the_registry_has_lines_figures_and_a_section():
    from vlalign.report.studies import STUDIES

    assert len({s.__name__ for s in STUDIES}) == len(STUDIES)
    for study in STUDIES:
        assert isinstance(study.SUMMARY_RANK, int), study.__name__
        assert all(callable(getattr(study, f, None)) for f in ("lines", "figures", "section")), study.__name__


def test_a_second_report_reuses_the_figures_and_writes_the_same_page(bound_query, tmp_path, monkeypatch):
    lake = SimpleNamespace(root=str(tmp_path), is_local=True)
    first = report.build_report(lake, RUN, tmp_path / "out")
    page = first.path.read_text(encoding="utf-8")

    def draw(d, out):
        raise AssertionError("redrawn although nothing changed")

    monkeypatch.setattr(report, "plots_of", draw)
    second = report.build_report(lake, RUN, tmp_path / "out")
    assert second.plots == first.plots and second.summary == first.summary
    assert second.path.read_text(encoding="utf-8") == page


def test_the_figures_cache_key_covers_every_report_module(tmp_path, monkeypatch):
    import shutil

    from vlalign.report import cache

    code = tmp_path / "report"
    shutil.copytree(cache.REPORT_CODE, code, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(cache, "REPORT_CODE", code)
    before = cache.code_digest()
    for path in sorted(code.rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        path.write_text(text + "\n# changed\n", encoding="utf-8")
        assert cache.code_digest() != before, path.relative_to(code)
        path.write_text(text, encoding="utf-8")
    assert cache.code_digest() == before


def test_grid_settings_are_kept_apart(bound_query, tmp_path, monkeypatch):
    """Two base selections in the grid: the summary, the correlations and the page never average over them
    (local_cka v1 x t1: random 41.0%, kmeans_image 36.0%; the two together would be 38.5%)."""
    spec = {**SPEC, "base_selection": ["random", "kmeans_image"]}
    monkeypatch.setattr(report, "load_run", lambda lake, run_id, real=report.load_run: _with_spec(real(lake, run_id),
                                                                                                  spec))
    lines = report.summary(LAKE, RUN).splitlines()
    assert ("  matching local_cka (kmeans_image): best v1 x t1 36.0% [35.0-37.0]  (chance 2.00%, best = 18x chance; "
            "mean [min-max] over 2 seeds)") in lines
    assert any(line.startswith("  matching       local_cka (random): best v1 x t1 41.0% [40.0-42.0], ") for line in lines)
    assert any(line.startswith("  retrieval local_cka (random): R@1 ") for line in lines)  # named, though alone
    assert not any("38.5%" in line for line in lines)
    settings = {c["setting"] for c in report.correlations(LAKE, RUN)}
    assert settings == {"base 50, query 50, random, no stretch, protocol default",
                        "base 50, query 50, kmeans_image, no stretch, protocol default"}
    text = report.write_report(SimpleNamespace(root=str(tmp_path), is_local=True), RUN, tmp_path / "out").read_text()
    matching = text[text.index('id="sec-matching"'):text.index('id="sec-curves"')]
    assert '<th scope="col">selection</th>' in matching and "38.5" not in matching


def _pct_column(table) -> int:
    """The index of a table's first column in % (or, for CKA rows, its score)."""
    return next(j for j, c in enumerate(table.columns) if c.endswith("(%)") or c == "score (0-1)")


def test_every_query_shown_under_a_table_gives_that_table(bound_query, con):
    """The `vlalign query` line under each long table, run over the views, gives the table's rows and numbers."""
    from vlalign.report.html import Table
    from vlalign.report.studies import STUDIES
    from vlalign.report.study import Page

    d = report.load_run(LAKE, RUN)
    sections = [s.section(d, Page(plots=[], summary=report.summary_of(d))) for s in STUDIES]
    tables = [t for s in sections if s for t in s.items if isinstance(t, Table) and t.sql]
    assert len(tables) == 7, [t.title for t in tables]  # CKA, matching, retrieval, curves, x-lingual, x-domain, cls
    for t in tables:
        res = con.sql(t.sql)
        got = res.fetchall()
        assert len(got) == t.n_rows, (t.title, t.sql)
        j, k = _pct_column(t), next(i for i, c in enumerate(res.columns) if c.endswith("_pct") or c == "cka")
        scale = 1 if res.columns[k] == "cka" else 100
        want = sorted(scale * r[j] for r in t.rows)
        assert sorted(r[k] for r in got) == pytest.approx(want, abs=0.051 if scale == 100 else 5e-4), t.title


def test_the_page_reads_at_a_glance_in_chromium(bound_query, tmp_path, chromium):  # noqa: F811
    """At 1400 px: under 12,000 px tall, no text under 10 px (the figures' at the width they are shown), no table
    cell broken inside a word."""
    path = report.write_report(SimpleNamespace(root=str(tmp_path), is_local=True), RUN, tmp_path / "out")
    assert readability_problems(path, chromium) == []
