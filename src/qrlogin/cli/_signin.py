"""What ``qrlogin login`` and ``qrlogin link`` share: their options, the QR code given to scan, and the two user
interfaces, for a person at a terminal and for a program speaking the line protocol of ``docs/events.md``.

Standard input carries the user's acts in both: lines typed by a person (the check code, ``y`` to consent, Enter once
the page is open), or one JSON object per line from a program. A daemon thread reads it and hands each line to the
event loop, so a question left unanswered never holds the process when the sign-in ends.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import sys
import threading
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TextIO

from .. import qr
from ..errors import LocalProtocolError, QrLoginError

if TYPE_CHECKING:  # the runner needs the client extra, checked by each command before it runs
    from ..runner import RunOptions, SignInResult, UserInterface
from .qr import read_payload, render_terminal

__all__ = [
    "EVENT_NAMES",
    "JsonLinesUser",
    "Lines",
    "TerminalUser",
    "add_common_arguments",
    "options",
    "qr_to_scan",
    "run_session",
]

#: Every ``event`` the line protocol writes (docs/events.md).
EVENT_NAMES = ("qr", "check_code", "prompt", "user_code", "progress", "done")


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--generation", choices=[g.value for g in qr.Generation], default="v3", help="protocol generation (default v3)"
    )
    parser.add_argument("--allow-http", action="store_true", help="allow plain-http servers and URLs (local tests)")
    parser.add_argument(
        "--ca-file",
        metavar="PEM",
        help="trust the certificates in this file instead of the system's (e.g. what qrlogin testserver --tls wrote)",
    )
    parser.add_argument("--timeout", type=float, default=300.0, help="give up after this many seconds (default 300)")
    parser.add_argument(
        "--events", choices=("text", "json"), default="text", help="json: the line protocol of docs/events.md"
    )
    scan = parser.add_mutually_exclusive_group()
    scan.add_argument(
        "--qr", metavar="HEX|BASE64|-", help="scan this QR payload instead of showing one (-: one line of stdin)"
    )
    scan.add_argument("--qr-image", metavar="FILE", help="scan the QR code in this image (the qr-image extra)")


def options(args: argparse.Namespace) -> RunOptions:
    from ..runner import RunOptions, TransportOptions

    if args.timeout <= 0:
        raise LocalProtocolError("--timeout must be positive")
    if args.ca_file is not None and not os.path.isfile(args.ca_file):
        raise LocalProtocolError(f"--ca-file: no such file: {args.ca_file}")
    transport = TransportOptions(allow_http=args.allow_http, ca_file=args.ca_file)
    return RunOptions(timeout_s=args.timeout, transport=transport)


def qr_to_scan(args: argparse.Namespace) -> bytes | None:
    """The payload of ``--qr`` or ``--qr-image``, or None to show a QR code."""
    if args.qr == "-":
        # One line (hex or base64), so that standard input then carries the user's acts.
        line = sys.stdin.readline().strip()
        if not line:
            raise LocalProtocolError("--qr -: standard input ended before a QR payload line")
        return read_payload(line, "auto")
    if args.qr is not None:
        return read_payload(args.qr, "auto")
    if args.qr_image is None:
        return None
    try:
        import zxingcpp
        from PIL import Image
    except ImportError:
        raise LocalProtocolError("--qr-image needs the 'qr-image' extra: pip install 'qrlogin[qr-image]'") from None
    try:
        with Image.open(args.qr_image) as image:
            found = [code for code in zxingcpp.read_barcodes(image) if code.format == zxingcpp.BarcodeFormat.QRCode]
    except OSError as exc:
        raise LocalProtocolError(f"cannot read {args.qr_image}: {exc.strerror or exc}") from None
    if not found:
        raise LocalProtocolError(f"no QR code found in {args.qr_image}")
    payload: bytes = found[0].bytes
    return payload


class Lines:
    """Standard input, line by line, as an asyncio queue fed by a daemon thread (None at end of input)."""

    def __init__(self, stream: TextIO) -> None:
        self.queue: asyncio.Queue[str | None] = asyncio.Queue()
        loop = asyncio.get_running_loop()

        def read() -> None:
            try:
                for line in stream:
                    loop.call_soon_threadsafe(self.queue.put_nowait, line.rstrip("\n"))
            except (OSError, ValueError):
                pass  # an unreadable or closed stream is the end of input
            finally:
                with contextlib.suppress(RuntimeError):  # the loop may be gone when the process ends
                    loop.call_soon_threadsafe(self.queue.put_nowait, None)

        threading.Thread(target=read, daemon=True).start()

    async def next(self) -> str:
        line = await self.queue.get()
        if line is None:
            self.queue.put_nowait(None)  # every later reader sees the end too
            raise EOFError("standard input closed")
        return line


class TerminalUser:
    """A person at a terminal: output on ``out`` (stdout), answers typed on standard input."""

    def __init__(self, lines: Lines, out: TextIO, *, assume_yes: bool = False) -> None:
        self.lines = lines
        self.out = out
        self.assume_yes = assume_yes

    def _say(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    def show_qr(self, payload: bytes, code: qr.QrCode) -> None:
        self._say(render_terminal(payload))
        self._say(f"Scan this QR code with the other device (payload {payload.hex()})")

    def show_check_code(self, code: str) -> None:
        self._say(f"Enter this code on the other device: {code}")

    async def ask_check_code(self) -> str:
        self._say("Enter the code the other device shows:")
        return (await self.lines.next()).strip()

    async def confirm_sign_in(self) -> bool:
        if self.assume_yes:
            return True
        self._say("Sign the new device in to your account? [y/N]")
        return (await self.lines.next()).strip().lower() in ("y", "yes")

    async def open_verification_uri(self, uri: str) -> bool:
        self._say(f"Open this page in a browser and approve the new device: {uri}")
        if not self.assume_yes:
            self._say("Press Enter once it is open.")
            await self.lines.next()
        return True

    def show_user_code(self, user_code: str) -> None:
        self._say(f"The consent page shows this code: {user_code}")

    def progress(self, step: str) -> None:
        self._say(f"... {step}")

    def finished(self, result: SignInResult) -> None:
        pass


class JsonLinesUser:
    """A program on the other end of the line protocol (docs/events.md): events out, acts in."""

    def __init__(self, lines: Lines, out: TextIO, cancel: asyncio.Event) -> None:
        self.out = out
        self.cancel = cancel
        self._acts: dict[str, asyncio.Queue[dict[str, Any]]] = {
            name: asyncio.Queue() for name in ("check_code", "opened", "consent")
        }
        self._reader = asyncio.ensure_future(self._read(lines))

    def emit(self, event: str, **fields: Any) -> None:
        print(json.dumps({"event": event, **fields}, separators=(",", ":")), file=self.out, flush=True)

    async def _read(self, lines: Lines) -> None:
        while True:
            try:
                line = await lines.next()
            except EOFError:
                return
            if not line.strip():
                continue
            try:
                act = json.loads(line)
            except ValueError:
                act = None
            name = act.get("act") if isinstance(act, dict) else None
            if name == "cancel":
                self.cancel.set()
            elif isinstance(name, str) and name in self._acts:
                self._acts[name].put_nowait(act)
            else:
                print(f"qrlogin: ignored an act that is not in docs/events.md: {line[:80]!r}", file=sys.stderr)

    def close(self) -> None:
        self._reader.cancel()

    def show_qr(self, payload: bytes, code: qr.QrCode) -> None:
        self.emit("qr", hex=payload.hex(), base64=base64.b64encode(payload).decode())

    def show_check_code(self, code: str) -> None:
        self.emit("check_code", code=code)

    async def ask_check_code(self) -> str:
        self.emit("prompt", ask="check_code")
        code = (await self._acts["check_code"].get()).get("code")
        return code if isinstance(code, str) else ""

    async def confirm_sign_in(self) -> bool:
        self.emit("prompt", ask="consent")
        return (await self._acts["consent"].get()).get("approve") is True

    async def open_verification_uri(self, uri: str) -> bool:
        self.emit("prompt", ask="open_uri", uri=uri)
        return (await self._acts["opened"].get()).get("ok", True) is not False

    def show_user_code(self, user_code: str) -> None:
        self.emit("user_code", user_code=user_code)

    def progress(self, step: str) -> None:
        self.emit("progress", step=step)

    def finished(self, result: SignInResult) -> None:
        self.emit(
            "done",
            outcome=result.outcome,
            by_peer=result.by_peer,
            user_id=result.user_id,
            device_id=result.device_id,
            homeserver=result.base_url,
        )


Session = Callable[["UserInterface", asyncio.Event], Awaitable["SignInResult"]]


async def run_session(args: argparse.Namespace, session: Session, *, assume_yes: bool = False) -> SignInResult:
    """Run ``session`` with the interface ``--events`` asks for; in json mode an error that stops the run before it
    starts is reported as ``done`` with outcome ``error`` too (it is also the one line on stderr)."""
    lines = Lines(sys.stdin)
    cancel = asyncio.Event()
    if args.events == "json":
        user = JsonLinesUser(lines, sys.stdout, cancel)
        try:
            return await session(user, cancel)
        except QrLoginError as exc:
            user.emit("done", outcome="error", error=str(exc))
            raise
        finally:
            user.close()
    return await session(TerminalUser(lines, sys.stdout, assume_yes=assume_yes), cancel)
