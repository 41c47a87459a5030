"""Behaviour of the pure rendezvous server core for every generation, stable and unstable."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qrlogin._json import dumps
from qrlogin.errors import LocalProtocolError
from qrlogin.http import HttpRequest
from qrlogin.rendezvous import MAX_PAYLOAD_BYTES, ApiGeneration, server
from qrlogin.rendezvous._http import is_opaque_id
from qrlogin.rendezvous.server import (
    V1_V2_UNSTABLE_PREFIX,
    V3_UNSTABLE_PREFIX,
    Access,
    InMemoryStore,
    Mount,
    RendezvousServer,
    ServerConfig,
    Session,
    created_json,
    default_mounts,
    handle,
    plan,
    read_json,
    token_json,
)
from tests.rendezvous.rendezvous_util import BASE, PREFIX, STABLE_PREFIX, Loopback, jbody, json_of, req

V1, V2, V3 = ApiGeneration.V1, ApiGeneration.V2, ApiGeneration.V3


def create_v1(net: Loopback, body: bytes = b"hello", prefix: str = V1_V2_UNSTABLE_PREFIX) -> tuple[str, str]:
    response = net.server.respond(
        req("POST", prefix, body, content_type="text/plain"), now_ms=net.now_ms, entropy=net.entropy()
    )
    assert response.status == 201, response
    url = json_of(response)["url"]
    assert url.startswith(BASE + prefix + "/")
    etag = response.header("etag")
    assert etag is not None
    return url[len(BASE) :], etag


def create_json(
    net: Loopback, generation: ApiGeneration, data: str = "hello", prefix: str | None = None
) -> dict[str, object]:
    response = net.server.respond(
        req("POST", prefix or PREFIX[generation], jbody(data=data), content_type="application/json"),
        now_ms=net.now_ms,
        entropy=net.entropy(),
    )
    assert response.status == 200, response
    return dict(json_of(response))


def call(net: Loopback, request: HttpRequest):  # type: ignore[no-untyped-def]
    return net.server.respond(request, now_ms=net.now_ms, entropy=net.entropy())


# ---------------------------------------------------------------------------------------------------------- v1


def test_v1_full_cycle() -> None:
    net = Loopback()
    path, etag = create_v1(net, b"first")
    got = call(net, req("GET", path))
    assert got.status == 200
    assert got.header("content-type") == "text/plain"  # exactly: matrix-js-sdk ignores anything else
    assert got.body == b"first"
    assert got.header("etag") == etag
    for name in ("expires", "last-modified"):
        assert got.header(name)
    assert got.header("cache-control") == "no-store"
    assert got.header("pragma") == "no-cache"
    assert "ETag" in (got.header("access-control-expose-headers") or "")
    assert call(net, req("GET", path, if_none_match=etag)).status == 304
    put = call(net, req("PUT", path, b"second", content_type="text/plain", if_match=etag))
    assert put.status == 202
    new_etag = put.header("etag")
    assert new_etag not in (None, etag)
    # A write of the very same bytes still changes the ETag (the texts ask for it; Synapse hashes the body).
    same = call(net, req("PUT", path, b"second", content_type="text/plain", if_match=new_etag or ""))
    assert same.status == 202
    assert same.header("etag") not in (None, new_etag)
    stale = call(net, req("PUT", path, b"third", content_type="text/plain", if_match=etag))
    assert stale.status == 412
    assert json_of(stale) == {
        "errcode": "M_UNKNOWN",
        "org.matrix.msc4108.errcode": "M_CONCURRENT_WRITE",
        "error": "ETag does not match",
    }
    assert call(net, req("GET", path)).body == b"second"
    deleted = call(net, req("DELETE", path))
    assert deleted.status == 204
    gone = call(net, req("GET", path))
    assert gone.status == 404
    assert json_of(gone)["errcode"] == "M_NOT_FOUND"


def test_v1_put_preconditions() -> None:
    net = Loopback()
    path, etag = create_v1(net)
    assert json_of(call(net, req("PUT", path, b"x", content_type="text/plain")))["errcode"] == "M_MISSING_PARAM"
    for bad in ("W/" + etag, etag + ", " + etag, "*", etag.strip('"')):
        response = call(net, req("PUT", path, b"x", content_type="text/plain", if_match=bad))
        assert (response.status, json_of(response)["errcode"]) == (400, "M_INVALID_PARAM"), bad
    wrong_type = call(net, req("PUT", path, b"x", content_type="application/json", if_match=etag))
    assert json_of(wrong_type)["errcode"] == "M_INVALID_PARAM"
    assert call(net, req("GET", path)).body == b"hello"


def test_v1_stable_errcode() -> None:
    mounts = (Mount(prefix=STABLE_PREFIX, generations=frozenset({V1}), stable=True),)
    net = Loopback(ServerConfig(mounts=mounts, public_base_url=BASE))
    path, etag = create_v1(net, prefix=STABLE_PREFIX)
    call(net, req("PUT", path, b"a", content_type="text/plain", if_match=etag))
    stale = call(net, req("PUT", path, b"b", content_type="text/plain", if_match=etag))
    assert json_of(stale)["errcode"] == "M_CONCURRENT_WRITE"


def test_v1_post_content_type_rules() -> None:
    net = Loopback(ServerConfig(mounts=default_mounts([V1])))
    missing = call(net, req("POST", V1_V2_UNSTABLE_PREFIX, b"x"))
    assert (missing.status, json_of(missing)["errcode"]) == (400, "M_MISSING_PARAM")
    wrong = call(net, req("POST", V1_V2_UNSTABLE_PREFIX, b"{}", content_type="application/json"))
    assert (wrong.status, json_of(wrong)["errcode"]) == (400, "M_INVALID_PARAM")


def test_shared_prefix_dispatches_on_content_type() -> None:
    net = Loopback()
    v1 = call(net, req("POST", V1_V2_UNSTABLE_PREFIX, b"plain", content_type="text/plain; charset=utf-8"))
    assert v1.status == 201 and "url" in json_of(v1)
    v2 = call(net, req("POST", V1_V2_UNSTABLE_PREFIX, jbody(data="json"), content_type="application/json"))
    assert v2.status == 200 and set(json_of(v2)) == {"id", "sequence_token", "expires_ts"}
    other = call(net, req("POST", V1_V2_UNSTABLE_PREFIX, b"x", content_type="text/html"))
    assert (other.status, json_of(other)["errcode"]) == (400, "M_INVALID_PARAM")


# ------------------------------------------------------------------------------------------------------- v2/v3


@pytest.mark.parametrize("generation", [V2, V3])
def test_json_full_cycle(generation: ApiGeneration) -> None:
    net = Loopback()
    created = create_json(net, generation, "first")
    expiry_key = "expires_ts" if generation is V2 else "expires_in_ms"
    assert set(created) == {"id", "sequence_token", expiry_key}
    expected_expiry = net.now_ms + 120_000 if generation is V2 else 120_000
    assert created[expiry_key] == expected_expiry
    path = f"{PREFIX[generation]}/{created['id']}"
    token = created["sequence_token"]
    net.now_ms += 5_000
    got = json_of(call(net, req("GET", path)))
    assert got["data"] == "first" and got["sequence_token"] == token
    if generation is V3:
        assert got["expires_in_ms"] == 115_000
    put = call(net, req("PUT", path, jbody(sequence_token=token, data="first")))
    assert put.status == 200
    new_token = json_of(put)["sequence_token"]
    assert new_token != token and is_opaque_id(new_token)
    stale = call(net, req("PUT", path, jbody(sequence_token=token, data="other")))
    assert stale.status == 409
    errcode = (
        {"errcode": "IO_ELEMENT_MSC4388_CONCURRENT_WRITE"}
        if generation is V3
        else {"errcode": "M_UNKNOWN", "org.matrix.msc4108.errcode": "M_CONCURRENT_WRITE"}
    )
    assert {k: v for k, v in json_of(stale).items() if k != "error"} == errcode
    deleted = call(net, req("DELETE", path))
    assert (deleted.status, json_of(deleted)) == (200, {})
    for method in ("GET", "DELETE"):
        gone = call(net, req(method, path))
        assert (gone.status, json_of(gone)["errcode"]) == (404, "M_NOT_FOUND")


def test_v3_idempotent_retry_and_v2_has_none() -> None:
    net = Loopback()
    for generation, retry_status in ((V3, 200), (V2, 409)):
        created = create_json(net, generation)
        path = f"{PREFIX[generation]}/{created['id']}"
        put = jbody(sequence_token=created["sequence_token"], data="mine")
        first = call(net, req("PUT", path, put))
        again = call(net, req("PUT", path, put))
        assert again.status == retry_status
        if generation is V3:
            # Acknowledged again with the current token, and nothing was written a second time.
            assert json_of(again)["sequence_token"] == json_of(first)["sequence_token"]
            assert json_of(call(net, req("GET", path)))["sequence_token"] == json_of(first)["sequence_token"]


def test_v3_stable_prefix_and_discovery() -> None:
    net = Loopback()
    created = create_json(net, V3, prefix=STABLE_PREFIX)
    path = f"{STABLE_PREFIX}/{created['id']}"
    stale = call(net, req("PUT", path, jbody(sequence_token="nope", data="x")))
    assert json_of(stale)["errcode"] == "M_CONCURRENT_WRITE"
    assert json_of(call(net, req("GET", V3_UNSTABLE_PREFIX))) == {"create_available": True}
    assert call(net, req("GET", V1_V2_UNSTABLE_PREFIX)).status == 405


@pytest.mark.parametrize(
    "headers",
    [
        {"sec_fetch_mode": "navigate"},
        {"sec_fetch_dest": "document"},
        {"sec_fetch_user": "?1"},
        {"sec_fetch_site": "none"},
    ],
)
def test_v3_refuses_browser_navigation(headers: dict[str, str]) -> None:
    net = Loopback()
    created = create_json(net, V3)
    path = f"{V3_UNSTABLE_PREFIX}/{created['id']}"
    refused = call(net, req("GET", path, b"", **headers))
    assert (refused.status, json_of(refused)["errcode"]) == (403, "M_FORBIDDEN")
    fetch = call(net, req("GET", path, sec_fetch_mode="cors", sec_fetch_dest="empty", sec_fetch_site="cross-site"))
    assert fetch.status == 200


@pytest.mark.parametrize("generation", [V2, V3])
def test_json_body_validation(generation: ApiGeneration) -> None:
    net = Loopback()
    created = create_json(net, generation)
    path = f"{PREFIX[generation]}/{created['id']}"
    cases = [
        (b"{", "M_NOT_JSON"),
        (b"[]", "M_NOT_JSON"),
        (b'{"data": "a", "data": "b", "sequence_token": "t"}', "M_NOT_JSON"),
        (b'{"data": NaN, "sequence_token": "t"}', "M_NOT_JSON"),
        (b"[" * 5000 + b"]" * 5000, "M_NOT_JSON"),
        (b'{"data": "a"}', "M_MISSING_PARAM"),
        (b'{"data": 1, "sequence_token": "t"}', "M_INVALID_PARAM"),
        # A lone surrogate escape is refused by the shared strict JSON reader itself (qrlogin._json).
        (b'{"data": "\\ud800", "sequence_token": "t"}', "M_NOT_JSON"),
        (b"\xff", "M_NOT_JSON"),
    ]
    for body, errcode in cases:
        response = call(net, req("PUT", path, body))
        assert (response.status, json_of(response)["errcode"]) == (400, errcode), body[:40]


def test_size_limit_comes_first() -> None:
    net = Loopback()
    # v1: 4097 bytes with no content type at all still gets 413, not 400.
    too_big = call(net, req("POST", V1_V2_UNSTABLE_PREFIX, b"x" * (MAX_PAYLOAD_BYTES + 1), content_type="text/plain"))
    assert (too_big.status, json_of(too_big)["errcode"]) == (413, "M_TOO_LARGE")
    path, etag = create_v1(net)
    oversize_put = call(net, req("PUT", path, b"x" * (MAX_PAYLOAD_BYTES + 1), content_type="text/plain"))
    assert oversize_put.status == 413
    exact = call(net, req("PUT", path, b"x" * MAX_PAYLOAD_BYTES, content_type="text/plain", if_match=etag))
    assert exact.status == 202
    # JSON: a 4097-byte data value; and a body too large to be worth parsing at all.
    for generation in (V2, V3):
        over = call(net, req("POST", PREFIX[generation], jbody(data="é" * 2049), content_type="application/json"))
        assert over.status == 413
        ok = call(net, req("POST", PREFIX[generation], jbody(data="é" * 2048), content_type="application/json"))
        assert ok.status == 200
        huge = call(net, req("POST", PREFIX[generation], b"{" * 100_000, content_type="application/json"))
        assert huge.status == 413
        unknown_session = call(net, req("PUT", PREFIX[generation] + "/nope", b" " * 100_000))
        assert unknown_session.status == 413


def test_expiry_from_injected_time() -> None:
    net = Loopback()
    created = create_json(net, V3)
    path = f"{V3_UNSTABLE_PREFIX}/{created['id']}"
    net.now_ms += 119_999
    assert call(net, req("GET", path)).status == 200
    net.now_ms += 1
    assert call(net, req("GET", path)).status == 404
    assert len(net.store) == 0  # dropped when touched


def test_capacity_limit_is_clear_and_recovers() -> None:
    net = Loopback(ServerConfig(max_sessions=2, ttl_ms=120_000))
    create_json(net, V3)
    create_json(net, V3)
    full = call(net, req("POST", V3_UNSTABLE_PREFIX, jbody(data="x")))
    assert full.status == 429
    assert json_of(full)["errcode"] == "M_LIMIT_EXCEEDED"
    assert "capacity" in json_of(full)["error"]
    full_v1 = call(net, req("POST", V1_V2_UNSTABLE_PREFIX, b"x", content_type="text/plain"))
    assert (full_v1.status, json_of(full_v1)["errcode"]) == (429, "M_UNKNOWN")
    net.now_ms += 120_000
    create_json(net, V3)  # the expired ones made room


def test_sessions_stay_under_their_prefix() -> None:
    net = Loopback()
    created = create_json(net, V3)
    foreign = f"{V1_V2_UNSTABLE_PREFIX}/{created['id']}"
    assert call(net, req("GET", foreign)).status == 404
    assert call(net, req("DELETE", foreign)).status == 404
    assert call(net, req("GET", f"{V3_UNSTABLE_PREFIX}/{created['id']}")).status == 200


def test_routing_and_cors() -> None:
    net = Loopback()
    for path in ("/", "/_matrix/client/v3/rendezvous", V3_UNSTABLE_PREFIX + "/a/b"):
        response = call(net, req("GET", path))
        assert (response.status, json_of(response)["errcode"]) == (404, "M_UNRECOGNIZED")
    preflight = call(net, req("OPTIONS", V3_UNSTABLE_PREFIX + "/anything"))
    assert preflight.status == 204
    assert preflight.header("access-control-allow-origin") == "*"
    assert "If-Match" in (preflight.header("access-control-allow-headers") or "")
    assert call(net, req("PATCH", V3_UNSTABLE_PREFIX)).status == 405


def test_config_validation() -> None:
    with pytest.raises(LocalProtocolError, match="indistinguishable"):
        Mount(prefix="/x", generations=frozenset({V2, V3}))
    with pytest.raises(LocalProtocolError, match="ttl"):
        ServerConfig(ttl_ms=301_000)
    with pytest.raises(LocalProtocolError, match="share a prefix"):
        ServerConfig(mounts=(Mount(prefix="/x", generations=frozenset({V1})),) * 2)
    with pytest.raises(LocalProtocolError, match="at least one generation"):
        Mount(prefix="/x", generations=frozenset())
    for prefix in ("x", "/x/"):
        with pytest.raises(LocalProtocolError, match="prefix"):
            Mount(prefix=prefix, generations=frozenset({V1}))
    with pytest.raises(LocalProtocolError, match="max_sessions"):
        ServerConfig(max_sessions=0)
    # "/x/v3" would be both a mount's collection and a session of "/x"; "/xy" is only a longer name.
    with pytest.raises(LocalProtocolError, match="lies under"):
        ServerConfig(
            mounts=(Mount(prefix="/x", generations=frozenset({V1})), Mount(prefix="/x/v3", generations=frozenset({V3})))
        )
    ServerConfig(
        mounts=(Mount(prefix="/x", generations=frozenset({V1})), Mount(prefix="/xy", generations=frozenset({V3})))
    )
    with pytest.raises(LocalProtocolError, match="entropy"):
        RendezvousServer(ServerConfig(), InMemoryStore()).respond(
            req("POST", V3_UNSTABLE_PREFIX, jbody(data="x")), now_ms=0, entropy=bytes(31)
        )


def test_default_mounts_without_v1_or_v2_have_no_legacy_prefix() -> None:
    (mount,) = default_mounts(generations=(V3,))
    assert (mount.prefix, mount.generations) == (V3_UNSTABLE_PREFIX, frozenset({V3}))


@settings(max_examples=100)
@given(entropy=st.binary(min_size=32, max_size=32), data=st.text(max_size=50))
def test_ids_and_tokens_follow_the_grammar_and_always_change(entropy: bytes, data: str) -> None:
    config = ServerConfig()
    server = RendezvousServer(config, InMemoryStore())
    created = server.respond(req("POST", V3_UNSTABLE_PREFIX, jbody(data=data)), now_ms=0, entropy=entropy)
    content = json_of(created)
    assert is_opaque_id(content["id"]) and is_opaque_id(content["sequence_token"])
    path = f"{V3_UNSTABLE_PREFIX}/{content['id']}"
    token = content["sequence_token"]
    # Even with the same entropy and the same data, every write gets a fresh token.
    for _ in range(3):
        put = server.respond(req("PUT", path, jbody(sequence_token=token, data=data)), now_ms=1, entropy=entropy)
        new = json_of(put)["sequence_token"]
        assert new != token and is_opaque_id(new)
        token = new


def test_handle_is_pure() -> None:
    config = ServerConfig()
    net = Loopback(config)
    created = create_json(net, V3)
    session = net.store.get(str(created["id"]))
    request = req(
        "PUT", f"{V3_UNSTABLE_PREFIX}/{created['id']}", jbody(sequence_token=created["sequence_token"], data="n")
    )
    step = plan(config, request)
    assert isinstance(step, Access)
    first = handle(config, step, session, request, now_ms=1, entropy=b"\x01" * 32)
    second = handle(config, step, session, request, now_ms=1, entropy=b"\x01" * 32)
    assert first == second
    assert net.store.get(str(created["id"])) is session  # nothing was written by handle itself


def test_in_memory_store_purges_in_expiry_order() -> None:
    net = Loopback(ServerConfig(max_sessions=1_000, ttl_ms=1_000))
    ids = []
    for _ in range(5):
        net.now_ms += 100
        ids.append(str(create_json(net, V3)["id"]))
    # Delete one early: its heap entry is skipped later, not counted twice.
    assert call(net, req("DELETE", f"{V3_UNSTABLE_PREFIX}/{ids[1]}")).status == 200
    assert net.store.purge_expired(net.now_ms + 1_000 - 400) == 1  # the first one (created 400 ms before the last)
    assert net.store.purge_expired(net.now_ms + 1_000 - 200) == 1  # the second went already, so only the third
    assert [i for i in ids if net.store.get(i) is not None] == ids[3:]
    assert net.store.purge_expired(net.now_ms + 1_000) == 2
    assert len(net.store) == 0


def test_in_memory_store_orders_a_session_that_expires_early_by_its_heap() -> None:
    # A clock stepped back (or a second server with a shorter TTL) creates a session that expires before the last one
    # queued: it goes to the heap, and purging still finds it in time.
    net = Loopback(ServerConfig(max_sessions=1_000, ttl_ms=10_000))
    net.now_ms = 50_000
    late = str(create_json(net, V3)["id"])
    net.now_ms = 0
    early = str(create_json(net, V3)["id"])
    assert net.store.purge_expired(10_000) == 1
    assert net.store.get(early) is None and net.store.get(late) is not None
    session = net.store.get(late)
    assert session is not None
    assert not net.store.insert(session, now_ms=10_000, capacity=1_000)  # the id is taken


def test_in_memory_store_rebuilds_an_index_of_mostly_deleted_sessions() -> None:
    net = Loopback(ServerConfig(max_sessions=5_000, ttl_ms=300_000))
    ids = [str(create_json(net, V3)["id"]) for _ in range(1_100)]
    for session_id in ids[:-1]:
        assert call(net, req("DELETE", f"{V3_UNSTABLE_PREFIX}/{session_id}")).status == 200
    assert net.store.purge_expired(net.now_ms) == 0  # nothing expired, but 1,100 index entries for one session: rebuilt
    assert len(net.store) == 1
    assert net.store.purge_expired(net.now_ms + 300_000) == 1
    assert len(net.store) == 0


class _LosingStore(InMemoryStore):
    """A store on which every compare-and-set loses to a concurrent writer."""

    def compare_and_set(self, session_id: str, expected: Session | None, new: Session | None) -> bool:
        return False


def test_a_write_that_always_loses_the_race_answers_503_after_bounded_attempts() -> None:
    store = _LosingStore()
    server = RendezvousServer(ServerConfig(), store)
    created = json_of(server.respond(req("POST", V3_UNSTABLE_PREFIX, jbody(data="a")), now_ms=0, entropy=bytes(32)))
    put = req("PUT", f"{V3_UNSTABLE_PREFIX}/{created['id']}", jbody(sequence_token=created["sequence_token"], data="b"))
    response = server.respond(put, now_ms=1, entropy=bytes(32))
    assert (response.status, json_of(response)["errcode"]) == (503, "M_UNKNOWN")
    assert store.get(str(created["id"])) is not None


@given(
    data=st.text(st.characters(exclude_categories=["Cs"]), max_size=300),  # a stored payload is valid UTF-8
    revision=st.integers(0, 2**31),
    nonce=st.integers(0, 2**128 - 1),
    id_bytes=st.binary(min_size=16, max_size=16),
    expires_ms=st.integers(0, 2**45),
    now_ms=st.integers(0, 2**45),
    generation=st.sampled_from([ApiGeneration.V2, ApiGeneration.V3]),
)
def test_the_json_answers_are_the_bytes_dumps_writes(
    *, data: str, revision: int, nonce: int, id_bytes: bytes, expires_ms: int, now_ms: int, generation: ApiGeneration
) -> None:
    # The answers are written from templates; the templates must agree with the project's JSON writer on every
    # session, whatever its payload holds (quotes, backslashes, control characters, any Unicode).
    session = Session(id=server._b64url(id_bytes), generation=generation, prefix=PREFIX[generation],
                      data=data.encode("utf-8"), revision=revision, nonce=nonce,
                      modified_ms=0, expires_ms=expires_ms)  # fmt: skip
    expiry: dict[str, object] = (
        {"expires_ts": expires_ms} if generation is ApiGeneration.V2 else {"expires_in_ms": max(0, expires_ms - now_ms)}
    )
    assert created_json(session, session.token, now_ms) == dumps(
        {"id": session.id, "sequence_token": session.token, **expiry}
    )
    assert read_json(session, now_ms) == dumps({"data": data, "sequence_token": session.token, **expiry})
    assert token_json(session) == dumps({"sequence_token": session.token})
    assert json.loads(read_json(session, now_ms))["data"] == data
