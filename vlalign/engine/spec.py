"""Sweep specs: a YAML file naming data sets, encoders, analyses and the settings grid.

Validated in full before any work starts by the pydantic models below (unknown keys refused at every level,
strict types); every error names the key (as a dotted path, with list indices) and what was expected, one
line per problem. The validated model becomes a frozen SweepSpec, whose JSON (and so the run id) does not
depend on how the spec was validated. `vlalign spec --schema` prints the JSON schema of the format. See
vlalign/sweeps/default.yaml for a commented example, and the README for every key.
"""

from __future__ import annotations

import itertools
import json
import typing
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, Optional

import yaml
from annotated_types import Ge
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    Strict,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError, core_schema

from vlalign.datasets.formats import FORMAT_NAMES, default_format, key_problems
from vlalign.lake.digest import finish, hasher
from vlalign.lake.names import SafeName, name_error

DEFAULT_SPEC = Path(__file__).resolve().parent.parent / "sweeps" / "default.yaml"

KERNELS = ("linear", "rbf")
CLASSIFY_METHODS = ("local_cka", "qap", "linear_regression", "relative", "procrustes")
LABEL_FIELDS = ("label", "sublabel")
STRETCH_SCOPES = ("selected", "pool")
KMEANS_METRICS = ("euclidean", "cosine")
RETRIEVAL_TIES = ("against", "favour")

# The protocol presets: every choice is a named setting; a preset only changes the defaults, and a key
# written in the spec wins over its preset. `paper` reproduces the choices of the paper's code.
PROTOCOLS: dict[str, dict[str, Any]] = {
    "default": {"qap_kernel": "linear", "qap_tol": 0.03, "stretch_scope": "selected", "kmeans_metric": "euclidean",
                "linreg_intercept": True, "retrieval_ties": "against"},
    "paper": {"qap_kernel": "rbf", "qap_tol": 1e-5, "stretch_scope": "pool", "kmeans_metric": "cosine",
              "linreg_intercept": False, "retrieval_ties": "favour"},
}
DEFAULT_TEMPLATES = ("an emoji of {label}", "a {label} emoji", "an icon showing {label}", "{label}")
MATCHING_METHODS = ("qap", "local_cka")
RETRIEVAL_METHODS = ("local_cka",)
BASELINES = ("linear_regression", "relative", "procrustes", "cosine")
BASE_SELECTIONS = ("random", "kmeans_image", "kmeans_text")
FORMATS = FORMAT_NAMES  # vlalign/formats.py: emoji, coco, karpathy, xtd, imagefolder, webdataset, img2dataset, hf-imagefolder


class SpecError(ValueError):
    """A sweep spec that is not valid; the message names the key and what was expected (a line a problem)."""


# -- what the rest of the code uses: frozen dataclasses; to_json() (and so the digest and the run id) --
# -- comes from these, so it stays byte-identical whatever validates the spec --------------------------

@dataclass(frozen=True)
class DatasetSpec:
    name: str
    format: str = "emoji"
    annotations: str | None = None
    images: str | None = None
    domains: tuple[str, ...] | None = None
    langs: tuple[str, ...] | None = None
    split: str | None = None  # added later: left out of to_json() while None
    lang: str | None = None  # added later: left out of to_json() while None

    def source(self):
        """The reader's view of this data set (vlalign.datasets.readers.DatasetSource)."""
        from vlalign.datasets.readers import DatasetSource

        return DatasetSource(self.name, self.format, self.annotations, self.images, lang=self.lang or "en",
                             split=self.split)


@dataclass(frozen=True)
class CKASpec:
    kernels: tuple[str, ...] = ("linear", "rbf")
    debiased: tuple[bool, ...] = (False,)
    shuffled: bool = True
    bootstrap: int = 200
    mutual_knn: tuple[int, ...] = ()


@dataclass(frozen=True)
class DomainPair:
    """Base pairs from one (data set, domain), queries from another."""

    base: str
    query: str
    base_dataset: str | None = None  # None: the same data set as the queries
    query_dataset: str | None = None  # None: every data set of the sweep that has both domains


@dataclass(frozen=True)
class CrossDomainSpec:
    pairs: tuple[DomainPair, ...]
    vision_encoders: tuple[str, ...] | None = None  # None: the sweep's
    text_encoders: tuple[str, ...] | None = None
    seeds: tuple[int, ...] | None = None


@dataclass(frozen=True)
class CrossLingualSpec:
    langs: tuple[str, ...]
    vision_encoders: tuple[str, ...] | None = None
    text_encoders: tuple[str, ...] | None = None
    multilingual: tuple[str, ...] = ()  # text encoders declared multilingual beyond the catalog's own flag
    seeds: tuple[int, ...] | None = None


@dataclass(frozen=True)
class ClassificationSpec:
    label_fields: tuple[str, ...] = LABEL_FIELDS
    templates: tuple[str, ...] = DEFAULT_TEMPLATES
    template_set: str = "default"
    methods: tuple[str, ...] = CLASSIFY_METHODS
    vision_encoders: tuple[str, ...] | None = None
    text_encoders: tuple[str, ...] | None = None
    seeds: tuple[int, ...] | None = None


@dataclass(frozen=True)
class ConceptsSpec:
    """Concept alignment (Li et al.): concept image means mapped onto the concepts' alias embeddings."""

    domains: tuple[str, ...] | None = None  # the visual domains whose images a concept averages (None: all)
    mappings: tuple[str, ...] = ("procrustes", "random_orthogonal", "shuffled_dictionary")
    retrievals: tuple[str, ...] = ("nn", "csls")
    folds: int = 5
    seeds: tuple[int, ...] = (0,)
    csls_k: int = 10
    bins: int = 3
    vision_encoders: tuple[str, ...] | None = None
    text_encoders: tuple[str, ...] | None = None


@dataclass(frozen=True)
class CurvesSpec:
    vision_encoders: tuple[str, ...] | None = None  # None: the sweep's first
    text_encoders: tuple[str, ...] | None = None
    base_sizes: tuple[int, ...] = (40, 80, 160, 320, 640)
    query_sizes: tuple[int, ...] = (100, 250, 500, 1000)
    seeds: tuple[int, ...] = (0, 1, 2)
    methods: tuple[str, ...] = ("qap", "local_cka")
    ablation: bool = True


@dataclass(frozen=True)
class Setting:
    """One point of the matching/retrieval grid."""

    base_size: int
    query_size: int
    base_selection: str
    stretch: bool
    seed: int


@dataclass(frozen=True)
class SweepSpec:
    name: str
    datasets: tuple[DatasetSpec, ...]
    vision_encoders: tuple[str, ...]
    text_encoders: tuple[str, ...]
    cka: CKASpec | None = CKASpec()
    matching: tuple[str, ...] = ("qap", "local_cka")
    retrieval: tuple[str, ...] = ("local_cka",)
    baselines: tuple[str, ...] = ()
    qap_restarts: int = 20
    qap_kernel: str = "linear"
    local_cka_kernel: str = "linear"
    protocol: str = "default"
    qap_tol: float = 0.03
    stretch_scope: str = "selected"
    kmeans_metric: str = "euclidean"
    linreg_intercept: bool = True
    retrieval_ties: str = "against"
    cross_domain: CrossDomainSpec | None = None
    cross_lingual: CrossLingualSpec | None = None
    classification: ClassificationSpec | None = None
    curves: CurvesSpec | None = None
    concepts: ConceptsSpec | None = None
    base_size: tuple[int, ...] = (320,)
    query_size: tuple[int, ...] = (500,)
    base_selection: tuple[str, ...] = ("kmeans_image",)
    stretch: tuple[bool, ...] = (True,)
    seeds: tuple[int, ...] = (0,)
    shard_size: int = 256
    batch_size: int | None = None  # None: 8 on CPU, 64 on CUDA
    source: dict = field(default_factory=dict, compare=False, hash=False)

    def settings(self) -> list[Setting]:
        return [
            Setting(b, q, sel, st, seed)
            for b, q, sel, st, seed in itertools.product(
                self.base_size, self.query_size, self.base_selection, self.stretch, self.seeds
            )
        ]

    def to_json(self) -> str:
        """Canonical JSON (the run id's digest). Keys added after the first runs are left out while they hold
        their defaults, and a single debiased flag is written as before, so older specs keep their run ids."""
        d = asdict(self)
        d.pop("source")
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
            if not d["cka"]["mutual_knn"]:
                d["cka"].pop("mutual_knn")
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



_LATER_KEYS = {"protocol": "default", "qap_tol": 0.03, "stretch_scope": "selected", "kmeans_metric": "euclidean",
               "linreg_intercept": True, "retrieval_ties": "against", "cross_domain": None, "cross_lingual": None,
               "classification": None, "curves": None, "concepts": None}


# -- validation: pydantic models mirroring the YAML format --------------------------------------------

_NOTHING = object()


def _error(detail: str, got: Any = _NOTHING) -> PydanticCustomError:
    """An error whose message is ours; `got` (if given) is the offending value, shown after the message."""
    return PydanticCustomError("spec", "{detail}", {"detail": detail} if got is _NOTHING else {"detail": detail, "got": got})


class Grid:
    """A field that takes one value or a list of distinct values: an axis of the settings grid, a set of
    encoders, methods or kernels. Checked here rather than as ``T | list[T]`` so that an error names the key
    (not a union branch or list index) and says what was expected."""

    def __init__(self, kind: type, *, ge: int | None = None, choices: tuple[str, ...] | None = None,
                 allow_empty: bool = False):
        self.kind, self.ge, self.choices, self.allow_empty = kind, ge, choices, allow_empty

    def expected(self) -> str:
        if self.kind is bool:
            return "true/false or a list of them"
        if self.kind is int:
            lim = f" >= {self.ge}" if self.ge is not None else ""
            return f"an integer{lim} or a list of integers{lim}"
        return "a string or a list of strings" + (f", each one of {list(self.choices)}" if self.choices else "")

    def _typed(self, x: Any) -> bool:
        if self.kind is int:
            return isinstance(x, int) and not isinstance(x, bool) and (self.ge is None or x >= self.ge)
        return isinstance(x, self.kind)  # bool: only true/false; str: only strings

    def validate(self, value: Any) -> tuple:
        items = list(value) if isinstance(value, (list, tuple)) else [value]
        if not items and not self.allow_empty:
            raise _error("empty list; expected one value or a non-empty list")
        for x in items:
            if not self._typed(x):
                raise _error(f"expected {self.expected()}", got=x)
            if self.choices is not None and x not in self.choices:
                raise _error(f"unknown value {_show(x)}; expected one of {list(self.choices)}")
        if len(set(items)) != len(items):
            raise _error("expected distinct values", got=value)
        return tuple(items)

    def __get_pydantic_core_schema__(self, source: Any, handler: Any) -> core_schema.CoreSchema:
        return core_schema.no_info_plain_validator_function(self.validate)

    def __get_pydantic_json_schema__(self, schema: Any, handler: Any) -> dict:
        if self.kind is int:
            item: dict = {"type": "integer", **({"minimum": self.ge} if self.ge is not None else {})}
        elif self.kind is bool:
            item = {"type": "boolean"}
        else:
            item = {"type": "string", **({"enum": list(self.choices)} if self.choices else {})}
        many = {"type": "array", "items": item, "uniqueItems": True, **({} if self.allow_empty else {"minItems": 1})}
        return {"anyOf": [item, many]}


Strings = Annotated[tuple[str, ...], Grid(str)]
Kernels = Annotated[tuple[str, ...], Grid(str, choices=KERNELS)]
MatchingMethods = Annotated[tuple[str, ...], Grid(str, choices=MATCHING_METHODS, allow_empty=True)]
RetrievalMethods = Annotated[tuple[str, ...], Grid(str, choices=RETRIEVAL_METHODS, allow_empty=True)]
Baselines = Annotated[tuple[str, ...], Grid(str, choices=BASELINES, allow_empty=True)]
BaseSizes = Annotated[tuple[int, ...], Grid(int, ge=2)]
QuerySizes = Annotated[tuple[int, ...], Grid(int, ge=1)]
BaseSelections = Annotated[tuple[str, ...], Grid(str, choices=BASE_SELECTIONS)]
Flags = Annotated[tuple[bool, ...], Grid(bool)]
Seeds = Annotated[tuple[int, ...], Grid(int)]
Kernel = Literal[KERNELS]  # one kernel, not a list
Count = Annotated[int, Strict(), Ge(1)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DatasetModel(_Model):
    """One data set: the embedded emoji set, or files in one of the formats (vlalign/formats.py,
    `vlalign datasets`)."""

    name: SafeName = Field(description="the data set's name ('emoji' is embedded); letters, digits, '.', '_', '-'")
    format: Optional[Literal[FORMATS]] = Field(
        None, description=f"{', '.join(FORMATS)} (default: emoji for the data set named emoji, coco otherwise)"
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

    @model_validator(mode="after")
    def _format_and_files(self) -> DatasetModel:
        if self.format is None:
            self.format = default_format(self.name)
        problems = key_problems(self.format, self.annotations, self.images, self.split, self.lang)
        if problems:
            raise _error("; ".join(problems))
        return self


class CKAModel(_Model):
    """Centered kernel alignment (and other alignment measures) of every vision x text encoder pair."""

    kernels: Kernels = Field(KERNELS, description="linear and/or rbf (rbf uses the paper's median bandwidth)")
    debiased: Flags = Field(
        (False,), description="false: biased HSIC; true: the debiased (unbiased-HSIC) estimator; [false, true]: both"
    )
    mutual_knn: Annotated[tuple[int, ...], Grid(int, ge=1, allow_empty=True)] = Field(
        (), description="k values of mutual k-nearest-neighbour alignment (Huh et al. 2024), rows kernel=mutual_knn_k<k>"
    )
    shuffled: Annotated[bool, Strict()] = Field(True, description="also every measure with a seeded random pairing (the baseline)")
    bootstrap: Annotated[int, Strict(), Ge(0)] = Field(
        200, description="resamples for a 95% bootstrap confidence interval of CKA (0: none)"
    )


class QAPModel(_Model):
    """QAP matching settings."""

    restarts: Count = Field(20, description="random restarts of the QAP solver")
    kernel: Optional[Kernel] = Field(None, description="linear or rbf (default: the protocol's: default linear, paper rbf)")
    tol: Optional[Annotated[float, Ge(0)]] = Field(
        None, description="FAQ stopping tolerance (default: the protocol's: default 0.03, paper 1e-5)"
    )


class LinearRegressionModel(_Model):
    """The linear-regression baseline."""

    intercept: Optional[Annotated[bool, Strict()]] = Field(
        None, description="fit an intercept (default: the protocol's: default true, paper false)"
    )


Encoders = Optional[Strings]
StudySeeds = Optional[Seeds]


class DomainPairModel(_Model):
    base: SafeName = Field(description="the domain the base pairs come from")
    query: SafeName = Field(description="the domain the queries come from")
    base_dataset: Optional[SafeName] = Field(None, description="the data set of the base (default: the queries')")
    query_dataset: Optional[SafeName] = Field(None, description="the data set of the queries (default: every one with both domains)")


class CrossDomainModel(_Model):
    """Matching with the base pairs from one domain and the queries from another."""

    pairs: list[DomainPairModel] = Field(min_length=1, description="list of {base: DOMAIN, query: DOMAIN[, base_dataset, query_dataset]}")
    vision_encoders: Encoders = Field(None, description="a subset of the sweep's (default: all)")
    text_encoders: Encoders = Field(None, description="a subset of the sweep's (default: all)")
    seeds: StudySeeds = Field(None, description="default: the sweep's seeds")


class CrossLingualModel(_Model):
    """Matching with the captions in other languages (the paper's XTD-10 study)."""

    langs: Strings = Field(description="caption languages; each is compared with the sweep's own languages")
    vision_encoders: Encoders = Field(None, description="a subset of the sweep's (default: all)")
    text_encoders: Encoders = Field(None, description="a subset of the sweep's (default: all); English-only ones are skipped, with the reason")
    multilingual: Strings = Field((), description="text encoders to treat as multilingual beyond the catalog's flag")
    seeds: StudySeeds = Field(None, description="default: the sweep's seeds")


class ClassificationModel(_Model):
    """Zero-shot classification: each class becomes a caption through the templates."""

    label_fields: Annotated[tuple[str, ...], Grid(str, choices=LABEL_FIELDS)] = Field(
        LABEL_FIELDS, description="label and/or sublabel (emoji: category and subcategory)"
    )
    templates: Strings = Field(DEFAULT_TEMPLATES, description="caption templates with {label}; their embeddings are averaged")
    template_set: SafeName = Field("default", description="a name for the template list, shown in the results")
    methods: Annotated[tuple[str, ...], Grid(str, choices=CLASSIFY_METHODS)] = Field(
        CLASSIFY_METHODS, description=f"a subset of {list(CLASSIFY_METHODS)}"
    )
    vision_encoders: Encoders = Field(None, description="a subset of the sweep's (default: all)")
    text_encoders: Encoders = Field(None, description="a subset of the sweep's (default: all)")
    seeds: StudySeeds = Field(None, description="default: the sweep's seeds")

    @field_validator("templates")
    @classmethod
    def _has_label(cls, templates: tuple[str, ...]) -> tuple[str, ...]:
        for t in templates:
            if "{label}" not in t:
                raise _error("every template must contain {label}", got=t)
            try:
                t.format(label="x")
            except (KeyError, IndexError, ValueError) as e:
                raise _error(f"template is not a valid format string ({e})", got=t) from None
        return templates


class ConceptsModel(_Model):
    """Concept alignment (Li et al.): Procrustes from concept image means to word embeddings, k-fold, P@k."""

    domains: Optional[Strings] = Field(None, description="visual domains whose images a concept averages (default: all)")
    mappings: Annotated[tuple[str, ...], Grid(str, choices=("procrustes", "random_orthogonal", "shuffled_dictionary"))] = Field(
        ("procrustes", "random_orthogonal", "shuffled_dictionary"),
        description="procrustes, and the baselines random_orthogonal and shuffled_dictionary")
    retrievals: Annotated[tuple[str, ...], Grid(str, choices=("nn", "csls"))] = Field(
        ("nn", "csls"), description="nearest neighbour and/or CSLS")
    folds: Annotated[int, Strict(), Ge(2)] = Field(5, description="cross-validation folds over the concepts")
    seeds: Seeds = Field((0,), description="fold seeds")
    csls_k: Count = Field(10, description="neighbourhood size of CSLS")
    bins: Count = Field(3, description="quantile bins of each concept property in the breakdowns")
    vision_encoders: Encoders = Field(None, description="a subset of the sweep's (default: all)")
    text_encoders: Encoders = Field(None, description="a subset of the sweep's (default: all)")


class CurvesModel(_Model):
    """Accuracy against base size and query size over several seeds, and the stretching x selection ablation."""

    vision_encoders: Encoders = Field(None, description="default: the sweep's first vision encoder")
    text_encoders: Encoders = Field(None, description="default: the sweep's first text encoder")
    base_sizes: BaseSizes = Field((40, 80, 160, 320, 640), description="base sizes at the sweep's first query size")
    query_sizes: QuerySizes = Field((100, 250, 500, 1000), description="query sizes at the sweep's first base size")
    seeds: Seeds = Field((0, 1, 2), description="seeds of every curve point (the band is their spread)")
    methods: MatchingMethods = Field(("qap", "local_cka"), description="matching methods on the curves")
    ablation: Annotated[bool, Strict()] = Field(True, description="stretch on/off x random/kmeans_image base at the first sizes")


class LocalCKAModel(_Model):
    """Local-CKA matching and retrieval settings."""

    kernel: Kernel = Field("linear", description="linear or rbf")


def _off_is_none(value: Any) -> Any:
    return None if value is False else value


def _cka_schema(schema: dict) -> None:
    schema.setdefault("anyOf", []).insert(1, {"const": False})


class AnalysesModel(_Model):
    """What to compute for every vision x text encoder pair."""

    cka: Annotated[Optional[CKAModel], BeforeValidator(_off_is_none)] = Field(
        CKAModel(), json_schema_extra=_cka_schema,
        description="{kernels: [linear, rbf], debiased: false, shuffled: true, bootstrap: 0}; false or null: no CKA",
    )
    matching: MatchingMethods = Field(MATCHING_METHODS, description="training-free matching: a subset of [qap, local_cka]")
    retrieval: RetrievalMethods = Field(RETRIEVAL_METHODS, description="[local_cka] or []: R@1/5/10, both directions")
    baselines: Baselines = Field(
        (), description="a subset of [linear_regression, relative, procrustes, cosine], scored for matching and retrieval"
    )
    qap: QAPModel = Field(QAPModel(), description="{restarts: 20, kernel: linear|rbf, tol: 0.03}")
    local_cka: LocalCKAModel = Field(LocalCKAModel(), description="{kernel: linear|rbf}")
    linear_regression: LinearRegressionModel = Field(LinearRegressionModel(), description="{intercept: true|false}")
    retrieval_ties: Optional[Literal[RETRIEVAL_TIES]] = Field(
        None, description="against: a tie with the true partner counts as a miss; favour: as a hit (the paper's code)"
    )
    cross_domain: Annotated[Optional[CrossDomainModel], BeforeValidator(_off_is_none)] = Field(
        None, description="{pairs: [{base: google, query: twitter}], vision_encoders, text_encoders, seeds}; false: off")
    cross_lingual: Annotated[Optional[CrossLingualModel], BeforeValidator(_off_is_none)] = Field(
        None, description="{langs: [de, fr, ...], vision_encoders, text_encoders, multilingual, seeds}; false: off")
    classification: Annotated[Optional[ClassificationModel], BeforeValidator(_off_is_none)] = Field(
        None, description="{label_fields, templates, template_set, methods, vision_encoders, text_encoders, seeds}; false: off")
    curves: Annotated[Optional[CurvesModel], BeforeValidator(_off_is_none)] = Field(
        None, description="{vision_encoders, text_encoders, base_sizes, query_sizes, seeds, methods, ablation}; false: off")
    concepts: Annotated[Optional[ConceptsModel], BeforeValidator(_off_is_none)] = Field(
        None, description="{domains, mappings, retrievals, folds, seeds, csls_k, bins, vision_encoders, text_encoders}; false: off")

    @model_validator(mode="after")
    def _something_to_do(self) -> AnalysesModel:
        studies = (self.cross_domain, self.cross_lingual, self.classification, self.curves, self.concepts)
        if self.cka is None and not (self.matching or self.retrieval or self.baselines) and not any(studies):
            raise _error("nothing to compute (cka is off, matching, retrieval, baselines are empty and no study is on)")
        return self


class ExtractionModel(_Model):
    """How embeddings are computed."""

    shard_size: Count = Field(256, description="items per embedding shard")
    batch_size: Optional[Count] = Field(None, description="encoder batch size (default: 8 on CPU, 64 on CUDA)")


class SweepSpecModel(_Model):
    """A vlalign sweep: data sets x vision encoders x text encoders, the analyses to run on every pair, and the
    grid of matching/retrieval settings (every combination of the grid lists is one setting). Run it with
    `vlalign sweep FILE`; check it with `vlalign spec FILE`."""

    model_config = ConfigDict(
        extra="forbid", title="vlalign sweep spec",
        json_schema_extra={"$schema": "https://json-schema.org/draft/2020-12/schema"},
    )

    name: SafeName = Field(
        description="the sweep's name; the run id is <name>-<digest of the spec> unless --run-id is given; "
        "letters, digits, '.', '_', '-'"
    )
    datasets: list[DatasetModel] = Field(
        min_length=1, description="list of {name, format, annotations, images, split, lang, domains: [...], langs: [...]}"
    )
    vision_encoders: Strings = Field(description="catalog or hub names; every combination with the text encoders is analysed")
    text_encoders: Strings = Field(description="catalog or hub names; every combination with the vision encoders is analysed")
    analyses: AnalysesModel = Field(AnalysesModel(), description="cka, matching, retrieval, baselines, qap, local_cka")
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
    extraction: ExtractionModel = Field(
        ExtractionModel(), description="{shard_size: 256, batch_size: N} (batch size default: 8 on CPU, 64 on CUDA)"
    )

    @field_validator("datasets")
    @classmethod
    def _unique_names(cls, datasets: list[DatasetModel]) -> list[DatasetModel]:
        names = [ds.name for ds in datasets]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise _error(f"two entries have the same name {twice[0]!r}")
        return datasets

    @model_validator(mode="after")
    def _study_encoders(self) -> SweepSpecModel:
        for key in ("cross_domain", "cross_lingual", "classification", "curves", "concepts"):
            study = getattr(self.analyses, key)
            for side in ("vision_encoders", "text_encoders"):
                names = getattr(study, side, None) if study is not None else None
                known = getattr(self, side)
                extra = [n for n in (names or ()) if n not in known]
                if extra:
                    raise _error(f"analyses.{key}.{side}: {extra} are not in the sweep's {side} {list(known)}")
        return self

    def to_spec(self, source: Any) -> SweepSpec:
        an, ex = self.analyses, self.extraction
        cka = an.cka
        preset = PROTOCOLS[self.protocol]

        def pick(value: Any, key: str) -> Any:
            return preset[key] if value is None else value

        def study(model: Any, cls: type, **fixed: Any) -> Any:
            if model is None:
                return None
            d = {k: v for k, v in model.model_dump().items() if k in cls.__dataclass_fields__}
            for k, v in d.items():
                if isinstance(v, list):
                    d[k] = tuple(v)
            return cls(**{**d, **fixed})

        return SweepSpec(
            name=self.name,
            datasets=tuple(
                DatasetSpec(name=d.name, format=d.format, annotations=d.annotations, images=d.images,
                            domains=d.domains, langs=d.langs, split=d.split, lang=d.lang)
                for d in self.datasets
            ),
            vision_encoders=self.vision_encoders, text_encoders=self.text_encoders,
            cka=None if cka is None else CKASpec(cka.kernels, cka.debiased, cka.shuffled, cka.bootstrap, cka.mutual_knn),
            matching=an.matching, retrieval=an.retrieval, baselines=an.baselines,
            qap_restarts=an.qap.restarts, qap_kernel=pick(an.qap.kernel, "qap_kernel"), local_cka_kernel=an.local_cka.kernel,
            protocol=self.protocol, qap_tol=float(pick(an.qap.tol, "qap_tol")),
            stretch_scope=pick(self.stretch_scope, "stretch_scope"), kmeans_metric=pick(self.kmeans_metric, "kmeans_metric"),
            linreg_intercept=pick(an.linear_regression.intercept, "linreg_intercept"),
            retrieval_ties=pick(an.retrieval_ties, "retrieval_ties"),
            cross_domain=study(an.cross_domain, CrossDomainSpec, pairs=tuple(
                DomainPair(p.base, p.query, p.base_dataset, p.query_dataset) for p in an.cross_domain.pairs
            ) if an.cross_domain else ()),
            cross_lingual=study(an.cross_lingual, CrossLingualSpec),
            classification=study(an.classification, ClassificationSpec),
            curves=study(an.curves, CurvesSpec),
            concepts=study(an.concepts, ConceptsSpec),
            base_size=self.base_size, query_size=self.query_size, base_selection=self.base_selection,
            stretch=self.stretch, seeds=self.seeds, shard_size=ex.shard_size, batch_size=ex.batch_size,
            source=source,
        )


def json_schema() -> dict:
    """The JSON schema of a sweep spec, for editors (`vlalign spec --schema`)."""
    return SweepSpecModel.model_json_schema()


# -- pydantic's errors as one line a problem: "<key path>: <what was expected>; got <value>" ------------


def _submodels(annotation: Any) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in typing.get_args(annotation) for m in _submodels(arg)]


def _model_paths(model: type[BaseModel], prefix: tuple = ()) -> dict[tuple, type[BaseModel]]:
    out = {prefix: model}
    for name, f in model.model_fields.items():
        for sub in _submodels(f.annotation):
            out.update(_model_paths(sub, prefix + (name,)))
    return out


_MODELS = _model_paths(SweepSpecModel)  # key path without list indices -> model


def _keys(loc: tuple) -> tuple:
    return tuple(p for p in loc if not isinstance(p, int))


def _lower_bound(loc: tuple) -> int | None:
    """The `ge` bound of the field at `loc`, if it has one (for "expected an integer >= N")."""
    model = _MODELS.get(_keys(loc)[:-1])
    f = model.model_fields.get(loc[-1]) if model and loc and isinstance(loc[-1], str) else None
    if f is None:
        return None

    def scan(things: Any) -> int | None:
        for t in things:
            if isinstance(t, Ge):
                return t.ge
            found = scan(typing.get_args(t))
            if found is not None:
                return found
        return None

    return scan([*f.metadata, f.annotation])


def _path(loc: tuple, where: str) -> str:
    out = ""
    for p in loc:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out or where


def _show(v: Any, limit: int = 100) -> str:
    """A value as the user wrote it, roughly: true/false/null, quoted strings, lists; cut to `limit`."""
    if v is True or v is False:
        s = "true" if v else "false"
    elif v is None:
        s = "null"
    elif isinstance(v, (list, tuple)):
        s = "[" + ", ".join(_show(x, limit) for x in v) + "]"
    elif isinstance(v, dict):
        s = "{" + ", ".join(f"{_show(k, limit)}: {_show(x, limit)}" for k, x in v.items()) + "}"
    else:
        s = repr(v)
    return s if len(s) <= limit else s[: limit - 3] + "..."


_SCALAR_ERRORS = {"int_type", "bool_type", "string_type", "literal_error", "greater_than_equal"}


def _expected(e: dict) -> str:
    typ, loc, ctx = e["type"], tuple(e["loc"]), e.get("ctx") or {}
    if typ in ("int_type", "int_from_float", "int_parsing"):
        ge = _lower_bound(loc)
        return "expected an integer" + (f" >= {ge}" if ge is not None else "")
    if typ == "greater_than_equal":
        return f"expected an integer >= {ctx['ge']}"
    if typ in ("bool_type", "bool_parsing"):
        return "expected true or false"
    if typ == "string_type":
        return "expected a string"
    if typ == "literal_error":
        return f"expected {ctx['expected']}"
    if typ in ("model_type", "model_attributes_type", "dict_type"):
        model = _MODELS.get(_keys(loc))
        return "expected a mapping" + (f" with keys {sorted(model.model_fields)}" if model else "")
    if typ == "list_type":
        return "expected a list"
    if typ == "too_short":
        return "expected a non-empty list"
    return " ".join(e["msg"].removeprefix("Value error, ").split())  # anything else: pydantic's words, one line


def _problems(err: ValidationError, where: str) -> list[str]:
    lines: list[Any] = []
    unknown: dict[tuple, list] = {}  # parent path -> unknown keys, reported as one line at the first one
    for e in err.errors(include_url=False):
        typ, loc, value = e["type"], tuple(e["loc"]), e.get("input")
        if typ in ("extra_forbidden", "invalid_key"):  # invalid_key: not a string, e.g. `1: x`
            if loc[:-1] not in unknown:
                unknown[loc[:-1]] = []
                lines.append(loc[:-1])
            unknown[loc[:-1]].append(loc[-1] if typ == "extra_forbidden" else value)
            continue
        if typ == "missing":
            lines.append(f"{_path(loc[:-1], where)}: missing required key {loc[-1]!r}")
            continue
        path = _path(loc, where)
        if typ == "unsafe_name":
            lines.append(name_error(value, path))
            continue
        if typ == "spec":
            msg, got = e["ctx"]["detail"], e["ctx"].get("got", _NOTHING)
        else:
            msg, got = _expected(e), value
            if typ in _SCALAR_ERRORS and isinstance(value, (list, tuple)):
                msg += " (one value, not a list)"
        lines.append(f"{path}: {msg}" + ("" if got is _NOTHING else f"; got {_show(got)}"))
    out = []
    for line in lines:
        if isinstance(line, tuple):
            model = _MODELS.get(_keys(line))
            allowed = f"; allowed: {sorted(model.model_fields)}" if model else ""
            keys = ", ".join(_show(k) for k in sorted(unknown[line], key=str))
            line = f"{_path(line, where)}: unknown key(s) [{keys}]{allowed}"
        out.append(line)
    return out


def parse_spec(doc: Any, where: str = "spec") -> SweepSpec:
    """Validate a spec mapping (structure and values, no I/O) and return a SweepSpec. Every problem is
    reported, one line each, in one SpecError; `where` names the top level in messages."""
    try:
        model = SweepSpecModel.model_validate(doc)
    except ValidationError as e:
        raise SpecError("\n".join(_problems(e, where))) from None
    return model.to_spec(doc)


def load_spec(path: str | Path | None = None) -> SweepSpec:
    """Read and validate a spec file (the built-in default if ``path`` is None)."""
    path = Path(path) if path else DEFAULT_SPEC
    if not path.is_file():
        raise SpecError(f"spec file {path} does not exist")
    try:
        doc = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise SpecError(f"{path}: not valid YAML: {e}") from e
    try:
        return parse_spec(doc)
    except SpecError as e:
        raise SpecError("\n".join(f"{path}: {line}" for line in str(e).splitlines())) from None


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
        from vlalign.datasets.readers import EMOJI_DOMAINS

        domains |= set(EMOJI_DOMAINS)
    langs = set(spec.cross_lingual.langs) if spec.cross_lingual else set()
    return domains, langs


def main_selections(spec: SweepSpec, sizes: dict) -> dict[str, list[tuple[str, str]]]:
    """{data set: [(domain, lang)]}: the selections of the main grid (the data sets' own domains and langs)."""
    out = {}
    for ds in spec.datasets:
        out[ds.name] = sorted((d, lang) for d, lang in sizes[ds.name]
                              if (not ds.domains or d in ds.domains) and (not ds.langs or lang in ds.langs))
    return out


def validate_against_world(spec: SweepSpec) -> dict[str, dict[tuple[str, str], int]]:
    """Checks that need the catalog and the data: encoders exist (and have the right modality), data sets
    read, base + query fit in every selection, the studies' domains, languages and labels exist.
    Returns {dataset: {(domain, lang): number of pairs}} for the main grid and the studies' selections.

    Each data set's index is read once per process (vlalign.datasets.readers.read_dataset keeps the read while its files
    are unchanged): a second validation, and the ingest that follows, reuse it. Image bytes are not read here."""
    from vlalign.datasets.readers import read_dataset
    from vlalign.encoders import EncoderError, preflight

    try:
        preflight(list(spec.vision_encoders), modality="vision")
        preflight(list(spec.text_encoders), modality="text")
    except EncoderError as e:
        raise SpecError(f"vision_encoders/text_encoders: {e}") from None
    sizes: dict[str, dict[tuple[str, str], int]] = {}
    labels: dict[str, dict[str, set]] = {}
    for i, ds in enumerate(spec.datasets):
        source = ds.source()
        extra_domains, extra_langs = study_parts(spec, ds)
        domains = sorted(set(ds.domains) | extra_domains) if ds.domains else None
        langs = sorted(set(ds.langs) | extra_langs) if ds.langs else None
        try:
            items = read_dataset(source, domains, langs).items
        except ValueError as e:
            raise SpecError(f"datasets[{i}]: {e}") from None
        counts: dict[tuple[str, str], set] = {}
        labels[ds.name] = {"label": set(), "sublabel": set()}
        for dom, lang, img, lab, sub in zip(*(items[c].to_pylist() for c in ("domain", "lang", "image_id", "label", "sublabel"))):
            counts.setdefault((dom, lang), set()).add(img)
            if (not ds.domains or dom in ds.domains) and (not ds.langs or lang in ds.langs):
                labels[ds.name]["label"].add(lab)
                labels[ds.name]["sublabel"].add(sub)
        if not counts:
            raise SpecError(f"datasets[{i}] ({ds.name}): no items for domains={ds.domains} langs={ds.langs}")
        sizes[ds.name] = {k: len(v) for k, v in counts.items()}
        for lang in sorted(extra_langs):
            if not any(lg == lang for _, lg in counts):
                raise SpecError(f"analyses.cross_lingual.langs: data set {ds.name!r} has no captions in {lang!r} "
                                f"(it has {sorted({lg for _, lg in counts})})")
    main = main_selections(spec, sizes)
    for ds in spec.datasets:
        need = max(spec.base_size) + max(spec.query_size)
        if spec.has_matching or spec.cross_domain or spec.cross_lingual or spec.classification:
            for (dom, lang), n in sizes[ds.name].items():
                if need > n:
                    raise SpecError(
                        f"base_size + query_size: {max(spec.base_size)} + {max(spec.query_size)} = {need} is larger "
                        f"than data set {ds.name!r} (domain {dom}, lang {lang}: {n} pairs)"
                    )
        if spec.curves:
            n = min(sizes[ds.name][sel] for sel in main[ds.name])
            for key, b, q in (("base_sizes", max(spec.curves.base_sizes), spec.query_size[0]),
                              ("query_sizes", spec.base_size[0], max(spec.curves.query_sizes))):
                if b + q > n:
                    raise SpecError(f"analyses.curves.{key}: base {b} + query {q} = {b + q} is larger than data set "
                                    f"{ds.name!r} ({n} pairs)")
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


def _spec_digest(text: str) -> str:
    """The run-id digest: sha256 of the spec's canonical JSON, 10 hex characters (unchanged since the first runs)."""
    h = hasher()
    h.update(text.encode())
    return finish(h, 10)
