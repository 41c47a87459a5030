"""A bytes wrapper for secret material that never shows itself.

Secrets (ephemeral X25519 private keys, AEAD keys, exporter secrets, check-code bytes before confirmation, login
secrets, OAuth tokens) are held in :class:`Secret` so that a ``repr``, ``str`` or ``format`` of any state, event or
effect, a log line or a traceback cannot leak them. Equality uses :func:`hmac.compare_digest` so comparing two secrets
takes time independent of where they differ.

A ``Secret`` is deliberately not a dataclass, and copying one returns the same object: :func:`dataclasses.asdict`
and :func:`dataclasses.astuple` recurse into dataclass fields and deep-copy everything else, so a dataclass here
would come out of them as ``{'value': b'...'}``, raw bytes in a plain dict. As it is, ``asdict`` of a value holding a
secret holds the ``Secret`` itself, still redacted. Pickling is refused: a pickle is bytes on their way to a file or
a socket. The raw bytes are read only through :attr:`Secret.value`, where a reader asks for them by name.
"""

from __future__ import annotations

import hmac
from typing import Any, NoReturn


class Secret:
    """Opaque secret bytes. ``repr``/``str`` show only the length; ``==`` is constant-time; immutable."""

    __slots__ = ("value",)

    value: bytes

    def __init__(self, value: bytes) -> None:
        object.__setattr__(self, "value", bytes(value))

    def __setattr__(self, name: str, value: object) -> NoReturn:
        raise AttributeError("Secret is immutable")

    def __delattr__(self, name: str) -> NoReturn:
        raise AttributeError("Secret is immutable")

    def __repr__(self) -> str:
        return f"Secret(<{len(self.value)} bytes redacted>)"

    __str__ = __repr__

    def __format__(self, format_spec: str) -> str:
        return repr(self)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        return hmac.compare_digest(self.value, other.value)

    def __hash__(self) -> int:
        # Secrets are compared, never used as keys: hashing would be a side channel and is never needed.
        raise TypeError("Secret values are not hashable")

    def __len__(self) -> int:
        return len(self.value)

    # Immutable, so a copy may be the original: asdict() and deepcopy() hand on the redacted wrapper, not its bytes.
    def __copy__(self) -> Secret:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> Secret:
        return self

    def __reduce__(self) -> NoReturn:
        raise TypeError("a Secret cannot be pickled: a pickle would carry its bytes in the clear")
