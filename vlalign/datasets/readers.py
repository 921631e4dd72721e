"""Reading data sets: every supported format becomes the same table of canonical items (the columns:
:mod:`vlalign.datasets.format_readers.base`; the schema: ``vlalign.datalake.schemas.ITEM_SCHEMA``).

The registry :data:`READERS` maps each format name of :mod:`vlalign.datasets.formats` to the module that reads
it, ``vlalign/datasets/format_readers/<format>.py``, which defines::

    read(source)         the batches (ReadResult: items and rejects) of the source, read from its files
    check(source)        the cheap checks before any work (the files exist, the structure is sound)
    fingerprint(source)  what changes when the source's files change (stats or listing entries)

Adding a format: its description in formats.py, its module in format_readers/, and one line in READERS.
Importing this module checks that every format named in formats.py has a reader, and no reader lacks a name.

A reader yields its items in batches (a tar shard, a parquet file, a chunk of lines), so a data set's image
bytes are never all in memory. Before work starts only cheap checks run (:func:`check_source`: the keys suit
the format, the files exist, the structure is sound; then the read: a stat per image, the schema, the ids). A
bad single item (a missing image file, an empty caption, a field of the wrong type, a duplicate id) becomes a
reject row with its reason (stage ``read``); image bytes are checked only where they are decoded, by the
extraction shard (a corrupt image is a reject at stage ``extract:<encoder>``). Whatever the files hold, a read
ends in bounded time and memory with items and rejects, or with one DatasetError (a line naming the file and
the key or line): the checks of each field are :mod:`vlalign.datasets.format_readers.fields`.

One read per process: :func:`read_dataset` keeps what it read (keyed by the source and a fingerprint of its
files: size and mtime of the annotation files, the image folder's listing), so a sweep's validations and
its ingest read each data set's index once; :func:`ingest_batches` takes the kept read, or streams.
"""

from __future__ import annotations

import functools
import threading
from collections import OrderedDict
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator, Protocol

import pyarrow as pa
import pyarrow.compute as pc

from vlalign.datalake.digest import digest_json, digest_values
from vlalign.datalake.schemas import ITEM_SCHEMA
from vlalign.datasets.format_readers import (
    coco,
    emoji,
    hf_imagefolder,
    imagefolder,
    img2dataset,
    karpathy,
    webdataset,
    xtd,
)
from vlalign.datasets.format_readers.base import (
    DatasetError,
    DatasetSource,
    ReadResult,
    image_name,
    image_ref,
    image_source,
    load_image_input,
)
from vlalign.datasets.format_readers.emoji import DATA_DIR, EMOJI_DIR, EMOJI_DOMAINS, EMOJI_LANGS, read_emoji
from vlalign.datasets.formats import FORMAT_NAMES, FORMATS, key_problems

__all__ = [  # the entry points; DatasetSource, the image references and the emoji set's names re-exported
    "DATA_DIR", "EMOJI_DIR", "EMOJI_DOMAINS", "EMOJI_LANGS", "READERS", "DatasetError", "DatasetSource",
    "FormatReader", "ReadResult", "check_dataset", "check_source", "forget_reads", "image_name", "image_ref",
    "image_source",
    "ingest_batches", "iter_batches", "load_image_input", "read_dataset", "read_emoji", "reader_for",
]


class FormatReader(Protocol):
    """What a format module defines (vlalign/datasets/format_readers/<format>.py)."""

    def read(self, source: DatasetSource) -> Iterator[ReadResult]: ...

    def check(self, source: DatasetSource) -> None: ...

    def fingerprint(self, source: DatasetSource) -> tuple: ...


READERS: dict[str, FormatReader] = {  # format name (formats.py) -> its module; one line a format
    "emoji": emoji,
    "coco": coco,
    "karpathy": karpathy,
    "xtd": xtd,
    "imagefolder": imagefolder,
    "webdataset": webdataset,
    "img2dataset": img2dataset,
    "hf-imagefolder": hf_imagefolder,
}


def _check_registry() -> None:
    """formats.py is the one list of format names: each has a reader here, and every reader has a name there."""
    unread = [f for f in FORMAT_NAMES if f not in READERS]
    unnamed = [f for f in READERS if f not in FORMATS]
    if unread or unnamed:
        raise ImportError(f"vlalign.datasets.readers: format(s) without a reader {unread}, "
                          f"reader(s) of format(s) not in formats.py {unnamed}")


_check_registry()


def reader_for(fmt: str) -> Callable[[DatasetSource], Iterator[ReadResult]]:
    """The function that reads format ``fmt`` (a generator of batches)."""
    return READERS[fmt].read


def check_source(source: DatasetSource) -> None:
    """The cheap checks, before any work: the keys suit the format, the files and folders exist, the
    structure is sound (XTD line counts, img2dataset columns, metadata headers, class lists). Raises
    DatasetError naming the input and what is wrong."""
    if source.format not in FORMATS:
        raise DatasetError(f"data set {source.name!r}: unknown format {source.format!r} "
                           f"(expected one of {', '.join(FORMAT_NAMES)})")
    problems = key_problems(source.format, source.annotations, source.images, source.split,
                            None if source.lang == "en" else source.lang)
    if problems:
        raise DatasetError(f"data set {source.name!r}: " + "; ".join(problems))
    with _os_errors_named(source):
        READERS[source.format].check(source)


def iter_batches(source: DatasetSource) -> Iterator[ReadResult]:
    """The batches of ``source``, read now from its files (checked first), unfiltered, each reject naming it."""
    check_source(source)
    yield from _stream(source)


def _stream(source: DatasetSource) -> Iterator[ReadResult]:
    with _os_errors_named(source):
        for batch in reader_for(source.format)(source):
            for r in batch.rejects:
                r.setdefault("dataset", source.name)
            yield batch


@contextmanager
def _os_errors_named(source: DatasetSource) -> Iterator[None]:
    """An OSError while a reader lists or reads the source's files (no permission, a folder that vanished, a
    network error) as the DatasetError of the data set: one line, the file named by the OSError itself."""
    try:
        yield
    except OSError as e:
        raise DatasetError(f"data set {source.name!r} (format {source.format}): cannot read its files: "
                           f"{type(e).__name__}: {e}") from e


# -- one read per process: the read kept, keyed by the source and a fingerprint of its files ------------------

_KEPT: OrderedDict[tuple, list[ReadResult]] = OrderedDict()
_KEPT_MAX = 4  # data sets whose read is kept at a time (a sweep's data sets, until each is ingested)
_KEPT_LOCK = threading.Lock()


def _kept_key(source: DatasetSource) -> tuple:
    with _os_errors_named(source):
        return (source, READERS[source.format].fingerprint(source))


def _read_kept(source: DatasetSource) -> list[ReadResult]:
    """Every batch of ``source``: read once, then kept while its files are unchanged."""
    check_source(source)
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


# formats whose fingerprint sees only the top of a folder tree (an image added two folders down changes nothing in
# it): fine for the in-process read cache, not for a cache kept between runs
SHALLOW_FINGERPRINTS = ("imagefolder", "hf-imagefolder")


def source_fingerprint(source: DatasetSource) -> str | None:
    """A digest of the source's settings, of its files' fingerprint (the reader's: sizes, times, inodes of the
    files that make its items) and of the readers' code: the same while reading it again would give the same items.
    None for a format whose fingerprint cannot tell (SHALLOW_FINGERPRINTS): read it every time."""
    if source.format in SHALLOW_FINGERPRINTS:
        return None
    return digest_json([source.to_dict(), _kept_key(source)[1], _readers_code()])


@functools.lru_cache(maxsize=1)
def _readers_code() -> str:
    """A digest of the readers' code (vlalign/datasets: formats, readers, format_readers/*.py) and the item schema."""
    root = Path(__file__).parent
    files = sorted(p for p in root.rglob("*.py"))
    return digest_values([str(p.relative_to(root)) for p in files] + [p.read_bytes() for p in files]
                         + [str(ITEM_SCHEMA)])


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
        emoji.check_parts(domains, langs)
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
    check_source(source)
    key = _kept_key(source)
    with _KEPT_LOCK:
        kept = _KEPT.pop(key, None)
    yield from kept if kept is not None else _stream(source)


def check_dataset(source: DatasetSource) -> None:
    """Everything that can fail a data set before work starts: :func:`check_source`, and for formats read in
    one piece (emoji, coco, karpathy: one JSON) the read itself, kept for the ingest that follows."""
    check_source(source)
    if FORMATS[source.format].whole:
        read_dataset(source)
