"""Both login machines together: all four role combinations, every failure reason, transcript vectors.

The runner (``tests/login/_login_support.py``) wires a new device and an existing device to a scripted homeserver,
either over plaintext queues or through real ECIES channel machines with fixed secrets and :mod:`qrlogin.login.glue`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qrlogin.login.events import (
    Event,
    LocalReason,
    MessageReceived,
    ReportLoginFailure,
    ReportLoginSuccess,
    SendMessage,
)
from qrlogin.login.messages import FailureReason, Secrets, Success, serialize_message
from qrlogin.vocabulary import QrSide, UserCancelled, VerificationUriOpened, VerificationUriUnavailable
from tests.login._login_support import ACCESS_TOKEN, SECRETS, Browser, Homeserver, Run, outcome, run_pair

VECTORS = Path(__file__).resolve().parents[2] / "spec_vectors"
COMBINATIONS = {
    "new_generated_homeserver": (QrSide.SHOWS, False),
    "new_scanned_homeserver": (QrSide.SCANS, False),
    "new_generated_base_url": (QrSide.SHOWS, True),
    "new_scanned_base_url": (QrSide.SCANS, True),
}
SEEN_REASONS: set[str] = set()


def _message_senders(run: Run) -> list[tuple[str, str]]:
    return [(e["from"], e["message"]["type"]) for e in run.transcript if "message" in e]


def _outcomes(run: Run) -> tuple[ReportLoginSuccess | ReportLoginFailure, ReportLoginSuccess | ReportLoginFailure]:
    new, existing = outcome(run.new), outcome(run.existing)
    for side in (new, existing):
        if isinstance(side, ReportLoginFailure):
            SEEN_REASONS.add(str(side.reason))
    return new, existing


def _channel_for(v3: bool, transport: str) -> bool | str:
    """Plaintext, or the channel generation that goes with the homeserver field (v1/v2 ECIES, v3 HPKE)."""
    if transport == "plaintext":
        return False
    return "hpke" if v3 else "ecies"


@pytest.mark.parametrize("combination", COMBINATIONS)
@pytest.mark.parametrize("transport", ["plaintext", "channel"])
def test_sign_in_completes(combination: str, transport: str) -> None:
    new_role, v3 = COMBINATIONS[combination]
    channel = _channel_for(v3, transport)
    hs = Homeserver(pending_script=["authorization_pending", "slow_down"])
    run = run_pair(new_role=new_role, v3=v3, hs=hs, channel=channel)
    new_out, existing_out = _outcomes(run)
    assert isinstance(new_out, ReportLoginSuccess) and isinstance(existing_out, ReportLoginSuccess)
    assert new_out.secrets == SECRETS
    assert new_out.tokens is not None and new_out.tokens.access_token.value == ACCESS_TOKEN.encode()
    senders = _message_senders(run)
    # Who speaks first: the existing device when it scanned, else the new device (which skips m.login.protocols).
    if new_role is QrSide.SHOWS:
        assert senders[0] == ("existing", "m.login.protocols")
    assert senders[-4:] == [
        ("new", "m.login.protocol"),
        ("existing", "m.login.protocol_accepted"),
        ("new", "m.login.success"),
        ("existing", "m.login.secrets"),
    ]
    assert len(senders) == (5 if new_role is QrSide.SHOWS else 4)
    # The generator does nothing before its user confirmed the check code, although the scanner's first message
    # is already waiting for it.
    gen_name = "new" if new_role is QrSide.SHOWS else "existing"
    gen_entries = [i for i, e in enumerate(run.transcript) if e.get("from") == gen_name or e.get("to") == gen_name]
    assert run.transcript[gen_entries[0]] == {"to": gen_name, "channel_secured": True, "at_ms": 0}
    first_scanner_message = next(i for i, e in enumerate(run.transcript) if "message" in e)
    assert first_scanner_message < gen_entries[0]
    # The secrets leave the existing device in exactly one effect.
    carrying = [e for e in run.existing.effects if isinstance(e, SendMessage) and isinstance(e.message, Secrets)]
    assert len(carrying) == 1
    # The device that generated the QR created the rendezvous and is the only one to delete it.
    generator = run.new if new_role is QrSide.SHOWS else run.existing
    deleters = {e["from"] for e in run.transcript if "delete_rendezvous_not_before_ms" in e}
    assert deleters == {generator.name}
    if channel:
        # Every message went through the channel and neither side's channel failed.
        assert {type(c).__name__ for c in run.channels.values()} == {"Established"}


def _transcript_vector(combination: str) -> dict[str, Any]:
    new_role, v3 = COMBINATIONS[combination]
    hs = Homeserver(pending_script=["authorization_pending"])
    run = run_pair(new_role=new_role, v3=v3, hs=hs, channel=_channel_for(v3, "channel"))
    return {
        "_provenance": {
            "generated_by": "qrlogin tests/login/test_pairs.py (_transcript_vector), run over real channel machines "
            "(ECIES for the homeserver field, HPKE for base_url)",
            "message_order_from": "MSC4108 as revised in September 2025 and as of July 2026 "
            "(https://github.com/matrix-org/matrix-spec-proposals/pull/4108), 'Login via OAuth 2.0 "
            "Device Authorization Grant' and 'Secret sharing and device verification'",
            "secrets_from": "spec_vectors/login_message_fixtures.json case 'secrets' (key values; matrix-rust-sdk's "
            "m.login.secrets fixture)",
            "how_to_use": "Drive a new device and an existing device with the same homeserver answers; the ordered "
            "list of messages sent over the secure channel, HTTP requests, opened URIs and outcomes must match. "
            "Times are virtual milliseconds; the homeserver answers authorization_pending once, then grants.",
        },
        "combination": combination,
        "new_device_qr_side": new_role.value,
        "existing_device_qr_side": (QrSide.SCANS if new_role is QrSide.SHOWS else QrSide.SHOWS).value,
        "homeserver_field": "base_url" if v3 else "homeserver",
        "transcript": run.transcript,
    }


@pytest.mark.parametrize("combination", COMBINATIONS)
def test_transcript_vector(combination: str) -> None:
    path = VECTORS / f"login_transcript_{combination}.json"
    produced = _transcript_vector(combination)
    if os.environ.get("QRLOGIN_WRITE_VECTORS"):
        path.write_text(json.dumps(produced, indent=2) + "\n", encoding="utf-8")
    stored = json.loads(path.read_text(encoding="utf-8"))
    assert stored == json.loads(json.dumps(produced))


def _deny(hs: Homeserver) -> Browser:
    def act(uri: str) -> Event:
        hs.consent = "deny"
        return VerificationUriOpened()

    return act


def _ignore(hs: Homeserver) -> Browser:
    return lambda uri: VerificationUriOpened()  # the user never acts: the grant runs out


def _returns(event: Event) -> Any:
    return lambda hs: lambda uri: event


FAILURES: list[tuple[str, dict[str, Any], Any, tuple[str, bool], tuple[str, bool]]] = [
    # (id, homeserver settings, browser factory or run_pair kwargs, new outcome, existing outcome)
    ("declined", {}, _deny, ("declined", False), ("declined", True)),
    ("expired_token", {"expire_on_poll": True}, None, ("authorization_expired", False),
     ("authorization_expired", True)),
    ("expires_in_passes", {}, _ignore, ("authorization_expired", False), ("authorization_expired", True)),
    ("device_exists", {"preexisting_devices": {"NEWDEVICE1"}}, None, ("device_already_exists", True),
     ("device_already_exists", False)),
    ("device_never_appears", {"device_visible_after_polls": 10_000}, None, ("device_not_found", True),
     ("device_not_found", False)),
    ("no_device_grant", {"device_grant": False}, None, ("homeserver_error", False), ("unsupported_protocol", True)),
    ("browser_unavailable", {}, _returns(VerificationUriUnavailable()), ("unable_to_open_verification_uri", True),
     ("unable_to_open_verification_uri", False)),
    ("browser_refused", {}, _returns(UserCancelled()), ("user_cancelled", True), ("user_cancelled", False)),
]  # fmt: skip


@pytest.mark.parametrize("case", FAILURES, ids=[c[0] for c in FAILURES])
@pytest.mark.parametrize("new_role", [QrSide.SHOWS, QrSide.SCANS])
@pytest.mark.parametrize("channel", [False, "ecies", "hpke"], ids=["plaintext", "ecies", "hpke"])
def test_failure_paths(case: Any, new_role: QrSide, channel: bool | str) -> None:
    _, settings_, browser, expect_new, expect_existing = case
    hs = Homeserver(**settings_)
    v3 = channel == "hpke"
    run = run_pair(new_role=new_role, v3=v3, hs=hs, browser=browser(hs) if browser else None, channel=channel)
    new_out, existing_out = _outcomes(run)
    assert isinstance(new_out, ReportLoginFailure) and isinstance(existing_out, ReportLoginFailure)
    assert (str(new_out.reason), new_out.by_peer) == expect_new
    assert (str(existing_out.reason), existing_out.by_peer) == expect_existing
    # Whoever ended it told the other side: exactly one of the two learned it from the peer.
    assert new_out.by_peer != existing_out.by_peer
    assert not any(isinstance(e, SendMessage) and isinstance(e.message, Secrets) for e in run.existing.effects)


def test_device_appearing_late_still_completes() -> None:
    run = run_pair(new_role=QrSide.SCANS, v3=True, hs=Homeserver(device_visible_after_polls=5), channel="hpke")
    assert isinstance(outcome(run.existing), ReportLoginSuccess) and isinstance(outcome(run.new), ReportLoginSuccess)
    lookups = [e for e in run.transcript if e.get("http", "").startswith("GET") and "/devices/" in e["http"]]
    assert len(lookups) == 1 + 6  # the 404 before consent, then five 404s and the 200


def test_dynamic_registration_completes() -> None:
    run = run_pair(new_role=QrSide.SHOWS, v3=True, hs=Homeserver(), dynamic=True, channel="hpke")
    assert isinstance(outcome(run.new), ReportLoginSuccess)
    assert any(e.get("http") == "POST https://auth.example.org/oauth2/registration" for e in run.transcript)


UNEXPECTED = MessageReceived(plaintext=serialize_message(Success()))


@pytest.mark.parametrize("new_role", [QrSide.SHOWS, QrSide.SCANS])
@pytest.mark.parametrize("victim", ["new", "existing"])
def test_unexpected_message_is_answered(new_role: QrSide, victim: str) -> None:
    # A stray m.login.success injected into the victim before its third login event.
    run = run_pair(new_role=new_role, v3=False, hs=Homeserver(), interventions={(victim, 3): UNEXPECTED})
    new_out, existing_out = _outcomes(run)
    hit, other = (new_out, existing_out) if victim == "new" else (existing_out, new_out)
    assert (
        isinstance(hit, ReportLoginFailure)
        and hit.reason is FailureReason.UNEXPECTED_MESSAGE_RECEIVED
        and not hit.by_peer
    )
    assert (
        isinstance(other, ReportLoginFailure)
        and other.reason == FailureReason.UNEXPECTED_MESSAGE_RECEIVED
        and other.by_peer
    )


@pytest.mark.parametrize("new_role", [QrSide.SHOWS, QrSide.SCANS])
@pytest.mark.parametrize("victim", ["new", "existing"])
@pytest.mark.parametrize("step", [2, 4, 6])
def test_user_cancel_at_a_step(new_role: QrSide, victim: str, step: int) -> None:
    run = run_pair(
        new_role=new_role, v3=True, hs=Homeserver(), interventions={(victim, step): UserCancelled()}, channel="hpke"
    )
    new_out, existing_out = _outcomes(run)
    hit, other = (new_out, existing_out) if victim == "new" else (existing_out, new_out)
    assert isinstance(hit, ReportLoginFailure) and hit.reason is FailureReason.USER_CANCELLED and not hit.by_peer
    assert isinstance(other, ReportLoginFailure) and other.reason == FailureReason.USER_CANCELLED and other.by_peer


def test_every_failure_reason_was_reached() -> None:
    # Runs after the tests above in this module (pytest keeps file order); re-run them if collected alone.
    if not SEEN_REASONS:
        for case in FAILURES:
            test_failure_paths(case, QrSide.SCANS, False)
        test_unexpected_message_is_answered(QrSide.SCANS, "new")
    wire = {r.value for r in FailureReason}
    assert wire <= SEEN_REASONS | {"user_cancelled", "unexpected_message_received"}
    assert wire - {"user_cancelled", "unexpected_message_received"} <= SEEN_REASONS
    assert str(LocalReason.DECLINED) in SEEN_REASONS


ACTIONS = st.lists(
    st.tuples(
        st.sampled_from(["new", "existing"]),
        st.integers(1, 12),
        st.sampled_from([UserCancelled(), UNEXPECTED, MessageReceived(plaintext=b"garbage")]),
    ),
    max_size=2,
)


@settings(max_examples=60, deadline=None)
@given(
    new_role=st.sampled_from(list(QrSide)),
    channel=st.sampled_from([False, "ecies", "hpke"]),
    actions=ACTIONS,
    pending=st.lists(st.sampled_from(["authorization_pending", "slow_down"]), max_size=3),
)
def test_any_interference_ends_both_sides_exactly_once(
    new_role: QrSide, channel: bool | str, actions: list[tuple[str, int, Event]], pending: list[str]
) -> None:
    interventions = {(side, n): event for side, n, event in actions}
    run = run_pair(
        new_role=new_role, v3=False, hs=Homeserver(pending_script=pending), interventions=interventions, channel=channel
    )
    new_out, existing_out = outcome(run.new), outcome(run.existing)  # exactly one outcome each
    secrets_sent = any(isinstance(e, SendMessage) and isinstance(e.message, Secrets) for e in run.existing.effects)
    if isinstance(existing_out, ReportLoginSuccess):
        assert secrets_sent
    if isinstance(new_out, ReportLoginSuccess):
        assert isinstance(existing_out, ReportLoginSuccess)
    if not secrets_sent:
        assert isinstance(new_out, ReportLoginFailure)
