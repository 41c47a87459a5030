"""Harness for the matrix-js-sdk 43.0.0 interop tests: a real HTTP homeserver and the js-sdk peer.

Two parts, all on loopback (the qrlogin side is the packaged runner, :mod:`qrlogin.runner`, whose ``connect_to``
maps the same public names to the loopback port):

- :class:`HomeserverOverHttp` serves the pure homeserver model (:mod:`qrlogin.homeserver`, with the rendezvous
  store behind its hook) over real HTTP from a thread: every request is one ``handle`` step under a lock, with
  ``now_ms`` read from the shared wall clock. The model answers as the public ``https://`` names in
  :data:`BASE_URL` / :data:`SERVER_NAME`; both peers map exactly those names (and :data:`RENDEZVOUS_URL`'s host
  when the rendezvous is a separate ``qrlogin serve``) to loopback ports and refuse any other host (a deployed
  client would use DNS and TLS; nothing else differs).
- :class:`JsSdkPeer` runs ``interop/node/js_sdk_login_peer.mjs`` (js-sdk's ``MSC4108SignInWithQR`` and friends,
  unchanged) and exchanges its line protocol: events from a reader thread, commands on stdin.

:func:`require_js_sdk` fails the test under ``CI=true`` when node or the pinned package is missing, else skips.
"""

from __future__ import annotations

import json
import queue
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlsplit

from qrlogin import homeserver as hsm
from qrlogin.homeserver.rendezvous import install_rendezvous
from tests.peers import npm_package_problem, require_peer

ROOT = Path(__file__).resolve().parents[2]
NODE_PROJECT = ROOT / "interop" / "node"
PEER_SCRIPT = NODE_PROJECT / "js_sdk_login_peer.mjs"
JS_SDK_PACKAGE = NODE_PROJECT / "node_modules" / "matrix-js-sdk" / "package.json"
PINNED_VERSION = "43.0.0"
T = TypeVar("T")

SERVER_NAME = "qrlogin.test"  # RFC 6761 reserved: never resolvable, so nothing can leave the machine
BASE_URL = "https://matrix.qrlogin.test"
RENDEZVOUS_URL = "https://rendezvous.qrlogin.test"  # the public name of a separate `qrlogin serve`
PASSWORD = "correct horse battery staple"
EVENT_TIMEOUT_S = 30.0


def js_sdk_problem() -> str | None:
    return npm_package_problem(JS_SDK_PACKAGE, "matrix-js-sdk", PINNED_VERSION)


def require_js_sdk() -> None:
    require_peer(js_sdk_problem(), "matrix-js-sdk interop peer")


_START_MONOTONIC = time.monotonic()
_START_UNIX_MS = int(time.time() * 1000)


def now_ms() -> int:
    """The one clock of a test, read by the homeserver model and the qrlogin device.

    It counts Unix milliseconds (steadily, from one reading of the wall clock): the model's v1 ``Expires`` header is
    built from it, and js-sdk arms its expiry timer with ``Expires - Date.now()``, so a clock starting at zero would
    make every session look expired to js-sdk at once.
    """
    return _START_UNIX_MS + int((time.monotonic() - _START_MONOTONIC) * 1000)


# ------------------------------------------------------------------------------------------------ homeserver


class HomeserverOverHttp:
    """The homeserver model behind a loopback HTTP server. ``hs`` is read and replaced only under ``lock``."""

    def __init__(self, hs: hsm.Homeserver) -> None:
        self.hs = hs
        self.lock = threading.Lock()
        self.requests: list[tuple[str, str, int]] = []  # (method, path, status), for assertions on quirks
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _serve(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else b""
                parts = urlsplit(self.path)
                request = hsm.HttpRequest(
                    method=self.command, target=self.path, headers=tuple(self.headers.items()), body=body
                )
                with owner.lock:
                    owner.hs, response = hsm.handle(owner.hs, request, now_ms=now_ms())
                    owner.requests.append((self.command, parts.path, response.status))
                self.send_response(response.status)
                for name, value in response.headers:
                    if name.lower() != "content-length":
                        self.send_header(name, value)
                self.send_header("content-length", str(len(response.body)))
                self.end_headers()
                self.wfile.write(response.body)

            do_GET = do_POST = do_PUT = do_DELETE = _serve

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.loopback = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> HomeserverOverHttp:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)

    @property
    def routes(self) -> dict[str, str]:
        """The public hosts this server answers for, mapped to its loopback origin."""
        return {SERVER_NAME: self.loopback, urlsplit(BASE_URL).netloc: self.loopback}

    def approve(self, verification_uri: str, user_id: str) -> hsm.ConsentResult:
        """The user consents in the browser at ``verification_uri`` (its ``user_code`` query parameter)."""
        user_code = dict(parse_qsl(urlsplit(verification_uri).query)).get("user_code", "")
        with self.lock:
            self.hs, result = hsm.approve_user_code(self.hs, user_code, user_id, now_ms=now_ms())
        return result


def new_homeserver(seed: bytes = b"js-sdk interop") -> tuple[hsm.Homeserver, str, str]:
    """A homeserver with alice signed in on LAPTOP; returns it, her user id and LAPTOP's access token.

    The device grant's poll interval is 1 s (the model's default is RFC 8628's 5 s) to keep the runs short.
    """
    hs = hsm.new_homeserver(server_name=SERVER_NAME, base_url=BASE_URL, seed=seed, poll_interval_s=1)
    hs = install_rendezvous(hs, seed=seed + b" rendezvous")
    hs, user_id = hsm.add_user(hs, "alice", PASSWORD)
    login = {"type": "m.login.password", "user": "alice", "password": PASSWORD, "device_id": "LAPTOP"}
    hs, response = hsm.handle(hs, hsm.HttpRequest.json("POST", "/_matrix/client/v3/login", login), now_ms=0)
    token = json.loads(response.body)["access_token"]
    assert isinstance(token, str)
    return hs, user_id, token


@contextmanager
def serve(hs: hsm.Homeserver) -> Iterator[HomeserverOverHttp]:
    with HomeserverOverHttp(hs) as server:
        yield server


# ------------------------------------------------------------------------------------------------- js-sdk peer


class JsSdkPeer:
    """One js-sdk flow in one role, in its own node process."""

    def __init__(self, config: dict[str, Any], *, log_path: Path) -> None:
        node = shutil.which("node")
        assert node is not None
        self._log = log_path.open("w", encoding="utf-8")
        self._process = subprocess.Popen(
            [node, str(PEER_SCRIPT), json.dumps(config)],
            cwd=NODE_PROJECT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
            encoding="utf-8",
        )
        self.log_path = log_path
        self.events: queue.Queue[dict[str, Any]] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        stdout = self._process.stdout
        assert stdout is not None
        for line in stdout:
            self.events.put(json.loads(line))
        self.events.put({"event": "exited"})

    def send(self, op: str, **fields: Any) -> None:
        stdin = self._process.stdin
        assert stdin is not None
        stdin.write(json.dumps({"op": op, **fields}) + "\n")
        stdin.flush()

    def poll(self, timeout_s: float) -> dict[str, Any] | None:
        try:
            event = self.events.get(timeout=timeout_s)
        except queue.Empty:
            return None
        return event

    def close(self) -> None:
        if self._process.stdin is not None:
            self._process.stdin.close()
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait(timeout=10)
        self._reader.join(timeout=10)
        if self._process.stdout is not None:
            self._process.stdout.close()
        self._log.close()

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_path.read_text(encoding="utf-8").splitlines()[-lines:])
