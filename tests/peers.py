"""Start and stop real servers on loopback for the tests: Synapse 1.163, ``qrlogin serve`` and ``qrlogin testserver``.

Synapse comes from ``scripts/peers.d/synapse.sh`` (``.peers/synapse-venv``). Its config is generated here, once per
test session, with both rendezvous APIs on (docs/protocol.md §10): v1 at
``/_matrix/client/unstable/org.matrix.msc4108`` and v3 at ``/_matrix/client/unstable/io.element.msc4388``. Waits are
bounded; a server that does not answer in time fails the test run. When Synapse is not installed the tests are
skipped locally but fail when ``CI=true``.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

ROOT = Path(__file__).resolve().parent.parent
SYNAPSE_PYTHON = ROOT / ".peers" / "synapse-venv" / "bin" / "python"
START_TIMEOUT_S = 60.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_until_up(url: str, process: subprocess.Popen[Any], timeout_s: float = START_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with status {process.returncode} before answering {url}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=1.0).status_code < 500:
                return
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer within {timeout_s} s")


def stop(process: subprocess.Popen[Any]) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


def require_peer(problem: str | None, peer: str) -> None:
    """The one rule for every real peer: a missing one fails the test under ``CI=true`` and skips it elsewhere."""
    if problem is None:
        return
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"the {peer} is required in CI: {problem}")
    pytest.skip(problem)


def npm_package_problem(package_json: Path, name: str, pinned: str) -> str | None:
    """Why the pinned npm package ``name`` cannot run here (no node, not installed, other version), or ``None``."""
    if shutil.which("node") is None:
        return "node is not installed"
    if not package_json.exists():
        return f"interop/node/node_modules has no {name}: run scripts/peers.d/node-wasm.sh"
    version = json.loads(package_json.read_text(encoding="utf-8"))["version"]
    if version != pinned:
        return f"{name} {version} is installed, the tests pin {pinned}"
    return None


def synapse_available() -> bool:
    return SYNAPSE_PYTHON.exists()


def require_synapse() -> None:
    problem = None if synapse_available() else "Synapse is not installed (run scripts/peers.d/synapse.sh)"
    require_peer(problem, "Synapse rendezvous peer")


SYNAPSE_CONFIG = """\
server_name: "localhost"
pid_file: "{dir}/homeserver.pid"
public_baseurl: "http://127.0.0.1:{port}/"
listeners:
  - port: {port}
    tls: false
    type: http
    x_forwarded: false
    bind_addresses: ['127.0.0.1']
    resources:
      - names: [client]
        compress: false
database:
  name: sqlite3
  args:
    database: "{dir}/homeserver.db"
log_config: "{dir}/log.yaml"
media_store_path: "{dir}/media_store"
signing_key_path: "{dir}/localhost.signing.key"
report_stats: false
macaroon_secret_key: "test-macaroon-secret-not-used"
form_secret: "test-form-secret-not-used"
registration_shared_secret: "test-registration-secret-not-used"
trusted_key_servers: []
federation_domain_whitelist: []
password_config:
  enabled: false
matrix_authentication_service:
  enabled: true
  endpoint: "http://127.0.0.1:9/"
  secret: "not-a-real-secret-nothing-listens-on-port-9"
experimental_features:
  msc4108_enabled: true
  msc4388_mode: open
"""

LOG_CONFIG = """\
version: 1
formatters:
  precise:
    format: '%(asctime)s - %(name)s - %(levelname)s - %(message)s'
handlers:
  file:
    class: logging.FileHandler
    filename: {dir}/homeserver.log
    formatter: precise
root:
  level: WARNING
  handlers: [file]
disable_existing_loggers: false
"""


@contextlib.contextmanager
def run_synapse(workdir: Path) -> Iterator[str]:
    """Yield the base URL of a fresh Synapse (v1 and v3 rendezvous on) on a free loopback port."""
    require_synapse()
    port = free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "homeserver.yaml").write_text(SYNAPSE_CONFIG.format(dir=workdir, port=port))
    (workdir / "log.yaml").write_text(LOG_CONFIG.format(dir=workdir))
    subprocess.run(
        [
            str(SYNAPSE_PYTHON),
            "-m",
            "synapse.app.homeserver",
            "-c",
            str(workdir / "homeserver.yaml"),
            "--generate-keys",
        ],
        check=True,
        cwd=workdir,
        capture_output=True,
        timeout=60,
    )
    process = subprocess.Popen(
        [str(SYNAPSE_PYTHON), "-m", "synapse.app.homeserver", "-c", str(workdir / "homeserver.yaml")],
        cwd=workdir,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(base + "/_matrix/client/versions", process)
        yield base
    finally:
        stop(process)


@contextlib.contextmanager
def run_qrlogin(*args: str) -> Iterator[str]:
    """Yield the base URL of ``qrlogin serve`` (the real command, in a subprocess) on a free loopback port."""
    port = free_port()
    command = [sys.executable, "-m", "qrlogin", "serve", "--host", "127.0.0.1", "--port", str(port), *args]
    command.append("--no-access-log")  # its output is discarded: formatting a line per request would be waste
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(base + "/_matrix/client/unstable/io.element.msc4388/rendezvous", process)
        yield base
    finally:
        stop(process)


@contextlib.contextmanager
def start_testserver(*args: str, stdin: int = subprocess.DEVNULL) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """``qrlogin testserver --port 0 ARGS`` (the real command, in a subprocess) once it has announced itself: yields
    the process and its announcement, and on exit stops it (terminate, then kill) and closes its pipes. What the
    announcement names (listening address, base URL, certificate) is each caller's to read."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    command = [sys.executable, "-m", "qrlogin", "testserver", "--port", "0", *args]
    process = subprocess.Popen(
        command, stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
    )
    try:
        assert process.stdout is not None
        banner: list[str] = []
        for line in process.stdout:
            banner.append(line)
            if "device authorizations:" in line:
                break
        yield process, "".join(banner)
    finally:
        stop(process)
        for stream in (process.stdin, process.stdout):
            if stream is not None:
                stream.close()


@contextlib.contextmanager
def run_qrlogin_testserver(*args: str) -> Iterator[str]:
    """Yield the loopback origin of ``qrlogin testserver --port 0 ARGS``, read from its announcement; the rest of its
    output is discarded."""
    with start_testserver("--host", "127.0.0.1", *args) as (process, announced):
        found = re.search(r"listening on (http://127\.0\.0\.1:[1-9][0-9]*)\n", announced)
        if found is None:
            raise RuntimeError(f"qrlogin testserver did not announce itself: {announced}")
        base = found.group(1)
        wait_until_up(base + "/_matrix/client/versions", process)
        assert process.stdout is not None
        drain = threading.Thread(target=process.stdout.read, daemon=True)  # keep its pipe from filling up
        drain.start()
        try:
            yield base
        finally:
            stop(process)  # the drain ends at the pipe's end, before the pipe is closed
            drain.join(timeout=10)
