"""The scratch of one transition: the sub-machines' states as they change, and what is still to do.

Theory of operation
-------------------
A device step feeds one event to one machine; its effects become events of the others (``routing``), whose effects
become events again, until nothing is left. :class:`Work` holds that in-between: the three machines' current states,
the queues of events each still has to take, the effects gathered for the embedder, and the device's own
bookkeeping (request ids, the outbox of login messages, the rendezvous tokens, how the login ended). It is built from
a state by :meth:`Work.of` and turned back into one by :func:`settle`, which reads off the sub-machines what the
device now waits for. It is mutable, but it never outlives the pure ``transition`` that created it.
"""

from __future__ import annotations

from collections import deque
from dataclasses import replace
from typing import TypeVar

from ..channel import ChannelEvent, SealRequested, ecies, hpke
from ..channel import FailureReason as ChannelFailureReason
from ..login import existing_device, new_device
from ..login.events import Event as LoginEvent
from ..login.events import ReportLoginSuccess
from ..rendezvous import client as rz
from ..vocabulary import QrSide
from .config import ChannelState, DeviceConfig, LoginState
from .effects import Effect, ReportOutcome, SessionEnd
from .states import (
    AwaitingCheckCodeEntry,
    AwaitingConsent,
    AwaitingDeletion,
    AwaitingDeletionTime,
    AwaitingHandshake,
    AwaitingLastWrite,
    AwaitingLogin,
    AwaitingSession,
    AwaitingTurn,
    Closing,
    Finished,
    Requests,
    Running,
    SignInFailed,
    SignInSucceeded,
    sealable,
)

__all__ = ["Work", "ended", "settle", "writing"]


class Work:
    """One transition in progress (see the module docstring)."""

    __slots__ = (
        "channel",
        "channel_events",
        "channel_failure",
        "config",
        "delete_at_ms",
        "effects",
        "login",
        "login_events",
        "outbox",
        "outcome",
        "read_token",
        "rendezvous",
        "requests",
        "rz_events",
        "session_end",
        "side",
        "write_token",
    )

    def __init__(
        self,
        config: DeviceConfig,
        side: QrSide,
        *,
        rendezvous: rz.State | None,
        channel: ChannelState | None = None,
        login: LoginState | None = None,
        requests: Requests,
        outbox: tuple[bytes, ...] = (),
        read_token: str | None = None,
        write_token: str | None = None,
        outcome: ReportOutcome | None = None,
        delete_at_ms: int | None = None,
    ) -> None:
        self.config = config
        self.side = side
        self.rendezvous = rendezvous
        self.channel = channel
        self.login = login
        self.requests = requests
        self.outbox = list(outbox)
        self.read_token = read_token
        self.write_token = write_token
        self.outcome = outcome
        self.delete_at_ms = delete_at_ms
        self.channel_failure: ChannelFailureReason | None = None
        self.session_end: SessionEnd | None = None
        self.rz_events: deque[rz.Event] = deque()
        self.channel_events: deque[ChannelEvent] = deque()
        self.login_events: deque[LoginEvent] = deque()
        self.effects: list[Effect] = []

    @classmethod
    def of(cls, state: AwaitingSession | Running | Closing) -> Work:
        """The work of a step that starts from ``state``."""
        if isinstance(state, AwaitingSession):
            return cls(
                state.config, QrSide.SHOWS, rendezvous=state.rendezvous, login=state.login, requests=state.requests
            )
        if isinstance(state, AwaitingHandshake | AwaitingCheckCodeEntry | AwaitingConsent | AwaitingLogin):
            return cls(
                state.config,
                state.side,
                rendezvous=state.rendezvous,
                channel=state.channel,
                login=state.login,
                requests=state.requests,
                outbox=state.outbox,
                read_token=state.read_token,
                write_token=state.write_token,
            )
        if isinstance(state, AwaitingTurn):
            return cls(
                state.config,
                state.side,
                rendezvous=state.rendezvous,
                channel=state.channel,
                requests=state.requests,
                outbox=state.outbox,
                read_token=state.read_token,
                outcome=state.outcome,
                delete_at_ms=state.delete_at_ms,
            )
        if isinstance(state, AwaitingLastWrite):
            return cls(
                state.config,
                state.side,
                rendezvous=state.rendezvous,
                channel=state.channel,
                requests=state.requests,
                outcome=state.outcome,
                delete_at_ms=state.delete_at_ms,
            )
        delete_at_ms = state.delete_at_ms if isinstance(state, AwaitingDeletionTime) else None
        return cls(
            state.config,
            QrSide.SHOWS,
            rendezvous=state.rendezvous,
            requests=state.requests,
            outcome=state.outcome,
            delete_at_ms=delete_at_ms,
        )

    def issue(self) -> int:
        """A fresh request id of this device's."""
        issued = self.requests.issued + 1
        self.requests = replace(self.requests, issued=issued)
        return issued

    def seal_next(self) -> None:
        """It is this device's turn: seal the oldest waiting message with the token of the read that gave the turn."""
        plaintext = self.outbox.pop(0)
        self.channel_events.append(SealRequested(plaintext=plaintext, sequence_token=self.read_token))

    @property
    def our_turn(self) -> bool:
        """The peer's payload was just delivered and nothing of ours is written since: a message may be sealed."""
        return isinstance(self.rendezvous, rz.ReadyToSend) and bool(self.outbox) and sealable(self.channel)


def ended(rendezvous: rz.State | None) -> bool:
    """True when the device has no rendezvous session any more (it ended, or the device let go of it)."""
    return rendezvous is None or rz.MACHINE.is_terminal(rendezvous)


def writing(rendezvous: rz.State) -> bool:
    """True while a write of ours is on its way (sent, resent after a loss, or being reconciled after a conflict)."""
    if isinstance(rendezvous, rz.BackingOff):
        rendezvous = rendezvous.resume
    return isinstance(rendezvous, rz.Writing | rz.Reconciling)


def settle(work: Work, now_ms: int) -> AwaitingSession | Running | Closing | Finished:
    """The state ``work`` has come to, named for what the device now waits for."""
    config, rendezvous = work.config, work.rendezvous
    if work.outcome is None:
        assert rendezvous is not None and work.login is not None, "a running login has a rendezvous"
        if work.channel is None:
            return AwaitingSession(config=config, login=work.login, rendezvous=rendezvous, requests=work.requests)
        if isinstance(work.channel, ecies.AwaitingCheckCode | hpke.AwaitingCheckCode):
            return _running(AwaitingCheckCodeEntry, work)
        if isinstance(work.login, existing_device.AwaitingVerificationUriOpened):
            return _running(AwaitingConsent, work)
        if isinstance(work.login, new_device.AwaitingChannel | existing_device.AwaitingChannel):
            return _running(AwaitingHandshake, work)
        return _running(AwaitingLogin, work)
    outcome = work.outcome
    if ended(rendezvous):
        if isinstance(outcome.result, ReportLoginSuccess):
            return SignInSucceeded(config=config, outcome=outcome)
        return SignInFailed(config=config, outcome=outcome)
    assert rendezvous is not None
    if work.outbox:
        assert work.channel is not None
        return AwaitingTurn(
            config=config,
            side=work.side,
            outcome=outcome,
            rendezvous=rendezvous,
            channel=work.channel,
            outbox=tuple(work.outbox),
            read_token=work.read_token,
            delete_at_ms=work.delete_at_ms,
            requests=work.requests,
        )
    if writing(rendezvous):
        assert work.channel is not None
        return AwaitingLastWrite(
            config=config,
            side=work.side,
            outcome=outcome,
            rendezvous=rendezvous,
            channel=work.channel,
            delete_at_ms=work.delete_at_ms,
            requests=work.requests,
        )
    if isinstance(rendezvous, rz.Creating | rz.Deleting):
        return AwaitingDeletion(config=config, outcome=outcome, rendezvous=rendezvous, requests=work.requests)
    assert work.delete_at_ms is not None and now_ms < work.delete_at_ms, "the closing rules delete or let go"
    return AwaitingDeletionTime(
        config=config, outcome=outcome, rendezvous=rendezvous, delete_at_ms=work.delete_at_ms, requests=work.requests
    )


RunningT = TypeVar("RunningT", AwaitingHandshake, AwaitingCheckCodeEntry, AwaitingConsent, AwaitingLogin)


def _running(cls: type[RunningT], work: Work) -> RunningT:
    assert work.rendezvous is not None and work.channel is not None and work.login is not None
    return cls(
        config=work.config,
        side=work.side,
        rendezvous=work.rendezvous,
        channel=work.channel,
        login=work.login,
        outbox=tuple(work.outbox),
        read_token=work.read_token,
        write_token=work.write_token,
        requests=work.requests,
    )
