"""qrlogin.device's legal moves: every (phase, event kind) pair, where each move leads, spurious timers, the docs.

The samples are devices the simulator actually reaches: seeded schedules over every generation and direction, with
faults and the attacker, step by step. Every move the simulator makes is recorded as (phase before, event kind,
phase after); on top of that every sample is sent every event kind.
"""

from __future__ import annotations

import functools
import random
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qrlogin import device as dv
from qrlogin import qr
from qrlogin._machine import fork_for_exploration, is_terminal
from qrlogin.device import LEGAL_MOVES, OUTCOMES, Device, Phase, phase
from qrlogin.errors import LocalProtocolError
from qrlogin.http import HttpResponse
from qrlogin.login import existing_device, new_device
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

DOC = Path(__file__).resolve().parent.parent / "docs" / "simulation.md"
EVENT_KINDS: tuple[type, ...] = (
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
Edge = tuple[Phase, type, Phase]


@dataclass(frozen=True, slots=True, kw_only=True)
class Sample:
    device: Device
    now_ms: int
    answers: tuple[tuple[int, HttpResponse], ...]  # the real answers on their way to this device


def _outstanding(device: Device) -> list[int]:
    ids = [rid for rid, _ in device.rz_requests]
    login = [device.login_request[0]] if device.login_request is not None else []
    discovery = [device.discovery_request] if device.discovery_request is not None else []
    return ids + login + discovery


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


@functools.cache
def corpus() -> tuple[dict[Phase, list[Sample]], frozenset[Edge]]:
    """Samples per phase (a spread of them) and every move the simulator made."""
    edges: set[Edge] = set()
    original = dv.transition

    def recording(device: Device, event: dv.DeviceEvent, *, now_ms: int) -> dv.Result:
        after, effects = original(device, event, now_ms=now_ms)
        edges.add((phase(device), type(event), phase(after)))
        return after, effects

    samples: dict[Phase, list[Sample]] = {p: [] for p in Phase}
    seen: set[tuple[object, ...]] = set()
    dv.transition = recording
    try:
        for world in _worlds(150):
            for actor in world.actors:
                device = actor.device
                current = phase(device)
                # One sample per shape: which side, which generation, what each sub-machine is doing.
                key = (
                    current,
                    device.config.kind,
                    device.config.generation,
                    device.role,
                    type(device.login),
                    type(device.channel),
                    type(device.rendezvous),
                    len(_outstanding(device)),
                    bool(device.outbox),
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
                samples[current].append(
                    Sample(device=fork_for_exploration(device), now_ms=world.now_ms, answers=answers)
                )
    finally:
        dv.transition = original
    return samples, frozenset(edges)


def events_for(sample: Sample) -> dict[type, list[tuple[Any, int]]]:
    """Events of each kind with the time to deliver them, aimed where the device can take them: HTTP answers for
    each outstanding request (the real answer if the simulator had one on its way, else a 500), timers both when
    due and early."""
    device, now = sample.device, sample.now_ms
    issued = device.next_request_id - 1
    targets = _outstanding(device) or ([issued] if issued > 0 else [])
    real = dict(sample.answers)
    due = dv.next_timer(device)
    timers = [now] if due is None or due > now else []
    timers += [due] if due is not None and due >= now else []
    return {
        HttpResponseReceived: [
            (HttpResponseReceived(request_id=rid, response=real.get(rid, HttpResponse(status=500))), now)
            for rid in targets
        ],
        HttpRequestFailed: [(HttpRequestFailed(request_id=rid), now) for rid in targets],
        TimerFired: [(TimerFired(), at) for at in timers],
        CheckCodeEntered: [(CheckCodeEntered(code="00"), now)],
        VerificationUriOpened: [(VerificationUriOpened(), now)],
        VerificationUriUnavailable: [(VerificationUriUnavailable(), now)],
        UserCancelled: [(UserCancelled(), now)],
    }


@functools.cache
def moves() -> frozenset[Edge]:
    """The simulator's moves plus every legal event sent to every sample."""
    samples, edges = corpus()
    found = set(edges)
    for phase_samples in samples.values():
        for sample in phase_samples:
            before = phase(sample.device)
            events = events_for(sample)
            for kind in LEGAL_MOVES[before]:
                for event, now in events[kind]:
                    after, _ = dv.transition(fork_for_exploration(sample.device), event, now_ms=now)
                    found.add((before, kind, phase(after)))
    return frozenset(found)


def test_every_phase_is_reached() -> None:
    samples, _ = corpus()
    assert all(samples[p] for p in Phase), [p for p in Phase if not samples[p]]


@pytest.mark.parametrize("current", tuple(Phase), ids=lambda p: p.value)
def test_every_phase_event_pair(current: Phase) -> None:
    """Illegal kinds raise LocalProtocolError (before anything changes: the phase check comes first); legal ones
    are taken. Device values are immutable, so "unchanged" means the caller still holds a device in ``current``."""
    for sample in corpus()[0][current]:
        device = sample.device
        events = events_for(sample)
        for kind in EVENT_KINDS:
            # HTTP kinds are legal everywhere; a device that issued no request yet gets none of them.
            assert events[kind] or kind in (HttpResponseReceived, HttpRequestFailed)
            for event, now in events[kind]:
                if kind in LEGAL_MOVES[current]:
                    dv.transition(fork_for_exploration(device), event, now_ms=now)
                else:
                    with pytest.raises(LocalProtocolError, match=f"not legal in phase {current.value}"):
                        dv.transition(device, event, now_ms=now)
            assert phase(device) is current


def test_outcomes_cover_exactly_the_legal_moves() -> None:
    legal = {(p, kind) for p, kinds in LEGAL_MOVES.items() for kind in kinds}
    assert set(OUTCOMES) == legal
    assert set(LEGAL_MOVES) == set(Phase)


def test_every_move_leads_where_outcomes_say_and_every_edge_is_seen() -> None:
    expected = {(p, kind, target) for (p, kind), targets in OUTCOMES.items() for target in targets}
    assert moves() == expected


def test_live_phases_are_exactly_those_of_a_running_login() -> None:
    for current, phase_samples in corpus()[0].items():
        for sample in phase_samples:
            device = sample.device
            module: Any = new_device if device.config.kind is DeviceRole.NEW else existing_device
            live = current not in (Phase.AWAITING_CLOSE, Phase.DONE)
            assert (device.outcome is None) is live
            assert (not is_terminal(module.LEGAL_MOVES, device.login)) is live
            assert dv.is_done(device) is (current is Phase.DONE)


def test_answers_to_requests_no_longer_outstanding_are_ignored() -> None:
    for phase_samples in corpus()[0].values():
        for sample in phase_samples:
            device = sample.device
            stale = set(range(1, device.next_request_id)) - set(_outstanding(device))
            for rid in sorted(stale)[-3:]:
                for event in (
                    HttpResponseReceived(request_id=rid, response=HttpResponse(status=200)),
                    HttpRequestFailed(request_id=rid),
                ):
                    assert dv.transition(device, event, now_ms=sample.now_ms) == (device, ())


def test_generate_and_scan_start_where_the_diagram_says() -> None:
    samples, _ = corpus()
    assert all(phase(s.device) is Phase.AWAITING_SESSION for s in samples[Phase.AWAITING_SESSION])
    config = dv.DeviceConfig(
        kind=DeviceRole.NEW, generation=qr.Generation.V3, seed=b"x", base_url="https://hs.example", server_name="hs",
        device_id="D", client_id="c",
    )  # fmt: skip
    assert phase(dv.generate(config, now_ms=0)[0]) is Phase.AWAITING_SESSION
    assert phase(dv.scan(config, b"not a QR code", now_ms=0)[0]) is Phase.DONE


INITIAL: tuple[tuple[str, Phase], ...] = (
    ("generate", Phase.AWAITING_SESSION),
    ("scan", Phase.AWAITING_PEER),
    ("scan (v2)", Phase.AWAITING_DISCOVERY),
    ("scan (bad QR)", Phase.DONE),
)


def mermaid_diagram() -> str:
    """The outcome table as a Mermaid state diagram: one edge per (phase, target), labelled with its event kinds."""
    labels: dict[tuple[Phase, Phase], list[str]] = {}
    for (source, kind), targets in OUTCOMES.items():
        for target in targets:
            labels.setdefault((source, target), []).append(kind.__name__)
    order = list(Phase)
    lines = ["stateDiagram-v2"]
    lines += [f"    [*] --> {target.value}: {how}" for how, target in INITIAL]
    for (source, target), kinds in sorted(labels.items(), key=lambda i: (order.index(i[0][0]), order.index(i[0][1]))):
        lines.append(f"    {source.value} --> {target.value}: {', '.join(sorted(kinds))}")
    return "\n".join(lines) + "\n"


def legal_moves_table() -> str:
    rows = ["| device phase | accepts |", "|---|---|"]
    for current, kinds in LEGAL_MOVES.items():
        rows.append(f"| {current.value} | {', '.join(sorted(kind.__name__ for kind in kinds))} |")
    return "\n".join(rows) + "\n"


def _documented(name: str) -> str:
    match = re.search(rf"<!-- {name}:begin -->\n(.*?)<!-- {name}:end -->", DOC.read_text("utf-8"), re.DOTALL)
    assert match is not None, f"docs/simulation.md has no {name} block"
    return match.group(1)


def test_docs_table_and_diagram_are_generated_from_the_code() -> None:
    assert _documented("device-legal-moves") == legal_moves_table()
    assert _documented("device-diagram") == f"```mermaid\n{mermaid_diagram()}```\n"


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
    """A TimerFired before :func:`next_timer` (or when none is due) returns the same device and no effect."""
    world, offset = mid
    for actor in world.actors:
        due = dv.next_timer(actor.device)
        if due is not None and due <= world.now_ms:
            continue
        now = world.now_ms + offset if due is None else data.draw(st.integers(world.now_ms, due - 1))
        assert dv.transition(actor.device, TimerFired(), now_ms=now) == (actor.device, ())
