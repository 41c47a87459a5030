"""Counterexample files: every one kept in ``tests/sim/counterexamples/`` replays and now satisfies every invariant;
the file format round-trips and refuses what it cannot replay; ``qrlogin explore`` writes one per violation and
``qrlogin demo --replay`` plays it back.

Each kept file is a schedule that once broke an invariant (of the protocol or of the invariants themselves): the
replay must take the recorded path and the run must now be judged sound.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from qrlogin import qr
from qrlogin.cli import main
from qrlogin.sim import Faults, Scenario, counterexample
from qrlogin.sim import explore as explore_module
from qrlogin.sim.invariants import Verdict, check
from qrlogin.sim.run import Run, run
from qrlogin.sim.world import actions, new_world
from qrlogin.vocabulary import DeviceRole

KEPT = sorted((Path(__file__).parent / "counterexamples").glob("*.json"))


def test_some_counterexamples_are_kept() -> None:
    assert KEPT, "tests/sim/counterexamples/ holds the schedules that once broke an invariant"


@pytest.mark.parametrize("path", KEPT, ids=[path.stem for path in KEPT])
def test_kept_counterexample_replays_and_now_holds(path: Path) -> None:
    example = counterexample.load(path)
    result = counterexample.replay(example)
    assert [str(action) for action in result.trace[: len(example.choices)]] == list(example.actions)
    assert result.finished
    assert check(result).violations == ()


def test_round_trip(tmp_path: Path) -> None:
    scenario = Scenario(
        generation=qr.Generation.V1, qr_on=DeviceRole.EXISTING, attacker=True, faults=Faults(drops=1, overwrites=2)
    )
    choices = (0, 3, 1, 0, 2)
    written = counterexample.write(tmp_path / "x.json", scenario, choices, "something broke")
    loaded = counterexample.load(tmp_path / "x.json")
    assert loaded == written
    assert loaded.scenario == scenario
    assert loaded.actions == tuple(str(a) for a in run(scenario, choices).trace[:5])


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("not json", "not JSON"),
        ('{"format": "something else"}', "not a counterexample"),
        ("[]", "not a counterexample"),
    ],
)
def test_unreadable_files_are_refused(text: str, message: str) -> None:
    with pytest.raises(counterexample.CounterexampleError, match=message):
        counterexample.parse(text)


def _document(**changes: object) -> str:
    example = counterexample.Counterexample(scenario=Scenario(), choices=(0, 0), actions=(), violation="v")
    document = json.loads(counterexample.to_json(example))
    document.update(changes)
    return json.dumps(document)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"choices": [0, -1]}, "non-negative"),
        ({"choices": [0, True]}, "non-negative"),
        ({"actions": [1]}, "list of strings"),
        ({"scenario": {"generation": "v9"}}, "bad scenario"),
    ],
)
def test_malformed_fields_are_refused(changes: dict[str, object], message: str) -> None:
    with pytest.raises(counterexample.CounterexampleError, match=message):
        counterexample.parse(_document(**changes))


def test_unknown_fault_kind_is_refused() -> None:
    document = json.loads(_document())
    document["scenario"]["faults"]["earthquakes"] = 1
    with pytest.raises(counterexample.CounterexampleError, match="earthquakes"):
        counterexample.parse(json.dumps(document))


def test_a_schedule_that_takes_another_path_is_refused() -> None:
    example = counterexample.Counterexample(
        scenario=Scenario(), choices=(0, 0), actions=("deliver(new #0)", "scan(existing)"), violation="v"
    )
    with pytest.raises(counterexample.CounterexampleError, match="at step 2"):
        counterexample.replay(example)


def _broken_check(result: Run) -> Verdict:
    """The real invariants, plus one that every run with a lost request breaks (to have a violation to find)."""
    verdict = check(result)
    # An exploration keeps no transcript, so the spent fault budget says whether a request was lost.
    if result.world.faults.drops == result.world.scenario.faults.drops:
        return verdict
    violations = (*verdict.violations, "a request was lost")
    return Verdict(violations=violations, guessed_attacker_code=False, outcomes=verdict.outcomes)


def test_explore_writes_the_shortest_counterexample_and_demo_replays_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(explore_module, "check", _broken_check)
    status = main(["explore", "--faults", "drops=1", "--counterexamples", str(tmp_path)])
    out = capsys.readouterr().out
    assert status == 1
    assert "invariant violated: a request was lost" in out
    (path,) = tmp_path.glob("*.json")
    example = counterexample.load(path)
    assert example.violation == "a request was lost"
    assert sum(1 for name in example.actions if name.startswith("drop")) == 1
    # Breadth first, the schedule is no longer than any other that ends with a loss: e.g. losing the first request
    # of all and then taking the fair schedule.
    scenario = Scenario(faults=Faults(drops=1))
    first = [str(action) for action in actions(new_world(scenario))].index("drop(new #0)")
    assert len(example.choices) <= len(run(scenario, [first]).trace)

    monkeypatch.setattr("qrlogin.cli.demo.check", _broken_check)
    assert main(["demo", "--replay", str(path)]) == 1
    out = capsys.readouterr().out
    assert "lose the " in out
    assert "invariant violated: a request was lost" in out
    monkeypatch.undo()
    assert main(["demo", "--replay", str(path)]) == 0
    assert "every invariant holds" in capsys.readouterr().out


def test_explore_reports_counts_and_succeeds(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["explore", "--generation", "v3", "--qr-on", "existing"]) == 0
    out = capsys.readouterr().out
    assert "faults: none" in out
    assert "every invariant held in every explored run" in out
    assert "distinct states" in out
    assert "states per second" in out


def test_explore_cut_short_is_not_a_pass(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["explore", "--max-states", "50"]) == 1
    assert "incomplete" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["explore", "--faults", "earthquakes=1"], "unknown fault kind"),
        (["explore", "--faults", "drops=x"], "a count"),
        (["explore", "--faults", "overwrites=1"], "only the attacker"),
        (["demo", "--replay", "/nonexistent/file.json"], "cannot read"),
    ],
)
def test_user_errors_are_one_line(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err
    assert len(err.strip().splitlines()) == 1
