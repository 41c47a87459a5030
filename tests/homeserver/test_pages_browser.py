"""The sign-in, consent and device approval pages in a real headless Chromium, against the model served on loopback.

Chromium comes from the distribution (``scripts/peers.d/chromium.sh``) and is driven by playwright (the ``test``
extra) through ``executable_path``; without either the tests skip, and fail under ``CI=true``. The browser does
what a user does: follows the redirects, types into the fields, presses the buttons. The checks are on what the
page shows and on what the server then does (tokens issued or not, polled over HTTP).
"""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import os
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest

from tests.homeserver.served import Served, serve_homeserver
from tests.peers import require_peer

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PASSWORD = "correct horse battery staple"
DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
TIMEOUT_MS = 15_000
POLL_INTERVAL_S = 1


def _browser_problem() -> str | None:
    if importlib.util.find_spec("playwright") is None:
        return "playwright is not installed (the test extra)"
    if not os.path.exists(CHROMIUM):
        return "Chromium is not installed (run scripts/peers.d/chromium.sh)"
    return None


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    require_peer(_browser_problem(), "Chromium browser")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def served() -> Iterator[Served]:
    with serve_homeserver(users={"alice": PASSWORD}, poll_interval_s=POLL_INTERVAL_S) as served:
        yield served


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context()
    context.set_default_timeout(TIMEOUT_MS)
    try:
        yield context.new_page()
    finally:
        context.close()


def register_client(served: Served, body: dict[str, Any]) -> str:
    response = httpx.post(f"{served.loopback}/oauth2/registration", json=body)
    assert response.status_code == 201, response.text
    client_id: str = response.json()["client_id"]
    return client_id


def start_device_grant(served: Served, device_id: str) -> tuple[str, dict[str, Any]]:
    client_id = register_client(
        served, {"client_name": "Living room TV", "client_uri": "https://tv.example/", "grant_types": [DEVICE_GRANT]}
    )
    scope = f"urn:matrix:client:api:* urn:matrix:client:device:{device_id}"
    grant = httpx.post(f"{served.loopback}/oauth2/device", data={"client_id": client_id, "scope": scope}).json()
    return client_id, grant


def poll(served: Served, client_id: str, device_code: str) -> httpx.Response:
    fields = {"grant_type": DEVICE_GRANT, "client_id": client_id, "device_code": device_code}
    return httpx.post(f"{served.loopback}/oauth2/token", data=fields)


def sign_in(page: Any) -> None:
    assert urlsplit(page.url).path == "/login"
    page.fill("#username", "alice")
    page.fill("#password", PASSWORD)
    page.click("#sign-in")


def whoami(served: Served, token: str) -> dict[str, Any]:
    response = httpx.get(
        f"{served.loopback}/_matrix/client/v3/account/whoami", headers={"authorization": f"Bearer {token}"}
    )
    content: dict[str, Any] = response.json()
    return content


def test_device_approval_page_shows_code_client_and_device_and_approves(served: Served, page: Any) -> None:
    client_id, grant = start_device_grant(served, "CHROMIUM01")
    page.goto(grant["verification_uri_complete"])
    sign_in(page)
    assert page.text_content("#user-code") == grant["user_code"]
    assert page.text_content("#client-name") == "Living room TV"
    assert page.text_content("#device-id") == "CHROMIUM01"
    assert poll(served, client_id, grant["device_code"]).json()["error"] == "authorization_pending"
    page.click("#approve")
    assert "being signed in" in (page.text_content("#outcome") or "")
    time.sleep(POLL_INTERVAL_S)  # a device polls no faster than the interval (RFC 8628 §3.5)
    tokens = poll(served, client_id, grant["device_code"])
    assert tokens.status_code == 200
    assert whoami(served, tokens.json()["access_token"]) == {
        "user_id": "@alice:127.0.0.1:" + served.loopback.rsplit(":", 1)[1],
        "device_id": "CHROMIUM01",
    }
    cookie = next(c for c in page.context.cookies() if c["name"] == "qrlogin_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Lax"


def test_typing_the_code_and_denying(served: Served, page: Any) -> None:
    client_id, grant = start_device_grant(served, "CHROMIUM02")
    page.goto(grant["verification_uri"])
    sign_in(page)
    page.fill("#user_code", grant["user_code"].lower().replace("-", ""))
    page.click("#continue")
    assert page.text_content("#device-id") == "CHROMIUM02"
    page.click("#deny")
    assert "will not be signed in" in (page.text_content("#outcome") or "")
    assert poll(served, client_id, grant["device_code"]).json()["error"] == "access_denied"


def test_authorization_code_grant_with_pkce_through_login_and_consent(served: Served, page: Any) -> None:
    client_id = register_client(
        served,
        {
            "client_name": "Desktop app",
            "client_uri": "https://desktop.example/",
            "application_type": "native",
            "redirect_uris": ["http://127.0.0.1/callback"],
            "grant_types": ["authorization_code", "refresh_token"],
        },
    )
    verifier = "chromium-test-verifier-" + "x" * 40
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    redirect_uri = f"{served.loopback}/callback"  # loopback, on whatever port: RFC 8252 §7.3
    params = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": redirect_uri,
        "scope": "openid urn:matrix:client:api:* urn:matrix:client:device:CHROMIUM03",
        "state": "chromium-state",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    page.goto(f"{served.loopback}/oauth2/authorize?{urlencode(params)}")
    sign_in(page)
    assert page.text_content("#client-name") == "Desktop app"
    assert page.text_content("#device-id") == "CHROMIUM03"
    page.click("#allow")
    page.wait_for_url(f"{redirect_uri}?**")
    answer = {k: v[0] for k, v in parse_qs(urlsplit(page.url).query).items()}
    assert answer["state"] == "chromium-state"
    exchange = {
        "grant_type": "authorization_code",
        "code": answer["code"],
        "redirect_uri": redirect_uri,
        "client_id": client_id,
        "code_verifier": verifier,
    }
    tokens = httpx.post(f"{served.loopback}/oauth2/token", data=exchange)
    assert tokens.status_code == 200, tokens.text
    assert whoami(served, tokens.json()["access_token"])["device_id"] == "CHROMIUM03"


def test_a_cross_site_form_cannot_approve_for_a_signed_in_user(served: Served, page: Any) -> None:
    client_id, grant = start_device_grant(served, "CHROMIUM04")
    page.goto(f"{served.loopback}/login")
    sign_in(page)  # the user is signed in: the browser holds a session cookie for the server
    attack = (
        "<!doctype html><form id=f method=post action='"
        + f"{served.loopback}/link'>"
        + f"<input name=user_code value='{grant['user_code']}'><input name=action value=approve>"
        + "<input name=csrf value=guessed></form><script>document.getElementById('f').submit()</script>"
    )
    page.route(
        "http://attacker.test/**", lambda route: route.fulfill(status=200, content_type="text/html", body=attack)
    )
    with page.expect_navigation(url=f"{served.loopback}/link"):
        page.goto("http://attacker.test/")
    assert "came from another site" in (page.text_content("#error") or "")
    assert poll(served, client_id, grant["device_code"]).json()["error"] == "authorization_pending"
