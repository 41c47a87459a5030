"""Finding a homeserver and what it offers, before any QR code exists.

Theory of operation
-------------------
A device that shows a QR code must know its homeserver's base URL (the rendezvous session is created there), and an
existing device must know which login protocols to offer. MSC4108 recommends checking before a QR code is shown, so
that a user whose server cannot do it is told at once instead of after scanning. :func:`discover` does, in order:

1. ``GET https://NAME/.well-known/matrix/client`` for a server name (a 404 means ``https://NAME``); a URL is taken
   as the base URL as it is;
2. ``GET /_matrix/client/versions``: the server must advertise sign-in with QR code (``org.matrix.msc4108`` or
   ``io.element.msc4388`` in ``unstable_features``), or :class:`DiscoveryError` says so before anything else happens;
3. the OAuth 2.0 server metadata: ``GET /_matrix/client/v1/auth_metadata``, falling back to the unstable
   ``/_matrix/client/unstable/org.matrix.msc2965/auth_metadata`` that older servers serve. Its
   ``grant_types_supported`` decides the login protocols an existing device offers (:attr:`DiscoveredServer.protocols`):
   ``device_authorization_grant`` when the device code grant and a device authorization endpoint are there, else
   none (the existing device then sends ``"protocols": []``, as the text says).

Every answer is parsed by the core's strict readers; anything unusable is a :class:`DiscoveryError` naming the step.
"""

from __future__ import annotations

from dataclasses import dataclass

from .._json import JsonError, JsonObject, loads_object
from ..errors import QrLoginError
from ..http import HttpRequest, HttpResponse, split_url
from ..login import oauth
from ..login.messages import DEVICE_AUTHORIZATION_GRANT
from .transport import Transport

__all__ = [
    "AUTH_METADATA_PATHS",
    "QR_LOGIN_FEATURES",
    "DiscoveredServer",
    "DiscoveryError",
    "discover",
    "login_protocols",
]

#: ``unstable_features`` flags that advertise sign-in with QR code (MSC4108's and MSC4388's unstable names).
QR_LOGIN_FEATURES = ("org.matrix.msc4108", "io.element.msc4388")
#: Where the OAuth 2.0 server metadata is served: the stable path first, then MSC2965's unstable one.
AUTH_METADATA_PATHS = (oauth.AUTH_METADATA_PATH, oauth.UNSTABLE_AUTH_METADATA_PATH)
_JSON = (("accept", "application/json"),)
_MAX_BYTES = 65_536


class DiscoveryError(QrLoginError):
    """The homeserver cannot be used for sign-in with QR code; the message says which step failed and why."""


@dataclass(frozen=True, slots=True, kw_only=True)
class DiscoveredServer:
    """What discovery learnt: where the server is and which login protocols it offers."""

    server_name: str
    base_url: str
    protocols: tuple[str, ...]
    token_endpoint: str | None
    issuer: str | None


def login_protocols(metadata: JsonObject) -> tuple[str, ...]:
    """The MSC4108 login protocols the server metadata allows (``device_authorization_grant`` or none)."""
    grants = metadata.get("grant_types_supported")
    has_grant = isinstance(grants, list) and oauth.DEVICE_CODE_GRANT in grants
    has_endpoint = isinstance(metadata.get("device_authorization_endpoint"), str)
    return (DEVICE_AUTHORIZATION_GRANT,) if has_grant and has_endpoint else ()


async def _get(transport: Transport, url: str, deadline_ms: int, what: str) -> HttpResponse:
    response = await transport.perform(HttpRequest(method="GET", target=url, headers=_JSON), deadline_ms=deadline_ms)
    if response is None:
        raise DiscoveryError(f"{what}: no answer from {url} ({transport.last_failure or 'no reason given'})")
    return response


def _json(response: HttpResponse, what: str) -> JsonObject:
    try:
        return loads_object(response.body, max_bytes=_MAX_BYTES)
    except JsonError as exc:
        raise DiscoveryError(f"{what}: {exc}") from None


async def discover(transport: Transport, homeserver: str, *, deadline_ms: int) -> DiscoveredServer:
    """Discover ``homeserver`` (a server name or a base URL); see the module docstring."""
    try:
        server_name, base_url = oauth.resolve_homeserver(homeserver.strip())
    except oauth.OAuthError:
        raise DiscoveryError(f"{homeserver!r} is neither a server name nor an http(s) URL") from None
    if base_url is None:
        assert server_name is not None
        answer = await _get(transport, oauth.well_known_request(server_name).target, deadline_ms, ".well-known")
        try:
            base_url = oauth.parse_well_known(server_name, answer)
        except oauth.OAuthError as exc:
            raise DiscoveryError(f".well-known: {exc}") from None
    parts = split_url(base_url)
    if parts is None or not parts.netloc:
        raise DiscoveryError(f"{base_url!r} is not a usable base URL")
    if parts.scheme == "http" and not transport.options.allow_http:
        raise DiscoveryError(f"{base_url} is plain http: allow it explicitly (allow_http, --allow-http)")
    if server_name is None:
        server_name = parts.netloc

    versions = await _get(transport, base_url + "/_matrix/client/versions", deadline_ms, "versions")
    if versions.status != 200:
        raise DiscoveryError(f"versions: HTTP {versions.status}")
    features = _json(versions, "versions").get("unstable_features")
    if not isinstance(features, dict) or not any(features.get(name) is True for name in QR_LOGIN_FEATURES):
        raise DiscoveryError(f"{base_url} does not offer sign-in with QR code (no {' or '.join(QR_LOGIN_FEATURES)})")

    metadata: JsonObject | None = None
    for path in AUTH_METADATA_PATHS:
        answer = await _get(transport, base_url + path, deadline_ms, "auth_metadata")
        if answer.status == 200:
            metadata = _json(answer, "auth_metadata")
            break
    if metadata is None:
        raise DiscoveryError(f"{base_url} serves no OAuth 2.0 server metadata: sign-in with QR code needs it")
    token_endpoint = metadata.get("token_endpoint")
    issuer = metadata.get("issuer")
    return DiscoveredServer(
        server_name=server_name,
        base_url=base_url,
        protocols=login_protocols(metadata),
        token_endpoint=token_endpoint if isinstance(token_endpoint, str) else None,
        issuer=issuer if isinstance(issuer, str) else None,
    )
