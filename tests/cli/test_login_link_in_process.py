"""``qrlogin login`` and ``qrlogin link`` run in this process (standard input and output replaced by pipes), each
against a runner in the other role, against ``qrlogin testserver``: the JSON line protocol on ``login``, the text
interface (and a secrets file) on ``link``."""

from __future__ import annotations

import io
import json
import os
import queue
import re
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from qrlogin import qr
from qrlogin import runner as rn
from qrlogin._secret import Secret
from qrlogin.cli import main
from qrlogin.login.messages import message_to_json
from qrlogin.sim.world import user_secrets
from tests.runner.pairing import options
from tests.runner.testserver import LocalServer, running_testserver

pytest.importorskip("uvicorn")
pytest.importorskip("httpx")

WAIT_S = 30.0


@pytest.fixture(scope="module")
def server() -> Iterator[LocalServer]:
    with running_testserver("--auto-approve") as running:
        yield running


class Sink(io.TextIOBase):
    """Standard output as a queue of lines."""

    def __init__(self) -> None:
        self.pending = ""
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []

    def write(self, text: str) -> int:
        self.pending += text
        while "\n" in self.pending:
            line, self.pending = self.pending.split("\n", 1)
            self.lines.put(line)
        return len(text)

    def wait_for(self, pattern: str) -> re.Match[str]:
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.1)
            except queue.Empty:
                continue
            self.seen.append(line)
            if (found := re.search(pattern, line)) is not None:
                return found
        raise AssertionError(f"{pattern!r} never came: {self.seen}")

    def rest(self) -> list[str]:
        while not self.lines.empty():
            self.seen.append(self.lines.get())
        return self.seen


class Command:
    """``main(argv)`` in a thread, with a pipe for standard input and a :class:`Sink` for standard output."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, *argv: str) -> None:
        read, write = os.pipe()
        self.stdin = open(write, "w", encoding="utf-8")  # noqa: SIM115 - closed by close()
        monkeypatch.setattr(sys, "stdin", open(read, encoding="utf-8"))  # noqa: SIM115 - the command's to read
        self.out = Sink()
        monkeypatch.setattr(sys, "stdout", self.out)
        self.status: list[int] = []
        self.thread = threading.Thread(target=lambda: self.status.append(main(list(argv))), daemon=True)
        self.thread.start()

    def type(self, line: str) -> None:
        self.stdin.write(line + "\n")
        self.stdin.flush()

    def finish(self) -> int:
        self.thread.join(WAIT_S)
        self.stdin.close()
        assert self.status, self.out.rest()
        return self.status[0]


def test_login_speaks_the_line_protocol(server: LocalServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    out = tmp_path / "credentials.json"
    argv = ["login", server.base_url, "--allow-http", "--events", "json", "--device-id", "PIPED", "--out", str(out)]
    login = Command(monkeypatch, *argv, "--timeout", "25", "--show-tokens")
    payload = bytes.fromhex(json.loads(login.out.wait_for(r'^\{"event":"qr"').string)["hex"])
    existing = rn.ScriptedUser()

    def typed(code: str) -> None:  # the user reads it on the existing device and types it into login
        login.type(json.dumps({"act": "check_code", "code": code}))

    existing.show_check_code = typed  # type: ignore[method-assign]
    linked = rn.link_sync(
        server.base_url, existing, access_token=Secret(server.password_login("LAPTOPPIPE").encode()),
        secrets=user_secrets("alice"), qr_payload=payload, options=options(),
    )  # fmt: skip
    assert login.finish() == 0 and linked.succeeded
    events: list[dict[str, Any]] = [json.loads(line) for line in login.out.rest()]
    names = [event["event"] for event in events]
    assert names[0] == "qr" and ("prompt" in names) and names[-2:] == ["done", "tokens"]
    assert {"event": "prompt", "ask": "check_code"} in events
    done = events[-2]
    assert (done["outcome"], done["user_id"], done["device_id"]) == ("success", server.user_id, "PIPED")
    assert events[-1]["access_token"] == json.loads(out.read_text())["access_token"]  # asked for with --show-tokens


def test_link_in_text_hands_over_the_secrets_file(
    server: LocalServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    secrets_file = tmp_path / "secrets.json"
    content = dict(message_to_json(user_secrets("alice")))
    del content["type"]
    secrets_file.write_text(json.dumps(content))
    token_file = tmp_path / "token"
    token_file.write_text(server.password_login("LAPTOPTEXT") + "\n")
    argv = ["link", server.base_url, "--allow-http", "--access-token-file", str(token_file), "--yes"]
    link = Command(monkeypatch, *argv, "--secrets-file", str(secrets_file), "--generation", "v1", "--timeout", "25")
    payload = bytes.fromhex(link.out.wait_for(r"\(payload ([0-9a-f]+)\)").group(1))
    new = rn.ScriptedUser()
    new.show_check_code = link.type  # type: ignore[method-assign,assignment]
    signed_in = rn.login_sync(
        None, new, qr_payload=payload, generation=qr.Generation.V1, device_id="TEXTED", options=options()
    )
    assert link.finish() == 0 and signed_in.succeeded
    assert signed_in.secrets == user_secrets("alice")
    lines = link.out.rest()
    assert "Enter the code the other device shows:" in lines
    assert any(line.startswith("Open this page in a browser") for line in lines)
    assert lines[-1] == f"signed in device TEXTED to {server.user_id}"
