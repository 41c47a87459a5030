"""Shared scaffolding for every pure state machine in qrlogin.

Theory of operation
-------------------
Each protocol layer is a set of frozen dataclasses (states, events, effects) plus a pure function::

    transition(state, event, *, now_ms) -> (new_state, effects)

A *legal-moves table* maps each state class to the event classes it accepts. That one table drives three things:
the runtime check in :func:`require_legal` (an illegal event raises :class:`~qrlogin.errors.LocalProtocolError`
before anything changes), the state diagram in the docs, and the test that tries every (state, event kind) pair.

:class:`Driver` is the one mutable object: it holds the current state for callers who prefer an object to threading
values through. Because it replaces its state on every call and exposes no way to go back, a state can never be
"forked" to run the same transition twice, which is what would reuse a nonce (THREATS.md T1).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Generic, Protocol, TypeVar

from .errors import LocalProtocolError

StateT = TypeVar("StateT")
EventT = TypeVar("EventT")
EffectT = TypeVar("EffectT")

StateT_contra = TypeVar("StateT_contra", contravariant=True)
EventT_contra = TypeVar("EventT_contra", contravariant=True)
StateT_co = TypeVar("StateT_co", covariant=True)
EffectT_co = TypeVar("EffectT_co", covariant=True)

LegalMoves = Mapping[type, frozenset[type]]


class Transition(Protocol[StateT_contra, EventT_contra, StateT_co, EffectT_co]):
    """The shape of every machine's pure transition function."""

    def __call__(
        self, state: StateT_contra, event: EventT_contra, /, *, now_ms: int
    ) -> tuple[StateT_co, tuple[EffectT_co, ...]]: ...


def require_legal(table: LegalMoves, state: object, event: object) -> None:
    """Raise :class:`LocalProtocolError` unless ``type(event)`` is a legal move from ``type(state)``."""
    allowed = table.get(type(state))
    if allowed is None:
        raise LocalProtocolError(f"{type(state).__name__} is not a state of this machine")
    if type(event) not in allowed:
        raise LocalProtocolError(f"{type(event).__name__} is not legal in state {type(state).__name__}")


def is_terminal(table: LegalMoves, state: object) -> bool:
    """A terminal state is one that accepts no events."""
    return not table.get(type(state))


class Driver(Generic[StateT, EventT, EffectT]):
    """Holds the current state of one machine and feeds it events; the only mutable class in the core."""

    __slots__ = ("_state", "_transition")

    def __init__(
        self,
        state: StateT,
        transition: Transition[StateT, EventT, StateT, EffectT],
    ) -> None:
        self._state = state
        self._transition = transition

    @property
    def state(self) -> StateT:
        return self._state

    def handle(self, event: EventT, *, now_ms: int) -> tuple[EffectT, ...]:
        new_state, effects = self._transition(self._state, event, now_ms=now_ms)
        self._state = new_state
        return effects

    def __repr__(self) -> str:
        return f"Driver({self._state!r})"
