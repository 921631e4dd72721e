"""What `vlalign explain` explains and fits its linear map on: the items, and the base pairs of each item's domain
and language.

The base set of an explanation is the base of one matching cell: the main grid's first setting (base size,
query size, base selection, stretch) of the run's spec, for the explained item's domain and language, the two
encoders and a seed. The cell is planned exactly as the sweep plans it (:func:`vlalign.engine.cells.plan_cells`), so
its split is the split the run scored; its id is checked against the run's record.

Without a run, the spec is the built-in default (``vlalign run``): if the lake holds the default run, its cell;
otherwise the shards the cell needs are embedded here, in this process, as the sweep would (same shard
identities, so a later sweep reuses them), and the default split is made from them.

The older way, for the embedded emoji set only (:func:`emoji_rows`): ``base_size`` pairs drawn at random (seeded)
from the explained emoji's domain and language, never an explained emoji, embedded here.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from vlalign.datalake.runs import RunRecordError, read_run
from vlalign.datalake.store import Lake
from vlalign.datasets.readers import read_emoji
from vlalign.encoders import get_encoder, load_encoder, weights_digest
from vlalign.engine.analysis import Paired, Split, make_split, paired
from vlalign.engine.cells import Embeddings, MatchCell, plan_cells
from vlalign.engine.extract import embed_shard, ingest_dataset, plan_shards, shard_is_done
from vlalign.engine.pairing import write_pairs
from vlalign.engine.spec import SweepSpec, load_spec, parse_spec
from vlalign.methods.attribution import fit_linear_map

Bases = dict[tuple[str, str], tuple[np.ndarray, np.ndarray] | None]  # {(domain, lang): (X_base, Y_base) or None}

ITEM_COLUMNS = ["item_id", "image_id", "image", "image_bytes", "caption_id", "caption", "lang", "domain"]


class ExplainInputError(ValueError):
    """A run, data set or item that cannot give an explanation its base (a clear message, no traceback)."""


@dataclass
class BaseSet:
    """The base of one matching cell, with the raw embeddings the explanation's linear map is fitted on."""

    cell: MatchCell
    run_id: str | None  # None: the default split, computed here
    data: Paired  # the cell's selection
    split: Split

    @property
    def base_ids(self) -> list[str]:
        return [self.data.ids[i] for i in self.split.base]

    @property
    def pairs(self) -> tuple[np.ndarray, np.ndarray]:
        """(X_base, Y_base): the base images' embeddings and their captions' mean embeddings, unstretched
        (per-dimension scaling is absorbed by the least-squares map, so the map's predictions are the same)."""
        return self.data.x[self.split.base], self.data.y[self.split.base]

    def describe(self) -> str:
        c = self.cell
        src = f"run {self.run_id}" if self.run_id else "the default split (built-in spec)"
        return (f"{src}: cell {c.cell_id[:12]} ({c.dataset}/{c.domain}/{c.lang}, base {c.base_size} by "
                f"{c.base_selection}{', stretched' if c.stretch else ''}, {c.query_size} queries, seed {c.seed})")


def load_run(lake: Lake, run_id: str) -> tuple[dict, SweepSpec]:
    """The run's record and its sweep spec (only sweeps have matching cells)."""
    try:
        record = read_run(lake, run_id, flow="sweep")
    except RunRecordError as e:
        raise ExplainInputError(f"--run: {e} (explain needs a sweep run: its matching cells)") from None
    return record, parse_spec(record["spec"])


def lake_items(lake: Lake, dataset: str) -> pa.Table:
    path = lake.items_path(dataset)
    if not lake.exists(path):
        raise ExplainInputError(f"data set {dataset!r} is not in the lake {lake.root}")
    return lake.read_table(path, columns=ITEM_COLUMNS)


def spec_items(lake: Lake, spec: SweepSpec, dataset: str, *, ingest: bool) -> pa.Table:
    """The lake's items of ``dataset``; with ``ingest``, read the data set into the lake first if it is not there."""
    names = [d.name for d in spec.datasets]
    if dataset not in names:
        raise ExplainInputError(f"--dataset {dataset!r}: the spec has data sets {names}")
    if not lake.exists(lake.items_path(dataset)) and ingest:
        ingest_dataset(lake, spec.datasets[names.index(dataset)].source())
    return lake_items(lake, dataset)


def main_selection(spec: SweepSpec, items: pa.Table, dataset: str) -> tuple[str, str]:
    """The first (domain, lang) of the data set's main grid (its own domains and langs, sorted)."""
    ds = next(d for d in spec.datasets if d.name == dataset)
    pairs = sorted(set(zip(items["domain"].to_pylist(), items["lang"].to_pylist())))
    sel = [(d, lg) for d, lg in pairs if (not ds.domains or d in ds.domains) and (not ds.langs or lg in ds.langs)]
    if not sel:
        raise ExplainInputError(f"data set {dataset!r}: no items in the spec's domains {ds.domains} "
                                f"and langs {ds.langs}")
    return sel[0]


def find_items(items: pa.Table, item_ids: list[str], dataset: str) -> dict[str, dict]:
    """{item id: its row} for each id, or an error that names the ids that are missing."""
    rows = items.filter(pc.is_in(items["item_id"], pa.array(item_ids, pa.string()))).to_pylist()
    found = {r["item_id"]: r for r in rows}
    missing = [i for i in item_ids if i not in found]
    if missing:
        example = items["item_id"][0].as_py() if items.num_rows else "-"
        raise ExplainInputError(f"--item: no item {missing[0]!r} in data set {dataset!r} "
                                f"({len(missing)} missing; ids look like {example!r})")
    return found


def base_set(lake: Lake, spec: SweepSpec, dataset: str, domain: str, lang: str, vision: str, text: str, seed: int,
             *, run: tuple[str, dict] | None = None, items: pa.Table | None = None, threads: int | None = None,
             log: Callable[[str], None] = print) -> BaseSet:
    """The base of the main-grid matching cell of (``dataset``/``domain``/``lang``, ``vision`` x ``text``,
    ``seed``) under ``spec``. With ``run`` (run id, record): the run's cell, whose shards must be in the lake.
    Without: the missing shards are embedded here first. ``items``: the data set's lake items (:func:`spec_items`)
    if the caller has read them already."""
    whose = f"run {run[0]}" if run else "the default spec"
    for flag, name, have in (("--vision", vision, spec.vision_encoders), ("--text", text, spec.text_encoders)):
        if name not in have:
            raise ExplainInputError(f"{flag} {name!r}: not an encoder of {whose} (it has {list(have)})")
    if seed not in spec.seeds:
        raise ExplainInputError(f"--seed {seed}: {whose} has seeds {list(spec.seeds)}")
    if not spec.has_matching:
        raise ExplainInputError(f"{'run ' + run[0] if run else 'the spec'} has no matching cells "
                                "(analyses.matching is empty)")
    if items is None:
        items = spec_items(lake, spec, dataset, ingest=run is None)
    embeddings = {}
    for name, part, col in ((vision, domain, "domain"), (text, lang, "lang")):
        enc = get_encoder(name)
        sel = items.filter(pc.equal(items[col], part))
        shards = plan_shards(lake, dataset, sel, enc, weights_digest(enc), spec.shard_size)
        missing = [s for s in shards if not shard_is_done(lake, s)]
        if missing and run is not None:
            raise ExplainInputError(f"run {run[0]}: {len(missing)} of {len(shards)} shards of {name} ({part}) are not "
                                    f"in the lake; `vlalign resume {run[0]}` computes them")
        if missing:
            t0 = time.perf_counter()
            encoder = load_encoder(name, threads=threads)
            done, total = 0, sum(m.size for m in missing)
            for s in missing:
                embed_shard(lake, s, encoder, batch_size=8)
                done += s.size
                log(f"  embedding {name} ({part}) for the default split: {done}/{total} units, "
                    f"{done / (time.perf_counter() - t0):.1f}/s")
        embeddings[(dataset, name, part)] = Embeddings.of(lake, name, enc.lake_name, part, shards)
    path, digest = write_pairs(lake, dataset, domain, lang)
    studies_off = dict.fromkeys(("cka", "cross_domain", "cross_lingual", "classification", "curves", "concepts",
                                 "explain"))
    one = spec.model_copy(update={"vision_encoders": (vision,), "text_encoders": (text,),
                                  "datasets": tuple(d for d in spec.datasets if d.name == dataset),
                                  "analyses": spec.analyses.model_copy(update=studies_off)})
    cells = plan_cells(one, lake, {dataset: {(domain, lang): (path, digest)}}, embeddings, {dataset: [(domain, lang)]})
    cell = next(c for c in cells if isinstance(c, MatchCell) and c.seed == seed)
    if run is not None and cell.cell_id not in run[1].get("cells", {}).get("matching", []):
        log(f"  note: run {run[0]} recorded no cell {cell.cell_id[:12]} (made by another engine version, or "
            f"another domain/language); its split is rebuilt from the run's spec and the lake's embeddings")
    data = paired(lake, path, digest, embeddings[(dataset, vision, domain)], embeddings[(dataset, text, lang)])
    return BaseSet(cell, run[0] if run else None, data, make_split(cell, data))


def default_spec() -> SweepSpec:
    return load_spec(None)


def best_matched(bs: BaseSet, n: int) -> list[tuple[str, float, bool]]:
    """The n best-matched query pairs of the cell: (image id, margin, correct), by the score that is explained,
    s(a, b) = ([f(a), 1] W)^T g(b) with W fitted on the base. A query is matched when its own caption scores
    highest among the cell's query captions; the margin is its score minus the best other caption's. Matched
    queries come first, by margin."""
    xb, yb = bs.pairs
    w = fit_linear_map(xb, yb)
    xq, yq = bs.data.x[bs.split.query], bs.data.y[bs.split.query]
    s = np.hstack([xq, np.ones((len(xq), 1))]) @ w @ yq.T
    own = np.diag(s).copy()
    np.fill_diagonal(s, -np.inf)
    margin = own - s.max(axis=1)
    order = np.lexsort((-margin, ~(margin > 0)))
    return [(bs.data.ids[bs.split.query[i]], float(margin[i]), bool(margin[i] > 0)) for i in order[:n]]


def item_of(items: pa.Table, image_id: str, captions: tuple[str, ...], lang: str) -> str:
    """The item id of an image with one of its captions in ``lang`` (the first, in id order)."""
    sel = items.filter(pc.and_(pc.equal(items["image_id"], image_id), pc.equal(items["lang"], lang)))
    ids = sorted(i for i, c in zip(sel["item_id"].to_pylist(), sel["caption_id"].to_pylist()) if c in captions)
    if not ids:
        raise ExplainInputError(f"image {image_id!r} has no item with a caption in {lang!r}")
    return ids[0]


@dataclass
class ExplainInputs:
    """What one `vlalign explain` explains: the item ids, their rows ({item id: a canonical item row}) and base pairs
    ({(domain, lang): (X_base, Y_base)}; both None: the seeded random emoji base, :func:`emoji_rows`), a line
    that says where the base comes from, the seed, and {item id: (margin, matched)} of the ``top`` queries."""

    items: list[str]
    rows: dict[str, dict] | None
    bases: Bases | None
    source: str
    seed: int | None
    margins: dict[str, tuple[float, bool]] = field(default_factory=dict)


def cell_inputs(lake: Lake, item_ids: Sequence[str], top: int | None, *, run_id: str | None, dataset: str | None,
                domain: str | None, lang: str | None, vision: str, text: str, seed: int | None,
                threads: int | None = None, log: Callable[[str], None] = print) -> ExplainInputs:
    """The items (``item_ids``, then the ``top`` best-matched queries of the ``domain``/``lang`` cell, by default the
    main grid's first) and the base pairs of each from the run's cells (``run_id``), or the default split's. The
    dataset and seed default to the spec's first."""
    run = None
    if run_id:
        record, spec = load_run(lake, run_id)
        run = (run_id, record)
    else:
        spec = default_spec()
    dataset = dataset or spec.datasets[0].name
    seed = spec.seeds[0] if seed is None else seed
    items_table = spec_items(lake, spec, dataset, ingest=run is None)
    wanted = list(item_ids or [])
    rows = find_items(items_table, wanted, dataset) if wanted else {}
    groups = {(r["domain"], r["lang"]) for r in rows.values()}
    top_sel = None
    if top:
        top_sel = main_selection(spec, items_table, dataset)
        top_sel = (domain or top_sel[0], lang or top_sel[1])
        groups.add(top_sel)
    sets = {g: base_set(lake, spec, dataset, g[0], g[1], vision, text, seed, run=run, items=items_table,
                        threads=threads, log=log) for g in sorted(groups)}
    margins = {}
    if top_sel:
        bs = sets[top_sel]
        caps = dict(zip(bs.data.ids, bs.data.captions))
        for image_id, margin, ok in best_matched(bs, top):
            iid = item_of(items_table, image_id, caps[image_id], top_sel[1])
            margins[iid] = (margin, ok)
            if iid not in rows:
                wanted.append(iid)
        rows.update(find_items(items_table, [i for i in wanted if i not in rows], dataset))
    base_ids = {g: set(bs.base_ids) for g, bs in sets.items()}
    for iid, r in rows.items():
        if r["image_id"] in base_ids[(r["domain"], r["lang"])]:
            log(f"note: {iid} is itself one of the base pairs the map is fitted on")
    source = "; ".join(bs.describe() for bs in sets.values())
    return ExplainInputs(wanted, rows, {g: bs.pairs for g, bs in sets.items()}, source, seed, margins)


def emoji_rows(item_ids: Sequence[str], vision: str, text: str, base_size: int, seed: int, want_bases: bool,
                device: str, threads: int | None) -> tuple[dict[str, dict], Bases]:
    """Rows of emoji items of the embedded set, and (want_bases) seeded random base pairs per (domain, lang):
    ``base_size`` pairs of the same domain and language, never an explained emoji, embedded here."""
    parsed = []
    for iid in item_ids:
        parts = str(iid).split("/")
        if len(parts) != 3:
            raise ValueError(f"item ids look like 'google/en/1f431' (domain/lang/emoji), got {iid!r}")
        parsed.append(parts)
    groups: dict[tuple[str, str], list[str]] = {}
    for d, lang, e in parsed:
        groups.setdefault((d, lang), []).append(e)
    explained = {e for _, _, e in parsed}
    rows: dict[str, dict] = {}
    bases: Bases = {}
    for (d, lang), eids in groups.items():
        items = read_emoji(domains=[d], langs=[lang]).items
        ids = items["item_id"].to_pylist()
        imgs, caps = items["image_bytes"].to_pylist(), items["caption"].to_pylist()
        index = {iid: k for k, iid in enumerate(ids)}
        for e in eids:
            iid = f"{d}/{lang}/{e}"
            if iid not in index:
                raise ValueError(f"no emoji item {iid!r} in the embedded set")
            k = index[iid]
            rows[iid] = {"image": None, "image_bytes": imgs[k], "caption": caps[k], "domain": d, "lang": lang}
        if want_bases and base_size > 0:
            pool = [k for k, iid in enumerate(ids) if iid.rsplit("/", 1)[1] not in explained]
            if len(pool) < base_size:
                raise ValueError(f"{d}/{lang}: only {len(pool)} base pairs available, base_size is {base_size}")
            pick = np.random.default_rng(seed).choice(len(pool), size=base_size, replace=False)
            chosen = [pool[k] for k in sorted(pick)]
            venc = load_encoder(vision, device=device, threads=threads)
            tenc = load_encoder(text, device=device, threads=threads)
            bases[(d, lang)] = (venc.encode([imgs[k] for k in chosen]), tenc.encode([caps[k] for k in chosen]))
        else:
            bases[(d, lang)] = None
    return rows, bases
