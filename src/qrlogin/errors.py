"""The exception hierarchy shared by every layer.

qrlogin follows h11's split between the two ways a protocol can go wrong:

* :class:`LocalProtocolError`: *the caller* asked for something the protocol does not allow in the current state
  (an event that is not a legal move, a second check-code attempt, sealing on a channel that is not established).
  It is raised before anything changes, so the caller's state value is still valid.
* :class:`RemoteProtocolError`: *the network* sent something malformed or hostile (a truncated QR code, bad base64,
  a ciphertext that does not authenticate, a low-order X25519 point). Parsers at the boundary raise only subclasses
  of this class; state machines turn them into a typed terminal failure state instead of letting them escape.

No exception message ever contains secret material; messages name what was wrong, not the bytes that were.
"""

from __future__ import annotations

__all__ = [
    "AuthenticationError",
    "Base64DecodeError",
    "InvalidKeyError",
    "LocalProtocolError",
    "NonContributoryKeyError",
    "QrLoginError",
    "RemoteProtocolError",
]


class QrLoginError(Exception):
    """Base class of every exception qrlogin raises on purpose."""


class LocalProtocolError(QrLoginError):
    """The caller broke the protocol's rules: an illegal event for this state, or a misuse of the API."""


class RemoteProtocolError(QrLoginError):
    """The peer or the network sent something malformed, hostile or out of place."""


class Base64DecodeError(RemoteProtocolError):
    """Text is not strict, canonical standard-alphabet base64 under the padding policy that was asked for."""


class NonContributoryKeyError(RemoteProtocolError):
    """An X25519 exchange produced the all-zero shared secret: the peer's key is a low-order point (RFC 7748 §6.1)."""


class InvalidKeyError(RemoteProtocolError):
    """A public key does not have the required length or form."""


class AuthenticationError(RemoteProtocolError):
    """An AEAD ciphertext failed to authenticate (wrong key, wrong nonce, wrong AAD or tampered bytes)."""
