"""The OAuth 2.0 device authorization grant a new device uses to obtain its tokens (RFC 8628, MSC4341).

Spec: RFC 8628 §3.1–3.5 (device authorization request and response, user interaction, token request, error codes
``authorization_pending``, ``slow_down``, ``access_denied``, ``expired_token``), §5 security considerations, §6.1
user code alphabet; RFC 6749 §5.1–5.2 (token and error responses) and §3.1 (no repeated parameters); RFC 7591
(dynamic client registration, a subset); RFC 8414 / Matrix ``GET /_matrix/client/v1/auth_metadata`` (server metadata);
MSC4341 (the grant in Matrix: scope ``urn:matrix:client:api:*`` plus ``urn:matrix:client:device:<id>``, a refresh
token with every grant). docs/protocol.md §7 step 2 and 4 are what the new device does against these endpoints.

Theory of operation
-------------------
:class:`OAuthServer` is an immutable value holding registered clients and pending device grants. A grant is born by
:func:`device_authorization` (``POST /oauth2/device``), is decided by the user through :func:`approve` or
:func:`deny` (a pure operation the simulated user calls: the model has no browser page), and ends when the device
redeems it at the token endpoint, or when it expires. Its status is one of ``pending``, ``approved`` (with the
approving user), ``denied`` or ``redeemed``.

Polling follows RFC 8628 §3.5: the first poll may come at any time; every later poll must come at least
``interval`` seconds after the previous one, or it is answered ``slow_down`` and the grant's interval grows by
5 seconds "for this and all subsequent requests". Once ``expires_in`` has passed every poll is ``expired_token``,
whatever the user decided. A device code is single use: after the tokens are issued it is ``invalid_grant``.

Redeeming an approved grant binds a fresh access token and refresh token to device ``<id>`` of the approving user
through :func:`qrlogin.homeserver.devices.bind_device`. The device is created if the user has no device with that
id; if one exists its previous tokens are invalidated, the same rule as login with a known ``device_id``. So the
device the existing device looks up with ``GET /devices/<id>`` comes into being exactly when the tokens are issued
(docs/protocol.md §7 step 5).

Device codes are stored only as digests. Errors use the OAuth shape ``{"error", "error_description"}``.

Simplifications: the only grants are the device code and refresh token grants (no authorization code grant, so no
``authorization_endpoint`` is advertised); access tokens do not expire, so token responses carry no ``expires_in``;
user code guessing is not rate limited (RFC 8628 §5.1) because only the simulated user enters codes.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field, replace
from typing import Any

from ..http import HttpRequest, HttpResponse, split_url
from ._frozenmap import FrozenMap
from ._http import (
    BodyError,
    json_response,
    oauth_error,
    parse_form,
    parse_json_object,
)
from ._ids import IdSource, normalize_user_code, token_digest
from .devices import DeviceRegistry, bind_device, refresh_device

__all__ = [
    "API_SCOPE",
    "DEFAULT_EXPIRES_IN_S",
    "DEFAULT_INTERVAL_S",
    "DEVICE_AUTHORIZATION_PATH",
    "DEVICE_CODE_GRANT",
    "DEVICE_SCOPE_PREFIX",
    "REFRESH_TOKEN_GRANT",
    "REGISTRATION_PATH",
    "SLOW_DOWN_STEP_S",
    "SUPPORTED_GRANTS",
    "TOKEN_PATH",
    "VERIFICATION_PATH",
    "Client",
    "ConsentResult",
    "DeviceGrant",
    "GrantStatus",
    "OAuthServer",
    "approve",
    "deny",
    "device_authorization",
    "metadata",
    "new_oauth_server",
    "pending_grant",
    "register_client",
    "token",
    "verification_uri",
]

DEVICE_CODE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
REFRESH_TOKEN_GRANT = "refresh_token"
SUPPORTED_GRANTS = (DEVICE_CODE_GRANT, REFRESH_TOKEN_GRANT)
API_SCOPE = "urn:matrix:client:api:*"
DEVICE_SCOPE_PREFIX = "urn:matrix:client:device:"

DEFAULT_INTERVAL_S = 5
SLOW_DOWN_STEP_S = 5
DEFAULT_EXPIRES_IN_S = 300

REGISTRATION_PATH = "/oauth2/registration"
DEVICE_AUTHORIZATION_PATH = "/oauth2/device"
TOKEN_PATH = "/oauth2/token"
VERIFICATION_PATH = "/link"

# The Matrix spec restricts device ids requested through a scope to RFC 3986 unreserved characters.
_SCOPE_DEVICE_ID = re.compile(r"[A-Za-z0-9._~-]{1,255}")


class GrantStatus(enum.Enum):
    PENDING = "pending"
    APPROVED = "approved"
    DENIED = "denied"
    REDEEMED = "redeemed"


@dataclass(frozen=True, slots=True, kw_only=True)
class Client:
    client_id: str
    client_name: str | None
    client_uri: str
    grant_types: tuple[str, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class DeviceGrant:
    client_id: str
    scope: str
    device_id: str
    user_code: str
    expires_at_ms: int
    interval_s: int
    status: GrantStatus = GrantStatus.PENDING
    user_id: str | None = None
    last_poll_ms: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class OAuthServer:
    base_url: str
    ids: IdSource
    expires_in_s: int = DEFAULT_EXPIRES_IN_S
    interval_s: int = DEFAULT_INTERVAL_S
    clients: FrozenMap[str, Client] = field(default_factory=FrozenMap)
    grants: FrozenMap[bytes, DeviceGrant] = field(default_factory=FrozenMap, repr=False)
    user_codes: FrozenMap[str, bytes] = field(default_factory=FrozenMap, repr=False)
    """Normalised user code -> digest of its device code."""


class ConsentResult(enum.Enum):
    """What became of a user's approve/deny: the simulated user may act late, twice or on a mistyped code."""

    APPROVED = "approved"
    DENIED = "denied"
    UNKNOWN_CODE = "unknown_code"
    UNKNOWN_USER = "unknown_user"
    EXPIRED = "expired"
    ALREADY_DECIDED = "already_decided"


def new_oauth_server(
    base_url: str, seed: bytes, *, expires_in_s: int = DEFAULT_EXPIRES_IN_S, interval_s: int = DEFAULT_INTERVAL_S
) -> OAuthServer:
    return OAuthServer(
        base_url=base_url.rstrip("/"),
        ids=IdSource.from_seed(seed, "oauth"),
        expires_in_s=expires_in_s,
        interval_s=interval_s,
    )


# -- discovery -------------------------------------------------------------------------------------------------


def metadata(server: OAuthServer) -> HttpResponse:
    """``GET /_matrix/client/v1/auth_metadata`` (RFC 8414 fields the model implements)."""
    base = server.base_url
    return json_response(
        200,
        {
            "issuer": base + "/",
            "registration_endpoint": base + REGISTRATION_PATH,
            "device_authorization_endpoint": base + DEVICE_AUTHORIZATION_PATH,
            "token_endpoint": base + TOKEN_PATH,
            "grant_types_supported": list(SUPPORTED_GRANTS),
            "token_endpoint_auth_methods_supported": ["none"],
            "scopes_supported": [API_SCOPE, DEVICE_SCOPE_PREFIX + "*"],
        },
    )


def verification_uri(server: OAuthServer) -> str:
    return server.base_url + VERIFICATION_PATH


# -- client registration (RFC 7591 subset) ---------------------------------------------------------------------


def _string_list(value: object, name: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise BodyError(400, "invalid_client_metadata", f"{name} must be a list of strings")
    return tuple(value)


def _https_uri(value: object) -> str:
    if not isinstance(value, str):
        raise BodyError(400, "invalid_client_metadata", "client_uri must be a string")
    parts = split_url(value)
    if parts is None or parts.scheme != "https" or not parts.netloc:
        raise BodyError(400, "invalid_client_metadata", "client_uri must be an absolute https URI")
    return value


def register_client(server: OAuthServer, request: HttpRequest) -> tuple[OAuthServer, HttpResponse]:
    """``POST /oauth2/registration``: a public client (``token_endpoint_auth_method: none``) for our grants."""
    try:
        body = parse_json_object(request.body)
        client_uri = _https_uri(body.get("client_uri"))
        grant_types = _string_list(body.get("grant_types", [DEVICE_CODE_GRANT]), "grant_types")
        unsupported = sorted(set(grant_types) - set(SUPPORTED_GRANTS))
        if unsupported or not grant_types:
            raise BodyError(400, "invalid_client_metadata", "grant_types must be a subset of the supported grants")
        auth_method = body.get("token_endpoint_auth_method", "none")
        if auth_method != "none":
            raise BodyError(400, "invalid_client_metadata", "only public clients (auth method none) are supported")
        client_name = body.get("client_name")
        if client_name is not None and not isinstance(client_name, str):
            raise BodyError(400, "invalid_client_metadata", "client_name must be a string")
    except BodyError as exc:
        return server, _body_error(exc, "invalid_client_metadata")
    ids, raw = server.ids.draw(16)
    client_id = raw.hex()
    client = Client(client_id=client_id, client_name=client_name, client_uri=client_uri, grant_types=grant_types)
    server = replace(server, ids=ids, clients=server.clients.set(client_id, client))
    content: dict[str, Any] = {
        "client_id": client_id,
        "client_uri": client_uri,
        "grant_types": list(grant_types),
        "token_endpoint_auth_method": "none",
    }
    if client_name is not None:
        content["client_name"] = client_name
    return server, json_response(201, content)


def _body_error(exc: BodyError, invalid: str) -> HttpResponse:
    """Map a body parse failure to an OAuth error: size stays 413, a Matrix errcode becomes ``invalid``."""
    if exc.status == 413:
        return oauth_error(413, "invalid_request", str(exc))
    error = exc.errcode if exc.errcode.islower() else invalid
    return oauth_error(exc.status, error, str(exc))


# -- device authorization (RFC 8628 §3.1–3.2) ------------------------------------------------------------------


def _device_from_scope(scope: str) -> str:
    """The device id requested by a Matrix scope; the API scope must be present and nothing else is understood."""
    tokens = scope.split(" ")
    if "" in tokens or len(set(tokens)) != len(tokens):
        raise BodyError(400, "invalid_scope", "scope must be distinct tokens separated by single spaces")
    device_ids = [t[len(DEVICE_SCOPE_PREFIX) :] for t in tokens if t.startswith(DEVICE_SCOPE_PREFIX)]
    unknown = [t for t in tokens if t != API_SCOPE and not t.startswith(DEVICE_SCOPE_PREFIX)]
    if unknown or API_SCOPE not in tokens:
        raise BodyError(400, "invalid_scope", f"scope must hold {API_SCOPE} and one device scope, nothing else")
    if len(device_ids) != 1 or _SCOPE_DEVICE_ID.fullmatch(device_ids[0]) is None:
        raise BodyError(400, "invalid_scope", "scope must name exactly one device id of unreserved characters")
    return device_ids[0]


def _client_for(server: OAuthServer, form: dict[str, str], grant: str) -> Client:
    client_id = form.get("client_id")
    if client_id is None:
        raise BodyError(400, "invalid_request", "client_id is required")
    client = server.clients.get(client_id)
    if client is None:
        raise BodyError(401, "invalid_client", "unknown client_id")
    if grant not in client.grant_types:
        raise BodyError(400, "unauthorized_client", "client is not registered for this grant type")
    return client


def device_authorization(server: OAuthServer, request: HttpRequest, *, now_ms: int) -> tuple[OAuthServer, HttpResponse]:
    """``POST /oauth2/device``: start a grant for scope ``urn:matrix:client:api:* urn:matrix:client:device:<id>``."""
    try:
        form = parse_form(request)
        client = _client_for(server, form, DEVICE_CODE_GRANT)
        scope = form.get("scope")
        if scope is None:
            raise BodyError(400, "invalid_request", "scope is required")
        device_id = _device_from_scope(scope)
    except BodyError as exc:
        return server, _body_error(exc, "invalid_request")
    ids, device_code = server.ids.token("dc_")
    ids, user_code = ids.user_code()
    while normalize_user_code(user_code) in server.user_codes:
        ids, user_code = ids.user_code()
    grant = DeviceGrant(
        client_id=client.client_id,
        scope=scope,
        device_id=device_id,
        user_code=user_code,
        expires_at_ms=now_ms + server.expires_in_s * 1000,
        interval_s=server.interval_s,
    )
    digest = token_digest(device_code)
    server = replace(
        server,
        ids=ids,
        grants=server.grants.set(digest, grant),
        user_codes=server.user_codes.set(normalize_user_code(user_code), digest),
    )
    uri = verification_uri(server)
    return server, json_response(
        200,
        {
            "device_code": device_code,
            "user_code": user_code,
            "verification_uri": uri,
            "verification_uri_complete": f"{uri}?user_code={user_code}",
            "expires_in": server.expires_in_s,
            "interval": server.interval_s,
        },
        extra_headers=(("cache-control", "no-store"),),
    )


# -- user consent (RFC 8628 §3.3) ------------------------------------------------------------------------------


def pending_grant(server: OAuthServer, user_code: str, *, now_ms: int) -> DeviceGrant | None:
    """The grant a user code stands for, if it is still waiting for a decision: what a consent page would show."""
    digest = server.user_codes.get(normalize_user_code(user_code))
    grant = None if digest is None else server.grants.get(digest)
    if grant is None or grant.status is not GrantStatus.PENDING or now_ms >= grant.expires_at_ms:
        return None
    return grant


def _decide(
    server: OAuthServer, user_code: str, user_id: str | None, *, now_ms: int
) -> tuple[OAuthServer, ConsentResult]:
    digest = server.user_codes.get(normalize_user_code(user_code))
    grant = None if digest is None else server.grants.get(digest)
    if digest is None or grant is None:
        return server, ConsentResult.UNKNOWN_CODE
    if now_ms >= grant.expires_at_ms:
        return server, ConsentResult.EXPIRED
    if grant.status is not GrantStatus.PENDING:
        return server, ConsentResult.ALREADY_DECIDED
    if user_id is None:
        decided = replace(grant, status=GrantStatus.DENIED)
        result = ConsentResult.DENIED
    else:
        decided = replace(grant, status=GrantStatus.APPROVED, user_id=user_id)
        result = ConsentResult.APPROVED
    return replace(server, grants=server.grants.set(digest, decided)), result


def approve(
    server: OAuthServer, registry: DeviceRegistry, user_code: str, user_id: str, *, now_ms: int
) -> tuple[OAuthServer, ConsentResult]:
    """The signed-in user ``user_id`` approves the grant behind ``user_code`` (typed in or from the complete URI)."""
    if user_id not in registry.accounts:
        return server, ConsentResult.UNKNOWN_USER
    return _decide(server, user_code, user_id, now_ms=now_ms)


def deny(server: OAuthServer, user_code: str, *, now_ms: int) -> tuple[OAuthServer, ConsentResult]:
    return _decide(server, user_code, None, now_ms=now_ms)


# -- token endpoint (RFC 8628 §3.4–3.5, RFC 6749 §6) -----------------------------------------------------------


def _token_response(issued_access: str, issued_refresh: str | None, scope: str) -> HttpResponse:
    content: dict[str, Any] = {"access_token": issued_access, "token_type": "Bearer", "scope": scope}
    if issued_refresh is not None:
        content["refresh_token"] = issued_refresh
    return json_response(200, content, extra_headers=(("cache-control", "no-store"),))


def _poll(
    server: OAuthServer, registry: DeviceRegistry, form: dict[str, str], *, now_ms: int
) -> tuple[OAuthServer, DeviceRegistry, HttpResponse]:
    client = _client_for(server, form, DEVICE_CODE_GRANT)
    device_code = form.get("device_code")
    if device_code is None:
        raise BodyError(400, "invalid_request", "device_code is required")
    digest = token_digest(device_code)
    grant = server.grants.get(digest)
    if grant is None or grant.client_id != client.client_id or grant.status is GrantStatus.REDEEMED:
        raise BodyError(400, "invalid_grant", "unknown, foreign or already used device_code")
    if now_ms >= grant.expires_at_ms:
        raise BodyError(400, "expired_token", "the device code has expired")
    too_soon = grant.last_poll_ms is not None and now_ms - grant.last_poll_ms < grant.interval_s * 1000
    if too_soon:
        grant = replace(grant, interval_s=grant.interval_s + SLOW_DOWN_STEP_S, last_poll_ms=now_ms)
        server = replace(server, grants=server.grants.set(digest, grant))
        return server, registry, oauth_error(400, "slow_down", f"poll at most every {grant.interval_s} s")
    grant = replace(grant, last_poll_ms=now_ms)
    server = replace(server, grants=server.grants.set(digest, grant))
    if grant.status is GrantStatus.PENDING:
        return server, registry, oauth_error(400, "authorization_pending", "the user has not decided yet")
    if grant.status is GrantStatus.DENIED:
        return server, registry, oauth_error(400, "access_denied", "the user denied the request")
    # Approval checked that the account exists, and accounts are never removed.
    assert grant.user_id is not None
    registry, _, issued = bind_device(
        registry, grant.user_id, grant.device_id, initial_display_name=None, with_refresh_token=True, now_ms=now_ms
    )
    server = replace(
        server,
        grants=server.grants.set(digest, replace(grant, status=GrantStatus.REDEEMED)),
        user_codes=server.user_codes.remove(normalize_user_code(grant.user_code)),
    )
    return server, registry, _token_response(issued.access_token, issued.refresh_token, grant.scope)


def _refresh(
    server: OAuthServer, registry: DeviceRegistry, form: dict[str, str], *, now_ms: int
) -> tuple[OAuthServer, DeviceRegistry, HttpResponse]:
    _client_for(server, form, REFRESH_TOKEN_GRANT)
    refresh_token = form.get("refresh_token")
    if refresh_token is None:
        raise BodyError(400, "invalid_request", "refresh_token is required")
    rotated = refresh_device(registry, refresh_token, now_ms=now_ms)
    if rotated is None:
        raise BodyError(400, "invalid_grant", "unknown or already used refresh_token")
    registry, binding, issued = rotated
    scope = f"{API_SCOPE} {DEVICE_SCOPE_PREFIX}{binding.device_id}"
    return server, registry, _token_response(issued.access_token, issued.refresh_token, scope)


def token(
    server: OAuthServer, registry: DeviceRegistry, request: HttpRequest, *, now_ms: int
) -> tuple[OAuthServer, DeviceRegistry, HttpResponse]:
    """``POST /oauth2/token`` for the device code grant (polling) and the refresh token grant."""
    try:
        form = parse_form(request)
        grant_type = form.get("grant_type")
        if grant_type is None:
            raise BodyError(400, "invalid_request", "grant_type is required")
        if grant_type == DEVICE_CODE_GRANT:
            return _poll(server, registry, form, now_ms=now_ms)
        if grant_type == REFRESH_TOKEN_GRANT:
            return _refresh(server, registry, form, now_ms=now_ms)
        raise BodyError(400, "unsupported_grant_type", "grant_type is not supported")
    except BodyError as exc:
        return server, registry, _body_error(exc, "invalid_request")
