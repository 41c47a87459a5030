"""Events, effects and outcomes shared by the two login machines.

The login layer sits on top of a secure channel but knows nothing of its internals. The thin glue in
:mod:`qrlogin.login.glue` (or an application's own) translates:

* channel up (and, on the device that generated the QR, the user confirmed the check code) ->
  :class:`ChannelSecured`
* a decrypted payload -> :class:`MessageReceived`; a channel that failed or expired -> :class:`ChannelClosed`
* :class:`SendMessage` -> serialize with :func:`~qrlogin.login.messages.serialize_message`, seal, send
* :class:`DeleteRendezvous` -> ``DELETE`` the rendezvous session (only emitted by the device that created it)

HTTP to the homeserver goes out as :class:`SendHttpRequest` and comes back as :class:`HttpResponseReceived`
(or :class:`HttpFailed` for a transport error). The values are :mod:`qrlogin.http`'s, with absolute-URL targets; a
machine has at most one request outstanding, so no correlation id is needed. ``authenticated`` asks the adapter to
add the signed-in user's access token (the existing device's device-management calls); the core never holds that
token, so it cannot leak into a ``repr``. Time is an input: machines store deadlines, :func:`deadline`
queries tell the caller when to deliver :class:`TimerFired`, and a timer event that arrives early changes
nothing.

Every run ends in exactly one :class:`Completed` or :class:`Failed` effect.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum, StrEnum

from ..http import HttpRequest, HttpResponse
from .messages import FailureReason, Message, Secrets
from .oauth import Tokens

__all__ = [
    "FINAL_MESSAGE_GRACE_MS",
    "ChannelClosed",
    "ChannelSecured",
    "Completed",
    "DeleteRendezvous",
    "Effect",
    "Event",
    "Failed",
    "HttpFailed",
    "HttpResponseReceived",
    "LocalReason",
    "MessageReceived",
    "OpenVerificationUri",
    "QrRole",
    "SendHttpRequest",
    "SendMessage",
    "ShowUserCode",
    "TimerFired",
    "UserCancelled",
    "VerificationUriOpened",
    "VerificationUriUnavailable",
]

# After sending a last message, the creator waits this long before deleting the rendezvous so that the peer
# can still read that message (the rendezvous is a single slot: deleting it at once would destroy the
# message).
FINAL_MESSAGE_GRACE_MS = 5_000


class QrRole(Enum):
    """Whether this device generated (showed) the QR code or scanned it."""

    GENERATED = "generated"
    SCANNED = "scanned"


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


@dataclass(frozen=True, slots=True, kw_only=True)
class HttpResponseReceived:
    response: HttpResponse


@dataclass(frozen=True, slots=True, kw_only=True)
class HttpFailed:
    """The outstanding request got no HTTP response (connection error, timeout)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class TimerFired:
    pass


@dataclass(frozen=True, slots=True, kw_only=True)
class UserCancelled:
    """The user cancelled, at any step (including refusing to open the verification URI)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class VerificationUriOpened:
    pass


@dataclass(frozen=True, slots=True, kw_only=True)
class VerificationUriUnavailable:
    """The URI could not be opened (unsupported scheme, no browser)."""


Event = (
    ChannelSecured
    | MessageReceived
    | ChannelClosed
    | HttpResponseReceived
    | HttpFailed
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
class SendHttpRequest:
    request: HttpRequest


@dataclass(frozen=True, slots=True, kw_only=True)
class OpenVerificationUri:
    """Open ``uri`` in a trusted browser. The URI came from the peer: it is untrusted (THREATS.md T14)."""

    uri: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ShowUserCode:
    """RFC 8628 §3.3.1: the new device displays the user code while the user consents."""

    user_code: str


@dataclass(frozen=True, slots=True, kw_only=True)
class DeleteRendezvous:
    """Delete the rendezvous session this device created, not before ``not_before_ms``."""

    not_before_ms: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Completed:
    """The login succeeded. On the new device it carries the tokens and the secrets received."""

    tokens: Tokens | None = None
    secrets: Secrets | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Failed:
    """The login ended without success; ``by_peer`` says the peer reported it."""

    reason: FailureReason | LocalReason | str
    by_peer: bool = False


Effect = SendMessage | SendHttpRequest | OpenVerificationUri | ShowUserCode | DeleteRendezvous | Completed | Failed
