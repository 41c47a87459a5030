"""Interop on loopback: the httpx client driver and check-server against ``qrlogin serve`` and a real Synapse 1.163.

Synapse serves v1 and v3 (nothing released serves v2); ``qrlogin serve`` serves all three. The conformance checker
must pass our server cleanly and must report Synapse's two known deviations (docs/rendezvous.md): the v1 ETag is
a hash of the body, and the v3 DELETE answers ``[]``.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Iterator

import httpx
import pytest

from qrlogin.adapters.conformance import Finding, check_server
from qrlogin.adapters.httpx_client import RendezvousSession
from qrlogin.rendezvous import ApiGeneration
from qrlogin.rendezvous import client as c
from qrlogin.rendezvous.server import V1_V2_UNSTABLE_PREFIX, V3_UNSTABLE_PREFIX
from tests.peers import run_qrlogin, run_synapse

pytestmark = pytest.mark.interop

V1, V2, V3 = ApiGeneration.V1, ApiGeneration.V2, ApiGeneration.V3
PREFIX = {V1: V1_V2_UNSTABLE_PREFIX, V2: V1_V2_UNSTABLE_PREFIX, V3: V3_UNSTABLE_PREFIX}


@pytest.fixture(scope="module")
def qrlogin_url() -> Iterator[str]:
    with run_qrlogin() as base:
        yield base


@pytest.fixture(scope="module")
def qrlogin_short_ttl_url() -> Iterator[str]:
    with run_qrlogin("--ttl", "2") as base:
        yield base


@pytest.fixture(scope="module")
def synapse_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with run_synapse(tmp_path_factory.mktemp("synapse")) as base:
        yield base


def check_cli(url: str, *args: str) -> tuple[int, str]:
    done = subprocess.run(
        [sys.executable, "-m", "qrlogin", "check-server", url, *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return done.returncode, done.stdout


def by_name(findings: list[Finding]) -> dict[str, Finding]:
    return {f.check: f for f in findings}


# ------------------------------------------------------------------------------------------------ check-server


@pytest.mark.parametrize("generation", [V1, V2, V3])
def test_check_server_passes_qrlogin_serve(qrlogin_url: str, generation: ApiGeneration) -> None:
    status, output = check_cli(qrlogin_url, "--generation", generation.value, "--strict")
    assert status == 0, output
    findings = check_server(qrlogin_url, generation)
    assert all(f.status in ("pass", "skip") for f in findings), findings
    expected_skips = {"expiry"} | (
        {"discovery", "create_available matches POST", "idempotent retry", "navigation refused"}
        if generation is V2
        else set()
    )
    assert {f.check for f in findings if f.status == "skip"} == expected_skips


def test_check_server_expiry_on_qrlogin_serve(qrlogin_short_ttl_url: str) -> None:
    findings = by_name(check_server(qrlogin_short_ttl_url, V3, expiry=True, max_wait_s=10))
    assert findings["expiry"].status == "pass"
    assert findings["create"].status == "warn"  # a 2 s lifetime is outside the 120-300 s the texts ask for


def test_check_server_reports_synapse_v1_etag_hash(synapse_url: str) -> None:
    findings = by_name(check_server(synapse_url, V1))
    identical = findings.pop("token changes on identical write")
    assert identical.status == "warn"
    assert "derived from the body" in identical.detail
    assert findings.pop("expiry").status == "skip"
    assert all(f.status == "pass" for f in findings.values()), findings
    assert check_cli(synapse_url, "--generation", "v1")[0] == 0
    status, output = check_cli(synapse_url, "--generation", "v1", "--strict")
    assert status == 1 and "WARN" in output


def test_check_server_reports_synapse_v3_delete_body(synapse_url: str) -> None:
    findings = by_name(check_server(synapse_url, V3))
    delete = findings.pop("delete")
    assert delete.status == "warn"
    assert "[]" in delete.detail
    assert findings.pop("expiry").status == "skip"
    assert all(f.status == "pass" for f in findings.values()), findings


def test_check_server_fails_on_a_wrong_server(qrlogin_url: str) -> None:
    # v3 checks aimed at the v1/v2 path: the server answers as v2 there, so v3-only behaviour is missing.
    status, output = check_cli(qrlogin_url, "--generation", "v3", "--prefix", V1_V2_UNSTABLE_PREFIX)
    assert status == 1
    assert "FAIL" in output


# -------------------------------------------------------------------------------------------- httpx driver


class LosingTransport(httpx.AsyncBaseTransport):
    """Delivers requests but loses the response of the first PUT (after the server applied it)."""

    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.lost = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        if request.method == "PUT" and self.lost == 0:
            await response.aread()
            self.lost += 1
            raise httpx.ReadTimeout("response lost on purpose", request=request)
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()


async def ping_pong(base: str, generation: ApiGeneration, rounds: int, *, lose_first_put: bool = False) -> None:
    config = c.ClientConfig(
        generation=generation,
        endpoint=base + PREFIX[generation],
        poll_interval_ms=50,
        retry_base_ms=50,
        timeout_ms=30_000,
    )
    transport = LosingTransport() if lose_first_put else None
    async with httpx.AsyncClient(timeout=5.0) as g_http, httpx.AsyncClient(timeout=5.0, transport=transport) as s_http:
        g = await RendezvousSession.create(g_http, config, "")
        assert g.created is not None
        name = g.created.url if generation is V1 else g.created.rendezvous_id
        assert name is not None
        s = RendezvousSession.join(s_http, config, name)
        assert (await s.receive()).data == ""

        async def scanner() -> list[str]:
            seen = []
            for i in range(rounds):
                assert isinstance(await s.send(f"s{i}"), c.ReportWriteConfirmed)
                seen.append((await s.receive()).data)
            return seen

        async def generator() -> list[str]:
            seen = []
            for i in range(rounds):
                seen.append((await g.receive()).data)
                assert isinstance(await g.send(f"g{i}"), c.ReportWriteConfirmed)
            return seen

        s_seen, g_seen = await asyncio.wait_for(asyncio.gather(scanner(), generator()), timeout=60)
        assert g_seen == [f"s{i}" for i in range(rounds)]
        assert s_seen == [f"g{i}" for i in range(rounds)]
        if transport is not None:
            assert transport.lost == 1
        await s.close()
        assert isinstance(s.state, c.SessionClosed)
        with pytest.raises(Exception, match="gone"):
            await asyncio.wait_for(g.receive(), timeout=30)


@pytest.mark.parametrize("generation", [V1, V2, V3])
def test_driver_against_qrlogin_serve(qrlogin_url: str, generation: ApiGeneration) -> None:
    asyncio.run(ping_pong(qrlogin_url, generation, rounds=3))
    asyncio.run(ping_pong(qrlogin_url, generation, rounds=1, lose_first_put=True))


@pytest.mark.parametrize("generation", [V1, V3])
def test_driver_against_synapse(synapse_url: str, generation: ApiGeneration) -> None:
    asyncio.run(ping_pong(synapse_url, generation, rounds=3))
    asyncio.run(ping_pong(synapse_url, generation, rounds=1, lose_first_put=True))
