"""HTTP exchanges as plain values, and the strict parsers every endpoint of the model shares.

Theory of operation
-------------------
The homeserver model never sees a socket. A device's request is an :class:`HttpRequest` value (method, decoded path,
query pairs, lower-cased header pairs, raw body bytes) and the answer is an :class:`HttpResponse` value (status,
header pairs, body bytes). An adapter or a simulator moves them; the model only maps one to the other.

Everything that comes from the network is hostile (THREATS.md T6, T14), so the parsers here are strict and total:

* a body larger than :data:`MAX_BODY_BYTES` is refused before it is decoded or parsed;
* JSON must be UTF-8, nest at most :data:`MAX_JSON_DEPTH` deep (checked by a scan *before* :func:`json.loads`, so
  no ``RecursionError`` can happen), and may not repeat a key, use ``NaN``/``Infinity`` or a number that overflows
  to infinity (``1e400``);
* ``application/x-www-form-urlencoded`` bodies (the OAuth endpoints, RFC 6749 §3.2) must be ASCII, well formed and
  may not repeat a parameter (RFC 6749 §3.1).

Each parser raises only :class:`BodyError`, which carries the status and the Matrix ``errcode`` the caller should
answer with; the endpoint modules turn it into a Matrix-style or OAuth-style error response.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode

from .._json import JsonError, JsonSyntaxError, loads_object
from ..errors import RemoteProtocolError

MAX_BODY_BYTES = 16 * 1024
"""Largest request body the model parses; larger ones get ``413 M_TOO_LARGE`` without being looked at."""

MAX_JSON_DEPTH = 32
"""Deepest nesting of JSON arrays and objects accepted; Matrix request bodies need a handful of levels."""

MAX_FORM_FIELDS = 32

JsonObject = dict[str, Any]
Headers = tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class HttpRequest:
    """One request from a device.

    ``path`` is the path of the request target as sent (still percent-encoded, so that an encoded ``/`` inside a
    device id stays one segment); ``query`` holds decoded (name, value) pairs; header names compare case-insensitively.
    """

    method: str
    path: str
    query: tuple[tuple[str, str], ...] = ()
    headers: Headers = ()
    body: bytes = b""

    def __repr__(self) -> str:
        # Bearer tokens ride in a header or in the query, passwords and codes in the body: show only their shape.
        headers = tuple(name if name.lower() == "authorization" else f"{name}: {value}" for name, value in self.headers)
        return (
            f"HttpRequest(method={self.method!r}, path={self.path!r}, query=<{len(self.query)} parameters>, "
            f"headers={headers!r}, body=<{len(self.body)} bytes>)"
        )

    def header(self, name: str) -> str | None:
        """The first value of header ``name`` (compared case-insensitively), or None."""
        wanted = name.lower()
        for key, value in self.headers:
            if key.lower() == wanted:
                return value
        return None

    @classmethod
    def json(
        cls,
        method: str,
        path: str,
        content: object,
        *,
        access_token: str | None = None,
        query: tuple[tuple[str, str], ...] = (),
    ) -> HttpRequest:
        """A request with a JSON body (and a bearer token when given), as a Matrix client sends it."""
        headers: list[tuple[str, str]] = [("content-type", "application/json")]
        if access_token is not None:
            headers.append(("authorization", f"Bearer {access_token}"))
        body = json.dumps(content, separators=(",", ":")).encode()
        return cls(method=method, path=path, query=query, headers=tuple(headers), body=body)

    @classmethod
    def get(cls, path: str, *, access_token: str | None = None) -> HttpRequest:
        headers = () if access_token is None else (("authorization", f"Bearer {access_token}"),)
        return cls(method="GET", path=path, headers=headers)

    @classmethod
    def form(cls, path: str, fields: Mapping[str, str]) -> HttpRequest:
        """A POST with an ``application/x-www-form-urlencoded`` body, as an OAuth client sends it."""
        return cls(
            method="POST",
            path=path,
            headers=(("content-type", "application/x-www-form-urlencoded"),),
            body=urlencode(list(fields.items())).encode("ascii"),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class HttpResponse:
    """The model's answer. Bodies of JSON responses are compact UTF-8 JSON."""

    status: int
    headers: Headers = ()
    body: bytes = field(default=b"", repr=False)

    def header(self, name: str) -> str | None:
        wanted = name.lower()
        for key, value in self.headers:
            if key.lower() == wanted:
                return value
        return None

    def json(self) -> Any:
        """The decoded JSON body (the model only ever produces valid JSON)."""
        return json.loads(self.body)


def json_response(status: int, content: object, *, extra_headers: Headers = ()) -> HttpResponse:
    body = json.dumps(content, separators=(",", ":"), sort_keys=True).encode()
    return HttpResponse(status=status, headers=(("content-type", "application/json"), *extra_headers), body=body)


def matrix_error(status: int, errcode: str, error: str, **extra: object) -> HttpResponse:
    """A Client-Server API error: ``{"errcode", "error", ...}``."""
    return json_response(status, {"errcode": errcode, "error": error, **extra})


def oauth_error(status: int, error: str, description: str) -> HttpResponse:
    """An OAuth 2.0 error (RFC 6749 §5.2): ``{"error", "error_description"}``, never cached."""
    return json_response(
        status,
        {"error": error, "error_description": description},
        extra_headers=(("cache-control", "no-store"),),
    )


class BodyError(RemoteProtocolError):
    """A request body could not be accepted; ``status`` and ``errcode`` say how to answer."""

    def __init__(self, status: int, errcode: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.errcode = errcode


def check_size(body: bytes) -> None:
    if len(body) > MAX_BODY_BYTES:
        raise BodyError(413, "M_TOO_LARGE", f"request body exceeds {MAX_BODY_BYTES} bytes")


def parse_json_object(body: bytes, *, allow_empty: bool = False) -> JsonObject:
    """Strictly parse a request body that must be one JSON object; an empty body is ``{}`` if allowed."""
    check_size(body)
    if allow_empty and not body.strip():
        return {}
    try:
        return loads_object(body, max_bytes=MAX_BODY_BYTES, max_depth=MAX_JSON_DEPTH)
    except JsonSyntaxError as exc:
        raise BodyError(400, "M_NOT_JSON", f"body is not valid JSON ({exc})") from None
    except JsonError as exc:
        raise BodyError(400, "M_BAD_JSON", f"body is not an acceptable JSON object ({exc})") from None


def parse_form(request: HttpRequest) -> dict[str, str]:
    """Strictly parse an ``application/x-www-form-urlencoded`` body; a repeated parameter is an error."""
    check_size(request.body)
    content_type = (request.header("content-type") or "").split(";", 1)[0].strip().lower()
    if content_type != "application/x-www-form-urlencoded":
        raise BodyError(400, "M_NOT_JSON", "body must be application/x-www-form-urlencoded")
    try:
        text = request.body.decode("ascii")
        pairs = parse_qsl(
            text,
            keep_blank_values=True,
            strict_parsing=bool(text),
            encoding="utf-8",
            errors="strict",
            max_num_fields=MAX_FORM_FIELDS,
        )
    except (UnicodeDecodeError, ValueError):
        raise BodyError(400, "M_BAD_JSON", "malformed form body") from None
    form: dict[str, str] = {}
    for key, value in pairs:
        if key in form:
            raise BodyError(400, "M_BAD_JSON", f"parameter {key!r} repeated")
        form[key] = value
    return form


def split_path(path: str) -> tuple[str, ...] | None:
    """Split an absolute path into percent-decoded segments; None if a segment does not decode as UTF-8."""
    if not path.startswith("/"):
        return None
    segments = []
    for raw in path[1:].split("/"):
        try:
            segments.append(unquote(raw, encoding="utf-8", errors="strict"))
        except UnicodeDecodeError:
            return None
    return tuple(segments)


def bearer_token(request: HttpRequest) -> str | None:
    """The access token from ``Authorization: Bearer``, else from the deprecated ``access_token`` query parameter."""
    authorization = request.header("authorization")
    if authorization is not None:
        scheme, _, token = authorization.partition(" ")
        return token.strip() if scheme.lower() == "bearer" and token.strip() else None
    for name, value in request.query:
        if name == "access_token":
            return value or None
    return None
