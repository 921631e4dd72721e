"""Sweep specs: a YAML file naming data sets, encoders, analyses and the settings grid.

The frozen pydantic models below ARE the spec: validated in full before any work starts (unknown keys refused at
every level, strict types), and read by the rest of the code as they are. Every error names the key (as a
dotted path, with list indices) and what was expected, one line per problem (vlalign.engine.spec_errors). The
keys under ``analyses`` and ``extraction`` are also read by the flat names the engine has always used
(``spec.matching``, ``spec.qap_kernel``, ``spec.shard_size``, ...), and the canonical JSON of the run id is
written with those names (:meth:`SweepSpec.to_json`), so run ids do not depend on how the spec is validated.
`vlalign spec --schema` prints the JSON schema of the format. See vlalign/sweeps/default.yaml for a commented
example, and the README for every key. The checks that need the encoders and the data are in vlalign.engine.world.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, Optional

import yaml
from annotated_types import Ge, Gt, Lt
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ModelWrapValidatorHandler,
    PrivateAttr,
    Strict,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from vlalign.datalake.digest import finish, hasher
from vlalign.datalake.names import SafeName
from vlalign.datasets.formats import FORMAT_NAMES, default_format, key_problems
from vlalign.datasets.readers import DatasetSource
from vlalign.engine.spec_errors import SpecError, problems, spec_error
from vlalign.engine.spec_studies import (
    ClassificationSpec,
    ConceptsSpec,
    CrossDomainSpec,
    CrossLingualSpec,
    CurvesSpec,
    ExplainSpec,
)
from vlalign.engine.spec_types import (
    MATCHING_METHODS,
    RETRIEVAL_METHODS,
    Baselines,
    BaseSelections,
    BaseSizes,
    Count,
    Flags,
    Grid,
    Kernel,
    Kernels,
    Layers,
    MatchingMethods,
    NonEmpty,
    QuerySizes,
    RetrievalMethods,
    Seeds,
    Strings,
    _Section,
    expanded_size,
    plain_layers,
)
from vlalign.methods.geometry_measures import RDM_DISTANCES
from vlalign.methods.kernels import KERNELS
from vlalign.methods.preprocess import METRICS as KMEANS_METRICS
from vlalign.methods.retrieval import TIES as RETRIEVAL_TIES

DEFAULT_SPEC = Path(__file__).resolve().parent.parent / "sweeps" / "default.yaml"

STRETCH_SCOPES = ("selected", "pool")

# The protocol presets: every choice is a named setting; a preset only changes the defaults, and a key
# written in the spec wins over its preset. `paper` reproduces the choices of the paper's code.
PROTOCOLS: dict[str, dict[str, Any]] = {
    "default": {"qap_kernel": "linear", "qap_tol": 0.03, "stretch_scope": "selected", "kmeans_metric": "euclidean",
                "linreg_intercept": True, "retrieval_ties": "against"},
    "paper": {"qap_kernel": "rbf", "qap_tol": 1e-5, "stretch_scope": "pool", "kmeans_metric": "cosine",
              "linreg_intercept": False, "retrieval_ties": "favour"},
}
FORMATS = FORMAT_NAMES  # vlalign/datasets/formats.py: emoji, coco, karpathy, xtd, imagefolder, webdataset, ...


@dataclass(frozen=True)
class Setting:
    """One point of the matching/retrieval grid (not a key of the spec: every combination of its grid lists)."""

    base_size: int
    query_size: int
    base_selection: str
    stretch: bool
    seed: int


class DatasetSpec(_Section):
    """One data set: the embedded emoji set, or files in one of the formats (vlalign/formats.py,
    `vlalign datasets`)."""

    name: SafeName = Field(description="the data set's name ('emoji' is embedded); letters, digits, '.', '_', '-'")
    format: Optional[Literal[FORMATS]] = Field(
        None, validate_default=True,
        description=f"{', '.join(FORMATS)} (default: emoji for the data set named emoji, coco otherwise)"
    )
    annotations: Optional[Annotated[str, Strict()]] = Field(
        None, description="coco, karpathy: the JSON file; xtd: the folder (or a pattern) of the caption files; "
        "imagefolder: an optional class names file (text, one a line, or JSON {folder: name})")
    images: Optional[Annotated[str, Strict()]] = Field(
        None, description="the image folder; webdataset: tar shards (a brace pattern, a folder of .tar, or one .tar); "
        "img2dataset: its output folder; hf-imagefolder: the folder with metadata.jsonl|csv")
    split: Optional[Annotated[str, Strict()]] = Field(
        None, description="karpathy: train, val, test or restval (comma-separated for several); hf-imagefolder: "
        "a split folder; default: all")
    lang: Optional[Annotated[str, Strict()]] = Field(
        None, description="the captions' language for formats with one language (default: en)")
    domains: Optional[Strings] = Field(None, description="visual domains to use (emoji: google, twitter); default: all")
    langs: Optional[Strings] = Field(
        None, description="caption languages to use (emoji: en de es fr it ja ko pl ru zh); default: all"
    )

    @field_validator("format")
    @classmethod
    def _default_format(cls, fmt: str | None, info: ValidationInfo) -> str | None:
        if fmt is None and "name" in info.data:  # without a valid name, the name's error is reported
            return default_format(info.data["name"])
        return fmt

    @model_validator(mode="after")
    def _keys_of_the_format(self) -> DatasetSpec:
        wrong = key_problems(self.format, self.annotations, self.images, self.split, self.lang)
        if wrong:
            raise spec_error("; ".join(wrong))
        return self

    def source(self) -> DatasetSource:
        """The reader's view of this data set."""
        return DatasetSource(self.name, self.format, self.annotations, self.images, lang=self.lang or "en",
                             split=self.split)


class CalibrationSpec(_Section):
    """Permutation calibration (Groger, Wen and Brbic 2026): the measure under K random pairings gives the null."""

    permutations: Annotated[int, Strict(), Ge(0)] = Field(200, description="K, the permutations of the null (0: off)")
    alpha: Annotated[float, Gt(0), Lt(1)] = Field(0.05, description="tau is the (1 - alpha) critical value of the null")


class CKASpec(_Section):
    """Centered kernel alignment (and other alignment measures) of every vision x text encoder pair."""

    kernels: Kernels = Field(KERNELS, description="linear and/or rbf (rbf uses the paper's median bandwidth)")
    debiased: Flags = Field(
        (False,), description="false: biased HSIC; true: the debiased (unbiased-HSIC) estimator; [false, true]: both"
    )
    mutual_knn: Annotated[tuple[int, ...], Grid(int, ge=1, allow_empty=True)] = Field(
        (), description="k values of mutual k-nearest-neighbour alignment (Huh et al. 2024), rows kernel=mutual_knn_k<k>"
    )
    cknna: Annotated[tuple[int, ...], Grid(int, ge=2, allow_empty=True)] = Field(
        (), description="k values of CKNNA (Huh et al. 2024), rows kernel=cknna_k<k>")
    cycle_knn: Annotated[tuple[int, ...], Grid(int, ge=1, allow_empty=True)] = Field(
        (), description="k values of cycle k-NN (Huh et al. 2024), rows kernel=cycle_knn_k<k>")
    svcca: Annotated[tuple[float, ...], Grid(float, allow_empty=True)] = Field(
        (), description="kept-variance thresholds of SVCCA (Raghu et al. 2017), rows kernel=svcca_<threshold>")
    rsa: Annotated[tuple[str, ...], Grid(str, choices=RDM_DISTANCES, allow_empty=True)] = Field(
        (), description="RDM distances of RSA (Spearman of the RDMs' upper triangles), rows kernel=rsa_<distance>")
    shuffled: Annotated[bool, Strict()] = Field(True, description="also every measure with a seeded random pairing (the baseline)")
    bootstrap: Annotated[int, Strict(), Ge(0)] = Field(
        200, description="resamples for a 95% bootstrap confidence interval of CKA (0: none)"
    )
    calibration: CalibrationSpec = Field(
        CalibrationSpec(), description="{permutations: 200, alpha: 0.05}: permutation calibration of every row "
                                       "(Groger et al.); permutations 0: none")

    @field_validator("svcca")
    @classmethod
    def _thresholds(cls, values: tuple[float, ...]) -> tuple[float, ...]:
        for v in values:
            if not 0 < v <= 1:
                raise spec_error("every kept-variance threshold must be in (0, 1]", got=v)
        return values


class QAPSpec(_Section):
    """QAP matching settings."""

    restarts: Count = Field(20, description="random restarts of the QAP solver")
    kernel: Optional[Kernel] = Field(None, description="linear or rbf (default: the protocol's: default linear, paper rbf)")
    tol: Optional[Annotated[float, Ge(0)]] = Field(
        None, description="FAQ stopping tolerance (default: the protocol's: default 0.03, paper 1e-5)"
    )


class LinearRegressionSpec(_Section):
    """The linear-regression baseline."""

    intercept: Optional[Annotated[bool, Strict()]] = Field(
        None, description="fit an intercept (default: the protocol's: default true, paper false)"
    )


class LocalCKASpec(_Section):
    """Local-CKA matching and retrieval settings."""

    kernel: Kernel = Field("linear", description="linear or rbf")


def _off_is_none(value: Any) -> Any:
    return None if value is False else value


def _cka_schema(schema: dict) -> None:
    schema.setdefault("anyOf", []).insert(1, {"const": False})


class AnalysesSpec(_Section):
    """What to compute for every vision x text encoder pair."""

    cka: Annotated[Optional[CKASpec], BeforeValidator(_off_is_none)] = Field(
        CKASpec(), json_schema_extra=_cka_schema,
        description="{kernels: [linear, rbf], debiased: false, shuffled: true, bootstrap: 0}; false or null: no CKA",
    )
    matching: MatchingMethods = Field(MATCHING_METHODS, description="training-free matching: a subset of [qap, local_cka]")
    retrieval: RetrievalMethods = Field(RETRIEVAL_METHODS, description="[local_cka] or []: R@1/5/10, both directions")
    baselines: Baselines = Field(
        (), description="a subset of [linear_regression, relative, procrustes, cosine], scored for matching and retrieval"
    )
    qap: QAPSpec = Field(QAPSpec(), description="{restarts: 20, kernel: linear|rbf, tol: 0.03}")
    local_cka: LocalCKASpec = Field(LocalCKASpec(), description="{kernel: linear|rbf}")
    linear_regression: LinearRegressionSpec = Field(LinearRegressionSpec(), description="{intercept: true|false}")
    retrieval_ties: Optional[Literal[RETRIEVAL_TIES]] = Field(
        None, description="against: a tie with the true partner counts as a miss; favour: as a hit (the paper's code)"
    )
    cross_domain: Annotated[Optional[CrossDomainSpec], BeforeValidator(_off_is_none)] = Field(
        None, description="{pairs: [{base: google, query: twitter}], vision_encoders, text_encoders, seeds}; false: off")
    cross_lingual: Annotated[Optional[CrossLingualSpec], BeforeValidator(_off_is_none)] = Field(
        None, description="{langs: [de, fr, ...], vision_encoders, text_encoders, multilingual, seeds}; false: off")
    classification: Annotated[Optional[ClassificationSpec], BeforeValidator(_off_is_none)] = Field(
        None, description="{label_fields, templates, template_set, methods, vision_encoders, text_encoders, seeds}; false: off")
    curves: Annotated[Optional[CurvesSpec], BeforeValidator(_off_is_none)] = Field(
        None, description="{vision_encoders, text_encoders, base_sizes, query_sizes, seeds, methods, ablation}; false: off")
    concepts: Annotated[Optional[ConceptsSpec], BeforeValidator(_off_is_none)] = Field(
        None, description="{domains, mappings, retrievals, folds, seeds, csls_k, bins, vision_encoders, text_encoders}; false: off")

    explain: Annotated[Optional[ExplainSpec], BeforeValidator(_off_is_none)] = Field(
        None, description="{top, vision_encoder, text_encoder, steps, seed}: attributions of the best-matched pairs; "
                          "false: off")

    @model_validator(mode="after")
    def _something_to_do(self) -> AnalysesSpec:
        studies = (self.cross_domain, self.cross_lingual, self.classification, self.curves, self.concepts)
        if self.cka is None and not (self.matching or self.retrieval or self.baselines) and not any(studies):
            raise spec_error("nothing to compute (cka is off, matching, retrieval, baselines are empty and no study is on)")
        return self


class ExtractionSpec(_Section):
    """How embeddings are computed."""

    shard_size: Count = Field(256, description="items per embedding shard")
    batch_size: Optional[Count] = Field(None, description="encoder batch size (default: 8 on CPU, 64 on CUDA)")


def _key(*path: str) -> property:
    """A key under ``analyses`` or ``extraction``, read by the flat name the engine uses (SweepSpec below)."""

    def get(spec: SweepSpec) -> Any:
        value: Any = spec
        for k in path:
            value = getattr(value, k)
        return value

    return property(get, doc=f"the spec's {'.'.join(path)}")


def _with_preset(doc: Any) -> Any:
    """``doc`` with the settings its protocol preset chooses written where the spec leaves them out (or null):
    a preset only changes the defaults. Anything that is not as expected is left for validation to report."""
    protocol = doc.get("protocol", "default") if isinstance(doc, dict) else None
    if not isinstance(protocol, str) or protocol not in PROTOCOLS:
        return doc
    preset = PROTOCOLS[protocol]
    out = dict(doc)
    for key in ("stretch_scope", "kmeans_metric"):
        if out.get(key) is None:
            out[key] = preset[key]
    analyses = out.get("analyses", {})
    if not isinstance(analyses, dict):
        return out
    analyses = out["analyses"] = dict(analyses)
    if analyses.get("retrieval_ties") is None:
        analyses["retrieval_ties"] = preset["retrieval_ties"]
    for section, key, name in (("qap", "kernel", "qap_kernel"), ("qap", "tol", "qap_tol"),
                               ("linear_regression", "intercept", "linreg_intercept")):
        sub = analyses.get(section, {})
        if isinstance(sub, dict) and sub.get(key) is None:
            analyses[section] = {**sub, key: preset[name]}
    return out


class SweepSpec(_Section):
    """A vlalign sweep: data sets x vision encoders x text encoders, the analyses to run on every pair, and the
    grid of matching/retrieval settings (every combination of the grid lists is one setting). Run it with
    `vlalign sweep FILE`; check it with `vlalign spec FILE`."""

    model_config = ConfigDict(
        extra="forbid", frozen=True, title="vlalign sweep spec",
        json_schema_extra={"$schema": "https://json-schema.org/draft/2020-12/schema"},
    )

    name: SafeName = Field(
        description="the sweep's name; the run id is <name>-<digest of the spec> unless --run-id is given; "
        "letters, digits, '.', '_', '-'"
    )
    datasets: NonEmpty[DatasetSpec] = Field(
        json_schema_extra={"minItems": 1},
        description="list of {name, format, annotations, images, split, lang, domains: [...], langs: [...]}"
    )
    vision_encoders: Strings = Field(description="catalog or hub names; every combination with the text encoders is analysed")
    text_encoders: Strings = Field(description="catalog or hub names; every combination with the vision encoders is analysed")
    vision_layers: Annotated[Any, Layers()] = Field(
        "last", description="the vision encoders' layers whose alignment with the text layers is measured (cka): last "
        "(the encoder's output), all, a list of indices (0, 1, ...: inner layers; -1: the output) or {every: k}")
    text_layers: Annotated[Any, Layers()] = Field(
        "last", description="the text encoders' layers, as vision_layers (0: the token embeddings; a static "
        "embedding such as wordllama has only its output)")
    analyses: AnalysesSpec = Field(AnalysesSpec(), description="cka, matching, retrieval, baselines, qap, local_cka")
    base_size: BaseSizes = Field((320,), description="base set size: an integer or a list (a list makes a grid)")
    query_size: QuerySizes = Field((500,), description="query set size: an integer or a list (a list makes a grid)")
    base_selection: BaseSelections = Field(
        ("kmeans_image",), description="random, kmeans_image, kmeans_text, or a list"
    )
    stretch: Flags = Field((True,), description="true/false or a list: divide each dimension by its std over base + query")
    seeds: Seeds = Field((0,), description="an integer or a list")
    protocol: Literal[tuple(PROTOCOLS)] = Field(
        "default", description="default or paper: the defaults of the named settings qap.kernel, qap.tol, stretch_scope, "
        "kmeans_metric, linear_regression.intercept and retrieval_ties (a key written in the spec wins)")
    stretch_scope: Optional[Literal[STRETCH_SCOPES]] = Field(
        None, description="selected: the std over the chosen base + queries; pool: over the whole base pool + queries, "
        "before the base is chosen (the paper's code)")
    kmeans_metric: Optional[Literal[KMEANS_METRICS]] = Field(
        None, description="k-means base selection takes, per centre, the nearest sample by euclidean distance or by cosine")
    extraction: ExtractionSpec = Field(
        ExtractionSpec(), description="{shard_size: 256, batch_size: N} (batch size default: 8 on CPU, 64 on CUDA)"
    )

    @field_validator("datasets")
    @classmethod
    def _unique_names(cls, datasets: tuple[DatasetSpec, ...]) -> tuple[DatasetSpec, ...]:
        names = [ds.name for ds in datasets]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise spec_error(f"two entries have the same name {twice[0]!r}")
        return datasets

    @model_validator(mode="after")
    def _study_encoders(self) -> SweepSpec:
        for key in ("cross_domain", "cross_lingual", "classification", "curves", "concepts"):
            study = getattr(self.analyses, key)
            for side in ("vision_encoders", "text_encoders"):
                names = getattr(study, side, None) if study is not None else None
                known = getattr(self, side)
                extra = [n for n in (names or ()) if n not in known]
                if extra:
                    raise spec_error(f"analyses.{key}.{side}: {extra} are not in the sweep's {side} {list(known)}")
        ex = self.analyses.explain
        if ex is not None:
            for key, known in (("vision_encoder", self.vision_encoders), ("text_encoder", self.text_encoders)):
                name = getattr(ex, key)
                if name is not None and name not in known:
                    raise spec_error(f"analyses.explain.{key}: {name!r} is not in the sweep's {key}s {list(known)}")
            if not self.analyses.matching:
                raise spec_error("analyses.explain explains the best-matched pairs of a matching cell: "
                                 "analyses.matching is empty")
            if ex.seed is not None and ex.seed not in self.seeds:
                raise spec_error(f"analyses.explain.seed: {ex.seed} is not one of the sweep's seeds {list(self.seeds)}")
        return self

    _source: dict = PrivateAttr(default_factory=dict)

    @model_validator(mode="wrap")
    @classmethod
    def _preset_and_source(cls, doc: Any, handler: ModelWrapValidatorHandler[SweepSpec]) -> SweepSpec:
        """Validate ``doc`` with its protocol preset's settings filled in (so the protocol's named settings
        always hold a value), and keep ``doc`` itself as the spec's source."""
        if isinstance(doc, cls):
            return doc
        spec = handler(_with_preset(doc))
        spec._source = doc
        return spec

    # the flat names the engine reads, and the canonical JSON writes (the layout of the first runs' specs)
    cka = _key("analyses", "cka")
    matching = _key("analyses", "matching")
    retrieval = _key("analyses", "retrieval")
    baselines = _key("analyses", "baselines")
    qap_restarts = _key("analyses", "qap", "restarts")
    qap_kernel = _key("analyses", "qap", "kernel")
    qap_tol = _key("analyses", "qap", "tol")
    local_cka_kernel = _key("analyses", "local_cka", "kernel")
    linreg_intercept = _key("analyses", "linear_regression", "intercept")
    retrieval_ties = _key("analyses", "retrieval_ties")
    cross_domain = _key("analyses", "cross_domain")
    cross_lingual = _key("analyses", "cross_lingual")
    classification = _key("analyses", "classification")
    curves = _key("analyses", "curves")
    concepts = _key("analyses", "concepts")
    explain = _key("analyses", "explain")
    shard_size = _key("extraction", "shard_size")
    batch_size = _key("extraction", "batch_size")  # None: 8 on CPU, 64 on CUDA

    @property
    def source(self) -> dict:
        """The spec as it was given (the mapping read from YAML): what a run records, and resumes from."""
        return self._source

    def settings(self) -> list[Setting]:
        return [
            Setting(b, q, sel, st, seed)
            for b, q, sel, st, seed in itertools.product(
                self.base_size, self.query_size, self.base_selection, self.stretch, self.seeds
            )
        ]

    def to_json(self) -> str:
        """Canonical JSON (the run id's digest), in the flat layout of the first runs. Keys added after the
        first runs are left out while they hold their defaults, and a single debiased flag is written as
        before, so older specs keep their run ids."""
        d = {k: plain_layers(v) if k.endswith("_layers") else _plain(v) for k in _JSON_KEYS for v in [getattr(self, k)]}
        for ds in d["datasets"]:
            for key in ("split", "lang"):
                if ds[key] is None:
                    ds.pop(key)
        for key, value in _LATER_KEYS.items():
            if d.get(key) == value:
                d.pop(key)
        if d["cka"] is not None:
            if len(d["cka"]["debiased"]) == 1:
                d["cka"]["debiased"] = d["cka"]["debiased"][0]
            for key in ("mutual_knn", "cknna", "cycle_knn", "svcca", "rsa"):  # keys added later: left out when unused
                if not d["cka"][key]:
                    d["cka"].pop(key)
            if d["cka"]["calibration"] == CalibrationSpec().model_dump():
                d["cka"].pop("calibration")  # the default: older specs keep their run ids
        return json.dumps(d, sort_keys=True)

    @property
    def digest(self) -> str:
        return _spec_digest(self.to_json())

    @property
    def default_run_id(self) -> str:
        return f"{self.name[:117]}-{self.digest}"  # at most 128 characters, a safe name

    @property
    def has_matching(self) -> bool:
        return bool(self.matching or self.retrieval or self.baselines)

    @property
    def protocol_settings(self) -> dict[str, Any]:
        """The named settings a protocol preset chooses, as resolved for this spec."""
        return {k: getattr(self, k) for k in PROTOCOLS["default"]}


_JSON_KEYS = ("name", "datasets", "vision_encoders", "text_encoders", "vision_layers", "text_layers", "cka", "matching",
              "retrieval", "baselines",
              "qap_restarts", "qap_kernel", "local_cka_kernel", "protocol", "qap_tol", "stretch_scope",
              "kmeans_metric", "linreg_intercept", "retrieval_ties", "cross_domain", "cross_lingual",
              "classification", "curves", "concepts", "explain", "base_size", "query_size", "base_selection",
              "stretch", "seeds", "shard_size", "batch_size")
_LATER_KEYS = {"vision_layers": "last", "text_layers": "last", "protocol": "default", "qap_tol": 0.03,
               "stretch_scope": "selected", "kmeans_metric": "euclidean",
               "linreg_intercept": True, "retrieval_ties": "against", "cross_domain": None, "cross_lingual": None,
               "classification": None, "curves": None, "concepts": None, "explain": None}


def _plain(value: Any) -> Any:
    """A spec value as plain data: sections as dicts, lists of sections as lists of dicts."""
    if isinstance(value, BaseModel):
        return value.model_dump()
    if isinstance(value, tuple) and value and isinstance(value[0], BaseModel):
        return [v.model_dump() for v in value]
    return value


def json_schema() -> dict:
    """The JSON schema of a sweep spec, for editors (`vlalign spec --schema`)."""
    return SweepSpec.model_json_schema()


MAX_SPEC_BYTES = 1 << 20  # a spec is a short text file
MAX_SPEC_VALUES = 100_000  # values in a spec once YAML aliases are expanded (a real spec has a few hundred)


def parse_spec(doc: Any, where: str = "spec") -> SweepSpec:
    """Validate a spec mapping (structure and values, no I/O) and return a SweepSpec. Every problem is
    reported, one line each, in one SpecError; `where` names the top level in messages. A document that expands
    to more than MAX_SPEC_VALUES values (YAML aliases of aliases) is refused before it is walked."""
    if expanded_size(doc, MAX_SPEC_VALUES + 1) > MAX_SPEC_VALUES:
        raise SpecError(f"{where}: holds more than {MAX_SPEC_VALUES:,} values once its YAML aliases are expanded; "
                        "a spec names data sets, encoders and settings, and needs far fewer")
    try:
        return SweepSpec.model_validate(doc)
    except ValidationError as e:
        raise SpecError("\n".join(problems(e, SweepSpec, where))) from None


def load_spec(path: str | Path | None = None) -> SweepSpec:
    """Read and validate a spec file (the built-in default if ``path`` is None)."""
    path = Path(path) if path else DEFAULT_SPEC
    if not path.is_file():
        raise SpecError(f"spec file {path} does not exist")
    if path.stat().st_size > MAX_SPEC_BYTES:
        raise SpecError(f"{path}: {path.stat().st_size:,} bytes; a spec is at most {MAX_SPEC_BYTES:,} bytes")
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as e:
        raise SpecError(f"{path}: not UTF-8 text (byte {e.start}: {e.reason})") from None
    except RecursionError:
        raise SpecError(f"{path}: nested too deeply to read") from None
    except yaml.YAMLError as e:
        raise SpecError(f"{path}: not valid YAML: {' '.join(str(e).split())}") from None
    try:
        return parse_spec(doc)
    except SpecError as e:
        raise SpecError("\n".join(f"{path}: {line}" for line in str(e).splitlines())) from None


def resolve_spec(spec: str | Path | dict | None) -> SweepSpec:
    """A spec mapping, a YAML path, or None for the built-in default."""
    return parse_spec(spec) if isinstance(spec, dict) else load_spec(spec)


def _spec_digest(text: str) -> str:
    """The run-id digest: sha256 of the spec's canonical JSON, 10 hex characters (unchanged since the first runs)."""
    h = hasher()
    h.update(text.encode())
    return finish(h, 10)
