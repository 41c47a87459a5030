"""Bounded exhaustive exploration of the simulator's interleavings, with state deduplication.

Theory of operation
-------------------
From the initial :class:`~qrlogin.sim.world.World` of a scenario, a depth-first search takes every enabled action
of every state it reaches. Two interleavings that lead to the same state (same devices, homeserver, pending
messages, clock and user state; the record of what happened is not part of a state) are explored once: a state is
identified by a structural fingerprint, a SHA-256 over a canonical walk of the value. Key material is fingerprinted
by digest, so states that differ only in secrets are still told apart.

Every state without enabled actions is terminal and is judged by :func:`qrlogin.sim.invariants.check` (the
invariants that speak of a whole run need only its final world and record). States at the depth bound, or beyond
``max_states``, are counted as cut off: each is then finished with the fair schedule and judged too, so every
explored prefix also ends in a checked run. The result says how many distinct states were covered.

Time only advances when nothing else can happen (no delay faults here), and each device has at most one request per
layer in flight, so the branching is small and the graph of an honest sign-in is explored completely within a few
thousand states.

Branching continues one world along several actions, which the secure channels refuse by design: a channel state
moves on once (its cursor, :class:`~qrlogin._machine.Guard`). Every branch but one therefore steps a fork of the
world (:func:`qrlogin._machine.fork_for_exploration`), in which each channel has a cursor of its own in the same
position; the parts of a world that hold no cursor are shared between forks, not copied.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
from collections.abc import Callable
from dataclasses import dataclass

from .._crypto import AeadKey, X25519Secret
from .._machine import ForkCache, fork_for_exploration
from .._secret import Secret
from ..homeserver._frozenmap import FrozenMap
from .invariants import check
from .run import MAX_STEPS, Run
from .world import Scenario, World, actions, is_finished, new_world, step

__all__ = ["Exploration", "explore", "fingerprint"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Exploration:
    distinct_states: int
    terminal_states: int
    cut_off: int
    transitions: int
    violations: tuple[str, ...]
    outcomes: frozenset[tuple[tuple[str, str], ...]]


class _Fingerprinter:
    """Canonical bytes for a value graph; shared sub-values are walked once (they are immutable)."""

    def __init__(self) -> None:
        self._memo: dict[int, tuple[object, bytes]] = {}

    def __call__(self, value: object) -> bytes:
        key = id(value)
        hit = self._memo.get(key)
        if hit is not None and hit[0] is value:
            return hit[1]
        digest = hashlib.sha256(self._walk(value)).digest()
        if not isinstance(value, int | str | bytes | bool | type(None)):
            self._memo[key] = (value, digest)
        return digest

    def _walk(self, value: object) -> bytes:
        if value is None or isinstance(value, bool | int | float):
            return repr(value).encode()
        if isinstance(value, str):
            return b"s" + value.encode("utf-8", "surrogatepass")
        if isinstance(value, bytes):
            return b"b" + value
        if isinstance(value, Secret):
            return b"S" + hashlib.sha256(value.value).digest()
        if isinstance(value, AeadKey):
            return b"K" + hashlib.sha256(value._key).digest()
        if isinstance(value, X25519Secret):
            return b"X" + value.public_key
        if isinstance(value, enum.Enum):
            return b"E" + type(value).__name__.encode() + repr(value.value).encode()
        if isinstance(value, tuple | list):
            return b"T" + b"".join(self(item) for item in value)
        if isinstance(value, FrozenMap | dict):
            items = sorted((self(k), self(v)) for k, v in value.items())
            return b"M" + b"".join(k + v for k, v in items)
        if isinstance(value, frozenset | set):
            return b"F" + b"".join(sorted(self(item) for item in value))
        if dataclasses.is_dataclass(value):
            parts = [type(value).__qualname__.encode()]
            for field in dataclasses.fields(value):
                if field.compare:
                    parts.append(self(getattr(value, field.name)))
            return b"D" + b"".join(parts)
        slots = getattr(type(value), "__slots__", None)
        if slots is not None:
            return b"O" + type(value).__qualname__.encode() + b"".join(self(getattr(value, s)) for s in slots)
        raise TypeError(f"cannot fingerprint a {type(value).__name__}")


def fingerprint(world: World) -> bytes:
    """The identity of a world state (everything but its record of the past)."""
    return _Fingerprinter()(world)


def _finish(world: World) -> World:
    for _ in range(MAX_STEPS):
        options = actions(world)
        if not options:
            break
        world = step(world, options[0])
    return world


def explore(
    scenario: Scenario,
    *,
    max_depth: int = 400,
    max_states: int = 20_000,
    progress: Callable[[int], None] | None = None,
) -> Exploration:
    """Explore every interleaving of ``scenario`` up to the bounds; see the module docstring."""
    fp = _Fingerprinter()
    forks = ForkCache()
    seen: set[bytes] = set()
    violations: list[str] = []
    outcomes: set[tuple[tuple[str, str], ...]] = set()
    terminal = cut = transitions = 0
    stack: list[tuple[World, int]] = [(new_world(scenario), 0)]

    def judge(world: World, depth: int) -> None:
        verdict = check(Run(world=world, trace=(), finished=is_finished(world)))
        outcomes.add(verdict.outcomes)
        for violation in verdict.violations:
            if len(violations) < 20:
                violations.append(f"{violation} (at depth {depth}, t={world.now_ms} ms)")

    while stack:
        world, depth = stack.pop()
        key = fp(world)
        if key in seen:
            continue
        seen.add(key)
        if progress is not None and len(seen) % 1000 == 0:
            progress(len(seen))
        options = actions(world)
        if not options:
            terminal += 1
            judge(world, depth)
            continue
        if depth >= max_depth or len(seen) >= max_states:
            cut += 1
            judge(_finish(world), depth)
            continue
        # Each branch but the last continues a fork of the world: the channels' cursors let a state move on once,
        # and every branch must move on from the same states.
        for remaining, action in enumerate(reversed(options), start=1 - len(options)):
            transitions += 1
            branch = world if remaining == 0 else fork_for_exploration(world, cache=forks)
            stack.append((step(branch, action), depth + 1))
    return Exploration(
        distinct_states=len(seen),
        terminal_states=terminal,
        cut_off=cut,
        transitions=transitions,
        violations=tuple(violations),
        outcomes=frozenset(outcomes),
    )
