"""The whole v1 sign-in with QR code against the deployed peer, npm matrix-js-sdk 43.0.0 (docs/interop.md).

js-sdk's ``MSC4108SignInWithQR`` supports all four roles (``docs/interop.md``): the existing device generating the QR
(``linkNewDeviceByGeneratingQR``: Element Web's "link new device", the deployed case) or scanning it, and the new
device generating it (``signInByGeneratingQR``) or scanning it. Each runs here against a :mod:`qrlogin.device` in the
opposite role, over real HTTP to the homeserver model (device grant, device management, v1 rendezvous), with the real
clock: js-sdk polls every second, so one run takes a few seconds.

What is checked: both sides end in success; the E2EE secrets the existing device exported are the ones the new device
ends with; the new device's access token belongs to the new device id on the right account; both sides derived the
same check code. Negative runs: a wrong check code on either G, a user cancelling on either side, and qrlogin's
scanner giving up while js-sdk holds the rendezvous slot (it must still deliver its ``m.login.failure``).
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from qrlogin import device as dv
from qrlogin import homeserver as hsm
from qrlogin import qr
from qrlogin.channel import FailureReason as ChannelFailureReason
from qrlogin.login.events import ReportLoginFailure, ReportLoginSuccess
from qrlogin.login.messages import FailureReason as LoginFailureReason
from qrlogin.login.messages import Secrets, message_to_json
from qrlogin.sim.world import CLIENT_METADATA, user_secrets
from qrlogin.vocabulary import (
    CheckCodeEntered,
    DeviceRole,
    OpenVerificationUri,
    PromptForCheckCode,
    ShowCheckCode,
    UserCancelled,
    VerificationUriOpened,
)
from tests.device.js_sdk_peer import (
    BASE_URL,
    EVENT_TIMEOUT_S,
    RENDEZVOUS_URL,
    SERVER_NAME,
    HomeserverOverHttp,
    JsSdkPeer,
    QrloginDevice,
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


@dataclass
class Run:
    """What happened on both sides of one sign-in."""

    server: HomeserverOverHttp
    qrlogin: QrloginDevice
    js: JsSdkPeer
    js_events: list[dict[str, Any]] = field(default_factory=list)
    js_event_ms: list[int] = field(default_factory=list)  # when each js event was read, on the test's clock
    cancelled_at_ms: int | None = None  # when the user cancelled on qrlogin

    def js_event(self, name: str) -> dict[str, Any] | None:
        return next((e for e in self.js_events if e["event"] == name), None)

    def js_event_at_ms(self, name: str) -> int:
        return next(at for e, at in zip(self.js_events, self.js_event_ms, strict=True) if e["event"] == name)


@dataclass(frozen=True)
class Script:
    """How the simulated user behaves."""

    mistype: bool = False  # the user types a well-formed wrong code on G (the code S shows, plus one)
    cancel_on_js_after: str | None = None  # a js event after which the user cancels on the js device
    # A qrlogin effect after which the user cancels there (instead of doing what it asks), or the type of a login
    # message qrlogin sent (ReportMessageSent) after which the user cancels.
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
        device = QrloginDevice(routes, access_token=token if qr_kind is DeviceRole.EXISTING else None)
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
    held_code: str | None = None  # the code qrlogin shows, not yet typed into js-sdk
    asked_for_code = False
    done_with_effects = 0
    js_over = False
    deadline = now_ms() + int(EVENT_TIMEOUT_S * 1000)
    while now_ms() < deadline:
        if qd.device is not None:
            qd.step()
        for effect in qd.effects[done_with_effects:]:
            done_with_effects += 1
            if _cancels_after(script, effect) and run.cancelled_at_ms is None:
                run.cancelled_at_ms = now_ms()
                qd.feed(UserCancelled())  # instead of what the effect asked for
            elif isinstance(effect, dv.ShowQrCode):
                js.send("scan", qr=_b64(effect.payload))
            elif isinstance(effect, ShowCheckCode):
                held_code = _typed(script, effect.code)  # the user types it on js's G
            elif isinstance(effect, PromptForCheckCode):
                asked_for_code = True
            elif isinstance(effect, OpenVerificationUri):
                run.server.approve(effect.uri, user_id)
                qd.feed(VerificationUriOpened())
        if held_code is not None and (not script.code_after_qrlogin_ends or qd.finished is not None):
            js.send("check_code", code=held_code)
            held_code = None
        if asked_for_code and js_code is not None:
            asked_for_code = False
            qd.feed(CheckCodeEntered(code=_typed(script, js_code)))
        event = js.poll(0.02)
        if event is not None:
            run.js_events.append(event)
            run.js_event_ms.append(now_ms())
            kind = event["event"]
            if script.cancel_on_js_after == kind:
                js.send("cancel")  # instead of what the event asked for
            elif kind == "qr":
                qd.start(dv.scan(config, _unb64(event["qr"]), now_ms=now_ms()))
            elif kind == "check_code":
                js_code = event["code"]
            elif kind == "verification_uri":
                run.server.approve(event["uri"], user_id)
                js.send("consented")
            elif kind in ("done", "failed", "cancelled", "exited"):
                js_over = True
        if js_over and (qd.device is None or dv.is_done(qd.device)):
            break
    else:
        pytest.fail(
            f"the sign-in did not end within {EVENT_TIMEOUT_S} s; js events {run.js_events}, "
            f"qrlogin finished {qd.finished}\n--- js-sdk log ---\n{js.log_tail()}"
        )
    # Let the reader collect an event that raced the end (the js process has exited or is exiting).
    while (event := js.poll(0.2)) is not None:
        run.js_events.append(event)
        run.js_event_ms.append(now_ms())


def _cancels_after(script: Script, effect: dv.Effect) -> bool:
    wanted = script.cancel_on_qrlogin_after
    if isinstance(wanted, str):
        return isinstance(effect, dv.ReportMessageSent) and effect.message_type == wanted
    return wanted is not None and isinstance(effect, wanted)


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
    finished = run.qrlogin.finished
    done = run.js_event("done")
    assert done is not None, f"js-sdk events: {run.js_events}\n{run.js.log_tail()}"
    assert finished is not None and isinstance(finished.result, ReportLoginSuccess), finished
    expected = user_secrets("alice")
    if js_kind is DeviceRole.EXISTING:
        # The secrets js-sdk exported arrived in qrlogin's outcome, and qrlogin's token is the new device's.
        assert finished.result.secrets == expected
        assert done["secrets"] == _secrets_json(expected)
        assert finished.result.tokens is not None
        who = _whoami(run.server, finished.result.tokens.access_token.value.decode())
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
    shown = run.qrlogin.of_type(ShowCheckCode)
    if js_scans:
        assert not shown and run.qrlogin.of_type(PromptForCheckCode)
    else:
        assert [effect.code for effect in shown] == [js_code["code"]]
    assert run.js_event("failed") is None and run.js_event("on_failure") is None
    assert run.qrlogin.device is not None and dv.is_done(run.qrlogin.device)


def _alice_devices(server: HomeserverOverHttp) -> set[str]:
    with server.lock:
        account = server.hs.registry.accounts["@alice:qrlogin.test"]
    return set(account.devices)


def _received(run: Run) -> list[str]:
    return [note.message_type for note in run.qrlogin.of_type(dv.ReportMessageReceived)]


def test_wrong_check_code_on_qrlogin_stops_both(tmp_path: Path) -> None:
    """qrlogin (new device, G) is given a wrong code: it fails, deletes the rendezvous, and js-sdk's flow rejects."""
    run = _run(tmp_path, DeviceRole.EXISTING, True, Script(mistype=True))
    finished = run.qrlogin.finished
    assert finished is not None and isinstance(finished.result, ReportLoginFailure)
    assert finished.channel_failure is ChannelFailureReason.CHECK_CODE_MISMATCH
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
    finished = run.qrlogin.finished
    assert finished is not None and isinstance(finished.result, ReportLoginFailure)
    assert finished.result.reason == "channel_closed" and not finished.result.by_peer
    assert finished.session_end is dv.SessionEnd.DELETED  # js-sdk deleted it: not an expiry
    assert _alice_devices(run.server) == {"LAPTOP"}


def test_user_cancels_on_qrlogin(tmp_path: Path) -> None:
    """qrlogin's existing device cancels instead of opening the URI: js-sdk's new device rejects with user_cancelled."""
    run = _run(tmp_path, DeviceRole.NEW, False, Script(cancel_on_qrlogin_after=OpenVerificationUri))
    finished = run.qrlogin.finished
    assert finished is not None and isinstance(finished.result, ReportLoginFailure)
    assert finished.result.reason == "user_cancelled" and not finished.result.by_peer
    failed = run.js_event("failed")
    assert failed is not None and failed["code"] == "user_cancelled", run.js_events
    assert run.js_event("logged_in") is None
    assert _alice_devices(run.server) == {"LAPTOP"}


def test_user_cancels_on_js_sdk_without_a_failure_message(tmp_path: Path) -> None:
    """Element Web's cancel sends no m.login.failure: qrlogin's new device learns of it from the 404 that follows."""
    run = _run(tmp_path, DeviceRole.EXISTING, False, Script(cancel_on_js_after="verification_uri"))
    assert run.js_event("cancelled") is not None
    finished = run.qrlogin.finished
    assert finished is not None and isinstance(finished.result, ReportLoginFailure)
    assert finished.result.reason == "channel_closed" and not finished.result.by_peer
    assert finished.session_end is dv.SessionEnd.DELETED  # the 404 came long before the session's expiry
    assert not any(kind.startswith("m.login.failure") for kind in _received(run))
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
    finished = run.qrlogin.finished
    assert finished is not None
    assert finished.result == ReportLoginFailure(reason=LoginFailureReason.USER_CANCELLED)
    failed = run.js_event("failed")
    assert failed is not None and failed["code"] == "user_cancelled", run.js_events
    assert run.cancelled_at_ms is not None
    elapsed_ms = run.js_event_at_ms("failed") - run.cancelled_at_ms
    assert elapsed_ms < 20_000, elapsed_ms  # a few of js-sdk's 1 s polls and its discovery; expiry is 120 s away
    assert run.qrlogin.device is not None and dv.is_done(run.qrlogin.device)
    sent = [note.message_type for note in run.qrlogin.of_type(dv.ReportMessageSent)]
    assert sent == [last_sent, "m.login.failure (user_cancelled)"]
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
