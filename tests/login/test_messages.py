"""m.login.* messages: upstream fixtures, strict field checks, unknown types and reasons, round trips, redaction."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qrlogin._secret import Secret
from qrlogin.login.messages import (
    DEVICE_AUTHORIZATION_GRANT,
    Backup,
    CrossSigningKeys,
    Declined,
    DeviceAuthorizationGrant,
    Failure,
    FailureReason,
    Message,
    MessageError,
    Protocol,
    ProtocolAccepted,
    Protocols,
    Secrets,
    Success,
    UnknownMessage,
    message_to_json,
    parse_message,
    serialize_message,
)

FIXTURES = json.loads((Path(__file__).parents[2] / "spec_vectors" / "login_message_fixtures.json").read_text())


@pytest.mark.parametrize("case", FIXTURES["cases"], ids=[c["id"] for c in FIXTURES["cases"]])
def test_upstream_fixture(case: dict[str, Any]) -> None:
    raw = json.dumps(case["json"]).encode()
    message = parse_message(raw)
    if "expected" in case:  # m.login.bogus: Rust refuses it; we surface the unknown type to answer it
        assert message == UnknownMessage(type=case["json"]["type"])
        return
    assert not isinstance(message, UnknownMessage)
    assert json.loads(serialize_message(message)) == case["json"]
    assert parse_message(serialize_message(message)) == message


def test_fixture_failure_reasons_are_all_known() -> None:
    listed = {r.split(" ")[0] for r in FIXTURES["login_failure_reasons"] if not r.startswith("<")}
    assert listed == {r.value for r in FailureReason}


def test_protocols_carries_either_field() -> None:
    v1 = parse_message(b'{"type":"m.login.protocols","protocols":["device_authorization_grant"],"homeserver":"m.org"}')
    assert v1 == Protocols(protocols=(DEVICE_AUTHORIZATION_GRANT,), homeserver="m.org")
    v3 = parse_message(b'{"type":"m.login.protocols","protocols":[],"base_url":"https://m.org"}')
    assert v3 == Protocols(protocols=(), base_url="https://m.org")
    with pytest.raises(MessageError):
        parse_message(b'{"type":"m.login.protocols","protocols":["device_authorization_grant"]}')


def test_unknown_fields_are_ignored_and_unknown_values_kept() -> None:
    assert parse_message(b'{"type":"m.login.success","extra":{"x":[1]}}') == Success()
    assert parse_message(b'{"type":"m.login.failure","reason":"io.example.new"}') == Failure(reason="io.example.new")
    message = parse_message(b'{"type":"m.login.protocol","protocol":"other","device_id":"D"}')
    assert message == Protocol(protocol="other", device_id="D")


def test_every_failure_reason_parses_to_its_member() -> None:
    for reason in FailureReason:
        parsed = parse_message(serialize_message(Failure(reason=reason)))
        assert isinstance(parsed, Failure) and parsed.reason is reason


@pytest.mark.parametrize(
    "text",
    [
        b'{"type": 1}',
        b'{"no_type": "m.login.success"}',
        b'{"type":"m.login.protocols","protocols":"device_authorization_grant","base_url":"x"}',
        b'{"type":"m.login.protocols","protocols":[1],"base_url":"x"}',
        b'{"type":"m.login.protocols","protocols":[],"base_url":null}',
        b'{"type":"m.login.protocol","protocol":"device_authorization_grant","device_id":"D"}',
        b'{"type":"m.login.protocol","protocol":"device_authorization_grant","device_id":"D",'
        b'"device_authorization_grant":{"verification_uri_complete":"https://x"}}',
        b'{"type":"m.login.protocol","protocol":"device_authorization_grant","device_id":5,'
        b'"device_authorization_grant":{"verification_uri":"https://x"}}',
        b'{"type":"m.login.failure"}',
        b'{"type":"m.login.failure","reason":["user_cancelled"]}',
        b'{"type":"m.login.failure","reason":"user_cancelled","homeserver":7}',
        b'{"type":"m.login.secrets"}',
        b'{"type":"m.login.secrets","cross_signing":{"master_key":"AA","self_signing_key":"AA","user_signing_key":"AA"}}',
        b'{"type":"m.login.secrets","cross_signing":{"master_key":"!!!","self_signing_key":"AA","user_signing_key":"A"}}',
        b'{"type":"m.login.success","type":"m.login.declined"}',
        b'{"type":"m.login.success","n":NaN}',
        b"[]",
    ],
)
def test_malformed_messages_raise_message_error(text: bytes) -> None:
    with pytest.raises(MessageError):
        parse_message(text)


def test_message_size_limit() -> None:
    padding = "x" * 4100
    with pytest.raises(MessageError, match="exceeds"):
        parse_message(json.dumps({"type": "m.login.success", "pad": padding}).encode())


def test_secret_keys_never_show_in_repr() -> None:
    fixture = next(c for c in FIXTURES["cases"] if c["id"] == "secrets")
    message = parse_message(json.dumps(fixture["json"]).encode())
    shown = repr(message)
    for key in (*fixture["json"]["cross_signing"].values(), fixture["json"]["backup"]["key"]):
        assert key not in shown
    assert "redacted" in shown


def test_padded_keys_are_accepted_and_emitted_unpadded() -> None:
    key = "A" * 43 + "="
    text = json.dumps(
        {
            "type": "m.login.secrets",
            "cross_signing": {"master_key": key, "self_signing_key": key, "user_signing_key": key},
        }
    )
    message = parse_message(text.encode())
    assert message_to_json(message)["cross_signing"]["master_key"] == "A" * 43


# ------------------------------------------------------------------------------------------------ round trips

_text = st.text(max_size=20)
_key = st.binary(min_size=32, max_size=32).map(Secret)
_reason = st.sampled_from(list(FailureReason)) | st.text(min_size=1, max_size=10).filter(
    lambda r: r not in {m.value for m in FailureReason}
)
_messages: st.SearchStrategy[Message] = st.one_of(
    st.builds(
        Protocols,
        protocols=st.lists(_text, max_size=3).map(tuple),
        homeserver=_text,
        base_url=st.none() | _text,
    ),
    st.builds(Protocols, protocols=st.lists(_text, max_size=3).map(tuple), base_url=_text),
    st.builds(
        Protocol,
        protocol=st.just(DEVICE_AUTHORIZATION_GRANT),
        device_id=_text,
        device_authorization_grant=st.builds(
            DeviceAuthorizationGrant, verification_uri=_text, verification_uri_complete=st.none() | _text
        ),
    ),
    st.builds(Protocol, protocol=_text.filter(lambda p: p != DEVICE_AUTHORIZATION_GRANT), device_id=_text),
    st.just(ProtocolAccepted()),
    st.just(Success()),
    st.just(Declined()),
    st.builds(Failure, reason=_reason, homeserver=st.none() | _text),
    st.builds(
        Secrets,
        cross_signing=st.builds(CrossSigningKeys, master_key=_key, self_signing_key=_key, user_signing_key=_key),
        backup=st.none() | st.builds(Backup, algorithm=_text, key=_key, backup_version=_text),
    ),
    st.builds(UnknownMessage, type=_text.filter(lambda t: not t.startswith("m.login."))),
)


@settings(max_examples=200)
@given(_messages)
def test_round_trip(message: Message) -> None:
    assert parse_message(serialize_message(message)) == message
