"""Plain HTTP request and response values: the one shape every sans-IO layer speaks.

Theory of operation
-------------------
No core module touches a socket. A machine that needs the network emits an :class:`HttpRequest` inside an effect and
is later fed the matching :class:`HttpResponse`; a server core maps an :class:`HttpRequest` to an
:class:`HttpResponse`. Both are frozen, hashable data, so they can sit inside states, effects and the simulator's
explored worlds. An adapter (httpx, ASGI, the simulator, a test) moves them and maps them to and from its framework
in a few lines.

``target`` is exactly what the request carries to name its resource, in one of two forms (RFC 9112 §3.2):

* **absolute form**, ``https://host/path?query``: requests a *client* core emits, because the core also decides
  the host (the login machines of :mod:`qrlogin.login`, the rendezvous client of :mod:`qrlogin.rendezvous.client`,
  :mod:`qrlogin.device`);
* **origin form**, ``/path?query``: requests a *server* core receives, because the host was settled by the
  connection (the rendezvous server of :mod:`qrlogin.rendezvous.server`, the homeserver model of
  :mod:`qrlogin.homeserver`). The path stays percent-encoded, so that an encoded ``/`` inside an id stays one
  segment; :attr:`HttpRequest.path` and :attr:`HttpRequest.query` split it for the server.

Headers are a tuple of ``(name, value)`` pairs with the names lower-cased on construction, so ``header()`` and
equality never depend on how a peer spelled a name. Repeated headers keep their order.

``authenticated`` is how a client core asks for credentials it must never hold: the login machines set it on the
existing device's device-management calls, and the adapter adds the signed-in user's access token on the way out.
The flag is False on every request a server sees.

Nothing secret may show in a ``repr`` (docs/threats.md): bearer tokens travel in an ``authorization`` header or in the
(deprecated) ``access_token`` query parameter, passwords and device codes in bodies. So a ``repr`` shows an
``authorization`` header by name only, the query by its length only, and bodies by their length only.

JSON bodies are read with the project's one strict reader, :mod:`qrlogin._json`. URLs that come from the network
(a QR code, a login message, a homeserver's or a rendezvous server's answer) are split with :func:`split_url`, which
returns None where :func:`urllib.parse.urlsplit` would raise, so that each layer reports its own typed failure.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import SplitResult, parse_qsl, urlencode, urlsplit

from ._frozen import builds, fields_twin, new_object
from ._json import DEFAULT_MAX_DEPTH, JsonObject, loads_object

__all__ = [
    "DEFAULT_MAX_JSON_BYTES",
    "Headers",
    "HttpRequest",
    "HttpResponse",
    "is_declared",
    "lowercase_headers",
    "origin_form",
    "split_url",
]

Headers = tuple[tuple[str, str], ...]

#: Default byte bound for :meth:`HttpResponse.json`; a caller reading hostile bodies passes its own.
DEFAULT_MAX_JSON_BYTES = 1024 * 1024


# Header sets declared once as constants (lowercase_headers), by identity: they are kept alive here, so an id in this
# table is never reused by another object.
_DECLARED: dict[int, Headers] = {}


def lowercase_headers(headers: Headers) -> Headers:
    """``headers`` with lowercase names, declared as a constant: a message built on this very tuple skips the check."""
    normal = _normalise(headers)
    _DECLARED[id(normal)] = normal
    return normal


def is_declared(headers: Headers) -> bool:
    """Whether ``headers`` is a set declared with :func:`lowercase_headers` (a constant, alive for good)."""
    return _DECLARED.get(id(headers)) is headers


def _normalise(headers: Headers | Mapping[str, str]) -> Headers:
    if _DECLARED.get(id(headers)) is headers:
        return headers
    if type(headers) is tuple:
        # Most headers arrive lowercased already (ASGI servers lowercase names; cores write them so): keep the tuple.
        # (A name without letters is not islower() and takes the copy below, which leaves it as it is.)
        for name, _ in headers:
            if not name.islower():
                break
        else:
            return headers
    items = headers.items() if isinstance(headers, Mapping) else headers
    return tuple([(name.lower(), value) for name, value in items])


def _first(headers: Headers, name: str) -> str | None:
    wanted = name.lower()
    for key, value in headers:
        if key == wanted:
            return value
    return None


def _shown_headers(headers: Headers) -> tuple[str, ...]:
    return tuple(name if name == "authorization" else f"{name}: {value}" for name, value in headers)


def _path_and_query(target: str) -> str:
    # Total on any string (a server sees hostile targets): no urlsplit, which raises on a bad IPv6 authority.
    if target.startswith("/"):
        return target
    _, sep, rest = target.partition("://")
    if not sep:
        return target
    cut = min((index for index in (rest.find("/"), rest.find("?")) if index >= 0), default=len(rest))
    return rest[cut:]


def split_url(url: str) -> SplitResult | None:
    """``urlsplit(url)`` for a URL from the network, or None when it does not parse.

    ``urlsplit`` raises :class:`ValueError` for a bracketed host that is not an IP literal (``https://[evil``,
    ``http://[::1``) and for a host that changes under NFKC normalisation; ``port`` raises it for a port that is not
    a number from 0 to 65535. All of these are None here.
    """
    try:
        parts = urlsplit(url)
        _ = parts.port
    except ValueError:
        return None
    return parts


def origin_form(path: str, query: tuple[tuple[str, str], ...] = ()) -> str:
    """The origin-form target for ``path`` (already percent-encoded) and decoded ``query`` pairs."""
    return f"{path}?{urlencode(query)}" if query else path


@dataclass(frozen=True, slots=True, kw_only=True)
class HttpRequest:
    """One HTTP request; ``target`` is an absolute URL (client cores) or origin-form ``/path?query`` (server cores)."""

    method: str
    target: str
    headers: Headers = ()
    body: bytes = b""
    authenticated: bool = False

    def __post_init__(self) -> None:
        _lowercase_names(self)

    def __repr__(self) -> str:
        path, mark, query = self.target.partition("?")
        target = f"{path}?<{len(query)} characters>" if mark else path
        return (
            f"HttpRequest(method={self.method!r}, target={target!r}, headers={_shown_headers(self.headers)!r}, "
            f"body=<{len(self.body)} bytes>, authenticated={self.authenticated!r})"
        )

    def header(self, name: str) -> str | None:
        """The first value of header ``name`` (case-insensitive), or None."""
        return _first(self.headers, name)

    @property
    def path(self) -> str:
        """The path of the target, still percent-encoded (for an absolute URL: the path after the authority)."""
        return _path_and_query(self.target).partition("?")[0]

    @property
    def query(self) -> tuple[tuple[str, str], ...]:
        """The decoded ``(name, value)`` pairs of the target's query, blank values kept, in order."""
        return tuple(parse_qsl(_path_and_query(self.target).partition("?")[2], keep_blank_values=True))

    @classmethod
    def json(
        cls,
        method: str,
        target: str,
        content: object,
        *,
        access_token: str | None = None,
        query: tuple[tuple[str, str], ...] = (),
    ) -> HttpRequest:
        """A request with a compact JSON body (and a bearer token when given), as a Matrix client sends it."""
        headers: list[tuple[str, str]] = [("content-type", "application/json")]
        if access_token is not None:
            headers.append(("authorization", f"Bearer {access_token}"))
        body = json.dumps(content, separators=(",", ":")).encode()
        return cls(method=method, target=origin_form(target, query), headers=tuple(headers), body=body)

    @classmethod
    def get(cls, target: str, *, access_token: str | None = None) -> HttpRequest:
        """A body-less GET (with a bearer token when given)."""
        headers = () if access_token is None else (("authorization", f"Bearer {access_token}"),)
        return cls(method="GET", target=target, headers=headers)

    @classmethod
    def form(cls, target: str, fields: Mapping[str, str]) -> HttpRequest:
        """A POST with an ``application/x-www-form-urlencoded`` body, as an OAuth client sends it."""
        return cls(
            method="POST",
            target=target,
            headers=(("content-type", "application/x-www-form-urlencoded"),),
            body=urlencode(list(fields.items())).encode("ascii"),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class HttpResponse:
    """One HTTP response."""

    status: int
    headers: Headers = ()
    body: bytes = b""

    def __post_init__(self) -> None:
        _lowercase_names(self)

    def __repr__(self) -> str:
        return (
            f"HttpResponse(status={self.status!r}, headers={_shown_headers(self.headers)!r}, "
            f"body=<{len(self.body)} bytes>)"
        )

    def header(self, name: str) -> str | None:
        """The first value of header ``name`` (case-insensitive), or None."""
        return _first(self.headers, name)

    def json(self, *, max_bytes: int = DEFAULT_MAX_JSON_BYTES, max_depth: int = DEFAULT_MAX_DEPTH) -> JsonObject:
        """The body as one strict JSON object (:func:`qrlogin._json.loads_object`; raises its ``JsonError``)."""
        return loads_object(self.body, max_bytes=max_bytes, max_depth=max_depth)


def _lowercase_names(message: HttpRequest | HttpResponse) -> None:
    headers = _normalise(message.headers)
    if headers is not message.headers:
        object.__setattr__(message, "headers", headers)


# HttpRequest(...) and HttpResponse(...), built faster for a server's hot path (qrlogin._frozen).
_RequestFields = fields_twin(HttpRequest)
_ResponseFields = fields_twin(HttpResponse)


@builds(HttpRequest)
def build_request(
    *, method: str, target: str, headers: Headers = (), body: bytes = b"", authenticated: bool = False
) -> HttpRequest:
    """``HttpRequest(...)``, built faster (:mod:`qrlogin._frozen`)."""
    request = new_object(_RequestFields)
    request.method = method
    request.target = target
    request.headers = _normalise(headers)
    request.body = body
    request.authenticated = authenticated
    request.__class__ = HttpRequest
    return request  # type: ignore[no-any-return]  # a fields twin until the line above


@builds(HttpResponse)
def build_response(*, status: int, headers: Headers = (), body: bytes = b"") -> HttpResponse:
    """``HttpResponse(...)``, built faster (:mod:`qrlogin._frozen`)."""
    response = new_object(_ResponseFields)
    response.status = status
    response.headers = _normalise(headers)
    response.body = body
    response.__class__ = HttpResponse
    return response  # type: ignore[no-any-return]  # a fields twin until the line above
