"""WebDataset tar shards (format ``webdataset``): a sample is ``key.<image ext>`` + ``key.txt`` (or ``key.json``
with 'caption' or 'text'); shards given as a brace pattern, a glob, a folder of ``.tar`` files or one tar, local
or on an object store (fsspec). Read shard by shard.

Tar shards are never unpacked: an item's ``image`` is a reference to its member's bytes (tar path or URL, offset,
size; :func:`vlalign.datasets.format_readers.base.tar_member_ref`), which the extraction reads as one byte range.
:func:`tar_samples` is also how the img2dataset reader reads its tars.
"""

from __future__ import annotations

import os
import re
import tarfile
from typing import Iterator

from vlalign.datasets.format_readers.base import (
    IMAGE_EXTS,
    Batch,
    DatasetSource,
    ReadResult,
    fail,
    full_url,
    info_key,
    is_local,
    json_value,
    tar_member_ref,
    url_fs,
)
from vlalign.datasets.format_readers.fields import MAX_LINE_BYTES, caption_value, text_problem

MAX_SHARDS = 1 << 21  # tar shards a brace pattern may name (2,097,152): more is refused before it is expanded
_BRACES = re.compile(r"\{([^{}]*)\}")
_RANGE = re.compile(r"(-?\d+)\.\.(-?\d+)(?:\.\.-?\d+)?")


def brace_count(pattern: str) -> int:
    """An upper bound of how many names a brace pattern expands to, found without expanding it: a range
    {a..b} (or {a..b..step}) counts b - a + 1, a list {x,y} its items, a range of letters 52."""
    n = 1
    for body in _BRACES.findall(pattern):
        m = _RANGE.fullmatch(body)
        if m:
            n *= 10 ** 19 if max(len(m[1]), len(m[2])) > 19 else abs(int(m[2]) - int(m[1])) + 1
        else:
            n *= max(body.count(",") + 1, 52 if ".." in body else 1)
    return n


def list_shards(images: str) -> list[str]:
    """The tar shards of ``images``: a brace pattern (``shards/data-{000..009}.tar``, expanded by webdataset), a
    glob, a folder (its ``*.tar``, sorted) or one tar; local paths or fsspec URLs. Existence is not checked.
    ValueError for a pattern that is not balanced or names more than MAX_SHARDS shards."""
    from webdataset.shardlists import expand_urls  # webdataset imports torch: seconds, lazy for start-up

    if "{" in images and brace_count(images) > MAX_SHARDS:
        raise ValueError(f"the brace pattern {images!r} names more than {MAX_SHARDS} shards")
    urls = list(dict.fromkeys(expand_urls(images))) if ("{" in images or "::" in images) else [images]
    out: list[str] = []
    for u in urls:
        fs, p = url_fs(u)
        if any(c in p for c in "*?["):
            out += [full_url(fs, x) for x in sorted(fs.glob(p))]
        elif fs.isdir(p):
            out += [full_url(fs, x) for x in sorted(fs.glob(p.rstrip("/") + "/*.tar"))]
        else:
            out.append(full_url(fs, p))
    return list(dict.fromkeys(out))


def _file_infos(urls: list[str]) -> dict[str, dict]:
    """{url: fsspec info} of those ``urls`` that are files: one listing per folder, not a request per file."""
    by_dir: dict[str, set[str]] = {}
    for u in urls:
        by_dir.setdefault(u.rsplit("/", 1)[0], set()).add(u)
    out = {}
    for folder, wanted in by_dir.items():
        fs, path = url_fs(folder)
        try:
            entries = fs.ls(path, detail=True)
        except (FileNotFoundError, NotADirectoryError):
            continue
        for e in entries:
            url = full_url(fs, e["name"])
            if url in wanted and e.get("type") == "file":
                out[url] = e
    return out


def _shards(source: DatasetSource) -> list[str]:
    try:
        return list_shards(source.images)
    except ValueError as e:  # unbalanced braces, too many shards, a glob fsspec cannot read
        raise fail(source, f"images {source.images!r}: {e}") from None


def check(source: DatasetSource) -> None:
    """The shards exist (one listing per folder)."""
    shards = _shards(source)
    if not shards:
        raise fail(source, f"no tar shards in {source.images!r} (a brace pattern like 'shards/data-{{000..009}}.tar', "
                           "a folder of .tar files, or one .tar)")
    found = _file_infos(shards)
    missing = [s for s in shards if s not in found]
    if missing:
        raise fail(source, f"{len(missing)} of {len(shards)} tar shards do not exist: {missing[:5]}"
                           + (" ..." if len(missing) > 5 else ""))


def tar_samples(url: str, read: tuple[str, ...] = ("txt", "json")) -> Iterator[tuple[str | None, dict[str, tuple]]]:
    """The samples of one tar shard, in tar order, grouped as webdataset groups them (consecutive members with
    one key; a repeated extension starts a new sample): (key, {ext: (member name, data offset, size, data)}),
    ``data`` read only for the extensions in ``read``. A local tar is read header by header (the image bytes
    are skipped by seeking); a remote one streams. A member whose data the file cuts off is left out of its
    sample (``files["!cut"]`` names it); a tar that breaks off, or ends without its end-of-archive blocks (two
    zero blocks), yields (None, {"error": why}) after the samples read before."""
    from webdataset.tariterators import base_plus_ext, meta_prefix, meta_suffix  # webdataset imports torch: lazy

    fs, path = url_fs(url)
    local = is_local(fs)
    key, files = None, {}
    n = end = 0
    problem = None
    try:
        size = os.path.getsize(path) if local else fs.size(path)
        with (open(path, "rb") if local else fs.open(path, "rb")) as f:
            with tarfile.open(fileobj=f, mode="r:" if local else "r|") as tar:
                while (m := tar.next()) is not None:
                    tar.members = []  # keep no member list: a shard can hold many
                    end = tar.offset
                    if not m.isreg():
                        continue
                    name = m.name
                    if "/" not in name and name.startswith(meta_prefix) and name.endswith(meta_suffix):
                        continue
                    base, ext = base_plus_ext(name)
                    if base is None:
                        continue
                    ext = ext.lower()
                    if key is not None and (base != key or ext in files):
                        yield key, files
                        files = {}
                    key = base
                    n += 1
                    if m.offset_data + m.size > size:
                        files["!cut"] = (name, m.offset_data, m.size, None)
                        continue
                    small = ext in read and m.size <= MAX_LINE_BYTES  # a larger caption is not read: a reject
                    files[ext] = (name, m.offset_data, m.size, tar.extractfile(m).read() if small else None)
        if end + 2 * tarfile.BLOCKSIZE > size:
            problem = f"ends at {size} bytes without its end-of-archive blocks (truncated?) after {n} members"
    except (tarfile.TarError, OSError, EOFError, ValueError) as e:  # ValueError: a header field tarfile refuses
        problem = f"unreadable after {n} members: {type(e).__name__}: {e}"
    if key is not None:
        yield key, files
    if problem:
        yield None, {"error": f"tar shard {url} {problem}"}


def sample_image(files: dict[str, tuple]) -> str | None:
    return next((e for e in IMAGE_EXTS if e in files), None)


def sample_caption(files: dict[str, tuple]) -> tuple[str | None, str | None]:
    """(caption, None) or (None, why not) of a webdataset sample: its .txt, else its .json's caption/text."""
    if "txt" in files:
        name, _, size, data = files["txt"]
        if data is None:
            return None, f"caption {name} is {size} bytes (more than {MAX_LINE_BYTES})"
        try:
            caption, why = caption_value(data.decode("utf-8"), "caption (.txt)")
        except UnicodeDecodeError as e:
            return None, f"caption .txt is not UTF-8: {e}"
        return (caption, None) if caption else (None, why or "empty caption (.txt)")
    if "json" in files:
        name, _, size, data = files["json"]
        if data is None:
            return None, f"{name} is {size} bytes (more than {MAX_LINE_BYTES})"
        doc, why = json_value(data)
        if why:
            return None, f"unreadable .json: {why}"
        if not isinstance(doc, dict) or not ({"caption", "text"} & set(doc)):
            return None, "no caption: the .json has neither 'caption' nor 'text'"
        (caption, why), (text, why_text) = (caption_value(doc.get(k), f"{k!r} in the .json")
                                            for k in ("caption", "text"))
        caption = caption or text
        return (caption, None) if caption else (None, why or why_text or "empty caption (.json)")
    return None, f"no caption (.txt, or .json with 'caption' or 'text'); the sample has {sorted(files)}"


def read(source: DatasetSource) -> Iterator[ReadResult]:
    """WebDataset tar shards, shard by shard in order: a sample is ``key.<image ext>`` + ``key.txt`` (or
    ``key.json`` with 'caption' or 'text'). image_id = item_id = caption_id = the key; ``image`` references
    the member's bytes in the tar (read as one byte range by the extraction)."""
    seen: dict[str, str] = {}
    for shard in _shards(source):
        batch = Batch(source)
        name = shard.rsplit("/", 1)[-1]
        for key, files in tar_samples(shard):
            if key is None:
                batch.reject(None, None, None, files["error"])
                continue
            ext = sample_image(files)
            caption, why = sample_caption(files)
            bad_key = text_problem(key, "the sample's key")
            if bad_key:
                why = bad_key
            elif key in seen:
                why = f"duplicate key {key!r} (first in {seen[key]})"
            elif "!cut" in files:
                why = f"member {files['!cut'][0]} is cut off: {name} ends before its data does"
            elif ext is None:
                why = (f"no image ({', '.join('.' + e for e in IMAGE_EXTS[:4])}, ...) in the sample; "
                       f"it has {sorted(files)}")
            seen.setdefault(key, name)
            if why:
                batch.reject(key, key, key, why)
                continue
            member, offset, size, _ = files[ext]
            batch.add(key, key, tar_member_ref(shard, offset, size, member), key, caption)
        yield batch.result()



def fingerprint(source: DatasetSource) -> tuple:
    """The listing entries of the shards (size, mtime or ETag): one listing per folder, local or remote."""
    shards = _shards(source)
    infos = _file_infos(shards)
    return tuple(info_key(u, infos.get(u)) for u in shards)
