"""Shared fixtures: one real Prefect API server per test session, tiny COCO-format data sets, lakes."""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from chromium import chromium  # noqa: F401  (session fixture: headless Chromium path, skips if absent)

# Prefect reads its home and settings when first imported: point them at a throwaway folder first.
_HOME = tempfile.mkdtemp(prefix="vlalign-test-")
os.environ["VLALIGN_HOME"] = _HOME
os.environ["PREFECT_HOME"] = os.path.join(_HOME, ".prefect")
os.environ.pop("PREFECT_API_URL", None)
os.environ["VLALIGN_API_KEEP"] = "0"  # temporary API servers only: nothing outlives the test session
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from vlalign.flows.runtime import configure_environment  # noqa: E402

configure_environment(_HOME)

REPO = Path(__file__).resolve().parent.parent


PREFECT_DB = "prefect.db"  # Prefect's database in its home folder (the default database URL)
_MIGRATED_DB = Path(_HOME) / "prefect-migrated.db"


@pytest.fixture(scope="session")
def prefect_server():
    """A real Prefect API server (temporary, 127.0.0.1) shared by every test that runs a flow.

    Its database, as it is once the server answers (tables made, nothing run yet), is kept for
    :func:`seed_prefect_home`."""
    import sqlite3

    from vlalign.flows.runtime import prefect_api

    with prefect_api() as url:
        src, dst = sqlite3.connect(Path(os.environ["PREFECT_HOME"]) / PREFECT_DB), sqlite3.connect(_MIGRATED_DB)
        try:
            src.backup(dst)  # a consistent copy of a database in use
        finally:
            src.close()
            dst.close()
        yield url


@pytest.fixture
def seed_prefect_home(prefect_server):
    """seed(home): put an empty Prefect database with its tables made in the Prefect home folder ``home``, so
    that a server a test starts there skips making them (5-10 s of every fresh server's start-up)."""

    def seed(home: Path) -> Path:
        home.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(_MIGRATED_DB, home / PREFECT_DB)
        return home

    return seed


@pytest.fixture
def flows_on_threads(monkeypatch):
    """The flows of CLI commands run in this process (`main([...])`) on threads instead of a new LocalCluster,
    for tests that check nothing about Dask: no cluster to start, and each encoder is loaded once per test
    session instead of once per worker process. Fails the test if no command asked for a task runner."""
    from prefect.task_runners import ThreadPoolTaskRunner

    import vlalign.flows.runtime

    asked: list[int | None] = []
    automatic = vlalign.flows.runtime.task_runner

    def on_threads(address=None, n_workers=None, threads_per_worker=1):
        assert address is None, "a test on threads names no Dask scheduler"
        asked.append(n_workers)
        return ThreadPoolTaskRunner(max_workers=n_workers or 2)

    def command_runner(address=None, n_workers=None):
        asked.append(n_workers)
        return automatic(address, n_workers)  # threads; work above the light limit asks dask_task_runner (threads)

    monkeypatch.setattr(vlalign.flows.runtime, "dask_task_runner", on_threads)
    monkeypatch.setattr(vlalign.flows.runtime, "task_runner", command_runner)
    yield asked
    assert asked, "no flow asked vlalign.flows.runtime for its task runner"


def emoji_pngs(n: int, domain: str = "google") -> list[tuple[str, bytes]]:
    """The first ``n`` embedded emoji images of ``domain`` as (emoji_id, png bytes)."""
    import pyarrow.parquet as pq

    t = pq.read_table(REPO / "data" / "emoji" / "images.parquet")
    out = [(e, p) for e, d, p in zip(t["emoji_id"].to_pylist(), t["domain"].to_pylist(), t["png"].to_pylist()) if d == domain]
    return out[:n]


def emoji_names() -> dict[str, str]:
    import pyarrow.parquet as pq

    t = pq.read_table(REPO / "data" / "emoji" / "captions.parquet")
    return {e: c for e, lang, c in zip(t["emoji_id"].to_pylist(), t["lang"].to_pylist(), t["caption"].to_pylist()) if lang == "en"}


def make_coco(
    root: Path,
    n_images: int = 12,
    captions_per_image: int = 2,
    corrupt: int = 0,
    missing: int = 0,
    empty_captions: int = 0,
    truncated: int = 0,
    duplicate_ids: int = 0,
    domain: str = "google",
    first: int = 0,
) -> tuple[Path, Path]:
    """A COCO-captions folder made of real emoji images saved as JPEG (white background).

    The first ``corrupt`` images are garbage bytes (unreadable header), the next ``truncated`` are cut-off
    JPEGs (readable header, fail to decode), the next ``missing`` are listed but not on disk; the first
    ``empty_captions`` annotations have empty captions; ``duplicate_ids`` annotations repeat an id.
    ``domain``: the emoji style of the images (google or twitter); ``first``: skip that many emoji."""
    from PIL import Image

    img_dir = root / "images"
    img_dir.mkdir(parents=True, exist_ok=True)
    names = emoji_names()
    images, anns = [], []
    ann_id = 1000
    for i, (eid, png) in enumerate(emoji_pngs(first + n_images, domain)[first:]):
        fname = f"{i:06d}.jpg"
        images.append({"id": i + 1, "file_name": fname, "width": 64, "height": 64})
        im = Image.open(io.BytesIO(png)).convert("RGBA")
        bg = Image.new("RGBA", im.size, (255, 255, 255, 255))
        buf = io.BytesIO()
        Image.alpha_composite(bg, im).convert("RGB").save(buf, format="JPEG", quality=90)
        data = buf.getvalue()
        if i < corrupt:
            data = b"this is not a jpeg" * 10
        elif i < corrupt + truncated:
            data = data[: len(data) // 3]
        if not (corrupt + truncated <= i < corrupt + truncated + missing):
            (img_dir / fname).write_bytes(data)
        for c in range(captions_per_image):
            text = names[eid] if c == 0 else f"an emoji of {names[eid]}"
            anns.append({"id": ann_id, "image_id": i + 1, "caption": text})
            ann_id += 1
    for k in range(empty_captions):
        anns[-(k + 1) * captions_per_image]["caption"] = "   "
    for k in range(duplicate_ids):
        anns.append({"id": anns[k]["id"], "image_id": anns[k]["image_id"], "caption": "duplicate"})
    ann_path = root / "captions.json"
    ann_path.write_text(json.dumps({"images": images, "annotations": anns}))
    return ann_path, img_dir


@pytest.fixture
def coco_factory(tmp_path):
    def factory(**kw):
        return make_coco(tmp_path / "coco", **kw)

    return factory


VENV_BIN = Path(sys.executable).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def dask_cluster(prefect_server, tmp_path):
    """`dask scheduler` and `dask worker` (2 processes) started as separate programs on 127.0.0.1."""
    port = _free_port()
    env = {**os.environ, "PREFECT_API_URL": prefect_server}
    logs = tmp_path / "dask-logs"
    logs.mkdir()
    # each in a process group of its own, so that teardown can stop a program with every process it started
    sched = subprocess.Popen([str(VENV_BIN / "dask"), "scheduler", "--host", "127.0.0.1", "--port", str(port),
                              "--no-dashboard"], env=env, stdout=open(logs / "scheduler.log", "w"), stderr=subprocess.STDOUT,
                             start_new_session=True)
    address = f"tcp://127.0.0.1:{port}"
    workers = subprocess.Popen([str(VENV_BIN / "dask"), "worker", address, "--nworkers", "2", "--nthreads", "1",
                                "--no-dashboard", "--host", "127.0.0.1"], env=env,
                               stdout=open(logs / "workers.log", "w"), stderr=subprocess.STDOUT, start_new_session=True)
    from distributed import Client

    client = Client(address, timeout=60)
    client.wait_for_workers(2, timeout=120)
    try:
        yield address, client
    finally:
        client.close()
        stop_group(workers, sched)


def stop_group(*procs: subprocess.Popen, grace: float = 3.0) -> None:
    """SIGTERM to each process, then SIGKILL to the process group of each one still running after ``grace``
    seconds (the program and the processes it started).

    A worker process that ran torch sometimes takes 8 s to exit after a clean close (its nanny then kills it):
    nothing a test checks, so teardown does not wait for it."""
    for p in procs:
        p.terminate()
    deadline = time.monotonic() + grace
    for p in procs:
        try:
            p.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)  # still running: its group is still the one it leads
            p.wait()
