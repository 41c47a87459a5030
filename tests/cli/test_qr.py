"""The ``qrlogin qr`` command line: round trips, input formats and error reporting."""

from __future__ import annotations

import io
import json
import sys
from typing import Any

import pytest

from qrlogin import qr
from qrlogin.cli import main
from qrlogin.encoding import b64encode
from tests.vectors import load

CASES: list[dict[str, Any]] = load("qr_codes.json")["cases"]
VALID = [c for c in CASES if c["expected"]["ok"]]
# The empty payload cannot be passed as an argument; test_empty_stdin covers it.
INVALID = [c for c in CASES if not c["expected"]["ok"] and c["hex"]]


@pytest.mark.parametrize("case", VALID, ids=[c["id"] for c in VALID])
def test_decode_json_then_encode_reproduces_the_payload(
    case: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["qr", "decode", "--json", case["hex"]]) == 0
    fields = json.loads(capsys.readouterr().out)
    argv = ["qr", "encode", "--generation", fields["generation"], "--intent", fields["intent"].replace("_", "-")]
    argv += ["--public-key", fields["public_key"]]
    for name in ("rendezvous_url", "rendezvous_id", "server_name", "base_url"):
        if name in fields:
            argv += [f"--{name.replace('_', '-')}", fields[name]]
    if fields["generation"] == "v3":
        argv += ["--id-length", fields["id_length_layout"]]
        if fields["unstable_prefix"]:
            argv.append("--unstable-prefix")
    assert main(argv) == 0
    assert capsys.readouterr().out.strip() == case["hex"]


@pytest.mark.parametrize("case", INVALID, ids=[c["id"] for c in INVALID])
def test_bad_payloads_exit_1_with_the_error_name(case: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["qr", "decode", case["hex"]]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith(f"qrlogin: {case['expected']['error']}: ")
    assert "Traceback" not in captured.err


def test_input_formats(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    payload = bytes.fromhex(VALID[0]["hex"])
    assert main(["qr", "decode", b64encode(payload)]) == 0
    assert main(["qr", "decode", b64encode(payload) + "=" * (-len(b64encode(payload)) % 4)]) == 0
    for stdin in (payload, payload.hex().encode() + b"\n"):
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin)))
        assert main(["qr", "decode", "-"]) == 0
    out = capsys.readouterr().out
    assert out.count("generation") == 4


def test_empty_stdin(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"")))
    assert main(["qr", "decode", "--format", "raw", "-"]) == 1
    assert "QrTruncatedError" in capsys.readouterr().err


def test_garbage_text_is_reported_not_raised(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["qr", "decode", "not*base64"]) == 1
    assert "neither hex nor base64" in capsys.readouterr().err


def test_encode_rejects_inconsistent_fields(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["qr", "encode", "--generation", "v3", "--intent", "new", "--public-key", b64encode(bytes(32))]
    assert main([*argv, "--rendezvous-id", "abc"]) == 1
    assert "LocalProtocolError" in capsys.readouterr().err


def test_terminal_output_draws_a_code(capsys: pytest.CaptureFixture[str]) -> None:
    code = qr.decode(bytes.fromhex(VALID[0]["hex"]))
    argv = ["qr", "encode", "--generation", "v1", "--intent", "new", "--public-key", b64encode(code.public_key)]
    assert main([*argv, "--rendezvous-url", str(code.rendezvous_url), "--output", "terminal"]) == 0
    assert "█" in capsys.readouterr().out
