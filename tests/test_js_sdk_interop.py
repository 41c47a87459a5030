"""The whole v1 sign-in with QR code against the deployed peer, npm matrix-js-sdk 43.0.0 (PEERS.md).

js-sdk's ``MSC4108SignInWithQR`` supports all four roles (``docs/interop.md``): the existing device generating the QR
(``linkNewDeviceByGeneratingQR``: Element Web's "link new device", the deployed case) or scanning it, and the new
device generating it (``signInByGeneratingQR``) or scanning it. Each runs here against a :mod:`qrlogin.device` in the
opposite role, over real HTTP to the homeserver model (device grant, device management, v1 rendezvous), with the real
clock: js-sdk polls every second, so one run takes a few seconds.

What is checked: both sides end in success; the E2EE secrets the existing device exported are the ones the new device
ends with; the new device's access token belongs to the new device id on the right account; both sides derived the
same check code. Negative runs: a wrong check code on either G, and a user cancelling on either side.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from qrlogin import device as dv
from qrlogin import homeserver as hsm
from qrlogin import qr
from qrlogin.login.events import Completed
from qrlogin.login.messages import Secrets, message_to_json
from qrlogin.sim.world import CLIENT_METADATA, user_secrets

from .js_sdk_peer import (
    BASE_URL,
    EVENT_TIMEOUT_S,
    HOSTS,
    SERVER_NAME,
    HomeserverOverHttp,
    JsSdkPeer,
    QrloginDevice,
    new_homeserver,
    now_ms,
    require_js_sdk,
    serve,
)

QRLOGIN_NEW_DEVICE = "QRPHONE"
JS_NEW_DEVICE = "JSPHONE"
ROLES = [
    pytest.param(dv.Kind.EXISTING, False, id="js-existing-generates"),  # Element Web "link new device"
    pytest.param(dv.Kind.EXISTING, True, id="js-existing-scans"),
    pytest.param(dv.Kind.NEW, False, id="js-new-generates"),
    pytest.param(dv.Kind.NEW, True, id="js-new-scans"),
]


def _secrets_json(secrets: Secrets) -> dict[str, Any]:
    """The ``m.login.secrets`` content without ``type``: what js-sdk's ``exportSecretsBundle()`` returns."""
    content = dict(message_to_json(secrets))
    del content["type"]
    return content


@dataclass
class Run:
    """What happened on both sides of one sign-in."""

    server: HomeserverOverHttp
    qrlogin: QrloginDevice
    js: JsSdkPeer
    js_events: list[dict[str, Any]] = field(default_factory=list)

    def js_event(self, name: str) -> dict[str, Any] | None:
        return next((e for e in self.js_events if e["event"] == name), None)


@dataclass(frozen=True)
class Script:
    """How the simulated user behaves."""

    typed_code: str | None = None  # what the user types on G instead of the code S shows
    cancel_on_js_after: str | None = None  # a js event after which the user cancels on the js device
    cancel_on_qrlogin_after: type | None = None  # a qrlogin effect after which the user cancels there
    consent: bool = True


def _run(tmp_path: Path, js_kind: dv.Kind, js_scans: bool, script: Script = Script()) -> Run:
    require_js_sdk()
    hs, user_id, token = new_homeserver()
    with serve(hs) as server:
        js_config: dict[str, Any] = {
            "kind": js_kind.value,
            "scan": js_scans,
            "server_name": SERVER_NAME,
            "base_url": BASE_URL,
            "loopback": server.loopback,
            "hosts": list(HOSTS),
        }
        qr_kind = dv.Kind.NEW if js_kind is dv.Kind.EXISTING else dv.Kind.EXISTING
        if js_kind is dv.Kind.EXISTING:
            js_config |= {"access_token": token, "secrets": _secrets_json(user_secrets("alice"))}
            config = dv.DeviceConfig(
                kind=qr_kind, generation=qr.Generation.V1, seed=b"qrlogin new device", base_url=BASE_URL,
                server_name=SERVER_NAME, device_id=QRLOGIN_NEW_DEVICE, client_metadata=CLIENT_METADATA,
                poll_interval_ms=250,
            )  # fmt: skip
        else:
            js_config |= {"device_id": JS_NEW_DEVICE, "client_metadata": json.loads(CLIENT_METADATA)}
            config = dv.DeviceConfig(
                kind=qr_kind, generation=qr.Generation.V1, seed=b"qrlogin existing device", base_url=BASE_URL,
                server_name=SERVER_NAME, secrets=user_secrets("alice"), poll_interval_ms=250,
            )  # fmt: skip
        js = JsSdkPeer(js_config, log_path=tmp_path / "js-sdk.log")
        device = QrloginDevice(server, access_token=token if qr_kind is dv.Kind.EXISTING else None)
        run = Run(server=server, qrlogin=device, js=js)
        try:
            _drive(run, config, js_scans=js_scans, user_id=user_id, script=script)
        finally:
            js.close()
            device.close()
        return run


def _drive(run: Run, config: dv.DeviceConfig, *, js_scans: bool, user_id: str, script: Script) -> None:
    qd, js = run.qrlogin, run.js
    if js_scans:
        qd.start(dv.generate(config, now_ms=now_ms()))
    js_code: str | None = None
    asked_for_code = False
    done_with_effects = 0
    js_over = False
    deadline = now_ms() + int(EVENT_TIMEOUT_S * 1000)
    while now_ms() < deadline:
        if qd.device is not None:
            qd.step()
        for effect in qd.effects[done_with_effects:]:
            done_with_effects += 1
            if isinstance(effect, dv.ShowQrCode):
                js.send("scan", qr=_b64(effect.payload))
            elif isinstance(effect, dv.ShowCheckCode):
                js.send("check_code", code=script.typed_code or effect.code)  # the user types it on js's G
            elif isinstance(effect, dv.AskForCheckCode):
                asked_for_code = True
            elif isinstance(effect, dv.AskForConsent):
                if script.consent:
                    run.server.approve(effect.uri, user_id)
                qd.feed(dv.VerificationUriOpened())
            if script.cancel_on_qrlogin_after is not None and isinstance(effect, script.cancel_on_qrlogin_after):
                qd.feed(dv.UserCancelled())
        if asked_for_code and js_code is not None:
            asked_for_code = False
            qd.feed(dv.CheckCodeTyped(code=script.typed_code or js_code))
        event = js.poll(0.02)
        if event is not None:
            run.js_events.append(event)
            kind = event["event"]
            if kind == "qr":
                qd.start(dv.scan(config, _unb64(event["qr"]), now_ms=now_ms()))
            elif kind == "check_code":
                js_code = event["code"]
            elif kind == "verification_uri":
                if script.consent:
                    run.server.approve(event["uri"], user_id)
                js.send("consented")
            elif kind in ("done", "failed", "exited"):
                js_over = True
            if script.cancel_on_js_after == kind:
                js.send("cancel")
        if js_over and qd.device is not None and dv.is_done(qd.device):
            break
    else:
        pytest.fail(
            f"the sign-in did not end within {EVENT_TIMEOUT_S} s; js events {run.js_events}, "
            f"qrlogin finished {qd.finished}\n--- js-sdk log ---\n{js.log_tail()}"
        )
    # Let the reader collect an event that raced the end (the js process has exited or is exiting).
    while (event := js.poll(0.2)) is not None:
        run.js_events.append(event)


def _b64(data: bytes) -> str:
    import base64

    return base64.b64encode(data).decode()


def _unb64(text: str) -> bytes:
    import base64

    return base64.b64decode(text)


def _whoami(server: HomeserverOverHttp, token: str) -> dict[str, Any]:
    with server.lock:
        server.hs, response = hsm.handle(
            server.hs, hsm.HttpRequest.get("/_matrix/client/v3/account/whoami", access_token=token), now_ms=now_ms()
        )
    assert response.status == 200, response.body
    result: dict[str, Any] = json.loads(response.body)
    return result


@pytest.mark.parametrize(("js_kind", "js_scans"), ROLES)
def test_sign_in_completes_against_js_sdk(tmp_path: Path, js_kind: dv.Kind, js_scans: bool) -> None:
    run = _run(tmp_path, js_kind, js_scans)
    finished = run.qrlogin.finished
    done = run.js_event("done")
    assert done is not None, f"js-sdk events: {run.js_events}\n{run.js.log_tail()}"
    assert finished is not None and isinstance(finished.outcome, Completed), finished
    expected = user_secrets("alice")
    if js_kind is dv.Kind.EXISTING:
        # The secrets js-sdk exported arrived in qrlogin's outcome, and qrlogin's token is the new device's.
        assert finished.outcome.secrets == expected
        assert done["secrets"] == _secrets_json(expected)
        assert finished.outcome.tokens is not None
        who = _whoami(run.server, finished.outcome.tokens.access_token.value.decode())
        assert who == {"user_id": "@alice:qrlogin.test", "device_id": QRLOGIN_NEW_DEVICE}
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
    # Both ends derived the same check code (qrlogin's S showed it / qrlogin's G was given js's and accepted it).
    js_code = run.js_event("check_code")
    assert js_code is not None
    shown = run.qrlogin.of_type(dv.ShowCheckCode)
    if js_scans:
        assert not shown and run.qrlogin.of_type(dv.AskForCheckCode)
    else:
        assert [effect.code for effect in shown] == [js_code["code"]]
    assert run.js_event("failed") is None and run.js_event("on_failure") is None
    assert run.qrlogin.device is not None and dv.is_done(run.qrlogin.device)
