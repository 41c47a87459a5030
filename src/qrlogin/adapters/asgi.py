"""An ASGI application serving the rendezvous core (all generations) over a store.

Theory of operation
-------------------
Each HTTP request is read into a plain :class:`~qrlogin.http.HttpRequest` and answered by the pure core in steps:
:func:`~qrlogin.rendezvous.server.begin` (with the wall-clock time, 32 fresh bytes from :func:`os.urandom` and the
peer's address for the rate limits) says what the request waits for, a store operation; the app awaits it on the
:class:`~qrlogin.rendezvous.server.Store` (in memory by default, Redis with :mod:`qrlogin.adapters.redis_store`) and
hands the result to the matching ``after_*`` function, until the core gives the answer. The core decides; only this
loop does I/O. The in-memory store (:class:`~qrlogin.rendezvous.server.EmbeddedStore`) answers at once, so over it
the same steps are driven synchronously (:class:`~qrlogin.rendezvous.server.RendezvousServer`), without a coroutine
per step. A store that cannot be reached (:class:`~qrlogin.rendezvous.server.StoreUnavailableError`) gives
``503 M_UNKNOWN`` with ``Retry-After``. Between requests, at most one bounded slice of the store's housekeeping
runs per request (a second or more apart, or at once while a backlog is left), so purging never stalls the loop.

The body is read at most up to the largest size the core accepts plus one byte: a larger ``Content-Length`` is
refused before reading anything, and a body that keeps coming is cut there, so the core (which checks sizes before
anything else) answers 413 without the server ever buffering more. No framework is needed for this; any ASGI server
(uvicorn in ``qrlogin serve``) can host it.

The core routes on the request's ``raw_path`` (still percent-encoded) below the ASGI ``root_path``
(:func:`route_path`): an encoded ``/`` never splits or joins segments, and the app answers the same wherever a host
application mounts it. :func:`write_response` sends ``Content-Length`` on every answer that may carry a body and on
no other (never on ``204`` or ``304``). Health, metrics, the access log and the security headers live in
:mod:`qrlogin.adapters.front`; the HTTP server's limits in :mod:`qrlogin.adapters.uvicorn_runner`.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any
from urllib.parse import quote

from ..http import HttpRequest, HttpResponse, build_request, is_declared
from ..rendezvous.limits import client_key
from ..rendezvous.server import (
    MAX_JSON_BODY_BYTES,
    EmbeddedStore,
    Inserting,
    Limiting,
    Reading,
    RendezvousServer,
    ServerConfig,
    Store,
    StoreUnavailableError,
    after_commit,
    after_insert,
    after_limit,
    after_read,
    begin,
    store_unavailable_error,
)
from .clock import unix_ms

__all__ = [
    "Message",
    "Receive",
    "RendezvousApp",
    "Scope",
    "Send",
    "acknowledge_lifespan",
    "create_app",
    "read_request",
    "respond",
    "response_messages",
    "route_path",
    "write_response",
]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

_READ_LIMIT = MAX_JSON_BODY_BYTES + 1
_MAINTAIN_EVERY_MS = 1_000


class RendezvousApp:
    """``await app(scope, receive, send)``: HTTP requests go to the rendezvous core; lifespan is acknowledged."""

    def __init__(
        self,
        config: ServerConfig,
        store: Store,
        *,
        clock: Callable[[], int] = unix_ms,
        entropy: Callable[[int], bytes] = os.urandom,
    ) -> None:
        self.config = config
        self.store = store
        self._clock = clock
        self._entropy = entropy
        self._last_maintenance_ms = 0
        self._maintenance_pending = False
        # The in-memory store answers at once, so its steps are driven without awaiting each one (a subclass may
        # await something else and is awaited like any store).
        self._in_memory = RendezvousServer(config, store.memory) if type(store) is EmbeddedStore else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await acknowledge_lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        await write_response(send, await self.answer(scope, receive))

    async def answer(self, scope: Scope, receive: Receive, *, path: str | None = None) -> HttpResponse:
        """The answer to the HTTP request of ``scope`` (its body read through ``receive``), not yet sent.

        ``path``: the request's :func:`route_path`, when the caller has it already.
        """
        request = await read_request(scope, receive, limit=_READ_LIMIT, path=path)
        now_ms = self._clock()
        if self._maintenance_pending or now_ms - self._last_maintenance_ms >= _MAINTAIN_EVERY_MS:
            await self._maintain(now_ms)
        config = self.config
        client = None
        if config.create_limit is not None or config.write_limit is not None:
            peer = scope.get("client")
            client = client_key(peer[0]) if peer else None
        if self._in_memory is not None:
            return self._in_memory.respond(request, now_ms=now_ms, entropy=self._entropy(32), client=client)
        return await respond(config, self.store, request, now_ms=now_ms, entropy=self._entropy(32), client=client)

    async def _maintain(self, now_ms: int) -> None:
        self._last_maintenance_ms = now_ms
        try:
            self._maintenance_pending = await self.store.maintain(now_ms)
        except StoreUnavailableError:
            self._maintenance_pending = False


async def respond(
    config: ServerConfig, store: Store, request: HttpRequest, *, now_ms: int, entropy: bytes, client: str | None
) -> HttpResponse:
    """Answer ``request``: the core's steps, each store operation awaited on ``store``."""
    state = begin(config, request, now_ms=now_ms, entropy=entropy, client=client)
    try:
        while True:
            if isinstance(state, HttpResponse):
                return state
            if isinstance(state, Limiting):
                waited = await store.take(state.kind, state.client, state.limit, now_ms=state.now_ms)
                state = after_limit(state, waited)
            elif isinstance(state, Inserting):
                state = after_insert(state, await store.insert(state.session, now_ms=now_ms, capacity=state.capacity))
            elif isinstance(state, Reading):
                state = after_read(config, state, await store.get(state.step.session_id))
            else:
                attempt = state.prepared
                committed = await store.compare_and_set(attempt.step.session_id, attempt.read, attempt.write)
                state = after_commit(state, committed)
    except StoreUnavailableError:
        return store_unavailable_error()


async def acknowledge_lifespan(receive: Receive, send: Send) -> None:
    """Answer an ASGI ``lifespan`` scope: nothing to start or stop."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def read_request(scope: Scope, receive: Receive, *, limit: int, path: str | None = None) -> HttpRequest:
    """The request of an ASGI ``http`` scope, its body cut at ``limit`` bytes (a larger one is never buffered).

    A ``Content-Length`` over ``limit`` is refused unread: the body stands in as ``limit`` zero bytes, enough for a
    core that checks sizes first to answer 413. ``path``: the scope's :func:`route_path`, when the caller has it.
    """
    headers = tuple([(name.decode("latin-1"), value.decode("latin-1")) for name, value in scope["headers"]])
    declared = None
    for name, value in headers:
        if name == "content-length" or (len(name) == 14 and name.lower() == "content-length"):
            declared = value
            break
    target = route_path(scope) if path is None else path
    if scope.get("query_string"):
        target += "?" + scope["query_string"].decode("latin-1")
    body = b""
    if declared is not None and declared.isdigit() and int(declared) > limit:
        body = b"\0" * limit  # stands in for the refused body: the core answers 413 from its size alone
    else:
        message = await receive()
        if message["type"] != "http.disconnect":
            body = message.get("body", b"")
            if message.get("more_body", False):  # most bodies come in one message; the rest are gathered here
                chunks = [body]
                size = len(body)
                while size <= limit:
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        break
                    chunk = message.get("body", b"")
                    chunks.append(chunk)
                    size += len(chunk)
                    if not message.get("more_body", False):
                        break
                body = b"".join(chunks)
            if len(body) > limit:
                body = body[:limit]
    return build_request(method=scope["method"], target=target, headers=headers, body=body)


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
# Most answers carry one of a few header sets the core declares as constants (CORS, caching, content type;
# qrlogin.http.lowercase_headers): their encoded form is kept, by the constant's identity (a declared set lives for
# good, so its id is never reused). Sets built per answer (ETags, locations) are encoded each time.
_ENCODED_HEADERS: dict[int, list[tuple[bytes, bytes]]] = {}


def _encoded(headers: tuple[tuple[str, str], ...]) -> list[tuple[bytes, bytes]]:
    encoded = _ENCODED_HEADERS.get(id(headers))
    if encoded is not None:
        return encoded.copy()
    encoded = [(name.encode("latin-1"), value.encode("latin-1")) for name, value in headers]
    if is_declared(headers):
        _ENCODED_HEADERS[id(headers)] = encoded.copy()
    return encoded


def response_messages(
    response: HttpResponse, *, extra_headers: Iterable[tuple[bytes, bytes]] = (), head: bool = False
) -> tuple[Message, Message]:
    """The ASGI ``http.response.start`` and ``http.response.body`` messages of ``response``.

    ``Content-Length`` goes on every status that may carry a body (not on 1xx, 204 or 304); ``extra_headers``
    (encoded) follow the response's own; ``head``: the answer to a HEAD request, the length of ``response.body``
    announced and the body itself left out.
    """
    headers = _encoded(response.headers)
    headers.extend(extra_headers)
    status = response.status
    if status >= 200 and status not in _NO_CONTENT:
        headers.append((b"content-length", b"%d" % len(response.body)))
    return (
        {"type": "http.response.start", "status": status, "headers": headers},
        {"type": "http.response.body", "body": b"" if head else response.body},
    )


async def write_response(
    send: Send, response: HttpResponse, *, extra_headers: Iterable[tuple[bytes, bytes]] = (), head: bool = False
) -> None:
    """Send ``response`` (:func:`response_messages`)."""
    start, body = response_messages(response, extra_headers=extra_headers, head=head)
    await send(start)
    await send(body)


def create_app(config: ServerConfig | None = None, store: Store | None = None) -> RendezvousApp:
    """An app over ``store`` (default: a fresh in-memory store) with ``config`` (default: all generations)."""
    return RendezvousApp(config or ServerConfig(), store if store is not None else EmbeddedStore())
