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

A secure channel builds an event, a state and an effect for every message, and on CPython the generated
``__init__`` of a frozen dataclass costs as much as the ChaCha20-Poly1305 call. :func:`slot_init` gives such a class
an equivalent ``__init__`` that stores through the slot descriptors; :func:`slot_setters` hands those descriptors to
the few per-message handlers that skip the class call altogether. Both keep the values frozen dataclasses, equal to
what the dataclass ``__init__`` would build, and refuse at import time a class they could not build faithfully.
"""

from __future__ import annotations

import dataclasses
import inspect
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
