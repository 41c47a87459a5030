"""Two runners signing in against one server, the test being both users: it carries the QR payload across and types
the check code the scanning device shows into the device that showed the QR code (or a wrong one)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import httpx

from qrlogin import qr
from qrlogin import runner as rn
from qrlogin._secret import Secret
from qrlogin.sim.world import user_secrets


def options(timeout_s: float = 30, **transport: object) -> rn.RunOptions:
    return rn.RunOptions(
        timeout_s=timeout_s,
        closing_grace_s=7,  # the creator waits 5 s (FINAL_MESSAGE_GRACE_MS) before deleting its session
        poll_interval_ms=200,
        transport=rn.TransportOptions(allow_http=True, **transport),  # type: ignore[arg-type]
    )


@dataclass
class Pair:
    new: rn.SignInResult | BaseException
    existing: rn.SignInResult | BaseException
    new_s: float  # how long each side ran
    existing_s: float


async def sign_in(
    base_url: str,
    token: str,
    generation: qr.Generation,
    *,
    new_shows: bool,
    device_id: str,
    new_user: rn.ScriptedUser | None = None,
    existing_user: rn.ScriptedUser | None = None,
    new_options: rn.RunOptions | None = None,
    existing_options: rn.RunOptions | None = None,
    mistype: bool = False,
    new_cancel: asyncio.Event | None = None,
    existing_cancel: asyncio.Event | None = None,
    http: httpx.AsyncClient | None = None,
) -> Pair:
    new_user = new_user or rn.ScriptedUser()
    existing_user = existing_user or rn.ScriptedUser()
    shown: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
    (new_user if new_shows else existing_user).qr = shown
    scanner, shower = (existing_user, new_user) if new_shows else (new_user, existing_user)

    def relay(code: str) -> None:
        scanner.shown.append(("check_code", code))
        shower.type_check_code(f"{(int(code) + 1) % 100:02d}" if mistype else code)

    scanner.show_check_code = relay  # type: ignore[method-assign]
    start = time.monotonic()
    ended: dict[str, float] = {}

    async def new_device() -> rn.SignInResult:
        try:
            if new_shows:
                return await rn.login(
                    base_url, new_user, generation=generation, device_id=device_id,
                    options=new_options or options(), cancel=new_cancel, http=http,
                )  # fmt: skip
            return await rn.login(
                None, new_user, qr_payload=await shown, generation=generation, device_id=device_id,
                options=new_options or options(), cancel=new_cancel, http=http,
            )  # fmt: skip
        finally:
            ended["new"] = time.monotonic() - start

    async def existing_device() -> rn.SignInResult:
        try:
            payload = await shown if new_shows else None
            return await rn.link(
                base_url, existing_user, access_token=Secret(token.encode()), secrets=user_secrets("alice"),
                qr_payload=payload, generation=generation, options=existing_options or options(),
                cancel=existing_cancel, http=http,
            )  # fmt: skip
        finally:
            ended["existing"] = time.monotonic() - start

    new, existing = await asyncio.gather(new_device(), existing_device(), return_exceptions=True)
    return Pair(new=new, existing=existing, new_s=ended["new"], existing_s=ended["existing"])
