"""Peers and servers that misbehave: each sign-in ends in a typed outcome within its deadline, and the server holds
no rendezvous session afterwards. The server is the homeserver model on uvicorn in this process, behind
:class:`~tests.runner.faulty_server.FaultyApp`; the devices are two runners over real HTTP."""

from __future__ import annotations

import asyncio
import time

import pytest

from qrlogin import qr
from qrlogin import runner as rn
from tests.runner.faulty_server import Faults, Running, live_sessions, serving
from tests.runner.pairing import Pair, options, sign_in

pytest.importorskip("uvicorn")

V3 = qr.Generation.V3


def _results(pair: Pair) -> tuple[rn.SignInResult, rn.SignInResult]:
    assert isinstance(pair.new, rn.SignInResult) and isinstance(pair.existing, rn.SignInResult), pair
    return pair.new, pair.existing


def _no_session_left(server: Running) -> None:
    # The creator deletes its session at most FINAL_MESSAGE_GRACE_MS after its last message; the runs waited for it.
    assert live_sessions(server.app) == 0


@pytest.mark.parametrize("generation", [qr.Generation.V1, V3])
def test_the_new_device_cancels(generation: qr.Generation) -> None:
    with serving() as server:
        cancel = asyncio.Event()

        class Cancelling(rn.ScriptedUser):
            def show_user_code(self, user_code: str) -> None:
                cancel.set()  # the user gives up while the consent page is open

        pair = asyncio.run(
            sign_in(
                server.base_url, server.password_login("LAPTOP"), generation, new_shows=True, device_id="GIVESUP",
                new_user=Cancelling(), new_cancel=cancel,
            )
        )  # fmt: skip
        new, existing = _results(pair)
        assert new.outcome == "user_cancelled" and not new.by_peer
        assert existing.outcome == "user_cancelled" and existing.by_peer
        _no_session_left(server)


def test_the_existing_device_declines() -> None:
    with serving() as server:
        pair = asyncio.run(
            sign_in(
                server.base_url, server.password_login("LAPTOP"), V3, new_shows=False, device_id="NOTWANTED",
                existing_user=rn.ScriptedUser(approve=False),
            )
        )  # fmt: skip
        new, existing = _results(pair)
        assert existing.outcome == "user_cancelled" and not existing.by_peer
        assert new.outcome == "user_cancelled" and new.by_peer
        _no_session_left(server)


@pytest.mark.parametrize("new_shows", [True, False], ids=["new-shows", "existing-shows"])
def test_a_wrong_check_code_ends_both(new_shows: bool) -> None:
    with serving() as server:
        pair = asyncio.run(
            sign_in(
                server.base_url, server.password_login("LAPTOP"), V3, new_shows=new_shows, device_id="MISTYPED",
                mistype=True, new_options=options(10), existing_options=options(10),
            )
        )  # fmt: skip
        new, existing = _results(pair)
        shower = new if new_shows else existing
        assert shower.outcome == "check_code_mismatch"
        scanner = existing if new_shows else new
        assert not scanner.succeeded and scanner.outcome != "timeout"  # told, not left to wait
        _no_session_left(server)


def test_nobody_scans_the_code() -> None:
    """The peer never comes: the showing device gives up at its deadline and deletes its session."""
    with serving() as server:

        async def alone() -> tuple[rn.SignInResult, float]:
            start = time.monotonic()
            result = await rn.login(server.base_url, rn.ScriptedUser(), generation=V3, options=options(3))
            return result, time.monotonic() - start

        result, took_s = asyncio.run(alone())
        assert result.outcome == "timeout" and took_s < 3 + 7 + 1
        _no_session_left(server)


def test_cancelling_the_task_still_deletes_the_session() -> None:
    """Ctrl-C under asyncio.run cancels the task: the device is ended properly and the cancellation goes through."""
    with serving() as server:

        async def interrupted() -> float:
            user = rn.ScriptedUser()
            user.qr = asyncio.get_running_loop().create_future()
            task = asyncio.ensure_future(rn.login(server.base_url, user, generation=V3, options=options(30)))
            await user.qr
            assert live_sessions(server.app) == 1
            start = time.monotonic()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            return time.monotonic() - start

        took_s = asyncio.run(interrupted())
        assert took_s < 7  # the closing grace
        _no_session_left(server)


def test_the_peer_vanishes_after_scanning() -> None:
    """The device that showed the code never gets its check code typed (its user walked away): the scanner ends at
    its own deadline, with a typed outcome, and cancelling the other run from outside still ends it properly."""
    with serving() as server:

        class WalksAway(rn.ScriptedUser):
            async def ask_check_code(self) -> str:
                await asyncio.Event().wait()  # never answers
                return ""

        async def run() -> Pair:
            pending = asyncio.ensure_future(
                sign_in(
                    server.base_url, server.password_login("LAPTOP"), V3, new_shows=True, device_id="GONE",
                    new_user=WalksAway(), new_options=options(60), existing_options=options(4),
                )
            )  # fmt: skip
            await asyncio.sleep(9)
            pending.cancel()  # the new device's application is shut down
            with pytest.raises(asyncio.CancelledError):
                await pending
            return Pair(new=asyncio.CancelledError(), existing=asyncio.CancelledError(), new_s=0, existing_s=0)

        asyncio.run(run())
        _no_session_left(server)


def test_unavailable_then_recovering() -> None:
    """503s on discovery, registration, device authorization and the rendezvous: the retries carry the sign-in."""
    faults = Faults(
        unavailable={
            "/versions": 2, "/auth_metadata": 1, "/oauth2/registration": 2, "/oauth2/device": 1, "/rendezvous": 3,
        }
    )  # fmt: skip
    with serving(faults) as server:
        pair = asyncio.run(sign_in(server.base_url, server.password_login("LAPTOP"), V3, new_shows=True, device_id="X"))
        new, existing = _results(pair)
        assert (new.outcome, existing.outcome) == ("success", "success")
        assert sum(1 for _, _, status in faults.seen if status == 503) == 9
        _no_session_left(server)


def test_an_endless_answer_is_cut_at_the_bound() -> None:
    with serving(Faults(endless={"/oauth2/device"})) as server:
        pair = asyncio.run(
            sign_in(
                server.base_url, server.password_login("LAPTOP"), V3, new_shows=True, device_id="FLOODED",
                new_options=options(20), existing_options=options(20),
            )
        )  # fmt: skip
        new, existing = _results(pair)
        assert new.outcome == "homeserver_error" and pair.new_s < 10
        assert not existing.succeeded and existing.by_peer
        _no_session_left(server)


def test_a_trickled_answer_cannot_outlive_the_deadline() -> None:
    """One byte a second: the request is cut at the device's deadline, not after the server's 60 s; what follows is
    the closing (the failure for the peer, 5 s for it to be read, the deletion), bounded by the closing grace."""
    with serving(Faults(trickle={"/oauth2/device"})) as server:
        pair = asyncio.run(
            sign_in(
                server.base_url, server.password_login("LAPTOP"), V3, new_shows=True, device_id="TRICKLED",
                new_options=options(6), existing_options=options(30),
            )
        )  # fmt: skip
        new, existing = _results(pair)
        assert new.outcome in ("timeout", "homeserver_error") and pair.new_s < 6 + 7 + 1
        assert not existing.succeeded
        _no_session_left(server)


def test_an_authorization_nobody_approves_expires() -> None:
    with serving(auto_approve=False, grant_expires_in_s=3) as server:
        pair = asyncio.run(
            sign_in(server.base_url, server.password_login("LAPTOP"), V3, new_shows=False, device_id="LATE")
        )
        new, existing = _results(pair)
        assert new.outcome == "authorization_expired" and not new.by_peer
        assert existing.outcome == "authorization_expired" and existing.by_peer
        _no_session_left(server)
