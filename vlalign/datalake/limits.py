"""The bounds of one query through the read-only door (vlalign.datalake.sqldoor), in a module of their own so that the
command line can show the defaults without importing DuckDB."""

from __future__ import annotations

import os
from dataclasses import dataclass


def _default_memory() -> str:
    """Half the machine's memory, at most 4 GiB (DuckDB's own default is 80% of the machine)."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        total = 8 << 30
    return f"{max(256, min(4096, total // 2 // (1 << 20)))}MiB"


@dataclass(frozen=True)
class Limits:
    """Bounds on one query: wall-clock ``seconds``, DuckDB's ``memory`` limit (no spilling, so a query that needs
    more fails), and ``batch_rows``, the rows handed out per batch when results are streamed."""

    seconds: float = 600.0
    memory: str = _default_memory()
    batch_rows: int = 10_000


DEFAULT_LIMITS = Limits()
