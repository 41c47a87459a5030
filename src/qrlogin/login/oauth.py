"""The new device's side of the OAuth 2.0 device authorization grant, as pure request builders and response
parsers.

Theory of operation
-------------------
RFC 8628 as profiled for Matrix by MSC4341 and used by MSC4108 ("Login via OAuth 2.0 Device Authorization
Grant", steps 1, 2, 4 and 6) is a short sequence of HTTP exchanges. Each is split into a *builder* returning
an :class:`~qrlogin.http.HttpRequest` and a *parser* taking the
:class:`~qrlogin.http.HttpResponse`:

1. server discovery: ``GET https://<server_name>/.well-known/matrix/client`` -> ``m.homeserver.base_url``
   (a 404 means "use the server name": the spec's IGNORE outcome);
2. ``GET <base_url>/_matrix/client/v1/auth_metadata`` (after a 404 there, MSC2965's unstable
   ``/_matrix/client/unstable/org.matrix.msc2965/auth_metadata``, which older servers serve); ``grant_types_supported``
   must list ``urn:ietf:params:oauth:grant-type:device_code`` and a ``device_authorization_endpoint`` must be present;
3. a static ``client_id`` or dynamic client registration (RFC 7591) at ``registration_endpoint``;
4. the device authorization request with scope ``urn:matrix:client:api:*
   urn:matrix:client:device:<device_id>``;
5. device access token requests, whose outcome is one of :class:`TokenGranted`, :class:`TokenPending`,
   :class:`TokenSlowDown`, :class:`TokenDenied` (``access_denied``, and the seed diagram's
   ``authorization_declined``), :class:`TokenExpired` (``expired_token``).

Parsers raise :class:`OAuthError` (a :class:`~qrlogin.errors.RemoteProtocolError`) and nothing else. The state
machine in :mod:`qrlogin.login.new_device` decides what each outcome means for the peer.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

from .._json import JsonError, JsonObject, dumps, loads_object
from .._secret import Secret
from ..errors import RemoteProtocolError
from ..http import HttpRequest, HttpResponse, split_url

__all__ = [
    "AUTH_METADATA_PATH",
    "DEFAULT_INTERVAL_S",
    "DEVICE_CODE_GRANT",
    "SLOW_DOWN_INCREMENT_S",
    "UNSTABLE_AUTH_METADATA_PATH",
    "AuthMetadata",
    "DeviceAuthorization",
    "OAuthError",
    "TokenDenied",
    "TokenExpired",
    "TokenGranted",
    "TokenOutcome",
    "TokenPending",
    "TokenSlowDown",
    "Tokens",
    "auth_metadata_request",
    "checked_base_url",
    "device_authorization_request",
    "device_scope",
    "parse_auth_metadata",
    "parse_device_authorization",
    "parse_registration",
    "parse_token_response",
    "parse_well_known",
    "refresh_request",
    "registration_request",
    "resolve_homeserver",
    "token_request",
    "well_known_request",
]

DEVICE_CODE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
DEFAULT_INTERVAL_S = 5  # RFC 8628 §3.2
SLOW_DOWN_INCREMENT_S = 5  # RFC 8628 §3.5
MAX_HTTP_BODY_BYTES = 65536
_JSON = (("Accept", "application/json"),)
_FORM = (("Content-Type", "application/x-www-form-urlencoded"), ("Accept", "application/json"))


#: The Matrix spec's server name grammar (appendices, "Server Name"); the port is checked again by split_url.
_SERVER_NAME = re.compile(r"(?:\[[0-9A-Fa-f:.]{2,45}\]|[0-9A-Za-z.-]{1,255})(?::[0-9]{1,5})?")


class OAuthError(RemoteProtocolError):
    """The homeserver's answer is unusable for the device authorization grant."""


def _json_body(response: HttpResponse) -> JsonObject:
    try:
        return loads_object(response.body, max_bytes=MAX_HTTP_BODY_BYTES)
    except JsonError as exc:
        raise OAuthError(f"response body: {exc}") from None


def _https_url(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise OAuthError(f"{what} must be a string")
    parts = split_url(value)
    if parts is None or parts.scheme not in ("https", "http") or not parts.netloc:
        raise OAuthError(f"{what} is not an absolute http(s) URL")
    return value


def _base(url: str) -> str:
    return url.rstrip("/")


# ------------------------------------------------------------------------------------------------- discovery


def resolve_homeserver(homeserver: str) -> tuple[str | None, str | None]:
    """Split what a QR code or ``m.login.protocols`` names into ``(server_name, base_url)``; exactly one is
    set.

    The texts say ``homeserver`` is a server name, but matrix-rust-sdk sends a full URL there
    (``spec_vectors/login_message_fixtures.json`` case ``protocols-msc4108``): an absolute http(s) URL is taken as the
    base URL. Anything else must be a server name as the Matrix spec's grammar has it (``host[:port]``, the host a DNS
    name, an IPv4 address or a bracketed IPv6 one), so that the well-known URL built from it names that host.
    """
    if homeserver.startswith(("https://", "http://")):
        return None, _base(_https_url(homeserver, "homeserver"))
    if _SERVER_NAME.fullmatch(homeserver) is None or split_url(f"https://{homeserver}/") is None:
        raise OAuthError("homeserver is neither an http(s) URL nor a server name")
    return homeserver, None


def checked_base_url(value: str) -> str:
    """A homeserver base URL must be an absolute http(s) URL; returned without a trailing slash."""
    return _base(_https_url(value, "base_url"))


def well_known_request(server_name: str) -> HttpRequest:
    return HttpRequest(method="GET", target=f"https://{server_name}/.well-known/matrix/client", headers=_JSON)


def parse_well_known(server_name: str, response: HttpResponse) -> str:
    """The homeserver base URL (no trailing slash)."""
    if response.status == 404:
        return f"https://{server_name}"
    if response.status != 200:
        raise OAuthError(f"well-known lookup failed with HTTP {response.status}")
    body = _json_body(response)
    homeserver = body.get("m.homeserver")
    if not isinstance(homeserver, dict):
        raise OAuthError("well-known has no m.homeserver object")
    return _base(_https_url(homeserver.get("base_url"), "m.homeserver.base_url"))


@dataclass(frozen=True, slots=True, kw_only=True)
class AuthMetadata:
    issuer: str
    token_endpoint: str
    device_authorization_endpoint: str
    registration_endpoint: str | None


#: Where the OAuth 2.0 server metadata is served: the stable path, and MSC2965's unstable one older servers serve.
AUTH_METADATA_PATH = "/_matrix/client/v1/auth_metadata"
UNSTABLE_AUTH_METADATA_PATH = "/_matrix/client/unstable/org.matrix.msc2965/auth_metadata"


def auth_metadata_request(base_url: str, *, unstable: bool = False) -> HttpRequest:
    path = UNSTABLE_AUTH_METADATA_PATH if unstable else AUTH_METADATA_PATH
    return HttpRequest(method="GET", target=f"{_base(base_url)}{path}", headers=_JSON)


def parse_auth_metadata(response: HttpResponse) -> AuthMetadata:
    if response.status != 200:
        raise OAuthError(f"auth_metadata failed with HTTP {response.status}: no OAuth 2.0 API")
    body = _json_body(response)
    grants = body.get("grant_types_supported")
    if not isinstance(grants, list) or DEVICE_CODE_GRANT not in grants:
        raise OAuthError("the homeserver does not support the device_code grant")
    registration = body.get("registration_endpoint")
    return AuthMetadata(
        issuer=_https_url(body.get("issuer"), "issuer"),
        token_endpoint=_https_url(body.get("token_endpoint"), "token_endpoint"),
        device_authorization_endpoint=_https_url(
            body.get("device_authorization_endpoint"), "device_authorization_endpoint"
        ),
        registration_endpoint=None if registration is None else _https_url(registration, "registration_endpoint"),
    )


# ---------------------------------------------------------------------------------------------- registration


def registration_request(metadata: AuthMetadata, client_metadata: JsonObject) -> HttpRequest:
    """RFC 7591 dynamic client registration; ``client_metadata`` is the application's own description."""
    if metadata.registration_endpoint is None:
        raise OAuthError("the homeserver offers no dynamic client registration")
    body = dict(client_metadata)
    grants = list(body.get("grant_types", []))
    if DEVICE_CODE_GRANT not in grants:
        grants.append(DEVICE_CODE_GRANT)
    body["grant_types"] = grants
    return HttpRequest(
        method="POST",
        target=metadata.registration_endpoint,
        headers=(("Content-Type", "application/json"), ("Accept", "application/json")),
        body=dumps(body),
    )


def parse_registration(response: HttpResponse) -> str:
    if response.status not in (200, 201):
        raise OAuthError(f"client registration failed with HTTP {response.status}")
    client_id = _json_body(response).get("client_id")
    if not isinstance(client_id, str) or not client_id:
        raise OAuthError("registration response has no client_id")
    return client_id


# ------------------------------------------------------------------------------------- device authorization


def device_scope(device_id: str) -> str:
    return f"urn:matrix:client:api:* urn:matrix:client:device:{device_id}"


@dataclass(frozen=True, slots=True, kw_only=True)
class DeviceAuthorization:
    """RFC 8628 §3.2 response. ``device_code`` is a bearer secret for the token endpoint."""

    device_code: Secret
    user_code: str
    verification_uri: str
    verification_uri_complete: str | None
    expires_in_s: int
    interval_s: int


def device_authorization_request(metadata: AuthMetadata, client_id: str, device_id: str) -> HttpRequest:
    body = urlencode({"client_id": client_id, "scope": device_scope(device_id)}, quote_via=quote)
    return HttpRequest(
        method="POST", target=metadata.device_authorization_endpoint, headers=_FORM, body=body.encode("ascii")
    )


def _positive_int(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise OAuthError(f"{what} must be a positive integer")
    return value


def parse_device_authorization(response: HttpResponse) -> DeviceAuthorization:
    if response.status != 200:
        raise OAuthError(f"device authorization failed with HTTP {response.status}")
    body = _json_body(response)
    device_code = body.get("device_code")
    user_code = body.get("user_code")
    if not isinstance(device_code, str) or not device_code:
        raise OAuthError("device_code must be a non-empty string")
    if not isinstance(user_code, str):
        raise OAuthError("user_code must be a string")
    complete = body.get("verification_uri_complete")
    interval = body.get("interval", DEFAULT_INTERVAL_S)
    return DeviceAuthorization(
        device_code=Secret(device_code.encode("utf-8")),
        user_code=user_code,
        verification_uri=_https_url(body.get("verification_uri"), "verification_uri"),
        verification_uri_complete=None if complete is None else _https_url(complete, "verification_uri_complete"),
        expires_in_s=_positive_int(body.get("expires_in"), "expires_in"),
        interval_s=_positive_int(interval, "interval"),
    )


# --------------------------------------------------------------------------------------------- token polling


@dataclass(frozen=True, slots=True, kw_only=True)
class Tokens:
    access_token: Secret
    refresh_token: Secret | None
    expires_in_s: int | None


@dataclass(frozen=True, slots=True, kw_only=True)
class TokenGranted:
    tokens: Tokens


@dataclass(frozen=True, slots=True, kw_only=True)
class TokenPending:
    """``authorization_pending``: ask again after the interval."""


@dataclass(frozen=True, slots=True, kw_only=True)
class TokenSlowDown:
    """``slow_down``: ask again, and from now on wait 5 s longer each time."""


@dataclass(frozen=True, slots=True, kw_only=True)
class TokenDenied:
    """``access_denied`` (RFC 8628) or ``authorization_declined`` (MSC4108 seed diagram)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class TokenExpired:
    """``expired_token``: the device code is no longer valid."""


TokenOutcome = TokenGranted | TokenPending | TokenSlowDown | TokenDenied | TokenExpired

_TOKEN_ERRORS: dict[str, TokenOutcome] = {
    "authorization_pending": TokenPending(),
    "slow_down": TokenSlowDown(),
    "access_denied": TokenDenied(),
    "authorization_declined": TokenDenied(),
    "expired_token": TokenExpired(),
}


def token_request(metadata: AuthMetadata, client_id: str, device_code: Secret) -> HttpRequest:
    body = urlencode(
        {
            "grant_type": DEVICE_CODE_GRANT,
            "device_code": device_code.value.decode("utf-8"),
            "client_id": client_id,
        },
        quote_via=quote,
    )
    return HttpRequest(method="POST", target=metadata.token_endpoint, headers=_FORM, body=body.encode("ascii"))


def refresh_request(token_endpoint: str, client_id: str, refresh_token: Secret) -> HttpRequest:
    """The refresh token grant (RFC 6749 §6) for a public client; the answer is read by
    :func:`parse_token_response` (a :class:`TokenGranted`, or an :class:`OAuthError` such as ``invalid_grant``)."""
    body = urlencode(
        {
            "grant_type": "refresh_token",
            "refresh_token": refresh_token.value.decode("utf-8"),
            "client_id": client_id,
        },
        quote_via=quote,
    )
    return HttpRequest(method="POST", target=token_endpoint, headers=_FORM, body=body.encode("ascii"))


def parse_token_response(response: HttpResponse) -> TokenOutcome:
    body = _json_body(response)
    if response.status == 200:
        access = body.get("access_token")
        if not isinstance(access, str) or not access:
            raise OAuthError("token response has no access_token")
        refresh = body.get("refresh_token")
        if refresh is not None and not isinstance(refresh, str):
            raise OAuthError("refresh_token must be a string")
        expires = body.get("expires_in")
        return TokenGranted(
            tokens=Tokens(
                access_token=Secret(access.encode("utf-8")),
                refresh_token=None if refresh is None else Secret(refresh.encode("utf-8")),
                expires_in_s=None if expires is None else _positive_int(expires, "expires_in"),
            )
        )
    error = body.get("error")
    if response.status in (400, 401) and isinstance(error, str) and error in _TOKEN_ERRORS:
        return _TOKEN_ERRORS[error]
    shown = error[:64] if isinstance(error, str) else type(error).__name__
    raise OAuthError(f"token endpoint answered HTTP {response.status} with error {shown!r}")
