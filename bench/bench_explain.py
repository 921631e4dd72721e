"""One feature-pair explanation (integrated Jacobians, vlalign.engine.explain.explain_pair) of mobilenetv2 x minilm-l6
on CPU.

The linear map is fitted on base pairs of the embedded emoji set (google, en) that exclude the explained
emoji; their embedding is timed separately. Then the pair is explained at each step count given, printing
steps, seconds, the completeness residual and its size relative to the target
s(a,b) - s(r_a,b) - s(a,r_b) + s(r_a,r_b). The first explanation also pays for loading the two models
(about 1 s when cached), so a warm-up explanation with 2 steps runs first and is not counted.

    .venv/bin/python bench/bench_explain.py            # default steps (64), then 4, 8, 16, 32, 128; cat face, smiling cat with heart-eyes, heart with arrow
    .venv/bin/python bench/bench_explain.py --quick    # default steps only, the cat face, 64 base pairs
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np


def main() -> None:
    from vlalign.engine.explain import explain_pair
    from vlalign.methods.attribution import DEFAULT_STEPS, top_pairs
    from vlalign.report.explain_figure import plot_explanation

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="default steps only, one pair")
    ap.add_argument("--items", default="google/en/1f431,google/en/1f63b,google/en/1f498", help="comma-separated emoji item ids")
    ap.add_argument("--steps", default=None, help="comma-separated step counts (default: 64,4,8,16,32,128)")
    ap.add_argument("--base-size", type=int, default=None, help="base pairs for the linear map (256; --quick: 64)")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--vision-layer", type=int, default=None)
    ap.add_argument("--text-layer", type=int, default=None)
    ap.add_argument("--rule", default="midpoint", choices=["midpoint", "gauss"])
    ap.add_argument("--png", default=None, help="folder for the explanation PNGs (default steps only)")
    args = ap.parse_args()

    import torch

    from vlalign.datasets.readers import read_emoji
    from vlalign.encoders import load_encoder

    torch.set_num_threads(args.threads)
    if args.base_size is None:
        args.base_size = 64 if args.quick else 256
    items = [s for s in args.items.split(",") if s][: 1 if args.quick else None]
    steps_list = [DEFAULT_STEPS] if args.quick else [int(s) for s in (args.steps or "64,4,8,16,32,128").split(",")]
    print(f"threads {args.threads}, load average {os.getloadavg()[0]:.2f}, torch {torch.__version__}")

    t = time.perf_counter()
    venc = load_encoder("mobilenetv2", device="cpu", threads=args.threads)
    tenc = load_encoder("minilm-l6", device="cpu", threads=args.threads)
    print(f"load models: {time.perf_counter() - t:.2f} s")
    tab = read_emoji(domains=["google"], langs=["en"]).items
    ids, imgs, caps = tab["item_id"].to_pylist(), tab["image_bytes"].to_pylist(), tab["caption"].to_pylist()
    explained = set(items)
    pool = [k for k, i in enumerate(ids) if i not in explained]
    pick = sorted(np.random.default_rng(0).choice(len(pool), size=args.base_size, replace=False))
    t = time.perf_counter()
    base = (venc.encode([imgs[pool[k]] for k in pick]), tenc.encode([caps[pool[k]] for k in pick]))
    print(f"embed {args.base_size} base pairs: {time.perf_counter() - t:.2f} s")
    index = {i: k for k, i in enumerate(ids)}

    explain_pair(imgs[index[items[0]]], caps[index[items[0]]], base_pairs=base, steps=2, threads=args.threads)
    opts = dict(vision_layer=args.vision_layer, text_layer=args.text_layer, rule=args.rule, threads=args.threads)
    print(f"{'item':<18} {'caption':<16} {'T':>2} {'grid':>5} {'steps':>5} {'seconds':>8} {'score':>8} "
          f"{'target':>8} {'residual':>10} {'relative':>9}")
    for item in items:
        img, cap = imgs[index[item]], caps[index[item]]
        for steps in steps_list:
            ex = explain_pair(img, cap, base_pairs=base, steps=steps, **opts)
            print(f"{item:<18} {cap[:16]:<16} {len(ex.tokens):>2} {ex.grid[0]:>2}x{ex.grid[1]:<2} {steps:>5} "
                  f"{ex.seconds:>8.2f} {ex.score:>8.4f} {ex.target:>8.4f} {ex.residual:>10.2e} "
                  f"{ex.relative_residual:>9.2e}")
            if args.png and steps == steps_list[0]:
                p = plot_explanation(ex, img, os.path.join(args.png, item.replace("/", "_") + ".png"))
                print("  top pairs:", [(r, c, tok, round(v, 4)) for r, c, tok, v in top_pairs(ex, 3)], "->", p)


if __name__ == "__main__":
    main()
