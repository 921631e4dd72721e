"""`vlalign explain`: feature-pair attributions (integrated Jacobians) of image-caption pairs.

    vlalign explain --item google/en/1f431 [--run RUN_ID] [--top N] --vision mobilenetv2 --text minilm-l6 --out DIR

The arguments, one call of :func:`vlalign.engine.explain.run_explain`, and what it printed: the base set, each
item's score, the completeness residual and its strongest (region, token) pairs.
"""

from __future__ import annotations

import argparse

from vlalign.datalake.store import Lake
from vlalign.engine.explain import run_explain
from vlalign.methods.attribution import DEFAULT_STEPS, top_pairs
from vlalign.report.explain_figure import plot_explanation


def cmd_explain(args: argparse.Namespace) -> int:
    """Explain image-caption pairs; print the base set, each score, the completeness residual and top pairs."""

    steps = args.steps or DEFAULT_STEPS
    if steps < 1 or (args.base_size is not None and args.base_size < 0) or args.show < 0:
        raise ValueError("--steps must be >= 1, --base-size and --show >= 0")
    if not args.item and not args.top:
        raise ValueError("give --item ID (repeatable) or --top N")
    lake = Lake.open(args.lake)
    done = run_explain(lake, args.item or [], top=args.top, run=args.run, dataset=args.dataset, domain=args.domain,
                       lang=args.lang, vision=args.vision, text=args.text, steps=steps, seed=args.seed,
                       base_size=args.base_size, out_dir=args.out, plot=plot_explanation, threads=args.threads)
    for item, ex in zip(done.items, done.explanations):
        matched = ""
        if item in done.margins:
            m, ok = done.margins[item]
            matched = f"; {'matched' if ok else 'NOT matched'} among the cell's queries, margin {m:+.4f}"
        print(f"{item}: score {ex.score:.4f}; attributions sum to {float(ex.attributions.sum()):.4f} = target "
              f"{ex.target:.4f} (s(a,b) - s(r_a,b) - s(a,r_b) + s(r_a,r_b)); residual {ex.residual:.2e} "
              f"(relative {ex.relative_residual:.1e}, {steps} steps, {ex.seconds:.1f}s){matched}")
        for row, col, token, value in top_pairs(ex, args.show):
            print(f"    token {token!r:>14} at region ({row}, {col}): {value:+.4f}")
    print(f"written: {args.out}/ (one PNG per item, explanations.parquet)")
    print(f"lake: {lake.root} run {done.run_id} (vlalign query \"select * from attributions where run_id = "
          f"'{done.run_id}'\")")
    return 0
