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
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, Strict, ValidationError, field_validator, model_validator
from pydantic_core import PydanticCustomError, core_schema

from .digest import finish, hasher
from .names import SafeName, name_error

DEFAULT_SPEC = Path(__file__).resolve().parent / "sweeps" / "default.yaml"

KERNELS = ("linear", "rbf")
MATCHING_METHODS = ("qap", "local_cka")
RETRIEVAL_METHODS = ("local_cka",)
BASELINES = ("linear_regression", "relative", "procrustes", "cosine")
BASE_SELECTIONS = ("random", "kmeans_image", "kmeans_text")
FORMATS = ("emoji", "coco")


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


@dataclass(frozen=True)
class CKASpec:
    kernels: tuple[str, ...] = ("linear", "rbf")
    debiased: bool = False
    shuffled: bool = True
    bootstrap: int = 0


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
        d = asdict(self)
        d.pop("source")
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
    """One data set: the embedded emoji set, or COCO-format captions and images."""

    name: SafeName = Field(description="the data set's name ('emoji' is embedded); letters, digits, '.', '_', '-'")
    format: Optional[Literal[FORMATS]] = Field(
        None, description="emoji or coco (default: emoji for the data set named emoji, coco otherwise)"
    )
    annotations: Optional[Annotated[str, Strict()]] = Field(None, description="coco: the captions annotations JSON file")
    images: Optional[Annotated[str, Strict()]] = Field(None, description="coco: the image folder")
    domains: Optional[Strings] = Field(None, description="visual domains to use (emoji: google, twitter); default: all")
    langs: Optional[Strings] = Field(
        None, description="caption languages to use (emoji: en de es fr it ja ko pl ru zh); default: all"
    )

    @model_validator(mode="after")
    def _format_and_files(self) -> DatasetModel:
        if self.format is None:
            self.format = "emoji" if self.name == "emoji" else "coco"
        if self.format == "coco" and not (self.annotations and self.images):
            raise _error("format 'coco' needs 'annotations' (a JSON file) and 'images' (a folder)")
        return self


class CKAModel(_Model):
    """Centered kernel alignment of every vision x text encoder pair."""

    kernels: Kernels = Field(KERNELS, description="linear and/or rbf (rbf uses the paper's median bandwidth)")
    debiased: Annotated[bool, Strict()] = Field(False, description="use the debiased HSIC estimator")
    shuffled: Annotated[bool, Strict()] = Field(True, description="also CKA with a seeded random pairing (the baseline)")
    bootstrap: Annotated[int, Strict(), Ge(0)] = Field(
        0, description=">0: that many resamples for a 95% confidence interval"
    )


class QAPModel(_Model):
    """QAP matching settings."""

    restarts: Count = Field(20, description="random restarts of the QAP solver")
    kernel: Kernel = Field("linear", description="linear or rbf")


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
    qap: QAPModel = Field(QAPModel(), description="{restarts: 20, kernel: linear|rbf}")
    local_cka: LocalCKAModel = Field(LocalCKAModel(), description="{kernel: linear|rbf}")

    @model_validator(mode="after")
    def _something_to_do(self) -> AnalysesModel:
        if self.cka is None and not (self.matching or self.retrieval or self.baselines):
            raise _error("nothing to compute (cka is off and matching, retrieval, baselines are empty)")
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
        min_length=1, description="list of {name, format: emoji|coco, annotations, images, domains: [...], langs: [...]}"
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

    def to_spec(self, source: Any) -> SweepSpec:
        an, ex = self.analyses, self.extraction
        cka = an.cka
        return SweepSpec(
            name=self.name,
            datasets=tuple(
                DatasetSpec(name=d.name, format=d.format, annotations=d.annotations, images=d.images,
                            domains=d.domains, langs=d.langs)
                for d in self.datasets
            ),
            vision_encoders=self.vision_encoders, text_encoders=self.text_encoders,
            cka=None if cka is None else CKASpec(cka.kernels, cka.debiased, cka.shuffled, cka.bootstrap),
            matching=an.matching, retrieval=an.retrieval, baselines=an.baselines,
            qap_restarts=an.qap.restarts, qap_kernel=an.qap.kernel, local_cka_kernel=an.local_cka.kernel,
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


def validate_against_world(spec: SweepSpec) -> dict[str, dict[tuple[str, str], int]]:
    """Checks that need the catalog and the data: encoders exist (and have the right modality), data sets
    read, base + query fit in every selection. Returns {dataset: {(domain, lang): number of pairs}}."""
    from .encoders import EncoderError, preflight
    from .readers import DatasetSource, read_dataset

    try:
        preflight(list(spec.vision_encoders), modality="vision")
        preflight(list(spec.text_encoders), modality="text")
    except EncoderError as e:
        raise SpecError(f"vision_encoders/text_encoders: {e}") from None
    sizes: dict[str, dict[tuple[str, str], int]] = {}
    for i, ds in enumerate(spec.datasets):
        source = DatasetSource(ds.name, ds.format, ds.annotations, ds.images)
        try:
            items = read_dataset(source, list(ds.domains or []) or None, list(ds.langs or []) or None).items
        except ValueError as e:
            raise SpecError(f"datasets[{i}]: {e}") from None
        counts: dict[tuple[str, str], set] = {}
        for dom, lang, img in zip(items["domain"].to_pylist(), items["lang"].to_pylist(), items["image_id"].to_pylist()):
            counts.setdefault((dom, lang), set()).add(img)
        if not counts:
            raise SpecError(f"datasets[{i}] ({ds.name}): no items for domains={ds.domains} langs={ds.langs}")
        sizes[ds.name] = {k: len(v) for k, v in counts.items()}
        if spec.has_matching:
            need = max(spec.base_size) + max(spec.query_size)
            for (dom, lang), n in sizes[ds.name].items():
                if need > n:
                    raise SpecError(
                        f"base_size + query_size: {max(spec.base_size)} + {max(spec.query_size)} = {need} is larger "
                        f"than data set {ds.name!r} (domain {dom}, lang {lang}: {n} pairs)"
                    )
    return sizes


def _spec_digest(text: str) -> str:
    """The run-id digest: sha256 of the spec's canonical JSON, 10 hex characters (unchanged since the first runs)."""
    h = hasher()
    h.update(text.encode())
    return finish(h, 10)
