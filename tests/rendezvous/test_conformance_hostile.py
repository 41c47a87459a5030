"""check-server against hostile servers on loopback: whatever comes back is a failed check, never a traceback.

A small ASGI app (on uvicorn, in a thread) answers every request with one kind of hostile answer: 200,000 nested
brackets, a body of megabytes, a compressed bomb, bytes that are not UTF-8, JSON of the wrong shape; a raw TCP
server answers with bytes that are not HTTP at all. The checker runs every generation with the multi-instance and
rate-limit parts on, and must return findings, some of them failures.
"""

from __future__ import annotations

import gzip
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import uvicorn

from qrlogin.adapters.conformance import check_server
from qrlogin.rendezvous import ApiGeneration
from tests.peers import free_port

Message = dict[str, Any]

NESTED = b"[" * 200_000 + b"]" * 200_000
WRONG_SHAPE = (
    b'{"id": 5, "sequence_token": [], "url": {}, "data": null, "create_available": "yes", "errcode": {}, '
    b'"retry_after_ms": "soon", "expires_in_ms": 1e999}'
)
HOSTILE_BODIES: dict[str, tuple[tuple[tuple[bytes, bytes], ...], list[bytes]]] = {
    "nested brackets": (((b"content-type", b"application/json"),), [NESTED]),
    "nested objects": (((b"content-type", b"application/json"),), [b'{"a":' * 100_000 + b"1" + b"}" * 100_000]),
    "megabytes": (((b"content-type", b"application/json"),), [b"[" + b"0," * 65_536] * 40),
    "compressed bomb": (
        ((b"content-type", b"application/json"), (b"content-encoding", b"gzip")),
        [gzip.compress(b'{"data": "' + b"0" * 20_000_000 + b'"}')],
    ),
    "not utf-8": (((b"content-type", b"application/json"), (b"etag", b'"x"')), [b'{"data": "\xff\xfe\xc0"}']),
    "wrong shape": (((b"content-type", b"application/json"), (b"etag", b"W/")), [WRONG_SHAPE]),
}


def hostile_app(headers: tuple[tuple[bytes, bytes], ...], chunks: list[bytes]) -> Callable[..., Any]:
    async def app(scope: Message, receive: Callable[[], Any], send: Callable[[Message], Any]) -> None:
        if scope["type"] != "http":
            return
        while (await receive()).get("more_body"):
            pass
        await send({"type": "http.response.start", "status": 200, "headers": list(headers)})
        for n, chunk in enumerate(chunks):
            await send({"type": "http.response.body", "body": chunk, "more_body": n < len(chunks) - 1})

    return app


@contextmanager
def serve(app: Callable[..., Any]) -> Iterator[str]:
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="critical", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        for _ in range(200):
            if server.started:
                break
            threading.Event().wait(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@contextmanager
def not_http() -> Iterator[str]:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    listener.settimeout(0.2)
    stop = threading.Event()

    def answer() -> None:
        while not stop.is_set():
            try:
                connection, _ = listener.accept()
            except OSError:
                continue
            with connection:
                connection.sendall(b"\x00\xffNOT HTTP\r\n\r\n" + bytes(range(256)) * 8)

    thread = threading.Thread(target=answer, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(timeout=5)
        listener.close()


def assert_only_findings(base: str) -> None:
    for generation in ApiGeneration:
        findings = check_server(base, generation, other_url=base, rate_limit_probe=3)
        assert findings and all(f.status in ("pass", "fail", "warn", "skip") for f in findings)
        assert any(f.status == "fail" for f in findings), findings
        assert all(len(f.detail) <= 310 for f in findings)


@pytest.mark.parametrize("kind", sorted(HOSTILE_BODIES))
def test_hostile_answers_are_failed_checks(kind: str) -> None:
    headers, chunks = HOSTILE_BODIES[kind]
    with serve(hostile_app(headers, chunks)) as base:
        assert_only_findings(base)


def test_bytes_that_are_not_http_are_failed_checks() -> None:
    with not_http() as base:
        assert_only_findings(base)


def test_the_command_prints_a_table_not_a_traceback() -> None:
    headers, chunks = HOSTILE_BODIES["nested brackets"]
    with serve(hostile_app(headers, chunks)) as base:
        done = subprocess.run(
            [sys.executable, "-m", "qrlogin", "check-server", base, "--other-instance", base, "--rate-limit", "2"],
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
    assert done.returncode == 1
    assert "Traceback" not in done.stderr and "FAIL" in done.stdout
