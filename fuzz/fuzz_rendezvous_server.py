"""Fuzz target: arbitrary requests into the rendezvous server core; only well-formed responses may come out.

Run with atheris (``python fuzz/fuzz_rendezvous_server.py fuzz/corpus/rendezvous_server``; ``scripts/fuzz`` runs every
target for a bounded budget); ``tests/rendezvous/test_fuzz.py`` runs the same :func:`fuzz_one` under hypothesis.

The input bytes choose a method, a path (collection, a live session, an unknown session, garbage), a few headers and
a body, against a server that already holds one session per generation. Whatever comes in, the answer must be a
valid HTTP status and, for every error, a JSON object with a string ``errcode``.
"""

from __future__ import annotations

import json

from qrlogin.http import HttpRequest
from qrlogin.rendezvous import ApiGeneration
from qrlogin.rendezvous.server import (
    STABLE_PREFIX,
    V1_V2_UNSTABLE_PREFIX,
    V3_UNSTABLE_PREFIX,
    InMemoryStore,
    RendezvousServer,
    ServerConfig,
    default_mounts,
)

METHODS = ("GET", "PUT", "POST", "DELETE", "OPTIONS", "PATCH", "HEAD")
HEADER_NAMES = ("content-type", "if-match", "if-none-match", "sec-fetch-mode", "sec-fetch-dest", "host")
HEADER_VALUES = ("text/plain", "application/json", '"0.x"', "*", 'W/"a"', "navigate", "document", "", "a,b")
NOW_MS = 1_700_000_000_000


def _server() -> tuple[RendezvousServer, list[str]]:
    config = ServerConfig(mounts=default_mounts(stable=ApiGeneration.V3), max_sessions=8)
    server = RendezvousServer(config, InMemoryStore())
    paths: list[str] = []
    v1 = server.respond(
        HttpRequest(method="POST", target=V1_V2_UNSTABLE_PREFIX, headers=(("content-type", "text/plain"),), body=b"a"),
        now_ms=NOW_MS,
        entropy=bytes(32),
    )
    paths.append(V1_V2_UNSTABLE_PREFIX + json.loads(v1.body)["url"].split(V1_V2_UNSTABLE_PREFIX, 1)[1])
    for n, prefix in enumerate((V1_V2_UNSTABLE_PREFIX, V3_UNSTABLE_PREFIX, STABLE_PREFIX), start=1):
        created = server.respond(
            HttpRequest(
                method="POST", target=prefix, headers=(("content-type", "application/json"),), body=b'{"data":"b"}'
            ),
            now_ms=NOW_MS,
            entropy=bytes([n]) * 32,
        )
        paths.append(f"{prefix}/{json.loads(created.body)['id']}")
    return server, paths


def fuzz_one(data: bytes) -> None:
    server, sessions = _server()
    view = memoryview(data)
    for _ in range(4):  # a few requests in a row against the same store
        if len(view) < 4:
            return
        method = METHODS[view[0] % len(METHODS)]
        choice = view[1] % (len(sessions) + 4)
        paths = [*sessions, V1_V2_UNSTABLE_PREFIX, V3_UNSTABLE_PREFIX, V3_UNSTABLE_PREFIX + "/nope", "/x"]
        path = paths[choice] if choice < len(paths) else "/"
        header_count = view[2] % 4
        headers = []
        for i in range(header_count):
            key = view[(3 + i) % len(view)]
            headers.append((HEADER_NAMES[key % len(HEADER_NAMES)], HEADER_VALUES[(key // 7) % len(HEADER_VALUES)]))
        length = view[3] * 32
        body = bytes(view[4 : 4 + length])
        view = view[4 + length :]
        now_ms = NOW_MS + (len(view) % 3) * 100_000
        response = server.respond(
            HttpRequest(method=method, target=path, headers=tuple(headers), body=body), now_ms=now_ms, entropy=bytes(32)
        )
        check_response(response.status, response.header("content-type"), response.body)


def check_response(status: int, content_type: str | None, body: bytes) -> None:
    assert 200 <= status <= 599, status
    if status >= 400:
        assert content_type == "application/json"
        content = json.loads(body)
        assert isinstance(content, dict) and isinstance(content.get("errcode"), str), body
    elif content_type == "application/json":
        assert isinstance(json.loads(body), dict)


one_input = fuzz_one  # the atheris entry point


if __name__ == "__main__":  # pragma: no cover - needs atheris
    from atheris_driver import hand_over

    hand_over(__file__)
