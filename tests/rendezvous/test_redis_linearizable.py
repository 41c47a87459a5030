"""The linearizability machine of test_linearizable.py, with its two server objects on two Redis clients.

Each server object is one instance with its own connection to one real redis-server, so every ``prepare`` is a Redis
``GET`` and every ``commit`` the compare-and-set script. Hypothesis interleaves them as it does over the in-memory
store, and the same model must hold: every answer is what the sequential model gives at the request's read, no
acknowledged write is lost or applied twice, no token is reused, and Redis holds exactly the model's session.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Coroutine, Iterator
from typing import Any, TypeVar

import pytest
from hypothesis import settings

from qrlogin.adapters.redis_store import RedisStore
from qrlogin.http import HttpRequest
from qrlogin.rendezvous.limits import LimitKind, RateLimit
from qrlogin.rendezvous.server import V3_UNSTABLE_PREFIX, Access, RendezvousServer, ServerConfig, Session, plan
from tests.rendezvous.redis_util import run_redis
from tests.rendezvous.test_linearizable import SharedStoreMachine

pytestmark = pytest.mark.interop

T = TypeVar("T")
_URL: list[str] = []


@pytest.fixture(scope="module", autouse=True)
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    with run_redis(tmp_path_factory.mktemp("redis")) as server:
        _URL.append(server.url)
        yield
        _URL.clear()


class BlockingRedisStore:
    """A :class:`SyncStore` over the Redis store: each operation runs to completion on this object's own loop."""

    def __init__(self, url: str, namespace: str) -> None:
        self.loop = asyncio.new_event_loop()
        self.store = RedisStore.from_url(url, namespace=namespace)

    def _run(self, operation: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(operation)

    def get(self, session_id: str) -> Session | None:
        return self._run(self.store.get(session_id))

    def insert(self, session: Session, *, now_ms: int, capacity: int) -> bool:
        return self._run(self.store.insert(session, now_ms=now_ms, capacity=capacity))

    def compare_and_set(self, session_id: str, expected: Session | None, new: Session | None) -> bool:
        return self._run(self.store.compare_and_set(session_id, expected, new))

    def take(self, kind: LimitKind, client: str, limit: RateLimit, *, now_ms: int) -> int:
        return self._run(self.store.take(kind, client, limit, now_ms=now_ms))

    def close(self) -> None:
        self._run(self.store.close())
        self.loop.close()


class RedisSharedStoreMachine(SharedStoreMachine):
    def __init__(self) -> None:
        super().__init__()
        namespace = f"qrlogin:linearizable:{os.urandom(8).hex()}"
        self.stores = (BlockingRedisStore(_URL[0], namespace), BlockingRedisStore(_URL[0], namespace))
        self.servers = (RendezvousServer(self.config, self.stores[0]), RendezvousServer(self.config, self.stores[1]))

    def teardown(self) -> None:
        for store in self.stores:
            store.close()


RedisSharedStoreMachine.TestCase.settings = settings(max_examples=40, stateful_step_count=30, deadline=None)
TestRedisSharedStore = RedisSharedStoreMachine.TestCase


def access(request: HttpRequest) -> Access:
    step = plan(ServerConfig(), request)
    assert isinstance(step, Access)
    return step


def test_of_two_writes_read_at_one_revision_only_the_first_commits() -> None:
    """The race the machine looks for, spelled out: two instances read one revision, both try to write it."""
    namespace = f"qrlogin:race:{os.urandom(8).hex()}"
    stores = (BlockingRedisStore(_URL[0], namespace), BlockingRedisStore(_URL[0], namespace))
    try:
        one, two = (RendezvousServer(ServerConfig(), store) for store in stores)
        created = json.loads(one.respond(HttpRequest(method="POST", target=V3_UNSTABLE_PREFIX,
                                                     headers=(("content-type", "application/json"),),
                                                     body=b'{"data": "first"}'),
                                         now_ms=0, entropy=bytes(range(32))).body)  # fmt: skip
        path = f"{V3_UNSTABLE_PREFIX}/{created['id']}"
        puts = [HttpRequest(method="PUT", target=path,
                            body=json.dumps({"sequence_token": created["sequence_token"], "data": data}).encode())
                for data in ("second", "third")]  # fmt: skip
        get = HttpRequest(method="GET", target=path)
        read = two.prepare(access(get), get, now_ms=1, entropy=bytes(32))
        first = one.prepare(access(puts[0]), puts[0], now_ms=1, entropy=bytes([1]) * 32)
        second = two.prepare(access(puts[1]), puts[1], now_ms=1, entropy=bytes([2]) * 32)
        assert one.commit(first)
        assert not two.commit(second)  # read a revision that is gone: recomputed, and then a conflict
        assert not two.commit(read)  # a read prepared before the write does not stand after it
        again = two.respond(puts[1], now_ms=2, entropy=bytes([3]) * 32)
        assert again.status == 409
        assert json.loads(two.respond(get, now_ms=2, entropy=bytes(32)).body)["data"] == "second"
    finally:
        for store in stores:
            store.close()
