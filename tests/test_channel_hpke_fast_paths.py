"""The per-message fast paths of the HPKE channel build the same values the slow, checked constructors do.

``hpke.Context._next`` and ``channel.hpke._established`` bypass ``__init__`` for speed; these tests pin that every
field is still set, that the result equals what ``__init__`` would have built, and that the cached cipher is shared
along a context's chain (built once per key) without ever showing in a repr or taking part in equality.
"""

from __future__ import annotations

import dataclasses
import hashlib

from qrlogin import hpke
from qrlogin.channel import hpke as ch
from qrlogin.channel._common import InitiateRequested, PayloadReceived, SealRequested
from qrlogin.vocabulary import CheckCodeEntered

from .channel_helpers import payload_of

BASE_URL = "https://matrix.example.org"
RID = "fast-path-session"


def _key(label: str) -> bytes:
    return hashlib.sha256(label.encode()).digest()


def _established() -> tuple[ch.Established, ch.Established]:
    g: ch.HpkeState = ch.start_showing(_key("g"), base_url=BASE_URL, rendezvous_id=RID, response_nonce=_key("rn"))
    assert isinstance(g, ch.AwaitingInitiate)
    s: ch.HpkeState = ch.start_scanning(_key("s"), peer_public_key=g.public_key, base_url=BASE_URL, rendezvous_id=RID)
    s, effects = ch.transition(s, InitiateRequested(sequence_token="1"))
    g, effects = ch.transition(
        g, PayloadReceived(payload=payload_of(effects), sequence_token="1", reply_sequence_token="2")
    )
    s, effects = ch.transition(s, PayloadReceived(payload=payload_of(effects), sequence_token="2"))
    g, _ = ch.transition(g, CheckCodeEntered(code=ch.check_code(s)))
    assert isinstance(g, ch.Established) and isinstance(s, ch.Established)
    return g, s


def _as_built_by_init(value: object) -> object:
    init_fields = {f.name: getattr(value, f.name) for f in dataclasses.fields(value) if f.init}  # type: ignore[arg-type]
    return type(value)(**init_fields)


def test_next_context_sets_every_field_and_shares_the_cipher() -> None:
    g, s = _established()
    for context in (g.send, g.recv, s.send, s.recv):
        _, following = context.seal(b"x", aad=b"aad")
        for f in dataclasses.fields(hpke.Context):
            getattr(following, f.name)  # AttributeError if the fast constructor missed a slot
        assert following.seq == context.seq + 1
        assert following == _as_built_by_init(following)
        assert following._cipher is context._cipher is not None
        assert "_cipher" not in repr(following)


def test_established_after_a_message_sets_every_field() -> None:
    g, s = _established()
    s2, effects = ch.transition(s, SealRequested(plaintext=b"hello", sequence_token="3"))
    g2, _ = ch.transition(g, PayloadReceived(payload=payload_of(effects), sequence_token="3"))
    for state in (s2, g2):
        assert type(state) is ch.Established
        for f in dataclasses.fields(ch.Established):
            getattr(state, f.name)
        assert state == _as_built_by_init(state)
    assert isinstance(s2, ch.Established) and isinstance(g2, ch.Established)
    assert (s2.send.seq, s2.recv.seq, s2.last_sent) == (s.send.seq + 1, s.recv.seq, payload_of(effects))
    assert (g2.send.seq, g2.recv.seq, g2.last_sent) == (g.send.seq, g.recv.seq + 1, g.last_sent)


def test_hand_built_context_rebuilds_its_cipher_and_replace_does_too() -> None:
    _, s = _established()
    rebuilt = dataclasses.replace(s.send, seq=s.send.seq)
    assert rebuilt == s.send and rebuilt._cipher is not s.send._cipher
    ct, _ = s.send.seal(b"same", aad=b"")
    assert rebuilt.seal(b"same", aad=b"")[0] == ct
