"""Replays the language-neutral homeserver transcripts in spec_vectors/homeserver_*.json (format inside each file)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from qrlogin.homeserver import HttpRequest, add_user, approve_user_code, deny_user_code, handle, new_homeserver
from tests.vectors import SPEC_VECTORS

VECTORS = sorted(SPEC_VECTORS.glob("homeserver_*.json"))


def substitute(value: Any, captured: dict[str, str]) -> Any:
    if isinstance(value, str):
        for name, text in captured.items():
            value = value.replace("${" + name + "}", text)
        return value
    if isinstance(value, list):
        return [substitute(item, captured) for item in value]
    if isinstance(value, dict):
        return {key: substitute(item, captured) for key, item in value.items()}
    return value


def build(spec: dict[str, Any]) -> HttpRequest:
    headers = tuple(spec.get("headers", {}).items())
    if "form" in spec:
        request = HttpRequest.form(spec["path"], spec["form"])
        headers = request.headers + headers
        return HttpRequest(method=spec["method"], target=request.target, headers=headers, body=request.body)
    if "json" in spec:
        body = json.dumps(spec["json"]).encode()
        headers = (("content-type", "application/json"), *headers)
        return HttpRequest(method=spec["method"], target=spec["path"], headers=headers, body=body)
    return HttpRequest(method=spec["method"], target=spec["path"], headers=headers)


@pytest.mark.parametrize("path", VECTORS, ids=[path.name for path in VECTORS])
def test_transcript(path: Path) -> None:
    vector = json.loads(path.read_text())
    assert vector["_provenance"]["derived_from"]
    server = vector["server"]
    hs = new_homeserver(server_name=server["server_name"], base_url=server["base_url"], seed=path.name.encode())
    for user in vector["users"]:
        hs, _ = add_user(hs, user["localpart"], user["password"])
    captured: dict[str, str] = {}
    for index, raw_step in enumerate(vector["steps"]):
        step = substitute(raw_step, captured)
        where = f"step {index}: {step['section']}"
        if "action" in step:
            if step["action"] == "approve":
                hs, result = approve_user_code(hs, step["user_code"], step["user_id"], now_ms=step["now_ms"])
            else:
                hs, result = deny_user_code(hs, step["user_code"], now_ms=step["now_ms"])
            assert result.value == step["result"], where
            continue
        hs, response = handle(hs, build(step["request"]), now_ms=step["now_ms"])
        expected = step["response"]
        body = response.json()
        assert response.status == expected["status"], (where, body)
        for name, value in expected.get("headers", {}).items():
            assert response.header(name) == value, where
        if "json_equals" in expected:
            assert body == expected["json_equals"], where
        for key, value in expected.get("json_includes", {}).items():
            assert body.get(key) == value, (where, key, body)
        for key in expected.get("json_keys", []):
            assert key in body, (where, key)
        for key in expected.get("json_absent", []):
            assert key not in body, (where, key)
        for key, values in expected.get("json_contains_in_list", {}).items():
            assert set(values) <= set(body[key]), (where, key)
        if "json_device_ids" in expected:
            assert {device["device_id"] for device in body["devices"]} == set(expected["json_device_ids"]), where
        for name, key in expected.get("capture", {}).items():
            captured[name] = body[key]
    assert captured, "a transcript that captures nothing exercises no generated value"
