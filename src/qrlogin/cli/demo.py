"""``qrlogin demo``: a complete sign-in with QR code, offline, in one process, as the user would see it.

The demo runs the simulator (:mod:`qrlogin.sim`): two devices built from :mod:`qrlogin.device`, the homeserver model
with the rendezvous server behind its hook, and a user who scans, types the check code and approves. It prints what
each device shows (the QR code, the check code, the user code), each login message, the user's devices before and
after, and the outcome. ``--attacker`` adds a shoulder-surfer who photographs the QR code and wins the race into the
rendezvous; the demo shows the sign-in stopped at the check code and that the attacker got nothing.

Exit status 0 means the expected ending happened: a sign-in without attacker succeeded on both devices, or the
attack was stopped, and the simulator's invariants (``docs/simulation.md``) held.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from urllib.parse import urlsplit

from .. import homeserver as hsm
from .. import qr
from ..device import derive, outcome
from ..login.events import ReportLoginSuccess
from ..sim import counterexample
from ..sim.invariants import check
from ..sim.matrix import faults_label
from ..sim.run import MAX_STEPS, Run
from ..sim.world import (
    ATTACKER,
    BASE_URL,
    EXISTING,
    NEW,
    SERVER_NAME,
    TICK,
    USER,
    Action,
    Scenario,
    World,
    actions,
    is_finished,
    new_world,
    step,
)
from ..vocabulary import DeviceRole
from .qr import format_text, render_terminal

__all__ = ["register"]

_GENERATIONS = {"v1": qr.Generation.V1, "v2": qr.Generation.V2, "v3": qr.Generation.V3}
_TITLES = {
    qr.Generation.V1: "v1: MSC4108 as deployed in 2024 (ECIES, ETag rendezvous)",
    qr.Generation.V2: "v2: MSC4108 at its September 2025 revision (ECIES, sequence-token rendezvous)",
    qr.Generation.V3: "v3: MSC4388 (HPKE, sequence-token rendezvous)",
}
_WHO = {NEW: "new device", EXISTING: "existing device", ATTACKER: "ATTACKER", "user": "user", "network": "network"}
# The attack as the demo plays it: the attacker acts as soon as it can, the user's devices a moment later.
_ATTACK_ORDER = ("attacker_scan", "deliver:attacker", "scan", "guess", "deliver", "type_code", "open_uri", "approve")


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("demo", help="run a complete sign-in with QR code offline and show each device")
    parser.add_argument("--generation", choices=sorted(_GENERATIONS), default="v3", help="protocol generation")
    parser.add_argument("--qr-on", choices=("new", "existing"), default="new", help="which device shows the QR code")
    parser.add_argument("--attacker", action="store_true", help="add a shoulder-surfer who races the user's device")
    parser.add_argument("--seed", type=int, default=1, help="seed for every key, id and token (default 1)")
    parser.add_argument("--verbose", action="store_true", help="also show every HTTP exchange")
    parser.add_argument(
        "--replay",
        type=Path,
        metavar="FILE",
        help="play back a counterexample written by `qrlogin explore` (its scenario and schedule) instead",
    )
    parser.set_defaults(func=_demo)


def _user_guess(seed: bytes) -> str:
    """The two digits a user types when the device they scanned with shows none (first digit never 0)."""
    raw = derive(seed, "user guess", 2)
    return f"{raw[0] % 9 + 1}{raw[1] % 10}"


def _attack_choice(world: World, options: tuple[Action, ...]) -> Action:
    """The attack as the demo tells it: the user picks up the other device only once G has answered the attacker."""
    generator = world.actor(NEW if world.scenario.qr_on is DeviceRole.NEW else EXISTING)
    if generator is not None and not generator.asked_code:
        options = tuple(option for option in options if option.kind != "scan")
        if not options:
            return TICK
    for wanted in _ATTACK_ORDER:
        kind, _, actor = wanted.partition(":")
        for option in options:
            if option.kind == kind and (not actor or option.actor == actor):
                return option
    return options[0]


def _play(scenario: Scenario) -> Run:
    world = new_world(scenario)
    trace: list[Action] = []
    for _ in range(MAX_STEPS):
        options = actions(world)
        if not options:
            break
        action = _attack_choice(world, options) if scenario.attacker else options[0]
        world = step(world, action)
        trace.append(action)
    return Run(world=world, trace=tuple(trace), finished=is_finished(world))


def _devices(hs: hsm.Homeserver, token: str) -> str:
    request = hsm.HttpRequest.get("/_matrix/client/v3/devices", access_token=token)
    _, response = hsm.handle(hs, request, now_ms=0)
    return ", ".join(device["device_id"] for device in json.loads(response.body)["devices"])


def _line(time_ms: int, who: str, text: str) -> str:
    return f"  {time_ms / 1000:6.1f} s  {_WHO.get(who, who):<16} {text}"


def _demo(args: argparse.Namespace) -> int:
    if args.replay is not None:
        return _replay(args.replay)
    generation = _GENERATIONS[args.generation]
    qr_on = DeviceRole(args.qr_on)
    seed = f"qrlogin demo {args.seed}".encode()
    scenario = Scenario(
        generation=generation, qr_on=qr_on, attacker=args.attacker, seed=seed, user_guess=_user_guess(seed)
    )
    start = new_world(scenario)
    token = dict(start.tokens)[EXISTING]
    user_id = f"@{USER}:{SERVER_NAME}"

    print(f"qrlogin demo: sign in with QR code, generation {_TITLES[generation]}")
    print(f"homeserver {BASE_URL} ({SERVER_NAME}), user {user_id}; the {qr_on.value} device shows the QR code")
    if args.attacker:
        print("an attacker is watching the screen that shows the QR code")
    print(f"\ndevices of {user_id} before: {_devices(start.hs, token)}\n")

    result = _play(scenario)
    world = result.world
    for time_ms, who, text in world.record.transcript:
        if who == "network" and not args.verbose:
            continue
        print(_line(time_ms, who, text))
        if text == "shows the QR code" and world.record.qr_payload is not None:
            code = qr.decode(world.record.qr_payload)
            print()
            print(render_terminal(world.record.qr_payload))
            print("\n".join(f"            {row}" for row in format_text(code).splitlines()))
            print()

    print(f"\ndevices of {user_id} after: {_devices(world.hs, token)}")
    verdict = check(result)
    print()
    print(f"outcome on the new device:      {_outcome(world, NEW)}")
    print(f"outcome on the existing device: {_outcome(world, EXISTING)}")
    if args.attacker:
        return _attack_summary(world, verdict.ok, verdict.guessed_attacker_code, verdict.violations)
    for violation in verdict.violations:
        print(f"invariant violated: {violation}")
    succeeded = all(_outcome(world, name).startswith("success") for name in (NEW, EXISTING))
    return 0 if succeeded and verdict.ok else 1


def _outcome(world: World, name: str) -> str:
    actor = world.actor(name)
    if actor is None:
        return "never started (the QR code was not scanned)"
    ended = outcome(actor.device)
    if ended is None:
        return "still waiting for an answer that will not come"
    result = ended.result
    if isinstance(result, ReportLoginSuccess):
        if result.secrets is not None:
            backup = " and the key backup key" if result.secrets.backup is not None else ""
            return f"success: signed in as {actor.device.config.device_id}, received the cross-signing keys{backup}"
        return "success: the new device is signed in and has the secrets"
    peer = ", reported by the other device" if result.by_peer else ""
    channel = f"; secure channel: {ended.channel_failure.value}" if ended.channel_failure is not None else ""
    session = f"; rendezvous session {ended.session_end.value}" if ended.session_end is not None else ""
    return f"failed: {result.reason}{peer}{channel}{session}"


def _attack_summary(world: World, ok: bool, guessed: bool, violations: tuple[str, ...]) -> int:
    attacker = world.actor(ATTACKER)
    ended = outcome(attacker.device) if attacker is not None else None
    result = ended.result if ended is not None else None
    secrets = isinstance(result, ReportLoginSuccess) and result.secrets is not None
    tokens = isinstance(result, ReportLoginSuccess) and result.tokens is not None
    print(f"the attacker's device:          {_outcome(world, ATTACKER)}")
    code = world.record.attacker_code
    typed = [code for _, code in world.record.typed]
    if code is not None and typed:
        verdict = "they differ" if code not in typed else "they are the same"
        print(f"the code of the attacker's channel was {code}; the user typed {', '.join(typed)}: {verdict}")
    print(f"the attacker obtained secrets: {'YES' if secrets else 'no'}; an access token: {'YES' if tokens else 'no'}")
    for violation in violations:
        print(f"invariant violated: {violation}")
    if guessed:
        print("the user's guess was the attacker's code (a 1 in 90 chance): the check code could not stop this one")
        return 1
    stopped = not secrets and not tokens and ok
    print("the attack was stopped" if stopped else "the attack was NOT stopped")
    return 0 if stopped else 1


def _replay(path: Path) -> int:
    """Play a counterexample back, step by step: each scheduled action and what it made each device see and do."""
    try:
        example = counterexample.load(path)
        result = counterexample.replay(example)
    except counterexample.CounterexampleError as exc:
        print(f"qrlogin demo: --replay: {exc}", file=sys.stderr)
        return 2
    scenario = example.scenario
    mode = "with the attacker" if scenario.attacker else "no attacker"
    print(f"qrlogin demo: replaying {path}")
    print(f"generation {_TITLES[scenario.generation]}; the {scenario.qr_on.value} device shows the QR code; {mode}")
    print(f"fault budget: {faults_label(scenario.faults)}; {len(example.choices)} scheduled actions")
    print(f"recorded violation: {example.violation}")
    world = new_world(scenario)
    shown = len(world.record.transcript)
    for line in world.record.transcript:
        print(_line(*line))
    for number, action in enumerate(result.trace, start=1):
        fair = "" if number <= len(example.choices) else ", the fair continuation"
        print(f"\n  step {number} (t={world.now_ms / 1000:.1f} s{fair}): {_describe_action(world, action)}")
        world = step(world, action)
        for line in world.record.transcript[shown:]:
            print(_line(*line))
        shown = len(world.record.transcript)
    print()
    for name in (NEW, EXISTING, *((ATTACKER,) if scenario.attacker else ())):
        print(
            f"outcome on the {_WHO[name] if name != ATTACKER else 'attacker' + chr(39) + 's device'}: "
            f"{_outcome(world, name)}"
        )
    verdict = check(result)
    if not verdict.violations:
        print("\nevery invariant holds: the recorded violation no longer happens")
        return 0
    for violation in verdict.violations:
        print(f"invariant violated: {violation}")
    return 1


def _describe_action(world: World, action: Action) -> str:
    """An action as a person reads it: which request or answer a network action moves."""
    if action.kind == "tick":
        return "time passes to the next timer"
    if action.kind == "delay":
        return "time passes to the next timer while requests wait (a delay)"
    if action.index < 0:
        return str(action)
    item = world.pending[action.index]
    request = f"{item.request.method} {urlsplit(item.request.target).path}"
    if item.response is None:
        what = f"the {_WHO[item.actor]}'s request {request}"
    else:
        what = f"the answer {item.response.status} to the {_WHO[item.actor]}'s {request}"
    verbs = {"deliver": "deliver", "drop": "lose", "duplicate": "duplicate"}
    return f"{verbs.get(action.kind, action.kind)} {what}"
