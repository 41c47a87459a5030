"""The fuzz contract every secure channel machine meets, independent of its generation.

For each reachable state and each network-facing input the state accepts (a payload and its sequence tokens, and
G's check-code entry, which is typed by a user), feeding an arbitrary string must either return a state its
transitions table says the move can lead to, or raise :class:`~qrlogin.errors.RemoteProtocolError`. Nothing else may
escape: no ``ValueError``, ``binascii.Error``, ``UnicodeError``, ``IndexError``, no ``LocalProtocolError`` (the
event was legal). And random input can never authenticate: it may not produce ``DeliverPlaintext`` or
``ReportEstablished`` (except a check-code entry that happens to be the right code).

A channel state takes one event, so every input goes to a fork of the fixture state
(:func:`qrlogin._machine.fork_for_exploration`), as an explorer's branches do.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from qrlogin._machine import Machine, fork_for_exploration
from qrlogin.channel._common import ChannelFailed, DeliverPlaintext, PayloadReceived, ReportEstablished
from qrlogin.errors import RemoteProtocolError
from qrlogin.vocabulary import CheckCodeEntered

Transition = Callable[..., tuple[Any, tuple[Any, ...]]]


def network_events(text: str) -> list[object]:
    """Every network-facing event built from ``text``."""
    return [
        PayloadReceived(payload=text),
        PayloadReceived(payload=text, sequence_token=text, reply_sequence_token=text),
        CheckCodeEntered(code=text),
    ]


def exercise(machine: Machine[Any, Any, Any], transition: Transition, states: Iterable[object], text: str) -> None:
    """Feed ``text`` through every legal network-facing event of every state; raise AssertionError on a breach."""
    for state in states:
        for event in network_events(text):
            if type(event) not in machine.legal_events(type(state)):
                continue
            try:
                new_state, effects = transition(fork_for_exploration(state), event, now_ms=0)
            except RemoteProtocolError:
                continue
            assert type(new_state) in machine.targets(type(state), type(event)), type(new_state)
            if isinstance(event, CheckCodeEntered):
                continue
            if isinstance(new_state, ChannelFailed):
                assert not any(isinstance(e, DeliverPlaintext | ReportEstablished) for e in effects), effects
            else:
                # Unauthenticated input may at most be held (G before the check code): nothing is delivered.
                assert type(new_state) is type(state), (type(state), type(new_state))
                assert not any(isinstance(e, DeliverPlaintext | ReportEstablished) for e in effects), effects
