"""The OAuth 2.0 authorization server of the model: metadata, client registration, the three grants, revocation.

Spec: the Matrix Client-Server API "OAuth 2.0 API" (``GET /_matrix/client/v1/auth_metadata`` and its MSC2965
unstable path, the required metadata fields, the grants, token refresh and revocation, ``soft_logout`` for an
expired token); RFC 8414 §2 (metadata); RFC 7591 with MSC2966 (registration, :mod:`~qrlogin.homeserver.clients`);
RFC 6749 §4.1 with RFC 7636 (authorization code grant with PKCE, :mod:`~qrlogin.homeserver.authcode`), §5.1–5.2
(token and error responses), §6 (refresh); RFC 8628 §3.1–3.5 with MSC4341 (device authorization grant: errors
``authorization_pending``, ``slow_down``, ``access_denied``, ``expired_token``), §6.1 (user code alphabet);
RFC 7009 (revocation). Scopes: :mod:`~qrlogin.homeserver.scopes`. docs/protocol.md §7 steps 2 and 4 are what the
new device of a QR sign-in does against these endpoints.

Theory of operation
-------------------
:class:`OAuthServer` is an immutable value holding the registered clients, pending device grants (keyed by the
digest of their device code, with an index from user code to that digest), unredeemed authorization codes (keyed by
digest) and the browser sessions of the pages (:mod:`~qrlogin.homeserver.pages`). Every lookup goes through a key;
nothing is found by scanning a table.

A device grant is born by :func:`device_authorization` (``POST /oauth2/device``), is decided by the signed-in user
on the consent page at the ``verification_uri`` or through :func:`approve` / :func:`deny` (what the simulated user
calls), and ends when the device redeems it at the token endpoint, or when it expires. Its status is ``pending``,
``approved`` (with the approving user), ``denied`` or ``redeemed``. Polling follows RFC 8628 §3.5: the first poll
may come at any time; every later poll must come at least ``interval`` seconds after the previous one, or it is
answered ``slow_down`` and the grant's interval grows by 5 seconds "for this and all subsequent requests". Once
``expires_in`` has passed every poll is ``expired_token``, whatever the user decided. A device code is single use.

An authorization code is born when the signed-in user consents on the page of ``/oauth2/authorize``
(:func:`issue_code`) and is redeemed once at the token endpoint with its PKCE verifier.

Redeeming either grant binds a fresh access token (valid ``access_token_lifetime_s``, announced as ``expires_in``)
and a refresh token to the device of the scope through :func:`qrlogin.homeserver.devices.bind_device`; the device
is created if the user has none with that id, else its previous tokens are invalidated (the rule of a login with a
known ``device_id``). Only a client registered for the refresh token grant gets a refresh token: any other would be
refused when it used one (RFC 7591 §2, a client restricts itself to its registered grant types). So the device the
existing device looks up with ``GET /devices/<id>`` comes into being exactly when the tokens are issued
(docs/protocol.md §7 step 5). Tokens remember the client they were issued to: a refresh or a
revocation by another client is refused. A refresh rotates both tokens. Revoking either token (RFC 7009) logs the
device out: both tokens stop working and the device is deleted, as a logout does.

Device codes, authorization codes and tokens are stored only as digests. Errors use the OAuth shape
``{"error", "error_description"}`` with ``Cache-Control: no-store``.

Forgetting: a grant, whatever became of it, is kept :data:`GRANT_KEPT_AFTER_EXPIRY_S` past its expiry, so that a
late poll still reads ``expired_token`` and a repeated one ``invalid_grant``; after that it is treated as unknown
and leaves the table with its user code. Codes leave when they expire, browser sessions when theirs does. Each table
has a creation-order queue beside it (:mod:`~qrlogin.homeserver._expiry`) that :func:`expire` pops on every
request, a few entries at a time, so memory follows the live records and no request scans a table. User codes
entered on the approval page are limited per account (:attr:`OAuthServer.user_code_failures`,
:mod:`~qrlogin.homeserver.limits`, RFC 8628 §5.1); :func:`approve` and :func:`deny` are not, since they stand for
the user, not for a request.

Simplifications: clients are public (``token_endpoint_auth_method`` ``none``); no ID token is issued (``openid`` is
accepted in a scope and ignored); a reused authorization code is refused but does not revoke the tokens it produced
(RFC 6749 §4.1.2 SHOULD).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field, replace
from operator import attrgetter
from typing import Any

from ..http import HttpRequest, HttpResponse
from ._expiry import ExpiryQueue
from ._frozenmap import FrozenMap
from ._http import (
    BodyError,
    json_response,
    oauth_error,
    parse_form,
    parse_json_object,
)
from ._ids import IdSource, normalize_user_code, token_digest
from .authcode import CODE_LIFETIME_S, AuthorizationCode, AuthorizationRequest, pkce_matches, redirect_to_client
from .clients import AUTHORIZATION_CODE_GRANT, Client, parse_client_metadata, registration_response
from .devices import DeviceRegistry, IssuedTokens, bind_device, refresh_device, revoke_token
from .limits import DEFAULT_USER_CODE_LIMIT, FailureLimit, FailureLimiter
from .scopes import API_SCOPE, DEVICE_SCOPE_PREFIX, MatrixScope, parse_scope

__all__ = [
    "AUTHORIZATION_PATH",
    "DEFAULT_ACCESS_TOKEN_LIFETIME_S",
    "DEFAULT_EXPIRES_IN_S",
    "DEFAULT_INTERVAL_S",
    "DEVICE_AUTHORIZATION_PATH",
    "DEVICE_CODE_GRANT",
    "GRANT_KEPT_AFTER_EXPIRY_S",
    "REFRESH_TOKEN_GRANT",
    "REGISTRATION_PATH",
    "REVOCATION_PATH",
    "SLOW_DOWN_STEP_S",
    "SUPPORTED_GRANTS",
    "TOKEN_PATH",
    "VERIFICATION_PATH",
    "BrowserSession",
    "ConsentResult",
    "DeviceGrant",
    "ExpiryQueues",
    "GrantStatus",
    "OAuthServer",
    "approve",
    "deny",
    "device_authorization",
    "expire",
    "issue_code",
    "metadata",
    "new_oauth_server",
    "pending_grant",
    "register_client",
    "revoke",
    "token",
    "verification_uri",
]

DEVICE_CODE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
REFRESH_TOKEN_GRANT = "refresh_token"
SUPPORTED_GRANTS = (AUTHORIZATION_CODE_GRANT, REFRESH_TOKEN_GRANT, DEVICE_CODE_GRANT)

DEFAULT_INTERVAL_S = 5
SLOW_DOWN_STEP_S = 5
DEFAULT_EXPIRES_IN_S = 300
DEFAULT_ACCESS_TOKEN_LIFETIME_S = 300
"""How long an OAuth access token works (``expires_in``); the refresh token gets the next one."""
GRANT_KEPT_AFTER_EXPIRY_S = 60
"""How long an expired device grant is still answered as such before it is forgotten."""

REGISTRATION_PATH = "/oauth2/registration"
DEVICE_AUTHORIZATION_PATH = "/oauth2/device"
TOKEN_PATH = "/oauth2/token"
REVOCATION_PATH = "/oauth2/revoke"
AUTHORIZATION_PATH = "/oauth2/authorize"
VERIFICATION_PATH = "/link"


class GrantStatus(enum.Enum):
    PENDING = "pending"
    APPROVED = "approved"
    DENIED = "denied"
    REDEEMED = "redeemed"


@dataclass(frozen=True, slots=True, kw_only=True)
class DeviceGrant:
    client_id: str
    scope: MatrixScope
    user_code: str
    expires_at_ms: int
    interval_s: int
    status: GrantStatus = GrantStatus.PENDING
    user_id: str | None = None
    last_poll_ms: int | None = None

    @property
    def device_id(self) -> str | None:
        """The device the scope names; None when the server picks one as it issues the tokens."""
        return self.scope.device_id

    @property
    def forgotten_at_ms(self) -> int:
        """From when the grant is treated as unknown (and may leave the table)."""
        return self.expires_at_ms + GRANT_KEPT_AFTER_EXPIRY_S * 1000


@dataclass(frozen=True, slots=True, kw_only=True)
class BrowserSession:
    """A browser signed in on the pages (:mod:`~qrlogin.homeserver.pages`), until ``expires_at_ms``."""

    user_id: str
    expires_at_ms: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ExpiryQueues:
    """The creation-order queues beside the tables whose records leave when their time comes (:mod:`._expiry`).

    One field of :class:`OAuthServer` rather than three, since every request that changes the server copies its
    fields and only a request that creates a record touches a queue.
    """

    grants: ExpiryQueue[bytes] = field(default_factory=ExpiryQueue)
    codes: ExpiryQueue[bytes] = field(default_factory=ExpiryQueue)
    sessions: ExpiryQueue[bytes] = field(default_factory=ExpiryQueue)


@dataclass(frozen=True, slots=True, kw_only=True)
class OAuthServer:
    base_url: str
    ids: IdSource
    expires_in_s: int = DEFAULT_EXPIRES_IN_S
    interval_s: int = DEFAULT_INTERVAL_S
    access_token_lifetime_s: int = DEFAULT_ACCESS_TOKEN_LIFETIME_S
    clients: FrozenMap[str, Client] = field(default_factory=FrozenMap)
    grants: FrozenMap[bytes, DeviceGrant] = field(default_factory=FrozenMap, repr=False)
    user_codes: FrozenMap[str, bytes] = field(default_factory=FrozenMap, repr=False)
    """Normalised user code -> digest of its device code."""
    codes: FrozenMap[bytes, AuthorizationCode] = field(default_factory=FrozenMap, repr=False)
    """Digest of an authorization code -> what it was issued for."""
    sessions: FrozenMap[bytes, BrowserSession] = field(default_factory=FrozenMap, repr=False)
    """Digest of a signed-in browser's session cookie -> its session."""
    queues: ExpiryQueues = field(default_factory=ExpiryQueues, repr=False)
    user_code_failures: FailureLimiter = field(
        default_factory=lambda: FailureLimiter(limit=DEFAULT_USER_CODE_LIMIT), repr=False
    )
    """Unknown user codes entered per account on the approval page."""


class ConsentResult(enum.Enum):
    """What became of a user's approve/deny: the user may act late, twice or on a mistyped code."""

    APPROVED = "approved"
    DENIED = "denied"
    UNKNOWN_CODE = "unknown_code"
    UNKNOWN_USER = "unknown_user"
    EXPIRED = "expired"
    ALREADY_DECIDED = "already_decided"


def new_oauth_server(
    base_url: str,
    seed: bytes,
    *,
    expires_in_s: int = DEFAULT_EXPIRES_IN_S,
    interval_s: int = DEFAULT_INTERVAL_S,
    access_token_lifetime_s: int = DEFAULT_ACCESS_TOKEN_LIFETIME_S,
    user_code_limit: FailureLimit = DEFAULT_USER_CODE_LIMIT,
) -> OAuthServer:
    return OAuthServer(
        base_url=base_url.rstrip("/"),
        ids=IdSource.from_seed(seed, "oauth"),
        expires_in_s=expires_in_s,
        interval_s=interval_s,
        access_token_lifetime_s=access_token_lifetime_s,
        user_code_failures=FailureLimiter(limit=user_code_limit),
    )


def expire(server: OAuthServer, now_ms: int) -> OAuthServer:
    """Forget a few records past their time from each table (bounded work; see :mod:`._expiry`)."""
    queues = server.queues
    if (
        now_ms < queues.grants.head_due_ms
        and now_ms < queues.codes.head_due_ms
        and now_ms < queues.sessions.head_due_ms
        and now_ms < server.user_code_failures.queue.head_due_ms
    ):
        return server
    limiter = server.user_code_failures.purge(now_ms)
    if limiter is not server.user_code_failures:
        server = replace(server, user_code_failures=limiter)
    grants, user_codes, codes, sessions = server.grants, server.user_codes, server.codes, server.sessions
    if queues.grants.due(now_ms):
        queue, digests = queues.grants.pop_due(now_ms)
        for digest in digests:
            grant = grants.get(digest)
            if grant is None or now_ms < grant.forgotten_at_ms:
                continue
            grants = grants.remove(digest)
            user_code = normalize_user_code(grant.user_code)
            if user_codes.get(user_code) == digest:
                user_codes = user_codes.remove(user_code)
        queues = replace(queues, grants=queue)
    if queues.codes.due(now_ms):
        queue, codes = queues.codes.purge(codes, now_ms, due_ms=attrgetter("expires_at_ms"))
        queues = replace(queues, codes=queue)
    if queues.sessions.due(now_ms):
        queue, sessions = queues.sessions.purge(sessions, now_ms, due_ms=attrgetter("expires_at_ms"))
        queues = replace(queues, sessions=queue)
    if queues is server.queues:
        return server
    return replace(server, grants=grants, user_codes=user_codes, codes=codes, sessions=sessions, queues=queues)


# -- discovery -------------------------------------------------------------------------------------------------


def metadata(server: OAuthServer) -> HttpResponse:
    """``GET /_matrix/client/v1/auth_metadata``: every field the Matrix spec requires, and the device grant's."""
    base = server.base_url
    return json_response(
        200,
        {
            "issuer": base + "/",
            "authorization_endpoint": base + AUTHORIZATION_PATH,
            "token_endpoint": base + TOKEN_PATH,
            "registration_endpoint": base + REGISTRATION_PATH,
            "revocation_endpoint": base + REVOCATION_PATH,
            "device_authorization_endpoint": base + DEVICE_AUTHORIZATION_PATH,
            "response_types_supported": ["code"],
            "response_modes_supported": ["query", "fragment"],
            "grant_types_supported": list(SUPPORTED_GRANTS),
            "code_challenge_methods_supported": ["S256"],
            "token_endpoint_auth_methods_supported": ["none"],
            "revocation_endpoint_auth_methods_supported": ["none"],
            "scopes_supported": ["openid", API_SCOPE, DEVICE_SCOPE_PREFIX + "*"],
        },
    )


def verification_uri(server: OAuthServer) -> str:
    return server.base_url + VERIFICATION_PATH


# -- client registration (RFC 7591, MSC2966) -------------------------------------------------------------------


def register_client(server: OAuthServer, request: HttpRequest) -> tuple[OAuthServer, HttpResponse]:
    """``POST /oauth2/registration``: a public client; the metadata rules are in :mod:`.clients`."""
    try:
        body = parse_json_object(request.body)
        client = parse_client_metadata(body, supported_grants=SUPPORTED_GRANTS)
    except BodyError as exc:
        return server, _body_error(exc, "invalid_client_metadata")
    ids, raw = server.ids.draw(16)
    client = replace(client, client_id=raw.hex())
    server = replace(server, ids=ids, clients=server.clients.set(client.client_id, client))
    return server, json_response(201, registration_response(client), extra_headers=(("cache-control", "no-store"),))


def _body_error(exc: BodyError, invalid: str) -> HttpResponse:
    """Map a body parse failure to an OAuth error: size stays 413, a Matrix errcode becomes ``invalid``."""
    if exc.status == 413:
        return oauth_error(413, "invalid_request", str(exc))
    error = exc.errcode if exc.errcode.islower() else invalid
    return oauth_error(exc.status, error, str(exc))


# -- device authorization (RFC 8628 §3.1–3.2) ------------------------------------------------------------------


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
    """``POST /oauth2/device``: start a grant for a Matrix scope (:func:`.scopes.parse_scope`)."""
    try:
        form = parse_form(request)
        client = _client_for(server, form, DEVICE_CODE_GRANT)
        scope = form.get("scope")
        if scope is None:
            raise BodyError(400, "invalid_request", "scope is required")
        matrix_scope = parse_scope(scope)
    except BodyError as exc:
        return server, _body_error(exc, "invalid_request")
    ids, device_code = server.ids.token("dc_")
    ids, user_code = ids.user_code()
    while normalize_user_code(user_code) in server.user_codes:
        ids, user_code = ids.user_code()
    grant = DeviceGrant(
        client_id=client.client_id,
        scope=matrix_scope,
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
        queues=replace(server.queues, grants=server.queues.grants.push(digest, grant.forgotten_at_ms)),
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


def _grant(server: OAuthServer, digest: bytes | None, now_ms: int) -> DeviceGrant | None:
    """The grant under a device code's digest, unless it is unknown or forgotten (whether purged yet or not)."""
    grant = None if digest is None else server.grants.get(digest)
    return None if grant is None or now_ms >= grant.forgotten_at_ms else grant


def pending_grant(server: OAuthServer, user_code: str, *, now_ms: int) -> DeviceGrant | None:
    """The grant a user code stands for, if it is still waiting for a decision: what a consent page would show."""
    grant = _grant(server, server.user_codes.get(normalize_user_code(user_code)), now_ms)
    if grant is None or grant.status is not GrantStatus.PENDING or now_ms >= grant.expires_at_ms:
        return None
    return grant


def _decide(
    server: OAuthServer, user_code: str, user_id: str | None, *, now_ms: int
) -> tuple[OAuthServer, ConsentResult]:
    digest = server.user_codes.get(normalize_user_code(user_code))
    grant = _grant(server, digest, now_ms)
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


# -- authorization code (RFC 6749 §4.1.2) ----------------------------------------------------------------------


def issue_code(
    server: OAuthServer, request: AuthorizationRequest, user_id: str, *, now_ms: int
) -> tuple[OAuthServer, str]:
    """The signed-in ``user_id`` consented to ``request``: store a fresh code and return where to send the browser."""
    ids, code = server.ids.token("ac_")
    record = AuthorizationCode(
        client_id=request.client.client_id,
        redirect_uri=request.redirect_uri,
        scope=request.scope,
        code_challenge=request.code_challenge,
        user_id=user_id,
        expires_at_ms=now_ms + CODE_LIFETIME_S * 1000,
    )
    digest = token_digest(code)
    server = replace(
        server,
        ids=ids,
        codes=server.codes.set(digest, record),
        queues=replace(server.queues, codes=server.queues.codes.push(digest, record.expires_at_ms)),
    )
    fields = {"code": code}
    if request.state is not None:
        fields["state"] = request.state
    return server, redirect_to_client(request.redirect_uri, request.response_mode, fields)


# -- token endpoint (RFC 6749 §4.1.3, §6; RFC 8628 §3.4–3.5) ---------------------------------------------------


def _token_response(issued: IssuedTokens, scope: str) -> HttpResponse:
    content: dict[str, Any] = {"access_token": issued.access_token, "token_type": "Bearer", "scope": scope}
    if issued.refresh_token is not None:
        content["refresh_token"] = issued.refresh_token
    if issued.expires_in_s is not None:
        content["expires_in"] = issued.expires_in_s
    return json_response(200, content, extra_headers=(("cache-control", "no-store"),))


def _issue(
    server: OAuthServer,
    registry: DeviceRegistry,
    client: Client,
    user_id: str,
    scope: MatrixScope,
    *,
    now_ms: int,
) -> tuple[DeviceRegistry, HttpResponse]:
    """Bind fresh tokens to the scope's device; a refresh token only for a client registered to use one."""
    registry, device_id, issued = bind_device(
        registry,
        user_id,
        scope.device_id,
        initial_display_name=None,
        with_refresh_token=REFRESH_TOKEN_GRANT in client.grant_types,
        now_ms=now_ms,
        lifetime_s=server.access_token_lifetime_s,
        client_id=client.client_id,
    )
    return registry, _token_response(issued, scope.granted(device_id))


def _poll(
    server: OAuthServer, registry: DeviceRegistry, form: dict[str, str], *, now_ms: int
) -> tuple[OAuthServer, DeviceRegistry, HttpResponse]:
    client = _client_for(server, form, DEVICE_CODE_GRANT)
    device_code = form.get("device_code")
    if device_code is None:
        raise BodyError(400, "invalid_request", "device_code is required")
    digest = token_digest(device_code)
    grant = _grant(server, digest, now_ms)
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
    registry, response = _issue(server, registry, client, grant.user_id, grant.scope, now_ms=now_ms)
    server = replace(
        server,
        grants=server.grants.set(digest, replace(grant, status=GrantStatus.REDEEMED)),
        user_codes=server.user_codes.remove(normalize_user_code(grant.user_code)),
    )
    return server, registry, response


def _redeem_code(
    server: OAuthServer, registry: DeviceRegistry, form: dict[str, str], *, now_ms: int
) -> tuple[OAuthServer, DeviceRegistry, HttpResponse]:
    client = _client_for(server, form, AUTHORIZATION_CODE_GRANT)
    code, redirect_uri, verifier = form.get("code"), form.get("redirect_uri"), form.get("code_verifier")
    if code is None or redirect_uri is None or verifier is None:
        raise BodyError(400, "invalid_request", "code, redirect_uri and code_verifier are required")
    digest = token_digest(code)
    record = server.codes.get(digest)
    # An expired code is unknown whether or not it has been purged yet, so the answer never depends on the purge.
    if record is None or record.client_id != client.client_id or now_ms >= record.expires_at_ms:
        raise BodyError(400, "invalid_grant", "unknown, expired, foreign or already used code")
    # The code is spent by any attempt to redeem it, right or wrong: a guessed verifier gets one try.
    server = replace(server, codes=server.codes.remove(digest))
    if redirect_uri != record.redirect_uri:
        return server, registry, oauth_error(400, "invalid_grant", "redirect_uri differs from the authorization")
    if not pkce_matches(verifier, record.code_challenge):
        return server, registry, oauth_error(400, "invalid_grant", "code_verifier does not match the challenge")
    if record.user_id not in registry.accounts:
        return server, registry, oauth_error(400, "invalid_grant", "the user is gone")
    registry, response = _issue(server, registry, client, record.user_id, record.scope, now_ms=now_ms)
    return server, registry, response


def _refresh(
    server: OAuthServer, registry: DeviceRegistry, form: dict[str, str], *, now_ms: int
) -> tuple[OAuthServer, DeviceRegistry, HttpResponse]:
    client = _client_for(server, form, REFRESH_TOKEN_GRANT)
    refresh_token = form.get("refresh_token")
    if refresh_token is None:
        raise BodyError(400, "invalid_request", "refresh_token is required")
    rotated = refresh_device(registry, refresh_token, now_ms=now_ms, lifetime_s=server.access_token_lifetime_s)
    if rotated is None or rotated[1].client_id != client.client_id:
        raise BodyError(400, "invalid_grant", "unknown, foreign or already used refresh_token")
    registry, binding, issued = rotated
    scope = f"{API_SCOPE} {DEVICE_SCOPE_PREFIX}{binding.device_id}"
    return server, registry, _token_response(issued, scope)


def token(
    server: OAuthServer, registry: DeviceRegistry, request: HttpRequest, *, now_ms: int
) -> tuple[OAuthServer, DeviceRegistry, HttpResponse]:
    """``POST /oauth2/token`` for the authorization code, device code and refresh token grants."""
    try:
        form = parse_form(request)
        grant_type = form.get("grant_type")
        if grant_type is None:
            raise BodyError(400, "invalid_request", "grant_type is required")
        if grant_type == DEVICE_CODE_GRANT:
            return _poll(server, registry, form, now_ms=now_ms)
        if grant_type == AUTHORIZATION_CODE_GRANT:
            return _redeem_code(server, registry, form, now_ms=now_ms)
        if grant_type == REFRESH_TOKEN_GRANT:
            return _refresh(server, registry, form, now_ms=now_ms)
        raise BodyError(400, "unsupported_grant_type", "grant_type is not supported")
    except BodyError as exc:
        return server, registry, _body_error(exc, "invalid_request")


# -- revocation (RFC 7009) -------------------------------------------------------------------------------------


def revoke(server: OAuthServer, registry: DeviceRegistry, request: HttpRequest) -> tuple[DeviceRegistry, HttpResponse]:
    """``POST /oauth2/revoke``: log out the device of an access or refresh token issued to this client.

    RFC 7009 §2.2: an unknown or already invalid token is answered 200 like a revoked one (the client's goal is
    reached either way); a token issued to another client is refused (§2.1) and stays valid.
    """
    try:
        form = parse_form(request)
        client_id = form.get("client_id")
        if client_id is None:
            raise BodyError(400, "invalid_request", "client_id is required")
        if client_id not in server.clients:
            raise BodyError(401, "invalid_client", "unknown client_id")
        token_value = form.get("token")
        if token_value is None:
            raise BodyError(400, "invalid_request", "token is required")
        hint = form.get("token_type_hint")
        if hint is not None and hint not in ("access_token", "refresh_token"):
            raise BodyError(400, "unsupported_token_type", "token_type_hint is access_token or refresh_token")
    except BodyError as exc:
        return registry, _body_error(exc, "invalid_request")
    revoked, binding = revoke_token(registry, token_value)
    if binding is not None and binding.client_id != client_id:
        return registry, oauth_error(400, "unauthorized_client", "the token was issued to another client")
    return revoked, json_response(200, {}, extra_headers=(("cache-control", "no-store"),))
