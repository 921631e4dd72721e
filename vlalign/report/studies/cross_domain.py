"""Cross-domain: matching with the base pairs from one visual domain and the queries from another, next to the
same-domain (main-grid) result of each end."""

from __future__ import annotations

from pathlib import Path

from vlalign.report.html import Section
from vlalign.report.plotting import grouped_bars, legend, new_figure, save
from vlalign.report.rows import over_seeds, pair_name, route
from vlalign.report.rundata import RunData
from vlalign.report.study import Page
from vlalign.report.tables import NOT_IN_SPEC, missing, narrow_table, pct

SUMMARY_RANK = 40


def _data(d: RunData):
    """(the cross-domain rows, their same-domain reference rows, the routes in order, stats {(route, method): ...})."""
    cross = [r for r in d.matching if d.plan.is_cross_domain(r)]
    ref = [r for r in d.matching if d.plan.cross_domain_reference(r)]
    stats = over_seeds(cross, lambda r: (route(r), r["method"]))
    stats.update(over_seeds(ref, lambda r: (f"{r['domain']}->{r['domain']}", r["method"])))
    routes = []
    for b, q in d.plan.cross_domain_routes() or sorted({(r["base_domain"], r["query_domain"]) for r in cross}):
        for label in (f"{b}->{b}", f"{q}->{q}", f"{b}->{q}"):
            if label not in routes and any(k[0] == label for k in stats):
                routes.append(label)
    return cross, ref, routes, stats


def lines(d: RunData, top: int) -> list[str]:
    """One line per route: accuracy per method, the same-domain accuracy of each end beside it."""
    cross = [r for r in d.matching if d.plan.is_cross_domain(r)]
    if not cross:
        return [f"  cross-domain: {'no results' if d.plan.cross_domain_routes() else NOT_IN_SPEC}"] if d.spec else []
    stats = over_seeds(cross, lambda r: (r["base_domain"], r["query_domain"], r["method"]))
    ref = over_seeds([r for r in d.matching if d.plan.cross_domain_reference(r)], lambda r: (r["domain"], r["method"]))
    out = []
    for b, q in sorted({(b, q) for b, q, _ in stats}):
        accs = ", ".join(f"{m} {pct(st['mean'])}" for (bb, qq, m), st in sorted(stats.items()) if (bb, qq) == (b, q))
        same = []
        for dom in dict.fromkeys((b, q)):
            xs = ", ".join(f"{m} {pct(st['mean'])}" for (dd, m), st in sorted(ref.items()) if dd == dom)
            if xs:
                same.append(f"{dom}->{dom}: {xs}")
        out.append(f"  cross-domain {b}->{q}: {accs}" + (f"  (same domain {'; '.join(same)})" if same else ""))
    return out


def figures(d: RunData, out: Path) -> list[str]:
    """cross_domain.png: accuracy per route and method, the same-domain routes beside the cross-domain ones."""
    cross, _, routes, stats = _data(d)
    if not cross or not stats:
        return []
    methods = sorted({m for _, m in stats})
    fig, (ax,) = new_figure(1.6 + max(6.0, 0.5 * len(routes) * len(methods) + 2), 4.0)
    grouped_bars(ax, routes, methods, stats,
                 labels=[f"{r}\n(same domain)" if r.split("->")[0] == r.split("->")[1] else r for r in routes])
    ax.set_title("Cross-domain matching: base domain -> query domain\nmean over pairs; error bars min-max over seeds",
                 fontsize=9)
    legend(ax)
    return [save(fig, out / "cross_domain.png")]


def section(d: RunData, page: Page) -> Section:
    items = page.figure("cross_domain.png", "Cross-domain vs same-domain matching",
                        "base domain -> query domain; mean over pairs, error bars min-max over seeds")
    cross, ref, routes, _ = _data(d)
    if cross:
        stats = over_seeds(cross, lambda r: (route(r), r["lang"], pair_name(r), r["method"]))
        stats.update(over_seeds(ref, lambda r: (f"{r['domain']}->{r['domain']}", r["lang"], pair_name(r), r["method"])))
        items.append(narrow_table("Matching accuracy per domain route, pair and method",
                                  ["route", "lang", "pair", "method", "seeds", "mean", "min", "max", "chance"],
                                  [(*k, st["seeds"], st["mean"], st["min"], st["max"], st["chance"])
                                   for k, st in sorted(stats.items(), key=lambda kv: (
                                       routes.index(kv[0][0]) if kv[0][0] in routes else 99, kv[0][1:]))],
                                  note="A same-domain route (d->d) is the main grid's result for that domain."))
    else:
        items.append(missing(d, bool(d.spec and d.spec.cross_domain)))
    return Section("Cross-domain", items, intro="Matching with the base pairs from one visual domain and the "
                   "queries from another, next to the same-domain result.")
