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
from vlalign.methods.calibration import (
    calibrate,
    calibrated_score,
    null_threshold,
    permutation_p_value,
    permutations,
)
from vlalign.methods.cka import cka, cka_bootstrap
from vlalign.methods.measures import mutual_knn
from vlalign.methods.registry import MEASURES
from vlalign.methods.registry import measure as registry_measure

# the measures a row's ``kernel`` names beside CKA's kernels: prefix -> (registry name, setting, its type)
_NAMED = {"mutual_knn_k": ("mutual_knn", "k", int), "cknna_k": ("cknna", "k", int),
          "cycle_knn_k": ("cycle_knn", "k", int), "svcca_": ("svcca", "keep_variance", float),
          "rsa_": ("rsa", "distance", str)}


def measure_call(kernel: str, debiased: bool) -> tuple[str, dict]:
    """(the measure's name in vlalign.methods.registry, its settings) for a row's ``kernel``: linear or rbf (CKA,
    ``debiased`` or not), mutual_knn_k<k>, cknna_k<k>, cycle_knn_k<k>, svcca_<kept variance>, rsa_<distance>."""
    for prefix, (name, key, kind) in _NAMED.items():
        if kernel.startswith(prefix):
            return name, {key: kind(kernel.removeprefix(prefix))}
    return "cka", {"kernel": kernel, "debiased": debiased}


def measure(x: np.ndarray, y: np.ndarray, kernel: str, debiased: bool) -> float:
    """One alignment measure of paired rows (see :func:`measure_call`)."""
    name, settings = measure_call(kernel, debiased)
    if name == "mutual_knn":
        return mutual_knn(x, y, k=settings["k"])
    if name == "cka":
        return cka(x, y, kernel, debiased)
    return registry_measure(name, x, y, **settings)


def calibration_columns(cell: CKACell, xs: list[np.ndarray], ys: list[np.ndarray], rows: list[dict]) -> None:
    """Permutation calibration of every layer pair's row (vlalign.methods.calibration; Groger et al. 2026): the
    measure under ``cell.permutations`` seeded random pairings, the SAME permutation for every layer pair. Adds
    tau (the null's (1 - alpha) critical value, with the observed value among the K + 1), p_value
    ((1 + #{null >= value}) / (K + 1)), calibrated (clamp((value - tau) / (1 - tau), 0, 1)), null_mean, and
    p_value_layers: the p-value against the null of the maximum over every layer pair of the cell (the layer
    search corrected; equal to p_value when the cell has one layer pair)."""
    name, settings = measure_call(cell.kernel, cell.debiased)
    n = xs[0].shape[0]
    perms = permutations(n, cell.permutations, seed=cell.seed)
    try:
        cal = calibrate(name, xs, ys, perms=perms, alpha=cell.alpha, **settings)
    except (ValueError, FloatingPointError, np.linalg.LinAlgError) as e:  # a layer pair the measure cannot take
        for row in rows:
            row.pop("_pair")
            row["note"] = "; ".join(filter(None, [row["note"], f"not calibrated: {e}"]))
        return
    # the null of the maximum over the pairs that have a finite value (a pair without one is not searched over)
    finite = np.zeros(cal.values.shape, bool)
    for row in rows:
        if row["value"] is not None:
            finite[row["_pair"]] = True
    null_max = np.nanmax(np.where(finite[None], cal.null, np.nan).reshape(cal.null.shape[0], -1), axis=1)
    smax = MEASURES[name].smax
    for row in rows:
        i, j = row.pop("_pair")
        if row["value"] is None:
            continue
        null = cal.null[:, i, j]
        tau = float(null_threshold(row["value"], null, cell.alpha))
        row.update(tau=tau, p_value=float(permutation_p_value(row["value"], null)),
                   calibrated=float(calibrated_score(row["value"], tau, smax)), null_mean=float(null.mean()),
                   p_value_layers=float(permutation_p_value(row["value"], null_max)),
                   permutations=cell.permutations, alpha=cell.alpha)


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
    for i, (v, x) in enumerate(zip(vision, xs)):
        for j, (t, y) in enumerate(zip(text, ys)):
            row = pair_row(cell, x, y, perm)
            row.update(vision_layer=v.layer, text_layer=t.layer, vision_layer_name=v.layer_name,
                       text_layer_name=t.layer_name, _pair=(i, j))
            rows.append(row)
    if cell.permutations and any(r["value"] is not None for r in rows):
        calibration_columns(cell, xs, ys, rows)
    for row in rows:
        row.pop("_pair", None)
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
        "tau": None, "p_value": None, "calibrated": None, "null_mean": None, "p_value_layers": None,
        "permutations": None, "alpha": None,
    }
    name, settings = measure_call(cell.kernel, cell.debiased)
    if row["note"] is None and "k" in settings and settings["k"] >= x.shape[0]:  # every kNN measure
        row["note"] = f"k = {settings['k']} needs more than {x.shape[0]} pairs"
    if row["note"] is None:
        row["value"] = _finite(measure(x, y, cell.kernel, cell.debiased))
        if cell.shuffled:
            row["shuffled_value"] = _finite(measure(x[perm], y, cell.kernel, cell.debiased))
        if cell.bootstrap and measure_call(cell.kernel, cell.debiased)[0] == "cka":
            ci = cka_bootstrap(x, y, cell.kernel, cell.debiased, n_boot=cell.bootstrap, seed=cell.seed)
            row["ci_low"], row["ci_high"] = _finite(ci.low), _finite(ci.high)
        if row["value"] is None:
            row["note"] = "the measure is not a finite number (a kernel with zero variance)"
    return row
