"""What a person looks at after a run: a short text summary and plots (CKA grids, matching accuracy)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .catalog import query
from .lake import Lake


def summary(lake: Lake, run_id: str, top: int = 3) -> str:
    """Best encoder pairs per method against chance, and the CKA extremes, for ``run_id``."""
    rid = run_id.replace("'", "''")
    lines = [f"run {run_id}"]
    cka = query(lake, f"""
        select kernel, count(*) as n, avg(value) as mean_value, avg(shuffled_value) as mean_shuffled,
               sum((value > shuffled_value)::int) as beats_shuffled,
               arg_max(vision_encoder || ' x ' || text_encoder, value) as best_pair, max(value) as best_value
        from cka where run_id = '{rid}' group by kernel order by kernel""").to_pylist()
    for r in cka:
        lines.append(
            f"  CKA {r['kernel']:>6}: {r['n']} pairs, mean {r['mean_value']:.3f} (shuffled {r['mean_shuffled']:.3f}), "
            f"true > shuffled in {r['beats_shuffled']}/{r['n']}; best {r['best_pair']} = {r['best_value']:.3f}")
    rows = query(lake, f"""
        select method, vision_encoder, text_encoder, avg(accuracy) as accuracy, avg(chance) as chance
        from matching where run_id = '{rid}'
        group by all order by method, accuracy desc""").to_pylist()
    by_method: dict[str, list] = {}
    for r in rows:
        by_method.setdefault(r["method"], []).append(r)
    for method, rs in by_method.items():
        best = ", ".join(f"{r['vision_encoder']} x {r['text_encoder']} {100 * r['accuracy']:.1f}%" for r in rs[:top])
        ratio = rs[0]["accuracy"] / rs[0]["chance"] if rs[0]["chance"] else float("nan")
        lines.append(f"  matching {method:>17}: best {best}  (chance {100 * rs[0]['chance']:.2f}%, best = {ratio:.0f}x chance)")
    datasets = [r["dataset"] for r in query(lake, f"select distinct dataset from cka where run_id = '{rid}' "
                                                     f"union select distinct dataset from matching where run_id = '{rid}'").to_pylist()]
    for ds in datasets:
        rej = query(lake, "select stage, count(*) as n from rejects where dataset = '%s' group by stage order by stage"
                    % ds.replace("'", "''")).to_pylist()
        total = sum(r["n"] for r in rej)
        detail = ", ".join(f"{r['stage']} {r['n']}" for r in rej)
        lines.append(f"  rejects in {ds}: {total}" + (f" ({detail}; vlalign query \"select * from rejects\")" if total else ""))
    return "\n".join(lines)


def plot_run(lake: Lake, run_id: str, out_dir: str | Path | None = None) -> list[str]:
    """PNG plots of a run: one CKA heat map per kernel, one bar chart of matching accuracy per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rid = run_id.replace("'", "''")
    out = Path(out_dir) if out_dir else Path(lake.root) / "reports" / f"run={run_id}"
    out.mkdir(parents=True, exist_ok=True)
    written = []
    cka = query(lake, f"select kernel, vision_encoder, text_encoder, avg(value) as v, avg(shuffled_value) as s "
                      f"from cka where run_id = '{rid}' group by all").to_pylist()
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
    m = query(lake, f"select method, vision_encoder || ' x ' || text_encoder as pair, avg(accuracy) as acc, "
                    f"avg(chance) as chance from matching where run_id = '{rid}' group by all order by pair").to_pylist()
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
