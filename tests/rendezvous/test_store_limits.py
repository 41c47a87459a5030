"""The in-memory store's bounded purge and compaction, the rate limits, and ``create_available`` against POST."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qrlogin.errors import LocalProtocolError
from qrlogin.http import HttpRequest
from qrlogin.rendezvous import ApiGeneration
from qrlogin.rendezvous.limits import LimitKind, RateLimit, client_key, take
from qrlogin.rendezvous.server import (
    PURGE_SLICE,
    V1_V2_UNSTABLE_PREFIX,
    V3_UNSTABLE_PREFIX,
    InMemoryStore,
    RendezvousServer,
    ServerConfig,
    Session,
)


def post_v3(data: str = "x") -> HttpRequest:
    body = json.dumps({"data": data}).encode()
    return HttpRequest(
        method="POST", target=V3_UNSTABLE_PREFIX, headers=(("content-type", "application/json"),), body=body
    )


class TightStore(InMemoryStore):
    """Compacts as soon as the index holds a few more entries than twice the live sessions."""

    COMPACT_SLACK = 4


def session(n: int, expires_ms: int) -> Session:
    return Session(id=f"s{n}", generation=ApiGeneration.V3, prefix=V3_UNSTABLE_PREFIX, data=b"", revision=0, nonce=n,
                   modified_ms=0, expires_ms=expires_ms)  # fmt: skip


operations = st.lists(
    st.one_of(
        st.tuples(st.just("create"), st.integers(1, 50)),  # ttl
        st.tuples(st.just("delete"), st.integers(0, 200)),  # which one (modulo)
        st.tuples(st.just("tick"), st.integers(0, 30)),
        st.tuples(st.just("slice"), st.integers(1, 5)),  # budget
    ),
    max_size=200,
)


@settings(max_examples=200)
@given(operations)
def test_purge_slices_drop_exactly_the_expired_and_keep_the_index_bounded(ops: list[tuple[str, int]]) -> None:
    store = TightStore()
    model: dict[str, int] = {}
    now = 0
    serial = 0
    for op, arg in ops:
        if op == "create":
            serial += 1
            new = session(serial, now + arg)
            assert store.insert(new, now_ms=now, capacity=10_000)
            model[new.id] = new.expires_ms
        elif op == "delete" and model:
            victim = sorted(model)[arg % len(model)]
            assert store.compare_and_set(victim, store.get(victim), None)
            del model[victim]
        elif op == "tick":
            now += arg
        elif op == "slice":
            store.purge_slice(now, budget=arg)
        # A slice may leave expired sessions for later, but never drops a live one.
        for key, expires in model.items():
            if expires > now:
                assert store.get(key) is not None
    dropped = store.purge_expired(now)
    assert dropped >= 0
    live = {key for key, expires in model.items() if expires > now}
    assert {key for key in model if store.get(key) is not None} == live
    assert len(store) == len(live)
    # Everything indexed still expires in order: purging far in the future empties the store.
    store.purge_expired(now + 1_000)
    assert len(store) == 0


def test_a_hundred_thousand_expired_sessions_go_in_slices() -> None:
    store = InMemoryStore()
    for n in range(100_000):
        store.insert(session(n, 1_000 + n // 100), now_ms=0, capacity=200_000)
    dropped, more = store.purge_slice(10**6)
    assert more and dropped == PURGE_SLICE  # one slice, not everything at once
    assert store.purge_expired(10**6) == 100_000 - PURGE_SLICE


def test_take_refills_at_the_rate_and_caps_at_the_burst() -> None:
    limit = RateLimit(per_second=2.0, burst=3)
    tokens, last, waits = 3.0, 0, []
    for now in (0, 0, 0, 0, 100, 500, 10_000, 10_000, 10_000, 10_000):
        tokens, last, wait = take(tokens, last, now, limit)
        waits.append(wait)
    assert waits == [0, 0, 0, 500, 400, 0, 0, 0, 0, 500]
    assert take(0.0, 1_000, 900, limit)[1] == 1_000  # a clock behind the bucket does not refill it backwards


def test_client_key_groups_ipv6_by_64_and_unwraps_mapped_ipv4() -> None:
    assert client_key("2001:db8:1:2:3:4:5:6") == client_key("2001:db8:1:2:ffff::1") == "2001:db8:1:2::/64"
    assert client_key("::ffff:192.0.2.7") == "192.0.2.7"
    assert client_key("192.0.2.7") == "192.0.2.7"
    assert client_key(None) is None and client_key("") is None
    # uvicorn on a Unix socket names the peer by a path or nothing like an address: one bucket per distinct string
    assert client_key("/run/qrlogin.sock") == "/run/qrlogin.sock"
    assert client_key("proxy.internal") == "proxy.internal"


@pytest.mark.parametrize(
    ("per_second", "burst"), [(0.0, 1), (-1.0, 1), (float("nan"), 1), (float("inf"), 1), (1.0, 0), (1.0, -3)]
)
def test_a_rate_limit_that_could_never_refill_or_never_admit_is_refused(per_second: float, burst: int) -> None:
    with pytest.raises(LocalProtocolError):
        RateLimit(per_second=per_second, burst=burst)


def test_creates_and_writes_are_limited_per_client() -> None:
    config = ServerConfig(create_limit=RateLimit(per_second=1.0, burst=2), write_limit=RateLimit(per_second=1, burst=1))
    store = InMemoryStore()
    server = RendezvousServer(config, store)
    answers = [server.respond(post_v3(), now_ms=0, entropy=bytes([n]) * 32, client="a") for n in range(3)]
    assert [a.status for a in answers] == [200, 200, 429]
    refused = json.loads(answers[2].body)
    assert refused["errcode"] == "M_LIMIT_EXCEEDED" and refused["retry_after_ms"] == 1_000
    assert answers[2].header("retry-after") == "1"
    assert len(store) == 2  # the refused create stored nothing
    # Another client has its own bucket; a client left unnamed is not limited; the bucket refills.
    assert server.respond(post_v3(), now_ms=0, entropy=bytes([9]) * 32, client="b").status == 200
    assert server.respond(post_v3(), now_ms=0, entropy=bytes([10]) * 32).status == 200
    assert server.respond(post_v3(), now_ms=1_000, entropy=bytes([11]) * 32, client="a").status == 200
    created = json.loads(answers[0].body)
    path = f"{V3_UNSTABLE_PREFIX}/{created['id']}"

    def put(token: str, data: str, now: int) -> tuple[int, dict[str, object]]:
        body = json.dumps({"sequence_token": token, "data": data}).encode()
        response = server.respond(HttpRequest(method="PUT", target=path, body=body), now_ms=now,
                                  entropy=bytes([20]) * 32, client="a")  # fmt: skip
        return response.status, json.loads(response.body)

    status, first = put(str(created["sequence_token"]), "one", 2_000)
    assert status == 200
    status, second = put(str(first["sequence_token"]), "two", 2_000)
    assert (status, second["errcode"]) == (429, "M_LIMIT_EXCEEDED")
    # Reads are not limited.
    read = server.respond(HttpRequest(method="GET", target=path), now_ms=2_000, entropy=bytes(32), client="a")
    assert json.loads(read.body)["data"] == "one"
    assert store.take(LimitKind.WRITE, "a", config.write_limit or RateLimit(per_second=1, burst=1), now_ms=3_000) == 0


def test_idle_buckets_are_forgotten_and_their_number_is_bounded() -> None:
    store = InMemoryStore(max_buckets=3)
    limit = RateLimit(per_second=10.0, burst=10)
    for client in "abcde":
        store.take(LimitKind.CREATE, client, limit, now_ms=0)
    assert len(store._buckets) == 3
    store.purge_slice(1_000)  # full again after 1 s: forgotten
    assert len(store._buckets) == 0


def test_post_follows_what_discovery_announces() -> None:
    for available in (True, False):
        server = RendezvousServer(ServerConfig(create_available=available), InMemoryStore())
        discovery = server.respond(HttpRequest(method="GET", target=V3_UNSTABLE_PREFIX), now_ms=0, entropy=bytes(32))
        assert json.loads(discovery.body) == {"create_available": available}
        for n, request in enumerate((
            post_v3(),
            HttpRequest(method="POST", target=V1_V2_UNSTABLE_PREFIX, headers=(("content-type", "text/plain"),),
                        body=b"v1"),
        )):  # fmt: skip
            response = server.respond(request, now_ms=0, entropy=bytes([n]) * 32)
            if available:
                assert response.status in (200, 201)
            else:
                assert (response.status, json.loads(response.body)["errcode"]) == (403, "M_FORBIDDEN")
