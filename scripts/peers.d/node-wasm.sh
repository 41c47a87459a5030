#!/usr/bin/env bash
# Real peers from npm (pinned by interop/node/package-lock.json): vodozemac's ECIES as deployed,
# @matrix-org/matrix-sdk-crypto-wasm@18.9.0, and the deployed v1 login flow, matrix-js-sdk@43.0.0 (which depends on
# the same wasm package; one node_modules serves both). Idempotent: installs only when node_modules is missing or stale.
# Without node this prints a warning and succeeds; the interop tests then fail under CI=true and skip elsewhere.
set -euo pipefail
cd "$(dirname "$0")/../../interop/node"
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    echo "node-wasm: node/npm not found; the ECIES and matrix-js-sdk interop tests cannot run" >&2
    exit 0
fi
marker=node_modules/.package-lock.json
if [ -f "$marker" ] && [ ! package-lock.json -nt "$marker" ]; then
    exit 0
fi
npm ci --no-audit --no-fund --loglevel=error
