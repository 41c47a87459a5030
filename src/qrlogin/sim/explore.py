"""Exhaustive exploration of the simulator's interleavings within a fault budget, with state deduplication.

Theory of operation
-------------------
From the initial :class:`~qrlogin.sim.world.World` of a scenario, a breadth-first search takes every enabled action
of every state it reaches; the scenario's :class:`~qrlogin.sim.world.Faults` is the budget of drops, duplicates,
delays, cancels, denials and overwrites a schedule may spend, so "every interleaving with at most one drop" is one
scenario. Two interleavings that lead to the same state (same devices, homeserver, pending messages, clock, user
state and remaining budget; the record of what happened is not part of a state) are explored once: a state is
identified by its fingerprint (:mod:`qrlogin.sim.fingerprint`).

Every state without enabled actions is terminal and is judged by :func:`qrlogin.sim.invariants.check` (the
invariants that speak of a whole run need only its final world and record). States at the depth bound, or found
once ``max_states`` distinct states are known, are cut off: each is finished with the fair schedule and judged too,
so every explored prefix ends in a checked run. Breadth first, each state is first reached by a shortest schedule,
so the schedule kept with a violation (the scheduler's choices from the initial world, :func:`qrlogin.sim.run.run`)
is the shortest that reaches that state; :mod:`qrlogin.sim.counterexample` writes it to a file anyone can replay.

Reductions (each one merges or skips only what cannot change a judged outcome; ``docs/simulation.md`` gives the
argument for each):

* the pending HTTP items are a multiset: states that differ only in their order are one state.

While a search runs, Python's cyclic garbage collector makes no full collections (:func:`young_collections_only`):
a full collection traverses every live object, and a search keeps whole levels of states alive, trees of frozen
values with no reference cycles among them, so it would free nothing and only cost time.

Branching continues one world along several actions, which the secure channels refuse by design: a channel state
moves on once (its cursor, :class:`~qrlogin._machine.Guard`). The explored worlds therefore carry a
:class:`~qrlogin.sim.world.Branching` (``World.branching``): every device transition in them starts from a fork of
that device (:func:`qrlogin._machine.fork_for_exploration`: its channel gets a cursor of its own in the same
position). Forking the device a step moves, rather than the whole world for each branch, copies only what changes
anyway: the other device and the homeserver stay shared, and their fingerprints stay memoised. The same object
remembers device transitions and homeserver answers by the identity of their inputs, so interleavings that meet a
device state with the same event, or the homeserver with the same request, compute the result once.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass, replace

from .fingerprint import Fingerprinter
from .invariants import check
from .run import MAX_STEPS, Run
from .world import Branching, Scenario, World, actions, is_finished, new_world, step

__all__ = [
    "Counts",
    "Exploration",
    "Judge",
    "Violation",
    "explore",
    "fingerprint",
    "replay",
    "search",
    "state_key",
]

#: A schedule as the search keeps it: a linked list of choices, newest first, sharing prefixes between states.
Path = tuple["Path", int] | None


@dataclass(frozen=True, slots=True, kw_only=True)
class Violation:
    """An invariant a judged run broke, with the shortest schedule the search found that reaches it."""

    message: str
    choices: tuple[int, ...]
    now_ms: int

    def __str__(self) -> str:
        return f"{self.message} (after {len(self.choices)} actions, t={self.now_ms} ms)"


@dataclass(frozen=True, slots=True, kw_only=True)
class Exploration:
    scenario: Scenario
    distinct_states: int
    terminal_states: int
    cut_off: int
    transitions: int
    max_depth: int
    seconds: float
    violations: tuple[Violation, ...]
    outcomes: frozenset[tuple[tuple[str, str], ...]]
    handed_over: int = 0  # states one process handed to another (--jobs), replayed from their schedules

    @property
    def states_per_second(self) -> float:
        return self.distinct_states / self.seconds if self.seconds > 0 else 0.0

    @property
    def transitions_per_second(self) -> float:
        return self.transitions / self.seconds if self.seconds > 0 else 0.0


def new_fingerprinter() -> Fingerprinter:
    """A fingerprinter that reads the world's pending items as a multiset (see the module docstring)."""
    return Fingerprinter(multisets=[(World, "pending")])


def state_key(world: World, fingerprinter: Fingerprinter | None = None) -> bytes:
    """The identity of a world state in an exploration (everything but its record, pending items in any order)."""
    return (fingerprinter or new_fingerprinter())(world)


def fingerprint(world: World) -> bytes:
    """The identity of a world state (everything but its record of the past)."""
    return state_key(world)


def choices_of(path: Path) -> tuple[int, ...]:
    found: list[int] = []
    while path is not None:
        path, choice = path
        found.append(choice)
    return tuple(reversed(found))


def finish(world: World) -> tuple[World, int]:
    """``world`` run on with the fair schedule (always the first action) until it ends; and the steps it took."""
    for taken in range(MAX_STEPS):
        options = actions(world)
        if not options:
            return world, taken
        world = step(world, options[0])
    return world, MAX_STEPS


class Judge:
    """Judges finished worlds, keeping each distinct violation once, with the first (shortest) schedule."""

    def __init__(self, limit: int = 20) -> None:
        self.violations: dict[str, Violation] = {}
        self.outcomes: set[tuple[tuple[str, str], ...]] = set()
        self._limit = limit

    def __call__(self, world: World, choices: Callable[[], tuple[int, ...]]) -> None:
        verdict = check(Run(world=world, trace=(), finished=is_finished(world)))
        self.outcomes.add(verdict.outcomes)
        for message in verdict.violations:
            if message not in self.violations and len(self.violations) < self._limit:
                self.violations[message] = Violation(message=message, choices=choices(), now_ms=world.now_ms)


@dataclass(slots=True)
class Counts:
    """What one search (or one process of a parallel one) did."""

    terminal: int = 0
    cut: int = 0
    transitions: int = 0
    deepest: int = 0
    handed: int = 0


Frontier = list[tuple[World, Path]]

SHARE_EVERY = 1024
"""Transitions between two offers of work to idle processes (:func:`search`'s ``share``)."""


_NEVER = 2**31 - 1


@contextmanager
def young_collections_only() -> Iterator[None]:
    """No full collections by Python's cyclic garbage collector in this block; young ones go on as configured.

    A full collection traverses every object alive. A search holds a level of states alive, up to hundreds of
    thousands of worlds, each a tree of frozen values (nothing in a world refers back to what holds it), so full
    collections find nothing to free: at 87,581 states they took a quarter to a third of the CPU time, and they cost
    more as levels grow. Young collections still run, so a cycle made and dropped on the way (an exception and its
    traceback) is still freed. The collector's thresholds are restored afterwards.
    """
    young, middle, old = gc.get_threshold()
    gc.set_threshold(young, middle, _NEVER)
    try:
        yield
    finally:
        gc.set_threshold(young, middle, old)


def search(
    frontier: Frontier,
    depth: int,
    *,
    key: Fingerprinter,
    claim: Callable[[bytes], bool],
    claimed: Callable[[], int],
    judge: Judge,
    counts: Counts,
    max_depth: int,
    max_states: int,
    split_at: int | None = None,
    progress: Callable[[int], None] | None = None,
    share: Callable[[Frontier, int], None] | None = None,
) -> Frontier:
    """Breadth first from ``frontier`` (states at ``depth``, already claimed), level by level.

    ``key`` fingerprints states (one per exploration or process: its memo serves every search it makes).
    ``claim(fingerprint)`` is true for a state not seen before (and records it); ``claimed()`` is how many are
    known. With ``split_at``, stop once a level holds that many states and return it, unexpanded (to spread over
    processes).
    ``share(following, depth)`` is offered the next level as it grows, every :data:`SHARE_EVERY` transitions, and may
    take states out of it (claimed, unexpanded, at ``depth``) for another process to search.
    """
    with young_collections_only():
        reported = claimed()
        while frontier:
            if split_at is not None and len(frontier) >= split_at:
                return frontier
            following: Frontier = []
            for world, path in frontier:
                options = actions(world)
                if not options:
                    counts.terminal += 1
                    judge(world, lambda path=path: choices_of(path))  # type: ignore[misc]
                    continue
                if depth >= max_depth or claimed() >= max_states:
                    counts.cut += 1
                    finished, taken = finish(world)
                    judge(finished, lambda path=path, taken=taken: choices_of(path) + (0,) * taken)  # type: ignore[misc]
                    continue
                for index, action in enumerate(options):
                    counts.transitions += 1
                    child = step(world, action)
                    if claim(key(child)):
                        following.append((child, (path, index)))
                if share is not None and counts.transitions % SHARE_EVERY < len(options):
                    share(following, depth + 1)
            frontier = following
            counts.deepest = max(counts.deepest, depth)
            depth += 1
            if progress is not None and claimed() - reported >= 10_000:
                reported = claimed()
                progress(reported)
        return []


def replay(root: World, choices: tuple[int, ...]) -> tuple[World, Path]:
    """The state ``choices`` lead to from ``root``, with its path: how a state travels between processes."""
    world: World = root
    path: Path = None
    for choice in choices:
        world = step(world, actions(world)[choice])
        path = (path, choice)
    return world, path


def root_world(scenario: Scenario) -> World:
    """The initial world of an exploration: it carries the cache its device forks use."""
    return replace(new_world(scenario), branching=Branching())


def explore(
    scenario: Scenario,
    *,
    max_depth: int = 1_000,
    max_states: int = 1_000_000,
    jobs: int = 1,
    progress: Callable[[int], None] | None = None,
) -> Exploration:
    """Explore every interleaving of ``scenario`` within its fault budget and the bounds; see the module docstring.

    With ``jobs`` > 1 the search is spread over that many processes (:mod:`qrlogin.sim.parallel`).
    """
    if jobs > 1:
        from .parallel import explore_parallel

        return explore_parallel(scenario, jobs=jobs, max_depth=max_depth, max_states=max_states, progress=progress)
    started = time.perf_counter()
    judge = Judge()
    seen: set[bytes] = set()

    def claim(key: bytes) -> bool:
        if key in seen:
            return False
        seen.add(key)
        return True

    counts = Counts()
    root = root_world(scenario)
    with closing(new_fingerprinter()) as key:
        claim(key(root))
        search(
            [(root, None)],
            0,
            key=key,
            claim=claim,
            claimed=seen.__len__,
            judge=judge,
            counts=counts,
            max_depth=max_depth,
            max_states=max_states,
            progress=progress,
        )
    return result(scenario, len(seen), counts, judge, time.perf_counter() - started)


def result(scenario: Scenario, distinct: int, counts: Counts, judge: Judge, seconds: float) -> Exploration:
    return Exploration(
        scenario=scenario,
        distinct_states=distinct,
        terminal_states=counts.terminal,
        cut_off=counts.cut,
        transitions=counts.transitions,
        max_depth=counts.deepest,
        seconds=seconds,
        violations=tuple(judge.violations.values()),
        outcomes=frozenset(judge.outcomes),
        handed_over=counts.handed,
    )
