"""The matplotlib set-up every plot of the report shares: a figure of the object API (no pyplot state), saving
at one resolution, the colours, grouped bars with min-max error bars, the legend beside the axes."""

from __future__ import annotations

from pathlib import Path

import numpy as np

DPI = 110


def new_figure(w: float, h: float, ncols: int = 1, nrows: int = 1):
    """(figure, its axes as a flat list), ``w`` x ``h`` inches."""
    from matplotlib.figure import Figure  # heavy, and only for drawing: the object API, Agg for PNG, no pyplot state

    fig = Figure(figsize=(w, h), dpi=DPI)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    return fig, [ax for row in axes for ax in row]


def save(fig, path: Path) -> str:
    """Write ``fig`` as a PNG to ``path``; returns the path."""
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    return str(path)


def colors(n: int) -> list:
    from matplotlib import colormaps  # heavy, and only for drawing

    cmap = colormaps["tab10"]
    return [cmap(i % 10) for i in range(n)]


def grouped_bars(ax, groups: list, series: list, stats: dict, labels: list[str] | None = None) -> None:
    """Bars of stats[(group, series)]['mean'] (in %), error bars min..max over seeds."""
    n = max(1, len(series))
    width = 0.8 / n
    x = np.arange(len(groups))
    for k, (s, color) in enumerate(zip(series, colors(n))):
        vals, lo, hi = [], [], []
        for g in groups:
            st = stats.get((g, s))
            if st is None:
                vals.append(np.nan), lo.append(0), hi.append(0)
            else:
                vals.append(100 * st["mean"])
                lo.append(100 * (st["mean"] - st["min"]))
                hi.append(100 * (st["max"] - st["mean"]))
        ax.bar(x + (k - (n - 1) / 2) * width, vals, width, yerr=[lo, hi], capsize=2, label=str(s), color=color,
               error_kw={"elinewidth": 0.8})
    labels = labels or [str(g) for g in groups]
    long = max((len(line) for t in labels for line in t.splitlines()), default=0) > 12 and len(groups) > 2
    ax.set_xticks(x, labels, rotation=30 if long else 0, ha="right" if long else "center", fontsize=8)
    ax.set_ylabel("accuracy (%)")
    ax.grid(axis="y", alpha=0.3)


def legend(ax) -> None:
    """The legend outside the axes, right of them: it never hides a bar."""
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
