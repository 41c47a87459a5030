"""matrix-js-sdk 43.0.0 signs in with QR code against ``qrlogin testserver``, the real command, over real HTTP.

``qrlogin testserver`` runs as a subprocess on a free loopback port (``--auto-approve`` stands in for the user's
consent on the approval page, ``--poll-interval 1`` keeps the device grant short), answering as the public names
``https://matrix.qrlogin.test`` (base URL) and ``qrlogin.test`` (server name). js-sdk plays each of its four roles
(``interop/node/js_sdk_login_peer.mjs``: existing or new device, generating or scanning the QR code) and
:func:`qrlogin.runner.run_device` plays the other device, as an application runs it.

Nothing on js-sdk's side is mocked. The new device finds the server with js-sdk's own
``AutoDiscovery.findClientConfig`` (``.well-known``, then ``/versions``) and reads the auth metadata with
``MatrixClient.getAuthMetadata`` (js-sdk's metadata validation); the existing device is a real ``MatrixClient``
whose ``/versions``, ``auth_metadata`` and ``/devices/{id}`` requests reach the testserver. The one stand-in is the
client's ``getCrypto()``, which hands over a fixed secrets bundle. Both peers reach the public names through address
routing, not mocking: node's ``fetch`` and the runner's ``TransportOptions.connect_to`` send exactly those two hosts
to the testserver's loopback port and refuse every other host, as DNS plus a TLS-terminating proxy would; requests
and answers pass through unchanged.

Checked for each role: both sides end in success; the secrets the existing device exported are the ones the new
device ends with; the new device's access token works on ``/whoami`` (alice, the new device id) and the new device is
listed by ``GET /devices``; js-sdk's discovery found the testserver's base URL and issuer.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from qrlogin import device as dv
from qrlogin import qr
from qrlogin import runner as rn
from qrlogin._secret import Secret
from qrlogin.login.messages import Secrets, message_to_json
from qrlogin.sim.world import CLIENT_METADATA, user_secrets
from qrlogin.vocabulary import DeviceRole
from tests.device.js_sdk_peer import JsSdkPeer, require_js_sdk
from tests.peers import run_qrlogin_testserver

pytestmark = pytest.mark.interop
pytest.importorskip("uvicorn")

SERVER_NAME = "qrlogin.test"  # RFC 6761 reserved: never resolvable, so nothing can leave the machine
BASE_URL = "https://matrix.qrlogin.test"
USER_ID = f"@alice:{SERVER_NAME}"
PASSWORD = "correct horse battery staple"
EXISTING_DEVICE = "LAPTOP"
NEW_DEVICE = "PHONE"
SIGN_IN_TIMEOUT_S = 60.0
ROLES = [
    pytest.param(DeviceRole.EXISTING, False, id="js-existing-generates"),  # Element Web "link new device"
    pytest.param(DeviceRole.EXISTING, True, id="js-existing-scans"),
    pytest.param(DeviceRole.NEW, False, id="js-new-generates"),
    pytest.param(DeviceRole.NEW, True, id="js-new-scans"),
]


@dataclass(frozen=True)
class RunningTestserver:
    loopback: str  # where it listens

    @property
    def routes(self) -> dict[str, str]:
        """The public hosts it answers as, each sent to its loopback origin."""
        return {SERVER_NAME: self.loopback, urlsplit(BASE_URL).netloc: self.loopback}

    def get(self, path: str, token: str) -> dict[str, Any]:
        response = httpx.get(self.loopback + path, headers={"authorization": f"Bearer {token}"})
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body


@pytest.fixture
def testserver() -> Iterator[RunningTestserver]:
    flags = ["--user", f"alice:{PASSWORD}", "--auto-approve", "--poll-interval", "1"]
    with run_qrlogin_testserver(*flags, "--public-base-url", BASE_URL, "--server-name", SERVER_NAME) as loopback:
        yield RunningTestserver(loopback)


def _password_login(server: RunningTestserver, device_id: str) -> str:
    """The existing device's session: alice signs in with her password, as she did before linking a new device."""
    login = {
        "type": "m.login.password",
        "identifier": {"type": "m.id.user", "user": "alice"},
        "password": PASSWORD,
        "device_id": device_id,
    }
    response = httpx.post(server.loopback + "/_matrix/client/v3/login", json=login)
    assert response.status_code == 200, response.text
    token = response.json()["access_token"]
    assert isinstance(token, str)
    return token


def _secrets_json(secrets: Secrets) -> dict[str, Any]:
    """The ``m.login.secrets`` content without ``type``: what js-sdk's ``exportSecretsBundle()`` returns."""
    content = dict(message_to_json(secrets))
    del content["type"]
    return content


class User(rn.ScriptedUser):
    """The user at the qrlogin device: the QR code it shows goes to js-sdk's camera, the check code it shows is
    typed into js-sdk, and the code js-sdk shows is typed here (:meth:`type_check_code`). Consent is the
    testserver's ``--auto-approve``."""

    def __init__(self, js: JsSdkPeer) -> None:
        super().__init__()
        self.js = js

    def show_qr(self, payload: bytes, code: qr.QrCode) -> None:
        super().show_qr(payload, code)
        self.js.send("scan", qr=base64.b64encode(payload).decode())

    def show_check_code(self, code: str) -> None:
        super().show_check_code(code)
        self.js.send("check_code", code=code)


@dataclass
class Outcome:
    result: rn.SignInResult
    js_events: list[dict[str, Any]] = field(default_factory=list)

    def js_event(self, name: str) -> dict[str, Any] | None:
        return next((e for e in self.js_events if e["event"] == name), None)


def _sign_in(server: RunningTestserver, tmp_path: Path, js_kind: DeviceRole, js_scans: bool) -> Outcome:
    require_js_sdk()
    laptop_token = _password_login(server, EXISTING_DEVICE)
    js_config: dict[str, Any] = {
        "kind": js_kind.value,
        "scan": js_scans,
        "server_name": SERVER_NAME,
        "base_url": BASE_URL,
        "routes": server.routes,
    }
    if js_kind is DeviceRole.EXISTING:
        js_config |= {
            "user_id": USER_ID,
            "device_id": EXISTING_DEVICE,
            "access_token": laptop_token,
            "secrets": _secrets_json(user_secrets("alice")),
        }
        config = dv.DeviceConfig(
            kind=DeviceRole.NEW, generation=qr.Generation.V1, seed=os.urandom(32), base_url=BASE_URL,
            server_name=SERVER_NAME, device_id=NEW_DEVICE, client_metadata=CLIENT_METADATA, poll_interval_ms=250,
        )  # fmt: skip
        access = None
    else:
        js_config |= {"device_id": NEW_DEVICE, "client_metadata": json.loads(CLIENT_METADATA)}
        config = dv.DeviceConfig(
            kind=DeviceRole.EXISTING, generation=qr.Generation.V1, seed=os.urandom(32), base_url=BASE_URL,
            server_name=SERVER_NAME, secrets=user_secrets("alice"), poll_interval_ms=250,
        )  # fmt: skip
        access = Secret(laptop_token.encode())
    js = JsSdkPeer(js_config, log_path=tmp_path / "js-sdk.log")
    try:
        return asyncio.run(_drive(js, config, server.routes, access, js_scans=js_scans))
    finally:
        js.close()


async def _drive(
    js: JsSdkPeer, config: dv.DeviceConfig, routes: dict[str, str], access: Secret | None, *, js_scans: bool
) -> Outcome:
    user = User(js)
    js_events: list[dict[str, Any]] = []
    js_gave_up = asyncio.Event()  # js-sdk failed: the qrlogin device need not wait for its timeout
    async with httpx.AsyncClient() as http:
        transport = rn.Transport(http, rn.TransportOptions(connect_to=routes), access_token=access)

        def start(qr_payload: bytes | None) -> asyncio.Task[rn.SignInResult]:
            run = rn.run_device(
                config, user, transport, qr_payload=qr_payload, timeout_s=SIGN_IN_TIMEOUT_S, cancel=js_gave_up
            )
            return asyncio.ensure_future(run)

        device = start(None) if js_scans else None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + SIGN_IN_TIMEOUT_S
        js_over = False
        while not (js_over and (device is None or device.done())):
            if loop.time() > deadline:
                pytest.fail(
                    f"no end within {SIGN_IN_TIMEOUT_S} s: js {js_events}, qrlogin {user.shown}\n{js.log_tail()}"
                )
            event = await asyncio.to_thread(js.poll, 0.05)
            if event is None:
                continue
            js_events.append(event)
            kind = event["event"]
            if kind == "qr":
                device = start(base64.b64decode(event["qr"], validate=True))
            elif kind == "check_code" and js_scans:
                user.type_check_code(event["code"])  # qrlogin generated the QR: the user types js-sdk's code there
            elif kind == "verification_uri":
                js.send("consented")  # the testserver approved the grant when it was created
            elif kind in ("done", "failed", "exited"):
                js_over = True
                if kind != "done" and not any(e["event"] == "done" for e in js_events):
                    js_gave_up.set()
        assert device is not None, f"js-sdk ended before showing a QR code: {js_events}\n{js.log_tail()}"
        return Outcome(result=await device, js_events=js_events)


@pytest.mark.parametrize(("js_kind", "js_scans"), ROLES)
def test_js_sdk_signs_in_against_the_testserver(
    testserver: RunningTestserver, tmp_path: Path, js_kind: DeviceRole, js_scans: bool
) -> None:
    outcome = _sign_in(testserver, tmp_path, js_kind, js_scans)
    result, done = outcome.result, outcome.js_event("done")
    assert done is not None, outcome.js_events
    assert outcome.js_event("failed") is None and outcome.js_event("on_failure") is None, outcome.js_events
    assert result.succeeded, result
    expected = user_secrets("alice")
    if js_kind is DeviceRole.EXISTING:
        assert done["secrets"] == _secrets_json(expected)  # what js-sdk exported ...
        assert result.secrets == expected  # ... is what qrlogin's new device received
        assert result.access_token is not None
        new_token = result.access_token.value.decode()
        assert (result.user_id, result.device_id) == (USER_ID, NEW_DEVICE)
    else:
        # js-sdk's new device hands back the whole m.login.secrets payload, "type" included.
        assert done["secrets"] == {"type": "m.login.secrets", **_secrets_json(expected)}
        # js-sdk's own discovery found the testserver from the server name, and its metadata validation passed.
        assert outcome.js_event("discovered") == {"event": "discovered", "base_url": BASE_URL, "issuer": BASE_URL + "/"}
        logged_in = outcome.js_event("logged_in")
        assert logged_in is not None
        new_token = logged_in["access_token"]
    assert testserver.get("/_matrix/client/v3/account/whoami", new_token) == {
        "user_id": USER_ID,
        "device_id": NEW_DEVICE,
    }
    listed = testserver.get("/_matrix/client/v3/devices", new_token)["devices"]
    assert {d["device_id"] for d in listed} == {EXISTING_DEVICE, NEW_DEVICE}
