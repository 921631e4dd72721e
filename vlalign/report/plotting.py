"""The matplotlib set-up every plot of the report shares: a figure of the object API (no pyplot state, the
constrained layout), one resolution and one set of font sizes (every text at least MIN_FONT_PT, that is 10 px
when the PNG is shown at its own size), annotated heat maps, grouped bars with min-max error bars, and saving
with the smallest font size written into the PNG (its ``vlalign:min-font-px`` text chunk, for checks)."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

import numpy as np

DPI = 110
MIN_FONT_PT = 7  # 10.7 px at DPI: the smallest text of any figure
RC = {"font.size": 8, "axes.titlesize": 9, "axes.labelsize": 8, "xtick.labelsize": 8, "ytick.labelsize": 8,
      "legend.fontsize": 8, "figure.titlesize": 10, "figure.labelsize": 9, "axes.titlelocation": "left"}
MAX_WIDTH_IN = 12.2  # the page's width for a figure (1342 px at DPI): wider ones would be shown smaller
MIN_FONT_KEY = "vlalign:min-font-px"


@contextmanager
def style():
    """The report's font sizes for every figure drawn (and saved) inside."""
    import matplotlib  # heavy, and only for drawing

    with matplotlib.rc_context(RC):
        yield


def new_figure(w: float, h: float, ncols: int = 1, nrows: int = 1, **subplots):
    """(figure, its axes as a flat list), ``w`` x ``h`` inches (``w`` at most MAX_WIDTH_IN), constrained layout;
    ``subplots``: passed to Figure.subplots (sharex, sharey, ...)."""
    from matplotlib.figure import Figure  # heavy, and only for drawing: the object API, Agg for PNG, no pyplot state

    fig = Figure(figsize=(min(w, MAX_WIDTH_IN), h), dpi=DPI, layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False, **subplots)
    return fig, [ax for row in axes for ax in row]


def new_figure_blocks(w: float, h: float, titles: list[str], ncols: int, nrows: int = 1):
    """(figure, [the flat axes of each block]): a block of ``nrows`` x ``ncols`` panels per title, one under the
    other, each block headed by its title (none when there is one block); ``w`` x ``h`` inches in all."""
    from matplotlib.figure import Figure  # heavy, and only for drawing

    fig = Figure(figsize=(min(w, MAX_WIDTH_IN), h), dpi=DPI, layout="constrained")
    subs = [fig] if len(titles) == 1 else list(fig.subfigures(len(titles), 1))
    blocks = []
    for sub, title in zip(subs, titles):
        if len(titles) > 1:
            sub.suptitle(title, x=0.01, ha="left", fontsize=RC["axes.titlesize"], fontweight="bold")
        blocks.append([ax for row in sub.subplots(nrows, ncols, squeeze=False) for ax in row])
    return fig, blocks


def min_font_px(fig) -> float:
    """The smallest font size of the figure's visible text, in pixels of the PNG."""
    from matplotlib.text import Text  # heavy, and only for drawing

    sizes = [t.get_fontsize() for t in fig.findobj(Text) if t.get_visible() and t.get_text().strip()]
    return min(sizes, default=RC["font.size"]) * DPI / 72


def save(fig, path: Path) -> str:
    """Write ``fig`` as a PNG to ``path``, with its smallest font size in px as the PNG text chunk
    MIN_FONT_KEY; returns the path."""
    fig.canvas.draw()  # lays out the figure, and makes its tick labels
    fig.savefig(path, dpi=DPI, metadata={MIN_FONT_KEY: f"{min_font_px(fig):.1f}"})
    return str(path)


def colors(n: int) -> list:
    from matplotlib import colormaps  # heavy, and only for drawing

    cmap = colormaps["tab10"]
    return [cmap(i % 10) for i in range(n)]


def heatmap(ax, values, rows: list[str], cols: list[str], text, vmin: float = 0.0, vmax: float | None = None,
            cmap: str = "viridis", fontsize: float = 8, rotate: bool | None = None):
    """``values`` (len(rows) x len(cols), NaN: no value, drawn light grey) as an image, each cell annotated
    with ``text[i][j]`` (black on light colours, white on dark); the columns' labels turned when ``rotate``
    (default: when one is longer than 10 characters).
    Returns the image (for a colour bar)."""
    from matplotlib import colormaps  # heavy, and only for drawing

    grid = np.asarray(values, dtype=float)
    cm = colormaps[cmap].with_extremes(bad="#eeeeee")
    top = vmax if vmax is not None else (float(np.nanmax(grid)) if np.isfinite(grid).any() else 1.0)
    im = ax.imshow(grid, cmap=cm, vmin=vmin, vmax=max(top, vmin + 1e-9), aspect="auto")
    long = max((len(c) for c in cols), default=0) > 10 if rotate is None else rotate
    ax.set_xticks(range(len(cols)), cols, rotation=25 if long else 0, ha="right" if long else "center",
                  rotation_mode="anchor")
    ax.set_yticks(range(len(rows)), rows)
    ax.tick_params(length=0)
    for i in range(grid.shape[0]):
        for j in range(grid.shape[1]):
            t = text[i][j]
            if not t:
                continue
            r, g, b, _ = cm(im.norm(grid[i, j])) if np.isfinite(grid[i, j]) else (1, 1, 1, 1)
            ink = "k" if 0.299 * r + 0.587 * g + 0.114 * b > 0.5 else "w"
            ax.text(j, i, t, ha="center", va="center", color=ink, fontsize=fontsize)
    return im


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
    ax.set_xticks(x, labels, rotation=30 if long else 0, ha="right" if long else "center")
    ax.set_ylabel("accuracy (%)")
    ax.grid(axis="y", alpha=0.3)
