"""``qrlogin testserver`` as a subprocess on a free loopback port, for the runner's and the commands' tests.

The server is plain http on ``127.0.0.1`` (every client then runs with ``allow_http``), or https with ``--tls``
and ``--tls-cert FILE`` (clients then trust FILE). A password login gives the
existing device its access token; ``whoami`` and the device list check what a sign-in produced.
"""

from __future__ import annotations

import os
import re
import ssl
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tests.peers import start_testserver

SRC = Path(__file__).resolve().parents[2] / "src"
PASSWORD = "correct horse battery staple"


@dataclass(frozen=True)
class LocalServer:
    base_url: str
    server_name: str
    process: subprocess.Popen[str]
    ca_file: str | None = None

    def _verify(self) -> ssl.SSLContext | bool:
        return True if self.ca_file is None else ssl.create_default_context(cafile=self.ca_file)

    @property
    def user_id(self) -> str:
        return f"@alice:{self.server_name}"

    def password_login(self, device_id: str) -> str:
        login = {"type": "m.login.password", "user": "alice", "password": PASSWORD, "device_id": device_id}
        answer = httpx.post(f"{self.base_url}/_matrix/client/v3/login", json=login, verify=self._verify())
        token = answer.json()["access_token"]
        assert isinstance(token, str)
        return token

    def whoami(self, token: str) -> dict[str, Any]:
        answer = httpx.get(
            f"{self.base_url}/_matrix/client/v3/account/whoami", headers=_bearer(token), verify=self._verify()
        )
        result: dict[str, Any] = answer.json()
        return result

    def device_ids(self, token: str) -> set[str]:
        answer = httpx.get(
            f"{self.base_url}/_matrix/client/v3/devices", headers=_bearer(token), verify=self._verify()
        ).json()
        return {device["device_id"] for device in answer["devices"]}


def _bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(SRC) + os.pathsep + os.environ.get("PYTHONPATH", "")}


@contextmanager
def running_testserver(*flags: str) -> Iterator[LocalServer]:
    """``qrlogin testserver --port 0 --user alice:PASSWORD --poll-interval 1 FLAGS`` once it has announced itself."""
    flags = ("--user", f"alice:{PASSWORD}", "--poll-interval", "1", *flags)
    with start_testserver(*flags, stdin=subprocess.PIPE) as (process, text):
        found = re.search(r"base URL: (https?://127\.0\.0\.1:\d+)\n", text)
        server = re.search(r"server name: (\S+)\n", text)
        cert = re.search(r"certificate \(self-signed, trust it in the client\): (\S+)\n", text)
        assert found is not None and server is not None, text
        ca_file = None if cert is None else cert.group(1)
        yield LocalServer(base_url=found.group(1), server_name=server.group(1), process=process, ca_file=ca_file)
