"""The front app in-process: mounted under a prefix inside a Starlette application, raw-path routing, metrics."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Coroutine
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Mount, Route

from qrlogin.adapters.asgi import Scope, create_app, route_path
from qrlogin.adapters.front import FrontApp, Metrics
from qrlogin.rendezvous.server import V1_V2_UNSTABLE_PREFIX, V3_UNSTABLE_PREFIX, ServerConfig

JSON = {"content-type": "application/json"}


def front(config: ServerConfig | None = None) -> FrontApp:
    config = config or ServerConfig()
    app = create_app(config)
    store: Any = app.server.store
    return FrontApp(app, prefixes=[m.prefix for m in config.mounts], metrics=Metrics(live_sessions=store.__len__))


def run(test: Callable[[httpx.AsyncClient], Coroutine[Any, Any, None]], app: Any) -> None:
    async def main() -> None:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://rz.test") as client:
            await test(client)

    asyncio.run(main())


def test_mounted_under_a_prefix_in_starlette() -> None:
    rendezvous = front(ServerConfig(public_base_url="http://rz.test/rz"))

    async def home(request: Request) -> PlainTextResponse:
        return PlainTextResponse("the host application")

    host = Starlette(routes=[Route("/", home), Mount("/rz", app=rendezvous)])

    async def exercise(client: httpx.AsyncClient) -> None:
        assert (await client.get("/")).text == "the host application"
        # The collection path is exactly the mount's prefix: no trailing-slash redirect stands in the way.
        created = await client.post(f"/rz{V3_UNSTABLE_PREFIX}", json={"data": "hi"}, follow_redirects=False)
        assert created.status_code == 200, created.text
        session = created.json()
        read = await client.get(f"/rz{V3_UNSTABLE_PREFIX}/{session['id']}", follow_redirects=False)
        assert read.status_code == 200 and read.json()["data"] == "hi"
        assert read.headers["x-content-type-options"] == "nosniff"
        discovery = await client.get(f"/rz{V3_UNSTABLE_PREFIX}", follow_redirects=False)
        assert discovery.json() == {"create_available": True}
        # v1 session URLs carry the mount point through the public base URL.
        v1 = await client.post(f"/rz{V1_V2_UNSTABLE_PREFIX}", content=b"p", headers={"content-type": "text/plain"})
        url = v1.json()["url"]
        assert url.startswith(f"http://rz.test/rz{V1_V2_UNSTABLE_PREFIX}/")
        assert (await client.get(url)).content == b"p"
        assert (await client.get("/rz/health")).json() == {"status": "ok"}
        metrics = (await client.get("/rz/metrics")).text
        assert "qrlogin_rendezvous_live_sessions 2.0" in metrics
        # Outside the mount nothing of the rendezvous answers.
        assert (await client.get(f"{V3_UNSTABLE_PREFIX}/{session['id']}")).status_code == 404

    run(exercise, host)


def test_mounted_at_the_rendezvous_prefix_itself() -> None:
    """A host that routes only the rendezvous path to the app still reaches the collection without a redirect."""
    rendezvous = front()
    host = Starlette(routes=[Mount("/matrix", app=rendezvous)])

    async def exercise(client: httpx.AsyncClient) -> None:
        created = await client.post(f"/matrix{V3_UNSTABLE_PREFIX}", json={"data": "x"}, follow_redirects=False)
        assert created.status_code == 200

    run(exercise, host)


@pytest.mark.parametrize(
    ("scope", "expected"),
    [
        ({"path": "/a/b%2Fc", "raw_path": b"/a/b%2Fc", "root_path": ""}, "/a/b%2Fc"),
        ({"path": "/a/b/c", "raw_path": b"/a/b%2Fc", "root_path": ""}, "/a/b%2Fc"),
        ({"path": "/rz/a/b/c", "raw_path": b"/rz/a/b%2Fc", "root_path": "/rz"}, "/a/b%2Fc"),
        ({"path": "/rz/a", "root_path": "/rz"}, "/a"),
        ({"path": "/a b", "root_path": ""}, "/a%20b"),
        ({"path": "/rza", "raw_path": b"/rza", "root_path": "/rz"}, "/rza"),
    ],
)
def test_route_path_is_the_raw_path_below_the_mount(scope: Scope, expected: str) -> None:
    assert route_path(scope) == expected


def test_route_labels_are_bounded() -> None:
    app = front()
    assert app.route(V3_UNSTABLE_PREFIX) == V3_UNSTABLE_PREFIX
    assert app.route(f"{V3_UNSTABLE_PREFIX}/abc") == V3_UNSTABLE_PREFIX + "/{id}"
    assert app.route(f"{V3_UNSTABLE_PREFIX}x/abc") == "other"
    assert app.route("/anything/else") == "other"
    assert app.route("/health") == "/health"


def test_unknown_methods_share_one_label() -> None:
    app = front()

    async def exercise(client: httpx.AsyncClient) -> None:
        for method in ("BREW", "WHEN", "PROPFIND"):
            await client.request(method, V3_UNSTABLE_PREFIX)

    run(exercise, app)
    exposition = app.metrics.exposition().decode()
    series = [line for line in exposition.splitlines() if line.startswith("qrlogin_rendezvous_requests_total{")]
    assert [line for line in series if 'method="other"' in line] == [
        f'qrlogin_rendezvous_requests_total{{method="other",route="{V3_UNSTABLE_PREFIX}",status="405"}} 3.0'
    ]
    assert json.dumps("BREW") not in exposition
