"""The configurations explored in CI and in longer runs, their table of counts, and its floor.

* :func:`single_fault_scenarios`: every generation, both QR directions, honest and with the attacker, each with no
  fault and with each fault kind alone with a budget of one (the attacker's overwrite only with the attacker).
  ``scripts/explore`` explores them all in every CI run.
* :func:`combined_scenarios`: the same configurations with one of every kind at once, and with two drops
  (``scripts/explore --combined``, for longer runs).

The counts of a complete exploration are properties of the protocol's state graph (the same on every machine and for
any number of processes), so ``docs/simulation.md`` keeps them in a table, between ``<!-- explore: NAME -->`` and
``<!-- /explore -->``. :func:`floor_failures` compares a run with it: a count more than 10% below the table means
part of the protocol is no longer explored (a scenario that stops early, an action that is no longer offered), and
fails the run. Counts that grow are fine (``--write`` records them).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields, replace

from .. import qr
from ..vocabulary import DeviceRole
from .explore import Exploration
from .world import Faults, Scenario

__all__ = [
    "FAULT_KINDS",
    "Row",
    "combined_scenarios",
    "faults_label",
    "floor_failures",
    "format_table",
    "merge_table",
    "parse_faults",
    "read_table",
    "replace_table",
    "row_key",
    "single_fault_scenarios",
]

FAULT_KINDS = tuple(field.name for field in fields(Faults))
TOLERANCE = 0.10
_HEADER = (
    "| mode | generation | QR on | faults | distinct states | terminal states | transitions | seconds |\n"
    "|---|---|---|---|---:|---:|---:|---:|\n"
)


def faults_label(faults: Faults) -> str:
    """``drops=1,cancels=1``; ``none`` for no fault."""
    spent = [f"{name}={getattr(faults, name)}" for name in FAULT_KINDS if getattr(faults, name)]
    return ",".join(spent) or "none"


def parse_faults(text: str) -> Faults:
    """The inverse of :func:`faults_label`; raises ``ValueError`` with a message for a user."""
    if text.strip() in ("", "none"):
        return Faults()
    counts: dict[str, int] = {}
    for item in text.split(","):
        name, sep, value = item.strip().partition("=")
        if name not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {name!r} (known: {', '.join(FAULT_KINDS)})")
        if not sep:
            value = "1"
        if not value.isdigit():
            raise ValueError(f"a fault budget is a count: {item.strip()!r}")
        counts[name] = int(value)
    return Faults(**counts)


def _configurations() -> Iterable[tuple[bool, qr.Generation, DeviceRole]]:
    for attacker in (False, True):
        for generation in qr.Generation:
            for qr_on in DeviceRole:
                yield attacker, generation, qr_on


def _kinds(attacker: bool) -> tuple[str, ...]:
    return FAULT_KINDS if attacker else tuple(kind for kind in FAULT_KINDS if kind != "overwrites")


def single_fault_scenarios() -> list[Scenario]:
    found = []
    for attacker, generation, qr_on in _configurations():
        base = Scenario(generation=generation, qr_on=qr_on, attacker=attacker)
        found.append(base)
        found.extend(replace(base, faults=Faults(**{kind: 1})) for kind in _kinds(attacker))
    return found


def combined_scenarios() -> list[Scenario]:
    found = []
    for attacker, generation, qr_on in _configurations():
        base = Scenario(generation=generation, qr_on=qr_on, attacker=attacker)
        found.append(replace(base, faults=Faults(**dict.fromkeys(_kinds(attacker), 1))))
        found.append(replace(base, faults=Faults(drops=2)))
    return found


def row_key(scenario: Scenario) -> tuple[str, str, str, str]:
    mode = "attacker" if scenario.attacker else "honest"
    return mode, scenario.generation.value, scenario.qr_on.value, faults_label(scenario.faults)


@dataclass(frozen=True, slots=True)
class Row:
    distinct_states: int
    terminal_states: int
    transitions: int


def format_table(results: Sequence[Exploration]) -> str:
    lines = [_HEADER]
    for result in results:
        mode, generation, qr_on, faults = row_key(result.scenario)
        lines.append(
            f"| {mode} | {generation} | {qr_on} | {faults} | {result.distinct_states} | {result.terminal_states} "
            f"| {result.transitions} | {result.seconds:.1f} |\n"
        )
    return "".join(lines)


def _block(name: str) -> re.Pattern[str]:
    return re.compile(rf"(<!-- explore: {re.escape(name)} -->\n)(.*?)(<!-- /explore -->)", flags=re.DOTALL)


def read_table(document: str, name: str) -> dict[tuple[str, str, str, str], Row]:
    """The rows of the table ``name`` in ``document`` (docs/simulation.md)."""
    block = _block(name).search(document)
    if block is None:
        raise ValueError(f"no table <!-- explore: {name} --> in the document")
    rows = {}
    for line in block.group(2).splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) < 7 or not cells[4].isdigit():
            continue
        rows[(cells[0], cells[1], cells[2], cells[3])] = Row(int(cells[4]), int(cells[5]), int(cells[6]))
    return rows


def replace_table(document: str, name: str, table: str) -> str:
    if _block(name).search(document) is None:
        raise ValueError(f"no table <!-- explore: {name} --> in the document")
    return _block(name).sub(lambda match: match.group(1) + table + match.group(3), document, count=1)


def merge_table(document: str, name: str, results: Sequence[Exploration], order: Sequence[Scenario]) -> str:
    """``document`` with ``results`` recorded in its table ``name``: their rows replaced or added, every other row
    kept as it was (a run of a few configurations does not erase the figures of the others), in the order of
    ``order``; rows of configurations not in ``order`` go last."""
    block = _block(name).search(document)
    if block is None:
        raise ValueError(f"no table <!-- explore: {name} --> in the document")
    lines: dict[tuple[str, str, str, str], str] = {}
    for line in block.group(2).splitlines(keepends=True):
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) >= 7 and cells[4].isdigit():
            lines[(cells[0], cells[1], cells[2], cells[3])] = line
    for result in results:
        lines[row_key(result.scenario)] = format_table([result]).removeprefix(_HEADER)
    position = {row_key(scenario): index for index, scenario in enumerate(order)}
    keys = sorted(lines, key=lambda key: position.get(key, len(position)))
    return replace_table(document, name, _HEADER + "".join(lines[key] for key in keys))


def floor_failures(
    results: Sequence[Exploration], recorded: dict[tuple[str, str, str, str], Row], *, tolerance: float = TOLERANCE
) -> list[str]:
    """Each configuration whose counts fell more than ``tolerance`` below the table, or that the table lacks."""
    failures = []
    for result in results:
        key = row_key(result.scenario)
        row = recorded.get(key)
        if row is None:
            failures.append(f"{' '.join(key)}: not in the table (run with --write to record it)")
            continue
        for name in ("distinct_states", "terminal_states", "transitions"):
            floor = getattr(row, name) * (1 - tolerance)
            count = getattr(result, name)
            if count < floor:
                failures.append(
                    f"{' '.join(key)}: {name.replace('_', ' ')} {count}, the table says {getattr(row, name)}"
                )
        if result.cut_off:
            failures.append(f"{' '.join(key)}: {result.cut_off} states cut off: the exploration was not complete")
    return failures
