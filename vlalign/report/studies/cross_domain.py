"""Cross-domain: matching with the base pairs from one visual domain and the queries from another, next to the
same-domain (main-grid) result of each end."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from vlalign.report.html import Section
from vlalign.report.plotting import heatmap, new_figure, save
from vlalign.report.queries import MATCHING, Raw, cross_domain, shown
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
from vlalign.report.study import Page
from vlalign.report.tables import NOT_IN_SPEC, chance_pct, grid_labels, missing, narrow_table, pct

SUMMARY_RANK = 40

KEYS = ("base_domain, query_domain, lang, vision_encoder, text_encoder, method, base_size, query_size, base_selection, "
        "stretch, protocol")


def _data(d: RunData):
    """(the cross-domain rows, their same-domain reference rows, the routes in order, stats {(setting, route,
    method): ...})."""
    cross = [r for r in d.matching if d.plan.is_cross_domain(r)]
    ref = [r for r in d.matching if d.plan.cross_domain_reference(r)]
    stats = over_seeds(cross, lambda r: (setting_of(r), route(r), r["method"]))
    stats.update(over_seeds(ref, lambda r: (setting_of(r), f"{r['domain']}->{r['domain']}", r["method"])))
    routes = []
    for b, q in d.plan.cross_domain_routes() or sorted({(r["base_domain"], r["query_domain"]) for r in cross}):
        for label in (f"{b}->{b}", f"{q}->{q}", f"{b}->{q}"):
            if label not in routes and any(k[1] == label for k in stats):
                routes.append(label)
    return cross, ref, routes, stats


def lines(d: RunData, top: int) -> list[str]:
    """One line per route (and grid setting): accuracy per method, the same-domain accuracy of each end beside
    it, chance."""
    cross = [r for r in d.matching if d.plan.is_cross_domain(r)]
    if not cross:
        return [f"  cross-domain: {'no results' if d.plan.cross_domain_routes() else NOT_IN_SPEC}"] if d.spec else []
    stats = over_seeds(cross, lambda r: (setting_of(r), r["base_domain"], r["query_domain"], r["method"]))
    ref = over_seeds([r for r in d.matching if d.plan.cross_domain_reference(r)],
                     lambda r: (setting_of(r), r["domain"], r["method"]))
    labels = grid_labels(d, {k[0] for k in stats})
    out = []
    for setting, label in labels.items():
        for b, q in sorted({(b, q) for s, b, q, _ in stats if s == setting}):
            mine = sorted((m, st) for (s, bb, qq, m), st in stats.items() if (s, bb, qq) == (setting, b, q))
            accs = ", ".join(f"{m} {pct(st['mean'])}" for m, st in mine)
            same = []
            for dom in dict.fromkeys((b, q)):
                xs = ", ".join(f"{m} {pct(st['mean'])}"
                               for (s, dd, m), st in sorted(ref.items(), key=lambda kv: kv[0][1:])
                               if (s, dd) == (setting, dom))
                if xs:
                    same.append(f"{dom}->{dom}: {xs}")
            chance = chance_pct(mine[0][1]["chance"])
            out.append(f"  cross-domain {b}->{q}{f' ({label})' if label else ''}: {accs}  ("
                       + (f"same domain {'; '.join(same)}; " if same else "") + f"chance {chance})")
    return out


def figures(d: RunData, out: Path) -> list[str]:
    """cross_domain.png: accuracy per route (columns: the same-domain routes, then the cross-domain ones) and
    method (rows), a heat map per grid setting."""
    cross, _, routes, stats = _data(d)
    if not cross or not stats:
        return []
    labels = grid_labels(d, {k[0] for k in stats})
    methods = sorted({k[2] for k in stats})
    fig, axes = new_figure(3.0 + 1.2 * len(routes), len(labels) * (0.3 * len(methods) + 1.0) + 0.4, nrows=len(labels))
    top = 100 * max(st["mean"] for st in stats.values())
    same = [r for r in routes if r.split("->")[0] == r.split("->")[1]]
    for ax, (setting, label) in zip(axes, labels.items()):
        grid = [[100 * stats[(setting, rt, m)]["mean"] if (setting, rt, m) in stats else np.nan for rt in routes]
                for m in methods]
        im = heatmap(ax, grid, methods, [f"{rt}\n(same domain)" if rt in same else rt for rt in routes],
                     [[f"{x:.1f}" if x == x else "" for x in row] for row in grid], vmax=top, rotate=False)
        ax.axvline(len(same) - 0.5, color="w", lw=3)
        chance = [st["chance"] for k, st in stats.items() if k[0] == setting and st["chance"] is not None]
        ax.set_title((f"{label}; " if label else "") + f"chance {chance_pct(mean(chance)) if chance else 'n/a'}")
        ax.set_xlabel("base domain -> query domain")
        ax.set_ylabel("method")
    fig.colorbar(im, ax=axes, label="accuracy (%)", shrink=0.9)
    pairs = sorted({pair_name(r) for r in cross})
    fig.suptitle(f"Cross-domain matching accuracy (%): mean over seeds and the pairs\n{', '.join(pairs)}", x=0.01,
                 ha="left")
    return [save(fig, out / "cross_domain.png")]


def section(d: RunData, page: Page) -> Section:
    items = page.figure("cross_domain.png", "Cross-domain vs same-domain matching",
                        "base domain -> query domain; mean over pairs and seeds, in %")
    cross, ref, routes, _ = _data(d)
    if cross:
        def key(r, rt):
            return (rt, r["lang"], pair_name(r), r["method"], *setting_cols(r), r.get("protocol"))

        stats = over_seeds(cross, lambda r: key(r, route(r)))
        stats.update(over_seeds(ref, lambda r: key(r, f"{r['domain']}->{r['domain']}")))
        order = [rt for rt in routes if rt.split("->")[0] != rt.split("->")[1]] + routes  # cross-domain first
        items.append(narrow_table("Matching accuracy per domain route, pair and method (the cross-domain routes "
                                  "first, best first in each route)",
                                  ["route", "lang", "pair", "method", "base", "query", "selection", "stretch",
                                   "protocol", "seeds", "mean (%)", "min (%)", "max (%)", "chance (%)"],
                                  [(*k, st["seeds"], st["mean"], st["min"], st["max"], st["chance"])
                                   for k, st in sorted(stats.items(), key=lambda kv: (
                                       order.index(kv[0][0]) if kv[0][0] in order else 99, -kv[1]["mean"],
                                       sort_key(kv[0][1:])))],
                                  note="A same-domain route (d->d) is the main grid's result for that domain.",
                                  sql=shown(MATCHING, keys=Raw(KEYS), where=cross_domain(d.plan), run_id=d.run_id,
                                            order=Raw("base_domain, query_domain, mean_pct DESC"))))
    else:
        items.append(missing(d, bool(d.spec and d.spec.cross_domain)))
    return Section("Cross-domain", items, intro="Matching with the base pairs from one visual domain and the "
                   "queries from another, next to the same-domain result.")
