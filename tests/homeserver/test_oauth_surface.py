"""The OAuth 2.0 surface a Matrix client sees: metadata, registration, scopes, the authorization code grant with its
pages, token expiry, refresh, revocation and logout (Client-Server API "OAuth 2.0 API", RFC 6749, 7009, 7591, 7636,
8628, MSC2966, MSC2967)."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qrlogin.homeserver import ConsentResult, HttpRequest, approve_user_code
from qrlogin.homeserver.oauth import DEVICE_CODE_GRANT, REFRESH_TOKEN_GRANT
from tests.homeserver.homeserver_support import (
    BASE_URL,
    PASSWORD,
    WEB_CLIENT,
    Browser,
    Server,
    device_scope,
    hidden_fields,
    new_server,
    pkce_pair,
)

REDIRECT = "https://client.example/callback"
USER = "@alice:example.org"


def register(server: Server, body: dict[str, Any]) -> Any:
    return server.send(HttpRequest.json("POST", "/oauth2/registration", body))


def web_client(server: Server, **changes: Any) -> str:
    response = register(server, {**WEB_CLIENT, **changes})
    assert response.status == 201, response.json()
    client_id: str = response.json()["client_id"]
    return client_id


def token_request(server: Server, fields: dict[str, str]) -> Any:
    return server.send(HttpRequest.form("/oauth2/token", fields))


def device_tokens(server: Server, client_id: str, device_id: str = "GRANTED001") -> dict[str, Any]:
    grant = server.authorize_device(client_id, device_scope(device_id)).json()
    server.hs, result = approve_user_code(server.hs, grant["user_code"], USER, now_ms=server.now_ms)
    assert result is ConsentResult.APPROVED
    response = server.poll(client_id, grant["device_code"])
    assert response.status == 200, response.json()
    content: dict[str, Any] = response.json()
    return content


# -- metadata -----------------------------------------------------------------------------------------------------


def test_auth_metadata_has_every_field_the_matrix_spec_requires_on_both_paths() -> None:
    server = new_server()
    stable = server.send(HttpRequest.get("/_matrix/client/v1/auth_metadata"))
    unstable = server.send(HttpRequest.get("/_matrix/client/unstable/org.matrix.msc2965/auth_metadata"))
    assert stable.status == unstable.status == 200 and stable.body == unstable.body
    metadata = stable.json()
    assert metadata["issuer"] == BASE_URL + "/"
    for name, path in [
        ("authorization_endpoint", "/oauth2/authorize"),
        ("token_endpoint", "/oauth2/token"),
        ("registration_endpoint", "/oauth2/registration"),
        ("revocation_endpoint", "/oauth2/revoke"),
        ("device_authorization_endpoint", "/oauth2/device"),
    ]:
        assert metadata[name] == BASE_URL + path
    assert "code" in metadata["response_types_supported"]
    assert {"query", "fragment"} <= set(metadata["response_modes_supported"])
    assert {"authorization_code", "refresh_token", DEVICE_CODE_GRANT} <= set(metadata["grant_types_supported"])
    assert metadata["code_challenge_methods_supported"] == ["S256"]
    assert server.send(HttpRequest.json("POST", "/_matrix/client/v1/auth_metadata", {})).status == 405


# -- registration -------------------------------------------------------------------------------------------------

ACCEPTED = {
    "web client with localised names": {
        **WEB_CLIENT,
        "client_name#fr": "Client web",
        "client_name#zh-Hant-TW": "網頁",
        "client_uri#fr": "https://client.example/fr",
        "logo_uri": "https://static.client.example/logo.png",
        "tos_uri#de": "https://client.example/agb",
        "policy_uri": "https://client.example/privacy",
        "contacts": ["ops@client.example"],
    },
    "native with a private-use scheme": {
        "application_type": "native",
        "client_uri": "https://element.io/",
        "redirect_uris": ["io.element.app:/callback", "io.element:/"],
        "grant_types": ["authorization_code", "refresh_token"],
    },
    "native with a loopback redirect": {
        "application_type": "native",
        "client_uri": "https://cli.example/",
        "redirect_uris": ["http://127.0.0.1/callback", "http://[::1]:8080/", "http://localhost/cb"],
    },
    "device grant only": {"client_uri": "https://tv.example/", "grant_types": [DEVICE_CODE_GRANT, "refresh_token"]},
}


@pytest.mark.parametrize("body", ACCEPTED.values(), ids=ACCEPTED.keys())
def test_registration_accepts_what_real_clients_send(body: dict[str, Any]) -> None:
    response = register(new_server(), body)
    assert response.status == 201, response.json()
    content = response.json()
    assert content["client_id"] and content["token_endpoint_auth_method"] == "none"
    for key, value in body.items():
        if key not in {"contacts", "response_types"}:
            assert content[key] == value, key
    assert "contacts" not in content  # unknown metadata is ignored (RFC 7591 §2), not echoed


REFUSED = [
    ({**WEB_CLIENT, "redirect_uris": ["https://evil.example/callback"]}, "invalid_redirect_uri"),
    ({**WEB_CLIENT, "redirect_uris": ["http://client.example/callback"]}, "invalid_redirect_uri"),
    ({**WEB_CLIENT, "redirect_uris": ["https://client.example/cb#frag"]}, "invalid_redirect_uri"),
    ({**WEB_CLIENT, "redirect_uris": []}, "invalid_client_metadata"),
    ({**WEB_CLIENT, "redirect_uris": ["io.client.app:/cb"]}, "invalid_redirect_uri"),
    ({k: v for k, v in WEB_CLIENT.items() if k != "redirect_uris"}, "invalid_redirect_uri"),
    ({**WEB_CLIENT, "application_type": "native", "redirect_uris": ["com.evil.app:/cb"]}, "invalid_redirect_uri"),
    ({**WEB_CLIENT, "application_type": "native", "redirect_uris": ["example.client://cb"]}, "invalid_redirect_uri"),
    ({**WEB_CLIENT, "application_type": "native", "redirect_uris": ["example.client:cb"]}, "invalid_redirect_uri"),
    ({**WEB_CLIENT, "application_type": "native", "redirect_uris": ["http://192.0.2.1/cb"]}, "invalid_redirect_uri"),
    (
        {**WEB_CLIENT, "application_type": "native", "redirect_uris": ["https://client.example/cb"]},
        "invalid_redirect_uri",
    ),
    ({**WEB_CLIENT, "redirect_uris": ["https://client.example/cb\r\nSet-Cookie: x=y"]}, "invalid_redirect_uri"),
    ({**WEB_CLIENT, "redirect_uris": ["https://client.example/c b"]}, "invalid_redirect_uri"),
    ({**WEB_CLIENT, "redirect_uris": ["https://client.example/café"]}, "invalid_redirect_uri"),
    ({**WEB_CLIENT, "client_uri": "https://client.example/\t"}, "invalid_client_metadata"),
    ({**WEB_CLIENT, "application_type": "tv"}, "invalid_client_metadata"),
    ({**WEB_CLIENT, "client_uri": "https://user:pw@client.example/"}, "invalid_client_metadata"),
    ({**WEB_CLIENT, "logo_uri": "https://cdn.example/logo.png"}, "invalid_client_metadata"),
    ({**WEB_CLIENT, "tos_uri#fr": "http://client.example/tos"}, "invalid_client_metadata"),
    ({**WEB_CLIENT, "client_name#not a tag": "x"}, "invalid_client_metadata"),
    ({**WEB_CLIENT, "client_name#fr": 7}, "invalid_client_metadata"),
    ({**WEB_CLIENT, "response_types": ["token"]}, "invalid_client_metadata"),
    ({**WEB_CLIENT, "grant_types": ["implicit"]}, "invalid_client_metadata"),
    ({**WEB_CLIENT, "token_endpoint_auth_method": "client_secret_post"}, "invalid_client_metadata"),
    (
        {"client_uri": "https://tv.example/", "grant_types": [DEVICE_CODE_GRANT], "response_types": ["code"]},
        "invalid_client_metadata",
    ),
]


@pytest.mark.parametrize(("body", "error"), REFUSED)
def test_registration_refuses_metadata_the_spec_forbids(body: dict[str, Any], error: str) -> None:
    response = register(new_server(), body)
    assert (response.status, response.json()["error"]) == (400, error), response.json()
    assert "errcode" not in response.json()


# -- scopes -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "scope",
    [
        "openid urn:matrix:client:api:* urn:matrix:client:device:SCOPED0001",
        "urn:matrix:org.matrix.msc2967.client:api:* urn:matrix:org.matrix.msc2967.client:device:SCOPED0001",
        "openid urn:matrix:org.matrix.msc2967.client:api:* urn:matrix:client:device:SCOPED0001",
    ],
)
def test_device_grant_accepts_openid_and_the_unstable_scopes(scope: str) -> None:
    server = new_server()
    server.register("alice")
    client_id = web_client(server)
    grant = server.authorize_device(client_id, scope)
    assert grant.status == 200, grant.json()
    server.hs, _ = approve_user_code(server.hs, grant.json()["user_code"], USER, now_ms=server.now_ms)
    tokens = server.poll(client_id, grant.json()["device_code"]).json()
    assert tokens["scope"] == scope
    assert server.whoami(tokens["access_token"]).json()["device_id"] == "SCOPED0001"


def test_a_scope_without_a_device_gets_one_chosen_by_the_server() -> None:
    server = new_server()
    server.register("alice")
    client_id = web_client(server)
    grant = server.authorize_device(client_id, "openid urn:matrix:client:api:*").json()
    server.hs, _ = approve_user_code(server.hs, grant["user_code"], USER, now_ms=server.now_ms)
    tokens = server.poll(client_id, grant["device_code"]).json()
    device_id = server.whoami(tokens["access_token"]).json()["device_id"]
    assert tokens["scope"] == f"openid urn:matrix:client:api:* urn:matrix:client:device:{device_id}"


# -- expiry, refresh, revocation, logout --------------------------------------------------------------------------


def test_access_tokens_expire_with_a_soft_logout_and_refresh_rotates_both_tokens() -> None:
    server = new_server(access_token_lifetime_s=60)
    server.register("alice")
    client_id = web_client(server)
    first = device_tokens(server, client_id)
    assert first["expires_in"] == 60
    assert server.whoami(first["access_token"]).status == 200
    server.now_ms += 60_000
    expired = server.whoami(first["access_token"])
    assert (expired.status, expired.json()["errcode"], expired.json()["soft_logout"]) == (401, "M_UNKNOWN_TOKEN", True)
    refresh = {"grant_type": REFRESH_TOKEN_GRANT, "refresh_token": first["refresh_token"], "client_id": client_id}
    second = token_request(server, refresh)
    assert second.status == 200 and second.json()["expires_in"] == 60
    assert server.whoami(second.json()["access_token"]).json() == {"user_id": USER, "device_id": "GRANTED001"}
    gone = server.whoami(first["access_token"])
    assert (gone.status, gone.json()["soft_logout"]) == (401, False)
    assert token_request(server, refresh).json()["error"] == "invalid_grant"  # rotated: single use


def test_a_refresh_token_works_only_for_the_client_it_was_issued_to() -> None:
    server = new_server()
    server.register("alice")
    owner, other = web_client(server), web_client(server)
    tokens = device_tokens(server, owner)
    stolen = {"grant_type": REFRESH_TOKEN_GRANT, "refresh_token": tokens["refresh_token"], "client_id": other}
    assert token_request(server, stolen).json()["error"] == "invalid_grant"
    assert server.whoami(tokens["access_token"]).status == 200
    mine = token_request(server, {**stolen, "client_id": owner})
    assert mine.status == 200


@pytest.mark.parametrize("which", ["access_token", "refresh_token"])
def test_revoking_either_token_logs_the_device_out(which: str) -> None:
    server = new_server()
    main = server.register("alice")["access_token"]
    client_id = web_client(server)
    tokens = device_tokens(server, client_id)
    response = server.send(
        HttpRequest.form("/oauth2/revoke", {"token": tokens[which], "token_type_hint": which, "client_id": client_id})
    )
    assert (response.status, response.json()) == (200, {})
    assert server.whoami(tokens["access_token"]).status == 401
    refresh = {"grant_type": REFRESH_TOKEN_GRANT, "refresh_token": tokens["refresh_token"], "client_id": client_id}
    assert token_request(server, refresh).json()["error"] == "invalid_grant"
    assert server.device(main, "GRANTED001").status == 404
    again = server.send(HttpRequest.form("/oauth2/revoke", {"token": tokens[which], "client_id": client_id}))
    assert again.status == 200  # RFC 7009 §2.2: an invalid token is answered like a revoked one


def test_revocation_errors() -> None:
    server = new_server()
    server.register("alice")
    owner, other = web_client(server), web_client(server)
    tokens = device_tokens(server, owner)

    def revoke(fields: dict[str, str]) -> tuple[int, str]:
        response = server.send(HttpRequest.form("/oauth2/revoke", fields))
        return response.status, response.json()["error"]

    assert revoke({"token": tokens["access_token"], "client_id": other}) == (400, "unauthorized_client")
    assert revoke({"token": tokens["access_token"], "client_id": "nobody"}) == (401, "invalid_client")
    assert revoke({"client_id": owner}) == (400, "invalid_request")
    assert revoke({"token": "x", "client_id": owner, "token_type_hint": "id_token"}) == (400, "unsupported_token_type")
    assert server.whoami(tokens["access_token"]).status == 200
    assert server.send(HttpRequest.get("/oauth2/revoke")).status == 405


def test_logout_deletes_the_device_and_logout_all_every_device() -> None:
    server = new_server(access_token_lifetime_s=10)
    first = server.register("alice", device_id="FIRST")
    second = server.login("alice", device_id="SECOND").json()
    third = server.login("alice", device_id="THIRD").json()
    logout = server.send(HttpRequest.json("POST", "/_matrix/client/v3/logout", {}, access_token=first["access_token"]))
    assert (logout.status, logout.json()) == (200, {})
    assert server.whoami(first["access_token"]).status == 401
    devices = server.devices(second["access_token"]).json()["devices"]
    assert [d["device_id"] for d in devices] == ["SECOND", "THIRD"]
    everything = HttpRequest.json("POST", "/_matrix/client/v3/logout/all", {}, access_token=second["access_token"])
    assert server.send(everything).status == 200
    assert server.whoami(third["access_token"]).status == 401
    assert server.send(HttpRequest.get("/_matrix/client/v3/logout")).status == 405


def test_logout_works_with_an_expired_token() -> None:
    server = new_server(access_token_lifetime_s=10)
    server.register("alice")
    tokens = device_tokens(server, web_client(server))
    server.now_ms += 20_000
    request = HttpRequest.json("POST", "/_matrix/client/v3/logout", {}, access_token=tokens["access_token"])
    assert server.send(request).status == 200
    refresh = {"grant_type": REFRESH_TOKEN_GRANT, "refresh_token": tokens["refresh_token"]}
    assert token_request(server, {**refresh, "client_id": "x"}).json()["error"] in ("invalid_client", "invalid_grant")


# -- authorization code grant with its pages ----------------------------------------------------------------------


def authorize_query(client: str, challenge: str, **changes: str) -> str:
    params = {
        "response_type": "code",
        "response_mode": "query",
        "client_id": client,
        "redirect_uri": REDIRECT,
        "scope": "openid urn:matrix:client:api:* urn:matrix:client:device:BROWSER001",
        "state": "s-123",
        "code_challenge_method": "S256",
        "code_challenge": challenge,
        **changes,
    }
    return "/oauth2/authorize?" + urlencode({k: v for k, v in params.items() if v != ""})


def location_params(response: Any) -> dict[str, str]:
    location = response.header("location")
    assert response.status == 303 and location is not None
    parts = urlsplit(location)
    pairs = parse_qs(parts.fragment or parts.query)
    return {k: v[0] for k, v in pairs.items()}


def consent(server: Server, client: str, challenge: str, **changes: str) -> tuple[Browser, Any]:
    browser = Browser(server)
    browser.sign_in("alice")
    page = browser.get(authorize_query(client, challenge, **changes))
    return browser, page


def test_authorization_code_grant_end_to_end() -> None:
    server = new_server()
    server.register("alice")
    client_id = web_client(server)
    verifier, challenge = pkce_pair()
    browser = Browser(server)
    target = authorize_query(client_id, challenge)
    to_login = browser.get(target)
    assert to_login.status == 303 and to_login.header("location") == "/login?" + urlencode({"next": target})
    signed_in = browser.sign_in("alice", next_path=target)
    assert signed_in.header("location") == target
    page = browser.get(target)
    text = page.body.decode()
    assert page.status == 200 and page.header("content-type") == "text/html; charset=utf-8"
    assert "Web client" in text and "BROWSER001" in text and USER in text and "client.example" in text
    redirected = browser.post("/oauth2/authorize", {**hidden_fields(page), "action": "allow"})
    params = location_params(redirected)
    assert redirected.header(
        "location",
    ).startswith(REDIRECT + "?")  # type: ignore[union-attr]
    assert params["state"] == "s-123"
    exchange = {
        "grant_type": "authorization_code",
        "code": params["code"],
        "redirect_uri": REDIRECT,
        "client_id": client_id,
        "code_verifier": verifier,
    }
    tokens = token_request(server, exchange)
    assert tokens.status == 200, tokens.json()
    content = tokens.json()
    assert content["token_type"] == "Bearer" and content["expires_in"] == 300 and content["refresh_token"]
    assert server.whoami(content["access_token"]).json() == {"user_id": USER, "device_id": "BROWSER001"}
    assert token_request(server, exchange).json()["error"] == "invalid_grant"  # single use


@pytest.mark.parametrize(
    ("change", "value"),
    [("code_verifier", "w" * 43), ("code_verifier", "short"), ("redirect_uri", "https://client.example/other")],
)
def test_a_code_needs_the_right_verifier_and_redirect_uri_and_is_spent_by_a_wrong_try(change: str, value: str) -> None:
    server = new_server()
    server.register("alice")
    client_id = web_client(server)
    verifier, challenge = pkce_pair()
    browser, page = consent(server, client_id, challenge)
    code = location_params(browser.post("/oauth2/authorize", {**hidden_fields(page), "action": "allow"}))["code"]
    exchange = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": REDIRECT,
        "client_id": client_id,
        "code_verifier": verifier,
    }
    wrong = token_request(server, {**exchange, change: value})
    assert (wrong.status, wrong.json()["error"]) == (400, "invalid_grant")
    assert token_request(server, exchange).json()["error"] == "invalid_grant"


def test_codes_expire_and_are_bound_to_their_client() -> None:
    server = new_server()
    server.register("alice")
    client_id, other = web_client(server), web_client(server)
    verifier, challenge = pkce_pair()
    browser, page = consent(server, client_id, challenge)
    code = location_params(browser.post("/oauth2/authorize", {**hidden_fields(page), "action": "allow"}))["code"]
    exchange = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT, "code_verifier": verifier}
    assert token_request(server, {**exchange, "client_id": other}).json()["error"] == "invalid_grant"
    server.now_ms += 60_000
    assert token_request(server, {**exchange, "client_id": client_id}).json()["error"] == "invalid_grant"
    missing = token_request(server, {"grant_type": "authorization_code", "client_id": client_id, "code": code})
    assert missing.json()["error"] == "invalid_request"


def test_fragment_response_mode_and_deny() -> None:
    server = new_server()
    server.register("alice")
    client_id = web_client(server)
    _, challenge = pkce_pair()
    browser, page = consent(server, client_id, challenge, response_mode="fragment")
    allowed = browser.post("/oauth2/authorize", {**hidden_fields(page), "action": "allow"})
    assert "#code=" in (allowed.header("location") or "")
    page = browser.get(authorize_query(client_id, challenge))
    denied = location_params(browser.post("/oauth2/authorize", {**hidden_fields(page), "action": "deny"}))
    assert denied["error"] == "access_denied" and denied["state"] == "s-123" and "code" not in denied


def test_a_native_loopback_redirect_matches_any_port() -> None:
    server = new_server()
    server.register("alice")
    native = {
        "application_type": "native",
        "client_uri": "https://cli.example/",
        "redirect_uris": ["http://127.0.0.1/callback"],
    }
    client_id = register(server, native).json()["client_id"]
    _, challenge = pkce_pair()
    browser, page = consent(server, client_id, challenge, redirect_uri="http://127.0.0.1:53123/callback")
    assert page.status == 200
    allowed = browser.post("/oauth2/authorize", {**hidden_fields(page), "action": "allow"})
    assert (allowed.header("location") or "").startswith("http://127.0.0.1:53123/callback?code=")


@pytest.mark.parametrize(
    ("changes", "error"),
    [
        ({"response_type": "token"}, "unsupported_response_type"),
        ({"code_challenge_method": "plain"}, "invalid_request"),
        ({"code_challenge_method": ""}, "invalid_request"),
        ({"code_challenge": "too-short"}, "invalid_request"),
        ({"scope": "urn:matrix:client:device:X"}, "invalid_scope"),
        ({"response_mode": "form_post"}, "invalid_request"),
        ({"prompt": "none"}, "consent_required"),
    ],
)
def test_authorization_errors_go_back_to_a_verified_redirect_uri(changes: dict[str, str], error: str) -> None:
    server = new_server()
    server.register("alice")
    client_id = web_client(server)
    _, challenge = pkce_pair()
    _, response = consent(server, client_id, challenge, **changes)
    params = location_params(response)
    assert params["error"] == error and params["state"] == "s-123"
    assert (response.header("location") or "").startswith(REDIRECT)


@pytest.mark.parametrize(
    "changes", [{"client_id": "unknown"}, {"redirect_uri": "https://evil.example/callback"}, {"redirect_uri": ""}]
)
def test_an_unverified_client_or_redirect_uri_gets_an_error_page_not_a_redirect(changes: dict[str, str]) -> None:
    server = new_server()
    server.register("alice")
    client_id = web_client(server, redirect_uris=[REDIRECT, "https://client.example/second"])
    _, challenge = pkce_pair()
    _, response = consent(server, client_id, challenge, **changes)
    assert response.status == 400 and response.header("location") is None
    assert response.header("content-type") == "text/html; charset=utf-8"
    repeated = Browser(server).get(authorize_query(client_id, challenge) + "&state=again")
    assert repeated.status == 400 and repeated.header("location") is None
    crowded = Browser(server).get(authorize_query(client_id, challenge) + "".join(f"&x{i}=1" for i in range(40)))
    assert crowded.status == 400 and crowded.header("location") is None


def test_pages_escape_what_clients_registered() -> None:
    server = new_server()
    server.register("alice")
    client_id = web_client(server, client_name='<script>alert("x")</script>')
    _, challenge = pkce_pair()
    _, page = consent(server, client_id, challenge, state='"><img src=x>')
    text = page.body.decode()
    assert "<script>alert" not in text and "&lt;script&gt;" in text and "<img" not in text


def test_an_offered_loopback_redirect_with_a_line_break_is_not_matched() -> None:
    server = new_server()
    server.register("alice")
    native = {"application_type": "native", "client_uri": "https://cli.example/", "redirect_uris": ["http://[::1]/cb"]}
    client_id = register(server, native).json()["client_id"]
    _, challenge = pkce_pair()
    _, response = consent(server, client_id, challenge, redirect_uri="http://[::1]:4000/c\nb")
    assert response.status == 400 and response.header("location") is None


@pytest.mark.parametrize(
    "next_path", ["//evil.example/", "/\t/evil.example/", "/\\evil.example", "https://evil.example/"]
)
def test_sign_in_never_redirects_off_the_server(next_path: str) -> None:
    server = new_server()
    server.register("alice")
    assert Browser(server).sign_in("alice", next_path=next_path).header("location") == "/"


# -- cross-site request forgery -----------------------------------------------------------------------------------


def test_forged_consent_is_refused() -> None:
    server = new_server()
    server.register("alice")
    client_id = web_client(server)
    _, challenge = pkce_pair()
    browser, page = consent(server, client_id, challenge)
    fields = {**hidden_fields(page), "action": "allow"}
    assert browser.post("/oauth2/authorize", {**fields, "csrf": "csrf_guess"}).status == 403
    assert browser.post("/oauth2/authorize", {k: v for k, v in fields.items() if k != "csrf"}).status == 403
    browser.origin = "https://evil.example"
    assert browser.post("/oauth2/authorize", fields).status == 403
    browser.origin = None
    cross_site = HttpRequest(
        method="POST",
        target="/oauth2/authorize",
        headers=(
            ("content-type", "application/x-www-form-urlencoded"),
            ("cookie", f"qrlogin_session={browser.cookie}"),
            ("sec-fetch-site", "cross-site"),
        ),
        body=urlencode(fields).encode(),
    )
    assert server.send(cross_site).status == 403
    cookieless = Browser(server)
    assert cookieless.post("/oauth2/authorize", fields).status == 403
    assert not server.hs.oauth.codes  # none of them produced a code
    assert browser.post("/oauth2/authorize", fields).status == 303  # the genuine form still works


def test_signing_in_replaces_the_session_and_next_stays_on_this_server() -> None:
    server = new_server()
    server.register("alice")
    browser = Browser(server)
    form = browser.get("/login?next=//evil.example/")
    before = browser.cookie
    assert form.status == 200 and before is not None
    cookie = form.header("set-cookie") or ""
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" in cookie
    signed_in = browser.post("/login", {**hidden_fields(form), "username": "alice", "password": PASSWORD})
    assert signed_in.header("location") == "/" and browser.cookie not in (None, before)
    wrong = Browser(server)
    page = wrong.get("/login")
    refused = wrong.post("/login", {**hidden_fields(page), "username": "alice", "password": "nope"})
    assert refused.status == 403 and "Wrong username or password" in refused.body.decode()
    assert Browser(server, cookie=before).get("/link").status == 303  # the old value is not signed in


# -- the device grant's consent page ------------------------------------------------------------------------------


def test_device_consent_page_shows_the_code_client_and_device_and_approves() -> None:
    server = new_server()
    server.register("alice")
    client_id = web_client(server)
    grant = server.authorize_device(client_id, device_scope("LINKED0001")).json()
    browser = Browser(server)
    complete = urlsplit(grant["verification_uri_complete"])
    target = f"{complete.path}?{complete.query}"
    assert browser.get(target).status == 303
    browser.sign_in("alice")
    page = browser.get(target)
    text = page.body.decode()
    assert page.status == 200
    assert grant["user_code"] in text and "Web client" in text and "LINKED0001" in text
    done = browser.post("/link", {**hidden_fields(page), "action": "approve"})
    assert done.status == 200 and "approved" in done.body.decode()
    again = browser.post("/link", {**hidden_fields(page), "action": "approve"})
    assert again.status == 409
    tokens = server.poll(client_id, grant["device_code"])
    assert server.whoami(tokens.json()["access_token"]).json() == {"user_id": USER, "device_id": "LINKED0001"}


def test_device_consent_page_denies_and_refuses_forgeries_and_unknown_codes() -> None:
    server = new_server()
    server.register("alice")
    client_id = web_client(server)
    grant = server.authorize_device(client_id, device_scope("LINKED0002")).json()
    browser = Browser(server)
    browser.sign_in("alice")
    assert browser.get("/link").status == 200  # the form to type a code
    assert browser.get("/link?user_code=BBBB-BBBB").status == 404
    page = browser.get("/link?" + urlencode({"user_code": grant["user_code"].lower()}))
    fields = {**hidden_fields(page), "action": "approve"}
    assert browser.post("/link", {**fields, "csrf": "forged"}).status == 403
    assert server.poll(client_id, grant["device_code"]).json()["error"] == "authorization_pending"
    denied = browser.post("/link", {**fields, "action": "deny"})
    assert denied.status == 200
    assert server.poll(client_id, grant["device_code"], advance_ms=5000).json()["error"] == "access_denied"


# -- any input: the spec's error codes, never a server error ------------------------------------------------------

URI_VALUES = st.sampled_from(
    [
        "https://client.example/",
        "https://app.client.example/cb",
        "http://client.example/",
        "https://evil.example/cb",
        "io.client.app:/cb",
        "example.client.app://cb",
        "http://127.0.0.1:9/cb",
        "http://[::1",
        "https://client.example/#x",
        "not a uri",
        "",
    ]
)
METADATA_VALUES = URI_VALUES | st.lists(URI_VALUES, max_size=3) | st.integers() | st.none() | st.booleans()
METADATA_KEYS = st.sampled_from(
    [
        "client_uri",
        "redirect_uris",
        "application_type",
        "grant_types",
        "response_types",
        "token_endpoint_auth_method",
        "client_name",
        "client_name#fr",
        "logo_uri",
        "tos_uri#en-GB",
        "policy_uri",
        "contacts",
    ]
)


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(METADATA_KEYS, METADATA_VALUES, max_size=8),
    st.sampled_from([None, ["authorization_code"], [DEVICE_CODE_GRANT], ["authorization_code", "refresh_token"]]),
    st.sampled_from([None, "web", "native", "tv"]),
)
def test_registration_answers_any_metadata_with_201_or_the_spec_errors(
    body: dict[str, Any], grants: list[str] | None, application_type: str | None
) -> None:
    if grants is not None:
        body["grant_types"] = grants
    if application_type is not None:
        body["application_type"] = application_type
    response = register(new_server(), body)
    if response.status == 201:
        content = response.json()
        assert urlsplit(content["client_uri"]).scheme == "https"
        if "authorization_code" in content["grant_types"]:
            assert content["redirect_uris"]
    else:
        assert response.status == 400
        assert response.json()["error"] in ("invalid_client_metadata", "invalid_redirect_uri")


AUTHORIZE_KEYS = st.sampled_from(
    [
        "response_type",
        "client_id",
        "redirect_uri",
        "scope",
        "state",
        "code_challenge",
        "code_challenge_method",
        "response_mode",
        "prompt",
    ]
)
AUTHORIZE_VALUES = st.sampled_from(
    [
        "code",
        "token",
        REDIRECT,
        "https://evil.example/",
        "S256",
        "plain",
        "query",
        "fragment",
        "none",
        "x" * 43,
        "urn:matrix:client:api:*",
        "openid",
        "",
    ]
) | st.text(max_size=12)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(AUTHORIZE_KEYS, AUTHORIZE_VALUES), max_size=10), st.booleans())
def test_the_authorization_endpoint_answers_any_query_safely(pairs: list[tuple[str, str]], use_client: bool) -> None:
    server = new_server()
    server.register("alice")
    client_id = web_client(server)
    if use_client:
        pairs = [("client_id", client_id), *[(k, v) for k, v in pairs if k != "client_id"]]
    browser = Browser(server)
    browser.sign_in("alice")
    response = browser.get("/oauth2/authorize?" + urlencode(pairs))
    assert response.header("content-type") == "text/html; charset=utf-8"
    location = response.header("location")
    if response.status == 303:
        assert location is not None and location.startswith(REDIRECT)
        params = location_params(response)
        assert "code" not in params  # a code only ever comes from the consent form
        assert params["error"] in (
            "invalid_request",
            "unsupported_response_type",
            "unauthorized_client",
            "invalid_scope",
            "consent_required",
        )
    else:
        assert response.status in (200, 400) and location is None
        assert response.status == 400 or dict(pairs).get("redirect_uri", REDIRECT) == REDIRECT


def test_a_client_not_registered_for_refresh_gets_no_refresh_token() -> None:
    server = new_server()
    server.register("alice")
    client_id = server.register_client((DEVICE_CODE_GRANT,))
    grant = server.authorize_device(client_id, device_scope("NOREFRESH1")).json()
    server.hs, _ = approve_user_code(server.hs, grant["user_code"], USER, now_ms=server.now_ms)
    tokens = server.poll(client_id, grant["device_code"]).json()
    assert "refresh_token" not in tokens and tokens["expires_in"] == 300
    assert server.whoami(tokens["access_token"]).json()["device_id"] == "NOREFRESH1"
