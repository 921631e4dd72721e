"""`vlalign explain`: feature-pair attributions (integrated Jacobians) of image-caption pairs.

    vlalign explain --item google/en/1f431 [--run RUN_ID] [--top N] --vision mobilenetv2 --text minilm-l6 --out DIR

The arguments, one call of :func:`vlalign.engine.explain.run_explain`, and what it printed: the base set, each
item's score, the completeness residual and its strongest (region, token) pairs.
"""

from __future__ import annotations

import argparse
import os

from vlalign.cli.args import checked_name, nonempty, positive_int


def add_parser(sub) -> None:
    """Register `explain` on the subcommand parsers ``sub`` of `vlalign`."""
    p = sub.add_parser("explain", help="feature-pair attributions (integrated Jacobians) of image-caption pairs")
    p.add_argument("--item", action="append", default=None, type=nonempty,
                   help="an item id of the data set, e.g. google/en/1f431 for emoji (repeat for several)")
    p.add_argument("--top", type=positive_int, default=None,
                   help="explain the N best-matched query pairs of the run's (or default split's) cell")
    p.add_argument("--run", type=checked_name("--run"), default=None,
                   help="take the base set (and the encoders' embeddings) from this sweep run's matching cell "
                        "(default: the default split, as `vlalign run` makes it)")
    p.add_argument("--dataset", type=checked_name("--dataset"), default=None,
                   help="the data set (default: the run's first; emoji)")
    p.add_argument("--domain", default=None, help="--top: the queries' domain (default: the main grid's first)")
    p.add_argument("--lang", default=None, help="--top: the queries' language (default: the main grid's first)")
    p.add_argument("--vision", default="mobilenetv2", help="vision encoder (mobilenetv2, efficientnet-lite*)")
    p.add_argument("--text", default="minilm-l6", help="text encoder (a BERT-like sentence-transformers model)")
    p.add_argument("--steps", type=int, default=None, help="integration steps (default: the library's, 64)")
    p.add_argument("--seed", type=int, default=None, help="the cell's seed (default: the spec's first)")
    p.add_argument("--base-size", type=int, default=None,
                   help="instead of a cell's base: N seeded random emoji pairs (0: the encoders are aligned)")
    p.add_argument("--show", type=int, default=5, help="(region, token) pairs printed per item")
    p.add_argument("--out", type=nonempty, required=True, help="folder for the PNGs and explanations.parquet")
    p.add_argument("--lake", type=nonempty, default=os.environ.get("VLALIGN_LAKE", "lake"),
                   help="the lake that holds the run and gets the `attributions` table (a run explain-<digest>)")
    p.add_argument("--threads", type=int, default=None)


def cmd_explain(args: argparse.Namespace) -> int:
    """Explain image-caption pairs; print the base set, each score, the completeness residual and top pairs."""
    # the engine imports numpy, pyarrow, the encoders and the lake: only when this command runs (start-up speed)
    from vlalign.engine.explain import run_explain
    from vlalign.lake.store import Lake
    from vlalign.methods.attribution import DEFAULT_STEPS, top_pairs

    steps = args.steps or DEFAULT_STEPS
    if steps < 1 or (args.base_size is not None and args.base_size < 0) or args.show < 0:
        raise ValueError("--steps must be >= 1, --base-size and --show >= 0")
    if not args.item and not args.top:
        raise ValueError("give --item ID (repeatable) or --top N")
    lake = Lake.open(args.lake)
    done = run_explain(lake, args.item or [], top=args.top, run=args.run, dataset=args.dataset, domain=args.domain,
                       lang=args.lang, vision=args.vision, text=args.text, steps=steps, seed=args.seed,
                       base_size=args.base_size, out_dir=args.out, threads=args.threads)
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
