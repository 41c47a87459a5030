"""Stateful exploration of the homeserver model against a reference model of who holds which device and token.

Invariants (docs/protocol.md §8: the device management change and MSC4341):

* at most one active access token per device, and every active token's device exists;
* a token is active exactly when it is the last one issued for its device and the device was not deleted since;
* a deleted device's tokens are invalid;
* a device granted through the device authorization grant exists once its tokens are issued;
* device ids are unique per user, and each user's devices are exactly the ones the reference model expects;
* an access token from the OAuth token endpoint stops authenticating ``expires_in`` seconds after it was issued and
  is then refused as a soft logout (it still names its device, so the refresh token can replace it);
* failed password attempts (login, user-interactive auth) are limited per account: once an account's failures in
  the window reach the limit, every attempt is ``429 M_LIMIT_EXCEEDED`` with ``retry_after_ms`` until the window
  closes, and a right password forgets the count;
* a device grant is answered until a minute after it expires and forgotten after that; every grant and failure
  count waits in its expiry queue under its own time, so the purge reaches it.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from hypothesis import event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from qrlogin.homeserver import ConsentResult, HttpRequest, HttpResponse, approve_user_code, deny_user_code
from qrlogin.homeserver.devices import lookup_access_token
from qrlogin.homeserver.limits import DEFAULT_PASSWORD_LIMIT
from qrlogin.homeserver.oauth import DEFAULT_EXPIRES_IN_S, GRANT_KEPT_AFTER_EXPIRY_S, REFRESH_TOKEN_GRANT
from tests.homeserver.homeserver_support import ReferenceLimit, Server, device_scope, new_server, password_auth

USERS = ("alice", "bob")
DEVICE_IDS = ("PHONE00001", "LAPTOP0001", "TV00000001")
PASSWORD = "pw"
LIMIT = DEFAULT_PASSWORD_LIMIT


def uid(localpart: str) -> str:
    return f"@{localpart}:example.org"


@dataclass
class Grant:
    client_id: str
    device_code: str
    user_code: str
    device_id: str
    forgotten_at_ms: int
    decided: bool = False
    finished: bool = False
    user_id: str | None = None


class HomeserverMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.server: Server = new_server(b"stateful")
        self.registered: set[str] = set()
        # (user id, device id) -> the one token the reference model expects to be active for it
        self.active: dict[tuple[str, str], str] = {}
        self.refresh: dict[tuple[str, str], str] = {}
        self.issued: list[str] = []
        # access token -> when it stops authenticating (OAuth tokens only; password and registration tokens never do)
        self.expires_at_ms: dict[str, int] = {}
        self.devices: dict[str, set[str]] = {}
        self.grants: list[Grant] = []
        self.client_id = ""
        self.failures = ReferenceLimit(LIMIT)

    @initialize()
    def setup(self) -> None:
        self.client_id = self.server.register_client()

    def _issue(
        self, user_id: str, device_id: str, token: str, refresh: str | None, expires_in_s: int | None = None
    ) -> None:
        assert token not in self.issued
        self.issued.append(token)
        if expires_in_s is not None:
            self.expires_at_ms[token] = self.server.now_ms + expires_in_s * 1000
        self.active[(user_id, device_id)] = token
        self.refresh.pop((user_id, device_id), None)
        if refresh is not None:
            self.refresh[(user_id, device_id)] = refresh
        self.devices.setdefault(user_id, set()).add(device_id)

    def _expect_password_attempt(self, user_id: str, right: bool) -> int | None:
        """The reference limit: the ``retry_after_ms`` of a refused attempt, or None when the password is checked."""
        refused = self.failures.refused(user_id, self.server.now_ms)
        if refused is None and right:
            self.failures.forget(user_id)
        elif refused is None:
            self.failures.failed(user_id, self.server.now_ms)
        return refused

    def _check_refusal(self, response: HttpResponse, retry_after_ms: int) -> None:
        event("password attempt refused by the limit")
        assert response.status == 429
        assert response.json() == {
            "errcode": "M_LIMIT_EXCEEDED",
            "error": "too many failed password attempts for this account",
            "retry_after_ms": retry_after_ms,
        }

    def _any_token(self, user_id: str) -> str | None:
        for (owner, _), token in sorted(self.active.items()):
            if owner == user_id:
                return token
        return None

    @rule(user=st.sampled_from(USERS), device_id=st.sampled_from((None, *DEVICE_IDS)))
    def register(self, user: str, device_id: str | None) -> None:
        extra = {} if device_id is None else {"device_id": device_id}
        body = {"username": user, "password": PASSWORD, **extra}
        response = self.server.send(HttpRequest.json("POST", "/_matrix/client/v3/register", body))
        if user in self.registered:
            assert response.json()["errcode"] == "M_USER_IN_USE"
            return
        assert response.status == 200
        self.registered.add(user)
        content = response.json()
        assert device_id is None or content["device_id"] == device_id
        self._issue(uid(user), content["device_id"], content["access_token"], None)

    @rule(user=st.sampled_from(USERS), device_id=st.sampled_from((None, *DEVICE_IDS)), right=st.booleans())
    def login(self, user: str, device_id: str | None, right: bool) -> None:
        extra = {} if device_id is None else {"device_id": device_id}
        response = self.server.login(user, PASSWORD if right else "wrong", **extra)
        refused = self._expect_password_attempt(uid(user), right and user in self.registered)
        if refused is not None:
            self._check_refusal(response, refused)
            return
        if not right or user not in self.registered:
            assert response.status == 403
            return
        content = response.json()
        if device_id is None:
            assert content["device_id"] not in self.devices.get(uid(user), set())
        else:
            assert content["device_id"] == device_id
        self._issue(uid(user), content["device_id"], content["access_token"], None)

    @rule(
        user=st.sampled_from(USERS),
        attempts=st.sampled_from((1, 3, LIMIT.max_failures + 1)),
        spacing_ms=st.sampled_from((0, 1_000, 30_000)),
    )
    def guess_passwords(self, user: str, attempts: int, spacing_ms: int) -> None:
        """Several wrong passwords in a row, so that runs reach the limit."""
        for _ in range(attempts):
            self.server.now_ms += spacing_ms
            response = self.server.login(user, "guess")
            refused = self._expect_password_attempt(uid(user), False)
            if refused is None:
                assert response.status == 403
            else:
                self._check_refusal(response, refused)

    @precondition(lambda self: bool(self.active))
    @rule(data=st.data(), device_id=st.sampled_from(DEVICE_IDS), with_auth=st.booleans())
    def delete(self, data: st.DataObject, device_id: str, with_auth: bool) -> None:
        (user_id, _), token = data.draw(st.sampled_from(sorted(self.active.items())))
        localpart = user_id[1:].split(":")[0]
        response = self.server.delete_device(token, device_id, password_auth(localpart, PASSWORD) if with_auth else {})
        event(f"delete with_auth={with_auth}")
        if not with_auth:
            assert response.status == 401
            return
        if self.server.now_ms >= self.expires_at_ms.get(token, self.server.now_ms + 1):
            event("delete with an expired token")
            assert response.status == 401
            assert response.json()["soft_logout"] is True
            return
        refused = self._expect_password_attempt(user_id, True)
        if refused is not None:
            self._check_refusal(response, refused)
            return
        assert response.status == 200
        self.active.pop((user_id, device_id), None)
        self.refresh.pop((user_id, device_id), None)
        self.devices.get(user_id, set()).discard(device_id)

    @rule(device_id=st.sampled_from(DEVICE_IDS))
    def start_grant(self, device_id: str) -> None:
        response = self.server.authorize_device(self.client_id, device_scope(device_id))
        content = response.json()
        forgotten_at_ms = self.server.now_ms + (DEFAULT_EXPIRES_IN_S + GRANT_KEPT_AFTER_EXPIRY_S) * 1000
        self.grants.append(
            Grant(self.client_id, content["device_code"], content["user_code"], device_id, forgotten_at_ms)
        )

    @precondition(lambda self: bool(self.registered))
    @rule(data=st.data(), device_id=st.sampled_from(DEVICE_IDS))
    def sign_in_with_grant(self, data: st.DataObject, device_id: str) -> None:
        """A whole new-device sign-in at once (the piecemeal rules rarely line up before the grant expires)."""
        user = data.draw(st.sampled_from(sorted(self.registered)))
        self.start_grant(device_id)
        grant = self.grants[-1]
        self.server.hs, result = approve_user_code(
            self.server.hs, grant.user_code, uid(user), now_ms=self.server.now_ms
        )
        assert result is ConsentResult.APPROVED
        grant.decided, grant.user_id = True, uid(user)
        self.poll_grant(grant, 0)
        assert grant.finished

    @precondition(lambda self: bool(self.grants))
    @rule(data=st.data(), user=st.sampled_from(USERS), approve=st.booleans())
    def decide(self, data: st.DataObject, user: str, approve: bool) -> None:
        grant = data.draw(st.sampled_from(self.grants))
        if approve:
            self.server.hs, result = approve_user_code(
                self.server.hs, grant.user_code, uid(user), now_ms=self.server.now_ms
            )
        else:
            self.server.hs, result = deny_user_code(self.server.hs, grant.user_code, now_ms=self.server.now_ms)
        if result in (ConsentResult.APPROVED, ConsentResult.DENIED):
            assert not grant.decided
            grant.decided = True
        if result is ConsentResult.APPROVED:
            grant.user_id = uid(user)

    @precondition(lambda self: bool(self.grants))
    @rule(data=st.data(), wait_ms=st.sampled_from((0, 1000, 5000, 10_000, 20_000)))
    def poll(self, data: st.DataObject, wait_ms: int) -> None:
        self.poll_grant(data.draw(st.sampled_from(self.grants)), wait_ms)

    def poll_grant(self, grant: Grant, wait_ms: int) -> None:
        response = self.server.poll(grant.client_id, grant.device_code, advance_ms=wait_ms)
        content = response.json()
        event(f"poll -> {content.get('error', 'tokens')}")
        if response.status == 200:
            assert not grant.finished
            grant.finished = True
            user_id = grant.user_id
            assert user_id is not None
            assert self.server.whoami(content["access_token"]).json() == {
                "user_id": user_id,
                "device_id": grant.device_id,
            }
            self._issue(
                user_id, grant.device_id, content["access_token"], content["refresh_token"], content["expires_in"]
            )
        else:
            assert content["error"] in {
                "authorization_pending",
                "slow_down",
                "access_denied",
                "expired_token",
                "invalid_grant",
            }
            forgotten = self.server.now_ms >= grant.forgotten_at_ms
            assert content["error"] != "invalid_grant" or grant.finished or forgotten
            assert content["error"] == "invalid_grant" or not forgotten

    @precondition(lambda self: bool(self.refresh))
    @rule(data=st.data())
    def refresh_tokens(self, data: st.DataObject) -> None:
        (user_id, device_id), refresh = data.draw(st.sampled_from(sorted(self.refresh.items())))
        form = {"grant_type": REFRESH_TOKEN_GRANT, "refresh_token": refresh, "client_id": self.client_id}
        content = self.server.send(HttpRequest.form("/oauth2/token", form)).json()
        event("refresh")
        self._issue(user_id, device_id, content["access_token"], content["refresh_token"], content["expires_in"])

    @rule(ms=st.sampled_from((1_000, 5_000, 60_000)) | st.integers(min_value=0, max_value=400_000))
    def wait(self, ms: int) -> None:
        self.server.now_ms += ms

    @invariant()
    def one_token_per_device_and_its_device_exists(self) -> None:
        registry = self.server.hs.registry
        counts = Counter((b.user_id, b.device_id) for b in registry.access_tokens.values())
        assert all(count == 1 for count in counts.values())
        for user_id, device_id in counts:
            assert device_id in registry.accounts[user_id].devices

    @invariant()
    def exactly_the_expected_tokens_are_active(self) -> None:
        registry = self.server.hs.registry
        expected = {token: key for key, token in self.active.items()}
        for token in self.issued:
            binding = lookup_access_token(registry, token)
            if token in expected:
                assert binding is not None and (binding.user_id, binding.device_id) == expected[token]
            else:
                assert binding is None
        assert len(registry.access_tokens) == len(self.active)

    @invariant()
    def every_record_waits_in_its_queue(self) -> None:
        """Each grant and failure count has a queue entry for its own time, so the purge will reach it."""
        hs, now = self.server.hs, self.server.now_ms
        oauth = hs.oauth
        queued = set(oauth.queues.grants)
        assert all((digest, grant.forgotten_at_ms) in queued for digest, grant in oauth.grants.items())
        assert set(oauth.user_codes.values()) <= set(oauth.grants)
        failures = hs.registry.password_failures
        queued_counts = set(failures.queue)
        assert all((user_id, count.until_ms) in queued_counts for user_id, count in failures.counts.items())
        live = {user_id: (c.failures, c.until_ms) for user_id, c in failures.counts.items() if now < c.until_ms}
        assert live == self.failures.open_windows(now)

    @invariant()
    def devices_are_the_expected_ones(self) -> None:
        registry = self.server.hs.registry
        for user_id, account in registry.accounts.items():
            assert set(account.devices) == self.devices.get(user_id, set())
            assert all(device.device_id == key for key, device in account.devices.items())


HomeserverMachine.TestCase.settings = settings(max_examples=100, stateful_step_count=50, deadline=None)
TestHomeserverMachine = HomeserverMachine.TestCase
