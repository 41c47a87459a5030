"""Terminal states, the ending rules and the moves both login machines share.

Every way a login ends goes through :func:`finish` or :func:`abort`, so the ending rules hold on every path by
construction: tell the peer when it can (one ``m.login.failure``), delete the rendezvous when this device created it
(after a grace period if a last message is still in the slot), and emit exactly one ``ReportLoginSuccess`` or
``ReportLoginFailure``.

The moves every live state of both machines makes the same way are handlers here, listed in each machine's table:
:func:`close_on_channel_closed`, :func:`cancel_before_secured` and :func:`cancel` (a user cancel, told to the peer
only once the channel can seal), and :func:`answer_out_of_place` (a message the state does not expect).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from .._machine import Handler
from ..vocabulary import UserCancelled
from .events import (
    FINAL_MESSAGE_GRACE_MS,
    ChannelClosed,
    DeleteRendezvous,
    Effect,
    LocalReason,
    MessageReceived,
    ReportLoginFailure,
    ReportLoginSuccess,
    SendMessage,
)
from .messages import Failure, FailureReason, Message, MessageError, parse_message

__all__ = [
    "LoginFailed",
    "LoginSucceeded",
    "abort",
    "answer_out_of_place",
    "cancel",
    "cancel_before_secured",
    "close_on_channel_closed",
    "finish",
    "parse_or_none",
    "shared_moves",
    "unexpected",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class LoginSucceeded:
    """Terminal: the login completed."""


@dataclass(frozen=True, slots=True, kw_only=True)
class LoginFailed:
    """Terminal: the login ended with ``reason``; ``by_peer`` when the peer's message ended it."""

    reason: FailureReason | LocalReason | str
    by_peer: bool = False


def _delete(created_rendezvous: bool, sent: bool, now_ms: int) -> tuple[Effect, ...]:
    if not created_rendezvous:
        return ()
    return (DeleteRendezvous(not_before_ms=now_ms + FINAL_MESSAGE_GRACE_MS if sent else now_ms),)


def abort(
    reason: FailureReason | LocalReason | str,
    *,
    created_rendezvous: bool,
    now_ms: int,
    tell: FailureReason | Message | None = None,
    by_peer: bool = False,
) -> tuple[LoginFailed, tuple[Effect, ...]]:
    """End in :class:`LoginFailed`: optionally send one message to the peer, delete our rendezvous, report."""
    effects: list[Effect] = []
    if isinstance(tell, FailureReason):
        tell = Failure(reason=tell)
    if tell is not None:
        effects.append(SendMessage(message=tell))
    effects.extend(_delete(created_rendezvous, tell is not None, now_ms))
    effects.append(ReportLoginFailure(reason=reason, by_peer=by_peer))
    return LoginFailed(reason=reason, by_peer=by_peer), tuple(effects)


def finish(
    completed: ReportLoginSuccess, *, created_rendezvous: bool, now_ms: int, last: Message | None = None
) -> tuple[LoginSucceeded, tuple[Effect, ...]]:
    """End in :class:`LoginSucceeded`, optionally sending one last message first."""
    effects: list[Effect] = []
    if last is not None:
        effects.append(SendMessage(message=last))
    effects.extend(_delete(created_rendezvous, last is not None, now_ms))
    effects.append(completed)
    return LoginSucceeded(), tuple(effects)


def parse_or_none(plaintext: bytes) -> Message | None:
    """Parse a message; ``None`` for anything malformed (the caller answers it as unexpected)."""
    try:
        return parse_message(plaintext)
    except MessageError:
        return None


def unexpected(
    message: Message | None, *, created_rendezvous: bool, now_ms: int
) -> tuple[LoginFailed, tuple[Effect, ...]]:
    """The peer's message does not fit the current step: a failure ends us; anything else is answered."""
    if isinstance(message, Failure):
        return abort(message.reason, created_rendezvous=created_rendezvous, now_ms=now_ms, by_peer=True)
    reason: FailureReason | LocalReason = (
        LocalReason.INVALID_MESSAGE if message is None else FailureReason.UNEXPECTED_MESSAGE_RECEIVED
    )
    return abort(
        reason,
        created_rendezvous=created_rendezvous,
        now_ms=now_ms,
        tell=FailureReason.UNEXPECTED_MESSAGE_RECEIVED,
    )


# -------------------------------------------------------------------------------------------- shared moves


class _Config(Protocol):
    @property
    def created_rendezvous(self) -> bool: ...


class LiveState(Protocol):
    """Any live state of either machine: it carries its machine's configuration."""

    @property
    def config(self) -> _Config: ...


def close_on_channel_closed(
    state: LiveState, event: ChannelClosed, now_ms: int
) -> tuple[LoginFailed, tuple[Effect, ...]]:
    """The channel can carry nothing more: the login ends silently (there is no one to tell)."""
    return abort(LocalReason.CHANNEL_CLOSED, created_rendezvous=state.config.created_rendezvous, now_ms=now_ms)


def cancel_before_secured(
    state: LiveState, event: UserCancelled, now_ms: int
) -> tuple[LoginFailed, tuple[Effect, ...]]:
    """The user gave up before the channel was secured: nothing can be sealed yet, so the peer is not told."""
    return abort(FailureReason.USER_CANCELLED, created_rendezvous=state.config.created_rendezvous, now_ms=now_ms)


def cancel(state: LiveState, event: UserCancelled, now_ms: int) -> tuple[LoginFailed, tuple[Effect, ...]]:
    """The user gave up: the peer is told ``user_cancelled``."""
    reason = FailureReason.USER_CANCELLED
    return abort(reason, created_rendezvous=state.config.created_rendezvous, now_ms=now_ms, tell=reason)


def answer_out_of_place(
    state: LiveState, event: MessageReceived, now_ms: int
) -> tuple[LoginFailed, tuple[Effect, ...]]:
    """A message where the state expects none: see :func:`unexpected`."""
    return unexpected(parse_or_none(event.plaintext), created_rendezvous=state.config.created_rendezvous, now_ms=now_ms)


def shared_moves(
    live: tuple[type, ...], *, unsecured: type, expecting_no_message: tuple[type, ...]
) -> dict[tuple[type, type], Handler]:
    """The rows both login machines' tables share: every live state ends on a closed channel or a user's cancel (told
    to the peer once the channel is secured), and the states that expect no message answer one as out of place."""
    return {
        **{(state, ChannelClosed): close_on_channel_closed for state in live},
        (unsecured, UserCancelled): cancel_before_secured,
        **{(state, UserCancelled): cancel for state in live if state is not unsecured},
        **{(state, MessageReceived): answer_out_of_place for state in expecting_no_message},
    }
