"""``qrlogin testserver`` as a subprocess on a free port, checked over real HTTP.

The command is started with ``--port 0``; the test reads the base URL it announces, then checks the discovery
documents a client reads before offering sign-in with QR code, a password login, and one whole sign-in with QR code
between two :mod:`qrlogin.device` machines (the new device shows the QR code, the existing one scans it) with
``--auto-approve`` standing in for the user's consent.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import socket
import subprocess
import time
from collections.abc import Iterator, MutableMapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import httpx
import pytest

from qrlogin import device as dv
from qrlogin import qr
from qrlogin.adapters.homeserver_asgi import HomeserverApp
from qrlogin.cli import build_parser
from qrlogin.cli.testserver import auto_approver, build_homeserver
from qrlogin.homeserver import ConsentResult, approve_user_code
from qrlogin.http import HttpResponse
from qrlogin.login.events import ReportLoginSuccess
from qrlogin.sim.world import CLIENT_METADATA, user_secrets
from qrlogin.vocabulary import (
    CheckCodeEntered,
    DeviceRole,
    HttpRequestFailed,
    HttpResponseReceived,
    OpenVerificationUri,
    PromptForCheckCode,
    SendHttpRequest,
    ShowCheckCode,
    TimerFired,
    VerificationUriOpened,
)
from tests.peers import start_testserver

pytest.importorskip("uvicorn")

SRC = Path(__file__).resolve().parents[2] / "src"
PASSWORD = "correct horse battery staple"
# The names the server answers as (RFC 6761 reserved, never resolvable); the devices map them to its loopback port,
# as a deployed client would reach an https proxy in front of it.
SERVER_NAME = "qrlogin.test"
PUBLIC_BASE_URL = "https://matrix.qrlogin.test"
SIGN_IN_TIMEOUT_S = 15.0


@dataclass(frozen=True)
class Server:
    loopback: str  # where it listens
    base_url: str  # what it answers as
    server_name: str
    banner: str


@contextmanager
def _testserver(*flags: str) -> Iterator[tuple[subprocess.Popen[str], Server]]:
    """``qrlogin testserver --port 0 FLAGS`` answering as the public names, once it has announced itself."""
    flags = ("--user", f"alice:{PASSWORD}", *flags, "--public-base-url", PUBLIC_BASE_URL, "--server-name", SERVER_NAME)
    with start_testserver(*flags, stdin=subprocess.PIPE) as (process, text):
        found = re.search(r"listening on (http://127\.0\.0\.1:(\d+))\n", text)
        assert found is not None, text
        assert found.group(2) != "0"
        yield process, Server(loopback=found.group(1), base_url=PUBLIC_BASE_URL, server_name=SERVER_NAME, banner=text)


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    with _testserver("--user", "bob:other", "--auto-approve", "--poll-interval", "1") as (_, running):
        yield running


def test_the_announcement_names_the_server_and_the_users(server: Server) -> None:
    assert f"base URL: {PUBLIC_BASE_URL}\n" in server.banner
    assert f"server name: {server.server_name}\n" in server.banner
    assert f"user: @alice:{server.server_name} password {PASSWORD}\n" in server.banner
    assert f"user: @bob:{server.server_name} password other\n" in server.banner
    assert f"point a client at homeserver URL {server.base_url}" in server.banner
    assert f"approved at once for @alice:{server.server_name}" in server.banner


def test_discovery_documents(server: Server) -> None:
    base, loopback = server.base_url, server.loopback
    well_known = httpx.get(f"{loopback}/.well-known/matrix/client")
    assert well_known.status_code == 200
    assert well_known.json() == {"m.homeserver": {"base_url": base}}
    versions = httpx.get(f"{loopback}/_matrix/client/versions")
    assert versions.status_code == 200
    assert versions.json()["unstable_features"]["org.matrix.msc4108"] is True
    metadata = httpx.get(f"{loopback}/_matrix/client/v1/auth_metadata")
    assert metadata.status_code == 200
    body = metadata.json()
    assert body["issuer"] == base + "/"
    assert "urn:ietf:params:oauth:grant-type:device_code" in body["grant_types_supported"]
    for name in ("token_endpoint", "registration_endpoint", "device_authorization_endpoint"):
        assert body[name].startswith(base + "/")


def test_the_http_limits_of_serve_hold_here_too(server: Server) -> None:
    """testserver runs on the same uvicorn runner as serve: too many headers are refused with 431."""
    host, port = urlsplit(server.loopback).netloc.split(":")
    filler = "".join(f"X-Filler-{i}: x\r\n" for i in range(101))
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(f"GET /_matrix/client/versions HTTP/1.1\r\nHost: x\r\n{filler}\r\n".encode())
        reply = sock.recv(4096)
    assert reply.startswith(b"HTTP/1.1 431 ")
    assert "server" not in httpx.get(f"{server.loopback}/_matrix/client/versions").headers


def test_password_login(server: Server) -> None:
    login = {"type": "m.login.password", "identifier": {"type": "m.id.user", "user": "bob"}, "password": "other"}
    response = httpx.post(f"{server.loopback}/_matrix/client/v3/login", json=login)
    assert response.status_code == 200
    token = response.json()["access_token"]
    whoami = httpx.get(f"{server.loopback}/_matrix/client/v3/account/whoami", headers=_bearer(token))
    assert whoami.json()["user_id"] == f"@bob:{server.server_name}"
    wrong = httpx.post(f"{server.loopback}/_matrix/client/v3/login", json={**login, "password": "nope"})
    assert (wrong.status_code, wrong.json()["errcode"]) == (403, "M_FORBIDDEN")


def _bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass
class Driver:
    """One device machine with its HTTP performed for real: the server's public names are mapped to its loopback."""

    http: httpx.Client
    server: Server
    access_token: str | None = None
    state: dv.State | None = None
    effects: list[dv.Effect] = field(default_factory=list)
    todo: list[SendHttpRequest] = field(default_factory=list)

    def apply(self, result: tuple[dv.State, tuple[dv.Effect, ...]]) -> None:
        self.state, effects = result
        self.effects.extend(effects)
        self.todo.extend(e for e in effects if isinstance(e, SendHttpRequest))

    def feed(self, event: dv.Event) -> None:
        assert self.state is not None
        if not dv.is_done(self.state):
            self.apply(dv.transition(self.state, event, now_ms=_now_ms()))

    def step(self) -> None:
        while self.todo:
            self.feed(self._perform(self.todo.pop(0)))
        assert self.state is not None
        due = dv.deadline(self.state)
        if due is not None and due <= _now_ms():
            self.feed(TimerFired())

    def _perform(self, effect: SendHttpRequest) -> HttpResponseReceived | HttpRequestFailed:
        request = effect.request
        parts = urlsplit(request.target)
        if parts.scheme != "https" or parts.netloc not in (SERVER_NAME, urlsplit(PUBLIC_BASE_URL).netloc):
            return HttpRequestFailed(request_id=effect.request_id)
        headers = dict(request.headers)
        if request.authenticated and self.access_token is not None:
            headers["authorization"] = f"Bearer {self.access_token}"
        target = self.server.loopback + parts.path + (f"?{parts.query}" if parts.query else "")
        try:
            response = self.http.request(request.method, target, headers=headers, content=request.body)
        except httpx.HTTPError:
            return HttpRequestFailed(request_id=effect.request_id)
        answer = HttpResponse(
            status=response.status_code, headers=tuple(response.headers.items()), body=response.content
        )
        return HttpResponseReceived(request_id=effect.request_id, response=answer)

    @property
    def outcome(self) -> dv.ReportOutcome | None:
        return next((e for e in self.effects if isinstance(e, dv.ReportOutcome)), None)


@pytest.mark.parametrize("generation", [qr.Generation.V1, qr.Generation.V3])
def test_sign_in_with_qr_code_between_two_devices(server: Server, generation: qr.Generation) -> None:
    base, loopback = server.base_url, server.loopback
    new_device = f"PHONE{generation.name}"  # the server outlives one test: a fresh device id each
    login = {"type": "m.login.password", "user": "alice", "password": PASSWORD, "device_id": "LAPTOP"}
    token = httpx.post(f"{loopback}/_matrix/client/v3/login", json=login).json()["access_token"]
    new_config = dv.DeviceConfig(
        kind=DeviceRole.NEW, generation=generation, seed=os.urandom(32), base_url=base, server_name=server.server_name,
        device_id=new_device, client_metadata=CLIENT_METADATA, poll_interval_ms=250,
    )  # fmt: skip
    existing_config = dv.DeviceConfig(
        kind=DeviceRole.EXISTING, generation=generation, seed=os.urandom(32), base_url=base,
        server_name=server.server_name, secrets=user_secrets("alice"), poll_interval_ms=250,
    )  # fmt: skip
    with httpx.Client(timeout=10.0) as http:
        new = Driver(http, server)
        existing = Driver(http, server, access_token=token)
        new.apply(dv.generate(new_config, now_ms=_now_ms()))
        seen = {id(new): 0, id(existing): 0}
        check_code: str | None = None
        prompted: Driver | None = None  # the device asking for the code the other one shows
        deadline = time.monotonic() + SIGN_IN_TIMEOUT_S
        while not all(d.state is not None and dv.is_done(d.state) for d in (new, existing)):
            assert time.monotonic() < deadline, (new.effects, existing.effects)
            failed = [
                d.outcome for d in (new, existing) if d.outcome and not isinstance(d.outcome.result, ReportLoginSuccess)
            ]
            assert not failed, failed
            for this in (new, existing):
                if this.state is None:
                    continue
                this.step()
                for effect in this.effects[seen[id(this)] :]:
                    seen[id(this)] += 1
                    if isinstance(effect, dv.ShowQrCode):
                        existing.apply(dv.scan(existing_config, effect.payload, now_ms=_now_ms()))
                    elif isinstance(effect, ShowCheckCode):
                        check_code = effect.code
                    elif isinstance(effect, PromptForCheckCode):
                        prompted = this
                    elif isinstance(effect, OpenVerificationUri):
                        this.feed(VerificationUriOpened())  # the server approved it already
            if prompted is not None and check_code is not None:
                prompted.feed(CheckCodeEntered(code=check_code))  # the user types the code the other shows
                prompted = None
            time.sleep(0.01)

    assert new.outcome is not None and existing.outcome is not None
    assert isinstance(existing.outcome.result, ReportLoginSuccess)
    result = new.outcome.result
    assert isinstance(result, ReportLoginSuccess) and result.tokens is not None
    assert result.secrets == user_secrets("alice")
    whoami = httpx.get(
        f"{loopback}/_matrix/client/v3/account/whoami", headers=_bearer(result.tokens.access_token.value.decode())
    )
    assert whoami.json() == {"user_id": f"@alice:{server.server_name}", "device_id": new_device}


def test_without_auto_approve_a_user_code_typed_on_stdin_is_approved() -> None:
    with _testserver("--poll-interval", "1") as (process, server):
        assert process.stdin is not None and process.stdout is not None
        assert f"type a user code here to approve it for @alice:{SERVER_NAME}" in server.banner
        client = {
            "client_name": "test",
            "client_uri": "https://client.example",
            "grant_types": ["urn:ietf:params:oauth:grant-type:device_code"],
            "token_endpoint_auth_method": "none",
        }
        registered = httpx.post(f"{server.loopback}/oauth2/registration", json=client)
        client_id = registered.json()["client_id"]
        scope = "urn:matrix:client:api:* urn:matrix:client:device:TYPED"
        grant = httpx.post(f"{server.loopback}/oauth2/device", data={"client_id": client_id, "scope": scope}).json()
        poll = {"grant_type": "urn:ietf:params:oauth:grant-type:device_code", "client_id": client_id}
        poll["device_code"] = grant["device_code"]
        pending = httpx.post(f"{server.loopback}/oauth2/token", data=poll)
        assert pending.json()["error"] == "authorization_pending"
        process.stdin.write(grant["user_code"] + "\n")
        process.stdin.flush()
        assert process.stdout.readline() == f"qrlogin testserver: {grant['user_code']}: approved\n"
        time.sleep(grant["interval"])  # a sooner poll would be slow_down
        tokens = httpx.post(f"{server.loopback}/oauth2/token", data=poll)
        assert tokens.status_code == 200
        whoami = httpx.get(
            f"{server.loopback}/_matrix/client/v3/account/whoami", headers=_bearer(tokens.json()["access_token"])
        )
        assert whoami.json() == {"user_id": f"@alice:{SERVER_NAME}", "device_id": "TYPED"}


# -------------------------------------------------------------------------------- in process: the app and its hook


def _call(app: HomeserverApp, method: str, target: str, body: bytes = b"", headers: Any = ()) -> HttpResponse:
    """One request through the ASGI interface, without a server."""
    path, _, query = target.partition("?")
    scope = {"type": "http", "method": method, "path": path, "query_string": query.encode(), "headers": list(headers)}
    messages: list[dict[str, Any]] = [{"type": "http.request", "body": body, "more_body": False}]
    sent: list[MutableMapping[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return messages.pop(0)

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    start, body_message = sent
    return HttpResponse(
        status=start["status"],
        headers=tuple((k.decode(), v.decode()) for k, v in start["headers"]),
        body=body_message["body"],
    )


def test_app_answers_with_the_model_and_the_hook_approves_device_authorizations() -> None:
    hs, (alice,) = build_homeserver(
        server_name="example.org", base_url="https://h.example", users=[("alice", "pw")], poll_interval_s=1
    )
    app = HomeserverApp(hs, clock=lambda: 1_000, after=auto_approver(alice))
    versions = _call(app, "GET", "/_matrix/client/versions")
    assert versions.json()["unstable_features"] == {"org.matrix.msc4108": True}
    assert ("content-length", str(len(versions.body))) in versions.headers
    too_big = _call(app, "POST", "/_matrix/client/v3/login", b"{" + b" " * 20_000 + b"}")
    assert too_big.status == 413
    declared = _call(app, "POST", "/_matrix/client/v3/login", b"", headers=[(b"content-length", b"999999")])
    assert declared.status == 413
    metadata = json.dumps(json.loads(CLIENT_METADATA)).encode()
    client_id = _call(app, "POST", "/oauth2/registration", metadata, [(b"content-type", b"application/json")])
    form = urlencode(
        {"client_id": client_id.json()["client_id"], "scope": "urn:matrix:client:api:* urn:matrix:client:device:X"}
    )
    grant = _call(
        app, "POST", "/oauth2/device", form.encode(), [(b"content-type", b"application/x-www-form-urlencoded")]
    )
    assert grant.status == 200
    user_code = grant.json()["user_code"]
    again = app.update(lambda hs, now_ms: approve_user_code(hs, user_code, alice, now_ms=now_ms))
    assert again is ConsentResult.ALREADY_DECIDED  # the hook approved it as the grant was created
    assert app.hs is not hs


def test_users_are_name_colon_password() -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["testserver", "--user", "nopassword"])
    assert build_parser().parse_args(["testserver", "--user", "a:b:c"]).user == [("a", "b:c")]
