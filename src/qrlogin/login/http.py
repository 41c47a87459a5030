"""Plain HTTP request and response values, the only way the login machines talk to the homeserver.

A machine never performs a request: it emits one :class:`HttpRequest` inside a ``SendHttpRequest`` effect and
later receives the matching :class:`HttpResponse` as an event. Each machine has at most one request
outstanding, so no correlation id is needed. ``authenticated`` asks the adapter to add the signed-in user's
access token (the existing device's device-management calls); the core never holds that token, so it cannot
leak into a ``repr``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["HttpRequest", "HttpResponse"]


@dataclass(frozen=True, slots=True, kw_only=True)
class HttpRequest:
    method: str
    url: str
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""
    authenticated: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class HttpResponse:
    status: int
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = field(default=b"", repr=False)

    def header(self, name: str) -> str | None:
        lowered = name.lower()
        for key, value in self.headers:
            if key.lower() == lowered:
                return value
        return None
