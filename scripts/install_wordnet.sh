#!/usr/bin/env bash
# WordNet 3.0 for the polysemy breakdown of concept alignment (vlalign.wordprops). Idempotent and never fails
# the build: exits 0 when /usr/share/wordnet (or $VLALIGN_WORDNET_DIR) has the index files; installs Debian's
# `wordnet-base` when running as root with apt-get (and VLALIGN_NO_APT unset); otherwise prints how (the
# polysemy breakdown then says it is unavailable, and its tests are skipped).
set -u
dir="${VLALIGN_WORDNET_DIR:-/usr/share/wordnet}"
if [ -f "$dir/index.noun" ]; then echo "[wordnet] found $dir"; exit 0; fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1 && [ -z "${VLALIGN_NO_APT:-}" ]; then
  echo "[wordnet] installing wordnet-base with apt-get"
  apt-get install -y -qq --no-install-recommends wordnet-base >/dev/null 2>&1 \
    || { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq --no-install-recommends wordnet-base >/dev/null 2>&1; } \
    || echo "[wordnet] apt-get could not install wordnet-base; polysemy will be unavailable" >&2
  [ -f "$dir/index.noun" ] && echo "[wordnet] installed $dir"
  exit 0
fi
echo "[wordnet] no WordNet; install it with: sudo apt-get install wordnet-base (polysemy is then available)" >&2
exit 0
