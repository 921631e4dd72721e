"""The data set formats, each read from a tiny fixture built here (real files, PIL images, real tars and
parquet): the items (ids, captions, languages, labels, domains), the rejects with their reasons, the errors
that stop a data set before work starts, one read per process, the streaming ingest and its digest; and
(slow) real extractions and a sweep through the command line."""

from __future__ import annotations

import csv
import io
import json
import os
import tarfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image
from test_s3_lake import BUCKET as S3_BUCKET  # noqa: F401,F811  (moto's S3 server, module-scoped fixture)
from test_s3_lake import s3

from vlalign.datalake.digest import digest_values
from vlalign.datalake.schemas import ITEM_SCHEMA
from vlalign.datalake.store import Lake
from vlalign.datasets import readers as readers
from vlalign.datasets.formats import FORMAT_NAMES, FORMATS
from vlalign.datasets.readers import (
    DatasetError,
    DatasetSource,
    check_dataset,
    check_source,
    forget_reads,
    image_source,
    read_dataset,
)

CORRUPT = b"this is not an image, whatever its name says" * 4


@pytest.fixture(autouse=True)
def _fresh_reads():
    forget_reads()
    yield
    forget_reads()


def image_bytes(i: int, fmt: str = "JPEG", size: int = 40) -> bytes:
    """A small real image, different for every ``i``: a coloured square with a stripe."""
    c = ((53 * i + 40) % 256, (97 * i + 80) % 256, (151 * i + 120) % 256)
    im = Image.new("RGB", (size, size), c)
    for x in range(size):
        for w in range(3):
            im.putpixel((x, (x * (i % 3 + 1) + w) % size), (255 - c[0], 255 - c[1], 255 - c[2]))
    buf = io.BytesIO()
    im.save(buf, format=fmt)
    return buf.getvalue()


def write(path: Path, data: bytes | str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        path.write_text(data, encoding="utf-8")
    else:
        path.write_bytes(data)
    return path


def by_id(result) -> dict[str, dict]:
    rows = result.items.to_pylist()
    return {r["item_id"]: r for r in rows}


def reasons(result) -> dict[str, str]:
    return {r["item_id"]: r["reason"] for r in result.rejects}


def old_items_digest(items: pa.Table) -> str:
    """The items digest as store_items computed it from the whole table (before ingest streamed)."""
    keys = ["item_id", "image_id", "image", "caption_id", "caption", "lang", "label", "sublabel", "domain"]
    return digest_values([v for k in keys for v in items[k].to_pylist()]
                         + [digest_values([b]) if b is not None else "" for b in items["image_bytes"].to_pylist()])


def test_every_format_has_a_reader_and_a_line():
    assert all(callable(readers.reader_for(name)) for name in FORMAT_NAMES)
    assert set(FORMAT_NAMES) == set(readers.READERS)
    assert all(f.summary and "\n" not in f.summary for f in FORMATS.values())


def test_the_registry_has_a_module_for_every_format_of_formats_py(monkeypatch):
    for module in readers.READERS.values():
        assert all(callable(getattr(module, f, None)) for f in ("read", "check", "fingerprint")), module.__name__
    monkeypatch.delitem(readers.READERS, "xtd")
    monkeypatch.setitem(readers.READERS, "tiff-folder", readers.READERS["imagefolder"])
    with pytest.raises(ImportError, match=r"without a reader \['xtd'\].*not in formats.py \['tiff-folder'\]"):
        readers._check_registry()


# ------------------------------------------------------------------------------------------------ Karpathy


def make_karpathy(root: Path) -> tuple[Path, Path]:
    img = root / "images"
    entries = [
        {"filename": "a.jpg", "filepath": "val2014", "imgid": 0, "split": "train", "cocoid": 11,
         "sentences": [{"raw": "A red square.", "sentid": 0}, {"raw": "Red.", "sentid": 1}]},
        {"filename": "b.jpg", "imgid": 1, "split": "val", "sentences": [{"raw": "  ", "sentid": 2}, {"raw": "Green.", "sentid": 3}]},
        {"filename": "c.jpg", "imgid": 2, "split": "test", "sentences": [{"raw": "Not on disk.", "sentid": 4}]},
        {"filename": "d.jpg", "imgid": 3, "split": "restval",
         "sentences": [{"raw": "Corrupt bytes.", "sentid": 5}, {"raw": "Same sentid again.", "sentid": 3}]},
        {"filename": "e.jpg", "imgid": 4, "split": "test", "sentences": [{"raw": "Blue.", "sentid": 6}]},
    ]
    write(img / "val2014" / "a.jpg", image_bytes(0))
    write(img / "b.jpg", image_bytes(1))
    write(img / "d.jpg", CORRUPT)
    write(img / "e.jpg", image_bytes(4))
    ann = write(root / "dataset_flickr30k.json", json.dumps({"images": entries, "dataset": "flickr30k"}))
    return ann, img


def test_karpathy_items_rejects_and_splits(tmp_path):
    ann, img = make_karpathy(tmp_path)
    r = read_dataset(DatasetSource("k", "karpathy", str(ann), str(img)))
    items = by_id(r)
    assert sorted(items) == ["0", "1", "3", "5", "6"]
    assert items["0"]["image"] == str((img / "val2014" / "a.jpg").resolve())  # images/<filepath>/<filename>
    assert items["6"]["image"] == str((img / "e.jpg").resolve())
    assert (items["0"]["image_id"], items["0"]["caption_id"], items["0"]["caption"]) == ("0", "0", "A red square.")
    assert {r["domain"] for r in items.values()} == {"k"} and {r["lang"] for r in items.values()} == {"en"}
    assert items["5"]["image_id"] == "3"  # a corrupt image is not refused on read: its bytes are checked at decode
    why = reasons(r)
    assert why["2"] == "empty caption"
    assert why["4"].startswith("missing image file:") and "c.jpg" in why["4"]
    assert why["3"] == "duplicate sentid 3"
    assert {x["stage"] for x in r.rejects} == {"read"} and {x["dataset"] for x in r.rejects} == {"k"}

    test = read_dataset(DatasetSource("k", "karpathy", str(ann), str(img), split="test"))
    assert sorted(by_id(test)) == ["6"] and sorted(reasons(test)) == ["4"]
    train = read_dataset(DatasetSource("k", "karpathy", str(ann), str(img), split="train,restval", lang="de"))
    assert sorted(by_id(train)) == ["0", "1", "3", "5"] and set(train.items["lang"].to_pylist()) == {"de"}


def test_karpathy_bad_input_is_named(tmp_path):
    ann, img = make_karpathy(tmp_path)
    bad = write(tmp_path / "no-images.json", json.dumps({"dataset": "coco", "imgs": []}))
    with pytest.raises(DatasetError, match=r"no-images.json.*not a Karpathy-split JSON.*'images'"):
        read_dataset(DatasetSource("k", "karpathy", str(bad), str(img)))
    with pytest.raises(DatasetError, match=r"unknown split\(s\) \['dev'\]"):
        read_dataset(DatasetSource("k", "karpathy", str(ann), str(img), split="dev"))
    only_train = write(tmp_path / "train.json", json.dumps({"images": json.loads(ann.read_text())["images"][:1]}))
    with pytest.raises(DatasetError, match=r"no image of split 'test'.*\['train'\]"):
        read_dataset(DatasetSource("k", "karpathy", str(only_train), str(img), split="test"))
    with pytest.raises(DatasetError, match=r"format 'karpathy' needs 'annotations'"):
        check_source(DatasetSource("k", "karpathy", None, str(img)))
    with pytest.raises(DatasetError, match=r"image folder .*nope.* does not exist"):
        check_source(DatasetSource("k", "karpathy", str(ann), str(tmp_path / "nope")))


# ------------------------------------------------------------------------------------------------ XTD-10


def make_xtd(root: Path) -> tuple[Path, Path]:
    ann, img = root / "xtd10", root / "images"
    names = ["img_a.jpg", "img_b.jpg", "img_c.jpg", "img_a.jpg", "img_d.jpg"]  # c is not on disk, line 4 repeats a
    write(img / "img_a.jpg", image_bytes(0))
    write(img / "img_b.jpg", image_bytes(1))
    write(img / "img_d.jpg", CORRUPT)
    write(ann / "test_image_names.txt", "\n".join(names) + "\n")
    write(ann / "test_1kcaptions_en.txt", "a red thing\na green thing\na lost thing\nred again\na broken thing\n")
    write(ann / "test_1kcaptions_de.txt", "ein rotes Ding\n\nverloren\nwieder rot\nkaputt")  # line 2 empty, no final newline
    return ann, img


def test_xtd_items_rejects_and_languages(tmp_path):
    ann, img = make_xtd(tmp_path)
    r = read_dataset(DatasetSource("x", "xtd", str(ann), str(img)))
    items = by_id(r)
    assert sorted(items) == ["de/img_a", "de/img_d", "en/img_a", "en/img_b", "en/img_d"]
    assert items["de/img_a"]["image_id"] == items["en/img_a"]["image_id"] == "img_a"  # same line: same image
    assert items["de/img_a"]["caption_id"] == "de/img_a" and items["de/img_a"]["lang"] == "de"
    assert items["de/img_a"]["caption"] == "ein rotes Ding" and items["en/img_d"]["caption"] == "a broken thing"
    assert items["en/img_b"]["image"] == str((img / "img_b.jpg").resolve())
    why = reasons(r)
    assert why["de/img_b"] == "empty caption (line 2 of test_1kcaptions_de.txt)"
    assert why["en/img_c"].startswith("missing image file") and why["de/img_c"].startswith("missing image file")
    dup = [x for x in r.rejects if x["image_id"] == "img_a"]
    assert len(dup) == 2 and all("duplicate image 'img_a.jpg' (line 4; first on line 1" in x["reason"] for x in dup)
    # a pattern chooses caption files; the image list is found beside them
    en = read_dataset(DatasetSource("x", "xtd", str(ann / "*_en.txt"), str(img)))
    assert set(en.items["lang"].to_pylist()) == {"en"} and en.items.num_rows == 3
    assert read_dataset(DatasetSource("x", "xtd", str(ann), str(img)), langs=["de"]).items.num_rows == 2


def test_xtd_line_count_and_layout_errors(tmp_path):
    ann, img = make_xtd(tmp_path)
    write(ann / "test_1kcaptions_fr.txt", "une\ndeux\ntrois\nquatre\n")
    with pytest.raises(DatasetError, match=r"test_1kcaptions_fr.txt' has 4 lines but the image list 'test_image_names.txt' has 5"):
        check_source(DatasetSource("x", "xtd", str(ann), str(img)))
    (ann / "test_1kcaptions_fr.txt").unlink()
    (ann / "test_image_names.txt").unlink()
    with pytest.raises(DatasetError, match="expected one image list"):
        read_dataset(DatasetSource("x", "xtd", str(ann), str(img)))
    with pytest.raises(DatasetError, match="annotations .*missing.* does not exist"):
        read_dataset(DatasetSource("x", "xtd", str(tmp_path / "missing"), str(img)))
    with pytest.raises(DatasetError, match="takes no 'lang'"):
        check_source(DatasetSource("x", "xtd", str(ann), str(img), lang="de"))


# ------------------------------------------------------------------------------------------------ ImageFolder


def make_imagefolder(root: Path, per_class: int = 3, classes=("golden_retriever", "tabby_cat")) -> Path:
    k = 0
    for c in classes:
        for j in range(per_class):
            write(root / c / f"{j}.jpg", image_bytes(k))
            k += 1
    return root


def test_imagefolder_one_caption_per_class(tmp_path):
    root = make_imagefolder(tmp_path / "pets")
    write(root / "tabby_cat" / "1.jpg", CORRUPT)  # checked at decode, not here
    write(root / "tabby_cat" / "more" / "9.png", image_bytes(9, "PNG"))  # sub-folders belong to their class
    write(root / "tabby_cat" / "notes.txt", "not an image")
    write(root / ".hidden" / "x.jpg", image_bytes(1))
    r = read_dataset(DatasetSource("pets", "imagefolder", images=str(root)))
    items = by_id(r)
    assert sorted(items) == ["golden_retriever/0.jpg", "golden_retriever/1.jpg", "golden_retriever/2.jpg",
                             "tabby_cat/0.jpg", "tabby_cat/1.jpg", "tabby_cat/2.jpg", "tabby_cat/more/9.png"]
    cat = items["tabby_cat/more/9.png"]
    assert (cat["caption"], cat["label"], cat["caption_id"], cat["image_id"]) == ("tabby cat", "tabby_cat", "tabby_cat", "tabby_cat/more/9.png")
    assert len({r["caption_id"] for r in items.values()}) == 2 and r.rejects == []

    names = write(tmp_path / "classes.txt", "dog\nhouse cat\n")
    r = read_dataset(DatasetSource("pets", "imagefolder", str(names), str(root)))
    assert {(x["caption_id"], x["caption"], x["label"]) for x in r.items.to_pylist()} == {
        ("golden_retriever", "dog", "dog"), ("tabby_cat", "house cat", "house cat")}
    mapping = write(tmp_path / "classes.json", json.dumps({"golden_retriever": "retriever_dog", "tabby_cat": " "}))
    r = read_dataset(DatasetSource("pets", "imagefolder", str(mapping), str(root)))
    assert set(r.items["caption"].to_pylist()) == {"retriever dog"}
    assert len(r.rejects) == 4 and all("class name of folder 'tabby_cat' is empty" in x["reason"] for x in r.rejects)


def test_imagefolder_class_list_errors(tmp_path):
    root = make_imagefolder(tmp_path / "pets")
    three = write(tmp_path / "three.txt", "a\nb\nc\n")
    with pytest.raises(DatasetError, match=r"3 class names but .* has 2 class folders"):
        check_source(DatasetSource("p", "imagefolder", str(three), str(root)))
    partial = write(tmp_path / "partial.json", json.dumps({"golden_retriever": "dog"}))
    with pytest.raises(DatasetError, match=r"names no class for folder\(s\) \['tabby_cat'\]"):
        check_source(DatasetSource("p", "imagefolder", str(partial), str(root)))
    (tmp_path / "flat").mkdir()
    with pytest.raises(DatasetError, match="no class folders"):
        check_source(DatasetSource("p", "imagefolder", images=str(tmp_path / "flat")))


# ------------------------------------------------------------------------------------------------ WebDataset


def add_member(tar: tarfile.TarFile, name: str, data: bytes | str) -> None:
    data = data.encode() if isinstance(data, str) else data
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def make_shards(folder: Path) -> dict[str, bytes]:
    """data-000.tar and data-001.tar; returns the good samples' image bytes by key (s006's image is garbage)."""
    folder.mkdir(parents=True, exist_ok=True)
    good = {}
    with tarfile.open(folder / "data-000.tar", "w") as tar:
        for key, ext, img, cap_ext, cap in [
            ("s000", "jpg", image_bytes(0), "txt", "a red square"),
            ("s001", "png", image_bytes(1, "PNG"), "json", json.dumps({"caption": "a green square", "url": "x"})),
            ("s002", "jpg", image_bytes(2), "json", json.dumps({"text": "a blue square"})),
            ("s003", "jpg", image_bytes(3), None, None),  # no caption
            ("s004", None, None, "txt", "a caption without an image"),
            ("s005", "jpg", image_bytes(5), "txt", "  \n"),  # empty caption
            ("s006", "jpg", CORRUPT, "txt", "a corrupt image"),
        ]:
            if img is not None:
                add_member(tar, f"{key}.{ext}", img)
            if cap is not None:
                add_member(tar, f"{key}.{cap_ext}", cap)
            if img not in (None, CORRUPT) and cap and cap.strip():
                good[key] = img
    with tarfile.open(folder / "data-001.tar", "w") as tar:
        add_member(tar, "s007.jpg", image_bytes(7))
        add_member(tar, "s007.txt", "a yellow square")
        good["s007"] = image_bytes(7)
        add_member(tar, "s000.jpg", image_bytes(8))  # the key of a sample of data-000
        add_member(tar, "s000.txt", "a duplicate")
        add_member(tar, "s008.webp", image_bytes(8, "WEBP"))
        add_member(tar, "s008.json", json.dumps({"url": "no caption here"}))
    return good


def test_webdataset_items_reference_tar_bytes(tmp_path):
    good = make_shards(tmp_path / "shards")
    pattern = str(tmp_path / "shards" / "data-{000..001}.tar")
    r = read_dataset(DatasetSource("wds", "webdataset", images=pattern))
    items = by_id(r)
    assert sorted(items) == ["s000", "s001", "s002", "s006", "s007"]
    assert items["s001"]["caption"] == "a green square" and items["s002"]["caption"] == "a blue square"
    assert all(x["image_bytes"] is None and x["image"].startswith("tarmember:") for x in items.values())
    for key, data in good.items():  # each reference reads back exactly the member's bytes, without the tar unpacked
        assert image_source(items[key]["image"], None) == data
    assert image_source(items["s006"]["image"], None) == CORRUPT  # refused later, at decode
    why = reasons(r)
    assert why["s003"].startswith("no caption (.txt, or .json with 'caption' or 'text')")
    assert why["s004"].startswith("no image (.jpg")
    assert why["s005"] == "empty caption (.txt)"
    assert why["s000"] == "duplicate key 's000' (first in data-000.tar)"
    assert why["s008"] == "no caption: the .json has neither 'caption' nor 'text'"
    # the same shards as a folder; one tar alone
    assert read_dataset(DatasetSource("wds", "webdataset", images=str(tmp_path / "shards"))).items.equals(r.items)
    one = read_dataset(DatasetSource("wds", "webdataset", images=str(tmp_path / "shards" / "data-001.tar")))
    assert by_id(one).keys() == {"s000", "s007"}


def test_webdataset_shards_on_object_storage(s3, tmp_path):
    """Shards in an S3 bucket (moto's server): listed, read through fsspec, and each item's image read back as
    one byte range of its remote tar."""
    import fsspec

    good = make_shards(tmp_path / "shards")
    fs = fsspec.filesystem("s3")
    for name in ("data-000.tar", "data-001.tar"):
        fs.put_file(str(tmp_path / "shards" / name), f"{S3_BUCKET}/wds/{name}")
    remote = read_dataset(DatasetSource("wds", "webdataset", images=f"s3://{S3_BUCKET}/wds/data-{{000..001}}.tar"))
    local = read_dataset(DatasetSource("wds", "webdataset", images=str(tmp_path / "shards")))
    assert remote.items["item_id"].to_pylist() == local.items["item_id"].to_pylist()
    assert [r["reason"] for r in remote.rejects] == [r["reason"] for r in local.rejects]
    items = by_id(remote)
    assert items["s001"]["image"].endswith(f":s3://{S3_BUCKET}/wds/data-000.tar")
    for key, data in good.items():
        assert image_source(items[key]["image"], None) == data
    folder = read_dataset(DatasetSource("wds", "webdataset", images=f"s3://{S3_BUCKET}/wds"))
    assert folder.items.equals(remote.items)


def test_webdataset_missing_and_broken_shards(tmp_path):
    make_shards(tmp_path / "shards")
    with pytest.raises(DatasetError, match=r"1 of 3 tar shards do not exist: \[.*data-002.tar"):
        check_source(DatasetSource("w", "webdataset", images=str(tmp_path / "shards" / "data-{000..002}.tar")))
    with pytest.raises(DatasetError, match="no tar shards"):
        check_source(DatasetSource("w", "webdataset", images=str(write(tmp_path / "empty" / "x.txt", "").parent)))
    with pytest.raises(DatasetError, match="takes no 'annotations'"):
        check_source(DatasetSource("w", "webdataset", annotations="a.json", images=str(tmp_path / "shards")))
    whole = (tmp_path / "shards" / "data-000.tar").read_bytes()
    cut = write(tmp_path / "cut" / "data-000.tar", whole[: len(whole) // 2 + 100])
    r = read_dataset(DatasetSource("w", "webdataset", images=str(cut)))
    broken = [x for x in r.rejects if x["item_id"] is None]
    assert len(broken) == 1 and "end-of-archive" in broken[0]["reason"] and str(cut) in broken[0]["reason"]
    assert sorted(by_id(r)) == ["s000", "s001", "s002"]  # the samples before the cut
    cut = write(tmp_path / "cut" / "data-000.tar", whole[:8704])  # inside s003.jpg's data
    r = read_dataset(DatasetSource("w", "webdataset", images=str(cut)))
    assert reasons(r)["s003"] == "member s003.jpg is cut off: data-000.tar ends before its data does"
    assert "unexpected end of data" in [x for x in r.rejects if x["item_id"] is None][0]["reason"]


# ------------------------------------------------------------------------------------------------ img2dataset


def make_img2dataset(out: Path) -> None:
    out.mkdir(parents=True)
    rows0 = [
        ("000000000", "a red square", "success", None),
        ("000000001", None, "failed_to_download", "HTTP Error 404: Not Found"),
        ("000000002", "", "success", None),
        ("000000003", "a corrupt image", "success", None),
        ("000000004", "not in the tar", "success", None),
    ]
    with tarfile.open(out / "00000.tar", "w") as tar:
        for key, img in (("000000000", image_bytes(0)), ("000000002", image_bytes(2)), ("000000003", CORRUPT)):
            add_member(tar, f"{key}.jpg", img)
            add_member(tar, f"{key}.txt", "ignored: the parquet's caption is used")
            add_member(tar, f"{key}.json", json.dumps({"key": key}))
    rows1 = [
        ("000010000", "a blue square", "success", None),
        ("000010001", "too small", "failed_to_resize", "image too small"),
        ("000000000", "a duplicate key", "success", None),
    ]
    write(out / "00001" / "000010000.jpg", image_bytes(10))
    write(out / "00001" / "000010000.txt", "a blue square")
    for name, rows in (("00000", rows0), ("00001", rows1)):
        pq.write_table(pa.table({
            "url": [f"http://example.com/{k}.jpg" for k, *_ in rows], "caption": [c for _, c, _, _ in rows],
            "key": [k for k, *_ in rows], "status": [s for _, _, s, _ in rows], "error_message": [e for *_, e in rows],
            "width": pa.array([40] * len(rows), pa.int64())}), out / f"{name}.parquet")
    write(out / "00000_stats.json", "{}")


def test_img2dataset_statuses_become_rejects(tmp_path):
    make_img2dataset(tmp_path / "out")
    r = read_dataset(DatasetSource("i2d", "img2dataset", images=str(tmp_path / "out")))
    items = by_id(r)
    assert sorted(items) == ["000000000", "000000003", "000010000"]
    assert items["000000000"]["caption"] == "a red square"
    assert image_source(items["000000000"]["image"], None) == image_bytes(0)
    assert items["000010000"]["image"] == str((tmp_path / "out" / "00001" / "000010000.jpg").resolve())
    why = reasons(r)
    assert why == {
        "000000001": "download failed (failed_to_download): HTTP Error 404: Not Found",
        "000000002": "empty caption",
        "000000004": "missing image: no 000000004.<image ext> in 00000.tar",
        "000010001": "download failed (failed_to_resize): image too small",
        "000000000": "duplicate key '000000000' (first in 00000.parquet)",
    }


def test_img2dataset_layout_errors(tmp_path):
    make_img2dataset(tmp_path / "out")
    pq.write_table(pa.table({"key": ["1"], "status": ["success"]}), tmp_path / "out" / "00002.parquet")
    with pytest.raises(DatasetError, match=r"00002.parquet: neither 00002.tar nor 00002/"):
        check_source(DatasetSource("i", "img2dataset", images=str(tmp_path / "out")))
    (tmp_path / "out" / "00002").mkdir()
    with pytest.raises(DatasetError, match=r"00002.parquet' has no column\(s\) \['caption'\]"):
        read_dataset(DatasetSource("i", "img2dataset", images=str(tmp_path / "out")))
    (tmp_path / "bad" / "00000").mkdir(parents=True)
    (tmp_path / "out" / "00002.parquet").rename(tmp_path / "bad" / "00000.parquet")
    with pytest.raises(DatasetError, match=r"00000.parquet' has no column\(s\) \['caption'\]"):
        check_source(DatasetSource("i", "img2dataset", images=str(tmp_path / "bad")))  # the first parquet's, before work
    (tmp_path / "none").mkdir()
    with pytest.raises(DatasetError, match="no NNNNN.parquet"):
        check_source(DatasetSource("i", "img2dataset", images=str(tmp_path / "none")))


# ------------------------------------------------------------------------------------------------ HF imagefolder


def make_hf(root: Path) -> None:
    write(root / "train" / "a.png", image_bytes(0, "PNG"))
    write(root / "train" / "b.png", image_bytes(1, "PNG"))
    write(root / "train" / "c.png", CORRUPT)
    lines = [json.dumps({"file_name": "a.png", "text": "a red square", "label": "red"}),
             json.dumps({"file_name": "b.png", "text": ""}),
             json.dumps({"file_name": "gone.png", "text": "not on disk"}),
             "{not json",
             json.dumps({"file_name": "a.png", "text": "listed twice"}),
             json.dumps({"file_name": "c.png", "text": "a corrupt image"})]
    write(root / "train" / "metadata.jsonl", "\n".join(lines) + "\n")
    write(root / "test" / "d.png", image_bytes(3, "PNG"))
    with open(write(root / "test" / "metadata.csv", ""), "w", newline="") as f:
        csv.writer(f).writerows([["file_name", "caption"], ["d.png", "a blue square"]])
    write(root / "validation" / "imgs" / "e.png", image_bytes(4, "PNG"))
    with open(write(root / "validation" / "metadata.csv", ""), "w", newline="") as f:
        csv.writer(f).writerows([["file_name", "description", "source"], ["imgs/e.png", "a grey square", "web"]])


def test_hf_imagefolder_splits_and_caption_columns(tmp_path):
    make_hf(tmp_path / "hf")
    r = read_dataset(DatasetSource("hf", "hf-imagefolder", images=str(tmp_path / "hf")))
    items = by_id(r)
    assert sorted(items) == ["test/d.png", "train/a.png", "train/c.png", "validation/imgs/e.png"]
    assert items["train/a.png"]["caption"] == "a red square" and items["train/a.png"]["label"] == "red"
    assert items["test/d.png"]["caption"] == "a blue square"  # the 'caption' column
    assert items["validation/imgs/e.png"]["caption"] == "a grey square"  # the first other string column
    assert items["test/d.png"]["image"] == str((tmp_path / "hf" / "test" / "d.png").resolve())
    why = reasons(r)
    assert why["train/b.png"] == "empty caption ('text')"
    assert why["train/gone.png"].startswith("missing image file")
    assert why["train/metadata.jsonl:4"].startswith("line 4 of train/metadata.jsonl is not JSON")
    assert why["train/a.png"] == "duplicate file_name 'a.png' (line 5 of train/metadata.jsonl)"
    test = read_dataset(DatasetSource("hf", "hf-imagefolder", images=str(tmp_path / "hf"), split="test"))
    assert sorted(by_id(test)) == ["test/d.png"] and test.rejects == []
    with pytest.raises(DatasetError, match=r"split\(s\) \['dev'\] not found.*\['test', 'train', 'validation'\]"):
        check_source(DatasetSource("hf", "hf-imagefolder", images=str(tmp_path / "hf"), split="dev"))


def test_hf_imagefolder_top_level_metadata_and_errors(tmp_path):
    write(tmp_path / "flat" / "x.jpg", image_bytes(0))
    write(tmp_path / "flat" / "metadata.jsonl", json.dumps({"file_name": "x.jpg", "caption": "a square"}) + "\n")
    r = read_dataset(DatasetSource("flat", "hf-imagefolder", images=str(tmp_path / "flat")))
    assert r.items["item_id"].to_pylist() == ["x.jpg"] and r.items["caption"].to_pylist() == ["a square"]
    write(tmp_path / "nometa" / "x.jpg", image_bytes(0))
    with pytest.raises(DatasetError, match="no metadata.jsonl or metadata.csv"):
        check_source(DatasetSource("n", "hf-imagefolder", images=str(tmp_path / "nometa")))
    write(tmp_path / "nofile" / "metadata.jsonl", json.dumps({"path": "x.jpg", "text": "t"}) + "\n")
    with pytest.raises(DatasetError, match="no 'file_name' column"):
        check_source(DatasetSource("n", "hf-imagefolder", images=str(tmp_path / "nofile")))


# ------------------------------------------------------------------------------------------------ coco, emoji


def test_coco_corrupt_image_is_not_refused_on_read(coco_factory):
    ann, img = coco_factory(n_images=4, corrupt=1, truncated=1)
    r = read_dataset(DatasetSource("c", "coco", str(ann), str(img)))
    assert r.rejects == [] and r.items.num_rows == 8  # bytes are checked where they are decoded


def test_emoji_ingest_digest_is_unchanged(tmp_path):
    """The streaming ingest writes the emoji items with the digest of every lake before it."""
    from vlalign.tasks.extract import ingest_items

    out = ingest_items.fn(Lake.open(tmp_path / "lake"), DatasetSource("emoji"))
    assert out["digest"] == "9529924e7c3c93bc" and out["items"] == 38120 and out["rejects"] == 0


# ------------------------------------------------------------------------------------------------ ingest, one read


def count_reads(monkeypatch, fmt: str) -> list[int]:
    """Count the calls of ``fmt``'s reader (the function that opens the data set's files)."""
    reader = readers.reader_for(fmt)
    calls = [0]

    def counting(source):
        calls[0] += 1
        return reader(source)

    monkeypatch.setattr(readers.READERS[fmt], "read", counting)
    return calls


def test_ingest_streams_shards_into_row_groups_with_the_whole_table_digest(tmp_path, monkeypatch):
    from vlalign.datalake.store import Lake
    from vlalign.tasks.extract import ingest_items

    make_shards(tmp_path / "shards")
    source = DatasetSource("wds", "webdataset", images=str(tmp_path / "shards"))
    calls = count_reads(monkeypatch, "webdataset")
    out = ingest_items.fn(Lake.open(tmp_path / "lake"), source)
    assert calls == [1] and out["items"] == 5 and out["rejects"] == 5
    f = pq.ParquetFile(out["path"])
    assert f.num_row_groups == 2  # one per shard, written as each arrived
    items = pq.read_table(out["path"])
    assert items.schema.remove_metadata().equals(ITEM_SCHEMA)
    assert old_items_digest(items) == out["digest"] == Lake.open(tmp_path / "lake").read_metadata(out["path"])["digest"]
    assert pq.read_table(out["rejects_path"]).num_rows == 5
    mtime = os.stat(out["path"]).st_mtime_ns
    again = ingest_items.fn(Lake.open(tmp_path / "lake"), source)
    assert again["digest"] == out["digest"] and os.stat(out["path"]).st_mtime_ns == mtime  # unchanged: not rewritten


def test_one_read_per_process_while_the_files_are_unchanged(tmp_path, monkeypatch):
    from vlalign.tasks.extract import ingest_items

    root = make_imagefolder(tmp_path / "pets")
    source = DatasetSource("pets", "imagefolder", images=str(root))
    calls = count_reads(monkeypatch, "imagefolder")
    first = read_dataset(source)
    assert read_dataset(source, domains=["pets"]).items.equals(first.items)
    check_dataset(source)
    assert calls == [1]
    ingest_items.fn(Lake.open(tmp_path / "lake"), source)  # takes the kept read, then forgets it
    assert calls == [1]
    read_dataset(source)
    assert calls == [2]
    write(root / "tabby_cat" / "new.jpg", image_bytes(20))  # a new image: the class folder's stat changed
    assert read_dataset(source).items.num_rows == 7 and calls == [3]


def test_a_sweeps_validations_and_ingest_share_one_read(tmp_path, monkeypatch):
    """A sweep's validation against the data (vlalign.engine.world, once a command), another validation (a
    second command in the same process) and the ingest share one read of the data set. (The slow test below
    runs a real sweep through the command line and counts the same.)"""
    from vlalign.engine.spec import parse_spec
    from vlalign.engine.world import validate_against_world
    from vlalign.tasks.extract import ingest_items

    root = make_imagefolder(tmp_path / "pets", per_class=4)
    spec = parse_spec({**_spec(format="imagefolder", images=str(root)), "base_size": 2, "query_size": 2})
    calls = count_reads(monkeypatch, "imagefolder")
    sizes = validate_against_world(spec)
    assert validate_against_world(spec) == sizes == {"d": {("d", "en"): 8}}
    out = ingest_items.fn(Lake.open(tmp_path / "lake"), spec.datasets[0].source())
    assert calls == [1] and out["items"] == 8


# ------------------------------------------------------------------------------------------------ spec and CLI


def _spec(**dataset) -> dict:
    return {"name": "s", "datasets": [{"name": "d", **dataset}], "vision_encoders": "mobilenetv2",
            "text_encoders": "wordllama", "analyses": {"cka": {"kernels": ["linear"]}}}


def test_spec_keys_of_every_format():
    from vlalign.engine.spec import SpecError, parse_spec

    spec = parse_spec(_spec(format="karpathy", annotations="k.json", images="img", split="test", lang="de"))
    ds = spec.datasets[0]
    assert ds.source() == DatasetSource("d", "karpathy", "k.json", "img", lang="de", split="test")
    assert '"split": "test"' in spec.to_json()
    plain = parse_spec(_spec(format="coco", annotations="a.json", images="img"))
    assert '"split"' not in plain.to_json() and '"lang"' not in plain.to_json()  # run ids of older specs unchanged
    # the pattern as given (not expanded); a relative path made absolute, as on the command line
    assert (parse_spec(_spec(format="webdataset", images="s/data-{000..009}.tar")).datasets[0].source().images
            == os.path.join(os.getcwd(), "s/data-{000..009}.tar"))
    for doc, line in [
        (_spec(format="xtd", images="img"), "datasets[0]: format 'xtd' needs 'annotations' (the folder (or a pattern) of the caption files)"),
        (_spec(format="webdataset"), "datasets[0]: format 'webdataset' needs 'images' (tar shards: a brace pattern, a folder of .tar files, or one .tar)"),
        (_spec(format="coco", annotations="a.json", images="i", split="val"), "datasets[0]: format 'coco' takes no 'split': it has no splits"),
        (_spec(format="karpathy", annotations="a.json", images="i", split="dev"), "datasets[0]: split 'dev': unknown split(s) ['dev']; karpathy has ['train', 'val', 'test', 'restval'] (one, or several separated by commas)"),
        (_spec(format="hf-imagefolder", images="i", lang="../x"), "datasets[0]: lang '../x': not a safe name (it becomes a folder name in the lake); use letters, digits, '.', '_' or '-'"),
        (_spec(format="tfrecord"), None),
    ]:
        with pytest.raises(SpecError) as e:
            parse_spec(doc)
        if line:
            assert str(e.value) == line
        else:
            assert "datasets[0].format: expected 'emoji', 'coco', 'karpathy'" in str(e.value)


def test_cli_lists_formats_and_names_bad_input_before_work(tmp_path, capsys):
    from vlalign.cli.main import main

    assert main(["datasets"]) == 0
    out = capsys.readouterr().out
    assert all(f"  {name} " in out for name in FORMAT_NAMES)
    lake = str(tmp_path / "lake")
    ann, img = make_karpathy(tmp_path / "k")
    code = main(["extract", "--dataset", "k", "--format", "karpathy", "--images", str(img), "--encoders", "wordllama",
                 "--lake", lake])
    assert code == 2 and "--format karpathy: format 'karpathy' needs --annotations" in capsys.readouterr().err
    bad = write(tmp_path / "bad.json", json.dumps({"dataset": "x"}))
    code = main(["extract", "--dataset", "k", "--format", "karpathy", "--annotations", str(bad), "--images", str(img),
                 "--encoders", "wordllama", "--lake", lake])
    assert code == 2 and "not a Karpathy-split JSON" in capsys.readouterr().err
    xann, ximg = make_xtd(tmp_path / "x")
    write(xann / "test_1kcaptions_fr.txt", "une\n")
    code = main(["extract", "--dataset", "x", "--format", "xtd", "--annotations", str(xann), "--images", str(ximg),
                 "--encoders", "wordllama", "--lake", lake])
    assert code == 2 and "test_1kcaptions_fr.txt' has 1 lines but the image list" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["extract", "--format", "tfrecord", "--encoders", "wordllama"])
    assert "invalid choice: 'tfrecord'" in capsys.readouterr().err
    assert not (tmp_path / "lake").exists()  # nothing started, nothing written


# ------------------------------------------------------------------------------------------------ slow: for real


def _query(lake: str, sql: str) -> list[dict]:
    from vlalign.datalake.catalog import query
    from vlalign.datalake.store import Lake

    return query(Lake.open(lake), sql).to_pylist()


@pytest.mark.slow
def test_extract_webdataset_end_to_end(prefect_server, flows_on_threads, tmp_path):
    """`vlalign extract --format webdataset` with real encoders: every good image embedded from its tar byte
    range, the corrupt one a reject at stage extract:<encoder>, the bad samples rejects at stage read. (The
    flow on threads of this process: nothing here is about Dask.)"""
    from vlalign.cli.main import main

    good = make_shards(tmp_path / "shards")
    lake = str(tmp_path / "lake")
    code = main(["extract", "--dataset", "wds", "--format", "webdataset", "--images",
                 str(tmp_path / "shards" / "data-{000..001}.tar"), "--encoders", "mobilenetv2,wordllama",
                 "--shard-size", "2", "--workers", "1", "--lake", lake])
    assert code == 0
    units = _query(lake, "select encoder, unit_id from embeddings order by encoder, unit_id")
    vision = [u["unit_id"] for u in units if u["encoder"] == "mobilenetv2__avg"]
    text = [u["unit_id"] for u in units if u["encoder"] == "wordllama__mean"]
    assert vision == sorted(good)  # every good image, once; not the corrupt s006
    assert text == sorted([*good, "s006"])  # the corrupt image's caption is fine
    # the command line's `vlalign query` (a process of its own) over the lake the run left
    import subprocess
    import sys

    out = subprocess.run([str(Path(sys.executable).parent / "vlalign"), "query",
                          "select stage, image_id, reason from rejects order by stage, image_id", "--format", "json",
                          "--lake", lake], capture_output=True, text=True, check=True).stdout
    rejects = json.loads(out)
    extract = [r for r in rejects if r["stage"] != "read"]
    assert extract == [{"stage": "extract:mobilenetv2__avg", "image_id": "s006",
                        "reason": extract[0]["reason"]}] and "cannot decode image" in extract[0]["reason"]
    assert sorted(r["image_id"] for r in rejects if r["stage"] == "read") == ["s000", "s003", "s004", "s005", "s008"]
    items = _query(lake, "select item_id, image, image_inline from items order by item_id")
    assert [i["item_id"] for i in items] == ["s000", "s001", "s002", "s006", "s007"]
    assert not any(i["image_inline"] for i in items) and all(i["image"].startswith("tarmember:") for i in items)


@pytest.mark.slow
def test_sweep_on_an_imagefolder_reads_it_once(prefect_server, flows_on_threads, tmp_path, monkeypatch):
    """`vlalign sweep` on an imagefolder data set (several images share their class's caption): CKA, matching
    and zero-shot classification rows, and the reader called once for the whole sweep (two validations and
    the ingest). (The flow on threads of this process, so a read from any of its tasks is counted too.)"""
    import yaml

    from vlalign.cli.main import main

    root = make_imagefolder(tmp_path / "shapes", per_class=6, classes=("red_square", "green_circle", "blue_stripe"))
    spec = {"name": "folder-sweep",
            "datasets": [{"name": "shapes", "format": "imagefolder", "images": str(root)}],
            "vision_encoders": ["mobilenetv2"], "text_encoders": ["wordllama"],
            "analyses": {"cka": {"kernels": ["linear"], "bootstrap": 0}, "matching": ["local_cka"], "retrieval": [],
                         "classification": {"label_fields": ["label"], "templates": ["a photo of a {label}"],
                                            "methods": ["local_cka"]}},
            "base_size": 6, "query_size": 6, "base_selection": "random", "seeds": [0],
            "extraction": {"shard_size": 8}}
    path = write(tmp_path / "spec.yaml", yaml.safe_dump(spec))
    calls = count_reads(monkeypatch, "imagefolder")
    lake = str(tmp_path / "lake")
    assert main(["sweep", str(path), "--lake", lake, "--workers", "1"]) == 0
    assert calls == [1]
    assert len(_query(lake, "select * from cka")) == 1
    matching = _query(lake, "select method, accuracy, chance, query_size from matching")
    assert [m["method"] for m in matching] == ["local_cka"]
    classes = _query(lake, "select method, accuracy, chance from classification")
    assert len(classes) == 1 and classes[0]["chance"] == pytest.approx(1 / 3)
    pairs = _query(lake, "select count(distinct caption_id) as captions, count(*) as items from items where dataset = 'shapes'")
    assert pairs == [{"captions": 3, "items": 18}]
