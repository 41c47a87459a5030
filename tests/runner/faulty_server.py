"""The homeserver model on uvicorn in this process, behind an ASGI layer that misbehaves on request.

:class:`FaultyApp` wraps :class:`~qrlogin.adapters.homeserver_asgi.HomeserverApp` and, for requests whose path
contains a given text, answers 503 a number of times, streams an endless body, or trickles one byte a second; all
other requests reach the model. :func:`serving` runs it on a free loopback port in a thread and stops it after.
:func:`live_sessions` counts the rendezvous sessions the model still holds.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import uvicorn

from qrlogin import homeserver as hsm
from qrlogin.adapters.homeserver_asgi import HomeserverApp
from qrlogin.cli.testserver import auto_approver
from qrlogin.homeserver.rendezvous import RendezvousStore, install_rendezvous
from tests.runner.testserver import PASSWORD


@dataclass
class Faults:
    """What goes wrong, by path substring."""

    unavailable: dict[str, int] = field(default_factory=dict)  # answer 503 this many times
    endless: set[str] = field(default_factory=set)  # 200 with a body that never ends
    trickle: set[str] = field(default_factory=set)  # 200 with a declared body sent one byte a second
    seen: list[tuple[str, str, int]] = field(default_factory=list)  # (method, path, status) of what was answered


class FaultyApp:
    def __init__(self, app: HomeserverApp, faults: Faults) -> None:
        self.app = app
        self.faults = faults

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        faults = self.faults
        for text, left in faults.unavailable.items():
            if text in path and left > 0:
                faults.unavailable[text] = left - 1
                faults.seen.append((scope["method"], path, 503))
                body = json.dumps({"errcode": "M_UNKNOWN", "error": "try again"}).encode()
                await send(
                    {"type": "http.response.start", "status": 503, "headers": [(b"content-type", b"application/json")]}
                )
                await send({"type": "http.response.body", "body": body})
                return
        if any(text in path for text in faults.endless):
            faults.seen.append((scope["method"], path, 200))
            await send(
                {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]}
            )
            chunk = b" " * 65_536
            for _ in range(10_000):  # 655 MB if anyone read it all
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b"{}"})
            return
        if any(text in path for text in faults.trickle):
            faults.seen.append((scope["method"], path, 200))
            headers = [(b"content-type", b"application/json"), (b"content-length", b"60")]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            for _ in range(59):
                await send({"type": "http.response.body", "body": b" ", "more_body": True})
                await asyncio.sleep(1)
            await send({"type": "http.response.body", "body": b"{"})
            return
        await self.app(scope, receive, send)


@dataclass(frozen=True)
class Running:
    base_url: str
    server_name: str
    app: HomeserverApp
    faults: Faults

    @property
    def user_id(self) -> str:
        return f"@alice:{self.server_name}"

    def password_login(self, device_id: str) -> str:
        login = {"type": "m.login.password", "user": "alice", "password": PASSWORD, "device_id": device_id}
        token = httpx.post(f"{self.base_url}/_matrix/client/v3/login", json=login).json()["access_token"]
        assert isinstance(token, str)
        return token


def live_sessions(app: HomeserverApp) -> int:
    store = app.hs.rendezvous
    assert isinstance(store, RendezvousStore)
    now = time.time_ns() // 1_000_000
    return sum(1 for session in store.sessions.values() if session.is_live(now))


@contextmanager
def serving(
    faults: Faults | None = None, *, auto_approve: bool = True, grant_expires_in_s: int = 600
) -> Iterator[Running]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    port = sock.getsockname()[1]
    server_name, base_url = f"127.0.0.1:{port}", f"http://127.0.0.1:{port}"
    hs = hsm.new_homeserver(
        server_name=server_name, base_url=base_url, seed=os.urandom(32), poll_interval_s=1,
        grant_expires_in_s=grant_expires_in_s,
    )  # fmt: skip
    hs = install_rendezvous(hs, seed=os.urandom(32))
    hs, user_id = hsm.add_user(hs, "alice", PASSWORD)
    app = HomeserverApp(hs, after=auto_approver(user_id) if auto_approve else None)
    faults = faults or Faults()
    config = uvicorn.Config(FaultyApp(app, faults), log_level="warning", lifespan="off", timeout_graceful_shutdown=1)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield Running(base_url=base_url, server_name=server_name, app=app, faults=faults)
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        sock.close()
