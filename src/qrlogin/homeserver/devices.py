"""Accounts, devices and access tokens: the device management module of the Client-Server API.

Spec: matrix-org/matrix-doc pull request 402, which added device management (docs/protocol.md §8):
"Relationship between access tokens and devices" (client_server_api.rst), "Devices" (intro.rst), ``login.yaml`` and
``registration.yaml`` (``device_id``, ``initial_device_display_name``), ``device_management.yaml`` (``GET /devices``,
``GET/PUT/DELETE /devices/{deviceId}``) and the module's security considerations (deletion needs more than the
access token). docs/protocol.md §8 summarises what the QR login relies on.

Theory of operation
-------------------
:class:`DeviceRegistry` is one immutable value holding every account, each account's devices, and the bearer
tokens bound to them. Every operation returns a new registry. The rules the seed states are kept by construction:

* **device ids are unique per user**: an account's devices are a map keyed by ``device_id``;
* **at most one active access token per device**: ``device_tokens`` maps each (user, device) to the digest of its
  one access token (and, for OAuth-issued tokens, its one refresh token). Binding a new token to a device first
  removes the old one from the token tables, so reusing a ``device_id`` at login invalidates the previous token;
* **deleting a device invalidates its token**: deletion removes the device and both of its tokens together. A
  logout (``POST /logout``, ``/logout/all``) and an OAuth revocation are deletions of this kind.

A token's :class:`TokenBinding` says whom it speaks for, the OAuth client it was issued to (refresh and revocation
check it) and, for OAuth access tokens, when it expires; an expired access token stays in the table, so that the
server can answer it with a soft logout until the client refreshes (which replaces it) or logs out.

Tokens are stored only as SHA-256 digests (a lookup by digest reveals nothing about the token) and passwords only as
salted digests compared with :func:`hmac.compare_digest`. A real server would use a slow password hash; the model
does not need one.

User-interactive authentication (UIA) guards ``DELETE /devices/{id}``: without an ``auth`` object the server
answers 401 with the one flow it offers (``m.login.password``) and a fresh ``session``; with the right password the
device is deleted and the session is consumed. A session is bound to the user and to the device it was issued for,
and is forgotten :data:`UIA_SESSION_LIFETIME_S` after it was issued. Deleting an absent device after successful UIA
answers 200, as the seed's "or had been removed previously" says.

Password guessing is limited per account (:mod:`~qrlogin.homeserver.limits`): every password check, at ``/login``, in
UIA and on the sign-in page, goes through :func:`attempt_password`, which refuses an account whose failures in the
current window reached the limit (``429 M_LIMIT_EXCEEDED`` here) without looking at the password, counts a wrong
password, and forgets the count on a right one. Abandoned UIA sessions and closed failure windows leave through
creation-order queues (:mod:`~qrlogin.homeserver._expiry`) that :func:`expire` pops on every request.

The HTTP layer here only parses bodies and maps outcomes to Matrix errors (``{"errcode", "error"}``); routing and
authentication of the request live in :mod:`qrlogin.homeserver.model`.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass, field, replace
from operator import attrgetter
from typing import Any

from ..http import HttpRequest, HttpResponse
from ._expiry import ExpiryQueue
from ._frozenmap import FrozenMap
from ._http import BodyError, json_response, limit_exceeded, matrix_error, parse_json_object
from ._ids import IdSource, token_digest
from .limits import DEFAULT_PASSWORD_LIMIT, FailureLimit, FailureLimiter

__all__ = [
    "MAX_DEVICE_ID_LENGTH",
    "MAX_DISPLAY_NAME_LENGTH",
    "PASSWORD_STAGE",
    "UIA_SESSION_LIFETIME_S",
    "Account",
    "Device",
    "DeviceRegistry",
    "DeviceTokens",
    "IssuedTokens",
    "Refused",
    "TokenBinding",
    "UiaSession",
    "add_account",
    "attempt_password",
    "bind_device",
    "check_password",
    "delete_device",
    "delete_device_request",
    "expire",
    "get_device",
    "list_devices",
    "login",
    "login_flows",
    "logout",
    "logout_all",
    "lookup_access_token",
    "lookup_refresh_token",
    "new_registry",
    "refresh_device",
    "register",
    "revoke_token",
    "show_device",
    "touch",
    "update_device",
    "user_id_for",
    "valid_device_id",
    "whoami",
]

MAX_DEVICE_ID_LENGTH = 255
MAX_DISPLAY_NAME_LENGTH = 100
PASSWORD_STAGE = "m.login.password"
UIA_SESSION_LIFETIME_S = 600
"""How long a user-interactive auth session may wait for its password."""

_LOCALPART = re.compile(r"[a-z0-9._=/+-]{1,255}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True, slots=True, kw_only=True)
class Device:
    """One device of one user, as ``GET /devices/{id}`` shows it (the model records no IP addresses)."""

    device_id: str
    display_name: str | None = None
    last_seen_ts: int | None = None

    def to_json(self) -> dict[str, Any]:
        content: dict[str, Any] = {"device_id": self.device_id}
        if self.display_name is not None:
            content["display_name"] = self.display_name
        if self.last_seen_ts is not None:
            content["last_seen_ts"] = self.last_seen_ts
        return content


@dataclass(frozen=True, slots=True, kw_only=True)
class Account:
    user_id: str
    password_digest: bytes = field(repr=False)
    devices: FrozenMap[str, Device] = field(default_factory=FrozenMap)


@dataclass(frozen=True, slots=True, kw_only=True)
class TokenBinding:
    """Who a bearer token speaks for, until when (access tokens issued through OAuth), and for which client."""

    user_id: str
    device_id: str
    expires_at_ms: int | None = None
    client_id: str | None = None

    def expired(self, now_ms: int) -> bool:
        return self.expires_at_ms is not None and now_ms >= self.expires_at_ms


@dataclass(frozen=True, slots=True, kw_only=True)
class DeviceTokens:
    """Digests of the tokens bound to one device: exactly one access token, at most one refresh token."""

    access: bytes
    refresh: bytes | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class UiaSession:
    user_id: str
    device_id: str
    expires_at_ms: int


@dataclass(frozen=True, slots=True, kw_only=True)
class IssuedTokens:
    """Tokens handed to a client once; only their digests stay in the registry."""

    access_token: str = field(repr=False)
    refresh_token: str | None = field(default=None, repr=False)
    expires_in_s: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class DeviceRegistry:
    server_name: str
    ids: IdSource
    accounts: FrozenMap[str, Account] = field(default_factory=FrozenMap)
    access_tokens: FrozenMap[bytes, TokenBinding] = field(default_factory=FrozenMap, repr=False)
    refresh_tokens: FrozenMap[bytes, TokenBinding] = field(default_factory=FrozenMap, repr=False)
    device_tokens: FrozenMap[tuple[str, str], DeviceTokens] = field(default_factory=FrozenMap, repr=False)
    uia_sessions: FrozenMap[str, UiaSession] = field(default_factory=FrozenMap, repr=False)
    uia_queue: ExpiryQueue[str] = field(default_factory=ExpiryQueue, repr=False)
    password_failures: FailureLimiter = field(
        default_factory=lambda: FailureLimiter(limit=DEFAULT_PASSWORD_LIMIT), repr=False
    )


def new_registry(
    server_name: str, seed: bytes, *, password_limit: FailureLimit = DEFAULT_PASSWORD_LIMIT
) -> DeviceRegistry:
    return DeviceRegistry(
        server_name=server_name,
        ids=IdSource.from_seed(seed, "devices"),
        password_failures=FailureLimiter(limit=password_limit),
    )


# -- pure operations -------------------------------------------------------------------------------------------


def _password_digest(user_id: str, password: str) -> bytes:
    material = b"qrlogin model password|" + user_id.encode() + b"|" + password.encode("utf-8", "surrogatepass")
    return hashlib.sha256(material).digest()


def user_id_for(registry: DeviceRegistry, localpart: str) -> str:
    return f"@{localpart}:{registry.server_name}"


def add_account(registry: DeviceRegistry, localpart: str, password: str) -> tuple[DeviceRegistry, str]:
    """Create an account (no device); the caller checks the localpart is valid and free."""
    user_id = user_id_for(registry, localpart)
    account = Account(user_id=user_id, password_digest=_password_digest(user_id, password))
    return replace(registry, accounts=registry.accounts.set(user_id, account)), user_id


def check_password(registry: DeviceRegistry, user_id: str, password: str) -> bool:
    account = registry.accounts.get(user_id)
    # Digest the offered password even for an unknown user so both failures cost the same.
    offered = _password_digest(user_id, password)
    stored = account.password_digest if account is not None else bytes(32)
    return hmac.compare_digest(offered, stored) and account is not None


@dataclass(frozen=True, slots=True)
class Refused:
    """A password attempt refused unchecked: the account's failures reached the limit."""

    retry_after_ms: int


def attempt_password(
    registry: DeviceRegistry, user_id: str, password: str, *, now_ms: int
) -> tuple[DeviceRegistry, bool | Refused]:
    """Check ``password`` for ``user_id`` under the account's failure limit (module docstring).

    An unknown user id is counted like a known one, so the answers do not tell them apart.
    """
    limiter = registry.password_failures
    retry_after_ms = limiter.retry_after_ms(user_id, now_ms=now_ms)
    if retry_after_ms is not None:
        return registry, Refused(retry_after_ms)
    right = check_password(registry, user_id, password)
    counted = limiter.forget(user_id) if right else limiter.failed(user_id, now_ms=now_ms)
    if counted is not limiter:
        registry = replace(registry, password_failures=counted)
    return registry, right


def expire(registry: DeviceRegistry, now_ms: int) -> DeviceRegistry:
    """Forget a few abandoned UIA sessions and closed failure windows (bounded work; see :mod:`._expiry`)."""
    if now_ms < registry.uia_queue.head_due_ms and now_ms < registry.password_failures.queue.head_due_ms:
        return registry
    limiter = registry.password_failures.purge(now_ms)
    if limiter is not registry.password_failures:
        registry = replace(registry, password_failures=limiter)
    if not registry.uia_queue.due(now_ms):
        return registry
    queue, sessions = registry.uia_queue.purge(registry.uia_sessions, now_ms, due_ms=attrgetter("expires_at_ms"))
    return replace(registry, uia_sessions=sessions, uia_queue=queue)


def _password_refused(refused: Refused) -> HttpResponse:
    return limit_exceeded(refused.retry_after_ms, "too many failed password attempts for this account")


def lookup_access_token(registry: DeviceRegistry, token: str) -> TokenBinding | None:
    return registry.access_tokens.get(token_digest(token))


def _unbind(registry: DeviceRegistry, user_id: str, device_id: str) -> DeviceRegistry:
    """Invalidate every token bound to the device (a no-op if none is)."""
    bound = registry.device_tokens.get((user_id, device_id))
    if bound is None:
        return registry
    refresh_tokens = registry.refresh_tokens
    if bound.refresh is not None:
        refresh_tokens = refresh_tokens.remove(bound.refresh)
    return replace(
        registry,
        access_tokens=registry.access_tokens.remove(bound.access),
        refresh_tokens=refresh_tokens,
        device_tokens=registry.device_tokens.remove((user_id, device_id)),
    )


def bind_device(
    registry: DeviceRegistry,
    user_id: str,
    device_id: str | None,
    *,
    initial_display_name: str | None,
    with_refresh_token: bool,
    now_ms: int,
    lifetime_s: int | None = None,
    client_id: str | None = None,
) -> tuple[DeviceRegistry, str, IssuedTokens]:
    """Issue a fresh token for ``device_id`` (generated when None), creating the device if it is unknown.

    The device's previous tokens are invalidated first, so at most one access token is ever active per device.
    ``initial_display_name`` only applies to a device created here (the seed: "Ignored if device_id corresponds to
    a known device"). An access token with a ``lifetime_s`` stops working that many seconds from ``now_ms``;
    ``client_id`` records the OAuth client the tokens were issued to (refresh and revocation check it). Returns the
    registry, the device id and the new tokens.
    """
    account = registry.accounts[user_id]
    ids = registry.ids
    if device_id is None:
        ids, device_id = ids.device_id()
        while device_id in account.devices:
            ids, device_id = ids.device_id()
    device = account.devices.get(device_id)
    if device is None:
        device = Device(device_id=device_id, display_name=initial_display_name, last_seen_ts=now_ms)
    else:
        device = replace(device, last_seen_ts=now_ms)
    account = replace(account, devices=account.devices.set(device_id, device))
    registry = _unbind(replace(registry, ids=ids, accounts=registry.accounts.set(user_id, account)), user_id, device_id)

    ids, access_token = registry.ids.token("syt_")
    refresh_token: str | None = None
    if with_refresh_token:
        ids, refresh_token = ids.token("syr_")
    binding = TokenBinding(user_id=user_id, device_id=device_id, client_id=client_id)
    expires_at_ms = None if lifetime_s is None else now_ms + lifetime_s * 1000
    access_binding = replace(binding, expires_at_ms=expires_at_ms)
    access = token_digest(access_token)
    refresh = token_digest(refresh_token) if refresh_token is not None else None
    refresh_tokens = registry.refresh_tokens
    if refresh is not None:
        refresh_tokens = refresh_tokens.set(refresh, binding)
    registry = replace(
        registry,
        ids=ids,
        access_tokens=registry.access_tokens.set(access, access_binding),
        refresh_tokens=refresh_tokens,
        device_tokens=registry.device_tokens.set((user_id, device_id), DeviceTokens(access=access, refresh=refresh)),
    )
    issued = IssuedTokens(access_token=access_token, refresh_token=refresh_token, expires_in_s=lifetime_s)
    return registry, device_id, issued


def lookup_refresh_token(registry: DeviceRegistry, token: str) -> TokenBinding | None:
    return registry.refresh_tokens.get(token_digest(token))


def refresh_device(
    registry: DeviceRegistry, refresh_token: str, *, now_ms: int, lifetime_s: int | None
) -> tuple[DeviceRegistry, TokenBinding, IssuedTokens] | None:
    """Rotate the tokens of the device a refresh token belongs to; None if the refresh token is not active.

    Both tokens are replaced: the old access token and the old refresh token stop working at once (RFC 6819
    §5.2.2.3 refresh token rotation), so a stolen refresh token is good for one use by whoever is first.
    """
    binding = lookup_refresh_token(registry, refresh_token)
    if binding is None:
        return None
    registry, _, issued = bind_device(
        registry,
        binding.user_id,
        binding.device_id,
        initial_display_name=None,
        with_refresh_token=True,
        now_ms=now_ms,
        lifetime_s=lifetime_s,
        client_id=binding.client_id,
    )
    return registry, binding, issued


def revoke_token(registry: DeviceRegistry, token: str) -> tuple[DeviceRegistry, TokenBinding | None]:
    """Log out the device an access or refresh token belongs to (both its tokens go, and the device with them).

    Returns the binding the token had, or None (and the registry unchanged) for a token that is not active.
    """
    digest = token_digest(token)
    binding = registry.access_tokens.get(digest) or registry.refresh_tokens.get(digest)
    if binding is None:
        return registry, None
    return delete_device(registry, binding.user_id, binding.device_id), binding


def delete_device(registry: DeviceRegistry, user_id: str, device_id: str) -> DeviceRegistry:
    """Remove the device and invalidate its tokens; deleting an absent device changes nothing."""
    registry = _unbind(registry, user_id, device_id)
    account = registry.accounts.get(user_id)
    if account is None or device_id not in account.devices:
        return registry
    account = replace(account, devices=account.devices.remove(device_id))
    return replace(registry, accounts=registry.accounts.set(user_id, account))


def touch(registry: DeviceRegistry, binding: TokenBinding, now_ms: int) -> DeviceRegistry:
    """Record that the device was seen now (every authenticated request does this)."""
    account = registry.accounts[binding.user_id]
    device = account.devices[binding.device_id]
    if device.last_seen_ts == now_ms:
        return registry
    account = replace(account, devices=account.devices.set(device.device_id, replace(device, last_seen_ts=now_ms)))
    return replace(registry, accounts=registry.accounts.set(account.user_id, account))


def get_device(registry: DeviceRegistry, user_id: str, device_id: str) -> Device | None:
    account = registry.accounts.get(user_id)
    return None if account is None else account.devices.get(device_id)


# -- request bodies ----------------------------------------------------------------------------------------------


def valid_device_id(value: str) -> bool:
    return 0 < len(value) <= MAX_DEVICE_ID_LENGTH and _CONTROL.search(value) is None


def _optional_str(body: dict[str, Any], key: str) -> str | None:
    value = body.get(key)
    if value is not None and not isinstance(value, str):
        raise BodyError(400, "M_BAD_JSON", f"{key} must be a string")
    return value


def _device_fields(body: dict[str, Any]) -> tuple[str | None, str | None]:
    device_id = _optional_str(body, "device_id")
    if device_id is not None and not valid_device_id(device_id):
        raise BodyError(400, "M_INVALID_PARAM", "device_id is empty, too long or contains control characters")
    display_name = _optional_str(body, "initial_device_display_name")
    if display_name is not None and len(display_name) > MAX_DISPLAY_NAME_LENGTH:
        raise BodyError(400, "M_INVALID_PARAM", "initial_device_display_name is too long")
    return device_id, display_name


def _identified_user(registry: DeviceRegistry, body: dict[str, Any]) -> str | None:
    """The user named by ``identifier: {type: m.id.user, user}`` or the older top-level ``user``, as a user id."""
    identifier = body.get("identifier")
    if identifier is not None:
        if not isinstance(identifier, dict):
            raise BodyError(400, "M_BAD_JSON", "identifier must be an object")
        if identifier.get("type") != "m.id.user":
            raise BodyError(400, "M_UNKNOWN", "only m.id.user identifiers are supported")
        user = identifier.get("user")
    else:
        user = body.get("user")
        if user is None:
            return None
    if not isinstance(user, str):
        raise BodyError(400, "M_BAD_JSON", "user must be a string")
    return user if user.startswith("@") else user_id_for(registry, user)


def _error(exc: BodyError) -> HttpResponse:
    return matrix_error(exc.status, exc.errcode, str(exc))


# -- endpoints ---------------------------------------------------------------------------------------------------


def login_flows() -> HttpResponse:
    return json_response(200, {"flows": [{"type": PASSWORD_STAGE}]})


def login(registry: DeviceRegistry, request: HttpRequest, *, now_ms: int) -> tuple[DeviceRegistry, HttpResponse]:
    """``POST /login`` with ``m.login.password``."""
    try:
        body = parse_json_object(request.body)
        login_type = body.get("type")
        if not isinstance(login_type, str):
            raise BodyError(400, "M_BAD_JSON", "type must be a string")
        if login_type != PASSWORD_STAGE:
            raise BodyError(400, "M_UNKNOWN", "unknown login type")
        user_id = _identified_user(registry, body)
        password = body.get("password")
        if user_id is None or not isinstance(password, str):
            raise BodyError(400, "M_BAD_JSON", "user and password (strings) are required")
        device_id, display_name = _device_fields(body)
    except BodyError as exc:
        return registry, _error(exc)
    registry, checked = attempt_password(registry, user_id, password, now_ms=now_ms)
    if isinstance(checked, Refused):
        return registry, _password_refused(checked)
    if not checked:
        return registry, matrix_error(403, "M_FORBIDDEN", "invalid username or password")
    registry, device_id, issued = bind_device(
        registry, user_id, device_id, initial_display_name=display_name, with_refresh_token=False, now_ms=now_ms
    )
    return registry, json_response(
        200,
        {
            "user_id": user_id,
            "access_token": issued.access_token,
            "device_id": device_id,
            "home_server": registry.server_name,
        },
    )


def register(registry: DeviceRegistry, request: HttpRequest, *, now_ms: int) -> tuple[DeviceRegistry, HttpResponse]:
    """``POST /register`` for ``kind=user`` (open registration, no UIA stage in the model)."""
    kinds = [value for name, value in request.query if name == "kind"]
    if kinds and kinds != ["user"]:
        if kinds == ["guest"]:
            return registry, matrix_error(403, "M_GUEST_ACCESS_FORBIDDEN", "guest registration is disabled")
        return registry, matrix_error(400, "M_INVALID_PARAM", "kind must be user or guest")
    try:
        body = parse_json_object(request.body)
        localpart = body.get("username")
        password = body.get("password")
        if not isinstance(localpart, str) or not isinstance(password, str) or not password:
            raise BodyError(400, "M_BAD_JSON", "username and a non-empty password (strings) are required")
        inhibit_login = body.get("inhibit_login", False)
        if not isinstance(inhibit_login, bool):
            raise BodyError(400, "M_BAD_JSON", "inhibit_login must be a boolean")
        device_id, display_name = _device_fields(body)
    except BodyError as exc:
        return registry, _error(exc)
    if _LOCALPART.fullmatch(localpart) is None:
        return registry, matrix_error(400, "M_INVALID_USERNAME", "username has characters a user id cannot hold")
    if user_id_for(registry, localpart) in registry.accounts:
        return registry, matrix_error(400, "M_USER_IN_USE", "username is taken")
    registry, user_id = add_account(registry, localpart, password)
    if inhibit_login:
        return registry, json_response(200, {"user_id": user_id, "home_server": registry.server_name})
    registry, device_id, issued = bind_device(
        registry, user_id, device_id, initial_display_name=display_name, with_refresh_token=False, now_ms=now_ms
    )
    return registry, json_response(
        200,
        {
            "user_id": user_id,
            "access_token": issued.access_token,
            "device_id": device_id,
            "home_server": registry.server_name,
        },
    )


def logout(registry: DeviceRegistry, binding: TokenBinding) -> tuple[DeviceRegistry, HttpResponse]:
    """``POST /logout``: the token stops working and its device is deleted (Client-Server API, "Logout")."""
    return delete_device(registry, binding.user_id, binding.device_id), json_response(200, {})


def logout_all(registry: DeviceRegistry, binding: TokenBinding) -> tuple[DeviceRegistry, HttpResponse]:
    """``POST /logout/all``: every device of the caller is deleted, with its tokens."""
    for device_id in tuple(registry.accounts[binding.user_id].devices):
        registry = delete_device(registry, binding.user_id, device_id)
    return registry, json_response(200, {})


def whoami(binding: TokenBinding) -> HttpResponse:
    return json_response(200, {"user_id": binding.user_id, "device_id": binding.device_id})


def list_devices(registry: DeviceRegistry, binding: TokenBinding) -> HttpResponse:
    devices = registry.accounts[binding.user_id].devices
    return json_response(200, {"devices": [devices[key].to_json() for key in sorted(devices)]})


def _not_found() -> HttpResponse:
    return matrix_error(404, "M_NOT_FOUND", "no device with that id")


def show_device(registry: DeviceRegistry, binding: TokenBinding, device_id: str) -> HttpResponse:
    device = get_device(registry, binding.user_id, device_id)
    return _not_found() if device is None else json_response(200, device.to_json())


def update_device(
    registry: DeviceRegistry, binding: TokenBinding, device_id: str, request: HttpRequest
) -> tuple[DeviceRegistry, HttpResponse]:
    """``PUT /devices/{id}``: set ``display_name``; an absent ``display_name`` leaves it unchanged."""
    try:
        body = parse_json_object(request.body)
        display_name = _optional_str(body, "display_name")
        if display_name is not None and len(display_name) > MAX_DISPLAY_NAME_LENGTH:
            raise BodyError(400, "M_INVALID_PARAM", "display_name is too long")
    except BodyError as exc:
        return registry, _error(exc)
    account = registry.accounts[binding.user_id]
    device = account.devices.get(device_id)
    if device is None:
        return registry, _not_found()
    if display_name is not None:
        account = replace(account, devices=account.devices.set(device_id, replace(device, display_name=display_name)))
        registry = replace(registry, accounts=registry.accounts.set(account.user_id, account))
    return registry, json_response(200, {})


def _uia_challenge(
    registry: DeviceRegistry,
    binding: TokenBinding,
    device_id: str,
    session: str | None,
    failure: str | None,
    *,
    now_ms: int,
) -> tuple[DeviceRegistry, HttpResponse]:
    if session is None:
        ids, raw = registry.ids.draw(16)
        session = raw.hex()
        expires_at_ms = now_ms + UIA_SESSION_LIFETIME_S * 1000
        issued = UiaSession(user_id=binding.user_id, device_id=device_id, expires_at_ms=expires_at_ms)
        registry = replace(
            registry,
            ids=ids,
            uia_sessions=registry.uia_sessions.set(session, issued),
            uia_queue=registry.uia_queue.push(session, expires_at_ms),
        )
    content: dict[str, Any] = {
        "flows": [{"stages": [PASSWORD_STAGE]}],
        "params": {},
        "session": session,
        "completed": [],
    }
    if failure is not None:
        content.update(errcode="M_FORBIDDEN", error=failure)
    return registry, json_response(401, content)


def delete_device_request(
    registry: DeviceRegistry, binding: TokenBinding, device_id: str, request: HttpRequest, *, now_ms: int
) -> tuple[DeviceRegistry, HttpResponse]:
    """``DELETE /devices/{id}`` behind user-interactive auth with ``m.login.password``."""
    try:
        body = parse_json_object(request.body, allow_empty=True)
        auth = body.get("auth")
        if auth is None:
            return _uia_challenge(registry, binding, device_id, None, None, now_ms=now_ms)
        if not isinstance(auth, dict):
            raise BodyError(400, "M_BAD_JSON", "auth must be an object")
        session = _optional_str(auth, "session")
        if session is not None:
            issued = registry.uia_sessions.get(session)
            if (
                issued is None
                or (issued.user_id, issued.device_id) != (binding.user_id, device_id)
                or now_ms >= issued.expires_at_ms
            ):
                raise BodyError(400, "M_UNKNOWN", "unknown user-interactive auth session")
        if auth.get("type") != PASSWORD_STAGE:
            return _uia_challenge(registry, binding, device_id, session, "unsupported auth type", now_ms=now_ms)
        user_id = _identified_user(registry, auth)
        password = auth.get("password")
        if not isinstance(password, str):
            raise BodyError(400, "M_BAD_JSON", "password must be a string")
    except BodyError as exc:
        return registry, _error(exc)
    if user_id not in (None, binding.user_id):
        return _uia_challenge(registry, binding, device_id, session, "invalid password", now_ms=now_ms)
    registry, checked = attempt_password(registry, binding.user_id, password, now_ms=now_ms)
    if isinstance(checked, Refused):
        return registry, _password_refused(checked)
    if not checked:
        return _uia_challenge(registry, binding, device_id, session, "invalid password", now_ms=now_ms)
    if session is not None:
        registry = replace(registry, uia_sessions=registry.uia_sessions.remove(session))
    return delete_device(registry, binding.user_id, device_id), json_response(200, {})
