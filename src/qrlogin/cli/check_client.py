"""``qrlogin check-client --shim TEMPLATE``: grade a client's sign-in with QR code against the texts.

The suite plays the other device and the homeserver and runs each scenario against a fresh run of the shim command
(:mod:`qrlogin.check_client`; docs/conformance.md). One line per scenario and target: grade, level, name, target,
evidence. Exit status: 0 when no MUST failed and fuzzing found nothing, 1 otherwise, 2 when the ``server`` extra
(uvicorn) is missing or the arguments are wrong.
"""

from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path
from typing import Any

from .. import qr
from ..vocabulary import DeviceRole, QrSide

__all__ = ["main", "register", "run"]

_GENERATIONS = {"v1": qr.Generation.V1, "v2": qr.Generation.V2, "v3": qr.Generation.V3}


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "check-client", help="grade a client's sign-in with QR code: the suite plays the other device and the server"
    )
    parser.add_argument(
        "--shim",
        required=False,
        help="the command that runs the client, with {placeholders} (docs/conformance.md lists them)",
    )
    parser.add_argument("--role", choices=["new", "existing"], action="append", help="the client's role (default both)")
    parser.add_argument(
        "--side", choices=["shows", "scans"], action="append", help="the client's side of the QR code (default both)"
    )
    parser.add_argument("--generation", choices=sorted(_GENERATIONS), action="append", help="default v1")
    parser.add_argument("--scenario", nargs="+", action="extend", metavar="NAME", help="only these scenarios")
    parser.add_argument("--json", type=Path, metavar="REPORT", help="also write the report as JSON")
    parser.add_argument("--fuzz", type=int, default=0, metavar="N", help="also play N mutated runs")
    parser.add_argument("--seed", type=int, default=0, metavar="S", help="the fuzz runs' seed (default 0)")
    parser.add_argument("--jobs", type=int, default=4, metavar="J", help="runs played at once (default 4)")
    parser.add_argument("--no-scenarios", action="store_true", help="fuzz only")
    parser.add_argument("--list", action="store_true", help="list the scenarios with their rules and exit")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        import uvicorn  # noqa: F401  (the served homeserver needs it)

        from ..check_client.run import Target
        from ..check_client.scenarios import SCENARIOS
        from ..check_client.suite import FuzzFinding, ScenarioResult, run_fuzz, run_suite
    except ImportError:
        print("qrlogin check-client needs the 'server' extra: pip install 'qrlogin[server]'", file=sys.stderr)
        return 2
    if args.list:
        for scenario in SCENARIOS:
            print(f"{scenario.name:30} {scenario.level.value:6} {scenario.rule}\n{'':37} {scenario.checks}")
        return 0
    if not args.shim:
        print("qrlogin check-client: --shim is required (or --list)", file=sys.stderr)
        return 2
    targets = [
        Target(DeviceRole(role), QrSide(side), _GENERATIONS[generation])
        for generation, role, side in itertools.product(
            args.generation or ["v1"], args.role or ["new", "existing"], args.side or ["shows", "scans"]
        )
    ]

    def print_result(result: ScenarioResult) -> None:
        print(
            f"{result.grade:4}  {result.level:6} {result.scenario:30} {result.target:20} {result.evidence}", flush=True
        )

    def print_finding(finding: FuzzFinding) -> None:
        print(f"fuzz  run {finding.run} {finding.target}: {finding.mutation}: {finding.finding}", flush=True)

    try:
        names = None if args.no_scenarios else args.scenario
        report = run_suite(
            args.shim, [] if args.no_scenarios else targets, names=names, jobs=args.jobs, on_result=print_result
        )
    except KeyError as exc:
        print(f"qrlogin check-client: unknown scenario {exc.args[0]} (see --list)", file=sys.stderr)
        return 2
    if args.fuzz:
        run_fuzz(
            args.shim, targets, runs=args.fuzz, seed=args.seed, report=report, jobs=args.jobs, on_finding=print_finding
        )
    counts = {grade: sum(r.grade == grade for r in report.results) for grade in ("pass", "warn", "fail", "skip")}
    line = ", ".join(f"{n} {grade}" for grade, n in counts.items())
    print(f"\n{line}; {len(report.must_failed)} MUST failed", end="")
    print(f"; fuzz: {report.fuzz_runs} runs, {len(report.findings)} findings" if args.fuzz else "")
    if args.json is not None:
        report.write_json(args.json)
    return 1 if report.must_failed or report.findings else 0


def main(argv: list[str] | None = None) -> int:
    """``python -m qrlogin.cli.check_client ...``: the same command without going through the full CLI."""
    parser = argparse.ArgumentParser(prog="qrlogin")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["check-client", *(sys.argv[1:] if argv is None else argv)])
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
