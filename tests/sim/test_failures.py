"""A device that gives up tells its peer: the peer ends at once, not when the rendezvous expires.

The rendezvous is one slot the devices take turns at, so a device that ends while the peer holds the slot cannot
write its ``m.login.failure`` at once. It owes it: it keeps polling and writes it on its next turn, and only then is it
done (the device that created the session may delete it instead, which the peer sees as a 404). Here the user cancels
on one device at every step of a fair run, in every generation and direction; the invariants
(:func:`qrlogin.sim.invariants.check`, "a failure reaches the peer") must hold, and the peer must end within seconds of
the cancel, knowing why.
"""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qrlogin import device as dv
from qrlogin import qr
from qrlogin.login.events import ReportLoginFailure, ReportLoginSuccess
from qrlogin.login.messages import FailureReason
from qrlogin.sim import Faults, Scenario
from qrlogin.sim.invariants import check
from qrlogin.sim.run import MAX_STEPS, Run
from qrlogin.sim.world import EXISTING, NEW, TICK, World, actions, is_finished, new_world, step
from qrlogin.vocabulary import DeviceRole

GENERATIONS = tuple(qr.Generation)
PROMPTLY_MS = 30_000  # a few polls, token intervals and the creator's 5 s grace; the session lives 120 s


def _cancel_after(scenario: Scenario, who: str, steps: int) -> tuple[World, int | None]:
    """A fair run in which the user cancels on ``who`` at the first chance after ``steps`` steps; and when."""
    world = new_world(scenario)
    cancelled_at = None
    for index in range(MAX_STEPS):
        options = actions(world)
        if not options:
            break
        cancel = [o for o in options if o.kind == "cancel" and o.actor == who]
        if index >= steps and cancel and cancelled_at is None:
            cancelled_at = world.now_ms
            world = step(world, cancel[0])
        else:
            world = step(world, options[0])
    return world, cancelled_at


def _fair_length(scenario: Scenario) -> int:
    world = new_world(scenario)
    for index in range(MAX_STEPS):
        options = actions(world)
        if not options:
            return index
        world = step(world, options[0])
    raise AssertionError("the fair run does not end")


def _ended_at(world: World, name: str) -> int:
    return next(t for t, who, text in world.record.transcript if who == name and text.startswith("outcome:"))


@pytest.mark.parametrize("generation", GENERATIONS, ids=[g.value for g in GENERATIONS])
@pytest.mark.parametrize("qr_on", [DeviceRole.NEW, DeviceRole.EXISTING], ids=["qr-on-new", "qr-on-existing"])
@pytest.mark.parametrize("who", [NEW, EXISTING])
def test_a_device_that_gives_up_tells_its_peer(generation: qr.Generation, qr_on: DeviceRole, who: str) -> None:
    scenario = Scenario(generation=generation, qr_on=qr_on, faults=Faults(cancels=1), seed=b"gives up " + who.encode())
    told = 0
    for steps in range(0, _fair_length(scenario), 2):  # every other step: the windows span several
        world, cancelled_at = _cancel_after(scenario, who, steps)
        verdict = check(Run(world=world, trace=(), finished=is_finished(world)))
        assert verdict.ok, (steps, verdict.violations)
        notices = [(notice, running) for name, notice, running in world.record.notices if name == who]
        if not any(running for _, running in notices):
            continue  # cancelled before the channel was up (nothing to tell) or after the peer had finished
        told += 1
        assert notices == [("m.login.failure (user_cancelled)", True)]
        peer_name = EXISTING if who == NEW else NEW
        peer = world.actor(peer_name)
        assert peer is not None and cancelled_at is not None
        ended = dv.outcome(peer.device)
        assert ended is not None
        result = ended.result
        if isinstance(result, ReportLoginFailure):
            # The peer read the failure, or (when the canceller created the session) saw it deleted.
            heard = result.by_peer and result.reason == FailureReason.USER_CANCELLED
            deleted = ended.session_end is dv.SessionEnd.DELETED and who == (
                NEW if qr_on is DeviceRole.NEW else EXISTING
            )
            assert heard or deleted, (steps, ended)
        else:
            assert isinstance(result, ReportLoginSuccess)  # it had sent its last message and read nothing more
        assert _ended_at(world, peer_name) - cancelled_at <= PROMPTLY_MS, (steps, world.record.transcript)
    assert told > 0, "the user never cancelled while the peer's login ran"


@pytest.mark.parametrize("generation", GENERATIONS, ids=[g.value for g in GENERATIONS])
@pytest.mark.parametrize("qr_on", [DeviceRole.NEW, DeviceRole.EXISTING], ids=["qr-on-new", "qr-on-existing"])
def test_the_scanner_tells_the_peer_that_holds_the_slot(generation: qr.Generation, qr_on: DeviceRole) -> None:
    """The scanner cancels while the peer holds the slot (it has just written its first login message): it waits for
    its turn, writes its m.login.failure, and the peer ends with that reason, reported by the peer."""
    scanner = EXISTING if qr_on is DeviceRole.NEW else NEW
    scenario = Scenario(generation=generation, qr_on=qr_on, faults=Faults(cancels=1))
    world = new_world(scenario)
    cancelled = False
    for _ in range(MAX_STEPS):
        options = actions(world)
        if not options:
            break
        actor = world.actor(scanner)
        owes_nothing_yet = actor is not None and isinstance(actor.device, dv.AwaitingLogin)
        writing_done = owes_nothing_yet and not any(item.actor == scanner for item in world.pending)
        if (
            not cancelled
            and writing_done
            and any("sends m.login.protocol" in text for _, who, text in world.record.transcript if who == scanner)
        ):
            world = step(world, next(o for o in options if o.kind == "cancel" and o.actor == scanner))
            cancelled = True
            actor = world.actor(scanner)
            assert actor is not None and isinstance(actor.device, dv.AwaitingTurn), actor
            continue
        world = step(world, options[0])
    assert cancelled and is_finished(world)
    peer = world.actor(NEW if scanner == EXISTING else EXISTING)
    assert peer is not None
    ended = dv.outcome(peer.device)
    assert ended is not None and ended.result == ReportLoginFailure(reason=FailureReason.USER_CANCELLED, by_peer=True)
    assert world.now_ms < scenario.rendezvous_ttl_ms // 4


@pytest.mark.parametrize("generation", GENERATIONS, ids=[g.value for g in GENERATIONS])
def test_a_notice_the_peer_never_reads_is_owed_until_the_session_expires(generation: qr.Generation) -> None:
    """The scanner cancels after it wrote m.login.protocols; the user never types the check code on the device that
    shows the QR code, so that device never writes again. The scanner keeps its notice until the session's end and
    no longer; the other device ends when the session expires, and says so."""
    scenario = Scenario(generation=generation, qr_on=DeviceRole.NEW, faults=Faults(cancels=1))
    world = new_world(scenario)
    for _ in range(MAX_STEPS):
        everything = actions(world)
        if not everything:
            break
        # The user walked away from the new device: when only typing the code is left, the clock moves on.
        options = [o for o in everything if o.kind != "type_code"] or [TICK]
        existing = world.actor(EXISTING)
        if existing is not None and isinstance(existing.device, dv.AwaitingLogin):
            options = [o for o in options if o.kind == "cancel" and o.actor == EXISTING] or options
        world = step(world, options[0])
    assert is_finished(world)
    existing, new = world.actor(EXISTING), world.actor(NEW)
    assert existing is not None and new is not None
    assert [(name, running) for name, _, running in world.record.notices] == [(EXISTING, True)]
    ended = dv.outcome(new.device)
    assert ended is not None and ended.session_end is dv.SessionEnd.EXPIRED
    assert _ended_at(world, NEW) <= scenario.rendezvous_ttl_ms + 1_000
    assert world.now_ms <= scenario.rendezvous_ttl_ms + 60_000  # the scanner let go at the session's end


@settings(max_examples=60, deadline=None)
@given(
    generation=st.sampled_from(GENERATIONS),
    qr_on=st.sampled_from(tuple(DeviceRole)),
    attacker=st.booleans(),
    faults=st.builds(
        Faults,
        drops=st.integers(0, 3),
        duplicates=st.integers(0, 2),
        delays=st.integers(0, 4),
        cancels=st.integers(1, 2),
        denials=st.integers(0, 1),
        overwrites=st.integers(0, 2),
    ),
    held_back=st.integers(0, 60),
    choices=st.lists(st.integers(0, 2**16), max_size=200),
)
def test_cancels_late_in_a_faulty_run_end_typed(
    *,
    generation: qr.Generation,
    qr_on: DeviceRole,
    attacker: bool,
    faults: Faults,
    held_back: int,
    choices: list[int],
) -> None:
    """Random schedules spend their cancels at once; here the user may cancel only after ``held_back`` steps, so the
    closing states meet lost, duplicated and delayed exchanges and the attacker. Every invariant still holds."""
    if not attacker:
        faults = Faults(**{**dataclasses.asdict(faults), "overwrites": 0})
    scenario = Scenario(generation=generation, qr_on=qr_on, attacker=attacker, faults=faults)
    world = new_world(scenario)
    trace = []
    for index in range(MAX_STEPS):
        options = actions(world)
        if not options:
            break
        if index < held_back:
            options = tuple(o for o in options if o.kind != "cancel") or options
        action = options[choices[index] % len(options)] if index < len(choices) else options[0]
        world = step(world, action)
        trace.append(action)
    verdict = check(Run(world=world, trace=tuple(trace), finished=is_finished(world)))
    assert verdict.ok, verdict.violations
