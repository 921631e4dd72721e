"""Runs and data: the items each data set rejected (and at which stage), the result tables of the run and its
record; the page's last section."""

from __future__ import annotations

import json
from pathlib import Path

from vlalign.report.html import Section, Table
from vlalign.report.rundata import RunData
from vlalign.report.study import Page

SUMMARY_RANK = 90

RECORD_FIELDS = ("run_id", "status", "flow", "started_at", "finished_at", "cells_total", "cells_done", "cells_computed",
                 "error", "spec")


def lines(d: RunData, top: int) -> list[str]:
    """One line per data set: how many items it rejected, per stage."""
    out = []
    for ds, rej in d.rejects.items():
        total = sum(r["n"] for r in rej)
        detail = ", ".join(f"{r['stage']} {r['n']}" for r in rej)
        where = f" ({detail}; vlalign query \"select * from rejects\")" if total else ""
        out.append(f"  rejects in {ds}: {total}{where}")
    return out


def figures(d: RunData, out: Path) -> list[str]:
    return []


def _text(v) -> str:
    """A record field as text; the spec's JSON with a space after each separator, so that it wraps between items."""
    if isinstance(v, (dict, list)):
        return json.dumps(v, separators=(", ", ": "), ensure_ascii=False)
    if isinstance(v, str) and v.startswith("{"):
        try:
            return json.dumps(json.loads(v), separators=(", ", ": "), ensure_ascii=False)
        except ValueError:
            pass
    return str(v)


def section(d: RunData, page: Page) -> Section:
    items = []
    rej = [(ds, r["stage"], r["n"]) for ds, rs in d.rejects.items() for r in rs]
    totals = [(ds, "all stages", sum(r["n"] for r in rs)) for ds, rs in d.rejects.items()]
    items.append(Table("Rejected items per data set", ["dataset", "stage", "items"], rej + totals,
                       note="vlalign query \"select * from rejects\" lists them with the reason."))
    counts = {"cka": len(d.cka), "matching": len(d.matching), "retrieval": len(d.retrieval),
              "classification": len(d.classification), "concepts": len(d.concepts),
              "concept_breakdown": len(d.concept_breakdown)}
    cells = {r["table_name"]: r["cells"] for r in d.run_cells}
    items.append(Table("Result tables of the run", ["table", "cells", "rows shown"],
                       [(t, cells.get(t, 0), n) for t, n in counts.items()],
                       note="rows shown: distinct results (a result that two cells hold is counted once)."))
    rec = d.record or {}
    items.append(Table("Run record", ["field", "value"],
                       [(k, None if rec.get(k) is None else _text(rec[k])) for k in RECORD_FIELDS], top=0,
                       note="vlalign query \"select * from runs\" lists every run's record."))
    return Section("Runs and data", items)
