"""The existing device's login machine (MSC4108, existing-device side, both QR directions).

Theory of operation
-------------------
The existing device is signed in and grants the login. Who speaks first depends on who scanned:

* **existing device scanned** (it is S): as soon as the channel is up it sends ``m.login.protocols`` naming
  the homeserver (``homeserver`` for v1/v2 channels, ``base_url`` for v3) and waits for ``m.login.protocol``;
* **existing device generated** (it is G): the new device speaks first. Its ``m.login.protocol`` may arrive
  before the user has typed the check code; it is held unparsed and acted on only after
  :class:`ChannelSecured`, which the glue delivers once the code was confirmed. Nothing is sent to, or done
  for, an unconfirmed peer.

Then::

    m.login.protocol -> GET /devices/<id> must be 404 (anything else: device_already_exists)
        -> OpenVerificationUri -> opened: send m.login.protocol_accepted
                               -> unavailable (or not https): unable_to_open_verification_uri
                               -> user refused: user_cancelled
        -> m.login.success -> GET /devices/<id> must be 200, retried every 500 ms for up to 10 s of virtual
        time,
           else device_not_found -> send m.login.secrets: ReportLoginSuccess

``m.login.declined`` ends the machine (the user refused at the homeserver), a received ``m.login.failure``
ends it with the peer's reason, anything else out of place is answered with ``unexpected_message_received``.
The secrets are given in the configuration and leave the machine only inside the one ``SendMessage(Secrets)``
effect.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Final
from urllib.parse import quote

from .._machine import Machine, stay
from ..errors import LocalProtocolError
from ..http import HttpRequest, split_url
from ..vocabulary import (
    HttpRequestFailed,
    HttpResponseReceived,
    OpenVerificationUri,
    QrSide,
    SendHttpRequest,
    TimerFired,
    VerificationUriOpened,
    VerificationUriUnavailable,
)
from . import oauth
from ._common import (
    LoginFailed,
    LoginSucceeded,
    abort,
    finish,
    parse_or_none,
    shared_moves,
    unexpected,
)
from .events import (
    ChannelSecured,
    Effect,
    Event,
    LocalReason,
    MessageReceived,
    ReportLoginSuccess,
    SendMessage,
)
from .messages import (
    DEVICE_AUTHORIZATION_GRANT,
    Declined,
    Failure,
    FailureReason,
    Message,
    Protocol,
    ProtocolAccepted,
    Protocols,
    Secrets,
    Success,
)

__all__ = [
    "DEVICE_CHECK_INTERVAL_MS",
    "DEVICE_CHECK_TIMEOUT_MS",
    "MACHINE",
    "AwaitingChannel",
    "AwaitingDeviceAbsent",
    "AwaitingDevicePresent",
    "AwaitingLoginResult",
    "AwaitingProtocol",
    "AwaitingVerificationUriOpened",
    "ExistingDeviceConfig",
    "LoginFailed",
    "LoginSucceeded",
    "State",
    "WaitingToRecheckDevice",
    "deadline",
    "device_request",
    "start",
    "transition",
]

DEVICE_CHECK_TIMEOUT_MS = 10_000
DEVICE_CHECK_INTERVAL_MS = 500


@dataclass(frozen=True, slots=True, kw_only=True)
class ExistingDeviceConfig:
    """What the signed-in application provides.

    ``base_url`` is used for the device-management calls and, when ``server_name`` is ``None`` (v3),
    advertised in ``m.login.protocols``; with ``server_name`` set (v1/v2) that is advertised as ``homeserver``
    instead. ``protocols`` are the login protocols the homeserver offers, read from its auth metadata
    (``device_authorization_grant`` when ``grant_types_supported`` lists the device code grant): an empty tuple is
    advertised as ``"protocols": []`` and makes any ``m.login.protocol`` ``unsupported_protocol``.
    """

    role: QrSide
    base_url: str
    secrets: Secrets
    server_name: str | None = None
    allow_http_verification_uri: bool = False
    protocols: tuple[str, ...] = (DEVICE_AUTHORIZATION_GRANT,)
    device_check_timeout_ms: int = DEVICE_CHECK_TIMEOUT_MS
    device_check_interval_ms: int = DEVICE_CHECK_INTERVAL_MS

    @property
    def created_rendezvous(self) -> bool:
        return self.role is QrSide.SHOWS


# ----------------------------------------------------------------------------------------------------- states


@dataclass(frozen=True, slots=True, kw_only=True)
class AwaitingChannel:
    config: ExistingDeviceConfig
    pending: bytes | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class AwaitingProtocol:
    config: ExistingDeviceConfig


@dataclass(frozen=True, slots=True, kw_only=True)
class AwaitingDeviceAbsent:
    config: ExistingDeviceConfig
    device_id: str
    verification_uri: str


@dataclass(frozen=True, slots=True, kw_only=True)
class AwaitingVerificationUriOpened:
    config: ExistingDeviceConfig
    device_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class AwaitingLoginResult:
    config: ExistingDeviceConfig
    device_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class AwaitingDevicePresent:
    config: ExistingDeviceConfig
    device_id: str
    deadline_ms: int
    request_id: int


@dataclass(frozen=True, slots=True, kw_only=True)
class WaitingToRecheckDevice:
    config: ExistingDeviceConfig
    device_id: str
    deadline_ms: int
    next_check_ms: int
    next_request_id: int


State = (
    AwaitingChannel
    | AwaitingProtocol
    | AwaitingDeviceAbsent
    | AwaitingVerificationUriOpened
    | AwaitingLoginResult
    | AwaitingDevicePresent
    | WaitingToRecheckDevice
    | LoginSucceeded
    | LoginFailed
)

Effects = tuple[Effect, ...]
Result = tuple[State, Effects]

# Every request the machine makes has an id of its own, so that an answer to an earlier one is recognised as stale:
# the check that the device id is free, then the checks that the new device appeared, counting up.
_DEVICE_ABSENT_REQUEST_ID = 1
_FIRST_DEVICE_PRESENT_REQUEST_ID = 2


def awaited_request_id(state: State) -> int | None:
    """The id of the request whose answer ``state`` waits for, or ``None``."""
    if isinstance(state, AwaitingDeviceAbsent):
        return _DEVICE_ABSENT_REQUEST_ID
    if isinstance(state, AwaitingDevicePresent):
        return state.request_id
    return None


def start(config: ExistingDeviceConfig) -> AwaitingChannel:
    """Check the configuration and return the first state; raises :class:`LocalProtocolError` on misuse."""
    try:
        oauth.checked_base_url(config.base_url)
    except oauth.OAuthError:
        raise LocalProtocolError("base_url must be an absolute http(s) URL") from None
    if config.device_check_timeout_ms < 0 or config.device_check_interval_ms <= 0:
        raise LocalProtocolError("device check timing must be positive")
    return AwaitingChannel(config=config)


def deadline(state: State) -> int | None:
    """When the caller should deliver :class:`TimerFired` next, or ``None``."""
    if isinstance(state, WaitingToRecheckDevice):
        return state.next_check_ms
    return None


def device_request(base_url: str, device_id: str) -> HttpRequest:
    """``GET /_matrix/client/v3/devices/<device_id>`` as the signed-in user; the id is percent-encoded."""
    url = f"{oauth.checked_base_url(base_url)}/_matrix/client/v3/devices/{quote(device_id, safe='')}"
    return HttpRequest(method="GET", target=url, headers=(("Accept", "application/json"),), authenticated=True)


# ----------------------------------------------------------------------------------------------------- steps


def _abort(
    config: ExistingDeviceConfig,
    reason: FailureReason | LocalReason | str,
    now_ms: int,
    tell: FailureReason | Message | None = None,
    *,
    by_peer: bool = False,
) -> tuple[LoginFailed, Effects]:
    return abort(reason, created_rendezvous=config.created_rendezvous, now_ms=now_ms, tell=tell, by_peer=by_peer)


def _advertised(config: ExistingDeviceConfig) -> str:
    return config.server_name if config.server_name is not None else config.base_url


def _protocols(config: ExistingDeviceConfig) -> Protocols:
    if config.server_name is not None:
        return Protocols(protocols=config.protocols, homeserver=config.server_name)
    return Protocols(protocols=config.protocols, base_url=config.base_url)


def _uri_acceptable(config: ExistingDeviceConfig, uri: str) -> bool:
    parts = split_url(uri)
    schemes = ("https", "http") if config.allow_http_verification_uri else ("https",)
    return parts is not None and parts.scheme in schemes and bool(parts.netloc)


def _on_protocol(
    config: ExistingDeviceConfig, plaintext: bytes, now_ms: int
) -> tuple[AwaitingDeviceAbsent | LoginFailed, Effects]:
    message = parse_or_none(plaintext)
    if not isinstance(message, Protocol):
        return unexpected(message, created_rendezvous=config.created_rendezvous, now_ms=now_ms)
    grant = message.device_authorization_grant
    offered = message.protocol == DEVICE_AUTHORIZATION_GRANT and message.protocol in config.protocols
    if not offered or grant is None or not message.device_id:
        failure = Failure(reason=FailureReason.UNSUPPORTED_PROTOCOL, homeserver=_advertised(config))
        return _abort(config, FailureReason.UNSUPPORTED_PROTOCOL, now_ms, failure)
    uri = grant.verification_uri_complete or grant.verification_uri
    state = AwaitingDeviceAbsent(config=config, device_id=message.device_id, verification_uri=uri)
    request = device_request(config.base_url, message.device_id)
    return state, (SendHttpRequest(request_id=_DEVICE_ABSENT_REQUEST_ID, request=request),)


def _check_device_present(
    config: ExistingDeviceConfig, device_id: str, deadline_ms: int, request_id: int
) -> tuple[AwaitingDevicePresent, Effects]:
    state = AwaitingDevicePresent(config=config, device_id=device_id, deadline_ms=deadline_ms, request_id=request_id)
    return state, (SendHttpRequest(request_id=request_id, request=device_request(config.base_url, device_id)),)


def _device_still_absent(
    state: AwaitingDevicePresent, now_ms: int
) -> tuple[WaitingToRecheckDevice | LoginFailed, Effects]:
    """Anything but a 200 after ``m.login.success`` counts as "not yet": look again, until the deadline."""
    config = state.config
    next_check_ms = now_ms + config.device_check_interval_ms
    if next_check_ms > state.deadline_ms:
        return _abort(config, FailureReason.DEVICE_NOT_FOUND, now_ms, FailureReason.DEVICE_NOT_FOUND)
    waiting = WaitingToRecheckDevice(
        config=config,
        device_id=state.device_id,
        deadline_ms=state.deadline_ms,
        next_check_ms=next_check_ms,
        next_request_id=state.request_id + 1,
    )
    return waiting, ()


# ----------------------------------------------------------------------------------------------------- moves
#
# One handler per move, annotated with the states it can lead to: the diagram in docs/login.md is drawn from those
# annotations, and mypy holds each handler to its own. An HTTP answer whose request id is not the awaited one is
# stale and changes nothing; so does a timer in a state that set none.


def _hold(state: AwaitingChannel, event: MessageReceived, now_ms: int) -> tuple[AwaitingChannel | LoginFailed, Effects]:
    """A message before the channel is secured waits, unread, until :class:`ChannelSecured`; only one may."""
    if state.pending is None:
        return replace(state, pending=event.plaintext), ()
    return _abort(state.config, FailureReason.UNEXPECTED_MESSAGE_RECEIVED, now_ms)


def _secured(
    state: AwaitingChannel, event: ChannelSecured, now_ms: int
) -> tuple[AwaitingProtocol | AwaitingDeviceAbsent | LoginFailed, Effects]:
    config = state.config
    if config.role is QrSide.SCANS:
        if state.pending is not None:
            return unexpected(parse_or_none(state.pending), created_rendezvous=False, now_ms=now_ms)
        return AwaitingProtocol(config=config), (SendMessage(message=_protocols(config)),)
    if state.pending is not None:
        return _on_protocol(config, state.pending, now_ms)
    return AwaitingProtocol(config=config), ()


def _protocol_received(
    state: AwaitingProtocol, event: MessageReceived, now_ms: int
) -> tuple[AwaitingDeviceAbsent | LoginFailed, Effects]:
    return _on_protocol(state.config, event.plaintext, now_ms)


def _device_absent_answered(
    state: AwaitingDeviceAbsent, event: HttpResponseReceived, now_ms: int
) -> tuple[AwaitingDeviceAbsent | AwaitingVerificationUriOpened | LoginFailed, Effects]:
    if event.request_id != awaited_request_id(state):
        return state, ()
    config = state.config
    # Only a 404 shows the id is free; anything else (200, an error) refuses the login.
    if event.response.status != 404:
        return _abort(config, FailureReason.DEVICE_ALREADY_EXISTS, now_ms, FailureReason.DEVICE_ALREADY_EXISTS)
    if not _uri_acceptable(config, state.verification_uri):
        reason = FailureReason.UNABLE_TO_OPEN_VERIFICATION_URI
        return _abort(config, reason, now_ms, reason)
    opening = AwaitingVerificationUriOpened(config=config, device_id=state.device_id)
    return opening, (OpenVerificationUri(uri=state.verification_uri),)


def _device_absent_lost(
    state: AwaitingDeviceAbsent, event: HttpRequestFailed, now_ms: int
) -> tuple[AwaitingDeviceAbsent | LoginFailed, Effects]:
    """No answer does not show the id is free: the login is refused."""
    if event.request_id != awaited_request_id(state):
        return state, ()
    config = state.config
    return _abort(config, FailureReason.DEVICE_ALREADY_EXISTS, now_ms, FailureReason.DEVICE_ALREADY_EXISTS)


def _uri_opened(
    state: AwaitingVerificationUriOpened, event: VerificationUriOpened, now_ms: int
) -> tuple[AwaitingLoginResult, Effects]:
    accepted = AwaitingLoginResult(config=state.config, device_id=state.device_id)
    return accepted, (SendMessage(message=ProtocolAccepted()),)


def _uri_unavailable(
    state: AwaitingVerificationUriOpened, event: VerificationUriUnavailable, now_ms: int
) -> tuple[LoginFailed, Effects]:
    reason = FailureReason.UNABLE_TO_OPEN_VERIFICATION_URI
    return _abort(state.config, reason, now_ms, reason)


def _login_result(
    state: AwaitingLoginResult, event: MessageReceived, now_ms: int
) -> tuple[AwaitingDevicePresent | LoginFailed, Effects]:
    config = state.config
    message = parse_or_none(event.plaintext)
    if isinstance(message, Success):
        deadline_ms = now_ms + config.device_check_timeout_ms
        return _check_device_present(config, state.device_id, deadline_ms, _FIRST_DEVICE_PRESENT_REQUEST_ID)
    if isinstance(message, Declined):
        return _abort(config, LocalReason.DECLINED, now_ms, by_peer=True)
    return unexpected(message, created_rendezvous=config.created_rendezvous, now_ms=now_ms)


def _device_present_answered(
    state: AwaitingDevicePresent, event: HttpResponseReceived, now_ms: int
) -> tuple[AwaitingDevicePresent | LoginSucceeded | WaitingToRecheckDevice | LoginFailed, Effects]:
    if event.request_id != state.request_id:
        return state, ()
    if event.response.status != 200:
        return _device_still_absent(state, now_ms)
    config = state.config
    return finish(
        ReportLoginSuccess(device_id=state.device_id),
        created_rendezvous=config.created_rendezvous,
        now_ms=now_ms,
        last=config.secrets,
    )


def _device_present_lost(
    state: AwaitingDevicePresent, event: HttpRequestFailed, now_ms: int
) -> tuple[AwaitingDevicePresent | WaitingToRecheckDevice | LoginFailed, Effects]:
    if event.request_id != state.request_id:
        return state, ()
    return _device_still_absent(state, now_ms)


def _recheck(
    state: WaitingToRecheckDevice, event: TimerFired, now_ms: int
) -> tuple[WaitingToRecheckDevice | AwaitingDevicePresent, Effects]:
    if now_ms < state.next_check_ms:
        return state, ()  # early
    return _check_device_present(state.config, state.device_id, state.deadline_ms, state.next_request_id)


_LIVE = (
    AwaitingChannel,
    AwaitingProtocol,
    AwaitingDeviceAbsent,
    AwaitingVerificationUriOpened,
    AwaitingLoginResult,
    AwaitingDevicePresent,
    WaitingToRecheckDevice,
)
_EXPECTING_NO_MESSAGE = (
    AwaitingDeviceAbsent,
    AwaitingVerificationUriOpened,
    AwaitingDevicePresent,
    WaitingToRecheckDevice,
)

MACHINE: Final = Machine[State, Event, Effect](
    "existing device",
    {
        **shared_moves(_LIVE, unsecured=AwaitingChannel, expecting_no_message=_EXPECTING_NO_MESSAGE),
        (AwaitingChannel, MessageReceived): _hold,
        (AwaitingChannel, ChannelSecured): _secured,
        (AwaitingChannel, TimerFired): stay,
        (AwaitingProtocol, MessageReceived): _protocol_received,
        (AwaitingProtocol, TimerFired): stay,
        (AwaitingDeviceAbsent, HttpResponseReceived): _device_absent_answered,
        (AwaitingDeviceAbsent, HttpRequestFailed): _device_absent_lost,
        (AwaitingDeviceAbsent, TimerFired): stay,
        (AwaitingVerificationUriOpened, VerificationUriOpened): _uri_opened,
        (AwaitingVerificationUriOpened, VerificationUriUnavailable): _uri_unavailable,
        (AwaitingVerificationUriOpened, TimerFired): stay,
        (AwaitingLoginResult, MessageReceived): _login_result,
        (AwaitingLoginResult, TimerFired): stay,
        (AwaitingDevicePresent, HttpResponseReceived): _device_present_answered,
        (AwaitingDevicePresent, HttpRequestFailed): _device_present_lost,
        (AwaitingDevicePresent, TimerFired): stay,
        (WaitingToRecheckDevice, TimerFired): _recheck,
    },
    initial=(AwaitingChannel,),
)


def transition(state: State, event: Event, *, now_ms: int) -> Result:
    """Advance the existing device's machine by one event: ``MACHINE``'s move for ``(state, event)``; a pair not in
    it raises :class:`LocalProtocolError` before anything changes."""
    return MACHINE.transition(state, event, now_ms)
