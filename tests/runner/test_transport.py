"""The transport's promises, each against a real socket or a scripted one: bounded bodies, no attempt past the
deadline, retries only where the core has none, the one plain-http switch, ``connect_to``; and discovery's early
refusal of a server without sign-in with QR code."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Mapping
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qrlogin import runner as rn
from qrlogin._secret import Secret
from qrlogin.http import HttpRequest, HttpResponse
from qrlogin.login.messages import DEVICE_AUTHORIZATION_GRANT
from qrlogin.runner.transport import now_ms
from tests.runner.faulty_server import Faults, serving

pytest.importorskip("uvicorn")


def _answer(
    status: int, *, json_body: object = None, content: bytes = b"", headers: dict[str, str] | None = None
) -> httpx.Response:
    """A response whose body is still a stream, as one from a socket is (the transport reads it raw)."""
    if json_body is not None:
        content = json.dumps(json_body).encode()
        headers = {"content-type": "application/json", **(headers or {})}
    return httpx.Response(status, headers=headers, stream=httpx.ByteStream(content))


def _run(
    handler: Callable[[httpx.Request], httpx.Response], request: HttpRequest, **options: Any
) -> HttpResponse | None:
    async def go() -> HttpResponse | None:
        async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
            transport = rn.Transport(http, rn.TransportOptions(retry_base_s=0.01, **options), access_token=Secret(b"t"))
            return await transport.perform(request, deadline_ms=now_ms() + 5_000)

    return asyncio.run(go())


def test_an_endless_body_is_read_to_one_byte_past_the_bound() -> None:
    with serving(Faults(endless={"/endless"})) as server:

        async def go() -> tuple[HttpResponse | None, float]:
            async with httpx.AsyncClient() as http:
                transport = rn.Transport(http, rn.TransportOptions(allow_http=True, max_body_bytes=100_000))
                start = time.monotonic()
                answer = await transport.perform(
                    HttpRequest(method="GET", target=server.base_url + "/endless"), deadline_ms=now_ms() + 10_000
                )
                return answer, time.monotonic() - start

        answer, took_s = asyncio.run(go())
        assert answer is not None and answer.status == 200
        assert len(answer.body) == 100_001 and took_s < 5


def test_a_declared_length_past_the_bound_is_not_read() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return _answer(200, headers={"content-length": "600000000"})

    answer = _run(handler, HttpRequest(method="GET", target="https://hs.example/x"), max_body_bytes=10)
    assert answer is not None and len(answer.body) == 11


@settings(max_examples=40, deadline=None)
@given(size=st.integers(0, 5_000), bound=st.integers(0, 3_000), chunk=st.integers(1, 700), declared=st.booleans())
def test_a_body_is_read_whole_or_to_one_byte_past_the_bound(size: int, bound: int, chunk: int, declared: bool) -> None:
    body = bytes(i % 251 for i in range(size))

    def handler(request: httpx.Request) -> httpx.Response:
        pieces = [body[i : i + chunk] for i in range(0, size, chunk)]
        headers = {"content-length": str(size)} if declared else {}
        return httpx.Response(200, headers=headers, stream=httpx.ByteStream(b"".join(pieces)))

    answer = _run(handler, HttpRequest(method="GET", target="https://hs.example/x"), max_body_bytes=bound)
    assert answer is not None
    if size <= bound:
        assert answer.body == body
    else:
        # One byte past the bound: enough for every size check in the core to fail, and no more. A declared length
        # past the bound is not read at all: the bytes stand in for a body nobody will parse.
        assert answer.body == (b"\0" * (bound + 1) if declared else body[: bound + 1])


def test_a_trickled_answer_ends_at_the_deadline() -> None:
    with serving(Faults(trickle={"/slow"})) as server:

        async def go() -> tuple[HttpResponse | None, float]:
            async with httpx.AsyncClient() as http:
                transport = rn.Transport(http, rn.TransportOptions(allow_http=True, retries=0))
                start = time.monotonic()
                answer = await transport.perform(
                    HttpRequest(method="GET", target=server.base_url + "/slow"), deadline_ms=now_ms() + 1_500
                )
                return answer, time.monotonic() - start

        answer, took_s = asyncio.run(go())
        assert answer is None and 1.4 < took_s < 3


def _flaky(failures: int, seen: list[httpx.Request]) -> Callable[[httpx.Request], httpx.Response]:
    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if len(seen) <= failures:
            return _answer(503)
        return _answer(200, json_body={"ok": True})

    return handler


def test_5xx_is_retried_with_back_off_except_on_the_rendezvous() -> None:
    seen: list[httpx.Request] = []
    answer = _run(_flaky(2, seen), HttpRequest(method="GET", target="https://hs.example/_matrix/client/versions"))
    assert answer is not None and answer.status == 200 and len(seen) == 3
    seen.clear()
    rendezvous = "https://hs.example/_matrix/client/unstable/io.element.msc4388/rendezvous/abc"
    answer = _run(_flaky(2, seen), HttpRequest(method="GET", target=rendezvous))
    assert answer is not None and answer.status == 503 and len(seen) == 1  # the rendezvous machine backs off itself
    seen.clear()
    answer = _run(_flaky(9, seen), HttpRequest(method="GET", target="https://hs.example/x"), retries=2)
    assert answer is not None and answer.status == 503 and len(seen) == 3


def test_transport_errors_are_retried_then_reported_as_none() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        raise httpx.ConnectError("refused")

    assert _run(handler, HttpRequest(method="GET", target="https://hs.example/x")) is None
    assert len(seen) == 4


def test_plain_http_is_one_switch_and_tokens_go_only_where_asked() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return _answer(200)

    assert _run(handler, HttpRequest(method="GET", target="http://hs.example/x")) is None and not seen
    assert _run(handler, HttpRequest(method="GET", target="http://hs.example/x"), allow_http=True) is not None
    _run(handler, HttpRequest(method="GET", target="https://hs.example/x", authenticated=True))
    _run(handler, HttpRequest(method="GET", target="https://hs.example/y"))
    assert seen[-2].headers["authorization"] == "Bearer t" and "authorization" not in seen[-1].headers
    assert seen[-1].headers["accept-encoding"] == "identity"


def test_connect_to_and_loopback_names_under_allow_http() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return _answer(200)

    mapped = {"matrix.example": "http://127.0.0.1:8448"}
    _run(handler, HttpRequest(method="GET", target="https://matrix.example/a?b=c"), connect_to=mapped)
    assert str(seen[-1].url) == "http://127.0.0.1:8448/a?b=c" and seen[-1].headers["host"] == "matrix.example"
    _run(handler, HttpRequest(method="GET", target="https://127.0.0.1:8008/.well-known/matrix/client"), allow_http=True)
    assert str(seen[-1].url) == "http://127.0.0.1:8008/.well-known/matrix/client"
    _run(handler, HttpRequest(method="GET", target="https://hs.example/z"), allow_http=True)
    assert str(seen[-1].url) == "https://hs.example/z"  # only loopback names


def _server(
    versions: Mapping[str, object], metadata: Mapping[str, object] | None, *, stable: bool = True
) -> Callable[[httpx.Request], httpx.Response]:
    def handler(request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path == "/.well-known/matrix/client":
            return _answer(200, json_body={"m.homeserver": {"base_url": "https://matrix.hs.example/"}})
        if path == "/_matrix/client/versions":
            return _answer(200, json_body=versions)
        if (
            path.endswith("/auth_metadata")
            and metadata is not None
            and (stable == path.startswith("/_matrix/client/v1"))
        ):
            return _answer(200, json_body=metadata)
        return _answer(404, json_body={"errcode": "M_UNRECOGNIZED"})

    return handler


def _discover(handler: Callable[[httpx.Request], httpx.Response]) -> rn.DiscoveredServer:
    async def go() -> rn.DiscoveredServer:
        async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
            transport = rn.Transport(http, rn.TransportOptions(retries=0))
            return await rn.discover(transport, "hs.example", deadline_ms=now_ms() + 5_000)

    return asyncio.run(go())


METADATA: dict[str, object] = {
    "issuer": "https://auth.hs.example/",
    "token_endpoint": "https://auth.hs.example/token",
    "device_authorization_endpoint": "https://auth.hs.example/device",
    "grant_types_supported": ["authorization_code", "urn:ietf:params:oauth:grant-type:device_code"],
}
QR_VERSIONS: dict[str, object] = {"versions": ["v1.15"], "unstable_features": {"org.matrix.msc4108": True}}


def test_discovery_finds_the_server_and_its_protocols() -> None:
    found = _discover(_server(QR_VERSIONS, METADATA))
    assert (found.server_name, found.base_url) == ("hs.example", "https://matrix.hs.example")
    assert found.protocols == (DEVICE_AUTHORIZATION_GRANT,) and found.token_endpoint == "https://auth.hs.example/token"
    unstable = _discover(_server(QR_VERSIONS, METADATA, stable=False))  # MSC2965's path on older servers
    assert unstable.protocols == (DEVICE_AUTHORIZATION_GRANT,)
    without_grant = {**METADATA, "grant_types_supported": ["authorization_code"]}
    assert _discover(_server(QR_VERSIONS, without_grant)).protocols == ()


def test_a_server_without_sign_in_with_qr_is_refused_before_anything_else() -> None:
    with pytest.raises(rn.DiscoveryError, match="does not offer sign-in with QR code"):
        _discover(_server({"versions": ["v1.15"], "unstable_features": {"org.matrix.msc4108": False}}, METADATA))
    with pytest.raises(rn.DiscoveryError, match=r"no OAuth 2\.0 server metadata"):
        _discover(_server(QR_VERSIONS, None))
    with pytest.raises(rn.DiscoveryError, match=r"^\.well-known: "):
        _discover(lambda request: _answer(200, json_body={"m.homeserver": 1}))
