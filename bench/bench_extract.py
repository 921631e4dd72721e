"""Extraction flow vs a bare batched forward loop: the same model, images and threads, in one run.

The flow: Prefect flow -> Dask LocalCluster (W worker processes x 1 thread, torch pinned to cores/W threads
each) -> shards of S images -> atomic Parquet. The reference: one process, torch with all cores, a plain
loop of decode + preprocess + forward over batches of the same size, results kept in memory. The reference
runs in a subprocess with the same glibc malloc settings the flow gives its workers (WORKER_MALLOC_ENV), so
that both sides get the same allocator; a second reference line shows a bare loop with glibc's defaults.

Both include loading the model (the flow loads it once per worker). The flow's time also includes starting
the Dask cluster, reading the items and planning; the Prefect API server is started before timing (it is
shared by every run of a session or a deployment).

    .venv/bin/python bench/bench_extract.py [--n 1906] [--encoder mobilenetv2] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np


def bare_loop(encoder: str, images: list[bytes], batch_size: int, threads: int) -> tuple[float, float, np.ndarray]:
    """(seconds including the model load, seconds of the loop alone, embeddings)."""
    import torch

    from vlalign.encoders import decode_image, load_encoder

    torch.set_num_threads(threads)
    t0 = time.perf_counter()
    enc = load_encoder(encoder, device="cpu", threads=threads, batch_size=batch_size)
    t1 = time.perf_counter()
    out = []
    for i in range(0, len(images), batch_size):
        batch = [decode_image(b) for b in images[i : i + batch_size]]
        out.append(enc.encode(batch))
    t2 = time.perf_counter()
    return t2 - t0, t2 - t1, np.concatenate(out)


def flow_window(lake_root: str) -> float:
    """Seconds from the first shard's start to the last shard's end (file time minus the shard's own seconds)."""
    import glob

    import pyarrow.parquet as pq

    starts, ends = [], []
    for f in glob.glob(os.path.join(lake_root, "embeddings", "**", "*.parquet"), recursive=True):
        md = json.loads(pq.read_schema(f).metadata[b"vlalign"])
        end = os.path.getmtime(f)
        starts.append(end - md["seconds"])
        ends.append(end)
    return max(ends) - min(starts)


def bare_subprocess(encoder: str, n: int, batch_size: int, threads: int, env: dict, out: str) -> tuple[float, float]:
    """Run the bare loop in a fresh process (malloc settings are read at process start)."""
    cmd = [sys.executable, __file__, "--bare-out", out, "--encoder", encoder, "--n", str(n),
           "--batch-size", str(batch_size), "--threads", str(threads)]
    res = subprocess.run(cmd, env={**os.environ, **env}, capture_output=True, text=True, check=True)
    d = json.loads(res.stdout.strip().splitlines()[-1])
    return float(d["seconds"]), float(d["loop_seconds"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=3812, help="number of emoji images (both domains: 3812)")
    ap.add_argument("--encoder", default="mobilenetv2")
    ap.add_argument("--shard-size", type=int, default=256)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--quick", action="store_true", help="n=400")
    ap.add_argument("--bare-out", default=None, help=argparse.SUPPRESS)  # internal: run the bare loop only
    ap.add_argument("--threads", type=int, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    n = 400 if args.quick else args.n
    cores = os.cpu_count() or 1

    if args.bare_out:
        imgs = emoji_images()[1][:n]
        secs, loop_secs, emb = bare_loop(args.encoder, imgs, args.batch_size, args.threads or cores)
        np.save(args.bare_out, emb)
        print(json.dumps({"seconds": secs, "loop_seconds": loop_secs}))
        return

    from vlalign.datalake.store import Lake
    from vlalign.datasets.readers import DatasetSource
    from vlalign.flows.extract import extract_flow
    from vlalign.flows.runtime import configure_environment, dask_task_runner, prefect_api

    work = tempfile.mkdtemp(prefix="bench-extract-")
    configure_environment(work)
    ids, images = (v[:n] for v in emoji_images())

    # a COCO-format copy of the first n images, so the flow embeds exactly these

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

    from vlalign.flows.runtime import WORKER_MALLOC_ENV

    ref_path = os.path.join(work, "bare.npy")
    t_bare, loop_bare = bare_subprocess(args.encoder, n, args.batch_size, cores, WORKER_MALLOC_ENV, ref_path)
    ref = np.load(ref_path)
    t_plain, _ = bare_subprocess(args.encoder, n, args.batch_size, cores, {}, os.path.join(work, "plain.npy"))

    with prefect_api(keep=0):  # a temporary API server: nothing outlives the benchmark
        lake_root = os.path.join(work, "lake")
        t0 = time.perf_counter()
        extract_flow.with_options(task_runner=dask_task_runner(None, args.workers))(
            dataset=DatasetSource("bench", "coco", ann, img_dir), encoders=[args.encoder], lake_root=lake_root,
            shard_size=args.shard_size, batch_size=args.batch_size,
        )
        t_flow = time.perf_counter() - t0

    from vlalign.encoders import get_encoder

    window = flow_window(lake_root)
    got_ids, got = lake_embeddings(lake_root, "bench", get_encoder(args.encoder).lake_name)
    order = np.argsort([int(i) for i in got_ids])  # image k of the COCO copy is emoji k
    diff = float(np.max(np.abs(got[order] - ref)))
    shutil.rmtree(work, ignore_errors=True)

    print(f"encoder {args.encoder}, n = {n} emoji images (64x64 PNG; model input from its timm config), batch {args.batch_size}")
    print(f"bare loop, 1 process x {cores} torch threads, same malloc env: {t_bare:6.1f} s end to end "
          f"({n / t_bare:5.1f} img/s), loop alone {loop_bare:6.1f} s ({n / loop_bare:5.1f} img/s)")
    print(f"  (the same loop with glibc's default malloc settings: {t_plain:6.1f} s, {n / t_plain:5.1f} img/s)")
    print(f"flow, {args.workers} Dask workers x 1 thread, shards of {args.shard_size}: {t_flow:6.1f} s end to end "
          f"({n / t_flow:5.1f} img/s), first shard start to last shard end {window:6.1f} s ({n / window:5.1f} img/s)")
    print(f"throughput ratio flow / bare, steady state (loop alone vs shard window) = {loop_bare / window:.2f}  (target >= 0.85)")
    print(f"throughput ratio flow / bare, end to end (cluster start, ingest, model loads included) = {t_bare / t_flow:.2f}")
    print(f"max |flow - bare| over all embeddings = {diff:.2e}")


def lake_embeddings(lake_root: str, dataset: str, lake_name: str) -> tuple[list[str], np.ndarray]:
    """Every embedding of one encoder in the lake, read straight from its shard files: (unit ids, (n, d))."""
    import glob

    import pyarrow.parquet as pq

    ids, rows = [], []
    for f in sorted(glob.glob(os.path.join(lake_root, "embeddings", f"dataset={dataset}", f"encoder={lake_name}", "*", "*", "*.parquet"))):
        t = pq.read_table(f)
        ids += t["unit_id"].to_pylist()
        rows += t["embedding"].to_pylist()
    return ids, np.asarray(rows, dtype=np.float32)


def emoji_images() -> tuple[list[str], list[bytes]]:
    from vlalign.datasets.readers import read_emoji

    items = read_emoji(langs=["en"]).items
    return items["image_id"].to_pylist(), items["image_bytes"].to_pylist()


if __name__ == "__main__":
    main()
