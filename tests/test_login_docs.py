"""docs/login.md stays true: its legal-moves tables equal the code's, and every diagram arrow is a legal move."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from qrlogin.login import existing_device as ed
from qrlogin.login import new_device as nd

DOC = (Path(__file__).resolve().parent.parent / "docs" / "login.md").read_text(encoding="utf-8")
GROUPS = {
    "network": {"MessageReceived", "ChannelClosed", "TimerFired", "UserCancelled"},
    "http": {"HttpResponseReceived", "HttpRequestFailed"},
}
MACHINES = {"new device": nd.LEGAL_MOVES, "existing device": ed.LEGAL_MOVES}
DIAGRAMS = {"New device": nd.LEGAL_MOVES, "Existing device": ed.LEGAL_MOVES}


def _names(table: dict[type, frozenset[type]]) -> dict[str, set[str]]:
    return {state.__name__: {event.__name__ for event in events} for state, events in table.items()}


@pytest.mark.parametrize("machine", MACHINES)
def test_legal_moves_table_matches_the_code(machine: str) -> None:
    block = DOC.split(f"| {machine} state | accepts |", 1)[1].split("\n\n", 1)[0]
    documented: dict[str, set[str]] = {}
    for row in re.findall(r"^\| (\w+) \| ([^|]+) \|$", block, flags=re.MULTILINE):
        state, accepts = row
        events: set[str] = set()
        for raw in accepts.split(","):
            item = raw.strip()
            if item != "–":
                events |= GROUPS.get(item, {item})
        documented[state] = events
    assert documented == _names(MACHINES[machine])


@pytest.mark.parametrize("title", DIAGRAMS)
def test_state_diagram_arrows_are_legal_moves(title: str) -> None:
    diagram = DOC.split(f"### {title}\n", 1)[1].split("```mermaid\n", 1)[1].split("```", 1)[0]
    table = _names(DIAGRAMS[title])
    arrows = re.findall(r"^\s+(\w+) --> (\w+) : (\w+)$", diagram, flags=re.MULTILINE)
    assert arrows
    seen: set[str] = set()
    for source, target, event in arrows:
        assert event in table[source], f"{source} --{event}--> {target} is not a legal move"
        assert target in table
        seen |= {source, target}
    assert seen == set(table), "every state appears in the diagram"
