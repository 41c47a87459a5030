"""``qrlogin serve`` as a subprocess, attacked over raw sockets: header limits, read timeouts, bounded shutdown,
raw-path routing and the response details; and what makes it operable (announce, busy port, logs, metrics).

Every server is the real command on a free loopback port, started with short timeouts so the waits stay short; the
attacks are the ones a red team measured against the unhardened server (a million headers per request, idle
partial connections, a half-sent body at SIGTERM, ``%2F`` inside the path).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

pytest.importorskip("uvicorn")
pytest.importorskip("prometheus_client")

SRC = Path(__file__).resolve().parents[2] / "src"
V3 = "/_matrix/client/unstable/io.element.msc4388/rendezvous"
V1 = "/_matrix/client/unstable/org.matrix.msc4108/rendezvous"
START_TIMEOUT_S = 30.0
FAST = ("--header-timeout", "1", "--body-timeout", "1", "--keep-alive", "1", "--shutdown-timeout", "2")


@dataclass
class Served:
    process: subprocess.Popen[str]
    port: int
    lines: list[str] = field(default_factory=list)  # everything it wrote to stderr so far
    reader: threading.Thread | None = None

    def lines_complete(self) -> None:
        """Wait until the (exited) process's stderr has been read to the end."""
        assert self.reader is not None
        self.reader.join(timeout=10)

    def rss_peak_kib(self) -> int:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
        raise RuntimeError("no VmHWM")


def _command(*flags: str) -> list[str]:
    return [sys.executable, "-m", "qrlogin", "serve", "--host", "127.0.0.1", *flags]


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(SRC) + os.pathsep + os.environ.get("PYTHONPATH", "")}


@contextlib.contextmanager
def serve(*flags: str) -> Iterator[Served]:
    """``qrlogin serve --port 0 FLAGS``, once it has announced its address; stderr is collected in the background."""
    process = subprocess.Popen(
        _command("--port", "0", *flags), stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=_env()
    )
    assert process.stderr is not None
    served = Served(process=process, port=0)
    announced = threading.Event()

    def drain() -> None:
        assert process.stderr is not None
        for line in process.stderr:
            served.lines.append(line.rstrip("\n"))
            found = re.search(r"serving .* at http://127\.0\.0\.1:(\d+)/", line)
            if found and not announced.is_set():
                served.port = int(found.group(1))
                announced.set()
        announced.set()

    reader = served.reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    try:
        assert announced.wait(START_TIMEOUT_S) and served.port, f"no announcement: {served.lines}"
        yield served
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=15)
        reader.join(timeout=5)


@dataclass(frozen=True)
class Answer:
    status: int
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        return next((value for key, value in self.headers if key == name), None)

    def names(self) -> list[str]:
        return [key for key, _ in self.headers]


def parse(raw: bytes) -> Answer:
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = [(name.strip().lower(), value.strip()) for name, _, value in (line.partition(":") for line in lines)]
    return Answer(status=int(status_line.split()[1]), headers=headers, body=body)


def exchange(port: int, request: bytes, *, timeout_s: float = 5.0) -> Answer:
    """Send ``request`` (which asks for ``Connection: close``) and read the answer to the end."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout_s) as sock:
        sock.sendall(request)
        return parse(read_to_eof(sock))


def read_to_eof(sock: socket.socket) -> bytes:
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def http(method: str, path: str, *, body: bytes = b"", headers: tuple[str, ...] = ()) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", "Connection: close", *headers]
    if body or method in ("POST", "PUT"):
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def create_v3(port: int, data: str = "hello") -> dict[str, object]:
    answer = exchange(
        port, http("POST", V3, body=json.dumps({"data": data}).encode(), headers=("Content-Type: application/json",))
    )
    assert answer.status == 200, answer
    created: dict[str, object] = json.loads(answer.body)
    return created


def metric(port: int, name: str, **labels: str) -> float:
    text = exchange(port, http("GET", "/metrics")).body.decode()
    wanted = ",".join(f'{key}="{value}"' for key, value in sorted(labels.items()))
    for line in text.splitlines():
        if line.startswith(name) and not line.startswith("#"):
            series, value = line.rsplit(" ", 1)
            found = series[len(name) :].strip("{}")
            if ",".join(sorted(found.split(","))) == wanted:
                return float(value)
    return 0.0


@pytest.fixture(scope="module")
def server() -> Iterator[Served]:
    with serve(*FAST, "--log-level", "warning") as served:
        yield served


# ------------------------------------------------------------------------------------------------------ headers


def test_too_many_headers_is_431(server: Served) -> None:
    headers = tuple(f"X-Filler-{i}: x" for i in range(101))
    answer = exchange(server.port, http("GET", V3, headers=headers))
    assert answer.status == 431
    assert metric(server.port, "qrlogin_rendezvous_rejections_total", reason="too_many_headers") >= 1


def test_oversize_header_is_431(server: Served) -> None:
    answer = exchange(server.port, http("GET", V3, headers=("X-Big: " + "x" * 20_000,)))
    assert answer.status == 431
    assert metric(server.port, "qrlogin_rendezvous_rejections_total", reason="header_too_large") >= 1


def test_a_header_trickled_in_pieces_is_cut_at_the_limit(server: Served) -> None:
    # One header value that never ends, sent in small pieces: the parser would join them forever.
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nX-Endless: ")
        # 512 KiB at about 1 KiB per millisecond: a server without a limit would take all of it well within the
        # 1 s head timeout; paced, so that socket buffers do not swallow it before the server gets to read.
        sent = 0
        with contextlib.suppress(ConnectionError):
            while sent < 512 * 1024:
                sock.sendall(b"y" * 1024)
                sent += 1024
                time.sleep(0.001)
        try:
            reply = read_to_eof(sock)
        except ConnectionError:
            reply = b"(reset)"
    assert sent < 512 * 1024, f"the server took {sent} bytes of one header"
    assert reply.startswith(b"HTTP/1.1 431 ") or reply == b"(reset)", reply[:100]


def test_pipelined_requests_in_one_packet_are_each_measured_alone(server: Served) -> None:
    """A large body and the next request's head arriving together are not mistaken for one oversize head."""
    session = create_v3(server.port)
    body = json.dumps({"sequence_token": "0.stale", "data": "x" * 4000}).encode()
    put = f"PUT {V3}/{session['id']} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    put += f"Content-Length: {len(body)}\r\n\r\n"
    filler = "".join(f"X-Filler-{i}: {'y' * 100}\r\n" for i in range(90))  # 10 KB of headers, under the limit
    get = f"GET {V3}/{session['id']} HTTP/1.1\r\nHost: x\r\n{filler}Connection: close\r\n\r\n"
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        # Two whole requests and most of a third's head in one packet (about 19 KB, more than the head limit), then
        # the rest of that head.
        first = put.encode() + body + put.encode() + body + get.encode()[:-40]
        sock.sendall(first)
        time.sleep(0.2)
        sock.sendall(get.encode()[-40:])
        replies = read_to_eof(sock)
    statuses = re.findall(rb"HTTP/1\.1 (\d{3}) ", replies)
    assert statuses == [b"409", b"409", b"200"], replies[:300]


def test_a_malformed_request_is_400_and_counted(server: Served) -> None:
    answer = exchange(server.port, b"GET /\x00 HTTP/1.1\r\nHost: x\r\n\r\n")
    assert answer.status == 400
    assert metric(server.port, "qrlogin_rendezvous_rejections_total", reason="malformed_request") >= 1


def _flood(port: int, headers: int, outcome: list[str]) -> None:
    """One request with ``headers`` headers, streamed; records how it ended."""
    line = b"X-A: b\r\n"
    batch = line * 8192
    total = headers * len(line)
    sent = 0
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=20) as sock:
            sock.sendall(b"GET " + V3.encode() + b" HTTP/1.1\r\nHost: x\r\n")
            while sent < total:
                sock.sendall(batch)
                sent += len(batch)
            outcome.append("sent everything")
    except (ConnectionError, TimeoutError) as exc:
        outcome.append(type(exc).__name__)


def test_a_million_headers_cost_little_and_others_are_served() -> None:
    """Four requests of a million headers each, while a fifth client keeps reading: memory and service hold."""
    with serve(*FAST, "--log-level", "warning") as served:
        session = create_v3(served.port)
        before_kib = served.rss_peak_kib()
        outcomes: list[str] = []
        attackers = [threading.Thread(target=_flood, args=(served.port, 1_000_000, outcomes)) for _ in range(4)]
        for attacker in attackers:
            attacker.start()
        # Each read must be answered within the socket timeout while the attack runs: one at least, however soon the
        # attackers are refused, and more for as long as any of them is still sending.
        while True:
            answer = exchange(served.port, http("GET", f"{V3}/{session['id']}"), timeout_s=2.0)
            assert answer.status == 200
            if not any(attacker.is_alive() for attacker in attackers):
                break
        for attacker in attackers:
            attacker.join()
        growth_kib = served.rss_peak_kib() - before_kib
        assert len(outcomes) == 4 and "sent everything" not in outcomes, outcomes
        assert growth_kib < 16 * 1024, f"peak RSS grew {growth_kib} KiB under the header flood"
        assert metric(served.port, "qrlogin_rendezvous_rejections_total", reason="too_many_headers") == 4


# ------------------------------------------------------------------------------------------------------ timeouts


def test_an_idle_connection_is_dropped(server: Served) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        started = time.monotonic()
        assert read_to_eof(sock) == b""  # nothing sent, nothing answered: just closed
        assert time.monotonic() - started < 9


def test_a_partial_head_gets_408_and_is_dropped(server: Served) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(b"GET " + V3.encode() + b" HTTP/1.1\r\nHost: x\r\n")
        answer = parse(read_to_eof(sock))
    assert answer.status == 408
    assert metric(server.port, "qrlogin_rendezvous_rejections_total", reason="header_timeout") >= 1


def test_a_half_sent_body_gets_408_and_is_dropped(server: Served) -> None:
    head = http("POST", V3, headers=("Content-Type: application/json",)).replace(
        b"Content-Length: 0", b"Content-Length: 100"
    )
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(head + b'{"data":')
        answer = parse(read_to_eof(sock))
    assert answer.status == 408
    assert metric(server.port, "qrlogin_rendezvous_rejections_total", reason="body_timeout") >= 1


def test_sigterm_with_a_half_sent_body_shuts_down_in_bounded_time() -> None:
    # The body timeout is long here, so only the shutdown bound can end the stuck request.
    with serve("--body-timeout", "60", "--shutdown-timeout", "2", "--log-level", "info") as served:
        with socket.create_connection(("127.0.0.1", served.port), timeout=30) as sock:
            head = http("PUT", f"{V3}/x").replace(b"Content-Length: 0", b"Content-Length: 100")
            sock.sendall(head + b'{"seq')
            time.sleep(0.3)  # the request is in the app, reading its body
            started = time.monotonic()
            served.process.send_signal(signal.SIGTERM)
            status = served.process.wait(timeout=20)
            took = time.monotonic() - started
        # uvicorn re-raises the signal once it has shut down, so the status is "ended by SIGTERM", after a clean exit.
        assert status == -signal.SIGTERM
        assert took < 15, f"shutdown took {took:.1f} s"
        served.lines_complete()
        assert any("graceful shutdown exceeded" in line for line in served.lines), served.lines
        assert any("Finished server process" in line for line in served.lines), served.lines


# ------------------------------------------------------------------------------------------------ response details


def test_an_encoded_slash_does_not_reach_a_session(server: Served) -> None:
    session = create_v3(server.port, "secret")
    plain = exchange(server.port, http("GET", f"{V3}/{session['id']}"))
    assert plain.status == 200 and json.loads(plain.body)["data"] == "secret"
    for path in (f"{V3}%2F{session['id']}", f"{V3}%2f{session['id']}", f"{V3}/{session['id']}%2F"):
        answer = exchange(server.port, http("GET", path))
        assert answer.status == 404, path
        assert b"secret" not in answer.body


def test_headers_of_every_answer(server: Served) -> None:
    answers = [
        exchange(server.port, http("GET", f"{V3}/nothing")),
        exchange(server.port, http("OPTIONS", V3)),
        exchange(server.port, http("GET", "/health")),
        exchange(server.port, http("GET", "/elsewhere")),
    ]
    for answer in answers:
        assert answer.header("x-content-type-options") == "nosniff", answer
        assert "server" not in answer.names(), answer


def test_204_has_no_content_length(server: Served) -> None:
    created = exchange(server.port, http("POST", V1, body=b"v1 payload", headers=("Content-Type: text/plain",)))
    assert created.status == 201
    path = json.loads(created.body)["url"].split("127.0.0.1", 1)[1].split("/", 1)[1]
    deleted = exchange(server.port, http("DELETE", "/" + path))
    preflight = exchange(server.port, http("OPTIONS", V3))
    for answer in (deleted, preflight):
        assert answer.status == 204 and answer.body == b""
        assert "content-length" not in answer.names()


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("PATCH", f"{V3}/some-id", "GET, PUT, DELETE, OPTIONS"),
        ("PUT", V3, "GET, POST, OPTIONS"),
        ("GET", V1, "POST, OPTIONS"),
    ],
)
def test_405_names_the_allowed_methods(server: Served, method: str, path: str, allow: str) -> None:
    answer = exchange(server.port, http(method, path))
    assert answer.status == 405
    assert answer.header("allow") == allow


# ------------------------------------------------------------------------------------------------------ operable


def test_busy_port_is_one_line() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        result = subprocess.run(
            _command("--port", str(port)), capture_output=True, text=True, env=_env(), timeout=60, check=False
        )
    assert result.returncode == 1
    assert result.stderr.strip().count("\n") == 0, result.stderr
    assert result.stderr.startswith(f"qrlogin serve: cannot listen on 127.0.0.1:{port}: ")
    assert "Traceback" not in result.stderr


def test_metrics_count_requests_and_live_sessions() -> None:
    with serve("--log-level", "warning") as served:
        create_v3(served.port)
        create_v3(served.port)
        exchange(served.port, http("GET", f"{V3}/missing"))
        assert metric(served.port, "qrlogin_rendezvous_live_sessions") == 2
        assert metric(served.port, "qrlogin_rendezvous_requests_total", route=V3, method="POST", status="200") == 2
        session_route = V3 + "/{id}"
        assert (
            metric(served.port, "qrlogin_rendezvous_requests_total", route=session_route, method="GET", status="404")
            == 1
        )


def test_json_access_log_names_the_route_not_the_session() -> None:
    with serve("--log-json", "--log-level", "info") as served:
        session = create_v3(served.port)
        exchange(served.port, http("GET", f"{V3}/{session['id']}"))
        served.process.send_signal(signal.SIGTERM)
        served.process.wait(timeout=20)
        served.lines_complete()
    records = [json.loads(line) for line in served.lines if line.startswith("{")]
    access = [record for record in records if record["logger"] == "qrlogin.access"]
    assert [(record["method"], record["route"], record["status"]) for record in access] == [
        ("POST", V3, 200),
        ("GET", V3 + "/{id}", 200),
    ]
    assert all(str(session["id"]) not in line for line in served.lines)
    assert {"time", "level", "message", "client", "duration_ms"} <= set(access[0])


def test_log_level_and_access_log_flags_keep_access_lines_out(server: Served) -> None:
    exchange(server.port, http("GET", "/health"))
    assert not any("qrlogin.access" in line for line in server.lines)  # --log-level warning
    with serve("--no-access-log", "--log-level", "info") as quiet:
        exchange(quiet.port, http("GET", "/health"))
        quiet.process.send_signal(signal.SIGTERM)
        quiet.process.wait(timeout=20)
        quiet.lines_complete()
    assert any("Application startup complete" in line for line in quiet.lines)  # info lines do come
    assert not any("qrlogin.access" in line for line in quiet.lines)


def test_connections_beyond_the_limit_get_503() -> None:
    with serve("--max-connections", "3", "--log-level", "warning") as served:
        idle = [socket.create_connection(("127.0.0.1", served.port), timeout=10) for _ in range(3)]
        try:
            time.sleep(0.3)  # the server has accepted them
            assert exchange(served.port, http("GET", "/health")).status == 503
        finally:
            for sock in idle:
                sock.close()
        time.sleep(0.3)
        assert exchange(served.port, http("GET", "/health")).status == 200
