"""The Redis store against a real redis-server on loopback: two stores over one Redis are two server instances.

Sessions written through one are read, written and deleted through the other; concurrent writers spread over both
produce exactly one winner per round; Redis's TTL expires sessions; the global cap counts live sessions only; the
rate-limit script decides as :func:`qrlogin.rendezvous.limits.take` does; an unreachable or stopped Redis gives a
typed 503 and leaves the stored sessions intact, and the same store object works again once Redis is back.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qrlogin.adapters.asgi import respond
from qrlogin.adapters.redis_store import RedisStore, decode_session, encode_session
from qrlogin.http import HttpRequest, HttpResponse
from qrlogin.rendezvous import ApiGeneration
from qrlogin.rendezvous.limits import LimitKind, RateLimit, take
from qrlogin.rendezvous.server import V1_V2_UNSTABLE_PREFIX, V3_UNSTABLE_PREFIX, ServerConfig, Session, Store
from tests.rendezvous.redis_util import RedisServer, run_redis

pytestmark = pytest.mark.interop


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    with run_redis(tmp_path_factory.mktemp("redis")) as server:
        yield server


class Instance:
    """One server instance in this process: a config and its own Redis client."""

    def __init__(self, url: str, config: ServerConfig, *, timeout_s: float = 2.0) -> None:
        self.config = config
        self.store: Store = RedisStore.from_url(url, timeout_s=timeout_s)

    async def send(self, method: str, target: str, body: Any = None, *, client: str | None = None) -> HttpResponse:
        headers = (("content-type", "application/json"),) if body is not None else ()
        request = HttpRequest(method=method, target=target, headers=headers,
                              body=b"" if body is None else json.dumps(body).encode())  # fmt: skip
        return await respond(self.config, self.store, request, now_ms=time.time_ns() // 1_000_000,
                             entropy=os.urandom(32), client=client)  # fmt: skip


def content(response: HttpResponse) -> Any:
    return json.loads(response.body)


def test_session_encoding_round_trips() -> None:
    session = Session(id="abc", generation=ApiGeneration.V1, prefix=V1_V2_UNSTABLE_PREFIX, data=b"\x00payload",
                      revision=7, nonce=2**128 - 1, modified_ms=5, expires_ms=120_005)  # fmt: skip
    assert decode_session("abc", encode_session(session)) == session


def test_a_session_moves_between_instances(redis_server: RedisServer) -> None:
    async def scenario() -> None:
        one, two = Instance(redis_server.url, ServerConfig()), Instance(redis_server.url, ServerConfig())
        created = content(await one.send("POST", V3_UNSTABLE_PREFIX, {"data": "from one"}))
        path = f"{V3_UNSTABLE_PREFIX}/{created['id']}"
        read = content(await two.send("GET", path))
        assert (read["data"], read["sequence_token"]) == ("from one", created["sequence_token"])
        written = await two.send("PUT", path, {"sequence_token": created["sequence_token"], "data": "from two"})
        assert written.status == 200
        assert content(await one.send("GET", path))["data"] == "from two"
        stale = await one.send("PUT", path, {"sequence_token": created["sequence_token"], "data": "late"})
        assert stale.status == 409
        assert (await one.send("DELETE", path)).status == 200
        assert (await two.send("GET", path)).status == 404
        for instance in (one, two):
            await instance.store.close()

    asyncio.run(scenario())


def test_a_read_is_one_redis_command_and_a_write_two(redis_server: RedisServer) -> None:
    """What a request costs in round trips to Redis, counted by Redis itself (``INFO commandstats``)."""

    async def scenario() -> None:
        instance = Instance(redis_server.url, ServerConfig())
        assert isinstance(instance.store, RedisStore)
        client = instance.store.client
        created = content(await instance.send("POST", V3_UNSTABLE_PREFIX, {"data": "first"}))
        path = f"{V3_UNSTABLE_PREFIX}/{created['id']}"

        async def commands(method: str, body: Any = None) -> dict[str, int]:
            await client.config_resetstat()
            await instance.send(method, path, body)
            stats = await client.info("commandstats")
            return {name.removeprefix("cmdstat_"): int(value["calls"]) for name, value in stats.items()
                    if name not in ("cmdstat_config|resetstat", "cmdstat_config")}  # fmt: skip

        assert await commands("GET") == {"get": 1}
        stale = {"sequence_token": "0.stale", "data": "other"}
        assert await commands("PUT", stale) == {"get": 1}  # a conflict is answered on its read
        written = await commands("PUT", {"sequence_token": created["sequence_token"], "data": "second"})
        # The read, then the compare-and-set script (Redis also counts the GET and SET the script runs).
        assert written == {"get": 2, "evalsha": 1, "set": 1}
        await instance.store.close()

    asyncio.run(scenario())


def test_reads_asked_for_together_go_out_as_one_mget(redis_server: RedisServer) -> None:
    """Reads of one turn of the event loop share one ``MGET``; each gets its own key's value (or None)."""

    async def scenario() -> None:
        instance = Instance(redis_server.url, ServerConfig())
        store = instance.store
        assert isinstance(store, RedisStore)
        ids = [content(await instance.send("POST", V3_UNSTABLE_PREFIX, {"data": f"n{n}"}))["id"] for n in range(3)]
        await store.client.config_resetstat()
        wanted = [*ids, ids[0], "absent"]
        sessions = await asyncio.gather(*(store.get(session_id) for session_id in wanted))
        assert [None if session is None else session.data for session in sessions] == [b"n0", b"n1", b"n2", b"n0", None]
        stats = await store.client.info("commandstats")
        assert {name: int(value["calls"]) for name, value in stats.items() if "config" not in name} == {
            "cmdstat_mget": 1
        }
        await store.close()

    asyncio.run(scenario())


def test_more_requests_than_connections_wait_for_one_rather_than_fail(redis_server: RedisServer) -> None:
    async def scenario() -> None:
        instance = Instance(redis_server.url, ServerConfig())
        instance.store = RedisStore.from_url(redis_server.url, max_connections=2)
        store = instance.store
        assert isinstance(store, RedisStore)
        created = [await instance.send("POST", V3_UNSTABLE_PREFIX, {"data": f"n{n}"}) for n in range(20)]
        before = {client["id"] for client in await store.client.client_list()}
        writes = await asyncio.gather(*(
            instance.send("PUT", f"{V3_UNSTABLE_PREFIX}/{content(response)['id']}",
                          {"sequence_token": content(response)["sequence_token"], "data": "again"})
            for response in created
        ))  # fmt: skip
        assert [response.status for response in writes] == [200] * 20  # redis-py's default pool: "Too many connections"
        opened = {client["id"] for client in await store.client.client_list()} - before
        assert len(opened) <= 1  # one connection served the sequential POSTs; the pool allows one more
        await store.close()

    asyncio.run(scenario())


def test_concurrent_writers_over_two_instances_have_one_winner_per_round(redis_server: RedisServer) -> None:
    async def scenario() -> None:
        instances = [Instance(redis_server.url, ServerConfig()) for _ in range(2)]
        created = content(await instances[0].send("POST", V3_UNSTABLE_PREFIX, {"data": "start"}))
        path = f"{V3_UNSTABLE_PREFIX}/{created['id']}"
        token = created["sequence_token"]
        for round_ in range(10):
            bodies = [{"sequence_token": token, "data": f"r{round_}w{n}"} for n in range(8)]
            answers = await asyncio.gather(*(instances[n % 2].send("PUT", path, body) for n, body in enumerate(bodies)))
            winners = [n for n, answer in enumerate(answers) if answer.status == 200]
            assert len(winners) == 1, [a.status for a in answers]
            assert all(a.status == 409 for n, a in enumerate(answers) if n != winners[0])
            token = content(answers[winners[0]])["sequence_token"]
            stored = content(await instances[1].send("GET", path))
            assert (stored["data"], stored["sequence_token"]) == (bodies[winners[0]]["data"], token)
            assert token.startswith(f"{round_ + 1}.")  # exactly one write per round: the revision counts them
        for instance in instances:
            await instance.store.close()

    asyncio.run(scenario())


def test_redis_ttl_expires_sessions_and_writes_do_not_extend_them(redis_server: RedisServer) -> None:
    async def scenario() -> None:
        instance = Instance(redis_server.url, ServerConfig(ttl_ms=1_000))
        store = instance.store
        assert isinstance(store, RedisStore)
        created = content(await instance.send("POST", V3_UNSTABLE_PREFIX, {"data": "short"}))
        key = store.session_key(created["id"])
        first_ttl = await store.client.pttl(key)
        assert 0 < first_ttl <= 1_000
        await asyncio.sleep(0.2)
        path = f"{V3_UNSTABLE_PREFIX}/{created['id']}"
        written = await instance.send("PUT", path, {"sequence_token": created["sequence_token"], "data": "again"})
        assert written.status == 200
        assert 0 < await store.client.pttl(key) <= first_ttl - 100
        await asyncio.sleep(1.0)
        assert await store.client.exists(key) == 0  # Redis removed it; no request touched it
        assert (await instance.send("GET", path)).status == 404
        await store.close()

    asyncio.run(scenario())


def test_the_global_cap_counts_live_sessions_only(redis_server: RedisServer) -> None:
    async def scenario() -> None:
        instance = Instance(redis_server.url, ServerConfig(ttl_ms=1_000, max_sessions=3))
        store = instance.store
        assert isinstance(store, RedisStore)
        await store.client.flushdb()
        statuses = [(await instance.send("POST", V3_UNSTABLE_PREFIX, {"data": "x"})).status for _ in range(4)]
        assert statuses == [200, 200, 200, 429]
        await asyncio.sleep(1.1)
        assert (await instance.send("POST", V3_UNSTABLE_PREFIX, {"data": "x"})).status == 200
        now_ms = time.time_ns() // 1_000_000
        assert await store.live_sessions(now_ms) == 1
        assert await store.maintain(now_ms) is False  # the three expired members went in one slice
        assert await store.client.zcard(f"{store.namespace}:expiry") == 1
        await store.close()

    asyncio.run(scenario())


@settings(max_examples=25)
@given(
    steps=st.lists(st.integers(0, 700), min_size=1, max_size=30),
    per_second=st.sampled_from([0.5, 3.0, 7.5, 100.0]),
    burst=st.integers(1, 5),
)
def test_the_bucket_script_decides_as_take_does(
    redis_server: RedisServer, steps: list[int], per_second: float, burst: int
) -> None:
    limit = RateLimit(per_second=per_second, burst=burst)

    async def scenario() -> list[int]:
        store = RedisStore.from_url(redis_server.url, namespace=f"qrlogin:test:{os.urandom(8).hex()}")
        now, waits = 1_700_000_000_000, []
        for step in steps:
            now += step
            waits.append(await store.take(LimitKind.CREATE, "client", limit, now_ms=now))
        await store.close()
        return waits

    expected, tokens, last, now = [], float(burst), 1_700_000_000_000, 1_700_000_000_000
    for step in steps:
        now += step
        tokens, last, wait = take(tokens, last, now, limit)
        expected.append(wait)
    assert asyncio.run(scenario()) == expected


def test_rate_limits_are_shared_across_instances(redis_server: RedisServer) -> None:
    config = ServerConfig(create_limit=RateLimit(per_second=0.5, burst=2))

    async def scenario() -> None:
        one, two = Instance(redis_server.url, config), Instance(redis_server.url, config)
        client = f"198.51.100.{os.urandom(1)[0]}"
        answers = [await (one, two)[n % 2].send("POST", V3_UNSTABLE_PREFIX, {"data": "x"}, client=client)
                   for n in range(3)]  # fmt: skip
        assert [a.status for a in answers] == [200, 200, 429]
        refused = content(answers[2])
        assert refused["errcode"] == "M_LIMIT_EXCEEDED" and 1_000 < refused["retry_after_ms"] <= 2_000
        other = await one.send("POST", V3_UNSTABLE_PREFIX, {"data": "x"}, client="203.0.113.1")
        assert other.status == 200
        for instance in (one, two):
            await instance.store.close()

    asyncio.run(scenario())


def test_redis_unreachable_or_stopped_gives_503_and_the_store_recovers(
    tmp_path: Path,
) -> None:
    with run_redis(tmp_path) as server:

        async def scenario() -> None:
            instance = Instance(server.url, ServerConfig(), timeout_s=0.3)
            created = content(await instance.send("POST", V3_UNSTABLE_PREFIX, {"data": "kept"}))
            path = f"{V3_UNSTABLE_PREFIX}/{created['id']}"
            assert server.process is not None
            # Unreachable: the process is frozen, so connections hang until the timeout.
            os.kill(server.process.pid, signal.SIGSTOP)
            try:
                put = await instance.send("PUT", path, {"sequence_token": created["sequence_token"], "data": "lost"})
            finally:
                os.kill(server.process.pid, signal.SIGCONT)
            assert (put.status, content(put)["errcode"], put.header("retry-after")) == (503, "M_UNKNOWN", "1")
            read = content(await instance.send("GET", path))
            # Nothing half-written: either the write landed whole (its answer was lost) or not at all.
            assert read["data"] in ("kept", "lost")
            assert read["sequence_token"] == created["sequence_token"] or read["data"] == "lost"
            # Stopped: refused connections, the same typed answer for every kind of request.
            server.stop()
            for method, target, body in (("POST", V3_UNSTABLE_PREFIX, {"data": "x"}), ("GET", path, None)):
                answer = await instance.send(method, target, body)
                assert (answer.status, content(answer)["errcode"]) == (503, "M_UNKNOWN")
            # Reads asked for together share one MGET; when it fails, each of them gets the 503.
            other = f"{V3_UNSTABLE_PREFIX}/absent"
            answers = await asyncio.gather(*(instance.send("GET", target) for target in (path, other, path)))
            assert [answer.status for answer in answers] == [503, 503, 503]
            # Back again (empty: no persistence): the same store object serves without a restart.
            server.start()
            again = await instance.send("POST", V3_UNSTABLE_PREFIX, {"data": "after"})
            assert again.status == 200
            assert (
                content(await instance.send("GET", f"{V3_UNSTABLE_PREFIX}/{content(again)['id']}"))["data"] == "after"
            )
            await instance.store.close()

        asyncio.run(scenario())
