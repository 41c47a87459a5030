"""``qrlogin testserver``: run the homeserver model over HTTP, for trying a client's sign-in with QR code.

The ASGI app (:class:`~qrlogin.adapters.homeserver_asgi.HomeserverApp`, on uvicorn) serves one in-memory
:mod:`qrlogin.homeserver` with the rendezvous for all three generations behind its hook, seeded from
:func:`os.urandom` at start. Its base URL is ``http://HOST:PORT`` and its server name ``HOST:PORT``.

Device authorizations are approved by a signed-in user on the model's approval page (``/link``, the
``verification_uri``). With ``--auto-approve`` every one is approved for the first user as soon as it is created;
without it a user code typed on standard input (one per line) is approved for the first user too.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import sys
import threading
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from .. import homeserver as hsm
from ..homeserver.oauth import DEVICE_AUTHORIZATION_PATH
from ..homeserver.rendezvous import install_rendezvous
from ..http import HttpRequest, HttpResponse
from . import _serving

if TYPE_CHECKING:
    from ..adapters.homeserver_asgi import AfterStep, HomeserverApp

__all__ = ["auto_approver", "build_homeserver", "register", "run"]

DEFAULT_USER = "alice"


def _user(text: str) -> tuple[str, str]:
    name, sep, password = text.partition(":")
    if not sep or not name or not password:
        raise argparse.ArgumentTypeError("a user is NAME:PASSWORD")
    return name, password


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("testserver", help="run an in-memory homeserver for trying sign-in with QR code")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8008, help="port to bind, 0 for any free one (default 8008)")
    parser.add_argument(
        "--user",
        type=_user,
        action="append",
        default=[],
        metavar="NAME:PASSWORD",
        help=f"an account to create (repeatable; default {DEFAULT_USER} with a generated password)",
    )
    parser.add_argument(
        "--auto-approve", action="store_true", help="approve every device authorization for the first user at once"
    )
    parser.add_argument(
        "--poll-interval", type=int, default=5, help="device grant poll interval in seconds (default 5, RFC 8628)"
    )
    parser.add_argument(
        "--public-base-url",
        default=None,
        help="the base URL the server answers as, e.g. an https:// proxy in front of it (default http://HOST:PORT)",
    )
    parser.add_argument("--server-name", default=None, help="the server name (default: the public base URL's host)")
    _serving.add_arguments(parser, log_level="warning", access_log=False)
    parser.set_defaults(func=run)


def build_homeserver(
    *, server_name: str, base_url: str, users: list[tuple[str, str]], poll_interval_s: int
) -> tuple[hsm.Homeserver, list[str]]:
    """A freshly seeded homeserver with the rendezvous installed and ``users`` created; returns it and the user ids."""
    hs = hsm.new_homeserver(
        server_name=server_name, base_url=base_url, seed=os.urandom(32), poll_interval_s=poll_interval_s
    )
    hs = install_rendezvous(hs, seed=os.urandom(32))
    user_ids = []
    for name, password in users:
        hs, user_id = hsm.add_user(hs, name, password)
        user_ids.append(user_id)
    return hs, user_ids


def auto_approver(user_id: str) -> AfterStep:
    """An ``after`` hook approving, for ``user_id``, each device authorization the step just created."""

    def after(hs: hsm.Homeserver, request: HttpRequest, response: HttpResponse, now_ms: int) -> hsm.Homeserver:
        if request.path != DEVICE_AUTHORIZATION_PATH or response.status != 200:
            return hs
        user_code = json.loads(response.body)["user_code"]
        hs, _ = hsm.approve_user_code(hs, user_code, user_id, now_ms=now_ms)
        return hs

    return after


def _approve_from_stdin(app: HomeserverApp, user_id: str) -> None:
    for line in sys.stdin:
        code = line.strip()
        if not code:
            continue

        def approve(hs: hsm.Homeserver, now_ms: int, code: str = code) -> tuple[hsm.Homeserver, hsm.ConsentResult]:
            return hsm.approve_user_code(hs, code, user_id, now_ms=now_ms)

        print(f"qrlogin testserver: {code}: {app.update(approve).value}", flush=True)


def run(args: argparse.Namespace) -> int:
    try:
        # The server extra is optional: import it only when the command runs.
        from ..adapters import uvicorn_runner  # noqa: F401  (uvicorn and httptools)
        from ..adapters.homeserver_asgi import HomeserverApp
    except ImportError:
        print("qrlogin testserver needs the 'server' extra: pip install 'qrlogin[server]'", file=sys.stderr)
        return 2
    users: list[tuple[str, str]] = args.user or [(DEFAULT_USER, secrets.token_urlsafe(12))]
    sock = _serving.bind_or_explain("testserver", args.host, args.port)
    if sock is None:
        return 1
    listening = _serving.listening_url(sock)
    base_url = (args.public_base_url or listening).rstrip("/")
    server_name = args.server_name or urlsplit(base_url).netloc
    try:
        hs, user_ids = build_homeserver(
            server_name=server_name, base_url=base_url, users=users, poll_interval_s=args.poll_interval
        )
    except Exception:
        sock.close()
        raise
    app = HomeserverApp(hs, after=auto_approver(user_ids[0]) if args.auto_approve else None)
    lines = [
        f"qrlogin testserver: listening on {listening}",
        f"  base URL: {base_url}",
        f"  server name: {server_name}",
        *(f"  user: {uid} password {password}" for uid, (_, password) in zip(user_ids, users, strict=True)),
        f"  point a client at homeserver URL {base_url}"
        + (
            " (plain HTTP: the client must allow it, and QR codes then carry http:// URLs,"
            " which spec-following scanners refuse; use --public-base-url behind an https proxy)"
            if base_url.startswith("http://")
            else ""
        )
        + ";",
        f"  discovery: {base_url}/.well-known/matrix/client, {base_url}/_matrix/client/versions,",
        f"  {base_url}/_matrix/client/v1/auth_metadata",
        "  device authorizations: "
        + (
            f"approved at once for {user_ids[0]}"
            if args.auto_approve
            else f"type a user code here to approve it for {user_ids[0]}, or sign in at {base_url}/link"
        ),
    ]

    def announce() -> None:
        print("\n".join(lines), flush=True)
        if not args.auto_approve:
            threading.Thread(target=_approve_from_stdin, args=(app, user_ids[0]), daemon=True).start()

    _serving.run(app, sock, args, announce=announce)
    return 0
