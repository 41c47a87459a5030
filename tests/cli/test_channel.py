"""``qrlogin channel``: one side of a channel on stdin/stdout, driven here against the other side in memory."""

from __future__ import annotations

import argparse
import functools
import io
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import pytest

from qrlogin import qr
from qrlogin.channel import ecies
from qrlogin.channel._common import InitiateRequested, PayloadReceived, SealRequested
from qrlogin.cli import channel as cli_channel
from qrlogin.encoding import b64encode
from qrlogin.errors import LocalProtocolError, RemoteProtocolError
from qrlogin.vocabulary import CheckCodeEntered, DeviceRole

transition: Callable[..., Any] = functools.partial(ecies.transition, now_ms=0)
G_SECRET = bytes(range(1, 33))
S_SECRET = bytes(range(33, 65))


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    cli_channel.register(parser.add_subparsers())
    return parser.parse_args(["channel", *argv])


def run(argv: list[str], stdin: str) -> tuple[int, list[str]]:
    out = io.StringIO()
    status = cli_channel.run(parse(*argv), stdin=io.StringIO(stdin), stdout=out)
    return status, out.getvalue().splitlines()


def initiate_of(argv: list[str]) -> str:
    """S's first output line: it prints LoginInitiate, then runs out of input waiting for LoginOk."""
    out = io.StringIO()
    with pytest.raises(LocalProtocolError, match="input ended"):
        cli_channel.run(parse(*argv), stdin=io.StringIO(""), stdout=out)
    return out.getvalue().splitlines()[0]


def test_g_side_against_an_in_memory_s() -> None:
    g_public = ecies.start_showing(G_SECRET).public_key
    s: Any = ecies.start_scanning(g_public, S_SECRET)
    s, (initiate,) = transition(s, InitiateRequested())
    # Run G once to learn its LoginOk (deterministic with --secret), then S can produce its messages.
    _, first = run(["shows", "--secret", G_SECRET.hex()], initiate.payload + "\n00\n")
    s, (shown, _) = transition(s, PayloadReceived(payload=first[1]))
    s, (hello,) = transition(s, SealRequested(plaintext="grüß dich".encode()))
    script = f"{initiate.payload}\n{shown.code}\nrecv {hello.payload}\nsend answer\nretry\n"
    status, lines = run(["shows", "--secret", G_SECRET.hex()], script)
    assert status == 0
    assert lines[0] == b64encode(g_public)
    assert lines[1] == first[1]
    assert lines[2] == "established"
    assert lines[3] == "grüß dich"
    s, (answer,) = transition(s, PayloadReceived(payload=lines[4]))
    assert answer.plaintext == b"answer"
    assert lines[5] == lines[4]  # retry: the same bytes


def test_g_side_wrong_code_fails(capsys: pytest.CaptureFixture[str]) -> None:
    g_public = ecies.start_showing(G_SECRET).public_key
    _, (initiate,) = transition(ecies.start_scanning(g_public, S_SECRET), InitiateRequested())
    status, lines = run(["shows", "--secret", G_SECRET.hex()], f"{initiate.payload}\nab\n")
    assert status == 1
    assert "check_code_malformed" in capsys.readouterr().err
    assert "established" not in lines


def test_s_side_against_an_in_memory_g() -> None:
    g: Any = ecies.start_showing(G_SECRET)
    key = b64encode(g.public_key)
    initiate = initiate_of(["scans", key, "--secret", S_SECRET.hex()])
    g, (login_ok, _) = transition(g, PayloadReceived(payload=initiate))
    code = g.keys.check_code.value.decode()
    g, _ = transition(g, CheckCodeEntered(code=code))
    g, (hello,) = transition(g, SealRequested(plaintext=b"hello S"))
    status, lines = run(
        ["scans", key, "--secret", S_SECRET.hex()], f"{login_ok.payload}\nsend hi G\nbogus\nrecv {hello.payload}\n"
    )
    assert status == 0
    assert lines[0] == initiate
    assert lines[1:3] == [f"check code {code}", "established"]
    g, (delivered,) = transition(g, PayloadReceived(payload=lines[3]))
    assert delivered.plaintext == b"hi G"
    assert lines[4] == "hello S"


def test_s_side_tampered_payload_fails(capsys: pytest.CaptureFixture[str]) -> None:
    key = b64encode(ecies.start_showing(G_SECRET).public_key)
    status, _ = run(["scans", key, "--secret", S_SECRET.hex()], "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\n")
    assert status == 1
    assert "authentication_failed" in capsys.readouterr().err


def test_spec_text_profile_is_selectable() -> None:
    key = b64encode(ecies.start_showing(G_SECRET).public_key)
    deployed = initiate_of(["scans", key, "--secret", S_SECRET.hex()])
    spec_text = initiate_of(["scans", key, "--secret", S_SECRET.hex(), "--profile", "spec_text"])
    assert deployed != spec_text
    assert deployed.split("|")[1] == spec_text.split("|")[1]


@pytest.mark.parametrize(
    ("argv", "message"),
    [(["scans"], "needs G's public key"), (["shows", "AAAA"], "takes no KEY"), (["scans", "!!"], "not base64")],
)
def test_misuse(argv: list[str], message: str) -> None:
    with pytest.raises(LocalProtocolError, match=message):
        run(argv, "")


def test_key_may_be_a_qr_payload() -> None:
    g_public = ecies.start_showing(G_SECRET).public_key
    code = qr.QrCode(
        generation=qr.Generation.V2,
        intent=DeviceRole.NEW,
        public_key=g_public,
        rendezvous_id="abc-def",
        server_name="example.org",
    )
    via_qr = initiate_of(["scans", b64encode(qr.encode(code)), "--secret", S_SECRET.hex()])
    assert via_qr == initiate_of(["scans", b64encode(g_public), "--secret", S_SECRET.hex()])


def test_a_key_that_is_neither_key_nor_qr_is_refused() -> None:
    with pytest.raises(qr.QrDecodeError):
        run(["scans", b64encode(bytes(31))], "")
    with pytest.raises(RemoteProtocolError):
        run(["scans", b64encode(b"MATRIX" + bytes(40))], "")


def test_input_ending_early() -> None:
    with pytest.raises(LocalProtocolError, match="input ended"):
        run(["shows"], "")


def test_two_qrlogin_processes_talk_to_each_other() -> None:
    """The manual-interop workflow end to end: `qrlogin channel g` and `qrlogin channel s KEY` as real processes."""

    def start(*argv: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-m", "qrlogin", "channel", *argv],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            encoding="utf-8",
        )

    def tell(process: subprocess.Popen[str], line: str) -> None:
        assert process.stdin is not None
        process.stdin.write(line + "\n")
        process.stdin.flush()

    def hear(process: subprocess.Popen[str]) -> str:
        assert process.stdout is not None
        return process.stdout.readline().rstrip("\n")

    g = start("shows")
    s = start("scans", hear(g))
    try:
        tell(g, hear(s))  # LoginInitiate
        tell(s, hear(g))  # LoginOk
        shown = hear(s)
        assert shown.startswith("check code ") and hear(s) == "established"
        tell(g, shown.removeprefix("check code "))
        assert hear(g) == "established"
        for sender, receiver, text in ((s, g, "hello G"), (g, s, "hello S"), (s, g, "ünïcødé")):
            tell(sender, f"send {text}")
            tell(receiver, f"recv {hear(sender)}")
            assert hear(receiver) == text
    finally:
        for process in (g, s):
            assert process.stdin is not None
            process.stdin.close()
            assert process.wait(timeout=30) == 0
            assert process.stdout is not None
            process.stdout.close()
