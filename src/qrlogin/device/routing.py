"""Where each effect of a lower machine goes: one table per layer, one row per effect.

Theory of operation
-------------------
A device runs three machines (``docs/protocol.md`` §1): the rendezvous client, the secure channel and the login
machine. Each speaks only its own vocabulary; what one emits, another must take, or the embedder. The tables below say
where each effect goes, and :func:`run` feeds the queued events to their machines until none is left:

============  ============================================  ==============================================
layer         effect                                        becomes
============  ============================================  ==============================================
rendezvous    ``SendHttpRequest``                           the embedder's ``SendHttpRequest``, renumbered
              ``ReportSessionCreated``                      the showing channel, and ``ShowQrCode``
              ``DeliverPayload``                            S's first read: ``InitiateRequested``; later
                                                            the channel's ``PayloadReceived``, opened with
                                                            the token our last write got
              ``ReportWriteConfirmed``                      that token (v3 without one: channel over)
              ``ReportSessionClosed`` / ``...Failure``      login ``ChannelClosed``; how the session
                                                            ended (``SessionEnd``) goes in the outcome
channel       ``SendPayload``                               rendezvous ``SendRequested`` (resent as is)
              ``ShowCheckCode`` / ``PromptForCheckCode``    the embedder, unchanged
              ``ReportEstablished``, ``DeliverPlaintext``,  login events (:mod:`qrlogin.login.glue`)
              ``ReportChannelFailure``
login         ``SendMessage``                               the outbox, sealed on this device's turn
              ``SendHttpRequest``                           the embedder's ``SendHttpRequest``, renumbered
              ``OpenVerificationUri`` / ``ShowUserCode``    the embedder, unchanged
              ``DeleteRendezvous``                          the creator's deletion time (:mod:`.closing`)
              ``ReportLoginSuccess`` / ``...Failure``       ``ReportOutcome``, exactly once
============  ============================================  ==============================================

Adding an effect to a lower machine means adding one row here; an effect without a row fails loudly.

Turns. The rendezvous is one slot and MSC4108's messages strictly alternate, so a login message is sealed only when
the rendezvous client has just delivered the peer's payload (``ReadyToSend``), with that read's token (the HPKE AAD,
``docs/protocol.md`` §5), and never again: a lost PUT is resent byte for byte by the rendezvous client, so no nonce
is reused. A message produced out of turn waits in the outbox for the next turn; after the login ended, the rules of
:mod:`.closing` decide what the device still does.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import Any, Final

from .. import qr
from ..channel import (
    ChannelEvent,
    ChannelFailed,
    DeliverPlaintext,
    InitiateRequested,
    PayloadReceived,
    ReportChannelFailure,
    ReportEstablished,
    SendPayload,
    ecies,
    hpke,
)
from ..errors import RemoteProtocolError
from ..login.events import ChannelClosed, DeleteRendezvous, ReportLoginFailure, ReportLoginSuccess, SendMessage
from ..login.events import Event as LoginEvent
from ..login.glue import channel_effect_to_login_event
from ..login.messages import Message, message_to_json, parse_message, serialize_message
from ..rendezvous import client as rz
from ..vocabulary import (
    OpenVerificationUri,
    PromptForCheckCode,
    QrSide,
    SendHttpRequest,
    ShowCheckCode,
    ShowUserCode,
)
from . import closing
from .config import channel_machine, login_machine, showing_channel
from .effects import ReportMessageReceived, ReportMessageSent, ReportOutcome, SessionEnd, ShowQrCode
from .work import Work, ended

__all__ = ["CHANNEL_ROUTES", "LOGIN_ROUTES", "RENDEZVOUS_ROUTES", "describe", "route_rendezvous", "run"]

Route = Callable[[Work, Any, int], None]

# ------------------------------------------------------------------------------------------------------ rendezvous


def _send_rendezvous_request(work: Work, effect: SendHttpRequest, now_ms: int) -> None:
    request_id = work.issue()
    work.requests = replace(work.requests, rendezvous=(request_id, effect.request_id))
    work.effects.append(SendHttpRequest(request_id=request_id, request=effect.request))


def _session_created(work: Work, effect: rz.ReportSessionCreated, now_ms: int) -> None:
    if work.outcome is not None:
        return  # cancelled while the session was being created: the closing rules delete it, no QR is shown
    channel, code = showing_channel(work.config, effect)
    work.channel = channel
    work.effects.append(ShowQrCode(payload=qr.encode(code), code=code))


def _payload_delivered(work: Work, effect: rz.DeliverPayload, now_ms: int) -> None:
    work.read_token = effect.token
    if work.outcome is not None:
        return  # the login is over: only the turn matters now, the peer's message is not read
    if work.side is QrSide.SCANS and isinstance(work.channel, ecies.ReadyToInitiate | hpke.ReadyToInitiate):
        # The creator's POST: its (empty) content carries nothing; our turn to write LoginInitiate.
        work.channel_events.append(InitiateRequested(sequence_token=effect.token))
    elif work.write_token is None and work.config.generation is qr.Generation.V3:
        # Nothing of ours was confirmed in the slot, so there is no token to open this payload with: it cannot be
        # from our peer, whose reply would follow our write. The channel is over.
        work.login_events.append(ChannelClosed())
    else:
        work.channel_events.append(
            PayloadReceived(payload=effect.data, sequence_token=work.write_token, reply_sequence_token=effect.token)
        )


def _write_confirmed(work: Work, effect: rz.ReportWriteConfirmed, now_ms: int) -> None:
    if effect.token is None and work.config.generation is qr.Generation.V3:
        # The v3 AAD needs the token our write got; it was never seen (see the rendezvous client): give up.
        work.login_events.append(ChannelClosed())
    work.write_token = effect.token


def _write_rejected(work: Work, effect: rz.ReportWriteRejected, now_ms: int) -> None:
    # The slot held someone else's data when our write conflicted, and that data was just handed to the channel. If
    # it authenticated, it is our peer's reply, which the peer can only write after reading ours: an earlier copy of
    # our write (a duplicated request) had landed. Otherwise the channel has failed already. Either way there is
    # nothing to resend: a sealed message is never sealed again.
    pass


_SESSION_ENDS: Final = {"expired": SessionEnd.EXPIRED, "deadline": SessionEnd.EXPIRED, "gone": SessionEnd.DELETED}


def _session_ended(work: Work, effect: rz.ReportSessionClosed | rz.ReportSessionFailure, now_ms: int) -> None:
    if work.outcome is None:
        work.session_end = _SESSION_ENDS.get(effect.reason, SessionEnd.FAILED)
    work.login_events.append(ChannelClosed())


RENDEZVOUS_ROUTES: Final[dict[type, Route]] = {
    SendHttpRequest: _send_rendezvous_request,
    rz.ReportSessionCreated: _session_created,
    rz.DeliverPayload: _payload_delivered,
    rz.ReportWriteConfirmed: _write_confirmed,
    rz.ReportWriteRejected: _write_rejected,
    rz.ReportSessionClosed: _session_ended,
    rz.ReportSessionFailure: _session_ended,
}

# --------------------------------------------------------------------------------------------------------- channel


def _send_payload(work: Work, effect: SendPayload, now_ms: int) -> None:
    work.rz_events.append(rz.SendRequested(payload=effect.payload))


def _show_user(
    work: Work, effect: ShowCheckCode | PromptForCheckCode | OpenVerificationUri | ShowUserCode, now_ms: int
) -> None:
    work.effects.append(effect)


def _to_login(work: Work, effect: ReportEstablished | DeliverPlaintext | ReportChannelFailure, now_ms: int) -> None:
    if isinstance(effect, ReportChannelFailure):
        work.channel_failure = effect.reason
    elif isinstance(effect, DeliverPlaintext):
        work.effects.append(ReportMessageReceived(message_type=_message_type(effect.plaintext)))
    event = channel_effect_to_login_event(effect)
    assert event is not None
    work.login_events.append(event)


CHANNEL_ROUTES: Final[dict[type, Route]] = {
    SendPayload: _send_payload,
    ShowCheckCode: _show_user,
    PromptForCheckCode: _show_user,
    ReportEstablished: _to_login,
    DeliverPlaintext: _to_login,
    ReportChannelFailure: _to_login,
}

# ----------------------------------------------------------------------------------------------------------- login


def _queue_message(work: Work, effect: SendMessage, now_ms: int) -> None:
    work.outbox.append(serialize_message(effect.message))
    work.effects.append(ReportMessageSent(message_type=describe(effect.message)))


def _send_login_request(work: Work, effect: SendHttpRequest, now_ms: int) -> None:
    request_id = work.issue()
    work.requests = replace(work.requests, login=(request_id, effect.request_id))
    work.effects.append(SendHttpRequest(request_id=request_id, request=effect.request))


def _delete_at(work: Work, effect: DeleteRendezvous, now_ms: int) -> None:
    work.delete_at_ms = effect.not_before_ms


def _login_ended(work: Work, effect: ReportLoginSuccess | ReportLoginFailure, now_ms: int) -> None:
    work.outcome = ReportOutcome(result=effect, channel_failure=work.channel_failure, session_end=work.session_end)
    work.effects.append(work.outcome)


LOGIN_ROUTES: Final[dict[type, Route]] = {
    SendMessage: _queue_message,
    SendHttpRequest: _send_login_request,
    OpenVerificationUri: _show_user,
    ShowUserCode: _show_user,
    DeleteRendezvous: _delete_at,
    ReportLoginSuccess: _login_ended,
    ReportLoginFailure: _login_ended,
}

# ------------------------------------------------------------------------------------------------------ the loop


def route_rendezvous(work: Work, effects: Iterable[object], now_ms: int) -> None:
    """Route what the rendezvous client emitted (also its start functions' effects)."""
    for effect in effects:
        RENDEZVOUS_ROUTES[type(effect)](work, effect, now_ms)


def run(work: Work, now_ms: int) -> None:
    """Feed every queued event to its machine, routing what comes out, and take this device's turn, until nothing is
    left to do in this step."""
    for _ in range(10_000):  # each round consumes one event or takes one turn; a device step needs a handful
        if work.rz_events:
            _feed_rendezvous(work, work.rz_events.popleft(), now_ms)
        elif work.channel_events:
            _feed_channel(work, work.channel_events.popleft(), now_ms)
        elif work.login_events:
            _feed_login(work, work.login_events.popleft(), now_ms)
        elif work.outcome is not None:
            if not closing.pump(work, now_ms):
                return
        elif work.our_turn:
            work.seal_next()
        else:
            return
    raise AssertionError("device step did not settle")  # pragma: no cover - a wiring loop, not a protocol state


def _feed_rendezvous(work: Work, event: rz.Event, now_ms: int) -> None:
    if ended(work.rendezvous):
        return
    assert work.rendezvous is not None
    work.rendezvous, effects = rz.transition(work.rendezvous, event, now_ms=now_ms)
    route_rendezvous(work, effects, now_ms)


def _feed_channel(work: Work, event: ChannelEvent, now_ms: int) -> None:
    if work.channel is None or isinstance(work.channel, ChannelFailed):
        return
    work.channel, effects = channel_machine(work.config).transition(work.channel, event, now_ms=now_ms)
    for effect in effects:
        CHANNEL_ROUTES[type(effect)](work, effect, now_ms)


def _feed_login(work: Work, event: LoginEvent, now_ms: int) -> None:
    machine = login_machine(work.config)
    if work.outcome is not None or work.login is None or machine.MACHINE.is_terminal(work.login):
        return
    work.login, effects = machine.transition(work.login, event, now_ms=now_ms)
    for effect in effects:
        LOGIN_ROUTES[type(effect)](work, effect, now_ms)


def _message_type(plaintext: bytes) -> str:
    try:
        return describe(parse_message(plaintext))
    except RemoteProtocolError:
        return "(not a login message)"


def describe(message: Message) -> str:
    """The message type, with the reason of an ``m.login.failure``; never a field that could hold a secret."""
    content = message_to_json(message)
    kind = str(content["type"])
    return f"{kind} ({content['reason']})" if "reason" in content else kind
