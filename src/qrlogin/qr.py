"""The login QR code payload: one value type, a strict decoder and an exact encoder for every generation.

Implements docs/protocol.md §2–3: MSC4108 as deployed in 2024 ("v1"), MSC4108 at the seed's revision ("v2") and MSC4388
("v3"), including the v3 layout deployed encoders write. All integers are big-endian, strings UTF-8.

=====  ===========================  ======  ===========================================================
gen    prefix                       type    rest
=====  ===========================  ======  ===========================================================
v1     ``MATRIX``                   0x02    intent 0x03|0x04, key[32], u16 URL, (0x04 only) u16 server name
v2     ``MATRIX``                   0x02    intent 0x03|0x04, key[32], u16 rendezvous id, u16 server name
v3     ``MATRIX`` or                0x03    intent 0x00|0x01, key[32], u8 rendezvous id, u16 base URL
       ``IO_ELEMENT_MSC4388``               (deployed encoders: u16 rendezvous id)
=====  ===========================  ======  ===========================================================

Theory of operation
-------------------
Decoding is a single forward pass over a cursor that raises :class:`QrTruncatedError` on any short read, so no
index arithmetic can run past the end. Three ambiguities are resolved by construction rather than by guessing:

* **v1 or v2?** They share prefix, type and intent bytes. The field after the key decides: an absolute ``http(s)``
  URL makes it v1, an opaque identifier (``[A-Za-z0-9._~-]{1,255}``, which can never contain ``:`` or ``/``) makes
  it v2. Anything else is :class:`QrInvalidRendezvousError`.
* **u8 or u16 id length (v3)?** Ids are 1..255 bytes, so under the u16 layout the first length byte is always 0,
  and under the u8 layout it never is. A zero first byte therefore selects the u16 layout.
* **Login or device verification?** ``MATRIX 0x02`` followed by mode 0x00–0x02 is the device-verification QR of the
  client-server API, a different feature; it gets its own error, :class:`QrDeviceVerificationError`.

The decoded :class:`QrCode` records everything needed to write the same bytes back (the v3 prefix and id-length
layout, the strings exactly as written), so ``encode(decode(b)) == b`` for every accepted ``b``.

Where qrlogin is stricter than the deployed Rust parser (it rejects trailing bytes, empty server names and ids, and
ids outside the opaque-identifier grammar), ``spec_vectors/qr_codes.json`` records both results and the reason.
"""

from __future__ import annotations

import enum
import re
import struct
from dataclasses import dataclass

from .errors import LocalProtocolError, RemoteProtocolError
from .http import split_url
from .vocabulary import DeviceRole

__all__ = [
    "Generation",
    "IdLengthLayout",
    "QrCode",
    "QrDecodeError",
    "QrDeviceVerificationError",
    "QrEmptyServerNameError",
    "QrInsecureUrlError",
    "QrInvalidRendezvousError",
    "QrInvalidRendezvousIdError",
    "QrInvalidUrlError",
    "QrInvalidUtf8Error",
    "QrTrailingBytesError",
    "QrTruncatedError",
    "QrUnknownIntentError",
    "QrUnknownPrefixError",
    "QrUnknownTypeError",
    "WrongIntentError",
    "decode",
    "encode",
    "require_intent",
]

MATRIX_PREFIX = b"MATRIX"
MSC4388_UNSTABLE_PREFIX = b"IO_ELEMENT_MSC4388"
PUBLIC_KEY_LENGTH = 32
MAX_RENDEZVOUS_ID_LENGTH = 255
MAX_U16_FIELD_LENGTH = 0xFFFF

_TYPE_MSC4108 = 0x02
_TYPE_MSC4388 = 0x03
_VERIFICATION_MODES = frozenset({0x00, 0x01, 0x02})
_OPAQUE_ID = re.compile(r"[A-Za-z0-9._~-]{1,255}")
_FORBIDDEN_URL_CHARS = re.compile(r"[\x00-\x20\x7f]")


class Generation(enum.Enum):
    """The protocol generation a QR code belongs to (docs/protocol.md §2)."""

    V1 = "v1"  # MSC4108 as deployed (2024): rendezvous URL, ETag API, ECIES
    V2 = "v2"  # MSC4108 seed era (Sept 2025): rendezvous id + server name, sequence_token API, ECIES
    V3 = "v3"  # MSC4388: rendezvous id + base URL, HPKE


class IdLengthLayout(enum.Enum):
    """How a v3 QR code writes the rendezvous id length."""

    U8 = "u8"  # as MSC4388 specifies
    U16 = "u16"  # as matrix-sdk-crypto-wasm 18.9.0 `QrCodeData.newMsc4388` writes it


_INTENT_BYTES: dict[Generation, dict[int, DeviceRole]] = {
    Generation.V1: {0x03: DeviceRole.NEW, 0x04: DeviceRole.EXISTING},
    Generation.V2: {0x03: DeviceRole.NEW, 0x04: DeviceRole.EXISTING},
    Generation.V3: {0x00: DeviceRole.NEW, 0x01: DeviceRole.EXISTING},
}


# --- errors ---------------------------------------------------------------------------------------------------------


class QrDecodeError(RemoteProtocolError):
    """The bytes are not a login QR code qrlogin accepts. Subclasses name what is wrong."""


class QrTruncatedError(QrDecodeError):
    """The payload ends inside a field."""


class QrTrailingBytesError(QrDecodeError):
    """Bytes follow the last field."""


class QrUnknownPrefixError(QrDecodeError):
    """The payload starts with neither ``MATRIX`` nor ``IO_ELEMENT_MSC4388``."""


class QrUnknownTypeError(QrDecodeError):
    """The type (formerly "version") byte is not one this generation defines."""


class QrUnknownIntentError(QrDecodeError):
    """The intent byte is not defined for this type."""


class QrDeviceVerificationError(QrDecodeError):
    """A device-verification QR code (``MATRIX 0x02`` with mode 0x00–0x02), not a login QR code."""


class QrInvalidUtf8Error(QrDecodeError):
    """A string field is not valid UTF-8."""


class QrInvalidRendezvousError(QrDecodeError):
    """The field after a v1/v2 key is neither an absolute http(s) URL (v1) nor an opaque rendezvous id (v2)."""


class QrInvalidRendezvousIdError(QrDecodeError):
    """A rendezvous id is empty, longer than 255 bytes, or outside the opaque identifier grammar."""


class QrInvalidUrlError(QrDecodeError):
    """A URL field is not an absolute ``https`` (or explicitly allowed ``http``) URL with a host."""


class QrInsecureUrlError(QrInvalidUrlError):
    """A URL uses plain ``http`` and the caller did not allow it."""


class QrEmptyServerNameError(QrDecodeError):
    """The server name field is present but empty."""


class WrongIntentError(RemoteProtocolError):
    """A well-formed QR code came from the wrong kind of device (e.g. two existing devices)."""


# --- the value ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class QrCode:
    """A decoded login QR code.

    Which location fields are set depends on the generation: v1 has ``rendezvous_url`` and, for an existing-device
    code, ``server_name``; v2 has ``rendezvous_id`` and ``server_name``; v3 has ``rendezvous_id`` and ``base_url``
    plus the two layout flags (``unstable_prefix``, ``id_length_layout``) that only v3 has. Construction checks this,
    so every ``QrCode`` value can be encoded; a bad combination raises :class:`~qrlogin.errors.LocalProtocolError`.
    """

    generation: Generation
    intent: DeviceRole  # the role of the device that shows the code (the wire's intent byte)
    public_key: bytes
    rendezvous_url: str | None = None
    rendezvous_id: str | None = None
    server_name: str | None = None
    base_url: str | None = None
    unstable_prefix: bool = False
    id_length_layout: IdLengthLayout | None = None

    def __post_init__(self) -> None:
        try:
            _check_fields(self)
        except QrDecodeError as exc:
            raise LocalProtocolError(f"invalid QrCode: {exc}") from None

    @property
    def generator_is_new_device(self) -> bool:
        return self.intent is DeviceRole.NEW


def _check_fields(qr: QrCode) -> None:
    """Raise the :class:`QrDecodeError` that decoding ``encode(qr)`` would raise, or ``LocalProtocolError``."""
    if not isinstance(qr.generation, Generation) or not isinstance(qr.intent, DeviceRole):
        raise LocalProtocolError("generation and intent must be Generation and DeviceRole members")
    if not isinstance(qr.public_key, bytes) or len(qr.public_key) != PUBLIC_KEY_LENGTH:
        raise LocalProtocolError(f"public_key must be {PUBLIC_KEY_LENGTH} bytes")
    present = {
        name for name in ("rendezvous_url", "rendezvous_id", "server_name", "base_url") if getattr(qr, name) is not None
    }
    if qr.generation is Generation.V1:
        required = {"rendezvous_url"} | ({"server_name"} if qr.intent is DeviceRole.EXISTING else set())
    elif qr.generation is Generation.V2:
        required = {"rendezvous_id", "server_name"}
    else:
        required = {"rendezvous_id", "base_url"}
    if present != required:
        raise LocalProtocolError(f"a {qr.generation.value} {qr.intent.value} QR code has exactly {sorted(required)}")
    is_v3 = qr.generation is Generation.V3
    if is_v3 != (qr.id_length_layout is not None) or (qr.unstable_prefix and not is_v3):
        raise LocalProtocolError("unstable_prefix and id_length_layout are v3-only; v3 needs id_length_layout")
    for name in present:
        if not isinstance(getattr(qr, name), str):
            raise LocalProtocolError(f"{name} must be a str")
    if qr.rendezvous_url is not None:
        _check_url(qr.rendezvous_url, allow_http=True)
    if qr.rendezvous_id is not None:
        _check_rendezvous_id(qr.rendezvous_id)
    if qr.server_name is not None:
        _check_u16_length(qr.server_name)
        if not qr.server_name:
            raise QrEmptyServerNameError("the server name is empty")
    if qr.base_url is not None:
        _check_url(qr.base_url, allow_http=True)


def _check_rendezvous_id(rendezvous_id: str) -> None:
    if _OPAQUE_ID.fullmatch(rendezvous_id) is None:
        if not rendezvous_id:
            raise QrInvalidRendezvousIdError("the rendezvous id is empty")
        if len(rendezvous_id.encode()) > MAX_RENDEZVOUS_ID_LENGTH:
            raise QrInvalidRendezvousIdError(f"the rendezvous id is longer than {MAX_RENDEZVOUS_ID_LENGTH} bytes")
        raise QrInvalidRendezvousIdError("the rendezvous id has characters outside [A-Za-z0-9._~-]")


def _check_u16_length(text: str) -> None:
    if len(text.encode()) > MAX_U16_FIELD_LENGTH:
        raise LocalProtocolError(f"a string field is longer than {MAX_U16_FIELD_LENGTH} bytes")


def _check_url(url: str, *, allow_http: bool) -> None:
    _check_u16_length(url)
    if _FORBIDDEN_URL_CHARS.search(url):
        raise QrInvalidUrlError("the URL contains whitespace or control characters")
    parts = split_url(url)
    if parts is None:
        raise QrInvalidUrlError("the URL does not parse")
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise QrInvalidUrlError("the URL is not an absolute http(s) URL with a host")
    if parts.scheme == "http" and not allow_http:
        raise QrInsecureUrlError("the URL uses http; only https is accepted unless http is explicitly allowed")


def _is_absolute_http_url(text: str) -> bool:
    try:
        _check_url(text, allow_http=True)
    except QrInvalidUrlError:
        return False
    return True


# --- decoding -------------------------------------------------------------------------------------------------------


class _Cursor:
    __slots__ = ("_data", "_offset")

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._offset = 0

    def take(self, count: int, what: str) -> bytes:
        end = self._offset + count
        if end > len(self._data):
            raise QrTruncatedError(f"the QR code ends inside the {what}")
        chunk = self._data[self._offset : end]
        self._offset = end
        return chunk

    def u8(self, what: str) -> int:
        return self.take(1, what)[0]

    def u16(self, what: str) -> int:
        value: int = struct.unpack(">H", self.take(2, what))[0]
        return value

    def peek_u8(self, what: str) -> int:
        if self._offset >= len(self._data):
            raise QrTruncatedError(f"the QR code ends before the {what}")
        return self._data[self._offset]

    def text(self, length: int, what: str) -> str:
        raw = self.take(length, what)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise QrInvalidUtf8Error(f"the {what} is not valid UTF-8") from None

    def finish(self) -> None:
        if self._offset != len(self._data):
            raise QrTrailingBytesError(f"{len(self._data) - self._offset} bytes follow the last field")


def decode(data: bytes, *, allow_http: bool = False) -> QrCode:
    """Decode a login QR code payload; raise a :class:`QrDecodeError` subclass for anything malformed.

    ``allow_http`` admits plain-``http`` rendezvous and base URLs (local test servers); by default only ``https`` is
    accepted. No other exception escapes, whatever the input.
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise LocalProtocolError("decode() takes bytes")
    data = bytes(data)
    cursor = _Cursor(data)
    if data[: len(MSC4388_UNSTABLE_PREFIX)] == MSC4388_UNSTABLE_PREFIX:
        cursor.take(len(MSC4388_UNSTABLE_PREFIX), "prefix")
        unstable = True
    elif data[: len(MATRIX_PREFIX)] == MATRIX_PREFIX:
        cursor.take(len(MATRIX_PREFIX), "prefix")
        unstable = False
    elif MATRIX_PREFIX.startswith(data) or MSC4388_UNSTABLE_PREFIX.startswith(data):
        raise QrTruncatedError("the QR code ends inside the prefix")
    else:
        raise QrUnknownPrefixError("the QR code starts with neither MATRIX nor IO_ELEMENT_MSC4388")

    qr_type = cursor.u8("type byte")
    if unstable and qr_type != _TYPE_MSC4388:
        raise QrUnknownTypeError(f"an IO_ELEMENT_MSC4388 QR code has type 0x03, not 0x{qr_type:02x}")
    if qr_type == _TYPE_MSC4108:
        qr = _decode_msc4108(cursor, allow_http=allow_http)
    elif qr_type == _TYPE_MSC4388:
        qr = _decode_msc4388(cursor, unstable=unstable, allow_http=allow_http)
    else:
        raise QrUnknownTypeError(f"a MATRIX QR code of type 0x{qr_type:02x} is not a login QR code")
    cursor.finish()
    return qr


def _decode_msc4108(cursor: _Cursor, *, allow_http: bool) -> QrCode:
    intent_byte = cursor.u8("intent byte")
    if intent_byte in _VERIFICATION_MODES:
        raise QrDeviceVerificationError(f"MATRIX 0x02 mode 0x{intent_byte:02x} is a device-verification QR code")
    intent = _INTENT_BYTES[Generation.V1].get(intent_byte)
    if intent is None:
        raise QrUnknownIntentError(f"MATRIX 0x02 login intent is 0x03 or 0x04, not 0x{intent_byte:02x}")
    public_key = cursor.take(PUBLIC_KEY_LENGTH, "public key")
    rendezvous = cursor.text(cursor.u16("rendezvous length"), "rendezvous field")
    if _is_absolute_http_url(rendezvous):
        _check_url(rendezvous, allow_http=allow_http)
        server_name = None
        if intent is DeviceRole.EXISTING:
            server_name = cursor.text(cursor.u16("server name length"), "server name")
            _check_server_name(server_name)
        return QrCode(
            generation=Generation.V1,
            intent=intent,
            public_key=public_key,
            rendezvous_url=rendezvous,
            server_name=server_name,
        )
    if _OPAQUE_ID.fullmatch(rendezvous) is None:
        raise QrInvalidRendezvousError("the field after the key is neither an http(s) URL nor a rendezvous id")
    server_name = cursor.text(cursor.u16("server name length"), "server name")
    _check_server_name(server_name)
    return QrCode(
        generation=Generation.V2,
        intent=intent,
        public_key=public_key,
        rendezvous_id=rendezvous,
        server_name=server_name,
    )


def _check_server_name(server_name: str) -> None:
    # Deployed encoders sometimes write a full URL here; qrlogin accepts any non-empty string (docs/protocol.md §3).
    if not server_name:
        raise QrEmptyServerNameError("the server name is empty")


def _decode_msc4388(cursor: _Cursor, *, unstable: bool, allow_http: bool) -> QrCode:
    intent_byte = cursor.u8("intent byte")
    intent = _INTENT_BYTES[Generation.V3].get(intent_byte)
    if intent is None:
        raise QrUnknownIntentError(f"a type 0x03 QR code has intent 0x00 or 0x01, not 0x{intent_byte:02x}")
    public_key = cursor.take(PUBLIC_KEY_LENGTH, "public key")
    if cursor.peek_u8("rendezvous id length") == 0:
        layout = IdLengthLayout.U16
        id_length = cursor.u16("rendezvous id length")
    else:
        layout = IdLengthLayout.U8
        id_length = cursor.u8("rendezvous id length")
    if id_length > MAX_RENDEZVOUS_ID_LENGTH:
        raise QrInvalidRendezvousIdError(f"the rendezvous id is longer than {MAX_RENDEZVOUS_ID_LENGTH} bytes")
    rendezvous_id = cursor.text(id_length, "rendezvous id")
    _check_rendezvous_id(rendezvous_id)
    base_url = cursor.text(cursor.u16("base URL length"), "base URL")
    _check_url(base_url, allow_http=allow_http)
    return QrCode(
        generation=Generation.V3,
        intent=intent,
        public_key=public_key,
        rendezvous_id=rendezvous_id,
        base_url=base_url,
        unstable_prefix=unstable,
        id_length_layout=layout,
    )


# --- encoding -------------------------------------------------------------------------------------------------------


def encode(qr: QrCode) -> bytes:
    """The exact payload bytes of ``qr`` (the inverse of :func:`decode`)."""
    if not isinstance(qr, QrCode):
        raise LocalProtocolError("encode() takes a QrCode")
    intent_byte = next(byte for byte, intent in _INTENT_BYTES[qr.generation].items() if intent is qr.intent)
    if qr.generation is Generation.V3:
        assert qr.rendezvous_id is not None and qr.base_url is not None
        prefix = MSC4388_UNSTABLE_PREFIX if qr.unstable_prefix else MATRIX_PREFIX
        rendezvous_id = qr.rendezvous_id.encode()
        id_length = struct.pack(">H" if qr.id_length_layout is IdLengthLayout.U16 else ">B", len(rendezvous_id))
        return b"".join(
            (prefix, bytes((_TYPE_MSC4388, intent_byte)), qr.public_key, id_length, rendezvous_id, _u16(qr.base_url))
        )
    fields = [MATRIX_PREFIX, bytes((_TYPE_MSC4108, intent_byte)), qr.public_key]
    if qr.generation is Generation.V1:
        assert qr.rendezvous_url is not None
        fields.append(_u16(qr.rendezvous_url))
    else:
        assert qr.rendezvous_id is not None
        fields.append(_u16(qr.rendezvous_id))
    if qr.server_name is not None:
        fields.append(_u16(qr.server_name))
    return b"".join(fields)


def _u16(text: str) -> bytes:
    raw = text.encode()
    return struct.pack(">H", len(raw)) + raw


# --- intent check ---------------------------------------------------------------------------------------------------


def require_intent(qr: QrCode, *, scanner_is_new_device: bool) -> QrCode:
    """Check that ``qr`` came from the other kind of device than the one scanning it (docs/threats.md T13).

    A new device must scan a code shown by an existing device and vice versa; two new (or two existing) devices
    cannot complete a sign-in, and accepting such a code is how intent-confusion attacks start.
    """
    expected = DeviceRole.EXISTING if scanner_is_new_device else DeviceRole.NEW
    if qr.intent is not expected:
        scanner = "new" if scanner_is_new_device else "existing"
        raise WrongIntentError(f"this {scanner} device needs a QR code shown by the {expected.value.replace('_', ' ')}")
    return qr
