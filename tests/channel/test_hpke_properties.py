"""Hypothesis properties of the HPKE channel: any interleaving round-trips, no nonce reuse, tampering is typed."""

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

from qrlogin import _crypto
from qrlogin.channel import hpke as ch
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
from tests.channel.channel_helpers import SealRecorder, fork, payload_of

BASE_URL = "https://matrix.example.org"
RID = "property-session"
_RUNS = itertools.count()


def step(state: Any, event: Any) -> tuple[Any, tuple[Any, ...]]:
    return ch.transition(state, event, now_ms=0)


def fresh_secret() -> bytes:
    """A secret never handed out before in this process: randomness is an input, and every run gets its own."""
    return hashlib.sha256(b"qrlogin hpke property run %d" % next(_RUNS)).digest()


def new_channel(profile: Profile) -> tuple[Any, Any]:
    g: Any = ch.start_showing(
        fresh_secret(), base_url=BASE_URL, rendezvous_id=RID, response_nonce=fresh_secret(), profile=profile
    )
    s: Any = ch.start_scanning(
        fresh_secret(), peer_public_key=g.public_key, base_url=BASE_URL, rendezvous_id=RID, profile=profile
    )
    s, effects = step(s, InitiateRequested(sequence_token="1"))
    g, effects = step(g, PayloadReceived(payload=payload_of(effects), sequence_token="1", reply_sequence_token="2"))
    s, _ = step(s, PayloadReceived(payload=payload_of(effects), sequence_token="2"))
    g, _ = step(g, CheckCodeEntered(code=ch.check_code(s)))
    assert isinstance(g, ch.Established) and isinstance(s, ch.Established)
    return g, s


class Conversation(RuleBasedStateMachine):
    """Two established sides; each may seal, open (FIFO, as the rendezvous delivers) or retry, in any order.

    Every write gets a fresh token: the sender seals with it and the receiver opens with it, as the slot's token
    before a write is both the sender's last GET and the receiver's last PUT.
    """

    def __init__(self) -> None:
        super().__init__()
        self.sides: dict[str, Any] = {}
        self.in_flight: dict[str, deque[tuple[bytes, str, str]]] = {"g": deque(), "s": deque()}  # by receiver
        self.sealed = {"g": 0, "s": 0}
        self.opened = {"g": 0, "s": 0}
        self.tokens = itertools.count(3)

    @initialize(profile=st.sampled_from(list(Profile)))
    def establish(self, profile: Profile) -> None:
        self.sides["g"], self.sides["s"] = new_channel(profile)

    def _seal(self, sender: str, plaintext: bytes) -> None:
        receiver = "s" if sender == "g" else "g"
        token = str(next(self.tokens))
        state, effects = step(self.sides[sender], SealRequested(plaintext=plaintext, sequence_token=token))
        assert isinstance(state, ch.Established)
        self.sides[sender] = state
        self.in_flight[receiver].append((plaintext, payload_of(effects), token))
        self.sealed[sender] += 1

    def _open(self, receiver: str) -> None:
        plaintext, payload, token = self.in_flight[receiver].popleft()
        state, effects = step(self.sides[receiver], PayloadReceived(payload=payload, sequence_token=token))
        assert isinstance(state, ch.Established)
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
        last_sent: str = before.last_sent
        after, effects = step(before, RetryRequested())
        assert after is before and effects == (SendPayload(payload=last_sent),)

    @invariant()
    def sequence_numbers_count_messages(self) -> None:
        if not self.sides:
            return
        for side in ("g", "s"):  # the handshake used sequence 0 in each direction
            assert self.sides[side].send_seq == 1 + self.sealed[side]
            assert self.sides[side].recv_seq == 1 + self.opened[side]


def test_any_interleaving_round_trips_and_no_nonce_is_reused(monkeypatch: pytest.MonkeyPatch) -> None:
    recorder = SealRecorder(monkeypatch, _crypto)
    run_state_machine_as_test(
        Conversation,
        settings=settings(max_examples=60, stateful_step_count=30, deadline=None),
    )
    assert len(recorder.uses) > 100, "the property must have sealed something"
    assert recorder.reused == [], "a (key, nonce) pair sealed two plaintexts"


# -- Tampering -----------------------------------------------------------------------------------------------------


def transcript(profile: Profile) -> list[tuple[Any, PayloadReceived, int]]:
    """(receiver state just before, genuine event, length of a leading public field) for every payload. The states
    kept are forks: the conversation goes on from the originals, and each test case forks its own again."""
    g: Any = ch.start_showing(
        fresh_secret(), base_url=BASE_URL, rendezvous_id=RID, response_nonce=fresh_secret(), profile=profile
    )
    s: Any = ch.start_scanning(
        fresh_secret(), peer_public_key=g.public_key, base_url=BASE_URL, rendezvous_id=RID, profile=profile
    )
    steps: list[tuple[Any, PayloadReceived, int]] = []
    s, effects = step(s, InitiateRequested(sequence_token="1"))
    steps.append(
        (fork(g), PayloadReceived(payload=payload_of(effects), sequence_token="1", reply_sequence_token="2"), 32)
    )
    g, effects = step(g, steps[-1][1])
    steps.append((fork(s), PayloadReceived(payload=payload_of(effects), sequence_token="2"), 32))
    s, _ = step(s, steps[-1][1])
    g, _ = step(g, CheckCodeEntered(code=ch.check_code(s)))
    token = 3
    for text in (b"first", b"", b"x" * 40):
        s, effects = step(s, SealRequested(plaintext=text, sequence_token=str(token)))
        steps.append((fork(g), PayloadReceived(payload=payload_of(effects), sequence_token=str(token)), 0))
        g, _ = step(g, steps[-1][1])
        g, effects = step(g, SealRequested(plaintext=text[::-1], sequence_token=str(token + 1)))
        steps.append((fork(s), PayloadReceived(payload=payload_of(effects), sequence_token=str(token + 1)), 0))
        s, _ = step(s, steps[-1][1])
        token += 2
    return steps


TRANSCRIPTS = {profile: transcript(profile) for profile in Profile}


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), profile=st.sampled_from(list(Profile)))
def test_tampering_any_decoded_byte_fails_to_authenticate(data: st.DataObject, profile: Profile) -> None:
    receiver, event, public_prefix = data.draw(st.sampled_from(TRANSCRIPTS[profile]))
    raw = bytearray(b64decode(event.payload))
    position = data.draw(st.integers(0, len(raw) - 1))
    raw[position] ^= data.draw(st.integers(1, 255))
    state, effects = step(
        fork(receiver),
        PayloadReceived(
            payload=b64encode(bytes(raw)),
            sequence_token=event.sequence_token,
            reply_sequence_token=event.reply_sequence_token,
        ),
    )
    assert isinstance(state, ChannelFailed)
    allowed = {FailureReason.AUTHENTICATION_FAILED}
    if position < public_prefix and isinstance(receiver, ch.AwaitingInitiate):  # S's key
        allowed |= {FailureReason.NON_CONTRIBUTORY_KEY, FailureReason.REFLECTED_KEY}
    assert state.reason in allowed
    assert not any(isinstance(e, SendPayload | DeliverPlaintext) for e in effects)


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), profile=st.sampled_from(list(Profile)))
def test_tampering_any_character_is_a_typed_failure(data: st.DataObject, profile: Profile) -> None:
    receiver, event, _ = data.draw(st.sampled_from(TRANSCRIPTS[profile]))
    payload = event.payload
    position = data.draw(st.integers(0, len(payload) - 1))
    replacement = data.draw(st.characters(codec="utf-8").filter(lambda c: c != payload[position]))
    tampered = payload[:position] + replacement + payload[position + 1 :]
    state, effects = step(
        fork(receiver),
        PayloadReceived(
            payload=tampered, sequence_token=event.sequence_token, reply_sequence_token=event.reply_sequence_token
        ),
    )
    assert isinstance(state, ChannelFailed), (payload, tampered)
    assert isinstance(state.reason, FailureReason)
    assert all(not isinstance(e, SendPayload | DeliverPlaintext) for e in effects)


@settings(max_examples=100, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), profile=st.sampled_from(list(Profile)))
def test_any_other_token_is_a_typed_failure(data: st.DataObject, profile: Profile) -> None:
    receiver, event, _ = data.draw(st.sampled_from(TRANSCRIPTS[profile]))
    field = data.draw(
        st.sampled_from(
            ["sequence_token", "reply_sequence_token"] if event.reply_sequence_token else ["sequence_token"]
        )
    )
    token = data.draw(st.text(min_size=1, max_size=20).filter(lambda t: t != getattr(event, field)))
    changed = PayloadReceived(
        payload=event.payload,
        sequence_token=token if field == "sequence_token" else event.sequence_token,
        reply_sequence_token=token if field == "reply_sequence_token" else event.reply_sequence_token,
    )
    state, effects = step(fork(receiver), changed)
    if field == "reply_sequence_token":
        # G cannot know the reply token is wrong; S, opening with its own PUT token, finds out.
        assert isinstance(state, ch.AwaitingCheckCode)
        s_before = next(r for r, e, _ in TRANSCRIPTS[profile] if isinstance(r, ch.AwaitingLoginOk))
        state, effects = step(fork(s_before), PayloadReceived(payload=payload_of(effects), sequence_token="2"))
    assert isinstance(state, ChannelFailed)
    assert state.reason in {FailureReason.AUTHENTICATION_FAILED, FailureReason.INVALID_SEQUENCE_TOKEN}
