"""CI runner for fuzz/fuzz_qr_decode.py: the same contract, driven by hypothesis from the seed corpus."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

from hypothesis import given, settings
from hypothesis import strategies as st

from qrlogin import qr
from tests.strategies import qr_codes


def _load_target() -> ModuleType:
    path = Path(__file__).resolve().parent.parent / "fuzz" / "fuzz_qr_decode.py"
    spec = importlib.util.spec_from_file_location("fuzz_qr_decode", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


TARGET = _load_target()
SEEDS: list[bytes] = TARGET.seed_inputs()


def test_seed_corpus_on_disk_matches_the_vectors() -> None:
    """The ``seed-NN`` files are the vectors; the corpus's other files are regression inputs."""
    on_disk = sorted(p.read_bytes() for p in TARGET.CORPUS.glob("seed-*"))
    assert on_disk == sorted(SEEDS)


@settings(max_examples=500)
@given(st.sampled_from(SEEDS), st.lists(st.tuples(st.integers(0, 300), st.integers(0, 255)), max_size=6))
def test_mutated_seeds_only_raise_decode_errors(seed: bytes, edits: list[tuple[int, int]]) -> None:
    data = bytearray(seed)
    for position, value in edits:
        if position < len(data):
            data[position] = value
        else:
            data.append(value)
    TARGET.check(bytes(data))


@settings(max_examples=300)
@given(st.binary(max_size=400))
def test_arbitrary_bytes_only_raise_decode_errors(data: bytes) -> None:
    TARGET.check(data)


@settings(max_examples=200)
@given(qr_codes(), st.integers(0, 400))
def test_truncated_valid_codes_only_raise_decode_errors(code: qr.QrCode, cut: int) -> None:
    TARGET.check(qr.encode(code)[:cut])
