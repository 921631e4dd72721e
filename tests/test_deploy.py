"""prefect.yaml, for real: a `prefect server start` subprocess, `prefect work-pool create` and
`prefect --no-prompt deploy --all` from the repository root, then the server's scheduler must create the
nightly runs of `scheduled-sweep/nightly-emoji` (02:00 UTC) with prefect.yaml's parameters and a pull step
into this repository. No worker is started: nothing here runs the sweep."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import httpx
import pytest
import yaml

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parent.parent
DEPLOYMENT = ("scheduled-sweep", "nightly-emoji")
WAIT_S = 90


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def prefect_env(home: Path, api_url: str) -> dict[str, str]:
    """A complete environment for the prefect CLI: nothing Prefect-related leaks in from the test process
    (conftest points PREFECT_HOME at its own folder and removes PREFECT_API_URL)."""
    env = {k: os.environ[k] for k in ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "SYSTEMROOT") if k in os.environ}
    env.update(
        PREFECT_HOME=str(home),
        PREFECT_API_URL=api_url,
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        DO_NOT_TRACK="1",
        PREFECT_UI_ENABLED="false",
        PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS="1",  # create the runs within a second of deploying
        VLALIGN_HOME=str(home.parent),  # where scheduled_sweep (configure_environment) puts its defaults
        HF_HUB_OFFLINE="1",
        PYTHONUNBUFFERED="1",
    )
    return env


def prefect(*args: str, env: dict, timeout: float = 120) -> str:
    proc = subprocess.run([sys.executable, "-m", "prefect", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=timeout)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"prefect {' '.join(args)} exited {proc.returncode}:\n{out[-4000:]}"
    return out


@pytest.fixture
def server(tmp_path, seed_prefect_home):
    """`prefect server start` on a free port with its own PREFECT_HOME (its database's tables already made);
    yields (api_url, env)."""
    port = free_port()
    api_url = f"http://127.0.0.1:{port}/api"
    env = prefect_env(seed_prefect_home(tmp_path / "prefect-home"), api_url)
    log = open(tmp_path / "server.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port), "--no-ui"],
        cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    try:
        deadline = time.monotonic() + WAIT_S
        while True:
            if proc.poll() is not None:
                pytest.fail(f"prefect server exited {proc.returncode}:\n{(tmp_path / 'server.log').read_text()[-4000:]}")
            try:
                if httpx.get(f"{api_url}/health", timeout=2).json() is True:
                    break
            except (httpx.HTTPError, ValueError):
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"prefect server not healthy after {WAIT_S}s:\n{(tmp_path / 'server.log').read_text()[-4000:]}")
            time.sleep(0.25)
        yield api_url, env
    finally:
        # the server runs in its own session: stop it and anything it started, then wait
        for sig, wait in ((signal.SIGTERM, 20), (signal.SIGKILL, 10)):
            if proc.poll() is not None:
                break
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                proc.wait(timeout=wait)
            except subprocess.TimeoutExpired:
                continue
        log.close()


def utc(ts: str) -> datetime:
    return datetime.fromisoformat(ts.replace("Z", "+00:00")).astimezone(timezone.utc)


def test_prefect_yaml_deploys_nightly_schedule(server):
    api_url, env = server
    config = yaml.safe_load((REPO / "prefect.yaml").read_text())
    spec = next(d for d in config["deployments"] if d["name"] == DEPLOYMENT[1])

    prefect("work-pool", "create", "vlalign", "--type", "process", env=env)
    out = prefect("--no-prompt", "deploy", "--all", env=env)
    assert "/".join(DEPLOYMENT) in out, out[-4000:]

    with httpx.Client(base_url=api_url, timeout=10) as api:
        r = api.get(f"/deployments/name/{DEPLOYMENT[0]}/{DEPLOYMENT[1]}")
        assert r.status_code == 200, r.text
        dep = r.json()
        assert dep["entrypoint"] == "flows/sweep.py:scheduled_sweep"
        assert dep["work_pool_name"] == "vlalign"
        assert dep["parameters"] == spec["parameters"]
        assert dep["parameters"] == {"spec": None, "lake_root": "lake", "dask_address": None}
        [sched] = dep["schedules"]
        assert sched["active"] is True
        assert sched["schedule"]["cron"] == "0 2 * * *" and sched["schedule"]["timezone"] == "UTC"
        # the pull step: a process worker runs the flow from this repository (resolved at deploy time)
        [step] = dep["pull_steps"]
        wd = step["prefect.deployments.steps.set_working_directory"]["directory"]
        assert os.path.realpath(wd) == os.path.realpath(REPO)

        # the scheduler service (loop: 1 s) creates the upcoming runs; no worker, so they stay Scheduled
        deadline = time.monotonic() + WAIT_S
        runs: list[dict] = []
        while time.monotonic() < deadline:
            r = api.post("/flow_runs/filter", json={
                "deployments": {"id": {"any_": [dep["id"]]}},
                "sort": "EXPECTED_START_TIME_ASC", "limit": 50,
            })
            assert r.status_code == 200, r.text
            runs = r.json()
            if runs:
                break
            time.sleep(0.5)
        assert runs, f"no flow runs scheduled for {'/'.join(DEPLOYMENT)} within {WAIT_S}s"

    scheduled = [fr for fr in runs if fr["state_type"] == "SCHEDULED" and fr["state"]["name"] == "Scheduled"]
    assert scheduled, [(fr["state_type"], fr["state"]["name"]) for fr in runs]
    now = datetime.now(timezone.utc)
    for fr in runs:
        start = utc(fr["expected_start_time"])
        assert (start.hour, start.minute, start.second, start.microsecond) == (2, 0, 0, 0), start
        assert start > now, start
        assert fr["parameters"] == spec["parameters"]
        assert fr["work_pool_name"] == "vlalign"
    starts = sorted(utc(fr["expected_start_time"]) for fr in runs)
    assert all((b - a).total_seconds() == 86400 for a, b in zip(starts, starts[1:])), starts
