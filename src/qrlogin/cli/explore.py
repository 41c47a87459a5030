"""``qrlogin explore``: every interleaving of one simulated sign-in within a fault budget, and its invariants.

It explores (:mod:`qrlogin.sim.explore`) one scenario: a generation, the device that shows the QR code, with or
without the attacker, and a budget of faults (``--faults drops=1,cancels=1``). It prints the distinct states,
terminal states, transitions, states per second and every violated invariant. Each violation is written as a
counterexample file (:mod:`qrlogin.sim.counterexample`) that ``qrlogin demo --replay FILE`` plays back. Exit status 1
when an invariant was violated, or when ``--max-states`` cut the exploration short of complete.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .. import qr
from ..sim import counterexample
from ..sim.explore import Exploration, explore
from ..sim.matrix import FAULT_KINDS, faults_label, parse_faults
from ..sim.world import Scenario
from ..vocabulary import DeviceRole

__all__ = ["register"]

_GENERATIONS = {"v1": qr.Generation.V1, "v2": qr.Generation.V2, "v3": qr.Generation.V3}


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "explore", help="explore every interleaving of a simulated sign-in, with faults, and check its invariants"
    )
    parser.add_argument("--generation", choices=sorted(_GENERATIONS), default="v3", help="protocol generation")
    parser.add_argument("--qr-on", choices=("new", "existing"), default="new", help="which device shows the QR code")
    parser.add_argument("--attacker", action="store_true", help="add a shoulder-surfer who races the user's device")
    parser.add_argument(
        "--faults",
        default="none",
        metavar="KIND=N,...",
        help=f"fault budget of every schedule, e.g. drops=1,cancels=1 (kinds: {', '.join(FAULT_KINDS)})",
    )
    parser.add_argument("--jobs", type=int, default=1, metavar="N", help="processes to spread the search over")
    parser.add_argument(
        "--max-states", type=int, default=2_000_000, metavar="N", help="stop expanding after N distinct states"
    )
    parser.add_argument(
        "--counterexamples",
        type=Path,
        default=Path("counterexamples"),
        metavar="DIR",
        help="where to write a counterexample file per violation (default ./counterexamples)",
    )
    parser.set_defaults(func=_explore)


def _progress(states: int) -> None:
    print(f"  ... {states:,} distinct states", file=sys.stderr, flush=True)


def _explore(args: argparse.Namespace) -> int:
    try:
        faults = parse_faults(args.faults)
    except ValueError as exc:
        print(f"qrlogin explore: --faults: {exc}", file=sys.stderr)
        return 2
    if args.jobs < 1 or args.max_states < 1:
        print("qrlogin explore: --jobs and --max-states must be at least 1", file=sys.stderr)
        return 2
    if faults.overwrites and not args.attacker:
        print("qrlogin explore: only the attacker overwrites the rendezvous (add --attacker)", file=sys.stderr)
        return 2
    scenario = Scenario(
        generation=_GENERATIONS[args.generation],
        qr_on=DeviceRole(args.qr_on),
        attacker=args.attacker,
        faults=faults,
    )
    mode = "with the attacker" if args.attacker else "no attacker"
    print(f"exploring {args.generation}, QR code on the {args.qr_on} device, {mode}, faults: {faults_label(faults)}")
    result = explore(scenario, max_states=args.max_states, jobs=args.jobs, progress=_progress)
    _report(result)
    if result.cut_off:
        print(f"incomplete: {result.cut_off:,} states were cut off at --max-states {args.max_states:,}")
    if not result.violations:
        print("every invariant held in every explored run")
        return 1 if result.cut_off else 0
    args.counterexamples.mkdir(parents=True, exist_ok=True)
    for number, violation in enumerate(result.violations, start=1):
        name = f"{args.generation}-{args.qr_on}{'-attacker' if args.attacker else ''}-{number}.json"
        path = args.counterexamples / name
        counterexample.write(path, scenario, violation.choices, violation.message)
        print(f"invariant violated: {violation}")
        print(f"  replay with: qrlogin demo --replay {path}")
    return 1


def _report(result: Exploration) -> None:
    print(f"  distinct states   {result.distinct_states:>12,}")
    print(f"  terminal states   {result.terminal_states:>12,}")
    print(f"  transitions       {result.transitions:>12,}")
    print(f"  longest schedule  {result.max_depth:>12,} actions")
    print(f"  time              {result.seconds:>12.1f} s")
    print(f"  states per second {result.states_per_second:>12,.0f}")
    print(f"  transitions per s {result.transitions_per_second:>12,.0f}")
    if result.handed_over:
        print(f"  handed over       {result.handed_over:>12,} states between processes")
