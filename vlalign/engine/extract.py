"""Sharded embedding extraction, the library half: plan shards, embed one shard, verify and read them back.

Vision encoders embed the unique images of each domain; text encoders embed the unique captions of each
language. Within a part (a domain or a language) units are sorted by id and cut into shards of
``shard_size``. A shard's identity is::

    (dataset, part, item range, digest of the shard's inputs, encoder lake name, weights digest, pooling)

and is stored in the Parquet file's metadata, with a checksum of the file's contents (unit ids and
embedding values, in order) taken when it was written. Identity says what a file should hold, the
checksum that it does: a shard counts as done only when both match (:func:`verify_shard`), and every
read checks the checksum again. A file with another identity or a bad checksum (truncated, bit-flipped,
rows permuted, swapped for another shard) is recomputed and replaced atomically; it is never read.

Shards of different shard sizes live in different folders (``size=<n>``); readers read exactly the
shards of their plan, so a shard outside the plan is never read.
"""

from __future__ import annotations

import functools
import logging
import os
import threading
import time
from collections import OrderedDict
from dataclasses import asdict, dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from vlalign.datalake.digest import digest_json, digest_values, finish, hasher, update
from vlalign.datalake.items import ItemsWriter
from vlalign.datalake.schemas import REJECT_SCHEMA
from vlalign.datalake.store import Lake
from vlalign.datasets.readers import (
    DatasetError,
    DatasetSource,
    image_name,
    image_ref,
    ingest_batches,
    load_image_input,
    source_fingerprint,
)
from vlalign.encoders import decode_image
from vlalign.encoders.cache import auto_batch_size, load_encoder
from vlalign.encoders.layers import OUTPUT
from vlalign.engine.remembered import IngestedSources, VerifiedShards

SHARD_FORMAT = 2  # bump when the shard file layout changes: old shards then no longer match
log = logging.getLogger(__name__)


class ShardError(RuntimeError):
    """A shard that does not hold what its identity and checksum say (corrupt, swapped, stale)."""


@dataclass(frozen=True)
class Units:
    """The sorted unique units of one part: ids and, for each, a key for its content."""

    modality: str
    part: str
    ids: list[str]
    content_keys: list[str]


@dataclass(frozen=True)
class ShardSpec:
    lake: Lake  # where it lives (not part of its identity)
    dataset: str
    encoder: str  # catalog name
    lake_name: str  # encoder name incl. pooling, as used in lake paths
    modality: str
    part: str
    shard: int
    shard_size: int
    start: int
    stop: int
    data_digest: str
    weights_digest: str
    pooling: str
    layer: int = OUTPUT  # an inner layer's index (0, 1, ...), or the encoder's output (-1)

    @property
    def identity(self) -> dict:
        """What the shard holds. An inner layer's shard also names its layer; the output's identity is that of
        the shards of the first lakes (which held only the output), so they stay valid."""
        return {**self._identity, **({"layer": self.layer} if self.layer != OUTPUT else {})}

    @property
    def _identity(self) -> dict:
        return {
            "format": SHARD_FORMAT,
            "dataset": self.dataset,
            "part": self.part,
            "start": self.start,
            "stop": self.stop,
            "data_digest": self.data_digest,
            "encoder": self.lake_name,
            "weights_digest": self.weights_digest,
            "pooling": self.pooling,
        }

    @property
    def path(self) -> str:
        return self.lake.shard_path(self.dataset, self.lake_name, self.part, self.shard_size, self.shard,
                                    layer=self.layer)

    @property
    def rejects_path(self) -> str:
        return self.lake.shard_path(
            self.dataset, self.lake_name, self.part, self.shard_size, self.shard, kind="rejects", layer=self.layer)

    @property
    def size(self) -> int:
        return self.stop - self.start

    def to_dict(self) -> dict:
        return asdict(self)


def unit_table(items: pa.Table, modality: str) -> dict[str, pa.Table]:
    """Per part, the unique units (sorted by id) of ``items`` for ``modality`` ('vision' or 'text')."""
    if modality == "vision":
        key, part_col = "image_id", "domain"
        cols = ["image_id", "domain", "image", "image_bytes"]
    elif modality == "text":
        key, part_col = "caption_id", "lang"
        cols = ["caption_id", "lang", "caption"]
    else:
        raise ValueError(f"modality must be 'vision' or 'text', got {modality!r}")
    t = items.select(cols)
    out = {}
    for part in sorted(set(t[part_col].to_pylist())):
        sub = t.filter(pc.equal(t[part_col], part))
        # first row per unit id, sorted by id
        ids = sub[key].to_pylist()
        first: dict[str, int] = {}
        for i, u in enumerate(ids):
            first.setdefault(u, i)
        order = [first[u] for u in sorted(first)]
        out[part] = sub.take(pa.array(order, type=pa.int64()))
    return out


def units_of(table: pa.Table, modality: str, part: str) -> Units:
    if modality == "vision":
        ids = table["image_id"].to_pylist()
        keys = []
        for path, data in zip(table["image"].to_pylist(), table["image_bytes"].to_pylist()):
            keys.append(digest_values([data], length=40) if data is not None else str(path))
    else:
        ids = table["caption_id"].to_pylist()
        keys = table["caption"].to_pylist()
    return Units(modality, part, ids, keys)


def plan_shards(
    lake: Lake,
    dataset: str,
    items: pa.Table,
    encoder,  # EncoderSpec
    weights_digest: str,
    shard_size: int,
    layers: tuple[int, ...] = (OUTPUT,),
) -> list[ShardSpec]:
    """All shards of ``encoder`` over ``items`` (one per item range and layer in ``layers``), in a fixed order."""
    if shard_size < 1:
        raise ValueError(f"shard_size must be >= 1, got {shard_size}")
    specs = []
    for part, table in unit_table(items, encoder.modality).items():
        units = units_of(table, encoder.modality, part)
        for k, start in enumerate(range(0, len(units.ids), shard_size)):
            stop = min(start + shard_size, len(units.ids))
            digest = digest_values(units.ids[start:stop] + units.content_keys[start:stop])
            specs += [
                ShardSpec(
                    lake=lake,
                    dataset=dataset,
                    encoder=encoder.name,
                    lake_name=encoder.lake_name,
                    modality=encoder.modality,
                    part=part,
                    shard=k,
                    shard_size=shard_size,
                    start=start,
                    stop=stop,
                    data_digest=digest,
                    weights_digest=weights_digest,
                    pooling=encoder.pooling,
                    layer=layer,
                )
                for layer in layers
            ]
    return specs


def shard_checksum(table: pa.Table) -> str:
    """Checksum of a shard's contents: its unit ids and the float32 bytes of its embeddings, in row order."""
    h = hasher()
    for uid in table["unit_id"].to_pylist():
        update(h, uid)
    update(h, embedding_matrix(table).astype("<f4", copy=False).tobytes())
    return finish(h)


def embedding_matrix(table: pa.Table) -> np.ndarray:
    """The (rows, dim) float32 matrix of a shard table's ``embedding`` column."""
    col = table["embedding"].combine_chunks()
    dim = col.type.list_size
    return col.values.to_numpy(zero_copy_only=False).reshape(len(table), dim)


def verify_shard(lake: Lake, spec: ShardSpec) -> tuple[pa.Table | None, str | None]:
    """(table, None) if the shard file carries ``spec``'s identity and its contents match the checksum
    recorded at write time; else (None, why not). A missing file is (None, 'missing')."""
    path = spec.path
    md = lake.read_metadata(path)
    if md is None:
        return None, "missing" if not lake.exists(path) else "unreadable footer (truncated or not Parquet)"
    if md.get("identity") != spec.identity:
        return None, "identity differs from the plan (other data, weights, range or format)"
    try:
        table = lake.read_table(path)
        actual = shard_checksum(table)
    except Exception as e:  # corrupt pages: decompression or decoding errors of any kind
        return None, f"unreadable contents ({type(e).__name__}: {str(e)[:120]})"
    if actual != md.get("checksum"):
        return None, f"checksum mismatch (recorded {md.get('checksum')}, contents {actual})"
    return table, None


def shard_is_done(lake: Lake, spec: ShardSpec) -> bool:
    """True if the shard file exists, carries exactly this identity and passes its checksum."""
    table, why = verify_shard(lake, spec)
    if why is not None and why != "missing":
        log.warning("shard %s failed verification: %s; it will be recomputed", spec.path, why)
    return table is not None


_UNIT_COLUMNS = {"vision": ["image_id", "domain", "image", "image_bytes"], "text": ["caption_id", "lang", "caption"]}
_PARTS: "OrderedDict[tuple, pa.Table | None]" = OrderedDict()
_PARTS_LOCK = threading.Lock()
PART_CACHE_SIZE = 4  # parts kept per process: a worker runs the shards of one part after another


def part_units(lake: Lake, items_path: str, modality: str, part: str) -> pa.Table | None:
    """The sorted unique units of one part of a data set's items (``unit_table``), read once per process.

    Every shard of a part needs the same table; reading and de-duplicating the items file for each shard cost
    0.3-1 s per shard of 256 images (a tenth to a third of its compute). The cache is keyed by the items file's
    content digest (its footer), so new items are never served from an old entry; each shard still checks
    its own slice against the digest in its plan."""
    digest = (lake.read_metadata(items_path) or {}).get("digest")
    key = (items_path, digest, modality, part)
    with _PARTS_LOCK:
        if key in _PARTS:
            _PARTS.move_to_end(key)
            return _PARTS[key]
    part_col = "domain" if modality == "vision" else "lang"
    with lake.fs.open(items_path, "rb") as f:
        items = pq.read_table(f, columns=_UNIT_COLUMNS[modality], filters=[(part_col, "=", part)])
    table = unit_table(items, modality).get(part)
    if digest is not None:
        with _PARTS_LOCK:
            _PARTS[key] = table
            while len(_PARTS) > PART_CACHE_SIZE:
                _PARTS.popitem(last=False)
    return table


def shard_inputs(lake: Lake, spec: ShardSpec) -> tuple[list[str], list]:
    """The unit ids and raw inputs (image references or caption strings) of a shard, checked against its digest.

    An image is not read here: inline bytes, a path, or a tar member's byte range (vlalign.datasets.readers.image_ref),
    read one at a time by :func:`embed_shard`, so that an unreadable one is that unit's reject only."""
    items_path = lake.items_path(spec.dataset)
    table = part_units(lake, items_path, spec.modality, spec.part)
    if table is None:
        raise RuntimeError(f"shard {spec.path}: part {spec.part!r} no longer in {items_path}")
    table = table.slice(spec.start, spec.size)
    units = units_of(table, spec.modality, spec.part)
    if digest_values(units.ids + units.content_keys) != spec.data_digest:
        raise RuntimeError(f"shard {spec.path}: the items changed since the plan was made; rerun to re-plan")
    if spec.modality == "vision":
        inputs = [image_ref(p, b) for p, b in zip(table["image"].to_pylist(), table["image_bytes"].to_pylist())]
    else:
        inputs = units.content_keys
    return units.ids, inputs


def embed_shard(lake: Lake, spec: ShardSpec, encoder, batch_size: int = 32, more: tuple[ShardSpec, ...] = ()) -> dict:
    """Embed one shard with a loaded encoder and write it (and its rejects) atomically. Returns a summary.

    ``more``: the shards of the same item range for other layers of the encoder: every layer comes from the same
    forward passes, and a unit rejected in one layer (non-finite values) is rejected in all."""
    t0 = time.perf_counter()
    specs = [spec, *more]
    ids, inputs = shard_inputs(lake, spec)
    rejects, good_ids, good_inputs = _readable(spec, ids, inputs)
    layers = tuple(s.layer for s in specs)
    chunks: dict[int, list[np.ndarray]] = {layer: [] for layer in layers}
    for i in range(0, len(good_inputs), batch_size):
        batch = good_inputs[i : i + batch_size]
        got = {OUTPUT: encoder.encode(batch)} if layers == (OUTPUT,) else encoder.encode_layers(batch, layers)
        for layer in layers:
            chunks[layer].append(np.asarray(got[layer], dtype=np.float32))
    dim = encoder.spec.dim or 0
    embs = {layer: np.concatenate(c) if c else np.zeros((0, dim if layer == OUTPUT else 0), np.float32)
            for layer, c in chunks.items()}
    finite = np.ones(len(good_ids), dtype=bool)
    for e in embs.values():
        finite &= np.isfinite(e).all(axis=1)
    if not finite.all():  # an input the encoder cannot represent: a reject with its reason, not a silent number
        for i in np.flatnonzero(~finite):
            rejects.append(_extract_reject(spec, good_ids[i], "encoder produced non-finite values (NaN or inf)"))
        good_ids = [u for u, ok in zip(good_ids, finite) if ok]
        embs = {layer: e[finite] for layer, e in embs.items()}
    if not good_ids and len(ids) >= 4:
        # every unit failed the same way: a systematic problem (format, decoder), not bad items
        raise RuntimeError(f"shard {spec.path}: all {len(ids)} inputs were rejected, e.g. {rejects[0]['reason']}")

    # per layer, the shard's rejects first (always, possibly empty: a recomputed shard replaces stale ones), the shard last
    for s in specs:
        lake.write_table(s.rejects_path, pa.Table.from_pylist(rejects, schema=REJECT_SCHEMA), {"identity": s.identity})
        table = embeddings_table(good_ids, embs[s.layer])
        seconds = time.perf_counter() - t0
        lake.write_table(
            s.path,
            table,
            metadata={"identity": s.identity, "checksum": shard_checksum(table), "rows": table.num_rows,
                      "encoder_name": s.encoder, "seconds": seconds, "rejects": len(rejects)},
        )
    return {"path": spec.path, "encoder": spec.encoder, "rows": len(good_ids), "rejects": len(rejects),
            "seconds": time.perf_counter() - t0, "layers": len(specs)}


def _readable(spec: ShardSpec, ids: list[str], inputs: list) -> tuple[list[dict], list[str], list]:
    """(rejects, ids, inputs) of a shard's units: images read and decoded, captions not empty."""
    rejects = []
    good_ids, good_inputs = [], []
    for uid, x in zip(ids, inputs):
        if spec.modality == "vision":
            name = image_name(x, uid)  # its path, its tar member, or the item: what the reason names
            try:
                x = load_image_input(x)  # a tar member: one byte-range read of its tar
            except OSError as e:  # a missing or truncated tar: this image's problem only
                rejects.append(_extract_reject(spec, uid, f"cannot read image: {e}"))
                continue
            try:
                x = decode_image(x, name=name)
            except Exception as e:  # one bad image (any kind, a decompression bomb too) must not sink the shard
                rejects.append(_extract_reject(spec, uid, f"cannot decode image: {type(e).__name__}: {e}"))
                continue
        elif not isinstance(x, str) or not x.strip():
            rejects.append(_extract_reject(spec, uid, "empty caption"))
            continue
        good_ids.append(uid)
        good_inputs.append(x)
    return rejects, good_ids, good_inputs


def _extract_reject(spec: ShardSpec, uid: str, reason: str) -> dict:
    vision = spec.modality == "vision"
    return {"dataset": spec.dataset, "stage": f"extract:{spec.lake_name}", "item_id": None,
            "image_id": uid if vision else None, "caption_id": None if vision else uid, "reason": reason}


def embeddings_table(ids: list[str], emb: np.ndarray) -> pa.Table:
    dim = emb.shape[1]
    flat = pa.array(np.ascontiguousarray(emb, dtype=np.float32).reshape(-1), type=pa.float32())
    return pa.table({"unit_id": pa.array(ids, pa.string()), "embedding": pa.FixedSizeListArray.from_arrays(flat, dim)})


def read_shards(lake: Lake, specs: list[ShardSpec]) -> tuple[list[str], np.ndarray]:
    """The embeddings of exactly the planned shards ``specs`` as (unit ids, float32 (n, dim)), sorted by id.

    Each shard is verified (identity and checksum) as it is read; a shard that fails raises ShardError
    naming its path (a rerun recomputes it). Files outside the plan are never read."""
    if not specs:
        raise ShardError("no shards planned")
    ids: list[str] = []
    arrays = []
    for spec in specs:
        table, why = verify_shard(lake, spec)
        if table is None:
            raise ShardError(f"shard {spec.path}: {why}; rerun the sweep to recompute it")
        ids.extend(table["unit_id"].to_pylist())
        arrays.append(embedding_matrix(table))
    emb = np.concatenate(arrays)
    order = np.argsort(np.asarray(ids, dtype=object), kind="stable")
    return [ids[i] for i in order], emb[order]


# -- the steps of an extraction, as the tasks (vlalign.tasks.extract) run them -----------------------------------

def ingest_dataset(lake: Lake, source: DatasetSource) -> dict:
    """Read a data set into canonical items in the lake (rewritten only when its content changed).

    The reader's batches stream into a temporary Parquet file (one row group each, every batch sorted by
    image_id, item_id; emoji and coco are one batch), with the digest computed as they pass; the read kept
    by the sweep's validation is used when there is one (vlalign.datasets.readers.ingest_batches). The new index is
    validated in full before anything in the lake changes: a data set that reads as empty (an empty
    annotations file, a filter that matches nothing) raises and leaves the lake's items and rejects as they were."""
    ingested = IngestedSources(lake)
    fingerprint = source_fingerprint(source)
    known = ingested.unchanged(source.name, fingerprint) if fingerprint else None
    if known is not None:
        return known  # the lake's items were read from these very files: reading them again gives the same
    with ItemsWriter() as w:
        for batch in ingest_batches(source):
            w.add(batch.items.sort_by([("image_id", "ascending"), ("item_id", "ascending")]), batch.rejects)
        if w.rows == 0:
            raise DatasetError(
                f"data set {source.name!r}: no usable items ({w.n_rejects} rejected on read, e.g. "
                f"{w.first_reason or 'the source is empty'}); nothing in the lake was changed"
            )
        if w.duplicates:
            raise DatasetError(f"data set {source.name!r}: item ids are not unique; nothing in the lake was changed")
        result = w.commit(lake, source.name, source.to_dict())
    if fingerprint:
        ingested.remember(source.name, fingerprint, result)
    return result



def plan_dataset_shards(
    lake: Lake,
    dataset: str,
    encoders: list,  # EncoderSpec
    digests: dict[str, str],
    shard_size: int,
    domains: list[str] | None = None,
    langs: list[str] | None = None,
    parts: dict[str, list[str]] | None = None,
    layers: dict[str, tuple[int, ...]] | None = None,
    layer_parts: dict[str, list[str]] | None = None,
) -> tuple[list[ShardSpec], list[tuple[ShardSpec, str]]]:
    """(all shards, [(shard still to compute, why: 'missing' or the verification failure)]) for every encoder over
    the selected domains/languages (``parts``: {encoder: its domains or languages}, to embed some parts with some
    encoders only; ``layers``: {encoder: its layers}, default the output only; ``layer_parts``: {encoder: the parts
    its inner layers are embedded in}, default all of its parts)."""
    items = lake.read_table(lake.items_path(dataset), columns=["image_id", "domain", "image", "image_bytes",
                                                               "caption_id", "lang", "caption"])
    if domains:
        items = items.filter(pc.is_in(items["domain"], pa.array(domains)))
    if langs:
        items = items.filter(pc.is_in(items["lang"], pa.array(langs)))
    if items.num_rows == 0:
        raise ValueError(f"data set {dataset!r}: no items left for domains={domains} langs={langs}")
    planned = []
    for enc in encoders:
        enc_layers = (layers or {}).get(enc.name, (OUTPUT,))
        planned += [s for s in plan_shards(lake, dataset, items, enc, digests[enc.name], shard_size, enc_layers)
                    if (parts is None or enc.name not in parts or s.part in parts[enc.name])
                    and (s.layer == OUTPUT or layer_parts is None or s.part in layer_parts.get(enc.name, ()))]
    todo = []
    verified = VerifiedShards(lake)
    for s in planned:
        if verified.unchanged(s):
            continue
        before = verified.before(s)
        _, why = verify_shard(lake, s)
        if why is not None:
            todo.append((s, why))
        else:
            verified.add(s, before)
    verified.save()
    return planned, todo



def compute_shard(spec: ShardSpec, batch_size: int | None = None, device: str | None = None,
                  threads: int | None = None, more: tuple[ShardSpec, ...] = ()) -> dict:
    """Embed one shard unless it is done; the encoder is loaded once per process and reused. ``more``: the shards
    of other layers of the same item range, computed in the same forward passes (those not done).

    The item range's lock (no layer in it: every run that embeds any layer of this range takes the same one) is
    held while it is computed: a concurrent run that planned the same shards waits, then finds them done."""
    lake = spec.lake
    with lake.lock(f"shard-{digest_json([spec.dataset, spec.lake_name, spec.part, spec.shard_size, spec.shard])}"):
        todo = [s for s in (spec, *more) if not shard_is_done(lake, s)]
        if not todo:  # written meanwhile by another run
            return {"path": spec.path, "encoder": spec.encoder, "rows": 0, "rejects": 0, "seconds": 0.0, "reused": True}
        batch_size = batch_size or auto_batch_size(device)
        encoder = load_encoder(spec.encoder, device=device, threads=threads or worker_threads(), batch_size=batch_size)
        return embed_shard(lake, todo[0], encoder, batch_size=batch_size, more=tuple(todo[1:]))


def by_range(shards: list[ShardSpec]) -> list[tuple[ShardSpec, tuple[ShardSpec, ...]]]:
    """Shards grouped by (encoder, part, item range), in order: [(first, the other layers' shards)], the unit of
    :func:`compute_shard`."""
    groups: dict[tuple, list[ShardSpec]] = {}
    for s in shards:
        groups.setdefault((s.encoder, s.part, s.shard_size, s.shard), []).append(s)
    return [(g[0], tuple(g[1:])) for g in groups.values()]


@functools.lru_cache(maxsize=1)
def worker_threads() -> int | None:
    """This worker's share of its host's cores: cores / (task slots of all workers on the same host).

    Dask's nanny starts workers with OMP/MKL/OpenBLAS threads = 1; torch is pinned here instead, so workers
    sharing a machine do not oversubscribe its cores. None outside a Dask worker."""
    try:
        from distributed import get_worker  # Dask: heavy, and only inside a worker

        worker = get_worker()
    except (ImportError, ValueError):
        return None
    host = worker.address.rsplit(":", 1)[0]
    try:
        infos = worker.client.scheduler_info(n_workers=-1)["workers"].values()
        slots = (sum(w.get("nthreads", 1) for w in infos if w.get("host") == host.split("://")[-1])
                 or worker.state.nthreads)
    except Exception:  # an old scheduler or a transient error: assume this worker is alone on its host
        slots = worker.state.nthreads
    return max(1, (os.cpu_count() or 1) // max(1, slots))
