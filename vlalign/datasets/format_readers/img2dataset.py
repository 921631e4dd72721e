"""img2dataset output (format ``img2dataset``): ``NNNNN.parquet`` (key, caption, status, error_message) beside
``NNNNN.tar`` (webdataset output; the images stay in the tars) or a folder ``NNNNN/`` (files output); a failed
download is a reject with its error message. Read parquet by parquet, local or on an object store (fsspec).
"""

from __future__ import annotations

from typing import Iterator

import pyarrow.parquet as pq

from vlalign.datasets.format_readers.base import (
    Batch,
    DatasetSource,
    ReadResult,
    fail,
    full_url,
    info_key,
    is_image_name,
    tar_member_ref,
    url_fs,
)
from vlalign.datasets.format_readers.fields import caption_value, key_value, kind, text_problem
from vlalign.datasets.format_readers.webdataset import sample_image, tar_samples


def _img2dataset_parts(source: DatasetSource) -> list[tuple[str, str, str]]:
    """[(parquet URL, 'tar' or 'dir', tar or folder URL)] of an img2dataset output folder, in order (one listing)."""
    fs, root = url_fs(source.images)
    try:
        entries = {full_url(fs, e["name"]): e.get("type") for e in fs.ls(root, detail=True)}
    except (FileNotFoundError, NotADirectoryError):
        raise fail(source, f"img2dataset output folder {source.images!r} does not exist") from None
    parquets = sorted(u for u, t in entries.items() if t == "file" and u.endswith(".parquet"))
    if not parquets:
        raise fail(source, f"no NNNNN.parquet in {source.images!r} (is it img2dataset output?)")
    out = []
    for p in parquets:
        stem = p[: -len(".parquet")]
        name = stem.rsplit("/", 1)[-1]
        if entries.get(stem + ".tar") == "file":
            out.append((p, "tar", stem + ".tar"))
        elif entries.get(stem) == "directory":
            out.append((p, "dir", stem))
        else:
            raise fail(source, f"{name}.parquet: neither {name}.tar nor {name}/ beside it (img2dataset's webdataset "
                               "or files output)")
    return out


def _img2dataset_columns(source: DatasetSource, parquet: str) -> list[str]:
    """The columns of an img2dataset parquet, checked: it has 'key' and 'caption'."""
    fs, path = url_fs(parquet)
    try:
        with fs.open(path, "rb") as f:
            names = pq.read_schema(f).names
    except Exception as e:  # noqa: BLE001 - not parquet, unreadable
        raise fail(source, f"cannot read {parquet!r}: {type(e).__name__}: {e}") from e
    missing = [c for c in ("key", "caption") if c not in names]
    if missing:
        raise fail(source, f"{parquet!r} has no column(s) {missing} (it has {names})")
    return names


def _img2dataset_table(source: DatasetSource, parquet: str):
    """The columns key, caption, status, error_message (those it has) of an img2dataset parquet."""
    names = _img2dataset_columns(source, parquet)
    fs, path = url_fs(parquet)
    try:
        with fs.open(path, "rb") as f:
            return pq.read_table(f, columns=[c for c in ("key", "caption", "status", "error_message") if c in names])
    except Exception as e:  # noqa: BLE001 - a corrupt or truncated parquet (pyarrow raises several types)
        raise fail(source, f"cannot read {parquet!r}: {type(e).__name__}: {e}") from e


def _text(value) -> str | None:
    """A status or error message as a reason shows it: a string as it is, another value by its kind."""
    return value if value is None or isinstance(value, str) else f"<{kind(value)}>"


def check(source: DatasetSource) -> None:
    """The layout (one listing) and the first parquet's columns; the others' are checked as they are read."""
    _img2dataset_columns(source, _img2dataset_parts(source)[0][0])


def read(source: DatasetSource) -> Iterator[ReadResult]:
    """img2dataset output, parquet by parquet: a row whose status is not 'success' is a reject with its
    error_message; a success row's image is ``key.<ext>`` in the tar (a byte-range reference) or the folder
    beside its parquet. image_id = item_id = caption_id = the key; the caption is the parquet's."""
    seen: dict[str, str] = {}
    for parquet, layout, where in _img2dataset_parts(source):
        table = _img2dataset_table(source, parquet)
        batch = Batch(source)
        cut: dict[str, str] = {}
        if layout == "tar":
            images = {}
            for key, files in tar_samples(where, read=()):
                if key is None:
                    batch.reject(None, None, None, files["error"])
                    continue
                ext = sample_image(files)
                name = key.rsplit("/", 1)[-1]
                if text_problem(key, "key"):  # a member name that is not UTF-8: its row says so
                    continue
                if ext is not None:
                    member, offset, size, _ = files[ext]
                    images.setdefault(name, tar_member_ref(where, offset, size, member))
                elif "!cut" in files:
                    cut[name] = f"member {files['!cut'][0]} is cut off: the tar ends before its data does"
        else:
            dfs, dpath = url_fs(where)
            images = {}
            for p in sorted(dfs.ls(dpath, detail=False)):
                base = p.rsplit("/", 1)[-1]
                if is_image_name(base):
                    images.setdefault(base.split(".", 1)[0], full_url(dfs, p))
        pname = parquet.rsplit("/", 1)[-1]
        container = where.rsplit("/", 1)[-1] + ("" if layout == "tar" else "/")
        cols = {c: table[c].to_pylist() for c in table.column_names}
        n = table.num_rows
        for key, caption, status, error in zip(cols["key"], cols["caption"], cols.get("status", ["success"] * n),
                                               cols.get("error_message", [None] * n)):
            key, bad_key = (None, None) if key is None else key_value(key, f"key of a row of {pname}")
            if status not in (None, "success"):
                batch.reject(key, key, key, f"download failed ({_text(status)}): {_text(error) or 'no error message'}")
                continue
            if key is None:
                batch.reject(None, None, None, bad_key or f"a row of {pname} without a key")
                continue
            if key in seen:
                batch.reject(key, key, key, f"duplicate key {key!r} (first in {seen[key]})")
                continue
            seen[key] = pname
            caption, why = caption_value(caption)
            if caption is None:
                batch.reject(key, key, key, why or "empty caption")
            elif key not in images:
                batch.reject(key, key, key, cut.get(key) or f"missing image: no {key}.<image ext> in {container}")
            else:
                batch.add(key, key, images[key], key, caption)
        yield batch.result()



def fingerprint(source: DatasetSource) -> tuple:
    """The listing entries of the output folder (its parquet files and tars or folders)."""
    fs, root = url_fs(source.images)
    try:
        entries = sorted(fs.ls(root, detail=True), key=lambda e: e["name"])
    except (FileNotFoundError, NotADirectoryError):
        entries = []
    return tuple(info_key(full_url(fs, e["name"]), e) for e in entries)
