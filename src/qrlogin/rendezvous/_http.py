"""Plain HTTP values shared by the rendezvous server core and the client session machine.

Theory of operation
-------------------
Neither core speaks HTTP on a socket. The server core takes a :class:`Request` and returns a :class:`Response`;
the client machine emits :class:`Request` values and is fed back :class:`Response` values. Both are frozen data:
a method, a target (a path for the server, an absolute URL for the client), headers as a tuple of
``(lower-case name, value)`` pairs, and the body as bytes. Any framework can map to and from them in a few lines.

This module also holds the three rendezvous API generations (PROTOCOL.md §6), the opaque identifier grammar that
ids and tokens follow, and a strict JSON reader: at most one value per key, no ``NaN``/``Infinity``, and no
``RecursionError`` escaping on deep nesting (PROTOCOL.md §9).
"""

from __future__ import annotations

import enum
import json
import re
from dataclasses import dataclass, field
from typing import Any

from .._json import JsonError, loads_object
from ..errors import RemoteProtocolError

__all__ = [
    "MAX_PAYLOAD_BYTES",
    "ApiGeneration",
    "Headers",
    "MalformedJsonError",
    "Request",
    "Response",
    "is_opaque_id",
    "json_response",
    "parse_json_object",
]

#: Every generation limits the payload to 4096 bytes (v1: the body; v2/v3: the UTF-8 encoding of ``data``).
MAX_PAYLOAD_BYTES = 4096
#: Bound on a JSON body before parsing: ``data`` of 4096 bytes escaped as ``\\u00XX`` (6 characters per byte), a
#: 255-character token escaped the same way, and room for the keys.
MAX_JSON_BODY_BYTES = 6 * MAX_PAYLOAD_BYTES + 6 * 255 + 512

Headers = tuple[tuple[str, str], ...]

_OPAQUE_ID = re.compile(r"[A-Za-z0-9._~-]{1,255}")


class ApiGeneration(enum.Enum):
    """The three rendezvous APIs (PROTOCOL.md §2, §6)."""

    V1 = "v1"  # MSC4108 2024: ETag / If-Match, text/plain bodies
    V2 = "v2"  # MSC4108 seed era: JSON, sequence_token, expires_ts
    V3 = "v3"  # MSC4388: JSON, sequence_token, expires_in_ms, idempotent PUT, discovery GET


def is_opaque_id(value: str) -> bool:
    """True when ``value`` follows the Matrix opaque identifier grammar: 1-255 of ``[A-Za-z0-9._~-]``."""
    return _OPAQUE_ID.fullmatch(value) is not None


def _normalise(headers: Headers | dict[str, str]) -> Headers:
    items = headers.items() if isinstance(headers, dict) else headers
    return tuple((name.lower(), value) for name, value in items)


@dataclass(frozen=True, slots=True, kw_only=True)
class Request:
    """One HTTP request. ``target`` is a path (server side) or an absolute URL (client side)."""

    method: str
    target: str
    headers: Headers = ()
    body: bytes = b""

    def __post_init__(self) -> None:
        object.__setattr__(self, "headers", _normalise(self.headers))

    def header(self, name: str) -> str | None:
        """The first value of header ``name`` (case-insensitive), or None."""
        return _first(self.headers, name)


@dataclass(frozen=True, slots=True, kw_only=True)
class Response:
    """One HTTP response."""

    status: int
    headers: Headers = ()
    body: bytes = field(default=b"", repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "headers", _normalise(self.headers))

    def header(self, name: str) -> str | None:
        """The first value of header ``name`` (case-insensitive), or None."""
        return _first(self.headers, name)


def _first(headers: Headers, name: str) -> str | None:
    wanted = name.lower()
    for key, value in headers:
        if key == wanted:
            return value
    return None


def media_type(content_type: str | None) -> str | None:
    """``"text/plain; charset=utf-8"`` -> ``"text/plain"``; None stays None."""
    if content_type is None:
        return None
    return content_type.split(";", 1)[0].strip().lower()


def json_response(status: int, body: object, headers: Headers = ()) -> Response:
    encoded = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    return Response(status=status, headers=(("content-type", "application/json"), *headers), body=encoded)


class MalformedJsonError(RemoteProtocolError):
    """A body is not one strict JSON object (bad UTF-8, bad syntax, duplicate key, NaN, too deep, not an object)."""


def parse_json_object(body: bytes) -> dict[str, Any]:
    """Parse ``body`` as one strict JSON object (``qrlogin._json``); raise only :class:`MalformedJsonError`."""
    try:
        return loads_object(body, max_bytes=MAX_JSON_BODY_BYTES)
    except JsonError as exc:
        raise MalformedJsonError(str(exc)) from None
