"""The report page of a real sweep: write_report over a lake that a small real sweep filled, rendered by headless
Chromium and read back from its DOM; the correlations against scipy on values read straight from the Parquet files.

The sweep: two COCO-format data sets made of real emoji images, one per visual domain (google, twitter: the
domain of a COCO set is its name), one vision x three text encoders (three pairs, so correlations have numbers),
CKA with the debiased estimator, mutual kNN and a bootstrap, matching, retrieval and a baseline over two seeds,
cross-domain matching (twitter base, google queries), curves and the ablation. COCO sets have one language and
no labels, so cross-lingual and classification are off: their sections must say so (tests/test_report.py shows
them with data, on in-memory tables).
"""

from __future__ import annotations

import io
import json
import math
from html.parser import HTMLParser
from pathlib import Path

import duckdb
import pytest
from conftest import emoji_names, emoji_pngs

from vlalign.datalake.store import Lake

pytestmark = pytest.mark.slow

try:
    from tests.chromium import readability_problems, render
except ImportError:  # tests/ itself on sys.path
    from chromium import readability_problems, render

N_IMAGES = 60
SEEDS = [0, 1]
TEXT = ["minilm-l6", "e5-small", "wordllama"]
SECTIONS = ["sec-summary", "sec-alignment", "sec-matching", "sec-curves", "sec-cross-pair-analysis",
            "sec-cross-lingual", "sec-cross-domain", "sec-classification", "sec-concepts", "sec-explanations",
            "sec-runs-and-data"]
NOT_IN_SPEC = ("sec-cross-lingual", "sec-classification", "sec-concepts")


def coco_from_emoji(root: Path, domain: str, n: int, skip: int = 0) -> tuple[Path, Path]:
    """A COCO-captions folder of ``n`` emoji of ``domain`` after the first ``skip`` (JPEG on white), one caption
    each."""
    from PIL import Image

    names = emoji_names()
    img_dir = root / "images"
    img_dir.mkdir(parents=True)
    images, anns = [], []
    for i, (eid, png) in enumerate(emoji_pngs(skip + n, domain)[skip:]):
        im = Image.open(io.BytesIO(png)).convert("RGBA")
        bg = Image.new("RGBA", im.size, (255, 255, 255, 255))
        Image.alpha_composite(bg, im).convert("RGB").save(img_dir / f"{i:05d}.jpg", quality=90)
        images.append({"id": i + 1, "file_name": f"{i:05d}.jpg"})
        anns.append({"id": 1000 + i, "image_id": i + 1, "caption": names[eid]})
    ann = root / "captions.json"
    ann.write_text(json.dumps({"images": images, "annotations": anns}))
    return ann, img_dir


def spec_doc(sets: dict[str, tuple[Path, Path]]) -> dict:
    return {
        "name": "report-page",
        "datasets": [{"name": d, "format": "coco", "annotations": str(a), "images": str(i)} for d, (a, i) in sets.items()],
        "vision_encoders": ["mobilenetv2"],
        "text_encoders": TEXT,
        "analyses": {
            "cka": {"kernels": ["linear"], "debiased": [False, True], "mutual_knn": [5], "bootstrap": 20},
            "matching": ["qap", "local_cka"], "retrieval": ["local_cka"], "baselines": ["linear_regression"],
            "qap": {"restarts": 2},
            "cross_domain": {"pairs": [{"base": "twitter", "query": "google", "base_dataset": "twitter",
                                        "query_dataset": "google"}]},
            "curves": {"base_sizes": [10, 20], "query_sizes": [15, 30], "seeds": SEEDS},
            "explain": {"top": 2, "text_encoder": "minilm-l6", "steps": 4},
        },
        "base_size": 20, "query_size": 30, "base_selection": "kmeans_image", "stretch": True, "seeds": SEEDS,
        "extraction": {"shard_size": 64},
    }


@pytest.fixture(scope="module")
def swept(prefect_server, tmp_path_factory):
    """(lake root, run id, spec) of one real sweep (threads in this process: no cluster start-up)."""
    from prefect.task_runners import ThreadPoolTaskRunner

    from vlalign.flows.sweep import sweep_flow

    root = tmp_path_factory.mktemp("report-page")
    # other emoji in each domain: a query's twin never sits in the cross-domain base
    sets = {d: coco_from_emoji(root / d, d, N_IMAGES, skip=k * N_IMAGES) for k, d in enumerate(("google", "twitter"))}
    doc = spec_doc(sets)
    lake_root = root / "lake"
    out = sweep_flow.with_options(task_runner=ThreadPoolTaskRunner(max_workers=2))(spec=doc, lake_root=str(lake_root))
    return lake_root, out["run_id"], doc


@pytest.fixture(scope="module")
def report_dir(swept):
    from vlalign.report.build import write_report

    lake_root, run_id, _ = swept
    path = write_report(Lake.open(lake_root), run_id)
    assert path == (lake_root / "reports" / f"run={run_id}" / "report.html").resolve()
    return path


class Dom(HTMLParser):
    """Sections (id -> their tables' data-rows and body rows, figures, paragraph text) and every <img>."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.sections: dict[str, dict] = {}
        self.imgs: list[dict] = []
        self._sec = None
        self._body = False
        self._text = False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        cls = (a.get("class") or "").split()
        if tag == "section" and "vl-section" in cls:
            self._sec = self.sections.setdefault(a["id"], {"tables": [], "figures": 0, "text": ""})
        elif self._sec is None:
            return
        elif tag == "table" and "vl-table" in cls:
            self._sec["tables"].append({"title": "", "data_rows": int(a["data-rows"]), "rows": 0})
        elif tag == "tbody":
            self._body = True
        elif tag == "tr" and self._body:
            self._sec["tables"][-1]["rows"] += 1
        elif tag == "figure":
            self._sec["figures"] += 1
        elif tag == "img":
            self.imgs.append(a)
        elif tag in ("p", "caption", "td"):
            self._text = True

    def handle_endtag(self, tag):
        if tag == "section":
            self._sec = None
        elif tag == "tbody":
            self._body = False
        elif tag in ("p", "caption", "td"):
            self._text = False

    def handle_data(self, data):
        if self._sec is not None and self._text:
            self._sec["text"] += data + "\n"


def test_write_report_writes_every_plot_and_a_page_that_chromium_renders(swept, report_dir, chromium):
    from PIL import Image

    lake_root, run_id, _ = swept
    out = report_dir.parent
    pngs = sorted(p.name for p in out.glob("*.png"))
    explained = sorted(p.name for p in out.glob("explain_*.png"))
    assert len(explained) == 2
    assert pngs == sorted(["cka_measures.png", "matching.png",
                           "curves.png", "ablation.png", "scatter.png", "cross_domain.png", *explained])
    for p in out.glob("*.png"):
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 10_000

    text = report_dir.read_text(encoding="utf-8")
    low = text.lower()
    for bad in ("<script", "<link", 'src="http', "src='http", "url(http", "@import"):
        assert bad not in low, bad

    dom, shot = render(report_dir, chromium)
    d = Dom()
    d.feed(dom)
    d.close()
    assert list(d.sections) == SECTIONS
    for sid, sec in d.sections.items():
        if sid in NOT_IN_SPEC:
            assert "not in this run's spec" in sec["text"] and not sec["figures"], sid
            continue
        assert sec["tables"], sid
        for t in sec["tables"]:
            assert t["data_rows"] == t["rows"] > 0, (sid, t)
    assert {sid: s["figures"] for sid, s in d.sections.items() if s["figures"]} == {
        "sec-alignment": 1, "sec-matching": 1, "sec-curves": 2, "sec-cross-pair-analysis": 1, "sec-cross-domain": 1,
        "sec-explanations": 2}
    assert len(d.imgs) == 8 and all(i["src"].startswith("data:image/png;base64,") for i in d.imgs)
    summary = d.sections["sec-summary"]["text"]
    assert f"Run {run_id}" in summary and "cross-domain twitter->google" in summary and "CKA linear (debiased)" in summary

    # the screenshot shows a page, not a blank or an error: many colours, mostly white, some dark text
    im = Image.open(shot).convert("RGB")
    assert im.size == (1280, 2000)
    small = im.resize((320, 500))
    colours = small.getcolors(maxcolors=1 << 16) or []
    assert len(colours) > 50
    px = list(small.get_flattened_data()) if hasattr(small, "get_flattened_data") else list(small.getdata())
    assert sum(p == (255, 255, 255) for p in px) > 0.3 * len(px)
    assert sum(max(p) < 90 for p in px) > 100


def test_the_explain_study_is_in_the_lake_and_is_reused_by_a_rerun(swept):
    from vlalign.engine.cells import engine_version
    from vlalign.engine.explain import explain_best, explanations_dir
    from vlalign.engine.spec import parse_spec
    from vlalign.report.explain_figure import plot_explanation

    lake_root, run_id, doc = swept
    lake = Lake.open(lake_root)
    got = explain_best(lake, run_id, parse_spec(doc), engine_version("matching"), plot_explanation)
    assert got["reused"] and len(got["items"]) == 2
    assert sorted(p.name for p in (explanations_dir(lake) / got["run_id"]).glob("*.png")) == sorted(
        f"{i.replace('/', '_')}.png" for i in got["items"])
    rows = duckdb.sql(f"select distinct item_id, vision_encoder, text_encoder, steps from "
                      f"read_parquet('{lake_root}/attributions/run={got['run_id']}.parquet')").fetchall()
    assert sorted(r[0] for r in rows) == sorted(got["items"])
    assert {r[1:] for r in rows} == {("mobilenetv2", "minilm-l6", 4)}


def test_the_page_reads_at_a_glance_at_1400_px(report_dir, chromium):
    """Laid out by Chromium 1400 px wide: under 12,000 px tall, no wider than the window, no text under 10 px (a
    figure's smallest font taken at the width the figure is shown), no table cell broken inside a word."""
    assert readability_problems(report_dir, chromium, width=1400, max_height=12_000, min_px=10) == []


def test_summary_and_cli_report_name_each_study(swept, tmp_path):
    import subprocess

    from conftest import VENV_BIN

    lake_root, run_id, _ = swept
    res = subprocess.run([str(VENV_BIN / "vlalign"), "report", run_id, "--lake", str(lake_root), "--out", str(tmp_path)],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    lines = [" ".join(line.split()) for line in res.stdout.splitlines()]
    assert lines[-1] == f"report: {(tmp_path / 'report.html').resolve()}"
    assert (tmp_path / "report.html").is_file()
    for expected in ("CKA linear: 6 pairs", "CKA linear (debiased): 6 pairs", "CKA mutual_knn_k5: 6 pairs",
                     "matching qap: best", "retrieval local_cka: R@1", "cross-domain twitter->google:",
                     "(same domain twitter->twitter:", "; google->google:", "cross-lingual: not in this run's spec",
                     "classification: not in this run's spec", "curves (mobilenetv2 x minilm-l6): base 10->20:",
                     "rejects in google: 0", "rejects in twitter: 0"):
        assert any(expected in line for line in lines), (expected, res.stdout)
    assert sorted(Path(p.strip()).name for p in lines if p.strip().endswith(".png")) == sorted(
        p.name for p in tmp_path.glob("*.png"))
    bad = subprocess.run([str(VENV_BIN / "vlalign"), "report", "no-such-run", "--lake", str(lake_root)],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "no run 'no-such-run'" in bad.stderr and run_id in bad.stderr


def _parquet(lake_root: Path, table: str) -> str:
    return str(lake_root / "results" / table / "*.parquet")


def test_correlations_equal_scipy_on_values_read_from_parquet(swept):
    """CKA per pair and measure (mean over the data sets) and main-grid accuracy per pair and method (per seed,
    mean over the data sets; then mean over seeds), read with DuckDB from the result files, not the catalog."""
    from scipy import stats

    from vlalign.report.build import correlations

    lake_root, run_id, doc = swept
    con = duckdb.connect()
    cka = con.execute(f"""
        SELECT kernel || CASE WHEN debiased THEN ' (debiased)' ELSE '' END AS measure,
               vision_encoder || ' x ' || text_encoder AS pair, avg(value) AS v
        FROM read_parquet('{_parquet(lake_root, "cka")}') GROUP BY ALL""").fetchall()
    acc = con.execute(f"""
        WITH one AS (SELECT DISTINCT dataset, domain, lang, vision_encoder, text_encoder, method, seed, accuracy
                     FROM read_parquet('{_parquet(lake_root, "matching")}', union_by_name => true)
                     WHERE base_domain = query_domain AND base_size = $b AND query_size = $q
                       AND base_selection = 'kmeans_image' AND stretch AND accuracy IS NOT NULL),
             per_seed AS (SELECT vision_encoder || ' x ' || text_encoder AS pair, method, seed, avg(accuracy) AS a
                          FROM one GROUP BY ALL)
        SELECT pair, method, avg(a) FROM per_seed GROUP BY ALL""",
                      {"b": doc["base_size"], "q": doc["query_size"]}).fetchall()
    cka_v = {(m, p): v for m, p, v in cka}
    acc_v = {(m, p): a for p, m, a in acc}
    measures = sorted({m for m, _ in cka_v})
    methods = sorted({m for m, _ in acc_v})
    assert measures == ["linear", "linear (debiased)", "mutual_knn_k5"]
    assert methods == ["linear_regression", "local_cka", "qap"]

    got = {(c["measure"], c["method"]): c for c in correlations(Lake.open(lake_root), run_id)}
    assert set(got) == {(m, k) for m in measures for k in methods}
    for (measure, method), c in got.items():
        pairs = sorted(p for m, p in cka_v if m == measure)
        assert len(pairs) == c["n_pairs"] == len(TEXT)
        x = [cka_v[(measure, p)] for p in pairs]
        y = [acc_v[(method, p)] for p in pairs]
        pr, sr = stats.pearsonr(x, y), stats.spearmanr(x, y)
        for key, want in (("pearson_r", pr.statistic), ("pearson_p", pr.pvalue),
                          ("spearman_rho", sr.statistic), ("spearman_p", sr.pvalue)):
            if math.isnan(want):
                assert c[key] is None, (measure, method, key)
            else:
                assert c[key] == pytest.approx(want, rel=1e-9, abs=1e-12), (measure, method, key)
