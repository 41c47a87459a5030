"""What a device is given, and how it starts each of the three machines it runs.

Theory of operation
-------------------
A device is configured once (:class:`DeviceConfig`) before any QR code exists. Everything else it needs comes from
the protocol: the QR code it scans, or the session its rendezvous POST creates. This module turns those into the
start states of the layers below, so the rest of the package never builds a sub-machine by hand:

* the rendezvous client (:mod:`qrlogin.rendezvous.client`) on the right collection URL for the generation
  (:func:`rendezvous_endpoint`, the unstable prefixes of ``docs/protocol.md`` §6);
* the login machine (:mod:`qrlogin.login.new_device` or :mod:`qrlogin.login.existing_device`) for this device's kind
  and side of the QR code, with what the QR code told it (``docs/protocol.md`` §7);
* the secure channel: on the device that shows the QR code, built when its session exists and returned with the QR
  code that carries its public key (:func:`showing_channel`); on the device that scans, built from the QR code
  (:func:`scanning_channel`). ECIES for v1/v2 (``docs/protocol.md`` §4), HPKE for v3 (§5).

All randomness (the ephemeral X25519 secret, the HPKE response nonce) is :func:`derive`\\ d from
``DeviceConfig.seed``, so a device is reproducible from its seed.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from typing import Any, Protocol

from .. import qr
from .._machine import Machine
from ..channel import ChannelEffect, ChannelEvent, Profile, ecies, hpke
from ..errors import LocalProtocolError
from ..login import existing_device, new_device
from ..login.events import Effect as LoginEffect
from ..login.events import Event as LoginEvent
from ..login.messages import DEVICE_AUTHORIZATION_GRANT, Secrets
from ..rendezvous import ApiGeneration
from ..rendezvous import client as rz
from ..rendezvous.server import V1_V2_UNSTABLE_PREFIX, V3_UNSTABLE_PREFIX
from ..vocabulary import DeviceRole, QrSide

__all__ = [
    "MIN_SEED_BYTES",
    "ChannelMachine",
    "ChannelState",
    "DeviceConfig",
    "LoginMachine",
    "LoginState",
    "channel_machine",
    "derive",
    "login_machine",
    "rendezvous_config",
    "rendezvous_endpoint",
    "scanning_channel",
    "showing_channel",
    "start_login",
]

ChannelState = ecies.EciesState | hpke.HpkeState

#: The shortest seed a device accepts: the channel's X25519 secret is derived from it.
MIN_SEED_BYTES = 32
LoginState = new_device.State | existing_device.State


class ChannelMachine(Protocol):
    """What the device uses of a channel module (:mod:`qrlogin.channel.ecies` or :mod:`qrlogin.channel.hpke`)."""

    def transition(
        self, state: Any, event: ChannelEvent, /, *, now_ms: int
    ) -> tuple[ChannelState, tuple[ChannelEffect, ...]]: ...


class LoginMachine(Protocol):
    """What the device uses of a login module (:mod:`qrlogin.login.new_device` or ``existing_device``)."""

    @property
    def MACHINE(self) -> Machine[Any, LoginEvent, LoginEffect]: ...

    def transition(
        self, state: Any, event: LoginEvent, /, *, now_ms: int
    ) -> tuple[LoginState, tuple[LoginEffect, ...]]: ...

    def deadline(self, state: Any, /) -> int | None: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class DeviceConfig:
    """Everything a device is given before the QR code exists.

    ``base_url`` is the homeserver this device uses: where the device that shows the QR code creates the rendezvous,
    and the existing device's own homeserver. ``server_name`` is advertised by v1/v2 codes and ``m.login.protocols``.
    ``seed`` is the device's only source of randomness. A new device needs ``device_id`` and one of ``client_id`` /
    ``client_metadata``; an existing device needs ``secrets``. ``timeout_ms`` bounds the rendezvous session from this
    device's side (the server's expiry bounds it too, whichever comes first).

    ``seed`` must be at least :data:`MIN_SEED_BYTES` long and fresh for every sign-in: the channel's secret key is
    derived from it, so a seed used twice is a key used twice. Applications pass :func:`os.urandom` bytes; fixed seeds
    are for tests and vectors.

    ``allow_http`` admits plain-``http`` URLs (local test servers): in the QR code it scans, as the homeserver base
    URL, and as the verification URI it opens. ``v3_unstable_prefix`` writes v3 codes the way deployed parsers read
    them while the rendezvous is on the unstable path (prefix ``IO_ELEMENT_MSC4388``, u16 id length); with ``False`` it
    writes the text's ``MATRIX`` prefix and u8 layout. ``protocols`` are the login protocols an existing device
    offers, from the homeserver's auth metadata. ``authenticated_create`` makes the creating rendezvous POST carry the
    signed-in user's access token (servers in MSC4388's ``authenticated`` mode require it).
    """

    kind: DeviceRole
    generation: qr.Generation
    seed: bytes
    base_url: str
    server_name: str
    device_id: str = ""
    client_id: str | None = None
    client_metadata: bytes | None = None
    secrets: Secrets | None = None
    profile: Profile = Profile.DEPLOYED
    poll_interval_ms: int = 1_000
    timeout_ms: int = 300_000
    allow_http: bool = False
    v3_unstable_prefix: bool = True
    protocols: tuple[str, ...] = (DEVICE_AUTHORIZATION_GRANT,)
    authenticated_create: bool = False

    def __post_init__(self) -> None:
        if len(self.seed) < MIN_SEED_BYTES:
            raise LocalProtocolError(f"a device seed is at least {MIN_SEED_BYTES} bytes (fresh for every sign-in)")

    def __repr__(self) -> str:
        return f"DeviceConfig(kind={self.kind.value}, generation={self.generation.name}, device_id={self.device_id!r})"


def channel_machine(config: DeviceConfig) -> ChannelMachine:
    """The channel module of the device's generation: HPKE for v3, ECIES before."""
    return hpke if config.generation is qr.Generation.V3 else ecies


def login_machine(config: DeviceConfig) -> LoginMachine:
    """The login module of the device's kind."""
    return new_device if config.kind is DeviceRole.NEW else existing_device


def derive(seed: bytes, label: str, length: int = 32) -> bytes:
    """``length`` bytes for ``label``: HMAC-SHA256(seed, label || counter) in counter mode."""
    out = b""
    counter = 0
    while len(out) < length:
        out += hmac.new(seed, label.encode() + counter.to_bytes(4, "big"), hashlib.sha256).digest()
        counter += 1
    return out[:length]


def rendezvous_endpoint(generation: qr.Generation, base_url: str) -> str:
    """The rendezvous collection URL of a homeserver for a generation (unstable prefixes, docs/protocol.md §6)."""
    prefix = V3_UNSTABLE_PREFIX if generation is qr.Generation.V3 else V1_V2_UNSTABLE_PREFIX
    return base_url.rstrip("/") + prefix


def rendezvous_config(config: DeviceConfig, base_url: str) -> rz.ClientConfig:
    """The rendezvous client's configuration for sessions on the homeserver at ``base_url``."""
    generation = {qr.Generation.V1: ApiGeneration.V1, qr.Generation.V2: ApiGeneration.V2}.get(
        config.generation, ApiGeneration.V3
    )
    return rz.ClientConfig(
        generation=generation,
        endpoint=rendezvous_endpoint(config.generation, base_url),
        poll_interval_ms=config.poll_interval_ms,
        timeout_ms=config.timeout_ms,
        authenticated_create=config.authenticated_create,
    )


def start_login(config: DeviceConfig, side: QrSide, code: qr.QrCode | None = None) -> LoginState:
    """The login machine's first state. A scanning new device takes its homeserver from ``code`` (the server name
    for v1/v2, the base URL for v3). Raises :class:`LocalProtocolError` for a configuration the machine refuses."""
    legacy = config.generation is not qr.Generation.V3
    if config.kind is DeviceRole.NEW:
        homeserver = base_url = None
        if side is QrSide.SCANS:
            assert code is not None
            homeserver = code.server_name if legacy else None
            base_url = None if legacy else code.base_url
        return new_device.start(
            new_device.NewDeviceConfig(
                role=side,
                device_id=config.device_id,
                client_id=config.client_id,
                client_metadata=config.client_metadata,
                homeserver=homeserver,
                base_url=base_url,
            )
        )
    if config.secrets is None:
        raise LocalProtocolError("an existing device needs the secrets it hands over")
    return existing_device.start(
        existing_device.ExistingDeviceConfig(
            role=side,
            base_url=config.base_url,
            secrets=config.secrets,
            server_name=config.server_name if legacy else None,
            allow_http_verification_uri=config.allow_http,
            protocols=config.protocols,
        )
    )


def scanning_channel(config: DeviceConfig, code: qr.QrCode) -> ChannelState:
    """The scanning device's channel, keyed to the public key in ``code``."""
    secret = derive(config.seed, "channel secret")
    if code.generation is qr.Generation.V3:
        return hpke.start_scanning_from_qr(code, secret, profile=config.profile)
    return ecies.start_scanning(code, secret, profile=config.profile)


def showing_channel(config: DeviceConfig, created: rz.ReportSessionCreated) -> tuple[ChannelState, qr.QrCode]:
    """The showing device's channel for the session just ``created``, and the QR code that names both."""
    secret = derive(config.seed, "channel secret")
    generation = config.generation
    intent = config.kind
    if generation is qr.Generation.V3:
        assert created.rendezvous_id is not None
        channel = hpke.start_showing(
            secret,
            base_url=config.base_url,
            rendezvous_id=created.rendezvous_id,
            response_nonce=derive(config.seed, "hpke response nonce"),
            profile=config.profile,
        )
        code = qr.QrCode(
            generation=generation,
            intent=intent,
            public_key=channel.public_key,
            rendezvous_id=created.rendezvous_id,
            base_url=config.base_url,
            unstable_prefix=config.v3_unstable_prefix,
            id_length_layout=qr.IdLengthLayout.U16 if config.v3_unstable_prefix else qr.IdLengthLayout.U8,
        )
        return channel, code
    showing = ecies.start_showing(secret, profile=config.profile)
    if generation is qr.Generation.V1:
        server_name = config.server_name if config.kind is DeviceRole.EXISTING else None
        code = qr.QrCode(
            generation=generation,
            intent=intent,
            public_key=showing.public_key,
            rendezvous_url=created.url,
            server_name=server_name,
        )
    else:
        code = qr.QrCode(
            generation=generation,
            intent=intent,
            public_key=showing.public_key,
            rendezvous_id=created.rendezvous_id,
            server_name=config.server_name,
        )
    return showing, code
