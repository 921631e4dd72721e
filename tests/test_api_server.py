"""The home Prefect API server (flows/apiserver.py): started once, reused by the next command, stopped
by itself after its keep time without use, and never while a command holds it."""

from __future__ import annotations

import json
import os
import time

import pytest

from vlalign.flows.apiserver import HomeServer, healthy

pytestmark = pytest.mark.slow


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    try:  # a zombie (exited, not yet reaped by its parent) counts as gone
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


def _wait_gone(pid: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not _alive(pid):
            return True
        time.sleep(0.2)
    return False


def test_started_once_reused_then_stops_when_unused(tmp_path, monkeypatch, seed_prefect_home):
    home = seed_prefect_home(tmp_path / "prefect-home")
    monkeypatch.setenv("PREFECT_HOME", str(home))
    first = HomeServer(home, keep=3)
    url = first.ensure()
    pid = json.loads((home / "vlalign-api.json").read_text())["pid"]
    try:
        assert healthy(url)
        first.hold()
        time.sleep(4)  # longer than keep: the held lease keeps it alive
        assert _alive(pid) and healthy(url)
        first.release()
        second = HomeServer(home, keep=3)
        t0 = time.perf_counter()
        assert second.ensure() == url  # the same server: nothing started
        assert time.perf_counter() - t0 < 2.0
        assert json.loads((home / "vlalign-api.json").read_text())["pid"] == pid
        assert _wait_gone(pid, 20), "the server should stop after 3 s without use"
        assert not healthy(url, timeout=0.5)
        third = HomeServer(home, keep=60)  # a dead server is replaced
        url3 = third.ensure()
        pid3 = json.loads((home / "vlalign-api.json").read_text())["pid"]
        assert pid3 != pid and healthy(url3)
        assert third.stop() and _wait_gone(pid3, 20)
    finally:
        for p in (pid, locals().get("pid3")):
            if p and _alive(p):
                os.kill(p, 9)


def test_prefect_api_uses_the_home_server_and_leaves_it_running(tmp_path, monkeypatch, seed_prefect_home):
    from vlalign.flows.runtime import prefect_api

    home = seed_prefect_home(tmp_path / "prefect-home")
    monkeypatch.setenv("PREFECT_HOME", str(home))
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    with prefect_api(keep=30) as url:
        assert os.environ["PREFECT_API_URL"] == url and healthy(url)
    assert "PREFECT_API_URL" not in os.environ
    state = json.loads((home / "vlalign-api.json").read_text())
    try:
        assert state["url"] == url and healthy(url)  # still there for the next command
        with prefect_api(keep=30) as again:
            assert again == url
    finally:
        assert HomeServer(home, 0).stop()
        assert _wait_gone(state["pid"], 20)
