"""The MSC4388 HPKE secure channel (generation v3) as one pure state machine for both roles.

Theory of operation
-------------------
This implements docs/protocol.md §5 and MSC4388 "Secure channel", steps 4 to 7 and "Secure operations", on top of the
RFC 9180 key schedule in :mod:`qrlogin.hpke` (suite DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, ChaCha20-Poly1305,
``info = "MATRIX_QR_CODE_LOGIN"``). S is the HPKE sender and G the recipient; the reverse direction uses the
RFC 9458 response context::

    S: enc=Sp, ctxS = SetupBaseS(Gp, info)         LoginInitiate = B64(Sp || ctxS.Seal(INITIATE, aad))
    G: ctxG = SetupBaseR(Sp, Gs, info)             opens it, then with a response nonce rn (an input):
       sendG = ResponseContext(ctxG, RESPONSE_LABEL, Sp, rn)     LoginOk = B64(rn || sendG.Seal(OK, aad))
    S: recvS = ResponseContext(ctxS, RESPONSE_LABEL, Sp, rn)     opens LoginOk
    both: CheckBytes = ctx.Export(CHECK_CONTEXT, 2); code = (b0 % 9 + 1, b1 % 10), never a leading zero
    later: S seals with ctxS and G opens with ctxG; G seals with sendG and S opens with recvS; messages are B64(ct)

Every seal and open binds the rendezvous session through the AAD::

    aad = u16(len BaseUrl) || BaseUrl || u8(len RendezvousId) || RendezvousId || u8(len Token) || Token

A payload is sealed with the token of the sender's last GET and opened with the token returned by the receiver's own
last write (G's POST for ``LoginInitiate``). The events carry them (see :mod:`qrlogin.channel._common`):
``InitiateRequested.sequence_token`` and ``SealRequested.sequence_token`` seal; ``PayloadReceived.sequence_token``
opens; ``PayloadReceived.reply_sequence_token`` seals G's ``LoginOk`` in the same transition. The rendezvous layer
knows the tokens, the channel only binds to them. Tokens are sent by the server, so a token that cannot be
encoded (empty, not UTF-8, or over 255 bytes) ends the channel in :class:`~qrlogin.channel._common.ChannelFailed`; a
missing token is the caller's error.

States, each holding only what is valid in it::

    S: ReadyToInitiate --InitiateRequested--> AwaitingLoginOk --PayloadReceived(LoginOk)--> Established
    G: AwaitingInitiate --PayloadReceived(LoginInitiate)--> AwaitingCheckCode --CheckCodeEntered--> Established

and ``ChannelFailed`` from every non-terminal state; ``MACHINE`` is the table of which events each state accepts and
where each can lead, and :func:`transition` dispatches through it. The ephemeral secret lives only in the first state
of each role. Once both contexts exist, ``HpkeKeys`` holds what stays fixed for the channel (a
:class:`~qrlogin.hpke.ContextKey` per direction: key and base nonce, set up once), and ``Established`` keeps the two
sequence numbers: per message the machine builds one state and one effect. Every state carries the channel end's
:class:`~qrlogin.channel._common.ChannelCursor`, which each handler moves on before it seals, opens or judges, so no
state value, and no copy of one, can seal twice at one sequence number or judge the check code twice;
``RetryRequested`` re-emits the stored bytes of the last write instead of sealing again.

G holds at most one payload that arrives before the user's check-code attempt (S trusts the channel as soon as
``LoginOk`` opens and may speak at once) and opens it only after the code matched; a second one is
``UNEXPECTED_PAYLOAD``. A second ``LoginInitiate`` (a replay, or another scanner's) can only arrive as such a
payload or later, where it is either unexpected or fails to authenticate under G's receive context.

Profiles (the text and its one implementation disagree, docs/protocol.md §5):

* response export label: ``"MATRIX_QR_CODE_LOGIN response"`` (``SPEC_TEXT``, the MSC text) or
  ``"MATRIX_QR_CODE_LOGIN_RESPONSE"`` (``DEPLOYED``, vodozemac);
* check-code exporter context: ``"MATRIX_QR_CODE_LOGIN_CHECKCODE" || Gp || Sp`` with raw keys (``SPEC_TEXT``) or
  ``"MATRIX_QR_CODE_LOGIN_CHECKCODE|" + B64(Gp) + "|" + B64(Sp)`` (``DEPLOYED``);
* AAD base URL: exactly as written in the QR code (``SPEC_TEXT``) or as matrix-rust-sdk's parsed ``url::Url``
  serialises it, so ``https://host`` becomes ``https://host/`` (``DEPLOYED``);
* base64 input: unpadded only (``SPEC_TEXT``) or padded and unpadded, as vodozemac decodes (``DEPLOYED``).

``DEPLOYED`` (called "vodozemac" in the docs; :data:`VODOZEMAC` names it) is the default: it is what the
only implementation does, so it is the profile that can meet a real peer; ``SPEC_TEXT`` exists to follow the text
and to show, by test, that the two do not interoperate. ``docs/hpke.md`` has the longer argument.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass, field
from typing import Final, Protocol
from urllib.parse import urlunsplit

from .. import hpke
from .._crypto import AEAD_TAG_LENGTH, X25519_KEY_LENGTH, X25519Secret
from .._machine import Machine
from .._secret import Secret
from ..encoding import PaddingPolicy, b64decode, b64encode
from ..errors import AuthenticationError, Base64DecodeError, LocalProtocolError, NonContributoryKeyError
from ..http import split_url
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
    ReportChannelFailure,
    ReportEstablished,
    RetryRequested,
    SealRequested,
    SendPayload,
    check_code_digits,
    fail,
    judge_check_code,
)

__all__ = [
    "CHECK_CODE_LABEL",
    "INFO",
    "LOGIN_INITIATE",
    "LOGIN_OK",
    "MACHINE",
    "MAX_BASE_URL_LENGTH",
    "MAX_IDENTIFIER_LENGTH",
    "MAX_PLAINTEXT_LENGTH",
    "RESPONSE_NONCE_LENGTH",
    "VODOZEMAC",
    "AwaitingCheckCode",
    "AwaitingInitiate",
    "AwaitingLoginOk",
    "ChannelFailed",
    "Established",
    "HpkeKeys",
    "HpkeState",
    "ReadyToInitiate",
    "aad_base_url",
    "check_code",
    "check_code_context",
    "encode_aad",
    "response_label",
    "start_scanning",
    "start_scanning_from_qr",
    "start_showing",
    "transition",
]

INFO: Final = b"MATRIX_QR_CODE_LOGIN"
LOGIN_INITIATE: Final = b"MATRIX_QR_CODE_LOGIN_INITIATE"
LOGIN_OK: Final = b"MATRIX_QR_CODE_LOGIN_OK"
CHECK_CODE_LABEL: Final = b"MATRIX_QR_CODE_LOGIN_CHECKCODE"
#: Another name for the default profile: the labels and URL handling of vodozemac / matrix-rust-sdk.
VODOZEMAC: Final = Profile.DEPLOYED
#: The response nonce, and the secret exported for the response context, are ``max(Nn, Nk)`` bytes (RFC 9458 §4.4),
#: 32 for ChaCha20-Poly1305.
RESPONSE_NONCE_LENGTH: Final = max(hpke.CHACHA20_POLY1305.nn, hpke.CHACHA20_POLY1305.nk)
#: Rendezvous ids and sequence tokens are opaque identifiers of 1 to 255 bytes; the AAD gives them one length byte.
MAX_IDENTIFIER_LENGTH: Final = 255
MAX_BASE_URL_LENGTH: Final = 0xFFFF
#: The largest plaintext whose sealed, base64-encoded form still fits the rendezvous limit.
MAX_PLAINTEXT_LENGTH: Final = MAX_PAYLOAD_LENGTH * 3 // 4 - AEAD_TAG_LENGTH


@dataclass(frozen=True, slots=True)
class _ProfileParameters:
    response_label: bytes
    padding: PaddingPolicy
    normalise_base_url: bool
    separated_check_context: bool


_PARAMETERS: Final = {
    Profile.SPEC_TEXT: _ProfileParameters(
        response_label=b"MATRIX_QR_CODE_LOGIN response",
        padding="forbid",
        normalise_base_url=False,
        separated_check_context=False,
    ),
    Profile.DEPLOYED: _ProfileParameters(
        response_label=b"MATRIX_QR_CODE_LOGIN_RESPONSE",
        padding="allow",
        normalise_base_url=True,
        separated_check_context=True,
    ),
}


# Effects that carry no per-channel data are values like any other: one instance serves every channel.
_PROMPT_FOR_CHECK_CODE: Final = PromptForCheckCode()
_REPORT_ESTABLISHED_G: Final = ReportEstablished(role=QrSide.SHOWS)
_REPORT_ESTABLISHED_S: Final = ReportEstablished(role=QrSide.SCANS)


# ---------------------------------------------------------------------------------------------------------------
# Profile-dependent derivations, exposed so that the known-answer transcripts can check each step.


def response_label(profile: Profile) -> bytes:
    """The export label of the response secret (``Secret := ctx.Export(label, 32)``)."""
    return _PARAMETERS[profile].response_label


def check_code_context(profile: Profile, gp: bytes, sp: bytes) -> bytes:
    """The exporter context of the check bytes; G's key first on both sides."""
    if _PARAMETERS[profile].separated_check_context:
        return CHECK_CODE_LABEL + f"|{b64encode(gp)}|{b64encode(sp)}".encode("ascii")
    return CHECK_CODE_LABEL + gp + sp


def aad_base_url(profile: Profile, base_url: str) -> str:
    """The base URL as it enters the AAD: as written (``SPEC_TEXT``) or as a parsed URL serialises it.

    For ``DEPLOYED`` this reproduces what matrix-rust-sdk's ``url::Url::as_str()`` does to a homeserver base URL:
    the scheme and host are lower-cased, the scheme's default port is dropped, and an empty path becomes ``/``.
    Other WHATWG normalisations (percent-encoding, dot segments, IDNA) are not attempted; a base URL that needs
    them is not a plausible homeserver URL.
    """
    if not _PARAMETERS[profile].normalise_base_url:
        return base_url
    parts = split_url(base_url)
    if parts is None:
        raise LocalProtocolError("the base URL does not parse")
    scheme = parts.scheme.lower()
    netloc = parts.netloc
    if "@" not in netloc:  # userinfo is case-sensitive; hosts are not
        netloc = netloc.lower()
    default_port = {"https": ":443", "http": ":80"}.get(scheme)
    if default_port and netloc.endswith(default_port):
        netloc = netloc[: -len(default_port)]
    return urlunsplit((scheme, netloc, parts.path or "/", parts.query, parts.fragment))


def encode_aad(base_url: str, rendezvous_id: str, sequence_token: str) -> bytes:
    """``EncodeStringAsBytes16(BaseUrl) || EncodeStringAsBytes8(RendezvousId) || EncodeStringAsBytes8(Token)``.

    Raises :class:`~qrlogin.errors.LocalProtocolError` for a field that does not fit its length prefix or is empty
    (the machine checks server-sent tokens first and fails the channel instead).
    """
    return _aad_prefix(base_url, rendezvous_id) + _encode_token(sequence_token)


def _utf8(text: str, what: str) -> bytes:
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate, which JSON decoding can produce
        raise LocalProtocolError(f"the {what} is not encodable as UTF-8") from None


def _aad_prefix(base_url: str, rendezvous_id: str) -> bytes:
    url = _utf8(base_url, "base URL")
    if len(url) > MAX_BASE_URL_LENGTH:
        raise LocalProtocolError(f"a base URL is at most {MAX_BASE_URL_LENGTH} bytes")
    rid = _utf8(rendezvous_id, "rendezvous id")
    if not 1 <= len(rid) <= MAX_IDENTIFIER_LENGTH:
        raise LocalProtocolError(f"a rendezvous id is 1 to {MAX_IDENTIFIER_LENGTH} bytes, got {len(rid)}")
    return len(url).to_bytes(2, "big") + url + bytes([len(rid)]) + rid


def _encode_token(sequence_token: str) -> bytes:
    token = _utf8(sequence_token, "sequence token")
    if not 1 <= len(token) <= MAX_IDENTIFIER_LENGTH:
        raise LocalProtocolError(f"a sequence token is 1 to {MAX_IDENTIFIER_LENGTH} bytes, got {len(token)}")
    return bytes([len(token)]) + token


def _token_field(sequence_token: str) -> bytes | None:
    """``EncodeStringAsBytes8(Token)``, or ``None`` for a token the AAD cannot carry (empty, not UTF-8, too long)."""
    try:
        token = sequence_token.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate, which JSON decoding can produce
        return None
    length = len(token)
    if not 1 <= length <= MAX_IDENTIFIER_LENGTH:
        return None
    return bytes((length,)) + token


# ---------------------------------------------------------------------------------------------------------------
# States


@dataclass(frozen=True, slots=True, kw_only=True)
class AwaitingInitiate:
    """G: the QR code is shown; waiting for S's ``LoginInitiateMessage``."""

    profile: Profile
    secret: X25519Secret
    public_key: bytes
    aad_prefix: bytes
    response_nonce: bytes
    cursor: ChannelCursor = field(default_factory=ChannelCursor, repr=False, compare=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class ReadyToInitiate:
    """S: the QR code is scanned; waiting for the caller to ask for ``LoginInitiateMessage``."""

    profile: Profile
    secret: X25519Secret
    public_key: bytes
    peer_public_key: bytes
    aad_prefix: bytes
    cursor: ChannelCursor = field(default_factory=ChannelCursor, repr=False, compare=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class AwaitingLoginOk:
    """S: ``LoginInitiateMessage`` is sent (sealed at sequence number 0); waiting for G's ``LoginOkMessage``.

    ``response_secret`` is the base context's export under the response label: with G's response nonce it gives the
    context S opens G's messages with.
    """

    profile: Profile
    public_key: bytes
    peer_public_key: bytes
    aad_prefix: bytes
    sender: hpke.ContextKey
    response_secret: Secret
    check_code: Secret
    last_sent: str
    cursor: ChannelCursor = field(repr=False, compare=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class HpkeKeys:
    """What a side holds once both contexts exist; shared, unchanged, by every later state of one channel."""

    profile: Profile
    role: QrSide
    public_key: bytes
    peer_public_key: bytes
    aad_prefix: bytes
    sender: hpke.ContextKey
    receiver: hpke.ContextKey
    check_code: Secret
    #: Where this end of the channel stands; the one mutable part, shared by every state (see ``ChannelCursor``).
    cursor: ChannelCursor = field(repr=False, compare=False)
    #: The profile's base64 padding policy, looked up once here rather than on every payload.
    padding: PaddingPolicy = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "padding", _PARAMETERS[self.profile].padding)


class _KeyedState(KeyedState):
    """The public facts of a channel whose contexts exist, read from its shared :class:`HpkeKeys`."""

    __slots__ = ()
    keys: HpkeKeys  # declared by each dataclass that mixes this in

    @property
    def check_code(self) -> Secret:
        return self.keys.check_code


@dataclass(frozen=True, slots=True, kw_only=True)
class AwaitingCheckCode(_KeyedState):
    """G: ``LoginOk`` is sent; waiting for the user's one attempt at the code S shows."""

    keys: HpkeKeys
    last_sent: str
    pending: PayloadReceived | None = None

    @property
    def _received(self) -> int:
        """Where it stands: ``LoginInitiate`` received, and a payload held or not."""
        return 1 if self.pending is None else 2


@dataclass(frozen=True, slots=True, kw_only=True)
class Established(_KeyedState):
    """Either role, trusted: seals at sequence number ``send_seq`` of ``keys.sender``, opens at ``recv_seq`` of
    ``keys.receiver``."""

    keys: HpkeKeys
    send_seq: int
    recv_seq: int
    last_sent: str


HpkeState = AwaitingInitiate | AwaitingCheckCode | ReadyToInitiate | AwaitingLoginOk | Established | ChannelFailed
_Effects = tuple[ChannelEffect, ...]


class _V3QrCode(Protocol):
    @property
    def public_key(self) -> bytes: ...
    @property
    def rendezvous_id(self) -> str | None: ...
    @property
    def base_url(self) -> str | None: ...


# ---------------------------------------------------------------------------------------------------------------
# Construction


def start_showing(
    secret: bytes,
    *,
    base_url: str,
    rendezvous_id: str,
    response_nonce: bytes,
    profile: Profile = Profile.DEPLOYED,
) -> AwaitingInitiate:
    """Device G from a fresh 32-byte ephemeral secret, the session it created and 32 fresh random bytes.

    ``base_url`` is the homeserver base URL exactly as G writes it into the QR code; ``response_nonce`` is the
    RFC 9458 response nonce G will send in ``LoginOk`` (randomness is an input; it must be fresh per session).
    Show ``state.public_key`` in the QR code.
    """
    if len(response_nonce) != RESPONSE_NONCE_LENGTH:
        raise LocalProtocolError(f"the response nonce is {RESPONSE_NONCE_LENGTH} bytes, got {len(response_nonce)}")
    loaded = X25519Secret(secret)
    return AwaitingInitiate(
        profile=profile,
        secret=loaded,
        public_key=loaded.public_key,
        aad_prefix=_aad_prefix(aad_base_url(profile, base_url), rendezvous_id),
        response_nonce=bytes(response_nonce),
    )


def start_scanning(
    secret: bytes,
    *,
    peer_public_key: bytes,
    base_url: str,
    rendezvous_id: str,
    profile: Profile = Profile.DEPLOYED,
) -> ReadyToInitiate:
    """Device S from a fresh 32-byte ephemeral secret and what the v3 QR code carried."""
    if len(peer_public_key) != X25519_KEY_LENGTH:
        raise LocalProtocolError(f"G's public key is {X25519_KEY_LENGTH} bytes, got {len(peer_public_key)}")
    loaded = X25519Secret(secret)
    return ReadyToInitiate(
        profile=profile,
        secret=loaded,
        public_key=loaded.public_key,
        peer_public_key=bytes(peer_public_key),
        aad_prefix=_aad_prefix(aad_base_url(profile, base_url), rendezvous_id),
    )


def start_scanning_from_qr(qr: _V3QrCode, secret: bytes, *, profile: Profile = Profile.DEPLOYED) -> ReadyToInitiate:
    """:func:`start_scanning` from a decoded v3 QR code (``qrlogin.qr.QrCode``)."""
    if qr.base_url is None or qr.rendezvous_id is None:
        raise LocalProtocolError("an HPKE channel needs a v3 QR code (with a base URL and a rendezvous id)")
    return start_scanning(
        secret,
        peer_public_key=qr.public_key,
        base_url=qr.base_url,
        rendezvous_id=qr.rendezvous_id,
        profile=profile,
    )


# ---------------------------------------------------------------------------------------------------------------
# Transitions: one handler per legal (state, event) pair. Each checks the caller's misuse first (a missing token,
# an oversized plaintext: raising before anything changes), then moves the channel's cursor from where its state
# stands (raising if the channel has left that state behind), then works; what it can return is its annotation.


def _bad_token(profile: Profile, role: QrSide, which: str) -> tuple[ChannelFailed, tuple[ReportChannelFailure]]:
    detail = f"the {which} sequence token is empty, not UTF-8, or longer than {MAX_IDENTIFIER_LENGTH} bytes"
    return fail(profile, role, FailureReason.INVALID_SEQUENCE_TOKEN, detail)


def _open_token(event: PayloadReceived) -> str:
    if event.sequence_token is None:
        raise LocalProtocolError("an HPKE open needs the sequence token of the receiver's last write")
    return event.sequence_token


def _seal_token(token: str | None) -> str:
    if token is None:
        raise LocalProtocolError("an HPKE seal needs the sequence token of the sender's last GET")
    return token


def _initiate(
    state: ReadyToInitiate, event: InitiateRequested, now_ms: int
) -> tuple[AwaitingLoginOk | ChannelFailed, _Effects]:
    sequence_token = _seal_token(event.sequence_token)
    state.cursor.move(0, 0, 1, 0)
    profile, role = state.profile, QrSide.SCANS
    token = _token_field(sequence_token)
    if token is None:
        return _bad_token(profile, role, "GET")
    if hmac.compare_digest(state.peer_public_key, state.public_key):
        return fail(profile, role, FailureReason.REFLECTED_KEY, "G's public key equals our own")
    try:
        shared, enc = hpke.encap(state.peer_public_key, ephemeral_secret=state.secret)
    except NonContributoryKeyError:
        return fail(profile, role, FailureReason.NON_CONTRIBUTORY_KEY, "G's public key is a low-order point")
    schedule = hpke.key_schedule(shared, INFO)
    check = hpke.export(
        schedule.exporter_secret, check_code_context(profile, state.peer_public_key, state.public_key), 2
    )
    response_secret = hpke.export(schedule.exporter_secret, response_label(profile), RESPONSE_NONCE_LENGTH)
    sender = hpke.ContextKey(schedule.key.value, schedule.base_nonce.value)
    message = b64encode(enc + sender.seal(0, LOGIN_INITIATE, state.aad_prefix + token))
    following = AwaitingLoginOk(
        profile=profile,
        public_key=state.public_key,
        peer_public_key=state.peer_public_key,
        aad_prefix=state.aad_prefix,
        sender=sender,
        response_secret=Secret(response_secret),
        check_code=Secret(check_code_digits(check, leading_zero=False).encode("ascii")),
        last_sent=message,
        cursor=state.cursor,
    )
    return following, (SendPayload(payload=message),)


def _receive_initiate(
    state: AwaitingInitiate, event: PayloadReceived, now_ms: int
) -> tuple[AwaitingCheckCode | ChannelFailed, _Effects]:
    sequence_token = _open_token(event)
    if event.reply_sequence_token is None:
        raise LocalProtocolError("G's LoginOk needs the sequence token of the GET that delivered LoginInitiate")
    state.cursor.move(0, 0, 1, 1)
    profile, role, payload = state.profile, QrSide.SHOWS, event.payload
    if len(payload) > MAX_PAYLOAD_LENGTH:
        return fail(profile, role, FailureReason.OVERSIZED_PAYLOAD, "LoginInitiateMessage is too long")
    token = _token_field(sequence_token)
    if token is None:
        return _bad_token(profile, role, "POST")
    reply_token = _token_field(event.reply_sequence_token)
    if reply_token is None:
        return _bad_token(profile, role, "GET")
    try:
        data = b64decode(payload, padding=_PARAMETERS[profile].padding)
    except Base64DecodeError:
        return fail(profile, role, FailureReason.MALFORMED_PAYLOAD, "LoginInitiateMessage is not valid base64")
    if len(data) < hpke.N_ENC + AEAD_TAG_LENGTH:
        return fail(profile, role, FailureReason.MALFORMED_PAYLOAD, "LoginInitiateMessage is truncated")
    peer, ciphertext = data[: hpke.N_ENC], data[hpke.N_ENC :]
    if hmac.compare_digest(peer, state.public_key):
        return fail(profile, role, FailureReason.REFLECTED_KEY, "S's public key equals our own")
    try:
        shared = hpke.decap(peer, recipient_secret=state.secret)
    except NonContributoryKeyError:
        return fail(profile, role, FailureReason.NON_CONTRIBUTORY_KEY, "S's public key is a low-order point")
    schedule = hpke.key_schedule(shared, INFO)
    receiver = hpke.ContextKey(schedule.key.value, schedule.base_nonce.value)
    try:
        plaintext = receiver.open(0, ciphertext, state.aad_prefix + token)
    except AuthenticationError:
        return fail(profile, role, FailureReason.AUTHENTICATION_FAILED, "LoginInitiateMessage did not authenticate")
    if not hmac.compare_digest(plaintext, LOGIN_INITIATE):
        return fail(profile, role, FailureReason.UNEXPECTED_PLAINTEXT, "LoginInitiateMessage has the wrong content")
    check = hpke.export(schedule.exporter_secret, check_code_context(profile, state.public_key, peer), 2)
    response_secret = hpke.export(schedule.exporter_secret, response_label(profile), RESPONSE_NONCE_LENGTH)
    sender = hpke.ContextKey(*hpke.response_key_nonce(response_secret, enc=peer, response_nonce=state.response_nonce))
    reply = b64encode(state.response_nonce + sender.seal(0, LOGIN_OK, state.aad_prefix + reply_token))
    keys = HpkeKeys(
        profile=profile,
        role=role,
        public_key=state.public_key,
        peer_public_key=peer,
        aad_prefix=state.aad_prefix,
        sender=sender,
        receiver=receiver,
        check_code=Secret(check_code_digits(check, leading_zero=False).encode("ascii")),
        cursor=state.cursor,
    )
    return AwaitingCheckCode(keys=keys, last_sent=reply), (SendPayload(payload=reply), _PROMPT_FOR_CHECK_CODE)


def _receive_login_ok(
    state: AwaitingLoginOk, event: PayloadReceived, now_ms: int
) -> tuple[Established | ChannelFailed, _Effects]:
    sequence_token = _open_token(event)
    state.cursor.move(1, 0, 1, 1)
    profile, role, payload = state.profile, QrSide.SCANS, event.payload
    if len(payload) > MAX_PAYLOAD_LENGTH:
        return fail(profile, role, FailureReason.OVERSIZED_PAYLOAD, "LoginOkMessage is too long")
    token = _token_field(sequence_token)
    if token is None:
        return _bad_token(profile, role, "PUT")
    try:
        data = b64decode(payload, padding=_PARAMETERS[profile].padding)
    except Base64DecodeError:
        return fail(profile, role, FailureReason.MALFORMED_PAYLOAD, "LoginOkMessage is not valid base64")
    if len(data) < RESPONSE_NONCE_LENGTH + AEAD_TAG_LENGTH:
        return fail(profile, role, FailureReason.MALFORMED_PAYLOAD, "LoginOkMessage is truncated")
    response_nonce, ciphertext = data[:RESPONSE_NONCE_LENGTH], data[RESPONSE_NONCE_LENGTH:]
    receiver = hpke.ContextKey(
        *hpke.response_key_nonce(state.response_secret.value, enc=state.public_key, response_nonce=response_nonce)
    )
    try:
        plaintext = receiver.open(0, ciphertext, state.aad_prefix + token)
    except AuthenticationError:
        return fail(profile, role, FailureReason.AUTHENTICATION_FAILED, "LoginOkMessage did not authenticate")
    if not hmac.compare_digest(plaintext, LOGIN_OK):
        return fail(profile, role, FailureReason.UNEXPECTED_PLAINTEXT, "LoginOkMessage has the wrong content")
    keys = HpkeKeys(
        profile=profile,
        role=role,
        public_key=state.public_key,
        peer_public_key=state.peer_public_key,
        aad_prefix=state.aad_prefix,
        sender=state.sender,
        receiver=receiver,
        check_code=state.check_code,
        cursor=state.cursor,
    )
    established = Established(keys=keys, send_seq=1, recv_seq=1, last_sent=state.last_sent)
    return established, (ShowCheckCode(code=state.check_code.value.decode("ascii")), _REPORT_ESTABLISHED_S)


def _hold(
    state: AwaitingCheckCode, event: PayloadReceived, now_ms: int
) -> tuple[AwaitingCheckCode | ChannelFailed, _Effects]:
    _open_token(event)
    cursor, received = state.keys.cursor, state._received
    cursor.check_unjudged()
    cursor.move(1, received, 1, received + 1)  # a held payload is received now and opened after the code matched
    if len(event.payload) > MAX_PAYLOAD_LENGTH:
        return fail(state.profile, QrSide.SHOWS, FailureReason.OVERSIZED_PAYLOAD, "payload is too long")
    if state.pending is not None:
        return fail(
            state.profile, QrSide.SHOWS, FailureReason.UNEXPECTED_PAYLOAD, "a second payload before the check code"
        )
    return AwaitingCheckCode(keys=state.keys, last_sent=state.last_sent, pending=event), ()


def _confirm(
    state: AwaitingCheckCode, event: CheckCodeEntered, now_ms: int
) -> tuple[Established | ChannelFailed, _Effects]:
    state.keys.cursor.judge(state._received)
    verdict = judge_check_code(event.code, state.keys.check_code, leading_zero=False)
    if verdict is not None:
        malformed = verdict is FailureReason.CHECK_CODE_MALFORMED
        detail = "the entry is not a two-digit code" if malformed else "the entry does not match the check code"
        return fail(state.profile, QrSide.SHOWS, verdict, detail)
    established = Established(keys=state.keys, send_seq=1, recv_seq=1, last_sent=state.last_sent)
    if state.pending is None:
        return established, (_REPORT_ESTABLISHED_G,)
    opened, effects = _open_payload(established, state.pending)  # the cursor counted it when it was held
    return opened, (_REPORT_ESTABLISHED_G, *effects)


def _seal(state: Established, event: SealRequested, now_ms: int) -> tuple[Established | ChannelFailed, _Effects]:
    sequence_token = _seal_token(event.sequence_token)
    plaintext = event.plaintext
    if len(plaintext) > MAX_PLAINTEXT_LENGTH:
        raise LocalProtocolError(f"a plaintext longer than {MAX_PLAINTEXT_LENGTH} bytes does not fit a payload")
    keys = state.keys
    seq, recv_seq = state.send_seq, state.recv_seq
    keys.cursor.move(seq, recv_seq, seq + 1, recv_seq)
    token = _token_field(sequence_token)
    if token is None:
        return _bad_token(keys.profile, keys.role, "GET")
    try:
        ciphertext = keys.sender.seal(seq, plaintext, keys.aad_prefix + token)
    except hpke.MessageLimitReachedError:
        return fail(keys.profile, keys.role, FailureReason.COUNTER_EXHAUSTED, "the send sequence is exhausted")
    payload = b64encode(ciphertext)
    return Established(keys=keys, send_seq=seq + 1, recv_seq=recv_seq, last_sent=payload), (
        SendPayload(payload=payload),
    )


def _open(state: Established, event: PayloadReceived, now_ms: int) -> tuple[Established | ChannelFailed, _Effects]:
    _open_token(event)
    state.keys.cursor.move(state.send_seq, state.recv_seq, state.send_seq, state.recv_seq + 1)
    return _open_payload(state, event)


def _open_payload(state: Established, event: PayloadReceived) -> tuple[Established | ChannelFailed, _Effects]:
    """Open the payload at the state's receive sequence number; the caller has moved the cursor past it."""
    keys = state.keys
    profile, role = keys.profile, keys.role
    if len(event.payload) > MAX_PAYLOAD_LENGTH:
        return fail(profile, role, FailureReason.OVERSIZED_PAYLOAD, "payload is too long")
    assert event.sequence_token is not None  # checked before the cursor moved
    token = _token_field(event.sequence_token)
    if token is None:
        return _bad_token(profile, role, "PUT")
    try:
        ciphertext = b64decode(event.payload, padding=keys.padding)
    except Base64DecodeError:
        return fail(profile, role, FailureReason.MALFORMED_PAYLOAD, "payload is not valid base64")
    if len(ciphertext) < AEAD_TAG_LENGTH:
        return fail(profile, role, FailureReason.MALFORMED_PAYLOAD, "payload is shorter than a tag")
    seq = state.recv_seq
    try:
        plaintext = keys.receiver.open(seq, ciphertext, keys.aad_prefix + token)
    except hpke.MessageLimitReachedError:
        return fail(profile, role, FailureReason.COUNTER_EXHAUSTED, "the receive sequence is exhausted")
    except AuthenticationError:
        return fail(profile, role, FailureReason.AUTHENTICATION_FAILED, "payload did not authenticate")
    return Established(keys=keys, send_seq=state.send_seq, recv_seq=seq + 1, last_sent=state.last_sent), (
        DeliverPlaintext(plaintext=plaintext),
    )


# A retry changes nothing, so it only checks that the channel still stands where the state does.
def _resend_initiate(
    state: AwaitingLoginOk, event: RetryRequested, now_ms: int
) -> tuple[AwaitingLoginOk, tuple[SendPayload]]:
    state.cursor.check(1, 0)
    return state, (SendPayload(payload=state.last_sent),)


def _resend_login_ok(
    state: AwaitingCheckCode, event: RetryRequested, now_ms: int
) -> tuple[AwaitingCheckCode, tuple[SendPayload]]:
    state.keys.cursor.check_unjudged()
    state.keys.cursor.check(1, state._received)
    return state, (SendPayload(payload=state.last_sent),)


def _resend_last(state: Established, event: RetryRequested, now_ms: int) -> tuple[Established, tuple[SendPayload]]:
    state.keys.cursor.check(state.send_seq, state.recv_seq)
    return state, (SendPayload(payload=state.last_sent),)


MACHINE: Final[Machine[HpkeState, ChannelEvent, ChannelEffect]] = Machine(
    "HPKE channel",
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


def transition(state: HpkeState, event: ChannelEvent, *, now_ms: int) -> tuple[HpkeState, _Effects]:
    """Feed one event; return the next state and what the caller must do. ``now_ms`` is unused (no timers).

    Raises :class:`~qrlogin.errors.LocalProtocolError` (before anything changes) for an event the state does not
    accept, a state the channel has left behind (keep the state the last transition returned), a missing sequence
    token or an oversized plaintext. Never raises for anything from the network.
    """
    return MACHINE.transition(state, event, now_ms)


def check_code(state: HpkeState) -> str:
    """The two digits of an established channel (S shows them; G has matched them)."""
    if not isinstance(state, Established):
        raise LocalProtocolError(f"there is no trusted check code in state {type(state).__name__}")
    return state.keys.check_code.value.decode("ascii")
