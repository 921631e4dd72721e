#!/usr/bin/env bash
# Make a headless Chromium available for the HTML report tests (tests/test_html.py). Idempotent and never
# fails the build: exits 0 when one is already there, installs Debian's `chromium-headless-shell` when
# running as root with apt-get (and VLALIGN_NO_APT unset), otherwise prints how to install it and exits 0
# (the tests that need it are then skipped).
set -u

found() {
  if [ -n "${VLALIGN_CHROMIUM:-}" ] && [ -x "$(command -v "$VLALIGN_CHROMIUM" 2>/dev/null || echo "$VLALIGN_CHROMIUM")" ]; then
    echo "$VLALIGN_CHROMIUM"; return 0
  fi
  for n in chromium-headless-shell chromium chromium-browser google-chrome google-chrome-stable; do
    p=$(command -v "$n" 2>/dev/null) && [ -x "$p" ] && { echo "$p"; return 0; }
  done
  for p in /usr/lib/chromium/chromium-headless-shell /usr/bin/chromium-headless-shell /usr/lib/chromium/chromium \
           /usr/bin/chromium /usr/lib/chromium-browser/chromium-browser /opt/google/chrome/chrome; do
    [ -x "$p" ] && { echo "$p"; return 0; }
  done
  return 1
}

hint() {
  echo "[chromium] no headless Chromium; the report rendering tests will be skipped." >&2
  echo "[chromium] install it with: sudo apt-get install chromium-headless-shell   (or: sudo apt-get install chromium)" >&2
}

if p=$(found); then
  echo "[chromium] found $p"
  exit 0
fi

if [ -n "${VLALIGN_NO_APT:-}" ] || [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  hint
  exit 0
fi

export DEBIAN_FRONTEND=noninteractive
T=""; command -v timeout >/dev/null 2>&1 && T="timeout 900"
apt_install() { $T apt-get install -y -qq --no-install-recommends "$@" >/dev/null; }
echo "[chromium] installing chromium-headless-shell with apt-get"
if ! apt_install chromium-headless-shell; then
  $T apt-get update -qq >/dev/null || true
  apt_install chromium-headless-shell || true
fi

if p=$(found); then
  echo "[chromium] installed $p"
else
  echo "[chromium] apt-get could not install chromium-headless-shell" >&2
  hint
fi
exit 0
