"""The columns of every table in the lake (the README's table reference is generated from these)."""

from __future__ import annotations

import pyarrow as pa

from .readers import ITEM_SCHEMA, REJECT_SCHEMA

_S = pa.string()
_I = pa.int64()
_F = pa.float64()

CKA_SCHEMA = pa.schema(
    [("run_id", _S), ("dataset", _S), ("domain", _S), ("lang", _S), ("vision_encoder", _S), ("text_encoder", _S),
     ("kernel", _S), ("debiased", pa.bool_()), ("n", _I), ("value", _F), ("shuffled_value", _F),
     ("ci_low", _F), ("ci_high", _F), ("seed", _I), ("seconds", _F)]
)
MATCHING_SCHEMA = pa.schema(
    [("run_id", _S), ("dataset", _S), ("domain", _S), ("lang", _S), ("vision_encoder", _S), ("text_encoder", _S),
     ("method", _S), ("base_size", _I), ("query_size", _I), ("base_selection", _S), ("stretch", pa.bool_()),
     ("seed", _I), ("accuracy", _F), ("chance", _F), ("objective", _F), ("seconds", _F)]
)
RETRIEVAL_SCHEMA = pa.schema(
    [("run_id", _S), ("dataset", _S), ("domain", _S), ("lang", _S), ("vision_encoder", _S), ("text_encoder", _S),
     ("method", _S), ("direction", _S), ("base_size", _I), ("query_size", _I), ("base_selection", _S),
     ("stretch", pa.bool_()), ("seed", _I), ("r1", _F), ("r5", _F), ("r10", _F)]
)
RUNS_SCHEMA = pa.schema(
    [("run_id", _S), ("spec", _S), ("status", _S), ("started_at", pa.timestamp("us")), ("finished_at", pa.timestamp("us")),
     ("flow", _S), ("cells_total", pa.int32()), ("cells_done", pa.int32()), ("error", _S)]
)
EMBEDDINGS_SCHEMA = pa.schema(
    [("dataset", _S), ("encoder", _S), ("part", _S), ("shard", pa.int32()), ("unit_id", _S), ("embedding", pa.list_(pa.float32()))]
)
EMBEDDING_INDEX_SCHEMA = pa.schema(
    [("dataset", _S), ("encoder", _S), ("part", _S), ("shard", pa.int32()), ("data_digest", _S), ("weights_digest", _S),
     ("pooling", _S), ("start", pa.int32()), ("stop", pa.int32()), ("rejects", pa.int32()), ("seconds", _F), ("path", _S)]
)
ITEMS_VIEW_SCHEMA = pa.schema([f for f in ITEM_SCHEMA if f.name != "image_bytes"] + [("image_inline", pa.bool_())])

TABLE_SCHEMAS: dict[str, pa.Schema] = {
    "items": ITEMS_VIEW_SCHEMA,
    "rejects": REJECT_SCHEMA,
    "embeddings": EMBEDDINGS_SCHEMA,
    "embedding_index": EMBEDDING_INDEX_SCHEMA,
    "cka": CKA_SCHEMA,
    "matching": MATCHING_SCHEMA,
    "retrieval": RETRIEVAL_SCHEMA,
    "runs": RUNS_SCHEMA,
}
