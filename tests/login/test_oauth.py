"""The new device's OAuth 2.0 device-grant steps: request builders and response parsers."""

from __future__ import annotations

import contextlib
import json
from typing import Any
from urllib.parse import parse_qs

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qrlogin._secret import Secret
from qrlogin.errors import RemoteProtocolError
from qrlogin.http import HttpResponse
from qrlogin.login import oauth


def _resp(status: int, body: Any) -> HttpResponse:
    return HttpResponse(status=status, body=json.dumps(body).encode())


METADATA = {
    "issuer": "https://auth.example.org/",
    "token_endpoint": "https://auth.example.org/token",
    "device_authorization_endpoint": "https://auth.example.org/device",
    "registration_endpoint": "https://auth.example.org/register",
    "grant_types_supported": ["authorization_code", oauth.DEVICE_CODE_GRANT],
}


def test_discovery_requests() -> None:
    request = oauth.well_known_request("example.org")
    assert (request.method, request.target) == ("GET", "https://example.org/.well-known/matrix/client")
    request = oauth.auth_metadata_request("https://matrix.example.org/")
    assert request.target == "https://matrix.example.org/_matrix/client/v1/auth_metadata"


def test_well_known() -> None:
    body = {"m.homeserver": {"base_url": "https://matrix.example.org/"}}
    assert oauth.parse_well_known("example.org", _resp(200, body)) == "https://matrix.example.org"
    assert oauth.parse_well_known("example.org", _resp(404, {})) == "https://example.org"
    for bad in (_resp(500, {}), _resp(200, {}), _resp(200, {"m.homeserver": {"base_url": "ftp://x"}})):
        with pytest.raises(oauth.OAuthError):
            oauth.parse_well_known("example.org", bad)


def test_resolve_homeserver_takes_a_url_as_base_url() -> None:
    assert oauth.resolve_homeserver("matrix.org") == ("matrix.org", None)
    # matrix-rust-sdk sends a URL in "homeserver" (fixture protocols-msc4108).
    assert oauth.resolve_homeserver("https://matrix-client.matrix.org/") == (None, "https://matrix-client.matrix.org")


def test_auth_metadata() -> None:
    parsed = oauth.parse_auth_metadata(_resp(200, METADATA))
    assert parsed.device_authorization_endpoint == "https://auth.example.org/device"
    assert parsed.registration_endpoint == "https://auth.example.org/register"
    without_grant = {**METADATA, "grant_types_supported": ["authorization_code"]}
    for bad in (_resp(404, {}), _resp(200, without_grant), _resp(200, {**METADATA, "token_endpoint": 3})):
        with pytest.raises(oauth.OAuthError):
            oauth.parse_auth_metadata(bad)


def test_registration() -> None:
    metadata = oauth.parse_auth_metadata(_resp(200, METADATA))
    request = oauth.registration_request(metadata, {"client_name": "x", "grant_types": ["refresh_token"]})
    body = json.loads(request.body)
    assert body["grant_types"] == ["refresh_token", oauth.DEVICE_CODE_GRANT]
    assert oauth.parse_registration(_resp(201, {"client_id": "abc"})) == "abc"
    with pytest.raises(oauth.OAuthError):
        oauth.parse_registration(_resp(400, {"error": "invalid_client_metadata"}))
    no_registration = oauth.parse_auth_metadata(_resp(200, {**METADATA, "registration_endpoint": None}))
    with pytest.raises(oauth.OAuthError):
        oauth.registration_request(no_registration, {})


def test_device_authorization_request_scope() -> None:
    metadata = oauth.parse_auth_metadata(_resp(200, METADATA))
    request = oauth.device_authorization_request(metadata, "my_client_id", "ABCDEFGH")
    assert request.method == "POST" and request.target == "https://auth.example.org/device"
    assert ("content-type", "application/x-www-form-urlencoded") in request.headers
    assert parse_qs(request.body.decode()) == {
        "client_id": ["my_client_id"],
        "scope": ["urn:matrix:client:api:* urn:matrix:client:device:ABCDEFGH"],
    }
    # Spaces are %20 as in the MSC's example, not "+".
    assert b"%20" in request.body and b"+" not in request.body


def test_device_authorization_response() -> None:
    body = {
        "device_code": "GmRhmhcxhwAzkoEqiMEg_DnyEysNkuNhszIySk9eS",
        "user_code": "123456",
        "verification_uri": "https://auth-oidc.lab.element.dev/link",
        "verification_uri_complete": "https://auth-oidc.lab.element.dev/link?code=123456",
        "expires_in": 1800,
        "interval": 5,
    }
    parsed = oauth.parse_device_authorization(_resp(200, body))
    assert parsed.expires_in_s == 1800 and parsed.interval_s == 5 and parsed.user_code == "123456"
    assert "GmRhmh" not in repr(parsed)
    del body["interval"], body["verification_uri_complete"]
    parsed = oauth.parse_device_authorization(_resp(200, body))
    assert parsed.interval_s == oauth.DEFAULT_INTERVAL_S and parsed.verification_uri_complete is None
    for key, value in (("expires_in", 0), ("expires_in", True), ("interval", "5"), ("device_code", "")):
        with pytest.raises(oauth.OAuthError):
            oauth.parse_device_authorization(_resp(200, {**body, key: value}))


def test_token_request() -> None:
    metadata = oauth.parse_auth_metadata(_resp(200, METADATA))
    request = oauth.token_request(metadata, "my_client_id", Secret(b"XYZ"))
    assert parse_qs(request.body.decode()) == {
        "grant_type": [oauth.DEVICE_CODE_GRANT],
        "device_code": ["XYZ"],
        "client_id": ["my_client_id"],
    }


@pytest.mark.parametrize(
    ("error", "outcome"),
    [
        ("authorization_pending", oauth.TokenPending()),
        ("slow_down", oauth.TokenSlowDown()),
        ("access_denied", oauth.TokenDenied()),
        ("authorization_declined", oauth.TokenDenied()),
        ("expired_token", oauth.TokenExpired()),
    ],
)
def test_token_errors(error: str, outcome: oauth.TokenOutcome) -> None:
    assert oauth.parse_token_response(_resp(400, {"error": error})) == outcome


def test_token_granted_and_unknown_errors() -> None:
    granted = oauth.parse_token_response(_resp(200, {"access_token": "at", "refresh_token": "rt", "expires_in": 60}))
    assert isinstance(granted, oauth.TokenGranted)
    assert granted.tokens.access_token == Secret(b"at") and granted.tokens.expires_in_s == 60
    assert "'at'" not in repr(granted)
    for bad in (_resp(400, {"error": "invalid_grant"}), _resp(500, {}), _resp(200, {"token_type": "Bearer"})):
        with pytest.raises(oauth.OAuthError):
            oauth.parse_token_response(bad)


@settings(max_examples=200)
@given(st.integers(100, 599), st.binary(max_size=200))
def test_parsers_raise_only_remote_protocol_errors(status: int, body: bytes) -> None:
    response = HttpResponse(status=status, body=body)
    for parse in (
        lambda r: oauth.parse_well_known("example.org", r),
        oauth.parse_auth_metadata,
        oauth.parse_registration,
        oauth.parse_device_authorization,
        oauth.parse_token_response,
    ):
        with contextlib.suppress(RemoteProtocolError):
            parse(response)
