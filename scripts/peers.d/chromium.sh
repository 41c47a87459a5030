#!/usr/bin/env bash
# A real browser for the tests of the homeserver's HTML pages (tests/homeserver/test_pages_browser.py): Chromium
# from the distribution's packages, driven by Python playwright (the "test" extra) through executable_path, so no
# browser is downloaded from anywhere else. Idempotent: does nothing when /usr/bin/chromium exists.
# Without apt-get (or without root or sudo) this prints a warning and succeeds; the browser tests then fail under
# CI=true and skip elsewhere.
set -euo pipefail
if [ -x /usr/bin/chromium ]; then
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "chromium: apt-get not found; the browser tests of the homeserver pages cannot run" >&2
    exit 0
fi
SUDO=""
if [ "$(id -u)" != 0 ]; then
    if ! command -v sudo >/dev/null 2>&1; then
        echo "chromium: not root and no sudo; the browser tests of the homeserver pages cannot run" >&2
        exit 0
    fi
    SUDO=sudo
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get install -y --no-install-recommends chromium \
    || { $SUDO apt-get update -q && $SUDO apt-get install -y --no-install-recommends chromium; }
