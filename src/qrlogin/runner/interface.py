"""What the runner asks of the application: the user's side of a sign-in.

Theory of operation
-------------------
A sign-in shows the user a few things and asks them for a few acts. The runner does everything else, so an
application plugs in by implementing :class:`UserInterface`: a GUI draws the QR code and a text field, a terminal
prints them, a bot forwards them to a chat, a test answers at once. Showing is synchronous and must not block (the
runner is waiting on the network meanwhile); asking is a coroutine the runner awaits in a task of its own, and
cancels when the answer is no longer needed (the peer gave up, the deadline passed).

What is shown, in the order a sign-in shows it:

* :meth:`~UserInterface.show_qr`: the QR code to display (the device that shows it);
* :meth:`~UserInterface.show_check_code`: the two-digit code the user types on the other device (the device that
  scanned);
* :meth:`~UserInterface.ask_check_code`: the device that shows the QR code asks for that code;
* :meth:`~UserInterface.confirm_sign_in` then :meth:`~UserInterface.open_verification_uri`: the existing device asks
  whether the user wants to sign the new device in, then opens the homeserver's consent page, where the user approves;
* :meth:`~UserInterface.show_user_code`: the new device shows the user code the consent page displays too, so the
  user can compare them;
* :meth:`~UserInterface.progress`: a short note for each step (a message sent or received, the session created);
* :meth:`~UserInterface.finished`: the result, exactly once.

:class:`ScriptedUser` is a complete implementation for bots and tests: it answers from values it is given.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from .. import qr

if TYPE_CHECKING:
    from .result import SignInResult

__all__ = ["ScriptedUser", "UserInterface"]


class UserInterface(Protocol):
    """The user's side of one sign-in; see the module docstring for when each is called."""

    def show_qr(self, payload: bytes, code: qr.QrCode) -> None: ...

    def show_check_code(self, code: str) -> None: ...

    async def ask_check_code(self) -> str: ...

    async def confirm_sign_in(self) -> bool: ...

    async def open_verification_uri(self, uri: str) -> bool:
        """Open ``uri`` for the user (a browser); True once it is open, False if it cannot be opened."""
        ...

    def show_user_code(self, user_code: str) -> None: ...

    def progress(self, step: str) -> None: ...

    def finished(self, result: SignInResult) -> None: ...


class ScriptedUser:
    """A user who does what they are told: the check code comes from :meth:`type_check_code` (the other device's
    :meth:`show_check_code` can call it), consent is ``approve``, and the verification URI is "opened" by calling
    ``on_open`` (for example to approve the grant on a test server). Everything shown is recorded in ``shown``."""

    def __init__(self, *, approve: bool = True, on_open: Callable[[str], object] | None = None) -> None:
        self.approve = approve
        self.on_open = on_open
        self.shown: list[tuple[str, object]] = []
        self.qr: asyncio.Future[bytes] | None = None
        self._check_code: asyncio.Queue[str] = asyncio.Queue()
        self.result: SignInResult | None = None

    def type_check_code(self, code: str) -> None:
        self._check_code.put_nowait(code)

    def show_qr(self, payload: bytes, code: qr.QrCode) -> None:
        self.shown.append(("qr", payload))
        if self.qr is not None and not self.qr.done():
            self.qr.set_result(payload)

    def show_check_code(self, code: str) -> None:
        self.shown.append(("check_code", code))

    async def ask_check_code(self) -> str:
        return await self._check_code.get()

    async def confirm_sign_in(self) -> bool:
        return self.approve

    async def open_verification_uri(self, uri: str) -> bool:
        self.shown.append(("verification_uri", uri))
        if self.on_open is not None:
            self.on_open(uri)
        return True

    def show_user_code(self, user_code: str) -> None:
        self.shown.append(("user_code", user_code))

    def progress(self, step: str) -> None:
        self.shown.append(("progress", step))

    def finished(self, result: SignInResult) -> None:
        self.result = result
