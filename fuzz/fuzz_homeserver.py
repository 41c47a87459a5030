"""Fuzz target for the homeserver model: any sequence of requests gets well-formed answers, never an exception.

The input is split on blank lines (``\\n\\n``) into at most 8 requests. In each, byte 0 picks the method, byte 1 the
path (one of the model's routes, or the following bytes as a raw path), byte 2 the headers, and the rest is the body.
In bodies and raw paths markers are replaced by real values, so that the fuzzer reaches the code behind
authentication, the OAuth client checks, the pages' anti-forgery checks and PKCE without having to guess secrets:

``@T`` a live access token, ``@C`` a device-grant client id, ``@D`` a pending device code, ``@U`` its user code,
``@W`` a client id with the authorization code grant, ``@H`` a PKCE challenge and ``@V`` its verifier, ``@K`` an
unredeemed authorization code for them, ``@A`` / ``@R`` an OAuth access / refresh token, ``@S`` a signed-in session
cookie and ``@X`` its anti-forgery token.

Byte 2's flags: the low bits choose the content type, ``0x10`` adds the live bearer token, ``0x20`` an
``Authorization`` header from the body, ``0x40`` the signed-in session cookie and ``0x80`` the server's own
``Origin``.

Checked after every request: the status is below 500 (bad input gets the spec's 4xx, never a server error); every
header value is printable (an HTTP server cannot send a line break in one); an API answer is a JSON object with a
JSON content type; a page is HTML, and a 303 names where to go; the registry still holds at most one access token
per device, each bound to an existing device; every signed-in session's user exists.

Run with atheris: ``python fuzz/fuzz_homeserver.py fuzz/corpus/homeserver`` (``scripts/fuzz`` runs every target for a
bounded budget). ``tests/homeserver/test_fuzz.py`` runs the same target under hypothesis.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import re
from collections import Counter
from urllib.parse import parse_qs, urlencode, urlsplit

from qrlogin.homeserver import Homeserver, HttpRequest, HttpResponse, approve_user_code, handle, new_homeserver
from qrlogin.homeserver.oauth import DEVICE_CODE_GRANT, REFRESH_TOKEN_GRANT
from qrlogin.homeserver.pages import PAGE_PATHS

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
    "/_matrix/client/unstable/org.matrix.msc2965/auth_metadata",
    "/oauth2/revoke",
    "/oauth2/authorize",
    "/login",
    "/link",
    "/_matrix/client/v3/logout",
    "/_matrix/client/v3/logout/all",
)
BASE_URL = "https://fuzz.example"
CONTENT_TYPES = ("application/json", "application/x-www-form-urlencoded", "text/plain", None)
MAX_REQUESTS = 8


_HIDDEN = re.compile(r'<input type=hidden name="([^"]*)" value="([^"]*)">')


def _step(hs: Homeserver, request: HttpRequest) -> tuple[Homeserver, HttpResponse]:
    return handle(hs, request, now_ms=0)


def _form(target: str, fields: dict[str, str], cookie: str) -> HttpRequest:
    headers = (("content-type", "application/x-www-form-urlencoded"), ("cookie", cookie), ("origin", BASE_URL))
    return HttpRequest(method="POST", target=target, headers=headers, body=urlencode(fields).encode())


def _page(hs: Homeserver, target: str, cookie: str) -> tuple[Homeserver, HttpResponse, dict[str, str]]:
    hs, response = _step(hs, HttpRequest(method="GET", target=target, headers=(("cookie", cookie),)))
    found = _HIDDEN.findall(response.body.decode())
    return hs, response, {html.unescape(name): html.unescape(value) for name, value in found}


def _setup() -> tuple[Homeserver, dict[bytes, bytes]]:
    hs = new_homeserver(server_name="fuzz.example", base_url=BASE_URL, seed=b"fuzz")
    register = {"username": "alice", "password": "pw", "device_id": "FUZZDEVICE"}
    hs, response = _step(hs, HttpRequest.json("POST", "/_matrix/client/v3/register", register))
    token = response.json()["access_token"]
    client = {"client_uri": "https://c.example", "grant_types": [DEVICE_CODE_GRANT, REFRESH_TOKEN_GRANT]}
    hs, response = _step(hs, HttpRequest.json("POST", "/oauth2/registration", client))
    client_id = response.json()["client_id"]
    web = {
        "client_uri": "https://c.example/",
        "redirect_uris": ["https://c.example/cb"],
        "grant_types": ["authorization_code", REFRESH_TOKEN_GRANT],
    }
    hs, response = _step(hs, HttpRequest.json("POST", "/oauth2/registration", web))
    web_id = response.json()["client_id"]

    # A device grant approved and redeemed (OAuth tokens), and one left pending.
    scope = "urn:matrix:client:api:* urn:matrix:client:device:"
    hs, response = _step(hs, HttpRequest.form("/oauth2/device", {"client_id": client_id, "scope": scope + "GRANTED"}))
    granted = response.json()
    hs, _ = approve_user_code(hs, granted["user_code"], "@alice:fuzz.example", now_ms=0)
    poll = {"grant_type": DEVICE_CODE_GRANT, "device_code": granted["device_code"], "client_id": client_id}
    hs, response = _step(hs, HttpRequest.form("/oauth2/token", poll))
    oauth_tokens = response.json()
    hs, response = _step(
        hs, HttpRequest.form("/oauth2/device", {"client_id": client_id, "scope": scope + "NEWDEVICE0"})
    )
    grant = response.json()

    # A signed-in browser session, and an authorization code issued through the consent page.
    hs, response, fields = _page(hs, "/login", "")
    cookie = "qrlogin_session=" + (response.header("set-cookie") or "").split(";")[0].partition("=")[2]
    hs, response = _step(hs, _form("/login", {**fields, "username": "alice", "password": "pw"}, cookie))
    session = (response.header("set-cookie") or "").split(";")[0].partition("=")[2]
    verifier = "fuzz-verifier-" + "v" * 40
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    query = {
        "response_type": "code",
        "client_id": web_id,
        "redirect_uri": "https://c.example/cb",
        "scope": "urn:matrix:client:api:*",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    hs, _, fields = _page(hs, "/oauth2/authorize?" + urlencode(query), f"qrlogin_session={session}")
    hs, response = _step(hs, _form("/oauth2/authorize", {**fields, "action": "allow"}, f"qrlogin_session={session}"))
    code = parse_qs(urlsplit(response.header("location") or "").query)["code"][0]
    markers = {
        b"@T": token,
        b"@C": client_id,
        b"@D": grant["device_code"],
        b"@U": grant["user_code"],
        b"@W": web_id,
        b"@H": challenge,
        b"@V": verifier,
        b"@K": code,
        b"@A": oauth_tokens["access_token"],
        b"@R": oauth_tokens["refresh_token"],
        b"@S": session,
        b"@X": fields["csrf"],
    }
    return hs, {marker: value.encode() for marker, value in markers.items()}


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
    if flags & 0x40:
        headers.append(("cookie", "qrlogin_session=" + _MARKERS[b"@S"].decode()))
    if flags & 0x80:
        headers.append(("origin", BASE_URL))
    return HttpRequest(method=method, target=path, headers=tuple(headers), body=body)


def check(hs: Homeserver) -> None:
    registry = hs.registry
    counts = Counter((binding.user_id, binding.device_id) for binding in registry.access_tokens.values())
    for (user_id, device_id), count in counts.items():
        if count != 1 or device_id not in registry.accounts[user_id].devices:
            raise AssertionError(f"token table broken for {device_id!r}")
    for session in hs.oauth.sessions.values():
        if session.user_id not in registry.accounts:
            raise AssertionError("a browser session is signed in as nobody")


def check_response(request: HttpRequest, response: HttpResponse) -> None:
    if not 200 <= response.status < 500:
        raise AssertionError(f"status {response.status}")
    if not all(" " <= ch <= "~" for _, value in response.headers for ch in value):
        raise AssertionError("a header value an HTTP server cannot send")
    if request.path in PAGE_PATHS:
        if response.header("content-type") != "text/html; charset=utf-8" or not response.body:
            raise AssertionError("a page is not HTML")
        if response.status == 303 and not response.header("location"):
            raise AssertionError("a redirect names no location")
        return
    if response.header("content-type") != "application/json":
        raise AssertionError("response is not JSON")
    if not isinstance(json.loads(response.body), dict):
        raise AssertionError("response body is not a JSON object")


def one_input(data: bytes) -> None:
    hs = _START
    now_ms = 0
    for chunk in data.split(b"\n\n")[:MAX_REQUESTS]:
        now_ms += 1000 * (chunk[0] % 16 if chunk else 1)
        request = build_request(chunk)
        hs, response = handle(hs, request, now_ms=now_ms)
        check_response(request, response)
        check(hs)


if __name__ == "__main__":  # pragma: no cover - needs atheris
    from atheris_driver import hand_over

    hand_over(__file__)
