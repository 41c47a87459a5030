"""Drive one :mod:`qrlogin.device` machine over real HTTP, on the real clock, with a user on the other side.

Theory of operation
-------------------
The device machine decides everything; :func:`run_device` only performs what it asks and tells it what happened:

* every ``SendHttpRequest`` becomes a task of :class:`~qrlogin.runner.transport.Transport` (bounded body, bounded
  time, retries where the core has none); its answer, or its absence, is fed back under the request's id, so several
  requests may be in flight at once (the rendezvous poll and the token poll, say);
* every question to the user (``PromptForCheckCode``, ``OpenVerificationUri``) becomes a task awaiting the
  :class:`~qrlogin.runner.interface.UserInterface`; what is only shown is handed to it at once;
* when nothing else happens first, ``TimerFired`` is fed at :func:`qrlogin.device.deadline`.

Time. The run has one deadline, ``timeout_s`` from its start: no request is allowed to run past it while the login
is on. When it passes with the login still on, the runner cancels (the device tells its peer and deletes the session
as any cancel does) and reports ``"timeout"``. After the login ended the device may still owe the rendezvous a last
message or a deletion (``docs/simulation.md``, "Closing"): that gets ``closing_grace_s`` more, and the run stops at
that hard deadline whatever is left. The device's own deadline (``DeviceConfig.timeout_ms``) is the hard one: were it
the run's, the rendezvous client would end itself at the same instant, as expired, and leave its session behind.

Cancellation. Setting ``cancel`` (an :class:`asyncio.Event`) is the user cancelling: the device is fed
``UserCancelled`` and the run goes on until the device is done, which is what tells the peer and deletes the
session. Cancelling the task running :func:`run_device` (Ctrl-C under :func:`asyncio.run`) does the same within the
grace period and then lets the cancellation through. An act that comes after the device stopped waiting for it (a
check code typed after the peer gave up) changes nothing.

The result. The device's ``ReportOutcome`` becomes a :class:`~qrlogin.runner.result.SignInResult`. On the new device
the runner then asks ``/account/whoami`` with the new access token: it names the user (which nothing in the protocol
does) and proves the token works.

:func:`login` and :func:`link` are the two ends an application uses (the new device, the existing one); they discover
the homeserver first (:mod:`qrlogin.runner.discovery`) and build the device's configuration. :func:`login_sync` and
:func:`link_sync` run them on a fresh event loop for synchronous callers.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from .. import device as dv
from .. import qr
from .._json import JsonError, loads_object
from .._secret import Secret
from ..errors import LocalProtocolError, RemoteProtocolError
from ..http import HttpRequest
from ..login.events import ReportLoginSuccess
from ..login.messages import Secrets
from ..vocabulary import (
    CheckCodeEntered,
    DeviceRole,
    HttpRequestFailed,
    HttpResponseReceived,
    OpenVerificationUri,
    PromptForCheckCode,
    SendHttpRequest,
    ShowCheckCode,
    ShowUserCode,
    TimerFired,
    UserCancelled,
    VerificationUriOpened,
    VerificationUriUnavailable,
)
from .discovery import DiscoveredServer, DiscoveryError, discover
from .interface import UserInterface
from .result import SignInResult
from .transport import Transport, TransportOptions, now_ms, open_http_client

if TYPE_CHECKING:
    import httpx  # the client extra, imported when a run opens its own client

__all__ = [
    "DEFAULT_CLIENT_METADATA",
    "RunOptions",
    "client_metadata",
    "link",
    "link_sync",
    "login",
    "login_sync",
    "password_login",
    "run_device",
    "whoami",
]

T = TypeVar("T")
_UserAct = CheckCodeEntered | VerificationUriOpened | VerificationUriUnavailable | UserCancelled


def client_metadata(
    *,
    client_name: str,
    client_uri: str,
    logo_uri: str | None = None,
    policy_uri: str | None = None,
    tos_uri: str | None = None,
    application_type: str = "native",
) -> bytes:
    """RFC 7591 client metadata for dynamic registration of a public client that signs in with QR code.

    The grants are the device code grant (the sign-in) and the refresh token grant (keeping the tokens fresh);
    ``token_endpoint_auth_method`` is ``none`` (a public client has no secret to keep). MSC2966 asks for a
    ``client_uri`` on an https origin that the other URIs share.
    """
    content: dict[str, Any] = {
        "client_name": client_name,
        "client_uri": client_uri,
        "application_type": application_type,
        "grant_types": ["urn:ietf:params:oauth:grant-type:device_code", "refresh_token"],
        "token_endpoint_auth_method": "none",
    }
    for name, value in (("logo_uri", logo_uri), ("policy_uri", policy_uri), ("tos_uri", tos_uri)):
        if value is not None:
            content[name] = value
    return json.dumps(content).encode()


DEFAULT_CLIENT_METADATA = client_metadata(client_name="qrlogin", client_uri="https://github.com/qrlogin/qrlogin")


@dataclass(frozen=True, slots=True, kw_only=True)
class RunOptions:
    """How a run behaves (see the module docstring). ``seed`` is for tests only: a fresh :func:`os.urandom` seed is
    drawn for every sign-in when it is None, and a given one must be at least 32 bytes and never reused."""

    timeout_s: float = 300.0
    closing_grace_s: float = 10.0
    poll_interval_ms: int = 1_000
    v3_unstable_prefix: bool = True
    transport: TransportOptions = field(default_factory=TransportOptions)
    seed: bytes | None = field(default=None, repr=False)

    @property
    def allow_http(self) -> bool:
        return self.transport.allow_http


class _Run:
    def __init__(
        self,
        user: UserInterface,
        transport: Transport,
        *,
        timeout_s: float,
        closing_grace_s: float,
        cancel: asyncio.Event | None,
    ) -> None:
        self.user = user
        self.transport = transport
        self.cancel = cancel
        start = now_ms()
        self.soft_deadline_ms = start + int(timeout_s * 1000)
        self.hard_deadline_ms = self.soft_deadline_ms + int(closing_grace_s * 1000)
        self.state: dv.State | None = None
        self.outcome: dv.ReportOutcome | None = None
        self.cancelled = False
        self.timed_out = False
        self.requests: dict[asyncio.Task[Any], int] = {}
        self.asks: dict[asyncio.Task[Any], str] = {}

    # -- feeding the machine

    def apply(self, result: tuple[dv.State, tuple[dv.Effect, ...]]) -> None:
        self.state, effects = result
        for effect in effects:
            self.perform(effect)

    def feed(self, event: dv.Event) -> None:
        if self.state is None or dv.is_done(self.state):
            return
        try:
            result = dv.transition(self.state, event, now_ms=now_ms())
        except LocalProtocolError:
            if isinstance(event, _UserAct):
                return  # the device no longer waits for this act: it came too late and changes nothing
            raise
        self.apply(result)

    def user_cancels(self) -> None:
        if not self.cancelled:
            self.cancelled = True
            self.feed(UserCancelled())

    @property
    def request_deadline_ms(self) -> int:
        return self.soft_deadline_ms if self.outcome is None else self.hard_deadline_ms

    def perform(self, effect: dv.Effect) -> None:
        user = self.user
        if isinstance(effect, SendHttpRequest):
            task = asyncio.ensure_future(self.transport.perform(effect.request, deadline_ms=self.request_deadline_ms))
            self.requests[task] = effect.request_id
        elif isinstance(effect, dv.ShowQrCode):
            user.show_qr(effect.payload, effect.code)
        elif isinstance(effect, ShowCheckCode):
            user.show_check_code(effect.code)
        elif isinstance(effect, PromptForCheckCode):
            self.asks[asyncio.ensure_future(user.ask_check_code())] = "check_code"
        elif isinstance(effect, OpenVerificationUri):
            self.asks[asyncio.ensure_future(self._consent_and_open(effect.uri))] = "open"
        elif isinstance(effect, ShowUserCode):
            user.show_user_code(effect.user_code)
        elif isinstance(effect, dv.ReportMessageSent):
            user.progress(f"sent {effect.message_type}")
        elif isinstance(effect, dv.ReportMessageReceived):
            user.progress(f"received {effect.message_type}")
        elif isinstance(effect, dv.ReportOutcome):
            self.outcome = effect
            # The login is over; the device may still owe the rendezvous a last message or the deletion.
            user.progress("login ended, closing")
            for task in self.asks:
                task.cancel()

    async def _consent_and_open(self, uri: str) -> _UserAct:
        if not await self.user.confirm_sign_in():
            return UserCancelled()
        if await self.user.open_verification_uri(uri):
            return VerificationUriOpened()
        return VerificationUriUnavailable()

    # -- the loop

    async def loop(self) -> None:
        cancel_wait: asyncio.Task[Any] | None = None
        if self.cancel is not None:
            cancel_wait = asyncio.ensure_future(self.cancel.wait())
        try:
            while self.state is not None and not dv.is_done(self.state):
                now = now_ms()
                if now >= self.hard_deadline_ms:
                    return
                if now >= self.soft_deadline_ms and self.outcome is None and not self.cancelled:
                    self.timed_out = True
                    self.user_cancels()
                    continue
                due = dv.deadline(self.state)
                if due is not None and due <= now:
                    self.feed(TimerFired())
                    continue
                wake = min(t for t in (due, self.soft_deadline_ms, self.hard_deadline_ms) if t is not None)
                waiting: set[asyncio.Future[Any]] = {*self.requests, *self.asks}
                if cancel_wait is not None and not self.cancelled:
                    waiting.add(cancel_wait)
                if not waiting:
                    await asyncio.sleep(max(0, wake - now) / 1000)
                    continue
                done, _ = await asyncio.wait(
                    waiting, timeout=max(0, wake - now) / 1000, return_when=asyncio.FIRST_COMPLETED
                )
                for task in done:
                    self._completed(task)
                if cancel_wait is not None and cancel_wait.done() and not self.cancelled:
                    self.user_cancels()
        finally:
            for task in [*self.requests, *self.asks, *([cancel_wait] if cancel_wait else [])]:
                task.cancel()

    def _completed(self, task: asyncio.Future[Any]) -> None:
        if task in self.requests:
            request_id = self.requests.pop(task)
            # A request abandoned (its task cancelled when the run was interrupted) or one the transport could not
            # even start is lost as far as the device can tell.
            response = None if task.cancelled() or task.exception() is not None else task.result()
            if response is None:
                self.feed(HttpRequestFailed(request_id=request_id))
            else:
                self.feed(HttpResponseReceived(request_id=request_id, response=response))
            return
        if task in self.asks:
            kind = self.asks.pop(task)
            if task.cancelled():
                return
            if task.exception() is not None:
                self.user_cancels()  # the interface failed (stdin closed, a window shut): the user is gone
                return
            answer = task.result()
            self.feed(CheckCodeEntered(code=answer) if kind == "check_code" else answer)


def _outcome_text(run: _Run) -> tuple[str, bool]:
    """The result's ``outcome`` string and whether the peer reported it."""
    reported = run.outcome
    if reported is None:  # only the hard deadline stops a run before the device reported an outcome
        return "timeout", False
    result = reported.result
    if isinstance(result, ReportLoginSuccess):
        return "success", False
    if run.timed_out:
        return "timeout", False
    if reported.channel_failure is not None:
        return reported.channel_failure.value, False
    if reported.session_end is dv.SessionEnd.EXPIRED:
        return "expired", False
    reason = result.reason
    return (reason.value if hasattr(reason, "value") else str(reason)), result.by_peer


async def run_device(
    config: dv.DeviceConfig,
    user: UserInterface,
    transport: Transport,
    *,
    qr_payload: bytes | None = None,
    timeout_s: float = 300.0,
    closing_grace_s: float = 10.0,
    cancel: asyncio.Event | None = None,
    user_id: str | None = None,
) -> SignInResult:
    """Run the device ``config`` describes until it is done: showing a QR code, or scanning ``qr_payload``.

    ``user_id`` is the signed-in user of an existing device (reported in the result). See the module docstring.
    """
    run = _Run(user, transport, timeout_s=timeout_s, closing_grace_s=closing_grace_s, cancel=cancel)
    if qr_payload is None:
        run.apply(dv.generate(config, now_ms=now_ms()))
    else:
        run.apply(dv.scan(config, qr_payload, now_ms=now_ms()))
    try:
        await run.loop()
    except asyncio.CancelledError:
        # Cancelled from outside: end the device properly (the peer is told, the session deleted), then let it through.
        task = asyncio.current_task()
        if task is not None:
            task.uncancel()
        run.hard_deadline_ms = min(run.hard_deadline_ms, now_ms() + int(closing_grace_s * 1000))
        run.user_cancels()
        with contextlib.suppress(Exception):
            await run.loop()
        raise
    outcome, by_peer = _outcome_text(run)
    session_end = run.outcome.session_end if run.outcome is not None else None
    result = SignInResult(
        outcome=outcome,
        by_peer=by_peer,
        session_end=None if session_end is None else session_end.value,
        user_id=user_id,
        base_url=config.base_url,
    )
    reported = run.outcome.result if run.outcome is not None else None
    if isinstance(reported, ReportLoginSuccess):
        result = await _complete(result, reported, transport, deadline_ms=run.hard_deadline_ms)
    user.finished(result)
    return result


async def _complete(
    result: SignInResult, success: ReportLoginSuccess, transport: Transport, *, deadline_ms: int
) -> SignInResult:
    if success.tokens is None:  # the existing device: it let ``device_id`` in
        return SignInResult(
            outcome="success", user_id=result.user_id, device_id=success.device_id, base_url=result.base_url
        )
    tokens = success.tokens
    base_url = success.base_url or result.base_url
    user_id: str | None = None
    if base_url is not None:
        with contextlib.suppress(DiscoveryError):
            user_id, _ = await whoami(transport, base_url, tokens.access_token, deadline_ms=deadline_ms)
    return SignInResult(
        outcome="success",
        user_id=user_id,
        device_id=success.device_id,
        base_url=base_url,
        client_id=success.client_id,
        token_endpoint=success.token_endpoint,
        access_token=tokens.access_token,
        refresh_token=tokens.refresh_token,
        expires_at_ms=None if tokens.expires_in_s is None else now_ms() + tokens.expires_in_s * 1000,
        secrets=success.secrets,
    )


# ------------------------------------------------------------------------------------------- account helpers


async def whoami(transport: Transport, base_url: str, token: Secret, *, deadline_ms: int) -> tuple[str, str | None]:
    """``GET /account/whoami`` with ``token``: the user id and device id it belongs to (raises DiscoveryError)."""
    request = HttpRequest(
        method="GET",
        target=base_url.rstrip("/") + "/_matrix/client/v3/account/whoami",
        headers=(("accept", "application/json"), ("authorization", "Bearer " + token.value.decode("ascii"))),
    )
    response = await transport.perform(request, deadline_ms=deadline_ms)
    if response is None or response.status != 200:
        raise DiscoveryError(f"whoami: {'no answer' if response is None else f'HTTP {response.status}'}")
    try:
        body = loads_object(response.body, max_bytes=65_536)
    except JsonError as exc:
        raise DiscoveryError(f"whoami: {exc}") from None
    user_id, device_id = body.get("user_id"), body.get("device_id")
    if not isinstance(user_id, str):
        raise DiscoveryError("whoami: no user_id")
    return user_id, device_id if isinstance(device_id, str) else None


async def password_login(
    transport: Transport, base_url: str, user: str, password: str, *, deadline_ms: int, device_id: str | None = None
) -> Secret:
    """``POST /login`` with ``m.login.password``: the access token (raises DiscoveryError when refused)."""
    content: dict[str, Any] = {
        "type": "m.login.password",
        "identifier": {"type": "m.id.user", "user": user},
        "password": password,
        "initial_device_display_name": "qrlogin link",
    }
    if device_id is not None:
        content["device_id"] = device_id
    request = HttpRequest(
        method="POST",
        target=base_url.rstrip("/") + "/_matrix/client/v3/login",
        headers=(("content-type", "application/json"), ("accept", "application/json")),
        body=json.dumps(content).encode(),
    )
    response = await transport.perform(request, deadline_ms=deadline_ms)
    if response is None:
        raise DiscoveryError("login: no answer")
    if response.status != 200:
        raise DiscoveryError(f"login: HTTP {response.status}")
    try:
        token = loads_object(response.body, max_bytes=65_536).get("access_token")
    except JsonError as exc:
        raise DiscoveryError(f"login: {exc}") from None
    if not isinstance(token, str) or not token:
        raise DiscoveryError("login: no access_token")
    return Secret(token.encode())


# ----------------------------------------------------------------------------------------------- the two ends


def _device_timeout_ms(options: RunOptions) -> int:
    """The device's own deadline: the run's, plus the grace for closing. The runner cancels at the run's deadline, so
    the device still tells its peer and deletes its session; its own deadline only bounds that closing."""
    return int((options.timeout_s + options.closing_grace_s) * 1000)


def _seed(options: RunOptions) -> bytes:
    return options.seed if options.seed is not None else os.urandom(32)


def _http(
    options: RunOptions, given: httpx.AsyncClient | None
) -> contextlib.AbstractAsyncContextManager[httpx.AsyncClient]:
    if given is not None:
        return contextlib.nullcontext(given)
    return open_http_client(options.transport)


def _scanned_location(payload: bytes, allow_http: bool) -> tuple[str, str]:
    """(base URL, server name) a scanned code names, for the scanning device's configuration."""
    try:
        code = qr.decode(payload, allow_http=allow_http)
    except RemoteProtocolError:
        return "https://invalid.invalid", "invalid.invalid"  # the device itself refuses the code, with a typed outcome
    if code.base_url is not None:
        return code.base_url, code.base_url.split("://", 1)[1].split("/", 1)[0]
    server_name = code.server_name or "invalid.invalid"
    return f"https://{server_name}", server_name


async def login(
    homeserver: str | None,
    user: UserInterface,
    *,
    qr_payload: bytes | None = None,
    generation: qr.Generation = qr.Generation.V3,
    device_id: str | None = None,
    metadata: bytes = DEFAULT_CLIENT_METADATA,
    client_id: str | None = None,
    options: RunOptions = RunOptions(),
    cancel: asyncio.Event | None = None,
    http: httpx.AsyncClient | None = None,
) -> SignInResult:
    """Sign this application in as a new device: show a QR code on ``homeserver`` (discovered first), or scan
    ``qr_payload`` shown by an existing device. ``client_id`` (static registration) replaces ``metadata``. ``http`` is
    a client of the caller's to use (a proxy, a custom transport); by default the run opens and closes its own."""
    deadline_ms = now_ms() + int(options.timeout_s * 1000)
    async with _http(options, http) as client:
        transport = Transport(client, options.transport)
        if qr_payload is None:
            if homeserver is None:
                raise DiscoveryError("a device that shows a QR code needs its homeserver")
            found = await discover(transport, homeserver, deadline_ms=deadline_ms)
            base_url, server_name = found.base_url, found.server_name
        else:
            base_url, server_name = _scanned_location(qr_payload, options.allow_http)
        config = dv.DeviceConfig(
            kind=DeviceRole.NEW,
            generation=generation,
            seed=_seed(options),
            base_url=base_url,
            server_name=server_name,
            device_id=device_id or _new_device_id(),
            client_id=client_id,
            client_metadata=None if client_id is not None else metadata,
            poll_interval_ms=options.poll_interval_ms,
            timeout_ms=_device_timeout_ms(options),
            allow_http=options.allow_http,
            v3_unstable_prefix=options.v3_unstable_prefix,
        )
        return await run_device(
            config,
            user,
            transport,
            qr_payload=qr_payload,
            timeout_s=options.timeout_s,
            closing_grace_s=options.closing_grace_s,
            cancel=cancel,
        )


async def link(
    homeserver: str,
    user: UserInterface,
    *,
    access_token: Secret,
    secrets: Secrets,
    qr_payload: bytes | None = None,
    generation: qr.Generation = qr.Generation.V3,
    options: RunOptions = RunOptions(),
    cancel: asyncio.Event | None = None,
    discovered: DiscoveredServer | None = None,
    http: httpx.AsyncClient | None = None,
) -> SignInResult:
    """Let a new device in from this signed-in one (``access_token`` is its token, ``secrets`` what it hands over):
    show a QR code, or scan ``qr_payload`` shown by the new device. ``discovered`` skips discovery; ``http`` as for
    :func:`login`."""
    deadline_ms = now_ms() + int(options.timeout_s * 1000)
    async with _http(options, http) as client:
        transport = Transport(client, options.transport, access_token=access_token)
        found = discovered or await discover(transport, homeserver, deadline_ms=deadline_ms)
        user_id, _ = await whoami(transport, found.base_url, access_token, deadline_ms=deadline_ms)
        server_name = user_id.split(":", 1)[1] if ":" in user_id else found.server_name
        config = dv.DeviceConfig(
            kind=DeviceRole.EXISTING,
            generation=generation,
            seed=_seed(options),
            base_url=found.base_url,
            server_name=server_name,
            secrets=secrets,
            poll_interval_ms=options.poll_interval_ms,
            timeout_ms=_device_timeout_ms(options),
            allow_http=options.allow_http,
            v3_unstable_prefix=options.v3_unstable_prefix,
            protocols=found.protocols,
            authenticated_create=generation is qr.Generation.V3,
        )
        return await run_device(
            config,
            user,
            transport,
            qr_payload=qr_payload,
            timeout_s=options.timeout_s,
            closing_grace_s=options.closing_grace_s,
            cancel=cancel,
            user_id=user_id,
        )


def _new_device_id() -> str:
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    return "".join(alphabet[b % len(alphabet)] for b in os.urandom(10))


def _sync(coroutine: Callable[..., Awaitable[T]], *args: Any, **kwargs: Any) -> T:
    async def main() -> T:
        return await coroutine(*args, **kwargs)

    return asyncio.run(main())


def login_sync(homeserver: str | None, user: UserInterface, **kwargs: Any) -> SignInResult:
    """:func:`login` on a fresh event loop, for synchronous callers (the interface's coroutines run on that loop)."""
    return _sync(login, homeserver, user, **kwargs)


def link_sync(homeserver: str, user: UserInterface, **kwargs: Any) -> SignInResult:
    """:func:`link` on a fresh event loop, for synchronous callers."""
    return _sync(link, homeserver, user, **kwargs)
