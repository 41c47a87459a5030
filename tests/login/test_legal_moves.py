"""Every (state, event kind) pair of both login machines, against their transitions tables, and the answer to every
out-of-place message."""

from __future__ import annotations

import importlib.util
import json
from functools import partial
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from qrlogin.http import HttpResponse
from qrlogin.login import existing_device as ed
from qrlogin.login import new_device as nd
from qrlogin.login.events import (
    ChannelClosed,
    ChannelSecured,
    DeleteRendezvous,
    MessageReceived,
    ReportLoginFailure,
    SendMessage,
)
from qrlogin.login.messages import (
    DEVICE_AUTHORIZATION_GRANT,
    Declined,
    DeviceAuthorizationGrant,
    Failure,
    FailureReason,
    Message,
    Protocol,
    ProtocolAccepted,
    Protocols,
    Success,
    UnknownMessage,
    serialize_message,
)
from qrlogin.login.oauth import DEVICE_CODE_GRANT
from qrlogin.vocabulary import (
    HttpRequestFailed,
    HttpResponseReceived,
    TimerFired,
    UserCancelled,
    VerificationUriOpened,
    VerificationUriUnavailable,
)
from tests.login._login_support import AWAITED, SECRETS, step
from tests.machines import try_every_pair


def _load_fuzz() -> ModuleType:
    path = Path(__file__).resolve().parents[2] / "fuzz" / "fuzz_login.py"
    spec = importlib.util.spec_from_file_location("fuzz_login", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


FUZZ = _load_fuzz()
NEW_STATES: list[Any] = FUZZ.sample_new_states()
EXISTING_STATES: list[Any] = FUZZ.sample_existing_states()

ALL_MESSAGES: list[Message] = [
    Protocols(protocols=("device_authorization_grant",), base_url="https://matrix.example.org"),
    Protocol(
        protocol="device_authorization_grant",
        device_id="NEWDEVICE",
        device_authorization_grant=DeviceAuthorizationGrant(verification_uri="https://auth.example.org/link"),
    ),
    ProtocolAccepted(),
    Success(),
    Declined(),
    SECRETS,
    UnknownMessage(type="m.login.bogus"),
]


def _answer(status: int, body: dict[str, Any] | None = None, *, request_id: int = AWAITED) -> HttpResponseReceived:
    response = HttpResponse(status=status, body=b"{}" if body is None else json.dumps(body).encode())
    return HttpResponseReceived(request_id=request_id, response=response)


# Answers to every request the machines make, good and bad; AWAITED is the request the state waits for.
ANSWERS = [
    *(_answer(status) for status in (200, 400, 404, 500)),
    _answer(
        200,
        {
            "issuer": "https://auth.example.org/",
            "token_endpoint": "https://auth.example.org/token",
            "device_authorization_endpoint": "https://auth.example.org/device",
            "registration_endpoint": "https://auth.example.org/register",
            "grant_types_supported": [DEVICE_CODE_GRANT],
        },
    ),
    _answer(201, {"client_id": "registered"}),
    _answer(
        200,
        {
            "device_code": "dc",
            "user_code": "123456",
            "verification_uri": "https://auth.example.org/link",
            "expires_in": 120,
        },
    ),
    _answer(200, {"access_token": "at"}),
    _answer(400, {"error": "authorization_pending"}),
    _answer(200, request_id=999),  # stale: an answer to a request no state waits for
]

EVENTS: list[Any] = [
    ChannelSecured(),
    *(MessageReceived(plaintext=serialize_message(m)) for m in ALL_MESSAGES),
    MessageReceived(
        plaintext=serialize_message(Protocols(protocols=(DEVICE_AUTHORIZATION_GRANT,), homeserver="example.org"))
    ),
    MessageReceived(plaintext=serialize_message(Failure(reason=FailureReason.USER_CANCELLED))),
    MessageReceived(plaintext=b"\x00garbage"),
    ChannelClosed(),
    *ANSWERS,
    HttpRequestFailed(request_id=AWAITED),
    HttpRequestFailed(request_id=999),
    TimerFired(),
    UserCancelled(),
    VerificationUriOpened(),
    VerificationUriUnavailable(),
]

# Before the first poll is due; after it (a recheck is due too); after the grant expired and the device check gave up.
TIMES = (0, 6_000, 130_000)


@pytest.mark.parametrize(("module", "states"), [(nd, NEW_STATES), (ed, EXISTING_STATES)], ids=["new", "existing"])
def test_every_state_event_pair(module: ModuleType, states: list[Any]) -> None:
    """Pairs outside MACHINE raise before anything changes; pairs in it lead where their handler's annotation says,
    and every state that annotation names is reached by some sample."""
    machine = module.MACHINE
    events = [e for e in EVENTS if type(e) in machine.events]
    tried = try_every_pair(machine, partial(step, module), states, events, TIMES)
    assert tried >= len(machine.states) * len(machine.events)


@pytest.mark.parametrize("module", [nd, ed], ids=["new", "existing"])
def test_only_succeeded_and_failed_are_terminal(module: ModuleType) -> None:
    terminal = {state.__name__ for state in module.MACHINE.states if not module.MACHINE.legal_events(state)}
    assert terminal == {"LoginSucceeded", "LoginFailed"}


EXPECTED_MESSAGE: dict[type, tuple[type, ...]] = {
    nd.AwaitingProtocols: (Protocols,),
    nd.AwaitingProtocolAccepted: (ProtocolAccepted,),
    nd.AwaitingSecrets: (type(SECRETS),),
    ed.AwaitingProtocol: (Protocol,),
    ed.AwaitingLoginResult: (Success, Declined),
}


@pytest.mark.parametrize(
    ("state", "transition"),
    [
        (s, nd.transition)
        for s in NEW_STATES
        if not isinstance(s, nd.AwaitingChannel | nd.LoginSucceeded | nd.LoginFailed)
    ]
    + [
        (s, ed.transition)
        for s in EXISTING_STATES
        if not isinstance(s, ed.AwaitingChannel | ed.LoginSucceeded | ed.LoginFailed)
    ],
    ids=lambda v: type(v).__name__ if not callable(v) else v.__module__.rsplit(".", 1)[1],
)
def test_out_of_place_messages_are_answered_and_failures_end(state: Any, transition: Any) -> None:
    created = state.config.created_rendezvous
    for message in ALL_MESSAGES:
        if isinstance(message, EXPECTED_MESSAGE.get(type(state), ())):
            continue
        after, effects = transition(state, MessageReceived(plaintext=serialize_message(message)), now_ms=100)
        assert after.reason is FailureReason.UNEXPECTED_MESSAGE_RECEIVED and not after.by_peer
        assert effects[0] == SendMessage(message=Failure(reason=FailureReason.UNEXPECTED_MESSAGE_RECEIVED))
        assert (DeleteRendezvous(not_before_ms=5_100) in effects) is created
        assert effects[-1] == ReportLoginFailure(reason=FailureReason.UNEXPECTED_MESSAGE_RECEIVED)
    for reason in [*FailureReason, "io.example.custom"]:
        after, effects = transition(
            state, MessageReceived(plaintext=serialize_message(Failure(reason=reason))), now_ms=100
        )
        assert after.reason == reason and after.by_peer
        assert not any(isinstance(e, SendMessage) for e in effects)
        assert effects[-1] == ReportLoginFailure(reason=reason, by_peer=True)
