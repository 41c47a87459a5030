"""Helpers shared by the homeserver model tests: a running homeserver value and the requests devices make."""

from __future__ import annotations

import base64
import hashlib
import html
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from qrlogin.homeserver import Homeserver, HttpRequest, HttpResponse, handle, new_homeserver
from qrlogin.homeserver.limits import FailureLimit
from qrlogin.homeserver.oauth import DEVICE_CODE_GRANT, REFRESH_TOKEN_GRANT

SERVER_NAME = "example.org"
BASE_URL = "https://matrix.example.org"
V3 = "/_matrix/client/v3"
API_SCOPE = "urn:matrix:client:api:*"
PASSWORD = "secret"


def device_scope(device_id: str) -> str:
    return f"{API_SCOPE} urn:matrix:client:device:{device_id}"


@dataclass
class Server:
    """A mutable holder for tests only: each call threads the homeserver value and the clock."""

    hs: Homeserver
    now_ms: int = 1_000_000

    def send(self, request: HttpRequest, *, advance_ms: int = 0) -> HttpResponse:
        self.now_ms += advance_ms
        self.hs, response = handle(self.hs, request, now_ms=self.now_ms)
        return response

    def register(self, username: str, password: str = PASSWORD, **extra: Any) -> dict[str, Any]:
        body = {"username": username, "password": password, **extra}
        response = self.send(HttpRequest.json("POST", f"{V3}/register", body))
        assert response.status == 200, response.json()
        content: dict[str, Any] = response.json()
        return content

    def login(self, username: str, password: str = PASSWORD, **extra: Any) -> HttpResponse:
        body = {"type": "m.login.password", "identifier": {"type": "m.id.user", "user": username}, "password": password}
        return self.send(HttpRequest.json("POST", f"{V3}/login", {**body, **extra}))

    def devices(self, token: str) -> HttpResponse:
        return self.send(HttpRequest.get(f"{V3}/devices", access_token=token))

    def device(self, token: str, device_id: str) -> HttpResponse:
        return self.send(HttpRequest.get(f"{V3}/devices/{device_id}", access_token=token))

    def whoami(self, token: str) -> HttpResponse:
        return self.send(HttpRequest.get(f"{V3}/account/whoami", access_token=token))

    def delete_device(self, token: str, device_id: str, body: object) -> HttpResponse:
        return self.send(HttpRequest.json("DELETE", f"{V3}/devices/{device_id}", body, access_token=token))

    def register_client(self, grant_types: tuple[str, ...] = (DEVICE_CODE_GRANT, REFRESH_TOKEN_GRANT)) -> str:
        body = {"client_name": "test", "client_uri": "https://client.example", "grant_types": list(grant_types)}
        response = self.send(HttpRequest.json("POST", "/oauth2/registration", body))
        assert response.status == 201, response.json()
        client_id: str = response.json()["client_id"]
        return client_id

    def authorize_device(self, client_id: str, scope: str) -> HttpResponse:
        return self.send(HttpRequest.form("/oauth2/device", {"client_id": client_id, "scope": scope}))

    def send_versions(self) -> HttpResponse:
        """A request that touches no table (every request first purges a few records past their time)."""
        return self.send(HttpRequest.get("/_matrix/client/versions"))

    def poll(self, client_id: str, device_code: str, *, advance_ms: int = 0) -> HttpResponse:
        form = {"grant_type": DEVICE_CODE_GRANT, "device_code": device_code, "client_id": client_id}
        return self.send(HttpRequest.form("/oauth2/token", form), advance_ms=advance_ms)


def new_server(seed: bytes = b"test seed", **options: Any) -> Server:
    return Server(hs=new_homeserver(server_name=SERVER_NAME, base_url=BASE_URL, seed=seed, **options))


def password_auth(user: str, password: str, session: str | None = None) -> dict[str, Any]:
    auth: dict[str, Any] = {
        "type": "m.login.password",
        "identifier": {"type": "m.id.user", "user": user},
        "password": password,
    }
    if session is not None:
        auth["session"] = session
    return {"auth": auth}


WEB_CLIENT = {
    "client_name": "Web client",
    "client_uri": "https://client.example/",
    "redirect_uris": ["https://client.example/callback"],
    "grant_types": ["authorization_code", "refresh_token", DEVICE_CODE_GRANT],
    "response_types": ["code"],
    "token_endpoint_auth_method": "none",
}


def pkce_pair(verifier: str = "v" * 43) -> tuple[str, str]:
    """An RFC 7636 ``S256`` verifier and its challenge."""
    digest = hashlib.sha256(verifier.encode()).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


_HIDDEN = re.compile(r'<input type=hidden name="([^"]*)" value="([^"]*)">')


def hidden_fields(response: HttpResponse) -> dict[str, str]:
    """The hidden form fields of a page, unescaped."""
    return {html.unescape(k): html.unescape(v) for k, v in _HIDDEN.findall(response.body.decode())}


@dataclass
class Browser:
    """A browser for the pure model: keeps the session cookie, sends the ``Origin`` a same-origin form would."""

    server: Server
    cookie: str | None = None
    origin: str | None = BASE_URL

    def _headers(self) -> list[tuple[str, str]]:
        return [] if self.cookie is None else [("cookie", f"qrlogin_session={self.cookie}")]

    def _remember(self, response: HttpResponse) -> HttpResponse:
        set_cookie = response.header("set-cookie")
        if set_cookie is not None:
            self.cookie = set_cookie.split(";", 1)[0].partition("=")[2]
        return response

    def get(self, target: str) -> HttpResponse:
        return self._remember(
            self.server.send(HttpRequest(method="GET", target=target, headers=tuple(self._headers())))
        )

    def post(self, target: str, fields: dict[str, str]) -> HttpResponse:
        headers = [("content-type", "application/x-www-form-urlencoded"), *self._headers()]
        if self.origin is not None:
            headers.append(("origin", self.origin))
        body = urlencode(fields).encode()
        request = HttpRequest(method="POST", target=target, headers=tuple(headers), body=body)
        return self._remember(self.server.send(request))

    def sign_in(self, username: str, password: str = PASSWORD, next_path: str = "/") -> HttpResponse:
        form = self.get(f"/login?{urlencode({'next': next_path})}")
        fields = hidden_fields(form)
        return self.post("/login", {**fields, "username": username, "password": password})


@dataclass
class ReferenceLimit:
    """A plain reference for :class:`qrlogin.homeserver.limits.FailureLimiter`: failures per key in a fixed window."""

    limit: FailureLimit
    windows: dict[str, tuple[int, int]] = field(default_factory=dict)
    """key -> (failures in the open window, when it closes)"""

    def _open(self, key: str, now_ms: int) -> tuple[int, int]:
        failures, until = self.windows.get(key, (0, 0))
        return (failures, until) if now_ms < until else (0, now_ms + self.limit.window_s * 1000)

    def refused(self, key: str, now_ms: int) -> int | None:
        """The ``retry_after_ms`` an attempt under ``key`` is refused with now, or None if it is checked."""
        failures, until = self._open(key, now_ms)
        return until - now_ms if failures >= self.limit.max_failures else None

    def failed(self, key: str, now_ms: int) -> None:
        failures, until = self._open(key, now_ms)
        self.windows[key] = (failures + 1, until)

    def forget(self, key: str) -> None:
        self.windows.pop(key, None)

    def open_windows(self, now_ms: int) -> dict[str, tuple[int, int]]:
        return {key: window for key, window in self.windows.items() if now_ms < window[1]}


def too_many_page(response: HttpResponse) -> int:
    """The seconds a 429 page says to wait, checked against its ``Retry-After`` header."""
    assert response.status == 429
    assert response.header("content-type") == "text/html; charset=utf-8"
    match = re.search(r"Try again in (\d+) seconds\.", response.body.decode())
    assert match is not None and response.header("retry-after") == match.group(1)
    return int(match.group(1))
