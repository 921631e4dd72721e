"""The type and range checks of one field of a data set (a caption, an id, a file name, a label), made where a
reader takes the value from its file: the value, or the reason it cannot be used, in words that name the field
and what was wrong ("caption is a number, not a string"). No I/O and no imports of the readers: the file-level
checks (a JSON file that cannot be parsed, a line that is not UTF-8) are in
:mod:`vlalign.datasets.format_readers.base`, which also uses these for every item it is given.

The bounds keep every input to bounded time and memory: no field longer than :data:`MAX_TEXT` characters is
used (a 10 MB caption is a reject, not 10 MB in every later table), no file read whole is larger than
:data:`MAX_FILE_BYTES`, no line or caption member longer than :data:`MAX_LINE_BYTES` is read into memory.
"""

from __future__ import annotations

from typing import Any

MAX_TEXT = 65_536  # characters of a caption, id, file name or label; a longer one is a reject
MAX_LINE_BYTES = 1 << 24  # one line of a text, JSONL or CSV file, or a caption member of a tar (16 MiB)
MAX_FILE_BYTES = 1 << 30  # a file read whole (an annotations JSON, a caption list): larger is refused (1 GiB)
MAX_SHOWN = 1_024  # characters of an id or a reason kept in a reject row; the rest is elided


def kind(value: Any) -> str:
    """What a value is, in words: 'a string', 'a number', 'a list', 'an object', 'null', ... (never its repr,
    which could be large or deeply nested)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, (bytes, bytearray, memoryview)):
        return "bytes"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, (list, tuple)):
        return "a list"
    return f"a {type(value).__name__}"


def text_problem(text: str, what: str) -> str | None:
    """None if ``text`` (a string) can be stored: at most MAX_TEXT characters, valid Unicode (no lone
    surrogate: a file name that is not UTF-8, or a JSON '\\ud800' escape); else why not."""
    if len(text) > MAX_TEXT:
        return f"{what} is {len(text)} characters long (more than {MAX_TEXT})"
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            return f"{what} is not valid Unicode (not UTF-8, or a lone surrogate escape)"
    return None


def caption_value(value: Any, what: str = "caption") -> tuple[str | None, str | None]:
    """A caption from its file: (the stripped text, None); (None, None) when it is missing or blank (each
    reader says "empty caption" its own way); (None, why) when it is not usable text (another type, too long,
    not valid Unicode)."""
    if value is None:
        return None, None
    if not isinstance(value, str):
        return None, f"{what} is {kind(value)}, not a string"
    why = text_problem(value, what)
    if why:
        return None, why
    return value.strip() or None, None


def key_value(value: Any, what: str) -> tuple[str | None, str | None]:
    """An id or key from its file: an integer or a non-empty string, as a string (``1`` -> ``"1"``);
    (None, why) for anything else (null, a boolean, a fractional number, a list, an object, an empty string,
    one too long or not valid Unicode)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value), None
    if not isinstance(value, str):
        if isinstance(value, float):
            return None, f"{what} is a number that is not an integer ({value!r})"
        return None, f"{what} is {kind(value)}, not an integer or a string"
    if not value:
        return None, f"{what} is an empty string"
    why = text_problem(value, what)
    return (None, why) if why else (value, None)


def name_value(value: Any, what: str) -> tuple[str | None, str | None]:
    """A file name or a path part from its file: a non-blank string that can be stored; else (None, why)."""
    if not isinstance(value, str):
        return None, f"{what} is {kind(value)}, not a string"
    if not value.strip():
        return None, f"{what} is empty"
    if "\x00" in value:
        return None, f"{what} holds a NUL character"
    why = text_problem(value, what)
    return (None, why) if why else (value, None)


def label_value(value: Any, what: str = "label") -> tuple[str | None, str | None]:
    """A class label from its file: None, or a string, number or boolean as a string; (None, why) for a list,
    an object, or a string too long or not valid Unicode."""
    if value is None:
        return None, None
    if isinstance(value, (list, tuple, dict, bytes, bytearray, memoryview)):
        return None, f"{what} is {kind(value)}, not a string or a number"
    text = str(value)
    why = text_problem(text, what)
    return (None, why) if why else (text, None)


def shown(text: str | None, limit: int = MAX_SHOWN) -> str | None:
    """``text`` as a reject row keeps it: lone surrogates written as escapes, at most ``limit`` characters."""
    if text is None:
        return None
    if not text.isascii():
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    if len(text) > limit:
        text = f"{text[:limit]}... ({len(text)} characters)"
    return text
