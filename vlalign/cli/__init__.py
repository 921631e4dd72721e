"""The `vlalign` command, one module per command group."""
