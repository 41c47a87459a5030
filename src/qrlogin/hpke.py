"""RFC 9180 HPKE, base mode, built from qrlogin's primitives; plus the RFC 9458 response context.

Theory of operation
-------------------
``cryptography`` ships HPKE only as a single-shot ``Suite.encrypt``/``decrypt``: no ``Export`` and no way to
seal a second message under the same context. MSC4388 needs both (the check code is an export, every later
message is a further seal), so this module rebuilds the key schedule from HKDF, X25519 and ChaCha20-Poly1305
(:mod:`qrlogin._crypto`). It implements exactly one KEM and one KDF, DHKEM(X25519, HKDF-SHA256) and
HKDF-SHA256, and mode ``mode_base`` (0x00) only; the AEAD is parameterised by its identifier and sizes so that
the key schedule also reproduces RFC 9180's export-only vectors and RFC 9458's AES-128-GCM example, but
sealing is implemented for ChaCha20-Poly1305 alone.

The pieces, in the RFC's order:

* :func:`labeled_extract` / :func:`labeled_expand` (RFC 9180 §4): HKDF with the ``"HPKE-v1" || suite_id``
  prefix.
* :func:`derive_key_pair`, :func:`encap`, :func:`decap` (§4.1, §7.1.3): DHKEM(X25519). The ephemeral private
  key is an *input* (randomness is never drawn inside the core); a low-order public key raises
  :class:`~qrlogin.errors.NonContributoryKeyError` from the X25519 step.
* :func:`key_schedule` (§5.1) returns every intermediate value in a :class:`KeySchedule` (the RFC vectors list
  them all), and :func:`setup_base_s` / :func:`setup_base_r` (§5.1.1) wrap encapsulation and the schedule;
  :func:`export` is ``Context.Export`` from an exporter secret.
* :class:`Context` (§5.2, §5.3) is an immutable value: :meth:`Context.seal` and :meth:`Context.open` return
  the result together with the *next* context instead of bumping a counter in place. Every context of one chain
  shares a cursor (a :class:`~qrlogin._machine.Guard`) holding the chain's next sequence number, so a caller that
  keeps an old context value, or copies one, is refused instead of reusing a nonce. The sequence number never
  wraps: the RFC's ``MessageLimitReachedError`` is raised before a seal or open at ``2**(8*Nn) - 1``.
* :class:`ContextKey` is a context's key and base nonce set up once, sealing and opening at a sequence number the
  caller keeps: what the MSC4388 channel uses, keeping the two sequence numbers in its established state and
  building nothing per message but its own state.
* :func:`response_context` (RFC 9458 §4.4, as adapted by MSC4388 "Secure channel" step 5): the
  reverse-direction context that device G sends with, derived from an export of the base context, the
  encapsulated key and a response nonce (:func:`response_key_nonce` gives its key and base nonce alone). Its
  exporter is disabled (MSC4388 initialises it with a dummy secret and forbids its use; here it is absent, and
  :meth:`Context.export` refuses).

Secrets (shared secret, key, base nonce, exporter secret) are held in :class:`~qrlogin._secret.Secret`, so no
repr of a context shows them.
"""

from __future__ import annotations

import functools
import hmac
from dataclasses import dataclass, field
from typing import Final, NoReturn

from . import _crypto
from ._machine import Guard
from ._secret import Secret
from .errors import LocalProtocolError

__all__ = [
    "AES_128_GCM",
    "CHACHA20_POLY1305",
    "EXPORT_ONLY",
    "KDF_ID",
    "KEM_ID",
    "MAX_SEQ",
    "MODE_BASE",
    "N_ENC",
    "N_H",
    "N_SECRET",
    "Aead",
    "Context",
    "ContextKey",
    "KeySchedule",
    "MessageLimitReachedError",
    "decap",
    "derive_key_pair",
    "encap",
    "export",
    "key_schedule",
    "labeled_expand",
    "labeled_extract",
    "response_context",
    "response_key_nonce",
    "setup_base_r",
    "setup_base_s",
]

MODE_BASE = 0x00
KEM_ID = 0x0020  # DHKEM(X25519, HKDF-SHA256)
KDF_ID = 0x0001  # HKDF-SHA256
N_SECRET = 32  # DHKEM(X25519) Nsecret
N_ENC = 32  # DHKEM(X25519) Nenc = Npk
N_H = 32  # HKDF-SHA256 Nh

_VERSION_LABEL = b"HPKE-v1"
_KEM_SUITE_ID = b"KEM" + KEM_ID.to_bytes(2, "big")
_ZERO_SALT = bytes(N_H)


class MessageLimitReachedError(LocalProtocolError):
    """The context's sequence number is exhausted (RFC 9180 §5.2); a new context is needed."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Aead:
    """An AEAD as the key schedule sees it: its identifier and its key and nonce sizes (RFC 9180 §7.3)."""

    aead_id: int
    nk: int
    nn: int


CHACHA20_POLY1305 = Aead(aead_id=0x0003, nk=32, nn=12)
#: Key schedule only: RFC 9458's example uses it; sealing with it is not implemented.
AES_128_GCM = Aead(aead_id=0x0001, nk=16, nn=12)
#: RFC 9180 §7.3 "Export-only": the schedule derives no key or nonce.
EXPORT_ONLY = Aead(aead_id=0xFFFF, nk=0, nn=0)


def _suite_id(aead: Aead) -> bytes:
    if aead is CHACHA20_POLY1305:  # the channel's suite, on every seal-side derivation: built once
        return _CHACHA20_POLY1305_SUITE_ID
    return _SUITE_PREFIX + aead.aead_id.to_bytes(2, "big")


_SUITE_PREFIX: Final = b"HPKE" + KEM_ID.to_bytes(2, "big") + KDF_ID.to_bytes(2, "big")
_CHACHA20_POLY1305_SUITE_ID: Final = _SUITE_PREFIX + CHACHA20_POLY1305.aead_id.to_bytes(2, "big")


@functools.lru_cache(maxsize=16)
def _schedule_context(suite_id: bytes, info: bytes) -> bytes:
    # key_schedule_context = mode || LabeledExtract("", "psk_id_hash", psk_id) || LabeledExtract("", "info_hash", info)
    # depends only on the suite and the public info string (mode_base, empty psk_id): two HMACs computed once per
    # (suite, info) instead of once per key schedule. Nothing secret goes in or comes out.
    psk_id_hash = labeled_extract(suite_id, salt=b"", label=b"psk_id_hash", ikm=b"")
    info_hash = labeled_extract(suite_id, salt=b"", label=b"info_hash", ikm=info)
    return bytes([MODE_BASE]) + psk_id_hash + info_hash


def _extract(salt: bytes, ikm: bytes) -> bytes:
    # RFC 5869 HKDF-Extract over SHA-256; an empty salt means Nh zero bytes.
    return _crypto.hmac_sha256(salt or _ZERO_SALT, ikm)


def _expand(prk: bytes, info: bytes, length: int) -> bytes:
    # RFC 5869 HKDF-Expand over SHA-256. Every expand HPKE and MSC4388 perform here fits one block, T(1), which is
    # a single HMAC; other lengths (long exports; zero, which it refuses) take the general path.
    if 0 < length <= N_H:
        return _crypto.hmac_sha256(prk, info + b"\x01")[:length]
    return _crypto.hkdf_expand("sha256", prk=prk, info=info, length=length)


def labeled_extract(suite_id: bytes, *, salt: bytes, label: bytes, ikm: bytes) -> bytes:
    """``LabeledExtract(salt, label, ikm)`` of RFC 9180 §4 over HKDF-SHA256."""
    return _extract(salt, _VERSION_LABEL + suite_id + label + ikm)


def labeled_expand(suite_id: bytes, *, prk: bytes, label: bytes, info: bytes, length: int) -> bytes:
    """``LabeledExpand(prk, label, info, L)`` of RFC 9180 §4 over HKDF-SHA256."""
    if not 0 <= length <= 255 * N_H:
        raise LocalProtocolError(f"HKDF-SHA256 cannot expand to {length} bytes")
    if length == 0:  # the export-only AEAD's key and nonce; HKDF-Expand to zero bytes is the empty string
        return b""
    labeled_info = length.to_bytes(2, "big") + _VERSION_LABEL + suite_id + label + info
    return _expand(prk, labeled_info, length)


# --- DHKEM(X25519, HKDF-SHA256), RFC 9180 §4.1 -------------------------------------------------------------


def derive_key_pair(ikm: bytes) -> tuple[bytes, bytes]:
    """``DeriveKeyPair(ikm)`` (RFC 9180 §7.1.3): the (private, public) pair derived from ikmE/ikmR."""
    dkp_prk = labeled_extract(_KEM_SUITE_ID, salt=b"", label=b"dkp_prk", ikm=ikm)
    private = labeled_expand(_KEM_SUITE_ID, prk=dkp_prk, label=b"sk", info=b"", length=N_SECRET)
    return private, _crypto.x25519_public_key(private)


def _extract_and_expand(dh: bytes, kem_context: bytes) -> bytes:
    eae_prk = labeled_extract(_KEM_SUITE_ID, salt=b"", label=b"eae_prk", ikm=dh)
    return labeled_expand(_KEM_SUITE_ID, prk=eae_prk, label=b"shared_secret", info=kem_context, length=N_SECRET)


def _loaded(private_key: bytes | _crypto.X25519Secret) -> _crypto.X25519Secret:
    # Loading a private key derives its public key, the costly part; a caller that keeps the key (the channel
    # machines) passes it loaded so that it is loaded once per key, not once per use.
    return private_key if isinstance(private_key, _crypto.X25519Secret) else _crypto.X25519Secret(private_key)


def encap(recipient_public_key: bytes, *, ephemeral_secret: bytes | _crypto.X25519Secret) -> tuple[Secret, bytes]:
    """``Encap(pkR)`` with the ephemeral private key supplied (raw or loaded): returns (shared_secret, enc)."""
    ephemeral = _loaded(ephemeral_secret)
    dh = ephemeral.exchange(recipient_public_key)
    enc = ephemeral.public_key
    return Secret(_extract_and_expand(dh, enc + recipient_public_key)), enc


def decap(enc: bytes, *, recipient_secret: bytes | _crypto.X25519Secret) -> Secret:
    """``Decap(enc, skR)``: the shared secret. ``enc`` is the peer's; a bad one raises RemoteProtocolError."""
    recipient = _loaded(recipient_secret)
    dh = recipient.exchange(enc)
    return Secret(_extract_and_expand(dh, enc + recipient.public_key))


# --- Key schedule and context, RFC 9180 §5 -----------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class KeySchedule:
    """Every value ``KeySchedule<ROLE>()`` computes, so that each can be checked against the RFC vectors."""

    aead: Aead
    key_schedule_context: bytes
    secret: Secret
    key: Secret
    base_nonce: Secret
    exporter_secret: Secret

    def context(self) -> Context:
        """The encryption context at sequence number 0."""
        return Context(
            aead=self.aead,
            key=self.key,
            base_nonce=self.base_nonce,
            seq=0,
            exporter_secret=self.exporter_secret,
        )


def key_schedule(shared_secret: Secret, info: bytes, *, aead: Aead = CHACHA20_POLY1305) -> KeySchedule:
    """``KeySchedule(mode_base, shared_secret, info, psk="", psk_id="")`` (RFC 9180 §5.1)."""
    suite_id = _suite_id(aead)
    context = _schedule_context(suite_id, bytes(info))
    secret = labeled_extract(suite_id, salt=shared_secret.value, label=b"secret", ikm=b"")
    return KeySchedule(
        aead=aead,
        key_schedule_context=context,
        secret=Secret(secret),
        key=Secret(labeled_expand(suite_id, prk=secret, label=b"key", info=context, length=aead.nk)),
        base_nonce=Secret(labeled_expand(suite_id, prk=secret, label=b"base_nonce", info=context, length=aead.nn)),
        exporter_secret=Secret(labeled_expand(suite_id, prk=secret, label=b"exp", info=context, length=N_H)),
    )


def export(exporter_secret: Secret, exporter_context: bytes, length: int, *, aead: Aead = CHACHA20_POLY1305) -> bytes:
    """``Context.Export(exporter_context, L)`` (RFC 9180 §5.3) from the context's exporter secret."""
    return labeled_expand(
        _suite_id(aead), prk=exporter_secret.value, label=b"sec", info=exporter_context, length=length
    )


def setup_base_s(
    recipient_public_key: bytes,
    info: bytes,
    *,
    ephemeral_secret: bytes | _crypto.X25519Secret,
    aead: Aead = CHACHA20_POLY1305,
) -> tuple[bytes, Context]:
    """``SetupBaseS(pkR, info)`` (RFC 9180 §5.1.1), ephemeral secret supplied: returns (enc, context)."""
    shared_secret, enc = encap(recipient_public_key, ephemeral_secret=ephemeral_secret)
    return enc, key_schedule(shared_secret, info, aead=aead).context()


def setup_base_r(
    enc: bytes, recipient_secret: bytes | _crypto.X25519Secret, info: bytes, *, aead: Aead = CHACHA20_POLY1305
) -> Context:
    """``SetupBaseR(enc, skR, info)`` (RFC 9180 §5.1.1)."""
    return key_schedule(decap(enc, recipient_secret=recipient_secret), info, aead=aead).context()


#: ``2**(8*Nn) - 1`` for ChaCha20-Poly1305: the sequence number at which a context is exhausted.
MAX_SEQ: Final = (1 << (8 * CHACHA20_POLY1305.nn)) - 1


class ContextKey:
    """The AEAD key and base nonce of one ChaCha20-Poly1305 context, set up once; the caller keeps the sequence
    number and passes it to :meth:`seal` and :meth:`open` (``ComputeNonce`` is one XOR with the base nonce).

    This is a context without its sequence number, for a caller that keeps that number in a value of its own (the
    HPKE channel keeps one per direction in its established state) and builds nothing else per message. It does not
    check which sequence numbers were used: that is the caller's duty (the channel's cursor does it). ``repr`` never
    shows the key, copies are the object itself and pickling is refused.
    """

    __slots__ = ("_aead", "_base_nonce", "key")

    key: Secret
    _aead: _crypto.AeadKey
    _base_nonce: int

    def __init__(self, key: bytes, base_nonce: bytes) -> None:
        if len(base_nonce) != CHACHA20_POLY1305.nn:
            raise LocalProtocolError(f"a base nonce is {CHACHA20_POLY1305.nn} bytes, got {len(base_nonce)}")
        object.__setattr__(self, "key", Secret(key))
        object.__setattr__(self, "_aead", _crypto.AeadKey(key))
        object.__setattr__(self, "_base_nonce", int.from_bytes(base_nonce, "big"))

    def __setattr__(self, name: str, value: object) -> NoReturn:
        raise AttributeError("ContextKey is immutable")

    def nonce(self, seq: int) -> bytes:
        """``ComputeNonce(seq)``: the base nonce XORed with the big-endian sequence number."""
        return (self._base_nonce ^ seq).to_bytes(_crypto.AEAD_NONCE_LENGTH, "big")

    def seal(self, seq: int, plaintext: bytes, aad: bytes) -> bytes:
        """``Seal(aad, pt)`` at sequence number ``seq`` (``0 <= seq < MAX_SEQ``)."""
        if not 0 <= seq < MAX_SEQ:
            raise MessageLimitReachedError("the context's sequence number is exhausted")
        return self._aead.seal((self._base_nonce ^ seq).to_bytes(12, "big"), plaintext, aad)

    def open(self, seq: int, ciphertext: bytes, aad: bytes) -> bytes:
        """``Open(aad, ct)`` at sequence number ``seq``; :class:`~qrlogin.errors.AuthenticationError` if it does not
        authenticate."""
        if not 0 <= seq < MAX_SEQ:
            raise MessageLimitReachedError("the context's sequence number is exhausted")
        return self._aead.open((self._base_nonce ^ seq).to_bytes(12, "big"), ciphertext, aad)

    def __repr__(self) -> str:
        return "ContextKey(<redacted>)"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ContextKey):
            return NotImplemented
        return self._aead == other._aead and hmac.compare_digest(
            self._base_nonce.to_bytes(12, "big"), other._base_nonce.to_bytes(12, "big")
        )

    __hash__ = None  # type: ignore[assignment]

    def __copy__(self) -> ContextKey:
        return self

    def __deepcopy__(self, memo: dict[int, object]) -> ContextKey:
        return self

    def __reduce__(self) -> NoReturn:
        raise TypeError("a context key cannot be pickled")


class _SequenceCursor(Guard):
    """The next sequence number of one context's chain of values; every value of the chain shares it."""

    __slots__ = ("_seq",)

    def __init__(self, seq: int) -> None:
        self._seq = seq

    def check(self, seq: int) -> None:
        if seq != self._seq:
            raise LocalProtocolError(
                "this context was used already: seal and open return the next context, and only that one can go on "
                "(an older context, or a copy of one, would seal again under a used nonce)"
            )

    def move(self, seq: int) -> None:
        self.check(seq)
        self._seq = seq + 1

    def __repr__(self) -> str:
        return f"_SequenceCursor({self._seq})"


@dataclass(frozen=True, slots=True, kw_only=True)
class Context:
    """An HPKE encryption context at one sequence number; seal/open return the next one (RFC 9180 §5.2).

    ``exporter_secret`` is ``None`` for a response context, whose exporter MSC4388 forbids using. Every context of
    one chain (the one :meth:`KeySchedule.context` or :func:`response_context` made, and each one ``seal``/``open``
    returned since) shares one cursor, so a context value seals or opens once: an older one, or a copy of one
    (``copy``, ``deepcopy``, ``dataclasses.replace``), is refused with :class:`~qrlogin.errors.LocalProtocolError`
    instead of sealing again under a used nonce. A failed ``open`` moves nothing, as the RFC requires. Pickling is
    refused.
    """

    aead: Aead
    key: Secret
    base_nonce: Secret
    seq: int
    exporter_secret: Secret | None
    cursor: _SequenceCursor | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not 0 <= self.seq <= self.max_seq:
            raise LocalProtocolError("sequence number out of range for this AEAD")
        if self.cursor is None:  # the first context of a chain
            object.__setattr__(self, "cursor", _SequenceCursor(self.seq))

    @property
    def max_seq(self) -> int:
        """The sequence number at which the context is exhausted: ``2**(8*Nn) - 1``."""
        return (1 << (8 * self.aead.nn)) - 1

    def nonce(self) -> bytes:
        """``ComputeNonce(seq)``: the base nonce XORed with the big-endian sequence number."""
        nn = self.aead.nn
        return (int.from_bytes(self.base_nonce.value, "big") ^ self.seq).to_bytes(nn, "big")

    def _next(self) -> Context:
        return Context(
            aead=self.aead,
            key=self.key,
            base_nonce=self.base_nonce,
            seq=self.seq + 1,
            exporter_secret=self.exporter_secret,
            cursor=self.cursor,
        )

    def _usable_cursor(self) -> _SequenceCursor:
        if self.aead != CHACHA20_POLY1305:
            raise LocalProtocolError("this context's AEAD is supported by the key schedule only")
        if self.seq >= self.max_seq:
            raise MessageLimitReachedError("the context's sequence number is exhausted")
        assert self.cursor is not None  # set by __post_init__
        return self.cursor

    def seal(self, plaintext: bytes, *, aad: bytes) -> tuple[bytes, Context]:
        """``ContextS.Seal(aad, pt)``: the ciphertext and the context for the next message."""
        self._usable_cursor().move(self.seq)
        return _crypto.aead_seal(self.key.value, self.nonce(), plaintext, aad), self._next()

    def open(self, ciphertext: bytes, *, aad: bytes) -> tuple[bytes, Context]:
        """``ContextR.Open(aad, ct)``: the plaintext and the context for the next message.

        A ciphertext that does not authenticate raises :class:`~qrlogin.errors.AuthenticationError`; the
        caller's context value is unchanged and usable, as the RFC requires.
        """
        cursor = self._usable_cursor()
        cursor.check(self.seq)
        plaintext = _crypto.aead_open(self.key.value, self.nonce(), ciphertext, aad)
        cursor.move(self.seq)
        return plaintext, self._next()

    def export(self, exporter_context: bytes, length: int) -> bytes:
        """``Context.Export(exporter_context, L)`` (RFC 9180 §5.3); does not change the context."""
        if self.exporter_secret is None:
            raise LocalProtocolError("this context's exporter is disabled (a response context never exports)")
        return export(self.exporter_secret, exporter_context, length, aead=self.aead)


def response_key_nonce(
    secret: bytes, *, enc: bytes, response_nonce: bytes, aead: Aead = CHACHA20_POLY1305
) -> tuple[bytes, bytes]:
    """The key and base nonce of an RFC 9458 §4.4 response context, from ``secret = base.Export(label,
    max(Nn, Nk))``: ``prk = Extract(enc || response_nonce, secret)``, key and base nonce ``Expand(prk, "key", Nk)``
    and ``Expand(prk, "nonce", Nn)`` (plain RFC 5869 HKDF-SHA256, not the labelled variants). The response nonce must
    be ``max(Nn, Nk)`` bytes (32 for ChaCha20-Poly1305)."""
    size = max(aead.nn, aead.nk)
    if len(response_nonce) != size:
        raise LocalProtocolError(f"the response nonce must be {size} bytes, got {len(response_nonce)}")
    if len(enc) != N_ENC:
        raise LocalProtocolError(f"enc must be {N_ENC} bytes, got {len(enc)}")
    prk = _extract(enc + response_nonce, secret)
    return _expand(prk, b"key", aead.nk), _expand(prk, b"nonce", aead.nn)


def response_context(base: Context, *, label: bytes, enc: bytes, response_nonce: bytes) -> Context:
    """The response context of RFC 9458 §4.4 (MSC4388 step 5: ``Context_DeviceG_Send``, ``_DeviceS_Receive``):
    :func:`response_key_nonce` of ``base.Export(label, max(Nn, Nk))``, at sequence number 0, with no exporter."""
    secret = base.export(label, max(base.aead.nn, base.aead.nk))
    key, base_nonce = response_key_nonce(secret, enc=enc, response_nonce=response_nonce, aead=base.aead)
    return Context(aead=base.aead, key=Secret(key), base_nonce=Secret(base_nonce), seq=0, exporter_secret=None)
