"""The lake: paths and atomic files, digests and names, table schemas, run records, the DuckDB catalog and the read-only query door."""
