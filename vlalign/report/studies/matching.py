"""Matching: training-free matching of held-out queries, given a base of known pairs, on the main grid (the
data sets' own domains and languages, the spec's settings): the best pairs per method, the bars per pair, and
the Matching section (with the retrieval tables and the rows in no study of the spec)."""

from __future__ import annotations

from pathlib import Path

from vlalign.report.html import Section, Table
from vlalign.report.plotting import grouped_bars, legend, new_figure, save
from vlalign.report.rows import mean, over_seeds, pair_name, route, setting_cols
from vlalign.report.rundata import RunData
from vlalign.report.studies import retrieval
from vlalign.report.study import Page
from vlalign.report.tables import missing, narrow_table, sort_key, spread

SUMMARY_RANK = 20


def lines(d: RunData, top: int) -> list[str]:
    """One line per method: the ``top`` best pairs (mean over seeds [min-max]) and the best against chance."""
    stats = over_seeds(d.main, lambda r: (r["method"], pair_name(r)))
    methods = sorted({m for m, _ in stats})
    width = max((len(m) for m in methods), default=0)
    out = []
    for method in methods:
        rs = sorted(((p, st) for (m, p), st in stats.items() if m == method), key=lambda x: (-x[1]["mean"], x[0]))
        best = ", ".join(f"{p} {spread(st)}" for p, st in rs[:top])
        chance = rs[0][1]["chance"]
        ratio = f"{rs[0][1]['mean'] / chance:.0f}x chance" if chance else "chance n/a"
        seeds = max(st["seeds"] for _, st in rs)
        over = f"; mean [min-max] over {seeds} seeds" if seeds > 1 else ""
        chance_txt = "n/a" if chance is None else f"{100 * chance:.2f}%"
        out.append(f"  matching {method:>{width}}: best {best}  (chance {chance_txt}, best = {ratio}{over})")
    return out


def figures(d: RunData, out: Path) -> list[str]:
    """matching.png: main-grid accuracy per pair and method, chance dashed."""
    stats = over_seeds(d.main, lambda r: (pair_name(r), r["method"]))
    if not stats:
        return []
    pairs = sorted({p for p, _ in stats})
    methods = sorted({m for _, m in stats})
    fig, (ax,) = new_figure(1.6 + max(6.0, 0.35 * len(pairs) * len(methods) + 2), 4.2)
    grouped_bars(ax, pairs, methods, stats)
    chance = mean(st["chance"] for st in stats.values() if st["chance"] is not None) if any(
        st["chance"] is not None for st in stats.values()) else None
    if chance is not None:
        ax.axhline(100 * chance, color="k", ls="--", lw=1, label="chance")
    ax.set_title(f"Matching accuracy, main grid - run {d.run_id}\n(mean over seeds, error bars min-max over seeds)",
                 fontsize=9)
    legend(ax)
    return [save(fig, out / "matching.png")]


def section(d: RunData, page: Page) -> Section:
    items = page.figure("matching.png", "Matching accuracy (main grid)",
                        "mean over seeds, error bars min-max over seeds, dashed: chance")
    main = d.main
    if main:
        stats = over_seeds(main, lambda r: (r["dataset"], r["domain"], r["lang"], pair_name(r), r["method"],
                                            *setting_cols(r)))
        items.append(narrow_table("Main-grid matching accuracy over seeds",
                                  ["dataset", "domain", "lang", "pair", "method", "base", "query", "selection",
                                   "stretch", "seeds", "mean", "min", "max", "std", "chance"],
                                  [(*k, st["seeds"], st["mean"], st["min"], st["max"], st["std"], st["chance"])
                                   for k, st in sorted(stats.items(), key=lambda kv: sort_key(kv[0]))]))
        notes = [r for r in main if r["accuracy"] is None]
        if notes:
            items.append(Table("Main-grid rows without an accuracy", ["pair", "method", "seed", "note"],
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
                                   "selection", "stretch", "seeds", "mean", "min", "max", "chance"],
                                  [(*k, st["seeds"], st["mean"], st["min"], st["max"], st["chance"])
                                   for k, st in sorted(stats.items(), key=lambda kv: sort_key(kv[0]))]))
    return Section("Matching", items, intro="Training-free matching of held-out queries, given a base of known "
                   "pairs: the main grid (the data sets' own domains and languages, the spec's settings).")
