"""No way of reusing a channel state seals twice under one (key, nonce) or judges the check code twice.

Every state of a channel end shares one cursor (``qrlogin.channel._common.ChannelCursor``), copies included, and a
transition moves it on before it seals, opens or judges. The hypothesis machine below runs both ends of a channel
of either generation and, between the normal steps, keeps every state value it ever saw, duplicates them in every
way a caller could (keeping the value, ``copy.copy``, ``copy.deepcopy``, ``dataclasses.replace``; pickling is
refused) and feeds them events. It checks, throughout:

* a value is refused (``LocalProtocolError``, nothing changed) exactly when its end has moved on from it: only the
  state the last transition returned, and copies of it, take an event, and ``RetryRequested`` on it always works;
* no (key, nonce) pair is ever used for two seals, and G's check code is judged at most once.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import itertools
import pickle
from typing import Any

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule, run_state_machine_as_test

from qrlogin import _crypto
from qrlogin.channel import _common, ecies, hpke
from qrlogin.channel._common import (
    ChannelFailed,
    InitiateRequested,
    PayloadReceived,
    Profile,
    RetryRequested,
    SealRequested,
    SendPayload,
)
from qrlogin.errors import LocalProtocolError
from qrlogin.vocabulary import CheckCodeEntered
from tests.channel.channel_helpers import SealRecorder, payload_of

BASE_URL = "https://matrix.example.org"
RID = "reuse"
DUPLICATES = {
    "the value itself": lambda value: value,
    "copy.copy": copy.copy,
    "copy.deepcopy": copy.deepcopy,
    "dataclasses.replace": dataclasses.replace,
}


def _secret(label: str, run: int) -> bytes:
    return hashlib.sha256(f"reuse {label} {run}".encode()).digest()


class Judgements:
    """Counts the check-code judgements of each G channel end (by its check code's identity)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.count: dict[int, int] = {}
        self.total = 0
        original = _common.judge_check_code

        def counting(entered: str, expected: Any, *, leading_zero: bool) -> Any:
            self.count[id(expected)] = self.count.get(id(expected), 0) + 1
            self.total += 1
            return original(entered, expected, leading_zero=leading_zero)

        for module in (ecies, hpke):
            monkeypatch.setattr(module, "judge_check_code", counting)


class Reuse(RuleBasedStateMachine):
    """Both ends of one channel. ``pool[side]`` holds every value seen, each with the index of the value it is a copy
    of; ``current[side]`` is the index of the value the end's last move returned."""

    judgements: Judgements
    recorder: SealRecorder
    sealed = 0  # over all runs: the recorder is reset for each

    def __init__(self) -> None:
        super().__init__()
        self.module: Any = None
        self.pool: dict[str, list[tuple[Any, int]]] = {"g": [], "s": []}
        self.current = {"g": 0, "s": 0}
        self.outbox: dict[str, list[PayloadReceived]] = {"g": [], "s": []}  # what each end sent, as the peer opens it
        self.read = {"g": 0, "s": 0}  # how much of the peer's outbox each end has opened
        self.tokens = itertools.count(3)

    @initialize(
        generation=st.sampled_from(["ecies", "hpke"]),
        profile=st.sampled_from(list(Profile)),
        run=st.integers(0, 1 << 16),
    )
    def start(self, generation: str, profile: Profile, run: int) -> None:
        # The secrets come from the drawn seed, so a run replays exactly; the recorder watches one run at a time.
        Reuse.sealed += len(self.recorder.uses)
        self.recorder.reset()
        if generation == "ecies":
            self.module = ecies
            g: Any = ecies.start_showing(_secret("g", run), profile=profile)
            s: Any = ecies.start_scanning(g.public_key, _secret("s", run), profile=profile)
        else:
            self.module = hpke
            g = hpke.start_showing(
                _secret("g", run),
                base_url=BASE_URL,
                rendezvous_id=RID,
                response_nonce=_secret("rn", run),
                profile=profile,
            )
            s = hpke.start_scanning(
                _secret("s", run), peer_public_key=g.public_key, base_url=BASE_URL, rendezvous_id=RID, profile=profile
            )
        self.pool = {"g": [(g, 0)], "s": [(s, 0)]}
        self.judgements.count.clear()  # counted by the identity of the check code, so per run

    # -- what an end can be fed ---------------------------------------------------------------------------------

    def _events(self, side: str, state: Any, data: st.DataObject) -> list[Any]:
        """Plausible events for ``state``: the genuine next input where there is one, and the others it accepts."""
        peer = "s" if side == "g" else "g"
        unread = self.outbox[peer][self.read[side] :]
        module = self.module
        if isinstance(state, module.ReadyToInitiate):
            return [InitiateRequested(sequence_token="1")]
        if isinstance(state, module.AwaitingInitiate):
            return unread[:1] or [PayloadReceived(payload="AAAA", sequence_token="1", reply_sequence_token="2")]
        if isinstance(state, module.AwaitingLoginOk):
            return [*unread[:1], RetryRequested()]
        if isinstance(state, module.AwaitingCheckCode):
            s_state = self.pool["s"][self.current["s"]][0]
            right = module.check_code(s_state) if isinstance(s_state, module.Established) else "11"
            guess = data.draw(st.sampled_from([right, "12", "x"]), label="code")
            return [CheckCodeEntered(code=guess), *unread[:1], RetryRequested()]
        if isinstance(state, module.Established):
            plaintext = data.draw(st.binary(max_size=24), label="plaintext")
            return [
                SealRequested(plaintext=plaintext, sequence_token=str(next(self.tokens))),
                *unread[:1],
                RetryRequested(),
            ]
        return []

    def _feed(self, side: str, index: int, event: Any) -> None:
        """Feed pool entry ``index`` of ``side``; check it was refused exactly when its end has moved on."""
        state, origin = self.pool[side][index]
        live = origin == self.current[side]
        try:
            new_state, effects = self.module.transition(state, event, now_ms=0)
        except LocalProtocolError:
            assert not live, (type(state).__name__, type(event).__name__)
            return
        assert live, f"a {type(state).__name__} the channel left behind took {type(event).__name__}"
        if isinstance(event, RetryRequested):
            assert new_state is state and effects == (SendPayload(payload=state.last_sent),)
            return
        if isinstance(event, PayloadReceived) and not isinstance(new_state, ChannelFailed):
            self.read[side] += 1
        sent = [e for e in effects if isinstance(e, SendPayload)]
        if sent:  # as the peer will open it: with the token it was sealed with (HPKE; ECIES ignores tokens)
            if isinstance(event, SealRequested):
                opened_as = PayloadReceived(payload=payload_of(sent), sequence_token=event.sequence_token)
            elif isinstance(event, InitiateRequested):
                opened_as = PayloadReceived(payload=payload_of(sent), sequence_token="1", reply_sequence_token="2")
            else:  # G's LoginOk, sealed with the token of the GET that brought LoginInitiate
                opened_as = PayloadReceived(payload=payload_of(sent), sequence_token="2")
            self.outbox[side].append(opened_as)
        self.pool[side].append((new_state, len(self.pool[side])))
        self.current[side] = len(self.pool[side]) - 1

    # -- rules --------------------------------------------------------------------------------------------------

    @rule(side=st.sampled_from(["g", "s"]), data=st.data())
    def step_on(self, side: str, data: st.DataObject) -> None:
        """The normal flow: the current state takes one of its events."""
        state = self.pool[side][self.current[side]][0]
        events = self._events(side, state, data)
        if events:
            self._feed(side, self.current[side], data.draw(st.sampled_from(events), label="event"))

    @rule(side=st.sampled_from(["g", "s"]), data=st.data(), how=st.sampled_from(sorted(DUPLICATES)))
    def duplicate(self, side: str, data: st.DataObject, how: str) -> None:
        index = data.draw(st.integers(0, len(self.pool[side]) - 1), label="index")
        state, origin = self.pool[side][index]
        if isinstance(state, ChannelFailed):
            return
        with pytest.raises(TypeError):
            pickle.dumps(state)
        self.pool[side].append((DUPLICATES[how](state), origin))

    @rule(side=st.sampled_from(["g", "s"]), data=st.data())
    def reuse(self, side: str, data: st.DataObject) -> None:
        """Any value seen so far, or a copy of one, takes an event it accepts."""
        index = data.draw(st.integers(0, len(self.pool[side]) - 1), label="index")
        events = self._events(side, self.pool[side][index][0], data)
        if events:
            self._feed(side, index, data.draw(st.sampled_from(events), label="event"))

    @invariant()
    def one_judgement_per_channel_and_one_seal_per_nonce(self) -> None:
        assert all(count <= 1 for count in self.judgements.count.values()), self.judgements.count
        assert self.recorder.reused == [], "a (key, nonce) pair was used for a second seal"


def test_reusing_states_in_every_way_never_seals_twice_or_judges_twice(monkeypatch: pytest.MonkeyPatch) -> None:
    Reuse.recorder = SealRecorder(monkeypatch, _crypto)
    Reuse.judgements = Judgements(monkeypatch)
    Reuse.sealed = 0
    run_state_machine_as_test(Reuse, settings=settings(max_examples=200, stateful_step_count=40, deadline=None))
    assert Reuse.sealed > 100, "the property must have sealed something"
    assert Reuse.judgements.total > 10, "the property must have judged check codes"


# -- The same, case by case -------------------------------------------------------------------------------------


def _keyed_cases() -> list[tuple[str, Any, Any, Any]]:
    """(generation, transition, a fresh state of every kind that holds keys, its genuine next event)."""
    from tests.channel.test_machines import GENERATIONS

    cases = []
    for generation in GENERATIONS:
        for state, inputs in generation.cases():
            if inputs:
                cases.append((generation.name, generation.module.transition, state, inputs[0]))
    return cases


@pytest.mark.parametrize("how", sorted(DUPLICATES))
@pytest.mark.parametrize(
    ("generation", "transition", "state", "event"),
    _keyed_cases(),
    ids=lambda value: type(value).__name__ if not isinstance(value, str) else value,
)
def test_a_state_and_its_copies_take_one_event_between_them(
    generation: str, transition: Any, state: Any, event: Any, how: str
) -> None:
    from tests.channel.channel_helpers import fork

    mine = fork(state)
    twin = DUPLICATES[how](mine)
    with pytest.raises(TypeError, match="pickled"):
        pickle.dumps(mine)
    transition(mine, event, now_ms=0)
    if isinstance(event, RetryRequested):
        transition(twin, event, now_ms=0)  # a retry moves nothing: the current state and its copies retry freely
        return
    for other in (mine, twin):
        with pytest.raises(LocalProtocolError, match="left behind"):
            transition(other, event, now_ms=0)
        with pytest.raises(LocalProtocolError):
            transition(other, RetryRequested(), now_ms=0)


@pytest.mark.parametrize("generation", [ecies, hpke], ids=lambda m: m.__name__.rsplit(".", 1)[-1])
def test_forging_the_counters_of_a_state_cannot_reuse_a_nonce(generation: Any) -> None:
    from tests.channel.test_machines import GENERATIONS

    cases = next(g for g in GENERATIONS if g.module is generation).cases()
    established, seal = next(
        (state, event)
        for state, inputs in cases
        for event in inputs
        if isinstance(state, generation.Established) and isinstance(event, SealRequested) and len(inputs) > 2
    )
    moved, _ = generation.transition(established, seal, now_ms=0)
    counter = "send_counter" if generation is ecies else "send_seq"
    for forged in (
        dataclasses.replace(moved, **{counter: getattr(established, counter)}),  # back to the used counter
        type(moved)(**{f.name: getattr(established, f.name) for f in dataclasses.fields(established)}),
    ):
        with pytest.raises(LocalProtocolError, match="left behind"):
            generation.transition(forged, seal, now_ms=0)


def test_a_driver_shares_nothing() -> None:
    from qrlogin._machine import Driver

    g = ecies.start_showing(_secret("driver", -1))
    driver: Driver[Any, Any, Any] = Driver(g, ecies.transition)
    for duplicate in (copy.copy, copy.deepcopy, pickle.dumps):
        with pytest.raises(TypeError):
            duplicate(driver)
