"""The figure of one feature-pair explanation (vlalign.methods.attribution.Explanation): the image and one heat
map per caption token."""
from __future__ import annotations

import math
import textwrap
from pathlib import Path
from typing import Any

import numpy as np

from vlalign.encoders import decode_image
from vlalign.methods.attribution import SPECIAL_TOKENS, Explanation
from vlalign.report.plotting import DPI, MAX_WIDTH_IN, MIN_FONT_KEY, min_font_px

__all__ = ["plot_explanation"]


def plot_explanation(expl: Explanation, image_bytes: Any = None, path: str | Path = "explanation.png", *,
                     special: bool = True, max_tokens: int = 16, alpha: float = 0.6, strongest: bool = False,
                     panel_in: float = 2.6) -> Path:
    """PNG: the image as the network saw it (resized and cropped) and one heat map per caption token, upsampled
    over a grey copy of the image, red positive / blue negative on one symmetric scale for all tokens; the score, the
    reference terms and the completeness residual in the title. image_bytes is used only when the
    explanation carries no image. ``strongest``: the ``max_tokens`` tokens with the largest total attribution (in
    absolute value), in caption order, instead of the first ones; ``panel_in``: each panel's width in inches."""
    import matplotlib  # heavy: imported only when a figure is drawn

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt  # heavy: only when a picture is drawn

    if expl.image is not None:
        img = expl.image
    else:
        img = np.asarray(decode_image(image_bytes))
    maps = expl.token_maps()
    idx = [t for t, tok in enumerate(expl.tokens) if special or tok not in SPECIAL_TOKENS]
    if strongest:
        idx = sorted(sorted(idx, key=lambda t: -abs(float(maps[t].sum())))[: int(max_tokens)])
    idx = idx[: int(max_tokens)]
    vmax = float(np.abs(maps[idx]).max()) if idx else 1.0
    vmax = vmax or 1.0
    ncol = min(len(idx) + 1, 6)
    nrow = math.ceil((len(idx) + 1) / ncol)
    w = min(panel_in * max(ncol, 4), MAX_WIDTH_IN)  # at least four panels wide: the title fits  # at most the page's width: shown at its own size, every font >= 10 px
    fig, axes = plt.subplots(nrow, ncol, figsize=(w, w / ncol * 1.08 * nrow + 0.8), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    ih, iw = img.shape[:2]
    grey = img[..., :3].astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)  # under the maps
    axes.flat[0].imshow(img)
    axes.flat[0].set_title("image", fontsize=9)
    im = None
    for ax, t in zip(list(axes.flat)[1:], idx):
        ax.imshow(grey, cmap="gray", vmin=0, vmax=255)
        im = ax.imshow(maps[t], cmap="RdBu_r", vmin=-vmax, vmax=vmax, alpha=alpha, interpolation="bilinear",
                       extent=(0, iw, ih, 0))
        ax.set_title(f"{expl.tokens[t]}\n{maps[t].sum():+.3f}", fontsize=9)
    if im is not None:
        fig.colorbar(im, ax=axes.ravel().tolist(), shrink=0.7, label="attribution")
    title = [f"{expl.caption!r}   {expl.vision} (block {expl.vision_layer}, {expl.grid[0]}x{expl.grid[1]}) x "
             f"{expl.text} (layer {expl.text_layer})",
             f"s = {expl.score:.4f}, target s - s(r,b) - s(a,r) + s(r,r) = {expl.target:.4f}, "
             f"sum A = {expl.attributions.sum():.4f}, residual = {expl.residual:.2e} "
             f"({expl.relative_residual:.1e} rel.), {expl.steps} steps"]
    chars = max(30, int(w * 15))  # characters of 9 pt text a line of the figure's width holds
    fig.suptitle("\n".join(part for line in title for part in textwrap.wrap(line, chars)), fontsize=9)
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.canvas.draw()
    fig.savefig(out, dpi=DPI, bbox_inches="tight", metadata={MIN_FONT_KEY: f"{min_font_px(fig):.1f}"})
    plt.close(fig)
    return out
