"""The authorization code grant with PKCE: reading an authorization request, and the codes it produces.

Spec: RFC 6749 §4.1 (authorization request §4.1.1, response §4.1.2, errors §4.1.2.1, token request §4.1.3), §3.1
(no repeated parameters), §3.1.2.2 (exact redirect URI match); RFC 7636 §4.1–4.6 (PKCE: a verifier of 43–128
unreserved characters, ``S256`` = BASE64URL(SHA256(verifier)) without padding); RFC 8252 §7.3 (a loopback redirect
URI matches on any port); OAuth 2.0 Multiple Response Type Encoding Practices §2.1 (``response_mode`` ``query`` and
``fragment``); the Matrix Client-Server API "Authorization code grant", which makes PKCE with ``S256`` mandatory.

Theory of operation
-------------------
:func:`parse_authorization_request` reads the query of ``GET /oauth2/authorize`` (the consent form posts the same
query back, and it is read again, so nothing about a pending request is stored between the two). Its errors come in
the two kinds RFC 6749 §4.1.2.1 separates: while the client or its redirect URI is in doubt the error is shown to
the user (:class:`AuthorizationError` with ``redirect_uri`` None), never sent to an unverified URI; after that,
every error goes back to the client's redirect URI with its ``state``.

When the signed-in user consents, :func:`qrlogin.homeserver.oauth.issue_code` stores an
:class:`AuthorizationCode` under the digest of a fresh code and redirects with it. The token endpoint redeems a code
once, within :data:`CODE_LIFETIME_S`, for the same client and redirect URI, and only with the verifier whose
challenge was sent (:func:`pkce_matches`, compared in constant time).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from dataclasses import dataclass
from urllib.parse import urlencode

from ..http import split_url
from ._frozenmap import FrozenMap
from ._http import BodyError
from .clients import AUTHORIZATION_CODE_GRANT, Client, printable_uri
from .scopes import MatrixScope, parse_scope

__all__ = [
    "CODE_LIFETIME_S",
    "RESPONSE_MODES",
    "AuthorizationCode",
    "AuthorizationError",
    "AuthorizationRequest",
    "parse_authorization_request",
    "pkce_matches",
    "redirect_to_client",
]

CODE_LIFETIME_S = 60
"""How long a code may wait to be redeemed (RFC 6749 §4.1.2 recommends at most ten minutes)."""
RESPONSE_MODES = ("query", "fragment")
MAX_STATE_LENGTH = 1024

_PKCE_CHARACTERS = re.compile(r"[A-Za-z0-9._~-]{43,128}")
_S256_CHALLENGE = re.compile(r"[A-Za-z0-9_-]{43}")


@dataclass(frozen=True, slots=True, kw_only=True)
class AuthorizationRequest:
    """A valid authorization request: what the consent page shows and what a code is issued for."""

    client: Client
    redirect_uri: str
    scope: MatrixScope
    state: str | None
    code_challenge: str
    response_mode: str


@dataclass(frozen=True, slots=True, kw_only=True)
class AuthorizationError:
    """A refused request: shown to the user when ``redirect_uri`` is None, else sent back to the client."""

    error: str
    description: str
    redirect_uri: str | None = None
    state: str | None = None
    response_mode: str = "query"


@dataclass(frozen=True, slots=True, kw_only=True)
class AuthorizationCode:
    """What a code was issued for; stored under the code's digest until it is redeemed or expires."""

    client_id: str
    redirect_uri: str
    scope: MatrixScope
    code_challenge: str
    user_id: str
    expires_at_ms: int


def _loopback_equal(registered: str, offered: str) -> bool:
    """RFC 8252 §7.3: a loopback ``http`` redirect URI matches whatever port the native client chose."""
    if not printable_uri(offered):
        return False
    a, b = split_url(registered), split_url(offered)
    if a is None or b is None or a.scheme != "http" or b.scheme != "http":
        return False
    if a.hostname not in ("127.0.0.1", "::1", "localhost") or a.hostname != b.hostname:
        return False
    return (a.path, a.query, a.fragment) == (b.path, b.query, b.fragment)


def _registered_redirect(client: Client, offered: str | None) -> str | None:
    if offered is None:
        return client.redirect_uris[0] if len(client.redirect_uris) == 1 else None
    for registered in client.redirect_uris:
        if registered == offered:
            return offered
        if client.application_type == "native" and _loopback_equal(registered, offered):
            return offered
    return None


def parse_authorization_request(
    query: tuple[tuple[str, str], ...], clients: FrozenMap[str, Client]
) -> AuthorizationRequest | AuthorizationError:
    """Read an authorization request (module docstring); total on any query."""
    params: dict[str, str] = {}
    for name, value in query:
        if name in params:
            return AuthorizationError(error="invalid_request", description=f"parameter {name!r} repeated")
        params[name] = value
    client = clients.get(params.get("client_id", ""))
    if client is None:
        return AuthorizationError(error="invalid_client", description="unknown client_id")
    redirect_uri = _registered_redirect(client, params.get("redirect_uri"))
    if redirect_uri is None:
        return AuthorizationError(error="invalid_request", description="redirect_uri is not registered for the client")

    state = params.get("state")
    response_mode = params.get("response_mode", "query")

    def refuse(error: str, description: str) -> AuthorizationError:
        mode = response_mode if response_mode in RESPONSE_MODES else "query"
        return AuthorizationError(
            error=error, description=description, redirect_uri=redirect_uri, state=state, response_mode=mode
        )

    if response_mode not in RESPONSE_MODES:
        return refuse("invalid_request", "response_mode must be query or fragment")
    if state is not None and len(state) > MAX_STATE_LENGTH:
        return refuse("invalid_request", "state is too long")
    if params.get("response_type") != "code":
        return refuse("unsupported_response_type", "response_type must be code")
    if AUTHORIZATION_CODE_GRANT not in client.grant_types:
        return refuse("unauthorized_client", "the client is not registered for the authorization code grant")
    if params.get("code_challenge_method") != "S256":
        return refuse("invalid_request", "PKCE with code_challenge_method S256 is required")
    challenge = params.get("code_challenge", "")
    if _S256_CHALLENGE.fullmatch(challenge) is None:
        return refuse("invalid_request", "code_challenge must be 43 base64url characters")
    if params.get("prompt") == "none":
        return refuse("consent_required", "this server always asks the user")
    try:
        scope = parse_scope(params.get("scope", ""))
    except BodyError as exc:
        return refuse("invalid_scope", str(exc))
    return AuthorizationRequest(
        client=client,
        redirect_uri=redirect_uri,
        scope=scope,
        state=state,
        code_challenge=challenge,
        response_mode=response_mode,
    )


def redirect_to_client(redirect_uri: str, response_mode: str, fields: dict[str, str]) -> str:
    """The URI the browser is sent to: ``fields`` in the query (kept after the registered one) or the fragment."""
    encoded = urlencode(fields)
    if response_mode == "fragment":
        return f"{redirect_uri}#{encoded}"
    return f"{redirect_uri}{'&' if '?' in redirect_uri else '?'}{encoded}"


def pkce_matches(verifier: str, challenge: str) -> bool:
    """RFC 7636 §4.6 for ``S256``: a well-formed verifier whose hash is the challenge (constant-time compare)."""
    if _PKCE_CHARACTERS.fullmatch(verifier) is None:
        return False
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    computed = base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")
    return hmac.compare_digest(computed, challenge)
