"""The generation-neutral channel vocabulary: check codes, failure plumbing, redaction."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from qrlogin._secret import Secret
from qrlogin.channel import _common as common
from qrlogin.channel._common import (
    DeliverPlaintext,
    FailureReason,
    Profile,
    ReportChannelFailure,
    SealRequested,
    check_code_digits,
    fail,
    judge_check_code,
)
from qrlogin.vocabulary import CheckCodeEntered, QrSide, ShowCheckCode
from tests.channel.channel_helpers import load_vectors

CHECK_CODE_CASES: list[dict[str, Any]] = load_vectors("ecies_vodozemac.json")["check_code_digits"]["cases"]


@pytest.mark.parametrize("case", CHECK_CODE_CASES, ids=lambda case: str(case["bytes"]))
def test_check_code_digits_match_vodozemac(case: dict[str, Any]) -> None:
    raw = bytes(case["bytes"])
    if "allow_leading_zero" in case:
        assert check_code_digits(raw, leading_zero=True) == f"{case['allow_leading_zero']:02d}"
    if "no_leading_zero" in case:
        assert check_code_digits(raw, leading_zero=False) == f"{case['no_leading_zero']:02d}"


@given(st.binary(min_size=2, max_size=2))
def test_check_code_is_two_ascii_digits(raw: bytes) -> None:
    with_zero = check_code_digits(raw, leading_zero=True)
    without_zero = check_code_digits(raw, leading_zero=False)
    assert len(with_zero) == len(without_zero) == 2
    assert (with_zero + without_zero).isascii() and (with_zero + without_zero).isdigit()
    assert without_zero[0] != "0"


def test_check_code_needs_two_bytes() -> None:
    with pytest.raises(ValueError, match="two bytes"):
        check_code_digits(b"\x01", leading_zero=True)


@pytest.mark.parametrize("leading_zero", [True, False])
def test_judge_every_code_against_every_code(leading_zero: bool) -> None:
    for expected_number in range(100):
        expected = f"{expected_number:02d}"
        if not leading_zero and expected[0] == "0":
            continue
        secret = Secret(expected.encode("ascii"))
        for entered_number in range(100):
            entered = f"{entered_number:02d}"
            verdict = judge_check_code(entered, secret, leading_zero=leading_zero)
            if entered == expected:
                assert verdict is None
            elif not leading_zero and entered[0] == "0":
                assert verdict is FailureReason.CHECK_CODE_MALFORMED
            else:
                assert verdict is FailureReason.CHECK_CODE_MISMATCH


@pytest.mark.parametrize(
    "entered",
    ["", "1", "123", " 12", "12 ", "1a", "\u0661\u0662", "\uff11\uff12", "\u00b2\u00b3", "-1", "+1", "1.", "12\n"],
)
def test_judge_rejects_everything_but_two_ascii_digits(entered: str) -> None:
    assert judge_check_code(entered, Secret(b"12"), leading_zero=True) is FailureReason.CHECK_CODE_MALFORMED


def test_fail_builds_terminal_state_and_report() -> None:
    state, effects = fail(Profile.SPEC_TEXT, QrSide.SCANS, FailureReason.AUTHENTICATION_FAILED, "why")
    assert state.reason is FailureReason.AUTHENTICATION_FAILED
    assert state.profile is Profile.SPEC_TEXT and state.role is QrSide.SCANS
    assert effects == (ReportChannelFailure(reason=FailureReason.AUTHENTICATION_FAILED),)


def test_payload_carrying_events_and_effects_hide_their_content() -> None:
    marker = "0123456789-secret-marker"
    for value in (
        SealRequested(plaintext=marker.encode()),
        DeliverPlaintext(plaintext=marker.encode()),
        ShowCheckCode(code=marker),
        CheckCodeEntered(code=marker),
    ):
        assert marker not in repr(value)
        assert marker not in str(value)


def test_every_event_effect_and_state_is_frozen_slotted_kw_only() -> None:
    classes = [
        value
        for value in vars(common).values()
        if isinstance(value, type) and dataclasses.is_dataclass(value) and value.__module__ == common.__name__
    ]
    assert len(classes) >= 9
    for cls in classes:
        params = cls.__dataclass_params__  # type: ignore[attr-defined]
        assert params.frozen, cls
        assert "__slots__" in vars(cls), cls
        assert all(f.kw_only for f in dataclasses.fields(cls)), cls


def test_both_generations_take_the_same_steps() -> None:
    """ECIES and HPKE hold different data, so each has its own state classes; the steps between them are the same."""
    from qrlogin.channel import ecies, hpke

    def shape(module: Any) -> set[tuple[str, type, frozenset[str]]]:
        machine = module.MACHINE
        return {
            (state.__name__, event, frozenset(target.__name__ for target in machine.targets(state, event)))
            for state, event in machine.transitions
        }

    assert shape(ecies) == shape(hpke)
    assert [cls.__name__ for cls in ecies.MACHINE.initial] == [cls.__name__ for cls in hpke.MACHINE.initial]
    for module in (ecies, hpke):
        assert module.MACHINE.is_terminal(object.__new__(module.ChannelFailed))
        # Each generation's table names its own state classes, never the other generation's.
        assert all(state.__module__ in (module.__name__, "qrlogin.channel._common") for state in module.MACHINE.states)
