"""docs/channel.md's state diagram is generated from the outcome table, which agrees with the legal-moves table."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from qrlogin.channel import ecies
from qrlogin.channel._common import InitiateRequested, PayloadReceived, RetryRequested, SealRequested
from qrlogin.vocabulary import CheckCodeEntered

from .channel_helpers import load_fuzz_target, mermaid_state_diagram, run_handshake

transition: Callable[..., Any] = ecies.transition
DOC = Path(__file__).resolve().parent.parent / "docs" / "channel.md"


def documented_block(name: str) -> str:
    match = re.search(
        rf"<!-- {name}:begin -->\n```mermaid\n(.*?)```\n<!-- {name}:end -->", DOC.read_text("utf-8"), re.DOTALL
    )
    assert match is not None, f"docs/channel.md has no {name} block"
    return match.group(1)


def test_ecies_diagram_is_up_to_date() -> None:
    expected = mermaid_state_diagram(ecies.OUTCOMES, initial=[ecies.AwaitingInitiate, ecies.ReadyToInitiate])
    assert documented_block("ecies-diagram") == expected


def test_outcomes_cover_exactly_the_legal_moves() -> None:
    legal = {(state, event) for state, events in ecies.LEGAL_MOVES.items() for event in events}
    assert set(ecies.OUTCOMES) == legal
    for targets in ecies.OUTCOMES.values():
        assert targets <= set(ecies.LEGAL_MOVES)


def test_every_outcome_is_reached() -> None:
    """Each edge of the diagram is observed: good and bad input from every reachable state of the fuzz fixture."""
    states: list[Any] = load_fuzz_target("fuzz_channel_ecies").STATES
    g = ecies.start_showing(bytes(range(1, 33)))
    s = ecies.start_scanning(g.public_key, bytes(range(33, 65)))
    g_est, s_est, _ = run_handshake(g, s, ecies.transition)
    _, (sealed,) = transition(s_est, SealRequested(plaintext=b"x"))
    low_order = ecies.start_scanning(bytes(32), bytes(range(33, 65)))
    exhausted = dataclasses.replace(s_est, send_counter=ecies.COUNTER_LIMIT)
    pairs: list[tuple[Any, object]] = [
        (g_est, PayloadReceived(payload=sealed.payload)),
        (low_order, InitiateRequested()),
        (exhausted, SealRequested(plaintext=b"")),
    ]
    for state in states:
        pairs += [(state, event) for event in (RetryRequested(), PayloadReceived(payload="AAAA"), InitiateRequested())]
        pairs += [(state, SealRequested(plaintext=b"")), (state, CheckCodeEntered(code="xx"))]
        if isinstance(state, ecies.AwaitingCheckCode):
            pairs.append((state, CheckCodeEntered(code=state.keys.check_code.value.decode())))
        if isinstance(state, ecies.AwaitingInitiate):
            peer = ecies.start_scanning(state.public_key, bytes(range(33, 65)), profile=state.profile)
            pairs.append((state, PayloadReceived(payload=transition(peer, InitiateRequested())[0].last_sent)))
        if isinstance(state, ecies.AwaitingLoginOk):
            peer_g = ecies.start_showing(bytes(range(1, 33)), profile=state.profile)
            _, (reply, _) = transition(peer_g, PayloadReceived(payload=state.last_sent))
            pairs.append((state, PayloadReceived(payload=reply.payload)))
    seen = set()
    for state, event in pairs:
        if type(event) in ecies.LEGAL_MOVES[type(state)]:
            new_state, _ = transition(state, event)
            seen.add((type(state), type(event), type(new_state)))
    expected = {(state, event, target) for (state, event), targets in ecies.OUTCOMES.items() for target in targets}
    assert seen == expected
