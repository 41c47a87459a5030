"""Where the payload sits in a rendezvous body, and how to change it without touching the rest.

v1 (MSC4108 2024) carries the payload as the whole ``text/plain`` body; v2 and v3 carry it as the ``data`` member
of a JSON object beside the ``sequence_token`` (docs/protocol.md §6). The suite reads and rewrites payloads in
both shapes: in what the counterpart writes, in what the client reads and in what the client writes.
"""

from __future__ import annotations

import json

from .._json import JsonError, loads_object

__all__ = ["payload_of", "with_payload"]

_MAX = 1 << 20


def payload_of(body: bytes) -> str | None:
    """The payload in a rendezvous request or response body (None when there is none)."""
    text = body.decode("utf-8", errors="replace")
    if text.startswith("{"):
        try:
            data = loads_object(body, max_bytes=_MAX).get("data")
        except JsonError:
            return None
        return data if isinstance(data, str) else None
    return text


def with_payload(body: bytes, payload: str) -> bytes:
    """``body`` with its payload replaced by ``payload``, in the same shape."""
    if body.startswith(b"{"):
        obj = dict(loads_object(body, max_bytes=_MAX))
        obj["data"] = payload
        return json.dumps(obj).encode()
    return payload.encode("utf-8")
