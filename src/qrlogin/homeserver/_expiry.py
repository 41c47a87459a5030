"""A creation-order queue of the keys of records that expire, so that a table can forget them without a scan.

Theory of operation
-------------------
Every record the model keeps for a limited time (a device grant, an authorization code, a browser session, a
user-interactive auth session, a failure counter of a rate limit) lives in a :class:`~._frozenmap.FrozenMap` keyed by
something a request names. Each kind of record lives a fixed time from its creation, so with a clock that does not
step back the records of one table fall due in the order they were created. :class:`ExpiryQueue` keeps that order
beside the table: ``entries`` maps positions ``head .. tail - 1`` to ``(key, due_ms)``, :meth:`ExpiryQueue.push`
appends at ``tail`` and :meth:`ExpiryQueue.pop_due` takes entries off the head while they are due, at most
``budget`` of them, so that no request does more than a fixed amount of this work. ``head_due_ms`` caches when the
entry at the head falls due, so a request on a table with nothing due pays one integer comparison.

The owner of the table removes the record under each popped key if that record is itself due (a key can name a newer
record than the entry was pushed for, as a rate limit's counter for an account does after a reset). A record the
owner removes early (a redeemed code, a consumed session) is not looked for in the queue: its entry stays until its
own time comes and is then popped as a key with nothing behind it. So the queue holds one small pair for each record
created within one lifetime, the table only the records that are still due to be answered, and each entry is popped
exactly once. Lookups never rely on the purge: a record past its time is treated as absent wherever it is read, so
how far the purge has got never changes an answer.

If the clock steps back, a newer record can fall due before an older one still at the head; it is then purged when
the head reaches it, and until then it only costs memory.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from ._frozenmap import FrozenMap

__all__ = ["PURGE_BUDGET", "ExpiryQueue"]

K = TypeVar("K", bound=Hashable)

PURGE_BUDGET = 4
"""Most queue entries one request pops from one queue: twice what a request can push, so a backlog drains."""


@dataclass(frozen=True, slots=True)
class ExpiryQueue(Generic[K]):
    """Keys in the order their records were created, each with when its record falls due."""

    entries: FrozenMap[int, tuple[K, int]] = field(default_factory=FrozenMap)
    head: int = 0
    tail: int = 0
    head_due_ms: int | None = None
    """When the entry at ``head`` falls due; None when the queue is empty."""

    def __len__(self) -> int:
        return self.tail - self.head

    def push(self, key: K, due_ms: int) -> ExpiryQueue[K]:
        head_due = due_ms if self.head_due_ms is None else self.head_due_ms
        return ExpiryQueue(self.entries.set(self.tail, (key, due_ms)), self.head, self.tail + 1, head_due)

    def due(self, now_ms: int) -> bool:
        """Whether the entry at the head has fallen due (the cheap test every request makes)."""
        return self.head_due_ms is not None and now_ms >= self.head_due_ms

    def pop_due(self, now_ms: int, budget: int = PURGE_BUDGET) -> tuple[ExpiryQueue[K], list[K]]:
        """This queue without up to ``budget`` due entries at its head, and their keys (oldest first)."""
        entries, head, tail = self.entries, self.head, self.tail
        popped: list[K] = []
        head_due: int | None = None
        while head < tail:
            key, due_ms = entries[head]
            if now_ms < due_ms or len(popped) == budget:
                head_due = due_ms
                break
            popped.append(key)
            entries = entries.remove(head)
            head += 1
        if not popped:
            return self, popped
        return ExpiryQueue(entries, head, tail, head_due), popped
