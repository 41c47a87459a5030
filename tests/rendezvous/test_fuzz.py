"""Run the rendezvous fuzz targets (fuzz/) under hypothesis, with a few hand-picked seeds."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

from hypothesis import example, given, settings
from hypothesis import strategies as st

FUZZ = Path(__file__).resolve().parents[2] / "fuzz"


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, FUZZ / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


server_target = _load("fuzz_rendezvous_server")
client_target = _load("fuzz_rendezvous_client")


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=600))
@example(bytes([1, 0, 0, 1]) + b'{"sequence_token":"x","data":"y"}')
@example(bytes([1, 0, 1, 200]) + b"x" * 6400)
@example(bytes([0, 2, 3, 0, 0x2A, 0x31, 0x40]))
def test_server_core_answers_everything_well_formed(data: bytes) -> None:
    server_target.fuzz_one(data)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
@example(bytes([2, 0, 0, 0]) + json.dumps({"id": "abc", "sequence_token": "t", "expires_in_ms": 5}).encode())
@example(bytes([0, 1, 0, 2, 0, 10]) + b"text/plain" + bytes([1, 3]) + b'"e"' + b"hello")
@example(bytes([2, 4, 0, 0]) + b'{"data":"x","sequence_token":"u"}')
@example(bytes([2, 0, 11, 1, 2, 1]) + "²".encode("latin-1"))  # a 429 whose Retry-After is "²"
def test_client_machine_survives_any_response(data: bytes) -> None:
    client_target.fuzz_one(data)


def test_server_target_catches_a_malformed_error() -> None:
    # The oracle itself must reject an error answer without an errcode.
    try:
        server_target.check_response(400, "application/json", b"{}")
    except AssertionError:
        return
    raise AssertionError("check_response accepted an error without errcode")
