"""How a device gets into a rendezvous session: creating it to show a QR code, or joining the one a QR code names.

Theory of operation
-------------------
The device that shows the QR code (:func:`generate`) creates the rendezvous session by POSTing an empty payload
(``docs/protocol.md`` §6). The QR code carries the channel's public key and the session's address, so neither
exists before the session does: the device waits in :class:`~qrlogin.device.AwaitingSession`, and when the POST is
answered it builds the channel and emits ``ShowQrCode`` (``routing``).

The device that scans (:func:`scan`) decodes the QR code strictly (``docs/protocol.md`` §3): it must be a code of this
device's generation, shown by the other kind of device, and, for a new device, name a homeserver. A code that is not
ends the device at once with ``ReportLoginFailure("invalid_qr_code: ...")``. A v1 code names the session's URL and a
v3 code the homeserver's base URL, so the scanner joins at once: it GETs the creator's empty payload and then writes
``LoginInitiate``. A v2 code names only a server, so the scanner first resolves it through ``.well-known``
(:class:`~qrlogin.device.AwaitingDiscovery`); a lookup that fails ends the device with ``channel_closed``.
"""

from __future__ import annotations

from .. import qr
from ..errors import LocalProtocolError, RemoteProtocolError
from ..login import oauth
from ..login.events import ChannelClosed, ReportLoginFailure
from ..rendezvous import client as rz
from ..vocabulary import DeviceRole, HttpRequestFailed, HttpResponseReceived, QrSide, SendHttpRequest, UserCancelled
from .config import DeviceConfig, LoginState, rendezvous_config, scanning_channel, start_login
from .effects import Effect, ReportOutcome
from .routing import route_rendezvous, run
from .states import AwaitingDiscovery, AwaitingHandshake, AwaitingSession, Requests, SignInFailed
from .work import Work, settle

__all__ = ["discovered", "discovery_cancelled", "generate", "scan"]

Effects = tuple[Effect, ...]


def generate(config: DeviceConfig, *, now_ms: int) -> tuple[AwaitingSession, Effects]:
    """Start as the device that shows the QR code: create the rendezvous session (the QR code follows).

    Raises :class:`~qrlogin.errors.LocalProtocolError` for a configuration the login machine refuses.
    """
    login = start_login(config, QrSide.SHOWS)
    rendezvous, effects = rz.create_session(rendezvous_config(config, config.base_url), "", now_ms=now_ms)
    work = Work(config, QrSide.SHOWS, rendezvous=rendezvous, login=login, requests=Requests())
    route_rendezvous(work, effects, now_ms)
    state = settle(work, now_ms)
    assert isinstance(state, AwaitingSession)
    return state, tuple(work.effects)


def scan(
    config: DeviceConfig, payload: bytes, *, now_ms: int
) -> tuple[AwaitingHandshake | AwaitingDiscovery | SignInFailed, Effects]:
    """Start as the device that scans, from the QR code's bytes. A code that is not for this device ends it."""
    try:
        code = qr.decode(payload, allow_http=config.allow_http)
        code = qr.require_intent(code, scanner_is_new_device=config.kind is DeviceRole.NEW)
        if code.generation is not config.generation:
            raise qr.QrDecodeError(f"a {code.generation.name} code, this device speaks {config.generation.name}")
        if config.kind is DeviceRole.NEW and code.generation is not qr.Generation.V3 and code.server_name is None:
            raise qr.QrDecodeError("the code names no homeserver")
        login = start_login(config, QrSide.SCANS, code)
    except (RemoteProtocolError, LocalProtocolError) as exc:
        outcome = ReportOutcome(result=ReportLoginFailure(reason=f"invalid_qr_code: {type(exc).__name__}"))
        return SignInFailed(config=config, outcome=outcome), (outcome,)
    if code.generation is qr.Generation.V2:
        # The code names the server, not its URL: resolve it first (docs/protocol.md §7, discovery).
        assert code.server_name is not None
        request = SendHttpRequest(request_id=1, request=oauth.well_known_request(code.server_name))
        return AwaitingDiscovery(config=config, code=code, login=login, requests=Requests(issued=1)), (request,)
    if code.generation is qr.Generation.V1:
        assert code.rendezvous_url is not None
        return _join(config, code, login, at=(config.base_url, code.rendezvous_url), requests=Requests(), now_ms=now_ms)
    assert code.base_url is not None and code.rendezvous_id is not None
    return _join(config, code, login, at=(code.base_url, code.rendezvous_id), requests=Requests(), now_ms=now_ms)


def _join(
    config: DeviceConfig, code: qr.QrCode, login: LoginState, *, at: tuple[str, str], requests: Requests, now_ms: int
) -> tuple[AwaitingHandshake, Effects]:
    """Join the session ``at`` = (homeserver base URL, v1 session URL or v2/v3 rendezvous id)."""
    base_url, session = at
    rendezvous, effects = rz.join_session(rendezvous_config(config, base_url), session, now_ms=now_ms)
    work = Work(
        config,
        QrSide.SCANS,
        rendezvous=rendezvous,
        channel=scanning_channel(config, code),
        login=login,
        requests=requests,
    )
    route_rendezvous(work, effects, now_ms)
    state = settle(work, now_ms)
    assert isinstance(state, AwaitingHandshake)
    return state, tuple(work.effects)


def discovered(
    state: AwaitingDiscovery, event: HttpResponseReceived | HttpRequestFailed, now_ms: int
) -> tuple[AwaitingHandshake | SignInFailed, Effects]:
    """``.well-known`` answered (or did not): join the session on the homeserver it names, or end."""
    assert state.code.server_name is not None and state.code.rendezvous_id is not None
    requests = Requests(issued=state.requests.issued)
    try:
        if isinstance(event, HttpRequestFailed):
            raise oauth.OAuthError("no answer from .well-known")
        base_url = oauth.parse_well_known(state.code.server_name, event.response)
        at = (base_url, state.code.rendezvous_id)
        return _join(state.config, state.code, state.login, at=at, requests=requests, now_ms=now_ms)
    except (RemoteProtocolError, LocalProtocolError):
        return _end_before_joining(state, ChannelClosed(), now_ms)


def discovery_cancelled(state: AwaitingDiscovery, event: UserCancelled, now_ms: int) -> tuple[SignInFailed, Effects]:
    """The user gave up before the session was joined: nothing to tell anyone."""
    return _end_before_joining(state, event, now_ms)


def _end_before_joining(
    state: AwaitingDiscovery, event: ChannelClosed | UserCancelled, now_ms: int
) -> tuple[SignInFailed, Effects]:
    work = Work(state.config, QrSide.SCANS, rendezvous=None, login=state.login, requests=state.requests)
    work.login_events.append(event)
    run(work, now_ms)
    result = settle(work, now_ms)
    assert isinstance(result, SignInFailed)
    return result, tuple(work.effects)
