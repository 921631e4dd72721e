"""Readers: every supported data set format becomes the same table of canonical items.

Canonical items (one row per caption; an image with several captions appears on several rows)::

    item_id      string   unique per row
    image_id     string   the image's key (shared by its captions)
    image        string   path or URL of the image file, or a tar member reference (``tarmember:...``,
                          see :func:`tar_member_ref`); null for images stored as bytes
    image_bytes  binary   the encoded image, for data sets that ship images inline (null otherwise)
    caption_id   string   the caption's key (the same caption text in two domains shares one id)
    caption      string
    lang         string   ISO 639-1 code of the caption
    label        string   class label, if any (emoji: CLDR category, e.g. "Animals & Nature")
    sublabel     string   a finer class label, if any (emoji: CLDR subcategory, e.g. "animal-mammal")
    domain       string   visual style or source set (emoji: google | twitter)

The formats (vlalign/formats.py lists them): emoji and coco here, the others in vlalign/format_readers.py.
A reader yields its items in batches (a tar shard, a parquet file, a chunk of lines), so a data set's image
bytes are never all in memory. Before work starts only cheap checks run (:meth:`DatasetSource.check`: the
files exist, the structure is sound; then the read: a stat per image, the schema, the ids). A bad single
item (a missing image file, an empty caption, a duplicate id) becomes a reject row with its reason (stage
``read``); image bytes are checked only where they are decoded, by the extraction shard (a corrupt image is
a reject at stage ``extract:<encoder>``).

One read per process: :func:`read_dataset` keeps what it read (keyed by the source and a fingerprint of its
files: size and mtime of the annotation files, the image folder's listing), so a sweep's validations and
its ingest read each data set's index once; :func:`ingest_batches` takes the kept read, or streams.
"""

from __future__ import annotations

import json
import os
import threading
from collections import OrderedDict
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Callable, Iterator
from urllib.parse import quote, unquote

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from vlalign.datasets.formats import FORMAT_NAMES, FORMATS, key_problems
from vlalign.lake.schemas import ITEM_SCHEMA

DATA_DIR = Path(str(resources.files("vlalign.data")))
EMOJI_DIR = DATA_DIR / "emoji"
EMOJI_DOMAINS = ("google", "twitter")
EMOJI_LANGS = ("en", "de", "es", "fr", "it", "ja", "ko", "pl", "ru", "zh")


class DatasetError(ValueError):
    """A data set that cannot be read at all (as opposed to single bad items, which become rejects)."""


@dataclass(frozen=True)
class DatasetSource:
    """Where a data set comes from: its ``format`` (vlalign/formats.py: emoji, coco, karpathy, xtd, imagefolder,
    webdataset, img2dataset, hf-imagefolder) and the same keys on the command line and in a sweep spec."""

    name: str
    format: str = "emoji"
    annotations: str | None = None
    images: str | None = None
    domain: str | None = None  # the domain value given to every item (default: the data set name; not emoji)
    lang: str = "en"  # the language of the captions (formats with captions in one language)
    split: str | None = None  # karpathy: train|val|test|restval (comma-separated for several); hf-imagefolder: a split folder

    def check(self) -> None:
        """The cheap checks, before any work: the keys suit the format, the files and folders exist, the
        structure is sound (XTD line counts, img2dataset columns, metadata headers, class lists). Raises
        DatasetError naming the input and what is wrong."""
        if self.format not in FORMATS:
            raise DatasetError(f"data set {self.name!r}: unknown format {self.format!r} "
                               f"(expected one of {', '.join(FORMAT_NAMES)})")
        problems = key_problems(self.format, self.annotations, self.images, self.split,
                                None if self.lang == "en" else self.lang)
        if problems:
            raise DatasetError(f"data set {self.name!r}: " + "; ".join(problems))
        if self.format == "emoji":
            missing = [f for f in ("images", "captions", "emoji") if not (EMOJI_DIR / f"{f}.parquet").exists()]
            if missing:
                raise DatasetError(f"data set {self.name!r}: embedded files missing in {EMOJI_DIR}: {missing}")
        elif self.format == "coco":
            if not Path(self.annotations).is_file():
                raise DatasetError(
                    f"data set {self.name!r}: annotations file {self.annotations!r} does not exist "
                    "(expected a COCO-captions JSON with 'images' and 'annotations')"
                )
            if not Path(self.images).is_dir():
                raise DatasetError(f"data set {self.name!r}: image folder {self.images!r} does not exist")
        else:
            from vlalign.datasets import format_readers

            format_readers.check(self)

    def to_dict(self) -> dict:
        """The source as a mapping (run settings, items metadata); ``split``, added later, only when set, so that
        the run ids of earlier sources stay as they were."""
        d = asdict(self)
        if d["split"] is None:
            d.pop("split")
        return d


@dataclass
class ReadResult:
    items: pa.Table
    rejects: list[dict] = field(default_factory=list)


Reader = Callable[["DatasetSource"], Iterator[ReadResult]]
READERS: dict[str, Reader] = {}  # format -> reader (a generator of batches); filled below and by format_readers


def reader_for(fmt: str) -> Reader:
    if fmt not in READERS:
        from vlalign.datasets import format_readers  # noqa: F401  (registers the other formats' readers)
    return READERS[fmt]


def iter_batches(source: DatasetSource) -> Iterator[ReadResult]:
    """The batches of ``source``, read now from its files (checked first), unfiltered, each reject naming it."""
    source.check()
    yield from _stream(source)


def _stream(source: DatasetSource) -> Iterator[ReadResult]:
    for batch in reader_for(source.format)(source):
        for r in batch.rejects:
            r.setdefault("dataset", source.name)
        yield batch


# -- one read per process: the read kept, keyed by the source and a fingerprint of its files ------------------

_KEPT: OrderedDict[tuple, list[ReadResult]] = OrderedDict()
_KEPT_MAX = 4  # data sets whose read is kept at a time (a sweep's data sets, until each is ingested)
_KEPT_LOCK = threading.Lock()


def _kept_key(source: DatasetSource) -> tuple:
    from vlalign.datasets import format_readers

    return (source, format_readers.fingerprint(source))


def _read_kept(source: DatasetSource) -> list[ReadResult]:
    """Every batch of ``source``: read once, then kept while its files are unchanged."""
    source.check()
    key = _kept_key(source)
    with _KEPT_LOCK:
        if key in _KEPT:
            _KEPT.move_to_end(key)
            return _KEPT[key]
    batches = list(_stream(source))
    with _KEPT_LOCK:
        _KEPT[key] = batches
        while len(_KEPT) > _KEPT_MAX:
            _KEPT.popitem(last=False)
    return batches


def forget_reads() -> None:
    """Drop every kept read (tests; a long-lived process that wants the memory back)."""
    with _KEPT_LOCK:
        _KEPT.clear()


def read_dataset(
    source: DatasetSource, domains: list[str] | None = None, langs: list[str] | None = None
) -> ReadResult:
    """Canonical items of ``source``, restricted to ``domains`` and ``langs`` when given (the rejects are the
    whole data set's). The read is kept for this process while the source's files are unchanged: a second
    call, or the ingest that follows, does not read the files again."""
    if source.format == "emoji":
        _check_emoji_parts(domains, langs)
    batches = _read_kept(source)
    items = pa.concat_tables([b.items for b in batches]) if batches else ITEM_SCHEMA.empty_table()
    rejects = [r for b in batches for r in b.rejects]
    if domains:
        items = items.filter(pc.is_in(items["domain"], pa.array(domains)))
    if langs:
        items = items.filter(pc.is_in(items["lang"], pa.array(langs)))
    return ReadResult(items, rejects)


def ingest_batches(source: DatasetSource) -> Iterator[ReadResult]:
    """The batches to ingest: the read kept by :func:`read_dataset` if its files are unchanged (then
    forgotten: the lake has it now), else read from the files as they stream."""
    source.check()
    key = _kept_key(source)
    with _KEPT_LOCK:
        kept = _KEPT.pop(key, None)
    yield from kept if kept is not None else _stream(source)


def check_dataset(source: DatasetSource) -> None:
    """Everything that can fail a data set before work starts: :meth:`DatasetSource.check`, and for formats
    read in one piece (emoji, coco, karpathy: one JSON) the read itself, kept for the ingest that follows."""
    source.check()
    if FORMATS[source.format].whole:
        read_dataset(source)


# -- the embedded emoji set and COCO captions ------------------------------------------------------------------

def _check_emoji_parts(domains: list[str] | None, langs: list[str] | None) -> None:
    bad = [d for d in (domains or ()) if d not in EMOJI_DOMAINS]
    if bad:
        raise DatasetError(f"emoji: unknown domain(s) {bad}; the embedded set has {list(EMOJI_DOMAINS)}")
    bad = [lang for lang in (langs or ()) if lang not in EMOJI_LANGS]
    if bad:
        raise DatasetError(f"emoji: unknown language(s) {bad}; the embedded set has {list(EMOJI_LANGS)}")


def read_emoji(domains: list[str] | None = None, langs: list[str] | None = None) -> ReadResult:
    """The embedded emoji set: 1906 emoji x 2 visual domains, CLDR names in 10 languages."""
    _check_emoji_parts(domains, langs)
    domains = list(domains or EMOJI_DOMAINS)
    langs = list(langs or EMOJI_LANGS)
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
    """COCO-captions format (COCO 2017, NoCaps): ``{"images": [{id, file_name}], "annotations": [{id, image_id, caption}]}``.

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


def missing_file(path: Path) -> str | None:
    """None if ``path`` is a file, else the reason (a stat: the bytes are checked where they are decoded)."""
    return None if path.is_file() else f"missing image file: {path}"


def _reject(stage: str, item_id: str | None, image_id: str | None, caption_id: str | None, reason: str) -> dict:
    return {"stage": stage, "item_id": item_id, "image_id": image_id, "caption_id": caption_id, "reason": reason}


READERS["emoji"] = lambda source: iter([read_emoji()])
READERS["coco"] = lambda source: iter([read_coco(source)])


# -- image sources: inline bytes, a path or URL, or a byte range of a tar member --------------------------------

TAR_REF = "tarmember:"


def tar_member_ref(url: str, offset: int, size: int, member: str) -> str:
    """The ``image`` value of a tar member: ``tarmember:<offset>:<size>:<member, %-quoted>:<tar path or URL>``.
    Reading it is one byte-range read of the tar (local or remote, through fsspec), never the whole tar."""
    return f"{TAR_REF}{offset}:{size}:{quote(member, safe='')}:{url}"


@dataclass(frozen=True)
class ByteRange:
    """``size`` bytes at ``offset`` of the file ``url`` (a tar member's data)."""

    url: str
    offset: int
    size: int
    member: str

    @classmethod
    def parse(cls, ref: str) -> "ByteRange":
        try:
            offset, size, member, url = ref[len(TAR_REF):].split(":", 3)
            return cls(url, int(offset), int(size), unquote(member))
        except ValueError:
            raise ValueError(f"not a tar member reference: {ref!r}") from None

    def read(self) -> bytes:
        import fsspec

        try:
            fs, path = fsspec.core.url_to_fs(self.url)
            data = fs.cat_file(path, start=self.offset, end=self.offset + self.size)
        except Exception as e:  # noqa: BLE001 - missing tar, permissions, network: this image's problem only
            raise OSError(f"cannot read {self.member} ({self.size} bytes at {self.offset}) of {self.url}: "
                          f"{type(e).__name__}: {e}") from e
        if len(data) != self.size:
            raise OSError(f"cannot read {self.member} of {self.url}: {len(data)} of {self.size} bytes (tar truncated?)")
        return data


def image_ref(row_image: str | None, row_bytes: bytes | None):
    """An item's image as the extraction reads it, without reading yet: the bytes if inline, a ByteRange for a
    tar member, else the path or URL."""
    if row_bytes is not None:
        return row_bytes
    if row_image is not None and row_image.startswith(TAR_REF):
        return ByteRange.parse(row_image)
    return os.fspath(row_image)


def load_image_input(x):
    """What an encoder's image decoder accepts, from :func:`image_ref`: a ByteRange is read (that range only)."""
    return x.read() if isinstance(x, ByteRange) else x


def image_source(row_image: str | None, row_bytes: bytes | None):
    """What an encoder's image decoder accepts: the bytes if inline or in a tar, else an open-able path."""
    return load_image_input(image_ref(row_image, row_bytes))
