"""The exploration spread over processes: one table of claimed fingerprints, shared; subtrees handed out on demand.

Theory of operation
-------------------
The parent searches breadth first (:func:`qrlogin.sim.explore.search`) until a level holds a few dozen states per
process, then forks ``jobs`` workers. The workers inherit that level in memory (nothing is serialised: a world holds
keys and channel cursors, which refuse to be pickled, and they never need to be), take its states one at a time from
a shared counter, and search breadth first below each. Every state is expanded by exactly one process: before a
process keeps a new state it claims the state's fingerprint in a hash table in shared memory (open addressing over
16-byte fingerprints, under one lock), and a state another process claimed first is skipped. So the distinct
states, terminal states and transitions of a complete exploration are the same for any number of processes; only
the schedule kept with a violation may differ (each process keeps the shortest it found, and the shortest of those
is reported, not necessarily the shortest of all).

The table is sized for ``max_states`` (two slots each, 32 bytes per state); a search that fills it up to
``max_states`` cuts off the rest, as the single-process search does. Only fingerprints cross between processes,
and the workers' results (counts, violations with their schedules, outcomes) come back through a pipe.
"""

from __future__ import annotations

import mmap
import time
from collections.abc import Callable
from multiprocessing import get_context
from multiprocessing.connection import Connection
from typing import Any

from .explore import Counts, Exploration, Frontier, Judge, Violation, new_fingerprinter, result, root_world, search
from .world import Scenario

__all__ = ["ClaimTable", "explore_parallel"]

_SLOT = 16
_EMPTY = bytes(_SLOT)
_ROOTS_PER_JOB = 32


class ClaimTable:
    """A set of 16-byte fingerprints in anonymous shared memory, visible to processes forked after it was made."""

    def __init__(self, capacity: int, lock: Any) -> None:
        self._slots = max(2 * capacity, 64)
        self._table = mmap.mmap(-1, self._slots * _SLOT + 8)
        self._lock = lock

    def __len__(self) -> int:
        return int.from_bytes(self._table[-8:], "little")

    def claim(self, key: bytes) -> bool:
        """Whether ``key`` was new (it is now in the table)."""
        table = self._table
        slot = int.from_bytes(key[:8], "little") % self._slots
        with self._lock:
            while True:
                offset = slot * _SLOT
                current = table[offset : offset + _SLOT]
                if current == key:
                    return False
                if current == _EMPTY:
                    table[offset : offset + _SLOT] = key
                    table[-8:] = (len(self) + 1).to_bytes(8, "little")
                    return True
                slot = (slot + 1) % self._slots


def _worker(
    *,
    roots: Frontier,
    depth: int,
    table: ClaimTable,
    next_root: Any,
    sender: Connection,
    max_depth: int,
    max_states: int,
) -> None:
    judge = Judge()
    counts = Counts()
    while True:
        with next_root.get_lock():
            index = next_root.value
            next_root.value += 1
        if index >= len(roots):
            break
        search(
            [roots[index]],
            depth,
            claim=table.claim,
            claimed=table.__len__,
            judge=judge,
            counts=counts,
            max_depth=max_depth,
            max_states=max_states,
        )
    sender.send((counts, list(judge.violations.values()), judge.outcomes))
    sender.close()


def explore_parallel(
    scenario: Scenario,
    *,
    jobs: int,
    max_depth: int,
    max_states: int,
    progress: Callable[[int], None] | None = None,
) -> Exploration:
    started = time.perf_counter()
    context = get_context("fork")
    table = ClaimTable(max_states, context.Lock())
    root = root_world(scenario)
    table.claim(new_fingerprinter()(root))
    judge = Judge()
    counts = Counts()
    level = search(
        [(root, None)],
        0,
        claim=table.claim,
        claimed=table.__len__,
        judge=judge,
        counts=counts,
        max_depth=max_depth,
        max_states=max_states,
        split_at=_ROOTS_PER_JOB * jobs,
    )
    depth = counts.deepest + 1 if level else 0
    next_root = context.Value("q", 0)
    workers = []
    for _ in range(jobs if level else 0):
        receiver, sender = context.Pipe(duplex=False)
        process = context.Process(
            target=_worker,
            kwargs={
                "roots": level,
                "depth": depth,
                "table": table,
                "next_root": next_root,
                "sender": sender,
                "max_depth": max_depth,
                "max_states": max_states,
            },
            daemon=True,
        )
        process.start()
        sender.close()
        workers.append((process, receiver))
    violations: dict[str, Violation] = dict(judge.violations)
    outcomes = set(judge.outcomes)
    for process, receiver in workers:
        if progress is not None:
            progress(len(table))
        worker_counts, found, worker_outcomes = receiver.recv()
        process.join()
        counts.terminal += worker_counts.terminal
        counts.cut += worker_counts.cut
        counts.transitions += worker_counts.transitions
        counts.deepest = max(counts.deepest, worker_counts.deepest)
        outcomes |= worker_outcomes
        for violation in found:
            known = violations.get(violation.message)
            if known is None or len(violation.choices) < len(known.choices):
                violations[violation.message] = violation
    judge.violations = dict(list(violations.items())[:20])
    judge.outcomes = outcomes
    return result(scenario, len(table), counts, judge, time.perf_counter() - started)
