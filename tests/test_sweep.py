"""The sweep, for real: results tables, resume after a failed cell and after kill -9, an external Dask
cluster, and the read-only SQL door. A small COCO-format data set (real emoji images, two captions per
image) keeps it fast; the embeddings of one uninterrupted reference run are copied into the other lakes so
every comparison sees identical inputs.

Dask worker processes run where Dask is what is tested (the CLI killed with its cluster, two CLI sweeps at
once, a separately started cluster, a resume and a rerun); the other sweeps, the reference included, run on
threads of this process, which loads each encoder once per test session instead of once per worker."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import yaml
from conftest import VENV_BIN, make_coco

from vlalign.datalake.catalog import query
from vlalign.datalake.store import TMP_MARK, Lake

pytestmark = pytest.mark.slow
SEEDS = [0, 1, 2, 3, 4]


def spec_doc(ann: Path, img: Path) -> dict:
    return {
        "name": "tiny-sweep",
        "datasets": [{"name": "tiny", "format": "coco", "annotations": str(ann), "images": str(img)}],
        "vision_encoders": ["mobilenetv2"],
        "text_encoders": ["minilm-l6", "wordllama"],
        "analyses": {"cka": {"kernels": ["linear", "rbf"]}, "matching": ["qap", "local_cka"],
                     "retrieval": ["local_cka"], "baselines": ["linear_regression", "procrustes"],
                     "qap": {"restarts": 8}},
        "base_size": 20, "query_size": 30, "base_selection": "kmeans_image", "stretch": True, "seeds": SEEDS,
        "extraction": {"shard_size": 16},
    }


def run_sweep(doc, lake_root, address=None, run_id=None, in_process=False):
    """The sweep flow on a Dask cluster; ``in_process``: on threads of this process (no cluster to start, the
    encoders loaded once per session, and a test can patch the library)."""
    from prefect.task_runners import ThreadPoolTaskRunner

    from vlalign.flows.runtime import dask_task_runner
    from vlalign.flows.sweep import sweep_flow

    runner = ThreadPoolTaskRunner(max_workers=2) if in_process else dask_task_runner(address, 2)
    return sweep_flow.with_options(task_runner=runner)(spec=doc, lake_root=str(lake_root), run_id=run_id)


def results(lake_root: Path, table: str) -> list[dict]:
    """Every row of a result table, without timings, in a canonical order."""
    rows = []
    for p in sorted((lake_root / "results" / table).rglob("*.parquet")):
        rows += pq.read_table(p).to_pylist()
    for r in rows:
        r.pop("seconds", None)
    return sorted(rows, key=lambda r: tuple(str(r[k]) for k in sorted(r)))


def seed_lake(reference: Path, target: Path) -> None:
    """A new lake holding the reference run's items and embeddings (extraction then has nothing to do)."""
    for sub in ("items", "embeddings"):
        shutil.copytree(reference / sub, target / sub)


@pytest.fixture(scope="module")
def reference(prefect_server, tmp_path_factory):
    root = tmp_path_factory.mktemp("sweep")
    ann, img = make_coco(root / "coco", n_images=70, captions_per_image=2)
    doc = spec_doc(ann, img)
    lake_root = root / "reference-lake"
    out = run_sweep(doc, lake_root, in_process=True)
    return doc, lake_root, out


def test_uninterrupted_sweep_fills_every_table(reference):
    doc, lake_root, out = reference
    lake = Lake.open(lake_root)
    n_cka = query(lake, "select count(*) as n from cka")["n"][0].as_py()
    assert n_cka == 1 * 2 * 2  # vision x text x kernels
    matching = query(lake, "select method, count(*) as n from matching group by method order by method").to_pylist()
    assert {r["method"]: r["n"] for r in matching} == {m: 2 * len(SEEDS) for m in ("linear_regression", "local_cka", "procrustes", "qap")}
    retrieval = query(lake, "select count(*) as n from retrieval")["n"][0].as_py()
    assert retrieval == 2 * len(SEEDS) * 3 * 2  # pairs x seeds x (local_cka + 2 baselines) x directions
    run = query(lake, "select run_id, status, cells_total, cells_done from runs").to_pylist()
    assert run == [{"run_id": out["run_id"], "status": "completed", "cells_total": out["cells"], "cells_done": out["cells"]}]
    # true pairing beats a shuffled one; matching beats chance on average
    cka = query(lake, "select value, shuffled_value from cka").to_pylist()
    assert all(r["value"] > r["shuffled_value"] for r in cka)
    acc = query(lake, "select avg(accuracy) as a, avg(chance) as c from matching where text_encoder = 'minilm-l6'").to_pylist()[0]
    assert acc["a"] > 3 * acc["c"]


def test_stored_cka_matches_a_recomputation_from_stored_embeddings(reference):
    """Pairs rebuilt from the annotations JSON (mean caption embedding per image), embeddings read straight
    from the lake's Parquet, CKA by the dense-H definition: equal to the stored values within 1e-6."""
    import json

    from reference import cka_dense_h

    doc, lake_root, out = reference
    ann = json.loads(Path(doc["datasets"][0]["annotations"]).read_text())

    def load(encoder):
        rows = {}
        for p in (lake_root / "embeddings" / "dataset=tiny" / f"encoder={encoder}").rglob("*.parquet"):
            t = pq.read_table(p)
            rows.update(zip(t["unit_id"].to_pylist(), t["embedding"].to_pylist()))
        return rows

    vis = load("mobilenetv2__avg")
    image_ids = sorted(vis)
    for text, lake_text in (("minilm-l6", "minilm-l6__mean"), ("wordllama", "wordllama__mean")):
        txt = load(lake_text)
        caps: dict[str, list] = {}
        for a in ann["annotations"]:
            caps.setdefault(str(a["image_id"]), []).append(txt[str(a["id"])])
        x = np.array([vis[i] for i in image_ids], dtype=np.float64)
        y = np.array([np.mean(np.array(caps[i], dtype=np.float64), axis=0) for i in image_ids])
        for kernel in ("linear", "rbf"):
            stored = query(Lake.open(lake_root), f"select value, n from cka where text_encoder = '{text}' and kernel = '{kernel}'").to_pylist()[0]
            assert stored["n"] == len(image_ids)
            assert abs(stored["value"] - cka_dense_h(x, y, kernel)) < 1e-6, (text, kernel)


def test_rerun_of_a_finished_sweep_computes_nothing(reference, prefect_server):
    doc, lake_root, out = reference
    before = {p: p.stat().st_mtime_ns for p in (lake_root / "results").rglob("*.parquet")}
    again = run_sweep(doc, lake_root)
    assert again["computed"] == 0 and again["run_id"] == out["run_id"]
    assert {p: p.stat().st_mtime_ns for p in (lake_root / "results").rglob("*.parquet")} == before


def test_failed_cell_then_resume_equals_the_uninterrupted_run(reference, prefect_server, tmp_path, monkeypatch):
    doc, ref_root, out = reference
    lake_root = tmp_path / "lake"
    seed_lake(ref_root, lake_root)
    import vlalign.engine.scoring  # compute_cell, which calls run_match_cell

    real = vlalign.engine.scoring.run_match_cell

    def failing(cell):  # every matching cell of one text encoder fails
        if cell.text.name == "wordllama":
            raise RuntimeError(f"injected failure in {cell.label}")
        return real(cell)

    monkeypatch.setattr(vlalign.engine.scoring, "run_match_cell", failing)
    with pytest.raises(Exception, match="cells failed"):
        run_sweep(doc, lake_root, in_process=True)
    lake = Lake.open(lake_root)
    run = query(lake, "select status, cells_done, cells_total, error from runs").to_pylist()[0]
    assert run["status"] == "failed" and 0 < run["cells_done"] < run["cells_total"]
    assert "injected failure" in run["error"]
    done_before = {p: p.stat().st_mtime_ns for p in (lake_root / "results").rglob("*.parquet")}

    monkeypatch.setattr(vlalign.engine.scoring, "run_match_cell", real)
    resumed = run_sweep(doc, lake_root)
    assert resumed["computed"] == len(SEEDS)  # exactly the failed cells
    for p, mtime in done_before.items():
        assert p.stat().st_mtime_ns == mtime  # finished cells were not redone
    for table in ("cka", "matching", "retrieval"):
        assert results(lake_root, table) == results(ref_root, table), table
    assert query(lake, "select status from runs")["status"][0].as_py() == "completed"


def test_kill_9_mid_sweep_then_resume_equals_the_uninterrupted_run(reference, prefect_server, tmp_path):
    doc, ref_root, out = reference
    lake_root = tmp_path / "lake"
    seed_lake(ref_root, lake_root)
    spec_path = tmp_path / "spec.yaml"
    spec_path.write_text(yaml.safe_dump(doc))
    env = {**os.environ, "PREFECT_API_URL": prefect_server}
    cli = [str(VENV_BIN / "vlalign"), "sweep", str(spec_path), "--lake", str(lake_root), "--workers", "2"]
    proc = subprocess.Popen(cli, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    matching_dir = lake_root / "results" / "matching"
    t0 = time.time()
    while time.time() - t0 < 300 and len(list(matching_dir.rglob("*.parquet"))) < 2:
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    n_at_kill = len(list(matching_dir.rglob("*.parquet")))
    assert 2 <= n_at_kill < 2 * len(SEEDS), "the kill should land mid-sweep"

    resume = subprocess.run([str(VENV_BIN / "vlalign"), "resume", out["run_id"], "--lake", str(lake_root)],
                            env=env, capture_output=True, text=True, timeout=600)
    assert resume.returncode == 0, resume.stdout + resume.stderr
    assert "resuming run" in resume.stdout
    for table in ("cka", "matching", "retrieval"):
        assert results(lake_root, table) == results(ref_root, table), table
    assert not [p for p in lake_root.rglob("*") if TMP_MARK in p.name]


def test_sweep_on_a_separately_started_dask_cluster(reference, dask_cluster, tmp_path):
    doc, ref_root, out = reference
    address, client = dask_cluster
    lake_root = tmp_path / "lake"
    seed_lake(ref_root, lake_root)
    shutil.rmtree(lake_root / "embeddings" / "dataset=tiny" / "encoder=wordllama__mean")  # the cluster re-extracts it
    res = run_sweep(doc, lake_root, address=address)
    assert res["computed"] == res["cells"]
    for table in ("cka", "matching", "retrieval"):
        assert results(lake_root, table) == results(ref_root, table), table
    logs = (tmp_path / "dask-logs" / "workers.log").read_text()
    # the separately started workers ran the extraction and the analysis tasks
    assert "Task run 'embed-wordllama__mean" in logs and "Task run 'matching-mobilenetv2-minilm-l6" in logs


def test_query_cli_reads_and_refuses_writes(reference):
    doc, lake_root, out = reference
    vl = str(VENV_BIN / "vlalign")
    ok = subprocess.run([vl, "query", "select count(*) as n from cka", "--lake", str(lake_root), "--format", "json"],
                        capture_output=True, text=True)
    assert ok.returncode == 0 and '"n": 4' in ok.stdout
    csv = subprocess.run([vl, "query", "select kernel from cka order by 1 limit 1", "--lake", str(lake_root), "--format", "csv"],
                         capture_output=True, text=True)
    assert csv.stdout.splitlines() == ["kernel", "linear"]
    bad = subprocess.run([vl, "query", "drop view cka", "--lake", str(lake_root)], capture_output=True, text=True)
    assert bad.returncode == 2 and "refused" in bad.stderr and "DROP" in bad.stderr
    again = subprocess.run([vl, "query", "select count(*) as n from cka", "--lake", str(lake_root), "--format", "csv"],
                           capture_output=True, text=True)
    assert again.stdout.splitlines() == ["n", "4"]


def test_report_prints_a_summary_and_writes_plots(reference, tmp_path):
    doc, lake_root, out = reference
    res = subprocess.run([str(VENV_BIN / "vlalign"), "report", out["run_id"], "--lake", str(lake_root)],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert "true > shuffled in 2/2" in res.stdout and "chance 3.33%" in res.stdout and "rejects in tiny: 0" in res.stdout
    plots = sorted(p.name for p in (lake_root / "reports" / f"run={out['run_id']}").glob("*.png"))
    assert plots == ["cka_measures.png", "matching.png", "scatter.png"]
    assert res.stdout.strip().splitlines()[-1].endswith("report.html")
    assert all((lake_root / "reports" / f"run={out['run_id']}" / p).stat().st_size > 10_000 for p in plots)


# ------------------------------------------------------------------ cells shared by content across runs
def copy_lake(reference: Path, target: Path) -> None:
    shutil.copytree(reference, target, ignore=shutil.ignore_patterns("_locks"))


def test_a_nightly_rerun_under_a_new_run_id_computes_nothing_and_lists_every_cell(reference, prefect_server, tmp_path):
    doc, ref_root, out = reference
    lake_root = tmp_path / "lake"
    copy_lake(ref_root, lake_root)
    again = run_sweep(doc, lake_root, run_id="tiny-nightly-2", in_process=True)
    assert again["computed"] == 0 and again["cells"] == out["cells"]
    lake = Lake.open(lake_root)
    per_run = query(lake, "select run_id, count(*) as n from cka group by run_id order by run_id").to_pylist()
    assert per_run == sorted([{"run_id": out["run_id"], "n": 4}, {"run_id": "tiny-nightly-2", "n": 4}], key=lambda r: r["run_id"])


def test_one_more_text_encoder_computes_only_its_cells(reference, prefect_server, tmp_path):
    doc, ref_root, out = reference
    lake_root = tmp_path / "lake"
    copy_lake(ref_root, lake_root)
    bigger = {**doc, "text_encoders": doc["text_encoders"] + ["e5-small"]}
    before = {p: p.stat().st_mtime_ns for p in (lake_root / "results").rglob("*.parquet")}
    res = run_sweep(bigger, lake_root, in_process=True)
    new_cells = 1 * 2 + 1 * len(SEEDS)  # the new column: CKA for 2 kernels, matching for every seed
    assert res["cells"] == out["cells"] + new_cells and res["computed"] == new_cells
    assert {p: p.stat().st_mtime_ns for p in before} == before  # nothing old was rewritten
    lake = Lake.open(lake_root)
    rows = query(lake, "select text_encoder, count(*) as n from cka where run_id = $r group by 1 order by 1",
                 {"r": res["run_id"]}).to_pylist()
    assert rows == [{"text_encoder": t, "n": 2} for t in ("e5-small", "minilm-l6", "wordllama")]


def test_an_engine_change_recomputes_exactly_the_cells_it_covers(reference, prefect_server, tmp_path, monkeypatch):
    import vlalign.engine.cells

    doc, ref_root, out = reference
    lake_root = tmp_path / "lake"
    copy_lake(ref_root, lake_root)
    real = vlalign.engine.cells.engine_version
    monkeypatch.setattr(vlalign.engine.cells, "engine_version", lambda kind: real(kind) + ("-fixed" if kind == "matching" else ""))
    cka_before = {p: p.stat().st_mtime_ns for p in (lake_root / "results" / "cka").glob("*.parquet")}
    res = run_sweep(doc, lake_root, in_process=True)
    assert res["computed"] == 2 * len(SEEDS)  # every matching cell, no CKA cell
    assert {p: p.stat().st_mtime_ns for p in cka_before} == cka_before
    # same numbers (only the version moved), now stored under new cell ids
    for table in ("matching", "retrieval"):
        new = [{k: v for k, v in r.items() if k != "cell_id"} for r in results(lake_root, table)]
        old = [{k: v for k, v in r.items() if k != "cell_id"} for r in results(ref_root, table)]
        assert sorted(map(str, new)) == sorted(map(str, old + old)), table


def _computed(stdout: str) -> int:
    import re

    found = re.search(r"analysis cells \((\d+) computed now\)", stdout)
    assert found, stdout
    return int(found.group(1))


def test_two_sweeps_started_at_once_share_the_work_and_both_finish(reference, prefect_server, tmp_path):
    """Overlapping encoders, one lake, started together: each computes only what the other has not."""
    doc, ref_root, out = reference
    lake_root = tmp_path / "lake"
    seed_lake(ref_root, lake_root)
    shutil.rmtree(lake_root / "embeddings" / "dataset=tiny" / "encoder=wordllama__mean")  # both must extract it
    doc_b = {**doc, "name": "tiny-b", "text_encoders": ["wordllama"]}  # every cell of B is a cell of A too
    specs = []
    for d in (doc, doc_b):
        p = tmp_path / f"{d['name']}.yaml"
        p.write_text(yaml.safe_dump(d))
        specs.append(p)
    env = {**os.environ, "PREFECT_API_URL": prefect_server}
    procs = [subprocess.Popen([str(VENV_BIN / "vlalign"), "sweep", str(p), "--lake", str(lake_root), "--workers", "1"],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for p in specs]
    outs = [p.communicate(timeout=900)[0] for p in procs]
    for p, o in zip(procs, outs):
        assert p.returncode == 0, o[-3000:]
    assert _computed(outs[0]) + _computed(outs[1]) == out["cells"]
    for table in ("cka", "matching", "retrieval"):
        assert results(lake_root, table) == results(ref_root, table), table
    lake = Lake.open(lake_root)
    runs = query(lake, "select run_id, status from runs order by run_id").to_pylist()
    assert [r["status"] for r in runs] == ["completed", "completed"]
    assert not [p for p in lake_root.rglob("*") if TMP_MARK in p.name]


def test_cross_dataset_matching_takes_the_base_from_one_data_set_and_the_queries_from_another(prefect_server, tmp_path):
    """COCO base -> NoCaps queries, in small: two COCO-format data sets (Noto images of 60 emoji, Twemoji
    images of 60 other emoji); the base pairs come from the first, the queries from the second."""
    a_ann, a_img = make_coco(tmp_path / "a", n_images=60, captions_per_image=1)
    b_ann, b_img = make_coco(tmp_path / "b", n_images=60, captions_per_image=1, domain="twitter", first=60)
    doc = {
        "name": "cross-dataset",
        "datasets": [{"name": "cocolike", "format": "coco", "annotations": str(a_ann), "images": str(a_img)},
                     {"name": "nocapslike", "format": "coco", "annotations": str(b_ann), "images": str(b_img)}],
        "vision_encoders": ["mobilenetv2"], "text_encoders": ["wordllama"],
        "analyses": {"cka": False, "matching": ["qap", "local_cka"], "retrieval": [], "baselines": ["procrustes"],
                     "qap": {"restarts": 2},
                     "cross_domain": {"pairs": [{"base": "cocolike", "query": "nocapslike",
                                                 "base_dataset": "cocolike", "query_dataset": "nocapslike"}]}},
        "base_size": 20, "query_size": 30, "seeds": [0], "extraction": {"shard_size": 32},
    }
    lake_root = tmp_path / "lake"
    out = run_sweep(doc, lake_root, in_process=True)
    assert out["cells"] == 3  # the grid on each data set, and the cross-dataset cell
    rows = query(Lake.open(lake_root), "select dataset, base_domain, query_domain, domain, method, accuracy, note "
                 "from matching where base_domain <> query_domain order by method").to_pylist()
    assert [r["method"] for r in rows] == ["local_cka", "procrustes", "qap"]
    for r in rows:
        assert (r["dataset"], r["base_domain"], r["query_domain"], r["domain"]) == (
            "nocapslike", "cocolike", "nocapslike", "nocapslike")
        assert r["note"] is None and 0.0 <= r["accuracy"] <= 1.0


def test_explain_takes_its_base_from_the_runs_cell_and_explains_its_best_matched_pairs(reference, tmp_path, capsys):
    """`vlalign explain --run`: the base set is the run's matching cell's base (the linear-regression baseline
    refitted on it reproduces the stored accuracy of that cell), and `--top N` explains N matched queries."""
    from vlalign.cli.main import main
    from vlalign.engine.explain_inputs import base_set, best_matched, load_run
    from vlalign.methods.baselines import baseline_scores
    from vlalign.methods.matching import assignment_match, matching_accuracy

    doc, lake_root, out = reference
    lake = Lake.open(lake_root)
    record, spec = load_run(lake, out["run_id"])
    items = pq.read_table(lake_root / "items" / "dataset=tiny" / "items.parquet")
    domain, lang = items["domain"][0].as_py(), items["lang"][0].as_py()
    bs = base_set(lake, spec, "tiny", domain, lang, "mobilenetv2", "minilm-l6", 1, run=(out["run_id"], record))
    assert bs.cell.cell_id in record["cells"]["matching"]
    assert len(bs.base_ids) == 20 and len(bs.split.query) == 30 and not set(bs.split.base) & set(bs.split.query)
    s = baseline_scores("linear", bs.split.x_base, bs.split.y_base, bs.split.x_query, bs.split.y_query)
    stored = query(lake, f"select accuracy from matching where cell_id = '{bs.cell.cell_id}' "
                         "and method = 'linear_regression'")["accuracy"][0].as_py()
    assert matching_accuracy(assignment_match(s)) == pytest.approx(stored)

    top = best_matched(bs, 2)
    assert all(ok and m > 0 for _, m, ok in top) and {i for i, *_ in top} <= {bs.data.ids[i] for i in bs.split.query}
    capsys.readouterr()
    ex_out = tmp_path / "ex"
    code = main(["explain", "--run", out["run_id"], "--top", "2", "--seed", "1", "--steps", "4", "--show", "1",
                 "--out", str(ex_out), "--lake", str(lake_root), "--threads", "2"])
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert f"base set: run {out['run_id']}: cell {bs.cell.cell_id[:12]}" in printed
    assert printed.count("matched among the cell's queries") == 2 and "residual" in printed
    t = pq.read_table(ex_out / "explanations.parquet")
    explained = set(t["item_id"].to_pylist())
    image_of = dict(zip(items["item_id"].to_pylist(), items["image_id"].to_pylist()))
    assert len(explained) == 2 and {image_of[i] for i in explained} == {i for i, *_ in top}
    assert len(list(ex_out.glob("*.png"))) == 2
    # a run that does not exist, an encoder the run did not use: clear errors, exit code 2
    assert main(["explain", "--run", "nope", "--top", "1", "--out", str(ex_out), "--lake", str(lake_root)]) == 2
    assert main(["explain", "--run", out["run_id"], "--top", "1", "--vision", "efficientnet-lite0",
                 "--out", str(ex_out), "--lake", str(lake_root)]) == 2
    err = capsys.readouterr().err
    assert "no run 'nope' in the lake" in err and "not an encoder of run" in err
