"""The RFC 8628 device authorization grant server (MSC4341; docs/protocol.md §7 steps 2 and 4)."""

from __future__ import annotations

from typing import Any

import pytest

from qrlogin.homeserver import ConsentResult, HttpRequest, approve_user_code, deny_user_code
from qrlogin.homeserver.oauth import DEVICE_CODE_GRANT, REFRESH_TOKEN_GRANT, pending_grant
from tests.homeserver.homeserver_support import BASE_URL, Server, device_scope, new_server

USER = "@alice:example.org"


def start_grant(server: Server, device_id: str = "NEWDEVICE1") -> tuple[str, dict[str, Any]]:
    client_id = server.register_client()
    response = server.authorize_device(client_id, device_scope(device_id))
    assert response.status == 200, response.json()
    assert response.header("cache-control") == "no-store"
    return client_id, response.json()


def approve(server: Server, user_code: str) -> ConsentResult:
    server.hs, result = approve_user_code(server.hs, user_code, USER, now_ms=server.now_ms)
    return result


def test_discovery() -> None:
    server = new_server()
    well_known = server.send(HttpRequest.get("/.well-known/matrix/client"))
    assert well_known.json() == {"m.homeserver": {"base_url": BASE_URL}}
    metadata = server.send(HttpRequest.get("/_matrix/client/v1/auth_metadata")).json()
    assert DEVICE_CODE_GRANT in metadata["grant_types_supported"]
    assert REFRESH_TOKEN_GRANT in metadata["grant_types_supported"]
    assert metadata["issuer"] == BASE_URL + "/"
    assert metadata["device_authorization_endpoint"] == BASE_URL + "/oauth2/device"
    assert metadata["token_endpoint"] == BASE_URL + "/oauth2/token"
    assert metadata["registration_endpoint"] == BASE_URL + "/oauth2/registration"


def test_client_registration_echoes_metadata() -> None:
    server = new_server()
    body = {"client_name": "TV", "client_uri": "https://tv.example", "grant_types": [DEVICE_CODE_GRANT]}
    response = server.send(HttpRequest.json("POST", "/oauth2/registration", body))
    assert response.status == 201
    content = response.json()
    assert content["client_name"] == "TV" and content["grant_types"] == [DEVICE_CODE_GRANT]
    assert content["token_endpoint_auth_method"] == "none"
    assert content["client_id"] != server.register_client()


@pytest.mark.parametrize(
    "body",
    [
        {"grant_types": [DEVICE_CODE_GRANT]},
        {"client_uri": "http://insecure.example"},
        {"client_uri": "https://c.example", "grant_types": ["password"]},
        {"client_uri": "https://c.example", "grant_types": []},
        {"client_uri": "https://c.example", "grant_types": "refresh_token"},
        {"client_uri": "https://c.example", "token_endpoint_auth_method": "client_secret_basic"},
        {"client_uri": "https://c.example", "grant_types": [DEVICE_CODE_GRANT], "client_name": 3},
    ],
)
def test_client_registration_rejects_bad_metadata(body: dict[str, Any]) -> None:
    response = new_server().send(HttpRequest.json("POST", "/oauth2/registration", body))
    assert response.status == 400
    assert response.json()["error"] == "invalid_client_metadata"
    assert "errcode" not in response.json()


def test_client_registration_rejects_non_json() -> None:
    response = new_server().send(HttpRequest(method="POST", target="/oauth2/registration", body=b"{"))
    assert (response.status, response.json()["error"]) == (400, "invalid_client_metadata")


def test_device_authorization_response() -> None:
    server = new_server()
    _, grant = start_grant(server)
    assert grant["verification_uri"] == BASE_URL + "/link"
    assert grant["verification_uri_complete"] == f"{BASE_URL}/link?user_code={grant['user_code']}"
    assert (grant["expires_in"], grant["interval"]) == (300, 5)
    user_code = grant["user_code"]
    assert len(user_code) == 9 and user_code[4] == "-"
    assert set(user_code.replace("-", "")) <= set("BCDFGHJKLMNPQRSTVWXZ")


@pytest.mark.parametrize(
    ("scope", "error"),
    [
        ("urn:matrix:client:device:ABC", "invalid_scope"),
        ("openid", "invalid_scope"),
        (device_scope("ABC") + " email", "invalid_scope"),
        (device_scope("ABC") + " urn:matrix:client:device:DEF", "invalid_scope"),
        (device_scope("A/B"), "invalid_scope"),
        (device_scope("ABC").replace(" ", "  "), "invalid_scope"),
    ],
)
def test_device_authorization_scope_errors(scope: str, error: str) -> None:
    server = new_server()
    response = server.authorize_device(server.register_client(), scope)
    assert (response.status, response.json()["error"]) == (400, error)


def test_device_authorization_client_errors() -> None:
    server = new_server()
    unknown = server.authorize_device("nobody", device_scope("ABC"))
    assert (unknown.status, unknown.json()["error"]) == (401, "invalid_client")
    refresh_only = server.register_client((REFRESH_TOKEN_GRANT,))
    unauthorized = server.authorize_device(refresh_only, device_scope("ABC"))
    assert (unauthorized.status, unauthorized.json()["error"]) == (400, "unauthorized_client")
    no_scope = server.send(HttpRequest.form("/oauth2/device", {"client_id": server.register_client()}))
    assert (no_scope.status, no_scope.json()["error"]) == (400, "invalid_request")
    as_json = server.send(HttpRequest.json("POST", "/oauth2/device", {"client_id": "x", "scope": "y"}))
    assert (as_json.status, as_json.json()["error"]) == (400, "invalid_request")
    repeated = HttpRequest(
        method="POST",
        target="/oauth2/device",
        headers=(("content-type", "application/x-www-form-urlencoded"),),
        body=b"client_id=a&client_id=b&scope=x",
    )
    assert server.send(repeated).json()["error"] == "invalid_request"


def test_pending_then_approved_then_tokens_create_the_device() -> None:
    server = new_server()
    token = server.register("alice")["access_token"]
    client_id, grant = start_grant(server, "NEWDEVICE1")
    pending = server.poll(client_id, grant["device_code"])
    assert (pending.status, pending.json()["error"]) == (400, "authorization_pending")
    assert server.device(token, "NEWDEVICE1").status == 404
    assert approve(server, grant["user_code"]) is ConsentResult.APPROVED
    assert server.device(token, "NEWDEVICE1").status == 404  # the device exists once the tokens are issued
    issued = server.poll(client_id, grant["device_code"], advance_ms=5000)
    assert issued.status == 200 and issued.header("cache-control") == "no-store"
    content = issued.json()
    assert content["token_type"] == "Bearer" and content["scope"] == device_scope("NEWDEVICE1")
    assert content["access_token"] != content["refresh_token"]
    assert server.whoami(content["access_token"]).json() == {"user_id": USER, "device_id": "NEWDEVICE1"}
    assert server.device(token, "NEWDEVICE1").status == 200
    reused = server.poll(client_id, grant["device_code"], advance_ms=5000)
    assert (reused.status, reused.json()["error"]) == (400, "invalid_grant")


def test_user_code_is_matched_case_and_dash_insensitively() -> None:
    server = new_server()
    server.register("alice")
    _, grant = start_grant(server)
    typed = grant["user_code"].replace("-", " ").lower()
    assert approve(server, typed) is ConsentResult.APPROVED
    assert approve(server, grant["user_code"]) is ConsentResult.ALREADY_DECIDED


def test_denied_grant_gives_access_denied() -> None:
    server = new_server()
    server.register("alice")
    client_id, grant = start_grant(server)
    server.hs, result = deny_user_code(server.hs, grant["user_code"], now_ms=server.now_ms)
    assert result is ConsentResult.DENIED
    denied = server.poll(client_id, grant["device_code"])
    assert (denied.status, denied.json()["error"]) == (400, "access_denied")
    assert approve(server, grant["user_code"]) is ConsentResult.ALREADY_DECIDED


def test_polling_faster_than_the_interval_slows_down_by_five_seconds() -> None:
    server = new_server()
    client_id, grant = start_grant(server)
    code = grant["device_code"]
    assert server.poll(client_id, code).json()["error"] == "authorization_pending"  # first poll: any time
    fast = server.poll(client_id, code, advance_ms=4999)
    assert fast.json()["error"] == "slow_down"
    # The interval is now 10 s, counted from the last poll.
    assert server.poll(client_id, code, advance_ms=9999).json()["error"] == "slow_down"
    assert server.poll(client_id, code, advance_ms=15_000).json()["error"] == "authorization_pending"
    assert server.poll(client_id, code, advance_ms=15_000).json()["error"] == "authorization_pending"


def test_expired_grant() -> None:
    server = new_server(grant_expires_in_s=60)
    server.register("alice")
    client_id, grant = start_grant(server)
    assert grant["expires_in"] == 60
    server.now_ms += 60_000
    assert approve(server, grant["user_code"]) is ConsentResult.EXPIRED
    expired = server.poll(client_id, grant["device_code"])
    assert (expired.status, expired.json()["error"]) == (400, "expired_token")


def test_approval_too_late_to_redeem_is_expired() -> None:
    server = new_server(grant_expires_in_s=60)
    server.register("alice")
    client_id, grant = start_grant(server)
    assert approve(server, grant["user_code"]) is ConsentResult.APPROVED
    assert server.poll(client_id, grant["device_code"], advance_ms=60_000).json()["error"] == "expired_token"


def test_consent_errors() -> None:
    server = new_server()
    server.register("alice")
    _, grant = start_grant(server)
    assert approve(server, "AAAA-AAAA") is ConsentResult.UNKNOWN_CODE  # A is not in the user code alphabet
    server.hs, result = approve_user_code(server.hs, grant["user_code"], "@nobody:example.org", now_ms=server.now_ms)
    assert result is ConsentResult.UNKNOWN_USER


def test_device_code_is_bound_to_its_client() -> None:
    server = new_server()
    _, grant = start_grant(server)
    other = server.register_client()
    response = server.poll(other, grant["device_code"])
    assert (response.status, response.json()["error"]) == (400, "invalid_grant")


def test_token_endpoint_errors() -> None:
    server = new_server()
    client_id = server.register_client()
    unknown_code = server.poll(client_id, "dc_nope")
    assert unknown_code.json()["error"] == "invalid_grant"
    unknown_client = server.poll("nobody", "dc_nope")
    assert (unknown_client.status, unknown_client.json()["error"]) == (401, "invalid_client")
    no_grant_type = server.send(HttpRequest.form("/oauth2/token", {"client_id": client_id}))
    assert no_grant_type.json()["error"] == "invalid_request"
    password = server.send(HttpRequest.form("/oauth2/token", {"grant_type": "password", "client_id": client_id}))
    assert password.json()["error"] == "unsupported_grant_type"
    no_code = server.send(HttpRequest.form("/oauth2/token", {"grant_type": DEVICE_CODE_GRANT, "client_id": client_id}))
    assert no_code.json()["error"] == "invalid_request"


def test_grant_for_an_existing_device_replaces_its_token() -> None:
    server = new_server()
    old = server.register("alice", device_id="REUSEDDEV1")
    client_id, grant = start_grant(server, "REUSEDDEV1")
    approve(server, grant["user_code"])
    new = server.poll(client_id, grant["device_code"]).json()
    assert server.whoami(old["access_token"]).status == 401
    assert server.whoami(new["access_token"]).json()["device_id"] == "REUSEDDEV1"


def test_refresh_token_rotation() -> None:
    server = new_server()
    server.register("alice")
    client_id, grant = start_grant(server, "REFRESHDEV")
    approve(server, grant["user_code"])
    first = server.poll(client_id, grant["device_code"]).json()
    form = {"grant_type": REFRESH_TOKEN_GRANT, "refresh_token": first["refresh_token"], "client_id": client_id}
    second = server.send(HttpRequest.form("/oauth2/token", form)).json()
    assert second["scope"] == device_scope("REFRESHDEV")
    assert server.whoami(first["access_token"]).status == 401
    assert server.whoami(second["access_token"]).json()["device_id"] == "REFRESHDEV"
    replay = server.send(HttpRequest.form("/oauth2/token", form))
    assert (replay.status, replay.json()["error"]) == (400, "invalid_grant")


def test_deleting_a_granted_device_revokes_its_refresh_token() -> None:
    server = new_server()
    token = server.register("alice")["access_token"]
    client_id, grant = start_grant(server, "DOOMEDDEV1")
    approve(server, grant["user_code"])
    issued = server.poll(client_id, grant["device_code"]).json()
    deleted = server.delete_device(token, "DOOMEDDEV1", {"auth": {"type": "m.login.password", "password": "secret"}})
    assert deleted.status == 200
    form = {"grant_type": REFRESH_TOKEN_GRANT, "refresh_token": issued["refresh_token"], "client_id": client_id}
    assert server.send(HttpRequest.form("/oauth2/token", form)).json()["error"] == "invalid_grant"


def test_pending_grant_shows_what_the_user_is_asked_to_approve() -> None:
    server = new_server()
    server.register("alice")
    client_id, grant = start_grant(server, "SHOWNDEV01")
    shown = pending_grant(server.hs.oauth, grant["user_code"].lower(), now_ms=server.now_ms)
    assert shown is not None and (shown.device_id, shown.client_id) == ("SHOWNDEV01", client_id)
    assert pending_grant(server.hs.oauth, "AAAA-AAAA", now_ms=server.now_ms) is None  # A is not in the alphabet
    assert pending_grant(server.hs.oauth, grant["user_code"], now_ms=server.now_ms + 300_000) is None
    approve(server, grant["user_code"])
    assert pending_grant(server.hs.oauth, grant["user_code"], now_ms=server.now_ms) is None


def test_refresh_without_a_refresh_token_is_invalid_request() -> None:
    server = new_server()
    client_id = server.register_client()
    form = {"grant_type": REFRESH_TOKEN_GRANT, "client_id": client_id}
    response = server.send(HttpRequest.form("/oauth2/token", form))
    assert (response.status, response.json()["error"]) == (400, "invalid_request")
