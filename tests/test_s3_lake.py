"""The lake on object storage: moto's S3 server (a real HTTP server in its own process on 127.0.0.1) stands in
for S3. A catalog built from run records, the sealed query door confined to the lake's prefix, credentials
and endpoint the fsspec/boto way (fast tests); and a real sweep (mobilenetv2 x wordllama, 40 images)
written to the bucket, rerun without recomputing, resumed after losing one shard and one cell, queried
with `vlalign query` and checked against the Parquet files read back with pyarrow + s3fs (slow tests)."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import time
import urllib.request

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from conftest import VENV_BIN, _free_port, make_coco

from vlalign.datalake.catalog import CATALOG, query, refresh_catalog
from vlalign.datalake.sqldoor import QueryError, open_door
from vlalign.datalake.store import Lake, lake_filesystem

BUCKET = "vlalign-test"
LAKE = f"s3://{BUCKET}/lake"
KEYS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    """moto_server on a free port; the AWS variables (endpoint included) in this process's environment, so
    that everything this process starts (Dask workers, the CLI) inherits them. Yields the endpoint URL."""
    port = _free_port()
    endpoint = f"http://127.0.0.1:{port}"
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    proc = subprocess.Popen([str(VENV_BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
                            stdout=open(log, "w"), stderr=subprocess.STDOUT)
    t0 = time.time()
    while True:
        try:
            urllib.request.urlopen(endpoint + "/", timeout=1)  # ListBuckets: 200 once it serves
            break
        except OSError:
            if proc.poll() is not None or time.time() - t0 > 60:
                proc.kill()
                raise RuntimeError(f"moto_server did not start: {log.read_text()[-2000:]}")
            time.sleep(0.1)
    with pytest.MonkeyPatch.context() as mp:
        for k, v in {**KEYS, "AWS_ENDPOINT_URL": endpoint,
                     "VLALIGN_CACHE_DIR": str(tmp_path_factory.mktemp("cache"))}.items():
            mp.setenv(k, v)
        mp.delenv("VLALIGN_LOCK_DIR", raising=False)
        import s3fs

        s3fs.S3FileSystem.clear_instance_cache()
        fs = lake_filesystem(LAKE)
        fs.mkdir(BUCKET)
        fs.mkdir("other-bucket")
        try:
            yield endpoint
        finally:
            s3fs.S3FileSystem.clear_instance_cache()
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()


def _parquet_bytes(table: pa.Table) -> bytes:
    buf = io.BytesIO()
    pq.write_table(table, buf)
    return buf.getvalue()


def _objects(fs, prefix: str) -> dict[str, tuple]:
    """Every object under ``prefix``: key -> (ETag, LastModified)."""
    try:
        found = fs.find(prefix, detail=True)
    except FileNotFoundError:
        return {}
    return {k: (v.get("ETag"), v.get("LastModified")) for k, v in found.items()}


# ------------------------------------------------------------------ a small hand-made lake: catalog and door
@pytest.fixture(scope="module")
def small_lake(s3):
    """A lake at s3://<bucket>/small with one run record listing one CKA cell, its catalog built by
    refresh_catalog; a secret beside it (another prefix with the lake's name as its prefix) and in another
    bucket."""
    root = f"s3://{BUCKET}/small"
    lake = Lake.open(root)
    cka = pa.table({"cell_id": ["c1", "c1"], "vision_encoder": ["v", "v"], "text_encoder": ["t1", "t2"],
                    "kernel": ["linear", "rbf"], "value": [0.25, 0.5]})
    lake.write_bytes(lake.result_path("cka", "c1"), _parquet_bytes(cka))
    lake.write_json(lake.run_path("r1"), {"run_id": "r1", "status": "completed", "flow": "sweep", "spec": {},
                                          "started_at": "2026-01-01T00:00:00+00:00", "cells": {"cka": ["c1"]}})
    secret = _parquet_bytes(pa.table({"password": ["hunter2"]}))
    fs = lake.fs
    fs.pipe_file(f"{BUCKET}/small-other/secret.parquet", secret)
    fs.pipe_file(f"{BUCKET}/secret.parquet", secret)
    fs.pipe_file("other-bucket/secret.parquet", secret)
    assert refresh_catalog(lake) == f"{root}/{CATALOG}"
    return lake


def test_the_catalog_of_an_s3_lake_lives_in_the_bucket(small_lake, tmp_path, monkeypatch):
    lake = small_lake
    monkeypatch.chdir(tmp_path)
    assert lake.fs.exists(lake.path(CATALOG))
    rows = query(lake, "select text_encoder, value, run_id from cka order by text_encoder").to_pylist()
    assert rows == [{"text_encoder": "t1", "value": 0.25, "run_id": "r1"}, {"text_encoder": "t2", "value": 0.5, "run_id": "r1"}]
    assert query(lake.root, "select run_id, status from runs").to_pylist() == [{"run_id": "r1", "status": "completed"}]
    assert query(lake, "select count(*) as n from items")["n"].to_pylist() == [0]  # no file recorded: empty view
    # reading files of the lake directly works, through the same filesystem
    assert query(lake, f"select count(*) as n from read_parquet('{lake.root}/results/cka/*.parquet')")["n"].to_pylist() == [2]
    assert list(tmp_path.iterdir()) == [], "nothing local is created by a query (no 's3:' folder, no catalog copy)"


OUTSIDE = "refused: the query reads outside the lake"


@pytest.mark.parametrize("sql", [
    "select * from read_parquet('s3://{bucket}/small-other/secret.parquet')",
    "select * from 's3://{bucket}/small-other/secret.parquet'",
    "select * from read_parquet('s3://{bucket}/secret.parquet')",
    "select * from read_parquet('s3://{bucket}/small/../secret.parquet')",
    "select * from read_parquet('s3://other-bucket/secret.parquet')",
    "select * from read_parquet('s3a://{bucket}/small-other/secret.parquet')",
    "select * from read_blob('s3://{bucket}/secret.parquet')",
    "select * from glob('s3://{bucket}/*')",
    "select * from parquet_metadata('s3://other-bucket/secret.parquet')",
    "select * from read_csv('/etc/passwd')",
    "select * from read_parquet('{local}')",
])
def test_a_query_cannot_read_outside_the_s3_lake(small_lake, tmp_path, sql):
    local = tmp_path / "local.parquet"
    pq.write_table(pa.table({"password": ["hunter2"]}), local)
    with pytest.raises(QueryError, match=OUTSIDE) as err:
        query(small_lake, sql.format(bucket=BUCKET, local=local))
    assert "\n" not in str(err.value) and "s3://vlalign-test/small/" in str(err.value)


def test_the_s3_door_refuses_writes_even_past_admission(small_lake, tmp_path):
    """Statements admit() refuses never run; and the filesystem the door registers is read-only, so even a
    COPY run on the door's connection directly (skipping admit) writes nothing to the bucket."""
    lake = small_lake
    before = _objects(lake.fs, f"{BUCKET}/")
    for sql in (f"copy (select 1) to '{lake.root}/evil.csv'", f"with x as (copy (select 1) to '{lake.root}/evil.parquet') select 1",
                "drop view cka", f"attach '{lake.root}/new.duckdb'", "set allowed_directories = ['s3://other-bucket/']"):
        with pytest.raises(QueryError, match="refused"):
            query(lake, sql)
    local = tmp_path / "catalog.duckdb"
    local.write_bytes(lake.fs.cat_file(lake.path(CATALOG)))
    con = open_door(str(local), lake.root, lake.fs)
    try:
        for target in ("evil.csv", "evil.parquet", "results/cka/cell=evil.parquet"):
            with pytest.raises(Exception):
                con.execute(f"copy (select 1 as a) to '{lake.root}/{target}'")
        with pytest.raises(Exception, match="locked"):
            con.execute("SET allowed_directories = ['s3://other-bucket/']")
        assert con.execute("select count(*) from cka").fetchall() == [(2,)]
    finally:
        con.close()
    assert _objects(lake.fs, f"{BUCKET}/") == before


def test_missing_s3_lakes_and_catalogs_are_errors_that_create_nothing(s3):
    fs = lake_filesystem(LAKE)
    with pytest.raises(QueryError, match="no lake at s3://no-such-bucket/lake"):
        query("s3://no-such-bucket/lake", "select 1")
    fs.pipe_file(f"{BUCKET}/bare/items/x.txt", b"x")
    before = _objects(fs, f"{BUCKET}/")
    with pytest.raises(QueryError, match=r"no catalog in s3://vlalign-test/bare \(lake\.duckdb is missing\)"):
        query(f"s3://{BUCKET}/bare", "select 1")
    assert _objects(fs, f"{BUCKET}/") == before


def test_the_query_cli_takes_the_endpoint_from_fsspec_config(small_lake, s3):
    """`vlalign query` in a fresh process whose endpoint comes from FSSPEC_S3_ENDPOINT_URL (fsspec's config
    from the environment) instead of AWS_ENDPOINT_URL."""
    env = {k: v for k, v in os.environ.items() if k != "AWS_ENDPOINT_URL"}
    env["FSSPEC_S3_ENDPOINT_URL"] = s3
    res = subprocess.run([str(VENV_BIN / "vlalign"), "query", "select kernel, value from cka order by kernel",
                          "--lake", small_lake.root, "--format", "json"], env=env, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout) == [{"kernel": "linear", "value": 0.25}, {"kernel": "rbf", "value": 0.5}]


# ------------------------------------------------------------------ a real sweep on the bucket
def spec_doc(ann, img) -> dict:
    return {
        "name": "s3-sweep",
        "datasets": [{"name": "tiny", "format": "coco", "annotations": str(ann), "images": str(img)}],
        "vision_encoders": ["mobilenetv2"], "text_encoders": ["wordllama"],
        "analyses": {"cka": {"kernels": ["linear"]}, "matching": ["qap"], "retrieval": [], "baselines": ["procrustes"],
                     "qap": {"restarts": 2}},
        "base_size": 10, "query_size": 20, "seeds": [0], "extraction": {"shard_size": 16},
    }


def run_sweep(doc, lake_root):
    """The sweep flow on threads of this process (the CLI's sweep in s3_sweep is the one on Dask workers)."""
    from prefect.task_runners import ThreadPoolTaskRunner

    from vlalign.flows.sweep import sweep_flow

    return sweep_flow.with_options(task_runner=ThreadPoolTaskRunner(max_workers=2))(spec=doc, lake_root=lake_root)


@pytest.fixture(scope="module")
def s3_sweep(s3, prefect_server, tmp_path_factory):
    """`vlalign sweep spec.yaml --lake s3://...` (the CLI, on a LocalCluster: its worker processes reach the
    bucket with the credentials and endpoint they inherit): (doc, stdout)."""
    work = tmp_path_factory.mktemp("s3-sweep")
    ann, img = make_coco(work / "coco", n_images=40, captions_per_image=1)
    doc = spec_doc(ann, img)
    spec = work / "spec.yaml"
    spec.write_text(yaml.safe_dump(doc))
    env = {**os.environ, "PREFECT_API_URL": prefect_server}
    res = subprocess.run([str(VENV_BIN / "vlalign"), "sweep", str(spec), "--lake", LAKE, "--workers", "1"],
                         env=env, cwd=work, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, (res.stdout + res.stderr)[-4000:]
    assert sorted(p.name for p in work.iterdir()) == ["coco", "spec.yaml"], "nothing of the lake is written locally"
    return doc, res.stdout


def _computed(stdout: str) -> tuple[int, int]:
    found = re.search(r"(\d+) analysis cells \((\d+) computed now\)", stdout)
    assert found, stdout
    return int(found.group(1)), int(found.group(2))


SHARDS = {"mobilenetv2__avg": "part=tiny", "wordllama__mean": "part=en"}


@pytest.mark.slow
def test_a_sweep_on_s3_writes_every_file_to_the_bucket(s3_sweep):
    doc, stdout = s3_sweep
    cells, computed = _computed(stdout)
    assert cells == computed == 2  # one CKA cell, one matching cell
    fs = lake_filesystem(LAKE)
    keys = set(fs.find(f"{BUCKET}/lake"))
    base = f"{BUCKET}/lake"
    for enc, part in SHARDS.items():
        for k in range(3):  # 40 items, shards of 16
            assert f"{base}/embeddings/dataset=tiny/encoder={enc}/{part}/size=16/shard={k:05d}.parquet" in keys
    assert f"{base}/items/dataset=tiny/items.parquet" in keys and f"{base}/{CATALOG}" in keys
    assert len([k for k in keys if k.startswith(f"{base}/results/cka/")]) == 1
    assert len([k for k in keys if k.startswith(f"{base}/results/matching/")]) == 1
    run_id = re.search(r"run_id = '([^']+)'", stdout).group(1)
    assert f"{base}/runs/run={run_id}.json" in keys
    assert f"{base}/reports/run={run_id}/report.html" in keys and f"{base}/reports/run={run_id}/cka_measures.png" in keys
    assert not [k for k in keys if ".tmp-" in k]


@pytest.mark.slow
def test_vlalign_query_on_s3_equals_the_parquet_files(s3_sweep):
    """`vlalign query` against the bucket, and the result files read back with pyarrow through s3fs."""
    fs = lake_filesystem(LAKE)

    def files(table):
        rows = []
        for key in sorted(fs.glob(f"{BUCKET}/lake/results/{table}/*.parquet")):
            rows += pq.read_table(key, filesystem=fs).to_pylist()
        return rows

    res = subprocess.run([str(VENV_BIN / "vlalign"), "query", "select cell_id, vision_encoder, text_encoder, kernel, n, value, "
                          "shuffled_value from cka", "--lake", LAKE, "--format", "json"], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    cka = json.loads(res.stdout)
    want = [{k: r[k] for k in cka[0]} for r in files("cka")]
    assert cka == want and len(cka) == 1 and cka[0]["n"] == 40 and cka[0]["value"] > cka[0]["shuffled_value"]
    # the same door in process (vlalign.datalake.catalog.query)
    matching = query(LAKE, "select cell_id, method, seed, accuracy, chance from matching order by method").to_pylist()
    want = sorted(({k: r[k] for k in matching[0]} for r in files("matching")), key=lambda r: r["method"])
    assert matching == want and [r["method"] for r in matching] == ["procrustes", "qap"]
    n_shards = query(LAKE, "select encoder, count(*) as n, sum(rows::integer)::integer as rows from embedding_index "
                     "group by 1 order by 1").to_pylist()
    assert n_shards == [{"encoder": "mobilenetv2__avg", "n": 3, "rows": 40}, {"encoder": "wordllama__mean", "n": 3, "rows": 40}]
    refused = subprocess.run([str(VENV_BIN / "vlalign"), "query", f"select * from read_parquet('s3://{BUCKET}/small/results/cka/*.parquet')",
                              "--lake", LAKE], capture_output=True, text=True, timeout=120)
    assert refused.returncode == 2 and OUTSIDE in refused.stderr, refused.stderr


@pytest.mark.slow
def test_a_rerun_on_s3_computes_nothing_and_a_lost_shard_and_cell_are_all_it_redoes(s3_sweep):
    doc, _stdout = s3_sweep
    fs = lake_filesystem(LAKE)
    kept = ("embeddings", "results", "items", "pairs")
    before = {p: _objects(fs, f"{BUCKET}/lake/{p}") for p in kept}

    again = run_sweep(doc, LAKE)
    assert again["computed"] == 0 and again["cells"] == 2
    assert {p: _objects(fs, f"{BUCKET}/lake/{p}") for p in kept} == before, "a rerun rewrote a file"

    # lose one shard and one cell's result file
    shard = f"{BUCKET}/lake/embeddings/dataset=tiny/encoder=wordllama__mean/part=en/size=16/shard=00001.parquet"
    lake = Lake.open(LAKE)
    shard_md = lake.read_metadata("s3://" + shard)
    (cka_file,) = fs.glob(f"{BUCKET}/lake/results/cka/*.parquet")
    fs.rm([shard, cka_file])
    resumed = run_sweep(doc, LAKE)
    assert resumed["computed"] == 1 and resumed["cells"] == 2  # the lost CKA cell, nothing else
    after = {p: _objects(fs, f"{BUCKET}/lake/{p}") for p in kept}
    changed = {k for p in kept for k in set(after[p]) | set(before[p]) if after[p].get(k) != before[p].get(k)}
    assert changed == {shard, cka_file}, changed  # exactly the two lost files were written again
    # the shard came back with the same identity and checksum (so no matching cell was invalidated)
    assert lake.read_metadata("s3://" + shard)["checksum"] == shard_md["checksum"]
    assert query(lake, "select count(*) as n from cka")["n"].to_pylist() == [1]
