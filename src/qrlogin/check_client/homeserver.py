"""The homeserver the client under test talks to: the pure model on loopback, with a fault layer in front.

Theory of operation
-------------------
:class:`~qrlogin.adapters.homeserver_asgi.HomeserverApp` holds one :mod:`qrlogin.homeserver` value and answers
each request with one ``handle`` step. :class:`ServedHomeserver` puts that app on uvicorn, in a thread, on a
loopback port, behind a thin ASGI layer that hands every request to the scenario's :data:`Intercept` first. The
intercept sees the request and a ``forward`` function (one model step); it may answer without forwarding (a 503
that never reached the model, a ``slow_down``), forward and change the answer (a write that landed but whose
answer is lost), or just forward. The model itself is never edited: every fault is the answer a real server, or
a network between, could give.

Two parties reach the same model. The client under test comes over HTTP and every request it makes is logged
(:class:`Exchange`); the suite's own device (the counterpart) calls :meth:`ServedHomeserver.respond_to_counterpart`
in-process, past the intercept, because the counterpart is not under test. Both run under the app's lock, one
step at a time.

The base URL is ``http://127.0.0.1:PORT`` and the server name ``127.0.0.1:PORT``, as ``qrlogin testserver`` serves
it; the rendezvous session lifetime and the device grant's poll interval are short so that each scenario ends in
seconds.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from .. import homeserver as hsm
from ..adapters.asgi import Receive, Scope, Send, acknowledge_lifespan, read_request, write_response
from ..adapters.clock import unix_ms
from ..adapters.homeserver_asgi import HomeserverApp
from ..homeserver._http import MAX_BODY_BYTES
from ..homeserver.rendezvous import install_rendezvous
from ..http import HttpRequest, HttpResponse

__all__ = [
    "ACCOUNT",
    "EXISTING_DEVICE_ID",
    "PASSWORD",
    "Exchange",
    "Forward",
    "Intercept",
    "ServedHomeserver",
    "forward_unchanged",
    "now_ms",
]

ACCOUNT = "alice"
PASSWORD = "correct horse battery staple"
EXISTING_DEVICE_ID = "LAPTOP"

Forward = Callable[[HttpRequest], HttpResponse]
#: ``intercept(request, forward) -> response``: what the client is answered. ``forward`` is one model step.
Intercept = Callable[[HttpRequest, Forward], HttpResponse]


def forward_unchanged(request: HttpRequest, forward: Forward) -> HttpResponse:
    return forward(request)


def now_ms() -> int:
    """Unix milliseconds: js-sdk arms its expiry timer with ``Expires - Date.now()``, so the model's clock is real; it
    never jumps (:mod:`qrlogin.adapters.clock`), so a session's lifetime and a last message's grace are elapsed time."""
    return unix_ms()


@dataclass(frozen=True, slots=True)
class Exchange:
    """One request of the client under test (when it arrived, Unix ms) and what it was answered."""

    at_ms: int
    request: HttpRequest
    response: HttpResponse

    @property
    def path(self) -> str:
        return self.request.path

    @property
    def method(self) -> str:
        return self.request.method


@dataclass
class _Log:
    exchanges: list[Exchange] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


class _FaultLayer:
    """ASGI app: read the request, let the intercept answer it, log it, write the answer."""

    def __init__(self, served: ServedHomeserver) -> None:
        self._served = served

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await acknowledge_lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        request = await read_request(scope, receive, limit=MAX_BODY_BYTES + 1)
        # The intercept may sleep (a slow server) and the model step takes the app's lock: off the event loop.
        response = await asyncio.get_running_loop().run_in_executor(None, self._served.answer_client, request)
        await write_response(send, response)


class ServedHomeserver:
    """The model with alice signed in on :data:`EXISTING_DEVICE_ID`, served on a loopback port until closed."""

    def __init__(self, *, seed: bytes, ttl_ms: int, poll_interval_s: int = 1) -> None:
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind(("127.0.0.1", 0))
        port = self._socket.getsockname()[1]
        self.poll_interval_s = poll_interval_s
        self.base_url = f"http://127.0.0.1:{port}"
        self.server_name = f"127.0.0.1:{port}"
        hs = hsm.new_homeserver(
            server_name=self.server_name, base_url=self.base_url, seed=seed, poll_interval_s=poll_interval_s
        )
        hs = install_rendezvous(hs, seed=seed + b" rendezvous", ttl_ms=ttl_ms)
        hs, self.user_id = hsm.add_user(hs, ACCOUNT, PASSWORD)
        self.app = HomeserverApp(hs, clock=now_ms)
        self.access_token = self.login(EXISTING_DEVICE_ID)
        self.intercept: Intercept = forward_unchanged
        self._log = _Log()
        self._server: Any = None
        self._thread: threading.Thread | None = None

    # ---------------------------------------------------------------------------------------------- lifecycle

    def __enter__(self) -> ServedHomeserver:
        import uvicorn

        config = uvicorn.Config(
            _FaultLayer(self), log_level="error", access_log=False, lifespan="on", timeout_keep_alive=2
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self._socket]}, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started and time.monotonic() < deadline:
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._socket.close()

    # ---------------------------------------------------------------------------------------------- requests

    def forward(self, request: HttpRequest) -> HttpResponse:
        """One model step, unchanged."""
        return self.app.respond(request)

    def answer_client(self, request: HttpRequest) -> HttpResponse:
        arrived_ms = now_ms()
        try:
            response = self.intercept(request, self.forward)
        except Exception as exc:  # a scenario's hook must not take the server down; answer as a broken server would
            body = json.dumps({"errcode": "M_UNKNOWN", "error": f"check-client hook failed: {exc!r}"}).encode()
            response = HttpResponse(status=500, headers=(("content-type", "application/json"),), body=body)
        with self._log.lock:
            self._log.exchanges.append(Exchange(at_ms=arrived_ms, request=request, response=response))
        return response

    def respond_to_counterpart(self, request: HttpRequest) -> HttpResponse:
        """The suite's own device: past the intercept, not logged (it is not under test)."""
        return self.forward(request)

    @property
    def exchanges(self) -> list[Exchange]:
        """Every request of the client under test so far, in arrival order."""
        with self._log.lock:
            return list(self._log.exchanges)

    # ---------------------------------------------------------------------------------------------- the user

    def login(self, device_id: str) -> str:
        """Sign alice in on ``device_id`` (password login); returns the access token."""
        body = {"type": "m.login.password", "user": ACCOUNT, "password": PASSWORD, "device_id": device_id}
        response = self.forward(HttpRequest.json("POST", "/_matrix/client/v3/login", body))
        token = json.loads(response.body)["access_token"]
        assert isinstance(token, str)
        return token

    def devices(self) -> set[str]:
        """alice's device ids now."""
        account = self.app.hs.registry.accounts[self.user_id]
        return set(account.devices)

    def consent(self, verification_uri: str, *, approve: bool = True) -> hsm.ConsentResult:
        """The user at the consent page ``verification_uri`` names (its ``user_code`` query parameter)."""
        user_code = dict(parse_qsl(urlsplit(verification_uri).query)).get("user_code", "")
        if approve:
            return self.app.update(lambda hs, now: hsm.approve_user_code(hs, user_code, self.user_id, now_ms=now))
        return self.app.update(lambda hs, now: hsm.deny_user_code(hs, user_code, now_ms=now))
