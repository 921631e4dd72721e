"""How the report writes numbers and tables: percentages (accuracies, recalls, chance levels) and CKA scores,
the narrow tables of the page (long ones collapsed to their first TOP rows), the sentence for a study without
results."""

from __future__ import annotations

from typing import Iterable

from vlalign.report.html import Table
from vlalign.report.rows import setting_labels, setting_of, sort_key
from vlalign.report.rundata import RunData

NOT_IN_SPEC = "not in this run's spec"
NO_ROWS = "in this run's spec, but the lake holds no results for it (yet)"

#: How many rows a long table shows; the rest are one click away.
TOP = 5

SAME_COLUMNS = ("dataset", "domain", "lang", "domains", "base", "query", "selection", "stretch", "protocol", "setting",
                "templates", "seeds", "vision encoder", "text encoder")


def pct(x: float | None) -> str:
    """An accuracy or a recall in the summary text: 1 decimal and the sign."""
    return "n/a" if x is None else f"{100 * x:.1f}%"


def chance_pct(x: float | None) -> str:
    """A chance level in the summary text: 2 decimals (chance is often below 1%)."""
    return "n/a" if x is None else f"{100 * x:.2f}%"


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


def grid_labels(d: RunData, settings: Iterable[tuple]) -> dict[tuple, str]:
    """{setting: label} for ``settings`` (vlalign.report.rows.setting_of), in order, each naming what sets it apart
    among the run's main-grid settings and ``settings`` ('' when the run has one setting): a study with results
    at only one of the run's settings still says which."""
    mine = set(settings)
    labels = setting_labels(sorted(mine | {setting_of(r) for r in d.main}, key=sort_key))
    return {s: label for s, label in labels.items() if s in mine}


def missing(d: RunData, present_in_spec: bool) -> str:
    """What a section says instead of its tables when the lake holds no rows for it."""
    if d.spec is None:
        return f"The run's spec is not available ({d.spec_problem}), and the lake holds no results for this."
    return NO_ROWS if present_in_spec else NOT_IN_SPEC


def narrow_table(title: str, columns: list[str], rows: list[tuple], note: str = "", sql: str = "",
                 top: int | None = TOP) -> Table:
    """A Table without the columns of SAME_COLUMNS that hold one value in every row (two rows or more): that
    value goes to the note instead, so that the table stays narrow. Longer than ``top`` rows: the first ``top``
    shown, the whole table a click away; ``sql``: the query that gives it."""
    rows = [tuple(r) for r in rows]
    drop = [j for j, c in enumerate(columns) if c in SAME_COLUMNS and len(rows) > 1 and len({r[j] for r in rows}) == 1]
    if drop:
        same = ", ".join(f"{columns[j]} {_cell_text(rows[0][j])}" for j in drop)
        note = f"Every row: {same}." + (f" {note}" if note else "")
        keep = [j for j in range(len(columns)) if j not in drop]
        columns = [columns[j] for j in keep]
        rows = [tuple(r[j] for j in keep) for r in rows]
    return Table(title, columns, rows, note=note, top=top, sql=sql)


def _cell_text(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    return "NULL" if v is None else str(v)
