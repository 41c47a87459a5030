"""``qrlogin testserver --tls``, ``--rendezvous-create``, the guessing limits and ``--state``, against the real command.

Every test starts the command as a subprocess on a free port, reads its announcement, and talks to it with httpx:
over https verified against nothing but the certificate file the command wrote, with and without an access token
for the MSC4388 creation modes, and across a restart on the same SQLite file.
"""

from __future__ import annotations

import os
import re
import ssl
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from cryptography import x509

from tests.peers import start_testserver

pytest.importorskip("uvicorn")

SRC = Path(__file__).resolve().parents[2] / "src"
V3 = "/_matrix/client/v3"
V3_RENDEZVOUS = "/_matrix/client/unstable/io.element.msc4388/rendezvous"
V1_RENDEZVOUS = "/_matrix/client/unstable/org.matrix.msc4108/rendezvous"
DEVICE_CODE = "urn:ietf:params:oauth:grant-type:device_code"


@contextmanager
def running_testserver(*flags: str) -> Iterator[tuple[str, str]]:
    """``qrlogin testserver --port 0 FLAGS``: yields the URL it listens on and its announcement."""
    with start_testserver("--auto-approve", *flags) as (_, text):
        found = re.search(r"listening on (https?://127\.0\.0\.1:\d+)\n", text)
        assert found is not None, text
        yield found.group(1), text


def run_to_exit(*flags: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(SRC) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    command = [sys.executable, "-m", "qrlogin", "testserver", "--port", "0", *flags]
    return subprocess.run(
        command, check=False, capture_output=True, text=True, env=env, timeout=30, stdin=subprocess.DEVNULL
    )


def login(base: str, user: str, password: str, device_id: str, **client: object) -> str:
    body = {"type": "m.login.password", "user": user, "password": password, "device_id": device_id}
    response = httpx.post(f"{base}{V3}/login", json=body, **client)  # type: ignore[arg-type]
    assert response.status_code == 200, response.text
    token = response.json()["access_token"]
    assert isinstance(token, str)
    return token


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


# ------------------------------------------------------------------------------------------------------------ --tls


def test_tls_serves_https_that_verifies_against_the_written_certificate_only(tmp_path: Path) -> None:
    cert = tmp_path / "cert.pem"
    with running_testserver("--tls", "--tls-cert", str(cert), "--user", "alice:pw") as (url, banner):
        assert url.startswith("https://127.0.0.1:")
        assert f"certificate (self-signed, trust it in the client): {cert.resolve()}\n" in banner
        assert f"base URL: {url}\n" in banner
        trusted = ssl.create_default_context(cafile=str(cert))
        trusted.verify_flags |= ssl.VERIFY_X509_STRICT  # what Python 3.13 clients do by default
        port = url.rsplit(":", 1)[1]
        for name in (url, f"https://localhost:{port}"):
            versions = httpx.get(f"{name}/_matrix/client/versions", verify=trusted)
            assert versions.status_code == 200 and versions.json()["unstable_features"]["org.matrix.msc4108"]
        token = login(url, "alice", "pw", "LAPTOP", verify=trusted)
        whoami = httpx.get(f"{url}{V3}/account/whoami", headers=bearer(token), verify=trusted)
        assert whoami.json()["device_id"] == "LAPTOP"
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            httpx.get(f"{url}/_matrix/client/versions")  # the system's trust store does not know it
        well_known = httpx.get(f"{url}/.well-known/matrix/client", verify=trusted).json()
        assert well_known == {"m.homeserver": {"base_url": url}}
    names = x509.load_pem_x509_certificate(cert.read_bytes()).extensions.get_extension_for_class(
        x509.SubjectAlternativeName
    )
    assert "localhost" in names.value.get_values_for_type(x509.DNSName)
    assert {str(ip) for ip in names.value.get_values_for_type(x509.IPAddress)} >= {"127.0.0.1", "::1"}


def test_tls_names_the_public_host_in_the_certificate(tmp_path: Path) -> None:
    cert = tmp_path / "cert.pem"
    flags = ("--tls", "--tls-cert", str(cert), "--public-base-url", "https://matrix.qrlogin.test")
    with running_testserver(*flags, "--server-name", "qrlogin.test") as (url, _):
        assert url.startswith("https://")
    san = x509.load_pem_x509_certificate(cert.read_bytes()).extensions.get_extension_for_class(
        x509.SubjectAlternativeName
    )
    assert {"matrix.qrlogin.test", "qrlogin.test"} <= set(san.value.get_values_for_type(x509.DNSName))


# -------------------------------------------------------------------------------------------- --rendezvous-create


@pytest.mark.parametrize("mode", ["open", "authenticated", "disabled"])
def test_discovery_and_create_agree_in_every_creation_mode(mode: str) -> None:
    with running_testserver("--user", "alice:pw", "--rendezvous-create", mode) as (url, banner):
        assert f"rendezvous creation: {mode}\n" in banner
        token = login(url, "alice", "pw", "LAPTOP")
        for headers in ({}, bearer("syt_not_issued_here"), bearer(token)):
            discovery = httpx.get(url + V3_RENDEZVOUS, headers=headers)
            assert discovery.status_code == 200
            available = discovery.json()["create_available"]
            assert available is (mode == "open" or (mode == "authenticated" and headers == bearer(token)))
            created = httpx.post(url + V3_RENDEZVOUS, json={"data": "x"}, headers=headers)
            legacy = httpx.post(url + V1_RENDEZVOUS, content=b"x", headers={"content-type": "text/plain", **headers})
            if available:
                assert created.status_code == 200 and legacy.status_code == 201
                # Using a session needs no token, in every mode.
                session = httpx.get(f"{url}{V3_RENDEZVOUS}/{created.json()['id']}")
                assert session.status_code == 200 and session.json()["data"] == "x"
            else:
                for refused in (created, legacy):
                    assert (refused.status_code, refused.json()["errcode"]) == (403, "M_FORBIDDEN")


def test_an_unknown_creation_mode_is_a_usage_error() -> None:
    result = run_to_exit("--rendezvous-create", "sometimes")
    assert result.returncode == 2 and "invalid choice" in result.stderr and "Traceback" not in result.stderr


# ------------------------------------------------------------------------- --password-attempts, --attempt-window


def test_the_guessing_limits_are_the_ones_given() -> None:
    flags = ("--user", "alice:pw", "--password-attempts", "2", "--user-code-attempts", "3", "--attempt-window", "90")
    with running_testserver(*flags) as (url, banner):
        assert "guessing limits per account: 2 failed passwords and 3 unknown user codes in 90 s\n" in banner
        wrong = {"type": "m.login.password", "user": "alice", "password": "guess"}
        for _ in range(2):
            assert httpx.post(f"{url}{V3}/login", json=wrong).status_code == 403
        refused = httpx.post(f"{url}{V3}/login", json={**wrong, "password": "pw"})
        assert refused.status_code == 429 and refused.json()["errcode"] == "M_LIMIT_EXCEEDED"
        retry_after_ms = refused.json()["retry_after_ms"]
        assert 80_000 < retry_after_ms <= 90_000
        assert refused.headers["retry-after"] == str(-(-retry_after_ms // 1000))


@pytest.mark.parametrize("flag", ["--password-attempts", "--user-code-attempts", "--attempt-window"])
@pytest.mark.parametrize("value", ["0", "-3", "many"])
def test_a_limit_that_allows_nothing_is_a_usage_error(flag: str, value: str) -> None:
    result = run_to_exit(flag, value)
    assert result.returncode == 2 and "positive number" in result.stderr and "Traceback" not in result.stderr


# ---------------------------------------------------------------------------------------------------------- --state


def test_a_restart_on_the_same_state_keeps_a_signed_in_device_and_its_client(tmp_path: Path) -> None:
    state = tmp_path / "hs.sqlite"
    flags = ("--state", str(state), "--server-name", "qrlogin.test")
    with running_testserver(*flags, "--user", "alice:pw", "--user", "bob:pw2") as (url, banner):
        assert f"state: {state} (2 accounts)\n" in banner
        token = login(url, "alice", "pw", "LAPTOP")
        bob = login(url, "bob", "pw2", "BOBPHONE")
        client = {"client_uri": "https://client.example", "grant_types": [DEVICE_CODE, "refresh_token"]}
        client_id = httpx.post(f"{url}/oauth2/registration", json=client).json()["client_id"]
        # A device signed in with the device grant (approved at once): its refresh token must outlive the restart.
        scope = "urn:matrix:client:api:* urn:matrix:client:device:GRANTED"
        grant = httpx.post(f"{url}/oauth2/device", data={"client_id": client_id, "scope": scope}).json()
        poll = {"grant_type": DEVICE_CODE, "device_code": grant["device_code"], "client_id": client_id}
        issued = httpx.post(f"{url}/oauth2/token", data=poll).json()
        assert "refresh_token" in issued, issued
        renamed = httpx.put(f"{url}{V3}/devices/LAPTOP", json={"display_name": "my laptop"}, headers=bearer(token))
        assert renamed.status_code == 200
        deleted = httpx.request(
            "DELETE",
            f"{url}{V3}/devices/BOBPHONE",
            json={"auth": {"type": "m.login.password", "user": "bob", "password": "pw2"}},
            headers=bearer(bob),
        )
        assert deleted.status_code == 200
    assert state.stat().st_mode & 0o077 == 0  # digests of passwords and tokens: the owner's only

    with running_testserver(*flags) as (url, banner):
        assert "user: @alice:qrlogin.test (restored, its password unchanged)\n" in banner
        assert "approved at once for @alice:qrlogin.test" in banner
        whoami = httpx.get(f"{url}{V3}/account/whoami", headers=bearer(token))
        assert whoami.status_code == 200, whoami.text
        assert whoami.json() == {"user_id": "@alice:qrlogin.test", "device_id": "LAPTOP"}
        device = httpx.get(f"{url}{V3}/devices/LAPTOP", headers=bearer(token)).json()
        assert device["display_name"] == "my laptop"
        gone = httpx.get(f"{url}{V3}/account/whoami", headers=bearer(bob))  # deleted before the restart
        assert gone.status_code == 401
        scope = "urn:matrix:client:api:* urn:matrix:client:device:NEWPHONE"
        grant = httpx.post(f"{url}/oauth2/device", data={"client_id": client_id, "scope": scope})
        assert grant.status_code == 200, grant.text
        assert login(url, "alice", "pw", "SECOND")  # the stored password
        refresh = {"grant_type": "refresh_token", "refresh_token": issued["refresh_token"], "client_id": client_id}
        rotated = httpx.post(f"{url}/oauth2/token", data=refresh)
        assert rotated.status_code == 200, rotated.text
        whoami = httpx.get(f"{url}{V3}/account/whoami", headers=bearer(rotated.json()["access_token"]))
        assert whoami.json() == {"user_id": "@alice:qrlogin.test", "device_id": "GRANTED"}
        assert httpx.get(f"{url}{V3}/account/whoami", headers=bearer(issued["access_token"])).status_code == 401

    with running_testserver(*flags, "--user", "alice:changed") as (url, _):
        assert httpx.get(f"{url}{V3}/account/whoami", headers=bearer(token)).status_code == 200
        assert login(url, "alice", "changed", "THIRD")
        devices = httpx.get(f"{url}{V3}/devices", headers=bearer(token)).json()["devices"]
        assert {d["device_id"] for d in devices} == {"LAPTOP", "GRANTED", "SECOND", "THIRD"}


def test_a_state_file_of_another_server_or_no_database_is_refused_in_one_line(tmp_path: Path) -> None:
    state = tmp_path / "hs.sqlite"
    with running_testserver("--state", str(state), "--server-name", "one.test"):
        pass
    other = run_to_exit("--state", str(state), "--server-name", "two.test")
    assert other.returncode == 1
    assert other.stderr.strip().count("\n") == 0 and "one.test" in other.stderr and "Traceback" not in other.stderr
    garbage = tmp_path / "garbage"
    garbage.write_bytes(b"not a database" * 100)
    broken = run_to_exit("--state", str(garbage))
    assert broken.returncode == 1 and "SQLite" in broken.stderr and "Traceback" not in broken.stderr


def test_the_generated_default_user_is_kept_by_the_state(tmp_path: Path) -> None:
    flags = ("--state", str(tmp_path / "hs.sqlite"), "--server-name", "qrlogin.test")
    with running_testserver(*flags) as (url, banner):
        found = re.search(r"user: @alice:qrlogin\.test password (\S+)\n", banner)
        assert found is not None, banner
        token = login(url, "alice", found.group(1), "LAPTOP")
    with running_testserver(*flags) as (url, banner):
        assert "user: @alice:qrlogin.test (restored, its password unchanged)\n" in banner
        assert login(url, "alice", found.group(1), "LAPTOP") != token  # the same password, a new token
        assert httpx.get(f"{url}{V3}/account/whoami", headers=bearer(token)).status_code == 401  # replaced by it


def test_tls_without_a_path_writes_the_certificate_privately_and_removes_it_on_exit() -> None:
    with running_testserver("--tls") as (url, banner):
        found = re.search(r"certificate \(self-signed, trust it in the client\): (\S+)\n", banner)
        assert found is not None, banner
        cert = Path(found.group(1))
        assert cert.parent.stat().st_mode & 0o077 == 0
        assert {path.name for path in cert.parent.iterdir()} == {cert.name, "key.pem"}
        trusted = ssl.create_default_context(cafile=str(cert))
        assert httpx.get(f"{url}/_matrix/client/versions", verify=trusted).status_code == 200
    assert not cert.parent.exists()
