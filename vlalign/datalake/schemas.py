"""The columns of every table in the lake: the one source. The views (sql/views.sql supplies only where each
view reads from) project exactly these columns, and the README's table reference is generated from them
(`python -m vlalign.datalake.schemas` prints it; a test checks that the README has it).
"""

from __future__ import annotations

import pyarrow as pa

# Canonical items: what every reader produces (one row per caption).
ITEM_SCHEMA = pa.schema(
    [
        ("item_id", pa.string()),
        ("image_id", pa.string()),
        ("image", pa.string()),
        ("image_bytes", pa.binary()),
        ("caption_id", pa.string()),
        ("caption", pa.string()),
        ("lang", pa.string()),
        ("label", pa.string()),
        ("sublabel", pa.string()),
        ("domain", pa.string()),
    ]
)

REJECT_SCHEMA = pa.schema(
    [
        ("dataset", pa.string()),
        ("stage", pa.string()),
        ("item_id", pa.string()),
        ("image_id", pa.string()),
        ("caption_id", pa.string()),
        ("reason", pa.string()),
    ]
)


_S = pa.string()
_I = pa.int64()
_F = pa.float64()

# What one analysis cell stores (results/<table>/cell=<id>.parquet): no run id, cells are shared by runs.
CKA_SCHEMA = pa.schema(
    [("cell_id", _S), ("dataset", _S), ("domain", _S), ("lang", _S), ("vision_encoder", _S), ("text_encoder", _S),
     ("kernel", _S), ("debiased", pa.bool_()), ("n", _I), ("value", _F), ("shuffled_value", _F),
     ("ci_low", _F), ("ci_high", _F), ("seed", _I), ("seconds", _F), ("note", _S),
     ("vision_layer", _I), ("text_layer", _I), ("vision_layer_name", _S), ("text_layer_name", _S),
     ("tau", _F), ("p_value", _F), ("calibrated", _F), ("null_mean", _F), ("p_value_layers", _F),
     ("permutations", _I), ("alpha", _F)]
)
MATCHING_SCHEMA = pa.schema(
    [("cell_id", _S), ("dataset", _S), ("domain", _S), ("lang", _S), ("vision_encoder", _S), ("text_encoder", _S),
     ("method", _S), ("base_size", _I), ("query_size", _I), ("base_selection", _S), ("stretch", pa.bool_()),
     ("seed", _I), ("accuracy", _F), ("chance", _F), ("objective", _F), ("seconds", _F), ("note", _S),
     ("base_domain", _S), ("query_domain", _S), ("protocol", _S)]
)
RETRIEVAL_SCHEMA = pa.schema(
    [("cell_id", _S), ("dataset", _S), ("domain", _S), ("lang", _S), ("vision_encoder", _S), ("text_encoder", _S),
     ("method", _S), ("direction", _S), ("base_size", _I), ("query_size", _I), ("base_selection", _S),
     ("stretch", pa.bool_()), ("seed", _I), ("r1", _F), ("r5", _F), ("r10", _F), ("note", _S),
     ("base_domain", _S), ("query_domain", _S), ("protocol", _S)]
)
CLASSIFICATION_SCHEMA = pa.schema(
    [("cell_id", _S), ("dataset", _S), ("domain", _S), ("lang", _S), ("vision_encoder", _S), ("text_encoder", _S),
     ("label_field", _S), ("template_set", _S), ("method", _S), ("base_size", _I), ("query_size", _I),
     ("base_selection", _S), ("stretch", pa.bool_()), ("seed", _I), ("n", _I), ("n_classes", _I),
     ("accuracy", _F), ("chance", _F), ("majority", _F), ("protocol", _S), ("seconds", _F), ("note", _S)]
)
CONCEPTS_SCHEMA = pa.schema(
    [("cell_id", _S), ("dataset", _S), ("vision_encoder", _S), ("text_encoder", _S), ("retrieval", _S),
     ("mapping", _S), ("n_concepts", _I), ("n_aliases", _I), ("folds", _I), ("seed", _I), ("p_at_1", _F),
     ("p_at_10", _F), ("p_at_100", _F), ("seconds", _F), ("note", _S)]
)
CONCEPT_BREAKDOWN_SCHEMA = pa.schema(
    [("cell_id", _S), ("dataset", _S), ("vision_encoder", _S), ("text_encoder", _S), ("retrieval", _S),
     ("mapping", _S), ("property", _S), ("bin", _I), ("low", _F), ("high", _F), ("n", _I), ("n_missing", _I),
     ("p_at_1", _F), ("p_at_10", _F), ("p_at_100", _F), ("note", _S)]
)
# A view over cka (sql/views.sql): the best layer pair of every (run, encoder pair, measure), raw and calibrated.
BEST_LAYERS_SCHEMA = pa.schema(
    [("run_id", _S), ("dataset", _S), ("domain", _S), ("lang", _S), ("vision_encoder", _S), ("text_encoder", _S),
     ("kernel", _S), ("debiased", pa.bool_()), ("layer_pairs", _I), ("vision_layer", _I), ("text_layer", _I),
     ("vision_layer_name", _S), ("text_layer_name", _S), ("value", _F), ("shuffled_value", _F),
     ("calibrated_at_best", _F), ("p_value_layers", _F), ("calibrated_vision_layer", _I),
     ("calibrated_text_layer", _I), ("calibrated", _F), ("calibrated_p_value", _F), ("output_value", _F),
     ("permutations", _I)]
)
RESULT_SCHEMAS: dict[str, pa.Schema] = {"cka": CKA_SCHEMA, "matching": MATCHING_SCHEMA, "retrieval": RETRIEVAL_SCHEMA,
                                        "classification": CLASSIFICATION_SCHEMA, "concepts": CONCEPTS_SCHEMA,
                                        "concept_breakdown": CONCEPT_BREAKDOWN_SCHEMA}

# What `vlalign explain` writes (one row per (item, token, image region)); a table of its own runs.
ATTRIBUTIONS_SCHEMA = pa.schema(
    [("item_id", _S), ("vision_encoder", _S), ("text_encoder", _S), ("token_index", pa.int32()), ("token", _S),
     ("row", pa.int32()), ("col", pa.int32()), ("attribution", _F), ("score", _F), ("residual", _F),
     ("steps", pa.int32())]
)

RUNS_SCHEMA = pa.schema(
    [("run_id", _S), ("spec", _S), ("status", _S), ("started_at", pa.timestamp("us")), ("finished_at", pa.timestamp("us")),
     ("flow", _S), ("cells_total", pa.int32()), ("cells_done", pa.int32()), ("cells_computed", pa.int32()), ("error", _S)]
)
RUN_CELLS_SCHEMA = pa.schema([("run_id", _S), ("table_name", _S), ("cell_id", _S)])
EMBEDDINGS_SCHEMA = pa.schema(
    [("dataset", _S), ("encoder", _S), ("layer", pa.int32()), ("part", _S), ("shard_size", pa.int32()),
     ("shard", pa.int32()), ("unit_id", _S), ("embedding", pa.list_(pa.float32()))]
)
EMBEDDING_INDEX_SCHEMA = pa.schema(
    [("dataset", _S), ("encoder", _S), ("layer", pa.int32()), ("part", _S), ("shard_size", pa.int32()),
     ("shard", pa.int32()), ("data_digest", _S), ("weights_digest", _S), ("pooling", _S), ("start", pa.int32()), ("stop", pa.int32()),
     ("rows", pa.int32()), ("rejects", pa.int32()), ("checksum", _S), ("seconds", _F), ("path", _S)]
)
ITEMS_VIEW_SCHEMA = pa.schema(
    [f for f in ITEM_SCHEMA if f.name != "image_bytes"] + [("image_inline", pa.bool_()), ("dataset", _S)]
)


def _with_run_id(schema: pa.Schema) -> pa.Schema:
    return pa.schema([("run_id", _S)] + list(schema))


# The public tables (DuckDB views), in the README's order.
TABLE_SCHEMAS: dict[str, pa.Schema] = {
    "items": ITEMS_VIEW_SCHEMA,
    "rejects": REJECT_SCHEMA,
    "embeddings": EMBEDDINGS_SCHEMA,
    "embedding_index": EMBEDDING_INDEX_SCHEMA,
    "cka": _with_run_id(CKA_SCHEMA),
    "best_layers": BEST_LAYERS_SCHEMA,
    "matching": _with_run_id(MATCHING_SCHEMA),
    "retrieval": _with_run_id(RETRIEVAL_SCHEMA),
    "classification": _with_run_id(CLASSIFICATION_SCHEMA),
    "concepts": _with_run_id(CONCEPTS_SCHEMA),
    "concept_breakdown": _with_run_id(CONCEPT_BREAKDOWN_SCHEMA),
    "attributions": _with_run_id(ATTRIBUTIONS_SCHEMA),
    "runs": RUNS_SCHEMA,
    "run_cells": RUN_CELLS_SCHEMA,
}


def readme_table() -> str:
    """The README's table of tables and columns, generated from TABLE_SCHEMAS."""
    lines = ["| table | columns |", "|---|---|"]
    for name, schema in TABLE_SCHEMAS.items():
        lines.append(f"| `{name}` | {', '.join(schema.names)} |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(readme_table())
