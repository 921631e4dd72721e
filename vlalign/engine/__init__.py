"""The engine: the sweep spec, shard planning and embedding, cell identity and planning, and what one cell computes."""
