"""The embedded emoji set (format ``emoji``): 1906 emoji x 2 visual domains (google, twitter), CLDR names in 10
languages, shipped as parquet files in the package data (``vlalign/data/emoji``). Read in one piece.

image_id = ``<domain>/<emoji id>``, caption_id = ``<lang>/<emoji id>``, item_id = ``<domain>/<lang>/<emoji id>``;
label = the CLDR category, sublabel = the CLDR subcategory, image_bytes = the PNG.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Iterator

import pyarrow as pa
import pyarrow.parquet as pq

from vlalign.datalake.schemas import ITEM_SCHEMA
from vlalign.datasets.format_readers.base import DatasetError, DatasetSource, ReadResult, reject_row, stat_keys

DATA_DIR = Path(str(resources.files("vlalign.data")))
EMOJI_DIR = DATA_DIR / "emoji"
EMOJI_DOMAINS = ("google", "twitter")
EMOJI_LANGS = ("en", "de", "es", "fr", "it", "ja", "ko", "pl", "ru", "zh")
EMOJI_FILES = ("images", "captions", "emoji")  # EMOJI_DIR/<name>.parquet


def check_parts(domains: list[str] | None, langs: list[str] | None) -> None:
    """Raise DatasetError naming the domains and languages that the embedded set does not have."""
    bad = [d for d in (domains or ()) if d not in EMOJI_DOMAINS]
    if bad:
        raise DatasetError(f"emoji: unknown domain(s) {bad}; the embedded set has {list(EMOJI_DOMAINS)}")
    bad = [lang for lang in (langs or ()) if lang not in EMOJI_LANGS]
    if bad:
        raise DatasetError(f"emoji: unknown language(s) {bad}; the embedded set has {list(EMOJI_LANGS)}")


def read_emoji(domains: list[str] | None = None, langs: list[str] | None = None) -> ReadResult:
    """The embedded emoji set: 1906 emoji x 2 visual domains, CLDR names in 10 languages."""
    check_parts(domains, langs)
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
                    rejects.append(reject_row("read", item_id, f"{domain}/{eid}", f"{lang}/{eid}", "no image"))
                    continue
                if not cap or not cap.strip():
                    rejects.append(reject_row("read", item_id, f"{domain}/{eid}", f"{lang}/{eid}", "empty caption"))
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


def read(source: DatasetSource) -> Iterator[ReadResult]:
    """The whole set in one batch (a choice of domains and languages is a filter of the read: read_dataset)."""
    return iter([read_emoji()])


def check(source: DatasetSource) -> None:
    missing = [f for f in EMOJI_FILES if not (EMOJI_DIR / f"{f}.parquet").exists()]
    if missing:
        raise DatasetError(f"data set {source.name!r}: embedded files missing in {EMOJI_DIR}: {missing}")


def fingerprint(source: DatasetSource) -> tuple:
    return stat_keys([str(EMOJI_DIR / f"{f}.parquet") for f in EMOJI_FILES])
