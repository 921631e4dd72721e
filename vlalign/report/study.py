"""What a study of the report is: one module under vlalign/report/studies/ that holds the study's rows, its
summary lines, its plots and its section of the page, and one line in the registry
(vlalign.report.studies.STUDIES, in the page's order)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from vlalign.report.html import Figure, Section
from vlalign.report.rundata import RunData


@dataclass
class Page:
    """What a section is built from besides the run's rows: the PNGs of the report and the summary text."""

    plots: list[str]
    summary: str

    def figure(self, name: str, title: str, caption: str = "") -> list[Figure]:
        """The PNG named ``name`` as a Figure (a list of one), or nothing when it was not drawn."""
        for p in self.plots:
            if Path(p).name == name:
                return [Figure(title, p, caption)]
        return []


class Study(Protocol):
    """A study module: module-level constants and functions with these names."""

    SUMMARY_RANK: int  # where its lines go in the summary text (lowest first); the page follows the registry

    def lines(self, run: RunData, top: int) -> list[str]:
        """The study's lines of the summary text, each '  <study>: <what it found>'; ``top``: how many of the
        best encoder pairs a line may name."""

    def figures(self, run: RunData, out: Path) -> list[str]:
        """The study's PNGs, written to ``out``, each only when its data exists; returns their paths."""

    def section(self, run: RunData, page: Page) -> Section | None:
        """The study's section of the HTML page (None: it shows in another study's section)."""
