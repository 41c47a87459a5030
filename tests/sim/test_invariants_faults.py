"""The invariants added for runs with faults catch what they are about (each is shown a run that breaks it), and
hold in a sample of real runs (the exhaustive explorations in CI check them everywhere: ``scripts/explore.py``)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from qrlogin import device as dv
from qrlogin import homeserver as hsm
from qrlogin.sim import Faults, Scenario
from qrlogin.sim.invariants import POLL_INTERVAL_MS, check, is_single_fault
from qrlogin.sim.run import Run, run
from qrlogin.sim.world import EXISTING, NEW, PASSWORD, USER, World, actions, is_finished, new_world, step


def _verdict(world: World) -> tuple[str, ...]:
    return check(Run(world=world, trace=(), finished=is_finished(world))).violations


def _cancelled_on_existing() -> World:
    """A fair run in which the user cancels on the existing device once the new device has joined the login."""
    scenario = Scenario(faults=Faults(cancels=1))
    for steps in range(10, 200):
        world = new_world(scenario)
        for index in range(2_000):
            options = actions(world)
            if not options:
                break
            cancel = [o for o in options if o.kind == "cancel" and o.actor == EXISTING]
            world = step(world, cancel[0] if index >= steps and cancel else options[0])
        read = any(who == NEW and kind.startswith("m.login.failure") for who, kind in world.record.received)
        new = world.actor(NEW)
        ended = dv.outcome(new.device) if new is not None else None
        if read and ended is not None and ended.session_end is not dv.SessionEnd.DELETED:
            return world
    raise AssertionError("no run in which the new device read the existing device's failure")


def test_single_fault_scope() -> None:
    assert is_single_fault(new_world(Scenario(faults=Faults(drops=1))))
    assert not is_single_fault(new_world(Scenario(faults=Faults(drops=1, cancels=1))))
    assert not is_single_fault(new_world(Scenario(faults=Faults(), attacker=True)))


def test_a_notice_that_never_arrived_is_caught() -> None:
    world = _cancelled_on_existing()
    assert _verdict(world) == ()
    unread = replace(world, record=replace(world.record, received=()))
    assert any("never told it" in violation for violation in _verdict(unread))


def test_a_run_that_outlives_the_rendezvous_is_caught() -> None:
    world = run(Scenario(faults=Faults(drops=1))).world
    assert _verdict(world) == ()
    created = world.record.qr_shown_ms
    assert created is not None
    bound = created + world.scenario.rendezvous_ttl_ms + POLL_INTERVAL_MS
    assert _verdict(replace(world, now_ms=bound)) == ()
    (late,) = _verdict(replace(world, now_ms=bound + 1))
    assert "after the rendezvous expired plus one poll interval" in late


def test_a_device_the_grants_do_not_explain_is_caught() -> None:
    world = run(Scenario()).world
    assert _verdict(world) == ()
    body = {"type": "m.login.password", "user": USER, "password": PASSWORD, "device_id": "INTRUDER"}
    login = hsm.HttpRequest.json("POST", "/_matrix/client/v3/login", body)
    hs, response = hsm.handle(world.hs, login, now_ms=world.now_ms)
    assert response.status == 200
    violations = _verdict(replace(world, hs=hs))
    assert any("INTRUDER" in violation for violation in violations)


@pytest.mark.parametrize("kind", ["drops", "duplicates", "delays", "cancels", "denials"])
def test_random_single_fault_runs_hold(kind: str) -> None:
    scenario = Scenario(faults=Faults(**{kind: 1}))
    for seed in range(8):
        choices = [(seed * 7 + i * 3) % 5 for i in range(60)]
        assert _verdict(run(scenario, choices).world) == ()
