"""The limits on guessing: failed passwords and unknown user codes per account, in a fixed window.

RFC 8628 §5.1 (user codes), the Client-Server API's rate limiting (``429 M_LIMIT_EXCEEDED`` with
``retry_after_ms``), RFC 6585 §4 (a 429 page with ``Retry-After``).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

import pytest

from qrlogin.homeserver import ConsentResult, HttpResponse, approve_user_code
from qrlogin.homeserver.limits import FailureLimit, FailureLimiter
from qrlogin.homeserver.oauth import GrantStatus, pending_grant
from tests.homeserver.homeserver_support import (
    PASSWORD,
    Browser,
    Server,
    device_scope,
    hidden_fields,
    new_server,
    password_auth,
    too_many_page,
)

LIMIT = FailureLimit(max_failures=3, window_s=60)
ALICE = "@alice:example.org"


def limited_server(**limits: FailureLimit) -> Server:
    server = new_server(password_limit=limits.get("password", LIMIT), user_code_limit=limits.get("user_code", LIMIT))
    server.register("alice")
    server.register("bob")
    return server


def assert_limited(response: HttpResponse, retry_after_ms: int) -> None:
    assert response.status == 429
    assert response.json() == {
        "errcode": "M_LIMIT_EXCEEDED",
        "error": "too many failed password attempts for this account",
        "retry_after_ms": retry_after_ms,
    }
    assert response.header("retry-after") == str(-(-retry_after_ms // 1000))


def test_the_attempt_after_the_last_allowed_failure_is_refused_until_the_window_closes() -> None:
    server = limited_server()
    for _ in range(LIMIT.max_failures):
        assert server.login("alice", "guess").status == 403
        server.now_ms += 5_000
    # Three failures at 0, 5 and 10 s: the window opened by the first closes at 60 s.
    assert_limited(server.login("alice", PASSWORD), 60_000 - 15_000)
    server.now_ms += 20_000
    assert_limited(server.login("alice", "guess"), 60_000 - 35_000)  # refused unchecked: not counted either
    server.now_ms += 25_000
    assert server.login("alice", PASSWORD).status == 200


def test_a_limit_on_one_account_leaves_others_alone() -> None:
    server = limited_server()
    for _ in range(LIMIT.max_failures):
        server.login("alice", "guess")
    assert server.login("alice", PASSWORD).status == 429
    assert server.login("bob", "guess").status == 403
    assert server.login("bob", PASSWORD).status == 200


def test_a_right_password_forgets_the_failures() -> None:
    server = limited_server()
    for _ in range(LIMIT.max_failures - 1):
        assert server.login("alice", "guess").status == 403
    assert server.login("alice", PASSWORD).status == 200
    for _ in range(LIMIT.max_failures):
        assert server.login("alice", "guess").status == 403
    assert server.login("alice", "guess").status == 429


def test_an_unknown_user_is_limited_like_a_known_one() -> None:
    server = limited_server()
    answers = []
    for user in ("alice", "nobody"):
        for _ in range(LIMIT.max_failures):
            assert server.login(user, "guess").status == 403
        answers.append(server.login(user, "guess").body)
    assert answers[0] == answers[1]  # the answers do not tell an account from no account


def test_user_interactive_auth_counts_against_the_same_account() -> None:
    server = limited_server()
    token = server.register("carol", device_id="PHONE")["access_token"]
    for _ in range(LIMIT.max_failures):
        wrong = server.delete_device(token, "PHONE", password_auth("carol", "guess"))
        assert wrong.status == 401 and wrong.json()["errcode"] == "M_FORBIDDEN"
    assert_limited(server.delete_device(token, "PHONE", password_auth("carol", PASSWORD)), 60_000)
    assert server.login("carol", PASSWORD).status == 429
    server.now_ms += 60_000
    assert server.delete_device(token, "PHONE", password_auth("carol", PASSWORD)).status == 200


def test_the_sign_in_page_shares_the_account_limit_and_says_when_to_retry() -> None:
    server = limited_server()
    browser = Browser(server)
    for _ in range(LIMIT.max_failures - 1):
        assert browser.sign_in("alice", "guess").status == 403
    assert server.login("alice", "guess").status == 403
    server.now_ms += 1_500
    refused = browser.sign_in("alice", PASSWORD)
    assert too_many_page(refused) == 59  # 58.5 s rounded up
    assert "Too many failed sign-ins for this account" in refused.body.decode()
    assert hidden_fields(refused)["csrf"]  # the form is there to try again later
    assert browser.cookie is not None and not server.hs.oauth.sessions
    assert Browser(server).sign_in("bob").status == 303
    server.now_ms += 58_500
    assert browser.sign_in("alice").status == 303


def start_grant(server: Server, device_id: str = "PHONE00001") -> dict[str, Any]:
    client_id = server.register_client()
    content: dict[str, Any] = server.authorize_device(client_id, device_scope(device_id)).json()
    return content


def enter(browser: Browser, user_code: str) -> HttpResponse:
    return browser.get("/link?" + urlencode({"user_code": user_code}))


def test_unknown_user_codes_are_limited_per_account_and_a_right_code_does_not_reset_the_count() -> None:
    server = limited_server()
    grant = start_grant(server)
    alice, bob = Browser(server), Browser(server)
    alice.sign_in("alice")
    bob.sign_in("bob")
    assert enter(alice, "BBBB-BBBB").status == 404
    assert enter(alice, grant["user_code"]).status == 200  # a code anyone can make does not wash out the guesses
    assert enter(alice, "CCCC-CCCC").status == 404
    server.now_ms += 10_000
    assert enter(alice, "DDDD-DDDD").status == 404
    refused = enter(alice, grant["user_code"])
    assert too_many_page(refused) == 50
    assert "Too many wrong codes" in refused.body.decode() and grant["user_code"] not in refused.body.decode()
    assert enter(bob, grant["user_code"]).status == 200
    server.now_ms += 50_000
    assert enter(alice, grant["user_code"]).status == 200


def test_approving_on_the_page_is_refused_past_the_limit_and_changes_nothing() -> None:
    server = limited_server()
    grant = start_grant(server)
    browser = Browser(server)
    browser.sign_in("alice")
    form = hidden_fields(enter(browser, grant["user_code"]))
    for _ in range(LIMIT.max_failures):
        outcome = browser.post("/link", {**form, "user_code": "BBBB-BBBB", "action": "approve"})
        assert outcome.status == 404
    refused = browser.post("/link", {**form, "action": "approve"})
    assert too_many_page(refused) == 60
    still = pending_grant(server.hs.oauth, grant["user_code"], now_ms=server.now_ms)
    assert still is not None and still.status is GrantStatus.PENDING
    assert server.poll(still.client_id, grant["device_code"]).json()["error"] == "authorization_pending"


def test_the_simulated_user_is_not_limited() -> None:
    server = limited_server()
    grant = start_grant(server)
    browser = Browser(server)
    browser.sign_in("alice")
    for _ in range(LIMIT.max_failures):
        enter(browser, "BBBB-BBBB")
    assert enter(browser, grant["user_code"]).status == 429
    server.hs, result = approve_user_code(server.hs, grant["user_code"], ALICE, now_ms=server.now_ms)
    assert result is ConsentResult.APPROVED


def test_the_limits_are_separate() -> None:
    server = limited_server(user_code=FailureLimit(max_failures=1, window_s=60))
    browser = Browser(server)
    browser.sign_in("alice")
    assert enter(browser, "BBBB-BBBB").status == 404
    assert enter(browser, "BBBB-BBBB").status == 429
    assert server.login("alice", PASSWORD).status == 200


def test_a_closed_window_leaves_the_table() -> None:
    server = limited_server()
    server.login("alice", "guess")
    server.login("nobody", "guess")
    failures = server.hs.registry.password_failures
    assert set(failures.counts) == {ALICE, "@nobody:example.org"} and len(failures.queue) == 2
    server.now_ms += 60_000
    server.send_versions()
    failures = server.hs.registry.password_failures
    assert not failures.counts and len(failures.queue) == 0 and list(failures.queue) == []


def test_a_counter_behind_one_from_later_is_read_as_closed_and_purged_when_the_head_reaches_it() -> None:
    limiter = FailureLimiter(limit=LIMIT).failed("a", now_ms=10_000).failed("b", now_ms=0)  # the clock stepped back
    assert limiter.failed("b", now_ms=0).failed("b", now_ms=0).retry_after_ms("b", now_ms=59_000) == 1_000
    purged = limiter.purge(60_500)
    assert "b" in purged.counts and purged.retry_after_ms("b", now_ms=60_500) is None
    assert purged.failed("b", now_ms=60_500).counts["b"].failures == 1  # a closed window starts again
    assert not limiter.purge(70_000).counts


@pytest.mark.parametrize(("max_failures", "window_s"), [(0, 60), (3, 0), (-1, -1)])
def test_a_limit_must_allow_something(max_failures: int, window_s: int) -> None:
    with pytest.raises(ValueError, match="at least one"):
        FailureLimit(max_failures=max_failures, window_s=window_s)


def test_no_password_or_code_shows_in_the_value() -> None:
    server = limited_server()
    grant = start_grant(server)
    browser = Browser(server)
    browser.sign_in("alice")
    server.login("alice", "hunter2-guess")
    enter(browser, "BBBB-BBBB")
    text = repr(server.hs)
    assert "hunter2-guess" not in text and "BBBB" not in text and grant["user_code"] not in text
    assert hash(server.hs) == hash(server.hs)
