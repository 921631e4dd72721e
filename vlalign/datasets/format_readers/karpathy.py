"""Karpathy-split JSON (format ``karpathy``: ``dataset_flickr30k.json``, ``dataset_coco.json``) + an image folder.
Read in one piece; ``split`` chooses train|val|test|restval (comma-separated for several; default all).
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

from vlalign.datasets.format_readers.base import (
    CHUNK,
    Batch,
    DatasetSource,
    ReadResult,
    caption_text,
    fail,
    load_json,
    missing_file,
    need_dir,
    need_file,
    stat_keys,
)


def _karpathy_doc(source: DatasetSource) -> list:
    doc = load_json(source, source.annotations, "the Karpathy-split JSON")
    if not isinstance(doc, dict) or not isinstance(doc.get("images"), list):
        raise fail(source, f"{source.annotations!r} is not a Karpathy-split JSON (needs a top-level 'images' list "
                           "of {filename, imgid, split, sentences: [{raw, sentid}]})")
    return doc["images"]


def read(source: DatasetSource) -> Iterator[ReadResult]:
    """Karpathy-split JSON (``dataset_flickr30k.json``, ``dataset_coco.json``): ``{"images": [{"filename",
    "filepath"?, "imgid", "split", "sentences": [{"raw", "sentid"}]}]}``. The image is
    ``images/<filepath>/<filename>`` (or ``images/<filename>``); image_id = imgid, item/caption id = sentid."""
    entries = _karpathy_doc(source)
    splits = {s.strip() for s in source.split.split(",")} if source.split else None
    root = Path(source.images).resolve()
    seen_images: dict[str, int] = {}
    seen_sentences: set[str] = set()
    found_splits: set[str] = set()
    selected = 0
    batch = Batch(source)
    for k, im in enumerate(entries):
        if (not isinstance(im, dict) or not isinstance(im.get("filename"), str)
                or not isinstance(im.get("sentences"), list)):
            raise fail(source, f"{source.annotations!r}: images[{k}] needs a 'filename' and a 'sentences' list; "
                               f"got {str(im)[:200]}")
        found_splits.add(str(im.get("split")))
        if splits is not None and im.get("split") not in splits:
            continue
        selected += 1
        image_id = str(im["imgid"]) if "imgid" in im else Path(im["filename"]).stem
        path = root / str(im.get("filepath") or "") / im["filename"]
        if not path.is_file() and (root / im["filename"]).is_file():  # --images is the filepath folder itself
            path = root / im["filename"]
        if image_id in seen_images:
            problem = f"duplicate image id {image_id} (images[{seen_images[image_id]}] has it too)"
        else:
            seen_images[image_id] = k
            problem = missing_file(path)
        for j, sent in enumerate(im["sentences"]):
            sent = sent if isinstance(sent, dict) else {}
            sid = str(sent["sentid"]) if "sentid" in sent else f"{image_id}/{j}"
            if sid in seen_sentences:
                batch.reject(sid, image_id, sid, f"duplicate sentid {sid}")
                continue
            seen_sentences.add(sid)
            caption = caption_text(sent.get("raw"))
            if problem or caption is None:
                batch.reject(sid, image_id, sid, problem or "empty caption")
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
