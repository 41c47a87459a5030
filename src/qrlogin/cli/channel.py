"""``qrlogin channel shows`` / ``qrlogin channel scans KEY``: one side of an ECIES channel by hand (manual interop).

The command is the thinnest possible driver of :mod:`qrlogin.channel.ecies`: it draws the ephemeral secret (or takes
``--secret`` for reproducible runs), and moves payloads between the machine and the terminal. Payloads and results
go to stdout, one per line; prompts go to stderr, so stdout can be piped to the other side.

G (generates the QR code)::

    stdout  G's public key (base64): give it to the other side (``qrlogin channel scans KEY``)
    stdin   S's LoginInitiate payload          -> stdout  the LoginOk payload
    stdin   the check code S shows             -> stdout  ``established``

S (scanned)::

    stdout  the LoginInitiate payload
    stdin   G's LoginOk payload                -> stdout  ``check code NN`` (type it on G)

Then, on both sides, until end of input: ``send TEXT`` prints the sealed payload of TEXT (UTF-8); ``recv PAYLOAD``
prints the plaintext; ``retry`` prints the last payload again. A failure prints its reason on stderr and exits 1.
``KEY`` is G's public key in base64, or a whole v1/v2 QR payload in base64 (a v3 code needs the HPKE channel).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any, TextIO

from .. import qr
from ..channel import ecies
from ..channel._common import (
    ChannelEffect,
    ChannelEvent,
    ChannelFailed,
    DeliverPlaintext,
    InitiateRequested,
    PayloadReceived,
    Profile,
    ReportEstablished,
    RetryRequested,
    SealRequested,
    SendPayload,
)
from ..encoding import b64decode, b64encode
from ..errors import Base64DecodeError, LocalProtocolError
from ..vocabulary import CheckCodeEntered, QrSide, ShowCheckCode

__all__ = ["register", "run"]


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "channel",
        help="run one side of an ECIES secure channel on stdin/stdout (manual interop)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "side", choices=[side.value for side in QrSide], help="shows: this end shows the QR code; scans: it scanned it"
    )
    parser.add_argument(
        "key", nargs="?", help="scans only: the showing end's public key, or the v1/v2 QR payload, in base64"
    )
    parser.add_argument(
        "--profile",
        choices=[profile.value for profile in Profile],
        default=Profile.DEPLOYED.value,
        help="deployed (HKDF-SHA512, interoperates with Element) or spec_text (HKDF-SHA256); default deployed",
    )
    parser.add_argument("--secret", help="the 32-byte ephemeral secret in hex (for reproducible runs only)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace, stdin: TextIO | None = None, stdout: TextIO | None = None) -> int:
    session = _Session(stdin or sys.stdin, stdout or sys.stdout)
    profile = Profile(args.profile)
    secret = bytes.fromhex(args.secret) if args.secret else os.urandom(32)
    if QrSide(args.side) is QrSide.SHOWS:
        if args.key is not None:
            raise LocalProtocolError("`qrlogin channel shows` takes no KEY")
        return session.run_g(ecies.start_showing(secret, profile=profile))
    if args.key is None:
        raise LocalProtocolError("`qrlogin channel scans` needs G's public key (base64)")
    return session.run_s(ecies.start_scanning(_peer_key(args.key), secret, profile=profile))


def _peer_key(text: str) -> bytes | qr.QrCode:
    """G's bare 32-byte public key, or a whole QR payload (then its generation and intent come along)."""
    try:
        raw = b64decode(text.strip(), padding="allow")
    except Base64DecodeError:
        raise LocalProtocolError("KEY is not base64") from None
    if len(raw) == 32:
        return raw
    return qr.decode(raw)  # a QrDecodeError (a RemoteProtocolError) is printed by the CLI's main()


class _Session:
    """Feeds one machine from lines of text; prints what its effects ask for."""

    def __init__(self, stdin: TextIO, stdout: TextIO) -> None:
        self.stdin = stdin
        self.stdout = stdout
        self.state: ecies.EciesState | None = None

    def run_g(self, state: ecies.AwaitingInitiate) -> int:
        self.state = state
        self._say(b64encode(state.public_key))
        self._prompt("paste S's LoginInitiate payload:")
        if not self._feed(PayloadReceived(payload=self._read())):
            return 1
        self._prompt("type the check code the other device shows:")
        if not self._feed(CheckCodeEntered(code=self._read())):
            return 1
        return self._conversation()

    def run_s(self, state: ecies.ReadyToInitiate) -> int:
        self.state = state
        if not self._feed(InitiateRequested()):
            return 1
        self._prompt("paste G's LoginOk payload:")
        if not self._feed(PayloadReceived(payload=self._read())):
            return 1
        return self._conversation()

    def _conversation(self) -> int:
        self._prompt("`send TEXT`, `recv PAYLOAD` or `retry`, one per line; end of input to quit")
        for line in self.stdin:
            command, _, argument = line.rstrip("\r\n").partition(" ")
            if command == "send":
                event: ChannelEvent = SealRequested(plaintext=argument.encode("utf-8"))
            elif command == "recv":
                event = PayloadReceived(payload=argument)
            elif command == "retry":
                event = RetryRequested()
            else:
                self._prompt(f"unknown command {command!r}")
                continue
            if not self._feed(event):
                return 1
        return 0

    def _feed(self, event: ChannelEvent) -> bool:
        assert self.state is not None
        self.state, effects = ecies.transition(self.state, event, now_ms=time.monotonic_ns() // 1_000_000)
        for effect in effects:
            self._show(effect)
        if isinstance(self.state, ChannelFailed):
            print(f"qrlogin: channel failed: {self.state.reason.value} ({self.state.detail})", file=sys.stderr)
            return False
        return True

    def _show(self, effect: ChannelEffect) -> None:
        if isinstance(effect, SendPayload):
            self._say(effect.payload)
        elif isinstance(effect, DeliverPlaintext):
            self._say(effect.plaintext.decode("utf-8", errors="backslashreplace"))
        elif isinstance(effect, ShowCheckCode):
            self._say(f"check code {effect.code}")
        elif isinstance(effect, ReportEstablished):
            self._say("established")

    def _read(self) -> str:
        line = self.stdin.readline()
        if not line:
            raise LocalProtocolError("input ended before the handshake finished")
        return line.rstrip("\r\n")

    def _say(self, text: str) -> None:
        print(text, file=self.stdout, flush=True)

    def _prompt(self, text: str) -> None:
        print(text, file=sys.stderr, flush=True)
