"""COCO-captions JSON (format ``coco``: COCO 2017, NoCaps) + an image folder. Read in one piece.

``{"images": [{id, file_name}], "annotations": [{id, image_id, caption}]}``: image_id = the image's id, item_id =
caption_id = the annotation's id; the image is ``<images>/<file_name>``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

from vlalign.datasets.format_readers.base import (
    Batch,
    DatasetError,
    DatasetSource,
    ReadResult,
    fail,
    load_json,
    missing_file,
    stat_keys,
)
from vlalign.datasets.format_readers.fields import caption_value, key_value, kind, name_value


def _coco_doc(source: DatasetSource) -> tuple[list, list]:
    """(images, annotations) of a COCO-captions JSON, the top level checked."""
    doc = load_json(source, source.annotations, "annotations")
    if not isinstance(doc, dict) or "images" not in doc or "annotations" not in doc:
        raise DatasetError(
            f"data set {source.name!r}: {source.annotations!r} is not COCO-captions format "
            f"(needs top-level 'images' and 'annotations' lists; it is {kind(doc)}"
            + (f" with keys {sorted(doc)[:10]})" if isinstance(doc, dict) else ")")
        )
    for key in ("images", "annotations"):
        if not isinstance(doc[key], list):
            raise fail(source, f"{source.annotations!r}: '{key}' is {kind(doc[key])}, not a list")
    return doc["images"], doc["annotations"]


def _image_files(source: DatasetSource, images: list) -> dict[str, str]:
    """{image id: file name} of the 'images' list; DatasetError naming the first entry that is not
    {id: integer or string, file_name: string}."""
    files: dict[str, str] = {}
    for k, im in enumerate(images):
        if not isinstance(im, dict) or "id" not in im or "file_name" not in im:
            what = f"an object with keys {sorted(im)[:10]}" if isinstance(im, dict) else kind(im)
            raise fail(source, f"{source.annotations!r}: images[{k}] needs an 'id' and a 'file_name' (it is {what})")
        image_id, why = key_value(im["id"], f"images[{k}].id")
        fname, bad = name_value(im["file_name"], f"images[{k}].file_name")
        if why or bad:
            raise fail(source, f"{source.annotations!r}: {why or bad}")
        files[image_id] = fname
    return files


def read_coco(source: DatasetSource) -> ReadResult:
    """COCO-captions format (COCO 2017, NoCaps):
    ``{"images": [{id, file_name}], "annotations": [{id, image_id, caption}]}``.

    The 'images' list is the index: an entry that is not {id, file_name} stops the read (DatasetError naming
    it). An annotation is an item: one that is not {id, image_id, caption} of the right types is a reject.
    A stat per image (a missing file is a reject); the image bytes are checked where they are decoded."""
    images, annotations = _coco_doc(source)
    root = Path(source.images)
    files = _image_files(source, images)
    problems: dict[str, str | None] = {}  # image_id -> None if its file exists, else the reason

    def image_problem(image_id: str) -> str | None:
        if image_id not in problems:
            fname = files.get(image_id)
            if fname is None:
                problems[image_id] = f"image_id {image_id} not listed in 'images'"
            else:
                problems[image_id] = missing_file(root / fname)
        return problems[image_id]

    batch = Batch(source)
    seen: set[str] = set()
    for k, ann in enumerate(annotations):
        if not isinstance(ann, dict):
            batch.reject(None, None, None, f"annotations[{k}] is {kind(ann)}, not an object")
            continue
        item_id, why = key_value(ann.get("id"), f"annotations[{k}].id")
        if why:
            batch.reject(None, None, None, why)
            continue
        image_id, why = key_value(ann.get("image_id"), f"annotations[{k}].image_id")
        if item_id in seen:
            batch.reject(item_id, image_id, item_id, "duplicate item_id")
            continue
        seen.add(item_id)
        caption, bad = caption_value(ann.get("caption"))
        why = why or bad or (None if caption else "empty caption") or image_problem(image_id)
        if why:
            batch.reject(item_id, image_id, item_id, why)
            continue
        batch.add(item_id, image_id, str((root / files[image_id]).resolve()), item_id, caption)
    return batch.result()


def read(source: DatasetSource) -> Iterator[ReadResult]:
    return iter([read_coco(source)])


def check(source: DatasetSource) -> None:
    if not os.path.isfile(source.annotations):
        raise DatasetError(
            f"data set {source.name!r}: annotations file {source.annotations!r} does not exist "
            "(expected a COCO-captions JSON with 'images' and 'annotations')"
        )
    if not os.path.isdir(source.images):
        raise DatasetError(f"data set {source.name!r}: image folder {source.images!r} does not exist")


def fingerprint(source: DatasetSource) -> tuple:
    return stat_keys([source.annotations, source.images])
