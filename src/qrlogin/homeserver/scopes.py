"""The OAuth 2.0 scopes a Matrix client asks for, read as the Matrix spec defines them.

Spec: Client-Server API "Scope" (the stable ``urn:matrix:client:api:*`` and ``urn:matrix:client:device:<id>``),
MSC2967 (the unstable ``urn:matrix:org.matrix.msc2967.client:api:*`` and ``...:device:<id>`` that deployed clients
still send), OpenID Connect Core §3.1.2.1 (``openid``, which Matrix clients add and which the server accepts and
ignores: it issues no ID token); RFC 6749 §3.3 (a scope is space-delimited, case-sensitive tokens).

A request must ask for the API (in either form) and may name at most one device (in either form); a device id is
1 to 255 RFC 3986 unreserved characters. Without a device scope the server picks the id when it issues the tokens.
Any other token is ``invalid_scope``: granting a scope the model does not understand would be a silent lie.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ._http import BodyError

__all__ = [
    "API_SCOPE",
    "API_SCOPES",
    "DEVICE_SCOPE_PREFIX",
    "DEVICE_SCOPE_PREFIXES",
    "OPENID_SCOPE",
    "UNSTABLE_API_SCOPE",
    "UNSTABLE_DEVICE_SCOPE_PREFIX",
    "MatrixScope",
    "parse_scope",
]

API_SCOPE = "urn:matrix:client:api:*"
DEVICE_SCOPE_PREFIX = "urn:matrix:client:device:"
UNSTABLE_API_SCOPE = "urn:matrix:org.matrix.msc2967.client:api:*"
UNSTABLE_DEVICE_SCOPE_PREFIX = "urn:matrix:org.matrix.msc2967.client:device:"
OPENID_SCOPE = "openid"
API_SCOPES = (API_SCOPE, UNSTABLE_API_SCOPE)
DEVICE_SCOPE_PREFIXES = (DEVICE_SCOPE_PREFIX, UNSTABLE_DEVICE_SCOPE_PREFIX)
MAX_SCOPE_LENGTH = 1024

# The Matrix spec restricts device ids requested through a scope to RFC 3986 unreserved characters.
_SCOPE_DEVICE_ID = re.compile(r"[A-Za-z0-9._~-]{1,255}")


@dataclass(frozen=True, slots=True, kw_only=True)
class MatrixScope:
    """A validated scope: the text as requested and the device it names, if any."""

    text: str
    device_id: str | None

    def granted(self, device_id: str) -> str:
        """The scope the tokens are issued for: as requested, plus the device the server chose if none was named."""
        if self.device_id is not None:
            return self.text
        return f"{self.text} {DEVICE_SCOPE_PREFIX}{device_id}"


def _invalid(message: str) -> BodyError:
    return BodyError(400, "invalid_scope", message)


def parse_scope(scope: str) -> MatrixScope:
    """Read a requested scope (module docstring); raises :class:`BodyError` ``invalid_scope``."""
    if len(scope) > MAX_SCOPE_LENGTH:
        raise _invalid("scope is too long")
    tokens = scope.split(" ")
    if "" in tokens or len(set(tokens)) != len(tokens):
        raise _invalid("scope must be distinct tokens separated by single spaces")
    device_ids: list[str] = []
    api = False
    for token in tokens:
        if token in API_SCOPES:
            api = True
        elif token.startswith(DEVICE_SCOPE_PREFIXES):
            prefix = next(p for p in DEVICE_SCOPE_PREFIXES if token.startswith(p))
            device_ids.append(token[len(prefix) :])
        elif token != OPENID_SCOPE:
            raise _invalid(f"unknown scope token {token[:80]!r}")
    if not api:
        raise _invalid(f"scope must hold {API_SCOPE} (or its unstable MSC2967 form)")
    if len(device_ids) > 1:
        raise _invalid("scope may name at most one device")
    if device_ids and _SCOPE_DEVICE_ID.fullmatch(device_ids[0]) is None:
        raise _invalid("a device id in a scope is 1 to 255 unreserved characters")
    return MatrixScope(text=scope, device_id=device_ids[0] if device_ids else None)
