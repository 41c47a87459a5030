"""``qrlogin demo`` for every generation, QR direction and attacker flag: outcomes and exit codes."""

from __future__ import annotations

import re
import sys

import pytest

from qrlogin.cli import main


@pytest.mark.parametrize("generation", ["v1", "v2", "v3"])
@pytest.mark.parametrize("qr_on", ["new", "existing"])
def test_sign_in_succeeds(generation: str, qr_on: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--generation", generation, "--qr-on", qr_on]) == 0
    out = capsys.readouterr().out
    assert f"generation {generation}" in out
    assert f"the {qr_on} device shows the QR code" in out
    assert "outcome on the new device:      success: signed in as NEWPHONE" in out
    assert "outcome on the existing device: success" in out
    assert "devices of @alice:example.org before: LAPTOP\n" in out
    assert "devices of @alice:example.org after: LAPTOP, NEWPHONE\n" in out
    scanner = "existing" if qr_on == "new" else "new"
    shown = re.search(rf"{scanner} device +shows check code ([0-9][0-9])\n", out)
    assert shown is not None
    assert re.search(rf"user +types check code {shown.group(1)} on the {qr_on} device\n", out)
    for message in ("m.login.protocol", "m.login.protocol_accepted", "m.login.success", "m.login.secrets"):
        assert f"sends {message}\n" in out and f"receives {message}\n" in out
    assert ("sends m.login.protocols\n" in out) == (qr_on == "new")  # only a scanning existing device sends it


@pytest.mark.parametrize("generation", ["v1", "v2", "v3"])
@pytest.mark.parametrize("qr_on", ["new", "existing"])
def test_attack_is_stopped_at_the_check_code(generation: str, qr_on: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--generation", generation, "--qr-on", qr_on, "--attacker"]) == 0
    out = capsys.readouterr().out
    assert "photographs the QR code and races its own device into the rendezvous" in out
    assert f"outcome on the {qr_on} device:" in out
    assert "secure channel: check_code_mismatch" in out
    assert ": they differ" in out
    assert "the attacker obtained secrets: no; an access token: no" in out
    assert "the attack was stopped" in out
    assert "devices of @alice:example.org after: LAPTOP\n" in out
    assert "success" not in out.split("devices of @alice:example.org after")[1]


def test_same_seed_same_transcript(capsys: pytest.CaptureFixture[str]) -> None:
    main(["demo", "--seed", "7"])
    first = capsys.readouterr().out
    main(["demo", "--seed", "7"])
    assert capsys.readouterr().out == first
    main(["demo", "--seed", "8"])
    assert capsys.readouterr().out != first


def test_verbose_shows_http(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--verbose", "--generation", "v1"]) == 0
    out = capsys.readouterr().out
    assert "POST /_matrix/client/unstable/org.matrix.msc4108/rendezvous -> 201" in out
    assert "POST /oauth2/token -> 200" in out


def test_without_segno_the_qr_is_hex(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setitem(sys.modules, "segno", None)
    assert main(["demo"]) == 0
    out = capsys.readouterr().out
    # A v3 code, with the prefix deployed parsers read while the rendezvous is on the unstable path.
    assert "(install qrlogin[qr] to draw the QR code)\n" + (b"IO_ELEMENT_MSC4388\x03").hex() in out


def test_a_guess_that_hits_is_reported(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from qrlogin.cli import demo

    main(["demo", "--attacker", "--qr-on", "existing"])
    out = capsys.readouterr().out
    attacker_code = out.split("the code of the attacker's channel was ")[1][:2]
    monkeypatch.setattr(demo, "_user_guess", lambda seed: attacker_code)
    status = main(["demo", "--attacker", "--qr-on", "existing"])
    out = capsys.readouterr().out
    assert "the check code could not stop this one" in out
    assert status == 1
