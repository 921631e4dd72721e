"""Curves: matching accuracy as the base and the query set grow (the rest of the setting the spec's first), and
the stretch x base selection ablation, for the curves' encoder pairs and methods."""

from __future__ import annotations

from pathlib import Path

from vlalign.report.html import FigureRow, Section
from vlalign.report.plotting import colors, grouped_bars, new_figure, save
from vlalign.report.queries import MATCHING, Raw, curve_rows, shown
from vlalign.report.rows import over_seeds, pair_name, setting_cols, sort_key
from vlalign.report.rundata import RunData
from vlalign.report.study import Page
from vlalign.report.tables import NOT_IN_SPEC, chance_pct, missing, narrow_table, pct

SUMMARY_RANK = 70

POINT_KEYS = "base_size, query_size, base_selection, stretch, method"
KIND_NAMES = {"base_size": "base size", "query_size": "query size", "ablation": "ablation"}


def curve_points(d: RunData) -> dict[tuple, dict]:
    """{(kind, method, x): stats over seeds} for kind base_size (x = base size), query_size (x = query size) and
    ablation (x = (base_selection, stretch)); the curve's encoder pairs averaged within each seed."""
    out = {}
    for kind, x in (("base_size", lambda r: r["base_size"]), ("query_size", lambda r: r["query_size"]),
                    ("ablation", lambda r: (r["base_selection"], r["stretch"]))):
        rows = [r for r in d.matching if kind in d.plan.curve_kinds(r)]
        for (m, xv), st in over_seeds(rows, lambda r, x=x: (r["method"], x(r))).items():
            out[(kind, m, xv)] = st
    return out


def _pairs(d: RunData) -> list[str]:
    return sorted({pair_name(r) for r in d.matching if d.plan.curve_kinds(r)})


def lines(d: RunData, top: int) -> list[str]:
    """One line: each curve's first and last point per method (chance beside), the ablation's best and worst."""
    cv = d.spec.curves if d.spec else None
    if not cv:
        return [f"  curves: {NOT_IN_SPEC}"] if d.spec else []
    pts = curve_points(d)
    if not pts:
        return ["  curves: no results"]
    parts = []
    for kind, axis in (("base_size", "base"), ("query_size", "query")):
        st = {k: v for k, v in pts.items() if k[0] == kind}
        if not st:
            continue
        xs = sorted({k[2] for k in st})
        methods = sorted({k[1] for k in st})
        ends = [next((v["chance"] for k, v in st.items() if k[2] == x and v["chance"] is not None), None)
                for x in (xs[0], xs[-1])]
        chance = chance_pct(ends[0]) if ends[0] == ends[1] else f"{chance_pct(ends[0])}->{chance_pct(ends[1])}"
        parts.append(f"{axis} {xs[0]}->{xs[-1]}: " + ", ".join(
            f"{m} {pct(st[(kind, m, xs[0])]['mean']) if (kind, m, xs[0]) in st else 'n/a'}->"
            f"{pct(st[(kind, m, xs[-1])]['mean']) if (kind, m, xs[-1]) in st else 'n/a'}" for m in methods)
            + f" (chance {chance})")
    abl = {k: v for k, v in pts.items() if k[0] == "ablation"}
    if abl:
        (_, m, (sel, stretch)), st = max(abl.items(), key=lambda x: x[1]["mean"])
        worst = min(abl.items(), key=lambda x: x[1]["mean"])
        parts.append(f"ablation best {m} {sel}{'+stretch' if stretch else ''} {pct(st['mean'])}, worst "
                     f"{worst[0][1]} {worst[0][2][0]}{'+stretch' if worst[0][2][1] else ''} {pct(worst[1]['mean'])} "
                     f"(chance {chance_pct(st['chance'])})")
    return [f"  curves ({', '.join(_pairs(d))}): " + "; ".join(parts)]


def figures(d: RunData, out: Path) -> list[str]:
    """curves.png (accuracy vs base size and vs query size, band min-max over seeds) and ablation.png."""
    pts = curve_points(d)
    written = []
    kinds = [k for k in ("base_size", "query_size") if any(p[0] == k for p in pts)]
    if kinds:
        written.append(_plot_curves(d, pts, kinds, out))
    abl = {(p[2], p[1]): st for p, st in pts.items() if p[0] == "ablation"}
    if abl:
        groups = sorted({g for g, _ in abl}, key=lambda g: (g[0], g[1]))
        methods = sorted({m for _, m in abl})
        fig, (ax,) = new_figure(2.2 + 0.35 * len(groups) * max(1, len(methods)), 3.0)
        grouped_bars(ax, groups, methods, abl, labels=[f"{s}\n{'stretch' if st else 'no stretch'}" for s, st in groups])
        chance = [st["chance"] for st in abl.values() if st["chance"] is not None]
        if chance:
            ax.axhline(100 * chance[0], color="k", ls="--", lw=1, label=f"chance {chance_pct(chance[0])}")
        ax.set_xlabel("base selection, stretch")
        ax.set_title(f"Ablation (base {d.plan.first.base_size}, query {d.plan.first.query_size})\n"
                     "bars: mean, error bars: min-max over seeds")
        fig.legend(loc="outside lower center", ncols=len(methods) + 1)
        written.append(save(fig, out / "ablation.png"))
    return written


def _plot_curves(d: RunData, pts: dict[tuple, dict], kinds: list[str], out: Path) -> str:
    chance = over_seeds([r for r in d.matching if d.plan.curve_kinds(r)], lambda r: (r["base_size"], r["query_size"]))
    fig, axes = new_figure(3.4 * len(kinds), 3.0, ncols=len(kinds))
    f = d.plan.first
    for ax, kind in zip(axes, kinds):
        methods = sorted({p[1] for p in pts if p[0] == kind})
        for m, color in zip(methods, colors(len(methods))):
            xs = sorted(p[2] for p in pts if p[0] == kind and p[1] == m)
            st = [pts[(kind, m, x)] for x in xs]
            ax.plot(xs, [100 * s["mean"] for s in st], marker="o", color=color, label=m)
            ax.fill_between(xs, [100 * s["min"] for s in st], [100 * s["max"] for s in st], color=color, alpha=0.2)
        xs = sorted({p[2] for p in pts if p[0] == kind})
        ch = [chance.get((x, f.query_size) if kind == "base_size" else (f.base_size, x), {}).get("chance") for x in xs]
        if all(c is not None for c in ch):
            ax.plot(xs, [100 * c for c in ch], color="k", ls="--", lw=1, label="chance")
        ax.set_xscale("log")
        ax.set_xticks(xs, [str(x) for x in xs])
        ax.minorticks_off()
        fixed = f"query size {f.query_size}" if kind == "base_size" else f"base size {f.base_size}"
        ax.set_xlabel(kind.replace("_", " "))
        ax.set_ylabel("accuracy (%)")
        ax.set_title(f"accuracy vs {kind.replace('_', ' ')} ({fixed})")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(f"{', '.join(_pairs(d))}: mean over seeds, band min-max over seeds", x=0.01, ha="left")
    return save(fig, out / "curves.png")


def section(d: RunData, page: Page) -> Section:
    figs = [*page.figure("curves.png", "Accuracy vs base size and vs query size",
                         "mean over seeds, band min-max over seeds, dashed: chance"),
            *page.figure("ablation.png", "Ablation: stretch x base selection", "dashed: chance")]
    items: list = [FigureRow(figs)] if figs else []
    rows = [r for r in d.matching if d.plan.curve_kinds(r)]
    if rows:
        stats = over_seeds(rows, lambda r: (*setting_cols(r), r["method"]))
        on = {}
        for r in rows:
            on.setdefault((*setting_cols(r), r["method"]), set()).update(d.plan.curve_kinds(r))
        items.append(narrow_table("Curve and ablation points: accuracy per setting and method",
                                  ["base", "query", "selection", "stretch", "method", "on", "seeds", "mean (%)",
                                   "min (%)", "max (%)", "chance (%)"],
                                  [(*k, ", ".join(KIND_NAMES[x] for x in KIND_NAMES if x in on[k]), st["seeds"],
                                    st["mean"], st["min"], st["max"], st["chance"])
                                   for k, st in sorted(stats.items(), key=lambda kv: sort_key(kv[0]))],
                                  note="on: the curves a setting is a point of (the spec's first setting is a point "
                                       "of all three, and a main-grid row).",
                                  sql=shown(MATCHING, keys=Raw(POINT_KEYS), run_id=d.run_id, where=curve_rows(d.plan),
                                            order=Raw(POINT_KEYS))))
    else:
        items.append(missing(d, bool(d.spec and d.spec.curves)))
    pairs = _pairs(d)
    return Section("Curves", items, intro=("Matching accuracy as the base and the query set grow, and the stretch "
                                           "x selection ablation" + (f" ({', '.join(pairs)})." if pairs else ".")))


