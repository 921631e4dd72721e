"""The run as a whole: the summary's title line (and why the studies cannot be told apart, when the run's spec
cannot be read), and the page's first section, the summary as a table."""

from __future__ import annotations

from pathlib import Path

from vlalign.report.html import Section, Table
from vlalign.report.rundata import RunData
from vlalign.report.study import Page

SUMMARY_RANK = 0


def lines(d: RunData, top: int) -> list[str]:
    out = [f"run {d.run_id}"]
    if d.spec_problem and (d.record is not None or d.matching or d.cka):
        out.append(f"  (the studies cannot be told apart: {d.spec_problem}; every same-domain row counts as the "
                   "main grid)")
    return out


def figures(d: RunData, out: Path) -> list[str]:
    return []


def section(d: RunData, page: Page) -> Section:
    lines = [line.strip() for line in page.summary.splitlines()[1:]]
    items: list = [Table("Summary", ["study", "found"], [tuple(x.strip() for x in line.split(": ", 1)) if ": " in line
                                                        else (line, "") for line in lines],
                         note="The text that `vlalign report` and the end of a sweep print.")]
    if d.spec_problem:
        items.insert(0, f"Note: {d.spec_problem}; rows are assigned to studies as well as can be done without it.")
    return Section("Summary", items, intro=f"Run {d.run_id}: what each study found.")
