"""qrlogin.device: the composed machine's edges (the whole flow is exercised by the simulator tests)."""

from __future__ import annotations

import json

import pytest

from qrlogin import qr
from qrlogin.device import (
    DeviceConfig,
    ReportOutcome,
    ShowQrCode,
    derive,
    generate,
    is_done,
    next_timer,
    scan,
    transition,
)
from qrlogin.errors import LocalProtocolError
from qrlogin.http import HttpResponse
from qrlogin.login.events import ReportLoginFailure
from qrlogin.sim.world import BASE_URL, SERVER_NAME, user_secrets
from qrlogin.vocabulary import CheckCodeEntered, DeviceRole, HttpRequestFailed, HttpResponseReceived, SendHttpRequest


def _config(kind: DeviceRole, generation: qr.Generation = qr.Generation.V3, seed: bytes = b"s") -> DeviceConfig:
    if kind is DeviceRole.NEW:
        return DeviceConfig(
            kind=kind, generation=generation, seed=seed, base_url=BASE_URL, server_name=SERVER_NAME,
            device_id="NEW", client_id="client",
        )  # fmt: skip
    return DeviceConfig(
        kind=kind, generation=generation, seed=seed, base_url=BASE_URL, server_name=SERVER_NAME,
        secrets=user_secrets("alice"),
    )  # fmt: skip


def _created(generation: qr.Generation) -> HttpResponse:
    if generation is qr.Generation.V1:
        body = {"url": f"{BASE_URL}/_matrix/client/unstable/org.matrix.msc4108/rendezvous/abc"}
        return HttpResponse(status=201, headers=(("etag", '"0.x"'),), body=json.dumps(body).encode())
    body2 = {"id": "abc", "sequence_token": "0.x", "expires_in_ms": 120_000, "expires_ts": 120_000}
    return HttpResponse(status=200, headers=(("content-type", "application/json"),), body=json.dumps(body2).encode())


def test_derive_is_deterministic_and_label_separated() -> None:
    assert derive(b"seed", "a") == derive(b"seed", "a")
    assert derive(b"seed", "a") != derive(b"seed", "b")
    assert derive(b"seed", "a") != derive(b"other", "a")
    assert len(derive(b"seed", "a", 100)) == 100
    assert derive(b"seed", "a", 100)[:32] == derive(b"seed", "a")


@pytest.mark.parametrize("generation", tuple(qr.Generation))
@pytest.mark.parametrize("kind", tuple(DeviceRole))
def test_generate_posts_then_shows_a_qr_for_this_device(generation: qr.Generation, kind: DeviceRole) -> None:
    device, effects = generate(_config(kind, generation), now_ms=0)
    (post,) = effects
    assert isinstance(post, SendHttpRequest) and post.request.method == "POST"
    assert post.request.target.startswith(BASE_URL + "/_matrix/client/unstable/")
    device, effects = transition(
        device, HttpResponseReceived(request_id=post.request_id, response=_created(generation)), now_ms=5
    )
    shown = [e for e in effects if isinstance(e, ShowQrCode)]
    assert len(shown) == 1
    code = qr.decode(shown[0].payload)
    assert code == shown[0].code and code.generation is generation
    assert code.generator_is_new_device == (kind is DeviceRole.NEW)
    assert next_timer(device) is not None and not is_done(device)
    # The same seed gives the same QR; another seed another key.
    again, _ = transition(
        generate(_config(kind, generation), now_ms=0)[0],
        HttpResponseReceived(request_id=post.request_id, response=_created(generation)),
        now_ms=5,
    )
    assert again.qr_code == device.qr_code
    other, _ = transition(
        generate(_config(kind, generation, b"t"), now_ms=0)[0],
        HttpResponseReceived(request_id=post.request_id, response=_created(generation)),
        now_ms=5,
    )
    assert other.qr_code is not None and device.qr_code is not None
    assert other.qr_code.public_key != device.qr_code.public_key


@pytest.mark.parametrize(
    "payload",
    [b"", b"MATRIX", b"not a qr code at all", bytes.fromhex("4d41545249580300") + bytes(32)],
)
def test_a_bad_qr_ends_the_scanner_with_a_typed_failure(payload: bytes) -> None:
    device, effects = scan(_config(DeviceRole.EXISTING), payload, now_ms=0)
    assert len(effects) == 1 and isinstance(effects[0], ReportOutcome)
    assert isinstance(effects[0].outcome, ReportLoginFailure) and str(effects[0].outcome.reason).startswith(
        "invalid_qr_code"
    )
    assert is_done(device)


def _qr_from(kind: DeviceRole, generation: qr.Generation) -> bytes:
    device, (post,) = generate(_config(kind, generation), now_ms=0)
    assert isinstance(post, SendHttpRequest)
    device, _ = transition(
        device, HttpResponseReceived(request_id=post.request_id, response=_created(generation)), now_ms=0
    )
    assert device.qr_code is not None
    return qr.encode(device.qr_code)


def test_a_qr_for_the_same_side_or_another_generation_is_refused() -> None:
    shown_by_existing = _qr_from(DeviceRole.EXISTING, qr.Generation.V3)
    _, effects = scan(_config(DeviceRole.EXISTING), shown_by_existing, now_ms=0)  # two existing devices
    assert isinstance(effects[0], ReportOutcome) and isinstance(effects[0].outcome, ReportLoginFailure)
    _, effects = scan(_config(DeviceRole.NEW, qr.Generation.V1), shown_by_existing, now_ms=0)
    assert isinstance(effects[0], ReportOutcome) and isinstance(effects[0].outcome, ReportLoginFailure)
    _, effects = scan(_config(DeviceRole.NEW), shown_by_existing, now_ms=0)
    assert isinstance(effects[0], SendHttpRequest) and effects[0].request.method == "GET"


def test_v2_scanner_resolves_the_server_name_first() -> None:
    payload = _qr_from(DeviceRole.EXISTING, qr.Generation.V2)
    device, (lookup,) = scan(_config(DeviceRole.NEW, qr.Generation.V2), payload, now_ms=0)
    assert isinstance(lookup, SendHttpRequest)
    assert lookup.request.target == f"https://{SERVER_NAME}/.well-known/matrix/client"
    # No answer: the device ends with a typed failure rather than guessing a URL.
    device, effects = transition(device, HttpRequestFailed(request_id=lookup.request_id), now_ms=1)
    finished = [e for e in effects if isinstance(e, ReportOutcome)]
    assert len(finished) == 1 and isinstance(finished[0].outcome, ReportLoginFailure)
    assert is_done(device)


def test_misuse_raises_before_anything_changes() -> None:
    device, _ = generate(_config(DeviceRole.NEW), now_ms=0)
    with pytest.raises(LocalProtocolError):
        transition(device, CheckCodeEntered(code="12"), now_ms=0)  # nobody asked
    with pytest.raises(LocalProtocolError):
        generate(
            DeviceConfig(
                kind=DeviceRole.EXISTING,
                generation=qr.Generation.V3,
                seed=b"",
                base_url=BASE_URL,
                server_name=SERVER_NAME,
            ),
            now_ms=0,
        )


def test_duplicate_answers_are_ignored_and_never_issued_ids_are_misuse() -> None:
    device, (post,) = generate(_config(DeviceRole.NEW), now_ms=0)
    assert isinstance(post, SendHttpRequest)
    # Request ids are minted by the device; one it never issued can only come from the embedder.
    for rid in (0, -1, post.request_id + 1, 999):
        with pytest.raises(LocalProtocolError, match="never issued"):
            transition(device, HttpResponseReceived(request_id=rid, response=HttpResponse(status=200)), now_ms=0)
        with pytest.raises(LocalProtocolError, match="never issued"):
            transition(device, HttpRequestFailed(request_id=rid), now_ms=0)
    device, _ = transition(
        device, HttpResponseReceived(request_id=post.request_id, response=_created(qr.Generation.V3)), now_ms=0
    )
    again, effects = transition(
        device, HttpResponseReceived(request_id=post.request_id, response=_created(qr.Generation.V3)), now_ms=0
    )
    assert again == device and effects == ()


def test_repr_shows_no_secret() -> None:
    config = _config(DeviceRole.EXISTING, seed=b"very secret seed")
    device, _ = generate(config, now_ms=0)
    text = repr(device)
    assert "very secret seed" not in text and derive(config.seed, "channel secret").hex() not in text
