"""How a flow runs: one Prefect API server for the whole run, and the Dask task runner.

With no PREFECT_API_URL, Prefect would start a temporary API server in every process, Dask workers
included, all on one SQLite file ("database is locked"). :func:`prefect_api` starts a single server in
the parent and exports its URL, so the worker processes (which inherit the environment) report to it.
"""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path
from typing import Iterator


def configure_environment(home: str | os.PathLike | None = None) -> None:
    """Quiet, offline Prefect defaults; values the user already set win."""
    home = Path(home or os.environ.get("VLALIGN_HOME") or Path.cwd()).resolve()
    defaults = {
        "PREFECT_HOME": str(home / ".prefect"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "1",
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "90",
        "PREFECT_LOGGING_LEVEL": "INFO",
        "PREFECT_UI_ENABLED": "false",
        "TOKENIZERS_PARALLELISM": "false",
        "DASK_LOGGING__DISTRIBUTED": "warning",
        "DASK_DISTRIBUTED__WORKER__DAEMON": "true",
    }
    for k, v in defaults.items():
        os.environ.setdefault(k, v)


class _NoTraceback(logging.Filter):
    """Drop the traceback of Prefect's "task/flow failed" records: the command prints the error once, in one line
    (VLALIGN_DEBUG=1 keeps them)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info:
            error = record.exc_info[1]
            record.exc_info, record.exc_text = None, None
            message = record.getMessage()
            if error is not None and str(error) not in message:
                record.msg, record.args = f"{message.rstrip(':')}: {type(error).__name__}: {error}", ()
        return True


class _NoRoutine(logging.Filter):
    """Drop the console's "Task run ... Finished in state Completed()" lines (a sweep has hundreds): the flow's own
    progress lines, warnings and failures stay, and the API (Prefect's UI) still gets every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.levelno <= logging.INFO and record.name.startswith("prefect.task_runs")
                    and "Finished in state Completed" in record.getMessage())


def quiet_tracebacks() -> None:
    """Prefect's console logs without tracebacks (a failed task or flow is one line), unless VLALIGN_DEBUG is set,
    and without the routine line of every finished task, unless VLALIGN_VERBOSE is set (`vlalign --verbose`)."""
    filters = [] if os.environ.get("VLALIGN_DEBUG") else [_NoTraceback]
    filters += [] if os.environ.get("VLALIGN_VERBOSE") else [_NoRoutine]
    for name in ("", "prefect", "prefect.flow_runs", "prefect.task_runs"):  # Prefect's console handler is the root's
        for handler in logging.getLogger(name).handlers:
            if "Console" not in type(handler).__name__:
                continue  # the API handler: Prefect's UI keeps every record
            for kind in filters:
                if not any(isinstance(f, kind) for f in handler.filters):
                    handler.addFilter(kind())


@contextlib.contextmanager
def prefect_api(keep: float | None = None) -> Iterator[str]:
    """The Prefect API every flow of this process (and its Dask workers) reports to.

    1. ``PREFECT_API_URL``, if set (a server or Prefect Cloud the user runs).
    2. Otherwise the lake's home server: one API server per ``PREFECT_HOME`` that vlalign starts in the
       background the first time and leaves running, so later commands skip the 5-10 s of starting one. It
       stops by itself after ``keep`` seconds without use (``$VLALIGN_API_KEEP``, default 1800); a command
       in progress keeps it alive. ``keep=0`` (or ``VLALIGN_API_KEEP=0``): a temporary server for this
       command only, stopped at its end (the tests' choice)."""
    # Prefect reads its settings when first imported: this module is imported before configure_environment runs
    from prefect.settings import PREFECT_API_URL, temporary_settings

    quiet_tracebacks()
    url = os.environ.get("PREFECT_API_URL")
    if url:
        yield url
        return
    keep = float(os.environ.get("VLALIGN_API_KEEP", "1800")) if keep is None else keep
    if keep > 0:
        from vlalign.flows.apiserver import HomeServer  # (Prefect, as above)

        server = HomeServer(Path(os.environ["PREFECT_HOME"]), keep)
        url = server.ensure()
        server.hold()
    else:
        from prefect.server.api.server import SubprocessASGIServer  # (Prefect, as above)

        server = SubprocessASGIServer()
        server.start(timeout=90)
        url = server.api_url
    os.environ["PREFECT_API_URL"] = url
    try:
        with temporary_settings({PREFECT_API_URL: url}):
            yield url
    finally:
        _flush_api_logs()
        os.environ.pop("PREFECT_API_URL", None)
        if keep > 0:
            server.release()
        else:
            server.stop()


def _flush_api_logs() -> None:
    """Send queued flow/task logs while the server still runs (otherwise the exit hook retries for a minute)."""
    try:
        from prefect.logging.handlers import APILogHandler  # (Prefect, as above)

        APILogHandler().flush()
    except Exception:  # never let log shipping break a finished run
        pass


# glibc settings for worker processes. Dask's nanny starts workers with MALLOC_TRIM_THRESHOLD_=65536, so every
# batch's activations go back to the OS and are page-faulted in again; measured on EfficientNet-Lite0 (1 thread,
# batch 8): 24 img/s and 40% of the time in the kernel by default, 40 img/s with these (see bench/README.md).
WORKER_MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": "33554432", "MALLOC_TRIM_THRESHOLD_": "4294967296"}


def configure_worker_environment() -> None:
    """Environment of the worker processes a LocalCluster spawns: Dask's defaults plus WORKER_MALLOC_ENV."""
    import dask  # (Dask, like Prefect, after configure_environment)

    env = dict(dask.config.get("distributed.nanny.pre-spawn-environ", {}))
    env.update(WORKER_MALLOC_ENV)
    dask.config.set({"distributed.nanny.pre-spawn-environ": env})
    # a worker that loaded torch often takes more than the nanny's 4 s to exit when the cluster closes, and is then
    # stopped: "Worker process still alive after 4.0 seconds, killing" is a warning about nothing lost
    logging.getLogger("distributed.nanny").setLevel(logging.ERROR)


def dask_task_runner(address: str | None = None, n_workers: int | None = None, threads_per_worker: int = 1):
    """A DaskTaskRunner on an existing scheduler (``address``) or on a new LocalCluster of processes."""
    from prefect_dask import DaskTaskRunner  # (Prefect, as above)

    if address:
        return DaskTaskRunner(address=address)
    configure_worker_environment()
    n_workers = n_workers or max(1, min(2, os.cpu_count() or 1))
    return DaskTaskRunner(
        cluster_class="distributed.LocalCluster",
        cluster_kwargs={
            "n_workers": n_workers,
            "threads_per_worker": threads_per_worker,
            "processes": True,
            "dashboard_address": ":0",  # any free port: no "Port 8787 is already in use" warning
            # the workers' console: warnings and errors only, unless --verbose (the parent prints the flow's progress
            # and one line per failure; every record still goes to the API). Set in the workers alone (Nanny env).
            "env": {} if os.environ.get("VLALIGN_VERBOSE") else {"PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL": "WARNING"},
        },
    )


# Work at or below these sizes runs in this process, on the flow's threads: a LocalCluster costs seconds to start
# and to stop, and each worker process loads its encoders again, which small work does not pay back.
# Environment overrides: VLALIGN_LIGHT_ITEMS, VLALIGN_LIGHT_CELLS (0: every piece of work on Dask).
LIGHT_ITEMS = 1024  # units (images or captions) to embed
LIGHT_CELLS = 16  # analysis cells to compute


def light_limit(kind: str) -> int:
    """The size at or below which ``kind`` ("items" or "cells") runs in this process in automatic mode."""
    default = {"items": LIGHT_ITEMS, "cells": LIGHT_CELLS}[kind]
    name = f"VLALIGN_LIGHT_{kind.upper()}"
    raw = os.environ.get(name, "")
    try:
        return int(raw) if raw.strip() else default
    except ValueError:
        raise ValueError(f"${name} must be an integer, got {raw!r}") from None


class Automatic:
    """Marks a flow's task runner as the automatic choice (no --dask-address, no --workers): the flow runs on
    threads in this process, and each batch of heavy work above the light limit runs as a sub-flow on a
    LocalCluster (:func:`heavy_runner`). A runner the caller chose (a DaskTaskRunner, or threads in the tests)
    runs everything itself."""


def task_runner(address: str | None = None, n_workers: int | None = None):
    """The task runner of a command's flow: Dask when the user named a scheduler or a number of workers, else the
    automatic choice (threads here; a LocalCluster only for work above the light limit)."""
    if address or n_workers:
        return dask_task_runner(address, n_workers)
    from prefect.task_runners import ThreadPoolTaskRunner  # (Prefect, as above)

    class AutomaticTaskRunner(ThreadPoolTaskRunner, Automatic):
        pass

    return AutomaticTaskRunner(max_workers=max(1, os.cpu_count() or 1))


def heavy_runner(kind: str, size: int):
    """Where a batch of ``size`` units of heavy work (embedding: items; scoring: cells) runs: None for the flow's own
    task runner (it was chosen by the caller, or the work is small), else a DaskTaskRunner on a new LocalCluster
    for a sub-flow that runs the batch."""
    from prefect.context import FlowRunContext  # (Prefect, as above)

    ctx = FlowRunContext.get()
    if ctx is None or not isinstance(ctx.task_runner, Automatic) or size <= light_limit(kind):
        return None
    return dask_task_runner(None, None)


_BATCHES: dict[str, object] = {}


@contextlib.contextmanager
def batch_handle(batch: object) -> Iterator[str]:
    """A name for ``batch`` (a list of shards or cells) that a sub-flow of this process takes as its parameter
    instead of the batch itself: Prefect sends a flow run's parameters to its API, which refuses more than 512 KB
    (140 cells of the default sweep serialise to 1.4 MB), and the batch never leaves this process anyway."""
    import uuid  # (only when a sub-flow runs)

    name = uuid.uuid4().hex
    _BATCHES[name] = batch
    try:
        yield name
    finally:
        _BATCHES.pop(name, None)


def batch_of(handle: str) -> object:
    """The batch :func:`batch_handle` named ``handle``."""
    try:
        return _BATCHES[handle]
    except KeyError:
        raise RuntimeError(f"no batch {handle!r} in this process: a sub-flow that takes a batch handle runs in the "
                           "process that made it") from None


def torch_threads_per_worker(n_workers: int | None, threads_per_worker: int = 1) -> int:
    """Cores each worker's torch may use, so that workers sharing cores do not oversubscribe them."""
    cores = os.cpu_count() or 1
    n = n_workers or max(1, min(2, cores))
    return max(1, cores // (n * threads_per_worker))
