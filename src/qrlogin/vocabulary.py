"""The words every layer shares: what crosses a boundary between a machine and whoever drives it.

Theory of operation
-------------------
Each protocol layer (secure channel, rendezvous client, login, device) is a pure machine with events and effects of
its own. Some of those are the same thing at every layer: a request for the network, its answer or its loss, a
timer, and the user's acts and what the user is shown. They are defined here once, and every layer imports them, so a
value can pass from one layer to the one above unchanged (the device hands a login machine's
:class:`SendHttpRequest` to the embedder as it is, only renumbered) and an embedder learns one set of names.

Naming rules, checked by ``tests/test_naming.py`` for every machine:

* events say what happened, in the past tense (:class:`HttpResponseReceived`, :class:`CheckCodeEntered`);
* effects say what to do, in the imperative (:class:`SendHttpRequest`, :class:`ShowCheckCode`);
* states are named for what they wait for (``AwaitingLoginOk``, ``ReadyToSend``), terminal states for how the
  machine ended (``ChannelFailed``, ``SessionClosed``).

Roles have one spelling each. :class:`DeviceRole` says which device this is: the ``NEW`` device being signed in or
the ``EXISTING`` device that is already signed in. :class:`QrSide` says which side of the QR code it is on: the
device that ``SHOWS`` the code (it created the rendezvous session) or the one that ``SCANS`` it (it speaks first on
the secure channel). The two are independent: either device may show the code (MSC4108 "intent").

HTTP requests carry a ``request_id`` chosen by the machine that emits them; the answer or loss names it back. A
machine keeps the id of the request it is waiting for and treats an answer to any other id as stale network noise.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from .http import HttpRequest, HttpResponse

__all__ = [
    "CheckCodeEntered",
    "DeviceRole",
    "HttpRequestFailed",
    "HttpResponseReceived",
    "OpenVerificationUri",
    "PromptForCheckCode",
    "QrSide",
    "SendHttpRequest",
    "ShowCheckCode",
    "ShowUserCode",
    "TimerFired",
    "UserCancelled",
    "VerificationUriOpened",
    "VerificationUriUnavailable",
]


class DeviceRole(enum.Enum):
    """Which device: the one being signed in, or the one already signed in that lets it in."""

    NEW = "new"
    EXISTING = "existing"


class QrSide(enum.Enum):
    """Which side of the QR code: the device that shows it, or the device that scans it."""

    SHOWS = "shows"
    SCANS = "scans"


# ------------------------------------------------------------------------------------------------- the network


@dataclass(frozen=True, slots=True, kw_only=True)
class SendHttpRequest:
    """Effect: perform ``request``; answer with :class:`HttpResponseReceived` or :class:`HttpRequestFailed`.

    ``request.authenticated`` asks the embedder to add the signed-in user's access token (no core holds it).
    """

    request_id: int
    request: HttpRequest


@dataclass(frozen=True, slots=True, kw_only=True)
class HttpResponseReceived:
    """Event: the server answered request ``request_id``. Untrusted: anything wrong in it is a typed failure."""

    request_id: int
    response: HttpResponse


@dataclass(frozen=True, slots=True, kw_only=True)
class HttpRequestFailed:
    """Event: no answer came for request ``request_id`` (it may or may not have reached the server)."""

    request_id: int


# -------------------------------------------------------------------------------------------------------- time


@dataclass(frozen=True, slots=True, kw_only=True)
class TimerFired:
    """Event: the time a machine's ``deadline(state)`` named has come. One that arrives early changes nothing."""


# -------------------------------------------------------------------------------------------------------- user


@dataclass(frozen=True, slots=True, kw_only=True)
class CheckCodeEntered:
    """Event: the user typed ``code`` on the device that shows the QR code. Exactly one attempt is accepted."""

    code: str = field(repr=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class UserCancelled:
    """Event: the user gave up, at any step."""


@dataclass(frozen=True, slots=True, kw_only=True)
class VerificationUriOpened:
    """Event: the verification URI is open in a browser where the user can consent."""


@dataclass(frozen=True, slots=True, kw_only=True)
class VerificationUriUnavailable:
    """Event: the verification URI could not be opened (unsupported scheme, no browser)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class PromptForCheckCode:
    """Effect: ask the user for the two digits the other device shows; answer with :class:`CheckCodeEntered`."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ShowCheckCode:
    """Effect: show these two digits for the user to type on the other device."""

    code: str = field(repr=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class ShowUserCode:
    """Effect: show the RFC 8628 user code (section 3.3.1) while the user consents on the other device."""

    user_code: str


@dataclass(frozen=True, slots=True, kw_only=True)
class OpenVerificationUri:
    """Effect: open ``uri`` in a trusted browser for the user to consent; answer with :class:`VerificationUriOpened`
    or :class:`VerificationUriUnavailable`. The URI came from the peer: it is untrusted (docs/threats.md T14)."""

    uri: str
