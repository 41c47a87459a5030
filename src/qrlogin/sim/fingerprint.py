"""Structural fingerprints of simulator states: 16 bytes that identify a :class:`~qrlogin.sim.world.World`.

Theory of operation
-------------------
A fingerprint is a BLAKE2b-128 digest over a canonical encoding of the value graph. Small leaves (strings, bytes,
numbers, ``None``) are written inline, length-prefixed; every other part (a dataclass, tuple, mapping, set) is
written as its own digest, tagged with its kind and, for dataclasses, the class name. Dataclass fields declared
``compare=False`` are left out: they are bookkeeping (a run's record, a channel's cursor), not state. Mappings are
read through the ``Mapping`` interface only and encoded as their items sorted by encoded key, so two maps with the
same items have one fingerprint whatever their insertion order or internal representation. Key material is written
as a digest of the key (``Secret``, ``AeadKey``) or as its public key (``X25519Secret``): states that differ only
in secrets are still told apart, and no secret reaches the encoding.

States of one exploration share nearly all their parts (a step replaces a few objects along one path from the root),
so the digest of every non-leaf part is memoised by identity and a new state costs only the parts that changed.
The memo holds the part itself beside its digest, so an id cannot be reused while the entry lives. It is bounded:
two generations of ``memo_limit`` entries each, the older one dropped when the younger fills, an entry found in the
older one moving to the younger. Parts of the states the search is working on stay memoised; parts of states it
left behind are released, so the memo does not keep the whole explored graph alive.

``multisets`` names dataclass fields holding sequences whose order does not matter (the world's pending HTTP items:
every item can be delivered at any time, and nothing reads their positions but the scheduler's choice indices);
those are encoded sorted, so states that differ only in that order are one state.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
from collections.abc import Callable, Iterable, Mapping
from operator import attrgetter
from typing import Any

from .._crypto import AeadKey, X25519Secret
from .._machine import Guard
from .._secret import Secret

__all__ = ["DIGEST_SIZE", "Fingerprinter"]

DIGEST_SIZE = 16

_Encoder = Callable[[Any], bytes]


def _leaf_str(value: str) -> bytes:
    data = value.encode("utf-8", "surrogatepass")
    return b"s%d:%b" % (len(data), data)


def _leaf_bytes(value: bytes) -> bytes:
    return b"b%d:%b" % (len(value), value)


def _leaf_int(value: int) -> bytes:
    return b"i%d;" % value


def _leaf_bool(value: bool) -> bytes:
    return b"T" if value else b"F"


def _leaf_none(value: None) -> bytes:
    return b"N"


def _leaf_float(value: float) -> bytes:
    return b"f%b;" % repr(value).encode()


_LEAVES: dict[type, _Encoder] = {
    str: _leaf_str,
    bytes: _leaf_bytes,
    int: _leaf_int,
    bool: _leaf_bool,
    type(None): _leaf_none,
    float: _leaf_float,
}


class Fingerprinter:
    """Fingerprints values (see the module docstring); one instance per exploration, for its memo."""

    __slots__ = ("_digest", "_encoders", "_limit", "_multisets", "_old", "_part", "_young")

    def __init__(self, *, memo_limit: int = 20_000, multisets: Iterable[tuple[type, str]] = ()) -> None:
        # Memo entries are (part, b"#" + digest): the part itself keeps its id from being reused meanwhile.
        young: dict[int, tuple[object, bytes]] = {}
        self._young = young
        self._old: dict[int, tuple[object, bytes]] = {}
        self._limit = memo_limit
        self._multisets = frozenset(multisets)
        encoders: dict[type, _Encoder] = {}
        self._encoders = encoders
        leaves = _LEAVES.get
        recent = young.get
        blake2b = hashlib.blake2b

        def part(value: object) -> bytes:
            """``value`` as it appears inside its parent: inline if a leaf, else tagged digest."""
            cls = type(value)
            leaf = leaves(cls)
            if leaf is not None:
                return leaf(value)
            key = id(value)
            hit = recent(key)
            if hit is not None and hit[0] is value:
                return hit[1]
            hit = self._old.get(key)
            if hit is None or hit[0] is not value:
                encoder = encoders.get(cls) or self._learn(cls)
                hit = (value, b"#" + blake2b(encoder(value), digest_size=DIGEST_SIZE).digest())
            if len(young) >= self._limit:
                self._old = dict(young)
                young.clear()
            young[key] = hit
            return hit[1]

        def digest(value: object) -> bytes:
            """The 16-byte digest of ``value`` (a leaf is digested from its inline form)."""
            encoded = part(value)
            if encoded[:1] == b"#":
                return encoded[1:]
            return blake2b(encoded, digest_size=DIGEST_SIZE).digest()

        self._part = part
        self._digest = digest

    def __call__(self, value: object) -> bytes:
        """The 16-byte digest of ``value``."""
        return self._digest(value)

    def memo_size(self) -> int:
        return len(self._young) + len(self._old)

    def close(self) -> None:
        """Forget every memoised part. A fingerprinter refers to itself (its encoders call back into it), so without
        this its memo stays alive until Python's cyclic collector runs, which a search holds off."""
        self._young.clear()
        self._old = {}
        self._encoders.clear()

    def _learn(self, cls: type) -> _Encoder:
        encoder = self._encoders[cls] = self._encoder_for(cls)
        return encoder

    def _encoder_for(self, cls: type) -> _Encoder:
        part = self._part
        if cls in _LEAVES:
            return _LEAVES[cls]
        if issubclass(cls, Secret):
            return lambda value: b"S" + hashlib.sha256(value.value).digest()
        if issubclass(cls, AeadKey):
            return lambda value: b"K" + hashlib.sha256(value._key).digest()
        if issubclass(cls, X25519Secret):
            return lambda value: b"X" + value.public_key
        if issubclass(cls, enum.Enum):
            tag = b"E" + cls.__qualname__.encode()
            return lambda value: tag + part(value.value)
        if issubclass(cls, Guard):
            raise TypeError(f"a {cls.__name__} is bookkeeping, not state: declare its field compare=False")
        if dataclasses.is_dataclass(cls):
            return self._dataclass_encoder(cls)
        if issubclass(cls, tuple | list):
            return lambda value: b"T%d:" % len(value) + b"".join([part(item) for item in value])
        if issubclass(cls, frozenset | set):
            return lambda value: b"F%d:" % len(value) + b"".join(sorted([part(item) for item in value]))
        if issubclass(cls, Mapping):
            return self._mapping
        slots = [name for klass in cls.__mro__ for name in klass.__dict__.get("__slots__", ())]
        if slots and "__dict__" not in slots:  # a small immutable key holder (an HPKE context): its slots
            tag = b"O" + cls.__qualname__.encode() + b":"
            return lambda value: tag + b"".join([part(getattr(value, name)) for name in slots])
        raise TypeError(f"cannot fingerprint a {cls.__name__}")

    def _mapping(self, value: Mapping[object, object]) -> bytes:
        part = self._part
        items = sorted([(part(k), part(v)) for k, v in value.items()])
        return b"M%d:" % len(items) + b"".join([k + v for k, v in items])

    def _dataclass_encoder(self, cls: type) -> _Encoder:
        fields = [field.name for field in dataclasses.fields(cls) if field.compare]
        tag = b"D" + cls.__qualname__.encode() + b":"
        part = self._part
        unordered = tuple(index for index, name in enumerate(fields) if (cls, name) in self._multisets)
        if not fields:
            return lambda value: tag
        getter = attrgetter(*fields)
        if len(fields) == 1:
            return lambda value: tag + part(getter(value))

        if not unordered:
            return lambda value: tag + b"".join([part(item) for item in getter(value)])

        def encode(value: object) -> bytes:
            parts = [part(item) for item in getter(value)]
            for index in unordered:
                items = getattr(value, fields[index])
                parts[index] = b"U%d:" % len(items) + b"".join(sorted([part(item) for item in items]))
            return tag + b"".join(parts)

        return encode
