"""How the report writes numbers and tables: percentages, the narrow tables of the page, the sentence for a
study without results."""

from __future__ import annotations

from vlalign.report.html import Table
from vlalign.report.rundata import RunData

NOT_IN_SPEC = "not in this run's spec"
NO_ROWS = "in this run's spec, but the lake holds no results for it (yet)"

SAME_COLUMNS = ("dataset", "domain", "lang", "domains", "base", "query", "selection", "stretch", "templates", "seeds")


def pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


def spread(st: dict) -> str:
    """The mean over seeds in %, with [min-max] over seeds when there are several."""
    return f"{pct(st['mean'])} [{100 * st['min']:.1f}-{100 * st['max']:.1f}]" if st["seeds"] > 1 else pct(st["mean"])


def f3(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.3f}"


def as_int(x) -> int | None:
    return None if x is None else int(round(x))


def direction(x: str) -> str:
    """'image_to_text' -> 'image->text'."""
    return x.replace("_to_", "->")


def sort_key(k: tuple) -> tuple:
    """A table's row order: numbers before text, numbers by value."""
    return tuple((0, v) if isinstance(v, (int, float)) and not isinstance(v, bool) else (1, str(v)) for v in k)


def missing(d: RunData, present_in_spec: bool) -> str:
    """What a section says instead of its tables when the lake holds no rows for it."""
    if d.spec is None:
        return f"The run's spec is not available ({d.spec_problem}), and the lake holds no results for this."
    return NO_ROWS if present_in_spec else NOT_IN_SPEC


def narrow_table(title: str, columns: list[str], rows: list[tuple], note: str = "") -> Table:
    """A Table without the columns of SAME_COLUMNS that hold one value in every row (two rows or more): that
    value goes to the note instead, so that the table stays narrow."""
    rows = [tuple(r) for r in rows]
    drop = [j for j, c in enumerate(columns) if c in SAME_COLUMNS and len(rows) > 1 and len({r[j] for r in rows}) == 1]
    if drop:
        same = ", ".join(f"{columns[j]} {_cell_text(rows[0][j])}" for j in drop)
        note = f"Every row: {same}." + (f" {note}" if note else "")
        keep = [j for j in range(len(columns)) if j not in drop]
        columns = [columns[j] for j in keep]
        rows = [tuple(r[j] for j in keep) for r in rows]
    return Table(title, columns, rows, note=note)


def _cell_text(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    return "NULL" if v is None else str(v)
