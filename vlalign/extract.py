"""Sharded embedding extraction, the library half: plan shards, embed one shard, read embeddings back.

Vision encoders embed the unique images of each domain; text encoders embed the unique captions of each
language. Within a part (a domain or a language) units are sorted by id and cut into shards of
``shard_size``. A shard's identity is::

    (dataset, part, item range, digest of the shard's inputs, encoder lake name, weights digest, pooling)

and is stored in the Parquet file's metadata. A shard file whose identity matches the plan is never
recomputed, which is what makes a rerun resume; a file with another identity (the data or the weights
changed) is recomputed and replaced atomically.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import asdict, dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from .lake import Lake
from .readers import REJECT_SCHEMA, content_digest

SHARD_FORMAT = 1  # bump when the shard file layout changes: old shards then no longer match


@dataclass(frozen=True)
class Units:
    """The sorted unique units of one part: ids and, for each, a key for its content."""

    modality: str
    part: str
    ids: list[str]
    content_keys: list[str]


@dataclass(frozen=True)
class ShardSpec:
    lake_root: str
    dataset: str
    encoder: str  # catalog name
    lake_name: str  # encoder name incl. pooling, as used in lake paths
    modality: str
    part: str
    shard: int
    start: int
    stop: int
    data_digest: str
    weights_digest: str
    pooling: str

    @property
    def identity(self) -> dict:
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
        return Lake.open(self.lake_root).shard_path(self.dataset, self.lake_name, self.part, self.shard)

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
            keys.append(hashlib.sha1(data).hexdigest() if data is not None else str(path))
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
) -> list[ShardSpec]:
    """All shards of ``encoder`` over ``items``, in a fixed order."""
    if shard_size < 1:
        raise ValueError(f"shard_size must be >= 1, got {shard_size}")
    specs = []
    for part, table in unit_table(items, encoder.modality).items():
        units = units_of(table, encoder.modality, part)
        for k, start in enumerate(range(0, len(units.ids), shard_size)):
            stop = min(start + shard_size, len(units.ids))
            digest = content_digest(units.ids[start:stop] + units.content_keys[start:stop])
            specs.append(
                ShardSpec(
                    lake_root=lake.root,
                    dataset=dataset,
                    encoder=encoder.name,
                    lake_name=encoder.lake_name,
                    modality=encoder.modality,
                    part=part,
                    shard=k,
                    start=start,
                    stop=stop,
                    data_digest=digest,
                    weights_digest=weights_digest,
                    pooling=encoder.pooling,
                )
            )
    return specs


def shard_is_done(lake: Lake, spec: ShardSpec) -> bool:
    """True if the shard file exists and carries exactly this identity."""
    md = lake.read_metadata(spec.path)
    return md is not None and md.get("identity") == spec.identity


def shard_inputs(lake: Lake, spec: ShardSpec) -> tuple[list[str], list]:
    """The unit ids and raw inputs (image sources or caption strings) of a shard, checked against its digest."""
    from .readers import image_source

    items_path = lake.items_path(spec.dataset)
    part_col = "domain" if spec.modality == "vision" else "lang"
    with lake.fs.open(items_path, "rb") as f:
        items = pq.read_table(f, filters=[(part_col, "=", spec.part)])
    table = unit_table(items, spec.modality).get(spec.part)
    if table is None:
        raise RuntimeError(f"shard {spec.path}: part {spec.part!r} no longer in {items_path}")
    table = table.slice(spec.start, spec.size)
    units = units_of(table, spec.modality, spec.part)
    if content_digest(units.ids + units.content_keys) != spec.data_digest:
        raise RuntimeError(f"shard {spec.path}: the items changed since the plan was made; rerun to re-plan")
    if spec.modality == "vision":
        inputs = [image_source(p, b) for p, b in zip(table["image"].to_pylist(), table["image_bytes"].to_pylist())]
    else:
        inputs = units.content_keys
    return units.ids, inputs


def embed_shard(lake: Lake, spec: ShardSpec, encoder, batch_size: int = 32) -> dict:
    """Embed one shard with a loaded encoder and write it (and its rejects) atomically. Returns a summary."""
    from .encoders import decode_image

    t0 = time.perf_counter()
    ids, inputs = shard_inputs(lake, spec)
    rejects = []
    good_ids, good_inputs = [], []
    for uid, x in zip(ids, inputs):
        if spec.modality == "vision":
            try:
                x = decode_image(x)
            except Exception as e:  # one bad image must not sink the shard
                rejects.append(
                    {
                        "dataset": spec.dataset,
                        "stage": f"extract:{spec.lake_name}",
                        "item_id": None,
                        "image_id": uid,
                        "caption_id": None,
                        "reason": f"cannot decode image: {type(e).__name__}: {e}",
                    }
                )
                continue
        elif not isinstance(x, str) or not x.strip():
            rejects.append(
                {
                    "dataset": spec.dataset,
                    "stage": f"extract:{spec.lake_name}",
                    "item_id": None,
                    "image_id": None,
                    "caption_id": uid,
                    "reason": "empty caption",
                }
            )
            continue
        good_ids.append(uid)
        good_inputs.append(x)

    if not good_ids and len(ids) >= 4:
        # every unit failed the same way: a systematic problem (format, decoder), not bad items
        raise RuntimeError(f"shard {spec.path}: all {len(ids)} inputs were rejected, e.g. {rejects[0]['reason']}")
    chunks = []
    for i in range(0, len(good_inputs), batch_size):
        chunks.append(np.asarray(encoder.encode(good_inputs[i : i + batch_size]), dtype=np.float32))
    dim = encoder.spec.dim or (chunks[0].shape[1] if chunks else 0)
    emb = np.concatenate(chunks) if chunks else np.zeros((0, dim), np.float32)
    if not np.isfinite(emb).all():
        raise RuntimeError(f"shard {spec.path}: encoder {spec.encoder} produced non-finite values")

    if rejects:
        key = f"{spec.lake_name}-{spec.part}-{spec.shard:05d}"
        lake.write_table(
            lake.rejects_path(spec.dataset, "extract", key), pa.Table.from_pylist(rejects, schema=REJECT_SCHEMA)
        )
    table = embeddings_table(good_ids, emb)
    seconds = time.perf_counter() - t0
    lake.write_table(
        spec.path,
        table,
        metadata={"identity": spec.identity, "encoder_name": spec.encoder, "seconds": seconds, "rejects": len(rejects)},
    )
    return {"path": spec.path, "encoder": spec.encoder, "rows": len(good_ids), "rejects": len(rejects), "seconds": seconds}


def embeddings_table(ids: list[str], emb: np.ndarray) -> pa.Table:
    dim = emb.shape[1]
    flat = pa.array(np.ascontiguousarray(emb, dtype=np.float32).reshape(-1), type=pa.float32())
    return pa.table({"unit_id": pa.array(ids, pa.string()), "embedding": pa.FixedSizeListArray.from_arrays(flat, dim)})


def read_embeddings(lake: Lake, dataset: str, lake_name: str, part: str | None = None) -> tuple[list[str], np.ndarray]:
    """All embeddings of (dataset, encoder[, part]) as (unit ids, float32 array (n, dim)), sorted by unit id."""
    pattern = lake.path("embeddings", f"dataset={dataset}", f"encoder={lake_name}", f"part={part or '*'}", "*.parquet")
    files = lake.glob(pattern)
    if not files:
        raise FileNotFoundError(f"no embeddings for dataset={dataset} encoder={lake_name} part={part or '*'} in {lake.root}")
    ids: list[str] = []
    arrays = []
    for f in files:
        t = lake.read_table(f)
        ids.extend(t["unit_id"].to_pylist())
        col = t["embedding"].combine_chunks()
        arrays.append(col.values.to_numpy(zero_copy_only=False).reshape(len(t), col.type.list_size))
    emb = np.concatenate(arrays)
    order = np.argsort(np.asarray(ids, dtype=object), kind="stable")
    return [ids[i] for i in order], emb[order]
