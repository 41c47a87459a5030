"""The device's transitions table: every (state, event) pair it accepts, and the handler that performs it.

Theory of operation
-------------------
Every handler does the same three things: it builds the step's :class:`~qrlogin.device.work.Work` from the state,
hands the event to the machine it is for, and lets ``routing`` carry the effects from machine to machine until
nothing is left; ``settle`` then names the state the device has come to. What differs per pair is which machine takes
the event, and where the device can end up, which each handler's return annotation states exactly (the docs diagram
is drawn from them; the handler asserts it at run time, and the tests drive every pair the simulator reaches).

* HTTP answers are legal wherever a request can be outstanding, but their ``request_id`` must be one this device
  issued: ids are minted by the device, so any other is the embedder's bug and raises
  :class:`~qrlogin.errors.LocalProtocolError` before anything changes. An answer to an issued request that is no
  longer outstanding (a duplicate, a late answer after a loss, an answer to a request a machine gave up) is network
  noise: the state and effects are unchanged.
* Timers are legal wherever the device has a deadline; one that comes before ``deadline(state)`` changes nothing.
* The user's acts are legal only where they answer something the device asked for (``CheckCodeEntered`` after
  ``PromptForCheckCode``, the consent events after ``OpenVerificationUri``), and ``UserCancelled`` only while the login
  runs. After the login ended every user act is misuse.
* The finished states (:class:`~qrlogin.device.SignInSucceeded`, :class:`~qrlogin.device.SignInFailed`) accept nothing:
  the device needs nothing more.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Final

from .._machine import Handler, Machine, stay
from ..errors import LocalProtocolError
from ..rendezvous import client as rz
from ..vocabulary import (
    CheckCodeEntered,
    HttpRequestFailed,
    HttpResponseReceived,
    TimerFired,
    UserCancelled,
    VerificationUriOpened,
    VerificationUriUnavailable,
)
from .bootstrap import discovered, discovery_cancelled
from .effects import Effect, Event
from .routing import run
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
    Closing,
    Finished,
    Requests,
    Running,
    SignInFailed,
    State,
    deadline,
    login_deadline,
)
from .work import Work, settle

__all__ = ["MACHINE", "is_done", "transition"]

Effects = tuple[Effect, ...]
Answer = HttpResponseReceived | HttpRequestFailed
Live = AwaitingSession | Running | Closing

# ------------------------------------------------------------------------------------------- what every handler does


def _require_issued(requests: Requests, request_id: int) -> None:
    if not 0 < request_id <= requests.issued:
        raise LocalProtocolError(f"request id {request_id} was never issued by this device")


def _renumbered(event: Answer, request_id: int) -> Answer:
    if isinstance(event, HttpResponseReceived):
        return HttpResponseReceived(request_id=request_id, response=event.response)
    return HttpRequestFailed(request_id=request_id)


def _answered(state: Live, event: Answer, now_ms: int) -> tuple[State, Effects]:
    """An HTTP answer, to the machine whose request it answers; noise if none waits for it."""
    requests = state.requests
    _require_issued(requests, event.request_id)
    work = Work.of(state)
    if requests.rendezvous is not None and event.request_id == requests.rendezvous[0]:
        work.requests = replace(requests, rendezvous=None)
        work.rz_events.append(_renumbered(event, requests.rendezvous[1]))
    elif requests.login is not None and event.request_id == requests.login[0]:
        work.requests = replace(requests, login=None)
        work.login_events.append(_renumbered(event, requests.login[1]))
    else:
        return state, ()
    run(work, now_ms)
    return settle(work, now_ms), tuple(work.effects)


def _timer(state: Live, now_ms: int) -> tuple[State, Effects]:
    """The deadline came: the rendezvous client and the login machine each take the timer if it is theirs."""
    due = deadline(state)
    if due is None or now_ms < due:
        return state, ()
    work = Work.of(state)
    rendezvous_due = rz.deadline(state.rendezvous)
    if rendezvous_due is not None and rendezvous_due <= now_ms:
        work.rz_events.append(TimerFired())
    if isinstance(state, AwaitingSession | Running):  # the login still runs
        login_due = login_deadline(state.config, state.login)
        if login_due is not None and login_due <= now_ms:
            work.login_events.append(TimerFired())
    run(work, now_ms)  # and the closing rules, whose deletion time may be what came
    return settle(work, now_ms), tuple(work.effects)


def _user(state: AwaitingSession | Running, event: Event, now_ms: int) -> tuple[State, Effects]:
    """A user's act: the check code is the channel's, the rest the login machine's."""
    work = Work.of(state)
    if isinstance(event, CheckCodeEntered):
        work.channel_events.append(event)
    else:
        assert isinstance(event, UserCancelled | VerificationUriOpened | VerificationUriUnavailable)
        work.login_events.append(event)
    run(work, now_ms)
    return settle(work, now_ms), tuple(work.effects)


# -------------------------------------------------------------------------------------------------------- bootstrap


def _session_answered(
    state: AwaitingSession, event: HttpResponseReceived, now_ms: int
) -> tuple[AwaitingSession | AwaitingHandshake | SignInFailed, Effects]:
    new, effects = _answered(state, event, now_ms)
    assert isinstance(new, AwaitingSession | AwaitingHandshake | SignInFailed), new
    return new, effects


def _session_request_failed(
    state: AwaitingSession, event: HttpRequestFailed, now_ms: int
) -> tuple[AwaitingSession, Effects]:
    new, effects = _answered(state, event, now_ms)
    assert isinstance(new, AwaitingSession), new
    return new, effects


def _session_timer(
    state: AwaitingSession, event: TimerFired, now_ms: int
) -> tuple[AwaitingSession | SignInFailed, Effects]:
    new, effects = _timer(state, now_ms)
    assert isinstance(new, AwaitingSession | SignInFailed), new
    return new, effects


def _session_cancelled(
    state: AwaitingSession, event: UserCancelled, now_ms: int
) -> tuple[AwaitingDeletion | SignInFailed, Effects]:
    new, effects = _user(state, event, now_ms)
    assert isinstance(new, AwaitingDeletion | SignInFailed), new
    return new, effects


def _discovery_answered(
    state: AwaitingDiscovery, event: HttpResponseReceived, now_ms: int
) -> tuple[AwaitingHandshake | SignInFailed, Effects]:
    _require_issued(state.requests, event.request_id)
    return discovered(state, event, now_ms)


def _discovery_failed(state: AwaitingDiscovery, event: HttpRequestFailed, now_ms: int) -> tuple[SignInFailed, Effects]:
    _require_issued(state.requests, event.request_id)
    new, effects = discovered(state, event, now_ms)
    assert isinstance(new, SignInFailed), new
    return new, effects


def _discovery_cancelled(state: AwaitingDiscovery, event: UserCancelled, now_ms: int) -> tuple[SignInFailed, Effects]:
    return discovery_cancelled(state, event, now_ms)


# ---------------------------------------------------------------------------------------------------------- running


def _peer_answered(
    state: AwaitingHandshake, event: HttpResponseReceived, now_ms: int
) -> tuple[AwaitingHandshake | AwaitingCheckCodeEntry | AwaitingLogin | AwaitingDeletion | SignInFailed, Effects]:
    new, effects = _answered(state, event, now_ms)
    assert isinstance(
        new, AwaitingHandshake | AwaitingCheckCodeEntry | AwaitingLogin | AwaitingDeletion | SignInFailed
    ), new
    return new, effects


def _peer_request_failed(
    state: AwaitingHandshake, event: HttpRequestFailed, now_ms: int
) -> tuple[AwaitingHandshake, Effects]:
    new, effects = _answered(state, event, now_ms)
    assert isinstance(new, AwaitingHandshake), new
    return new, effects


def _peer_timer(
    state: AwaitingHandshake, event: TimerFired, now_ms: int
) -> tuple[AwaitingHandshake | SignInFailed, Effects]:
    new, effects = _timer(state, now_ms)
    assert isinstance(new, AwaitingHandshake | SignInFailed), new
    return new, effects


def _peer_cancelled(
    state: AwaitingHandshake, event: UserCancelled, now_ms: int
) -> tuple[AwaitingLastWrite | AwaitingDeletion | SignInFailed, Effects]:
    new, effects = _user(state, event, now_ms)
    assert isinstance(new, AwaitingLastWrite | AwaitingDeletion | SignInFailed), new
    return new, effects


def _check_code_answered(
    state: AwaitingCheckCodeEntry, event: HttpResponseReceived, now_ms: int
) -> tuple[AwaitingCheckCodeEntry | AwaitingDeletion | SignInFailed, Effects]:
    new, effects = _answered(state, event, now_ms)
    assert isinstance(new, AwaitingCheckCodeEntry | AwaitingDeletion | SignInFailed), new
    return new, effects


def _check_code_request_failed(
    state: AwaitingCheckCodeEntry, event: HttpRequestFailed, now_ms: int
) -> tuple[AwaitingCheckCodeEntry, Effects]:
    new, effects = _answered(state, event, now_ms)
    assert isinstance(new, AwaitingCheckCodeEntry), new
    return new, effects


def _check_code_timer(
    state: AwaitingCheckCodeEntry, event: TimerFired, now_ms: int
) -> tuple[AwaitingCheckCodeEntry | SignInFailed, Effects]:
    new, effects = _timer(state, now_ms)
    assert isinstance(new, AwaitingCheckCodeEntry | SignInFailed), new
    return new, effects


def _check_code_entered(
    state: AwaitingCheckCodeEntry, event: CheckCodeEntered, now_ms: int
) -> tuple[AwaitingLogin | AwaitingLastWrite | AwaitingDeletion | SignInFailed, Effects]:
    new, effects = _user(state, event, now_ms)
    assert isinstance(new, AwaitingLogin | AwaitingLastWrite | AwaitingDeletion | SignInFailed), new
    return new, effects


def _check_code_cancelled(
    state: AwaitingCheckCodeEntry, event: UserCancelled, now_ms: int
) -> tuple[AwaitingLastWrite | AwaitingDeletion | SignInFailed, Effects]:
    new, effects = _user(state, event, now_ms)
    assert isinstance(new, AwaitingLastWrite | AwaitingDeletion | SignInFailed), new
    return new, effects


def _consent_answered(state: AwaitingConsent, event: Answer, now_ms: int) -> tuple[AwaitingConsent, Effects]:
    new, effects = _answered(state, event, now_ms)
    assert isinstance(new, AwaitingConsent), new
    return new, effects


def _consent_timer(
    state: AwaitingConsent, event: TimerFired, now_ms: int
) -> tuple[AwaitingConsent | SignInFailed, Effects]:
    new, effects = _timer(state, now_ms)
    assert isinstance(new, AwaitingConsent | SignInFailed), new
    return new, effects


def _consent_given(
    state: AwaitingConsent, event: VerificationUriOpened, now_ms: int
) -> tuple[AwaitingLogin | SignInFailed, Effects]:
    new, effects = _user(state, event, now_ms)
    assert isinstance(new, AwaitingLogin | SignInFailed), new
    return new, effects


def _consent_refused(
    state: AwaitingConsent, event: VerificationUriUnavailable | UserCancelled, now_ms: int
) -> tuple[AwaitingLastWrite | SignInFailed, Effects]:
    new, effects = _user(state, event, now_ms)
    assert isinstance(new, AwaitingLastWrite | SignInFailed), new
    return new, effects


def _login_answered(
    state: AwaitingLogin, event: HttpResponseReceived, now_ms: int
) -> tuple[AwaitingConsent | AwaitingLogin | AwaitingLastWrite | AwaitingDeletion | Finished, Effects]:
    new, effects = _answered(state, event, now_ms)
    assert isinstance(new, AwaitingConsent | AwaitingLogin | AwaitingLastWrite | AwaitingDeletion | Finished), new
    return new, effects


def _login_request_failed(
    state: AwaitingLogin, event: HttpRequestFailed, now_ms: int
) -> tuple[AwaitingLogin | AwaitingLastWrite, Effects]:
    new, effects = _answered(state, event, now_ms)
    assert isinstance(new, AwaitingLogin | AwaitingLastWrite), new
    return new, effects


def _login_timer(
    state: AwaitingLogin, event: TimerFired, now_ms: int
) -> tuple[AwaitingLogin | AwaitingTurn | AwaitingLastWrite | SignInFailed, Effects]:
    new, effects = _timer(state, now_ms)
    assert isinstance(new, AwaitingLogin | AwaitingTurn | AwaitingLastWrite | SignInFailed), new
    return new, effects


def _login_cancelled(
    state: AwaitingLogin, event: UserCancelled, now_ms: int
) -> tuple[AwaitingTurn | AwaitingLastWrite | SignInFailed, Effects]:
    new, effects = _user(state, event, now_ms)
    assert isinstance(new, AwaitingTurn | AwaitingLastWrite | SignInFailed), new
    return new, effects


# ---------------------------------------------------------------------------------------------------------- closing


def _turn_answered(
    state: AwaitingTurn, event: HttpResponseReceived, now_ms: int
) -> tuple[AwaitingTurn | AwaitingLastWrite | AwaitingDeletion | Finished, Effects]:
    new, effects = _answered(state, event, now_ms)
    assert isinstance(new, AwaitingTurn | AwaitingLastWrite | AwaitingDeletion | Finished), new
    return new, effects


def _turn_request_failed(
    state: AwaitingTurn, event: HttpRequestFailed, now_ms: int
) -> tuple[AwaitingTurn | AwaitingDeletion, Effects]:
    new, effects = _answered(state, event, now_ms)
    assert isinstance(new, AwaitingTurn | AwaitingDeletion), new
    return new, effects


def _turn_timer(
    state: AwaitingTurn, event: TimerFired, now_ms: int
) -> tuple[AwaitingTurn | AwaitingLastWrite | AwaitingDeletion | Finished, Effects]:
    new, effects = _timer(state, now_ms)
    assert isinstance(new, AwaitingTurn | AwaitingLastWrite | AwaitingDeletion | Finished), new
    return new, effects


def _last_write_answered(
    state: AwaitingLastWrite, event: HttpResponseReceived, now_ms: int
) -> tuple[AwaitingLastWrite | AwaitingDeletionTime | AwaitingDeletion | Finished, Effects]:
    new, effects = _answered(state, event, now_ms)
    assert isinstance(new, AwaitingLastWrite | AwaitingDeletionTime | AwaitingDeletion | Finished), new
    return new, effects


def _last_write_request_failed(
    state: AwaitingLastWrite, event: HttpRequestFailed, now_ms: int
) -> tuple[AwaitingLastWrite, Effects]:
    new, effects = _answered(state, event, now_ms)
    assert isinstance(new, AwaitingLastWrite), new
    return new, effects


def _last_write_timer(
    state: AwaitingLastWrite, event: TimerFired, now_ms: int
) -> tuple[AwaitingLastWrite | Finished, Effects]:
    new, effects = _timer(state, now_ms)
    assert isinstance(new, AwaitingLastWrite | Finished), new
    return new, effects


def _deletion_time_answered(
    state: AwaitingDeletionTime, event: HttpResponseReceived, now_ms: int
) -> tuple[AwaitingDeletionTime | AwaitingDeletion | Finished, Effects]:
    new, effects = _answered(state, event, now_ms)
    assert isinstance(new, AwaitingDeletionTime | AwaitingDeletion | Finished), new
    return new, effects


def _deletion_time_request_failed(
    state: AwaitingDeletionTime, event: HttpRequestFailed, now_ms: int
) -> tuple[AwaitingDeletionTime | AwaitingDeletion, Effects]:
    new, effects = _answered(state, event, now_ms)
    assert isinstance(new, AwaitingDeletionTime | AwaitingDeletion), new
    return new, effects


def _deletion_time_timer(
    state: AwaitingDeletionTime, event: TimerFired, now_ms: int
) -> tuple[AwaitingDeletionTime | AwaitingDeletion | Finished, Effects]:
    new, effects = _timer(state, now_ms)
    assert isinstance(new, AwaitingDeletionTime | AwaitingDeletion | Finished), new
    return new, effects


def _deletion_answered(
    state: AwaitingDeletion, event: Answer, now_ms: int
) -> tuple[AwaitingDeletion | Finished, Effects]:
    new, effects = _answered(state, event, now_ms)
    assert isinstance(new, AwaitingDeletion | Finished), new
    return new, effects


def _deletion_timer(
    state: AwaitingDeletion, event: TimerFired, now_ms: int
) -> tuple[AwaitingDeletion | Finished, Effects]:
    new, effects = _timer(state, now_ms)
    assert isinstance(new, AwaitingDeletion | Finished), new
    return new, effects


# ------------------------------------------------------------------------------------------------------------ table

_TRANSITIONS: Final[dict[tuple[type, type], Handler]] = {
    (AwaitingSession, HttpResponseReceived): _session_answered,
    (AwaitingSession, HttpRequestFailed): _session_request_failed,
    (AwaitingSession, TimerFired): _session_timer,
    (AwaitingSession, UserCancelled): _session_cancelled,
    (AwaitingDiscovery, HttpResponseReceived): _discovery_answered,
    (AwaitingDiscovery, HttpRequestFailed): _discovery_failed,
    (AwaitingDiscovery, TimerFired): stay,  # discovery has no deadline: the embedder's HTTP timeout bounds it
    (AwaitingDiscovery, UserCancelled): _discovery_cancelled,
    (AwaitingHandshake, HttpResponseReceived): _peer_answered,
    (AwaitingHandshake, HttpRequestFailed): _peer_request_failed,
    (AwaitingHandshake, TimerFired): _peer_timer,
    (AwaitingHandshake, UserCancelled): _peer_cancelled,
    (AwaitingCheckCodeEntry, HttpResponseReceived): _check_code_answered,
    (AwaitingCheckCodeEntry, HttpRequestFailed): _check_code_request_failed,
    (AwaitingCheckCodeEntry, TimerFired): _check_code_timer,
    (AwaitingCheckCodeEntry, CheckCodeEntered): _check_code_entered,
    (AwaitingCheckCodeEntry, UserCancelled): _check_code_cancelled,
    (AwaitingConsent, HttpResponseReceived): _consent_answered,
    (AwaitingConsent, HttpRequestFailed): _consent_answered,
    (AwaitingConsent, TimerFired): _consent_timer,
    (AwaitingConsent, VerificationUriOpened): _consent_given,
    (AwaitingConsent, VerificationUriUnavailable): _consent_refused,
    (AwaitingConsent, UserCancelled): _consent_refused,
    (AwaitingLogin, HttpResponseReceived): _login_answered,
    (AwaitingLogin, HttpRequestFailed): _login_request_failed,
    (AwaitingLogin, TimerFired): _login_timer,
    (AwaitingLogin, UserCancelled): _login_cancelled,
    (AwaitingTurn, HttpResponseReceived): _turn_answered,
    (AwaitingTurn, HttpRequestFailed): _turn_request_failed,
    (AwaitingTurn, TimerFired): _turn_timer,
    (AwaitingLastWrite, HttpResponseReceived): _last_write_answered,
    (AwaitingLastWrite, HttpRequestFailed): _last_write_request_failed,
    (AwaitingLastWrite, TimerFired): _last_write_timer,
    (AwaitingDeletionTime, HttpResponseReceived): _deletion_time_answered,
    (AwaitingDeletionTime, HttpRequestFailed): _deletion_time_request_failed,
    (AwaitingDeletionTime, TimerFired): _deletion_time_timer,
    (AwaitingDeletion, HttpResponseReceived): _deletion_answered,
    (AwaitingDeletion, HttpRequestFailed): _deletion_answered,
    (AwaitingDeletion, TimerFired): _deletion_timer,
}

#: The device as one machine: ``generate`` starts it in AwaitingSession, ``scan`` in AwaitingHandshake,
#: AwaitingDiscovery (v2) or SignInFailed (a code that is not for this device).
MACHINE: Final = Machine[State, Event, Effect](
    "device", _TRANSITIONS, initial=(AwaitingSession, AwaitingDiscovery, AwaitingHandshake, SignInFailed)
)


def transition(state: State, event: Event, *, now_ms: int) -> tuple[State, Effects]:
    """Advance the device by one event. Misuse (a pair the table does not hold, a request id the device never
    issued) raises :class:`~qrlogin.errors.LocalProtocolError` before anything changes."""
    return MACHINE.transition(state, event, now_ms)


def is_done(state: State) -> bool:
    """True when the device needs nothing more: no request, no timer, no event (its state is terminal)."""
    return MACHINE.is_terminal(state)
