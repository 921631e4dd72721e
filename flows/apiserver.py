"""The lake's home Prefect API server: started once in the background, reused by later commands.

Starting Prefect's temporary API server costs 5-10 s of every command. Instead, the first command starts
this server as a detached process (``python -m vlalign.flows.apiserver``) and writes where it listens to
``$PREFECT_HOME/vlalign-api.json``; later commands find it there, check ``/api/health`` and use it. The
server stops by itself once its lease file has not been touched for ``keep`` seconds; a command holds the
lease (touches it every few seconds) for as long as it runs, so a long sweep never loses its server.

Several commands starting at once are serialised by a file lock: one starts the server, the others use it.
A server that does not answer (killed, hung, another machine's file) is replaced by a new one.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from filelock import FileLock

STATE = "vlalign-api.json"
LEASE = "vlalign-api.lease"
LOG = "vlalign-api.log"
TOUCH_EVERY = 10.0  # seconds between lease touches while a command runs


def healthy(url: str, timeout: float = 2.0) -> bool:
    import httpx  # imported by Prefect anyway; kept out of `vlalign --help` and the commands that run no flow

    try:
        return httpx.get(f"{url}/health", timeout=timeout).status_code == 200
    except httpx.HTTPError:
        return False


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class HomeServer:
    """The home server of ``home`` (a PREFECT_HOME folder): ensure it runs, hold its lease while working."""

    def __init__(self, home: Path, keep: float):
        self.home = Path(home)
        self.keep = keep
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def state_path(self) -> Path:
        return self.home / STATE

    @property
    def lease_path(self) -> Path:
        return self.home / LEASE

    def running(self) -> dict | None:
        """The state of a server that answers, else None."""
        try:
            state = json.loads(self.state_path.read_text())
        except (OSError, ValueError):
            return None
        return state if healthy(state.get("url", "")) else None

    def ensure(self, timeout: float = 90.0) -> str:
        """The URL of the home server, started now if none answers."""
        self.home.mkdir(parents=True, exist_ok=True)
        with FileLock(str(self.home / "vlalign-api.lock")):
            self.touch()
            state = self.running()
            if state:
                return state["url"]
            port = _free_port()
            url = f"http://127.0.0.1:{port}/api"
            env = {**os.environ, "PREFECT_UI_ENABLED": "0", "PREFECT__SERVER_EPHEMERAL": "1",
                   "PREFECT__SERVER_FINAL": "1"}
            env.pop("PREFECT_API_URL", None)
            with open(self.home / LOG, "ab") as log:
                proc = subprocess.Popen(
                    [sys.executable, "-m", "vlalign.flows.apiserver", "--port", str(port), "--keep", str(self.keep),
                     "--lease", str(self.lease_path)],
                    env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
            deadline = time.monotonic() + timeout
            while not healthy(url, timeout=1.0):
                if proc.poll() is not None:
                    raise RuntimeError(f"the Prefect API server exited with code {proc.returncode} while starting; "
                                       f"see {self.home / LOG}")
                if time.monotonic() > deadline:
                    proc.kill()
                    raise RuntimeError(f"the Prefect API server did not answer within {timeout:.0f}s; see {self.home / LOG}")
                time.sleep(0.1)
            self.touch()
            tmp = self.state_path.with_suffix(".tmp")
            tmp.write_text(json.dumps({"url": url, "pid": proc.pid, "keep": self.keep, "started": time.time()}))
            os.replace(tmp, self.state_path)
            return url

    def touch(self) -> None:
        self.lease_path.touch()

    def hold(self) -> None:
        """Touch the lease now and every TOUCH_EVERY seconds (a third of ``keep`` if less) until :meth:`release`."""
        self.touch()

        every = min(TOUCH_EVERY, max(0.2, self.keep / 3))

        def loop() -> None:
            while not self._stop.wait(every):
                try:
                    self.touch()
                except OSError:
                    pass

        self._thread = threading.Thread(target=loop, name="vlalign-api-lease", daemon=True)
        self._thread.start()

    def release(self) -> None:
        self._stop.set()
        try:
            self.touch()  # the idle time counts from the end of this command
        except OSError:
            pass

    def stop(self) -> bool:
        """Stop the home server if one runs (``vlalign server stop``); True if one was stopped."""
        try:
            state = json.loads(self.state_path.read_text())
        except (OSError, ValueError):
            return False
        try:
            os.kill(int(state["pid"]), signal.SIGTERM)
        except (OSError, KeyError, ValueError):
            return False
        finally:
            self.state_path.unlink(missing_ok=True)
        return True


def serve(port: int, keep: float, lease: Path) -> None:
    """Run Prefect's API app with uvicorn until the lease has been idle for ``keep`` seconds."""
    import uvicorn  # only in the server's own process

    config = uvicorn.Config("prefect.server.api.server:create_app", factory=True, host="127.0.0.1", port=port,
                            log_level="error", lifespan="on")
    server = uvicorn.Server(config)

    def watchdog() -> None:
        while not server.started and not server.should_exit:  # start-up time is not idle time
            time.sleep(0.1)
        up = time.time()
        while not server.should_exit:
            time.sleep(min(5.0, max(0.5, keep / 4)))
            try:
                last = max(up, lease.stat().st_mtime)
            except OSError:
                last = up
            if time.time() - last > keep:
                server.should_exit = True

    threading.Thread(target=watchdog, daemon=True).start()
    server.run()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="vlalign's home Prefect API server (started by vlalign itself)")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--keep", type=float, required=True, help="seconds of an untouched lease before it stops")
    ap.add_argument("--lease", type=Path, required=True)
    args = ap.parse_args(argv)
    serve(args.port, args.keep, args.lease)


if __name__ == "__main__":
    main()
