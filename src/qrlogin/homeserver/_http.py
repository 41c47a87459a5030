"""The strict parsers and response builders every endpoint of the homeserver model shares.

Theory of operation
-------------------
The homeserver model never sees a socket. A device's request is a :class:`qrlogin.http.HttpRequest` whose
``target`` is in origin form (``/path?query``, the path still percent-encoded; its ``path`` and ``query`` accessors
split it), and the answer is a :class:`qrlogin.http.HttpResponse`. An adapter or a simulator moves them; the model
only maps one to the other. Requests reaching the model never have ``authenticated`` set: whoever moves them has
already turned it into an ``Authorization`` header.

Everything that comes from the network is hostile (docs/threats.md T6, T14), so the parsers here are strict and total:

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
from typing import Any
from urllib.parse import parse_qsl, unquote

from .._json import JsonError, JsonSyntaxError, loads_object
from ..errors import RemoteProtocolError
from ..http import Headers, HttpRequest, HttpResponse

MAX_BODY_BYTES = 16 * 1024
"""Largest request body the model parses; larger ones get ``413 M_TOO_LARGE`` without being looked at."""

MAX_JSON_DEPTH = 32
"""Deepest nesting of JSON arrays and objects accepted; Matrix request bodies need a handful of levels."""

MAX_FORM_FIELDS = 32

JsonObject = dict[str, Any]


def json_response(status: int, content: object, *, extra_headers: Headers = ()) -> HttpResponse:
    """A compact JSON response with sorted keys, so equal states answer with equal bytes."""
    body = json.dumps(content, separators=(",", ":"), sort_keys=True).encode()
    return HttpResponse(status=status, headers=(("content-type", "application/json"), *extra_headers), body=body)


def matrix_error(status: int, errcode: str, error: str, **extra: object) -> HttpResponse:
    """A Client-Server API error: ``{"errcode", "error", ...}``."""
    return json_response(status, {"errcode": errcode, "error": error, **extra})


def retry_after_s(retry_after_ms: int) -> str:
    """A ``Retry-After`` header value (RFC 9110 §10.2.3): whole seconds, rounded up, at least 1."""
    return str(max(1, -(-retry_after_ms // 1000)))


def limit_exceeded(retry_after_ms: int, error: str) -> HttpResponse:
    """The Client-Server API's rate limit answer: ``429 M_LIMIT_EXCEEDED`` with ``retry_after_ms`` and
    ``Retry-After``."""
    return json_response(
        429,
        {"errcode": "M_LIMIT_EXCEEDED", "error": error, "retry_after_ms": retry_after_ms},
        extra_headers=(("retry-after", retry_after_s(retry_after_ms)),),
    )


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
