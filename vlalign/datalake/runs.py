"""Run records: ``runs/run=<id>.json``, one per run, the list of what the run used and needs.

A record holds the run's id, flow, spec, status (running, completed, failed), times, counts, its first
error, the lake files it used (``files``: items, rejects and embedding shards, relative to the root) and
the ids of the analysis cells it needs (``cells``: {table: [cell id, ...]}). The SQL views read exactly
the files the records list, and the result views join cells to runs through them.

A record is written with spare room at its end, so that the write that says a run failed still succeeds
on a full disk: it is rewritten in place, the error shortened to fit.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from datetime import datetime, timezone
from typing import Any, Iterator

from vlalign.datalake.store import RECORD_SLACK, Lake, LakeError

log = logging.getLogger(__name__)


def now() -> str:
    return datetime.now(timezone.utc).isoformat()


def run_ids(lake: Lake) -> list[str]:
    """The ids of the runs recorded in the lake, sorted (for "no such run" messages)."""
    return sorted(p.rsplit("run=", 1)[1].removesuffix(".json") for p in lake.glob(lake.path("runs", "run=*.json")))


class RunRecordError(LakeError):
    """A run that the lake does not hold, or whose record cannot be read."""


def read_run(lake: Lake, run_id: str, flow: str | None = None) -> dict:
    """The record of run ``run_id`` (and, with ``flow``, only a run of that flow). A missing run names the runs
    the lake has; an unreadable record names its file."""
    path = lake.run_path(run_id)
    if not lake.exists(path):
        raise RunRecordError(f"no run {run_id!r} in the lake {lake.root} (runs: {', '.join(run_ids(lake)) or 'none'})")
    try:
        record = lake.read_json(path)
    except (OSError, ValueError) as e:
        raise RunRecordError(f"the record of run {run_id!r} ({path}) cannot be read: {str(e).splitlines()[0]}; "
                             f"`vlalign resume {run_id}` rewrites it") from None
    if not isinstance(record, dict):
        raise RunRecordError(f"the record of run {run_id!r} ({path}) is not a JSON object")
    if flow is not None and record.get("flow") != flow:
        raise RunRecordError(f"run {run_id!r} is a {record.get('flow')!r} run, not a {flow!r} run")
    return record


def start_record(lake: Lake, run_id: str, flow: str, spec: Any) -> dict:
    """A new 'running' record (keeping the first start time of a run that is resumed), written at once."""
    path = lake.run_path(run_id)
    record = {
        "run_id": run_id, "spec": spec, "status": "running", "flow": flow, "started_at": now(), "finished_at": None,
        "cells_total": None, "cells_done": None, "cells_computed": None, "error": None, "files": {}, "cells": {},
    }
    if lake.exists(path):
        try:
            previous = lake.read_json(path)
            record["started_at"] = previous.get("started_at") or record["started_at"]
        except (OSError, ValueError):
            pass  # an unreadable record is replaced
    write_record(lake, record)
    return record


HEARTBEAT_SECONDS = 15.0  # a running run rewrites its record at least this often (``alive_at``)
STALE_SECONDS = 120.0  # a 'running' record not rewritten for this long is an interrupted run (sql/views.sql)
_WRITE_LOCK = threading.Lock()  # one writer of a record at a time within a process (the flow, the heartbeat)


def write_record(lake: Lake, record: dict) -> None:
    """Write the record (atomically), stamped ``alive_at`` (seconds since the epoch)."""
    with _WRITE_LOCK:
        record["alive_at"] = time.time()
        lake.write_json(lake.run_path(record["run_id"]), record, slack=RECORD_SLACK)


class _Heartbeat(threading.Thread):
    """Rewrites a running run's record every HEARTBEAT_SECONDS, with its current counts, so that a run that was
    killed (kill -9, a lost machine) shows as interrupted, with the cells it had finished, instead of running."""

    def __init__(self, lake: Lake, record: dict):
        super().__init__(name=f"heartbeat-{record['run_id']}", daemon=True)
        self.lake, self.record, self.every, self.stop = lake, record, HEARTBEAT_SECONDS, threading.Event()

    def run(self) -> None:
        while not self.stop.wait(self.every):
            try:
                write_record(self.lake, self.record)
            except Exception as e:  # noqa: BLE001 - a missed beat must not disturb the run
                log.warning("could not rewrite run record %s: %s", self.record["run_id"], e)


def finish_record(lake: Lake, record: dict, error: BaseException | None = None) -> None:
    """Write the record's final state; never raises (the run's own error, if any, is what the caller raises).

    If the normal atomic write fails (a full disk, a permission error), the record is rewritten in place,
    its error message shortened to fit in the room left at write time."""
    record["finished_at"] = now()
    if error is not None:
        record["status"] = "failed"
        record["error"] = record.get("error") or f"{type(error).__name__}: {error}"
    try:
        write_record(lake, record)
        return
    except Exception as e:  # noqa: BLE001 - the run's error must survive this one
        log.error("could not write run record %s normally (%s); rewriting it in place", lake.run_path(record["run_id"]), e)
    if not lake.is_local:
        return
    path = lake.run_path(record["run_id"])
    message = record.get("error") or ""
    for keep in (len(message), 2000, 500, 100, 0):
        record["error"] = message[:keep] + ("..." if keep < len(message) else "") if message else None
        try:
            lake.rewrite_json_in_place(path, record)
            return
        except ValueError:
            continue  # still too long: shorten the message
        except Exception as e:  # noqa: BLE001
            log.error("could not rewrite run record %s in place: %s", path, e)
            return
    # even the shortest text does not fit (a huge cell list grew since the last write): keep what is there


def add_files(record: dict, kind: str, lake: Lake, paths: list[str]) -> None:
    """Record lake files (stored relative to the root) under ``files[kind]``, once each."""
    have = record.setdefault("files", {}).setdefault(kind, [])
    seen = set(have)
    for p in paths:
        rel = lake.relpath(p)
        if rel not in seen:
            have.append(rel)
            seen.add(rel)


@contextlib.contextmanager
def recorded_run(lake: Lake, run_id: str, flow: str, spec: Any, on_exit=None) -> Iterator[dict]:
    """A run's record for the duration of the ``with`` block: written 'running' on entry; on exit written
    'completed' (or 'failed' with the first error, which is then re-raised) by :func:`finish_record`, and
    ``on_exit(lake)`` called (the catalog refresh), whatever happened. While the block runs, the record is
    rewritten every HEARTBEAT_SECONDS with what it holds then (the flow updates ``cells_done`` as cells land)."""
    record = start_record(lake, run_id, flow, spec)
    heartbeat = _Heartbeat(lake, record)
    heartbeat.start()
    error: BaseException | None = None
    try:
        yield record
        record["status"] = "completed"
    except BaseException as e:
        error = e
        raise
    finally:
        heartbeat.stop.set()
        heartbeat.join()
        finish_record(lake, record, error)
        if on_exit is not None:
            on_exit(lake)


def record_extraction(record: dict, lake: Lake, extraction: dict) -> None:
    """Record the files an extraction used (its items, read rejects, and each planned shard with its rejects)."""
    planned = extraction["planned"]
    add_files(record, "items", lake, [extraction["items_path"]])
    add_files(record, "rejects", lake, [extraction["rejects_path"]] + [s.rejects_path for s in planned])
    add_files(record, "embeddings", lake, [s.path for s in planned])
