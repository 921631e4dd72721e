"""What every format reader uses: the source of a data set, its errors, a batch of canonical items and rejects,
the cheap file checks, the fingerprints of files, and the references to an item's image.

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

A bad single item (a missing image file, an empty caption, a field of the wrong type, a duplicate id) becomes a
reject row with its reason (stage ``read``, :func:`reject_row`); a data set that cannot be read at all raises
:class:`DatasetError`, one line naming the file, the key or line, and what was wrong. Every input is read in
bounded time and memory (the bounds and the field checks: :mod:`vlalign.datasets.format_readers.fields`).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import quote, unquote

import fsspec
import pyarrow as pa
from fsspec.implementations.local import LocalFileSystem

from vlalign.datalake.schemas import ITEM_SCHEMA
from vlalign.datasets.format_readers.fields import MAX_FILE_BYTES, MAX_LINE_BYTES, MAX_SHOWN, shown, text_problem

IMAGE_EXTS = ("jpg", "jpeg", "png", "webp", "bmp", "gif", "tif", "tiff")  # in the order a sample's image is chosen
CHUNK = 10_000  # items per batch for formats read from one big file


class DatasetError(ValueError):
    """A data set that cannot be read at all (as opposed to single bad items, which become rejects). The message
    is one line: a line break from a file name or a parser's message is written as an escape."""

    def __init__(self, message: str = "", *args):
        super().__init__(str(message).replace("\r", "\\r").replace("\n", "\\n"), *args)


_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]+:")  # s3://, gs://, file://, pipe:, simplecache::, data:


def absolute(path: str | None) -> str | None:
    """A local path made absolute against the working folder, as given otherwise (not normalised: '..' and
    symbolic links stay); an absolute path, a URL, a list of shard lists ('a.tar::b.tar'), '' and None unchanged."""
    if not path or os.path.isabs(path) or "::" in path or _URL.match(path):
        return path
    return os.path.join(os.getcwd(), path)


@dataclass(frozen=True)
class DatasetSource:
    """Where a data set comes from: its ``format`` (vlalign/datasets/formats.py: emoji, coco, karpathy, xtd,
    imagefolder, webdataset, img2dataset, hf-imagefolder) and the same keys on the command line and in a sweep
    spec. The cheap checks of a source are :func:`vlalign.datasets.readers.check_source`."""

    name: str
    format: str = "emoji"
    annotations: str | None = None
    images: str | None = None
    domain: str | None = None  # the domain value given to every item (default: the data set name; not emoji)
    lang: str = "en"  # the language of the captions (formats with captions in one language)
    # karpathy: train|val|test|restval (comma-separated for several); hf-imagefolder: a split folder
    split: str | None = None

    def __post_init__(self) -> None:
        # one rule for the command line and a spec: a local path as the user gave it, made absolute against the
        # working folder (what the items, the run record and a Dask worker in another folder see); URLs unchanged
        for key in ("annotations", "images"):
            object.__setattr__(self, key, absolute(getattr(self, key)))

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


def reject_row(stage: str, item_id: str | None, image_id: str | None, caption_id: str | None, reason: str) -> dict:
    """A reject: the item that could not be used, at which stage, and why."""
    return {"stage": stage, "item_id": item_id, "image_id": image_id, "caption_id": caption_id, "reason": reason}


class Batch:
    """One batch of canonical items and rejects under construction."""

    def __init__(self, source: DatasetSource):
        self.source = source
        self.domain = source.domain or source.name
        self.cols: dict[str, list] = {f.name: [] for f in ITEM_SCHEMA}
        self.rejects: list[dict] = []

    def __len__(self) -> int:
        return len(self.cols["item_id"]) + len(self.rejects)

    def add(self, item_id: str, image_id: str, image: str, caption_id: str, caption: str, lang: str | None = None,
            label: str | None = None) -> None:
        """An item; a reject instead when one of its strings cannot be stored (too long, not valid Unicode: a
        file name on disk that is not UTF-8), whatever the reader checked before."""
        for what, text in (("item id", item_id), ("image id", image_id), ("image", image),
                           ("caption id", caption_id), ("caption", caption), ("label", label)):
            why = text_problem(text, what) if text is not None else None
            if why:
                self.reject(item_id, image_id, caption_id, why)
                return
        for k, v in (("item_id", item_id), ("image_id", image_id), ("image", image), ("image_bytes", None),
                     ("caption_id", caption_id), ("caption", caption), ("lang", lang or self.source.lang),
                     ("label", label), ("sublabel", None), ("domain", self.domain)):
            self.cols[k].append(v)

    def reject(self, item_id: str | None, image_id: str | None, caption_id: str | None, reason: str) -> None:
        """A reject row (its ids and reason as a table can store them: escaped, at most MAX_SHOWN characters)."""
        self.rejects.append({"dataset": self.source.name, **reject_row(
            "read", shown(item_id), shown(image_id), shown(caption_id), shown(reason, 4 * MAX_SHOWN))})

    def result(self) -> ReadResult:
        return ReadResult(pa.table(self.cols, schema=ITEM_SCHEMA), self.rejects)


# -- the cheap checks of files and captions --------------------------------------------------------------------


def fail(source: DatasetSource, what: str) -> DatasetError:
    return DatasetError(f"data set {source.name!r} (format {source.format}): {what}")


def line_of(data: bytes, pos: int) -> int:
    """The line number (from 1) of byte ``pos`` of ``data``."""
    return data.count(b"\n", 0, pos) + 1


def json_value(data: bytes | str) -> tuple[Any, str | None]:
    """(the parsed JSON value, None), or (None, why not) in one line: not JSON (the parser's line and column),
    not UTF-8 (the line), or nested deeper than the parser's recursion allows."""
    try:
        return json.loads(data), None
    except UnicodeDecodeError as e:
        return None, f"not UTF-8 at line {line_of(data, e.start)} ({e.reason}, byte {e.start})"
    except RecursionError:
        return None, "nested too deeply (more levels of lists or objects than the JSON parser allows)"
    except ValueError as e:  # JSONDecodeError (its line and column); an integer of more digits than int() takes
        return None, str(e)


def read_bytes(path: str | Path, what: str) -> bytes:
    """The bytes of a file read whole, at most MAX_FILE_BYTES; DatasetError naming the file otherwise."""
    try:
        size = os.path.getsize(path)
        if size > MAX_FILE_BYTES:
            raise DatasetError(f"{what} {str(path)!r} is {size} bytes: files read whole are limited to "
                               f"{MAX_FILE_BYTES} bytes")
        with open(path, "rb") as f:
            data = f.read(MAX_FILE_BYTES + 1)
    except (OSError, ValueError) as e:
        if isinstance(e, DatasetError):
            raise
        raise DatasetError(f"cannot read {what} {str(path)!r}: {type(e).__name__}: {e}") from e
    if len(data) > MAX_FILE_BYTES:
        raise DatasetError(f"{what} {str(path)!r} is more than {MAX_FILE_BYTES} bytes: files read whole are limited")
    return data


def read_lines(path: Path) -> list[str]:
    """The lines of a text file (UTF-8, BOM and trailing blank lines dropped); DatasetError naming the file and
    the line that is not UTF-8."""
    data = read_bytes(path, "text file")
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        lines = data.decode("utf-8").splitlines()
    except UnicodeDecodeError as e:
        raise DatasetError(f"cannot read {str(path)!r}: line {line_of(data, e.start)} is not UTF-8 ({e.reason}, "
                           f"byte {e.start})") from None
    while lines and not lines[-1].strip():
        lines.pop()
    return lines


def load_json(source: DatasetSource, path: str, what: str) -> Any:
    """A JSON file read whole (at most MAX_FILE_BYTES); DatasetError naming the file and where it is broken."""
    try:
        value, why = json_value(read_bytes(path, what))
    except DatasetError as e:
        raise fail(source, str(e)) from None
    except MemoryError:
        raise fail(source, f"cannot parse {what} {path!r}: not enough memory") from None
    if why:
        raise fail(source, f"cannot parse {what} {path!r}: {why}")
    return value


_CR = re.compile(rb"(?<=\r)(?!\n)")  # after a lone CR: text mode's universal newlines end a line there too


def file_lines(path: str | Path) -> Iterator[tuple[int, bytes | None]]:
    """(line number, bytes of the line with its end) of a file read line by line as text mode would split it
    (\\n, \\r\\n or \\r), the UTF-8 BOM dropped; None for a line longer than MAX_LINE_BYTES, which is skipped
    (never held in memory). Decoding is the caller's: a line that is not UTF-8 is that line's problem."""
    n = 0
    with open(path, "rb") as f:
        while line := f.readline(MAX_LINE_BYTES + 1):
            if len(line) > MAX_LINE_BYTES:
                while line and not line.endswith(b"\n"):
                    line = f.readline(MAX_LINE_BYTES)
                n += 1
                yield n, None
                continue
            if n == 0 and line.startswith(b"\xef\xbb\xbf"):
                line = line[3:]
            for part in _CR.split(line) if b"\r" in line else (line,):
                n += 1
                yield n, part


def need_dir(source: DatasetSource, path: str | None, what: str) -> Path:
    if not path or not os.path.isdir(path):  # os.path: False for any OSError (a name too long, no permission)
        raise fail(source, f"{what} {path!r} does not exist or is not a folder")
    return Path(path)


def need_file(source: DatasetSource, path: str | None, what: str) -> Path:
    if not path or not os.path.isfile(path):
        raise fail(source, f"{what} {path!r} does not exist or is not a file")
    return Path(path)


def is_image_name(name: str) -> bool:
    return name.rsplit(".", 1)[-1].lower() in IMAGE_EXTS and not name.startswith(".")


def missing_file(path: Path) -> str | None:
    """None if ``path`` is a file, else the reason (a stat: the bytes are checked where they are decoded)."""
    return None if os.path.isfile(path) else f"missing image file: {path}"


# -- files local or remote (fsspec), and their fingerprints ----------------------------------------------------


def url_fs(url: str):
    """(fsspec filesystem, path) of a local path or URL."""
    return fsspec.core.url_to_fs(url)


def is_local(fs) -> bool:
    return isinstance(fs, LocalFileSystem)


def full_url(fs, path: str) -> str:
    """A path as ``fs`` lists it, as an absolute local path or a URL with its protocol."""
    return os.path.abspath(path) if is_local(fs) else fs.unstrip_protocol(path)


def stat_key(path: str) -> tuple:
    """What changes when a local file or folder changes: (path, size, mtime, inode, ctime; a rewrite that sets the
    mtime back still moves the ctime)."""
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return (path, None)
    return (path, st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns)


def stat_keys(paths: list[str | None]) -> tuple:
    """The :func:`stat_key` of each of ``paths`` given (a fingerprint of local files)."""
    return tuple(stat_key(p) for p in paths if p)


def info_key(url: str, info: dict | None) -> tuple:
    """What changes when a file changes, from its fsspec listing entry (local or object store)."""
    if info is None:
        return (url, None)
    return (url, info.get("size"), str(info.get("mtime") or info.get("LastModified") or ""),
            str(info.get("ino") or info.get("ETag") or ""))


# -- image references: inline bytes, a path or URL, or a byte range of a tar member ----------------------------

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
        try:
            fs, path = url_fs(self.url)
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


def image_name(ref, item: str) -> str:
    """What a message calls an image reference of :func:`image_ref`: its tar member ('s1.jpg in a.tar'), its
    path, or for inline bytes the item ('image <item>')."""
    if isinstance(ref, ByteRange):
        return f"{ref.member} in {ref.url}"
    if isinstance(ref, (bytes, bytearray, memoryview)):
        return f"image {item}"
    return os.fspath(ref)


def load_image_input(x):
    """What an encoder's image decoder accepts, from :func:`image_ref`: a ByteRange is read (that range only)."""
    return x.read() if isinstance(x, ByteRange) else x


def image_source(row_image: str | None, row_bytes: bytes | None):
    """What an encoder's image decoder accepts: the bytes if inline or in a tar, else an open-able path."""
    return load_image_input(image_ref(row_image, row_bytes))
