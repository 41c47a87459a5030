"""The exploration spread over processes: one table of claimed fingerprints, shared; work handed to idle processes.

Theory of operation
-------------------
The parent searches breadth first (:func:`qrlogin.sim.explore.search`) until a level holds a few dozen states per
process, then forks ``jobs`` workers. The workers inherit that level in memory, take its states one at a time from
a shared counter, and search breadth first below each. Every state is expanded by exactly one process: before a
process keeps a new state it claims the state's fingerprint in a hash table in shared memory (open addressing over
16-byte fingerprints, under one lock), and a state another process claimed first is skipped. So the distinct
states, terminal states and transitions of a complete exploration are the same for any number of processes; only
the schedule kept with a violation may differ (each process keeps the shortest it found, and the shortest of those
is reported, not necessarily the shortest of all).

One subtree can hold most of an exploration, so a process that runs out of work does not stop: it waits, and every
:data:`~qrlogin.sim.explore.SHARE_EVERY` transitions a busy process looks whether one waits and, if so, hands over
part of the level it is building (states it claimed and has not expanded). A state cannot travel as an object (a
world holds keys and channel cursors, which refuse to be pickled), so it travels as its schedule, the choices that
lead to it from the initial world, and the taker replays them (:func:`~qrlogin.sim.explore.replay`): the world is a
pure function of its schedule, so the taker holds the very state the giver claimed. The exploration ends when every
process waits and nothing handed over is still in transit.

The table is sized for ``max_states`` (two slots each, 32 bytes per state); a search that fills it up to
``max_states`` cuts off the rest, as the single-process search does. Fingerprints and handed-over schedules cross
between processes, and the workers' results (counts, violations with their schedules, outcomes) come back through
a pipe.
"""

from __future__ import annotations

import mmap
import time
from collections.abc import Callable
from contextlib import closing
from multiprocessing import get_context
from multiprocessing.connection import Connection
from typing import Any

from .explore import (
    Counts,
    Exploration,
    Frontier,
    Judge,
    Path,
    Violation,
    choices_of,
    new_fingerprinter,
    replay,
    result,
    root_world,
    search,
)
from .world import Scenario, World

__all__ = ["ClaimTable", "explore_parallel"]

_SLOT = 16
_EMPTY = bytes(_SLOT)
_ROOTS_PER_JOB = 32
_HANDED_PER_WAITER = 8  # states handed over per waiting process at once: replaying one costs its depth in steps
_WAIT_S = 0.01


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


class _Handover:
    """States handed from busy processes to waiting ones, as schedules, and the count that tells when all is done."""

    def __init__(self, context: Any, jobs: int) -> None:
        self._jobs = jobs
        self._queue = context.Queue()
        self._lock = context.Lock()
        # [processes waiting, schedules handed over and not yet taken]
        self._state = context.Array("q", 2, lock=False)

    def offer(self, following: Frontier, depth: int) -> None:
        """Hand part of ``following`` (claimed, unexpanded states at ``depth``) to the processes that wait."""
        waiting = self._state[0]
        if waiting == 0 or len(following) < 2:
            return
        count = min(len(following) // 2, _HANDED_PER_WAITER * waiting)
        handed = following[-count:]
        del following[-count:]
        with self._lock:
            self._state[1] += count
        for _, path in handed:
            self._queue.put((choices_of(path), depth))

    def take(self, root: World) -> tuple[tuple[World, Path], int] | None:
        """A state handed over (replayed from ``root``) and its depth; None once every process waits for nothing."""
        with self._lock:
            self._state[0] += 1
        while True:
            with self._lock:
                if self._state[1] > 0:
                    self._state[1] -= 1
                    self._state[0] -= 1
                    break
                if self._state[0] == self._jobs:
                    return None
            time.sleep(_WAIT_S)
        choices, depth = self._queue.get()
        return replay(root, choices), depth


def _worker(
    *,
    roots: Frontier,
    depth: int,
    table: ClaimTable,
    next_root: Any,
    handover: _Handover,
    root: World,
    sender: Connection,
    max_depth: int,
    max_states: int,
) -> None:
    judge = Judge()
    counts = Counts()
    key = new_fingerprinter()
    while True:
        with next_root.get_lock():
            index = next_root.value
            next_root.value += 1
        if index < len(roots):
            start, start_depth = roots[index], depth
        else:
            taken = handover.take(root)
            if taken is None:
                break
            start, start_depth = taken
            counts.handed += 1
        search(
            [start],
            start_depth,
            key=key,
            claim=table.claim,
            claimed=table.__len__,
            judge=judge,
            counts=counts,
            max_depth=max_depth,
            max_states=max_states,
            share=handover.offer,
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
    with closing(new_fingerprinter()) as key:
        table.claim(key(root))
        judge = Judge()
        counts = Counts()
        level = search(
            [(root, None)],
            0,
            key=key,
            claim=table.claim,
            claimed=table.__len__,
            judge=judge,
            counts=counts,
            max_depth=max_depth,
            max_states=max_states,
            split_at=_ROOTS_PER_JOB * jobs,
        )
        depth = len(choices_of(level[0][1])) if level else 0  # a level's states are as deep as their schedules
        next_root = context.Value("q", 0)
        handover = _Handover(context, jobs)
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
                    "handover": handover,
                    "root": root,
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
            counts.handed += worker_counts.handed
            outcomes |= worker_outcomes
            for violation in found:
                known = violations.get(violation.message)
                if known is None or len(violation.choices) < len(known.choices):
                    violations[violation.message] = violation
        judge.violations = dict(list(violations.items())[:20])
        judge.outcomes = outcomes
    return result(scenario, len(table), counts, judge, time.perf_counter() - started)
