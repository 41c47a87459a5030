"""qrlogin.device's transitions table: every (state, event) pair, where each move leads, spurious timers.

The samples are devices the simulator actually reaches: seeded schedules over every generation and direction, with
faults and the attacker, step by step. Every move the simulator makes is recorded as (state before, event, state
after) and must be one the table allows; on top of that every sample is sent every event class the device knows.
"""

from __future__ import annotations

import functools
import itertools
import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qrlogin import device as dv
from qrlogin import qr
from qrlogin._machine import fork_for_exploration
from qrlogin.device import MACHINE, State
from qrlogin.device import machine as device_machine
from qrlogin.errors import LocalProtocolError
from qrlogin.http import HttpResponse
from qrlogin.rendezvous import client as rz
from qrlogin.sim import Faults, Scenario
from qrlogin.sim.world import World, actions, new_world, step
from qrlogin.vocabulary import (
    CheckCodeEntered,
    DeviceRole,
    HttpRequestFailed,
    HttpResponseReceived,
    TimerFired,
    UserCancelled,
    VerificationUriOpened,
    VerificationUriUnavailable,
)

EVENT_CLASSES: tuple[type, ...] = (
    HttpResponseReceived,
    HttpRequestFailed,
    TimerFired,
    CheckCodeEntered,
    VerificationUriOpened,
    VerificationUriUnavailable,
    UserCancelled,
)
FAULTS = (
    Faults(),
    Faults(cancels=1),
    Faults(drops=2),
    Faults(denials=1, cancels=1),
    Faults(drops=1, duplicates=1, delays=1, cancels=1, denials=1, overwrites=1),
)
STATES = tuple(sorted(MACHINE.states, key=lambda cls: cls.__name__))
Edge = tuple[type, type, type]


@dataclass(frozen=True, slots=True, kw_only=True)
class Sample:
    device: State
    now_ms: int
    answers: tuple[tuple[int, HttpResponse], ...]  # the real answers on their way to this device


def _outstanding(device: State) -> list[int]:
    requests = getattr(device, "requests", None)
    if requests is None:
        return []
    pairs = (requests.rendezvous, requests.login)
    found = [pair[0] for pair in pairs if pair is not None]
    if isinstance(device, dv.AwaitingDiscovery):
        found.append(requests.issued)
    return found


def _issued(device: State) -> int:
    requests = getattr(device, "requests", None)
    return 0 if requests is None else int(requests.issued)


def _worlds(runs: int) -> Iterator[World]:
    rnd = random.Random(4108)  # noqa: S311 - a reproducible schedule, not a secret
    for index in range(runs):
        scenario = Scenario(
            generation=tuple(qr.Generation)[index % 3],
            qr_on=tuple(DeviceRole)[index // 3 % 2],
            attacker=index % 4 == 3,
            faults=FAULTS[index % len(FAULTS)],
            user_guess=rnd.choice(("11", "42")),
        )
        world = new_world(scenario)
        for choice in [rnd.randrange(1 << 16) for _ in range(rnd.randrange(250))] + [0] * 500:
            yield world
            options = actions(world)
            if not options:
                break
            world = step(world, options[choice % len(options)])


def _cancelling_worlds() -> Iterator[World]:
    """Fair runs in which the user cancels on one device after k steps: every stretch of the closing rules."""
    for generation in qr.Generation:
        for qr_on in DeviceRole:
            for who in ("new", "existing"):
                for k in range(0, 40, 3):
                    world = new_world(Scenario(generation=generation, qr_on=qr_on, faults=Faults(cancels=1)))
                    for index in range(500):
                        yield world
                        options = actions(world)
                        if not options:
                            break
                        cancel = [o for o in options if o.kind == "cancel" and o.actor == who]
                        world = step(world, cancel[0] if index >= k and cancel else options[0])


@functools.cache
def corpus() -> tuple[dict[type, list[Sample]], frozenset[Edge]]:
    """Samples per state class (one per shape of device) and every move the simulator made."""
    edges: set[Edge] = set()
    original = dv.transition

    def recording(state: State, event: dv.Event, *, now_ms: int) -> tuple[State, tuple[dv.Effect, ...]]:
        after, effects = original(state, event, now_ms=now_ms)
        edges.add((type(state), type(event), type(after)))
        return after, effects

    samples: dict[type, list[Sample]] = {cls: [] for cls in STATES}
    seen: set[tuple[object, ...]] = set()
    dv.transition = recording
    try:
        for world in itertools.chain(_worlds(150), _cancelling_worlds()):
            for actor in world.actors:
                device = actor.device
                # One sample per shape: which side, which generation, what each sub-machine is doing.
                key = (
                    type(device),
                    device.config.kind,
                    device.config.generation,
                    getattr(device, "side", None),
                    type(getattr(device, "login", None)),
                    type(dv.channel(device)),
                    type(getattr(device, "rendezvous", None)),
                    len(_outstanding(device)),
                    bool(getattr(device, "outbox", ())),
                )
                if key in seen:
                    continue
                seen.add(key)
                answers = tuple(
                    (item.request_id, item.response)
                    for item in world.pending
                    if item.actor == actor.name and item.response is not None
                )
                # A fork: the run goes on from this device, and a channel state moves on once.
                samples[type(device)].append(
                    Sample(device=fork_for_exploration(device), now_ms=world.now_ms, answers=answers)
                )
    finally:
        dv.transition = original
    return samples, frozenset(edges)


def events_for(sample: Sample) -> dict[type, list[tuple[Any, int]]]:
    """Events of each class with the time to deliver them, aimed where the device can take them: HTTP answers for
    each outstanding request (the real answer if the simulator had one on its way, else a 500), timers both when
    due and early."""
    device, now = sample.device, sample.now_ms
    issued = _issued(device)
    targets = _outstanding(device) or ([issued] if issued > 0 else [])
    real = dict(sample.answers)
    due = dv.deadline(device)
    timers = [now] if due is None or due > now else []
    timers += [due] if due is not None and due >= now else []
    acts = [now] + ([due + 1] if due is not None and due >= now else [])
    return {
        HttpResponseReceived: [
            (HttpResponseReceived(request_id=rid, response=real.get(rid, HttpResponse(status=500))), now)
            for rid in targets
        ],
        HttpRequestFailed: [(HttpRequestFailed(request_id=rid), now) for rid in targets],
        TimerFired: [(TimerFired(), at) for at in timers],
        # The user may act after a deadline passed and before its timer was delivered (a driver checks timers and
        # acts in some order): the rendezvous client may be over already by then.
        CheckCodeEntered: [(CheckCodeEntered(code="00"), at) for at in acts],
        VerificationUriOpened: [(VerificationUriOpened(), at) for at in acts],
        VerificationUriUnavailable: [(VerificationUriUnavailable(), at) for at in acts],
        UserCancelled: [(UserCancelled(), at) for at in acts],
    }


@functools.cache
def moves() -> frozenset[Edge]:
    """The simulator's moves plus every legal event sent to every sample."""
    samples, edges = corpus()
    found = set(edges)
    for state_samples in samples.values():
        for sample in state_samples:
            events = events_for(sample)
            for kind in MACHINE.legal_events(type(sample.device)):
                for event, now in events[kind]:
                    after, _ = dv.transition(fork_for_exploration(sample.device), event, now_ms=now)
                    found.add((type(sample.device), kind, type(after)))
    return frozenset(found)


def test_the_machine_knows_every_event_class() -> None:
    assert MACHINE.events == frozenset(EVENT_CLASSES)
    assert MACHINE.initial == (dv.AwaitingSession, dv.AwaitingDiscovery, dv.AwaitingHandshake, dv.SignInFailed)
    terminal = [cls.__name__ for cls in STATES if MACHINE.is_terminal(object.__new__(cls))]
    assert terminal == ["SignInFailed", "SignInSucceeded"]


def test_every_state_is_reached() -> None:
    samples, _ = corpus()
    assert all(samples[cls] for cls in STATES), [cls.__name__ for cls in STATES if not samples[cls]]


@pytest.mark.parametrize("current", STATES, ids=lambda cls: cls.__name__)
def test_every_state_event_pair(current: type) -> None:
    """Pairs outside the table raise LocalProtocolError before anything changes; pairs in it are taken and lead where
    the table says. Device values are immutable, so "unchanged" means the caller still holds the same device."""
    legal = MACHINE.legal_events(current)
    for sample in corpus()[0][current]:
        device = sample.device
        events = events_for(sample)
        for kind in EVENT_CLASSES:
            # A device that issued no request yet gets no HTTP answer; every other class has an event.
            assert events[kind] or kind in (HttpResponseReceived, HttpRequestFailed)
            for event, now in events[kind]:
                if kind in legal:
                    after, _ = dv.transition(fork_for_exploration(device), event, now_ms=now)
                    assert type(after) in MACHINE.targets(current, kind), (current, kind, after)
                else:
                    with pytest.raises(LocalProtocolError, match=f"not legal in device state {current.__name__}"):
                        dv.transition(device, event, now_ms=now)
            assert type(device) is current


def test_every_move_the_simulator_makes_is_in_the_table() -> None:
    allowed = {
        (state, event, target) for (state, event) in MACHINE.transitions for target in MACHINE.targets(state, event)
    }
    assert moves() <= allowed, sorted((a.__name__, b.__name__, c.__name__) for a, b, c in moves() - allowed)


def test_most_edges_of_the_table_are_seen() -> None:
    """The annotations are what the code can do; the simulator's runs reach nearly all of it (the rest are paths that
    need a fault the corpus's seeds do not draw, e.g. a login timer that fires while a deletion is due)."""
    allowed = {
        (state, event, target) for (state, event) in MACHINE.transitions for target in MACHINE.targets(state, event)
    }
    unseen = allowed - moves()
    assert len(unseen) <= len(allowed) // 4, sorted((a.__name__, b.__name__, c.__name__) for a, b, c in unseen)


def test_live_states_are_exactly_those_of_a_running_login() -> None:
    running: tuple[type, ...] = (
        dv.AwaitingSession,
        dv.AwaitingDiscovery,
        dv.AwaitingHandshake,
        dv.AwaitingCheckCodeEntry,
    )
    running += (dv.AwaitingConsent, dv.AwaitingLogin)
    for current, state_samples in corpus()[0].items():
        for sample in state_samples:
            assert (dv.outcome(sample.device) is None) is (current in running)
            finished = current in (dv.SignInSucceeded, dv.SignInFailed)
            assert dv.is_done(sample.device) is finished
            deleting = isinstance(sample.device, dv.AwaitingDeletion) and isinstance(
                sample.device.rendezvous, rz.Deleting
            )
            untimed = finished or deleting or current is dv.AwaitingDiscovery
            assert (dv.deadline(sample.device) is None) is untimed


def test_answers_to_requests_no_longer_outstanding_are_ignored() -> None:
    for state_samples in corpus()[0].values():
        for sample in state_samples:
            device = sample.device
            if dv.is_done(device):
                continue
            stale = set(range(1, _issued(device) + 1)) - set(_outstanding(device))
            for rid in sorted(stale)[-3:]:
                for event in (
                    HttpResponseReceived(request_id=rid, response=HttpResponse(status=200)),
                    HttpRequestFailed(request_id=rid),
                ):
                    assert dv.transition(device, event, now_ms=sample.now_ms) == (device, ())


def test_generate_and_scan_start_where_the_table_says() -> None:
    config = dv.DeviceConfig(
        kind=DeviceRole.NEW, generation=qr.Generation.V3, seed=b"x" * 32, base_url="https://hs.example",
        server_name="hs", device_id="D", client_id="c",
    )  # fmt: skip
    assert type(dv.generate(config, now_ms=0)[0]) in MACHINE.initial
    assert isinstance(dv.scan(config, b"not a QR code", now_ms=0)[0], dv.SignInFailed)


def test_every_handler_states_where_it_leads() -> None:
    """The table's handlers are the module's, and each names the states it returns (the diagram is drawn from them)."""
    for (state, event), handler in MACHINE.transitions.items():
        assert getattr(device_machine, handler.__name__) is handler
        assert MACHINE.targets(state, event), (state.__name__, event.__name__)


def test_a_due_timer_always_moves_the_device() -> None:
    """At ``deadline(state)`` something happens (a poll, a resend, a deletion, an ending): a deadline that changes
    nothing would have an embedder, or the simulator's clock, fire it again and again."""
    for state_samples in corpus()[0].values():
        for sample in state_samples:
            due = dv.deadline(sample.device)
            if due is None:
                continue
            after, effects = dv.transition(sample.device, TimerFired(), now_ms=max(due, sample.now_ms))
            assert (after, effects) != (sample.device, ()), sample.device


@st.composite
def _mid_run(draw: st.DrawFn) -> tuple[World, int]:
    scenario = Scenario(
        generation=draw(st.sampled_from(tuple(qr.Generation))),
        qr_on=draw(st.sampled_from(tuple(DeviceRole))),
        attacker=draw(st.booleans()),
        faults=draw(st.sampled_from(FAULTS)),
    )
    world = new_world(scenario)
    for choice in draw(st.lists(st.integers(0, 1 << 16), max_size=80)):
        options = actions(world)
        if not options:
            break
        world = step(world, options[choice % len(options)])
    return world, draw(st.integers(0, 10**6))


@settings(max_examples=60, deadline=None)
@given(_mid_run(), st.data())
def test_spurious_timers_change_nothing(mid: tuple[World, int], data: st.DataObject) -> None:
    """A TimerFired before :func:`deadline` (or when none is due) returns the same device and no effect."""
    world, offset = mid
    for actor in world.actors:
        if dv.is_done(actor.device):
            continue
        due = dv.deadline(actor.device)
        if due is not None and due <= world.now_ms:
            continue
        now = world.now_ms + offset if due is None else data.draw(st.integers(world.now_ms, due - 1))
        assert dv.transition(actor.device, TimerFired(), now_ms=now) == (actor.device, ())
