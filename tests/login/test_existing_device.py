"""The existing device's machine, step by step, with the exact effects of every path."""

from __future__ import annotations

from typing import Any

import pytest

from qrlogin.errors import LocalProtocolError
from qrlogin.http import HttpResponse
from qrlogin.login import existing_device as ed
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
    OpenVerificationUri,
    QrSide,
    SendHttpRequest,
    TimerFired,
    UserCancelled,
    VerificationUriOpened,
    VerificationUriUnavailable,
)
from tests.login._login_support import AWAITED, BASE_URL, DEVICE_ID, SECRETS, SERVER_NAME, step

URI = "https://auth.example.org/link?code=123456"
PROTOCOL = Protocol(
    protocol="device_authorization_grant",
    device_id=DEVICE_ID,
    device_authorization_grant=DeviceAuthorizationGrant(
        verification_uri="https://auth.example.org/link", verification_uri_complete=URI
    ),
)


def get_device(request_id: int) -> SendHttpRequest:
    return SendHttpRequest(request_id=request_id, request=ed.device_request(BASE_URL, DEVICE_ID))


GET_DEVICE = get_device(1)  # the check that the id is free


def msg(message: Any) -> MessageReceived:
    return MessageReceived(plaintext=serialize_message(message))


def status(code: int) -> HttpResponseReceived:
    return HttpResponseReceived(request_id=AWAITED, response=HttpResponse(status=code, body=b"{}"))


def start(role: QrSide, **kwargs: Any) -> ed.State:
    return ed.start(ed.ExistingDeviceConfig(role=role, base_url=BASE_URL, secrets=SECRETS, **kwargs))


def to_uri(role: QrSide = QrSide.SCANS) -> ed.State:
    state, _ = step(ed, start(role), ChannelSecured(), now_ms=0)
    state, effects = step(ed, state, msg(PROTOCOL), now_ms=0)
    assert effects == (GET_DEVICE,)
    state, effects = step(ed, state, status(404), now_ms=0)
    assert effects == (OpenVerificationUri(uri=URI),)
    return state


def to_login_result(role: QrSide = QrSide.SCANS) -> ed.State:
    state, effects = step(ed, to_uri(role), VerificationUriOpened(), now_ms=0)
    assert effects == (SendMessage(message=ProtocolAccepted()),)
    return state


def _ends(
    effects: tuple[Any, ...], reason: Any, *, tell: Any = None, delete_at: int | None = None, by_peer: bool = False
) -> None:
    expected: list[Any] = []
    if tell is not None:
        expected.append(SendMessage(message=Failure(reason=tell) if isinstance(tell, FailureReason) else tell))
    if delete_at is not None:
        expected.append(DeleteRendezvous(not_before_ms=delete_at))
    expected.append(ReportLoginFailure(reason=reason, by_peer=by_peer))
    assert effects == tuple(expected)


def test_scanned_speaks_first_with_homeserver_or_base_url() -> None:
    _, effects = step(ed, start(QrSide.SCANS, server_name=SERVER_NAME), ChannelSecured(), now_ms=0)
    assert effects == (
        SendMessage(message=Protocols(protocols=("device_authorization_grant",), homeserver=SERVER_NAME)),
    )
    _, effects = step(ed, start(QrSide.SCANS), ChannelSecured(), now_ms=0)
    assert effects == (SendMessage(message=Protocols(protocols=("device_authorization_grant",), base_url=BASE_URL)),)


def test_a_homeserver_without_the_device_grant_offers_no_protocol() -> None:
    """The protocols come from the homeserver's auth metadata: none advertised means ``"protocols": []`` when this
    device speaks first, and any ``m.login.protocol`` refused as ``unsupported_protocol`` when the peer does."""
    state, effects = step(ed, start(QrSide.SCANS, protocols=()), ChannelSecured(), now_ms=0)
    assert effects == (SendMessage(message=Protocols(protocols=(), base_url=BASE_URL)),)
    _, effects = step(ed, state, msg(PROTOCOL), now_ms=0)
    unsupported = Failure(reason=FailureReason.UNSUPPORTED_PROTOCOL, homeserver=BASE_URL)
    _ends(effects, FailureReason.UNSUPPORTED_PROTOCOL, tell=unsupported)


def test_full_path_as_scanner() -> None:
    state = to_login_result()
    state, effects = step(ed, state, msg(Success()), now_ms=1_000)
    assert effects == (get_device(2),)  # the first check that the new device appeared
    state, effects = step(ed, state, status(200), now_ms=1_100)
    assert isinstance(state, ed.LoginSucceeded)
    assert effects == (SendMessage(message=SECRETS), ReportLoginSuccess(device_id=DEVICE_ID))


def test_generator_acts_only_after_the_check_code() -> None:
    state = start(QrSide.SHOWS)
    state, effects = step(ed, state, msg(PROTOCOL), now_ms=0)
    assert effects == () and isinstance(state, ed.AwaitingChannel)  # nothing done for an unconfirmed peer
    state, effects = step(ed, state, ChannelSecured(), now_ms=0)
    assert effects == (GET_DEVICE,)
    state, _ = step(ed, state, status(404), now_ms=0)
    state, _ = step(ed, state, VerificationUriOpened(), now_ms=0)
    state, _ = step(ed, state, msg(Success()), now_ms=0)
    state, effects = step(ed, state, status(200), now_ms=100)
    # The generator created the rendezvous; it deletes it once the peer had time to read the secrets.
    assert effects == (
        SendMessage(message=SECRETS),
        DeleteRendezvous(not_before_ms=5_100),
        ReportLoginSuccess(device_id=DEVICE_ID),
    )


def test_generator_without_early_message_awaits_protocol() -> None:
    state, effects = step(ed, start(QrSide.SHOWS), ChannelSecured(), now_ms=0)
    assert isinstance(state, ed.AwaitingProtocol) and effects == ()


def test_device_id_is_percent_encoded() -> None:
    request = ed.device_request(BASE_URL, "wjLp/sSRQ2+oAKk4")
    assert request.target == f"{BASE_URL}/_matrix/client/v3/devices/wjLp%2FsSRQ2%2BoAKk4" and request.authenticated


@pytest.mark.parametrize("event", [status(200), status(500), status(401), HttpRequestFailed(request_id=AWAITED)])
def test_device_must_be_absent_before_consent(event: Any) -> None:
    state, _ = step(ed, start(QrSide.SCANS), ChannelSecured(), now_ms=0)
    state, _ = step(ed, state, msg(PROTOCOL), now_ms=0)
    _, effects = step(ed, state, event, now_ms=0)
    r = FailureReason.DEVICE_ALREADY_EXISTS
    _ends(effects, r, tell=r)


def test_verification_uri_outcomes() -> None:
    r = FailureReason.UNABLE_TO_OPEN_VERIFICATION_URI
    _, effects = step(ed, to_uri(), VerificationUriUnavailable(), now_ms=0)
    _ends(effects, r, tell=r)
    c = FailureReason.USER_CANCELLED
    _, effects = step(ed, to_uri(QrSide.SHOWS), UserCancelled(), now_ms=0)
    _ends(effects, c, tell=c, delete_at=5_000)


@pytest.mark.parametrize("uri", ["http://auth.example.org/link", "javascript:alert(1)", "https:///nohost"])
def test_untrusted_uri_schemes_are_not_opened(uri: str) -> None:
    protocol = Protocol(
        protocol="device_authorization_grant",
        device_id=DEVICE_ID,
        device_authorization_grant=DeviceAuthorizationGrant(verification_uri=uri),
    )
    state, _ = step(ed, start(QrSide.SCANS), ChannelSecured(), now_ms=0)
    state, _ = step(ed, state, msg(protocol), now_ms=0)
    _, effects = step(ed, state, status(404), now_ms=0)
    r = FailureReason.UNABLE_TO_OPEN_VERIFICATION_URI
    _ends(effects, r, tell=r)


def test_http_verification_uri_when_allowed() -> None:
    protocol = Protocol(
        protocol="device_authorization_grant",
        device_id=DEVICE_ID,
        device_authorization_grant=DeviceAuthorizationGrant(verification_uri="http://localhost:8080/link"),
    )
    state, _ = step(ed, start(QrSide.SCANS, allow_http_verification_uri=True), ChannelSecured(), now_ms=0)
    state, _ = step(ed, state, msg(protocol), now_ms=0)
    _, effects = step(ed, state, status(404), now_ms=0)
    assert effects == (OpenVerificationUri(uri="http://localhost:8080/link"),)


def test_device_appears_after_retries_within_ten_seconds() -> None:
    state, _ = step(ed, to_login_result(), msg(Success()), now_ms=1_000)
    now = 1_000
    for check in range(19):  # 404s at 1.0 s, 1.5 s, ... 10.0 s
        state, effects = step(ed, state, status(404), now_ms=now)
        assert effects == () and ed.deadline(state) == now + 500
        assert step(ed, state, TimerFired(), now_ms=now + 499) == (state, ())
        now += 500
        state, effects = step(ed, state, TimerFired(), now_ms=now)
        assert effects == (get_device(3 + check),)  # each check has an id of its own
    state, effects = step(ed, state, status(200), now_ms=now)
    assert effects == (SendMessage(message=SECRETS), ReportLoginSuccess(device_id=DEVICE_ID))


def test_device_not_found_after_ten_seconds_of_virtual_time() -> None:
    state, _ = step(ed, to_login_result(), msg(Success()), now_ms=1_000)
    now = 1_000
    checks = 0
    while True:
        checks += 1
        state, effects = step(
            ed, state, status(404) if checks % 2 else HttpRequestFailed(request_id=AWAITED), now_ms=now
        )
        if effects:
            break
        now = ed.deadline(state) or 0
        state, _ = step(ed, state, TimerFired(), now_ms=now)
    assert now == 11_000 and checks == 21
    r = FailureReason.DEVICE_NOT_FOUND
    _ends(effects, r, tell=r)
    assert not any(isinstance(e, SendMessage) and e.message == SECRETS for e in effects)


def test_declined_and_failure_from_the_new_device() -> None:
    state, effects = step(ed, to_login_result(QrSide.SHOWS), msg(Declined()), now_ms=10)
    assert state == ed.LoginFailed(reason=LocalReason.DECLINED, by_peer=True)
    _ends(effects, LocalReason.DECLINED, delete_at=10, by_peer=True)
    r = FailureReason.AUTHORIZATION_EXPIRED
    _, effects = step(ed, to_login_result(), msg(Failure(reason=r)), now_ms=10)
    _ends(effects, r, by_peer=True)


@pytest.mark.parametrize(
    "protocol",
    [
        Protocol(protocol="something_else", device_id=DEVICE_ID),
        Protocol(
            protocol="device_authorization_grant",
            device_id="",
            device_authorization_grant=DeviceAuthorizationGrant(verification_uri=URI),
        ),
    ],
)
def test_unsupported_protocol_names_the_homeserver(protocol: Protocol) -> None:
    state, _ = step(ed, start(QrSide.SCANS, server_name=SERVER_NAME), ChannelSecured(), now_ms=0)
    _, effects = step(ed, state, msg(protocol), now_ms=0)
    r = FailureReason.UNSUPPORTED_PROTOCOL
    _ends(effects, r, tell=Failure(reason=r, homeserver=SERVER_NAME))


def test_unexpected_messages() -> None:
    u = FailureReason.UNEXPECTED_MESSAGE_RECEIVED
    _, effects = step(ed, to_login_result(), msg(PROTOCOL), now_ms=0)
    _ends(effects, u, tell=u)
    _, effects = step(ed, to_uri(), msg(Success()), now_ms=0)  # success before protocol_accepted was sent
    _ends(effects, u, tell=u)
    state, _ = step(ed, start(QrSide.SCANS), ChannelSecured(), now_ms=0)
    _, effects = step(ed, state, MessageReceived(plaintext=b'{"type":"m.login.protocol"}'), now_ms=0)
    _ends(effects, LocalReason.INVALID_MESSAGE, tell=u)


def test_user_cancel_and_channel_loss() -> None:
    c = FailureReason.USER_CANCELLED
    _, effects = step(ed, start(QrSide.SCANS), UserCancelled(), now_ms=0)
    _ends(effects, c)
    _, effects = step(ed, to_login_result(), UserCancelled(), now_ms=0)
    _ends(effects, c, tell=c)
    _, effects = step(ed, to_login_result(QrSide.SHOWS), ChannelClosed(), now_ms=7)
    _ends(effects, LocalReason.CHANNEL_CLOSED, delete_at=7)


def test_configuration_misuse_and_stray_events() -> None:
    with pytest.raises(LocalProtocolError):
        ed.start(ed.ExistingDeviceConfig(role=QrSide.SCANS, base_url="matrix.org", secrets=SECRETS))
    with pytest.raises(LocalProtocolError):
        ed.start(
            ed.ExistingDeviceConfig(role=QrSide.SCANS, base_url=BASE_URL, secrets=SECRETS, device_check_interval_ms=0)
        )
    with pytest.raises(LocalProtocolError):
        step(ed, to_login_result(), VerificationUriOpened(), now_ms=0)


def test_secrets_never_show_in_state_repr() -> None:
    state = to_login_result()
    shown = repr(state)
    assert "rTtSv67X" not in shown and "redacted" in shown
