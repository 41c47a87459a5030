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
           else device_not_found -> send m.login.secrets: Completed

``m.login.declined`` ends the machine (the user refused at the homeserver), a received ``m.login.failure``
ends it with the peer's reason, anything else out of place is answered with ``unexpected_message_received``.
The secrets are given in the configuration and leave the machine only inside the one ``SendMessage(Secrets)``
effect.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote

from .._machine import require_legal
from ..errors import LocalProtocolError
from ..http import HttpRequest, split_url
from . import oauth
from ._common import Aborted, Finished, abort, end_on_close_or_cancel, finish, parse_or_none, unexpected
from .events import (
    ChannelClosed,
    ChannelSecured,
    Completed,
    Effect,
    Event,
    HttpFailed,
    HttpResponseReceived,
    LocalReason,
    MessageReceived,
    OpenVerificationUri,
    QrRole,
    SendHttpRequest,
    SendMessage,
    TimerFired,
    UserCancelled,
    VerificationUriOpened,
    VerificationUriUnavailable,
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
    "LEGAL_MOVES",
    "Aborted",
    "AwaitingChannel",
    "AwaitingDeviceAbsent",
    "AwaitingDevicePresent",
    "AwaitingLoginResult",
    "AwaitingProtocol",
    "AwaitingVerificationUriOpened",
    "ExistingDeviceConfig",
    "Finished",
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
    instead.
    """

    role: QrRole
    base_url: str
    secrets: Secrets
    server_name: str | None = None
    allow_http_verification_uri: bool = False
    device_check_timeout_ms: int = DEVICE_CHECK_TIMEOUT_MS
    device_check_interval_ms: int = DEVICE_CHECK_INTERVAL_MS

    @property
    def created_rendezvous(self) -> bool:
        return self.role is QrRole.GENERATED


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


@dataclass(frozen=True, slots=True, kw_only=True)
class WaitingToRecheckDevice:
    config: ExistingDeviceConfig
    device_id: str
    deadline_ms: int
    next_check_ms: int


State = (
    AwaitingChannel
    | AwaitingProtocol
    | AwaitingDeviceAbsent
    | AwaitingVerificationUriOpened
    | AwaitingLoginResult
    | AwaitingDevicePresent
    | WaitingToRecheckDevice
    | Finished
    | Aborted
)

_NETWORK = frozenset({MessageReceived, ChannelClosed, TimerFired, UserCancelled})
_HTTP = _NETWORK | {HttpResponseReceived, HttpFailed}

LEGAL_MOVES: dict[type, frozenset[type]] = {
    AwaitingChannel: _NETWORK | {ChannelSecured},
    AwaitingProtocol: _NETWORK,
    AwaitingDeviceAbsent: _HTTP,
    AwaitingVerificationUriOpened: _NETWORK | {VerificationUriOpened, VerificationUriUnavailable},
    AwaitingLoginResult: _NETWORK,
    AwaitingDevicePresent: _HTTP,
    WaitingToRecheckDevice: _NETWORK,
    Finished: frozenset(),
    Aborted: frozenset(),
}

Result = tuple[State, tuple[Effect, ...]]


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


# ------------------------------------------------------------------------------------------------ transitions


def _config(state: State) -> ExistingDeviceConfig:
    assert not isinstance(state, Finished | Aborted), "require_legal refuses every event in a terminal state"
    return state.config


def _abort(
    config: ExistingDeviceConfig,
    reason: FailureReason | LocalReason | str,
    now_ms: int,
    tell: FailureReason | Message | None = None,
    *,
    by_peer: bool = False,
) -> Result:
    return abort(reason, created_rendezvous=config.created_rendezvous, now_ms=now_ms, tell=tell, by_peer=by_peer)


def _advertised(config: ExistingDeviceConfig) -> str:
    return config.server_name if config.server_name is not None else config.base_url


def _protocols(config: ExistingDeviceConfig) -> Protocols:
    if config.server_name is not None:
        return Protocols(protocols=(DEVICE_AUTHORIZATION_GRANT,), homeserver=config.server_name)
    return Protocols(protocols=(DEVICE_AUTHORIZATION_GRANT,), base_url=config.base_url)


def _uri_acceptable(config: ExistingDeviceConfig, uri: str) -> bool:
    parts = split_url(uri)
    schemes = ("https", "http") if config.allow_http_verification_uri else ("https",)
    return parts is not None and parts.scheme in schemes and bool(parts.netloc)


def _on_protocol(config: ExistingDeviceConfig, plaintext: bytes, now_ms: int) -> Result:
    message = parse_or_none(plaintext)
    if not isinstance(message, Protocol):
        return unexpected(message, created_rendezvous=config.created_rendezvous, now_ms=now_ms)
    grant = message.device_authorization_grant
    if message.protocol != DEVICE_AUTHORIZATION_GRANT or grant is None or not message.device_id:
        failure = Failure(reason=FailureReason.UNSUPPORTED_PROTOCOL, homeserver=_advertised(config))
        return _abort(config, FailureReason.UNSUPPORTED_PROTOCOL, now_ms, failure)
    uri = grant.verification_uri_complete or grant.verification_uri
    state = AwaitingDeviceAbsent(config=config, device_id=message.device_id, verification_uri=uri)
    return state, (SendHttpRequest(request=device_request(config.base_url, message.device_id)),)


def _on_message(state: State, plaintext: bytes, now_ms: int) -> Result:
    config: ExistingDeviceConfig = _config(state)
    if isinstance(state, AwaitingChannel):
        if state.pending is None:
            return AwaitingChannel(config=config, pending=plaintext), ()
        return _abort(config, FailureReason.UNEXPECTED_MESSAGE_RECEIVED, now_ms)
    if isinstance(state, AwaitingProtocol):
        return _on_protocol(config, plaintext, now_ms)
    message = parse_or_none(plaintext)
    if isinstance(state, AwaitingLoginResult):
        if isinstance(message, Success):
            deadline_ms = now_ms + config.device_check_timeout_ms
            new_state = AwaitingDevicePresent(config=config, device_id=state.device_id, deadline_ms=deadline_ms)
            return new_state, (SendHttpRequest(request=device_request(config.base_url, state.device_id)),)
        if isinstance(message, Declined):
            return _abort(config, LocalReason.DECLINED, now_ms, by_peer=True)
    return unexpected(message, created_rendezvous=config.created_rendezvous, now_ms=now_ms)


def _on_http(state: AwaitingDeviceAbsent | AwaitingDevicePresent, event: Event, now_ms: int) -> Result:
    config = state.config
    status = event.response.status if isinstance(event, HttpResponseReceived) else None
    if isinstance(state, AwaitingDeviceAbsent):
        # Only a 404 shows the id is free; anything else (200, an error, no answer) refuses the login.
        if status != 404:
            return _abort(config, FailureReason.DEVICE_ALREADY_EXISTS, now_ms, FailureReason.DEVICE_ALREADY_EXISTS)
        if not _uri_acceptable(config, state.verification_uri):
            reason = FailureReason.UNABLE_TO_OPEN_VERIFICATION_URI
            return _abort(config, reason, now_ms, reason)
        new_state = AwaitingVerificationUriOpened(config=config, device_id=state.device_id)
        return new_state, (OpenVerificationUri(uri=state.verification_uri),)
    if status == 200:
        return finish(Completed(), created_rendezvous=config.created_rendezvous, now_ms=now_ms, last=config.secrets)
    next_check_ms = now_ms + config.device_check_interval_ms
    if next_check_ms > state.deadline_ms:
        return _abort(config, FailureReason.DEVICE_NOT_FOUND, now_ms, FailureReason.DEVICE_NOT_FOUND)
    waiting = WaitingToRecheckDevice(
        config=config, device_id=state.device_id, deadline_ms=state.deadline_ms, next_check_ms=next_check_ms
    )
    return waiting, ()


def transition(state: State, event: Event, *, now_ms: int) -> Result:
    """Advance the existing device's machine by one event."""
    require_legal(LEGAL_MOVES, state, event)
    config: ExistingDeviceConfig = _config(state)
    ended = end_on_close_or_cancel(
        event,
        channel_secured=not isinstance(state, AwaitingChannel),
        created_rendezvous=config.created_rendezvous,
        now_ms=now_ms,
    )
    if ended is not None:
        return ended
    if isinstance(event, MessageReceived):
        return _on_message(state, event.plaintext, now_ms)
    if isinstance(event, TimerFired):
        if isinstance(state, WaitingToRecheckDevice) and now_ms >= state.next_check_ms:
            new_state = AwaitingDevicePresent(config=config, device_id=state.device_id, deadline_ms=state.deadline_ms)
            return new_state, (SendHttpRequest(request=device_request(config.base_url, state.device_id)),)
        return state, ()
    if isinstance(event, HttpResponseReceived | HttpFailed):
        assert isinstance(state, AwaitingDeviceAbsent | AwaitingDevicePresent)
        return _on_http(state, event, now_ms)
    if isinstance(event, VerificationUriOpened):
        assert isinstance(state, AwaitingVerificationUriOpened)
        return AwaitingLoginResult(config=config, device_id=state.device_id), (SendMessage(message=ProtocolAccepted()),)
    if isinstance(event, VerificationUriUnavailable):
        reason = FailureReason.UNABLE_TO_OPEN_VERIFICATION_URI
        return _abort(config, reason, now_ms, reason)
    assert isinstance(event, ChannelSecured) and isinstance(state, AwaitingChannel)
    if config.role is QrRole.SCANNED:
        if state.pending is not None:
            return unexpected(parse_or_none(state.pending), created_rendezvous=False, now_ms=now_ms)
        return AwaitingProtocol(config=config), (SendMessage(message=_protocols(config)),)
    if state.pending is not None:
        return _on_protocol(config, state.pending, now_ms)
    return AwaitingProtocol(config=config), ()
