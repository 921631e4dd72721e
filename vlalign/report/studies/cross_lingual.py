"""Cross-lingual: matching with the captions in other languages, next to the main language; English-only text
encoders are skipped, with the reason."""

from __future__ import annotations

from pathlib import Path

from vlalign.report.html import Section
from vlalign.report.plotting import grouped_bars, legend, new_figure, save
from vlalign.report.rows import over_seeds, pair_name, skip_reason
from vlalign.report.rundata import RunData
from vlalign.report.study import Page
from vlalign.report.tables import NOT_IN_SPEC, missing, narrow_table, pct

SUMMARY_RANK = 50


def _data(d: RunData):
    """(rows of the study and its main-language reference, langs in order, the pairs computed in some study
    language, stats {(lang, method): ...} over those pairs)."""
    cl = d.spec.cross_lingual if d.spec else None
    if not cl:
        return [], [], [], {}
    rows = [r for r in d.matching if d.plan.is_cross_lingual(r, with_main=True)]
    main = sorted({r["lang"] for r in rows if d.plan.is_main(r)} - set(cl.langs))
    langs = main + [lg for lg in cl.langs if any(r["lang"] == lg for r in rows)]
    computed = sorted({pair_name(r) for r in rows if r["lang"] in cl.langs and r["accuracy"] is not None})
    stats = over_seeds([r for r in rows if pair_name(r) in computed], lambda r: (r["lang"], r["method"]))
    return rows, langs, computed, stats


def lines(d: RunData, top: int) -> list[str]:
    """One line per study language: each text encoder's best method (the main languages beside it), and the
    text encoders skipped, with the reason."""
    cl = d.spec.cross_lingual if d.spec else None
    if not cl:
        return [f"  cross-lingual: {NOT_IN_SPEC}"] if d.spec else []
    rows = [r for r in d.matching if d.plan.is_cross_lingual(r, with_main=True)]
    main_langs = sorted({r["lang"] for r in rows if d.plan.is_main(r)} - set(cl.langs))
    stats = over_seeds(rows, lambda r: (r["lang"], r["text_encoder"], r["method"]))
    out = []
    for lang in cl.langs:
        mine = [r for r in rows if r["lang"] == lang]
        if not mine:
            out.append(f"  cross-lingual {lang}: no results")
            continue
        parts = []
        for t in sorted({r["text_encoder"] for r in mine if r["accuracy"] is not None}):
            cand = [(m, st) for (lg, tt, m), st in stats.items() if lg == lang and tt == t]
            m, st = max(cand, key=lambda x: x[1]["mean"])
            ref = "; ".join(f"{ml} {pct(stats[(ml, t, m)]['mean'])}" for ml in main_langs if (ml, t, m) in stats)
            parts.append(f"{t} best {m} {pct(st['mean'])}" + (f" ({ref})" if ref else ""))
        skipped = [r for r in mine if r["accuracy"] is None and r.get("note")]
        why = {}
        for r in skipped:
            why.setdefault(r["text_encoder"], skip_reason(r["note"]))
        skip = (f"; skipped {len(why)} text encoder(s), {len(skipped)} rows: "
                + ", ".join(f"{t} ({w})" for t, w in sorted(why.items()))) if why else ""
        out.append(f"  cross-lingual {lang}: " + (", ".join(parts) or "no encoder computed") + skip)
    return out


def figures(d: RunData, out: Path) -> list[str]:
    """cross_lingual.png: accuracy per caption language and method, over the pairs computed in the study."""
    _, langs, computed, stats = _data(d)
    if not stats:
        return []
    methods = sorted({m for _, m in stats})
    main = set(langs) - set(d.spec.cross_lingual.langs)
    fig, (ax,) = new_figure(1.6 + max(6.0, 0.5 * len(langs) * len(methods) + 2), 4.0)
    grouped_bars(ax, langs, methods, stats, labels=[f"{lg} (main)" if lg in main else lg for lg in langs])
    ax.set_title(f"Cross-lingual matching per caption language\n{', '.join(computed)}; error bars min-max over seeds",
                 fontsize=9)
    legend(ax)
    return [save(fig, out / "cross_lingual.png")]


def section(d: RunData, page: Page) -> Section:
    items = page.figure("cross_lingual.png", "Accuracy per caption language",
                        "mean over the encoder pairs computed in the study's languages and seeds; error bars min-max "
                        "over seeds")
    rows, langs, _, _ = _data(d)
    if rows:
        stats = over_seeds(rows, lambda r: (r["lang"], pair_name(r), r["method"]))
        notes = {}
        for r in rows:
            if r["accuracy"] is None and r.get("note"):
                notes.setdefault((r["lang"], pair_name(r), r["method"]), [0, r["note"]])[0] += 1
        keys = sorted(set(stats) | set(notes), key=lambda k: (langs.index(k[0]) if k[0] in langs else 99, k[1:]))
        main_langs = set(langs) - set(d.spec.cross_lingual.langs)
        items.append(narrow_table("Matching accuracy per language, pair and method",
                                  ["lang", "pair", "method", "seeds", "mean", "min", "max", "chance", "note"],
                                  [(f"{k[0]} (main)" if k[0] in main_langs else k[0], k[1], k[2],
                                    stats[k]["seeds"] if k in stats else 0,
                                    *((stats[k][c] for c in ("mean", "min", "max", "chance")) if k in stats
                                      else (None,) * 4),
                                    f"skipped ({notes[k][0]} rows): {skip_reason(notes[k][1])}" if k in notes else None)
                                   for k in keys],
                                  note=(f"A skipped row's note in full: {next(iter(notes.values()))[1]}" if notes
                                        else "")))
    else:
        items.append(missing(d, bool(d.spec and d.spec.cross_lingual)))
    return Section("Cross-lingual", items, intro="Matching with the captions in other languages (the main "
                   "language next to them); English-only text encoders are skipped, with the reason.")
