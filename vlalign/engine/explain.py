"""`vlalign explain`: feature-pair attributions of image-caption pairs (integrated Jacobians, Moller et al. 2024),
written as a run ``explain-<digest>`` of the lake's `attributions` table, one PNG per item and explanations.parquet.

    inputs     the items and their base pairs (vlalign.engine.explain_inputs): a run's matching cell, the default
               split's (its missing shards embedded here), or seeded random emoji pairs
    explain    per item, the two encoders as differentiable functions (vlalign.encoders.differentiable) and the
               attribution math (vlalign.methods.attribution): :func:`explain_pair`
    write      the attributions table (:func:`explanation_table`) into the lake, under a run record; the figures
               (vlalign.report.explain_figure) and explanations.parquet into the output folder

Not a Prefect flow, on purpose: one explanation needs the two encoders in one process and takes seconds, and the
work is a few items, one after the other. A flow would start (or find) a Prefect API server and a task runner first,
5-10 s of start-up and a server process for nothing that could run in parallel, and `vlalign explain` would no
longer work where no server can run. So it runs here, in-process, and records its run in the lake itself
(:func:`vlalign.datalake.runs.recorded_run`, as the flows do).
"""
from __future__ import annotations

import json
import os
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from vlalign.datalake.catalog import refresh_catalog
from vlalign.datalake.digest import digest_json
from vlalign.datalake.runs import RunRecordError, add_files, read_run, recorded_run
from vlalign.datalake.schemas import ATTRIBUTIONS_SCHEMA
from vlalign.datalake.store import Lake, atomic_write_bytes
from vlalign.datasets.readers import image_source
from vlalign.encoders import load_encoder
from vlalign.encoders.differentiable import TextTower, image_view, vision_parts
from vlalign.engine.explain_inputs import Bases, ExplainInputs, cell_inputs, emoji_rows
from vlalign.methods.attribution import (
    DEFAULT_RULE,
    DEFAULT_STEPS,
    Explanation,
    fit_linear_map,
    integrated_pair_attributions,
)

Plot = Callable[[Explanation, Any, Path], Any]  # (explanation, image source, PNG path): writes the picture

__all__ = ["ExplainRun", "explain_best", "explain_items", "explain_pair", "explanation_table", "explanations_dir",
           "explain_file_name", "run_explain"]


@dataclass
class ExplainRun:
    """A finished `vlalign explain`: its run id, the items explained (in order), their explanations, where the base
    pairs came from, and {item id: (margin, matched)} for the best-matched queries (``top``)."""

    run_id: str
    items: list[str]
    explanations: list[Explanation]
    source: str
    margins: dict[str, tuple[float, bool]]


def run_explain(lake: Lake, item_ids: Sequence[str], *, top: int | None = None, run: str | None = None,
                dataset: str | None = None, domain: str | None = None, lang: str | None = None,
                vision: str = "mobilenetv2", text: str = "minilm-l6", steps: int = DEFAULT_STEPS,
                seed: int | None = None, base_size: int | None = None, out_dir: str | Path, plot: Plot | None = None,
                threads: int | None = None, log: Callable[[str], None] = print) -> ExplainRun:
    """Explain ``item_ids`` and the ``top`` best-matched queries, with the base pairs of ``run``'s matching cell (the
    default split's without a run), or with ``base_size`` seeded random emoji pairs instead (no cell; 0: the
    encoders are aligned). Writes the run ``explain-<digest of the settings>`` (the `attributions` table), one PNG
    per item and explanations.parquet in ``out_dir``; ``log`` gets the progress lines and the base set's."""
    if base_size is not None:
        if run or top or (dataset or "emoji") != "emoji":
            raise ValueError("--base-size draws a random base from the embedded emoji set: it goes with neither "
                             "--run, --top nor another --dataset")
        inputs = ExplainInputs(list(item_ids), None, None, f"{base_size} random emoji pairs, seed {seed or 0}", seed)
    else:
        inputs = cell_inputs(lake, item_ids, top, run_id=run, dataset=dataset, domain=domain, lang=lang,
                             vision=vision, text=text, seed=seed, threads=threads, log=log)
    settings = {"dataset": dataset or "emoji", "items": inputs.items, "vision": vision, "text": text,
                "steps": steps, "base_size": base_size, "seed": inputs.seed, "run": run, "base": inputs.source}
    run_id = f"explain-{digest_json(settings)[:12]}"
    log(f"base set: {inputs.source}")
    with recorded_run(lake, run_id, "explain", settings, on_exit=refresh_catalog) as record:
        table, explanations = explain_items(inputs.items, vision, text, base_size=base_size or 0,
                                            seed=inputs.seed or 0, steps=steps, out_dir=out_dir, plot=plot, threads=threads,
                                            rows=inputs.rows, bases=inputs.bases)
        path = lake.attributions_path(run_id)
        lake.write_table(path, table, {"settings": settings})
        add_files(record, "attributions", lake, [path])
    return ExplainRun(run_id, inputs.items, explanations, inputs.source, inputs.margins)


def explain_items(item_ids: Sequence[str], vision: str = "mobilenetv2", text: str = "minilm-l6", *,
                  base_size: int = 256, seed: int = 0, steps: int = DEFAULT_STEPS, vision_layer: int | None = None,
                  text_layer: int | None = None, rule: str = DEFAULT_RULE, vision_reference: str = "zero",
                  out_dir: str | Path | None = None, plot: Plot | None = None, threads: int | None = None,
                  device: str = "cpu",
                  rows: dict[str, dict] | None = None,
                  bases: Bases | None = None,
                  ) -> tuple[pa.Table, list[Explanation]]:
    """Explain items: emoji ids "domain/lang/emoji_id" (e.g. "google/en/1f431") of the embedded set, or, with
    ``rows`` ({item id: a canonical item row with image/image_bytes, caption, domain, lang}), any data set's.

    ``bases``: {(domain, lang): (X_base, Y_base) or None (aligned)}, the base pairs the linear map is fitted on
    (a run's or the default split's base, :func:`vlalign.engine.explain_inputs.cell_inputs`). Without it (emoji
    only), ``base_size`` pairs are drawn (seeded) from the same domain and language, never an explained emoji, and
    embedded with the two encoders (:func:`vlalign.engine.explain_inputs.emoji_rows`); base_size=0 treats the
    encoders as aligned.
    With out_dir: explanations.parquet there, and with ``plot`` (the report's picture of an explanation, e.g.
    :func:`vlalign.report.explain_figure.plot_explanation`) one PNG per item (the item id with '/' as '_').
    Returns the explanation table (ATTRIBUTIONS_SCHEMA, all items) and the explanations."""
    if rows is None:
        rows, random_bases = emoji_rows(item_ids, vision, text, base_size, seed, bases is None, device, threads)
        bases = bases if bases is not None else random_bases
    for iid in item_ids:
        if iid not in rows:
            raise ValueError(f"no item {iid!r} among the rows given")
        key = (rows[iid]["domain"], rows[iid]["lang"])
        if key not in bases:
            raise ValueError(f"no base pairs given for domain/lang {key} of item {iid!r}")
    images = {iid: image_source(rows[iid].get("image"), rows[iid].get("image_bytes")) for iid in item_ids}
    tables, expls = [], []
    out = Path(out_dir) if out_dir is not None else None
    for iid in item_ids:
        row = rows[iid]
        ex = explain_pair(images[iid], row["caption"], vision, text, base_pairs=bases[(row["domain"], row["lang"])],
                          steps=steps, vision_layer=vision_layer, text_layer=text_layer, rule=rule,
                          vision_reference=vision_reference, device=device, threads=threads)
        expls.append(ex)
        tables.append(explanation_table(ex, iid))
        if out is not None and plot is not None:
            plot(ex, images[iid], out / f"{explain_file_name(iid)}.png")
    table = pa.concat_tables(tables) if tables else ATTRIBUTIONS_SCHEMA.empty_table()
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, out / "explanations.parquet")
    return table, expls


def explain_file_name(item_id: str) -> str:
    """A file name for an item id: '/' and anything unusual as '_'."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", item_id).strip("._") or "item"


def explain_pair(image_bytes: Any, caption: str, vision: str = "mobilenetv2", text: str = "minilm-l6", *,
                 base_pairs: tuple[np.ndarray, np.ndarray] | None = None, steps: int = DEFAULT_STEPS,
                 vision_layer: int | None = None, text_layer: int | None = None, rule: str = DEFAULT_RULE,
                 vision_reference: str = "zero", normalize_image: bool = False, device: str = "cpu",
                 threads: int | None = None, chunk: int = 64) -> Explanation:
    """Feature-pair attributions of (image, caption) under s(a, b) = f(a)^T g(b) (see the module docstring).

    base_pairs: (X_base (M, d_img), Y_base (M, d_txt)) embeddings of base pairs by these two encoders; the
    least-squares map [x, 1] W fitted on them is part of f. None: the pair is treated as aligned (f without a
    map; the dimensions must match).

    vision_layer: index into the CNN's blocks, negative from the end (default -1: the last block, 7x7 for a
    224 px mobilenetv2 input; 4: the last 14x14 stage, finer but needing ~128 steps for a 1e-2 residual).
    text_layer: hidden-state index, negative from the end (default -1: the input of the last transformer
    layer; 0, the embedding output, integrates badly from a zero reference: the residual stays ~10 % at 64
    steps). steps, rule: the quadrature of the integrated Jacobians (see quadrature; default 64, 'graded').
    vision_reference: 'zero' or 'white' (the feature map of a white image). normalize_image: explain
    f(a)^T g(b) / ||f(a)|| instead (f then ends with an L2 normalisation; with a unit-norm g that is the
    cosine the linear baseline scores with). chunk: passes batched together (memory ~ chunk x one tail)."""
    import torch  # heavy: only when a pair is explained

    t0 = time.perf_counter()
    venc = load_encoder(vision, device=device, threads=threads)
    tenc = load_encoder(text, device=device, threads=threads)
    if venc.spec.modality != "vision" or tenc.spec.modality != "text":
        raise ValueError(f"need a vision and a text encoder, got {vision!r} ({venc.spec.modality}) and "
                         f"{text!r} ({tenc.spec.modality})")
    if vision_reference not in ("zero", "white"):
        raise ValueError(f"vision_reference must be 'zero' or 'white', got {vision_reference!r}")
    backend = venc._backend  # noqa: SLF001 - the preprocessing transform of the loaded model
    head, tail, vli = vision_parts(venc, vision_layer)
    tower = TextTower(tenc, text_layer)

    if base_pairs is None:
        if venc.dim != tenc.dim:
            raise ValueError(f"{vision} ({venc.dim}-d) and {text} ({tenc.dim}-d) are not aligned: pass base_pairs "
                             "to fit the linear map")
        w_mat = w_bias = None
    else:
        xb, yb = base_pairs
        xb, yb = np.asarray(xb), np.asarray(yb)
        if xb.ndim != 2 or yb.ndim != 2 or xb.shape[1] != venc.dim or yb.shape[1] != tenc.dim:
            raise ValueError(f"base_pairs must be ((M, {venc.dim}), (M, {tenc.dim})) arrays, "
                             f"got {xb.shape}, {yb.shape}")
        w = fit_linear_map(xb, yb)
        w_mat = torch.as_tensor(w[:-1], dtype=torch.float32, device=device)
        w_bias = torch.as_tensor(w[-1], dtype=torch.float32, device=device)

    def f(x):
        h = tail(x)
        if w_mat is not None:
            h = h @ w_mat + w_bias
        return torch.nn.functional.normalize(h, dim=-1) if normalize_image else h

    with torch.no_grad():
        x_img = backend.prepare([image_bytes])
        a = head(x_img)
        if vision_reference == "zero":
            r_a = torch.zeros_like(a)
        else:
            white = Image.new("RGB", (224, 224), (255, 255, 255))
            r_a = head(backend.prepare([white]))
    with tenc._lock:  # noqa: SLF001
        b, tokens, _ = tower.prepare(caption)
    r_b = torch.zeros_like(b)
    n_tok = b.shape[1]
    masks = torch.zeros(n_tok, *b.shape[1:], dtype=b.dtype, device=b.device)
    masks[torch.arange(n_tok), torch.arange(n_tok)] = 1.0
    grid = (int(a.shape[2]), int(a.shape[3]))

    def group_a(z):  # (B, C, H, W) -> (B, H*W): sum over the channels of each position
        return z.sum(dim=1).reshape(z.shape[0], -1)

    with tenc._lock:  # noqa: SLF001 - the hook on the shared text model must not meet a concurrent encode()
        attr, (fa, fr, gb, gr) = integrated_pair_attributions(
            f, tower, a, r_a, b, r_b, group_a, masks, steps=steps, rule=rule, chunk=chunk)
    score, s_ra_b, s_a_rb, s_ra_rb = float(fa @ gb), float(fr @ gb), float(fa @ gr), float(fr @ gr)
    target = score - s_ra_b - s_a_rb + s_ra_rb
    return Explanation(
        attributions=attr, grid=grid, tokens=list(tokens), score=score, s_ra_b=s_ra_b, s_a_rb=s_a_rb,
        s_ra_rb=s_ra_rb, residual=float(attr.sum() - target), seconds=time.perf_counter() - t0, steps=int(steps),
        rule=rule, vision=venc.spec.name, text=tenc.spec.name, vision_layer=vli, text_layer=tower.layer,
        caption=caption, mapped=w_mat is not None, vision_reference=vision_reference,
        image=image_view(x_img, backend.data_config or {}))


def explanation_table(expl: Explanation, item_id: str = "") -> pa.Table:
    """One row per (token, grid position): item_id, vision_encoder, text_encoder, token_index, token, row, col,
    attribution, score, residual, steps (the lake's ATTRIBUTIONS_SCHEMA)."""
    p, t = expl.attributions.shape
    h, w = expl.grid
    pos = np.tile(np.arange(p), t)
    tok = np.repeat(np.arange(t), p)
    n = p * t
    cols = {
        "item_id": [item_id] * n,
        "vision_encoder": [expl.vision] * n,
        "text_encoder": [expl.text] * n,
        "token_index": tok.astype(np.int32),
        "token": [expl.tokens[i] for i in tok],
        "row": (pos // w).astype(np.int32),
        "col": (pos % w).astype(np.int32),
        "attribution": expl.attributions.T.reshape(-1).astype(np.float64),
        "score": np.full(n, expl.score),
        "residual": np.full(n, expl.residual),
        "steps": np.full(n, expl.steps, np.int32),
    }
    return pa.table(cols, schema=ATTRIBUTIONS_SCHEMA)


def explanations_dir(lake: Lake) -> Path:
    """Where the sweeps' explain study keeps its pictures: <lake>/explanations/ of a local lake, else a local
    folder keyed by the lake's URL (:meth:`Lake.local_dir`)."""
    return Path(lake.root) / "explanations" if lake.is_local else Path(lake.local_dir("explanations"))


def explain_best(lake: Lake, run_id: str, spec: Any, version: str, plot: Plot | None,
                 log: Callable[[str], None] = print) -> dict:
    """The explain study of sweep run ``run_id`` (``spec.explain``): the ``top`` best-matched query pairs of the main
    grid's first cell, explained as `vlalign explain --run RUN_ID --top N` does, the pictures in
    <explanations_dir>/<explain run id>/. Reused when the same request (the run, the study's settings and the matching
    engine ``version``) finished before: {"run_id": the explain run, "items": [...], "dir": its folder, "reused"}."""
    ex = spec.explain
    vision, text = ex.vision_encoder or spec.vision_encoders[0], ex.text_encoder or spec.text_encoders[0]
    request = {"run": run_id, "top": ex.top, "vision": vision, "text": text, "steps": ex.steps, "seed": ex.seed,
               "matching_engine": version}
    base = explanations_dir(lake)
    marker = base / f"request-{digest_json(request)[:16]}.json"
    try:
        got = json.loads(marker.read_text())
        out = base / got["run_id"]
        if (read_run(lake, got["run_id"]).get("status") == "completed"
                and all((out / f"{explain_file_name(i)}.png").is_file() for i in got["items"])):
            return {**got, "dir": str(out), "reused": True}
    except (OSError, ValueError, KeyError, RunRecordError):
        pass  # not done before, or damaged: explain again
    tmp = base / f"tmp-{digest_json(request)[:16]}-{os.getpid()}"
    done = run_explain(lake, [], top=ex.top, run=run_id, vision=vision, text=text, steps=ex.steps, seed=ex.seed,
                       out_dir=tmp, plot=plot, log=log)
    out = base / done.run_id
    shutil.rmtree(out, ignore_errors=True)
    tmp.replace(out)
    got = {"run_id": done.run_id, "items": done.items, "request": request,
           "margins": {k: list(v) for k, v in done.margins.items()}}
    atomic_write_bytes(str(marker), json.dumps(got).encode(), "explain")
    return {**got, "dir": str(out), "reused": False}
