"""Retrieval: recall at 1/5/10 of image->text and text->image retrieval through the matching methods. Its
tables show in the Matching section (vlalign.report.studies.matching), between the main grid and the rows in
no study."""

from __future__ import annotations

from pathlib import Path

from vlalign.report.rows import over_seeds, pair_name, route, setting_cols
from vlalign.report.rundata import RunData
from vlalign.report.study import Page
from vlalign.report.tables import direction, narrow_table, pct, sort_key

SUMMARY_RANK = 30


def lines(d: RunData, top: int) -> list[str]:
    """One line per method: main-grid R@1 per direction (mean over pairs) and the best pair."""
    main = [r for r in d.retrieval if d.plan.is_main(r)]
    stats = over_seeds(main, lambda r: (r["method"], r["direction"]), value="r1", extra=())
    best = over_seeds(main, lambda r: (r["method"], pair_name(r)), value="r1", extra=())
    out = []
    for method in sorted({m for m, _ in stats}):
        dirs = ", ".join(f"{direction(dr)} {pct(st['mean'])}"
                         for (m, dr), st in sorted(stats.items()) if m == method)
        top_pair = max(((p, st) for (m, p), st in best.items() if m == method), key=lambda x: x[1]["mean"])
        out.append(f"  retrieval {method}: R@1 {dirs} (mean over pairs; best {top_pair[0]} {pct(top_pair[1]['mean'])})")
    return out


def figures(d: RunData, out: Path) -> list[str]:
    return []


def section(d: RunData, page: Page) -> None:
    return None


def tables(d: RunData) -> list:
    """Every retrieval result of the run (mean over seeds), and the results without a recall."""
    if not d.retrieval:
        return []
    rstats = {}
    for col in ("r1", "r5", "r10"):
        for k, st in over_seeds(d.retrieval, lambda r: (d.plan.study(r), r["dataset"], r["lang"], route(r),
                                                       pair_name(r), r["method"], r["direction"], *setting_cols(r)),
                                value=col, extra=()).items():
            rstats.setdefault(k, {})[col] = st
    items = [narrow_table("Retrieval recall at 1/5/10 (every retrieval result of the run, mean over seeds)",
                          ["study", "dataset", "lang", "domains", "pair", "method", "direction", "base", "query",
                           "selection", "stretch", "seeds", "R@1", "R@1 min", "R@1 max", "R@5", "R@10"],
                          [(*k[:6], direction(k[6]), *k[7:], s["r1"]["seeds"], s["r1"]["mean"], s["r1"]["min"],
                            s["r1"]["max"], s.get("r5", {}).get("mean"), s.get("r10", {}).get("mean"))
                           for k, s in sorted(rstats.items(), key=lambda kv: sort_key(kv[0])) if "r1" in s])]
    skipped: dict[tuple, list] = {}
    for r in d.retrieval:
        if r["r1"] is None:
            skipped.setdefault((d.plan.study(r), r["lang"], pair_name(r), r["method"]), [0, r["note"]])[0] += 1
    if skipped:
        items.append(narrow_table("Retrieval results without a recall",
                                  ["study", "lang", "pair", "method", "rows", "note"],
                                  [(*k, n, note) for k, (n, note) in sorted(skipped.items())]))
    return items
