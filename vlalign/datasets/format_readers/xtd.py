"""XTD-10 style (format ``xtd``): one caption file per language, ``<name>_<lang>.txt``, whose line i describes
image i of the image list ``test_image_names.txt`` (or ``*image_names*.txt``) beside them; + an image folder.
"""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath
from typing import Iterator

from vlalign.datalake.names import is_safe_name
from vlalign.datasets.format_readers.base import (
    CHUNK,
    Batch,
    DatasetSource,
    ReadResult,
    fail,
    missing_file,
    need_dir,
    read_lines,
    stat_keys,
)
from vlalign.datasets.format_readers.fields import caption_value, name_value

XTD_IMAGE_LISTS = ("test_image_names.txt",)


def _xtd_layout(source: DatasetSource) -> tuple[Path, list[tuple[str, Path]]]:
    """(image list, [(lang, caption file)]) of an XTD-style data set; the checks that need no caption read."""
    ann = source.annotations or ""
    if any(c in ann for c in "*?["):
        folder = Path(ann).parent
        files = sorted(p for p in folder.glob(Path(ann).name) if os.path.isfile(p))
    elif os.path.isdir(ann):
        folder = Path(ann)
        files = sorted(p for p in folder.glob("*.txt") if os.path.isfile(p))
    elif os.path.isfile(ann):
        folder, files = Path(ann).parent, [Path(ann)]
    else:
        raise fail(source, f"annotations {ann!r} does not exist (expected the folder, or a pattern, of the caption "
                           "files test_1kcaptions_<lang>.txt)")
    lists = ([folder / n for n in XTD_IMAGE_LISTS if os.path.isfile(folder / n)]
             or sorted(folder.glob("*image_names*.txt")))
    if len(lists) != 1:
        raise fail(source, f"expected one image list (test_image_names.txt or *image_names*.txt) in {str(folder)!r}, "
                           f"found {[p.name for p in lists]}")
    image_list = lists[0]
    files = [p for p in files if p != image_list and "image_names" not in p.name]
    if not files:
        raise fail(source, f"no caption files (<name>_<lang>.txt) in {ann!r}")
    out, langs = [], {}
    for p in files:
        lang = p.stem.rsplit("_", 1)[-1]
        if "_" not in p.stem or not is_safe_name(lang):
            raise fail(source, f"caption file {p.name!r}: no language in its name (expected <name>_<lang>.txt)")
        if lang in langs:
            raise fail(source, f"two caption files for language {lang!r}: {langs[lang].name!r} and {p.name!r}")
        langs[lang] = p
        out.append((lang, p))
    return image_list, out


def check(source: DatasetSource) -> None:
    need_dir(source, source.images, "image folder")
    image_list, files = _xtd_layout(source)
    n = len(read_lines(image_list))
    for lang, p in files:
        m = len(read_lines(p))
        if m != n:
            raise fail(source, f"caption file {str(p)!r} has {m} lines but the image list {image_list.name!r} has {n}; "
                               "line i of every caption file describes image i")


def read(source: DatasetSource) -> Iterator[ReadResult]:
    """XTD-10 style: line i of every ``<name>_<lang>.txt`` describes image i of ``test_image_names.txt``.
    image_id = the image's name in the list without its extension; item and caption id = ``<lang>/<image_id>``."""
    image_list, files = _xtd_layout(source)
    root = Path(source.images).resolve()
    names = [line.strip() for line in read_lines(image_list)]
    problems: list[str | None] = []
    ids: list[str] = []
    first: dict[str, int] = {}
    for i, name in enumerate(names):
        _, bad = name_value(name, f"the image name on line {i + 1} of {image_list.name}") if name else (None, None)
        image_id = _image_id(name) if name and not bad else f"line-{i + 1}"
        ids.append(image_id)
        if not name:
            problems.append(f"empty image name on line {i + 1} of {image_list.name}")
        elif bad:
            problems.append(bad)
        elif image_id in first:
            problems.append(f"duplicate image {name!r} (line {i + 1}; "
                            f"first on line {first[image_id] + 1} of {image_list.name})")
        else:
            first[image_id] = i
            problems.append(missing_file(root / name))
    for lang, path in files:
        lines = read_lines(path)
        if len(lines) != len(names):
            raise fail(source, f"caption file {str(path)!r} has {len(lines)} lines but the image list has {len(names)}")
        batch = Batch(source)
        for i, (line, image_id, problem) in enumerate(zip(lines, ids, problems)):
            item_id = f"{lang}/{image_id}"
            caption, bad = caption_value(line, f"the caption on line {i + 1} of {path.name}")
            if problem or caption is None:
                batch.reject(item_id, image_id, item_id,
                             problem or bad or f"empty caption (line {i + 1} of {path.name})")
            else:
                batch.add(item_id, image_id, str(root / names[i]), item_id, caption, lang=lang)
            if len(batch) >= CHUNK:
                yield batch.result()
                batch = Batch(source)
        yield batch.result()



def _image_id(name: str) -> str:
    """The image id of a name in the image list: the name without its extension ('a/b.jpg' -> 'a/b'; a name
    with no file part, '.' or 'a/', as it is)."""
    p = PurePosixPath(name)
    return p.with_suffix("").as_posix() if p.name and p.suffix else p.as_posix()


def fingerprint(source: DatasetSource) -> tuple:
    ann = source.annotations or ""
    folder = Path(ann).parent if (any(c in ann for c in "*?[") or os.path.isfile(ann)) else Path(ann)
    return stat_keys([str(folder), source.images] + sorted(str(p) for p in folder.glob("*.txt")))
