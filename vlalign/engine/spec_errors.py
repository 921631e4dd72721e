"""A sweep spec's problems as one line each: "<key path>: <what was expected>; got <value>".

pydantic reports a bad spec as a ValidationError whose entries name a location (a tuple of keys and list
indices), an error type and pydantic's own words. :func:`problems` turns each entry into one line in this
project's words, with the key path as the user wrote it (``analyses.qap.kernel``, ``datasets[0].name``);
unknown keys are gathered into one line per mapping, with the keys it allows. The spec's validators raise
:func:`spec_error` for messages that are ours from the start.
"""

from __future__ import annotations

import functools
import typing
from typing import Any

from annotated_types import Ge
from pydantic import BaseModel, ValidationError
from pydantic_core import PydanticCustomError

from vlalign.datalake.names import name_error


class SpecError(ValueError):
    """A sweep spec that is not valid; the message names the key and what was expected (a line a problem)."""


_NOTHING = object()


def spec_error(detail: str, got: Any = _NOTHING) -> PydanticCustomError:
    """An error whose message is ours; `got` (if given) is the offending value, shown after the message."""
    return PydanticCustomError("spec", "{detail}", {"detail": detail} if got is _NOTHING else {"detail": detail, "got": got})


def show(v: Any, limit: int = 100) -> str:
    """A value as the user wrote it, roughly: true/false/null, quoted strings, lists; cut to `limit`."""
    if v is True or v is False:
        s = "true" if v else "false"
    elif v is None:
        s = "null"
    elif isinstance(v, (list, tuple)):
        s = "[" + ", ".join(show(x, limit) for x in v) + "]"
    elif isinstance(v, dict):
        s = "{" + ", ".join(f"{show(k, limit)}: {show(x, limit)}" for k, x in v.items()) + "}"
    else:
        s = repr(v)
    return s if len(s) <= limit else s[: limit - 3] + "..."


def _submodels(annotation: Any) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in typing.get_args(annotation) for m in _submodels(arg)]


@functools.cache
def _model_paths(model: type[BaseModel], prefix: tuple = ()) -> dict[tuple, type[BaseModel]]:
    """{key path without list indices: the model of the mapping there}, from ``model`` down."""
    out = {prefix: model}
    for name, f in model.model_fields.items():
        for sub in _submodels(f.annotation):
            out.update(_model_paths(sub, prefix + (name,)))
    return out


def _keys(loc: tuple) -> tuple:
    return tuple(p for p in loc if not isinstance(p, int))


def _lower_bound(models: dict, loc: tuple) -> int | None:
    """The `ge` bound of the field at `loc`, if it has one (for "expected an integer >= N")."""
    model = models.get(_keys(loc)[:-1])
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


_SCALAR_ERRORS = {"int_type", "bool_type", "string_type", "literal_error", "greater_than_equal"}


def _expected(e: dict, models: dict) -> str:
    typ, loc, ctx = e["type"], tuple(e["loc"]), e.get("ctx") or {}
    if typ in ("int_type", "int_from_float", "int_parsing"):
        ge = _lower_bound(models, loc)
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
        model = models.get(_keys(loc))
        return "expected a mapping" + (f" with keys {sorted(model.model_fields)}" if model else "")
    if typ in ("list_type", "tuple_type"):
        return "expected a list"
    if typ == "too_short":
        return "expected a non-empty list"
    return " ".join(e["msg"].removeprefix("Value error, ").split())  # anything else: pydantic's words, one line


def problems(err: ValidationError, root: type[BaseModel], where: str) -> list[str]:
    """The lines of a ValidationError of model ``root``; ``where`` names the top level (e.g. "spec")."""
    models = _model_paths(root)
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
            msg, got = _expected(e, models), value
            if typ in _SCALAR_ERRORS and isinstance(value, (list, tuple)):
                msg += " (one value, not a list)"
        lines.append(f"{path}: {msg}" + ("" if got is _NOTHING else f"; got {show(got)}"))
    out = []
    for line in lines:
        if isinstance(line, tuple):
            model = models.get(_keys(line))
            allowed = f"; allowed: {sorted(model.model_fields)}" if model else ""
            keys = ", ".join(show(k) for k in sorted(unknown[line], key=str))
            line = f"{_path(line, where)}: unknown key(s) [{keys}]{allowed}"
        out.append(line)
    return out
