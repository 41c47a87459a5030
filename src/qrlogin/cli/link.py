"""``qrlogin link HOMESERVER``: let a new device in from an account signed in here (the runner's existing device).

The account is given by ``--access-token-file`` (a file holding an access token) or ``--user``/``--password`` (a
password login first). ``--secrets-file`` holds what is handed to the new device: the ``m.login.secrets`` content
(``cross_signing`` private keys and, optionally, ``backup``) as JSON. Without one, an account that has no
cross-signing yet (a test account) hands over freshly generated cross-signing keys, and a warning says so.

It shows a QR code for the new device to scan, or scans the new device's code (``--qr HEX|BASE64|-``, or
``--qr-image FILE`` with the ``qr-image`` extra). Before opening the consent page it asks whether to sign the new
device in (``--yes`` answers for the user and does not wait for the page: for ``qrlogin testserver --auto-approve``).
``--events json`` speaks the line protocol of ``docs/events.md``. Exit status 0 when the new device is in, 1 otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from typing import Any

from .. import qr
from .._json import JsonError, loads_object
from .._secret import Secret
from ..errors import LocalProtocolError
from ..login.messages import CrossSigningKeys, Secrets, message_from_json
from ._signin import add_common_arguments, options, qr_to_scan, run_session

__all__ = ["read_secrets", "register", "run"]


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("link", help="sign a new device in from this account with a QR code")
    parser.add_argument("homeserver", help="server name or base URL of the account's homeserver")
    add_common_arguments(parser)
    parser.add_argument("--access-token-file", metavar="FILE", help="a file holding the account's access token")
    parser.add_argument("--user", help="sign in with this user name (with --password)")
    parser.add_argument("--password", help="the password for --user")
    parser.add_argument("--secrets-file", metavar="FILE", help="m.login.secrets content to hand over (JSON)")
    parser.add_argument("--yes", action="store_true", help="approve signing the new device in without asking")
    parser.set_defaults(func=run)


def read_secrets(path: str | None) -> Secrets:
    """The secrets in ``path`` (``m.login.secrets`` content, ``type`` optional), or new cross-signing keys."""
    if path is None:
        print(
            "qrlogin link: no --secrets-file: handing over newly generated cross-signing keys (for an account "
            "without cross-signing)",
            file=sys.stderr,
        )
        keys = CrossSigningKeys(
            master_key=Secret(os.urandom(32)),
            self_signing_key=Secret(os.urandom(32)),
            user_signing_key=Secret(os.urandom(32)),
        )
        return Secrets(cross_signing=keys)
    try:
        with open(path, "rb") as source:
            content = loads_object(source.read(), max_bytes=65_536)
    except OSError as exc:
        raise LocalProtocolError(f"cannot read {path}: {exc.strerror or exc}") from None
    except JsonError as exc:
        raise LocalProtocolError(f"{path} is not a JSON object: {exc}") from None
    message = message_from_json({"type": "m.login.secrets", **content})
    if not isinstance(message, Secrets):
        raise LocalProtocolError(f"{path} does not hold m.login.secrets content")
    return message


def _access_token(path: str) -> Secret:
    try:
        with open(path, encoding="utf-8") as source:
            token = source.read().strip()
    except OSError as exc:
        raise LocalProtocolError(f"cannot read {path}: {exc.strerror or exc}") from None
    if not token:
        raise LocalProtocolError(f"{path} is empty")
    return Secret(token.encode())


def run(args: argparse.Namespace) -> int:
    try:
        import httpx  # noqa: F401 - the client extra: checked before anything is shown
    except ImportError:
        print("qrlogin link needs the 'client' extra: pip install 'qrlogin[client]'", file=sys.stderr)
        return 2
    from .. import runner

    if (args.access_token_file is None) == (args.user is None):
        raise LocalProtocolError("give --access-token-file, or --user and --password")
    if args.user is not None and args.password is None:
        raise LocalProtocolError("--user needs --password")
    payload = qr_to_scan(args)
    secrets = read_secrets(args.secrets_file)
    run_options = options(args)

    async def session(user: runner.UserInterface, cancel: asyncio.Event) -> runner.SignInResult:
        deadline_ms = runner.transport.now_ms() + int(run_options.timeout_s * 1000)
        async with runner.open_http_client(run_options.transport) as http:
            transport = runner.Transport(http, run_options.transport)
            found = await runner.discover(transport, args.homeserver, deadline_ms=deadline_ms)
            if args.access_token_file is not None:
                token = _access_token(args.access_token_file)
            else:
                token = await runner.password_login(
                    transport, found.base_url, args.user, args.password, deadline_ms=deadline_ms
                )
        return await runner.link(
            args.homeserver,
            user,
            access_token=token,
            secrets=secrets,
            qr_payload=payload,
            generation=qr.Generation(args.generation),
            options=run_options,
            cancel=cancel,
            discovered=found,
        )

    result = asyncio.run(run_session(args, session, assume_yes=args.yes))
    if not result.succeeded:
        if args.events == "text":
            by = " (reported by the other device)" if result.by_peer else ""
            print(f"qrlogin link: the new device was not signed in: {result.outcome}{by}", file=sys.stderr)
        return 1
    if args.events == "text":
        print(f"signed in device {result.device_id} to {result.user_id}")
    return 0
