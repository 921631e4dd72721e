"""Prefect flows. Importing this package sets quiet, offline Prefect defaults before Prefect is imported."""

from vlalign.flows.runtime import configure_environment

configure_environment()
