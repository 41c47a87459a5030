#!/usr/bin/env bash
# Install Synapse 1.163 (a real rendezvous server: v1 ETag and v3 MSC4388) into its own virtual environment,
# .peers/synapse-venv, for the rendezvous interop tests. Idempotent: does nothing when the right version is there.
# The tests generate their own config and start/stop Synapse on loopback (tests/synapse_fixture.py).
set -euo pipefail
cd "$(dirname "$0")/../.."
VENV=.peers/synapse-venv
PYTHON=${PYTHON:-python3}
if [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c 'import synapse, sys; sys.exit(0 if synapse.__version__.startswith("1.163.") else 1)' 2>/dev/null; then
    exit 0
fi
mkdir -p .peers
"$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --upgrade pip
"$VENV/bin/python" -m pip install -q 'matrix-synapse==1.163.*'
"$VENV/bin/python" -c 'import synapse; print("synapse", synapse.__version__)'
