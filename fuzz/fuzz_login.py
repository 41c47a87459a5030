"""Fuzz target for the login layer's network-facing inputs.

Contract checked on every input (h11's fuzz contract, adapted):

* :func:`qrlogin.login.messages.parse_message` returns a message or raises :class:`MessageError`, nothing else;
  whatever it returns serializes and parses back to the same value;
* every live state of both login machines takes the bytes as ``MessageReceived`` without raising, and ends in a
  state its ``MACHINE`` names as a target of that move;
* every state that awaits HTTP takes the bytes as a response body (under several status codes) without raising.

Run with atheris (``python fuzz/fuzz_login.py fuzz/corpus/login``; ``scripts/fuzz`` runs every target for a bounded
budget); ``tests/login/test_fuzz.py`` runs the same :func:`fuzz_one` under hypothesis.
"""

from __future__ import annotations

from qrlogin._secret import Secret
from qrlogin.http import HttpResponse
from qrlogin.login import existing_device, new_device, oauth
from qrlogin.login.events import MessageReceived
from qrlogin.login.messages import (
    DEVICE_AUTHORIZATION_GRANT,
    CrossSigningKeys,
    DeviceAuthorizationGrant,
    MessageError,
    Protocol,
    Protocols,
    Secrets,
    parse_message,
    serialize_message,
)
from qrlogin.vocabulary import HttpResponseReceived, QrSide

_METADATA = oauth.AuthMetadata(
    issuer="https://auth.example.org/",
    token_endpoint="https://auth.example.org/token",
    device_authorization_endpoint="https://auth.example.org/device",
    registration_endpoint="https://auth.example.org/register",
)
_AUTHORIZATION = oauth.DeviceAuthorization(
    device_code=Secret(b"device-code"),
    user_code="123456",
    verification_uri="https://auth.example.org/link",
    verification_uri_complete=None,
    expires_in_s=120,
    interval_s=5,
)
_TOKENS = oauth.Tokens(access_token=Secret(b"token"), refresh_token=None, expires_in_s=None)
_SECRETS = Secrets(
    cross_signing=CrossSigningKeys(
        master_key=Secret(bytes(32)), self_signing_key=Secret(bytes(32)), user_signing_key=Secret(bytes(32))
    )
)


def sample_new_states() -> list[new_device.State]:
    """A state of every class of the new device's machine, in both roles, and the variants some moves need: a held
    ``m.login.protocols`` naming a base URL, and a client that registers dynamically."""
    states: list[new_device.State] = []
    for role in QrSide:
        config = new_device.start(
            new_device.NewDeviceConfig(
                role=role,
                device_id="NEWDEVICE",
                client_id="client",
                homeserver="example.org" if role is QrSide.SCANS else None,
            )
        ).config
        grant = new_device.Grant(
            metadata=_METADATA, client_id="client", authorization=_AUTHORIZATION, expires_at_ms=120_000
        )
        states += [
            new_device.AwaitingChannel(config=config),
            new_device.AwaitingChannel(config=config, pending=b'{"type":"m.login.protocols"}'),
            new_device.AwaitingProtocols(config=config),
            new_device.AwaitingWellKnown(config=config, server_name="example.org"),
            new_device.AwaitingAuthMetadata(config=config),
            new_device.AwaitingRegistration(config=config, metadata=_METADATA),
            new_device.AwaitingDeviceAuthorization(config=config, metadata=_METADATA, client_id="client"),
            new_device.AwaitingProtocolAccepted(config=config, grant=grant),
            new_device.WaitingToPoll(
                config=config, grant=grant, interval_ms=5000, next_poll_ms=5000, next_request_id=5
            ),
            new_device.AwaitingToken(config=config, grant=grant, interval_ms=5000, request_id=5),
            new_device.AwaitingSecrets(config=config, grant=grant, tokens=_TOKENS),
        ]
    shows = new_device.start(
        new_device.NewDeviceConfig(role=QrSide.SHOWS, device_id="NEWDEVICE", client_id="client")
    ).config
    registering = new_device.start(
        new_device.NewDeviceConfig(role=QrSide.SHOWS, device_id="NEWDEVICE", client_metadata=b'{"client_name":"x"}')
    ).config
    protocols = Protocols(protocols=(DEVICE_AUTHORIZATION_GRANT,), base_url="https://matrix.example.org")
    states += [
        new_device.AwaitingChannel(config=shows, pending=serialize_message(protocols)),
        new_device.AwaitingAuthMetadata(config=registering),
    ]
    return [*states, new_device.LoginSucceeded(), new_device.LoginFailed(reason="user_cancelled")]


def sample_existing_states() -> list[existing_device.State]:
    """A state of every class of the existing device's machine, in both roles, and one holding a well-formed
    ``m.login.protocol`` from before the channel was secured."""
    states: list[existing_device.State] = []
    for role in QrSide:
        config = existing_device.start(
            existing_device.ExistingDeviceConfig(role=role, base_url="https://matrix.example.org", secrets=_SECRETS)
        ).config
        states += [
            existing_device.AwaitingChannel(config=config),
            existing_device.AwaitingChannel(config=config, pending=b'{"type":"m.login.protocol"}'),
            existing_device.AwaitingProtocol(config=config),
            existing_device.AwaitingDeviceAbsent(
                config=config, device_id="NEWDEVICE", verification_uri="https://auth.example.org/link"
            ),
            existing_device.AwaitingVerificationUriOpened(config=config, device_id="NEWDEVICE"),
            existing_device.AwaitingLoginResult(config=config, device_id="NEWDEVICE"),
            existing_device.AwaitingDevicePresent(
                config=config, device_id="NEWDEVICE", deadline_ms=10_000, request_id=2
            ),
            existing_device.WaitingToRecheckDevice(
                config=config, device_id="NEWDEVICE", deadline_ms=10_000, next_check_ms=500, next_request_id=3
            ),
        ]
    shows = existing_device.start(
        existing_device.ExistingDeviceConfig(role=QrSide.SHOWS, base_url="https://matrix.example.org", secrets=_SECRETS)
    ).config
    protocol = Protocol(
        protocol=DEVICE_AUTHORIZATION_GRANT,
        device_id="NEWDEVICE",
        device_authorization_grant=DeviceAuthorizationGrant(verification_uri="https://auth.example.org/link"),
    )
    states.append(existing_device.AwaitingChannel(config=shows, pending=serialize_message(protocol)))
    return [*states, existing_device.LoginSucceeded(), existing_device.LoginFailed(reason="user_cancelled")]


_NEW = sample_new_states()
_EXISTING = sample_existing_states()


def fuzz_one(data: bytes) -> None:
    try:
        message = parse_message(data)
    except MessageError:
        pass
    else:
        assert parse_message(serialize_message(message)) == message
    event = MessageReceived(plaintext=data)
    new = new_device.MACHINE
    for state in _NEW:
        if MessageReceived in new.legal_events(type(state)):
            after, _ = new_device.transition(state, event, now_ms=1)
            assert type(after) in new.targets(type(state), MessageReceived)
        if HttpResponseReceived in new.legal_events(type(state)):
            for status in (200, 400, 404):
                response = HttpResponseReceived(
                    request_id=new_device.awaited_request_id(state) or 0,
                    response=HttpResponse(status=status, body=data),
                )
                after, _ = new_device.transition(state, response, now_ms=1)
                assert type(after) in new.targets(type(state), HttpResponseReceived)
    existing = existing_device.MACHINE
    for existing_state in _EXISTING:
        if MessageReceived in existing.legal_events(type(existing_state)):
            after_e, _ = existing_device.transition(existing_state, event, now_ms=1)
            assert type(after_e) in existing.targets(type(existing_state), MessageReceived)


one_input = fuzz_one  # the atheris entry point


if __name__ == "__main__":  # pragma: no cover - needs atheris
    from atheris_driver import hand_over

    hand_over(__file__)
