"""What one analysis cell computes, as plain functions over the lake (cells are defined in vlalign.cells).

Each function reads exactly the planned, verified shards of its cell, computes with the library's math,
and returns result rows keyed by the cell's id. An input or a result that is not a finite number is never
stored as a silent number: the row's value is NULL and its ``note`` says why.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from . import baselines as bl
from .catalog import run_sql
from .cells import Cell, CKACell, MatchCell
from .cka import cka, cka_bootstrap
from .digest import digest_json
from .extract import read_shards
from .lake import Lake
from .matching import assignment_match, matching_accuracy, qap_match
from .preprocess import select_base, stretch
from .retrieval import local_cka_scores, recall_at_k
from .schemas import RESULT_SCHEMAS

# sweep-spec name -> vlalign.baselines name
BASELINE_NAMES = {"linear_regression": "linear", "relative": "relative", "procrustes": "procrustes", "cosine": "cosine"}


def pairs_digest(table: pa.Table) -> str:
    """The content digest of a pairs table (sql/pairs.sql output): its file name and part of every cell's identity."""
    return digest_json(table.to_pylist())


# ------------------------------------------------------------------ paired data
def paired_embeddings(cell: Cell) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(image ids, X (n, d1), Y (n, d2)) for the cell's pairs: Y is the mean embedding of each image's captions.

    Images or captions without an embedding (rejected during extraction) drop their pair."""
    lake = Lake.open(cell.lake_root)
    pairs = lake.read_table(cell.pairs_path)
    if pairs_digest(pairs) != cell.pairs_digest:
        raise RuntimeError(f"{cell.pairs_path}: contents do not match digest {cell.pairs_digest}; rerun the sweep")
    vid, vemb = read_shards(lake, list(cell.vision.shards))
    tid, temb = read_shards(lake, list(cell.text.shards))
    vrow = {u: i for i, u in enumerate(vid)}
    trow = {u: i for i, u in enumerate(tid)}
    ids, xs, ys = [], [], []
    for image_id, caps in zip(pairs["image_id"].to_pylist(), pairs["caption_ids"].to_pylist()):
        if image_id not in vrow:
            continue
        rows = [trow[c] for c in caps if c in trow]
        if not rows:
            continue
        ids.append(image_id)
        xs.append(vrow[image_id])
        ys.append(temb[rows].astype(np.float64).mean(axis=0))
    x = vemb[np.asarray(xs, dtype=np.int64)].astype(np.float64).reshape(len(xs), vemb.shape[1])
    y = np.asarray(ys, dtype=np.float64).reshape(len(ys), temb.shape[1])
    return ids, x, y


def input_problem(x: np.ndarray, y: np.ndarray, min_rows: int = 4) -> str | None:
    """Why paired embeddings cannot be analysed (non-finite values, too few pairs, no variance), or None."""
    for name, a in (("vision", x), ("text", y)):
        bad = int((~np.isfinite(a)).sum())
        if bad:
            return f"{bad} non-finite values (NaN or inf) in the {name} embeddings"
        if a.shape[0] and not np.ptp(a, axis=0).any():
            return f"the {name} embeddings are constant (no variance)"
    if x.shape[0] < min_rows:
        return f"only {x.shape[0]} pairs have embeddings (need {min_rows})"
    return None


def _finite(v: float | None) -> float | None:
    return float(v) if v is not None and np.isfinite(v) else None


# ------------------------------------------------------------------ CKA
def run_cka_cell(cell: CKACell) -> list[dict]:
    """CKA of the cell's (vision, text) pair, with the shuffled baseline and an optional bootstrap interval."""
    t0 = time.perf_counter()
    _, x, y = paired_embeddings(cell)
    row = {
        "cell_id": cell.cell_id, "dataset": cell.dataset, "domain": cell.domain, "lang": cell.lang,
        "vision_encoder": cell.vision.name, "text_encoder": cell.text.name, "kernel": cell.kernel,
        "debiased": cell.debiased, "n": int(x.shape[0]), "value": None, "shuffled_value": None,
        "ci_low": None, "ci_high": None, "seed": cell.seed, "seconds": None, "note": input_problem(x, y),
    }
    if row["note"] is None:
        row["value"] = _finite(cka(x, y, cell.kernel, cell.debiased))
        if cell.shuffled:
            perm = np.random.default_rng(cell.seed).permutation(x.shape[0])
            row["shuffled_value"] = _finite(cka(x[perm], y, cell.kernel, cell.debiased))
        if cell.bootstrap:
            ci = cka_bootstrap(x, y, cell.kernel, cell.debiased, n_boot=cell.bootstrap, seed=cell.seed)
            row["ci_low"], row["ci_high"] = _finite(ci.low), _finite(ci.high)
        if row["value"] is None:
            row["note"] = "CKA is not a finite number (a kernel with zero variance)"
    row["seconds"] = time.perf_counter() - t0
    return [row]


# ------------------------------------------------------------------ matching and retrieval
@dataclass(frozen=True)
class Split:
    base: np.ndarray  # indices into the paired arrays
    query: np.ndarray


def make_split(cell: MatchCell, ids: list[str], x: np.ndarray, y: np.ndarray) -> Split:
    """Queries: the first query_size pairs in the seeded order of sql/splits.sql; base: chosen from the rest."""
    order = run_sql("splits", {"pairs": cell.pairs_path, "seed": cell.seed, "query_size": cell.query_size})
    pos = {u: i for i, u in enumerate(ids)}
    ranked = [pos[u] for u in order["image_id"].to_pylist() if u in pos]  # pairs that survived extraction
    if len(ranked) < cell.base_size + cell.query_size:
        raise ValueError(
            f"{cell.label}: only {len(ranked)} pairs have embeddings, fewer than base {cell.base_size} + query {cell.query_size}"
        )
    query = np.asarray(ranked[: cell.query_size], dtype=np.int64)
    pool = np.asarray(ranked[cell.query_size :], dtype=np.int64)
    chosen = select_base(x[pool], y[pool], cell.base_size, method=cell.base_selection, seed=cell.seed)
    return Split(base=pool[np.asarray(chosen, dtype=np.int64)], query=query)


def run_match_cell(cell: MatchCell) -> tuple[list[dict], list[dict]]:
    """Every matching, retrieval and baseline method of the cell: (matching rows, retrieval rows)."""
    ids, x, y = paired_embeddings(cell)
    common = {
        "cell_id": cell.cell_id, "dataset": cell.dataset, "domain": cell.domain, "lang": cell.lang,
        "vision_encoder": cell.vision.name, "text_encoder": cell.text.name, "base_size": cell.base_size,
        "query_size": cell.query_size, "base_selection": cell.base_selection, "stretch": cell.stretch, "seed": cell.seed,
    }
    chance = 1.0 / cell.query_size
    problem = input_problem(x, y)
    if problem is not None:  # every method gets a row that says why it has no number
        methods = list(cell.matching) + list(cell.baselines)
        retrieved = list(cell.retrieval) + list(cell.baselines)
        return ([{**common, "method": m, "chance": chance, "note": problem} for m in methods],
                [{**common, "method": m, "direction": d, "note": problem}
                 for m in retrieved for d in ("image_to_text", "text_to_image")])
    split = make_split(cell, ids, x, y)
    idx = np.concatenate([split.base, split.query])
    xs, ys = x[idx], y[idx]
    if cell.stretch:
        xs, ys = stretch(xs), stretch(ys)
    m = len(split.base)
    bx, by, qx, qy = xs[:m], ys[:m], xs[m:], ys[m:]
    matching, retrieval = [], []

    def score_rows(method: str, scores: np.ndarray, seconds: float, do_match: bool, do_retrieve: bool):
        if do_match:
            t = time.perf_counter()
            perm = assignment_match(scores)
            matching.append({**common, "method": method, "accuracy": matching_accuracy(perm), "chance": chance,
                             "objective": None, "seconds": seconds + time.perf_counter() - t})
        if do_retrieve:
            r = recall_at_k(scores)
            for direction, rec in (("image_to_text", r.image_to_text), ("text_to_image", r.text_to_image)):
                retrieval.append({**common, "method": method, "direction": direction,
                                  "r1": rec[1], "r5": rec[5], "r10": rec[10]})

    if "qap" in cell.matching:
        res = qap_match(bx, by, qx, qy, restarts=cell.qap_restarts, seed=cell.seed, kernel=cell.qap_kernel, n_jobs=1)
        matching.append({**common, "method": "qap", "accuracy": matching_accuracy(res.perm), "chance": chance,
                         "objective": res.objective, "seconds": res.seconds})
    if "local_cka" in cell.matching or "local_cka" in cell.retrieval:
        t = time.perf_counter()
        s = local_cka_scores(bx, by, qx, qy, kernel=cell.local_cka_kernel)
        score_rows("local_cka", s, time.perf_counter() - t, "local_cka" in cell.matching, "local_cka" in cell.retrieval)
    for name in cell.baselines:
        t = time.perf_counter()
        s = bl.baseline_scores(BASELINE_NAMES[name], bx, by, qx, qy)
        score_rows(name, s, time.perf_counter() - t, True, True)
    return matching, retrieval


# ------------------------------------------------------------------ writing cells
def write_cell(cell: Cell, rows: dict[str, list[dict]]) -> list[str]:
    """Write a cell's result files, each carrying the cell's identity. The first table is written last,
    so the cell counts as done (:func:`vlalign.cells.cell_is_done`) only when all of them are in place."""
    lake = Lake.open(cell.lake_root)
    paths = cell.paths()
    for table in reversed(cell.tables):
        lake.write_table(paths[table], pa.Table.from_pylist(rows[table], schema=RESULT_SCHEMAS[table]),
                         {"identity": cell.identity, "cell_id": cell.cell_id})
    return list(paths.values())


def compute_cell(cell: Cell) -> dict[str, list[dict]]:
    """The rows of every result table of ``cell``."""
    if isinstance(cell, CKACell):
        return {"cka": run_cka_cell(cell)}
    matching, retrieval = run_match_cell(cell)
    return {"matching": matching, "retrieval": retrieval}
