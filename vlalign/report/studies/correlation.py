"""Cross-pair analysis: do encoder pairs that are more aligned (CKA) also match better? For every CKA measure
and main-grid matching method, the Pearson and Spearman correlations over the encoder pairs, and the scatter."""

from __future__ import annotations

import math
import warnings
from pathlib import Path

from vlalign.report.html import Section, Table
from vlalign.report.plotting import new_figure, save
from vlalign.report.rows import mean, measure_name, over_seeds, pair_name
from vlalign.report.rundata import RunData
from vlalign.report.study import Page
from vlalign.report.tables import missing

SUMMARY_RANK = 35  # no lines

CORRELATION_KEYS = ("measure", "method", "n_pairs", "pearson_r", "pearson_p", "spearman_rho", "spearman_p")


def correlation_points(d: RunData) -> list[dict]:
    """Per (measure, method): the encoder pairs with both a CKA value (mean over the run's CKA rows of the pair)
    and a main-grid matching accuracy (mean over seeds), and the correlations between them (computed once per
    report, kept with the cached figures)."""
    return d.derive("correlation_points", _points)


def _points(d: RunData) -> list[dict]:
    from scipy import stats as sst  # heavy: only when the correlations are computed (not for a cached report)

    acc = over_seeds(d.main, lambda r: (r["method"], pair_name(r)))
    methods = sorted({m for m, _ in acc})
    out = []
    for kernel, debiased in d.measures:
        cka = {pair_name(r): r["v"] for r in d.cka_grid if (r["kernel"], bool(r["debiased"])) == (kernel, debiased)
               and r["v"] is not None and not math.isnan(r["v"])}
        for method in methods:
            pairs = sorted(p for p in cka if (method, p) in acc)
            xs = [cka[p] for p in pairs]
            ys = [acc[(method, p)]["mean"] for p in pairs]
            row = dict(measure=measure_name(kernel, debiased), method=method, n_pairs=len(pairs), pearson_r=None,
                       pearson_p=None, spearman_rho=None, spearman_p=None)
            if len(pairs) >= 3 and len(set(xs)) > 1 and len(set(ys)) > 1:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    pr, sr = sst.pearsonr(xs, ys), sst.spearmanr(xs, ys)
                row.update(pearson_r=_num(pr.statistic), pearson_p=_num(pr.pvalue),
                           spearman_rho=_num(sr.statistic), spearman_p=_num(sr.pvalue))
            out.append({**row, "pairs": pairs, "x": xs, "y": ys, "y_stats": [acc[(method, p)] for p in pairs],
                        "kernel": kernel, "debiased": debiased})
    return out


def _num(x) -> float | None:
    x = float(x)
    return None if math.isnan(x) else x


def correlations_of(d: RunData) -> list[dict]:
    """The correlations alone: one dict of CORRELATION_KEYS per (measure, method)."""
    return [{k: c[k] for k in CORRELATION_KEYS} for c in correlation_points(d)]


def _corr_text(c: dict) -> str:
    if c["n_pairs"] < 3:
        return f"{c['n_pairs']} pair{'s' if c['n_pairs'] != 1 else ''}: too few for a correlation"
    if c["pearson_r"] is None:
        return f"{c['n_pairs']} pairs: constant values, no correlation"
    return (f"r={c['pearson_r']:.2f} (p={c['pearson_p']:.2g}), rho={c['spearman_rho']:.2f} (p={c['spearman_p']:.2g}), "
            f"n={c['n_pairs']}")


def _scatter_method(points: list[dict]) -> str | None:
    """The method the scatter shows: qap when the run has it, else the most accurate one."""
    methods = sorted({c["method"] for c in points})
    if not methods:
        return None
    if "qap" in methods:
        return "qap"
    return max(methods, key=lambda m: mean(y for c in points if c["method"] == m for y in c["y"]) if any(
        c["y"] for c in points if c["method"] == m) else -1)


def lines(d: RunData, top: int) -> list[str]:
    return []


def figures(d: RunData, out: Path) -> list[str]:
    """scatter.png: one panel per measure, CKA against the scatter method's accuracy (bars min-max over seeds)."""
    points = correlation_points(d)
    method = _scatter_method(points)
    chosen = [c for c in points if c["method"] == method]
    if not chosen or not any(c["n_pairs"] for c in chosen):
        return []
    fig, axes = new_figure(4.2 * len(chosen), 4.0, ncols=len(chosen))
    for ax, c in zip(axes, chosen):
        xs, ys = c["x"], [100 * y for y in c["y"]]
        lo = [100 * (s["mean"] - s["min"]) for s in c["y_stats"]]
        hi = [100 * (s["max"] - s["mean"]) for s in c["y_stats"]]
        ax.errorbar(xs, ys, yerr=[lo, hi], fmt="o", capsize=2, color="tab:blue")
        for x, y, p in zip(xs, ys, c["pairs"]):
            ax.annotate(p, (x, y), fontsize=6, xytext=(3, 3), textcoords="offset points")
        ax.margins(x=0.3, y=0.15)
        ax.set_xlabel(c["measure"] if c["measure"].startswith("mutual") else f"CKA {c['measure']}")
        ax.set_ylabel(f"{method} accuracy (%)")
        ax.set_title(f"{c['measure']} vs {method}\n{_corr_text(c)}", fontsize=8)
        ax.grid(alpha=0.3)
    return [save(fig, out / "scatter.png")]


def section(d: RunData, page: Page) -> Section:
    points = correlation_points(d)
    items = page.figure("scatter.png", "CKA vs matching accuracy over the encoder pairs",
                        f"one panel per measure; y: {_scatter_method(points)} accuracy, mean over seeds (bars min-max)")
    if points:
        items.append(Table("Correlation of CKA with main-grid matching accuracy over the encoder pairs",
                           ["measure", "method", "pairs", "Pearson r", "p", "Spearman rho", "p (rho)"],
                           [tuple(c[k] for k in CORRELATION_KEYS) for c in points],
                           note="Fewer than 3 pairs, or constant values: no correlation (empty cells)."))
        measures = list(dict.fromkeys(c["measure"] for c in points))
        methods = list(dict.fromkeys(c["method"] for c in points))
        all_pairs = sorted({p for c in points for p in c["pairs"]})
        val = {(c["measure"], p): x for c in points for p, x in zip(c["pairs"], c["x"])}
        acc = {(c["method"], p): y for c in points for p, y in zip(c["pairs"], c["y"])}
        items.append(Table("The values correlated, per encoder pair",
                           ["pair", *[f"CKA {m}" for m in measures], *[f"{m} accuracy" for m in methods]],
                           [(p, *[val.get((m, p)) for m in measures], *[acc.get((m, p)) for m in methods])
                            for p in all_pairs]))
    else:
        items.append("Needs CKA and main-grid matching results: "
                     + missing(d, bool(d.spec and d.spec.cka and d.spec.has_matching)))
    return Section("Cross-pair analysis", items, intro="Do encoder pairs that are more aligned (CKA) also match "
                   "better?")
