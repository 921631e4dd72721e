"""ImageFolder (format ``imagefolder``, classification): one folder of images per class; the class name is the
caption of its images ('_' read as a space) and their label. Class names may come from a text file (one a line,
in sorted folder order) or a JSON ``{folder: name}``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

from vlalign.datasets.format_readers.base import (
    Batch,
    DatasetSource,
    ReadResult,
    fail,
    is_image_name,
    load_json,
    need_dir,
    need_file,
    read_lines,
    stat_keys,
)
from vlalign.datasets.format_readers.fields import caption_value, kind


def _class_names(source: DatasetSource) -> list[tuple[str, str]]:
    """[(class folder, class name)] in sorted folder order."""
    root = need_dir(source, source.images, "image folder")
    folders = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not folders:
        raise fail(source, f"no class folders in {source.images!r} (expected one folder of images per class)")
    if not source.annotations:
        return [(f, f) for f in folders]
    path = need_file(source, source.annotations, "class names file")
    if path.suffix.lower() == ".json":
        names = load_json(source, str(path), "the class names JSON")
        if not isinstance(names, dict):
            raise fail(source, f"{str(path)!r}: expected a JSON object {{folder: class name}}, got {kind(names)}")
        wrong = next((k for k, v in names.items() if not isinstance(v, str)), None)
        if wrong is not None:
            raise fail(source, f"{str(path)!r}: the class name of {wrong!r} is {kind(names[wrong])}, "
                               "not a string (expected a JSON object {folder: class name})")
        missing = [f for f in folders if f not in names]
        if missing:
            raise fail(source, f"{str(path)!r} names no class for folder(s) {missing[:10]}"
                               + (f" and {len(missing) - 10} more" if len(missing) > 10 else ""))
        return [(f, names[f]) for f in folders]
    lines = read_lines(path)
    if len(lines) != len(folders):
        raise fail(source, f"{str(path)!r} has {len(lines)} class names but {source.images!r} has {len(folders)} "
                           "class folders (one name a line, in sorted folder order)")
    return [(f, n.strip()) for f, n in zip(folders, lines)]


def read(source: DatasetSource) -> Iterator[ReadResult]:
    """ImageFolder (classification): ``images/<class folder>/**/<image>``. Every image of a class shares one
    caption (the class name, '_' read as a space; caption_id = the folder) and has label = the class name;
    image_id = item_id = the image's path under the root. Files without an image extension are not items."""
    root = Path(source.images).resolve()
    for folder, name in _class_names(source):
        batch = Batch(source)
        caption, bad = caption_value(name.replace("_", " "), f"the class name of folder {folder!r}")
        for dirpath, dirnames, files in os.walk(root / folder):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for f in sorted(files):
                if not is_image_name(f):
                    continue
                path = Path(dirpath) / f
                image_id = path.relative_to(root).as_posix()
                if caption is None:
                    batch.reject(image_id, image_id, folder,
                                 bad or f"empty caption (the class name of folder {folder!r} is empty)")
                else:
                    batch.add(image_id, image_id, str(path), folder, caption, label=name)
        yield batch.result()



def check(source: DatasetSource) -> None:
    _class_names(source)


def fingerprint(source: DatasetSource) -> tuple:
    """The stats of the root, the class names file and the class folders (a folder's stat changes when an image
    is added or removed)."""
    paths = [source.images] + ([source.annotations] if source.annotations else [])
    if source.images and os.path.isdir(source.images):
        paths += sorted(e.path for e in os.scandir(source.images) if e.is_dir())
    return stat_keys(paths)
