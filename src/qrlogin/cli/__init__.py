"""The ``qrlogin`` command line: thin wrappers over the pure core.

Each subcommand lives in its own module exposing ``register(subparsers)``, which adds its parser and sets
``func`` to a callable taking the parsed arguments and returning an exit status. Errors the user can cause (bad
input, an unreachable server) are printed as one line on stderr with a non-zero status, never as a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from importlib import import_module

from ..errors import QrLoginError

__all__ = ["Handler", "build_parser", "main"]

# Subcommand modules, in the order `qrlogin --help` lists them.
_SUBCOMMANDS = (
    "demo",
    "explore",
    "qr",
    "channel",
    "serve",
    "testserver",
    "check_server",
    "login",
    "link",
    "check_client",
)

Handler = Callable[[argparse.Namespace], int]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="qrlogin", description="Matrix 'Sign in with QR code', sans-IO.")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in _SUBCOMMANDS:
        import_module(f"{__name__}.{name}").register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler: Handler = args.func
    try:
        return handler(args)
    except QrLoginError as exc:
        print(f"qrlogin: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
