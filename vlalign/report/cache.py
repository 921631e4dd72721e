"""The figures of a report, reused from an earlier report in the same folder when neither the run's result rows
nor the report's code changed (a rerun that computed nothing redraws nothing)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

from vlalign.datalake.digest import digest_json, digest_values
from vlalign.report.rundata import RunData

FIGURES_CACHE = "figures.json"
REPORT_CODE = Path(__file__).parent  # vlalign/report: every module of it, the studies included


def code_digest() -> str:
    """A digest of the report's code: every .py file under vlalign/report, by its path there and its bytes."""
    files = sorted(REPORT_CODE.rglob("*.py"))
    return digest_values(x for p in files for x in (p.relative_to(REPORT_CODE).as_posix(), p.read_bytes()))


def _key(d: RunData) -> str:
    rows = [d.cka_summary, d.cka_grid, d.cka, d.matching, d.retrieval, d.classification, d.concepts,
            d.concept_breakdown, d.explanations, d.best_layers, d.cka_layers, d.spec.source if d.spec is not None else None]

    def canon(v):  # floats to 12 digits: SQL aggregates may differ in the last bits from one query to the next
        return f"{v:.12g}" if isinstance(v, float) else v

    return digest_json([code_digest(), [[{k: canon(v) for k, v in r.items() if k != "seconds"} for r in t]
                                        if isinstance(t, list) else t for t in rows]])


def cached_figures(d: RunData, out: Path, draw: Callable[[RunData, Path], list[str]]) -> list[str]:
    """The PNG paths of ``d``'s report in ``out``: the ones an earlier report left there when its key (the rows,
    the code) is the same, with the values the studies derived for them (``d.derived``); else drawn now by
    ``draw(d, out)``, and the key, the derived values and the PNG names written to figures.json."""
    key = _key(d)
    cache = out / FIGURES_CACHE
    try:
        got = json.loads(cache.read_text())
        if got["key"] == key and all((out / name).is_file() for name in got["plots"]):
            d.derived.update(got["derived"])
            return [str(out / name) for name in got["plots"]]
    except (OSError, ValueError, KeyError):
        pass
    plots = draw(d, out)
    out.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_suffix(".tmp")
    names = [Path(p).name for p in plots]
    tmp.write_text(json.dumps({"key": key, "derived": d.derived, "plots": names}, default=float))
    tmp.replace(cache)
    return plots
