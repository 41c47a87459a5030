"""The device's states: each holds what is valid while the device waits for one thing, and nothing else.

Theory of operation
-------------------
A device lives through four stretches, and its state classes follow them (``docs/simulation.md`` draws the
transitions table):

* **bootstrap**: the rendezvous does not exist for this device yet. The device that shows the QR code waits for its
  creating POST (:class:`AwaitingSession`); a v2 scanner first resolves the server name its QR code gave
  (:class:`AwaitingDiscovery`, ``docs/protocol.md`` §7).
* **running**: the three machines run side by side (rendezvous client, secure channel, login), with the outbox of
  login messages waiting for this device's turn and the two rendezvous tokens the HPKE AAD needs. One data shape,
  four classes, named for what the device waits for: the channel handshake (:class:`AwaitingHandshake`), the user's
  check code (:class:`AwaitingCheckCodeEntry`), the user's consent in the browser (:class:`AwaitingConsent`), and the
  rest of the login (:class:`AwaitingLogin`). Which one the device is in is read off the sub-machines after every
  step, so it is never out of step with them.
* **closing**: the login has ended and its outcome is reported, but the device still owes the rendezvous something:
  a last message for the peer that waits for this device's turn (:class:`AwaitingTurn`), a write on its way
  (:class:`AwaitingLastWrite`), the grace period that lets the peer read it before the creator deletes the session
  (:class:`AwaitingDeletionTime`) and the deletion itself (:class:`AwaitingDeletion`).
* **finished**: terminal, with the outcome, named for how the sign-in ended on this device (:class:`SignInSucceeded`,
  :class:`SignInFailed`). They accept no event: a finished device has nothing outstanding that it still needs, so an
  embedder drops whatever answer is still on its way.

HTTP ids are the device's own (:class:`Requests`): one id space for the rendezvous client's and the login machine's
requests, each mapped back to the id its machine chose, so an answer reaches the machine that asked and an answer to
an id the device never issued is recognised as the embedder's mistake.
"""

from __future__ import annotations

from dataclasses import dataclass

from .. import qr
from ..channel import ecies, hpke
from ..rendezvous import client as rz
from ..vocabulary import QrSide
from .config import ChannelState, DeviceConfig, LoginState, login_machine
from .effects import ReportOutcome

__all__ = [
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
    "Closing",
    "Finished",
    "Requests",
    "Running",
    "SignInFailed",
    "SignInSucceeded",
    "State",
    "channel",
    "deadline",
    "login_deadline",
    "outcome",
    "sealable",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class Requests:
    """The HTTP requests this device issued: ids ``1..issued``, and the two it still waits for.

    ``rendezvous`` and ``login`` pair the device's id with the id the machine chose. An answer to an issued id that is
    in neither (a duplicate, a late answer after a loss, an answer to a request a machine gave up) is network noise.
    """

    issued: int = 0
    rendezvous: tuple[int, int] | None = None
    login: tuple[int, int] | None = None


# ------------------------------------------------------------------------------------------------------ bootstrap


@dataclass(frozen=True, slots=True, kw_only=True)
class AwaitingSession:
    """The device that shows the QR code: its rendezvous session is being created (the POST, or its retry, is on its
    way); the QR code follows once the session exists."""

    config: DeviceConfig
    login: LoginState
    rendezvous: rz.State
    requests: Requests


@dataclass(frozen=True, slots=True, kw_only=True)
class AwaitingDiscovery:
    """Scanned a v2 code, which names a server, not its URL: ``.well-known`` (request 1) says where to join."""

    config: DeviceConfig
    code: qr.QrCode
    login: LoginState
    requests: Requests


# -------------------------------------------------------------------------------------------------------- running


@dataclass(frozen=True, slots=True, kw_only=True)
class _Running:
    """The three machines at work. ``outbox`` holds serialized login messages waiting for this device's turn;
    ``read_token`` is the token of the peer's last payload (a seal binds it), ``write_token`` the token our last write
    got (an open binds it)."""

    config: DeviceConfig
    side: QrSide
    rendezvous: rz.State
    channel: ChannelState
    login: LoginState
    outbox: tuple[bytes, ...]
    read_token: str | None
    write_token: str | None
    requests: Requests


@dataclass(frozen=True, slots=True, kw_only=True)
class AwaitingHandshake(_Running):
    """The channel handshake: the QR code is up and no scanner has spoken yet, or this device scanned it and reads the
    session, writes ``LoginInitiate`` and waits for ``LoginOk``."""


@dataclass(frozen=True, slots=True, kw_only=True)
class AwaitingCheckCodeEntry(_Running):
    """Showed the QR code and answered ``LoginInitiate``: the user types the code the other device shows."""


@dataclass(frozen=True, slots=True, kw_only=True)
class AwaitingConsent(_Running):
    """The existing device asked the user to open the verification URI and consent."""


@dataclass(frozen=True, slots=True, kw_only=True)
class AwaitingLogin(_Running):
    """The channel is up: the peer's next login message, or the homeserver's answer to a login request."""


Running = AwaitingHandshake | AwaitingCheckCodeEntry | AwaitingConsent | AwaitingLogin

# -------------------------------------------------------------------------------------------------------- closing


@dataclass(frozen=True, slots=True, kw_only=True)
class AwaitingTurn:
    """The login is over and this device owes the peer a last message (``outbox``): it keeps polling until the peer
    writes, then seals and writes it. The creator waits until ``delete_at_ms`` and then deletes the session instead;
    the joiner waits until the session ends (its expiry)."""

    config: DeviceConfig
    side: QrSide
    outcome: ReportOutcome
    rendezvous: rz.State
    channel: ChannelState
    outbox: tuple[bytes, ...]
    read_token: str | None
    delete_at_ms: int | None
    requests: Requests


@dataclass(frozen=True, slots=True, kw_only=True)
class AwaitingLastWrite:
    """The login is over; this device's last write is on its way (``channel`` is the one that sealed it)."""

    config: DeviceConfig
    side: QrSide
    outcome: ReportOutcome
    rendezvous: rz.State
    channel: ChannelState
    delete_at_ms: int | None
    requests: Requests


@dataclass(frozen=True, slots=True, kw_only=True)
class AwaitingDeletionTime:
    """The creator leaves the peer until ``delete_at_ms`` to read a last message before it deletes the session."""

    config: DeviceConfig
    outcome: ReportOutcome
    rendezvous: rz.State
    delete_at_ms: int
    requests: Requests


@dataclass(frozen=True, slots=True, kw_only=True)
class AwaitingDeletion:
    """The creator's DELETE is on its way (or, cancelled while creating, the POST whose session it then deletes)."""

    config: DeviceConfig
    outcome: ReportOutcome
    rendezvous: rz.State
    requests: Requests


Closing = AwaitingTurn | AwaitingLastWrite | AwaitingDeletionTime | AwaitingDeletion

# -------------------------------------------------------------------------------------------------------- finished


@dataclass(frozen=True, slots=True, kw_only=True)
class SignInSucceeded:
    """Terminal: the login succeeded on this device (``outcome.result`` is ``ReportLoginSuccess``) and the device
    needs nothing more."""

    config: DeviceConfig
    outcome: ReportOutcome


@dataclass(frozen=True, slots=True, kw_only=True)
class SignInFailed:
    """Terminal: the login failed on this device (``outcome.result`` is ``ReportLoginFailure``, with why the channel or
    the session ended if that ended it) and the device needs nothing more."""

    config: DeviceConfig
    outcome: ReportOutcome


Finished = SignInSucceeded | SignInFailed

State = AwaitingSession | AwaitingDiscovery | Running | Closing | Finished

# -------------------------------------------------------------------------------------------------------- queries


def login_deadline(config: DeviceConfig, login: LoginState) -> int | None:
    """When the login machine wants :class:`~qrlogin.vocabulary.TimerFired` next."""
    return login_machine(config).deadline(login)


def deadline(state: State) -> int | None:
    """When :class:`~qrlogin.vocabulary.TimerFired` is due next, or None. One that comes early changes nothing."""
    if isinstance(state, AwaitingDiscovery | SignInSucceeded | SignInFailed):
        return None
    times = [rz.deadline(state.rendezvous)]
    if isinstance(state, _Running):
        times.append(login_deadline(state.config, state.login))
    elif isinstance(state, AwaitingTurn | AwaitingDeletionTime):
        times.append(state.delete_at_ms)  # the creator stops waiting for its turn, or for the peer to read
    # AwaitingLastWrite waits for its write's answer (or the rendezvous client's resend), never for the clock alone.
    due = [time for time in times if time is not None]
    return min(due) if due else None


def outcome(state: State) -> ReportOutcome | None:
    """How the login ended (what :class:`~qrlogin.device.ReportOutcome` reported), or None while it runs."""
    if isinstance(state, AwaitingSession | AwaitingDiscovery | _Running):
        return None
    return state.outcome


def channel(state: State) -> ChannelState | None:
    """The secure channel's state, where the device holds one (running, and while its last message is written)."""
    if isinstance(state, _Running | AwaitingTurn | AwaitingLastWrite):
        return state.channel
    return None


def sealable(channel: ChannelState | None) -> bool:
    """True for a channel that can seal a login message."""
    return isinstance(channel, ecies.Established | hpke.Established)
