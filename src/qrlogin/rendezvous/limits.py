"""Per-client rate limits for the rendezvous server: a token bucket per client and kind of request.

Theory of operation
-------------------
A red-team client alone could fill the global session cap (``ServerConfig.max_sessions``, the memory bound) in about
a minute and so lock every other user out of creating. Each client therefore draws on two buckets, one for creates
(``POST``) and one for writes (``PUT``): a bucket holds up to ``burst`` tokens, refills at ``per_second`` tokens a
second, and a request that finds less than one token is answered ``429 M_LIMIT_EXCEEDED`` with ``retry_after_ms``,
the time until a token is there. Reads, deletes and pre-flights are not limited: a read changes nothing and a
delete only frees memory.

:func:`take` is the whole algorithm as a pure function over ``(tokens, last_ms)``; the in-memory store keeps those
two numbers per bucket, and the Redis store runs the same arithmetic in a server-side script so that all instances
sharing one Redis share the buckets (both use IEEE doubles, so they decide alike). The time is the instance's clock
(``now_ms``); a bucket never refills backwards when instances' clocks disagree (``last_ms`` only grows).

Which client? The adapter gives the peer's address. Behind a reverse proxy every request comes from the proxy, so
one bucket would serve everyone: the proxy must be trusted explicitly (``qrlogin serve --trusted-proxy``, which has
uvicorn take the address from ``X-Forwarded-For`` for those peers only); trusting that header from anyone else
would let each request pick its own bucket. An IPv6 client is keyed by its /64, the block one subscriber usually
gets, so that walking through one's own addresses does not give fresh buckets (:func:`client_key`).
"""

from __future__ import annotations

import functools
import ipaddress
import math
from dataclasses import dataclass
from enum import Enum

from ..errors import LocalProtocolError

__all__ = ["DEFAULT_CREATE_LIMIT", "DEFAULT_WRITE_LIMIT", "LimitKind", "RateLimit", "client_key", "idle_ms", "take"]


class LimitKind(Enum):
    """Which bucket a request draws on."""

    CREATE = "create"
    WRITE = "write"


@dataclass(frozen=True, slots=True, kw_only=True)
class RateLimit:
    """A token bucket: ``burst`` requests at once, then ``per_second`` on average."""

    per_second: float
    burst: int

    def __post_init__(self) -> None:
        if not (self.per_second > 0 and math.isfinite(self.per_second)):
            raise LocalProtocolError("a rate limit's per_second must be a positive number")
        if self.burst < 1:
            raise LocalProtocolError("a rate limit's burst must be at least 1")


# One login creates one session and writes about ten times in a few seconds, from each of two devices that may share
# an address. At 10 creates a second a client holds at most 10 x 120 + 50 live sessions, so it takes about 80 such
# clients to fill the default cap of 100,000.
DEFAULT_CREATE_LIMIT = RateLimit(per_second=10.0, burst=50)
DEFAULT_WRITE_LIMIT = RateLimit(per_second=50.0, burst=200)


def take(tokens: float, last_ms: int, now_ms: int, limit: RateLimit) -> tuple[float, int, int]:
    """One request against a bucket that held ``tokens`` at ``last_ms``: ``(tokens, last_ms, retry_after_ms)``.

    ``retry_after_ms`` is 0 when the request may go ahead (a token was taken), otherwise the wait until one is
    there (the bucket is then stored as refilled so far, nothing taken). A new bucket is ``(limit.burst, now_ms)``.
    """
    if now_ms > last_ms:
        tokens = min(float(limit.burst), tokens + (now_ms - last_ms) * limit.per_second / 1000.0)
        last_ms = now_ms
    if tokens >= 1.0:
        return tokens - 1.0, last_ms, 0
    return tokens, last_ms, max(1, math.ceil((1.0 - tokens) * 1000.0 / limit.per_second))


def idle_ms(limit: RateLimit) -> int:
    """How long after its last use a bucket is full again, and so can be forgotten."""
    return math.ceil(limit.burst * 1000.0 / limit.per_second)


def client_key(address: str | None) -> str | None:
    """The bucket name of a peer address: an IPv4 address as is, an IPv6 one by its /64 (None: unknown peer)."""
    if not address:
        return None
    return _bucket_name(address)


@functools.lru_cache(maxsize=4096)
def _bucket_name(address: str) -> str:
    # Parsing an address costs more than the rest of a rate-limit check; a server sees the same peers again and
    # again. The cache is bounded, so a peer that cycles through addresses only evicts.
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address  # a Unix socket path or a name: one bucket per distinct string
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((int(ip) >> 64 << 64, 64)))
    return str(ip)
