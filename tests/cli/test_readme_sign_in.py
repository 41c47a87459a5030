"""README.md's "Sign in a bot or CLI with QR" runs as written: the three commands of its console block, in three
processes, with the test as the user (it carries the QR payload from ``link`` to ``login`` and types the check code
``login`` shows into ``link``). Only the port changes: the server takes a free one."""

from __future__ import annotations

import json
import queue
import re
import shlex
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.runner.testserver import env

pytest.importorskip("uvicorn")
pytest.importorskip("httpx")

README = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
TIMEOUT_S = 40.0


def _commands() -> list[list[str]]:
    section = README.split("## Sign in a bot or CLI with QR\n", 1)[1].split("\n## ", 1)[0]
    (block,) = re.findall(r"```console\n(.*?)```", section, flags=re.DOTALL)
    return [shlex.split(line[2:]) for line in block.splitlines() if line.startswith("$ ")]


class Process:
    def __init__(self, argv: list[str], cwd: Path) -> None:
        assert argv[0] == "qrlogin"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "qrlogin", *argv[1:]],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env(),
            cwd=cwd,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line)

    def wait_for(self, pattern: str) -> re.Match[str]:
        deadline = time.monotonic() + TIMEOUT_S
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.1)
            except queue.Empty:
                continue
            self.seen.append(line)
            found = re.search(pattern, line)
            if found is not None:
                return found
        raise AssertionError(f"{pattern!r} never came: {''.join(self.seen)}")

    def type(self, text: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(text + "\n")
        self.process.stdin.flush()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)


def test_the_three_commands_sign_in(tmp_path: Path) -> None:
    serve, link, login = _commands()
    assert (
        serve[:2] == ["qrlogin", "testserver"] and link[:2] == ["qrlogin", "link"] and login[:2] == ["qrlogin", "login"]
    )
    server = Process([part if part != "8008" else "0" for part in serve], tmp_path)
    started: list[Process] = [server]
    try:
        base_url = server.wait_for(r"base URL: (http://127\.0\.0\.1:\d+)").group(1)
        linking = Process([part.replace("http://127.0.0.1:8008", base_url) for part in link], tmp_path)
        started.append(linking)
        payload = linking.wait_for(r"\(payload ([0-9a-f]+)\)").group(1)
        signing_in = Process([payload if part == "HEX" else part for part in login], tmp_path)
        started.append(signing_in)
        code = signing_in.wait_for(r"Enter this code on the other device: (\d\d)").group(1)
        linking.wait_for("Enter the code the other device shows")
        linking.type(code)
        signed_in = signing_in.wait_for(r"signed in as (@alice:\S+), device (\w+)")
        assert signing_in.process.wait(timeout=TIMEOUT_S) == 0
        assert linking.process.wait(timeout=TIMEOUT_S) == 0
        credentials = json.loads((tmp_path / "credentials.json").read_text())
        assert (credentials["user_id"], credentials["device_id"]) == signed_in.groups()
        assert credentials["homeserver"] == base_url and credentials["access_token"]
    finally:
        for process in reversed(started):
            process.stop()
