"""The data set formats: what each reads, which keys it needs, and the rules shared by the command line
(``vlalign extract --format F --images PATH [--annotations FILE] [--split S] [--lang L]``) and the sweep
spec's ``datasets`` entries (the same keys). No heavy imports: the spec's models use this module.

This is the one list of format names: each format's reader is ``vlalign/datasets/format_readers/<format>.py``, and
the registry :data:`vlalign.datasets.readers.READERS` maps every name here to it (checked when it is imported). Every
reader produces the canonical items of ``vlalign.datalake.schemas.ITEM_SCHEMA``.
"""

from __future__ import annotations

from dataclasses import dataclass

from vlalign.datalake.names import is_safe_name

KARPATHY_SPLITS = ("train", "val", "test", "restval")


@dataclass(frozen=True)
class Format:
    name: str
    summary: str  # one line for `vlalign datasets`
    usage: str  # the command line's shape
    needs: tuple[str, ...] = ()  # required keys among 'images', 'annotations'
    takes: tuple[str, ...] = ()  # optional keys among 'annotations', 'split', 'lang'
    whole: bool = False  # read in one piece (one JSON; the embedded set): read before work starts, then reused
    annotations: str = ""  # what 'annotations' is, for messages
    images: str = ""  # what 'images' is, for messages


FORMATS: dict[str, Format] = {f.name: f for f in (
    Format("emoji", "the embedded emoji set: 1906 emoji x 2 styles, CLDR names in 10 languages", "--dataset emoji",
           whole=True),
    Format("coco", "COCO-captions JSON {images: [{id, file_name}], annotations: [{id, image_id, caption}]} + image folder",
           "--annotations captions.json --images DIR", needs=("annotations", "images"), takes=("lang",), whole=True,
           annotations="the COCO-captions JSON file", images="the image folder"),
    Format("karpathy", "Karpathy-split JSON (dataset_flickr30k.json, dataset_coco.json) + image folder; split: "
           + "|".join(KARPATHY_SPLITS) + " (default all)",
           "--annotations dataset_flickr30k.json --images DIR [--split test]", needs=("annotations", "images"),
           takes=("split", "lang"), whole=True, annotations="the Karpathy-split JSON file",
           images="the image folder (images/<filepath>/<filename> or images/<filename>)"),
    Format("xtd", "XTD-10 style: one caption file per language (*_<lang>.txt, line i = image i of "
           "test_image_names.txt) + image folder", "--annotations DIR|'DIR/test_1kcaptions_*.txt' --images DIR",
           needs=("annotations", "images"), annotations="the folder (or a pattern) of the caption files",
           images="the image folder"),
    Format("imagefolder", "classification: one folder of images per class; caption = class name ('_' read as a "
           "space), label = class name", "--images DIR [--annotations classes.txt|classes.json]", needs=("images",),
           takes=("annotations", "lang"), annotations="class names: a text file (one a line, in sorted folder "
           "order) or a JSON {folder: name}", images="the folder of class folders"),
    Format("webdataset", "tar shards of key.jpg|png|webp + key.txt or key.json (caption/text); images stay in the "
           "tars", "--images 'shards/data-{000..009}.tar'|DIR|FILE.tar", needs=("images",), takes=("lang",),
           images="tar shards: a brace pattern, a folder of .tar files, or one .tar"),
    Format("img2dataset", "img2dataset output: NNNNN.parquet (key, caption, status, error_message) beside NNNNN.tar "
           "or NNNNN/; failed downloads are rejects", "--images DIR", needs=("images",), takes=("lang",),
           images="the img2dataset output folder"),
    Format("hf-imagefolder", "Hugging Face imagefolder: metadata.jsonl|csv (file_name + text|caption|first string "
           "column), at the top or in split folders", "--images DIR [--split train]", needs=("images",),
           takes=("split", "lang"), images="the folder holding metadata.jsonl or metadata.csv (or split folders)"),
)}

FORMAT_NAMES = tuple(FORMATS)


def default_format(name: str) -> str:
    """The format of a data set whose format is not given: emoji for the data set named emoji, else coco."""
    return "emoji" if name == "emoji" else "coco"


def key_problems(fmt: str, annotations: str | None, images: str | None, split: str | None,
                 lang: str | None) -> list[str]:
    """What is wrong with a data set's keys for format ``fmt`` (no I/O): a required key missing, a key the
    format does not read, a split it does not have. One message a problem; the keys as the spec spells them."""
    f = FORMATS.get(fmt)
    if f is None:
        return [f"unknown format {fmt!r}; expected one of {list(FORMAT_NAMES)}"]
    given = {"annotations": annotations, "images": images, "split": split, "lang": lang}
    out = []
    missing = [k for k in f.needs if not given[k]]
    if missing:
        what = " and ".join(f"{k!r} ({getattr(f, k)})" for k in missing)
        out.append(f"format {fmt!r} needs {what}")
    unused = [k for k in ("annotations", "images", "split", "lang") if given[k] is not None
              and k not in f.needs and k not in f.takes]
    for k in unused:
        why = {"lang": "the languages come from its captions; choose some with 'langs'",
               "split": "it has no splits", "annotations": "it reads no annotations file",
               "images": "its images are embedded"}[k]
        out.append(f"format {fmt!r} takes no {k!r}: {why}")
    for k in ("annotations", "images"):
        if given[k] and "\x00" in given[k]:
            out.append(f"{k!r} {given[k]!r}: a path cannot hold a NUL character")
    if lang is not None and "lang" in f.takes and not is_safe_name(lang):
        out.append(f"lang {lang!r}: not a safe name (it becomes a folder name in the lake); use letters, digits, "
                   "'.', '_' or '-'")
    if split is not None and "split" in f.takes:
        parts = [s.strip() for s in split.split(",")]
        if fmt == "karpathy":
            bad = [s for s in parts if s not in KARPATHY_SPLITS]
            if bad:
                out.append(f"split {split!r}: unknown split(s) {bad}; karpathy has {list(KARPATHY_SPLITS)} "
                           "(one, or several separated by commas)")
        elif not all(parts):
            out.append(f"split {split!r}: an empty split name")
    return out
