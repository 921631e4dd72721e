"""Load test: `vlalign extract` of a large synthetic data set with 6 encoders on 2 local Dask workers.

The data: N generated image-caption items (a shape of some colour, size and place on a background of another
colour, drawn with PIL at 96x96, with a caption that says so in one of several phrasings), written as
WebDataset tar shards of 1000 items (``--format coco`` writes an image folder and a COCO JSON instead).

The product: the real command line in a subprocess, ``vlalign extract --format webdataset --encoders <6>
--workers 2``, with its own background Prefect API server already started (as after a first command).

Measured, per size:
- wall time of the command, end to end;
- throughput against a bare model loop: for each encoder, a plain batched loop in one process (decode +
  preprocess + forward for images, encode for captions; torch with all cores, the workers' malloc settings)
  over a sample of the same items gives units/s; the bare time of the whole job is the sum over encoders of
  units / rate. Ratios: bare time / the command's wall time (end to end) and bare time / the window from the
  first shard's start to the last shard's end (steady state);
- peak RSS (sampled every 0.2 s with psutil) of the command's process (flow, Dask scheduler and nannies), of
  each Dask worker process, and of the Prefect API server.
Memory should not grow with N: the second size doubles the first.

    .venv/bin/python bench/bench_load.py                         # N = 10000 and 20000, 6 encoders, 2 workers
    .venv/bin/python bench/bench_load.py --sizes 2000 --quick    # a small check (2 encoders)
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import shutil
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from pathlib import Path

from bench_extract import flow_window  # first shard's start to last shard's end, from the shards' metadata

ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent
ENCODERS = ["mobilenetv2", "efficientnet-lite0", "efficientnet-lite1", "minilm-l6", "e5-small", "wordllama"]
QUICK_ENCODERS = ["mobilenetv2", "minilm-l6"]
COLOURS = {"red": (220, 40, 40), "green": (40, 170, 60), "blue": (40, 80, 220), "yellow": (240, 210, 40),
           "purple": (140, 60, 170), "orange": (245, 140, 30), "black": (20, 20, 20), "white": (250, 250, 250),
           "grey": (128, 128, 128), "pink": (245, 150, 190)}
SHAPES = ["circle", "square", "triangle", "diamond", "cross", "ring"]
SIZES = {"small": 0.25, "medium": 0.45, "large": 0.7}
PLACES = {"top left": (0.3, 0.3), "top right": (0.7, 0.3), "bottom left": (0.3, 0.7), "bottom right": (0.7, 0.7),
          "centre": (0.5, 0.5)}
PHRASES = ["a {size} {colour} {shape} on a {bg} background", "{size} {colour} {shape}, {place}, {bg} backdrop",
           "a drawing of a {colour} {shape} in the {place} corner", "{bg} square with a {size} {colour} {shape}",
           "the {place} of a {bg} canvas holds a {colour} {shape}"]


def synth_item(k: int, px: int = 96) -> tuple[bytes, str]:
    """Item k: a PNG and its caption (deterministic in k)."""
    from PIL import Image, ImageDraw

    rng = random.Random(k)
    colour, bg = rng.sample(list(COLOURS), 2)
    shape, size, place = rng.choice(SHAPES), rng.choice(list(SIZES)), rng.choice(list(PLACES))
    img = Image.new("RGB", (px, px), COLOURS[bg])
    d = ImageDraw.Draw(img)
    r = SIZES[size] * px / 2
    cx, cy = (v * px + rng.uniform(-4, 4) for v in PLACES[place])
    box = [cx - r, cy - r, cx + r, cy + r]
    fill = COLOURS[colour]
    if shape == "circle":
        d.ellipse(box, fill=fill)
    elif shape == "square":
        d.rectangle(box, fill=fill)
    elif shape == "triangle":
        d.polygon([(cx, cy - r), (cx + r, cy + r), (cx - r, cy + r)], fill=fill)
    elif shape == "diamond":
        d.polygon([(cx, cy - r), (cx + r, cy), (cx, cy + r), (cx - r, cy)], fill=fill)
    elif shape == "cross":
        w = r / 3
        d.rectangle([cx - w, cy - r, cx + w, cy + r], fill=fill)
        d.rectangle([cx - r, cy - w, cx + r, cy + w], fill=fill)
    else:
        d.ellipse(box, outline=fill, width=max(2, int(r / 3)))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    caption = rng.choice(PHRASES).format(size=size, colour=colour, shape=shape, bg=bg, place=place)
    return buf.getvalue(), f"{caption} (no. {k})"


def write_webdataset(folder: Path, n: int, per_shard: int = 1000) -> str:
    """N items as tar shards of ``per_shard``; returns the brace pattern."""
    folder.mkdir(parents=True, exist_ok=True)
    shards = (n + per_shard - 1) // per_shard
    for s in range(shards):
        path = folder / f"load-{s:05d}.tar"
        if path.exists():
            continue
        tmp = path.with_suffix(".tmp")
        with tarfile.open(tmp, "w") as tar:
            for k in range(s * per_shard, min(n, (s + 1) * per_shard)):
                png, cap = synth_item(k)
                for ext, data in (("png", png), ("txt", cap.encode())):
                    info = tarfile.TarInfo(f"{k:08d}.{ext}")
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))
        os.replace(tmp, path)
    return str(folder / f"load-{{00000..{shards - 1:05d}}}.tar")


def write_coco(folder: Path, n: int) -> tuple[str, str]:
    img = folder / "images"
    img.mkdir(parents=True, exist_ok=True)
    doc = {"images": [], "annotations": []}
    for k in range(n):
        png, cap = synth_item(k)
        p = img / f"{k:08d}.png"
        if not p.exists():
            p.write_bytes(png)
        doc["images"].append({"id": k, "file_name": p.name})
        doc["annotations"].append({"id": k, "image_id": k, "caption": cap})
    ann = folder / f"captions-{n}.json"
    ann.write_text(json.dumps(doc))
    return str(ann), str(img)


# ------------------------------------------------------------------ the bare reference
def bare_rate(encoder: str, sample: int, batch: int) -> float:
    """Units/s of a plain loop (in a fresh process with the workers' malloc settings), model load excluded."""
    from vlalign.flows.runtime import WORKER_MALLOC_ENV

    cmd = [sys.executable, __file__, "--bare", encoder, "--sample", str(sample), "--batch-size", str(batch)]
    res = subprocess.run(cmd, env={**os.environ, **WORKER_MALLOC_ENV}, capture_output=True, text=True, check=True)
    return float(json.loads(res.stdout.strip().splitlines()[-1])["rate"])


def _bare_main(encoder: str, sample: int, batch: int) -> None:
    import torch

    from vlalign.encoders import decode_image, get_encoder, load_encoder

    cores = os.cpu_count() or 1
    torch.set_num_threads(cores)
    enc = load_encoder(encoder, device="cpu", threads=cores, batch_size=batch)
    items = [synth_item(k) for k in range(sample)]
    vision = get_encoder(encoder).modality == "vision"
    enc.encode([decode_image(items[0][0])] if vision else [items[0][1]])  # warm-up
    t0 = time.perf_counter()
    for i in range(0, sample, batch):
        chunk = items[i:i + batch]
        enc.encode([decode_image(p) for p, _ in chunk] if vision else [c for _, c in chunk])
    print(json.dumps({"rate": sample / (time.perf_counter() - t0)}))


# ------------------------------------------------------------------ memory of the process tree
class TreeSampler:
    """Peak RSS per role (command, worker <pid>, api server) of a process tree, sampled every ``every`` s."""

    def __init__(self, root_pid: int, every: float = 0.2, extra: tuple[int, ...] = ()):
        import psutil

        self.root = psutil.Process(root_pid)
        self.extra = [psutil.Process(p) for p in extra]
        self.every = every
        self.peak: dict[str, float] = {}
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def role(self, p) -> str | None:
        if p.pid == self.root.pid:
            return "command (flow + scheduler + nannies)"
        try:
            cmd = " ".join(p.cmdline())
        except Exception:  # noqa: BLE001 - a process that just ended
            return None
        if "resource_tracker" in cmd:
            return None
        if "apiserver" in cmd or "uvicorn" in cmd:
            return "prefect api server"
        if "multiprocessing" in cmd or "spawn_main" in cmd or "forkserver" in cmd:
            return f"worker {p.pid}"
        return f"other {p.pid}"

    def _run(self) -> None:
        import psutil

        while not self._stop.is_set():
            try:
                procs = [self.root] + self.root.children(recursive=True) + self.extra
            except psutil.NoSuchProcess:
                return
            for p in procs:
                try:
                    rss = p.memory_info().rss / 2**20
                except psutil.Error:
                    continue
                r = self.role(p)
                if r:
                    self.peak[r] = max(self.peak.get(r, 0.0), rss)
            time.sleep(self.every)

    def __enter__(self):
        self._t.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join()


def run_size(n: int, work: Path, encoders: list[str], fmt: str, workers: int, rates: dict[str, float]) -> dict:
    data = work / "data"
    t0 = time.perf_counter()
    if fmt == "webdataset":
        args = ["--format", "webdataset", "--images", write_webdataset(data / "wds", n)]
    else:
        ann, img = write_coco(data / "coco", n)
        args = ["--format", "coco", "--annotations", ann, "--images", img]
    t_data = time.perf_counter() - t0
    lake = work / f"lake-{n}"
    shutil.rmtree(lake, ignore_errors=True)
    cmd = [str(VENV_BIN / "vlalign"), "extract", "--dataset", f"load{n}", *args, "--encoders", ",".join(encoders),
           "--workers", str(workers), "--lake", str(lake)]
    t0 = time.perf_counter()
    log = open(work / f"extract-{n}.log", "w")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=work)
    api = json.loads((Path(os.environ["PREFECT_HOME"]) / "vlalign-api.json").read_text())["pid"]
    with TreeSampler(proc.pid, extra=(api,)) as mem:
        rc = proc.wait()
    wall = time.perf_counter() - t0
    log.close()
    if rc != 0:
        sys.exit(f"vlalign extract failed (exit {rc}); see {work / f'extract-{n}.log'}")
    bare = sum(n / rates[e] for e in encoders)
    window = flow_window(str(lake))
    return {"n": n, "data_seconds": t_data, "wall": wall, "window": window, "bare": bare, "peak": mem.peak}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="10000,20000", help="comma-separated item counts (default 10000,20000)")
    ap.add_argument("--encoders", default=None, help=f"comma-separated (default: {','.join(ENCODERS)})")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--format", default="webdataset", choices=["webdataset", "coco"])
    ap.add_argument("--sample", type=int, default=400, help="items per encoder for the bare loop's rate")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--work", default=None, help="working folder (kept; default: a temporary one, removed)")
    ap.add_argument("--quick", action="store_true", help="2 encoders, sizes 1000,2000, sample 100")
    ap.add_argument("--bare", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.bare:
        _bare_main(args.bare, args.sample, args.batch_size)
        return
    encoders = args.encoders.split(",") if args.encoders else (QUICK_ENCODERS if args.quick else ENCODERS)
    sizes = [1000, 2000] if args.quick and args.sizes == "10000,20000" else [int(s) for s in args.sizes.split(",")]
    sample = 100 if args.quick else args.sample
    work = Path(args.work or tempfile.mkdtemp(prefix="bench-load-")).resolve()
    work.mkdir(parents=True, exist_ok=True)
    env_home = work / "home"
    (env_home / ".prefect").mkdir(parents=True, exist_ok=True)
    os.environ["VLALIGN_HOME"] = str(env_home)
    os.environ["PREFECT_HOME"] = str(env_home / ".prefect")
    os.environ.pop("PREFECT_API_URL", None)

    print(f"machine: {os.cpu_count()} cores; encoders: {', '.join(encoders)}; {args.workers} workers; "
          f"format {args.format}; batch {args.batch_size}")
    rates = {e: bare_rate(e, sample, args.batch_size) for e in encoders}
    for e, r in rates.items():
        print(f"  bare loop {e:<20} {r:8.1f} units/s  (1 process, {os.cpu_count()} torch threads, sample {sample})")
    # the background API server of this home, started once (as after a user's first command)
    from vlalign.flows.runtime import configure_environment, prefect_api

    configure_environment(env_home)
    with prefect_api():
        pass
    rows = [run_size(n, work, encoders, args.format, args.workers, rates) for n in sizes]
    for r in rows:
        print(f"\nN = {r['n']} items ({len(encoders)} encoders, {r['n'] * len(encoders)} embeddings); "
              f"data written in {r['data_seconds']:.0f}s (not timed)")
        print(f"  wall {r['wall']:7.1f} s end to end; shard window {r['window']:7.1f} s; bare loop estimate "
              f"{r['bare']:7.1f} s")
        print(f"  ratio flow / bare: end to end {r['bare'] / r['wall']:.2f}, steady state {r['bare'] / r['window']:.2f}")
        vision = [e for e in encoders if e in ENCODERS[:3] or e.startswith(("timm/", "hf/"))]
        print(f"  images/s (all vision encoders, end to end): {r['n'] * len(vision) / r['wall']:.1f}")
        for role in sorted(r["peak"]):
            print(f"  peak RSS {role:<40} {r['peak'][role]:8.0f} MiB")
    if len(rows) > 1:
        def workers_peak(r):
            return max((v for k, v in r["peak"].items() if k.startswith("worker")), default=0.0)

        a, b = rows[0], rows[-1]
        print(f"\nmemory as N goes {a['n']} -> {b['n']}: worker peak {workers_peak(a):.0f} -> {workers_peak(b):.0f} MiB, "
              f"command {a['peak'].get('command (flow + scheduler + nannies)', 0):.0f} -> "
              f"{b['peak'].get('command (flow + scheduler + nannies)', 0):.0f} MiB")
    from vlalign.flows.apiserver import HomeServer

    HomeServer(Path(os.environ["PREFECT_HOME"]), 0).stop()
    if not args.work:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
