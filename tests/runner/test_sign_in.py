"""Whole sign-ins between two runners over real HTTP against ``qrlogin testserver``: every generation, both QR
directions, and the new device's token then works (``whoami``) and its device is listed."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from qrlogin import qr
from qrlogin import runner as rn
from qrlogin._secret import Secret
from qrlogin.sim.world import user_secrets
from tests.runner.testserver import LocalServer, running_testserver

pytest.importorskip("uvicorn")

OPTIONS = rn.RunOptions(timeout_s=30, poll_interval_ms=200, transport=rn.TransportOptions(allow_http=True))


@pytest.fixture(scope="module")
def server() -> Iterator[LocalServer]:
    with running_testserver("--auto-approve") as running:
        yield running


async def _pair(
    server: LocalServer, generation: qr.Generation, *, new_shows: bool, device_id: str
) -> tuple[rn.SignInResult, rn.SignInResult, str]:
    token = server.password_login(f"LAPTOP{device_id}")
    new_user, existing_user = rn.ScriptedUser(), rn.ScriptedUser()
    shown: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
    (new_user if new_shows else existing_user).qr = shown
    # The user reads the code on the scanning device and types it on the one that showed the QR code.
    scanner, shower = (existing_user, new_user) if new_shows else (new_user, existing_user)
    scanner.show_check_code = shower.type_check_code  # type: ignore[method-assign]

    async def new_device() -> rn.SignInResult:
        if new_shows:
            return await rn.login(
                server.base_url, new_user, generation=generation, device_id=device_id, options=OPTIONS
            )
        return await rn.login(
            None, new_user, qr_payload=await shown, generation=generation, device_id=device_id, options=OPTIONS
        )

    async def existing_device() -> rn.SignInResult:
        secrets = user_secrets("alice")
        access = Secret(token.encode())
        if new_shows:
            payload = await shown
            return await rn.link(
                server.base_url, existing_user, access_token=access, secrets=secrets, qr_payload=payload,
                generation=generation, options=OPTIONS,
            )  # fmt: skip
        return await rn.link(
            server.base_url, existing_user, access_token=access, secrets=secrets, generation=generation,
            options=OPTIONS,
        )  # fmt: skip

    new, existing = await asyncio.gather(new_device(), existing_device())
    return new, existing, token


@pytest.mark.parametrize("generation", list(qr.Generation))
@pytest.mark.parametrize("new_shows", [True, False], ids=["new-shows", "existing-shows"])
def test_sign_in_between_two_runners(server: LocalServer, generation: qr.Generation, new_shows: bool) -> None:
    device_id = f"RUN{generation.name}{'N' if new_shows else 'E'}"
    new, existing, token = asyncio.run(_pair(server, generation, new_shows=new_shows, device_id=device_id))
    assert (new.outcome, existing.outcome) == ("success", "success")
    assert new.user_id == existing.user_id == server.user_id
    assert new.device_id == existing.device_id == device_id
    assert new.base_url == server.base_url and new.client_id and new.token_endpoint
    assert new.secrets == user_secrets("alice")
    assert new.access_token is not None and new.refresh_token is not None
    assert server.whoami(new.access_token.value.decode()) == {"user_id": server.user_id, "device_id": device_id}
    assert device_id in server.device_ids(token)
