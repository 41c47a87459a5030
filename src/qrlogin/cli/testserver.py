"""``qrlogin testserver``: run the homeserver model over HTTP, for trying a client's sign-in with QR code.

The ASGI app (:class:`~qrlogin.adapters.homeserver_asgi.HomeserverApp`, on uvicorn) serves one in-memory
:mod:`qrlogin.homeserver` with the rendezvous for all three generations behind its hook, seeded from
:func:`os.urandom` at start. Its base URL is ``http://HOST:PORT`` (``https`` with ``--tls``) unless
``--public-base-url`` says otherwise, and its server name is the base URL's ``HOST:PORT``.

Device authorizations are approved by a signed-in user on the model's approval page (``/link``, the
``verification_uri``). With ``--auto-approve`` every one is approved for the first user as soon as it is created;
without it a user code typed on standard input (one per line) is approved for the first user too.

``--tls`` serves https with a certificate made at start (:mod:`qrlogin.cli._selfsigned`) for the host, the public
base URL's host, the server name, ``localhost`` and the loopback addresses. The certificate is written to
``--tls-cert`` for clients to trust; by default into a private temporary directory (mode 0700, so nobody can plant a
file or link at a guessable path in a shared ``/tmp``) that also holds the private key for uvicorn and that is
removed on exit.

``--rendezvous-create`` is MSC4388's creation policy (:class:`~qrlogin.homeserver.rendezvous.CreateMode`); the
default is ``open``, so that a new device without an account on this server can create the session and show the QR
code. ``--state FILE`` keeps accounts, devices, clients and tokens in SQLite
(:mod:`qrlogin.adapters.homeserver_state`); a ``--user`` that exists there keeps its devices and takes the given
password, and without ``--user`` the stored accounts are served as they are.

``--password-attempts``, ``--user-code-attempts`` and ``--attempt-window`` set the model's guessing limits
(:mod:`qrlogin.homeserver.limits`): failed passwords, and user codes matching no grant waiting for approval, per
account before further attempts are refused until the window that the first failure opened closes.
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import json
import os
import secrets
import signal
import socket
import sys
import tempfile
import threading
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from .. import homeserver as hsm
from ..homeserver import devices
from ..homeserver.limits import DEFAULT_PASSWORD_LIMIT, DEFAULT_USER_CODE_LIMIT, FailureLimit
from ..homeserver.oauth import DEVICE_AUTHORIZATION_PATH
from ..homeserver.rendezvous import CreateMode, install_rendezvous
from ..http import HttpRequest, HttpResponse
from . import _serving

if TYPE_CHECKING:
    from ..adapters.homeserver_asgi import AfterStep, HomeserverApp
    from ..adapters.homeserver_state import StateFile

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
    parser.add_argument("--tls", action="store_true", help="serve https with a self-signed certificate made at start")
    parser.add_argument(
        "--tls-cert",
        type=Path,
        default=None,
        metavar="PATH",
        help="where --tls writes its certificate (PEM) for clients to trust (default: a private temporary directory)",
    )
    parser.add_argument(
        "--rendezvous-create",
        choices=[mode.value for mode in CreateMode],
        default=CreateMode.OPEN.value,
        help="who may create rendezvous sessions (MSC4388): anyone, callers with an access token, nobody"
        " (default open)",
    )
    parser.add_argument(
        "--password-attempts",
        type=_serving.positive(int),
        default=DEFAULT_PASSWORD_LIMIT.max_failures,
        metavar="N",
        help="failed passwords per account (login, sign-in page, device deletion) before every attempt is refused"
        f" with 429 until the window closes (default {DEFAULT_PASSWORD_LIMIT.max_failures})",
    )
    parser.add_argument(
        "--user-code-attempts",
        type=_serving.positive(int),
        default=DEFAULT_USER_CODE_LIMIT.max_failures,
        metavar="N",
        help="user codes per account on /link that match no device grant waiting for approval before the page"
        f" answers 429 until the window closes (default {DEFAULT_USER_CODE_LIMIT.max_failures}, RFC 8628 5.1)",
    )
    parser.add_argument(
        "--attempt-window",
        type=_serving.positive(int),
        default=DEFAULT_PASSWORD_LIMIT.window_s,
        metavar="SECONDS",
        help="how long after an account's first failure its failures are counted, and the longest a refusal lasts"
        f" (default {DEFAULT_PASSWORD_LIMIT.window_s})",
    )
    parser.add_argument(
        "--state",
        type=Path,
        default=None,
        metavar="FILE",
        help="keep accounts, devices, clients and tokens in this SQLite file across restarts (default: memory)",
    )
    _serving.add_arguments(parser, log_level="warning", access_log=False)
    parser.set_defaults(func=run)


def build_homeserver(
    *,
    server_name: str,
    base_url: str,
    users: list[tuple[str, str]],
    poll_interval_s: int,
    rendezvous_create: CreateMode = CreateMode.OPEN,
    state: StateFile | None = None,
    password_limit: FailureLimit = DEFAULT_PASSWORD_LIMIT,
    user_code_limit: FailureLimit = DEFAULT_USER_CODE_LIMIT,
) -> tuple[hsm.Homeserver, list[str]]:
    """A freshly seeded homeserver with the rendezvous installed, ``state`` restored and ``users`` created (or given
    the password, if ``state`` has them); returns it and the user ids."""
    hs = hsm.new_homeserver(
        server_name=server_name,
        base_url=base_url,
        seed=os.urandom(32),
        poll_interval_s=poll_interval_s,
        password_limit=password_limit,
        user_code_limit=user_code_limit,
    )
    hs = install_rendezvous(hs, seed=os.urandom(32), create_mode=rendezvous_create)
    if state is not None:
        hs = state.restore(hs)
    user_ids = []
    for name, password in users:
        kept = hs.registry.accounts.get(devices.user_id_for(hs.registry, name))
        hs, user_id = hsm.add_user(hs, name, password)
        if kept is not None:  # a stored account keeps its devices and takes the password given now
            account = replace(kept, password_digest=hs.registry.accounts[user_id].password_digest)
            hs = replace(hs, registry=replace(hs.registry, accounts=hs.registry.accounts.set(user_id, account)))
        user_ids.append(user_id)
    if state is not None:
        state.save(hs)
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


def _chain(*hooks: AfterStep | None) -> AfterStep | None:
    present = [hook for hook in hooks if hook is not None]
    if not present:
        return None

    def after(hs: hsm.Homeserver, request: HttpRequest, response: HttpResponse, now_ms: int) -> hsm.Homeserver:
        for hook in present:
            hs = hook(hs, request, response, now_ms)
        return hs

    return after


def _certificate_names(host: str, base_url: str, server_name: str) -> list[str]:
    names = [urlsplit(base_url).hostname or "", urlsplit(f"//{server_name}").hostname or "", "localhost"]
    try:
        unspecified = ipaddress.ip_address(host).is_unspecified  # binding every address names none of them
    except ValueError:
        unspecified = False
    if not unspecified:
        names.insert(0, host)
    return [*names, "127.0.0.1", "::1"]


def _write_tls_files(args: argparse.Namespace, port: int, names: list[str], key_dir: str) -> tuple[Path, str]:
    """Make the certificate; write it where clients can read it and the key where only uvicorn will."""
    from ._selfsigned import self_signed

    made = self_signed(names, now=datetime.now(UTC))
    cert_path: Path = args.tls_cert or Path(key_dir) / f"qrlogin-testserver-{port}.pem"
    cert_path.write_bytes(made.certificate_pem)
    key_path = os.path.join(key_dir, "key.pem")
    with os.fdopen(os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as key_file:
        key_file.write(made.key_pem)
    return cert_path.resolve(), key_path


def run(args: argparse.Namespace) -> int:
    try:
        # The server extra is optional: import it only when the command runs.
        from ..adapters import uvicorn_runner  # noqa: F401  (uvicorn and httptools)
        from ..adapters.homeserver_asgi import HomeserverApp
        from ..adapters.homeserver_state import StateError, StateFile
    except ImportError:
        print("qrlogin testserver needs the 'server' extra: pip install 'qrlogin[server]'", file=sys.stderr)
        return 2
    sock = _serving.bind_or_explain("testserver", args.host, args.port)
    if sock is None:
        return 1
    private = tempfile.TemporaryDirectory(prefix="qrlogin-testserver-") if args.tls else contextlib.nullcontext("")
    with sock, private as key_dir:
        listening = _serving.listening_url(sock)
        if args.tls:
            listening = "https" + listening.removeprefix("http")
        base_url = (args.public_base_url or listening).rstrip("/")
        server_name = args.server_name or urlsplit(base_url).netloc
        state: StateFile | None = None
        try:
            if args.state is not None:
                state = StateFile(str(args.state), server_name=server_name)
            tls_files = (
                _write_tls_files(
                    args, sock.getsockname()[1], _certificate_names(args.host, base_url, server_name), key_dir
                )
                if args.tls
                else None
            )
        except (StateError, OSError) as exc:
            print(f"qrlogin testserver: {exc}", file=sys.stderr)
            return 1
        try:
            return _serve(
                args,
                sock,
                app_type=HomeserverApp,
                state=state,
                tls_files=tls_files,
                urls=(listening, base_url, server_name),
            )
        except StateError as exc:
            print(f"qrlogin testserver: {exc}", file=sys.stderr)
            return 1
        finally:
            if state is not None:
                state.close()


def _serve(
    args: argparse.Namespace,
    sock: socket.socket,
    *,
    app_type: type[HomeserverApp],
    state: StateFile | None,
    tls_files: tuple[Path, str] | None,
    urls: tuple[str, str, str],
) -> int:
    """Build the homeserver, announce it and serve until interrupted (the socket is bound, the files written)."""
    listening, base_url, server_name = urls
    mode = CreateMode(args.rendezvous_create)
    users: list[tuple[str, str]] = args.user
    hs, user_ids = build_homeserver(
        server_name=server_name,
        base_url=base_url,
        users=users,
        poll_interval_s=args.poll_interval,
        rendezvous_create=mode,
        state=state,
        password_limit=FailureLimit(max_failures=args.password_attempts, window_s=args.attempt_window),
        user_code_limit=FailureLimit(max_failures=args.user_code_attempts, window_s=args.attempt_window),
    )
    announced = [f"  user: {uid} password {password}" for uid, (_, password) in zip(user_ids, users, strict=True)]
    if not user_ids and len(hs.registry.accounts):
        user_ids = list(hs.registry.accounts)  # restored from --state, with the passwords they had
        announced = [f"  user: {uid} (restored, its password unchanged)" for uid in user_ids]
    elif not user_ids:
        password = secrets.token_urlsafe(12)
        hs, user_id = hsm.add_user(hs, DEFAULT_USER, password)
        if state is not None:
            state.save(hs)
        user_ids, announced = [user_id], [f"  user: {user_id} password {password}"]
    app = app_type(
        hs, after=_chain(auto_approver(user_ids[0]) if args.auto_approve else None, state.after if state else None)
    )
    lines = [
        f"qrlogin testserver: listening on {listening}",
        f"  base URL: {base_url}",
        f"  server name: {server_name}",
        *announced,
        f"  point a client at homeserver URL {base_url}"
        + (
            " (plain HTTP: the client must allow it, and QR codes then carry http:// URLs,"
            " which spec-following scanners refuse; use --tls or --public-base-url behind an https proxy)"
            if base_url.startswith("http://")
            else ""
        )
        + ";",
        f"  discovery: {base_url}/.well-known/matrix/client, {base_url}/_matrix/client/versions,",
        f"  {base_url}/_matrix/client/v1/auth_metadata",
    ]
    if tls_files is not None:
        lines.append(f"  certificate (self-signed, trust it in the client): {tls_files[0]}")
    lines.append(f"  rendezvous creation: {mode.value}")
    lines.append(
        f"  guessing limits per account: {args.password_attempts} failed passwords and {args.user_code_attempts}"
        f" unknown user codes in {args.attempt_window} s"
    )
    if state is not None:
        lines.append(f"  state: {args.state} ({len(hs.registry.accounts)} accounts)")
    lines.append(
        "  device authorizations: "
        + (
            f"approved at once for {user_ids[0]}"
            if args.auto_approve
            else f"type a user code here to approve it for {user_ids[0]}, or sign in at {base_url}/link"
        )
    )

    def announce() -> None:
        print("\n".join(lines), flush=True)
        if not args.auto_approve:
            threading.Thread(target=_approve_from_stdin, args=(app, user_ids[0]), daemon=True).start()

    if threading.current_thread() is threading.main_thread():
        # uvicorn shuts down gracefully on SIGTERM and then raises the signal again to die by it, which would skip
        # the cleanup around this call (the private key's directory, the state file); turn it into an exit instead.
        signal.signal(signal.SIGTERM, _exit_on_sigterm)
    tls = None if tls_files is None else (str(tls_files[0]), tls_files[1])
    _serving.run(app, sock, args, announce=announce, tls=tls)
    return 0


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(0)
