"""``qrlogin check-server URL``: exercise a live rendezvous server and print a pass/fail table.

Exit status: 0 when no check failed (warnings allowed unless ``--strict``), 1 otherwise, 2 when the ``client`` extra
(httpx) is missing. ``--other-instance URL`` adds the multi-instance checks (two base URLs of one deployment);
``--rate-limit N`` adds the rate-limit checks. Whatever the server answers, the result is a table, never a traceback
(:mod:`qrlogin.adapters.conformance`).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ..rendezvous._http import ApiGeneration
from . import _serving

__all__ = ["main", "register", "run"]


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("check-server", help="check a live rendezvous server against the texts")
    parser.add_argument("url", help="the server's base URL, e.g. http://127.0.0.1:8008")
    parser.add_argument("--generation", choices=[g.value for g in ApiGeneration], default="v3")
    parser.add_argument("--prefix", default=None, help="rendezvous path (default: the generation's unstable path)")
    parser.add_argument("--stable", action="store_true", help="expect the stable error codes")
    parser.add_argument("--expiry", action="store_true", help="also wait for a session to expire")
    parser.add_argument("--max-wait", type=float, default=330.0, help="longest expiry wait in seconds")
    parser.add_argument("--strict", action="store_true", help="treat warnings as failures")
    parser.add_argument(
        "--other-instance",
        metavar="URL",
        default=None,
        help="base URL of a second instance of the same deployment: check that both serve one set of sessions",
    )
    parser.add_argument(
        "--rate-limit",
        metavar="N",
        type=_serving.positive(int),
        default=None,
        help="also send up to N writes, then N creates, as fast as possible and expect a well-formed 429 "
        "(spends this client's allowance: runs last)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        from ..adapters.conformance import check_server, render_table
    except ImportError:
        print("qrlogin check-server needs the 'client' extra: pip install 'qrlogin[client]'", file=sys.stderr)
        return 2
    generation = ApiGeneration(args.generation)
    findings = check_server(
        args.url,
        generation,
        prefix=args.prefix,
        stable=args.stable,
        expiry=args.expiry,
        max_wait_s=args.max_wait,
        other_url=args.other_instance,
        rate_limit_probe=args.rate_limit,
    )
    also = f" and {args.other_instance}" if args.other_instance else ""
    print(f"rendezvous {generation.value} at {args.url}{also}")
    print(render_table(findings))
    bad = {"fail", "warn"} if args.strict else {"fail"}
    failed = [f for f in findings if f.status in bad]
    counts = {status: sum(f.status == status for f in findings) for status in ("pass", "warn", "fail", "skip")}
    print("\n" + ", ".join(f"{n} {status}" for status, n in counts.items()))
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    """``python -m qrlogin.cli.check_server ...``: the same command without going through the full CLI."""
    parser = argparse.ArgumentParser(prog="qrlogin")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["check-server", *(sys.argv[1:] if argv is None else argv)])
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
