"""Alignment: CKA (linear/RBF kernels, biased or debiased HSIC) and mutual k-nearest-neighbour alignment of
every vision x text encoder pair, with the shuffled-pairing baseline: a summary line and a heat map per measure."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from vlalign.report.html import FigureRow, Section, Table
from vlalign.report.plotting import MIN_FONT_PT, heatmap, new_figure, save
from vlalign.report.queries import CKA_ROWS, shown
from vlalign.report.rows import mean, measure_name, measure_title, pair_name
from vlalign.report.rundata import RunData
from vlalign.report.study import Page
from vlalign.report.tables import f3, missing, narrow_table

SUMMARY_RANK = 10


def measure_file(kernel: str, debiased: bool | None) -> str:
    """The heat map's file name: cka_<kernel>[_debiased].png."""
    return f"cka_{re.sub(r'[^A-Za-z0-9_.-]+', '_', kernel)}{'_debiased' if debiased else ''}.png"


def lines(d: RunData, top: int) -> list[str]:
    """One line per measure: its mean, the shuffled baseline's, how often the true pairing beats it, the best pair."""
    width = max((len(measure_name(r["kernel"], r["debiased"])) for r in d.cka_summary), default=0)
    return [f"  CKA {measure_name(r['kernel'], r['debiased']):>{width}}: {r['n']} pairs, mean {r['mean_value']:.3f} "
            f"(shuffled {f3(r['mean_shuffled'])}), true > shuffled in {r['beats_shuffled']}/{r['n']}; "
            f"best {r['best_pair']} = {r['best_value']:.3f}" for r in d.cka_summary]


def figures(d: RunData, out: Path) -> list[str]:
    """A heat map per measure (vision x text encoders): in each cell the value of the true pairing, its bootstrap
    interval and the value of the shuffled pairing; the mean shuffled value in the title."""
    written = []
    for kernel, debiased in d.measures:
        rs = [r for r in d.cka_grid if (r["kernel"], bool(r["debiased"])) == (kernel, debiased)]
        if not any(r["v"] is not None for r in rs):
            continue
        vis = sorted({r["vision_encoder"] for r in rs})
        txt = sorted({r["text_encoder"] for r in rs})
        grid = np.full((len(vis), len(txt)), np.nan)
        text = [[""] * len(txt) for _ in vis]
        for r in rs:
            i, j = vis.index(r["vision_encoder"]), txt.index(r["text_encoder"])
            grid[i, j] = np.nan if r["v"] is None else r["v"]
            text[i][j] = _cell_text(r)
        lines = max(t.count("\n") + 1 for row in text for t in row)
        fig, (ax,) = new_figure(1.25 + 0.9 * len(txt), 1.55 + (0.15 * lines + 0.1) * len(vis))
        im = heatmap(ax, grid, vis, txt, text, fontsize=MIN_FONT_PT)
        shuffled = [r["s"] for r in rs if r["s"] is not None]
        sh = f"shuffled: mean {mean(shuffled):.3f}" if shuffled else "no shuffled baseline"
        ax.set_title(f"{measure_title(kernel, debiased)} \u2014 true pairing\n{sh}")
        ax.set_xlabel("text encoder")
        ax.set_ylabel("vision encoder")
        fig.colorbar(im, ax=ax, label="score (0-1)", location="bottom", shrink=0.8, aspect=30, pad=0.02)
        written.append(save(fig, out / measure_file(kernel, debiased)))
    return written


def _cell_text(r: dict) -> str:
    """A heat-map cell: the value, [its 95% bootstrap interval], 'shuffled <value>'."""
    if r["v"] is None:
        return "n/a"
    text = f"{r['v']:.3f}"
    if r["ci_low"] is not None and r["ci_high"] is not None:
        text += f"\n[{r['ci_low']:.3f}, {r['ci_high']:.3f}]"
    if r["s"] is not None:
        text += f"\nshuffled {r['s']:.3f}"
    return text


def section(d: RunData, page: Page) -> Section:
    figs = [f for kernel, debiased in d.measures for f in page.figure(measure_file(kernel, debiased),
                                                                      measure_title(kernel, debiased))]
    items: list = []
    if figs:
        items.append(FigureRow(figs))
        items.append("Each cell: the score of the true pairing (mean over the run's CKA rows of the pair), [its 95% "
                     "bootstrap interval] where computed, and the score of the same pair with the captions shuffled.")
    if d.cka_summary:
        items.append(Table("CKA per measure (scores 0-1)",
                           ["measure", "rows", "mean (0-1)", "mean shuffled (0-1)", "true > shuffled", "best pair",
                            "best (0-1)"],
                           [(measure_title(r["kernel"], r["debiased"]), r["n"], r["mean_value"], r["mean_shuffled"],
                             f"{r['beats_shuffled']}/{r['n']}", r["best_pair"], r["best_value"])
                            for r in d.cka_summary]))
    if d.cka:
        rows = sorted(d.cka, key=lambda r: -r["value"] if r["value"] is not None else 1.0)
        items.append(narrow_table("Every CKA row of the run, best first",
                                  ["dataset", "domain", "lang", "pair", "measure", "n", "score (0-1)",
                                   "shuffled (0-1)", "CI low (0-1)", "CI high (0-1)", "seed", "note"],
                                  [(r["dataset"], r["domain"], r["lang"], pair_name(r),
                                    measure_title(r["kernel"], r["debiased"]), r["n"], r["value"], r["shuffled_value"],
                                    r["ci_low"], r["ci_high"], r["seed"], r["note"]) for r in rows],
                                  sql=shown(CKA_ROWS, run_id=d.run_id), top=0))
    else:
        items.append(missing(d, bool(d.spec and d.spec.cka)))
    return Section("Alignment", items, intro="CKA (linear/RBF kernels, biased or debiased HSIC) and mutual "
                   "k-nearest-neighbour alignment of every vision x text encoder pair, with the shuffled-pairing "
                   "baseline. Scores from 0 (unrelated) to 1 (the same geometry), 3 decimals.")
