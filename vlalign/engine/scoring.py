"""What a cell computes, by its kind: the one entry point of the tasks (vlalign.tasks.analysis) and benchmarks.
The cka kind is computed in vlalign.engine.alignment, the others in vlalign.engine.analysis."""

from __future__ import annotations

from vlalign.engine.alignment import run_cka_cell
from vlalign.engine.analysis import run_classify_cell, run_concept_cell, run_match_cell
from vlalign.engine.cells import Cell, CKACell, ClassifyCell, ConceptCell


def compute_cell(cell: Cell) -> dict[str, list[dict]]:
    """The rows of every result table of ``cell``."""
    if isinstance(cell, CKACell):
        return {"cka": run_cka_cell(cell)}
    if isinstance(cell, ClassifyCell):
        return {"classification": run_classify_cell(cell)}
    if isinstance(cell, ConceptCell):
        return run_concept_cell(cell)
    matching, retrieval = run_match_cell(cell)
    return {"matching": matching, "retrieval": retrieval}
