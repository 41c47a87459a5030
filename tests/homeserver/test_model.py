"""Routing, the rendezvous hook, determinism and totality of ``handle`` (qrlogin.homeserver.model)."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qrlogin.homeserver import (
    RENDEZVOUS_PREFIXES,
    HttpRequest,
    HttpResponse,
    RendezvousService,
    handle,
    new_homeserver,
    with_rendezvous,
)
from qrlogin.homeserver._http import MAX_BODY_BYTES, MAX_JSON_DEPTH
from qrlogin.homeserver.rendezvous import install_rendezvous
from qrlogin.http import origin_form
from tests.homeserver.homeserver_support import V3, new_server, password_auth

JSON_ENDPOINTS = [
    ("POST", f"{V3}/login"),
    ("POST", f"{V3}/register"),
    ("POST", "/oauth2/registration"),
]
FORM_ENDPOINTS = [("POST", "/oauth2/device"), ("POST", "/oauth2/token")]


def raw(method: str, path: str, body: bytes, content_type: str = "application/json") -> HttpRequest:
    return HttpRequest(method=method, target=path, headers=(("content-type", content_type),), body=body)


def assert_well_formed(response: HttpResponse) -> dict[str, object]:
    assert 200 <= response.status <= 599
    assert response.header("content-type") == "application/json"
    content = json.loads(response.body)
    assert isinstance(content, dict)
    if response.status >= 400 and response.status != 401:
        assert ("errcode" in content) != ("error_description" in content)
    return content


def test_unknown_paths_and_methods() -> None:
    server = new_server()
    for path in ["/", "/_matrix/client/r0/login", f"{V3}/nothing", f"{V3}/devices/A/B", "no-slash", "/oauth2/other"]:
        response = server.send(HttpRequest.get(path))
        assert (response.status, response.json()["errcode"]) == (404, "M_UNRECOGNIZED"), path
    for method, path in [
        ("DELETE", f"{V3}/login"),
        ("GET", f"{V3}/register"),
        ("POST", f"{V3}/devices"),
        ("POST", f"{V3}/devices/X"),
        ("GET", "/oauth2/token"),
        ("POST", "/_matrix/client/v1/auth_metadata"),
        ("PUT", "/.well-known/matrix/client"),
        ("POST", "/_matrix/client/versions"),
    ]:
        response = server.send(HttpRequest(method=method, target=path))
        assert (response.status, response.json()["errcode"]) == (405, "M_UNRECOGNIZED"), (method, path)


def test_method_is_checked_before_authentication() -> None:
    response = new_server().send(HttpRequest(method="PATCH", target=f"{V3}/devices/X"))
    assert response.status == 405


@pytest.mark.parametrize("prefix", RENDEZVOUS_PREFIXES)
def test_rendezvous_paths_are_unrecognized_without_a_service(prefix: str) -> None:
    server = new_server()
    for path in [prefix, prefix + "/abc"]:
        response = server.send(HttpRequest(method="POST", target=path, body=b"x"))
        assert (response.status, response.json()["errcode"]) == (404, "M_UNRECOGNIZED")


@dataclass(frozen=True, slots=True, kw_only=True)
class RecordingRendezvous:
    """A stand-in service: answers 200 with what it saw, and counts the requests it handled."""

    handled: tuple[tuple[str, str, int], ...] = ()

    def handle(self, request: HttpRequest, *, now_ms: int) -> tuple[RendezvousService, HttpResponse]:
        seen = (request.method, request.path, now_ms)
        body = json.dumps({"seen": list(seen)}).encode()
        return RecordingRendezvous(handled=(*self.handled, seen)), HttpResponse(status=200, body=body)


def test_rendezvous_requests_are_delegated_to_the_installed_service() -> None:
    hs = with_rendezvous(new_server().hs, RecordingRendezvous())
    paths = [prefix + suffix for prefix in RENDEZVOUS_PREFIXES for suffix in ("", "/id1")]
    for index, path in enumerate(paths):
        hs, response = handle(hs, HttpRequest(method="PUT", target=path), now_ms=index)
        assert (response.status, response.json()) == (200, {"seen": ["PUT", path, index]})
    assert isinstance(hs.rendezvous, RecordingRendezvous)
    assert [seen[1] for seen in hs.rendezvous.handled] == paths
    # A path that merely shares the prefix text is not a rendezvous path.
    hs, response = handle(hs, HttpRequest.get(RENDEZVOUS_PREFIXES[0] + "x"), now_ms=0)
    assert response.status == 404
    assert isinstance(hs.rendezvous, RecordingRendezvous) and len(hs.rendezvous.handled) == len(paths)


def transcript(seed: bytes) -> list[tuple[int, bytes]]:
    server = new_server(seed)
    out = []
    content = server.register("alice")
    out.append((200, json.dumps(content).encode()))
    for response in [
        server.login("alice"),
        server.delete_device(content["access_token"], content["device_id"], {}),
        server.send(
            HttpRequest.json(
                "POST",
                "/oauth2/registration",
                {"client_uri": "https://c.example", "grant_types": ["urn:ietf:params:oauth:grant-type:device_code"]},
            )
        ),
    ]:
        out.append((response.status, response.body))
    client_id = json.loads(out[-1][1])["client_id"]
    response = server.authorize_device(client_id, "urn:matrix:client:api:* urn:matrix:client:device:ABCDEFGHIJ")
    out.append((response.status, response.body))
    return out


def test_same_seed_same_bytes_different_seed_different_secrets() -> None:
    assert transcript(b"one") == transcript(b"one")
    first, second = transcript(b"one"), transcript(b"two")
    assert [status for status, _ in first] == [status for status, _ in second]
    token_one = json.loads(first[0][1])["access_token"]
    token_two = json.loads(second[0][1])["access_token"]
    assert token_one != token_two


def test_state_is_hashable_and_hides_secrets() -> None:
    server = new_server(b"hide me")
    content = server.register("alice", password="hunter2")
    server.login("alice", "hunter2")
    text = repr(server.hs)
    assert content["access_token"] not in text and "hunter2" not in text and "hide me" not in text
    assert hash(server.hs) == hash(server.hs)
    request = HttpRequest.json("PUT", "/x", {"password": "hunter2"}, access_token=content["access_token"])
    shown = repr(request)
    assert content["access_token"] not in shown and "hunter2" not in shown and "authorization" in shown
    assert "t0k" not in repr(HttpRequest(method="GET", target=origin_form("/", (("access_token", "t0k"),))))
    replay = new_server(b"hide me")
    replay.register("alice", password="hunter2")
    replay.login("alice", "hunter2")
    assert replay.hs == server.hs and hash(replay.hs) == hash(server.hs)


@pytest.mark.parametrize(("method", "path"), JSON_ENDPOINTS)
@pytest.mark.parametrize(
    ("body", "status", "errcode"),
    [
        (b"x" * (MAX_BODY_BYTES + 1), 413, "M_TOO_LARGE"),
        (b"[" * 100_000, 413, "M_TOO_LARGE"),
        (b"[" * (MAX_JSON_DEPTH + 1) + b"]" * (MAX_JSON_DEPTH + 1), 400, "M_NOT_JSON"),
        (b"{", 400, "M_NOT_JSON"),
        (b"\xff\xfe", 400, "M_NOT_JSON"),
        (b"[]", 400, "M_BAD_JSON"),
        (b'"text"', 400, "M_BAD_JSON"),
        (b'{"a": 1, "a": 2}', 400, "M_BAD_JSON"),
        (b'{"a": NaN}', 400, "M_BAD_JSON"),
        (b'{"a": -Infinity}', 400, "M_BAD_JSON"),
        (b'{"a": 1e400}', 400, "M_BAD_JSON"),
        (b'{"a": ' + b"9" * 5000 + b"}", 400, "M_NOT_JSON"),
    ],
)
def test_malformed_json_bodies(method: str, path: str, body: bytes, status: int, errcode: str) -> None:
    response = new_server().send(raw(method, path, body))
    content = assert_well_formed(response)
    assert response.status == status
    if path.startswith("/oauth2/"):
        assert "errcode" not in content and isinstance(content["error"], str)
    else:
        assert content["errcode"] == errcode


def test_deep_json_inside_strings_is_not_counted_as_nesting() -> None:
    body = json.dumps({"type": "m.login.password", "user": '\\"[' * 1000, "password": '"{' * 1000}).encode()
    response = new_server().send(raw("POST", f"{V3}/login", body))
    assert (response.status, response.json()["errcode"]) == (403, "M_FORBIDDEN")


@pytest.mark.parametrize(("method", "path"), FORM_ENDPOINTS)
@pytest.mark.parametrize(
    ("body", "status"),
    [
        (b"a=" + b"x" * MAX_BODY_BYTES, 413),
        (b"\xff=1", 400),
        (b"a=%ff", 400),
        (b"&&&", 400),
        (b"=" * 50, 400),
        (b"&".join(b"k%d=v" % i for i in range(100)), 400),
    ],
)
def test_malformed_form_bodies(method: str, path: str, body: bytes, status: int) -> None:
    response = new_server().send(raw(method, path, body, "application/x-www-form-urlencoded"))
    content = assert_well_formed(response)
    assert response.status == status and "errcode" not in content


def test_malformed_authenticated_bodies() -> None:
    server = new_server()
    content = server.register("alice")
    token, device_id = content["access_token"], content["device_id"]
    path = f"{V3}/devices/{device_id}"
    auth = (("content-type", "application/json"), ("authorization", f"Bearer {token}"))
    for method in ("PUT", "DELETE"):
        for body in (b"{", b"[1]", b"x" * (MAX_BODY_BYTES + 1)):
            response = server.send(HttpRequest(method=method, target=path, headers=auth, body=body))
            assert response.status in (400, 413) and "errcode" in assert_well_formed(response)
    bad_auths: list[object] = [
        {"auth": []},
        {"auth": {"type": "m.login.password", "password": 1}},
        {"auth": {"session": 5}},
    ]
    for bad_auth in bad_auths:
        response = server.delete_device(token, device_id, bad_auth)
        assert (response.status, response.json()["errcode"]) == (400, "M_BAD_JSON")
    # None of that deleted the device.
    assert server.device(token, device_id).status == 200
    assert server.delete_device(token, device_id, password_auth("alice", "secret")).status == 200


def test_invalid_percent_encoding_in_path_is_unrecognized() -> None:
    response = new_server().send(HttpRequest.get(f"{V3}/devices/%ff"))
    assert response.status == 404


METHODS = st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "get", ""])
PATHS = st.one_of(
    st.sampled_from(
        [
            f"{V3}/login",
            f"{V3}/register",
            f"{V3}/devices",
            f"{V3}/devices/X",
            f"{V3}/account/whoami",
            "/oauth2/registration",
            "/oauth2/device",
            "/oauth2/token",
            "/_matrix/client/v1/auth_metadata",
            "/.well-known/matrix/client",
            RENDEZVOUS_PREFIXES[2],
        ]
    ),
    st.text(max_size=40),
)
HEADERS = st.lists(
    st.tuples(
        st.sampled_from(["content-type", "authorization", "Authorization", "x-other"]),
        st.sampled_from(["application/json", "application/x-www-form-urlencoded", "Bearer ", "Bearer x", "", "basic"])
        | st.text(max_size=20),
    ),
    max_size=4,
).map(tuple)
BODIES = st.one_of(
    st.binary(max_size=200),
    st.dictionaries(
        st.sampled_from(["type", "user", "password", "auth", "device_id", "client_id", "scope"]),
        st.none()
        | st.booleans()
        | st.integers()
        | st.text(max_size=10)
        | st.lists(st.integers(), max_size=3)
        | st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=3),
    ).map(lambda d: json.dumps(d).encode()),
)


@settings(max_examples=200, deadline=None)
@given(
    method=METHODS,
    path=PATHS,
    query=st.lists(st.tuples(st.text(max_size=8), st.text(max_size=8)), max_size=3).map(tuple),
    headers=HEADERS,
    body=BODIES,
)
def test_any_request_gets_a_well_formed_response(
    method: str, path: str, query: tuple[tuple[str, str], ...], headers: tuple[tuple[str, str], ...], body: bytes
) -> None:
    server = new_server()
    server.register("alice")
    request = HttpRequest(method=method, target=origin_form(path, query), headers=headers, body=body)
    before = server.hs
    response = server.send(request)
    assert_well_formed(response)
    if response.status >= 400 and response.status != 401:
        # A refused request changes nothing a client could observe (a 401 challenge may open a UIA session).
        assert server.hs.registry.accounts.keys() == before.registry.accounts.keys()
        assert server.hs.registry.access_tokens == before.registry.access_tokens


def test_new_homeserver_strips_trailing_slash_from_base_url() -> None:
    hs = new_homeserver(server_name="example.org", base_url="https://h.example/", seed=b"s")
    _, response = handle(hs, HttpRequest.get("/.well-known/matrix/client"), now_ms=0)
    assert response.json() == {"m.homeserver": {"base_url": "https://h.example"}}


def test_versions_advertise_msc4108_exactly_when_a_rendezvous_is_installed() -> None:
    hs = new_homeserver(server_name="example.org", base_url="https://h.example", seed=b"s")
    _, response = handle(hs, HttpRequest.get("/_matrix/client/versions"), now_ms=0)
    assert response.status == 200
    assert response.json()["unstable_features"] == {"org.matrix.msc4108": False}
    assert {"v1.1", "v1.13", "v1.15"} <= set(response.json()["versions"])
    _, response = handle(install_rendezvous(hs, seed=b"r"), HttpRequest.get("/_matrix/client/versions"), now_ms=0)
    assert response.json()["unstable_features"] == {"org.matrix.msc4108": True}
