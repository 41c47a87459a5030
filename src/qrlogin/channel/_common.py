"""The generation-neutral vocabulary of every secure channel machine (ECIES v1/v2, HPKE v3).

Theory of operation
-------------------
A secure channel (docs/protocol.md §4 for ECIES, §5 for HPKE) has two roles. Device **G** generated the QR code and
waits for the scanner's first payload; device **S** scanned it and speaks first. Each generation has its own state
classes (they hold different key material) and its own transitions table (``MACHINE``), but they all consume the
events and emit the effects defined here and take the same steps, so the layers above (rendezvous, login) drive every
generation the same way:

* S is created ready to initiate. ``InitiateRequested`` makes it emit ``SendPayload(LoginInitiate)``.
* G is created waiting for that payload. ``PayloadReceived`` makes it emit ``SendPayload(LoginOk)`` and
  ``PromptForCheckCode``. S, on receiving ``LoginOk``, emits ``ShowCheckCode`` and ``ReportEstablished``.
* G becomes trusted only after ``CheckCodeEntered`` matches (one attempt, exactly two ASCII digits,
  :func:`hmac.compare_digest`); then it emits ``ReportEstablished``.
* Established channels take ``SealRequested`` (emit ``SendPayload``) and ``PayloadReceived`` (emit
  ``DeliverPlaintext``). ``RetryRequested`` re-emits the bytes of the last ``SendPayload`` unchanged: a lost PUT is
  retried by resending, never by sealing again, so no nonce is ever used twice (docs/threats.md T1).
* Anything wrong that came from the network ends in the terminal :class:`ChannelFailed` state with a
  :class:`FailureReason` and a ``ReportChannelFailure`` effect, never in an exception.
* Every state but ``ChannelFailed`` holds key material (an ephemeral secret or derived keys) and the channel end's
  :class:`ChannelCursor`: it takes one event, and only the state a transition returned takes the next. Keeping an
  old state, or a copy, can therefore neither seal twice under one nonce nor give G a second check-code attempt;
  ``RetryRequested`` on the current state changes nothing and may be repeated.

Sequence tokens: HPKE binds every ciphertext to the rendezvous ``sequence_token`` it overwrites (its AAD). A payload
is sealed with the token from the sender's last GET and opened with the token returned by the receiver's own last
PUT/POST. Events that seal or open therefore carry an optional ``sequence_token``; ``PayloadReceived`` also carries
``reply_sequence_token`` for a machine that seals a reply in the same transition (HPKE G's ``LoginOk``, sealed with
the token of the GET that delivered ``LoginInitiate``). ECIES has no AAD and ignores both.

Profiles: the texts and the deployed peers disagree on details (ECIES: HKDF-SHA256 in the text, HKDF-SHA512 in
vodozemac; HPKE: export labels). A machine is built for one :class:`Profile`, recorded in its state; ``DEPLOYED``
is the default because it is what interoperates.
"""

from __future__ import annotations

import enum
import hmac
from dataclasses import dataclass, field
from typing import Protocol

from .._machine import Guard
from .._secret import Secret
from ..errors import LocalProtocolError
from ..vocabulary import CheckCodeEntered, PromptForCheckCode, QrSide, ShowCheckCode

#: The rendezvous servers' payload limit (MSC4108 "Maximum payload size", MSC4388); checked before any parsing.
MAX_PAYLOAD_LENGTH = 4096


class Profile(enum.Enum):
    """Which reading of the specification a channel follows; chosen at construction, recorded in the state."""

    DEPLOYED = "deployed"
    """What Element clients (vodozemac, matrix-sdk-crypto-wasm) speak; the default."""
    SPEC_TEXT = "spec_text"
    """What the MSC text says, where that differs from the deployed peers."""


class FailureReason(enum.Enum):
    """Why a channel ended in :class:`ChannelFailed`; shared by every generation."""

    OVERSIZED_PAYLOAD = "oversized_payload"
    """A payload longer than :data:`MAX_PAYLOAD_LENGTH`, refused before parsing (docs/threats.md T6)."""
    MALFORMED_PAYLOAD = "malformed_payload"
    """Not the wire format: bad base64, a missing separator, a truncated field (docs/threats.md T7)."""
    INVALID_PUBLIC_KEY = "invalid_public_key"
    """A public key of the wrong length."""
    REFLECTED_KEY = "reflected_key"
    """The peer presented our own public key back to us (docs/threats.md T8, defence in depth)."""
    NON_CONTRIBUTORY_KEY = "non_contributory_key"
    """X25519 gave the all-zero secret: a low-order point (docs/threats.md T8)."""
    AUTHENTICATION_FAILED = "authentication_failed"
    """A ciphertext did not authenticate: wrong key, replayed, reordered or tampered (docs/threats.md T4)."""
    UNEXPECTED_PAYLOAD = "unexpected_payload"
    """A payload arrived where the protocol allows none (e.g. a second one while G awaits the check code)."""
    UNEXPECTED_PLAINTEXT = "unexpected_plaintext"
    """A handshake payload authenticated but did not hold the expected fixed string."""
    CHECK_CODE_MALFORMED = "check_code_malformed"
    """The user's entry was not exactly two ASCII digits (or had a leading zero where none is possible)."""
    CHECK_CODE_MISMATCH = "check_code_mismatch"
    """The user's entry differed from the code: terminal, there is exactly one attempt (docs/threats.md T2)."""
    COUNTER_EXHAUSTED = "counter_exhausted"
    """A message counter reached its limit; it never wraps (docs/threats.md T1)."""
    INVALID_SEQUENCE_TOKEN = "invalid_sequence_token"
    """HPKE: a rendezvous sequence token the AAD cannot carry (empty, or longer than 255 bytes)."""


# ---------------------------------------------------------------------------------------------------------------
# Where one end of a channel stands.

_LEFT_BEHIND = (
    "this channel state was left behind: the channel has moved on from it. Keep the state the last transition "
    "returned; an older state, or a copy of one, can take no event (it would seal again under a used nonce or judge "
    "the check code a second time)"
)


class ChannelCursor(Guard):
    """Where one end of a channel stands: the next counter it seals at, the next it receives at, and (G) whether the
    user's one check-code attempt was judged. Every state of the channel end holds this one record; copies share it.

    Each state stands at a position it can tell from its own fields, and a transition first moves the cursor from
    that position (raising :class:`~qrlogin.errors.LocalProtocolError`, with nothing changed, if the cursor is not
    there) and only then seals, opens or judges::

        ReadyToInitiate, AwaitingInitiate   (0, 0)
        AwaitingLoginOk                     (1, 0)    LoginInitiate sealed at 0
        AwaitingCheckCode                   (1, 1)    both handshake messages; (1, 2) with a payload held; not judged
        Established                         (send counter, receive counter)

    So exactly one state value can seal at each counter, whatever the caller keeps or copies, and the check code is
    judged once. ``RetryRequested`` only checks the position: the current state may retry any number of times.
    """

    __slots__ = ("_judged", "_opened", "_sent")

    def __init__(self) -> None:
        self._sent = 0
        self._opened = 0
        self._judged = False

    @property
    def sent(self) -> int:
        return self._sent

    @property
    def opened(self) -> int:
        return self._opened

    @property
    def judged(self) -> bool:
        return self._judged

    def check(self, sent: int, opened: int) -> None:
        """Raise unless the channel end stands at ``(sent, opened)``."""
        if sent != self._sent or opened != self._opened:
            raise LocalProtocolError(_LEFT_BEHIND)

    def move(self, sent: int, opened: int, next_sent: int, next_opened: int) -> None:
        """Move from ``(sent, opened)``; raise, changing nothing, if the channel end does not stand there."""
        if sent != self._sent or opened != self._opened:
            raise LocalProtocolError(_LEFT_BEHIND)
        self._sent = next_sent
        self._opened = next_opened

    def check_unjudged(self) -> None:
        """Raise if the check code was judged: every move of a state awaiting it checks this first."""
        if self._judged:
            raise LocalProtocolError(_LEFT_BEHIND)

    def judge(self, opened: int) -> None:
        """Spend the one check-code attempt of a state standing at ``(1, opened)``."""
        self.check_unjudged()
        self.check(1, opened)
        self._judged = True

    def __repr__(self) -> str:
        return f"ChannelCursor(sent={self._sent}, opened={self._opened}, judged={self._judged})"


# ---------------------------------------------------------------------------------------------------------------
# Events: what happened (past tense).


@dataclass(frozen=True, slots=True, kw_only=True)
class InitiateRequested:
    """S's caller is ready to write ``LoginInitiate`` (for HPKE: after a GET that returned ``sequence_token``)."""

    sequence_token: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class PayloadReceived:
    """A payload arrived from the rendezvous. Untrusted: anything wrong with it is a typed terminal failure.

    ``sequence_token`` is the token to open it with (HPKE: the one returned by the receiver's own last write);
    ``reply_sequence_token`` is the token a reply sealed in the same transition is bound to (HPKE: the token of the
    GET that delivered this payload). ECIES ignores both.
    """

    payload: str
    sequence_token: str | None = None
    reply_sequence_token: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class SealRequested:
    """The caller wants ``plaintext`` sent over an established channel."""

    plaintext: bytes = field(repr=False)
    sequence_token: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryRequested:
    """The last write was lost; re-emit its exact bytes (never re-seal)."""


ChannelEvent = InitiateRequested | PayloadReceived | SealRequested | CheckCodeEntered | RetryRequested


# ---------------------------------------------------------------------------------------------------------------
# Effects: what the caller must do (imperative).


@dataclass(frozen=True, slots=True, kw_only=True)
class SendPayload:
    """Write ``payload`` to the rendezvous. Retries must send these same characters."""

    payload: str


@dataclass(frozen=True, slots=True, kw_only=True)
class DeliverPlaintext:
    """An authenticated application payload for the layer above."""

    plaintext: bytes = field(repr=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class ReportEstablished:
    """The channel is trusted by this side from now on."""

    role: QrSide


@dataclass(frozen=True, slots=True, kw_only=True)
class ReportChannelFailure:
    """The channel failed for good; the layer above tells the peer if it can and deletes the rendezvous."""

    reason: FailureReason


ChannelEffect = (
    SendPayload | DeliverPlaintext | ShowCheckCode | PromptForCheckCode | ReportEstablished | ReportChannelFailure
)


# ---------------------------------------------------------------------------------------------------------------
# The terminal failure state, shared by every generation's transitions table (it accepts no event).


@dataclass(frozen=True, slots=True, kw_only=True)
class ChannelFailed:
    """Terminal. ``detail`` names what was wrong, never the bytes that were."""

    profile: Profile
    role: QrSide
    reason: FailureReason
    detail: str


def fail(
    profile: Profile, role: QrSide, reason: FailureReason, detail: str
) -> tuple[ChannelFailed, tuple[ReportChannelFailure]]:
    """The (state, effects) pair of every failing transition."""
    return ChannelFailed(profile=profile, role=role, reason=reason, detail=detail), (
        ReportChannelFailure(reason=reason),
    )


# ---------------------------------------------------------------------------------------------------------------
# Check codes (docs/protocol.md §2: ECIES allows a leading zero, HPKE does not).


def check_code_digits(check_bytes: bytes, *, leading_zero: bool) -> str:
    """The two-digit string for two check bytes: ``b0%10, b1%10`` or, without a leading zero, ``b0%9+1, b1%10``."""
    if len(check_bytes) != 2:
        raise ValueError("a check code is derived from exactly two bytes")
    first = check_bytes[0] % 10 if leading_zero else check_bytes[0] % 9 + 1
    return f"{first}{check_bytes[1] % 10}"


_ASCII_DIGITS = frozenset("0123456789")


def judge_check_code(entered: str, expected: Secret, *, leading_zero: bool) -> FailureReason | None:
    """``None`` if ``entered`` is the code, else why not. The comparison is constant-time (docs/threats.md T2, T12).

    Only exactly two ASCII digits are a well-formed entry (``str.isdigit`` would admit ``"٣٤"``); without a leading
    zero, ``0`` cannot be the first digit.
    """
    if len(entered) != 2 or not _ASCII_DIGITS.issuperset(entered):
        return FailureReason.CHECK_CODE_MALFORMED
    if not leading_zero and entered[0] == "0":
        return FailureReason.CHECK_CODE_MALFORMED
    if not hmac.compare_digest(entered.encode("ascii"), expected.value):
        return FailureReason.CHECK_CODE_MISMATCH
    return None


# ---------------------------------------------------------------------------------------------------------------
# What every keyed state says about itself, read from the keys value its channel shares.


class ChannelFacts(Protocol):
    """The public facts a channel's shared keys value records (``EciesKeys``, ``HpkeKeys``)."""

    @property
    def profile(self) -> Profile: ...
    @property
    def role(self) -> QrSide: ...
    @property
    def public_key(self) -> bytes: ...
    @property
    def peer_public_key(self) -> bytes: ...


class KeyedState:
    """Mixed into each generation's keyed states: their public facts, read from the shared ``keys``."""

    __slots__ = ()
    keys: ChannelFacts  # declared by each dataclass that mixes this in

    @property
    def profile(self) -> Profile:
        return self.keys.profile

    @property
    def role(self) -> QrSide:
        return self.keys.role

    @property
    def public_key(self) -> bytes:
        return self.keys.public_key

    @property
    def peer_public_key(self) -> bytes:
        return self.keys.peer_public_key
