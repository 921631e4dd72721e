"""The SQL files of the lake, shipped as package data and loaded by name with vlalign.datalake.catalog.load_sql:
pairs, splits, views (where each public table reads from) and report_* (the queries of vlalign report)."""
