"""The HPKE fuzz target under hypothesis, so CI runs what ``fuzz/fuzz_channel_hpke.py`` runs under atheris."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from qrlogin.channel import hpke
from qrlogin.channel._common import DeliverPlaintext
from qrlogin.encoding import b64encode
from tests.channel.channel_helpers import load_fuzz_target

FUZZ = load_fuzz_target("fuzz_channel_hpke")
STATES = FUZZ.STATES
target = FUZZ.target

BASE64_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
WIRE_LIKE = st.text(alphabet=BASE64_ALPHABET + "=", max_size=200)


def test_fuzz_fixture_covers_every_state_with_network_input() -> None:
    kinds = {type(state) for state in STATES}
    assert kinds == {state for state in hpke.MACHINE.states if hpke.MACHINE.legal_events(state)}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=300) | WIRE_LIKE | st.binary(min_size=33, max_size=120).map(b64encode))
@example("x" * 4097)
@example("A" * (1 << 16))
@example("t" * 256)
@example("")
@example("=" * 8)
@example(b64encode(bytes(48)))
@example(b64encode(bytes(80)) + "==")
@example("\u0661\u0662")
@example("12")
@example("\ud800")
@example("é" * 128)
def test_arbitrary_strings_give_typed_failures_only(text: str) -> None:
    target(text)


def test_the_target_detects_a_breach(monkeypatch: pytest.MonkeyPatch) -> None:
    """A machine that let a ValueError escape, or delivered unauthenticated input, would be caught."""

    def raises(state: object, event: object, *, now_ms: int) -> tuple[object, tuple[object, ...]]:
        raise ValueError("escaped")

    monkeypatch.setattr(hpke, "transition", raises)
    with pytest.raises(ValueError, match="escaped"):
        target("x")

    def delivers(state: object, event: object, *, now_ms: int) -> tuple[object, tuple[object, ...]]:
        return state, (DeliverPlaintext(plaintext=b"forged"),)

    monkeypatch.setattr(hpke, "transition", delivers)
    with pytest.raises(AssertionError):
        target("x")


def test_benchmark_sessions_run_and_the_floor_is_the_same_protocol() -> None:
    """The benchmark's workloads stay runnable, and its floor sends exactly qrlogin's payloads (no timing here:
    benchmarks/ prints the ratio)."""
    from benchmarks.bench_channel_hpke import floor_session, primitives_session, qrlogin_session

    secrets = (b"\x01" * 32, b"\x02" * 32, b"\x03" * 32)
    ours: list[str] = []
    theirs: list[str] = []
    qrlogin_session(*secrets, ours)
    floor_session(*secrets, theirs)
    assert ours == theirs and len(ours) == 3 + 20
    primitives_session(*secrets)
