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

and ``ChannelFailed`` from every non-terminal state. The ephemeral secret lives only in the first state of each role.
The HPKE contexts are immutable values threaded through the states: a seal returns the next context, so no state can
seal twice at one sequence number, and ``RetryRequested`` re-emits the stored bytes of the last write instead of
sealing again. G holds at most one payload that arrives before the user's check-code attempt (S trusts the channel
as soon as ``LoginOk`` opens and may speak at once) and opens it only after the code matched; a second one is
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

``DEPLOYED`` (called "vodozemac" in the issue and docs; :data:`VODOZEMAC` names it) is the default: it is what the
only implementation does, so it is the profile that can meet a real peer; ``SPEC_TEXT`` exists to follow the text
and to show, by test, that the two do not interoperate. ``docs/hpke.md`` has the longer argument.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Final, Protocol
from urllib.parse import urlunsplit

from .. import hpke
from .._crypto import AEAD_TAG_LENGTH, X25519_KEY_LENGTH, X25519Secret
from .._machine import LegalMoves, require_legal, slot_setters
from .._secret import Secret
from ..encoding import PaddingPolicy, b64decode, b64encode
from ..errors import AuthenticationError, Base64DecodeError, LocalProtocolError, NonContributoryKeyError
from ..http import split_url
from ..vocabulary import CheckCodeEntered, PromptForCheckCode, QrSide, ShowCheckCode
from ._common import (
    MAX_PAYLOAD_LENGTH,
    ChannelEffect,
    ChannelEvent,
    ChannelFailed,
    DeliverPlaintext,
    FailureReason,
    InitiateRequested,
    PayloadReceived,
    Profile,
    ReportEstablished,
    RetryRequested,
    SealRequested,
    SendPayload,
    channel_tables,
    check_code_digits,
    fail,
    judge_check_code,
)

INFO: Final = b"MATRIX_QR_CODE_LOGIN"
LOGIN_INITIATE: Final = b"MATRIX_QR_CODE_LOGIN_INITIATE"
LOGIN_OK: Final = b"MATRIX_QR_CODE_LOGIN_OK"
CHECK_CODE_LABEL: Final = b"MATRIX_QR_CODE_LOGIN_CHECKCODE"
#: The issue's name for the default profile: the labels and URL handling of vodozemac / matrix-rust-sdk.
VODOZEMAC: Final = Profile.DEPLOYED
#: The response nonce is ``max(Nn, Nk)`` bytes (RFC 9458 §4.4), 32 for ChaCha20-Poly1305.
RESPONSE_NONCE_LENGTH: Final = 32
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


_DEPLOYED_PADDING: Final = _PARAMETERS[Profile.DEPLOYED].padding


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


@dataclass(frozen=True, slots=True, kw_only=True)
class AwaitingCheckCode:
    """G: ``LoginOk`` is sent; waiting for the user's one attempt at the code S shows."""

    profile: Profile
    public_key: bytes
    peer_public_key: bytes
    aad_prefix: bytes
    send: hpke.Context
    recv: hpke.Context
    check_code: Secret
    last_sent: str
    pending: PayloadReceived | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ReadyToInitiate:
    """S: the QR code is scanned; waiting for the caller to ask for ``LoginInitiateMessage``."""

    profile: Profile
    secret: X25519Secret
    public_key: bytes
    peer_public_key: bytes
    aad_prefix: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class AwaitingLoginOk:
    """S: ``LoginInitiateMessage`` is sent; waiting for G's ``LoginOkMessage``.

    ``send`` is S's base context after one seal; its exporter still yields the response secret.
    """

    profile: Profile
    public_key: bytes
    peer_public_key: bytes
    aad_prefix: bytes
    send: hpke.Context
    check_code: Secret
    last_sent: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Established:
    """Either role, trusted: seals with ``send`` and opens with ``recv``."""

    profile: Profile
    role: QrSide
    public_key: bytes
    peer_public_key: bytes
    aad_prefix: bytes
    send: hpke.Context
    recv: hpke.Context
    check_code: Secret
    last_sent: str


HpkeState = AwaitingInitiate | AwaitingCheckCode | ReadyToInitiate | AwaitingLoginOk | Established | ChannelFailed

#: The legal moves and where each can lead: the steps every channel generation shares (``CHANNEL_SHAPE`` in
#: ``_common``) over this generation's state classes. The tests check both against observed runs, and
#: docs/hpke.md draws them.
_TABLES = channel_tables((ReadyToInitiate, AwaitingLoginOk, AwaitingInitiate, AwaitingCheckCode, Established))
LEGAL_MOVES: Final[LegalMoves] = _TABLES[0]
OUTCOMES: Final[Mapping[tuple[type, type], frozenset[type]]] = _TABLES[1]


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


def start_s_from_qr(qr: _V3QrCode, secret: bytes, *, profile: Profile = Profile.DEPLOYED) -> ReadyToInitiate:
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
# Transition

_Result = tuple[HpkeState, tuple[ChannelEffect, ...]]


def transition(state: HpkeState, event: ChannelEvent, *, now_ms: int = 0) -> _Result:
    """Feed one event; return the next state and what the caller must do. ``now_ms`` is unused (no timers).

    Raises :class:`~qrlogin.errors.LocalProtocolError` (before anything changes) for an event the state does not
    accept, a missing sequence token or an oversized plaintext. Never raises for anything from the network.
    """
    require_legal(LEGAL_MOVES, state, event)
    # From here type(state) and type(event) are exactly classes of the table, so identity tests suffice; the
    # established channel's two moves come first because every application message takes one of them.
    if type(state) is Established:
        kind = type(event)
        if kind is SealRequested:
            assert isinstance(event, SealRequested)
            if event.sequence_token is None:
                raise LocalProtocolError("an HPKE seal needs the sequence token of the sender's last GET")
            if len(event.plaintext) > MAX_PLAINTEXT_LENGTH:
                raise LocalProtocolError(f"a plaintext longer than {MAX_PLAINTEXT_LENGTH} bytes does not fit a payload")
            return _seal(state, event)
        if kind is PayloadReceived:
            assert isinstance(event, PayloadReceived)
            if event.sequence_token is None:
                raise LocalProtocolError("an HPKE open needs the sequence token of the receiver's last write")
            return _open(state, event)
    _require_tokens(state, event)
    if isinstance(state, ReadyToInitiate):
        assert isinstance(event, InitiateRequested)
        return _initiate(state, event)
    elif isinstance(state, AwaitingLoginOk):
        if isinstance(event, PayloadReceived):
            return _receive_login_ok(state, event)
    elif isinstance(state, AwaitingInitiate):
        assert isinstance(event, PayloadReceived)
        return _receive_initiate(state, event)
    elif isinstance(state, AwaitingCheckCode):
        if isinstance(event, CheckCodeEntered):
            return _confirm(state, event.code)
        if isinstance(event, PayloadReceived):
            return _hold(state, event)
    assert isinstance(event, RetryRequested), "LEGAL_MOVES and transition() disagree"
    assert isinstance(state, AwaitingLoginOk | AwaitingCheckCode | Established)
    return state, (SendPayload(payload=state.last_sent),)


def _require_tokens(state: HpkeState, event: ChannelEvent) -> None:
    if isinstance(event, InitiateRequested | SealRequested) and event.sequence_token is None:
        raise LocalProtocolError("an HPKE seal needs the sequence token of the sender's last GET")
    if isinstance(event, SealRequested) and len(event.plaintext) > MAX_PLAINTEXT_LENGTH:
        raise LocalProtocolError(f"a plaintext longer than {MAX_PLAINTEXT_LENGTH} bytes does not fit a payload")
    if isinstance(event, PayloadReceived) and event.sequence_token is None:
        raise LocalProtocolError("an HPKE open needs the sequence token of the receiver's last write")
    if (
        isinstance(state, AwaitingInitiate)
        and isinstance(event, PayloadReceived)
        and event.reply_sequence_token is None
    ):
        raise LocalProtocolError("G's LoginOk needs the sequence token of the GET that delivered LoginInitiate")


def _bad_token(profile: Profile, role: QrSide, which: str) -> _Result:
    detail = f"the {which} sequence token is empty, not UTF-8, or longer than {MAX_IDENTIFIER_LENGTH} bytes"
    return fail(profile, role, FailureReason.INVALID_SEQUENCE_TOKEN, detail)


def _decode(profile: Profile, payload: str) -> bytes:
    # The default profile by identity first: hashing an Enum member runs Python code, and this is per message.
    padding = _DEPLOYED_PADDING if profile is Profile.DEPLOYED else _PARAMETERS[profile].padding
    return b64decode(payload, padding=padding)


def _initiate(state: ReadyToInitiate, event: InitiateRequested) -> _Result:
    profile, role = state.profile, QrSide.SCANS
    assert event.sequence_token is not None
    token = _token_field(event.sequence_token)
    if token is None:
        return _bad_token(profile, role, "GET")
    if hmac.compare_digest(state.peer_public_key, state.public_key):
        return fail(profile, role, FailureReason.REFLECTED_KEY, "G's public key equals our own")
    try:
        enc, base = hpke.setup_base_s(state.peer_public_key, INFO, ephemeral_secret=state.secret)
    except NonContributoryKeyError:
        return fail(profile, role, FailureReason.NON_CONTRIBUTORY_KEY, "G's public key is a low-order point")
    check = base.export(check_code_context(profile, state.peer_public_key, state.public_key), 2)
    ciphertext, send = base.seal(LOGIN_INITIATE, aad=state.aad_prefix + token)
    message = b64encode(enc + ciphertext)
    return (
        AwaitingLoginOk(
            profile=profile,
            public_key=state.public_key,
            peer_public_key=state.peer_public_key,
            aad_prefix=state.aad_prefix,
            send=send,
            check_code=Secret(check_code_digits(check, leading_zero=False).encode("ascii")),
            last_sent=message,
        ),
        (SendPayload(payload=message),),
    )


def _receive_initiate(state: AwaitingInitiate, event: PayloadReceived) -> _Result:
    profile, role, payload = state.profile, QrSide.SHOWS, event.payload
    if len(payload) > MAX_PAYLOAD_LENGTH:
        return fail(profile, role, FailureReason.OVERSIZED_PAYLOAD, "LoginInitiateMessage is too long")
    assert event.sequence_token is not None
    token = _token_field(event.sequence_token)
    if token is None:
        return _bad_token(profile, role, "POST")
    assert event.reply_sequence_token is not None
    reply_token = _token_field(event.reply_sequence_token)
    if reply_token is None:
        return _bad_token(profile, role, "GET")
    try:
        data = _decode(profile, payload)
    except Base64DecodeError:
        return fail(profile, role, FailureReason.MALFORMED_PAYLOAD, "LoginInitiateMessage is not valid base64")
    if len(data) < hpke.N_ENC + AEAD_TAG_LENGTH:
        return fail(profile, role, FailureReason.MALFORMED_PAYLOAD, "LoginInitiateMessage is truncated")
    peer, ciphertext = data[: hpke.N_ENC], data[hpke.N_ENC :]
    if hmac.compare_digest(peer, state.public_key):
        return fail(profile, role, FailureReason.REFLECTED_KEY, "S's public key equals our own")
    try:
        base = hpke.setup_base_r(peer, state.secret, INFO)
    except NonContributoryKeyError:
        return fail(profile, role, FailureReason.NON_CONTRIBUTORY_KEY, "S's public key is a low-order point")
    try:
        plaintext, recv = base.open(ciphertext, aad=state.aad_prefix + token)
    except AuthenticationError:
        return fail(profile, role, FailureReason.AUTHENTICATION_FAILED, "LoginInitiateMessage did not authenticate")
    if not hmac.compare_digest(plaintext, LOGIN_INITIATE):
        return fail(profile, role, FailureReason.UNEXPECTED_PLAINTEXT, "LoginInitiateMessage has the wrong content")
    check = base.export(check_code_context(profile, state.public_key, peer), 2)
    send = hpke.response_context(base, label=response_label(profile), enc=peer, response_nonce=state.response_nonce)
    reply_ct, send = send.seal(LOGIN_OK, aad=state.aad_prefix + reply_token)
    reply = b64encode(state.response_nonce + reply_ct)
    return (
        AwaitingCheckCode(
            profile=profile,
            public_key=state.public_key,
            peer_public_key=peer,
            aad_prefix=state.aad_prefix,
            send=send,
            recv=recv,
            check_code=Secret(check_code_digits(check, leading_zero=False).encode("ascii")),
            last_sent=reply,
        ),
        (SendPayload(payload=reply), PromptForCheckCode()),
    )


def _receive_login_ok(state: AwaitingLoginOk, event: PayloadReceived) -> _Result:
    profile, role, payload = state.profile, QrSide.SCANS, event.payload
    if len(payload) > MAX_PAYLOAD_LENGTH:
        return fail(profile, role, FailureReason.OVERSIZED_PAYLOAD, "LoginOkMessage is too long")
    assert event.sequence_token is not None
    token = _token_field(event.sequence_token)
    if token is None:
        return _bad_token(profile, role, "PUT")
    try:
        data = _decode(profile, payload)
    except Base64DecodeError:
        return fail(profile, role, FailureReason.MALFORMED_PAYLOAD, "LoginOkMessage is not valid base64")
    if len(data) < RESPONSE_NONCE_LENGTH + AEAD_TAG_LENGTH:
        return fail(profile, role, FailureReason.MALFORMED_PAYLOAD, "LoginOkMessage is truncated")
    response_nonce, ciphertext = data[:RESPONSE_NONCE_LENGTH], data[RESPONSE_NONCE_LENGTH:]
    recv = hpke.response_context(
        state.send, label=response_label(profile), enc=state.public_key, response_nonce=response_nonce
    )
    try:
        plaintext, recv = recv.open(ciphertext, aad=state.aad_prefix + token)
    except AuthenticationError:
        return fail(profile, role, FailureReason.AUTHENTICATION_FAILED, "LoginOkMessage did not authenticate")
    if not hmac.compare_digest(plaintext, LOGIN_OK):
        return fail(profile, role, FailureReason.UNEXPECTED_PLAINTEXT, "LoginOkMessage has the wrong content")
    established = Established(
        profile=profile,
        role=role,
        public_key=state.public_key,
        peer_public_key=state.peer_public_key,
        aad_prefix=state.aad_prefix,
        send=state.send,
        recv=recv,
        check_code=state.check_code,
        last_sent=state.last_sent,
    )
    code = state.check_code.value.decode("ascii")
    return established, (ShowCheckCode(code=code), ReportEstablished(role=role))


def _hold(state: AwaitingCheckCode, event: PayloadReceived) -> _Result:
    if len(event.payload) > MAX_PAYLOAD_LENGTH:
        return fail(state.profile, QrSide.SHOWS, FailureReason.OVERSIZED_PAYLOAD, "payload is too long")
    if state.pending is not None:
        return fail(
            state.profile, QrSide.SHOWS, FailureReason.UNEXPECTED_PAYLOAD, "a second payload before the check code"
        )
    return replace(state, pending=event), ()  # at most once per session: not worth a hand-written copy


def _confirm(state: AwaitingCheckCode, code: str) -> _Result:
    verdict = judge_check_code(code, state.check_code, leading_zero=False)
    if verdict is not None:
        malformed = verdict is FailureReason.CHECK_CODE_MALFORMED
        detail = "the entry is not a two-digit code" if malformed else "the entry does not match the check code"
        return fail(state.profile, QrSide.SHOWS, verdict, detail)
    established = Established(
        profile=state.profile,
        role=QrSide.SHOWS,
        public_key=state.public_key,
        peer_public_key=state.peer_public_key,
        aad_prefix=state.aad_prefix,
        send=state.send,
        recv=state.recv,
        check_code=state.check_code,
        last_sent=state.last_sent,
    )
    effects: tuple[ChannelEffect, ...] = (ReportEstablished(role=QrSide.SHOWS),)
    if state.pending is None:
        return established, effects
    opened, more = _open(established, state.pending)
    return opened, effects + more


def _seal(state: Established, event: SealRequested) -> _Result:
    assert event.sequence_token is not None
    token = _token_field(event.sequence_token)
    if token is None:
        return _bad_token(state.profile, state.role, "GET")
    try:
        ciphertext, send = state.send.seal(event.plaintext, aad=state.aad_prefix + token)
    except hpke.MessageLimitReachedError:
        return fail(state.profile, state.role, FailureReason.COUNTER_EXHAUSTED, "the send sequence is exhausted")
    payload = b64encode(ciphertext)
    return _established(state, send=send, recv=state.recv, last_sent=payload), (SendPayload(payload=payload),)


def _open(state: Established, event: PayloadReceived) -> _Result:
    profile, role = state.profile, state.role
    if len(event.payload) > MAX_PAYLOAD_LENGTH:
        return fail(profile, role, FailureReason.OVERSIZED_PAYLOAD, "payload is too long")
    assert event.sequence_token is not None
    token = _token_field(event.sequence_token)
    if token is None:
        return _bad_token(profile, role, "PUT")
    try:
        ciphertext = _decode(profile, event.payload)
    except Base64DecodeError:
        return fail(profile, role, FailureReason.MALFORMED_PAYLOAD, "payload is not valid base64")
    if len(ciphertext) < AEAD_TAG_LENGTH:
        return fail(profile, role, FailureReason.MALFORMED_PAYLOAD, "payload is shorter than a tag")
    try:
        plaintext, recv = state.recv.open(ciphertext, aad=state.aad_prefix + token)
    except hpke.MessageLimitReachedError:
        return fail(profile, role, FailureReason.COUNTER_EXHAUSTED, "the receive sequence is exhausted")
    except AuthenticationError:
        return fail(profile, role, FailureReason.AUTHENTICATION_FAILED, "payload did not authenticate")
    return _established(state, send=state.send, recv=recv, last_sent=state.last_sent), (
        DeliverPlaintext(plaintext=plaintext),
    )


_NEW: Final = object.__new__
(
    _SET_PROFILE,
    _SET_ROLE,
    _SET_PUBLIC_KEY,
    _SET_PEER_PUBLIC_KEY,
    _SET_AAD_PREFIX,
    _SET_SEND,
    _SET_RECV,
    _SET_CHECK_CODE,
    _SET_LAST_SENT,
) = slot_setters(
    Established,
    "profile", "role", "public_key", "peer_public_key", "aad_prefix", "send", "recv", "check_code", "last_sent",
)  # fmt: skip


def _established(state: Established, *, send: hpke.Context, recv: hpke.Context, last_sent: str) -> Established:
    """``state`` after one message: the same channel with the contexts (and last write) moved on.

    Built without calling the class (a frozen dataclass's ``__init__`` costs about twice as much, and this runs for
    every message): every field is copied from an already valid state or is a context the previous one produced.
    ``tests/test_channel_hpke_fast_paths.py`` compares the result with an ``__init__``-built one.
    """
    following: Established = _NEW(Established)
    _SET_PROFILE(following, state.profile)
    _SET_ROLE(following, state.role)
    _SET_PUBLIC_KEY(following, state.public_key)
    _SET_PEER_PUBLIC_KEY(following, state.peer_public_key)
    _SET_AAD_PREFIX(following, state.aad_prefix)
    _SET_SEND(following, send)
    _SET_RECV(following, recv)
    _SET_CHECK_CODE(following, state.check_code)
    _SET_LAST_SENT(following, last_sent)
    return following


def check_code(state: HpkeState) -> str:
    """The two digits of an established channel (S shows them; G has matched them)."""
    if not isinstance(state, Established):
        raise LocalProtocolError(f"there is no trusted check code in state {type(state).__name__}")
    return state.check_code.value.decode("ascii")
