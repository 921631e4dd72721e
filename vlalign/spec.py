"""Sweep specs: a YAML file naming data sets, encoders, analyses and the settings grid.

Validated in full before any work starts; every error names the key (as a dotted path) and what was
expected. See vlalign/sweeps/default.yaml for a commented example, and the README for every key.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

DEFAULT_SPEC = Path(__file__).resolve().parent / "sweeps" / "default.yaml"

KERNELS = ("linear", "rbf")
MATCHING_METHODS = ("qap", "local_cka")
RETRIEVAL_METHODS = ("local_cka",)
BASELINES = ("linear_regression", "relative", "procrustes", "cosine")
BASE_SELECTIONS = ("random", "kmeans_image", "kmeans_text")


class SpecError(ValueError):
    """A sweep spec that is not valid; the message names the key and what was expected."""


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
        return hashlib.sha256(self.to_json().encode()).hexdigest()[:10]

    @property
    def default_run_id(self) -> str:
        return f"{self.name}-{self.digest}"

    @property
    def has_matching(self) -> bool:
        return bool(self.matching or self.retrieval or self.baselines)


_TOP_KEYS = {
    "name", "datasets", "vision_encoders", "text_encoders", "analyses", "base_size", "query_size",
    "base_selection", "stretch", "seeds", "extraction",
}
_DATASET_KEYS = {"name", "format", "annotations", "images", "domains", "langs"}
_ANALYSES_KEYS = {"cka", "matching", "retrieval", "baselines", "qap", "local_cka"}
_CKA_KEYS = {"kernels", "debiased", "shuffled", "bootstrap"}
_EXTRACTION_KEYS = {"shard_size", "batch_size"}


def _check_keys(d: Any, allowed: set[str], where: str) -> dict:
    if not isinstance(d, dict):
        raise SpecError(f"{where}: expected a mapping with keys {sorted(allowed)}, got {type(d).__name__}")
    unknown = sorted(set(d) - allowed)
    if unknown:
        raise SpecError(f"{where}: unknown key(s) {unknown}; allowed: {sorted(allowed)}")
    return d


def _list(v: Any, key: str, typ: type, choices: tuple | None = None, allow_empty: bool = False) -> tuple:
    items = v if isinstance(v, list) else [v]
    if not items and not allow_empty:
        raise SpecError(f"{key}: empty list; the grid needs at least one value")
    out = []
    for x in items:
        if typ is int and (isinstance(x, bool) or not isinstance(x, int)):
            raise SpecError(f"{key}: expected an integer or a list of integers, got {x!r}")
        if typ is bool and not isinstance(x, bool):
            raise SpecError(f"{key}: expected true/false or a list of them, got {x!r}")
        if typ is str and not isinstance(x, str):
            raise SpecError(f"{key}: expected a string or a list of strings, got {x!r}")
        if choices is not None and x not in choices:
            raise SpecError(f"{key}: unknown value {x!r}; expected one of {list(choices)}")
        out.append(x)
    if len(set(out)) != len(out):
        raise SpecError(f"{key}: duplicate values in {out}")
    return tuple(out)


def parse_spec(doc: Any, where: str = "spec") -> SweepSpec:
    """Validate a spec mapping (structure and values, no I/O) and return a SweepSpec."""
    d = _check_keys(doc, _TOP_KEYS, where)
    for key in ("name", "datasets", "vision_encoders", "text_encoders"):
        if key not in d:
            raise SpecError(f"{where}: missing required key {key!r}")
    if not isinstance(d["name"], str) or not d["name"].replace("-", "").replace("_", "").isalnum():
        raise SpecError(f"name: expected a word of letters, digits, '-' or '_', got {d['name']!r}")

    if not isinstance(d["datasets"], list) or not d["datasets"]:
        raise SpecError("datasets: expected a non-empty list of data sets")
    datasets = []
    for i, ds in enumerate(d["datasets"]):
        w = f"datasets[{i}]"
        ds = _check_keys(ds, _DATASET_KEYS, w)
        if not isinstance(ds.get("name"), str):
            raise SpecError(f"{w}.name: expected the data set's name")
        fmt = ds.get("format", "emoji" if ds["name"] == "emoji" else "coco")
        if fmt not in ("emoji", "coco"):
            raise SpecError(f"{w}.format: expected 'emoji' or 'coco', got {fmt!r}")
        if fmt == "coco" and not (ds.get("annotations") and ds.get("images")):
            raise SpecError(f"{w}: format 'coco' needs 'annotations' (a JSON file) and 'images' (a folder)")
        datasets.append(
            DatasetSpec(
                name=ds["name"], format=fmt, annotations=ds.get("annotations"), images=ds.get("images"),
                domains=_list(ds["domains"], f"{w}.domains", str) if "domains" in ds else None,
                langs=_list(ds["langs"], f"{w}.langs", str) if "langs" in ds else None,
            )
        )
    if len({ds.name for ds in datasets}) != len(datasets):
        raise SpecError("datasets: two entries have the same name")

    vision = _list(d["vision_encoders"], "vision_encoders", str)
    text = _list(d["text_encoders"], "text_encoders", str)

    an = _check_keys(d.get("analyses", {}), _ANALYSES_KEYS, "analyses")
    cka = None
    if an.get("cka", {}) is not None and an.get("cka", {}) is not False:
        c = _check_keys(an.get("cka", {}), _CKA_KEYS, "analyses.cka")
        boot = c.get("bootstrap", 0)
        if isinstance(boot, bool) or not isinstance(boot, int) or boot < 0:
            raise SpecError(f"analyses.cka.bootstrap: expected a number of resamples >= 0, got {boot!r}")
        for k in ("debiased", "shuffled"):
            if k in c and not isinstance(c[k], bool):
                raise SpecError(f"analyses.cka.{k}: expected true or false, got {c[k]!r}")
        cka = CKASpec(
            kernels=_list(c.get("kernels", ["linear", "rbf"]), "analyses.cka.kernels", str, KERNELS),
            debiased=c.get("debiased", False), shuffled=c.get("shuffled", True), bootstrap=boot,
        )
    matching = _list(an.get("matching", ["qap", "local_cka"]), "analyses.matching", str, MATCHING_METHODS, True)
    retrieval = _list(an.get("retrieval", ["local_cka"]), "analyses.retrieval", str, RETRIEVAL_METHODS, True)
    baselines = _list(an.get("baselines", []), "analyses.baselines", str, BASELINES, True)
    qap = _check_keys(an.get("qap", {}), {"restarts", "kernel"}, "analyses.qap")
    restarts = qap.get("restarts", 20)
    if isinstance(restarts, bool) or not isinstance(restarts, int) or restarts < 1:
        raise SpecError(f"analyses.qap.restarts: expected an integer >= 1, got {restarts!r}")
    qap_kernel = _list(qap.get("kernel", "linear"), "analyses.qap.kernel", str, KERNELS)[0]
    lc = _check_keys(an.get("local_cka", {}), {"kernel"}, "analyses.local_cka")
    lc_kernel = _list(lc.get("kernel", "linear"), "analyses.local_cka.kernel", str, KERNELS)[0]

    base_size = _list(d.get("base_size", 320), "base_size", int)
    query_size = _list(d.get("query_size", 500), "query_size", int)
    for key, vals, lo in (("base_size", base_size, 2), ("query_size", query_size, 1)):
        if any(v < lo for v in vals):
            raise SpecError(f"{key}: expected integers >= {lo}, got {list(vals)}")
    ex = _check_keys(d.get("extraction", {}), _EXTRACTION_KEYS, "extraction")
    for k, default in (("shard_size", 256), ("batch_size", None)):
        v = ex.get(k, default)
        if k == "batch_size" and v is None:
            continue
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise SpecError(f"extraction.{k}: expected an integer >= 1, got {v!r}")
    if cka is None and not (matching or retrieval or baselines):
        raise SpecError("analyses: nothing to compute (cka is off and matching, retrieval, baselines are empty)")
    return SweepSpec(
        name=d["name"], datasets=tuple(datasets), vision_encoders=vision, text_encoders=text, cka=cka,
        matching=matching, retrieval=retrieval, baselines=baselines, qap_restarts=restarts, qap_kernel=qap_kernel,
        local_cka_kernel=lc_kernel, base_size=base_size, query_size=query_size,
        base_selection=_list(d.get("base_selection", "kmeans_image"), "base_selection", str, BASE_SELECTIONS),
        stretch=_list(d.get("stretch", True), "stretch", bool),
        seeds=_list(d.get("seeds", 0), "seeds", int),
        shard_size=ex.get("shard_size", 256), batch_size=ex.get("batch_size"), source=doc,
    )


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
        raise SpecError(f"{path}: {e}") from None


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
