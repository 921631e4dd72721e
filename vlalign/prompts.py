"""Class prompts for zero-shot classification: each class label becomes captions through templates.

The prompts of a data set form a small data set of their own in the lake (``<dataset>.prompts-<digest>``,
text only), so the text encoders embed them through the same sharded, checksummed extraction as every
caption, and the classification cells read them like any other embeddings.
"""

from __future__ import annotations

import pyarrow as pa

from .digest import digest_json
from .readers import ITEM_SCHEMA


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
