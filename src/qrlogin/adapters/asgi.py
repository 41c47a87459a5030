"""An ASGI application serving the rendezvous core (all generations) over a store.

Theory of operation
-------------------
Each HTTP request is read into a plain :class:`~qrlogin.http.HttpRequest`, answered by
:meth:`RendezvousServer.respond <qrlogin.rendezvous.server.RendezvousServer.respond>` with the wall-clock time and
32 fresh bytes from :func:`os.urandom`, and written back. The body is read at most up to the largest size the core
accepts plus one byte: a larger ``Content-Length`` is refused before reading anything, and a body that keeps
coming is cut there, so the core (which checks sizes before anything else) answers 413 without the server ever
buffering more. No framework is needed for this; any ASGI server (uvicorn in ``qrlogin serve``) can host it.

The core routes on the request's ``raw_path`` (still percent-encoded) below the ASGI ``root_path``
(:func:`route_path`): an encoded ``/`` never splits or joins segments, and the app answers the same wherever a host
application mounts it. :func:`write_response` sends ``Content-Length`` on every answer that may carry a body and on
no other (never on ``204`` or ``304``). Health, metrics, the access log and the security headers live in
:mod:`qrlogin.adapters.front`; the HTTP server's limits in :mod:`qrlogin.adapters.uvicorn_runner`.
"""

from __future__ import annotations

import os
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import quote

from ..http import HttpRequest, HttpResponse
from ..rendezvous.server import MAX_JSON_BODY_BYTES, InMemoryStore, RendezvousServer, ServerConfig, Store

__all__ = [
    "Message",
    "Receive",
    "RendezvousApp",
    "Scope",
    "Send",
    "acknowledge_lifespan",
    "create_app",
    "read_request",
    "route_path",
    "write_response",
]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

_READ_LIMIT = MAX_JSON_BODY_BYTES + 1
_PURGE_EVERY_MS = 10_000


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class RendezvousApp:
    """``await app(scope, receive, send)``: HTTP requests go to the rendezvous core; lifespan is acknowledged."""

    def __init__(
        self,
        server: RendezvousServer,
        *,
        clock: Callable[[], int] = _now_ms,
        entropy: Callable[[int], bytes] = os.urandom,
    ) -> None:
        self.server = server
        self._clock = clock
        self._entropy = entropy
        self._last_purge_ms = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        request = await self._read(scope, receive)
        now_ms = self._clock()
        self._maybe_purge(now_ms)
        response = self.server.respond(request, now_ms=now_ms, entropy=self._entropy(32))
        await write_response(send, response)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        await acknowledge_lifespan(receive, send)

    async def _read(self, scope: Scope, receive: Receive) -> HttpRequest:
        return await read_request(scope, receive, limit=_READ_LIMIT)

    def _maybe_purge(self, now_ms: int) -> None:
        purge = getattr(self.server.store, "purge_expired", None)
        if purge is not None and now_ms - self._last_purge_ms >= _PURGE_EVERY_MS:
            self._last_purge_ms = now_ms
            purge(now_ms)


async def acknowledge_lifespan(receive: Receive, send: Send) -> None:
    """Answer an ASGI ``lifespan`` scope: nothing to start or stop."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def read_request(scope: Scope, receive: Receive, *, limit: int) -> HttpRequest:
    """The request of an ASGI ``http`` scope, its body cut at ``limit`` bytes (a larger one is never buffered).

    A ``Content-Length`` over ``limit`` is refused unread: the body stands in as ``limit`` zero bytes, enough for a
    core that checks sizes first to answer 413.
    """
    headers = []
    declared = None
    for raw_name, raw_value in scope["headers"]:
        name, value = raw_name.decode("latin-1"), raw_value.decode("latin-1")
        if declared is None and name.lower() == "content-length":
            declared = value
        headers.append((name, value))
    target = route_path(scope)
    if scope.get("query_string"):
        target += "?" + scope["query_string"].decode("latin-1")
    body = b""
    if declared is not None and declared.isdigit() and int(declared) > limit:
        body = b"\0" * limit  # stands in for the refused body: the core answers 413 from its size alone
    else:
        chunks: list[bytes] = []
        size = 0
        more = True
        while more and size <= limit:
            message = await receive()
            if message["type"] == "http.disconnect":
                break
            chunk = message.get("body", b"")
            chunks.append(chunk)
            size += len(chunk)
            more = message.get("more_body", False)
        body = b"".join(chunks)[:limit]
    return HttpRequest(method=scope["method"], target=target, headers=tuple(headers), body=body)


def route_path(scope: Scope) -> str:
    """The path as the request spelled it (still percent-encoded), below the ``root_path`` the app is mounted at.

    Routing on the decoded ``path`` would let ``/rendezvous/a%2Fb`` reach the session ``a/b``; the raw path keeps an
    encoded ``/`` inside its segment. A server or framework that mounts the app (uvicorn's ``--root-path``, a
    Starlette ``Mount``) keeps the full path and names the mount point in ``root_path``; it is cut off here, so the
    core sees the same target wherever the app is mounted.
    """
    root = scope.get("root_path", "")
    raw: bytes | None = scope.get("raw_path")
    if raw is None:
        path: str = scope["path"]
        path = path.removeprefix(root) if root and path.startswith(root + "/") else path
        return quote(path, safe="/:@!$&'()*+,;=-._~")
    if root:
        encoded_root = quote(root, safe="/:@!$&'()*+,;=-._~").encode("ascii")
        if raw.startswith(encoded_root + b"/"):
            raw = raw[len(encoded_root) :]
    return raw.decode("latin-1")


_NO_CONTENT = frozenset({204, 304})
# Most response headers are the same few pairs on every answer (CORS, caching, content type): their encoded form is
# kept. The cache takes only the first pairs it meets, so per-session values (ETags, dates) cannot grow it.
_ENCODED_HEADERS: dict[tuple[str, str], tuple[bytes, bytes]] = {}
_ENCODED_HEADERS_MAX = 64


def _encoded(pair: tuple[str, str]) -> tuple[bytes, bytes]:
    encoded = _ENCODED_HEADERS.get(pair)
    if encoded is None:
        encoded = (pair[0].encode("latin-1"), pair[1].encode("latin-1"))
        if len(_ENCODED_HEADERS) < _ENCODED_HEADERS_MAX:
            _ENCODED_HEADERS[pair] = encoded
    return encoded


async def write_response(send: Send, response: HttpResponse) -> None:
    """Send ``response``; ``Content-Length`` on every status that may carry a body (not on 1xx, 204 or 304)."""
    headers = [_encoded(pair) for pair in response.headers]
    if response.status >= 200 and response.status not in _NO_CONTENT:
        headers.append((b"content-length", str(len(response.body)).encode("ascii")))
    await send({"type": "http.response.start", "status": response.status, "headers": headers})
    await send({"type": "http.response.body", "body": response.body})


def create_app(config: ServerConfig | None = None, store: Store | None = None) -> RendezvousApp:
    """An app over ``store`` (default: a fresh in-memory store) with ``config`` (default: all generations)."""
    return RendezvousApp(RendezvousServer(config or ServerConfig(), store or InMemoryStore()))
