"""What every simulated run must satisfy, as a function from a finished run to its violations.

* **termination**: the run finished; both of the user's devices ended in ``ReportLoginSuccess`` or a typed
``ReportLoginFailure`` and need nothing more (no deadlock, no hang);
* **liveness of honest runs**: with no attacker and no fault, both devices succeed, and before the rendezvous
  session expires;
* **secrets go only where the user confirmed**: a device that received ``m.login.secrets`` is the user's new device,
  signed in to the user's account with its own device id, and its channel's check code is the code the user typed
  on the device that showed the QR;
* **the attacker gets nothing**: no secrets, and no access token for the user's account; the single exception is a
  user who typed the attacker's own check code (a guess that hit, the residual risk of a two-digit code, docs/threats.md
  T2), which :func:`check` reports separately through ``guessed_attacker_code``;
* **no nonce reuse**: no (key, nonce) pair sealed two different payloads;
* **a failure reaches the peer**: when one of the user's devices gives up with an ``m.login.failure`` while the other's
  login still runs, the other is not left waiting for the rendezvous to expire: it learns of it (from the message,
  or from the deletion of the session by the device that created it) and the run ends before the session's expiry.
  Checked where nothing else can delay it: no attacker, and no lost, duplicated or delayed HTTP exchange.
* **liveness with one fault**: with no attacker and a fault budget of at most one fault of any kind, both devices
  end (success or a typed failure) before the rendezvous session expires plus one poll interval, and a device that
  gave up while its peer's login still ran has told it: the peer read the ``m.login.failure``, or saw the session
  deleted by the device that created it (unless the peer needed no notice: its login succeeded anyway, or it gave up
  too and its own notice crossed this one);
* **the homeserver agrees with the devices**: after every run the user's devices at the homeserver are the existing
  device plus exactly the devices whose device grant was redeemed (a run that failed before the tokens were
  redeemed leaves no device); a new device that reports success is listed in the account it signed in to (the
  user's; with the attacker as the existing device, possibly the attacker's), and its access token and refresh
  token are valid for it; an existing device that reports success saw a device the homeserver lists.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields

from .. import device as dv
from .. import homeserver as hsm
from ..homeserver import oauth as hs_oauth
from ..login.events import ReportLoginFailure, ReportLoginSuccess
from ..login.messages import Secrets, serialize_message
from .run import Run
from .world import ATTACKER, EXISTING, EXISTING_DEVICE_ID, NEW, USER, Faults, World, user_secrets

__all__ = ["Verdict", "check", "is_honest", "is_reliable", "is_single_fault"]

#: How long after the session's expiry a device may still be finding out (one poll of the rendezvous client).
POLL_INTERVAL_MS = 1_000  # rendezvous.client.ClientConfig.poll_interval_ms, which the devices keep


@dataclass(frozen=True, slots=True, kw_only=True)
class Verdict:
    violations: tuple[str, ...]
    guessed_attacker_code: bool
    outcomes: tuple[tuple[str, str], ...]

    @property
    def ok(self) -> bool:
        return not self.violations


def is_reliable(world: World) -> bool:
    """No attacker and a network that loses, duplicates and delays nothing (the user may still cancel or deny)."""
    faults = world.scenario.faults
    return not world.scenario.attacker and faults.drops == faults.duplicates == faults.delays == 0


def is_honest(world: World) -> bool:
    """No attacker and no fault budget: the network may reorder freely but loses, duplicates and delays nothing."""
    return not world.scenario.attacker and world.scenario.faults == Faults()


def is_single_fault(world: World) -> bool:
    """No attacker, and a budget of at most one fault of any kind."""
    faults = world.scenario.faults
    return not world.scenario.attacker and sum(getattr(faults, f.name) for f in fields(Faults)) <= 1


def _outcome(world: World, name: str) -> str:
    actor = world.actor(name)
    if actor is None:
        return "absent"
    outcome = dv.outcome(actor.device)
    if outcome is None:
        return "running"
    result = outcome.result
    return "success" if isinstance(result, ReportLoginSuccess) else f"failed:{result.reason}"


def _whoami(world: World, token: str) -> str | None:
    request = hsm.HttpRequest.get("/_matrix/client/v3/account/whoami", access_token=token)
    _, response = hsm.handle(world.hs, request, now_ms=world.now_ms)
    if response.status != 200:
        return None
    body = json.loads(response.body)
    return f"{body['user_id']}|{body['device_id']}"


def _same_secrets(a: Secrets, b: Secrets) -> bool:
    return serialize_message(a) == serialize_message(b)


def check(result: Run) -> Verdict:
    world = result.world
    violations: list[str] = []
    outcomes = tuple((name, _outcome(world, name)) for name in (NEW, EXISTING, ATTACKER))
    if not result.finished:
        violations.append(f"hang: not finished after {len(result.trace)} actions; outcomes {outcomes}")
    for name, summary in outcomes[:2]:
        if summary == "running":
            violations.append(f"{name} device never reached an outcome")
    if is_honest(world):
        if outcomes[0][1] != "success" or outcomes[1][1] != "success":
            violations.append(f"honest run did not succeed on both devices: {outcomes}")
        if world.now_ms >= world.scenario.rendezvous_ttl_ms:
            violations.append(f"honest run ended at {world.now_ms} ms, after the rendezvous expired")

    typed = [code for _, code in world.record.typed]
    guessed = world.record.attacker_code is not None and world.record.attacker_code in typed
    user_id = f"@{USER}:{world.hs.server_name}"
    for actor in world.actors:
        ended = dv.outcome(actor.device)
        outcome = None if ended is None else ended.result
        if not isinstance(outcome, ReportLoginSuccess):
            continue
        if outcome.secrets is not None and _same_secrets(outcome.secrets, user_secrets(USER)):
            if actor.name != NEW:
                if not guessed:
                    violations.append(f"the user's secrets reached {actor.name}")
                continue
            code = actor.check_code
            if code is None or code not in typed:
                violations.append("secrets reached a device whose check code the user never confirmed")
            tokens = outcome.tokens
            who = _whoami(world, tokens.access_token.value.decode()) if tokens is not None else None
            if who != f"{user_id}|{actor.device.config.device_id}":
                violations.append(f"secrets reached a device not signed in as itself for the user ({who})")
        if actor.name == ATTACKER and outcome.tokens is not None:
            who = _whoami(world, outcome.tokens.access_token.value.decode())
            if who is not None and who.startswith(user_id + "|") and not guessed:
                violations.append("the attacker obtained an access token for the user's account")
    if is_reliable(world):
        violations.extend(_failures_reached_the_peer(world))
    if is_single_fault(world):
        violations.extend(_live_despite_one_fault(world))
    violations.extend(_homeserver_agrees(world))
    seen: dict[tuple[str, str, int], str] = {}
    for name, key, counter, payload in world.record.seals:
        previous = seen.setdefault((name, key, counter), payload)
        if previous != payload:
            violations.append(f"nonce reuse: {name} sealed two payloads under {key} at counter {counter}")
    return Verdict(violations=tuple(violations), guessed_attacker_code=guessed, outcomes=outcomes)


def _failures_reached_the_peer(world: World) -> list[str]:
    found = []
    for name, notice, peer_was_running in world.record.notices:
        if not peer_was_running:
            continue
        peer = world.actor(EXISTING if name == NEW else NEW)
        ended = dv.outcome(peer.device) if peer is not None else None
        if ended is not None and ended.session_end is dv.SessionEnd.EXPIRED:
            found.append(f"{name} sent {notice}, but the other device waited for the rendezvous to expire")
        if world.now_ms >= world.scenario.rendezvous_ttl_ms:
            found.append(f"{name} sent {notice}, and the run went on until the rendezvous expired")
    return found


def _live_despite_one_fault(world: World) -> list[str]:
    found = []
    created = world.record.qr_shown_ms
    if created is not None:
        bound = created + world.scenario.rendezvous_ttl_ms + POLL_INTERVAL_MS
        if world.now_ms > bound:
            found.append(
                f"with one fault at most, the run ended at {world.now_ms} ms, after the rendezvous expired plus one "
                f"poll interval ({bound} ms)"
            )
    for name, notice, peer_was_running in world.record.notices:
        if not peer_was_running:
            continue
        peer_name = EXISTING if name == NEW else NEW
        peer = world.actor(peer_name)
        ended = dv.outcome(peer.device) if peer is not None else None
        read = any(who == peer_name and kind.startswith("m.login.failure") for who, kind in world.record.received)
        deleted = ended is not None and ended.session_end is dv.SessionEnd.DELETED
        # The peer needed no notice if its login succeeded anyway (a cancel after the grant was redeemed) or if it
        # gave up too, its own notice crossing this one.
        succeeded = ended is not None and isinstance(ended.result, ReportLoginSuccess)
        crossed = any(author == peer_name for author, _, _ in world.record.notices)
        if not (read or deleted or succeeded or crossed):
            found.append(f"{name} gave up with {notice} while the other device's login ran, and never told it")
    return found


def _request(world: World, request: hsm.HttpRequest) -> hsm.HttpResponse:
    _, response = hsm.handle(world.hs, request, now_ms=world.now_ms)
    return response


def _refreshes(world: World, refresh_token: str) -> bool:
    """Whether ``refresh_token`` is live at the homeserver, for one of its registered clients (nothing is changed:
    the homeserver is a value, the rotated one is dropped)."""
    for client_id in world.hs.oauth.clients:
        form = {"grant_type": hs_oauth.REFRESH_TOKEN_GRANT, "refresh_token": refresh_token, "client_id": client_id}
        if _request(world, hsm.HttpRequest.form(hs_oauth.TOKEN_PATH, form)).status == 200:
            return True
    return False


def _signed_in_as_reported(world: World, device_id: str, result: ReportLoginSuccess) -> list[str]:
    """The new device's tokens are valid for it, in whichever account it signed in to (with the attacker acting as
    the existing device, that may be the attacker's: an evil-twin sign-in the other invariants judge)."""
    tokens = result.tokens
    who = _whoami(world, tokens.access_token.value.decode()) if tokens is not None else None
    if tokens is None or who is None or not who.endswith(f"|{device_id}"):
        return [f"the new device reports success, but its access token is not valid for it ({who})"]
    own = hsm.HttpRequest.get("/_matrix/client/v3/devices", access_token=tokens.access_token.value.decode())
    listed = {device["device_id"] for device in json.loads(_request(world, own).body)["devices"]}
    if device_id not in listed:
        return [f"the new device reports success, but the homeserver lists no device {device_id} for {who}"]
    if tokens.refresh_token is not None and not _refreshes(world, tokens.refresh_token.value.decode()):
        return ["the new device reports success, but its refresh token is not valid"]
    return []


def _homeserver_agrees(world: World) -> list[str]:
    found: list[str] = []
    user_id = f"@{USER}:{world.hs.server_name}"
    token = dict(world.tokens)[EXISTING]
    response = _request(world, hsm.HttpRequest.get("/_matrix/client/v3/devices", access_token=token))
    listed = {device["device_id"] for device in json.loads(response.body)["devices"]}
    redeemed = {
        grant.device_id
        for grant in world.hs.oauth.grants.values()
        if grant.status is hs_oauth.GrantStatus.REDEEMED and grant.user_id == user_id and grant.device_id is not None
    }
    expected = {EXISTING_DEVICE_ID} | redeemed
    if listed != expected:
        found.append(
            f"the homeserver lists devices {sorted(listed)} for the user; the redeemed grants make {sorted(expected)}"
        )
    new = world.actor(NEW)
    ended = dv.outcome(new.device) if new is not None else None
    if new is not None and ended is not None and isinstance(ended.result, ReportLoginSuccess):
        found.extend(_signed_in_as_reported(world, new.device.config.device_id, ended.result))
    failed = ended is not None and isinstance(ended.result, ReportLoginFailure)
    if new is not None and failed and not redeemed and new.device.config.device_id in listed:
        found.append("the new device failed before its tokens were redeemed, but the homeserver lists it")
    existing = world.actor(EXISTING)
    existing_ended = dv.outcome(existing.device) if existing is not None else None
    succeeded = existing_ended is not None and isinstance(existing_ended.result, ReportLoginSuccess)
    if succeeded and not listed - {EXISTING_DEVICE_ID}:
        found.append("the existing device reports success, but the homeserver lists no new device")
    return found
