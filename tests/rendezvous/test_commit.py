"""A read prepared before a concurrent write and committed after it is recomputed, never answered stale.

Found by tests/rendezvous/test_linearizable.py (hypothesis): ``RendezvousServer.commit`` accepted every attempt that
wrote nothing without looking at the store, so a GET could return the payload a concurrent PUT had just replaced.
"""

from __future__ import annotations

import json

from qrlogin.http import HttpRequest
from qrlogin.rendezvous.server import V3_UNSTABLE_PREFIX, Access, InMemoryStore, RendezvousServer, ServerConfig, plan


def test_stale_read_is_not_committed() -> None:
    server = RendezvousServer(ServerConfig(), InMemoryStore())
    created = server.respond(
        HttpRequest(method="POST", target=V3_UNSTABLE_PREFIX, headers=(("content-type", "application/json"),),
                body=b'{"data":"first"}'),
        now_ms=0, entropy=bytes(range(32)),
    )  # fmt: skip
    content = json.loads(created.body)
    target = f"{V3_UNSTABLE_PREFIX}/{content['id']}"
    get = HttpRequest(method="GET", target=target)
    put = HttpRequest(
        method="PUT", target=target, headers=(("content-type", "application/json"),),
        body=json.dumps({"sequence_token": content["sequence_token"], "data": "second"}).encode(),
    )  # fmt: skip
    get_step, put_step = plan(server.config, get), plan(server.config, put)
    assert isinstance(get_step, Access) and isinstance(put_step, Access)
    read = server.prepare(get_step, get, now_ms=1, entropy=bytes(32))
    write = server.prepare(put_step, put, now_ms=1, entropy=bytes([1]) * 32)
    assert server.commit(write)
    assert not server.commit(read)  # the session changed since the read: the caller must prepare again
    again = server.prepare(get_step, get, now_ms=2, entropy=bytes(32))
    assert server.commit(again) and json.loads(again.response.body)["data"] == "second"
    assert json.loads(server.respond(get, now_ms=3, entropy=bytes(32)).body)["data"] == "second"
