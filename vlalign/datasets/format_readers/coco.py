"""COCO-captions JSON (format ``coco``: COCO 2017, NoCaps) + an image folder. Read in one piece.

``{"images": [{id, file_name}], "annotations": [{id, image_id, caption}]}``: image_id = the image's id, item_id =
caption_id = the annotation's id; the image is ``<images>/<file_name>``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator

import pyarrow as pa

from vlalign.datasets.format_readers.base import (
    DatasetError,
    DatasetSource,
    ReadResult,
    missing_file,
    reject_row,
    stat_keys,
)
from vlalign.lake.schemas import ITEM_SCHEMA


def read_coco(source: DatasetSource) -> ReadResult:
    """COCO-captions format (COCO 2017, NoCaps):
    ``{"images": [{id, file_name}], "annotations": [{id, image_id, caption}]}``.

    A stat per image (a missing file is a reject); the image bytes are checked where they are decoded."""
    try:
        doc = json.loads(Path(source.annotations).read_text())
    except (OSError, ValueError) as e:
        raise DatasetError(f"data set {source.name!r}: cannot parse annotations {source.annotations!r}: {e}") from e
    if not isinstance(doc, dict) or "images" not in doc or "annotations" not in doc:
        raise DatasetError(
            f"data set {source.name!r}: {source.annotations!r} is not COCO-captions format "
            "(needs top-level 'images' and 'annotations' lists)"
        )
    domain = source.domain or source.name
    root = Path(source.images)
    files: dict[str, str] = {}
    for im in doc["images"]:
        if not isinstance(im, dict) or "id" not in im or "file_name" not in im:
            raise DatasetError(f"data set {source.name!r}: image entry without 'id'/'file_name': {im!r}")
        files[str(im["id"])] = im["file_name"]

    problems: dict[str, str | None] = {}  # image_id -> None if its file exists, else the reason

    def image_problem(image_id: str) -> str | None:
        if image_id not in problems:
            fname = files.get(image_id)
            if fname is None:
                problems[image_id] = f"image_id {image_id} not listed in 'images'"
            else:
                problems[image_id] = missing_file(root / fname)
        return problems[image_id]

    cols: dict[str, list] = {f.name: [] for f in ITEM_SCHEMA}
    rejects: list[dict] = []
    seen: set[str] = set()
    for ann in doc["annotations"]:
        item_id = str(ann.get("id"))
        image_id = str(ann.get("image_id"))
        caption = ann.get("caption")
        if item_id in seen:
            rejects.append(reject_row("read", item_id, image_id, item_id, "duplicate item_id"))
            continue
        seen.add(item_id)
        if not isinstance(caption, str) or not caption.strip():
            rejects.append(reject_row("read", item_id, image_id, item_id, "empty caption"))
            continue
        problem = image_problem(image_id)
        if problem:
            rejects.append(reject_row("read", item_id, image_id, item_id, problem))
            continue
        cols["item_id"].append(item_id)
        cols["image_id"].append(image_id)
        cols["image"].append(str((root / files[image_id]).resolve()))
        cols["image_bytes"].append(None)
        cols["caption_id"].append(item_id)
        cols["caption"].append(caption.strip())
        cols["lang"].append(source.lang)
        cols["label"].append(None)
        cols["sublabel"].append(None)
        cols["domain"].append(domain)
    return ReadResult(pa.table(cols, schema=ITEM_SCHEMA), rejects)


def read(source: DatasetSource) -> Iterator[ReadResult]:
    return iter([read_coco(source)])


def check(source: DatasetSource) -> None:
    if not Path(source.annotations).is_file():
        raise DatasetError(
            f"data set {source.name!r}: annotations file {source.annotations!r} does not exist "
            "(expected a COCO-captions JSON with 'images' and 'annotations')"
        )
    if not Path(source.images).is_dir():
        raise DatasetError(f"data set {source.name!r}: image folder {source.images!r} does not exist")


def fingerprint(source: DatasetSource) -> tuple:
    return stat_keys([source.annotations, source.images])
