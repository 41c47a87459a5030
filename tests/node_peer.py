"""Run the deployed vodozemac ECIES (npm matrix-sdk-crypto-wasm 18.9.0) in node as the other party.

``interop/node/ecies_peer.cjs`` speaks one JSON object per line; :class:`NodeEciesPeer` is its client.
:func:`require_node_peer` decides what happens when node or the package is missing: under ``CI=true`` the test fails
(the interop tests are part of the project's contract, docs/protocol.md §10), elsewhere it is skipped with the reason.

Run ``python -m tests.channel.ecies_transcript`` to re-capture ``spec_vectors/ecies_wasm_transcript.json``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from types import TracebackType
from typing import Any

from tests.peers import npm_package_problem, require_peer

ROOT = Path(__file__).resolve().parent.parent
NODE_PROJECT = ROOT / "interop" / "node"
PEER_SCRIPT = NODE_PROJECT / "ecies_peer.cjs"
WASM_PACKAGE = NODE_PROJECT / "node_modules" / "@matrix-org" / "matrix-sdk-crypto-wasm" / "package.json"
PINNED_VERSION = "18.9.0"


class PeerError(Exception):
    """The wasm peer refused a request; ``str(error)`` is vodozemac's message."""


def node_problem() -> str | None:
    """Why the node peer cannot run here, or ``None`` if it can."""
    return npm_package_problem(WASM_PACKAGE, "matrix-sdk-crypto-wasm", PINNED_VERSION)


def require_node_peer() -> None:
    require_peer(node_problem(), "ECIES interop peer")


class NodeEciesPeer:
    """One node process holding at most one vodozemac ECIES channel."""

    def __init__(self, *, seed: bytes | None = None) -> None:
        env = dict(os.environ)
        env.pop("QRLOGIN_PEER_SEED", None)
        if seed is not None:
            env["QRLOGIN_PEER_SEED"] = seed.hex()
        node = shutil.which("node")
        assert node is not None
        self._process = subprocess.Popen(
            [node, str(PEER_SCRIPT)],
            cwd=NODE_PROJECT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            encoding="utf-8",
        )

    def request(self, op: str, **fields: Any) -> dict[str, Any]:
        """Send one request; return the reply or raise :class:`PeerError` with the library's message."""
        stdin, stdout = self._process.stdin, self._process.stdout
        assert stdin is not None and stdout is not None
        stdin.write(json.dumps({"op": op, **fields}) + "\n")
        stdin.flush()
        line = stdout.readline()
        if not line:
            raise RuntimeError(f"the node peer exited (status {self._process.wait()})")
        reply: dict[str, Any] = json.loads(line)
        if not reply.pop("ok"):
            raise PeerError(reply["error"])
        return reply

    def close(self) -> None:
        if self._process.stdin is not None:
            self._process.stdin.close()
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        if self._process.stdout is not None:
            self._process.stdout.close()

    def __enter__(self) -> NodeEciesPeer:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
