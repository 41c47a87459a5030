"""qrlogin: a sans-IO implementation of Matrix "Sign in with QR code" (MSC4108, MSC4388).

Every protocol layer is a pure function over frozen dataclasses: no sockets, no clock, no randomness inside. See
``docs/architecture.md`` for the layer map and ``README.md`` for the entry points.
"""

from __future__ import annotations

from ._machine import Driver, Machine
from ._secret import Secret
from .errors import LocalProtocolError, QrLoginError, RemoteProtocolError
from .vocabulary import DeviceRole, QrSide

__all__ = [
    "DeviceRole",
    "Driver",
    "LocalProtocolError",
    "Machine",
    "QrLoginError",
    "QrSide",
    "RemoteProtocolError",
    "Secret",
]
__version__ = "0.1.0"
