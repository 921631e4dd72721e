"""Hugging Face imagefolder (format ``hf-imagefolder``): ``metadata.jsonl`` or ``metadata.csv`` (``file_name`` +
a caption column) at the top of the image folder and/or in split folders; ``split`` chooses split folders.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Iterator

from vlalign.datasets.format_readers.base import (
    CHUNK,
    Batch,
    DatasetSource,
    ReadResult,
    fail,
    file_lines,
    json_value,
    missing_file,
    need_dir,
    stat_keys,
)
from vlalign.datasets.format_readers.fields import MAX_LINE_BYTES, caption_value, label_value, name_value


def _hf_metadata(source: DatasetSource) -> list[tuple[str, Path]]:
    """[(split, metadata file)]: the top folder's (split '') and each split folder's, or the chosen splits'."""
    root = need_dir(source, source.images, "image folder")

    def meta(folder: Path) -> Path | None:
        found = [folder / n for n in ("metadata.jsonl", "metadata.csv") if os.path.isfile(folder / n)]
        if len(found) > 1:
            raise fail(source, f"both metadata.jsonl and metadata.csv in {str(folder)!r}; keep one")
        return found[0] if found else None

    splits = {p.name: m for p in sorted(root.iterdir()) if p.is_dir() and (m := meta(p)) is not None}
    if source.split:
        wanted = [s.strip() for s in source.split.split(",")]
        missing = [s for s in wanted if s not in splits]
        if missing:
            raise fail(source, f"split(s) {missing} not found: no {source.images}/<split>/metadata.jsonl|csv "
                               f"(splits found: {sorted(splits)})")
        return [(s, splits[s]) for s in wanted]
    top = meta(root)
    out = ([("", top)] if top else []) + sorted(splits.items())
    if not out:
        raise fail(source, f"no metadata.jsonl or metadata.csv in {source.images!r} or its split folders")
    return out


def _hf_caption_column(source: DatasetSource, path: Path, first: dict) -> str:
    if "file_name" not in first:
        raise fail(source, f"{str(path)!r}: no 'file_name' column (it has {list(first)})")
    for c in ("text", "caption"):
        if c in first:
            return c
    for c, v in first.items():
        if c not in ("file_name", "label") and isinstance(v, str):
            return c
    raise fail(source, f"{str(path)!r}: no caption column ('text', 'caption' or another string column; "
                       f"it has {list(first)})")


def _hf_rows(path: Path, where: str = "") -> Iterator[tuple[int, dict | str]]:
    """(line number, row) of a metadata file, read line by line; a line that cannot be read (not UTF-8, not
    JSON, nested too deeply, longer than MAX_LINE_BYTES, a CSV field over the csv module's limit) is its
    reason instead, naming the file and the line."""
    where = where or path.name
    if path.suffix == ".csv":
        yield from _csv_rows(path, where)
        return
    for i, line in file_lines(path):
        if line is None:
            yield i, f"line {i} of {where} is longer than {MAX_LINE_BYTES} bytes"
            continue
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError as e:
            yield i, f"line {i} of {where} is not UTF-8 ({e.reason}, byte {e.start} of the line)"
            continue
        if not text.strip():
            continue
        row, why = json_value(text)
        if why:
            yield i, f"line {i} of {where} is not JSON: {why}"
            continue
        yield i, row if isinstance(row, dict) else f"line {i} of {where} is not a JSON object"


def _csv_rows(path: Path, where: str) -> Iterator[tuple[int, dict | str]]:
    """The rows of a metadata.csv as csv.DictReader gives them (line 1 is the header; a short row padded with
    None, a long one's extra fields under None). Bytes that are not UTF-8 are kept as escapes (that field's
    problem, not the file's); a line longer than MAX_LINE_BYTES is read as empty and reported."""
    long_lines: list[int] = []

    def lines() -> Iterator[str]:
        for i, line in file_lines(path):
            if line is None:
                long_lines.append(i)
                yield "\n"
            else:
                yield line.decode("utf-8", "surrogateescape")

    reader = csv.reader(lines())
    header: list[str] | None = None
    number = 1  # the row's number as DictReader counts them: the header 1, then each non-empty row
    while True:
        try:
            row = next(reader, None)
        except csv.Error as e:  # a field over csv.field_size_limit(); the reader goes on with the next line
            row = f"line {reader.line_num} of {where}: {e}"
        while long_lines:
            n = long_lines.pop(0)
            yield n, f"line {n} of {where} is longer than {MAX_LINE_BYTES} bytes"
        if row is None:
            return
        if isinstance(row, str):
            yield reader.line_num, row
        elif row and header is None:
            header = row
        elif row:
            number += 1
            d: dict = dict(zip(header, row))
            if len(row) > len(header):
                d[None] = row[len(header):]
            for k in header[len(row):]:
                d[k] = None
            yield number, d


def _hf_first_row(source: DatasetSource, path: Path) -> dict:
    try:
        for _, row in _hf_rows(path):
            if isinstance(row, dict):
                return row
    except OSError as e:
        raise fail(source, f"cannot read {str(path)!r}: {type(e).__name__}: {e}") from e
    raise fail(source, f"{str(path)!r} has no rows")


def read(source: DatasetSource) -> Iterator[ReadResult]:
    """Hugging Face imagefolder: ``metadata.jsonl`` or ``metadata.csv`` with ``file_name`` (relative to the
    metadata's folder) and a caption column (``text``, ``caption``, or the first other string column), at
    the top and/or in split folders. image_id = item_id = caption_id = the image's path under the root;
    a ``label`` column becomes the label."""
    root = Path(source.images).resolve()
    seen: set[str] = set()
    for split, path in _hf_metadata(source):
        column = _hf_caption_column(source, path, _hf_first_row(source, path))
        where = f"{split}/{path.name}" if split else path.name
        batch = Batch(source)
        for line, row in _hf_rows(path, where):
            if isinstance(row, str):
                batch.reject(f"{where}:{line}", None, None, row)
                continue
            fname = row.get("file_name")
            if fname is None or isinstance(fname, str) and not fname.strip():
                batch.reject(f"{where}:{line}", None, None, f"line {line} of {where}: no file_name")
                continue
            fname, why = name_value(fname, f"line {line} of {where}: file_name")
            if why:
                batch.reject(f"{where}:{line}", None, None, why)
                continue
            image_id = (Path(split) / fname).as_posix() if split else Path(fname).as_posix()
            if image_id in seen:
                batch.reject(image_id, image_id, image_id, f"duplicate file_name {fname!r} (line {line} of {where})")
                continue
            seen.add(image_id)
            image = root / image_id
            caption, bad = caption_value(row.get(column), f"caption ({column!r})")
            label, bad_label = label_value(row.get("label"))
            problem = missing_file(image) or bad or (None if caption else f"empty caption ({column!r})") or bad_label
            if problem:
                batch.reject(image_id, image_id, image_id, problem)
                continue
            batch.add(image_id, image_id, str(image), image_id, caption, label=label)
            if len(batch) >= CHUNK:
                yield batch.result()
                batch = Batch(source)
        yield batch.result()



def check(source: DatasetSource) -> None:
    for _, path in _hf_metadata(source):
        _hf_caption_column(source, path, _hf_first_row(source, path))


def fingerprint(source: DatasetSource) -> tuple:
    root = Path(source.images or "")
    paths = [str(root)] + sorted(str(p) for p in root.glob("*") if p.is_dir())
    paths += sorted(str(p) for p in [*root.glob("metadata.*"), *root.glob("*/metadata.*")])
    return stat_keys(paths)
