"""What a person looks at after a run: a short text summary and plots (CKA grids, matching accuracy).

Every query is a file sql/report_*.sql (its leading comment says what it returns and its parameters), run over
the lake with its parameters bound ($run_id, $dataset), never pasted into the SQL text.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .catalog import load_sql, query
from .lake import Lake


def _rows(lake: Lake, name: str, **params: str) -> list[dict]:
    """The rows of sql/<name>.sql run over ``lake`` with ``params`` bound to its $names."""
    return query(lake, load_sql(name), params).to_pylist()


def summary(lake: Lake, run_id: str, top: int = 3) -> str:
    """Best encoder pairs per method against chance, and the CKA extremes, for ``run_id``."""
    lines = [f"run {run_id}"]
    cka = _rows(lake, "report_cka_summary", run_id=run_id)
    for r in cka:
        lines.append(
            f"  CKA {r['kernel']:>6}: {r['n']} pairs, mean {r['mean_value']:.3f} (shuffled {r['mean_shuffled']:.3f}), "
            f"true > shuffled in {r['beats_shuffled']}/{r['n']}; best {r['best_pair']} = {r['best_value']:.3f}")
    rows = _rows(lake, "report_matching_summary", run_id=run_id)
    by_method: dict[str, list] = {}
    for r in rows:
        by_method.setdefault(r["method"], []).append(r)
    for method, rs in by_method.items():
        best = ", ".join(f"{r['vision_encoder']} x {r['text_encoder']} {100 * r['accuracy']:.1f}%" for r in rs[:top])
        ratio = rs[0]["accuracy"] / rs[0]["chance"] if rs[0]["chance"] else float("nan")
        lines.append(f"  matching {method:>17}: best {best}  (chance {100 * rs[0]['chance']:.2f}%, best = {ratio:.0f}x chance)")
    datasets = [r["dataset"] for r in _rows(lake, "report_datasets", run_id=run_id)]
    for ds in datasets:
        rej = _rows(lake, "report_rejects", dataset=ds)
        total = sum(r["n"] for r in rej)
        detail = ", ".join(f"{r['stage']} {r['n']}" for r in rej)
        lines.append(f"  rejects in {ds}: {total}" + (f" ({detail}; vlalign query \"select * from rejects\")" if total else ""))
    return "\n".join(lines)


def plot_run(lake: Lake, run_id: str, out_dir: str | Path | None = None) -> list[str]:
    """PNG plots of a run: one CKA heat map per kernel, one bar chart of matching accuracy per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out_dir) if out_dir else Path(lake.root) / "reports" / f"run={run_id}"
    out.mkdir(parents=True, exist_ok=True)
    written = []
    cka = _rows(lake, "report_cka_grid", run_id=run_id)
    for kernel in sorted({r["kernel"] for r in cka}):
        rs = [r for r in cka if r["kernel"] == kernel]
        vis = sorted({r["vision_encoder"] for r in rs})
        txt = sorted({r["text_encoder"] for r in rs})
        grid = np.full((len(vis), len(txt)), np.nan)
        for r in rs:
            grid[vis.index(r["vision_encoder"]), txt.index(r["text_encoder"])] = r["v"]
        fig, ax = plt.subplots(figsize=(1.6 + 1.4 * len(txt), 1.2 + 0.6 * len(vis)))
        im = ax.imshow(grid, cmap="viridis", vmin=0, vmax=max(0.01, np.nanmax(grid)))
        ax.set_xticks(range(len(txt)), txt, rotation=30, ha="right")
        ax.set_yticks(range(len(vis)), vis)
        for i in range(len(vis)):
            for j in range(len(txt)):
                bright = grid[i, j] > 0.6 * np.nanmax(grid)
                ax.text(j, i, f"{grid[i, j]:.2f}", ha="center", va="center", color="k" if bright else "w", fontsize=9)
        ax.set_title(f"CKA ({kernel}) - run {run_id}", fontsize=9)
        fig.colorbar(im, ax=ax)
        fig.tight_layout()
        p = out / f"cka_{kernel}.png"
        fig.savefig(p, dpi=110)
        plt.close(fig)
        written.append(str(p))
    m = _rows(lake, "report_matching_bars", run_id=run_id)
    if m:
        methods = sorted({r["method"] for r in m})
        pairs = sorted({r["pair"] for r in m})
        fig, ax = plt.subplots(figsize=(max(6, 0.6 * len(pairs) * len(methods) / 2), 4))
        width = 0.8 / len(methods)
        for k, method in enumerate(methods):
            vals = [next((100 * r["acc"] for r in m if r["method"] == method and r["pair"] == p), 0) for p in pairs]
            ax.bar(np.arange(len(pairs)) + k * width, vals, width, label=method)
        ax.axhline(100 * m[0]["chance"], color="k", ls="--", lw=1, label="chance")
        ax.set_xticks(np.arange(len(pairs)) + 0.4 - width / 2, pairs, rotation=40, ha="right", fontsize=7)
        ax.set_ylabel("matching accuracy (%)")
        ax.set_title(f"Training-free matching - run {run_id}", fontsize=9)
        ax.legend(fontsize=7)
        fig.tight_layout()
        p = out / "matching.png"
        fig.savefig(p, dpi=110)
        plt.close(fig)
        written.append(str(p))
    return written
