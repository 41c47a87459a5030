"""A pure, deterministic Matrix homeserver model for simulation and conformance tests.

It answers the HTTP requests the two devices of a sign-in with QR code make (docs/protocol.md §7–8) as values:
``handle(hs, request, *, now_ms) -> (hs, response)``. See :mod:`qrlogin.homeserver.model` for the routing and the
guarantees, :mod:`~qrlogin.homeserver.devices` for the device management API,
:mod:`~qrlogin.homeserver.oauth` for the OAuth 2.0 authorization server (with :mod:`~qrlogin.homeserver.clients`,
:mod:`~qrlogin.homeserver.scopes`, :mod:`~qrlogin.homeserver.authcode` and :mod:`~qrlogin.homeserver.pages`).
``docs/homeserver.md`` lists what is implemented and where the model simplifies.
"""

from __future__ import annotations

from ..http import HttpRequest, HttpResponse
from .model import (
    RENDEZVOUS_PREFIXES,
    Homeserver,
    RendezvousService,
    add_user,
    approve_user_code,
    deny_user_code,
    handle,
    new_homeserver,
    with_rendezvous,
)
from .oauth import ConsentResult

__all__ = [
    "RENDEZVOUS_PREFIXES",
    "ConsentResult",
    "Homeserver",
    "HttpRequest",
    "HttpResponse",
    "RendezvousService",
    "add_user",
    "approve_user_code",
    "deny_user_code",
    "handle",
    "new_homeserver",
    "with_rendezvous",
]
