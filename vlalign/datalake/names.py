"""The one definition of a safe name: sweep names, data set names and run ids become folder and file names
in the lake (``results/cka/run=<id>/``, ``items/dataset=<name>/``), so they must not be able to climb out
of it (``../x``), make sub-folders (``a/b``), hide (``.x``) or need quoting (``x y``).

    check_name(value, "data set name")   plain code (the CLI, the lake): the value, or a ValueError
    SafeName                             a pydantic type (the sweep spec's ``name`` and ``datasets[].name``)
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import PlainValidator, WithJsonSchema
from pydantic_core import PydanticCustomError

SAFE_NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"
"""A letter or digit, then at most 127 letters, digits, '.', '_' or '-'; and no '..' anywhere."""

NAME_RULE = (
    "use letters, digits, '.', '_' or '-' (at most 128 characters, not starting with '.', '_' or '-', "
    "and without '..')"
)

_SAFE = re.compile(SAFE_NAME)


def is_safe_name(value: Any) -> bool:
    # fullmatch: '$' alone would also accept a trailing newline
    return isinstance(value, str) and _SAFE.fullmatch(value) is not None and ".." not in value


def name_error(value: Any, what: str) -> str:
    """The message for an unsafe name: ``<what>: not a safe name, got '<value>'; use letters, ...``."""
    return f"{what}: not a safe name, got {value!r}; {NAME_RULE}"


def check_name(value: str, what: str) -> str:
    """Return ``value`` if it is a safe name, else raise ValueError naming ``what`` (e.g. "run id")."""
    if not is_safe_name(value):
        raise ValueError(name_error(value, what))
    return value


def _validate(value: Any) -> str:
    if not is_safe_name(value):
        # the spec's error formatter turns this into name_error(value, <key path>)
        raise PydanticCustomError("unsafe_name", "not a safe name; {rule}", {"rule": NAME_RULE})
    return value


SafeName = Annotated[
    str,
    PlainValidator(_validate),
    WithJsonSchema(
        {"type": "string", "pattern": SAFE_NAME, "not": {"pattern": r"\.\."}, "minLength": 1, "maxLength": 128}
    ),
]
"""A pydantic field type: a safe name (error type ``unsafe_name``), with the same rule in its JSON schema."""
