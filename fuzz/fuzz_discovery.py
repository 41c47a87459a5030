"""Fuzz target for the runner's discovery (:func:`qrlogin.runner.discover`): every answer a homeserver gives before
any QR code exists.

Contract: whatever the server answers to ``.well-known``, ``/versions`` and the two auth metadata paths (any status,
any body), ``discover`` returns a :class:`~qrlogin.runner.DiscoveredServer` whose base URL is an http(s) URL and
whose protocols are ones the login layer knows, or raises :class:`~qrlogin.runner.DiscoveryError`. Any other
exception is a bug.

The input is split on ``0xff`` bytes (never valid UTF-8, so never inside a JSON body) into up to four answers, each a
status byte (mapped onto a few statuses that change the path taken) followed by the body; a missing answer is a
request that got none. The discovered name is a server name or a base URL, chosen by the first byte.

Run with atheris (``python fuzz/fuzz_discovery.py fuzz/corpus/discovery``; ``scripts/fuzz`` runs every target for a
bounded budget); ``tests/runner/test_discovery_fuzz.py`` runs the same :func:`check` under hypothesis and
:func:`write_corpus` writes the seeds.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any, cast

from qrlogin.http import HttpRequest, HttpResponse, split_url
from qrlogin.login.messages import DEVICE_AUTHORIZATION_GRANT
from qrlogin.runner import DiscoveredServer, DiscoveryError, Transport, TransportOptions, discover

CORPUS = Path(__file__).resolve().parent / "corpus" / "discovery"
_STATUSES = (200, 200, 200, 404, 500, 301, 403, 200)
_DEADLINE_MS = 2**62


class _ScriptedTransport(Transport):
    """Answers each request with the next scripted answer; no network."""

    def __init__(self, answers: list[HttpResponse | None], *, allow_http: bool) -> None:
        super().__init__(cast(Any, None), TransportOptions(allow_http=allow_http))
        self._answers = answers

    async def perform(self, request: HttpRequest, *, deadline_ms: int) -> HttpResponse | None:
        if not self._answers:
            return None
        return self._answers.pop(0)


def _answers(data: bytes) -> list[HttpResponse | None]:
    answers: list[HttpResponse | None] = []
    for part in data.split(b"\xff")[:4]:
        if not part:
            answers.append(None)
            continue
        status = _STATUSES[part[0] % len(_STATUSES)]
        headers = (("content-type", "application/json"),)
        answers.append(HttpResponse(status=status, headers=headers, body=part[1:]))
    return answers


def check(data: bytes) -> None:
    if not data:
        return
    homeserver = "https://matrix.example.org" if data[0] & 1 else "example.org"
    transport = _ScriptedTransport(_answers(data[1:]), allow_http=bool(data[0] & 2))
    try:
        found = asyncio.run(discover(transport, homeserver, deadline_ms=_DEADLINE_MS))
    except DiscoveryError:
        return
    assert isinstance(found, DiscoveredServer)
    parts = split_url(found.base_url)
    assert parts is not None and parts.scheme in ("https", "http") and parts.netloc, found.base_url
    assert set(found.protocols) <= {DEVICE_AUTHORIZATION_GRANT}, found.protocols


def seed_inputs() -> list[bytes]:
    """A server name with a usable well-known, versions and metadata; the same with each step failing."""
    well_known = json.dumps({"m.homeserver": {"base_url": "https://matrix.example.org"}}).encode()
    versions = json.dumps({"versions": ["v1.15"], "unstable_features": {"org.matrix.msc4108": True}}).encode()
    metadata = json.dumps(
        {
            "issuer": "https://matrix.example.org/",
            "token_endpoint": "https://matrix.example.org/oauth2/token",
            "device_authorization_endpoint": "https://matrix.example.org/oauth2/device",
            "grant_types_supported": ["urn:ietf:params:oauth:grant-type:device_code", "refresh_token"],
        }
    ).encode()
    ok, not_found = b"\x00", b"\x03"
    complete = b"\x00" + b"\xff".join([ok + well_known, ok + versions, ok + metadata])
    return [
        complete,
        b"\x01" + b"\xff".join([ok + versions, ok + metadata]),  # a base URL: no .well-known
        b"\x00" + b"\xff".join([not_found, ok + versions, not_found + b"{}", ok + metadata]),  # both fallbacks
        b"\x00" + b"\xff".join([ok + well_known, ok + b'{"unstable_features": {}}']),  # no QR sign-in
        b"\x00" + b"\xff".join([ok + b'{"m.homeserver": {"base_url": "http://[evil"}}']),
    ]


def write_corpus() -> None:
    CORPUS.mkdir(parents=True, exist_ok=True)
    for index, seed in enumerate(seed_inputs()):
        (CORPUS / f"seed-{index:02d}").write_bytes(seed)


one_input = check  # the atheris entry point


if __name__ == "__main__":  # pragma: no cover
    if "--write-corpus" in sys.argv:
        write_corpus()
    else:
        from atheris_driver import hand_over

        hand_over(__file__)
