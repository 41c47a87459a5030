"""What one request to the homeserver model costs with 1, 100 and 10,000 users, devices and sessions, side by side.

The model is an immutable value: a request takes the current homeserver and returns the next one. Its tables are
persistent maps, so a request should cost the same however much the server holds. This script builds one homeserver
per size N, holding N accounts with one signed-in device each, N registered OAuth clients with N pending device
grants, and N live rendezvous sessions, all through ``handle`` as a real server would be filled. It then times each
request kind against each populated value. Because the model is pure, the same request can be answered from the
same value again and again: every sample measures one step at exactly size N, and nothing accumulates between them.

Request kinds: rendezvous create (v3 ``POST``), rendezvous put and get (on a session in the middle of the table),
password login (a new device of an existing user), device authorization (``POST /oauth2/device``), a token poll on
a pending grant, ``whoami`` and ``GET /devices/{id}``. Samples of the sizes are interleaved (round by round, each
round times every kind at every size), and the best round's mean is reported, which removes most scheduling noise
on a shared machine. The baseline is the same request at size 1: the ratio column is cost at N over cost at 1.
It also prints how long filling each size took. About 20 s in all with the defaults; not part of pytest.

    .venv/bin/python benchmarks/homeserver_scaling.py [--rounds 7] [--batch 200] [--sizes 1,100,10000]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

from qrlogin.homeserver import Homeserver, HttpRequest, HttpResponse, add_user, handle, new_homeserver
from qrlogin.homeserver.oauth import DEVICE_AUTHORIZATION_PATH, DEVICE_CODE_GRANT, REGISTRATION_PATH, TOKEN_PATH
from qrlogin.homeserver.rendezvous import install_rendezvous
from qrlogin.rendezvous.server import V3_UNSTABLE_PREFIX

NOW_MS = 1_000_000
SCOPE = "urn:matrix:client:api:* urn:matrix:client:device:"
V3 = "/_matrix/client/v3"


def _ok(response: HttpResponse) -> dict[str, object]:
    if response.status >= 300:
        raise SystemExit(f"unexpected answer while filling the server: {response.status} {response.body[:200]!r}")
    content = response.json()
    assert isinstance(content, dict)
    return content


class Populated:
    """One homeserver holding ``size`` of everything, and a request of each kind aimed at its middle entries."""

    def __init__(self, size: int) -> None:
        start = time.perf_counter()
        hs = new_homeserver(server_name="bench.example", base_url="https://bench.example", seed=b"bench")
        hs = install_rendezvous(hs, seed=b"bench rendezvous", max_sessions=2 * size + 10)
        middle = size // 2
        token = device_id = client_id = device_code = session_id = sequence_token = ""
        for index in range(size):
            hs, _ = add_user(hs, f"user{index}", "pw")
            login = {"type": "m.login.password", "user": f"user{index}", "password": "pw"}
            hs, response = handle(hs, HttpRequest.json("POST", f"{V3}/login", login), now_ms=NOW_MS)
            signed_in = _ok(response)
            client = {"client_uri": "https://client.example", "grant_types": [DEVICE_CODE_GRANT, "refresh_token"]}
            hs, response = handle(hs, HttpRequest.json("POST", REGISTRATION_PATH, client), now_ms=NOW_MS)
            registered = _ok(response)
            form = {"client_id": str(registered["client_id"]), "scope": f"{SCOPE}GRANT{index}"}
            hs, response = handle(hs, HttpRequest.form(DEVICE_AUTHORIZATION_PATH, form), now_ms=NOW_MS)
            granted = _ok(response)
            hs, response = handle(hs, HttpRequest.json("POST", V3_UNSTABLE_PREFIX, {"data": "x"}), now_ms=NOW_MS)
            created = _ok(response)
            if index == middle:
                token, device_id = str(signed_in["access_token"]), str(signed_in["device_id"])
                client_id, device_code = str(registered["client_id"]), str(granted["device_code"])
                session_id, sequence_token = str(created["id"]), str(created["sequence_token"])
        self.size = size
        self.hs: Homeserver = hs
        self.fill_s = time.perf_counter() - start
        session = f"{V3_UNSTABLE_PREFIX}/{session_id}"
        poll = {"grant_type": DEVICE_CODE_GRANT, "device_code": device_code, "client_id": client_id}
        login = {"type": "m.login.password", "user": f"user{middle}", "password": "pw"}
        self.requests: dict[str, HttpRequest] = {
            "rendezvous create": HttpRequest.json("POST", V3_UNSTABLE_PREFIX, {"data": "x"}),
            "rendezvous put": HttpRequest.json("PUT", session, {"sequence_token": sequence_token, "data": "y"}),
            "rendezvous get": HttpRequest.get(session),
            "login": HttpRequest.json("POST", f"{V3}/login", login),
            "device grant": HttpRequest.form(
                DEVICE_AUTHORIZATION_PATH, {"client_id": client_id, "scope": f"{SCOPE}NEWDEVICE"}
            ),
            "token poll": HttpRequest.form(TOKEN_PATH, poll),
            "whoami": HttpRequest.get(f"{V3}/account/whoami", access_token=token),
            "device get": HttpRequest.get(f"{V3}/devices/{device_id}", access_token=token),
        }
        for kind, request in self.requests.items():
            _, response = handle(hs, request, now_ms=NOW_MS + 1)
            if response.status >= 300 and kind != "token poll":
                raise SystemExit(f"{kind} at size {size} answered {response.status}: {response.body[:200]!r}")

    def timer(self, kind: str) -> Callable[[int], float]:
        hs, request = self.hs, self.requests[kind]

        def run(batch: int) -> float:
            start = time.perf_counter()
            for _ in range(batch):
                handle(hs, request, now_ms=NOW_MS + 1)
            return (time.perf_counter() - start) / batch

        return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--batch", type=int, default=200)
    parser.add_argument("--sizes", default="1,100,10000")
    args = parser.parse_args()
    sizes = [int(size) for size in args.sizes.split(",")]
    servers = [Populated(size) for size in sizes]
    for server in servers:
        print(f"filled size {server.size:>6}: {server.fill_s:7.2f} s ({server.fill_s / server.size * 1e6:.0f} us each)")
    kinds = list(servers[0].requests)
    best: dict[tuple[str, int], float] = {}
    for _ in range(args.rounds):
        for kind in kinds:
            for server in servers:
                seconds = server.timer(kind)(args.batch)
                key = (kind, server.size)
                best[key] = min(best.get(key, seconds), seconds)
    header = f"{'request':<18}" + "".join(f"{f'N={size}':>12}" for size in sizes)
    header += "".join(f"{f'{size}/{sizes[0]}':>12}" for size in sizes[1:])
    print(f"\nmicroseconds per request (best of {args.rounds} rounds of {args.batch}); ratio to N={sizes[0]}")
    print(header)
    for kind in kinds:
        cells = "".join(f"{best[(kind, size)] * 1e6:12.1f}" for size in sizes)
        ratios = "".join(f"{best[(kind, size)] / best[(kind, sizes[0])]:12.2f}" for size in sizes[1:])
        print(f"{kind:<18}{cells}{ratios}")


if __name__ == "__main__":
    main()
