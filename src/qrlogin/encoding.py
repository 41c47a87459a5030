"""Strict, unpadded standard base64 (THREATS.md T7).

Python's :func:`base64.b64decode` is lenient: it silently drops characters outside the alphabet unless asked not
to, accepts non-canonical trailing bits, and tolerates misplaced padding. Every base64 string qrlogin reads comes from
the network, so this module accepts exactly one spelling of each byte string:

* the standard alphabet ``A-Z a-z 0-9 + /`` only (no ``-``/``_``, no whitespace, no ``=`` except as final padding);
* a length that is not 1 modulo 4 once padding is removed;
* canonical trailing bits (the unused low bits of the last character are zero), checked by re-encoding;
* padding under an explicit policy: ``"forbid"`` (the protocol's own encoders never pad), ``"allow"`` (vodozemac
  decodes padded or unpadded input, so interop with deployed peers needs this) or ``"require"``.

Encoding always emits the unpadded form the MSC texts and vodozemac use.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Literal

from .errors import Base64DecodeError

PaddingPolicy = Literal["forbid", "allow", "require"]

_UNPADDED = re.compile(r"[A-Za-z0-9+/]*")


def b64encode(data: bytes) -> str:
    """Standard-alphabet base64 without padding."""
    return base64.b64encode(data).decode("ascii").rstrip("=")


def b64decode(text: str | bytes, *, padding: PaddingPolicy = "forbid", max_length: int | None = None) -> bytes:
    """Decode strict canonical base64; raise :class:`Base64DecodeError` for anything else.

    ``max_length`` bounds the *encoded* length and is checked before any other work (THREATS.md T6).
    """
    if isinstance(text, bytes):
        try:
            text = text.decode("ascii")
        except UnicodeDecodeError:
            raise Base64DecodeError("base64 text contains non-ASCII bytes") from None
    if max_length is not None and len(text) > max_length:
        raise Base64DecodeError(f"base64 text is longer than {max_length} characters")
    body = text.rstrip("=")
    pad = len(text) - len(body)
    if pad:
        if padding == "forbid":
            raise Base64DecodeError("base64 padding is not allowed here")
        if pad > 2 or len(text) % 4 != 0:
            raise Base64DecodeError("base64 padding is malformed")
    elif padding == "require" and len(body) % 4 != 0:
        raise Base64DecodeError("base64 padding is required here")
    if _UNPADDED.fullmatch(body) is None:
        raise Base64DecodeError("base64 text contains characters outside the standard alphabet")
    if len(body) % 4 == 1:
        raise Base64DecodeError("base64 text has an impossible length")
    try:
        data = base64.b64decode(body + "=" * (-len(body) % 4), validate=True)
    except binascii.Error:  # unreachable after the checks above; kept so no binascii.Error can ever escape
        raise Base64DecodeError("base64 text is malformed") from None
    if b64encode(data) != body:
        raise Base64DecodeError("base64 text is not canonical (non-zero trailing bits)")
    return data
