"""Classification: zero-shot classification of the images by a label field (the emoji category or
subcategory), through class prompts, against chance and the majority class."""

from __future__ import annotations

from pathlib import Path

from vlalign.report.html import Section, Table
from vlalign.report.plotting import grouped_bars, legend, new_figure, save
from vlalign.report.rows import mean, over_seeds, pair_name
from vlalign.report.rundata import RunData
from vlalign.report.study import Page
from vlalign.report.tables import NOT_IN_SPEC, as_int, missing, narrow_table, pct, sort_key

SUMMARY_RANK = 60


def lines(d: RunData, top: int) -> list[str]:
    """One line per label field: the best method (mean over pairs and seeds), its best pair, chance, majority."""
    if not d.classification:
        if not d.spec:
            return []
        return [f"  classification: {'no results' if d.spec.classification else NOT_IN_SPEC}"]
    out = []
    for lf in sorted({r["label_field"] for r in d.classification}):
        rs = [r for r in d.classification if r["label_field"] == lf]
        by_method = over_seeds(rs, lambda r: r["method"], extra=("chance", "majority", "n_classes"))
        if not by_method:
            out.append(f"  classification {lf}: no accuracy (see notes)")
            continue
        m, st = max(by_method.items(), key=lambda x: x[1]["mean"])
        by_pair = over_seeds([r for r in rs if r["method"] == m], pair_name)
        p, pst = max(by_pair.items(), key=lambda x: x[1]["mean"])
        ncls = f" ({st['n_classes']:.0f} classes)" if st.get("n_classes") else ""
        out.append(f"  classification {lf}{ncls}: best method {m} {pct(st['mean'])} (mean over pairs and seeds; "
                   f"best pair {p} {pct(pst['mean'])}) vs chance {pct(st['chance'])}, majority {pct(st['majority'])}")
    return out


def figures(d: RunData, out: Path) -> list[str]:
    """classification.png: a panel per label field, accuracy per pair and method, chance and majority as lines."""
    fields = sorted({r["label_field"] for r in d.classification if r["accuracy"] is not None})
    if not fields:
        return []
    pairs = sorted({pair_name(r) for r in d.classification})
    methods = sorted({r["method"] for r in d.classification})
    fig, axes = new_figure(1.6 + max(5.0, 0.35 * len(pairs) * len(methods) + 2.5), 3.6 * len(fields), nrows=len(fields))
    for ax, lf in zip(axes, fields):
        rs = [r for r in d.classification if r["label_field"] == lf]
        stats = over_seeds(rs, lambda r: (pair_name(r), r["method"]), extra=("chance", "majority"))
        grouped_bars(ax, pairs, methods, stats)
        for col, style, label in (("chance", "--", "chance"), ("majority", ":", "majority class")):
            vals = [r[col] for r in rs if r.get(col) is not None]
            if vals:
                ax.axhline(100 * mean(vals), color="k", ls=style, lw=1, label=label)
        ax.set_title(f"Zero-shot classification: {lf} (error bars min-max over seeds)", fontsize=9)
        legend(ax)
    return [save(fig, out / "classification.png")]


def section(d: RunData, page: Page) -> Section:
    items = page.figure("classification.png", "Zero-shot classification",
                        "mean over seeds, error bars min-max over seeds; dashed: chance, dotted: majority class")
    if d.classification:
        stats = over_seeds(d.classification, lambda r: (r["label_field"], r["template_set"], r["dataset"], pair_name(r),
                                                        r["method"]), extra=("chance", "majority", "n_classes", "n"))
        items.append(narrow_table("Classification accuracy over seeds",
                                  ["label field", "templates", "dataset", "pair", "method", "classes", "n", "seeds",
                                   "mean", "min", "max", "chance", "majority"],
                                  [(*k, as_int(st["n_classes"]), as_int(st["n"]), st["seeds"], st["mean"], st["min"],
                                    st["max"], st["chance"], st["majority"])
                                   for k, st in sorted(stats.items(), key=lambda kv: sort_key(kv[0]))]))
        notes = [r for r in d.classification if r["accuracy"] is None]
        if notes:
            items.append(Table("Classification rows without an accuracy",
                               ["label field", "pair", "method", "seed", "note"],
                               [(r["label_field"], pair_name(r), r["method"], r["seed"], r["note"]) for r in notes]))
    else:
        items.append(missing(d, bool(d.spec and d.spec.classification)))
    return Section("Classification", items, intro="Zero-shot classification of the images by the emoji "
                   "category (label) or subcategory (sublabel), through class prompts.")
