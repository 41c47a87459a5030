"""Deterministic identifiers and tokens for the homeserver model.

A real homeserver draws device ids, access tokens, device codes and user codes from a CSPRNG. The model must be a
pure function of its inputs, so it draws them from :class:`IdSource`: HMAC-SHA256 keyed with a caller-supplied seed
over a 64-bit counter (the counter-mode construction of NIST SP 800-108 §4.1 with HMAC as PRF). The same seed gives
the same run, which is what makes transcripts and exhaustive exploration reproducible; different seeds give
independent-looking values. Anyone who knows the seed can predict every token, which is acceptable for a simulation
model. The seed is kept out of ``repr`` but stays plain bytes so that whole homeserver states remain hashable.

Formats:

* device ids: 10 upper-case letters (the shape Synapse generates);
* access and refresh tokens, device codes: a short prefix plus 32 random bytes in lower-case hex, inside the opaque
  identifier grammar ``[A-Za-z0-9._~-]``;
* user codes: 8 characters of the RFC 8628 §6.1 base-20 alphabet (no vowels, so no words), shown as ``XXXX-XXXX``.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, field

DEVICE_ID_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
USER_CODE_ALPHABET = "BCDFGHJKLMNPQRSTVWXZ"


@dataclass(frozen=True, slots=True, kw_only=True)
class IdSource:
    """A deterministic random-bytes stream: each draw returns the bytes and the advanced source."""

    seed: bytes = field(repr=False)
    counter: int = 0

    @classmethod
    def from_seed(cls, seed: bytes, label: str) -> IdSource:
        """An independent stream for one part of the model (``label`` separates the streams of one seed)."""
        return cls(seed=hmac.new(seed, b"qrlogin homeserver model|" + label.encode(), hashlib.sha256).digest())

    def draw(self, size: int) -> tuple[IdSource, bytes]:
        out = bytearray()
        counter = self.counter
        while len(out) < size:
            out += hmac.new(self.seed, counter.to_bytes(8, "big"), hashlib.sha256).digest()
            counter += 1
        return IdSource(seed=self.seed, counter=counter), bytes(out[:size])

    def token(self, prefix: str) -> tuple[IdSource, str]:
        source, raw = self.draw(32)
        return source, prefix + raw.hex()

    def _choose(self, alphabet: str, length: int) -> tuple[IdSource, str]:
        # Rejection sampling keeps every character uniform: bytes at or above the largest multiple of the alphabet
        # size are discarded.
        limit = 256 - 256 % len(alphabet)
        chars: list[str] = []
        source = self
        while len(chars) < length:
            source, raw = source.draw(32)
            chars.extend(alphabet[b % len(alphabet)] for b in raw if b < limit)
        return source, "".join(chars[:length])

    def device_id(self) -> tuple[IdSource, str]:
        return self._choose(DEVICE_ID_ALPHABET, 10)

    def user_code(self) -> tuple[IdSource, str]:
        source, code = self._choose(USER_CODE_ALPHABET, 8)
        return source, f"{code[:4]}-{code[4:]}"


def normalize_user_code(text: str) -> str:
    """RFC 8628 §6.1: user codes compare case-insensitively, ignoring the dash and spaces a user may type."""
    return "".join(ch for ch in text.upper() if ch not in "- ")


def token_digest(token: str) -> bytes:
    """The key under which a bearer secret is stored: looking up a digest reveals nothing about the token itself."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()
