"""Events, effects and outcomes shared by the two login machines.

The login layer sits on top of a secure channel but knows nothing of its internals. The thin glue in
:mod:`qrlogin.login.glue` (or an application's own) translates:

* channel up (and, on the device that generated the QR, the user confirmed the check code) ->
  :class:`ChannelSecured`
* a decrypted payload -> :class:`MessageReceived`; a channel that failed or expired -> :class:`ChannelClosed`
* :class:`SendMessage` -> serialize with :func:`~qrlogin.login.messages.serialize_message`, seal, send
* :class:`DeleteRendezvous` -> ``DELETE`` the rendezvous session (only emitted by the device that created it)

HTTP to the homeserver goes out as :class:`SendHttpRequest` and comes back as :class:`HttpResponseReceived`
(or :class:`HttpRequestFailed` for a transport error). The values are :mod:`qrlogin.http`'s, with absolute-URL
targets. A machine has at most one request outstanding; each request has an id of its own, and an answer to any
other id (``awaited_request_id(state)`` in each machine) is stale and changes nothing. ``authenticated`` asks the
adapter to add the signed-in user's access token (the existing device's device-management calls); the core never
holds that token, so it cannot leak into a ``repr``. Time is an input: machines store deadlines, :func:`deadline`
queries tell the caller when to deliver :class:`TimerFired`, and a timer event that arrives early changes
nothing.

Every run ends in exactly one :class:`ReportLoginSuccess` or :class:`ReportLoginFailure` effect.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from ..vocabulary import (
    HttpRequestFailed,
    HttpResponseReceived,
    OpenVerificationUri,
    SendHttpRequest,
    ShowUserCode,
    TimerFired,
    UserCancelled,
    VerificationUriOpened,
    VerificationUriUnavailable,
)
from .messages import FailureReason, Message, Secrets
from .oauth import Tokens

__all__ = [
    "FINAL_MESSAGE_GRACE_MS",
    "ChannelClosed",
    "ChannelSecured",
    "DeleteRendezvous",
    "Effect",
    "Event",
    "LocalReason",
    "MessageReceived",
    "ReportLoginFailure",
    "ReportLoginSuccess",
    "SendMessage",
]

# After sending a last message, the creator waits this long before deleting the rendezvous so that the peer
# can still read that message (the rendezvous is a single slot: deleting it at once would destroy the
# message).
FINAL_MESSAGE_GRACE_MS = 5_000


class LocalReason(StrEnum):
    """Ways a login ends that are not an ``m.login.failure`` reason on the wire."""

    DECLINED = "declined"  # the user refused the grant at the homeserver (m.login.declined)
    CHANNEL_CLOSED = "channel_closed"  # the secure channel failed or the rendezvous expired
    HOMESERVER_ERROR = "homeserver_error"  # discovery or OAuth exchange failed
    INVALID_MESSAGE = "invalid_message"  # the peer sent something that is not an m.login.* message


# ----------------------------------------------------------------------------------------------------- events


@dataclass(frozen=True, slots=True, kw_only=True)
class ChannelSecured:
    """The channel is established and trusted (on G: the user confirmed the check code)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class MessageReceived:
    plaintext: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class ChannelClosed:
    """The channel can carry nothing more (decryption failed, the rendezvous expired or was deleted)."""


Event = (
    ChannelSecured
    | MessageReceived
    | ChannelClosed
    | HttpResponseReceived
    | HttpRequestFailed
    | TimerFired
    | UserCancelled
    | VerificationUriOpened
    | VerificationUriUnavailable
)

# ---------------------------------------------------------------------------------------------------- effects


@dataclass(frozen=True, slots=True, kw_only=True)
class SendMessage:
    message: Message


@dataclass(frozen=True, slots=True, kw_only=True)
class DeleteRendezvous:
    """Delete the rendezvous session this device created, not before ``not_before_ms``."""

    not_before_ms: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ReportLoginSuccess:
    """The login succeeded. ``device_id`` is the new device's, on both sides. On the new device it carries the tokens
    and the secrets received, and what the tokens are for: the homeserver's ``base_url``, the OAuth ``client_id`` they
    were issued to and the ``token_endpoint`` that refreshes them."""

    tokens: Tokens | None = None
    secrets: Secrets | None = None
    device_id: str | None = None
    base_url: str | None = None
    client_id: str | None = None
    token_endpoint: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ReportLoginFailure:
    """The login ended without success; ``by_peer`` says the peer reported it."""

    reason: FailureReason | LocalReason | str
    by_peer: bool = False


Effect = (
    SendMessage
    | SendHttpRequest
    | OpenVerificationUri
    | ShowUserCode
    | DeleteRendezvous
    | ReportLoginSuccess
    | ReportLoginFailure
)
