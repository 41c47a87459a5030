"""The homeserver model: one immutable value that answers every HTTP request a QR login makes.

Theory of operation
-------------------
:class:`Homeserver` bundles the three services a sign-in with QR code talks to:

* the device registry and the device management API (:mod:`qrlogin.homeserver.devices`, docs/protocol.md §8);
* the OAuth 2.0 authorization server (:mod:`qrlogin.homeserver.oauth`, docs/protocol.md §7): auth metadata,
  client registration (:mod:`~qrlogin.homeserver.clients`), the authorization code, device code and refresh token
  grants, revocation, and its HTML pages for sign-in and consent (:mod:`~qrlogin.homeserver.pages`);
* the rendezvous store, supplied by the rendezvous layer through the :class:`RendezvousService` hook.

::

    handle(hs, request, *, now_ms) -> (hs, response)

routes one :class:`~qrlogin.homeserver.HttpRequest` to its endpoint and returns the next homeserver value with the
:class:`~qrlogin.homeserver.HttpResponse`. It is total: any request, however malformed, gets a well-formed JSON
response (unknown path: ``404 M_UNRECOGNIZED``; known path, wrong method: ``405 M_UNRECOGNIZED``; bad body:
``400``; oversized body: ``413``), or on the pages' paths a well-formed HTML one, never a 5xx, and it never
raises. With the same seed, the same requests at the same times give the same responses, byte for byte. Time
enters only through ``now_ms``; randomness only through the seed given to :func:`new_homeserver`.

Abuse bounds
------------
Password and user code guessing are limited per account (:mod:`~qrlogin.homeserver.limits`; the limits are
:func:`new_homeserver` arguments), and every record that lives for a limited time (device grants, authorization
codes, browser sessions, UIA sessions, failure counters) leaves its table through a creation-order queue
(:mod:`~qrlogin.homeserver._expiry`): :func:`handle` first pops a few due entries off each queue, so the value holds
the live records only and no request scans a table.

A user in a browser decides on the approval page at the ``verification_uri``; the simulated user acts through
:func:`approve_user_code` and :func:`deny_user_code`, which do what that page does (RFC 8628 §3.3), and can be
given an account with :func:`add_user`.

Rendezvous hook
---------------
The rendezvous store is the rendezvous layer's server core. Any value with
``handle(request, *, now_ms, authenticated) -> (service, response)`` can be installed with :func:`with_rendezvous`;
every request whose path starts with one of :data:`RENDEZVOUS_PREFIXES` is handed to it unchanged and its answer
returned unchanged. ``authenticated`` says whether the request carries a valid access token of this homeserver (the
token is only looked up, the device is not marked as seen), which a service needs for MSC4388's authenticated
creation mode. Without a service those paths answer ``404 M_UNRECOGNIZED``, which is what Synapse answers when the
feature is disabled (docs/protocol.md §6, v3).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Protocol

from ..http import HttpRequest, HttpResponse
from . import devices, oauth, pages
from ._http import bearer_token, json_response, matrix_error, split_path
from .devices import DeviceRegistry, TokenBinding
from .limits import DEFAULT_PASSWORD_LIMIT, DEFAULT_USER_CODE_LIMIT, FailureLimit
from .oauth import ConsentResult, OAuthServer

__all__ = [
    "AUTH_METADATA_PATH",
    "CLIENT_V3",
    "RENDEZVOUS_PREFIXES",
    "SPEC_VERSIONS",
    "UNSTABLE_AUTH_METADATA_PATH",
    "VERSIONS_PATH",
    "Homeserver",
    "RendezvousService",
    "add_user",
    "approve_user_code",
    "deny_user_code",
    "handle",
    "new_homeserver",
    "with_rendezvous",
]

CLIENT_V3 = ("_matrix", "client", "v3")
AUTH_METADATA_PATH = "/_matrix/client/v1/auth_metadata"
UNSTABLE_AUTH_METADATA_PATH = "/_matrix/client/unstable/org.matrix.msc2965/auth_metadata"
VERSIONS_PATH = "/_matrix/client/versions"
# Every Client-Server API version from v1.1 (login, registration, devices, whoami, logout as the model serves them)
# to v1.15 (which added ``auth_metadata``). Clients accept a server by finding a version they know in this list
# (matrix-js-sdk 43's server discovery knows v1.1 to v1.13 and refuses a server listing only v1.15). The model
# implements of each only the endpoints a sign-in uses (docs/homeserver.md).
SPEC_VERSIONS = tuple(f"v1.{minor}" for minor in range(1, 16))

RENDEZVOUS_PREFIXES = (
    "/_matrix/client/unstable/org.matrix.msc4108/rendezvous",
    "/_matrix/client/unstable/io.element.msc4388/rendezvous",
    "/_matrix/client/v1/rendezvous",
)


class RendezvousService(Protocol):
    """The rendezvous layer's server core, seen from the homeserver: an immutable value that answers requests."""

    def handle(
        self, request: HttpRequest, *, now_ms: int, authenticated: bool
    ) -> tuple[RendezvousService, HttpResponse]: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class Homeserver:
    server_name: str
    base_url: str
    registry: DeviceRegistry
    oauth: OAuthServer
    rendezvous: RendezvousService | None = None


def new_homeserver(
    *,
    server_name: str,
    base_url: str,
    seed: bytes,
    grant_expires_in_s: int = oauth.DEFAULT_EXPIRES_IN_S,
    poll_interval_s: int = oauth.DEFAULT_INTERVAL_S,
    access_token_lifetime_s: int = oauth.DEFAULT_ACCESS_TOKEN_LIFETIME_S,
    password_limit: FailureLimit = DEFAULT_PASSWORD_LIMIT,
    user_code_limit: FailureLimit = DEFAULT_USER_CODE_LIMIT,
) -> Homeserver:
    """A homeserver with no accounts; every id and token it will ever issue follows from ``seed``.

    ``access_token_lifetime_s`` is how long an access token issued through OAuth works before it must be
    refreshed; tokens from ``/login`` and ``/register`` do not expire. ``password_limit`` bounds failed password
    attempts per account, ``user_code_limit`` unknown user codes entered per account on the approval page.
    """
    base_url = base_url.rstrip("/")
    return Homeserver(
        server_name=server_name,
        base_url=base_url,
        registry=devices.new_registry(server_name, seed, password_limit=password_limit),
        oauth=oauth.new_oauth_server(
            base_url,
            seed,
            expires_in_s=grant_expires_in_s,
            interval_s=poll_interval_s,
            access_token_lifetime_s=access_token_lifetime_s,
            user_code_limit=user_code_limit,
        ),
    )


def with_rendezvous(hs: Homeserver, service: RendezvousService | None) -> Homeserver:
    return replace(hs, rendezvous=service)


def add_user(hs: Homeserver, localpart: str, password: str) -> tuple[Homeserver, str]:
    """Create an account directly (test and simulation setup); returns its user id."""
    registry, user_id = devices.add_account(hs.registry, localpart, password)
    return replace(hs, registry=registry), user_id


def approve_user_code(hs: Homeserver, user_code: str, user_id: str, *, now_ms: int) -> tuple[Homeserver, ConsentResult]:
    server, result = oauth.approve(hs.oauth, hs.registry, user_code, user_id, now_ms=now_ms)
    return replace(hs, oauth=server), result


def deny_user_code(hs: Homeserver, user_code: str, *, now_ms: int) -> tuple[Homeserver, ConsentResult]:
    server, result = oauth.deny(hs.oauth, user_code, now_ms=now_ms)
    return replace(hs, oauth=server), result


def _unrecognized() -> HttpResponse:
    return matrix_error(404, "M_UNRECOGNIZED", "unrecognized request")


def _bad_method() -> HttpResponse:
    return matrix_error(405, "M_UNRECOGNIZED", "method not allowed on this path")


def _authenticate(
    hs: Homeserver, request: HttpRequest, *, now_ms: int, allow_expired: bool = False
) -> tuple[Homeserver, TokenBinding | HttpResponse]:
    """The device behind the request's token; an expired one is a soft logout (the client should refresh)."""
    token = bearer_token(request)
    if token is None:
        return hs, matrix_error(401, "M_MISSING_TOKEN", "missing access token")
    binding = devices.lookup_access_token(hs.registry, token)
    if binding is None:
        return hs, matrix_error(401, "M_UNKNOWN_TOKEN", "unknown or invalidated access token", soft_logout=False)
    if binding.expired(now_ms) and not allow_expired:
        return hs, matrix_error(401, "M_UNKNOWN_TOKEN", "the access token has expired", soft_logout=True)
    return replace(hs, registry=devices.touch(hs.registry, binding, now_ms)), binding


def _well_known(hs: Homeserver) -> HttpResponse:
    return json_response(200, {"m.homeserver": {"base_url": hs.base_url}})


def _versions(hs: Homeserver) -> HttpResponse:
    """``GET /_matrix/client/versions``: MSC4108 is advertised exactly when a rendezvous service is installed."""
    features = {"org.matrix.msc4108": hs.rendezvous is not None}
    return json_response(200, {"versions": list(SPEC_VERSIONS), "unstable_features": features})


def _client_api(
    hs: Homeserver, request: HttpRequest, rest: tuple[str, ...], *, now_ms: int
) -> tuple[Homeserver, HttpResponse]:
    method = request.method
    if rest == ("login",):
        if method == "GET":
            return hs, devices.login_flows()
        if method != "POST":
            return hs, _bad_method()
        registry, response = devices.login(hs.registry, request, now_ms=now_ms)
        return replace(hs, registry=registry), response
    if rest == ("register",):
        if method != "POST":
            return hs, _bad_method()
        registry, response = devices.register(hs.registry, request, now_ms=now_ms)
        return replace(hs, registry=registry), response

    if rest in (("logout",), ("logout", "all")):
        if method != "POST":
            return hs, _bad_method()
        # Logging out with an expired token is allowed: a client that cannot refresh must still be able to leave.
        hs, auth = _authenticate(hs, request, now_ms=now_ms, allow_expired=True)
        if isinstance(auth, HttpResponse):
            return hs, auth
        log_out = devices.logout if rest == ("logout",) else devices.logout_all
        registry, response = log_out(hs.registry, auth)
        return replace(hs, registry=registry), response

    allowed: tuple[str, ...]
    if rest in (("account", "whoami"), ("devices",)):
        allowed = ("GET",)
    elif len(rest) == 2 and rest[0] == "devices" and rest[1]:
        allowed = ("GET", "PUT", "DELETE")
    else:
        return hs, _unrecognized()
    if method not in allowed:
        return hs, _bad_method()

    hs, auth = _authenticate(hs, request, now_ms=now_ms)
    if isinstance(auth, HttpResponse):
        return hs, auth
    if rest == ("account", "whoami"):
        return hs, devices.whoami(auth)
    if rest == ("devices",):
        return hs, devices.list_devices(hs.registry, auth)
    device_id = rest[-1]
    if method == "GET":
        return hs, devices.show_device(hs.registry, auth, device_id)
    if method == "PUT":
        registry, response = devices.update_device(hs.registry, auth, device_id, request)
    else:
        registry, response = devices.delete_device_request(hs.registry, auth, device_id, request, now_ms=now_ms)
    return replace(hs, registry=registry), response


def _oauth_api(hs: Homeserver, request: HttpRequest, *, now_ms: int) -> tuple[Homeserver, HttpResponse] | None:
    path = request.path
    if path in (AUTH_METADATA_PATH, UNSTABLE_AUTH_METADATA_PATH):
        return hs, oauth.metadata(hs.oauth) if request.method == "GET" else _bad_method()
    if path in pages.PAGE_PATHS:
        server, registry, response = pages.handle_page(hs.oauth, hs.registry, request, now_ms=now_ms)
        return replace(hs, oauth=server, registry=registry), response
    if path not in (oauth.REGISTRATION_PATH, oauth.DEVICE_AUTHORIZATION_PATH, oauth.TOKEN_PATH, oauth.REVOCATION_PATH):
        return None
    if request.method != "POST":
        return hs, _bad_method()
    if path == oauth.REVOCATION_PATH:
        registry, response = oauth.revoke(hs.oauth, hs.registry, request)
        return replace(hs, registry=registry), response
    if path == oauth.REGISTRATION_PATH:
        server, response = oauth.register_client(hs.oauth, request)
        return replace(hs, oauth=server), response
    if path == oauth.DEVICE_AUTHORIZATION_PATH:
        server, response = oauth.device_authorization(hs.oauth, request, now_ms=now_ms)
        return replace(hs, oauth=server), response
    server, registry, response = oauth.token(hs.oauth, hs.registry, request, now_ms=now_ms)
    return replace(hs, oauth=server, registry=registry), response


def _is_rendezvous(path: str) -> bool:
    return any(path == prefix or path.startswith(prefix + "/") for prefix in RENDEZVOUS_PREFIXES)


def _expire(hs: Homeserver, now_ms: int) -> Homeserver:
    registry = devices.expire(hs.registry, now_ms)
    server = oauth.expire(hs.oauth, now_ms)
    if registry is hs.registry and server is hs.oauth:
        return hs
    return replace(hs, registry=registry, oauth=server)


def handle(hs: Homeserver, request: HttpRequest, *, now_ms: int) -> tuple[Homeserver, HttpResponse]:
    """Answer one request; see the module docstring for the routing table and the guarantees."""
    hs = _expire(hs, now_ms)
    if _is_rendezvous(request.path):
        if hs.rendezvous is None:
            return hs, _unrecognized()
        token = bearer_token(request)
        authenticated = token is not None and devices.lookup_access_token(hs.registry, token) is not None
        service, response = hs.rendezvous.handle(request, now_ms=now_ms, authenticated=authenticated)
        return replace(hs, rendezvous=service), response
    if request.path == "/.well-known/matrix/client":
        return hs, _well_known(hs) if request.method == "GET" else _bad_method()
    if request.path == VERSIONS_PATH:
        return hs, _versions(hs) if request.method == "GET" else _bad_method()
    routed = _oauth_api(hs, request, now_ms=now_ms)
    if routed is not None:
        return routed
    segments = split_path(request.path)
    if segments is None or segments[:3] != CLIENT_V3:
        return hs, _unrecognized()
    return _client_api(hs, request, segments[3:], now_ms=now_ms)
