"""The fault matrix, for real: each row is a fault injected from the test into real files, real file systems
and real flows (never through a product switch), with what the product does and what it keeps.

    1  a corrupt shard (truncated, bit-flipped, rows permuted, swapped)   refused on read, recomputed alone
    2  NaN/inf in embeddings                                              reject rows; NULL results with a note
    3  a full disk                                                        no half files; the run record says failed
    4  a read-only file system                                            OSError, nothing left behind
    5  two runs' temporaries                                              only a dead writer's are removed
    6  a failed ingest                                                    the lake is byte-identical
    7  names that would escape the lake                                   exit code 2, nothing created
    8  bad images (bomb, garbage, truncated)                              one reject row each, the rest embedded
"""

from __future__ import annotations

import contextlib
import errno
import glob
import hashlib
import io
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import make_coco

from vlalign.datalake.store import TMP_MARK, Lake
from vlalign.datasets.readers import DatasetError, DatasetSource
from vlalign.engine.extract import (
    ShardError,
    embed_shard,
    embeddings_table,
    plan_shards,
    read_shards,
    shard_checksum,
    shard_inputs,
    verify_shard,
)


def is_disk_full(e: BaseException) -> bool:
    return isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT)

SHARD_SIZE = 16


# ----------------------------------------------------------------------------------------------- helpers
def run_extract(source: DatasetSource, lake_root: Path, encoders: list[str], shard_size: int) -> dict:
    """The real extraction flow (Prefect API server from the fixture), its tasks on a thread pool."""
    from prefect.task_runners import ThreadPoolTaskRunner

    from vlalign.flows.extract import extract_flow

    return extract_flow.with_options(task_runner=ThreadPoolTaskRunner(max_workers=2))(
        dataset=source, encoders=encoders, lake_root=str(lake_root), shard_size=shard_size
    )


def file_states(root: Path, under: str = "") -> dict[str, tuple[int, int, str]]:
    """relative path -> (inode, mtime_ns, sha256) of every file: a rewrite changes the inode (atomic rename)."""
    out = {}
    base = root / under if under else root
    if not base.exists():
        return out
    for p in sorted(base.rglob("*")):
        if p.is_file():
            st = p.stat()
            out[str(p.relative_to(root))] = (st.st_ino, st.st_mtime_ns, hashlib.sha256(p.read_bytes()).hexdigest())
    return out


def temporaries(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if TMP_MARK in p.name]


def wordllama_plan(lake: Lake, dataset: str) -> list:
    from vlalign.encoders import get_encoder, weights_digest

    enc = get_encoder("wordllama")
    items = lake.read_table(lake.items_path(dataset))
    return plan_shards(lake, dataset, items, enc, weights_digest(enc), SHARD_SIZE)


def ingest(lake_root: Path, source: DatasetSource) -> dict:
    from vlalign.tasks.extract import ingest_items

    return ingest_items.fn(Lake.open(lake_root), source)


# ----------------------------------------------------------------------------------------------- 1. corrupt shards
@pytest.fixture(scope="module")
def pristine(prefect_server, tmp_path_factory):
    """One real extraction (wordllama, 40 captions, shard size 16 -> shards of 16, 16 and 8 units)."""
    root = tmp_path_factory.mktemp("faults-shards")
    ann, img = make_coco(root / "coco", n_images=20, captions_per_image=2)
    source = DatasetSource("shards", "coco", str(ann), str(img))
    lake_root = root / "pristine"
    t0 = time.perf_counter()
    result = run_extract(source, lake_root, ["wordllama"], SHARD_SIZE)
    print(f"pristine extraction: {time.perf_counter() - t0:.1f}s")
    assert result["shards_planned"] == 3 and result["shards_computed"] == 3 and result["rows_computed"] == 40
    return source, lake_root


def _truncate(paths: list[str], k: int) -> None:
    data = Path(paths[k]).read_bytes()
    Path(paths[k]).write_bytes(data[: len(data) // 2])


def _bit_flip(paths: list[str], k: int) -> None:
    data = bytearray(Path(paths[k]).read_bytes())
    mid = len(data) // 2 - 128
    assert mid > 0 and mid + 256 < len(data) - 1024, "the flipped bytes must stay clear of the footer"
    for i in range(mid, mid + 256):
        data[i] ^= 0xFF
    Path(paths[k]).write_bytes(bytes(data))


def _permute_rows(paths: list[str], k: int) -> None:
    table = pq.read_table(paths[k])
    md_before = table.schema.metadata[b"vlalign"]
    permuted = table.take(pa.array(list(range(table.num_rows))[::-1], pa.int64()))
    assert permuted.schema.metadata[b"vlalign"] == md_before  # the SAME identity and checksum
    pq.write_table(permuted, paths[k], compression="zstd")
    assert pq.read_schema(paths[k]).metadata[b"vlalign"] == md_before


def _swap(paths: list[str], k: int) -> None:
    shutil.copyfile(paths[k + 1], paths[k])  # shard k+1's file, whole and valid, under shard k's name


CORRUPTIONS = {
    # name: (inject, victim shard, what the reason must say)
    "truncated": (_truncate, 1, ("unreadable footer",)),
    "bit-flipped": (_bit_flip, 1, ("unreadable contents", "checksum mismatch")),
    "rows-permuted": (_permute_rows, 0, ("checksum mismatch",)),
    "swapped": (_swap, 0, ("identity differs",)),
}


@pytest.mark.slow
@pytest.mark.parametrize("fault", sorted(CORRUPTIONS))
def test_a_plan_trusts_only_shards_whose_files_did_not_change_since_verified(fault, pristine, tmp_path, monkeypatch):
    """The plan's cache of verified shards (vlalign.engine.extract.VerifiedShards): a second plan reads no shard
    whose file is unchanged, and any change to a file (each corruption of CORRUPTIONS, made after the first plan
    trusted it) sends that shard back to full verification, and to the shards to compute."""
    import vlalign.engine.extract as extract
    from vlalign.encoders import get_encoder, weights_digest

    source, pristine_root = pristine
    lake_root = tmp_path / "lake"
    shutil.copytree(pristine_root, lake_root, copy_function=shutil.copy2)
    lake = Lake.open(lake_root)
    enc = get_encoder("wordllama")

    def plan():
        return extract.plan_dataset_shards(lake, source.name, [enc], {enc.name: weights_digest(enc)}, SHARD_SIZE)

    planned, todo = plan()  # the copy's files are new to the cache: all verified, all whole
    assert len(planned) == 3 and todo == []
    calls = []
    real = extract.verify_shard
    monkeypatch.setattr(extract, "verify_shard", lambda lk, s: calls.append(s.path) or real(lk, s))
    assert plan()[1] == [] and calls == []  # unchanged files: trusted, not read
    inject, k, expected = CORRUPTIONS[fault]
    inject([s.path for s in planned], k)
    _, todo = plan()
    assert calls == [planned[k].path]
    assert [s.path for s, _ in todo] == [planned[k].path] and any(e in todo[0][1] for e in expected)


@pytest.mark.slow
@pytest.mark.parametrize("fault", list(CORRUPTIONS))
def test_corrupt_shard_is_refused_on_read_and_recomputed_alone(fault, pristine, tmp_path):
    """Fault: one shard file of a finished extraction is truncated, bit-flipped (256 bytes in the middle,
    footer intact), rewritten with its rows permuted under the same metadata, or swapped for another shard.
    Product: verify_shard names the problem, read_shards raises ShardError naming the shard's path, and a
    rerun of the extraction flow recomputes exactly that shard. Kept: every other shard file (same inode,
    mtime and bytes), the items; the recomputed shard holds the same ids and embeddings as the original."""
    source, pristine_root = pristine
    lake_root = tmp_path / "lake"
    shutil.copytree(pristine_root, lake_root, copy_function=shutil.copy2)
    lake = Lake.open(lake_root)
    specs = wordllama_plan(lake, source.name)
    assert len(specs) == 3
    paths = [s.path for s in specs]
    for s in specs:
        assert verify_shard(lake, s)[1] is None

    inject, k, expected = CORRUPTIONS[fault]
    victim = specs[k]
    original = pq.read_table(str(pristine_root / Path(victim.path).relative_to(lake_root)))
    inject(paths, k)

    # (a) verification names the problem
    table, why = verify_shard(lake, victim)
    assert table is None
    assert any(e in why for e in expected), why
    for s in specs:
        if s is not victim:
            assert verify_shard(lake, s)[1] is None

    # (b) a read of the planned shards refuses it, naming its path
    with pytest.raises(ShardError) as ei:
        read_shards(lake, specs)
    assert victim.path in str(ei.value)

    # (c) a rerun recomputes exactly that shard; nothing else is rewritten
    before = file_states(lake_root, "embeddings")
    items_before = file_states(lake_root, "items")
    result = run_extract(source, lake_root, ["wordllama"], SHARD_SIZE)
    assert result["shards_planned"] == 3 and result["shards_computed"] == 1
    after = file_states(lake_root, "embeddings")
    rel_victim = str(Path(victim.path).relative_to(lake_root))
    assert set(after) == set(before)
    assert {p: v for p, v in after.items() if p != rel_victim} == {p: v for p, v in before.items() if p != rel_victim}
    assert after[rel_victim] != before[rel_victim]
    assert file_states(lake_root, "items") == items_before

    table, why = verify_shard(lake, victim)
    assert why is None
    assert table["unit_id"].to_pylist() == original["unit_id"].to_pylist()
    from vlalign.engine.extract import embedding_matrix

    np.testing.assert_array_equal(embedding_matrix(table), embedding_matrix(original))
    ids, emb = read_shards(lake, specs)
    assert len(ids) == len(set(ids)) == 40 and np.isfinite(emb).all()
    assert not temporaries(lake_root)


# ----------------------------------------------------------------------------------------------- 2. NaN / inf
class PoisonedEncoder:
    """A stand-in text encoder: deterministic vectors, and ``value`` (NaN or inf) for one input."""

    def __init__(self, poison: str, value: float, dim: int = 8):
        self.spec = SimpleNamespace(dim=dim)
        self.poison, self.value, self.dim = poison, value, dim

    def encode(self, inputs: list) -> np.ndarray:
        out = np.stack([np.random.default_rng(zlib.crc32(x.encode())).normal(size=self.dim) for x in inputs])
        for i, x in enumerate(inputs):
            if x == self.poison:
                out[i, self.dim // 2] = self.value
        return out.astype(np.float32)


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf], ids=["nan", "inf", "-inf"])
def test_non_finite_embedding_becomes_a_reject_row(value, tmp_path):
    """Fault: the encoder returns NaN/inf for one caption of a shard.
    Product: embed_shard turns that unit into a reject row ('non-finite') and writes the others.
    Kept: the shard with every other unit, which verifies (identity and checksum) and reads back finite."""
    from vlalign.encoders import get_encoder

    ann, img = make_coco(tmp_path / "coco", n_images=6, captions_per_image=1)
    source = DatasetSource("nan", "coco", str(ann), str(img))
    lake = Lake.open(tmp_path / "lake")
    ingest(tmp_path / "lake", source)
    items = lake.read_table(lake.items_path("nan"))
    specs = plan_shards(lake, "nan", items, get_encoder("wordllama"), "stand-in-weights", SHARD_SIZE)
    assert len(specs) == 1
    spec = specs[0]
    ids, captions = shard_inputs(lake, spec)
    poisoned_id, poison = ids[2], captions[2]

    summary = embed_shard(lake, spec, PoisonedEncoder(poison, value), batch_size=4)
    assert summary["rows"] == 5 and summary["rejects"] == 1

    rejects = pq.read_table(spec.rejects_path).to_pylist()
    assert len(rejects) == 1
    assert rejects[0]["caption_id"] == poisoned_id and "non-finite" in rejects[0]["reason"]
    table, why = verify_shard(lake, spec)
    assert why is None
    assert table["unit_id"].to_pylist() == [u for u in ids if u != poisoned_id]
    got_ids, emb = read_shards(lake, specs)
    assert poisoned_id not in got_ids and emb.shape == (5, 8) and np.isfinite(emb).all()


def _write_shard_by_hand(lake: Lake, spec, emb: np.ndarray, ids: list | None = None) -> None:
    """A shard file exactly as embed_shard writes one (identity and a checksum of its contents)."""
    if ids is None:
        ids, _ = shard_inputs(lake, spec)
    table = embeddings_table(ids, emb)
    lake.write_table(spec.path, table, metadata={"identity": spec.identity, "checksum": shard_checksum(table),
                                                 "rows": table.num_rows, "encoder_name": spec.encoder})


CELL_FAULTS = {
    # name: (which side, how, what the note says)
    "clean": (None, None, None),
    "nan-in-vision": ("vision", "nan", "non-finite"),
    "inf-in-text": ("text", "inf", "non-finite"),
    "constant-vision": ("vision", "constant", "constant"),
    "constant-text": ("text", "constant", "constant"),
}


@pytest.mark.parametrize("fault", list(CELL_FAULTS))
def test_non_finite_or_constant_embeddings_give_null_results_with_a_note(fault, tmp_path):
    """Fault: a cell's stored embeddings (valid shards, correct checksums) hold NaN/inf, or are constant.
    Product: run_cka_cell and run_match_cell return rows whose value / accuracy / recall is NULL with a
    `note` saying why ('non-finite' or 'constant'); write_cell stores them as NULL. Never a number.
    Kept: the 'clean' control gives finite numbers from the same setup (so the NULLs are the fault's)."""
    from vlalign.encoders import get_encoder
    from vlalign.engine.alignment import run_cka_cell
    from vlalign.engine.analysis import run_match_cell, write_cell
    from vlalign.engine.cells import CKACell, Embeddings, MatchCell, Protocol
    from vlalign.tasks.analysis import pair_items

    ann, img = make_coco(tmp_path / "coco", n_images=10, captions_per_image=1)
    lake_root = tmp_path / "lake"
    lake = Lake.open(lake_root)
    ingest(lake_root, DatasetSource("cells", "coco", str(ann), str(img)))
    items = lake.read_table(lake.items_path("cells"))
    venc, tenc = get_encoder("mobilenetv2"), get_encoder("wordllama")
    side, how, expected = CELL_FAULTS[fault]
    rng = np.random.default_rng(0)
    emb = {}
    for name, enc, dim in (("vision", venc, 8), ("text", tenc, 6)):
        specs = plan_shards(lake, "cells", items, enc, "hand-written", 4)  # 10 units: shards of 4, 4, 2
        assert len(specs) == 3
        for s in specs:
            e = rng.normal(size=(s.size, dim)).astype(np.float32)
            if side == name and how == "constant":
                e[:] = 0.25
            elif side == name and s.shard == 1:
                e[1, 3] = np.nan if how == "nan" else np.inf
            _write_shard_by_hand(lake, s, e)
            assert verify_shard(lake, s)[1] is None  # the shards themselves are valid
        emb[name] = (enc, specs)
    pairs_path, pairs_digest = pair_items.fn(lake, "cells", "cells", "en")
    v = Embeddings.of(lake, "mobilenetv2", venc.lake_name, "cells", emb["vision"][1])
    t = Embeddings.of(lake, "wordllama", tenc.lake_name, "en", emb["text"][1])
    common = dict(lake=lake, dataset="cells", domain="cells", lang="en", pairs_path=pairs_path,
                  pairs_digest=pairs_digest, vision=v, text=t)
    cka_cell = CKACell(**common, kernel="linear", shuffled=True, bootstrap=10)
    match_cell = MatchCell(**common, base_size=4, query_size=4, base_selection="random",
                           matching=("qap", "local_cka"), retrieval=("local_cka",),
                           baselines=("linear_regression", "procrustes"), protocol=Protocol(qap_restarts=2))

    [row] = run_cka_cell(cka_cell)
    matching, retrieval = run_match_cell(match_cell)
    assert len(matching) == 4 and len(retrieval) == 2 * 3
    write_cell(cka_cell, {"cka": [row]})
    write_cell(match_cell, {"matching": matching, "retrieval": retrieval})
    stored_cka = pq.read_table(cka_cell.paths()["cka"]).to_pylist()
    stored_matching = pq.read_table(match_cell.paths()["matching"]).to_pylist()
    stored_retrieval = pq.read_table(match_cell.paths()["retrieval"]).to_pylist()

    if expected is None:  # the control: the same setup gives numbers
        assert row["note"] is None and np.isfinite(row["value"]) and np.isfinite(row["shuffled_value"])
        assert all(r["note"] is None and 0 <= r["accuracy"] <= 1 for r in stored_matching)
        assert all(r["note"] is None and 0 <= r["r1"] <= 1 for r in stored_retrieval)
        return
    for r in [row] + stored_cka:
        assert r["value"] is None and r["shuffled_value"] is None and r["ci_low"] is None and r["ci_high"] is None
        assert expected in r["note"] and side in r["note"], r["note"]
    for r in matching + stored_matching:
        assert r.get("accuracy") is None and r.get("objective") is None
        assert expected in r["note"], r
    for r in retrieval + stored_retrieval:
        assert r.get("r1") is None and r.get("r5") is None and r.get("r10") is None
        assert expected in r["note"], r

class AllNaNEncoder(PoisonedEncoder):
    """A stand-in encoder that overflows on every input (as fp16 activations can)."""

    def encode(self, inputs: list) -> np.ndarray:
        return np.full((len(inputs), self.dim), np.nan, np.float32)


def test_a_cell_whose_every_pair_was_rejected_gives_a_null_row_with_a_note(tmp_path):
    """Fault: the text encoder returns NaN for every caption, so embed_shard rejects every text unit (its
    shard is valid, with 0 rows) and no image of the cell has a caption embedding left.
    Product (expected): run_cka_cell / run_match_cell return rows with NULL values and a note saying that
    only 0 pairs have embeddings, as they do for 1..3 pairs. Kept: the shards and their reject rows."""
    from vlalign.encoders import get_encoder
    from vlalign.engine.alignment import run_cka_cell
    from vlalign.engine.analysis import run_match_cell
    from vlalign.engine.cells import CKACell, Embeddings, MatchCell
    from vlalign.tasks.analysis import pair_items

    ann, img = make_coco(tmp_path / "coco", n_images=6, captions_per_image=1)
    lake_root = tmp_path / "lake"
    lake = Lake.open(lake_root)
    ingest(lake_root, DatasetSource("lost", "coco", str(ann), str(img)))
    items = lake.read_table(lake.items_path("lost"))
    venc, tenc = get_encoder("mobilenetv2"), get_encoder("wordllama")
    vspecs = plan_shards(lake, "lost", items, venc, "hand-written", SHARD_SIZE)
    for s in vspecs:
        _write_shard_by_hand(lake, s, np.random.default_rng(0).normal(size=(s.size, 8)).astype(np.float32))
    tspecs = plan_shards(lake, "lost", items, tenc, "stand-in", SHARD_SIZE)
    for s in tspecs:
        # an encoder that fails on every input is a systematic problem: the shard fails, loudly
        with pytest.raises(RuntimeError, match=f"all {s.size} inputs were rejected"):
            embed_shard(lake, s, AllNaNEncoder("", np.nan), batch_size=4)
        _write_shard_by_hand(lake, s, np.zeros((0, 8), np.float32), ids=[])  # a valid shard with no rows left
        assert verify_shard(lake, s)[1] is None
    pairs_path, pairs_digest = pair_items.fn(lake, "lost", "lost", "en")
    common = dict(lake=lake, dataset="lost", domain="lost", lang="en", pairs_path=pairs_path,
                  pairs_digest=pairs_digest,
                  vision=Embeddings.of(lake, "mobilenetv2", venc.lake_name, "lost", vspecs),
                  text=Embeddings.of(lake, "wordllama", tenc.lake_name, "en", tspecs))
    [row] = run_cka_cell(CKACell(**common))
    assert row["value"] is None and "0 pairs" in row["note"]
    matching, retrieval = run_match_cell(MatchCell(**common, base_size=2, query_size=2, matching=("local_cka",)))
    assert matching and all(r.get("accuracy") is None and "0 pairs" in r["note"] for r in matching)


# ----------------------------------------------------------------------------------------------- 3./4. file systems
def _forget_writers(under: Path) -> None:
    """Release this process's writer locks held on a mount we are about to unmount (test clean-up only:
    the product holds them for the life of the process, by design)."""
    from vlalign.datalake import store as lake_module

    with lake_module._WRITERS_LOCK:
        for key in [k for k in lake_module._WRITERS if k[1].startswith(str(under))]:
            _token, lock = lake_module._WRITERS.pop(key)
            lock.release()


@contextlib.contextmanager
def tmpfs(where: Path, size: str = "1m", ro: bool = False):
    """A real tmpfs of ``size`` mounted at ``where``; skips the test where mounting is not allowed."""
    if os.geteuid() != 0:
        pytest.skip("needs root to mount a tmpfs")
    where.mkdir(parents=True, exist_ok=True)
    opts = f"size={size}" + (",ro" if ro else "")
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(where)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"needs root to mount a tmpfs (mount failed: {r.stderr.strip() or r.returncode})")
    try:
        yield where
    finally:
        _forget_writers(where)
        if subprocess.run(["umount", str(where)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(where)], capture_output=True)


def fill_disk(path: Path) -> int:
    """Write ``path`` until the file system says ENOSPC; returns the bytes written."""
    written = 0
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        for chunk in (1 << 16, 1 << 12, 1):
            while True:
                try:
                    n = os.write(fd, b"\0" * chunk)
                except OSError as e:
                    assert e.errno == errno.ENOSPC, e
                    break
                written += n
                if n < chunk:
                    break
        os.fsync(fd)
    finally:
        os.close(fd)
    with pytest.raises(OSError) as ei:
        with open(path.with_name("probe"), "wb") as f:
            f.write(b"x")
            f.flush()
    assert ei.value.errno == errno.ENOSPC
    return written


@pytest.mark.parametrize("message", ["the real error", "the real error: " + "x" * 20000], ids=["short", "long"])
def test_full_disk_leaves_no_half_file_and_the_record_says_failed(message, tmp_path):
    """Fault: the lake's disk fills up (a real 1 MiB tmpfs, filled until ENOSPC) in the middle of a run.
    Product: write_bytes/write_table raise OSError (ENOSPC) and remove their temporary; finish_record does
    not raise and rewrites the run record in place (the error shortened to fit if it is long).
    Kept: no temporary, no file at a new path, an existing file's old bytes; the record parses as JSON
    with status 'failed' and the run's own error."""
    from vlalign.datalake.runs import finish_record, start_record

    with tmpfs(tmp_path / "mnt") as mnt:
        lake = Lake.open(mnt / "lake")
        record = start_record(lake, "full-run", "extract", {"dataset": "x"})
        run_file = Path(lake.run_path("full-run"))
        assert run_file.read_bytes().endswith(b" " * 4096)
        old = Path(lake.write_bytes(lake.path("results", "cka", "cell=old.parquet"), b"old bytes"))
        new = Path(lake.path("results", "cka", "cell=new.parquet"))
        filled = fill_disk(mnt / "filler")
        assert filled > 500_000
        (mnt / "probe").unlink(missing_ok=True)

        big = os.urandom(256 * 1024)
        with pytest.raises(OSError) as ei:
            lake.write_bytes(str(new), big)
        assert is_disk_full(ei.value), ei.value
        with pytest.raises(OSError) as ei:
            lake.write_bytes(str(old), big)
        assert is_disk_full(ei.value)
        with pytest.raises(OSError):
            lake.write_table(str(new), pa.table({"x": np.arange(100_000)}))
        assert not new.exists() and old.read_bytes() == b"old bytes"
        assert not temporaries(mnt)

        finish_record(lake, record, RuntimeError(message))  # must not raise
        on_disk = json.loads(run_file.read_text())
        assert on_disk["status"] == "failed" and on_disk["finished_at"]
        assert "the real error" in on_disk["error"] and on_disk["error"].startswith("RuntimeError: ")
        assert on_disk["run_id"] == "full-run" and on_disk["spec"] == {"dataset": "x"}
        if len(message) > 4000:
            assert on_disk["error"].endswith("...") and len(on_disk["error"]) < 4096
        assert not temporaries(mnt)

@pytest.mark.slow
def test_disk_filling_mid_extraction_surfaces_the_runs_own_error(pristine, tmp_path):
    """Fault: the lake's disk (a real 8 MiB tmpfs) fills up during a rerun of the extraction flow that must
    recompute one lost shard: 16 KiB are left, room for the run record but not for the shard.
    Product: the shard's write fails with ENOSPC and removes its temporary; the run record is rewritten
    'failed' with that error. Expected too: the flow raises the run's own OSError (ENOSPC), not a later
    error of the catalog refresh. Kept: every other shard file, no temporary (the catalog's included)."""
    source, pristine_root = pristine
    with tmpfs(tmp_path / "mnt", size="8m") as mnt:
        lake_root = mnt / "lake"
        shutil.copytree(pristine_root, lake_root, copy_function=shutil.copy2)
        lake = Lake.open(lake_root)
        specs = wordllama_plan(lake, source.name)
        os.remove(specs[1].path)
        before = file_states(lake_root, "embeddings")
        fill_disk(mnt / "filler")
        (mnt / "probe").unlink(missing_ok=True)
        os.truncate(mnt / "filler", (mnt / "filler").stat().st_size - 16 * 1024)

        with pytest.raises(BaseException) as ei:
            run_extract(source, lake_root, ["wordllama"], SHARD_SIZE)
        records = [json.loads(p.read_text()) for p in (lake_root / "runs").glob("*.json")]
        assert len(records) == 1
        assert records[0]["status"] == "failed" and "No space left on device" in records[0]["error"], records[0]
        assert file_states(lake_root, "embeddings") == before and not os.path.exists(specs[1].path)
        assert not temporaries(mnt)
        # the caller gets the run's own error
        assert isinstance(ei.value, OSError) and is_disk_full(ei.value), repr(ei.value)


def test_read_only_lake_remounted_mid_run_raises_and_leaves_nothing(tmp_path):
    """Fault: the lake's file system is remounted read-only while a run holds it (its writer lock lives on
    a separate writable mount, as a lock directory on another disk would).
    Product: write_bytes raises OSError EROFS when opening its temporary; finish_record does not raise.
    Kept: no temporary, no new file, the existing file's bytes and the record as last written."""
    from vlalign.datalake.runs import finish_record, start_record

    with tmpfs(tmp_path / "mnt") as mnt:
        (mnt / "lake" / "_locks").mkdir(parents=True)
        with tmpfs(mnt / "lake" / "_locks"):
            lake = Lake.open(mnt / "lake")
            record = start_record(lake, "ro-run", "extract", {"dataset": "x"})
            old = Path(lake.write_bytes(lake.path("results", "cka", "cell=old.parquet"), b"old bytes"))
            before = file_states(mnt / "lake")
            r = subprocess.run(["mount", "-o", "remount,ro", str(mnt)], capture_output=True, text=True)
            assert r.returncode == 0, r.stderr
            try:
                for target in (str(old), lake.path("results", "cka", "cell=new.parquet"),
                               lake.path("results", "matching", "cell=new.parquet")):
                    with pytest.raises(OSError) as ei:
                        lake.write_bytes(target, b"new bytes")
                    assert ei.value.errno == errno.EROFS, ei.value
                finish_record(lake, record, RuntimeError("the real error"))  # must not raise
                assert file_states(mnt / "lake") == before
                assert old.read_bytes() == b"old bytes" and not temporaries(mnt)
                assert json.loads(Path(lake.run_path("ro-run")).read_text())["status"] == "running"
            finally:
                subprocess.run(["mount", "-o", "remount,rw", str(mnt)], capture_output=True)


def test_fresh_read_only_mount_raises_erofs_and_leaves_nothing(tmp_path):
    """Fault: the lake folder is on a file system mounted read-only from the start.
    Product: write_bytes raises OSError EROFS (before any temporary can exist).
    Kept: the mount stays empty."""
    with tmpfs(tmp_path / "mnt", ro=True) as mnt:
        lake = Lake.open(mnt / "lake")
        with pytest.raises(OSError) as ei:
            lake.write_bytes(lake.path("results", "cka", "cell=x.parquet"), b"bytes")
        assert ei.value.errno == errno.EROFS
        assert list(mnt.iterdir()) == []


# ----------------------------------------------------------------------------------------------- 5. temporaries
CHILD = """
import os, sys, time
from vlalign.datalake.store import TMP_MARK, Lake
lake = Lake.open(sys.argv[1])
token = lake.writer_token()
tmp = lake.path("results", "x.parquet") + TMP_MARK + token + "-abcd"
os.makedirs(os.path.dirname(tmp), exist_ok=True)
with open(tmp, "wb") as f:
    f.write(b"half a parquet file")
print(token, flush=True)
time.sleep(300)
"""


def test_clean_tmp_leaves_a_live_writers_temporaries_and_removes_dead_ones(tmp_path):
    """Fault: two runs share one lake; one is mid-write (its temporary on disk), then it is killed -9.
    Product: clean_tmp removes a temporary only when its writer's lock is free: a live writer's stays,
    this process's own stays, one with an unknown token (no lock file) goes, and after kill -9 of the
    writer (the kernel frees its flock) its temporary and its stale lock file go.
    Kept: the live writer's temporary, this process's temporary, every real file."""
    lake_root = tmp_path / "lake"
    lake = Lake.open(lake_root)
    real = Path(lake.write_bytes(lake.path("results", "real.parquet"), b"real"))
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(lake_root)], stdout=subprocess.PIPE, text=True)
    try:
        token = child.stdout.readline().strip()
        assert len(token) == 12, f"child did not start (rc={child.poll()})"
        theirs = Path(lake.path("results", "x.parquet") + TMP_MARK + token + "-abcd")
        assert theirs.exists() and Path(lake.lock_path(f"writer-{token}")).exists()
        unknown = Path(lake.path("results", "y.parquet") + TMP_MARK + "0123456789ab-ffff")
        unknown.write_bytes(b"left by a writer long gone")
        mine = Path(lake.path("results", "z.parquet") + TMP_MARK + lake.writer_token() + "-0000")
        mine.write_bytes(b"this process, in flight")

        removed = lake.clean_tmp()
        assert removed == [str(unknown)]
        assert theirs.exists() and mine.exists() and not unknown.exists() and real.read_bytes() == b"real"

        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=30)
        assert child.returncode == -signal.SIGKILL
        removed = lake.clean_tmp()
        assert removed == [str(theirs)]
        assert not theirs.exists() and mine.exists() and real.read_bytes() == b"real"
        assert not Path(lake.lock_path(f"writer-{token}")).exists()  # the dead writer's lock file is gone too
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


# ----------------------------------------------------------------------------------------------- 6. failed ingest
def _empty_annotations(ann: Path, img: Path, tmp: Path) -> tuple[Path, Path]:
    p = tmp / "empty.json"
    p.write_text(json.dumps({"images": [], "annotations": []}))
    return p, img


def _empty_captions(ann: Path, img: Path, tmp: Path) -> tuple[Path, Path]:
    doc = json.loads(ann.read_text())
    for i, a in enumerate(doc["annotations"]):
        a["caption"] = ["", "   ", "\n\t"][i % 3]
    p = tmp / "no-captions.json"
    p.write_text(json.dumps(doc))
    return p, img


def _missing_images(ann: Path, img: Path, tmp: Path) -> tuple[Path, Path]:
    empty = tmp / "no-images"
    empty.mkdir()
    return ann, empty


def _not_json(ann: Path, img: Path, tmp: Path) -> tuple[Path, Path]:
    p = tmp / "broken.json"
    p.write_text(ann.read_text()[:100])
    return p, img


UNCHANGED = "nothing in the lake was changed"
BAD_INGESTS = {
    # name: (make the bad source, what the message must say)
    "empty-annotations": (_empty_annotations, ("no usable items", "the source is empty", UNCHANGED)),
    "every-caption-empty": (_empty_captions, ("no usable items", "empty caption", UNCHANGED)),
    "every-image-missing": (_missing_images, ("no usable items", "missing image file", UNCHANGED)),
    "annotations-not-json": (_not_json, ("cannot parse annotations",)),
}


@pytest.mark.parametrize("bad", list(BAD_INGESTS))
def test_failed_ingest_changes_nothing(bad, tmp_path):
    """Fault: a data set already in the lake is ingested again from a source that reads as nothing
    (empty annotations, every caption empty, every image missing) or cannot be parsed.
    Product: ingest_items raises DatasetError with a message that says why and that nothing changed.
    Kept: every lake file byte-identical and not even rewritten (same inode and mtime)."""
    ann, img = make_coco(tmp_path / "coco", n_images=6, captions_per_image=2)
    lake_root = tmp_path / "lake"
    first = ingest(lake_root, DatasetSource("same", "coco", str(ann), str(img)))
    assert first["items"] == 12
    before = file_states(lake_root)
    assert any(p.startswith("items/") for p in before) and any(p.startswith("rejects/") for p in before)

    make, expected = BAD_INGESTS[bad]
    bad_ann, bad_img = make(ann, img, tmp_path)
    with pytest.raises(DatasetError) as ei:
        ingest(lake_root, DatasetSource("same", "coco", str(bad_ann), str(bad_img)))
    for e in expected:
        assert e in str(ei.value), str(ei.value)
    assert "'same'" in str(ei.value)
    assert file_states(lake_root) == before
    assert not temporaries(lake_root)


# ----------------------------------------------------------------------------------------------- 7. escaping names
def _spec_file(tmp_path: Path, dataset_name: str) -> Path:
    ann, img = make_coco(tmp_path / "coco", n_images=4, captions_per_image=1)
    doc = {
        "name": "escape",
        "datasets": [{"name": dataset_name, "format": "coco", "annotations": str(ann), "images": str(img)}],
        "vision_encoders": ["mobilenetv2"], "text_encoders": ["wordllama"],
        "analyses": {"cka": {"kernels": ["linear"]}}, "base_size": 2, "query_size": 2,
    }
    p = tmp_path / "spec.json"  # JSON is YAML
    p.write_text(json.dumps(doc))
    return p


ESCAPES = {
    # name: (argv builder(spec, lake), what the message must name)
    "extract --dataset": (lambda spec, lake: ["extract", "--dataset", "../../../x", "--encoders", "wordllama",
                                              "--lake", lake], "--dataset"),
    "sweep --run-id": (lambda spec, lake: ["sweep", spec, "--run-id", "../../x", "--lake", lake], "--run-id"),
    "run --run-id": (lambda spec, lake: ["run", "--spec", spec, "--run-id", "../x", "--lake", lake], "--run-id"),
    "resume RUN_ID": (lambda spec, lake: ["resume", "../x", "--lake", lake], "RUN_ID"),
    "report RUN_ID": (lambda spec, lake: ["report", "../x", "--lake", lake], "RUN_ID"),
    "spec datasets[0].name": (lambda spec, lake: ["spec", spec], "datasets"),
}


@pytest.mark.parametrize("case", list(ESCAPES))
def test_names_that_would_escape_the_lake_are_refused(case, tmp_path, capsys, monkeypatch):
    """Fault: a data set name, run id or spec data set name such as '../x' that would put files outside
    the lake. Product: the CLI exits with code 2 and a one-line message naming the argument ('not a safe
    name'), before any Prefect, Dask or lake work. Kept: nothing is created anywhere under the test's
    folder (the lake is not even created) nor beside it."""
    from vlalign.cli.main import main

    spec = _spec_file(tmp_path, "../x" if case.startswith("spec") else "okname")
    deep = tmp_path / "a" / "b" / "c"
    deep.mkdir(parents=True)
    lake = deep / "lake"
    monkeypatch.chdir(deep)
    tree_before = sorted(str(p) for p in tmp_path.rglob("*"))
    beside_before = sorted(os.listdir(tmp_path.parent))

    build, names = ESCAPES[case]
    try:
        code = main(build(str(spec), str(lake)))
    except SystemExit as e:
        code = e.code
    err = capsys.readouterr().err
    assert code == 2, err
    assert names in err and "not a safe name" in err, err
    assert sorted(str(p) for p in tmp_path.rglob("*")) == tree_before
    assert sorted(os.listdir(tmp_path.parent)) == beside_before
    assert not lake.exists()


@pytest.mark.parametrize("name", ["../x", "..", "a/b", "/etc", ".hidden", "x\n", "", "a/../../b"])
@pytest.mark.parametrize("where", ["items_path", "read_rejects_path", "run_path", "result_path", "shard_path",
                                   "pairs_path"])
def test_lake_paths_refuse_escaping_names(where, name, tmp_path):
    """Fault: an unsafe name reaches the lake's path builders directly (not through the CLI).
    Product: ValueError naming what was wrong. Kept: nothing created."""
    lake = Lake.open(tmp_path / "lake")
    call = {
        "items_path": lambda: lake.items_path(name),
        "read_rejects_path": lambda: lake.read_rejects_path(name),
        "run_path": lambda: lake.run_path(name),
        "result_path": lambda: lake.result_path("cka", name),
        "shard_path": lambda: lake.shard_path("ok", name, "en", 16, 0),
        "pairs_path": lambda: lake.pairs_path("ok", name, "en", "abc"),
    }[where]
    with pytest.raises(ValueError, match="not a safe name"):
        call()
    assert not (tmp_path / "lake").exists()

LONG_NAME = "n" * 128  # a safe name: exactly at the 128-character limit


def test_a_spec_name_at_the_length_limit_gives_a_usable_run_id(tmp_path, capsys):
    """Fault: a sweep name that is a safe name but at the length limit (128 characters).
    Product (expected): `vlalign spec` accepts it and prints a run id that the lake accepts (run_path).
    Kept: nothing is written."""
    from vlalign.cli.main import main

    spec = _spec_file(tmp_path, "okname")
    doc = json.loads(spec.read_text())
    doc["name"] = LONG_NAME
    spec.write_text(json.dumps(doc))
    assert main(["spec", str(spec)]) == 0
    run_id = capsys.readouterr().out.split("run id ", 1)[1].split(" ", 1)[0]
    Lake.open(tmp_path / "lake").run_path(run_id)  # raises ValueError: not a safe name


@pytest.mark.slow
def test_a_data_set_name_at_the_length_limit_can_be_extracted(prefect_server, tmp_path):
    """Fault: a data set name that is a safe name but at the length limit (128 characters; any name of
    110..128 characters). Product (expected): the extraction flow runs and records its run.
    Kept: n/a (the run should simply work)."""
    ann, img = make_coco(tmp_path / "coco", n_images=4, captions_per_image=1)
    result = run_extract(DatasetSource(LONG_NAME, "coco", str(ann), str(img)), tmp_path / "lake", ["wordllama"], 16)
    assert result["rows_computed"] == 4


# ----------------------------------------------------------------------------------------------- 8. bad images
def decompression_bomb_png() -> bytes:
    """A small valid PNG whose IHDR says 30000 x 30000 (CRC fixed): 9e8 pixels, a decompression bomb."""
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 10, 10)).save(buf, format="PNG")
    data = bytearray(buf.getvalue())
    assert data[12:16] == b"IHDR"
    data[16:24] = struct.pack(">II", 30000, 30000)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])) & 0xFFFFFFFF)
    return bytes(data)


@pytest.mark.slow
def test_bad_images_of_every_kind_are_reject_rows(prefect_server, tmp_path):
    """Fault: one image of a COCO set is garbage bytes, one a truncated JPEG, one a decompression bomb
    (a PNG whose header claims 30000 x 30000). Product: the real extraction flow (mobilenetv2) completes;
    each bad image is one reject row with a reason (at decode, in its shard: no image bytes are read before).
    Kept: every good image is embedded, once, with finite values."""
    ann, img = make_coco(tmp_path / "coco", n_images=7, captions_per_image=1, corrupt=1, truncated=1)
    doc = json.loads(ann.read_text())
    bomb = doc["images"][2]
    (img / bomb["file_name"]).unlink()
    bomb["file_name"] = "000002.png"
    (img / bomb["file_name"]).write_bytes(decompression_bomb_png())
    ann.write_text(json.dumps(doc))

    lake_root = tmp_path / "lake"
    result = run_extract(DatasetSource("bad", "coco", str(ann), str(img)), lake_root, ["mobilenetv2"], 4)
    assert result["rejects"] == 3

    rejects = []
    for p in sorted((lake_root / "rejects").rglob("*.parquet")):
        rejects += pq.read_table(p).to_pylist()
    by_image = {r["image_id"]: r["reason"] for r in rejects}
    assert len(rejects) == 3 and sorted(by_image) == ["1", "2", "3"], rejects
    assert all(reason for reason in by_image.values())
    assert "DecompressionBomb" in by_image["3"] or "bomb" in by_image["3"].lower(), by_image["3"]

    ids, emb = [], []
    for p in sorted((lake_root / "embeddings").rglob("*.parquet")):
        t = pq.read_table(p)
        ids += t["unit_id"].to_pylist()
        emb.append(np.stack(t["embedding"].to_numpy(zero_copy_only=False)))
    assert sorted(ids) == ["4", "5", "6", "7"]
    emb = np.concatenate(emb)
    assert emb.shape == (4, 1280) and np.isfinite(emb).all() and np.abs(emb).sum() > 0
    assert not temporaries(lake_root)


# ----------------------------------------------------------------------------------------------- verify and repair
@pytest.mark.slow
def test_verify_names_each_damaged_file_and_repair_sets_them_aside_for_a_rerun(pristine, tmp_path, capsys):
    """Faults: in a copy of a finished extraction, one shard is truncated, another replaced by a third shard's
    valid file (misplaced), and an items-free run record is truncated. Product: `vlalign verify` names exactly
    those files with their reasons (rc 1) and a query that reads the damaged shard points to verify;
    `verify --repair` moves the damaged shards to _damaged/ (nothing deleted) and a rerun recomputes exactly
    those two; verify is then clean (rc 0)."""
    from vlalign.cli.main import main
    from vlalign.datalake.catalog import QueryError, query
    from vlalign.datalake.store import Lake

    source, pristine_root = pristine
    root = tmp_path / "lake"
    shutil.copytree(pristine_root, root)
    shards = sorted(glob.glob(str(root / "embeddings" / "**" / "shard=*.parquet"), recursive=True))
    assert len(shards) == 3
    _truncate(shards, 0)
    shutil.copyfile(shards[2], shards[1])  # shard 2's valid file under shard 1's name
    (root / "runs" / "run=broken.json").write_text('{"run_id": "broken", "files": {"embedd')
    assert main(["verify", "--lake", str(root)]) == 1
    out = capsys.readouterr().out
    rel = [str(Path(p).relative_to(root)) for p in shards]
    assert f"shard  {rel[0]}: unreadable" in out
    assert f"shard  {rel[1]}: holds rows 32..40, not those of shard 1 of size 16" in out
    assert "record runs/run=broken.json: unreadable" in out and rel[2] not in out
    assert "3 damaged or misplaced" in out
    with pytest.raises(QueryError, match="table embeddings cannot read its files.*vlalign verify"):
        query(Lake.open(root), "select count(*) from embeddings")
    assert query(Lake.open(root), "select count(*) as n from items")["n"].to_pylist() == [40]  # the rest answers
    before = {p: Path(p).read_bytes() for p in shards[2:]}
    (root / "runs" / "run=broken.json").unlink()
    assert main(["verify", "--repair", "--lake", str(root)]) == 0
    out = capsys.readouterr().out
    assert "is a extract run: run it again" in out or "is a 'extract' run" in out or "extract run" in out
    damaged = sorted(glob.glob(str(root / "_damaged" / "*" / "embeddings" / "**" / "*.parquet"), recursive=True))
    assert [Path(p).name for p in damaged] == [Path(shards[0]).name, Path(shards[1]).name]
    result = run_extract(source, root, ["wordllama"], SHARD_SIZE)
    assert result["shards_computed"] == 2
    assert {p: Path(p).read_bytes() for p in shards[2:]} == before
    assert main(["verify", "--lake", str(root)]) == 0
    assert "0 damaged or misplaced" in capsys.readouterr().out
