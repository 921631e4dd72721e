"""Cross-pair analysis: do encoder pairs that are more aligned (CKA) also match better? For every CKA measure
and main-grid matching method, the Pearson and Spearman correlations over the encoder pairs, and the scatter."""

from __future__ import annotations

import math
import warnings
from pathlib import Path

from vlalign.report.html import Section
from vlalign.report.plotting import colors, new_figure, save
from vlalign.report.rows import (
    by_setting,
    mean,
    measure_name,
    measure_title,
    over_seeds,
    pair_name,
    setting_text,
)
from vlalign.report.rundata import RunData
from vlalign.report.study import Page
from vlalign.report.tables import grid_labels, missing, narrow_table

SUMMARY_RANK = 35  # no lines

CORRELATION_KEYS = ("measure", "method", "setting", "n_pairs", "pearson_r", "pearson_p", "spearman_rho", "spearman_p")


def correlation_points(d: RunData) -> list[dict]:
    """Per (measure, method, grid setting): the encoder pairs with both a CKA value (mean over the run's CKA rows
    of the pair) and a main-grid matching accuracy (mean over seeds), and the correlations between them (computed
    once per report, kept with the cached figures). ``setting``: the setting's text (vlalign.report.rows)."""
    return d.derive("correlation_points", _points)


def _points(d: RunData) -> list[dict]:
    from scipy import stats as sst  # heavy: only when the correlations are computed (not for a cached report)

    out = []
    groups = by_setting(d.main)
    labels = grid_labels(d, groups)
    for setting, rows in groups.items():
        acc = over_seeds(rows, lambda r: (r["method"], pair_name(r)))
        methods = sorted({m for m, _ in acc})
        for kernel, debiased in d.measures:
            if not (kernel in ("linear", "rbf") or kernel.startswith("mutual_knn")):
                continue  # CKA and mutual kNN only: the other measures' values are in the cka table
            out += [{**c, "label": labels[setting]}
                    for c in _correlate(d, kernel, debiased, methods, acc, setting_text(setting), sst)]
    return out


def _correlate(d: RunData, kernel: str, debiased: bool, methods: list[str], acc: dict, setting: str, sst) -> list:
    """The points and correlations of one measure with each method's accuracies ``acc`` {(method, pair): stats}."""
    out = []
    cka = {pair_name(r): r["v"] for r in d.cka_grid if (r["kernel"], bool(r["debiased"])) == (kernel, debiased)
           and r["v"] is not None and not math.isnan(r["v"])}
    for method in methods:
        pairs = sorted(p for p in cka if (method, p) in acc)
        xs = [cka[p] for p in pairs]
        ys = [acc[(method, p)]["mean"] for p in pairs]
        row = dict(measure=measure_name(kernel, debiased), method=method, setting=setting, n_pairs=len(pairs),
                   pearson_r=None, pearson_p=None, spearman_rho=None, spearman_p=None)
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
    """The correlations alone: one dict of CORRELATION_KEYS per (measure, method, grid setting)."""
    return [{k: c[k] for k in CORRELATION_KEYS} for c in correlation_points(d)]


def _corr_text(c: dict) -> str:
    if c["n_pairs"] < 3:
        return f"{c['n_pairs']} pair{'s' if c['n_pairs'] != 1 else ''}: too few for a correlation"
    if c["pearson_r"] is None:
        return f"{c['n_pairs']} pairs: constant values, no correlation"
    return (f"r={c['pearson_r']:.2f} (p={c['pearson_p']:.2g}), \u03c1={c['spearman_rho']:.2f} "
            f"(p={c['spearman_p']:.2g}), n={c['n_pairs']}")


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
    """scatter.png: one panel per measure and grid setting, CKA against the scatter method's accuracy (bars
    min-max over seeds); colour: the vision encoder, marker: the text encoder."""
    points = correlation_points(d)
    method = _scatter_method(points)
    chosen = [c for c in points if c["method"] == method]
    if not chosen or not any(c["n_pairs"] for c in chosen):
        return []
    settings = list(dict.fromkeys(c["setting"] for c in chosen))
    per_setting = len(chosen) // len(settings)
    ncols = min(4, per_setting)
    nrows = len(settings) * -(-per_setting // ncols)
    fig, axes = new_figure(0.4 + 3.5 * ncols, 2.4 * nrows + 0.3, ncols=ncols, nrows=nrows)
    pairs = sorted({p for c in chosen for p in c["pairs"]})
    vis = sorted({p.split(" x ")[0] for p in pairs})
    txt = sorted({p.split(" x ")[1] for p in pairs})
    col = dict(zip(vis, colors(len(vis))))
    mark = dict(zip(txt, "os^DvP*X"))
    for ax in axes:
        ax.set_visible(False)
    for k, c in enumerate(chosen):
        si, j = settings.index(c["setting"]), k % per_setting
        ax = axes[(si * -(-per_setting // ncols) + j // ncols) * ncols + j % ncols]
        ax.set_visible(True)
        for x, y, st, p in zip(c["x"], c["y"], c["y_stats"], c["pairs"]):
            v, t = p.split(" x ")
            ax.errorbar([x], [100 * y], yerr=[[100 * (y - st["min"])], [100 * (st["max"] - y)]], fmt=mark[t],
                        color=col[v], capsize=2, ms=6)
        ax.margins(x=0.15, y=0.15)
        ax.set_xlabel(f"{measure_title(c['kernel'], c['debiased'])} score (0-1)")
        if j % ncols == 0:
            ax.set_ylabel(f"{method} accuracy (%)")
        title = measure_title(c["kernel"], c["debiased"]) + (f"; {c['label']}" if c["label"] else "")
        ax.set_title(f"{title}\n{_corr_text(c)}")
        ax.grid(alpha=0.3)
    from matplotlib.lines import Line2D  # heavy, and only for drawing

    handles = ([Line2D([], [], color=col[v], marker="o", ls="", label=v) for v in vis]
               + [Line2D([], [], color="0.3", marker=mark[t], ls="", label=t) for t in txt])
    free = [ax for ax in axes if not ax.get_visible()]
    if free:  # the legend in an empty panel's place
        free[-1].set_visible(True)
        free[-1].set_axis_off()
        free[-1].legend(handles=handles, loc="center", title="vision encoder: colour\ntext encoder: marker")
    else:
        fig.legend(handles=handles, loc="outside right upper", title="vision encoder: colour\ntext encoder: marker")
    fig.suptitle(f"CKA vs {method} matching accuracy over the encoder pairs (main grid; mean over seeds, bars "
                 "min-max)", x=0.01, ha="left")
    return [save(fig, out / "scatter.png")]


def section(d: RunData, page: Page) -> Section:
    points = correlation_points(d)
    method = _scatter_method(points)
    items = page.figure("scatter.png", "CKA vs matching accuracy over the encoder pairs",
                        f"one panel per measure; y: {method} accuracy in %, mean over seeds (bars min-max)")
    if points:
        ordered = sorted(points, key=lambda c: c["method"] != method)  # the scatter's method first
        items.append(narrow_table("Correlation of CKA with main-grid matching accuracy over the encoder pairs",
                                  ["measure", "method", "setting", "pairs", "Pearson r", "p", "Spearman \u03c1",
                                   "p (\u03c1)"],
                                  [(measure_title(c["kernel"], c["debiased"]), *(c[k] for k in CORRELATION_KEYS[1:]))
                                   for c in ordered],
                                  note="Computed with scipy.stats over the pairs' values in the table below; fewer "
                                       "than 3 pairs, or constant values: no correlation (empty cells)."))
        measures = list(dict.fromkeys((c["kernel"], c["debiased"]) for c in points))
        accs = list(dict.fromkeys((c["method"], c["label"]) for c in points))
        all_pairs = sorted({p for c in points for p in c["pairs"]})
        val = {((c["kernel"], c["debiased"]), p): x for c in points for p, x in zip(c["pairs"], c["x"])}
        acc = {((c["method"], c["label"]), p): y for c in points for p, y in zip(c["pairs"], c["y"])}
        items.append(narrow_table("The values correlated, per encoder pair",
                                  ["pair", *[f"{measure_title(*m)} (0-1)" for m in measures],
                                   *[f"{m}{f' [{label}]' if label else ''} (%)" for m, label in accs]],
                                  [(p, *[val.get((m, p)) for m in measures], *[acc.get((a, p)) for a in accs])
                                   for p in all_pairs]))
    else:
        items.append("Needs CKA and main-grid matching results: "
                     + missing(d, bool(d.spec and d.spec.cka and d.spec.has_matching)))
    return Section("Cross-pair analysis", items, intro="Do encoder pairs that are more aligned (CKA) also match "
                   "better?")
