"""Argument types shared by the `vlalign` commands' parsers: each checks one value and says what it expected."""

from __future__ import annotations

import argparse

__all__ = ["checked_name", "nonempty", "positive_float", "positive_int"]


def positive_int(s: str) -> int:
    try:
        v = int(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {s!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {v}")
    return v


def positive_float(s: str) -> float:
    try:
        v = float(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {s!r}") from None
    if not v > 0 or v == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {s!r}")
    return v


def checked_name(what: str):
    """A type for a name that becomes part of a lake path (a run id, a data set): vlalign.lake.names.check_name."""

    def check(s: str) -> str:
        from vlalign.lake.names import check_name  # imports pydantic: only when a name is given (start-up speed)

        try:
            return check_name(s, what)
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e)) from None

    return check


def nonempty(s: str) -> str:
    if not s.strip():
        raise argparse.ArgumentTypeError("expected a non-empty value")
    return s
