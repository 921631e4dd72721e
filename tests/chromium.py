"""Headless Chromium for tests: find it (or install Debian's ``chromium-headless-shell``), render a local
HTML file to its DOM and to a PNG screenshot, offline and as root.

Use the ``chromium`` fixture (the binary's path; the test is skipped when no Chromium can be had), then
``dom, png = render(html_path, chromium)``.

Environment: ``VLALIGN_CHROMIUM`` names a binary to use; ``VLALIGN_NO_APT`` (any value) forbids the
``apt-get install`` fallback.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

SKIP_MESSAGE = (
    "no headless Chromium found: install one with `sudo apt-get install chromium-headless-shell` "
    "(Debian 12+; or `sudo apt-get install chromium`), or run scripts/install_chromium.sh, "
    "or point VLALIGN_CHROMIUM at a Chromium/Chrome binary"
)

# Searched in PATH first, in this order, then the known install locations below.
NAMES = ("chromium-headless-shell", "chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
KNOWN_PATHS = (
    "/usr/lib/chromium/chromium-headless-shell",  # Debian: the real binary (/usr/bin/... is a sh wrapper)
    "/usr/bin/chromium-headless-shell",
    "/usr/lib/chromium/chromium",
    "/usr/bin/chromium",
    "/usr/lib/chromium-browser/chromium-browser",
    "/usr/bin/chromium-browser",
    "/opt/google/chrome/chrome",
    "/usr/bin/google-chrome",
)

APT_TIMEOUT_S = 600
RENDER_TIMEOUT_S = 60

# Flags for a quiet, offline, root-safe run: no sandbox (root), no GPU, nothing fetched in the background,
# every host name unresolvable (a page that reaches for the network gets nothing), fixed scale factor.
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--allow-file-access-from-files",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-default-apps",
    "--disable-extensions",
    "--disable-sync",
    "--disable-breakpad",
    "--disable-crash-reporter",
    "--disable-domain-reliability",
    "--disable-client-side-phishing-detection",
    "--no-first-run",
    "--no-default-browser-check",
    "--no-pings",
    "--metrics-recording-only",
    "--mute-audio",
    "--hide-scrollbars",
    "--force-device-scale-factor=1",
    "--host-resolver-rules=MAP * ~NOTFOUND",
    "--proxy-server=127.0.0.1:9",
    "--proxy-bypass-list=<-loopback>",
)


def _executable(p: str | None) -> str | None:
    return p if p and os.path.isfile(p) and os.access(p, os.X_OK) else None


def _works(binary: str) -> bool:
    """The binary starts and answers ``--version`` (weeds out e.g. Ubuntu's snap-installer stubs)."""
    try:
        r = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return False
    return r.returncode == 0 and ("Chromium" in r.stdout or "Chrome" in r.stdout or "HeadlessChrome" in r.stdout)


def find_chromium() -> str | None:
    """Path of a usable headless Chromium, or None. ``VLALIGN_CHROMIUM`` wins; then
    ``chromium-headless-shell``, ``chromium``, ``chromium-browser``, ``google-chrome`` in PATH; then the
    known install paths (Debian puts the headless shell at /usr/lib/chromium/chromium-headless-shell with
    a wrapper script at /usr/bin/chromium-headless-shell)."""
    env = os.environ.get("VLALIGN_CHROMIUM")
    if env:
        p = _executable(env) or _executable(shutil.which(env))
        if p and _works(p):
            return p
    seen: set[str] = set()
    candidates = [shutil.which(n) for n in NAMES] + list(KNOWN_PATHS)
    for c in candidates:
        p = _executable(c)
        if p is None or os.path.realpath(p) in seen:
            continue
        seen.add(os.path.realpath(p))
        if _works(p):
            return p
    return None


def _apt_install(package: str) -> bool:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    cmd = ["apt-get", "install", "-y", "-qq", "--no-install-recommends", package]
    try:
        if subprocess.run(cmd, env=env, capture_output=True, timeout=APT_TIMEOUT_S).returncode == 0:
            return True
        subprocess.run(["apt-get", "update", "-qq"], env=env, capture_output=True, timeout=APT_TIMEOUT_S)
        return subprocess.run(cmd, env=env, capture_output=True, timeout=APT_TIMEOUT_S).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


@functools.lru_cache(maxsize=1)
def ensure_chromium() -> str | None:
    """:func:`find_chromium`; failing that, as root with apt-get (and no ``VLALIGN_NO_APT``), install
    ``chromium-headless-shell`` (``apt-get update`` and retry if the first install fails) and look again.
    Never raises; None when no Chromium can be had. Cached: runs once per process."""
    try:
        found = find_chromium()
        if found:
            return found
        if os.environ.get("VLALIGN_NO_APT") or not hasattr(os, "geteuid") or os.geteuid() != 0:
            return None
        if shutil.which("apt-get") is None:
            return None
        if _apt_install("chromium-headless-shell"):
            return find_chromium()
        return None
    except Exception:  # noqa: BLE001 - a helper for skipping tests must not error
        return None


def _run(binary: str, args: list[str], url: str, profile: Path, timeout: float) -> subprocess.Popen:
    env = {**os.environ, "HOME": str(profile), "XDG_CONFIG_HOME": str(profile / "config"),
           "XDG_CACHE_HOME": str(profile / "cache")}
    return subprocess.Popen([binary, *FLAGS, f"--user-data-dir={profile / 'data'}", *args, url],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                            stdin=subprocess.DEVNULL, start_new_session=True)


def _wait(p: subprocess.Popen, what: str, timeout: float) -> tuple[str, str]:
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(p.pid, 9)  # the browser and the helper processes it started, nothing else
        except ProcessLookupError:
            pass
        p.communicate()
        raise RuntimeError(f"chromium {what} timed out after {timeout:.0f} s") from None
    out_s, err_s = out.decode("utf-8", "replace"), err.decode("utf-8", "replace")
    if p.returncode != 0:
        raise RuntimeError(f"chromium {what} exited {p.returncode}:\n{err_s[-3000:]}")
    return out_s, err_s


def render(html_path: str | Path, binary: str | None = None, png_path: str | Path | None = None,
           window_size: tuple[int, int] = (1280, 2000), timeout: float = RENDER_TIMEOUT_S) -> tuple[str, Path]:
    """Open ``html_path`` in headless Chromium twice, side by side: once with ``--dump-dom`` (the DOM
    after load, as text) and once with ``--screenshot`` (a PNG of the first ``window_size`` pixels).
    Each run gets its own throwaway profile. Returns ``(dom, png)``; the PNG goes to ``png_path``
    (default: next to the page, ``<stem>.screenshot.png``). Raises RuntimeError on failure/timeout."""
    binary = binary or ensure_chromium()
    if binary is None:
        raise RuntimeError(SKIP_MESSAGE)
    html_path = Path(html_path).resolve()
    if not html_path.is_file():
        raise FileNotFoundError(html_path)
    png = Path(png_path) if png_path else html_path.with_name(html_path.stem + ".screenshot.png")
    png = png.resolve()
    png.unlink(missing_ok=True)
    url = html_path.as_uri()
    with tempfile.TemporaryDirectory(prefix="vlalign-chromium-") as tmp:
        tmp = Path(tmp)
        (tmp / "dom").mkdir()
        (tmp / "shot").mkdir()
        wait = ["--virtual-time-budget=5000"]
        p_dom = _run(binary, [*wait, "--dump-dom"], url, tmp / "dom", timeout)
        p_shot = _run(binary, [*wait, "--run-all-compositor-stages-before-draw", f"--screenshot={png}",
                               f"--window-size={window_size[0]},{window_size[1]}"], url, tmp / "shot", timeout)
        try:
            dom, _ = _wait(p_dom, "--dump-dom", timeout)
        finally:
            _, err = _wait(p_shot, "--screenshot", timeout)
    if "<html" not in dom.lower():
        raise RuntimeError(f"chromium --dump-dom gave no document for {url}: {dom[:300]!r}")
    if not png.is_file() or png.stat().st_size == 0:
        raise RuntimeError(f"chromium --screenshot wrote no {png}:\n{err[-3000:]}")
    return dom, png


@pytest.fixture(scope="session")
def chromium() -> str:
    """Path of a headless Chromium (installed through apt-get when missing and allowed); skips without."""
    binary = ensure_chromium()
    if binary is None:
        pytest.skip(SKIP_MESSAGE)
    return binary
