"""Hypothesis properties of the ECIES channel: interleavings round-trip, nonces are never reused, tampering fails."""

from __future__ import annotations

import hashlib
import itertools
from collections import deque
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from qrlogin.channel import ecies
from qrlogin.channel._common import (
    ChannelFailed,
    DeliverPlaintext,
    FailureReason,
    InitiateRequested,
    PayloadReceived,
    Profile,
    RetryRequested,
    SealRequested,
    SendPayload,
)
from qrlogin.encoding import b64decode, b64encode
from qrlogin.vocabulary import CheckCodeEntered
from tests.channel.channel_helpers import SealRecorder, fork, payload_of, run_handshake

_RUNS = itertools.count()


def fresh_secret() -> bytes:
    """A secret never handed out before in this process: randomness is an input, and every run gets its own."""
    return hashlib.sha256(b"qrlogin property run %d" % next(_RUNS)).digest()


def new_channel(profile: Profile) -> tuple[Any, Any]:
    g = ecies.start_showing(fresh_secret(), profile=profile)
    s = ecies.start_scanning(g.public_key, fresh_secret(), profile=profile)
    g_state, s_state, _ = run_handshake(g, s, ecies.transition)
    return g_state, s_state


class Conversation(RuleBasedStateMachine):
    """Two established sides; each may seal, open (FIFO, as the rendezvous delivers) or retry, in any order."""

    def __init__(self) -> None:
        super().__init__()
        self.sides: dict[str, Any] = {}
        self.in_flight: dict[str, deque[tuple[bytes, str]]] = {"g": deque(), "s": deque()}  # keyed by receiver
        self.sealed = {"g": 0, "s": 0}
        self.opened = {"g": 0, "s": 0}

    @initialize(profile=st.sampled_from(list(Profile)))
    def establish(self, profile: Profile) -> None:
        self.sides["g"], self.sides["s"] = new_channel(profile)

    def _seal(self, sender: str, plaintext: bytes) -> None:
        receiver = "s" if sender == "g" else "g"
        state, effects = ecies.transition(self.sides[sender], SealRequested(plaintext=plaintext), now_ms=0)
        assert isinstance(state, ecies.Established)
        self.sides[sender] = state
        self.in_flight[receiver].append((plaintext, payload_of(effects)))
        self.sealed[sender] += 1

    def _open(self, receiver: str) -> None:
        plaintext, payload = self.in_flight[receiver].popleft()
        state, effects = ecies.transition(self.sides[receiver], PayloadReceived(payload=payload), now_ms=0)
        assert isinstance(state, ecies.Established)
        assert effects == (DeliverPlaintext(plaintext=plaintext),)
        self.sides[receiver] = state
        self.opened[receiver] += 1

    @rule(plaintext=st.binary(max_size=64))
    def g_seals(self, plaintext: bytes) -> None:
        self._seal("g", plaintext)

    @rule(plaintext=st.binary(max_size=64))
    def s_seals(self, plaintext: bytes) -> None:
        self._seal("s", plaintext)

    @precondition(lambda self: bool(self.in_flight["g"]))
    @rule()
    def g_opens(self) -> None:
        self._open("g")

    @precondition(lambda self: bool(self.in_flight["s"]))
    @rule()
    def s_opens(self) -> None:
        self._open("s")

    @rule(side=st.sampled_from(["g", "s"]))
    def retry(self, side: str) -> None:
        before = self.sides[side]
        after, effects = ecies.transition(before, RetryRequested(), now_ms=0)
        assert after == before and effects == (SendPayload(payload=before.last_sent),)

    @invariant()
    def counters_count_messages(self) -> None:
        if not self.sides:
            return
        for side in ("g", "s"):
            assert self.sides[side].send_counter == 1 + self.sealed[side]
            assert self.sides[side].recv_counter == 1 + self.opened[side]


def test_any_interleaving_round_trips_and_no_nonce_is_reused(monkeypatch: pytest.MonkeyPatch) -> None:
    recorder = SealRecorder(monkeypatch)
    run_state_machine_as_test(
        Conversation,
        settings=settings(max_examples=60, stateful_step_count=30, deadline=None),
    )
    assert len(recorder.uses) > 100, "the property must have sealed something"
    assert recorder.reused == [], "a (key, nonce) pair sealed two plaintexts"


# -- Tampering -----------------------------------------------------------------------------------------------------


def transcript(profile: Profile) -> list[tuple[Any, str]]:
    """(receiver state just before, payload) for every payload of a short conversation, handshake included. The states
    kept are forks: the conversation goes on from the originals, and each test case forks its own again."""
    g: Any = ecies.start_showing(fresh_secret(), profile=profile)
    s: Any = ecies.start_scanning(g.public_key, fresh_secret(), profile=profile)
    steps: list[tuple[Any, str]] = []
    s, effects = ecies.transition(s, InitiateRequested(), now_ms=0)
    steps.append((fork(g), payload_of(effects)))
    g, effects = ecies.transition(g, PayloadReceived(payload=steps[-1][1]), now_ms=0)
    steps.append((fork(s), payload_of(effects)))
    s, effects = ecies.transition(s, PayloadReceived(payload=steps[-1][1]), now_ms=0)
    g, _ = ecies.transition(g, CheckCodeEntered(code=ecies.check_code(s)), now_ms=0)
    for text in (b"first", b"", b"x" * 40):
        s, effects = ecies.transition(s, SealRequested(plaintext=text), now_ms=0)
        steps.append((fork(g), payload_of(effects)))
        g, _ = ecies.transition(g, PayloadReceived(payload=steps[-1][1]), now_ms=0)
        g, effects = ecies.transition(g, SealRequested(plaintext=text[::-1]), now_ms=0)
        steps.append((fork(s), payload_of(effects)))
        s, _ = ecies.transition(s, PayloadReceived(payload=steps[-1][1]), now_ms=0)
    return steps


TRANSCRIPTS = {profile: transcript(profile) for profile in Profile}


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), profile=st.sampled_from(list(Profile)))
def test_tampering_any_decoded_byte_fails_to_authenticate(data: st.DataObject, profile: Profile) -> None:
    receiver, payload = data.draw(st.sampled_from(TRANSCRIPTS[profile]))
    ciphertext_text, separator, key_text = payload.partition("|")
    field = data.draw(st.sampled_from(["ciphertext", "key"] if separator else ["ciphertext"]))
    raw = bytearray(b64decode(ciphertext_text if field == "ciphertext" else key_text))
    position = data.draw(st.integers(0, len(raw) - 1))
    raw[position] ^= data.draw(st.integers(1, 255))
    if field == "ciphertext":
        tampered = b64encode(bytes(raw)) + separator + key_text
    else:
        tampered = ciphertext_text + separator + b64encode(bytes(raw))
    state, _ = ecies.transition(fork(receiver), PayloadReceived(payload=tampered), now_ms=0)
    assert isinstance(state, ChannelFailed)
    allowed = {FailureReason.AUTHENTICATION_FAILED}
    if field == "key":
        allowed |= {FailureReason.NON_CONTRIBUTORY_KEY, FailureReason.REFLECTED_KEY}
    assert state.reason in allowed


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), profile=st.sampled_from(list(Profile)))
def test_tampering_any_character_is_a_typed_failure(data: st.DataObject, profile: Profile) -> None:
    receiver, payload = data.draw(st.sampled_from(TRANSCRIPTS[profile]))
    position = data.draw(st.integers(0, len(payload) - 1))
    replacement = data.draw(st.characters(codec="utf-8").filter(lambda c: c != payload[position]))
    tampered = payload[:position] + replacement + payload[position + 1 :]
    state, effects = ecies.transition(fork(receiver), PayloadReceived(payload=tampered), now_ms=0)
    assert isinstance(state, ChannelFailed), (payload, tampered)
    assert isinstance(state.reason, FailureReason)
    assert all(not isinstance(e, (SendPayload, DeliverPlaintext)) for e in effects)
