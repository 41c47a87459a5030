"""CI runner for fuzz/fuzz_login.py: the same contract, driven by hypothesis from the upstream message fixtures."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

from hypothesis import given, settings
from hypothesis import strategies as st


def _load_target() -> ModuleType:
    path = Path(__file__).resolve().parents[2] / "fuzz" / "fuzz_login.py"
    spec = importlib.util.spec_from_file_location("fuzz_login", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


TARGET = _load_target()
FIXTURES = json.loads(
    (Path(__file__).resolve().parents[2] / "spec_vectors" / "login_message_fixtures.json").read_text()
)
SEEDS = [json.dumps(case["json"]).encode() for case in FIXTURES["cases"]] + [
    b"[" * 5000,
    b'{"type":"m.login.success","type":"m.login.failure"}',
    b'{"type":"m.login.failure","reason":NaN}',
    b'{"type":"m.login.protocols","protocols":["device_authorization_grant"],"base_url":"' + b"a" * 4100 + b'"}',
]


def test_seeds_run_clean() -> None:
    for seed in SEEDS:
        TARGET.fuzz_one(seed)


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(SEEDS), st.lists(st.tuples(st.integers(0, 400), st.integers(0, 255)), max_size=6))
def test_mutated_seeds(seed: bytes, edits: list[tuple[int, int]]) -> None:
    data = bytearray(seed)
    for position, value in edits:
        if data:
            data[position % len(data)] = value
    TARGET.fuzz_one(bytes(data))


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=200))
def test_random_bytes(data: bytes) -> None:
    TARGET.fuzz_one(data)
