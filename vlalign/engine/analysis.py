"""What one analysis cell computes, as plain functions over the lake (cells are defined in vlalign.engine.cells).

Each function reads exactly the planned, verified shards of its cell, computes with the library's math,
and returns result rows keyed by the cell's id. An input or a result that is not a finite number is never
stored as a silent number: the row's value is NULL and its ``note`` says why.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from vlalign.datalake.catalog import run_sql
from vlalign.datalake.digest import digest_json
from vlalign.datalake.schemas import RESULT_SCHEMAS
from vlalign.datalake.store import Lake
from vlalign.datasets.wordprops import polysemy, word_frequency, wordnet_available
from vlalign.engine.cells import Cell, ClassifyCell, ConceptCell, Embeddings, MatchCell
from vlalign.engine.extract import read_shards
from vlalign.methods import baselines as bl
from vlalign.methods.classify import classify, top1_accuracy
from vlalign.methods.concepts import breakdown, concept_alignment, dispersion
from vlalign.methods.matching import assignment_match, matching_accuracy, qap_match
from vlalign.methods.preprocess import select_base, stretch, stretch_by
from vlalign.methods.retrieval import local_cka_scores, recall_at_k

# sweep-spec name -> vlalign.methods.baselines name
BASELINE_NAMES = {"linear_regression": "linear", "relative": "relative", "procrustes": "procrustes", "cosine": "cosine"}


def pairs_digest(table: pa.Table) -> str:
    """The content digest of a pairs table (sql/pairs.sql output): its file name and part of every cell's identity."""
    return digest_json(table.to_pylist())


# ------------------------------------------------------------------ paired data
@dataclass(frozen=True)
class Paired:
    """The pairs of one selection that have embeddings: row i is image ids[i] with its captions captions[i]."""

    ids: list[str]
    captions: list[tuple[str, ...]]
    labels: dict[str, list]  # label field -> the image's label (None if it has none)
    x: np.ndarray  # (n, d1) image embeddings
    y: np.ndarray  # (n, d2) mean embedding of each image's captions


def read_pairs(lake: Lake, path: str, digest: str) -> pa.Table:
    pairs = lake.read_table(path)
    if pairs_digest(pairs) != digest:
        raise RuntimeError(f"{path}: contents do not match digest {digest}; rerun the sweep")
    return pairs


def paired(lake: Lake, pairs_path: str, digest: str, vision: Embeddings, text: Embeddings) -> Paired:
    """The pairs table's images with their embeddings; y is the mean embedding of each image's captions.

    Images or captions without an embedding (rejected during extraction) drop their pair."""
    pairs = read_pairs(lake, pairs_path, digest)
    vid, vemb = read_shards(lake, list(vision.shards))
    tid, temb = read_shards(lake, list(text.shards))
    vrow = {u: i for i, u in enumerate(vid)}
    trow = {u: i for i, u in enumerate(tid)}
    fields = [f for f in ("label", "sublabel") if f in pairs.column_names]
    label_cols = {f: pairs[f].to_pylist() for f in fields}
    ids, caps, xs, ys = [], [], [], []
    labels: dict[str, list] = {f: [] for f in fields}
    for k, (image_id, cap_ids) in enumerate(zip(pairs["image_id"].to_pylist(), pairs["caption_ids"].to_pylist())):
        if image_id not in vrow:
            continue
        rows = [trow[c] for c in cap_ids if c in trow]
        if not rows:
            continue
        ids.append(image_id)
        caps.append(tuple(cap_ids))
        xs.append(vrow[image_id])
        ys.append(temb[rows].astype(np.float64).mean(axis=0))
        for f in fields:
            labels[f].append(label_cols[f][k])
    x = vemb[np.asarray(xs, dtype=np.int64)].astype(np.float64).reshape(len(xs), vemb.shape[1])
    y = np.asarray(ys, dtype=np.float64).reshape(len(ys), temb.shape[1])
    return Paired(ids, caps, labels, x, y)


def paired_embeddings(cell: Cell) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(image ids, X (n, d1), Y (n, d2)) of the cell's own selection."""
    p = paired(cell.lake, cell.pairs_path, cell.pairs_digest, cell.vision, cell.text)
    return p.ids, p.x, p.y


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


# ------------------------------------------------------------------ splits
@dataclass(frozen=True)
class Split:
    base: np.ndarray  # indices into the base arrays
    query: np.ndarray  # indices into the query arrays
    x_base: np.ndarray  # the base rows, stretched if the cell says so
    y_base: np.ndarray
    x_query: np.ndarray
    y_query: np.ndarray


def seeded_order(pairs_path: str, ids: list[str], seed: int) -> list[int]:
    """Positions in ``ids`` in the seeded order of sql/splits.sql (pairs without embeddings left out)."""
    order = run_sql("splits", {"pairs": pairs_path, "seed": seed, "query_size": 0})
    pos = {u: i for i, u in enumerate(ids)}
    return [pos[u] for u in order["image_id"].to_pylist() if u in pos]


def make_split(cell: MatchCell | ClassifyCell, query: Paired, base: Paired | None = None,
               base_pairs_path: str | None = None, same_dataset: bool = True) -> Split:
    """Queries: the first query_size pairs of the query selection in the seeded order of sql/splits.sql.
    The base pool: the base selection's pairs (the same selection unless cross-domain) in their own seeded
    order, without any pair that shares an image or a caption with a query (ids are compared within one
    data set only: another data set's ids are another namespace); the base is chosen from it by
    the cell's base selection (``kmeans_metric``: which sample stands for a k-means centre). Stretching:
    ``stretch_scope`` 'selected' divides by the std over the chosen base + queries; 'pool' over the whole
    pool + queries, before the base is chosen (the paper's code)."""
    same = base is None
    base = query if same else base
    ranked_q = seeded_order(cell.pairs_path, query.ids, cell.seed)
    ranked_b = ranked_q if same else seeded_order(base_pairs_path, base.ids, cell.seed)
    q_idx = np.asarray(ranked_q[: cell.query_size], dtype=np.int64)
    q_images = {query.ids[i] for i in q_idx} if same_dataset else set()
    q_caps = {c for i in q_idx for c in query.captions[i]} if same_dataset else set()
    pool = np.asarray([i for i in ranked_b if base.ids[i] not in q_images and not (set(base.captions[i]) & q_caps)],
                      dtype=np.int64)
    if len(q_idx) < cell.query_size or len(pool) < cell.base_size:
        raise ValueError(
            f"{cell.label}: {len(ranked_q)} query pairs and {len(pool)} base-pool pairs have embeddings, fewer than "
            f"query {cell.query_size} and base {cell.base_size}")
    xq, yq, xp, yp = query.x[q_idx], query.y[q_idx], base.x[pool], base.y[pool]
    p = cell.protocol
    if cell.stretch and p.stretch_scope == "pool":
        rx, ry = np.vstack([xp, xq]), np.vstack([yp, yq])
        xq, yq, xp, yp = stretch_by(xq, rx), stretch_by(yq, ry), stretch_by(xp, rx), stretch_by(yp, ry)
    chosen = np.asarray(select_base(xp, yp, cell.base_size, method=cell.base_selection, seed=cell.seed,
                                    metric=p.kmeans_metric), dtype=np.int64)
    bx, by = xp[chosen], yp[chosen]
    if cell.stretch and p.stretch_scope == "selected":
        m = len(chosen)
        sx, sy = stretch(np.vstack([bx, xq])), stretch(np.vstack([by, yq]))
        bx, xq, by, yq = sx[:m], sx[m:], sy[:m], sy[m:]
    return Split(base=pool[chosen], query=q_idx, x_base=bx, y_base=by, x_query=xq, y_query=yq)


# ------------------------------------------------------------------ matching and retrieval
def _match_common(cell: MatchCell) -> dict:
    return {
        "cell_id": cell.cell_id, "dataset": cell.dataset, "domain": cell.domain, "base_domain": cell.base_domain,
        "query_domain": cell.domain, "lang": cell.lang, "vision_encoder": cell.vision.name,
        "text_encoder": cell.text.name, "base_size": cell.base_size, "query_size": cell.query_size,
        "base_selection": cell.base_selection, "stretch": cell.stretch, "seed": cell.seed,
        "protocol": cell.protocol.name,
    }


def run_match_cell(cell: MatchCell) -> tuple[list[dict], list[dict]]:
    """Every matching, retrieval and baseline method of the cell: (matching rows, retrieval rows)."""
    common = _match_common(cell)
    chance = 1.0 / cell.query_size
    methods = list(cell.matching) + list(cell.baselines)
    retrieved = list(cell.retrieval) + list(cell.baselines)

    def noted(problem: str) -> tuple[list[dict], list[dict]]:  # every method gets a row that says why it has no number
        return ([{**common, "method": m, "chance": chance, "note": problem} for m in methods],
                [{**common, "method": m, "direction": d, "note": problem}
                 for m in retrieved for d in ("image_to_text", "text_to_image")])

    if cell.skip:
        return noted(cell.skip)
    lake = cell.lake
    query = paired(lake, cell.pairs_path, cell.pairs_digest, cell.vision, cell.text)
    base = None if cell.base is None else paired(lake, cell.base.pairs_path, cell.base.pairs_digest,
                                                  cell.base.vision, cell.base.text)
    problem = input_problem(query.x, query.y) or (base is not None and input_problem(base.x, base.y)) or None
    if problem:
        return noted(problem)
    split = make_split(cell, query, base, cell.base.pairs_path if cell.base else None,
                       same_dataset=cell.base is None or cell.base.dataset == cell.dataset)
    bx, by, qx, qy = split.x_base, split.y_base, split.x_query, split.y_query
    p = cell.protocol
    matching, retrieval = [], []

    def score_rows(method: str, scores: np.ndarray, seconds: float, do_match: bool, do_retrieve: bool):
        if do_match:
            t = time.perf_counter()
            perm = assignment_match(scores)
            matching.append({**common, "method": method, "accuracy": matching_accuracy(perm), "chance": chance,
                             "objective": None, "seconds": seconds + time.perf_counter() - t})
        if do_retrieve:
            r = recall_at_k(scores, ties=p.retrieval_ties)
            for direction, rec in (("image_to_text", r.image_to_text), ("text_to_image", r.text_to_image)):
                retrieval.append({**common, "method": method, "direction": direction,
                                  "r1": rec[1], "r5": rec[5], "r10": rec[10]})

    if "qap" in cell.matching:
        res = qap_match(bx, by, qx, qy, restarts=p.qap_restarts, seed=cell.seed, kernel=p.qap_kernel, tol=p.qap_tol,
                        n_jobs=1)
        matching.append({**common, "method": "qap", "accuracy": matching_accuracy(res.perm), "chance": chance,
                         "objective": res.objective, "seconds": res.seconds})
    if "local_cka" in cell.matching or "local_cka" in cell.retrieval:
        t = time.perf_counter()
        s = local_cka_scores(bx, by, qx, qy, kernel=p.local_cka_kernel)
        score_rows("local_cka", s, time.perf_counter() - t, "local_cka" in cell.matching, "local_cka" in cell.retrieval)
    for name in cell.baselines:
        t = time.perf_counter()
        s = bl.baseline_scores(BASELINE_NAMES[name], bx, by, qx, qy, **baseline_options(name, p))
        score_rows(name, s, time.perf_counter() - t, True, True)
    return matching, retrieval


def baseline_options(name: str, p) -> dict:
    return {"intercept": p.linreg_intercept} if name == "linear_regression" else {}


# ------------------------------------------------------------------ zero-shot classification
def class_prompts(lake: Lake, cell: ClassifyCell) -> tuple[list[str], np.ndarray]:
    """(class labels, (C, d2) class embeddings): per label of the cell's field, the mean embedding of its
    template captions (the prompts data set's items say which caption is which label)."""
    items = lake.read_table(cell.prompts_path, columns=["caption_id", "label", "domain"])
    if (lake.read_metadata(cell.prompts_path) or {}).get("digest") != cell.prompts_digest:
        raise RuntimeError(f"{cell.prompts_path}: prompts do not match digest {cell.prompts_digest}; rerun the sweep")
    uid, emb = read_shards(lake, list(cell.prompts.shards))
    row = {u: i for i, u in enumerate(uid)}
    by_label: dict[str, list[int]] = {}
    for cid, label, field_ in zip(*(items[c].to_pylist() for c in ("caption_id", "label", "domain"))):
        if field_ == cell.label_field and cid in row:
            by_label.setdefault(label, []).append(row[cid])
    labels = sorted(by_label)
    return labels, np.stack([emb[by_label[lab]].astype(np.float64).mean(axis=0) for lab in labels]) if labels else \
        np.zeros((0, emb.shape[1] if emb.ndim == 2 else 0))


def run_classify_cell(cell: ClassifyCell) -> list[dict]:
    """Top-1 accuracy of every classification method on the cell's query images (those with a label)."""
    lake = cell.lake
    common = {
        "cell_id": cell.cell_id, "dataset": cell.dataset, "domain": cell.domain, "lang": cell.lang,
        "vision_encoder": cell.vision.name, "text_encoder": cell.text.name, "label_field": cell.label_field,
        "template_set": cell.template_set, "base_size": cell.base_size, "query_size": cell.query_size,
        "base_selection": cell.base_selection, "stretch": cell.stretch, "seed": cell.seed,
        "protocol": cell.protocol.name,
    }
    data = paired(lake, cell.pairs_path, cell.pairs_digest, cell.vision, cell.text)
    labels, class_y = class_prompts(lake, cell)
    problem = input_problem(data.x, data.y)
    if problem is None and len(labels) < 2:
        problem = f"label field {cell.label_field!r} has {len(labels)} classes (need 2)"
    if problem:
        return [{**common, "method": m, "n_classes": len(labels), "note": problem} for m in cell.methods]
    split = make_split(cell, data)
    truth = [data.labels[cell.label_field][i] for i in split.query]
    keep = np.asarray([t in labels for t in truth])
    qx = split.x_query[keep]
    y_true = np.asarray([labels.index(t) for t, k in zip(truth, keep) if k], dtype=np.int64)
    cy = class_y
    if cell.stretch:  # the class captions are divided by the same per-dimension std as the captions
        ref = np.vstack([data.y[split.base], data.y[split.query]]) if cell.protocol.stretch_scope == "selected" else data.y
        cy = stretch_by(class_y, ref)
    rows = []
    p = cell.protocol
    for method in cell.methods:
        t = time.perf_counter()
        opts = {"intercept": p.linreg_intercept} if method == "linear_regression" else {}
        kernel = p.qap_kernel if method == "qap" else p.local_cka_kernel
        pred = classify(method, split.x_base, split.y_base, qx, cy, kernel=kernel, restarts=p.qap_restarts,
                        seed=cell.seed, n_jobs=1, **opts)
        rows.append({**common, "method": method, "n": int(len(y_true)), "n_classes": len(labels),
                     "accuracy": top1_accuracy(pred, y_true), "chance": 1.0 / len(labels),
                     "majority": float(np.bincount(y_true).max() / len(y_true)) if len(y_true) else None,
                     "seconds": time.perf_counter() - t})
    return rows


# ------------------------------------------------------------------ concept alignment (Li et al.)
def concept_inputs(cell: ConceptCell):
    """(concepts, image means (C, d1), images per concept, alias embeddings (A, d2), alias concept index (A,),
    primary name per concept): the concepts that have at least one embedded image and one embedded alias."""
    lake = cell.lake
    members = lake.read_table(cell.members_path)
    if (lake.read_metadata(cell.members_path) or {}).get("digest") != cell.members_digest:
        raise RuntimeError(f"{cell.members_path}: does not match digest {cell.members_digest}; rerun the sweep")
    if (lake.read_metadata(cell.aliases_path) or {}).get("digest") != cell.aliases_digest:
        raise RuntimeError(f"{cell.aliases_path}: does not match digest {cell.aliases_digest}; rerun the sweep")
    rows: dict[str, np.ndarray] = {}
    for part in cell.images:
        ids, emb = read_shards(lake, list(part.shards))
        rows.update({u: emb[i] for i, u in enumerate(ids)})
    images: dict[str, list[np.ndarray]] = {}
    for c, img in zip(members["concept"].to_pylist(), members["image_id"].to_pylist()):
        if img in rows:
            images.setdefault(c, []).append(rows[img].astype(np.float64))
    items = lake.read_table(cell.aliases_path, columns=["caption_id", "caption", "label"])
    uid, temb = read_shards(lake, list(cell.text.shards))
    trow = {u: i for i, u in enumerate(uid)}
    aliases: dict[str, list[tuple[str, int]]] = {}
    for cid, text, c in zip(*(items[k].to_pylist() for k in ("caption_id", "caption", "label"))):
        if cid in trow:
            aliases.setdefault(c, []).append((text, trow[cid]))
    concepts = sorted(c for c in images if c in aliases)
    index = {c: i for i, c in enumerate(concepts)}
    alias_rows = [(index[c], r) for c in concepts for _, r in aliases[c]]
    alias_emb = temb[[r for _, r in alias_rows]].astype(np.float64)
    alias_concept = np.asarray([i for i, _ in alias_rows], dtype=np.int64)
    per_concept = [np.stack(images[c]) for c in concepts]
    means = np.stack([x.mean(axis=0) for x in per_concept]) if concepts else np.zeros((0, 1))
    names = [aliases[c][0][0] for c in concepts]  # the primary name: CLDR name (emoji), label text (others)
    return concepts, means, per_concept, alias_emb, alias_concept, names


def run_concept_cell(cell: ConceptCell) -> dict[str, list[dict]]:
    """P@1/10/100 of every (mapping, retrieval), and their breakdowns by image dispersion, word frequency and
    polysemy (the primary name's; polysemy only where an offline WordNet is present)."""
    common = {"cell_id": cell.cell_id, "dataset": cell.dataset, "vision_encoder": cell.vision.name,
              "text_encoder": cell.text.name}
    concepts, means, per_concept, alias_emb, alias_concept, names = concept_inputs(cell)
    table, parts = [], []
    if len(concepts) < 2 * cell.folds:
        note = f"only {len(concepts)} concepts have an embedded image and alias (need {2 * cell.folds})"
        return {"concepts": [{**common, "retrieval": r, "mapping": m, "n_concepts": len(concepts), "note": note}
                             for m in cell.mappings for r in cell.retrievals], "concept_breakdown": []}
    props: dict[str, tuple[np.ndarray | None, str | None]] = {
        "dispersion": (dispersion(per_concept), None),
        "word_frequency": (word_frequency(names), None),
    }
    poly = polysemy(names) if wordnet_available() else None
    props["polysemy"] = (poly, None if poly is not None else
                         "unavailable: no offline WordNet (apt-get install wordnet-base, or set VLALIGN_WORDNET_DIR)")
    for mapping in cell.mappings:
        for retrieval in cell.retrievals:
            t = time.perf_counter()
            res = concept_alignment(means, alias_emb, alias_concept, mapping=mapping, retrieval=retrieval,
                                    folds=cell.folds, seed=cell.seed, ks=(1, 10, 100), csls_k=cell.csls_k)
            key = {**common, "retrieval": retrieval, "mapping": mapping}
            table.append({**key, "n_concepts": res.n_concepts, "n_aliases": res.n_aliases, "folds": cell.folds,
                          "seed": cell.seed, "p_at_1": res.p_at_k[1], "p_at_10": res.p_at_k[10],
                          "p_at_100": res.p_at_k[100], "seconds": time.perf_counter() - t})
            for prop, (values, why) in props.items():
                if values is None:
                    parts.append({**key, "property": prop, "note": why})
                    continue
                for row in breakdown(values, res, bins=cell.bins):
                    parts.append({**key, "property": prop, **{k: row.get(k) for k in (
                        "bin", "low", "high", "n", "n_missing", "p_at_1", "p_at_10", "p_at_100")}})
    for r in parts:
        for k in ("p_at_1", "p_at_10", "p_at_100", "low", "high"):
            if k in r and r[k] is not None and not np.isfinite(r[k]):
                r[k] = None
    return {"concepts": table, "concept_breakdown": parts}


# ------------------------------------------------------------------ writing cells
def write_cell(cell: Cell, rows: dict[str, list[dict]]) -> list[str]:
    """Write a cell's result files, each carrying the cell's identity. The first table is written last,
    so the cell counts as done (:func:`vlalign.engine.cells.cell_is_done`) only when all of them are in place."""
    lake = cell.lake
    paths = cell.paths()
    for table in reversed(cell.tables):
        lake.write_table(paths[table], pa.Table.from_pylist(rows[table], schema=RESULT_SCHEMAS[table]),
                         {"identity": cell.identity, "cell_id": cell.cell_id})
    return list(paths.values())
