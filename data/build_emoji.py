#!/usr/bin/env python3
"""Build the embedded default data set ``data/emoji`` (emoji images in two visual
domains plus multilingual CLDR captions, and English aliases per emoji: the concept
dictionary of ``vlalign.methods.concepts``).

Usage::

    python data/build_emoji.py [--out data/emoji] [--cache data/.cache]

Steps:

1. ``npm pack NAME@VERSION`` for each pinned source package into the cache folder
   (skipped when the tarball is already there); every tarball is checked against
   the pinned npm ``sha512`` integrity string before use.
2. The tarballs are extracted with :mod:`tarfile` (``data`` filter) into a
   temporary folder.
3. The tables are built by pure functions that take the extracted ``package/``
   folders (:func:`build_tables`), so they can be tested on a fake folder tree.
4. Each table is written as zstd-compressed Parquet, atomically (temporary file
   in the output folder, then :func:`os.replace`).

Rebuilding from the same package versions gives the same rows, in the same order.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

# --------------------------------------------------------------------------------------
# Pinned sources
# --------------------------------------------------------------------------------------

#: (npm package name, version, npm tarball integrity)
SOURCES: tuple[tuple[str, str, str], ...] = (
    (
        "emoji-datasource-google",
        "16.0.0",
        "sha512-ZRexfzs7MVoLnmzZmNsO4TKhnAJp5D++Vm6PpUpH/jEQQlemp3l88CjZ+DoZ2faM9R4QxZkOPJCoT8DlPhfQ3A==",
    ),
    (
        "emoji-datasource-twitter",
        "16.0.0",
        "sha512-7F+uCuHH+7Qnrc15P5tnbvKkg9E6tlzi4MnT2uW1RlN4pLYTza6cP/dstIfSDMtpjFLWuZewWg8jBbuL2eyELQ==",
    ),
    (
        "emojibase-data",
        "17.0.0",
        "sha512-Yvgb5AWoHViHV/gq1qr5ZAarcBip+B27/ZLRsUJkbgAEaLlZ/fof9g882LTpmEpyhBNEC0m2SEmItljHsTygjA==",
    ),
)

#: visual domain -> emoji-datasource package providing its images
DOMAIN_PACKAGES: dict[str, str] = {
    "google": "emoji-datasource-google",
    "twitter": "emoji-datasource-twitter",
}
DOMAINS: tuple[str, ...] = tuple(sorted(DOMAIN_PACKAGES))

#: caption languages (ISO 639-1); English first is the required one
LANGS: tuple[str, ...] = ("en", "de", "es", "fr", "it", "ja", "ko", "pl", "ru", "zh")

IMAGE_SIZE = 64
EXCLUDED_CATEGORIES = frozenset({"Component"})
EXPECTED_EMOJI = 1906

DATASET_NAME = "emoji"
TABLE_NAMES = ("images", "captions", "emoji", "aliases")

#: alias kinds of ``aliases.parquet``, in priority order (a duplicate alias keeps the first kind)
ALIAS_KINDS: tuple[str, ...] = ("cldr", "short_name", "keyword")


def sources_json(sources=SOURCES) -> str:
    """The ``vlalign.sources`` metadata value: a JSON list of ``package@version``."""
    return json.dumps([f"{name}@{version}" for name, version, _ in sources])


# --------------------------------------------------------------------------------------
# Pure table building (works on extracted ``package/`` folders)
# --------------------------------------------------------------------------------------


def strip_fe0f(hexcode: str) -> str:
    """Canonical code-point key: upper case, ``-``-joined, without FE0F (VS16)."""
    return "-".join(p for p in hexcode.upper().split("-") if p and p != "FE0F")


def load_datasource(pkg_dir: Path) -> list[dict]:
    with open(Path(pkg_dir) / "emoji.json", encoding="utf-8") as f:
        return json.load(f)


def image_path(pkg_dir: Path, domain: str, record: dict) -> Path:
    return Path(pkg_dir) / "img" / domain / str(IMAGE_SIZE) / record["image"]


def select_emoji(datasource_dirs: dict[str, Path]) -> list[dict]:
    """Base emoji (top-level entries only, i.e. no ``skin_variations``), not in an
    excluded category, with an image in *every* domain (``has_img_<domain>`` flag set
    in that domain's package and the 64 px PNG file present).

    Metadata (name, category, ...) comes from the first domain's ``emoji.json``;
    the other domains' ``emoji.json`` must list the same emoji.
    Returns records sorted by ``sort_order``.
    """
    domains = sorted(datasource_dirs)
    per_domain = {d: {r["unified"]: r for r in load_datasource(datasource_dirs[d])} for d in domains}
    base = per_domain[domains[0]]
    selected = []
    for unified, rec in base.items():
        if rec.get("category") in EXCLUDED_CATEGORIES:
            continue
        ok = True
        for d in domains:
            r = per_domain[d].get(unified)
            if r is None or not r.get(f"has_img_{d}") or not image_path(datasource_dirs[d], d, r).is_file():
                ok = False
                break
        if ok:
            selected.append(rec)
    selected.sort(key=lambda r: (int(r["sort_order"]), r["unified"]))
    ids = [r["unified"].lower() for r in selected]
    if len(set(ids)) != len(ids):
        raise ValueError("duplicate emoji ids in selection")
    return selected


def load_labels(emojibase_dir: Path, lang: str) -> dict[str, str]:
    """emojibase ``<lang>/data.json``: FE0F-stripped hexcode -> CLDR label (top-level
    entries only; skin tones are nested under ``skins`` and ignored)."""
    path = Path(emojibase_dir) / lang / "data.json"
    if not path.is_file():
        return {}
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    labels: dict[str, str] = {}
    for entry in data:
        label = (entry.get("label") or "").strip()
        if not label:
            continue
        key = strip_fe0f(entry["hexcode"])
        # emojibase hexcodes mix fully-qualified (with FE0F) and unqualified forms;
        # stripped keys are unique in practice, keep the first if not.
        labels.setdefault(key, label)
    return labels


def load_tags(emojibase_dir: Path, lang: str = "en") -> dict[str, list[str]]:
    """emojibase ``<lang>/data.json``: FE0F-stripped hexcode -> ``tags`` (keyword list; top-level entries
    only, the first entry wins for a repeated key, a missing ``tags`` field gives no entry)."""
    path = Path(emojibase_dir) / lang / "data.json"
    if not path.is_file():
        return {}
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    tags: dict[str, list[str]] = {}
    for entry in data:
        key = strip_fe0f(entry["hexcode"])
        if key not in tags and entry.get("tags"):
            tags[key] = [str(t) for t in entry["tags"]]
    return tags


def normalise_alias(text: str) -> str:
    """Alias text as stored: lower case, runs of white space collapsed to one space, stripped."""
    return " ".join(str(text).lower().split())


def build_aliases(selected: list[dict], en_captions: dict[str, str], emojibase_dir: Path) -> list[dict]:
    """English aliases of each selected emoji, one row per (emoji_id, lang='en', alias, kind):

    * ``cldr``: the English caption (as in ``captions.parquet``);
    * ``short_name``: emoji-datasource ``short_names`` in their order, ``_`` read as a space;
    * ``keyword``: emojibase-data ``en`` ``tags`` in their order.

    Aliases are normalised with :func:`normalise_alias`; empty ones are dropped and a repeated alias of the
    same emoji keeps only its first row (kinds in the order above). Rows are sorted by the emoji's
    ``sort_order`` (the order of ``selected``), then kind, then position in the source list.
    """
    tags = load_tags(emojibase_dir, "en")
    rows = []
    for r in selected:
        eid = r["unified"].lower()
        candidates = [("cldr", en_captions[eid])]
        candidates += [("short_name", s.replace("_", " ")) for s in r.get("short_names") or []]
        candidates += [("keyword", t) for t in tags.get(strip_fe0f(r["unified"]), [])]
        seen: set[str] = set()
        for kind, text in candidates:
            alias = normalise_alias(text)
            if alias and alias not in seen:
                seen.add(alias)
                rows.append({"emoji_id": eid, "lang": "en", "alias": alias, "kind": kind})
    return rows


@dataclass
class BuildResult:
    images: list[dict]
    captions: list[dict]
    emoji: list[dict]
    stats: dict = field(default_factory=dict)
    aliases: list[dict] = field(default_factory=list)


def build_tables(
    datasource_dirs: dict[str, Path],
    emojibase_dir: Path,
    langs: tuple[str, ...] = LANGS,
) -> BuildResult:
    """Build the four tables as lists of row dicts, sorted deterministically.

    * ``emoji``: emoji_id, name, category, subcategory, sort_order — by sort_order.
    * ``images``: emoji_id, domain, png (original file bytes) — by (domain, sort_order).
    * ``captions``: emoji_id, lang, caption — by (lang, sort_order). English is the
      emojibase label, falling back to the datasource ``name`` lower-cased; other
      languages get a row only where emojibase has a label.
    * ``aliases``: emoji_id, lang ('en'), alias, kind — see :func:`build_aliases`.
    """
    selected = select_emoji(datasource_dirs)
    domains = sorted(datasource_dirs)

    emoji_rows = [
        {
            "emoji_id": r["unified"].lower(),
            "name": r["name"],
            "category": r["category"],
            "subcategory": r["subcategory"],
            "sort_order": int(r["sort_order"]),
        }
        for r in selected
    ]

    image_rows = []
    for d in domains:
        for r in selected:
            image_rows.append(
                {
                    "emoji_id": r["unified"].lower(),
                    "domain": d,
                    "png": image_path(datasource_dirs[d], d, r).read_bytes(),
                }
            )

    caption_rows = []
    per_lang: dict[str, int] = {}
    en_fallbacks: list[str] = []
    en_captions: dict[str, str] = {}
    for lang in sorted(set(langs) | {"en"}):
        labels = load_labels(emojibase_dir, lang)
        n = 0
        for r in selected:
            label = labels.get(strip_fe0f(r["unified"]))
            if label is None and lang == "en":
                label = r["name"].lower()
                en_fallbacks.append(r["unified"].lower())
            if label is None:
                continue
            if lang == "en":
                en_captions[r["unified"].lower()] = label
                if "en" not in langs:
                    continue
            caption_rows.append({"emoji_id": r["unified"].lower(), "lang": lang, "caption": label})
            n += 1
        if lang in langs:
            per_lang[lang] = n
    if "en" not in langs:
        en_fallbacks = []
    alias_rows = build_aliases(selected, en_captions, emojibase_dir)
    aliases_per_kind = {k: sum(a["kind"] == k for a in alias_rows) for k in ALIAS_KINDS}

    stats = {
        "n_emoji": len(emoji_rows),
        "n_images": len(image_rows),
        "n_captions": len(caption_rows),
        "captions_per_lang": per_lang,
        "en_fallbacks": en_fallbacks,
        "domains": list(domains),
        "n_aliases": len(alias_rows),
        "aliases_per_kind": aliases_per_kind,
    }
    return BuildResult(images=image_rows, captions=caption_rows, emoji=emoji_rows, stats=stats, aliases=alias_rows)


# --------------------------------------------------------------------------------------
# Arrow / Parquet
# --------------------------------------------------------------------------------------


def to_arrow(result: BuildResult, sources: str | None = None) -> dict:
    """Row dicts -> ``{"images": pa.Table, "captions": ..., "emoji": ..., "aliases": ...}`` with
    fixed schemas and the ``vlalign.*`` schema metadata."""
    import pyarrow as pa

    meta = {"vlalign.dataset": DATASET_NAME, "vlalign.sources": sources if sources is not None else sources_json()}
    schemas = {
        "images": pa.schema(
            [("emoji_id", pa.string()), ("domain", pa.string()), ("png", pa.binary())], metadata=meta
        ),
        "captions": pa.schema(
            [("emoji_id", pa.string()), ("lang", pa.string()), ("caption", pa.string())], metadata=meta
        ),
        "emoji": pa.schema(
            [
                ("emoji_id", pa.string()),
                ("name", pa.string()),
                ("category", pa.string()),
                ("subcategory", pa.string()),
                ("sort_order", pa.int32()),
            ],
            metadata=meta,
        ),
        "aliases": pa.schema(
            [("emoji_id", pa.string()), ("lang", pa.string()), ("alias", pa.string()), ("kind", pa.string())],
            metadata=meta,
        ),
    }
    rows = {"images": result.images, "captions": result.captions, "emoji": result.emoji,
            "aliases": result.aliases}
    return {name: pa.Table.from_pylist(rows[name], schema=schemas[name]) for name in TABLE_NAMES}


def write_parquet_atomic(table, path: Path) -> None:
    """Write ``table`` to ``path`` with the lake's one atomic writer (temporary, fsync, rename)."""
    import io

    import pyarrow.parquet as pq

    from vlalign.datalake.store import atomic_write_bytes

    buf = io.BytesIO()
    stats_cols = [c for c in table.column_names if c != "png"]  # no min/max of PNG blobs
    pq.write_table(table, buf, compression="zstd", compression_level=9, write_statistics=stats_cols,
                   row_group_size=1 << 20)
    atomic_write_bytes(str(path), buf.getvalue(), "build")


# --------------------------------------------------------------------------------------
# Fetching (npm) and extraction
# --------------------------------------------------------------------------------------


def sri_sha512(path: Path) -> str:
    h = hashlib.sha512()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return "sha512-" + base64.b64encode(h.digest()).decode("ascii")


def tarball_name(name: str, version: str) -> str:
    # npm pack naming; scoped packages (@a/b) become a-b-<version>.tgz
    return f"{name.lstrip('@').replace('/', '-')}-{version}.tgz"


def fetch(name: str, version: str, integrity: str, cache: Path) -> Path:
    """``npm pack name@version`` into ``cache`` unless present; verify integrity."""
    cache.mkdir(parents=True, exist_ok=True)
    tgz = cache / tarball_name(name, version)
    if tgz.is_file() and sri_sha512(tgz) != integrity:
        print(f"cached {tgz.name} has the wrong checksum; fetching again", file=sys.stderr)
        tgz.unlink()
    if not tgz.is_file():
        print(f"npm pack {name}@{version}", file=sys.stderr)
        subprocess.run(
            ["npm", "pack", f"{name}@{version}", "--pack-destination", str(cache), "--silent"],
            check=True,
            stdout=subprocess.DEVNULL,
        )
    got = sri_sha512(tgz)
    if got != integrity:
        raise RuntimeError(f"{tgz}: integrity mismatch\n  expected {integrity}\n  got      {got}")
    return tgz


def extract(tgz: Path, dest: Path) -> Path:
    """Extract an npm tarball into ``dest``; returns the ``package/`` folder."""
    dest.mkdir(parents=True, exist_ok=True)
    with tarfile.open(tgz, "r:gz") as tf:
        tf.extractall(dest, filter="data")
    pkg = dest / "package"
    if not pkg.is_dir():
        raise RuntimeError(f"{tgz}: no package/ folder")
    return pkg


# --------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------


def build(out: Path, cache: Path, expected: int | None = EXPECTED_EMOJI) -> dict:
    tarballs = {name: fetch(name, version, integ, cache) for name, version, integ in SOURCES}
    with tempfile.TemporaryDirectory(prefix="emoji-extract-") as tmp:
        tmp = Path(tmp)
        pkgs = {name: extract(tgz, tmp / name) for name, tgz in tarballs.items()}
        result = build_tables(
            {d: pkgs[p] for d, p in DOMAIN_PACKAGES.items()},
            pkgs["emojibase-data"],
        )
    st = result.stats
    if expected is not None and st["n_emoji"] != expected:
        raise RuntimeError(f"selected {st['n_emoji']} emoji, expected {expected}")
    if st["n_images"] != st["n_emoji"] * len(DOMAINS):
        raise RuntimeError("not every emoji has an image in every domain")
    tables = to_arrow(result)
    for name, table in tables.items():
        write_parquet_atomic(table, out / f"{name}.parquet")
    sizes = {name: (out / f"{name}.parquet").stat().st_size for name in TABLE_NAMES}
    return {**st, "n_en_fallbacks": len(st["en_fallbacks"]), "bytes": sizes, "total_bytes": sum(sizes.values())}


def main(argv: list[str] | None = None) -> int:
    here = Path(__file__).resolve().parent
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=here / "emoji", help="output folder (default: data/emoji)")
    ap.add_argument("--cache", type=Path, default=here / ".cache", help="npm tarball cache (default: data/.cache)")
    ap.add_argument("--no-check-count", action="store_true", help=f"do not require exactly {EXPECTED_EMOJI} emoji")
    args = ap.parse_args(argv)
    summary = build(args.out, args.cache, None if args.no_check_count else EXPECTED_EMOJI)
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
