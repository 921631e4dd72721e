"""What a person looks at after a run: a text summary, PNG plots and one self-contained HTML page.

The rows come from the lake once per report (vlalign.report.rundata: one query per sql/report_*.sql file,
parameters bound) and are split into the run's studies with the run's own spec (vlalign.report.plan). Each
study is one module of vlalign.report.studies, with its summary lines, its plots and its section of the page;
this module walks the registry (vlalign.report.studies.STUDIES).

    summary(lake, run_id)       the text printed at the end of a sweep and by `vlalign report`
    plot_run(lake, run_id)      the PNGs, each only when its data exists
    correlations(lake, run_id)  CKA vs matching accuracy over the encoder pairs (Pearson, Spearman)
    write_report(lake, run_id)  the PNGs and report.html, one self-contained page
    build_report(lake, run_id)  the same, with the PNG paths and the summary text
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from vlalign.datalake.store import Lake
from vlalign.report.cache import cached_figures
from vlalign.report.html import Section, write_page
from vlalign.report.plotting import style
from vlalign.report.rundata import RunData, load_run
from vlalign.report.studies import STUDIES
from vlalign.report.studies.correlation import correlations_of
from vlalign.report.study import Page


def summary(lake: Lake, run_id: str, top: int = 3) -> str:
    """What each study of ``run_id`` found, a line or a few each: CKA per measure, main-grid matching per
    method (best pairs, mean over seeds [min-max]), retrieval, cross-domain, cross-lingual, classification,
    curves, concepts, and the rejects of each data set."""
    return summary_of(load_run(lake, run_id), top)


def summary_of(d: RunData, top: int = 3) -> str:
    """The summary's lines, the studies' in the order of their SUMMARY_RANK; ``top``: how many of the best
    encoder pairs a line may name."""
    return "\n".join(line for study in sorted(STUDIES, key=lambda s: s.SUMMARY_RANK) for line in study.lines(d, top))


def correlations(lake: Lake, run_id: str) -> list[dict]:
    """For every CKA measure (kernel and estimator, mutual kNN included) and matching method of the main grid:
    the Pearson and Spearman correlations, over the encoder pairs, between the pair's CKA value and its
    main-grid matching accuracy (mean over seeds). Fewer than 3 pairs (or constant values): None."""
    return correlations_of(load_run(lake, run_id))


def _out_dir(lake: Lake, run_id: str, out_dir: str | Path | None) -> Path:
    """``out_dir``, or <lake>/reports/run=<id>/; for an object-store lake, a local folder keyed by the lake
    (:meth:`Lake.local_dir`), copied into the lake by :func:`build_report`."""
    if out_dir:
        out = Path(out_dir)
    elif getattr(lake, "is_local", True):
        out = Path(lake.root) / "reports" / f"run={run_id}"
    else:
        out = Path(lake.local_dir("reports")) / f"run={run_id}"
    out.mkdir(parents=True, exist_ok=True)
    return out


def _copy_to_lake(lake: Lake, run_id: str, paths: list) -> None:
    """The report's files, into <lake>/reports/run=<id>/ of an object-store lake (one PUT each)."""
    for p in paths:
        lake.write_bytes(lake.path("reports", f"run={run_id}", Path(p).name), Path(p).read_bytes())


def plot_run(lake: Lake, run_id: str, out_dir: str | Path | None = None) -> list[str]:
    """PNG plots of a run, each only when its data exists: a CKA heat map per measure (cka_<kernel>[_debiased]
    .png), main-grid matching heat maps, one per method and grid setting (matching.png), curves.png and
    ablation.png, the CKA vs matching scatter (scatter.png), and the heat maps cross_lingual.png, cross_domain.png
    and classification.png, and concepts.png. Default folder: <lake>/reports/run=<run_id>/. Returns the paths
    written."""
    return plots_of(load_run(lake, run_id), _out_dir(lake, run_id, out_dir))


def plots_of(d: RunData, out: Path) -> list[str]:
    """Every study's PNGs, written to ``out``, in the page's order, in the report's style (font sizes)."""
    with style():
        return [path for study in STUDIES for path in study.figures(d, out)]


@dataclass
class Report:
    path: Path  # report.html
    plots: list[str]
    summary: str


def write_report(lake: Lake, run_id: str, out_dir: str | Path | None = None) -> Path:
    """Write the PNGs (as plot_run) and ONE self-contained page, report.html, to ``out_dir`` (default
    <lake>/reports/run=<run_id>/). Returns the page's absolute path."""
    return build_report(lake, run_id, out_dir).path


def build_report(lake: Lake, run_id: str, out_dir: str | Path | None = None) -> Report:
    """write_report, also returning the PNG paths and the summary text (the rows are fetched once)."""
    d = load_run(lake, run_id)
    out = _out_dir(lake, run_id, out_dir).resolve()
    plots = cached_figures(d, out, plots_of)
    text = summary_of(d)
    page = Page(plots=plots, summary=text)
    sections: list[Section] = [s for s in (study.section(d, page) for study in STUDIES) if s is not None]
    path = write_page(out / "report.html", f"vlalign report: {run_id}", sections, meta=_meta(d))
    if not out_dir and not getattr(lake, "is_local", True):
        _copy_to_lake(lake, run_id, [*plots, path])
    return Report(path=Path(path).resolve(), plots=plots, summary=text)


def _meta(d: RunData) -> dict:
    """The page's header: the run, its lake, spec, protocol, status, times and cells."""
    rec = d.record or {}
    spec = d.spec
    protocol = None
    if spec is not None:
        protocol = spec.protocol + " (" + ", ".join(f"{k}={v}" for k, v in spec.protocol_settings.items()) + ")"
    else:
        protocols = sorted({r["protocol"] for r in d.matching if r.get("protocol")})
        protocol = ", ".join(protocols) or None
    cells = None
    if rec:
        cells = (f"{rec.get('cells_total')} total, {rec.get('cells_done')} done, {rec.get('cells_computed')} computed "
                 "by this run")
    local = getattr(d.lake, "is_local", True)
    return {"run id": d.run_id, "lake": str(Path(d.lake.root).resolve()) if local else d.lake.root,
            "spec name": spec.name if spec else None, "protocol": protocol, "status": rec.get("status"),
            "started": _ts(rec.get("started_at")), "finished": _ts(rec.get("finished_at")), "cells": cells}


def _ts(x) -> str | None:
    return None if x is None else str(x)
