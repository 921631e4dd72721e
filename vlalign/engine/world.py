"""A sweep spec against the world: the encoder catalog and the data sets.

:func:`check_spec` is every check a sweep makes before any work starts: the spec's structure and values
(vlalign.engine.spec), then the checks that need the catalog and the data (:func:`validate_against_world`).
`vlalign spec FILE` runs it and prints the run id; `vlalign sweep|run|resume` run it before Prefect and Dask
start and hand the checked spec to the sweep flow, which checks a spec it is given any other way (a deployment).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from vlalign.datasets.readers import EMOJI_DOMAINS, read_dataset
from vlalign.encoders import EncoderError, preflight
from vlalign.engine.layers import Layers, spec_layers
from vlalign.engine.spec import DatasetSpec, SpecError, SweepSpec, resolve_spec

Sizes = dict[str, dict[tuple[str, str], int]]  # {data set: {(domain, lang): number of pairs}}


@dataclass(frozen=True)
class CheckedSpec:
    """A spec that passed every check, and the number of pairs of each (data set, domain, lang) it uses."""

    spec: SweepSpec
    sizes: Sizes
    layers: dict[str, Layers] = field(default_factory=dict)  # vlalign.engine.layers.spec_layers; {}: outputs only


def check_spec(spec: str | Path | dict | None) -> CheckedSpec:
    """Every check a sweep makes before work starts, on a spec file, a spec mapping or (None) the default.
    Raises SpecError (a ValueError) naming the key and what is wrong."""
    sweep = resolve_spec(spec)
    sizes = validate_against_world(sweep)
    return CheckedSpec(sweep, sizes, spec_layers(sweep))


def study_parts(spec: SweepSpec, ds: DatasetSpec) -> tuple[set[str], set[str]]:
    """The domains and languages of data set ``ds`` that the studies need beyond its own selection."""
    domains: set[str] = set()
    if spec.cross_domain:
        for p in spec.cross_domain.pairs:
            if p.query_dataset in (None, ds.name):
                domains.add(p.query)
            if (p.base_dataset or p.query_dataset) in (None, ds.name) or p.base_dataset == ds.name:
                domains.add(p.base)
    if spec.concepts and spec.concepts.domains:
        domains |= set(spec.concepts.domains)
    elif spec.concepts and ds.format == "emoji":
        domains |= set(EMOJI_DOMAINS)
    langs = set(spec.cross_lingual.langs) if spec.cross_lingual else set()
    return domains, langs


def main_selections(spec: SweepSpec, sizes: Sizes) -> dict[str, list[tuple[str, str]]]:
    """{data set: [(domain, lang)]}: the selections of the main grid (the data sets' own domains and langs)."""
    out = {}
    for ds in spec.datasets:
        out[ds.name] = sorted((d, lang) for d, lang in sizes[ds.name]
                              if (not ds.domains or d in ds.domains) and (not ds.langs or lang in ds.langs))
    return out


def validate_against_world(spec: SweepSpec) -> Sizes:
    """Checks that need the catalog and the data: encoders exist (and have the right modality), data sets
    read, base + query fit in every selection, the studies' domains, languages and labels exist.
    Returns {dataset: {(domain, lang): number of pairs}} for the main grid and the studies' selections.

    Each data set's index is read once per process (vlalign.datasets.readers.read_dataset keeps the read while its
    files are unchanged): the ingest that follows reuses it. Image bytes are not read here."""
    try:
        preflight(list(spec.vision_encoders), modality="vision")
        preflight(list(spec.text_encoders), modality="text")
    except EncoderError as e:
        raise SpecError(f"vision_encoders/text_encoders: {e}") from None
    sizes: Sizes = {}
    labels: dict[str, dict[str, set]] = {}
    for i, ds in enumerate(spec.datasets):
        sizes[ds.name], labels[ds.name] = _read_selections(spec, i, ds)
    main = main_selections(spec, sizes)
    for ds in spec.datasets:
        _check_sizes(spec, ds, sizes[ds.name], main[ds.name])
        if spec.classification:
            for f in spec.classification.label_fields:
                found = labels[ds.name][f] - {None}
                if len(found) < 2:
                    raise SpecError(f"analyses.classification.label_fields: data set {ds.name!r} has "
                                    f"{len(found)} distinct values of {f!r} (need 2 classes)")
    if spec.cross_domain:
        for k, p in enumerate(spec.cross_domain.pairs):
            hits = [ds.name for ds in spec.datasets if p.query_dataset in (None, ds.name)
                    and any(d == p.query for d, _ in sizes[ds.name])
                    and any(d == p.base for d, _ in sizes.get(p.base_dataset or ds.name, {}))]
            if not hits:
                raise SpecError(f"analyses.cross_domain.pairs[{k}]: no data set has both domain {p.base!r} "
                                f"(base) and {p.query!r} (queries)")
    return sizes


def _read_selections(spec: SweepSpec, i: int, ds: DatasetSpec) -> tuple[dict[tuple[str, str], int], dict[str, set]]:
    """Read data set ``ds`` (``datasets[i]``) for its own selection and the studies': the number of pairs of
    every (domain, lang), and the label and sublabel values of its own selection."""
    extra_domains, extra_langs = study_parts(spec, ds)
    domains = sorted(set(ds.domains) | extra_domains) if ds.domains else None
    langs = sorted(set(ds.langs) | extra_langs) if ds.langs else None
    try:
        items = read_dataset(ds.source(), domains, langs).items
    except ValueError as e:
        raise SpecError(f"datasets[{i}]: {e}") from None
    counts: dict[tuple[str, str], set] = {}
    labels: dict[str, set] = {"label": set(), "sublabel": set()}
    columns = (items[c].to_pylist() for c in ("domain", "lang", "image_id", "label", "sublabel"))
    for dom, lang, img, lab, sub in zip(*columns):
        counts.setdefault((dom, lang), set()).add(img)
        if (not ds.domains or dom in ds.domains) and (not ds.langs or lang in ds.langs):
            labels["label"].add(lab)
            labels["sublabel"].add(sub)
    if not counts:
        raise SpecError(f"datasets[{i}] ({ds.name}): no items for domains={ds.domains} langs={ds.langs}")
    for lang in sorted(extra_langs):
        if not any(lg == lang for _, lg in counts):
            raise SpecError(f"analyses.cross_lingual.langs: data set {ds.name!r} has no captions in {lang!r} "
                            f"(it has {sorted({lg for _, lg in counts})})")
    return {k: len(v) for k, v in counts.items()}, labels


def _check_sizes(spec: SweepSpec, ds: DatasetSpec, sizes: dict[tuple[str, str], int],
                 main: list[tuple[str, str]]) -> None:
    """The largest base + query of the grid fits in every selection of ``ds``; the curves' in its main grid."""
    need = max(spec.base_size) + max(spec.query_size)
    if spec.has_matching or spec.cross_domain or spec.cross_lingual or spec.classification:
        for (dom, lang), n in sizes.items():
            if need > n:
                raise SpecError(
                    f"base_size + query_size: {max(spec.base_size)} + {max(spec.query_size)} = {need} is larger "
                    f"than data set {ds.name!r} (domain {dom}, lang {lang}: {n} pairs)"
                )
    if spec.curves:
        n = min(sizes[sel] for sel in main)
        for key, b, q in (("base_sizes", max(spec.curves.base_sizes), spec.query_size[0]),
                          ("query_sizes", spec.base_size[0], max(spec.curves.query_sizes))):
            if b + q > n:
                raise SpecError(f"analyses.curves.{key}: base {b} + query {q} = {b + q} is larger than data set "
                                f"{ds.name!r} ({n} pairs)")
