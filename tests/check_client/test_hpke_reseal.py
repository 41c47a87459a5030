"""The suite's v3 (HPKE) reseal and open, on a real pair of HPKE channel machines: a reseal is accepted by the peer in
place of the message it replaces, and only under the key, sequence number and AAD that message had; the peer's
payloads, its handshake message included, open at the sequence number they were sealed at and at no other."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from qrlogin.channel import hpke
from qrlogin.channel._common import (
    DeliverPlaintext,
    InitiateRequested,
    PayloadReceived,
    ReportChannelFailure,
    SealRequested,
    SendPayload,
)
from qrlogin.check_client.counterpart import hpke_open, hpke_resealer
from qrlogin.encoding import b64decode, b64encode
from qrlogin.vocabulary import CheckCodeEntered

BASE_URL = "https://matrix.example.org"
RENDEZVOUS_ID = "abc123"


def _payload(effects: tuple[object, ...]) -> str:
    return next(effect.payload for effect in effects if isinstance(effect, SendPayload))


class Pair:
    """G (the counterpart, shows the code) and S (the client, scans), established with tokens t1, t2."""

    def __init__(self) -> None:
        g: hpke.HpkeState = hpke.start_showing(
            bytes(range(1, 33)), base_url=BASE_URL, rendezvous_id=RENDEZVOUS_ID, response_nonce=bytes(32)
        )
        assert isinstance(g, hpke.AwaitingInitiate)
        s: hpke.HpkeState = hpke.start_scanning(
            bytes(range(33, 65)), peer_public_key=g.public_key, base_url=BASE_URL, rendezvous_id=RENDEZVOUS_ID
        )
        s, effects = hpke.transition(s, InitiateRequested(sequence_token="t1"), now_ms=0)
        self.initiate = _payload(effects)
        g, effects = hpke.transition(
            g, PayloadReceived(payload=self.initiate, sequence_token="t1", reply_sequence_token="t2"), now_ms=0
        )
        self.login_ok = _payload(effects)
        s, _ = hpke.transition(s, PayloadReceived(payload=self.login_ok, sequence_token="t2"), now_ms=0)
        g, _ = hpke.transition(g, CheckCodeEntered(code=hpke.check_code(s)), now_ms=0)
        assert isinstance(g, hpke.Established) and isinstance(s, hpke.Established)
        self.g: hpke.HpkeState = g
        self.s: hpke.HpkeState = s

    def g_seals(self, plaintext: bytes, token: str) -> str:
        self.g, effects = hpke.transition(self.g, SealRequested(plaintext=plaintext, sequence_token=token), now_ms=0)
        return _payload(effects)

    def s_seals(self, plaintext: bytes, token: str) -> str:
        self.s, effects = hpke.transition(self.s, SealRequested(plaintext=plaintext, sequence_token=token), now_ms=0)
        return _payload(effects)

    def s_receives(self, payload: str, token: str) -> tuple[object, ...]:
        self.s, effects = hpke.transition(self.s, PayloadReceived(payload=payload, sequence_token=token), now_ms=0)
        return effects

    @property
    def g_keys(self) -> hpke.HpkeKeys:
        assert isinstance(self.g, hpke.Established)
        return self.g.keys


@given(st.binary(max_size=200))
def test_a_reseal_replaces_the_message_and_the_peer_opens_it(plaintext: bytes) -> None:
    pair = Pair()
    original = pair.g_seals(b'{"type": "m.login.protocol"}', "t3")
    assert isinstance(pair.g, hpke.Established)
    reseal = hpke_resealer(pair.g, original, ["t1", "t2", "t3", "t4"])
    assert reseal is not None
    effects = pair.s_receives(b64encode(reseal(plaintext)), "t3")
    assert [effect.plaintext for effect in effects if isinstance(effect, DeliverPlaintext)] == [plaintext]


def test_the_reseal_of_the_same_plaintext_is_the_message_itself() -> None:
    pair = Pair()
    message = b'{"type": "m.login.protocol_accepted"}'
    original = pair.g_seals(message, "t3")
    assert isinstance(pair.g, hpke.Established)
    reseal = hpke_resealer(pair.g, original, ["t3"])
    assert reseal is not None
    assert b64encode(reseal(message)) == original


def test_no_reseal_without_the_token_the_message_was_bound_to() -> None:
    pair = Pair()
    original = pair.g_seals(b"{}", "t3")
    assert isinstance(pair.g, hpke.Established)
    assert hpke_resealer(pair.g, original, ["t1", "t2", "t4"]) is None
    assert hpke_resealer(pair.g, "not base64!", ["t3"]) is None


def test_a_reseal_under_a_later_token_is_refused_by_the_peer() -> None:
    pair = Pair()
    original = pair.g_seals(b"{}", "t3")
    assert isinstance(pair.g, hpke.Established)
    reseal = hpke_resealer(pair.g, original, ["t3"])
    assert reseal is not None
    effects = pair.s_receives(b64encode(reseal(b"{}")), "t4")  # the peer expects another binding
    assert any(isinstance(effect, ReportChannelFailure) for effect in effects)


def test_the_peers_payloads_open_at_their_own_sequence_number_only() -> None:
    pair = Pair()
    tokens = ["t1", "t2", "t3", "t5"]
    first = b64decode(pair.s_seals(json.dumps({"type": "m.login.protocols"}).encode(), "t3"))
    second = b64decode(pair.s_seals(b"second", "t5"))
    keys = pair.g_keys
    assert hpke_open(keys, b64decode(pair.initiate), 0, tokens) == hpke.LOGIN_INITIATE
    assert hpke_open(keys, first, 1, tokens) == b'{"type": "m.login.protocols"}'
    assert hpke_open(keys, second, 2, tokens) == b"second"
    assert [hpke_open(keys, first, seq, tokens) for seq in (0, 2, 3)] == [None, None, None]
    assert hpke_open(keys, second, 2, ["t3"]) is None  # bound to t5


def test_the_showing_side_opens_the_response_context_handshake() -> None:
    pair = Pair()
    assert isinstance(pair.s, hpke.Established)
    assert hpke_open(pair.s.keys, b64decode(pair.login_ok), 0, ["t2"]) == hpke.LOGIN_OK
    assert hpke_open(pair.s.keys, b64decode(pair.login_ok), 0, ["t1"]) is None


@pytest.mark.parametrize("token", ["", "x" * 256])
def test_tokens_an_aad_cannot_carry_are_passed_over(token: str) -> None:
    pair = Pair()
    original = pair.g_seals(b"{}", "t3")
    assert isinstance(pair.g, hpke.Established)
    assert hpke_resealer(pair.g, original, ["t3", token]) is not None
