"""URLs that ``urllib.parse.urlsplit`` refuses, fed to every entry point that reads a URL from the network.

``urlsplit`` raises ValueError for a bracketed host that is not an IP literal (``https://[evil``), for a host that
changes under NFKC normalisation into one holding ``/?#@:``, and its ``port`` for a port that is not a number from
0 to 65535. Each layer must turn such a URL into its own typed failure: a QR decode error, an OAuth error, a failed
login or rendezvous state, a 400 from the homeserver model, and ``LocalProtocolError`` where the caller passed it.
"""

from __future__ import annotations

import json
from dataclasses import replace
from urllib.parse import urlsplit

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from qrlogin import Secret, qr
from qrlogin.channel import hpke as hpke_channel
from qrlogin.device import ReportOutcome, State, scan, transition
from qrlogin.errors import LocalProtocolError
from qrlogin.homeserver import HttpRequest as ServerRequest
from qrlogin.homeserver import handle, new_homeserver
from qrlogin.http import HttpResponse, split_url
from qrlogin.login import existing_device, new_device, oauth
from qrlogin.login.events import ChannelSecured, LocalReason, MessageReceived, ReportLoginFailure, SendMessage
from qrlogin.login.messages import (
    DEVICE_AUTHORIZATION_GRANT,
    CrossSigningKeys,
    DeviceAuthorizationGrant,
    Failure,
    FailureReason,
    Protocol,
    Protocols,
    Secrets,
    parse_message,
    serialize_message,
)
from qrlogin.rendezvous import ApiGeneration
from qrlogin.rendezvous import client as rc
from qrlogin.vocabulary import DeviceRole, HttpResponseReceived, QrSide, SendHttpRequest
from tests.device.test_device import _config, _qr_from

KNOWN = [
    "https://[evil",
    "http://[::1",
    "https://[evil]/",
    "//[evil",
    "https://a:²",
    "https://a:99999",
    "https://a:-1",
    "https://a:x/",
    "https://evil\uff0fx",  # a fullwidth solidus becomes "/" under NFKC
    "https://a\uff1a1",  # a fullwidth colon becomes ":"
    "https://\u2100",  # "a/c" in one character
]

UNPARSEABLE = st.sampled_from(KNOWN) | st.builds(
    "".join,
    st.tuples(
        st.sampled_from(["https://", "http://", "HTTPS://", "//"]),
        st.sampled_from(["[", "[evil", "[::1", "a:²", "a:99999", "a:٣", "x\uff03", "x\uff20y"]),
        st.sampled_from(["", "/", "/path?q=1", "#f", ":443"]),
    ),
)


#: Not URLs, and not server names either: ``https://{name}/.well-known/matrix/client`` would not parse, or would name
#: another host or path.
SERVER_NAMES = ["[evil", "[::1", "a:²", "a:99999", "x\uff0fy", "a/b", "a?b", "a#b", "user@host", "", " ", "a b"]


def _unparseable(url: str) -> bool:
    try:
        _ = urlsplit(url).port
    except ValueError:
        return True
    return False


def test_the_known_inputs_do_make_urlsplit_raise() -> None:
    assert all(_unparseable(url) for url in KNOWN)


# ------------------------------------------------------------------------------------------------ the helper


@settings(max_examples=300)
@given(UNPARSEABLE)
def test_split_url_is_none_where_urlsplit_raises(url: str) -> None:
    assert _unparseable(url)
    assert split_url(url) is None


@settings(max_examples=300)
@given(st.text(max_size=40) | st.builds("{}{}".format, st.sampled_from(["https://", "http://", "//"]), st.text()))
@example("https://matrix.example.org:8448/x?y#z")
@example("https://[::1]:8448/")
def test_split_url_never_raises_and_agrees_with_urlsplit_otherwise(url: str) -> None:
    parts = split_url(url)
    assert (parts is None) == _unparseable(url)
    if parts is not None:
        assert parts == urlsplit(url)


# ---------------------------------------------------------------------------------------------------- QR codes


def _v3_payload(base_url: str) -> bytes:
    """A v3 QR code whose base URL field holds ``base_url`` (any string, encoded with its u16 length)."""
    placeholder = "https://placeholder.example"
    code = qr.QrCode(
        generation=qr.Generation.V3,
        intent=DeviceRole.EXISTING,
        public_key=bytes(32),
        rendezvous_id="abc",
        base_url=placeholder,
        id_length_layout=qr.IdLengthLayout.U8,
    )
    field = len(placeholder).to_bytes(2, "big") + placeholder.encode()
    encoded = base_url.encode()
    payload = qr.encode(code)
    assert payload.endswith(field)
    return payload[: -len(field)] + len(encoded).to_bytes(2, "big") + encoded


@settings(max_examples=100)
@given(UNPARSEABLE)
def test_a_qr_code_with_an_unparseable_url_is_a_decode_error(url: str) -> None:
    with pytest.raises(qr.QrInvalidUrlError):
        qr.decode(_v3_payload(url), allow_http=True)


# ------------------------------------------------------------------------------------------------ login: OAuth


def _json(status: int, body: object) -> HttpResponse:
    return HttpResponse(status=status, headers=(("content-type", "application/json"),), body=json.dumps(body).encode())


METADATA = {
    "issuer": "https://auth.example.org/",
    "token_endpoint": "https://auth.example.org/token",
    "device_authorization_endpoint": "https://auth.example.org/device",
    "registration_endpoint": "https://auth.example.org/register",
    "grant_types_supported": [oauth.DEVICE_CODE_GRANT],
}


@settings(max_examples=100)
@given(
    UNPARSEABLE, st.sampled_from(["issuer", "token_endpoint", "device_authorization_endpoint", "registration_endpoint"])
)
def test_oauth_parsers_refuse_unparseable_urls_with_oauth_errors(url: str, field: str) -> None:
    if url.startswith(("https://", "http://")):  # anything else is taken for a server name
        with pytest.raises(oauth.OAuthError):
            oauth.resolve_homeserver(url)
    with pytest.raises(oauth.OAuthError):
        oauth.checked_base_url(url)
    with pytest.raises(oauth.OAuthError):
        oauth.parse_well_known("example.org", _json(200, {"m.homeserver": {"base_url": url}}))
    with pytest.raises(oauth.OAuthError):
        oauth.parse_auth_metadata(_json(200, {**METADATA, field: url}))
    authorization = {"device_code": "d", "user_code": "u", "verification_uri": url, "expires_in": 60}
    with pytest.raises(oauth.OAuthError):
        oauth.parse_device_authorization(_json(200, authorization))
    authorization["verification_uri"] = "https://auth.example.org/link"
    with pytest.raises(oauth.OAuthError):
        oauth.parse_device_authorization(_json(200, {**authorization, "verification_uri_complete": url}))


@pytest.mark.parametrize(
    "name", ["matrix.org", "example.org:8448", "localhost", "1.2.3.4:80", "[::1]", "[2001:db8::1]:8448"]
)
def test_server_names_of_the_spec_grammar_are_taken_as_server_names(name: str) -> None:
    assert oauth.resolve_homeserver(name) == (name, None)
    assert oauth.well_known_request(name).target == f"https://{name}/.well-known/matrix/client"


@pytest.mark.parametrize("name", SERVER_NAMES)
def test_anything_else_is_neither_a_url_nor_a_server_name(name: str) -> None:
    with pytest.raises(oauth.OAuthError):
        oauth.resolve_homeserver(name)


# --------------------------------------------------------------------------------------- login: the machines


def _new_device(role: QrSide = QrSide.SHOWS, base_url: str | None = None) -> new_device.AwaitingChannel:
    config = new_device.NewDeviceConfig(role=role, device_id="NEWDEVICE", client_id="client", base_url=base_url)
    return new_device.start(config)


def _assert_homeserver_error(state: object, effects: tuple[object, ...]) -> None:
    assert isinstance(state, new_device.LoginFailed) and state.reason is LocalReason.HOMESERVER_ERROR
    sent = [e.message for e in effects if isinstance(e, SendMessage)]
    assert sent == [Failure(reason=FailureReason.UNSUPPORTED_PROTOCOL)]
    assert isinstance(effects[-1], ReportLoginFailure)


@settings(max_examples=100)
@given(UNPARSEABLE | st.sampled_from(SERVER_NAMES), st.sampled_from(["homeserver", "base_url"]))
@example("[evil", "homeserver")
@example("matrix.org@evil.example", "homeserver")
def test_protocols_naming_an_unparseable_homeserver_end_the_new_device_with_a_homeserver_error(
    url: str, field: str
) -> None:
    message = Protocols(protocols=(DEVICE_AUTHORIZATION_GRANT,), **{field: url})
    plaintext = serialize_message(message)
    assert parse_message(plaintext) == message  # the message layer keeps the string as sent
    state = new_device.AwaitingProtocols(config=_new_device().config)
    _assert_homeserver_error(*new_device.transition(state, MessageReceived(plaintext=plaintext), now_ms=0))


@settings(max_examples=50)
@given(UNPARSEABLE)
def test_a_scanned_code_naming_an_unparseable_base_url_ends_the_new_device(url: str) -> None:
    state = _new_device(QrSide.SCANS, base_url=url)
    _assert_homeserver_error(*new_device.transition(state, ChannelSecured(), now_ms=0))


@settings(max_examples=100)
@given(UNPARSEABLE)
def test_unparseable_urls_in_homeserver_answers_end_the_new_device(url: str) -> None:
    config = _new_device().config
    metadata = oauth.AuthMetadata(
        issuer="https://auth.example.org/",
        token_endpoint="https://auth.example.org/token",
        device_authorization_endpoint="https://auth.example.org/device",
        registration_endpoint="https://auth.example.org/register",
    )
    well_known = new_device.AwaitingWellKnown(config=config, server_name="example.org")
    authorizing = new_device.AwaitingDeviceAuthorization(config=config, metadata=metadata, client_id="client")
    authorization = {"device_code": "d", "user_code": "u", "verification_uri": url, "expires_in": 60}
    cases: list[tuple[new_device.State, HttpResponse]] = [
        (well_known, _json(200, {"m.homeserver": {"base_url": url}})),
        (replace(well_known, server_name="[evil"), HttpResponse(status=404)),  # falls back to https://[evil
        (new_device.AwaitingAuthMetadata(config=config), _json(200, {**METADATA, "registration_endpoint": url})),
        (authorizing, _json(200, authorization)),
    ]
    for state, response in cases:
        answer = HttpResponseReceived(request_id=new_device.awaited_request_id(state) or 0, response=response)
        _assert_homeserver_error(*new_device.transition(state, answer, now_ms=0))


@settings(max_examples=100)
@given(UNPARSEABLE, st.booleans())
def test_an_unparseable_verification_uri_is_not_opened_by_the_existing_device(url: str, complete: bool) -> None:
    keys = CrossSigningKeys(
        master_key=Secret(bytes(32)), self_signing_key=Secret(bytes(32)), user_signing_key=Secret(bytes(32))
    )
    config = existing_device.ExistingDeviceConfig(
        role=QrSide.SHOWS,
        base_url="https://matrix.example.org",
        secrets=Secrets(cross_signing=keys),
        allow_http_verification_uri=True,
    )
    grant = (
        DeviceAuthorizationGrant(verification_uri="https://auth.example.org/link", verification_uri_complete=url)
        if complete
        else DeviceAuthorizationGrant(verification_uri=url)
    )
    protocol = Protocol(protocol=DEVICE_AUTHORIZATION_GRANT, device_id="NEWDEVICE", device_authorization_grant=grant)
    state: existing_device.State = existing_device.AwaitingProtocol(config=config)
    state, _ = existing_device.transition(state, MessageReceived(plaintext=serialize_message(protocol)), now_ms=0)
    assert isinstance(state, existing_device.AwaitingDeviceAbsent)
    state, effects = existing_device.transition(
        state,
        HttpResponseReceived(
            request_id=existing_device.awaited_request_id(state) or 0, response=_json(404, {"errcode": "M_NOT_FOUND"})
        ),
        now_ms=0,
    )
    reason = FailureReason.UNABLE_TO_OPEN_VERIFICATION_URI
    assert isinstance(state, existing_device.LoginFailed) and state.reason is reason
    assert [e.message for e in effects if isinstance(e, SendMessage)] == [Failure(reason=reason)]


# -------------------------------------------------------------------------------------------------- rendezvous


@settings(max_examples=100)
@given(UNPARSEABLE)
@example("//[evil")
def test_a_v1_session_url_that_does_not_parse_fails_the_creator(url: str) -> None:
    config = rc.ClientConfig(generation=ApiGeneration.V1, endpoint="https://hs.example/rendezvous")
    state, _ = rc.create_session(config, "", now_ms=0)
    response = HttpResponse(status=201, headers=(("etag", '"1"'),), body=json.dumps({"url": url}).encode())
    failed, effects = rc.transition(state, HttpResponseReceived(request_id=1, response=response), now_ms=0)
    assert isinstance(failed, rc.SessionFailed) and failed.reason == "malformed_response"
    assert effects == (rc.ReportSessionFailure(reason="malformed_response", detail=failed.detail),)


@settings(max_examples=50)
@given(UNPARSEABLE)
def test_an_unparseable_endpoint_or_session_url_from_the_caller_is_misuse(url: str) -> None:
    with pytest.raises(LocalProtocolError):
        rc.ClientConfig(generation=ApiGeneration.V3, endpoint=url)
    config = rc.ClientConfig(generation=ApiGeneration.V1, endpoint="https://hs.example/rendezvous")
    with pytest.raises(LocalProtocolError):
        rc.join_session(config, url, now_ms=0)


# ----------------------------------------------------------------------------------------- device discovery


def _v2_lookup(server_name: str | None = None) -> tuple[State, SendHttpRequest]:
    code = qr.decode(_qr_from(DeviceRole.EXISTING, qr.Generation.V2))
    if server_name is not None:
        code = replace(code, server_name=server_name)
    device, (lookup,) = scan(_config(DeviceRole.NEW, qr.Generation.V2), qr.encode(code), now_ms=0)
    assert isinstance(lookup, SendHttpRequest)
    return device, lookup


def _assert_device_failed(effects: tuple[object, ...]) -> None:
    finished = [e for e in effects if isinstance(e, ReportOutcome)]
    assert len(finished) == 1 and isinstance(finished[0].result, ReportLoginFailure)


@settings(max_examples=50)
@given(UNPARSEABLE)
def test_device_discovery_with_an_unparseable_base_url_fails_the_device(url: str) -> None:
    device, lookup = _v2_lookup()
    answer = HttpResponseReceived(
        request_id=lookup.request_id, response=_json(200, {"m.homeserver": {"base_url": url}})
    )
    _, effects = transition(device, answer, now_ms=1)
    _assert_device_failed(effects)


def test_device_discovery_falling_back_to_an_unparseable_server_name_fails_the_device() -> None:
    device, lookup = _v2_lookup("[evil")
    assert lookup.request.target == "https://[evil/.well-known/matrix/client"
    answer = HttpResponseReceived(request_id=lookup.request_id, response=HttpResponse(status=404))
    _, effects = transition(device, answer, now_ms=1)
    _assert_device_failed(effects)


# ----------------------------------------------------------------------------------------------- homeserver


@settings(max_examples=50)
@given(UNPARSEABLE)
def test_the_homeserver_model_refuses_an_unparseable_client_uri(url: str) -> None:
    hs = new_homeserver(server_name="example.org", base_url="https://example.org", seed=b"u")
    request = ServerRequest.json("POST", "/oauth2/registration", {"client_uri": url})
    _, response = handle(hs, request, now_ms=0)
    assert response.status == 400 and response.json()["error"] == "invalid_client_metadata"


# ------------------------------------------------------------------------------------------ channel (caller)


@pytest.mark.parametrize("url", KNOWN)
def test_an_unparseable_base_url_from_the_caller_is_misuse_for_the_hpke_channel(url: str) -> None:
    with pytest.raises(LocalProtocolError):
        hpke_channel.start_showing(bytes(range(1, 33)), base_url=url, rendezvous_id="r", response_nonce=bytes(32))
    with pytest.raises(LocalProtocolError):
        hpke_channel.start_scanning(
            bytes(range(1, 33)), peer_public_key=bytes(range(2, 34)), base_url=url, rendezvous_id="r"
        )
