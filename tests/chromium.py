"""Headless Chromium for tests: find it (or install Debian's ``chromium-headless-shell``), render a local
HTML file to its DOM and to a PNG screenshot, offline and as root.

Use the ``chromium`` fixture (the binary's path; the test is skipped when no Chromium can be had), then
``dom, png = render(html_path, chromium)``, or ``layout(html_path, chromium, width=1400)`` for what the page
looks like at that width: its height, the font size of every piece of text, the shown and natural width of
every image.

Environment: ``VLALIGN_CHROMIUM`` names a binary to use; ``VLALIGN_NO_APT`` (any value) forbids the
``apt-get install`` fallback.
"""

from __future__ import annotations

import base64
import functools
import html
import io
import json
import math
import os
import re
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


# Run in a copy of the page (the page itself has no script): measures the laid-out page and writes the result as
# JSON into a <pre id="vl-layout"> at the end of the body, which --dump-dom then carries out.
LAYOUT_JS = r"""
(function () {
  const out = {width: document.documentElement.scrollWidth, height: document.documentElement.scrollHeight,
               text: [], images: [], cells: []};
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  const seen = new Set();
  while (walker.nextNode()) {
    const el = walker.currentNode.parentElement;
    if (!walker.currentNode.textContent.trim() || seen.has(el) || el.tagName === "SCRIPT") continue;
    seen.add(el);
    out.text.push({tag: el.tagName.toLowerCase(), px: parseFloat(getComputedStyle(el).fontSize),
                   shown: el.getClientRects().length > 0, text: el.textContent.trim().slice(0, 60)});
  }
  for (const img of document.images) {
    out.images.push({natural: img.naturalWidth, shown: img.getBoundingClientRect().width,
                     alt: img.getAttribute("alt")});
  }
  for (const c of document.querySelectorAll("th, td")) {
    if (c.getClientRects().length === 0) continue;
    const range = document.createRange();
    range.selectNodeContents(c);
    const tops = new Set(Array.from(range.getClientRects()).filter(q => q.width > 0).map(q => Math.round(q.top)));
    const text = c.textContent.trim();
    out.cells.push({tag: c.tagName.toLowerCase(), text: text.slice(0, 60), width: c.getBoundingClientRect().width,
                    words: text ? text.split(/\s+/).length : 0, lines: tops.size});
  }
  const pre = document.createElement("pre");
  pre.id = "vl-layout";
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
})();
"""


def layout(html_path: str | Path, binary: str | None = None, width: int = 1400,
           timeout: float = RENDER_TIMEOUT_S) -> dict:
    """The page at a window ``width`` px wide, as Chromium lays it out: ``{"width", "height"}`` of the document
    (px), ``"text"``: one ``{"tag", "px" (computed font size), "shown" (laid out, i.e. not in a closed
    <details>), "text"}`` per element with text of its own, ``"images"``: ``{"natural", "shown" (width, px),
    "alt"}`` per <img> in document order, ``"cells"``: ``{"tag", "text", "width", "words", "lines"}`` per shown
    table cell. Measured by a script added to a copy of the page (the page itself stays script-free)."""
    binary = binary or ensure_chromium()
    if binary is None:
        raise RuntimeError(SKIP_MESSAGE)
    html_path = Path(html_path).resolve()
    text = html_path.read_text(encoding="utf-8")
    with tempfile.TemporaryDirectory(prefix="vlalign-chromium-") as tmp:
        tmp = Path(tmp)
        copy = tmp / html_path.name
        copy.write_text(text.replace("</body>", f"<script>{LAYOUT_JS}</script></body>", 1), encoding="utf-8")
        p = _run(binary, ["--virtual-time-budget=5000", f"--window-size={width},1000", "--dump-dom"], copy.as_uri(),
                 tmp / "profile", timeout)
        dom, _ = _wait(p, "--dump-dom", timeout)
    m = re.search(r'<pre id="vl-layout">(.*?)</pre>', dom, re.S)
    if m is None:
        raise RuntimeError(f"the layout script gave no result for {html_path}")
    return json.loads(html.unescape(m.group(1)))


MIN_FONT_KEY = "vlalign:min-font-px"  # the PNG text chunk where vlalign.report.plotting writes a figure's smallest font


def readability_problems(html_path: str | Path, binary: str | None = None, width: int = 1400,
                         max_height: int = 12_000, min_px: float = 10.0) -> list[str]:
    """What makes the page hard to read at a window ``width`` px wide: the page ``max_height`` px tall or more,
    or wider than the window; text smaller than ``min_px`` (computed font size); a figure whose smallest font
    (its PNG's MIN_FONT_KEY chunk), at the width the figure is shown, is smaller than ``min_px``; a table cell
    broken inside a word (more lines than words). Empty when none."""
    from PIL import Image

    lay = layout(html_path, binary, width)
    problems = []
    if lay["height"] >= max_height:
        problems.append(f"the page is {lay['height']} px tall (limit {max_height})")
    if lay["width"] > width:
        problems.append(f"the page is {lay['width']} px wide, wider than the window ({width})")
    problems += [f"text of {t['px']} px: <{t['tag']}> {t['text']!r}" for t in lay["text"] if t["px"] < min_px]
    pngs = re.findall(r'<img src="data:image/png;base64,([^"]+)"', Path(html_path).read_text(encoding="utf-8"))
    if len(pngs) != len(lay["images"]):
        problems.append(f"{len(lay['images'])} images laid out, {len(pngs)} PNGs in the page")
    for img, b64 in zip(lay["images"], pngs):
        font = float(Image.open(io.BytesIO(base64.b64decode(b64))).info.get(MIN_FONT_KEY, "nan"))
        shown = font * img["shown"] / img["natural"]
        if math.isnan(shown) or shown < min_px:
            problems.append(f"figure {img['alt']!r}: smallest font {shown:.1f} px as shown ({font} px in the PNG, "
                            f"shown {img['shown']:.0f} of {img['natural']} px wide)")
    problems += [f"table cell broken inside a word ({c['lines']} lines, {c['words']} words, {c['width']:.0f} px): "
                 f"{c['text']!r}" for c in lay["cells"] if c["lines"] > max(1, c["words"])]
    return problems
