"""qrlogin.device: the composed machine's edges (the whole flow is exercised by the simulator tests)."""

from __future__ import annotations

import dataclasses
import json
import typing

import pytest

from qrlogin import qr
from qrlogin.channel import ChannelEffect
from qrlogin.device import (
    AwaitingHandshake,
    DeviceConfig,
    ReportOutcome,
    SessionEnd,
    ShowQrCode,
    SignInFailed,
    State,
    deadline,
    derive,
    generate,
    is_done,
    outcome,
    scan,
    transition,
)
from qrlogin.device.routing import CHANNEL_ROUTES, LOGIN_ROUTES, RENDEZVOUS_ROUTES
from qrlogin.errors import LocalProtocolError
from qrlogin.http import HttpResponse
from qrlogin.login.events import Effect as LoginEffect
from qrlogin.login.events import ReportLoginFailure
from qrlogin.rendezvous import client as rz
from qrlogin.sim.world import BASE_URL, SERVER_NAME, user_secrets
from qrlogin.vocabulary import (
    CheckCodeEntered,
    DeviceRole,
    HttpRequestFailed,
    HttpResponseReceived,
    SendHttpRequest,
    TimerFired,
    UserCancelled,
)


def _config(kind: DeviceRole, generation: qr.Generation = qr.Generation.V3, seed: bytes = b"s" * 32) -> DeviceConfig:
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
    device: State
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
    assert deadline(device) is not None and not is_done(device)
    # The same seed gives the same QR; another seed another key.
    assert _qr_from(kind, generation) == shown[0].payload
    assert qr.decode(_qr_from(kind, generation, b"t" * 32)).public_key != code.public_key
    if generation is qr.Generation.V3:  # what deployed parsers read while the rendezvous path is unstable
        assert code.unstable_prefix and code.id_length_layout is qr.IdLengthLayout.U16


@pytest.mark.parametrize(
    "payload",
    [b"", b"MATRIX", b"not a qr code at all", bytes.fromhex("4d41545249580300") + bytes(32)],
)
def test_a_bad_qr_ends_the_scanner_with_a_typed_failure(payload: bytes) -> None:
    device, effects = scan(_config(DeviceRole.EXISTING), payload, now_ms=0)
    assert len(effects) == 1 and isinstance(effects[0], ReportOutcome)
    assert isinstance(effects[0].result, ReportLoginFailure) and str(effects[0].result.reason).startswith(
        "invalid_qr_code"
    )
    assert is_done(device)


def _qr_from(kind: DeviceRole, generation: qr.Generation, seed: bytes = b"s" * 32) -> bytes:
    device, (post,) = generate(_config(kind, generation, seed), now_ms=0)
    assert isinstance(post, SendHttpRequest)
    _, effects = transition(
        device, HttpResponseReceived(request_id=post.request_id, response=_created(generation)), now_ms=0
    )
    (shown,) = [effect for effect in effects if isinstance(effect, ShowQrCode)]
    return shown.payload


def test_a_qr_for_the_same_side_or_another_generation_is_refused() -> None:
    shown_by_existing = _qr_from(DeviceRole.EXISTING, qr.Generation.V3)
    _, effects = scan(_config(DeviceRole.EXISTING), shown_by_existing, now_ms=0)  # two existing devices
    assert isinstance(effects[0], ReportOutcome) and isinstance(effects[0].result, ReportLoginFailure)
    _, effects = scan(_config(DeviceRole.NEW, qr.Generation.V1), shown_by_existing, now_ms=0)
    assert isinstance(effects[0], ReportOutcome) and isinstance(effects[0].result, ReportLoginFailure)
    _, effects = scan(_config(DeviceRole.NEW), shown_by_existing, now_ms=0)
    assert isinstance(effects[0], SendHttpRequest) and effects[0].request.method == "GET"


def test_v2_scanner_resolves_the_server_name_first() -> None:
    payload = _qr_from(DeviceRole.EXISTING, qr.Generation.V2)
    device: State
    device, (lookup,) = scan(_config(DeviceRole.NEW, qr.Generation.V2), payload, now_ms=0)
    assert isinstance(lookup, SendHttpRequest)
    assert lookup.request.target == f"https://{SERVER_NAME}/.well-known/matrix/client"
    # No answer: the device ends with a typed failure rather than guessing a URL.
    device, effects = transition(device, HttpRequestFailed(request_id=lookup.request_id), now_ms=1)
    finished = [e for e in effects if isinstance(e, ReportOutcome)]
    assert len(finished) == 1 and isinstance(finished[0].result, ReportLoginFailure)
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


def test_a_seed_shorter_than_32_bytes_is_refused() -> None:
    with pytest.raises(LocalProtocolError, match="at least 32 bytes"):
        _config(DeviceRole.NEW, seed=bytes(31))
    assert _config(DeviceRole.NEW, seed=bytes(32)).seed == bytes(32)


def test_v3_codes_can_be_written_as_the_text_has_them() -> None:
    config = dataclasses.replace(_config(DeviceRole.NEW), v3_unstable_prefix=False)
    device, (post,) = generate(config, now_ms=0)
    assert isinstance(post, SendHttpRequest)
    _, effects = transition(
        device, HttpResponseReceived(request_id=post.request_id, response=_created(qr.Generation.V3)), now_ms=5
    )
    (shown,) = [e for e in effects if isinstance(e, ShowQrCode)]
    assert shown.payload.startswith(b"MATRIX\x03") and shown.code.id_length_layout is qr.IdLengthLayout.U8


def test_duplicate_answers_are_ignored_and_never_issued_ids_are_misuse() -> None:
    device: State
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
    config = _config(DeviceRole.EXISTING, seed=b"very secret seed, 32 bytes long.")
    device, _ = generate(config, now_ms=0)
    text = repr(device)
    assert "very secret seed" not in text and derive(config.seed, "channel secret").hex() not in text


def _shown_by_new_device_v3(now_ms: int = 0) -> tuple[State, int]:
    """A v3 new device showing its QR code (the session expires 120 s after ``now_ms``); its next request id."""
    device: State
    device, (post,) = generate(_config(DeviceRole.NEW), now_ms=now_ms)
    assert isinstance(post, SendHttpRequest)
    device, _ = transition(
        device, HttpResponseReceived(request_id=post.request_id, response=_created(qr.Generation.V3)), now_ms=now_ms
    )
    assert isinstance(device, AwaitingHandshake)
    return device, post.request_id + 1


@pytest.mark.parametrize(
    ("answered_at_ms", "ended"),
    [(1_000, SessionEnd.DELETED), (114_999, SessionEnd.DELETED), (115_000, SessionEnd.EXPIRED)],
)
def test_the_outcome_tells_an_expired_session_from_a_deleted_one(answered_at_ms: int, ended: SessionEnd) -> None:
    """A 404 well before the announced expiry: the peer deleted the session. At it (within the rendezvous client's
    margin for latency and skew): it expired. Either way the login ends channel_closed, and the outcome says which."""
    device, poll_id = _shown_by_new_device_v3()
    device, (poll,) = transition(device, TimerFired(), now_ms=answered_at_ms)
    assert isinstance(poll, SendHttpRequest) and poll.request_id == poll_id and poll.request.method == "GET"
    gone = HttpResponse(status=404, body=b'{"errcode":"M_NOT_FOUND"}')
    device, effects = transition(device, HttpResponseReceived(request_id=poll_id, response=gone), now_ms=answered_at_ms)
    assert isinstance(device, SignInFailed) and outcome(device) == effects[-1]
    assert effects[-1] == ReportOutcome(result=ReportLoginFailure(reason="channel_closed"), session_end=ended)


def test_a_session_that_runs_out_of_time_is_reported_expired() -> None:
    device, _ = _shown_by_new_device_v3()
    due = deadline(device)
    assert due == 1_000  # the first poll
    device, _ = transition(device, TimerFired(), now_ms=120_000)  # the timer came late: the session's end has passed
    assert isinstance(device, SignInFailed)
    ended = outcome(device)
    assert ended is not None and ended.session_end is SessionEnd.EXPIRED and ended.channel_failure is None


def test_a_finished_device_takes_nothing() -> None:
    device, _ = scan(_config(DeviceRole.EXISTING), b"not a QR code", now_ms=0)
    assert isinstance(device, SignInFailed) and is_done(device) and deadline(device) is None
    for event in (TimerFired(), HttpRequestFailed(request_id=1), UserCancelled()):
        with pytest.raises(LocalProtocolError, match="not legal in device state SignInFailed"):
            transition(device, event, now_ms=0)


def test_every_effect_of_every_lower_machine_has_a_route() -> None:
    """Routing is one table per layer: each effect a lower machine can emit has one row, and nothing else does."""
    assert set(typing.get_args(rz.Effect)) == set(RENDEZVOUS_ROUTES)
    assert set(typing.get_args(ChannelEffect)) == set(CHANNEL_ROUTES)
    assert set(typing.get_args(LoginEffect)) == set(LOGIN_ROUTES)
