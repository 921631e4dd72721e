"""Alignment: CKA (linear/RBF kernels, biased or debiased HSIC) and mutual k-nearest-neighbour alignment of
every vision x text encoder pair, with the shuffled-pairing baseline: a summary line and a heat map per measure."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from vlalign.report.html import Section, Table
from vlalign.report.plotting import new_figure, save
from vlalign.report.rows import mean, measure_name, pair_name
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
    """A heat map per measure (vision x text encoders), the value and its bootstrap interval in each cell."""
    written = []
    for kernel, debiased in d.measures:
        rs = [r for r in d.cka_grid if (r["kernel"], bool(r["debiased"])) == (kernel, debiased)]
        if not any(r["v"] is not None for r in rs):
            continue
        vis = sorted({r["vision_encoder"] for r in rs})
        txt = sorted({r["text_encoder"] for r in rs})
        grid = np.full((len(vis), len(txt)), np.nan)
        cell = {}
        for r in rs:
            i, j = vis.index(r["vision_encoder"]), txt.index(r["text_encoder"])
            grid[i, j] = np.nan if r["v"] is None else r["v"]
            cell[(i, j)] = r
        fig, (ax,) = new_figure(2.2 + 1.5 * len(txt), 1.5 + 0.75 * len(vis))
        top = max(0.01, float(np.nanmax(grid)))
        im = ax.imshow(grid, cmap="viridis", vmin=0, vmax=top, aspect="auto")
        ax.set_xticks(range(len(txt)), txt, rotation=30, ha="right", fontsize=8)
        ax.set_yticks(range(len(vis)), vis, fontsize=8)
        for (i, j), r in cell.items():
            if r["v"] is None:
                ax.text(j, i, "n/a", ha="center", va="center", color="k", fontsize=8)
                continue
            text = f"{r['v']:.3f}"
            if r["ci_low"] is not None and r["ci_high"] is not None:
                text += f"\n[{r['ci_low']:.3f}, {r['ci_high']:.3f}]"
            ax.text(j, i, text, ha="center", va="center", color="k" if r["v"] > 0.6 * top else "w", fontsize=8)
        shuffled = [r["s"] for r in rs if r["s"] is not None]
        sh = f"shuffled mean {mean(shuffled):.3f}" if shuffled else "no shuffled baseline"
        ax.set_title(f"{measure_name(kernel, debiased)} - {sh}\nrun {d.run_id}", fontsize=9)
        fig.colorbar(im, ax=ax)
        written.append(save(fig, out / measure_file(kernel, debiased)))
    return written


def section(d: RunData, page: Page) -> Section:
    items = []
    for kernel, debiased in d.measures:
        items += page.figure(measure_file(kernel, debiased), f"CKA {measure_name(kernel, debiased)}",
                             "mean over the run's CKA rows of each pair; [95% bootstrap interval] where computed")
    if d.cka_summary:
        items.append(Table("CKA per measure", ["measure", "rows", "mean", "mean shuffled", "true > shuffled",
                                               "best pair", "best value"],
                           [(measure_name(r["kernel"], r["debiased"]), r["n"], r["mean_value"], r["mean_shuffled"],
                             r["beats_shuffled"], r["best_pair"], r["best_value"]) for r in d.cka_summary]))
    if d.cka:
        items.append(narrow_table("Every CKA row of the run",
                                  ["dataset", "domain", "lang", "pair", "measure", "n", "value", "shuffled", "ci_low",
                                   "ci_high", "seed", "note"],
                                  [(r["dataset"], r["domain"], r["lang"], pair_name(r),
                                    measure_name(r["kernel"], r["debiased"]), r["n"], r["value"], r["shuffled_value"],
                                    r["ci_low"], r["ci_high"], r["seed"], r["note"]) for r in d.cka]))
    else:
        items.append(missing(d, bool(d.spec and d.spec.cka)))
    return Section("Alignment", items, intro="CKA (linear/RBF kernels, biased or debiased HSIC) and mutual "
                   "k-nearest-neighbour alignment of every vision x text encoder pair, with the shuffled-pairing "
                   "baseline.")
