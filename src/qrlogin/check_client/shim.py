"""The client under test, as a process speaking the JSON-lines events and acts of ``qrlogin login/link --events json``.

Theory of operation
-------------------
A shim is any command that runs one sign-in of the client under test and speaks, on its standard streams, the
line protocol of qrlogin's own runner: one JSON object per line on stdout for each thing shown to the user, one
JSON object per line on stdin for each act of the user. The suite starts the command afresh for every scenario,
from a template whose ``{placeholders}`` it fills (:data:`PLACEHOLDERS`); each filled value is one argument (the
template is split with :func:`shlex.split` first, so a value never re-splits).

Events (stdout)::

    {"event": "qr", "hex": "4d41..."}                     the QR code the client shows
    {"event": "check_code", "code": "07"}                the check code the client shows
    {"event": "prompt", "ask": "check_code"}             the client asks the user to type the code
    {"event": "prompt", "ask": "open_uri", "uri": "..."} the client asks the user to consent at this URI
    {"event": "prompt", "ask": "consent"}                the client asks the user to approve (optional "uri")
    {"event": "user_code", "code": "..."}                the new device shows the user code
    {"event": "done", "outcome": "success" | reason, "user_id": ..., "device_id": ...}

Acts (stdin)::

    {"act": "check_code", "code": "07"}   {"act": "opened"}   {"act": "consent", "approve": true}   {"act": "cancel"}

Lines that are not JSON objects with a string ``event`` are kept as :class:`ShimEvent` ``"unparsed"`` (evidence,
not a crash); stderr goes to a log file. :class:`Shim` never blocks the suite: a reader thread queues events.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import shlex
import signal
import subprocess
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..adapters.clock import unix_ms

__all__ = ["PLACEHOLDERS", "Shim", "ShimEvent", "fill_template"]

#: Every placeholder a template may use, and what it holds.
PLACEHOLDERS: Mapping[str, str] = {
    "homeserver": "the homeserver's base URL (http://127.0.0.1:PORT)",
    "server_name": "the homeserver's server name (127.0.0.1:PORT)",
    "role": "which device the client is: new or existing",
    "side": "which side of the QR code the client is: shows or scans",
    "generation": "v1, v2 or v3",
    "qr_hex": "the QR code's bytes in hex, when the client scans (empty when it shows)",
    "user": "the account's localpart (an existing device is signed in to it)",
    "password": "the account's password",
    "user_id": "the account's user id",
    "access_token": "an access token of the account (for an existing device)",
    "device_id": "the device id the client signs in as (new) or is (existing)",
    "secrets_file": "a JSON file: the m.login.secrets content (no type) an existing device hands over",
    "workdir": "a directory of its own for this run",
}


def fill_template(template: str, values: Mapping[str, str]) -> list[str]:
    """The argument vector: the template split like a shell line, then each placeholder replaced in each word."""
    words = shlex.split(template)
    filled = []
    for word in words:
        filled_word = word
        for name, value in values.items():
            filled_word = filled_word.replace("{" + name + "}", value)
        filled.append(filled_word)
    return filled


@dataclass(frozen=True, slots=True)
class ShimEvent:
    """One line the client wrote, with when the suite read it (Unix ms)."""

    at_ms: int
    kind: str
    fields: Mapping[str, Any] = field(default_factory=dict)

    def get(self, name: str) -> Any:
        return self.fields.get(name)


class Shim:
    """One run of the shim command."""

    def __init__(self, argv: list[str], *, log_path: Path, cwd: Path | None = None) -> None:
        self._log = log_path.open("w", encoding="utf-8")
        self.argv = argv
        self.started_ms = _now_ms()
        self.events: queue.Queue[ShimEvent] = queue.Queue()
        self.exit_status: int | None = None
        self.log_path = log_path
        try:
            self._process: subprocess.Popen[str] | None = subprocess.Popen(
                argv,
                cwd=cwd,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=self._log,
                text=True,
                encoding="utf-8",
                start_new_session=True,  # its own process group: closing ends its children too
            )
        except OSError as exc:
            self._process = None
            self.events.put(ShimEvent(_now_ms(), "exited", {"status": None, "error": str(exc)}))
            return
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self._process is not None and self._process.stdout is not None
        for line in self._process.stdout:
            self.events.put(_parse(line))
        status = self._process.wait()
        self.exit_status = status
        self.events.put(ShimEvent(_now_ms(), "exited", {"status": status}))

    def act(self, act: str, **fields: Any) -> bool:
        """Send one act; False when the client no longer reads its input."""
        if self._process is None or self._process.stdin is None:
            return False
        try:
            self._process.stdin.write(json.dumps({"act": act, **fields}) + "\n")
            self._process.stdin.flush()
        except (BrokenPipeError, OSError, ValueError):
            return False
        return True

    def next_event(self, timeout_s: float) -> ShimEvent | None:
        try:
            return self.events.get(timeout=timeout_s)
        except queue.Empty:
            return None

    def close(self) -> None:
        """End the run: close its input, give it a moment, then end its process group."""
        process = self._process
        if process is not None:
            if process.stdin is not None:
                with contextlib.suppress(OSError):
                    process.stdin.close()
            try:
                process.wait(timeout=2)
            except subprocess.TimeoutExpired:
                _signal_group(process, signal.SIGTERM)
                try:
                    process.wait(timeout=3)
                except subprocess.TimeoutExpired:
                    _signal_group(process, signal.SIGKILL)
                    process.wait(timeout=3)
            self._reader.join(timeout=5)
            if process.stdout is not None:
                process.stdout.close()
        self._log.close()

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def _signal_group(process: subprocess.Popen[str], sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, sig)


def _parse(line: str) -> ShimEvent:
    try:
        value = json.loads(line)
    except ValueError:
        return ShimEvent(_now_ms(), "unparsed", {"line": line.rstrip("\n")[:200]})
    if not isinstance(value, dict) or not isinstance(value.get("event"), str):
        return ShimEvent(_now_ms(), "unparsed", {"line": line.rstrip("\n")[:200]})
    return ShimEvent(_now_ms(), value["event"], value)


def _now_ms() -> int:
    return unix_ms()
