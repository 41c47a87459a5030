"""Limits on guessing: failed password and user code attempts, counted per account in a fixed window.

Spec: RFC 8628 §5.1 (a user code has little entropy, so the server rate-limits attempts to enter one) and §5.2; the
Client-Server API's "Rate limiting" (``429 M_LIMIT_EXCEEDED`` with ``retry_after_ms``, and a ``Retry-After``
header since v1.10); RFC 6585 §4 (``429 Too Many Requests``, ``Retry-After``) for the HTML pages.

Theory of operation
-------------------
A :class:`FailureLimiter` counts failed attempts per key (a user id) under a :class:`FailureLimit`: the first failure
opens a window of ``window_s`` seconds; after ``max_failures`` failures in it, every attempt under that key is
refused, without being checked, until the window closes, and :meth:`FailureLimiter.retry_after_ms` says how long
that is. Closing the window forgets the count. What else restores access is the caller's choice: a right password
forgets the account's count (only the account's owner can produce one), while a user code found does not (anyone can
start a device grant and so hold a valid code, which would otherwise wash out each run of guesses).

Each request costs one lookup by key and at most one update: nothing counts or scans attempts. Counters are records
with a fixed lifetime, so they leave through the creation-order queue of :mod:`~._expiry` (:meth:`purge`, called on
every request, pops at most a few due entries), and a counter past its window is treated as absent wherever it is
read. The bookkeeping is one counter per key with a failure in the last window.

The model has no IP addresses, so every limit is per account; registration is open, so an attacker holding many
accounts gets each account's allowance for user codes (docs/homeserver.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from operator import attrgetter

from ._expiry import ExpiryQueue
from ._frozenmap import FrozenMap

__all__ = [
    "DEFAULT_PASSWORD_LIMIT",
    "DEFAULT_USER_CODE_LIMIT",
    "FailureCount",
    "FailureLimit",
    "FailureLimiter",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class FailureLimit:
    """At most ``max_failures`` failed attempts per key in ``window_s`` seconds from the first of them."""

    max_failures: int
    window_s: int

    def __post_init__(self) -> None:
        if self.max_failures < 1 or self.window_s < 1:
            raise ValueError("a rate limit needs at least one failure in a window of at least one second")


DEFAULT_PASSWORD_LIMIT = FailureLimit(max_failures=10, window_s=300)
"""Failed password attempts per account (``/login``, the sign-in page, user-interactive auth)."""
DEFAULT_USER_CODE_LIMIT = FailureLimit(max_failures=10, window_s=300)
"""Unknown user codes entered per account on the approval page (RFC 8628 §5.1)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class FailureCount:
    """Failures under one key since the window opened; the window closes at ``until_ms``."""

    failures: int
    until_ms: int


@dataclass(frozen=True, slots=True, kw_only=True)
class FailureLimiter:
    """Failure counters per key under one :class:`FailureLimit`, with the queue that expires them."""

    limit: FailureLimit
    counts: FrozenMap[str, FailureCount] = field(default_factory=FrozenMap, repr=False)
    queue: ExpiryQueue[str] = field(default_factory=ExpiryQueue, repr=False)

    def _live(self, key: str, now_ms: int) -> FailureCount | None:
        count = self.counts.get(key) if self.counts else None
        return None if count is None or now_ms >= count.until_ms else count

    def retry_after_ms(self, key: str, *, now_ms: int) -> int | None:
        """How long attempts under ``key`` stay refused; None if they are allowed now."""
        count = self._live(key, now_ms)
        if count is None or count.failures < self.limit.max_failures:
            return None
        return count.until_ms - now_ms

    def failed(self, key: str, *, now_ms: int) -> FailureLimiter:
        """Count a failed attempt under ``key`` (opening a window if none is open)."""
        count = self._live(key, now_ms)
        if count is not None:
            counted = replace(count, failures=count.failures + 1)
            return replace(self, counts=self.counts.set(key, counted))
        until_ms = now_ms + self.limit.window_s * 1000
        return replace(
            self,
            counts=self.counts.set(key, FailureCount(failures=1, until_ms=until_ms)),
            queue=self.queue.push(key, until_ms),
        )

    def forget(self, key: str) -> FailureLimiter:
        """Drop the count under ``key`` (its queue entry leaves when its time comes)."""
        counts = self.counts.remove(key) if self.counts else self.counts
        return self if counts is self.counts else replace(self, counts=counts)

    def purge(self, now_ms: int) -> FailureLimiter:
        """Forget a few counters whose window has closed (see :mod:`~._expiry`)."""
        if now_ms < self.queue.head_due_ms:
            return self
        queue, counts = self.queue.purge(self.counts, now_ms, due_ms=attrgetter("until_ms"))
        return replace(self, counts=counts, queue=queue)
