"""Hugging Face imagefolder (format ``hf-imagefolder``): ``metadata.jsonl`` or ``metadata.csv`` (``file_name`` +
a caption column) at the top of the image folder and/or in split folders; ``split`` chooses split folders.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Iterator

from vlalign.datasets.format_readers.base import (
    CHUNK,
    Batch,
    DatasetSource,
    ReadResult,
    caption_text,
    fail,
    missing_file,
    need_dir,
    stat_keys,
)


def _hf_metadata(source: DatasetSource) -> list[tuple[str, Path]]:
    """[(split, metadata file)]: the top folder's (split '') and each split folder's, or the chosen splits'."""
    root = need_dir(source, source.images, "image folder")

    def meta(folder: Path) -> Path | None:
        found = [folder / n for n in ("metadata.jsonl", "metadata.csv") if (folder / n).is_file()]
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
    """(line number, row) of a metadata file; a row that cannot be parsed is its error message instead."""
    if path.suffix == ".csv":
        with open(path, newline="", encoding="utf-8-sig") as f:
            for i, row in enumerate(csv.DictReader(f), 2):  # line 1 is the header
                yield i, row
        return
    with open(path, encoding="utf-8-sig") as f:
        for i, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError as e:
                yield i, f"line {i} of {where or path.name} is not JSON: {e}"
                continue
            yield i, row if isinstance(row, dict) else f"line {i} of {where or path.name} is not a JSON object"


def _hf_first_row(source: DatasetSource, path: Path) -> dict:
    try:
        for _, row in _hf_rows(path):
            if isinstance(row, dict):
                return row
    except (OSError, UnicodeDecodeError, csv.Error) as e:
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
            if not isinstance(fname, str) or not fname.strip():
                batch.reject(f"{where}:{line}", None, None, f"line {line} of {where}: no file_name")
                continue
            image_id = (Path(split) / fname).as_posix() if split else Path(fname).as_posix()
            if image_id in seen:
                batch.reject(image_id, image_id, image_id, f"duplicate file_name {fname!r} (line {line} of {where})")
                continue
            seen.add(image_id)
            image = root / image_id
            caption = caption_text(row.get(column))
            problem = missing_file(image) or (None if caption else f"empty caption ({column!r})")
            if problem:
                batch.reject(image_id, image_id, image_id, problem)
                continue
            label = row.get("label")
            batch.add(image_id, image_id, str(image), image_id, caption, label=None if label is None else str(label))
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
