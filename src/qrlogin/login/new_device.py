"""The new device's login machine (MSC4108 "Login via OAuth 2.0 Device Authorization Grant", new-device side).

Theory of operation
-------------------
The new device wants to sign in. Which device speaks first depends on who scanned the QR code:

* **new device scanned** (it is S): the QR named the homeserver, so once the channel is up it goes straight to
  discovery and is the first to send (``m.login.protocol``);
* **new device generated** (it is G): it waits for the existing device's ``m.login.protocols`` (which may
  arrive before the user has confirmed the check code: it is held, unparsed, until :class:`ChannelSecured`),
  then does discovery with the homeserver named there.

Then, in both directions::

    well-known (server name only) -> auth_metadata -> [registration] -> device authorization
        -> send m.login.protocol -> AwaitingProtocolAccepted
        -> show user code, poll the token endpoint every `interval` (+5 s on slow_down) until `expires_in`
        -> tokens: send m.login.success -> AwaitingSecrets -> m.login.secrets: ReportLoginSuccess

``access_denied``/``authorization_declined`` sends ``m.login.declined``; ``expired_token`` or passing
``expires_in`` sends ``m.login.failure`` ``authorization_expired``. A homeserver without the device grant (or
any unusable OAuth answer) sends ``unsupported_protocol``. Every message that does not fit the step is
answered with ``unexpected_message_received``; a received ``m.login.failure`` ends the machine with its
reason; a user cancel at any step sends ``user_cancelled``. Endings go through :mod:`qrlogin.login._common`.

``LEGAL_MOVES`` is the single source for the runtime check, the diagram in ``docs/login.md`` and the
exhaustive (state, event) test. Network input (messages, HTTP responses, timers, channel loss) is legal in
every live state; an HTTP response is legal only where a request is outstanding, so a stray one is caller
misuse.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from .._json import JsonError, loads_object
from .._machine import require_legal
from ..errors import LocalProtocolError, RemoteProtocolError
from ..vocabulary import (
    HttpRequestFailed,
    HttpResponseReceived,
    QrSide,
    SendHttpRequest,
    ShowUserCode,
    TimerFired,
    UserCancelled,
)
from . import oauth
from ._common import LoginFailed, LoginSucceeded, abort, end_on_close_or_cancel, finish, parse_or_none, unexpected
from .events import (
    ChannelClosed,
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
    DeviceAuthorizationGrant,
    FailureReason,
    Message,
    Protocol,
    ProtocolAccepted,
    Protocols,
    Secrets,
    Success,
)

__all__ = [
    "LEGAL_MOVES",
    "AwaitingAuthMetadata",
    "AwaitingChannel",
    "AwaitingDeviceAuthorization",
    "AwaitingProtocolAccepted",
    "AwaitingProtocols",
    "AwaitingRegistration",
    "AwaitingSecrets",
    "AwaitingToken",
    "AwaitingWellKnown",
    "Grant",
    "LoginFailed",
    "LoginSucceeded",
    "NewDeviceConfig",
    "State",
    "WaitingToPoll",
    "deadline",
    "start",
    "transition",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class NewDeviceConfig:
    """What the application decides before the login starts.

    ``homeserver`` / ``base_url``: from the QR code when this device scanned it (server name for v1/v2, base
    URL for v3); unused when it generated the QR. Exactly one of ``client_id`` (static registration) and
    ``client_metadata`` (JSON for dynamic registration) is given. ``device_id`` is the id the device will
    request in its scope.
    """

    role: QrSide
    device_id: str
    client_id: str | None = None
    client_metadata: bytes | None = None
    homeserver: str | None = None
    base_url: str | None = None

    @property
    def created_rendezvous(self) -> bool:
        return self.role is QrSide.SHOWS


@dataclass(frozen=True, slots=True, kw_only=True)
class Grant:
    """The device grant once authorized: everything needed to poll."""

    metadata: oauth.AuthMetadata
    client_id: str
    authorization: oauth.DeviceAuthorization
    expires_at_ms: int


# ----------------------------------------------------------------------------------------------------- states


@dataclass(frozen=True, slots=True, kw_only=True)
class AwaitingChannel:
    config: NewDeviceConfig
    pending: bytes | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class AwaitingProtocols:
    config: NewDeviceConfig


@dataclass(frozen=True, slots=True, kw_only=True)
class AwaitingWellKnown:
    config: NewDeviceConfig
    server_name: str


@dataclass(frozen=True, slots=True, kw_only=True)
class AwaitingAuthMetadata:
    config: NewDeviceConfig


@dataclass(frozen=True, slots=True, kw_only=True)
class AwaitingRegistration:
    config: NewDeviceConfig
    metadata: oauth.AuthMetadata


@dataclass(frozen=True, slots=True, kw_only=True)
class AwaitingDeviceAuthorization:
    config: NewDeviceConfig
    metadata: oauth.AuthMetadata
    client_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class AwaitingProtocolAccepted:
    config: NewDeviceConfig
    grant: Grant


@dataclass(frozen=True, slots=True, kw_only=True)
class WaitingToPoll:
    config: NewDeviceConfig
    grant: Grant
    interval_ms: int
    next_poll_ms: int
    next_request_id: int


@dataclass(frozen=True, slots=True, kw_only=True)
class AwaitingToken:
    config: NewDeviceConfig
    grant: Grant
    interval_ms: int
    request_id: int


@dataclass(frozen=True, slots=True, kw_only=True)
class AwaitingSecrets:
    config: NewDeviceConfig
    tokens: oauth.Tokens


State = (
    AwaitingChannel
    | AwaitingProtocols
    | AwaitingWellKnown
    | AwaitingAuthMetadata
    | AwaitingRegistration
    | AwaitingDeviceAuthorization
    | AwaitingProtocolAccepted
    | WaitingToPoll
    | AwaitingToken
    | AwaitingSecrets
    | LoginSucceeded
    | LoginFailed
)

_NETWORK = frozenset({MessageReceived, ChannelClosed, TimerFired, UserCancelled})
_HTTP = _NETWORK | {HttpResponseReceived, HttpRequestFailed}

LEGAL_MOVES: dict[type, frozenset[type]] = {
    AwaitingChannel: _NETWORK | {ChannelSecured},
    AwaitingProtocols: _NETWORK,
    AwaitingWellKnown: _HTTP,
    AwaitingAuthMetadata: _HTTP,
    AwaitingRegistration: _HTTP,
    AwaitingDeviceAuthorization: _HTTP,
    AwaitingProtocolAccepted: _NETWORK,
    WaitingToPoll: _NETWORK,
    AwaitingToken: _HTTP,
    AwaitingSecrets: _NETWORK,
    LoginSucceeded: frozenset(),
    LoginFailed: frozenset(),
}

Result = tuple[State, tuple[Effect, ...]]

# Every request the machine makes has an id of its own, so that an answer to an earlier one is recognised as stale.
# The discovery steps are made once each; token polls count up from the last of them.
_REQUEST_IDS: dict[type, int] = {
    AwaitingWellKnown: 1,
    AwaitingAuthMetadata: 2,
    AwaitingRegistration: 3,
    AwaitingDeviceAuthorization: 4,
}
_FIRST_TOKEN_POLL_ID = 5


def awaited_request_id(state: State) -> int | None:
    """The id of the request whose answer ``state`` waits for, or ``None``."""
    if isinstance(state, AwaitingToken):
        return state.request_id
    return _REQUEST_IDS.get(type(state))


def start(config: NewDeviceConfig) -> AwaitingChannel:
    """Check the configuration and return the first state; raises :class:`LocalProtocolError` on misuse."""
    if (config.client_id is None) == (config.client_metadata is None):
        raise LocalProtocolError("give exactly one of client_id and client_metadata")
    if config.client_metadata is not None:
        try:
            loads_object(config.client_metadata, max_bytes=oauth.MAX_HTTP_BODY_BYTES)
        except JsonError:
            raise LocalProtocolError("client_metadata is not a JSON object") from None
    if config.role is QrSide.SCANS and (config.homeserver is None) == (config.base_url is None):
        raise LocalProtocolError("a scanning new device needs exactly one of homeserver and base_url from the QR")
    if not config.device_id:
        raise LocalProtocolError("device_id must not be empty")
    return AwaitingChannel(config=config)


def deadline(state: State) -> int | None:
    """When the caller should deliver :class:`TimerFired` next, or ``None``."""
    if isinstance(state, AwaitingProtocolAccepted):
        return state.grant.expires_at_ms
    if isinstance(state, WaitingToPoll):
        return min(state.next_poll_ms, state.grant.expires_at_ms)
    return None


# ------------------------------------------------------------------------------------------------ transitions


def _config(state: State) -> NewDeviceConfig:
    assert not isinstance(state, LoginSucceeded | LoginFailed), "require_legal refuses every event in a terminal state"
    return state.config


def _abort(
    config: NewDeviceConfig,
    reason: FailureReason | LocalReason | str,
    now_ms: int,
    tell: FailureReason | Message | None = None,
) -> Result:
    return abort(reason, created_rendezvous=config.created_rendezvous, now_ms=now_ms, tell=tell)


def _homeserver_error(config: NewDeviceConfig, now_ms: int) -> Result:
    return _abort(config, LocalReason.HOMESERVER_ERROR, now_ms, FailureReason.UNSUPPORTED_PROTOCOL)


def _discover(config: NewDeviceConfig, homeserver: str | None, base_url: str | None) -> Result:
    if homeserver is not None:
        server_name, base_url = oauth.resolve_homeserver(homeserver)
        if server_name is not None:
            request = oauth.well_known_request(server_name)
            awaiting = AwaitingWellKnown(config=config, server_name=server_name)
            return awaiting, (SendHttpRequest(request_id=_REQUEST_IDS[AwaitingWellKnown], request=request),)
    assert base_url is not None
    base_url = oauth.checked_base_url(base_url)
    config = replace(config, base_url=base_url)
    request = oauth.auth_metadata_request(base_url)
    return AwaitingAuthMetadata(config=config), (
        SendHttpRequest(request_id=_REQUEST_IDS[AwaitingAuthMetadata], request=request),
    )


def _on_protocols(config: NewDeviceConfig, plaintext: bytes, now_ms: int) -> Result:
    message = parse_or_none(plaintext)
    if not isinstance(message, Protocols):
        return unexpected(message, created_rendezvous=config.created_rendezvous, now_ms=now_ms)
    if DEVICE_AUTHORIZATION_GRANT not in message.protocols:
        return _abort(config, FailureReason.UNSUPPORTED_PROTOCOL, now_ms, FailureReason.UNSUPPORTED_PROTOCOL)
    try:
        if message.base_url is not None:
            return _discover(config, None, message.base_url)
        return _discover(config, message.homeserver, None)
    except oauth.OAuthError:
        return _homeserver_error(config, now_ms)


def _after_metadata(config: NewDeviceConfig, metadata: oauth.AuthMetadata) -> Result:
    if config.client_id is not None:
        return _authorize(config, metadata, config.client_id)
    assert config.client_metadata is not None
    client_metadata = loads_object(config.client_metadata, max_bytes=oauth.MAX_HTTP_BODY_BYTES)
    request = oauth.registration_request(metadata, client_metadata)
    awaiting = AwaitingRegistration(config=config, metadata=metadata)
    return awaiting, (SendHttpRequest(request_id=_REQUEST_IDS[AwaitingRegistration], request=request),)


def _authorize(config: NewDeviceConfig, metadata: oauth.AuthMetadata, client_id: str) -> Result:
    request = oauth.device_authorization_request(metadata, client_id, config.device_id)
    state = AwaitingDeviceAuthorization(config=config, metadata=metadata, client_id=client_id)
    return state, (SendHttpRequest(request_id=_REQUEST_IDS[AwaitingDeviceAuthorization], request=request),)


def _on_http(state: State, event: HttpResponseReceived | HttpRequestFailed, now_ms: int) -> Result:
    config = _config(state)
    if isinstance(state, AwaitingToken):
        return _on_token(state, event, now_ms)
    if isinstance(event, HttpRequestFailed):
        return _homeserver_error(config, now_ms)
    response = event.response
    try:
        if isinstance(state, AwaitingWellKnown):
            base_url = oauth.parse_well_known(state.server_name, response)
            return _discover(config, None, base_url)
        if isinstance(state, AwaitingAuthMetadata):
            return _after_metadata(config, oauth.parse_auth_metadata(response))
        if isinstance(state, AwaitingRegistration):
            return _authorize(config, state.metadata, oauth.parse_registration(response))
        assert isinstance(state, AwaitingDeviceAuthorization)
        authorization = oauth.parse_device_authorization(response)
    except RemoteProtocolError:
        return _homeserver_error(config, now_ms)
    grant = Grant(
        metadata=state.metadata,
        client_id=state.client_id,
        authorization=authorization,
        expires_at_ms=now_ms + authorization.expires_in_s * 1000,
    )
    message = Protocol(
        protocol=DEVICE_AUTHORIZATION_GRANT,
        device_id=config.device_id,
        device_authorization_grant=DeviceAuthorizationGrant(
            verification_uri=authorization.verification_uri,
            verification_uri_complete=authorization.verification_uri_complete,
        ),
    )
    return AwaitingProtocolAccepted(config=config, grant=grant), (SendMessage(message=message),)


def _schedule_poll(
    config: NewDeviceConfig, grant: Grant, interval_ms: int, now_ms: int, *, next_request_id: int
) -> Result:
    if now_ms + interval_ms >= grant.expires_at_ms:
        return _abort(config, FailureReason.AUTHORIZATION_EXPIRED, now_ms, FailureReason.AUTHORIZATION_EXPIRED)
    state = WaitingToPoll(
        config=config,
        grant=grant,
        interval_ms=interval_ms,
        next_poll_ms=now_ms + interval_ms,
        next_request_id=next_request_id,
    )
    return state, ()


def _on_token(state: AwaitingToken, event: HttpResponseReceived | HttpRequestFailed, now_ms: int) -> Result:
    config, grant, next_id = state.config, state.grant, state.request_id + 1
    if isinstance(event, HttpRequestFailed):
        # RFC 8628 §3.5: a client may retry after a transport error; keep the interval and the deadline.
        return _schedule_poll(config, grant, state.interval_ms, now_ms, next_request_id=next_id)
    try:
        outcome = oauth.parse_token_response(event.response)
    except RemoteProtocolError:
        return _homeserver_error(config, now_ms)
    if isinstance(outcome, oauth.TokenGranted):
        return AwaitingSecrets(config=config, tokens=outcome.tokens), (SendMessage(message=Success()),)
    if isinstance(outcome, oauth.TokenPending):
        return _schedule_poll(config, grant, state.interval_ms, now_ms, next_request_id=next_id)
    if isinstance(outcome, oauth.TokenSlowDown):
        slower_ms = state.interval_ms + oauth.SLOW_DOWN_INCREMENT_S * 1000
        return _schedule_poll(config, grant, slower_ms, now_ms, next_request_id=next_id)
    if isinstance(outcome, oauth.TokenDenied):
        return _abort(config, LocalReason.DECLINED, now_ms, Declined())
    return _abort(config, FailureReason.AUTHORIZATION_EXPIRED, now_ms, FailureReason.AUTHORIZATION_EXPIRED)


def _on_message(state: State, plaintext: bytes, now_ms: int) -> Result:
    config = _config(state)
    if isinstance(state, AwaitingChannel):
        if state.pending is None:
            return AwaitingChannel(config=config, pending=plaintext), ()
        # Only one message may precede the check-code confirmation; a second one is out of order, but the
        # channel is not trusted yet, so nothing is sent back.
        return _abort(config, FailureReason.UNEXPECTED_MESSAGE_RECEIVED, now_ms)
    if isinstance(state, AwaitingProtocols):
        return _on_protocols(config, plaintext, now_ms)
    message = parse_or_none(plaintext)
    if isinstance(state, AwaitingProtocolAccepted) and isinstance(message, ProtocolAccepted):
        interval_ms = state.grant.authorization.interval_s * 1000
        state_after, effects = _schedule_poll(
            config, state.grant, interval_ms, now_ms, next_request_id=_FIRST_TOKEN_POLL_ID
        )
        return state_after, (ShowUserCode(user_code=state.grant.authorization.user_code), *effects)
    if isinstance(state, AwaitingSecrets) and isinstance(message, Secrets):
        completed = ReportLoginSuccess(tokens=state.tokens, secrets=message)
        return finish(completed, created_rendezvous=config.created_rendezvous, now_ms=now_ms)
    return unexpected(message, created_rendezvous=config.created_rendezvous, now_ms=now_ms)


def _on_timer(state: State, now_ms: int) -> Result:
    if isinstance(state, AwaitingProtocolAccepted | WaitingToPoll) and now_ms >= state.grant.expires_at_ms:
        return _abort(state.config, FailureReason.AUTHORIZATION_EXPIRED, now_ms, FailureReason.AUTHORIZATION_EXPIRED)
    if isinstance(state, WaitingToPoll) and now_ms >= state.next_poll_ms:
        grant = state.grant
        request = oauth.token_request(grant.metadata, grant.client_id, grant.authorization.device_code)
        request_id = state.next_request_id
        new_state = AwaitingToken(
            config=state.config, grant=grant, interval_ms=state.interval_ms, request_id=request_id
        )
        return new_state, (SendHttpRequest(request_id=request_id, request=request),)
    return state, ()  # early or spurious: nothing changes


def transition(state: State, event: Event, *, now_ms: int) -> Result:
    """Advance the new device's machine by one event."""
    require_legal(LEGAL_MOVES, state, event)
    config: NewDeviceConfig = _config(state)
    ended = end_on_close_or_cancel(
        event,
        channel_secured=not isinstance(state, AwaitingChannel),
        created_rendezvous=config.created_rendezvous,
        now_ms=now_ms,
    )
    if ended is not None:
        return ended
    if isinstance(event, TimerFired):
        return _on_timer(state, now_ms)
    if isinstance(event, MessageReceived):
        return _on_message(state, event.plaintext, now_ms)
    if isinstance(event, HttpResponseReceived | HttpRequestFailed):
        if event.request_id != awaited_request_id(state):
            return state, ()  # an answer to an earlier request: stale
        return _on_http(state, event, now_ms)
    assert isinstance(event, ChannelSecured) and isinstance(state, AwaitingChannel)
    if config.role is QrSide.SCANS:
        if state.pending is not None:
            # The scanning new device speaks first: nothing may arrive before its m.login.protocol.
            return unexpected(parse_or_none(state.pending), created_rendezvous=False, now_ms=now_ms)
        try:
            return _discover(config, config.homeserver, config.base_url)
        except oauth.OAuthError:
            return _homeserver_error(config, now_ms)
    if state.pending is not None:
        return _on_protocols(config, state.pending, now_ms)
    return AwaitingProtocols(config=config), ()
