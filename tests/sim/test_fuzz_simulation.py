"""CI runner for fuzz/fuzz_simulation.py: the same contract, driven by hypothesis."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

from hypothesis import given, settings
from hypothesis import strategies as st


def _load_target() -> ModuleType:
    path = Path(__file__).resolve().parents[2] / "fuzz" / "fuzz_simulation.py"
    spec = importlib.util.spec_from_file_location("fuzz_simulation", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


TARGET = _load_target()


def test_header_covers_every_generation_direction_and_attacker() -> None:
    seen = {
        (s.generation, s.qr_on, s.attacker)
        for s in (TARGET.scenario_from(bytes([g, flags])) for g in range(3) for flags in range(8))
    }
    assert len(seen) == 12


def test_seeds_run_clean() -> None:
    for seed in (b"", b"\x00" * 6, b"\x02\x01\xff\xff\x00\x00" + bytes(range(40)), b"\x01\x05" + b"\x07" * 100):
        TARGET.fuzz_one(seed)


@settings(max_examples=60, deadline=None)
@given(st.binary(min_size=6, max_size=120))
def test_fuzz_simulation(data: bytes) -> None:
    TARGET.fuzz_one(data)
