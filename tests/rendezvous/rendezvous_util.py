"""Shared helpers for the rendezvous tests: a server in memory and a deterministic entropy source."""

from __future__ import annotations

import hashlib
import json
from typing import Any
from urllib.parse import urlsplit

from qrlogin.http import HttpRequest, HttpResponse
from qrlogin.rendezvous import ApiGeneration, client
from qrlogin.rendezvous.server import (
    STABLE_PREFIX,
    V1_V2_UNSTABLE_PREFIX,
    V3_UNSTABLE_PREFIX,
    InMemoryStore,
    RendezvousServer,
    ServerConfig,
    default_mounts,
)
from qrlogin.vocabulary import HttpRequestFailed, HttpResponseReceived, SendHttpRequest

BASE = "http://rdv.test"
PREFIX = {
    ApiGeneration.V1: V1_V2_UNSTABLE_PREFIX,
    ApiGeneration.V2: V1_V2_UNSTABLE_PREFIX,
    ApiGeneration.V3: V3_UNSTABLE_PREFIX,
}
ALL = tuple(ApiGeneration)


class Entropy:
    """Deterministic 32-byte blocks: a counter through SHA-256."""

    def __init__(self, seed: bytes = b"") -> None:
        self.seed = seed
        self.count = 0

    def __call__(self) -> bytes:
        self.count += 1
        return hashlib.sha256(self.seed + self.count.to_bytes(8, "big")).digest()


class Loopback:
    """A RendezvousServer on a virtual clock; ``send`` maps a client's absolute-URL request onto it."""

    def __init__(self, config: ServerConfig | None = None, *, now_ms: int = 1_700_000_000_000) -> None:
        self.config = config or ServerConfig(mounts=default_mounts(stable=ApiGeneration.V3), public_base_url=BASE)
        self.store = InMemoryStore()
        self.server = RendezvousServer(self.config, self.store)
        self.entropy = Entropy()
        self.now_ms = now_ms

    def send(self, request: HttpRequest) -> HttpResponse:
        parts = urlsplit(request.target)
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        local = HttpRequest(method=request.method, target=target, headers=request.headers, body=request.body)
        return self.server.respond(local, now_ms=self.now_ms, entropy=self.entropy())


def json_of(response: HttpResponse) -> Any:
    return json.loads(response.body)


def req(method: str, path: str, body: bytes = b"", /, **headers: str) -> HttpRequest:
    return HttpRequest(
        method=method, target=path, headers=tuple((k.replace("_", "-"), v) for k, v in headers.items()), body=body
    )


def jbody(**fields: object) -> bytes:
    return json.dumps(fields).encode()


__all__ = ["ALL", "BASE", "PREFIX", "STABLE_PREFIX", "Entropy", "Loopback", "jbody", "json_of", "req"]


class Device:
    """Feeds one client machine against a Loopback; records what it surfaced."""

    def __init__(self, net: Loopback, start: tuple[object, tuple[object, ...]]) -> None:
        self.client = client
        self.net = net
        self.state: client.State = start[0]  # type: ignore[assignment]
        self.in_flight: SendHttpRequest | None = None
        self.delivered: list[client.DeliverPayload] = []
        self.confirmed: list[client.ReportWriteConfirmed] = []
        self.rejected: list[client.ReportWriteRejected] = []
        self.created: client.ReportSessionCreated | None = None
        self.ended: client.ReportSessionClosed | client.ReportSessionFailure | None = None
        self.sent: list[HttpRequest] = []
        self.absorb(start[1])

    def absorb(self, effects: tuple[object, ...]) -> None:
        c = self.client
        for effect in effects:
            if isinstance(effect, SendHttpRequest):
                self.in_flight = effect
                self.sent.append(effect.request)
            elif isinstance(effect, c.DeliverPayload):
                self.delivered.append(effect)
            elif isinstance(effect, c.ReportWriteConfirmed):
                self.confirmed.append(effect)
            elif isinstance(effect, c.ReportWriteRejected):
                self.rejected.append(effect)
            elif isinstance(effect, c.ReportSessionCreated):
                self.created = effect
            elif isinstance(effect, c.ReportSessionClosed | c.ReportSessionFailure):
                self.ended = effect

    def feed(self, event: object) -> None:
        self.state, effects = self.client.transition(self.state, event, now_ms=self.net.now_ms)  # type: ignore[arg-type]
        self.absorb(effects)

    def deliver(self, *, lose_response: bool = False) -> HttpResponse | None:
        """Send the in-flight request to the server; optionally lose the response after the server applied it."""
        assert self.in_flight is not None
        effect, self.in_flight = self.in_flight, None
        response = self.net.send(effect.request)
        if lose_response:
            self.feed(HttpRequestFailed(request_id=effect.request_id))
            return None
        self.feed(HttpResponseReceived(request_id=effect.request_id, response=response))
        return response

    def timer(self) -> int | None:
        return self.client.deadline(self.state)
