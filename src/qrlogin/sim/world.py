"""The simulated world: two devices, a user, the homeserver model, an optional attacker, a clock and a network.

Theory of operation
-------------------
A :class:`World` is an immutable value. :func:`actions` lists, in a fixed order, everything that could happen next;
:func:`step` applies one of them and returns the next world. Nothing else moves: a scheduler that picks actions
(from a list of choices, from hypothesis, or by enumerating them all) decides every interleaving, so a run is
reproducible from its :class:`Scenario` and its choices alone.

The actors:

* **devices** (:mod:`qrlogin.device`): the new device and the existing device, one of which generates the QR code
  (``Scenario.qr_on``), for one protocol generation. Their HTTP requests enter the network as pending items.
* **the network**: a pending request can be delivered to the homeserver (its answer then travels back as a pending
  response), and a pending response delivered to its device. Picking any pending item first reorders; advancing the
  clock while items wait delays. With a fault budget (:class:`Faults`), an item can also be dropped (the device sees
  :class:`~qrlogin.HttpRequestFailed`) or a request duplicated (the homeserver handles it twice; the second answer is
  lost, as a retransmission's would be).
* **the homeserver** (:mod:`qrlogin.homeserver`), with the rendezvous server core behind its hook.
* **the user**: scans the QR with the other device, types the check code shown on one device into the other,
  opens the verification URI and approves (or, with faults, denies) the grant at the homeserver, and may cancel.
  The user only ever types the code the user's own scanning device shows; in adversary mode, when that device
  shows none (its handshake was hijacked), the user either cancels or types a guess (``Scenario.user_guess``).
* **the attacker** (``Scenario.attacker``): a shoulder-surfer who reads the QR as soon as it is shown and races its
  own device (of the kind the user's scanner is, with its own account ``mallory`` when that is the existing device)
  into the rendezvous, and who can overwrite the rendezvous slot with a replayed payload.
* **the clock**: :data:`TICK` advances virtual time to the earliest timer any device has; in a fair schedule
  only when nothing else is enabled (a fault budget allows delaying deliveries past timers).

:mod:`qrlogin.sim.invariants` judges finished runs; :mod:`qrlogin.sim.explore` enumerates schedules.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from typing import TypeVar
from urllib.parse import parse_qsl, urlsplit

from .. import device as dv
from .. import homeserver as hsm
from .. import qr
from .._machine import ForkCache, fork_for_exploration
from .._secret import Secret
from ..channel import ecies, hpke
from ..homeserver.rendezvous import install_rendezvous
from ..http import HttpRequest, HttpResponse
from ..login.events import ReportLoginFailure, ReportLoginSuccess
from ..login.messages import Backup, CrossSigningKeys, Secrets
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

__all__ = [
    "BASE_URL",
    "SERVER_NAME",
    "TICK",
    "Action",
    "Actor",
    "Faults",
    "Pending",
    "Scenario",
    "World",
    "actions",
    "honest_scenario",
    "is_finished",
    "new_world",
    "step",
]

SERVER_NAME = "example.org"
BASE_URL = "https://matrix.example.org"
USER = "alice"
ATTACKER_USER = "mallory"
PASSWORD = "correct horse battery staple"
NEW_DEVICE_ID = "NEWPHONE"
ATTACKER_DEVICE_ID = "EVILTWIN"
EXISTING_DEVICE_ID = "LAPTOP"
CLIENT_METADATA = json.dumps(
    {
        "client_name": "qrlogin simulator",
        "client_uri": "https://qrlogin.example/",
        "grant_types": ["urn:ietf:params:oauth:grant-type:device_code", "refresh_token"],
        "token_endpoint_auth_method": "none",
    }
).encode()

NEW, EXISTING, ATTACKER = "new", "existing", "attacker"


_Value = TypeVar("_Value")
_FIELDS: dict[type, tuple[tuple[str, ...], frozenset[str]]] = {}


def _evolve(value: _Value, **changes: object) -> _Value:
    """``dataclasses.replace`` for this module's value classes, at a fraction of its cost.

    An exploration builds a few worlds per transition, and ``replace`` (which looks up the fields and goes through
    ``__init__`` each time) was a fifth of its time. These classes are frozen, slotted and check nothing on
    construction, so a copy with some fields changed is all ``replace`` would make.
    """
    cls = type(value)
    known = _FIELDS.get(cls)
    if known is None:
        names = tuple(item.name for item in fields(cls))  # type: ignore[arg-type]
        known = _FIELDS[cls] = (names, frozenset(names))
    names, name_set = known
    if not name_set.issuperset(changes):
        raise TypeError(f"{cls.__name__} has no field {sorted(set(changes) - name_set)[0]!r}")
    copy = object.__new__(cls)
    for name in names:
        object.__setattr__(copy, name, changes[name] if name in changes else getattr(value, name))
    return copy


@dataclass(frozen=True, slots=True, kw_only=True)
class Faults:
    """How many of each misfortune a schedule may use (0: none). Honest runs use none."""

    drops: int = 0
    duplicates: int = 0
    delays: int = 0  # clock advances while deliveries are pending
    cancels: int = 0
    denials: int = 0
    overwrites: int = 0  # attacker only


@dataclass(frozen=True, slots=True, kw_only=True)
class Scenario:
    generation: qr.Generation = qr.Generation.V3
    qr_on: DeviceRole = DeviceRole.NEW
    attacker: bool = False
    seed: bytes = b"qrlogin simulation"
    faults: Faults = Faults()
    user_guess: str = "11"
    rendezvous_ttl_ms: int = 120_000


def honest_scenario(generation: qr.Generation, qr_on: DeviceRole, *, seed: bytes = b"honest") -> Scenario:
    """No attacker, no fault: the network may reorder deliveries, the user acts promptly and approves."""
    return Scenario(generation=generation, qr_on=qr_on, seed=seed)


@dataclass(frozen=True, slots=True, kw_only=True)
class Pending:
    """A request on its way to the homeserver (``response`` None) or its answer on the way back."""

    actor: str
    request_id: int
    request: HttpRequest
    response: HttpResponse | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Actor:
    name: str
    device: dv.State
    check_code: str | None = None  # the check code its channel was established with (what the user confirmed)
    shown_code: str | None = None  # S: the check code on screen
    asked_code: bool = False  # G: the user is asked for the code
    consent_uri: str | None = None  # existing: the browser page it asks the user to open
    user_code: str | None = None  # new: the user code on screen


@dataclass(frozen=True, slots=True, kw_only=True)
class Record:
    """What happened, for the invariants and the demo transcript (not part of the state's identity)."""

    seals: tuple[tuple[str, str, int, str], ...] = ()  # (actor, key fingerprint, nonce counter, payload)
    typed: tuple[tuple[str, str], ...] = ()  # (actor typed on, code)
    attacker_code: str | None = None  # the code of the attacker's channel when the user typed one
    # (time, actor or "user"/"network", text); for people (the demo, a replay), so an exploration keeps none
    transcript: tuple[tuple[int, str, str], ...] = ()
    notices: tuple[tuple[str, str, bool], ...] = ()  # (actor, failure it sent, whether the peer's login still ran)
    received: tuple[tuple[str, str], ...] = ()  # (actor, login message type it received)
    qr_payload: bytes | None = None
    qr_shown_ms: int | None = None  # when the rendezvous session existed and its QR code was shown


class Branching:
    """What lets an exploration step one world along several actions, and step alike worlds alike once.

    A device transition starts from a fork of the device (:func:`qrlogin._machine.fork_for_exploration`: its channel
    gets a cursor of its own in the same position), so that every branch can move the device on. And the pure
    functions a step calls (a device's transition, the homeserver's handling of a request) are remembered by the
    identity of their inputs: interleavings meet the same device state with the same event, or the same homeserver
    with the same request, over and over (what another device did in between does not change them), and then share
    one result, which also keeps its fingerprint memoised. Inputs are kept beside their results, so an id is not
    reused while its entry lives; like the fingerprint memo, two generations of ``limit`` entries bound it.
    """

    __slots__ = ("_limit", "_old", "_young", "forks")

    def __init__(self, limit: int = 20_000) -> None:
        self.forks = ForkCache()
        self._young: dict[tuple[object, ...], tuple[object, object]] = {}
        self._old: dict[tuple[object, ...], tuple[object, object]] = {}
        self._limit = limit

    def recall(self, key: tuple[object, ...], source: object) -> object | None:
        """The result remembered for ``key`` if it was computed from this very ``source``."""
        hit = self._young.get(key)
        if hit is None:
            hit = self._old.get(key)
            if hit is None:
                return None
            self._young[key] = hit
        return hit[1] if hit[0] is source else None

    def remember(self, key: tuple[object, ...], source: object, value: object) -> None:
        if len(self._young) >= self._limit:
            self._old = self._young
            self._young = {}
        self._young[key] = (source, value)


@dataclass(frozen=True, slots=True, kw_only=True)
class World:
    scenario: Scenario
    hs: hsm.Homeserver
    now_ms: int
    actors: tuple[Actor, ...]
    pending: tuple[Pending, ...] = ()
    tokens: tuple[tuple[str, str], ...] = ()  # actor -> access token of its signed-in account (existing devices)
    qr_payload: bytes | None = None
    scanned: bool = False
    attacker_scanned: bool = False
    uri_opened: bool = False
    decided: bool = False
    faults: Faults = Faults()
    record: Record = field(default_factory=Record, compare=False)
    # Set by an exploration, which steps one world along several actions (see Branching).
    branching: Branching | None = field(default=None, compare=False, repr=False)

    def actor(self, name: str) -> Actor | None:
        for actor in self.actors:
            if actor.name == name:
                return actor
        return None


# ------------------------------------------------------------------------------------------------------ set-up


def user_secrets(owner: str) -> Secrets:
    """Distinct key material per account, so that whose secrets went where is observable."""

    def key(label: str) -> Secret:
        return Secret(dv.derive(owner.encode(), label))

    return Secrets(
        cross_signing=CrossSigningKeys(
            master_key=key("master"), self_signing_key=key("self"), user_signing_key=key("user")
        ),
        backup=Backup(algorithm="m.megolm_backup.v1.curve25519-aes-sha2", key=key("backup"), backup_version="1"),
    )


def _config(scenario: Scenario, kind: DeviceRole, *, owner: str, seed_label: str) -> dv.DeviceConfig:
    seed = dv.derive(scenario.seed, seed_label)
    if kind is DeviceRole.NEW:
        device_id = ATTACKER_DEVICE_ID if owner == ATTACKER_USER else NEW_DEVICE_ID
        return dv.DeviceConfig(
            kind=kind,
            generation=scenario.generation,
            seed=seed,
            base_url=BASE_URL,
            server_name=SERVER_NAME,
            device_id=device_id,
            client_metadata=CLIENT_METADATA,
        )
    return dv.DeviceConfig(
        kind=kind,
        generation=scenario.generation,
        seed=seed,
        base_url=BASE_URL,
        server_name=SERVER_NAME,
        secrets=user_secrets(owner),
    )


def _sign_in(hs: hsm.Homeserver, localpart: str, device_id: str) -> tuple[hsm.Homeserver, str]:
    hs, _ = hsm.add_user(hs, localpart, PASSWORD)
    body = {"type": "m.login.password", "user": localpart, "password": PASSWORD, "device_id": device_id}
    hs, response = hsm.handle(hs, hsm.HttpRequest.json("POST", "/_matrix/client/v3/login", body), now_ms=0)
    token = json.loads(response.body)["access_token"]
    assert isinstance(token, str)
    return hs, token


def new_world(scenario: Scenario) -> World:
    """The world before anything happened: accounts set up, the QR-showing device creating its rendezvous."""
    hs = hsm.new_homeserver(server_name=SERVER_NAME, base_url=BASE_URL, seed=dv.derive(scenario.seed, "homeserver"))
    hs = install_rendezvous(hs, seed=dv.derive(scenario.seed, "rendezvous"), ttl_ms=scenario.rendezvous_ttl_ms)
    hs, token = _sign_in(hs, USER, EXISTING_DEVICE_ID)
    tokens = [(EXISTING, token)]
    if scenario.attacker:
        hs, mallory = _sign_in(hs, ATTACKER_USER, "MALLORYPC")
        tokens.append((ATTACKER, mallory))
    world = World(scenario=scenario, hs=hs, now_ms=0, actors=(), tokens=tuple(tokens), faults=scenario.faults)
    generator = NEW if scenario.qr_on is DeviceRole.NEW else EXISTING
    device, effects = dv.generate(_config(scenario, scenario.qr_on, owner=USER, seed_label=generator), now_ms=0)
    world = _evolve(world, actors=(Actor(name=generator, device=device),))
    return _apply_effects(world, generator, effects)


# ----------------------------------------------------------------------------------------------------- actions


@dataclass(frozen=True, slots=True, kw_only=True)
class Action:
    """One thing that can happen next. ``kind`` names it; ``index`` picks a pending item where that applies."""

    kind: str
    actor: str = ""
    index: int = -1

    def __str__(self) -> str:
        return f"{self.kind}({self.actor}{'' if self.index < 0 else f' #{self.index}'})"


TICK = Action(kind="tick")
FAULT_KINDS = frozenset({"drop", "duplicate", "cancel", "deny", "overwrite", "delay", "guess", "uri_unavailable"})


def _scanner_kind(scenario: Scenario) -> DeviceRole:
    return DeviceRole.EXISTING if scenario.qr_on is DeviceRole.NEW else DeviceRole.NEW


def _generator(scenario: Scenario) -> str:
    return NEW if scenario.qr_on is DeviceRole.NEW else EXISTING


def _scanner(scenario: Scenario) -> str:
    return EXISTING if scenario.qr_on is DeviceRole.NEW else NEW


def actions(world: World) -> tuple[Action, ...]:
    """Everything that may happen next, in a fixed order: deliveries, the user, the attacker, time, then faults.

    The first action is what a fair, prompt world does (time passes only when nothing else can happen); a finished
    world has none.
    """
    if is_finished(world):
        return ()
    found: list[Action] = []
    faults = world.faults
    for index, item in enumerate(world.pending):
        found.append(Action(kind="deliver", actor=item.actor, index=index))
    found.extend(_user_actions(world))
    if world.scenario.attacker and world.qr_payload is not None and not world.attacker_scanned:
        found.append(Action(kind="attacker_scan", actor=ATTACKER))
    timer = _next_timer(world)
    if not found and timer is not None:
        found.append(TICK)  # nothing else can happen: time passes (fair: never while something waits)
    elif faults.delays > 0 and world.pending and timer is not None:
        found.append(Action(kind="delay"))
    for index, item in enumerate(world.pending):
        if faults.drops > 0:
            found.append(Action(kind="drop", actor=item.actor, index=index))
        if faults.duplicates > 0 and item.response is None:
            found.append(Action(kind="duplicate", actor=item.actor, index=index))
    if faults.cancels > 0:
        for actor in world.actors:
            if actor.name != ATTACKER and dv.outcome(actor.device) is None:
                found.append(Action(kind="cancel", actor=actor.name))
    if world.scenario.attacker and faults.overwrites > 0 and world.attacker_scanned:
        found.append(Action(kind="overwrite", actor=ATTACKER))
    return tuple(found)


def _user_actions(world: World) -> list[Action]:
    scenario = world.scenario
    found: list[Action] = []
    if world.qr_payload is not None and not world.scanned:
        found.append(Action(kind="scan", actor=_scanner(scenario)))
    generator = world.actor(_generator(scenario))
    scanner = world.actor(_scanner(scenario))
    if generator is not None and generator.asked_code and dv.outcome(generator.device) is None:
        if scanner is not None and scanner.shown_code is not None:
            found.append(Action(kind="type_code", actor=generator.name))
        elif scenario.attacker:
            # G asks, but the user's own scanner shows no code (its handshake was hijacked, or the user has not
            # scanned yet and the prompt came from the attacker): the user may answer with a guess, or cancel.
            found.append(Action(kind="guess", actor=generator.name))
            found.append(Action(kind="cancel_prompt", actor=generator.name))
    existing = world.actor(EXISTING)
    asked = existing is not None and existing.consent_uri is not None and dv.outcome(existing.device) is None
    if asked and not world.uri_opened:
        found.append(Action(kind="open_uri", actor=EXISTING))
        if world.faults.cancels > 0:
            found.append(Action(kind="uri_unavailable", actor=EXISTING))
    if world.uri_opened and not world.decided:
        found.append(Action(kind="approve", actor="user"))
        if world.faults.denials > 0:
            found.append(Action(kind="deny", actor="user"))
    return found


def _next_timer(world: World) -> int | None:
    times = [t for a in world.actors if (t := dv.deadline(a.device)) is not None]
    return min(times) if times else None


def is_finished(world: World) -> bool:
    """Both of the user's devices are done (the attacker's fate does not keep the world going)."""
    names = (NEW, EXISTING)
    present = [a for a in world.actors if a.name in names]
    if len(present) < 2:  # the user never scanned: the run is over when the QR-showing device is
        return all(dv.is_done(a.device) for a in present)
    return all(dv.is_done(a.device) for a in present)


# -------------------------------------------------------------------------------------------------------- step


def step(world: World, action: Action) -> World:
    """Apply one action from :func:`actions`."""
    kind = action.kind
    if kind == "deliver":
        return _deliver(world, action.index)
    if kind == "drop":
        item = world.pending[action.index]
        world = _without(world, action.index, faults=_evolve(world.faults, drops=world.faults.drops - 1))
        world = _note(world, "network", f"lost: {item.request.method} {_path(item.request.target)}")
        return _feed(world, item.actor, HttpRequestFailed(request_id=item.request_id))
    if kind == "duplicate":
        item = world.pending[action.index]
        world = _evolve(world, faults=_evolve(world.faults, duplicates=world.faults.duplicates - 1))
        hs, _ = _serve(world, item)
        return _note(
            _evolve(world, hs=hs), "network", f"duplicated: {item.request.method} {_path(item.request.target)}"
        )
    if kind in ("tick", "delay"):
        timer = _next_timer(world)
        assert timer is not None
        if kind == "delay":
            world = _evolve(world, faults=_evolve(world.faults, delays=world.faults.delays - 1))
        world = _evolve(world, now_ms=max(world.now_ms, timer))
        for actor in world.actors:
            due = dv.deadline(actor.device)
            if due is not None and due <= world.now_ms:
                world = _feed(world, actor.name, TimerFired())
        return world
    return _user_or_attacker(world, action)


def _user_or_attacker(world: World, action: Action) -> World:
    kind, name = action.kind, action.actor
    scenario = world.scenario
    if kind == "scan":
        payload = world.qr_payload
        assert payload is not None
        world = _evolve(world, scanned=True)
        config = _config(scenario, _scanner_kind(scenario), owner=USER, seed_label=name)
        device, effects = dv.scan(config, payload, now_ms=world.now_ms)
        world = _note(world, "user", f"scans the QR code with the {name} device")
        world = _evolve(world, actors=(*world.actors, Actor(name=name, device=device)))
        return _apply_effects(world, name, effects)
    if kind == "attacker_scan":
        payload = world.qr_payload
        assert payload is not None
        world = _evolve(world, attacker_scanned=True)
        owner = ATTACKER_USER
        config = _config(scenario, _scanner_kind(scenario), owner=owner, seed_label="attacker")
        device, effects = dv.scan(config, payload, now_ms=world.now_ms)
        world = _note(world, "attacker", "photographs the QR code and races its own device into the rendezvous")
        world = _evolve(world, actors=(*world.actors, Actor(name=ATTACKER, device=device)))
        return _apply_effects(world, ATTACKER, effects)
    if kind in ("type_code", "guess"):
        scanner = world.actor(_scanner(scenario))
        code = scanner.shown_code if kind == "type_code" and scanner is not None else scenario.user_guess
        assert code is not None
        world = _update(world, name, asked_code=False)
        attacker = world.actor(ATTACKER)
        attacker_code = channel_check_code(dv.channel(attacker.device)) if attacker is not None else None
        typed = (*world.record.typed, (name, code))
        record = _evolve(world.record, typed=typed, attacker_code=attacker_code or world.record.attacker_code)
        world = _evolve(world, record=record)
        if kind == "guess":
            text = f"types {code} on the {name} device (the other device shows no code: a guess)"
        else:
            text = f"types check code {code} on the {name} device"
        world = _note(world, "user", text)
        return _feed(world, name, CheckCodeEntered(code=code))
    if kind == "cancel_prompt":
        world = _update(world, name, asked_code=False)
        world = _note(world, "user", f"sees no check code and cancels on the {name} device")
        return _feed(world, name, UserCancelled())
    if kind == "cancel":
        world = _evolve(world, faults=_evolve(world.faults, cancels=world.faults.cancels - 1))
        world = _note(world, "user", f"cancels on the {name} device")
        return _feed(world, name, UserCancelled())
    if kind in ("open_uri", "uri_unavailable"):
        world = _evolve(world, uri_opened=True)
        if kind == "uri_unavailable":
            world = _evolve(world, faults=_evolve(world.faults, cancels=world.faults.cancels - 1))
            world = _note(world, "user", "the browser cannot open the verification page")
            return _feed(world, EXISTING, VerificationUriUnavailable())
        world = _note(world, "user", "opens the verification page from the existing device")
        return _feed(world, EXISTING, VerificationUriOpened())
    if kind in ("approve", "deny"):
        existing = world.actor(EXISTING)
        assert existing is not None and existing.consent_uri is not None
        user_code = dict(parse_qsl(urlsplit(existing.consent_uri).query)).get("user_code", "")
        world = _evolve(world, decided=True)
        if kind == "approve":
            user_id = f"@{USER}:{SERVER_NAME}"
            hs, result = hsm.approve_user_code(world.hs, user_code, user_id, now_ms=world.now_ms)
            return _note(_evolve(world, hs=hs), "user", f"approves the sign-in at the homeserver ({result.value})")
        world = _evolve(world, faults=_evolve(world.faults, denials=world.faults.denials - 1))
        hs, result = hsm.deny_user_code(world.hs, user_code, now_ms=world.now_ms)
        return _note(_evolve(world, hs=hs), "user", f"denies the sign-in at the homeserver ({result.value})")
    assert kind == "overwrite", kind
    world = _evolve(world, faults=_evolve(world.faults, overwrites=world.faults.overwrites - 1))
    return _overwrite(world)


# ---------------------------------------------------------------------------------------------------- network


def _path(url: str) -> str:
    return urlsplit(url).path


def _host_request(world: World, item: Pending) -> HttpRequest | None:
    """The homeserver's view of a device's request (origin-form target, token added), or None for another host."""
    parts = urlsplit(item.request.target)
    if parts.netloc not in (urlsplit(BASE_URL).netloc, SERVER_NAME):
        return None
    headers = item.request.headers
    if item.request.authenticated:
        token = dict(world.tokens).get(item.actor)
        if token is not None:
            headers = (*headers, ("authorization", f"Bearer {token}"))
    target = f"{parts.path}?{parts.query}" if parts.query else parts.path
    return HttpRequest(method=item.request.method, target=target, headers=headers, body=item.request.body)


def _serve(world: World, item: Pending) -> tuple[hsm.Homeserver, HttpResponse | None]:
    request = _host_request(world, item)
    if request is None:
        return world.hs, None
    branching = world.branching
    if branching is None:
        return hsm.handle(world.hs, request, now_ms=world.now_ms)
    key = (id(world.hs), request, world.now_ms)
    known = branching.recall(key, world.hs)
    if known is not None:
        return known  # type: ignore[return-value]
    result = hsm.handle(world.hs, request, now_ms=world.now_ms)
    branching.remember(key, world.hs, result)
    return result


def _without(world: World, index: int, **changes: object) -> World:
    pending = world.pending[:index] + world.pending[index + 1 :]
    return _evolve(world, pending=pending, **changes)


def _deliver(world: World, index: int) -> World:
    item = world.pending[index]
    world = _without(world, index)
    if item.response is None:
        hs, response = _serve(world, item)
        world = _evolve(world, hs=hs)
        if response is None:  # no such host: the connection fails
            return _feed(world, item.actor, HttpRequestFailed(request_id=item.request_id))
        world = _note(
            world, "network", f"{item.actor}: {item.request.method} {_path(item.request.target)} -> {response.status}"
        )
        answered = _evolve(item, response=response)
        return _evolve(world, pending=(*world.pending, answered))
    return _feed(world, item.actor, HttpResponseReceived(request_id=item.request_id, response=item.response))


def _overwrite(world: World) -> World:
    """The attacker reads the slot and overwrites it, with the slot's current token, with a meaningless payload."""
    assert world.qr_payload is not None
    code = qr.decode(world.qr_payload)
    if code.rendezvous_url is not None:
        url = code.rendezvous_url
    else:
        assert code.rendezvous_id is not None
        url = f"{dv.rendezvous_endpoint(code.generation, code.base_url or BASE_URL)}/{code.rendezvous_id}"
    get = Pending(actor=ATTACKER, request_id=0, request=HttpRequest(method="GET", target=url))
    hs, response = _serve(world, get)
    world = _evolve(world, hs=hs)
    if response is None or response.status != 200:
        return _note(world, "attacker", "finds no rendezvous to overwrite")
    junk = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"  # well-formed base64 that authenticates under no key
    if code.generation is qr.Generation.V1:
        etag = response.header("etag") or ""
        put = HttpRequest(
            method="PUT", target=url, headers=(("content-type", "text/plain"), ("if-match", etag)), body=junk.encode()
        )
    else:
        token = json.loads(response.body).get("sequence_token", "")
        body = json.dumps({"sequence_token": token, "data": junk}).encode()
        put = HttpRequest(method="PUT", target=url, headers=(("content-type", "application/json"),), body=body)
    hs, answer = _serve(world, Pending(actor=ATTACKER, request_id=0, request=put))
    status = answer.status if answer is not None else 0
    return _note(_evolve(world, hs=hs), "attacker", f"overwrites the rendezvous slot -> {status}")


# ---------------------------------------------------------------------------------------------------- devices


def _update(world: World, name: str, **changes: object) -> World:
    actors = tuple(_evolve(a, **changes) if a.name == name else a for a in world.actors)
    return _evolve(world, actors=actors)


def _note(world: World, who: str, text: str) -> World:
    if world.branching is not None:
        # An exploration keeps no transcript: no invariant reads it, and a counterexample is replayed in a fresh
        # world, which records one.
        return world
    entry = (world.now_ms, who, text)
    return _evolve(world, record=_evolve(world.record, transcript=(*world.record.transcript, entry)))


def _feed(world: World, name: str, event: dv.Event) -> World:
    actor = world.actor(name)
    assert actor is not None
    if dv.is_done(actor.device):
        return world  # an answer that was still on its way when the device finished: it needs nothing more
    before = dv.channel(actor.device)
    device, effects = _transition(world.branching, actor.device, event, world.now_ms)
    after = dv.channel(device)
    world = _update(world, name, device=device, check_code=_established_code(after) or actor.check_code)
    world = _track_seal(world, name, before, after)
    return _apply_effects(world, name, effects)


def _transition(
    branching: Branching | None, device: dv.State, event: dv.Event, now_ms: int
) -> tuple[dv.State, tuple[dv.Effect, ...]]:
    if branching is None:
        return dv.transition(device, event, now_ms=now_ms)
    key = (id(device), event, now_ms)
    known = branching.recall(key, device)
    if known is not None:
        return known  # type: ignore[return-value]
    result = dv.transition(fork_for_exploration(device, cache=branching.forks), event, now_ms=now_ms)
    branching.remember(key, device, result)
    return result


def _established_code(state: object) -> str | None:
    if isinstance(state, ecies.Established):
        return ecies.check_code(state)
    if isinstance(state, hpke.Established):
        return hpke.check_code(state)
    return None


def _track_seal(world: World, name: str, before: object, after: object) -> World:
    """Record every seal as (key, nonce counter, payload), read off the channel states.

    A seal shows as a change of the state's ``last_sent``; a retry re-emits ``last_sent`` and changes nothing. The
    invariant (no nonce reuse) is that no (key, counter) pair ever appears with two different payloads.
    """
    seal = _seal_of(after)
    if seal is None:
        return world
    previous = _seal_of(before)
    if previous is not None and previous[2] == seal[2]:
        return world
    entry = (name, *seal)
    return _evolve(world, record=_evolve(world.record, seals=(*world.record.seals, entry)))


def _seal_of(state: object) -> tuple[str, int, str] | None:
    if isinstance(state, ecies.AwaitingLoginOk | ecies.AwaitingCheckCode):
        return (f"ecies-{state.keys.role.value}-{state.keys.public_key.hex()}", 0, state.last_sent)
    if isinstance(state, ecies.Established):
        key = f"ecies-{state.keys.role.value}-{state.keys.public_key.hex()}"
        return (key, state.send_counter - 1, state.last_sent)
    if isinstance(state, hpke.AwaitingLoginOk | hpke.AwaitingCheckCode | hpke.Established):
        sender = state.sender if isinstance(state, hpke.AwaitingLoginOk) else state.keys.sender
        digest = dv.derive(sender.key.value, "fingerprint", 8).hex()
        return (f"hpke-{digest}", state.send_seq - 1 if isinstance(state, hpke.Established) else 0, state.last_sent)
    return None


def _apply_effects(world: World, name: str, effects: tuple[dv.Effect, ...]) -> World:
    for effect in effects:
        if isinstance(effect, SendHttpRequest):
            item = Pending(actor=name, request_id=effect.request_id, request=effect.request)
            world = _evolve(world, pending=(*world.pending, item))
        elif isinstance(effect, dv.ShowQrCode):
            if name != ATTACKER:
                world = _evolve(world, qr_payload=effect.payload)
                record = _evolve(world.record, qr_payload=effect.payload, qr_shown_ms=world.now_ms)
                world = _evolve(world, record=record)
                world = _note(world, name, "shows the QR code")
        elif isinstance(effect, ShowCheckCode):
            world = _update(world, name, shown_code=effect.code)
            world = _note(world, name, f"shows check code {effect.code}")
        elif isinstance(effect, PromptForCheckCode):
            world = _update(world, name, asked_code=True)
            world = _note(world, name, "asks for the check code")
        elif isinstance(effect, OpenVerificationUri):
            if name == ATTACKER:
                world = _attacker_consents(world, effect.uri)
            else:
                world = _update(world, name, consent_uri=effect.uri)
                world = _note(world, name, "asks the user to approve the sign-in in the browser")
        elif isinstance(effect, ShowUserCode):
            world = _update(world, name, user_code=effect.user_code)
            world = _note(world, name, f"shows user code {effect.user_code}")
        elif isinstance(effect, dv.ReportMessageSent):
            world = _note(world, name, f"sends {effect.message_type}")
            if effect.message_type.startswith("m.login.failure") and name in (NEW, EXISTING):
                peer = world.actor(EXISTING if name == NEW else NEW)
                running = peer is not None and dv.outcome(peer.device) is None
                notices = (*world.record.notices, (name, effect.message_type, running))
                world = _evolve(world, record=_evolve(world.record, notices=notices))
        elif isinstance(effect, dv.ReportMessageReceived):
            received = (*world.record.received, (name, effect.message_type))
            world = _evolve(world, record=_evolve(world.record, received=received))
            world = _note(world, name, f"receives {effect.message_type}")
        else:
            assert isinstance(effect, dv.ReportOutcome)
            world = _note(world, name, _describe(effect))
    return world


def channel_check_code(state: object) -> str | None:
    """The two digits a scanner's channel derived once it sent ``LoginInitiate`` (what its own screen shows)."""
    if isinstance(state, ecies.AwaitingLoginOk | ecies.Established):
        return state.keys.check_code.value.decode("ascii")
    if isinstance(state, hpke.AwaitingLoginOk | hpke.Established):
        return state.check_code.value.decode("ascii")
    return None


def _describe(effect: dv.ReportOutcome) -> str:
    result = effect.result
    if isinstance(result, ReportLoginSuccess):
        return "outcome: success"
    assert isinstance(result, ReportLoginFailure)
    text = f"outcome: failed ({result.reason}{', reported by the peer' if result.by_peer else ''})"
    if effect.channel_failure is not None:
        text += f"; secure channel: {effect.channel_failure.value}"
    if effect.session_end is not None:
        text += f"; rendezvous session {effect.session_end.value}"
    return text


def _attacker_consents(world: World, uri: str) -> World:
    """An attacker acting as the existing device approves with its own account (an evil-twin sign-in)."""
    user_code = dict(parse_qsl(urlsplit(uri).query)).get("user_code", "")
    hs, result = hsm.approve_user_code(world.hs, user_code, f"@{ATTACKER_USER}:{SERVER_NAME}", now_ms=world.now_ms)
    world = _note(_evolve(world, hs=hs), "attacker", f"approves the grant for its own account ({result.value})")
    return _feed(world, ATTACKER, VerificationUriOpened())
