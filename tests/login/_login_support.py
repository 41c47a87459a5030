"""Test support for the login layer: a tiny deterministic homeserver double and a two-device runner.

The homeserver double answers exactly the requests the login machines make (well-known, auth_metadata, client
registration, device authorization, token, device lookup) from in-memory tables; the runner wires a new-device
and an existing-device machine together over plaintext queues (or, through ``deliver``, over a real channel),
with a virtual clock that jumps to the next deadline when nothing else can happen.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar
from urllib.parse import parse_qs, unquote, urlsplit

from qrlogin._secret import Secret
from qrlogin.channel import ChannelFailed, InitiateRequested, PayloadReceived, SendPayload, ecies, hpke
from qrlogin.encoding import b64decode
from qrlogin.http import HttpRequest, HttpResponse
from qrlogin.login import existing_device, new_device
from qrlogin.login.events import (
    ChannelClosed,
    ChannelSecured,
    DeleteRendezvous,
    Effect,
    Event,
    MessageReceived,
    ReportLoginFailure,
    ReportLoginSuccess,
    SendMessage,
)
from qrlogin.login.glue import channel_effect_to_login_event, login_effect_to_channel_event
from qrlogin.login.messages import Backup, CrossSigningKeys, Secrets, message_to_json, serialize_message
from qrlogin.vocabulary import (
    CheckCodeEntered,
    HttpRequestFailed,
    HttpResponseReceived,
    OpenVerificationUri,
    PromptForCheckCode,
    QrSide,
    SendHttpRequest,
    ShowCheckCode,
    ShowUserCode,
    TimerFired,
    UserCancelled,
    VerificationUriOpened,
    VerificationUriUnavailable,
)

StateT = TypeVar("StateT")

AWAITED = -1
"""A ``request_id`` placeholder in canned test events: the id of the request the machine waits for (see
:func:`step`)."""


def step(machine: Any, state: StateT, event: object, *, now_ms: int) -> tuple[StateT, tuple[Any, ...]]:
    """``machine.transition``, with an :data:`AWAITED` request id replaced by the one ``state`` waits for.

    Canned answers in the login tests are written once and fed in many states; this answers "the outstanding
    request", as an embedder would. A state that waits for no answer keeps the placeholder, which is then stale.
    """
    if isinstance(event, HttpResponseReceived | HttpRequestFailed) and event.request_id == AWAITED:
        awaited = machine.awaited_request_id(state)
        if awaited is not None:
            event = replace(event, request_id=awaited)
    result: tuple[StateT, tuple[Any, ...]] = machine.transition(state, event, now_ms=now_ms)
    return result


SERVER_NAME = "example.org"
BASE_URL = "https://matrix.example.org"
ISSUER = "https://auth.example.org/"
DEVICE_ID = "NEWDEVICE1"
CLIENT_ID = "static_client"
USER_CODE = "123456"
DEVICE_CODE = "device-code-XYZ"
ACCESS_TOKEN = "access-token-ABC"
# Fixed ephemeral X25519 secrets for the channel (any 32 bytes; these are RFC 7748 §6.1's Alice and Bob).
G_SECRET = bytes.fromhex("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a")
RENDEZVOUS_ID = "e8da6355-550b-4a32-a193-1619d9830668"
S_SECRET = bytes.fromhex("5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb")

# The key values of matrix-rust-sdk's m.login.secrets fixture (spec_vectors/login_message_fixtures.json, "secrets").
SECRETS = Secrets(
    cross_signing=CrossSigningKeys(
        master_key=Secret(b64decode("rTtSv67XGS6k/rg6/yTG/m573cyFTPFRqluFhQY+hSw")),
        self_signing_key=Secret(b64decode("4jbPt7jh5D2iyM4U+3IDa+WthgJB87IQN1ATdkau+xk")),
        user_signing_key=Secret(b64decode("YkFKtkjcsTxF6UAzIIG/l6Nog/G2RigCRfWj3cjNWeM")),
    ),
    backup=Backup(
        algorithm="m.megolm_backup.v1.curve25519-aes-sha2",
        key=Secret(b64decode("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")),
        backup_version="2",
    ),
)


def _json(status: int, body: dict[str, Any]) -> HttpResponse:
    return HttpResponse(status=status, headers=(("Content-Type", "application/json"),), body=json.dumps(body).encode())


@dataclass
class Homeserver:
    """A scripted homeserver. ``token_script`` is consumed one entry per token poll once consent is given."""

    well_known: bool = True
    device_grant: bool = True
    registration: bool = True
    preexisting_devices: set[str] = field(default_factory=set)
    devices: set[str] = field(default_factory=set)
    # What the token endpoint says before the user acts, and after approval/denial.
    pending_script: list[str] = field(default_factory=list)
    consent: str | None = None  # "approve" | "deny" once the user acted in the browser
    device_visible_after_polls: int = 0  # how many device lookups after the grant still answer 404
    device_status_override: int | None = None  # force a status on device lookups (e.g. 500)
    expire_on_poll: bool = False
    requests: list[HttpRequest] = field(default_factory=list)
    scope_device: str | None = None
    _lookups_after_grant: int = 0

    def __post_init__(self) -> None:
        self.devices |= self.preexisting_devices

    def metadata(self) -> dict[str, Any]:
        grants = ["authorization_code", "refresh_token"]
        if self.device_grant:
            grants.append("urn:ietf:params:oauth:grant-type:device_code")
        body: dict[str, Any] = {
            "issuer": ISSUER,
            "authorization_endpoint": f"{ISSUER}authorize",
            "token_endpoint": f"{ISSUER}oauth2/token",
            "device_authorization_endpoint": f"{ISSUER}oauth2/device",
            "grant_types_supported": grants,
        }
        if self.registration:
            body["registration_endpoint"] = f"{ISSUER}oauth2/registration"
        return body

    def handle(self, request: HttpRequest) -> HttpResponse:
        self.requests.append(request)
        url = urlsplit(request.target)
        if request.target == f"https://{SERVER_NAME}/.well-known/matrix/client":
            if not self.well_known:
                return _json(404, {"errcode": "M_NOT_FOUND"})
            return _json(200, {"m.homeserver": {"base_url": BASE_URL + "/"}})
        if request.target == f"{BASE_URL}/_matrix/client/v1/auth_metadata":
            return _json(200, self.metadata())
        if request.target == f"{ISSUER}oauth2/registration":
            body = json.loads(request.body)
            assert "urn:ietf:params:oauth:grant-type:device_code" in body["grant_types"]
            return _json(201, {"client_id": "dynamic_client", **body})
        if request.target == f"{ISSUER}oauth2/device":
            form = parse_qs(request.body.decode())
            scope = form["scope"][0].split(" ")
            assert scope[0] == "urn:matrix:client:api:*"
            self.scope_device = scope[1].removeprefix("urn:matrix:client:device:")
            return _json(
                200,
                {
                    "device_code": DEVICE_CODE,
                    "user_code": USER_CODE,
                    "verification_uri": f"{ISSUER}link",
                    "verification_uri_complete": f"{ISSUER}link?code={USER_CODE}",
                    "expires_in": 120,
                    "interval": 5,
                },
            )
        if request.target == f"{ISSUER}oauth2/token":
            form = parse_qs(request.body.decode())
            assert form["device_code"] == [DEVICE_CODE]
            if self.expire_on_poll:
                return _json(400, {"error": "expired_token"})
            if self.pending_script:
                return _json(400, {"error": self.pending_script.pop(0)})
            if self.consent == "approve":
                assert self.scope_device is not None
                self.devices.add(self.scope_device)
                return _json(200, {"access_token": ACCESS_TOKEN, "token_type": "Bearer", "expires_in": 300})
            if self.consent == "deny":
                return _json(400, {"error": "access_denied"})
            return _json(400, {"error": "authorization_pending"})
        if url.path.startswith("/_matrix/client/v3/devices/"):
            assert request.authenticated
            device_id = unquote(url.path.rsplit("/", 1)[1])
            if self.device_status_override is not None:
                return _json(self.device_status_override, {})
            if device_id in self.devices:
                if (
                    device_id not in self.preexisting_devices
                    and self._lookups_after_grant < self.device_visible_after_polls
                ):
                    self._lookups_after_grant += 1
                    return _json(404, {"errcode": "M_NOT_FOUND"})
                return _json(200, {"device_id": device_id})
            return _json(404, {"errcode": "M_NOT_FOUND"})
        return _json(404, {"errcode": "M_UNRECOGNIZED"})


Browser = Callable[[str], Event]


def approving_browser(hs: Homeserver) -> Browser:
    def act(uri: str) -> Event:
        assert uri == f"{ISSUER}link?code={USER_CODE}"
        hs.consent = "approve"
        return VerificationUriOpened()

    return act


class _Timed(list[dict[str, Any]]):
    """A transcript list that remembers the virtual time of each append."""

    def __init__(self, clock: Callable[[], int]) -> None:
        super().__init__()
        self.clock = clock
        self.times: list[int] = []

    def append(self, entry: dict[str, Any]) -> None:
        self.times.append(self.clock())
        super().append(entry)


@dataclass
class Side:
    name: str
    state: Any
    transition: Callable[..., Any]
    deadline: Callable[[Any], int | None]
    effects: list[Effect] = field(default_factory=list)


@dataclass
class Run:
    transcript: list[dict[str, Any]]
    new: Side
    existing: Side
    now_ms: int
    channels: dict[str, Any]


def new_config(role: QrSide, *, v3: bool, dynamic: bool = False) -> new_device.NewDeviceConfig:
    scanned = role is QrSide.SCANS
    return new_device.NewDeviceConfig(
        role=role,
        device_id=DEVICE_ID,
        client_id=None if dynamic else CLIENT_ID,
        client_metadata=json.dumps({"client_name": "qrlogin test"}).encode() if dynamic else None,
        homeserver=SERVER_NAME if scanned and not v3 else None,
        base_url=BASE_URL if scanned and v3 else None,
    )


def existing_config(role: QrSide, *, v3: bool, **kwargs: Any) -> existing_device.ExistingDeviceConfig:
    return existing_device.ExistingDeviceConfig(
        role=role, base_url=BASE_URL, server_name=None if v3 else SERVER_NAME, secrets=SECRETS, **kwargs
    )


def run_pair(
    *,
    new_role: QrSide,
    v3: bool,
    hs: Homeserver,
    browser: Browser | None = None,
    dynamic: bool = False,
    interventions: dict[tuple[str, int], Event] | None = None,
    existing_kwargs: dict[str, Any] | None = None,
    channel: bool | str = False,
    max_steps: int = 500,
) -> Run:
    """Run both machines to their ends and return the transcript.

    Without ``channel`` messages travel as plaintext and the device that generated the QR receives
    ``ChannelSecured`` only once everything else is idle, modelling a user who types the check code late: the
    scanner's first message must wait for it. With ``channel`` every message is sealed and opened by real
    ECIES channel machines built from fixed secrets, joined to the login machines by
    :mod:`qrlogin.login.glue`; the check code S shows is typed into G once everything else is idle.
    ``interventions[(side, n)]`` injects an event into ``side`` just before its n-th login event.
    """
    existing_role = QrSide.SCANS if new_role is QrSide.SHOWS else QrSide.SHOWS
    new = Side("new", new_device.start(new_config(new_role, v3=v3, dynamic=dynamic)), new_device.transition,
               new_device.deadline)  # fmt: skip
    existing = Side(
        "existing",
        existing_device.start(existing_config(existing_role, v3=v3, **(existing_kwargs or {}))),
        existing_device.transition,
        existing_device.deadline,
    )
    browser = browser or approving_browser(hs)
    sides = {"new": new, "existing": existing}
    peer = {"new": "existing", "existing": "new"}
    scanner = "new" if new_role is QrSide.SCANS else "existing"
    generator = peer[scanner]
    transcript = _Timed(lambda: now_ms)
    # Inbox items: (layer, device, event) with layer "login" or "channel".
    inbox: list[tuple[str, str, Any]] = []
    channels: dict[str, Any] = {}
    shown_code: list[str] = []
    prompt_pending = False
    slot_token = 1  # G's POST created the session
    module: Any = hpke if channel == "hpke" else ecies
    if channel == "hpke":
        channels[generator] = hpke.start_showing(
            G_SECRET, base_url=BASE_URL, rendezvous_id=RENDEZVOUS_ID, response_nonce=bytes(32)
        )
        channels[scanner] = hpke.start_scanning(
            S_SECRET, peer_public_key=channels[generator].public_key, base_url=BASE_URL, rendezvous_id=RENDEZVOUS_ID
        )
    elif channel:
        channels[generator] = ecies.start_showing(G_SECRET)
        channels[scanner] = ecies.start_scanning(channels[generator].public_key, S_SECRET)
    if channel:
        inbox.append(("channel", scanner, InitiateRequested(sequence_token=str(slot_token))))
    else:
        inbox.append(("login", scanner, ChannelSecured()))
        prompt_pending = True
    now_ms = 0
    closes: list[tuple[int, str]] = []  # (when, device): the peer deleted the rendezvous under this device
    steps = {"new": 0, "existing": 0}
    interventions = dict(interventions or {})

    def feed_channel(name: str, event: Any) -> None:
        nonlocal prompt_pending, slot_token
        if isinstance(channels[name], ChannelFailed):
            return
        channels[name], effects = module.transition(channels[name], event, now_ms=now_ms)
        for effect in effects:
            if isinstance(effect, SendPayload):
                sealed_with, slot_token = str(slot_token), slot_token + 1
                received = PayloadReceived(
                    payload=effect.payload, sequence_token=sealed_with, reply_sequence_token=str(slot_token)
                )
                inbox.append(("channel", peer[name], received))
            elif isinstance(effect, ShowCheckCode):
                shown_code.append(effect.code)
            elif isinstance(effect, PromptForCheckCode):
                prompt_pending = True
            else:
                login_event = channel_effect_to_login_event(effect)
                if login_event is not None:
                    inbox.append(("login", name, login_event))

    def feed_login(name: str, event: Event) -> None:
        side = sides[name]
        if _ended(side):
            return  # a message to a device that has already finished goes unread
        if isinstance(event, ChannelSecured):
            transcript.append({"to": name, "channel_secured": True})
        side.state, effects = side.transition(side.state, event, now_ms=now_ms)
        side.effects.extend(effects)
        for effect in effects:
            if isinstance(effect, SendMessage):
                transcript.append({"from": name, "message": message_to_json(effect.message)})
                if channel:
                    seal = login_effect_to_channel_event(effect, sequence_token=str(slot_token))
                    assert seal is not None
                    feed_channel(name, seal)
                else:
                    inbox.append(("login", peer[name], MessageReceived(plaintext=serialize_message(effect.message))))
            elif isinstance(effect, SendHttpRequest):
                transcript.append({"from": name, "http": f"{effect.request.method} {effect.request.target}"})
                inbox.insert(
                    0,
                    (
                        "login",
                        name,
                        HttpResponseReceived(request_id=effect.request_id, response=hs.handle(effect.request)),
                    ),
                )
            elif isinstance(effect, OpenVerificationUri):
                transcript.append({"from": name, "open_verification_uri": effect.uri})
                inbox.insert(0, ("login", name, browser(effect.uri)))
            elif isinstance(effect, ShowUserCode):
                transcript.append({"from": name, "show_user_code": effect.user_code})
            elif isinstance(effect, DeleteRendezvous):
                transcript.append({"from": name, "delete_rendezvous_not_before_ms": effect.not_before_ms})
                closes.append((effect.not_before_ms, peer[name]))
            elif isinstance(effect, ReportLoginSuccess):
                transcript.append({"from": name, "completed": True})
            elif isinstance(effect, ReportLoginFailure):
                transcript.append({"from": name, "failed": str(effect.reason), "by_peer": effect.by_peer})

    for _ in range(max_steps):
        if not inbox:
            if prompt_pending:
                prompt_pending = False
                if channel:
                    inbox.append(("channel", generator, CheckCodeEntered(code=shown_code[-1])))
                else:
                    inbox.append(("login", generator, ChannelSecured()))
                continue
            live = [s for s in sides.values() if not _ended(s)]
            if not live:
                break
            deadlines = [d for s in live if (d := s.deadline(s.state)) is not None]
            deadlines += [when for when, _ in closes]
            if not deadlines:
                # Nothing can happen any more: the rendezvous expires under whoever is still waiting.
                for s in live:
                    transcript.append({"to": s.name, "rendezvous_expired": True})
                    inbox.append(("login", s.name, ChannelClosed()))
                continue
            now_ms = max(now_ms, min(deadlines))
            for when, name in [c for c in closes if c[0] <= now_ms]:
                closes.remove((when, name))
                if not _ended(sides[name]):
                    transcript.append({"to": name, "rendezvous_deleted": True})
                    inbox.append(("login", name, ChannelClosed()))
            for s in live:
                d = s.deadline(s.state)
                if d is not None and d <= now_ms:
                    inbox.append(("login", s.name, TimerFired()))
            continue
        layer, name, event = inbox.pop(0)
        if layer == "channel":
            feed_channel(name, event)
            continue
        if not _ended(sides[name]):
            steps[name] += 1
            injected = interventions.pop((name, steps[name]), None)
            if injected is not None:
                inbox.insert(0, (layer, name, event))
                event = injected
        feed_login(name, event)
    else:
        raise AssertionError("runner did not settle")
    timed = [{**entry, "at_ms": when} for entry, when in zip(transcript, transcript.times, strict=True)]
    return Run(transcript=timed, new=new, existing=existing, now_ms=now_ms, channels=channels)


def _ended(side: Side) -> bool:
    machine = new_device.MACHINE if side.name == "new" else existing_device.MACHINE
    return machine.is_terminal(side.state)


def outcome(side: Side) -> ReportLoginSuccess | ReportLoginFailure:
    finals = [e for e in side.effects if isinstance(e, ReportLoginSuccess | ReportLoginFailure)]
    assert len(finals) == 1, finals
    return finals[0]


__all__ = [
    "BASE_URL",
    "SECRETS",
    "Homeserver",
    "UserCancelled",
    "VerificationUriUnavailable",
    "approving_browser",
    "outcome",
    "run_pair",
]
