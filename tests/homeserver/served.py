"""Serve the homeserver model over loopback HTTP for tests that drive it with a real client or a real browser.

:func:`serve_homeserver` binds a free loopback port first, builds the model with the base URL it will answer as
(the loopback origin itself, or a public name that the client routes to the port), and runs
:class:`~qrlogin.adapters.homeserver_asgi.HomeserverApp` on uvicorn in a thread until the block ends.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pytest

from qrlogin.homeserver import add_user, new_homeserver

uvicorn = pytest.importorskip("uvicorn")
homeserver_asgi = pytest.importorskip("qrlogin.adapters.homeserver_asgi")

START_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class Served:
    loopback: str  # where it listens
    base_url: str  # what it answers as


@contextmanager
def serve_homeserver(
    *, users: dict[str, str], base_url: str | None = None, server_name: str | None = None, **options: Any
) -> Iterator[Served]:
    """Yield a served model with ``users`` (localpart -> password); ``options`` go to ``new_homeserver``."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    loopback = f"http://127.0.0.1:{sock.getsockname()[1]}"
    base = base_url or loopback
    hs = new_homeserver(
        server_name=server_name or base.split("://", 1)[1], base_url=base, seed=b"served homeserver", **options
    )
    for localpart, password in users.items():
        hs, _ = add_user(hs, localpart, password)
    server = uvicorn.Server(uvicorn.Config(homeserver_asgi.HomeserverApp(hs), log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not server.started:
            if time.monotonic() > deadline or not thread.is_alive():
                raise RuntimeError("the served homeserver did not start")
            time.sleep(0.02)
        yield Served(loopback=loopback, base_url=base)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
