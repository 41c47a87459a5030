#!/usr/bin/env bash
# Install redis-server from the distribution's packages for the Redis store tests (tests/rendezvous/redis_util.py
# starts its own redis-server on a free loopback port, with no persistence, and stops it; no system service is used).
# Idempotent: does nothing when redis-server is already there.
set -euo pipefail
if command -v redis-server >/dev/null 2>&1; then
    exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO=sudo
fi
$SUDO apt-get update -q
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q redis-server
# The package starts a system service; the tests do not use it.
$SUDO systemctl disable --now redis-server >/dev/null 2>&1 || true
redis-server --version
