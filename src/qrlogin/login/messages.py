"""The ``m.login.*`` messages exchanged over the secure channel (MSC4108 "Message reference").

Theory of operation
-------------------
Each message type is a frozen dataclass. :func:`parse_message` turns channel plaintext into one of them and
:func:`serialize_message` turns one back into bytes; the two are inverse on every value this module can build
(``parse(serialize(m)) == m``), which the tests check with hypothesis.

Parsing is strict where strictness protects the receiver and lenient where the texts ask for it:

* the JSON itself goes through :mod:`qrlogin.login._json` (size, depth, duplicate keys, NaN, surrogates);
* every known field is type-checked, required fields must be present;
* unknown *fields* are ignored, as Matrix event schemas are extensible;
* an unknown ``type`` is not an error: it parses to :class:`UnknownMessage` so the state machines can answer
  it with ``m.login.failure`` / ``unexpected_message_received`` rather than drop it;
* an unknown failure ``reason`` or ``protocol`` string is kept verbatim (matrix-rust-sdk's ``_Custom``).

``m.login.protocols`` carries the homeserver as ``homeserver`` (MSC4108 up to 2025, with v1/v2 channels) or as
``base_url`` (MSC4108 2026 with MSC4388's v3 channel). Deployed matrix-rust-sdk sends a full URL in
``homeserver`` although the text says server name; this module keeps the string as sent and leaves
interpretation to :mod:`qrlogin.login.oauth`.

The cross-signing and backup keys of ``m.login.secrets`` are private keys: they are held as
:class:`~qrlogin._secret.Secret` so no ``repr`` shows them, and must be unpadded base64 of 32 bytes on the
wire (padded input is accepted, as vodozemac does; output is unpadded).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from .._json import JsonError, JsonObject, dumps, loads_object
from .._secret import Secret
from ..encoding import b64decode, b64encode
from ..errors import Base64DecodeError, RemoteProtocolError

__all__ = [
    "DEVICE_AUTHORIZATION_GRANT",
    "MAX_MESSAGE_BYTES",
    "Backup",
    "CrossSigningKeys",
    "Declined",
    "DeviceAuthorizationGrant",
    "Failure",
    "FailureReason",
    "Message",
    "MessageError",
    "Protocol",
    "ProtocolAccepted",
    "Protocols",
    "Secrets",
    "Success",
    "UnknownMessage",
    "message_from_json",
    "message_to_json",
    "parse_message",
    "serialize_message",
]

MAX_MESSAGE_BYTES = 4096
DEVICE_AUTHORIZATION_GRANT = "device_authorization_grant"
_KEY_BYTES = 32


class MessageError(RemoteProtocolError):
    """Channel plaintext is not a well-formed ``m.login.*`` message."""


class FailureReason(StrEnum):
    """Every ``reason`` of ``m.login.failure`` named by the texts (the last one only in the 2026 text)."""

    AUTHORIZATION_EXPIRED = "authorization_expired"
    DEVICE_ALREADY_EXISTS = "device_already_exists"
    DEVICE_NOT_FOUND = "device_not_found"
    UNEXPECTED_MESSAGE_RECEIVED = "unexpected_message_received"
    UNSUPPORTED_PROTOCOL = "unsupported_protocol"
    USER_CANCELLED = "user_cancelled"
    UNABLE_TO_OPEN_VERIFICATION_URI = "unable_to_open_verification_uri"


def _reason(value: str) -> FailureReason | str:
    try:
        return FailureReason(value)
    except ValueError:
        return value


@dataclass(frozen=True, slots=True, kw_only=True)
class Protocols:
    """``m.login.protocols``: existing device -> new device, when the existing device scanned the QR."""

    protocols: tuple[str, ...]
    homeserver: str | None = None
    base_url: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class DeviceAuthorizationGrant:
    verification_uri: str
    verification_uri_complete: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Protocol:
    """``m.login.protocol``: new device -> existing device, naming the grant and the device id it will use."""

    protocol: str
    device_id: str
    device_authorization_grant: DeviceAuthorizationGrant | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ProtocolAccepted:
    """``m.login.protocol_accepted``: the existing device has opened the verification URI."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Success:
    """``m.login.success``: the new device obtained an access token."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Declined:
    """``m.login.declined``: the user declined the grant at the homeserver."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Failure:
    """``m.login.failure`` from either side; ``reason`` is kept verbatim when it is not a known one."""

    reason: FailureReason | str
    homeserver: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class CrossSigningKeys:
    master_key: Secret
    self_signing_key: Secret
    user_signing_key: Secret


@dataclass(frozen=True, slots=True, kw_only=True)
class Backup:
    algorithm: str
    key: Secret
    backup_version: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Secrets:
    """``m.login.secrets``: the private cross-signing keys and, optionally, the backup key."""

    cross_signing: CrossSigningKeys
    backup: Backup | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class UnknownMessage:
    """A well-formed object whose ``type`` this library does not know."""

    type: str


Message = Protocols | Protocol | ProtocolAccepted | Success | Declined | Failure | Secrets | UnknownMessage

_TYPE_OF: dict[type, str] = {
    Protocols: "m.login.protocols",
    Protocol: "m.login.protocol",
    ProtocolAccepted: "m.login.protocol_accepted",
    Success: "m.login.success",
    Declined: "m.login.declined",
    Failure: "m.login.failure",
    Secrets: "m.login.secrets",
}


# ---------------------------------------------------------------------------------------------------- parsing


def _str(obj: JsonObject, key: str) -> str:
    value = obj.get(key)
    if not isinstance(value, str):
        raise MessageError(f"field {key!r} must be a string")
    return value


def _opt_str(obj: JsonObject, key: str) -> str | None:
    if key not in obj:
        return None
    return _str(obj, key)


def _obj(obj: JsonObject, key: str) -> JsonObject:
    value = obj.get(key)
    if not isinstance(value, dict):
        raise MessageError(f"field {key!r} must be an object")
    return value


def _key(obj: JsonObject, key: str) -> Secret:
    text = _str(obj, key)
    try:
        raw = b64decode(text, padding="allow")
    except Base64DecodeError:
        raise MessageError(f"field {key!r} is not base64") from None
    if len(raw) != _KEY_BYTES:
        raise MessageError(f"field {key!r} must hold {_KEY_BYTES} bytes")
    return Secret(raw)


def message_from_json(obj: JsonObject) -> Message:
    """Build a message from an already-parsed JSON object (type checks only)."""
    kind = _str(obj, "type")
    if kind == "m.login.protocols":
        protocols = obj.get("protocols")
        if not isinstance(protocols, list) or not all(isinstance(p, str) for p in protocols):
            raise MessageError("field 'protocols' must be an array of strings")
        homeserver = _opt_str(obj, "homeserver")
        base_url = _opt_str(obj, "base_url")
        if homeserver is None and base_url is None:
            raise MessageError("m.login.protocols needs 'homeserver' or 'base_url'")
        return Protocols(protocols=tuple(protocols), homeserver=homeserver, base_url=base_url)
    if kind == "m.login.protocol":
        protocol = _str(obj, "protocol")
        grant = None
        if protocol == DEVICE_AUTHORIZATION_GRANT or "device_authorization_grant" in obj:
            inner = _obj(obj, "device_authorization_grant")
            grant = DeviceAuthorizationGrant(
                verification_uri=_str(inner, "verification_uri"),
                verification_uri_complete=_opt_str(inner, "verification_uri_complete"),
            )
        return Protocol(protocol=protocol, device_id=_str(obj, "device_id"), device_authorization_grant=grant)
    if kind == "m.login.protocol_accepted":
        return ProtocolAccepted()
    if kind == "m.login.success":
        return Success()
    if kind == "m.login.declined":
        return Declined()
    if kind == "m.login.failure":
        return Failure(reason=_reason(_str(obj, "reason")), homeserver=_opt_str(obj, "homeserver"))
    if kind == "m.login.secrets":
        cs = _obj(obj, "cross_signing")
        backup = None
        if "backup" in obj:
            b = _obj(obj, "backup")
            backup = Backup(
                algorithm=_str(b, "algorithm"), key=_key(b, "key"), backup_version=_str(b, "backup_version")
            )
        return Secrets(
            cross_signing=CrossSigningKeys(
                master_key=_key(cs, "master_key"),
                self_signing_key=_key(cs, "self_signing_key"),
                user_signing_key=_key(cs, "user_signing_key"),
            ),
            backup=backup,
        )
    return UnknownMessage(type=kind)


def parse_message(plaintext: bytes | str) -> Message:
    """Parse channel plaintext; raises only :class:`MessageError` (a :class:`RemoteProtocolError`)."""
    try:
        obj = loads_object(plaintext, max_bytes=MAX_MESSAGE_BYTES)
    except JsonError as exc:
        raise MessageError(str(exc)) from None
    return message_from_json(obj)


# ------------------------------------------------------------------------------------------------ serializing


def message_to_json(message: Message) -> JsonObject:
    """The JSON object for ``message``, fields in the order the texts' examples use."""
    if isinstance(message, UnknownMessage):
        return {"type": message.type}
    out: dict[str, Any] = {"type": _TYPE_OF[type(message)]}
    if isinstance(message, Protocols):
        out["protocols"] = list(message.protocols)
        if message.homeserver is not None:
            out["homeserver"] = message.homeserver
        if message.base_url is not None:
            out["base_url"] = message.base_url
    elif isinstance(message, Protocol):
        out["protocol"] = message.protocol
        grant = message.device_authorization_grant
        if grant is not None:
            inner = {"verification_uri": grant.verification_uri}
            if grant.verification_uri_complete is not None:
                inner["verification_uri_complete"] = grant.verification_uri_complete
            out["device_authorization_grant"] = inner
        out["device_id"] = message.device_id
    elif isinstance(message, Failure):
        out["reason"] = str(message.reason)
        if message.homeserver is not None:
            out["homeserver"] = message.homeserver
    elif isinstance(message, Secrets):
        cs = message.cross_signing
        out["cross_signing"] = {
            "master_key": b64encode(cs.master_key.value),
            "self_signing_key": b64encode(cs.self_signing_key.value),
            "user_signing_key": b64encode(cs.user_signing_key.value),
        }
        if message.backup is not None:
            out["backup"] = {
                "algorithm": message.backup.algorithm,
                "key": b64encode(message.backup.key.value),
                "backup_version": message.backup.backup_version,
            }
    return out


def serialize_message(message: Message) -> bytes:
    """Compact UTF-8 JSON for ``message``."""
    return dumps(message_to_json(message))
