"""Analysis cells of a sweep: what one task computes, as plain functions over the lake.

A *cell* is the unit of work and of resume: a CKA cell is one vision encoder against every text encoder
for one (data set, domain, language, kernel); a matching cell is one (vision, text) pair at one point of
the settings grid, with every matching, retrieval and baseline method. A cell's result files carry its
identity (settings plus the digests of the embeddings it read), so a rerun skips cells that are done
and redoes those whose inputs changed.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass

import numpy as np
import pyarrow as pa

from . import baselines as bl
from .catalog import run_sql
from .cka import cka_bootstrap, cka_grid
from .extract import read_embeddings
from .lake import Lake
from .matching import assignment_match, matching_accuracy, qap_match
from .preprocess import select_base, stretch
from .retrieval import local_cka_scores, recall_at_k
from .schemas import CKA_SCHEMA, MATCHING_SCHEMA, RETRIEVAL_SCHEMA

# sweep-spec name -> vlalign.baselines name
BASELINE_NAMES = {"linear_regression": "linear", "relative": "relative", "procrustes": "procrustes", "cosine": "cosine"}


def _jsonable(obj):
    """``obj`` as it reads back from JSON (tuples become lists), so stored and planned identities compare equal."""
    return json.loads(json.dumps(obj, sort_keys=True, default=str))


def _digest(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def embeddings_digest(lake: Lake, dataset: str, lake_name: str, part: str) -> str:
    """The identity of an encoder's embeddings of one part: a digest of its shards' identities."""
    files = lake.glob(lake.path("embeddings", f"dataset={dataset}", f"encoder={lake_name}", f"part={part}", "*.parquet"))
    return _digest([(f.rsplit("/", 1)[-1], (lake.read_metadata(f) or {}).get("identity")) for f in files])


@dataclass(frozen=True)
class Enc:
    name: str
    lake_name: str
    digest: str  # embeddings_digest of the part the cell reads


@dataclass(frozen=True)
class _Cell:
    """What every cell shares: where it reads and writes, and an identity made of every field but those paths."""

    run_id: str
    lake_root: str
    dataset: str
    domain: str
    lang: str
    pairs_path: str

    @property
    def identity(self) -> dict:
        d = asdict(self)
        d.pop("lake_root")
        d.pop("pairs_path")
        return _jsonable(d)


@dataclass(frozen=True)
class CKACell(_Cell):
    vision: Enc
    texts: tuple[Enc, ...]
    kernel: str
    debiased: bool = False
    shuffled: bool = True
    bootstrap: int = 0
    seed: int = 0

    @property
    def key(self) -> str:
        return f"{self.dataset}-{self.domain}-{self.lang}-{self.vision.lake_name}-{self.kernel}-{_digest(self.identity)[:8]}"

    def paths(self) -> dict[str, str]:
        lake = Lake.open(self.lake_root)
        return {"cka": lake.result_path("cka", self.run_id, self.key)}


@dataclass(frozen=True)
class MatchCell(_Cell):
    vision: Enc
    text: Enc
    base_size: int
    query_size: int
    base_selection: str
    stretch: bool
    seed: int
    matching: tuple[str, ...]
    retrieval: tuple[str, ...]
    baselines: tuple[str, ...]
    qap_restarts: int = 20
    qap_kernel: str = "linear"
    local_cka_kernel: str = "linear"

    @property
    def key(self) -> str:
        return (f"{self.dataset}-{self.domain}-{self.lang}-{self.vision.lake_name}-{self.text.lake_name}"
                f"-b{self.base_size}-q{self.query_size}-{_digest(self.identity)[:8]}")

    def paths(self) -> dict[str, str]:
        lake = Lake.open(self.lake_root)
        return {t: lake.result_path(t, self.run_id, self.key) for t in ("matching", "retrieval")}


def cell_is_done(cell) -> bool:
    lake = Lake.open(cell.lake_root)
    return all((lake.read_metadata(p) or {}).get("identity") == cell.identity for p in cell.paths().values())


# ------------------------------------------------------------------ paired data
def paired_embeddings(
    lake: Lake, dataset: str, pairs_path: str, vision: Enc, domain: str, text: Enc, lang: str
) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(image ids, X (n, d1), Y (n, d2)) for the pairs: Y is the mean embedding of each image's captions.

    Images or captions without an embedding (rejected during extraction) drop their pair."""
    pairs = lake.read_table(pairs_path)
    vid, vemb = read_embeddings(lake, dataset, vision.lake_name, domain)
    tid, temb = read_embeddings(lake, dataset, text.lake_name, lang)
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
    x = vemb[np.asarray(xs, dtype=np.int64)].astype(np.float64)
    y = np.asarray(ys, dtype=np.float64).reshape(len(ys), -1)
    return ids, x, y


# ------------------------------------------------------------------ CKA
def run_cka_cell(cell: CKACell) -> list[dict]:
    """CKA of the cell's vision encoder with each text encoder, with the shuffled baseline and optional CI."""
    lake = Lake.open(cell.lake_root)
    t0 = time.perf_counter()
    x = first_ids = None
    texts: dict[str, np.ndarray] = {}
    for t in cell.texts:
        ids, xv, yt = paired_embeddings(lake, cell.dataset, cell.pairs_path, cell.vision, cell.domain, t, cell.lang)
        if first_ids is not None and ids != first_ids:
            raise RuntimeError(f"{cell.key}: text encoders cover different images; re-extract {t.name}")
        x, first_ids = xv, ids
        texts[t.name] = yt
    true = cka_grid({cell.vision.name: x}, texts, cell.kernel, cell.debiased).values[0]
    shuffled = np.full(len(texts), np.nan)
    if cell.shuffled:
        perm = np.random.default_rng(cell.seed).permutation(x.shape[0])
        shuffled = cka_grid({cell.vision.name: x[perm]}, texts, cell.kernel, cell.debiased).values[0]
    rows = []
    for j, (tname, y) in enumerate(texts.items()):
        lo = hi = None
        if cell.bootstrap:
            ci = cka_bootstrap(x, y, cell.kernel, cell.debiased, n_boot=cell.bootstrap, seed=cell.seed)
            lo, hi = ci.low, ci.high
        rows.append({
            "run_id": cell.run_id, "dataset": cell.dataset, "domain": cell.domain, "lang": cell.lang,
            "vision_encoder": cell.vision.name, "text_encoder": tname, "kernel": cell.kernel, "debiased": cell.debiased,
            "n": int(x.shape[0]), "value": float(true[j]), "shuffled_value": float(shuffled[j]),
            "ci_low": lo, "ci_high": hi, "seed": cell.seed, "seconds": None,
        })
    secs = (time.perf_counter() - t0) / max(1, len(rows))
    for r in rows:
        r["seconds"] = secs
    return rows


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
            f"{cell.key}: only {len(ranked)} pairs have embeddings, fewer than base {cell.base_size} + query {cell.query_size}"
        )
    query = np.asarray(ranked[: cell.query_size], dtype=np.int64)
    pool = np.asarray(ranked[cell.query_size :], dtype=np.int64)
    chosen = select_base(x[pool], y[pool], cell.base_size, method=cell.base_selection, seed=cell.seed)
    return Split(base=pool[np.asarray(chosen, dtype=np.int64)], query=query)


def run_match_cell(cell: MatchCell) -> tuple[list[dict], list[dict]]:
    """Every matching, retrieval and baseline method of the cell: (matching rows, retrieval rows)."""
    lake = Lake.open(cell.lake_root)
    ids, x, y = paired_embeddings(lake, cell.dataset, cell.pairs_path, cell.vision, cell.domain, cell.text, cell.lang)
    split = make_split(cell, ids, x, y)
    idx = np.concatenate([split.base, split.query])
    xs, ys = x[idx], y[idx]
    if cell.stretch:
        xs, ys = stretch(xs), stretch(ys)
    m = len(split.base)
    bx, by, qx, qy = xs[:m], ys[:m], xs[m:], ys[m:]
    common = {
        "run_id": cell.run_id, "dataset": cell.dataset, "domain": cell.domain, "lang": cell.lang,
        "vision_encoder": cell.vision.name, "text_encoder": cell.text.name, "base_size": cell.base_size,
        "query_size": cell.query_size, "base_selection": cell.base_selection, "stretch": cell.stretch, "seed": cell.seed,
    }
    matching, retrieval = [], []
    chance = 1.0 / cell.query_size

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
def write_cka_cell(cell: CKACell, rows: list[dict]) -> str:
    lake = Lake.open(cell.lake_root)
    return lake.write_table(cell.paths()["cka"], pa.Table.from_pylist(rows, schema=CKA_SCHEMA), {"identity": cell.identity})


def write_match_cell(cell: MatchCell, matching: list[dict], retrieval: list[dict]) -> list[str]:
    """Retrieval first, matching last: the cell counts as done only when both carry its identity."""
    lake = Lake.open(cell.lake_root)
    paths = cell.paths()
    lake.write_table(paths["retrieval"], pa.Table.from_pylist(retrieval, schema=RETRIEVAL_SCHEMA), {"identity": cell.identity})
    lake.write_table(paths["matching"], pa.Table.from_pylist(matching, schema=MATCHING_SCHEMA), {"identity": cell.identity})
    return list(paths.values())
