"""Random orderings of every legal event against each login machine (hypothesis RuleBasedStateMachine).

Invariants, whatever the order: a legal event never raises; nothing is sent before ``ChannelSecured``; every run
that ends emits exactly one ``ReportLoginSuccess`` or ``ReportLoginFailure``, as the last effect of the ending step,
and nothing after;
the existing device sends ``m.login.secrets`` only in the step that saw the device appear (HTTP 200 after
``m.login.success``), and at most once.
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from qrlogin.http import HttpResponse
from qrlogin.login import existing_device as ed
from qrlogin.login import new_device as nd
from qrlogin.login.events import (
    ChannelClosed,
    ChannelSecured,
    MessageReceived,
    ReportLoginFailure,
    ReportLoginSuccess,
    SendMessage,
)
from qrlogin.login.messages import Secrets, serialize_message
from qrlogin.vocabulary import (
    HttpRequestFailed,
    HttpResponseReceived,
    QrSide,
    TimerFired,
    UserCancelled,
    VerificationUriOpened,
    VerificationUriUnavailable,
)
from tests.login._login_support import AWAITED, BASE_URL, Homeserver, existing_config, new_config, step
from tests.login.test_legal_moves import ALL_MESSAGES

HS = Homeserver()
_BODIES = [
    {},
    {"m.homeserver": {"base_url": BASE_URL}},
    HS.metadata(),
    {"client_id": "dyn"},
    {
        "device_code": "dc",
        "user_code": "1",
        "verification_uri": "https://auth.example.org/link",
        "expires_in": 30,
        "interval": 1,
    },
    {"error": "authorization_pending"},
    {"error": "slow_down"},
    {"access_token": "at"},
]
RESPONSES = st.builds(
    lambda status, body: HttpResponseReceived(
        request_id=AWAITED, response=HttpResponse(status=status, body=json.dumps(body).encode())
    ),
    st.sampled_from([200, 201, 400, 404, 500]),
    st.sampled_from(_BODIES),
)
MESSAGES = st.sampled_from([MessageReceived(plaintext=serialize_message(m)) for m in ALL_MESSAGES])
EVENTS: dict[type, st.SearchStrategy[Any]] = {
    ChannelSecured: st.just(ChannelSecured()),
    MessageReceived: MESSAGES,
    ChannelClosed: st.just(ChannelClosed()),
    HttpResponseReceived: RESPONSES,
    HttpRequestFailed: st.just(HttpRequestFailed(request_id=AWAITED)),
    TimerFired: st.just(TimerFired()),
    UserCancelled: st.just(UserCancelled()),
    VerificationUriOpened: st.just(VerificationUriOpened()),
    VerificationUriUnavailable: st.just(VerificationUriUnavailable()),
}


class _Orderings(RuleBasedStateMachine):
    module: Any

    def __init__(self) -> None:
        super().__init__()
        self.state: Any = None
        self.now_ms = 0
        self.secured = False
        self.outcomes = 0
        self.secrets_sent = 0

    def _start(self, state: Any) -> None:
        self.state = state

    @rule(data=st.data(), advance=st.integers(0, 6_000))
    def step(self, data: st.DataObject, advance: int) -> None:
        machine = self.module.MACHINE
        if machine.is_terminal(self.state):
            return
        kind = data.draw(st.sampled_from(sorted(machine.legal_events(type(self.state)), key=lambda c: c.__name__)))
        event = data.draw(EVENTS[kind])
        self.now_ms += advance
        before = self.state
        self.state, effects = step(self.module, self.state, event, now_ms=self.now_ms)
        if isinstance(event, ChannelSecured):
            self.secured = True
        sends = [e for e in effects if isinstance(e, SendMessage)]
        if sends:
            assert self.secured, "a message was sent before the channel was secured"
        finals = [e for e in effects if isinstance(e, ReportLoginSuccess | ReportLoginFailure)]
        self.outcomes += len(finals)
        if finals:
            assert effects[-1] is finals[-1] and machine.is_terminal(self.state)
        secret_sends = [e for e in sends if isinstance(e.message, Secrets)]
        if secret_sends:
            assert isinstance(before, ed.AwaitingDevicePresent) and isinstance(event, HttpResponseReceived)
            assert event.response.status == 200
            self.secrets_sent += len(secret_sends)

    @invariant()
    def one_outcome_per_ending(self) -> None:
        if self.state is None:
            return
        assert self.outcomes == (1 if self.module.MACHINE.is_terminal(self.state) else 0)
        assert self.secrets_sent <= 1


class NewDeviceOrderings(_Orderings):
    module = nd

    @initialize(role=st.sampled_from(list(QrSide)), v3=st.booleans(), dynamic=st.booleans())
    def begin(self, role: QrSide, v3: bool, dynamic: bool) -> None:
        self._start(nd.start(new_config(role, v3=v3, dynamic=dynamic)))


class ExistingDeviceOrderings(_Orderings):
    module = ed

    @initialize(role=st.sampled_from(list(QrSide)), v3=st.booleans())
    def begin(self, role: QrSide, v3: bool) -> None:
        self._start(ed.start(existing_config(role, v3=v3)))


NewDeviceOrderings.TestCase.settings = settings(max_examples=80, stateful_step_count=25, deadline=None)
ExistingDeviceOrderings.TestCase.settings = settings(max_examples=80, stateful_step_count=25, deadline=None)
TestNewDeviceOrderings = NewDeviceOrderings.TestCase
TestExistingDeviceOrderings = ExistingDeviceOrderings.TestCase
