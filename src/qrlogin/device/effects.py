"""What goes into a device and what comes out of it.

Theory of operation
-------------------
A device speaks the shared vocabulary (:mod:`qrlogin.vocabulary`) wherever a lower layer already has the word: its
HTTP requests are :class:`~qrlogin.vocabulary.SendHttpRequest` (renumbered by the device, so one id space covers
both machines that talk HTTP), and the user is shown :class:`~qrlogin.vocabulary.ShowCheckCode`,
:class:`~qrlogin.vocabulary.PromptForCheckCode`, :class:`~qrlogin.vocabulary.OpenVerificationUri` and
:class:`~qrlogin.vocabulary.ShowUserCode` exactly as the channel and login machines emit them. Events are the
vocabulary's too: HTTP answers, :class:`~qrlogin.vocabulary.TimerFired` (due at ``deadline(state)``) and the user's
acts.

Only four effects are the device's own: the QR code to show (which only exists once the rendezvous session does),
two notes for a transcript (a login message was sent or received: its type, never its content) and the outcome,
reported exactly once, when the login ends. The outcome says how the login ended and, when a lower layer ended it,
why: the secure channel's :class:`~qrlogin.channel.FailureReason`, or how the rendezvous session ended
(:class:`SessionEnd`), so an application can tell "the other device gave up" from "the code timed out".
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from .. import qr
from ..channel import FailureReason as ChannelFailureReason
from ..login.events import ReportLoginFailure, ReportLoginSuccess
from ..vocabulary import (
    CheckCodeEntered,
    HttpRequestFailed,
    HttpResponseReceived,
    OpenVerificationUri,
    PromptForCheckCode,
    SendHttpRequest,
    ShowCheckCode,
    ShowUserCode,
    TimerFired,
    UserCancelled,
    VerificationUriOpened,
    VerificationUriUnavailable,
)

__all__ = [
    "Effect",
    "Event",
    "ReportMessageReceived",
    "ReportMessageSent",
    "ReportOutcome",
    "SessionEnd",
    "ShowQrCode",
]

Event = (
    HttpResponseReceived
    | HttpRequestFailed
    | TimerFired
    | CheckCodeEntered
    | VerificationUriOpened
    | VerificationUriUnavailable
    | UserCancelled
)


class SessionEnd(enum.Enum):
    """How the rendezvous session ended, when its end ended the login (``ReportOutcome.session_end``)."""

    EXPIRED = "expired"
    """Its time ran out: the server's announced expiry (a 404 at that time says the same), or this device's own
    ``DeviceConfig.timeout_ms`` if that came first."""
    DELETED = "deleted"
    """A 404 well before its expiry: it was deleted, by the other device as it gave up."""
    FAILED = "failed"
    """The rendezvous server answered outside its API (an unexpected status, a malformed body, a conflict that
    changed nothing, a payload refused as too large)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ShowQrCode:
    """Display the QR code (``payload`` is what :func:`qrlogin.qr.encode` gives for ``code``)."""

    payload: bytes
    code: qr.QrCode


@dataclass(frozen=True, slots=True, kw_only=True)
class ReportMessageSent:
    """Note that a login message of ``message_type`` was handed to the channel for the peer (it is sealed and
    written on this device's turn). A failure's reason is included; a field that could hold a secret never is."""

    message_type: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ReportMessageReceived:
    """Note that a login message of ``message_type`` arrived over the channel."""

    message_type: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ReportOutcome:
    """Report how the login ended on this device (exactly once, when it ends).

    ``channel_failure`` says why the secure channel failed, if it did; ``session_end`` how the rendezvous session
    ended, if its end ended the login. The device may still have rendezvous work to finish after this (a last message
    for the peer, deleting the session): ``is_done`` says when it has none.
    """

    result: ReportLoginSuccess | ReportLoginFailure
    channel_failure: ChannelFailureReason | None = None
    session_end: SessionEnd | None = None


Effect = (
    SendHttpRequest
    | ShowQrCode
    | ShowCheckCode
    | PromptForCheckCode
    | OpenVerificationUri
    | ShowUserCode
    | ReportMessageSent
    | ReportMessageReceived
    | ReportOutcome
)
