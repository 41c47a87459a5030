"""The adapters' clock reads as Unix time and does not follow a step of the system clock."""

from __future__ import annotations

import time

import pytest

from qrlogin.adapters import clock
from qrlogin.check_client import homeserver as served
from qrlogin.runner import transport


def test_it_reads_as_unix_time() -> None:
    before = time.time_ns() // 1_000_000
    reading = clock.unix_ms()
    after = time.time_ns() // 1_000_000
    # Off only by what the system clock was corrected by since the test process started: nothing, here.
    assert before - 50 <= reading <= after + 50


@pytest.mark.parametrize("step_s", [-3_600, -6, 6, 86_400])
def test_a_step_of_the_system_clock_is_not_followed(monkeypatch: pytest.MonkeyPatch, step_s: int) -> None:
    first = clock.unix_ms()
    stepped = time.time_ns() + step_s * 1_000_000_000
    monkeypatch.setattr(time, "time_ns", lambda: stepped)
    second = clock.unix_ms()
    assert 0 <= second - first < 1_000
    # The adapters that give the cores their time read this clock, not the system's.
    for now_ms in (transport.now_ms, served.now_ms):
        assert abs(now_ms() - second) < 1_000
