"""Alignment: CKA (linear/RBF kernels, biased or debiased HSIC) and mutual k-nearest-neighbour alignment of
every vision x text encoder pair, with the shuffled-pairing baseline: a summary line and a heat map per measure."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from vlalign.report.html import Section, Table
from vlalign.report.plotting import MIN_FONT_PT, heatmap, new_figure, save
from vlalign.report.queries import CKA_ROWS, shown
from vlalign.report.rows import mean, measure_name, measure_title, pair_name
from vlalign.report.rundata import RunData
from vlalign.report.study import Page
from vlalign.report.tables import f3, missing, narrow_table

SUMMARY_RANK = 10


def lines(d: RunData, top: int) -> list[str]:
    """One line per measure: its mean, the shuffled baseline's, how often the true pairing beats it, the best pair,
    the mean calibrated value and how many pairs are above the permutation null; then per measure with layers,
    where the best layer pair is and how often it is significant after the correction for the layer search."""
    width = max((len(measure_name(r["kernel"], r["debiased"])) for r in d.cka_summary), default=0)
    out = []
    for r in d.cka_summary:
        line = (f"  CKA {measure_name(r['kernel'], r['debiased']):>{width}}: {r['n']} pairs, mean {r['mean_value']:.3f} "
                f"(shuffled {f3(r['mean_shuffled'])}), true > shuffled in {r['beats_shuffled']}/{r['n']}; "
                f"best {r['best_pair']} = {r['best_value']:.3f}")
        if r.get("mean_calibrated") is not None:
            line += f"; calibrated mean {r['mean_calibrated']:.3f}, p <= alpha in {r['significant']}/{r['n']}"
        out.append(line)
    by_measure: dict = {}
    for r in d.best_layers:
        by_measure.setdefault((r["kernel"], bool(r["debiased"])), []).append(r)
    if by_measure:
        parts, sig, total = [], 0, 0
        for (kernel, debiased), rs in by_measure.items():
            inner = [r for r in rs if (r["vision_layer"], r["text_layer"]) != (-1, -1)]
            sig += sum(1 for r in rs if r["p_value_layers"] is not None and r["p_value_layers"] <= 0.05)
            total += len(rs)
            gains = [r["value"] - r["output_value"] for r in inner if r["output_value"] is not None]
            parts.append(f"{measure_name(kernel, debiased)} {len(inner)}/{len(rs)}"
                         + (f" (+{mean(gains):.3f})" if gains else ""))
        out.append("  layers: pairs whose best layer pair is not the outputs' (mean gain): " + ", ".join(parts)
                   + f"; the best pair significant after the layer-search correction (p <= 0.05) in {sig}/{total}")
    return out


OVERVIEW = "cka_measures.png"
LAYERS = "cka_layers.png"


def figures(d: RunData, out: Path) -> list[str]:
    """cka_measures.png: one heat map per measure (vision x text encoders, the encoders' outputs), each cell the
    value of the true pairing and its calibrated value; cka_layers.png: every layer pair of each encoder pair, for
    the first measure whose cells measured several layers, coloured by the calibrated value."""
    return [p for p in (_overview(d, out), _layers(d, out)) if p]


def _overview(d: RunData, out: Path) -> str | None:
    measures = [(k, deb) for k, deb in _ordered(d.measures)
                if any(r["v"] is not None for r in d.cka_grid if (r["kernel"], bool(r["debiased"])) == (k, deb))]
    if not measures:
        return None
    vis = sorted({r["vision_encoder"] for r in d.cka_grid})
    txt = sorted({r["text_encoder"] for r in d.cka_grid})
    ncols = min(4, len(measures))
    nrows = -(-len(measures) // ncols)
    fig, axes = new_figure(0.9 + 3.0 * ncols, (1.2 + 0.42 * len(vis)) * nrows + 0.5, ncols=ncols, nrows=nrows)
    im = None
    for ax, (kernel, debiased) in zip(axes, measures):
        rs = {(r["vision_encoder"], r["text_encoder"]): r for r in d.cka_grid
              if (r["kernel"], bool(r["debiased"])) == (kernel, debiased)}
        grid = np.full((len(vis), len(txt)), np.nan)
        text = [[""] * len(txt) for _ in vis]
        for (v, t), r in rs.items():
            if r["v"] is not None:
                grid[vis.index(v), txt.index(t)] = r["v"]
                text[vis.index(v)][txt.index(t)] = f"{r['v']:.3f}" + (f"\ncal {r['c']:.3f}" if r.get("c") is not None else "")
        im = heatmap(ax, grid, vis if ax in axes[::ncols] else [""] * len(vis), txt, text, vmax=1.0,
                     fontsize=MIN_FONT_PT)
        shuffled = [r["s"] for r in rs.values() if r["s"] is not None]
        ax.set_title(measure_title(kernel, debiased) + (f"\nshuffled: mean {mean(shuffled):.3f}" if shuffled else ""))
    for ax in axes[len(measures):]:
        ax.axis("off")
    fig.supxlabel("text encoder")
    fig.supylabel("vision encoder")
    fig.colorbar(im, ax=axes, label="score of the true pairing (0-1)", location="bottom", shrink=0.5, aspect=40)
    return save(fig, out / OVERVIEW)


def _depth(layer: int) -> int:
    """A layer's place from the input: inner layers by index, the output (-1) after all of them."""
    return layer if layer >= 0 else 1 << 30


def layer_measure(d: RunData) -> tuple[str, bool] | None:
    """The measure of the layer-pair heat maps: the first of the run's measures whose cells measured layers."""
    have = {(r["kernel"], bool(r["debiased"])) for r in d.cka_layers}
    return next((m for m in _ordered(d.measures) if m in have), None)


def _ordered(measures: list[tuple[str, bool]]) -> list[tuple[str, bool]]:
    """CKA's kernels first (linear, rbf; biased before debiased), then the other measures by name."""
    return sorted(measures, key=lambda m: (m[0] not in ("linear", "rbf"), m[0], m[1]))


def _layers(d: RunData, out: Path) -> str | None:
    m = layer_measure(d)
    if m is None:
        return None
    rows = [r for r in d.cka_layers if (r["kernel"], bool(r["debiased"])) == m]
    vis = sorted({r["vision_encoder"] for r in rows})
    txt = sorted({r["text_encoder"] for r in rows})
    calibrated = any(r["calibrated"] is not None for r in rows)
    nv = max(len({r["vision_layer"] for r in rows if r["vision_encoder"] == v}) for v in vis)
    fig, axes = new_figure(1.0 + 3.7 * len(txt), (0.85 + 0.24 * nv) * len(vis) + 0.6, ncols=len(txt), nrows=len(vis))
    shown_all = [r["calibrated"] if calibrated else r["value"] for r in rows]
    top = max([x for x in shown_all if x is not None], default=1.0)  # one colour scale for every panel
    im = None
    for a, (v, t) in zip(axes, [(v, t) for v in vis for t in txt]):
        rs = [r for r in rows if (r["vision_encoder"], r["text_encoder"]) == (v, t)]
        vl = sorted({(_depth(r["vision_layer"]), r["vision_layer_name"]) for r in rs})
        tl = sorted({(_depth(r["text_layer"]), r["text_layer_name"]) for r in rs})
        grid = np.full((len(vl), len(tl)), np.nan)
        text = [[""] * len(tl) for _ in vl]
        for r in rs:
            i = vl.index((_depth(r["vision_layer"]), r["vision_layer_name"]))
            j = tl.index((_depth(r["text_layer"]), r["text_layer_name"]))
            shown = r["calibrated"] if calibrated else r["value"]
            grid[i, j] = np.nan if shown is None else shown
            text[i][j] = "" if r["value"] is None else f"{r['value']:.2f}"
        im = heatmap(a, grid, [n for _, n in vl], [n for _, n in tl], text, vmax=top, fontsize=MIN_FONT_PT,
                     rotate=True)
        a.set_title(f"{v} x {t}")
    fig.supxlabel("text layer")
    fig.supylabel("vision layer")
    what = "calibrated value (colour); raw value (text)" if calibrated else "value"
    fig.suptitle(f"{measure_title(*m)} of every layer pair: {what}")
    fig.colorbar(im, ax=axes, label="calibrated (0-1)" if calibrated else "score (0-1)", location="right",
                 shrink=0.6)
    return save(fig, out / LAYERS)


def section(d: RunData, page: Page) -> Section:
    items: list = page.figure(OVERVIEW, "Every measure of the encoders' outputs",
                              "each cell: the score of the true pairing (mean over the run's rows of the pair) and, "
                              "under it, its calibrated score (0: not above the permutation null's 95% critical "
                              "value); the title gives the mean score with the captions shuffled")
    m = layer_measure(d)
    if m is not None:
        items += page.figure(LAYERS, f"Layer pairs: {measure_title(*m)}",
                             "each panel one encoder pair, each cell one (vision layer, text layer): the colour is "
                             "the calibrated score, the text the raw score")
    if d.best_layers:
        items.append(narrow_table(
            "The best layer pair of every encoder pair and measure (p: corrected for the search over layer pairs)",
            ["pair", "measure", "layer pairs", "best (vision, text)", "score (0-1)", "p (corrected)",
             "best calibrated (vision, text)", "calibrated (0-1)", "outputs' score (0-1)"],
            [(pair_name(r), measure_title(r["kernel"], r["debiased"]), r["layer_pairs"],
              f"{r['vision_layer_name']}, {r['text_layer_name']}", r["value"], r["p_value_layers"],
              f"{r['calibrated_vision_layer']}, {r['calibrated_text_layer']}", r["calibrated"], r["output_value"])
             for r in d.best_layers],
            sql=f"select * from best_layers where run_id = '{d.run_id}'", top=6))
    if d.cka_summary:
        items.append(Table("CKA per measure (scores 0-1; the summary's lines as a table)",
                           ["measure", "rows", "mean (0-1)", "mean shuffled (0-1)", "true > shuffled", "best pair",
                            "best (0-1)"],
                           [(measure_title(r["kernel"], r["debiased"]), r["n"], r["mean_value"], r["mean_shuffled"],
                             f"{r['beats_shuffled']}/{r['n']}", r["best_pair"], r["best_value"])
                            for r in d.cka_summary], top=0))
    if d.cka:
        rows = sorted(d.cka, key=lambda r: -r["value"] if r["value"] is not None else 1.0)
        items.append(narrow_table("Every CKA row of the run, best first",
                                  ["dataset", "domain", "lang", "pair", "measure", "n", "score (0-1)",
                                   "shuffled (0-1)", "CI low (0-1)", "CI high (0-1)", "calibrated (0-1)", "p", "seed",
                                   "note"],
                                  [(r["dataset"], r["domain"], r["lang"], pair_name(r),
                                    measure_title(r["kernel"], r["debiased"]), r["n"], r["value"], r["shuffled_value"],
                                    r["ci_low"], r["ci_high"], r.get("calibrated"), r.get("p_value"), r["seed"], r["note"])
                                   for r in rows],
                                  sql=shown(CKA_ROWS, run_id=d.run_id), top=0))
    else:
        items.append(missing(d, bool(d.spec and d.spec.cka)))
    return Section("Alignment", items, intro="CKA (linear/RBF kernels, biased or debiased HSIC), mutual and cycle "
                   "k-nearest neighbours, CKNNA, SVCCA and RSA of every vision x text encoder pair, with the "
                   "shuffled-pairing baseline, and calibrated against a permutation null (Groger et al.: "
                   "clamp((score - tau) / (1 - tau), 0, 1), tau the null's 95% critical value). Scores from 0 "
                   "(unrelated) to 1 (the same geometry), 3 decimals.")
