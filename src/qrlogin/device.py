"""One device of a sign-in with QR code: the rendezvous, channel and login machines composed into one pure machine.

Theory of operation
-------------------
Each layer of qrlogin is a pure machine that speaks only its own vocabulary. An application that signs a device in
(or lets one in) needs all three, joined: this module is that join, for one device in one role, so an embedder has a
single ``transition(state, event, *, now_ms) -> (state, effects)`` to drive, and so the simulator
(:mod:`qrlogin.sim`) runs exactly what an application would.

=====================  =========================================  ==========================================
layer                  machine                                    what the device turns its effects into
=====================  =========================================  ==========================================
rendezvous             :mod:`qrlogin.rendezvous.client`           ``SendRequest`` -> :class:`SendHttp`;
                                                                  ``PayloadReceived`` -> channel event;
                                                                  closed/failed -> login ``ChannelClosed``
secure channel         :mod:`qrlogin.channel.ecies` (v1, v2) or   ``SendPayload`` -> rendezvous write;
                       :mod:`qrlogin.channel.hpke` (v3)           established / delivered / failed -> login
                                                                  events through :mod:`qrlogin.login.glue`
login                  :mod:`qrlogin.login.new_device` or         ``SendMessage`` -> queued, sealed on our
                       :mod:`qrlogin.login.existing_device`       turn; ``SendHttpRequest`` -> :class:`SendHttp`
=====================  =========================================  ==========================================

The device that generated the QR (G, :func:`generate`) creates the rendezvous session by POSTing an empty payload
and shows the QR once the session exists; the scanner (S, :func:`scan`) decodes the QR, joins the session (for v2,
after resolving the server name through ``.well-known``), reads G's empty payload and writes ``LoginInitiate``.

The rendezvous is one slot that the two devices overwrite in turn, and the message order of MSC4108 alternates
strictly (``docs/login.md``), so a login message is sealed only when it is this device's turn: when the rendezvous
machine has just delivered the peer's payload (``ReadyToSend``). It is sealed then, with the token of that read
(the HPKE AAD, PROTOCOL.md §5), and never again: a lost PUT is resent byte for byte by the rendezvous machine, so
no nonce is reused. A message produced out of turn (a failure notice while the peer holds the slot) waits for the
next turn. Payloads are opened with the token our own last write returned.

When the login ends the device finishes its part of the rendezvous: it waits for its last message to be written;
the creator then deletes the session (not before ``DeleteRendezvous.not_before_ms``, which leaves the peer time to
read a last message) and the joiner simply stops. :func:`is_done` is then true and the device asks for nothing
more.

Inputs are values: HTTP answers (:class:`HttpAnswered`, :class:`HttpLost`), timers (:class:`TimerFired`, due at
:func:`next_timer`) and the user's acts (:class:`CheckCodeTyped`, :class:`VerificationUriOpened`,
:class:`VerificationUriUnavailable`, :class:`UserCancelled`).

The device is one value holding three machines that run concurrently (the rendezvous keeps polling whatever the
login does), so its states are not classes of their own: :func:`phase` reads what the device waits for off the
sub-machines (a :class:`Phase`), and ``LEGAL_MOVES`` maps each phase to the events it accepts. :func:`transition`
checks it before anything changes, so a user act out of place (a check code nobody asked for, consent on a device
that was not asked for it, anything after the login ended) raises :class:`~qrlogin.errors.LocalProtocolError`.
Timers are legal in every phase and one that is not due changes nothing. HTTP answers are legal in every phase,
but their ``request_id`` must be one this device issued (another is the embedder's bug: LocalProtocolError); an
answer to an issued request that is no longer outstanding (a duplicate, one after :class:`HttpLost`, one after the
device let go of the session) is network noise and is ignored. ``OUTCOMES`` lists the phases each legal move can
lead to; ``docs/simulation.md`` draws it and the tests observe every edge.

All randomness (the ephemeral X25519 secret, the HPKE response nonce) is derived from ``DeviceConfig.seed`` with
HMAC-SHA256, so a device is reproducible from its seed.

Both inner machines speak :mod:`qrlogin.http`'s values with absolute-URL targets, so a request passes from either
machine to the embedder unchanged, and an answer goes back unchanged. Requests marked ``authenticated`` need the
signed-in user's access token, which the embedder adds (the core never holds it).
"""

from __future__ import annotations

import enum
import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, Final

from . import qr
from ._machine import is_terminal
from ._secret import Secret
from .channel import (
    ChannelEffect,
    ChannelEvent,
    CheckCodeEntered,
    DeliverPayload,
    InitiateRequested,
    PayloadReceived,
    Profile,
    PromptForCheckCode,
    ReportFailure,
    SealRequested,
    SendPayload,
    ecies,
    hpke,
)
from .channel import FailureReason as ChannelFailureReason
from .channel import ShowCheckCode as ChannelShowCheckCode
from .channel._common import Failed as ChannelFailed
from .errors import LocalProtocolError, RemoteProtocolError
from .http import HttpRequest, HttpResponse
from .login import existing_device, new_device, oauth
from .login.events import (
    ChannelClosed,
    Completed,
    DeleteRendezvous,
    Failed,
    HttpFailed,
    HttpResponseReceived,
    OpenVerificationUri,
    QrRole,
    SendHttpRequest,
    SendMessage,
)
from .login.events import Event as LoginEvent
from .login.events import ShowUserCode as LoginShowUserCode
from .login.events import TimerFired as LoginTimerFired
from .login.events import UserCancelled as LoginUserCancelled
from .login.events import VerificationUriOpened as LoginUriOpened
from .login.events import VerificationUriUnavailable as LoginUriUnavailable
from .login.glue import channel_effect_to_login_event
from .login.messages import CrossSigningKeys, Message, Secrets, message_to_json, parse_message, serialize_message
from .rendezvous import ApiGeneration
from .rendezvous import client as rz
from .rendezvous.server import V1_V2_UNSTABLE_PREFIX, V3_UNSTABLE_PREFIX

__all__ = [
    "LEGAL_MOVES",
    "OUTCOMES",
    "AskForCheckCode",
    "AskForConsent",
    "CheckCodeTyped",
    "Device",
    "DeviceConfig",
    "DeviceEffect",
    "DeviceEvent",
    "Finished",
    "HttpAnswered",
    "HttpLost",
    "Kind",
    "MessageReceivedNote",
    "MessageSentNote",
    "Phase",
    "SendHttp",
    "ShowCheckCode",
    "ShowQrCode",
    "ShowUserCode",
    "TimerFired",
    "UserCancelled",
    "VerificationUriOpened",
    "VerificationUriUnavailable",
    "derive",
    "generate",
    "is_done",
    "next_timer",
    "phase",
    "rendezvous_endpoint",
    "scan",
    "transition",
]


class Kind(enum.Enum):
    """Which side of the login: the device being signed in, or the signed-in device granting it."""

    NEW = "new"
    EXISTING = "existing"


@dataclass(frozen=True, slots=True, kw_only=True)
class DeviceConfig:
    """Everything a device is given before the QR code exists.

    ``base_url`` is the homeserver this device uses: where G creates the rendezvous, and the existing device's own
    homeserver. ``server_name`` is advertised by v1/v2 codes and ``m.login.protocols``. ``seed`` is the device's
    only source of randomness. A new device needs ``device_id`` and one of ``client_id`` / ``client_metadata``; an
    existing device needs ``secrets``.
    """

    kind: Kind
    generation: qr.Generation
    seed: bytes
    base_url: str
    server_name: str
    device_id: str = ""
    client_id: str | None = None
    client_metadata: bytes | None = None
    secrets: Secrets | None = None
    profile: Profile = Profile.DEPLOYED
    poll_interval_ms: int = 1_000
    timeout_ms: int = 300_000

    def __repr__(self) -> str:
        return f"DeviceConfig(kind={self.kind.value}, generation={self.generation.name}, device_id={self.device_id!r})"


# ------------------------------------------------------------------------------------------------------ events


@dataclass(frozen=True, slots=True, kw_only=True)
class HttpAnswered:
    request_id: int
    response: HttpResponse


@dataclass(frozen=True, slots=True, kw_only=True)
class HttpLost:
    """No answer came for ``request_id`` (it may or may not have reached the server)."""

    request_id: int


@dataclass(frozen=True, slots=True, kw_only=True)
class TimerFired:
    pass


@dataclass(frozen=True, slots=True, kw_only=True)
class CheckCodeTyped:
    """The user typed ``code`` on G after :class:`AskForCheckCode`."""

    code: str


@dataclass(frozen=True, slots=True, kw_only=True)
class VerificationUriOpened:
    pass


@dataclass(frozen=True, slots=True, kw_only=True)
class VerificationUriUnavailable:
    pass


@dataclass(frozen=True, slots=True, kw_only=True)
class UserCancelled:
    pass


DeviceEvent = (
    HttpAnswered
    | HttpLost
    | TimerFired
    | CheckCodeTyped
    | VerificationUriOpened
    | VerificationUriUnavailable
    | UserCancelled
)

# ----------------------------------------------------------------------------------------------------- effects


@dataclass(frozen=True, slots=True, kw_only=True)
class SendHttp:
    """Perform ``request`` and answer with :class:`HttpAnswered` or :class:`HttpLost` carrying ``request_id``."""

    request_id: int
    request: HttpRequest


@dataclass(frozen=True, slots=True, kw_only=True)
class ShowQrCode:
    """G: display the QR code (``payload`` is what :func:`qrlogin.qr.encode` gives for ``code``)."""

    payload: bytes
    code: qr.QrCode


@dataclass(frozen=True, slots=True, kw_only=True)
class ShowCheckCode:
    """S: display the two digits for the user to type on G."""

    code: str


@dataclass(frozen=True, slots=True, kw_only=True)
class AskForCheckCode:
    """G: ask the user for the code the other device shows; answer with :class:`CheckCodeTyped`."""


@dataclass(frozen=True, slots=True, kw_only=True)
class AskForConsent:
    """Existing device: open ``uri`` in a browser for the user to approve the new device (untrusted, from the peer)."""

    uri: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ShowUserCode:
    """New device: show the RFC 8628 user code while the user consents."""

    user_code: str


@dataclass(frozen=True, slots=True, kw_only=True)
class MessageSentNote:
    """Informational: a login message of ``message_type`` was queued for the peer."""

    message_type: str


@dataclass(frozen=True, slots=True, kw_only=True)
class MessageReceivedNote:
    """Informational: a login message of ``message_type`` arrived over the channel."""

    message_type: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Finished:
    """The login's outcome on this device (exactly once). ``channel_failure`` says why the channel ended, if it did."""

    outcome: Completed | Failed
    channel_failure: ChannelFailureReason | None = None


DeviceEffect = (
    SendHttp
    | ShowQrCode
    | ShowCheckCode
    | AskForCheckCode
    | AskForConsent
    | ShowUserCode
    | MessageSentNote
    | MessageReceivedNote
    | Finished
)

# ------------------------------------------------------------------------------------------------------- state

ChannelState = ecies.EciesState | hpke.HpkeState
LoginState = new_device.State | existing_device.State


@dataclass(frozen=True, slots=True, kw_only=True)
class Device:
    """The composed state. ``rendezvous`` is None before an S joins and after the device let go of the session."""

    config: DeviceConfig
    role: QrRole
    login: LoginState
    rendezvous: rz.State | None = None
    channel: ChannelState | None = None
    qr_code: qr.QrCode | None = None
    server_name: str | None = None  # v2 S: the name being resolved before joining
    join: str | None = None  # v2 S: the rendezvous id to join once resolved
    discovery_request: int | None = None
    outbox: tuple[bytes, ...] = ()  # serialized login messages waiting for our turn
    read_token: str | None = None  # token of the last peer payload: seal with it
    write_token: str | None = None  # token our last write returned: open with it
    initiated: bool = False
    login_request: int | None = None
    rz_requests: tuple[tuple[int, int], ...] = ()  # (device request id, rendezvous request id)
    next_request_id: int = 1
    outcome: Completed | Failed | None = None
    channel_failure: ChannelFailureReason | None = None
    delete_at_ms: int | None = None


Result = tuple[Device, tuple[DeviceEffect, ...]]


def derive(seed: bytes, label: str, length: int = 32) -> bytes:
    """``length`` bytes for ``label``: HMAC-SHA256(seed, label || counter) in counter mode."""
    out = b""
    counter = 0
    while len(out) < length:
        out += hmac.new(seed, label.encode() + counter.to_bytes(4, "big"), hashlib.sha256).digest()
        counter += 1
    return out[:length]


def _api(generation: qr.Generation) -> ApiGeneration:
    return {qr.Generation.V1: ApiGeneration.V1, qr.Generation.V2: ApiGeneration.V2}.get(generation, ApiGeneration.V3)


def rendezvous_endpoint(generation: qr.Generation, base_url: str) -> str:
    """The rendezvous collection URL of a homeserver for a generation (unstable prefixes, PROTOCOL.md §6)."""
    prefix = V3_UNSTABLE_PREFIX if generation is qr.Generation.V3 else V1_V2_UNSTABLE_PREFIX
    return base_url.rstrip("/") + prefix


def _client_config(config: DeviceConfig, base_url: str) -> rz.ClientConfig:
    return rz.ClientConfig(
        generation=_api(config.generation),
        endpoint=rendezvous_endpoint(config.generation, base_url),
        poll_interval_ms=config.poll_interval_ms,
        timeout_ms=config.timeout_ms,
    )


def _login_start(config: DeviceConfig, role: QrRole, code: qr.QrCode | None) -> LoginState:
    legacy = config.generation is not qr.Generation.V3
    if config.kind is Kind.NEW:
        homeserver = base_url = None
        if role is QrRole.SCANNED:
            assert code is not None
            homeserver = code.server_name if legacy else None
            base_url = None if legacy else code.base_url
        return new_device.start(
            new_device.NewDeviceConfig(
                role=role,
                device_id=config.device_id,
                client_id=config.client_id,
                client_metadata=config.client_metadata,
                homeserver=homeserver,
                base_url=base_url,
            )
        )
    if config.secrets is None:
        raise LocalProtocolError("an existing device needs the secrets it hands over")
    return existing_device.start(
        existing_device.ExistingDeviceConfig(
            role=role,
            base_url=config.base_url,
            secrets=config.secrets,
            server_name=config.server_name if legacy else None,
        )
    )


def generate(config: DeviceConfig, *, now_ms: int) -> Result:
    """Start as G: create the rendezvous session (the QR is shown once it exists)."""
    device = Device(config=config, role=QrRole.GENERATED, login=_login_start(config, QrRole.GENERATED, None))
    rendezvous, effects = rz.create_session(_client_config(config, config.base_url), "", now_ms=now_ms)
    return _run(replace(device, rendezvous=rendezvous), rz_effects=effects, now_ms=now_ms)


def scan(config: DeviceConfig, payload: bytes, *, now_ms: int) -> Result:
    """Start as S from the scanned QR bytes. A QR that is not for this device ends the device with a failure."""
    placeholder = Device(config=config, role=QrRole.SCANNED, login=_login_start_placeholder(config))
    try:
        code = qr.require_intent(qr.decode(payload), scanner_is_new_device=config.kind is Kind.NEW)
        if code.generation is not config.generation:
            raise qr.QrDecodeError(f"a {code.generation.name} code, this device speaks {config.generation.name}")
        if config.kind is Kind.NEW and code.generation is not qr.Generation.V3 and code.server_name is None:
            raise qr.QrDecodeError("the code names no homeserver")
        login = _login_start(config, QrRole.SCANNED, code)
    except (RemoteProtocolError, LocalProtocolError) as exc:
        failed = Failed(reason=f"invalid_qr_code: {type(exc).__name__}")
        return replace(placeholder, outcome=failed), (Finished(outcome=failed),)
    secret = derive(config.seed, "channel secret")
    channel: ChannelState
    if code.generation is qr.Generation.V3:
        channel = hpke.start_s_from_qr(code, secret, profile=config.profile)
    else:
        channel = ecies.start_s(code, secret, profile=config.profile)
    device = Device(config=config, role=QrRole.SCANNED, login=login, channel=channel, qr_code=code)
    if code.generation is qr.Generation.V1:
        assert code.rendezvous_url is not None
        rendezvous, effects = rz.join_session(
            _client_config(config, config.base_url), code.rendezvous_url, now_ms=now_ms
        )
        return _run(replace(device, rendezvous=rendezvous), rz_effects=effects, now_ms=now_ms)
    assert code.rendezvous_id is not None
    if code.generation is qr.Generation.V3:
        assert code.base_url is not None
        config3 = _client_config(config, code.base_url)
        rendezvous, effects = rz.join_session(config3, code.rendezvous_id, now_ms=now_ms)
        return _run(replace(device, rendezvous=rendezvous), rz_effects=effects, now_ms=now_ms)
    # v2 names the server, not its URL: resolve it first (PROTOCOL.md §7 step 2's discovery).
    assert code.server_name is not None
    device = replace(device, server_name=code.server_name, join=code.rendezvous_id)
    device, request_id = _allocate(device)
    device = replace(device, discovery_request=request_id)
    return device, (SendHttp(request_id=request_id, request=oauth.well_known_request(code.server_name)),)


def _login_start_placeholder(config: DeviceConfig) -> LoginState:
    # A device whose QR was rejected never runs its login machine; any valid start state stands in for it.
    if config.kind is Kind.NEW:
        return new_device.AwaitingChannel(
            config=new_device.NewDeviceConfig(role=QrRole.SCANNED, device_id=config.device_id or "-", client_id="-")
        )
    return existing_device.start(
        existing_device.ExistingDeviceConfig(
            role=QrRole.SCANNED, base_url=config.base_url, secrets=config.secrets or _NO_SECRETS
        )
    )


_BLANK = Secret(bytes(32))
_NO_SECRETS = Secrets(
    cross_signing=CrossSigningKeys(master_key=_BLANK, self_signing_key=_BLANK, user_signing_key=_BLANK)
)

# -------------------------------------------------------------------------------------------------- queries


def _login_module(device: Device) -> Any:
    return new_device if device.config.kind is Kind.NEW else existing_device


def _login_over(device: Device) -> bool:
    return device.outcome is not None


def is_done(device: Device) -> bool:
    """True when the login has ended and the device needs no more HTTP or timers."""
    return (
        device.outcome is not None
        and device.rendezvous is None
        and device.login_request is None
        and device.discovery_request is None
    )


def next_timer(device: Device) -> int | None:
    """When :class:`TimerFired` is due next, or None."""
    times: list[int] = []
    if device.rendezvous is not None and not rz.is_finished(device.rendezvous):
        timer = rz.next_timer(device.rendezvous)
        if timer is not None:
            times.append(timer)
    if device.outcome is None:
        deadline = _login_module(device).deadline(device.login)
        if deadline is not None:
            times.append(deadline)
    elif device.delete_at_ms is not None and device.rendezvous is not None and not _busy(device.rendezvous):
        # While a write, the creation or the deletion is under way, the rendezvous's own timers wake the device and
        # the deletion follows the answer; a due deletion time reported now would be a timer that changes nothing.
        times.append(device.delete_at_ms)
    return min(times) if times else None


# ------------------------------------------------------------------------------------------------- phases


class Phase(enum.Enum):
    """What the device waits for, read off its sub-machines by :func:`phase`. Values are the diagram's names."""

    AWAITING_SESSION = "AwaitingSession"  # G: the rendezvous is being created; no QR yet
    AWAITING_DISCOVERY = "AwaitingDiscovery"  # v2 S: .well-known names the homeserver to join on
    AWAITING_PEER = "AwaitingPeer"  # the channel handshake: G's QR is up, or S has written LoginInitiate
    AWAITING_CHECK_CODE = "AwaitingCheckCode"  # G: the user types the code the other device shows
    AWAITING_CONSENT = "AwaitingConsent"  # existing device: the user opens the verification URI
    AWAITING_LOGIN = "AwaitingLogin"  # channel up: the peer's next login message or the homeserver's answer
    AWAITING_CLOSE = "AwaitingClose"  # login over: the last write, the deletion time, the DELETE's answer
    DONE = "Done"  # nothing more to do; late answers and timers are ignored


def phase(device: Device) -> Phase:
    """The device's phase: a function of the sub-machines' states, so it is never out of step with them."""
    if device.outcome is not None:
        return Phase.DONE if is_done(device) else Phase.AWAITING_CLOSE
    if device.discovery_request is not None:
        return Phase.AWAITING_DISCOVERY
    if device.channel is None:
        return Phase.AWAITING_SESSION
    if isinstance(device.channel, ecies.AwaitingCheckCode | hpke.AwaitingCheckCode):
        return Phase.AWAITING_CHECK_CODE
    if isinstance(device.login, existing_device.AwaitingVerificationUriOpened):
        return Phase.AWAITING_CONSENT
    if isinstance(device.login, new_device.AwaitingChannel | existing_device.AwaitingChannel):
        return Phase.AWAITING_PEER
    return Phase.AWAITING_LOGIN


_NETWORK: Final = frozenset({HttpAnswered, HttpLost, TimerFired})
_LIVE: Final = _NETWORK | {UserCancelled}

#: The events each phase accepts; :func:`transition` raises LocalProtocolError for any other before doing anything.
LEGAL_MOVES: Final[Mapping[Phase, frozenset[type]]] = {
    Phase.AWAITING_SESSION: _LIVE,
    Phase.AWAITING_DISCOVERY: _LIVE,
    Phase.AWAITING_PEER: _LIVE,
    Phase.AWAITING_CHECK_CODE: _LIVE | {CheckCodeTyped},
    Phase.AWAITING_CONSENT: _LIVE | {VerificationUriOpened, VerificationUriUnavailable},
    Phase.AWAITING_LOGIN: _LIVE,
    Phase.AWAITING_CLOSE: _NETWORK,
    Phase.DONE: _NETWORK,
}

#: The phases each legal move leads to, as observed by ``tests/test_device_legal_moves.py`` (the simulator's moves
#: over seeded schedules with faults and the attacker, and every legal event sent to a sample of every shape of
#: device), which checks this table both ways; ``docs/simulation.md`` draws it. Any live phase can end in
#: ``AwaitingClose`` (the creator still has to delete) or ``Done`` (nothing left to do).
OUTCOMES: Final[Mapping[tuple[Phase, type], frozenset[Phase]]] = {
    (Phase.AWAITING_SESSION, HttpAnswered): frozenset({Phase.AWAITING_SESSION, Phase.AWAITING_PEER}),
    (Phase.AWAITING_SESSION, HttpLost): frozenset({Phase.AWAITING_SESSION}),
    (Phase.AWAITING_SESSION, TimerFired): frozenset({Phase.AWAITING_SESSION, Phase.DONE}),
    (Phase.AWAITING_SESSION, UserCancelled): frozenset({Phase.AWAITING_CLOSE, Phase.DONE}),
    (Phase.AWAITING_DISCOVERY, HttpAnswered): frozenset({Phase.AWAITING_PEER, Phase.DONE}),
    (Phase.AWAITING_DISCOVERY, HttpLost): frozenset({Phase.DONE}),
    (Phase.AWAITING_DISCOVERY, TimerFired): frozenset({Phase.AWAITING_DISCOVERY}),
    (Phase.AWAITING_DISCOVERY, UserCancelled): frozenset({Phase.AWAITING_CLOSE}),
    (Phase.AWAITING_PEER, HttpAnswered): frozenset(
        {Phase.AWAITING_PEER, Phase.AWAITING_CHECK_CODE, Phase.AWAITING_LOGIN, Phase.AWAITING_CLOSE, Phase.DONE}
    ),
    (Phase.AWAITING_PEER, HttpLost): frozenset({Phase.AWAITING_PEER}),
    (Phase.AWAITING_PEER, TimerFired): frozenset({Phase.AWAITING_PEER, Phase.DONE}),
    (Phase.AWAITING_PEER, UserCancelled): frozenset({Phase.AWAITING_CLOSE, Phase.DONE}),
    (Phase.AWAITING_CHECK_CODE, HttpAnswered): frozenset({Phase.AWAITING_CHECK_CODE}),
    (Phase.AWAITING_CHECK_CODE, HttpLost): frozenset({Phase.AWAITING_CHECK_CODE}),
    (Phase.AWAITING_CHECK_CODE, TimerFired): frozenset({Phase.AWAITING_CHECK_CODE, Phase.DONE}),
    (Phase.AWAITING_CHECK_CODE, CheckCodeTyped): frozenset({Phase.AWAITING_LOGIN, Phase.AWAITING_CLOSE}),
    (Phase.AWAITING_CHECK_CODE, UserCancelled): frozenset({Phase.AWAITING_CLOSE}),
    (Phase.AWAITING_CONSENT, HttpAnswered): frozenset({Phase.AWAITING_CONSENT}),
    (Phase.AWAITING_CONSENT, HttpLost): frozenset({Phase.AWAITING_CONSENT}),
    (Phase.AWAITING_CONSENT, TimerFired): frozenset({Phase.AWAITING_CONSENT, Phase.DONE}),
    (Phase.AWAITING_CONSENT, VerificationUriOpened): frozenset({Phase.AWAITING_LOGIN}),
    (Phase.AWAITING_CONSENT, VerificationUriUnavailable): frozenset({Phase.AWAITING_CLOSE}),
    (Phase.AWAITING_CONSENT, UserCancelled): frozenset({Phase.AWAITING_CLOSE}),
    (Phase.AWAITING_LOGIN, HttpAnswered): frozenset(
        {Phase.AWAITING_CONSENT, Phase.AWAITING_LOGIN, Phase.AWAITING_CLOSE, Phase.DONE}
    ),
    (Phase.AWAITING_LOGIN, HttpLost): frozenset({Phase.AWAITING_LOGIN, Phase.AWAITING_CLOSE}),
    (Phase.AWAITING_LOGIN, TimerFired): frozenset({Phase.AWAITING_LOGIN, Phase.AWAITING_CLOSE, Phase.DONE}),
    (Phase.AWAITING_LOGIN, UserCancelled): frozenset({Phase.AWAITING_CLOSE, Phase.DONE}),
    (Phase.AWAITING_CLOSE, HttpAnswered): frozenset({Phase.AWAITING_CLOSE, Phase.DONE}),
    (Phase.AWAITING_CLOSE, HttpLost): frozenset({Phase.AWAITING_CLOSE, Phase.DONE}),
    (Phase.AWAITING_CLOSE, TimerFired): frozenset({Phase.AWAITING_CLOSE, Phase.DONE}),
    (Phase.DONE, HttpAnswered): frozenset({Phase.DONE}),
    (Phase.DONE, HttpLost): frozenset({Phase.DONE}),
    (Phase.DONE, TimerFired): frozenset({Phase.DONE}),
}


def _require_legal(device: Device, event: DeviceEvent) -> None:
    current = phase(device)
    if type(event) not in LEGAL_MOVES[current]:
        raise LocalProtocolError(f"{type(event).__name__} is not legal in phase {current.value}")
    if isinstance(event, HttpAnswered | HttpLost) and not 0 < event.request_id < device.next_request_id:
        raise LocalProtocolError(f"request id {event.request_id} was never issued by this device")


# ---------------------------------------------------------------------------------------------- transitions


def transition(device: Device, event: DeviceEvent, *, now_ms: int) -> Result:
    """Advance the device by one event. Misuse (an event its phase does not accept, a request id it never issued)
    raises LocalProtocolError before anything changes."""
    _require_legal(device, event)
    if isinstance(event, HttpAnswered | HttpLost):
        return _on_http(device, event, now_ms)
    if isinstance(event, TimerFired):
        return _on_timer(device, now_ms)
    if isinstance(event, CheckCodeTyped):
        return _run(device, channel_events=(CheckCodeEntered(code=event.code),), now_ms=now_ms)
    # A live phase: the login machine has not ended, and it accepts these (its own table says which).
    login_event: LoginEvent
    if isinstance(event, VerificationUriOpened):
        login_event = LoginUriOpened()
    elif isinstance(event, VerificationUriUnavailable):
        login_event = LoginUriUnavailable()
    else:
        login_event = LoginUserCancelled()
    return _run(device, login_events=(login_event,), now_ms=now_ms)


def _allocate(device: Device) -> tuple[Device, int]:
    return replace(device, next_request_id=device.next_request_id + 1), device.next_request_id


def _on_http(device: Device, event: HttpAnswered | HttpLost, now_ms: int) -> Result:
    rid = event.request_id
    if rid == device.discovery_request:
        return _on_discovery(replace(device, discovery_request=None), event, now_ms)
    if rid == device.login_request:
        device = replace(device, login_request=None)
        if device.outcome is not None:
            return _run(device, now_ms=now_ms)
        login_event: LoginEvent
        login_event = HttpResponseReceived(response=event.response) if isinstance(event, HttpAnswered) else HttpFailed()
        return _run(device, login_events=(login_event,), now_ms=now_ms)
    for device_id, rz_id in device.rz_requests:
        if device_id == rid:
            device = replace(device, rz_requests=tuple(p for p in device.rz_requests if p[0] != rid))
            if device.rendezvous is None or rz.is_finished(device.rendezvous):
                return _run(device, now_ms=now_ms)
            rz_event: rz.Event
            if isinstance(event, HttpAnswered):
                rz_event = rz.ResponseReceived(request_id=rz_id, response=event.response)
            else:
                rz_event = rz.RequestFailed(request_id=rz_id)
            return _run(device, rz_events=(rz_event,), now_ms=now_ms)
    return device, ()  # an issued request no longer outstanding (a duplicate, a late answer): network noise


def _on_discovery(device: Device, event: HttpAnswered | HttpLost, now_ms: int) -> Result:
    assert device.server_name is not None and device.join is not None
    try:
        if isinstance(event, HttpLost):
            raise oauth.OAuthError("no answer from .well-known")
        base_url = oauth.parse_well_known(device.server_name, event.response)
        rendezvous, effects = rz.join_session(_client_config(device.config, base_url), device.join, now_ms=now_ms)
    except (RemoteProtocolError, LocalProtocolError):
        return _run(device, login_events=(ChannelClosed(),), now_ms=now_ms)
    return _run(replace(device, rendezvous=rendezvous), rz_effects=effects, now_ms=now_ms)


def _on_timer(device: Device, now_ms: int) -> Result:
    rz_events: tuple[rz.Event, ...] = ()
    login_events: tuple[LoginEvent, ...] = ()
    if device.rendezvous is not None and not rz.is_finished(device.rendezvous):
        timer = rz.next_timer(device.rendezvous)
        if timer is not None and timer <= now_ms:
            rz_events = (rz.TimerFired(),)
    if device.outcome is None:
        deadline = _login_module(device).deadline(device.login)
        if deadline is not None and deadline <= now_ms:
            login_events = (LoginTimerFired(),)
    return _run(device, rz_events=rz_events, login_events=login_events, now_ms=now_ms)


class _Step:
    """The work list of one transition: events still to feed to each layer, effects gathered so far."""

    __slots__ = ("channel", "device", "effects", "login", "rz")

    def __init__(self, device: Device) -> None:
        self.device = device
        self.rz: list[rz.Event] = []
        self.channel: list[ChannelEvent] = []
        self.login: list[LoginEvent] = []
        self.effects: list[DeviceEffect] = []


def _run(
    device: Device,
    *,
    rz_effects: tuple[rz.Effect, ...] = (),
    rz_events: tuple[rz.Event, ...] = (),
    channel_events: tuple[ChannelEvent, ...] = (),
    login_events: tuple[LoginEvent, ...] = (),
    now_ms: int,
) -> Result:
    step = _Step(device)
    step.rz.extend(rz_events)
    step.channel.extend(channel_events)
    step.login.extend(login_events)
    for effect in rz_effects:
        _on_rz_effect(step, effect, now_ms)
    for _ in range(10_000):  # each round consumes one event; a device step needs a handful
        if step.rz:
            _feed_rz(step, step.rz.pop(0), now_ms)
        elif step.channel:
            _feed_channel(step, step.channel.pop(0), now_ms)
        elif step.login:
            _feed_login(step, step.login.pop(0), now_ms)
        elif not _pump(step, now_ms):
            break
    else:  # pragma: no cover - the layers are finite machines; this guards against a wiring loop
        raise AssertionError("device step did not settle")
    return step.device, tuple(step.effects)


def _feed_rz(step: _Step, event: rz.Event, now_ms: int) -> None:
    device = step.device
    if device.rendezvous is None or rz.is_finished(device.rendezvous):
        return
    state, effects = rz.transition(device.rendezvous, event, now_ms=now_ms)
    step.device = replace(device, rendezvous=state)
    for effect in effects:
        _on_rz_effect(step, effect, now_ms)


def _on_rz_effect(step: _Step, effect: rz.Effect, now_ms: int) -> None:
    device = step.device
    if isinstance(effect, rz.SendRequest):
        device, request_id = _allocate(device)
        step.device = replace(device, rz_requests=(*device.rz_requests, (request_id, effect.request_id)))
        step.effects.append(SendHttp(request_id=request_id, request=effect.request))
    elif isinstance(effect, rz.SessionCreated):
        _on_created(step, effect)
    elif isinstance(effect, rz.WriteConfirmed):
        if effect.token is None and device.config.generation is qr.Generation.V3:
            # The v3 AAD needs the token our write got; it was never seen (rendezvous.client docs): give up.
            step.login.append(ChannelClosed())
        step.device = replace(device, write_token=effect.token)
    elif isinstance(effect, rz.PayloadReceived):
        step.device = replace(device, read_token=effect.token)
        if device.role is QrRole.SCANNED and not device.initiated:
            # G's creating POST: its (empty) content carries nothing; our turn to write LoginInitiate.
            step.device = replace(step.device, initiated=True)
            step.channel.append(InitiateRequested(sequence_token=effect.token))
        elif device.write_token is None and device.config.generation is qr.Generation.V3:
            # Nothing of ours was confirmed in the slot, so there is no token to open this payload with: it
            # cannot be from our peer (whose reply would follow our write). The channel is over.
            step.login.append(ChannelClosed())
        else:
            step.channel.append(
                PayloadReceived(
                    payload=effect.data, sequence_token=device.write_token, reply_sequence_token=effect.token
                )
            )
    elif isinstance(effect, rz.WriteRejected):
        # The slot held someone else's data when our write conflicted, and that data was just handed to the channel.
        # If it authenticated, it is our peer's reply, which the peer can only write after reading ours: an earlier
        # copy of our write (a duplicated request) had landed. Otherwise the channel has failed already. Either
        # way there is nothing to resend: a sealed message is never sealed again.
        pass
    else:  # SessionClosed, SessionFailed
        step.device = replace(device, rendezvous=None)
        step.login.append(ChannelClosed())


def _on_created(step: _Step, effect: rz.SessionCreated) -> None:
    device = step.device
    config = device.config
    secret = derive(config.seed, "channel secret")
    channel: ChannelState
    generation = config.generation
    intent = qr.Intent.NEW_DEVICE if config.kind is Kind.NEW else qr.Intent.EXISTING_DEVICE
    if generation is qr.Generation.V3:
        assert effect.rendezvous_id is not None
        channel = hpke.start_g(
            secret,
            base_url=config.base_url,
            rendezvous_id=effect.rendezvous_id,
            response_nonce=derive(config.seed, "hpke response nonce"),
            profile=config.profile,
        )
        code = qr.QrCode(
            generation=generation,
            intent=intent,
            public_key=channel.public_key,
            rendezvous_id=effect.rendezvous_id,
            base_url=config.base_url,
            id_length_layout=qr.IdLengthLayout.U8,
        )
    else:
        channel = ecies.start_g(secret, profile=config.profile)
        public_key = channel.secret.public_key
        if generation is qr.Generation.V1:
            server_name = config.server_name if config.kind is Kind.EXISTING else None
            code = qr.QrCode(
                generation=generation,
                intent=intent,
                public_key=public_key,
                rendezvous_url=effect.url,
                server_name=server_name,
            )
        else:
            code = qr.QrCode(
                generation=generation,
                intent=intent,
                public_key=public_key,
                rendezvous_id=effect.rendezvous_id,
                server_name=config.server_name,
            )
    step.device = replace(device, channel=channel, qr_code=code)
    step.effects.append(ShowQrCode(payload=qr.encode(code), code=code))


def _feed_channel(step: _Step, event: ChannelEvent, now_ms: int) -> None:
    device = step.device
    channel = device.channel
    if channel is None or isinstance(channel, ChannelFailed):
        return
    module: Any = hpke if device.config.generation is qr.Generation.V3 else ecies
    state, effects = module.transition(channel, event, now_ms=now_ms)
    step.device = replace(device, channel=state)
    for effect in effects:
        _on_channel_effect(step, effect)


def _on_channel_effect(step: _Step, effect: ChannelEffect) -> None:
    if isinstance(effect, SendPayload):
        step.rz.append(rz.SendRequested(payload=effect.payload))
        return
    if isinstance(effect, ChannelShowCheckCode):
        step.effects.append(ShowCheckCode(code=effect.code))
        return
    if isinstance(effect, PromptForCheckCode):
        step.effects.append(AskForCheckCode())
        return
    if isinstance(effect, ReportFailure):
        step.device = replace(step.device, channel_failure=effect.reason)
    if isinstance(effect, DeliverPayload):
        step.effects.append(MessageReceivedNote(message_type=_message_type(effect.plaintext)))
    login_event = channel_effect_to_login_event(effect)
    if login_event is not None:
        step.login.append(login_event)


def _message_type(plaintext: bytes) -> str:
    try:
        return _describe_message(parse_message(plaintext))
    except RemoteProtocolError:
        return "(not a login message)"


def _describe_message(message: Message) -> str:
    """The message type, with the reason of an ``m.login.failure``; never a field that could hold a secret."""
    content = message_to_json(message)
    kind = str(content["type"])
    return f"{kind} ({content['reason']})" if "reason" in content else kind


def _feed_login(step: _Step, event: LoginEvent, now_ms: int) -> None:
    device = step.device
    module = _login_module(device)
    if device.outcome is not None or is_terminal(module.LEGAL_MOVES, device.login):
        return
    state, effects = module.transition(device.login, event, now_ms=now_ms)
    step.device = replace(device, login=state)
    for effect in effects:
        device = step.device
        if isinstance(effect, SendMessage):
            step.device = replace(device, outbox=(*device.outbox, serialize_message(effect.message)))
            step.effects.append(MessageSentNote(message_type=_describe_message(effect.message)))
        elif isinstance(effect, SendHttpRequest):
            device, request_id = _allocate(device)
            step.device = replace(device, login_request=request_id)
            step.effects.append(SendHttp(request_id=request_id, request=effect.request))
        elif isinstance(effect, OpenVerificationUri):
            step.effects.append(AskForConsent(uri=effect.uri))
        elif isinstance(effect, LoginShowUserCode):
            step.effects.append(ShowUserCode(user_code=effect.user_code))
        elif isinstance(effect, DeleteRendezvous):
            step.device = replace(device, delete_at_ms=effect.not_before_ms)
        else:
            assert isinstance(effect, Completed | Failed)
            step.device = replace(device, outcome=effect)
            step.effects.append(Finished(outcome=effect, channel_failure=device.channel_failure))


def _busy(state: rz.State) -> bool:
    """A write of ours (or its retry), the creation or the deletion of the rendezvous is under way."""
    writing = isinstance(state, rz.Writing | rz.Reconciling) or (
        isinstance(state, rz.BackingOff) and isinstance(state.resume, rz.Writing | rz.Reconciling)
    )
    return writing or isinstance(state, rz.Deleting | rz.Creating)


def _pump(step: _Step, now_ms: int) -> bool:
    """Start the next piece of rendezvous work if there is one; True when something was queued."""
    device = step.device
    state = device.rendezvous
    if state is None or rz.is_finished(state):
        if state is not None:
            step.device = replace(device, rendezvous=None)
            return True
        return False
    channel_ok = device.channel is not None and not isinstance(device.channel, ChannelFailed)
    if isinstance(state, rz.ReadyToSend) and device.outbox and channel_ok:
        plaintext, rest = device.outbox[0], device.outbox[1:]
        step.device = replace(device, outbox=rest)
        step.channel.append(SealRequested(plaintext=plaintext, sequence_token=device.read_token))
        return True
    if device.outcome is None:
        return False
    # The login is over: finish our part of the rendezvous once no write of ours is in flight.
    if _busy(state):
        return False
    if device.outbox and channel_ok and now_ms < (device.delete_at_ms or 0):
        return False  # a last message still waits for our turn; the peer has until the deletion time
    if device.role is QrRole.GENERATED:
        if device.delete_at_ms is not None and now_ms < device.delete_at_ms:
            return False
        step.rz.append(rz.CloseRequested())
        step.device = replace(device, outbox=(), delete_at_ms=None)
        return True
    step.device = replace(device, rendezvous=None, outbox=())
    return True
