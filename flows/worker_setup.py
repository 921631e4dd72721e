"""Dask worker preload (``distributed.worker.preload``, set by vlalign.flows.runtime.configure_worker_environment):
the worker's Prefect console logs are filtered as the parent's are (one line per failure, no routine lines)."""

from __future__ import annotations


def dask_setup(worker) -> None:  # noqa: ARG001 - Dask's preload hook signature
    import prefect.logging  # noqa: F401 - Prefect sets up its console handler on import; filter it after

    from vlalign.flows.runtime import quiet_tracebacks  # after Prefect (runtime imports it lazily)

    quiet_tracebacks()
