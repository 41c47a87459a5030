"""How much the homeserver model costs per request, against the JSON work any HTTP handler must do.

The simulator drives thousands of requests through ``handle``, so its cost per request bounds how many schedules
the exploration can cover. This script runs complete device-grant sign-ins (register a client, authorize a device,
poll, approve, poll for tokens, list devices) through the model, and as a baseline does only the JSON encoding and
decoding of the same request and response bodies in the same process. It prints both times and
their ratio; it asserts nothing.

    .venv/bin/python benchmarks/homeserver_handle.py [sign_ins]
"""

from __future__ import annotations

import json
import sys
import time

from qrlogin.homeserver import HttpRequest, HttpResponse, add_user, approve_user_code, handle, new_homeserver

DEVICE_CODE = "urn:ietf:params:oauth:grant-type:device_code"


def sign_ins(count: int) -> tuple[float, list[tuple[HttpRequest, HttpResponse]]]:
    hs = new_homeserver(server_name="bench.example", base_url="https://bench.example", seed=b"bench")
    hs, user_id = add_user(hs, "alice", "pw")
    login = {"type": "m.login.password", "user": "alice", "password": "pw", "device_id": "EXISTING"}
    hs, response = handle(hs, HttpRequest.json("POST", "/_matrix/client/v3/login", login), now_ms=0)
    token = response.json()["access_token"]
    exchanges: list[tuple[HttpRequest, HttpResponse]] = []
    now = 0

    def send(request: HttpRequest) -> HttpResponse:
        nonlocal hs
        hs, answer = handle(hs, request, now_ms=now)
        exchanges.append((request, answer))
        return answer

    start = time.perf_counter()
    for index in range(count):
        now += 60_000
        client = {"client_uri": "https://c.example", "grant_types": [DEVICE_CODE, "refresh_token"]}
        client_id = send(HttpRequest.json("POST", "/oauth2/registration", client)).json()["client_id"]
        scope = f"urn:matrix:client:api:* urn:matrix:client:device:DEVICE{index:05d}"
        grant = send(HttpRequest.form("/oauth2/device", {"client_id": client_id, "scope": scope})).json()
        poll = HttpRequest.form(
            "/oauth2/token", {"grant_type": DEVICE_CODE, "device_code": grant["device_code"], "client_id": client_id}
        )
        send(poll)
        hs, _ = approve_user_code(hs, grant["user_code"], user_id, now_ms=now)
        now += 5_000
        send(poll)
        send(HttpRequest.get("/_matrix/client/v3/devices", access_token=token))
    return time.perf_counter() - start, exchanges


def json_floor(exchanges: list[tuple[HttpRequest, HttpResponse]]) -> float:
    start = time.perf_counter()
    for request, response in exchanges:
        if request.body and request.header("content-type") == "application/json":
            json.dumps(json.loads(request.body))
        json.dumps(json.loads(response.body), sort_keys=True)
    return time.perf_counter() - start


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    model_s, exchanges = sign_ins(count)
    floor_s = json_floor(exchanges)
    per_request_us = model_s / len(exchanges) * 1e6
    print(f"{count} sign-ins, {len(exchanges)} requests")
    print(f"model:      {model_s * 1000:8.1f} ms  ({per_request_us:.1f} us/request)")
    print(f"JSON floor: {floor_s * 1000:8.1f} ms")
    print(f"ratio:      {model_s / floor_s:8.1f}x")


if __name__ == "__main__":
    main()
