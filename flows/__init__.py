"""Prefect flows. Importing this package changes nothing: whoever runs a flow first calls
vlalign.flows.runtime.configure_environment() (the CLI, the deployments' entry point scheduled_sweep, the benchmarks,
the tests' conftest), before Prefect reads its settings and before Dask starts its worker processes."""
