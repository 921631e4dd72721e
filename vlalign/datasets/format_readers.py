"""Readers of the file formats beyond COCO: Karpathy splits, XTD-10, ImageFolder, WebDataset tar shards,
img2dataset output and Hugging Face imagefolder. Each yields canonical items (vlalign.datasets.readers.ITEM_SCHEMA)
in batches (a chunk of images or lines, a class folder, a tar shard, a parquet file) and turns bad single
items into reject rows with a reason; a data set that cannot be read at all raises DatasetError naming the
input. Formats and their keys: vlalign/formats.py.

Tar shards (webdataset, img2dataset) are never unpacked: an item's ``image`` is a reference to its member's
bytes (tar path or URL, offset, size; vlalign.datasets.readers.tar_member_ref), which the extraction reads as one
byte range. The tars are opened through fsspec, so shards on object stores work too.
"""

from __future__ import annotations

import csv
import json
import os
import tarfile
from pathlib import Path
from typing import Any, Iterator

import pyarrow as pa
import pyarrow.parquet as pq

from vlalign.datasets.readers import READERS, DatasetError, DatasetSource, ReadResult, missing_file, tar_member_ref
from vlalign.lake.names import is_safe_name
from vlalign.lake.schemas import ITEM_SCHEMA

IMAGE_EXTS = ("jpg", "jpeg", "png", "webp", "bmp", "gif", "tif", "tiff")  # in the order a sample's image is chosen
CHUNK = 10_000  # items per batch for formats read from one big file
XTD_IMAGE_LISTS = ("test_image_names.txt",)


class _Batch:
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
        for k, v in (("item_id", item_id), ("image_id", image_id), ("image", image), ("image_bytes", None),
                     ("caption_id", caption_id), ("caption", caption), ("lang", lang or self.source.lang),
                     ("label", label), ("sublabel", None), ("domain", self.domain)):
            self.cols[k].append(v)

    def reject(self, item_id: str | None, image_id: str | None, caption_id: str | None, reason: str) -> None:
        self.rejects.append({"dataset": self.source.name, "stage": "read", "item_id": item_id, "image_id": image_id,
                             "caption_id": caption_id, "reason": reason})

    def result(self) -> ReadResult:
        return ReadResult(pa.table(self.cols, schema=ITEM_SCHEMA), self.rejects)


def _text(value: Any) -> str | None:
    """A caption: the stripped string, or None when it is missing or blank."""
    return value.strip() or None if isinstance(value, str) else None


def _fail(source: DatasetSource, what: str) -> DatasetError:
    return DatasetError(f"data set {source.name!r} (format {source.format}): {what}")


def _lines(path: Path) -> list[str]:
    """The lines of a text file (UTF-8, BOM and trailing blank lines dropped)."""
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise DatasetError(f"cannot read {str(path)!r}: {type(e).__name__}: {e}") from e
    while lines and not lines[-1].strip():
        lines.pop()
    return lines


def _load_json(source: DatasetSource, path: str, what: str) -> Any:
    try:
        with open(path, "rb") as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        raise _fail(source, f"cannot parse {what} {path!r}: {type(e).__name__}: {e}") from e


def _need_dir(source: DatasetSource, path: str | None, what: str) -> Path:
    if not path or not Path(path).is_dir():
        raise _fail(source, f"{what} {path!r} does not exist or is not a folder")
    return Path(path)


def _need_file(source: DatasetSource, path: str | None, what: str) -> Path:
    if not path or not Path(path).is_file():
        raise _fail(source, f"{what} {path!r} does not exist or is not a file")
    return Path(path)


def _is_image(name: str) -> bool:
    return name.rsplit(".", 1)[-1].lower() in IMAGE_EXTS and not name.startswith(".")


# ------------------------------------------------------------------------------------------------ Karpathy


def _karpathy_doc(source: DatasetSource) -> list:
    doc = _load_json(source, source.annotations, "the Karpathy-split JSON")
    if not isinstance(doc, dict) or not isinstance(doc.get("images"), list):
        raise _fail(source, f"{source.annotations!r} is not a Karpathy-split JSON (needs a top-level 'images' list "
                            "of {filename, imgid, split, sentences: [{raw, sentid}]})")
    return doc["images"]


def read_karpathy(source: DatasetSource) -> Iterator[ReadResult]:
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
    batch = _Batch(source)
    for k, im in enumerate(entries):
        if not isinstance(im, dict) or not isinstance(im.get("filename"), str) or not isinstance(im.get("sentences"), list):
            raise _fail(source, f"{source.annotations!r}: images[{k}] needs a 'filename' and a 'sentences' list; "
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
            caption = _text(sent.get("raw"))
            if problem or caption is None:
                batch.reject(sid, image_id, sid, problem or "empty caption")
                continue
            batch.add(sid, image_id, str(path), sid, caption)
        if len(batch) >= CHUNK:
            yield batch.result()
            batch = _Batch(source)
    if splits is not None and not selected:
        raise _fail(source, f"no image of split {source.split!r} in {source.annotations!r}; "
                            f"it has {sorted(found_splits)}")
    yield batch.result()


# ------------------------------------------------------------------------------------------------ XTD-10


def _xtd_layout(source: DatasetSource) -> tuple[Path, list[tuple[str, Path]]]:
    """(image list, [(lang, caption file)]) of an XTD-style data set; the checks that need no caption read."""
    ann = source.annotations or ""
    if any(c in ann for c in "*?["):
        folder = Path(ann).parent
        files = sorted(p for p in folder.glob(Path(ann).name) if p.is_file())
    elif Path(ann).is_dir():
        folder = Path(ann)
        files = sorted(p for p in folder.glob("*.txt") if p.is_file())
    elif Path(ann).is_file():
        folder, files = Path(ann).parent, [Path(ann)]
    else:
        raise _fail(source, f"annotations {ann!r} does not exist (expected the folder, or a pattern, of the caption "
                            "files test_1kcaptions_<lang>.txt)")
    lists = [folder / n for n in XTD_IMAGE_LISTS if (folder / n).is_file()] or sorted(folder.glob("*image_names*.txt"))
    if len(lists) != 1:
        raise _fail(source, f"expected one image list (test_image_names.txt or *image_names*.txt) in {str(folder)!r}, "
                            f"found {[p.name for p in lists]}")
    image_list = lists[0]
    files = [p for p in files if p != image_list and "image_names" not in p.name]
    if not files:
        raise _fail(source, f"no caption files (<name>_<lang>.txt) in {ann!r}")
    out, langs = [], {}
    for p in files:
        lang = p.stem.rsplit("_", 1)[-1]
        if "_" not in p.stem or not is_safe_name(lang):
            raise _fail(source, f"caption file {p.name!r}: no language in its name (expected <name>_<lang>.txt)")
        if lang in langs:
            raise _fail(source, f"two caption files for language {lang!r}: {langs[lang].name!r} and {p.name!r}")
        langs[lang] = p
        out.append((lang, p))
    return image_list, out


def _check_xtd(source: DatasetSource) -> None:
    _need_dir(source, source.images, "image folder")
    image_list, files = _xtd_layout(source)
    n = len(_lines(image_list))
    for lang, p in files:
        m = len(_lines(p))
        if m != n:
            raise _fail(source, f"caption file {str(p)!r} has {m} lines but the image list {image_list.name!r} has {n}; "
                                "line i of every caption file describes image i")


def read_xtd(source: DatasetSource) -> Iterator[ReadResult]:
    """XTD-10 style: line i of every ``<name>_<lang>.txt`` describes image i of ``test_image_names.txt``.
    image_id = the image's name in the list without its extension; item and caption id = ``<lang>/<image_id>``."""
    image_list, files = _xtd_layout(source)
    root = Path(source.images).resolve()
    names = [line.strip() for line in _lines(image_list)]
    problems: list[str | None] = []
    ids: list[str] = []
    first: dict[str, int] = {}
    for i, name in enumerate(names):
        image_id = Path(name).with_suffix("").as_posix() if name else f"line-{i + 1}"
        ids.append(image_id)
        if not name:
            problems.append(f"empty image name on line {i + 1} of {image_list.name}")
        elif image_id in first:
            problems.append(f"duplicate image {name!r} (line {i + 1}; first on line {first[image_id] + 1} of {image_list.name})")
        else:
            first[image_id] = i
            problems.append(missing_file(root / name))
    for lang, path in files:
        lines = _lines(path)
        if len(lines) != len(names):
            raise _fail(source, f"caption file {str(path)!r} has {len(lines)} lines but the image list has {len(names)}")
        batch = _Batch(source)
        for i, (line, image_id, problem) in enumerate(zip(lines, ids, problems)):
            item_id = f"{lang}/{image_id}"
            caption = _text(line)
            if problem or caption is None:
                batch.reject(item_id, image_id, item_id, problem or f"empty caption (line {i + 1} of {path.name})")
            else:
                batch.add(item_id, image_id, str(root / names[i]), item_id, caption, lang=lang)
            if len(batch) >= CHUNK:
                yield batch.result()
                batch = _Batch(source)
        yield batch.result()


# ------------------------------------------------------------------------------------------------ ImageFolder


def _class_names(source: DatasetSource) -> list[tuple[str, str]]:
    """[(class folder, class name)] in sorted folder order."""
    root = _need_dir(source, source.images, "image folder")
    folders = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not folders:
        raise _fail(source, f"no class folders in {source.images!r} (expected one folder of images per class)")
    if not source.annotations:
        return [(f, f) for f in folders]
    path = _need_file(source, source.annotations, "class names file")
    if path.suffix.lower() == ".json":
        names = _load_json(source, str(path), "the class names JSON")
        if not isinstance(names, dict) or not all(isinstance(v, str) for v in names.values()):
            raise _fail(source, f"{str(path)!r}: expected a JSON object {{folder: class name}}")
        missing = [f for f in folders if f not in names]
        if missing:
            raise _fail(source, f"{str(path)!r} names no class for folder(s) {missing[:10]}"
                                + (f" and {len(missing) - 10} more" if len(missing) > 10 else ""))
        return [(f, names[f]) for f in folders]
    lines = _lines(path)
    if len(lines) != len(folders):
        raise _fail(source, f"{str(path)!r} has {len(lines)} class names but {source.images!r} has {len(folders)} "
                            "class folders (one name a line, in sorted folder order)")
    return [(f, n.strip()) for f, n in zip(folders, lines)]


def read_imagefolder(source: DatasetSource) -> Iterator[ReadResult]:
    """ImageFolder (classification): ``images/<class folder>/**/<image>``. Every image of a class shares one
    caption (the class name, '_' read as a space; caption_id = the folder) and has label = the class name;
    image_id = item_id = the image's path under the root. Files without an image extension are not items."""
    root = Path(source.images).resolve()
    for folder, name in _class_names(source):
        batch = _Batch(source)
        caption = _text(name.replace("_", " "))
        for dirpath, dirnames, files in os.walk(root / folder):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for f in sorted(files):
                if not _is_image(f):
                    continue
                path = Path(dirpath) / f
                image_id = path.relative_to(root).as_posix()
                if caption is None:
                    batch.reject(image_id, image_id, folder, f"empty caption (the class name of folder {folder!r} is empty)")
                else:
                    batch.add(image_id, image_id, str(path), folder, caption, label=name)
        yield batch.result()


# ------------------------------------------------------------------------------------------------ tar shards


def _fs(url: str):
    import fsspec

    return fsspec.core.url_to_fs(url)


def _is_local(fs) -> bool:
    from fsspec.implementations.local import LocalFileSystem

    return isinstance(fs, LocalFileSystem)


def _full(fs, path: str) -> str:
    return os.path.abspath(path) if _is_local(fs) else fs.unstrip_protocol(path)


def list_shards(images: str) -> list[str]:
    """The tar shards of ``images``: a brace pattern (``shards/data-{000..009}.tar``, expanded by webdataset), a
    glob, a folder (its ``*.tar``, sorted) or one tar; local paths or fsspec URLs. Existence is not checked."""
    from webdataset.shardlists import expand_urls

    urls = list(dict.fromkeys(expand_urls(images))) if ("{" in images or "::" in images) else [images]
    out: list[str] = []
    for u in urls:
        fs, p = _fs(u)
        if any(c in p for c in "*?["):
            out += [_full(fs, x) for x in sorted(fs.glob(p))]
        elif fs.isdir(p):
            out += [_full(fs, x) for x in sorted(fs.glob(p.rstrip("/") + "/*.tar"))]
        else:
            out.append(_full(fs, p))
    return list(dict.fromkeys(out))


def _file_infos(urls: list[str]) -> dict[str, dict]:
    """{url: fsspec info} of those ``urls`` that are files: one listing per folder, not a request per file."""
    by_dir: dict[str, set[str]] = {}
    for u in urls:
        by_dir.setdefault(u.rsplit("/", 1)[0], set()).add(u)
    out = {}
    for folder, wanted in by_dir.items():
        fs, path = _fs(folder)
        try:
            entries = fs.ls(path, detail=True)
        except (FileNotFoundError, NotADirectoryError):
            continue
        for e in entries:
            url = _full(fs, e["name"])
            if url in wanted and e.get("type") == "file":
                out[url] = e
    return out


def _info_key(url: str, info: dict | None) -> tuple:
    if info is None:
        return (url, None)
    return (url, info.get("size"), str(info.get("mtime") or info.get("LastModified") or ""),
            str(info.get("ino") or info.get("ETag") or ""))


def _check_shards(source: DatasetSource) -> list[str]:
    shards = list_shards(source.images)
    if not shards:
        raise _fail(source, f"no tar shards in {source.images!r} (a brace pattern like 'shards/data-{{000..009}}.tar', "
                            "a folder of .tar files, or one .tar)")
    found = _file_infos(shards)
    missing = [s for s in shards if s not in found]
    if missing:
        raise _fail(source, f"{len(missing)} of {len(shards)} tar shards do not exist: {missing[:5]}"
                            + (" ..." if len(missing) > 5 else ""))
    return shards


def tar_samples(url: str, read: tuple[str, ...] = ("txt", "json")) -> Iterator[tuple[str | None, dict[str, tuple]]]:
    """The samples of one tar shard, in tar order, grouped as webdataset groups them (consecutive members with
    one key; a repeated extension starts a new sample): (key, {ext: (member name, data offset, size, data)}),
    ``data`` read only for the extensions in ``read``. A local tar is read header by header (the image bytes
    are skipped by seeking); a remote one streams. A member whose data the file cuts off is left out of its
    sample (``files["!cut"]`` names it); a tar that breaks off, or ends without its end-of-archive blocks (two
    zero blocks), yields (None, {"error": why}) after the samples read before."""
    from webdataset.tariterators import base_plus_ext, meta_prefix, meta_suffix

    fs, path = _fs(url)
    local = _is_local(fs)
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
                    data = tar.extractfile(m).read() if ext in read else None
                    files[ext] = (name, m.offset_data, m.size, data)
        if end + 2 * tarfile.BLOCKSIZE > size:
            problem = f"ends at {size} bytes without its end-of-archive blocks (truncated?) after {n} members"
    except (tarfile.TarError, OSError, EOFError) as e:
        problem = f"unreadable after {n} members: {type(e).__name__}: {e}"
    if key is not None:
        yield key, files
    if problem:
        yield None, {"error": f"tar shard {url} {problem}"}


def _sample_image(files: dict[str, tuple]) -> str | None:
    return next((e for e in IMAGE_EXTS if e in files), None)


def _sample_caption(files: dict[str, tuple]) -> tuple[str | None, str | None]:
    """(caption, None) or (None, why not) of a webdataset sample: its .txt, else its .json's caption/text."""
    if "txt" in files:
        try:
            caption = _text(files["txt"][3].decode("utf-8"))
        except UnicodeDecodeError as e:
            return None, f"caption .txt is not UTF-8: {e}"
        return (caption, None) if caption else (None, "empty caption (.txt)")
    if "json" in files:
        try:
            doc = json.loads(files["json"][3])
        except ValueError as e:
            return None, f"unreadable .json: {e}"
        if not isinstance(doc, dict) or not ({"caption", "text"} & set(doc)):
            return None, "no caption: the .json has neither 'caption' nor 'text'"
        caption = _text(doc.get("caption")) or _text(doc.get("text"))
        return (caption, None) if caption else (None, "empty caption (.json)")
    return None, f"no caption (.txt, or .json with 'caption' or 'text'); the sample has {sorted(files)}"


def read_webdataset(source: DatasetSource) -> Iterator[ReadResult]:
    """WebDataset tar shards, shard by shard in order: a sample is ``key.<image ext>`` + ``key.txt`` (or
    ``key.json`` with 'caption' or 'text'). image_id = item_id = caption_id = the key; ``image`` references
    the member's bytes in the tar (read as one byte range by the extraction)."""
    seen: dict[str, str] = {}
    for shard in list_shards(source.images):
        batch = _Batch(source)
        name = shard.rsplit("/", 1)[-1]
        for key, files in tar_samples(shard):
            if key is None:
                batch.reject(None, None, None, files["error"])
                continue
            ext = _sample_image(files)
            caption, why = _sample_caption(files)
            if key in seen:
                why = f"duplicate key {key!r} (first in {seen[key]})"
            elif "!cut" in files:
                why = f"member {files['!cut'][0]} is cut off: {name} ends before its data does"
            elif ext is None:
                why = f"no image ({', '.join('.' + e for e in IMAGE_EXTS[:4])}, ...) in the sample; it has {sorted(files)}"
            seen.setdefault(key, name)
            if why:
                batch.reject(key, key, key, why)
                continue
            member, offset, size, _ = files[ext]
            batch.add(key, key, tar_member_ref(shard, offset, size, member), key, caption)
        yield batch.result()


# ------------------------------------------------------------------------------------------------ img2dataset


def _img2dataset_parts(source: DatasetSource) -> list[tuple[str, str, str]]:
    """[(parquet URL, 'tar' or 'dir', tar or folder URL)] of an img2dataset output folder, in order (one listing)."""
    fs, root = _fs(source.images)
    try:
        entries = {_full(fs, e["name"]): e.get("type") for e in fs.ls(root, detail=True)}
    except (FileNotFoundError, NotADirectoryError):
        raise _fail(source, f"img2dataset output folder {source.images!r} does not exist") from None
    parquets = sorted(u for u, t in entries.items() if t == "file" and u.endswith(".parquet"))
    if not parquets:
        raise _fail(source, f"no NNNNN.parquet in {source.images!r} (is it img2dataset output?)")
    out = []
    for p in parquets:
        stem = p[: -len(".parquet")]
        name = stem.rsplit("/", 1)[-1]
        if entries.get(stem + ".tar") == "file":
            out.append((p, "tar", stem + ".tar"))
        elif entries.get(stem) == "directory":
            out.append((p, "dir", stem))
        else:
            raise _fail(source, f"{name}.parquet: neither {name}.tar nor {name}/ beside it (img2dataset's webdataset "
                                "or files output)")
    return out


def _img2dataset_columns(source: DatasetSource, parquet: str) -> list[str]:
    """The columns of an img2dataset parquet, checked: it has 'key' and 'caption'."""
    fs, path = _fs(parquet)
    try:
        with fs.open(path, "rb") as f:
            names = pq.read_schema(f).names
    except Exception as e:  # noqa: BLE001 - not parquet, unreadable
        raise _fail(source, f"cannot read {parquet!r}: {type(e).__name__}: {e}") from e
    missing = [c for c in ("key", "caption") if c not in names]
    if missing:
        raise _fail(source, f"{parquet!r} has no column(s) {missing} (it has {names})")
    return names


def _check_img2dataset(source: DatasetSource) -> None:
    """The layout (one listing) and the first parquet's columns; the others' are checked as they are read."""
    _img2dataset_columns(source, _img2dataset_parts(source)[0][0])


def read_img2dataset(source: DatasetSource) -> Iterator[ReadResult]:
    """img2dataset output, parquet by parquet: a row whose status is not 'success' is a reject with its
    error_message; a success row's image is ``key.<ext>`` in the tar (a byte-range reference) or the folder
    beside its parquet. image_id = item_id = caption_id = the key; the caption is the parquet's."""
    seen: dict[str, str] = {}
    for parquet, kind, where in _img2dataset_parts(source):
        names = _img2dataset_columns(source, parquet)
        fs, path = _fs(parquet)
        with fs.open(path, "rb") as f:
            table = pq.read_table(f, columns=[c for c in ("key", "caption", "status", "error_message") if c in names])
        batch = _Batch(source)
        cut: dict[str, str] = {}
        if kind == "tar":
            images = {}
            for key, files in tar_samples(where, read=()):
                if key is None:
                    batch.reject(None, None, None, files["error"])
                    continue
                ext = _sample_image(files)
                if ext is not None:
                    images.setdefault(key.rsplit("/", 1)[-1], tar_member_ref(where, files[ext][1], files[ext][2], files[ext][0]))
                elif "!cut" in files:
                    cut[key.rsplit("/", 1)[-1]] = f"member {files['!cut'][0]} is cut off: the tar ends before its data does"
        else:
            dfs, dpath = _fs(where)
            images = {}
            for p in sorted(dfs.ls(dpath, detail=False)):
                base = p.rsplit("/", 1)[-1]
                if _is_image(base):
                    images.setdefault(base.split(".", 1)[0], _full(dfs, p))
        pname = parquet.rsplit("/", 1)[-1]
        container = where.rsplit("/", 1)[-1] + ("" if kind == "tar" else "/")
        cols = {c: table[c].to_pylist() for c in table.column_names}
        n = table.num_rows
        for key, caption, status, error in zip(cols["key"], cols["caption"], cols.get("status", ["success"] * n),
                                               cols.get("error_message", [None] * n)):
            key = None if key is None else str(key)
            if status not in (None, "success"):
                batch.reject(key, key, key, f"download failed ({status}): {error or 'no error message'}")
                continue
            if key is None:
                batch.reject(None, None, None, f"a row of {pname} without a key")
                continue
            if key in seen:
                batch.reject(key, key, key, f"duplicate key {key!r} (first in {seen[key]})")
                continue
            seen[key] = pname
            caption = _text(caption)
            if caption is None:
                batch.reject(key, key, key, "empty caption")
            elif key not in images:
                batch.reject(key, key, key, cut.get(key) or f"missing image: no {key}.<image ext> in {container}")
            else:
                batch.add(key, key, images[key], key, caption)
        yield batch.result()


# ------------------------------------------------------------------------------------------------ HF imagefolder


def _hf_metadata(source: DatasetSource) -> list[tuple[str, Path]]:
    """[(split, metadata file)]: the top folder's (split '') and each split folder's, or the chosen splits'."""
    root = _need_dir(source, source.images, "image folder")

    def meta(folder: Path) -> Path | None:
        found = [folder / n for n in ("metadata.jsonl", "metadata.csv") if (folder / n).is_file()]
        if len(found) > 1:
            raise _fail(source, f"both metadata.jsonl and metadata.csv in {str(folder)!r}; keep one")
        return found[0] if found else None

    splits = {p.name: m for p in sorted(root.iterdir()) if p.is_dir() and (m := meta(p)) is not None}
    if source.split:
        wanted = [s.strip() for s in source.split.split(",")]
        missing = [s for s in wanted if s not in splits]
        if missing:
            raise _fail(source, f"split(s) {missing} not found: no {source.images}/<split>/metadata.jsonl|csv "
                                f"(splits found: {sorted(splits)})")
        return [(s, splits[s]) for s in wanted]
    top = meta(root)
    out = ([("", top)] if top else []) + sorted(splits.items())
    if not out:
        raise _fail(source, f"no metadata.jsonl or metadata.csv in {source.images!r} or its split folders")
    return out


def _hf_caption_column(source: DatasetSource, path: Path, first: dict) -> str:
    if "file_name" not in first:
        raise _fail(source, f"{str(path)!r}: no 'file_name' column (it has {list(first)})")
    for c in ("text", "caption"):
        if c in first:
            return c
    for c, v in first.items():
        if c not in ("file_name", "label") and isinstance(v, str):
            return c
    raise _fail(source, f"{str(path)!r}: no caption column ('text', 'caption' or another string column; it has {list(first)})")


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
        raise _fail(source, f"cannot read {str(path)!r}: {type(e).__name__}: {e}") from e
    raise _fail(source, f"{str(path)!r} has no rows")


def read_hf_imagefolder(source: DatasetSource) -> Iterator[ReadResult]:
    """Hugging Face imagefolder: ``metadata.jsonl`` or ``metadata.csv`` with ``file_name`` (relative to the
    metadata's folder) and a caption column (``text``, ``caption``, or the first other string column), at
    the top and/or in split folders. image_id = item_id = caption_id = the image's path under the root;
    a ``label`` column becomes the label."""
    root = Path(source.images).resolve()
    seen: set[str] = set()
    for split, path in _hf_metadata(source):
        column = _hf_caption_column(source, path, _hf_first_row(source, path))
        where = f"{split}/{path.name}" if split else path.name
        batch = _Batch(source)
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
            caption = _text(row.get(column))
            problem = missing_file(image) or (None if caption else f"empty caption ({column!r})")
            if problem:
                batch.reject(image_id, image_id, image_id, problem)
                continue
            label = row.get("label")
            batch.add(image_id, image_id, str(image), image_id, caption, label=None if label is None else str(label))
            if len(batch) >= CHUNK:
                yield batch.result()
                batch = _Batch(source)
        yield batch.result()


# ------------------------------------------------------------------------------------------------ checks


def check(source: DatasetSource) -> None:
    """The cheap checks of the file formats (DatasetSource.check has checked the keys)."""
    fmt = source.format
    if fmt == "karpathy":
        _need_file(source, source.annotations, "annotations file")
        _need_dir(source, source.images, "image folder")
    elif fmt == "xtd":
        _check_xtd(source)
    elif fmt == "imagefolder":
        _class_names(source)
    elif fmt == "webdataset":
        _check_shards(source)
    elif fmt == "img2dataset":
        _check_img2dataset(source)
    elif fmt == "hf-imagefolder":
        for _, path in _hf_metadata(source):
            _hf_caption_column(source, path, _hf_first_row(source, path))


# ------------------------------------------------------------------------------------------------ fingerprints


def _stat(path: str) -> tuple:
    """What changes when a local file or folder changes: (path, size, mtime, inode)."""
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return (path, None)
    return (path, st.st_size, st.st_mtime_ns, st.st_ino)


def fingerprint(source: DatasetSource) -> tuple:
    """A cheap fingerprint of a source's files: the stats of its annotation files and of its image folder (and
    of the class or split folders, shards and parquet files that list its images; one listing per folder for
    shards, local or remote). While it is unchanged, a read gives the same items."""
    from vlalign.datasets.readers import EMOJI_DIR

    fmt = source.format
    paths: list[str] = []
    if fmt == "emoji":
        paths = [str(EMOJI_DIR / f"{f}.parquet") for f in ("images", "captions", "emoji")]
    elif fmt in ("coco", "karpathy"):
        paths = [source.annotations, source.images]
    elif fmt == "xtd":
        ann = source.annotations or ""
        folder = Path(ann).parent if (any(c in ann for c in "*?[") or Path(ann).is_file()) else Path(ann)
        paths = [str(folder), source.images] + sorted(str(p) for p in folder.glob("*.txt"))
    elif fmt == "imagefolder":  # the class folders' stats change when an image is added or removed
        paths = [source.images] + ([source.annotations] if source.annotations else [])
        if source.images and Path(source.images).is_dir():
            paths += sorted(e.path for e in os.scandir(source.images) if e.is_dir())
    elif fmt == "webdataset":
        shards = list_shards(source.images)
        infos = _file_infos(shards)
        return tuple(_info_key(u, infos.get(u)) for u in shards)
    elif fmt == "img2dataset":
        fs, root = _fs(source.images)
        try:
            entries = sorted(fs.ls(root, detail=True), key=lambda e: e["name"])
        except (FileNotFoundError, NotADirectoryError):
            entries = []
        return tuple(_info_key(_full(fs, e["name"]), e) for e in entries)
    elif fmt == "hf-imagefolder":
        root = Path(source.images or "")
        paths = [str(root)] + sorted(str(p) for p in root.glob("*") if p.is_dir())
        paths += sorted(str(p) for p in [*root.glob("metadata.*"), *root.glob("*/metadata.*")])
    return tuple(_stat(p) for p in paths if p)


READERS.update({
    "karpathy": read_karpathy, "xtd": read_xtd, "imagefolder": read_imagefolder, "webdataset": read_webdataset,
    "img2dataset": read_img2dataset, "hf-imagefolder": read_hf_imagefolder,
})
