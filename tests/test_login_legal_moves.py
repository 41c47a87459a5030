"""Every (state, event kind) pair of both login machines, and the answer to every out-of-place message."""

from __future__ import annotations

import importlib.util
from functools import partial
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from qrlogin._machine import is_terminal
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
from qrlogin.vocabulary import (
    HttpRequestFailed,
    HttpResponseReceived,
    TimerFired,
    UserCancelled,
    VerificationUriOpened,
    VerificationUriUnavailable,
)
from tests._login_support import AWAITED, SECRETS, step
from tests.channel_helpers import check_every_pair


def _load_fuzz() -> ModuleType:
    path = Path(__file__).resolve().parent.parent / "fuzz" / "fuzz_login.py"
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

EVENTS: dict[type, list[Any]] = {
    ChannelSecured: [ChannelSecured()],
    MessageReceived: [MessageReceived(plaintext=serialize_message(m)) for m in ALL_MESSAGES]
    + [MessageReceived(plaintext=serialize_message(Failure(reason=FailureReason.USER_CANCELLED)))]
    + [MessageReceived(plaintext=b"\x00garbage")],
    ChannelClosed: [ChannelClosed()],
    HttpResponseReceived: [
        HttpResponseReceived(request_id=AWAITED, response=HttpResponse(status=s, body=b"{}"))
        for s in (200, 400, 404, 500)
    ],
    HttpRequestFailed: [HttpRequestFailed(request_id=AWAITED)],
    TimerFired: [TimerFired()],
    UserCancelled: [UserCancelled()],
    VerificationUriOpened: [VerificationUriOpened()],
    VerificationUriUnavailable: [VerificationUriUnavailable()],
}


def _by_class(states: list[Any]) -> dict[type, list[Any]]:
    grouped: dict[type, list[Any]] = {}
    for state in states:
        grouped.setdefault(type(state), []).append(state)
    return grouped


@pytest.mark.parametrize(
    ("table", "transition", "states"),
    [(nd.LEGAL_MOVES, partial(step, nd), NEW_STATES), (ed.LEGAL_MOVES, partial(step, ed), EXISTING_STATES)],
    ids=["new", "existing"],
)
def test_every_state_event_pair(table: Any, transition: Any, states: list[Any]) -> None:
    tried = check_every_pair(table, transition, _by_class(states), EVENTS)
    assert tried >= len(table) * len(EVENTS)


def test_only_finished_and_aborted_are_terminal() -> None:
    for table, states in ((nd.LEGAL_MOVES, NEW_STATES), (ed.LEGAL_MOVES, EXISTING_STATES)):
        terminal = {type(s).__name__ for s in states if is_terminal(table, s)}
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
