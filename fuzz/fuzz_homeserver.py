"""Fuzz target for the homeserver model: any sequence of requests gets well-formed answers, never an exception.

The input is split on blank lines (``\\n\\n``) into at most 8 requests. In each, byte 0 picks the method, byte 1 the
path (one of the model's routes, or the following bytes as a raw path), byte 2 the headers, and the rest is the body.
In bodies and raw paths the markers ``@T`` (a live access token), ``@C`` (a registered client id), ``@D`` (a pending
device code) and ``@U`` (its user code) are replaced by real values, so that the fuzzer reaches the code behind
authentication and behind the OAuth client checks without having to guess secrets.

Checked after every request: the status is an HTTP status, the body is a JSON object with a JSON content type, and
the registry still holds at most one access token per device, each bound to an existing device.

Run with atheris: ``python fuzz/fuzz_homeserver.py fuzz/corpus/homeserver`` (``scripts/fuzz`` runs every target for a
bounded budget). ``tests/homeserver/test_fuzz.py`` runs the same target under hypothesis.
"""

from __future__ import annotations

import json
from collections import Counter

from qrlogin.homeserver import Homeserver, HttpRequest, handle, new_homeserver
from qrlogin.homeserver.oauth import DEVICE_CODE_GRANT, REFRESH_TOKEN_GRANT

METHODS = ("GET", "POST", "PUT", "DELETE", "PATCH")
PATHS = (
    "/_matrix/client/v3/login",
    "/_matrix/client/v3/register",
    "/_matrix/client/v3/devices",
    "/_matrix/client/v3/devices/FUZZDEVICE",
    "/_matrix/client/v3/account/whoami",
    "/_matrix/client/v1/auth_metadata",
    "/.well-known/matrix/client",
    "/oauth2/registration",
    "/oauth2/device",
    "/oauth2/token",
    "/_matrix/client/v1/rendezvous",
)
CONTENT_TYPES = ("application/json", "application/x-www-form-urlencoded", "text/plain", None)
MAX_REQUESTS = 8


def _setup() -> tuple[Homeserver, dict[bytes, bytes]]:
    hs = new_homeserver(server_name="fuzz.example", base_url="https://fuzz.example", seed=b"fuzz")
    register = {"username": "alice", "password": "pw", "device_id": "FUZZDEVICE"}
    hs, response = handle(hs, HttpRequest.json("POST", "/_matrix/client/v3/register", register), now_ms=0)
    token = response.json()["access_token"]
    client = {"client_uri": "https://c.example", "grant_types": [DEVICE_CODE_GRANT, REFRESH_TOKEN_GRANT]}
    hs, response = handle(hs, HttpRequest.json("POST", "/oauth2/registration", client), now_ms=0)
    client_id = response.json()["client_id"]
    scope = "urn:matrix:client:api:* urn:matrix:client:device:NEWDEVICE0"
    hs, response = handle(hs, HttpRequest.form("/oauth2/device", {"client_id": client_id, "scope": scope}), now_ms=0)
    grant = response.json()
    markers = {
        b"@T": token.encode(),
        b"@C": client_id.encode(),
        b"@D": grant["device_code"].encode(),
        b"@U": grant["user_code"].encode(),
    }
    return hs, markers


_START, _MARKERS = _setup()


def _substitute(data: bytes) -> bytes:
    for marker, value in _MARKERS.items():
        data = data.replace(marker, value)
    return data


def build_request(chunk: bytes) -> HttpRequest:
    """Decode one request from fuzzer bytes (total: every byte string gives a request)."""
    method = METHODS[chunk[0] % len(METHODS)] if chunk else "GET"
    selector = chunk[1] if len(chunk) > 1 else 0
    flags = chunk[2] if len(chunk) > 2 else 0
    rest = _substitute(chunk[3:])
    if selector < 2 * len(PATHS):
        path, body = PATHS[selector % len(PATHS)], rest
    else:
        raw_path, _, body = rest.partition(b" ")
        path = raw_path.decode("latin-1")
    headers: list[tuple[str, str]] = []
    content_type = CONTENT_TYPES[flags % len(CONTENT_TYPES)]
    if content_type is not None:
        headers.append(("content-type", content_type))
    if flags & 0x10:
        headers.append(("authorization", "Bearer " + _MARKERS[b"@T"].decode()))
    elif flags & 0x20:
        headers.append(("authorization", body[:40].decode("latin-1")))
    return HttpRequest(method=method, target=path, headers=tuple(headers), body=body)


def check(hs: Homeserver) -> None:
    registry = hs.registry
    counts = Counter((binding.user_id, binding.device_id) for binding in registry.access_tokens.values())
    for (user_id, device_id), count in counts.items():
        if count != 1 or device_id not in registry.accounts[user_id].devices:
            raise AssertionError(f"token table broken for {device_id!r}")


def one_input(data: bytes) -> None:
    hs = _START
    now_ms = 0
    for chunk in data.split(b"\n\n")[:MAX_REQUESTS]:
        now_ms += 1000 * (chunk[0] % 16 if chunk else 1)
        hs, response = handle(hs, build_request(chunk), now_ms=now_ms)
        if not 200 <= response.status <= 599:
            raise AssertionError(f"status {response.status}")
        if response.header("content-type") != "application/json":
            raise AssertionError("response is not JSON")
        if not isinstance(json.loads(response.body), dict):
            raise AssertionError("response body is not a JSON object")
        check(hs)


if __name__ == "__main__":  # pragma: no cover - needs atheris
    from atheris_driver import hand_over

    hand_over(__file__)
