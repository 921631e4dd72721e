"""The studies of a report, one module each (vlalign.report.study.Study says what a module provides).

STUDIES is in the page's order: its sections and its PNGs follow it. The summary text orders the studies' lines
by each module's SUMMARY_RANK instead. Adding a study is adding its module and one line here.
"""

from __future__ import annotations

from vlalign.report.studies import (
    cka,
    classification,
    concepts,
    correlation,
    cross_domain,
    cross_lingual,
    curves,
    explanations,
    matching,
    overview,
    rejects,
    retrieval,
)
from vlalign.report.study import Study

STUDIES: list[Study] = [
    overview,  # Summary
    cka,  # Alignment
    matching,  # Matching
    retrieval,  # (in the Matching section)
    curves,  # Curves
    correlation,  # Cross-pair analysis
    cross_lingual,  # Cross-lingual
    cross_domain,  # Cross-domain
    classification,  # Classification
    concepts,  # Concepts
    explanations,  # Explanations
    rejects,  # Runs and data
]
