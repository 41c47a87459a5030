"""A creation-order queue of the keys of records that expire, so that a table can forget them without a scan.

Theory of operation
-------------------
Every record the model keeps for a limited time (a device grant, an authorization code, a browser session, a
user-interactive auth session, a failure counter of a rate limit) lives in a :class:`~._frozenmap.FrozenMap` keyed by
something a request names. Each kind of record lives a fixed time from its creation, so with a clock that does not
step back the records of one table fall due in the order they were created. :class:`ExpiryQueue` keeps that order
beside the table as ``(key, due_ms)`` pairs: :meth:`ExpiryQueue.push` appends one and :meth:`ExpiryQueue.pop_due`
takes pairs off the head while they are due, at most ``budget`` of them, so that no request does more than a fixed
amount of this work. ``head_due_ms`` caches when the pair at the head falls due, so a request on a table with
nothing due pays one integer comparison.

The owner of the table removes the record under each popped key if that record is itself due (a key can name a newer
record than the pair was pushed for, as a rate limit's counter for an account does after a reset). A record the
owner removes early (a redeemed code, a consumed session) is not looked for in the queue: its pair stays until its
own time comes and is then popped as a key with nothing behind it. So the queue holds one small pair for each record
created within one lifetime, the table only the records that are still due to be answered, and each pair is popped
exactly once. Lookups never rely on the purge: a record past its time is treated as absent wherever it is read, so
how far the purge has got never changes an answer.

The queue is persistent, like the tables: every version stays valid. Pairs live in tuples of at most
:data:`CHUNK` pairs: ``back`` collects new pairs, a full ``back`` moves into ``middle`` (a
:class:`~._frozenmap.FrozenMap` from chunk number to chunk, numbered ``middle_head .. middle_tail - 1``), and
``front`` holds what is left of the oldest chunk. A push copies ``back`` (at most ``CHUNK`` references) and, once
per ``CHUNK`` pushes, sets one map entry; a pop slices ``front`` and, once per ``CHUNK`` pops, removes one. So each
operation costs a bounded amount, no version is ever copied whole, and a popped pair is dropped at once.

If the clock steps back, a newer record can fall due before an older one still at the head; it is then purged when
the head reaches it, and until then it only costs memory.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterator
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from ._frozenmap import FrozenMap

__all__ = ["CHUNK", "NEVER", "PURGE_BUDGET", "ExpiryQueue"]

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

PURGE_BUDGET = 4
"""Most pairs one request pops from one queue: more than a request can push, so a backlog drains."""
NEVER = (1 << 63) - 1
"""``head_due_ms`` of an empty queue: later than any time, so the test a request makes is one comparison."""
CHUNK = 32
"""Most pairs in one tuple of the queue."""


@dataclass(frozen=True, slots=True)
class ExpiryQueue(Generic[K]):
    """``(key, due_ms)`` pairs in the order their records were created (module docstring)."""

    front: tuple[tuple[K, int], ...] = ()
    middle: FrozenMap[int, tuple[tuple[K, int], ...]] = field(default_factory=FrozenMap)
    middle_head: int = 0
    middle_tail: int = 0
    back: tuple[tuple[K, int], ...] = ()
    size: int = 0
    head_due_ms: int = NEVER
    """When the pair at the head falls due; :data:`NEVER` when the queue is empty."""

    def __len__(self) -> int:
        return self.size

    def __iter__(self) -> Iterator[tuple[K, int]]:
        """The pairs, oldest first (for tests and inspection: it walks the whole queue)."""
        yield from self.front
        for number in range(self.middle_head, self.middle_tail):
            yield from self.middle[number]
        yield from self.back

    def push(self, key: K, due_ms: int) -> ExpiryQueue[K]:
        back = (*self.back, (key, due_ms))
        head_due = due_ms if self.size == 0 else self.head_due_ms
        if len(back) < CHUNK:
            return ExpiryQueue(
                self.front, self.middle, self.middle_head, self.middle_tail, back, self.size + 1, head_due
            )
        middle = self.middle.set(self.middle_tail, back)
        return ExpiryQueue(self.front, middle, self.middle_head, self.middle_tail + 1, (), self.size + 1, head_due)

    def due(self, now_ms: int) -> bool:
        """Whether the pair at the head has fallen due (the cheap test every request makes)."""
        return now_ms >= self.head_due_ms

    def pop_due(self, now_ms: int, budget: int = PURGE_BUDGET) -> tuple[ExpiryQueue[K], list[K]]:
        """This queue without up to ``budget`` due pairs at its head, and their keys (oldest first)."""
        if now_ms < self.head_due_ms:
            return self, []
        front, middle, middle_head, back = self.front, self.middle, self.middle_head, self.back
        popped: list[K] = []
        head_due = NEVER
        while True:
            if not front:
                if middle_head < self.middle_tail:
                    front = middle[middle_head]
                    middle = middle.remove(middle_head)
                    middle_head += 1
                elif back:
                    front, back = back, ()
                else:
                    break
            key, due_ms = front[0]
            if now_ms < due_ms or len(popped) == budget:
                head_due = due_ms
                break
            popped.append(key)
            front = front[1:]
        return (
            ExpiryQueue(front, middle, middle_head, self.middle_tail, back, self.size - len(popped), head_due),
            popped,
        )

    def purge(
        self, table: FrozenMap[K, V], now_ms: int, *, due_ms: Callable[[V], int]
    ) -> tuple[ExpiryQueue[K], FrozenMap[K, V]]:
        """Pop the due pairs (:meth:`pop_due`) and remove from ``table`` the record of each popped key that is due
        itself by ``due_ms(record)`` (the key may name a newer record than its pair was pushed for)."""
        queue, keys = self.pop_due(now_ms)
        for key in keys:
            record = table.get(key)
            if record is not None and now_ms >= due_ms(record):
                table = table.remove(key)
        return queue, table
