"""Matching: training-free matching of held-out queries, given a base of known pairs, on the main grid (the
data sets' own domains and languages, the spec's settings), each grid setting apart: the best pairs per method,
a vision x text heat map per method, and the Matching section (with the retrieval tables and the rows in no
study of the spec)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from vlalign.report.html import Section
from vlalign.report.plotting import heatmap, new_figure_blocks, save
from vlalign.report.queries import MATCHING, Raw, main_grid, shown
from vlalign.report.rows import (
    mean,
    over_seeds,
    pair_name,
    route,
    setting_cols,
    setting_of,
    sort_key,
)
from vlalign.report.rundata import RunData
from vlalign.report.studies import retrieval
from vlalign.report.study import Page
from vlalign.report.tables import chance_pct, grid_labels, missing, narrow_table, spread

SUMMARY_RANK = 20

MAIN_KEYS = ("dataset, domain, lang, vision_encoder, text_encoder, method, base_size, query_size, base_selection, "
             "stretch, protocol")


def lines(d: RunData, top: int) -> list[str]:
    """One line per method and grid setting: the ``top`` best pairs (mean over seeds [min-max]) and the best
    against chance."""
    stats = over_seeds(d.main, lambda r: (setting_of(r), r["method"], pair_name(r)))
    labels = grid_labels(d, {s for s, _, _ in stats})
    names = {(s, m): f"{m} ({labels[s]})" if labels[s] else m for s, m, _ in stats}
    width = max((len(n) for n in names.values()), default=0)
    out = []
    for setting in labels:
        for method in sorted({m for s, m, _ in stats if s == setting}):
            rs = sorted(((p, st) for (s, m, p), st in stats.items() if (s, m) == (setting, method)),
                        key=lambda x: (-x[1]["mean"], x[0]))
            best = ", ".join(f"{p} {spread(st)}" for p, st in rs[:top])
            chance = rs[0][1]["chance"]
            ratio = f"{rs[0][1]['mean'] / chance:.0f}x chance" if chance else "chance n/a"
            seeds = max(st["seeds"] for _, st in rs)
            over = f"; mean [min-max] over {seeds} seeds" if seeds > 1 else ""
            out.append(f"  matching {names[(setting, method)]:>{width}}: best {best}  (chance {chance_pct(chance)}, "
                       f"best = {ratio}{over})")
    return out


def figures(d: RunData, out: Path) -> list[str]:
    """matching.png: main-grid accuracy, a vision x text heat map per method and grid setting, annotated."""
    stats = over_seeds(d.main, lambda r: (setting_of(r), r["method"], r["vision_encoder"], r["text_encoder"]))
    if not stats:
        return []
    labels = grid_labels(d, {k[0] for k in stats})
    methods = sorted({k[1] for k in stats})
    vis = sorted({k[2] for k in stats})
    txt = sorted({k[3] for k in stats})
    ncols = min(len(methods), 5)
    per = -(-len(methods) // ncols)  # rows of panels per setting
    chance = {s: [st["chance"] for k, st in stats.items() if k[0] == s and st["chance"] is not None] for s in labels}
    fig, blocks = new_figure_blocks(2.6 + ncols * (0.5 * len(txt) + 0.2),
                                    len(labels) * (per * (0.34 * len(vis) + 1.0) + 0.3) + 0.3,
                                    [f"{label}; chance {chance_pct(mean(chance[s]) if chance[s] else None)}"
                                     for s, label in labels.items()], ncols, per)
    top = 100 * max(st["mean"] for st in stats.values())
    for setting, axes in zip(labels, blocks):
        for ax in axes[len(methods):]:
            ax.set_visible(False)
        for mi, (ax, method) in enumerate(zip(axes, methods)):
            grid = [[100 * stats[(setting, method, v, t)]["mean"] if (setting, method, v, t) in stats else np.nan
                     for t in txt] for v in vis]
            text = [[f"{x:.1f}" if x == x else "" for x in row] for row in grid]
            im = heatmap(ax, grid, vis, txt, text, vmax=top, rotate=True)
            ax.set_title(method)
            ax.set_xlabel("text encoder")
            if mi % ncols == 0:
                ax.set_ylabel("vision encoder")
            else:
                ax.set_yticks(range(len(vis)), [""] * len(vis))
        ax.figure.colorbar(im, ax=axes[:len(methods)], label="accuracy (%)", shrink=0.9)
    seeds = max(st["seeds"] for st in stats.values())
    one = chance[setting] if len(labels) == 1 else None  # the chance of the one setting, in the title
    fig.suptitle(f"Matching accuracy (%), main grid: mean over {seeds} seed{'s' if seeds > 1 else ''}"
                 + (f"; chance {chance_pct(mean(one))}" if one else ""), x=0.01, ha="left")
    return [save(fig, out / "matching.png")]


def section(d: RunData, page: Page) -> Section:
    items = page.figure("matching.png", "Matching accuracy (main grid)",
                        "mean over seeds per encoder pair and method, in %; min and max over seeds in the table")
    main = d.main
    if main:
        stats = over_seeds(main, lambda r: (r["dataset"], r["domain"], r["lang"], pair_name(r), r["method"],
                                            *setting_cols(r), r.get("protocol")))
        items.append(narrow_table("Main-grid matching accuracy over seeds, best first",
                                  ["dataset", "domain", "lang", "pair", "method", "base", "query", "selection",
                                   "stretch", "protocol", "seeds", "mean (%)", "min (%)", "max (%)", "std (%)",
                                   "chance (%)"],
                                  [(*k, st["seeds"], st["mean"], st["min"], st["max"], st["std"], st["chance"])
                                   for k, st in sorted(stats.items(), key=lambda kv: (-kv[1]["mean"],
                                                                                      sort_key(kv[0])))],
                                  sql=shown(MATCHING, keys=Raw(MAIN_KEYS), where=main_grid(d.plan), run_id=d.run_id,
                                            order=Raw("mean_pct DESC"))))
        notes = [r for r in main if r["accuracy"] is None]
        if notes:
            items.append(narrow_table("Main-grid rows without an accuracy", ["pair", "method", "seed", "note"],
                                      [(pair_name(r), r["method"], r["seed"], r["note"]) for r in notes]))
    else:
        items.append(missing(d, bool(d.spec and d.spec.has_matching)))
    items += retrieval.tables(d)
    other = [r for r in d.matching if d.plan.study(r) == "other"]
    if other:
        stats = over_seeds(other, lambda r: (r["dataset"], r["domain"], r["lang"], route(r),
                                             pair_name(r), r["method"], *setting_cols(r)))
        items.append(narrow_table("Other matching rows of the run (in no study of the spec)",
                                  ["dataset", "domain", "lang", "domains", "pair", "method", "base", "query",
                                   "selection", "stretch", "seeds", "mean (%)", "min (%)", "max (%)", "chance (%)"],
                                  [(*k, st["seeds"], st["mean"], st["min"], st["max"], st["chance"])
                                   for k, st in sorted(stats.items(), key=lambda kv: sort_key(kv[0]))]))
    return Section("Matching", items, intro="Training-free matching of held-out queries, given a base of known "
                   "pairs: the main grid (the data sets' own domains and languages, the spec's settings). Accuracy: "
                   "the share of queries matched to their own caption, in %; chance: 1 / query size.")
