"""The MSC4108 ECIES secure channel (generations v1 and v2) as one pure state machine for both roles.

Theory of operation
-------------------
This implements docs/protocol.md §4 and the "Secure channel" section of MSC4108 (seed-era text): X25519, HKDF with no
salt, ChaCha20-Poly1305 without AAD, and one 96-bit little-endian message counter per sender. With ``gp``/``sp``
the generator's and scanner's public keys and ``tail = "|" + B64(gp) + "|" + B64(sp)``::

    EncKey_S = HKDF(SH, "MATRIX_QR_CODE_LOGIN_ENCKEY_S" + tail, 32)     # S seals, G opens
    EncKey_G = HKDF(SH, "MATRIX_QR_CODE_LOGIN_ENCKEY_G" + tail, 32)     # G seals, S opens
    Check    = HKDF(SH, "MATRIX_QR_CODE_LOGIN_CHECKCODE" + tail, 2)     # b0 % 10, b1 % 10

The machine's states, each holding only what is valid in it::

    S: ReadyToInitiate --InitiateRequested--> AwaitingLoginOk --PayloadReceived(LoginOk)--> Established
    G: AwaitingInitiate --PayloadReceived(LoginInitiate)--> AwaitingCheckCode --CheckCodeEntered--> Established

and :class:`~qrlogin.channel._common.ChannelFailed` from every non-terminal state. ``MACHINE`` is the single statement
of which events each state accepts and where each can lead: one handler per legal (state, event) pair, annotated with
the states it returns. :func:`transition` dispatches through it, so an event the state does not accept raises before
anything changes; the every-pair test and the diagram in ``docs/channel.md`` are generated from it.

Why the states look the way they do:

* The ephemeral secret lives only in the first state of each role. It is used once for X25519 and is gone from every
  later state, which is all "discard Gs/Ss" can mean for immutable values.
* G's check code and keys sit in ``AwaitingCheckCode``; G cannot seal or open application payloads until the user's
  one attempt matched. A payload S sends in the meantime (S trusts the channel as soon as ``LoginOk`` opens) is kept
  sealed, at most one, and opened after the code matched.
* Counters start at 1 in ``Established`` because both handshake messages used nonce 0 (deployed behaviour and the
  seed-era text; the 2024 text gives G's ``LoginOk`` nonce 1, which no peer does).
* Every state that has written remembers the exact text of its last write, so ``RetryRequested`` re-emits it.
* Nothing ever seals twice at one counter, whatever the caller keeps or copies. Both ends of a channel hold a
  :class:`~qrlogin.channel._common.ChannelCursor` (in the first state, then in ``EciesKeys``): the counters this
  end seals and receives at next, and whether G's check code was judged. Each state can tell where it stands from
  its own fields, and every handler moves the cursor on from there before it seals, opens or judges; an older state
  value, or a copy of one, no longer stands where the cursor does and is refused. So G's one check-code attempt is
  one attempt, too.
* Per message the machine builds one ``Established`` (the shared ``EciesKeys``, two counters and the last write)
  and one effect; everything that does not change within a channel was computed once, in ``EciesKeys``.

Profiles: ``DEPLOYED`` derives with HKDF-SHA512, as vodozemac and therefore every Element client does, and decodes
padded or unpadded base64 as vodozemac does; ``SPEC_TEXT`` derives with HKDF-SHA256 and accepts only the unpadded
base64 the text prescribes. Both encode unpadded. Only ``DEPLOYED`` interoperates with real peers.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass, field
from typing import Final, Protocol

from .._crypto import (
    AEAD_TAG_LENGTH,
    X25519_KEY_LENGTH,
    AeadKey,
    HashName,
    X25519Secret,
    hkdf_expand,
    hkdf_extract,
)
from .._machine import Machine
from .._secret import Secret
from ..encoding import PaddingPolicy, b64decode, b64encode
from ..errors import (
    AuthenticationError,
    Base64DecodeError,
    LocalProtocolError,
    NonContributoryKeyError,
)
from ..qr import Generation
from ..vocabulary import CheckCodeEntered, PromptForCheckCode, QrSide, ShowCheckCode
from ._common import (
    MAX_PAYLOAD_LENGTH,
    ChannelCursor,
    ChannelEffect,
    ChannelEvent,
    ChannelFailed,
    DeliverPlaintext,
    FailureReason,
    InitiateRequested,
    KeyedState,
    PayloadReceived,
    Profile,
    ReportEstablished,
    RetryRequested,
    SealRequested,
    SendPayload,
    check_code_digits,
    fail,
    judge_check_code,
)

__all__ = [
    "COUNTER_LIMIT",
    "LOGIN_INITIATE",
    "LOGIN_OK",
    "MACHINE",
    "MAX_PLAINTEXT_LENGTH",
    "AwaitingCheckCode",
    "AwaitingInitiate",
    "AwaitingLoginOk",
    "ChannelFailed",
    "EciesKeys",
    "EciesState",
    "Established",
    "Profile",
    "ReadyToInitiate",
    "check_code",
    "derive_keys",
    "nonce",
    "start_scanning",
    "start_showing",
    "transition",
]

INFO_PREFIX: Final = "MATRIX_QR_CODE_LOGIN"
_INFO_ENCKEY_S: Final = f"{INFO_PREFIX}_ENCKEY_S".encode()
_INFO_ENCKEY_G: Final = f"{INFO_PREFIX}_ENCKEY_G".encode()
_INFO_CHECKCODE: Final = f"{INFO_PREFIX}_CHECKCODE".encode()
LOGIN_INITIATE: Final = b"MATRIX_QR_CODE_LOGIN_INITIATE"
LOGIN_OK: Final = b"MATRIX_QR_CODE_LOGIN_OK"

#: The nonce is the counter's first 12 little-endian bytes, so 2**96 counters exist; none may be used twice.
COUNTER_LIMIT: Final = 1 << 96
#: The largest plaintext whose sealed, base64-encoded form still fits the rendezvous limit.
MAX_PLAINTEXT_LENGTH: Final = MAX_PAYLOAD_LENGTH * 3 // 4 - AEAD_TAG_LENGTH


@dataclass(frozen=True, slots=True)
class _ProfileParameters:
    hkdf_hash: HashName
    padding: PaddingPolicy


_PARAMETERS: Final = {
    Profile.DEPLOYED: _ProfileParameters(hkdf_hash="sha512", padding="allow"),
    Profile.SPEC_TEXT: _ProfileParameters(hkdf_hash="sha256", padding="forbid"),
}


# ---------------------------------------------------------------------------------------------------------------
# States


@dataclass(frozen=True, slots=True, kw_only=True)
class EciesKeys:
    """What both sides hold once the keys are derived; shared, unchanged, by every later state of one channel."""

    profile: Profile
    role: QrSide
    public_key: bytes
    peer_public_key: bytes
    sender: AeadKey
    receiver: AeadKey
    check_code: Secret
    #: Where this end of the channel stands; the one mutable part, shared by every state (see ``ChannelCursor``).
    cursor: ChannelCursor = field(repr=False, compare=False)
    #: The profile's base64 padding policy, looked up once here rather than on every payload.
    padding: PaddingPolicy = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "padding", _PARAMETERS[self.profile].padding)


@dataclass(frozen=True, slots=True, kw_only=True)
class AwaitingInitiate:
    """G: the QR code is shown; waiting for S's ``LoginInitiateMessage``."""

    profile: Profile
    secret: X25519Secret
    cursor: ChannelCursor = field(default_factory=ChannelCursor, repr=False, compare=False)

    @property
    def public_key(self) -> bytes:
        return self.secret.public_key


@dataclass(frozen=True, slots=True, kw_only=True)
class AwaitingCheckCode(KeyedState):
    """G: ``LoginOk`` is sent; waiting for the user's one attempt at the code S shows."""

    keys: EciesKeys
    last_sent: str
    pending: str | None = None

    @property
    def _received(self) -> int:
        """Where it stands: ``LoginInitiate`` received, and a payload held or not."""
        return 1 if self.pending is None else 2


@dataclass(frozen=True, slots=True, kw_only=True)
class ReadyToInitiate:
    """S: the QR code is scanned; waiting for the caller to ask for ``LoginInitiateMessage``."""

    profile: Profile
    secret: X25519Secret
    peer_public_key: bytes
    cursor: ChannelCursor = field(default_factory=ChannelCursor, repr=False, compare=False)

    @property
    def public_key(self) -> bytes:
        return self.secret.public_key


@dataclass(frozen=True, slots=True, kw_only=True)
class AwaitingLoginOk(KeyedState):
    """S: ``LoginInitiateMessage`` is sent; waiting for G's ``LoginOkMessage``."""

    keys: EciesKeys
    last_sent: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Established(KeyedState):
    """Either role, trusted: seals with ``send_counter``, opens with ``recv_counter``."""

    keys: EciesKeys
    send_counter: int
    recv_counter: int
    last_sent: str


# Effects that carry no per-channel data are values like any other: one instance serves every channel.
_PROMPT_FOR_CHECK_CODE: Final = PromptForCheckCode()
_REPORT_ESTABLISHED_G: Final = ReportEstablished(role=QrSide.SHOWS)
_REPORT_ESTABLISHED_S: Final = ReportEstablished(role=QrSide.SCANS)


EciesState = AwaitingInitiate | AwaitingCheckCode | ReadyToInitiate | AwaitingLoginOk | Established | ChannelFailed
_Effects = tuple[ChannelEffect, ...]


class _HasPublicKey(Protocol):
    @property
    def public_key(self) -> bytes: ...


# ---------------------------------------------------------------------------------------------------------------
# Construction


def start_showing(secret: bytes, *, profile: Profile = Profile.DEPLOYED) -> AwaitingInitiate:
    """Device G from a fresh 32-byte ephemeral X25519 secret; show ``state.public_key`` in the QR code."""
    return AwaitingInitiate(profile=profile, secret=X25519Secret(secret))


def start_scanning(qr: _HasPublicKey | bytes, secret: bytes, *, profile: Profile = Profile.DEPLOYED) -> ReadyToInitiate:
    """Device S from the decoded QR code (a :class:`qrlogin.qr.QrCode`, or G's bare public key) and a fresh
    32-byte ephemeral secret. A v3 QR code is refused: it needs the HPKE channel, never ECIES (docs/threats.md T5)."""
    if isinstance(qr, bytes):
        peer = qr
    else:
        if getattr(qr, "generation", None) is Generation.V3:
            raise LocalProtocolError("a v3 (MSC4388) QR code needs the HPKE channel, qrlogin.channel.hpke")
        peer = qr.public_key
    if len(peer) != X25519_KEY_LENGTH:
        raise LocalProtocolError(f"G's public key is {X25519_KEY_LENGTH} bytes, got {len(peer)}")
    return ReadyToInitiate(profile=profile, secret=X25519Secret(secret), peer_public_key=bytes(peer))


# ---------------------------------------------------------------------------------------------------------------
# Wire format and key schedule


def nonce(counter: int) -> bytes:
    """``counter`` as 16 little-endian bytes, truncated to 12 (vodozemac's ``u128::to_le_bytes()[..12]``)."""
    return counter.to_bytes(12, "little")


_NONCE_0: Final = nonce(0)


def derive_keys(profile: Profile, shared_secret: bytes, gp: bytes, sp: bytes) -> tuple[bytes, bytes, bytes]:
    """``(EncKey_S, EncKey_G, CheckBytes)`` for the shared secret and the two public keys (G's first)."""
    hash_name = _PARAMETERS[profile].hkdf_hash
    tail = f"|{b64encode(gp)}|{b64encode(sp)}".encode("ascii")
    # HKDF with the salt absent: one Extract with HashLen zero bytes, then three Expands (RFC 5869 §2.2).
    prk = hkdf_extract(hash_name, salt=b"", ikm=shared_secret)
    enc_s = hkdf_expand(hash_name, prk=prk, info=_INFO_ENCKEY_S + tail, length=32)
    enc_g = hkdf_expand(hash_name, prk=prk, info=_INFO_ENCKEY_G + tail, length=32)
    check = hkdf_expand(hash_name, prk=prk, info=_INFO_CHECKCODE + tail, length=2)
    return enc_s, enc_g, check


def _keys(
    profile: Profile, role: QrSide, own: bytes, peer: bytes, shared: bytes, *, cursor: ChannelCursor
) -> EciesKeys:
    gp, sp = (own, peer) if role is QrSide.SHOWS else (peer, own)
    enc_s, enc_g, check = derive_keys(profile, shared, gp, sp)
    return EciesKeys(
        profile=profile,
        role=role,
        public_key=own,
        peer_public_key=peer,
        sender=AeadKey(enc_g if role is QrSide.SHOWS else enc_s),
        receiver=AeadKey(enc_s if role is QrSide.SHOWS else enc_g),
        check_code=Secret(check_code_digits(check, leading_zero=True).encode("ascii")),
        cursor=cursor,
    )


# ---------------------------------------------------------------------------------------------------------------
# Transitions: one handler per legal (state, event) pair. Each checks the caller's misuse first (raising before
# anything changes), then moves the channel's cursor from where its state stands (raising if the channel has left
# that state behind), then works; what it can return is its annotation.


def _initiate(
    state: ReadyToInitiate, event: InitiateRequested, now_ms: int
) -> tuple[AwaitingLoginOk | ChannelFailed, _Effects]:
    state.cursor.move(0, 0, 1, 0)
    own, peer = state.secret.public_key, state.peer_public_key
    if hmac.compare_digest(peer, own):
        return fail(state.profile, QrSide.SCANS, FailureReason.REFLECTED_KEY, "G's public key equals our own")
    try:
        shared = state.secret.exchange(peer)
    except NonContributoryKeyError:
        return fail(
            state.profile, QrSide.SCANS, FailureReason.NON_CONTRIBUTORY_KEY, "G's public key is a low-order point"
        )
    keys = _keys(state.profile, QrSide.SCANS, own, peer, shared, cursor=state.cursor)
    message = f"{b64encode(keys.sender.seal(_NONCE_0, LOGIN_INITIATE))}|{b64encode(own)}"
    return AwaitingLoginOk(keys=keys, last_sent=message), (SendPayload(payload=message),)


def _receive_initiate(
    state: AwaitingInitiate, event: PayloadReceived, now_ms: int
) -> tuple[AwaitingCheckCode | ChannelFailed, _Effects]:
    state.cursor.move(0, 0, 1, 1)
    payload = event.payload
    profile, role = state.profile, QrSide.SHOWS
    if len(payload) > MAX_PAYLOAD_LENGTH:
        return fail(profile, role, FailureReason.OVERSIZED_PAYLOAD, "LoginInitiateMessage is too long")
    ciphertext_text, separator, key_text = payload.partition("|")
    if not separator:
        return fail(profile, role, FailureReason.MALFORMED_PAYLOAD, "LoginInitiateMessage has no '|' separator")
    try:
        padding = _PARAMETERS[profile].padding
        ciphertext = b64decode(ciphertext_text, padding=padding)
        peer = b64decode(key_text, padding=padding)
    except Base64DecodeError:
        return fail(profile, role, FailureReason.MALFORMED_PAYLOAD, "LoginInitiateMessage is not valid base64")
    if len(peer) != X25519_KEY_LENGTH:
        return fail(profile, role, FailureReason.INVALID_PUBLIC_KEY, "S's public key is not 32 bytes")
    own = state.secret.public_key
    if hmac.compare_digest(peer, own):
        return fail(profile, role, FailureReason.REFLECTED_KEY, "S's public key equals our own")
    try:
        shared = state.secret.exchange(peer)
    except NonContributoryKeyError:
        return fail(profile, role, FailureReason.NON_CONTRIBUTORY_KEY, "S's public key is a low-order point")
    keys = _keys(profile, role, own, peer, shared, cursor=state.cursor)
    try:
        plaintext = keys.receiver.open(_NONCE_0, ciphertext)
    except AuthenticationError:
        return fail(profile, role, FailureReason.AUTHENTICATION_FAILED, "LoginInitiateMessage did not authenticate")
    if not hmac.compare_digest(plaintext, LOGIN_INITIATE):
        return fail(profile, role, FailureReason.UNEXPECTED_PLAINTEXT, "LoginInitiateMessage has the wrong content")
    reply = b64encode(keys.sender.seal(_NONCE_0, LOGIN_OK))
    return AwaitingCheckCode(keys=keys, last_sent=reply), (SendPayload(payload=reply), _PROMPT_FOR_CHECK_CODE)


def _receive_login_ok(
    state: AwaitingLoginOk, event: PayloadReceived, now_ms: int
) -> tuple[Established | ChannelFailed, _Effects]:
    keys = state.keys
    keys.cursor.move(1, 0, 1, 1)
    payload = event.payload
    profile, role = keys.profile, QrSide.SCANS
    if len(payload) > MAX_PAYLOAD_LENGTH:
        return fail(profile, role, FailureReason.OVERSIZED_PAYLOAD, "LoginOkMessage is too long")
    try:
        ciphertext = b64decode(payload, padding=keys.padding)
    except Base64DecodeError:
        return fail(profile, role, FailureReason.MALFORMED_PAYLOAD, "LoginOkMessage is not valid base64")
    try:
        plaintext = keys.receiver.open(_NONCE_0, ciphertext)
    except AuthenticationError:
        return fail(profile, role, FailureReason.AUTHENTICATION_FAILED, "LoginOkMessage did not authenticate")
    if not hmac.compare_digest(plaintext, LOGIN_OK):
        return fail(profile, role, FailureReason.UNEXPECTED_PLAINTEXT, "LoginOkMessage has the wrong content")
    established = Established(keys=keys, send_counter=1, recv_counter=1, last_sent=state.last_sent)
    code = keys.check_code.value.decode("ascii")
    return established, (ShowCheckCode(code=code), _REPORT_ESTABLISHED_S)


def _hold(
    state: AwaitingCheckCode, event: PayloadReceived, now_ms: int
) -> tuple[AwaitingCheckCode | ChannelFailed, _Effects]:
    cursor, received = state.keys.cursor, state._received
    cursor.check_unjudged()
    cursor.move(1, received, 1, received + 1)  # a held payload is received now and opened after the code matched
    payload = event.payload
    if len(payload) > MAX_PAYLOAD_LENGTH:
        return fail(state.profile, QrSide.SHOWS, FailureReason.OVERSIZED_PAYLOAD, "payload is too long")
    if state.pending is not None:
        return fail(
            state.profile, QrSide.SHOWS, FailureReason.UNEXPECTED_PAYLOAD, "a second payload before the check code"
        )
    return AwaitingCheckCode(keys=state.keys, last_sent=state.last_sent, pending=payload), ()


def _confirm(
    state: AwaitingCheckCode, event: CheckCodeEntered, now_ms: int
) -> tuple[Established | ChannelFailed, _Effects]:
    state.keys.cursor.judge(state._received)
    verdict = judge_check_code(event.code, state.keys.check_code, leading_zero=True)
    if verdict is not None:
        malformed = verdict is FailureReason.CHECK_CODE_MALFORMED
        detail = "the entry is not two ASCII digits" if malformed else "the entry does not match the check code"
        return fail(state.profile, QrSide.SHOWS, verdict, detail)
    established = Established(keys=state.keys, send_counter=1, recv_counter=1, last_sent=state.last_sent)
    if state.pending is None:
        return established, (_REPORT_ESTABLISHED_G,)
    opened, effects = _open_payload(established, state.pending)  # the cursor counted it when it was held
    return opened, (_REPORT_ESTABLISHED_G, *effects)


def _seal(state: Established, event: SealRequested, now_ms: int) -> tuple[Established | ChannelFailed, _Effects]:
    plaintext = event.plaintext
    if len(plaintext) > MAX_PLAINTEXT_LENGTH:
        raise LocalProtocolError(f"a plaintext longer than {MAX_PLAINTEXT_LENGTH} bytes does not fit a payload")
    keys = state.keys
    counter = state.send_counter
    keys.cursor.move(counter, state.recv_counter, counter + 1, state.recv_counter)
    if counter >= COUNTER_LIMIT:
        return fail(keys.profile, keys.role, FailureReason.COUNTER_EXHAUSTED, "the send counter is exhausted")
    payload = b64encode(keys.sender.seal(counter.to_bytes(12, "little"), plaintext))
    following = Established(keys=keys, send_counter=counter + 1, recv_counter=state.recv_counter, last_sent=payload)
    return following, (SendPayload(payload=payload),)


def _open(state: Established, event: PayloadReceived, now_ms: int) -> tuple[Established | ChannelFailed, _Effects]:
    keys = state.keys
    keys.cursor.move(state.send_counter, state.recv_counter, state.send_counter, state.recv_counter + 1)
    return _open_payload(state, event.payload)


def _open_payload(state: Established, payload: str) -> tuple[Established | ChannelFailed, _Effects]:
    """Open ``payload`` at the state's receive counter; the caller has moved the cursor past it."""
    keys = state.keys
    if len(payload) > MAX_PAYLOAD_LENGTH:
        return fail(keys.profile, keys.role, FailureReason.OVERSIZED_PAYLOAD, "payload is too long")
    counter = state.recv_counter
    if counter >= COUNTER_LIMIT:
        return fail(keys.profile, keys.role, FailureReason.COUNTER_EXHAUSTED, "the receive counter is exhausted")
    try:
        ciphertext = b64decode(payload, padding=keys.padding)
    except Base64DecodeError:
        return fail(keys.profile, keys.role, FailureReason.MALFORMED_PAYLOAD, "payload is not valid base64")
    try:
        plaintext = keys.receiver.open(counter.to_bytes(12, "little"), ciphertext)
    except AuthenticationError:
        return fail(keys.profile, keys.role, FailureReason.AUTHENTICATION_FAILED, "payload did not authenticate")
    following = Established(
        keys=keys, send_counter=state.send_counter, recv_counter=counter + 1, last_sent=state.last_sent
    )
    return following, (DeliverPlaintext(plaintext=plaintext),)


# A retry changes nothing, so it only checks that the channel still stands where the state does.
def _resend_initiate(
    state: AwaitingLoginOk, event: RetryRequested, now_ms: int
) -> tuple[AwaitingLoginOk, tuple[SendPayload]]:
    state.keys.cursor.check(1, 0)
    return state, (SendPayload(payload=state.last_sent),)


def _resend_login_ok(
    state: AwaitingCheckCode, event: RetryRequested, now_ms: int
) -> tuple[AwaitingCheckCode, tuple[SendPayload]]:
    state.keys.cursor.check_unjudged()
    state.keys.cursor.check(1, state._received)
    return state, (SendPayload(payload=state.last_sent),)


def _resend_last(state: Established, event: RetryRequested, now_ms: int) -> tuple[Established, tuple[SendPayload]]:
    state.keys.cursor.check(state.send_counter, state.recv_counter)
    return state, (SendPayload(payload=state.last_sent),)


MACHINE: Final[Machine[EciesState, ChannelEvent, ChannelEffect]] = Machine(
    "ECIES channel",
    {
        (ReadyToInitiate, InitiateRequested): _initiate,
        (AwaitingLoginOk, PayloadReceived): _receive_login_ok,
        (AwaitingLoginOk, RetryRequested): _resend_initiate,
        (AwaitingInitiate, PayloadReceived): _receive_initiate,
        (AwaitingCheckCode, CheckCodeEntered): _confirm,
        (AwaitingCheckCode, PayloadReceived): _hold,
        (AwaitingCheckCode, RetryRequested): _resend_login_ok,
        (Established, SealRequested): _seal,
        (Established, PayloadReceived): _open,
        (Established, RetryRequested): _resend_last,
    },
    initial=(AwaitingInitiate, ReadyToInitiate),
)


def transition(state: EciesState, event: ChannelEvent, *, now_ms: int) -> tuple[EciesState, _Effects]:
    """Feed one event; return the next state and what the caller must do. ``now_ms`` is unused: ECIES has no timers.

    Raises :class:`~qrlogin.errors.LocalProtocolError` (before anything changes) for an event the state does not
    accept, a state that was used already (keep the state the last transition returned), or a misuse such as an
    oversized plaintext. Never raises for anything that came from the network.
    """
    return MACHINE.transition(state, event, now_ms)


def check_code(state: EciesState) -> str:
    """The two digits of an established channel (S shows them; G has matched them)."""
    if not isinstance(state, Established):
        raise LocalProtocolError(f"there is no trusted check code in state {type(state).__name__}")
    return state.keys.check_code.value.decode("ascii")
