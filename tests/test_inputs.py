"""Every data set input checked at the boundary: whatever a reader is given (random JSON in place of the
documented structure, fields of the wrong type, truncated files, random bytes, invalid UTF-8 anywhere, deep
nesting, huge fields), the product's own DatasetError comes out (one line naming the file and the key or line)
or the read succeeds with reject rows that say why; never another exception, never a hang. The readers are called
directly (no encoders, no Prefect); two command-line checks stop before Prefect starts."""

from __future__ import annotations

import io
import json
import os
import tarfile
import tempfile
from contextlib import contextmanager
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vlalign.datalake.schemas import ITEM_SCHEMA, REJECT_SCHEMA
from vlalign.datasets.format_readers import base
from vlalign.datasets.format_readers.fields import MAX_TEXT
from vlalign.datasets.readers import (
    DatasetError,
    DatasetSource,
    check_dataset,
    forget_reads,
    image_name,
    image_ref,
    iter_batches,
    load_image_input,
    read_dataset,
)

FAST = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
IMG = b"image bytes: the readers only stat them"

# -- strategies: random JSON values, text with the awkward characters, mutations of a valid file's bytes ----------

AWKWARD = st.sampled_from(["\ud800", "\udcff", "\x00", "\n", "\r", "\u2028", "\ufeff", "é", ".", "/"])
texts = st.text(st.characters() | AWKWARD, max_size=8)
scalars = st.none() | st.booleans() | st.integers(-(10**20), 10**20) | st.floats() | texts
json_values = st.recursive(scalars, lambda c: st.lists(c, max_size=3) | st.dictionaries(texts, c, max_size=3),
                           max_leaves=8)


@st.composite
def mutated(draw, data: bytes) -> bytes:
    """``data`` broken one way: cut short, invalid UTF-8 or random bytes put in at a random place, replaced by
    random bytes, or wrapped in deep nesting."""
    how = draw(st.sampled_from(["cut", "insert", "overwrite", "random", "nested"]))
    i = draw(st.integers(0, len(data)))
    junk = draw(st.sampled_from([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\x00", b"\r", b"\n"]) | st.binary(max_size=6))
    if how == "cut":
        return data[:i]
    if how == "insert":
        return data[:i] + junk + data[i:]
    if how == "overwrite":
        return data[:i] + junk + data[i + len(junk):]
    if how == "random":
        return draw(st.binary(max_size=200))
    depth = draw(st.sampled_from([50, 5_000, 200_000]))
    return b"[" * depth + data + b"]" * depth


@contextmanager
def folder():
    with tempfile.TemporaryDirectory() as d:
        yield Path(d)


def put(path: Path, data: bytes | str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data)
    return path


def outcome(source: DatasetSource) -> tuple[str | None, list[dict], list[dict]]:
    """(the DatasetError's message, [], []) or (None, items, rejects) of reading ``source`` as a sweep or
    `vlalign extract` does (the checks, then every batch). Any other exception fails the test. Checks what
    the lake needs: one-line errors, tables of the item schema, rejects that the rejects table can store, each
    with a reason that names no Python object."""
    forget_reads()
    try:
        check_dataset(source)
        batches = list(iter_batches(source))
    except DatasetError as e:
        message = str(e)
        assert message and "\n" not in message, message
        assert "object at 0x" not in message
        return message, [], []
    rejects = [r for b in batches for r in b.rejects]
    assert all(b.items.schema == ITEM_SCHEMA for b in batches)
    pa.Table.from_pylist(rejects, schema=REJECT_SCHEMA)  # storable: valid Unicode, the right types
    for r in rejects:
        assert isinstance(r["reason"], str) and r["reason"] and "object at 0x" not in r["reason"], r
        assert r["stage"] == "read" and r["dataset"] == source.name
    items = [row for b in batches for row in b.items.to_pylist()]
    for row in items:
        assert row["caption"] and row["caption"] == row["caption"].strip() and len(row["caption"]) <= MAX_TEXT
    return None, items, rejects


def reasons(rejects: list[dict]) -> list[str]:
    return [r["reason"] for r in rejects]


# ------------------------------------------------------------------------------------------------ COCO


def coco(root: Path, doc, raw: bytes | None = None) -> DatasetSource:
    put(root / "images" / "a.jpg", IMG)
    put(root / "images" / "b.jpg", IMG)
    ann = put(root / "captions.json", raw if raw is not None else json.dumps(doc))
    return DatasetSource("c", "coco", str(ann), str(root / "images"))


COCO_DOC = {"images": [{"id": 1, "file_name": "a.jpg"}, {"id": "b", "file_name": "b.jpg"}],
            "annotations": [{"id": 10, "image_id": 1, "caption": "a red square"},
                            {"id": 11, "image_id": "b", "caption": "a blue one"}]}

coco_images = st.lists(st.fixed_dictionaries({"id": st.sampled_from([1, "b", 3]) | json_values,
                                              "file_name": st.sampled_from(["a.jpg", "b.jpg", "c.jpg"]) | json_values}),
                       max_size=3)
coco_annotations = st.lists(
    st.fixed_dictionaries({"id": st.integers(0, 4) | json_values,
                           "image_id": st.sampled_from([1, "b", 3]) | json_values,
                           "caption": st.sampled_from(["a caption", "  ", ""]) | json_values}) | json_values,
    max_size=5)


@FAST
@given(doc=json_values | st.fixed_dictionaries({"images": coco_images | json_values,
                                                "annotations": coco_annotations | json_values}))
def test_coco_any_json_document(doc):
    with folder() as root:
        error, items, rejects = outcome(coco(root, doc))
    if error is None:
        assert len(items) + len(rejects) == len(doc["annotations"])  # every annotation an item or a reject


@FAST
@given(raw=mutated(json.dumps(COCO_DOC).encode()))
def test_coco_broken_bytes(raw):
    with folder() as root:
        error, items, rejects = outcome(coco(root, None, raw))
    assert error is None or "captions.json" in error


# ------------------------------------------------------------------------------------------------ Karpathy


def karpathy(root: Path, doc, raw: bytes | None = None, split: str | None = None) -> DatasetSource:
    put(root / "images" / "x" / "a.jpg", IMG)
    put(root / "images" / "b.jpg", IMG)
    ann = put(root / "dataset.json", raw if raw is not None else json.dumps(doc))
    return DatasetSource("k", "karpathy", str(ann), str(root / "images"), split=split)


KARPATHY_DOC = {"images": [
    {"filename": "a.jpg", "filepath": "x", "imgid": 0, "split": "test",
     "sentences": [{"raw": "a red square", "sentid": 0}, {"raw": "red", "sentid": 1}]},
    {"filename": "b.jpg", "imgid": 1, "split": "train", "sentences": [{"raw": "blue", "sentid": 2}]}]}

karpathy_images = st.lists(st.fixed_dictionaries(
    {"filename": st.sampled_from(["a.jpg", "b.jpg"]) | json_values,
     "sentences": st.lists(st.fixed_dictionaries({"raw": st.just("a caption") | json_values,
                                                  "sentid": st.integers(0, 3) | json_values}) | json_values,
                           max_size=3) | json_values},
    optional={"filepath": st.just("x") | json_values, "imgid": st.integers(0, 2) | json_values,
              "split": st.sampled_from(["test", "train"]) | json_values}), max_size=3)


@FAST
@given(doc=json_values | st.fixed_dictionaries({"images": karpathy_images}),
       split=st.none() | st.sampled_from(["test", "train,val"]))
def test_karpathy_any_json_document(doc, split):
    with folder() as root:
        outcome(karpathy(root, doc, split=split))


@FAST
@given(raw=mutated(json.dumps(KARPATHY_DOC).encode()))
def test_karpathy_broken_bytes(raw):
    with folder() as root:
        error, _, _ = outcome(karpathy(root, None, raw))
    assert error is None or "dataset.json" in error


# ------------------------------------------------------------------------------------------------ XTD


def xtd(root: Path, names: bytes, captions: bytes) -> DatasetSource:
    put(root / "images" / "a.jpg", IMG)
    put(root / "images" / "b.jpg", IMG)
    put(root / "ann" / "test_image_names.txt", names)
    put(root / "ann" / "test_1kcaptions_en.txt", captions)
    put(root / "ann" / "test_1kcaptions_de.txt", b"rot\nblau\n")
    return DatasetSource("x", "xtd", str(root / "ann"), str(root / "images"))


@FAST
@given(names=mutated(b"a.jpg\nb.jpg\n") | st.lists(st.sampled_from(["a.jpg", "/", ".", "a/", ""]) | texts,
                                                     min_size=2, max_size=2)
       .map(lambda ls: "\n".join(ls).encode("utf-8", "surrogatepass")), captions=mutated(b"red\nblue\n"))
def test_xtd_broken_lines(names, captions):
    with folder() as root:
        error, _, _ = outcome(xtd(root, names, captions))
    assert error is None or ".txt" in error


# ------------------------------------------------------------------------------------------------ imagefolder


def imagefolder(root: Path, names: bytes | None, suffix: str = ".txt", folders=(b"cat", b"dog_x")) -> DatasetSource:
    for f in folders:
        d = os.path.join(os.fsencode(root / "images"), f)
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, b"1.jpg"), "wb") as fh:
            fh.write(IMG)
    ann = None if names is None else str(put(root / f"classes{suffix}", names))
    return DatasetSource("f", "imagefolder", ann, str(root / "images"))


@FAST
@given(names=mutated(b"a cat\na dog\n") | st.binary(max_size=30),
       folders=st.lists(st.binary(min_size=1, max_size=6).filter(lambda b: b"/" not in b and b"\x00" not in b
                                                                  and b not in (b".", b"..")),
                        min_size=1, max_size=3, unique=True))
def test_imagefolder_class_list_and_folder_names(names, folders):
    with folder() as root:
        outcome(imagefolder(root, names, folders=folders))
    with folder() as root:
        outcome(imagefolder(root, None, folders=folders))


@FAST
@given(doc=json_values | st.dictionaries(st.sampled_from(["cat", "dog_x"]), json_values | texts))
def test_imagefolder_class_names_json(doc):
    with folder() as root:
        outcome(imagefolder(root, json.dumps(doc).encode(), ".json"))


# ------------------------------------------------------------------------------------------------ webdataset


def member(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def shard(members: list[tuple[str, bytes]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT, encoding="utf-8",
                      errors="surrogateescape") as tar:
        for name, data in members:
            member(tar, name, data)
    return buf.getvalue()


GOOD_SHARD = shard([("s0.jpg", IMG), ("s0.txt", b"a red square"), ("s1.png", IMG),
                    ("s1.json", b'{"caption": "blue"}')])
member_names = st.sampled_from(["s0", "s1", "dir/s2", "\udcff", "a.b"]).flatmap(
    lambda key: st.sampled_from(["jpg", "txt", "json", "png", "bin"]).map(lambda ext: f"{key}.{ext}"))
member_data = st.binary(max_size=20) | json_values.map(lambda v: json.dumps(v).encode())


@FAST
@given(raw=mutated(GOOD_SHARD) | st.lists(st.tuples(member_names, member_data), max_size=6).map(shard))
def test_webdataset_broken_tars(raw):
    with folder() as root:
        put(root / "data-000.tar", raw)
        put(root / "data-001.tar", GOOD_SHARD)
        error, items, rejects = outcome(DatasetSource("w", "webdataset", images=str(root / "data-{000..001}.tar")))
    assert error is None and {"s0", "s1"} <= {i["item_id"] for i in items} | {r["item_id"] for r in rejects}


@FAST
@given(pattern=st.text(st.sampled_from("ab{},.09*?[]-:"), max_size=14))
def test_webdataset_any_shard_pattern(pattern):
    with folder() as root:
        put(root / "a.tar", GOOD_SHARD)
        outcome(DatasetSource("w", "webdataset", images=str(root / pattern)))


# ------------------------------------------------------------------------------------------------ img2dataset


parquet_columns = st.sampled_from([
    pa.array(["k0", "k1"]), pa.array([0, 1]), pa.array([0.5, None]), pa.array([b"\xff", b"k1"]),
    pa.array([["k0"], []]), pa.array([None, None], pa.null()), pa.array([True, False]),
    pa.array([{"a": 1}, {"a": 2}]), pa.array(["x" * (MAX_TEXT + 1), "  "]), pa.array(["success", "failed"]),
])


@FAST
@given(key=parquet_columns, caption=parquet_columns, status=st.none() | parquet_columns,
       raw=st.none() | mutated(b"PAR1 not really a parquet file PAR1"))
def test_img2dataset_any_column_types(key, caption, status, raw):
    with folder() as root:
        cols = {"key": key, "caption": caption, **({"status": status} if status is not None else {})}
        pq.write_table(pa.table(cols), root / "00000.parquet")
        put(root / "00000.tar", shard([("k0.jpg", IMG), ("k1.jpg", IMG)]))
        if raw is not None:
            put(root / "00001.parquet", raw)
            (root / "00001").mkdir()
        outcome(DatasetSource("i", "img2dataset", images=str(root)))


# ------------------------------------------------------------------------------------------------ hf-imagefolder


def hf(root: Path, metadata: bytes, name: str = "metadata.jsonl") -> DatasetSource:
    put(root / "a.png", IMG)
    put(root / name, metadata)
    return DatasetSource("h", "hf-imagefolder", images=str(root))


HF_JSONL = b'{"file_name": "a.png", "text": "red", "label": 1}\n{"file_name": "b.png", "text": "blue"}\n'
HF_CSV = b"file_name,text,label\na.png,red,1\nb.png,\"blue, dark\",2\n"


@FAST
@given(raw=mutated(HF_JSONL) | st.lists(json_values.map(json.dumps), max_size=4).map(lambda ls: "\n".join(ls).encode())
       | st.lists(st.fixed_dictionaries({"file_name": st.just("a.png") | json_values, "text": json_values},
                                        optional={"label": json_values}).map(json.dumps),
                  min_size=1, max_size=3).map(lambda ls: "\n".join(ls).encode()))
def test_hf_imagefolder_any_jsonl(raw):
    with folder() as root:
        error, _, _ = outcome(hf(root, raw))
    assert error is None or "metadata.jsonl" in error


@FAST
@given(raw=mutated(HF_CSV) | st.binary(max_size=60))
def test_hf_imagefolder_any_csv(raw):
    with folder() as root:
        error, _, _ = outcome(hf(root, raw, "metadata.csv"))
    assert error is None or "metadata.csv" in error


# ------------------------------------------------------------------------------------------------ the findings


def test_coco_structure_of_the_wrong_type_is_named(tmp_path):
    """images or annotations not a list, an entry not an object, an id that is a list: the file and the key."""
    for doc, message in [
        ({"images": {"id": 1}, "annotations": []}, "captions.json': 'images' is an object, not a list"),
        ({"images": [], "annotations": "none"}, "captions.json': 'annotations' is a string, not a list"),
        ({"images": [7], "annotations": []},
         "captions.json': images[0] needs an 'id' and a 'file_name' (it is a number)"),
        ({"images": [{"id": [1], "file_name": "a.jpg"}], "annotations": []},
         "captions.json': images[0].id is a list, not an integer or a string"),
        ({"images": [{"id": 1, "file_name": 5}], "annotations": []},
         "captions.json': images[0].file_name is a number, not a string"),
        ([1, 2], "captions.json' is not COCO-captions format (needs top-level 'images' and 'annotations' lists; "
                 "it is a list)"),
    ]:
        with pytest.raises(DatasetError) as e:
            read_dataset(coco(tmp_path, doc))
        assert message in str(e.value) and "\n" not in str(e.value)
    doc = {"images": [{"id": 1, "file_name": "a.jpg"}],
           "annotations": [{"id": 10, "image_id": 1, "caption": "good"}, "not an object", [1],
                           {"id": [11], "image_id": 1, "caption": "id is a list"},
                           {"id": 12, "image_id": {"x": 1}, "caption": "image_id is an object"},
                           {"id": 13.5, "image_id": 1, "caption": "fractional id"}]}
    r = read_dataset(coco(tmp_path, doc))
    assert r.items["item_id"].to_pylist() == ["10"]
    assert reasons(r.rejects) == ["annotations[1] is a string, not an object",
                                  "annotations[2] is a list, not an object",
                                  "annotations[3].id is a list, not an integer or a string",
                                  "annotations[4].image_id is an object, not an integer or a string",
                                  "annotations[5].id is a number that is not an integer (13.5)"]


@pytest.mark.parametrize("fmt", ["coco", "karpathy", "imagefolder"])
def test_deeply_nested_json_names_the_file(tmp_path, fmt):
    deep = b"[" * 100_000 + b"]" * 100_000
    source = {"coco": lambda: coco(tmp_path, None, deep), "karpathy": lambda: karpathy(tmp_path, None, deep),
              "imagefolder": lambda: imagefolder(tmp_path, deep, ".json")}[fmt]()
    with pytest.raises(DatasetError, match=r"cannot parse .*\.json': nested too deeply") as e:
        read_dataset(source)
    assert "\n" not in str(e.value)


def test_deeply_nested_records_are_rejects(tmp_path):
    """A JSONL line or a tar's .json nested too deeply: that item's reject, naming the line or the member."""
    deep = "[" * 100_000 + "]" * 100_000
    r = read_dataset(hf(tmp_path / "h", f'{{"file_name": "a.png", "text": "red"}}\n{deep}\n'.encode()))
    assert r.items.num_rows == 1 and reasons(r.rejects) == [
        "line 2 of metadata.jsonl is not JSON: nested too deeply (more levels of lists or objects than the JSON "
        "parser allows)"]
    put(tmp_path / "w" / "a.tar", shard([("s0.jpg", IMG), ("s0.json", deep.encode())]))
    r = read_dataset(DatasetSource("w", "webdataset", images=str(tmp_path / "w" / "a.tar")))
    assert [(x["item_id"], x["reason"][:30]) for x in r.rejects] == [("s0", "unreadable .json: nested too d")]


def test_a_file_too_large_to_read_whole_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(base, "MAX_FILE_BYTES", 100)
    with pytest.raises(DatasetError, match=r"annotations '.*captions.json' is \d+ bytes: files read whole are "
                                           r"limited to 100 bytes"):
        read_dataset(coco(tmp_path, COCO_DOC))


def test_a_huge_number_names_the_file_or_the_key(tmp_path):
    huge = b'{"images": [{"id": ' + b"7" * 5000 + b', "file_name": "a.jpg"}], "annotations": []}'
    with pytest.raises(DatasetError, match=r"cannot parse annotations '.*captions.json': Exceeds the limit"):
        read_dataset(coco(tmp_path / "int", None, huge))
    inf = b'{"images": [{"id": 1e999, "file_name": "a.jpg"}], "annotations": []}'
    with pytest.raises(DatasetError, match=r"images\[0\].id is a number that is not an integer \(inf\)"):
        read_dataset(coco(tmp_path / "inf", None, inf))


def test_invalid_utf8_names_the_file_and_the_line(tmp_path):
    """Late in a metadata.jsonl: that line is a reject (the rest is read); in an XTD caption file or a class
    list: DatasetError naming the file and the line; in a JSON file: the file and the line."""
    good = [json.dumps({"file_name": "a.png", "text": f"caption {i}"}) for i in range(4)]
    raw = "\n".join(good).encode() + b'\n{"file_name": "a.png", "text": "caf\xe9"}\n'
    r = read_dataset(hf(tmp_path / "h", raw))
    assert r.items.num_rows == 1  # a.png once; the others are duplicates
    assert [x["reason"] for x in r.rejects][-1] == ("line 5 of metadata.jsonl is not UTF-8 (invalid continuation "
                                                    "byte, byte 35 of the line)")
    with pytest.raises(DatasetError, match=r"test_1kcaptions_en.txt': line 2 is not UTF-8"):
        read_dataset(xtd(tmp_path / "x", b"a.jpg\nb.jpg\n", b"red\nbl\xffue\n"))
    with pytest.raises(DatasetError, match=r"classes.txt': line 2 is not UTF-8"):
        read_dataset(imagefolder(tmp_path / "f", b"a cat\n\xff\n"))
    with pytest.raises(DatasetError, match=r"captions.json': not UTF-8 at line 3"):
        read_dataset(coco(tmp_path / "c", None, b'{"images": [],\n"annotations": [\n"\xff"]}'))


def test_a_caption_of_the_wrong_type_has_its_own_reason(tmp_path):
    doc = {"images": [{"id": 1, "file_name": "a.jpg"}],
           "annotations": [{"id": 1, "image_id": 1, "caption": 5}, {"id": 2, "image_id": 1, "caption": ["a"]},
                           {"id": 3, "image_id": 1, "caption": "  "}, {"id": 4, "image_id": 1},
                           {"id": 5, "image_id": 1, "caption": {"en": "x"}}, {"id": 6, "image_id": 1, "caption": True}]}
    assert reasons(read_dataset(coco(tmp_path / "c", doc)).rejects) == [
        "caption is a number, not a string", "caption is a list, not a string", "empty caption", "empty caption",
        "caption is an object, not a string", "caption is a boolean, not a string"]
    doc = {"images": [{"filename": "b.jpg", "imgid": 1, "sentences": [{"raw": 3, "sentid": 1}, 4]}]}
    assert reasons(read_dataset(karpathy(tmp_path / "k", doc)).rejects) == [
        "caption ('raw') is a number, not a string", "images[0].sentences[1] is a number, not an object"]
    r = read_dataset(hf(tmp_path / "h", b'{"file_name": "a.png", "text": 1.5}\n'))
    assert reasons(r.rejects) == ["caption ('text') is a number, not a string"]
    put(tmp_path / "w" / "a.tar", shard([("s0.jpg", IMG), ("s0.json", b'{"caption": [1]}')]))
    r = read_dataset(DatasetSource("w", "webdataset", images=str(tmp_path / "w" / "a.tar")))
    assert reasons(r.rejects) == ["'caption' in the .json is a list, not a string"]
    out = tmp_path / "i"
    pq.write_table(pa.table({"key": ["k0"], "caption": [7]}), put(out / "00000.parquet", b""))
    put(out / "00000.tar", shard([("k0.jpg", IMG)]))
    assert reasons(read_dataset(DatasetSource("i", "img2dataset", images=str(out))).rejects) == [
        "caption is a number, not a string"]


def test_a_huge_caption_is_a_reject(tmp_path):
    doc = {"images": [{"id": 1, "file_name": "a.jpg"}],
           "annotations": [{"id": 1, "image_id": 1, "caption": "x" * 10_000_000},
                           {"id": 2, "image_id": 1, "caption": "ok"}]}
    r = read_dataset(coco(tmp_path, doc))
    assert r.items["item_id"].to_pylist() == ["2"]
    assert reasons(r.rejects) == [f"caption is 10000000 characters long (more than {MAX_TEXT})"]
    long = "x" * 10_000_000
    r = read_dataset(hf(tmp_path / "csv", f"file_name,text\na.png,{long}\nb.png,ok\n".encode(), "metadata.csv"))
    assert reasons(r.rejects)[0] == "line 2 of metadata.csv: field larger than field limit (131072)"


def test_a_decode_reject_names_the_item_not_a_python_object(tmp_path):
    """The reason of an image that cannot be decoded names its path, its tar member or its item: never
    '<_io.BytesIO object at 0x...>'."""
    from vlalign.encoders import ImageDecodeError, decode_image

    tar = put(tmp_path / "a.tar", shard([("s0.jpg", b"not an image")]))
    refs = {"s0": image_ref(f"tarmember:512:12:s0.jpg:{tar}", None), "google/1f600": image_ref(None, b"garbage"),
            "p": image_ref(str(put(tmp_path / "p.jpg", b"not an image either")), None)}
    for uid, ref in refs.items():
        with pytest.raises(ImageDecodeError) as e:
            decode_image(load_image_input(ref), name=image_name(ref, uid))  # as embed_shard calls it
        assert "object at 0x" not in str(e.value)
        assert {"s0": f"s0.jpg in {tar}", "google/1f600": "image google/1f600", "p": "p.jpg"}[uid] in str(e.value)


def test_embed_shard_names_the_image_it_cannot_decode(tmp_path):
    """The extraction's reject reason for a tar member that is not an image names the member and its tar."""
    from types import SimpleNamespace

    import numpy as np
    from PIL import Image

    from vlalign.datalake.store import Lake
    from vlalign.engine.extract import embed_shard, plan_shards

    png = io.BytesIO()
    Image.new("RGB", (4, 4), (200, 10, 10)).save(png, format="PNG")
    tar = put(tmp_path / "a.tar", shard([("s0.png", png.getvalue()), ("s0.txt", b"red"), ("s1.jpg", b"garbage"),
                                         ("s1.txt", b"broken")]))
    lake = Lake.open(tmp_path / "lake")
    lake.write_table(lake.items_path("w"), read_dataset(DatasetSource("w", "webdataset", images=str(tar))).items)
    enc = SimpleNamespace(name="stub", lake_name="stub__avg", modality="vision", pooling="avg")
    [spec] = plan_shards(lake, "w", lake.read_table(lake.items_path("w")), enc, "stub", 8)
    stub = SimpleNamespace(spec=SimpleNamespace(dim=2), encode=lambda xs: np.ones((len(xs), 2), np.float32))
    assert embed_shard(lake, spec, stub)["rejects"] == 1
    [reject] = pq.read_table(spec.rejects_path).to_pylist()
    assert reject["image_id"] == "s1" and f"s1.jpg in {tar}" in reject["reason"], reject["reason"]
    assert "object at 0x" not in reject["reason"]


def test_extract_and_a_sweep_record_the_same_absolute_paths(tmp_path, monkeypatch):
    """`vlalign extract` and a sweep spec give the same source for the same relative paths: made absolute
    against the working folder (what the run record and the items' metadata hold); the items' images are
    absolute paths either way."""
    from vlalign.cli.data import dataset_source
    from vlalign.cli.parser import build_parser
    from vlalign.engine.spec import parse_spec

    monkeypatch.chdir(tmp_path)
    coco(tmp_path / "c", COCO_DOC)
    args = build_parser().parse_args(["extract", "--dataset", "c", "--format", "coco", "--annotations",
                                      "c/captions.json", "--images", "c/images", "--encoders", "wordllama"])
    cli = dataset_source(args)
    spec = parse_spec({"name": "s", "datasets": [{"name": "c", "format": "coco", "annotations": "c/captions.json",
                                                  "images": "c/images"}],
                       "vision_encoders": "mobilenetv2", "text_encoders": "wordllama"})
    assert spec.datasets[0].images == "c/images"  # the spec (and its run id) as written
    assert cli == spec.datasets[0].source()
    assert cli.to_dict()["images"] == str(tmp_path / "c" / "images")
    assert cli.to_dict()["annotations"] == str(tmp_path / "c" / "captions.json")
    images = read_dataset(cli).items["image"].to_pylist()
    assert images == [str((tmp_path / "c" / "images" / n).resolve()) for n in ("a.jpg", "b.jpg")]
    assert DatasetSource("w", "webdataset", images="s3://bucket/x-{0..9}.tar").images == "s3://bucket/x-{0..9}.tar"


@pytest.mark.parametrize("doc", [b"[" * 100_000, json.dumps({"images": 1, "annotations": []}).encode()])
def test_cli_extract_gives_one_line_and_code_2(tmp_path, capsys, doc):
    from vlalign.cli.main import main

    source = coco(tmp_path, None, doc)
    code = main(["extract", "--dataset", "c", "--format", "coco", "--annotations", source.annotations, "--images",
                 source.images, "--encoders", "wordllama", "--lake", str(tmp_path / "lake")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and err.startswith("vlalign extract: error: data set 'c'")
    assert "captions.json" in err and "Traceback" not in err
    assert not (tmp_path / "lake").exists()


@FAST
@given(fmt=st.sampled_from(["coco", "karpathy", "xtd", "imagefolder", "webdataset", "img2dataset", "hf-imagefolder"]),
       annotations=st.text(st.sampled_from("ab.*?[]{}:,\x00\n\udcff/é"), max_size=10).filter(lambda t: ".." not in t),
       images=st.text(st.sampled_from("ab.*?[]{}:,\x00\n\udcff/é"), max_size=10).filter(lambda t: ".." not in t),
       split=st.none() | texts)
def test_any_path_given(fmt, annotations, images, split):
    """Whatever the command line or a spec names as the files (a pattern, a NUL, a name that is not UTF-8)."""
    from vlalign.datasets.formats import FORMATS

    f = FORMATS[fmt]
    with folder() as root:
        put(root / "a" / "b.jpg", IMG)
        put(root / "a.json", json.dumps(COCO_DOC))
        source = DatasetSource("d", fmt, str(root / annotations) if "annotations" in f.needs + f.takes else None,
                               str(root / images), split=split if "split" in f.takes else None)
        outcome(source)
