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

:class:`Driver` holds the current state for callers who prefer an object to threading values through.
"""

from __future__ import annotations

import dataclasses
import inspect
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any, Generic, Protocol, TypeVar

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


Handler = Callable[[Any, Any, int], tuple[Any, tuple[Any, ...]]]
"""``handler(state, event, now_ms) -> (new_state, effects)``; annotated with the states it can return."""


class Machine(Generic[StateT, EventT, EffectT]):
    """One machine's transitions table, and the check, queries and diagram that derive from it.

    ``initial`` names the states a machine is created in (by its ``start`` functions); it only marks the diagram.
    """

    __slots__ = ("_targets", "initial", "name", "transitions")

    def __init__(
        self,
        name: str,
        transitions: Mapping[tuple[type, type], Handler],
        *,
        initial: tuple[type, ...] = (),
    ) -> None:
        self.name = name
        self.transitions = dict(transitions)
        self.initial = initial
        self._targets: dict[tuple[type, type], frozenset[type]] | None = None

    def transition(self, state: StateT, event: EventT, now_ms: int) -> tuple[StateT, tuple[EffectT, ...]]:
        """Perform ``event`` in ``state``; a pair that is not in the table raises before anything changes."""
        handler = self.transitions.get((type(state), type(event)))
        if handler is None:
            raise LocalProtocolError(self._illegal(state, event))
        result: tuple[StateT, tuple[EffectT, ...]] = handler(state, event, now_ms)
        return result

    def _illegal(self, state: object, event: object) -> str:
        if type(state) not in self.states:
            return f"{type(state).__name__} is not a state of the {self.name} machine"
        return f"{type(event).__name__} is not legal in {self.name} state {type(state).__name__}"

    def legal_events(self, state_class: type) -> frozenset[type]:
        """The event classes ``state_class`` accepts (none for a terminal state)."""
        return frozenset(event for state, event in self.transitions if state is state_class)

    def is_terminal(self, state: object) -> bool:
        """True for a state that accepts no event."""
        return not self.legal_events(type(state))

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

    A type variable there stands for the state the handler was given (``def _ignore(state: S, ...) -> tuple[S, ...]``
    serves every state that ignores an event), so it is read as ``state_class``.
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


# ---------------------------------------------------------------------------------------------------------------
# Cheaper construction for the values built on every message.

ClassT = TypeVar("ClassT", bound=type)

#: Every class :func:`slot_init` has decorated, with the ``__init__`` dataclasses generated for it (the tests build
#: each class both ways and compare).
SLOT_INIT_ORIGINALS: dict[type, Callable[..., None]] = {}


def slot_init(cls: ClassT) -> ClassT:
    """Give a frozen, slotted dataclass an ``__init__`` that fills each slot through its member descriptor.

    The ``__init__`` that :func:`dataclasses.dataclass` generates for a frozen class stores every field with
    ``object.__setattr__(self, name, value)``, which looks the name up on the type again for each field; on the
    channel's per-message path (one event, one state and one effect per payload) that costs about as much as the
    ChaCha20-Poly1305 call. The replacement has the same signature, defaults and annotations, calls
    ``__post_init__`` as before, and stores the same values through the slot descriptors directly, so instances are
    identical, compare equal and stay frozen (``tests/test_machine.py`` checks this for every decorated class).

    Only what the hot classes use is supported: no ``default_factory``, no ``InitVar``; anything else is refused when
    the class is defined, never silently mishandled.
    """
    fields = dataclasses.fields(cls) if dataclasses.is_dataclass(cls) else ()
    setters = slot_setters(cls, *(field.name for field in fields))  # refuses anything not frozen and slotted
    original = cls.__dict__["__init__"]
    namespace: dict[str, object] = {}
    arguments: list[str] = []
    for name, parameter in list(inspect.signature(original).parameters.items())[1:]:
        if parameter.kind is inspect.Parameter.KEYWORD_ONLY and "*" not in arguments:
            arguments.append("*")
        if parameter.default is inspect.Parameter.empty:
            arguments.append(name)
        else:
            namespace[f"_default_{name}"] = parameter.default
            arguments.append(f"{name}=_default_{name}")
    if len(arguments) - ("*" in arguments) != sum(field.init for field in fields):
        raise TypeError(f"slot_init does not support InitVar ({cls.__name__})")
    body: list[str] = []
    for field, setter in zip(fields, setters, strict=True):
        if field.default_factory is not dataclasses.MISSING:
            raise TypeError(f"slot_init does not support default_factory ({cls.__name__}.{field.name})")
        namespace[f"_set_{field.name}"] = setter
        if field.init:
            body.append(f"    _set_{field.name}(self, {field.name})")
        elif field.default is not dataclasses.MISSING:
            namespace[f"_default_{field.name}"] = field.default
            body.append(f"    _set_{field.name}(self, _default_{field.name})")
    if hasattr(cls, "__post_init__"):
        body.append("    self.__post_init__()")
    source = f"def __init__(self, {', '.join(arguments)}) -> None:\n" + ("\n".join(body) or "    pass") + "\n"
    exec(source, namespace)  # noqa: S102 -- built above from the dataclass's own field names, nothing else
    generated = namespace["__init__"]
    generated.__qualname__ = f"{cls.__qualname__}.__init__"  # type: ignore[attr-defined]
    generated.__annotations__ = dict(original.__annotations__)
    generated.__doc__ = original.__doc__
    type.__setattr__(cls, "__init__", generated)
    SLOT_INIT_ORIGINALS[cls] = original
    return cls


def slot_setters(cls: type, *names: str) -> tuple[Callable[[Any, Any], None], ...]:
    """The slot setters of ``names``, for a per-message path that builds a frozen value without calling its class.

    Such a path does what ``__init__`` does, in fewer steps: ``object.__new__(cls)``, then one setter call per field.
    ``names`` must be every field of the frozen, slotted dataclass ``cls``, each once, so that a field added later
    fails the import instead of leaving a slot unset. The builder is responsible for passing values ``__init__`` would
    have accepted; its tests compare the result with an ``__init__``-built value.
    """
    params = getattr(cls, "__dataclass_params__", None)
    if params is None or not params.frozen or "__slots__" not in cls.__dict__:
        raise TypeError(f"{cls.__name__} is not a frozen dataclass with slots")
    declared = [field.name for field in dataclasses.fields(cls)]
    if sorted(names) != sorted(declared):
        raise TypeError(f"slot_setters({cls.__name__}) must name every field once: {', '.join(declared)}")
    return tuple(cls.__dict__[name].__set__ for name in names)
