"""Replay spec_vectors/rendezvous_api.json (language-neutral request/response transcripts) against the server core."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from qrlogin.http import HttpRequest, HttpResponse
from qrlogin.rendezvous import ApiGeneration
from qrlogin.rendezvous.server import InMemoryStore, Mount, RendezvousServer, ServerConfig

VECTORS = json.loads(
    (Path(__file__).resolve().parents[2] / "spec_vectors" / "rendezvous_api.json").read_text(encoding="utf-8")
)
BASE_NOW_MS = 1_700_000_000_000


def _server() -> RendezvousServer:
    spec = VECTORS["server"]
    mounts = tuple(
        Mount(prefix=m["prefix"], generations=frozenset(ApiGeneration(g) for g in m["generations"]), stable=m["stable"])
        for m in spec["mounts"]
    )
    config = ServerConfig(mounts=mounts, ttl_ms=spec["ttl_ms"], max_sessions=spec["max_sessions"])
    return RendezvousServer(config, InMemoryStore())


def _fill(value: Any, captured: dict[str, str]) -> Any:
    if isinstance(value, str):
        for name, text in captured.items():
            value = value.replace("${" + name + "}", text)
        return value
    if isinstance(value, dict):
        return {key: _fill(item, captured) for key, item in value.items()}
    return value


def _request(spec: dict[str, Any]) -> HttpRequest:
    headers = tuple(spec.get("headers", {}).items())
    body = json.dumps(spec["json"]).encode() if "json" in spec else spec.get("body_text", "").encode()
    return HttpRequest(method=spec["method"], target=spec["path"], headers=headers, body=body)


def _check(expect: dict[str, Any], response: HttpResponse) -> None:
    assert response.status == expect["status"], response
    content = json.loads(response.body) if response.header("content-type") == "application/json" else None
    if "errcode" in expect:
        assert content is not None and content["errcode"] == expect["errcode"]
    for name, value in expect.get("headers", {}).items():
        assert response.header(name) == value, name
    for name, value in expect.get("headers_not", {}).items():
        assert response.header(name) not in (None, value), name
    for name in expect.get("headers_present", []):
        assert response.header(name) is not None, name
    if "body_text" in expect:
        assert response.body.decode() == expect["body_text"]
    if "json_equals" in expect:
        wanted = expect["json_equals"]
        assert content is not None
        actual = {k: v for k, v in content.items() if k != "error" or "error" in wanted}
        assert actual == wanted
    for key, value in expect.get("json_includes", {}).items():
        assert content is not None and content[key] == value, key
    for key, value in expect.get("json_not", {}).items():
        assert content is not None and content[key] != value, key
    for key in expect.get("json_keys", []):
        assert content is not None and key in content, key


def _capture(how: str, response: HttpResponse) -> str:
    kind, _, name = how.partition(":")
    if kind == "header":
        value = response.header(name)
        assert value is not None
        return value
    content = json.loads(response.body)
    if kind == "json_url_path":
        return str(urlsplit(content[name]).path)
    return str(content[name])


@pytest.mark.parametrize("case", VECTORS["cases"], ids=[c["name"] for c in VECTORS["cases"]])
def test_vector(case: dict[str, Any]) -> None:
    server = _server()
    captured: dict[str, str] = {}
    for step in case["steps"]:
        spec = _fill(step["request"], captured)
        response = server.respond(_request(spec), now_ms=BASE_NOW_MS + spec["now_ms"], entropy=os.urandom(32))
        expect = _fill(step["expect"], captured)
        if "expires_ts" in expect.get("json_includes", {}) or "expires_ts" in expect.get("json_equals", {}):
            for key in ("json_includes", "json_equals"):
                if "expires_ts" in expect.get(key, {}):
                    expect[key] = {**expect[key], "expires_ts": BASE_NOW_MS + expect[key]["expires_ts"]}
        _check(expect, response)
        for name, how in step.get("capture", {}).items():
            captured[name] = _capture(how, response)


def test_vectors_have_provenance() -> None:
    assert VECTORS["_provenance"]["derived_from"]
    assert {c["generation"] for c in VECTORS["cases"]} == {"v1", "v2", "v3"}
