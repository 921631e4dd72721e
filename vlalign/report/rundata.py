"""Everything the report shows about one run, fetched once: one query per sql/report_*.sql file (its leading
comment says what it returns and its parameters), run over the lake with its parameters bound ($run_id,
$dataset), never pasted into the SQL text; and the run's spec, parsed, which splits the rows into studies
(:class:`vlalign.report.plan.Plan`)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Callable

from vlalign.datalake.catalog import query
from vlalign.datalake.runs import RunRecordError, read_run
from vlalign.datalake.store import Lake
from vlalign.datalake.views import load_sql
from vlalign.engine.spec import parse_spec
from vlalign.report.plan import Plan


def _rows(lake: Lake, name: str, **params: str) -> list[dict]:
    """The rows of sql/<name>.sql run over ``lake`` with ``params`` bound to its $names."""
    return query(lake, load_sql(name), params).to_pylist()


@dataclass
class RunData:
    """Everything the report shows about one run, fetched once."""

    lake: Lake
    run_id: str
    record: dict | None
    spec: object | None  # vlalign.engine.spec.SweepSpec
    spec_problem: str | None
    cka_summary: list[dict]
    cka_grid: list[dict]
    cka: list[dict]
    matching: list[dict]
    retrieval: list[dict]
    classification: list[dict]
    rejects: dict[str, list[dict]]
    run_cells: list[dict]
    concepts: list[dict] = field(default_factory=list)
    concept_breakdown: list[dict] = field(default_factory=list)
    explanations: list[dict] = field(default_factory=list)
    best_layers: list[dict] = field(default_factory=list)  # the best layer pair per encoder pair and measure
    cka_layers: list[dict] = field(default_factory=list)  # every layer pair's value of multi-layer cells  # the explain study's top attributions, 3 rows per item
    plan: Plan = field(init=False)
    # values derived from the rows that a study's figure and its section both use, by name (JSON-able): computed
    # once (derive), and kept with the cached figures (vlalign.report.cache)
    derived: dict[str, object] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.plan = Plan(self.spec)

    @property
    def main(self) -> list[dict]:
        return [r for r in self.matching if self.plan.is_main(r)]

    @property
    def measures(self) -> list[tuple[str, bool]]:
        return list(dict.fromkeys((r["kernel"], bool(r["debiased"])) for r in self.cka_grid))

    def derive(self, name: str, compute: Callable[[RunData], object]):
        """derived[name], computed by ``compute(self)`` the first time."""
        if name not in self.derived:
            self.derived[name] = compute(self)
        return self.derived[name]


def _explanations(lake: Lake, run_id: str) -> list[dict]:
    """The rows of the explain run that sweep run ``run_id`` names in its record (its analyses.explain), if any."""
    try:
        explain = (read_run(lake, run_id).get("explain") or {}).get("run_id")
    except (RunRecordError, AttributeError):
        return []
    return _rows(lake, "report_explanations", run_id=explain) if isinstance(explain, str) else []


def load_run(lake: Lake, run_id: str) -> RunData:
    """Fetch every row the report needs (one query per sql/report_*.sql file) and parse the run's spec."""
    record = (_rows(lake, "report_run", run_id=run_id) or [None])[0]
    spec, problem = None, None
    if record is None:
        problem = "no run record for this run id"
    elif record.get("spec"):
        try:
            doc = record["spec"] if isinstance(record["spec"], dict) else json.loads(record["spec"])
            spec = parse_spec(doc)
        except (ValueError, TypeError) as e:
            problem = f"the run's spec cannot be read ({str(e).splitlines()[0]})"
    else:
        problem = "the run record has no spec"
    datasets = [r["dataset"] for r in _rows(lake, "report_datasets", run_id=run_id)]
    return RunData(
        lake=lake, run_id=run_id, record=record, spec=spec, spec_problem=problem,
        cka_summary=_rows(lake, "report_cka_summary", run_id=run_id),
        cka_grid=_rows(lake, "report_cka_grid", run_id=run_id),
        cka=_rows(lake, "report_cka_rows", run_id=run_id),
        matching=_rows(lake, "report_matching_rows", run_id=run_id),
        retrieval=_rows(lake, "report_retrieval_rows", run_id=run_id),
        classification=_rows(lake, "report_classification_rows", run_id=run_id),
        rejects={ds: _rows(lake, "report_rejects", dataset=ds) for ds in datasets},
        run_cells=_rows(lake, "report_run_cells", run_id=run_id),
        concepts=_rows(lake, "report_concepts_rows", run_id=run_id),
        concept_breakdown=_rows(lake, "report_concept_breakdown_rows", run_id=run_id),
        explanations=_explanations(lake, run_id),
        best_layers=_rows(lake, "report_best_layers", run_id=run_id),
        cka_layers=_rows(lake, "report_cka_layers", run_id=run_id),
    )
