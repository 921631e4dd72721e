"""Derived text data sets: class prompts for zero-shot classification, and concept aliases for concept alignment.

Class prompts: each class label becomes captions through templates.

The prompts of a data set form a small data set of their own in the lake (``<dataset>.prompts-<digest>``,
text only), so the text encoders embed them through the same sharded, checksummed extraction as every
caption, and the classification cells read them like any other embeddings.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa
import pyarrow.parquet as pq

from vlalign.datalake.digest import digest_json
from vlalign.datalake.schemas import ITEM_SCHEMA
from vlalign.datasets.format_readers.emoji import EMOJI_DIR


def label_text(label: str) -> str:
    """How a label reads inside a caption: '_' and '-' read as spaces ("animal-mammal" -> "animal mammal")."""
    return " ".join(label.replace("_", " ").replace("-", " ").split())


def prompt_items(classes: dict[str, list[str]], templates: tuple[str, ...] | list[str], lang: str = "en") -> pa.Table:
    """Canonical items, one per (label field, label, template): caption = template.format(label=label_text(label)),
    caption_id = '<field>:<template index>:<label>', label = the label, domain = the label field. No images."""
    cols: dict[str, list] = {f.name: [] for f in ITEM_SCHEMA}
    for field_, labels in sorted(classes.items()):
        for label in sorted(set(labels)):
            for k, template in enumerate(templates):
                cid = f"{field_}:{k}:{label}"
                row = {"item_id": cid, "image_id": None, "image": None, "image_bytes": None, "caption_id": cid,
                       "caption": template.format(label=label_text(label)), "lang": lang, "label": label,
                       "sublabel": None, "domain": field_}
                for name, v in row.items():
                    cols[name].append(v)
    return pa.table(cols, schema=ITEM_SCHEMA)


def prompts_dataset(dataset: str, classes: dict[str, list[str]], templates) -> str:
    """The lake name of a data set's prompts: one per (classes, templates), so two template sets coexist."""
    key = {"classes": {f: sorted(set(v)) for f, v in classes.items()}, "templates": list(templates)}
    return f"{dataset[:100]}.prompts-{digest_json(key)[:10]}"


# ---------------------------------------------------------------------------------------------- concepts
@dataclass(frozen=True)
class Dictionary:
    """A bimodal dictionary (Li et al.): concepts, the images of each, and the aliases (words) of each.

    ``members``: (concept, image_id, domain) rows; ``aliases``: (concept, alias, kind) rows, the concept's primary
    name first. An alias shared by several concepts is left out (it names a group, not a concept), so every
    alias names exactly one concept."""

    concepts: list[str]
    members: list[tuple[str, str, str]]
    aliases: list[tuple[str, str, str]]


def concept_dictionary(fmt: str, items: pa.Table, domains: list[str] | None) -> Dictionary:
    """The dictionary of a data set's items (columns image_id, domain, lang, caption, label).

    emoji: every emoji is a concept; its images are its drawings in ``domains``; its aliases are the English
    CLDR name, the short names and the keywords (data/emoji/aliases.parquet). Other formats: every label is a
    concept (ImageFolder classes), its images are the images with that label, its alias is the label read as
    text."""
    rows = items.select(["image_id", "domain", "lang", "caption", "label"]).to_pylist()
    rows = [r for r in rows if not domains or r["domain"] in domains]
    members: dict[tuple[str, str], str] = {}
    raw: list[tuple[str, str, str]] = []
    if fmt == "emoji":
        for r in rows:
            members[(r["image_id"], r["domain"])] = r["image_id"].split("/", 1)[1]
        have = set(members.values())
        path = EMOJI_DIR / "aliases.parquet"
        if path.exists():
            t = pq.read_table(path)
            raw = [(e, a, k) for e, lg, a, k in zip(*(t[c].to_pylist() for c in ("emoji_id", "lang", "alias", "kind")))
                   if lg == "en" and e in have]
        else:  # only the CLDR names
            raw = [(r["image_id"].split("/", 1)[1], r["caption"].lower(), "cldr") for r in rows if r["lang"] == "en"]
    else:
        for r in rows:
            if r["label"] is not None:
                members[(r["image_id"], r["domain"])] = r["label"]
        raw = [(lab, label_text(lab).lower(), "label") for lab in sorted(set(members.values()))]
    owners: dict[str, set] = {}
    for c, a, _ in raw:
        owners.setdefault(a, set()).add(c)
    seen: set[tuple[str, str]] = set()
    aliases = []
    for c, a, k in raw:
        if len(owners[a]) == 1 and (c, a) not in seen:
            seen.add((c, a))
            aliases.append((c, a, k))
    named = {c for c, _, _ in aliases}
    concepts = sorted(c for c in set(members.values()) if c in named)
    member_rows = sorted((c, img, d) for (img, d), c in members.items() if c in named)
    return Dictionary(concepts, member_rows, aliases)


def alias_items(d: Dictionary, lang: str = "en") -> pa.Table:
    """The aliases as canonical items (text only): caption_id '<concept>:<k>', label = concept, domain = kind."""
    cols: dict[str, list] = {f.name: [] for f in ITEM_SCHEMA}
    count: dict[str, int] = {}
    for c, a, k in d.aliases:
        n = count.get(c, 0)
        count[c] = n + 1
        cid = f"{c}:{n}"
        row = {"item_id": cid, "image_id": None, "image": None, "image_bytes": None, "caption_id": cid,
               "caption": a, "lang": lang, "label": c, "sublabel": None, "domain": k}
        for name, v in row.items():
            cols[name].append(v)
    return pa.table(cols, schema=ITEM_SCHEMA)


def members_table(d: Dictionary) -> pa.Table:
    return pa.table({"concept": [m[0] for m in d.members], "image_id": [m[1] for m in d.members],
                     "domain": [m[2] for m in d.members]})


def aliases_dataset(dataset: str, d: Dictionary) -> str:
    """The lake name of a data set's aliases (one per dictionary content)."""
    return f"{dataset[:100]}.aliases-{digest_json([d.concepts, d.aliases])[:10]}"
