"""Where a command's work runs: small work in the command's own process (no Dask cluster to start and stop), work
above the light limit on a LocalCluster, and everything on Dask when the user names workers or a scheduler."""

from __future__ import annotations

import pytest

from vlalign.cli.main import main

pytestmark = pytest.mark.slow


@pytest.fixture
def clusters(monkeypatch):
    """Every LocalCluster runner a command asks for (the real one is made)."""
    import vlalign.flows.runtime as runtime

    asked, real = [], runtime.dask_task_runner

    def recording(address=None, n_workers=None, threads_per_worker=1):
        asked.append((address, n_workers))
        return real(address, n_workers, threads_per_worker)

    monkeypatch.setattr(runtime, "dask_task_runner", recording)
    return asked


def _extract(coco, lake_root, *extra):
    annotations, images = coco
    return main(["extract", "--dataset", "tiny", "--format", "coco", "--images", str(images),
                 "--annotations", str(annotations), "--encoders", "mobilenetv2", "--lake", str(lake_root),
                 "--shard-size", "4", *extra])


def _embedded(lake_root) -> int:
    import pyarrow.parquet as pq

    return sum(pq.read_metadata(p).num_rows for p in (lake_root / "embeddings").rglob("*.parquet"))


def test_small_work_runs_in_the_command_and_starts_no_cluster(prefect_server, coco_factory, clusters, tmp_path):
    coco = coco_factory(n_images=6)
    assert _extract(coco, tmp_path / "lake") == 0
    assert clusters == []  # no LocalCluster for 6 images
    assert _embedded(tmp_path / "lake") > 0
    assert _extract(coco, tmp_path / "lake") == 0  # the rerun: nothing to do, nothing started
    assert clusters == []


def test_work_above_the_light_limit_runs_on_a_local_cluster(prefect_server, coco_factory, clusters, tmp_path,
                                                            monkeypatch):
    monkeypatch.setenv("VLALIGN_LIGHT_ITEMS", "0")
    coco = coco_factory(n_images=6)
    assert _extract(coco, tmp_path / "lake") == 0
    assert clusters == [(None, None)]  # one LocalCluster, for the embedding sub-flow
    n = _embedded(tmp_path / "lake")
    assert n > 0
    assert _extract(coco, tmp_path / "lake") == 0  # nothing left to embed: no cluster
    assert clusters == [(None, None)] and _embedded(tmp_path / "lake") == n


def test_named_workers_run_everything_on_dask(monkeypatch):
    import vlalign.flows.runtime as runtime

    asked = []
    monkeypatch.setattr(runtime, "dask_task_runner", lambda a=None, n=None, t=1: asked.append((a, n)) or "dask")
    assert runtime.task_runner(None, 2) == "dask" and runtime.task_runner("tcp://127.0.0.1:1", None) == "dask"
    assert asked == [(None, 2), ("tcp://127.0.0.1:1", None)]
    auto = runtime.task_runner(None, None)
    assert isinstance(auto, runtime.Automatic) and asked == [(None, 2), ("tcp://127.0.0.1:1", None)]


@pytest.mark.parametrize("raw, ok", [("12", 12), ("", None), ("x", "error")])
def test_the_light_limit_is_read_from_the_environment(raw, ok, monkeypatch):
    import vlalign.flows.runtime as runtime

    monkeypatch.setenv("VLALIGN_LIGHT_CELLS", raw)
    if ok == "error":
        with pytest.raises(ValueError, match="VLALIGN_LIGHT_CELLS"):
            runtime.light_limit("cells")
    else:
        assert runtime.light_limit("cells") == (ok if ok is not None else runtime.LIGHT_CELLS)


def test_sub_flows_take_handles_not_batches():
    """A sub-flow's parameters go to the Prefect API, which refuses more than 512 KB (the default sweep's 140 cells
    serialise to 1.4 MB): the batch stays in this process and the sub-flow gets its name."""
    import inspect

    import vlalign.flows.runtime as runtime
    from vlalign.flows.extract import embed_shards_on_cluster
    from vlalign.flows.sweep import score_cells_on_cluster

    for sub in (embed_shards_on_cluster, score_cells_on_cluster):
        first = next(iter(inspect.signature(sub.fn).parameters.values()))
        assert first.annotation in (str, "str"), sub.name
    batch = [object() for _ in range(3)]
    with runtime.batch_handle(batch) as name:
        assert isinstance(name, str) and len(name) < 64 and runtime.batch_of(name) is batch
    with pytest.raises(RuntimeError, match="no batch"):
        runtime.batch_of(name)
