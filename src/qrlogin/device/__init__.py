"""One device of a sign-in with QR code: the rendezvous, channel and login machines composed into one pure machine.

Theory of operation
-------------------
Each layer of qrlogin is a pure machine that speaks only its own vocabulary. An application that signs a device in
(or lets one in) needs all three, joined: this package is that join, for one device in one role, so an embedder has
a single ``transition(state, event, *, now_ms) -> (state, effects)`` to drive, and the simulator (:mod:`qrlogin.sim`)
runs exactly what an application would::

    state, effects = generate(config, now_ms=now)      # or scan(config, qr_bytes, now_ms=now)
    while not is_done(state):
        ...perform effects: SendHttpRequest, ShowQrCode, ShowCheckCode, PromptForCheckCode, ...
        state, effects = transition(state, event, now_ms=now)   # HTTP answers, TimerFired at deadline(state), the user

The parts, each with its own theory of operation:

* :mod:`.config`: what a device is given (:class:`DeviceConfig`) and how it starts each lower machine; every random
  byte is :func:`derive`\\ d from the configured seed.
* :mod:`.bootstrap`: getting into a rendezvous session, by creating it (:func:`generate`, the device that shows the
  QR code) or joining it (:func:`scan`, after resolving ``.well-known`` for a v2 code).
* :mod:`.states`: one class per thing the device waits for, each holding only what is valid then (bootstrap,
  running, closing), the two it ends in (:class:`SignInSucceeded`, :class:`SignInFailed`), and the queries
  :func:`deadline`, :func:`outcome` and :func:`channel`.
* :mod:`.routing`: one table per lower layer, from each effect it emits to what the device makes of it, and the
  turn-taking that seals a login message only when the rendezvous slot is this device's.
* :mod:`.closing`: what the device still owes after its login ended: a last message delivered on its next turn (the
  only way a scanning device can tell its peer it gave up), its write confirmed, the creator's deletion.
* :mod:`.machine`: the transitions table (:data:`MACHINE`), from which the check of every event, the terminal state
  and the diagram in ``docs/simulation.md`` derive.
* :mod:`.effects`: the device's own effects (:class:`ShowQrCode`, :class:`ReportMessageSent`,
  :class:`ReportMessageReceived`, :class:`ReportOutcome`); everything else is :mod:`qrlogin.vocabulary`'s.

Both lower machines that talk HTTP speak :mod:`qrlogin.http`'s values with absolute-URL targets, so a request passes to
the embedder unchanged but for its id. Requests marked ``authenticated`` need the signed-in user's access token,
which the embedder adds (the core never holds it).
"""

from __future__ import annotations

from .bootstrap import generate, scan
from .config import MIN_SEED_BYTES, DeviceConfig, derive, rendezvous_endpoint
from .effects import Effect, Event, ReportMessageReceived, ReportMessageSent, ReportOutcome, SessionEnd, ShowQrCode
from .machine import MACHINE, is_done, transition
from .states import (
    AwaitingCheckCodeEntry,
    AwaitingConsent,
    AwaitingDeletion,
    AwaitingDeletionTime,
    AwaitingDiscovery,
    AwaitingHandshake,
    AwaitingLastWrite,
    AwaitingLogin,
    AwaitingSession,
    AwaitingTurn,
    Requests,
    SignInFailed,
    SignInSucceeded,
    State,
    channel,
    deadline,
    outcome,
)

__all__ = [
    "MACHINE",
    "MIN_SEED_BYTES",
    "AwaitingCheckCodeEntry",
    "AwaitingConsent",
    "AwaitingDeletion",
    "AwaitingDeletionTime",
    "AwaitingDiscovery",
    "AwaitingHandshake",
    "AwaitingLastWrite",
    "AwaitingLogin",
    "AwaitingSession",
    "AwaitingTurn",
    "DeviceConfig",
    "Effect",
    "Event",
    "ReportMessageReceived",
    "ReportMessageSent",
    "ReportOutcome",
    "Requests",
    "SessionEnd",
    "ShowQrCode",
    "SignInFailed",
    "SignInSucceeded",
    "State",
    "channel",
    "deadline",
    "derive",
    "generate",
    "is_done",
    "outcome",
    "rendezvous_endpoint",
    "scan",
    "transition",
]
