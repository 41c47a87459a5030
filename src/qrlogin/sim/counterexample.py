"""Counterexamples: a schedule that breaks an invariant, as a JSON file anyone can replay.

A file holds the scenario (generation, QR direction, attacker, fault budget, seed, the user's guess, the rendezvous
lifetime), the scheduler's choices (:func:`qrlogin.sim.run.run`: at step ``i`` the action ``choices[i] % n`` of the
``n`` enabled ones), the actions those choices named when the file was written (so a replay that no longer takes the
same path says so instead of judging another run), and the violation found::

    {"format": "qrlogin-counterexample/1",
     "scenario": {"generation": "v3", "qr_on": "new", "attacker": false, "seed_hex": "...",
                  "faults": {"drops": 1, ...}, "user_guess": "11", "rendezvous_ttl_ms": 120000},
     "choices": [0, 2, 0, ...], "actions": ["deliver(new #0)", ...], "violation": "..."}

``qrlogin demo --replay FILE`` plays one back and shows what each device saw; ``tests/sim/counterexamples/`` keeps
the ones found so far, each replayed by ``tests/sim/test_counterexamples.py`` as a regression test.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from .. import qr
from ..vocabulary import DeviceRole
from .run import Run, run
from .world import Faults, Scenario

__all__ = ["FORMAT", "Counterexample", "CounterexampleError", "load", "replay", "write"]

FORMAT = "qrlogin-counterexample/1"
MAX_FILE_SIZE = 1 << 20


class CounterexampleError(ValueError):
    """A counterexample file that cannot be read, or whose schedule no longer takes the recorded path."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Counterexample:
    scenario: Scenario
    choices: tuple[int, ...]
    actions: tuple[str, ...]
    violation: str


def _scenario_json(scenario: Scenario) -> dict[str, Any]:
    return {
        "generation": scenario.generation.value,
        "qr_on": scenario.qr_on.value,
        "attacker": scenario.attacker,
        "seed_hex": scenario.seed.hex(),
        "faults": {field.name: getattr(scenario.faults, field.name) for field in fields(Faults)},
        "user_guess": scenario.user_guess,
        "rendezvous_ttl_ms": scenario.rendezvous_ttl_ms,
    }


def to_json(example: Counterexample) -> str:
    """The file's text: one line per key, the choices on one line, one line per action (for a reader's diff)."""
    actions = ",\n  ".join(json.dumps(name) for name in example.actions)
    return (
        "{\n"
        f' "format": {json.dumps(FORMAT)},\n'
        f' "violation": {json.dumps(example.violation)},\n'
        f' "scenario": {json.dumps(_scenario_json(example.scenario))},\n'
        f' "choices": {json.dumps(list(example.choices))},\n'
        f' "actions": [\n  {actions}\n ]\n'
        "}\n"
    )


def write(path: Path, scenario: Scenario, choices: tuple[int, ...], violation: str) -> Counterexample:
    """Replay ``choices`` to name the actions they take, and write the counterexample to ``path``."""
    trace = run(scenario, choices).trace[: len(choices)]
    example = Counterexample(
        scenario=scenario, choices=choices, actions=tuple(str(action) for action in trace), violation=violation
    )
    path.write_text(to_json(example), encoding="utf-8")
    return example


def _field(document: dict[str, Any], name: str, kind: type) -> Any:
    value = document.get(name)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise CounterexampleError(f"{name!r} must be a {kind.__name__}")
    return value


def _parse_scenario(document: dict[str, Any]) -> Scenario:
    try:
        generation = qr.Generation(_field(document, "generation", str))
        qr_on = DeviceRole(_field(document, "qr_on", str))
        seed = bytes.fromhex(_field(document, "seed_hex", str))
    except ValueError as exc:
        raise CounterexampleError(f"bad scenario: {exc}") from None
    budget = _field(document, "faults", dict)
    names = {field.name for field in fields(Faults)}
    unknown = set(budget) - names
    if unknown:
        raise CounterexampleError(f"unknown fault kinds: {', '.join(sorted(unknown))}")
    counts = {name: _field(budget, name, int) for name in budget}
    if any(count < 0 for count in counts.values()):
        raise CounterexampleError("a fault budget is never negative")
    return Scenario(
        generation=generation,
        qr_on=qr_on,
        attacker=_field(document, "attacker", bool),
        seed=seed,
        faults=Faults(**counts),
        user_guess=_field(document, "user_guess", str),
        rendezvous_ttl_ms=_field(document, "rendezvous_ttl_ms", int),
    )


def parse(text: str) -> Counterexample:
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CounterexampleError(f"not JSON: {exc}") from None
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise CounterexampleError(f"not a counterexample (format {FORMAT!r} expected)")
    choices = _field(document, "choices", list)
    if not all(isinstance(choice, int) and not isinstance(choice, bool) and choice >= 0 for choice in choices):
        raise CounterexampleError("'choices' must be a list of non-negative integers")
    names = _field(document, "actions", list)
    if not all(isinstance(name, str) for name in names):
        raise CounterexampleError("'actions' must be a list of strings")
    return Counterexample(
        scenario=_parse_scenario(_field(document, "scenario", dict)),
        choices=tuple(choices),
        actions=tuple(names),
        violation=_field(document, "violation", str),
    )


def load(path: Path) -> Counterexample:
    try:
        with path.open("rb") as file:
            data = file.read(MAX_FILE_SIZE + 1)
    except OSError as exc:
        raise CounterexampleError(f"cannot read {path}: {exc.strerror}") from None
    if len(data) > MAX_FILE_SIZE:
        raise CounterexampleError(f"{path} is larger than a counterexample can be ({MAX_FILE_SIZE} bytes)")
    try:
        return parse(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise CounterexampleError(f"{path} is not UTF-8") from None


def replay(example: Counterexample) -> Run:
    """Run the counterexample's schedule; raise if it no longer takes the actions it recorded."""
    result = run(example.scenario, example.choices)
    taken = tuple(str(action) for action in result.trace[: len(example.choices)])
    if example.actions and taken != example.actions:
        diverged = next(
            (i for i, (a, b) in enumerate(zip(taken, example.actions, strict=False)) if a != b),
            min(len(taken), len(example.actions)),
        )
        raise CounterexampleError(
            f"the schedule no longer takes the recorded path: at step {diverged + 1} it takes "
            f"{taken[diverged] if diverged < len(taken) else 'nothing'}, the file says "
            f"{example.actions[diverged] if diverged < len(example.actions) else 'nothing'}"
        )
    return result
