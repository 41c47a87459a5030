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
    UserCancelled,
    VerificationUriOpened,
    VerificationUriUnavailable,
)
from tests.harness import Delivery, Harness, Party

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


@dataclass
class Run:
    transcript: list[dict[str, Any]]
    new: Party
    existing: Party
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
    """Run both machines to their ends on a :class:`~tests.harness.Harness` and return the transcript.

    Without ``channel`` messages travel as plaintext and the device that generated the QR receives
    ``ChannelSecured`` only once everything else is idle, modelling a user who types the check code late: the
    scanner's first message must wait for it. With ``channel`` every message is sealed and opened by real
    ECIES channel machines built from fixed secrets, joined to the login machines by
    :mod:`qrlogin.login.glue`; the check code S shows is typed into G once everything else is idle.
    ``interventions[(side, n)]`` injects an event into ``side`` just before its n-th login event.

    The parties are the two login machines ``new`` and ``existing`` and, with ``channel``, their channel machines
    ``new.channel`` and ``existing.channel``. Homeserver answers and the browser's act jump the queue; messages
    and payloads join its back; a login machine's ``SendMessage`` is sealed by its own channel at once.
    """
    existing_role = QrSide.SCANS if new_role is QrSide.SHOWS else QrSide.SHOWS
    parties = [
        Party("new", new_device.start(new_config(new_role, v3=v3, dynamic=dynamic)), new_device.transition,
              new_device.deadline, new_device.MACHINE.is_terminal),
        Party("existing", existing_device.start(existing_config(existing_role, v3=v3, **(existing_kwargs or {}))),
              existing_device.transition, existing_device.deadline, existing_device.MACHINE.is_terminal),
    ]  # fmt: skip
    browser = browser or approving_browser(hs)
    peer = {"new": "existing", "existing": "new"}
    scanner = "new" if new_role is QrSide.SCANS else "existing"
    generator = peer[scanner]
    transcript: list[dict[str, Any]] = []
    shown_code: list[str] = []
    prompt_pending = False
    slot_token = 1  # G's POST created the session
    closes: list[tuple[int, str]] = []  # (when, device): the peer deleted the rendezvous under this device
    steps = {"new": 0, "existing": 0}
    interventions = dict(interventions or {})
    channels: dict[str, Any] = {}
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
    parties += [
        Party(f"{name}.channel", state, module.transition, done=lambda state: isinstance(state, ChannelFailed))
        for name, state in channels.items()
    ]

    def log(entry: dict[str, Any]) -> None:
        transcript.append({**entry, "at_ms": h.now_ms})

    def route(sender: str, effect: Any) -> list[Delivery]:
        nonlocal prompt_pending, slot_token
        name, _, layer = sender.partition(".")
        if layer == "channel":
            if isinstance(effect, SendPayload):
                sealed_with, slot_token = str(slot_token), slot_token + 1
                received = PayloadReceived(
                    payload=effect.payload, sequence_token=sealed_with, reply_sequence_token=str(slot_token)
                )
                return [Delivery(f"{peer[name]}.channel", received)]
            if isinstance(effect, ShowCheckCode):
                shown_code.append(effect.code)
            elif isinstance(effect, PromptForCheckCode):
                prompt_pending = True
            elif (login_event := channel_effect_to_login_event(effect)) is not None:
                return [Delivery(name, login_event)]
            return []
        if isinstance(effect, SendMessage):
            log({"from": name, "message": message_to_json(effect.message)})
            if channel:
                seal = login_effect_to_channel_event(effect, sequence_token=str(slot_token))
                assert seal is not None
                return [Delivery(f"{name}.channel", seal, "now")]
            return [Delivery(peer[name], MessageReceived(plaintext=serialize_message(effect.message)))]
        if isinstance(effect, SendHttpRequest):
            log({"from": name, "http": f"{effect.request.method} {effect.request.target}"})
            answer = HttpResponseReceived(request_id=effect.request_id, response=hs.handle(effect.request))
            return [Delivery(name, answer, "next")]
        if isinstance(effect, OpenVerificationUri):
            log({"from": name, "open_verification_uri": effect.uri})
            return [Delivery(name, browser(effect.uri), "next")]
        if isinstance(effect, ShowUserCode):
            log({"from": name, "show_user_code": effect.user_code})
        elif isinstance(effect, DeleteRendezvous):
            log({"from": name, "delete_rendezvous_not_before_ms": effect.not_before_ms})
            closes.append((effect.not_before_ms, peer[name]))
        elif isinstance(effect, ReportLoginSuccess):
            log({"from": name, "completed": True})
        elif isinstance(effect, ReportLoginFailure):
            log({"from": name, "failed": str(effect.reason), "by_peer": effect.by_peer})
        return []

    def take(delivery: Delivery) -> Delivery:
        """Count the login events each live device takes, inject the interventions, note ``ChannelSecured``."""
        if delivery.to not in steps or h[delivery.to].finished:
            return delivery
        steps[delivery.to] += 1
        injected = interventions.pop((delivery.to, steps[delivery.to]), None)
        if injected is not None:
            h.queue.appendleft(delivery)
            delivery = Delivery(delivery.to, injected)
        if isinstance(delivery.event, ChannelSecured):
            log({"to": delivery.to, "channel_secured": True})
        return delivery

    def idle() -> bool:
        """The user types the check code; else time passes: deletions, deadlines, and at last the expiry."""
        nonlocal prompt_pending
        if prompt_pending:
            prompt_pending = False
            if channel:
                h.deliver(Delivery(f"{generator}.channel", CheckCodeEntered(code=shown_code[-1])))
            else:
                h.deliver(Delivery(generator, ChannelSecured()))
            return True
        live = [name for name in steps if not h[name].finished]
        if not live:
            return False
        when = h.next_deadline(*(when for when, _ in closes))
        if when is None:
            # Nothing can happen any more: the rendezvous expires under whoever is still waiting.
            for name in live:
                log({"to": name, "rendezvous_expired": True})
                h.deliver(Delivery(name, ChannelClosed()))
            return True
        h.advance_to(when)
        for when, name in [c for c in closes if c[0] <= h.now_ms]:
            closes.remove((when, name))
            if not h[name].finished:
                log({"to": name, "rendezvous_deleted": True})
                h.deliver(Delivery(name, ChannelClosed()))
        h.fire_due_timers()
        return True

    h = Harness(parties, route)
    if channel:
        h.deliver(Delivery(f"{scanner}.channel", InitiateRequested(sequence_token=str(slot_token))))
    else:
        h.deliver(Delivery(scanner, ChannelSecured()))
        prompt_pending = True
    h.run(idle=idle, take=take, max_steps=max_steps)
    states = {name: h[f"{name}.channel"].state for name in channels}
    return Run(transcript=transcript, new=h["new"], existing=h["existing"], now_ms=h.now_ms, channels=states)


def outcome(side: Party) -> ReportLoginSuccess | ReportLoginFailure:
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
