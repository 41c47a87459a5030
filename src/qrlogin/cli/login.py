"""``qrlogin login [HOMESERVER]``: sign this machine in as a new device with a QR code (the runner's new device).

It shows a QR code for a signed-in device to scan (HOMESERVER is where the rendezvous session is created), or scans
one given with ``--qr`` / ``--qr-image`` (the homeserver then comes from the code). It asks for the check code when it
must, shows the user code and the progress, and when the sign-in succeeds writes the credentials as JSON to ``--out``
(created with mode 0600) and prints the user and device ids. Tokens are printed only with ``--show-tokens``.
``--events json`` speaks the line protocol of ``docs/events.md`` instead of text. The exit status is 0 when signed
in, 1 when the sign-in ended otherwise, 2 when the ``client`` extra is missing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from typing import Any

from .. import qr
from ..errors import LocalProtocolError
from ._signin import add_common_arguments, options, qr_to_scan, run_session

__all__ = ["register", "run", "write_credentials"]


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("login", help="sign this machine in as a new device with a QR code")
    parser.add_argument("homeserver", nargs="?", help="server name or base URL (needed unless scanning)")
    add_common_arguments(parser)
    parser.add_argument("--out", metavar="FILE", help="write the credentials here as JSON (mode 0600)")
    parser.add_argument("--device-id", help="the device id to ask for (default: a random one)")
    parser.add_argument("--client-id", help="a statically registered OAuth client id (default: register one)")
    parser.add_argument("--show-tokens", action="store_true", help="also print the access and refresh tokens")
    parser.set_defaults(func=run)


def write_credentials(path: str, content: dict[str, Any]) -> None:
    """Write ``content`` to ``path`` readable by its owner only (mode 0600, also when the file existed)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        os.fchmod(out.fileno(), 0o600)
        json.dump(content, out, indent=2)
        out.write("\n")


def run(args: argparse.Namespace) -> int:
    try:
        import httpx  # noqa: F401 - the client extra: checked before anything is shown
    except ImportError:
        print("qrlogin login needs the 'client' extra: pip install 'qrlogin[client]'", file=sys.stderr)
        return 2
    from .. import runner

    payload = qr_to_scan(args)
    if payload is None and args.homeserver is None:
        raise LocalProtocolError("give HOMESERVER to show a QR code, or --qr/--qr-image to scan one")
    run_options = options(args)

    async def session(user: runner.UserInterface, cancel: asyncio.Event) -> runner.SignInResult:
        return await runner.login(
            args.homeserver,
            user,
            qr_payload=payload,
            generation=qr.Generation(args.generation),
            device_id=args.device_id,
            client_id=args.client_id,
            options=run_options,
            cancel=cancel,
        )

    result = asyncio.run(run_session(args, session))
    if not result.succeeded:
        if args.events == "text":
            by = " (reported by the other device)" if result.by_peer else ""
            print(f"qrlogin login: not signed in: {result.outcome}{by}", file=sys.stderr)
        return 1
    if args.out is not None:
        write_credentials(args.out, result.credentials())
    if args.events == "text":
        print(f"signed in as {result.user_id}, device {result.device_id}")
        if args.out is not None:
            print(f"credentials written to {args.out}")
    if args.show_tokens:
        credentials = result.credentials()
        tokens = {name: credentials[name] for name in ("access_token", "refresh_token")}
        print(json.dumps({"event": "tokens", **tokens}) if args.events == "json" else json.dumps(tokens))
    return 0
