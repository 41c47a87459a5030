"""The new device's machine, step by step, with the exact effects of every path."""

from __future__ import annotations

import json
from typing import Any

import pytest

from qrlogin._secret import Secret
from qrlogin.errors import LocalProtocolError
from qrlogin.http import HttpResponse
from qrlogin.login import new_device as nd
from qrlogin.login import oauth
from qrlogin.login.events import (
    ChannelClosed,
    ChannelSecured,
    DeleteRendezvous,
    LocalReason,
    MessageReceived,
    ReportLoginFailure,
    ReportLoginSuccess,
    SendMessage,
)
from qrlogin.login.messages import (
    Declined,
    DeviceAuthorizationGrant,
    Failure,
    FailureReason,
    Protocol,
    ProtocolAccepted,
    Protocols,
    Success,
    serialize_message,
)
from qrlogin.vocabulary import (
    HttpRequestFailed,
    HttpResponseReceived,
    QrSide,
    SendHttpRequest,
    ShowUserCode,
    TimerFired,
    UserCancelled,
)
from tests.login._login_support import AWAITED, BASE_URL, CLIENT_ID, DEVICE_ID, SECRETS, SERVER_NAME, Homeserver, step

HS = Homeserver()
METADATA = oauth.parse_auth_metadata(HttpResponse(status=200, body=json.dumps(HS.metadata()).encode()))


def _json(status: int, body: Any) -> HttpResponseReceived:
    return HttpResponseReceived(
        request_id=AWAITED, response=HttpResponse(status=status, body=json.dumps(body).encode())
    )


DEVICE_AUTH = _json(
    200,
    {
        "device_code": "dc",
        "user_code": "123456",
        "verification_uri": "https://auth.example.org/link",
        "verification_uri_complete": "https://auth.example.org/link?code=123456",
        "expires_in": 60,
        "interval": 5,
    },
)
PROTOCOL = Protocol(
    protocol="device_authorization_grant",
    device_id=DEVICE_ID,
    device_authorization_grant=DeviceAuthorizationGrant(
        verification_uri="https://auth.example.org/link",
        verification_uri_complete="https://auth.example.org/link?code=123456",
    ),
)


def msg(message: Any) -> MessageReceived:
    return MessageReceived(plaintext=serialize_message(message))


def start(role: QrSide, **kwargs: Any) -> nd.State:
    config = nd.NewDeviceConfig(role=role, device_id=DEVICE_ID, client_id=kwargs.pop("client_id", CLIENT_ID), **kwargs)
    return nd.start(config)


def to_protocol_accepted(role: QrSide = QrSide.SCANS) -> nd.State:
    state = start(role, base_url=BASE_URL) if role is QrSide.SCANS else start(role)
    if role is QrSide.SCANS:
        state, _ = step(nd, state, ChannelSecured(), now_ms=0)
    else:
        state, _ = step(nd, state, ChannelSecured(), now_ms=0)
        state, _ = step(
            nd, state, msg(Protocols(protocols=("device_authorization_grant",), base_url=BASE_URL)), now_ms=0
        )
    state, _ = step(nd, state, _json(200, HS.metadata()), now_ms=0)
    state, effects = step(nd, state, DEVICE_AUTH, now_ms=1_000)
    assert effects == (SendMessage(message=PROTOCOL),)
    return state


def to_polling(role: QrSide = QrSide.SCANS) -> nd.State:
    state, effects = step(nd, to_protocol_accepted(role), msg(ProtocolAccepted()), now_ms=2_000)
    assert effects == (ShowUserCode(user_code="123456"),)
    assert isinstance(state, nd.WaitingToPoll) and state.next_poll_ms == 7_000
    return state


def test_auth_metadata_falls_back_to_the_unstable_path() -> None:
    """A 404 on the stable path: the same question on MSC2965's unstable path, under a request id of its own (a late
    answer to the first request is stale); a 404 there too is a homeserver without the API."""
    state, effects = step(nd, start(QrSide.SCANS, base_url=BASE_URL), ChannelSecured(), now_ms=0)
    assert effects == (SendHttpRequest(request_id=2, request=oauth.auth_metadata_request(BASE_URL)),)
    state, effects = step(nd, state, _json(404, {"errcode": "M_UNRECOGNIZED"}), now_ms=0)
    unstable = oauth.auth_metadata_request(BASE_URL, unstable=True)
    assert effects == (SendHttpRequest(request_id=5, request=unstable),)
    assert unstable.target == BASE_URL + "/_matrix/client/unstable/org.matrix.msc2965/auth_metadata"
    late = HttpResponseReceived(request_id=2, response=HttpResponse(status=404, body=b"{}"))
    assert nd.transition(state, late, now_ms=0) == (state, ())  # the first request's answer, late: stale
    _, effects = step(nd, state, _json(200, HS.metadata()), now_ms=0)
    assert effects == (
        SendHttpRequest(request_id=4, request=oauth.device_authorization_request(METADATA, CLIENT_ID, DEVICE_ID)),
    )
    _, effects = step(nd, state, _json(404, {"errcode": "M_UNRECOGNIZED"}), now_ms=0)
    _ends(effects, LocalReason.HOMESERVER_ERROR, tell=FailureReason.UNSUPPORTED_PROTOCOL)


def test_scanned_with_server_name_full_path() -> None:
    state = start(QrSide.SCANS, homeserver=SERVER_NAME)
    state, effects = step(nd, state, ChannelSecured(), now_ms=0)
    assert effects == (SendHttpRequest(request_id=1, request=oauth.well_known_request(SERVER_NAME)),)
    state, effects = step(nd, state, _json(200, {"m.homeserver": {"base_url": BASE_URL}}), now_ms=0)
    assert effects == (SendHttpRequest(request_id=2, request=oauth.auth_metadata_request(BASE_URL)),)
    state, effects = step(nd, state, _json(200, HS.metadata()), now_ms=0)
    assert effects == (
        SendHttpRequest(request_id=4, request=oauth.device_authorization_request(METADATA, CLIENT_ID, DEVICE_ID)),
    )
    state, effects = step(nd, state, DEVICE_AUTH, now_ms=1_000)
    assert effects == (SendMessage(message=PROTOCOL),)
    assert nd.deadline(state) == 61_000
    state, effects = step(nd, state, msg(ProtocolAccepted()), now_ms=2_000)
    assert effects == (ShowUserCode(user_code="123456"),) and nd.deadline(state) == 7_000
    # An early timer changes nothing.
    assert step(nd, state, TimerFired(), now_ms=6_999) == (state, ())
    state, effects = step(nd, state, TimerFired(), now_ms=7_000)
    assert effects == (SendHttpRequest(request_id=6, request=oauth.token_request(METADATA, CLIENT_ID, Secret(b"dc"))),)
    state, effects = step(nd, state, _json(400, {"error": "authorization_pending"}), now_ms=7_100)
    assert effects == () and nd.deadline(state) == 12_100
    state, _ = step(nd, state, TimerFired(), now_ms=12_100)
    state, effects = step(nd, state, _json(400, {"error": "slow_down"}), now_ms=12_200)
    assert effects == () and nd.deadline(state) == 22_200  # interval 5 s + 5 s
    state, _ = step(nd, state, TimerFired(), now_ms=22_200)
    state, effects = step(nd, state, _json(400, {"error": "authorization_pending"}), now_ms=22_300)
    assert nd.deadline(state) == 32_300  # the slowed interval stays
    state, _ = step(nd, state, TimerFired(), now_ms=32_300)
    state, effects = step(nd, state, _json(200, {"access_token": "at"}), now_ms=32_400)
    assert effects == (SendMessage(message=Success()),)
    state, effects = step(nd, state, msg(SECRETS), now_ms=33_000)
    assert isinstance(state, nd.LoginSucceeded)
    (completed,) = effects  # the scanner did not create the rendezvous: nothing to delete
    assert isinstance(completed, ReportLoginSuccess) and completed.secrets == SECRETS
    assert completed.tokens is not None and completed.tokens.access_token == Secret(b"at")


def test_generated_waits_for_protocols_and_deletes_its_rendezvous() -> None:
    state = start(QrSide.SHOWS)
    # m.login.protocols arrives before the user confirmed the check code: held, nothing happens.
    early = msg(Protocols(protocols=("device_authorization_grant",), homeserver=SERVER_NAME))
    state, effects = step(nd, state, early, now_ms=0)
    assert effects == () and isinstance(state, nd.AwaitingChannel)
    state, effects = step(nd, state, ChannelSecured(), now_ms=10)
    assert effects == (SendHttpRequest(request_id=1, request=oauth.well_known_request(SERVER_NAME)),)
    # Without a well-known, the server name is the base URL (server discovery's IGNORE).
    state, effects = step(nd, state, _json(404, {}), now_ms=10)
    assert effects == (SendHttpRequest(request_id=2, request=oauth.auth_metadata_request(f"https://{SERVER_NAME}")),)


def test_generated_without_early_message_awaits_protocols() -> None:
    state, effects = step(nd, start(QrSide.SHOWS), ChannelSecured(), now_ms=0)
    assert isinstance(state, nd.AwaitingProtocols) and effects == ()
    url_in_homeserver = msg(Protocols(protocols=("device_authorization_grant",), homeserver=BASE_URL + "/"))
    state, effects = step(nd, state, url_in_homeserver, now_ms=0)
    assert effects == (SendHttpRequest(request_id=2, request=oauth.auth_metadata_request(BASE_URL)),)


def test_dynamic_registration() -> None:
    config = nd.NewDeviceConfig(
        role=QrSide.SCANS, device_id=DEVICE_ID, client_metadata=b'{"client_name":"x"}', base_url=BASE_URL
    )
    state, _ = step(nd, nd.start(config), ChannelSecured(), now_ms=0)
    state, effects = step(nd, state, _json(200, HS.metadata()), now_ms=0)
    assert effects == (
        SendHttpRequest(request_id=3, request=oauth.registration_request(METADATA, {"client_name": "x"})),
    )
    state, effects = step(nd, state, _json(201, {"client_id": "dyn"}), now_ms=0)
    assert effects == (
        SendHttpRequest(request_id=4, request=oauth.device_authorization_request(METADATA, "dyn", DEVICE_ID)),
    )


def _ends(effects: tuple[Any, ...], reason: Any, *, tell: Any = None, delete_at: int | None = None) -> None:
    expected: list[Any] = []
    if tell is not None:
        expected.append(SendMessage(message=Failure(reason=tell) if isinstance(tell, FailureReason) else tell))
    if delete_at is not None:
        expected.append(DeleteRendezvous(not_before_ms=delete_at))
    expected.append(ReportLoginFailure(reason=reason))
    assert effects == tuple(expected)


def test_access_denied_sends_declined() -> None:
    state, _ = step(nd, to_polling(), TimerFired(), now_ms=7_000)
    state, effects = step(nd, state, _json(400, {"error": "access_denied"}), now_ms=7_100)
    assert isinstance(state, nd.LoginFailed)
    _ends(effects, LocalReason.DECLINED, tell=Declined())


def test_seed_authorization_declined_sends_declined_and_generator_deletes_after_grace() -> None:
    state, _ = step(nd, to_polling(QrSide.SHOWS), TimerFired(), now_ms=7_000)
    state, effects = step(nd, state, _json(400, {"error": "authorization_declined"}), now_ms=7_100)
    _ends(effects, LocalReason.DECLINED, tell=Declined(), delete_at=12_100)


def test_expired_token() -> None:
    state, _ = step(nd, to_polling(), TimerFired(), now_ms=7_000)
    state, effects = step(nd, state, _json(400, {"error": "expired_token"}), now_ms=7_100)
    r = FailureReason.AUTHORIZATION_EXPIRED
    _ends(effects, r, tell=r)


def test_expires_in_bounds_the_wait_for_acceptance_and_the_polling() -> None:
    r = FailureReason.AUTHORIZATION_EXPIRED
    state = to_protocol_accepted()
    assert step(nd, state, TimerFired(), now_ms=60_999) == (state, ())
    _, effects = step(nd, state, TimerFired(), now_ms=61_000)
    _ends(effects, r, tell=r)
    # Polling: a pending answer whose next poll would fall after expiry ends the grant.
    state, _ = step(nd, to_polling(), TimerFired(), now_ms=7_000)
    _, effects = step(nd, state, _json(400, {"error": "authorization_pending"}), now_ms=56_000)
    _ends(effects, r, tell=r)
    polling = to_polling()
    _, effects = step(nd, polling, TimerFired(), now_ms=61_000)
    _ends(effects, r, tell=r)


def test_transport_error_while_polling_backs_off() -> None:
    """RFC 8628 §3.5: each connection timeout doubles the interval (5 s here), up to the cap."""
    state, _ = step(nd, to_polling(), TimerFired(), now_ms=7_000)
    state, effects = step(nd, state, HttpRequestFailed(request_id=AWAITED), now_ms=7_100)
    assert effects == () and isinstance(state, nd.WaitingToPoll) and state.next_poll_ms == 17_100
    assert state.interval_ms == 10_000
    state, _ = step(nd, state, TimerFired(), now_ms=17_100)
    assert isinstance(state, nd.AwaitingToken)
    state, _ = step(nd, state, HttpRequestFailed(request_id=state.request_id), now_ms=17_200)
    assert isinstance(state, nd.WaitingToPoll) and state.interval_ms == 20_000 and state.next_poll_ms == 37_200


@pytest.mark.parametrize(
    "response",
    [
        _json(200, {**HS.metadata(), "grant_types_supported": ["authorization_code"]}),
        _json(404, {}),
        _json(200, {"not": "metadata"}),
        HttpRequestFailed(request_id=AWAITED),
    ],
)
def test_unusable_homeserver_sends_unsupported_protocol(response: Any) -> None:
    state, _ = step(nd, start(QrSide.SCANS, base_url=BASE_URL), ChannelSecured(), now_ms=0)
    state, effects = step(nd, state, response, now_ms=0)
    if isinstance(state, nd.AwaitingAuthMetadata):  # a 404 asks the unstable path too; the same answer there
        _, effects = step(nd, state, response, now_ms=0)
    _ends(effects, LocalReason.HOMESERVER_ERROR, tell=FailureReason.UNSUPPORTED_PROTOCOL)


def test_unknown_token_error_sends_unsupported_protocol() -> None:
    state, _ = step(nd, to_polling(), TimerFired(), now_ms=7_000)
    _, effects = step(nd, state, _json(400, {"error": "invalid_client"}), now_ms=7_100)
    _ends(effects, LocalReason.HOMESERVER_ERROR, tell=FailureReason.UNSUPPORTED_PROTOCOL)


def test_protocols_without_device_grant() -> None:
    state, _ = step(nd, start(QrSide.SHOWS), ChannelSecured(), now_ms=0)
    _, effects = step(nd, state, msg(Protocols(protocols=("other",), base_url=BASE_URL)), now_ms=0)
    r = FailureReason.UNSUPPORTED_PROTOCOL
    _ends(effects, r, tell=r, delete_at=5_000)


def test_bad_base_url_in_protocols() -> None:
    state, _ = step(nd, start(QrSide.SHOWS), ChannelSecured(), now_ms=0)
    _, effects = step(
        nd, state, msg(Protocols(protocols=("device_authorization_grant",), base_url="matrix.org")), now_ms=0
    )
    _ends(effects, LocalReason.HOMESERVER_ERROR, tell=FailureReason.UNSUPPORTED_PROTOCOL, delete_at=5_000)


def test_received_failure_ends_with_its_reason_and_sends_nothing() -> None:
    state = to_protocol_accepted(QrSide.SHOWS)
    state, effects = step(nd, state, msg(Failure(reason=FailureReason.DEVICE_ALREADY_EXISTS)), now_ms=3_000)
    assert state == nd.LoginFailed(reason=FailureReason.DEVICE_ALREADY_EXISTS, by_peer=True)
    assert effects == (
        DeleteRendezvous(not_before_ms=3_000),
        ReportLoginFailure(reason=FailureReason.DEVICE_ALREADY_EXISTS, by_peer=True),
    )


def test_unexpected_and_invalid_messages_are_answered() -> None:
    u = FailureReason.UNEXPECTED_MESSAGE_RECEIVED
    _, effects = step(nd, to_protocol_accepted(), msg(Success()), now_ms=0)
    _ends(effects, u, tell=u)
    _, effects = step(nd, to_protocol_accepted(), MessageReceived(plaintext=b"{not json"), now_ms=0)
    _ends(effects, LocalReason.INVALID_MESSAGE, tell=u)
    _, effects = step(nd, to_protocol_accepted(), MessageReceived(plaintext=b'{"type":"m.login.bogus"}'), now_ms=0)
    _ends(effects, u, tell=u)


def test_second_message_before_channel_secured_is_refused_silently() -> None:
    state = start(QrSide.SHOWS)
    state, _ = step(nd, state, msg(Success()), now_ms=0)
    _, effects = step(nd, state, msg(Success()), now_ms=0)
    _ends(effects, FailureReason.UNEXPECTED_MESSAGE_RECEIVED, delete_at=0)


def test_scanner_must_speak_first() -> None:
    state = start(QrSide.SCANS, base_url=BASE_URL)
    state, _ = step(nd, state, msg(Protocols(protocols=(), base_url=BASE_URL)), now_ms=0)
    _, effects = step(nd, state, ChannelSecured(), now_ms=0)
    u = FailureReason.UNEXPECTED_MESSAGE_RECEIVED
    _ends(effects, u, tell=u)


def test_user_cancel_and_channel_loss() -> None:
    c = FailureReason.USER_CANCELLED
    _, effects = step(nd, start(QrSide.SHOWS), UserCancelled(), now_ms=0)
    _ends(effects, c, delete_at=0)  # the channel is not trusted yet: nothing is sent
    _, effects = step(nd, to_polling(), UserCancelled(), now_ms=0)
    _ends(effects, c, tell=c)
    _, effects = step(nd, to_polling(QrSide.SHOWS), UserCancelled(), now_ms=100)
    _ends(effects, c, tell=c, delete_at=5_100)
    _, effects = step(nd, to_polling(), ChannelClosed(), now_ms=0)
    _ends(effects, LocalReason.CHANNEL_CLOSED)


def test_configuration_misuse() -> None:
    with pytest.raises(LocalProtocolError):
        nd.start(nd.NewDeviceConfig(role=QrSide.SHOWS, device_id=DEVICE_ID))
    with pytest.raises(LocalProtocolError):
        nd.start(nd.NewDeviceConfig(role=QrSide.SHOWS, device_id=DEVICE_ID, client_id="c", client_metadata=b"{}"))
    with pytest.raises(LocalProtocolError):
        nd.start(nd.NewDeviceConfig(role=QrSide.SHOWS, device_id=DEVICE_ID, client_metadata=b"[]"))
    with pytest.raises(LocalProtocolError):
        nd.start(nd.NewDeviceConfig(role=QrSide.SCANS, device_id=DEVICE_ID, client_id="c"))
    with pytest.raises(LocalProtocolError):
        nd.start(nd.NewDeviceConfig(role=QrSide.SHOWS, device_id="", client_id="c"))


def test_stray_http_response_is_caller_misuse() -> None:
    state = to_polling()
    with pytest.raises(LocalProtocolError):
        step(nd, state, _json(200, {}), now_ms=0)
