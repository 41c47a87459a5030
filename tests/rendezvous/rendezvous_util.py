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
from tests.harness import Harness, Party

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
    """A RendezvousServer on a virtual clock; ``send`` maps a client's absolute-URL request onto it.

    The clock is the one of ``harness``, on which each :class:`Device` is a party: the server and the clients see
    the same time, and a test moves it by setting ``now_ms``."""

    def __init__(self, config: ServerConfig | None = None, *, now_ms: int = 1_700_000_000_000) -> None:
        self.config = config or ServerConfig(mounts=default_mounts(stable=ApiGeneration.V3), public_base_url=BASE)
        self.store = InMemoryStore()
        self.server = RendezvousServer(self.config, self.store)
        self.entropy = Entropy()
        self.harness = Harness([], self._route, now_ms=now_ms)
        self.devices: dict[str, Device] = {}

    def _route(self, sender: str, effect: object) -> tuple[()]:
        """A request waits in its device's ``in_flight`` until the test delivers it; nothing else goes anywhere."""
        if isinstance(effect, SendHttpRequest):
            self.devices[sender].in_flight = effect
        return ()

    @property
    def now_ms(self) -> int:
        return self.harness.now_ms

    @now_ms.setter
    def now_ms(self, value: int) -> None:
        self.harness.now_ms = value

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
    """One client machine, a party on its Loopback's harness; the test delivers its requests one at a time.

    What the machine surfaced is read from the party's record of effects; ``in_flight`` is the request last asked
    for and not yet delivered."""

    def __init__(self, net: Loopback, start: tuple[client.State, tuple[object, ...]]) -> None:
        self.net = net
        self.name = f"client {len(net.harness.parties)}"
        self.party = Party(self.name, None, client.transition, client.deadline)
        net.harness.parties[self.name] = self.party
        net.devices[self.name] = self
        self.in_flight: SendHttpRequest | None = None
        net.harness.start(self.name, start)

    @property
    def state(self) -> client.State:
        state: client.State = self.party.state
        return state

    @property
    def sent(self) -> list[HttpRequest]:
        return [effect.request for effect in self.party.of_type(SendHttpRequest)]

    @property
    def delivered(self) -> list[client.DeliverPayload]:
        return self.party.of_type(client.DeliverPayload)

    @property
    def confirmed(self) -> list[client.ReportWriteConfirmed]:
        return self.party.of_type(client.ReportWriteConfirmed)

    @property
    def rejected(self) -> list[client.ReportWriteRejected]:
        return self.party.of_type(client.ReportWriteRejected)

    @property
    def created(self) -> client.ReportSessionCreated | None:
        created = self.party.of_type(client.ReportSessionCreated)
        return created[-1] if created else None

    @property
    def ended(self) -> client.ReportSessionClosed | client.ReportSessionFailure | None:
        ended = [
            e for e in self.party.effects if isinstance(e, client.ReportSessionClosed | client.ReportSessionFailure)
        ]
        return ended[-1] if ended else None

    def feed(self, event: object) -> None:
        self.net.harness.feed(self.name, event)

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
        return client.deadline(self.state)
