"""Karpathy-split JSON (format ``karpathy``: ``dataset_flickr30k.json``, ``dataset_coco.json``) + an image folder.
Read in one piece; ``split`` chooses train|val|test|restval (comma-separated for several; default all).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

from vlalign.datasets.format_readers.base import (
    CHUNK,
    Batch,
    DatasetSource,
    ReadResult,
    fail,
    load_json,
    missing_file,
    need_dir,
    need_file,
    stat_keys,
)
from vlalign.datasets.format_readers.fields import caption_value, key_value, kind, name_value


def _karpathy_doc(source: DatasetSource) -> list:
    doc = load_json(source, source.annotations, "the Karpathy-split JSON")
    if not isinstance(doc, dict) or not isinstance(doc.get("images"), list):
        raise fail(source, f"{source.annotations!r} is not a Karpathy-split JSON (needs a top-level 'images' list "
                           "of {filename, imgid, split, sentences: [{raw, sentid}]})")
    return doc["images"]


def _image_entry(source: DatasetSource, k: int, im) -> tuple[str, str, str, str | None]:
    """(image id, filename, filepath, split) of ``images[k]``; DatasetError naming the key that is missing or of
    the wrong type (an image entry is the index of its captions)."""
    where = f"{source.annotations!r}: images[{k}]"
    if not isinstance(im, dict) or not isinstance(im.get("sentences"), list) or "filename" not in im:
        got = f"an object with keys {sorted(im)[:10]}" if isinstance(im, dict) else kind(im)
        raise fail(source, f"{where} needs a 'filename' and a 'sentences' list; got {got}")
    filename, why = name_value(im["filename"], "filename")
    filepath, bad = name_value(im["filepath"], "filepath") if im.get("filepath") else ("", None)
    image_id, bad_id = key_value(im["imgid"], "imgid") if "imgid" in im else (Path(filename or "").stem, None)
    split = im.get("split")
    if split is not None and not isinstance(split, str):
        why = why or f"split is {kind(split)}, not a string"
    if why or bad or bad_id:
        raise fail(source, f"{where}: {why or bad or bad_id}")
    return image_id, filename, filepath, split


def read(source: DatasetSource) -> Iterator[ReadResult]:
    """Karpathy-split JSON (``dataset_flickr30k.json``, ``dataset_coco.json``): ``{"images": [{"filename",
    "filepath"?, "imgid", "split", "sentences": [{"raw", "sentid"}]}]}``. The image is
    ``images/<filepath>/<filename>`` (or ``images/<filename>``); image_id = imgid, item/caption id = sentid.
    An image entry with a key missing or of the wrong type stops the read (DatasetError naming it); a sentence
    that is not {raw: string, sentid: integer or string} is a reject."""
    entries = _karpathy_doc(source)
    splits = {s.strip() for s in source.split.split(",")} if source.split else None
    root = Path(source.images).resolve()
    seen_images: dict[str, int] = {}
    seen_sentences: set[str] = set()
    found_splits: set[str] = set()
    selected = 0
    batch = Batch(source)
    for k, im in enumerate(entries):
        image_id, filename, filepath, split = _image_entry(source, k, im)
        found_splits.add(str(split))
        if splits is not None and split not in splits:
            continue
        selected += 1
        path = root / filepath / filename
        if not os.path.isfile(path) and os.path.isfile(root / filename):  # --images is the filepath folder itself
            path = root / filename
        if image_id in seen_images:
            problem = f"duplicate image id {image_id} (images[{seen_images[image_id]}] has it too)"
        else:
            seen_images[image_id] = k
            problem = missing_file(path)
        for j, sent in enumerate(im["sentences"]):
            sid, why = f"{image_id}/{j}", None
            if not isinstance(sent, dict):
                why = f"images[{k}].sentences[{j}] is {kind(sent)}, not an object"
                sent = {}
            elif "sentid" in sent:
                sid, why = key_value(sent["sentid"], f"images[{k}].sentences[{j}].sentid")
                if why:
                    batch.reject(None, image_id, None, why)
                    continue
            if sid in seen_sentences:
                batch.reject(sid, image_id, sid, f"duplicate sentid {sid}")
                continue
            seen_sentences.add(sid)
            caption, bad = caption_value(sent.get("raw"), "caption ('raw')")
            why = problem or why or bad or (None if caption else "empty caption")
            if why:
                batch.reject(sid, image_id, sid, why)
                continue
            batch.add(sid, image_id, str(path), sid, caption)
        if len(batch) >= CHUNK:
            yield batch.result()
            batch = Batch(source)
    if splits is not None and not selected:
        raise fail(source, f"no image of split {source.split!r} in {source.annotations!r}; "
                           f"it has {sorted(found_splits)}")
    yield batch.result()


def check(source: DatasetSource) -> None:
    need_file(source, source.annotations, "annotations file")
    need_dir(source, source.images, "image folder")


def fingerprint(source: DatasetSource) -> tuple:
    return stat_keys([source.annotations, source.images])
