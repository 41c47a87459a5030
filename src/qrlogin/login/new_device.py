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

    well-known (server name only) -> auth_metadata [404: its unstable path] -> [registration] -> device authorization
        -> send m.login.protocol -> AwaitingProtocolAccepted
        -> show user code, poll the token endpoint every `interval` (+5 s on slow_down, doubled after a transport
           error as RFC 8628 §3.5 recommends, up to 60 s) until `expires_in`
        -> tokens: send m.login.success -> AwaitingSecrets -> m.login.secrets: ReportLoginSuccess

``access_denied``/``authorization_declined`` sends ``m.login.declined``; ``expired_token`` or passing
``expires_in`` sends ``m.login.failure`` ``authorization_expired``. A homeserver without the device grant (or
any unusable OAuth answer) sends ``unsupported_protocol``. Every message that does not fit the step is
answered with ``unexpected_message_received``; a received ``m.login.failure`` ends the machine with its
reason; a user cancel at any step sends ``user_cancelled``. Endings go through :mod:`qrlogin.login._common`.

``MACHINE`` is the transitions table: the runtime check, the diagram in ``docs/login.md`` and the exhaustive
(state, event) test derive from it. Messages, timers, a closed channel and a user cancel are legal in every live
state; an HTTP answer only where a request is outstanding (a stray one is caller misuse), and one that answers an
earlier request (its ``request_id`` is not :func:`awaited_request_id`) changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Final, TypeVar

from .._json import JsonError, loads_object
from .._machine import Machine, stay
from ..errors import LocalProtocolError, RemoteProtocolError
from ..vocabulary import (
    HttpRequestFailed,
    HttpResponseReceived,
    QrSide,
    SendHttpRequest,
    ShowUserCode,
    TimerFired,
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
    "MACHINE",
    "MAX_POLL_INTERVAL_MS",
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
    unstable: bool = False  # asking MSC2965's unstable path, after the stable one answered 404


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
    grant: Grant
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

Effects = tuple[Effect, ...]
Result = tuple[State, Effects]

# Every request the machine makes has an id of its own, so that an answer to an earlier one is recognised as stale.
# The discovery steps are made once each; token polls count up from the last of them.
_REQUEST_IDS: dict[type, int] = {
    AwaitingWellKnown: 1,
    AwaitingAuthMetadata: 2,
    AwaitingRegistration: 3,
    AwaitingDeviceAuthorization: 4,
}
_UNSTABLE_AUTH_METADATA_ID = 5
_FIRST_TOKEN_POLL_ID = 6

#: The longest the poll interval grows to by doubling after transport errors (a server's slow_down may go beyond).
MAX_POLL_INTERVAL_MS = 60_000


def awaited_request_id(state: State) -> int | None:
    """The id of the request whose answer ``state`` waits for, or ``None``."""
    if isinstance(state, AwaitingToken):
        return state.request_id
    if isinstance(state, AwaitingAuthMetadata) and state.unstable:
        return _UNSTABLE_AUTH_METADATA_ID
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


# ----------------------------------------------------------------------------------------------------- steps


def _abort(
    config: NewDeviceConfig,
    reason: FailureReason | LocalReason | str,
    now_ms: int,
    tell: FailureReason | Message | None = None,
) -> tuple[LoginFailed, Effects]:
    return abort(reason, created_rendezvous=config.created_rendezvous, now_ms=now_ms, tell=tell)


def _homeserver_error(config: NewDeviceConfig, now_ms: int) -> tuple[LoginFailed, Effects]:
    return _abort(config, LocalReason.HOMESERVER_ERROR, now_ms, FailureReason.UNSUPPORTED_PROTOCOL)


def _discover(
    config: NewDeviceConfig, homeserver: str | None, base_url: str | None
) -> tuple[AwaitingWellKnown | AwaitingAuthMetadata, Effects]:
    if homeserver is not None:
        server_name, base_url = oauth.resolve_homeserver(homeserver)
        if server_name is not None:
            request = oauth.well_known_request(server_name)
            awaiting = AwaitingWellKnown(config=config, server_name=server_name)
            return awaiting, (SendHttpRequest(request_id=_REQUEST_IDS[AwaitingWellKnown], request=request),)
    assert base_url is not None
    return _fetch_auth_metadata(config, base_url)


def _fetch_auth_metadata(config: NewDeviceConfig, base_url: str) -> tuple[AwaitingAuthMetadata, Effects]:
    base_url = oauth.checked_base_url(base_url)
    config = replace(config, base_url=base_url)
    request = oauth.auth_metadata_request(base_url)
    return AwaitingAuthMetadata(config=config), (
        SendHttpRequest(request_id=_REQUEST_IDS[AwaitingAuthMetadata], request=request),
    )


def _on_protocols(
    config: NewDeviceConfig, plaintext: bytes, now_ms: int
) -> tuple[AwaitingWellKnown | AwaitingAuthMetadata | LoginFailed, Effects]:
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


def _after_metadata(
    config: NewDeviceConfig, metadata: oauth.AuthMetadata
) -> tuple[AwaitingRegistration | AwaitingDeviceAuthorization, Effects]:
    if config.client_id is not None:
        return _authorize(config, metadata, config.client_id)
    assert config.client_metadata is not None
    client_metadata = loads_object(config.client_metadata, max_bytes=oauth.MAX_HTTP_BODY_BYTES)
    request = oauth.registration_request(metadata, client_metadata)
    awaiting = AwaitingRegistration(config=config, metadata=metadata)
    return awaiting, (SendHttpRequest(request_id=_REQUEST_IDS[AwaitingRegistration], request=request),)


def _authorize(
    config: NewDeviceConfig, metadata: oauth.AuthMetadata, client_id: str
) -> tuple[AwaitingDeviceAuthorization, Effects]:
    request = oauth.device_authorization_request(metadata, client_id, config.device_id)
    state = AwaitingDeviceAuthorization(config=config, metadata=metadata, client_id=client_id)
    return state, (SendHttpRequest(request_id=_REQUEST_IDS[AwaitingDeviceAuthorization], request=request),)


def _schedule_poll(
    config: NewDeviceConfig, grant: Grant, interval_ms: int, now_ms: int, *, next_request_id: int
) -> tuple[WaitingToPoll | LoginFailed, Effects]:
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


# ----------------------------------------------------------------------------------------------------- moves
#
# One handler per move, annotated with the states it can lead to: the diagram in docs/login.md is drawn from those
# annotations, and mypy holds each handler to its own. An HTTP answer whose request id is not the awaited one is
# stale and changes nothing; so does a timer in a state that set none.


def _hold(state: AwaitingChannel, event: MessageReceived, now_ms: int) -> tuple[AwaitingChannel | LoginFailed, Effects]:
    """A message before the channel is secured waits, unread, until :class:`ChannelSecured`."""
    if state.pending is None:
        return replace(state, pending=event.plaintext), ()
    # Only one message may precede the check-code confirmation; a second one is out of order, but the channel is
    # not trusted yet, so nothing is sent back.
    return _abort(state.config, FailureReason.UNEXPECTED_MESSAGE_RECEIVED, now_ms)


def _secured(
    state: AwaitingChannel, event: ChannelSecured, now_ms: int
) -> tuple[AwaitingProtocols | AwaitingWellKnown | AwaitingAuthMetadata | LoginFailed, Effects]:
    config = state.config
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


def _protocols_received(
    state: AwaitingProtocols, event: MessageReceived, now_ms: int
) -> tuple[AwaitingWellKnown | AwaitingAuthMetadata | LoginFailed, Effects]:
    return _on_protocols(state.config, event.plaintext, now_ms)


def _well_known_answered(
    state: AwaitingWellKnown, event: HttpResponseReceived, now_ms: int
) -> tuple[AwaitingWellKnown | AwaitingAuthMetadata | LoginFailed, Effects]:
    if event.request_id != awaited_request_id(state):
        return state, ()
    try:
        return _fetch_auth_metadata(state.config, oauth.parse_well_known(state.server_name, event.response))
    except RemoteProtocolError:
        return _homeserver_error(state.config, now_ms)


def _auth_metadata_answered(
    state: AwaitingAuthMetadata, event: HttpResponseReceived, now_ms: int
) -> tuple[AwaitingAuthMetadata | AwaitingRegistration | AwaitingDeviceAuthorization | LoginFailed, Effects]:
    if event.request_id != awaited_request_id(state):
        return state, ()
    config = state.config
    if event.response.status == 404 and not state.unstable and config.base_url is not None:
        # Not on the stable path: servers from before Matrix 1.15 serve it on MSC2965's unstable one.
        request = oauth.auth_metadata_request(config.base_url, unstable=True)
        return AwaitingAuthMetadata(config=config, unstable=True), (
            SendHttpRequest(request_id=_UNSTABLE_AUTH_METADATA_ID, request=request),
        )
    try:
        return _after_metadata(config, oauth.parse_auth_metadata(event.response))
    except RemoteProtocolError:
        return _homeserver_error(config, now_ms)


def _registration_answered(
    state: AwaitingRegistration, event: HttpResponseReceived, now_ms: int
) -> tuple[AwaitingRegistration | AwaitingDeviceAuthorization | LoginFailed, Effects]:
    if event.request_id != awaited_request_id(state):
        return state, ()
    try:
        return _authorize(state.config, state.metadata, oauth.parse_registration(event.response))
    except RemoteProtocolError:
        return _homeserver_error(state.config, now_ms)


def _device_authorization_answered(
    state: AwaitingDeviceAuthorization, event: HttpResponseReceived, now_ms: int
) -> tuple[AwaitingDeviceAuthorization | AwaitingProtocolAccepted | LoginFailed, Effects]:
    if event.request_id != awaited_request_id(state):
        return state, ()
    config = state.config
    try:
        authorization = oauth.parse_device_authorization(event.response)
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


_DiscoveryT = TypeVar(
    "_DiscoveryT", AwaitingWellKnown, AwaitingAuthMetadata, AwaitingRegistration, AwaitingDeviceAuthorization
)


def _discovery_lost(
    state: _DiscoveryT, event: HttpRequestFailed, now_ms: int
) -> tuple[_DiscoveryT | LoginFailed, Effects]:
    """No answer from the homeserver during discovery or registration: the login cannot go on."""
    if event.request_id != awaited_request_id(state):
        return state, ()
    return _homeserver_error(state.config, now_ms)


def _protocol_accepted(
    state: AwaitingProtocolAccepted, event: MessageReceived, now_ms: int
) -> tuple[WaitingToPoll | LoginFailed, Effects]:
    config = state.config
    message = parse_or_none(event.plaintext)
    if not isinstance(message, ProtocolAccepted):
        return unexpected(message, created_rendezvous=config.created_rendezvous, now_ms=now_ms)
    interval_ms = state.grant.authorization.interval_s * 1000
    polling, effects = _schedule_poll(config, state.grant, interval_ms, now_ms, next_request_id=_FIRST_TOKEN_POLL_ID)
    return polling, (ShowUserCode(user_code=state.grant.authorization.user_code), *effects)


def _grant_expiry(
    state: AwaitingProtocolAccepted, event: TimerFired, now_ms: int
) -> tuple[AwaitingProtocolAccepted | LoginFailed, Effects]:
    if now_ms < state.grant.expires_at_ms:
        return state, ()  # early
    return _abort(state.config, FailureReason.AUTHORIZATION_EXPIRED, now_ms, FailureReason.AUTHORIZATION_EXPIRED)


def _poll(
    state: WaitingToPoll, event: TimerFired, now_ms: int
) -> tuple[WaitingToPoll | AwaitingToken | LoginFailed, Effects]:
    grant = state.grant
    if now_ms >= grant.expires_at_ms:
        return _abort(state.config, FailureReason.AUTHORIZATION_EXPIRED, now_ms, FailureReason.AUTHORIZATION_EXPIRED)
    if now_ms < state.next_poll_ms:
        return state, ()  # early
    request = oauth.token_request(grant.metadata, grant.client_id, grant.authorization.device_code)
    request_id = state.next_request_id
    polling = AwaitingToken(config=state.config, grant=grant, interval_ms=state.interval_ms, request_id=request_id)
    return polling, (SendHttpRequest(request_id=request_id, request=request),)


def _token_answered(
    state: AwaitingToken, event: HttpResponseReceived, now_ms: int
) -> tuple[AwaitingToken | AwaitingSecrets | WaitingToPoll | LoginFailed, Effects]:
    if event.request_id != state.request_id:
        return state, ()
    config, grant, next_id = state.config, state.grant, state.request_id + 1
    try:
        outcome = oauth.parse_token_response(event.response)
    except RemoteProtocolError:
        return _homeserver_error(config, now_ms)
    if isinstance(outcome, oauth.TokenGranted):
        return AwaitingSecrets(config=config, grant=grant, tokens=outcome.tokens), (SendMessage(message=Success()),)
    if isinstance(outcome, oauth.TokenPending):
        return _schedule_poll(config, grant, state.interval_ms, now_ms, next_request_id=next_id)
    if isinstance(outcome, oauth.TokenSlowDown):
        slower_ms = state.interval_ms + oauth.SLOW_DOWN_INCREMENT_S * 1000
        return _schedule_poll(config, grant, slower_ms, now_ms, next_request_id=next_id)
    if isinstance(outcome, oauth.TokenDenied):
        return _abort(config, LocalReason.DECLINED, now_ms, Declined())
    return _abort(config, FailureReason.AUTHORIZATION_EXPIRED, now_ms, FailureReason.AUTHORIZATION_EXPIRED)


def _token_lost(
    state: AwaitingToken, event: HttpRequestFailed, now_ms: int
) -> tuple[AwaitingToken | WaitingToPoll | LoginFailed, Effects]:
    """RFC 8628 §3.5: after a transport error (a connection timeout) poll less often: the interval doubles, up to
    :data:`MAX_POLL_INTERVAL_MS`; the grant's deadline stays."""
    if event.request_id != state.request_id:
        return state, ()
    next_id = state.request_id + 1
    slower_ms = min(state.interval_ms * 2, max(state.interval_ms, MAX_POLL_INTERVAL_MS))
    return _schedule_poll(state.config, state.grant, slower_ms, now_ms, next_request_id=next_id)


def _secrets_received(
    state: AwaitingSecrets, event: MessageReceived, now_ms: int
) -> tuple[LoginSucceeded | LoginFailed, Effects]:
    config = state.config
    message = parse_or_none(event.plaintext)
    if not isinstance(message, Secrets):
        return unexpected(message, created_rendezvous=config.created_rendezvous, now_ms=now_ms)
    completed = ReportLoginSuccess(
        tokens=state.tokens,
        secrets=message,
        device_id=config.device_id,
        base_url=config.base_url,
        client_id=state.grant.client_id,
        token_endpoint=state.grant.metadata.token_endpoint,
    )
    return finish(completed, created_rendezvous=config.created_rendezvous, now_ms=now_ms)


_LIVE = (
    AwaitingChannel,
    AwaitingProtocols,
    AwaitingWellKnown,
    AwaitingAuthMetadata,
    AwaitingRegistration,
    AwaitingDeviceAuthorization,
    AwaitingProtocolAccepted,
    WaitingToPoll,
    AwaitingToken,
    AwaitingSecrets,
)
_EXPECTING_NO_MESSAGE = (
    AwaitingWellKnown,
    AwaitingAuthMetadata,
    AwaitingRegistration,
    AwaitingDeviceAuthorization,
    WaitingToPoll,
    AwaitingToken,
)

MACHINE: Final = Machine[State, Event, Effect](
    "new device",
    {
        **shared_moves(_LIVE, unsecured=AwaitingChannel, expecting_no_message=_EXPECTING_NO_MESSAGE),
        (AwaitingChannel, MessageReceived): _hold,
        (AwaitingChannel, ChannelSecured): _secured,
        (AwaitingChannel, TimerFired): stay,
        (AwaitingProtocols, MessageReceived): _protocols_received,
        (AwaitingProtocols, TimerFired): stay,
        (AwaitingWellKnown, HttpResponseReceived): _well_known_answered,
        (AwaitingWellKnown, HttpRequestFailed): _discovery_lost,
        (AwaitingWellKnown, TimerFired): stay,
        (AwaitingAuthMetadata, HttpResponseReceived): _auth_metadata_answered,
        (AwaitingAuthMetadata, HttpRequestFailed): _discovery_lost,
        (AwaitingAuthMetadata, TimerFired): stay,
        (AwaitingRegistration, HttpResponseReceived): _registration_answered,
        (AwaitingRegistration, HttpRequestFailed): _discovery_lost,
        (AwaitingRegistration, TimerFired): stay,
        (AwaitingDeviceAuthorization, HttpResponseReceived): _device_authorization_answered,
        (AwaitingDeviceAuthorization, HttpRequestFailed): _discovery_lost,
        (AwaitingDeviceAuthorization, TimerFired): stay,
        (AwaitingProtocolAccepted, MessageReceived): _protocol_accepted,
        (AwaitingProtocolAccepted, TimerFired): _grant_expiry,
        (WaitingToPoll, TimerFired): _poll,
        (AwaitingToken, HttpResponseReceived): _token_answered,
        (AwaitingToken, HttpRequestFailed): _token_lost,
        (AwaitingToken, TimerFired): stay,
        (AwaitingSecrets, MessageReceived): _secrets_received,
        (AwaitingSecrets, TimerFired): stay,
    },
    initial=(AwaitingChannel,),
)


def transition(state: State, event: Event, *, now_ms: int) -> Result:
    """Advance the new device's machine by one event: ``MACHINE``'s move for ``(state, event)``; a pair not in it
    raises :class:`LocalProtocolError` before anything changes."""
    return MACHINE.transition(state, event, now_ms)
