"""The whole v1 sign-in with QR code against the deployed peer, npm matrix-js-sdk 43.0.0 (docs/interop.md).

js-sdk's ``MSC4108SignInWithQR`` supports all four roles (``docs/interop.md``): the existing device generating the QR
(``linkNewDeviceByGeneratingQR``: Element Web's "link new device", the deployed case) or scanning it, and the new
device generating it (``signInByGeneratingQR``) or scanning it. Each runs here against a :mod:`qrlogin.device` in the
opposite role, run by the packaged runner (:func:`qrlogin.runner.run_device`, as an application runs it) over real
HTTP to the homeserver model (device grant, device management, v1 rendezvous), with the real clock: js-sdk polls every
second, so one run takes a few seconds. The test is the user of both: it carries the QR code, types the check code,
consents, and on the qrlogin side plays the runner's :class:`~qrlogin.runner.UserInterface`.

What is checked: both sides end in success; the E2EE secrets the existing device exported are the ones the new device
ends with; the new device's access token belongs to the new device id on the right account; both sides derived the
same check code. Negative runs: a wrong check code on either G, a user cancelling on either side, and qrlogin's
scanner giving up while js-sdk holds the rendezvous slot (it must still deliver its ``m.login.failure``).
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from qrlogin import device as dv
from qrlogin import homeserver as hsm
from qrlogin import qr
from qrlogin import runner as rn
from qrlogin._secret import Secret
from qrlogin.login.messages import Secrets, message_to_json
from qrlogin.sim.world import CLIENT_METADATA, user_secrets
from qrlogin.vocabulary import DeviceRole, OpenVerificationUri
from tests.device.js_sdk_peer import (
    BASE_URL,
    EVENT_TIMEOUT_S,
    RENDEZVOUS_URL,
    SERVER_NAME,
    HomeserverOverHttp,
    JsSdkPeer,
    new_homeserver,
    now_ms,
    require_js_sdk,
    serve,
)
from tests.peers import run_qrlogin

pytestmark = pytest.mark.interop

QRLOGIN_NEW_DEVICE = "QRPHONE"
JS_NEW_DEVICE = "JSPHONE"
ROLES = [
    pytest.param(DeviceRole.EXISTING, False, id="js-existing-generates"),  # Element Web "link new device"
    pytest.param(DeviceRole.EXISTING, True, id="js-existing-scans"),
    pytest.param(DeviceRole.NEW, False, id="js-new-generates"),
    pytest.param(DeviceRole.NEW, True, id="js-new-scans"),
]


def _secrets_json(secrets: Secrets) -> dict[str, Any]:
    """The ``m.login.secrets`` content without ``type``: what js-sdk's ``exportSecretsBundle()`` returns."""
    content = dict(message_to_json(secrets))
    del content["type"]
    return content


class QrloginUser:
    """The user at the qrlogin device, as the runner's :class:`~qrlogin.runner.UserInterface`: what the device shows
    is recorded, the QR code goes to js-sdk, and the script decides what the user types and when they give up."""

    def __init__(self, run: Run, script: Script, user_id: str) -> None:
        self.run = run
        self.script = script
        self.user_id = user_id
        self.shown: list[tuple[str, str]] = []  # (what, detail), in order: qr, check_code, prompt, progress, ...
        self.cancel = asyncio.Event()
        self.js_code: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self.held_code: str | None = None  # the code qrlogin shows, not yet typed into js-sdk

    def _cancel(self) -> None:
        if self.run.cancelled_at_ms is None:
            self.run.cancelled_at_ms = now_ms()
            self.cancel.set()

    def show_qr(self, payload: bytes, code: qr.QrCode) -> None:
        self.shown.append(("qr", payload.hex()))
        self.run.js.send("scan", qr=_b64(payload))

    def show_check_code(self, code: str) -> None:
        self.shown.append(("check_code", code))
        self.held_code = _typed(self.script, code)  # the user types it on js's G

    async def ask_check_code(self) -> str:
        self.shown.append(("prompt", "check_code"))
        return _typed(self.script, await self.js_code)

    async def confirm_sign_in(self) -> bool:
        if self.script.cancel_on_qrlogin_after is OpenVerificationUri:
            self.run.cancelled_at_ms = now_ms()
            return False  # the user refuses instead of opening the consent page
        return True

    async def open_verification_uri(self, uri: str) -> bool:
        self.run.server.approve(uri, self.user_id)
        return True

    def show_user_code(self, user_code: str) -> None:
        self.shown.append(("user_code", user_code))

    def progress(self, step: str) -> None:
        self.shown.append(("progress", step))
        wanted = self.script.cancel_on_qrlogin_after
        if isinstance(wanted, str) and step == f"sent {wanted}":
            self._cancel()

    def finished(self, result: rn.SignInResult) -> None:
        self.shown.append(("done", result.outcome))

    @property
    def login_ended(self) -> bool:
        return ("progress", "login ended, closing") in self.shown

    def sent(self) -> list[str]:
        return [detail.removeprefix("sent ") for what, detail in self.shown if what == "progress" and "sent " in detail]

    def received(self) -> list[str]:
        return [detail.removeprefix("received ") for what, detail in self.shown if detail.startswith("received ")]


@dataclass
class Run:
    """What happened on both sides of one sign-in."""

    server: HomeserverOverHttp
    js: JsSdkPeer
    js_events: list[dict[str, Any]] = field(default_factory=list)
    js_event_ms: list[int] = field(default_factory=list)  # when each js event was read, on the test's clock
    cancelled_at_ms: int | None = None  # when the user cancelled on qrlogin
    user: QrloginUser | None = None
    result: rn.SignInResult | None = None  # what the runner returned

    def js_event(self, name: str) -> dict[str, Any] | None:
        return next((e for e in self.js_events if e["event"] == name), None)

    def js_event_at_ms(self, name: str) -> int:
        return next(at for e, at in zip(self.js_events, self.js_event_ms, strict=True) if e["event"] == name)

    @property
    def qrlogin(self) -> QrloginUser:
        assert self.user is not None
        return self.user

    @property
    def finished(self) -> rn.SignInResult:
        assert self.result is not None, (self.qrlogin.shown, self.js_events)
        return self.result


@dataclass(frozen=True)
class Script:
    """How the simulated user behaves."""

    mistype: bool = False  # the user types a well-formed wrong code on G (the code S shows, plus one)
    cancel_on_js_after: str | None = None  # a js event after which the user cancels on the js device
    # OpenVerificationUri: the user refuses on qrlogin instead of opening the consent page; or the type of a login
    # message qrlogin sent after which the user cancels there.
    cancel_on_qrlogin_after: type | str | None = None
    code_after_qrlogin_ends: bool = False  # the user types the code qrlogin shows into js-sdk only after that


def _run(
    tmp_path: Path, js_kind: DeviceRole, js_scans: bool, script: Script = Script(), *, rendezvous: str | None = None
) -> Run:
    """One sign-in. ``rendezvous`` is the loopback origin of a separate ``qrlogin serve``; else the model serves it."""
    require_js_sdk()
    hs, user_id, token = new_homeserver()
    with serve(hs) as server:
        routes = server.routes
        js_config: dict[str, Any] = {
            "kind": js_kind.value,
            "scan": js_scans,
            "server_name": SERVER_NAME,
            "base_url": BASE_URL,
        }
        if rendezvous is not None:
            routes[urlsplit(RENDEZVOUS_URL).netloc] = rendezvous
            js_config["rendezvous_base"] = RENDEZVOUS_URL
        js_config["routes"] = routes
        qr_kind = DeviceRole.NEW if js_kind is DeviceRole.EXISTING else DeviceRole.EXISTING
        if js_kind is DeviceRole.EXISTING:
            js_config |= {
                "user_id": user_id,
                "device_id": "LAPTOP",
                "access_token": token,
                "secrets": _secrets_json(user_secrets("alice")),
            }
            config = dv.DeviceConfig(
                kind=qr_kind, generation=qr.Generation.V1, seed=os.urandom(32), base_url=BASE_URL,
                server_name=SERVER_NAME, device_id=QRLOGIN_NEW_DEVICE, client_metadata=CLIENT_METADATA,
                poll_interval_ms=250,
            )  # fmt: skip
        else:
            js_config |= {"device_id": JS_NEW_DEVICE, "client_metadata": json.loads(CLIENT_METADATA)}
            config = dv.DeviceConfig(
                kind=qr_kind, generation=qr.Generation.V1, seed=os.urandom(32), base_url=BASE_URL,
                server_name=SERVER_NAME, secrets=user_secrets("alice"), poll_interval_ms=250,
            )  # fmt: skip
        js = JsSdkPeer(js_config, log_path=tmp_path / "js-sdk.log")
        run = Run(server=server, js=js)
        access = Secret(token.encode()) if qr_kind is DeviceRole.EXISTING else None
        try:
            asyncio.run(_drive(run, config, routes, access, js_scans=js_scans, user_id=user_id, script=script))
        finally:
            js.close()
        return run


async def _drive(
    run: Run,
    config: dv.DeviceConfig,
    routes: dict[str, str],
    access_token: Secret | None,
    *,
    js_scans: bool,
    user_id: str,
    script: Script,
) -> None:
    js = run.js
    user = run.user = QrloginUser(run, script, user_id)
    options = rn.TransportOptions(connect_to=routes)  # the https names of the model, on its loopback port

    async with httpx.AsyncClient() as http:
        transport = rn.Transport(http, options, access_token=access_token)

        async def device(qr_payload: bytes | None) -> None:
            run.result = await rn.run_device(
                config, user, transport, qr_payload=qr_payload, timeout_s=EVENT_TIMEOUT_S, cancel=user.cancel
            )

        task = asyncio.ensure_future(device(None)) if js_scans else None
        js_over = False
        deadline = now_ms() + int(EVENT_TIMEOUT_S * 1000)
        while now_ms() < deadline:
            held = user.held_code
            if held is not None and (not script.code_after_qrlogin_ends or user.login_ended):
                js.send("check_code", code=held)
                user.held_code = None
            event = await asyncio.to_thread(js.poll, 0.02)
            if event is not None:
                run.js_events.append(event)
                run.js_event_ms.append(now_ms())
                kind = event["event"]
                if script.cancel_on_js_after == kind:
                    js.send("cancel")  # instead of what the event asked for
                elif kind == "qr":
                    task = asyncio.ensure_future(device(_unb64(event["qr"])))
                elif kind == "check_code" and not user.js_code.done():
                    user.js_code.set_result(event["code"])
                elif kind == "verification_uri":
                    run.server.approve(event["uri"], user_id)
                    js.send("consented")
                elif kind in ("done", "failed", "cancelled", "exited"):
                    js_over = True
            if js_over and (task is None or task.done()):
                break
        else:
            pytest.fail(
                f"the sign-in did not end within {EVENT_TIMEOUT_S} s; js events {run.js_events}, "
                f"qrlogin showed {user.shown}\n--- js-sdk log ---\n{js.log_tail()}"
            )
        if task is not None:
            await task
    # Let the reader collect an event that raced the end (the js process has exited or is exiting).
    while (event := js.poll(0.2)) is not None:
        run.js_events.append(event)
        run.js_event_ms.append(now_ms())


def _typed(script: Script, shown: str) -> str:
    return f"{(int(shown) + 1) % 100:02d}" if script.mistype else shown


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _unb64(text: str) -> bytes:
    return base64.b64decode(text, validate=True)


def _whoami(server: HomeserverOverHttp, token: str) -> dict[str, Any]:
    with server.lock:
        server.hs, response = hsm.handle(
            server.hs, hsm.HttpRequest.get("/_matrix/client/v3/account/whoami", access_token=token), now_ms=now_ms()
        )
    assert response.status == 200, response.body
    result: dict[str, Any] = json.loads(response.body)
    return result


@pytest.mark.parametrize(("js_kind", "js_scans"), ROLES)
def test_sign_in_completes_against_js_sdk(tmp_path: Path, js_kind: DeviceRole, js_scans: bool) -> None:
    _assert_success(_run(tmp_path, js_kind, js_scans), js_kind, js_scans)


def test_deployed_direction_with_qrlogin_serve_as_the_rendezvous(tmp_path: Path) -> None:
    """Element Web's direction with the session on `qrlogin serve` (uvicorn and the ASGI adapter, a separate process)
    instead of the homeserver model: js-sdk creates it there, qrlogin's new device joins it from the QR."""
    require_js_sdk()
    with run_qrlogin("--generations", "v1", "--public-base-url", RENDEZVOUS_URL) as rendezvous:
        run = _run(tmp_path, DeviceRole.EXISTING, False, rendezvous=rendezvous)
    _assert_success(run, DeviceRole.EXISTING, False)
    qr_event = run.js_event("qr")
    assert qr_event is not None
    code = qr.decode(_unb64(qr_event["qr"]))
    assert code.rendezvous_url is not None and code.rendezvous_url.startswith(RENDEZVOUS_URL + "/")
    assert not any("rendezvous" in path for _, path, _ in run.server.requests)  # the model saw none of it


def _assert_success(run: Run, js_kind: DeviceRole, js_scans: bool) -> None:
    finished = run.finished
    done = run.js_event("done")
    assert done is not None, f"js-sdk events: {run.js_events}\n{run.js.log_tail()}"
    assert finished.succeeded, finished
    expected = user_secrets("alice")
    if js_kind is DeviceRole.EXISTING:
        # The secrets js-sdk exported arrived in qrlogin's result, and qrlogin's token is the new device's.
        assert finished.secrets == expected
        assert done["secrets"] == _secrets_json(expected)
        assert finished.access_token is not None
        who = _whoami(run.server, finished.access_token.value.decode())
        assert who == {"user_id": "@alice:qrlogin.test", "device_id": QRLOGIN_NEW_DEVICE}
        assert (finished.user_id, finished.device_id) == ("@alice:qrlogin.test", QRLOGIN_NEW_DEVICE)
    else:
        # js-sdk received exactly the secrets qrlogin sent (its new device hands back the whole payload, "type"
        # included), and its token is for JSPHONE on alice's account.
        assert done["secrets"] == {"type": "m.login.secrets", **_secrets_json(expected)}
        logged_in = run.js_event("logged_in")
        assert logged_in is not None
        assert _whoami(run.server, logged_in["access_token"]) == {
            "user_id": "@alice:qrlogin.test",
            "device_id": JS_NEW_DEVICE,
        }
        # js-sdk's own discovery (AutoDiscovery, then getAuthMetadata's validation) found the model.
        assert run.js_event("discovered") == {"event": "discovered", "base_url": BASE_URL, "issuer": BASE_URL + "/"}
    # Both ends derived the same check code (qrlogin's S showed it / qrlogin's G was given js's and accepted it).
    js_code = run.js_event("check_code")
    assert js_code is not None
    shown = [detail for what, detail in run.qrlogin.shown if what == "check_code"]
    if js_scans:
        assert not shown and ("prompt", "check_code") in run.qrlogin.shown
    else:
        assert shown == [js_code["code"]]
    assert run.js_event("failed") is None and run.js_event("on_failure") is None
    assert run.qrlogin.shown[-1] == ("done", "success")


def _alice_devices(server: HomeserverOverHttp) -> set[str]:
    with server.lock:
        account = server.hs.registry.accounts["@alice:qrlogin.test"]
    return set(account.devices)


def test_wrong_check_code_on_qrlogin_stops_both(tmp_path: Path) -> None:
    """qrlogin (new device, G) is given a wrong code: it fails, deletes the rendezvous, and js-sdk's flow rejects."""
    run = _run(tmp_path, DeviceRole.EXISTING, True, Script(mistype=True))
    assert run.finished.outcome == "check_code_mismatch"
    # js-sdk (S) learns of it only from the 404 after the deletion: its onFailure says "unknown", and the step it
    # was in (waiting for the new device's m.login.protocol) rejects as an unexpected (missing) message.
    failed = run.js_event("failed")
    assert failed is not None and failed["code"] == "unexpected_message_received", run.js_events
    assert {"event": "on_failure", "reason": "unknown"} in run.js_events
    assert run.js_event("verification_uri") is None  # the existing device never got as far as the grant
    assert _alice_devices(run.server) == {"LAPTOP"}
    assert ("DELETE", 204) in {(method, status) for method, _, status in run.server.requests}


def test_wrong_check_code_on_js_sdk_stops_both(tmp_path: Path) -> None:
    """The deployed direction: the user mistypes the code into Element Web (js-sdk, existing device, G)."""
    run = _run(tmp_path, DeviceRole.EXISTING, False, Script(mistype=True))
    failed = run.js_event("failed")
    assert failed is not None and failed["code"] == "insecure_channel_detected"
    finished = run.finished
    assert finished.outcome == "channel_closed" and not finished.by_peer
    assert finished.session_end == "deleted"  # js-sdk deleted it: not an expiry
    assert _alice_devices(run.server) == {"LAPTOP"}


def test_user_cancels_on_qrlogin(tmp_path: Path) -> None:
    """qrlogin's existing device cancels instead of opening the URI: js-sdk's new device rejects with user_cancelled."""
    run = _run(tmp_path, DeviceRole.NEW, False, Script(cancel_on_qrlogin_after=OpenVerificationUri))
    finished = run.finished
    assert finished.outcome == "user_cancelled" and not finished.by_peer
    failed = run.js_event("failed")
    assert failed is not None and failed["code"] == "user_cancelled", run.js_events
    assert run.js_event("logged_in") is None
    assert _alice_devices(run.server) == {"LAPTOP"}


def test_user_cancels_on_js_sdk_without_a_failure_message(tmp_path: Path) -> None:
    """Element Web's cancel sends no m.login.failure: qrlogin's new device learns of it from the 404 that follows."""
    run = _run(tmp_path, DeviceRole.EXISTING, False, Script(cancel_on_js_after="verification_uri"))
    assert run.js_event("cancelled") is not None
    finished = run.finished
    assert finished.outcome == "channel_closed" and not finished.by_peer
    assert finished.session_end == "deleted"  # the 404 came long before the session's expiry
    assert not any(kind.startswith("m.login.failure") for kind in run.qrlogin.received())
    assert _alice_devices(run.server) == {"LAPTOP"}


@pytest.mark.parametrize(
    ("js_kind", "last_sent"),
    [
        pytest.param(DeviceRole.EXISTING, "m.login.protocol", id="qrlogin-new-device-scans"),
        pytest.param(DeviceRole.NEW, "m.login.protocols", id="qrlogin-existing-device-scans"),
    ],
)
def test_qrlogin_scanner_that_gives_up_tells_js_sdk(tmp_path: Path, js_kind: DeviceRole, last_sent: str) -> None:
    """qrlogin scanned, wrote its first login message, and the user cancels on it while js-sdk holds the slot: the user
    has not typed the check code into js-sdk's G yet (they do so after). A scanner cannot delete the session, so its
    m.login.failure is the only news js-sdk can get: qrlogin keeps polling, writes it on its next turn, and js-sdk's
    flow rejects with user_cancelled within seconds, not when the session expires (120 s on the model)."""
    run = _run(tmp_path, js_kind, False, Script(cancel_on_qrlogin_after=last_sent, code_after_qrlogin_ends=True))
    finished = run.finished
    assert finished.outcome == "user_cancelled" and not finished.by_peer
    failed = run.js_event("failed")
    assert failed is not None and failed["code"] == "user_cancelled", run.js_events
    assert run.cancelled_at_ms is not None
    elapsed_ms = run.js_event_at_ms("failed") - run.cancelled_at_ms
    assert elapsed_ms < 20_000, elapsed_ms  # a few of js-sdk's 1 s polls and its discovery; expiry is 120 s away
    assert run.qrlogin.shown[-1] == ("done", "user_cancelled")  # the runner returned: the device is done
    assert run.qrlogin.sent() == [last_sent, "m.login.failure (user_cancelled)"]
    assert run.js_event("done") is None and run.js_event("logged_in") is None
    assert _alice_devices(run.server) == {"LAPTOP"}


def test_a_missing_peer_fails_under_ci(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from . import js_sdk_peer

    monkeypatch.setattr(js_sdk_peer, "JS_SDK_PACKAGE", tmp_path / "absent" / "package.json")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="required in CI"):
        require_js_sdk()
    monkeypatch.setenv("CI", "false")
    with pytest.raises(pytest.skip.Exception):
        require_js_sdk()
