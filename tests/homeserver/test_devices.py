"""Device management as matrix-org/matrix-doc pull request 402 specifies it (docs/protocol.md §8)."""

from __future__ import annotations

from typing import Any

import pytest

from qrlogin.homeserver import HttpRequest, add_user
from qrlogin.http import origin_form
from tests.homeserver.homeserver_support import V3, new_server, password_auth


def test_registration_generates_a_device_id_and_uses_the_initial_display_name() -> None:
    server = new_server()
    content = server.register("alice", initial_device_display_name="Jungle Phone")
    assert content["user_id"] == "@alice:example.org"
    assert content["home_server"] == "example.org"
    device_id = content["device_id"]
    assert len(device_id) == 10 and device_id.isalpha() and device_id.isupper()
    shown = server.device(content["access_token"], device_id).json()
    assert shown == {"device_id": device_id, "display_name": "Jungle Phone", "last_seen_ts": server.now_ms}


def test_registration_keeps_a_client_chosen_device_id() -> None:
    server = new_server()
    content = server.register("alice", device_id="GHTYAJCE")
    assert content["device_id"] == "GHTYAJCE"


def test_registration_errors() -> None:
    server = new_server()
    server.register("alice")
    taken = server.send(HttpRequest.json("POST", f"{V3}/register", {"username": "alice", "password": "x"}))
    assert (taken.status, taken.json()["errcode"]) == (400, "M_USER_IN_USE")
    bad_name = server.send(HttpRequest.json("POST", f"{V3}/register", {"username": "Al ice", "password": "x"}))
    assert (bad_name.status, bad_name.json()["errcode"]) == (400, "M_INVALID_USERNAME")
    no_password = server.send(HttpRequest.json("POST", f"{V3}/register", {"username": "bob"}))
    assert (no_password.status, no_password.json()["errcode"]) == (400, "M_BAD_JSON")
    guest = server.send(HttpRequest.json("POST", f"{V3}/register", {}, query=(("kind", "guest"),)))
    assert (guest.status, guest.json()["errcode"]) == (403, "M_GUEST_ACCESS_FORBIDDEN")


def test_registration_with_inhibit_login_creates_no_device() -> None:
    server = new_server()
    content = server.register("alice", inhibit_login=True)
    assert content == {"user_id": "@alice:example.org", "home_server": "example.org"}
    login = server.login("alice").json()
    assert [d["device_id"] for d in server.devices(login["access_token"]).json()["devices"]] == [login["device_id"]]


def test_login_without_device_id_creates_a_new_device_each_time() -> None:
    server = new_server()
    server.register("alice", inhibit_login=True)
    first = server.login("alice", initial_device_display_name="Laptop").json()
    second = server.login("alice").json()
    assert first["device_id"] != second["device_id"]
    listed = server.devices(second["access_token"]).json()["devices"]
    assert sorted(d["device_id"] for d in listed) == sorted([first["device_id"], second["device_id"]])
    names = {d["device_id"]: d.get("display_name") for d in listed}
    assert names == {first["device_id"]: "Laptop", second["device_id"]: None}


def test_login_with_unknown_device_id_creates_that_device() -> None:
    server = new_server()
    server.register("alice", inhibit_login=True)
    content = server.login("alice", device_id="MYDEVICE", initial_device_display_name="TV").json()
    assert content["device_id"] == "MYDEVICE"
    assert server.device(content["access_token"], "MYDEVICE").json()["display_name"] == "TV"


def test_reusing_a_device_id_invalidates_the_previous_token_and_ignores_the_new_display_name() -> None:
    server = new_server()
    server.register("alice", inhibit_login=True)
    old = server.login("alice", device_id="DEV", initial_device_display_name="Old name").json()
    new = server.login("alice", device_id="DEV", initial_device_display_name="New name").json()
    assert new["device_id"] == "DEV" and new["access_token"] != old["access_token"]
    stale = server.whoami(old["access_token"])
    assert (stale.status, stale.json()["errcode"]) == (401, "M_UNKNOWN_TOKEN")
    assert server.whoami(new["access_token"]).json() == {"user_id": "@alice:example.org", "device_id": "DEV"}
    devices = server.devices(new["access_token"]).json()["devices"]
    assert [(d["device_id"], d["display_name"]) for d in devices] == [("DEV", "Old name")]


def test_device_ids_are_scoped_per_user() -> None:
    server = new_server()
    alice = server.register("alice", device_id="SHARED")
    bob = server.register("bob", device_id="SHARED")
    assert server.whoami(alice["access_token"]).json()["user_id"] == "@alice:example.org"
    assert server.whoami(bob["access_token"]).json()["user_id"] == "@bob:example.org"
    # Bob deleting his SHARED device leaves Alice's untouched.
    response = server.delete_device(bob["access_token"], "SHARED", password_auth("bob", "secret"))
    assert response.status == 200
    assert server.whoami(alice["access_token"]).status == 200


def test_login_errors() -> None:
    server = new_server()
    server.register("alice", inhibit_login=True)
    wrong = server.login("alice", "wrong")
    assert (wrong.status, wrong.json()["errcode"]) == (403, "M_FORBIDDEN")
    unknown = server.login("nobody")
    assert unknown.json() == wrong.json()
    bad_type = server.send(HttpRequest.json("POST", f"{V3}/login", {"type": "m.login.token", "token": "x"}))
    assert (bad_type.status, bad_type.json()["errcode"]) == (400, "M_UNKNOWN")
    bad_device = server.login("alice", device_id=42)
    assert (bad_device.status, bad_device.json()["errcode"]) == (400, "M_BAD_JSON")
    empty_device = server.login("alice", device_id="")
    assert (empty_device.status, empty_device.json()["errcode"]) == (400, "M_INVALID_PARAM")


def test_login_accepts_the_seed_era_top_level_user_and_a_full_user_id() -> None:
    server = new_server()
    server.register("alice", inhibit_login=True)
    seed_style = {"type": "m.login.password", "user": "alice", "password": "secret"}
    assert server.send(HttpRequest.json("POST", f"{V3}/login", seed_style)).status == 200
    assert server.login("@alice:example.org").status == 200


def test_get_login_lists_the_password_flow() -> None:
    server = new_server()
    assert server.send(HttpRequest.get(f"{V3}/login")).json() == {"flows": [{"type": "m.login.password"}]}


def test_authentication_errors() -> None:
    server = new_server()
    missing = server.send(HttpRequest.get(f"{V3}/devices"))
    assert (missing.status, missing.json()["errcode"]) == (401, "M_MISSING_TOKEN")
    unknown = server.devices("syt_nope")
    assert (unknown.status, unknown.json()["errcode"]) == (401, "M_UNKNOWN_TOKEN")
    assert unknown.json()["soft_logout"] is False


def test_access_token_in_query_parameter_is_accepted() -> None:
    server = new_server()
    token = server.register("alice")["access_token"]
    request = HttpRequest(method="GET", target=origin_form(f"{V3}/account/whoami", (("access_token", token),)))
    assert server.send(request).status == 200


def test_get_and_put_unknown_device_are_404() -> None:
    server = new_server()
    token = server.register("alice")["access_token"]
    assert server.device(token, "NOPE").json()["errcode"] == "M_NOT_FOUND"
    put = server.send(HttpRequest.json("PUT", f"{V3}/devices/NOPE", {"display_name": "x"}, access_token=token))
    assert (put.status, put.json()["errcode"]) == (404, "M_NOT_FOUND")


def test_a_user_cannot_see_another_users_device() -> None:
    server = new_server()
    alice = server.register("alice")
    bob = server.register("bob")
    assert server.device(bob["access_token"], alice["device_id"]).status == 404


def test_put_updates_only_the_display_name_when_given() -> None:
    server = new_server()
    content = server.register("alice", initial_device_display_name="Phone")
    token, device_id = content["access_token"], content["device_id"]
    path = f"{V3}/devices/{device_id}"
    assert server.send(HttpRequest.json("PUT", path, {}, access_token=token)).json() == {}
    assert server.device(token, device_id).json()["display_name"] == "Phone"
    renamed = server.send(HttpRequest.json("PUT", path, {"display_name": "My other phone"}, access_token=token))
    assert (renamed.status, renamed.json()) == (200, {})
    assert server.device(token, device_id).json()["display_name"] == "My other phone"
    bad = server.send(HttpRequest.json("PUT", path, {"display_name": 7}, access_token=token))
    assert (bad.status, bad.json()["errcode"]) == (400, "M_BAD_JSON")


def test_percent_encoded_device_ids_route_to_the_device() -> None:
    server = new_server()
    content = server.register("alice", device_id="a/b c")
    response = server.device(content["access_token"], "a%2Fb%20c")
    assert response.json()["device_id"] == "a/b c"


def test_last_seen_ts_follows_authenticated_requests() -> None:
    server = new_server()
    content = server.register("alice")
    server.now_ms += 5000
    assert server.device(content["access_token"], content["device_id"]).json()["last_seen_ts"] == server.now_ms


def test_delete_requires_user_interactive_auth() -> None:
    server = new_server()
    main = server.register("alice")
    other = server.login("alice", device_id="OTHER").json()
    challenge = server.delete_device(main["access_token"], "OTHER", {})
    assert challenge.status == 401
    content = challenge.json()
    assert content["flows"] == [{"stages": ["m.login.password"]}]
    assert "errcode" not in content and isinstance(content["session"], str)
    # Nothing happened yet.
    assert server.whoami(other["access_token"]).status == 200

    wrong = server.delete_device(main["access_token"], "OTHER", password_auth("alice", "wrong", content["session"]))
    assert wrong.status == 401
    assert (wrong.json()["errcode"], wrong.json()["session"]) == ("M_FORBIDDEN", content["session"])
    assert server.whoami(other["access_token"]).status == 200

    done = server.delete_device(main["access_token"], "OTHER", password_auth("alice", "secret", content["session"]))
    assert (done.status, done.json()) == (200, {})
    assert server.whoami(other["access_token"]).json()["errcode"] == "M_UNKNOWN_TOKEN"
    assert server.device(main["access_token"], "OTHER").status == 404
    # The session was consumed.
    reused = server.delete_device(main["access_token"], "OTHER", password_auth("alice", "secret", content["session"]))
    assert (reused.status, reused.json()["errcode"]) == (400, "M_UNKNOWN")


def test_delete_is_idempotent() -> None:
    server = new_server()
    token = server.register("alice")["access_token"]
    server.login("alice", device_id="GONE")
    assert server.delete_device(token, "GONE", password_auth("alice", "secret")).status == 200
    again = server.delete_device(token, "GONE", password_auth("alice", "secret"))
    assert (again.status, again.json()) == (200, {})
    never = server.delete_device(token, "NEVER", password_auth("alice", "secret"))
    assert never.status == 200


def test_delete_of_an_absent_device_still_needs_auth() -> None:
    server = new_server()
    token = server.register("alice")["access_token"]
    assert server.delete_device(token, "NEVER", {}).status == 401


def test_uia_session_is_bound_to_the_device_it_was_issued_for() -> None:
    server = new_server()
    token = server.register("alice")["access_token"]
    server.login("alice", device_id="ONE")
    server.login("alice", device_id="TWO")
    session = server.delete_device(token, "ONE", {}).json()["session"]
    misuse = server.delete_device(token, "TWO", password_auth("alice", "secret", session))
    assert (misuse.status, misuse.json()["errcode"]) == (400, "M_UNKNOWN")


def test_uia_as_another_user_is_refused() -> None:
    server = new_server()
    token = server.register("alice")["access_token"]
    server.register("bob", password="bobpw")
    response = server.delete_device(token, "X", password_auth("bob", "bobpw"))
    assert (response.status, response.json()["errcode"]) == (401, "M_FORBIDDEN")


def test_uia_with_unsupported_stage_is_challenged_again() -> None:
    server = new_server()
    token = server.register("alice")["access_token"]
    response = server.delete_device(token, "X", {"auth": {"type": "m.login.dummy"}})
    assert response.status == 401 and response.json()["flows"] == [{"stages": ["m.login.password"]}]


def test_deleting_the_current_device_logs_it_out() -> None:
    server = new_server()
    content = server.register("alice")
    token = content["access_token"]
    assert server.delete_device(token, content["device_id"], password_auth("alice", "secret")).status == 200
    assert server.whoami(token).status == 401


def test_add_user_creates_an_account_that_can_log_in() -> None:
    server = new_server()
    server.hs, user_id = add_user(server.hs, "carol", "pw")
    assert user_id == "@carol:example.org"
    assert server.login("carol", "pw").status == 200


LOGIN = {"type": "m.login.password", "user": "alice", "password": "secret"}


@pytest.mark.parametrize(
    ("body", "errcode"),
    [
        ({"type": 1, "user": "alice", "password": "secret"}, "M_BAD_JSON"),
        ({"type": "m.login.password", "password": "secret"}, "M_BAD_JSON"),
        ({"type": "m.login.password", "user": "alice"}, "M_BAD_JSON"),
        ({"type": "m.login.password", "user": 5, "password": "secret"}, "M_BAD_JSON"),
        ({"type": "m.login.password", "identifier": "alice", "password": "secret"}, "M_BAD_JSON"),
        ({"type": "m.login.password", "identifier": {"type": "m.id.thirdparty"}, "password": "secret"}, "M_UNKNOWN"),
        ({**LOGIN, "device_id": "a\nb"}, "M_INVALID_PARAM"),
        ({**LOGIN, "initial_device_display_name": "x" * 101}, "M_INVALID_PARAM"),
    ],
)
def test_login_rejects_malformed_fields(body: dict[str, Any], errcode: str) -> None:
    server = new_server()
    server.register("alice", inhibit_login=True)
    response = server.send(HttpRequest.json("POST", f"{V3}/login", body))
    assert (response.status, response.json()["errcode"]) == (400, errcode)


@pytest.mark.parametrize(
    ("body", "query", "errcode"),
    [
        ({"username": "bob", "password": "pw", "inhibit_login": "yes"}, (), "M_BAD_JSON"),
        ({"username": "bob", "password": ""}, (), "M_BAD_JSON"),
        ({"username": "bob", "password": "pw"}, (("kind", "admin"),), "M_INVALID_PARAM"),
        ({"username": "bob", "password": "pw", "device_id": "x" * 256}, (), "M_INVALID_PARAM"),
    ],
)
def test_registration_rejects_malformed_fields(
    body: dict[str, Any], query: tuple[tuple[str, str], ...], errcode: str
) -> None:
    server = new_server()
    response = server.send(HttpRequest.json("POST", f"{V3}/register", body, query=query))
    assert (response.status, response.json()["errcode"]) == (400, errcode)
    assert not server.hs.registry.accounts


def test_put_rejects_a_too_long_display_name() -> None:
    server = new_server()
    content = server.register("alice")
    path = f"{V3}/devices/{content['device_id']}"
    token = content["access_token"]
    response = server.send(HttpRequest.json("PUT", path, {"display_name": "x" * 101}, access_token=token))
    assert (response.status, response.json()["errcode"]) == (400, "M_INVALID_PARAM")
