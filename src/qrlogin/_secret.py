"""A bytes wrapper for secret material that never shows itself.

Secrets (ephemeral X25519 private keys, AEAD keys, exporter secrets, check-code bytes before confirmation) are held in
:class:`Secret` so that a ``repr`` of any state, event or effect, a log line or a traceback cannot leak them. Equality
uses :func:`hmac.compare_digest` so comparing two secrets takes time independent of where they differ.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass


@dataclass(frozen=True, slots=True, eq=False)
class Secret:
    """Opaque secret bytes. ``repr`` shows only the length; ``==`` is constant-time."""

    value: bytes

    def __repr__(self) -> str:
        return f"Secret(<{len(self.value)} bytes redacted>)"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        return hmac.compare_digest(self.value, other.value)

    def __hash__(self) -> int:
        # Secrets are compared, never used as keys: hashing would be a side channel and is never needed.
        raise TypeError("Secret values are not hashable")

    def __len__(self) -> int:
        return len(self.value)
