"""The configurations CI explores, the table of counts docs/simulation.md keeps, and the floor that compares them."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from qrlogin import qr
from qrlogin.sim import Faults, Scenario
from qrlogin.sim.explore import Exploration
from qrlogin.sim.matrix import (
    FAULT_KINDS,
    combined_scenarios,
    faults_label,
    floor_failures,
    format_table,
    merge_table,
    parse_faults,
    read_table,
    replace_table,
    row_key,
    single_fault_scenarios,
)
from qrlogin.vocabulary import DeviceRole

DOC = (Path(__file__).resolve().parents[2] / "docs" / "simulation.md").read_text(encoding="utf-8")


def _result(scenario: Scenario, states: int, *, cut_off: int = 0) -> Exploration:
    return Exploration(
        scenario=scenario,
        distinct_states=states,
        terminal_states=states // 10,
        cut_off=cut_off,
        transitions=states * 2,
        max_depth=50,
        seconds=1.5,
        violations=(),
        outcomes=frozenset(),
    )


@pytest.mark.parametrize("faults", [Faults(), Faults(drops=1), Faults(drops=2, cancels=1, overwrites=1)])
def test_faults_label_round_trips(faults: Faults) -> None:
    assert parse_faults(faults_label(faults)) == faults


def test_parse_faults_reads_a_bare_kind_as_one() -> None:
    assert parse_faults("drops, delays=2") == Faults(drops=1, delays=2)


def test_single_fault_configurations() -> None:
    scenarios = single_fault_scenarios()
    # 3 generations x 2 directions; honest: none + 5 kinds; attacker: none + 6 kinds (overwrites too)
    assert len(scenarios) == 6 * 6 + 6 * 7
    assert len({row_key(s) for s in scenarios}) == len(scenarios)
    for scenario in scenarios:
        budget = [getattr(scenario.faults, kind) for kind in FAULT_KINDS]
        assert sum(budget) <= 1
        assert scenario.attacker or scenario.faults.overwrites == 0
    assert {(s.generation, s.qr_on) for s in scenarios} == {(g, d) for g in qr.Generation for d in DeviceRole}


def test_combined_configurations() -> None:
    scenarios = combined_scenarios()
    assert len(scenarios) == 24
    assert Faults(drops=2) in {s.faults for s in scenarios}
    assert Faults(**dict.fromkeys(FAULT_KINDS, 1)) in {s.faults for s in scenarios if s.attacker}


def test_the_docs_keep_a_row_for_every_single_fault_configuration() -> None:
    recorded = read_table(DOC, "single")
    assert set(recorded) == {row_key(s) for s in single_fault_scenarios()}


def test_table_round_trips_through_the_document() -> None:
    scenarios = single_fault_scenarios()[:3]
    results = [_result(s, 1000 + i) for i, s in enumerate(scenarios)]
    document = "intro\n<!-- explore: single -->\nold\n<!-- /explore -->\nafter\n"
    written = replace_table(document, "single", format_table(results))
    assert written.startswith("intro\n") and written.endswith("after\n")
    assert "old" not in written
    rows = read_table(written, "single")
    assert [rows[row_key(s)].distinct_states for s in scenarios] == [1000, 1001, 1002]


def test_recording_a_few_configurations_keeps_the_rows_of_the_others() -> None:
    every = combined_scenarios()
    first, second, third = every[0], every[1], every[2]
    document = replace_table(
        "<!-- explore: combined -->\n<!-- /explore -->\n",
        "combined",
        format_table([_result(third, 300), _result(first, 100)]),
    )
    written = merge_table(document, "combined", [_result(second, 200), _result(third, 333)], every)
    rows = read_table(written, "combined")
    assert {key: row.distinct_states for key, row in rows.items()} == {
        row_key(first): 100,
        row_key(second): 200,
        row_key(third): 333,
    }
    lines = [line for line in written.splitlines() if line.startswith("| honest")]
    assert [line.split(" | ")[3] for line in lines] == [row_key(s)[3] for s in (first, second, third)]
    assert written.count("| mode |") == 1


def test_floor_fails_below_ten_percent_only() -> None:
    scenario = Scenario(faults=Faults(drops=1))
    recorded = read_table(
        replace_table("<!-- explore: t -->\n<!-- /explore -->", "t", format_table([_result(scenario, 1000)])), "t"
    )
    assert floor_failures([_result(scenario, 1000)], recorded) == []
    assert floor_failures([_result(scenario, 901)], recorded) == []  # within 10%
    assert floor_failures([_result(scenario, 5000)], recorded) == []  # more coverage is fine
    (failure,) = [f for f in floor_failures([_result(scenario, 899)], recorded) if "distinct" in f]
    assert "honest v3 new drops=1" in failure
    assert any("cut off" in f for f in floor_failures([_result(scenario, 1000, cut_off=3)], recorded))
    other = replace(scenario, attacker=True)
    assert floor_failures([_result(other, 1000)], recorded) == [
        "attacker v3 new drops=1: not in the table (run with --write to record it)"
    ]
