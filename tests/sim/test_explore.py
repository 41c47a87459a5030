"""Bounded exhaustive exploration of interleavings, with the distinct-state counts it covers.

Every interleaving of deliveries and user actions is explored (time advances only when nothing else can happen),
deduplicated by state fingerprint; every terminal state is judged by the invariants. The counts are printed
(``pytest -s``) and recorded in docs/simulation.md; the test fails if a count drops below the recorded figure by
more than a little, which would mean the exploration silently stopped covering part of the protocol.
"""

from __future__ import annotations

import gc
import re
import subprocess
import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest

from qrlogin import qr
from qrlogin.homeserver._frozenmap import FrozenMap
from qrlogin.sim import Faults, Scenario, parallel
from qrlogin.sim import explore as explore_module
from qrlogin.sim.explore import explore, fingerprint, state_key
from qrlogin.sim.fingerprint import Fingerprinter
from qrlogin.sim.world import actions, new_world, step
from qrlogin.vocabulary import DeviceRole

DOC = (Path(__file__).resolve().parents[2] / "docs" / "simulation.md").read_text(encoding="utf-8")


def _recorded(mode: str, generation: qr.Generation, qr_on: DeviceRole) -> int:
    row = re.search(rf"^\| {mode} \| {generation.value} \| {qr_on.value} \| ([0-9]+) \|", DOC, flags=re.MULTILINE)
    assert row is not None, f"docs/simulation.md has no row for {mode} {generation.value} {qr_on.value}"
    return int(row.group(1))


@pytest.mark.parametrize("generation", tuple(qr.Generation))
@pytest.mark.parametrize("qr_on", tuple(DeviceRole))
def test_every_honest_interleaving_signs_in(generation: qr.Generation, qr_on: DeviceRole) -> None:
    result = explore(Scenario(generation=generation, qr_on=qr_on), max_states=5_000)
    print(f"honest {generation.value} qr-on-{qr_on.value}: {result.distinct_states} distinct states")
    assert result.violations == ()
    assert result.cut_off == 0, "the honest state graph should be explored completely"
    assert result.outcomes == {(("new", "success"), ("existing", "success"), ("attacker", "absent"))}
    assert result.terminal_states > 1
    assert result.distinct_states >= _recorded("honest", generation, qr_on) * 0.9


@pytest.mark.parametrize(
    ("generation", "qr_on"),
    [(qr.Generation.V3, DeviceRole.NEW), (qr.Generation.V3, DeviceRole.EXISTING), (qr.Generation.V1, DeviceRole.NEW)],
)
def test_every_attack_interleaving_is_stopped(generation: qr.Generation, qr_on: DeviceRole) -> None:
    result = explore(Scenario(generation=generation, qr_on=qr_on, attacker=True), max_states=12_000)
    print(f"attacker {generation.value} qr-on-{qr_on.value}: {result.distinct_states} distinct states")
    assert result.violations == ()
    # The attack never succeeds; the user's devices either sign in (the user's device won the race) or fail typed.
    attacker_outcomes = {outcome[2][1] for outcome in result.outcomes}
    assert "success" not in attacker_outcomes
    assert (("new", "success"), ("existing", "success")) in {outcome[:2] for outcome in result.outcomes}
    assert result.distinct_states >= _recorded("attacker", generation, qr_on) * 0.9


def test_fingerprint_identifies_states() -> None:
    world = new_world(Scenario())
    again = new_world(Scenario())
    assert fingerprint(world) == fingerprint(again)
    moved = step(world, actions(world)[0])
    assert fingerprint(moved) != fingerprint(world)
    other_seed = new_world(Scenario(seed=b"another seed"))
    assert fingerprint(other_seed) != fingerprint(world)


def test_pending_order_is_not_part_of_a_state() -> None:
    world = new_world(Scenario())
    while len(world.pending) < 2:
        world = step(world, actions(world)[0])
    swapped = replace(world, pending=tuple(reversed(world.pending)))
    assert state_key(swapped) == state_key(world)
    plain = Fingerprinter()
    assert plain(swapped) != plain(world)


def test_fingerprints_do_not_depend_on_the_memo() -> None:
    small, large = Fingerprinter(memo_limit=4), Fingerprinter()
    world = new_world(Scenario(faults=Faults(drops=1)))
    for _ in range(40):
        assert small(world) == large(world)
        world = step(world, actions(world)[-1])
    assert small.memo_size() <= 8


def test_mappings_are_fingerprinted_by_their_items() -> None:
    fingerprinter = Fingerprinter()
    assert fingerprinter(FrozenMap({"a": 1, "b": (2,)})) == fingerprinter(FrozenMap({"b": (2,), "a": 1}))
    assert fingerprinter(FrozenMap({"a": 1})) != fingerprinter(FrozenMap({"a": 2}))
    assert fingerprinter(FrozenMap({"a": 1})) != fingerprinter({"a": 1, "b": 1})


@pytest.mark.parametrize("all_handed_over", [False, True])
def test_processes_explore_the_same_graph(all_handed_over: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    if all_handed_over:
        # One root for two processes: the second has nothing of its own, so all it explores was handed over.
        monkeypatch.setattr(parallel, "_ROOTS_PER_JOB", 0)
        monkeypatch.setattr(explore_module, "SHARE_EVERY", 64)
    scenario = Scenario(faults=Faults(denials=1))
    alone, spread = explore(scenario), explore(scenario, jobs=2)
    if all_handed_over:
        assert spread.handed_over > 0
    assert (spread.distinct_states, spread.terminal_states, spread.transitions) == (
        alone.distinct_states,
        alone.terminal_states,
        alone.transitions,
    )
    assert spread.outcomes == alone.outcomes
    assert spread.violations == alone.violations == ()


def _collections(run: Callable[[], None]) -> list[tuple[int, bool]]:
    """``(generation, during a search)`` of each collection while ``run()`` ran, the collector at its busiest."""
    collected: list[tuple[int, bool]] = []

    def record(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            # A search is the only place that raises the full collections' threshold this high.
            collected.append((info["generation"], gc.get_threshold()[2] > 10**9))

    thresholds = gc.get_threshold()
    gc.set_threshold(1, 1, 1)
    gc.callbacks.append(record)
    try:
        run()
    finally:
        gc.callbacks.remove(record)
        gc.set_threshold(*thresholds)
    return collected


def test_a_search_makes_young_collections_but_no_full_ones() -> None:
    after: list[tuple[int, int, int]] = []

    def run() -> None:
        explore(Scenario(generation=qr.Generation.V3), max_states=2_000)
        after.append(gc.get_threshold())

    collected = _collections(run)
    assert (0, True) in collected and (2, True) not in collected
    assert (2, False) in collected  # the control: outside the search, these thresholds make full collections
    assert after == [(1, 1, 1)]  # restored once the search returned


def test_the_collector_thresholds_come_back_when_a_search_raises() -> None:
    thresholds = gc.get_threshold()
    with pytest.raises(RuntimeError), explore_module.young_collections_only():
        assert gc.get_threshold()[:2] == thresholds[:2] and gc.get_threshold()[2] > 10**9
        raise RuntimeError("the search failed")
    assert gc.get_threshold() == thresholds


@pytest.mark.parametrize("jobs", [1, 2])
def test_an_exploration_leaves_nothing_for_the_cyclic_collector(jobs: int) -> None:
    # What refers back to itself (the fingerprint memo, the remembered steps) is emptied when the exploration ends,
    # so its worlds are freed at once rather than by a full collection, which a search holds off.
    gc.collect()
    gc.disable()
    try:
        result = explore(Scenario(generation=qr.Generation.V3, faults=Faults(drops=1)), max_states=3_000, jobs=jobs)
        left = gc.collect()
    finally:
        gc.enable()
    assert result.distinct_states >= 3_000
    assert left < 100


def test_the_script_for_long_runs_fails_an_exploration_it_cut_short() -> None:
    script = Path(__file__).resolve().parents[2] / "scripts" / "explore.py"
    only = ["--only", "honest | v3 | new | drops=2"]
    done = subprocess.run(
        # One configuration and two processes: its states are spread over both (CI's run covers the other way).
        [sys.executable, str(script), "--combined", *only, "--max-states", "2000", "--jobs", "2"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert "honest v3 new drops=2: incomplete, cut off at --max-states 2,000" in done.stdout
