"""Classification: zero-shot classification of the images by a label field (the emoji category or
subcategory), through class prompts, against chance and the majority class."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from vlalign.report.html import Section
from vlalign.report.plotting import heatmap, new_figure, save
from vlalign.report.queries import CLASSIFICATION, shown
from vlalign.report.rows import mean, over_seeds, pair_name, sort_key
from vlalign.report.rundata import RunData
from vlalign.report.study import Page
from vlalign.report.tables import NOT_IN_SPEC, as_int, missing, narrow_table, pct

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
    """classification.png: a heat map per label field, accuracy per encoder pair (rows) and method (columns),
    chance and majority class in the panel's title."""
    fields = sorted({r["label_field"] for r in d.classification if r["accuracy"] is not None})
    if not fields:
        return []
    pairs = sorted({pair_name(r) for r in d.classification})
    methods = sorted({r["method"] for r in d.classification})
    fig, axes = new_figure(3.2 + len(fields) * (0.95 * len(methods) + 0.3), 1.4 + 0.27 * len(pairs), ncols=len(fields))
    stats = over_seeds(d.classification, lambda r: (r["label_field"], pair_name(r), r["method"]),
                       extra=("chance", "majority", "n_classes"))
    top = 100 * max(st["mean"] for st in stats.values())
    for k, (ax, lf) in enumerate(zip(axes, fields)):
        grid = [[100 * stats[(lf, p, m)]["mean"] if (lf, p, m) in stats else np.nan for m in methods] for p in pairs]
        im = heatmap(ax, grid, pairs, methods, [[f"{x:.1f}" if x == x else "" for x in row] for row in grid],
                     vmax=top, rotate=True)
        st = [s for (f, _, _), s in stats.items() if f == lf]
        chance, majority = (mean(s[c] for s in st if s[c] is not None) if any(s[c] is not None for s in st) else None
                            for c in ("chance", "majority"))
        ncls = next((s["n_classes"] for s in st if s["n_classes"]), None)
        ax.set_title(f"{lf}" + (f" ({ncls:.0f} classes)" if ncls else "")
                     + f"\nchance {pct(chance)}, majority class {pct(majority)}")
        ax.set_xlabel("method")
        if k == 0:
            ax.set_ylabel("vision x text encoder")
        else:
            ax.set_yticks(range(len(pairs)), [""] * len(pairs))
    fig.colorbar(im, ax=axes, label="accuracy (%)", shrink=0.9)
    fig.suptitle("Zero-shot classification accuracy (%): mean over seeds", x=0.01, ha="left")
    return [save(fig, out / "classification.png")]


def section(d: RunData, page: Page) -> Section:
    items = page.figure("classification.png", "Zero-shot classification",
                        "mean over seeds, in %; chance and the majority class in each panel's title")
    if d.classification:
        stats = over_seeds(d.classification, lambda r: (r["label_field"], r["template_set"], r["dataset"], pair_name(r),
                                                        r["method"]), extra=("chance", "majority", "n_classes", "n"))
        items.append(narrow_table("Classification accuracy over seeds (best first in each label field)",
                                  ["label field", "templates", "dataset", "pair", "method", "classes", "n", "seeds",
                                   "mean (%)", "min (%)", "max (%)", "chance (%)", "majority (%)"],
                                  [(*k, as_int(st["n_classes"]), as_int(st["n"]), st["seeds"], st["mean"], st["min"],
                                    st["max"], st["chance"], st["majority"])
                                   for k, st in sorted(stats.items(), key=lambda kv: (kv[0][0], -kv[1]["mean"],
                                                                                      sort_key(kv[0][1:])))],
                                  sql=shown(CLASSIFICATION, run_id=d.run_id)))
        notes = [r for r in d.classification if r["accuracy"] is None]
        if notes:
            items.append(narrow_table("Classification rows without an accuracy",
                                      ["label field", "pair", "method", "seed", "note"],
                                      [(r["label_field"], pair_name(r), r["method"], r["seed"], r["note"])
                                       for r in notes]))
    else:
        items.append(missing(d, bool(d.spec and d.spec.classification)))
    return Section("Classification", items, intro="Zero-shot classification of the images by the emoji "
                   "category (label) or subcategory (sublabel), through class prompts.")
