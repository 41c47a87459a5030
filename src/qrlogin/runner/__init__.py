"""Sign in for real: one device of a sign-in with QR code, run over HTTP (httpx) on the real clock.

Theory of operation
-------------------
The core (:mod:`qrlogin.device`) is a pure machine; this package is the loop an application would otherwise write
around it: performing its requests, firing its timers, asking the user, and turning its outcome into a result an
application can use. An application implements :class:`UserInterface` and calls :func:`login` (this application is
the new device) or :func:`link` (it is signed in and lets a new device in)::

    result = await runner.login("example.org", my_ui)          # shows a QR code on example.org
    result = await runner.login(None, my_ui, qr_payload=data)   # or scans one
    if result.succeeded:
        store(result.credentials())

The parts, each with its own theory of operation:

* :mod:`.transport`: one request over httpx, bounded in size and time, retried where the core does not retry;
* :mod:`.discovery`: ``.well-known``, ``/versions`` (refusing a server without sign-in with QR code before a QR code
  is shown) and the OAuth server metadata;
* :mod:`.interface`: what the user is shown and asked (:class:`UserInterface`), and :class:`ScriptedUser`;
* :mod:`.run`: the loop (:func:`run_device`), the two ends (:func:`login`, :func:`link`) and their synchronous
  wrappers, the client metadata builder for dynamic registration;
* :mod:`.result`: :class:`SignInResult` and :func:`refresh`.

Randomness comes from :func:`os.urandom`, a fresh 32-byte seed per sign-in (``RunOptions.seed`` is for tests).
``docs/runner.md`` is the guide.
"""

from __future__ import annotations

from .discovery import DiscoveredServer, DiscoveryError, discover
from .interface import ScriptedUser, UserInterface
from .result import RefreshError, SignInResult, refresh
from .run import (
    DEFAULT_CLIENT_METADATA,
    RunOptions,
    client_metadata,
    link,
    link_sync,
    login,
    login_sync,
    password_login,
    run_device,
    whoami,
)
from .transport import Transport, TransportOptions, open_http_client

__all__ = [
    "DEFAULT_CLIENT_METADATA",
    "DiscoveredServer",
    "DiscoveryError",
    "RefreshError",
    "RunOptions",
    "ScriptedUser",
    "SignInResult",
    "Transport",
    "TransportOptions",
    "UserInterface",
    "client_metadata",
    "discover",
    "link",
    "link_sync",
    "login",
    "login_sync",
    "open_http_client",
    "password_login",
    "refresh",
    "run_device",
    "whoami",
]
