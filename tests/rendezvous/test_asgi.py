"""The ASGI adapter in-process: body limits before reading, lifespan, header and query mapping; serve's arguments."""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import MutableMapping
from typing import Any

import pytest

from qrlogin.adapters import asgi
from qrlogin.adapters.asgi import RendezvousApp, create_app
from qrlogin.cli import main
from qrlogin.http import lowercase_headers
from qrlogin.rendezvous.limits import RateLimit
from qrlogin.rendezvous.server import (
    MAX_JSON_BODY_BYTES,
    V3_UNSTABLE_PREFIX,
    EmbeddedStore,
    InMemoryStore,
    ServerConfig,
    Session,
    StoreUnavailableError,
)

Message = MutableMapping[str, Any]


def run_app(
    app: RendezvousApp, method: str, path: str, chunks: list[bytes], headers: list[tuple[bytes, bytes]]
) -> tuple[int, dict[str, str], bytes, int]:
    """Drive one HTTP request; returns status, headers, body and how many body chunks the app consumed."""
    sent: list[Message] = []
    pending = [{"type": "http.request", "body": c, "more_body": i < len(chunks) - 1} for i, c in enumerate(chunks)]
    consumed = 0

    async def receive() -> Message:
        nonlocal consumed
        consumed += 1
        return pending.pop(0) if pending else {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        sent.append(message)

    scope = {"type": "http", "method": method, "path": path, "query_string": b"", "headers": headers}
    asyncio.run(app(scope, receive, send))
    start, body = sent
    response_headers = {k.decode(): v.decode() for k, v in start["headers"]}
    return start["status"], response_headers, body["body"], consumed


def test_declared_oversize_body_is_refused_without_reading() -> None:
    app = create_app()
    status, _, body, consumed = run_app(
        app, "POST", V3_UNSTABLE_PREFIX, [b"x"], [(b"content-length", str(10**9).encode())]
    )
    assert (status, json.loads(body)["errcode"], consumed) == (413, "M_TOO_LARGE", 0)


def test_streamed_body_is_cut_one_byte_past_the_limit() -> None:
    app = create_app()
    chunk = b"x" * 8192
    chunks = [chunk] * 100  # 800 KiB offered
    status, _, _, consumed = run_app(app, "POST", V3_UNSTABLE_PREFIX, chunks, [(b"content-type", b"application/json")])
    assert status == 413
    assert consumed <= MAX_JSON_BODY_BYTES // len(chunk) + 2


def test_create_then_read_through_asgi() -> None:
    store = InMemoryStore()
    app = RendezvousApp(ServerConfig(), EmbeddedStore(store), clock=lambda: 5_000, entropy=bytes)
    status, headers, body, _ = run_app(
        app, "POST", V3_UNSTABLE_PREFIX, [b'{"data":', b'"hi"}'], [(b"content-type", b"application/json")]
    )
    assert status == 200 and headers["content-length"] == str(len(body))
    created = json.loads(body)
    status, _, body, _ = run_app(app, "GET", f"{V3_UNSTABLE_PREFIX}/{created['id']}", [b""], [])
    assert json.loads(body) == {"data": "hi", "sequence_token": created["sequence_token"], "expires_in_ms": 120_000}
    assert len(store) == 1


def test_lifespan_is_acknowledged() -> None:
    app = create_app()
    messages = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]
    sent: list[Message] = []

    async def receive() -> Message:
        return messages.pop(0)

    async def send(message: Message) -> None:
        sent.append(message)

    asyncio.run(app({"type": "lifespan"}, receive, send))
    assert [m["type"] for m in sent] == ["lifespan.startup.complete", "lifespan.shutdown.complete"]


@pytest.mark.parametrize(
    "argv",
    [["serve", "--ttl", "0.5"], ["serve", "--ttl", "301"], ["serve", "--generations", "v1", "--stable", "v2,v3"]],
)
def test_serve_refuses_bad_configurations(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 1
    assert capsys.readouterr().err.startswith("qrlogin:")


def test_serve_rejects_unknown_generations() -> None:
    with pytest.raises(SystemExit):
        main(["serve", "--generations", "v4"])


def run_from(app: RendezvousApp, client: tuple[str, int] | None, method: str, path: str, body: bytes) -> int:
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    scope = {"type": "http", "method": method, "path": path, "query_string": b"", "client": client,
             "headers": [(b"content-type", b"application/json")]}  # fmt: skip
    asyncio.run(app(scope, receive, send))
    status: int = sent[0]["status"]
    return status


def test_rate_limits_key_on_the_peer_address_and_an_ipv6_64() -> None:
    config = ServerConfig(create_limit=RateLimit(per_second=0.001, burst=1), write_limit=None)
    app = RendezvousApp(config, EmbeddedStore(), clock=lambda: 5_000)
    post = b'{"data": "x"}'
    assert run_from(app, ("192.0.2.1", 1000), "POST", V3_UNSTABLE_PREFIX, post) == 200
    assert run_from(app, ("192.0.2.1", 1001), "POST", V3_UNSTABLE_PREFIX, post) == 429  # same address, other port
    assert run_from(app, ("192.0.2.2", 1000), "POST", V3_UNSTABLE_PREFIX, post) == 200
    assert run_from(app, ("2001:db8::1", 1000), "POST", V3_UNSTABLE_PREFIX, post) == 200
    assert run_from(app, ("2001:db8::ffff:2", 1000), "POST", V3_UNSTABLE_PREFIX, post) == 429  # same /64
    assert run_from(app, None, "POST", V3_UNSTABLE_PREFIX, post) == 200  # no peer address (e.g. a test client)


class _DownStore(EmbeddedStore):
    async def get(self, session_id: str) -> Session | None:
        raise StoreUnavailableError("down")

    async def insert(self, session: Session, *, now_ms: int, capacity: int) -> bool:
        raise StoreUnavailableError("down")

    async def maintain(self, now_ms: int) -> bool:
        raise StoreUnavailableError("down")


def test_an_unavailable_store_answers_503_with_retry_after() -> None:
    app = RendezvousApp(ServerConfig(), _DownStore())
    for method, path, chunks in (
        ("POST", V3_UNSTABLE_PREFIX, [b'{"data": "x"}']),
        ("GET", V3_UNSTABLE_PREFIX + "/x", [b""]),
    ):
        status, headers, body, _ = run_app(app, method, path, chunks, [(b"content-type", b"application/json")])
        assert (status, json.loads(body)["errcode"], headers["retry-after"]) == (503, "M_UNKNOWN", "1")
    # What needs no store is still answered.
    status, _, body, _ = run_app(app, "GET", V3_UNSTABLE_PREFIX, [b""], [])
    assert (status, json.loads(body)) == (200, {"create_available": True})


def test_serve_store_and_limit_flags(capsys: pytest.CaptureFixture[str]) -> None:
    from qrlogin.cli.serve import build_config, build_store, register

    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(
        ["serve", "--no-create", "--create-rate", "0", "--write-rate", "2.5", "--write-burst", "7"]
    )
    config = build_config(args)
    assert config.create_available is False and config.create_limit is None
    assert config.write_limit == RateLimit(per_second=2.5, burst=7)
    assert isinstance(build_store("memory"), EmbeddedStore)
    assert main(["serve", "--store", "mysql://x"]) == 1
    assert "not a Redis URL" in capsys.readouterr().err
    assert main(["serve", "--write-burst", "0"]) == 1
    assert "burst" in capsys.readouterr().err


def test_only_declared_header_sets_are_kept_encoded_and_each_answer_gets_its_own_list() -> None:
    declared = lowercase_headers((("x-declared", "1"),))
    fresh = (("x-fresh", "2"),)
    assert asgi._encoded(declared) == [(b"x-declared", b"1")]
    assert asgi._encoded(fresh) == [(b"x-fresh", b"2")]
    assert id(declared) in asgi._ENCODED_HEADERS and id(fresh) not in asgi._ENCODED_HEADERS
    first = asgi._encoded(declared)
    first.append((b"content-length", b"0"))  # what write_response does to the list it gets
    assert asgi._encoded(declared) == [(b"x-declared", b"1")]
