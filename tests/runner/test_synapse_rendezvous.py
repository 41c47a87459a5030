"""The rendezvous leg against Synapse 1.163: two runners sign in with the rendezvous session on Synapse (v1 and v3,
``msc4388_mode: open``) while discovery, the device grant and device management are the homeserver model's, which
Synapse does not serve without an authentication service. Both devices reach "the homeserver" through one httpx
transport that sends rendezvous paths to Synapse and everything else to the model, as a reverse proxy in front of
both would; v1 session URLs name Synapse itself."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from qrlogin import qr
from qrlogin import runner as rn
from qrlogin.sim.world import user_secrets
from tests.peers import run_synapse
from tests.runner.faulty_server import Faults, serving
from tests.runner.pairing import sign_in

pytest.importorskip("uvicorn")
pytestmark = pytest.mark.interop


class RendezvousOnSynapse(httpx.AsyncBaseTransport):
    """Requests to the model whose path is a rendezvous path go to Synapse instead."""

    def __init__(self, model: str, synapse: str, seen: list[str]) -> None:
        self.model = httpx.URL(model)
        self.synapse = httpx.URL(synapse)
        self.seen = seen
        self.inner = httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        if (url.host, url.port) == (self.model.host, self.model.port) and "/rendezvous" in url.path:
            request.url = url.copy_with(host=self.synapse.host, port=self.synapse.port)
            request.headers["host"] = f"{self.synapse.host}:{self.synapse.port}"
        if request.url.port == self.synapse.port:
            self.seen.append(f"{request.method} {request.url.path}")
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


@pytest.fixture(scope="module")
def synapse_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with run_synapse(tmp_path_factory.mktemp("synapse")) as base:
        yield base


@pytest.mark.parametrize("generation", [qr.Generation.V1, qr.Generation.V3])
@pytest.mark.parametrize("new_shows", [True, False], ids=["new-shows", "existing-shows"])
def test_sign_in_with_the_rendezvous_on_synapse(
    synapse_url: str, tmp_path: Path, generation: qr.Generation, new_shows: bool
) -> None:
    seen: list[str] = []
    with serving(Faults()) as model:

        async def run() -> tuple[rn.SignInResult, rn.SignInResult]:
            async with httpx.AsyncClient(transport=RendezvousOnSynapse(model.base_url, synapse_url, seen)) as http:
                pair = await sign_in(
                    model.base_url, model.password_login("LAPTOP"), generation, new_shows=new_shows,
                    device_id="VIASYNAPSE", http=http,
                )  # fmt: skip
            assert isinstance(pair.new, rn.SignInResult) and isinstance(pair.existing, rn.SignInResult), pair
            return pair.new, pair.existing

        new, existing = asyncio.run(run())
    assert (new.outcome, existing.outcome) == ("success", "success")
    assert new.secrets == user_secrets("alice") and new.device_id == "VIASYNAPSE"
    methods = {entry.split(" ", 1)[0] for entry in seen}
    assert {"POST", "GET", "PUT"} <= methods, seen  # the whole ping-pong went through Synapse
    assert all("/rendezvous" in entry for entry in seen)
