"""HTTP details shared by the rendezvous server core and the client session machine.

Theory of operation
-------------------
Neither core speaks HTTP on a socket. Both use the project's plain values from :mod:`qrlogin.http`: the server
core takes an :class:`~qrlogin.http.HttpRequest` whose ``target`` is in origin form (``/path?query``) and returns an
:class:`~qrlogin.http.HttpResponse`; the client machine emits requests whose ``target`` is an absolute URL and is
fed back responses. Any framework can map to and from them in a few lines.

This module also holds the three rendezvous API generations (docs/protocol.md §6), the opaque identifier grammar that
ids and tokens follow, and a strict JSON reader: at most one value per key, no ``NaN``/``Infinity``, and no
``RecursionError`` escaping on deep nesting (docs/protocol.md §9).
"""

from __future__ import annotations

import enum
import re
from typing import Any

from .._json import JsonError, JsonObject, dumps, loads_object
from ..errors import RemoteProtocolError
from ..http import Headers, HttpResponse, build_response

__all__ = [
    "MAX_PAYLOAD_BYTES",
    "ApiGeneration",
    "Headers",
    "MalformedJsonError",
    "is_opaque_id",
    "json_response",
    "parse_json_object",
]

#: Every generation limits the payload to 4096 bytes (v1: the body; v2/v3: the UTF-8 encoding of ``data``).
MAX_PAYLOAD_BYTES = 4096
#: Bound on a JSON body before parsing: ``data`` of 4096 bytes escaped as ``\\u00XX`` (6 characters per byte), a
#: 255-character token escaped the same way, and room for the keys.
MAX_JSON_BODY_BYTES = 6 * MAX_PAYLOAD_BYTES + 6 * 255 + 512

_OPAQUE_ID = re.compile(r"[A-Za-z0-9._~-]{1,255}")


class ApiGeneration(enum.Enum):
    """The three rendezvous APIs (docs/protocol.md §2, §6)."""

    V1 = "v1"  # MSC4108 2024: ETag / If-Match, text/plain bodies
    V2 = "v2"  # MSC4108 seed era: JSON, sequence_token, expires_ts
    V3 = "v3"  # MSC4388: JSON, sequence_token, expires_in_ms, idempotent PUT, discovery GET

    # Members are singletons compared by identity: hashing them by identity too is consistent, and it is a C slot
    # where Enum's own hash is a Python call (membership in a mount's generations is tested on every request).
    __hash__ = object.__hash__


def is_opaque_id(value: str) -> bool:
    """True when ``value`` follows the Matrix opaque identifier grammar: 1-255 of ``[A-Za-z0-9._~-]``."""
    return _OPAQUE_ID.fullmatch(value) is not None


_BARE_MEDIA_TYPES = frozenset({"application/json", "text/plain"})  # what clients send, spelled as returned


def media_type(content_type: str | None) -> str | None:
    """``"text/plain; charset=utf-8"`` -> ``"text/plain"``; None stays None."""
    if content_type is None or content_type in _BARE_MEDIA_TYPES:
        return content_type
    return content_type.split(";", 1)[0].strip().lower()


JSON_CONTENT_TYPE = ("content-type", "application/json")


def json_response(status: int, body: JsonObject, headers: Headers = ()) -> HttpResponse:
    """A compact UTF-8 JSON response, keys in the order given (the spec examples' order), ``headers`` after its type."""
    return build_response(status=status, headers=(JSON_CONTENT_TYPE, *headers), body=dumps(body))


class MalformedJsonError(RemoteProtocolError):
    """A body is not one strict JSON object (bad UTF-8, bad syntax, duplicate key, NaN, too deep, not an object)."""


def parse_json_object(body: bytes) -> dict[str, Any]:
    """Parse ``body`` as one strict JSON object (``qrlogin._json``); raise only :class:`MalformedJsonError`."""
    try:
        return loads_object(body, max_bytes=MAX_JSON_BODY_BYTES)
    except JsonError as exc:
        raise MalformedJsonError(str(exc)) from None
