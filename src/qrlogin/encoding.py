"""Strict, unpadded standard base64 (docs/threats.md T7).

Python's :func:`base64.b64decode` is lenient: it silently drops characters outside the alphabet unless asked not
to, accepts non-canonical trailing bits, and tolerates misplaced padding. Every base64 string qrlogin reads comes from
the network, so this module accepts exactly one spelling of each byte string:

* the standard alphabet ``A-Z a-z 0-9 + /`` only (no ``-``/``_``, no whitespace, no ``=`` except as final padding);
* a length that is not 1 modulo 4 once padding is removed;
* canonical trailing bits (the unused low bits of the last character are zero);
* padding under an explicit policy: ``"forbid"`` (the protocol's own encoders never pad), ``"allow"`` (vodozemac
  decodes padded or unpadded input, so interop with deployed peers needs this) or ``"require"``.

Encoding always emits the unpadded form the MSC texts and vodozemac use.
"""

from __future__ import annotations

import binascii
import re
from typing import Literal

from .errors import Base64DecodeError

__all__ = ["PaddingPolicy", "b64decode", "b64encode"]

PaddingPolicy = Literal["forbid", "allow", "require"]

_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
_UNPADDED = re.compile(r"[A-Za-z0-9+/]*")
_SEXTETS = {character: value for value, character in enumerate(_ALPHABET)}
#: By the unpadded length modulo 4: the padding binascii needs, and the low bits of the last character that carry
#: no data (a remainder of 1 is an impossible length and never looked up).
_PADDING_FOR = ("", "", "==", "=")
_UNUSED_BITS = (0, 0, 0x0F, 0x03)


def b64encode(data: bytes) -> str:
    """Standard-alphabet base64 without padding."""
    return binascii.b2a_base64(data, newline=False).decode("ascii").rstrip("=")


def b64decode(text: str | bytes, *, padding: PaddingPolicy = "forbid", max_length: int | None = None) -> bytes:
    """Decode strict canonical base64; raise :class:`Base64DecodeError` for anything else.

    ``max_length`` bounds the *encoded* length and is checked before any other work (docs/threats.md T6).
    """
    if isinstance(text, bytes):
        try:
            text = text.decode("ascii")
        except UnicodeDecodeError:
            raise Base64DecodeError("base64 text contains non-ASCII bytes") from None
    if max_length is not None and len(text) > max_length:
        raise Base64DecodeError(f"base64 text is longer than {max_length} characters")
    if text[-1:] == "=":
        body = text.rstrip("=")
        if padding == "forbid":
            raise Base64DecodeError("base64 padding is not allowed here")
        if len(text) - len(body) > 2 or len(text) % 4 != 0:
            raise Base64DecodeError("base64 padding is malformed")
    else:  # unpadded: what every encoder in the protocols emits, so this branch is the one each payload takes
        body = text
        if padding == "require" and len(body) % 4 != 0:
            raise Base64DecodeError("base64 padding is required here")
    remainder = len(body) % 4
    if remainder != 1:
        try:  # binascii's strict mode refuses everything outside the alphabet, including misplaced padding
            data = binascii.a2b_base64(body + _PADDING_FOR[remainder], strict_mode=True)
        except ValueError:  # binascii.Error, or a non-ASCII str
            pass
        else:
            # Canonical form: the bits of the last character that carry no data must be zero (RFC 4648 §3.5).
            if remainder and _SEXTETS[body[-1]] & _UNUSED_BITS[remainder]:
                raise Base64DecodeError("base64 text is not canonical (non-zero trailing bits)")
            return data
    if _UNPADDED.fullmatch(body) is None:
        raise Base64DecodeError("base64 text contains characters outside the standard alphabet")
    if remainder == 1:
        raise Base64DecodeError("base64 text has an impossible length")
    raise Base64DecodeError("base64 text is malformed")  # unreachable after the checks above
