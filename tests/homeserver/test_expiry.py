"""Records past their time leave the model: grants, codes, browser and UIA sessions, through creation-order queues.

Each request pops at most ``PURGE_BUDGET`` due entries off each queue; a record past its time reads as absent
whether or not it has been purged, so the purge never changes an answer.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from hypothesis import given, settings
from hypothesis import strategies as st

from qrlogin.homeserver import ConsentResult, HttpRequest, approve_user_code, deny_user_code
from qrlogin.homeserver._expiry import CHUNK, NEVER, PURGE_BUDGET, ExpiryQueue
from qrlogin.homeserver._frozenmap import FrozenMap
from qrlogin.homeserver.authcode import CODE_LIFETIME_S
from qrlogin.homeserver.devices import UIA_SESSION_LIFETIME_S
from qrlogin.homeserver.oauth import DEFAULT_EXPIRES_IN_S, GRANT_KEPT_AFTER_EXPIRY_S
from qrlogin.homeserver.pages import SESSION_LIFETIME_S
from tests.homeserver.homeserver_support import (
    PASSWORD,
    WEB_CLIENT,
    Browser,
    Server,
    device_scope,
    hidden_fields,
    new_server,
    password_auth,
    pkce_pair,
)

ALICE = "@alice:example.org"
FORGOTTEN_AFTER_MS = (DEFAULT_EXPIRES_IN_S + GRANT_KEPT_AFTER_EXPIRY_S) * 1000


def start_grants(server: Server, count: int) -> tuple[str, list[dict[str, Any]]]:
    client_id = server.register_client()
    grants = [server.authorize_device(client_id, device_scope(f"DEVICE{i:04}")).json() for i in range(count)]
    return client_id, grants


def holds_nothing(queue: ExpiryQueue[Any]) -> bool:
    return len(queue) == 0 and list(queue) == [] and not queue.front and not queue.middle and not queue.back


def drain(server: Server, requests: int) -> None:
    for _ in range(requests):
        server.send_versions()


def test_the_queue_pops_due_entries_in_order_within_the_budget() -> None:
    queue: ExpiryQueue[str] = ExpiryQueue()
    assert not queue.due(10**15) and len(queue) == 0 and queue.head_due_ms == NEVER
    for index in range(6):
        queue = queue.push(f"k{index}", 100 + index)
    assert queue.head_due_ms == 100 and not queue.due(99) and queue.due(100)
    same, none = queue.pop_due(99)
    assert same is queue and none == []
    queue, popped = queue.pop_due(200, budget=4)
    assert popped == ["k0", "k1", "k2", "k3"] and len(queue) == 2 and queue.head_due_ms == 104
    queue, popped = queue.pop_due(104)
    assert popped == ["k4"] and queue.head_due_ms == 105
    queue, popped = queue.pop_due(200)
    assert popped == ["k5"] and queue.head_due_ms == NEVER and holds_nothing(queue)
    assert queue.push("again", 300).head_due_ms == 300


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.integers(0, 3 * CHUNK), st.integers(0, 2 * PURGE_BUDGET)), max_size=60))
def test_the_queue_pops_what_a_plain_deque_would(steps: list[tuple[bool, int, int]]) -> None:
    """Pushes of pairs due at growing times and bounded pops, across chunk boundaries, against a list."""
    queue: ExpiryQueue[int] = ExpiryQueue()
    reference: list[tuple[int, int]] = []
    versions = []
    pushed = 0
    for push, count, budget in steps:
        if push:
            for _ in range(count):
                queue = queue.push(pushed, 10 * pushed)
                reference.append((pushed, 10 * pushed))
                pushed += 1
        else:
            now = 10 * count
            queue, popped = queue.pop_due(now, budget=budget)
            expected: list[int] = []
            for key, due_ms in reference:
                if due_ms > now or len(expected) == budget:
                    break
                expected.append(key)
            assert popped == expected
            del reference[: len(popped)]
        assert list(queue) == reference and len(queue) == len(reference)
        assert queue.head_due_ms == (reference[0][1] if reference else NEVER)
        assert len(queue.front) + len(queue.back) + CHUNK * len(queue.middle) == len(reference)
        versions.append((queue, list(reference)))
    for version, content in versions:
        assert list(version) == content  # every earlier version is unchanged


def test_every_grant_leaves_a_minute_after_it_expires_whatever_became_of_it() -> None:
    server = new_server()
    server.register("alice")
    client_id, grants = start_grants(server, 4)
    approved, denied, redeemed, _ = grants
    server.hs, result = approve_user_code(server.hs, approved["user_code"], ALICE, now_ms=server.now_ms)
    assert result is ConsentResult.APPROVED
    server.hs, result = deny_user_code(server.hs, denied["user_code"], now_ms=server.now_ms)
    assert result is ConsentResult.DENIED
    server.hs, _ = approve_user_code(server.hs, redeemed["user_code"], ALICE, now_ms=server.now_ms)
    assert server.poll(client_id, redeemed["device_code"]).status == 200
    oauth = server.hs.oauth
    assert len(oauth.grants) == 4 and len(oauth.user_codes) == 3 and len(oauth.queues.grants) == 4

    server.now_ms += DEFAULT_EXPIRES_IN_S * 1000
    assert server.poll(client_id, grants[3]["device_code"]).json()["error"] == "expired_token"
    assert len(server.hs.oauth.grants) == 4

    server.now_ms += GRANT_KEPT_AFTER_EXPIRY_S * 1000
    server.send_versions()
    oauth = server.hs.oauth
    assert not oauth.grants and not oauth.user_codes and holds_nothing(oauth.queues.grants)
    assert oauth.grants == FrozenMap() and hash(oauth.grants) == hash(FrozenMap())
    for grant in grants:
        assert server.poll(client_id, grant["device_code"]).json()["error"] == "invalid_grant"
        server.hs, result = approve_user_code(server.hs, grant["user_code"], ALICE, now_ms=server.now_ms)
        assert result is ConsentResult.UNKNOWN_CODE


def test_each_request_purges_a_bounded_number_and_a_backlog_drains() -> None:
    server = new_server()
    start_grants(server, 3 * PURGE_BUDGET + 1)
    server.now_ms += FORGOTTEN_AFTER_MS
    sizes = []
    for _ in range(4):
        server.send_versions()
        sizes.append(len(server.hs.oauth.grants))
    assert sizes == [2 * PURGE_BUDGET + 1, PURGE_BUDGET + 1, 1, 0]
    assert len(server.hs.oauth.queues.grants) == 0


def test_the_answer_does_not_depend_on_how_far_the_purge_has_got() -> None:
    server = new_server()
    client_id, grants = start_grants(server, 2 * PURGE_BUDGET + 1)
    last = grants[-1]
    server.now_ms += FORGOTTEN_AFTER_MS
    poll = server.poll(client_id, last["device_code"])
    assert len(server.hs.oauth.grants) == PURGE_BUDGET + 1  # the last one is still held...
    assert poll.json()["error"] == "invalid_grant"  # ...and already answered as unknown
    answers = []
    for purge_first in (False, True):
        each = new_server()
        each_client, each_grants = start_grants(each, 2 * PURGE_BUDGET + 1)
        each.now_ms += FORGOTTEN_AFTER_MS
        drain(each, 3 if purge_first else 0)
        assert len(each.hs.oauth.grants) == (0 if purge_first else len(each_grants))
        answers.append(each.poll(each_client, each_grants[-1]["device_code"]).body)
    assert answers[0] == answers[1]


def test_codes_leave_when_they_expire() -> None:
    server = new_server()
    server.register("alice")
    response = server.send(HttpRequest.json("POST", "/oauth2/registration", WEB_CLIENT))
    client_id = response.json()["client_id"]
    _, challenge = pkce_pair()
    browser = Browser(server)
    browser.sign_in("alice")
    query = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": "https://client.example/callback",
        "scope": device_scope("BROWSER001"),
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    page = browser.get("/oauth2/authorize?" + urlencode(query))
    for _ in range(2):
        allowed = browser.post("/oauth2/authorize", {**hidden_fields(page), "action": "allow"})
        assert parse_qs(urlsplit(allowed.header("location") or "").query)["code"]
    assert len(server.hs.oauth.codes) == 2
    server.now_ms += CODE_LIFETIME_S * 1000 - 1
    server.send_versions()
    assert len(server.hs.oauth.codes) == 2
    server.now_ms += 1
    server.send_versions()
    assert not server.hs.oauth.codes and holds_nothing(server.hs.oauth.queues.codes)


def test_browser_sessions_leave_when_they_expire_and_the_browser_must_sign_in_again() -> None:
    server = new_server()
    server.register("alice")
    browser, other = Browser(server), Browser(server)
    assert browser.sign_in("alice").status == 303 and other.sign_in("alice").status == 303
    assert len(server.hs.oauth.sessions) == 2 and len(server.hs.oauth.queues.sessions) == 2
    server.now_ms += SESSION_LIFETIME_S * 1000 - 1
    assert browser.get("/link").status == 200
    server.now_ms += 1
    to_login = browser.get("/link")
    assert to_login.status == 303 and (to_login.header("location") or "").startswith("/login")
    assert not server.hs.oauth.sessions and len(server.hs.oauth.queues.sessions) == 0


def test_abandoned_uia_sessions_leave_and_an_old_one_is_refused() -> None:
    server = new_server()
    token = server.register("alice", device_id="PHONE")["access_token"]
    server.register("bob")
    sessions = [server.delete_device(token, "PHONE", {}).json()["session"] for _ in range(2)]
    assert len(server.hs.registry.uia_sessions) == 2
    server.now_ms += UIA_SESSION_LIFETIME_S * 1000
    stale = server.delete_device(token, "PHONE", password_auth("alice", PASSWORD, sessions[0]))
    assert (stale.status, stale.json()["errcode"]) == (400, "M_UNKNOWN")
    assert not server.hs.registry.uia_sessions and len(server.hs.registry.uia_queue) == 0
    fresh = server.delete_device(token, "PHONE", {}).json()["session"]
    done = server.delete_device(token, "PHONE", password_auth("alice", PASSWORD, fresh))
    assert done.status == 200 and not server.hs.registry.uia_sessions


def test_memory_follows_the_live_records_in_a_steady_stream() -> None:
    server = new_server()
    client_id = server.register_client()
    step_ms = 10_000
    live = FORGOTTEN_AFTER_MS // step_ms
    for index in range(3 * live):
        server.now_ms += step_ms
        server.authorize_device(client_id, device_scope(f"D{index}"))
        oauth = server.hs.oauth
        assert len(oauth.grants) <= live and len(oauth.queues.grants) <= live and len(oauth.user_codes) <= live


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(("grant", "wait", "other")), st.integers(0, 200_000)), max_size=40))
def test_purged_tables_equal_and_hash_like_tables_built_from_their_content(steps: list[tuple[str, int]]) -> None:
    server = new_server(b"purge")
    client_id = server.register_client()
    for kind, amount in steps:
        if kind == "grant":
            server.authorize_device(client_id, device_scope("X"))
        elif kind == "wait":
            server.now_ms += amount
        else:
            server.send_versions()
        oauth = server.hs.oauth
        for table in (oauth.grants, oauth.user_codes, oauth.queues.grants.middle):
            rebuilt: FrozenMap[Any, Any] = FrozenMap(dict(table.items()))
            assert table == rebuilt and hash(table) == hash(rebuilt)
        assert hash(server.hs) == hash(server.hs)
    replay = new_server(b"purge")
    replay.register_client()
    for kind, amount in steps:
        if kind == "grant":
            replay.authorize_device(client_id, device_scope("X"))
        elif kind == "wait":
            replay.now_ms += amount
        else:
            replay.send_versions()
    assert replay.hs == server.hs and hash(replay.hs) == hash(server.hs)
