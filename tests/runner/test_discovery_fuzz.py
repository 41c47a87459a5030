"""CI runner for fuzz/fuzz_discovery.py: discovery's contract under hypothesis, from its seeds and from any bytes."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.channel.channel_helpers import load_fuzz_target

pytest.importorskip("httpx")  # the runner's module imports it for typing only; the target needs no network

TARGET = load_fuzz_target("fuzz_discovery")


def test_the_complete_seed_discovers_the_device_grant() -> None:
    """The seeds are not all refusals: the first one gets through every step (else the fuzzer starts blind)."""
    import asyncio

    complete = TARGET.seed_inputs()[0]
    found = asyncio.run(
        TARGET.discover(
            TARGET._ScriptedTransport(TARGET._answers(complete[1:]), allow_http=False),
            "example.org",
            deadline_ms=TARGET._DEADLINE_MS,
        )
    )
    assert found.base_url == "https://matrix.example.org"
    assert found.protocols == ("device_authorization_grant",)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.sampled_from(TARGET.seed_inputs()), data=st.binary(max_size=64), cut=st.integers(0, 400))
def test_mutated_seeds_keep_the_contract(seed: bytes, data: bytes, cut: int) -> None:
    TARGET.check(seed[:cut] + data + seed[cut:])


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=512))
def test_any_bytes_keep_the_contract(data: bytes) -> None:
    TARGET.check(data)
