"""Readers: every supported data set format becomes the same table of canonical items.

Canonical items (one row per caption; an image with several captions appears on several rows)::

    item_id      string   unique per row
    image_id     string   the image's key (shared by its captions)
    image        string   path or URL of the image file (null for images stored as bytes)
    image_bytes  binary   the encoded image, for data sets that ship images inline (null otherwise)
    caption_id   string   the caption's key (the same caption text in two domains shares one id)
    caption      string
    lang         string   ISO 639-1 code of the caption
    label        string   class label, if any (emoji: CLDR category, e.g. "Animals & Nature")
    sublabel     string   a finer class label, if any (emoji: CLDR subcategory, e.g. "animal-mammal")
    domain       string   visual style or source set (emoji: google | twitter)

A reader checks what it can check cheaply (missing files, unreadable image headers, empty captions,
duplicate item ids) and returns those rows as rejects with a reason instead of failing the data set.
Images that pass the header check but fail to decode are caught later, by the extraction shard.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

ITEM_SCHEMA = pa.schema(
    [
        ("item_id", pa.string()),
        ("image_id", pa.string()),
        ("image", pa.string()),
        ("image_bytes", pa.binary()),
        ("caption_id", pa.string()),
        ("caption", pa.string()),
        ("lang", pa.string()),
        ("label", pa.string()),
        ("sublabel", pa.string()),
        ("domain", pa.string()),
    ]
)

REJECT_SCHEMA = pa.schema(
    [
        ("dataset", pa.string()),
        ("stage", pa.string()),
        ("item_id", pa.string()),
        ("image_id", pa.string()),
        ("caption_id", pa.string()),
        ("reason", pa.string()),
    ]
)

DATA_DIR = Path(str(resources.files("vlalign.data")))
EMOJI_DIR = DATA_DIR / "emoji"
EMOJI_DOMAINS = ("google", "twitter")
EMOJI_LANGS = ("en", "de", "es", "fr", "it", "ja", "ko", "pl", "ru", "zh")


class DatasetError(ValueError):
    """A data set that cannot be read at all (as opposed to single bad items, which become rejects)."""


@dataclass(frozen=True)
class DatasetSource:
    """Where a data set comes from. ``format`` is 'emoji' (embedded) or 'coco' (annotations JSON + image folder)."""

    name: str
    format: str = "emoji"
    annotations: str | None = None
    images: str | None = None
    domain: str | None = None  # coco: the domain value given to every item (default: the data set name)
    lang: str = "en"  # coco: the language of the captions

    def check(self) -> None:
        if self.format == "emoji":
            missing = [f for f in ("images", "captions", "emoji") if not (EMOJI_DIR / f"{f}.parquet").exists()]
            if missing:
                raise DatasetError(f"data set {self.name!r}: embedded files missing in {EMOJI_DIR}: {missing}")
        elif self.format == "coco":
            if not self.annotations or not Path(self.annotations).is_file():
                raise DatasetError(
                    f"data set {self.name!r}: annotations file {self.annotations!r} does not exist "
                    "(expected a COCO-captions JSON with 'images' and 'annotations')"
                )
            if not self.images or not Path(self.images).is_dir():
                raise DatasetError(f"data set {self.name!r}: image folder {self.images!r} does not exist")
        else:
            raise DatasetError(f"data set {self.name!r}: unknown format {self.format!r} (expected 'emoji' or 'coco')")


@dataclass
class ReadResult:
    items: pa.Table
    rejects: list[dict] = field(default_factory=list)


def read_dataset(
    source: DatasetSource, domains: list[str] | None = None, langs: list[str] | None = None
) -> ReadResult:
    """Canonical items of ``source``, restricted to ``domains`` and ``langs`` when given."""
    source.check()
    if source.format == "emoji":
        result = read_emoji(domains=domains, langs=langs)
    else:
        result = read_coco(source)
        if domains:
            result.items = result.items.filter(pc.is_in(result.items["domain"], pa.array(domains)))
        if langs:
            result.items = result.items.filter(pc.is_in(result.items["lang"], pa.array(langs)))
    for r in result.rejects:
        r.setdefault("dataset", source.name)
    return result


def read_emoji(domains: list[str] | None = None, langs: list[str] | None = None) -> ReadResult:
    """The embedded emoji set: 1906 emoji x 2 visual domains, CLDR names in 10 languages."""
    domains = list(domains or EMOJI_DOMAINS)
    langs = list(langs or EMOJI_LANGS)
    bad = [d for d in domains if d not in EMOJI_DOMAINS]
    if bad:
        raise DatasetError(f"emoji: unknown domain(s) {bad}; the embedded set has {list(EMOJI_DOMAINS)}")
    bad = [lang for lang in langs if lang not in EMOJI_LANGS]
    if bad:
        raise DatasetError(f"emoji: unknown language(s) {bad}; the embedded set has {list(EMOJI_LANGS)}")
    images = pq.read_table(EMOJI_DIR / "images.parquet")
    captions = pq.read_table(EMOJI_DIR / "captions.parquet")
    meta = pq.read_table(EMOJI_DIR / "emoji.parquet", columns=["emoji_id", "category", "subcategory"])
    category = dict(zip(meta["emoji_id"].to_pylist(), meta["category"].to_pylist()))
    subcategory = dict(zip(meta["emoji_id"].to_pylist(), meta["subcategory"].to_pylist()))

    by_lang: dict[str, list[tuple[str, str]]] = {}
    for eid, lang, cap in zip(*(captions[c].to_pylist() for c in ("emoji_id", "lang", "caption"))):
        if lang in langs:
            by_lang.setdefault(lang, []).append((eid, cap))

    cols: dict[str, list] = {f.name: [] for f in ITEM_SCHEMA}
    rejects = []
    img_by_key = {
        (d, e): png
        for e, d, png in zip(*(images[c].to_pylist() for c in ("emoji_id", "domain", "png")))
        if d in domains
    }
    for domain in domains:
        for lang in langs:
            for eid, cap in by_lang.get(lang, []):
                png = img_by_key.get((domain, eid))
                item_id = f"{domain}/{lang}/{eid}"
                if png is None:
                    rejects.append(_reject("read", item_id, f"{domain}/{eid}", f"{lang}/{eid}", "no image"))
                    continue
                if not cap or not cap.strip():
                    rejects.append(_reject("read", item_id, f"{domain}/{eid}", f"{lang}/{eid}", "empty caption"))
                    continue
                cols["item_id"].append(item_id)
                cols["image_id"].append(f"{domain}/{eid}")
                cols["image"].append(None)
                cols["image_bytes"].append(png)
                cols["caption_id"].append(f"{lang}/{eid}")
                cols["caption"].append(cap)
                cols["lang"].append(lang)
                cols["label"].append(category.get(eid))
                cols["sublabel"].append(subcategory.get(eid))
                cols["domain"].append(domain)
    return ReadResult(pa.table(cols, schema=ITEM_SCHEMA), rejects)


def read_coco(source: DatasetSource) -> ReadResult:
    """COCO-captions format (COCO 2017, NoCaps): ``{"images": [{id, file_name}], "annotations": [{id, image_id, caption}]}``."""
    try:
        doc = json.loads(Path(source.annotations).read_text())
    except (OSError, json.JSONDecodeError) as e:
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
        if "id" not in im or "file_name" not in im:
            raise DatasetError(f"data set {source.name!r}: image entry without 'id'/'file_name': {im!r}")
        files[str(im["id"])] = im["file_name"]

    header_ok: dict[str, str | None] = {}  # image_id -> None if fine, else the reason

    def image_problem(image_id: str) -> str | None:
        if image_id not in header_ok:
            fname = files.get(image_id)
            if fname is None:
                header_ok[image_id] = f"image_id {image_id} not listed in 'images'"
            else:
                header_ok[image_id] = _check_image_file(root / fname)
        return header_ok[image_id]

    cols: dict[str, list] = {f.name: [] for f in ITEM_SCHEMA}
    rejects: list[dict] = []
    seen: set[str] = set()
    for ann in doc["annotations"]:
        item_id = str(ann.get("id"))
        image_id = str(ann.get("image_id"))
        caption = ann.get("caption")
        if item_id in seen:
            rejects.append(_reject("read", item_id, image_id, item_id, "duplicate item_id"))
            continue
        seen.add(item_id)
        if not isinstance(caption, str) or not caption.strip():
            rejects.append(_reject("read", item_id, image_id, item_id, "empty caption"))
            continue
        problem = image_problem(image_id)
        if problem:
            rejects.append(_reject("read", item_id, image_id, item_id, problem))
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


def _check_image_file(path: Path) -> str | None:
    """None if ``path`` exists and its header is a readable image, else the reason."""
    from PIL import Image

    if not path.is_file():
        return f"missing image file: {path}"
    try:
        with Image.open(path) as im:
            im.verify()
    except Exception as e:  # any header PIL refuses, a decompression bomb included, is this item's problem only
        return f"unreadable image {path.name}: {type(e).__name__}: {e}"
    return None


def _reject(stage: str, item_id: str, image_id: str | None, caption_id: str | None, reason: str) -> dict:
    return {"stage": stage, "item_id": item_id, "image_id": image_id, "caption_id": caption_id, "reason": reason}


def image_source(row_image: str | None, row_bytes: bytes | None):
    """What an encoder's image decoder accepts: the bytes if inline, else an open-able path."""
    if row_bytes is not None:
        return row_bytes
    return os.fspath(row_image)
