"""The rendezvous server core behind the homeserver model's hook: all generations, as one immutable value."""

from __future__ import annotations

import json

from qrlogin.homeserver import Homeserver, HttpRequest, handle, new_homeserver
from qrlogin.homeserver.rendezvous import install_rendezvous, new_rendezvous_store
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
