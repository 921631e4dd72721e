"""The field types of the sweep spec format that pydantic's own types do not express with this project's
messages: :class:`Grid` (one value or a list of distinct values) and :data:`NonEmpty` (a non-empty list of mappings).
Their errors are spec errors (vlalign.engine.spec_errors): one line that names the key and what was expected."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal, Optional, TypeVar

from annotated_types import Ge
from pydantic import AfterValidator, BaseModel, ConfigDict, Strict
from pydantic_core import core_schema

from vlalign.engine.spec_errors import show, spec_error
from vlalign.methods.kernels import KERNELS


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
        if self.kind is float:
            return "a number or a list of numbers"
        return "a string or a list of strings" + (f", each one of {list(self.choices)}" if self.choices else "")

    def _typed(self, x: Any) -> bool:
        if self.kind is int:
            return isinstance(x, int) and not isinstance(x, bool) and (self.ge is None or x >= self.ge)
        if self.kind is float:
            return isinstance(x, (int, float)) and not isinstance(x, bool) and x == x  # a number, not NaN
        return isinstance(x, self.kind)  # bool: only true/false; str: only strings

    def validate(self, value: Any) -> tuple:
        items = list(value) if isinstance(value, (list, tuple)) else [value]
        if not items and not self.allow_empty:
            raise spec_error("empty list; expected one value or a non-empty list")
        for x in items:
            if not self._typed(x):
                raise spec_error(f"expected {self.expected()}", got=x)
            if self.choices is not None and x not in self.choices:
                raise spec_error(f"unknown value {show(x)}; expected one of {list(self.choices)}")
        if len(set(items)) != len(items):
            raise spec_error("expected distinct values", got=value)
        return tuple(float(x) for x in items) if self.kind is float else tuple(items)

    def __get_pydantic_core_schema__(self, source: Any, handler: Any) -> core_schema.CoreSchema:
        return core_schema.no_info_plain_validator_function(self.validate)

    def __get_pydantic_json_schema__(self, schema: Any, handler: Any) -> dict:
        if self.kind is int:
            item: dict = {"type": "integer", **({"minimum": self.ge} if self.ge is not None else {})}
        elif self.kind is bool:
            item = {"type": "boolean"}
        elif self.kind is float:
            item = {"type": "number"}
        else:
            item = {"type": "string", **({"enum": list(self.choices)} if self.choices else {})}
        many = {"type": "array", "items": item, "uniqueItems": True, **({} if self.allow_empty else {"minItems": 1})}
        return {"anyOf": [item, many]}


def _non_empty(items: tuple) -> tuple:
    if not items:
        raise spec_error("expected a non-empty list", got=items)
    return items


T = TypeVar("T")
NonEmpty = Annotated[tuple[T, ...], AfterValidator(_non_empty)]  # a list of mappings, checked after its items


MATCHING_METHODS = ("qap", "local_cka")
RETRIEVAL_METHODS = ("local_cka",)
BASELINES = ("linear_regression", "relative", "procrustes", "cosine")
BASE_SELECTIONS = ("random", "kmeans_image", "kmeans_text")

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
Encoders = Optional[Strings]
StudySeeds = Optional[Seeds]


class _Section(BaseModel):
    """A mapping of the spec: frozen, unknown keys refused."""

    model_config = ConfigDict(extra="forbid", frozen=True)


OUTPUT_LAYER = -1  # the encoder's own output (its embedding as the sweep has always stored it); inner layers: 0, 1, ...


class Layers:
    """The layers of an encoder list to embed: ``last`` (the encoder's output, the default), ``all`` (every inner
    layer and the output), a list of indices (0, 1, ...: inner layers; -1: the output) or ``{every: k}`` (inner
    layers 0, k, 2k, ... and the output). Validated to one of: "last", "all", a tuple of distinct ints, or
    :class:`Every`. Which indices exist depends on the model: checked against it before work starts
    (vlalign.engine.layers)."""

    expected = "last, all, a list of layer indices (0, 1, ...; -1: the output) or {every: k}"

    def validate(self, value: Any) -> Any:
        if value in ("last", "all"):
            return value
        if isinstance(value, dict):
            k = value.get("every")
            if set(value) != {"every"} or not isinstance(k, int) or isinstance(k, bool) or k < 1:
                raise spec_error(f"expected {self.expected} (every: an integer >= 1)", got=value)
            return Every(k)
        if isinstance(value, (list, tuple)) and value:
            if not all(isinstance(i, int) and not isinstance(i, bool) and i >= OUTPUT_LAYER for i in value):
                raise spec_error(f"expected {self.expected}", got=value)
            if len(set(value)) != len(value):
                raise spec_error("expected distinct layer indices", got=value)
            return tuple(value)
        raise spec_error(f"expected {self.expected}", got=value)

    def __get_pydantic_core_schema__(self, source: Any, handler: Any) -> core_schema.CoreSchema:
        return core_schema.no_info_plain_validator_function(self.validate)

    def __get_pydantic_json_schema__(self, schema: Any, handler: Any) -> dict:
        return {"anyOf": [{"type": "string", "enum": ["last", "all"]},
                          {"type": "array", "items": {"type": "integer", "minimum": OUTPUT_LAYER}, "minItems": 1,
                           "uniqueItems": True},
                          {"type": "object", "properties": {"every": {"type": "integer", "minimum": 1}},
                           "required": ["every"], "additionalProperties": False}]}


@dataclass(frozen=True)
class Every:
    """``{every: k}`` of a layers key."""

    k: int

    def plain(self) -> dict:
        return {"every": self.k}


def plain_layers(value: Any) -> Any:
    """A layers value as plain data (the run id's canonical JSON): {every: k} as a mapping, a list as a list."""
    if isinstance(value, Every):
        return value.plain()
    return list(value) if isinstance(value, tuple) else value


def expanded_size(doc: Any, limit: int) -> int:
    """How many values ``doc`` holds with every shared (aliased) list or mapping counted each time it appears, up to
    ``limit`` (then the count stops). Linear in the distinct nodes: a YAML alias bomb is measured, not expanded."""
    sizes: dict[int, int] = {}
    order, todo = [], [doc]
    while todo:  # the distinct containers, parents before children (iterative: deep nesting is no problem)
        node = todo.pop()
        if isinstance(node, (dict, list)) and id(node) not in sizes:
            sizes[id(node)] = 0
            order.append(node)
            todo.extend(node.values() if isinstance(node, dict) else node)
    for node in reversed(order):  # children first
        children = node.values() if isinstance(node, dict) else node
        sizes[id(node)] = min(limit, 1 + sum(sizes.get(id(c), 1) for c in children))
    return sizes.get(id(doc), 1)
