"""docs/rendezvous.md stays true: its legal-moves table is the client machine's table."""

from __future__ import annotations

import re
from pathlib import Path

from qrlogin.rendezvous import client

DOC = (Path(__file__).resolve().parent.parent / "docs" / "rendezvous.md").read_text(encoding="utf-8")
NETWORK = {"HttpResponseReceived", "HttpRequestFailed", "TimerFired"}


def test_legal_moves_table_matches_the_code() -> None:
    block = DOC.split("| rendezvous client state | accepts |", 1)[1].split("\n\n", 1)[0]
    documented: dict[str, set[str]] = {}
    for state, accepts in re.findall(r"^\| (\w+) \| ([^|]+) \|$", block, flags=re.MULTILINE):
        events: set[str] = set()
        for raw in accepts.split(","):
            item = raw.strip()
            if item == "network":
                events |= NETWORK
            elif item != "–":
                events.add(item)
        documented[state] = events
    actual = {state.__name__: {event.__name__ for event in events} for state, events in client.LEGAL_MOVES.items()}
    assert documented == actual


def test_every_diagram_state_exists() -> None:
    diagram = DOC.split("create_session ─►", 1)[1].split("\n\n", 1)[0]
    names = set(re.findall(r"\b([A-Z][a-z]+(?:[A-Z][a-z]+)+)\b", diagram))
    assert names
    assert names <= {state.__name__ for state in client.LEGAL_MOVES} | {"SendRequested"}
