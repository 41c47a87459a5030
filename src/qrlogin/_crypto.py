"""The few primitives qrlogin needs, as thin, typed functions over ``cryptography``.

Everything constant-time (X25519, HMAC, ChaCha20-Poly1305) runs inside OpenSSL/Rust; nothing here does field
arithmetic or compares secrets in Python (docs/threats.md T12). The functions map ``cryptography``'s generic exceptions
onto qrlogin's hierarchy:

* an all-zero X25519 output (a low-order peer point, RFC 7748 §6.1; ``cryptography`` raises ``ValueError``) becomes
  :class:`~qrlogin.errors.NonContributoryKeyError`;
* a public key of the wrong length becomes :class:`~qrlogin.errors.InvalidKeyError`;
* a ciphertext that does not authenticate becomes :class:`~qrlogin.errors.AuthenticationError`.

Those are :class:`~qrlogin.errors.RemoteProtocolError` subclasses because their inputs come from the peer. A private
key or AEAD key of the wrong length is the caller's mistake and raises
:class:`~qrlogin.errors.LocalProtocolError`.

HKDF is offered with SHA-256 and SHA-512 because deployed ECIES peers use SHA-512 where the texts say SHA-256
(docs/protocol.md §4), and as separate extract/expand steps because RFC 9180's LabeledExtract/LabeledExpand need them.
"""

from __future__ import annotations

import hmac
from typing import Literal, NoReturn

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF, HKDFExpand

from .errors import AuthenticationError, InvalidKeyError, LocalProtocolError, NonContributoryKeyError

X25519_KEY_LENGTH = 32
AEAD_KEY_LENGTH = 32
AEAD_NONCE_LENGTH = 12
AEAD_TAG_LENGTH = 16

HashName = Literal["sha256", "sha512"]

# Hash algorithm objects carry no state (they only name an algorithm), so one instance of each serves every call.
_HASHES: dict[HashName, hashes.SHA256 | hashes.SHA512] = {
    "sha256": hashes.SHA256(),
    "sha512": hashes.SHA512(),
}
#: RFC 5869 §2.3: HKDF-Expand yields at most 255 * HashLen bytes.
_MAX_OKM_LENGTH: dict[HashName, int] = {name: 255 * algorithm.digest_size for name, algorithm in _HASHES.items()}


def x25519_public_key(private_key: bytes) -> bytes:
    """The X25519 public key (RFC 7748 ``X25519(k, 9)``) for a 32-byte private key."""
    return _private(private_key).public_key().public_bytes_raw()


def x25519(private_key: bytes, peer_public_key: bytes) -> bytes:
    """The X25519 shared secret; refuses the all-zero output of a low-order peer point."""
    private = _private(private_key)
    if len(peer_public_key) != X25519_KEY_LENGTH:
        raise InvalidKeyError(f"an X25519 public key is {X25519_KEY_LENGTH} bytes, got {len(peer_public_key)}")
    peer = X25519PublicKey.from_public_bytes(peer_public_key)
    try:
        return private.exchange(peer)
    except ValueError:
        raise NonContributoryKeyError("X25519 produced the all-zero shared secret (low-order public key)") from None


def _private(private_key: bytes) -> X25519PrivateKey:
    if len(private_key) != X25519_KEY_LENGTH:
        raise LocalProtocolError(f"an X25519 private key is {X25519_KEY_LENGTH} bytes, got {len(private_key)}")
    return X25519PrivateKey.from_private_bytes(private_key)


def hkdf(hash_name: HashName, ikm: bytes, *, salt: bytes | None, info: bytes, length: int) -> bytes:
    """RFC 5869 HKDF. ``salt=None`` means "not provided", i.e. HashLen zero bytes."""
    _check_okm_length(hash_name, length)
    return HKDF(algorithm=_HASHES[hash_name], length=length, salt=salt, info=info).derive(ikm)


def hkdf_extract(hash_name: HashName, *, salt: bytes, ikm: bytes) -> bytes:
    """RFC 5869 HKDF-Extract: ``HMAC-Hash(salt, ikm)``; an empty salt means HashLen zero bytes."""
    return HKDF.extract(_HASHES[hash_name], salt or None, ikm)


def hkdf_expand(hash_name: HashName, *, prk: bytes, info: bytes, length: int) -> bytes:
    """RFC 5869 HKDF-Expand."""
    _check_okm_length(hash_name, length)
    return HKDFExpand(_HASHES[hash_name], length, info).derive(prk)


def hmac_sha256(key: bytes, message: bytes) -> bytes:
    """HMAC-SHA256 (RFC 2104) in one OpenSSL call, for hot paths where an HKDF step is a single HMAC: Extract is
    ``HMAC(salt, ikm)`` and an Expand to at most 32 bytes is ``HMAC(prk, info || 0x01)`` truncated."""
    return hmac.digest(key, message, "sha256")


def _check_okm_length(hash_name: HashName, length: int) -> None:
    limit = _MAX_OKM_LENGTH[hash_name]
    if not 0 < length <= limit:
        raise LocalProtocolError(f"HKDF-{hash_name.upper()} output length must be 1..{limit}, got {length}")


def aead_seal(key: bytes, nonce: bytes, plaintext: bytes, aad: bytes = b"") -> bytes:
    """ChaCha20-Poly1305 (RFC 8439) encryption; returns ciphertext || 16-byte tag."""
    return _aead(key, nonce).encrypt(nonce, plaintext, aad or None)


def aead_open(key: bytes, nonce: bytes, ciphertext: bytes, aad: bytes = b"") -> bytes:
    """ChaCha20-Poly1305 decryption; raises :class:`AuthenticationError` if the tag does not verify."""
    aead = _aead(key, nonce)
    if len(ciphertext) < AEAD_TAG_LENGTH:
        raise AuthenticationError("ciphertext is shorter than the authentication tag")
    try:
        return aead.decrypt(nonce, ciphertext, aad or None)
    except InvalidTag:
        raise AuthenticationError("ciphertext did not authenticate") from None


def _aead(key: bytes, nonce: bytes) -> ChaCha20Poly1305:
    if len(key) != AEAD_KEY_LENGTH:
        raise LocalProtocolError(f"a ChaCha20-Poly1305 key is {AEAD_KEY_LENGTH} bytes, got {len(key)}")
    if len(nonce) != AEAD_NONCE_LENGTH:
        raise LocalProtocolError(f"a ChaCha20-Poly1305 nonce is {AEAD_NONCE_LENGTH} bytes, got {len(nonce)}")
    return ChaCha20Poly1305(key)


class AeadKey:
    """A ChaCha20-Poly1305 key set up once for a whole direction of a channel.

    :func:`aead_seal`/:func:`aead_open` build the cipher on every call; a channel that seals and opens many
    messages under one key keeps one of these instead. ``repr`` never shows the key and ``==`` is constant-time.
    """

    __slots__ = ("_aead", "_key")

    def __init__(self, key: bytes) -> None:
        if len(key) != AEAD_KEY_LENGTH:
            raise LocalProtocolError(f"a ChaCha20-Poly1305 key is {AEAD_KEY_LENGTH} bytes, got {len(key)}")
        self._key = bytes(key)
        self._aead = ChaCha20Poly1305(self._key)

    def seal(self, nonce: bytes, plaintext: bytes, aad: bytes = b"") -> bytes:
        """Ciphertext || 16-byte tag."""
        # The cipher checks the nonce length itself; translating its refusal, rather than checking first, keeps the
        # per-message path to one call. ``None`` and ``b""`` are the same empty AAD, and ``None`` is cheaper.
        try:
            return self._aead.encrypt(nonce, plaintext, aad or None)
        except ValueError:
            raise _refused(nonce) from None

    def open(self, nonce: bytes, ciphertext: bytes, aad: bytes = b"") -> bytes:
        """The plaintext, or :class:`AuthenticationError` if the tag does not verify."""
        try:
            return self._aead.decrypt(nonce, ciphertext, aad or None)
        except InvalidTag:  # the cipher raises this for a ciphertext shorter than its tag, too
            short = len(ciphertext) < AEAD_TAG_LENGTH
            raise AuthenticationError(
                "ciphertext is shorter than the authentication tag" if short else "ciphertext did not authenticate"
            ) from None
        except ValueError:
            raise _refused(nonce) from None

    def __repr__(self) -> str:
        return "AeadKey(<redacted>)"

    # Immutable, so copies (and dataclasses.asdict) hand on this object; a pickle would carry the key in the clear.
    def __copy__(self) -> AeadKey:
        return self

    def __deepcopy__(self, memo: dict[int, object]) -> AeadKey:
        return self

    def __reduce__(self) -> NoReturn:
        raise TypeError("an AEAD key cannot be pickled")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, AeadKey):
            return NotImplemented
        return hmac.compare_digest(self._key, other._key)

    __hash__ = None  # type: ignore[assignment]


def _refused(nonce: bytes) -> LocalProtocolError:
    """What a ``ValueError`` from ChaCha20-Poly1305 meant: a nonce of the wrong length, or an input over its limit."""
    if len(nonce) != AEAD_NONCE_LENGTH:
        return LocalProtocolError(f"a ChaCha20-Poly1305 nonce is {AEAD_NONCE_LENGTH} bytes, got {len(nonce)}")
    return LocalProtocolError("ChaCha20-Poly1305 refused an input larger than it can process")


class X25519Secret:
    """An ephemeral X25519 private key, loaded once (loading computes the public key, the costly part).

    ``public_key`` is the 32-byte public key; :meth:`exchange` is :func:`x25519` without reloading the key.
    ``repr`` never shows the secret and ``==`` is constant-time.
    """

    __slots__ = ("_private", "public_key")

    def __init__(self, private_key: bytes) -> None:
        self._private = _private(private_key)
        self.public_key: bytes = self._private.public_key().public_bytes_raw()

    def exchange(self, peer_public_key: bytes) -> bytes:
        """The shared secret; :class:`InvalidKeyError` for a bad length, :class:`NonContributoryKeyError` for a
        low-order point."""
        if len(peer_public_key) != X25519_KEY_LENGTH:
            raise InvalidKeyError(f"an X25519 public key is {X25519_KEY_LENGTH} bytes, got {len(peer_public_key)}")
        try:
            return self._private.exchange(X25519PublicKey.from_public_bytes(peer_public_key))
        except ValueError:
            raise NonContributoryKeyError("X25519 produced the all-zero shared secret (low-order public key)") from None

    def __repr__(self) -> str:
        return "X25519Secret(<redacted>)"

    # Immutable, so copies (and dataclasses.asdict) hand on this object; a pickle would carry the key in the clear.
    def __copy__(self) -> X25519Secret:
        return self

    def __deepcopy__(self, memo: dict[int, object]) -> X25519Secret:
        return self

    def __reduce__(self) -> NoReturn:
        raise TypeError("an X25519 private key cannot be pickled")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, X25519Secret):
            return NotImplemented
        return hmac.compare_digest(self._private.private_bytes_raw(), other._private.private_bytes_raw())

    __hash__ = None  # type: ignore[assignment]
