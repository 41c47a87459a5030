"""A rendezvous session store in Redis, shared by every ``qrlogin serve`` instance pointed at it.

Theory of operation
-------------------
The core (:mod:`qrlogin.rendezvous.server`) asks a store for four things: read a session, insert a new one unless
the deployment holds ``capacity`` live sessions, compare-and-set from the session it read to the one it computed,
and take a token from a client's rate-limit bucket. Here each is one Redis command or one server-side Lua script, so
each is atomic across all instances (Redis runs a script to the end before anything else), and the core's retry
loop on a lost compare-and-set gives linearizable sessions across instances exactly as it does in one process.

Keys, under a namespace (default ``qrlogin:rendezvous``):

* ``{ns}:s:{id}``: the session, one binary string: revision (8 bytes) and token nonce (16 bytes) first, then the
  generation (1), modification and expiry times (8 + 8), the mount prefix (2-byte length + text) and the payload.
  The first 24 bytes name the revision, which is what the compare-and-set compares (the token is derived from them
  and is unique per write). Written with ``PX`` = the time left at creation and later with ``KEEPTTL``: Redis's
  own expiry removes it when its time is up, and a write never extends it.
* ``{ns}:expiry``: a sorted set of session ids by expiry time. ``ZCOUNT`` over the scores after now is the number of
  live sessions, in O(log n), for the global cap; members of expired sessions are removed in slices of at most
  :data:`TRIM_SLICE` by :meth:`RedisStore.maintain` (each instance runs it about once a second), never all at once.
* ``{ns}:b:{kind}:{client}``: a rate-limit bucket, a hash of ``t`` (tokens) and ``l`` (last time, ms), with a TTL
  of the time it takes to fill again (a bucket that is gone is full). The script is the arithmetic of
  :func:`qrlogin.rendezvous.limits.take`, in the same IEEE doubles.

Failure: any connection error, timeout or unexpected reply becomes
:class:`~qrlogin.rendezvous.server.StoreUnavailableError`, which the ASGI app answers with ``503 M_UNKNOWN`` and
``Retry-After``. Nothing is half-written: every change is one script. A command whose reply was lost may have been
applied; the client's retry then meets the protocol's own answers (v3 acknowledges an identical retry; v1/v2 answer
a conflict, after which the client re-reads and finds its write). redis-py reconnects on the next command, and
scripts are loaded again if a restarted Redis lost them, so an instance recovers without a restart. A command is
retried once on a fresh connection (after Redis restarts, pooled connections are dead) and waits at most
``timeout_s`` per try. The connections are a bounded pool (:data:`DEFAULT_MAX_CONNECTIONS`): under a flood a
request waits for a free connection (up to ``timeout_s``) instead of opening one more or failing at once.

Reads are coalesced: the reads an instance's requests ask for in one turn of the event loop go out as one
``MGET`` (a single key as ``GET``), on one connection, and each request gets its own key's value. That saves the
per-command cost in redis-py and in Redis that dominates a polled session, and costs no round trip: the batch leaves
on the next turn of the loop. It keeps reads linearizable: ``MGET`` reads every key at one instant, which comes
after each request of the batch asked for its read and before any of them gets its answer, so each observes a
committed value at one instant of its own interval (the core's argument for one read, in
:mod:`qrlogin.rendezvous.server`). Writes are never batched: each is its own compare-and-set script.

The time in the scripts is the instance's ``now_ms``, as in one process; Redis's TTL uses Redis's clock, which
only matters to the second for sessions that live minutes. Every key of a deployment lives on one Redis (a primary,
with replicas or Sentinel as the operator likes); a Redis Cluster would need the keys in one hash slot.
"""

from __future__ import annotations

import asyncio
import struct
from typing import Any, Final, TypeAlias

import redis.asyncio
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from ..errors import LocalProtocolError
from ..rendezvous._http import ApiGeneration
from ..rendezvous.limits import LimitKind, RateLimit, idle_ms
from ..rendezvous.server import Session, StoreUnavailableError

__all__ = [
    "DEFAULT_MAX_CONNECTIONS",
    "DEFAULT_NAMESPACE",
    "TRIM_SLICE",
    "RedisStore",
    "decode_session",
    "encode_session",
]

DEFAULT_NAMESPACE = "qrlogin:rendezvous"
DEFAULT_MAX_CONNECTIONS = 32
TRIM_SLICE = 1_000

_Arg: TypeAlias = bytes | str | int | float
_GENERATIONS: Final = tuple(ApiGeneration)
_HEAD = struct.Struct(">Q16sBqqH")  # revision, nonce, generation, modified_ms, expires_ms, prefix length
_REVISION_BYTES = 24  # revision + nonce: what names a revision

_INSERT = """
-- KEYS: session, expiry index. ARGV: value, ttl ms, expires ms, now ms, capacity, id
if redis.call('ZCOUNT', KEYS[2], '(' .. ARGV[4], '+inf') >= tonumber(ARGV[5]) then return 0 end
if not redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2], 'NX') then return 0 end
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[6])
return 1
"""

_COMPARE_AND_SET = """
-- KEYS: session, expiry index. ARGV: expected revision ('' = absent), mode (keep/set/del), value, id, ttl, expires
local current = redis.call('GET', KEYS[1])
if ARGV[1] == '' then
  if current then return 0 end
elseif not current or string.sub(current, 1, 24) ~= ARGV[1] then
  return 0
end
if ARGV[2] == 'keep' then return 1 end
if ARGV[2] == 'del' then
  redis.call('DEL', KEYS[1])
  redis.call('ZREM', KEYS[2], ARGV[4])
  return 1
end
if current then
  redis.call('SET', KEYS[1], ARGV[3], 'KEEPTTL')
else
  redis.call('SET', KEYS[1], ARGV[3], 'PX', ARGV[5])
  redis.call('ZADD', KEYS[2], ARGV[6], ARGV[4])
end
return 1
"""

_TAKE = """
-- KEYS: bucket. ARGV: now ms, per second, burst, idle ms. Returns 0 (taken) or the wait in ms.
local now, rate, burst = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local stored = redis.call('HMGET', KEYS[1], 't', 'l')
local tokens = tonumber(stored[1]) or burst
local last = tonumber(stored[2]) or now
if now > last then
  tokens = math.min(burst, tokens + (now - last) * rate / 1000.0)
  last = now
end
local wait = 0
if tokens >= 1.0 then
  tokens = tokens - 1.0
else
  wait = math.max(1, math.ceil((1.0 - tokens) * 1000.0 / rate))
end
redis.call('HSET', KEYS[1], 't', string.format('%.17g', tokens), 'l', string.format('%d', last))
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return wait
"""

_TRIM = """
-- KEYS: expiry index. ARGV: now ms, slice. Returns how many expired members went.
local expired = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
if #expired > 0 then redis.call('ZREM', KEYS[1], unpack(expired)) end
return #expired
"""


def encode_session(session: Session) -> bytes:
    """The stored form of ``session`` (its first 24 bytes name its revision)."""
    prefix = session.prefix.encode("utf-8")
    head = _HEAD.pack(
        session.revision,
        session.nonce.to_bytes(16, "big"),
        _GENERATIONS.index(session.generation),
        session.modified_ms,
        session.expires_ms,
        len(prefix),
    )
    return head + prefix + session.data


def decode_session(session_id: str, raw: bytes) -> Session:
    """The session stored under ``session_id``; :class:`StoreUnavailableError` if the bytes are not one."""
    try:
        revision, nonce, generation, modified_ms, expires_ms, prefix_length = _HEAD.unpack_from(raw)
        start = _HEAD.size + prefix_length
        return Session(
            id=session_id,
            generation=_GENERATIONS[generation],
            prefix=raw[_HEAD.size : start].decode("utf-8"),
            data=raw[start:],
            revision=revision,
            nonce=int.from_bytes(nonce, "big"),
            modified_ms=modified_ms,
            expires_ms=expires_ms,
        )
    except (struct.error, IndexError, UnicodeDecodeError) as exc:
        raise StoreUnavailableError(f"session {session_id!r} in Redis is not a stored session") from exc


def _revision(session: Session) -> bytes:
    return encode_session(session)[:_REVISION_BYTES]


class RedisStore:
    """The awaitable :class:`~qrlogin.rendezvous.server.Store` over a Redis (redis-py's asyncio client)."""

    def __init__(self, client: redis.asyncio.Redis, *, namespace: str = DEFAULT_NAMESPACE) -> None:
        self.client = client
        self.namespace = namespace
        self._index_key = f"{namespace}:expiry"
        self._insert = client.register_script(_INSERT)
        self._compare_and_set = client.register_script(_COMPARE_AND_SET)
        self._take = client.register_script(_TAKE)
        self._trim = client.register_script(_TRIM)
        self._batch: dict[str, list[asyncio.Future[bytes | None]]] = {}  # reads waiting for the next MGET
        self._reading: set[asyncio.Task[None]] = set()  # the MGETs in flight (held so they are not collected)

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        namespace: str = DEFAULT_NAMESPACE,
        timeout_s: float = 2.0,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
    ) -> RedisStore:
        """A store on the Redis at ``url`` (``redis://HOST:PORT/DB``, ``rediss://`` or ``unix://``).

        At most ``max_connections`` commands are in flight at once; a request that finds them all busy waits up to
        ``timeout_s`` for one (redis-py's default pool would fail it at once), then gets a 503.
        """
        if not url.startswith(("redis://", "rediss://", "unix://")):
            raise LocalProtocolError(f"not a Redis URL (redis://HOST:PORT/DB): {url!r}")
        try:
            pool = redis.asyncio.BlockingConnectionPool.from_url(
                url,
                max_connections=max_connections,
                timeout=timeout_s,
                socket_timeout=timeout_s,
                socket_connect_timeout=timeout_s,
                retry=Retry(NoBackoff(), 1),
                health_check_interval=30,
            )
        except ValueError as exc:
            raise LocalProtocolError(f"not a usable Redis URL: {exc}") from exc
        return cls(redis.asyncio.Redis.from_pool(pool), namespace=namespace)

    def session_key(self, session_id: str) -> str:
        return f"{self.namespace}:s:{session_id}"

    async def _call(self, operation: Any) -> Any:
        try:
            return await operation
        except (RedisError, OSError) as exc:
            raise StoreUnavailableError(f"Redis: {type(exc).__name__}: {exc}") from exc

    async def get(self, session_id: str) -> Session | None:
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[bytes | None] = loop.create_future()
        if not self._batch:
            loop.call_soon(self._send_batch)  # after the callbacks already due: their reads join this batch
        self._batch.setdefault(self.session_key(session_id), []).append(waiter)
        raw = await waiter
        return None if raw is None else decode_session(session_id, raw)

    def _send_batch(self) -> None:
        batch, self._batch = self._batch, {}
        task = asyncio.get_running_loop().create_task(self._read_batch(batch))
        self._reading.add(task)
        task.add_done_callback(self._reading.discard)

    async def _read_batch(self, batch: dict[str, list[asyncio.Future[bytes | None]]]) -> None:
        keys = list(batch)
        try:
            if len(keys) == 1:
                values = [await self._call(self.client.get(keys[0]))]
            else:
                values = await self._call(self.client.mget(keys))
                if not isinstance(values, list) or len(values) != len(keys):
                    raise StoreUnavailableError(f"Redis: MGET of {len(keys)} keys answered {values!r:.80}")
        except BaseException as exc:
            # Every reader of the batch learns what its own command would have raised; a batch cancelled (at
            # shutdown) leaves its readers a StoreUnavailableError rather than waiting forever.
            failure = exc if isinstance(exc, Exception) else StoreUnavailableError(f"Redis: read interrupted: {exc!r}")
            for waiters in batch.values():
                for waiter in waiters:
                    if not waiter.done():
                        waiter.set_exception(failure)
            if failure is not exc:
                raise
            return
        for value, waiters in zip(values, batch.values(), strict=True):
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(value)

    async def insert(self, session: Session, *, now_ms: int, capacity: int) -> bool:
        ttl_ms = max(1, session.expires_ms - now_ms)
        keys = [self.session_key(session.id), self._index_key]
        args: list[_Arg] = [encode_session(session), ttl_ms, session.expires_ms, now_ms, capacity, session.id]
        return bool(await self._call(self._insert(keys=keys, args=args)))

    async def compare_and_set(self, session_id: str, expected: Session | None, new: Session | None) -> bool:
        expected_revision = b"" if expected is None else _revision(expected)
        keys = [self.session_key(session_id), self._index_key]
        if new is expected:
            args: list[_Arg] = [expected_revision, "keep", b"", session_id, 0, 0]
        elif new is None:
            args = [expected_revision, "del", b"", session_id, 0, 0]
        else:
            ttl_ms = max(1, new.expires_ms - new.modified_ms)
            args = [expected_revision, "set", encode_session(new), session_id, ttl_ms, new.expires_ms]
        return bool(await self._call(self._compare_and_set(keys=keys, args=args)))

    async def take(self, kind: LimitKind, client: str, limit: RateLimit, *, now_ms: int) -> int:
        key = f"{self.namespace}:b:{kind.value}:{client}"
        args: list[_Arg] = [now_ms, repr(limit.per_second), limit.burst, idle_ms(limit)]
        return int(await self._call(self._take(keys=[key], args=args)))

    async def maintain(self, now_ms: int) -> bool:
        """Remove up to :data:`TRIM_SLICE` expired members from the expiry index; True if a full slice went."""
        trimmed = await self._call(self._trim(keys=[self._index_key], args=[now_ms, TRIM_SLICE]))
        return int(trimmed) >= TRIM_SLICE

    async def live_sessions(self, now_ms: int) -> int:
        """How many sessions of the deployment are live (the count the global cap is held to)."""
        return int(await self._call(self.client.zcount(self._index_key, f"({now_ms}", "+inf")))

    async def close(self) -> None:
        await self.client.aclose()
