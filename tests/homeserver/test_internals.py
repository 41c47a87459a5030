"""The homeserver model's building blocks: the frozen map, the id source, and id collisions."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from qrlogin.homeserver import HttpRequest, HttpResponse
from qrlogin.homeserver._frozenmap import FrozenMap
from qrlogin.homeserver._ids import USER_CODE_ALPHABET, IdSource, normalize_user_code
from tests.homeserver.homeserver_support import V3, device_scope, new_server


@given(st.dictionaries(st.integers(), st.integers()), st.integers(), st.integers())
def test_frozen_map_updates_copy(items: dict[int, int], key: int, value: int) -> None:
    original = FrozenMap(items)
    updated = original.set(key, value)
    assert dict(original) == items
    assert updated[key] == value and len(updated) == len(items | {key: value})
    assert updated.remove(key) == FrozenMap({k: v for k, v in items.items() if k != key})
    assert hash(FrozenMap(items)) == hash(original)


def test_frozen_map_is_immutable_and_only_equals_frozen_maps() -> None:
    frozen = FrozenMap({"a": 1})
    with pytest.raises(AttributeError):
        frozen.extra = 1
    assert frozen != {"a": 1}
    assert frozen.remove("absent") is frozen
    assert repr(frozen) == "FrozenMap({'a': 1})"


@given(st.binary(max_size=16), st.integers(min_value=0, max_value=100))
def test_id_source_is_a_deterministic_stream(seed: bytes, size: int) -> None:
    source = IdSource.from_seed(seed, "x")
    after, first = source.draw(size)
    assert len(first) == size and source.draw(size) == (after, first)
    assert IdSource.from_seed(seed, "y").draw(32)[1] != source.draw(32)[1]
    _, code = source.user_code()
    assert len(code) == 9 and set(normalize_user_code(code)) <= set(USER_CODE_ALPHABET)
    _, device_id = source.device_id()
    assert len(device_id) == 10 and device_id.isascii() and device_id.isupper()
    # The stream's key (derived from the seed) never shows: neither as hex nor as a bytes literal.
    assert source.seed.hex() not in repr(source) and repr(source.seed) not in repr(source)


def test_generated_device_id_skips_one_the_user_already_has() -> None:
    server = new_server()
    server.register("alice", inhibit_login=True)
    _, predicted = server.hs.registry.ids.device_id()
    assert server.login("alice", device_id=predicted).json()["device_id"] == predicted
    # Rewind the id source to where `predicted` came from, so that the next generated id collides with it.
    server.hs = replace(server.hs, registry=replace(server.hs.registry, ids=replace(server.hs.registry.ids, counter=0)))
    generated = server.login("alice").json()["device_id"]
    assert generated != predicted
    listed = server.devices(server.login("alice", device_id=predicted).json()["access_token"]).json()["devices"]
    assert {device["device_id"] for device in listed} == {predicted, generated}


def test_generated_user_code_skips_one_in_use() -> None:
    server = new_server()
    client_id = server.register_client()
    oauth = server.hs.oauth
    after_device_code, _ = oauth.ids.token("dc_")
    _, predicted = after_device_code.user_code()
    taken = oauth.user_codes.set(normalize_user_code(predicted), b"\x00" * 32)
    server.hs = replace(server.hs, oauth=replace(oauth, user_codes=taken))
    response = server.authorize_device(client_id, device_scope("COLLIDE001"))
    assert response.status == 200 and response.json()["user_code"] != predicted


def test_floats_in_bodies_are_accepted_when_finite() -> None:
    server = new_server()
    server.register("alice", inhibit_login=True)
    body = {"type": "m.login.password", "user": "alice", "password": "secret", "extra": 1.5}
    assert server.send(HttpRequest.json("POST", f"{V3}/login", body)).status == 200


def test_response_header_lookup() -> None:
    response = HttpResponse(status=200, headers=(("Content-Type", "application/json"),))
    assert response.header("content-type") == "application/json"
    assert response.header("etag") is None
