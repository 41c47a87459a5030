"""Fuzz target: arbitrary strings into every network-facing input of the HPKE machines, in every reachable state.

Run with atheris: ``python fuzz/fuzz_channel_hpke.py fuzz/corpus/channel_hpke -max_total_time=60`` (``scripts/fuzz``
runs every target for a bounded budget); ``tests/channel/test_fuzz_hpke.py`` runs the same :func:`target` under
hypothesis.

The contract (the one the ECIES target checks too): for each reachable state and each event the network or the user
controls, an arbitrary string either yields a state the machine's table allows (``MACHINE.targets``) or raises a
:class:`~qrlogin.errors.RemoteProtocolError`; nothing else escapes, and random input never authenticates, so it never
produces ``DeliverPlaintext`` or ``ReportEstablished``. The inputs the fuzzer controls are a payload, the sequence
tokens the server hands out (which the AAD must carry), and G's check-code entry. Every input goes to a fork of the
fixture state (:func:`qrlogin._machine.fork_for_exploration`): a channel state takes one event.
"""

from __future__ import annotations

from typing import Any

from qrlogin._machine import fork_for_exploration as fork
from qrlogin.channel import hpke
from qrlogin.channel._common import (
    ChannelEvent,
    ChannelFailed,
    DeliverPlaintext,
    InitiateRequested,
    PayloadReceived,
    Profile,
    ReportEstablished,
    SealRequested,
    SendPayload,
)
from qrlogin.errors import RemoteProtocolError
from qrlogin.vocabulary import CheckCodeEntered

BASE_URL = "https://matrix.example.org"
RID = "fuzz-session"


def _sent(effects: tuple[Any, ...]) -> str:
    (send,) = [e for e in effects if isinstance(e, SendPayload)]
    return send.payload


def reachable_states() -> list[Any]:
    """One state of every non-terminal kind, for both profiles (fixed secrets: this is a fixture). Where the fixture
    goes on from a state it keeps, it goes on from a fork, so every state listed is still current."""
    states: list[Any] = []
    for profile in Profile:
        g: Any = hpke.start_showing(
            bytes(range(1, 33)), base_url=BASE_URL, rendezvous_id=RID, response_nonce=bytes(32), profile=profile
        )
        s: Any = hpke.start_scanning(
            bytes(range(33, 65)), peer_public_key=g.public_key, base_url=BASE_URL, rendezvous_id=RID, profile=profile
        )
        states += [g, s]
        s, effects = hpke.transition(fork(s), InitiateRequested(sequence_token="1"), now_ms=0)
        states.append(s)
        event = PayloadReceived(payload=_sent(effects), sequence_token="1", reply_sequence_token="2")
        g, effects = hpke.transition(fork(g), event, now_ms=0)
        states.append(g)
        s, effects = hpke.transition(fork(s), PayloadReceived(payload=_sent(effects), sequence_token="2"), now_ms=0)
        states.append(s)
        g, _ = hpke.transition(fork(g), CheckCodeEntered(code=hpke.check_code(s)), now_ms=0)
        states.append(g)
    return states


STATES = reachable_states()


def _events(text: str) -> list[tuple[ChannelEvent, bool]]:
    """(event, is_untrusted_payload) for every input the fuzzer controls."""
    return [
        (PayloadReceived(payload=text, sequence_token="1", reply_sequence_token="2"), True),
        (PayloadReceived(payload=text, sequence_token=text, reply_sequence_token=text), True),
        (
            PayloadReceived(
                payload="AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
                sequence_token=text,
                reply_sequence_token=text,
            ),
            True,
        ),
        (CheckCodeEntered(code=text), False),
        (InitiateRequested(sequence_token=text), False),
        (SealRequested(plaintext=b"x", sequence_token=text), False),
    ]


def target(text: str) -> None:
    """Feed ``text`` through every legal fuzzer-controlled event of every state; AssertionError on a breach."""
    for state in STATES:
        for event, untrusted in _events(text):
            if type(event) not in hpke.MACHINE.legal_events(type(state)):
                continue
            try:
                new_state, effects = hpke.transition(fork(state), event, now_ms=0)
            except RemoteProtocolError:
                continue
            assert type(new_state) in hpke.MACHINE.targets(type(state), type(event)), type(new_state)
            if not untrusted:
                continue
            assert not any(isinstance(e, DeliverPlaintext | ReportEstablished) for e in effects), effects
            if not isinstance(new_state, ChannelFailed):
                # Unauthenticated input may at most be held (G before the check code).
                assert type(new_state) is type(state), (type(state), type(new_state))


def one_input(data: bytes) -> None:
    """The atheris entry point: the bytes as text, bytes that are not UTF-8 becoming lone surrogates."""
    target(data.decode("utf-8", "surrogateescape"))


if __name__ == "__main__":  # pragma: no cover - needs atheris
    from atheris_driver import hand_over

    hand_over(__file__)
