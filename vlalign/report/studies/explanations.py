"""Explanations (Moller et al.): the run's best-matched query pairs, their similarity attributed to (image region,
caption token) pairs by integrated Jacobians (the sweep's ``analyses.explain``, or `vlalign explain --run RUN`)."""

from __future__ import annotations

import shutil
from pathlib import Path

from vlalign.engine.explain import explain_file_name, explanations_dir
from vlalign.report.html import FigureRow, Section, Table
from vlalign.report.rundata import RunData
from vlalign.report.study import Page

SUMMARY_RANK = 90
_FILE = "explain_{}.png"


def _items(d: RunData) -> dict[str, list[dict]]:
    """{item id: its rows (the three strongest attributions), in rank order}."""
    out: dict[str, list[dict]] = {}
    for r in d.explanations:
        out.setdefault(r["item_id"], []).append(r)
    return out


def _strongest(rows: list[dict]) -> str:
    return ", ".join(f"{r['token']!r} at ({r['row']}, {r['col']}) {r['attribution']:+.3f}" for r in rows)


def lines(d: RunData, top: int) -> list[str]:
    items = _items(d)
    if not items:
        return []
    first = next(iter(items.values()))[0]
    best = max(items.items(), key=lambda kv: kv[1][0]["score"])
    return [f"  explain {first['vision_encoder']} x {first['text_encoder']}: {len(items)} best-matched pairs "
            f"explained ({first['explain_run']}); e.g. {best[0]}: s = {best[1][0]['score']:.3f}, strongest "
            f"{_strongest(best[1][:1])}"]


def figures(d: RunData, out: Path) -> list[str]:
    """The explain run's pictures (drawn when it ran), copied beside the report."""
    paths = []
    for item, rows in _items(d).items():
        src = explanations_dir(d.lake) / rows[0]["explain_run"] / f"{explain_file_name(item)}.png"
        if src.is_file():
            dst = out / _FILE.format(explain_file_name(item))
            shutil.copyfile(src, dst)
            paths.append(str(dst))
    return paths


def section(d: RunData, page: Page) -> Section | None:
    items = _items(d)
    if not items and not (d.spec is not None and getattr(d.spec, "explain", None)):
        return None
    body: list = []
    figures = []
    for item, rows in items.items():
        r = rows[0]
        caption = f"s(a, b) = {r['score']:.4f}, completeness residual {r['residual']:.1e} ({r['steps']} steps)"
        figs = page.figure(_FILE.format(explain_file_name(item)), item, caption)
        figures += figs
        if not figs:
            body.append(f"{item}: {caption} (picture not found: rerun the sweep to draw it)")
    if figures:
        body.insert(0, FigureRow(figures))
    if not items:
        body.append("The spec asks for explanations, but the lake holds none for this run yet.")
    else:
        run = next(iter(items.values()))[0]["explain_run"]
        body.append(Table("The explained pairs: the three strongest (token, region) attributions of each",
                          ["item", "s(a, b)", "residual", "steps", "token", "region", "attribution"],
                          [(item, r["score"], f"{r['residual']:.1e}", r["steps"], r["token"], f"({r['row']}, {r['col']})",
                            f"{r['attribution']:+.4f}") for item, rows in items.items() for r in rows],
                          top=6, sql=f"select * from attributions where run_id = '{run}' order by abs(attribution) desc"))
    return Section("Explanations", body,
                   intro="Moller et al.: the similarity s(a, b) = f(a)^T g(b) of the best-matched query pairs, "
                         "attributed to (image region, caption token) pairs by integrated Jacobians; red raises the "
                         "score, blue lowers it. The linear map from image to text space is fitted on the cell's "
                         "base pairs.")
