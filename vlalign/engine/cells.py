"""Analysis cells: the unit of work, of resume and of sharing between runs.

A cell is one computation with everything it depends on spelled out:

* a CKA cell: one (vision, text) encoder pair, one kernel, on one (data set, domain, language);
* a matching cell: one (vision, text) pair at one point of the settings grid, with every matching,
  retrieval and baseline method of the sweep.

A cell's identity is what it computes from and nothing else: its settings, the digest of the pairs table
it reads, the digests of the embeddings it reads (shard identities and content checksums) and the
version of the engine code that computes it (:func:`engine_version`). It never names a run. The cell's
result files are stored once, by that identity (``results/<table>/cell=<id>.parquet``), and every run that
needs the cell lists its id in the run's record. So a nightly rerun computes nothing, a spec with one more
encoder computes only the new pairs, and an edit to the math modules recomputes exactly the cells whose
kind uses them.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any, ClassVar

from vlalign.datalake.digest import digest_json
from vlalign.datalake.store import Lake
from vlalign.encoders import get_encoder
from vlalign.encoders.layers import OUTPUT
from vlalign.engine.extract import ShardSpec
from vlalign.engine.spec import (
    PROTOCOLS,
    ClassificationSpec,
    ConceptsSpec,
    CrossDomainSpec,
    CrossLingualSpec,
    CurvesSpec,
    Setting,
    SweepSpec,
)
from vlalign.engine.versions import ENGINE_LINEAGE, ENGINE_MODULES, code_fingerprint, engine_version  # noqa: F401
from vlalign.methods.kernels import KERNELS


@dataclass(frozen=True)
class Embeddings:
    """An encoder's embeddings of one part (a domain or a language): exactly the planned shards."""

    name: str  # catalog name, as it appears in result rows
    lake_name: str  # with pooling, as in lake paths
    part: str
    shards: tuple[ShardSpec, ...] = field(repr=False)
    digest: str = ""  # digest of the shards' identities and content checksums
    layer: int = OUTPUT  # an inner layer's index, or -1: the encoder's output (identity as in the first lakes)
    layer_name: str = "output"

    @classmethod
    def of(cls, lake: Lake, name: str, lake_name: str, part: str, shards: list[ShardSpec], layer: int = OUTPUT,
           layer_name: str = "output") -> "Embeddings":
        """The reference to ``shards`` (already extracted), with a digest of what they hold."""
        shards = sorted(shards, key=lambda s: s.start)
        checksums = [(lake.read_metadata(s.path) or {}).get("checksum") for s in shards]
        digest = digest_json([[s.identity, c] for s, c in zip(shards, checksums)])
        return cls(name, lake_name, part, tuple(shards), digest, layer, layer_name)

    @property
    def identity(self) -> dict:
        out = {"name": self.name, "lake_name": self.lake_name, "part": self.part, "digest": self.digest}
        return out if self.layer == OUTPUT else {**out, "layer": self.layer, "layer_name": self.layer_name}


@dataclass(frozen=True)
class Cell:
    """What every cell shares: where it reads (not part of its identity) and the data it reads (part of it)."""

    lake: Lake  # where it reads and writes (not part of its identity)
    dataset: str
    domain: str
    lang: str
    pairs_path: str
    pairs_digest: str
    vision: Embeddings
    text: Embeddings

    kind: ClassVar[str] = "cell"
    tables: ClassVar[tuple[str, ...]] = ()

    def settings(self) -> dict[str, Any]:
        raise NotImplementedError

    @property
    def identity(self) -> dict:
        return {
            "kind": self.kind, "engine": engine_version(self.kind), "dataset": self.dataset, "domain": self.domain,
            "lang": self.lang, "pairs": self.pairs_digest, "vision": self.vision.identity, "text": self.text.identity,
            "settings": self.settings(),
        }

    @functools.cached_property
    def cell_id(self) -> str:
        return digest_json(self.identity)

    @property
    def label(self) -> str:
        return f"{self.kind} {self.dataset}/{self.domain}/{self.lang} {self.vision.name} x {self.text.name}"

    def paths(self) -> dict[str, str]:
        return {t: self.lake.result_path(t, self.cell_id) for t in self.tables}


@dataclass(frozen=True)
class CKACell(Cell):
    kernel: str = "linear"
    debiased: bool = False
    shuffled: bool = True
    bootstrap: int = 0
    seed: int = 0
    permutations: int = 0  # K of the permutation calibration (0: none)
    alpha: float = 0.05

    # the layers measured, each vision with each text layer (engine.alignment); empty: the outputs, as before
    vision_layers: tuple[Embeddings, ...] = ()
    text_layers: tuple[Embeddings, ...] = ()

    kind: ClassVar[str] = "cka"
    tables: ClassVar[tuple[str, ...]] = ("cka",)

    def layers(self) -> tuple[tuple[Embeddings, ...], tuple[Embeddings, ...]]:
        return self.vision_layers or (self.vision,), self.text_layers or (self.text,)

    @property
    def identity(self) -> dict:
        out = super().identity
        if self.vision_layers or self.text_layers:
            vision, text = self.layers()
            out["layers"] = {"vision": [e.identity for e in vision], "text": [e.identity for e in text]}
        return out

    def settings(self) -> dict[str, Any]:
        out = {"kernel": self.kernel, "debiased": self.debiased, "shuffled": self.shuffled,
               "bootstrap": self.bootstrap, "seed": self.seed}
        if self.permutations:
            out.update(permutations=self.permutations, alpha=self.alpha)
        return out


@dataclass(frozen=True)
class Protocol:
    """The named settings that a protocol preset (``default`` or ``paper``) chooses; see vlalign.engine.spec.PROTOCOLS."""

    qap_restarts: int = 20
    qap_kernel: str = "linear"
    qap_tol: float = 0.03
    local_cka_kernel: str = "linear"
    stretch_scope: str = "selected"
    kmeans_metric: str = "euclidean"
    linreg_intercept: bool = True
    retrieval_ties: str = "against"

    @classmethod
    def of(cls, spec: SweepSpec) -> "Protocol":
        return cls(spec.qap_restarts, spec.qap_kernel, spec.qap_tol, spec.local_cka_kernel, spec.stretch_scope,
                   spec.kmeans_metric, spec.linreg_intercept, spec.retrieval_ties)

    def settings(self) -> dict[str, Any]:
        return dict(self.__dict__)

    @property
    def name(self) -> str:
        """'default' or 'paper' if the preset's settings are exactly these, else 'custom' (a result column)."""
        mine = self.settings()
        for name, preset in PROTOCOLS.items():
            if all(mine[k] == v for k, v in preset.items()):
                return name
        return "custom"


@dataclass(frozen=True)
class BaseSource:
    """Where the base pairs come from when not from the queries' own selection (cross-domain matching)."""

    dataset: str
    domain: str
    lang: str
    pairs_path: str
    pairs_digest: str
    vision: Embeddings
    text: Embeddings

    @property
    def identity(self) -> dict:
        return {"dataset": self.dataset, "domain": self.domain, "lang": self.lang, "pairs": self.pairs_digest,
                "vision": self.vision.identity, "text": self.text.identity}


@dataclass(frozen=True)
class MatchCell(Cell):
    """Matching, retrieval and baselines at one grid point. ``base``: the base pairs' source if it is not the
    queries' own selection (cross-domain); ``skip``: why the cell is not computed (its rows say so)."""

    base_size: int = 0
    query_size: int = 0
    base_selection: str = "random"
    stretch: bool = False
    seed: int = 0
    matching: tuple[str, ...] = ()
    retrieval: tuple[str, ...] = ()
    baselines: tuple[str, ...] = ()
    protocol: Protocol = Protocol()
    base: BaseSource | None = None
    skip: str | None = None

    kind: ClassVar[str] = "matching"
    tables: ClassVar[tuple[str, ...]] = ("matching", "retrieval")

    @property
    def base_domain(self) -> str:
        return self.base.domain if self.base else self.domain

    @property
    def identity(self) -> dict:
        out = super().identity
        if self.base is not None:
            out["base"] = self.base.identity
        if self.skip is not None:
            out["skip"] = self.skip
        return out

    @property
    def label(self) -> str:
        where = f"{self.base_domain}->{self.domain}" if self.base else self.domain
        return f"{self.kind} {self.dataset}/{where}/{self.lang} {self.vision.name} x {self.text.name} seed {self.seed}"

    def settings(self) -> dict[str, Any]:
        return {"base_size": self.base_size, "query_size": self.query_size, "base_selection": self.base_selection,
                "stretch": self.stretch, "seed": self.seed, "matching": list(self.matching),
                "retrieval": list(self.retrieval), "baselines": list(self.baselines), **self.protocol.settings()}


@dataclass(frozen=True)
class ClassifyCell(Cell):
    """Zero-shot classification: the query images of the cell's selection against one caption per class
    (``prompts``: the text encoder's embeddings of the templates, from the prompts data set)."""

    label_field: str = "label"
    template_set: str = "default"
    templates: tuple[str, ...] = ()
    methods: tuple[str, ...] = ()
    base_size: int = 0
    query_size: int = 0
    base_selection: str = "random"
    stretch: bool = False
    seed: int = 0
    protocol: Protocol = Protocol()
    prompts: Embeddings | None = None
    prompts_path: str = ""  # items of the prompts data set (caption_id -> label field and label)
    prompts_digest: str = ""

    kind: ClassVar[str] = "classification"
    tables: ClassVar[tuple[str, ...]] = ("classification",)

    @property
    def identity(self) -> dict:
        return {**super().identity, "prompts": self.prompts.identity if self.prompts else None,
                "prompt_items": self.prompts_digest}

    @property
    def label(self) -> str:
        return f"{super().label} {self.label_field} seed {self.seed}"

    def settings(self) -> dict[str, Any]:
        return {"label_field": self.label_field, "template_set": self.template_set, "templates": list(self.templates),
                "methods": list(self.methods), "base_size": self.base_size, "query_size": self.query_size,
                "base_selection": self.base_selection, "stretch": self.stretch, "seed": self.seed,
                **self.protocol.settings()}


@dataclass(frozen=True)
class ConceptCell(Cell):
    """Concept alignment of one (vision, text) pair: every concept's mean image (over ``images``, one
    Embeddings per visual domain) mapped onto the text encoder's embeddings of every concept's aliases (``text``,
    from the aliases data set); ``members_path``: which image is which concept."""

    images: tuple[Embeddings, ...] = ()
    members_path: str = ""
    members_digest: str = ""
    aliases_path: str = ""
    aliases_digest: str = ""
    mappings: tuple[str, ...] = ()
    retrievals: tuple[str, ...] = ()
    folds: int = 5
    seed: int = 0
    csls_k: int = 10
    bins: int = 3

    kind: ClassVar[str] = "concepts"
    tables: ClassVar[tuple[str, ...]] = ("concepts", "concept_breakdown")

    @property
    def identity(self) -> dict:
        return {**super().identity, "images": [e.identity for e in self.images], "members": self.members_digest,
                "aliases": self.aliases_digest}

    def settings(self) -> dict[str, Any]:
        return {"mappings": list(self.mappings), "retrievals": list(self.retrievals), "folds": self.folds,
                "seed": self.seed, "csls_k": self.csls_k, "bins": self.bins}


def cell_is_done(cell: Cell) -> bool:
    """Every result file of the cell exists and carries the cell's identity."""
    lake = cell.lake
    return all((lake.read_metadata(p) or {}).get("identity") == cell.identity for p in cell.paths().values())


def _dedupe(cells: list[Cell]) -> list[Cell]:
    """The cells in order, each identity once (a study point can coincide with a grid point)."""
    seen: set[str] = set()
    out = []
    for c in cells:
        if c.cell_id not in seen:
            seen.add(c.cell_id)
            out.append(c)
    return out


def _pick(names: tuple[str, ...] | None, default: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(names) if names else tuple(default)


def english_only_reason(name: str, lang: str, declared: tuple[str, ...] = ()) -> str | None:
    """Why text encoder ``name`` is not run on captions in ``lang`` (None: it is). English always runs; another
    language needs an encoder the catalog marks multilingual, or one the spec declares multilingual."""
    if lang == "en" or name in declared:
        return None
    flag = get_encoder(name).multilingual
    if flag:
        return None
    why = "English-only in the catalog" if flag is False else "not known to be multilingual"
    return (f"skipped: text encoder {name} is {why}, so captions in {lang!r} are not computed "
            f"(declare it in analyses.cross_lingual.multilingual to include it)")


@dataclass
class _Plan:
    """What the cells of a sweep are made from (see :func:`plan_cells`), and the two ways of making one."""

    spec: SweepSpec
    lake: Lake
    pairs: dict
    embeddings: dict
    main: dict
    protocol: Protocol
    settings: list[Setting]
    layers: dict = field(default_factory=dict)

    def common(self, ds: str, domain: str, lang: str) -> dict:
        path, digest = self.pairs[ds][(domain, lang)]
        return dict(lake=self.lake, dataset=ds, domain=domain, lang=lang, pairs_path=path, pairs_digest=digest)

    def match(self, ds, domain, lang, v, t, s, seed, matching=None, retrieval=None, baselines=None, **extra) -> MatchCell:
        spec = self.spec
        return MatchCell(
            **self.common(ds, domain, lang), vision=self.embeddings[(ds, v, domain)], text=extra.pop("text", None) or
            self.embeddings[(ds, t, lang)], base_size=s.base_size, query_size=s.query_size,
            base_selection=s.base_selection, stretch=s.stretch, seed=seed,
            matching=tuple(spec.matching if matching is None else matching),
            retrieval=tuple(spec.retrieval if retrieval is None else retrieval),
            baselines=tuple(spec.baselines if baselines is None else baselines), protocol=self.protocol, **extra)


def plan_cells(spec: SweepSpec, lake: Lake, pairs: dict, embeddings: dict, main: dict | None = None,
               prompts: dict | None = None, concepts: dict | None = None, layers: dict | None = None) -> list[Cell]:
    """Every analysis cell of a sweep, in a fixed order, each identity once.

    ``pairs``: {dataset: {(domain, lang): (pairs path, pairs digest)}}, for the main grid and every study;
    ``embeddings``: {(dataset, encoder name, part): Embeddings};
    ``main``: {dataset: [(domain, lang), ...]}, the selections of the main grid (default: every key of ``pairs``);
    ``prompts``: {(dataset, text encoder): (Embeddings, prompt items path, digest)}, for classification;
    ``concepts``: {dataset: (domains, members path, members digest, {text encoder: (Embeddings, aliases items
    path, digest)})}, for concept alignment;
    ``layers``: {(dataset, encoder name, part): (Embeddings of each layer, in the spec's order)}, for the cka cells
    of a spec that names vision_layers or text_layers (default: the encoders' outputs only)."""
    plan = _Plan(spec, lake, pairs, embeddings, main or {ds: sorted(sel) for ds, sel in pairs.items()},
                 Protocol.of(spec), spec.settings(), layers or {})
    cells = _main_grid(plan)
    if spec.cross_lingual:
        cells += _cross_lingual(plan, spec.cross_lingual)
    if spec.cross_domain:
        cells += _cross_domain(plan, spec.cross_domain)
    if spec.curves:
        cells += _curves(plan, spec.curves)
    if spec.classification:
        cells += _classification(plan, spec.classification, prompts)
    if spec.concepts:
        cells += _concepts(plan, spec.concepts, concepts)
    return _dedupe(cells)


def _main_grid(plan: _Plan) -> list[Cell]:
    """CKA of every encoder pair and measure, and matching at every grid setting, on every main selection."""
    spec, cells = plan.spec, []
    for ds in spec.datasets:
        for domain, lang in plan.main[ds.name]:
            venc = [plan.embeddings[(ds.name, v, domain)] for v in spec.vision_encoders]
            tenc = [plan.embeddings[(ds.name, t, lang)] for t in spec.text_encoders]
            if spec.cka:
                measures = [(k, d) for k in spec.cka.kernels for d in spec.cka.debiased]
                measures += [(f"mutual_knn_k{k}", False) for k in spec.cka.mutual_knn]
                measures += [(f"cknna_k{k}", False) for k in spec.cka.cknna]
                measures += [(f"cycle_knn_k{k}", False) for k in spec.cka.cycle_knn]
                measures += [(f"svcca_{v!r}", False) for v in spec.cka.svcca]  # repr: parsed back exactly
                measures += [(f"rsa_{d}", False) for d in spec.cka.rsa]
                vlay = [plan.layers.get((ds.name, v, domain), ()) for v in spec.vision_encoders]
                tlay = [plan.layers.get((ds.name, t, lang), ()) for t in spec.text_encoders]
                for kernel, debiased in measures:
                    for v, vl in zip(venc, vlay):
                        for t, tl in zip(tenc, tlay):
                            cells.append(CKACell(**plan.common(ds.name, domain, lang), vision=vl[0] if vl else v,
                                                 text=tl[0] if tl else t, kernel=kernel, debiased=debiased,
                                                 shuffled=spec.cka.shuffled,
                                                 bootstrap=spec.cka.bootstrap if kernel in KERNELS else 0,
                                                 seed=spec.seeds[0], vision_layers=tuple(vl), text_layers=tuple(tl),
                                                 permutations=spec.cka.calibration.permutations,
                                                 alpha=spec.cka.calibration.alpha))
            if spec.has_matching:
                for s in plan.settings:
                    for v in spec.vision_encoders:
                        for t in spec.text_encoders:
                            cells.append(plan.match(ds.name, domain, lang, v, t, s, s.seed))
    return cells


def _cross_lingual(plan: _Plan, cl: CrossLingualSpec) -> list[Cell]:
    """Matching with the captions in each study language; an English-only text encoder's cells say why they
    are skipped."""
    spec, cells = plan.spec, []
    for ds in spec.datasets:
        for domain in sorted({d for d, _ in plan.main[ds.name]}):
            for lang in cl.langs:
                for s in plan.settings:
                    for seed in (cl.seeds or spec.seeds):
                        for v in _pick(cl.vision_encoders, spec.vision_encoders):
                            for t in _pick(cl.text_encoders, spec.text_encoders):
                                why = english_only_reason(t, lang, cl.multilingual)
                                if why is None:
                                    cells.append(plan.match(ds.name, domain, lang, v, t, s, seed))
                                else:
                                    none = Embeddings(t, get_encoder(t).lake_name, lang, (), "")
                                    cells.append(plan.match(ds.name, domain, lang, v, t, s, seed, text=none, skip=why))
    return cells


def _cross_domain(plan: _Plan, cd: CrossDomainSpec) -> list[Cell]:
    """Matching with the base pairs from one domain (and data set) and the queries from another."""
    spec, pairs, cells = plan.spec, plan.pairs, []
    for pair in cd.pairs:
        for ds in spec.datasets:
            if pair.query_dataset not in (None, ds.name):
                continue
            bds = pair.base_dataset or ds.name
            for _, lang in plan.main[ds.name]:
                if (pair.query, lang) not in pairs[ds.name] or (pair.base, lang) not in pairs.get(bds, {}):
                    continue
                for s in plan.settings:
                    for seed in (cd.seeds or spec.seeds):
                        for v in _pick(cd.vision_encoders, spec.vision_encoders):
                            for t in _pick(cd.text_encoders, spec.text_encoders):
                                bpath, bdigest = pairs[bds][(pair.base, lang)]
                                base = BaseSource(bds, pair.base, lang, bpath, bdigest,
                                                  plan.embeddings[(bds, v, pair.base)], plan.embeddings[(bds, t, lang)])
                                cells.append(plan.match(ds.name, pair.query, lang, v, t, s, seed, base=base))
    return cells


def _curves(plan: _Plan, cv: CurvesSpec) -> list[Cell]:
    """Matching along the base-size and query-size curves, and the stretch x selection ablation, at the first
    grid setting; a point the main grid computes already is left to the grid's cell."""
    spec, first, cells = plan.spec, plan.settings[0], []
    points = [Setting(b, first.query_size, first.base_selection, first.stretch, 0) for b in cv.base_sizes]
    points += [Setting(first.base_size, q, first.base_selection, first.stretch, 0) for q in cv.query_sizes]
    if cv.ablation:
        points += [Setting(first.base_size, first.query_size, sel, st, 0)
                   for sel in ("random", "kmeans_image") for st in (False, True)]
    # a curve point that the main grid computes already (same setting and seed, its methods included)
    # is read from the grid's cell, not computed twice
    in_grid = {(s.base_size, s.query_size, s.base_selection, s.stretch, s.seed) for s in plan.settings} \
        if set(cv.methods) <= set(spec.matching) else set()
    for ds in spec.datasets:
        for domain, lang in plan.main[ds.name]:
            for s in points:
                for seed in cv.seeds:
                    if (s.base_size, s.query_size, s.base_selection, s.stretch, seed) in in_grid:
                        continue
                    for v in _pick(cv.vision_encoders, spec.vision_encoders[:1]):
                        for t in _pick(cv.text_encoders, spec.text_encoders[:1]):
                            cells.append(plan.match(ds.name, domain, lang, v, t, s, seed, matching=cv.methods,
                                                    retrieval=(), baselines=()))
    return cells


def _classification(plan: _Plan, cf: ClassificationSpec, prompts: dict) -> list[Cell]:
    """Zero-shot classification at the first grid setting, for every label field and seed."""
    spec, first, cells = plan.spec, plan.settings[0], []
    for ds in spec.datasets:
        for domain, lang in plan.main[ds.name]:
            for field_ in cf.label_fields:
                for seed in (cf.seeds or spec.seeds):
                    for v in _pick(cf.vision_encoders, spec.vision_encoders):
                        for t in _pick(cf.text_encoders, spec.text_encoders):
                            emb, ppath, pdigest = prompts[(ds.name, t)]
                            cells.append(ClassifyCell(
                                **plan.common(ds.name, domain, lang), vision=plan.embeddings[(ds.name, v, domain)],
                                text=plan.embeddings[(ds.name, t, lang)], label_field=field_,
                                template_set=cf.template_set, templates=tuple(cf.templates),
                                methods=tuple(cf.methods), base_size=first.base_size,
                                query_size=first.query_size, base_selection=first.base_selection,
                                stretch=first.stretch, seed=seed, protocol=plan.protocol, prompts=emb,
                                prompts_path=ppath, prompts_digest=pdigest))
    return cells


def _concepts(plan: _Plan, co: ConceptsSpec, concepts: dict) -> list[Cell]:
    """Concept alignment of every encoder pair and seed, on each data set's first main selection."""
    spec, cells = plan.spec, []
    for ds in spec.datasets:
        domains, mpath, mdigest, aliases = concepts[ds.name]
        domain, lang = plan.main[ds.name][0]
        for seed in co.seeds:
            for v in _pick(co.vision_encoders, spec.vision_encoders):
                for t in _pick(co.text_encoders, spec.text_encoders):
                    emb, apath, adigest = aliases[t]
                    cells.append(ConceptCell(
                        **plan.common(ds.name, domain, lang), vision=plan.embeddings[(ds.name, v, domain)], text=emb,
                        images=tuple(plan.embeddings[(ds.name, v, d)] for d in domains), members_path=mpath,
                        members_digest=mdigest, aliases_path=apath, aliases_digest=adigest,
                        mappings=tuple(co.mappings), retrievals=tuple(co.retrievals), folds=co.folds,
                        seed=seed, csls_k=co.csls_k, bins=co.bins))
    return cells
