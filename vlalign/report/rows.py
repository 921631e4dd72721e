"""Names of result rows and their means over seeds.

Means, minima and maxima over seeds are taken here, in Python: for a group of rows, the rows of each seed are
averaged first (over data sets, settings, pairs, whatever the group spans), then the seed means are summarised.
"""

from __future__ import annotations

import math
import re
import statistics
from typing import Callable, Iterable


def measure_name(kernel: str, debiased: bool | None) -> str:
    """A CKA measure's label: the kernel, with ' (debiased)' for the debiased-HSIC estimator."""
    return f"{kernel} (debiased)" if debiased else kernel


def pair_name(r: dict) -> str:
    return f"{r['vision_encoder']} x {r['text_encoder']}"


def route(r: dict) -> str:
    """'<base domain>-><query domain>' of a matching or retrieval row (rows from before the columns existed:
    the row's domain at both ends)."""
    return f"{r.get('base_domain') or r['domain']}->{r.get('query_domain') or r['domain']}"


def setting_cols(r: dict) -> tuple:
    return (r["base_size"], r["query_size"], r["base_selection"], r["stretch"])


def skip_reason(note: str | None) -> str:
    """The short reason of a 'skipped: text encoder X is <reason>, so ...' note (else the note)."""
    m = re.search(r"is (.+?), so", note or "")
    return m.group(1) if m else (note or "")


def mean(xs: Iterable[float]) -> float:
    xs = list(xs)
    return sum(xs) / len(xs)


def over_seeds(rows: Iterable[dict], key: Callable[[dict], object], value: str = "accuracy",
               extra: tuple[str, ...] = ("chance",)) -> dict[object, dict]:
    """{key(row): stats}: the rows of each seed averaged first (rows whose ``value`` is NULL left out), then
    over the seeds: mean, min, max, std (population), seeds (how many), and the mean of each ``extra`` column
    over the rows used. Groups with no value at all are absent."""
    per: dict[object, dict[int, list[dict]]] = {}
    for r in rows:
        if r.get(value) is None or (isinstance(r[value], float) and math.isnan(r[value])):
            continue
        per.setdefault(key(r), {}).setdefault(r["seed"], []).append(r)
    out = {}
    for k, seeds in per.items():
        xs = [mean(x[value] for x in rs) for _, rs in sorted(seeds.items(), key=lambda kv: (kv[0] is None, kv[0]))]
        used = [x for rs in seeds.values() for x in rs]
        st = {"mean": mean(xs), "min": min(xs), "max": max(xs), "std": statistics.pstdev(xs), "seeds": len(xs)}
        for c in extra:
            vals = [x[c] for x in used if x.get(c) is not None]
            st[c] = mean(vals) if vals else None
        out[k] = st
    return out
