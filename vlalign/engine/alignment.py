"""The cka cell: alignment measures (CKA, mutual kNN) of one (vision, text) encoder pair, for every pair of the
layers the cell names (vlalign.engine.cells.CKACell.layers), computed together.

One cell holds every layer pair of its encoder pair, so what is drawn at random is drawn once for all of them:
the shuffled baseline uses the same permutation of the pairs for every layer pair, and the bootstrap the same
resamples; a measure or a calibration added later can share its permutations across layer pairs the same way.
A row's ``vision_layer`` and ``text_layer`` are the layers' indices in their models (0, 1, ...: inner layers;
-1: the encoder's output, the embedding of the first lakes), with the layers' names beside them.
"""

from __future__ import annotations

import time

import numpy as np

from vlalign.engine.analysis import _finite, input_problem, paired
from vlalign.engine.cells import CKACell, Embeddings
from vlalign.methods.cka import cka, cka_bootstrap
from vlalign.methods.measures import mutual_knn


def measure(x: np.ndarray, y: np.ndarray, kernel: str, debiased: bool) -> float:
    """One alignment measure of paired rows: CKA with ``kernel`` (linear, rbf), or ``mutual_knn_k<k>``."""
    if kernel.startswith("mutual_knn_k"):
        return mutual_knn(x, y, k=int(kernel.removeprefix("mutual_knn_k")))
    return cka(x, y, kernel, debiased)


def layer_arrays(cell: CKACell) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """(X of every vision layer, Y of every text layer), rows in the same pair order: the pairs whose image and
    captions have embeddings (the same units in every layer of an encoder: they come from one forward pass)."""
    vision, text = cell.layers()
    first = paired(cell.lake, cell.pairs_path, cell.pairs_digest, vision[0], text[0])

    def rows(v: Embeddings, t: Embeddings) -> object:
        p = paired(cell.lake, cell.pairs_path, cell.pairs_digest, v, t)
        if p.ids != first.ids:
            raise RuntimeError(f"{cell.label}: layers {v.layer_name} and {t.layer_name} embed other units than "
                               f"{vision[0].layer_name} and {text[0].layer_name}; rerun the sweep")
        return p

    xs = [first.x] + [rows(v, text[0]).x for v in vision[1:]]
    ys = [first.y] + [rows(vision[0], t).y for t in text[1:]]
    return xs, ys


def run_cka_cell(cell: CKACell) -> list[dict]:
    """The cell's measure of every (vision layer, text layer) pair, with the shuffled baseline and (CKA) a
    bootstrap interval: one row per layer pair, vision layers outer."""
    t0 = time.perf_counter()
    xs, ys = layer_arrays(cell)
    vision, text = cell.layers()
    n = xs[0].shape[0]
    perm = np.random.default_rng(cell.seed).permutation(n)  # one permutation for every layer pair
    rows = []
    for v, x in zip(vision, xs):
        for t, y in zip(text, ys):
            row = pair_row(cell, x, y, perm)
            row.update(vision_layer=v.layer, text_layer=t.layer, vision_layer_name=v.layer_name,
                       text_layer_name=t.layer_name)
            rows.append(row)
    for row in rows:  # the cell's time, shared by its rows
        row["seconds"] = (time.perf_counter() - t0) / len(rows)
    return rows


def pair_row(cell: CKACell, x: np.ndarray, y: np.ndarray, perm: np.ndarray) -> dict:
    """The row of one layer pair: the measure, the shuffled baseline (pairs permuted by ``perm``) and the
    bootstrap interval, or NULL values and a note that says why."""
    row = {
        "cell_id": cell.cell_id, "dataset": cell.dataset, "domain": cell.domain, "lang": cell.lang,
        "vision_encoder": cell.vision.name, "text_encoder": cell.text.name, "kernel": cell.kernel,
        "debiased": cell.debiased, "n": int(x.shape[0]), "value": None, "shuffled_value": None,
        "ci_low": None, "ci_high": None, "seed": cell.seed, "seconds": None, "note": input_problem(x, y),
    }
    if row["note"] is None and cell.kernel.startswith("mutual_knn_k"):
        k = int(cell.kernel.removeprefix("mutual_knn_k"))
        if k >= x.shape[0]:
            row["note"] = f"k = {k} needs more than {x.shape[0]} pairs"
    if row["note"] is None:
        row["value"] = _finite(measure(x, y, cell.kernel, cell.debiased))
        if cell.shuffled:
            row["shuffled_value"] = _finite(measure(x[perm], y, cell.kernel, cell.debiased))
        if cell.bootstrap and not cell.kernel.startswith("mutual_knn"):
            ci = cka_bootstrap(x, y, cell.kernel, cell.debiased, n_boot=cell.bootstrap, seed=cell.seed)
            row["ci_low"], row["ci_high"] = _finite(ci.low), _finite(ci.high)
        if row["value"] is None:
            row["note"] = "the measure is not a finite number (a kernel with zero variance)"
    return row
