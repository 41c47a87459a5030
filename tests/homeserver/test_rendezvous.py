"""The rendezvous server core behind the homeserver model's hook: all generations, as one immutable value."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qrlogin.homeserver import Homeserver, HttpRequest, add_user, handle, new_homeserver
from qrlogin.homeserver.rendezvous import CreateMode, install_rendezvous, new_rendezvous_store
from qrlogin.rendezvous.server import V1_V2_UNSTABLE_PREFIX, V3_UNSTABLE_PREFIX

BASE = "https://matrix.example.org"


def _hs() -> Homeserver:
    hs = new_homeserver(server_name="example.org", base_url=BASE, seed=b"hs")
    return install_rendezvous(hs, seed=b"rz", ttl_ms=60_000)


def test_v1_session_url_is_on_the_homeserver_base_url() -> None:
    hs = _hs()
    post = HttpRequest(
        method="POST", target=V1_V2_UNSTABLE_PREFIX, headers=(("content-type", "text/plain"),), body=b"x"
    )
    hs, response = handle(hs, post, now_ms=0)
    assert response.status == 201
    url = json.loads(response.body)["url"]
    assert url.startswith(BASE + V1_V2_UNSTABLE_PREFIX + "/")
    etag = response.header("etag")
    assert etag is not None
    path = url.removeprefix(BASE)
    hs, response = handle(hs, HttpRequest.get(path), now_ms=1)
    assert response.status == 200 and response.body == b"x"
    put = HttpRequest(
        method="PUT", target=path, headers=(("content-type", "text/plain"), ("if-match", etag)), body=b"y"
    )
    hs, response = handle(hs, put, now_ms=2)
    assert response.status == 202
    hs, response = handle(hs, put, now_ms=3)  # the same ETag again: the slot moved on
    assert response.status == 412


def test_v2_and_v3_sessions_and_expiry() -> None:
    hs = _hs()
    for prefix in (V1_V2_UNSTABLE_PREFIX, V3_UNSTABLE_PREFIX):
        hs, response = handle(hs, HttpRequest.json("POST", prefix, {"data": "hello"}), now_ms=0)
        assert response.status == 200
        created = json.loads(response.body)
        path = f"{prefix}/{created['id']}"
        hs, response = handle(hs, HttpRequest.get(path), now_ms=10)
        assert json.loads(response.body)["data"] == "hello"
        body = {"sequence_token": created["sequence_token"], "data": "reply"}
        hs, response = handle(hs, HttpRequest.json("PUT", path, body), now_ms=20)
        assert response.status == 200
        hs, response = handle(hs, HttpRequest.get(path), now_ms=60_000)
        assert response.status == 404  # expired after the TTL
    assert ("expires_in_ms" in created) and ("expires_ts" not in created)  # the last one was v3


def test_delete_removes_the_session_and_same_seed_same_ids() -> None:
    first, second = _hs(), _hs()
    request = HttpRequest.json("POST", V3_UNSTABLE_PREFIX, {"data": ""})
    first, a = handle(first, request, now_ms=0)
    second, b = handle(second, request, now_ms=0)
    assert a.body == b.body and first == second
    path = f"{V3_UNSTABLE_PREFIX}/{json.loads(a.body)['id']}"
    first, response = handle(first, HttpRequest(method="DELETE", target=path), now_ms=1)
    assert response.status == 200
    assert first.rendezvous is not None and len(first.rendezvous.sessions) == 0  # type: ignore[attr-defined]
    first, response = handle(first, HttpRequest.get(path), now_ms=2)
    assert response.status == 404


def test_capacity_counts_only_live_sessions() -> None:
    store = new_rendezvous_store(base_url=BASE, seed=b"rz", ttl_ms=1_000, max_sessions=1)
    request = HttpRequest.json("POST", V3_UNSTABLE_PREFIX, {"data": ""})
    store, response = store.handle(request, now_ms=0)
    assert response.status == 200
    store, response = store.handle(request, now_ms=10)
    assert response.status == 429
    store, response = store.handle(request, now_ms=1_000)  # the first one has expired
    assert response.status == 200
    assert len(store.sessions) == 1


def test_other_paths_are_answered_by_the_rendezvous_core() -> None:
    hs = _hs()
    hs, response = handle(hs, HttpRequest.get(V3_UNSTABLE_PREFIX), now_ms=0)
    assert response.status == 200 and json.loads(response.body) == {"create_available": True}
    hs, response = handle(hs, HttpRequest.get(V3_UNSTABLE_PREFIX + "/nope"), now_ms=0)
    assert response.status == 404


def _with_user(mode: CreateMode) -> tuple[Homeserver, str]:
    hs = new_homeserver(server_name="example.org", base_url=BASE, seed=b"hs")
    hs = install_rendezvous(hs, seed=b"rz", ttl_ms=60_000, create_mode=mode)
    hs, _ = add_user(hs, "alice", "pw")
    login = {"type": "m.login.password", "user": "alice", "password": "pw"}
    hs, response = handle(hs, HttpRequest.json("POST", "/_matrix/client/v3/login", login), now_ms=0)
    return hs, response.json()["access_token"]


CREATES = [
    HttpRequest(method="POST", target=V1_V2_UNSTABLE_PREFIX, headers=(("content-type", "text/plain"),), body=b"x"),
    HttpRequest.json("POST", V1_V2_UNSTABLE_PREFIX, {"data": "x"}),
    HttpRequest.json("POST", V3_UNSTABLE_PREFIX, {"data": "x"}),
]


@pytest.mark.parametrize("mode", list(CreateMode))
@pytest.mark.parametrize("caller", ["anonymous", "unknown token", "signed in"])
def test_discovery_says_exactly_what_create_does(mode: CreateMode, caller: str) -> None:
    hs, token = _with_user(mode)
    presented = {"anonymous": None, "unknown token": "syt_forged", "signed in": token}[caller]
    hs, discovery = handle(hs, HttpRequest.get(V3_UNSTABLE_PREFIX, access_token=presented), now_ms=1)
    assert discovery.status == 200
    available = discovery.json()["create_available"]
    expected = mode is CreateMode.OPEN or (mode is CreateMode.AUTHENTICATED and caller == "signed in")
    assert available is expected
    for create in CREATES:
        auth = () if presented is None else (("authorization", f"Bearer {presented}"),)
        before = hs
        hs, response = handle(hs, replace(create, headers=(*create.headers, *auth)), now_ms=2)
        if available:
            assert response.status in (200, 201)
        else:
            assert (response.status, response.json()["errcode"]) == (403, "M_FORBIDDEN")
            assert hs == before  # a refused create draws nothing and stores nothing


def test_reading_and_writing_a_session_needs_no_token_in_authenticated_mode() -> None:
    hs, token = _with_user(CreateMode.AUTHENTICATED)
    hs, created = handle(hs, HttpRequest.json("POST", V3_UNSTABLE_PREFIX, {"data": "a"}, access_token=token), now_ms=1)
    path = f"{V3_UNSTABLE_PREFIX}/{created.json()['id']}"
    hs, read = handle(hs, HttpRequest.get(path), now_ms=2)
    assert read.status == 200 and read.json()["data"] == "a"
    body = {"sequence_token": created.json()["sequence_token"], "data": "b"}
    hs, written = handle(hs, HttpRequest.json("PUT", path, body), now_ms=3)
    assert written.status == 200


Operation = tuple[str, int]


@settings(max_examples=200)
@given(
    st.lists(
        st.tuples(st.sampled_from(["create", "delete", "read", "wait"]), st.integers(min_value=0, max_value=2_500)),
        max_size=60,
    ),
    st.integers(min_value=1, max_value=4),
)
def test_capacity_and_expiry_match_a_store_that_scans_every_session(
    operations: list[Operation], max_sessions: int
) -> None:
    """The queue-driven store admits a create exactly when fewer than ``max_sessions`` sessions are live."""
    store = new_rendezvous_store(base_url=BASE, seed=b"rz", ttl_ms=1_000, max_sessions=max_sessions)
    expires: dict[str, int] = {}  # every session ever created that was not deleted: id -> expiry
    now = 0
    for kind, argument in operations:
        if kind == "wait":
            now += argument
            continue
        if kind == "create":
            live = sum(1 for expiry in expires.values() if now < expiry)
            store, response = store.handle(HttpRequest.json("POST", V3_UNSTABLE_PREFIX, {"data": ""}), now_ms=now)
            assert response.status == (200 if live < max_sessions else 429)
            if response.status == 200:
                expires[response.json()["id"]] = now + 1_000
        elif expires:
            session_id = sorted(expires)[argument % len(expires)]
            method = "DELETE" if kind == "delete" else "GET"
            store, response = store.handle(
                HttpRequest(method=method, target=f"{V3_UNSTABLE_PREFIX}/{session_id}"), now_ms=now
            )
            assert response.status == (200 if now < expires[session_id] else 404)
            if kind == "delete" or now >= expires[session_id]:
                del expires[session_id]
        assert set(store.sessions) <= set(expires)
        assert {k for k, v in expires.items() if now < v} <= set(store.sessions)
        assert set(store.queue_positions) == set(store.sessions)
        assert len(store.expiry_queue) == len(store.sessions)
