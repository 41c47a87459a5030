"""When an answer needs the store's confirmation, and when its read alone is enough.

``RendezvousServer.commit`` serves a caller that holds a prepared attempt for as long as it likes, so even a read
prepared before a concurrent write and committed after it is refused there, never answered stale (found by
tests/rendezvous/test_linearizable.py when commit accepted every attempt that wrote nothing without looking). A
request answered at once (``respond``, the ASGI driver) stands a read-only answer on its read: one store operation.
"""

from __future__ import annotations

import json

from qrlogin.http import HttpRequest
from qrlogin.rendezvous.limits import LimitKind, RateLimit
from qrlogin.rendezvous.server import (
    V3_UNSTABLE_PREFIX,
    Access,
    InMemoryStore,
    RendezvousServer,
    ServerConfig,
    Session,
    plan,
)


def test_stale_read_is_not_committed() -> None:
    server = RendezvousServer(ServerConfig(), InMemoryStore())
    created = server.respond(
        HttpRequest(method="POST", target=V3_UNSTABLE_PREFIX, headers=(("content-type", "application/json"),),
                body=b'{"data":"first"}'),
        now_ms=0, entropy=bytes(range(32)),
    )  # fmt: skip
    content = json.loads(created.body)
    target = f"{V3_UNSTABLE_PREFIX}/{content['id']}"
    get = HttpRequest(method="GET", target=target)
    put = HttpRequest(
        method="PUT", target=target, headers=(("content-type", "application/json"),),
        body=json.dumps({"sequence_token": content["sequence_token"], "data": "second"}).encode(),
    )  # fmt: skip
    get_step, put_step = plan(server.config, get), plan(server.config, put)
    assert isinstance(get_step, Access) and isinstance(put_step, Access)
    read = server.prepare(get_step, get, now_ms=1, entropy=bytes(32))
    write = server.prepare(put_step, put, now_ms=1, entropy=bytes([1]) * 32)
    assert server.commit(write)
    assert not server.commit(read)  # the session changed since the read: the caller must prepare again
    again = server.prepare(get_step, get, now_ms=2, entropy=bytes(32))
    assert server.commit(again) and json.loads(again.response.body)["data"] == "second"
    assert json.loads(server.respond(get, now_ms=3, entropy=bytes(32)).body)["data"] == "second"


class CountingStore:
    """An in-memory store that records which operations a request asked of it."""

    def __init__(self) -> None:
        self.memory = InMemoryStore()
        self.calls: list[str] = []

    def get(self, session_id: str) -> Session | None:
        self.calls.append("get")
        return self.memory.get(session_id)

    def insert(self, session: Session, *, now_ms: int, capacity: int) -> bool:
        self.calls.append("insert")
        return self.memory.insert(session, now_ms=now_ms, capacity=capacity)

    def compare_and_set(self, session_id: str, expected: Session | None, new: Session | None) -> bool:
        self.calls.append("compare_and_set")
        return self.memory.compare_and_set(session_id, expected, new)

    def take(self, kind: LimitKind, client: str, limit: RateLimit, *, now_ms: int) -> int:
        self.calls.append("take")
        return self.memory.take(kind, client, limit, now_ms=now_ms)


def test_an_answer_that_writes_nothing_is_one_read_and_a_write_is_read_and_compare_and_set() -> None:
    store = CountingStore()
    server = RendezvousServer(ServerConfig(), store)
    json_headers = (("content-type", "application/json"),)
    created = json.loads(server.respond(
        HttpRequest(method="POST", target=V3_UNSTABLE_PREFIX, headers=json_headers, body=b'{"data":"first"}'),
        now_ms=0, entropy=bytes(range(32)),
    ).body)  # fmt: skip
    target = f"{V3_UNSTABLE_PREFIX}/{created['id']}"

    def calls(method: str, body: dict[str, str] | None = None, *, at: str = target) -> tuple[int, list[str]]:
        store.calls.clear()
        request = HttpRequest(method=method, target=at, headers=json_headers if body else (),
                              body=json.dumps(body).encode() if body else b"")  # fmt: skip
        return server.respond(request, now_ms=1, entropy=bytes([7]) * 32).status, list(store.calls)

    assert calls("GET") == (200, ["get"])
    assert calls("GET", at=f"{V3_UNSTABLE_PREFIX}/absent") == (404, ["get"])
    stale = {"sequence_token": "0.stale", "data": "other"}
    assert calls("PUT", stale) == (409, ["get"])
    write = {"sequence_token": created["sequence_token"], "data": "second"}
    assert calls("PUT", write) == (200, ["get", "compare_and_set"])
    assert calls("PUT", write) == (200, ["get"])  # v3: the identical retry is acknowledged, nothing is written
    assert calls("DELETE") == (200, ["get", "compare_and_set"])
    assert calls("GET") == (404, ["get"])
