"""Stateful exploration of the OAuth surface against a reference model of which tokens each device holds.

Rules: client registration (valid and invalid metadata), the device grant decided on the approval page (or by a
forged form, which must change nothing), polling, the authorization code grant through the sign-in and consent
pages, redeeming codes with the right or a wrong verifier or client, refresh by the owning or another client,
revocation, logout and time passing.

Invariants (Client-Server API "OAuth 2.0 API", RFC 6749, 7009, 7636, 8628):

* a device's current access token answers whoami for exactly that device until it expires, then a soft logout;
* every replaced, revoked or logged-out token is unknown (``soft_logout: false``), never another device's;
* a device's current refresh token is bound to the client the tokens were issued to; spent ones are gone;
* a code is redeemed at most once, and only with its verifier by its client;
* at most one access token per device, and every signed-in browser session belongs to an existing user;
* on the pages, wrong passwords and user codes that stand for no waiting grant are limited per account: past the
  limit the page is ``429`` with ``Retry-After`` until the window closes (a right password forgets the count, a
  right user code does not);
* a device grant is answered until a minute after it expires, then ``invalid_grant``; every grant, code and
  session in the tables waits in its expiry queue.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from hypothesis import event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from qrlogin.homeserver import HttpRequest, HttpResponse
from qrlogin.homeserver.devices import lookup_access_token, lookup_refresh_token
from qrlogin.homeserver.limits import DEFAULT_PASSWORD_LIMIT, DEFAULT_USER_CODE_LIMIT
from qrlogin.homeserver.oauth import (
    DEFAULT_EXPIRES_IN_S,
    DEVICE_CODE_GRANT,
    GRANT_KEPT_AFTER_EXPIRY_S,
    REFRESH_TOKEN_GRANT,
)
from tests.homeserver.homeserver_support import (
    PASSWORD,
    WEB_CLIENT,
    Browser,
    ReferenceLimit,
    Server,
    hidden_fields,
    new_server,
    pkce_pair,
    too_many_page,
)

USERS = ("alice", "bob")
DEVICE_IDS = ("PHONE00001", "LAPTOP0001", "TV00000001")
SCOPE_FORMS = (
    "urn:matrix:client:api:* urn:matrix:client:device:{}",
    "openid urn:matrix:client:api:* urn:matrix:client:device:{}",
    "urn:matrix:org.matrix.msc2967.client:api:* urn:matrix:org.matrix.msc2967.client:device:{}",
)
LIFETIME_S = 120
REDIRECT = "https://client.example/callback"
BAD_CLIENTS = (
    ({**WEB_CLIENT, "redirect_uris": ["https://elsewhere.example/cb"]}, "invalid_redirect_uri"),
    ({**WEB_CLIENT, "grant_types": ["password"]}, "invalid_client_metadata"),
    ({**WEB_CLIENT, "client_uri": "http://client.example/"}, "invalid_client_metadata"),
)


def uid(localpart: str) -> str:
    return f"@{localpart}:example.org"


@dataclass
class Held:
    """The tokens the reference model expects a device to hold."""

    access: str
    refresh: str
    client_id: str
    expires_at_ms: int


@dataclass
class PendingGrant:
    client_id: str
    device_code: str
    user_code: str
    device_id: str
    forgotten_at_ms: int
    user_id: str | None = None
    decided: bool = False
    finished: bool = False


@dataclass
class PendingCode:
    client_id: str
    code: str
    verifier: str
    user_id: str
    device_id: str
    issued_ms: int
    spent: bool = False


class OAuthMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.server: Server = new_server(b"oauth stateful", access_token_lifetime_s=LIFETIME_S, poll_interval_s=1)
        self.clients: list[str] = []
        self.held: dict[tuple[str, str], Held] = {}
        self.retired: set[str] = set()
        self.retired_refresh: set[str] = set()
        self.grants: list[PendingGrant] = []
        self.codes: list[PendingCode] = []
        self.browsers: dict[str, Browser] = {}
        self.password_failures = ReferenceLimit(DEFAULT_PASSWORD_LIMIT)
        self.code_failures = ReferenceLimit(DEFAULT_USER_CODE_LIMIT)

    @initialize()
    def setup(self) -> None:
        for user in USERS:
            self.server.register(user, device_id="MAINDEVICE")
            browser = Browser(self.server)
            assert browser.sign_in(user).status == 303
            self.browsers[user] = browser
        self.register_client(valid=True, which=0)

    # -- bookkeeping ----------------------------------------------------------------------------------------------

    def _issued(self, user_id: str, device_id: str, client_id: str, content: dict[str, Any]) -> None:
        assert content["expires_in"] == LIFETIME_S
        previous = self.held.get((user_id, device_id))
        if previous is not None:
            self.retired.add(previous.access)
            self.retired_refresh.add(previous.refresh)
        expires = self.server.now_ms + LIFETIME_S * 1000
        self.held[(user_id, device_id)] = Held(content["access_token"], content["refresh_token"], client_id, expires)

    def _logged_out(self, key: tuple[str, str]) -> None:
        gone = self.held.pop(key, None)
        if gone is not None:
            self.retired.add(gone.access)
            self.retired_refresh.add(gone.refresh)

    # -- rules ----------------------------------------------------------------------------------------------------

    @rule(valid=st.booleans(), which=st.integers(0, len(BAD_CLIENTS) - 1))
    def register_client(self, valid: bool, which: int) -> None:
        body, error = (WEB_CLIENT, None) if valid else BAD_CLIENTS[which]
        response = self.server.send(HttpRequest.json("POST", "/oauth2/registration", body))
        if error is None:
            assert response.status == 201
            self.clients.append(response.json()["client_id"])
        else:
            assert (response.status, response.json()["error"]) == (400, error)

    @rule(data=st.data(), device_id=st.sampled_from(DEVICE_IDS), form=st.sampled_from(SCOPE_FORMS))
    def start_device_grant(self, data: st.DataObject, device_id: str, form: str) -> None:
        client_id = data.draw(st.sampled_from(self.clients))
        response = self.server.authorize_device(client_id, form.format(device_id))
        assert response.status == 200, response.json()
        content = response.json()
        forgotten_at_ms = self.server.now_ms + (DEFAULT_EXPIRES_IN_S + GRANT_KEPT_AFTER_EXPIRY_S) * 1000
        self.grants.append(
            PendingGrant(client_id, content["device_code"], content["user_code"], device_id, forgotten_at_ms)
        )

    @precondition(lambda self: bool(self.grants))
    @rule(data=st.data(), user=st.sampled_from(USERS), action=st.sampled_from(("approve", "deny", "forged")))
    def decide_on_the_page(self, data: st.DataObject, user: str, action: str) -> None:
        grant = data.draw(st.sampled_from(self.grants))
        browser = self.browsers[user]
        page = self._enter_code(user, grant.user_code)
        if page.status == 429:
            return
        if page.status != 200:
            expired = self.server.now_ms >= grant.forgotten_at_ms - GRANT_KEPT_AFTER_EXPIRY_S * 1000
            assert grant.decided or grant.finished or expired
            return
        fields = hidden_fields(page)
        if action == "forged":
            assert browser.post("/link", {**fields, "csrf": "forged", "action": "approve"}).status == 403
            return
        done = browser.post("/link", {**fields, "action": action})
        event(f"page {action} -> {done.status}")
        assert done.status == 200 and not grant.decided
        grant.decided = True
        grant.user_id = uid(user) if action == "approve" else None

    def _enter_code(self, user: str, user_code: str) -> HttpResponse:
        """Open the approval page for ``user_code``; checks the limit's answer and returns the page."""
        page = self.browsers[user].get("/link?" + urlencode({"user_code": user_code}))
        now = self.server.now_ms
        event(f"approval page {page.status}")
        refused = self.code_failures.refused(uid(user), now)
        if refused is not None:
            assert too_many_page(page) == -(-refused // 1000)
        elif page.status == 404:
            self.code_failures.failed(uid(user), now)
        else:
            assert page.status == 200
        return page

    @rule(user=st.sampled_from(USERS), attempts=st.sampled_from((1, 3, DEFAULT_USER_CODE_LIMIT.max_failures + 1)))
    def guess_user_codes(self, user: str, attempts: int) -> None:
        for attempt in range(attempts):
            page = self._enter_code(user, f"BCDF-{attempt:04}")
            assert page.status in (404, 429)

    @rule(
        user=st.sampled_from(USERS),
        right=st.booleans(),
        attempts=st.sampled_from((1, 3, DEFAULT_PASSWORD_LIMIT.max_failures + 1)),
    )
    def sign_in_on_the_page(self, user: str, right: bool, attempts: int) -> None:
        """A new browser signs in, with the right password or a run of wrong ones."""
        for _ in range(attempts):
            response = Browser(self.server).sign_in(user, PASSWORD if right else "guess")
            refused = self.password_failures.refused(uid(user), self.server.now_ms)
            event(f"sign-in right={right} -> {response.status}")
            if refused is not None:
                assert too_many_page(response) == -(-refused // 1000)
            elif right:
                assert response.status == 303
                self.password_failures.forget(uid(user))
            else:
                assert response.status == 403
                self.password_failures.failed(uid(user), self.server.now_ms)

    @precondition(lambda self: bool(self.grants))
    @rule(data=st.data())
    def poll(self, data: st.DataObject) -> None:
        grant = data.draw(st.sampled_from(self.grants))
        response = self.server.poll(grant.client_id, grant.device_code)
        content = response.json()
        event(f"poll -> {content.get('error', 'tokens')}")
        if response.status == 200:
            assert grant.decided and grant.user_id is not None and not grant.finished
            grant.finished = True
            self._issued(grant.user_id, grant.device_id, grant.client_id, content)
        else:
            forgotten = self.server.now_ms >= grant.forgotten_at_ms
            assert content["error"] != "invalid_grant" or grant.finished or forgotten
            assert content["error"] == "invalid_grant" or not forgotten
            assert content["error"] != "access_denied" or (grant.decided and grant.user_id is None)

    @rule(data=st.data(), user=st.sampled_from(USERS), device_id=st.sampled_from(DEVICE_IDS))
    def authorize(self, data: st.DataObject, user: str, device_id: str) -> None:
        client_id = data.draw(st.sampled_from(self.clients))
        verifier, challenge = pkce_pair(data.draw(st.sampled_from(("a" * 43, "b" * 64, "c-" * 30))))
        query = {
            "response_type": "code",
            "client_id": client_id,
            "redirect_uri": REDIRECT,
            "scope": data.draw(st.sampled_from(SCOPE_FORMS)).format(device_id),
            "code_challenge": challenge,
            "code_challenge_method": "S256",
            "state": "st",
        }
        browser = self.browsers[user]
        page = browser.get("/oauth2/authorize?" + urlencode(query))
        assert page.status == 200
        allowed = browser.post("/oauth2/authorize", {**hidden_fields(page), "action": "allow"})
        params = parse_qs(urlsplit(allowed.header("location") or "").query)
        assert params["state"] == ["st"]
        self.codes.append(PendingCode(client_id, params["code"][0], verifier, uid(user), device_id, self.server.now_ms))

    @precondition(lambda self: bool(self.codes))
    @rule(data=st.data(), how=st.sampled_from(("right", "wrong verifier", "wrong client")))
    def redeem(self, data: st.DataObject, how: str) -> None:
        code = data.draw(st.sampled_from(self.codes))
        client_id = code.client_id
        verifier = code.verifier if how != "wrong verifier" else "z" * 43
        if how == "wrong client":
            client_id = data.draw(st.sampled_from(self.clients))
        fields = {
            "grant_type": "authorization_code",
            "code": code.code,
            "redirect_uri": REDIRECT,
            "client_id": client_id,
            "code_verifier": verifier,
        }
        response = self.server.send(HttpRequest.form("/oauth2/token", fields))
        expired = self.server.now_ms >= code.issued_ms + 60_000
        works = not code.spent and not expired and client_id == code.client_id and verifier == code.verifier
        event(f"redeem {how} -> {response.status}")
        if works:
            assert response.status == 200, response.json()
            self._issued(code.user_id, code.device_id, code.client_id, response.json())
        else:
            assert response.json()["error"] == "invalid_grant"
        if client_id == code.client_id:
            code.spent = True  # any attempt by its own client spends it

    @precondition(lambda self: bool(self.held))
    @rule(data=st.data(), own_client=st.booleans())
    def refresh(self, data: st.DataObject, own_client: bool) -> None:
        key, held = data.draw(st.sampled_from(sorted(self.held.items())))
        client_id = held.client_id if own_client else data.draw(st.sampled_from(self.clients))
        fields = {"grant_type": REFRESH_TOKEN_GRANT, "refresh_token": held.refresh, "client_id": client_id}
        response = self.server.send(HttpRequest.form("/oauth2/token", fields))
        event(f"refresh own_client={client_id == held.client_id} -> {response.status}")
        if client_id == held.client_id:
            assert response.status == 200
            self._issued(*key, held.client_id, response.json())
        else:
            assert response.json()["error"] == "invalid_grant"

    @precondition(lambda self: bool(self.held))
    @rule(data=st.data(), which=st.sampled_from(("access", "refresh")), own_client=st.booleans())
    def revoke(self, data: st.DataObject, which: str, own_client: bool) -> None:
        key, held = data.draw(st.sampled_from(sorted(self.held.items())))
        client_id = held.client_id if own_client else data.draw(st.sampled_from(self.clients))
        token = held.access if which == "access" else held.refresh
        response = self.server.send(HttpRequest.form("/oauth2/revoke", {"token": token, "client_id": client_id}))
        event(f"revoke {which} own_client={client_id == held.client_id} -> {response.status}")
        if client_id == held.client_id:
            assert response.status == 200
            self._logged_out(key)
        else:
            assert response.json()["error"] == "unauthorized_client"

    @precondition(lambda self: bool(self.held))
    @rule(data=st.data())
    def logout(self, data: st.DataObject) -> None:
        key, held = data.draw(st.sampled_from(sorted(self.held.items())))
        request = HttpRequest.json("POST", "/_matrix/client/v3/logout", {}, access_token=held.access)
        assert self.server.send(request).status == 200
        self._logged_out(key)

    @rule(ms=st.sampled_from((1_000, 30_000, 61_000, 125_000)))
    def wait(self, ms: int) -> None:
        self.server.now_ms += ms

    # -- invariants -----------------------------------------------------------------------------------------------

    @invariant()
    def current_tokens_speak_for_their_device_until_they_expire(self) -> None:
        for (user_id, device_id), held in self.held.items():
            binding = lookup_access_token(self.server.hs.registry, held.access)
            assert binding is not None and (binding.user_id, binding.device_id) == (user_id, device_id)
            assert binding.expired(self.server.now_ms) == (self.server.now_ms >= held.expires_at_ms)
            refresh = lookup_refresh_token(self.server.hs.registry, held.refresh)
            assert refresh is not None and refresh.client_id == held.client_id

    @invariant()
    def retired_tokens_are_unknown(self) -> None:
        registry = self.server.hs.registry
        assert all(lookup_access_token(registry, token) is None for token in self.retired)
        assert all(lookup_refresh_token(registry, token) is None for token in self.retired_refresh)

    @invariant()
    def every_record_waits_in_its_queue(self) -> None:
        oauth, now = self.server.hs.oauth, self.server.now_ms
        queued = set(oauth.queues.grants)
        assert all((key, grant.forgotten_at_ms) in queued for key, grant in oauth.grants.items())
        queued = set(oauth.queues.codes)
        assert all((key, code.expires_at_ms) in queued for key, code in oauth.codes.items())
        queued = set(oauth.queues.sessions)
        assert all((key, session.expires_at_ms) in queued for key, session in oauth.sessions.items())
        for limiter, reference in (
            (oauth.user_code_failures, self.code_failures),
            (self.server.hs.registry.password_failures, self.password_failures),
        ):
            live = {key: (c.failures, c.until_ms) for key, c in limiter.counts.items() if now < c.until_ms}
            assert live == reference.open_windows(now)

    @invariant()
    def one_token_per_device_and_sessions_belong_to_users(self) -> None:
        registry = self.server.hs.registry
        counts = Counter((b.user_id, b.device_id) for b in registry.access_tokens.values())
        assert all(count == 1 for count in counts.values())
        assert all(s.user_id in registry.accounts for s in self.server.hs.oauth.sessions.values())


OAuthMachine.TestCase.settings = settings(max_examples=100, stateful_step_count=50, deadline=None)
TestOAuthMachine = OAuthMachine.TestCase


def test_whoami_after_expiry_is_a_soft_logout_in_the_stateful_setting() -> None:
    """One concrete run of the machine's expiry rule, so a failure here reads plainly."""
    server = new_server(b"expiry", access_token_lifetime_s=LIFETIME_S)
    server.register("alice")
    client_id = server.register_client((DEVICE_CODE_GRANT, REFRESH_TOKEN_GRANT))
    browser = Browser(server)
    browser.sign_in("alice")
    grant = server.authorize_device(client_id, SCOPE_FORMS[2].format("EXPIRING01")).json()
    page = browser.get("/link?" + urlencode({"user_code": grant["user_code"]}))
    browser.post("/link", {**hidden_fields(page), "action": "approve"})
    tokens = server.poll(client_id, grant["device_code"]).json()
    server.now_ms += LIFETIME_S * 1000
    assert server.whoami(tokens["access_token"]).json()["soft_logout"] is True
