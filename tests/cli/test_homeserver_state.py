"""The SQLite state of ``qrlogin testserver --state``: what is written is what is read back, and reading is strict.

The round trip drives a real homeserver model through random sequences of registrations, logins, renames,
deletions, client registrations and device-grant sign-ins, saving after every step as the app's ``after`` hook does,
and checks that a fresh homeserver restored from the file holds exactly the kept tables, in the same order.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qrlogin.adapters.homeserver_state import SCHEMA_VERSION, TABLES, StateError, StateFile, decode, encode
from qrlogin.cli.testserver import build_homeserver
from qrlogin.homeserver import Homeserver, HttpRequest, approve_user_code, handle, new_homeserver
from qrlogin.homeserver._frozenmap import FrozenMap
from qrlogin.homeserver.devices import Account, Device, check_password

SERVER = "example.org"
V3 = "/_matrix/client/v3"
DEVICE_CODE = "urn:ietf:params:oauth:grant-type:device_code"


def fresh() -> Homeserver:
    return new_homeserver(server_name=SERVER, base_url="https://example.org", seed=b"fresh")


NAMES = st.sampled_from(["alice", "bob"])
DEVICES = st.sampled_from(["A", "B"])
OPERATION = st.one_of(
    st.tuples(st.just("register"), NAMES, DEVICES),
    st.tuples(st.just("login"), NAMES, DEVICES),
    st.tuples(st.just("rename"), NAMES, DEVICES),
    st.tuples(st.just("delete"), NAMES, DEVICES),
    st.tuples(st.just("client"), NAMES, DEVICES),
    st.tuples(st.just("grant"), NAMES, DEVICES),
)


@dataclass
class Driver:
    hs: Homeserver
    now_ms: int = 0
    tokens: dict[tuple[str, str], str] = field(default_factory=dict)
    clients: list[str] = field(default_factory=list)

    def send(self, request: HttpRequest) -> dict[str, object]:
        self.now_ms += 10_000
        self.hs, response = handle(self.hs, request, now_ms=self.now_ms)
        content = response.json()
        assert isinstance(content, dict)
        return content

    def run(self, kind: str, name: str, device: str) -> None:
        token = self.tokens.get((name, device))
        if kind == "register":
            self.send(HttpRequest.json("POST", f"{V3}/register", {"username": name, "password": "pw"}))
        elif kind == "login":
            body = {"type": "m.login.password", "user": name, "password": "pw", "device_id": device}
            content = self.send(HttpRequest.json("POST", f"{V3}/login", body))
            if "access_token" in content:
                self.tokens[(name, device)] = str(content["access_token"])
        elif kind == "rename" and token is not None:
            rename = HttpRequest.json("PUT", f"{V3}/devices/{device}", {"display_name": name}, access_token=token)
            self.send(rename)
        elif kind == "delete" and token is not None:
            auth = {"auth": {"type": "m.login.password", "user": name, "password": "pw"}}
            self.send(HttpRequest.json("DELETE", f"{V3}/devices/{device}", auth, access_token=token))
        elif kind == "client":
            metadata = {"client_name": name, "client_uri": "https://c.example", "grant_types": [DEVICE_CODE]}
            registered = self.send(HttpRequest.json("POST", "/oauth2/registration", metadata))
            self.clients.append(str(registered["client_id"]))
        elif kind == "grant" and self.clients and f"@{name}:{SERVER}" in self.hs.registry.accounts:
            client_id = self.clients[-1]
            scope = f"urn:matrix:client:api:* urn:matrix:client:device:G{device}"
            grant = self.send(HttpRequest.form("/oauth2/device", {"client_id": client_id, "scope": scope}))
            self.hs, _ = approve_user_code(self.hs, str(grant["user_code"]), f"@{name}:{SERVER}", now_ms=self.now_ms)
            poll = {"grant_type": DEVICE_CODE, "device_code": str(grant["device_code"]), "client_id": client_id}
            self.send(HttpRequest.form("/oauth2/token", poll))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(OPERATION, max_size=25))
def test_what_is_saved_step_by_step_is_restored_exactly(tmp_path: Path, operations: list[tuple[str, str, str]]) -> None:
    path = tmp_path / f"state-{len(list(tmp_path.iterdir()))}.sqlite"
    state = StateFile(str(path), server_name=SERVER)
    driver = Driver(state.restore(fresh()))
    for operation in operations:
        driver.run(*operation)
        state.save(driver.hs)
    state.close()
    reopened = StateFile(str(path), server_name=SERVER)
    restored = reopened.restore(fresh())
    for table in TABLES:
        assert table.get(restored) == table.get(driver.hs), table.name
        assert list(table.get(restored).items()) == list(table.get(driver.hs).items()), table.name
    assert reopened.save(restored) == 0  # restoring is not a change
    reopened.close()


def test_an_unchanged_step_writes_nothing_and_a_request_writes_only_its_rows(tmp_path: Path) -> None:
    state = StateFile(str(tmp_path / "s.sqlite"), server_name=SERVER)
    driver = Driver(state.restore(fresh()))
    for index in range(50):
        driver.run("register", f"user{index}", "A")
    assert state.save(driver.hs) == 50 * 4  # an account, its device, the access token, the device's token index
    assert state.save(driver.hs) == 0
    driver.run("login", "user7", "B")
    assert state.save(driver.hs) == 3  # the new device, its token, its index: the account row is unchanged
    driver.send(HttpRequest.get(f"{V3}/account/whoami", access_token=driver.tokens[("user7", "B")]))
    assert state.save(driver.hs) == 1  # the device was seen: its row, nothing else
    with sqlite3.connect(tmp_path / "s.sqlite") as db:
        (account,) = db.execute("SELECT value FROM records WHERE key = ?", ('"@user7:example.org"',)).fetchone()
    db.close()
    assert "devices" not in account


@dataclass(frozen=True)
class Grown:
    """A record as it might look after fields are added to it."""

    name: str
    digest: bytes
    count: int = 0
    tags: tuple[str, ...] = ()
    devices: FrozenMap[str, Device] = field(default_factory=FrozenMap)
    note: str | None = None
    kind: Literal["web", "native"] = "web"
    weight: float = 1.0


def test_the_codec_round_trips_nested_records() -> None:
    devices = FrozenMap({"X": Device(device_id="X", display_name="x", last_seen_ts=5), "Y": Device(device_id="Y")})
    value = Grown(name="n", digest=b"\x00\xff", count=3, tags=("a", "b"), devices=devices, kind="native", weight=0.5)
    assert decode(Grown, encode(Grown, value)) == value
    account = Account(user_id="@a:b", password_digest=bytes(32), devices=devices)
    assert decode(Account, encode(Account, account)) == account


def test_a_field_added_with_a_default_reads_old_rows() -> None:
    old_row = {"name": "n", "digest": "AA=="}
    assert decode(Grown, old_row) == Grown(name="n", digest=b"\x00")


@pytest.mark.parametrize(
    ("row", "complaint"),
    [
        ({"name": "n", "digest": "AA==", "gone": 1}, "does not know: gone"),
        ({"digest": "AA=="}, "lacks the field name"),
        ({"name": "n", "digest": "AA==", "count": True}, "is not a"),
        ({"name": "n", "digest": "AA==", "count": "3"}, "is not a"),
        ({"name": "n", "digest": "not base64!"}, "not base64"),
        ({"name": "n", "digest": "AA==", "tags": "ab"}, "is not a"),
        ({"name": "n", "digest": "AA==", "devices": [["X"]]}, "pair"),
        ([], "is not a"),
        ({"name": "n", "digest": "AA==", "kind": "desktop"}, "is not one of"),
        ({"name": "n", "digest": "AA==", "weight": "1"}, "is not a"),
    ],
)
def test_reading_is_strict(row: object, complaint: str) -> None:
    with pytest.raises(StateError, match=complaint):
        decode(Grown, row)


def test_a_type_the_codec_does_not_know_is_refused_when_written() -> None:
    with pytest.raises(TypeError, match="cannot store"):
        encode(dict[str, str], {})
    with pytest.raises(TypeError, match="union"):
        encode(int | str, 1)


def test_another_schema_version_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    StateFile(str(path), server_name=SERVER).close()
    with sqlite3.connect(path) as db:
        db.execute("UPDATE meta SET value = ? WHERE name = 'schema_version'", (str(SCHEMA_VERSION + 1),))
    db.close()
    with pytest.raises(StateError, match="schema version"):
        StateFile(str(path), server_name=SERVER)


def test_an_unreadable_row_is_a_state_error(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    StateFile(str(path), server_name=SERVER).close()
    with sqlite3.connect(path) as db:
        db.execute("INSERT INTO records VALUES ('registry.accounts', '\"@a:example.org\"', '{not json')")
    db.close()
    state = StateFile(str(path), server_name=SERVER)
    with pytest.raises(StateError, match=r"registry\.accounts"):
        state.restore(fresh())
    state.close()


def test_build_homeserver_restores_and_keeps_a_stored_user_with_the_new_password(tmp_path: Path) -> None:
    path = str(tmp_path / "s.sqlite")
    state = StateFile(path, server_name=SERVER)
    hs, (alice,) = build_homeserver(
        server_name=SERVER, base_url="https://example.org", users=[("alice", "old")], poll_interval_s=5, state=state
    )
    driver = Driver(hs)
    login = {"type": "m.login.password", "user": "alice", "password": "old", "device_id": "KEPT"}
    token = str(driver.send(HttpRequest.json("POST", f"{V3}/login", login))["access_token"])
    state.save(driver.hs)
    state.close()

    state = StateFile(path, server_name=SERVER)
    hs, _ = build_homeserver(
        server_name=SERVER, base_url="https://example.org", users=[("alice", "new")], poll_interval_s=5, state=state
    )
    assert list(hs.registry.accounts[alice].devices) == ["KEPT"]
    assert check_password(hs.registry, alice, "new") and not check_password(hs.registry, alice, "old")
    _, whoami = handle(hs, HttpRequest.get(f"{V3}/account/whoami", access_token=token), now_ms=1)
    assert whoami.json() == {"user_id": alice, "device_id": "KEPT"}
    assert state.save(hs) == 0  # build_homeserver saved the new password already
    state.close()
    state = StateFile(path, server_name=SERVER)
    assert check_password(state.restore(fresh()).registry, alice, "new")
    state.close()


def test_an_account_removed_and_added_again_takes_its_devices_with_it(tmp_path: Path) -> None:
    """Accounts are never removed by a request today; the file must still follow if a later model removes one."""
    path = str(tmp_path / "s.sqlite")
    state = StateFile(path, server_name=SERVER)
    driver = Driver(state.restore(fresh()))
    for name in ("alice", "bob"):
        driver.run("register", name, "A")
        driver.run("login", name, "B")
    state.save(driver.hs)
    registry = driver.hs.registry
    alice = registry.accounts[f"@alice:{SERVER}"]
    back = replace(alice, devices=FrozenMap({"C": Device(device_id="C")}))
    without = registry.accounts.remove(alice.user_id)
    with_other_devices = without.set(alice.user_id, back)
    moved_to_the_end = with_other_devices.remove(alice.user_id).set(alice.user_id, back)  # equal devices, one step
    for accounts in (without, with_other_devices, moved_to_the_end):
        hs = replace(driver.hs, registry=replace(registry, accounts=accounts))
        state.save(hs)
        reopened = StateFile(path, server_name=SERVER)
        restored = reopened.restore(fresh()).registry.accounts
        reopened.close()
        assert restored == accounts and list(restored) == list(accounts)
    state.close()
