"""The extraction flow, for real: a Prefect server, Dask worker processes, pretrained encoders, Parquet.

Covers the foundation issue's checks: rejects with reasons, resume computes only missing shards,
kill -9 of the whole run and of one worker, a separately started `dask scheduler` + `dask worker`.
The tests of Dask itself (task runs reported from worker processes, kill -9 of the CLI with its cluster, a
killed worker of a separately started cluster) run on real worker processes; the rejects and resume checks
run the same flow on threads of this process, which loads each encoder once per test session."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from vlalign.datalake.store import TMP_MARK, Lake
from vlalign.datasets.readers import DatasetSource

pytestmark = pytest.mark.slow
VENV_BIN = Path(sys.executable).parent
ENCODERS = ["mobilenetv2", "minilm-l6"]
# On fresh Dask workers: the text encoder that loads fastest (each worker loads its models again)
DASK_ENCODERS = ["mobilenetv2", "wordllama"]


def shard_files(lake_root: Path) -> dict[str, tuple[int, int]]:
    """shard path -> (inode, mtime_ns): a rewritten file gets a new inode (atomic rename)."""
    out = {}
    for p in (lake_root / "embeddings").rglob("*.parquet"):
        st = p.stat()
        out[str(p)] = (st.st_ino, st.st_mtime_ns)
    return out


def temporaries(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if TMP_MARK in p.name]


def units_per_encoder(lake_root: Path) -> dict[str, list[str]]:
    import pyarrow.parquet as pq

    out: dict[str, list[str]] = {}
    for p in (lake_root / "embeddings").rglob("*.parquet"):
        enc = next(part for part in p.parts if part.startswith("encoder=")).split("=", 1)[1]
        out.setdefault(enc, []).extend(pq.read_table(p, columns=["unit_id"])["unit_id"].to_pylist())
    return out


def run_extract(source, lake_root, shard_size=4, address=None, workers=2, encoders=ENCODERS, in_process=False):
    """The extraction flow on a Dask cluster; ``in_process``: on threads of this process (no cluster)."""
    from prefect.task_runners import ThreadPoolTaskRunner

    from vlalign.flows.extract import extract_flow
    from vlalign.flows.runtime import dask_task_runner

    runner = ThreadPoolTaskRunner(max_workers=workers) if in_process else dask_task_runner(address, workers)
    return extract_flow.with_options(task_runner=runner)(
        dataset=source, encoders=encoders, lake_root=str(lake_root), shard_size=shard_size
    )


def test_flow_embeds_every_item_once_and_records_three_rejects(prefect_server, coco_factory, tmp_path):
    ann, img = coco_factory(n_images=16, captions_per_image=1, corrupt=1, missing=1, empty_captions=1)
    lake_root = tmp_path / "lake"
    result = run_extract(DatasetSource("tiny", "coco", str(ann), str(img)), lake_root, in_process=True)

    from vlalign.datalake.catalog import query

    rejects = query(Lake.open(lake_root), "select stage, image_id, reason from rejects order by stage, image_id").to_pylist()
    assert len(rejects) == 3 and result["rejects"] == 3
    # the missing file and the empty caption on read; the garbage image where it is decoded, by the vision encoder
    assert [(r["stage"], r["image_id"]) for r in rejects] == [("extract:mobilenetv2__avg", "1"), ("read", "16"), ("read", "2")]
    assert "cannot decode image" in rejects[0]["reason"] and "000000.jpg" in rejects[0]["reason"]
    assert "missing image file" in rejects[2]["reason"] and rejects[1]["reason"] == "empty caption"
    units = units_per_encoder(lake_root)
    # 16 images: 1 missing, 1 whose only caption is empty -> 14 items; the garbage image is not embedded
    assert sorted(units) == ["minilm-l6__mean", "mobilenetv2__avg"]
    assert len(units["mobilenetv2__avg"]) == len(set(units["mobilenetv2__avg"])) == 13
    assert len(units["minilm-l6__mean"]) == len(set(units["minilm-l6__mean"])) == 14

    # a rerun computes nothing and rewrites nothing
    before = shard_files(lake_root)
    again = run_extract(DatasetSource("tiny", "coco", str(ann), str(img)), lake_root, in_process=True)
    assert again["shards_computed"] == 0 and shard_files(lake_root) == before

    # a lost shard and a killed writer's temporary: only that shard is recomputed, the temporary removed
    victim = sorted(before)[1]
    os.remove(victim)
    Path(victim + TMP_MARK + "dead").write_bytes(b"half a file")
    third = run_extract(DatasetSource("tiny", "coco", str(ann), str(img)), lake_root, in_process=True)
    assert third["shards_computed"] == 1
    after = shard_files(lake_root)
    assert {k: v for k, v in after.items() if k != victim} == {k: v for k, v in before.items() if k != victim}
    assert victim in after and not temporaries(lake_root)


def test_one_api_server_records_every_task_of_the_run(prefect_server, coco_factory, tmp_path):
    """Worker processes report to the parent's server: had a worker started its own temporary server, its
    task runs would be missing here."""
    import asyncio

    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    from vlalign.flows.extract import extract_flow
    from vlalign.flows.runtime import dask_task_runner

    ann, img = coco_factory(n_images=8, captions_per_image=1)  # one text encoder, one item a shard: 8 task runs
    state = extract_flow.with_options(task_runner=dask_task_runner(None, 2))(
        dataset=DatasetSource("one", "coco", str(ann), str(img)), encoders=["wordllama"],
        lake_root=str(tmp_path / "lake"), shard_size=1, return_state=True)
    result = state.result()

    async def task_runs():
        async with get_client() as client:
            runs = await client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[state.state_details.flow_run_id])))
            return [(r.name, r.state_type.value) for r in runs]

    runs = asyncio.run(task_runs())
    embeds = [r for r in runs if r[0].startswith("embed-")]
    assert result["shards_computed"] == 8 and len(embeds) == 8
    assert all(state == "COMPLETED" for _, state in embeds)


def test_truncated_jpeg_is_rejected_at_decode_and_the_rest_embedded(prefect_server, coco_factory, tmp_path):
    ann, img = coco_factory(n_images=6, captions_per_image=1, truncated=1)
    lake_root = tmp_path / "lake"
    result = run_extract(DatasetSource("t", "coco", str(ann), str(img)), lake_root, workers=1, in_process=True)
    assert result["rejects"] == 1
    units = units_per_encoder(lake_root)
    assert len(units["mobilenetv2__avg"]) == 5 and len(units["minilm-l6__mean"]) == 6


def _cli(args, env, **kw):
    return subprocess.Popen([str(VENV_BIN / "vlalign"), *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, **kw)


def _wait_for(cond, timeout, what):
    t0 = time.time()
    while time.time() - t0 < timeout:
        if cond():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def test_kill_9_of_the_whole_run_then_rerun(prefect_server, coco_factory, tmp_path):
    n = 16  # images, one caption each: n shards of 2 items over the two encoders
    ann, img = coco_factory(n_images=n, captions_per_image=1)
    lake_root = tmp_path / "lake"
    args = ["extract", "--dataset", "k9", "--format", "coco", "--annotations", str(ann), "--images", str(img),
            "--encoders", ",".join(DASK_ENCODERS), "--shard-size", "2", "--lake", str(lake_root), "--workers", "2"]
    env = {**os.environ, "PREFECT_API_URL": prefect_server}
    proc = _cli(args, env, start_new_session=True)
    _wait_for(lambda: len(shard_files(lake_root)) >= 3, 240, "three shards before the kill")
    os.killpg(proc.pid, signal.SIGKILL)  # the CLI, the Dask scheduler and every worker
    proc.wait()
    written_before = shard_files(lake_root)
    assert 3 <= len(written_before) < n, "the kill should land mid-run"

    rerun = _cli(args, env)
    out, _ = rerun.communicate(timeout=600)
    assert rerun.returncode == 0, out
    after = shard_files(lake_root)
    for path, ident in written_before.items():  # shards written before the kill are not rewritten
        assert after[path] == ident, path
    units = units_per_encoder(lake_root)
    for enc, ids in units.items():  # every item exactly once per encoder
        assert len(ids) == len(set(ids)) == n, enc
    assert not temporaries(lake_root)


def test_existing_cluster_survives_a_killed_worker(dask_cluster, coco_factory, tmp_path):
    address, client = dask_cluster
    n = 12  # images, one caption each: n shards of 2 items over the two encoders
    ann, img = coco_factory(n_images=n, captions_per_image=1)
    lake_root = tmp_path / "lake"
    pids = list(client.run(os.getpid).values())
    assert len(pids) == 2 and os.getpid() not in pids

    import threading

    def kill_one_worker_mid_run():
        _wait_for(lambda: len(shard_files(lake_root)) >= 2, 240, "two shards")
        os.kill(pids[0], signal.SIGKILL)  # the nanny restarts it; Dask reschedules its task

    killer = threading.Thread(target=kill_one_worker_mid_run, daemon=True)
    killer.start()
    result = run_extract(DatasetSource("ext", "coco", str(ann), str(img)), lake_root, shard_size=2, address=address,
                         encoders=DASK_ENCODERS)
    killer.join(timeout=5)
    units = units_per_encoder(lake_root)
    for enc, ids in units.items():
        assert len(ids) == len(set(ids)) == n, enc
    assert result["shards_planned"] == n
    assert not temporaries(lake_root)
    with pytest.raises(ProcessLookupError):
        os.kill(pids[0], 0)  # the killed worker really died
