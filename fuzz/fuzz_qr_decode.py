"""Fuzz target for :func:`qrlogin.qr.decode`.

Contract: for any input bytes, ``decode`` either returns a ``QrCode`` that re-encodes to exactly those bytes, or
raises a :class:`~qrlogin.qr.QrDecodeError`. Any other exception is a bug.

Run with atheris (coverage-guided; ``scripts/fuzz`` runs every target for a bounded budget)::

    python fuzz/fuzz_qr_decode.py fuzz/corpus/qr_decode -max_total_time=60

``tests/test_fuzz_qr.py`` runs the same ``check`` function under hypothesis, seeded with the vectors. The seeds
``seed-NN`` of the corpus are written from ``spec_vectors/qr_codes.json`` by
``python fuzz/fuzz_qr_decode.py --write-corpus``; its other files are regression inputs.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from qrlogin import qr

ROOT = Path(__file__).resolve().parent.parent
CORPUS = Path(__file__).resolve().parent / "corpus" / "qr_decode"


def check(data: bytes) -> None:
    for allow_http in (False, True):
        try:
            decoded = qr.decode(data, allow_http=allow_http)
        except qr.QrDecodeError:
            continue
        if qr.encode(decoded) != data:
            raise AssertionError("an accepted payload did not re-encode to itself")


def seed_inputs() -> list[bytes]:
    cases = json.loads((ROOT / "spec_vectors" / "qr_codes.json").read_text(encoding="utf-8"))["cases"]
    return [bytes.fromhex(case["hex"]) for case in cases]


def write_corpus() -> None:
    CORPUS.mkdir(parents=True, exist_ok=True)
    for index, seed in enumerate(seed_inputs()):
        (CORPUS / f"seed-{index:02d}").write_bytes(seed)


one_input = check  # the atheris entry point


if __name__ == "__main__":  # pragma: no cover
    if "--write-corpus" in sys.argv:
        write_corpus()
    else:
        from atheris_driver import hand_over

        hand_over(__file__)
