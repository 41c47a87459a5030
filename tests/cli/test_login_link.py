"""``qrlogin login`` and ``qrlogin link`` as subprocesses against ``qrlogin testserver``, driven through the line
protocol of docs/events.md exactly as a script or the conformance suite would: every generation, both QR directions,
the credentials file, then the new device's token on ``whoami`` and its device in the account's list."""

from __future__ import annotations

import json
import queue
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from qrlogin import qr
from qrlogin.cli import build_parser, main
from tests.runner.testserver import PASSWORD, LocalServer, env, running_testserver

pytest.importorskip("uvicorn")
pytest.importorskip("httpx")

STEP_TIMEOUT_S = 30.0


@pytest.fixture(scope="module")
def server() -> Iterator[LocalServer]:
    with running_testserver("--auto-approve") as running:
        yield running


class Command:
    """One ``qrlogin`` process speaking the line protocol: events read by a thread, acts written to stdin."""

    def __init__(self, *argv: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "qrlogin", *argv, "--events", "json"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env(),
        )
        self.events: queue.Queue[dict[str, Any]] = queue.Queue()
        self.seen: list[dict[str, Any]] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.events.put(json.loads(line))
        self.events.put({"event": "exited"})

    def act(self, name: str, **fields: Any) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps({"act": name, **fields}) + "\n")
        self.process.stdin.flush()

    def poll(self, timeout_s: float = 0.05) -> dict[str, Any] | None:
        try:
            event = self.events.get(timeout=timeout_s)
        except queue.Empty:
            return None
        self.seen.append(event)
        return event

    def finish(self) -> tuple[int, str]:
        try:
            status = self.process.wait(timeout=STEP_TIMEOUT_S)
        finally:
            if self.process.poll() is None:
                self.process.kill()
        assert self.process.stderr is not None
        return status, self.process.stderr.read()


def _drive(new: Command, existing: Command, *, approve: bool = True, opened_prefix: str = "http://127.0.0.1:") -> None:
    """The user: carries the QR code across, types the check code, consents and opens the page."""
    shown_code: str | None = None
    asked: Command | None = None
    done: set[int] = set()
    deadline = time.monotonic() + STEP_TIMEOUT_S
    while len(done) < 2:
        assert time.monotonic() < deadline, (new.seen, existing.seen)
        for this, other in ((new, existing), (existing, new)):
            if id(this) in done:
                continue
            event = this.poll()
            if event is None:
                continue
            kind = event["event"]
            if kind == "qr":
                assert other.process.stdin is not None  # the scanner was started with --qr -: its first line
                other.process.stdin.write(event["hex"] + "\n")
                other.process.stdin.flush()
            elif kind == "check_code":
                shown_code = event["code"]
            elif kind == "prompt" and event["ask"] == "check_code":
                asked = this
            elif kind == "prompt" and event["ask"] == "consent":
                this.act("consent", approve=approve)
            elif kind == "prompt" and event["ask"] == "open_uri":
                assert event["uri"].startswith(opened_prefix)
                this.act("opened")
            elif kind in ("done", "exited"):
                done.add(id(this))
        if asked is not None and shown_code is not None:
            asked.act("check_code", code=shown_code)
            asked = None


def _commands(
    server: LocalServer, tmp_path: Path, generation: qr.Generation, *, new_shows: bool, device_id: str
) -> tuple[Command, Command]:
    common = ["--generation", generation.value, "--allow-http", "--timeout", "25"]
    out = tmp_path / "credentials.json"
    new_argv = ["login", *common, "--device-id", device_id, "--out", str(out)]
    link_argv = ["link", server.base_url, *common, "--user", "alice", "--password", PASSWORD]
    if new_shows:
        return Command(*new_argv, server.base_url), Command(*link_argv, "--qr", "-")
    return Command(*new_argv, "--qr", "-"), Command(*link_argv)


@pytest.mark.parametrize("generation", list(qr.Generation))
@pytest.mark.parametrize("new_shows", [True, False], ids=["login-shows", "link-shows"])
def test_login_and_link_sign_in(
    server: LocalServer, tmp_path: Path, generation: qr.Generation, new_shows: bool
) -> None:
    device_id = f"CLI{generation.name}{'N' if new_shows else 'E'}"
    new, existing = _commands(server, tmp_path, generation, new_shows=new_shows, device_id=device_id)
    # The scanner reads the code as the first line of its stdin ("--qr -"); acts follow on the same stream.
    _drive(new, existing)
    (new_status, new_err), (existing_status, existing_err) = new.finish(), existing.finish()
    assert (new_status, existing_status) == (0, 0), (new_err, existing_err, new.seen, existing.seen)
    (new_done,) = [e for e in new.seen if e["event"] == "done"]
    (existing_done,) = [e for e in existing.seen if e["event"] == "done"]
    assert new_done["outcome"] == existing_done["outcome"] == "success"
    assert new_done["user_id"] == existing_done["user_id"] == server.user_id
    assert new_done["device_id"] == existing_done["device_id"] == device_id
    assert all("access_token" not in json.dumps(e) for e in new.seen)  # tokens only in the file
    out = tmp_path / "credentials.json"
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    credentials = json.loads(out.read_text())
    assert credentials["user_id"] == server.user_id and credentials["device_id"] == device_id
    assert server.whoami(credentials["access_token"]) == {"user_id": server.user_id, "device_id": device_id}
    assert device_id in server.device_ids(credentials["access_token"])


def test_login_and_link_over_https_trusting_the_testservers_certificate(tmp_path: Path) -> None:
    """``testserver --tls`` writes its self-signed certificate; ``--ca-file`` makes both commands trust it, so the
    whole sign-in runs over https with no ``--allow-http`` anywhere (the QR code carries an https URL)."""
    cert = tmp_path / "testserver.pem"
    with running_testserver("--auto-approve", "--tls", "--tls-cert", str(cert)) as server:
        assert server.base_url.startswith("https://") and server.ca_file == str(cert)
        common = ["--timeout", "25", "--ca-file", str(cert)]
        out = tmp_path / "credentials.json"
        new = Command("login", *common, "--device-id", "TLSPHONE", "--out", str(out), server.base_url)
        existing = Command("link", server.base_url, *common, "--user", "alice", "--password", PASSWORD, "--qr", "-")
        _drive(new, existing, opened_prefix="https://127.0.0.1:")
        assert (new.finish()[0], existing.finish()[0]) == (0, 0), (new.seen, existing.seen)
        (shown,) = [e["hex"] for e in new.seen if e["event"] == "qr"]
        code = qr.decode(bytes.fromhex(shown))  # strict: an http URL would be refused here
        assert code.base_url == server.base_url
        credentials = json.loads(out.read_text())
        assert server.whoami(credentials["access_token"])["device_id"] == "TLSPHONE"
        # Without the certificate the same server is not trusted: discovery fails with one line, before any QR code.
        untrusted = Command("login", "--timeout", "10", server.base_url)
        status, err = untrusted.finish()
        while (event := untrusted.poll(0.5)) is not None and event["event"] != "exited":
            pass
        assert status == 1 and not [e for e in untrusted.seen if e["event"] == "qr"]
        assert err.count("\n") == 1 and "certificate is not trusted" in err, err


def test_a_missing_ca_file_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["login", "https://127.0.0.1:9", "--ca-file", "/nonexistent/ca.pem", "--timeout", "3"]) == 1
    assert (
        capsys.readouterr().err.strip() == "qrlogin: LocalProtocolError: --ca-file: no such file: /nonexistent/ca.pem"
    )


def test_login_scans_the_qr_image_link_shows(server: LocalServer, tmp_path: Path) -> None:
    """``--qr-image``: the picture of the code ``link`` shows, read back with the qr-image extra (zxing-cpp)."""
    segno = pytest.importorskip("segno")
    pytest.importorskip("zxingcpp")
    common = ["--allow-http", "--timeout", "25"]
    existing = Command("link", server.base_url, *common, "--user", "alice", "--password", PASSWORD)
    deadline = time.monotonic() + STEP_TIMEOUT_S
    while (event := existing.poll()) is None or event["event"] != "qr":
        assert time.monotonic() < deadline and (event is None or event["event"] != "done"), existing.seen
    image = tmp_path / "code.png"
    segno.make(bytes.fromhex(event["hex"]), error="m", micro=False).save(str(image), scale=4)
    new = Command("login", *common, "--device-id", "PICTURED", "--qr-image", str(image))
    _drive(new, existing)
    assert (new.finish()[0], existing.finish()[0]) == (0, 0), (new.seen, existing.seen)
    assert [e["device_id"] for e in new.seen if e["event"] == "done"] == ["PICTURED"]


def test_the_cancel_act_ends_the_run_and_deletes_the_session(server: LocalServer) -> None:
    login = Command("login", server.base_url, "--allow-http", "--timeout", "25")
    deadline = time.monotonic() + STEP_TIMEOUT_S
    while (event := login.poll()) is None or event["event"] != "qr":
        assert time.monotonic() < deadline, login.seen
    login.act("cancel")
    status, _ = login.finish()
    done = [e for e in login.seen if e["event"] == "done"]
    while (event := login.poll(0.5)) is not None and event["event"] != "exited":
        done += [event] if event["event"] == "done" else []
    assert status == 1 and [e["outcome"] for e in done] == ["user_cancelled"]
    code = qr.decode(bytes.fromhex(login.seen[0]["hex"]), allow_http=True)
    assert code.rendezvous_id is not None and code.base_url is not None
    session = f"{code.base_url}/_matrix/client/unstable/io.element.msc4388/rendezvous/{code.rendezvous_id}"
    assert httpx.get(session).status_code == 404  # deleted, not left to expire


def test_a_server_without_sign_in_with_qr_is_refused_before_any_qr(capsys: pytest.CaptureFixture[str]) -> None:
    # Nothing listens on port 9 of loopback: discovery fails at its first step, with one line on stderr.
    assert main(["login", "http://127.0.0.1:9", "--allow-http", "--timeout", "3"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no answer" in err


def test_plain_http_needs_allow_http(capsys: pytest.CaptureFixture[str], server: LocalServer) -> None:
    assert main(["login", server.base_url, "--timeout", "5"]) == 1
    assert "--allow-http" in capsys.readouterr().err


def test_usage_errors_are_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["link", "example.org", "--timeout", "5"]) == 1
    assert (
        capsys.readouterr().err.strip()
        == "qrlogin: LocalProtocolError: give --access-token-file, or --user and --password"
    )
    assert main(["login", "--timeout", "5"]) == 1
    assert "give HOMESERVER" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        build_parser().parse_args(["login", "--qr", "00", "--qr-image", "x.png"])
