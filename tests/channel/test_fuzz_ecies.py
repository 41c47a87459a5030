"""The ECIES fuzz target under hypothesis, so CI runs what ``fuzz/fuzz_channel_ecies.py`` runs under atheris."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from qrlogin.channel import ecies
from qrlogin.encoding import b64encode
from tests.channel.channel_helpers import load_fuzz_target

FUZZ = load_fuzz_target("fuzz_channel_ecies")
HARNESS = load_fuzz_target("channel_harness")
STATES = FUZZ.STATES

BASE64_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
WIRE_LIKE = st.text(alphabet=BASE64_ALPHABET + "|=", max_size=200)


def test_fuzz_fixture_covers_every_state_with_network_input() -> None:
    kinds = {type(state) for state in STATES}
    assert kinds == {state for state in ecies.MACHINE.states if ecies.MACHINE.legal_events(state)}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=300) | WIRE_LIKE)
@example("x" * 4097)
@example("A" * (1 << 20))
@example("|" * 10)
@example("=" * 8)
@example(b64encode(bytes(45)) + "|" + b64encode(bytes(32)))
@example(b64encode(bytes(45)) + "==|" + b64encode(bytes(32)) + "=")
@example("\u0661\u0662")
@example("12")
@example("\ud800")
@example("[" * 5000)
def test_arbitrary_strings_give_typed_failures_only(text: str) -> None:
    FUZZ.target(text)


def test_the_harness_detects_a_breach() -> None:
    """A machine that let a ValueError escape would be caught."""

    def broken(state: object, event: object, *, now_ms: int) -> tuple[object, tuple[object, ...]]:
        raise ValueError("escaped")

    with pytest.raises(ValueError, match="escaped"):
        HARNESS.exercise(ecies.MACHINE, broken, STATES[:1], "x")
