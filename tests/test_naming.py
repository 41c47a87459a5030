"""The naming rules of :mod:`qrlogin.vocabulary`, enforced over every machine in the package.

A machine is found by importing every module of qrlogin: a module with a ``MACHINE``
(:class:`qrlogin._machine.Machine`) gives its states, terminal states and events from the table, and its effects from
the handlers' return annotations. A module that still has only a ``transition`` function gives its states, events and
effects from that function's annotations, and its terminal states from its ``LEGAL_MOVES``; where those do not name
state classes the state rules are skipped, saying why.

The rules, word by word (a name is split into its CamelCase words):

* an event is in the past tense: its last word is a past participle (:func:`is_participle`) or one of
  :data:`EVENT_ADJECTIVES`;
* an effect is in the imperative: its first word is one of :data:`IMPERATIVE_VERBS`;
* a state that accepts events is named for what it waits for: it starts with one of :data:`WAITING_PREFIXES`, or is
  one of :data:`WAITING_STATES` (each with the reason its name says what it waits for);
* a terminal state says how the machine ended: its last word is a past participle;
* across layers (``qrlogin.<layer>``), no two public dataclasses share a name unless they are the same class.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import pkgutil
import re
import types
import typing
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from types import ModuleType

import pytest

import qrlogin
import qrlogin.vocabulary
from qrlogin._machine import Machine

# ------------------------------------------------------------------------------------------------------ the rules

#: Past participles that do not end in "-ed".
IRREGULAR_PARTICIPLES = frozenset({"Sent", "Lost", "Shown", "Read", "Written"})

#: Last words that make an event a fact without being participles.
EVENT_ADJECTIVES = frozenset({"Unavailable"})

#: The verbs an effect may start with: each tells the embedder what to do.
IMPERATIVE_VERBS = frozenset({"Send", "Show", "Prompt", "Open", "Report", "Deliver", "Delete"})

#: How the name of a state that waits for something starts.
WAITING_PREFIXES = ("Awaiting", "WaitingTo", "ReadyTo")

#: States whose names say what they wait for in another way, and why that reads right.
WAITING_STATES = {
    "Creating": "the POST that creates the session is in flight; the state waits for its answer",
    "Reading": "a GET is in flight; the state waits for its answer",
    "Writing": "a PUT is in flight; the state waits for its answer",
    "Reconciling": "the GET that settles a refused write is in flight; the state waits for its answer",
    "Deleting": "the DELETE is in flight; the state waits for its answer",
    "BackingOff": "the state waits for the time to resend its request",
    "Established": "the channel is up and waits for payloads to seal and open for as long as the login lasts",
}

#: Names that break a rule in a layer whose names are still to be settled: the test lets them pass and warns once one
#: no longer breaks it, so the entry can go.
OUTSTANDING_CLASHES: dict[str, str] = {}


def words(name: str) -> list[str]:
    """``"HttpResponseReceived"`` -> ``["Http", "Response", "Received"]``."""
    return re.findall(r"[A-Z][a-z0-9]*", name)


def is_participle(word: str) -> bool:
    return word.endswith("ed") or word in IRREGULAR_PARTICIPLES


def is_event_name(name: str) -> bool:
    last = words(name)[-1]
    return is_participle(last) or last in EVENT_ADJECTIVES


def is_effect_name(name: str) -> bool:
    return words(name)[0] in IMPERATIVE_VERBS


def is_waiting_state_name(name: str) -> bool:
    starts = any(
        name.startswith(prefix) and name[len(prefix) : len(prefix) + 1].isupper() for prefix in WAITING_PREFIXES
    )
    return starts or name in WAITING_STATES


def is_terminal_state_name(name: str) -> bool:
    return is_participle(words(name)[-1])


@pytest.mark.parametrize(
    ("check", "name", "expected"),
    [
        (is_event_name, "HttpResponseReceived", True),
        (is_event_name, "VerificationUriUnavailable", True),
        (is_event_name, "ReceiveResponse", False),
        (is_event_name, "PayloadArrival", False),
        (is_effect_name, "SendHttpRequest", True),
        (is_effect_name, "ReportLoginFailure", True),
        (is_effect_name, "HttpRequest", False),
        (is_effect_name, "MessageSent", False),
        (is_waiting_state_name, "AwaitingLoginOk", True),
        (is_waiting_state_name, "WaitingToPoll", True),
        (is_waiting_state_name, "ReadyToSend", True),
        (is_waiting_state_name, "Writing", True),
        (is_waiting_state_name, "Awaitingness", False),
        (is_waiting_state_name, "Polling", False),
        (is_terminal_state_name, "LoginSucceeded", True),
        (is_terminal_state_name, "SessionClosed", True),
        (is_terminal_state_name, "Closing", False),
        (is_terminal_state_name, "Failure", False),
    ],
)
def test_the_rules_say_what_they_mean(check: typing.Callable[[str], bool], name: str, expected: bool) -> None:
    assert check(name) is expected


# ---------------------------------------------------------------------------------------------------- discovery


def _import_all() -> list[ModuleType]:
    modules = [qrlogin]
    for info in pkgutil.walk_packages(qrlogin.__path__, "qrlogin."):
        if info.name.rsplit(".", 1)[-1] == "__main__":
            continue  # running it is what importing it does
        try:
            modules.append(importlib.import_module(info.name))
        except ModuleNotFoundError as exc:
            if exc.name is not None and exc.name.split(".")[0] == "qrlogin":
                raise
            # An adapter whose third-party library is not installed here: it defines no machine.
    return modules


MODULES = _import_all()


def _members(annotation: object) -> frozenset[type]:
    """The classes of ``A | B | ...`` (or of a single class); empty if it is anything else."""
    is_union = isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union
    members = typing.get_args(annotation) if is_union else (annotation,)
    return frozenset(member for member in members if isinstance(member, type))


def _effects_of(annotation: object) -> frozenset[type]:
    """The effect classes in a return annotation ``tuple[states, tuple[effects, ...]]``."""
    effects = typing.get_args(typing.get_args(annotation)[1])
    return _members(effects[0]) if effects else frozenset()  # tuple[()]: a move with no effect


@dataclass(frozen=True)
class Vocabulary:
    """What one machine calls its states, events and effects."""

    module: str
    events: frozenset[type]
    effects: frozenset[type]
    states: frozenset[type] = frozenset()
    terminal: frozenset[type] = frozenset()
    states_skipped: str | None = None


def _from_machine(module: ModuleType, machine: Machine[object, object, object]) -> Vocabulary:
    effects = frozenset().union(
        *(_effects_of(typing.get_type_hints(handler)["return"]) for handler in machine.transitions.values())
    )
    return Vocabulary(
        module=module.__name__,
        events=machine.events,
        effects=effects,
        states=machine.states,
        terminal=frozenset(state for state in machine.states if not machine.legal_events(state)),
    )


def _from_transition(module: ModuleType) -> Vocabulary:
    hints = typing.get_type_hints(module.transition)
    state_parameter, event_parameter = list(inspect.signature(module.transition).parameters)[:2]
    events = _members(hints[event_parameter])
    effects = _effects_of(hints["return"])
    table = getattr(module, "LEGAL_MOVES", None)
    if table is None:
        reason = f"{module.__name__} has neither MACHINE nor LEGAL_MOVES to tell its terminal states"
        return Vocabulary(module=module.__name__, events=events, effects=effects, states_skipped=reason)
    if not all(isinstance(key, type) for key in table):
        kind = type(next(iter(table))).__name__
        reason = (
            f"{module.__name__}'s states are {kind} values read off one "
            f"{'/'.join(sorted(c.__name__ for c in _members(hints[state_parameter])))} value, not classes"
        )
        return Vocabulary(module=module.__name__, events=events, effects=effects, states_skipped=reason)
    return Vocabulary(
        module=module.__name__,
        events=events,
        effects=effects,
        states=frozenset(table),
        terminal=frozenset(state for state, accepted in table.items() if not accepted),
    )


def _discover() -> list[Vocabulary]:
    found: list[Vocabulary] = []
    for module in MODULES:
        machine = vars(module).get("MACHINE")
        transition = vars(module).get("transition")
        if isinstance(machine, Machine):
            found.append(_from_machine(module, machine))
        elif inspect.isfunction(transition) and transition.__module__ == module.__name__:
            found.append(_from_transition(module))
    return found


MACHINES = {vocabulary.module: vocabulary for vocabulary in _discover()}


def test_every_layer_with_a_machine_is_covered() -> None:
    layers = {name.split(".")[1] for name in MACHINES}
    assert {"rendezvous", "login", "channel", "device"} <= layers, sorted(MACHINES)
    assert {"qrlogin.rendezvous.client", "qrlogin.login.new_device", "qrlogin.login.existing_device"} <= set(MACHINES)
    converted = {name for name in MACHINES if isinstance(vars(importlib.import_module(name)).get("MACHINE"), Machine)}
    assert {"qrlogin.rendezvous.client", "qrlogin.login.new_device", "qrlogin.login.existing_device"} <= converted


# ------------------------------------------------------------------------------------------------- per machine


def _violations(classes: Iterable[type], rule: typing.Callable[[str], bool]) -> list[str]:
    return sorted(f"{cls.__module__}.{cls.__name__}" for cls in classes if not rule(cls.__name__))


@pytest.mark.parametrize("module", sorted(MACHINES))
def test_events_are_in_the_past_tense(module: str) -> None:
    assert MACHINES[module].events
    assert _violations(MACHINES[module].events, is_event_name) == []


@pytest.mark.parametrize("module", sorted(MACHINES))
def test_effects_are_imperative(module: str) -> None:
    assert MACHINES[module].effects
    assert _violations(MACHINES[module].effects, is_effect_name) == []


@pytest.mark.parametrize("module", sorted(MACHINES))
def test_states_are_named_for_what_they_wait_for_or_how_the_machine_ended(module: str) -> None:
    vocabulary = MACHINES[module]
    if vocabulary.states_skipped is not None:
        pytest.skip(vocabulary.states_skipped)
    assert vocabulary.terminal, "every machine ends"
    assert _violations(vocabulary.states - vocabulary.terminal, is_waiting_state_name) == []
    assert _violations(vocabulary.terminal, is_terminal_state_name) == []


# ------------------------------------------------------------------------------------------------- across layers


def _public_dataclasses() -> dict[str, set[type]]:
    by_name: dict[str, set[type]] = {}
    for module in MODULES:
        for name, value in vars(module).items():
            if (
                not name.startswith("_")
                and inspect.isclass(value)
                and dataclasses.is_dataclass(value)
                and value.__module__.split(".")[0] == "qrlogin"
            ):
                by_name.setdefault(value.__name__, set()).add(value)
    return by_name


def _layer(cls: type) -> str:
    parts = cls.__module__.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def test_a_name_means_one_class_across_layers() -> None:
    """``HttpResponseReceived`` in the login layer is the vocabulary's class, not a look-alike; within one layer two
    machines may each have, say, an ``AwaitingChannel`` of their own."""
    by_name = _public_dataclasses()
    assert by_name["HttpResponseReceived"] == {qrlogin.vocabulary.HttpResponseReceived}
    clashes = {
        name: sorted(f"{cls.__module__}.{name}" for cls in classes)
        for name, classes in by_name.items()
        if len({_layer(cls) for cls in classes}) > 1
    }
    for name in sorted(set(OUTSTANDING_CLASHES) - set(clashes)):
        warnings.warn(f"{name} no longer names classes in two layers: drop it from OUTSTANDING_CLASHES", stacklevel=1)
    assert {name: where for name, where in clashes.items() if name not in OUTSTANDING_CLASHES} == {}
