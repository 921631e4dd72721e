"""The concept study's dictionary (Li et al.'s bimodal dictionary, vlalign.datasets.prompts): which visual domains
a concept averages, its members table in the lake (written once per content), and its aliases as a text-only
data set to embed. The sweep flow calls :func:`write_concept_dictionary` through a task."""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

from vlalign.datalake.digest import digest_json
from vlalign.datalake.store import Lake
from vlalign.datasets.prompts import alias_items, aliases_dataset, concept_dictionary, members_table
from vlalign.datasets.readers import EMOJI_DOMAINS

__all__ = ["ConceptDictionary", "concept_domains", "write_concept_dictionary"]


def concept_domains(sweep, ds_name: str, main: list) -> list[str]:
    """The visual domains whose images a concept averages: the spec's, else every emoji style, else the main ones."""
    ds = next(d for d in sweep.datasets if d.name == ds_name)
    if sweep.concepts.domains:
        return list(sweep.concepts.domains)
    return list(EMOJI_DOMAINS) if ds.format == "emoji" else sorted({d for d, _ in main})


@dataclass(frozen=True)
class ConceptDictionary:
    """A data set's dictionary as the sweep uses it: the members table in the lake (path, digest), the domains that
    hold images of some concept, and the aliases: the text-only data set's name and its items."""

    members_path: str
    members_digest: str
    present: list[str]
    aliases_dataset: str
    alias_items: pa.Table


def write_concept_dictionary(lake: Lake, dataset: str, fmt: str, domains: list[str]) -> ConceptDictionary:
    """Build the dictionary of the lake's items of ``dataset`` (format ``fmt``) over ``domains`` and write its members
    table (concepts/dataset=<name>/<digest>.parquet) unless the lake holds it already."""
    items = lake.read_table(lake.items_path(dataset), columns=["image_id", "domain", "lang", "caption", "label"])
    d = concept_dictionary(fmt, items, domains)
    members = members_table(d)
    mdigest = digest_json(members.to_pylist())
    mpath = lake.path("concepts", f"dataset={dataset}", f"{mdigest}.parquet")
    if (lake.read_metadata(mpath) or {}).get("digest") != mdigest:
        lake.write_table(mpath, members, {"digest": mdigest})
    present = sorted(set(members["domain"].to_pylist()))  # the domains that hold images of some concept
    return ConceptDictionary(mpath, mdigest, present, aliases_dataset(dataset, d), alias_items(d))
