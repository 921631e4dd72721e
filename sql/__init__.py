"""The SQL files of the lake (pairs, splits, views), shipped as package data: vlalign.catalog.load_sql."""
