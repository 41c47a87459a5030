"""Shared scaffolding for every pure state machine in qrlogin.

Theory of operation
-------------------
Each protocol layer is a set of frozen dataclasses (states, events, effects) plus a pure function::

    transition(state, event, *, now_ms) -> (new_state, effects)

Every machine is described by one :class:`Machine`: a *transitions table* mapping each legal
``(state class, event class)`` pair to the handler that performs it. Everything else derives from that table:

* the runtime check: :meth:`Machine.transition` looks the pair up and raises
  :class:`~qrlogin.errors.LocalProtocolError` for a pair that is not in it, before anything changes;
* which states are terminal (they accept no event);
* where each move can lead: read off the handler's return annotation, ``tuple[A | B, ...]``, which mypy checks
  against what the handler really returns, so the diagram cannot drift from the code;
* the state diagram in the docs (:meth:`Machine.mermaid`, written by ``scripts/diagrams.py``, checked by a test)
  and the test that tries every (state, event) pair of every machine.

Events that are legal in many states (a timer, a user's cancel) are listed pair by pair, usually by a comprehension
over the states, so the table stays the whole truth.

States that hold keys move on once. Immutable values alone would let a caller who keeps an old state (or copies
one) seal a second plaintext under the same key and nonce, or give the user a second check-code attempt. Such a
machine keeps one small mutable record per run, a :class:`Guard`, shared by every state of the run and every copy
of one: a transition checks that its state is where the run stands and moves the record on before it seals, opens or
judges anything, so a state the run has left behind is refused. Simulators and explorers, which continue one state
along several branches on purpose, give each branch records of its own with :func:`fork_for_exploration`; nothing
else can.

:class:`Driver` holds the current state for callers who prefer an object to threading values through. It is the only
mutable class in the core, and it refuses to be copied or pickled.
"""

from __future__ import annotations

import copy
import dataclasses
import enum
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Generic, NoReturn, Protocol, Self, TypeVar

from .errors import LocalProtocolError

StateT = TypeVar("StateT")
EventT = TypeVar("EventT")
EffectT = TypeVar("EffectT")

StateT_contra = TypeVar("StateT_contra", contravariant=True)
EventT_contra = TypeVar("EventT_contra", contravariant=True)
StateT_co = TypeVar("StateT_co", covariant=True)
EffectT_co = TypeVar("EffectT_co", covariant=True)


class Transition(Protocol[StateT_contra, EventT_contra, StateT_co, EffectT_co]):
    """The shape of every machine's pure transition function."""

    def __call__(
        self, state: StateT_contra, event: EventT_contra, /, *, now_ms: int
    ) -> tuple[StateT_co, tuple[EffectT_co, ...]]: ...


Handler = Callable[[Any, Any, int], tuple[Any, tuple[Any, ...]]]
"""``handler(state, event, now_ms) -> (new_state, effects)``; annotated with the states it can return."""


class Machine(Generic[StateT, EventT, EffectT]):
    """One machine's transitions table, and the check, queries and diagram that derive from it.

    ``initial`` names the states a machine is created in (by its ``start`` functions); it only marks the diagram.
    """

    __slots__ = ("_by_state", "_targets", "initial", "name", "transitions")

    def __init__(
        self,
        name: str,
        transitions: Mapping[tuple[type, type], Handler],
        *,
        initial: tuple[type, ...] = (),
    ) -> None:
        self.name = name
        self.transitions: Mapping[tuple[type, type], Handler] = types.MappingProxyType(dict(transitions))
        self.initial = initial
        self._targets: dict[tuple[type, type], frozenset[type]] | None = None
        # The same table by state, then event: two lookups of a type, no key to build, on every transition.
        self._by_state: dict[type, dict[type, Handler]] = {}
        for (state, event), handler in self.transitions.items():
            self._by_state.setdefault(state, {})[event] = handler

    def transition(self, state: StateT, event: EventT, now_ms: int) -> tuple[StateT, tuple[EffectT, ...]]:
        """Perform ``event`` in ``state``; a pair that is not in the table raises before anything changes."""
        try:
            handler = self._by_state[type(state)][type(event)]
        except KeyError:
            raise LocalProtocolError(self._illegal(state, event)) from None
        result: tuple[StateT, tuple[EffectT, ...]] = handler(state, event, now_ms)
        return result

    def _illegal(self, state: object, event: object) -> str:
        if type(state) not in self.states:
            return f"{type(state).__name__} is not a state of the {self.name} machine"
        return f"{type(event).__name__} is not legal in {self.name} state {type(state).__name__}"

    def legal_events(self, state_class: type) -> frozenset[type]:
        """The event classes ``state_class`` accepts (none for a terminal state)."""
        return frozenset(self._by_state.get(state_class, ()))

    def is_terminal(self, state: object) -> bool:
        """True for a state that accepts no event."""
        return type(state) not in self._by_state

    @property
    def events(self) -> frozenset[type]:
        """Every event class some state accepts."""
        return frozenset(event for _, event in self.transitions)

    @property
    def states(self) -> frozenset[type]:
        """Every state class: those in the table, those a move can lead to, and the initial ones."""
        reached = {target for targets in self._all_targets().values() for target in targets}
        return frozenset({state for state, _ in self.transitions} | reached | set(self.initial))

    def targets(self, state_class: type, event_class: type) -> frozenset[type]:
        """The state classes the move ``(state_class, event_class)`` can lead to, from its handler's annotation."""
        return self._all_targets()[state_class, event_class]

    def _all_targets(self) -> dict[tuple[type, type], frozenset[type]]:
        if self._targets is None:
            self._targets = {pair: _returned_states(handler, pair[0]) for pair, handler in self.transitions.items()}
        return self._targets

    def mermaid(self) -> str:
        """The state diagram as a Mermaid ``stateDiagram-v2``: one arrow per (state, target), labelled with events."""
        arrows: dict[tuple[str, str], list[str]] = {}
        for (state, event), targets in sorted(self._all_targets().items(), key=lambda item: _pair_key(item[0])):
            for target in sorted(targets, key=lambda cls: cls.__name__):
                arrows.setdefault((state.__name__, target.__name__), []).append(event.__name__)
        lines = ["stateDiagram-v2"]
        lines.extend(f"    [*] --> {initial.__name__}" for initial in self.initial)
        lines.extend(f"    {source} --> {target} : {', '.join(names)}" for (source, target), names in arrows.items())
        terminal = sorted(cls.__name__ for cls in self.states if not self.legal_events(cls))
        lines.extend(f"    {name} --> [*]" for name in terminal)
        return "\n".join(lines) + "\n"


def stay(state: StateT, event: object, now_ms: int) -> tuple[StateT, tuple[()]]:
    """The handler of a move that changes nothing (an early timer, a late answer the state does not wait for)."""
    return state, ()


def _pair_key(pair: tuple[type, type]) -> tuple[str, str]:
    return pair[0].__name__, pair[1].__name__


def _returned_states(handler: Handler, state_class: type) -> frozenset[type]:
    """The classes in the first element of ``handler``'s return annotation ``tuple[A | B, tuple[...]]``.

    A type variable there stands for the state the handler was given, so it is read as ``state_class``: that is how
    :func:`stay`, ``(state: S, ...) -> tuple[S, ...]``, serves every state that ignores an event.
    """
    hints = typing.get_type_hints(handler)
    returned = hints.get("return")
    if typing.get_origin(returned) is not tuple:
        raise TypeError(f"{handler.__qualname__} must be annotated to return tuple[state | ..., tuple[effect, ...]]")
    first = typing.get_args(returned)[0]
    is_union = isinstance(first, types.UnionType) or typing.get_origin(first) is typing.Union
    members = [
        state_class if isinstance(member, TypeVar) else member
        for member in (typing.get_args(first) if is_union else (first,))
    ]
    if not all(isinstance(member, type) for member in members):
        raise TypeError(f"{handler.__qualname__}: the states it returns must be classes, not {first!r}")
    return frozenset(members)


class Driver(Generic[StateT, EventT, EffectT]):
    """Holds the current state of one machine and feeds it events: the one mutable object a caller holds.

    Copying or pickling a driver raises :class:`TypeError`: two drivers would be two holders of one channel.
    """

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

    # A copy would be a second driver of the same channel: two callers sealing from one state. Refused outright.
    def __copy__(self) -> Driver[StateT, EventT, EffectT]:
        raise TypeError("a Driver cannot be copied: it is the one holder of its machine's current state")

    def __deepcopy__(self, memo: dict[int, object]) -> Driver[StateT, EventT, EffectT]:
        raise TypeError("a Driver cannot be copied: it is the one holder of its machine's current state")

    def __reduce__(self) -> NoReturn:
        raise TypeError("a Driver cannot be pickled: it is the one holder of its machine's current state")


# ---------------------------------------------------------------------------------------------------------------
# States that move on once, and the one way to fork them.


class Guard:
    """Base of the one mutable record inside an otherwise immutable value, shared by every copy of that value.

    A machine whose states hold keys must not let a caller move on from the same state twice: two seals from one
    state are two plaintexts under one key and nonce, two moves from a state awaiting a check code are two guesses.
    Such a machine keeps, per run, one record of how far the run has got (a subclass of this, e.g.
    :class:`qrlogin.channel._common.ChannelCursor`) and puts it in every state of the run. A transition first checks
    that its state stands where the record says the run stands and moves the record on; a state the run has left
    behind is refused with :class:`~qrlogin.errors.LocalProtocolError` before anything changes.

    That only works if copies cannot multiply the record, so :func:`copy.copy`, :func:`copy.deepcopy`,
    :func:`dataclasses.replace` and :func:`dataclasses.asdict` all hand on this very object, and pickling is refused
    (an unpickled state would carry a record of its own). The only way to give a value records of its own is
    :func:`fork_for_exploration`. Subclasses declare ``__slots__`` holding plain values (numbers, flags).
    """

    __slots__ = ()

    def __copy__(self) -> Self:
        return self

    def __deepcopy__(self, memo: dict[int, object]) -> Self:
        return self

    def __reduce__(self) -> NoReturn:
        raise TypeError("a state that holds keys cannot be pickled: an unpickled copy could seal again under one nonce")

    def _forked(self) -> Self:
        """A new record in the same status (for :func:`fork_for_exploration` only)."""
        fresh = object.__new__(type(self))
        for cls in type(self).__mro__:
            for name in getattr(cls, "__slots__", ()):
                object.__setattr__(fresh, name, object.__getattribute__(self, name))
        return fresh


T = TypeVar("T")


class ForkCache:
    """Remembers the immutable sub-values that hold no guard, so that forking many related values (the worlds of an
    exploration, which share most of their parts) walks each unchanged part once."""

    __slots__ = ("_plain",)

    def __init__(self) -> None:
        self._plain: dict[int, object] = {}


def fork_for_exploration(value: T, *, cache: ForkCache | None = None) -> T:
    """A copy of ``value`` in which every :class:`Guard` is replaced by a new one in the same status.

    For simulators and explorers only: they continue one state along several branches, and each branch must be able
    to move its own copy on. An embedder never needs this; a channel that forks can seal twice under one nonce.

    The walk enters dataclass instances (every field), tuples, lists, sets, frozensets and mappings; whatever else it
    meets is kept as it is. A guard shared by several values (every state of one channel, a state and its copies)
    stays shared in the fork. Parts that hold no guard are not copied. A guard hidden anywhere the walk does not
    enter stays shared with the original, so a branch that uses it makes the other branch fail loudly, never seal
    twice. ``cache`` carries what was learnt about guard-free parts from one call to the next.
    """
    forked, _ = _Fork(cache._plain if cache is not None else {}).walk(value)
    result: T = forked
    return result


_LEAF, _GUARD, _DATACLASS, _SEQUENCE, _MAPPING = range(5)
#: How the fork walk treats each type it has met: one of the kinds above, plus for dataclasses the field names,
#: whether the class is frozen, and whether a bare ``object.__new__`` plus those fields rebuilds an instance.
_KINDS: dict[type, tuple[int, tuple[str, ...], bool, bool]] = {}


def _kind(cls: type) -> tuple[int, tuple[str, ...], bool, bool]:
    known = _KINDS.get(cls)
    if known is not None:
        return known
    if issubclass(cls, str | bytes | int | float | complex | enum.Enum | type) or cls is type(None):
        kind: tuple[int, tuple[str, ...], bool, bool] = (_LEAF, (), True, False)
    elif issubclass(cls, Guard):
        kind = (_GUARD, (), False, False)
    elif dataclasses.is_dataclass(cls):
        names = tuple(field.name for field in dataclasses.fields(cls))
        slotted = all("__slots__" in klass.__dict__ for klass in cls.__mro__[:-1])  # no instance __dict__
        slots = {name for klass in cls.__mro__ for name in klass.__dict__.get("__slots__", ())}
        plain_slots = slotted and slots == set(names)
        kind = (_DATACLASS, names, cls.__dataclass_params__.frozen, plain_slots)  # type: ignore[attr-defined]
    elif issubclass(cls, tuple | list | set | frozenset):
        kind = (_SEQUENCE, (), False, False)
    elif issubclass(cls, Mapping):
        kind = (_MAPPING, (), False, False)
    else:
        kind = (_LEAF, (), True, False)
    _KINDS[cls] = kind
    return kind


class _Fork:
    """One fork: ``walk`` returns ``(copy, immutable_and_guard_free)`` for a value, each shared part once."""

    __slots__ = ("_memo", "_plain")

    def __init__(self, plain: dict[int, object]) -> None:
        self._memo: dict[int, tuple[Any, bool]] = {}
        self._plain = plain

    def walk(self, value: Any) -> tuple[Any, bool]:
        kind, names, frozen, plain_slots = _KINDS.get(type(value)) or _kind(type(value))
        if kind == _LEAF:
            return value, True
        key = id(value)
        seen = self._memo.get(key)
        if seen is not None:
            return seen
        if self._plain.get(key) is value:
            return value, True
        if kind == _GUARD:
            result: tuple[Any, bool] = (value._forked(), False)
        elif kind == _DATACLASS:
            result = self._dataclass(value, names, frozen, plain_slots)
        elif kind == _SEQUENCE:
            result = self._sequence(value)
        else:
            result = self._mapping(value)
        self._memo[key] = result
        if result[1]:
            self._plain[key] = value  # keeps value alive, so its id cannot be reused by another object
        return result

    def _items(self, olds: Iterable[Any]) -> tuple[list[Any], bool, bool]:
        """The walked ``olds``, whether all are unchanged, and whether all are immutable and guard-free."""
        news: list[Any] = []
        same = pure = True
        plain = self._plain
        for old in olds:
            # Most items are leaves, or parts known to hold no guard: no call for those.
            if (_KINDS.get(type(old)) or _kind(type(old)))[0] == _LEAF or plain.get(id(old)) is old:
                news.append(old)
                continue
            new, new_pure = self.walk(old)
            news.append(new)
            same = same and new is old
            pure = pure and new_pure
        return news, same, pure

    def _dataclass(self, value: Any, names: tuple[str, ...], frozen: bool, plain_slots: bool) -> tuple[Any, bool]:
        olds = [getattr(value, name) for name in names]
        news, same, pure = self._items(olds)
        if same:
            return value, frozen and pure
        if plain_slots:  # every slot is a field: a new instance is those fields, stored as __init__ stores them
            copied = object.__new__(type(value))
            for name, new in zip(names, news, strict=True):
                object.__setattr__(copied, name, new)
            return copied, False
        copied = copy.copy(value)
        for name, new, old in zip(names, news, olds, strict=True):
            if new is not old:
                object.__setattr__(copied, name, new)
        return copied, False

    def _sequence(self, value: Any) -> tuple[Any, bool]:
        news, same, pure = self._items(value)
        if same:
            return value, pure and isinstance(value, tuple | frozenset)
        if hasattr(value, "_make"):  # a named tuple
            return value._make(news), False
        return type(value)(news), False

    def _mapping(self, value: Any) -> tuple[Any, bool]:
        keys, same_keys, pure_keys = self._items(value.keys())
        values, same_values, pure_values = self._items(value.values())
        if same_keys and same_values:
            return value, pure_keys and pure_values and not isinstance(value, dict)
        rebuild: Any = type(value)  # a mapping type built from a dict, as dict and FrozenMap are
        return rebuild(dict(zip(keys, values, strict=True))), False
