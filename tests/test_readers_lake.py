"""Readers produce canonical items and record bad items as rejects; the lake writes atomically."""

from __future__ import annotations

import os

import pyarrow as pa
import pytest

from vlalign.datalake.schemas import ITEM_SCHEMA
from vlalign.datalake.store import TMP_MARK, Lake
from vlalign.datasets.readers import DatasetError, DatasetSource, read_dataset, read_emoji


def test_emoji_reader_gives_canonical_items_per_domain_and_language():
    r = read_emoji(domains=["google"], langs=["en", "fr"])
    assert r.items.schema == ITEM_SCHEMA
    assert r.items.num_rows == 2 * 1906
    assert set(r.items["lang"].to_pylist()) == {"en", "fr"}
    assert len(set(r.items["item_id"].to_pylist())) == r.items.num_rows
    assert len(set(r.items["image_id"].to_pylist())) == 1906
    # the same caption text in two domains shares a caption_id
    both = read_emoji(langs=["en"]).items
    assert len(set(both["caption_id"].to_pylist())) == 1906
    assert len(set(both["image_id"].to_pylist())) == 2 * 1906
    assert r.rejects == []


def test_emoji_reader_names_unknown_domain():
    with pytest.raises(DatasetError, match="unknown domain.*'noto'"):
        read_emoji(domains=["noto"])


def test_coco_reader_rejects_missing_empty_and_duplicate(coco_factory):
    ann, img = coco_factory(n_images=10, corrupt=1, missing=1, empty_captions=1, duplicate_ids=1)
    r = read_dataset(DatasetSource("tiny", "coco", str(ann), str(img)))
    reasons = sorted(x["reason"].split(":")[0] for x in r.rejects)
    # image 1 is missing (2 captions), one caption empty, one duplicate id; image 0 is garbage bytes, but image
    # bytes are checked where they are decoded (a reject at stage extract:<encoder>), not on read
    assert reasons == sorted(["missing image file"] * 2 + ["empty caption", "duplicate item_id"])
    assert all(x["dataset"] == "tiny" and x["stage"] == "read" for x in r.rejects)
    assert r.items.num_rows == 20 - 2 - 1
    assert "1" in r.items["image_id"].to_pylist()  # the garbage image is an item
    assert set(r.items["domain"].to_pylist()) == {"tiny"}
    assert all(os.path.isabs(p) for p in r.items["image"].to_pylist())


def test_coco_reader_names_the_bad_file(tmp_path):
    bad = tmp_path / "a.json"
    bad.write_text("{\"images\": []}")
    (tmp_path / "img").mkdir()
    with pytest.raises(DatasetError, match="a.json.*not COCO-captions format"):
        read_dataset(DatasetSource("x", "coco", str(bad), str(tmp_path / "img")))
    with pytest.raises(DatasetError, match="annotations file .* does not exist"):
        read_dataset(DatasetSource("x", "coco", str(tmp_path / "nope.json"), str(tmp_path)))


def test_atomic_write_leaves_no_temporary_and_metadata_round_trips(tmp_path):
    lake = Lake.open(tmp_path / "lake")
    path = lake.path("a", "b.parquet")
    lake.write_table(path, pa.table({"x": [1, 2]}), metadata={"identity": {"k": 1}})
    assert lake.read_metadata(path) == {"identity": {"k": 1}}
    assert not [p for p in (tmp_path / "lake" / "a").iterdir() if TMP_MARK in p.name]


def test_clean_tmp_removes_leftovers_of_killed_writers_only(tmp_path):
    lake = Lake.open(tmp_path)
    keep = lake.write_bytes(lake.path("d", "shard=00000.parquet"), b"x")
    left = tmp_path / "d" / f"shard=00001.parquet{TMP_MARK}abc"
    left.write_bytes(b"half")
    assert lake.glob(lake.path("d", "*")) == [keep]  # temporaries are never listed as data
    assert lake.clean_tmp("d") == [str(left)]
    assert sorted(p.name for p in (tmp_path / "d").iterdir()) == ["shard=00000.parquet"]


def test_unreadable_file_has_no_identity(tmp_path):
    lake = Lake.open(tmp_path)
    p = lake.write_bytes(lake.path("x.parquet"), b"PAR1 garbage")
    assert lake.read_metadata(p) is None
