"""docs/threats.md T15 at the level of whole devices: a user who walks away never leaves a device hanging.

Each layer's deadline has its own tests (rendezvous client, new-device polling, existing-device device check). Here
the simulator runs complete devices with a user who stops at some step (never scans, never types the code, never
opens the consent page, never decides) and lets only the network and the clock act. Every device that exists must
then end in a typed failure, within the rendezvous lifetime plus the devices' own grace periods, and in a bounded
number of steps.
"""

from __future__ import annotations

import pytest

from qrlogin import device as dv
from qrlogin import qr
from qrlogin.device import outcome
from qrlogin.login.events import ReportLoginSuccess
from qrlogin.sim import world as w
from qrlogin.vocabulary import DeviceRole

USER_STEPS = ("scan", "type_code", "open_uri", "approve")
GENERATIONS = (qr.Generation.V1, qr.Generation.V2, qr.Generation.V3)
MAX_STEPS = 5_000


def _walk_away_after(scenario: w.Scenario, allowed: frozenset[str]) -> w.World:
    world = w.new_world(scenario)
    for _ in range(MAX_STEPS):
        everything = w.actions(world)
        if not everything:
            return world
        options = [a for a in everything if a.kind not in USER_STEPS or a.kind in allowed]
        # The user is gone: when only their steps are left, the clock moves on to the next deadline.
        world = w.step(world, options[0] if options else w.TICK)
    raise AssertionError(f"no end after {MAX_STEPS} steps")


@pytest.mark.parametrize("generation", GENERATIONS, ids=[g.value for g in GENERATIONS])
@pytest.mark.parametrize("qr_on", [DeviceRole.NEW, DeviceRole.EXISTING], ids=["qr-on-new", "qr-on-existing"])
@pytest.mark.parametrize("stops_before", USER_STEPS)
def test_a_user_who_walks_away_leaves_no_device_hanging(
    generation: qr.Generation, qr_on: DeviceRole, stops_before: str
) -> None:
    scenario = w.Scenario(generation=generation, qr_on=qr_on, seed=b"walks away " + stops_before.encode())
    allowed = frozenset(USER_STEPS[: USER_STEPS.index(stops_before)])
    world = _walk_away_after(scenario, allowed)

    assert w.is_finished(world)
    devices = [a for a in world.actors if a.name in (w.NEW, w.EXISTING)]
    assert devices, "the QR-showing device always exists"
    if stops_before == "scan":
        assert len(devices) == 1
    for actor in devices:
        ended = outcome(actor.device)
        assert ended is not None, f"{actor.name} has no outcome"
        assert not isinstance(ended.result, ReportLoginSuccess), f"{actor.name} completed without the user"
    # Nothing outlives the rendezvous by more than the devices' own grace periods (deletion delay, polling).
    assert world.now_ms <= scenario.rendezvous_ttl_ms + 60_000, world.now_ms


def test_a_deletion_due_during_a_lost_writes_retry_lets_the_clock_move() -> None:
    """The QR-showing device's write is lost, and while it backs off the user's guess fails its login.

    Its rendezvous may be deleted at once, but only after the write's retry has an answer, so the device's next
    timer must be that retry: a deletion time already due would be a timer that changes nothing, and a fair
    scheduler would tick at the same instant for ever (found by fuzz/fuzz_simulation.py).
    """
    scenario = w.Scenario(
        generation=qr.Generation.V1,
        qr_on=DeviceRole.EXISTING,
        attacker=True,
        faults=w.Faults(drops=1),
        user_guess="10",
        seed=b"fuzz\x00",
    )
    world = w.new_world(scenario)
    for _ in range(19):  # the fair schedule up to LoginOk's PUT
        world = w.step(world, w.actions(world)[0])
    (drop,) = [a for a in w.actions(world) if a.kind == "drop" and a.actor == w.EXISTING]
    world = w.step(world, drop)
    (guess,) = [a for a in w.actions(world) if a.kind == "guess"]
    world = w.step(world, guess)
    existing = world.actor(w.EXISTING)
    assert existing is not None and dv.outcome(existing.device) is not None
    timer = dv.deadline(existing.device)
    assert timer is None or timer > world.now_ms  # a timer that is due must change something
    for _ in range(MAX_STEPS):
        options = w.actions(world)
        if not options:
            break
        world = w.step(world, options[0])
    assert w.is_finished(world)
