"""Run the rendezvous client machine over HTTP with httpx.

Theory of operation
-------------------
:class:`RendezvousSession` owns one :class:`~qrlogin._machine.Driver` around
:func:`qrlogin.rendezvous.client.transition` and does exactly what its effects say: a ``SendHttpRequest`` becomes one
``httpx.AsyncClient.request`` whose response (or transport error, as ``HttpRequestFailed``) is fed straight back; when
nothing is in flight it sleeps until :func:`~qrlogin.rendezvous.client.deadline` and feeds ``TimerFired``. The
time it passes in is Unix milliseconds from :mod:`qrlogin.adapters.clock` (v2 servers give an absolute
``expires_ts``). Everything the
machine surfaces is queued and handed out by :meth:`receive` and :meth:`send`; a terminal state raises
:class:`RendezvousEnded`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque

import httpx

from .._machine import Driver
from ..errors import QrLoginError
from ..http import HttpResponse
from ..rendezvous import client as machine
from ..vocabulary import HttpRequestFailed, HttpResponseReceived, SendHttpRequest, TimerFired
from .clock import unix_ms

__all__ = ["RendezvousEnded", "RendezvousSession"]


class RendezvousEnded(QrLoginError):
    """The session is over: deleted, gone (404), past its deadline, or the server broke the protocol."""

    def __init__(self, effect: machine.ReportSessionClosed | machine.ReportSessionFailure) -> None:
        self.effect = effect
        detail = f": {effect.detail}" if isinstance(effect, machine.ReportSessionFailure) else ""
        super().__init__(f"rendezvous session ended ({effect.reason}{detail})")


class RendezvousSession:
    """One device's side of a rendezvous session over httpx."""

    def __init__(self, http: httpx.AsyncClient, start: machine.Result) -> None:
        state, effects = start
        self._http = http
        self._driver: Driver[machine.State, machine.Event, machine.Effect] = Driver(state, machine.transition)
        self._effects: deque[machine.Effect] = deque(effects)
        self._surfaced: deque[machine.Effect] = deque()
        self.created: machine.ReportSessionCreated | None = None

    @classmethod
    async def create(cls, http: httpx.AsyncClient, config: machine.ClientConfig, payload: str) -> RendezvousSession:
        """POST ``payload`` and return once the session exists (``.created`` says where)."""
        session = cls(http, machine.create_session(config, payload, now_ms=unix_ms()))
        await session._until(machine.ReportWriteConfirmed)
        return session

    @classmethod
    def join(cls, http: httpx.AsyncClient, config: machine.ClientConfig, session: str) -> RendezvousSession:
        """Join ``session`` (v1 URL or v2/v3 id); the first :meth:`receive` returns the creator's payload."""
        return cls(http, machine.join_session(config, session, now_ms=unix_ms()))

    @property
    def state(self) -> machine.State:
        return self._driver.state

    async def receive(self) -> machine.DeliverPayload:
        """Wait for the peer's next payload."""
        effect = await self._until(machine.DeliverPayload)
        assert isinstance(effect, machine.DeliverPayload)
        return effect

    async def send(self, payload: str) -> machine.ReportWriteConfirmed | machine.ReportWriteRejected:
        """Write ``payload``; WriteRejected means the peer wrote first (its payload is next from receive())."""
        self._feed(machine.SendRequested(payload=payload))
        effect = await self._until(machine.ReportWriteConfirmed, machine.ReportWriteRejected)
        assert isinstance(effect, machine.ReportWriteConfirmed | machine.ReportWriteRejected)
        return effect

    async def close(self) -> None:
        """DELETE the session (best effort) unless it is already over."""
        if machine.is_finished(self.state):
            return
        self._feed(machine.CloseRequested())
        with contextlib.suppress(RendezvousEnded):
            await self._until(machine.ReportSessionClosed)

    def _feed(self, event: machine.Event) -> None:
        self._effects.extend(self._driver.handle(event, now_ms=unix_ms()))

    async def _until(self, *kinds: type) -> machine.Effect:
        while True:
            for index, effect in enumerate(self._surfaced):
                if isinstance(effect, kinds):
                    del self._surfaced[index]
                    return effect
            if self._effects:
                await self._perform(self._effects.popleft())
                continue
            if machine.is_finished(self.state):
                ended = next(
                    (
                        e
                        for e in self._surfaced
                        if isinstance(e, machine.ReportSessionClosed | machine.ReportSessionFailure)
                    ),
                    None,
                )
                if ended is None:
                    raise RendezvousEnded(machine.ReportSessionClosed(reason="ended"))
                raise RendezvousEnded(ended)
            timer = machine.deadline(self.state)
            if timer is None:
                raise RendezvousEnded(machine.ReportSessionClosed(reason="ended"))
            await asyncio.sleep(max(0, timer - unix_ms()) / 1000)
            self._feed(TimerFired())

    async def _perform(self, effect: machine.Effect) -> None:
        if not isinstance(effect, SendHttpRequest):
            if isinstance(effect, machine.ReportSessionCreated):
                self.created = effect
            self._surfaced.append(effect)
            return
        request = effect.request
        try:
            answer = await self._http.request(
                request.method, request.target, headers=list(request.headers), content=request.body
            )
        except httpx.HTTPError:
            self._feed(HttpRequestFailed(request_id=effect.request_id))
            return
        response = HttpResponse(status=answer.status_code, headers=tuple(answer.headers.items()), body=answer.content)
        self._feed(HttpResponseReceived(request_id=effect.request_id, response=response))
