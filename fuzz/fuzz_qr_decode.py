"""Fuzz target for :func:`qrlogin.qr.decode`.

Contract: for any input bytes, ``decode`` either returns a ``QrCode`` that re-encodes to exactly those bytes, or
raises a :class:`~qrlogin.qr.QrDecodeError`. Any other exception is a bug.

Run with atheris (coverage-guided, not installed by default)::

    pip install atheris
    python fuzz/fuzz_qr_decode.py fuzz/corpus/qr_decode -max_total_time=60

``tests/test_fuzz_targets.py`` runs the same ``check`` function under hypothesis in CI, seeded with the corpus.
The seed corpus is written from ``spec_vectors/qr_codes.json`` by ``python fuzz/fuzz_qr_decode.py --write-corpus``.
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


def main() -> None:
    if "--write-corpus" in sys.argv:
        write_corpus()
        return
    import atheris

    atheris.Setup(sys.argv, lambda data: check(bytes(data)))
    atheris.Fuzz()


if __name__ == "__main__":
    main()
