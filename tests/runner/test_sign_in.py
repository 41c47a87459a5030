"""Whole sign-ins between two runners over real HTTP against ``qrlogin testserver``: every generation, both QR
directions; the new device's token then works (``whoami``), its device is listed, and its tokens refresh. The
synchronous wrappers do the same from two threads."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

import pytest

from qrlogin import qr
from qrlogin import runner as rn
from qrlogin._secret import Secret
from qrlogin.sim.world import user_secrets
from tests.runner.pairing import options, sign_in
from tests.runner.testserver import LocalServer, running_testserver

pytest.importorskip("uvicorn")


@pytest.fixture(scope="module")
def server() -> Iterator[LocalServer]:
    with running_testserver("--auto-approve") as running:
        yield running


@pytest.mark.parametrize("generation", list(qr.Generation))
@pytest.mark.parametrize("new_shows", [True, False], ids=["new-shows", "existing-shows"])
def test_sign_in_between_two_runners(server: LocalServer, generation: qr.Generation, new_shows: bool) -> None:
    device_id = f"RUN{generation.name}{'N' if new_shows else 'E'}"
    token = server.password_login(f"LAPTOP{device_id}")
    pair = asyncio.run(sign_in(server.base_url, token, generation, new_shows=new_shows, device_id=device_id))
    new, existing = pair.new, pair.existing
    assert isinstance(new, rn.SignInResult) and isinstance(existing, rn.SignInResult), pair
    assert (new.outcome, existing.outcome) == ("success", "success")
    assert new.user_id == existing.user_id == server.user_id
    assert new.device_id == existing.device_id == device_id
    assert new.base_url == server.base_url and new.client_id and new.token_endpoint
    assert new.secrets == user_secrets("alice")
    assert new.access_token is not None and new.refresh_token is not None
    assert server.whoami(new.access_token.value.decode()) == {"user_id": server.user_id, "device_id": device_id}
    assert device_id in server.device_ids(token)
    assert "Secret(<" in repr(new) and new.access_token.value.decode() not in repr(new)


def test_tokens_refresh(server: LocalServer) -> None:
    token = server.password_login("LAPTOPREFRESH")
    pair = asyncio.run(sign_in(server.base_url, token, qr.Generation.V3, new_shows=True, device_id="REFRESHED"))
    assert isinstance(pair.new, rn.SignInResult) and pair.new.succeeded

    async def refreshed() -> rn.SignInResult:
        import httpx

        async with httpx.AsyncClient() as http:
            transport = rn.Transport(http, rn.TransportOptions(allow_http=True))
            assert isinstance(pair.new, rn.SignInResult)
            return await rn.refresh(transport, pair.new, deadline_ms=rn.transport.now_ms() + 10_000)

    fresh = asyncio.run(refreshed())
    assert fresh.access_token is not None and fresh.access_token != pair.new.access_token
    assert server.whoami(fresh.access_token.value.decode())["device_id"] == "REFRESHED"


def test_the_synchronous_wrappers_sign_in_from_two_threads(server: LocalServer) -> None:
    token = server.password_login("LAPTOPSYNC")
    existing_user, new_user = rn.ScriptedUser(), rn.ScriptedUser()
    payloads: list[bytes] = []
    shown = threading.Event()
    results: dict[str, rn.SignInResult] = {}

    def show_qr(payload: bytes, code: qr.QrCode) -> None:
        payloads.append(payload)
        shown.set()

    existing_user.show_qr = show_qr  # type: ignore[method-assign]
    typed: list[str] = []
    new_user.show_check_code = typed.append  # type: ignore[method-assign,assignment]

    async def ask() -> str:
        while not typed:
            await asyncio.sleep(0.05)
        return typed[0]

    existing_user.ask_check_code = ask  # type: ignore[method-assign]

    def link() -> None:
        results["existing"] = rn.link_sync(
            server.base_url, existing_user, access_token=Secret(token.encode()), secrets=user_secrets("alice"),
            generation=qr.Generation.V1, options=options(),
        )  # fmt: skip

    def login() -> None:
        assert shown.wait(20)
        results["new"] = rn.login_sync(
            None, new_user, qr_payload=payloads[0], generation=qr.Generation.V1, device_id="SYNC", options=options()
        )

    threads = [threading.Thread(target=link), threading.Thread(target=login)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert results["new"].outcome == results["existing"].outcome == "success"
    assert results["new"].device_id == "SYNC"
