"""qrlogin.login.glue: the table between channel effects and login events, both ways, for every effect kind."""

from __future__ import annotations

import pytest

from qrlogin.channel import (
    ChannelEffect,
    DeliverPlaintext,
    ReportChannelFailure,
    ReportEstablished,
    SealRequested,
    SendPayload,
)
from qrlogin.channel import FailureReason as ChannelFailureReason
from qrlogin.http import HttpRequest
from qrlogin.login.events import ChannelClosed, ChannelSecured, DeleteRendezvous, Effect, MessageReceived, SendMessage
from qrlogin.login.glue import channel_effect_to_login_event, login_effect_to_channel_event
from qrlogin.login.messages import ProtocolAccepted, parse_message
from qrlogin.vocabulary import (
    OpenVerificationUri,
    PromptForCheckCode,
    QrSide,
    SendHttpRequest,
    ShowCheckCode,
    ShowUserCode,
)


def test_channel_effects_become_the_login_events_they_mean() -> None:
    assert channel_effect_to_login_event(ReportEstablished(role=QrSide.SHOWS)) == ChannelSecured()
    assert channel_effect_to_login_event(DeliverPlaintext(plaintext=b"{}")) == MessageReceived(plaintext=b"{}")
    for reason in ChannelFailureReason:
        assert channel_effect_to_login_event(ReportChannelFailure(reason=reason)) == ChannelClosed()


@pytest.mark.parametrize("effect", [SendPayload(payload="x"), ShowCheckCode(code="42"), PromptForCheckCode()])
def test_channel_effects_for_the_rendezvous_or_the_user_are_no_login_event(effect: ChannelEffect) -> None:
    assert channel_effect_to_login_event(effect) is None


def test_a_login_message_is_sealed_with_the_sequence_token_given() -> None:
    event = login_effect_to_channel_event(SendMessage(message=ProtocolAccepted()), sequence_token="7")
    assert isinstance(event, SealRequested) and event.sequence_token == "7"
    assert parse_message(event.plaintext) == ProtocolAccepted()


@pytest.mark.parametrize(
    "effect",
    [
        SendHttpRequest(request_id=1, request=HttpRequest(method="GET", target="https://hs.example/")),
        OpenVerificationUri(uri="https://auth.example/link"),
        ShowUserCode(user_code="123456"),
        DeleteRendezvous(not_before_ms=0),
    ],
)
def test_login_effects_for_the_application_are_no_channel_event(effect: Effect) -> None:
    assert login_effect_to_channel_event(effect) is None
