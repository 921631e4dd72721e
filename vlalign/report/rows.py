"""Names of result rows and their means over seeds.

Means, minima and maxima over seeds are taken here, in Python: for a group of rows, the rows of each seed are
averaged first (over data sets, settings, pairs, whatever the group spans), then the seed means are summarised.
"""

from __future__ import annotations

import math
import re
import statistics
from typing import Callable, Iterable

SETTING_FIELDS = ("base_size", "query_size", "base_selection", "stretch", "protocol")


def measure_name(kernel: str, debiased: bool | None) -> str:
    """A CKA measure's label: the kernel, with ' (debiased)' for the debiased-HSIC estimator."""
    return f"{kernel} (debiased)" if debiased else kernel


def measure_title(kernel: str, debiased: bool | None) -> str:
    """A measure as a reader names it: 'CKA (linear)', 'CKA (rbf, debiased)', 'mutual kNN (k=10)'."""
    for pattern, label in ((r"mutual_knn_k(\d+)", "mutual kNN (k={})"), (r"cknna_k(\d+)", "CKNNA (k={})"),
                           (r"cycle_knn_k(\d+)", "cycle kNN (k={})"), (r"svcca_(.+)", "SVCCA ({} variance)"),
                           (r"rsa_(.+)", "RSA ({})")):
        m = re.fullmatch(pattern, kernel)
        if m:
            return label.format(m.group(1)) + (" (debiased)" if debiased else "")
    return f"CKA ({kernel}{', debiased' if debiased else ''})"


def pair_name(r: dict) -> str:
    return f"{r['vision_encoder']} x {r['text_encoder']}"


def route(r: dict) -> str:
    """'<base domain>-><query domain>' of a matching or retrieval row (rows from before the columns existed:
    the row's domain at both ends)."""
    return f"{r.get('base_domain') or r['domain']}->{r.get('query_domain') or r['domain']}"


def setting_cols(r: dict) -> tuple:
    return (r["base_size"], r["query_size"], r["base_selection"], r["stretch"])


def setting_of(r: dict) -> tuple:
    """A row's grid setting (SETTING_FIELDS): what results of different settings must never be averaged over."""
    return tuple(r.get(f) for f in SETTING_FIELDS)


def setting_text(s: tuple, fields: Iterable[int] = range(len(SETTING_FIELDS))) -> str:
    """'base 320, query 500, kmeans_image, stretch, protocol default' (the ``fields`` of it, by index)."""
    b, q, sel, stretch, protocol = s
    words = (f"base {b}", f"query {q}", str(sel), "stretch" if stretch else "no stretch", f"protocol {protocol}")
    return ", ".join(words[i] for i in fields)


def setting_labels(settings: Iterable[tuple]) -> dict[tuple, str]:
    """{setting: its label}, the label naming only what differs between the settings ('' when there is one; a
    protocol of None, rows that do not record theirs, differs from none)."""
    settings = list(dict.fromkeys(settings))
    vary = [i for i in range(len(SETTING_FIELDS))
            if len({s[i] for s in settings if s[i] is not None or SETTING_FIELDS[i] != "protocol"}) > 1]
    return {s: setting_text(s, vary) if vary else "" for s in settings}


def sort_key(k: tuple) -> tuple:
    """A table's row order: numbers before text, numbers by value."""
    return tuple((0, v) if isinstance(v, (int, float)) and not isinstance(v, bool) else (1, str(v)) for v in k)


def by_setting(rows: Iterable[dict]) -> dict[tuple, list[dict]]:
    """The rows of each grid setting, the settings in sort_key order."""
    out: dict[tuple, list[dict]] = {}
    for r in rows:
        out.setdefault(setting_of(r), []).append(r)
    return dict(sorted(out.items(), key=lambda kv: sort_key(kv[0])))


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
