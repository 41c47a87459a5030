"""``qrlogin serve``'s per-client limits over real HTTP: whose address counts, with and without a trusted proxy."""

from __future__ import annotations

import httpx
import pytest

from qrlogin.rendezvous.server import V3_UNSTABLE_PREFIX
from tests.peers import run_qrlogin

pytestmark = pytest.mark.interop

ONE_CREATE = ("--create-rate", "0.01", "--create-burst", "1")


def create(base: str, forwarded_for: str) -> int:
    answer = httpx.post(base + V3_UNSTABLE_PREFIX, json={"data": "x"}, headers={"x-forwarded-for": forwarded_for})
    return answer.status_code


def test_x_forwarded_for_is_ignored_unless_the_peer_is_a_trusted_proxy() -> None:
    with run_qrlogin(*ONE_CREATE) as base:
        # The peer (127.0.0.1) is the client: a forged header does not buy a fresh bucket.
        assert [create(base, "192.0.2.1"), create(base, "192.0.2.2")] == [200, 429]
    with run_qrlogin(*ONE_CREATE, "--trusted-proxy", "127.0.0.1") as base:
        # Behind the trusted proxy, the forwarded address is the client.
        assert [create(base, "192.0.2.1"), create(base, "192.0.2.2"), create(base, "192.0.2.1")] == [200, 200, 429]


def test_limits_can_be_turned_off() -> None:
    with run_qrlogin("--create-rate", "0", "--create-burst", "1") as base:
        assert {create(base, "192.0.2.1") for _ in range(5)} == {200}
