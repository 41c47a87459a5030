"""Property tests of the simulator over schedules: hypothesis picks the interleaving."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qrlogin import qr
from qrlogin.device import State, outcome
from qrlogin.login.events import ReportLoginFailure, ReportLoginSuccess
from qrlogin.sim import Faults, Scenario, honest_scenario, run
from qrlogin.sim.invariants import check
from qrlogin.sim.run import MAX_STEPS, Run
from qrlogin.sim.world import ATTACKER, EXISTING, NEW, TICK, actions, is_finished, new_world, step
from qrlogin.vocabulary import DeviceRole


def _result(device: State) -> ReportLoginSuccess | ReportLoginFailure | None:
    ended = outcome(device)
    return None if ended is None else ended.result


GENERATIONS = st.sampled_from(tuple(qr.Generation))
DIRECTIONS = st.sampled_from(tuple(DeviceRole))
SCHEDULES = st.lists(st.integers(min_value=0, max_value=2**16), max_size=150)
GUESSES = st.builds(lambda a, b: f"{a}{b}", st.integers(1, 9), st.integers(0, 9))
FAULTS = st.builds(
    Faults,
    drops=st.integers(0, 3),
    duplicates=st.integers(0, 3),
    delays=st.integers(0, 4),
    cancels=st.integers(0, 2),
    denials=st.integers(0, 1),
    overwrites=st.integers(0, 2),
)


@pytest.mark.parametrize("generation", tuple(qr.Generation))
@pytest.mark.parametrize("qr_on", tuple(DeviceRole))
def test_fair_schedule_signs_in(generation: qr.Generation, qr_on: DeviceRole) -> None:
    result = run(honest_scenario(generation, qr_on))
    verdict = check(result)
    assert verdict.ok, verdict.violations
    assert verdict.outcomes[:2] == ((NEW, "success"), (EXISTING, "success"))
    new = result.world.actor(NEW)
    ended = outcome(new.device) if new is not None else None
    assert ended is not None and isinstance(ended.result, ReportLoginSuccess)
    assert ended.result.tokens is not None and ended.result.secrets is not None


@settings(max_examples=80, deadline=None)
@given(GENERATIONS, DIRECTIONS, SCHEDULES)
def test_honest_runs_succeed_under_any_reordering(
    generation: qr.Generation, qr_on: DeviceRole, choices: list[int]
) -> None:
    result = run(honest_scenario(generation, qr_on), choices)
    verdict = check(result)
    assert verdict.ok, verdict.violations
    assert verdict.outcomes[:2] == ((NEW, "success"), (EXISTING, "success"))
    assert result.world.now_ms < result.world.scenario.rendezvous_ttl_ms


SCENARIOS = st.builds(
    Scenario,
    generation=GENERATIONS,
    qr_on=DIRECTIONS,
    attacker=st.booleans(),
    faults=FAULTS,
    user_guess=GUESSES,
)


@settings(max_examples=120, deadline=None)
@given(SCENARIOS, SCHEDULES)
def test_every_run_ends_typed_and_safe(scenario: Scenario, choices: list[int]) -> None:
    generation, qr_on, attacker, faults, guess = (
        scenario.generation,
        scenario.qr_on,
        scenario.attacker,
        scenario.faults,
        scenario.user_guess,
    )
    if not attacker:
        faults = Faults(**{**{f: getattr(faults, f) for f in Faults.__slots__}, "overwrites": 0})
    scenario = Scenario(generation=generation, qr_on=qr_on, attacker=attacker, faults=faults, user_guess=guess)
    result = run(scenario, choices)
    verdict = check(result)
    assert verdict.ok, verdict.violations
    assert result.finished
    for name, summary in verdict.outcomes[:2]:
        assert summary in {"absent", "success"} or summary.startswith("failed:"), (name, summary)


@settings(max_examples=60, deadline=None)
@given(GENERATIONS, DIRECTIONS, GUESSES, SCHEDULES)
def test_attacker_gains_only_through_the_users_mistyped_code(
    generation: qr.Generation, qr_on: DeviceRole, guess: str, choices: list[int]
) -> None:
    scenario = Scenario(
        generation=generation, qr_on=qr_on, attacker=True, user_guess=guess, faults=Faults(overwrites=1)
    )
    result = run(scenario, choices)
    verdict = check(result)
    attacker = result.world.actor(ATTACKER)
    gained = (
        attacker is not None
        and isinstance(got := _result(attacker.device), ReportLoginSuccess)
        and (got.secrets is not None or got.tokens is not None)
    )
    assert verdict.ok, verdict.violations
    assert not gained or verdict.guessed_attacker_code


ORDER_KINDS = frozenset({"attacker_scan", "deliver", "guess", "open_uri", "approve"})


def _attack_with_code_typed(scenario: Scenario) -> Run:
    """The attacker completes its handshake before the user picks up a device; the user types the guess on G."""
    world = new_world(scenario)
    order = ("attacker_scan", "deliver:attacker", "guess", "deliver", "open_uri", "approve")
    for _ in range(MAX_STEPS):
        options = actions(world)
        if not options:
            break
        attacker = world.actor(ATTACKER)
        code_shown = attacker is not None and attacker.shown_code is not None
        options = tuple(o for o in options if o.kind in ORDER_KINDS and (o.kind != "guess" or code_shown))
        options = options or (TICK,)
        ranked = [
            o for w in order for o in options if o.kind == w.partition(":")[0] and w.partition(":")[2] in ("", o.actor)
        ]
        world = step(world, (ranked or list(options))[0])
    return Run(world=world, trace=(), finished=is_finished(world))


def test_a_guess_of_the_attackers_code_is_the_one_way_in() -> None:
    """The check code is the only defence (docs/threats.md T2): a user who types the attacker's code loses everything.

    The schedule is played twice: once to learn the attacker's code (everything follows from the seed), then with
    the user typing exactly that code on the existing device that showed the QR.
    """
    scenario = Scenario(generation=qr.Generation.V3, qr_on=DeviceRole.EXISTING, attacker=True, user_guess="11")
    first = _attack_with_code_typed(scenario)
    code = first.world.record.attacker_code
    assert code is not None
    second = _attack_with_code_typed(replace(scenario, user_guess=code))
    verdict = check(second)
    attacker = second.world.actor(ATTACKER)
    assert verdict.guessed_attacker_code and verdict.ok  # reported as a guess that hit, not as a protocol violation
    result = _result(attacker.device) if attacker is not None else None
    assert isinstance(result, ReportLoginSuccess)
    assert result.tokens is not None and result.secrets is not None
    if code != "11":
        assert not check(first).guessed_attacker_code
        assert check(first).outcomes[2][1] != "success"


@settings(max_examples=25, deadline=None)
@given(GENERATIONS, DIRECTIONS, st.booleans(), SCHEDULES)
def test_runs_are_reproducible(
    generation: qr.Generation, qr_on: DeviceRole, attacker: bool, choices: list[int]
) -> None:
    scenario = Scenario(generation=generation, qr_on=qr_on, attacker=attacker, faults=Faults(drops=1, duplicates=1))
    first, second = run(scenario, choices), run(scenario, choices)
    assert first.trace == second.trace
    assert first.world.record.transcript == second.world.record.transcript
