"""docs/hpke.md's state diagram is generated from OUTCOMES, which covers exactly the legal moves, each observed."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

from qrlogin.channel import hpke as ch
from qrlogin.channel._common import ChannelFailed, InitiateRequested, PayloadReceived, RetryRequested, SealRequested
from qrlogin.vocabulary import CheckCodeEntered, QrSide

from .channel_helpers import load_fuzz_target, mermaid_state_diagram, payload_of

DOC = Path(__file__).resolve().parent.parent / "docs" / "hpke.md"


def test_hpke_diagram_is_up_to_date() -> None:
    match = re.search(
        r"<!-- hpke-diagram:begin -->\n```mermaid\n(.*?)```\n<!-- hpke-diagram:end -->",
        DOC.read_text("utf-8"),
        re.DOTALL,
    )
    assert match is not None
    assert match.group(1) == mermaid_state_diagram(ch.OUTCOMES, initial=[ch.AwaitingInitiate, ch.ReadyToInitiate])


def test_outcomes_cover_exactly_the_legal_moves() -> None:
    legal = {(state, event) for state, events in ch.LEGAL_MOVES.items() for event in events}
    assert set(ch.OUTCOMES) == legal
    for targets in ch.OUTCOMES.values():
        assert targets <= set(ch.LEGAL_MOVES)


def test_every_outcome_is_reached() -> None:
    states: list[Any] = load_fuzz_target("fuzz_channel_hpke").STATES
    pairs: list[tuple[Any, Any]] = []
    for state in states:
        pairs += [(state, RetryRequested()), (state, CheckCodeEntered(code="xx"))]
        pairs += [(state, InitiateRequested(sequence_token="1")), (state, InitiateRequested(sequence_token=""))]
        pairs += [(state, SealRequested(plaintext=b"", sequence_token=t)) for t in ("1", "")]
        pairs.append((state, PayloadReceived(payload="AAAA", sequence_token="1", reply_sequence_token="2")))
        if isinstance(state, ch.AwaitingCheckCode):
            pairs.append((state, CheckCodeEntered(code=state.check_code.value.decode())))
            held, _ = ch.transition(state, PayloadReceived(payload="AAAA", sequence_token="3"))
            pairs.append((held, PayloadReceived(payload="AAAA", sequence_token="3")))
        if isinstance(state, ch.Established) and state.role is QrSide.SCANS:
            _, effects = ch.transition(state, SealRequested(plaintext=b"x", sequence_token="3"))
            g_established = next(s for s in states if isinstance(s, ch.Established) and s.role is QrSide.SHOWS)
            if g_established.profile is state.profile:
                pairs.append((g_established, PayloadReceived(payload=payload_of(effects), sequence_token="3")))
            exhausted = dataclasses.replace(state, send=dataclasses.replace(state.send, seq=state.send.max_seq))
            pairs.append((exhausted, SealRequested(plaintext=b"", sequence_token="3")))
        if isinstance(state, ch.AwaitingInitiate):
            peer = ch.start_scanning(
                bytes(range(33, 65)),
                peer_public_key=state.public_key,
                base_url="https://matrix.example.org",
                rendezvous_id="fuzz-session",
                profile=state.profile,
            )
            _, effects = ch.transition(peer, InitiateRequested(sequence_token="1"))
            pairs.append(
                (state, PayloadReceived(payload=payload_of(effects), sequence_token="1", reply_sequence_token="2"))
            )
        if isinstance(state, ch.AwaitingLoginOk):
            g = next(s for s in states if isinstance(s, ch.AwaitingInitiate) and s.profile is state.profile)
            _, effects = ch.transition(
                g, PayloadReceived(payload=state.last_sent, sequence_token="1", reply_sequence_token="2")
            )
            pairs.append((state, PayloadReceived(payload=payload_of(effects), sequence_token="2")))
    seen = set()
    for state, event in pairs:
        if type(event) in ch.LEGAL_MOVES[type(state)]:
            new_state, _ = ch.transition(state, event)
            seen.add((type(state), type(event), type(new_state)))
    expected = {(state, event, target) for (state, event), targets in ch.OUTCOMES.items() for target in targets}
    assert seen == expected
    assert any(target is ChannelFailed for _, _, target in seen)
