"""An ASGI application serving the pure homeserver model (:mod:`qrlogin.homeserver`).

Theory of operation
-------------------
The app holds one :class:`~qrlogin.homeserver.Homeserver` value. Each HTTP request is read into a plain
:class:`~qrlogin.http.HttpRequest` (the body cut one byte past the model's limit, so the model answers 413 without
the server buffering more), answered by one :func:`~qrlogin.homeserver.handle` step with ``now_ms`` from the wall
clock, and written back. The step, and the optional ``after`` hook that may act on its outcome (for instance a
simulated user approving a device authorization), run under one lock, so requests are answered one at a time in
the order they take it; :meth:`HomeserverApp.update` takes the same lock for changes from outside a request.

Nothing here decides anything about the protocol: every answer is the model's.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar

from ..homeserver import Homeserver, handle
from ..homeserver._http import MAX_BODY_BYTES
from ..http import HttpRequest, HttpResponse
from .asgi import Receive, Scope, Send, acknowledge_lifespan, read_request, write_response
from .clock import unix_ms

__all__ = ["AfterStep", "HomeserverApp"]

# Called under the lock with the homeserver after a step, the request, its response and the step's time.
AfterStep = Callable[[Homeserver, HttpRequest, HttpResponse, int], Homeserver]


T = TypeVar("T")


class HomeserverApp:
    """``await app(scope, receive, send)``: HTTP requests go to the homeserver model; lifespan is acknowledged."""

    def __init__(self, hs: Homeserver, *, clock: Callable[[], int] = unix_ms, after: AfterStep | None = None) -> None:
        self._hs = hs
        self._clock = clock
        self._after = after
        self._lock = threading.Lock()

    @property
    def hs(self) -> Homeserver:
        """The current homeserver value."""
        with self._lock:
            return self._hs

    def update(self, change: Callable[[Homeserver, int], tuple[Homeserver, T]]) -> T:
        """Replace the homeserver by the first part of ``change(hs, now_ms)``, between requests; return the second."""
        with self._lock:
            self._hs, result = change(self._hs, self._clock())
        return result

    def respond(self, request: HttpRequest) -> HttpResponse:
        """One ``handle`` step (and the ``after`` hook) under the lock."""
        with self._lock:
            now_ms = self._clock()
            hs, response = handle(self._hs, request, now_ms=now_ms)
            if self._after is not None:
                hs = self._after(hs, request, response, now_ms)
            self._hs = hs
        return response

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await acknowledge_lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        request = await read_request(scope, receive, limit=MAX_BODY_BYTES + 1)
        await write_response(send, self.respond(request))
