"""The ECIES channel machines (v1/v2) offline: vectors, every (state, event) pair, the threats of docs/threats.md."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from qrlogin import qr
from qrlogin._crypto import X25519Secret, aead_seal, x25519
from qrlogin._machine import Driver
from qrlogin.channel import ecies
from qrlogin.channel._common import (
    ChannelEvent,
    ChannelFailed,
    DeliverPlaintext,
    FailureReason,
    InitiateRequested,
    PayloadReceived,
    Profile,
    ReportChannelFailure,
    ReportEstablished,
    RetryRequested,
    SealRequested,
    SendPayload,
)
from qrlogin.encoding import b64decode, b64encode
from qrlogin.errors import LocalProtocolError
from qrlogin.vocabulary import CheckCodeEntered, DeviceRole, PromptForCheckCode, QrSide, ShowCheckCode
from tests.channel.channel_helpers import SealRecorder, fork, load_vectors, moved_to, payload_of, run_handshake
from tests.channel.ecies_transcript import replay

VECTORS = load_vectors("ecies_vodozemac.json")
INTEROP_A, INTEROP_B = VECTORS["interop"]
LOW_ORDER = load_vectors("ecies_low_order_points.json")["cases"]
TRANSCRIPTS = load_vectors("ecies_wasm_transcript.json")["transcripts"]

G_SECRET = bytes(range(1, 33))
S_SECRET = bytes(range(101, 133))


def step(state: Any, event: ChannelEvent) -> tuple[Any, tuple[Any, ...]]:
    return ecies.transition(state, event, now_ms=0)


def pair(profile: Profile = Profile.DEPLOYED) -> tuple[ecies.AwaitingInitiate, ecies.ReadyToInitiate]:
    g = ecies.start_showing(G_SECRET, profile=profile)
    return g, ecies.start_scanning(g.public_key, S_SECRET, profile=profile)


def established(profile: Profile = Profile.DEPLOYED) -> tuple[ecies.Established, ecies.Established]:
    g, s = pair(profile)
    g_state, s_state, _ = run_handshake(g, s, ecies.transition)
    assert isinstance(g_state, ecies.Established) and isinstance(s_state, ecies.Established)
    return g_state, s_state


# -- Known answers ----------------------------------------------------------------------------------------------


def test_vodozemac_vector_a_qrlogin_is_g() -> None:
    """vodozemac (wasm) was S; every value is reproducible from G's secret."""
    messages = INTEROP_A["messages"]
    g = ecies.start_showing(bytes.fromhex(INTEROP_A["G_secret_hex"]))
    assert b64encode(g.public_key) == INTEROP_A["G_public_b64"]
    state, effects = step(g, PayloadReceived(payload=messages[0]["wire"]))
    assert effects == (SendPayload(payload=messages[1]["wire"]), PromptForCheckCode())
    code = INTEROP_A["check_code_wasm"]["digit_allow_leading_zero"]
    state, effects = step(state, CheckCodeEntered(code=f"{code:02d}"))
    assert effects == (ReportEstablished(role=QrSide.SHOWS),)
    state, effects = step(state, PayloadReceived(payload=messages[2]["wire"]))
    assert effects == (DeliverPlaintext(plaintext=messages[2]["plaintext"].encode()),)
    state, effects = step(state, SealRequested(plaintext=messages[3]["plaintext"].encode()))
    assert effects == (SendPayload(payload=messages[3]["wire"]),)


def test_vodozemac_vector_b_qrlogin_is_s() -> None:
    messages = INTEROP_B["messages"]
    s = ecies.start_scanning(bytes.fromhex(INTEROP_B["G_public_hex"]), bytes.fromhex(INTEROP_B["S_secret_hex"]))
    assert b64encode(s.public_key) == INTEROP_B["S_public_b64"]
    state, effects = step(s, InitiateRequested())
    assert effects == (SendPayload(payload=messages[0]["wire"]),)
    state, effects = step(state, PayloadReceived(payload=messages[1]["wire"]))
    assert [type(e) for e in effects] == [ShowCheckCode, ReportEstablished]
    assert effects[0].code == f"{INTEROP_B['check_code_wasm']['digit_allow_leading_zero']:02d}"
    assert ecies.check_code(state) == "75"


@pytest.mark.parametrize("vector", [INTEROP_A, INTEROP_B], ids=["A", "B"])
def test_key_schedule_matches_vodozemac(vector: dict[str, Any]) -> None:
    shared = bytes.fromhex(vector["shared_secret_hex"])
    gp, sp = bytes.fromhex(vector["G_public_hex"]), bytes.fromhex(vector["S_public_hex"])
    enc_s, enc_g, check = ecies.derive_keys(Profile.DEPLOYED, shared, gp, sp)
    assert (enc_s.hex(), enc_g.hex(), check.hex()) == (
        vector["enckey_s_hex"],
        vector["enckey_g_hex"],
        vector["check_bytes_hex"],
    )
    text = ecies.derive_keys(Profile.SPEC_TEXT, shared, gp, sp)
    assert text[0] != enc_s and text[1] != enc_g, "the profiles must derive different keys"


@pytest.mark.parametrize("case", VECTORS["nonce"]["expected"], ids=lambda c: str(c["counter"]))
def test_nonce_layout(case: dict[str, Any]) -> None:
    assert ecies.nonce(case["counter"]).hex() == case["nonce_hex"]


def test_nonce_is_le_u128_truncated() -> None:
    value = (1 << 95) + 0x0102
    assert ecies.nonce(value) == value.to_bytes(16, "little")[:12]


def test_upstream_initial_message_parses_then_fails_to_authenticate() -> None:
    """The vodozemac codec fixture is well-formed; without its secret keys it can only fail to authenticate."""
    fixture = VECTORS["codec"][0]
    g = ecies.start_showing(G_SECRET)
    state, _effects = step(g, PayloadReceived(payload=fixture["input"]))
    assert isinstance(state, ChannelFailed) and state.reason is FailureReason.AUTHENTICATION_FAILED
    ciphertext_text, key_text = fixture["input"].split("|")
    assert b64decode(key_text).hex() == fixture["expected"]["public_key_hex"]
    assert b64decode(ciphertext_text).hex() == fixture["expected"]["ciphertext_hex"]


def test_upstream_message_parses_then_fails_to_authenticate() -> None:
    fixture = VECTORS["codec"][1]
    _, s = established()
    state, _ = step(s, PayloadReceived(payload=fixture["input"]))
    assert isinstance(state, ChannelFailed) and state.reason is FailureReason.AUTHENTICATION_FAILED


def test_vodozemac_negative_missing_separator() -> None:
    (_, missing) = INTEROP_B["negative"]
    state, effects = step(ecies.start_showing(G_SECRET), PayloadReceived(payload=missing["input"]))
    assert isinstance(state, ChannelFailed) and state.reason is FailureReason.MALFORMED_PAYLOAD
    assert effects == (ReportChannelFailure(reason=FailureReason.MALFORMED_PAYLOAD),)


def test_vodozemac_negative_other_g_key() -> None:
    (other_key, _) = INTEROP_B["negative"]
    assert "different G key" in other_key["case"]
    state, _ = step(ecies.start_showing(G_SECRET), PayloadReceived(payload=INTEROP_B["messages"][0]["wire"]))
    assert isinstance(state, ChannelFailed) and state.reason is FailureReason.AUTHENTICATION_FAILED


@pytest.mark.parametrize("transcript", TRANSCRIPTS, ids=lambda t: f"qrlogin-is-{t['qrlogin_role']}")
def test_seeded_wasm_transcript_replays_offline(transcript: dict[str, Any]) -> None:
    assert len([m for m in transcript["wire"][2:] if m["from"] == "wasm"]) >= 3
    assert len([m for m in transcript["wire"][2:] if m["from"] == "qrlogin"]) >= 3
    replay(transcript)


def test_transcript_replay_notices_a_changed_payload() -> None:
    """The offline replay is a real check: altering one recorded qrlogin payload makes it fail."""
    transcript = dict(TRANSCRIPTS[0])
    wire = [dict(m) for m in transcript["wire"]]
    index = next(i for i, m in enumerate(wire) if i >= 2 and m["from"] == "qrlogin")
    wire[index]["plaintext"] += " "
    transcript["wire"] = wire
    with pytest.raises(AssertionError):
        replay(transcript)


# -- The machine (every (state, event) pair: tests/channel/test_machines.py) ------------------------------------


def test_only_failed_is_terminal() -> None:
    assert [cls for cls in ecies.MACHINE.states if not ecies.MACHINE.legal_events(cls)] == [ChannelFailed]


def test_illegal_event_changes_nothing() -> None:
    g, _ = pair()
    driver: Driver[Any, Any, Any] = Driver(g, ecies.transition)
    with pytest.raises(LocalProtocolError):
        driver.handle(SealRequested(plaintext=b"too early"), now_ms=0)
    assert driver.state is g
    driver.handle(PayloadReceived(payload="garbage"), now_ms=0)  # g is still the current state
    assert isinstance(driver.state, ChannelFailed)


def test_states_are_frozen_slotted_kw_only() -> None:
    for cls in (*ecies.MACHINE.states, ecies.EciesKeys):
        assert dataclasses.is_dataclass(cls)
        assert cls.__dataclass_params__.frozen  # type: ignore[attr-defined]
        assert "__slots__" in vars(cls)
        assert all(f.kw_only for f in dataclasses.fields(cls))


# -- Handshake, check code ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("profile", list(Profile))
def test_handshake_and_profile_recorded(profile: Profile) -> None:
    g, s = established(profile)
    assert g.profile is s.profile is profile
    assert g.role is QrSide.SHOWS and s.role is QrSide.SCANS
    assert ecies.check_code(g) == ecies.check_code(s)
    assert (g.send_counter, g.recv_counter, s.send_counter, s.recv_counter) == (1, 1, 1, 1)


def test_profiles_do_not_interoperate() -> None:
    g = ecies.start_showing(G_SECRET, profile=Profile.SPEC_TEXT)
    s = ecies.start_scanning(g.public_key, S_SECRET, profile=Profile.DEPLOYED)
    _, effects = step(s, InitiateRequested())
    state, _ = step(g, PayloadReceived(payload=payload_of(effects)))
    assert isinstance(state, ChannelFailed) and state.reason is FailureReason.AUTHENTICATION_FAILED
    assert state.profile is Profile.SPEC_TEXT


def test_g_trusts_only_after_the_one_right_code() -> None:
    g, s = pair()
    g_state, s_state, shown = run_handshake(g, s, ecies.transition)
    assert isinstance(g_state, ecies.Established)
    assert isinstance(s_state, ecies.Established)
    assert len(shown) == 2 and shown.isdigit()


@pytest.mark.parametrize("entry", ["wrong", "malformed", "unicode"])
def test_a_wrong_or_malformed_code_is_terminal(entry: str) -> None:
    g, s = pair()
    s_state, effects = step(s, InitiateRequested())
    g_state, effects = step(g, PayloadReceived(payload=payload_of(effects)))
    s_state, effects = step(s_state, PayloadReceived(payload=payload_of(effects)))
    right = effects[0].code
    code = {"wrong": f"{(int(right) + 1) % 100:02d}", "malformed": right + "0", "unicode": "\u0660\u0661"}[entry]
    failed, effects = step(g_state, CheckCodeEntered(code=code))
    expected = FailureReason.CHECK_CODE_MISMATCH if entry == "wrong" else FailureReason.CHECK_CODE_MALFORMED
    assert isinstance(failed, ChannelFailed) and failed.reason is expected
    assert effects == (ReportChannelFailure(reason=expected),)
    with pytest.raises(LocalProtocolError):  # no second attempt, not even the right code
        step(failed, CheckCodeEntered(code=right))


def test_every_wrong_code_fails_and_only_the_right_one_passes() -> None:
    g, s = pair()
    _, effects = step(s, InitiateRequested())
    g_waiting, _ = step(g, PayloadReceived(payload=payload_of(effects)))
    right = g_waiting.keys.check_code.value.decode()
    outcomes = {f"{n:02d}": type(step(fork(g_waiting), CheckCodeEntered(code=f"{n:02d}"))[0]) for n in range(100)}
    assert [code for code, cls in outcomes.items() if cls is ecies.Established] == [right]


def test_s_shows_the_code_only_after_login_ok() -> None:
    _, s = pair()
    waiting, _ = step(s, InitiateRequested())
    with pytest.raises(LocalProtocolError):
        ecies.check_code(waiting)


def test_payload_before_the_check_code_is_held_then_delivered() -> None:
    g, s = pair()
    s_state, effects = step(s, InitiateRequested())
    g_state, effects = step(g, PayloadReceived(payload=payload_of(effects)))
    s_state, effects = step(s_state, PayloadReceived(payload=payload_of(effects)))
    code = effects[0].code
    s_state, effects = step(s_state, SealRequested(plaintext=b"early"))
    g_state, held = step(g_state, PayloadReceived(payload=payload_of(effects)))
    assert held == ()
    g_state, effects = step(g_state, CheckCodeEntered(code=code))
    assert effects == (ReportEstablished(role=QrSide.SHOWS), DeliverPlaintext(plaintext=b"early"))
    assert g_state.recv_counter == 2


def test_held_payload_is_dropped_with_a_wrong_code_and_a_second_one_fails() -> None:
    g, s = pair()
    _, effects = step(s, InitiateRequested())
    g_state, _ = step(g, PayloadReceived(payload=payload_of(effects)))
    g_state, _ = step(g_state, PayloadReceived(payload="AAAA"))
    second, effects = step(fork(g_state), PayloadReceived(payload="AAAA"))
    assert isinstance(second, ChannelFailed) and second.reason is FailureReason.UNEXPECTED_PAYLOAD
    right = g_state.keys.check_code.value.decode()
    wrong = f"{(int(right) + 1) % 100:02d}"
    _failed, effects = step(g_state, CheckCodeEntered(code=wrong))
    assert effects == (ReportChannelFailure(reason=FailureReason.CHECK_CODE_MISMATCH),)


def test_held_payload_that_does_not_authenticate_fails_after_the_code() -> None:
    g, s = pair()
    _, effects = step(s, InitiateRequested())
    g_state, _ = step(g, PayloadReceived(payload=payload_of(effects)))
    g_state, _ = step(g_state, PayloadReceived(payload="AAAAAAAAAAAAAAAAAAAAAA"))
    failed, effects = step(g_state, CheckCodeEntered(code=g_state.keys.check_code.value.decode()))
    assert isinstance(failed, ChannelFailed) and failed.reason is FailureReason.AUTHENTICATION_FAILED
    assert effects == (
        ReportEstablished(role=QrSide.SHOWS),
        ReportChannelFailure(reason=FailureReason.AUTHENTICATION_FAILED),
    )


# -- Network garbage -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", LOW_ORDER, ids=lambda c: str(c["tcId"]))
def test_low_order_keys_are_refused_on_both_sides(case: dict[str, Any]) -> None:
    public = bytes.fromhex(case["public"])
    g = ecies.start_showing(G_SECRET)
    state, _ = step(g, PayloadReceived(payload=f"{b64encode(bytes(45))}|{b64encode(public)}"))
    assert isinstance(state, ChannelFailed) and state.reason is FailureReason.NON_CONTRIBUTORY_KEY
    s = ecies.start_scanning(public, S_SECRET)
    state, effects = step(s, InitiateRequested())
    assert isinstance(state, ChannelFailed) and state.reason is FailureReason.NON_CONTRIBUTORY_KEY
    assert not any(isinstance(e, SendPayload) for e in effects)


def test_reflected_keys_are_refused() -> None:
    g = ecies.start_showing(G_SECRET)
    state, _ = step(g, PayloadReceived(payload=f"{b64encode(bytes(45))}|{b64encode(g.public_key)}"))
    assert isinstance(state, ChannelFailed) and state.reason is FailureReason.REFLECTED_KEY
    s = ecies.start_scanning(ecies.start_showing(S_SECRET).public_key, S_SECRET)
    state, _ = step(s, InitiateRequested())
    assert isinstance(state, ChannelFailed) and state.reason is FailureReason.REFLECTED_KEY


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        ("x" * 4097, FailureReason.OVERSIZED_PAYLOAD),
        ("", FailureReason.MALFORMED_PAYLOAD),
        ("AAAA", FailureReason.MALFORMED_PAYLOAD),
        ("AAAA|", FailureReason.INVALID_PUBLIC_KEY),
        ("AA-A|" + b64encode(bytes(range(32))), FailureReason.MALFORMED_PAYLOAD),
        ("AAAA|" + b64encode(bytes(31)), FailureReason.INVALID_PUBLIC_KEY),
        ("AAAA|" + b64encode(bytes(33)), FailureReason.INVALID_PUBLIC_KEY),
        ("AAAA|" + b64encode(bytes(range(32))) + "|AAAA", FailureReason.MALFORMED_PAYLOAD),
        ("AAAA|" + b64encode(bytes(range(32))), FailureReason.AUTHENTICATION_FAILED),
        ("AB|" + b64encode(bytes(range(32))), FailureReason.MALFORMED_PAYLOAD),  # non-canonical trailing bits
    ],
)
def test_g_turns_garbage_into_typed_failures(payload: str, reason: FailureReason) -> None:
    state, effects = step(ecies.start_showing(G_SECRET), PayloadReceived(payload=payload))
    assert isinstance(state, ChannelFailed) and state.reason is reason
    assert effects == (ReportChannelFailure(reason=reason),)


def test_initiate_with_wrong_plaintext_is_refused() -> None:
    g, s = pair()
    _, _effects = step(s, InitiateRequested())
    gp, sp = g.public_key, s.public_key
    enc_s, _, _ = ecies.derive_keys(Profile.DEPLOYED, x25519(S_SECRET, gp), gp, sp)
    forged = f"{b64encode(aead_seal(enc_s, ecies.nonce(0), b'MATRIX_QR_CODE_LOGIN_INITIATF'))}|{b64encode(sp)}"
    state, _ = step(g, PayloadReceived(payload=forged))
    assert isinstance(state, ChannelFailed) and state.reason is FailureReason.UNEXPECTED_PLAINTEXT


def test_login_ok_with_wrong_plaintext_is_refused() -> None:
    _g, s = pair()
    s_state, _effects = step(s, InitiateRequested())
    gp, sp = s.peer_public_key, s.public_key
    _, enc_g, _ = ecies.derive_keys(Profile.DEPLOYED, x25519(S_SECRET, gp), gp, sp)
    forged = b64encode(aead_seal(enc_g, ecies.nonce(0), b"MATRIX_QR_CODE_LOGIN_NO"))
    state, _ = step(s_state, PayloadReceived(payload=forged))
    assert isinstance(state, ChannelFailed) and state.reason is FailureReason.UNEXPECTED_PLAINTEXT


def test_padding_policy_follows_the_profile() -> None:
    for profile, accepted in ((Profile.DEPLOYED, True), (Profile.SPEC_TEXT, False)):
        g, s = pair(profile)
        g_state, s_state, _ = run_handshake(g, s, ecies.transition)
        _, effects = step(s_state, SealRequested(plaintext=b"a"))  # 17 bytes: base64 needs one '='
        payload = payload_of(effects)
        assert len(payload) % 4 == 3
        state, _ = step(g_state, PayloadReceived(payload=payload + "="))
        assert isinstance(state, ecies.Established) is accepted
        if not accepted:
            assert isinstance(state, ChannelFailed) and state.reason is FailureReason.MALFORMED_PAYLOAD


def test_replayed_and_reordered_payloads_are_fatal() -> None:
    g, s = established()
    s1, e1 = step(s, SealRequested(plaintext=b"one"))
    _, e2 = step(s1, SealRequested(plaintext=b"two"))
    first, second = payload_of(e1), payload_of(e2)
    g1, _ = step(fork(g), PayloadReceived(payload=first))
    replayed, _ = step(g1, PayloadReceived(payload=first))
    assert isinstance(replayed, ChannelFailed) and replayed.reason is FailureReason.AUTHENTICATION_FAILED
    skipped, _ = step(fork(g), PayloadReceived(payload=second))
    assert isinstance(skipped, ChannelFailed) and skipped.reason is FailureReason.AUTHENTICATION_FAILED
    own, _ = step(g, PayloadReceived(payload=g.last_sent))  # our own LoginOk echoed back
    assert isinstance(own, ChannelFailed) and own.reason is FailureReason.AUTHENTICATION_FAILED


def test_a_payload_from_another_session_is_fatal() -> None:
    _, s_one = established()
    g = ecies.start_showing(bytes(range(2, 34)))
    g_two, _, _ = run_handshake(g, ecies.start_scanning(g.public_key, S_SECRET), ecies.transition)
    _, effects = step(s_one, SealRequested(plaintext=b"hi"))
    state, _ = step(g_two, PayloadReceived(payload=payload_of(effects)))
    assert isinstance(state, ChannelFailed) and state.reason is FailureReason.AUTHENTICATION_FAILED


# -- Nonces, counters, retries ------------------------------------------------------------------------------------


def test_retry_resends_identical_bytes_without_sealing(monkeypatch: pytest.MonkeyPatch) -> None:
    g, s = pair()
    recorder = SealRecorder(monkeypatch)
    s_waiting, effects = step(s, InitiateRequested())
    initiate = payload_of(effects)
    assert step(s_waiting, RetryRequested()) == (s_waiting, (SendPayload(payload=initiate),))
    g_waiting, effects = step(g, PayloadReceived(payload=initiate))
    login_ok = payload_of(effects)
    assert step(g_waiting, RetryRequested())[1] == (SendPayload(payload=login_ok),)
    s_est, effects = step(s_waiting, PayloadReceived(payload=login_ok))
    s_est, effects = step(s_est, SealRequested(plaintext=b"payload"))
    sealed = payload_of(effects)
    seals_so_far = len(recorder.uses)
    for _ in range(3):
        again, effects = step(s_est, RetryRequested())
        assert again == s_est and effects == (SendPayload(payload=sealed),)
    assert len(recorder.uses) == seals_so_far == 3
    assert recorder.reused == []


def test_counters_never_wrap() -> None:
    g, s = established()
    last = moved_to(s, send_counter=ecies.COUNTER_LIMIT - 1)
    after, effects = step(last, SealRequested(plaintext=b"last one"))
    assert isinstance(after, ecies.Established) and after.send_counter == ecies.COUNTER_LIMIT
    assert b64decode(payload_of(effects))  # sealed at nonce ff..ff
    exhausted, effects = step(after, SealRequested(plaintext=b"one too many"))
    assert isinstance(exhausted, ChannelFailed) and exhausted.reason is FailureReason.COUNTER_EXHAUSTED
    assert effects == (ReportChannelFailure(reason=FailureReason.COUNTER_EXHAUSTED),)
    receiving = moved_to(g, recv_counter=ecies.COUNTER_LIMIT)
    exhausted, _ = step(receiving, PayloadReceived(payload="AAAA"))
    assert isinstance(exhausted, ChannelFailed) and exhausted.reason is FailureReason.COUNTER_EXHAUSTED


def test_plaintext_size_limit_is_the_callers_business() -> None:
    g, s = established()
    biggest, effects = step(s, SealRequested(plaintext=bytes(ecies.MAX_PLAINTEXT_LENGTH)))
    assert len(payload_of(effects)) <= 4096
    _state, effects = step(g, PayloadReceived(payload=payload_of(effects)))
    assert effects == (DeliverPlaintext(plaintext=bytes(ecies.MAX_PLAINTEXT_LENGTH)),)
    with pytest.raises(LocalProtocolError):
        step(biggest, SealRequested(plaintext=bytes(ecies.MAX_PLAINTEXT_LENGTH + 1)))


def test_start_rejects_misuse() -> None:
    with pytest.raises(LocalProtocolError):
        ecies.start_showing(bytes(31))
    with pytest.raises(LocalProtocolError):
        ecies.start_scanning(bytes(31), S_SECRET)

    @dataclasses.dataclass(frozen=True)
    class FakeQr:
        public_key: bytes

    assert ecies.start_scanning(FakeQr(public_key=bytes(range(32))), S_SECRET).peer_public_key == bytes(range(32))


@pytest.mark.parametrize("generation", list(qr.Generation))
def test_start_s_from_a_real_qr_code_refuses_v3(generation: qr.Generation) -> None:
    g = ecies.start_showing(G_SECRET)
    per_generation: dict[qr.Generation, dict[str, Any]] = {
        qr.Generation.V1: {"rendezvous_url": "https://example.org/r/1"},
        qr.Generation.V2: {"rendezvous_id": "abc", "server_name": "example.org"},
        qr.Generation.V3: {
            "rendezvous_id": "abc",
            "base_url": "https://example.org",
            "id_length_layout": qr.IdLengthLayout.U8,
        },
    }
    fields = per_generation[generation]
    built = qr.QrCode(generation=generation, intent=DeviceRole.NEW, public_key=g.public_key, **fields)
    code = qr.decode(qr.encode(built))
    if generation is qr.Generation.V3:
        with pytest.raises(LocalProtocolError, match="HPKE"):
            ecies.start_scanning(code, S_SECRET)
    else:
        g_state, _, _ = run_handshake(g, ecies.start_scanning(code, S_SECRET), ecies.transition)
        assert isinstance(g_state, ecies.Established)


# -- Secrets never show --------------------------------------------------------------------------------------------


def test_no_secret_in_any_repr() -> None:
    g, s = pair()
    s_waiting, effects = step(s, InitiateRequested())
    g_waiting, g_effects = step(g, PayloadReceived(payload=payload_of(effects)))
    s_est, s_effects = step(s_waiting, PayloadReceived(payload=payload_of(g_effects)))
    code = s_effects[0].code
    g_est, _ = step(g_waiting, CheckCodeEntered(code=code))
    s_est, seal_effects = step(s_est, SealRequested(plaintext=b"very-secret-plaintext"))
    _, delivered = step(g_est, PayloadReceived(payload=payload_of(seal_effects)))
    gp, sp = g.public_key, s.public_key
    enc_s, enc_g, _ = ecies.derive_keys(Profile.DEPLOYED, x25519(G_SECRET, sp), gp, sp)
    secrets = [G_SECRET, S_SECRET, enc_s, enc_g]
    forbidden = [x for secret in secrets for x in (secret.hex(), repr(secret), b64encode(secret))]
    forbidden += ["very-secret-plaintext", f"'{code}'", f'"{code}"']
    everything = [g, s, s_waiting, g_waiting, s_est, g_est, *effects, *g_effects, *s_effects, *delivered]
    for value in everything:
        text = repr(value)
        for needle in forbidden:
            assert needle not in text, (type(value).__name__, needle)
    assert isinstance(g.secret, X25519Secret)
