"""Retrieval: recall at 1/5/10 of image->text and text->image retrieval through the matching methods. Its
tables show in the Matching section (vlalign.report.studies.matching), between the main grid and the rows in
no study."""

from __future__ import annotations

from pathlib import Path

from vlalign.report.queries import RETRIEVAL, Raw, main_grid, shown
from vlalign.report.rows import (
    over_seeds,
    pair_name,
    route,
    setting_cols,
    setting_of,
    skip_reason,
    sort_key,
)
from vlalign.report.rundata import RunData
from vlalign.report.study import Page
from vlalign.report.tables import chance_pct, direction, grid_labels, narrow_table, pct

SUMMARY_RANK = 30


def lines(d: RunData, top: int) -> list[str]:
    """One line per method and grid setting: main-grid R@1 per direction (mean over pairs), the best pair and
    chance (1 / query size: one right caption among the query set's)."""
    main = [r for r in d.retrieval if d.plan.is_main(r)]
    stats = over_seeds(main, lambda r: (setting_of(r), r["method"], r["direction"]), value="r1", extra=())
    best = over_seeds(main, lambda r: (setting_of(r), r["method"], pair_name(r)), value="r1", extra=())
    labels = grid_labels(d, {s for s, _, _ in stats})
    out = []
    for setting, label in labels.items():
        for method in sorted({m for s, m, _ in stats if s == setting}):
            dirs = ", ".join(f"{direction(dr)} {pct(st['mean'])}"
                             for (s, m, dr), st in sorted(stats.items(), key=lambda kv: sort_key(kv[0]))
                             if (s, m) == (setting, method))
            p, st = max(((p, st) for (s, m, p), st in best.items() if (s, m) == (setting, method)),
                        key=lambda x: x[1]["mean"])
            name = f"{method} ({label})" if label else method
            out.append(f"  retrieval {name}: R@1 {dirs} (mean over pairs; best {p} {pct(st['mean'])}; chance "
                       f"{chance_pct(1 / setting[1]) if setting[1] else 'n/a'})")
    return out


def figures(d: RunData, out: Path) -> list[str]:
    return []


def section(d: RunData, page: Page) -> None:
    return None


COLUMNS = ["dataset", "lang", "domains", "pair", "method", "direction", "base", "query", "selection", "stretch",
           "seeds", "R@1 (%)", "R@1 min (%)", "R@1 max (%)", "R@5 (%)", "R@10 (%)", "chance R@1 (%)"]
KEYS = ("dataset, lang, base_domain, query_domain, vision_encoder, text_encoder, method, direction, base_size, "
        "query_size, base_selection, stretch")


def _rows(d: RunData, rows: list[dict], study: bool) -> list[tuple]:
    """(study,) dataset, lang, route, pair, method, direction, setting, seeds, R@1 mean/min/max, R@5, R@10 and
    chance, over seeds, best R@1 first."""
    stats: dict = {}
    for col in ("r1", "r5", "r10"):
        for k, st in over_seeds(rows, lambda r: ((d.plan.study(r),) if study else ()) + (
                r["dataset"], r["lang"], route(r), pair_name(r), r["method"], direction(r["direction"]),
                *setting_cols(r)), value=col, extra=()).items():
            stats.setdefault(k, {})[col] = st
    return [(*k, s["r1"]["seeds"], s["r1"]["mean"], s["r1"]["min"], s["r1"]["max"], s.get("r5", {}).get("mean"),
             s.get("r10", {}).get("mean"), 1 / k[-3] if k[-3] else None)
            for k, s in sorted(stats.items(), key=lambda kv: (-kv[1].get("r1", {"mean": -1})["mean"],
                                                               sort_key(kv[0]))) if "r1" in s]


def tables(d: RunData) -> list:
    """The main grid's retrieval results and every other one (mean over seeds, best first), and one line for the
    results without a recall."""
    if not d.retrieval:
        return []
    main = [r for r in d.retrieval if d.plan.is_main(r)]
    other = [r for r in d.retrieval if not d.plan.is_main(r)]
    grid = main_grid(d.plan)
    items = []
    if main:
        items.append(narrow_table("Retrieval recall at 1/5/10 in %, main grid, best first", COLUMNS,
                                  _rows(d, main, False),
                                  sql=shown(RETRIEVAL, keys=Raw(KEYS), where=grid, run_id=d.run_id)))
    if any(r["r1"] is not None for r in other):
        items.append(narrow_table("Retrieval recall at 1/5/10 in %, the other studies, best first", ["study", *COLUMNS],
                                  _rows(d, other, True),
                                  sql=shown(RETRIEVAL, keys=Raw(KEYS), where=Raw(f"NOT ({grid})"), run_id=d.run_id),
                                  top=0))
    skipped: dict[str, dict] = {}
    for r in d.retrieval:
        if r["r1"] is None:
            s = skipped.setdefault(skip_reason(r["note"]), {"rows": 0, "studies": set(), "text": set()})
            s["rows"] += 1
            s["studies"].add(d.plan.study(r))
            s["text"].add(r["text_encoder"])
    for why, s in skipped.items():
        items.append(f"Without a recall: {s['rows']} retrieval results ({', '.join(sorted(s['studies']))}; text "
                     f"encoder{'s' if len(s['text']) > 1 else ''} {', '.join(sorted(s['text']))}): {why}.")
    return items
