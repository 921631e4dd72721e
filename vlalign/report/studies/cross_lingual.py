"""Cross-lingual: matching with the captions in other languages, next to the main language; English-only text
encoders are skipped, with the reason."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from vlalign.report.html import Section
from vlalign.report.plotting import heatmap, new_figure, save
from vlalign.report.queries import MATCHING, Raw, cross_lingual, shown
from vlalign.report.rows import (
    mean,
    over_seeds,
    pair_name,
    setting_cols,
    setting_of,
    skip_reason,
)
from vlalign.report.rundata import RunData
from vlalign.report.study import Page
from vlalign.report.tables import NOT_IN_SPEC, chance_pct, grid_labels, missing, narrow_table, pct

SUMMARY_RANK = 50

KEYS = "lang, vision_encoder, text_encoder, method, base_size, query_size, base_selection, stretch, protocol"


def _data(d: RunData):
    """(rows of the study and its main-language reference, langs in order (the main ones first), the main
    languages, the pairs computed in some study language, stats {(setting, lang, method): ...} over those pairs)."""
    cl = d.spec.cross_lingual if d.spec else None
    if not cl:
        return [], [], set(), [], {}
    rows = [r for r in d.matching if d.plan.is_cross_lingual(r, with_main=True)]
    main = sorted({r["lang"] for r in rows if d.plan.is_main(r)} - set(cl.langs))
    langs = main + [lg for lg in cl.langs if any(r["lang"] == lg for r in rows)]
    computed = sorted({pair_name(r) for r in rows if r["lang"] in cl.langs and r["accuracy"] is not None})
    stats = over_seeds([r for r in rows if pair_name(r) in computed], lambda r: (setting_of(r), r["lang"], r["method"]))
    return rows, langs, set(main), computed, stats


def lines(d: RunData, top: int) -> list[str]:
    """One line per text encoder computed (and grid setting): its best method over the study's languages, that
    method's accuracy in each language and in the main ones, chance; one line for the languages without results
    and one for the text encoders skipped, with the reason."""
    cl = d.spec.cross_lingual if d.spec else None
    if not cl:
        return [f"  cross-lingual: {NOT_IN_SPEC}"] if d.spec else []
    rows = [r for r in d.matching if d.plan.is_cross_lingual(r, with_main=True)]
    main_langs = sorted({r["lang"] for r in rows if d.plan.is_main(r)} - set(cl.langs))
    stats = over_seeds(rows, lambda r: (setting_of(r), r["text_encoder"], r["method"], r["lang"]))
    study = over_seeds([r for r in rows if r["lang"] in cl.langs],
                       lambda r: (setting_of(r), r["text_encoder"], r["method"]))
    labels = grid_labels(d, {k[0] for k in study})
    out = []
    for setting, label in labels.items():
        for t in sorted({k[1] for k in study if k[0] == setting}):
            m, st = max(((k[2], st) for k, st in study.items() if k[:2] == (setting, t)), key=lambda x: x[1]["mean"])
            per = ", ".join(f"{lg} {pct(stats[(setting, t, m, lg)]['mean'])}" for lg in cl.langs
                            if (setting, t, m, lg) in stats)
            ref = ", ".join(f"{lg} (main) {pct(stats[(setting, t, m, lg)]['mean'])}" for lg in main_langs
                            if (setting, t, m, lg) in stats)
            out.append(f"  cross-lingual {t}{f' ({label})' if label else ''}: best method {m}: {per}"
                       + (f"; {ref}" if ref else "") + f"; chance {chance_pct(st['chance'])}")
    none = [lg for lg in cl.langs if not any(r["lang"] == lg for r in rows)]
    if none:
        out.append(f"  cross-lingual {', '.join(none)}: no results")
    skipped = [r for r in rows if r["lang"] in cl.langs and r["accuracy"] is None and r.get("note")]
    if skipped:
        out.append(f"  cross-lingual skipped: {_skipped_text(skipped)}")
    return out


def _skipped_text(skipped: list[dict]) -> str:
    """'<n> rows, text encoder(s) t, u (reason); ..., in <k> language(s) (de, ...)'."""
    why: dict[str, set] = {}
    for r in skipped:
        why.setdefault(skip_reason(r["note"]), set()).add(r["text_encoder"])
    langs = sorted({r["lang"] for r in skipped})
    return (f"{len(skipped)} rows, " + "; ".join(f"text encoder{'s' if len(ts) > 1 else ''} {', '.join(sorted(ts))} "
                                                 f"({w})" for w, ts in sorted(why.items()))
            + f", in {len(langs)} language{'s' if len(langs) > 1 else ''} ({', '.join(langs)})")


def figures(d: RunData, out: Path) -> list[str]:
    """cross_lingual.png: accuracy per caption language (columns, the main ones first) and method (rows), a heat
    map per grid setting, over the pairs computed in the study."""
    _, langs, main, computed, stats = _data(d)
    if not stats:
        return []
    labels = grid_labels(d, {k[0] for k in stats})
    methods = sorted({k[2] for k in stats})
    fig, axes = new_figure(2.6 + 0.75 * len(langs), len(labels) * (0.3 * len(methods) + 0.9) + 0.4, nrows=len(labels))
    top = 100 * max(st["mean"] for st in stats.values())
    for ax, (setting, label) in zip(axes, labels.items()):
        grid = [[100 * stats[(setting, lg, m)]["mean"] if (setting, lg, m) in stats else np.nan for lg in langs]
                for m in methods]
        im = heatmap(ax, grid, methods, [f"{lg} (main)" if lg in main else lg for lg in langs],
                     [[f"{x:.1f}" if x == x else "" for x in row] for row in grid], vmax=top, rotate=False)
        chance = [st["chance"] for k, st in stats.items() if k[0] == setting and st["chance"] is not None]
        ax.set_title((f"{label}; " if label else "") + f"chance {chance_pct(mean(chance)) if chance else 'n/a'}")
        ax.axvline(len(main & set(langs)) - 0.5, color="w", lw=3)
        ax.set_xlabel("caption language")
        ax.set_ylabel("method")
    fig.colorbar(im, ax=axes, label="accuracy (%)", shrink=0.9)
    fig.suptitle(f"Cross-lingual matching accuracy (%): {', '.join(computed)}, mean over seeds", x=0.01, ha="left")
    return [save(fig, out / "cross_lingual.png")]


def section(d: RunData, page: Page) -> Section:
    items = page.figure("cross_lingual.png", "Accuracy per caption language",
                        "mean over the encoder pairs computed in the study's languages and over seeds, in %")
    rows, langs, main_langs, _, _ = _data(d)
    if rows:
        stats = over_seeds(rows, lambda r: (r["lang"], pair_name(r), r["method"], *setting_cols(r), r.get("protocol")))
        keys = sorted(stats, key=lambda k: (-stats[k]["mean"], langs.index(k[0]) if k[0] in langs else 99, k[1:]))
        items.append(narrow_table("Matching accuracy per language, pair and method, best first",
                                  ["lang", "pair", "method", "base", "query", "selection", "stretch", "protocol",
                                   "seeds", "mean (%)", "min (%)", "max (%)", "chance (%)"],
                                  [(f"{k[0]} (main)" if k[0] in main_langs else k[0], *k[1:], stats[k]["seeds"],
                                    *(stats[k][c] for c in ("mean", "min", "max", "chance"))) for k in keys],
                                  sql=shown(MATCHING, keys=Raw(KEYS), where=cross_lingual(d.plan), run_id=d.run_id,
                                            order=Raw("mean_pct DESC"))))
        skipped = [r for r in rows if r["accuracy"] is None and r.get("note")]
        if skipped:
            items.append(f"Skipped: {_skipped_text(skipped)}. A skipped row's note in full: {skipped[0]['note']}")
    else:
        items.append(missing(d, bool(d.spec and d.spec.cross_lingual)))
    return Section("Cross-lingual", items, intro="Matching with the captions in other languages (the main "
                   "language next to them); English-only text encoders are skipped, with the reason.")
