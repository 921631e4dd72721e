"""Concepts: concept alignment (Li et al.): each concept's mean image embedding mapped by Procrustes onto its
aliases' text embeddings, k-fold over concepts, against random-orthogonal and shuffled-dictionary maps; P@k
overall and by concept property."""

from __future__ import annotations

from pathlib import Path

from vlalign.report.html import Section
from vlalign.report.plotting import new_figure, save
from vlalign.report.queries import CONCEPT_BREAKDOWN, shown
from vlalign.report.rows import pair_name
from vlalign.report.rundata import RunData
from vlalign.report.study import Page
from vlalign.report.tables import missing, narrow_table, pct

SUMMARY_RANK = 80


def lines(d: RunData, top: int) -> list[str]:
    """One line per (vision, text) pair: P@1/10/100 of Procrustes by NN and CSLS, and the baselines' best P@10."""
    out = []
    pairs = dict.fromkeys((r["vision_encoder"], r["text_encoder"]) for r in d.concepts)
    for v, t in pairs:
        rs = [r for r in d.concepts if (r["vision_encoder"], r["text_encoder"]) == (v, t) and r["p_at_1"] is not None]
        main = [f"{r['retrieval']} P@1/10/100 {pct(r['p_at_1'])}/{pct(r['p_at_10'])}/{pct(r['p_at_100'])}"
                for r in rs if r["mapping"] == "procrustes"]
        base = [r["p_at_10"] for r in rs if r["mapping"] != "procrustes"]
        n = rs[0]["n_concepts"] if rs else 0
        out.append(f"  concepts {v} x {t} ({n} concepts): procrustes " + ", ".join(main)
                   + (f"; baselines P@10 at most {pct(max(base))}" if base else ""))
    return out


def figures(d: RunData, out: Path) -> list[str]:
    """P@10 of Procrustes against each concept property's bins, one panel per property, a line per pair x retrieval."""
    rows = [r for r in d.concept_breakdown if r["mapping"] == "procrustes" and r["p_at_10"] is not None]
    props = list(dict.fromkeys(r["property"] for r in rows))
    if not props:
        return []
    fig, axes = new_figure(4.2 * len(props), 3.4, ncols=len(props))
    for ax, prop in zip(axes, props):
        sub = [r for r in rows if r["property"] == prop]
        for key in dict.fromkeys((r["vision_encoder"], r["text_encoder"], r["retrieval"]) for r in sub):
            rs = sorted((r for r in sub if (r["vision_encoder"], r["text_encoder"], r["retrieval"]) == key),
                        key=lambda r: r["bin"])
            ax.plot([f"{r['low']:.2g}-{r['high']:.2g}" for r in rs], [100 * r["p_at_10"] for r in rs], marker="o",
                    label=f"{key[0]} x {key[1]} ({key[2]})")
        ax.set_title(f"P@10 by {prop.replace('_', ' ')} (bins)")
        ax.set_xlabel(prop.replace("_", " "))
        ax.set_ylabel("P@10 (%)")
        ax.grid(alpha=0.3)
    axes[0].legend()
    return [save(fig, out / "concepts.png")]


def section(d: RunData, page: Page) -> Section:
    items: list = []
    if d.concepts:
        items += page.figure("concepts.png", "Concept alignment by concept property")
        items.append(narrow_table("Concept alignment (k-fold; hit: any alias of the concept in the top k)",
                                  ["pair", "mapping", "retrieval", "seed", "concepts", "aliases", "P@1 (%)", "P@10 (%)",
                                   "P@100 (%)", "note"],
                                  [(pair_name(r), r["mapping"], r["retrieval"], r["seed"], r["n_concepts"],
                                    r["n_aliases"], r["p_at_1"], r["p_at_10"], r["p_at_100"], r["note"])
                                   for r in d.concepts],
                                  note="The random-orthogonal and shuffled-dictionary maps are the chance level."))
        items.append(narrow_table("P@k by concept property (quantile bins)",
                                  ["pair", "mapping", "retrieval", "property", "bin", "low", "high", "n", "missing",
                                   "P@1 (%)", "P@10 (%)", "P@100 (%)", "note"],
                                  [(pair_name(r), r["mapping"], r["retrieval"], r["property"], r["bin"], r["low"],
                                    r["high"], r["n"], r["n_missing"], r["p_at_1"], r["p_at_10"], r["p_at_100"],
                                    r["note"]) for r in d.concept_breakdown],
                                  sql=shown(CONCEPT_BREAKDOWN, run_id=d.run_id)))
    else:
        items.append(missing(d, bool(d.spec and d.spec.concepts)))
    return Section("Concepts", items, intro="Concept alignment (Li et al.): each concept's mean image "
                   "embedding mapped by Procrustes onto its aliases' text embeddings, k-fold over concepts; "
                   "random-orthogonal and shuffled-dictionary maps are the baselines.")
