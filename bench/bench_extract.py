"""Extraction flow vs a bare batched forward loop: the same model, images and threads, in one run.

The flow: Prefect flow -> Dask LocalCluster (W worker processes x 1 thread, torch pinned to cores/W threads
each) -> shards of S images -> atomic Parquet. The reference: one process, torch with all cores, a plain
loop of decode + preprocess + forward over batches of the same size, results kept in memory.

Both include loading the model (the flow loads it once per worker). The flow's time also includes starting
the Dask cluster, reading the items and planning; the Prefect API server is started before timing (it is
shared by every run of a session or a deployment).

    .venv/bin/python bench/bench_extract.py [--n 1906] [--encoder mobilenetv2] [--quick]
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time

import numpy as np


def bare_loop(encoder: str, images: list[bytes], batch_size: int, threads: int) -> tuple[float, np.ndarray]:
    import torch

    from vlalign.encoders import decode_image, load_encoder

    torch.set_num_threads(threads)
    t0 = time.perf_counter()
    enc = load_encoder(encoder, device="cpu", threads=threads, batch_size=batch_size)
    out = []
    for i in range(0, len(images), batch_size):
        batch = [decode_image(b) for b in images[i : i + batch_size]]
        out.append(enc.encode(batch))
    return time.perf_counter() - t0, np.concatenate(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1906, help="number of emoji images (google domain)")
    ap.add_argument("--encoder", default="mobilenetv2")
    ap.add_argument("--shard-size", type=int, default=256)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--quick", action="store_true", help="n=400")
    args = ap.parse_args()
    n = 400 if args.quick else args.n
    cores = os.cpu_count() or 1

    from flows.extract import extract_flow
    from flows.runtime import configure_environment, dask_task_runner, prefect_api
    from vlalign.extract import read_embeddings
    from vlalign.lake import Lake
    from vlalign.readers import DatasetSource, read_emoji

    work = tempfile.mkdtemp(prefix="bench-extract-")
    configure_environment(work)
    items = read_emoji(domains=["google"], langs=["en"]).items
    ids = items["image_id"].to_pylist()[:n]
    images = items["image_bytes"].to_pylist()[:n]

    # a COCO-format copy of the first n images, so the flow embeds exactly these
    import json

    img_dir = os.path.join(work, "images")
    os.makedirs(img_dir)
    coco = {"images": [], "annotations": []}
    for k, (iid, png) in enumerate(zip(ids, images)):
        with open(os.path.join(img_dir, f"{k:05d}.png"), "wb") as f:
            f.write(png)
        coco["images"].append({"id": k, "file_name": f"{k:05d}.png"})
        coco["annotations"].append({"id": k, "image_id": k, "caption": iid})
    ann = os.path.join(work, "captions.json")
    with open(ann, "w") as f:
        json.dump(coco, f)

    t_bare, ref = bare_loop(args.encoder, images, args.batch_size, cores)

    with prefect_api():
        lake_root = os.path.join(work, "lake")
        t0 = time.perf_counter()
        extract_flow.with_options(task_runner=dask_task_runner(None, args.workers))(
            dataset=DatasetSource("bench", "coco", ann, img_dir), encoders=[args.encoder], lake_root=lake_root,
            shard_size=args.shard_size, batch_size=args.batch_size,
        )
        t_flow = time.perf_counter() - t0

    from vlalign.encoders import get_encoder

    got_ids, got = read_embeddings(Lake.open(lake_root), "bench", get_encoder(args.encoder).lake_name)
    order = np.argsort([int(i) for i in got_ids])
    diff = float(np.max(np.abs(got[order] - ref)))
    shutil.rmtree(work, ignore_errors=True)

    print(f"encoder {args.encoder}, n = {n} images (64x64 PNG, model input from its timm config), batch {args.batch_size}")
    print(f"bare loop : 1 process x {cores} torch threads            {t_bare:7.1f} s  {n / t_bare:6.1f} img/s")
    print(f"flow      : {args.workers} Dask workers x 1 thread, shards of {args.shard_size}  {t_flow:7.1f} s  {n / t_flow:6.1f} img/s")
    print(f"throughput ratio flow / bare = {t_bare / t_flow:.2f}  (target >= 0.85)")
    print(f"max |flow - bare| over all embeddings = {diff:.2e}")


if __name__ == "__main__":
    main()
